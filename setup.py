"""Build the compiled core, fastbp._core (and its AVX2 and AVX-512 twins on x86-64), from
src_c/.

A. The three builds are independent, so they are made at the same time: one thread per
   extension runs Cython and then the C compiler in subprocesses (build_ext's ``parallel``,
   defaulting to the number of extensions). Three jobs on two cores finish in about half
   their summed time, where two workers would leave the third to run alone.
B. A finished extension is kept in build/fastbp-cache/ under a fingerprint of everything
   that goes into it (the sources in src_c/, the Cython directives, the compiler and its
   flags, the Cython, NumPy, SciPy and Python versions). A later build with the same
   fingerprint copies it instead of compiling: the README's second command (``pip install
   ".[test]"``) reuses what the first built. With cythonize's and build_ext's timestamp
   checks alone, that command compiled everything again in its fresh build environment
   (212 s from a fresh clone; 31 s now, issue 18).
C. Cython's utility code (the memoryview type, fused and cyfunction support: a quarter of
   each core's C) is generated once, as its own small module fastbp._cyutility, which the
   three cores import (Cython's --shared), instead of being compiled into each core.
   Measured (issue 18, one core, GCC -O3, CPU seconds on a busy 2-core machine): the C
   compile went from 30.0 s to 22.6 s per core, the shared module takes 4.4 s once.
D. -O3, not -O2, although -O2 compiles faster: measured, -O3 trains much faster; -g0, as
   debug information cost a quarter of the compile time (the figures are next to the flags).
E. Neither NumPy nor SciPy is needed to build: the only thing read from SciPy at build time
   was the declarations of sgemm and dgemm, which src_c/scipy/linalg/cython_blas.pxd copies
   (its header says why that is safe), and the core cimports nothing from NumPy. So pip's
   isolated build environment holds only setuptools and Cython.
F. Each core is translated by Cython on its own (5.3 s of CPU each), although the three C
   files differ only in the module's name: tried (issue 18), one C file compiled three
   times with the init function renamed (-DPyInit__core=PyInit__core_avx2) imports, but
   the module's code registers itself in sys.modules as "fastbp._core" when that is not yet
   imported, so importing the AVX2 build first made ``import fastbp._core`` return it.
G. A source install builds only the variants this machine's CPU runs (the baseline always:
   FASTBP_CORE=baseline and the tests use it); wheels, which run elsewhere, build all three
   (FASTBP_BUILD_CORES=all). Measured (issue 18, an AVX2-only 2-core machine): the AVX-512
   core cost 5.3 s of Cython and 22 s of GCC, a quarter of the README's first command's
   CPU time, for a module that fastbp/_native.py could never load there.
"""
import copy
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))

# Portable speed: no -march=native so wheels run anywhere. On x86-64 two more builds of the
# same core use AVX2 + FMA and AVX-512 (F, CD, VL, BW, DQ: Skylake-X and later, Zen 4 and
# later); fastbp/_native.py picks the widest the CPU runs at import time. The AVX-512 build
# asks for 512-bit vectors, so that the compiler's tuning does not hold its loops to 256 bits.
# -O3 rather than -O2 (measured on a 2-core AMD EPYC with AVX2, GCC, issue 18): -O2 compiled
# the baseline core in 25 s instead of 33 s, but a float32 training epoch (relu, softmax
# cross-entropy, SGD + momentum, BLAS at 1 thread) then took 24.5 ms instead of 10.0 ms on
# a 64-32-10 network at batch 32 with the AVX2 build, and 241 ms instead of 129 ms on
# 784-128-10 at batch 64; the baseline build 37 ms instead of 22 ms on 64-32-10.
if sys.platform == "win32":
    base_args, avx2_args, avx512_args = ["/O2"], None, None
else:
    # -g0: no debug information (Python's own CFLAGS carry -g). Measured: the baseline
    # core compiled in 21.4 s of CPU instead of 28.7 s, its object file 1.0 MB, not 7.3 MB.
    base_args = ["-O3", "-g0", "-fno-math-errno", "-fno-trapping-math"]
    # The target, not the build machine: macOS cross-builds arm64 wheels on x86-64 runners
    # (cibuildwheel sets ARCHFLAGS="-arch arm64" there).
    x86_64_target = (platform.machine().lower() in ("x86_64", "amd64")
                     and "arm64" not in os.environ.get("ARCHFLAGS", ""))
    avx2_args = ["-mavx2", "-mfma"] if x86_64_target else None
    avx512_args = None if avx2_args is None else avx2_args + [
        "-mavx512f", "-mavx512cd", "-mavx512vl", "-mavx512bw", "-mavx512dq",
        "-mprefer-vector-width=512"]


def cpu_flags():
    """The build machine's CPU flags (Linux's /proc/cpuinfo), or None where they cannot be
    read (another system, or a container without /proc)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


# FASTBP_BUILD_CORES=all builds every variant, as wheels need (cibuildwheel and
# tools/wheel_check.py set it). Otherwise (a source install: pip install .) a variant is built
# only where this machine's CPU can run it (G in this file's docstring): a build that this
# CPU could never import is a third of the compile time spent for nothing. Where the flags
# cannot be read, every variant is built.
ALL_CORES = os.environ.get("FASTBP_BUILD_CORES", "").strip().lower() == "all"
_flags = None if ALL_CORES else cpu_flags()
if _flags is not None and avx2_args is not None:
    if not {"avx512f", "avx512cd", "avx512vl", "avx512bw", "avx512dq"} <= _flags:
        avx512_args = None
    if not {"avx2", "fma"} <= _flags:
        avx2_args = avx512_args = None


# OpenMP splits each batch over threads (train_epoch's n_threads). Where the compiler has
# no OpenMP (e.g. Apple clang), prange compiles to a plain loop and training stays serial.
if sys.platform.startswith("linux"):
    openmp_args = ["-fopenmp"]
elif sys.platform == "win32":
    openmp_args = ["/openmp"]
else:
    openmp_args = []


# FASTBP_DEBUG_CYTHON=1: a checked build for testing. Every memoryview index is bounds-checked
# (negative ones wrap, as in Python) and every memoryview must be initialised, so an
# out-of-range index raises IndexError instead of reading or corrupting memory. The kernels'
# raw pointers stay unchecked, so it trains at the same speed (measured: within noise on the
# tiny and small benchmark networks). The compiler flags stay the same, so the checked build
# runs the code that ships. Its C files go to build/cython-checked/ (the normal ones to
# build/cython-normal/), and the directives are part of the cache fingerprint, so switching
# modes compiles (or reuses) the other build instead of keeping the one built the other way.
CHECKED = os.environ.get("FASTBP_DEBUG_CYTHON", "").strip() not in ("", "0")
MODE = "checked" if CHECKED else "normal"
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": CHECKED,
    "wraparound": CHECKED,
    "cdivision": True,
    "initializedcheck": CHECKED,
}
CYTHON_DIR = os.path.join(HERE, "build", f"cython-{MODE}")
CACHE_DIR = os.path.join(HERE, "build", "fastbp-cache")
# The module that holds Cython's utility code for the three cores (C in this file's docstring).
SHARED_UTILITY = "fastbp._cyutility"


def core_extension(name, source, extra_args=()):
    return Extension(
        name,
        sources=[source],
        include_dirs=["src_c"],
        extra_compile_args=base_args + openmp_args + list(extra_args),
        extra_link_args=[arg for arg in openmp_args if arg != "/openmp"],
    )


def shared_utility_extension():
    """fastbp._cyutility: its C is generated by Cython at build time (no source file here)."""
    extension = Extension(SHARED_UTILITY, sources=[], extra_compile_args=base_args)
    extension.cython_shared_utility = True
    return extension


def say(line):
    """Print one whole line at once (the build threads' lines must not interleave)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def fingerprint(ext, compiler_command):
    """A hash of everything that goes into ``ext``'s compiled module.

    Every file in src_c/ counts (the .pyx files include each other and cimport the .pxd
    files, which include the headers; SciPy's declarations are copied there too, E), and so
    do the directives, the compiler command and flags, the environment variables the
    compiler reads, the versions of Cython and Python (the extension's ABI), and the name of
    the shared utility module the cores import. NumPy's and SciPy's versions do not count:
    the build reads neither (the cores import them at run time).
    """
    import Cython

    digest = hashlib.sha256()
    source_dir = os.path.join(HERE, "src_c")
    sources = sorted(os.path.relpath(os.path.join(folder, name), source_dir)
                     for folder, _, names in os.walk(source_dir) for name in names
                     if name.endswith((".pyx", ".pxd", ".pxi", ".h")))
    for name in sources:  # subfolders too (e.g. src_c/ops/)
        digest.update(name.replace(os.sep, "/").encode())
        with open(os.path.join(source_dir, name), "rb") as file:
            digest.update(file.read())
    parts = [ext.name, ext.sources, ext.extra_compile_args, ext.extra_link_args,
             ext.define_macros, sorted(DIRECTIVES.items()), compiler_command,
             [os.environ.get(var, "") for var in ("CC", "CFLAGS", "CPPFLAGS", "LDFLAGS")],
             SHARED_UTILITY, Cython.__version__, sys.version,
             sysconfig.get_config_var("EXT_SUFFIX")]
    digest.update(repr(parts).encode())
    return digest.hexdigest()[:20]


class parallel_cached_build_ext(build_ext):
    """build_ext that builds the extensions concurrently and reuses identical builds (A, B
    in this file's docstring)."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:  # not given on the command line or in setup.cfg
            self.parallel = max(1, len(self.extensions))

    def build_extension(self, ext):
        pyx_sources = [source for source in ext.sources if source.endswith(".pyx")]
        target = self.get_ext_fullpath(ext.name)
        compiler_command = (getattr(self.compiler, "compiler_so", None)
                            or type(self.compiler).__name__)
        key = fingerprint(ext, compiler_command)
        suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
        cached = os.path.join(CACHE_DIR, f"{ext.name}.{MODE}.{key}{suffix}")
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        if os.path.exists(cached) and not self.force:
            say(f"fastbp: reusing {ext.name} from {os.path.relpath(cached, HERE)}")
            shutil.copyfile(cached, target)
            return
        c_ext = copy.copy(ext)  # ext keeps its .pyx sources (the fingerprint reads them)
        if getattr(ext, "cython_shared_utility", False):
            c_ext.sources = [self._generate_shared_utility()]
        else:
            c_ext.sources = ([s for s in ext.sources if not s.endswith(".pyx")]
                             + [self._cythonize(ext.name, source) for source in pyx_sources])
        if os.path.exists(target):
            os.remove(target)  # so that build_ext's timestamp check cannot skip it
        super().build_extension(c_ext)
        self._store(f"{ext.name}.{MODE}.", target, cached)

    @staticmethod
    def _cythonize(module_name, pyx):
        """Translate ``pyx`` to C in a subprocess (so several run at once; the Cython
        compiler is not thread-safe) and return the C file's path."""
        os.makedirs(CYTHON_DIR, exist_ok=True)
        c_file = os.path.join(CYTHON_DIR, module_name.replace(".", "_") + ".c")
        directives = ",".join(f"{name}={value}" for name, value in DIRECTIVES.items()
                              if name != "language_level")
        command = [sys.executable, "-m", "cython", "-3", "-I", "src_c", "-X", directives,
                   "--shared", SHARED_UTILITY, "--module-name", module_name, "-o", c_file, pyx]
        say(f"fastbp: cythonizing {pyx} as {module_name}")
        subprocess.run(command, check=True, cwd=HERE)
        return c_file

    @staticmethod
    def _generate_shared_utility():
        """Write the C of SHARED_UTILITY (Cython's utility code) and return its path."""
        os.makedirs(CYTHON_DIR, exist_ok=True)
        # Cython names the module's init function after the file: _cyutility.c.
        c_file = os.path.join(CYTHON_DIR, SHARED_UTILITY.rsplit(".", 1)[-1] + ".c")
        say(f"fastbp: generating {SHARED_UTILITY}, Cython's utility code for the cores")
        subprocess.run([sys.executable, "-m", "cython", "--generate-shared", c_file],
                       check=True, cwd=HERE)
        return c_file

    @staticmethod
    def _store(prefix, built, cached):
        """Keep ``built`` as the cache entry ``cached``, first dropping the entries whose
        names start with ``prefix`` (older builds of the same extension and mode)."""
        os.makedirs(CACHE_DIR, exist_ok=True)
        for old in os.listdir(CACHE_DIR):
            if old.startswith(prefix):
                os.remove(os.path.join(CACHE_DIR, old))
        shutil.copyfile(built, cached + ".part")
        os.replace(cached + ".part", cached)


extensions = [shared_utility_extension(), core_extension("fastbp._core", "src_c/_core.pyx")]
if avx2_args:
    extensions.append(core_extension("fastbp._core_avx2", "src_c/_core_avx2.pyx", avx2_args))
if avx512_args:
    extensions.append(core_extension("fastbp._core_avx512", "src_c/_core_avx512.pyx",
                                     avx512_args))

setup(ext_modules=extensions, cmdclass={"build_ext": parallel_cached_build_ext})

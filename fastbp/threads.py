"""BLAS threads for fastbp's own calls: set for the call, the caller's setting restored after.

fastbp calls SciPy's BLAS, so only that library's thread pool is changed (found through
threadpoolctl; if SciPy shares its BLAS with NumPy, that shared pool).
"""
import contextlib
import functools
import numbers
import os
import threading
import warnings

#: Below this many floating-point operations in the step's largest GEMM, a second BLAS thread
#: gains nothing, so ``threads="auto"`` uses one (and leaves the other core to the caller).
#: Measured on the 2-core machine, one epoch at 1 vs 2 threads: 0.13, 0.26 and 0.52 MFLOP
#: ran 1.03x, 1.00x and 0.98-0.99x as long on 2 threads; 1.05 MFLOP 0.82-0.89x, 12.8 MFLOP
#: (784-128-10, batch 64) 0.67x.
AUTO_MIN_FLOPS_PER_GEMM = 1.0e6


@functools.lru_cache(maxsize=None)
def _scipy_blas():
    """threadpoolctl controllers of the BLAS behind scipy.linalg.cython_blas (cached)."""
    import scipy
    import scipy.linalg.cython_blas  # noqa: F401  (loads SciPy's BLAS)
    from threadpoolctl import ThreadpoolController

    blas = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
    scipy_dir = os.path.dirname(os.path.abspath(scipy.__file__))
    own = [lib for lib in blas if os.path.abspath(lib.filepath).startswith(scipy_dir)]
    return tuple(own or blas)


def check_threads(threads, name="threads"):
    """Validate a ``threads`` argument: "auto", None (leave BLAS alone) or an int >= 1."""
    if threads is None or threads == "auto":
        return threads
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral):
        raise TypeError(f"{name} must be 'auto', None or a positive integer, got {threads!r}")
    if threads < 1:
        raise ValueError(f"{name} must be >= 1, got {threads}")
    return int(threads)


def resolve(threads, flops_per_gemm):
    """The thread count to use (None: leave the BLAS setting as it is)."""
    if threads == "auto":
        return 1 if flops_per_gemm < AUTO_MIN_FLOPS_PER_GEMM else None
    return threads


def current():
    """The BLAS thread count fastbp's calls get when left alone."""
    return max(lib.num_threads for lib in _scipy_blas())


_warned = []


def _warn_if_ignored(libraries, previous, threads):
    """SciPy's OpenBLAS (0.3.30, measured) ignores thread-count changes made outside the
    main thread: say so once, instead of letting ``threads=`` fail silently."""
    now = [lib.num_threads for lib in libraries]
    if not _warned and now == previous and threads not in now \
            and threading.current_thread() is not threading.main_thread():
        _warned.append(True)
        warnings.warn(f"BLAS ignored threads={threads} set from a thread other than the main "
                      f"one (it runs at {max(now)}); set the BLAS thread count from the main "
                      "thread, e.g. with threadpoolctl, before starting worker threads",
                      RuntimeWarning, stacklevel=4)


@contextlib.contextmanager
def blas_threads(threads):
    """Run the block with SciPy's BLAS at ``threads`` threads (None: unchanged)."""
    if threads is None:
        yield
        return
    libraries = _scipy_blas()
    previous = [lib.num_threads for lib in libraries]
    try:
        for lib in libraries:
            lib.set_num_threads(threads)
        _warn_if_ignored(libraries, previous, threads)
        yield
    finally:
        for lib, count in zip(libraries, previous):
            lib.set_num_threads(count)

"""BLAS thread control for benchmarks: one setting for every BLAS in the process."""
import contextlib
import os
import sys


def blas_info():
    """One line per BLAS library loaded in this process (needs threadpoolctl), or a note."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl not installed: BLAS threads at the library default "
                f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
                f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})"]
    lines = []
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            lines.append(f"{pool.get('internal_api')} {pool.get('version')} "
                         f"({pool.get('architecture')}), {pool.get('num_threads')} threads: "
                         f"{os.path.basename(pool.get('filepath', ''))}")
    core = os.environ.get("OPENBLAS_CORETYPE")
    if core:
        lines.append(f"OPENBLAS_CORETYPE={core} (kernel family forced)")
    return lines


@contextlib.contextmanager
def blas_threads(n):
    """Limit every BLAS in the process (NumPy's and SciPy's OpenBLAS alike) to n threads."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield True


def require_threadpoolctl():
    """Return the threadpoolctl module, or exit with how to install it.

    Without it the benchmarks could not pin NumPy's and SciPy's OpenBLAS pools (each has its
    own), so their timings would mix thread counts silently.
    """
    try:
        import threadpoolctl
    except ImportError:
        raise SystemExit("threadpoolctl is needed to set the BLAS thread count: "
                         "python -m pip install threadpoolctl")
    return threadpoolctl


def thread_pools():
    """Every BLAS and OpenMP pool loaded in this process, as threadpoolctl describes them
    (library, version, kernel family in ``architecture``, ``num_threads``)."""
    threadpoolctl = require_threadpoolctl()
    return [pool for pool in threadpoolctl.threadpool_info()
            if pool.get("user_api") in ("blas", "openmp")]


def kernel_families():
    """The OpenBLAS kernel family of each loaded OpenBLAS, e.g. ``{"libscipy_openblas-…so":
    "Haswell"}``; ``OPENBLAS_CORETYPE``, read when OpenBLAS loads, forces it."""
    return {os.path.basename(pool["filepath"]): pool.get("architecture")
            for pool in thread_pools() if pool.get("internal_api") == "openblas"}


@contextlib.contextmanager
def all_threads(n):
    """Run every thread pool of the process with n threads, restoring them afterwards.

    Covers each BLAS and OpenMP library threadpoolctl finds (NumPy's and SciPy's OpenBLAS,
    any libgomp) and, if torch is imported, its intra-op pool (``torch.set_num_threads``).
    Import the libraries to be limited first: threadpoolctl only sees loaded ones.
    """
    threadpoolctl = require_threadpoolctl()
    torch = sys.modules.get("torch")
    previous_torch = torch.get_num_threads() if torch is not None else None
    with threadpoolctl.threadpool_limits(limits=n, user_api="blas"), \
            threadpoolctl.threadpool_limits(limits=n, user_api="openmp"):
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(previous_torch)

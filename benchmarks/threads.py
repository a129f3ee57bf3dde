"""BLAS thread control for benchmarks: one setting for every BLAS in the process."""
import contextlib
import os


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

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


def for_fit(threads, flops_per_gemm):
    """``(context, tuner)`` for a fit call: the context sets SciPy's BLAS threads for the
    call and restores the caller's setting after; the tuner (or None) picks the count per
    chunk when ``threads`` is "auto" and more than one thread might help."""
    resolved = resolve(threads, flops_per_gemm)
    many = current() if threads == "auto" and resolved is None else 1
    if many > 1 and threading.current_thread() is threading.main_thread():
        return blas_threads(many), ThreadTuner(many)
    return blas_threads(resolved), None


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


def set_blas_threads(threads):
    """Set SciPy's BLAS to ``threads`` threads, without restoring (inside ``blas_threads``)."""
    for lib in _scipy_blas():
        lib.set_num_threads(threads)


class ThreadTuner:
    """``threads="auto"`` in ``fit`` when the GEMMs are large enough for more BLAS threads
    to help: train at whichever of one thread and the caller's count runs a batch faster,
    timed as training goes.

    Why measure: a second OpenBLAS thread that has to wait for a core other processes keep
    busy made the MNIST-1D example's small GEMMs 4-60x slower than one thread. Training
    starts at one thread; after ``FIRST_PROBE_S`` the other count is timed on a probe of
    about ``PROBE_S`` worth of batches, and training switches to it if it is clearly
    faster (probes are short and the machine noisy, so a switch is re-checked after
    ``RECHECK_S``). A losing count is probed again after ``PROBE_AFTER_S`` of training, the
    wait doubling each further time it loses (up to ``PROBE_MAX_S``), so probes cost a
    small share even when they run many times slower. Thread counts give results that
    differ in the last bits, so the choice, and hence the result, can vary from run to run:
    pass an int for bitwise repeatability.
    """

    FIRST_PROBE_S = 0.02
    PROBE_S = 0.02
    SWITCH_BELOW = 0.9   # switch only to a count at least 10% faster per batch
    RECHECK_S = 0.1      # after a switch, the old count is probed again this soon
    PROBE_AFTER_S = 1.0
    PROBE_MAX_S = 64.0

    def __init__(self, many):
        self.choice, self.other = 1, many
        self.per_batch = {}         # seconds per batch at each count, latest measurement
        self.wait = {1: self.PROBE_AFTER_S, many: self.FIRST_PROBE_S}
        self.trained_s = 0.0        # training time at the choice since the last probe
        self.probing = False

    def next_chunk(self, chunk_batches):
        """``(threads, batches)`` for the next compiled call, at most ``chunk_batches``
        batches; sets SciPy's BLAS to ``threads``."""
        self.probing = self.choice in self.per_batch and self.trained_s >= self.wait[self.other]
        threads, batches = self.choice, chunk_batches
        if self.probing:
            threads = self.other
            batches = min(chunk_batches, max(1, round(self.PROBE_S / self.per_batch[self.choice])))
        set_blas_threads(threads)
        return threads, batches

    def record(self, threads, seconds, batches):
        """Note that ``batches`` batches took ``seconds`` at ``threads``; returns whether
        that chunk was a probe (whose time must not size later chunks)."""
        self.per_batch[threads] = seconds / batches
        if not self.probing:
            self.trained_s += seconds
            return False
        self.trained_s = 0.0
        if self.per_batch[self.other] < self.SWITCH_BELOW * self.per_batch[self.choice]:
            self.wait[self.choice] = self.RECHECK_S  # a short probe can win by luck
            self.choice, self.other = self.other, self.choice
        else:
            self.wait[self.other] = min(max(2 * self.wait[self.other], self.PROBE_AFTER_S),
                                        self.PROBE_MAX_S)
        return True

"""Threads for fastbp's calls: the size of fastbp's own thread team, with SciPy's BLAS held at
one thread inside the call and the caller's setting restored after.

fit, train_step, predict and evaluate run every op of a batch on a team of OpenMP threads
(src_c/_team.pxi), so the BLAS calls they make must not start threads of their own. Only
SciPy's BLAS is changed (found through threadpoolctl; if SciPy shares its BLAS with NumPy,
that shared pool).
"""
import contextlib
import functools
import numbers
import os
import threading
import warnings

#: Below this many floating-point operations in the step's largest GEMM, a second thread
#: gains nothing: calls run on one thread whatever ``threads`` says (and "auto" never
#: tunes). Measured on the 2-core machine, one training epoch on teams of 1 and 2 threads
#: (fresh processes, 3 runs each): 64-32-10 at batch 32 (0.13 MFLOP) 1.8-2.4 against
#: 2.0-3.0 ms, 128-64-10 at batch 64 (1.05 MFLOP) 6.3-6.4 against 4.7-6.6 ms, 256-128-10 at
#: batch 64 (4.2 MFLOP) 20.0-21.2 against 13.7-17.1 ms. (For BLAS's own threads before
#: the team: 0.13-0.52 MFLOP 0.98-1.03x as long on 2 threads, 1.05 MFLOP 0.82-0.89x.)
MIN_FLOPS_PER_GEMM = 1.0e6


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


def team_size(threads, flops_per_gemm):
    """fastbp's team size for a call whose largest GEMM has ``flops_per_gemm`` operations:
    ``threads`` ("auto": the caller's BLAS count; None: 1), or 1 below MIN_FLOPS_PER_GEMM."""
    if threads is None or flops_per_gemm < MIN_FLOPS_PER_GEMM:
        return 1
    return current() if threads == "auto" else threads


def blas_count(threads, flops_per_gemm):
    """BLAS threads for a call that runs on one fastbp thread (``gradients``): "auto" is
    one thread for small GEMMs and the caller's setting otherwise (None: leave it)."""
    if threads == "auto":
        return 1 if flops_per_gemm < MIN_FLOPS_PER_GEMM else None
    return threads


@contextlib.contextmanager
def team(threads, flops_per_gemm):
    """Run the block with SciPy's BLAS at one thread; yields the team size for ``threads``
    (team_size). ``threads=None`` leaves BLAS alone and yields 1. If BLAS ignores the
    setting (as OpenBLAS does from a thread other than the main one, with a warning), the
    team is 1 too: a team calling a multi-threaded BLAS would oversubscribe the cores."""
    size = team_size(threads, flops_per_gemm)
    if threads is None:
        yield size
        return
    with blas_threads(1):
        yield size if current() == 1 else 1


@contextlib.contextmanager
def for_fit(threads, flops_per_gemm):
    """The team for a fit call, as ``(size, tuner)``: with "auto", a ThreadTuner (or None
    where only one thread is on offer) picks the size per chunk; otherwise ``size`` is
    used throughout (team)."""
    with team(threads, flops_per_gemm) as size:
        tuner = ThreadTuner(size) if threads == "auto" and size > 1 else None
        yield (1 if tuner else size), tuner


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
    if all(count == threads for count in previous):  # nothing to set or restore
        yield
        return
    try:
        for lib in libraries:
            lib.set_num_threads(threads)
        _warn_if_ignored(libraries, previous, threads)
        yield
    finally:
        for lib, count in zip(libraries, previous):
            lib.set_num_threads(count)


class ThreadTuner:
    """``threads="auto"`` in ``fit``: train with whichever team runs a batch faster, one
    thread or as many as the caller's BLAS setting, timed as training goes.

    Why measure: a thread that has to wait for a core other processes keep busy stalls the
    whole team at every meeting (a second OpenBLAS thread made the MNIST-1D example's small
    GEMMs 4-60x slower than one thread; a team of 2 with one core taken ran the tiny
    network 870x slower), and the smallest networks gain nothing from a second thread. Training
    starts at one thread; after ``FIRST_PROBE_S`` the other count is timed on a probe of
    about ``PROBE_S`` worth of batches, and training switches to it if it is clearly
    faster (probes are short and the machine noisy, so a switch is re-checked after
    ``RECHECK_S``). A losing count is probed again after ``PROBE_AFTER_S`` of training, the
    wait doubling each further time it loses (up to ``PROBE_MAX_S``), so probes cost a
    small share even when they run many times slower. Team sizes give results that differ in
    the last bits where BLAS runs a product (README, Threads), so the choice, and hence the
    result, can vary from run to run: pass an int for bitwise repeatability.
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
        """``(threads, batches)`` for the next compiled call: its team size and at most
        ``chunk_batches`` batches."""
        self.probing = self.choice in self.per_batch and self.trained_s >= self.wait[self.other]
        threads, batches = self.choice, chunk_batches
        if self.probing:
            threads = self.other
            batches = min(chunk_batches, max(1, round(self.PROBE_S / self.per_batch[self.choice])))
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

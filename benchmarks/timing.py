"""How the benchmarks time things: interleaved round-robin repeats with a cool-down for
spinning BLAS workers, medians of paired ratios, and the CPU time other processes took
meanwhile (the runner's module docstring says why each matters)."""
import gc
import os
import statistics
import time
from pathlib import Path

from fastbp.benchmarks.report import BUSY_CORES

COOL_DOWN_S = 0.2  # > the ~0.1 s an idle OpenBLAS worker spins; see time_round_robin
PRE_RUN_BELOW_S = 0.5


def time_call(task):
    started = time.perf_counter()
    task()
    return time.perf_counter() - started


def time_round_robin(tasks, repeats, cool_down=0.0):
    """Time each task after one warm-up call each, interleaved, rotating the order per repeat.

    Parameters
    ----------
    tasks : dict of str to callable
    repeats : int
    cool_down : float, default 0.0
        Seconds to sleep before each timed call, so that the thread pools of the task timed
        before it stop spinning (an idle OpenBLAS worker spins for about 0.1 s, taking a core
        from whatever runs next). A task whose warm-up took less than
        ``PRE_RUN_BELOW_S`` then gets one untimed call right before its timed one, to wake
        its own pools.

    Returns
    -------
    dict of str to list of float
        Seconds of each call, one per repeat, in repeat order.
    """
    names = list(tasks)
    warm_up = {name: time_call(tasks[name]) for name in names}
    pre_run = {name: cool_down > 0 and warm_up[name] < PRE_RUN_BELOW_S for name in names}
    times = {name: [] for name in names}
    gc.collect()
    gc.disable()
    try:
        for repeat in range(repeats):
            shift = repeat % len(names)
            for name in names[shift:] + names[:shift]:
                time.sleep(cool_down)
                if pre_run[name]:
                    tasks[name]()
                times[name].append(time_call(tasks[name]))
    finally:
        gc.enable()
    return times


def summarize(times, baseline):
    """Median time and median paired ratio to ``baseline`` (per repeat, then the median).

    Returns
    -------
    dict of str to dict
        Per implementation: ``times_s``, ``median_s``, ``baseline``, ``baseline_times_s``,
        ``ratios`` and ``median_ratio``.
    """
    base = times[baseline]
    summary = {}
    for name, values in times.items():
        ratios = [value / reference for value, reference in zip(values, base)]
        summary[name] = {"times_s": values, "median_s": statistics.median(values),
                         "baseline": baseline, "baseline_times_s": base, "ratios": ratios,
                         "median_ratio": statistics.median(ratios)}
    return summary


def cpu_snapshot():
    """(CPU seconds all processes have used, CPU seconds this process has used, wall time);
    the first is None where /proc/stat is missing (not Linux)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait
    except (OSError, ValueError):
        busy = None
    return busy, time.process_time(), time.perf_counter()


def other_processes_cores(before, after):
    """Mean number of cores that other processes (and the hypervisor's steal) kept busy
    between two :func:`cpu_snapshot` calls, or None if unknown."""
    if before[0] is None or after[0] is None:
        return None
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(others, 0.0) / max(after[2] - before[2], 1e-9)


def warn_if_busy(window=0.5):
    """Say so if other processes are using the CPU (measured over ``window`` seconds while
    this one sleeps): on a 2-core machine they distort 2-thread timings most."""
    before = cpu_snapshot()
    time.sleep(window)
    busy = other_processes_cores(before, cpu_snapshot())
    if busy is not None and busy > BUSY_CORES:
        print(f"warning: other processes are using {busy:.2f} cores; timings will be noisy",
              flush=True)
    return busy

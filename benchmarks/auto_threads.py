"""threads="auto" in fit against fixed teams of 1 and 2 threads, on an otherwise idle
machine and with another process keeping one core busy (the team's second thread then
waits for that core at every meeting). One fit of a few epochs per timing, the three settings interleaved; medians.

Run: python -m fastbp.benchmarks.auto_threads [--repeats 5]
"""
import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import fastbp as fb
from fastbp.benchmarks.threads import blas_info, require_threadpoolctl

#: name: (layer sizes, batch size, rows, epochs)
NETWORKS = {
    "mnist1d-like": ((40, 100, 100, 10), 100, 4000, 60),
    "small": ((784, 128, 10), 64, 16384, 5),
}
SETTINGS = (1, 2, "auto")


@contextlib.contextmanager
def busy_core(busy):
    """While active, another process spins on one core (if ``busy``)."""
    if not busy:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it start spinning
        yield
    finally:
        spinner.kill()
        spinner.wait()


def time_fits(sizes, batch, rows, epochs, repeats):
    """Median seconds of one fit at each thread setting, interleaved."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], rows)
    times = {setting: [] for setting in SETTINGS}
    for _ in range(repeats + 1):  # the first round warms up
        for setting in SETTINGS:
            model = fb.mlp(sizes, loss="cross_entropy", seed=0)
            started = time.perf_counter()
            model.fit(X, y, epochs=epochs, batch_size=batch, threads=setting, verbose=0)
            times[setting].append(time.perf_counter() - started)
    return {setting: statistics.median(values[1:]) for setting, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastbp.benchmarks.auto_threads",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    require_threadpoolctl()
    print("\n".join(["BLAS (before fit sets its threads):", *blas_info()]))
    print(f"CPUs: {os.cpu_count()}; other processes' load at start: {os.getloadavg()[0]:.2f}")
    print("\n| network | other process on one core | 1 thread s | 2 threads s | auto s |")
    print("|---|---|---|---|---|")
    for name, (sizes, batch, rows, epochs) in NETWORKS.items():
        for busy in (False, True):
            with busy_core(busy):
                medians = time_fits(sizes, batch, rows, epochs, args.repeats)
            cells = " | ".join(f"{medians[setting]:.3f}" for setting in SETTINGS)
            print(f"| {name} ({'-'.join(map(str, sizes))}, batch {batch}, {rows} rows, "
                  f"{epochs} epochs) | {'yes' if busy else 'no'} | {cells} |", flush=True)


if __name__ == "__main__":
    main()

"""Where a training step's time goes beyond its GEMMs, by difference: one epoch of the
small benchmark network (784-128-10, batch 64) with momentum or plain SGD, shuffled or in
order, next to the GEMM-only roofline, interleaved, at one BLAS thread.

    python -m fastbp.benchmarks.step_costs [--repeats 9] [--rows 16384]

Shuffled minus in order is the row gather; momentum minus plain SGD is the optimizer
state's share of the update. Not a test: nothing is asserted.
"""
import argparse
import statistics
import time

import numpy as np

import fastbp as fb
from fastbp import _native
from fastbp.benchmarks.threads import blas_info, blas_threads

SIZES, BATCH = (784, 128, 10), 64
VARIANTS = {"momentum 0.9, shuffled": (0.9, True), "momentum 0.9, in order": (0.9, False),
            "plain SGD, shuffled": (0.0, True), "plain SGD, in order": (0.0, False)}


def epoch_task(X, y, momentum, shuffle):
    """A function that trains one epoch (after one untimed warm-up) and returns seconds."""
    model = fb.mlp(SIZES, loss="cross_entropy", seed=0, threads=None)
    optimizer = fb.SGD(0.005, momentum=momentum)

    def run():
        started = time.perf_counter()
        model.fit(X, y, epochs=1, batch_size=BATCH, optimizer=optimizer, shuffle=shuffle)
        return time.perf_counter() - started
    run()
    return run


def roofline_task(X):
    model = fb.mlp(SIZES, loss="cross_entropy", seed=0, threads=None)
    model._plan.ensure_capacity(BATCH)

    def run():
        started = time.perf_counter()
        _native.core.gemm_roofline(model._plan, X, BATCH)
        return time.perf_counter() - started
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastbp.benchmarks.step_costs",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--rows", type=int, default=16384)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], args.rows)
    steps = -(-args.rows // BATCH)
    with blas_threads(1):
        print("\n".join(["BLAS, for this run:", *blas_info()]))
        tasks = {"roofline (GEMMs only)": roofline_task(X)}
        tasks.update({name: epoch_task(X, y, *settings) for name, settings in VARIANTS.items()})
        times = {name: [] for name in tasks}
        for _ in range(args.repeats):
            for name, task in tasks.items():
                times[name].append(task())
    base = statistics.median(times["roofline (GEMMs only)"])
    print(f"\n{'-'.join(map(str, SIZES))}, batch {BATCH}, {args.rows} rows, 1 BLAS thread, "
          f"median of {args.repeats}")
    print("| variant | epoch ms | / roofline | µs per step over roofline |\n|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1e3:.2f} | {median / base:.3f} | "
              f"{(median - base) / steps * 1e6:.1f} |")


if __name__ == "__main__":
    main()

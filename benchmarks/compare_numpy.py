"""Time one training epoch of fastbp and of the NumPy reference, side by side.

    python -m fastbp.benchmarks.compare_numpy --sizes 784,128,10 --batch-size 64 \\
        --samples 16384 --threads 1 --repeats 5

Both train the same float32 network (relu hidden layers, softmax cross-entropy, SGD with
momentum 0.9) from the same initial weights on the same shuffled batches. Repeats are
interleaved (fastbp, NumPy, fastbp, ...) after one warm-up epoch each, and the medians and
their ratio are printed with the BLAS thread settings.
"""
import argparse
import statistics
import time

import numpy as np

import fastbp as fb
from fastbp.benchmarks.numpy_reference import NumpyMLP
from fastbp.benchmarks.threads import blas_info, blas_threads


def time_epochs(sizes, batch_size, n_samples, repeats, dtype="float32"):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_samples, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], size=n_samples)
    model = fb.mlp(sizes, activation="relu", loss="cross_entropy", dtype=dtype, seed=0)
    reference = NumpyMLP(sizes, ["relu"] * (len(sizes) - 2) + ["identity"], "cross_entropy",
                         dtype=dtype, weights=[(l.weight, l.bias) for l in model.layers])
    optimizer = fb.SGD(lr=0.01, momentum=0.9)
    times = {"fastbp": [], "numpy": []}
    for repeat in range(repeats + 1):  # the first round is the warm-up
        started = time.perf_counter()
        model.fit(X, y, epochs=1, batch_size=batch_size, optimizer=optimizer)
        fastbp_time = time.perf_counter() - started
        started = time.perf_counter()
        reference.train_epoch(X, y, rng.permutation(n_samples), batch_size, lr=0.01, momentum=0.9)
        numpy_time = time.perf_counter() - started
        if repeat:
            times["fastbp"].append(fastbp_time)
            times["numpy"].append(numpy_time)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="784,128,10", help="layer widths, comma-separated")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=16384)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args(argv)
    sizes = [int(width) for width in args.sizes.split(",")]
    with blas_threads(args.threads) as limited:
        print(f"network {args.sizes}, batch {args.batch_size}, {args.samples} samples, "
              f"{args.dtype}, median of {args.repeats} epochs after a warm-up")
        print(f"BLAS threads requested: {args.threads}"
              + ("" if limited else " (NOT applied: pip install threadpoolctl)"))
        for line in blas_info():
            print("BLAS:", line)
        medians = time_epochs(sizes, args.batch_size, args.samples, args.repeats, args.dtype)
    print(f"fastbp epoch: {medians['fastbp'] * 1e3:8.2f} ms")
    print(f"NumPy  epoch: {medians['numpy'] * 1e3:8.2f} ms")
    print(f"NumPy / fastbp: {medians['numpy'] / medians['fastbp']:.2f}x")


if __name__ == "__main__":
    main()

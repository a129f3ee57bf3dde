"""What returning to Python every ~0.2 s costs: fit in chunks (the default, so progress bars
move and Ctrl-C works) against one compiled call per epoch, side by side.

    python -m fastbp.benchmarks.chunking [--configs tiny small] [--repeats 21]

Prints the median epoch time of each and their ratio (target: chunked / whole < 1.02).
"""
import argparse
import statistics
import time

import numpy as np

import fastbp as fb
from fastbp import threads as blas
from fastbp import training
from fastbp.benchmarks.memory import CONFIGS


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "small"], choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args(argv)
    default = training.CHUNK_SECONDS
    print(f"BLAS threads: 1 (threadpoolctl); chunk target {default} s")
    for config in args.configs:
        sizes, batch_size, n_samples = CONFIGS[config]
        rng = np.random.default_rng(0)
        X = rng.random((n_samples, sizes[0]), dtype=np.float32)
        y = rng.integers(0, sizes[-1], size=n_samples)
        model = fb.mlp(sizes, loss="cross_entropy", seed=0, threads=None)
        optimizer = fb.SGD(lr=0.001, momentum=0.9)
        times = {"chunked": [], "whole": []}
        with blas.blas_threads(1):
            for repeat in range(args.repeats + 1):  # the first round is a warm-up
                for mode, seconds in (("chunked", default), ("whole", 1e9)):
                    training.CHUNK_SECONDS = seconds
                    started = time.perf_counter()
                    model.fit(X, y, epochs=3, batch_size=batch_size, optimizer=optimizer)
                    if repeat:
                        times[mode].append((time.perf_counter() - started) / 3)
        training.CHUNK_SECONDS = default
        chunked, whole = (statistics.median(times[m]) for m in ("chunked", "whole"))
        print(f"{config:>7}: chunked {chunked * 1e3:8.2f} ms/epoch, one call per epoch "
              f"{whole * 1e3:8.2f} ms/epoch, ratio {chunked / whole:.4f}")


if __name__ == "__main__":
    main()

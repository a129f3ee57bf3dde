"""Two models trained at once in two Python threads, against one model alone.

    python -m fastbp.benchmarks.concurrency [--configs small medium] [--repeats 5]

fastbp releases the GIL for the whole compiled epoch, so on 2 cores with BLAS at 1 thread
each, two models' epochs in two threads should take about as long as one model's epoch
alone (ratio near 1.0; 2.0 would mean the threads ran one after the other). It also measures
what data-parallel training on 2 cores could reach: half the concurrent time is the time of
one epoch's work spread over both cores.
"""
import argparse
import statistics
import threading
import time

import numpy as np

import fastbp as fb
from fastbp import threads as blas
from fastbp.benchmarks.memory import CONFIGS


def time_epochs(config, repeats):
    """Median seconds of one epoch alone and of two models' epochs run concurrently."""
    sizes, batch_size, n_samples = CONFIGS[config]
    rng = np.random.default_rng(0)
    X = rng.random((n_samples, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], size=n_samples)
    models = [fb.mlp(sizes, loss="cross_entropy", seed=seed, threads=None) for seed in (0, 1)]
    optimizers = [fb.SGD(lr=0.001, momentum=0.9) for _ in models]

    def epoch(i):
        models[i].fit(X, y, epochs=1, batch_size=batch_size, optimizer=optimizers[i])

    alone, together = [], []
    with blas.blas_threads(1):
        epoch(0), epoch(1)  # warm-up
        for _ in range(repeats):
            started = time.perf_counter()
            epoch(0)
            alone.append(time.perf_counter() - started)
            workers = [threading.Thread(target=epoch, args=(i,)) for i in (0, 1)]
            started = time.perf_counter()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            together.append(time.perf_counter() - started)
    return statistics.median(alone), statistics.median(together)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["small", "medium"], choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"BLAS at 1 thread per call; median of {args.repeats}")
    for config in args.configs:
        alone, together = time_epochs(config, args.repeats)
        print(f"{config:<7} one epoch alone {alone * 1e3:8.1f} ms   two concurrently "
              f"{together * 1e3:8.1f} ms   ratio {together / alone:.2f}")


if __name__ == "__main__":
    main()

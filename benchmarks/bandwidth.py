"""The memory-bandwidth floor of an optimizer step: bytes an SGD-momentum step streams for a
network, the bandwidth this machine reaches on arrays of that size (and on DRAM-sized ones),
and the resulting time per step, next to the compiled step itself. One thread.

Run: python -m fastbp.benchmarks.bandwidth [--sizes 784 512 256 10]
"""
import argparse
import statistics
import time

import numpy as np

import fastbp
from fastbp._native import core
from fastbp.benchmarks.threads import blas_info


def median_seconds(call, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastbp.benchmarks.bandwidth",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[784, 512, 256, 10])
    args = parser.parse_args(argv)
    print("\n".join(blas_info()))
    model = fastbp.mlp(args.sizes, loss="cross_entropy", seed=0, threads=1)
    optimizer = fastbp.SGD(lr=0.01, momentum=0.9)
    model._use_optimizer(optimizer)
    plan = model._plan
    plan.grads[:] = np.random.default_rng(0).standard_normal(plan.n_params) * 1e-3
    n, n_weights = plan.n_params, sum(layer.weight.size for layer in model.layers)
    step = median_seconds(lambda: core._twin_update(optimizer, plan.params, plan.grads,
                                                    plan.state, n_weights, 1e-4, 10), 200)
    a, b, c = (np.ones(n, np.float32) for _ in range(3))
    cached = 3 * n * 4 / median_seconds(lambda: np.add(a, b, out=c), 200)
    big = 16 * 2**20
    A, B, C = (np.ones(big, np.float32) for _ in range(3))
    dram = 3 * big * 4 / median_seconds(lambda: np.add(A, B, out=C), 20)
    moved = 5 * n * 4  # the step reads P, G, S and writes P, S
    print(f"network {'-'.join(map(str, args.sizes))}: {n:,} parameters; an SGD-momentum step "
          f"moves {moved / 1e6:.1f} MB")
    print(f"bandwidth: {cached / 1e9:.1f} GB/s on arrays of {n:,} float32 (numpy add), "
          f"{dram / 1e9:.1f} GB/s on 64 MiB arrays")
    print(f"floor: {moved / cached * 1e6:.0f} us per step at the first, "
          f"{moved / dram * 1e6:.0f} us at the second; the compiled step with its bounds "
          f"pass (two more reads): {step * 1e6:.0f} us")


if __name__ == "__main__":
    main()

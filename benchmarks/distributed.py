"""Data-parallel fit over MPI (``mpiexec -n 2``) against one process, BLAS at 1 thread.

    python -m fastbp.benchmarks.distributed [--configs small medium large] [--ranks 2]

For each network of benchmarks/run.py (small 784-128-10 at batch 64, medium
784-512-256-10 at batch 128, large 2048-2048-2048-10 at batch 512; the batch is the global
one, float32), it times one epoch of ``fit`` in one process (threads=1), then launches
``mpiexec -n RANKS`` on this module's worker, which times the same epoch with ``comm=``
(each rank holding 1/RANKS of the rows) and then the three parts of a step alone: the
rank's gradient (``shard_gradients``), the ``Allreduce`` of the flat gradient, and the
update (``apply_step``). The per-step Python cost is the fit's time per step minus those
three. Each figure is the best of ``--repeats`` epochs. Needs mpi4py and an mpiexec
(``pip install "fastbp[distributed]"``).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

CONFIGS = {"small": ((784, 128, 10), 64, 8192), "medium": ((784, 512, 256, 10), 128, 8192),
           "large": ((2048, 2048, 2048, 10), 512, 2048)}


def data(config):
    sizes, batch, rows = CONFIGS[config]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, sizes[0])).astype(np.float32)
    return X, rng.integers(0, sizes[-1], size=rows)


def model(config):
    import fastbp

    return fastbp.mlp(CONFIGS[config][0], loss="cross_entropy", seed=0, threads=1)


def best_epoch(fit, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fit()
        times.append(time.perf_counter() - started)
    return min(times)


def one_process(config, repeats):
    import fastbp
    from threadpoolctl import threadpool_limits

    X, y = data(config)
    net, batch = model(config), CONFIGS[config][1]
    optimizer = fastbp.SGD(lr=0.005, momentum=0.9)
    with threadpool_limits(1, user_api="blas"):
        net.fit(X[:batch * 2], y[:batch * 2], epochs=1, batch_size=batch, optimizer=optimizer)
        return best_epoch(lambda: net.fit(X, y, epochs=1, batch_size=batch, shuffle=True,
                                          optimizer=optimizer), repeats)


def worker(config, repeats):
    """Under mpiexec: the distributed epoch, then a step's parts timed alone (rank 0
    prints one JSON line)."""
    from mpi4py import MPI
    from threadpoolctl import threadpool_limits

    import fastbp
    from fastbp._native import core

    comm = MPI.COMM_WORLD
    X, y = data(config)
    lo, hi = comm.rank * len(X) // comm.size, (comm.rank + 1) * len(X) // comm.size
    X, y = X[lo:hi], y[lo:hi]
    net, batch = model(config), CONFIGS[config][1]
    optimizer = fastbp.SGD(lr=0.005, momentum=0.9)
    n_steps = -(-CONFIGS[config][2] // batch)
    with threadpool_limits(1, user_api="blas"):
        fit = lambda: net.fit(X, y, epochs=1, batch_size=batch, optimizer=optimizer,  # noqa: E731
                              comm=comm)
        fit()
        comm.Barrier()
        epoch = best_epoch(fit, repeats)
        # A step's parts alone, on this rank's first local batch of rows.
        plan = net._plan
        local = min(len(X), batch // comm.size)
        rows = np.arange(local, dtype=np.intp)
        totals = np.zeros(2, dtype=np.float32)
        bounds = np.full(3, -1.0)
        buffer = np.zeros(plan.n_params, dtype=np.float32)
        parts = {"gradient": [], "allreduce": [], "step": []}
        labels = np.ascontiguousarray(y, dtype=np.intp)
        for _ in range(max(3, min(20, n_steps))):
            comm.Barrier()
            t0 = time.perf_counter()
            core.shard_gradients(plan, X, np.zeros((0, 0), np.float32), labels, rows, rows,
                                 0, local, batch, totals)
            t1 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buffer)
            t2 = time.perf_counter()
            core.apply_step(plan, optimizer, totals, 1e-6, plan.steps + 1, bounds)
            t3 = time.perf_counter()
            for key, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
                parts[key].append(seconds)
    median = {key: float(np.median(values)) for key, values in parts.items()}
    per_step = epoch / n_steps
    if comm.rank == 0:
        print(json.dumps({"config": config, "epoch": epoch, "steps": n_steps,
                          "per_step": per_step, **median,
                          "python": per_step - sum(median.values()),
                          "gradient_bytes": int(plan.n_params * 4)}), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS),
                        help="networks to time")
    parser.add_argument("--ranks", type=int, default=2, help="MPI processes")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed; best kept")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.repeats)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               HYDRA_LAUNCHER="fork")
    results = []
    for config in args.configs:
        single = one_process(config, args.repeats)
        # Run from this file's folder: from a source checkout's root, ``python -m fastbp``
        # would import the uncompiled sources there instead of the installed package.
        run = subprocess.run(
            [mpiexec, "-n", str(args.ranks), sys.executable, "-m", "fastbp.benchmarks.distributed",
             "--worker", config, "--repeats", str(args.repeats)],
            capture_output=True, text=True, env=env, timeout=1800,
            cwd=os.path.dirname(os.path.abspath(__file__)))
        if run.returncode != 0:
            raise RuntimeError(f"mpiexec -n {args.ranks} failed (exit {run.returncode}):\n"
                               f"{run.stderr[-4000:]}")
        result = json.loads(run.stdout.strip().splitlines()[-1])
        result["one_process"] = single
        result["speedup"] = single / result["epoch"]
        results.append(result)
        print(f"{config:>6}: 1 process {single * 1e3:9.1f} ms/epoch, {args.ranks} ranks "
              f"{result['epoch'] * 1e3:9.1f} ms ({result['speedup']:.2f}x); per step "
              f"{result['per_step'] * 1e6:9.1f} us = gradient {result['gradient'] * 1e6:.1f} + "
              f"Allreduce of {result['gradient_bytes'] / 1e6:.2f} MB "
              f"{result['allreduce'] * 1e6:.1f} + update {result['step'] * 1e6:.1f} + "
              f"Python and waiting {result['python'] * 1e6:.1f} us", flush=True)
    return results


if __name__ == "__main__":
    main()

"""fit(threads=n) and predict at each team size, one fresh process per cell, interleaved
over rounds; with several ``--python`` interpreters (e.g. two virtualenvs holding two builds
of fastbp), an A/B table of the same cells side by side.

Run: python -m fastbp.benchmarks.fit_threads [--threads 1 2] [--rounds 5]
         [--configs tiny small medium large] [--python /path/a/python /path/b/python]

Each process trains the runner's network (benchmarks/configs.py; the large one on 2048
rows) for one warm-up and five timed epochs, then predicts 4096 rows six times, and prints
the medians; the table gives the median over rounds and, per cell, max/min over rounds
(fresh processes: how bimodal the timings are). Why fresh processes: a thread pool that one
measurement leaves spinning takes a core from the next (OpenBLAS's, torch's, a team's).
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

ROWS = {"tiny": 8192, "small": 8192, "medium": 8192, "large": 2048}
EPOCHS = 5


def cell(config_name, threads):
    """In the child: median ms of fit epochs and of predicts, as JSON on stdout."""
    import numpy as np
    import fastbp
    from fastbp.benchmarks.configs import CONFIGS
    from threadpoolctl import threadpool_limits

    config = CONFIGS[config_name]
    with threadpool_limits(threads, user_api="blas"):
        rng = np.random.default_rng(0)
        n = ROWS[config_name]
        X = rng.standard_normal((n, config.sizes[0])).astype(np.float32)
        y = rng.integers(0, config.sizes[-1], n)
        model = fastbp.mlp(config.sizes, activation="relu", loss="cross_entropy", seed=0,
                           threads=threads)
        optimizer = fastbp.SGD(lr=0.01, momentum=0.9)
        fits, predicts = [], []
        for _ in range(EPOCHS + 1):
            started = time.perf_counter()
            model.fit(X, y, epochs=1, batch_size=config.batch_size, optimizer=optimizer)
            fits.append(time.perf_counter() - started)
        rows = np.resize(X, (4096, config.sizes[0]))
        for _ in range(EPOCHS + 1):
            started = time.perf_counter()
            model.predict(rows)
            predicts.append(time.perf_counter() - started)
    print(json.dumps({"fit": 1e3 * statistics.median(fits[1:]),
                      "predict": 1e3 * statistics.median(predicts[1:])}))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastbp.benchmarks.fit_threads",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--configs", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--python", nargs="+", default=[sys.executable],
                        help="interpreters to compare (each with fastbp installed)")
    parser.add_argument("--cell", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        return cell(args.cell[0], int(args.cell[1]))
    times = {}
    for _ in range(args.rounds):
        for config in args.configs:
            for threads in args.threads:
                for python in args.python:
                    out = subprocess.run(
                        [python, "-m", "fastbp.benchmarks.fit_threads", "--cell", config,
                         str(threads)], capture_output=True, text=True, check=True,
                        cwd=__import__("tempfile").gettempdir())  # not a source checkout
                    result = json.loads(out.stdout.strip().splitlines()[-1])
                    times.setdefault((config, threads, python), []).append(result)
    print(f"{args.rounds} rounds; one fresh process per cell; ms (max/min over rounds)")
    header = " | ".join(f"fit {i} | predict {i}" for i in range(len(args.python)))
    print(f"| network | threads | {header} |\n|---|---|" + "---|---|" * len(args.python))
    for config in args.configs:
        for threads in args.threads:
            cells = []
            for python in args.python:
                runs = times[(config, threads, python)]
                for key in ("fit", "predict"):
                    values = [run[key] for run in runs]
                    cells.append(f"{statistics.median(values):.2f} "
                                 f"({max(values) / min(values):.2f})")
            print(f"| {config} | {threads} | " + " | ".join(cells) + " |")
    for i, python in enumerate(args.python):
        print(f"{i}: {python}")
    return times


if __name__ == "__main__":
    main()

"""fastbp.sklearn.MLPClassifier against scikit-learn's on the digits data, at one BLAS thread.

    python -m fastbp.benchmarks.sklearn_digits [--repeats 5] [--seed 0]

Both estimators get the same hyper-parameters and ``random_state`` (so the same initial
weights), the digits scaled to [0, 1], a fixed stratified 75/25 split. Every BLAS pool in the
process (NumPy's and SciPy's OpenBLAS) is pinned to one thread with threadpoolctl; the
settings are printed. Fit times are the median of ``--repeats`` interleaved runs; each row
also gives the epochs run (``n_iter_``: both stop by the same tol / n_iter_no_change rule,
or at max_iter) and the test accuracy. The last row of each config times only the GEMMs of
scikit-learn's epochs in float32 (fastbp's roofline): scikit-learn's time over that is the
largest speed-up any library calling this BLAS could reach. Not a test: nothing is asserted.
"""
import argparse
import statistics
import sys
import time
import warnings

try:
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as SklearnMLP
except ImportError:  # pragma: no cover
    raise SystemExit("this benchmark needs scikit-learn: python -m pip install 'fastbp[sklearn]'")

from fastbp import _native, threads as fastbp_threads
from fastbp.benchmarks.threads import blas_info, require_threadpoolctl
from fastbp.sklearn import MLPClassifier as FastbpMLP

#: (label, hyper-parameters shared by both). The first two are scikit-learn's defaults.
CONFIGS = [
    ("adam, defaults (hidden (100,), batch 200)", dict(solver="adam")),
    ("sgd, defaults (hidden (100,), batch 200)", dict(solver="sgd")),
    ("sgd, lr 0.01 (hidden (100,), batch 200)", dict(solver="sgd", learning_rate_init=0.01)),
    ("adam, hidden (32,), batch 32", dict(solver="adam", hidden_layer_sizes=(32,), batch_size=32)),
]

ESTIMATORS = [("scikit-learn", SklearnMLP, {}),
              ("fastbp float32", FastbpMLP, {}),
              ("fastbp float64", FastbpMLP, {"dtype": "float64"})]


def digits(seed):
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=seed, stratify=y)


def time_fit(cls, params, X_train, y_train):
    model = cls(**params)
    started = time.perf_counter()
    model.fit(X_train, y_train)
    return time.perf_counter() - started, model


def gemm_limit(hidden, batch_size, X_train, epochs, repeats):
    """Seconds that only the GEMMs of ``epochs`` float32 epochs take through SciPy's BLAS
    (fastbp's roofline, median of ``repeats``): no implementation on this BLAS can train
    those epochs faster, so scikit-learn's time over it caps any speed-up."""
    import numpy as np

    from fastbp import mlp
    model = mlp([X_train.shape[1], *hidden, 10], loss="cross_entropy", threads=None)
    X = np.ascontiguousarray(X_train, dtype=np.float32)
    batch = min(batch_size, X.shape[0])
    model._plan.ensure_capacity(batch)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(epochs):
            _native.core.gemm_roofline(model._plan, X, batch)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="split and random_state")
    args = parser.parse_args(argv)
    threadpoolctl = require_threadpoolctl()
    X_train, X_test, y_train, y_test = digits(args.seed)
    warnings.simplefilter("ignore", ConvergenceWarning)
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        print(f"digits: {X_train.shape[0]} train / {X_test.shape[0]} test rows, "
              f"{X_train.shape[1]} features; median of {args.repeats} interleaved fits")
        print(f"Python {sys.version.split()[0]}, fastbp core variant {_native.VARIANT}, "
              f"fastbp sees {fastbp_threads.current()} BLAS thread(s)")
        for line in blas_info():
            print("  BLAS:", line)
        for label, shared in CONFIGS:
            params = dict(shared, random_state=args.seed)
            times = {name: [] for name, _, _ in ESTIMATORS}
            fitted = {}
            for _ in range(args.repeats):
                for name, cls, extra in ESTIMATORS:
                    seconds, fitted[name] = time_fit(cls, {**params, **extra}, X_train, y_train)
                    times[name].append(seconds)
            print(f"\n{label}")
            base = statistics.median(times["scikit-learn"])
            for name, _, _ in ESTIMATORS:
                median, model = statistics.median(times[name]), fitted[name]
                print(f"  {name:<15} fit {median:8.3f} s  ({base / median:5.1f}x)  "
                      f"n_iter_ {model.n_iter_:>3}  "
                      f"per epoch {1e3 * median / model.n_iter_:6.2f} ms  "
                      f"accuracy {100 * model.score(X_test, y_test):6.2f} %")
            epochs = fitted["scikit-learn"].n_iter_
            limit = gemm_limit(params.get("hidden_layer_sizes", (100,)),
                               params.get("batch_size", 200), X_train, epochs, args.repeats)
            print(f"  {'GEMMs only':<15} fit {limit:8.3f} s  ({base / limit:5.1f}x)  "
                  f"float32, scikit-learn's {epochs} epochs: the most any library on this "
                  "BLAS could gain")


if __name__ == "__main__":
    main()

"""fastbp's MLPClassifier next to scikit-learn's on the 8x8 digits: accuracy and fit time.

    python examples/digits.py [--epochs 200] [--threads 1] [--repeats 3]

The digits are scikit-learn's bundled copy (1797 images of 8x8 pixels, 16 grey levels; no
download), scaled to [0, 1] and split 75/25, stratified. Both estimators get the same
hyper-parameters (scikit-learn's defaults: one hidden layer of 100 relu units, Adam at
1e-3, batches of 200, L2 penalty 1e-4, stopping after 10 epochs without improvement or at
``--epochs``) and the same ``random_state``, so they start from the same weights.
fastbp.sklearn.MLPClassifier trains in float32 by default; scikit-learn in the dtype of X
(float64 here). Every BLAS in the process is held at ``--threads`` threads (threadpoolctl)
for both, and the fit time is the median of ``--repeats`` fits. Needs scikit-learn
(``python -m pip install "fastbp[sklearn]"``).
"""
import argparse
import statistics
import sys
import time
import warnings


def require_sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise SystemExit("examples/digits.py compares with scikit-learn, which is not "
                         "installed: python -m pip install scikit-learn") from None


def median_fit(make, X, y, repeats):
    """Fit a fresh estimator ``repeats`` times; return the median time and the last one."""
    times = []
    for _ in range(repeats):
        estimator = make()
        started = time.perf_counter()
        estimator.fit(X, y)
        times.append(time.perf_counter() - started)
    return statistics.median(times), estimator


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=200,
                        help="max_iter of both estimators (default 200, scikit-learn's)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for both: scikit-learn's BLAS, fastbp's team (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="fits per estimator; the fit time is their median (default 3)")
    args = parser.parse_args(argv)
    require_sklearn()

    import sklearn
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as SklearnMLP
    from threadpoolctl import threadpool_info, threadpool_limits

    import fastbp
    from fastbp.sklearn import MLPClassifier as FastbpMLP

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    shared = dict(hidden_layer_sizes=(100,), random_state=0, max_iter=args.epochs)
    print(f"digits: {len(X_train)} training / {len(X_test)} test images of 8x8 pixels, "
          f"10 classes; both estimators: {shared}, scikit-learn's defaults otherwise")

    results = {}
    with threadpool_limits(limits=args.threads, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # expected with few --epochs
        for pool in threadpool_info():
            if pool["user_api"] == "blas":
                print(f"BLAS: {pool['internal_api']} {pool['version']} "
                      f"({pool.get('architecture')}), {pool['num_threads']} thread(s)")
        print(f"\n{'':24} {'fit time':>9} {'epochs':>7} {'test accuracy':>14}")
        for name, make in ((f"scikit-learn {sklearn.__version__}", lambda: SklearnMLP(**shared)),
                           (f"fastbp {fastbp.__version__} (float32)",
                            lambda: FastbpMLP(**shared))):
            seconds, model = median_fit(make, X_train, y_train, args.repeats)
            accuracy = model.score(X_test, y_test)
            results[name.split()[0]] = {"seconds": seconds, "accuracy": accuracy,
                                        "epochs": model.n_iter_}
            print(f"{name:24} {seconds:8.3f}s {model.n_iter_:7d} {accuracy:13.2%}")
    ratio = results["scikit-learn"]["seconds"] / results["fastbp"]["seconds"]
    print(f"\nfastbp fit {ratio:.1f}x as fast as scikit-learn's here "
          f"(median of {args.repeats} fits each, {args.threads} thread(s))")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])

"""fastbp on Dask: stream a dask array through ``partial_fit``, then search hyper-parameters.

Part 1 builds a dask array chunk by chunk from a seeded generator (each chunk is made only
when a worker needs it: the larger-than-memory pattern, at a small size here) and trains
``dask_ml.wrappers.Incremental(fastbp.sklearn.MLPClassifier(...))`` on it: one
``partial_fit`` per chunk, in order, on the cluster's workers. Part 2 runs scikit-learn's
``GridSearchCV`` over fastbp's estimator with joblib's Dask backend, so the candidates
train on the workers in parallel.

    pip install "fastbp[distributed]"      # dask, distributed, dask-ml (and mpi4py, mpich)
    python examples/dask_search.py --workers 2
"""
import argparse
import sys


def chunk(seed, rows, features, classes):
    """One block of rows: blobs around fixed class centres, drawn from ``seed``."""
    import numpy as np

    centres = np.random.default_rng(0).normal(scale=3.0, size=(classes, features))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=rows)
    return centres[labels] + rng.normal(size=(rows, features)), labels


def streamed_data(n_chunks, rows, features, classes):
    """A dask (X, y) of n_chunks blocks, each computed on demand by ``chunk``."""
    import dask
    import dask.array as da
    import numpy as np

    blocks = [dask.delayed(chunk)(seed, rows, features, classes) for seed in range(1, n_chunks + 1)]
    X = da.concatenate([da.from_delayed(block[0], (rows, features), dtype=np.float64)
                        for block in blocks])
    y = da.concatenate([da.from_delayed(block[1], (rows,), dtype=np.int64) for block in blocks])
    return X, y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--chunks", type=int, default=8, help="blocks streamed by partial_fit")
    parser.add_argument("--rows", type=int, default=500, help="rows per block")
    args = parser.parse_args(argv)
    try:
        import joblib
        from dask.distributed import Client, LocalCluster
        from dask_ml.wrappers import Incremental
        from sklearn.model_selection import GridSearchCV
    except ImportError as error:
        sys.exit(f"this example needs dask, distributed, dask-ml and scikit-learn ({error}); "
                 "pip install \"fastbp[distributed]\" scikit-learn")
    from fastbp.sklearn import MLPClassifier

    features, classes = 10, 4
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        print(f"cluster: {len(client.scheduler_info()['workers'])} workers")
        X, y = streamed_data(args.chunks, args.rows, features, classes)
        incremental = Incremental(MLPClassifier(hidden_layer_sizes=(32,), random_state=0),
                                  scoring="accuracy")
        incremental.fit(X, y, classes=list(range(classes)))
        X_test, y_test = chunk(10_000, 1000, features, classes)
        streamed = incremental.estimator_.score(X_test, y_test)
        print(f"partial_fit over {args.chunks} streamed blocks of {args.rows} rows: "
              f"test accuracy {streamed:.3f}")

        X_small, y_small = chunk(1, 600, features, classes)
        search = GridSearchCV(MLPClassifier(max_iter=30, random_state=0),
                              {"hidden_layer_sizes": [(8,), (32,)], "alpha": [1e-4, 1e-1]},
                              cv=3)
        with joblib.parallel_backend("dask"):
            search.fit(X_small, y_small)
        print(f"GridSearchCV on the workers: best {search.best_params_}, "
              f"cv accuracy {search.best_score_:.3f}")
    return streamed, search


if __name__ == "__main__":
    main()

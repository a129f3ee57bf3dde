"""fastbp.sklearn on Dask, on a real 2-worker ``distributed.LocalCluster`` (worker processes,
so estimators travel pickled): ``dask_ml.wrappers.Incremental`` streams a dask array's
blocks through ``partial_fit``, and ``GridSearchCV`` runs under joblib's Dask backend. The
oracle for each is the same work done locally in one process. Skipped, saying why, without
dask, distributed, dask-ml or scikit-learn."""
import warnings

import numpy as np
import pytest

for _package in ("sklearn", "dask", "distributed", "dask_ml"):
    pytest.importorskip(_package, reason=f"{_package} is not installed "
                        "(pip install \"fastbp[distributed]\" scikit-learn)")

import dask.array as da  # noqa: E402
import joblib  # noqa: E402
from dask.distributed import Client, LocalCluster  # noqa: E402
from dask_ml.wrappers import Incremental  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from fastbp.sklearn import MLPClassifier  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        yield client


def blobs(n_rows=390, n_features=6, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, size=n_rows)
    return centres[y] + rng.normal(size=(n_rows, n_features)), y


def test_incremental_streams_the_blocks_through_partial_fit(client):
    """Incremental on the cluster ends with the model of partial_fit called on each block
    of the dask array, in order, in this process."""
    X, y = blobs()
    chunks = 97  # uneven: blocks of 97, 97, 97, 99 rows
    X_dask = da.from_array(X, chunks=(chunks, X.shape[1]))
    y_dask = da.from_array(y, chunks=chunks)
    make = lambda: MLPClassifier(hidden_layer_sizes=(11,), random_state=0,  # noqa: E731
                                 batch_size=16)
    streamed = Incremental(make(), scoring="accuracy", shuffle_blocks=False).fit(
        X_dask, y_dask, classes=[0, 1, 2])
    local = make()
    for start in range(0, len(X), chunks):
        local.partial_fit(X[start:start + chunks], y[start:start + chunks], classes=[0, 1, 2])
    for ours, theirs in zip(streamed.estimator_.coefs_ + streamed.estimator_.intercepts_,
                            local.coefs_ + local.intercepts_):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(streamed.predict(X_dask).compute(), local.predict(X))


def test_grid_search_runs_on_the_workers(client):
    """GridSearchCV under joblib.parallel_backend("dask") scores every candidate as the
    same search does in this process, and the cluster really ran the fits."""
    X, y = blobs(seed=1)
    grid = {"hidden_layer_sizes": [(5,), (13,)], "alpha": [1e-4, 1e-1]}
    make = lambda: GridSearchCV(MLPClassifier(max_iter=15, random_state=0), grid,  # noqa: E731
                                cv=3)
    before = sum(len(log) for log in client.run(lambda dask_worker: dask_worker.state.log)
                 .values()) if hasattr(client, "run") else 0
    with joblib.parallel_backend("dask"):
        remote = make().fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = make().fit(X, y)
    np.testing.assert_allclose(remote.cv_results_["mean_test_score"],
                               local.cv_results_["mean_test_score"], rtol=1e-12)
    assert remote.best_params_ == local.best_params_
    tasks = client.run(lambda dask_worker: len(dask_worker.state.log))
    assert len(tasks) == 2 and sum(tasks.values()) > before

"""Cases of tests/test_distributed.py, run on every rank under ``mpiexec -n N``.

``python mpi_cases.py CASE`` runs one case. Each rank builds the same model and data from
fixed seeds and trains on its shard with comm=MPI.COMM_WORLD; rank 0 also trains the same
model in one process on the whole data and compares. A rank that finds a mismatch, or an
exception a case expects but did not get, aborts every rank (fail); the test fails unless
every rank exits 0. Expected failures print "EXPECTED <message>" on every rank for the test to read.
"""
import sys

import numpy as np
from mpi4py import MPI

import fastbp
from fastbp import callbacks as cb
from fastbp.distributed import DistributedError

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
RTOL = 1e-10


def fail():
    """End every rank now with a non-zero status (a plain exit could leave the others
    waiting in a collective call until the test's timeout)."""
    sys.stdout.flush()
    comm.Abort(1)


def shard_bounds(n_rows):
    """Uneven shards (rank r gets more rows than rank r - 1), so batches straddle them."""
    weights = np.arange(1, size + 1)
    edges = np.concatenate([[0], np.cumsum(weights)]) * n_rows // weights.sum()
    return int(edges[rank]), int(edges[rank + 1])


def data(n_rows=203, n_features=7, n_classes=3, seed=5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features))
    y = rng.integers(0, n_classes, size=n_rows)
    return X, y


def model(dropout=0.0, seed=11, loss="cross_entropy", sizes=(7, 13, 6, 3), activation="tanh",
          **kwargs):
    return fastbp.mlp(list(sizes), activation=activation, loss=loss, dtype="float64", seed=seed,
                      dropout=dropout, threads=1, **kwargs)


def compare(name, distributed_model, reference_model):
    """Parameters equal within RTOL (rank 0 checks; every rank learns the verdict)."""
    ok = True
    if rank == 0:
        a, b = distributed_model.parameters, reference_model.parameters
        ok = bool(np.allclose(a, b, rtol=RTOL, atol=0))
        if not ok:
            print(f"MISMATCH {name}: max rel diff "
                  f"{np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))}", flush=True)
    ok = comm.bcast(ok)
    same = comm.allgather(distributed_model.parameters.tobytes())
    if any(other != same[0] for other in same):
        print(f"MISMATCH {name}: ranks hold different parameters", flush=True)
        ok = False
    if not ok:
        fail()


def fit_both(settings, dropout=0.0, weights=None, n_rows=203, validation=False, **model_kw):
    X, y = data(n_rows)
    lo, hi = shard_bounds(len(X))
    # Fresh settings for each fit: callbacks and schedules change the optimizer's lr.
    shard, whole = settings(), settings()
    if weights is not None:
        shard["sample_weight"], whole["sample_weight"] = weights[lo:hi], weights
    if validation:
        Xv, yv = data(37, seed=9)
        vlo, vhi = (np.arange(size + 1) * len(Xv) // size)[rank:rank + 2]
        shard["validation_data"] = (Xv[vlo:vhi], yv[vlo:vhi])
        whole["validation_data"] = (Xv, yv)
    mine = model(dropout, **model_kw)
    history = mine.fit(X[lo:hi], y[lo:hi], comm=comm, **shard)
    reference = model(dropout, **model_kw)
    expected = reference.fit(X, y, **whole) if rank == 0 else None
    return mine, reference, history, expected


def case_equal_sgd():
    settings = lambda: dict(epochs=3, batch_size=16,  # noqa: E731
                            optimizer=fastbp.SGD(lr=0.05, momentum=0.9))
    mine, reference, history, expected = fit_both(settings)
    compare("sgd shuffled", mine, reference)
    if rank == 0:
        assert np.allclose(history.loss, expected.loss, rtol=1e-10), (history.loss, expected.loss)
        assert np.allclose(history.accuracy, expected.accuracy, rtol=1e-12)
        assert history.stop_reason == expected.stop_reason == "completed"
        for key in expected.history:
            if key.startswith(("grad_norm", "update_ratio")):
                assert np.allclose(history.history[key], expected.history[key], rtol=1e-9), key


def case_equal_unshuffled_partial():
    # 203 rows, batch 10: a last batch of 3 rows; no shuffle.
    settings = lambda: dict(epochs=2, batch_size=10, shuffle=False,  # noqa: E731
                            optimizer=fastbp.Adam(lr=0.01))
    mine, reference, _, _ = fit_both(settings)
    compare("adam unshuffled", mine, reference)


def case_equal_dropout_weights():
    weights = np.random.default_rng(3).uniform(0.1, 2.0, size=203)
    settings = lambda: dict(epochs=3, batch_size=17,  # noqa: E731
                            optimizer=fastbp.AdamW(lr=0.01, weight_decay=0.1))
    mine, reference, _, _ = fit_both(settings, dropout=0.3, weights=weights)
    compare("dropout + sample weights", mine, reference)


def case_equal_clip_validation_callbacks():
    settings = lambda: dict(  # noqa: E731
        epochs=6, batch_size=32, optimizer=fastbp.SGD(lr=0.1, momentum=0.5, clip_norm=0.5),
        callbacks=[cb.EarlyStopping(monitor="val_loss", patience=2),
                   cb.ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5)])
    mine, reference, history, expected = fit_both(settings, validation=True)
    compare("clip + validation + callbacks", mine, reference)
    if rank == 0:
        assert np.allclose(history.val_loss, expected.val_loss, rtol=1e-10)
        assert np.allclose(history.val_accuracy, expected.val_accuracy, rtol=1e-12)
        assert history.stop_reason == expected.stop_reason, (history.stop_reason,
                                                             expected.stop_reason)


def case_equal_regression_layernorm():
    X, _ = data()
    targets = np.sin(X[:, :2])
    lo, hi = shard_bounds(len(X))
    specs = lambda: [fastbp.Dense(7, 9), fastbp.LayerNorm(9), fastbp.Activation("relu"),  # noqa: E731
                     fastbp.Dense(9, 2)]
    mine = fastbp.Sequential(specs(), loss="huber", dtype="float64", seed=2, threads=1)
    reference = fastbp.Sequential(specs(), loss="huber", dtype="float64", seed=2, threads=1)
    settings = dict(epochs=2, batch_size=25, optimizer=fastbp.RMSprop(lr=0.01))
    mine.fit(X[lo:hi], targets[lo:hi], comm=comm, **settings)
    if rank == 0:
        reference.fit(X, targets, **settings)
    compare("huber + layernorm + rmsprop", mine, reference)


def case_checkpoint_max_time(path):
    X, y = data()
    lo, hi = shard_bounds(len(X))
    mine = model()
    history = mine.fit(X[lo:hi], y[lo:hi], comm=comm, epochs=2, batch_size=8,
                       callbacks=[cb.ModelCheckpoint(path, monitor="loss")])
    comm.Barrier()
    loaded = fastbp.load(path)
    assert np.array_equal(loaded.parameters, mine.parameters)
    history = mine.fit(X[lo:hi], y[lo:hi], comm=comm, epochs=10_000, batch_size=8,
                       max_time=0.5)
    assert history.stop_reason == "max_time", history.stop_reason
    assert len(set(comm.allgather(history.epochs))) == 1
    compare("after max_time", mine, mine)


def case_ctrl_c_on_one_rank():
    """Ctrl-C reaching rank 0 only (a SIGINT it sends itself after epoch 1) stops every
    rank after that epoch, each returning the same History."""
    import os
    import signal

    class Interrupt(cb.Callback):
        def on_epoch_end(self, epoch, logs):
            if rank == 0 and epoch == 0:
                os.kill(os.getpid(), signal.SIGINT)
    X, y = data()
    lo, hi = shard_bounds(len(X))
    history = model().fit(X[lo:hi], y[lo:hi], comm=comm, epochs=50, callbacks=[Interrupt()])
    assert history.stop_reason == "interrupted", history.stop_reason
    assert comm.allgather(history.epochs) == [1] * size


def expect_error(call, *fragments):
    """Every rank must raise DistributedError (or, for a local check, its error) naming
    all fragments; prints EXPECTED on success."""
    try:
        call()
    except Exception as error:  # noqa: BLE001
        text = str(error)
        missing = [f for f in fragments if f not in text]
        if missing:
            print(f"WRONG ERROR {type(error).__name__}: {text} (missing {missing})", flush=True)
            fail()
        print(f"EXPECTED {type(error).__name__}: {text}", flush=True)
        return
    print("NO ERROR", flush=True)
    fail()


def case_bad_features():
    X, y = data()
    if rank == 1:
        X = X[:, :5]
    expect_error(lambda: model().fit(X, y, comm=comm), "rank 1", "X has 5 features")


def case_no_rows():
    X, y = data()
    lo, hi = shard_bounds(len(X))
    if rank == size - 1:
        lo = hi
    expect_error(lambda: model().fit(X[lo:hi], y[lo:hi], comm=comm), f"rank {size - 1}")


def case_mismatched_models():
    X, y = data()
    expect_error(lambda: model(seed=rank).fit(X, y, comm=comm), "differs from rank 0",
                 "checksum")


def case_batchnorm():
    X, y = data()
    expect_error(lambda: model(norm="batch").fit(X, y, comm=comm), "BatchNorm",
                 "every row of the global batch")


def case_callback_raises():
    class Boom(cb.Callback):
        def on_epoch_end(self, epoch, logs):
            if rank == 1 and epoch == 1:
                raise RuntimeError("boom on purpose")
    X, y = data()
    lo, hi = shard_bounds(len(X))
    expect_error(lambda: model().fit(X[lo:hi], y[lo:hi], comm=comm, epochs=5,
                                     callbacks=[Boom()]), "rank 1", "boom on purpose")
    # Every rank is still in step: a further fit works.
    model().fit(X[lo:hi], y[lo:hi], comm=comm, epochs=1)


def case_step_raises():
    """A rank whose gradient call fails in the middle of an epoch (here: a monkeypatched
    core that raises on rank 0's third batch): every rank raises, none waits."""
    import fastbp.distributed as dist
    real, calls = dist._core.shard_gradients, [0]

    class Core:
        def __getattr__(self, name):
            return getattr(fastbp._native.core, name)

        def shard_gradients(self, *args):
            calls[0] += 1
            if rank == 0 and calls[0] == 3:
                raise MemoryError("no memory on purpose")
            return real(*args)
    dist._core = Core()
    X, y = data()
    lo, hi = shard_bounds(len(X))
    expect_error(lambda: model().fit(X[lo:hi], y[lo:hi], comm=comm, epochs=2, batch_size=8),
                 "rank 0", "no memory on purpose")


def case_divergence():
    """A diverging fit raises the one-process DivergenceError on every rank, and the
    ranks keep identical (finite) parameters."""
    X, _ = data(50)
    targets = np.random.default_rng(0).normal(size=(50, 3))
    lo, hi = shard_bounds(len(X))
    mine = model(loss="mse", activation="relu")
    before = mine.parameters.copy()
    expect_error(lambda: mine.fit(X[lo:hi] * 1e150, targets[lo:hi], comm=comm, epochs=1,
                                  optimizer=fastbp.SGD(lr=1e100)), "NaN or infinite")
    assert np.array_equal(mine.parameters, before)


def case_exit_on_rank_1():
    if rank == 1:
        fail()


def case_hang_on_rank_1():
    if rank == 1:
        comm.recv(source=0)  # rank 0 never sends


if __name__ == "__main__":
    name = sys.argv[1]
    globals()["case_" + name](*sys.argv[2:])
    comm.Barrier()
    print(f"OK {name} rank {rank}", flush=True)

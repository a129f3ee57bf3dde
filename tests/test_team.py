"""fastbp's thread team: fit, train_step, predict and evaluate give the same result at every
team size, bitwise where fastbp does the arithmetic (its C loops for small products, every
elementwise op, norm, loss and optimizer step), to rounding where BLAS runs a product
(OpenBLAS's result depends on how a product is split: README, Threads). Also: concurrent
models, and no threads left behind.
"""
import os
import threading

import numpy as np
import pytest

import fastbp as fb
from fastbp import threads
from fastbp._native import core

TEAMS = (1, 2, 3)

NETWORKS = {
    "dense": lambda: [fb.Dense(7, 9, "tanh"), fb.Dense(9, 5, "relu"), fb.Dense(5, 3)],
    "dropout": lambda: [fb.Dropout(0.2), fb.Dense(7, 9, "relu"), fb.Dropout(0.5),
                        fb.Dense(9, 3)],
    "batchnorm": lambda: [fb.Dense(7, 9, "tanh"), fb.BatchNorm(9), fb.Dense(9, 3)],
    "layernorm": lambda: [fb.Dense(7, 9), fb.LayerNorm(9), fb.Activation("gelu"),
                          fb.Dense(9, 3)],
    "residual": lambda: [
        fb.Dense(7, 8), fb.Residual([fb.BatchNorm(8), fb.Dense(8, 12, "relu"), fb.Dropout(0.3),
                                     fb.Dense(12, 8)]),
        fb.LayerNorm(8), fb.Activation("relu"), fb.Dense(8, 3)],
}


@pytest.fixture(autouse=True)
def products_in_fastbps_loops(monkeypatch):
    """Teams for these small networks (which would run on one thread: threads.py), and
    small products in fastbp's C loops (where the build has them), so that every
    operation is fastbp's own; the setting is restored after."""
    monkeypatch.setattr(threads, "MIN_FLOPS_PER_GEMM", 0)
    before = core.small_products()
    core.small_products(True)
    yield
    core.small_products(before)


def exact():
    return core.small_products()


def assert_same(results, rtol):
    """Every team's results equal the first's: bitwise where fastbp computes them all."""
    first = results[0]
    for other in results[1:]:
        for a, b in zip(first, other):
            if exact():
                np.testing.assert_array_equal(b, a)
            else:
                np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol)


def problem(rows, seed=0, features=7, classes=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, features)) * 2 + 0.5, rng.integers(0, classes, rows)


def trained(name, dtype, team, batch_size, rows=37, optimizer=None, **fit):
    X, y = problem(rows)
    model = fb.Sequential(NETWORKS[name](), loss="cross_entropy", dtype=dtype, seed=1)
    history = model.fit(X, y, epochs=2, batch_size=batch_size, threads=team,
                        optimizer=optimizer or fb.Adam(lr=0.01), **fit)
    return model, history


@pytest.mark.parametrize("name", list(NETWORKS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_size", [13, 5])  # 5 rows: one tile, the others idle
def test_fit_gives_the_same_model_at_every_team_size(name, dtype, batch_size, monkeypatch):
    sizes, real = [], core.train_epoch
    monkeypatch.setattr(core, "train_epoch",
                        lambda *a, **k: (sizes.append(k["n_threads"]), real(*a, **k))[1])
    results = []
    for team in TEAMS:
        sizes.clear()
        model, history = trained(name, dtype, team, batch_size)
        assert set(sizes) == {team}  # the team really ran
        results.append((model.parameters.copy(), model._plan.stats.copy(),
                        model._plan.state.copy(), np.asarray(history.loss),
                        np.asarray(history.accuracy)))
    assert_same(results, 1e-5 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("optimizer", [
    fb.SGD(lr=0.05, momentum=0.9, nesterov=True), fb.RMSprop(lr=0.01), fb.Adagrad(lr=0.1),
    fb.RMSprop(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1),
    fb.Adagrad(lr=0.1, lr_decay=0.05, weight_decay=0.1),
    fb.AdamW(lr=0.01, weight_decay=0.1), fb.SGD(lr=0.05, clip_norm=0.5), fb.Adam(lr=0.01, l1=1e-3),  # whole steps
], ids=lambda opt: type(opt).__name__)
def test_every_optimizer_steps_alike_at_every_team_size(optimizer):
    import copy
    results = []
    for team in TEAMS:
        model, history = trained("dense", "float64", team, 11,
                                 optimizer=copy.deepcopy(optimizer))
        results.append((model.parameters.copy(), model._plan.state.copy(),
                        np.asarray(history.loss)))
    assert_same(results, 1e-12)


@pytest.mark.parametrize("reduction", ["rows", "weights"])
def test_weighted_rows_and_validation_alike_at_every_team_size(reduction):
    X, y = problem(20, seed=5)
    weights = np.random.default_rng(2).uniform(0, 3, 37)
    results = []
    for team in TEAMS:
        model, history = trained("layernorm", "float64", team, 9, sample_weight=weights,
                                 validation_data=(X, y), sample_weight_reduction=reduction,
                                 optimizer=fb.Adam(lr=0.01, weight_decay=0.05))
        results.append((model.parameters.copy(), np.asarray(history.loss),
                        np.asarray(history.val_loss), np.asarray(history.val_accuracy)))
    assert_same(results, 1e-12)


@pytest.mark.parametrize("name", list(NETWORKS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_train_step_predict_and_evaluate_alike_at_every_team_size(name, dtype):
    X, y = problem(41, seed=3)
    results = []
    for team in TEAMS:
        model = fb.Sequential(NETWORKS[name](), loss="cross_entropy", dtype=dtype, seed=1)
        losses = [model.train_step(X[:29], y[:29], threads=team) for _ in range(3)]
        scores = model.evaluate(X, y, threads=team)
        results.append((model.parameters.copy(), np.array(losses),
                        model.predict(X, threads=team),
                        np.array([scores["loss"], scores["accuracy"]])))
    assert_same(results, 1e-5 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_poisson_fit_predict_and_evaluate_alike_at_every_team_size(dtype):
    """The poisson loss (exp of the log-rate per output, tile by tile) with weighted rows,
    batches of 11 over 37 rows (11, 11, 11, 4)."""
    rng = np.random.default_rng(6)
    X = rng.normal(size=(37, 7))
    y = rng.poisson(np.exp(0.3 * X[:, :3]))
    weights = rng.uniform(0, 3, 37)
    results = []
    for team in TEAMS:
        model = fb.Sequential(NETWORKS["dense"](), loss="poisson", dtype=dtype, seed=1)
        history = model.fit(X, y, epochs=2, batch_size=11, threads=team, sample_weight=weights,
                            optimizer=fb.Adam(lr=0.01))
        results.append((model.parameters.copy(), np.asarray(history.loss),
                        model.predict(X, threads=team),
                        np.array([model.evaluate(X, y, threads=team)["loss"]])))
    assert_same(results, 1e-5 if dtype == "float32" else 1e-12)


def test_predict_in_several_workspace_chunks_alike_at_every_team_size(monkeypatch):
    """More rows than predict's workspace holds: the team runs it chunk by chunk."""
    monkeypatch.setattr("fastbp.plan.PREDICT_WORKSPACE_ELEMENTS", 1 << 14)
    X, y = problem(5000, seed=4)
    model = fb.Sequential(NETWORKS["residual"](), loss="cross_entropy", dtype="float64",
                          seed=1)
    assert model._plan.predict_rows(len(X)) < len(X)
    one = model.predict(X, threads=1), model.evaluate(X, y, threads=1)
    for team in TEAMS[1:]:
        np.testing.assert_array_equal(model.predict(X, threads=team), one[0])
        assert model.evaluate(X, y, threads=team) == one[1]


@pytest.mark.parametrize("dtype,rtol", [("float32", 2e-4), ("float64", 1e-10)])
def test_blas_sized_products_agree_to_rounding_across_team_sizes(dtype, rtol):
    """Products large enough for BLAS: OpenBLAS splits them differently by rows, so the
    teams agree to rounding, not bitwise."""
    X, y = problem(300, features=150, classes=10)
    results = []
    for team in TEAMS:
        model = fb.mlp([150, 120, 90, 10], loss="cross_entropy", dtype=dtype, seed=0)
        history = model.fit(X, y, epochs=1, batch_size=64, threads=team,
                            optimizer=fb.SGD(lr=0.01, momentum=0.9))
        results.append((model.parameters.copy(), np.asarray(history.loss)))
    for params, loss in results[1:]:
        np.testing.assert_allclose(params, results[0][0], rtol=rtol, atol=rtol * 1e-2)
        np.testing.assert_allclose(loss, results[0][1], rtol=rtol)


@pytest.mark.parametrize("batch_size", [24, 41])  # fewer rows than the widths: by columns
def test_wide_layers_split_by_columns_agree_across_team_sizes(batch_size):
    """BLAS-sized layers wider than the batch: the team splits their products by output
    columns (forward) and input columns (dX), with BatchNorm and dropout between them."""
    X, y = problem(130, features=150, classes=10)
    results = []
    for team in TEAMS:
        model = fb.Sequential([fb.Dense(150, 160, "relu"), fb.BatchNorm(160), fb.Dropout(0.3),
                               fb.Dense(160, 140, "tanh"), fb.Dense(140, 10)],
                              loss="cross_entropy", dtype="float64", seed=0)
        history = model.fit(X, y, epochs=2, batch_size=batch_size, threads=team,
                            optimizer=fb.SGD(lr=0.01, momentum=0.9))
        results.append((model.parameters.copy(), np.asarray(history.loss),
                        model.predict(X[:50], threads=team)))
    for params, loss, predicted in results[1:]:
        np.testing.assert_allclose(params, results[0][0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(loss, results[0][1], rtol=1e-10)
        np.testing.assert_allclose(predicted, results[0][2], rtol=1e-10, atol=1e-12)


def test_models_trained_in_several_python_threads_with_teams_equal_sequential():
    """Each Python thread's fit opens its own team; BLAS is held at one thread from the
    main thread first (a worker thread cannot change OpenBLAS's setting)."""
    def fit(seed):
        model, _ = trained("residual", "float32", 2, 13, rows=37 + seed)
        return model.parameters.copy()

    expected = [fit(seed) for seed in range(3)]
    results = [None] * 3
    with threads.blas_threads(1):
        workers = [threading.Thread(target=lambda i=i: results.__setitem__(i, fit(i)))
                   for i in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_many_fits_leave_no_threads_behind():
    """The team's threads are OpenMP's pool, started once and reused: 60 more fits (and
    predicts) on teams of 2 and 3 add none."""
    X, y = problem(64)

    def work():
        for team in (2, 3):
            model = fb.mlp([7, 9, 3], loss="cross_entropy", seed=0)
            model.fit(X, y, epochs=1, batch_size=16, threads=team)
            model.predict(X, threads=team)

    work()
    before = len(os.listdir("/proc/self/task"))
    for _ in range(30):
        work()
    assert len(os.listdir("/proc/self/task")) == before

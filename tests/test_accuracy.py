"""Accuracy counted inside the compiled loss kernels: evaluate's and fit's per-epoch figure,
checked against NumPy's argmax / threshold on the same logits and the NumPy reference."""
import numpy as np
import pytest

import fastbp as fb
from fastbp._native import core
from fastbp.datasets import make_classification

N_FEATURES, N_CLASSES = 7, 5


def logits(model, X):
    out = np.empty((X.shape[0], model.n_outputs), dtype=model.dtype)
    model._plan.ensure_capacity(X.shape[0])
    core.forward(model._plan, np.ascontiguousarray(X, dtype=model.dtype), out, False)
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_accuracy_is_argmax_match(dtype):
    rng = np.random.default_rng(0)
    model = fb.mlp([N_FEATURES, 9, N_CLASSES], loss="cross_entropy", dtype=dtype, seed=1)
    X, y = rng.normal(size=(203, N_FEATURES)), rng.integers(0, N_CLASSES, 203)
    expected = np.mean(np.argmax(logits(model, X), axis=1) == y)
    assert 0 < expected < 1
    assert model.evaluate(X, y)["accuracy"] == pytest.approx(expected, abs=1e-15)


def test_cross_entropy_ties_go_to_the_first_arg_max_as_numpy():
    """All-zero parameters tie every logit: only label 0 (numpy.argmax's pick) is a hit."""
    model = fb.mlp([N_FEATURES, 6, N_CLASSES], loss="cross_entropy", dtype="float64", seed=0)
    model.parameters[...] = 0
    X = np.random.default_rng(1).normal(size=(50, N_FEATURES))
    y = np.arange(50) % N_CLASSES
    assert model.evaluate(X, y)["accuracy"] == pytest.approx(np.mean(y == 0))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_cross_entropy_accuracy_counts_outputs(dtype):
    rng = np.random.default_rng(2)
    model = fb.mlp([N_FEATURES, 8, 3], loss="binary_cross_entropy", dtype=dtype, seed=3)
    X, Y = rng.normal(size=(61, N_FEATURES)), (rng.random((61, 3)) > 0.4).astype(float)
    expected = np.mean((logits(model, X) > 0) == (Y > 0.5))
    assert model.evaluate(X, Y)["accuracy"] == pytest.approx(expected, abs=1e-15)


def test_regression_losses_report_no_accuracy():
    rng = np.random.default_rng(4)
    model = fb.mlp([N_FEATURES, 5, 2], loss="mse", seed=0)
    X, Y = rng.normal(size=(20, N_FEATURES)), rng.normal(size=(20, 2))
    assert set(model.evaluate(X, Y)) == {"loss"}
    history = model.fit(X, Y, epochs=2, batch_size=8, verbose=0)
    assert "accuracy" not in history.history


def test_weighted_evaluate_is_fits_weighted_loss_and_weighted_accuracy():
    rng = np.random.default_rng(5)
    model = fb.mlp([N_FEATURES, 9, N_CLASSES], loss="cross_entropy", dtype="float64", seed=6)
    X, y = rng.normal(size=(40, N_FEATURES)), rng.integers(0, N_CLASSES, 40)
    weights = rng.uniform(0, 3, 40)
    per_row = np.array([model.evaluate(X[i:i + 1], y[i:i + 1])["loss"] for i in range(40)])
    correct = np.argmax(logits(model, X), axis=1) == y
    result = model.evaluate(X, y, sample_weight=weights)
    assert result["loss"] == pytest.approx(np.sum(weights * per_row) / 40, rel=1e-12)
    assert result["accuracy"] == pytest.approx(np.sum(weights * correct) / np.sum(weights))
    assert model.evaluate(X, y, sample_weight=np.ones(40)) == pytest.approx(model.evaluate(X, y))


def test_weighted_evaluate_rejects_bad_weights_naming_them():
    model = fb.mlp([N_FEATURES, 4, N_CLASSES], loss="cross_entropy", seed=0)
    X, y = np.zeros((6, N_FEATURES)), np.zeros(6, dtype=int)
    for bad in (np.ones(5), -np.ones(6), np.full(6, np.nan), np.zeros(6)):
        with pytest.raises(ValueError, match="sample_weight"):
            model.evaluate(X, y, sample_weight=bad)


def test_training_accuracy_scores_each_batch_before_its_update(reference):
    """fit's ``accuracy``: each batch scored by the parameters it was trained on, as the
    NumPy reference replaying the same batches and updates counts it."""
    X, y = make_classification(150, N_FEATURES, N_CLASSES, seed=3)
    X = X.astype(np.float64)
    model = fb.mlp([N_FEATURES, 11, N_CLASSES], loss="cross_entropy", dtype="float64", seed=2)
    ref = reference.NumpyMLP([N_FEATURES, 11, N_CLASSES], ["relu", "identity"],
                             "cross_entropy", dtype="float64",
                             weights=[(l.weight, l.bias) for l in model.layers])
    history = model.fit(X, y, epochs=3, batch_size=32, shuffle=False, verbose=0,
                        optimizer=fb.SGD(lr=0.2))
    for epoch in range(3):
        hits = 0
        for start in range(0, 150, 32):
            rows = slice(start, start + 32)
            hits += np.sum(np.argmax(ref.forward(X[rows]), axis=1) == y[rows])
            ref.sgd_step(X[rows], y[rows], lr=0.2)
        assert history.accuracy[epoch] == pytest.approx(hits / 150, abs=1e-12)
    assert history.accuracy[-1] > history.accuracy[0]


def test_weighted_training_accuracy_is_the_weighted_batch_figures():
    X, y = make_classification(150, N_FEATURES, N_CLASSES, seed=3)
    weights = np.random.default_rng(8).uniform(0.5, 2, 150)
    fitted, stepped = (fb.mlp([N_FEATURES, 11, N_CLASSES], loss="cross_entropy",
                              dtype="float64", seed=2) for _ in range(2))
    history = fitted.fit(X, y, epochs=2, batch_size=32, shuffle=False, verbose=0,
                         optimizer=fb.SGD(lr=0.2), sample_weight=weights)
    optimizer = fb.SGD(lr=0.2)
    for epoch in range(2):
        hits = 0.0
        for start in range(0, 150, 32):
            rows = slice(start, start + 32)
            batch = stepped.evaluate(X[rows], y[rows], sample_weight=weights[rows])
            hits += batch["accuracy"] * np.sum(weights[rows])
            stepped.train_step(X[rows], y[rows], optimizer, sample_weight=weights[rows])
        assert history.accuracy[epoch] == pytest.approx(hits / np.sum(weights), rel=1e-12)


def test_training_accuracy_with_threads_and_bce():
    """The data-parallel and BLAS-threaded paths count the same hits; bce counts outputs."""
    rng = np.random.default_rng(9)
    X, Y = rng.normal(size=(96, N_FEATURES)), (rng.random((96, 3)) > 0.5).astype(float)
    runs = []
    for threads in (1, 2):
        model = fb.mlp([N_FEATURES, 6, 3], loss="binary_cross_entropy", dtype="float64",
                       seed=4)
        runs.append(model.fit(X, Y, epochs=2, batch_size=16, verbose=0, threads=threads,
                              optimizer=fb.SGD(lr=0.1)).accuracy)
    assert runs[0] == pytest.approx(runs[1], abs=1e-12)
    assert all(0 < value <= 1 for value in runs[0])

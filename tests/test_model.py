"""The engine against its oracles: finite differences, the NumPy reference, learning tasks."""
import itertools

import numpy as np
import pytest

import fastbp as fb
from fastbp.datasets import make_classification
from fastbp.training import epoch_order

# Every activation and loss the core knows, by their canonical names.
ACTIVATIONS = [activation.name.lower() for activation in fb.activations.ActivationCode]
LOSSES = [loss.name.lower() for loss in fb.Loss]
REGRESSION = ["mse", "huber", "mae"]
# Non-square widths, 1 to 3 hidden layers.
HIDDEN = {1: [7], 2: [7, 4], 3: [6, 9, 5]}
N_FEATURES, N_OUTPUTS = 5, 3


def targets(loss, n_rows, rng, n_outputs=N_OUTPUTS):
    if loss == "cross_entropy":
        return rng.integers(0, n_outputs, size=n_rows)
    if loss in ("huber", "mae"):  # residuals on both sides of huber's seam at |d| = 1
        return rng.uniform(-2, 2, size=(n_rows, n_outputs))
    return rng.uniform(size=(n_rows, n_outputs))


def off_kink_targets(model, X, rng):
    """Targets whose residuals lie 0.1 to 2 away from the model's output, either side: on
    both sides of huber's seam, never within a finite-difference step of mae's kink."""
    output = model.predict(X)
    return output + rng.choice([-1.0, 1.0], output.shape) * rng.uniform(0.1, 2, output.shape)


def build(activation, loss, hidden, dtype="float64", seed=0):
    """Hidden layers of ``activation``; under a regression loss the output layer has it
    too (so every activation is checked as an output under mse, huber and mae)."""
    sizes = [N_FEATURES, *hidden, N_OUTPUTS]
    output = activation if loss in REGRESSION else None
    model = fb.mlp(sizes, activation=activation, loss=loss, output_activation=output,
                   dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for layer in model.layers:  # non-zero biases so their gradients matter
        layer.bias[...] = 0.1 * rng.normal(size=layer.bias.shape)
    return model


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("n_hidden", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_gradients_match_central_differences(activation, loss, n_hidden, batch, weight_decay):
    model = build(activation, loss, HIDDEN[n_hidden])
    rng = np.random.default_rng(batch)
    X = rng.normal(size=(batch, N_FEATURES))
    y = targets(loss, batch, rng)
    if loss in ("huber", "mae"):
        y = off_kink_targets(model, X, rng)
    error = fb.check_gradients(model, X, y, weight_decay=weight_decay)
    assert error < 1e-6


def test_check_gradients_catches_a_wrong_gradient(monkeypatch):
    """The oracle must be able to fail: corrupt one gradient entry and see it flagged."""
    model = build("tanh", "mse", [7])
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(7, N_FEATURES)), targets("mse", 7, rng)
    real = fb.Sequential.gradients

    def corrupted(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        self._plan.grads[3] *= 1.01
        return result

    monkeypatch.setattr(fb.Sequential, "gradients", corrupted)
    assert fb.check_gradients(model, X, y) > 1e-3


def test_check_gradients_on_float32_model_does_not_touch_it():
    model = build("relu", "cross_entropy", [7], dtype="float32")
    before = model.parameters.copy()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, N_FEATURES))
    assert fb.check_gradients(model, X, targets("cross_entropy", 7, rng), max_checks=20) < 1e-6
    np.testing.assert_array_equal(model.parameters, before)


def test_gradients_equal_reference(reference):
    rng = np.random.default_rng(3)
    for activation, loss in itertools.product(ACTIVATIONS, LOSSES):
        model = build(activation, loss, [6, 4])
        X, y = rng.normal(size=(9, N_FEATURES)), targets(loss, 9, rng)
        ref = reference.NumpyMLP(
            [N_FEATURES, 6, 4, N_OUTPUTS], [layer.activation for layer in model.layers], loss,
            dtype="float64", weights=[(layer.weight, layer.bias) for layer in model.layers])
        loss_value, grads = model.gradients(X, y, weight_decay=0.1)
        ref_loss, ref_grads = ref.loss_and_gradients(X, y, weight_decay=0.1)
        assert loss_value == pytest.approx(ref_loss, rel=1e-12)
        for (dW, db), (rW, rb) in zip(grads, ref_grads):
            np.testing.assert_allclose(dW, rW, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(db, rb, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 1e-4)])
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("loss,activation,output", [
    ("cross_entropy", "relu", "identity"), ("mse", "tanh", "identity"),
    ("binary_cross_entropy", "sigmoid", "identity"), ("cross_entropy", "gelu", "identity"),
    ("huber", "swish", "gelu"), ("mae", "gelu", "swish"), ("mse", "elu", "softplus"),
    ("huber", "softplus", "elu")])
def test_sgd_momentum_training_matches_reference(reference, dtype, rtol, nesterov, loss,
                                                 activation, output):
    """Same initial weights, same batch order ⇒ same weights after 20 SGD-momentum steps
    (5 epochs of 4 batches, the last batch of each epoch partial)."""
    rng = np.random.default_rng(11)
    n_rows, batch_size = 55, 16
    X = rng.normal(size=(n_rows, N_FEATURES))
    y = targets(loss, n_rows, rng)
    model = fb.Sequential([fb.Dense(N_FEATURES, 8, activation), fb.Dense(8, 6, activation),
                           fb.Dense(6, N_OUTPUTS, output)], loss=loss, dtype=dtype, seed=5)
    ref = reference.NumpyMLP([N_FEATURES, 8, 6, N_OUTPUTS], [activation, activation, output],
                             loss, dtype=dtype, weights=[(l.weight, l.bias) for l in model.layers])
    optimizer = fb.SGD(lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=1e-3)
    orders = [np.random.default_rng(epoch).permutation(n_rows) for epoch in range(5)]
    for order in orders:
        for start in range(0, n_rows, batch_size):
            rows = order[start:start + batch_size]
            loss_value = model.train_step(X[rows], y[rows], optimizer)
            ref_loss = ref.sgd_step(X[rows], y[rows], lr=0.1, momentum=0.9, nesterov=nesterov,
                                    weight_decay=1e-3)
            assert loss_value == pytest.approx(ref_loss, rel=rtol)
    for layer, (W, b) in zip(model.layers, ref.params):
        assert layer.weight.dtype == np.dtype(dtype)
        np.testing.assert_allclose(layer.weight, W, rtol=rtol, atol=rtol * 1e-2)
        np.testing.assert_allclose(layer.bias, b, rtol=rtol, atol=rtol * 1e-2)


def test_fit_epoch_matches_reference_epoch(reference):
    """fit's compiled epoch (gather, forward, loss, backward, update per batch) equals the
    reference's epoch over the same permutation, drawn from the model's seeded generator
    (by fastbp.training.epoch_order, as fit draws it)."""
    X, y = make_classification(300, 12, 4, seed=2)
    X = X.astype(np.float64)
    model = fb.mlp([12, 16, 4], loss="cross_entropy", dtype="float64", seed=7)
    ref = reference.NumpyMLP([12, 16, 4], ["relu", "identity"], "cross_entropy", dtype="float64",
                             weights=[(l.weight, l.bias) for l in model.layers])
    rng = np.random.default_rng(7)
    for _ in model.layers:  # the model drew its initial weights from this generator first
        rng.uniform(size=_.weight.shape)
    history = model.fit(X, y, epochs=3, batch_size=32,
                        optimizer=fb.SGD(lr=0.05, momentum=0.9))
    for epoch in range(3):  # fit's order: drawn in C from one draw of the generator
        ref.train_epoch(X, y, epoch_order(rng, 300), 32, lr=0.05, momentum=0.9)
    np.testing.assert_allclose(model.parameters,
                               np.concatenate([W.ravel() for W, _ in ref.params]
                                              + [b for _, b in ref.params]), rtol=1e-10, atol=1e-13)
    assert len(history.loss) == 3 and np.isfinite(history.loss).all()


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy"])
def test_xor_reaches_full_accuracy(loss):
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    labels = np.array([0, 1, 1, 0])
    y = labels if loss == "cross_entropy" else labels[:, None]
    model = fb.Sequential([fb.Dense(2, 4, "tanh"), fb.Dense(4, 2 if loss == "cross_entropy" else 1)],
                          loss=loss, dtype="float64", seed=0)
    model.fit(X, y, epochs=500, batch_size=4, optimizer=fb.SGD(lr=0.5, momentum=0.9))
    assert model.evaluate(X, y)["accuracy"] == 1.0


def test_ten_class_problem_reaches_reference_accuracy(reference):
    X, y = make_classification(6144, 32, 10, seed=4)
    X_train, y_train, X_test, y_test = X[:4096], y[:4096], X[4096:], y[4096:]
    model = fb.mlp([32, 64, 10], loss="cross_entropy", seed=1)
    ref = reference.NumpyMLP([32, 64, 10], ["relu", "identity"], "cross_entropy",
                             weights=[(l.weight, l.bias) for l in model.layers])
    model.fit(X_train, y_train, epochs=10, batch_size=64, optimizer=fb.SGD(lr=0.05, momentum=0.9))
    rng = np.random.default_rng(1)
    for _ in range(10):
        ref.train_epoch(X_train, y_train, rng.permutation(4096), 64, lr=0.05, momentum=0.9)
    accuracy = model.evaluate(X_test, y_test)["accuracy"]
    ref_accuracy = np.mean(ref.predict(X_test).argmax(axis=1) == y_test)
    assert accuracy > 0.85
    assert accuracy >= ref_accuracy - 0.01


def test_seed_makes_training_bitwise_repeatable():
    X, y = make_classification(1000, 10, 3, seed=0)
    runs = []
    for _ in range(2):
        model = fb.mlp([10, 20, 3], loss="cross_entropy", seed=42)
        model.fit(X, y, epochs=3, batch_size=50)
        runs.append(model.parameters.copy())
    np.testing.assert_array_equal(runs[0], runs[1])


def test_train_step_is_one_update_on_exactly_the_batch():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(13, 4)), rng.normal(size=(13, 2))
    model = fb.mlp([4, 6, 2], activation="tanh", dtype="float64", seed=0)
    loss_before, grads = model.gradients(X, y)
    W_before = model.layers[0].weight.copy()
    loss = model.train_step(X, y, fb.SGD(lr=0.1))
    assert loss == pytest.approx(loss_before, rel=1e-12)
    np.testing.assert_allclose(model.layers[0].weight, W_before - 0.1 * grads[0][0], rtol=1e-12)


def test_momentum_state_persists_with_the_same_optimizer_and_resets_with_a_new_one():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 2))
    runs = {}
    for name in ("same", "new"):
        model = fb.mlp([4, 6, 2], activation="tanh", dtype="float64", seed=0)
        optimizer = fb.SGD(lr=0.1, momentum=0.9)
        model.train_step(X, y, optimizer)
        model.train_step(X, y, optimizer if name == "same" else fb.SGD(lr=0.1, momentum=0.9))
        runs[name] = model.parameters.copy()
    assert not np.allclose(runs["same"], runs["new"])


def test_layer_views_share_the_flat_buffer():
    model = fb.Sequential([fb.Dense(5, 3, "relu"), fb.Dense(3, 2)], loss="mse", seed=0)
    layer = model.layers[1]
    assert layer.weight.shape == (3, 2) and layer.bias.shape == (2,)
    assert np.shares_memory(layer.weight, model.parameters)
    layer.weight[...] = 0
    layer.bias[...] = [1.5, -2.0]
    np.testing.assert_allclose(model.predict(np.ones((4, 5))), [[1.5, -2.0]] * 4)
    assert model.parameters[:15].any() and not model.parameters[15:21].any()


def test_predict_applies_the_output_function():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 6))  # more rows than one prediction chunk of a small model
    proba = fb.mlp([6, 5, 4], loss="cross_entropy", seed=0).predict(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    sig = fb.mlp([6, 5, 4], loss="binary_cross_entropy", seed=0).predict(X)
    assert ((sig > 0) & (sig < 1)).all()


def test_evaluate_reports_loss_and_accuracy():
    X, y = make_classification(500, 8, 3, seed=0)
    model = fb.mlp([8, 16, 3], loss="cross_entropy", dtype="float64", seed=0)
    result = model.evaluate(X, y)
    assert result["loss"] == pytest.approx(model.gradients(X, y)[0], rel=1e-12)
    assert result["accuracy"] == np.mean(model.predict(X).argmax(axis=1) == y)
    assert set(fb.mlp([8, 2], loss="mse").evaluate(X, np.zeros((500, 2)))) == {"loss"}


def test_repr_shows_the_architecture():
    text = repr(fb.mlp([784, 128, 10], loss="cross_entropy"))
    assert "Dense(784, 128, activation='relu')" in text and "cross_entropy" in text
    assert "Dense(128, 10" in repr(fb.Dense(128, 10))


def test_gradients_are_nan_not_stale_when_the_loss_overflows():
    model = fb.mlp([2, 3, 1], activation="relu", seed=0)
    X, y = np.ones((4, 2)), np.ones(4)
    model.gradients(X, y)
    loss, grads = model.gradients(X * 1e30, y)
    assert not np.isfinite(loss)
    assert all(np.isnan(dW).all() and np.isnan(db).all() for dW, db in grads)


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_every_core_build_trains_alike(dtype, rtol):
    """The baseline, AVX2 and AVX-512 builds of the core run the same epoch to the same
    weights, to rounding: small products run in each build's own C loops (_smallgemm.h),
    fused multiply-adds in the vector builds and separate ones in the baseline, so the
    tolerance is absolute at the weights' scale (~0.1), not at their smallest entries'."""
    from fastbp import _native

    X, y = make_classification(200, 12, 4, seed=3)
    X = X.astype(dtype)
    labels = y.astype(np.intp)
    order = np.random.default_rng(0).permutation(200)
    results = []
    for name in _native.available():
        model = fb.mlp([12, 9, 4], activation="tanh", loss="cross_entropy", dtype=dtype, seed=0)
        model._use_optimizer(fb.SGD(lr=0.1, momentum=0.9))
        model._plan.ensure_capacity(16)
        status, _, _, _ = _native.load(name).train_epoch(
            model._plan, X, np.zeros((0, 4), dtype), labels, order, 16, model.optimizer,
            np.full(13, 0.1), 0)
        assert status == 0
        results.append(model.parameters.copy())
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("loss,activation", [("cross_entropy", "relu"), ("mse", "tanh"),
                                             ("binary_cross_entropy", "sigmoid"),
                                             ("huber", "gelu"), ("mae", "swish")])
@pytest.mark.parametrize("shuffled", [True, False])
def test_batch_split_over_threads_trains_alike(dtype, rtol, loss, activation, shuffled):
    """train_epoch's data-parallel path (rows of each batch split over OpenMP threads, BLAS
    at one thread) reaches the serial path's weights; 37 rows in batches of 16 leave a
    partial batch, and 3 threads split 16 rows unevenly. gelu and swish (hidden and
    output) keep pre-activation blocks, which threads must also split by rows."""
    from fastbp import _native, threads

    rng = np.random.default_rng(5)
    X = rng.normal(size=(37, N_FEATURES)).astype(dtype)
    y = targets(loss, 37, rng)
    order = rng.permutation(37) if shuffled else np.zeros(0, dtype=np.intp)
    results = []
    for n_threads in (1, 3):
        model = build(activation, loss, [8, 6], dtype=dtype, seed=2)
        model._use_optimizer(fb.SGD(lr=0.1, momentum=0.9, weight_decay=1e-3))
        model._plan.ensure_capacity(16)
        Xc, Y, labels = model._check_Xy(X, y)
        with threads.blas_threads(1):
            status, loss_sum, n_batches, _ = _native.core.train_epoch(
                model._plan, Xc, Y, labels, order, 16, model.optimizer, np.full(3, 0.1), 0,
                n_threads=n_threads)
        assert status == 0 and n_batches == 3
        results.append((loss_sum, model.parameters.copy()))
    assert results[1][0] == pytest.approx(results[0][0], rel=rtol)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=rtol, atol=rtol * 1e-2)


# ---------------------------------------------------------------- kept pre-activations

def test_workspace_keeps_pre_activations_only_for_gelu_and_swish():
    """A row of the workspace: layer-0 input, every output, every hidden delta, and a z
    block per gelu/swish layer (hidden or output); other networks' layout is unchanged."""
    widths = [5, 7, 4, 3]
    base = widths[0] + sum(widths[1:]) + sum(widths[1:-1])
    for activation in ACTIVATIONS:
        for output in (None, activation):
            model = fb.Sequential([fb.Dense(5, 7, activation), fb.Dense(7, 4, "relu"),
                                   fb.Dense(4, 3, output)], loss="mse")
            keeps = activation in ("gelu", "swish")
            expected = base + (7 if keeps else 0) + (3 if keeps and output else 0)
            assert model._plan.row_length == expected, (activation, output)


@pytest.mark.parametrize("output", ["gelu", "swish"])
def test_predict_and_evaluate_in_chunks_with_kept_pre_activations(reference, output,
                                                                  monkeypatch):
    """More rows than one prediction chunk: forward writes each chunk's z rows beside the
    output it returns, and evaluate's loss reads them (huber through gelu's/swish's z)."""
    monkeypatch.setattr(fb.plan, "PREDICT_WORKSPACE_ELEMENTS", 20_000)  # chunks of ~380 rows
    rng = np.random.default_rng(4)
    model = fb.Sequential([fb.Dense(6, 9, "swish"), fb.Dense(9, 5, "gelu"),
                           fb.Dense(5, 2, output)], loss="huber", dtype="float64", seed=0)
    ref = reference.NumpyMLP([6, 9, 5, 2], ["swish", "gelu", output], "huber",
                             dtype="float64", weights=[(l.weight, l.bias) for l in model.layers])
    X = rng.normal(size=(3001, 6))
    y = rng.normal(size=(3001, 2))
    assert 3001 > model._plan.predict_rows(3001) > 1
    np.testing.assert_allclose(model.predict(X), ref.forward(X), rtol=1e-12, atol=1e-15)
    result = model.evaluate(X, y)
    assert set(result) == {"loss"}  # a regression loss: no accuracy
    assert result["loss"] == pytest.approx(ref.loss_and_gradients(X, y)[0], rel=1e-12)


@pytest.mark.parametrize("loss", ["huber", "mae", "l1"])
def test_regression_losses_learn_a_smooth_function(loss):
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(512, 3))
    y = np.sin(X[:, :1]) + 0.5 * X[:, 1:2] * X[:, 2:3]
    model = fb.Sequential([fb.Dense(3, 32, "gelu"), fb.Dense(32, 16, "swish"), fb.Dense(16, 1)],
                          loss=loss, dtype="float64", seed=0)
    before = model.evaluate(X, y)["loss"]
    history = model.fit(X, y, epochs=60, batch_size=32, optimizer=fb.SGD(lr=0.02, momentum=0.9))
    assert model.loss == ("mae" if loss == "l1" else loss)
    assert np.isfinite(history.loss).all()
    assert model.evaluate(X, y)["loss"] < 0.25 * before

"""fastbp.Dropout: the spec, its place in a Sequential, the core's masks and kernels, and
training with it against its oracles (finite differences through a fixed mask, the NumPy
reference redoing the core's hash, bitwise repeatability, save/load/resume).

Shapes are never square; every numerical test runs in float32 and float64 where it can.
"""
import json
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest

import fastbp as fb
from fastbp import _native, threads
from fastbp.plan import dropout_threshold

ACTIVATIONS = [activation.name.lower() for activation in fb.activations.ActivationCode]
LOSSES = [loss.name.lower() for loss in fb.Loss]
REGRESSION = ["mse", "huber", "mae"]
DTYPES = ["float32", "float64"]
RTOL = {"float32": 2e-4, "float64": 1e-10}
N_FEATURES, N_OUTPUTS = 7, 3


@pytest.fixture(params=_native.available())
def core(request):
    """Each compiled build of the core that runs on this CPU (baseline, AVX2, AVX-512)."""
    return _native.load(request.param)


def specs(activation="tanh", output=None, rates=(0.2, 0.4)):
    """Input dropout, then a hidden dropout: 7 -> 11 -> 5 -> 3, every width different."""
    return [fb.Dropout(rates[0]), fb.Dense(N_FEATURES, 11, activation), fb.Dropout(rates[1]),
            fb.Dense(11, 5, activation), fb.Dense(5, N_OUTPUTS, output)]


def build(activation="tanh", loss="cross_entropy", dtype="float64", seed=0, rates=(0.2, 0.4)):
    output = activation if loss in REGRESSION else None
    model = fb.Sequential(specs(activation, output, rates), loss=loss, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for layer in model._dense_layers():  # non-zero biases so their gradients matter
        layer.bias[...] = 0.1 * rng.normal(size=layer.bias.shape)
    return model


def targets(loss, n_rows, rng):
    if loss == "cross_entropy":
        return rng.integers(0, N_OUTPUTS, size=n_rows)
    if loss in ("huber", "mae"):
        return rng.uniform(-2, 2, size=(n_rows, N_OUTPUTS))
    return rng.uniform(size=(n_rows, N_OUTPUTS))


def reference_of(model, reference):
    """The NumPy reference network with ``model``'s weights, rates and dropout seed."""
    rates, pending = [], 0.0
    for spec in model._specs:
        if isinstance(spec, fb.Dropout):
            pending = spec.rate
        else:
            rates.append(pending)
            pending = 0.0
    dense = model._dense_layers()
    return reference.NumpyMLP(
        [dense[0].in_features] + [layer.out_features for layer in dense],
        [layer.activation for layer in dense], model.loss, dtype=model.dtype.name,
        weights=[(layer.weight, layer.bias) for layer in dense], dropout=rates,
        dropout_seed=model._plan.dropout_seed)


def state_of(model):
    plan = model._plan
    return (model.parameters.copy(), plan.state.copy(), plan.steps, plan.training_steps,
            plan.dropout_seed, json.dumps(model._rng.bit_generator.state))


def assert_same_state(a, b):
    for x, y in zip(a, b):
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y


# ---------------------------------------------------------------- the spec

@pytest.mark.parametrize("rate", [0, 0.0, 0.5, 0.999, np.float32(0.25), np.float64(0.1), 1e-12])
def test_valid_rates_become_floats(rate):
    layer = fb.Dropout(rate)
    assert type(layer.rate) is float and layer.rate == float(rate)
    assert repr(layer) == f"Dropout({float(rate)!r})"
    assert layer == fb.Dropout(float(rate)) and hash(layer) == hash(fb.Dropout(float(rate)))


@pytest.mark.parametrize("rate, error", [
    (1.0, ValueError), (1, ValueError), (-0.1, ValueError), (1.5, ValueError),
    (math.nan, ValueError), (math.inf, ValueError), (-math.inf, ValueError),
    ("0.5", TypeError), (True, TypeError), (False, TypeError), (None, TypeError),
    ([0.5], TypeError), (np.array([0.5]), TypeError)])
def test_bad_rates_are_refused_naming_rate(rate, error):
    with pytest.raises(error, match="rate"):
        fb.Dropout(rate)


def test_dropout_is_frozen_and_exported():
    layer = fb.Dropout(0.5)
    with pytest.raises(AttributeError):
        layer.rate = 0.1
    assert "Dropout" in fb.__all__ and fb.Dropout.__doc__


def test_threshold_is_the_rate_in_32_bits():
    assert dropout_threshold(0.0) == 0 and dropout_threshold(0.5) == 2 ** 31
    assert dropout_threshold(0.25) == 2 ** 30
    assert dropout_threshold(1 - 2 ** -53) == 2 ** 32 - 1   # rounds up to 2**32 in floats
    assert dropout_threshold(0.1) == int(0.1 * 2 ** 32)


# ---------------------------------------------------------------- its place in a model

@pytest.mark.parametrize("layers, error, match", [
    ([fb.Dense(4, 3), fb.Dropout(0.5)], ValueError, r"layers\[1\].*cannot come last"),
    ([fb.Dense(4, 6), fb.Dropout(0.2), fb.Dropout(0.3), fb.Dense(6, 2)], ValueError,
     r"layers\[1\] and layers\[2\].*in a row"),
    ([fb.Dropout(0.2), fb.Dropout(0.3), fb.Dense(4, 2)], ValueError, r"layers\[0\] and layers\[1\]"),
    ([fb.Dropout(0.5)], ValueError, "at least one Dense"),
    ([fb.Dense(4, 6), fb.Dropout(0.2), fb.Dense(5, 2)], ValueError,
     r"layers\[2\].in_features=5 does not match layers\[0\].out_features=6"),
    ([fb.Dense(4, 6), 0.5, fb.Dense(6, 2)], TypeError, r"layers\[1\] must be a fastbp layer"),
    ([fb.Dense(4, 6), fb.Dropout, fb.Dense(6, 2)], TypeError, r"layers\[1\]"),
])
def test_bad_positions_are_refused_naming_them(layers, error, match):
    with pytest.raises(error, match=match):
        fb.Sequential(layers)


def test_layers_repr_and_summary_show_dropout():
    model = fb.Sequential(specs(), loss="cross_entropy", seed=0)
    layers = model.layers
    assert [type(layer).__name__ for layer in layers] == [
        "Dropout", "BoundDense", "Dropout", "BoundDense", "BoundDense"]
    assert layers[0] is model._specs[0] and layers[2].rate == 0.4
    assert [layer.weight.shape for layer in layers[1::2]] == [(7, 11), (11, 5), (5, 3)][:2]
    assert layers[4].weight.shape == (5, 3)
    assert model.n_features == N_FEATURES and model.n_outputs == N_OUTPUTS
    text = repr(model)
    assert "Dropout(0.2),\n    Dense(7, 11" in text and "Dropout(0.4),\n    Dense(11, 5" in text
    summary = model.summary(16, print_fn=None)
    assert "dropout 0.2" in summary and "dropout 0.4" in summary
    _, grads = model.gradients(np.zeros((2, N_FEATURES)), [0, 1])
    assert [dW.shape for dW, _ in grads] == [(7, 11), (11, 5), (5, 3)]   # Dense layers only


def test_workspace_holds_a_dropped_input_block_per_active_dropout():
    base = fb.Sequential([fb.Dense(7, 11, "relu"), fb.Dense(11, 5, "relu"), fb.Dense(5, 3)])
    model = fb.Sequential(specs("relu"))
    assert model._plan.row_length == base._plan.row_length + 7 + 11
    off = fb.Sequential(specs("relu", rates=(0.0, 0.0)))
    assert off._plan.row_length == base._plan.row_length and not off._plan.has_dropout
    np.testing.assert_array_equal(off._plan.table, base._plan.table)


def test_initial_weights_do_not_depend_on_dropout():
    plain = fb.Sequential([fb.Dense(7, 11, "relu"), fb.Dense(11, 5, "relu"), fb.Dense(5, 3)],
                          seed=4)
    dropped = fb.Sequential(specs("relu"), seed=4)
    np.testing.assert_array_equal(dropped.parameters, plain.parameters)
    assert dropped._plan.dropout_seed != 0 and plain._plan.dropout_seed == 0


# ---------------------------------------------------------------- the core's masks

def test_the_core_hash_is_the_numpy_reference_hash(core, reference):
    for seed, step, layer in [(0, 0, 0), (2 ** 64 - 1, 12345, 3), (987654321, 2 ** 40, 1)]:
        keys = core._twin_dropout_keys(seed, step, layer)
        assert keys == reference.dropout_keys(seed, step, layer)
        for e0 in (0, 1234, 2 ** 32 - 300):   # the element counter wraps at 2**32
            out = np.empty(1000, dtype=np.uint32)
            core._twin_dropout_draws(out, e0, keys)
            np.testing.assert_array_equal(out, reference.dropout_draws(1000, e0, keys))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_and_backward_kernels_against_numpy(core, reference, dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=997).astype(dtype)   # odd length: the vector loop's tail too
    keys, threshold = reference.dropout_keys(3, 5, 2), dropout_threshold(0.3)
    scale = 2.0 ** 32 / (2.0 ** 32 - threshold)
    keep = reference.dropout_draws(X.size, 40, keys) >= threshold
    expected = np.where(keep, X * dtype(scale), 0)
    Y = np.full_like(X, np.nan)
    core._twin_dropout_forward(X, Y, 40, keys, threshold, scale)
    np.testing.assert_array_equal(Y, expected)
    D = X.copy()
    core._twin_dropout_backward(D, 40, keys, threshold, scale)
    np.testing.assert_array_equal(D, expected)   # the same mask, regenerated
    X[3] = np.inf  # a dropped infinity stays 0 (a select, not a multiply by 0)
    core._twin_dropout_forward(X, Y, 40, keys, threshold, scale)
    assert Y[3] == (np.inf if keep[3] else 0)


@pytest.mark.parametrize("rate", [0.05, 0.3, 0.5, 0.9])
def test_fraction_dropped_and_mean_are_the_rate_and_the_input(core, reference, rate):
    """Over 2**20 elements the dropped fraction is within 6 binomial standard deviations of
    the rate, and the mean of the scaled output within 6 of the input's (inverted dropout
    keeps the expectation); each of 16 steps' masks also on its own, within 6 deviations."""
    n = 1 << 20
    X = np.ones(n)
    Y = np.empty(n)
    threshold = dropout_threshold(rate)
    scale = 2.0 ** 32 / (2.0 ** 32 - threshold)
    core._twin_dropout_forward(X, Y, 0, core._twin_dropout_keys(11, 0, 1), threshold, scale)
    sd = math.sqrt(rate * (1 - rate) / n)
    assert abs(np.mean(Y == 0) - rate) < 6 * sd
    assert abs(Y.mean() - 1.0) < 6 * sd * scale
    per_step = np.empty(16)
    m = 1 << 14
    for step in range(16):
        out = Y[:m]
        core._twin_dropout_forward(X[:m], out, 0, core._twin_dropout_keys(11, step, 1),
                                   threshold, scale)
        per_step[step] = np.mean(out == 0)
    assert np.all(np.abs(per_step - rate) < 6 * math.sqrt(rate * (1 - rate) / m))


def test_masks_of_different_steps_layers_and_seeds_are_unrelated(core):
    """Two masks at rate 1/2 agree on half of their elements (within 6 deviations) whenever
    one of seed, step or layer differs; and the draws' 32 bits are each fair."""
    n = 1 << 16
    draws = {}
    for key in [(1, 0, 0), (1, 1, 0), (1, 2 ** 32, 0), (1, 0, 1), (2, 0, 0)]:
        out = np.empty(n, dtype=np.uint32)
        core._twin_dropout_draws(out, 0, core._twin_dropout_keys(*key))
        draws[key] = out
    masks = {key: value < 2 ** 31 for key, value in draws.items()}
    first = masks[(1, 0, 0)]
    for key, mask in masks.items():
        if key != (1, 0, 0):
            assert abs(np.mean(mask == first) - 0.5) < 6 * 0.5 / math.sqrt(n)
    bits = (draws[(1, 0, 0)][:, None] >> np.arange(32, dtype=np.uint32)) & 1
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 6 * 0.5 / math.sqrt(n))


# ---------------------------------------------------------------- gradients, fixed mask

@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_gradients_through_a_fixed_mask_match_central_differences(activation, loss, reference):
    model = build(activation, loss)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(9, N_FEATURES))
    y = targets(loss, 9, rng)
    if loss in ("huber", "mae"):  # residuals 0.1-2 from the masked output: off mae's kink
        out = reference_of(model, reference)._forward(X, reference_of(model, reference)
                                                       .masks(5, 9))[0][-1]
        y = out + rng.choice([-1.0, 1.0], out.shape) * rng.uniform(0.1, 2, out.shape)
    for step in (0, 5):
        error = fb.check_gradients(model, X, y, weight_decay=0.1, dropout_step=step)
        assert error < 1e-6, (step, error)
    loss_masked, grads_masked = model.gradients(X, y, dropout_step=5)
    loss_plain, grads_plain = model.gradients(X, y)
    assert loss_masked != loss_plain   # the mask is really there
    assert not np.array_equal(grads_masked[0][0], grads_plain[0][0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation, loss", [("relu", "cross_entropy"), ("gelu", "mse"),
                                              ("sigmoid", "binary_cross_entropy"),
                                              ("swish", "huber")])
def test_gradients_with_dropout_equal_the_numpy_reference(dtype, activation, loss, reference):
    model = build(activation, loss, dtype=dtype, seed=2)
    ref = reference_of(model, reference)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(13, N_FEATURES))
    y = targets(loss, 13, rng)
    for step in (0, 7, 2 ** 40):
        loss_value, grads = model.gradients(X, y, weight_decay=0.01, dropout_step=step)
        ref_loss, ref_grads = ref.loss_and_gradients(X, y, weight_decay=0.01, step=step)
        assert loss_value == pytest.approx(ref_loss, rel=RTOL[dtype])
        for (dW, db), (rW, rb) in zip(grads, ref_grads):
            scale = max(np.abs(rW).max(), np.abs(rb).max())
            np.testing.assert_allclose(dW, rW, rtol=0, atol=RTOL[dtype] * scale)
            np.testing.assert_allclose(db, rb, rtol=0, atol=RTOL[dtype] * scale)


def test_gradients_default_has_no_dropout_and_equals_the_plain_network():
    model = build("tanh", "mse", seed=3)
    plain = fb.Sequential([spec for spec in model._specs if isinstance(spec, fb.Dense)],
                          loss="mse", dtype="float64")
    plain.parameters[...] = model.parameters
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(6, N_FEATURES)), rng.normal(size=(6, N_OUTPUTS))
    loss, grads = model.gradients(X, y)
    plain_loss, plain_grads = plain.gradients(X, y)
    assert loss == plain_loss
    for (dW, db), (pW, pb) in zip(grads, plain_grads):
        np.testing.assert_array_equal(dW, pW)
        np.testing.assert_array_equal(db, pb)
    assert fb.check_gradients(model, X, y) < 1e-6


def test_gradients_of_a_step_are_what_train_step_applies():
    """SGD(lr=1, no momentum) subtracts exactly the gradient: training step k's update is
    gradients(dropout_step=k), with k the model's training_steps, not the optimizer's count
    (which a new optimizer restarts)."""
    model = build("relu", "cross_entropy", seed=5)
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(10, N_FEATURES)), rng.integers(0, N_OUTPUTS, 10)
    model.fit(X, y, epochs=2, batch_size=4, optimizer=fb.Adam(lr=1e-3))
    assert model.training_steps == 6 and model._plan.steps == 6
    for _ in range(2):
        step = model.training_steps
        before = model.parameters.copy()
        _, grads = model.gradients(X, y, dropout_step=step)
        flat = np.concatenate([dW.ravel() for dW, _ in grads] + [db for _, db in grads])
        model.train_step(X, y, fb.SGD(lr=1.0))   # a new optimizer each time: steps restart
        assert model._plan.steps == 1 and model.training_steps == step + 1
        np.testing.assert_allclose(model.parameters, before - flat, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- training

@pytest.mark.parametrize("dtype", DTYPES)
def test_an_epoch_with_dropout_equals_the_numpy_reference(dtype, reference):
    """In row order (batches of 8 then a partial one), SGD with momentum, every batch its
    own training step's masks: parameters after the epoch as the reference's."""
    model = build("relu", "cross_entropy", dtype=dtype, seed=6)
    ref = reference_of(model, reference)
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(29, N_FEATURES)), rng.integers(0, N_OUTPUTS, 29)
    model.train_step(X[:5], y[:5], fb.SGD(lr=0.1, momentum=0.9))  # start at step 1
    ref.sgd_step(X[:5], y[:5], 0.1, momentum=0.9, step=0)
    model.fit(X, y, epochs=1, batch_size=8, shuffle=False)
    ref.train_epoch(X, y, np.arange(29), 8, 0.1, momentum=0.9, first_step=1)
    assert model.training_steps == 5
    expected = np.concatenate([W.ravel() for W in ref.weights] + ref.biases)
    np.testing.assert_allclose(model.parameters, expected, rtol=0,
                               atol=RTOL[dtype] * np.abs(expected).max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_rate_zero_is_no_dropout_bitwise(dtype):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, N_FEATURES)), rng.integers(0, N_OUTPUTS, 50)
    plain = fb.Sequential([fb.Dense(7, 11, "relu"), fb.Dense(11, 5, "tanh"), fb.Dense(5, 3)],
                          loss="cross_entropy", dtype=dtype, seed=8)
    zero = fb.Sequential([fb.Dropout(0.0), fb.Dense(7, 11, "relu"), fb.Dropout(0),
                          fb.Dense(11, 5, "tanh"), fb.Dense(5, 3)],
                         loss="cross_entropy", dtype=dtype, seed=8)
    for model in (plain, zero):
        model.fit(X, y, epochs=3, batch_size=8, optimizer=fb.SGD(lr=0.1, momentum=0.9),
                  threads=1)
        model.train_step(X[:9], y[:9])
    np.testing.assert_array_equal(zero.parameters, plain.parameters)
    np.testing.assert_array_equal(zero.predict(X), plain.predict(X))
    assert zero.gradients(X, y, dropout_step=3)[0] == plain.gradients(X, y)[0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_predict_and_evaluate_never_drop(dtype, reference):
    model = build("relu", "cross_entropy", dtype=dtype, seed=9, rates=(0.5, 0.5))
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(40, N_FEATURES)), rng.integers(0, N_OUTPUTS, 40)
    model.fit(X, y, epochs=2, batch_size=8)
    plain = fb.Sequential([spec for spec in model._specs if isinstance(spec, fb.Dense)],
                          loss="cross_entropy", dtype=dtype)
    plain.parameters[...] = model.parameters
    first = model.predict(X)
    np.testing.assert_array_equal(model.predict(X), first)
    np.testing.assert_array_equal(first, plain.predict(X))
    assert model.evaluate(X, y) == plain.evaluate(X, y)
    np.testing.assert_allclose(first, reference.softmax(reference_of(model, reference)
                                                        .forward(X).astype(np.float64)),
                               rtol=RTOL[dtype] * 10, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_same_seed_trains_bitwise_identically_and_another_does_not(dtype):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(64, N_FEATURES)), rng.integers(0, N_OUTPUTS, 64)

    def trained(seed, dropout_seed=None):
        model = build("relu", "cross_entropy", dtype=dtype, seed=seed)
        if dropout_seed is not None:
            model._plan.dropout_seed = dropout_seed
        model.fit(X, y, epochs=3, batch_size=16, optimizer=fb.Adam(lr=1e-2), threads=1)
        model.train_step(X[:10], y[:10])
        return model

    first, second = trained(3), trained(3)
    np.testing.assert_array_equal(first.parameters, second.parameters)
    assert first._plan.dropout_seed == second._plan.dropout_seed
    assert trained(4)._plan.dropout_seed != first._plan.dropout_seed
    # The same initial weights and row orders, another dropout seed: other masks.
    other = trained(3, dropout_seed=first._plan.dropout_seed ^ 1)
    assert not np.array_equal(other.parameters, first.parameters)


_CHILD = """
import hashlib, sys
import numpy as np
import fastbp as fb
rng = np.random.default_rng(1)
X, y = rng.normal(size=(64, 7)), rng.integers(0, 3, 64)
model = fb.Sequential([fb.Dropout(0.2), fb.Dense(7, 11, "relu"), fb.Dropout(0.4),
                       fb.Dense(11, 5, "relu"), fb.Dense(5, 3)], loss="cross_entropy",
                      dtype=sys.argv[1], seed=3, threads=1)
model.fit(X, y, epochs=3, batch_size=16, optimizer=fb.Adam(lr=1e-2))
print(hashlib.sha256(model.parameters.tobytes()).hexdigest())
"""


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_same_seed_trains_bitwise_identically_in_two_processes(dtype, tmp_path):
    # cwd outside the checkout: the children import the installed package, not the sources.
    runs = [subprocess.run([sys.executable, "-c", _CHILD, dtype], capture_output=True,
                           text=True, cwd=tmp_path) for _ in range(2)]
    assert all(run.returncode == 0 for run in runs), runs[0].stderr
    assert len({run.stdout for run in runs}) == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_splitting_a_batch_draw_the_masks_of_one_thread(dtype):
    """Rows r0:r1 of a thread draw from element r0·width on: 1 and 3 threads (16 rows split
    unevenly, shuffled, a partial last batch) agree to rounding."""
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(37, N_FEATURES)), rng.integers(0, N_OUTPUTS, 37)
    order = rng.permutation(37)
    results = []
    for n_threads in (1, 3):
        model = build("gelu", "cross_entropy", dtype=dtype, seed=2, rates=(0.3, 0.5))
        model._use_optimizer(fb.SGD(lr=0.1, momentum=0.9))
        model._plan.ensure_capacity(16)
        Xc, Y, labels = model._check_Xy(X, y)
        with threads.blas_threads(1):
            status, loss_sum, n_batches, _ = _native.core.train_epoch(
                model._plan, Xc, Y, labels, order, 16, model.optimizer, np.full(3, 0.1), 0,
                n_threads=n_threads, training_step=11)
        assert status == 0 and n_batches == 3
        results.append((loss_sum, model.parameters.copy()))
    assert results[1][0] == pytest.approx(results[0][0], rel=RTOL[dtype])
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=RTOL[dtype],
                               atol=RTOL[dtype] * 1e-2)


def test_dropout_regularises_a_wide_network():
    """A sanity check of the whole: on 200 rows with 30% of the labels flipped, a wide relu
    network memorises the noise without dropout and generalises better with it (measured:
    test accuracy 0.71-0.73 without, 0.78-0.83 with, over seeds 0-2)."""
    from fastbp.datasets import make_classification

    X, y = make_classification(n_samples=1000, n_features=20, n_classes=3, seed=0)
    flip = np.random.default_rng(0).random(1000) < 0.3
    y_noisy = np.where(flip, (y + 1) % 3, y)
    train, test = slice(0, 200), slice(200, 1000)
    scores = {}
    for rate in (0.0, 0.5):
        model = fb.Sequential([fb.Dense(20, 128, "relu"), fb.Dropout(rate),
                               fb.Dense(128, 128, "relu"), fb.Dropout(rate), fb.Dense(128, 3)],
                              loss="cross_entropy", seed=0)
        model.fit(X[train], y_noisy[train], epochs=60, batch_size=20,
                  optimizer=fb.Adam(lr=2e-3))
        scores[rate] = (model.evaluate(X[train], y_noisy[train])["accuracy"],
                        model.evaluate(X[test], y[test])["accuracy"])
    assert scores[0.0][0] > scores[0.5][0]          # fits the noise less
    assert scores[0.5][1] > scores[0.0][1] + 0.03   # and generalises better


# ---------------------------------------------------------------- saving and resuming

EPOCHS = dict(batch_size=8, optimizer=fb.SGD(lr=0.05, momentum=0.9), threads=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_save_load_resume_equals_uninterrupted_training(tmp_path, dtype):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(44, N_FEATURES)), rng.integers(0, N_OUTPUTS, 44)
    straight = build("relu", dtype=dtype, seed=7)
    resumed = build("relu", dtype=dtype, seed=7)
    straight.fit(X, y, epochs=4, **EPOCHS)
    resumed.fit(X, y, epochs=2, **EPOCHS)
    resumed.save(tmp_path / "m.npz")
    loaded = fb.load(tmp_path / "m.npz")
    copied = pickle.loads(pickle.dumps(resumed))
    assert repr(loaded) == repr(resumed) and loaded.training_steps == 12
    assert loaded._plan.dropout_seed == resumed._plan.dropout_seed
    for model in (loaded, copied):
        model.fit(X, y, epochs=2, batch_size=8, threads=1)   # the saved optimizer
        np.testing.assert_array_equal(model.parameters, straight.parameters)


def test_the_file_describes_dropout(tmp_path):
    model = build("relu", seed=7)
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        config = json.loads(str(archive["config"][()]))
    assert config["version"] == 4
    assert [layer["type"] for layer in config["layers"]] == [
        "dropout", "dense", "dropout", "dense", "dense"]
    assert config["layers"][2] == {"type": "dropout", "rate": 0.4}
    assert config["dropout_seed"] == model._plan.dropout_seed and config["training_steps"] == 0
    fb.mlp([3, 2], seed=0).save(tmp_path / "plain.npz")
    with np.load(tmp_path / "plain.npz", allow_pickle=False) as archive:
        assert json.loads(str(archive["config"][()]))["dropout_seed"] is None


def rewrite_config(path, edit):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    config = json.loads(str(arrays["config"][()]))
    edit(config)
    arrays["config"] = np.array(json.dumps(config))
    if config["version"] < 4:  # files before version 4 hold no running statistics
        arrays.pop("statistics", None)
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def _as_version_2(config):
    """What fastbp wrote before dropout: version 2, untyped layers, no new keys."""
    config["version"] = 2
    del config["training_steps"], config["dropout_seed"]
    for layer in config["layers"]:
        del layer["type"]


def test_a_version_2_file_still_loads_and_resumes(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 5)), rng.integers(0, 4, 30)
    model = fb.Sequential([fb.Dense(5, 9, "tanh"), fb.Dense(9, 4)], loss="cross_entropy", seed=3)
    model.fit(X, y, epochs=1, **EPOCHS)
    model.save(tmp_path / "old.npz")
    rewrite_config(tmp_path / "old.npz", _as_version_2)
    loaded = fb.load(tmp_path / "old.npz")
    assert loaded.training_steps == 0   # not saved then; only dropout masks count them
    model.fit(X, y, epochs=1)
    loaded.fit(X, y, epochs=1)
    np.testing.assert_array_equal(loaded.parameters, model.parameters)


def _set(key, value):
    return lambda config: config.__setitem__(key, value)


def _set_layer(index, value):
    return lambda config: config["layers"].__setitem__(index, value)


TAMPERING = {
    "rate 1": _set_layer(2, {"type": "dropout", "rate": 1.0}),
    "rate negative": _set_layer(2, {"type": "dropout", "rate": -0.5}),
    "rate a string": _set_layer(2, {"type": "dropout", "rate": "0.5"}),
    "rate missing": _set_layer(2, {"type": "dropout"}),
    "dropout with widths": _set_layer(2, {"type": "dropout", "rate": 0.4, "in_features": 11}),
    "unknown layer type": _set_layer(2, {"type": "batchnorm"}),
    "dropout last": lambda config: config["layers"].append({"type": "dropout", "rate": 0.1}),
    "seed missing": lambda config: config.pop("dropout_seed"),
    "seed null": _set("dropout_seed", None),
    "seed negative": _set("dropout_seed", -1),
    "seed too large": _set("dropout_seed", 2 ** 64),
    "seed a float": _set("dropout_seed", 1.5),
    "seed a bool": _set("dropout_seed", True),
    "seed a string": _set("dropout_seed", "12"),
    "training steps negative": _set("training_steps", -1),
    "training steps a float": _set("training_steps", 2.0),
    "dropout in a version 2 file": _as_version_2,
    "version a bool": _set("version", True),
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_tampered_dropout_files_are_refused(tmp_path, how):
    path = tmp_path / "m.npz"
    build("relu", seed=7).save(path)
    rewrite_config(path, TAMPERING[how])
    with pytest.raises(ValueError, match="not a valid fastbp model file"):
        fb.load(path)


def test_a_seed_on_a_model_without_dropout_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    fb.mlp([3, 4, 2], seed=0).save(path)
    rewrite_config(path, _set("dropout_seed", 5))
    with pytest.raises(ValueError, match="no layer drops out"):
        fb.load(path)


# ---------------------------------------------------------------- refused arguments

@pytest.mark.parametrize("value, error", [(-1, ValueError), (1.0, TypeError), ("3", TypeError),
                                          (True, TypeError)])
def test_bad_dropout_steps_are_refused_and_change_nothing(value, error):
    model = build("relu", seed=1)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, N_FEATURES)), rng.integers(0, N_OUTPUTS, 12)
    model.fit(X, y, epochs=1, batch_size=4)
    before = state_of(model)
    with pytest.raises(error, match="dropout_step"):
        model.gradients(X, y, dropout_step=value)
    with pytest.raises(error, match="dropout_step"):
        fb.check_gradients(model, X, y, dropout_step=value)
    assert_same_state(state_of(model), before)


def test_training_steps_is_read_only():
    model = build()
    with pytest.raises(AttributeError):
        model.training_steps = 3


def test_refused_training_input_leaves_the_step_count_and_masks_alone():
    model = build("relu", seed=1)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, N_FEATURES)), rng.integers(0, N_OUTPUTS, 12)
    model.fit(X, y, epochs=1, batch_size=4)
    before = state_of(model)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        model.fit(bad, y, epochs=1, batch_size=4)
    with pytest.raises(ValueError, match="X contains NaN"):
        model.train_step(bad, y)
    assert_same_state(state_of(model), before)


def test_mlp_puts_a_dropout_after_every_hidden_layer():
    model = fb.mlp([6, 5, 4, 3], loss="cross_entropy", seed=0, dropout=0.25)
    assert [type(layer).__name__ for layer in model.layers] == [
        "BoundDense", "Dropout", "BoundDense", "Dropout", "BoundDense"]
    assert all(layer.rate == 0.25 for layer in model.layers[1::2])
    assert len(fb.mlp([6, 5, 3], seed=0, dropout=0.0).layers) == 2
    with pytest.raises(ValueError, match="rate"):
        fb.mlp([6, 3], dropout=1.0)


def test_a_version_3_file_still_loads(tmp_path):
    """What fastbp wrote before BatchNorm: version 3, no statistics array."""
    model = build("relu", seed=7)
    model.save(tmp_path / "m.npz")
    rewrite_config(tmp_path / "m.npz", lambda config: config.update(version=3))
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        assert "statistics" not in archive.files
    again = fb.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(again.parameters, model.parameters)
    X = np.random.default_rng(0).normal(size=(5, N_FEATURES))
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    rewrite_config(tmp_path / "m.npz", lambda config: config["layers"].insert(
        1, {"type": "batchnorm", "num_features": 7, "momentum": 0.1, "eps": 1e-5,
            "affine": True}))
    with pytest.raises(ValueError, match="unknown layer type 'batchnorm'"):
        fb.load(tmp_path / "m.npz")  # a version 3 file cannot hold one

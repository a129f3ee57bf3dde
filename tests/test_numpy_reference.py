"""Tests for the pure-NumPy reference MLP in benchmarks/numpy_reference.py."""

import importlib.util
import itertools
import pathlib

import numpy as np
import pytest

_PATH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "numpy_reference.py"
_spec = importlib.util.spec_from_file_location("numpy_reference", _PATH)
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)
NumpyMLP = ref.NumpyMLP

HIDDEN = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "gelu", "softplus", "elu", "swish"]
LOSSES = ["mse", "cross_entropy", "binary_cross_entropy", "huber", "mae"]
REGRESSION = ["mse", "huber", "mae"]


def make_targets(loss, B, O, rng, dtype=np.float64):
    if loss == "cross_entropy":
        return rng.integers(0, O, size=B)
    if loss == "binary_cross_entropy":
        return rng.uniform(0, 1, size=(B, O)).astype(dtype)
    return rng.normal(size=(B, O)).astype(dtype)


def output_activation(loss, hidden):
    # The regression losses may have any output activation; the cross entropies take raw logits.
    return hidden if loss in REGRESSION else "identity"


def numeric_gradients(model, X, y, wd, eps=1e-6):
    grads = []
    for W, b in model.params:
        pair = []
        for p in (W, b):
            g = np.zeros_like(p)
            flat, gflat = p.reshape(-1), g.reshape(-1)
            for i in range(flat.size):
                old = flat[i]
                flat[i] = old + eps
                lp, _ = model.loss_and_gradients(X, y, wd)
                flat[i] = old - eps
                lm, _ = model.loss_and_gradients(X, y, wd)
                flat[i] = old
                gflat[i] = (lp - lm) / (2 * eps)
            pair.append(g)
        grads.append(pair)
    return grads


def rel_error(num, ana):
    """max |num - ana| relative to the largest gradient entry of the array."""
    scale = max(np.abs(num).max(), np.abs(ana).max(), 1e-12)
    return np.abs(num - ana).max() / scale


GRADCHECK_CASES = list(itertools.product(HIDDEN, LOSSES, [(5, 7, 3), (4, 6, 5, 2)], [1, 7], [0.0, 0.3]))


@pytest.mark.parametrize("case", range(len(GRADCHECK_CASES)),
                         ids=["-".join(map(str, c)) for c in GRADCHECK_CASES])
def test_gradient_check(case):
    hidden, loss, sizes, B, wd = GRADCHECK_CASES[case]
    rng = np.random.default_rng(case)
    acts = [hidden] * (len(sizes) - 2) + [output_activation(loss, hidden)]
    model = NumpyMLP(sizes, acts, loss, dtype="float64", seed=int(rng.integers(1000)))
    for _, b in model.params:  # non-zero biases so they matter in the check
        b[:] = rng.normal(scale=0.3, size=b.shape)
    X = rng.normal(size=(B, sizes[0]))
    y = make_targets(loss, B, sizes[-1], rng)

    _, grads = model.loss_and_gradients(X, y, wd)
    num = numeric_gradients(model, X, y, wd)
    for (dW, db), (nW, nb), (W, b) in zip(grads, num, model.params):
        assert dW.shape == W.shape and db.shape == b.shape
        assert rel_error(nW, dW) < 1e-6
        assert rel_error(nb, db) < 1e-6


def test_loss_values_against_naive_formulas():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(6, 3))
    for loss in LOSSES:
        model = NumpyMLP([3, 4, 5], ["tanh", "identity"], loss, dtype="float64", seed=2)
        W1, b1 = model.params[0]
        W2, b2 = model.params[1]
        Z = np.tanh(X @ W1 + b1) @ W2 + b2
        np.testing.assert_allclose(model.forward(X), Z, rtol=1e-14)
        y = make_targets(loss, 6, 5, rng)
        if loss == "mse":
            expected = np.mean((Z - y) ** 2)
            probs = Z
        elif loss == "huber":  # written out, as torch.nn.HuberLoss documents it
            d = np.abs(Z - y)
            expected = np.mean([0.5 * e * e if e < 1 else e - 0.5 for e in d.ravel()])
            probs = Z
        elif loss == "mae":
            expected = np.mean(np.abs(Z - y))
            probs = Z
        elif loss == "cross_entropy":
            p = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
            expected = -np.mean(np.log(p[np.arange(6), y]))
            probs = p
        else:
            s = 1 / (1 + np.exp(-Z))
            expected = -np.mean(y * np.log(s) + (1 - y) * np.log(1 - s))
            probs = s
        got, _ = model.loss_and_gradients(X, y)
        np.testing.assert_allclose(got, expected, rtol=1e-12)
        np.testing.assert_allclose(model.predict(X), probs, rtol=1e-12)
        pen = 0.5 * 0.1 * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
        got_wd, _ = model.loss_and_gradients(X, y, weight_decay=0.1)
        np.testing.assert_allclose(got_wd, expected + pen, rtol=1e-12)


def test_activations_forward_and_extreme_logits():
    z = np.array([[-1000.0, -2.0, 0.0, 3.0, 1000.0]])
    for name, expected in [
        ("identity", z),
        ("sigmoid", np.exp(-np.logaddexp(0, -z))),
        ("tanh", np.tanh(z)),
        ("relu", np.maximum(z, 0)),
        ("leaky_relu", np.where(z > 0, z, 0.01 * z)),
        # Values from the definitions, by hand: gelu(-2) = -2·Φ̃(-2) with the tanh form.
        ("gelu", [[-0.0, -2 * 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (-2 - 0.044715 * 8))),
                   0.0, 3 * 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (3 + 0.044715 * 27))),
                   1000.0]]),
        ("softplus", [[0.0, np.log(1 + np.exp(-2.0)), np.log(2.0), np.log(1 + np.exp(3.0)),
                       1000.0]]),
        ("elu", [[-1.0, np.exp(-2.0) - 1, 0.0, 3.0, 1000.0]]),
        ("swish", [[-0.0, -2 / (1 + np.exp(2.0)), 0.0, 3 / (1 + np.exp(-3.0)), 1000.0]]),
    ]:
        model = NumpyMLP([5, 5], [name], "mse", dtype="float64", weights=[(np.eye(5), np.zeros(5))])
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            np.testing.assert_allclose(model.forward(z), expected, rtol=1e-14)
    # Huge logits: stable losses stay finite.
    for loss, y in [("cross_entropy", [0]), ("binary_cross_entropy", [[0, 1, 0, 1, 0]])]:
        model = NumpyMLP([5, 5], ["identity"], loss, dtype="float64", weights=[(np.eye(5), np.zeros(5))])
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            value, grads = model.loss_and_gradients(z, y)
        assert np.isfinite(value) and all(np.isfinite(g).all() for pair in grads for g in pair)


def test_default_initialisation():
    sizes, acts = [6, 4, 3, 2], ["relu", "tanh", "identity"]
    model = NumpyMLP(sizes, acts, "cross_entropy", dtype="float32", seed=5)
    rng = np.random.default_rng(5)
    for (W, b), n_in, n_out, act in zip(model.params, sizes[:-1], sizes[1:], acts):
        bound = np.sqrt(6 / n_in) if act in ("relu", "leaky_relu") else np.sqrt(6 / (n_in + n_out))
        expected = rng.uniform(-bound, bound, size=(n_in, n_out)).astype(np.float32)
        assert W.dtype == np.float32 and b.dtype == np.float32
        np.testing.assert_array_equal(W, expected)
        np.testing.assert_array_equal(b, np.zeros(n_out, np.float32))


def test_given_weights_are_copied():
    W, b = np.ones((2, 3)), np.zeros(3)
    model = NumpyMLP([2, 3], ["identity"], "mse", dtype="float64", weights=[(W, b)])
    model.sgd_step(np.ones((1, 2)), np.zeros((1, 3)), lr=0.1)
    assert np.all(W == 1) and np.all(b == 0)
    assert not np.all(model.params[0][0] == 1)


def test_invalid_configurations():
    with pytest.raises(ValueError):
        NumpyMLP([2, 3], ["tanh"], "cross_entropy")
    with pytest.raises(ValueError):
        NumpyMLP([2, 3], ["mish"], "mse")
    with pytest.raises(ValueError):
        NumpyMLP([2, 3, 1], ["tanh"], "mse")
    with pytest.raises(ValueError):
        NumpyMLP([2, 3], ["identity"], "hinge")


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_by_hand(nesterov):
    # Single linear unit, mse, one sample: Z = x.W + b, dL/dZ = 2 (Z - y).
    x, y = np.array([[1.0, 2.0]]), np.array([[1.0]])
    W0, b0 = np.array([[0.5], [-1.0]]), np.array([0.25])
    lr, mu, wd = 0.1, 0.9, 0.1
    model = NumpyMLP([2, 1], ["identity"], "mse", dtype="float64", weights=[(W0, b0)])

    # Step 1: Z = 0.5 - 2 + 0.25 = -1.25, dZ = 2 * (-2.25) = -4.5.
    # dW = [-4.5, -9] + wd * W = [-4.45, -9.1]; db = -4.5 (no decay); v = g.
    loss = model.sgd_step(x, y, lr, momentum=mu, nesterov=nesterov, weight_decay=wd)
    assert loss == pytest.approx(2.25 ** 2, rel=1e-15)
    factor = 1 + mu if nesterov else 1.0  # nesterov uses g + mu * v = (1 + mu) g
    W1 = W0 - lr * factor * np.array([[-4.45], [-9.1]])
    b1 = b0 - lr * factor * np.array([-4.5])
    np.testing.assert_allclose(model.params[0][0], W1, rtol=1e-14)
    np.testing.assert_allclose(model.params[0][1], b1, rtol=1e-14)
    vW, vb = np.array([[-4.45], [-9.1]]), np.array([-4.5])

    # Step 2: buffers persist, v = mu * v + g.
    dZ = 2 * (x @ W1 + b1 - y)
    gW, gb = x.T @ dZ + wd * W1, dZ.sum(axis=0)
    vW, vb = mu * vW + gW, mu * vb + gb
    uW, ub = (gW + mu * vW, gb + mu * vb) if nesterov else (vW, vb)
    model.sgd_step(x, y, lr, momentum=mu, nesterov=nesterov, weight_decay=wd)
    np.testing.assert_allclose(model.params[0][0], W1 - lr * uW, rtol=1e-14)
    np.testing.assert_allclose(model.params[0][1], b1 - lr * ub, rtol=1e-14)


def test_plain_sgd_matches_gradients():
    rng = np.random.default_rng(3)
    model = NumpyMLP([4, 6, 3], ["sigmoid", "identity"], "cross_entropy", dtype="float64", seed=3)
    X, y = rng.normal(size=(5, 4)), rng.integers(0, 3, size=5)
    before = [[p.copy() for p in pair] for pair in model.params]
    _, grads = model.loss_and_gradients(X, y, weight_decay=0.01)
    model.sgd_step(X, y, lr=0.5, weight_decay=0.01)
    for (W, b), (W0, b0), (dW, db) in zip(model.params, before, grads):
        np.testing.assert_allclose(W, W0 - 0.5 * dW, rtol=1e-14)
        np.testing.assert_allclose(b, b0 - 0.5 * db, rtol=1e-14)


def test_train_epoch_batches_include_last_partial():
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    order = rng.permutation(10)
    a = NumpyMLP([3, 5, 2], ["leaky_relu", "sigmoid"], "mse", dtype="float64", seed=1)
    b = NumpyMLP([3, 5, 2], ["leaky_relu", "sigmoid"], "mse", dtype="float64", seed=1)
    kw = dict(lr=0.2, momentum=0.8, nesterov=True, weight_decay=1e-3)
    mean_loss = a.train_epoch(X, Y, order, 4, **kw)
    losses = [b.sgd_step(X[order[s:s + 4]], Y[order[s:s + 4]], **kw) for s in (0, 4, 8)]
    assert mean_loss == pytest.approx(np.mean(losses), rel=1e-15)
    for pa, pb in zip(a.params, b.params):
        for p, q in zip(pa, pb):
            np.testing.assert_array_equal(p, q)


XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
XOR_Y = np.array([0, 1, 1, 0])


@pytest.mark.parametrize("loss", ["binary_cross_entropy", "cross_entropy"])
def test_xor(loss):
    if loss == "binary_cross_entropy":
        model = NumpyMLP([2, 4, 1], ["tanh", "identity"], loss, dtype="float64", seed=0)
        y = XOR_Y[:, None].astype(float)
    else:
        model = NumpyMLP([2, 4, 2], ["tanh", "identity"], loss, dtype="float64", seed=0)
        y = XOR_Y
    order = np.arange(4)
    first = model.train_epoch(XOR_X, y, order, 4, lr=0.5, momentum=0.9)
    for _ in range(500):
        last = model.train_epoch(XOR_X, y, order, 4, lr=0.5, momentum=0.9)
    assert last < 0.05 < first
    p = model.predict(XOR_X)
    pred = (p[:, 0] > 0.5).astype(int) if loss == "binary_cross_entropy" else p.argmax(axis=1)
    np.testing.assert_array_equal(pred, XOR_Y)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_float32_stays_float32(hidden, loss):
    rng = np.random.default_rng(6)
    sizes = [4, 6, 5, 3]
    acts = [hidden, hidden, output_activation(loss, hidden)]
    m32 = NumpyMLP(sizes, acts, loss, dtype="float32", seed=7)
    m64 = NumpyMLP(sizes, acts, loss, dtype="float64", weights=[(W, b) for W, b in m32.params])
    X = rng.normal(size=(9, 4))  # float64 input, must be cast
    y = make_targets(loss, 9, 3, rng)  # float64 targets for mse / bce

    assert m32.forward(X).dtype == np.float32
    assert m32.predict(X).dtype == np.float32
    # NumPy float64 scalars are not "weak": they must not upcast float32 arrays.
    loss32, grads = m32.loss_and_gradients(X, y, weight_decay=np.float64(0.01))
    assert all(g.dtype == np.float32 for pair in grads for g in pair)
    loss64, grads64 = m64.loss_and_gradients(X, y, weight_decay=0.01)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for pair32, pair64 in zip(grads, grads64):
        for g32, g64 in zip(pair32, pair64):
            np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5)

    kw = dict(lr=np.float64(0.1), momentum=np.float64(0.9), nesterov=True,
              weight_decay=np.float64(1e-3))
    m32.sgd_step(X, y, **kw)
    m32.train_epoch(X, y, rng.permutation(9), 4, **kw)
    for W, b in m32.params:
        assert W.dtype == np.float32 and b.dtype == np.float32
    for vW, vb in m32.velocities:
        assert vW.dtype == np.float32 and vb.dtype == np.float32


def test_float32_training_tracks_float64():
    rng = np.random.default_rng(8)
    m32 = NumpyMLP([4, 8, 3], ["relu", "identity"], "cross_entropy", dtype="float32", seed=9)
    m64 = NumpyMLP([4, 8, 3], ["relu", "identity"], "cross_entropy", dtype="float64",
                   weights=[(W, b) for W, b in m32.params])
    X, y = rng.normal(size=(16, 4)), rng.integers(0, 3, size=16)
    order = rng.permutation(16)
    for m in (m32, m64):
        for _ in range(3):
            m.train_epoch(X, y, order, 5, lr=0.1, momentum=0.9)
    for p32, p64 in zip(m32.params, m64.params):
        for a, b in zip(p32, p64):
            assert a.dtype == np.float32
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

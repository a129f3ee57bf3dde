"""loss="poisson": the last layer's raw output is the log-rate z, the loss is exp(z) - y·z
averaged over samples and outputs, predict returns exp(z). Oracles: central differences in
float64, torch.nn.PoissonNLLLoss(log_input=True, full=False) with its mean reduction (the
mean over all n_samples·n_outputs entries, which is fastbp's per-row mean over outputs
averaged over rows: every row has the same number of outputs), torch.optim step for step.
"""
import numpy as np
import pytest

import fastbp as fb
from fastbp import Loss, _native
from fastbp.activations import ActivationCode

torch = pytest.importorskip("torch")

#: float32 steps drift from torch's float32 by rounding only (different summation orders).
TOLERANCE = {"float32": dict(rtol=2e-4, atol=2e-5), "float64": dict(rtol=1e-10, atol=1e-12)}
dtypes = pytest.mark.parametrize("dtype", ["float32", "float64"])


def counts_problem(rows, features=5, outputs=3, seed=0):
    """Inputs and Poisson counts whose log-rate is a smooth function of them (zeros
    included: with rates near 1, about a third of the counts are 0)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    log_rate = 0.4 * np.tanh(X[:, :outputs]) + 0.2 * X[:, -outputs:]
    return X, rng.poisson(np.exp(log_rate)).astype(np.float64)


def network(dtype, seed=1, outputs=3):
    return fb.Sequential([fb.Dense(5, 7, "tanh"), fb.Dense(7, 4, "relu"),
                          fb.Dense(4, outputs)], loss="poisson", dtype=dtype, seed=seed)


def torch_copy(model):
    """The same network in torch (Linear layers hold fastbp's weight transposed)."""
    dtype = getattr(torch, model.dtype.name)
    modules = []
    for layer in model.layers:
        linear = torch.nn.Linear(layer.in_features, layer.out_features, dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(layer.weight.T.copy()))
            linear.bias.copy_(torch.from_numpy(layer.bias.copy()))
        modules.append(linear)
        if layer.activation != "identity":
            modules.append({"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[layer.activation]())
    return torch.nn.Sequential(*modules)


def torch_weights(net):
    return [(m.weight.detach().numpy().T, m.bias.detach().numpy())
            for m in net if isinstance(m, torch.nn.Linear)]


def assert_same_parameters(model, net, dtype):
    for layer, (weight, bias) in zip(model.layers, torch_weights(net)):
        np.testing.assert_allclose(layer.weight, weight, **TOLERANCE[dtype])
        np.testing.assert_allclose(layer.bias, bias, **TOLERANCE[dtype])


# ---------------------------------------------------------------- the loss itself

@pytest.fixture(params=_native.available())
def core(request):
    return _native.load(request.param)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_kernel_matches_torch_poisson_nll(core, dtype):
    rng = np.random.default_rng(4)
    Z = (1.5 * rng.standard_normal((7, 5))).astype(dtype)  # 7 rows, 5 outputs
    Y = rng.poisson(2.0, (7, 5)).astype(dtype)
    Y[0] = 0
    grad = Z.copy()
    value = core._twin_loss(int(Loss.POISSON), int(ActivationCode.IDENTITY), grad, Z[:0], Y,
                            np.zeros(0, dtype=np.intp))
    z = torch.tensor(Z, requires_grad=True)
    expected = torch.nn.PoissonNLLLoss(log_input=True, full=False)(z, torch.tensor(Y))
    expected.backward()
    rtol = 2e-6 if dtype == np.float32 else 1e-12
    assert value == pytest.approx(expected.item(), rel=rtol)
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=rtol, atol=rtol * 1e-2)


def test_gradients_match_central_differences_in_float64():
    X, y = counts_problem(11)
    for dtype in ("float64", "float32"):  # check_gradients checks a float64 copy
        assert fb.check_gradients(network(dtype), X, y) < 1e-7


def test_predict_is_the_rate_and_evaluate_the_mean_loss():
    X, y = counts_problem(9)
    model = network("float64")
    log_rate = torch_copy(model)(torch.from_numpy(X)).detach().numpy()
    np.testing.assert_allclose(model.predict(X), np.exp(log_rate), rtol=1e-12)
    weights = np.random.default_rng(3).uniform(0, 2, 9)
    per_entry = np.exp(log_rate) - y * log_rate
    assert model.evaluate(X, y)["loss"] == pytest.approx(per_entry.mean(), rel=1e-12)
    assert model.evaluate(X, y, sample_weight=weights) == {
        "loss": pytest.approx(np.mean(weights * per_entry.mean(axis=1)), rel=1e-12)}


# ---------------------------------------------------------------- training against torch

@dtypes
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_training_matches_torch_step_for_step(dtype, weighted):
    """Two epochs of SGD with momentum, unshuffled, batch 5 over 13 rows (5, 5, 3); with
    sample weights, torch's per-entry losses (reduction="none") weighted by row and
    averaged over the batch's entries: fastbp's Σ w·loss / rows."""
    X, y = counts_problem(13)
    X, y = X.astype(dtype), y.astype(dtype)
    weights = np.random.default_rng(2).uniform(0.2, 3.0, 13).astype(dtype) if weighted else None
    model = network(dtype)
    net = torch_copy(model)
    optimizer = fb.SGD(lr=0.05, momentum=0.9, weight_decay=1e-3)
    theirs = torch.optim.SGD([{"params": [m.weight for m in net if hasattr(m, "weight")],
                               "weight_decay": 1e-3},
                              {"params": [m.bias for m in net if hasattr(m, "bias")],
                               "weight_decay": 0.0}], lr=0.05, momentum=0.9)
    nll = torch.nn.PoissonNLLLoss(log_input=True, full=False, reduction="none")
    torch_losses = []
    for _ in range(2):
        epoch_loss = 0.0
        for start in range(0, 13, 5):
            rows = slice(start, start + 5)
            entries = nll(net(torch.from_numpy(X[rows])), torch.from_numpy(y[rows]))
            if weighted:
                entries = entries * torch.from_numpy(weights[rows])[:, None]
            loss = entries.mean()
            theirs.zero_grad()
            loss.backward()
            theirs.step()
            epoch_loss += loss.item() * len(X[rows])
        torch_losses.append(epoch_loss / 13)
    history = model.fit(X, y, epochs=2, batch_size=5, shuffle=False, optimizer=optimizer,
                        sample_weight=weights)
    assert_same_parameters(model, net, dtype)
    np.testing.assert_allclose(history.loss, torch_losses, rtol=TOLERANCE[dtype]["rtol"])


@dtypes
def test_train_step_with_adam_matches_torch(dtype):
    """Odd batches (7 rows, then 3) of one train_step each, Adam's state carried over."""
    X, y = counts_problem(10, seed=5)
    X, y = X.astype(dtype), y.astype(dtype)
    model = network(dtype, seed=3, outputs=3)
    net = torch_copy(model)
    theirs = torch.optim.Adam(net.parameters(), lr=0.01)
    nll = torch.nn.PoissonNLLLoss(log_input=True, full=False)
    optimizer = fb.Adam(lr=0.01)
    for rows in (slice(0, 7), slice(7, 10), slice(0, 7)):
        ours = model.train_step(X[rows], y[rows], optimizer=optimizer)
        loss = nll(net(torch.from_numpy(X[rows])), torch.from_numpy(y[rows]))
        theirs.zero_grad()
        loss.backward()
        theirs.step()
        assert ours == pytest.approx(loss.item(), rel=TOLERANCE[dtype]["rtol"])
    assert_same_parameters(model, net, dtype)


# ---------------------------------------------------------------- targets, output, files

@pytest.mark.parametrize("bad, message", [
    (-1.0, r"y must be >= 0 \(counts or rates\) for loss='poisson'"),
    (np.nan, "y contains NaN or infinity"),
    (np.inf, "y contains NaN or infinity"),
])
def test_targets_are_checked(bad, message):
    X, y = counts_problem(6)
    y[2, 1] = bad
    model = network("float64")
    for call in (lambda: model.fit(X, y, epochs=1), lambda: model.evaluate(X, y),
                 lambda: model.train_step(X, y), lambda: model.gradients(X, y)):
        with pytest.raises(ValueError, match=message):
            call()


def test_the_last_layer_must_output_the_raw_log_rate():
    with pytest.raises(ValueError, match=r"loss='poisson' applies exp to the log-rate itself.*"
                                         r"\(layers\[1\]\) must have activation=None"):
        fb.Sequential([fb.Dense(3, 4, "relu"), fb.Dense(4, 2, "softplus")], loss="poisson")
    assert fb.mlp([3, 4, 2], loss="poisson").loss == "poisson"


def test_an_overflowing_rate_stops_training_with_the_non_finite_loss_error():
    X, y = counts_problem(8)
    model = network("float32")
    model.layers[-1].bias[...] = 200.0  # exp(200) overflows float32
    with pytest.raises(fb.DivergenceError, match="the loss became NaN or infinite"):
        model.fit(X, y, epochs=1, batch_size=4)


def test_save_and_load_keep_the_loss_and_the_predictions(tmp_path):
    X, y = counts_problem(12)
    model = network("float64")
    model.fit(X, y, epochs=2, batch_size=5, optimizer=fb.Adam(lr=0.01))
    model.save(tmp_path / "poisson.npz")
    loaded = fb.load(tmp_path / "poisson.npz")
    assert loaded.loss == "poisson"
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.evaluate(X, y) == model.evaluate(X, y)

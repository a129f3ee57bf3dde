"""The newer activations and the regression losses against PyTorch (skipped without torch).

torch is the definition these follow: ``gelu`` is ``torch.nn.GELU(approximate="tanh")``,
``softplus`` is ``torch.nn.Softplus()`` (beta 1), ``elu`` is ``torch.nn.ELU()`` (alpha 1),
``swish`` is ``torch.nn.SiLU()``, ``huber`` is ``torch.nn.HuberLoss()`` (delta 1) and ``mae``
is ``torch.nn.L1Loss()``, all with mean reduction. Derivatives come from torch's autograd.
"""
import numpy as np
import pytest

import fastbp as fb
from fastbp import Loss, _native
from fastbp.activations import ActivationCode

torch = pytest.importorskip("torch")
F = torch.nn.functional

TORCH_ACTIVATIONS = {
    ActivationCode.GELU: lambda z: F.gelu(z, approximate="tanh"),
    ActivationCode.SOFTPLUS: F.softplus,
    ActivationCode.ELU: F.elu,
    ActivationCode.SWISH: F.silu,
}
KEEPS_Z = (ActivationCode.GELU, ActivationCode.SWISH)
# float64: torch's softplus returns z itself above 20, where log1p(exp(-z)) < 2e-9 is added
# here, and torch's 0.5·z·(1 + tanh u) cancels where tanh u nears -1: both far below 1e-9.
TOLERANCE = {np.float32: dict(rtol=2e-6, atol=2e-7), np.float64: dict(rtol=1e-9, atol=1e-15)}
dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])


@pytest.fixture(params=_native.available())
def core(request):
    return _native.load(request.param)


def torch_value_and_derivative(act, Z):
    """torch's act(Z) and act'(Z), computed in float64 from Z as given: torch's own float32
    gelu derivative loses digits where 1 - tanh² cancels (z below about -4), ours does not."""
    z = torch.tensor(Z.astype(np.float64), requires_grad=True)
    a = TORCH_ACTIVATIONS[act](z)
    a.sum().backward()
    return a.detach().numpy(), z.grad.numpy()


@dtypes
@pytest.mark.parametrize("act", list(TORCH_ACTIVATIONS), ids=lambda a: a.name.lower())
def test_activation_and_derivative_match_torch(core, act, dtype):
    rng = np.random.default_rng(int(act))
    Z = (4 * rng.standard_normal((7, 13))).astype(dtype)
    Z[0] = [-100, -30, -21, -20, -1e-3, -1e-6, 0, 1e-6, 1e-3, 20, 21, 30, 100]
    A = Z.copy()
    K = Z.copy() if act in KEEPS_Z else Z[:0]
    core._twin_bias_act(A, np.zeros(Z.shape[1], dtype), int(act), K)
    D = A.ravel().copy()
    core._twin_act_backward(D, K.ravel(), np.ones_like(D), int(act))
    value, derivative = torch_value_and_derivative(act, Z)
    np.testing.assert_allclose(A, value, **TOLERANCE[dtype])
    np.testing.assert_allclose(D.reshape(Z.shape), derivative, **TOLERANCE[dtype])


TORCH_LOSSES = {"mse": torch.nn.MSELoss, "huber": torch.nn.HuberLoss, "mae": torch.nn.L1Loss}


@dtypes
@pytest.mark.parametrize("loss", ["huber", "mae"])
def test_regression_loss_kernels_match_torch(core, loss, dtype):
    """On raw outputs (identity), residuals either side of huber's seam and an exact zero
    residual (mae's subgradient there: torch's sign(0) = 0)."""
    rng = np.random.default_rng(3)
    Z = (2 * rng.standard_normal((6, 5))).astype(dtype)
    Y = rng.standard_normal((6, 5)).astype(dtype)
    Y[2, 3] = Z[2, 3]
    grad = Z.copy()
    value = core._twin_loss(int(Loss[loss.upper()]), int(ActivationCode.IDENTITY), grad, Z[:0], Y,
                            np.zeros(0, dtype=np.intp))
    z = torch.tensor(Z, requires_grad=True)
    expected = TORCH_LOSSES[loss]()(z, torch.tensor(Y))
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=TOLERANCE[dtype]["rtol"])
    np.testing.assert_allclose(grad, z.grad.numpy(), **TOLERANCE[dtype])
    if loss == "mae":
        assert grad[2, 3] == 0


def torch_network(model):
    """The same network in torch: Linear layers holding Wᵀ and b, then each activation."""
    modules = []
    for layer in model.layers:
        linear = torch.nn.Linear(layer.in_features, layer.out_features, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(layer.weight.T))
            linear.bias.copy_(torch.tensor(layer.bias))
        modules.append(linear)
        code = fb.activations.activation_code(layer.activation)
        if code != ActivationCode.IDENTITY:
            modules.append(lambda x, f=TORCH_ACTIVATIONS[code]: f(x))
    return modules


@pytest.mark.parametrize("loss", list(TORCH_LOSSES))
@pytest.mark.parametrize("hidden, output", [("gelu", "swish"), ("swish", "gelu"),
                                            ("elu", "softplus"), ("softplus", "elu"),
                                            ("gelu", None)])
def test_network_gradients_match_torch_autograd(loss, hidden, output):
    rng = np.random.default_rng(7)
    model = fb.Sequential([fb.Dense(5, 7, hidden), fb.Dense(7, 4, hidden),
                           fb.Dense(4, 3, output)], loss=loss, dtype="float64", seed=1)
    for layer in model.layers:
        layer.bias[...] = 0.1 * rng.standard_normal(layer.bias.shape)
    X, Y = rng.standard_normal((9, 5)), 2 * rng.standard_normal((9, 3))
    value, grads = model.gradients(X, Y)

    x = torch.tensor(X)
    modules = torch_network(model)
    for module in modules:
        x = module(x)
    expected = TORCH_LOSSES[loss]()(x, torch.tensor(Y))
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-12)
    linears = [m for m in modules if isinstance(m, torch.nn.Linear)]
    for (dW, db), linear in zip(grads, linears):
        np.testing.assert_allclose(dW, linear.weight.grad.numpy().T, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(db, linear.bias.grad.numpy(), rtol=1e-9, atol=1e-14)

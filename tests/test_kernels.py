"""The compiled kernels, one by one, through their ``def`` twins, in every
compiled build of the core that runs here (``fastbp._core`` and ``fastbp._core_avx2``).

Each twin runs one inline kernel of ``src_c/*.pxd`` on arrays we hand it; here every one is
checked in float32 and float64 against a NumPy computation done in float64 from the same
(dtype-rounded) inputs. Shapes are never square, so a swapped operand or leading dimension
cannot pass by accident.
"""
import zlib

import numpy as np
import pytest
from scipy.special import expit, logsumexp, softmax

import fastbp
from fastbp import Activation, Loss, _native
from fastbp.activations import LEAKY_RELU_SLOPE
from fastbp.optimizers import OptimizerCode

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
EMPTY_LABELS = np.zeros(0, dtype=np.intp)

#: Inputs far beyond where exp overflows (float32 past ~88, float64 past ~709).
EXTREMES = [-1e4, -1e3, -100.0, -80.0, -20.0, 0.0, 20.0, 80.0, 100.0, 1e3, 1e4]


@pytest.fixture(params=_native.available())
def core(request):
    """Each compiled build of the core that runs on this CPU (baseline, AVX2)."""
    return _native.load(request.param)


#: Logits to push the fused losses to their limits, per dtype.
EXTREME_LOGIT = {np.float32: 80.0, np.float64: 1e4}

ACT_FORWARD = {
    Activation.IDENTITY: lambda z: z,
    Activation.SIGMOID: expit,
    Activation.TANH: np.tanh,
    Activation.RELU: lambda z: np.maximum(z, 0),
    Activation.LEAKY_RELU: lambda z: np.where(z > 0, z, LEAKY_RELU_SLOPE * z),
}
# act'(z) written from a = act(z), as the core documents.
ACT_DERIVATIVE = {
    Activation.IDENTITY: lambda a: np.ones_like(a),
    Activation.SIGMOID: lambda a: a * (1 - a),
    Activation.TANH: lambda a: 1 - a * a,
    Activation.RELU: lambda a: (a > 0).astype(a.dtype),
    Activation.LEAKY_RELU: lambda a: np.where(a > 0, 1.0, LEAKY_RELU_SLOPE),
}

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
activations = pytest.mark.parametrize("act", list(Activation), ids=lambda a: a.name.lower())


def rng_for(*key):
    """A generator seeded from the test's parameters, so every case is repeatable."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def normal(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def assert_close(actual, expected, dtype):
    """Relative tolerance of the dtype; absolute slack scaled to the largest expected entry,
    so entries that cancel to ~0 are judged against the array's scale."""
    actual = np.asarray(actual)
    assert actual.dtype == dtype
    assert np.all(np.isfinite(actual)), "kernel produced NaN or infinity"
    rtol = RTOL[dtype]
    scale = np.abs(expected).max() if np.size(expected) else 0.0
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=rtol, atol=rtol * scale)


def f64(array):
    """A float64 copy (never a view: the kernels write their inputs in place)."""
    return np.array(array, dtype=np.float64)


# ---------------------------------------------------------------- BLAS wrappers

# kind -> (shape of A, shape of B, NumPy product); C is 5 x 7 in every case.
MM_CASES = {
    "nn": ((5, 3), (3, 7), lambda A, B: A @ B),
    "nt": ((5, 3), (7, 3), lambda A, B: A @ B.T),
    "tn": ((3, 5), (3, 7), lambda A, B: A.T @ B),
}


@dtypes
@pytest.mark.parametrize("beta", [0.0, 0.5], ids=["beta0", "beta0.5"])
@pytest.mark.parametrize("kind", list(MM_CASES))
def test_mm(core, kind, beta, dtype):
    a_shape, b_shape, product = MM_CASES[kind]
    rng = rng_for(kind, beta, dtype)
    A, B = normal(rng, a_shape, dtype), normal(rng, b_shape, dtype)
    # With beta == 0 BLAS must not read C: stale NaNs in the workspace must not leak through.
    C0 = np.full((5, 7), np.nan, dtype) if beta == 0 else normal(rng, (5, 7), dtype)
    C = C0.copy()
    core._twin_mm(kind, A, B, C, beta)
    expected = product(f64(A), f64(B)) + (beta * f64(C0) if beta else 0)
    assert_close(C, expected, dtype)


def test_mm_rejects_unknown_kind(core):
    A = np.zeros((2, 3))
    with pytest.raises(ValueError):
        core._twin_mm("tt", A, A, np.zeros((2, 2)), 0.0)


# ---------------------------------------------------------------- activations

def pre_activations(rng, dtype):
    """A 6 x 11 block: five rows of ordinary values and one row of extremes."""
    Z = normal(rng, (6, len(EXTREMES)), dtype, scale=2.0)
    Z[-1] = EXTREMES
    return Z


@dtypes
@activations
def test_bias_act(core, act, dtype):
    rng = rng_for("bias_act", act, dtype)
    Z0 = pre_activations(rng, dtype)
    b = normal(rng, Z0.shape[1], dtype, scale=0.5)
    Z = Z0.copy()
    core._twin_bias_act(Z, b, int(act))
    with np.errstate(over="ignore"):
        expected = ACT_FORWARD[act](f64(Z0) + f64(b))
    assert_close(Z, expected, dtype)


@dtypes
@pytest.mark.parametrize("act", [Activation.SIGMOID, Activation.TANH], ids=["sigmoid", "tanh"])
def test_squashing_activations_saturate_without_nan(core, act, dtype):
    Z = np.array([EXTREMES], dtype=dtype)
    core._twin_bias_act(Z, np.zeros(Z.shape[1], dtype), int(act))
    low = 0.0 if act == Activation.SIGMOID else -1.0
    assert np.all(np.isfinite(Z))
    assert Z[0, 0] == low and Z[0, -1] == 1.0
    assert np.all(np.diff(Z[0]) >= 0)


@dtypes
@activations
def test_act_backward(core, act, dtype):
    rng = rng_for("act_backward", act, dtype)
    with np.errstate(over="ignore"):
        A0 = ACT_FORWARD[act](f64(pre_activations(rng, dtype))).astype(dtype).ravel()
    dA = normal(rng, A0.shape, dtype)
    A = A0.copy()
    core._twin_act_backward(A, dA, int(act))
    assert_close(A, f64(dA) * ACT_DERIVATIVE[act](f64(A0)), dtype)


@dtypes
@pytest.mark.parametrize("shape", [(5, 7), (1, 7), (7, 2)], ids=["5x7", "1x7", "7x2"])
def test_colsum(core, shape, dtype):
    D = normal(rng_for("colsum", shape, dtype), shape, dtype)
    out = np.full(shape[1], np.nan, dtype)
    core._twin_colsum(D, out)
    assert_close(out, f64(D).sum(axis=0), dtype)


# ---------------------------------------------------------------- losses

def reference_loss(loss, act, Z, Y, labels):
    """(mean loss, dLoss/dZ) in float64, from the formulas the core documents."""
    B, O = Z.shape
    if loss == Loss.MSE:
        diff = Z - Y
        return np.mean(diff**2), 2 * diff / (B * O) * ACT_DERIVATIVE[act](Z)
    if loss == Loss.CROSS_ENTROPY:
        rows = np.arange(B)
        onehot = np.zeros_like(Z)
        onehot[rows, labels] = 1
        value = np.mean(logsumexp(Z, axis=1) - Z[rows, labels])
        return value, (softmax(Z, axis=1) - onehot) / B
    value = np.mean(np.maximum(Z, 0) - Z * Y + np.log1p(np.exp(-np.abs(Z))))
    return value, (expit(Z) - Y) / (B * O)


def loss_inputs(loss, act, dtype, rng, extreme=False):
    """(Z, Y, labels) for a 5 x 3 batch: activated outputs for mse, logits otherwise."""
    B, O = 5, 3
    Z = normal(rng, (B, O), dtype, scale=2.0)
    if extreme:
        big = EXTREME_LOGIT[dtype]
        Z[:, :] = np.array([[big, -big, 0.0], [-big, big, -big], [big, big, -big],
                            [-big, -big, -big], [0.0, big, big]], dtype=dtype)
    labels = EMPTY_LABELS
    if loss == Loss.MSE:
        Z = ACT_FORWARD[act](f64(Z)).astype(dtype)
        Y = normal(rng, (B, O), dtype)
    elif loss == Loss.CROSS_ENTROPY:
        Y = np.zeros((0, O), dtype)
        labels = np.array([1, 0, 2, 2, 0], dtype=np.intp)  # extreme rows: wrong, right, tie
    else:
        Y = rng.uniform(0, 1, size=(B, O)).astype(dtype)
        Y[0] = [0, 1, 1]  # hard targets against the extreme logits [big, -big, 0]
    return Z, Y, labels


# mse with every output activation; the fused losses (raw logits) also at extreme logits.
LOSS_CASES = ([(Loss.MSE, act, False) for act in Activation]
              + [(loss, Activation.IDENTITY, extreme)
                 for loss in (Loss.CROSS_ENTROPY, Loss.BINARY_CROSS_ENTROPY)
                 for extreme in (False, True)])
LOSS_IDS = [f"{loss.name.lower()}-{act.name.lower()}{'-extreme' if extreme else ''}"
            for loss, act, extreme in LOSS_CASES]


@dtypes
@pytest.mark.parametrize("loss, act, extreme", LOSS_CASES, ids=LOSS_IDS)
def test_loss_and_gradient(core, loss, act, extreme, dtype):
    Z0, Y, labels = loss_inputs(loss, act, dtype, rng_for("loss", loss, act, dtype), extreme)
    Z = Z0.copy()
    value = core._twin_loss(int(loss), int(act), Z, Y, labels)
    expected_value, expected_grad = reference_loss(loss, act, f64(Z0), f64(Y), labels)
    assert np.isfinite(value)
    assert value == pytest.approx(expected_value, rel=RTOL[dtype])
    assert_close(Z, expected_grad, dtype)


@dtypes
@pytest.mark.parametrize("extreme", [False, True], ids=["ordinary", "extreme"])
@pytest.mark.parametrize("loss", list(Loss), ids=lambda loss: loss.name.lower())
def test_output_activation(core, loss, extreme, dtype):
    Z0, _, _ = loss_inputs(Loss.CROSS_ENTROPY, Activation.IDENTITY, dtype,
                           rng_for("output", loss, dtype), extreme)
    Z = Z0.copy()
    core._twin_output_activation(int(loss), Z)
    expected = {Loss.MSE: lambda z: z, Loss.CROSS_ENTROPY: lambda z: softmax(z, axis=1),
                Loss.BINARY_CROSS_ENTROPY: expit}[loss](f64(Z0))
    assert_close(Z, expected, dtype)
    if loss == Loss.CROSS_ENTROPY:
        np.testing.assert_allclose(f64(Z).sum(axis=1), 1.0, rtol=10 * RTOL[dtype])


# ---------------------------------------------------------------- enum twins

ENUM_TWINS = {"ACT": Activation, "LOSS": Loss, "OPT": OptimizerCode}


@pytest.mark.parametrize("prefix", list(ENUM_TWINS))
def test_python_enums_match_c_codes(core, prefix):
    c_codes = {name[len(prefix) + 1:]: code for name, code in core.CODES.items()
               if name.startswith(prefix + "_")}
    python_codes = {member.name: int(member) for member in ENUM_TWINS[prefix]}
    assert c_codes == python_codes


def test_status_codes_are_distinct_and_ok_is_zero(core):
    statuses = {name: code for name, code in core.CODES.items() if name.startswith("STATUS_")}
    assert statuses["STATUS_OK"] == 0
    assert len(set(statuses.values())) == len(statuses)


def test_every_c_code_has_a_python_twin(core):
    prefixes = set(ENUM_TWINS) | {"STATUS"}
    assert {name.split("_")[0] for name in core.CODES} == prefixes


def test_leaky_relu_slope_matches(core):
    assert core.LEAKY_RELU_SLOPE == LEAKY_RELU_SLOPE == fastbp.activations.LEAKY_RELU_SLOPE


@dtypes
@pytest.mark.parametrize("special", [None, np.inf, -np.inf, np.nan])
def test_max_magnitude(core, dtype, special):
    """The overflow guard's max|x|: exact for finite values, not finite if any value is not."""
    x = np.random.default_rng(0).normal(scale=1e3, size=37).astype(dtype)
    x[5] = -2e4  # the largest magnitude is negative
    if special is None:
        assert core._twin_max_magnitude(x) == 2e4
    else:
        x[20] = special
        assert not np.isfinite(core._twin_max_magnitude(x))

"""The compiled kernels, one by one, through their ``def`` twins, in every
compiled build of the core that runs here (``fastbp._core``, ``fastbp._core_avx2`` and
``fastbp._core_avx512``).

Each twin runs one inline kernel of ``src_c/*.pxd`` on arrays we hand it; here every one is
checked in float32 and float64 against a NumPy computation done in float64 from the same
(dtype-rounded) inputs. Shapes are never square, so a swapped operand or leading dimension
cannot pass by accident.
"""
import platform
import zlib

import numpy as np
import pytest
from scipy.special import expit, logsumexp, softmax

import fastbp
from fastbp import Loss, _native
from fastbp.activations import ActivationCode
from fastbp.activations import ELU_ALPHA, LEAKY_RELU_SLOPE
from fastbp.losses import CLASSIFICATION, FUSED_OUTPUT, HUBER_DELTA, REGRESSION
from fastbp.optimizers import OptimizerCode
from fastbp.plan import OpKind

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
EMPTY_LABELS = np.zeros(0, dtype=np.intp)

#: Inputs far beyond where exp overflows (float32 past ~88, float64 past ~709).
EXTREMES = [-1e4, -1e3, -100.0, -80.0, -20.0, 0.0, 20.0, 80.0, 100.0, 1e3, 1e4]


@pytest.fixture(params=_native.available())
def core(request):
    """Each compiled build of the core that runs on this CPU (baseline, AVX2, AVX-512)."""
    return _native.load(request.param)


#: Logits to push the fused losses to their limits, per dtype.
EXTREME_LOGIT = {np.float32: 80.0, np.float64: 1e4}
#: Log-rates whose exp is just inside the dtype's range (poisson's exp is not bounded).
EXTREME_LOG_RATE = {np.float32: 80.0, np.float64: 700.0}

GELU_K, GELU_C = np.sqrt(2 / np.pi), 0.044715  # torch.nn.GELU(approximate="tanh")
#: Activations whose layers keep their pre-activation z (their derivative needs it).
KEEPS_Z = (ActivationCode.GELU, ActivationCode.SWISH)


def gelu(z):
    return 0.5 * z * (1 + np.tanh(GELU_K * (z + GELU_C * z**3)))


def gelu_derivative(z):
    t = np.tanh(GELU_K * (z + GELU_C * z**3))
    return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * GELU_K * (1 + 3 * GELU_C * z * z)


ACT_FORWARD = {
    ActivationCode.IDENTITY: lambda z: z,
    ActivationCode.SIGMOID: expit,
    ActivationCode.TANH: np.tanh,
    ActivationCode.RELU: lambda z: np.maximum(z, 0),
    ActivationCode.LEAKY_RELU: lambda z: np.where(z > 0, z, LEAKY_RELU_SLOPE * z),
    ActivationCode.GELU: gelu,
    ActivationCode.SOFTPLUS: lambda z: np.logaddexp(0, z),
    ActivationCode.ELU: lambda z: np.where(z > 0, z, ELU_ALPHA * np.expm1(np.minimum(z, 0))),
    ActivationCode.SWISH: lambda z: z * expit(z),
}
# act' from (z, a = act(z)): from a where the core documents it so, else the textbook
# derivative in z (the newer activations), so the core's own rewriting is checked too.
ACT_DERIVATIVE = {
    ActivationCode.IDENTITY: lambda z, a: np.ones_like(a),
    ActivationCode.SIGMOID: lambda z, a: a * (1 - a),
    ActivationCode.TANH: lambda z, a: 1 - a * a,
    ActivationCode.RELU: lambda z, a: (a > 0).astype(a.dtype),
    ActivationCode.LEAKY_RELU: lambda z, a: np.where(a > 0, 1.0, LEAKY_RELU_SLOPE),
    ActivationCode.GELU: lambda z, a: gelu_derivative(z),
    ActivationCode.SOFTPLUS: lambda z, a: expit(z),
    ActivationCode.ELU: lambda z, a: np.where(z > 0, 1.0, ELU_ALPHA * np.exp(np.minimum(z, 0))),
    ActivationCode.SWISH: lambda z, a: expit(z) * (1 + z * (1 - expit(z))),
}


def kept(act, Z):
    """What a twin takes as the kept pre-activation: Z for gelu/swish, else empty."""
    return Z if act in KEEPS_Z else Z[:0]

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
activations = pytest.mark.parametrize("act", list(ActivationCode), ids=lambda a: a.name.lower())


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


#: (m, k, n) around the C loops' blocks (4 rows x 2 vectors, vectors of 8 floats or 4
#: doubles, a padded tail vector) and past the size where the wrappers switch to BLAS.
SMALL_MM_SHAPES = [(1, 1, 1), (3, 5, 7), (4, 8, 16), (5, 9, 17), (9, 3, 10), (32, 64, 32),
                   (32, 32, 10), (33, 17, 25), (7, 300, 9), (6, 2, 1000), (70, 65, 66),
                   (6, 11, 48), (13, 7, 95)]


@dtypes
@pytest.mark.parametrize("shape", SMALL_MM_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", ["nn", "nt", "tn", "blas_nn", "blas_nt", "blas_tn"])
@pytest.mark.parametrize("loops", [True, False], ids=["loops-on", "loops-off"])
def test_mm_small_products_and_blas(core, kind, shape, dtype, loops):
    """The wrappers training uses (small products in C loops when on, others BLAS) and the
    BLAS-only ones the roofline uses agree with NumPy on shapes that leave every kind of
    edge block; beta 0 never reads C (it starts as NaN)."""
    m, k, n = shape
    before = core.small_products()
    core.small_products(loops)
    try:
        _check_small_product(core, kind, shape, dtype)
    finally:
        core.small_products(before)


def _check_small_product(core, kind, shape, dtype):
    m, k, n = shape
    base = kind.replace("blas_", "")
    a_shape = (k, m) if base == "tn" else (m, k)
    b_shape = (n, k) if base == "nt" else (k, n)
    rng = rng_for("small", kind, shape, dtype)
    A, B = normal(rng, a_shape, dtype), normal(rng, b_shape, dtype)
    C = np.full((m, n), np.nan, dtype)
    core._twin_mm(kind, A, B, C, dtype(0))
    a, b = f64(A), f64(B)
    expected = a @ b if base == "nn" else (a @ b.T if base == "nt" else a.T @ b)
    assert_close(C, expected, dtype)


def test_small_products_switch(core):
    before = core.small_products()
    try:
        assert core.small_products(True) is True  # every build has the loops with GCC
        assert core.small_products(False) is False
        assert core.small_products() is False
    finally:
        core.small_products(before)


@pytest.mark.parametrize("variant,families,expected", [
    ("avx2", {"Haswell"}, True), ("avx2", {"Haswell", "Zen"}, True),
    ("avx2", {"SkylakeX"}, False), ("avx2", {"Haswell", "SkylakeX"}, False),
    ("avx2", {None}, False), ("avx2", set(), False), ("baseline", {"Haswell"}, False),
    ("avx512", {"Haswell"}, True), ("avx512", {"SkylakeX"}, False)])
def test_small_products_only_where_measured_to_win(monkeypatch, variant, families, expected):
    """The C loops are used with the AVX2 and AVX-512 builds and OpenBLAS's AVX2 kernel
    families only: OpenBLAS's AVX-512 kernels run small products faster, other pairings
    are unmeasured."""
    from fastbp import threads

    class Library:
        def __init__(self, architecture):
            self.architecture = architecture

    monkeypatch.setattr(threads, "_scipy_blas", lambda: [Library(f) for f in families])
    assert _native.small_products_pay_off(variant) is expected


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
    K = kept(act, np.full_like(Z0, np.nan))
    core._twin_bias_act(Z, b, int(act), K)
    with np.errstate(over="ignore"):
        expected = ACT_FORWARD[act](f64(Z0) + f64(b))
    assert_close(Z, expected, dtype)
    if act in KEEPS_Z:  # the kept z is Z + b exactly as the forward rounded it
        np.testing.assert_array_equal(K, Z0 + b)


@pytest.mark.parametrize("act", KEEPS_Z, ids=lambda a: a.name.lower())
def test_twins_refuse_a_missing_pre_activation(core, act):
    Z = np.zeros((2, 3))
    with pytest.raises(ValueError, match="needs its pre-activation"):
        core._twin_bias_act(Z, np.zeros(3), int(act), Z[:0])
    with pytest.raises(ValueError, match="needs its pre-activation"):
        core._twin_act_backward(Z.ravel(), Z.ravel()[:0], Z.ravel(), int(act))


@dtypes
@pytest.mark.parametrize("act", [ActivationCode.SIGMOID, ActivationCode.TANH], ids=["sigmoid", "tanh"])
def test_squashing_activations_saturate_without_nan(core, act, dtype):
    Z = np.array([EXTREMES], dtype=dtype)
    core._twin_bias_act(Z, np.zeros(Z.shape[1], dtype), int(act), Z[:0])
    low = 0.0 if act == ActivationCode.SIGMOID else -1.0
    assert np.all(np.isfinite(Z))
    assert Z[0, 0] == low and Z[0, -1] == 1.0
    assert np.all(np.diff(Z[0]) >= 0)


@dtypes
@activations
def test_act_backward(core, act, dtype):
    rng = rng_for("act_backward", act, dtype)
    Z0 = pre_activations(rng, dtype).ravel()
    with np.errstate(over="ignore"):
        A0 = ACT_FORWARD[act](f64(Z0)).astype(dtype)
    dA = normal(rng, A0.shape, dtype)
    A = A0.copy()
    core._twin_act_backward(A, kept(act, Z0), dA, int(act))
    with np.errstate(over="ignore"):
        assert_close(A, f64(dA) * ACT_DERIVATIVE[act](f64(Z0), f64(A0)), dtype)


NEW_ACTIVATIONS = [ActivationCode.GELU, ActivationCode.SOFTPLUS, ActivationCode.ELU, ActivationCode.SWISH]
#: Per-element relative error allowed against an extended-precision reference (a few ulp).
ULP_RTOL = {np.float32: 5e-7, np.float64: 1e-14}


def extended(act, z):
    """act(z), act'(z) and the magnitude of the argument of act's exp, in NumPy's long
    double (extended precision on x86-64)."""
    z = z.astype(np.longdouble)
    s = 1 / (1 + np.exp(-z))
    if act == ActivationCode.GELU:
        k, c = np.longdouble(GELU_K), np.longdouble(GELU_C)
        u2 = 2 * k * (z + c * z**3)
        g = 1 / (1 + np.exp(-u2))  # (1 + tanh u) / 2
        return z * g, g + z * g * (1 - g) * 2 * k * (1 + 3 * c * z * z), np.abs(u2)
    if act == ActivationCode.SOFTPLUS:
        return np.log1p(np.exp(z)), s, np.abs(z)
    if act == ActivationCode.ELU:
        return np.where(z > 0, z, np.expm1(z)), np.where(z > 0, 1, np.exp(z)), np.abs(z)
    return z * s, s * (1 + z * (1 - s)), np.abs(z)


@dtypes
@pytest.mark.parametrize("act", NEW_ACTIVATIONS, ids=lambda a: a.name.lower())
def test_new_activations_are_accurate_to_a_few_ulp(core, act, dtype):
    """Element by element, not against the block's largest value: near 0 and in the tails
    (where exp(z) - 1, log(1 + x) and 1 + tanh(u) cancel) each value keeps its digits."""
    magnitudes = np.logspace(-7, 1.3, 60)
    Z0 = np.concatenate([-magnitudes[::-1], [0.0], magnitudes]).astype(dtype)[None, :]
    A = Z0.copy()
    core._twin_bias_act(A, np.zeros(Z0.shape[1], dtype), int(act), kept(act, Z0.copy()))
    value, derivative, argument = (np.asarray(x, dtype=np.float64) for x in extended(act, Z0[0]))
    # gelu's exp argument 2u is itself rounded, and exp turns its relative error into a
    # relative error |2u| times larger (conditioning, not the kernel); values below the
    # dtype's normal range may flush to 0.
    rtol = ULP_RTOL[dtype] * (1 + argument if act == ActivationCode.GELU else 1)
    tiny = np.finfo(dtype).tiny
    bad = np.abs(A[0] - value) > rtol * np.abs(value) + tiny
    assert not bad.any(), (Z0[0][bad], A[0][bad], value[bad])
    D = A[0].copy()
    core._twin_act_backward(D, kept(act, Z0[0]), np.ones_like(D), int(act))
    # Derivatives are at most ~1.13 and cross 0 (gelu, swish): an absolute error of a few
    # ulp, and more headroom as the rounded exp argument enters them twice (s and s(1-s)).
    np.testing.assert_allclose(D, derivative, rtol=ULP_RTOL[dtype], atol=4 * ULP_RTOL[dtype])


@dtypes
@pytest.mark.parametrize("act", NEW_ACTIVATIONS, ids=lambda a: a.name.lower())
def test_new_activations_saturate_without_nan(core, act, dtype):
    """Pre-activations whose square or cube overflow (gelu's polynomial) still give the
    limits: act(z) = z above, the negative asymptote below; act' = 1 above, 0 below."""
    big = np.finfo(dtype).max
    Z0 = np.array([[-big / 2, -1e30, -1e20, -1e4, 1e4, 1e20, 1e30, big / 2]], dtype=dtype)
    A = Z0.copy()
    core._twin_bias_act(A, np.zeros(Z0.shape[1], dtype), int(act), kept(act, Z0.copy()))
    low = -ELU_ALPHA if act == ActivationCode.ELU else 0.0
    np.testing.assert_array_equal(A[0, :4], low)
    np.testing.assert_array_equal(A[0, 4:], Z0[0, 4:])
    D = A[0].copy()
    core._twin_act_backward(D, kept(act, Z0[0]), np.ones_like(D), int(act))
    np.testing.assert_array_equal(D, [0, 0, 0, 0, 1, 1, 1, 1])


@dtypes
@pytest.mark.parametrize("shape", [(5, 7), (1, 7), (7, 2), (9, 127), (3, 64), (4, 300)],
                         ids=["5x7", "1x7", "7x2", "9x127", "3x64", "4x300"])
def test_colsum(core, shape, dtype):
    """Each column summed in row order, bitwise: 127 columns take every register block
    (64 + 32 + ... + 1), 300 the row-by-row path."""
    D = normal(rng_for("colsum", shape, dtype), shape, dtype)
    out = np.full(shape[1], np.nan, dtype)
    core._twin_colsum(D, out)
    expected = D[0].copy()
    for row in D[1:]:
        expected += row
    np.testing.assert_array_equal(out, expected)


BITS = {np.float32: np.uint32, np.float64: np.uint64}


@dtypes
def test_all_finite_finds_one_bad_value_anywhere(core, dtype):
    """One NaN or infinity among 9013 values is found wherever it sits: the first entry,
    inside and at the ends of the first and last whole blocks, past the 16 KB prefetch
    distance, in the tail after the last block; and the extremes of the finite range
    (largest, smallest subnormal, -0) pass."""
    n = 9013
    info = np.finfo(dtype)
    values = np.linspace(-1, 1, n).astype(dtype)
    values[[1, 2, 3, 4]] = [info.max, -info.max, info.smallest_subnormal, -0.0]
    assert core.all_finite(values.view(BITS[dtype]))
    per_block = 256 // values.itemsize
    last_block = (n // per_block) * per_block
    for position in sorted({0, 5, per_block - 1, per_block, 16384 // values.itemsize + 7,
                            last_block - 1, last_block, n - 1}):
        for bad in (np.nan, np.inf, -np.inf):
            broken = values.copy()
            broken[position] = bad
            assert not core.all_finite(broken.view(BITS[dtype])), (position, bad)


# ---------------------------------------------------------------- losses

def reference_loss(loss, act, Z, K, Y, labels):
    """(mean loss, dLoss/dZ) in float64, from the formulas the core documents; for the
    regression losses Z is the activated output and K its pre-activation."""
    B, O = Z.shape
    if loss == Loss.POISSON:  # Z is the log-rate
        return np.mean(np.exp(Z) - Y * Z), (np.exp(Z) - Y) / (B * O)
    if loss in REGRESSION:
        diff = Z - Y
        through = ACT_DERIVATIVE[act](K, Z) / (B * O)
        if loss == Loss.MSE:
            return np.mean(diff**2), 2 * diff * through
        magnitude = np.abs(diff)
        if loss == Loss.MAE:
            return np.mean(magnitude), np.sign(diff) * through
        value = np.where(magnitude <= HUBER_DELTA, 0.5 * diff**2,
                         HUBER_DELTA * (magnitude - 0.5 * HUBER_DELTA))
        return np.mean(value), np.clip(diff, -HUBER_DELTA, HUBER_DELTA) * through
    if loss == Loss.CROSS_ENTROPY:
        rows = np.arange(B)
        onehot = np.zeros_like(Z)
        onehot[rows, labels] = 1
        value = np.mean(logsumexp(Z, axis=1) - Z[rows, labels])
        return value, (softmax(Z, axis=1) - onehot) / B
    value = np.mean(np.maximum(Z, 0) - Z * Y + np.log1p(np.exp(-np.abs(Z))))
    return value, (expit(Z) - Y) / (B * O)


def loss_inputs(loss, act, dtype, rng, extreme=False):
    """(Z, K, Y, labels) for a 5 x 3 batch: activated outputs Z and their pre-activations K
    for the regression losses, logits Z (and K a copy) otherwise."""
    B, O = 5, 3
    Z = normal(rng, (B, O), dtype, scale=2.0)
    if extreme:
        big = (EXTREME_LOG_RATE if loss == Loss.POISSON else EXTREME_LOGIT)[dtype]
        Z[:, :] = np.array([[big, -big, 0.0], [-big, big, -big], [big, big, -big],
                            [-big, -big, -big], [0.0, big, big]], dtype=dtype)
    K = Z.copy()
    labels = EMPTY_LABELS
    if loss == Loss.POISSON:
        Y = rng.poisson(3.0, size=(B, O)).astype(dtype)
        Y[0, 0] = Y[3, 2] = 0  # zero counts: the loss is exp(z) alone there
    elif loss in REGRESSION:
        Z = ACT_FORWARD[act](f64(K)).astype(dtype)
        Y = normal(rng, (B, O), dtype)
        Y[1, 1] = Z[1, 1]  # a zero residual: mae's subgradient there is 0 (torch's sign)
        Y[2, 0] = Z[2, 0] - HUBER_DELTA  # huber's seam (as exact as rounding allows)
    elif loss == Loss.CROSS_ENTROPY:
        Y = np.zeros((0, O), dtype)
        labels = np.array([1, 0, 2, 2, 0], dtype=np.intp)  # extreme rows: wrong, right, tie
    else:
        Y = rng.uniform(0, 1, size=(B, O)).astype(dtype)
        Y[0] = [0, 1, 1]  # hard targets against the extreme logits [big, -big, 0]
    return Z, K, Y, labels


# The regression losses with every output activation; the fused losses (raw logits or
# log-rates) also at extreme values.
LOSS_CASES = ([(loss, act, False) for loss in REGRESSION if loss not in FUSED_OUTPUT
               for act in ActivationCode]
              + [(loss, ActivationCode.IDENTITY, extreme) for loss in FUSED_OUTPUT
                 for extreme in (False, True)])
LOSS_IDS = [f"{loss.name.lower()}-{act.name.lower()}{'-extreme' if extreme else ''}"
            for loss, act, extreme in LOSS_CASES]


@dtypes
@pytest.mark.parametrize("loss, act, extreme", LOSS_CASES, ids=LOSS_IDS)
def test_loss_and_gradient(core, loss, act, extreme, dtype):
    Z0, K, Y, labels = loss_inputs(loss, act, dtype, rng_for("loss", loss, act, dtype), extreme)
    Z = Z0.copy()
    value = core._twin_loss(int(loss), int(act), Z, kept(act, K), Y, labels)
    expected_value, expected_grad = reference_loss(loss, act, f64(Z0), f64(K), f64(Y), labels)
    assert np.isfinite(value)
    assert value == pytest.approx(expected_value, rel=RTOL[dtype])
    assert_close(Z, expected_grad, dtype)


@dtypes
@pytest.mark.parametrize("extreme", [False, True], ids=["ordinary", "extreme"])
@pytest.mark.parametrize("loss", list(Loss), ids=lambda loss: loss.name.lower())
def test_output_activation(core, loss, extreme, dtype):
    logits = Loss.POISSON if loss == Loss.POISSON else Loss.CROSS_ENTROPY  # exp's range
    Z0, _, _, _ = loss_inputs(logits, ActivationCode.IDENTITY, dtype,
                              rng_for("output", loss, dtype), extreme)
    Z = Z0.copy()
    core._twin_output_activation(int(loss), Z)
    output = {Loss.CROSS_ENTROPY: lambda z: softmax(z, axis=1), Loss.BINARY_CROSS_ENTROPY: expit,
              Loss.POISSON: np.exp}
    expected = output.get(loss, lambda z: z)(f64(Z0))  # the regression losses: as is
    assert_close(Z, expected, dtype)
    if loss == Loss.CROSS_ENTROPY:
        np.testing.assert_allclose(f64(Z).sum(axis=1), 1.0, rtol=10 * RTOL[dtype])


# ---------------------------------------------------------------- enum twins

ENUM_TWINS = {"ACT": ActivationCode, "LOSS": Loss, "OPT": OptimizerCode, "OP": OpKind}


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


def test_elu_alpha_and_huber_delta_match(core):
    assert core.ELU_ALPHA == ELU_ALPHA == 1.0
    assert core.HUBER_DELTA == HUBER_DELTA == 1.0


def test_losses_are_regression_or_classification():
    assert set(REGRESSION) | set(CLASSIFICATION) == set(Loss)
    assert not set(REGRESSION) & set(CLASSIFICATION)


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


# ---------------------------------------------------------------- the op kernels of the deep layers

NORM_EPS = 1e-3


def norm_reference(kind, X, gamma, beta, dY, eps):
    """BatchNorm (per feature, biased variance) or LayerNorm (per row) in float64: Y, dX,
    dγ, dβ, and the batch's mean and variance."""
    axis = 0 if kind == "batchnorm" else 1
    n = X.shape[axis]
    mean = X.mean(axis=axis, keepdims=True)
    var = X.var(axis=axis, keepdims=True)
    xh = (X - mean) / np.sqrt(var + eps)
    Y = xh * gamma + beta
    g = dY * gamma
    dX = (g - g.mean(axis=axis, keepdims=True)
          - xh * (g * xh).mean(axis=axis, keepdims=True)) / np.sqrt(var + eps)
    return Y, dX, (dY * xh).sum(axis=0), dY.sum(axis=0), mean.ravel(), var.ravel(), n


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["batchnorm", "layernorm"])
@pytest.mark.parametrize("affine", [True, False])
def test_norm_kernels_match_numpy(core, dtype, kind, affine):
    from fastbp.plan import OpKind
    rng = np.random.default_rng(zlib.crc32(f"{kind}{affine}".encode()))
    X = (rng.normal(size=(7, 5)) * 3 + 1).astype(dtype)
    dY = rng.normal(size=(7, 5)).astype(dtype)
    gamma = rng.uniform(0.5, 2, 5).astype(dtype) if affine else np.ones(5, dtype)
    beta = rng.normal(size=5).astype(dtype) if affine else np.zeros(5, dtype)
    running = np.concatenate([rng.normal(size=5), rng.uniform(0.5, 2, 5)]).astype(dtype)
    before = running.astype(np.float64)
    Y, dX = np.empty_like(X), np.empty_like(X)
    grads = np.empty(10 if affine else 0, dtype)
    code = OpKind.BATCHNORM if kind == "batchnorm" else OpKind.LAYERNORM
    core._twin_norm(int(code), X, np.concatenate([gamma, beta]) if affine else grads[:0],
                    dY, Y, dX, grads, running, NORM_EPS, 0.25)
    Y_ref, dX_ref, dgamma, dbeta, mean, var, n = norm_reference(
        kind, X.astype(np.float64), gamma.astype(np.float64), beta.astype(np.float64),
        dY.astype(np.float64), NORM_EPS)
    rtol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(Y, Y_ref, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(dX, dX_ref, rtol=rtol, atol=rtol)
    if affine:
        np.testing.assert_allclose(grads, np.concatenate([dgamma, dbeta]), rtol=rtol, atol=rtol)
    if kind == "batchnorm":  # momentum 0.25; the variance unbiased, n / (n - 1)
        expected = np.concatenate([0.75 * before[:5] + 0.25 * mean,
                                   0.75 * before[5:] + 0.25 * var * n / (n - 1)])
        np.testing.assert_allclose(running, expected, rtol=rtol)
    else:
        np.testing.assert_array_equal(running, before.astype(dtype))  # LayerNorm has none


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_inference_kernel_uses_the_running_statistics(core, dtype):
    rng = np.random.default_rng(8)
    X = rng.normal(size=(9, 4)).astype(dtype)
    gamma, beta = rng.uniform(0.5, 2, 4).astype(dtype), rng.normal(size=4).astype(dtype)
    running = np.concatenate([rng.normal(size=4), rng.uniform(0.5, 2, 4)]).astype(dtype)
    Y = np.empty_like(X)
    core._twin_batchnorm_infer(X, np.concatenate([gamma, beta]), running, Y, NORM_EPS)
    r = running.astype(np.float64)
    expected = (X - r[:4]) / np.sqrt(r[4:] + NORM_EPS) * gamma + beta
    np.testing.assert_allclose(Y, expected, rtol=RTOL[dtype] * 10, atol=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", list(ActivationCode))
def test_activation_op_kernel_matches_numpy(core, dtype, act):
    X = np.linspace(-6, 6, 37).astype(dtype)
    A = np.empty_like(X)
    core._twin_act_copy(X, A, int(act))
    np.testing.assert_allclose(A, ACT_FORWARD[act](X.astype(np.float64)), rtol=RTOL[dtype] * 10,
                               atol=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_residual_kernels_add_and_route_the_skip_delta(core, dtype):
    rng = np.random.default_rng(3)
    X, S, dY, dS = (rng.normal(size=(5, 3)).astype(dtype) for _ in range(4))
    Y, dS_out = np.empty_like(X), dS.copy()
    core._twin_residual(X, S, dY, Y, dS_out)
    np.testing.assert_array_equal(Y, X + S)
    np.testing.assert_array_equal(dS_out, dS + dY)


# ---------------------------------------------------------------- the sparse first layer

def sparse_batch(dtype, n_in=67, n_out=13, rows=11, seed=0):
    """A CSR X (duplicates, an empty row, unsorted columns), a batch of its rows (one
    repeated), W, b and a delta block."""
    import scipy.sparse as sp
    from fastbp.sparse import check_sparse_X
    rng = np.random.default_rng(seed)
    X = sp.random(23, n_in, density=0.15, format="coo", random_state=seed, dtype=np.float64)
    X = sp.coo_matrix((np.concatenate([X.data, [2.0]]), (np.concatenate([X.row, [X.row[0]]]),
                       np.concatenate([X.col, [X.col[0]]]))), shape=X.shape).tocsr()
    X.data[X.indptr[5]:X.indptr[6]] = 0  # an empty row
    X.eliminate_zeros()
    batch = rng.permutation(23)[:rows]
    batch[1] = batch[0]
    batch[2] = 5
    W = rng.standard_normal((n_in, n_out)).astype(dtype)
    return (check_sparse_X(X, dtype), X.astype(np.float64), batch.astype(np.intp), W,
            rng.standard_normal(n_out).astype(dtype),
            rng.standard_normal((rows, n_out)).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parts", [1, 3])
def test_sparse_forward_and_weight_gradient_are_scipys_products(core, dtype, parts):
    rows, X, batch, W, b, D = sparse_batch(dtype)
    Y, dW = np.empty_like(D), np.empty_like(W)
    core._twin_sparse(rows, batch, W, b, D, Y, dW, parts)
    Xb = X[batch]
    np.testing.assert_allclose(Y, Xb @ W.astype(np.float64) + b, rtol=RTOL[dtype] * 10,
                               atol=RTOL[dtype] * 10)
    np.testing.assert_allclose(dW, Xb.T @ D.astype(np.float64), rtol=RTOL[dtype] * 10,
                               atol=RTOL[dtype] * 10)
    Y1, dW1 = np.empty_like(D), np.empty_like(W)
    core._twin_sparse(rows, batch, W, b, D, Y1, dW1, 1)
    np.testing.assert_array_equal(Y, Y1)  # a team's split changes no bit
    np.testing.assert_array_equal(dW, dW1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", [
    lambda: fastbp.Adam(lr=0.01, weight_decay=0.1), lambda: fastbp.SGD(lr=0.1, momentum=0.9),
    lambda: fastbp.RMSprop(lr=0.01, centered=True)])
@pytest.mark.parametrize("n_out", [13, 9000])  # one dW row per block past 8192 values
def test_sparse_fused_step_equals_gradient_then_update(core, dtype, make, n_out):
    """sparse_weight_step (dW block by block, stepped in cache) gives the update of
    sparse_weight_grads' dW through the optimizer's rule, bitwise, at any split."""
    rows, X, batch, W, b, D = sparse_batch(dtype, n_in=29 if n_out > 100 else 67, n_out=n_out)
    optimizer = make()
    dW, Y = np.empty_like(W), np.empty_like(D)
    core._twin_sparse(rows, batch, W, b, D, Y, dW)
    state0 = np.random.default_rng(1).uniform(0, 1, optimizer.state_slots() * W.size)
    state0 = state0.astype(dtype)
    want_W, want_state = W.ravel().copy(), state0.copy()
    core._twin_update(optimizer, want_W, dW.ravel().copy(), want_state, W.size, 0.01, 3)
    for parts in (1, 2):
        got_W, got_state = W.copy(), state0.copy()
        core._twin_sparse_step(optimizer, rows, batch, D, got_W, got_state, 0.01, 3, parts)
        np.testing.assert_array_equal(got_W.ravel(), want_W)
        np.testing.assert_array_equal(got_state, want_state)


def test_sparse_twins_refuse_rows_outside_X(core):
    rows, X, batch, W, b, D = sparse_batch(np.float64)
    batch[3] = 23
    with pytest.raises(ValueError, match="rows holds 23"):
        core._twin_sparse(rows, batch, W, b, D, np.empty_like(D), np.empty_like(W))


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64")
                    or "baseline" not in _native.available(),
                    reason="needs the x86-64 baseline core (no FMA contraction)")
def test_float32_sigmoid_and_tanh_derivatives_compute_in_float32():
    """dA·a(1 - a) and dA·(1 - a²) round in float32, as torch's float32 kernels do (a literal
    1 in a Cython loop is the C double 1.0 and would compute them in double)."""
    core = _native.load("baseline")
    rng = rng_for("float32 derivatives")
    A0 = rng.random(1001).astype(np.float32)
    dA = rng.standard_normal(1001).astype(np.float32)
    one = np.float32(1)
    for act, expected in [(ActivationCode.SIGMOID, dA * (A0 * (one - A0))),
                          (ActivationCode.TANH, dA * (one - A0 * A0))]:
        A = A0.copy()
        core._twin_act_backward(A, A[:0], dA, int(act))
        np.testing.assert_array_equal(A, expected)

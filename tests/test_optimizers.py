"""The optimizers: every compiled rule against its NumPy statement (benchmarks/
numpy_optimizers.py) and against torch.optim, the refusal of non-finite steps, and their use
through a model (state, step count, persistence)."""
import platform
import zlib

import numpy as np
import pytest

import fastbp as fb
from fastbp import _native
from fastbp.datasets import make_classification
from fastbp.training import epoch_order
from fastbp.benchmarks import numpy_optimizers as rules

N_PARAMS, N_WEIGHTS = 13, 9  # weights are the prefix [0, 9), biases the rest
DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-10, atol=1e-13)}

OPTIMIZERS = {
    "sgd": lambda: fb.SGD(lr=0.1),
    "sgd-wd": lambda: fb.SGD(lr=0.1, weight_decay=0.1),
    "momentum": lambda: fb.SGD(lr=0.1, momentum=0.9, weight_decay=0.05),
    "nesterov": lambda: fb.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05),
    "sgd-l1-clip": lambda: fb.SGD(lr=0.1, momentum=0.5, l1=0.01, clip_norm=1.5, clip_value=0.4),
    "adam": lambda: fb.Adam(lr=0.01),
    "adam-wd": lambda: fb.Adam(lr=0.01, weight_decay=0.1, betas=(0.8, 0.95), eps=1e-6),
    "adam-clip": lambda: fb.Adam(lr=0.01, clip_norm=0.7),
    "adamw": lambda: fb.AdamW(lr=0.01),
    "adamw-l1": lambda: fb.AdamW(lr=0.02, weight_decay=0.3, l1=0.02, clip_value=0.5),
    "rmsprop": lambda: fb.RMSprop(lr=0.01),
    "rmsprop-momentum": lambda: fb.RMSprop(lr=0.01, momentum=0.9, alpha=0.9, weight_decay=0.1),
    "rmsprop-centered": lambda: fb.RMSprop(lr=0.01, alpha=0.9, centered=True),
    "rmsprop-centered-momentum": lambda: fb.RMSprop(lr=0.01, momentum=0.8, alpha=0.95,
                                                    weight_decay=0.1, centered=True),
    "adagrad": lambda: fb.Adagrad(lr=0.1),
    "adagrad-init": lambda: fb.Adagrad(lr=0.1, initial_accumulator_value=0.2, eps=1e-6,
                                       weight_decay=0.1, clip_norm=2.0),
    "adagrad-decay": lambda: fb.Adagrad(lr=0.1, lr_decay=0.3),
    "adagrad-decay-wd": lambda: fb.Adagrad(lr=0.1, lr_decay=0.05, weight_decay=0.1,
                                           initial_accumulator_value=0.1),
}
#: Adaptive rules with L2 in the gradient (their squared, decayed gradient can overflow).
ADAPTIVE_WITH_L2 = ("adam-wd", "rmsprop-momentum", "rmsprop-centered-momentum", "adagrad-init",
                    "adagrad-decay-wd")


@pytest.fixture(params=_native.available())
def core(request):
    return _native.load(request.param)


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def twin_step(core, optimizer, params, grads, state, lr, step):
    return core._twin_update(optimizer, params, grads.copy(), state, N_WEIGHTS, lr, step)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_rule_matches_numpy(core, name, dtype):
    """Five updates (varying rates) through the compiled rule equal the NumPy rule."""
    optimizer = OPTIMIZERS[name]()
    rng = rng_for(name, dtype)
    params = rng.standard_normal(N_PARAMS).astype(dtype)
    state = optimizer.initial_state(N_PARAMS, dtype)
    p, s = params.astype(np.float64), state.astype(np.float64)
    for step in range(1, 6):
        grads = rng.standard_normal(N_PARAMS).astype(dtype)
        lr = optimizer.lr / step
        assert twin_step(core, optimizer, params, grads, state, lr, step) == 0
        p, s = rules.step(optimizer, p, grads.astype(np.float64), s, N_WEIGHTS,
                          float(dtype(lr)), step)
        np.testing.assert_allclose(params, p, **TOL[dtype])
        np.testing.assert_allclose(state, s, **TOL[dtype])


@pytest.mark.parametrize("name", ["sgd-wd", "momentum", "adam-wd", "adamw", "rmsprop-momentum",
                                  "rmsprop-centered-momentum", "adagrad-init",
                                  "adagrad-decay-wd"])
def test_decay_spares_biases(core, name):
    """With zero gradients only decay moves parameters, and only the weights."""
    optimizer = OPTIMIZERS[name]()
    params = np.ones(N_PARAMS)
    state = optimizer.initial_state(N_PARAMS, np.float64)
    twin_step(core, optimizer, params, np.zeros(N_PARAMS), state, optimizer.lr, 1)
    assert np.all(params[:N_WEIGHTS] < 1)
    np.testing.assert_array_equal(params[N_WEIGHTS:], 1.0)


def test_clipping_by_norm_and_value(core):
    """clip_norm rescales the whole gradient; clip_value clamps each entry afterwards."""
    g = np.zeros(N_PARAMS)
    g[0], g[N_WEIGHTS] = 3.0, 4.0  # global norm 5
    params = np.zeros(N_PARAMS)
    twin_step(core, fb.SGD(lr=1.0, clip_norm=1.0), params, g, np.zeros(0), 1.0, 1)
    np.testing.assert_allclose(params[[0, N_WEIGHTS]], [-0.6, -0.8], rtol=1e-6)
    params[...] = 0
    twin_step(core, fb.SGD(lr=1.0, clip_norm=10.0, clip_value=3.5), params, g, np.zeros(0), 1.0, 1)
    np.testing.assert_array_equal(params[[0, N_WEIGHTS]], [-3.0, -3.5])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_centered_rmsprop_takes_a_variance_below_zero_as_zero(core, dtype):
    """s - m² is a variance, but state whose mean square is below the squared mean gradient
    (as rounding can leave it) makes it negative: torch's sqrt gives NaN there; fastbp
    divides by eps alone, as for a zero variance, and matches the NumPy rule."""
    optimizer = fb.RMSprop(lr=1e-6, alpha=0.5, eps=1e-3, centered=True)
    params = np.zeros(N_PARAMS, dtype)
    grads = np.ones(N_PARAMS, dtype)
    state = np.concatenate([np.full(N_PARAMS, 1.0), np.full(N_PARAMS, 1.5)]).astype(dtype)
    # s = 0.5·1 + 0.5·1 = 1, m = 1.5 + 0.5·(1 - 1.5) = 1.25: s - m² = -0.5625
    expected, expected_state = rules.step(optimizer, params.astype(np.float64),
                                          grads.astype(np.float64), state.astype(np.float64),
                                          N_WEIGHTS, optimizer.lr, 1)
    assert twin_step(core, optimizer, params, grads, state, optimizer.lr, 1) == 0
    np.testing.assert_allclose(params, -1e-6 / 1e-3, **TOL[dtype])
    np.testing.assert_allclose(params, expected, **TOL[dtype])
    np.testing.assert_allclose(state, expected_state, **TOL[dtype])


# ---------------------------------------------------------------- non-finite steps

@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("where", [2, N_PARAMS - 1], ids=["weight", "bias"])
def test_overflowing_step_is_refused_untouched(core, name, dtype, where):
    optimizer = OPTIMIZERS[name]()
    big = np.finfo(dtype).max
    params = np.full(N_PARAMS, 0.9 * big, dtype)
    params[where] = -0.9 * big
    # Every step points outward and overflows: the smallest, Adam's on a clipped gradient,
    # moves by about 0.2·lr (lr = max) in exact arithmetic.
    grads = np.full(N_PARAMS, -1e3, dtype)
    grads[where] = 1e3
    state = optimizer.initial_state(N_PARAMS, dtype)
    state[...] = 0.5
    before = params.copy(), state.copy()
    assert twin_step(core, optimizer, params, grads, state, float(big), 1) == 1
    np.testing.assert_array_equal(params, before[0])
    np.testing.assert_array_equal(state, before[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_gradient_is_refused(core, name, dtype, bad):
    optimizer = OPTIMIZERS[name]()
    params = np.ones(N_PARAMS, dtype)
    grads = np.zeros(N_PARAMS, dtype)
    grads[N_WEIGHTS] = bad
    state = optimizer.initial_state(N_PARAMS, dtype)
    assert twin_step(core, optimizer, params, grads, state, optimizer.lr, 1) == 1
    np.testing.assert_array_equal(params, 1)


# Not the adaptive rules with L2 in the gradient: their squared, decayed gradient does
# overflow there, and refusing that step is right.
@pytest.mark.parametrize("name", [name for name in OPTIMIZERS if name not in ADAPTIVE_WITH_L2])
def test_step_near_overflow_that_stays_finite_is_applied(core, name):
    """Parameters close to the float32 limit make the cheap bound inconclusive; the exact
    check then lets a finite step through, and it equals the NumPy rule."""
    optimizer = OPTIMIZERS[name]()
    rng = rng_for("near", name)
    params = (rng.standard_normal(N_PARAMS) * 1e37).astype(np.float32)
    grads = rng.standard_normal(N_PARAMS).astype(np.float32)
    state = optimizer.initial_state(N_PARAMS, np.float32)
    expected, _ = rules.step(optimizer, params.astype(np.float64), grads.astype(np.float64),
                             state.astype(np.float64), N_WEIGHTS, 1e-3, 1)
    assert twin_step(core, optimizer, params, grads, state, 1e-3, 1) == 0
    np.testing.assert_allclose(params, expected, rtol=1e-5)


# ---------------------------------------------------------------- the step fused into backward
# Training steps each layer right after its weight gradients (_core's _gradients_and_step)
# where its bound reads fewer values than g has, unless clipping, L1 or telemetry needs the
# whole gradient first; a clip that clips nothing therefore runs the same rule the
# separate way. The networks here are wide enough for the fused step.

FUSABLE = {
    "momentum": dict(lr=0.05, momentum=0.9, weight_decay=0.05),
    "adam": dict(lr=0.01, weight_decay=0.1),
    "rmsprop-momentum": dict(lr=0.01, momentum=0.9, alpha=0.9),
    "rmsprop-centered": dict(lr=0.01, alpha=0.9, weight_decay=0.05, centered=True),
    "rmsprop-centered-momentum": dict(lr=0.01, momentum=0.9, alpha=0.9, centered=True),
    "adagrad": dict(lr=0.1),
    "adagrad-decay": dict(lr=0.1, lr_decay=0.01, weight_decay=0.05),
}
KINDS = {"momentum": fb.SGD, "adam": fb.Adam, "rmsprop-momentum": fb.RMSprop,
         "rmsprop-centered": fb.RMSprop, "rmsprop-centered-momentum": fb.RMSprop,
         "adagrad": fb.Adagrad, "adagrad-decay": fb.Adagrad}


@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["plain", "dropout"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(FUSABLE))
def test_fused_step_equals_the_separate_step_bit_for_bit(name, dtype, dropout):
    X, y = make_classification(203, 11, 4, seed=3)
    fused, separate = (fb.mlp([11, 64, 48, 4], loss="cross_entropy", dtype=dtype, seed=5,
                              dropout=dropout) for _ in range(2))
    fused.fit(X, y, epochs=3, batch_size=8, optimizer=KINDS[name](**FUSABLE[name]),
              threads=1)
    separate.fit(X, y, epochs=3, batch_size=8, threads=1,
                 optimizer=KINDS[name](**FUSABLE[name], clip_value=1e30))
    np.testing.assert_array_equal(fused.parameters, separate.parameters)
    np.testing.assert_array_equal(fused._plan.state, separate._plan.state)


def zero_regression(n_features):
    """A linear layer to 4 outputs, all parameters 0, so every output starts at 0."""
    model = fb.Sequential([fb.Dense(n_features, 4)], loss="mse", dtype="float32", seed=0)
    model.parameters[...] = 0
    return model


def test_fused_step_whose_gradient_bound_overflows_runs_the_exact_way():
    """Rows ±2^66 (in the first feature) with equal deltas: the bound B·max|x|·max|δ| passes
    half the float32 range, but dW cancels to exactly 0 (the products are powers of two),
    so the step is finite, applied, and the same as the separate step's."""
    X = np.zeros((2, 4))
    X[:, 0] = [2.0 ** 66, -2.0 ** 66]
    y = np.full((2, 4), -2.0 ** 62)
    fused, separate = zero_regression(4), zero_regression(4)
    fused.train_step(X, y, optimizer=fb.SGD(lr=2.0 ** -70))
    separate.train_step(X, y, optimizer=fb.SGD(lr=2.0 ** -70, clip_value=1e30))
    np.testing.assert_array_equal(fused.parameters, separate.parameters)
    assert np.all(fused.parameters[:16] == 0) and np.all(fused.parameters[16:] < 0)


@pytest.mark.parametrize("how", ["train_step", "fit, short rows", "fit, long rows"])
def test_fused_step_whose_gradient_overflows_is_refused_untouched(how):
    """dW = B·2^68·δ is past float32's range (the loss, about 2^124, is not). fit gathers
    shuffled rows and takes the bound on long rows (300 features) from the gather, on short
    ones (4) after it; its first batch is not the epoch's last, whose telemetry needs the
    separate step."""
    n_features = 300 if how == "fit, long rows" else 4
    model = zero_regression(n_features)
    X = np.zeros((4, n_features))
    X[:, 0] = 2.0 ** 68
    y, optimizer = np.full((4, 4), -2.0 ** 62), fb.SGD(lr=2.0 ** -70, momentum=0.9)
    with pytest.raises(fb.DivergenceError, match="was not applied"):
        if how == "train_step":
            model.train_step(X[:2], y[:2], optimizer=optimizer)
        else:
            model.fit(X, y, epochs=1, batch_size=2, optimizer=optimizer, threads=1)
    np.testing.assert_array_equal(model.parameters, 0)
    np.testing.assert_array_equal(model._plan.state, 0)


# ---------------------------------------------------------------- against torch.optim

def torch_pair(optimizer, p):
    """torch.optim's optimizer with fastbp's settings over (weights, biases) parameter groups
    (decay on weights only)."""
    torch = pytest.importorskip("torch")
    weights = torch.tensor(p[:N_WEIGHTS], requires_grad=True)
    biases = torch.tensor(p[N_WEIGHTS:], requires_grad=True)
    o = optimizer
    groups = [{"params": [weights], "weight_decay": o.weight_decay},
              {"params": [biases], "weight_decay": 0.0}]
    kind = type(o).__name__
    if kind == "SGD":
        made = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)
    elif kind in ("Adam", "AdamW"):
        made = getattr(torch.optim, kind)(groups, lr=o.lr, betas=o.betas, eps=o.eps)
    elif kind == "RMSprop":
        made = torch.optim.RMSprop(groups, lr=o.lr, alpha=o.alpha, eps=o.eps,
                                   momentum=o.momentum, centered=o.centered)
    else:
        made = torch.optim.Adagrad(groups, lr=o.lr, eps=o.eps, lr_decay=o.lr_decay,
                                   initial_accumulator_value=o.initial_accumulator_value)
    return torch, made, weights, biases


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_rule_matches_torch_optim(core, name):
    """Six float64 updates equal torch.optim's, with torch's clipping utilities and L1 added
    to the weights' gradient by hand."""
    optimizer = OPTIMIZERS[name]()
    rng = rng_for("torch", name)
    params = rng.standard_normal(N_PARAMS)
    torch, theirs, weights, biases = torch_pair(optimizer, params)
    state = optimizer.initial_state(N_PARAMS, np.float64)
    for step in range(1, 7):
        grads = rng.standard_normal(N_PARAMS) * 2
        assert twin_step(core, optimizer, params, grads, state, optimizer.lr, step) == 0
        weights.grad = torch.tensor(grads[:N_WEIGHTS])
        biases.grad = torch.tensor(grads[N_WEIGHTS:])
        if optimizer.clip_norm:
            torch.nn.utils.clip_grad_norm_([weights, biases], optimizer.clip_norm)
        if optimizer.clip_value:
            torch.nn.utils.clip_grad_value_([weights, biases], optimizer.clip_value)
        weights.grad += optimizer.l1 * torch.sign(weights.detach())
        theirs.step()
        ours = np.concatenate([weights.detach().numpy(), biases.detach().numpy()])
        np.testing.assert_allclose(params, ours, rtol=1e-10, atol=1e-13)


# ---------------------------------------------------------------- through a model

def classification(n=45, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 7)), rng.integers(0, 3, size=n)


def small_model(dtype="float64", seed=1):
    return fb.Sequential([fb.Dense(7, 5, "tanh"), fb.Dense(5, 3)], loss="cross_entropy",
                         dtype=dtype, seed=seed)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_train_steps_follow_gradients_and_the_numpy_rule(name):
    """Model.train_step = model.gradients (checked against finite differences elsewhere)
    followed by the NumPy rule, with state and step count carried between calls."""
    model, reference = small_model(), small_model()
    optimizer = OPTIMIZERS[name]()
    X, y = classification()
    p = reference.parameters.copy()
    state = optimizer.initial_state(p.size, np.float64)
    for step, rows in enumerate((slice(0, 16), slice(16, 32), slice(32, 45)), start=1):
        reference.parameters[...] = p
        _, grads = reference.gradients(X[rows], y[rows])
        flat = np.concatenate([dW.ravel() for dW, _ in grads] + [db for _, db in grads])
        p, state = rules.step(optimizer, p, flat, state, reference._plan.n_weights,
                              optimizer.lr, step)
        model.train_step(X[rows], y[rows], optimizer=optimizer)
        np.testing.assert_allclose(model.parameters, p, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(model._plan.state, state, rtol=1e-10, atol=1e-13)
    assert model._plan.steps == 3


@pytest.mark.parametrize("name", ["adam-wd", "adamw-l1", "rmsprop-momentum", "adagrad-init",
                                  "sgd-l1-clip", "rmsprop-centered-momentum", "adagrad-decay-wd"])
def test_fit_epoch_equals_train_steps_in_its_order(name):
    X, y = classification(37)
    stepped, fitted = small_model(), small_model()
    opt_a, opt_b = OPTIMIZERS[name](), OPTIMIZERS[name]()
    fitted._rng = np.random.default_rng(9)
    expected_order = epoch_order(np.random.default_rng(9), 37)  # as fit draws it
    for start in range(0, 37, 8):
        rows = expected_order[start:start + 8]
        stepped.train_step(X[rows], y[rows], optimizer=opt_a)
    fitted.fit(X, y, epochs=1, batch_size=8, optimizer=opt_b, threads=1)
    np.testing.assert_allclose(fitted.parameters, stepped.parameters, rtol=1e-10, atol=1e-13)
    assert fitted._plan.steps == stepped._plan.steps == 5


def test_new_optimizer_instance_starts_fresh_state():
    X, y = classification()
    model = small_model()
    first = fb.Adam(lr=0.01)
    model.fit(X, y, epochs=1, batch_size=16, optimizer=first, threads=1)
    assert model._plan.steps == 3 and np.any(model._plan.state != 0)
    model.fit(X, y, epochs=1, batch_size=16, optimizer=fb.Adam(lr=0.01), threads=1)
    assert model._plan.steps == 3
    model.fit(X, y, epochs=1, batch_size=16, threads=1)  # None continues the last one
    assert model._plan.steps == 6


@pytest.mark.parametrize("name", ["adam", "adamw-l1", "rmsprop-momentum", "adagrad-init"])
def test_optimizers_train_a_network(name):
    """Each optimizer lowers the loss of a small classification problem."""
    X, y = make_classification(300, 10, 3, seed=2)
    model = fb.mlp([10, 16, 3], loss="cross_entropy", seed=0)
    before = model.evaluate(X, y)["loss"]
    model.fit(X, y, epochs=15, batch_size=32, optimizer=OPTIMIZERS[name](), threads=1)
    assert model.evaluate(X, y)["loss"] < 0.7 * before


# ---------------------------------------------------------------- float32 stays float32

X86_BASELINE = (platform.machine().lower() in ("x86_64", "amd64")
                and "baseline" in _native.available())


@pytest.mark.skipif(not X86_BASELINE, reason="needs the x86-64 baseline core (no FMA contraction)")
@pytest.mark.parametrize("name", ["adam-wd", "adamw", "rmsprop-centered"])
def test_float32_rules_compute_in_float32(name):
    """The float32 rules round every operation to float32, as torch's float32 kernels do:
    a literal 1 in a Cython loop becomes the C double 1.0 and would run the loop in double
    (slower, and other bits). The baseline core has no FMA, so NumPy's float32 arithmetic
    in the same order must give the same bits."""
    core, f, n, n_weights, lr, step = _native.load("baseline"), np.float32, 4099, 4000, 0.01, 3
    optimizer = OPTIMIZERS[name]()
    rng = rng_for("float32 rules", name)
    params, grads = rng.standard_normal(n).astype(f), rng.standard_normal(n).astype(f)
    state = (rng.random(optimizer.initial_state(n, f).shape) + 0.1).astype(f)
    p, g, first, second = params.copy(), grads.copy(), state[:n].copy(), state[n:].copy()
    assert core._twin_update(optimizer, params, grads, state, n_weights, lr, step) == 0
    is_weight = np.arange(n) < n_weights
    if name.startswith("adam"):  # the core's form: see Adam's docstring
        (b1, b2), root2 = optimizer.betas, np.sqrt(1 - optimizer.betas[1] ** step)
        decay = f(optimizer.weight_decay) if name == "adam-wd" else f(0)
        d = g + np.where(is_weight, decay, f(0)) * p
        first = first + f(1 - b1) * (d - first)
        second = f(b2) * second + f(1 - b2) * d * d
        shrink = (np.where(is_weight, f(1 - lr * optimizer.weight_decay), f(1))
                  if name == "adamw" else f(1))
        p = shrink * p - f(lr * root2 / (1 - b1 ** step)) * (
            first / (np.sqrt(second) + f(optimizer.eps * root2)))
    else:  # centered RMSprop: slots are the mean square, then the mean gradient
        c = f(1 - optimizer.alpha)
        first = f(optimizer.alpha) * first + c * g * g
        second = second + c * (g - second)
        var = np.maximum(first - second * second, f(0))
        p = p - f(lr) * (g / (np.sqrt(var) + f(optimizer.eps)))
    np.testing.assert_array_equal(params, p)
    np.testing.assert_array_equal(state, np.concatenate([first, second]))

"""Input handling of the public API: every array layout that must work, every bad input that
must be refused (without touching a fitted model), and divergence during training."""
import numpy as np
import pytest
import scipy.sparse

import fastbp
from fastbp import SGD, Adagrad, Adam, AdamW, Dense, DivergenceError, RMSprop, Sequential, mlp

SIZES = [4, 5, 3]  # n_features, hidden, n_outputs: nothing square
N_SAMPLES = 11     # batch_size 4 leaves a partial last batch
DTYPES = ["float32", "float64"]
LOSSES = ["mse", "cross_entropy", "binary_cross_entropy", "huber", "mae"]
FIT = dict(epochs=2, batch_size=4, shuffle=True)


def make_model(loss, dtype, seed=0):
    return mlp(SIZES, activation="tanh", loss=loss, dtype=dtype, seed=seed)


def canonical_data(loss):
    """(X, y) with small integer values, exact in every dtype the variants below use.

    X is a C-contiguous float64 array; y is float64 targets (mse, huber, mae, bce) or intp
    labels (cross_entropy)."""
    rng = np.random.default_rng(0)
    X = rng.integers(-3, 4, size=(N_SAMPLES, SIZES[0])).astype(np.float64)
    if loss == "cross_entropy":
        y = rng.integers(0, SIZES[-1], size=N_SAMPLES).astype(np.intp)
    elif loss == "binary_cross_entropy":
        y = rng.integers(0, 2, size=(N_SAMPLES, SIZES[-1])).astype(np.float64)
    else:
        y = rng.integers(-2, 3, size=(N_SAMPLES, SIZES[-1])).astype(np.float64)
    return X, y


def as_model_dtype(array, model):
    """The canonical input: C-contiguous, of the model's dtype (labels stay intp)."""
    return array if array.dtype.kind == "i" else np.ascontiguousarray(array, dtype=model.dtype)


def outcomes(loss, dtype, X, y):
    """Everything the public API computes from (X, y), on a fresh seeded model."""
    model = make_model(loss, dtype)
    result = {"predict": model.predict(X), "evaluate": model.evaluate(X, y)}
    result["gradients"] = model.gradients(X, y)
    model.fit(X, y, optimizer=SGD(lr=0.05, momentum=0.9), **FIT)
    result["fit"] = model.parameters.copy()
    result["train_step"] = model.train_step(X, y)
    result["after_train_step"] = model.parameters.copy()
    return result


def assert_same_outcomes(loss, dtype, X, y, X_variant, y_variant):
    canonical_model = make_model(loss, dtype)
    expected = outcomes(loss, dtype, as_model_dtype(X, canonical_model),
                        as_model_dtype(y, canonical_model))
    actual = outcomes(loss, dtype, X_variant, y_variant)
    assert actual["evaluate"] == expected["evaluate"]
    assert actual["train_step"] == expected["train_step"]
    assert actual["gradients"][0] == expected["gradients"][0]
    for (dW, db), (eW, eb) in zip(actual["gradients"][1], expected["gradients"][1]):
        np.testing.assert_array_equal(dW, eW)
        np.testing.assert_array_equal(db, eb)
    for key in ("predict", "fit", "after_train_step"):
        assert actual[key].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


# ---------------------------------------------------------------- layouts that must work

def read_only(array):
    array = array.copy()
    array.flags.writeable = False
    return array


def read_only_memmap(array, tmp_path):
    path = tmp_path / "data.bin"
    array.tofile(path)
    return np.memmap(path, dtype=array.dtype, mode="r", shape=array.shape)


def every_other_row(array):
    doubled = np.full((2 * array.shape[0],) + array.shape[1:], 99, dtype=array.dtype)
    doubled[::2] = array
    return doubled[::2]


def column_slice(array):
    wide = np.full((array.shape[0], array.shape[1] + 3), 99, dtype=array.dtype)
    wide[:, 1:-2] = array
    return wide[:, 1:-2]


# Each variant takes (array, tmp_path) and returns the same values in another layout/type.
ARRAY_VARIANTS = {
    "fortran": lambda a, tmp: np.asfortranarray(a),
    "every-other-row": lambda a, tmp: every_other_row(a),
    "column-slice": lambda a, tmp: column_slice(a),
    "read-only": lambda a, tmp: read_only(a),
    "read-only-memmap": read_only_memmap,
    "int64": lambda a, tmp: a.astype(np.int64),
    "int32": lambda a, tmp: a.astype(np.int32),
    "float32": lambda a, tmp: a.astype(np.float32),
    "float64": lambda a, tmp: a.astype(np.float64),
    "big-endian-f8": lambda a, tmp: a.astype(">f8"),
    "big-endian-f4": lambda a, tmp: a.astype(">f4"),
    "list": lambda a, tmp: a.tolist(),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("variant", list(ARRAY_VARIANTS))
def test_X_layouts_match_canonical(variant, loss, dtype, tmp_path):
    X, y = canonical_data(loss)
    assert_same_outcomes(loss, dtype, X, y, ARRAY_VARIANTS[variant](X, tmp_path), y)


def one_hot(labels, dtype):
    return np.eye(SIZES[-1], dtype=dtype)[labels]


# Targets in other layouts and types, per loss (dense-target losses reuse ARRAY_VARIANTS).
LABEL_VARIANTS = {
    "int32": lambda y, tmp: y.astype(np.int32),
    "uint8": lambda y, tmp: y.astype(np.uint8),
    "big-endian-int": lambda y, tmp: y.astype(">i4"),
    "float-labels": lambda y, tmp: y.astype(np.float64),  # 2.0, 0.0, ...
    "float32-labels": lambda y, tmp: y.astype(np.float32),
    "one-hot-int": lambda y, tmp: one_hot(y, np.int64),
    "one-hot-float": lambda y, tmp: one_hot(y, np.float32),
    "one-hot-bool": lambda y, tmp: one_hot(y, bool),
    "read-only": lambda y, tmp: read_only(y),
    "every-other": lambda y, tmp: every_other_row(y),
    "list": lambda y, tmp: y.tolist(),
}
BCE_EXTRA_VARIANTS = {
    "bool": lambda y, tmp: y.astype(bool),
    "uint8": lambda y, tmp: y.astype(np.uint8),
}
Y_CASES = ([("cross_entropy", name) for name in LABEL_VARIANTS]
           + [(loss, name) for loss in ("mse", "binary_cross_entropy") for name in ARRAY_VARIANTS]
           + [("binary_cross_entropy", name) for name in BCE_EXTRA_VARIANTS])


def y_variant(loss, name):
    if loss == "cross_entropy":
        return LABEL_VARIANTS[name]
    return {**ARRAY_VARIANTS, **BCE_EXTRA_VARIANTS}[name]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss, variant", Y_CASES, ids=[f"{l}-{v}" for l, v in Y_CASES])
def test_y_layouts_match_canonical(loss, variant, dtype, tmp_path):
    X, y = canonical_data(loss)
    assert_same_outcomes(loss, dtype, X, y, X, y_variant(loss, variant)(y, tmp_path))


def test_single_output_accepts_1d_targets():
    X, y = canonical_data("mse")
    model = mlp([4, 5, 1], seed=0)
    np.testing.assert_array_equal(model.gradients(X, y[:, 0])[1][0][0],
                                  model.gradients(X, y[:, :1])[1][0][0])


def test_inputs_are_not_modified():
    X, y = canonical_data("mse")
    X_before, y_before = X.copy(), y.copy()
    make_model("mse", "float64").fit(X, y, **FIT)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)


# ---------------------------------------------------------------- bad inputs

def fitted(loss):
    """A float32 model trained with momentum, so its optimizer state is non-trivial."""
    model = make_model(loss, "float32")
    X, y = canonical_data(loss)
    model.fit(X, y, optimizer=SGD(lr=0.05, momentum=0.9), **FIT)
    assert np.any(model._plan.state != 0)
    return model, X, y


def assert_refused_untouched(model, call, exc, match):
    """``call()`` raises ``exc`` matching ``match``; parameters, optimizer state and optimizer
    are exactly as before."""
    params, state, optimizer = model.parameters.copy(), model._plan.state.copy(), model.optimizer
    with pytest.raises(exc, match=match):
        call()
    assert model.parameters.tobytes() == params.tobytes()
    assert model._plan.state.tobytes() == state.tobytes()
    assert model.optimizer is optimizer


def with_entry(array, value, dtype=None):
    """A copy of ``array`` (cast to ``dtype`` if given) with one entry set to ``value``."""
    array = array.astype(dtype or array.dtype)
    array.flat[5] = value
    return array


BAD_X = {  # name -> (make bad X from a good one, exception, message pattern)
    "nan": (lambda X: with_entry(X, np.nan), ValueError, "X contains NaN"),
    "inf": (lambda X: with_entry(X, -np.inf), ValueError, "X contains NaN or inf"),
    "overflows-float32": (lambda X: with_entry(X, 1e300), ValueError, "X contains NaN or inf"),
    "1-D": (lambda X: X[0], ValueError, r"X must be 2-D"),
    "3-D": (lambda X: X[None], ValueError, r"X must be 2-D"),
    "scalar": (lambda X: 1.0, ValueError, r"X must be 2-D"),
    "zero-samples": (lambda X: X[:0], ValueError, "X has 0 samples"),
    "too-few-features": (lambda X: X[:, :3], ValueError, "X has 3 features.*expects 4"),
    "too-many-features": (lambda X: np.hstack([X, X]), ValueError, "X has 8 features.*expects 4"),
    "complex": (lambda X: X.astype(complex), TypeError, "X must hold real numbers.*complex"),
    "object": (lambda X: X.astype(object), TypeError, "X must hold real numbers.*object"),
    "None": (lambda X: None, TypeError, "X must hold real numbers"),
    "string": (lambda X: X.astype(str), TypeError, "X must hold real numbers.*string"),
    "ragged-list": (lambda X: [[1.0, 2.0, 3.0, 4.0], [1.0]], ValueError, "X could not be converted"),
    # sparse X is taken (tests/test_sparse.py), and checked as dense X is
    "sparse-nan": (lambda X: scipy.sparse.csr_matrix(with_entry(X, np.nan)), ValueError,
                   "X contains NaN"),
    "sparse-too-few-features": (lambda X: scipy.sparse.csc_array(X[:, :3]), ValueError,
                                "X has 3 features.*expects 4"),
    "sparse-complex": (lambda X: scipy.sparse.csr_matrix(X.astype(complex)), TypeError,
                       "X must hold real numbers"),
}

# Every public call that takes X (and y), as call(model, X, y, **keyword_arguments).
CALLS = {
    "fit": Sequential.fit,
    "train_step": Sequential.train_step,
    "gradients": Sequential.gradients,
    "evaluate": Sequential.evaluate,
    "check_gradients": fastbp.check_gradients,
    "predict": lambda model, X, y: model.predict(X),
}
CALLS_WITH_Y = [name for name in CALLS if name != "predict"]


def applicable(bad, calls):
    """check_gradients works on a float64 copy, where a value overflowing float32 is valid."""
    return [(bad, call) for call in calls
            if not (bad == "overflows-float32" and call == "check_gradients")]


BAD_X_CASES = [case for bad in BAD_X for case in applicable(bad, CALLS)]


# Casting 1e300 to float32 warns before the library rejects the resulting infinity.
ignore_cast_overflow = pytest.mark.filterwarnings("ignore:overflow encountered in cast")


@ignore_cast_overflow
@pytest.mark.parametrize("bad, call", BAD_X_CASES, ids=[f"{b}-{c}" for b, c in BAD_X_CASES])
def test_bad_X_is_refused(bad, call):
    model, X, y = fitted("mse")
    make_bad, exc, match = BAD_X[bad]
    assert_refused_untouched(model, lambda: CALLS[call](model, make_bad(X), y), exc, match)


ANY_LOSS = LOSSES
DENSE_TARGETS = ["mse", "binary_cross_entropy", "huber", "mae"]
BAD_Y = [  # (name, losses it applies to, make bad y from a good one, exception, pattern)
    ("nan", ANY_LOSS, lambda y: with_entry(y, np.nan, float), ValueError, "y contains NaN"),
    ("inf", ANY_LOSS, lambda y: with_entry(y, np.inf, float), ValueError, "y contains NaN or inf"),
    ("overflows-float32", ["mse", "huber", "mae"], lambda y: with_entry(y, 1e300), ValueError,
     "y contains NaN or inf"),
    ("too-short", ANY_LOSS, lambda y: y[:-1], ValueError, "X has 11 samples but y has 10"),
    ("too-long", ANY_LOSS, lambda y: np.concatenate([y, y[:1]]), ValueError,
     "X has 11 samples but y has 12"),
    ("3-D", ANY_LOSS, lambda y: y.reshape(len(y), 1, -1), ValueError, "y must be 1-D or 2-D"),
    ("scalar", ANY_LOSS, lambda y: 1, ValueError, "y must be 1-D or 2-D"),
    ("complex", ANY_LOSS, lambda y: y.astype(complex), TypeError, "y must hold real numbers"),
    ("string", ANY_LOSS, lambda y: y.astype(str), TypeError, "y must hold real numbers"),
    ("sparse", DENSE_TARGETS, scipy.sparse.csr_matrix, TypeError, "y is a sparse matrix"),
    ("too-few-columns", DENSE_TARGETS, lambda y: y[:, :2], ValueError,
     "y has 2 columns, but the model has 3 outputs"),
    ("1-D-for-3-outputs", DENSE_TARGETS, lambda y: y[:, 0], ValueError,
     "y has 1 columns, but the model has 3 outputs"),
    ("above-1", ["binary_cross_entropy"], lambda y: with_entry(y, 1.5), ValueError,
     r"y must lie in \[0, 1\]"),
    ("below-0", ["binary_cross_entropy"], lambda y: with_entry(y, -0.5), ValueError,
     r"y must lie in \[0, 1\]"),
    ("label-too-large", ["cross_entropy"], lambda y: with_entry(y, 3), ValueError,
     r"y holds labels in \[0, 3\].*must be in \[0, 2\]"),
    ("label-negative", ["cross_entropy"], lambda y: with_entry(y, -1), ValueError,
     r"y holds labels in \[-1, 2\].*must be in \[0, 2\]"),
    ("label-non-integer", ["cross_entropy"], lambda y: with_entry(y, 0.5, float), ValueError,
     "y must hold integer class labels"),
    ("one-hot-too-narrow", ["cross_entropy"], lambda y: one_hot(y, float)[:, :2], ValueError,
     "y is 2-D, so it must be one-hot with 3 columns"),
    ("not-one-hot", ["cross_entropy"], lambda y: one_hot(y, float) * 2, ValueError,
     "y is 2-D but not one-hot"),
    ("two-hot", ["cross_entropy"], lambda y: one_hot(y, float) + one_hot((y + 1) % 3, float),
     ValueError, "y is 2-D but not one-hot"),
]
BAD_Y_CASES = [(name, loss, call, *rest) for name, losses, *rest in BAD_Y for loss in losses
               for _, call in applicable(name, CALLS_WITH_Y)]


@ignore_cast_overflow
@pytest.mark.parametrize("name, loss, call, make_bad, exc, match", BAD_Y_CASES,
                         ids=[f"{loss}-{name}-{call}" for name, loss, call, *_ in BAD_Y_CASES])
def test_bad_y_is_refused(name, loss, call, make_bad, exc, match):
    model, X, y = fitted(loss)
    assert_refused_untouched(model, lambda: CALLS[call](model, X, make_bad(y)), exc, match)


BAD_COUNTS = [  # (value, exception, pattern with {name})
    (0, ValueError, "{name} must be >= 1"),
    (-3, ValueError, "{name} must be >= 1"),
    (2.0, TypeError, "{name} must be an integer"),
    (True, TypeError, "{name} must be an integer, got bool"),
    ("3", TypeError, "{name} must be an integer"),
    (None, TypeError, "{name} must be an integer"),
]
BAD_SGD = [  # (settings, exception, pattern); the optimizer is SGD unless settings say "cls"
    (dict(lr=0.0), ValueError, "lr must be finite and > 0"),
    (dict(lr=-0.1), ValueError, "lr must be finite and > 0"),
    (dict(lr=np.nan), ValueError, "lr must be finite"),
    (dict(lr=np.inf), ValueError, "lr must be finite"),
    (dict(lr="0.1"), TypeError, "lr must be a real number"),
    (dict(lr=True), TypeError, "lr must be a real number"),
    (dict(momentum=-0.1), ValueError, "momentum must be finite and >= 0"),
    (dict(momentum=np.nan), ValueError, "momentum must be finite"),
    (dict(momentum=1.0), ValueError, r"momentum must be in \[0, 1\)"),
    (dict(momentum=1.5), ValueError, r"momentum must be in \[0, 1\)"),
    (dict(weight_decay=-1e-3), ValueError, "weight_decay must be finite and >= 0"),
    (dict(weight_decay=np.nan), ValueError, "weight_decay must be finite"),
    (dict(weight_decay=np.inf), ValueError, "weight_decay must be finite"),
    (dict(nesterov=True), ValueError, "nesterov=True needs momentum > 0"),
    (dict(nesterov=True, momentum=0.0), ValueError, "nesterov=True needs momentum > 0"),
    (dict(nesterov="yes", momentum=0.9), TypeError, "nesterov must be a bool"),
    (dict(l1=-1.0), ValueError, "l1 must be finite and >= 0"),
    (dict(clip_norm=0.0), ValueError, "clip_norm must be finite and > 0"),
    (dict(clip_value=-1.0), ValueError, "clip_value must be finite and > 0"),
    (dict(clip_value=np.inf), ValueError, "clip_value must be finite"),
    (dict(schedule="cosine"), TypeError, "schedule must be a fastbp.schedules.Schedule"),
    (dict(cls=Adam, betas=(1.0, 0.999)), ValueError, r"betas\[0\] \(beta1\) must be in \[0, 1\)"),
    (dict(cls=Adam, betas=(0.9, -0.5)), ValueError, r"betas\[1\] \(beta2\) must be finite and >= 0"),
    (dict(cls=Adam, betas=0.9), TypeError, r"betas must be a pair \(beta1, beta2\)"),
    (dict(cls=AdamW, eps=0.0), ValueError, "eps must be finite and > 0"),
    (dict(cls=AdamW, weight_decay=np.nan), ValueError, "weight_decay must be finite"),
    (dict(cls=RMSprop, alpha=1.0), ValueError, r"alpha must be in \[0, 1\)"),
    (dict(cls=RMSprop, momentum=-1.0), ValueError, "momentum must be finite and >= 0"),
    (dict(cls=RMSprop, centered="yes"), TypeError, "centered must be a bool"),
    (dict(cls=RMSprop, centered=2), TypeError, "centered must be a bool"),
    (dict(cls=Adagrad, lr_decay=-0.1), ValueError, "lr_decay must be finite and >= 0"),
    (dict(cls=Adagrad, lr_decay=np.nan), ValueError, "lr_decay must be finite"),
    (dict(cls=Adagrad, lr_decay="0.1"), TypeError, "lr_decay must be a real number"),
    (dict(cls=Adagrad, initial_accumulator_value=-1.0), ValueError,
     "initial_accumulator_value must be finite and >= 0"),
    (dict(cls=Adagrad, eps=np.inf), ValueError, "eps must be finite"),
]
SGD_IDS = ["-".join(f"{k}={getattr(v, '__name__', v)}" for k, v in settings.items())
           for settings, *_ in BAD_SGD]


def tampered_optimizer(cls=SGD, **settings):
    """An optimizer whose fields were set after construction (they are mutable), skipping
    checks."""
    optimizer = cls()
    for field, value in settings.items():
        setattr(optimizer, field, value)
    return optimizer


@pytest.mark.parametrize("settings, exc, match", BAD_SGD, ids=SGD_IDS)
def test_bad_optimizer_settings_are_refused(settings, exc, match):
    settings = dict(settings)
    with pytest.raises(exc, match=match):
        settings.pop("cls", SGD)(**settings)


ARGUMENT_CASES = (  # (method, keyword arguments, exception, pattern)
    [("fit", {arg: value}, exc, pattern.format(name=arg))
     for arg in ("epochs", "batch_size") for value, exc, pattern in BAD_COUNTS]
    # a dict as optimizer stands for tampered_optimizer(**dict), built fresh in the test
    + [(method, {"optimizer": settings}, exc, match)
       for method in ("fit", "train_step") for settings, exc, match in BAD_SGD]
    + [(method, {"optimizer": "sgd"}, TypeError, "optimizer must be a fastbp optimizer")
       for method in ("fit", "train_step")]
    + [("gradients", {"weight_decay": wd}, ValueError, "weight_decay must be finite and >= 0")
       for wd in (-1.0, np.nan, np.inf)]
    + [("check_gradients", {"eps": eps}, ValueError, "eps") for eps in (0.0, -1e-6, np.nan)]
    + [("check_gradients", {"weight_decay": -1.0}, ValueError, "weight_decay must be finite"),
       ("check_gradients", {"max_checks": 0}, ValueError, "max_checks must be >= 1"),
       ("check_gradients", {"max_checks": 1.5}, TypeError, "max_checks must be an integer")]
)
ARGUMENT_IDS = [method + "-" + "-".join(f"{k}={v!r}" for k, v in kwargs.items())
                for method, kwargs, *_ in ARGUMENT_CASES]


@pytest.mark.parametrize("method, kwargs, exc, match", ARGUMENT_CASES, ids=ARGUMENT_IDS)
def test_bad_arguments_are_refused(method, kwargs, exc, match):
    model, X, y = fitted("mse")
    if isinstance(kwargs.get("optimizer"), dict):
        kwargs = {"optimizer": tampered_optimizer(**kwargs["optimizer"])}
    assert_refused_untouched(model, lambda: CALLS[method](model, X, y, **kwargs), exc, match)


def test_check_gradients_refuses_a_non_model():
    X, y = canonical_data("mse")
    with pytest.raises(TypeError, match="model must be a fastbp.Sequential, got str"):
        fastbp.check_gradients("model", X, y)


VALID_ACTIVATIONS = ("valid activations: 'identity', 'sigmoid', 'tanh', 'relu', 'leaky_relu', "
                     "'gelu', 'softplus', 'elu', 'swish'")
VALID_LOSSES = "valid losses: 'mse', 'cross_entropy', 'binary_cross_entropy', 'huber', 'mae'"
BAD_MODELS = {  # name -> (build, exception, pattern)
    "dense-zero-inputs": (lambda: Dense(0, 3), ValueError, "in_features must be >= 1"),
    "dense-zero-outputs": (lambda: Dense(3, 0), ValueError, "out_features must be >= 1"),
    "dense-float-width": (lambda: Dense(3.0, 2), TypeError, "in_features must be an integer"),
    "dense-bool-width": (lambda: Dense(3, True), TypeError, "out_features must be an integer"),
    "dense-unknown-activation": (lambda: Dense(3, 2, "softsign"), ValueError,
                                 f"activation='softsign' is not known; {VALID_ACTIVATIONS}"),
    "dense-softmax": (lambda: Dense(3, 2, "softmax"), ValueError,
                      r"softmax is fused into the loss.*activation=None.*loss='cross_entropy'"),
    "mlp-unknown-activation": (lambda: mlp([4, 5, 3], activation="mish"), ValueError,
                               f"activation='mish' is not known; {VALID_ACTIVATIONS}"),
    "mlp-unknown-output-activation": (lambda: mlp([4, 5, 3], output_activation="selu"),
                                      ValueError, "activation='selu' is not known"),
    "mlp-one-size": (lambda: mlp([4]), ValueError, "sizes needs at least"),
    "unknown-loss": (lambda: mlp([4, 3], loss="hinge"), ValueError,
                     f"loss='hinge' is not known; {VALID_LOSSES}"),
    "unknown-dtype-name": (lambda: mlp([4, 3], dtype="float16"), ValueError,
                           "dtype must be 'float32' or 'float64'"),
    "integer-dtype": (lambda: mlp([4, 3], dtype=np.int32), ValueError,
                      "dtype must be 'float32' or 'float64'"),
    "nonsense-dtype": (lambda: mlp([4, 3], dtype="fluffy"), ValueError,
                       "dtype must be 'float32' or 'float64'"),
    "no-layers": (lambda: Sequential([]), ValueError, "layers must hold at least one"),
    "mismatched-widths": (lambda: Sequential([Dense(4, 5), Dense(6, 3)]), ValueError,
                          r"layers\[1\].in_features=6 does not match layers\[0\].out_features=5"),
    "non-dense-layer": (lambda: Sequential([Dense(4, 5), "relu", Dense(5, 3)]), TypeError,
                        r"layers\[1\] must be a fastbp layer \(Dense, Dropout, Activation, BatchNorm, "
                        r"LayerNorm or Residual\), got str"),
    "cross-entropy-output-activation": (
        lambda: Sequential([Dense(4, 5, "relu"), Dense(5, 3, "relu")], loss="cross_entropy"),
        ValueError, r"softmax.*layers\[1\].*activation=None, not 'relu'"),
    "bce-output-sigmoid": (
        lambda: mlp([4, 5, 3], loss="binary_cross_entropy", output_activation="sigmoid"),
        ValueError, r"sigmoid.*layers\[1\].*activation=None, not 'sigmoid'"),
    "cross-entropy-output-gelu": (
        lambda: mlp([4, 5, 3], loss="cross_entropy", output_activation="gelu"),
        ValueError, r"softmax.*layers\[1\].*activation=None, not 'gelu'"),
}


@pytest.mark.parametrize("bad", list(BAD_MODELS))
def test_bad_model_is_refused(bad):
    build, exc, match = BAD_MODELS[bad]
    with pytest.raises(exc, match=match):
        build()


# ---------------------------------------------------------------- divergence

def large_target_problem(dtype):
    rng = np.random.default_rng(0)
    model = mlp(SIZES, activation="relu", loss="mse", dtype=dtype, seed=0)
    return model, rng.normal(size=(N_SAMPLES, SIZES[0])), 1e3 * rng.normal(size=(N_SAMPLES, 3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_divergence_raises_and_keeps_finite_parameters(momentum, dtype):
    model, X, y = large_target_problem(dtype)
    with pytest.raises(DivergenceError, match=r"epoch \d+, batch \d+"):
        model.fit(X, y, epochs=20, batch_size=4, optimizer=SGD(lr=1e6, momentum=momentum))
    assert np.all(np.isfinite(model.parameters))
    assert np.all(np.isfinite(model._plan.state))


@pytest.mark.parametrize("dtype", DTYPES)
def test_overflowing_update_is_not_applied(dtype):
    """lr * grad overflows: that update is refused and the model keeps the parameters and
    optimizer state of the batch before, as the error message says."""
    model, X, y = large_target_problem(dtype)
    optimizer = SGD(lr=1e-6, momentum=0.9)
    model.fit(X, y, epochs=1, batch_size=4, optimizer=optimizer)  # non-trivial state
    before, state = model.parameters.copy(), model._plan.state.copy()
    optimizer.lr = float(np.finfo(dtype).max) / 10
    with pytest.raises(DivergenceError, match="epoch 1, batch 1 would make parameters NaN"):
        model.fit(X, y, epochs=1, batch_size=4, optimizer=optimizer)
    np.testing.assert_array_equal(model.parameters, before)
    np.testing.assert_array_equal(model._plan.state, state)


def test_torch_style_names_are_aliases():
    assert Dense(3, 2, "silu").activation == "swish"
    assert mlp([4, 3], loss="l1").loss == "mae"
    model = mlp([4, 5, 3], activation="gelu", loss="huber", output_activation="swish")
    assert model.loss == "huber" and model.layers[-1].activation == "swish"

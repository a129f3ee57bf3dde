"""Property-based tests (hypothesis): random architectures, batch sizes, array layouts and
input dtypes.

For any network (1 to 4 Dense layers, widths 1 to 40, any activations, any loss, float32 or
float64), any number of rows and any batch size (1, in range, or beyond the row count):

* the result of ``predict``, ``evaluate``, ``gradients`` and one epoch of ``fit`` does not
  depend on how X and y are laid out or typed (Fortran order, negative strides, strided
  slices, lists, read-only, int and float inputs): it equals, bit for bit, the result on the
  canonical C-contiguous array of the model's dtype;
* ``gradients`` (and ``predict``) agree with the NumPy reference network, and in float64 a
  ``fit`` epoch in order equals the reference's epoch.

Values are multiples of 1/8 in [-3, 3] (integers for integer inputs), exact in every dtype,
so a layout can change nothing. Examples are derandomised: every run checks the same ones.
"""
import numpy as np
import pytest

import fastbp as fb

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu"]
LOSSES = ["mse", "cross_entropy", "binary_cross_entropy"]
WIDTHS = st.integers(1, 40)

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def reverse_rows(a):
    return a[::-1].copy()[::-1]


def reverse_columns(a):
    return a[:, ::-1].copy()[:, ::-1] if a.ndim == 2 else reverse_rows(a)


def every_other_row(a):
    doubled = np.full((2 * a.shape[0],) + a.shape[1:], 99, dtype=a.dtype)
    doubled[::2] = a
    return doubled[::2]


def column_slice(a):
    if a.ndim == 1:
        return every_other_row(a)
    wide = np.full((a.shape[0], a.shape[1] + 3), 99, dtype=a.dtype)
    wide[:, 1:-2] = a
    return wide[:, 1:-2]


def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


# The same values in another layout: each takes and returns an array (or a list).
LAYOUTS = {
    "C": np.ascontiguousarray,
    "fortran": np.asfortranarray,
    "negative row stride": reverse_rows,
    "negative column stride": reverse_columns,
    "every other row": every_other_row,
    "column slice": column_slice,
    "transposed copy": lambda a: a.T.copy().T,
    "read-only": read_only,
    "list": lambda a: a.tolist(),
}


@st.composite
def problems(draw):
    """A model description, data, a batch size and the layouts and dtypes to pass them in."""
    loss = draw(st.sampled_from(LOSSES))
    sizes = [draw(WIDTHS)] + draw(st.lists(WIDTHS, max_size=3)) + [draw(WIDTHS)]
    activations = [draw(st.sampled_from(ACTIVATIONS)) for _ in sizes[2:]]
    activations.append(draw(st.sampled_from(ACTIVATIONS)) if loss == "mse" else "identity")
    n_samples = draw(st.integers(1, 50))
    batch_size = draw(st.one_of(st.just(1), st.integers(1, n_samples),
                                st.integers(n_samples + 1, n_samples + 20)))
    x_dtype = draw(st.sampled_from(["float32", "float64", "int64", "int32", "int16"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 1 if x_dtype.startswith("int") else 8
    X = (rng.integers(-3 * scale, 3 * scale + 1, size=(n_samples, sizes[0])) / scale)
    if loss == "cross_entropy":
        y = rng.integers(0, sizes[-1], size=n_samples)
        y_dtype = draw(st.sampled_from(["int64", "int32", "uint8", "float64"]))
        if sizes[-1] > 255:
            y_dtype = "int64"
    else:
        low = 0 if loss == "binary_cross_entropy" else -16
        y = rng.integers(low, 9, size=(n_samples, sizes[-1])) / 8
        y_dtype = draw(st.sampled_from(["float32", "float64"]))
    return {
        "sizes": sizes, "activations": activations, "loss": loss,
        "dtype": draw(st.sampled_from(["float32", "float64"])),
        "seed": draw(st.integers(0, 2**16)),
        "X": X.astype(x_dtype), "y": y.astype(y_dtype), "batch_size": batch_size,
        "x_layout": draw(st.sampled_from(list(LAYOUTS))),
        "y_layout": draw(st.sampled_from(list(LAYOUTS))),
    }


def build(problem, dtype=None):
    layers = [fb.Dense(n_in, n_out, None if act == "identity" else act)
              for n_in, n_out, act in zip(problem["sizes"], problem["sizes"][1:],
                                          problem["activations"])]
    model = fb.Sequential(layers, loss=problem["loss"], dtype=dtype or problem["dtype"],
                          seed=problem["seed"], threads=1)
    rng = np.random.default_rng(problem["seed"] + 1)
    for layer in model.layers:  # non-zero biases, so that their gradients count
        layer.bias[...] = 0.1 * rng.normal(size=layer.bias.shape)
    return model


def canonical(problem, model):
    """X and y as the model works on them: C-contiguous, the model's dtype (labels: intp)."""
    X = np.ascontiguousarray(problem["X"], dtype=model.dtype)
    if problem["loss"] == "cross_entropy":
        return X, np.ascontiguousarray(problem["y"], dtype=np.intp)
    return X, np.ascontiguousarray(problem["y"], dtype=model.dtype)


def outcomes(problem, X, y):
    """Everything the public API computes from (X, y), on a fresh model."""
    model = build(problem)
    result = {"predict": model.predict(X), "evaluate": model.evaluate(X, y),
              "gradients": model.gradients(X, y, weight_decay=0.01)}
    try:  # a diverging fit (deep identity nets at batch 1) must diverge alike
        model.fit(X, y, epochs=1, batch_size=problem["batch_size"], shuffle=True,
                  optimizer=fb.SGD(lr=0.05, momentum=0.9))
        result["diverged"] = ""
    except fb.DivergenceError as error:
        result["diverged"] = str(error)
    result["fit"] = model.parameters.copy()
    return result


def assert_identical(actual, expected, path="result"):
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), path
        for key in expected:
            assert_identical(actual[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, (tuple, list)):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_identical(a, e, f"{path}[{i}]")
    else:
        assert np.asarray(actual).dtype == np.asarray(expected).dtype, path
        np.testing.assert_array_equal(actual, expected, err_msg=path)


@PROPERTY
@given(problem=problems())
def test_layout_and_dtype_of_the_inputs_change_nothing(problem):
    X_c, y_c = canonical(problem, build(problem))
    X = LAYOUTS[problem["x_layout"]](problem["X"])
    y = LAYOUTS[problem["y_layout"]](problem["y"])
    assert_identical(outcomes(problem, X, y), outcomes(problem, X_c, y_c))


def reference_for(model, problem, reference):
    return reference.NumpyMLP(
        problem["sizes"], problem["activations"], problem["loss"], dtype="float64",
        weights=[(layer.weight, layer.bias) for layer in model.layers])


# (rtol, atol relative to the largest reference value) against the float64 reference with
# the same weights: one pass in float64 or float32, and a float64 epoch of up to 50 updates,
# whose rounding differences momentum carries and amplifies.
TOLERANCE = {"float64": (1e-9, 1e-12), "float32": (2e-3, 2e-5), "epoch": (1e-7, 1e-9)}


def assert_close(actual, expected, dtype, what):
    rtol, atol = TOLERANCE[dtype]
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=what)


@PROPERTY
@given(problem=problems())
def test_gradients_and_predictions_match_the_numpy_reference(problem, reference):
    model = build(problem)
    X, y = canonical(problem, model)
    ref = reference_for(model, problem, reference)
    loss, grads = model.gradients(X, y, weight_decay=0.01)
    ref_loss, ref_grads = ref.loss_and_gradients(X.astype(np.float64), y, weight_decay=0.01)
    assert_close(loss, ref_loss, problem["dtype"], "loss")
    for i, ((dW, db), (rW, rb)) in enumerate(zip(grads, ref_grads)):
        assert dW.shape == rW.shape and db.shape == rb.shape
        assert_close(dW, rW, problem["dtype"], f"dW of layer {i}")
        assert_close(db, rb, problem["dtype"], f"db of layer {i}")
    assert_close(model.predict(X), ref.predict(X.astype(np.float64)), problem["dtype"],
                 "predict")


@PROPERTY
@given(problem=problems())
def test_a_fit_epoch_in_order_matches_the_numpy_reference(problem, reference):
    model = build(problem, dtype="float64")
    X, y = canonical(problem, model)
    ref = reference_for(model, problem, reference)
    n_samples, batch_size = X.shape[0], problem["batch_size"]
    try:
        model.fit(X, y, epochs=1, batch_size=batch_size, shuffle=False,
                  optimizer=fb.SGD(lr=0.05, momentum=0.9))
    except fb.DivergenceError:
        # Only where the reference diverges too (e.g. deep identity nets at batch 1), and
        # the model keeps finite parameters.
        with np.errstate(all="ignore"):
            ref.train_epoch(X, y, np.arange(n_samples), batch_size, lr=0.05, momentum=0.9)
        assert not all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in ref.params)
        assert np.isfinite(model.parameters).all()
        return
    ref.train_epoch(X, y, np.arange(n_samples), batch_size, lr=0.05, momentum=0.9)
    for i, (layer, (W, b)) in enumerate(zip(model.layers, ref.params)):
        assert_close(layer.weight, W, "epoch", f"weight of layer {i}")
        assert_close(layer.bias, b, "epoch", f"bias of layer {i}")

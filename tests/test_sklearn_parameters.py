"""fastbp.sklearn's coefs_ / intercepts_ write through: hand-set weights are what predict,
partial_fit and warm_start fits use (oracles: a NumPy forward pass and scikit-learn's own
MLP from the same hand-set weights); bad assignments raise and change nothing."""
import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import neural_network  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from fastbp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

HIDDEN = (7, 5)  # non-square layers: 9 -> 7 -> 5 -> out


def _classification():
    return make_classification(n_samples=91, n_features=9, n_informative=5, n_classes=3,
                               random_state=0)


def _regression():
    X, y = make_regression(n_samples=91, n_features=9, n_targets=2, random_state=1)
    return X, y / 100


def _hand_weights(sizes, seed):
    rng = np.random.default_rng(seed)
    coefs = [rng.normal(0, 0.5, (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    intercepts = [rng.normal(0, 0.5, b) for b in sizes[1:]]
    return coefs, intercepts


def _numpy_forward(X, coefs, intercepts, hidden, output):
    a = X
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        z = a @ W + b
        a = output(z) if i == len(coefs) - 1 else hidden(z)
    return a


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _fitted(cls, X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cls(hidden_layer_sizes=HIDDEN, max_iter=3, random_state=0, **params).fit(X, y)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_assigned_weights_are_what_predict_uses(dtype):
    X, y = _classification()
    model = _fitted(MLPClassifier, X, y, dtype=dtype)
    coefs, intercepts = _hand_weights((9, *HIDDEN, 3), seed=1)
    model.coefs_ = coefs
    model.intercepts_ = intercepts
    expected = _numpy_forward(X, coefs, intercepts, lambda z: np.maximum(z, 0), _softmax)
    rtol = 1e-4 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(model.predict_proba(X), expected, rtol=rtol, atol=1e-6)
    np.testing.assert_array_equal(model.predict(X), np.argmax(expected, axis=1))
    for attribute, arrays in (("coefs_", coefs), ("intercepts_", intercepts)):
        for got, want in zip(getattr(model, attribute), arrays):
            assert got.dtype == np.dtype(dtype)  # copied in, cast to the model's dtype
            np.testing.assert_allclose(got, want, rtol=rtol)


def test_item_assignment_and_in_place_edits_write_through():
    X, y = _regression()
    model = _fitted(MLPRegressor, X, y, activation="tanh", dtype="float64")
    coefs, intercepts = _hand_weights((9, *HIDDEN, 2), seed=2)
    for i in range(3):
        model.coefs_[i] = coefs[i]
    model.intercepts_[-1] = intercepts[-1]
    for view, value in zip(model.intercepts_[:-1], intercepts[:-1]):
        view[...] = value  # in place, through the views
    expected = _numpy_forward(X, coefs, intercepts, np.tanh, lambda z: z)
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-10, atol=1e-14)
    assert all(np.shares_memory(a, model.model_.parameters)
               for a in model.coefs_ + model.intercepts_)


def _same_start(params, X, y, seed, first_rows):
    """scikit-learn's MLP and fastbp's, both partially fitted on ``first_rows`` and then
    set to the same hand-made weights."""
    theirs = neural_network.MLPClassifier(**params)
    ours = MLPClassifier(dtype="float64", **params)
    coefs, intercepts = _hand_weights((9, *params["hidden_layer_sizes"], 3), seed)
    for model in (theirs, ours):
        model.partial_fit(X[first_rows], y[first_rows], classes=[0, 1, 2])
        model.coefs_ = [c.copy() for c in coefs]
        model.intercepts_ = [b.copy() for b in intercepts]
    return theirs, ours


def _assert_same_parameters(theirs, ours, atol):
    for a, b in zip(theirs.coefs_ + theirs.intercepts_, ours.coefs_ + ours.intercepts_):
        np.testing.assert_allclose(b, a, rtol=0, atol=atol)


def test_partial_fit_continues_from_assigned_weights_as_sklearn_does():
    X, y = _classification()
    params = dict(hidden_layer_sizes=HIDDEN, solver="sgd", learning_rate_init=0.05,
                  batch_size=13, shuffle=False, random_state=0, alpha=1e-3)
    theirs, ours = _same_start(params, X, y, seed=3, first_rows=slice(0, 39))
    for model in (theirs, ours):  # the momentum buffers carry over, in both
        model.partial_fit(X[39:], y[39:])
    _assert_same_parameters(theirs, ours, atol=1e-12)


def test_warm_start_fit_starts_from_assigned_weights_as_sklearn_does():
    X, y = _classification()
    params = dict(hidden_layer_sizes=HIDDEN, solver="sgd", learning_rate_init=0.05,
                  batch_size=13, shuffle=False, random_state=0, alpha=1e-3,
                  warm_start=True, max_iter=4)
    theirs, ours = _same_start(params, X, y, seed=4, first_rows=slice(None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for model in (theirs, ours):
            model.fit(X, y)
    _assert_same_parameters(theirs, ours, atol=1e-10)


def test_lbfgs_warm_start_uses_assigned_weights():
    # With max_iter=1 L-BFGS moves only a little from where it starts: from the hand-set
    # weights the fit ends near them, from the previous fit's it does not.
    X, y = _classification()
    model = _fitted(MLPClassifier, X, y, solver="lbfgs", dtype="float64", warm_start=True)
    coefs, intercepts = _hand_weights((9, *HIDDEN, 3), seed=5)
    model.coefs_, model.intercepts_ = coefs, intercepts
    theirs = neural_network.MLPClassifier(hidden_layer_sizes=HIDDEN, solver="lbfgs",
                                          max_iter=1, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs.fit(X, y)
        theirs.coefs_ = [c.copy() for c in coefs]
        theirs.intercepts_ = [b.copy() for b in intercepts]
        theirs.fit(X, y)
        model.set_params(max_iter=1).fit(X, y)
    _assert_same_parameters(theirs, model, atol=1e-7)


BAD = [
    ("coefs_", lambda c, b: c[:-1], "list of 3 arrays"),
    ("coefs_", lambda c, b: c[0], "list of 3 arrays"),
    ("coefs_", lambda c, b: [c[0].T, c[1], c[2]], r"coefs_\[0\] must have shape \(9, 7\)"),
    ("coefs_", lambda c, b: [c[0], c[1], np.full((5, 3), "x")], r"coefs_\[2\] must hold real"),
    ("coefs_", lambda c, b: [c[0], c[1] + 0j, c[2]], r"coefs_\[1\] must hold real"),
    ("coefs_", lambda c, b: [c[0], c[1], np.where(c[2] > 0, np.nan, c[2])],
     r"coefs_\[2\] must be finite"),
    ("intercepts_", lambda c, b: [b[0], b[1], np.full(3, 1e39)], r"intercepts_\[2\] must be "
     "finite in the model's dtype \\(float32\\)"),  # float64 beyond float32's range
    ("intercepts_", lambda c, b: [b[0], b[1][:, None], b[2]], r"intercepts_\[1\] must have"),
]


@pytest.mark.parametrize("attribute, make, message", BAD)
def test_bad_assignment_raises_naming_the_attribute_and_changes_nothing(attribute, make,
                                                                        message):
    X, y = _classification()
    model = _fitted(MLPClassifier, X, y)  # float32
    before = model.model_.parameters.copy()
    predicted = model.predict_proba(X)
    coefs, intercepts = _hand_weights((9, *HIDDEN, 3), seed=6)
    # the first arrays are valid: nothing may be written before the bad one is found
    with pytest.raises(ValueError, match=message):
        setattr(model, attribute, make(coefs, intercepts))
    np.testing.assert_array_equal(model.model_.parameters, before)
    np.testing.assert_array_equal(model.predict_proba(X), predicted)


def test_bad_item_assignment_and_list_changes_raise():
    X, y = _classification()
    model = _fitted(MLPClassifier, X, y)
    before = model.model_.parameters.copy()
    with pytest.raises(ValueError, match=r"coefs_\[1\] must have shape \(7, 5\)"):
        model.coefs_[1] = np.zeros((5, 7))
    with pytest.raises(ValueError, match=r"intercepts_\[2\] must be finite"):
        model.intercepts_[-1] = [0.0, np.inf, 0.0]
    with pytest.raises(TypeError, match="by an int index"):
        model.coefs_[0:2] = model.coefs_[0:2]
    with pytest.raises(TypeError, match="length cannot change"):
        model.coefs_.append(np.zeros((5, 3)))
    with pytest.raises(IndexError):
        model.coefs_[3] = np.zeros((5, 3))
    np.testing.assert_array_equal(model.model_.parameters, before)


def test_unfitted_estimator_has_no_weights_and_refuses_them():
    model = MLPRegressor()
    assert not hasattr(model, "coefs_") and not hasattr(model, "intercepts_")
    with pytest.raises(AttributeError, match="only on a fitted MLPRegressor"):
        model.coefs_ = [np.zeros((2, 2))]


def test_assigned_weights_survive_pickling_as_views():
    X, y = _regression()
    model = _fitted(MLPRegressor, X, y)
    coefs, intercepts = _hand_weights((9, *HIDDEN, 2), seed=7)
    model.coefs_, model.intercepts_ = coefs, intercepts
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    assert all(np.shares_memory(a, restored.model_.parameters)
               for a in restored.coefs_ + restored.intercepts_)
    assert type(pickle.loads(pickle.dumps(model.coefs_))) is list

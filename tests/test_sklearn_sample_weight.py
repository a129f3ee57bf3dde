"""fastbp.sklearn's sample_weight follows scikit-learn's rule (each batch's loss, gradient and
L2 term divided by the batch's sum of weights): scikit-learn's own equivalence check in
float64, and step-for-step parity with sklearn.neural_network from the same initial weights
(float64, shuffle=False)."""
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import neural_network  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.estimator_checks import (  # noqa: E402
    check_sample_weight_equivalence_on_dense_data)

from fastbp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@pytest.mark.parametrize("estimator", [
    # the parameters scikit-learn uses for its own MLPs in this check
    MLPClassifier(solver="lbfgs", dtype="float64"),
    MLPRegressor(solver="sgd", tol=1e-2, dtype="float64"),
], ids=["classifier-lbfgs", "regressor-sgd"])
def test_sklearns_sample_weight_equivalence_check_passes_in_float64(estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check_sample_weight_equivalence_on_dense_data(type(estimator).__name__, estimator)


def _data(kind):
    if kind == "reg":
        X, y = make_regression(n_samples=91, n_features=9, n_targets=2, random_state=3)
        y = y / 100
    elif kind == "binary":
        X, y = make_classification(n_samples=91, n_features=9, random_state=2)
    else:
        X, y = make_classification(n_samples=91, n_features=9, n_informative=5, n_classes=3,
                                   random_state=1)
    weights = np.random.default_rng(0).uniform(0.0, 3.0, 91)
    weights[10:14] = 0.0
    return X, y, weights


def _fit_both(kind, X, y, weights, **params):
    theirs_cls, ours_cls = ((neural_network.MLPRegressor, MLPRegressor) if kind == "reg"
                            else (neural_network.MLPClassifier, MLPClassifier))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = theirs_cls(**params).fit(X, y, sample_weight=weights)
        ours = ours_cls(dtype="float64", **params).fit(X, y, sample_weight=weights)
    return theirs, ours


def _assert_same_parameters(theirs, ours, atol):
    for a, b in zip(theirs.coefs_ + theirs.intercepts_, ours.coefs_ + ours.intercepts_):
        np.testing.assert_allclose(b, a, rtol=0, atol=atol)


# 91 rows in 7 batches of 13 (the last partial batch would get the full batches' L2 scale:
# module note D); hidden layers non-square.
COMMON = dict(hidden_layer_sizes=(11, 6), random_state=0, shuffle=False, batch_size=13,
              alpha=1e-2, max_iter=6)
VARIANTS = {
    "sgd-nesterov": dict(solver="sgd", learning_rate_init=0.05),
    "sgd-plain": dict(solver="sgd", learning_rate_init=0.05, momentum=0.0),
    # scikit-learn adds Adam's epsilon after the bias correction; exact with one batch
    "adam-full-batch": dict(solver="adam", learning_rate_init=0.01, batch_size=91),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("kind", ["multiclass", "binary", "reg"])
def test_weighted_fit_same_as_sklearn_step_for_step(kind, variant):
    X, y, weights = _data(kind)
    params = {**COMMON, **VARIANTS[variant]}
    theirs, ours = _fit_both(kind, X, y, weights, **params)
    _assert_same_parameters(theirs, ours, atol=1e-10)
    assert ours.n_iter_ == theirs.n_iter_
    # loss_ holds the L2 term from the epoch's end points (module note D): close, not exact
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=2e-3)


def test_weighted_partial_fit_same_as_sklearn():
    X, y, weights = _data("multiclass")
    params = {**COMMON, **VARIANTS["sgd-nesterov"]}
    theirs = neural_network.MLPClassifier(**params)
    ours = MLPClassifier(dtype="float64", **params)
    for start in (0, 39):
        rows = slice(start, start + 39 if start == 0 else None)
        for model in (theirs, ours):
            model.partial_fit(X[rows], y[rows], sample_weight=weights[rows], classes=[0, 1, 2])
    _assert_same_parameters(theirs, ours, atol=1e-10)


@pytest.mark.parametrize("kind", ["multiclass", "binary", "reg"])
def test_weighted_lbfgs_same_as_sklearn(kind):
    X, y, weights = _data(kind)
    if kind == "reg":
        y = y[:, 0]  # several outputs take another path to the same minimiser (note D)
    theirs, ours = _fit_both(kind, X, y, weights,
                             **{**COMMON, "solver": "lbfgs", "max_iter": 40})
    _assert_same_parameters(theirs, ours, atol=1e-7)
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-8)

"""MLPRegressor(loss="poisson") is scikit-learn's (>= 1.7): an exp output, the half Poisson
deviance, the same steps from the same initial weights (float64, shuffle=False), and the same
``loss_`` (with the constant term scikit-learn's reported loss includes)."""
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import neural_network  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from fastbp.sklearn import MLPRegressor  # noqa: E402

if "poisson" not in neural_network.MLPRegressor._parameter_constraints["loss"][0].options:
    pytest.skip("scikit-learn's MLPRegressor has no loss='poisson' (< 1.7)",
                allow_module_level=True)

COMMON = dict(loss="poisson", hidden_layer_sizes=(11, 6), random_state=0, shuffle=False,
              batch_size=13, alpha=1e-2, max_iter=6)
VARIANTS = {
    "sgd-nesterov": dict(solver="sgd", learning_rate_init=0.01),
    "adam-full-batch": dict(solver="adam", learning_rate_init=0.01, batch_size=91),
    "lbfgs": dict(solver="lbfgs", max_iter=30),
}


def _data(outputs):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(91, 9))
    rate = np.exp(0.3 * X[:, :outputs] - 0.2)
    y = rng.poisson(rate).astype(np.float64)  # counts, zeros among them
    return X, (y[:, 0] if outputs == 1 else y)


def _fit_both(X, y, weights=None, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = neural_network.MLPRegressor(**params).fit(X, y, sample_weight=weights)
        ours = MLPRegressor(dtype="float64", **params).fit(X, y, sample_weight=weights)
    return theirs, ours


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("outputs", [1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_poisson_fit_same_as_sklearn_step_for_step(variant, outputs, weighted):
    X, y = _data(outputs)
    weights = np.random.default_rng(0).uniform(0.0, 3.0, 91) if weighted else None
    theirs, ours = _fit_both(X, y, weights, **{**COMMON, **VARIANTS[variant]})
    atol = 1e-7 if variant == "lbfgs" else 1e-10
    for a, b in zip(theirs.coefs_ + theirs.intercepts_, ours.coefs_ + ours.intercepts_):
        np.testing.assert_allclose(b, a, rtol=0, atol=atol)
    assert ours.out_activation_ == theirs.out_activation_ == "exp"
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-6)
    if variant == "lbfgs":
        np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-8)
    else:  # loss_ holds the L2 term from the epoch's end points (module note D)
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=2e-3)


def test_poisson_loss_without_l2_equals_sklearns_loss_curve():
    """alpha=0: nothing estimated, so loss_ is scikit-learn's to rounding, constant included."""
    X, y = _data(2)
    theirs, ours = _fit_both(X, y, **{**COMMON, **VARIANTS["sgd-nesterov"], "alpha": 0.0})
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)


def test_poisson_predicts_nonnegative_rates_and_refuses_negative_targets():
    X, y = _data(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPRegressor(loss="poisson", hidden_layer_sizes=(5,), max_iter=5,
                             random_state=0).fit(X, y)
    assert np.all(model.predict(X) > 0)
    with pytest.raises(ValueError, match="y"):
        MLPRegressor(loss="poisson", max_iter=2).fit(X, y - 1.5)

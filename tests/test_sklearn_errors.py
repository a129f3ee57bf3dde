"""fastbp.sklearn fails where scikit-learn fails, with scikit-learn's exception and message:
non-finite weights, a one-member class in early stopping's stratified split; and it does
not fail where scikit-learn does not: a diverging fit with early stopping ends and keeps the
best validated weights (scikit-learn's issue 29504)."""
import re
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import neural_network  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from fastbp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

SKLEARN_NONFINITE = ("Solver produced non-finite parameter weights. The input data may "
                     "contain large values and need to be preprocessed.")


def _regression(n=91):
    X, y = make_regression(n_samples=n, n_features=7, random_state=0)
    return X, y / 100


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_divergence_raises_sklearns_sentence_then_fastbps_account(dtype):
    X, y = _regression()
    model = MLPRegressor(solver="sgd", learning_rate_init=1e6, hidden_layer_sizes=(9,),
                         dtype=dtype, random_state=0)
    with pytest.raises(ValueError) as raised:
        model.fit(X * 1e3, y * 1e3)
    message = str(raised.value)
    assert message.startswith(SKLEARN_NONFINITE)  # what scikit-learn users match on
    assert re.search(r"fastbp: the (loss|update) .* epoch \d+, batch \d+", message)
    assert ("float32" in message) == (dtype == "float32")
    assert np.all(np.isfinite(model.model_.parameters))


def test_float32_overflow_names_the_dtype_and_the_way_out():
    # finite in float32, but the products overflow it: scikit-learn (float64) would train
    X, y = _regression()
    with pytest.raises(ValueError, match=re.escape(SKLEARN_NONFINITE)) as raised:
        MLPRegressor(hidden_layer_sizes=(9,), random_state=0).fit(X * 1e37, y)
    assert "dtype='float64'" in str(raised.value)


def _one_member_message(classes):
    return ("The least populated classes in y have only 1 member, which is too few. The "
            "minimum number of groups for any class cannot be less than 2. Classes with too "
            f"few members are: {classes}")


@pytest.mark.parametrize("labels, lonely", [(np.array([3, 7]), [7]),
                                            (np.array(["cat", "dog"]), ["dog"])])
def test_early_stopping_one_member_class_raises_sklearns_message(labels, lonely):
    X, _ = make_classification(n_samples=41, n_features=5, random_state=0)
    y = labels[(np.arange(41) == 17).astype(int)]  # the second class: one row
    params = dict(early_stopping=True, max_iter=3, random_state=0)
    with pytest.raises(ValueError) as theirs:
        neural_network.MLPClassifier(**params).fit(X, y)
    with pytest.raises(ValueError, match=re.escape(_one_member_message(lonely))):
        MLPClassifier(**params).fit(X, y)
    # scikit-learn's own text up to the class list, which it shows as binarized ('True')
    prefix = _one_member_message([]).removesuffix("[]")
    assert str(theirs.value).startswith(prefix)


def test_early_stopping_multiclass_one_member_class_fits_as_in_sklearn():
    # scikit-learn stratifies binary problems only: a lone class in a multiclass problem
    # is split without stratifying there, and here
    X, y = make_classification(n_samples=41, n_features=5, n_informative=3, n_classes=3,
                               random_state=0)
    y[y == 2] = 1
    y[17] = 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(early_stopping=True, max_iter=3, random_state=0).fit(X, y)
        neural_network.MLPClassifier(early_stopping=True, max_iter=3, random_state=0).fit(X, y)
    assert list(model.classes_) == [0, 1, 2]


def _unstable_linear_problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    X[:, 4] *= 3
    return X, X @ np.array([1.0, -2.0, 0.5, 1.0, 0.3]) / 3


def test_diverging_fit_with_early_stopping_keeps_the_best_weights_as_sklearn_does():
    # A rate just past stability: the first epoch is validated, the next ones blow up.
    # scikit-learn runs its NaN epochs to max_iter; fastbp ends at the diverging epoch.
    # Both keep the best validated weights and raise nothing.
    X, y = _unstable_linear_problem()
    params = dict(solver="sgd", activation="identity", hidden_layer_sizes=(4,),
                  learning_rate_init=0.135, momentum=0.0, batch_size=20, early_stopping=True,
                  n_iter_no_change=1000, max_iter=30, shuffle=False, random_state=0)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        theirs = neural_network.MLPRegressor(**params).fit(X, y)
    ours = MLPRegressor(dtype="float64", **params).fit(X, y)
    assert np.isnan(theirs.validation_scores_[1:]).all()  # it did diverge there
    assert ours.n_iter_ == 1 and len(ours.validation_scores_) == 1
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_,
                                                        rel=1e-9)
    for a, b in zip(theirs.coefs_ + theirs.intercepts_, ours.coefs_ + ours.intercepts_):
        np.testing.assert_allclose(b, a, rtol=1e-9)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fit_that_improves_then_diverges_keeps_its_best_weights(dtype, capsys):
    X, y = _regression(200)
    model = MLPRegressor(solver="sgd", hidden_layer_sizes=(16,), learning_rate_init=0.05,
                         early_stopping=True, n_iter_no_change=3, max_iter=15,
                         shuffle=False, random_state=0, warm_start=True, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    best = [c.copy() for c in model.coefs_ + model.intercepts_]
    # warm start with a rate that diverges; the count must not stop it first
    model.set_params(learning_rate_init=1e7, n_iter_no_change=100, max_iter=50, verbose=True)
    model.fit(X * 1e3, y * 1e3)
    assert "Non-finite loss or update: stopping" in capsys.readouterr().out
    for kept, was in zip(model.coefs_ + model.intercepts_, best):
        np.testing.assert_array_equal(kept, was)
    assert np.all(np.isfinite(model.predict(X)))


def test_diverging_fit_without_early_stopping_still_raises():
    X, y = _regression()
    model = MLPRegressor(solver="sgd", learning_rate_init=1e7, early_stopping=False,
                         random_state=0)
    with pytest.raises(ValueError, match=re.escape(SKLEARN_NONFINITE)):
        model.fit(X * 1e3, y * 1e3)


@pytest.mark.parametrize("where", ["X", "y"])
def test_values_beyond_float32_get_sklearns_sentence_and_the_dtype_to_use(where):
    X, y = _regression()
    X, y = (X * 1e39, y) if where == "X" else (X, y * 1e41)  # finite in float64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's cast overflow
        with pytest.raises(ValueError) as raised:
            MLPRegressor(hidden_layer_sizes=(9,)).fit(X, y)
        message = str(raised.value)
        assert message.startswith(SKLEARN_NONFINITE)
        assert f"Input {where} contains" in message and "dtype='float64' takes" in message
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPRegressor(hidden_layer_sizes=(9,), max_iter=2, dtype="float64").fit(X, y)
        assert np.all(np.isfinite(model.model_.parameters))  # float64 takes them, as sklearn
        fitted = MLPRegressor(hidden_layer_sizes=(9,), max_iter=2).fit(*_regression())
        with pytest.raises(ValueError, match="dtype='float64' takes") as raised:
            fitted.predict(_regression()[0] * 1e39)
    assert not str(raised.value).startswith("Solver")  # predicting is not solving
    with pytest.raises(ValueError, match=r"Input X contains infinity") as raised:
        fitted.predict(np.full((2, 7), np.inf))
    assert "fastbp" not in str(raised.value)  # a true infinity: scikit-learn's message

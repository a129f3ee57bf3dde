"""fastbp.sklearn: scikit-learn's estimator checks, step-for-step parity with
sklearn.neural_network (float64, fixed data order), accuracy parity on digits, the extras."""
import io
import pathlib
import pickle
import re
import subprocess
import sys
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import neural_network  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import (load_digits, make_classification,  # noqa: E402
                              make_multilabel_classification, make_regression)
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastbp  # noqa: E402
from fastbp import sklearn as fbsk  # noqa: E402
from fastbp.losses import CLASSIFICATION, Loss  # noqa: E402
from fastbp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SKLEARN_VERSION = tuple(int(p) for p in sklearn.__version__.split(".")[:2])


# ---------------------------------------------------------------------- data
def _problems():
    X, y = make_classification(n_samples=400, n_features=10, n_informative=6, n_classes=3,
                               random_state=0)
    Xb, yb = make_classification(n_samples=400, n_features=10, random_state=1)
    Xm, ym = make_multilabel_classification(n_samples=400, n_features=10, n_classes=4,
                                            random_state=2)
    Xr, yr = make_regression(n_samples=400, n_features=10, n_targets=3, random_state=3)
    Xr1, yr1 = make_regression(n_samples=400, n_features=10, random_state=4)
    return {"multiclass": ("clf", X, y), "binary": ("clf", Xb, yb),
            "multilabel": ("clf", Xm, ym), "regression": ("reg", Xr1, yr1 / 100),
            "regression-3": ("reg", Xr, yr / 100)}


PROBLEMS = _problems()
ESTIMATORS = {"clf": (neural_network.MLPClassifier, MLPClassifier),
              "reg": (neural_network.MLPRegressor, MLPRegressor)}

# Fixed data order (shuffle=False), float64, and n_samples a multiple of batch_size (fastbp
# gives the last partial batch the full batches' L2 scale): the same algorithm step for step.
EXACT = dict(hidden_layer_sizes=(20, 15), random_state=0, shuffle=False, batch_size=50,
             alpha=1e-3, max_iter=30)
SGD_VARIANTS = {
    "sgd-nesterov": dict(solver="sgd", learning_rate_init=0.05),
    "sgd-momentum": dict(solver="sgd", learning_rate_init=0.05, nesterovs_momentum=False),
    "sgd-plain": dict(solver="sgd", learning_rate_init=0.05, momentum=0.0),
    "sgd-invscaling": dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.5),
    "sgd-adaptive": dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.05,
                         tol=1e-2, n_iter_no_change=2),
    # Adam's epsilon enters after the bias correction in scikit-learn and before it in
    # fastbp; the per-epoch correction is exact with one batch per epoch.
    "adam-full-batch": dict(solver="adam", learning_rate_init=0.01, batch_size=400),
}


def _fit_both(kind, X, y, **params):
    theirs_cls, ours_cls = ESTIMATORS[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = theirs_cls(**params).fit(X, y)
        ours = ours_cls(dtype="float64", **params).fit(X, y)
    return theirs, ours


def _assert_same_parameters(theirs, ours, atol=1e-10):
    assert len(ours.coefs_) == len(theirs.coefs_)
    for a, b in zip(theirs.coefs_ + theirs.intercepts_, ours.coefs_ + ours.intercepts_):
        np.testing.assert_allclose(b, a, rtol=0, atol=atol)


# ---------------------------------------------------------------------- estimator checks
def _expected_failed_checks(estimator):
    float32_rounding = (
        "float32 (the default dtype): weighted and repeated rows round differently and "
        "the fits end ~1e-4 apart, over the check's rtol 1e-7; in float64 the check "
        "passes (tests/test_sklearn_sample_weight.py, tests/test_sklearn_sparse.py)")
    failures = {"check_sample_weight_equivalence_on_dense_data": float32_rounding,
                "check_sample_weight_equivalence_on_sparse_data": float32_rounding}
    if estimator.solver == "lbfgs" and isinstance(estimator, MLPClassifier):
        failures["check_classifiers_multilabel_output_format_predict_proba"] = (
            "float32 (the default dtype): L-BFGS fits the check's data hard and sigmoid(z) "
            "rounds to exactly 1.0 in float32 for z > 17; the check wants 0 < p < 1")
    return failures


CHECKED = [MLPClassifier(max_iter=100), MLPRegressor(max_iter=100),
           MLPClassifier(solver="lbfgs", hidden_layer_sizes=(20,), max_iter=100),
           MLPRegressor(solver="sgd", max_iter=100)]

if SKLEARN_VERSION >= (1, 6):  # expected_failed_checks came in 1.6, xfail_strict in 1.8
    _STRICT = {"xfail_strict": True} if SKLEARN_VERSION >= (1, 8) else {}

    @parametrize_with_checks(CHECKED, expected_failed_checks=_expected_failed_checks, **_STRICT)
    def test_sklearn_estimator_checks(estimator, check):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            check(estimator)
else:  # pragma: no cover
    def test_sklearn_estimator_checks():
        pytest.skip("the estimator checks need scikit-learn >= 1.6 (expected_failed_checks)")


# ---------------------------------------------------------------------- exact parity
@pytest.mark.parametrize("variant", sorted(SGD_VARIANTS))
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_same_fit_as_sklearn_step_for_step(problem, variant):
    kind, X, y = PROBLEMS[problem]
    params = {**EXACT, **SGD_VARIANTS[variant]}
    theirs, ours = _fit_both(kind, X, y, **params)
    _assert_same_parameters(theirs, ours)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    assert ours.out_activation_ == theirs.out_activation_
    assert ours.n_layers_ == theirs.n_layers_ and ours.n_outputs_ == theirs.n_outputs_
    # loss_ is scikit-learn's figure; its L2 term is estimated from the epoch's end points,
    # so it is close, not exact (least so with invscaling's large first-epoch rate).
    rtol = 1e-3 if "invscaling" in variant else 1e-4
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=rtol)
    np.testing.assert_allclose(ours.best_loss_, theirs.best_loss_, rtol=rtol)
    if "invscaling" not in variant:
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-3)


@pytest.mark.parametrize("problem", ["multiclass", "binary", "multilabel", "regression"])
def test_lbfgs_same_fit_as_sklearn(problem):
    kind, X, y = PROBLEMS[problem]
    theirs, ours = _fit_both(kind, X, y, **{**EXACT, "solver": "lbfgs", "max_iter": 50})
    _assert_same_parameters(theirs, ours, atol=1e-7)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-8)
    assert not hasattr(ours, "loss_curve_")  # as scikit-learn: stochastic solvers only


def test_lbfgs_multi_output_regression_reaches_sklearns_objective():
    # scikit-learn hands L-BFGS a loss averaged over the outputs but the gradient of their
    # sum; fastbp's pair is consistent, so the paths differ but the objective is the same.
    kind, X, y = PROBLEMS["regression-3"]
    theirs, ours = _fit_both(kind, X, y, **{**EXACT, "solver": "lbfgs", "max_iter": 400})
    assert ours.loss_ <= theirs.loss_ * 1.05
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), abs=0.01)


@pytest.mark.parametrize("problem", ["binary", "regression"])
def test_early_stopping_same_as_sklearn(problem):
    kind, X, y = PROBLEMS[problem]
    rng = np.random.RandomState(0)
    y = np.where(rng.rand(len(y)) < 0.2, y[::-1], y)  # noise, so validation peaks early
    params = dict(EXACT, solver="sgd", learning_rate_init=0.05, batch_size=40, max_iter=300,
                  early_stopping=True, n_iter_no_change=5)
    theirs, ours = _fit_both(kind, X, y, **params)
    # Same initial weights and same held-out rows, so the same scores, stop and restore.
    assert ours.n_iter_ == theirs.n_iter_ < 300
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, atol=1e-12)
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_)
    assert ours.best_loss_ is None
    _assert_same_parameters(theirs, ours)


def test_partial_fit_same_as_sklearn():
    kind, X, y = PROBLEMS["multiclass"]
    params = {**EXACT, **SGD_VARIANTS["sgd-invscaling"]}
    theirs = neural_network.MLPClassifier(**params)
    ours = MLPClassifier(dtype="float64", **params)
    for start in range(0, 400, 100):
        for model in (theirs, ours):
            model.partial_fit(X[start:start + 100], y[start:start + 100], classes=np.unique(y))
    _assert_same_parameters(theirs, ours)
    assert ours.t_ == theirs.t_ == 400 and ours.n_iter_ == theirs.n_iter_ == 1
    assert len(ours.loss_curve_) == 4


def test_warm_start_same_as_sklearn():
    kind, X, y = PROBLEMS["binary"]
    params = {**EXACT, **SGD_VARIANTS["sgd-nesterov"], "warm_start": True, "max_iter": 5}
    theirs_cls, ours_cls = ESTIMATORS[kind]
    theirs, ours = theirs_cls(**params), ours_cls(dtype="float64", **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(3):
            theirs.fit(X, y)
            ours.fit(X, y)
    _assert_same_parameters(theirs, ours)
    assert len(ours.loss_curve_) == 15 and ours.t_ == theirs.t_


def test_initial_weights_are_sklearns():
    # max_iter=1 with a rate too small to move: the weights are (nearly) the initial ones.
    kind, X, y = PROBLEMS["multiclass"]
    for activation in ("relu", "logistic"):
        params = dict(EXACT, activation=activation, solver="sgd", learning_rate_init=1e-12,
                      max_iter=1)
        theirs, ours = _fit_both(kind, X, y, **params)
        _assert_same_parameters(theirs, ours, atol=1e-9)


# ---------------------------------------------------------------------- digits
def _digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_digits_accuracy_within_one_point_of_sklearn(solver):
    # scikit-learn's defaults (hidden (100,), alpha 1e-4, batch 200, 200 epochs, ...),
    # fastbp in its default float32; mean over three fixed seeds.
    threadpoolctl = pytest.importorskip("threadpoolctl")
    X_train, X_test, y_train, y_test = _digits()
    scores = {"sklearn": [], "fastbp": []}
    # One BLAS thread: scikit-learn's many small float64 GEMMs crawl when two threads
    # contend for two busy cores.
    with warnings.catch_warnings(), threadpoolctl.threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        for seed in range(3):
            for name, cls in (("sklearn", neural_network.MLPClassifier),
                              ("fastbp", MLPClassifier)):
                model = cls(solver=solver, random_state=seed).fit(X_train, y_train)
                scores[name].append(model.score(X_test, y_test))
    assert np.mean(scores["fastbp"]) == pytest.approx(np.mean(scores["sklearn"]), abs=0.01)
    assert min(scores["fastbp"]) > 0.9


# ---------------------------------------------------------------------- API
def test_import_error_names_the_extra(tmp_path):
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "try:\n    import fastbp.sklearn\nexcept ImportError as e:\n    print(e)\n")
    # From another directory: `python -c` would otherwise find the source checkout first.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout
    assert "pip install 'fastbp[sklearn]'" in out


def test_readme_section_runs():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## scikit-learn drop-in"):text.index("## Speed")]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    with redirect_stdout(io.StringIO()) as printed, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        exec(compile(code, str(README), "exec"), {})
    score, n_iter, loss = printed.getvalue().split()
    assert float(score) > 0.95 and int(n_iter) > 1 and float(loss) > 0


def test_float32_by_default_and_outputs_follow_X():
    _, X, y = PROBLEMS["multiclass"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5).fit(X, y)
    assert model.model_.dtype == np.float32 and model.coefs_[0].dtype == np.float32
    assert model.predict_proba(X).dtype == np.float64
    assert model.predict_proba(X.astype(np.float32)).dtype == np.float32
    assert MLPClassifier(dtype="float64").get_params()["dtype"] == "float64"


def test_coefs_are_views_of_the_model_and_survive_pickling():
    _, X, y = PROBLEMS["regression"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)
    for restored in (model, pickle.loads(pickle.dumps(model))):
        assert all(np.shares_memory(a, restored.model_.parameters)
                   for a in restored.coefs_ + restored.intercepts_)
        np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    model.coefs_[-1][...] = 0
    model.intercepts_[-1][...] = 1.5
    np.testing.assert_allclose(model.predict(X), 1.5)


def test_pickled_partial_fit_keeps_optimizer_state():
    _, X, y = PROBLEMS["multiclass"]
    model = MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", random_state=0, shuffle=False)
    model.partial_fit(X, y, classes=[0, 1, 2])
    copy = pickle.loads(pickle.dumps(model))
    model.partial_fit(X, y)
    copy.partial_fit(X, y)
    _assert_same_parameters(model, copy, atol=0)


def test_pipeline_and_grid_search():
    _, X, y = PROBLEMS["multiclass"]
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=30, random_state=0,
                                                         learning_rate_init=0.01))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(8,), (16, 8)],
                               "mlpclassifier__alpha": [1e-4, 1e-1]}, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert grid.best_score_ > 0.6 and grid.predict(X).shape == (400,)
    assert clone(grid.best_estimator_).get_params()["mlpclassifier__alpha"] in (1e-4, 1e-1)


def test_string_labels_binary_and_multiclass():
    _, X, y = PROBLEMS["multiclass"]
    names = np.array(["cat", "dog", "emu"])[y]
    model = MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, random_state=0,
                          learning_rate_init=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, names)
        assert list(model.classes_) == ["cat", "dog", "emu"] and model.out_activation_ == "softmax"
        assert set(model.predict(X)) <= set(model.classes_) and model.score(X, names) > 0.7
        binary = MLPClassifier(hidden_layer_sizes=(16,), max_iter=50).fit(X, names == "dog")
    assert binary.n_outputs_ == 1 and binary.out_activation_ == "logistic"
    proba = binary.predict_proba(X)
    assert proba.shape == (400, 2) and np.allclose(proba.sum(axis=1), 1)
    np.testing.assert_allclose(binary.predict_log_proba(X), np.log(proba), rtol=1e-6)


def test_multilabel_indicator_targets():
    _, X, Y = PROBLEMS["multilabel"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(32,), max_iter=100, random_state=0).fit(X, Y)
    assert model.out_activation_ == "logistic" and model.n_outputs_ == 4
    assert model.model_.loss == "binary_cross_entropy"
    assert model.predict(X).shape == Y.shape and set(np.unique(model.predict(X))) <= {0, 1}
    assert model.predict_proba(X).shape == Y.shape
    assert model.score(X, Y) > 0.3  # subset accuracy


def test_partial_fit_rules():
    _, X, y = PROBLEMS["multiclass"]
    model = MLPClassifier(hidden_layer_sizes=(8,))
    with pytest.raises(ValueError, match="classes must be passed"):
        model.partial_fit(X, y)
    model.partial_fit(X[:200], y[:200], classes=[0, 1, 2])
    model.partial_fit(X[200:], y[200:])
    assert model.t_ == 400 and model.n_iter_ == 1 and len(model.loss_curve_) == 2
    with pytest.raises(ValueError, match="not the same as on last call"):
        model.partial_fit(X, y, classes=[0, 1])
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_stopping_rule_and_convergence_warning():
    _, X, y = PROBLEMS["multiclass"]
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\)"):
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=3).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(8,), tol=10.0, n_iter_no_change=2).fit(X, y)
    assert model.n_iter_ == 4 == len(model.loss_curve_)  # stops once the count 3 > 2
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        lbfgs = MLPClassifier(solver="lbfgs", hidden_layer_sizes=(8,), max_iter=3).fit(X, y)
    assert lbfgs.n_iter_ == 3


def test_adaptive_rate_divides_by_five():
    _, X, y = PROBLEMS["multiclass"]
    model = MLPClassifier(solver="sgd", learning_rate="adaptive", hidden_layer_sizes=(8,),
                          tol=10.0, n_iter_no_change=1, max_iter=7, learning_rate_init=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    # the count reaches 2 > 1 every second epoch: 0.1 / 5**3 after 7 epochs
    assert model._learning_rate == pytest.approx(0.1 / 5 ** 3)
    assert model.model_.optimizer.lr == pytest.approx(0.1 / 5 ** 3)


def test_divergence_is_sklearns_value_error():
    _, X, y = PROBLEMS["regression"]
    model = MLPRegressor(solver="sgd", learning_rate_init=1e6, hidden_layer_sizes=(8,))
    with pytest.raises(ValueError, match="non-finite parameter weights"):
        model.fit(X * 1e3, y * 1e3)
    assert np.all(np.isfinite(model.model_.parameters))  # fastbp keeps the last finite state


def test_verbose_prints_sklearns_lines():
    _, X, y = PROBLEMS["binary"]
    out = io.StringIO()
    with redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, verbose=True).fit(X, y)
    assert out.getvalue().startswith("Iteration 1, loss = ")


def test_per_layer_activations_and_fastbp_names():
    _, X, y = PROBLEMS["regression"]
    model = MLPRegressor(hidden_layer_sizes=(8, 6, 4), activation=["relu", "tanh", "leaky_relu"],
                         max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    assert [layer.activation for layer in model.model_.layers] == [
        "relu", "tanh", "leaky_relu", "identity"]
    with pytest.raises(ValueError, match="3 hidden layers"):
        MLPRegressor(hidden_layer_sizes=(8, 6, 4), activation=["relu"]).fit(X, y)


@pytest.mark.parametrize("params", [
    dict(solver="newton"), dict(hidden_layer_sizes=(10, 0)), dict(momentum=1.0),
    dict(dtype="float16"), dict(activation="softmax"), dict(learning_rate="cyclic"),
    dict(batch_size=0), dict(n_iter_no_change=0), dict(validation_fraction=1.0),
    dict(dropout=1.0)])
def test_bad_parameters_raise_at_fit_not_init(params):
    _, X, y = PROBLEMS["multiclass"]
    model = MLPClassifier(**params)  # scikit-learn validates in fit, never in __init__
    with pytest.raises(ValueError):
        model.fit(X, y)


def test_regressor_losses():
    _, X, y = PROBLEMS["regression"]
    params = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mse = MLPRegressor(**params).fit(X, y)
        squared = MLPRegressor(loss="squared_error", **params).fit(X, y)
        np.testing.assert_array_equal(mse.predict(X), squared.predict(X))
        for loss in Loss:
            if loss not in CLASSIFICATION:
                targets = np.abs(y) if loss == Loss.POISSON else y  # counts are >= 0
                fitted = MLPRegressor(loss=loss.name.lower(), **params).fit(X, targets)
                assert fitted.model_.loss == loss.name.lower()
                assert np.all(np.isfinite(fitted.predict(X)))
    for bad in ("cross_entropy", "log_loss"):
        with pytest.raises(ValueError, match="not available"):
            MLPRegressor(loss=bad).fit(X, y)


def test_validation_data_scores_every_epoch_and_can_drive_early_stopping():
    _, X, y = PROBLEMS["multiclass"]
    X_val, y_val = X[300:], y[300:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=6, random_state=0)
        model.fit(X[:300], y[:300], validation_data=(X_val, y_val))
    assert len(model.validation_scores_) == 6 and model.best_loss_ is not None
    assert model.best_validation_score_ == max(model.validation_scores_)
    early = MLPClassifier(hidden_layer_sizes=(8,), max_iter=500, early_stopping=True,
                          n_iter_no_change=3, random_state=0, learning_rate_init=0.05)
    early.fit(X[:300], y[:300], validation_data=(X_val, y_val))
    assert early.n_iter_ < 500 and early.t_ == 300 * early.n_iter_  # nothing held out
    assert early.score(X_val, y_val) == pytest.approx(early.best_validation_score_)


def test_early_stopping_split_is_stratified_for_single_label(monkeypatch):
    calls = []

    def spy(*arrays, **kwargs):
        calls.append(kwargs.get("stratify"))
        return train_test_split(*arrays, **kwargs)

    monkeypatch.setattr(fbsk._stochastic, "train_test_split", spy)
    for problem in ("multiclass", "multilabel"):
        _, X, y = PROBLEMS[problem]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            MLPClassifier(hidden_layer_sizes=(4,), early_stopping=True, max_iter=2).fit(X, y)
    multiclass, multilabel = calls
    np.testing.assert_array_equal(multiclass, PROBLEMS["multiclass"][2])
    assert multilabel is None


def test_feature_names_in():
    pd = pytest.importorskip("pandas")
    _, X, y = PROBLEMS["regression"]
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2).fit(frame, y)
    assert list(model.feature_names_in_) == list(frame.columns) and model.n_features_in_ == 10
    with pytest.warns(UserWarning, match="feature names"):
        model.predict(X)


# ---------------------------------------------------------------------- sample weights, dropout
def test_sample_weight_equals_repeating_rows_with_lbfgs():
    _, X, y = PROBLEMS["multiclass"]
    X, y = X[:120], y[:120]
    weights = np.arange(120) % 4  # mean 1.5: the loss is normalised by the total weight
    repeated = np.repeat(np.arange(120), weights)
    params = dict(solver="lbfgs", hidden_layer_sizes=(8,), max_iter=30, random_state=0,
                  dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = MLPClassifier(**params).fit(X, y, sample_weight=weights)
        copied = MLPClassifier(**params).fit(X[repeated], y[repeated])
    _assert_same_parameters(weighted, copied, atol=1e-6)


def test_sample_weight_passes_through_stochastic_fit():
    _, X, y = PROBLEMS["regression"]
    weights = np.where(np.arange(400) < 200, 1.0, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPRegressor(hidden_layer_sizes=(16,), max_iter=300, random_state=0)
        model.fit(X, y, sample_weight=weights)
    assert model.score(X[:200], y[:200]) > model.score(X[200:], y[200:])


def test_class_weight_balanced_lifts_the_minority_class():
    X, y = make_classification(n_samples=600, n_features=8, weights=[0.9, 0.1], flip_y=0.05,
                               class_sep=0.6, random_state=0)
    recalls = {}
    for class_weight in (None, "balanced"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = MLPClassifier(hidden_layer_sizes=(16,), max_iter=100, random_state=0,
                                  class_weight=class_weight).fit(X, y)
        recalls[class_weight] = np.mean(model.predict(X[y == 1]) == 1)
    assert recalls["balanced"] > recalls[None]


def test_class_weight_dict_equals_sample_weight():
    _, X, y = PROBLEMS["binary"]
    params = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        by_class = MLPClassifier(class_weight={0: 1.0, 1: 3.0}, **params).fit(X, y)
        by_sample = MLPClassifier(**params).fit(X, y, sample_weight=np.where(y == 1, 3.0, 1.0))
    _assert_same_parameters(by_class, by_sample, atol=0)


def test_dropout_trains_and_predicts_deterministically():
    # Dropout makes the training loss noisy, so scikit-learn's no-improvement rule would stop
    # early; 200 epochs of 2 batches reach 0.79-0.85 over random_state 0-4 (torch, from the
    # same initial weights and masks of its own, 0.79-0.84; 50 epochs reach ~0.66 in both).
    _, X, y = PROBLEMS["multiclass"]
    params = dict(hidden_layer_sizes=(32, 16), dropout=[0.5, 0.2], max_iter=200,
                  n_iter_no_change=200, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(**params).fit(X, y)
        again = MLPClassifier(**params).fit(X, y)
        plain = MLPClassifier(**{**params, "dropout": 0.0}).fit(X, y)
    assert [type(layer).__name__ for layer in model.model_.layers] == [
        "BoundDense", "Dropout", "BoundDense", "Dropout", "BoundDense"]
    assert [layer.rate for layer in model.model_.layers[1::2]] == [0.5, 0.2]
    assert [coef.shape for coef in model.coefs_] == [(10, 32), (32, 16), (16, 3)]
    _assert_same_parameters(model, again, atol=0)   # the masks follow random_state
    assert not np.array_equal(model.coefs_[0], plain.coefs_[0])
    np.testing.assert_array_equal(model.predict_proba(X), model.predict_proba(X))
    assert model.score(X, y) > 0.75
    with pytest.raises(ValueError, match="stochastic solver"):
        MLPClassifier(solver="lbfgs", dropout=0.5).fit(X, y)

"""fastbp.sklearn on scipy.sparse X: the same fit as on X.toarray() (float64: the core reads
CSR rows where they lie, summing in another order, so equal to rounding), the same fit as
scikit-learn's own MLP on the same sparse X step for step (where the dense tests compare,
tests/test_sklearn.py), every sparse format scikit-learn's MLP takes, and never a densified
copy of the input."""
import re
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
scipy_sparse = pytest.importorskip("scipy.sparse")

from sklearn import neural_network  # noqa: E402
from sklearn.datasets import (make_classification, make_multilabel_classification,  # noqa: E402
                              make_regression)
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.estimator_checks import (  # noqa: E402
    check_sample_weight_equivalence_on_sparse_data)

from fastbp import Dense  # noqa: E402
from fastbp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

ESTIMATORS = {"clf": (neural_network.MLPClassifier, MLPClassifier),
              "reg": (neural_network.MLPRegressor, MLPRegressor)}
SOLVERS = {"sgd": dict(solver="sgd", learning_rate_init=0.05),
           "adam": dict(solver="adam", learning_rate_init=0.01),
           "lbfgs": dict(solver="lbfgs")}


def _sparse(X, density, seed):
    """X with all but about ``density`` of its entries zeroed, as CSR (float64)."""
    keep = np.random.default_rng(seed).random(X.shape) < density
    return scipy_sparse.csr_matrix(np.where(keep, X, 0.0))


def _problem(kind, n_samples=203, n_features=57, density=0.15, n_classes=3):
    """Odd sizes: 203 rows (not a multiple of the batch), 57 features; every row keeps at
    least one entry (y is computed from the sparse X, so it is learnable)."""
    X, y = ((make_classification(n_samples=n_samples, n_features=n_features, n_informative=20,
                                 n_classes=n_classes, random_state=0)) if kind == "clf"
            else make_regression(n_samples=n_samples, n_features=n_features, random_state=0))
    X = _sparse(X, density, seed=1)
    if kind == "reg":
        y = np.asarray(X @ np.random.default_rng(2).normal(size=n_features)).ravel() / 3
    return X, y


def _fit(estimator, X, y, **fit_params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y, **fit_params)


def _assert_same_parameters(ours, reference, rtol=1e-10, atol=1e-13):
    """coefs_ and intercepts_ equal to ``rtol`` (with ``atol`` for entries that are ~0: the
    sums run in another order)."""
    assert len(ours.coefs_) == len(reference.coefs_)
    for a, b in zip(reference.coefs_ + reference.intercepts_, ours.coefs_ + ours.intercepts_):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol)


def _assert_same_fit(ours, reference):
    _assert_same_parameters(ours, reference)
    assert ours.n_iter_ == reference.n_iter_
    if hasattr(reference, "loss_curve_"):
        np.testing.assert_allclose(ours.loss_curve_, reference.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(ours.loss_, reference.loss_, rtol=1e-10)


# ---------------------------------------------------------------------- sparse == dense
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("kind", sorted(ESTIMATORS))
def test_sparse_fit_equals_dense_fit(kind, solver, shuffle):
    X, y = _problem(kind)
    params = dict(SOLVERS[solver], hidden_layer_sizes=(13, 7), random_state=0, batch_size=17,
                  alpha=1e-3, max_iter=15, shuffle=shuffle, dtype="float64")
    cls = ESTIMATORS[kind][1]
    on_sparse, on_dense = _fit(cls(**params), X, y), _fit(cls(**params), X.toarray(), y)
    _assert_same_fit(on_sparse, on_dense)
    np.testing.assert_allclose(on_sparse.predict(X), on_dense.predict(X.toarray()),
                               rtol=1e-10, atol=1e-13)
    assert on_sparse.score(X, y) == pytest.approx(on_dense.score(X.toarray(), y), abs=1e-12)


@pytest.mark.parametrize("kind", sorted(ESTIMATORS))
def test_float32_sparse_fit_close_to_dense_fit(kind):
    # the estimators' default dtype: the same steps, rounded in float32 in another order
    X, y = _problem(kind)
    params = dict(hidden_layer_sizes=(13,), random_state=0, batch_size=17, max_iter=5)
    cls = ESTIMATORS[kind][1]
    on_sparse, on_dense = _fit(cls(**params), X, y), _fit(cls(**params), X.toarray(), y)
    assert on_sparse.coefs_[0].dtype == np.float32
    _assert_same_parameters(on_sparse, on_dense, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fmt", ["csc", "coo", "lil", "csr_array", "csc_array", "coo_array"])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_every_sparse_format_fits_and_predicts_as_csr(fmt, solver):
    X, y = _problem("clf")
    if fmt.endswith("_array"):
        other = getattr(scipy_sparse, fmt)(X)
    else:
        other = X.asformat(fmt)
    params = dict(SOLVERS[solver], hidden_layer_sizes=(9,), random_state=0, batch_size=17,
                  max_iter=8, dtype="float64")
    on_csr, on_other = _fit(MLPClassifier(**params), X, y), _fit(MLPClassifier(**params), other, y)
    _assert_same_parameters(on_other, on_csr, rtol=0, atol=0)  # converted to the same CSR
    np.testing.assert_array_equal(on_csr.predict_proba(other), on_csr.predict_proba(X))


def test_int64_indices_and_unsorted_duplicate_entries():
    X, y = _problem("clf")
    # each row's entries twice, halved, the first copy in reverse column order
    indptr, indices, data = [0], [], []
    for row in range(X.shape[0]):
        part = slice(X.indptr[row], X.indptr[row + 1])
        indices += [X.indices[part][::-1], X.indices[part]]
        data += [X.data[part][::-1] / 2, X.data[part] / 2]
        indptr.append(indptr[-1] + 2 * (part.stop - part.start))
    messy = scipy_sparse.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), np.array(indptr)), shape=X.shape)
    messy.indices, messy.indptr = messy.indices.astype(np.int64), messy.indptr.astype(np.int64)
    assert not messy.has_canonical_format
    params = dict(hidden_layer_sizes=(9,), random_state=0, batch_size=17, max_iter=5,
                  dtype="float64")
    reference = _fit(MLPClassifier(**params), X, y)
    _assert_same_parameters(_fit(MLPClassifier(**params), messy, y), reference)
    np.testing.assert_allclose(reference.predict_proba(messy), reference.predict_proba(X),
                               rtol=1e-12)


# ---------------------------------------------------------------------- sparse == scikit-learn
# As tests/test_sklearn.py: float64, shuffle=False, n_samples a multiple of batch_size (fastbp
# gives a last partial batch the full batches' L2 scale), Adam with one batch per epoch
# (module note D of fastbp.sklearn); the same random_state gives the same initial weights.
SKLEARN_EXACT = dict(hidden_layer_sizes=(13, 7), random_state=0, shuffle=False, batch_size=17,
                     alpha=1e-3)
SKLEARN_VARIANTS = {
    "sgd": dict(solver="sgd", learning_rate_init=0.05, max_iter=15),
    "adam": dict(solver="adam", learning_rate_init=0.01, batch_size=204, max_iter=15),
    "lbfgs": dict(solver="lbfgs", max_iter=15),
}


@pytest.mark.parametrize("solver", sorted(SKLEARN_VARIANTS))
@pytest.mark.parametrize("kind", sorted(ESTIMATORS))
def test_sparse_fit_same_as_sklearn_on_sparse_step_for_step(kind, solver):
    X, y = _problem(kind, n_samples=204)  # 12 batches of 17
    params = {**SKLEARN_EXACT, **SKLEARN_VARIANTS[solver]}
    theirs_cls, ours_cls = ESTIMATORS[kind]
    theirs = _fit(theirs_cls(**params), X, y)
    ours = _fit(ours_cls(dtype="float64", **params), X, y)
    _assert_same_parameters(ours, theirs, rtol=0, atol=1e-7 if solver == "lbfgs" else 1e-10)
    assert ours.n_iter_ == theirs.n_iter_
    if solver == "lbfgs":
        np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-8)
    else:
        assert ours.t_ == theirs.t_
        # the L2 part of loss_ comes from the epoch's end points (module note D)
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-3)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=0, atol=1e-7)


def test_hand_set_weights_then_partial_fit_same_as_sklearn():
    # scikit-learn's users copy weights in (coefs_ assignment); from the same weights,
    # partial_fit on sparse chunks takes scikit-learn's steps
    X, y = _problem("clf", n_samples=204)
    params = dict(SKLEARN_EXACT, solver="sgd", learning_rate_init=0.05)
    theirs = neural_network.MLPClassifier(**params)
    ours = MLPClassifier(dtype="float64", **params)
    classes = np.unique(y)
    for model in (theirs, ours):
        model.partial_fit(X[:17], y[:17], classes=classes)
    rng = np.random.default_rng(5)
    theirs.coefs_ = [rng.normal(scale=0.3, size=c.shape) for c in theirs.coefs_]
    theirs.intercepts_ = [rng.normal(scale=0.3, size=b.shape) for b in theirs.intercepts_]
    ours.coefs_ = [c.copy() for c in theirs.coefs_]
    ours.intercepts_ = [b.copy() for b in theirs.intercepts_]
    for start in range(17, 204, 51):  # chunks of 51 rows: 3 batches each
        for model in (theirs, ours):
            model.partial_fit(X[start:start + 51], y[start:start + 51])
    _assert_same_parameters(ours, theirs, rtol=0, atol=1e-10)
    assert ours.t_ == theirs.t_ == 204


@pytest.mark.parametrize("kind", sorted(ESTIMATORS))
def test_early_stopping_on_sparse_same_as_dense_and_sklearn(kind):
    # binary: scikit-learn stratifies binary problems only, fastbp every single-label one
    X, y = _problem(kind, n_samples=200, n_classes=2)
    if kind == "clf":
        y = np.where(np.random.default_rng(0).random(len(y)) < 0.2, y[::-1], y)  # noise
    params = dict(SKLEARN_EXACT, solver="sgd", learning_rate_init=0.05, batch_size=20,
                  max_iter=200, early_stopping=True, n_iter_no_change=4)
    theirs_cls, ours_cls = ESTIMATORS[kind]
    theirs = _fit(theirs_cls(**params), X, y)
    ours = _fit(ours_cls(dtype="float64", **params), X, y)
    dense = _fit(ours_cls(dtype="float64", **params), X.toarray(), y)
    # the same held-out rows (scikit-learn's split of the sparse X), scores, stop and restore
    assert ours.n_iter_ == theirs.n_iter_ == dense.n_iter_ < 200
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, atol=1e-12)
    np.testing.assert_allclose(ours.validation_scores_, dense.validation_scores_, atol=1e-12)
    _assert_same_parameters(ours, theirs, rtol=0, atol=1e-10)
    _assert_same_parameters(ours, dense)


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
@pytest.mark.parametrize("kind", sorted(ESTIMATORS))
def test_sample_weight_on_sparse_same_as_dense_and_sklearn(kind, solver):
    X, y = _problem(kind, n_samples=204)
    weights = np.random.default_rng(0).uniform(0.0, 3.0, X.shape[0])
    weights[10:14] = 0.0
    params = {**SKLEARN_EXACT, **SKLEARN_VARIANTS[solver]}
    theirs_cls, ours_cls = ESTIMATORS[kind]
    theirs = _fit(theirs_cls(**params), X, y, sample_weight=weights)
    ours = _fit(ours_cls(dtype="float64", **params), X, y, sample_weight=weights)
    dense = _fit(ours_cls(dtype="float64", **params), X.toarray(), y, sample_weight=weights)
    _assert_same_fit(ours, dense)
    _assert_same_parameters(ours, theirs, rtol=0, atol=1e-7 if solver == "lbfgs" else 1e-10)


@pytest.mark.parametrize("kind", sorted(ESTIMATORS))
def test_partial_fit_in_sparse_chunks_same_as_dense_and_sklearn(kind):
    X, y = _problem(kind, n_samples=204)
    params = dict(SKLEARN_EXACT, solver="sgd", learning_rate="invscaling", learning_rate_init=0.5)
    theirs_cls, ours_cls = ESTIMATORS[kind]
    models = theirs, ours, dense = (theirs_cls(**params), ours_cls(dtype="float64", **params),
                                    ours_cls(dtype="float64", **params))
    extra = {"classes": np.unique(y)} if kind == "clf" else {}
    for start in range(0, 204, 68):  # 4 batches of 17 per chunk
        rows = slice(start, start + 68)
        for model in models:
            chunk = X[rows].toarray() if model is dense else X[rows].tocsc()
            model.partial_fit(chunk, y[rows], **extra)
    _assert_same_parameters(ours, dense)
    np.testing.assert_allclose(ours.loss_curve_, dense.loss_curve_, rtol=1e-10)
    _assert_same_parameters(ours, theirs, rtol=0, atol=1e-10)
    assert ours.t_ == theirs.t_ == 204


# ---------------------------------------------------------------------- mixing and extras
@pytest.mark.parametrize("kind", sorted(ESTIMATORS))
def test_predict_sparse_after_dense_fit_and_dense_after_sparse_fit(kind):
    X, y = _problem(kind)
    cls = ESTIMATORS[kind][1]
    params = dict(hidden_layer_sizes=(11,), random_state=0, max_iter=5, dtype="float64")
    for fitted_on in (X, X.toarray()):
        model = _fit(cls(**params), fitted_on, y)
        np.testing.assert_allclose(model.predict(X), model.predict(X.toarray()), rtol=1e-12,
                                   atol=1e-14)
        assert model.score(X.tocsc(), y) == pytest.approx(model.score(X.toarray(), y),
                                                          abs=1e-12)
        if kind == "clf":
            np.testing.assert_allclose(model.predict_proba(X.tocoo()),
                                       model.predict_proba(X.toarray()), rtol=1e-12)
            np.testing.assert_allclose(model.predict_log_proba(X),
                                       model.predict_log_proba(X.toarray()), rtol=1e-12)
    # outputs follow X's dtype, sparse or dense (as scikit-learn's)
    model = _fit(cls(hidden_layer_sizes=(11,), random_state=0, max_iter=3), X, y)
    out = model.predict_proba(X) if kind == "clf" else model.predict(X)
    assert out.dtype == np.float64
    out32 = (model.predict_proba(X.astype(np.float32)) if kind == "clf"
             else model.predict(X.astype(np.float32)))
    assert out32.dtype == np.float32


def test_warm_start_validation_data_dropout_and_multilabel_on_sparse():
    X, y = _problem("clf")
    dense = X.toarray()
    params = dict(hidden_layer_sizes=(13, 7), random_state=0, batch_size=17, max_iter=4,
                  solver="sgd", learning_rate_init=0.05, dtype="float64", dropout=0.25,
                  warm_start=True)
    on_sparse, on_dense = MLPClassifier(**params), MLPClassifier(**params)
    for _ in range(2):
        _fit(on_sparse, X, y, validation_data=(X[:50], y[:50]))
        _fit(on_dense, dense, y, validation_data=(dense[:50], y[:50]))
    # the first layer is Dense (the core's sparse path): dropout follows it, as on dense X
    assert type(on_sparse.model_.layers[0].spec) is Dense
    _assert_same_fit(on_sparse, on_dense)
    np.testing.assert_allclose(on_sparse.validation_scores_, on_dense.validation_scores_)
    Xm, Y = make_multilabel_classification(n_samples=120, n_features=30, n_classes=4,
                                           random_state=2)
    Xm = scipy_sparse.csr_matrix(Xm.astype(np.float64))
    a = _fit(MLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=5,
                           dtype="float64"), Xm, Y)
    b = _fit(MLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=5,
                           dtype="float64"), Xm.toarray(), Y)
    _assert_same_parameters(a, b)
    np.testing.assert_array_equal(a.predict(Xm), b.predict(Xm.toarray()))


@pytest.mark.parametrize("estimator", [
    # the estimator checks' configurations (tests/test_sklearn.py), in float64: float32
    # rounds weighted and repeated rows apart by more than the check's rtol
    MLPClassifier(max_iter=100, dtype="float64"),
    MLPRegressor(max_iter=100, dtype="float64"),
    MLPClassifier(solver="lbfgs", hidden_layer_sizes=(20,), max_iter=100, dtype="float64"),
    MLPRegressor(solver="sgd", max_iter=100, dtype="float64"),
], ids=["classifier-adam", "regressor-adam", "classifier-lbfgs", "regressor-sgd"])
def test_sklearns_sample_weight_equivalence_check_on_sparse_data_passes_in_float64(estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check_sample_weight_equivalence_on_sparse_data(type(estimator).__name__, estimator)


def test_the_sparse_tag_is_set_as_sklearns():
    for ours, theirs in [(MLPClassifier(), neural_network.MLPClassifier()),
                         (MLPRegressor(), neural_network.MLPRegressor())]:
        assert ours.__sklearn_tags__().input_tags.sparse is True
        assert theirs.__sklearn_tags__().input_tags.sparse is True


def test_estimator_networks_start_with_dense():
    """The core reads sparse X only through a first Dense layer (a model starting with
    Dropout, a norm or a Residual refuses it: tests/test_sparse.py). The estimators'
    networks always start with Dense, dropout or not, so that refusal never reaches them."""
    X, y = _problem("clf")
    for dropout in (0.0, 0.5):
        model = _fit(MLPClassifier(hidden_layer_sizes=(6, 5), dropout=dropout, max_iter=2,
                                   random_state=0), X, y)
        assert type(model.model_.layers[0].spec) is Dense


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_no_densified_copy_of_sparse_input(monkeypatch, solver):
    X, y = _problem("clf")

    def refusing(cls, name):
        original = getattr(cls, name, None)

        def method(self, *args, **kwargs):
            # X or any rows of it (scikit-learn's label binarizer densifies its own small
            # sparse label matrices, which is fine)
            if self.shape[-1] == X.shape[1]:
                raise AssertionError(f"the sparse input was densified ({name})")
            return original(self, *args, **kwargs)
        return method

    for cls in (scipy_sparse.csr_matrix, scipy_sparse.csc_matrix, scipy_sparse.coo_matrix,
                scipy_sparse.csr_array, scipy_sparse.csc_array, scipy_sparse.coo_array):
        for name in ("toarray", "todense"):
            monkeypatch.setattr(cls, name, refusing(cls, name))
    params = dict(hidden_layer_sizes=(9,), solver=solver, max_iter=3, random_state=0)
    model = MLPClassifier(early_stopping=solver != "lbfgs", **params)
    _fit(model, X.tocsc(), y, sample_weight=np.ones(X.shape[0]))
    model.predict_proba(X)
    model.score(X.tocoo(), y)
    if solver != "lbfgs":
        MLPClassifier(**params).partial_fit(X, y, classes=np.unique(y)).partial_fit(X, y)


def test_bad_sparse_input_raises_sklearns_errors():
    X, y = _problem("reg")
    bad = X.copy()
    bad.data[3] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MLPRegressor(max_iter=2).fit(bad, y)
    model = _fit(MLPRegressor(hidden_layer_sizes=(5,), max_iter=2), X, y)
    with pytest.raises(ValueError, match="X has 56 features, but MLPRegressor is expecting 57"):
        model.predict(X[:, :56])
    big = X.copy()
    big.data[3] = 1e300  # finite in float64, not in the default float32
    with pytest.raises(ValueError, match=re.escape("dtype='float64'")), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's cast to float32 overflows
        MLPRegressor(max_iter=2).fit(big, y)

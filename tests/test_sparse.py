"""Sparse input (scipy.sparse) in fb.Sequential: the core reads CSR rows where they lie
(src_c/_op_sparse.pxd). Oracles: the same model on X.toarray(), central differences, and
NumPy products of the sparse matrix; at team sizes 1-3; every scipy format; bad input.
"""
import numpy as np
import pytest
import scipy.sparse as sp

import fastbp as fb
from fastbp import threads
from fastbp._native import core
from fastbp.sparse import SparseRows, check_sparse_X


def sparse_problem(rows=203, features=57, classes=5, density=0.1, seed=0, fmt="csr"):
    rng = np.random.default_rng(seed)
    X = sp.random(rows, features, density=density, format="csr", random_state=seed + 1,
                  dtype=np.float64)
    X.data *= rng.choice([-2.0, 1.0, 3.0], size=X.data.shape)
    return X.asformat(fmt), rng.integers(0, classes, rows)


def network(dtype="float64", seed=3, features=57, classes=5, dropout=0.2, width=31, second=19):
    return fb.Sequential([fb.Dense(features, width, "tanh"), fb.Dropout(dropout),
                          fb.Dense(width, second, "gelu"), fb.Dense(second, classes)],
                         loss="cross_entropy", dtype=dtype, seed=seed)


def assert_models_equal(a, b, rtol):
    np.testing.assert_allclose(a.parameters, b.parameters, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradients_equal_the_dense_inputs(dtype):
    X, y = sparse_problem()
    sparse_loss, sparse_grads = network(dtype).gradients(X, y, weight_decay=1e-3)
    dense_loss, dense_grads = network(dtype).gradients(X.toarray(), y, weight_decay=1e-3)
    tol = 1e-6 if dtype == "float32" else 1e-13
    assert sparse_loss == pytest.approx(dense_loss, rel=tol)
    for got, want in zip(sparse_grads, dense_grads):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def test_gradients_match_central_differences_with_dropout():
    X, y = sparse_problem(rows=41, features=23, density=0.2)
    model = network(features=23, width=7)
    assert fb.check_gradients(model, X, y, weight_decay=0.01) < 1e-6
    assert fb.check_gradients(model, X, y, dropout_step=4) < 1e-6


def test_first_layer_output_is_the_sparse_product():
    """Forward of a one-layer identity network = X·W + b, computed by scipy."""
    X, _ = sparse_problem(rows=19, features=33)
    model = fb.Sequential([fb.Dense(33, 6)], loss="mse", dtype="float64", seed=0)
    layer = model.layers[0]
    np.testing.assert_allclose(model.predict(X), X @ layer.weight + layer.bias, rtol=1e-14)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_size", [17, 203])
def test_fit_equals_the_dense_fit(dtype, batch_size):
    X, y = sparse_problem()
    a, b = network(dtype), network(dtype)
    ha = a.fit(X, y, epochs=3, batch_size=batch_size, optimizer=fb.Adam(lr=1e-2))
    hb = b.fit(X.toarray(), y, epochs=3, batch_size=batch_size, optimizer=fb.Adam(lr=1e-2))
    tol = 2e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=tol)
    assert_models_equal(a, b, tol)
    np.testing.assert_allclose(a.predict(X), b.predict(X.toarray()), rtol=tol, atol=tol)
    assert a.evaluate(X, y)["loss"] == pytest.approx(b.evaluate(X.toarray(), y)["loss"], rel=tol)


@pytest.mark.parametrize("optimizer", [
    lambda: fb.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda: fb.AdamW(lr=1e-2, weight_decay=1e-2),
    lambda: fb.RMSprop(lr=1e-3, centered=True),
    lambda: fb.Adagrad(lr=0.05, lr_decay=1e-3),
    lambda: fb.SGD(lr=0.05, clip_norm=0.5),   # the whole-gradient step
])
def test_every_optimizer_trains_sparse_as_dense(optimizer):
    X, y = sparse_problem(seed=2)
    a, b = network(), network()
    a.fit(X, y, epochs=2, batch_size=32, optimizer=optimizer())
    b.fit(X.toarray(), y, epochs=2, batch_size=32, optimizer=optimizer())
    assert_models_equal(a, b, 1e-12)


@pytest.fixture
def teams(monkeypatch):
    """Teams even for these small networks (threads.py would run them on one thread), and
    the dense layers' small products in fastbp's C loops where the build has them, so that
    every operation is fastbp's own (as tests/test_team.py)."""
    monkeypatch.setattr(threads, "MIN_FLOPS_PER_GEMM", 0)
    before = core.small_products()
    core.small_products(True)
    yield core.small_products()
    core.small_products(before)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_size", [5, 17])
def test_fit_predict_evaluate_bitwise_alike_at_every_team_size(teams, dtype, batch_size):
    """The sparse op sums every element in batch-row order whatever the split."""
    X, y = sparse_problem(rows=97, features=300, density=0.03)
    w = np.random.default_rng(1).uniform(0.5, 2.0, X.shape[0])
    results = []
    for team in (1, 2, 3):
        model = network(dtype, features=300, width=24, second=12)
        history = model.fit(X, y, epochs=2, batch_size=batch_size, threads=team,
                            optimizer=fb.Adam(lr=1e-2), sample_weight=w,
                            validation_data=(X[:30], y[:30]))
        results.append((model.parameters.copy(), np.asarray(history.loss),
                        np.asarray(history.val_loss), model.predict(X, threads=team),
                        model.evaluate(X, y, threads=team)["loss"]))
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            if teams:
                np.testing.assert_array_equal(got, want)
            else:  # BLAS runs the dense layers' products: its result depends on the split
                np.testing.assert_allclose(got, want, rtol=2e-4 if dtype == "float32" else 1e-10)


def test_train_step_and_weighted_reduction_as_dense():
    X, y = sparse_problem()
    w = np.random.default_rng(3).uniform(0, 2, X.shape[0])
    a, b = network(), network()
    for model, data in ((a, X), (b, X.toarray())):
        opt = fb.SGD(lr=0.1, momentum=0.5)
        for start in range(0, 203, 50):
            model.train_step(data[start:start + 50], y[start:start + 50], optimizer=opt,
                             sample_weight=w[start:start + 50],
                             sample_weight_reduction="weights")
    assert_models_equal(a, b, 1e-12)


@pytest.mark.parametrize("fmt", ["csc", "coo", "lil", "dok", "bsr"])
def test_every_scipy_format_and_sparse_arrays(fmt):
    X, y = sparse_problem(fmt=fmt)
    reference = network()
    reference.fit(X.toarray(), y, epochs=1, batch_size=32)
    for data in (X, sp.csr_array(X)):
        model = network()
        model.fit(data, y, epochs=1, batch_size=32)
        assert_models_equal(model, reference, 1e-12)


def test_duplicates_unsorted_columns_empty_rows_and_integer_values():
    """CSR as users build it by hand: repeated (row, column) entries add up, columns in any
    order, rows without entries, integer values; and a matrix of zeros."""
    indptr = np.array([0, 3, 3, 6, 7])
    indices = np.array([4, 1, 4, 0, 5, 2, 3])
    data = np.array([1, 2, 3, -1, 2, 5, 7])
    X = sp.csr_matrix((data, indices, indptr), shape=(4, 6))
    assert not X.has_canonical_format
    y = np.array([0, 1, 1, 0])
    make = lambda: fb.Sequential([fb.Dense(6, 4, "relu"), fb.Dense(4, 2)],
                                 loss="cross_entropy", dtype="float64", seed=0)
    a, b = make(), make()
    a.fit(X, y, epochs=3, batch_size=3)
    b.fit(X.toarray(), y, epochs=3, batch_size=3)
    assert_models_equal(a, b, 1e-13)
    zeros = sp.csr_matrix((4, 6))
    np.testing.assert_allclose(a.predict(zeros), a.predict(np.zeros((4, 6))), rtol=1e-15)


def test_validation_split_and_validation_data_take_sparse_rows():
    X, y = sparse_problem()
    a, b = network(), network()
    ha = a.fit(X, y, epochs=2, batch_size=32, validation_split=0.25)
    hb = b.fit(X.toarray(), y, epochs=2, batch_size=32, validation_split=0.25)
    np.testing.assert_allclose(ha.val_loss, hb.val_loss, rtol=1e-12)
    assert_models_equal(a, b, 1e-12)
    c = network()
    hc = c.fit(X.toarray(), y, epochs=1, validation_data=(X[:50], y[:50]))
    assert np.isfinite(hc.val_loss).all()


def test_predict_in_several_chunks_and_after_a_dense_fit(monkeypatch):
    monkeypatch.setattr("fastbp.plan.PREDICT_WORKSPACE_ELEMENTS", 1 << 12)
    X, y = sparse_problem(rows=1000, features=80)
    model = network(features=80)
    model.fit(X.toarray(), y, epochs=1)
    assert model._plan.predict_rows(1000, sparse=True) < 1000
    np.testing.assert_allclose(model.predict(X), model.predict(X.toarray()), rtol=1e-13)


def test_the_workspace_holds_no_dense_batch_for_sparse_input():
    """50,000 features at batch 200 would be 40 MB of gathered float32 batch."""
    X = sp.random(300, 50_000, density=0.002, format="csr", random_state=0, dtype=np.float32)
    y = np.arange(300) % 3
    model = fb.Sequential([fb.Dense(50_000, 16, "relu"), fb.Dense(16, 3)],
                          loss="cross_entropy", seed=0)
    model.fit(X, y, epochs=1, batch_size=200)
    model.predict(X)
    assert model._plan.workspace.nbytes < 200 * 1000 * 4


def test_the_input_is_not_densified_or_copied_when_canonical():
    X, _ = sparse_problem()
    rows = check_sparse_X(X, np.float64)
    assert isinstance(rows, SparseRows)
    assert np.shares_memory(rows.data, X.data) and np.shares_memory(rows.indices, X.indices)
    np.testing.assert_array_equal(rows.toarray(), X.toarray())
    np.testing.assert_array_equal(rows.take(np.array([5, 2, 5])).toarray(),
                                  X.toarray()[[5, 2, 5]])


def test_sparse_input_needs_a_dense_first_layer():
    X, y = sparse_problem()
    model = fb.Sequential([fb.Dropout(0.1), fb.Dense(57, 5)], loss="cross_entropy")
    with pytest.raises(ValueError, match="sparse input needs a Dense first layer.*Dropout"):
        model.fit(X, y)
    with pytest.raises(ValueError, match="Dense first layer"):
        model.predict(X)
    norm_first = fb.Sequential([fb.LayerNorm(57), fb.Dense(57, 5)], loss="cross_entropy")
    with pytest.raises(ValueError, match="LayerNorm"):
        norm_first.gradients(X, y)
    model = fb.Sequential([fb.Dropout(0.0), fb.Dense(57, 5)], loss="cross_entropy")
    model.fit(X, y, epochs=1)  # a dropout of rate 0 is no op: the first op is Dense


def test_bad_sparse_input_is_named():
    X, y = sparse_problem()
    model = network()
    with pytest.raises(ValueError, match="X has 56 features, but the model expects 57"):
        model.fit(X[:, :56], y)
    bad = X.copy()
    bad.data[3] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        model.fit(bad, y)
    with pytest.raises(ValueError, match="validation_data\\[0\\] contains NaN"):
        model.fit(X, y, validation_data=(bad, y))
    with pytest.raises(TypeError, match="real numbers"):
        model.predict(X.astype(np.complex128))
    with pytest.raises(ValueError, match="0 samples"):
        model.predict(X[:0])


def test_corrupt_csr_reaching_the_core_raises_instead_of_reading_out_of_bounds():
    X, y = sparse_problem(rows=20, features=10)
    model = fb.Sequential([fb.Dense(10, 3)], loss="mse", dtype="float64", seed=0)
    out = np.empty((20, 3))
    rows = check_sparse_X(X, np.float64)
    corrupt = [
        SparseRows(rows.indptr, np.where(rows.indices == rows.indices[0], 10,
                                         rows.indices).astype(np.int32), rows.data, rows.shape),
        SparseRows(rows.indptr[::-1].copy(), rows.indices, rows.data, rows.shape),
        SparseRows(rows.indptr + 1, rows.indices, rows.data, rows.shape),
        SparseRows(rows.indptr[:-1].copy(), rows.indices, rows.data, rows.shape),
    ]
    model._plan.ensure_capacity(20, sparse=True)
    for bad in corrupt:
        with pytest.raises(ValueError, match="CSR"):
            core.forward(model._plan, bad, out, True)


def test_distributed_fit_refuses_sparse_shards():
    pytest.importorskip("mpi4py")
    from fastbp.distributed import _check_local
    X, y = sparse_problem()
    with pytest.raises(TypeError, match="dense shards"):
        _check_local(network(), X, y, 1, 32, None, 0, None, None, 0.0, None, None, None, None)

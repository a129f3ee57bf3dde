"""The compiled entry points of data-parallel training, in one process (no MPI needed):
a batch's rows split between "ranks" in any way, each part's shard_gradients summed, is the
batch's gradient (the gradients entry, itself checked against finite differences); and
apply_step from it makes train_step's update."""
import copy

import numpy as np
import pytest

import fastbp as fb
from fastbp._native import core

N_ROWS, BATCH = 23, 11


def network(dropout=0.0, seed=3):
    layers = [fb.Dense(5, 9, activation="tanh"), fb.Dropout(dropout),
              fb.Dense(9, 7, activation="relu"), fb.Dense(7, 4)]
    return fb.Sequential(layers, loss="cross_entropy", dtype="float64", seed=seed, threads=1)


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N_ROWS, 5)), rng.integers(0, 4, size=N_ROWS)


def split_sum(model, X, labels, batch_rows, weights, dropout_step, parts):
    """Σ over ``parts`` (each: (rows of X, their batch positions)) of shard_gradients."""
    plan = model._plan
    plan.ensure_capacity(batch_rows)
    total, loss = np.zeros(plan.n_params), 0.0
    totals = np.zeros(2)
    empty = np.zeros((0, 0))
    for rows, positions in parts:
        rows = np.asarray(rows, dtype=np.intp)
        positions = np.asarray(positions, dtype=np.intp)
        core.shard_gradients(plan, X, empty, labels, rows, positions, 0, len(rows),
                             batch_rows, totals, weights, dropout_step)
        total += plan.grads
        loss += totals[0]
    return total, loss / batch_rows


@pytest.mark.parametrize("dropout, weighted", [(0.0, False), (0.4, False), (0.4, True)])
def test_split_rows_sum_to_the_batch_gradient(dropout, weighted):
    """A batch of BATCH rows (X's rows `batch`, in that order) split into three parts of
    scattered positions, one empty: the parts' sum is the whole batch's gradient, dropout
    masks and sample weights included (float64, rtol 1e-12)."""
    model = network(dropout)
    X, labels = data()
    weights = np.random.default_rng(1).uniform(0.2, 2, N_ROWS) if weighted else None
    batch = np.random.default_rng(2).permutation(N_ROWS)[:BATCH]
    step = 5 if dropout else -1
    whole_loss, _ = model.gradients(X[batch], labels[batch], dropout_step=step if dropout else None,
                                 sample_weight=None if weights is None else weights[batch])
    whole = model._plan.grads.copy()
    positions = np.random.default_rng(4).permutation(BATCH)
    parts = [(batch[positions[:3]], positions[:3]), ([], []),
             (batch[positions[3:]], positions[3:])]
    total, loss = split_sum(model, X, labels, BATCH, weights, step, parts)
    np.testing.assert_allclose(total, whole, rtol=1e-12, atol=1e-15)
    assert loss == pytest.approx(whole_loss, rel=1e-12)


@pytest.mark.parametrize("optimizer", [fb.SGD(lr=0.1, momentum=0.9, weight_decay=0.01),
                                       fb.Adam(lr=0.01), fb.SGD(lr=0.3, clip_norm=0.1)],
                         ids=["sgd", "adam", "clip"])
def test_apply_step_makes_train_steps_update(optimizer):
    """shard_gradients over all rows, then apply_step, three times: train_step's
    parameters and optimizer state (momentum and decay, Adam's bias correction, clipping)."""
    X, labels = data()
    ours, theirs = network(), network()
    ours_optimizer, theirs_optimizer = copy.deepcopy(optimizer), copy.deepcopy(optimizer)
    ours._use_optimizer(ours_optimizer)
    ours._plan.ensure_capacity(N_ROWS)
    bounds, totals, every_row = np.full(3, -1.0), np.zeros(2), np.arange(N_ROWS)
    for step in range(1, 4):
        core.shard_gradients(ours._plan, X, np.zeros((0, 0)), labels, every_row, every_row,
                             0, N_ROWS, N_ROWS, totals)
        assert core.apply_step(ours._plan, ours_optimizer, totals, optimizer.lr, step,
                               bounds) == core.CODES["STATUS_OK"]
        theirs.train_step(X, labels, optimizer=theirs_optimizer)
    np.testing.assert_allclose(ours.parameters, theirs.parameters, rtol=1e-12)
    np.testing.assert_allclose(ours._plan.state, theirs._plan.state, rtol=1e-12)


def test_a_non_finite_loss_is_not_applied():
    model = network()
    model._use_optimizer(fb.SGD(lr=0.1))
    before = model.parameters.copy()
    status = core.apply_step(model._plan, model._optimizer, np.array([np.nan, 0.0]), 0.1, 1,
                             np.full(3, -1.0))
    assert status == core.CODES["STATUS_NONFINITE_LOSS"]
    np.testing.assert_array_equal(model.parameters, before)


@pytest.mark.parametrize("change, match", [
    (dict(rows=[0, 1], positions=[0]), "same length"),
    (dict(rows=[0, N_ROWS], positions=[0, 1]), "outside X"),
    (dict(rows=[0, 1], positions=[0, BATCH]), "outside X"),
    (dict(first=1, last=0), "not a range"),
    (dict(batch_rows=1), "batch_rows"),
])
def test_shard_gradients_refuses_bad_arguments(change, match):
    model = network()
    X, labels = data()
    model._plan.ensure_capacity(BATCH)
    args = dict(rows=[0, 1], positions=[3, 4], first=0, last=None, batch_rows=BATCH)
    args.update(change)
    rows = np.asarray(args["rows"], dtype=np.intp)
    last = len(rows) if args["last"] is None else args["last"]
    with pytest.raises(ValueError, match=match):
        core.shard_gradients(model._plan, X, np.zeros((0, 0)), labels, rows,
                             np.asarray(args["positions"], dtype=np.intp), args["first"],
                             last, args["batch_rows"], np.zeros(2))


def test_shard_gradients_refuses_batchnorm():
    model = fb.mlp([5, 6, 4], loss="cross_entropy", dtype="float64", norm="batch", seed=0)
    X, labels = data()
    model._plan.ensure_capacity(BATCH)
    with pytest.raises(ValueError, match="BatchNorm"):
        core.shard_gradients(model._plan, X, np.zeros((0, 0)), labels,
                             np.arange(3), np.arange(3), 0, 3, BATCH, np.zeros(2))


def test_shard_rows_cuts_the_global_order_into_each_ranks_part():
    pytest.importorskip("mpi4py")  # fastbp.distributed raises ImportError, not a skip, without it
    from fastbp import distributed
    order = np.random.default_rng(0).permutation(17)
    offsets = [0, 5, 11, 17]
    seen = np.full(17, -1)
    for rank in range(3):
        rows, positions, starts = distributed.shard_rows(order, 17, offsets[rank],
                                                         offsets[rank + 1], 4)
        assert len(starts) == 6 and starts[0] == 0 and starts[-1] == len(rows)
        for k in range(5):
            for i in range(starts[k], starts[k + 1]):
                seen[4 * k + positions[i]] = rows[i] + offsets[rank]
    np.testing.assert_array_equal(seen, order)


# ---------------------------------------------------------------- the ranks' model check

def test_model_checksum_sees_one_ulp_in_parameters_state_or_statistics():
    """fit(comm=...) refuses ranks whose models differ; the checksum it compares must change
    with any one value, wherever it sits (odd lengths: not whole 8-byte words or blocks)."""
    from fastbp._collective import model_checksum
    model = fb.Sequential([fb.Dense(5, 9, "relu"), fb.BatchNorm(9), fb.Dense(9, 3)],
                          loss="cross_entropy", dtype="float32", seed=0, threads=1)
    X, y = data()
    model.fit(X.astype(np.float32), y % 3, epochs=1, batch_size=8, optimizer=fb.Adam())
    plan = model._plan
    reference = model_checksum(model)
    assert model_checksum(copy.deepcopy(model)) == reference
    for name in ("params", "state", "stats"):
        array = getattr(plan, name)
        for i in (0, array.size // 2, array.size - 1):
            old = array[i]
            array[i] = np.nextafter(old, np.float32(np.inf))
            assert model_checksum(model) != reference, (name, i)
            array[i] = old
    assert model_checksum(model) == reference


def test_fingerprint_sees_one_value_changed_or_moved_between_blocks():
    from fastbp._collective import _fingerprint
    values = np.random.default_rng(0).normal(size=1001)  # 15 blocks of 64 words, and a tail
    reference = _fingerprint(values)
    for i in (0, 500, 959, 960, 1000):
        changed = values.copy()
        changed[i] = np.nextafter(changed[i], np.inf)
        assert _fingerprint(changed) != reference, i
    moved = values.copy()
    moved[[3, 700]] = moved[[700, 3]]
    assert _fingerprint(moved) != reference
    assert _fingerprint(values.astype(np.float32)) != _fingerprint(values.astype(np.float32)[:-1])

"""fit's row order: drawn in C (fastbp.training.epoch_order) from one draw of the model's
seeded generator per epoch."""
import numpy as np
import pytest
from scipy import stats

import fastbp as fb
from fastbp import _native
from fastbp.training import epoch_order


@pytest.fixture(params=_native.available())
def core(request):
    return _native.load(request.param)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 1000, 8193])
def test_order_is_a_permutation(core, n):
    order = np.full(n, -1, dtype=np.intp)
    core.shuffled_order(order, 12345)
    assert sorted(order.tolist()) == list(range(n))


def test_order_is_repeatable_and_seed_dependent(core):
    a, b, c = (np.empty(500, dtype=np.intp) for _ in range(3))
    core.shuffled_order(a, 7)
    core.shuffled_order(b, 7)
    core.shuffled_order(c, 8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_order_is_fixed_across_builds_and_platforms():
    """The stream is plain 64-bit integer arithmetic, so a seed's order never changes:
    saved runs and tests that replay fit's shuffling stay valid."""
    orders = []
    for name in _native.available():
        order = np.empty(8, dtype=np.intp)
        _native.load(name).shuffled_order(order, 2**64 - 1)
        orders.append(order.tolist())
    assert all(order == orders[0] for order in orders)
    assert sorted(orders[0]) == list(range(8))


def test_positions_are_uniform(core):
    """Every element lands in every position equally often (chi-squared over 40,000
    shuffles of 6 elements; a biased bounded draw or an off-by-one swap range fails)."""
    n, trials = 6, 40000
    counts = np.zeros((n, n))
    order = np.empty(n, dtype=np.intp)
    for seed in range(trials):
        core.shuffled_order(order, seed * 0x9E3779B97F4A7C15 % 2**64)
        counts[order, np.arange(n)] += 1
    assert stats.chisquare(counts.ravel()).pvalue > 1e-4
    # all 720 orders of 6 appear about equally often too
    perms = {}
    for seed in range(trials):
        core.shuffled_order(order, (seed + trials) * 0xBF58476D1CE4E5B9 % 2**64)
        perms[tuple(order)] = perms.get(tuple(order), 0) + 1
    assert len(perms) == 720
    assert stats.chisquare(list(perms.values())).pvalue > 1e-4


def test_epoch_order_takes_one_draw_from_the_generator():
    rng, twin = np.random.default_rng(3), np.random.default_rng(3)
    order = epoch_order(rng, 50)
    expected = np.empty(50, dtype=np.intp)
    _native.core.shuffled_order(expected, twin.bit_generator.random_raw())
    np.testing.assert_array_equal(order, expected)
    assert rng.bit_generator.state == twin.bit_generator.state


def test_fit_shuffles_each_epoch_differently_and_repeatably():
    X = np.random.default_rng(0).normal(size=(64, 5))
    y = np.arange(64) % 3

    def trained(shuffle):
        model = fb.mlp([5, 4, 3], loss="cross_entropy", seed=11, dtype="float64")
        model.fit(X, y, epochs=3, batch_size=8, shuffle=shuffle)
        return model.parameters

    np.testing.assert_array_equal(trained(True), trained(True))
    assert not np.array_equal(trained(True), trained(False))

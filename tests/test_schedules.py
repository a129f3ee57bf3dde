"""Learning-rate schedules: hand-computed sequences, torch's schedulers as the oracle where
they exist, partial runs, JSON round trips, and refusals of bad settings."""
import dataclasses
import doctest
import json
import math

import numpy as np
import pytest

from fastbp import schedules as sch
from fastbp.schedules import (Constant, CosineDecay, ExponentialDecay, InverseScaling,
                              ReduceOnPlateau, StepDecay, Warmup, from_config)

T = np.arange(10, dtype=np.int64)

# Each schedule with its factors at t = 0..9, computed by hand from the documented formula.
HAND = [
    (Constant(), [1.0] * 10),
    (StepDecay(3, gamma=0.5), [1, 1, 1, .5, .5, .5, .25, .25, .25, .125]),
    (StepDecay(1), [10.0 ** -k for k in range(10)]),
    (ExponentialDecay(0.5), [0.5 ** k for k in range(10)]),
    (ExponentialDecay(1.0), [1.0] * 10),
    (InverseScaling(), [1 / math.sqrt(k + 1) for k in range(10)]),
    (InverseScaling(power=1.0), [1 / (k + 1) for k in range(10)]),
    (InverseScaling(power=0.0), [1.0] * 10),
    (CosineDecay(4), [1, (1 + math.sqrt(.5)) / 2, .5, (1 - math.sqrt(.5)) / 2, 0, 0, 0, 0, 0, 0]),
    (CosineDecay(2, final_factor=0.2), [1, .6, .2, .2, .2, .2, .2, .2, .2, .2]),
    (Warmup(4), [.2, .4, .6, .8, 1, 1, 1, 1, 1, 1]),  # starts at 1 / (length + 1)
    (Warmup(4, start_factor=0.0), [0, .25, .5, .75, 1, 1, 1, 1, 1, 1]),
    (Warmup(2, start_factor=0.5), [.5, .75, 1, 1, 1, 1, 1, 1, 1, 1]),
    (Warmup(3, then=StepDecay(2, gamma=0.1)),
     [.25, .5, .75, 1, 1, .1, .1, .01, .01, .001]),
    (Warmup(2, then=CosineDecay(4, final_factor=0.1, per="step"), start_factor=0.2),
     [.2, .6, 1, .1 + .9 * (1 + math.sqrt(.5)) / 2, .55, .1 + .9 * (1 - math.sqrt(.5)) / 2,
      .1, .1, .1, .1]),
    (ReduceOnPlateau(), [1.0] * 10),
]


@pytest.mark.parametrize("schedule,expected", HAND, ids=[repr(s) for s, _ in HAND])
def test_factor_follows_the_documented_formula(schedule, expected):
    factor = schedule.factor(T)
    assert factor.dtype == np.float64 and factor.shape == (10,)
    np.testing.assert_allclose(factor, expected, rtol=1e-14, atol=1e-15)
    assert np.all((factor >= 0) & (factor <= 1))


@pytest.mark.parametrize("schedule,expected", HAND, ids=[repr(s) for s, _ in HAND])
def test_rates_count_epochs_or_steps_as_per_says(schedule, expected):
    lr = 0.3
    steps = np.arange(40, 50, dtype=np.int64)  # epoch 4 of 10 steps each
    rates = schedule.rates(lr, 4, steps)
    assert rates.dtype == np.float64 and rates.shape == steps.shape
    assert rates.flags.c_contiguous and rates.flags.writeable
    if schedule.per == "epoch":
        np.testing.assert_array_equal(rates, np.full(10, lr * schedule.factor(4)))
    else:
        np.testing.assert_array_equal(rates, lr * schedule.factor(steps))
    all_steps = schedule.rates(lr, 0, T)  # t = steps 0..9, or epoch 0 for each
    np.testing.assert_allclose(all_steps, lr * (np.array(expected) if schedule.per == "step"
                                                else np.full(10, expected[0])), rtol=1e-14)


def test_same_decay_per_epoch_and_per_step():
    by_epoch, by_step = ExponentialDecay(0.5), ExponentialDecay(0.5, per="step")
    steps = np.arange(6, 9)
    np.testing.assert_array_equal(by_epoch.rates(1.0, 2, steps), [0.25, 0.25, 0.25])
    np.testing.assert_array_equal(by_step.rates(1.0, 2, steps), [0.5 ** 6, 0.5 ** 7, 0.5 ** 8])


STATELESS = [s for s, _ in HAND if not isinstance(s, ReduceOnPlateau)] + [
    InverseScaling(per="epoch"), StepDecay(7, gamma=0.3, per="step"),
    CosineDecay(50, per="step"), Warmup(13, ExponentialDecay(0.99, per="step"))]


@pytest.mark.parametrize("schedule", STATELESS, ids=repr)
def test_rates_of_a_partial_run_equal_that_slice_of_the_full_run(schedule):
    steps = np.arange(200, 300, dtype=np.int64)
    full = schedule.rates(0.05, 3, steps)
    for start, stop in [(0, 17), (17, 64), (64, 100), (99, 100)]:
        np.testing.assert_array_equal(schedule.rates(0.05, 3, steps[start:stop]), full[start:stop])
    assert schedule.rates(0.05, 3, steps[:0]).shape == (0,)


def test_warmup_then_cosine_per_step():
    schedule = Warmup(10, then=CosineDecay(90, final_factor=0.01, per="step"))
    assert schedule.per == "step"
    factor = schedule.factor(np.arange(120))
    np.testing.assert_allclose(factor[:10], np.arange(1, 11) / 11)
    assert factor[10] == 1.0  # the decay starts at its own t = 0 when the warm-up ends
    np.testing.assert_allclose(factor[55], 0.01 + 0.99 * 0.5, rtol=1e-14)  # half-way
    assert np.all(np.diff(factor[10:100]) < 0) and np.all(factor[100:] == 0.01)
    np.testing.assert_array_equal(factor[10:], CosineDecay(90, 0.01, per="step").factor(np.arange(110)))


def test_warmup_takes_the_unit_of_what_follows():
    assert Warmup(3).per == "epoch"
    assert Warmup(3, per="step").per == "step"
    assert Warmup(3, then=InverseScaling()).per == "step"
    assert Warmup(3, then=InverseScaling(), per="step").per == "step"
    assert Warmup(3, then=Constant(), per="step") == Warmup(3, per="step")  # Constant is None
    with pytest.raises(ValueError, match="per='epoch' differs from then.per='step'"):
        Warmup(3, then=InverseScaling(), per="epoch")


# ---------------------------------------------------------------- ReduceOnPlateau by hand
def factors_after(plateau, losses):
    out = []
    for loss in losses:
        plateau.end_epoch(loss)
        out.append(plateau.current_factor)
    return out


def test_plateau_reduces_after_more_than_patience_bad_epochs():
    plateau = ReduceOnPlateau(factor=0.5, patience=2)
    assert factors_after(plateau, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]) == [1, 1, 1, .5, .5, .5, .25]
    assert plateau.best == 1.0


def test_plateau_improvement_clears_the_count():
    plateau = ReduceOnPlateau(factor=0.5, patience=1)
    assert factors_after(plateau, [1.0, 1.0, 0.5, 0.6, 0.4, 0.4, 0.4]) == [1, 1, 1, 1, 1, 1, .5]
    assert plateau.best == 0.4


def test_plateau_threshold_is_relative():
    plateau = ReduceOnPlateau(patience=0, threshold=0.01)
    plateau.end_epoch(2.0)
    plateau.end_epoch(1.99)  # 0.5% better: not enough, so a bad epoch and a reduction
    assert plateau.current_factor == pytest.approx(0.1) and plateau.best == 2.0
    plateau.end_epoch(1.97)  # 1.5% better than the best
    assert plateau.best == 1.97 and plateau.current_factor == pytest.approx(0.1)


def test_plateau_cooldown_ignores_bad_epochs():
    plateau = ReduceOnPlateau(factor=0.1, patience=0, cooldown=2)
    assert factors_after(plateau, [1.0] * 5) == pytest.approx([1, .1, .1, .1, .01])
    assert plateau.cooldown_counter == 2


def test_plateau_stops_at_min_factor():
    plateau = ReduceOnPlateau(factor=0.1, patience=0, min_factor=0.05)
    assert factors_after(plateau, [1.0] * 4) == pytest.approx([1, .1, .05, .05])
    np.testing.assert_array_equal(plateau.rates(0.2, 9, np.arange(3)), np.full(3, 0.2 * 0.05))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_plateau_counts_non_finite_losses_as_no_improvement(bad):
    plateau = ReduceOnPlateau(factor=0.5, patience=0)
    plateau.end_epoch(bad)  # before any finite loss: still a bad epoch
    assert plateau.best is None and plateau.current_factor == 0.5
    plateau.end_epoch(1.0)
    plateau.end_epoch(bad)
    assert plateau.best == 1.0 and plateau.current_factor == 0.25


def test_plateau_negative_losses_need_a_real_improvement():
    plateau = ReduceOnPlateau(patience=0, threshold=0.1)
    plateau.end_epoch(-1.0)
    plateau.end_epoch(-1.05)  # torch's best * (1 - threshold) would call this better
    assert plateau.best == -1.0 and plateau.current_factor == pytest.approx(0.1)
    plateau.end_epoch(-1.2)
    assert plateau.best == -1.2


def test_plateau_accepts_numpy_scalars_and_refuses_other_types():
    plateau = ReduceOnPlateau()
    plateau.end_epoch(np.float32(0.5))
    plateau.end_epoch(np.array(0.25))
    assert plateau.best == 0.25
    for bad in ["0.1", True, None, [0.1]]:
        with pytest.raises(TypeError, match="monitored must be a real number"):
            plateau.end_epoch(bad)


def test_plateau_rechecks_settings_changed_after_construction():
    plateau = ReduceOnPlateau()
    plateau.patience = -1
    with pytest.raises(ValueError, match="patience must be >= 0"):
        plateau.end_epoch(1.0)


def test_plateau_reset_and_repr():
    plateau = ReduceOnPlateau(factor=0.5, patience=0)
    assert repr(plateau) == ("ReduceOnPlateau(factor=0.5, patience=0, threshold=0.0001, "
                             "cooldown=0, min_factor=0.0)")
    factors_after(plateau, [1.0, 2.0])
    assert "[current_factor=0.5, best=1.0, num_bad_epochs=0, cooldown_counter=0]" in repr(plateau)
    plateau.reset()
    assert plateau == ReduceOnPlateau(factor=0.5, patience=0)


def test_stateless_schedules_ignore_end_epoch_and_are_frozen():
    schedule = StepDecay(2)
    schedule.end_epoch(1.0)
    schedule.reset()
    assert schedule == StepDecay(2) and hash(schedule) == hash(StepDecay(2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.gamma = 0.5


# ---------------------------------------------------------------- torch as the oracle
def torch_lrs(make, n, metrics=None):
    """The rate torch's scheduler gives each of ``n`` epochs, from lr = 1."""
    torch = pytest.importorskip("torch")
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = make(torch.optim.lr_scheduler, optimizer)
    lrs = []
    for epoch in range(n):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step(*([] if metrics is None else [metrics[epoch]]))
    return np.array(lrs)


TORCH = [
    (StepDecay(3, gamma=0.5), lambda s, o: s.StepLR(o, step_size=3, gamma=0.5), 30),
    (StepDecay(1, gamma=0.9), lambda s, o: s.StepLR(o, step_size=1, gamma=0.9), 30),
    (ExponentialDecay(0.95), lambda s, o: s.ExponentialLR(o, gamma=0.95), 50),
    (CosineDecay(20), lambda s, o: s.CosineAnnealingLR(o, T_max=20), 21),
    (CosineDecay(17, final_factor=0.1), lambda s, o: s.CosineAnnealingLR(o, T_max=17, eta_min=0.1), 18),
    (Warmup(5, start_factor=0.2), lambda s, o: s.LinearLR(o, start_factor=0.2, total_iters=5), 12),
]


@pytest.mark.parametrize("schedule,make,n", TORCH, ids=[repr(s) for s, _, _ in TORCH])
def test_matches_torch_scheduler(schedule, make, n):
    expected = torch_lrs(make, n)
    np.testing.assert_allclose(schedule.factor(np.arange(n)), expected, rtol=1e-12, atol=1e-15)


def plateau_losses(seed, n=80):
    """Decreasing losses with noise, flat stretches, exact repeats, tiny improvements and
    non-finite values."""
    rng = np.random.default_rng(seed)
    losses = np.maximum(1.0 / (1.0 + 0.1 * np.arange(n)) + 0.02 * rng.normal(size=n), 0.01)
    losses[20:35] = losses[19]
    losses[40:45] = losses[39] * (1 - 5e-5)  # better, but by less than threshold=1e-4
    losses[50] = np.nan
    losses[60] = np.inf
    return losses


@pytest.mark.parametrize("settings", [
    dict(factor=0.1, patience=10, threshold=1e-4, cooldown=0, min_factor=0.0),
    dict(factor=0.5, patience=0, threshold=1e-4, cooldown=0, min_factor=0.0),
    dict(factor=0.5, patience=2, threshold=1e-2, cooldown=3, min_factor=0.0),
    dict(factor=0.3, patience=1, threshold=0.0, cooldown=1, min_factor=0.02),
    dict(factor=0.7, patience=3, threshold=0.05, cooldown=0, min_factor=0.1),
], ids=str)
@pytest.mark.parametrize("seed", [0, 1])
def test_plateau_matches_torch(settings, seed):
    losses = plateau_losses(seed)
    torch_settings = {k: v for k, v in settings.items() if k != "min_factor"}
    # eps=0: torch skips rate changes below eps, fastbp never does (documented).
    lrs = torch_lrs(lambda s, o: s.ReduceLROnPlateau(o, mode="min", threshold_mode="rel", eps=0.0,
                                                    min_lr=settings["min_factor"], **torch_settings),
                    len(losses) + 1, metrics=list(losses) + [0.0])
    plateau = ReduceOnPlateau(**settings)
    ours = [plateau.current_factor] + factors_after(plateau, losses)
    np.testing.assert_array_equal(ours, lrs)
    assert len(set(ours)) > 1  # the sequence did reduce


# ---------------------------------------------------------------- configs
CONFIGURED = STATELESS + [ReduceOnPlateau(factor=0.5, patience=3, threshold=0.01, cooldown=2,
                                          min_factor=0.001)]


@pytest.mark.parametrize("schedule", CONFIGURED, ids=repr)
def test_config_round_trips_through_json(schedule):
    config = schedule.to_config()
    assert config["name"] == schedule.name
    text = json.dumps(config, allow_nan=False)
    copy = from_config(json.loads(text))
    assert copy == schedule and type(copy) is type(schedule) and repr(copy) == repr(schedule)
    np.testing.assert_array_equal(copy.rates(0.1, 5, np.arange(500, 600)),
                                  schedule.rates(0.1, 5, np.arange(500, 600)))


def test_config_holds_every_parameter():
    assert StepDecay(4, gamma=0.5, per="step").to_config() == {
        "name": "step_decay", "step_size": 4, "gamma": 0.5, "per": "step"}
    assert Warmup(2, CosineDecay(8)).to_config() == {
        "name": "warmup", "length": 2, "start_factor": 1 / 3, "per": "epoch",
        "then": {"name": "cosine_decay", "period": 8, "final_factor": 0.0, "per": "epoch"}}
    assert ReduceOnPlateau().to_config() == {
        "name": "reduce_on_plateau", "factor": 0.1, "patience": 10, "threshold": 1e-4,
        "cooldown": 0, "min_factor": 0.0,
        "state": {"current_factor": 1.0, "best": None, "num_bad_epochs": 0, "cooldown_counter": 0}}


def test_plateau_resumes_exactly_from_its_config():
    losses = plateau_losses(3)
    straight = ReduceOnPlateau(factor=0.5, patience=2, cooldown=1)
    factors_after(straight, losses[:30])
    resumed = from_config(json.loads(json.dumps(straight.to_config())))
    assert resumed == straight and resumed.num_bad_epochs == straight.num_bad_epochs
    assert factors_after(resumed, losses[30:]) == factors_after(straight, losses[30:])


BAD_CONFIGS = [
    ("not a dict", TypeError, "config must be a dict"),
    ({"step_size": 2}, ValueError, r"schedule name None is not known; valid names: 'constant', "
                                   r"'step_decay', 'exponential_decay', 'inverse_scaling', "
                                   r"'cosine_decay', 'warmup', 'reduce_on_plateau'"),
    ({"name": "one_cycle"}, ValueError, "schedule name 'one_cycle' is not known; valid names"),
    ({"name": "step_decay"}, ValueError, r"lacks \['step_size'\]"),
    ({"name": "step_decay", "step_size": 2, "gama": 0.5}, ValueError, r"unexpected keys \['gama'\]"),
    ({"name": "step_decay", "step_size": 0}, ValueError, "step_size must be >= 1"),
    ({"name": "exponential_decay", "gamma": "0.9"}, TypeError, "gamma must be a real number"),
    ({"name": "constant", "state": {}}, ValueError, r"unexpected keys \['state'\]"),
    ({"name": "warmup", "length": 2, "then": {"name": "nope"}}, ValueError, "'nope' is not known"),
    ({"name": "warmup", "length": 2, "then": {"name": "reduce_on_plateau"}}, ValueError,
     "cannot follow a warm-up"),
    ({"name": "reduce_on_plateau", "state": {"current_factor": 1.0}}, ValueError,
     "state must be a dict with keys"),
    ({"name": "reduce_on_plateau", "state": {"current_factor": 1.5, "best": None,
                                              "num_bad_epochs": 0, "cooldown_counter": 0}},
     ValueError, r"state\['current_factor'\] must be finite and >= 0.0 and <= 1.0"),
    ({"name": "reduce_on_plateau", "patience": 2, "state": {
        "current_factor": 1.0, "best": 0.5, "num_bad_epochs": 3, "cooldown_counter": 0}},
     ValueError, r"state\['num_bad_epochs'\] must be <= patience=2"),
    ({"name": "reduce_on_plateau", "state": {"current_factor": 1.0, "best": None,
                                              "num_bad_epochs": 0, "cooldown_counter": 1}},
     ValueError, r"state\['cooldown_counter'\] must be <= cooldown=0"),
    ({"name": "reduce_on_plateau", "state": {"current_factor": 1.0, "best": "low",
                                              "num_bad_epochs": 0, "cooldown_counter": 0}},
     TypeError, r"state\['best'\] must be a real number"),
]


@pytest.mark.parametrize("config,error,match", BAD_CONFIGS, ids=lambda v: str(v)[:40])
def test_from_config_refuses_bad_configs(config, error, match):
    with pytest.raises(error, match=match):
        from_config(config)


# ---------------------------------------------------------------- bad arguments
BAD_ARGUMENTS = [
    (lambda: StepDecay(0), ValueError, "step_size must be >= 1"),
    (lambda: StepDecay(2.0), TypeError, "step_size must be an integer"),
    (lambda: StepDecay(2, gamma=0.0), ValueError, "gamma must be finite and > 0.0 and <= 1.0"),
    (lambda: StepDecay(2, gamma=1.5), ValueError, "gamma must be finite"),
    (lambda: StepDecay(2, gamma=math.nan), ValueError, "gamma must be finite"),
    (lambda: StepDecay(2, per="batch"), ValueError, "per must be 'epoch' or 'step', got 'batch'"),
    (lambda: ExponentialDecay(-0.1), ValueError, "gamma must be finite"),
    (lambda: ExponentialDecay("0.9"), TypeError, "gamma must be a real number"),
    (lambda: ExponentialDecay(0.9, per=None), ValueError, "per must be"),
    (lambda: InverseScaling(power=-1.0), ValueError, "power must be finite and >= 0"),
    (lambda: InverseScaling(power=math.inf), ValueError, "power must be finite"),
    (lambda: CosineDecay(0), ValueError, "period must be >= 1"),
    (lambda: CosineDecay(10, final_factor=1.5), ValueError, "final_factor must be finite"),
    (lambda: CosineDecay(10, per="steps"), ValueError, "per must be"),
    (lambda: Warmup(0), ValueError, "length must be >= 1"),
    (lambda: Warmup(True), TypeError, "length must be an integer"),
    (lambda: Warmup(3, then="cosine"), TypeError, "then must be a fastbp schedule or None"),
    (lambda: Warmup(3, then=ReduceOnPlateau()), ValueError, "cannot follow a warm-up"),
    (lambda: Warmup(3, then=Warmup(2)), ValueError, "cannot follow a warm-up"),
    (lambda: Warmup(3, start_factor=-0.1), ValueError, "start_factor must be finite"),
    (lambda: Warmup(3, per="day"), ValueError, "per must be"),
    (lambda: ReduceOnPlateau(factor=1.0), ValueError, "factor must be finite and > 0.0 and < 1.0"),
    (lambda: ReduceOnPlateau(factor=0.0), ValueError, "factor must be finite"),
    (lambda: ReduceOnPlateau(patience=-1), ValueError, "patience must be >= 0"),
    (lambda: ReduceOnPlateau(patience=1.5), TypeError, "patience must be an integer"),
    (lambda: ReduceOnPlateau(threshold=1.0), ValueError, "threshold must be finite"),
    (lambda: ReduceOnPlateau(cooldown=-2), ValueError, "cooldown must be >= 0"),
    (lambda: ReduceOnPlateau(min_factor=2.0), ValueError, "min_factor must be finite"),
    (lambda: Constant().rates(0.0, 0, T), ValueError, "lr must be finite and > 0"),
    (lambda: Constant().rates(math.inf, 0, T), ValueError, "lr must be finite"),
    (lambda: Constant().rates(0.1, -1, T), ValueError, "epoch must be >= 0"),
    (lambda: Constant().rates(0.1, 1.0, T), TypeError, "epoch must be an integer"),
    (lambda: Constant().rates(0.1, 0, T.astype(float)), TypeError, "steps must hold integers"),
    (lambda: Constant().rates(0.1, 0, T - 1), ValueError, "steps must hold indices >= 0"),
    (lambda: StepDecay(2).factor([0.5]), TypeError, "t must hold integers"),
    (lambda: StepDecay(2).factor(-3), ValueError, "t must hold indices >= 0"),
]


@pytest.mark.parametrize("call,error,match", BAD_ARGUMENTS, ids=range(len(BAD_ARGUMENTS)))
def test_bad_arguments_raise_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_docstring_examples_hold():
    assert doctest.testmod(sch, extraglobs={"np": np}).failed == 0


def test_module_is_reachable_from_the_package():
    import fastbp
    assert fastbp.schedules is sch

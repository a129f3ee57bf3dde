"""Learning-rate schedules: the rate of every optimizer step, computed ahead with NumPy.

The compiled core runs all the mini-batches of an epoch without returning to Python, so it
cannot ask a schedule for one rate at a time. Before a run of steps (an epoch, or a chunk of
one) the training loop asks for all their rates at once::

    rates = schedule.rates(lr, epoch, steps)    # float64, one rate per entry of steps

Every schedule is ``rate = lr * factor(t)``, where ``lr`` is the optimizer's rate and ``t``
counts either epochs (``per="epoch"``: the rate changes between epochs only) or optimizer
updates since training began (``per="step"``: it changes from batch to batch). Every factor
lies in [0, 1], so a schedule never raises the rate above ``lr``.

The schedules that depend on ``t`` only are frozen dataclasses: a factor is a pure function
of ``t``, so the rates of part of a run equal that part of the whole run's, and one instance
can drive several models. :class:`ReduceOnPlateau` is the one stateful schedule: ``fit``
reports each epoch's monitored loss to :meth:`Schedule.end_epoch`, and the state it keeps is
part of :meth:`Schedule.to_config`, so a saved model resumes exactly. :func:`from_config`
reads a config back (it is what model files store).
"""
import inspect
from dataclasses import dataclass

import numpy as np

from ._schedule_base import Schedule, _check_per, _settle
from .data import check_positive_int, check_real
from .plateau import ReduceOnPlateau

__all__ = ["Schedule", "Constant", "StepDecay", "ExponentialDecay", "InverseScaling",
           "CosineDecay", "Warmup", "ReduceOnPlateau", "from_config"]


@dataclass(frozen=True)
class Constant(Schedule):
    """The optimizer's rate at every step: ``factor(t) = 1`` (the same as no schedule).

    Examples
    --------
    >>> Constant().factor(np.arange(3))
    array([1., 1., 1.])
    """

    name = "constant"

    def _factor(self, t):
        return np.ones(t.shape)


@dataclass(frozen=True)
class StepDecay(Schedule):
    """Multiply the rate by ``gamma`` every ``step_size`` units (``torch.optim.lr_scheduler.StepLR``)::

        factor(t) = gamma ** (t // step_size)

    Parameters
    ----------
    step_size : int
        Units between decays, >= 1.
    gamma : float, default 0.1
        Multiplier at each decay, in (0, 1].
    per : {"epoch", "step"}, default "epoch"
        What ``t`` counts.

    Examples
    --------
    >>> StepDecay(2, gamma=0.5).factor(np.arange(6))
    array([1.  , 1.  , 0.5 , 0.5 , 0.25, 0.25])
    """

    step_size: int
    gamma: float = 0.1
    per: str = "epoch"

    name = "step_decay"

    def __post_init__(self):
        _settle(self, "step_size", check_positive_int(self.step_size, "step_size"))
        _settle(self, "gamma", check_real(self.gamma, "gamma", 0.0, low_inclusive=False, high=1.0))
        _settle(self, "per", _check_per(self.per))

    def _factor(self, t):
        return self.gamma ** (t // self.step_size)


@dataclass(frozen=True)
class ExponentialDecay(Schedule):
    """Multiply the rate by ``gamma`` every unit (``torch.optim.lr_scheduler.ExponentialLR``)::

        factor(t) = gamma ** t

    Parameters
    ----------
    gamma : float
        Multiplier per unit, in (0, 1].
    per : {"epoch", "step"}, default "epoch"
        What ``t`` counts.

    Examples
    --------
    >>> ExponentialDecay(0.5).factor(np.arange(4))
    array([1.   , 0.5  , 0.25 , 0.125])
    """

    gamma: float
    per: str = "epoch"

    name = "exponential_decay"

    def __post_init__(self):
        _settle(self, "gamma", check_real(self.gamma, "gamma", 0.0, low_inclusive=False, high=1.0))
        _settle(self, "per", _check_per(self.per))

    def _factor(self, t):
        return self.gamma ** t


@dataclass(frozen=True)
class InverseScaling(Schedule):
    """Decay as an inverse power of time (scikit-learn's ``learning_rate="invscaling"``)::

        factor(t) = 1 / (t + 1) ** power

    With ``t`` counting updates from 0 this is ``SGDClassifier``'s ``eta0 / t**power_t``
    with its ``t`` counting from 1. (``MLPClassifier`` applies the same form once per epoch
    with ``t`` the number of samples seen.)

    Parameters
    ----------
    power : float, default 0.5
        Exponent, >= 0 (0 keeps the rate constant).
    per : {"epoch", "step"}, default "step"
        What ``t`` counts.

    Examples
    --------
    >>> InverseScaling(power=0.5).factor([0, 3, 8])
    array([1.        , 0.5       , 0.33333333])
    """

    power: float = 0.5
    per: str = "step"

    name = "inverse_scaling"

    def __post_init__(self):
        _settle(self, "power", check_real(self.power, "power", 0.0))
        _settle(self, "per", _check_per(self.per))

    def _factor(self, t):
        return 1.0 / (t + 1.0) ** self.power


@dataclass(frozen=True)
class CosineDecay(Schedule):
    """Half a cosine from 1 down to ``final_factor`` over ``period`` units, then flat
    (Keras ``CosineDecay`` with ``alpha=final_factor``; the first half-period of
    ``torch.optim.lr_scheduler.CosineAnnealingLR`` with ``eta_min = final_factor * lr``)::

        factor(t) = final_factor + (1 - final_factor) * (1 + cos(pi * t / period)) / 2   (t < period)
        factor(t) = final_factor                                                       (t >= period)

    Parameters
    ----------
    period : int
        Units the decay takes, >= 1.
    final_factor : float, default 0.0
        Factor at and after ``t = period``, in [0, 1].
    per : {"epoch", "step"}, default "epoch"
        What ``t`` counts.

    Examples
    --------
    >>> CosineDecay(2, final_factor=0.2).factor(np.arange(4))
    array([1. , 0.6, 0.2, 0.2])
    """

    period: int
    final_factor: float = 0.0
    per: str = "epoch"

    name = "cosine_decay"

    def __post_init__(self):
        _settle(self, "period", check_positive_int(self.period, "period"))
        _settle(self, "final_factor", check_real(self.final_factor, "final_factor", 0.0, high=1.0))
        _settle(self, "per", _check_per(self.per))

    def _factor(self, t):
        progress = np.minimum(t, self.period) / self.period
        final = self.final_factor
        return final + (1.0 - final) * (1.0 + np.cos(np.pi * progress)) / 2.0


@dataclass(frozen=True)
class Warmup(Schedule):
    """Ramp the rate up linearly over ``length`` units, then follow ``then``::

        factor(t) = start_factor + (1 - start_factor) * t / length    (t < length)
        factor(t) = then.factor(t - length)                            (t >= length; 1 if then is None)

    So ``t = 0`` runs at ``start_factor``, the ramp reaches 1 at ``t = length``, and the
    schedule that follows starts from its own ``t = 0`` when the warm-up ends (as Keras's
    ``CosineDecay(warmup_steps=...)``, where the decay begins after the warm-up). Without
    ``then`` the ramp is ``torch.optim.lr_scheduler.LinearLR(start_factor, 1.0, length)``.

    Parameters
    ----------
    length : int
        Units of warm-up, >= 1.
    then : Schedule or None, default None
        What follows the warm-up; None keeps the full rate. Any stateless schedule: not a
        :class:`ReduceOnPlateau` (its factor follows the monitored losses, not ``t``) and
        not another :class:`Warmup` (one ramp at the start; make ``length`` longer instead).
        ``Constant()`` is the same as None and is stored as None.
    start_factor : float or None, default None
        Factor at ``t = 0``, in [0, 1]. None means ``1 / (length + 1)``: unit ``t`` of the
        warm-up then runs at ``(t + 1) / (length + 1)`` of the rate, so the first epoch
        (or step) already trains and the rate rises in equal steps to the full rate at
        ``t = length``. (The default used to be 0, a first unit at rate 0; pass
        ``start_factor=0.0`` for that ramp. Saved schedules keep their value.)
    per : {"epoch", "step"} or None, default None
        The unit of ``length``. A warm-up counts in the unit of the schedule that follows
        it, so with ``then`` this is ``then.per`` (passing a different value is an error);
        without ``then`` it defaults to "epoch".

    Notes
    -----
    With ``start_factor=0`` the whole first unit runs at rate 0 (with ``per="epoch"``, an
    epoch whose updates change nothing), which is why the default starts above 0.

    Examples
    --------
    >>> Warmup(4, then=ExponentialDecay(0.5)).factor(np.arange(7))
    array([0.2 , 0.4 , 0.6 , 0.8 , 1.  , 0.5 , 0.25])
    >>> Warmup(4, start_factor=0.0).factor(np.arange(6))
    array([0.  , 0.25, 0.5 , 0.75, 1.  , 1.  ])
    """

    length: int
    then: Schedule = None
    start_factor: float = None
    per: str = None

    name = "warmup"

    def __post_init__(self):
        _settle(self, "length", check_positive_int(self.length, "length"))
        then = self.then
        if then is not None and not isinstance(then, Schedule):
            raise TypeError(f"then must be a fastbp schedule or None, got {type(then).__name__}")
        if isinstance(then, (ReduceOnPlateau, Warmup)):
            why = ("its factor follows the monitored losses, not t" if isinstance(then, ReduceOnPlateau)
                   else "use one Warmup with a longer length")
            raise ValueError(f"then={then!r} cannot follow a warm-up: {why}")
        if isinstance(then, Constant):
            then = None
        _settle(self, "then", then)
        start = 1.0 / (self.length + 1) if self.start_factor is None else self.start_factor
        _settle(self, "start_factor", check_real(start, "start_factor", 0.0, high=1.0))
        if then is None:
            _settle(self, "per", "epoch" if self.per is None else _check_per(self.per))
        elif self.per is None:
            _settle(self, "per", then.per)
        elif _check_per(self.per) != then.per:
            raise ValueError(f"per={self.per!r} differs from then.per={then.per!r}: a warm-up "
                             "counts in the unit of the schedule that follows it")

    def _factor(self, t):
        start = self.start_factor
        ramp = start + (1.0 - start) * (np.minimum(t, self.length) / self.length)
        # Past the ramp: exactly 1 (start + (1 - start) can round below it), or then's factor.
        after = 1.0 if self.then is None else self.then._factor(np.maximum(t - self.length, 0))
        return np.where(t < self.length, ramp, after)

    def to_config(self):
        config = super().to_config()
        config["then"] = None if self.then is None else self.then.to_config()
        return config

    @classmethod
    def _from_config(cls, settings):
        then = settings.get("then")
        return cls(**{**settings, "then": None if then is None else from_config(then)})


_SCHEDULES = {cls.name: cls for cls in (Constant, StepDecay, ExponentialDecay, InverseScaling,
                                        CosineDecay, Warmup, ReduceOnPlateau)}


def from_config(config):
    """Rebuild a schedule from :meth:`Schedule.to_config`'s dict, validating it.

    Raises
    ------
    TypeError
        If ``config`` is not a dict, or a setting has the wrong type.
    ValueError
        If the name is unknown (the message lists the valid ones), keys are missing or
        unexpected, or a setting is out of range.
    """
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict (from Schedule.to_config), got {type(config).__name__}")
    name = config.get("name")
    if not isinstance(name, str) or name not in _SCHEDULES:
        valid = ", ".join(repr(key) for key in _SCHEDULES)
        raise ValueError(f"schedule name {name!r} is not known; valid names: {valid}")
    cls = _SCHEDULES[name]
    settings = {key: value for key, value in config.items() if key != "name"}
    parameters = inspect.signature(cls).parameters
    accepted = set(parameters) | ({"state"} if cls is ReduceOnPlateau else set())
    unexpected = sorted(set(settings) - accepted)
    missing = sorted(key for key, parameter in parameters.items()
                     if parameter.default is inspect.Parameter.empty and key not in settings)
    if unexpected or missing:
        problems = ([f"unexpected keys {unexpected}"] if unexpected else []) + (
            [f"lacks {missing}"] if missing else [])
        raise ValueError(f"config of {name!r}: {' and '.join(problems)}; it takes "
                         f"{sorted(accepted)}")
    return cls._from_config(settings)

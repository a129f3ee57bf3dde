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
import math
import numbers
from dataclasses import dataclass, fields

import numpy as np

from .data import check_int, check_positive_int, check_real

_UNITS = ("epoch", "step")


def _check_per(per):
    if not isinstance(per, str) or per not in _UNITS:
        raise ValueError(f"per must be 'epoch' or 'step', got {per!r}")
    return per


def _check_times(t, name):
    """Return ``t`` as an int64 array of non-negative indices (any shape)."""
    array = np.asarray(t)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got {array.dtype} values")
    if array.size and array.min() < 0:
        raise ValueError(f"{name} must hold indices >= 0, got {array.min()}")
    return array.astype(np.int64, copy=False)


def _settle(spec, name, value):
    # Frozen dataclasses store their validated, normalised values this way (as Dense does).
    object.__setattr__(spec, name, value)


class Schedule:
    """Base class of learning-rate schedules: ``rate = lr * factor(t)``.

    Subclasses implement ``_factor(t)`` for an int64 array ``t`` of valid indices and set
    the class attribute ``name`` (their key in configs).

    Attributes
    ----------
    per : {"epoch", "step"}
        What ``t`` counts: epochs, or optimizer updates since training began.
    """

    per = "epoch"
    name = None

    def factor(self, t):
        """Multiplier of the base rate at times ``t``.

        Parameters
        ----------
        t : int or array-like of int
            0-based indices (>= 0) of epochs or steps, as :attr:`per` says.

        Returns
        -------
        ndarray of float64, shaped like ``t``
            Each value in [0, 1].
        """
        return np.asarray(self._factor(_check_times(t, "t")), dtype=np.float64)

    def _factor(self, t):
        raise NotImplementedError

    def rates(self, lr, epoch, steps):
        """Learning rate of each step in a run of steps.

        Parameters
        ----------
        lr : float
            Base rate (the optimizer's ``lr``), > 0.
        epoch : int
            0-based index of the epoch the steps belong to.
        steps : array-like of int
            0-based global indices (optimizer updates since training began) of the steps
            about to run; any part of an epoch, any shape.

        Returns
        -------
        ndarray of float64, shaped like ``steps``
            ``lr * factor(t)`` with ``t = epoch`` for every step if ``per == "epoch"``,
            else ``t = steps``. A new C-contiguous array.
        """
        lr = check_real(lr, "lr", 0.0, low_inclusive=False)
        epoch = check_int(epoch, "epoch", 0)
        steps = _check_times(steps, "steps")
        if self.per == "epoch":
            return np.full(steps.shape, lr * float(self._factor(np.array(epoch, np.int64))))
        return np.ascontiguousarray(lr * self._factor(steps), dtype=np.float64)

    def end_epoch(self, monitored):
        """Called by ``fit`` after each epoch with the monitored loss (the validation loss
        if there is one, else the training loss). Only :class:`ReduceOnPlateau` uses it."""

    def reset(self):
        """Forget what :meth:`end_epoch` has seen (a no-op but for :class:`ReduceOnPlateau`)."""

    def to_config(self):
        """A JSON-serialisable dict: ``"name"``, every constructor argument and any state.

        :func:`from_config` turns it back into an equal schedule.
        """
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def _from_config(cls, settings):
        return cls(**settings)


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


@dataclass(init=False, repr=False)
class ReduceOnPlateau(Schedule):
    """Cut the rate when the monitored loss stops improving
    (``torch.optim.lr_scheduler.ReduceLROnPlateau`` with ``mode="min"``,
    ``threshold_mode="rel"``, and ``min_lr = min_factor * lr``).

    The factor starts at 1 and changes only in :meth:`end_epoch`, which ``fit`` calls after
    each epoch with the monitored loss; the new factor applies from the next epoch on.
    Each call, in order:

    1. The loss is an improvement if it is finite and below ``best * (1 - threshold)``
       (``best * (1 + threshold)`` if ``best`` is negative; ``best`` is None before the first
       finite loss, so any finite loss improves on it). An improvement becomes ``best`` and
       clears the count of bad epochs; anything else, NaN and infinities included, adds one.
    2. During a cooldown the counter of cooldown epochs goes down by one and bad epochs are
       not counted (reset to 0).
    3. Once there are more than ``patience`` bad epochs in a row, ``current_factor``
       becomes ``max(current_factor * factor, min_factor)``, the cooldown starts
       (``cooldown`` epochs) and the count of bad epochs clears.

    Parameters
    ----------
    factor : float, default 0.1
        Multiplier at each reduction, in (0, 1).
    patience : int, default 10
        Bad epochs tolerated before a reduction, >= 0 (0 reduces after the first).
    threshold : float, default 1e-4
        Relative improvement that counts, in [0, 1).
    cooldown : int, default 0
        Epochs after a reduction during which bad epochs are not counted, >= 0.
    min_factor : float, default 0.0
        The factor never goes below this, in [0, 1].

    Attributes
    ----------
    reduce_factor : float
        The ``factor`` argument (``factor`` itself is the method every schedule has).
    patience, threshold, cooldown, min_factor
        The other arguments.
    current_factor : float
        The factor of the epochs to come.
    best : float or None
        Lowest finite monitored loss that counted as an improvement, None before one.
    num_bad_epochs : int
        Bad epochs since the last improvement, reduction or cooldown epoch.
    cooldown_counter : int
        Cooldown epochs left.

    Notes
    -----
    ``per`` is always "epoch". Unlike torch, a reduction is never skipped for being tiny
    (torch ignores changes of the rate below ``eps=1e-8``); the factor keeps shrinking
    until ``min_factor``. The state belongs to the instance: a model that trains with it
    changes it, so give each model its own, and call :meth:`reset` to start afresh.

    Examples
    --------
    >>> plateau = ReduceOnPlateau(factor=0.5, patience=1)
    >>> for loss in [1.0, 0.9, 0.95, 0.92, 0.91]:
    ...     plateau.end_epoch(loss)
    >>> plateau.current_factor, plateau.best
    (0.5, 0.9)
    """

    reduce_factor: float
    patience: int
    threshold: float
    cooldown: int
    min_factor: float
    current_factor: float
    best: float
    num_bad_epochs: int
    cooldown_counter: int

    name = "reduce_on_plateau"
    _STATE = ("current_factor", "best", "num_bad_epochs", "cooldown_counter")

    def __init__(self, factor=0.1, patience=10, threshold=1e-4, cooldown=0, min_factor=0.0):
        self.reduce_factor, self.patience, self.threshold = factor, patience, threshold
        self.cooldown, self.min_factor = cooldown, min_factor
        self._check()
        self.reset()

    def _check(self):
        # Validated again before every use, as the settings are mutable (as SGD's are).
        self.reduce_factor = check_real(self.reduce_factor, "factor", 0.0, low_inclusive=False,
                                        high=1.0, high_inclusive=False)
        self.patience = check_int(self.patience, "patience", 0)
        self.threshold = check_real(self.threshold, "threshold", 0.0, high=1.0, high_inclusive=False)
        self.cooldown = check_int(self.cooldown, "cooldown", 0)
        self.min_factor = check_real(self.min_factor, "min_factor", 0.0, high=1.0)

    def reset(self):
        """Back to the state of a new instance: factor 1, no best loss, no counters."""
        self.current_factor, self.best = 1.0, None
        self.num_bad_epochs = self.cooldown_counter = 0

    def _factor(self, t):
        return np.full(t.shape, self.current_factor)

    def end_epoch(self, monitored):
        """Update the factor from one epoch's monitored loss (see the class docstring)."""
        if isinstance(monitored, np.ndarray) and monitored.ndim == 0:
            monitored = monitored[()]
        if isinstance(monitored, bool) or not isinstance(monitored, numbers.Real):
            raise TypeError(f"monitored must be a real number, got {type(monitored).__name__}")
        self._check()
        value = float(monitored)
        if math.isfinite(value) and (self.best is None or value < self._bar()):
            self.best, self.num_bad_epochs = value, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self.current_factor = max(self.current_factor * self.reduce_factor, self.min_factor)
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def _bar(self):
        """The loss to beat: torch's ``best * (1 - threshold)``, mirrored for a negative best."""
        sign = 1.0 if self.best >= 0 else -1.0
        return self.best * (1.0 - sign * self.threshold)

    def to_config(self):
        self._check()
        return {"name": self.name, "factor": self.reduce_factor, "patience": self.patience,
                "threshold": self.threshold, "cooldown": self.cooldown,
                "min_factor": self.min_factor,
                "state": {key: getattr(self, key) for key in self._STATE}}

    @classmethod
    def _from_config(cls, settings):
        settings = dict(settings)
        state = settings.pop("state", None)
        schedule = cls(**settings)
        if state is not None:
            schedule._restore(state)
        return schedule

    def _restore(self, state):
        if not isinstance(state, dict) or sorted(state) != sorted(self._STATE):
            raise ValueError(f"state must be a dict with keys {list(self._STATE)}, got {state!r}")
        current = check_real(state["current_factor"], "state['current_factor']",
                             self.min_factor, high=1.0)
        best = state["best"]
        if best is not None:
            best = check_real(best, "state['best']", -math.inf)
        bad = check_int(state["num_bad_epochs"], "state['num_bad_epochs']", 0)
        if bad > self.patience:
            raise ValueError(f"state['num_bad_epochs'] must be <= patience={self.patience}, got {bad}")
        counter = check_int(state["cooldown_counter"], "state['cooldown_counter']", 0)
        if counter > self.cooldown:
            raise ValueError(f"state['cooldown_counter'] must be <= cooldown={self.cooldown}, "
                             f"got {counter}")
        self.current_factor, self.best = current, best
        self.num_bad_epochs, self.cooldown_counter = bad, counter

    def __repr__(self):
        text = (f"ReduceOnPlateau(factor={self.reduce_factor!r}, patience={self.patience!r}, "
                f"threshold={self.threshold!r}, cooldown={self.cooldown!r}, "
                f"min_factor={self.min_factor!r})")
        if self.best is not None or self.current_factor != 1.0:
            text += (f" [current_factor={self.current_factor!r}, best={self.best!r}, "
                     f"num_bad_epochs={self.num_bad_epochs}, cooldown_counter={self.cooldown_counter}]")
        return text


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

"""ReduceOnPlateau, the one stateful schedule (re-exported by :mod:`fastbp.schedules`):
its factor moves only when ``fit`` reports an epoch's monitored loss."""
import math
import numbers
from dataclasses import dataclass

import numpy as np

from ._schedule_base import Schedule
from .data import check_int, check_real


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

"""The base of fastbp's learning-rate schedules (:class:`Schedule`) and the checks every
schedule shares; the schedules themselves are in :mod:`fastbp.schedules`."""
from dataclasses import fields

import numpy as np

from .data import check_int, check_real

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

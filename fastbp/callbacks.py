"""Callbacks: Python code that ``fit`` runs between epochs.

The protocol is small. ``fit`` calls, on every callback in order:

``set_model(model)``
    once, before training;
``on_train_begin(logs)``
    before the first epoch (``logs`` is an empty dict);
``on_epoch_end(epoch, logs)``
    after each completed epoch (``epoch`` counts from 0 within this ``fit`` call; ``logs``
    holds that epoch's figures, the keys of :class:`fastbp.History`). Setting
    ``model.stop_training = True`` ends training after this epoch;
``on_divergence(error)``
    when a batch made the loss or parameters non-finite (a :class:`fastbp.DivergenceError`,
    the model keeps its last finite state); return True to end training quietly instead of
    raising;
``on_train_end(logs)``
    on every exit: after the last epoch, an early stop, Ctrl-C, ``max_time``, or an error.

Subclass :class:`Callback` and override what you need; every method is optional.
"""
import csv
import math
import os
import sys

import numpy as np

from .data import check_bool, check_int, check_path, check_positive_int, check_real

__all__ = ["Callback", "CSVLogger", "EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau",
           "TerminateOnNaN"]


class Callback:
    """Base class of callbacks: every hook does nothing; override the ones you need.

    See the module docstring for when ``fit`` calls each hook.

    Attributes
    ----------
    model : Sequential or None
        The model being trained, set by :meth:`set_model` before the first hook.

    Examples
    --------
    Stop once the training loss is below a threshold:

    >>> import fastbp as fb
    >>> from fastbp.callbacks import Callback
    >>> class StopBelow(Callback):
    ...     def __init__(self, threshold):
    ...         self.threshold = threshold
    ...     def on_epoch_end(self, epoch, logs):
    ...         if logs["loss"] < self.threshold:
    ...             self.model.stop_training = True
    >>> X = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    >>> y = [[0.0], [1.0], [1.0], [0.0]]
    >>> model = fb.Sequential([fb.Dense(2, 8, "tanh"), fb.Dense(8, 1)],
    ...                       loss="binary_cross_entropy", seed=0)
    >>> history = model.fit(X, y, epochs=5000, batch_size=4, optimizer=fb.SGD(lr=0.5, momentum=0.9),
    ...                     callbacks=[StopBelow(0.05)])
    >>> history.epochs < 5000, history.loss[-1] < 0.05
    (True, True)
    """

    model = None

    def set_model(self, model):
        """Remember ``model`` (as :attr:`model`) before training starts."""
        self.model = model

    def on_train_begin(self, logs):
        """Before the first epoch; ``logs`` is an empty dict."""

    def on_epoch_end(self, epoch, logs):
        """After each epoch: ``epoch`` counts from 0 within this ``fit`` call, ``logs`` maps
        each of the epoch's figures (``loss``, ``val_loss``, ``lr``, ...) to its value."""

    def on_divergence(self, error):
        """Training diverged (``error``: a :class:`fastbp.DivergenceError`). Return True to
        end training quietly instead of raising."""
        return False

    def on_train_end(self, logs):
        """On every exit from ``fit``, even by an exception or Ctrl-C."""


class _Monitor:
    """Which logged figure to watch, and what counts as better."""

    def __init__(self, monitor, mode, min_delta, owner):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str, got {type(monitor).__name__}")
        if mode == "auto":
            mode = "max" if "accuracy" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor, self.mode, self.owner = monitor, mode, owner
        self.min_delta = check_real(min_delta, "min_delta", 0.0)
        self.reset()

    def reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf

    def value(self, logs):
        if self.monitor not in logs:
            raise ValueError(
                f"{self.owner} monitors {self.monitor!r}, which fit does not report here; it "
                f"reports {sorted(logs)} (val_* need validation_data or validation_split)")
        return float(logs[self.monitor])

    def improved(self, value):
        """True (and remember it) if ``value`` beats the best by more than min_delta."""
        if not math.isfinite(value):
            return False
        better = (value < self.best - self.min_delta if self.mode == "min"
                  else value > self.best + self.min_delta)
        if better:
            self.best = value
        return better


class EarlyStopping(Callback):
    """Stop when the monitored figure has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor : str, default "val_loss"
        A key of the epoch logs, e.g. "loss", "val_loss", "val_accuracy".
    patience : int, default 5
        Epochs without improvement to wait before stopping.
    min_delta : float, default 0.0
        Smallest change that counts as an improvement.
    mode : {"auto", "min", "max"}, default "auto"
        "auto" maximises figures named like accuracy and minimises the rest.
    restore_best_weights : bool, default True
        On every exit (end of training, early stop, Ctrl-C, ``max_time``, divergence),
        put back the parameters of the best epoch. Optimizer state is not rolled back.

    Attributes
    ----------
    best : float
        The best value seen.
    best_epoch : int or None
        Epoch (0-based, within the fit call) that produced it.
    stopped_epoch : int or None
        Epoch after which this callback stopped training.
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, mode="auto",
                 restore_best_weights=True):
        self._monitor = _Monitor(monitor, mode, min_delta, "EarlyStopping")
        self.patience = check_positive_int(patience, "patience")
        self.restore_best_weights = check_bool(restore_best_weights, "restore_best_weights")

    @property
    def best(self):
        return self._monitor.best

    def on_train_begin(self, logs):
        self._monitor.reset()
        self.wait, self.best_epoch, self.stopped_epoch, self._best_weights = 0, None, None, None

    def on_epoch_end(self, epoch, logs):
        if self._monitor.improved(self._monitor.value(logs)):
            self.wait, self.best_epoch = 0, epoch
            if self.restore_best_weights:
                self._best_weights = self.model.parameters.copy()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs):
        if self.restore_best_weights and self._best_weights is not None:
            self.model.parameters[...] = self._best_weights


class ReduceLROnPlateau(Callback):
    """Multiply the optimizer's base learning rate by ``factor`` when the monitored figure
    has not improved for ``patience`` epochs (Keras's callback of the same name).

    Parameters
    ----------
    monitor : str, default "val_loss"
    factor : float, default 0.1
        In (0, 1).
    patience : int, default 10
    min_delta : float, default 1e-4
    cooldown : int, default 0
        Epochs to wait after a reduction before counting again.
    min_lr : float, default 0.0
        The rate never goes below this.
    mode : {"auto", "min", "max"}, default "auto"
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, min_delta=1e-4,
                 cooldown=0, min_lr=0.0, mode="auto"):
        self._monitor = _Monitor(monitor, mode, min_delta, "ReduceLROnPlateau")
        self.factor = check_real(factor, "factor", 0.0, low_inclusive=False, high=1.0)
        if self.factor == 1.0:
            raise ValueError("factor must be < 1, got 1.0")
        self.patience = check_positive_int(patience, "patience")
        self.cooldown = check_int(cooldown, "cooldown", 0)
        self.min_lr = check_real(min_lr, "min_lr", 0.0)

    def on_train_begin(self, logs):
        self._monitor.reset()
        self.wait, self.cooling = 0, 0

    def on_epoch_end(self, epoch, logs):
        value = self._monitor.value(logs)
        if self.cooling > 0:
            self.cooling -= 1
            self.wait = 0
        if self._monitor.improved(value):
            self.wait = 0
            return
        if self.cooling == 0:
            self.wait += 1
            if self.wait >= self.patience:
                optimizer = self.model.optimizer
                optimizer.lr = max(optimizer.lr * self.factor, self.min_lr) or optimizer.lr
                self.cooling, self.wait = self.cooldown, 0


class ModelCheckpoint(Callback):
    """Save the model (:meth:`fastbp.Sequential.save`, atomic) after epochs.

    Parameters
    ----------
    path : str or os.PathLike
        May contain ``{epoch}`` (1-based) and log keys, e.g. ``"model-{epoch:03d}.npz"``.
    monitor : str, default "val_loss"
        Used with ``save_best_only``.
    save_best_only : bool, default False
        Save only when the monitored figure improves; otherwise after every epoch.
    mode : {"auto", "min", "max"}, default "auto"
    """

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto"):
        self.path = check_path(path, "path")
        self._monitor = _Monitor(monitor, mode, 0.0, "ModelCheckpoint")
        self.save_best_only = check_bool(save_best_only, "save_best_only")

    def on_train_begin(self, logs):
        self._monitor.reset()

    def on_epoch_end(self, epoch, logs):
        if self.save_best_only and not self._monitor.improved(self._monitor.value(logs)):
            return
        self.model.save(self.path.format(epoch=epoch + 1, **logs))


class CSVLogger(Callback):
    """Append one CSV row of logs per epoch to ``path`` (written and flushed each epoch).

    Parameters
    ----------
    path : str or os.PathLike
    append : bool, default False
        Keep an existing file's rows (no second header) instead of starting afresh.
    """

    def __init__(self, path, append=False):
        self.path = check_path(path, "path")
        self.append = check_bool(append, "append")

    def on_train_begin(self, logs):
        self._file = None

    def on_epoch_end(self, epoch, logs):
        row = {"epoch": epoch, **{key: value for key, value in logs.items()
                                  if np.isscalar(value)}}
        if self._file is None:
            exists = self.append and os.path.exists(self.path) and os.path.getsize(self.path) > 0
            self._file = open(self.path, "a" if self.append else "w", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=list(row))
            if not exists:
                self._writer.writeheader()
        self._writer.writerow(row)
        self._file.flush()

    def on_train_end(self, logs):
        if self._file is not None:
            self._file.close()
            self._file = None


class TerminateOnNaN(Callback):
    """End training quietly, instead of raising :class:`fastbp.DivergenceError`, when the
    loss or the parameters would become NaN or infinite. The model keeps the parameters from
    before the bad batch; ``History.stop_reason`` is ``"nan"``."""

    def on_divergence(self, error):
        print(f"TerminateOnNaN: {error}", file=sys.stderr)
        return True


def check_callbacks(callbacks, reported):
    """A list of callbacks from None or a sequence; TypeError naming a bad entry, and
    ValueError, before any training, for one that monitors a figure not in ``reported``
    (what this fit will put in the epoch logs: :func:`fastbp.training.reported_figures`)."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        callbacks = [callbacks]
    callbacks = list(callbacks)
    for i, callback in enumerate(callbacks):
        if not isinstance(callback, Callback):
            raise TypeError(f"callbacks[{i}] must be a fastbp.callbacks.Callback, got "
                            f"{type(callback).__name__}")
        monitor = getattr(callback, "_monitor", None)
        if monitor is not None and monitor.monitor not in reported:
            hint = (" (val_* need validation_data or validation_split)"
                    if monitor.monitor.startswith("val_") else "")
            raise ValueError(f"callbacks[{i}] ({type(callback).__name__}) monitors "
                             f"{monitor.monitor!r}, which this fit does not report{hint}; it "
                             f"reports {', '.join(sorted(reported))}")
    return callbacks

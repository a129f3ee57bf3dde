"""The epoch loop: Python between epochs, one compiled call per epoch."""
import sys
import time

import numpy as np

from ._native import core as _core

_STATUS_NONFINITE_LOSS = _core.CODES["STATUS_NONFINITE_LOSS"]
_STATUS_NONFINITE_PARAMS = _core.CODES["STATUS_NONFINITE_PARAMS"]


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or parameters; the model keeps finite ones."""


class History:
    """What ``fit`` returns: one entry per completed epoch.

    Attributes
    ----------
    loss : list of float
        Mean training loss of each epoch (data loss, without the weight-decay penalty).
    epoch_time : list of float
        Wall-clock seconds of each epoch.
    """

    def __init__(self):
        self.loss = []
        self.epoch_time = []

    @property
    def epochs(self):
        return len(self.loss)

    def to_dict(self):
        return {"loss": list(self.loss), "epoch_time": list(self.epoch_time)}

    def __repr__(self):
        last = f", last loss {self.loss[-1]:.6g}" if self.loss else ""
        return f"History({self.epochs} epochs{last})"


def raise_for_status(status, n_batches, where):
    """Turn the core's status into an exception; ``where`` says which call it was."""
    if status == _STATUS_NONFINITE_LOSS:
        raise DivergenceError(
            f"the loss became NaN or infinite at {where}, batch {n_batches + 1}; the model keeps "
            "its parameters from before that batch. Lower the learning rate or scale the inputs.")
    if status == _STATUS_NONFINITE_PARAMS:
        raise DivergenceError(
            f"the update of {where}, batch {n_batches + 1} would make parameters NaN or "
            "infinite, so it was not applied; the model keeps its parameters and optimizer "
            "state from before that batch. Lower the learning rate or scale the inputs.")


def run_epochs(plan, X, Y, labels, epochs, batch_size, optimizer, shuffle, rng, verbose):
    """Train for ``epochs`` passes; returns a :class:`History`."""
    history = History()
    n_samples = X.shape[0]
    in_order = np.zeros(0, dtype=np.intp)
    steps_per_epoch = -(-n_samples // batch_size)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n_samples).astype(np.intp, copy=False) if shuffle else in_order
        rates = optimizer.rates(plan.epochs, plan.steps, steps_per_epoch)
        started = time.perf_counter()
        status, loss_sum, n_batches = _core.train_epoch(
            plan, X, Y, labels, order, batch_size, optimizer, rates, plan.steps)
        plan.steps += n_batches
        raise_for_status(status, n_batches, f"epoch {epoch}")
        elapsed = time.perf_counter() - started
        plan.epochs += 1
        history.loss.append(loss_sum / n_samples)
        if optimizer.schedule is not None:
            optimizer.schedule.end_epoch(history.loss[-1])
        history.epoch_time.append(elapsed)
        if verbose:
            print(f"epoch {epoch}/{epochs}  loss {history.loss[-1]:.4f}  {elapsed:.3f} s  "
                  f"({n_samples / max(elapsed, 1e-12):,.0f} samples/s)", file=sys.stdout, flush=True)
    return history

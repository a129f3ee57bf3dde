"""The fit loop: Python between chunks of batches, one compiled call per chunk.

A chunk is as many whole batches as take about ``CHUNK_SECONDS`` (measured as training goes),
so a progress bar moves, Ctrl-C is noticed and ``max_time`` is honoured within a fraction of a
second, while the compiled loop still runs thousands of batches per call on small networks.
"""
import math
import signal
import sys
import threading
import time

import numpy as np

from ._native import core as _core
from .activations import RELU_FAMILY
from .losses import CLASSIFICATION
from .progress import Progress

_STATUS_NONFINITE_LOSS = _core.CODES["STATUS_NONFINITE_LOSS"]
_STATUS_NONFINITE_PARAMS = _core.CODES["STATUS_NONFINITE_PARAMS"]


#: Target wall time of one compiled call; Ctrl-C is noticed at the next chunk boundary.
CHUNK_SECONDS = 0.2


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or parameters; the model keeps finite ones.

    Raised by ``fit`` and ``train_step`` (a ``FloatingPointError``, so existing handlers for
    that catch it). The message names the epoch and batch; the model keeps the parameters
    and optimizer state of the last finite step, so it can be saved or trained further with
    a smaller learning rate. :class:`fastbp.callbacks.TerminateOnNaN` turns it into an
    early end of ``fit`` instead.
    """


class History:
    """What ``fit`` returns: the figures of each completed epoch.

    Attributes
    ----------
    history : dict of str to list
        One list per figure, one entry per completed epoch: ``loss`` (mean training loss,
        without decay penalties), ``accuracy`` (classification losses: as
        :meth:`Sequential.evaluate` defines it, each batch scored by the model it was
        trained on, before its update, as Keras's running figure), ``val_loss`` and
        ``val_accuracy`` (with validation data), ``lr`` (learning rate of the epoch's last
        step), ``epoch_time`` (seconds), ``samples_per_second``, and per layer ``l``,
        measured on the epoch's last batch inside the compiled loop: ``grad_norm_<l>``
        (weight gradient norm, before clipping), ``update_ratio_<l>`` (update norm over
        weight norm) and ``dead_fraction_<l>`` (relu-family hidden layers: units silent on
        the whole batch) or ``saturated_fraction_<l>`` (sigmoid/tanh hidden layers: outputs
        within 0.01 of an asymptote). Every key is also an attribute: ``history.loss``.
    epochs : int
        Completed epochs.
    stop_reason : str
        Why training ended: "completed", "early_stopping" (a callback set
        ``model.stop_training``), "interrupted" (Ctrl-C), "max_time" or "nan"
        (:class:`fastbp.callbacks.TerminateOnNaN`).
    """

    def __init__(self):
        self.history = {}
        self.stop_reason = "completed"

    def append(self, logs):
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __getattr__(self, name):
        history = self.__dict__.get("history", {})
        if name in history:
            return history[name]
        raise AttributeError(f"History has no figure {name!r}; it has {sorted(history)}")

    @property
    def epochs(self):
        return len(self.history.get("loss", []))

    def to_dict(self):
        """JSON-able copy: ``{"history": {...}, "epochs": n, "stop_reason": ...}``."""
        return {"history": {key: list(values) for key, values in self.history.items()},
                "epochs": self.epochs, "stop_reason": self.stop_reason}

    def plot(self, path=None):
        """Draw the loss (and accuracy) curves with matplotlib; save to ``path`` if given.

        Returns the matplotlib Figure. Raises ImportError naming the missing package if
        matplotlib is not installed."""
        from .plotting import plot_history

        return plot_history(self, path)

    def __repr__(self):
        last = f", last loss {self.history['loss'][-1]:.6g}" if self.epochs else ""
        return f"History({self.epochs} epochs{last}, stop_reason={self.stop_reason!r})"


def epoch_order(rng, n_rows):
    """One epoch's row order: a permutation of ``range(n_rows)`` drawn by the compiled core
    from a single 64-bit draw of ``rng`` (see "shuffling" in src_c/_core.pyx); the same
    generator state gives the same order."""
    order = np.empty(n_rows, dtype=np.intp)
    _core.shuffled_order(order, rng.bit_generator.random_raw())
    return order


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


def layer_figures(telemetry, activations):
    """Per-layer diagnostics of the epoch's last batch, from train_epoch's telemetry rows
    (gradient norm, weight norm, update norm, unit fraction): ``grad_norm_<l>``,
    ``update_ratio_<l>`` (||ΔW|| / ||W||) and ``dead_fraction_<l>`` (relu family: units
    silent on the whole batch) or ``saturated_fraction_<l>`` (sigmoid, tanh)."""
    figures = {}  # on Python floats: NumPy scalars made this 4x slower, per epoch
    for layer, ((grad, weight, update, units), act) in enumerate(
            zip(telemetry.tolist(), activations.tolist())):
        figures[f"grad_norm_{layer}"] = grad
        figures[f"update_ratio_{layer}"] = update / weight if weight > 0 else math.nan
        if not math.isnan(units):
            kind = "dead" if act in RELU_FAMILY else "saturated"
            figures[f"{kind}_fraction_{layer}"] = units
    return figures


def reported_figures(n_layers, classification, validation):
    """The keys fit's epoch logs can hold (the unit fractions exist for some layers only)."""
    keys = {"loss", "lr", "epoch_time", "samples_per_second"}
    if classification:
        keys.add("accuracy")
    if validation:
        keys.update("val_" + key for key in ("loss", "accuracy") if key in keys)
    for layer in range(n_layers):
        keys.update(f"{name}_{layer}" for name in ("grad_norm", "update_ratio",
                                                     "dead_fraction", "saturated_fraction"))
    return keys


try:
    # signal.signal wraps this in enum conversions that raise and catch a ValueError for a
    # function handler: 5.2 µs per install-and-restore against 0.4 µs, once per fit call.
    from _signal import signal as _set_signal_handler
except ImportError:  # Python implementations without CPython's _signal module
    _set_signal_handler = signal.signal


class _Interrupts:
    """While active, Ctrl-C sets a flag instead of raising in the middle of bookkeeping
    (only possible in the main thread; elsewhere KeyboardInterrupt never arrives anyway)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = _set_signal_handler(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            _set_signal_handler(signal.SIGINT, self._previous)


class Trainer:
    """One ``fit`` call: the data, the settings and the loop over epochs and chunks."""

    def __init__(self, model, X, Y, labels, weights, batch_size, optimizer, shuffle, verbose,
                 validation, callbacks, max_time, threads=1, tuner=None,
                 by_weight_sum=False):
        self.model, self.plan = model, model._plan
        self.by_weight_sum = by_weight_sum  # sample_weight_reduction="weights"
        self.X, self.Y, self.labels, self.weights = X, Y, labels, weights
        self.batch_size, self.optimizer, self.shuffle = batch_size, optimizer, shuffle
        self.validation, self.callbacks, self.max_time = validation, callbacks, max_time
        self.progress = Progress(verbose)
        self.threads = threads  # fastbp's team size for every chunk, unless
        self.tuner = tuner      # a ThreadTuner picks it per chunk (threads="auto")
        # Batches per compiled call: learnt as training goes and kept on the plan, so the
        # next fit call at this batch size starts at the right size.
        self.chunk_batches = self.plan.chunk_batches.get(batch_size, 1)

    def run(self, epochs):
        model, history = self.model, History()
        model.stop_training = False
        self.deadline = math.inf if self.max_time is None else time.monotonic() + self.max_time
        for callback in self.callbacks:
            callback.set_model(model)
        for callback in self.callbacks:
            callback.on_train_begin({})
        try:
            with _Interrupts() as self.interrupts:
                for epoch in range(epochs):
                    logs = self._epoch(epoch, epochs)
                    if logs is None:
                        break
                    history.append(logs)
                    for callback in self.callbacks:
                        callback.on_epoch_end(epoch, logs)
                    if model.stop_training:
                        history.stop_reason = "early_stopping"
                        break
                    if self._stop_requested():
                        break
        except DivergenceError as error:
            if not any(callback.on_divergence(error) for callback in self.callbacks):
                self._end(history)
                raise
            history.stop_reason = "nan"
        if self.interrupts.requested:
            history.stop_reason = "interrupted"
            print(f"fit interrupted by Ctrl-C after {history.epochs} complete epochs and "
                  f"{self.plan.steps} updates; returning the history so far", file=sys.stderr)
        elif history.stop_reason == "completed" and time.monotonic() >= self.deadline:
            history.stop_reason = "max_time"
        self._end(history)
        return history

    def _end(self, history):
        self.progress.close()
        for callback in self.callbacks:
            callback.on_train_end(dict(history.history))

    def _stop_requested(self):
        return self.interrupts.requested or time.monotonic() >= self.deadline

    def _epoch(self, epoch, epochs):
        """Train one epoch in chunks; its logs, or None if stopped part-way."""
        plan, optimizer, n = self.plan, self.optimizer, self.X.shape[0]
        order = (epoch_order(self.model._rng, n) if self.shuffle
                 else np.zeros(0, dtype=np.intp))
        n_batches = -(-n // self.batch_size)
        rates = optimizer.rates(plan.epochs, plan.steps, n_batches)
        self.progress.start_epoch(epoch, epochs, n)
        started, done, loss_sum, hits, batch = time.perf_counter(), 0, 0.0, 0.0, 0
        telemetry = (np.full((len(plan.dense_ops), 4), np.nan) if self.model._layer_figures
                     else None)
        # The overflow bounds pass from chunk to chunk: nothing else writes the parameters
        # within an epoch (callbacks run between epochs, so each epoch measures afresh).
        bounds = np.full(4, -1.0)
        while done < n:
            if self._stop_requested():
                self.progress.close()
                return None
            threads, batches = (self.tuner.next_chunk(self.chunk_batches) if self.tuner
                                else (self.threads, self.chunk_batches))
            end = min(n, done + batches * self.batch_size)
            chunk_started = time.perf_counter()
            # The running totals go in, so the epoch's loss does not depend on the chunking.
            status, loss_sum, chunk_done, hits = _core.train_epoch(
                plan, self.X, self.Y, self.labels, order, self.batch_size, optimizer,
                rates[batch:], plan.steps, row0=done, row1=end, n_threads=threads,
                telemetry=telemetry if end == n else None,  # the epoch's last batch only
                sample_weight=self.weights, training_step=plan.training_steps,
                by_weight_sum=self.by_weight_sum, loss_sum=loss_sum, hits=hits, bounds=bounds)
            plan.steps += chunk_done
            plan.training_steps += chunk_done
            raise_for_status(status, batch + chunk_done, f"epoch {epoch + 1}")
            seconds = time.perf_counter() - chunk_started
            if not (self.tuner and self.tuner.record(threads, seconds, chunk_done)):
                self._adapt_chunk(seconds, n_batches)
            batch += chunk_done
            done = end
            self.progress.update(done, loss_sum / done)
        elapsed = time.perf_counter() - started
        plan.epochs += 1
        logs = {"loss": loss_sum / n}
        if self.model._loss in CLASSIFICATION:
            logs["accuracy"] = self.model._accuracy(hits, n, self.weights)
        if self.validation is not None:
            team = self.tuner.choice if self.tuner else self.threads
            logs.update({"val_" + key: value for key, value in self.model._evaluate_checked(
                *self.validation, n_threads=team).items()})
        logs.update(lr=float(rates[-1]), epoch_time=elapsed,
                    samples_per_second=n / max(elapsed, 1e-12))
        if telemetry is not None:
            logs.update(layer_figures(telemetry, plan.dense_activations))
        if optimizer.schedule is not None:
            optimizer.schedule.end_epoch(logs.get("val_loss", logs["loss"]))
        self.progress.end_epoch(logs)
        return logs

    def _adapt_chunk(self, seconds, n_batches):
        # Aim the next call at CHUNK_SECONDS, growing at most 8x at a time (timings of
        # the first tiny calls are noisy), and never past a whole epoch.
        per_batch = max(seconds, 1e-7) / self.chunk_batches
        target = min(CHUNK_SECONDS / per_batch, 8 * self.chunk_batches, n_batches)
        self.chunk_batches = max(1, int(target))
        self.plan.chunk_batches[self.batch_size] = self.chunk_batches

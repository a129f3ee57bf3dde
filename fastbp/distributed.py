"""Synchronous data-parallel training over MPI: ``model.fit(X_shard, y_shard, comm=comm)``.

Each rank (process) of ``comm`` holds one shard of the training set: the global training
set is the ranks' shards concatenated in rank order. Every epoch, every rank draws the same
global row order from the model's generator (the one a one-process ``fit`` on the
concatenated data draws) and cuts it into the same global batches. For each batch, each
rank computes the gradient of ITS rows of the batch (``_core.shard_gradients``, scaled by
the global batch's size), one ``Allreduce`` sums the flat gradient buffer (with the loss
and hit counts in two extra slots), and every rank applies the same update
(``_core.apply_step``), so the parameters stay identical on every rank. The result equals a
one-process fit with the same global batch order up to the order of the gradient's sums
(float64: within 1e-10 relative): the last partial batch, sample weights and dropout masks
(drawn at each row's position in the global batch) included.

Not supported, each refused with an error saying why: BatchNorm (its batch statistics need
every row of the batch inside the forward pass), ``validation_split`` and
``class_weight="balanced"`` (they need every rank's rows), and a team of threads per rank
(run one rank per core). Callbacks, validation, History, ``max_time`` and Ctrl-C behave as
in one process; every rank stops together (fastbp._collective).
"""
import time

import numpy as np

try:
    from mpi4py import MPI
except ImportError as error:  # pragma: no cover - the tests skip without mpi4py
    raise ImportError("fastbp.distributed needs mpi4py: pip install \"fastbp[distributed]\"") from error

from . import _collective
from ._collective import DistributedError, TogetherCallbacks, raise_together, run_together
from ._native import core as _core
from .callbacks import check_callbacks
from .data import check_positive_int, check_real
from .sparse import is_sparse
from .losses import CLASSIFICATION, Loss
from .progress import check_verbose
from .threads import blas_threads
from .training import Trainer, epoch_order, layer_figures, raise_for_status, reported_figures

__all__ = ["DistributedError", "fit", "shard_rows"]

#: The slots after the gradient in the summed buffer: Σ w·loss, Σ w·hits, failed ranks.
_LOSS, _HITS, _FAILED = range(3)


def shard_rows(order, n_total, lo, hi, batch_size):
    """This rank's part of an epoch of ``n_total`` rows: for global rows lo:hi (its shard),
    in the epoch's global order (``order``, a permutation of all rows; None: rows in
    order), returns ``(rows, positions, starts)``: the rank's rows (indices into its shard)
    in order, each one's position in its global batch, and where each batch's rows begin
    (``starts[k]:starts[k + 1]`` for batch k; one entry per batch, plus the end)."""
    if order is None:
        at = np.arange(lo, hi)
        rows = np.arange(hi - lo)
    else:
        at = np.flatnonzero((order >= lo) & (order < hi))
        rows = order[at] - lo
    n_batches = -(-n_total // batch_size)
    batch_of = at // batch_size
    starts = np.searchsorted(batch_of, np.arange(n_batches + 1))
    positions = at - batch_of * batch_size
    return (np.ascontiguousarray(rows, dtype=np.intp),
            np.ascontiguousarray(positions, dtype=np.intp), starts.tolist())


def fit(model, X, y, comm, epochs=10, batch_size=32, optimizer=None, shuffle=True, verbose=0,
        threads=None, validation_data=None, validation_split=0.0, callbacks=None,
        max_time=None, sample_weight=None, class_weight=None):
    """``model.fit(..., comm=comm)``: see the module docstring and Sequential.fit. Every
    rank of ``comm`` must call it with its own shard and the same settings; it returns
    the same History on every rank. Rank 0 alone prints (verbose) and writes files
    (ModelCheckpoint, CSVLogger)."""
    rank = comm.Get_rank()
    checked = run_together(comm, _check_local, model, X, y, epochs, batch_size, optimizer,
                           verbose, threads, validation_data, validation_split, callbacks,
                           max_time, sample_weight, class_weight)
    X, Y, labels, weights, validation, callbacks, optimizer = checked
    offsets = _collective.check_shards(comm, model, X.shape[0], {
        "sample_weight": weights is not None, "validation_data": validation is not None})
    n_total = int(offsets[-1])
    batch_size = min(batch_size, n_total)
    model._plan.ensure_capacity(batch_size)
    weight_total = (None if weights is None
                    else comm.allreduce(float(np.sum(weights, dtype=np.float64))))
    with blas_threads(1):
        trainer = DistributedTrainer(
            comm, offsets, weight_total, model, X, Y, labels, weights, batch_size, optimizer,
            bool(shuffle), verbose if rank == 0 else 0, validation,
            [TogetherCallbacks(comm, callbacks)], max_time)
        return trainer.run(epochs)


def _check_local(model, X, y, epochs, batch_size, optimizer, verbose, threads,
                 validation_data, validation_split, callbacks, max_time, sample_weight,
                 class_weight):
    """This rank's checks of fit's arguments (as Sequential.fit's); the checked values."""
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    check_verbose(verbose)
    if threads not in (None, 1):
        raise ValueError(f"threads={threads!r}: a distributed fit trains on one thread per "
                         "rank (start one rank per core); pass threads=None or 1")
    if max_time is not None:
        check_real(max_time, "max_time", 0.0, low_inclusive=False)
    if validation_split:
        raise ValueError("validation_split needs every rank's rows; give each rank its part "
                         "of the validation set as validation_data instead")
    if isinstance(class_weight, str):
        raise ValueError(f"class_weight={class_weight!r} needs the class counts of every "
                         "rank; pass a dict of class weights instead")
    if model._plan.has_batchnorm:
        raise ValueError(
            "BatchNorm cannot train data-parallel: its batch statistics need every row of "
            "the global batch inside the forward pass, and the ranks each hold some of the "
            "rows. Use LayerNorm (per-row statistics), or train on one process")
    callbacks = check_callbacks(callbacks, reported_figures(
        len(model._plan.dense_ops), model._loss in CLASSIFICATION, validation_data is not None))
    if is_sparse(X):
        raise TypeError("X is sparse: a distributed fit (comm=) takes dense shards only; "
                        "pass X.toarray(), or train sparse input on one process")
    X, Y, labels = model._check_Xy(X, y)
    weights = model._sample_weights(X.shape[0], labels, sample_weight, class_weight)
    validation = (None if validation_data is None
                  else model._check_validation_data(validation_data))
    return X, Y, labels, weights, validation, callbacks, model._use_optimizer(optimizer)


class DistributedTrainer(Trainer):
    """Trainer's loop (callbacks, History, max_time, Ctrl-C) with each batch's gradient
    summed over the ranks. Every collective call is made by every rank in the same order:
    one Allreduce of the gradient per batch, one small one per chunk (stop requests and
    the chunk's time, so all ranks stop together and size chunks alike)."""

    def __init__(self, comm, offsets, weight_total, *args):
        super().__init__(*args)
        self.comm, self.rank = comm, comm.Get_rank()
        self.lo, self.hi = int(offsets[self.rank]), int(offsets[self.rank + 1])
        self.n_total, self.weight_total = int(offsets[-1]), weight_total
        n_params = self.plan.n_params
        # The gradient, then the _LOSS, _HITS and _FAILED slots: one buffer, one Allreduce.
        self.buffer = np.zeros(n_params + 3, dtype=self.plan.dtype)
        self.tail = self.buffer[n_params:]
        self.bounds = np.full(3, -1.0)       # apply_step's carried bounds: measure first
        self.control = np.zeros(2)           # stop requested, the last chunk's seconds
        self.chunk_seconds = 0.0
        self.n_batches = 1

    def run(self, epochs):
        plan = self.plan
        own_grads, plan.grads = plan.grads, self.buffer[:plan.n_params]
        try:
            history = super().run(epochs)
        finally:
            plan.grads = own_grads
        history.stop_reason = self.comm.bcast(history.stop_reason, root=0)
        return history

    def _stop_requested(self):
        """Collective: any rank's Ctrl-C or deadline stops every rank; the chunk size is
        adapted to the slowest rank's time, so every rank's chunks stay alike."""
        self.control[0] = float(super()._stop_requested())
        self.control[1] = self.chunk_seconds
        self.comm.Allreduce(MPI.IN_PLACE, self.control, op=MPI.MAX)
        if self.control[1] > 0:
            self._adapt_chunk(self.control[1], self.n_batches)
            self.chunk_seconds = 0.0
        return bool(self.control[0])

    def _epoch(self, epoch, epochs):
        """One epoch's batches, in chunks; its logs, or None if stopped part-way."""
        plan, optimizer, n = self.plan, self.optimizer, self.n_total
        order = epoch_order(self.model._rng, n) if self.shuffle else None
        rows, positions, starts = shard_rows(order, n, self.lo, self.hi, self.batch_size)
        self.n_batches = n_batches = len(starts) - 1
        rates = optimizer.rates(plan.epochs, plan.steps, n_batches)
        self.progress.start_epoch(epoch, epochs, n)
        telemetry = np.full((len(plan.dense_ops), 4), np.nan)
        started, batch, sums = time.perf_counter(), 0, [0.0, 0.0]
        while batch < n_batches:
            if self._stop_requested():
                self.progress.close()
                return None
            end = min(n_batches, batch + self.chunk_batches)
            chunk_started = time.perf_counter()
            self._steps(epoch, batch, end, rows, positions, starts, rates, telemetry, sums)
            self.chunk_seconds = time.perf_counter() - chunk_started
            batch = end
            done = min(n, batch * self.batch_size)
            self.progress.update(done, sums[0] / done)
        elapsed = time.perf_counter() - started
        plan.epochs += 1
        logs = {"loss": sums[0] / n}
        if self.model._loss in CLASSIFICATION:
            logs["accuracy"] = self._accuracy(sums[1], n, self.weight_total)
        if self.validation is not None:
            logs.update(self._validate())
        logs.update(lr=float(rates[-1]), epoch_time=elapsed,
                    samples_per_second=n / max(elapsed, 1e-12))
        logs.update(layer_figures(telemetry, plan.dense_activations))
        if optimizer.schedule is not None:
            optimizer.schedule.end_epoch(logs.get("val_loss", logs["loss"]))
        self.progress.end_epoch(logs)
        return logs

    def _steps(self, epoch, first, end, rows, positions, starts, rates, telemetry, sums):
        """Batches first:end of the epoch: per batch, this rank's gradient, one Allreduce,
        the same update on every rank. A rank that fails before the Allreduce still joins
        it, flagging _FAILED, so every rank raises instead of waiting for it."""
        plan, optimizer, comm, buffer, tail = (self.plan, self.optimizer, self.comm,
                                               self.buffer, self.tail)
        X, Y, labels, weights, bounds = self.X, self.Y, self.labels, self.weights, self.bounds
        shard_gradients, apply_step, allreduce = (_core.shard_gradients, _core.apply_step,
                                                  comm.Allreduce)
        B, n, last_batch = self.batch_size, self.n_total, self.n_batches - 1
        dropping = plan.has_dropout
        for k in range(first, end):
            error = None
            try:
                shard_gradients(plan, X, Y, labels, rows, positions, starts[k], starts[k + 1],
                                min(B, n - k * B), tail, weights,
                                plan.training_steps if dropping else -1)
                tail[_FAILED] = 0
            except Exception as caught:  # noqa: BLE001 - the other ranks must hear of it
                error, tail[_FAILED] = caught, 1
            allreduce(MPI.IN_PLACE, buffer)
            if tail[_FAILED] != 0:
                raise_together(comm, error)
            status = apply_step(plan, optimizer, tail, rates[k], plan.steps + 1, bounds,
                                telemetry if k == last_batch else None)
            if status:
                raise_for_status(status, k, f"epoch {epoch + 1}")
            plan.steps += 1
            plan.training_steps += 1
            sums[0] += float(tail[_LOSS])
            sums[1] += float(tail[_HITS])

    def _accuracy(self, hits, n_rows, weight_total):
        """The model's accuracy from the ranks' summed hits (its rule, global totals)."""
        total = n_rows if weight_total is None else weight_total
        if self.model._loss != Loss.CROSS_ENTROPY:  # bce counts every output
            total *= self.model.n_outputs
        return float(hits / total)

    def _validate(self):
        """val_loss and val_accuracy over every rank's validation rows together."""
        X, Y, labels = self.validation
        figures = run_together(self.comm, self.model._evaluate_checked, X, Y, labels)
        local = np.array([figures["loss"] * X.shape[0], 0.0, X.shape[0]])
        if "accuracy" in figures:
            local[1] = figures["accuracy"] * X.shape[0]
        self.comm.Allreduce(MPI.IN_PLACE, local)
        logs = {"val_loss": float(local[0] / local[2])}
        if "accuracy" in figures:
            logs["val_accuracy"] = float(local[1] / local[2])
        return logs

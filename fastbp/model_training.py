"""Sequential's training entry points (a mixin): ``gradients``, ``train_step`` and ``fit``,
with the argument checks they share. The epoch loop itself is fastbp.training's Trainer."""
import functools

import numpy as np

from ._native import core as _core
from .callbacks import check_callbacks
from .data import (check_int, check_positive_int, check_real, check_sample_weight,
                   check_sample_weight_reduction, check_targets, class_weights)
from .losses import CLASSIFICATION, Loss
from .progress import check_verbose
from .sparse import SparseRows
from .threads import blas_count, blas_threads, check_threads, for_fit
from .training import Trainer, raise_for_status, reported_figures
from .validation import split_validation


def _exclusive(method):
    """Run ``method`` holding the model's lock: the compiled core shares one workspace and
    one set of buffers per model, so calls on one model from several threads take turns
    (reentrant, so a callback inside fit may predict or save)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class Training:
    """The training methods of :class:`fastbp.Sequential` (documented there)."""

    @_exclusive
    def gradients(self, X, y, weight_decay=0.0, threads=None, sample_weight=None,
                  dropout_step=None, sample_weight_reduction="rows"):
        """Loss and its gradients on (X, y) as one batch; parameters are not changed.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features)
        y : array-like
            Class labels of shape (n_samples,) or one-hot rows for ``cross_entropy``;
            targets of shape (n_samples, n_outputs) (or (n_samples,) for one output) otherwise.
        weight_decay : float, default 0.0
            Adds ``weight_decay / 2 * sum(||W||²)`` (weights only) to the loss.
        threads : "auto", int or None
            BLAS threads for this call (it runs on one fastbp thread); None uses the
            model's ``threads`` setting.
        sample_weight : array-like of shape (n_samples,), optional
            As for :meth:`fit`: the loss is ``sum(w * loss) / n_samples``.
        dropout_step : int or None, default None
            None: no dropout, the deterministic loss that :meth:`evaluate` reports (what
            :func:`fastbp.check_gradients` and full-batch optimisers such as L-BFGS need).
            An int ``k >= 0``: with dropout, through the masks that training step ``k``
            draws (see :attr:`training_steps`; ``X`` plays that step's batch). Two calls
            with the same ``k`` and batch size use the same masks, so finite differences
            of the loss check these gradients.
        sample_weight_reduction : {"rows", "weights"}, default "rows"
            As for :meth:`fit` ("weights" divides the weight_decay term by ``sum(w) /
            n_samples`` too).

        Returns
        -------
        loss : float
        grads : list of (dW, db) or (dγ, dβ)
            One pair per layer with parameters, in layer order (Residual blocks opened):
            each Dense layer's, shaped like its weight and bias, and each affine BatchNorm's
            or LayerNorm's (copies); NaN if the loss is not finite. BatchNorm layers use the
            batch's statistics, as in training, and their running statistics do not move.
        """
        weight_decay = check_real(weight_decay, "weight_decay", 0.0)
        by_weight_sum = check_sample_weight_reduction(sample_weight_reduction)
        if dropout_step is not None:
            dropout_step = check_int(dropout_step, "dropout_step", 0)
        X, Y, labels = self._check_Xy(X, y)
        check_threads(threads)
        weights = self._sample_weights(X.shape[0], labels, sample_weight, None)
        plan = self._plan
        plan.ensure_capacity(X.shape[0], isinstance(X, SparseRows))
        threads = check_threads(self.threads if threads is None else threads)
        with blas_threads(blas_count(threads, plan.largest_gemm_flops(X.shape[0]))):
            loss = _core.gradients(plan, X, Y, labels, weight_decay, sample_weight=weights,
                                   dropout_step=-1 if dropout_step is None else dropout_step,
                                   by_weight_sum=by_weight_sum)
        if not np.isfinite(loss):  # the core skips backward then; never return stale values
            plan.grads[...] = np.nan
        grads = [(first.copy(), second.copy()) for first, second in plan.pairs(plan.grads)]
        return float(loss), grads

    @_exclusive
    def train_step(self, X, y, optimizer=None, threads=None, sample_weight=None,
                   sample_weight_reduction="rows"):
        """One optimizer update on exactly this batch; returns its loss (before the update).

        Optimizer state (moments, step count) carries over between calls with the same
        optimizer; a schedule sees this update's step number (and the epochs of earlier
        ``fit`` calls). ``threads``, ``sample_weight`` and ``sample_weight_reduction`` as
        for :meth:`fit`.
        """
        check_threads(threads)
        by_weight_sum = check_sample_weight_reduction(sample_weight_reduction)
        X, Y, labels = self._check_Xy(X, y)
        weights = self._sample_weights(X.shape[0], labels, sample_weight, None)
        optimizer = self._use_optimizer(optimizer)
        plan = self._plan
        plan.ensure_capacity(X.shape[0], isinstance(X, SparseRows))
        with self._team(threads, X.shape[0]) as size:
            status, loss_sum, n_batches, _ = _core.train_epoch(
                plan, X, Y, labels, np.zeros(0, dtype=np.intp), X.shape[0], optimizer,
                optimizer.rates(plan.epochs, plan.steps, 1), plan.steps, n_threads=size,
                sample_weight=weights, training_step=plan.training_steps,
                by_weight_sum=by_weight_sum)
        plan.steps += n_batches
        plan.training_steps += n_batches
        raise_for_status(status, n_batches, "train_step")
        return loss_sum / X.shape[0]

    @_exclusive
    def fit(self, X, y, epochs=10, batch_size=32, optimizer=None, shuffle=True, verbose=0,
            threads=None, validation_data=None, validation_split=0.0, callbacks=None,
            max_time=None, sample_weight=None, class_weight=None,
            sample_weight_reduction="rows", comm=None):
        """Train by mini-batch backpropagation.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features)
            Sparse X (any scipy.sparse format; CSR is read without a copy) is never
            densified: the first layer, which must be Dense, reads each batch's rows where
            they lie (see README, "Sparse input").
        y : array-like
            As for :meth:`gradients`.
        epochs : int, default 10
        batch_size : int, default 32
            The last batch of an epoch holds the remaining rows (it is not dropped).
        optimizer : SGD, Adam, AdamW, RMSprop or Adagrad, optional
            Defaults to the optimizer of the previous call, or ``SGD(lr=0.01, momentum=0.9)``.
            The same instance continues from the model's state; a new one starts afresh.
        shuffle : bool, default True
            Draw a new row order each epoch from the model's seeded generator.
        verbose : {0, 1, 2}, default 0
            0 is silent; 1 shows a progress bar per epoch (tqdm, if installed and writing
            to a terminal) or prints one line per epoch; 2 always prints one line per
            epoch, never a bar (as Keras). True and False mean 1 and 0; anything else
            raises.
        threads : "auto", int or None
            fastbp's team size for this call; None uses the model's ``threads`` setting.
            With "auto", fit picks between one thread and a team of the caller's BLAS
            thread count by timing them as it trains (see :class:`Sequential`).
        validation_data : (X_val, y_val), optional
            Evaluated after every epoch (``val_loss``, and ``val_accuracy`` for
            classification losses).
        validation_split : float, default 0.0
            Instead of validation_data: hold out this fraction of (X, y), drawn with the
            model's seeded generator, stratified by class for ``cross_entropy``.
        callbacks : sequence of fastbp.callbacks.Callback, optional
            See :mod:`fastbp.callbacks` (early stopping, checkpoints, CSV logs, ...).
        max_time : float, optional
            Wall-clock budget in seconds; training stops at the first chunk boundary
            (a fraction of a second) after it runs out.
        sample_weight : array-like of shape (n_samples,), optional
            Weight of each sample's loss and gradient (finite, >= 0): a batch's loss is
            ``sum(w * loss) / batch_rows``, as Keras's. The reported losses are weighted too.
        class_weight : "balanced" or dict, optional
            For ``cross_entropy``: multiplies each sample's weight by its class's;
            "balanced" uses ``n_samples / (n_classes * count)`` (scikit-learn's rule), a
            dict maps class indices to weights (others weigh 1).
        sample_weight_reduction : {"rows", "weights"}, default "rows"
            What a weighted batch's loss is divided by: "rows" its number of rows (Keras's
            rule, above); "weights" the sum of its weights, ``sum(w * loss) / sum(w)``, with
            the gradient and the optimizer's ``weight_decay`` term divided the same way
            (each scaled by ``rows / sum(w)``), as scikit-learn's MLP does. Under "weights"
            doubling a weight is the same as repeating the row within the batch; a batch
            whose weights are all 0 adds no loss, gradient or decay. Without sample or
            class weights both are the same.
        comm : mpi4py communicator, optional
            Data-parallel training over MPI: every rank of ``comm`` calls fit with its own
            shard of (X, y) and the same settings, and every rank ends with the same
            parameters: those of a one-process fit on the shards concatenated in rank
            order. See :mod:`fastbp.distributed` (and README "Beyond one machine").

        Returns
        -------
        History
            Per-epoch figures and why training stopped. Ctrl-C stops training within a
            second, keeps the updates done so far (an interrupted epoch is not in the
            history) and returns the history after printing one line.

        Raises
        ------
        DivergenceError
            If the loss or parameters become non-finite; the model keeps finite parameters
            (unless a TerminateOnNaN callback turns this into a quiet stop).
        """
        if comm is not None:
            if check_sample_weight_reduction(sample_weight_reduction):
                raise ValueError("sample_weight_reduction='weights' is not supported with "
                                 "comm= (distributed training divides each batch's loss by "
                                 "its rows); use the default 'rows'")
            from .distributed import fit as fit_distributed
            return fit_distributed(self, X, y, comm, epochs, batch_size, optimizer, shuffle,
                                   verbose, threads, validation_data, validation_split,
                                   callbacks, max_time, sample_weight, class_weight)
        epochs = check_positive_int(epochs, "epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        by_weight_sum = check_sample_weight_reduction(sample_weight_reduction)
        verbose = check_verbose(verbose)
        check_threads(threads)
        if max_time is not None:
            max_time = check_real(max_time, "max_time", 0.0, low_inclusive=False)
        validation_split = check_real(validation_split, "validation_split", 0.0, high=1.0)
        if validation_split == 1.0:
            raise ValueError("validation_split must be < 1, got 1.0")
        if validation_split and validation_data is not None:
            raise ValueError("give validation_data or validation_split, not both")
        callbacks = check_callbacks(callbacks, reported_figures(
            len(self._plan.dense_ops), self._loss in CLASSIFICATION,
            validation_data is not None or validation_split > 0))
        X, Y, labels = self._check_Xy(X, y)
        weights = self._sample_weights(X.shape[0], labels, sample_weight, class_weight)
        validation = None
        if validation_data is not None:
            validation = self._check_validation_data(validation_data)
        elif validation_split:
            X, Y, labels, weights, validation = split_validation(
                X, Y, labels, weights, validation_split, self._rng,
                self._loss == Loss.CROSS_ENTROPY)
        optimizer = self._use_optimizer(optimizer)
        batch_size = min(batch_size, X.shape[0])
        if self._plan.has_batchnorm and 1 in (batch_size, X.shape[0] % batch_size):
            raise ValueError(
                f"batch_size={batch_size} on {X.shape[0]} rows leaves a batch of 1 row, and "
                "BatchNorm needs at least 2 rows per training batch; choose another batch_size")
        self._plan.ensure_capacity(batch_size, isinstance(X, SparseRows))
        threads = check_threads(self.threads if threads is None else threads)
        with for_fit(threads, self._plan.largest_gemm_flops(batch_size)) as (size, tuner):
            trainer = Trainer(self, X, Y, labels, weights, batch_size, optimizer,
                              bool(shuffle), verbose, validation, callbacks, max_time,
                              size, tuner, by_weight_sum)
            return trainer.run(epochs)

    def _sample_weights(self, n_samples, labels, sample_weight, class_weight):
        """The per-sample weights for the core (None when every weight is 1)."""
        weights = (None if sample_weight is None
                   else check_sample_weight(sample_weight, n_samples, self.dtype))
        if class_weight is not None:
            if self._loss != Loss.CROSS_ENTROPY:
                raise ValueError("class_weight needs loss='cross_entropy' (class labels), not "
                                 f"loss={self.loss!r}; use sample_weight instead")
            per_class = class_weights(class_weight, labels, self.n_outputs).astype(self.dtype)
            weights = per_class if weights is None else weights * per_class
        return weights

    def _check_validation_data(self, validation_data):
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (X_val, y_val)")
        X = self._check_X(validation_data[0], name="validation_data[0]")
        Y, labels = check_targets(validation_data[1], X.shape[0], self.n_outputs, self._loss,
                                  self.dtype, name="validation_data[1]")
        return X, Y, labels

"""The stochastic solvers ('sgd', 'adam'): one ``Sequential.fit`` per ``fit``, with
scikit-learn's per-epoch rules in a callback (module note B of :mod:`fastbp.sklearn`)."""
import math
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from ..callbacks import Callback
from ..optimizers import SGD, Adam
from ..training import DivergenceError
from ._params import _NONFINITE, _validate_data


class _EpochRules(Callback):
    """scikit-learn's end-of-iteration bookkeeping, run by ``Sequential.fit`` after each epoch."""

    def __init__(self, estimator, n_samples, batch_size, validation, incremental,
                 sample_weight=None):
        self.estimator, self.n_samples = estimator, n_samples
        self.validation, self.incremental = validation, incremental
        # Σ over the batches of rows / Σw, the factor of alpha/2·||W||² in loss_ (below);
        # n_batches without weights. With weights it is taken over the rows in order: exact
        # with shuffle=False, an estimate of the shuffled epochs' otherwise.
        if sample_weight is None:
            self.decay_factor = -(-n_samples // batch_size)
        else:
            starts = np.arange(0, n_samples, batch_size)
            sums = np.add.reduceat(np.asarray(sample_weight, dtype=np.float64), starts)
            rows = np.diff(np.append(starts, n_samples))
            self.decay_factor = float(np.sum(rows[sums > 0] / sums[sums > 0]))
        self.loss_offset = 0.0  # _Objective.offset, set by the solver
        self.stopped = self.hit_max_iter = False

    def on_train_begin(self, logs):
        self.weight_norm2 = self.estimator._weight_norm2()

    def on_epoch_end(self, epoch, logs):
        est = self.estimator
        norm2 = est._weight_norm2()
        # scikit-learn adds alpha/(2·Σw)·||W||² to each batch's mean loss (before its update;
        # Σw = B without weights) and averages the batches weighted by rows:
        # alpha·Σ(B/Σw)/(2·n)·mean ||W||².
        penalty = (0.25 * est.alpha * self.decay_factor / self.n_samples
                   * (self.weight_norm2 + norm2))
        self.weight_norm2 = norm2
        est.n_iter_ += 1
        est.t_ += self.n_samples
        est.loss_ = float(est._objective.report_scale * logs["loss"] + penalty
                          + self.loss_offset)
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print("Iteration %d, loss = %.8f" % (est.n_iter_, est.loss_))
        est._update_no_improvement_count(self.validation)
        est._iteration_ends()
        if est._no_improvement_count > est.n_iter_no_change:
            if est._trigger_stopping():
                self.stopped = True
                self.model.stop_training = True
            else:
                est._no_improvement_count = 0
        if not (self.stopped or self.incremental) and est.n_iter_ == est.max_iter:
            self.hit_max_iter = True



class _StochasticSolver:
    """'sgd' and 'adam' for ``_BaseMLP`` (a mixin): the fit, its optimizer, the learning
    rate schedules, the stopping rules and the early-stopping split."""

    def _reset_stochastic_state(self):
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None
        self._best_parameters = None  # early stopping's best validated weights, copied on use

    def _fit_stochastic(self, X, targets, sample_weight, incremental, rng, pending,
                        validation_data):
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if not hasattr(self, "loss_curve_"):  # e.g. switched from 'lbfgs' to 'adam'
            self._reset_stochastic_state()
        validation = None
        if validation_data is not None:
            validation = self._validation_from(validation_data)
            X_train, train, sample_weight_train = X, targets, sample_weight
        elif self.early_stopping:
            X_train, train, sample_weight_train, validation = self._split(
                X, targets, sample_weight, rng)
        else:
            X_train, train, sample_weight_train = X, targets, sample_weight
        if validation is not None and self.validation_scores_ is None:
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
        self._ensure_model(pending, rng)
        n_samples = X_train.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        optimizer = self._optimizer_for(incremental, batch_size, n_samples)
        rules = _EpochRules(self, n_samples, batch_size, validation, incremental,
                            sample_weight_train)
        rules.loss_offset = self._objective.offset(
            np.asarray(train.fastbp, dtype=np.float64), sample_weight_train, batch_size)
        extra = {}
        if sample_weight_train is not None:  # scikit-learn divides each batch by its Σw
            extra = dict(sample_weight=sample_weight_train, sample_weight_reduction="weights")
        self.n_iter_ = 0
        early_stopping = self.early_stopping and validation is not None
        if early_stopping and self._best_parameters is None:
            self._best_parameters = self.model_.parameters.copy()
        try:
            history = self.model_.fit(
                X_train, train.fastbp, epochs=1 if incremental else self.max_iter,
                batch_size=batch_size, optimizer=optimizer, shuffle=bool(self.shuffle),
                verbose=0, callbacks=[rules], **extra)
        except DivergenceError as error:
            if not early_stopping:
                raise ValueError(self._nonfinite_message(error)) from error
            # scikit-learn (since its issue 29504) ends such a fit and keeps the best
            # validated weights; the core refused the step, so nothing non-finite is kept.
            if self.verbose:
                print("Non-finite loss or update: stopping, with the best validated weights.")
        else:
            if history.stop_reason == "interrupted":
                warnings.warn("Training interrupted by user.")
            elif rules.hit_max_iter:
                warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                              "optimization hasn't converged yet." % self.max_iter,
                              ConvergenceWarning)
        if early_stopping:
            self.model_.parameters[...] = self._best_parameters

    def _nonfinite_message(self, error):
        """scikit-learn's sentence first (code matching it keeps working), then fastbp's
        account of where it happened and, in float32, the range that overflowed."""
        message = f"{_NONFINITE} fastbp: {error}"
        if self.model_.dtype == np.float32:
            message += (" The network computes in float32 (dtype='float32', the default), "
                        "whose values overflow beyond about 3.4e38: dtype='float64' has the "
                        "range scikit-learn's MLP has.")
        return message

    def _optimizer_for(self, incremental, batch_size, n_samples):
        """The fastbp optimizer of module note C; a new one (fresh state) for each ``fit``,
        the model's current one for ``partial_fit``. With sample weights scikit-learn
        divides alpha by the batch's sum of weights: fit's "weights" reduction scales this
        weight_decay by B / Σw for each batch."""
        c = self._objective.grad_scale
        kind = SGD if self.solver == "sgd" else Adam
        optimizer = self.model_.optimizer
        if not incremental or type(optimizer) is not kind:
            self._learning_rate = float(self.learning_rate_init)
            if kind is SGD:
                optimizer = SGD(lr=self._learning_rate / c, momentum=float(self.momentum),
                                nesterov=bool(self.nesterovs_momentum and self.momentum > 0))
            else:
                optimizer = Adam(lr=float(self.learning_rate_init),
                                 betas=(float(self.beta_1), float(self.beta_2)),
                                 eps=c * float(self.epsilon))
            self._steps = 0
        optimizer.weight_decay = c * float(self.alpha) / batch_size
        self._batches_per_epoch = -(-n_samples // batch_size)
        self._set_adam_epsilon(optimizer)
        return optimizer

    def _set_adam_epsilon(self, optimizer):
        """scikit-learn adds epsilon after Adam's bias correction, fastbp (as torch) before
        the second-moment correction; so fastbp's eps for step t is c·epsilon/sqrt(1 -
        beta_2**t). Set per epoch, for the epoch's middle step (exact with one batch)."""
        if not isinstance(optimizer, Adam):
            return
        t = self._steps + 1 + (self._batches_per_epoch - 1) // 2
        correction = math.sqrt(1.0 - float(self.beta_2) ** t)
        optimizer.eps = self._objective.grad_scale * float(self.epsilon) / max(correction, 1e-300)

    def _set_learning_rate(self, rate):
        """Change scikit-learn's SGD rate between epochs, rescaling fastbp's momentum buffer
        by old/new so that sklearn's velocity (which keeps the old rate) is unchanged."""
        old, self._learning_rate = self._learning_rate, rate
        optimizer = self.model_.optimizer
        optimizer.lr = rate / self._objective.grad_scale
        state = self.model_._plan.state
        if optimizer.momentum and state.shape == self.model_.parameters.shape:
            state *= old / rate

    def _iteration_ends(self):
        self._steps += self._batches_per_epoch
        self._set_adam_epsilon(self.model_.optimizer)
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._set_learning_rate(float(self.learning_rate_init)
                                    / (self.t_ + 1) ** float(self.power_t))

    def _trigger_stopping(self):
        """scikit-learn's rule once the count runs out: 'adaptive' SGD divides the rate by
        5 (stopping below 1e-6); everything else stops. True means stop."""
        if self.early_stopping:
            message = ("Validation score did not improve more than tol=%f for %d consecutive "
                       "epochs." % (self.tol, self.n_iter_no_change))
        else:
            message = ("Training loss did not improve more than tol=%f for %d consecutive "
                       "epochs." % (self.tol, self.n_iter_no_change))
        if self.solver != "sgd" or self.learning_rate != "adaptive":
            if self.verbose:
                print(message + " Stopping.")
            return True
        if self._learning_rate <= 1e-6:
            if self.verbose:
                print(message + " Learning rate too small. Stopping.")
            return True
        self._set_learning_rate(self._learning_rate / 5.0)
        if self.verbose:
            print(message + " Setting learning rate to %f" % self._learning_rate)
        return False

    def _update_no_improvement_count(self, validation):
        if validation is not None:
            score = self._validation_score(*validation)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            if self.early_stopping:
                if score < self.best_validation_score_ + self.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                if self.early_stopping:
                    self._best_parameters[...] = self.model_.parameters
            if self.early_stopping:
                return
        if self.loss_curve_[-1] > self.best_loss_ - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if self.loss_curve_[-1] < self.best_loss_:
            self.best_loss_ = self.loss_curve_[-1]

    def _validation_score(self, X, y, sample_weight):
        output = self.model_.predict(X)
        if not np.all(np.isfinite(output)):
            return np.nan
        predicted = self._from_output(output)
        return float(self._score_function(y, predicted, sample_weight=sample_weight))

    def _split(self, X, targets, sample_weight, rng):
        """Hold out ``validation_fraction`` of the rows (scikit-learn's train_test_split on
        its random stream); stratified for single-label classification when possible."""
        stratify = self._stratify_labels(targets, self.validation_fraction)
        arrays = [X, np.arange(X.shape[0])]
        if sample_weight is not None:
            arrays.append(sample_weight)
        parts = train_test_split(*arrays, random_state=rng, test_size=self.validation_fraction,
                                 stratify=stratify)
        X_train, X_val, rows_train, rows_val = parts[:4]
        sw_train, sw_val = parts[4:6] if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        return (X_train, targets.take(rows_train), sw_train,
                (X_val, targets.original(rows_val), sw_val))

    def _stratify_labels(self, targets, fraction):
        return None

    def _validation_from(self, validation_data):
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (X_val, y_val)")
        X_val = _validate_data(self, validation_data[0], reset=False, dtype=self._np_dtype())
        y_val = self._check_validation_targets(validation_data[1], X_val.shape[0])
        return X_val, y_val, None

"""scikit-learn drop-ins: ``MLPClassifier`` and ``MLPRegressor`` trained by fastbp's core.

Change one import line::

    from fastbp.sklearn import MLPClassifier    # was: from sklearn.neural_network import ...

A. What matches scikit-learn. Every parameter of ``sklearn.neural_network.MLPClassifier`` /
   ``MLPRegressor`` with its name, default and meaning; the same fitted attributes; ``fit``,
   ``partial_fit``, ``predict``, ``predict_proba``, ``predict_log_proba``, ``score``;
   cloning, pipelines, grid search, pickling, string labels and multi-label indicator
   targets. The initial weights are scikit-learn's (Glorot-uniform, drawn in the same order
   from the same ``random_state``), so both start from the same point; so does the
   early-stopping split (``train_test_split`` on the same random stream).

B. How it trains. One ``Sequential.fit`` call per ``fit`` (``partial_fit``: one epoch); the
   per-epoch rules (``loss_curve_``, ``tol`` / ``n_iter_no_change``, 'invscaling' and
   'adaptive' rates, early stopping on the validation score, best weights) run in a
   callback between the compiled epochs: Python per epoch, never per batch. 'lbfgs' is
   ``scipy.optimize.minimize(method="L-BFGS-B")`` on the flat parameter vector with
   ``Sequential.gradients`` as the full-batch objective.

C. The exact mapping. scikit-learn's gradient of a batch of ``B`` rows is ``g + alpha·W/B``,
   ``g`` the gradient of its data loss: the batch mean of log-loss (softmax), of binary
   log-loss summed over the outputs (logistic), or of half the squared error summed over the
   outputs (identity). fastbp's losses average over the outputs too and MSE has no half, so
   fastbp's data gradient is ``c·g`` with ``c = 1`` (softmax), ``1/n_outputs`` (logistic),
   ``2/n_outputs`` (MSE). Hence, with scikit-learn's rate ``lr``:

   * SGD: ``fastbp.SGD(lr=lr/c, momentum, nesterov, weight_decay=c·alpha/B)``. sklearn's
     velocity ``v = momentum·v - lr·G`` is fastbp's (torch's) buffer scaled by ``-lr/c``;
     when sklearn's rate changes between epochs ('invscaling', 'adaptive') the buffer (the
     model's optimizer state) is rescaled by ``old/new``, so the two stay the same algorithm
     step for step.
   * Adam: ``fastbp.Adam(lr, betas=(beta_1, beta_2), eps=c·epsilon, weight_decay=c·alpha/B)`` (but
     see D for ``eps``).
   * L-BFGS: the objective and gradient handed to SciPy are fastbp's divided by ``c``, with
     ``weight_decay = c·alpha/n_samples``.

   ``loss_`` and ``loss_curve_`` are scikit-learn's numbers: fastbp's epoch loss times
   ``n_outputs`` (logistic) or ``1/2`` (MSE), plus ``alpha/(2·B)·||W||²`` per batch.

D. Where it is not bit-for-bit scikit-learn (float64, same data order):

   * the last, partial batch of an epoch gets ``weight_decay = c·alpha/B`` like the others,
     where scikit-learn divides alpha by that batch's own size;
   * Adam: scikit-learn adds ``epsilon`` after the bias corrections, fastbp (as torch)
     before the second moment's, so step ``t`` needs ``eps = c·epsilon/sqrt(1 - beta_2**t)``;
     it is set once per epoch, for the epoch's middle step: exact with one batch per epoch,
     otherwise off by up to a few times in the first few hundred steps. Adam's sign-like
     steps on near-zero gradients make that visible (about 1e-5 after an epoch), and
     trajectories then drift apart, though not in accuracy;
   * the L2 term of ``loss_`` uses the mean of ``||W||²`` at the start and end of the
     epoch instead of its value before each batch;
   * with sample weights, scikit-learn divides alpha by each batch's sum of weights; here
     by ``B`` times the mean weight;
   * L-BFGS on several regression outputs: scikit-learn hands SciPy a loss averaged over
     the outputs with the gradient of their sum; fastbp's pair is consistent (the sum), so
     the paths differ while the minimiser is the same;
   * ``shuffle=True`` draws row orders from fastbp's generator (seeded from
     ``random_state``), not scikit-learn's, so shuffled runs agree in distribution only;
   * early stopping stratifies the split for every single-label problem, as scikit-learn's
     documentation says (its code stratifies binary problems only), unless a class has
     fewer than two samples or the split is too small to hold every class;
   * ``momentum`` must be < 1; sparse input is refused (fastbp is dense-only).

E. What is extra: ``dtype`` (float32 by default, for speed), ``activation`` as a list (one
   per hidden layer, any fastbp activation), ``dropout``, ``class_weight`` (classifier),
   ``loss`` choices of fastbp (regressor), ``fit(..., validation_data=(X_val, y_val))``, and
   ``model_``, the trained :class:`fastbp.Sequential`.
"""
import math
import numbers
import warnings

import numpy as np

try:
    import scipy.optimize
    import sklearn
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state, column_or_1d
    from sklearn.utils.class_weight import compute_class_weight
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import (check_classification_targets, type_of_target,
                                          unique_labels)
    from sklearn.utils.validation import check_is_fitted
except ImportError as error:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "fastbp.sklearn needs scikit-learn, an optional dependency of fastbp: install it "
        "with `pip install 'fastbp[sklearn]'` (or `pip install 'scikit-learn>=1.3'`)") from error

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

from .activations import activation_code, activation_name
from .layers import Dense, Dropout
from .losses import CLASSIFICATION, Loss, loss_code
from .model import Sequential
from .optimizers import SGD, Adam
from .training import DivergenceError
from .callbacks import Callback

__all__ = ["MLPClassifier", "MLPRegressor"]

_MIN_SKLEARN = (1, 3)
if tuple(int(part) for part in sklearn.__version__.split(".")[:2]
         if part.isdigit()) < _MIN_SKLEARN:  # pragma: no cover
    raise ImportError(f"fastbp.sklearn needs scikit-learn >= 1.3, found {sklearn.__version__}: "
                      "`pip install -U 'fastbp[sklearn]'`")

_SOLVERS = ("lbfgs", "sgd", "adam")
_RATE_SCHEDULES = ("constant", "invscaling", "adaptive")
_SKLEARN_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
_REGRESSION_ALIASES = {"squared_error": "mse"}

_NONFINITE = ("Solver produced non-finite parameter weights. The input data may contain large "
              "values and need to be preprocessed.")


# ---------------------------------------------------------------------- parameter checks
def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def _check_number(owner, name, low=None, high=None, low_open=False, high_open=False,
                  integer=False, allow_inf=False):
    value = getattr(owner, name)
    kind = numbers.Integral if integer else numbers.Real
    if _is_bool(value) or not isinstance(value, kind):
        if not (allow_inf and isinstance(value, numbers.Real) and value == math.inf):
            raise ValueError(f"The '{name}' parameter of {type(owner).__name__} must be "
                             f"{'an int' if integer else 'a float'}, got {value!r}")
    if allow_inf and value == math.inf:
        return value
    bad = ((low is not None and (value <= low if low_open else value < low))
           or (high is not None and (value >= high if high_open else value > high))
           or (not integer and not math.isfinite(value)))
    if bad:
        opening = "(" if low_open or low is None else "["
        closing = ")" if high_open or high is None else "]"
        bounds = f"{'-inf' if low is None else low}, {'inf' if high is None else high}"
        span = f"{opening}{bounds}{closing}"
        raise ValueError(f"The '{name}' parameter of {type(owner).__name__} must be in "
                         f"{span}, got {value!r}")
    return value


def _check_option(owner, name, options):
    value = getattr(owner, name)
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"The '{name}' parameter of {type(owner).__name__} must be one of "
                         f"{', '.join(map(repr, options))}, got {value!r}")
    return value


def _check_bool(owner, name):
    value = getattr(owner, name)
    if not _is_bool(value):
        raise ValueError(f"The '{name}' parameter of {type(owner).__name__} must be a bool, "
                         f"got {value!r}")
    return bool(value)


class _Objective:
    """fastbp's loss for a problem and its scale against scikit-learn's (module note C).

    ``grad_scale`` (c): fastbp's data gradient over scikit-learn's; ``report_scale``:
    scikit-learn's reported loss over fastbp's."""

    def __init__(self, loss, grad_scale, report_scale):
        self.loss, self.grad_scale, self.report_scale = loss, grad_scale, report_scale


class _EpochRules(Callback):
    """scikit-learn's end-of-iteration bookkeeping, run by ``Sequential.fit`` after each epoch."""

    def __init__(self, estimator, n_samples, batch_size, validation, incremental):
        self.estimator, self.n_samples = estimator, n_samples
        self.n_batches = -(-n_samples // batch_size)
        self.validation, self.incremental = validation, incremental
        self.stopped = self.hit_max_iter = False

    def on_train_begin(self, logs):
        self.weight_norm2 = self.estimator._weight_norm2()

    def on_epoch_end(self, epoch, logs):
        est = self.estimator
        norm2 = est._weight_norm2()
        # scikit-learn adds alpha/(2·B)·||W||² to each batch's mean loss (before its update)
        # and averages the batches weighted by rows: alpha·n_batches/(2·n)·mean ||W||².
        penalty = 0.25 * est.alpha * self.n_batches / self.n_samples * (self.weight_norm2 + norm2)
        self.weight_norm2 = norm2
        est.n_iter_ += 1
        est.t_ += self.n_samples
        est.loss_ = float(est._objective.report_scale * logs["loss"] + penalty)
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


class _BaseMLP(BaseEstimator):
    """Shared parameters, network construction and solvers of the two estimators."""

    def _init_params(self, hidden_layer_sizes, activation, solver, alpha, batch_size,
                     learning_rate, learning_rate_init, power_t, max_iter, shuffle,
                     random_state, tol, verbose, warm_start, momentum, nesterovs_momentum,
                     early_stopping, validation_fraction, beta_1, beta_2, epsilon,
                     n_iter_no_change, max_fun, dropout, dtype):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.dtype = dtype

    # ------------------------------------------------------------------ parameters
    def _check_params(self):
        """Validate the parameters (at fit time, as scikit-learn does); return the hidden
        layer sizes as a tuple."""
        sizes = self.hidden_layer_sizes
        iterable = hasattr(sizes, "__iter__") and not isinstance(sizes, str)
        sizes = list(sizes) if iterable else [sizes]
        for size in sizes:
            if _is_bool(size) or not isinstance(size, numbers.Integral):
                raise ValueError("hidden_layer_sizes must hold ints, got "
                                 f"{self.hidden_layer_sizes!r}")
        if any(size <= 0 for size in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes}.")
        self._hidden_activations(len(sizes))
        self._dropout_rates(len(sizes))
        _check_option(self, "solver", _SOLVERS)
        _check_number(self, "alpha", low=0.0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _check_number(self, "batch_size", low=1, integer=True)
        _check_option(self, "learning_rate", _RATE_SCHEDULES)
        _check_number(self, "learning_rate_init", low=0.0, low_open=True)
        _check_number(self, "power_t", low=0.0)
        _check_number(self, "max_iter", low=1, integer=True)
        _check_bool(self, "shuffle")
        _check_number(self, "tol", low=0.0)
        if not isinstance(self.verbose, (numbers.Integral, np.bool_)):
            raise ValueError(f"verbose must be a bool or an int, got {self.verbose!r}")
        _check_bool(self, "warm_start")
        # scikit-learn allows momentum == 1; fastbp's SGD needs < 1 (a velocity that never
        # decays is not a useful setting).
        _check_number(self, "momentum", low=0.0, high=1.0, high_open=True)
        _check_bool(self, "nesterovs_momentum")
        _check_bool(self, "early_stopping")
        _check_number(self, "validation_fraction", low=0.0, high=1.0, high_open=True)
        _check_number(self, "beta_1", low=0.0, high=1.0, high_open=True)
        _check_number(self, "beta_2", low=0.0, high=1.0, high_open=True)
        _check_number(self, "epsilon", low=0.0, low_open=True)
        _check_number(self, "n_iter_no_change", low=1, integer=True, allow_inf=True)
        _check_number(self, "max_fun", low=1, integer=True)
        self._np_dtype()
        return tuple(int(size) for size in sizes)

    def _np_dtype(self):
        try:
            dtype = np.dtype(self.dtype) if self.dtype is not None else None
        except TypeError:
            dtype = None
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        return dtype

    def _hidden_activations(self, n_hidden):
        """Canonical fastbp activation name of each hidden layer."""
        activation = self.activation
        if isinstance(activation, str):
            names = [activation] * n_hidden
        elif isinstance(activation, (list, tuple)):
            names = list(activation)
            if len(names) != n_hidden:
                raise ValueError(f"activation is a list of {len(names)} names, but there are "
                                 f"{n_hidden} hidden layers (hidden_layer_sizes)")
        else:
            raise ValueError("activation must be one of 'identity', 'logistic', 'tanh', "
                             f"'relu' (or a list, one per hidden layer), got {activation!r}")
        for name in names:
            if not isinstance(name, str):
                raise ValueError(f"activation names must be str, got {name!r}")
            activation_code(name)  # raises ValueError listing the valid names
        return [activation_name(activation_code(name)) for name in names]

    def _dropout_rates(self, n_hidden):
        rates = self.dropout
        rates = list(rates) if isinstance(rates, (list, tuple)) else [rates] * n_hidden
        if len(rates) != n_hidden:
            raise ValueError(f"dropout is a list of {len(rates)} rates, but there are "
                             f"{n_hidden} hidden layers")
        for rate in rates:
            if _is_bool(rate) or not isinstance(rate, numbers.Real) or not 0.0 <= rate < 1.0:
                raise ValueError(f"dropout rates must be floats in [0, 1), got {self.dropout!r}")
        return [float(rate) for rate in rates]

    # ------------------------------------------------------------------ network
    def _layer_specs(self, sizes):
        """Dense (and Dropout) specs of the network, widths ``sizes``."""
        activations = self._hidden_activations(len(sizes) - 2)
        rates = self._dropout_rates(len(sizes) - 2)
        if any(rates) and self.solver == "lbfgs":
            raise ValueError("dropout needs a stochastic solver ('sgd' or 'adam'), not 'lbfgs'")
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i == len(sizes) - 2:
                layers.append(Dense(n_in, n_out, None, init="zeros"))
            else:
                layers.append(Dense(n_in, n_out, activations[i], init="zeros"))
                if rates[i]:
                    layers.append(Dropout(rates[i]))
        return layers

    def _initial_parameters(self, sizes, rng):
        """scikit-learn's initialisation: per layer, W then b uniform in ±sqrt(f/(in+out)),
        f = 2 for logistic units and 6 otherwise, drawn in this order from ``rng``. With a
        list of activations each hidden layer uses its own, the output layer the last one's."""
        hidden = self._hidden_activations(len(sizes) - 2)
        if not hidden and isinstance(self.activation, str):
            hidden = [activation_name(activation_code(self.activation))]
        parameters = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            logistic = bool(hidden) and hidden[min(i, len(hidden) - 1)] == "sigmoid"
            bound = np.sqrt((2.0 if logistic else 6.0) / (n_in + n_out))
            weight = rng.uniform(-bound, bound, (n_in, n_out))
            bias = rng.uniform(-bound, bound, n_out)
            parameters.append((weight, bias))
        return parameters

    def _build_model(self, specs, parameters, seed):
        self.model_ = Sequential(specs, loss=self._objective.loss, dtype=self._np_dtype(),
                                 seed=seed)
        for layer, (weight, bias) in zip(self._dense_layers(), parameters):
            layer.weight[...] = weight
            layer.bias[...] = bias
        self._expose_parameters()

    def _dense_layers(self):
        return [layer for layer in self.model_.layers
                if getattr(layer, "weight", None) is not None]

    def _expose_parameters(self):
        """coefs_ and intercepts_: views into the model's flat parameter buffer."""
        layers = self._dense_layers()
        self.coefs_ = [layer.weight for layer in layers]
        self.intercepts_ = [layer.bias for layer in layers]

    def _weight_norm2(self):
        n_weights = sum(coef.size for coef in self.coefs_)
        weights = self.model_.parameters[:n_weights]
        return float(np.dot(weights, weights))

    def __getstate__(self):
        # coefs_ / intercepts_ are views into model_; pickle the model only and rebuild
        # the views on load, so they stay views.
        state = dict(super().__getstate__())
        state.pop("coefs_", None)
        state.pop("intercepts_", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "model_" in self.__dict__:
            self._expose_parameters()

    # ------------------------------------------------------------------ fitting
    def _fit(self, X, y, sample_weight=None, incremental=False, validation_data=None):
        hidden = self._check_params()
        first_pass = (getattr(self, "model_", None) is None
                      or (not self.warm_start and not incremental))
        X, targets, sample_weight = self._validate_input(X, y, sample_weight, incremental,
                                                          reset=first_pass)
        n_outputs = targets.n_outputs
        sizes = (X.shape[1], *hidden, n_outputs)
        self._objective = self._make_objective(n_outputs)
        rng = check_random_state(self.random_state)
        pending = None
        if first_pass:
            pending = self._initialize(sizes, rng)
        elif tuple(self._sizes) != sizes:
            raise ValueError(f"the fitted network has layer widths {tuple(self._sizes)}; "
                             f"warm_start and partial_fit need the same, got {sizes}")
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, targets, sample_weight, rng, pending)
        else:
            self._fit_stochastic(X, targets, sample_weight, incremental, rng, pending,
                                 validation_data)
        if not np.all(np.isfinite(self.model_.parameters)):
            raise ValueError(_NONFINITE)
        return self

    def _class_weight_of(self):
        return None

    def _initialize(self, sizes, rng):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = sizes[-1]
        self.n_layers_ = len(sizes)
        self._sizes = sizes
        self.out_activation_ = self._output_activation()
        if self.solver != "lbfgs":
            self._reset_stochastic_state()
        return self._layer_specs(sizes), self._initial_parameters(sizes, rng)

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
        model = getattr(self, "model_", None)
        self._best_parameters = None if model is None else model.parameters.copy()

    def _ensure_model(self, pending, rng):
        """Build the model on the first pass (``pending``: its specs and initial weights):
        after the initial weights and the validation split have taken their draws from
        ``rng`` (scikit-learn's order), seed fastbp's shuffling generator with the next."""
        if pending is not None:
            specs, parameters = pending
            self._build_model(specs, parameters, int(rng.randint(np.iinfo(np.int32).max)))
            self._best_parameters = self.model_.parameters.copy()

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
        rules = _EpochRules(self, n_samples, batch_size, validation, incremental)
        extra = {}
        if sample_weight_train is not None:  # mean 1: a batch's weighted mean is scikit-learn's
            extra["sample_weight"] = sample_weight_train / np.mean(sample_weight_train)
        self.n_iter_ = 0
        try:
            history = self.model_.fit(
                X_train, train.fastbp, epochs=1 if incremental else self.max_iter,
                batch_size=batch_size, optimizer=optimizer, shuffle=bool(self.shuffle),
                verbose=0, callbacks=[rules], **extra)
        except DivergenceError as error:
            raise ValueError(_NONFINITE) from error
        if history.stop_reason == "interrupted":
            warnings.warn("Training interrupted by user.")
        elif rules.hit_max_iter:
            warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                          "optimization hasn't converged yet." % self.max_iter,
                          ConvergenceWarning)
        if self.early_stopping and validation is not None:
            self.model_.parameters[...] = self._best_parameters

    def _optimizer_for(self, incremental, batch_size, n_samples):
        """The fastbp optimizer of module note C; a new one (fresh state) for each ``fit``,
        the model's current one for ``partial_fit``. With sample weights scikit-learn
        divides alpha by the batch's sum of weights: B, as the weights are scaled to mean 1."""
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
                    self._best_parameters = self.model_.parameters.copy()
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

    def _fit_lbfgs(self, X, targets, sample_weight, rng, pending):
        self._ensure_model(pending, rng)
        model, c = self.model_, self._objective.grad_scale
        n_samples = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
        weight_decay = c * float(self.alpha) / n_samples
        parameters = model.parameters
        extra = {}
        if sample_weight is not None:  # fastbp divides by rows, scikit-learn by total weight
            extra["sample_weight"] = sample_weight * (X.shape[0] / n_samples)

        def objective(flat):
            parameters[...] = flat
            loss, grads = model.gradients(X, targets.fastbp, weight_decay=weight_decay, **extra)
            gradient = np.concatenate([dW.ravel() for dW, _ in grads] + [db for _, db in grads])
            return loss / c, gradient.astype(np.float64) / c

        def report(intermediate_result):  # SciPy passes the OptimizeResult by this name
            print("Iteration %d, loss = %.8f" % (report.iteration, intermediate_result.fun))
            report.iteration += 1
        report.iteration = 1

        result = scipy.optimize.minimize(
            objective, parameters.astype(np.float64), method="L-BFGS-B", jac=True,
            callback=report if self.verbose else None,
            options={"maxfun": int(self.max_fun), "maxiter": int(self.max_iter),
                     "gtol": float(self.tol)})
        parameters[...] = result.x
        self.n_iter_ = min(result.nit, int(self.max_iter))
        if result.status != 0:
            message = (f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                       f"(status={result.status}):\n{result.message}\n")
            if self.n_iter_ == self.max_iter:
                message += ("\nIncrease the number of iterations to improve the convergence "
                            f"(max_iter={self.max_iter}).")
            warnings.warn(message, ConvergenceWarning)
        # scikit-learn's loss_: its reported loss (see note C) plus alpha/(2n)·||W||².
        norm2 = self._weight_norm2()
        data_loss = c * float(result.fun) - 0.5 * weight_decay * norm2
        self.loss_ = (self._objective.report_scale * data_loss
                      + 0.5 * float(self.alpha) * norm2 / n_samples)

    def _check_sample_weight(self, sample_weight, n_samples):
        if sample_weight is None:
            return None
        if isinstance(sample_weight, numbers.Number):
            weights = np.full(n_samples, sample_weight, dtype=np.float64)
        else:
            weights = np.asarray(sample_weight, dtype=np.float64)
        if weights.shape != (n_samples,):
            raise ValueError(f"sample_weight.shape == {weights.shape}, expected ({n_samples},)!")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError("sample_weight must be finite and non-negative")
        if not np.any(weights):
            raise ValueError("Sample weights must contain at least one non-zero number.")
        return weights

    # ------------------------------------------------------------------ inference
    def _output(self, X):
        """The network's output for X, in float64 unless X is float32 (as scikit-learn's
        outputs follow X's dtype), whatever the model's dtype."""
        check_is_fitted(self)
        float32_input = getattr(X, "dtype", None) == np.float32
        X = _validate_data(self, X, reset=False, dtype=self._np_dtype())
        output = self.model_.predict(X)
        return output if float32_input else output.astype(np.float64, copy=False)

    def _stochastic(self):
        if self.solver not in ("sgd", "adam"):
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True


class _Targets:
    """Training targets in three forms: as fastbp takes them, as given (for scores), and
    how many outputs they need."""

    def __init__(self, fastbp_targets, original, n_outputs):
        self.fastbp, self._original, self.n_outputs = fastbp_targets, original, n_outputs

    def take(self, rows):
        return _Targets(self.fastbp[rows], self._original[rows], self.n_outputs)

    def original(self, rows):
        return self._original[rows]


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier``, trained by fastbp.

    Takes every parameter of ``sklearn.neural_network.MLPClassifier`` with the same name,
    default and meaning, and sets the same fitted attributes; see the module docstring of
    :mod:`fastbp.sklearn` for how it maps onto fastbp and the few places where it is not
    bit-for-bit scikit-learn. Multiclass problems use a softmax output and log-loss;
    binary problems one logistic output; multi-label indicator targets one logistic output
    per label with binary log-loss.

    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        Width of each hidden layer.
    activation : {'identity', 'logistic', 'tanh', 'relu'} or list of str, default='relu'
        Activation of the hidden layers; a list gives one per hidden layer and may use any
        fastbp activation (e.g. 'leaky_relu').
    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
    alpha : float, default=0.0001
        L2 strength: each batch's loss gets ``alpha / (2 * batch rows) * ||W||²``.
    batch_size : int or 'auto', default='auto'
        'auto' is ``min(200, n_samples)``.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Schedule for ``solver='sgd'``: 'invscaling' is ``learning_rate_init / (t + 1) **
        power_t`` after each epoch, t counting samples; 'adaptive' divides the rate by 5
        whenever ``n_iter_no_change`` epochs fail to improve by ``tol``.
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start
        As scikit-learn's.
    momentum : float in [0, 1), default=0.9
    nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2, epsilon,
    n_iter_no_change, max_fun
        As scikit-learn's.
    class_weight : dict, 'balanced' or None, default=None
        Extra: weight of each class in the loss (multiplies ``sample_weight``); 'balanced'
        is ``n_samples / (n_classes * count(class))``. Single-label problems only.
    dropout : float or list of float, default=0.0
        Extra: dropout rate after each hidden layer (a list: one per hidden layer), as a
        :class:`fastbp.Dropout` on its output while training (never when predicting);
        'sgd' and 'adam' only. The masks are seeded by ``random_state``.
    dtype : {'float32', 'float64'}, default='float32'
        Extra: precision of the parameters and arithmetic. float32 is about twice as fast;
        use float64 to compare with scikit-learn digit for digit.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, t_
        As scikit-learn's (only after a stochastic solver, as there).
    coefs_ : list of ndarray of shape (n_in, n_out)
        Views into ``model_.parameters``: writing into them changes the model.
    intercepts_ : list of ndarray of shape (n_out,)
        Views, as ``coefs_``.
    n_features_in_, feature_names_in_, n_iter_, n_layers_, n_outputs_, out_activation_
        As scikit-learn's.
    model_ : fastbp.Sequential
        The trained network (save it with ``model_.save``).
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 class_weight=None, dropout=0.0, dtype="float32"):
        self._init_params(hidden_layer_sizes, activation, solver, alpha, batch_size,
                          learning_rate, learning_rate_init, power_t, max_iter, shuffle,
                          random_state, tol, verbose, warm_start, momentum, nesterovs_momentum,
                          early_stopping, validation_fraction, beta_1, beta_2, epsilon,
                          n_iter_no_change, max_fun, dropout, dtype)
        self.class_weight = class_weight

    def fit(self, X, y, sample_weight=None, validation_data=None):
        """Fit the model to X and y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a multi-label indicator matrix.
        sample_weight : array-like of shape (n_samples,), optional
        validation_data : (X_val, y_val), optional
            Extra: score this set after every epoch (``validation_scores_``); with
            ``early_stopping=True`` it replaces the held-out ``validation_fraction``.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False, validation_data=validation_data)

    @available_if(lambda self: self._stochastic())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y); ``classes`` (all the labels) is required on the first call."""
        if getattr(self, "classes_", None) is None and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None:
            if getattr(self, "classes_", None) is not None:
                if not np.array_equal(self.classes_, unique_labels(classes)):
                    raise ValueError("`classes=%r` is not the same as on last call to "
                                     "partial_fit, was: %r" % (classes, self.classes_))
            else:
                self.classes_ = unique_labels(classes)
                self._label_binarizer = LabelBinarizer()
                if type_of_target(y).startswith("multilabel"):
                    self._label_binarizer.fit(y)
                else:
                    self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def _make_objective(self, n_outputs):
        if self._label_binarizer.y_type_ == "multiclass":
            return _Objective("cross_entropy", 1.0, 1.0)
        return _Objective("binary_cross_entropy", 1.0 / n_outputs, float(n_outputs))

    def _output_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _class_weight_of(self):
        return self.class_weight

    def _validate_input(self, X, y, sample_weight, incremental, reset):
        X, y = _validate_data(self, X, y, multi_output=True, dtype=self._np_dtype(),
                              reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same "
                                     "classes as in the previous call to fit. Previously got "
                                     f"{self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError("`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {self.classes_}. 'y' has {classes}.")
        indicator = self._label_binarizer.transform(y)
        if self._label_binarizer.y_type_ == "multiclass":
            encoded = np.argmax(indicator, axis=1).astype(np.intp)
        else:
            encoded = np.ascontiguousarray(indicator, dtype=self._np_dtype())
        sample_weight = self._check_sample_weight(sample_weight, X.shape[0])
        if self.class_weight is not None:
            sample_weight = self._apply_class_weight(y, sample_weight, incremental)
        return X, _Targets(encoded, y, indicator.shape[1]), sample_weight

    def _apply_class_weight(self, y, sample_weight, incremental):
        if self._label_binarizer.y_type_ == "multilabel-indicator":
            raise ValueError("class_weight is not supported for multi-label targets")
        if isinstance(self.class_weight, str) and self.class_weight == "balanced" and incremental:
            raise ValueError("class_weight 'balanced' is not supported for partial_fit: "
                             "pass a dict of weights computed on the whole data")
        if not (isinstance(self.class_weight, dict) or self.class_weight == "balanced"):
            raise ValueError("class_weight must be a dict, 'balanced' or None, got "
                             f"{self.class_weight!r}")
        weights = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
        per_sample = weights[np.searchsorted(self.classes_, y)]
        return per_sample if sample_weight is None else per_sample * sample_weight

    def _stratify_labels(self, targets, fraction):
        if self._label_binarizer.y_type_ == "multilabel-indicator":
            return None
        labels = targets.original(slice(None))
        _, counts = np.unique(labels, return_counts=True)
        n = labels.shape[0]
        n_val = math.ceil(fraction * n)
        if counts.min() < 2 or n_val < counts.size or n - n_val < counts.size:
            return None
        return labels

    def _check_validation_targets(self, y, n_samples):
        y = np.asarray(y) if not hasattr(y, "shape") else y
        y = column_or_1d(y, warn=True) if np.ndim(y) == 2 and np.shape(y)[1] == 1 else y
        if np.shape(y)[0] != n_samples:
            raise ValueError(f"validation_data: X_val has {n_samples} samples, y_val has "
                             f"{np.shape(y)[0]}")
        if len(np.setdiff1d(unique_labels(y), self.classes_)):
            raise ValueError("validation_data: y_val has classes not in `self.classes_`")
        return y

    _score_function = staticmethod(accuracy_score)

    def _from_output(self, output):
        if self.n_outputs_ == 1:
            output = output.ravel()
        return self._label_binarizer.inverse_transform(output)

    def predict(self, X):
        """Predicted classes: array of shape (n_samples,), or (n_samples, n_labels) for
        multi-label problems."""
        return self._from_output(self._output(X))

    def predict_proba(self, X):
        """Class probabilities, array of shape (n_samples, n_classes) in the order of
        ``classes_`` (for multi-label problems, each label's probability)."""
        output = self._output(X)
        if self.n_outputs_ == 1:
            p = output.ravel()
            return np.vstack([1 - p, p]).T
        return output

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multilabel": True}


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor``, trained by fastbp.

    Takes every parameter of ``sklearn.neural_network.MLPRegressor`` with the same name,
    default and meaning (see :class:`MLPClassifier` and the module docstring of
    :mod:`fastbp.sklearn`), with an identity output layer.

    Parameters
    ----------
    loss : str, default='mse'
        'mse' (also 'squared_error') is scikit-learn's half squared error: ``loss_`` and the
        gradients are scikit-learn's. Extra: any other regression loss of fastbp (e.g.
        'huber', 'mae' where fastbp has them) is used as fastbp defines it. scikit-learn's
        'poisson' is not available.
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start,
    momentum, nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2,
    epsilon, n_iter_no_change, max_fun, dropout, dtype
        As for :class:`MLPClassifier` (early stopping scores R²).

    Attributes
    ----------
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, t_, coefs_,
    intercepts_, n_features_in_, feature_names_in_, n_iter_, n_layers_, n_outputs_,
    out_activation_, model_
        As for :class:`MLPClassifier`.
    """

    def __init__(self, loss="mse", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, dtype="float32"):
        self.loss = loss
        self._init_params(hidden_layer_sizes, activation, solver, alpha, batch_size,
                          learning_rate, learning_rate_init, power_t, max_iter, shuffle,
                          random_state, tol, verbose, warm_start, momentum, nesterovs_momentum,
                          early_stopping, validation_fraction, beta_1, beta_2, epsilon,
                          n_iter_no_change, max_fun, dropout, dtype)

    def fit(self, X, y, sample_weight=None, validation_data=None):
        """Fit the model to X and y (array-like of shape (n_samples,) or (n_samples,
        n_outputs)); ``sample_weight`` and ``validation_data`` as for
        :meth:`MLPClassifier.fit`. Returns self."""
        return self._fit(X, y, sample_weight, incremental=False, validation_data=validation_data)

    @available_if(lambda self: self._stochastic())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _fastbp_loss(self):
        name = _REGRESSION_ALIASES.get(self.loss, self.loss)
        valid = [item.name.lower() for item in Loss if item not in CLASSIFICATION]
        try:
            code = loss_code(name) if isinstance(name, str) else None
        except ValueError:
            code = None
        if code is None or code in CLASSIFICATION:
            raise ValueError(f"loss={self.loss!r} is not available; valid: 'squared_error' "
                             f"(the same as 'mse'), {', '.join(map(repr, valid))}")
        return code.name.lower()

    def _make_objective(self, n_outputs):
        loss = self._fastbp_loss()
        if loss == "mse":
            return _Objective("mse", 2.0 / n_outputs, 0.5)
        return _Objective(loss, 1.0, 1.0)

    def _output_activation(self):
        return "identity"

    def _validate_input(self, X, y, sample_weight, incremental, reset):
        self._fastbp_loss()
        X, y = _validate_data(self, X, y, multi_output=True, y_numeric=True,
                              dtype=self._np_dtype(), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=self._np_dtype())
        return (X, _Targets(Y, y, Y.shape[1]),
                self._check_sample_weight(sample_weight, X.shape[0]))

    def _check_validation_targets(self, y, n_samples):
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.shape[0] != n_samples or y.reshape(n_samples, -1).shape[1] != self.n_outputs_:
            raise ValueError(f"validation_data: y_val has shape {y.shape}, expected "
                             f"({n_samples}, {self.n_outputs_})")
        return y

    _score_function = staticmethod(r2_score)

    def _from_output(self, output):
        return output.ravel() if output.shape[1] == 1 else output

    def predict(self, X):
        """Predicted values: array of shape (n_samples,) or (n_samples, n_outputs)."""
        return self._from_output(self._output(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True}

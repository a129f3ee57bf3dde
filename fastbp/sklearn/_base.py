"""The estimators' shared base: parameters, network construction, the fit's dispatch to
a solver, pickling and inference."""
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ..activations import activation_code, activation_name
from ..layers import Dense, Dropout
from ..model import Sequential
from ..sparse import is_sparse
from ._lbfgs import _LbfgsSolver
from ._parameters import _WeightAttributes
from ._params import _NONFINITE, _ParameterChecks, _validate_data
from ._stochastic import _StochasticSolver


class _Objective:
    """fastbp's loss for a problem and its scale against scikit-learn's (module note C).

    ``grad_scale`` (c): fastbp's data gradient over scikit-learn's; ``report_scale``:
    scikit-learn's reported loss over fastbp's; ``constant(Y, w)``: what scikit-learn's
    reported loss adds on a batch of targets Y (weights w or None), beyond report_scale
    times fastbp's (None: nothing)."""

    def __init__(self, loss, grad_scale, report_scale, constant=None):
        self.loss, self.grad_scale, self.report_scale = loss, grad_scale, report_scale
        self.constant = constant

    def offset(self, Y, sample_weight, batch_size):
        """The constant's share of an epoch's reported loss: scikit-learn averages the
        batches' losses weighted by their rows. Over the rows in order: exact without
        weights or with shuffle=False, an estimate of the shuffled epochs' otherwise."""
        if self.constant is None:
            return 0.0
        total = 0.0
        for start in range(0, Y.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            weights = None if sample_weight is None else sample_weight[rows]
            if weights is None or np.sum(weights) > 0:
                total += (min(batch_size, Y.shape[0] - start)
                          * self.constant(Y[rows], weights))
        return total / Y.shape[0]


class _BaseMLP(_WeightAttributes, _ParameterChecks, _StochasticSolver, _LbfgsSolver,
               BaseEstimator):
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
        self.model_._layer_figures = False  # the estimators report none
        for layer, (weight, bias) in zip(self._dense_layers(), parameters):
            layer.weight[...] = weight
            layer.bias[...] = bias

    def _dense_layers(self):
        return [layer for layer in self.model_.layers
                if getattr(layer, "weight", None) is not None]

    def _weight_norm2(self):
        n_weights = sum(coef.size for coef in self.coefs_)
        weights = self.model_.parameters[:n_weights]
        with np.errstate(over="ignore"):  # huge finite weights: loss_ is inf, honestly
            return float(np.dot(weights, weights))

    # ------------------------------------------------------------------ fitting
    def _fit(self, X, y, sample_weight=None, incremental=False, validation_data=None):
        hidden = self._check_params()
        first_pass = (getattr(self, "model_", None) is None
                      or (not self.warm_start and not incremental))
        X, targets, sample_weight = self._validate_input(X, y, sample_weight, incremental,
                                                          reset=first_pass)
        if is_sparse(X):  # CSC: one copy of the stored entries (never dense), so the split,
            X = X.tocsr()  # the epochs and every L-BFGS evaluation take rows as CSR
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

    def _ensure_model(self, pending, rng):
        """Build the model on the first pass (``pending``: its specs and initial weights):
        after the initial weights and the validation split have taken their draws from
        ``rng`` (scikit-learn's order), seed fastbp's shuffling generator with the next."""
        if pending is not None:
            specs, parameters = pending
            self._build_model(specs, parameters, int(rng.randint(np.iinfo(np.int32).max)))

    # ------------------------------------------------------------------ inference
    def _output(self, X):
        """The network's output for X, in float64 unless X is float32 (as scikit-learn's
        outputs follow X's dtype), whatever the model's dtype."""
        check_is_fitted(self)
        float32_input = getattr(X, "dtype", None) == np.float32
        X = _validate_data(self, X, reset=False, dtype=self._np_dtype())
        output = self.model_.predict(X)
        return output if float32_input else output.astype(np.float64, copy=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # CSR and CSC (other formats become CSR), as scikit-learn
        return tags

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

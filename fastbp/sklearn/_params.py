"""Parameter and input checks of the scikit-learn estimators, run at fit time as
scikit-learn does; each raises a ValueError that names the parameter."""
import math
import numbers

import numpy as np

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sklearn_validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _sklearn_validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

from ..activations import activation_code, activation_name
from ..sparse import is_sparse

_SOLVERS = ("lbfgs", "sgd", "adam")
_RATE_SCHEDULES = ("constant", "invscaling", "adaptive")
_SKLEARN_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
_REGRESSION_ALIASES = {"squared_error": "mse"}
# scikit-learn's MLP takes these sparse formats as they are and converts any other (COO,
# LIL, ...) to CSR; the core reads CSR rows where they lie (fastbp.sparse).
_ACCEPT_SPARSE = ["csr", "csc"]

_FLOAT32_RANGE = ("fastbp: the values are finite, but beyond float32's range (about 3.4e38), "
                  "and the estimators compute in float32 by default: dtype='float64' takes "
                  "them (or scale the data).")

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



def _finite_in_float64(arrays):
    for array in arrays:
        if is_sparse(array):
            array = array.data  # the stored values only: never densified
        try:
            values = np.asarray(array, dtype=np.float64)
        except (TypeError, ValueError):
            continue  # labels, not numbers: never cast to float32
        if not np.all(np.isfinite(values)):
            return False
    return True


def _validate_data(estimator, *arrays, fitting=False, **kwargs):
    """scikit-learn's validate_data, X sparse (CSR or CSC) or dense as scikit-learn's MLP
    takes it; where X or y holds values finite in float64 that overflow the model's
    float32, its error says so and how to avoid it, after scikit-learn's own sentence for a
    fit that overflows (its float64 fit would)."""
    kwargs.setdefault("accept_sparse", _ACCEPT_SPARSE)
    try:
        return _sklearn_validate_data(estimator, *arrays, **kwargs)
    except ValueError as error:
        if "too large for dtype('float32')" not in str(error) or not _finite_in_float64(arrays):
            raise
        lead = f"{_NONFINITE} " if fitting else ""
        raise ValueError(f"{lead}{error} {_FLOAT32_RANGE}") from error


class _ParameterChecks:
    """The parameter checks shared by both estimators (a mixin of ``_BaseMLP``)."""

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

"""Input validation and conversion: done once per call, before any C code runs.

Every public entry point funnels its arrays through here, so a bad input raises a clear
``TypeError``/``ValueError`` naming the argument before the model is touched, and any
array-like (lists, Fortran-ordered, strided, read-only, memmapped, integer, big-endian)
becomes one C-contiguous array of the model's dtype.
"""
import math
import numbers
import os
import warnings

import numpy as np

from ._native import core as _core
from .losses import Loss
from .sparse import check_sparse_X, is_sparse

_EMPTY_LABELS = np.zeros(0, dtype=np.intp)


def as_array(value, name):
    """``value`` as an ndarray of real numbers (bool, integer or float), or an error naming
    ``name``: sparse matrices, ragged lists, complex, object and string arrays are refused."""
    if hasattr(value, "toarray") and hasattr(value, "nnz"):
        raise TypeError(f"{name} is a sparse matrix; pass {name}.toarray() instead")
    try:
        array = np.asarray(value)
    except Exception as error:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to an array: {error}") from None
    kind = array.dtype.kind
    if kind not in "biuf":
        what = {"c": "complex", "O": "object", "U": "string", "S": "bytes"}.get(kind, str(array.dtype))
        raise TypeError(f"{name} must hold real numbers, got {what} dtype")
    return array


_BITS = {4: np.uint32, 8: np.uint64}


def check_finite(array, name):
    """Raise ValueError naming ``name`` if a float array holds NaN or infinity."""
    if array.dtype.kind != "f":
        return  # integers and booleans are always finite
    if array.dtype.itemsize in _BITS and array.dtype.isnative:
        bits = np.ascontiguousarray(array).reshape(-1).view(_BITS[array.dtype.itemsize])
        finite = _core.all_finite(bits)  # one pass, no temporaries (a copy if not contiguous)
    else:  # float16, long double, big-endian: rare, so NumPy's way
        finite = bool(np.isfinite(array).all())
    if not finite:
        raise ValueError(f"{name} contains NaN or infinity")


def check_X(X, n_features, dtype, name="X"):
    """Return X as a finite, C-contiguous (n_samples, n_features) array of ``dtype``, or a
    scipy.sparse X as :class:`fastbp.sparse.SparseRows` (never densified)."""
    sparse = is_sparse(X)
    array = X if sparse else as_array(X, name)
    if len(array.shape) != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} has 0 samples")
    if array.shape[1] != n_features:
        raise ValueError(f"{name} has {array.shape[1]} features, but the model expects {n_features}")
    if sparse:
        return check_sparse_X(X, dtype, name)
    array = np.ascontiguousarray(array, dtype=dtype)
    check_finite(array, name)
    return array


def check_targets(y, n_samples, n_outputs, loss, dtype, name="y"):
    """Return ``(Y, labels)`` for the C core: dense targets (the regression losses mse,
    huber and mae, any real values; poisson, >= 0; bce, in [0, 1]) or class indices (cross-entropy, from
    integer labels or one-hot rows); the unused one is empty."""
    array = as_array(y, name)
    if array.ndim == 0 or array.ndim > 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {array.shape}")
    if array.shape[0] != n_samples:
        raise ValueError(f"X has {n_samples} samples but {name} has {array.shape[0]}")
    if loss == Loss.CROSS_ENTROPY:
        check_finite(array, name)
        return np.zeros((0, n_outputs), dtype=dtype), _class_labels(array, n_outputs, name)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.shape[1] != n_outputs:
        raise ValueError(f"{name} has {array.shape[1]} columns, but the model has {n_outputs} "
                         f"outputs{_label_hint(array, n_outputs, loss)}")
    # Check after the cast: a value finite in float64 can overflow the model's float32.
    array = np.ascontiguousarray(array, dtype=dtype)
    check_finite(array, name)
    if loss == Loss.BINARY_CROSS_ENTROPY and (array.min() < 0 or array.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1] for loss='binary_cross_entropy'")
    if loss == Loss.POISSON and array.size and array.min() < 0:
        raise ValueError(f"{name} must be >= 0 (counts or rates) for loss='poisson', got a "
                         f"minimum of {array.min()}")
    return array, _EMPTY_LABELS


def _label_hint(array, n_outputs, loss):
    """Why integer class labels fail a regression loss's shape check, and what to use."""
    if array.shape[1] != 1 or n_outputs < 2 or array.dtype.kind not in "biu" and not (
            array.dtype.kind == "f" and np.all(array == np.round(array))):
        return ""
    return (f". With loss={loss.name.lower()!r} (Sequential's default is 'mse', a regression "
            f"loss) y needs one target per output; for integer class labels use "
            f"loss='cross_entropy' (softmax over the {n_outputs} outputs)")


def _class_labels(array, n_classes, name):
    if array.ndim == 2 and array.shape[1] == 1 and n_classes > 1:
        warnings.warn(f"{name} has shape {array.shape}, a column, where class labels of shape "
                      f"({array.shape[0]},) were expected; it is read as labels. Pass "
                      f"{name}.ravel() to avoid this warning", UserWarning, stacklevel=6)
        array = array.ravel()
    if array.ndim == 2:
        if array.shape[1] != n_classes:
            raise ValueError(f"{name} is 2-D, so it must be one-hot with {n_classes} columns "
                             f"(one per output), got {array.shape[1]}")
        is_one = array == 1
        if not (np.all(is_one | (array == 0)) and np.all(is_one.sum(axis=1) == 1)):
            raise ValueError(f"{name} is 2-D but not one-hot (each row needs one 1, rest 0)")
        return np.argmax(array, axis=1).astype(np.intp)
    if array.dtype.kind == "f" and np.any(array != np.round(array)):
        raise ValueError(f"{name} must hold integer class labels for loss='cross_entropy', "
                         "got non-integer values")
    if array.dtype.kind == "b":
        array = array.astype(np.intp)
    if array.size and (array.min() < 0 or array.max() >= n_classes):
        raise ValueError(f"{name} holds labels in [{array.min()}, {array.max()}], but the model "
                         f"has {n_classes} outputs, so labels must be in [0, {n_classes - 1}]")
    return np.ascontiguousarray(array, dtype=np.intp)


def check_int(value, name, low):
    """Return ``value`` as a Python int >= ``low`` (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def check_positive_int(value, name):
    return check_int(value, name, 1)


def check_seed(seed, name="seed"):
    """Return ``numpy.random.default_rng(seed)``, refusing what NumPy would reject with a
    message about SeedSequence (floats, strings, negative numbers) and bools, naming
    ``name``."""
    valid = (f"{name} must be None, an int >= 0, a sequence of such ints, or a "
             "numpy.random.SeedSequence or Generator")
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"{valid}, got {seed!r}")
    if isinstance(seed, numbers.Integral) and seed < 0:
        raise ValueError(f"{valid}, got {seed!r}")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as error:
        if isinstance(seed, (numbers.Real, str, bytes)):
            raise TypeError(f"{valid}, got {type(seed).__name__} {seed!r}") from None
        raise type(error)(f"{valid}, got {seed!r} ({error})") from None


def check_bool(value, name):
    """Return ``value`` as a bool; only bools (Python or NumPy) pass, so that a string such
    as "no" is not silently true."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_path(value, name):
    """Return ``value`` (str or os.PathLike) as a str or bytes path; TypeError naming it."""
    try:
        return os.fspath(value)
    except TypeError:
        raise TypeError(f"{name} must be a file path (str or os.PathLike), got "
                        f"{type(value).__name__}") from None


def check_real(value, name, low, low_inclusive=True, high=math.inf, high_inclusive=True):
    """Return ``value`` as a finite float within [low, high], with either end open if asked."""
    if type(value) is not float:  # the ABC checks cost microseconds on every train_step
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
        value = float(value)
    too_low = value < low if low_inclusive else value <= low
    too_high = value > high if high_inclusive else value >= high
    if not math.isfinite(value) or too_low or too_high:
        bounds = f"{'>=' if low_inclusive else '>'} {low}"
        if math.isfinite(high):
            bounds += f" and {'<=' if high_inclusive else '<'} {high}"
        raise ValueError(f"{name} must be finite and {bounds}, got {value}")
    return value


def check_sample_weight(sample_weight, n_samples, dtype, name="sample_weight"):
    """Return per-sample weights as a C-contiguous array of ``dtype``: 1-D, one per sample,
    finite, >= 0 and not all zero."""
    array = as_array(sample_weight, name)
    if array.ndim != 1 or array.shape[0] != n_samples:
        raise ValueError(f"{name} must have shape ({n_samples},), one weight per sample, got "
                         f"shape {array.shape}")
    array = np.ascontiguousarray(array, dtype=dtype)
    check_finite(array, name)
    if array.size and (array.min() < 0 or array.max() == 0):
        raise ValueError(f"{name} must be >= 0 and not all zero")
    return array


SAMPLE_WEIGHT_REDUCTIONS = ("rows", "weights")


def check_sample_weight_reduction(value, name="sample_weight_reduction"):
    """True for "weights" (a weighted batch's loss over its sum of weights, scikit-learn's
    rule), False for "rows" (over its rows, Keras's); anything else raises."""
    if not isinstance(value, str) or value not in SAMPLE_WEIGHT_REDUCTIONS:
        raise ValueError(f"{name} must be 'rows' or 'weights', got {value!r}")
    return value == "weights"


def class_weights(class_weight, labels, n_classes):
    """Per-sample weights from ``class_weight``: "balanced" gives class c the weight
    n_samples / (n_present_classes · count_c) (scikit-learn's rule), a dict maps class
    indices to weights (missing classes weigh 1)."""
    if isinstance(class_weight, str) and class_weight == "balanced":
        counts = np.bincount(labels, minlength=n_classes)
        present = counts > 0
        table = np.ones(n_classes)
        table[present] = labels.shape[0] / (present.sum() * counts[present])
    elif isinstance(class_weight, dict):
        table = np.ones(n_classes)
        for key, value in class_weight.items():
            if isinstance(key, bool) or not isinstance(key, numbers.Integral) \
                    or not 0 <= key < n_classes:
                raise ValueError(f"class_weight keys must be class indices in "
                                 f"[0, {n_classes - 1}], got {key!r}")
            table[key] = check_real(value, f"class_weight[{key}]", 0.0)
    else:
        raise TypeError(f"class_weight must be 'balanced', a dict or None, got {class_weight!r}")
    return table[labels]

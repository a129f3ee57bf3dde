"""Normalisation layers: BatchNorm and LayerNorm specs, and their views into a model."""
import math
import numbers
from dataclasses import dataclass

from .data import check_positive_int


def _check_real(value, name, low, high=math.inf):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not (math.isfinite(value) and low < value <= high):
        raise ValueError(f"{name} must be in ({low}, {high}], got {value}")
    return value


def _check_bool(value, name):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalisation over the feature axis, as ``torch.nn.BatchNorm1d``.

    While training (``fit``, ``train_step``) each feature is normalised with the batch's
    mean and biased variance, ``y = γ (x - mean) / sqrt(var + eps) + β``, and the running
    mean and *unbiased* running variance move by ``momentum``:
    ``running = (1 - momentum) running + momentum batch_figure``, once the batch's update
    is accepted. ``predict`` and ``evaluate`` use the running statistics instead.
    :meth:`Sequential.gradients` and :func:`fastbp.check_gradients` differentiate the
    training loss, with batch statistics (torch's train mode), and leave the running
    statistics alone. A training batch needs at least 2 rows (torch raises too).

    Parameters
    ----------
    num_features : int
        Width of the input (and output).
    momentum : float, default 0.1
        Weight of each batch in the running statistics, in (0, 1].
    eps : float, default 1e-5
        Added to the variance.
    affine : bool, default True
        Learn a per-feature scale ``γ`` (``weight``, initially 1) and shift ``β``
        (``bias``, initially 0). Weight decay never applies to them.

    Examples
    --------
    >>> import fastbp as fb
    >>> fb.BatchNorm(64)
    BatchNorm(64)
    """

    num_features: int
    momentum: float = 0.1
    eps: float = 1e-5
    affine: bool = True

    def __post_init__(self):
        object.__setattr__(self, "num_features",
                           check_positive_int(self.num_features, "num_features"))
        object.__setattr__(self, "momentum", _check_real(self.momentum, "momentum", 0.0, 1.0))
        object.__setattr__(self, "eps", _check_real(self.eps, "eps", 0.0))
        _check_bool(self.affine, "affine")

    def __repr__(self):
        return f"BatchNorm({self.num_features}{_extras(self, BatchNorm)})"


@dataclass(frozen=True)
class LayerNorm:
    """Layer normalisation over the feature axis, as ``torch.nn.LayerNorm(num_features)``.

    Each row is normalised with its own mean and biased variance over its features,
    ``y = γ (x - mean) / sqrt(var + eps) + β``, the same in training and prediction.

    Parameters
    ----------
    num_features : int
        Width of the input (and output).
    eps : float, default 1e-5
    elementwise_affine : bool, default True
        Learn a per-feature ``γ`` (``weight``, initially 1) and ``β`` (``bias``, initially
        0); weight decay never applies to them.

    Examples
    --------
    >>> import fastbp as fb
    >>> fb.LayerNorm(64, eps=1e-6)
    LayerNorm(64, eps=1e-06)
    """

    num_features: int
    eps: float = 1e-5
    elementwise_affine: bool = True

    def __post_init__(self):
        object.__setattr__(self, "num_features",
                           check_positive_int(self.num_features, "num_features"))
        object.__setattr__(self, "eps", _check_real(self.eps, "eps", 0.0))
        _check_bool(self.elementwise_affine, "elementwise_affine")

    @property
    def affine(self):
        return self.elementwise_affine

    def __repr__(self):
        return f"LayerNorm({self.num_features}{_extras(self, LayerNorm)})"


def _extras(spec, cls):
    """The settings that differ from the defaults, as repr keywords."""
    text = ""
    for name, field in cls.__dataclass_fields__.items():
        if name != "num_features" and getattr(spec, name) != field.default:
            text += f", {name}={getattr(spec, name)!r}"
    return text


class BoundNorm:
    """A :class:`BatchNorm` or :class:`LayerNorm` spec with live views of its model.

    Attributes
    ----------
    spec : BatchNorm or LayerNorm
    weight, bias : ndarray of shape (num_features,) or None
        ``γ`` and ``β``: writable views into the model's flat parameter buffer (None
        without affine).
    running_mean, running_var : ndarray of shape (num_features,) or None
        BatchNorm's running statistics, writable views into the model's statistics buffer
        (None for LayerNorm).
    """

    __slots__ = ("spec", "weight", "bias", "running_mean", "running_var")

    def __init__(self, spec, weight, bias, running_mean=None, running_var=None):
        self.spec, self.weight, self.bias = spec, weight, bias
        self.running_mean, self.running_var = running_mean, running_var

    num_features = property(lambda self: self.spec.num_features)
    eps = property(lambda self: self.spec.eps)

    def __repr__(self):
        return repr(self.spec)

"""Layer specs (frozen, shareable between models) and their views into a model's parameters."""
import math
import numbers
from dataclasses import dataclass

import numpy as np

from .activations import activation_code, activation_name
from .data import check_positive_int
from .initializers import check_bias_init, check_init


@dataclass(frozen=True)
class Dense:
    """A fully connected layer: ``a = activation(x @ W + b)``.

    Parameters
    ----------
    in_features : int
        Width of the input, ``x`` of shape (batch, in_features).
    out_features : int
        Width of the output; ``W`` has shape (in_features, out_features), ``b`` (out_features,).
    activation : str or None
        One of ``"identity"`` (or None), ``"sigmoid"``, ``"tanh"``, ``"relu"``,
        ``"leaky_relu"`` (negative slope 0.01), ``"gelu"`` (the tanh approximation, as
        ``torch.nn.GELU(approximate="tanh")``), ``"softplus"`` (beta 1), ``"elu"`` (alpha 1)
        or ``"swish"`` (``"silu"``: ``x * sigmoid(x)``). A gelu or swish layer also keeps its
        pre-activation for backward: one more (batch, out_features) block of workspace.
    init : str, default "auto"
        How the model draws ``W`` (Keras's definitions, with ``fan_in = in_features``,
        ``fan_out = out_features``; see :mod:`fastbp.initializers`): ``"glorot_uniform"``,
        ``"glorot_normal"``, ``"he_uniform"``, ``"he_normal"``, ``"lecun_uniform"``,
        ``"lecun_normal"`` (the normal ones truncated at two standard deviations, as Keras),
        ``"zeros"``, or ``"auto"``: ``he_uniform`` for relu and leaky_relu, ``glorot_uniform``
        otherwise.
    bias_init : "zeros" or float, default "zeros"
        Initial value of every entry of ``b`` (0 is stored as ``"zeros"``).

    Examples
    --------
    A spec holds no weights; a model compiled from specs does:

    >>> import fastbp as fb
    >>> fb.Dense(64, 32, activation="silu")
    Dense(64, 32, activation='swish')
    >>> model = fb.Sequential([fb.Dense(4, 3, "relu"), fb.Dense(3, 2)], loss="mse", seed=0)
    >>> model.layers[0].weight.shape, model.layers[1].bias.shape
    ((4, 3), (2,))
    """

    in_features: int
    out_features: int
    activation: str = "identity"
    init: str = "auto"
    bias_init: object = "zeros"

    def __post_init__(self):
        object.__setattr__(self, "in_features", check_positive_int(self.in_features, "in_features"))
        object.__setattr__(self, "out_features", check_positive_int(self.out_features, "out_features"))
        object.__setattr__(self, "activation", activation_name(activation_code(self.activation)))
        object.__setattr__(self, "init", check_init(self.init))
        object.__setattr__(self, "bias_init", check_bias_init(self.bias_init))

    @property
    def activation_code(self):
        """The :class:`fastbp.Activation` of ``activation``, as the compiled core sees it."""
        return activation_code(self.activation)

    def __repr__(self):
        # Initialisers only when not the defaults, so the common repr stays short.
        extra = "" if self.init == "auto" else f", init={self.init!r}"
        extra += "" if self.bias_init == "zeros" else f", bias_init={self.bias_init!r}"
        return f"Dense({self.in_features}, {self.out_features}, activation={self.activation!r}{extra})"


@dataclass(frozen=True)
class Dropout:
    """Inverted dropout on the input of the next :class:`Dense` layer, while training.

    During ``fit`` and ``train_step`` each element of the input (each unit of each sample)
    is set to 0 with probability ``rate`` and the others are multiplied by
    ``1 / (1 - rate)``, so the expected input is unchanged; ``predict``, ``evaluate`` and
    (by default) ``gradients`` never drop. The masks are drawn inside the compiled core from
    the model's seed and its count of training steps, so a fixed ``seed`` gives bitwise
    repeatable training, and saving, loading and resuming continues the same masks.

    In :class:`Sequential`, a Dropout stands between two Dense layers (on a hidden layer's
    output) or first (on the network's input), never last and never twice in a row.

    Parameters
    ----------
    rate : float
        Probability of dropping each element, ``0 <= rate < 1``. 0 is no dropout at all
        (no workspace, no work). The core draws with 32-bit resolution: the probability
        used is ``floor(rate * 2**32) / 2**32`` and the scale matches it, ``1 / (1 - that)``
        (the same as ``1 / (1 - rate)`` to ten digits).

    Examples
    --------
    >>> import fastbp as fb
    >>> fb.Sequential([fb.Dense(64, 128, "relu"), fb.Dropout(0.5), fb.Dense(128, 10)],
    ...               loss="cross_entropy", seed=0)
    Sequential([
        Dense(64, 128, activation='relu'),
        Dropout(0.5),
        Dense(128, 10, activation='identity')],
        loss='cross_entropy', dtype='float32', n_parameters=9610)
    """

    rate: float

    def __post_init__(self):
        rate = self.rate
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
            raise TypeError(f"rate must be a real number in [0, 1), got {type(rate).__name__} "
                            f"{rate!r}")
        rate = float(rate)
        if not (math.isfinite(rate) and 0.0 <= rate < 1.0):
            raise ValueError(f"rate must be in [0, 1) (the probability of dropping a unit), "
                             f"got {rate}")
        object.__setattr__(self, "rate", rate)

    def __repr__(self):
        return f"Dropout({self.rate!r})"


class ParameterView:
    """A bound layer's parameter: reads as a live view into the model's buffer, and
    assignment copies into that view after checking shape and dtype (or raises).

    Any bound layer kind declares its parameters with it (``weight = ParameterView()``)
    and lists them, in :meth:`fastbp.Sequential.get_weights` order, in
    ``parameter_names``; the layer's ``_views`` maps each name to its ndarray view (of
    the parameter buffer, or of any other buffer the model owns). So ``layer.weight = W``
    writes ``W`` into the model instead of silently replacing the view, and a new layer
    kind gets the same checks by declaring its own views.
    """

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        return layer._views[self.name]

    def __set__(self, layer, value):
        assign_parameter(layer._views[self.name], value, layer._label(self.name))


def checked_parameter(target, value, name):
    """``value`` as a new array of ``target``'s shape and dtype, checked.

    Parameters
    ----------
    target : ndarray
        The view the value is meant for (its shape and dtype are the contract).
    value : array-like
        Real numbers (integer or floating point) of exactly ``target.shape``; they are
        cast to ``target.dtype`` (float64 to float32 rounds) and must be finite after it.
    name : str
        How error messages name the value, e.g. ``"layers[0].weight"``.

    Returns
    -------
    ndarray
        A copy, ready for ``target[...] = checked``.

    Raises
    ------
    TypeError
        If ``value`` does not hold real numbers (bool, complex, object or string arrays).
    ValueError
        If its shape differs from ``target.shape`` or a value is NaN or infinite.
    """
    if hasattr(value, "toarray") and hasattr(value, "nnz"):
        raise TypeError(f"{name} is a sparse matrix; pass {name}.toarray() instead")
    try:
        array = np.asarray(value)
    except Exception as error:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to an array: {error}") from None
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers (integer or floating point) to copy "
                        f"into the model's {target.dtype} parameters, got dtype {array.dtype}")
    if array.shape != target.shape:
        hint = ""
        if array.ndim == 2 and array.shape == target.shape[::-1]:
            hint = (f"; fastbp stores a weight as (in_features, out_features), the transpose "
                    f"of torch.nn.Linear's (out_features, in_features): pass its .T")
        elif array.size == 1 or array.shape == target.shape[-array.ndim:]:
            hint = f"; to broadcast one value or row into it, write {name}[...] = value"
        raise ValueError(f"{name} must have shape {target.shape}, got shape {array.shape}{hint}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
        converted = array.astype(target.dtype)
    if not np.all(np.isfinite(converted)):
        raise ValueError(f"{name} contains NaN or infinity (after conversion to {target.dtype})")
    return converted


def assign_parameter(target, value, name):
    """Copy ``value`` into ``target`` (a view into a model's buffer) after
    :func:`checked_parameter`'s checks; on an error ``target`` is untouched."""
    target[...] = checked_parameter(target, value, name)


class BoundLayer:
    """A layer spec bound to a model: its parameters as :class:`ParameterView` attributes.

    Attribute reads the layer does not define go to the spec (``layer.in_features``,
    ``layer.activation``, ...); assigning anything but a parameter raises, since the spec is
    frozen. Subclasses declare their parameters as :class:`ParameterView` class
    attributes and list them in ``parameter_names``.

    Parameters
    ----------
    spec : frozen dataclass
        The layer's spec, as given to the model.
    views : dict of str to ndarray
        One writable view per name in ``parameter_names``.
    index : int or None
        The layer's position in ``model.layers`` (named in error messages).
    """

    __slots__ = ("spec", "index", "_views")
    parameter_names = ()

    def __init__(self, spec, views, index=None):
        if set(views) != set(self.parameter_names):
            raise ValueError(f"views must name exactly {self.parameter_names}, got {sorted(views)}")
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "_views", dict(views))

    def _label(self, name):
        return name if self.index is None else f"layers[{self.index}].{name}"

    def __getattr__(self, name):
        if name in BoundLayer.__slots__:  # not yet set (during unpickling or __init__)
            raise AttributeError(name)
        try:
            return getattr(self.spec, name)
        except AttributeError:
            raise AttributeError(f"{type(self).__name__} object has no attribute {name!r}") from None

    def __setattr__(self, name, value):
        if isinstance(getattr(type(self), name, None), ParameterView):
            object.__setattr__(self, name, value)  # the descriptor checks and copies
            return
        what = "a spec setting (the spec is frozen: build a new model to change it)" \
            if hasattr(self.spec, name) else "not a parameter of this layer"
        raise AttributeError(f"cannot set {self._label(name)}: it is {what}; the parameters "
                             f"that can be assigned are {', '.join(self.parameter_names)}")

    def __reduce__(self):
        # copy and pickle go through __init__ (__setattr__ refuses the slots); a pickled
        # layer holds copies of its arrays, no longer views of a model.
        return type(self), (self.spec, self._views, self.index)

    def __repr__(self):
        return repr(self.spec)


class BoundDense(BoundLayer):
    """A :class:`Dense` spec with live NumPy views of its model's parameters.

    Attributes
    ----------
    spec : Dense
    weight : ndarray of shape (in_features, out_features)
        Writable view into the model's flat parameter buffer; assigning an array
        (``layer.weight = W``) copies it in after checking its shape and dtype.
    bias : ndarray of shape (out_features,)
        As ``weight``.
    in_features, out_features, activation, init, bias_init
        The spec's.

    Examples
    --------
    >>> import numpy as np
    >>> import fastbp as fb
    >>> model = fb.Sequential([fb.Dense(3, 2)], seed=0)
    >>> model.layers[0].bias = [1.0, 2.0]          # copied into model.parameters
    >>> model.parameters[-2:]
    array([1., 2.], dtype=float32)
    >>> model.layers[0].weight = np.zeros((2, 3))
    Traceback (most recent call last):
    ...
    ValueError: layers[0].weight must have shape (3, 2), got shape (2, 3); fastbp stores a weight as (in_features, out_features), the transpose of torch.nn.Linear's (out_features, in_features): pass its .T
    """

    __slots__ = ()
    parameter_names = ("weight", "bias")
    weight = ParameterView()
    bias = ParameterView()


def _parameter_slots(layers):
    """(label, view) for every parameter of ``layers``, in get_weights order."""
    return [(layer._label(name), layer._views[name]) for layer in layers
            if isinstance(layer, BoundLayer) for name in layer.parameter_names]


def get_weights(layers):
    """Copies of every parameter of ``layers`` (bound layers in order, each's
    ``parameter_names`` in order: for Dense, weight then bias), as Keras's ``get_weights``."""
    return [view.copy() for _, view in _parameter_slots(layers)]


def set_weights(layers, weights):
    """Copy ``weights`` (in :func:`get_weights` order) into ``layers``' parameters, all or
    nothing: every array is checked (count, shape, dtype, finite) before any is written.

    Raises
    ------
    TypeError
        If ``weights`` is not a list or tuple of arrays, or an array does not hold real
        numbers.
    ValueError
        If the count or a shape differs from what :func:`get_weights` returns, or a value
        is NaN or infinite.
    """
    slots = _parameter_slots(layers)
    if not isinstance(weights, (list, tuple)):
        raise TypeError("weights must be a list of arrays in get_weights() order (for each "
                        f"Dense layer its weight, then its bias), got {type(weights).__name__}")
    if len(weights) != len(slots):
        expected = ", ".join(f"{label} {view.shape}" for label, view in slots)
        raise ValueError(f"weights holds {len(weights)} arrays, but the model has {len(slots)} "
                         f"parameters: {expected}")
    checked = [checked_parameter(view, value, f"weights[{k}] (for {label})")
               for k, ((label, view), value) in enumerate(zip(slots, weights))]
    for (_, view), array in zip(slots, checked):
        view[...] = array

"""Layers bound to a model: live, checked views of its parameters (and statistics).

``model.layers`` returns these objects (the same ones on every call): each wraps its frozen
spec, reads its parameters as views into the model's buffers, and copies an assigned array
in after checking it, so ``layer.weight = W`` never silently replaces a view.
"""
import numpy as np

from .data import as_array


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
        return layer._views.get(self.name)  # None: this layer has no such parameter

    def __set__(self, layer, value):
        if self.name not in layer._views:
            raise AttributeError(f"{layer._label(self.name)} does not exist (affine=False)")
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
    array = as_array(value, name)  # sparse, ragged, complex, object or string: refused
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
    index : int, str or None
        The layer's position in ``model.layers`` (named in error messages; a layer of a
        Residual block: ``"2].layers[0"``, read as ``layers[2].layers[0]``).
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
        if name in BoundLayer.__slots__ or name == "_names":  # not yet set (unpickling, __init__)
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
    return [(layer._label(name), layer._views[name]) for layer in walk(layers)
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


class BoundNorm(BoundLayer):
    """A :class:`fastbp.BatchNorm` or :class:`fastbp.LayerNorm` bound to its model.

    Attributes
    ----------
    weight, bias : ndarray of shape (num_features,) or None
        ``γ`` and ``β``, views into the model's flat parameter buffer (None without
        affine); assignment copies in after checks, as for :class:`BoundDense`.
    running_mean, running_var : ndarray of shape (num_features,) or None
        BatchNorm's running statistics, views into the model's statistics buffer, assigned
        the same way (None for LayerNorm).
    """

    __slots__ = ("_names",)
    weight = ParameterView()
    bias = ParameterView()
    running_mean = ParameterView()
    running_var = ParameterView()

    def __init__(self, spec, views, index=None):
        object.__setattr__(self, "_names", tuple(views))
        super().__init__(spec, views, index)

    @property
    def parameter_names(self):
        return self._names


class BoundResidual:
    """A :class:`fastbp.Residual` bound to its model: ``layers`` are the block's layers,
    bound (the same objects on every call), each with its parameter views."""

    __slots__ = ("spec", "layers")

    def __init__(self, spec, layers):
        self.spec, self.layers = spec, tuple(layers)

    def __repr__(self):
        return repr(self.spec)


def walk(layers):
    """Every bound layer of ``layers``, Residual blocks opened, in order."""
    for layer in layers:
        if isinstance(layer, BoundResidual):
            yield from walk(layer.layers)
        else:
            yield layer

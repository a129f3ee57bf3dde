"""``coefs_`` and ``intercepts_``: scikit-learn's weight lists, written through to the model.

A. Reading either attribute gives a list of views into ``model_.parameters`` (fastbp's one
   flat buffer), so in-place edits (``clf.coefs_[0][...] = W``) change the model.
B. Assigning the attribute (``clf.coefs_ = [...]``) or one item (``clf.coefs_[0] = W``)
   copies the new arrays into that buffer, so ``predict``, ``partial_fit`` and
   ``warm_start`` fits use them, as in scikit-learn. Everything is checked before anything
   is written: a wrong length, shape or dtype, or a non-finite value (also after the cast to
   the model's dtype: float64 weights beyond float32's range) raises a ValueError naming the
   attribute and leaves the model unchanged.
C. The shapes cannot change (the network's widths are fixed by the fit); a new architecture
   needs a new fit.
"""
import numbers

import numpy as np


class _WrittenThrough(list):
    """A list of views into the model's parameters whose item assignment copies into the
    view; the list's length is fixed, so methods that would change it raise."""

    def __init__(self, name, views):
        super().__init__(views)
        self._name = name

    def __setitem__(self, index, value):
        if not isinstance(index, numbers.Integral):
            raise TypeError(f"{self._name} items are set one at a time, by an int index "
                            f"(got {index!r}); assign the whole list to replace them all")
        view = list.__getitem__(self, index)  # raises IndexError out of range
        position = index % len(self)
        view[...] = _checked_array(self._name, position, value, view)

    def _fixed_length(self, *args, **kwargs):
        raise TypeError(f"{self._name} has one array per layer: its length cannot change")

    append = extend = insert = pop = remove = clear = __delitem__ = __iadd__ = __imul__ = \
        _fixed_length

    def sort(self, *args, **kwargs):
        raise TypeError(f"{self._name} is in layer order and cannot be reordered")

    reverse = sort

    def __reduce__(self):  # pickles and copies as a plain list of arrays
        return (list, (list(self),))


def _checked_array(name, position, value, view):
    """``value`` as an array of ``view``'s shape and dtype, or a ValueError naming
    ``name[position]``."""
    label = f"{name}[{position}]"
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{label} must be an array of numbers: {error}") from error
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{label} must hold real numbers (a float or int dtype), got dtype "
                         f"{array.dtype}")
    if array.shape != view.shape:
        raise ValueError(f"{label} must have shape {view.shape} (the fitted layer's), got "
                         f"{array.shape}")
    with np.errstate(over="ignore"):
        cast = array.astype(view.dtype)
    if not np.all(np.isfinite(cast)):
        raise ValueError(f"{label} must be finite in the model's dtype ({view.dtype}); it "
                         "holds NaN or infinity, or values beyond that dtype's range")
    return cast


class _WeightAttributes:
    """``coefs_`` and ``intercepts_`` as properties of ``_BaseMLP`` (a mixin)."""

    def _layer_views(self, name):
        if "model_" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__} has no {name} before it is fitted")
        layers = self._dense_layers()
        views = [layer.weight for layer in layers] if name == "coefs_" else \
            [layer.bias for layer in layers]
        return _WrittenThrough(name, views)

    def _assign_layer_arrays(self, name, arrays):
        if "model_" not in self.__dict__:
            raise AttributeError(f"{name} can be set only on a fitted {type(self).__name__} "
                                 "(fit or partial_fit it first: the layer shapes come from "
                                 "the data)")
        views = self._layer_views(name)
        if isinstance(arrays, np.ndarray) or not hasattr(arrays, "__len__"):
            raise ValueError(f"{name} must be a list of {len(views)} arrays (one per layer), "
                             f"got {type(arrays).__name__}")
        if len(arrays) != len(views):
            raise ValueError(f"{name} must be a list of {len(views)} arrays (one per layer), "
                             f"got {len(arrays)}")
        checked = [_checked_array(name, i, value, view)
                   for i, (value, view) in enumerate(zip(arrays, views))]
        for view, array in zip(views, checked):  # only once every array passed
            view[...] = array

    @property
    def coefs_(self):
        """Weight matrices, one per layer, array of shape (n_in, n_out): views into
        ``model_.parameters``; assignment copies in (see :mod:`fastbp.sklearn._parameters`)."""
        return self._layer_views("coefs_")

    @coefs_.setter
    def coefs_(self, arrays):
        self._assign_layer_arrays("coefs_", arrays)

    @property
    def intercepts_(self):
        """Bias vectors, one per layer, array of shape (n_out,): views, as ``coefs_``."""
        return self._layer_views("intercepts_")

    @intercepts_.setter
    def intercepts_(self, arrays):
        self._assign_layer_arrays("intercepts_", arrays)

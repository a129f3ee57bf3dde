"""Weight and bias initialisers by name, drawn from a model's seeded generator.

A Dense weight ``W`` has shape (in_features, out_features), so ``fan_in = in_features`` and
``fan_out = out_features``. The definitions are Keras's (``VarianceScaling``):

==================  ============================  ====================================
name                distribution                  scale
==================  ============================  ====================================
``glorot_uniform``  uniform on [-limit, limit]    limit = sqrt(6 / (fan_in + fan_out))
``glorot_normal``   truncated normal, mean 0      std = sqrt(2 / (fan_in + fan_out))
``he_uniform``      uniform on [-limit, limit]    limit = sqrt(6 / fan_in)
``he_normal``       truncated normal, mean 0      std = sqrt(2 / fan_in)
``lecun_uniform``   uniform on [-limit, limit]    limit = sqrt(3 / fan_in)
``lecun_normal``    truncated normal, mean 0      std = sqrt(1 / fan_in)
``zeros``           all zero
``auto``            ``he_uniform`` for relu and leaky_relu layers, ``glorot_uniform``
                    otherwise (the default: fastbp's only rule before this choice existed)
==================  ============================  ====================================

Truncated normal, as Keras: values beyond two standard deviations of the underlying
normal are drawn again, and that normal's standard deviation is ``std / 0.8796...`` (the
standard deviation of a standard normal cut to [-2, 2]), so the weights have exactly the
``std`` of the table and never exceed ``2 * std / 0.8796 ≈ 2.27 * std`` in magnitude.
Redrawing uses the model's NumPy generator only, so a seed fixes the weights bitwise.

Biases (``bias_init``) are ``"zeros"`` or a constant (a finite float).
"""
import math
import numbers

import numpy as np

from .activations import RELU_FAMILY

#: Weight initialisers by name, "auto" first (the default).
WEIGHT_INITIALIZERS = ("auto", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
                       "lecun_uniform", "lecun_normal", "zeros")


# Standard deviation of a standard normal cut to [-CUT, CUT]: sqrt(1 - 2·CUT·φ(CUT) / (2Φ(CUT) - 1)).
_CUT = 2.0
_TRUNCATED_STD = math.sqrt(1.0 - 2.0 * _CUT * math.exp(-_CUT ** 2 / 2) / math.sqrt(2 * math.pi)
                           / math.erf(_CUT / math.sqrt(2)))

# name -> (distribution, numerator, fans): variance scale numerator / fan, fan from the fans.
_RULES = {
    "glorot_uniform": ("uniform", 6.0, "in+out"),
    "glorot_normal": ("normal", 2.0, "in+out"),
    "he_uniform": ("uniform", 6.0, "in"),
    "he_normal": ("normal", 2.0, "in"),
    "lecun_uniform": ("uniform", 3.0, "in"),
    "lecun_normal": ("normal", 1.0, "in"),
}


def check_init(init):
    """Return ``init`` if it names a weight initialiser; ValueError listing them otherwise."""
    if isinstance(init, str) and init in WEIGHT_INITIALIZERS:
        return init
    valid = ", ".join(repr(name) for name in WEIGHT_INITIALIZERS)
    raise ValueError(f"init={init!r} is not known; valid initialisers: {valid}")


def check_bias_init(bias_init):
    """Return ``"zeros"`` or a finite float constant (0 becomes ``"zeros"``)."""
    if isinstance(bias_init, str):
        if bias_init == "zeros":
            return bias_init
        raise ValueError(f"bias_init={bias_init!r} is not known; valid bias initialisers: "
                         "'zeros' or a finite number (a constant)")
    if isinstance(bias_init, bool) or not isinstance(bias_init, numbers.Real):
        raise TypeError(f"bias_init must be 'zeros' or a number, got {type(bias_init).__name__}")
    value = float(bias_init)
    if not math.isfinite(value):
        raise ValueError(f"bias_init must be finite, got {value}")
    return "zeros" if value == 0 else value


def resolve(init, activation):
    """The initialiser ``init`` stands for in a layer with ``activation`` (resolves "auto")."""
    if init != "auto":
        return init
    return "he_uniform" if activation in RELU_FAMILY else "glorot_uniform"


def draw(init, shape, rng):
    """Draw a weight of ``shape`` (in_features, out_features) with initialiser ``init``.

    Parameters
    ----------
    init : str
        A name from :data:`WEIGHT_INITIALIZERS` other than "auto" (see :func:`resolve`).
    shape : tuple of int
        (fan_in, fan_out).
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of float64, of shape ``shape``
    """
    if check_init(init) == "auto":
        raise ValueError("draw needs a concrete initialiser; resolve 'auto' for the layer's "
                         "activation first")
    if init == "zeros":
        return np.zeros(shape)
    distribution, numerator, fans = _RULES[init]
    fan_in, fan_out = shape
    fan = fan_in + fan_out if fans == "in+out" else fan_in
    if distribution == "uniform":
        # Exactly fastbp's original expressions, so "auto" draws bitwise the same weights.
        bound = np.sqrt(numerator / fan)
        return rng.uniform(-bound, bound, size=shape)
    return _truncated_normal(rng, math.sqrt(numerator / fan), shape)


def _truncated_normal(rng, std, shape):
    values = rng.standard_normal(shape)
    flat = values.reshape(-1)
    outside = np.flatnonzero(np.abs(flat) > _CUT)
    while outside.size:  # about 4.6% of values each round
        flat[outside] = rng.standard_normal(outside.size)
        outside = outside[np.abs(flat[outside]) > _CUT]
    values *= std / _TRUNCATED_STD
    return values


def layer_weight(spec, rng):
    """Initial weight of a :class:`~fastbp.Dense` spec, of shape (in_features, out_features)."""
    init = resolve(spec.init, spec.activation_code)
    return draw(init, (spec.in_features, spec.out_features), rng)


def layer_bias(spec, rng):
    """Initial bias of a :class:`~fastbp.Dense` spec, of shape (out_features,). ``rng`` is
    unused by the current bias initialisers (none is random), so they draw nothing."""
    value = 0.0 if spec.bias_init == "zeros" else spec.bias_init
    return np.full(spec.out_features, value)

"""Hidden-layer activations by name, and their codes in the compiled core."""
from enum import IntEnum


class ActivationCode(IntEnum):
    """A layer's activation function, by code: the twin of the ``ACT_*`` codes in
    ``src_c/_activations.pxd`` (a test asserts they agree).

    Layers take activations by name (``Dense(64, 32, activation="relu")``,
    ``fastbp.Activation("relu")``); this enum is what the names become. Each is applied
    elementwise to ``z = x @ W + b``; the compiled core
    computes its derivative from the output ``a`` where it can (written next to it in
    ``_activations.pxd``), and from the kept ``z`` for gelu and swish.

    Attributes
    ----------
    IDENTITY : 0
        ``a = z`` (names ``"identity"``, ``"linear"`` or None).
    SIGMOID : 1
        ``a = 1 / (1 + exp(-z))`` (also ``"logistic"``).
    TANH : 2
        ``a = tanh(z)``.
    RELU : 3
        ``a = max(z, 0)``.
    LEAKY_RELU : 4
        ``a = z`` for ``z > 0``, else ``0.01 z``.
    GELU : 5
        ``a = z/2 (1 + tanh(sqrt(2/pi) (z + 0.044715 z³)))``, the tanh approximation.
    SOFTPLUS : 6
        ``a = log(1 + exp(z))``.
    ELU : 7
        ``a = z`` for ``z > 0``, else ``exp(z) - 1``.
    SWISH : 8
        ``a = z sigmoid(z)`` (also ``"silu"``).

    Examples
    --------
    >>> from fastbp.activations import ActivationCode, activation_code
    >>> activation_code("silu") is ActivationCode.SWISH, int(ActivationCode.RELU)
    (True, 3)
    """

    IDENTITY = 0
    SIGMOID = 1
    TANH = 2
    RELU = 3
    LEAKY_RELU = 4
    GELU = 5
    SOFTPLUS = 6
    ELU = 7
    SWISH = 8


#: Activations whose units can die (output 0 for every input): He initialisation suits them,
#: and training telemetry reports their dead fraction.
RELU_FAMILY = (ActivationCode.RELU, ActivationCode.LEAKY_RELU)

#: Negative slope of ``leaky_relu`` (as ``torch.nn.LeakyReLU``'s default).
LEAKY_RELU_SLOPE = 0.01

#: ``alpha`` of ``elu`` (as ``torch.nn.ELU``'s default).
ELU_ALPHA = 1.0

_ALIASES = {None: "identity", "linear": "identity", "logistic": "sigmoid", "silu": "swish"}


def activation_code(name):
    """Return the :class:`ActivationCode` for ``name`` (``None`` means identity, ``"silu"`` is
    ``"swish"``).

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the valid names.
    """
    key = _ALIASES.get(name, name)
    if isinstance(key, str) and key.upper() in ActivationCode.__members__:
        return ActivationCode[key.upper()]
    if isinstance(name, str) and name.lower() in ("softmax", "log_softmax"):
        raise ValueError(
            f"activation={name!r} is not a layer activation in fastbp: softmax is fused into "
            "the loss. Give the last layer activation=None and use loss='cross_entropy' "
            "(it applies softmax to the logits, and predict returns the probabilities)")
    valid = ", ".join(repr(a.name.lower()) for a in ActivationCode)
    raise ValueError(f"activation={name!r} is not known; valid activations: {valid}, or None")


def activation_name(code):
    """The canonical lower-case name of an activation code."""
    return ActivationCode(code).name.lower()

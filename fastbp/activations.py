"""Hidden-layer activations by name, and their codes in the compiled core."""
from enum import IntEnum


class Activation(IntEnum):
    """Twin of the ``ACT_*`` codes in ``src_c/_activations.pxd`` (a test asserts they agree)."""

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
RELU_FAMILY = (Activation.RELU, Activation.LEAKY_RELU)

#: Negative slope of ``leaky_relu`` (as ``torch.nn.LeakyReLU``'s default).
LEAKY_RELU_SLOPE = 0.01

#: ``alpha`` of ``elu`` (as ``torch.nn.ELU``'s default).
ELU_ALPHA = 1.0

_ALIASES = {None: "identity", "linear": "identity", "logistic": "sigmoid", "silu": "swish"}


def activation_code(name):
    """Return the :class:`Activation` for ``name`` (``None`` means identity, ``"silu"`` is
    ``"swish"``).

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the valid names.
    """
    key = _ALIASES.get(name, name)
    if isinstance(key, str) and key.upper() in Activation.__members__:
        return Activation[key.upper()]
    valid = ", ".join(repr(a.name.lower()) for a in Activation)
    raise ValueError(f"activation={name!r} is not known; valid activations: {valid}, or None")


def activation_name(code):
    """The canonical lower-case name of an activation code."""
    return Activation(code).name.lower()

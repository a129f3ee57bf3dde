"""Losses by name, their codes in the compiled core, and what each asks of the output layer."""
from enum import IntEnum

from .activations import Activation


class Loss(IntEnum):
    """Twin of the ``LOSS_*`` codes in ``src_c/_losses.pxd`` (a test asserts they agree)."""

    MSE = 0
    CROSS_ENTROPY = 1
    BINARY_CROSS_ENTROPY = 2


#: Losses that apply their own output function to raw logits (softmax, sigmoid), so the
#: last layer must have no activation of its own.
FUSED_OUTPUT = {Loss.CROSS_ENTROPY: "softmax", Loss.BINARY_CROSS_ENTROPY: "sigmoid"}

#: Losses whose predictions are classes (evaluate reports accuracy for these).
CLASSIFICATION = (Loss.CROSS_ENTROPY, Loss.BINARY_CROSS_ENTROPY)


def loss_code(name):
    """Return the :class:`Loss` for ``name``; unknown names list the valid ones."""
    if isinstance(name, str) and name.upper() in Loss.__members__:
        return Loss[name.upper()]
    valid = ", ".join(repr(item.name.lower()) for item in Loss)
    raise ValueError(f"loss={name!r} is not known; valid losses: {valid}")


def check_output_activation(loss, activation, layer_index):
    """Reject an output activation the loss already applies (e.g. softmax twice)."""
    if loss in FUSED_OUTPUT and activation != Activation.IDENTITY:
        raise ValueError(
            f"loss={loss.name.lower()!r} applies {FUSED_OUTPUT[loss]} to raw logits itself, so "
            f"the last layer (layers[{layer_index}]) must have activation=None, "
            f"not {activation.name.lower()!r}")

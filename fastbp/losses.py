"""Losses by name, their codes in the compiled core, and what each asks of the output layer."""
from enum import IntEnum

from .activations import ActivationCode


class Loss(IntEnum):
    """A model's loss, by code: the twin of the ``LOSS_*`` codes in ``src_c/_losses.pxd``
    (a test asserts they agree).

    Models take losses by name (``Sequential(layers, loss="cross_entropy")``); this enum is
    what the names become. Every loss is the mean over the batch (with ``sample_weight``:
    ``sum(w * loss) / rows``).

    Attributes
    ----------
    MSE : 0
        Mean squared error over all outputs, on the last layer's activated output.
    CROSS_ENTROPY : 1
        Softmax cross-entropy from raw logits (the last layer has no activation); targets
        are integer classes of shape (n_samples,) or one-hot rows.
    BINARY_CROSS_ENTROPY : 2
        Sigmoid cross-entropy from raw logits, per output; targets in [0, 1] of shape
        (n_samples, n_outputs).
    HUBER : 3
        Huber loss with delta 1 (as ``torch.nn.HuberLoss``), averaged over all outputs.
    MAE : 4
        Mean absolute error (also ``"l1"``, as ``torch.nn.L1Loss``).

    Examples
    --------
    >>> from fastbp import Loss
    >>> from fastbp.losses import loss_code
    >>> loss_code("l1") is Loss.MAE, int(Loss.CROSS_ENTROPY)
    (True, 1)
    """

    MSE = 0
    CROSS_ENTROPY = 1
    BINARY_CROSS_ENTROPY = 2
    HUBER = 3
    MAE = 4


#: ``delta`` of ``huber`` (as ``torch.nn.HuberLoss``'s default).
HUBER_DELTA = 1.0

_ALIASES = {"l1": "mae"}

#: Losses that apply their own output function to raw logits (softmax, sigmoid), so the
#: last layer must have no activation of its own.
FUSED_OUTPUT = {Loss.CROSS_ENTROPY: "softmax", Loss.BINARY_CROSS_ENTROPY: "sigmoid"}

#: Losses whose predictions are classes (evaluate reports accuracy for these).
CLASSIFICATION = (Loss.CROSS_ENTROPY, Loss.BINARY_CROSS_ENTROPY)

#: Losses on real-valued targets, computed on the last layer's activated output (any
#: activation); evaluate reports only the loss for these.
REGRESSION = (Loss.MSE, Loss.HUBER, Loss.MAE)


def loss_code(name):
    """Return the :class:`Loss` for ``name`` (``"l1"`` means ``"mae"``); unknown names list
    the valid ones."""
    key = _ALIASES.get(name, name) if isinstance(name, str) else name
    if isinstance(key, str) and key.upper() in Loss.__members__:
        return Loss[key.upper()]
    valid = ", ".join(repr(item.name.lower()) for item in Loss)
    raise ValueError(f"loss={name!r} is not known; valid losses: {valid}")


def check_output_activation(loss, activation, layer_index):
    """Reject an output activation the loss already applies (e.g. softmax twice)."""
    if loss in FUSED_OUTPUT and activation != ActivationCode.IDENTITY:
        raise ValueError(
            f"loss={loss.name.lower()!r} applies {FUSED_OUTPUT[loss]} to raw logits itself, so "
            f"the last layer (layers[{layer_index}]) must have activation=None, "
            f"not {activation.name.lower()!r}")

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
    POISSON : 5
        Poisson negative log-likelihood from the log-rate: the last layer (no activation)
        outputs ``z = log(rate)``, the loss is ``exp(z) - y * z`` averaged over all outputs
        and ``predict`` returns the rate ``exp(z)``; targets are counts or rates ``>= 0``.
        The terms free of ``z`` are left out, as ``torch.nn.PoissonNLLLoss(log_input=True,
        full=False)`` does; scikit-learn's half Poisson deviance is this loss plus
        ``y * log(y) - y`` (0 where y = 0), summed rather than averaged over outputs.

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
    POISSON = 5


#: ``delta`` of ``huber`` (as ``torch.nn.HuberLoss``'s default).
HUBER_DELTA = 1.0

_ALIASES = {"l1": "mae"}

#: Losses that apply their own output function to raw logits (softmax, sigmoid), so the
#: last layer must have no activation of its own.
FUSED_OUTPUT = {Loss.CROSS_ENTROPY: "softmax", Loss.BINARY_CROSS_ENTROPY: "sigmoid",
                Loss.POISSON: "exp"}

#: Losses whose predictions are classes (evaluate reports accuracy for these).
CLASSIFICATION = (Loss.CROSS_ENTROPY, Loss.BINARY_CROSS_ENTROPY)

#: Losses on real-valued targets; evaluate reports only the loss for these. All but
#: poisson are computed on the last layer's activated output (any activation).
REGRESSION = (Loss.MSE, Loss.HUBER, Loss.MAE, Loss.POISSON)


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
        raw = "the log-rate" if loss == Loss.POISSON else "raw logits"
        raise ValueError(
            f"loss={loss.name.lower()!r} applies {FUSED_OUTPUT[loss]} to {raw} itself, so "
            f"the last layer (layers[{layer_index}]) must have activation=None, "
            f"not {activation.name.lower()!r}")

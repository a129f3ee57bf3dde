"""Optimizer settings. The update rules themselves run in C (src_c/_optim.pxd)."""
from dataclasses import dataclass
from enum import IntEnum

from .data import check_real


class OptimizerCode(IntEnum):
    """Twin of the ``OPT_*`` codes in ``src_c/_optim.pxd`` (a test asserts they agree)."""

    SGD = 0


@dataclass
class SGD:
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 decay.

    The rule is ``torch.optim.SGD``'s (dampening 0), except that weight decay applies to
    weights only, never to biases::

        g = grad + weight_decay * W          (weights; biases use grad)
        v = momentum * v + g                 (v starts at zero)
        step = g + momentum * v if nesterov else v     (just g when momentum == 0)
        p = p - lr * step

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate, > 0.
    momentum : float, default 0.0
        In [0, 1).
    nesterov : bool, default False
        Nesterov momentum; needs ``momentum > 0``.
    weight_decay : float, default 0.0
        L2 penalty coefficient (the gradient of ``weight_decay / 2 * ||W||²``), >= 0.

    Notes
    -----
    The velocity lives in the model that trains with this optimizer, so one ``SGD``
    instance can drive several models. Passing a different optimizer instance to a model
    starts from zero velocity.
    """

    lr: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    code = OptimizerCode.SGD

    def __post_init__(self):
        self.check()

    def check(self):
        """Validate the settings (also called before every use, as they are mutable)."""
        self.lr = check_real(self.lr, "lr", 0.0, low_inclusive=False)
        self.momentum = check_real(self.momentum, "momentum", 0.0)
        if self.momentum >= 1.0:
            raise ValueError(f"momentum must be < 1, got {self.momentum}")
        self.weight_decay = check_real(self.weight_decay, "weight_decay", 0.0)
        if not isinstance(self.nesterov, (bool, int)) or self.nesterov not in (0, 1):
            raise TypeError(f"nesterov must be a bool, got {self.nesterov!r}")
        self.nesterov = bool(self.nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        return self

    def state_size(self, n_params):
        """Length of the optimizer state this rule keeps for ``n_params`` parameters."""
        return n_params if self.momentum != 0 else 0

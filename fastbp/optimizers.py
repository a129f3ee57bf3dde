"""Optimizer settings. The update rules themselves run in C (src_c/_optim.pxd).

Every optimizer follows ``torch.optim``'s definition of its rule, with one deliberate
difference: weight decay (L2, or AdamW's decoupled shrink) and L1 apply to weights only,
never to biases. The gradient ``g`` a rule sees has first been clipped (``clip_norm`` as
``torch.nn.utils.clip_grad_norm_``, then ``clip_value`` as ``clip_grad_value_``) and had
``l1 * sign(W)`` added for the weights.

Optimizer objects hold settings only; the state (moments, step count) lives in the model that
trains with them, so one instance can drive several models, and a model saves its state.
Passing a different optimizer instance to a model starts from fresh state.
"""
import warnings
from dataclasses import dataclass, field, fields
from enum import IntEnum

import numpy as np

from .data import check_real


class OptimizerCode(IntEnum):
    """Twin of the ``OPT_*`` codes in ``src_c/_optim.pxd`` (a test asserts they agree)."""

    SGD = 0
    ADAM = 1
    ADAMW = 2
    RMSPROP = 3
    ADAGRAD = 4


def _check_fraction(value, name):
    value = check_real(value, name, 0.0)
    if value >= 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def _check_bool(value, name):
    """A bool (or 0/1), as a bool; TypeError naming ``name`` otherwise."""
    if not isinstance(value, (bool, int)) or value not in (0, 1):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def _check_optional_positive(value, name):
    if value is None:
        return None
    return check_real(value, name, 0.0, low_inclusive=False)


@dataclass
class Optimizer:
    """Settings shared by every optimizer (keyword-only).

    Parameters
    ----------
    lr : float
        Base learning rate, > 0 (each optimizer has its own default).
    weight_decay : float, default 0.0
        L2 penalty on the weights: ``g += weight_decay * W`` (the gradient of
        ``weight_decay / 2 * ||W||²``); for :class:`AdamW` the decoupled shrink instead.
    l1 : float, default 0.0
        L1 penalty on the weights: ``g += l1 * sign(W)``.
    clip_norm : float or None
        Scale the whole gradient by ``clip_norm / (norm + 1e-6)`` when that is below 1,
        where ``norm`` is its global L2 norm over all layers.
    clip_value : float or None
        Clamp every gradient entry to ``[-clip_value, clip_value]`` (after ``clip_norm``).
    schedule : fastbp.schedules.Schedule or None
        Learning-rate schedule; the rate of every step is computed per epoch in advance.

    Examples
    --------
    Settings are checked when set and again before each use:

    >>> import fastbp as fb
    >>> fb.Adam(lr=-1)
    Traceback (most recent call last):
    ...
    ValueError: lr must be finite and > 0.0, got -1.0

    With a schedule, the rate of every step of an epoch is computed ahead:

    >>> from fastbp import schedules
    >>> fb.SGD(lr=0.1, schedule=schedules.CosineDecay(4)).rates(epoch=2, first_step=0, n_steps=3)
    array([0.05, 0.05, 0.05])
    """

    lr: float
    weight_decay: float = field(default=0.0, kw_only=True)
    l1: float = field(default=0.0, kw_only=True)
    clip_norm: float = field(default=None, kw_only=True)
    clip_value: float = field(default=None, kw_only=True)
    schedule: object = field(default=None, kw_only=True)

    code = None

    def __post_init__(self):
        self.check()

    def check(self):
        """Validate the settings (also called before every use, as they are mutable)."""
        self.lr = check_real(self.lr, "lr", 0.0, low_inclusive=False)
        self.weight_decay = check_real(self.weight_decay, "weight_decay", 0.0)
        self.l1 = check_real(self.l1, "l1", 0.0)
        self.clip_norm = _check_optional_positive(self.clip_norm, "clip_norm")
        self.clip_value = _check_optional_positive(self.clip_value, "clip_value")
        if self.schedule is not None:
            from .schedules import Schedule

            if not isinstance(self.schedule, Schedule):
                raise TypeError("schedule must be a fastbp.schedules.Schedule or None, got "
                                f"{type(self.schedule).__name__}")
        self._check_rule()
        return self

    def _check_rule(self):
        """Validate the rule's own settings."""

    def state_slots(self):
        """Buffers of per-parameter state the rule keeps."""
        return 0

    def initial_state(self, n_params, dtype):
        """Fresh state: ``state_slots()`` zeroed buffers of ``n_params``, back to back."""
        return np.zeros(self.state_slots() * n_params, dtype=dtype)

    def rates(self, epoch, first_step, n_steps):
        """The learning rate of each of ``n_steps`` updates, numbered from ``first_step``
        (0-based, counted since the state was created), in epoch ``epoch`` (0-based)."""
        if self.schedule is None:
            return np.full(n_steps, self.lr)
        steps = np.arange(first_step, first_step + n_steps, dtype=np.int64)
        rates = np.asarray(self.schedule.rates(self.lr, epoch, steps), dtype=np.float64)
        if rates.shape != (n_steps,) or not (np.all(np.isfinite(rates)) and np.all(rates >= 0)):
            raise ValueError(f"schedule {self.schedule!r} gave learning rates that are not "
                             f"all finite and >= 0: {rates[:5]}...")
        return rates

    def to_config(self):
        """JSON-able settings (the schedule as its own config)."""
        config = {"type": type(self).__name__}
        for item in fields(self):
            value = getattr(self, item.name)
            config[item.name] = value.to_config() if item.name == "schedule" and value else value
        return config


def optimizer_from_config(config):
    """Rebuild an optimizer from :meth:`Optimizer.to_config`; ValueError if unknown."""
    settings = dict(config)
    kind = settings.pop("type", None)
    classes = {cls.__name__: cls for cls in (SGD, Adam, AdamW, RMSprop, Adagrad)}
    if kind not in classes:
        raise ValueError(f"unknown optimizer type {kind!r}; valid: {sorted(classes)}")
    if kind in ("Adam", "AdamW") and ("beta1" in settings or "beta2" in settings):
        # Files store beta1 and beta2 (see Adam.to_config): not the deprecated keywords.
        settings["betas"] = (settings.pop("beta1", 0.9), settings.pop("beta2", 0.999))
    if settings.get("schedule") is not None:
        from .schedules import from_config

        settings["schedule"] = from_config(settings["schedule"])
    return classes[kind](**settings)


@dataclass
class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and Nesterov momentum.

    ``torch.optim.SGD``'s rule (dampening 0)::

        g = grad + weight_decay * W          (weights; biases use grad)
        v = momentum * v + g                 (v starts at zero)
        step = g + momentum * v if nesterov else v     (just g when momentum == 0)
        p = p - lr * step

    Parameters
    ----------
    lr : float, default 0.01
    momentum : float, default 0.0
        In [0, 1).
    nesterov : bool, default False
        Nesterov momentum; needs ``momentum > 0``.
    weight_decay, l1, clip_norm, clip_value, schedule
        See :class:`Optimizer`.

    Examples
    --------
    >>> import fastbp as fb
    >>> optimizer = fb.SGD(lr=0.05, momentum=0.9, nesterov=True, clip_norm=1.0)
    >>> optimizer.state_slots()  # one velocity buffer, kept by the model it trains
    1
    """

    lr: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False

    code = OptimizerCode.SGD

    def _check_rule(self):
        self.momentum = _check_fraction(self.momentum, "momentum")
        self.nesterov = _check_bool(self.nesterov, "nesterov")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")

    def state_slots(self):
        return 1 if self.momentum != 0 else 0


def _adam_betas(betas, beta1, beta2, owner):
    """``betas`` with the deprecated ``beta1``/``beta2`` keywords folded in (warning)."""
    if beta1 is None and beta2 is None:
        return betas
    warnings.warn(f"{owner}(beta1=..., beta2=...) is deprecated; pass betas=(beta1, beta2) "
                  "as torch.optim.Adam does", DeprecationWarning, stacklevel=3)
    first, second = _betas_pair(betas)
    return (first if beta1 is None else beta1, second if beta2 is None else beta2)


def _betas_pair(betas):
    """``betas`` as a pair (unchecked numbers), or TypeError naming it."""
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2) such as (0.9, 0.999), as in "
                        f"torch.optim.Adam, got {betas!r}")
    return tuple(betas)


@dataclass(init=False)
class Adam(Optimizer):
    """Adam (Kingma & Ba), as ``torch.optim.Adam`` (epsilon outside the square root)::

        g = grad + weight_decay * W          (coupled L2, weights only)
        m = m + (1 - beta1) * (g - m)
        v = beta2 * v + (1 - beta2) * g²
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    with ``t`` the 1-based update count and ``(beta1, beta2) = betas``. State: ``m`` then
    ``v``. The core computes the last line as ``p - lr·c/(1 - beta1**t) · m / (sqrt(v) +
    eps·c)``, ``c = sqrt(1 - beta2**t)``: the same step, with one division per element fewer
    (the last bits can differ from torch's).

    Parameters
    ----------
    lr : float, default 0.001
    betas : (float, float), default (0.9, 0.999)
        ``(beta1, beta2)``, each in [0, 1), as ``torch.optim.Adam``'s ``betas``.
    eps : float, default 1e-8
        > 0.
    weight_decay, l1, clip_norm, clip_value, schedule
        See :class:`Optimizer` (keyword-only).
    beta1, beta2 : float, optional
        Deprecated (a ``DeprecationWarning``): the names before ``betas``; each replaces
        its entry of ``betas``.

    Attributes
    ----------
    beta1, beta2 : float
        ``betas[0]`` and ``betas[1]`` (setting them is deprecated: set ``betas``).

    Examples
    --------
    >>> import fastbp as fb
    >>> model = fb.mlp([4, 8, 3], activation="relu", loss="cross_entropy", seed=0)
    >>> X, y = [[0.0, 1.0, 2.0, 3.0]] * 6, [0, 1, 2, 0, 1, 2]
    >>> optimizer = fb.Adam(lr=1e-3, betas=(0.9, 0.99))
    >>> history = model.fit(X, y, epochs=2, batch_size=3, optimizer=optimizer)
    >>> len(history.loss), optimizer.beta2
    (2, 0.99)
    """

    lr: float = 0.001
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8

    code = OptimizerCode.ADAM

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8, *, beta1=None, beta2=None,
                 weight_decay=None, l1=0.0, clip_norm=None, clip_value=None, schedule=None):
        self.lr, self.eps = lr, eps
        self.betas = _adam_betas(betas, beta1, beta2, type(self).__name__)
        # AdamW's default decay differs: each class's field default.
        self.weight_decay = (type(self).__dataclass_fields__["weight_decay"].default
                             if weight_decay is None else weight_decay)
        self.l1, self.clip_norm, self.clip_value, self.schedule = l1, clip_norm, clip_value, schedule
        self.__post_init__()

    @property
    def beta1(self):
        return self.betas[0]

    @beta1.setter
    def beta1(self, value):
        warnings.warn("setting beta1 is deprecated; set betas = (beta1, beta2)",
                      DeprecationWarning, stacklevel=2)
        self.betas = (value, _betas_pair(self.betas)[1])

    @property
    def beta2(self):
        return self.betas[1]

    @beta2.setter
    def beta2(self, value):
        warnings.warn("setting beta2 is deprecated; set betas = (beta1, beta2)",
                      DeprecationWarning, stacklevel=2)
        self.betas = (_betas_pair(self.betas)[0], value)

    def _check_rule(self):
        first, second = _betas_pair(self.betas)
        self.betas = (_check_fraction(first, "betas[0] (beta1)"),
                      _check_fraction(second, "betas[1] (beta2)"))
        self.eps = check_real(self.eps, "eps", 0.0, low_inclusive=False)

    def state_slots(self):
        return 2

    def to_config(self):
        # Files keep beta1 and beta2 (format version 3, readable by earlier fastbp).
        config = super().to_config()
        config["beta1"], config["beta2"] = config.pop("betas")
        return config


@dataclass(init=False)
class AdamW(Adam):
    """Adam with decoupled weight decay, as ``torch.optim.AdamW``: before Adam's step
    (without L2), the weights shrink by ``W = W * (1 - lr * weight_decay)``.

    Parameters
    ----------
    lr, betas, eps
        As for :class:`Adam` (and the deprecated ``beta1``, ``beta2``).
    weight_decay : float, default 0.01
        The decoupled decay (weights only).
    l1, clip_norm, clip_value, schedule
        See :class:`Optimizer`.

    Examples
    --------
    >>> import fastbp as fb
    >>> fb.AdamW(lr=1e-3).weight_decay
    0.01
    """

    weight_decay: float = field(default=0.01, kw_only=True)

    code = OptimizerCode.ADAMW


@dataclass
class RMSprop(Optimizer):
    """RMSprop, as ``torch.optim.RMSprop``::

        g = grad + weight_decay * W
        s = alpha * s + (1 - alpha) * g²
        m = m + (1 - alpha) * (g - m)              (centered only: the mean gradient)
        r = sqrt(s - m²) if centered else sqrt(s)
        b = momentum * b + g / (r + eps)           (b = g / (r + eps) without momentum)
        p = p - lr * b

    State: ``s``, then ``b`` when momentum > 0, then ``m`` when centered. ``s - m²`` is a
    variance, >= 0, but rounding can take it just below 0, where torch's square root gives
    NaN; fastbp takes it as 0 there (the step is then ``g / eps``, as for a zero variance).

    Parameters
    ----------
    lr : float, default 0.01
    alpha : float, default 0.99
        In [0, 1).
    eps : float, default 1e-8
    momentum : float, default 0.0
        In [0, 1).
    centered : bool, default False
        Normalise by an estimate of the gradient's variance instead of its mean square
        (torch's ``centered=True``), which keeps a third state buffer, ``m``.
    weight_decay, l1, clip_norm, clip_value, schedule
        See :class:`Optimizer`.

    Examples
    --------
    >>> import fastbp as fb
    >>> fb.RMSprop(lr=1e-3, momentum=0.9).state_slots()  # s and the momentum buffer b
    2
    >>> fb.RMSprop(lr=1e-3, momentum=0.9, centered=True).state_slots()  # and the mean m
    3
    """

    lr: float = 0.01
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    centered: bool = False

    code = OptimizerCode.RMSPROP

    def _check_rule(self):
        self.alpha = _check_fraction(self.alpha, "alpha")
        self.eps = check_real(self.eps, "eps", 0.0, low_inclusive=False)
        self.momentum = _check_fraction(self.momentum, "momentum")
        self.centered = _check_bool(self.centered, "centered")

    def state_slots(self):
        return 1 + (self.momentum != 0) + self.centered


@dataclass
class Adagrad(Optimizer):
    """Adagrad, as ``torch.optim.Adagrad``::

        g = grad + weight_decay * W
        s = s + g²                 (s starts at initial_accumulator_value)
        rate = lr / (1 + (step - 1) * lr_decay)
        p = p - rate * g / (sqrt(s) + eps)

    where ``step`` is the 1-based number of this update since the state was created (it
    carries over between ``fit`` calls with the same optimizer, and is saved with the model).

    Parameters
    ----------
    lr : float, default 0.01
        With a schedule, the schedule's rate at this step, which ``lr_decay`` then divides.
    eps : float, default 1e-10
    initial_accumulator_value : float, default 0.0
        >= 0.
    lr_decay : float, default 0.0
        >= 0.
    weight_decay, l1, clip_norm, clip_value, schedule
        See :class:`Optimizer`.

    Examples
    --------
    >>> import fastbp as fb
    >>> fb.Adagrad(lr=0.1, initial_accumulator_value=0.1).state_slots()  # the sum of g²
    1
    """

    lr: float = 0.01
    eps: float = 1e-10
    initial_accumulator_value: float = 0.0
    lr_decay: float = 0.0

    code = OptimizerCode.ADAGRAD

    def _check_rule(self):
        self.eps = check_real(self.eps, "eps", 0.0, low_inclusive=False)
        self.initial_accumulator_value = check_real(
            self.initial_accumulator_value, "initial_accumulator_value", 0.0)
        self.lr_decay = check_real(self.lr_decay, "lr_decay", 0.0)

    def state_slots(self):
        return 1

    def initial_state(self, n_params, dtype):
        return np.full(n_params, self.initial_accumulator_value, dtype=dtype)

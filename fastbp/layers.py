"""Layer specs (frozen, shareable between models) and their views into a model's parameters."""
import math
import numbers
from dataclasses import dataclass

from .activations import activation_code, activation_name
from .data import check_positive_int
from .initializers import check_bias_init, check_init


@dataclass(frozen=True)
class Dense:
    """A fully connected layer: ``a = activation(x @ W + b)``.

    Parameters
    ----------
    in_features : int
        Width of the input, ``x`` of shape (batch, in_features).
    out_features : int
        Width of the output; ``W`` has shape (in_features, out_features), ``b`` (out_features,).
    activation : str or None
        One of ``"identity"`` (or None), ``"sigmoid"``, ``"tanh"``, ``"relu"``,
        ``"leaky_relu"`` (negative slope 0.01), ``"gelu"`` (the tanh approximation, as
        ``torch.nn.GELU(approximate="tanh")``), ``"softplus"`` (beta 1), ``"elu"`` (alpha 1)
        or ``"swish"`` (``"silu"``: ``x * sigmoid(x)``). A gelu or swish layer also keeps its
        pre-activation for backward: one more (batch, out_features) block of workspace.
    init : str, default "auto"
        How the model draws ``W`` (Keras's definitions, with ``fan_in = in_features``,
        ``fan_out = out_features``; see :mod:`fastbp.initializers`): ``"glorot_uniform"``,
        ``"glorot_normal"``, ``"he_uniform"``, ``"he_normal"``, ``"lecun_uniform"``,
        ``"lecun_normal"`` (the normal ones truncated at two standard deviations, as Keras),
        ``"zeros"``, or ``"auto"``: ``he_uniform`` for relu and leaky_relu, ``glorot_uniform``
        otherwise.
    bias_init : "zeros" or float, default "zeros"
        Initial value of every entry of ``b`` (0 is stored as ``"zeros"``).

    Examples
    --------
    A spec holds no weights; a model compiled from specs does:

    >>> import fastbp as fb
    >>> fb.Dense(64, 32, activation="silu")
    Dense(64, 32, activation='swish')
    >>> model = fb.Sequential([fb.Dense(4, 3, "relu"), fb.Dense(3, 2)], loss="mse", seed=0)
    >>> model.layers[0].weight.shape, model.layers[1].bias.shape
    ((4, 3), (2,))
    """

    in_features: int
    out_features: int
    activation: str = "identity"
    init: str = "auto"
    bias_init: object = "zeros"

    def __post_init__(self):
        object.__setattr__(self, "in_features", check_positive_int(self.in_features, "in_features"))
        object.__setattr__(self, "out_features", check_positive_int(self.out_features, "out_features"))
        object.__setattr__(self, "activation", activation_name(activation_code(self.activation)))
        object.__setattr__(self, "init", check_init(self.init))
        object.__setattr__(self, "bias_init", check_bias_init(self.bias_init))

    @property
    def activation_code(self):
        """The :class:`fastbp.activations.ActivationCode` of ``activation``, as the compiled
        core sees it."""
        return activation_code(self.activation)

    def __repr__(self):
        # Initialisers only when not the defaults, so the common repr stays short.
        extra = "" if self.init == "auto" else f", init={self.init!r}"
        extra += "" if self.bias_init == "zeros" else f", bias_init={self.bias_init!r}"
        return f"Dense({self.in_features}, {self.out_features}, activation={self.activation!r}{extra})"


@dataclass(frozen=True)
class Dropout:
    """Inverted dropout on the input of the next :class:`Dense` layer, while training.

    During ``fit`` and ``train_step`` each element of the input (each unit of each sample)
    is set to 0 with probability ``rate`` and the others are multiplied by
    ``1 / (1 - rate)``, so the expected input is unchanged; ``predict``, ``evaluate`` and
    (by default) ``gradients`` never drop. The masks are drawn inside the compiled core from
    the model's seed and its count of training steps, so a fixed ``seed`` gives bitwise
    repeatable training, and saving, loading and resuming continues the same masks.

    In :class:`Sequential`, a Dropout stands between two Dense layers (on a hidden layer's
    output) or first (on the network's input), never last and never twice in a row.

    Parameters
    ----------
    rate : float
        Probability of dropping each element, ``0 <= rate < 1``. 0 is no dropout at all
        (no workspace, no work). The core draws with 32-bit resolution: the probability
        used is ``floor(rate * 2**32) / 2**32`` and the scale matches it, ``1 / (1 - that)``
        (the same as ``1 / (1 - rate)`` to ten digits).

    Examples
    --------
    >>> import fastbp as fb
    >>> fb.Sequential([fb.Dense(64, 128, "relu"), fb.Dropout(0.5), fb.Dense(128, 10)],
    ...               loss="cross_entropy", seed=0)
    Sequential([
        Dense(64, 128, activation='relu'),
        Dropout(0.5),
        Dense(128, 10, activation='identity')],
        loss='cross_entropy', dtype='float32', n_parameters=9610)
    """

    rate: float

    def __post_init__(self):
        rate = self.rate
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
            raise TypeError(f"rate must be a real number in [0, 1), got {type(rate).__name__} "
                            f"{rate!r}")
        rate = float(rate)
        if not (math.isfinite(rate) and 0.0 <= rate < 1.0):
            raise ValueError(f"rate must be in [0, 1) (the probability of dropping a unit), "
                             f"got {rate}")
        object.__setattr__(self, "rate", rate)

    def __repr__(self):
        return f"Dropout({self.rate!r})"


@dataclass(frozen=True)
class Activation:
    """An activation function as a layer of its own: ``a = activation(x)``, elementwise.

    For pre-activation blocks (BatchNorm -> Activation -> Dense) and heads; a
    :class:`Dense` layer's own ``activation`` is fused with its bias and costs less.

    Parameters
    ----------
    activation : str or None
        Any of :class:`Dense`'s activations by name.

    Examples
    --------
    >>> import fastbp as fb
    >>> fb.Activation("relu")
    Activation('relu')
    """

    activation: str

    def __post_init__(self):
        object.__setattr__(self, "activation", activation_name(activation_code(self.activation)))

    @property
    def activation_code(self):
        return activation_code(self.activation)

    def __repr__(self):
        return f"Activation({self.activation!r})"


@dataclass(frozen=True)
class Residual:
    """A residual block: ``y = x + f(x)``, f the block's layers applied in order.

    Parameters
    ----------
    layers : sequence of Dense, Dropout, BatchNorm, LayerNorm, Activation or Residual
        The branch ``f``. Its output width must equal its input width, so the two can be
        added. Blocks nest.

    Examples
    --------
    The block of Gorishniy et al.'s tabular ResNet:

    >>> import fastbp as fb
    >>> fb.Residual([fb.BatchNorm(8), fb.Dense(8, 16, "relu"), fb.Dropout(0.1),
    ...              fb.Dense(16, 8), fb.Dropout(0.1)])
    Residual([BatchNorm(8), Dense(8, 16, activation='relu'), Dropout(0.1), Dense(16, 8, activation='identity'), Dropout(0.1)])
    """

    layers: tuple

    def __post_init__(self):
        if isinstance(self.layers, (str, bytes)) or not hasattr(self.layers, "__iter__"):
            raise TypeError(f"layers must be a sequence of layers, got "
                            f"{type(self.layers).__name__}")
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("a Residual block needs at least one layer")

    def __repr__(self):
        return f"Residual([{', '.join(repr(layer) for layer in self.layers)}])"

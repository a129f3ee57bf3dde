"""fastbp: fast multilayer-perceptron training by backpropagation on the CPU.

The hot loops (forward, backward, update) run in a compiled core over SciPy's BLAS; this
package defines models, checks inputs and orchestrates training.
"""
from importlib import metadata as _metadata

try:
    from . import _native  # noqa: F401  (imports the compiled core; everything below needs it)
except ModuleNotFoundError as error:  # pragma: no cover - depends on how Python was started
    raise ImportError(
        f"fastbp's compiled core could not be imported from {__path__[0]}. If that is the "
        "source checkout, Python found it before the installed package (python -m puts the "
        "current directory first): run from another directory, use the `fastbp` command, or "
        "build in place with `python -m pip install -e .`.") from error

from .activations import Activation
from .gradcheck import check_gradients
from .io import load
from .layers import Dense, Dropout
from .losses import Loss
from .model import Sequential, mlp
from . import callbacks, schedules
from .optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop
from .training import DivergenceError, History

# One source for the version: pyproject.toml's, as the installed package's metadata says.
try:
    __version__ = _metadata.version("fastbp")
except _metadata.PackageNotFoundError:  # pragma: no cover - a source tree put on sys.path by hand
    __version__ = "0+unknown"

__all__ = ["Activation", "Adagrad", "Adam", "AdamW", "Dense", "DivergenceError", "Dropout",
           "History", "Loss", "Optimizer", "RMSprop", "SGD", "Sequential", "callbacks",
           "check_gradients", "load", "mlp", "schedules"]

"""fastbp: fast multilayer-perceptron training by backpropagation on the CPU.

The hot loops (forward, backward, update) run in a compiled core over SciPy's BLAS; this
package defines models, checks inputs and orchestrates training.
"""
from .activations import Activation
from .gradcheck import check_gradients
from .layers import Dense
from .losses import Loss
from .model import Sequential, mlp
from .optimizers import SGD
from .training import DivergenceError, History

__version__ = "0.1.0"

__all__ = ["Activation", "Dense", "DivergenceError", "History", "Loss", "SGD", "Sequential",
           "check_gradients", "mlp"]

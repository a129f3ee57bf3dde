"""``MLPRegressor``: an identity output (exp for 'poisson') and fastbp's regression losses
on top of the shared base."""
import numpy as np
from scipy.special import xlogy
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils import column_or_1d
from sklearn.utils.metaestimators import available_if

from ..losses import CLASSIFICATION, Loss, loss_code
from ._base import _BaseMLP, _Objective, _Targets
from ._params import _FLOAT32_RANGE, _NONFINITE, _REGRESSION_ALIASES, _validate_data


def _poisson_constant(Y, sample_weight):
    """Σ over outputs of the (weighted) mean of y·log y − y: the part of scikit-learn's
    half Poisson deviance that does not depend on the prediction."""
    return float(np.sum(np.average(xlogy(Y, Y) - Y, weights=sample_weight, axis=0)))


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor``, trained by fastbp.

    Takes every parameter of ``sklearn.neural_network.MLPRegressor`` with the same name,
    default and meaning (see :class:`MLPClassifier` and the module docstring of
    :mod:`fastbp.sklearn`), with an identity output layer.

    Parameters
    ----------
    loss : str, default='mse'
        'mse' (also 'squared_error') is scikit-learn's half squared error, and 'poisson'
        its half Poisson deviance with an exp output (``predict`` returns the rate; targets
        must be >= 0): ``loss_`` and the gradients are scikit-learn's (the training
        constant Σ mean(y·log y − y) that scikit-learn's ``loss_`` includes is added to
        it; with sample weights and shuffling, from the unshuffled batches). Extra: any
        other regression loss of fastbp (e.g. 'huber', 'mae') is used as fastbp defines
        it.
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start,
    momentum, nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2,
    epsilon, n_iter_no_change, max_fun, dropout, dtype
        As for :class:`MLPClassifier` (early stopping scores R²).

    Attributes
    ----------
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, t_, coefs_,
    intercepts_, n_features_in_, feature_names_in_, n_iter_, n_layers_, n_outputs_,
    out_activation_, model_
        As for :class:`MLPClassifier`.
    """

    def __init__(self, loss="mse", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, dtype="float32"):
        self.loss = loss
        self._init_params(hidden_layer_sizes, activation, solver, alpha, batch_size,
                          learning_rate, learning_rate_init, power_t, max_iter, shuffle,
                          random_state, tol, verbose, warm_start, momentum, nesterovs_momentum,
                          early_stopping, validation_fraction, beta_1, beta_2, epsilon,
                          n_iter_no_change, max_fun, dropout, dtype)

    def fit(self, X, y, sample_weight=None, validation_data=None):
        """Fit the model to X and y (array-like of shape (n_samples,) or (n_samples,
        n_outputs)); ``sample_weight`` and ``validation_data`` as for
        :meth:`MLPClassifier.fit`. Returns self."""
        return self._fit(X, y, sample_weight, incremental=False, validation_data=validation_data)

    @available_if(lambda self: self._stochastic())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _fastbp_loss(self):
        name = _REGRESSION_ALIASES.get(self.loss, self.loss)
        valid = [item.name.lower() for item in Loss if item not in CLASSIFICATION]
        try:
            code = loss_code(name) if isinstance(name, str) else None
        except ValueError:
            code = None
        if code is None or code in CLASSIFICATION:
            raise ValueError(f"loss={self.loss!r} is not available; valid: 'squared_error' "
                             f"(the same as 'mse'), {', '.join(map(repr, valid))}")
        return code.name.lower()

    def _make_objective(self, n_outputs):
        loss = self._fastbp_loss()
        if loss == "mse":
            return _Objective("mse", 2.0 / n_outputs, 0.5)
        if loss == "poisson":
            # scikit-learn: Σ over outputs of the mean of exp(z) − y·z + (y·log y − y);
            # fastbp: the mean over outputs of exp(z) − y·z.
            return _Objective("poisson", 1.0 / n_outputs, float(n_outputs), _poisson_constant)
        return _Objective(loss, 1.0, 1.0)

    def _output_activation(self):
        return "exp" if self._fastbp_loss() == "poisson" else "identity"

    def _validate_input(self, X, y, sample_weight, incremental, reset):
        self._fastbp_loss()
        X, y = _validate_data(self, X, y, fitting=True, multi_output=True, y_numeric=True,
                              dtype=self._np_dtype(), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        with np.errstate(over="ignore"):  # checked just below
            Y = np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=self._np_dtype())
        if not np.all(np.isfinite(Y)):  # y itself is finite (validate_data checked it)
            raise ValueError(f"{_NONFINITE} Input y contains a value too large for "
                             f"dtype('{Y.dtype}'). {_FLOAT32_RANGE}")
        return (X, _Targets(Y, y, Y.shape[1]),
                self._check_sample_weight(sample_weight, X.shape[0]))

    def _check_validation_targets(self, y, n_samples):
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.shape[0] != n_samples or y.reshape(n_samples, -1).shape[1] != self.n_outputs_:
            raise ValueError(f"validation_data: y_val has shape {y.shape}, expected "
                             f"({n_samples}, {self.n_outputs_})")
        return y

    _score_function = staticmethod(r2_score)

    def _from_output(self, output):
        return output.ravel() if output.shape[1] == 1 else output

    def predict(self, X):
        """Predicted values: array of shape (n_samples,) or (n_samples, n_outputs)."""
        return self._from_output(self._output(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True}

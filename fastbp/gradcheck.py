"""Gradient checking against central finite differences, in float64."""
import numpy as np

from ._native import core as _core
from .data import check_int, check_positive_int, check_real
from .model import Sequential


def check_gradients(model, X, y, weight_decay=0.0, eps=1e-5, max_checks=None, seed=0,
                    dropout_step=None):
    """Largest relative error between backprop gradients and central differences.

    The check runs on a float64 copy of ``model`` (the model itself is not touched), so a
    float32 model is checked in float64 arithmetic. For each checked parameter ``p``::

        numeric = (L(p + eps) - L(p - eps)) / (2 eps)

    where ``L`` is the mean loss on (X, y) plus ``weight_decay / 2 * sum(||W||²)``; with
    BatchNorm layers, the training loss: each takes the statistics of the batch (X), as
    :meth:`Sequential.gradients` does. The error of each parameter array (every layer's
    weight and bias, every norm's ``γ`` and ``β``) is
    ``max |analytic - numeric| / max |numeric|`` over its checked entries: relative to the
    array's scale, so entries near zero, whose finite differences are all round-off, do not
    dominate (and an array whose gradient is zero, such as a bias right before a BatchNorm,
    is measured against 1e-4 of the largest gradient instead). The largest over the arrays
    is returned.

    Parameters
    ----------
    model : Sequential
    X : array-like of shape (n_samples, n_features)
    y : array-like
        As for :meth:`Sequential.gradients`.
    weight_decay : float, default 0.0
    eps : float, default 1e-5
    max_checks : int or None
        Check at most this many parameters, drawn at random (seeded); None checks all.
    seed : int
        Seeds the draw of parameters when ``max_checks`` is given.
    dropout_step : int or None
        None checks the network without dropout (as :meth:`Sequential.evaluate` sees it).
        An int checks it through the dropout masks of that training step (as
        :meth:`Sequential.gradients` takes it): every evaluation of ``L`` uses the same
        masks, so the check covers dropout's backward rule.

    Returns
    -------
    float
        The largest error over the parameter arrays (about 1e-9 when the gradients are right;
        a kink of relu crossed by ``eps`` can raise it).

    Examples
    --------
    >>> import fastbp as fb
    >>> from fastbp.datasets import make_classification
    >>> X, y = make_classification(n_samples=16, n_features=5, n_classes=3)
    >>> model = fb.mlp([5, 4, 3], activation="tanh", loss="cross_entropy", seed=0)
    >>> fb.check_gradients(model, X, y) < 1e-6
    True
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastbp.Sequential, got {type(model).__name__}")
    weight_decay = check_real(weight_decay, "weight_decay", 0.0)
    eps = check_real(eps, "eps", 0.0, low_inclusive=False)
    if dropout_step is not None:
        dropout_step = check_int(dropout_step, "dropout_step", 0)
    twin = Sequential(model._specs, loss=model.loss, dtype="float64", seed=0)
    twin.parameters[...] = model.parameters
    twin._plan.dropout_seed = model._plan.dropout_seed
    twin.gradients(X, y, weight_decay, dropout_step=dropout_step)
    analytic = twin._plan.grads.copy()

    X, Y, labels = twin._check_Xy(X, y)
    plan, params = twin._plan, twin.parameters

    def objective():
        # Through the same dropout masks, or with BatchNorm's batch statistics (what the
        # gradients differentiate; evaluate uses the running ones): the training loss.
        if dropout_step is not None or plan.has_batchnorm:  # (its gradients are junk)
            return _core.gradients(plan, X, Y, labels, weight_decay,
                                   dropout_step=-1 if dropout_step is None else dropout_step)
        weights = params[:plan.n_weights]
        return _core.evaluate(plan, X, Y, labels)[0] + 0.5 * weight_decay * weights @ weights

    indices = np.arange(params.shape[0])
    if max_checks is not None:
        max_checks = check_positive_int(max_checks, "max_checks")
        if max_checks < indices.shape[0]:
            indices = np.random.default_rng(seed).choice(indices, max_checks, replace=False)
    numeric = np.full(params.shape[0], np.nan)
    for i in indices:
        original = params[i]
        params[i] = original + eps
        upper = objective()
        params[i] = original - eps
        lower = objective()
        params[i] = original
        numeric[i] = (upper - lower) / (2 * eps)
    worst = 0.0
    # An array whose gradient is exactly zero (a bias before BatchNorm, which subtracts the
    # mean) has only round-off on both sides: its scale is floored at 1e-4 of the largest.
    checked_all = ~np.isnan(numeric)
    floor = 1e-4 * max(np.abs(analytic[checked_all]).max(initial=0.0),
                       np.abs(numeric[checked_all]).max(initial=0.0))
    for pair in plan.pairs(np.arange(params.shape[0])):  # each weight, bias, γ and β
        for positions in pair:
            positions = positions.ravel()
            checked = ~np.isnan(numeric[positions])
            if checked.any():
                a, n = analytic[positions][checked], numeric[positions][checked]
                scale = max(np.abs(a).max(), np.abs(n).max(), floor, 1e-300)
                worst = max(worst, float(np.abs(a - n).max() / scale))
    return worst

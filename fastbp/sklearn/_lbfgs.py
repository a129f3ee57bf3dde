"""The 'lbfgs' solver: ``scipy.optimize.minimize(method="L-BFGS-B")`` on the flat parameter
vector, with ``Sequential.gradients`` as the full-batch objective (module note C)."""
import warnings

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning


class _LbfgsSolver:
    """'lbfgs' for ``_BaseMLP`` (a mixin)."""

    def _fit_lbfgs(self, X, targets, sample_weight, rng, pending):
        self._ensure_model(pending, rng)
        model, c = self.model_, self._objective.grad_scale
        # scikit-learn divides the loss, its gradient and the L2 term by the total weight:
        # the core's "weights" reduction, which scales weight_decay by rows / total weight.
        n_samples = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
        weight_decay = c * float(self.alpha) / n_samples
        parameters = model.parameters
        X = model._check_X(X)  # once, not per evaluation (sparse X: the core's CSR rows)
        extra = {}
        if sample_weight is not None:
            extra = dict(sample_weight=sample_weight, sample_weight_reduction="weights")
        rows_decay = c * float(self.alpha) / X.shape[0]  # what the core scales

        def objective(flat):
            parameters[...] = flat
            loss, grads = model.gradients(X, targets.fastbp, weight_decay=rows_decay, **extra)
            gradient = np.concatenate([dW.ravel() for dW, _ in grads] + [db for _, db in grads])
            return loss / c, gradient.astype(np.float64) / c

        def report(intermediate_result):  # SciPy passes the OptimizeResult by this name
            print("Iteration %d, loss = %.8f" % (report.iteration, intermediate_result.fun))
            report.iteration += 1
        report.iteration = 1

        result = scipy.optimize.minimize(
            objective, parameters.astype(np.float64), method="L-BFGS-B", jac=True,
            callback=report if self.verbose else None,
            options={"maxfun": int(self.max_fun), "maxiter": int(self.max_iter),
                     "gtol": float(self.tol)})
        parameters[...] = result.x
        self.n_iter_ = min(result.nit, int(self.max_iter))
        if result.status != 0:
            message = (f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                       f"(status={result.status}):\n{result.message}\n")
            if self.n_iter_ == self.max_iter:
                message += ("\nIncrease the number of iterations to improve the convergence "
                            f"(max_iter={self.max_iter}).")
            warnings.warn(message, ConvergenceWarning)
        # scikit-learn's loss_: its reported loss (see note C) plus alpha/(2n)·||W||².
        norm2 = self._weight_norm2()
        data_loss = c * float(result.fun) - 0.5 * weight_decay * norm2
        self.loss_ = (self._objective.report_scale * data_loss
                      + 0.5 * float(self.alpha) * norm2 / n_samples
                      + self._objective.offset(np.asarray(targets.fastbp, dtype=np.float64),
                                               sample_weight, X.shape[0]))

"""scikit-learn drop-ins: ``MLPClassifier`` and ``MLPRegressor`` trained by fastbp's core.

Change one import line::

    from fastbp.sklearn import MLPClassifier    # was: from sklearn.neural_network import ...

A. What matches scikit-learn. Every parameter of ``sklearn.neural_network.MLPClassifier`` /
   ``MLPRegressor`` with its name, default and meaning; the same fitted attributes; ``fit``,
   ``partial_fit``, ``predict``, ``predict_proba``, ``predict_log_proba``, ``score``;
   cloning, pipelines, grid search, pickling, string labels and multi-label indicator
   targets. X may be dense or ``scipy.sparse`` (matrices and arrays) everywhere X is taken
   (``fit``, ``partial_fit``, the predictions, ``score``, ``validation_data``, early
   stopping's split), with scikit-learn's ``accept_sparse=["csr", "csc"]``: other formats
   (COO, LIL, ...) become CSR as in scikit-learn. Sparse X is never densified: CSC is
   converted to CSR once per fit, and the core's first Dense layer reads the CSR rows
   where they lie (:mod:`fastbp.sparse`); the fit equals the fit on ``X.toarray()`` up to
   rounding (the sums run in another order). The initial weights are scikit-learn's (Glorot-uniform, drawn in the same order
   from the same ``random_state``), so both start from the same point; so does the
   early-stopping split (``train_test_split`` on the same random stream).

B. How it trains. One ``Sequential.fit`` call per ``fit`` (``partial_fit``: one epoch); the
   per-epoch rules (``loss_curve_``, ``tol`` / ``n_iter_no_change``, 'invscaling' and
   'adaptive' rates, early stopping on the validation score, best weights) run in a
   callback between the compiled epochs: Python per epoch, never per batch. 'lbfgs' is
   ``scipy.optimize.minimize(method="L-BFGS-B")`` on the flat parameter vector with
   ``Sequential.gradients`` as the full-batch objective.

C. The exact mapping. scikit-learn's gradient of a batch of ``B`` rows is ``g + alpha·W/B``,
   ``g`` the gradient of its data loss: the batch mean of log-loss (softmax), of binary
   log-loss summed over the outputs (logistic), or of half the squared error summed over the
   outputs (identity). fastbp's losses average over the outputs too and MSE has no half, so
   fastbp's data gradient is ``c·g`` with ``c = 1`` (softmax), ``1/n_outputs`` (logistic),
   ``2/n_outputs`` (MSE). Hence, with scikit-learn's rate ``lr``:

   * SGD: ``fastbp.SGD(lr=lr/c, momentum, nesterov, weight_decay=c·alpha/B)``. sklearn's
     velocity ``v = momentum·v - lr·G`` is fastbp's (torch's) buffer scaled by ``-lr/c``;
     when sklearn's rate changes between epochs ('invscaling', 'adaptive') the buffer (the
     model's optimizer state) is rescaled by ``old/new``, so the two stay the same algorithm
     step for step.
   * Adam: ``fastbp.Adam(lr, betas=(beta_1, beta_2), eps=c·epsilon, weight_decay=c·alpha/B)`` (but
     see D for ``eps``).
   * L-BFGS: the objective and gradient handed to SciPy are fastbp's divided by ``c``, with
     ``weight_decay = c·alpha/n_samples``.

   ``loss_`` and ``loss_curve_`` are scikit-learn's numbers: fastbp's epoch loss times
   ``n_outputs`` (logistic) or ``1/2`` (MSE), plus ``alpha/(2·B)·||W||²`` per batch.

D. Where it is not bit-for-bit scikit-learn (float64, same data order):

   * the last, partial batch of an epoch gets ``weight_decay = c·alpha/B`` like the others,
     where scikit-learn divides alpha by that batch's own size;
   * Adam: scikit-learn adds ``epsilon`` after the bias corrections, fastbp (as torch)
     before the second moment's, so step ``t`` needs ``eps = c·epsilon/sqrt(1 - beta_2**t)``;
     it is set once per epoch, for the epoch's middle step: exact with one batch per epoch,
     otherwise off by up to a few times in the first few hundred steps. Adam's sign-like
     steps on near-zero gradients make that visible (about 1e-5 after an epoch), and
     trajectories then drift apart, though not in accuracy;
   * the L2 term of ``loss_`` uses the mean of ``||W||²`` at the start and end of the
     epoch instead of its value before each batch;
   * sample weights follow scikit-learn's rule (each batch's loss, gradient and L2 term
     divided by the batch's sum of weights: ``Sequential.fit``'s
     ``sample_weight_reduction="weights"``), but a batch whose weights are all 0 adds
     nothing where scikit-learn divides by 0, and with ``shuffle=True`` the L2 part of
     ``loss_`` is estimated from the unshuffled batches' sums;
   * L-BFGS on several regression outputs: scikit-learn hands SciPy a loss averaged over
     the outputs with the gradient of their sum; fastbp's pair is consistent (the sum), so
     the paths differ while the minimiser is the same;
   * ``shuffle=True`` draws row orders from fastbp's generator (seeded from
     ``random_state``), not scikit-learn's, so shuffled runs agree in distribution only;
   * early stopping stratifies the split for every single-label problem, as scikit-learn's
     documentation says (its code stratifies binary problems only), unless a class has
     fewer than two samples or the split is too small to hold every class; a binary
     problem with a one-member class raises scikit-learn's error (naming the class by its
     label, where scikit-learn shows the binarized one);
   * a fit whose loss or update turns non-finite raises scikit-learn's ValueError, its
     sentence followed by fastbp's account (the epoch and batch; in float32, the range),
     and so does fitting on X or y finite in float64 but beyond float32's range;
     with early stopping it ends at that epoch (scikit-learn runs its NaN epochs on to
     ``max_iter``) and keeps the best validated weights, raising nothing, as scikit-learn
     does since its issue 29504;
   * ``momentum`` must be < 1.

E. What is extra: ``dtype`` (float32 by default, for speed), ``activation`` as a list (one
   per hidden layer, any fastbp activation), ``dropout``, ``class_weight`` (classifier),
   ``loss`` choices of fastbp (regressor), ``fit(..., validation_data=(X_val, y_val))``, and
   ``model_``, the trained :class:`fastbp.Sequential`.

F. Layout: ``_params`` checks parameters and inputs, ``_parameters`` is ``coefs_`` /
   ``intercepts_`` (written through to the model), ``_base`` builds the network and runs
   inference, ``_stochastic`` is the 'sgd' / 'adam' loop, ``_lbfgs`` the L-BFGS path,
   ``_classifier`` and ``_regressor`` the two estimators.
"""
try:
    import scipy.optimize  # noqa: F401 - the L-BFGS path needs it
    import sklearn
except ImportError as error:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "fastbp.sklearn needs scikit-learn, an optional dependency of fastbp: install it "
        "with `pip install 'fastbp[sklearn]'` (or `pip install 'scikit-learn>=1.3'`)") from error

_MIN_SKLEARN = (1, 3)
if tuple(int(part) for part in sklearn.__version__.split(".")[:2]
         if part.isdigit()) < _MIN_SKLEARN:  # pragma: no cover
    raise ImportError(f"fastbp.sklearn needs scikit-learn >= 1.3, found {sklearn.__version__}: "
                      "`pip install -U 'fastbp[sklearn]'`")

from ._classifier import MLPClassifier  # noqa: E402
from ._regressor import MLPRegressor  # noqa: E402

__all__ = ["MLPClassifier", "MLPRegressor"]

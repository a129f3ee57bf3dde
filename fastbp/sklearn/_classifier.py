"""``MLPClassifier``: labels, class weights, a stratified early-stopping split and
probabilities on top of the shared base."""
import math

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import column_or_1d
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (check_classification_targets, type_of_target,
                                      unique_labels)

from ._base import _BaseMLP, _Objective, _Targets
from ._params import _validate_data


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier``, trained by fastbp.

    Takes every parameter of ``sklearn.neural_network.MLPClassifier`` with the same name,
    default and meaning, and sets the same fitted attributes; see the module docstring of
    :mod:`fastbp.sklearn` for how it maps onto fastbp and the few places where it is not
    bit-for-bit scikit-learn. Multiclass problems use a softmax output and log-loss;
    binary problems one logistic output; multi-label indicator targets one logistic output
    per label with binary log-loss.

    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        Width of each hidden layer.
    activation : {'identity', 'logistic', 'tanh', 'relu'} or list of str, default='relu'
        Activation of the hidden layers; a list gives one per hidden layer and may use any
        fastbp activation (e.g. 'leaky_relu').
    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
    alpha : float, default=0.0001
        L2 strength: each batch's loss gets ``alpha / (2 * batch rows) * ||W||²``.
    batch_size : int or 'auto', default='auto'
        'auto' is ``min(200, n_samples)``.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Schedule for ``solver='sgd'``: 'invscaling' is ``learning_rate_init / (t + 1) **
        power_t`` after each epoch, t counting samples; 'adaptive' divides the rate by 5
        whenever ``n_iter_no_change`` epochs fail to improve by ``tol``.
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start
        As scikit-learn's.
    momentum : float in [0, 1), default=0.9
    nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2, epsilon,
    n_iter_no_change, max_fun
        As scikit-learn's.
    class_weight : dict, 'balanced' or None, default=None
        Extra: weight of each class in the loss (multiplies ``sample_weight``); 'balanced'
        is ``n_samples / (n_classes * count(class))``. Single-label problems only.
    dropout : float or list of float, default=0.0
        Extra: dropout rate after each hidden layer (a list: one per hidden layer), as a
        :class:`fastbp.Dropout` on its output while training (never when predicting);
        'sgd' and 'adam' only. The masks are seeded by ``random_state``.
    dtype : {'float32', 'float64'}, default='float32'
        Extra: precision of the parameters and arithmetic. float32 is about twice as fast;
        use float64 to compare with scikit-learn digit for digit.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, t_
        As scikit-learn's (only after a stochastic solver, as there).
    coefs_ : list of ndarray of shape (n_in, n_out)
        Views into ``model_.parameters``: writing into them changes the model, and so does
        assigning the list or one of its items (checked: same shapes, finite numbers).
    intercepts_ : list of ndarray of shape (n_out,)
        Views, as ``coefs_``.
    n_features_in_, feature_names_in_, n_iter_, n_layers_, n_outputs_, out_activation_
        As scikit-learn's.
    model_ : fastbp.Sequential
        The trained network (save it with ``model_.save``).
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 class_weight=None, dropout=0.0, dtype="float32"):
        self._init_params(hidden_layer_sizes, activation, solver, alpha, batch_size,
                          learning_rate, learning_rate_init, power_t, max_iter, shuffle,
                          random_state, tol, verbose, warm_start, momentum, nesterovs_momentum,
                          early_stopping, validation_fraction, beta_1, beta_2, epsilon,
                          n_iter_no_change, max_fun, dropout, dtype)
        self.class_weight = class_weight

    def fit(self, X, y, sample_weight=None, validation_data=None):
        """Fit the model to X and y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a multi-label indicator matrix.
        sample_weight : array-like of shape (n_samples,), optional
        validation_data : (X_val, y_val), optional
            Extra: score this set after every epoch (``validation_scores_``); with
            ``early_stopping=True`` it replaces the held-out ``validation_fraction``.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False, validation_data=validation_data)

    @available_if(lambda self: self._stochastic())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y); ``classes`` (all the labels) is required on the first call."""
        if getattr(self, "classes_", None) is None and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None:
            if getattr(self, "classes_", None) is not None:
                if not np.array_equal(self.classes_, unique_labels(classes)):
                    raise ValueError("`classes=%r` is not the same as on last call to "
                                     "partial_fit, was: %r" % (classes, self.classes_))
            else:
                self.classes_ = unique_labels(classes)
                self._label_binarizer = LabelBinarizer()
                if type_of_target(y).startswith("multilabel"):
                    self._label_binarizer.fit(y)
                else:
                    self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def _make_objective(self, n_outputs):
        if self._label_binarizer.y_type_ == "multiclass":
            return _Objective("cross_entropy", 1.0, 1.0)
        return _Objective("binary_cross_entropy", 1.0 / n_outputs, float(n_outputs))

    def _output_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _class_weight_of(self):
        return self.class_weight

    def _validate_input(self, X, y, sample_weight, incremental, reset):
        X, y = _validate_data(self, X, y, fitting=True, multi_output=True,
                              dtype=self._np_dtype(), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same "
                                     "classes as in the previous call to fit. Previously got "
                                     f"{self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError("`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {self.classes_}. 'y' has {classes}.")
        indicator = self._label_binarizer.transform(y)
        if self._label_binarizer.y_type_ == "multiclass":
            encoded = np.argmax(indicator, axis=1).astype(np.intp)
        else:
            encoded = np.ascontiguousarray(indicator, dtype=self._np_dtype())
        sample_weight = self._check_sample_weight(sample_weight, X.shape[0])
        if self.class_weight is not None:
            sample_weight = self._apply_class_weight(y, sample_weight, incremental)
        return X, _Targets(encoded, y, indicator.shape[1]), sample_weight

    def _apply_class_weight(self, y, sample_weight, incremental):
        if self._label_binarizer.y_type_ == "multilabel-indicator":
            raise ValueError("class_weight is not supported for multi-label targets")
        if isinstance(self.class_weight, str) and self.class_weight == "balanced" and incremental:
            raise ValueError("class_weight 'balanced' is not supported for partial_fit: "
                             "pass a dict of weights computed on the whole data")
        if not (isinstance(self.class_weight, dict) or self.class_weight == "balanced"):
            raise ValueError("class_weight must be a dict, 'balanced' or None, got "
                             f"{self.class_weight!r}")
        weights = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
        per_sample = weights[np.searchsorted(self.classes_, y)]
        return per_sample if sample_weight is None else per_sample * sample_weight

    def _stratify_labels(self, targets, fraction):
        """The labels to stratify the early-stopping split by, or None. A binary problem
        with a class of one member raises scikit-learn's error (scikit-learn stratifies
        binary problems only); a multiclass one is then split without stratifying, as
        scikit-learn splits it."""
        if self._label_binarizer.y_type_ == "multilabel-indicator":
            return None
        labels = targets.original(slice(None))
        classes, counts = np.unique(labels, return_counts=True)
        if counts.min() < 2 and self._label_binarizer.y_type_ == "binary":
            raise ValueError(
                "The least populated classes in y have only 1 member, which is too few. The "
                "minimum number of groups for any class cannot be less than 2. Classes with "
                "too few members are: %s" % classes[counts < 2].tolist())
        n = labels.shape[0]
        n_val = math.ceil(fraction * n)
        if counts.min() < 2 or n_val < counts.size or n - n_val < counts.size:
            return None
        return labels

    def _check_validation_targets(self, y, n_samples):
        y = np.asarray(y) if not hasattr(y, "shape") else y
        y = column_or_1d(y, warn=True) if np.ndim(y) == 2 and np.shape(y)[1] == 1 else y
        if np.shape(y)[0] != n_samples:
            raise ValueError(f"validation_data: X_val has {n_samples} samples, y_val has "
                             f"{np.shape(y)[0]}")
        if len(np.setdiff1d(unique_labels(y), self.classes_)):
            raise ValueError("validation_data: y_val has classes not in `self.classes_`")
        return y

    _score_function = staticmethod(accuracy_score)

    def _from_output(self, output):
        if self.n_outputs_ == 1:
            output = output.ravel()
        return self._label_binarizer.inverse_transform(output)

    def predict(self, X):
        """Predicted classes: array of shape (n_samples,), or (n_samples, n_labels) for
        multi-label problems."""
        return self._from_output(self._output(X))

    def predict_proba(self, X):
        """Class probabilities, array of shape (n_samples, n_classes) in the order of
        ``classes_`` (for multi-label problems, each label's probability)."""
        output = self._output(X)
        if self.n_outputs_ == 1:
            p = output.ravel()
            return np.vstack([1 - p, p]).T
        return output

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multilabel": True}

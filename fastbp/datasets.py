"""Small datasets generated in code (no downloads), for demos and tests."""
import numpy as np

from .data import check_positive_int


def make_classification(n_samples=4096, n_features=32, n_classes=10, noise=2.0, seed=0):
    """A nonlinear multi-class problem: Gaussian clusters pushed through a random tanh map.

    Each class has two cluster centres, so the classes are not linearly separable; a
    hidden layer is needed to reach high accuracy.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32
    y : ndarray of shape (n_samples,), int64 labels in [0, n_classes)
    """
    n_samples = check_positive_int(n_samples, "n_samples")
    n_features = check_positive_int(n_features, "n_features")
    n_classes = check_positive_int(n_classes, "n_classes")
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(2 * n_classes, n_features))
    cluster = rng.integers(0, 2 * n_classes, size=n_samples)
    latent = centres[cluster] + noise * rng.normal(size=(n_samples, n_features))
    mixing = rng.normal(scale=1.0 / np.sqrt(n_features), size=(n_features, n_features))
    X = np.tanh(latent @ mixing) + 0.1 * latent
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X.astype(np.float32), (cluster % n_classes).astype(np.int64)

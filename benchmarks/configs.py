"""The benchmark runner's problems: the networks (configs), the suites of tables, and the
shared data and initial weights every implementation trains from."""
from dataclasses import dataclass

import numpy as np

import fastbp

LEARNING_RATE = 0.005  # small enough that no config diverges over many epochs
MOMENTUM = 0.9
DROPOUT_RATE = 0.5  # fastbp-dropout's rate after every hidden layer


@dataclass(frozen=True)
class Config:
    """A benchmark network: layer widths, batch size and training rows."""

    name: str
    sizes: tuple
    batch_size: int
    n_samples: int

    def describe(self):
        return f"{'-'.join(map(str, self.sizes))}, batch {self.batch_size}"


CONFIGS = {config.name: config for config in (
    Config("tiny", (64, 32, 10), 32, 8192),
    Config("small", (784, 128, 10), 64, 16384),
    Config("medium", (784, 512, 256, 10), 128, 16384),
    Config("large", (2048, 2048, 2048, 10), 512, 8192),
)}


@dataclass(frozen=True)
class Suite:
    """One table of results: what is timed, in which dtype, relative to which implementation."""

    name: str
    title: str  # may name {predict_rows}
    dtype: str
    baseline: str
    task: str  # "train" (run_epoch) or "predict"
    implementations: tuple = None  # None: every one that can do the task
    configs: tuple = None  # None: every selected config

    def applies_to(self, config_name):
        return self.configs is None or config_name in self.configs


SUITES = (
    Suite("train", "Training, float32: one epoch", "float32", "roofline", "train"),
    Suite("predict", "Prediction, float32: {predict_rows} rows", "float32", "fastbp", "predict"),
    Suite("train-float64", "Training, float64: one epoch", "float64", "roofline", "train",
          implementations=("fastbp", "numpy", "roofline"), configs=("small",)),
)


@dataclass(frozen=True)
class Problem:
    """Everything an implementation needs to train one config: data, weights, settings.

    ``X`` is a C-contiguous array of shape (n_samples, n_features) in the model dtype, ``y``
    the integer labels of shape (n_samples,), ``weights`` one ``(W, b)`` per layer with ``W``
    of shape (in_features, out_features), shared by every implementation.
    """

    sizes: tuple
    batch_size: int
    X: np.ndarray
    y: np.ndarray
    weights: list
    lr: float = LEARNING_RATE
    momentum: float = MOMENTUM

    @property
    def dtype(self):
        return self.X.dtype

    @property
    def n_samples(self):
        return self.X.shape[0]


def random_inputs(n_samples, n_features, dtype, seed):
    """Standard-normal rows, C-contiguous, of ``dtype``."""
    return np.random.default_rng(seed).standard_normal((n_samples, n_features), dtype=dtype)


def make_problem(config, dtype, n_samples, seed=0):
    """Random data (normal X, uniform integer labels) and fastbp's seeded initial weights."""
    X = random_inputs(n_samples, config.sizes[0], dtype, seed)
    y = np.random.default_rng(seed + 1).integers(0, config.sizes[-1], size=n_samples)
    model = new_fastbp_model(config.sizes, dtype)
    weights = [(layer.weight.copy(), layer.bias.copy()) for layer in model.layers]
    return Problem(config.sizes, config.batch_size, X, y, weights)


def new_fastbp_model(sizes, dtype, dropout=0.0):
    """fastbp's benchmark network (with ``dropout``: a Dropout of that rate after every
    hidden layer). ``threads=None`` on the model; the adapters pass the row's count to each
    call (its default, "auto", would run the tiny network on one thread whatever the
    setting, and the rows for 2 threads would not be 2-thread timings)."""
    model = fastbp.mlp(sizes, activation="relu", loss="cross_entropy",
                       dtype=np.dtype(dtype).name, seed=0, threads=None)
    if not dropout:
        return model
    *hidden, last = model._specs
    layers = [item for spec in hidden for item in (spec, fastbp.Dropout(dropout))]
    return fastbp.Sequential([*layers, last], loss="cross_entropy", dtype=model.dtype.name,
                             seed=0, threads=None)

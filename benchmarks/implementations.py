"""The implementations the runner times: one adapter per library, with a common interface
(``prepare(problem)``, ``run_epoch()``, ``predict(X)``)."""
import importlib.util
import warnings

import numpy as np

import fastbp
from fastbp._native import core as _core  # the build fastbp runs (avx512, avx2, baseline)
from fastbp.benchmarks.configs import DROPOUT_RATE, new_fastbp_model
from fastbp.benchmarks.numpy_reference import NumpyMLP

class Implementation:
    """One way of training the benchmark network; the common interface of the adapters.

    ``prepare(problem)`` builds the model from the problem's weights and keeps what the other
    two need; ``run_epoch()`` trains one shuffled epoch; ``predict(X)`` returns class
    probabilities of shape (n_samples, n_classes). Adapters that cannot predict set
    ``predicts = False``; ``module`` names an optional dependency.
    """

    name = ""
    module = None
    predicts = True

    @classmethod
    def available(cls):
        return cls.module is None or importlib.util.find_spec(cls.module) is not None

    @classmethod
    def can(cls, task):
        return task == "train" or (task == "predict" and cls.predicts)

    def prepare(self, problem):
        raise NotImplementedError

    def run_epoch(self):
        raise NotImplementedError

    def predict(self, X):
        raise NotImplementedError(f"{self.name} does not predict")


class FastbpImplementation(Implementation):
    """``model.fit(X, y, epochs=1)``: input checks, the permutation and the compiled epoch."""

    name = "fastbp"
    dropout = 0.0

    def prepare(self, problem):
        self.problem = problem
        self.model = new_fastbp_model(problem.sizes, problem.dtype, self.dropout)
        dense = [layer for layer in self.model.layers if hasattr(layer, "weight")]
        for layer, (W, b) in zip(dense, problem.weights):
            layer.weight[...] = W
            layer.bias[...] = b
        # Created once and reused, so the momentum carries over from epoch to epoch.
        self.optimizer = fastbp.SGD(lr=problem.lr, momentum=problem.momentum)

    def run_epoch(self):
        # A team of the row's thread count (which the runner set as BLAS's), BLAS at one
        # thread inside the call.
        p = self.problem
        self.model.fit(p.X, p.y, epochs=1, batch_size=p.batch_size, optimizer=self.optimizer,
                       threads=fastbp.threads.current())

    def predict(self, X):
        return self.model.predict(X, threads=fastbp.threads.current())


class FastbpDropoutImplementation(FastbpImplementation):
    """fastbp's network with ``Dropout(DROPOUT_RATE)`` after every hidden layer (opt-in)."""

    name = "fastbp-dropout"
    dropout = DROPOUT_RATE


class RooflineImplementation(Implementation):
    """Only the GEMMs of a training epoch, through fastbp's BLAS calls (``gemm_roofline``)."""

    name = "roofline"
    predicts = False

    def prepare(self, problem):
        self.problem = problem
        self.model = new_fastbp_model(problem.sizes, problem.dtype)
        self.model._plan.ensure_capacity(problem.batch_size)

    def run_epoch(self):
        _core.gemm_roofline(self.model._plan, self.problem.X, self.problem.batch_size)


class NumpyImplementation(Implementation):
    """The pure-NumPy reference network (``benchmarks/numpy_reference.py``)."""

    name = "numpy"

    def prepare(self, problem):
        self.problem = problem
        activations = ["relu"] * (len(problem.sizes) - 2) + ["identity"]
        self.network = NumpyMLP(problem.sizes, activations, "cross_entropy", dtype=problem.dtype,
                                weights=problem.weights)
        self.rng = np.random.default_rng(0)

    def run_epoch(self):
        p = self.problem
        self.network.train_epoch(p.X, p.y, self.rng.permutation(p.n_samples), p.batch_size,
                                 p.lr, momentum=p.momentum)

    def predict(self, X):
        return self.network.predict(X)


class TorchImplementation(Implementation):
    """``nn.Sequential`` of Linear/ReLU, ``optim.SGD``, ``CrossEntropyLoss``; the data is
    preloaded as tensors, permuted once per epoch, then sliced into batches."""

    name = "torch"
    module = "torch"

    def prepare(self, problem):
        import torch
        self.torch = torch
        self.problem = problem
        dtype = getattr(torch, problem.dtype.name)
        layers = []
        for W, b in problem.weights:
            linear = torch.nn.Linear(*W.shape, dtype=dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(W.T))  # torch stores (out, in)
                linear.bias.copy_(torch.from_numpy(b))
            layers += [linear, torch.nn.ReLU()]
        self.network = torch.nn.Sequential(*layers[:-1])
        self.optimizer = torch.optim.SGD(self.network.parameters(), lr=problem.lr,
                                         momentum=problem.momentum)
        self.loss = torch.nn.CrossEntropyLoss()
        self.X = torch.from_numpy(problem.X)
        self.y = torch.from_numpy(problem.y.astype(np.int64))
        self.generator = torch.Generator().manual_seed(0)

    def run_epoch(self):
        p = self.problem
        order = self.torch.randperm(p.n_samples, generator=self.generator)
        X, y = self.X[order], self.y[order]
        for start in range(0, p.n_samples, p.batch_size):
            stop = start + p.batch_size
            self.optimizer.zero_grad()
            self.loss(self.network(X[start:stop]), y[start:stop]).backward()
            self.optimizer.step()

    def predict(self, X):
        with self.torch.no_grad():
            logits = self.network(self.torch.from_numpy(X))
            return self.torch.softmax(logits, dim=1).numpy()


class SklearnImplementation(Implementation):
    """``MLPClassifier(solver="sgd", warm_start=True, max_iter=1)``: one epoch per ``fit``
    (its own shuffling and input checks included). It draws its own initial weights."""

    name = "sklearn"
    module = "sklearn"

    def prepare(self, problem):
        from sklearn.neural_network import MLPClassifier
        self.problem = problem
        self.classifier = MLPClassifier(
            hidden_layer_sizes=problem.sizes[1:-1], activation="relu", solver="sgd",
            learning_rate_init=problem.lr, momentum=problem.momentum, nesterovs_momentum=False,
            alpha=0.0, batch_size=problem.batch_size, shuffle=True, max_iter=1,
            warm_start=True, tol=0.0, n_iter_no_change=10**9, random_state=0)
        self.run_epoch()  # the first fit initialises the network, so predict works

    def run_epoch(self):
        from sklearn.exceptions import ConvergenceWarning
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=1 is on purpose
            self.classifier.fit(self.problem.X, self.problem.y)

    def predict(self, X):
        return self.classifier.predict_proba(X)


def jax_functions(lr, momentum):
    """The jitted SGD step on one batch of row indices, and the jitted epoch as a ``lax.scan``
    of that step over an (n_batches, batch_size) array of row indices."""
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    def loss(params, X, y):
        A = X
        for W, b in params[:-1]:
            A = jax.nn.relu(A @ W + b)
        W, b = params[-1]
        logits = A @ W + b
        picked = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
        return jnp.mean(logsumexp(logits, axis=1) - picked)

    def step(params, velocity, X, y, rows):
        grads = jax.grad(loss)(params, X[rows], y[rows])
        velocity = jax.tree_util.tree_map(lambda v, g: momentum * v + g, velocity, grads)
        params = jax.tree_util.tree_map(lambda p, v: p - lr * v, params, velocity)
        return params, velocity

    def epoch(params, velocity, X, y, batches):
        def body(carry, rows):
            return step(*carry, X, y, rows), None
        (params, velocity), _ = jax.lax.scan(body, (params, velocity), batches)
        return params, velocity

    return jax.jit(step, donate_argnums=(0, 1)), jax.jit(epoch, donate_argnums=(0, 1))


class JaxStepImplementation(Implementation):
    """A jitted step per batch (it gathers the batch's rows itself), called from Python.

    JAX reads ``PJRT_NPROC`` at import, so this runs only in a subprocess started for one
    thread count (see :func:`jax_results`)."""

    name = "jax"
    module = "jax"
    predicts = False

    def prepare(self, problem):
        import jax
        import jax.numpy as jnp
        self.jax = jax
        self.problem = problem
        self.params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in problem.weights]
        self.velocity = jax.tree_util.tree_map(jnp.zeros_like, self.params)
        self.X, self.y = jnp.asarray(problem.X), jnp.asarray(problem.y.astype(np.int32))
        self.step, self.epoch = jax_functions(problem.lr, problem.momentum)
        self.rng = np.random.default_rng(0)

    def run_epoch(self):
        p = self.problem
        order = self.rng.permutation(p.n_samples).astype(np.int32)
        state = (self.params, self.velocity)
        for start in range(0, p.n_samples, p.batch_size):
            state = self.step(*state, self.X, self.y, order[start:start + p.batch_size])
        self.finish(state)

    def finish(self, state):
        self.params, self.velocity = self.jax.block_until_ready(state)


class JaxScanImplementation(JaxStepImplementation):
    """The whole epoch's full batches as one jitted ``lax.scan``; a last partial batch, if
    any, goes through the per-batch step."""

    name = "jax-scan"

    def run_epoch(self):
        p = self.problem
        order = self.rng.permutation(p.n_samples).astype(np.int32)
        full = p.n_samples - p.n_samples % p.batch_size
        state = self.epoch(self.params, self.velocity, self.X, self.y,
                           order[:full].reshape(-1, p.batch_size))
        if full < p.n_samples:
            state = self.step(*state, self.X, self.y, order[full:])
        self.finish(state)


IMPLEMENTATIONS = {cls.name: cls for cls in (
    FastbpImplementation, FastbpDropoutImplementation, RooflineImplementation,
    NumpyImplementation, TorchImplementation, SklearnImplementation, JaxStepImplementation,
    JaxScanImplementation)}
JAX_IMPLEMENTATIONS = ("jax", "jax-scan")
OPT_IN = ("fastbp-dropout",)  # timed only when --implementations names them
IMPLEMENTATION_ORDER = tuple(IMPLEMENTATIONS)

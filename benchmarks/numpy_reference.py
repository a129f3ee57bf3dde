"""Pure-NumPy reference multilayer perceptron for ``fastbp``.

This module is both the benchmark baseline and the test oracle for the
compiled core, so it follows the core's conventions exactly:

* A network is a list of layers; layer ``l`` has ``W`` of shape
  ``(n_in, n_out)`` and ``b`` of shape ``(n_out,)``.  Everything is kept in
  the model dtype (float32 or float64), including inputs, targets,
  activations, gradients and momentum buffers.
* Forward: ``Z = A_prev @ W + b``; ``A = act(Z)``.  Activations:
  ``identity``, ``sigmoid``, ``tanh``, ``relu``, ``leaky_relu``
  (``where(z > 0, z, 0.01 * z)``), ``gelu`` (torch's tanh approximation,
  ``0.5*z*(1 + tanh(sqrt(2/pi)*(z + 0.044715*z**3)))``), ``softplus``
  (``log(1 + exp(z))``), ``elu`` (``where(z > 0, z, expm1(z))``) and ``swish``
  (``z*sigmoid(z)``).  The first five's derivatives are written from the
  output ``a``: sigmoid ``a*(1-a)``, tanh ``1-a*a``, relu ``a > 0``,
  leaky_relu ``where(a > 0, 1, 0.01)``, identity ``1``; the newer four's are
  the textbook derivatives in ``z`` (kept only for their layers).
* Losses (means over the batch of ``B`` rows and ``O`` outputs):
  ``mse`` = mean((A - Y)**2) on the activated output, ``dA = 2*(A-Y)/(B*O)``;
  ``huber`` (delta 1) = mean(where(|d| <= 1, d**2/2, |d| - 1/2)) with
  ``d = A - Y``, ``dA = clip(d, -1, 1)/(B*O)``; ``mae`` = mean(|A - Y|),
  ``dA = sign(A - Y)/(B*O)`` (0 at 0); ``cross_entropy`` on raw logits with
  integer targets, ``dZ = (softmax(Z) - onehot(y)) / B``;
  ``binary_cross_entropy`` on raw logits,
  ``mean(max(z,0) - z*y + log1p(exp(-|z|)))``, ``dZ = (sigmoid(Z) - Y)/(B*O)``.
  For the two cross entropies the last activation must be ``identity``; the
  regression losses (mse, huber, mae) take any.
* Backward: ``dW = A_prev.T @ dZ``, ``db = dZ.sum(0)``,
  ``dA_prev = dZ @ W.T``, ``dZ_prev = dA_prev * act'(Z_prev, A_prev)``.
* Optional L2 penalty on weights only: objective = loss + wd/2 * sum ||W||^2.
* Optional inverted dropout on layer ``l``'s input (``dropout[l]``, the rate of
  a ``fastbp.Dropout`` placed before that layer): on training step ``k`` the
  input is multiplied by ``dropout_mask(seed, k, l, ...)`` (0 where dropped,
  ``1/(1 - p)`` where kept) and the backward pass multiplies ``dA_prev`` by the
  same mask before ``act'``; ``dW`` uses the dropped input. The masks are the
  core's counter-based hash (``src_c/_dropout.pxd``) redone in NumPy integer
  arithmetic, element for element, so a step compares with the core's.
* SGD as ``torch.optim.SGD`` (dampening 0, decay on weights only):
  ``g = grad (+ wd*W)``; if momentum: ``v = momentum*v + g`` and
  ``g = g + momentum*v`` (nesterov) or ``g = v``; ``p -= lr * g``.
* An epoch uses the batches ``order[s:s+batch_size]`` for
  ``s in range(0, n, batch_size)``; the last partial batch is kept.
* Default initialisation: ``rng = numpy.random.default_rng(seed)``; per layer
  ``W = rng.uniform(-bound, bound, (n_in, n_out))`` drawn in float64 and cast,
  ``bound = sqrt(6/n_in)`` for relu/leaky_relu, else ``sqrt(6/(n_in+n_out))``;
  biases are zero.
"""

import math

import numpy as np

LEAKY_SLOPE = 0.01
# Python floats, not NumPy scalars: these must not upcast float32 arrays.
GELU_K, GELU_C = math.sqrt(2 / math.pi), 0.044715
HUBER_DELTA = 1.0
ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "gelu", "softplus", "elu",
               "swish")
LOSSES = ("mse", "cross_entropy", "binary_cross_entropy", "huber", "mae", "poisson")
REGRESSION = ("mse", "huber", "mae")
# Activations whose derivative the reference writes from z, so it keeps their z.
FROM_Z = ("gelu", "softplus", "elu", "swish")


# ---------------------------------------------------------------- dropout masks
_U64 = (1 << 64) - 1


def _splitmix64(x):
    """splitmix64's output function on a Python int (arithmetic mod 2**64)."""
    x = (x + 0x9E3779B97F4A7C15) & _U64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _U64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _U64
    return x ^ (x >> 31)


def dropout_keys(seed, step, layer):
    """The packed 64-bit mask keys of (dropout seed, training step, layer index)."""
    return _splitmix64((_splitmix64(seed ^ _splitmix64(step)) + layer) & _U64)


def _mix32(x):
    """32-bit multiply-xorshift mixer on a uint32 array (wraps mod 2**32)."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def dropout_draws(n, e0, keys):
    """The uint32 draws of elements e0 .. e0 + n - 1 under the packed ``keys``."""
    e = ((e0 + np.arange(n, dtype=np.uint64)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    k0, k1 = np.uint32(keys & 0xFFFFFFFF), np.uint32(keys >> 32)
    return _mix32(_mix32(e ^ k0) ^ k1)


def dropout_threshold(rate):
    """An element is dropped when its draw is below floor(rate * 2**32)."""
    return min(int(rate * 2.0 ** 32), 2 ** 32 - 1)


def dropout_mask(seed, step, layer, rows, units, rate, dtype=np.float64):
    """The (rows, units) multiplier of layer ``layer``'s input on training step ``step``:
    0 where dropped, 1/(1 - p) where kept, p = threshold / 2**32."""
    threshold = dropout_threshold(rate)
    scale = 2.0 ** 32 / (2.0 ** 32 - threshold)
    keep = dropout_draws(rows * units, 0, dropout_keys(seed, step, layer)) >= threshold
    return np.where(keep, scale, 0.0).astype(dtype).reshape(rows, units)


def sigmoid(z):
    """Numerically stable logistic function (no overflow for large |z|)."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def softmax(z):
    """Row-wise softmax, computed with the row maximum subtracted."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _gelu_tanh(z):
    return np.tanh(GELU_K * (z + GELU_C * z * z * z))


_FORWARD = {
    "identity": lambda z: z,
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu": lambda z: np.where(z > 0, z, LEAKY_SLOPE * z),
    "gelu": lambda z: 0.5 * z * (1 + _gelu_tanh(z)),
    "softplus": lambda z: np.logaddexp(0, z),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
    "swish": lambda z: z * sigmoid(z),
}


def _gelu_backward(dA, z):
    t = _gelu_tanh(z)
    return dA * (0.5 * (1 + t) + 0.5 * z * (1 - t * t) * GELU_K * (1 + 3 * GELU_C * z * z))


def _swish_backward(dA, z):
    s = sigmoid(z)
    return dA * (s + z * s * (1 - s))


# dZ = dA * act'(z, a): from the output a for the first five, from z for the rest.
_BACKWARD = {
    "identity": lambda dA, z, a: dA,
    "sigmoid": lambda dA, z, a: dA * (a * (1 - a)),
    "tanh": lambda dA, z, a: dA * (1 - a * a),
    "relu": lambda dA, z, a: dA * (a > 0),
    "leaky_relu": lambda dA, z, a: np.where(a > 0, dA, LEAKY_SLOPE * dA),
    "gelu": lambda dA, z, a: _gelu_backward(dA, z),
    "softplus": lambda dA, z, a: dA * sigmoid(z),
    "elu": lambda dA, z, a: np.where(z > 0, dA, dA * np.exp(np.minimum(z, 0))),
    "swish": lambda dA, z, a: _swish_backward(dA, z),
}


class NumpyMLP:
    """A multilayer perceptron trained with minibatch SGD, in plain NumPy."""

    def __init__(self, sizes, activations, loss, dtype="float32", seed=0, weights=None,
                 dropout=None, dropout_seed=0):
        sizes = [int(n) for n in sizes]
        activations = list(activations)
        if len(sizes) < 2 or len(activations) != len(sizes) - 1:
            raise ValueError("need len(activations) == len(sizes) - 1 >= 1")
        for name in activations:
            if name not in ACTIVATIONS:
                raise ValueError(f"unknown activation {name!r}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}")
        if loss not in REGRESSION and activations[-1] != "identity":
            raise ValueError(f"{loss} takes raw logits (poisson: the log-rate): last "
                             "activation must be 'identity'")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError("dtype must be float32 or float64")
        self.sizes, self.activations, self.loss = sizes, activations, loss
        # dropout[l]: the rate on layer l's input (0: none); used by steps given a number.
        self.dropout = [0.0] * len(activations) if dropout is None else list(dropout)
        if len(self.dropout) != len(activations):
            raise ValueError("need one dropout rate per layer (0 for none)")
        self.dropout_seed = int(dropout_seed)

        if weights is None:
            rng = np.random.default_rng(seed)
            weights = []
            for n_in, n_out, act in zip(sizes[:-1], sizes[1:], activations):
                fan = n_in if act in ("relu", "leaky_relu") else n_in + n_out
                bound = np.sqrt(6.0 / fan)
                W = rng.uniform(-bound, bound, size=(n_in, n_out))
                weights.append((W, np.zeros(n_out)))
        if len(weights) != len(activations):
            raise ValueError("need one (W, b) pair per layer")
        self.params = []
        for (W, b), n_in, n_out in zip(weights, sizes[:-1], sizes[1:]):
            W = np.array(W, dtype=self.dtype)  # always a copy
            b = np.array(b, dtype=self.dtype)
            if W.shape != (n_in, n_out) or b.shape != (n_out,):
                raise ValueError(f"expected W {(n_in, n_out)} and b {(n_out,)}, "
                                 f"got {W.shape} and {b.shape}")
            self.params.append([W, b])
        self.velocities = None  # momentum buffers, created on first use

    @property
    def weights(self):
        return [W for W, _ in self.params]

    @property
    def biases(self):
        return [b for _, b in self.params]

    # ------------------------------------------------------------------ utils
    def _inputs(self, X):
        return np.asarray(X, dtype=self.dtype)

    def _targets(self, y):
        if self.loss == "cross_entropy":
            return np.asarray(y).astype(np.intp, copy=False)
        return np.asarray(y, dtype=self.dtype)

    # --------------------------------------------------------------- forward
    def masks(self, step, rows):
        """Per layer, the dropout multiplier of its input on training step ``step`` for a
        batch of ``rows`` rows, or None (no dropout there, or ``step`` None)."""
        if step is None:
            return [None] * len(self.params)
        return [dropout_mask(self.dropout_seed, step, l, rows, self.sizes[l], rate, self.dtype)
                if dropout_threshold(rate) else None for l, rate in enumerate(self.dropout)]

    def _forward(self, X, masks=None):
        """Return the activations [X, A_1, ..., A_L], the pre-activations [None, Z_1, ...,
        Z_L] (None for layers whose derivative is written from A) and each layer's input
        as its GEMM saw it (dropped out where ``masks`` has a multiplier)."""
        A, Z, inputs = [X], [None], []
        masks = masks or [None] * len(self.params)
        for (W, b), act, mask in zip(self.params, self.activations, masks):
            inputs.append(A[-1] if mask is None else A[-1] * mask)
            z = inputs[-1] @ W + b
            A.append(_FORWARD[act](z))
            Z.append(z if act in FROM_Z else None)
        return A, Z, inputs

    def forward(self, X):
        """Network output: logits for the cross entropies, the log-rate for poisson,
        activated output for the other regression losses."""
        return self._forward(self._inputs(X))[0][-1]

    def predict(self, X):
        """Probabilities: softmax (cross_entropy), sigmoid (binary_cross_entropy), the rate
        exp(z) (poisson), or the output itself (mse, huber, mae)."""
        out = self.forward(X)
        if self.loss == "cross_entropy":
            return softmax(out)
        if self.loss == "binary_cross_entropy":
            return sigmoid(out)
        if self.loss == "poisson":
            return np.exp(out)
        return out

    # -------------------------------------------------------------- backward
    def _loss_and_output_delta(self, out, z, y):
        """Data loss and dL/dZ for the last layer (out its output, z its pre-activation)."""
        B = out.shape[0]
        if self.loss in REGRESSION:
            diff = out - y
            if self.loss == "mse":
                loss = np.mean(diff * diff)
                dA = 2 * diff / diff.size
            elif self.loss == "huber":
                magnitude = np.abs(diff)
                loss = np.mean(np.where(magnitude <= HUBER_DELTA, 0.5 * diff * diff,
                                        HUBER_DELTA * (magnitude - 0.5 * HUBER_DELTA)))
                dA = np.clip(diff, -HUBER_DELTA, HUBER_DELTA) / diff.size
            else:  # mae
                loss = np.mean(np.abs(diff))
                dA = np.sign(diff) / diff.size
            return loss, _BACKWARD[self.activations[-1]](dA, z, out)
        if self.loss == "cross_entropy":
            shifted = out - out.max(axis=1, keepdims=True)
            e = np.exp(shifted)
            s = e.sum(axis=1, keepdims=True)
            rows = np.arange(B)
            loss = np.mean(np.log(s[:, 0]) - shifted[rows, y])
            dZ = e / s
            dZ[rows, y] -= 1
            dZ /= B
            return loss, dZ
        if self.loss == "poisson":  # out is the log-rate; the terms free of it left out
            rate = np.exp(out)
            return np.mean(rate - y * out), (rate - y) / out.size
        # binary_cross_entropy on logits
        loss = np.mean(np.maximum(out, 0) - out * y + np.log1p(np.exp(-np.abs(out))))
        return loss, (sigmoid(out) - y) / out.size

    def _data_loss_and_gradients(self, X, y, step=None):
        """Data loss (no penalty) and [(dW, db), ...] of the data loss; with dropout
        through training step ``step``'s masks when it is given."""
        masks = self.masks(step, X.shape[0])
        A, Z, inputs = self._forward(X, masks)
        loss, dZ = self._loss_and_output_delta(A[-1], Z[-1], y)
        grads = [None] * len(self.params)
        for l in range(len(self.params) - 1, -1, -1):
            grads[l] = (inputs[l].T @ dZ, dZ.sum(axis=0))
            if l > 0:
                dA = dZ @ self.params[l][0].T
                if masks[l] is not None:
                    dA = dA * masks[l]
                dZ = _BACKWARD[self.activations[l - 1]](dA, Z[l], A[l])
        return loss, grads

    def _penalty(self, weight_decay):
        return weight_decay / 2 * sum(np.sum(W * W) for W, _ in self.params)

    def loss_and_gradients(self, X, y, weight_decay=0.0, step=None):
        """Objective (data loss + wd/2 * sum ||W||^2) and its gradients
        [(dW, db), ...] (dW includes + wd*W; biases are not decayed); through the
        dropout masks of training step ``step`` if given."""
        loss, grads = self._data_loss_and_gradients(self._inputs(X), self._targets(y), step)
        weight_decay = self.dtype.type(weight_decay)
        if weight_decay:
            loss = loss + self._penalty(weight_decay)
            grads = [(dW + weight_decay * W, db) for (dW, db), (W, _) in zip(grads, self.params)]
        return float(loss), grads

    # -------------------------------------------------------------- training
    def sgd_step(self, X, y, lr, momentum=0.0, nesterov=False, weight_decay=0.0, step=None):
        """One SGD update (torch.optim.SGD semantics); returns the batch data loss. With
        dropout rates, ``step`` (the training step number) selects the masks."""
        loss, grads = self._data_loss_and_gradients(self._inputs(X), self._targets(y), step)
        # NumPy scalars (unlike Python floats) would upcast float32 arrays.
        lr, momentum, weight_decay = (self.dtype.type(v) for v in (lr, momentum, weight_decay))
        if momentum and self.velocities is None:
            self.velocities = [[np.zeros_like(W), np.zeros_like(b)] for W, b in self.params]
        for l, ((W, b), (dW, db)) in enumerate(zip(self.params, grads)):
            if weight_decay:
                dW = dW + weight_decay * W
            for i, (p, g) in enumerate(((W, dW), (b, db))):
                if momentum:
                    v = self.velocities[l][i]
                    v *= momentum
                    v += g
                    g = g + momentum * v if nesterov else v
                p -= lr * g
        return float(loss)

    def train_epoch(self, X, y, order, batch_size, lr, momentum=0.0, nesterov=False,
                    weight_decay=0.0, first_step=None):
        """One pass over the rows in ``order`` in minibatches (last partial batch
        kept); returns the mean of the per-batch data losses. With dropout, batch ``k``
        is training step ``first_step + k``."""
        X, y = self._inputs(X), self._targets(y)
        order = np.asarray(order)
        losses = []
        for k, s in enumerate(range(0, len(order), batch_size)):
            idx = order[s:s + batch_size]
            step = None if first_step is None else first_step + k
            losses.append(self.sgd_step(X[idx], y[idx], lr, momentum, nesterov, weight_decay,
                                        step))
        return float(np.mean(losses))

"""Sequential: a stack of layers compiled to one Plan (an op list): its structure, weights,
persistence and inference; the training methods come from fastbp.model_training."""
import threading

import numpy as np

from . import initializers, io
from ._native import core as _core
from .data import check_positive_int, check_seed, check_targets, check_X
from . import bound as _bound
from .bound import BoundDense, BoundNorm, BoundResidual
from .architecture import check_layers, describe, parameter_count, summary_rows
from .layers import Activation, Dense, Dropout, Residual
from .normalization import BatchNorm, LayerNorm
from .losses import CLASSIFICATION, Loss, check_output_activation, loss_code
from .model_training import Training, _exclusive
from .optimizers import SGD, Optimizer
from .plan import KIND, OpKind, Plan
from .sparse import SparseRows
from .threads import check_threads, team

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _rebuild(config, parameters, optimizer_state, statistics=None):
    """Unpickle: the model that ``io.model_config`` and the arrays describe."""
    return io.from_parts(Sequential, config, parameters, optimizer_state, statistics)


def load(path):
    """Read a model written by :meth:`Sequential.save`; resumes training exactly where it
    stopped (see :func:`fastbp.io.load`, which checks every byte, for the format and the
    errors).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Sequential
        Its architecture, parameters, running statistics, optimizer settings and state and
        generator state, as saved.
    """
    return io.load(path, Sequential)


def _check_dtype(dtype):
    # dtype=None must not slip through: np.dtype(None) is float64.
    try:
        parsed = np.dtype(dtype) if dtype is not None else None
    except TypeError:
        parsed = None
    if parsed is None or not any(parsed is valid for valid in _DTYPES):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return parsed


class Sequential(Training):
    """A multilayer perceptron: Dense layers applied in order, trained by backpropagation.

    Parameters
    ----------
    layers : sequence of Dense and Dropout
        Consecutive Dense widths must chain: each Dense layer's ``in_features`` equals the
        previous Dense layer's ``out_features``. A :class:`Dropout` drops the input of the
        Dense layer after it while training: between two Dense layers (a hidden layer's
        output) or first (the network's input); never last, never two in a row.
    loss : {"mse", "huber", "mae", "poisson", "cross_entropy", "binary_cross_entropy"}
        Default ``"mse"``.
        ``cross_entropy`` applies softmax and ``binary_cross_entropy`` applies sigmoid to the
        last layer's raw outputs (logits), so that layer must have ``activation=None``.
        The regression losses are computed on the last layer's activated output (any
        activation), averaged over samples and outputs: ``mse`` squared error, ``huber``
        (delta 1, as ``torch.nn.HuberLoss``) and ``mae`` (alias ``"l1"``, as
        ``torch.nn.L1Loss``; its gradient at a zero residual is 0). ``poisson`` reads the
        last layer's raw output (``activation=None``) as the log-rate ``z`` and averages
        ``exp(z) - y * z`` over samples and outputs (``torch.nn.PoissonNLLLoss(
        log_input=True)``; targets ``>= 0``); :meth:`predict` returns the rate ``exp(z)``.
    dtype : {"float32", "float64"}, default "float32"
        Precision of parameters and arithmetic; inputs are converted once per call.
    seed : int, None or numpy.random.Generator
        An int >= 0 (or a sequence of them, or a ``numpy.random.SeedSequence`` or
        ``Generator``, as ``numpy.random.default_rng`` takes); None draws fresh entropy.
        Seeds initialisation (each layer's ``init`` and ``bias_init``, see :class:`Dense`),
        shuffling and dropout masks; a fixed seed makes training bitwise repeatable at a
        fixed ``threads`` count. With dropout, the model draws its dropout seed from this
        generator after the initial weights (so they are those of the same network without
        dropout).
    threads : "auto", int or None, default "auto"
        Threads for ``fit``, ``train_step``, ``predict`` and ``evaluate`` (each can
        override it): an int is the size of fastbp's own team, which runs every op of a
        batch, with SciPy's BLAS held at one thread inside the call; a network whose
        GEMMs are too small to gain from a second thread (under 1 MFLOP,
        ``fastbp.threads.MIN_FLOPS_PER_GEMM``) runs on one. "auto" sizes the team by the
        caller's BLAS thread count, and ``fit`` times that team against one thread as it
        trains and keeps the faster (a thread waiting for a busy core stalls the team). None runs one thread and never touches BLAS. A fixed int gives
        bitwise repeatable training; team sizes agree bitwise except in the products BLAS
        runs (README, Threads). The caller's BLAS setting is restored after every call.

    Attributes
    ----------
    layers : tuple of BoundDense and Dropout
        The layers in the order given, the same objects on every access: each Dense
        layer's spec with ``weight`` (in_features, out_features) and ``bias``
        (out_features,) as writable views into :attr:`parameters` (assigning
        ``layer.weight = W`` copies ``W`` in after checking its shape and dtype), and each
        Dropout spec as it is (it has no parameters). :meth:`get_weights` and
        :meth:`set_weights` read and write them all at once. Lists
        that have one entry per Dense layer (the gradients of :meth:`gradients`, the
        per-layer figures of a ``History``) count Dense layers only.
    parameters : ndarray of shape (n_parameters,)
        The flat parameter buffer: all weights (row-major, layer order), then all biases.
    """

    def __init__(self, layers, loss="mse", dtype="float32", seed=None, threads="auto"):
        specs = check_layers(layers)
        self._loss = loss_code(loss)
        check_output_activation(self._loss, specs[-1].activation_code, len(specs) - 1)
        self._specs = specs
        self._plan = Plan(specs, self._loss, _check_dtype(dtype))
        self._rng = check_seed(seed)
        self._optimizer = None
        # fit's per-layer figures (History's grad_norm_<l> ...), taken on each epoch's last
        # batch; fastbp.sklearn turns them off (it reports none: 9% of a digits fit)
        self._layer_figures = True
        self._lock = threading.RLock()
        self._layers = self._bind_layers()
        self.stop_training = False   # a callback sets it to end fit after the current epoch
        self.threads = check_threads(threads)
        self._initialise()
        if self._plan.has_dropout:  # after the weights, so that they do not depend on it
            self._plan.dropout_seed = int(self._rng.integers(2 ** 64, dtype=np.uint64))

    # ------------------------------------------------------------------ structure
    @property
    def loss(self):
        return self._loss.name.lower()

    @property
    def dtype(self):
        return self._plan.dtype

    @property
    def n_features(self):
        return self._plan.n_features

    @property
    def n_outputs(self):
        return self._specs[-1].out_features

    @property
    def parameters(self):
        return self._plan.params

    @property
    def layers(self):
        return self._layers

    def _bind_layers(self):
        """The layers with parameters bound to views of the plan's buffers; built once and
        kept, so ``model.layers[0] is model.layers[0]`` (rebind if a buffer is reallocated).
        Residual blocks hold their own bound layers; the ops follow fastbp.plan.flatten."""
        plan = self._plan
        ops = iter(range(len(plan.table)))

        def bind(specs, prefix):
            bound = []
            for index, spec in enumerate(specs):
                label = f"{prefix}{index}" if prefix else index
                if isinstance(spec, Dropout) and spec.rate == 0:  # no op
                    bound.append(spec)
                    continue
                op = next(ops)
                if isinstance(spec, Residual):
                    spec = BoundResidual(spec, bind(spec.layers, f"{label}].layers["))
                    next(ops)  # its add
                elif isinstance(spec, Dense):
                    weight, bias = plan.pair(plan.params, op)
                    spec = BoundDense(spec, {"weight": weight, "bias": bias}, label)
                elif isinstance(spec, (BatchNorm, LayerNorm)):
                    views = dict(zip(("weight", "bias"), plan.pair(plan.params, op))
                                 if spec.affine else ())
                    if isinstance(spec, BatchNorm):
                        views.update(zip(("running_mean", "running_var"), plan.running_stats(op)))
                    spec = BoundNorm(spec, views, label)
                bound.append(spec)
            return tuple(bound)

        return bind(self._specs, "")

    def _bound_layers(self):
        """Every bound layer, Residual blocks opened, in op order."""
        return list(_bound.walk(self.layers))

    @_exclusive
    def get_weights(self):
        """Copies of the parameters, as Keras's ``get_weights``.

        Returns
        -------
        list of ndarray
            For each Dense layer in :attr:`layers` order, its weight (in_features,
            out_features), then its bias (out_features,).
        """
        return _bound.get_weights(self.layers)

    @_exclusive
    def set_weights(self, weights):
        """Copy ``weights`` into the parameters, as Keras's ``set_weights``.

        Parameters
        ----------
        weights : list of array-like
            In :meth:`get_weights` order and shapes; real numbers, cast to the model's
            dtype. All are checked before any is written, so a bad list leaves the model
            as it was.

        Raises
        ------
        TypeError, ValueError
            Naming the first bad entry (``weights[k]``, and the parameter it is for).
        """
        _bound.set_weights(self.layers, weights)

    def _dense_layers(self):
        return [layer for layer in self._bound_layers() if isinstance(layer, BoundDense)]

    @property
    def training_steps(self):
        """Training steps (batches of ``fit`` and ``train_step``) taken over the model's
        life; saved with it and never reset. Step ``k`` draws the dropout masks that
        ``gradients(..., dropout_step=k)`` uses."""
        return self._plan.training_steps

    @property
    def optimizer(self):
        """The optimizer the model last trained with (its state lives in the model)."""
        return self._optimizer

    @_exclusive
    def save(self, path):
        """Write the model, its optimizer state and its generator state to ``path`` (an
        ``.npz`` file; see :mod:`fastbp.io`), atomically. Read it back with
        :func:`fastbp.load`."""
        io.save(self, path)

    @_exclusive
    def __reduce__(self):
        # Pickle through the same description as save(): specs, arrays, optimizer, generator.
        return _rebuild, (io.model_config(self), self.parameters.copy(),
                          self._plan.state.copy(), self._plan.stats.copy())

    def __repr__(self):
        layers = ",\n    ".join(repr(spec) for spec in self._specs)
        return (f"Sequential([\n    {layers}],\n    loss={self.loss!r}, dtype={self.dtype.name!r}, "
                f"n_parameters={self._plan.n_params})")

    def summary(self, batch_size=32, print_fn=print):
        """Print a table of the layers and the memory the model uses, training at
        ``batch_size`` (as Keras's ``summary``).

        The table: per layer (a Residual block's layers after it, numbered ``i.j``),
        widths, activation or kind, parameter count; then the bytes of the parameter,
        gradient and optimizer-state buffers, of BatchNorm's running statistics, and of
        the training workspace (gathered input batch, every layer's output, the deltas, the
        pre-activation of each gelu or swish Dense layer, the dropped input after each
        Dropout, LayerNorm's per-row figures, BatchNorm's batch figures).

        Parameters
        ----------
        batch_size : int, default 32
        print_fn : callable or None, default print
            Called with each line of the table (Keras's convention; e.g. ``logger.info``
            or ``lines.append``). None prints nothing and returns the table instead.

        Returns
        -------
        str or None
            The table as one string when ``print_fn`` is None, else None.
        """
        batch_size = check_positive_int(batch_size, "batch_size")
        if print_fn is not None and not callable(print_fn):
            raise TypeError(f"print_fn must be a callable (such as print) or None, got "
                            f"{type(print_fn).__name__}")
        plan, itemsize = self._plan, self.dtype.itemsize
        lines = [f"Sequential, loss={self.loss!r}, dtype={self.dtype.name!r}",
                 f"{'layer':<7}  {'in':>6}  {'out':>6}  {'kind':<16} {'parameters':>11}"]
        for name, spec, width in summary_rows(self._specs, "", self.n_features):
            lines.append(f"{name:<7}  {width[0]:>6}  {width[1]:>6}  {describe(spec):<16} "
                         f"{parameter_count(spec):>11,}")
        kib = 1024.0
        lines += [f"parameters {plan.n_params:,} ({plan.n_params * itemsize / kib:,.1f} KiB), "
                  f"gradients {plan.grads.nbytes / kib:,.1f} KiB, optimizer state "
                  f"{plan.state.nbytes / kib:,.1f} KiB"
                  + (f", running statistics {plan.stats.nbytes / kib:,.1f} KiB"
                     if plan.stats.size else ""),
                  f"training workspace at batch {batch_size}: "
                  f"{plan.workspace_bytes(batch_size) / kib:,.1f} KiB"]
        if print_fn is None:
            return "\n".join(lines)
        for line in lines:
            print_fn(line)
        return None

    def _initialise(self):
        for layer in self._bound_layers():
            if isinstance(layer, BoundDense):
                layer.weight[...] = initializers.layer_weight(layer.spec, self._rng)
                layer.bias[...] = initializers.layer_bias(layer.spec, self._rng)
            elif isinstance(layer, BoundNorm) and layer.weight is not None:
                layer.weight[...] = 1  # γ 1 and β 0, torch's initial values
                layer.bias[...] = 0

    # ------------------------------------------------------------------ inputs
    def _check_X(self, X, name="X"):
        X = check_X(X, self.n_features, self.dtype, name)
        if isinstance(X, SparseRows) and self._plan.table[0, KIND] != OpKind.DENSE:
            raise ValueError(f"{name} is sparse, and sparse input needs a Dense first layer "
                             "(it reads X's rows where they are, and a Dropout, norm or "
                             f"Residual would need them dense); this model starts with "
                             f"{type(self._specs[0]).__name__}. Pass {name}.toarray(), or "
                             "start the model with a Dense layer")
        return X

    def _check_Xy(self, X, y):
        X = self._check_X(X)
        Y, labels = check_targets(y, X.shape[0], self.n_outputs, self._loss, self.dtype)
        return X, Y, labels

    def _team(self, threads, rows):
        """Context for a call on batches of ``rows`` rows: holds SciPy's BLAS at one thread
        and yields the size of fastbp's thread team (fastbp.threads.team)."""
        threads = check_threads(self.threads if threads is None else threads)
        return team(threads, self._plan.largest_gemm_flops(rows))

    def _use_optimizer(self, optimizer):
        """Validate ``optimizer`` and make its state ready, keeping it across calls with the
        same instance; a new instance starts from zero state."""
        if optimizer is None:
            optimizer = self._optimizer or SGD(lr=0.01, momentum=0.9)
        if not isinstance(optimizer, Optimizer):
            raise TypeError("optimizer must be a fastbp optimizer (SGD, Adam, AdamW, RMSprop, "
                            f"Adagrad), got {type(optimizer).__name__}")
        optimizer.check()
        size = optimizer.state_slots() * self._plan.n_params
        if optimizer is not self._optimizer or self._plan.state.shape[0] != size:
            self._plan.reset_state(optimizer)
            self._optimizer = optimizer
        return optimizer

    # ------------------------------------------------------------------ inference
    @_exclusive
    def predict(self, X, threads=None):
        """Network output for each row of X.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features)
        threads : "auto", int or None
            fastbp's team size for this call (see :class:`Sequential`); None uses the
            model's ``threads`` setting.

        Returns
        -------
        ndarray of shape (n_samples, n_outputs)
            Class probabilities (softmax) for ``cross_entropy``, per-output probabilities
            (sigmoid) for ``binary_cross_entropy``, rates ``exp(z)`` for ``poisson``, the last
            layer's output for the other regression losses (``mse``, ``huber``, ``mae``).
        """
        X = self._check_X(X)
        out = np.empty((X.shape[0], self.n_outputs), dtype=self.dtype)
        sparse = isinstance(X, SparseRows)
        rows = self._plan.predict_rows(X.shape[0], sparse)
        self._plan.ensure_capacity(rows, sparse)
        with self._team(threads, rows) as size:
            _core.forward(self._plan, X, out, True, n_threads=size)
        return out

    @_exclusive
    def evaluate(self, X, y, threads=None, sample_weight=None):
        """Mean loss on (X, y) and, for classification losses, accuracy (``threads`` as for
        :meth:`predict`).

        Parameters
        ----------
        sample_weight : array-like of shape (n_samples,), optional
            Weights as for :meth:`fit`: the loss is ``sum(w * loss) / n_samples`` (fit's
            definition) and accuracy the weighted fraction ``sum(w * correct) / sum(w)``.

        Returns
        -------
        dict
            ``{"loss": float}``, plus ``"accuracy"``: the fraction of rows whose arg-max
            output is the label (``cross_entropy``; the first one on ties, as
            ``numpy.argmax``), or of outputs whose sigmoid falls on the target's side of 0.5
            (``binary_cross_entropy``).
        """
        X, Y, labels = self._check_Xy(X, y)
        weights = self._sample_weights(X.shape[0], labels, sample_weight, None)
        rows = self._plan.predict_rows(X.shape[0], isinstance(X, SparseRows))
        with self._team(threads, rows) as size:
            return self._evaluate_checked(X, Y, labels, weights, size)

    def _evaluate_checked(self, X, Y, labels, weights=None, n_threads=1):
        """evaluate() on inputs already checked, on a team of ``n_threads`` (BLAS at one
        thread where that is more than one)."""
        sparse = isinstance(X, SparseRows)
        self._plan.ensure_capacity(self._plan.predict_rows(X.shape[0], sparse), sparse)
        loss, hits = _core.evaluate(self._plan, X, Y, labels, sample_weight=weights,
                                    n_threads=n_threads)
        result = {"loss": float(loss)}
        if self._loss in CLASSIFICATION:
            result["accuracy"] = self._accuracy(hits, X.shape[0], weights)
        return result

    def _accuracy(self, hits, n_samples, weights):
        """Accuracy from the core's hit count over ``n_samples`` rows (weighted if given)."""
        total = n_samples if weights is None else float(np.sum(weights, dtype=np.float64))
        if self._loss != Loss.CROSS_ENTROPY:  # bce counts every output
            total *= self.n_outputs
        return float(hits / total)



def mlp(sizes, activation="relu", loss="mse", output_activation=None, dtype="float32", seed=None,
        threads="auto", dropout=0.0, norm=None):
    """A :class:`Sequential` from layer widths, e.g. ``mlp([784, 128, 10], loss="cross_entropy")``.

    Parameters
    ----------
    sizes : sequence of int
        Input width, hidden widths, output width (at least two entries).
    activation : str
        Activation of every hidden layer.
    output_activation : str or None
        Activation of the last layer (must be None for the cross-entropy losses and
        poisson).
    dropout : float, default 0.0
        If > 0, a :class:`Dropout` of this rate after every hidden layer.
    norm : {None, "batch", "layer"}, default None
        Normalise every hidden layer's pre-activation: its Dense layer gets no activation
        and is followed by a :class:`BatchNorm` (or :class:`LayerNorm`) and an
        :class:`Activation`, then the Dropout if any.
    loss, dtype, seed, threads
        As for :class:`Sequential`.

    Returns
    -------
    Sequential
        Dense layers of widths ``sizes[i] -> sizes[i+1]`` (with the Dropouts, if any).
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least an input and an output width, got {sizes}")
    dropout = Dropout(dropout)  # validates the rate, even with no hidden layer
    norms = {None: None, "batch": BatchNorm, "layer": LayerNorm}
    if not isinstance(norm, (str, type(None))) or norm not in norms:
        raise ValueError(f"norm must be None, 'batch' or 'layer', got {norm!r}")
    layers = []
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
        if norm is None:
            layers.append(Dense(n_in, n_out, activation))
        else:
            layers += [Dense(n_in, n_out), norms[norm](n_out), Activation(activation)]
        if dropout.rate > 0:
            layers.append(dropout)
    layers.append(Dense(sizes[-2], sizes[-1], output_activation))
    return Sequential(layers, loss=loss, dtype=dtype, seed=seed, threads=threads)

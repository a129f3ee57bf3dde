"""A compiled model: the one object the C core reads.

The network becomes a table of ops, one row per op (see ``src_c/_ops.pxd``): each Dense,
Dropout, Activation, BatchNorm and LayerNorm layer is one op, and a Residual block is a
``residual_begin`` op, its layers' ops, and a ``residual_add`` op. A Dropout of rate 0 is
no op at all.

Layout of the flat parameter buffer: every Dense layer's weight ``W`` (in_features x
out_features, row-major) in layer order, then, in layer order, every Dense bias and every
norm's ``γ`` and ``β``. Gradients and optimizer state mirror it, so weight decay covers
exactly the prefix ``[0, n_weights)``: Dense weights, never biases, ``γ`` or ``β``.
BatchNorm's running statistics live in a buffer of their own (``stats``).
"""
import enum

import numpy as np

from ._native import core as _core
from .layers import Activation, Dense, Dropout, Residual
from .normalization import BatchNorm


class OpKind(enum.IntEnum):
    """The core's op codes (``OP_*`` in ``src_c/_ops.pxd``; a test asserts they agree)."""

    DENSE = 0
    DROPOUT = 1
    ACTIVATION = 2
    BATCHNORM = 3
    LAYERNORM = 4
    RESIDUAL_BEGIN = 5
    RESIDUAL_ADD = 6


# Columns of the table (the core's COL_*): kind, widths, activation code, parameter offsets
# (W or γ, b or β; -1 none), ARG (a Dropout's threshold, a residual op's partner, a
# BatchNorm's offset into stats) and KEY (a Dropout's mask key index, a BatchNorm's offset
# into scratch).
_COLUMNS = ("kind", "n_in", "n_out", "act", "p0", "p1", "arg", "key")
KIND, N_IN, N_OUT, ACT, P0, P1, ARG, KEY = range(len(_COLUMNS))
#: Values of a BatchNorm's scratch per feature (batch mean, invstd, var, two sums).
BATCHNORM_SCRATCH = 5


def dropout_threshold(rate):
    """The core's integer form of a dropout rate: an element is dropped when its uniform
    32-bit draw is below ``floor(rate * 2**32)`` (0: no dropout)."""
    return min(int(rate * 2.0 ** 32), 2 ** 32 - 1)

#: Prediction runs in chunks whose workspace holds at most this many elements (16 MB float32),
#: or for a bigger model up to four times its parameter count, capped at the second figure
#: (128 MB float32): each chunk's GEMMs pack the weights again, so chunks must not shrink as
#: the weights grow (2048-2048-2048-10 on 16384 rows, one thread: 409-row chunks 1901 ms,
#: 2048-row 1655 ms, 4096-row 1607 ms; PyTorch 1641 ms).
PREDICT_WORKSPACE_ELEMENTS = 1 << 22
PREDICT_WORKSPACE_MAX_ELEMENTS = 1 << 25


def flatten(specs):
    """The layers in op order, as (role, spec) pairs: role None for a layer, each Residual
    as ("begin", block) ... ("add", block) around its own layers; a Dropout of rate 0 is
    left out (it does nothing)."""
    for spec in specs:
        if isinstance(spec, Dropout) and spec.rate == 0:
            continue
        if isinstance(spec, Residual):
            yield "begin", spec
            yield from flatten(spec.layers)
            yield "add", spec
        else:
            yield None, spec


def input_width(specs):
    """The width of the network's input: the first layer that states one."""
    for _, spec in flatten(specs):
        width = getattr(spec, "in_features", None) or getattr(spec, "num_features", None)
        if width:
            return width
    raise ValueError("no layer states its input width")


class Plan:
    """Op table, flat buffers and workspace of one model (see module docstring).

    Attributes read by ``fastbp._core``: ``table`` (int64, one row per op, columns
    ``_COLUMNS``), ``reals`` (float64, per op: eps, momentum), ``loss_code``,
    ``n_weights``, ``params``, ``grads``, ``state`` (optimizer), ``stats`` (BatchNorm
    running statistics), ``scratch`` (BatchNorm batch figures), ``workspace`` and
    ``dropout_seed``. The workspace's layout is the core's (``workspace_row_length``
    elements per sample row); Python only sizes it.
    """

    def __init__(self, specs, loss_code, dtype):
        self.dtype = np.dtype(dtype)
        self.loss_code = int(loss_code)
        self._build(specs)
        self.row_length = _core.workspace_row_length(self.table, self.reals)
        # sparse input is read where it lies: no gathered batch block (fastbp.sparse)
        self.sparse_row_length = _core.workspace_row_length(self.table, self.reals, sparse=True)
        dense = self.table[self.dense_ops]
        self._largest_product = int((dense[:, N_IN] * dense[:, N_OUT]).max())  # every call asks
        self.params = np.zeros(self.n_params, dtype=self.dtype)
        self.grads = np.zeros(self.n_params, dtype=self.dtype)
        self.state = np.zeros(0, dtype=self.dtype)
        self.steps = 0    # optimizer updates since the state was created
        self.epochs = 0   # fit epochs completed since then (what per-epoch schedules count)
        # Training steps (batches of fit and train_step) over the model's life, never reset:
        # step k draws its dropout masks from (dropout_seed, k). Not the optimizer's steps,
        # which restart with each new optimizer and would repeat earlier masks.
        self.training_steps = 0
        self.dropout_seed = 0  # set by the model when it has dropout (a uint64)
        self.chunk_batches = {}  # batch size -> batches per compiled call (see training.py)
        self.workspace = np.zeros(0, dtype=self.dtype)

    def _build(self, specs):
        """The op table, the parameter layout and the running statistics."""
        ops = list(flatten(specs))
        widths, width = [], input_width(specs)
        for role, spec in ops:
            n_out = spec.out_features if isinstance(spec, Dense) and role is None else width
            widths.append((width, n_out))
            width = n_out
        self.n_weights = sum(s.in_features * s.out_features for r, s in ops
                             if r is None and isinstance(s, Dense))
        table = np.full((len(ops), len(_COLUMNS)), -1, dtype=np.int64)
        reals = np.zeros((len(ops), 2))
        w_offset, p_offset, stats, scratch, dense_seen, drops_since_dense = (
            0, self.n_weights, 0, 0, 0, 0)
        begins, self.param_ops = [], []   # param_ops: (op index, spec) of parameterised ops
        for i, ((role, spec), (n_in, n_out)) in enumerate(zip(ops, widths)):
            row = table[i]
            row[N_IN], row[N_OUT], row[ACT] = n_in, n_out, 0
            if role == "begin":
                row[KIND] = OpKind.RESIDUAL_BEGIN
                begins.append(i)
            elif role == "add":
                row[KIND], row[ARG] = OpKind.RESIDUAL_ADD, begins.pop()
                table[row[ARG], ARG] = i
            elif isinstance(spec, Dense):
                row[KIND], row[ACT] = OpKind.DENSE, spec.activation_code
                row[P0], row[P1] = w_offset, p_offset
                w_offset += n_in * n_out
                p_offset += n_out
                dense_seen, drops_since_dense = dense_seen + 1, 0
            elif isinstance(spec, Dropout):
                # Key index: the old one (the index of the Dense layer the dropout feeds)
                # for the first Dropout after a Dense layer, distinct ones for any more.
                row[KIND], row[ARG] = OpKind.DROPOUT, dropout_threshold(spec.rate)
                row[KEY] = dense_seen + (drops_since_dense << 32)
                drops_since_dense += 1
            elif isinstance(spec, Activation):
                row[KIND], row[ACT] = OpKind.ACTIVATION, spec.activation_code
            else:  # BatchNorm, LayerNorm
                row[KIND] = OpKind.BATCHNORM if isinstance(spec, BatchNorm) else OpKind.LAYERNORM
                if spec.affine:
                    row[P0], row[P1] = p_offset, p_offset + n_in
                    p_offset += 2 * n_in
                reals[i] = spec.eps, getattr(spec, "momentum", 0.0)
                if isinstance(spec, BatchNorm):
                    row[ARG], row[KEY] = stats, scratch
                    stats += 2 * n_in
                    scratch += BATCHNORM_SCRATCH * n_in
            if row[P0] >= 0:
                self.param_ops.append((i, spec))
        self.table, self.reals, self.n_params = table, reals, p_offset
        self.dense_ops = [i for i in range(len(ops)) if table[i, KIND] == OpKind.DENSE]
        # Running mean 0 and variance 1 for every BatchNorm (torch's initial values).
        self.stats = np.zeros(stats, dtype=self.dtype)
        for i in np.flatnonzero(table[:, KIND] == OpKind.BATCHNORM):
            start, n = table[i, ARG], table[i, N_IN]
            self.stats[start + n:start + 2 * n] = 1
        self.scratch = np.zeros(scratch, dtype=self.dtype)

    @property
    def n_features(self):
        return int(self.table[0, N_IN])

    @property
    def has_dropout(self):
        """Whether any layer drops its input while training."""
        return bool(np.any(self.table[:, KIND] == OpKind.DROPOUT))

    @property
    def has_batchnorm(self):
        return bool(np.any(self.table[:, KIND] == OpKind.BATCHNORM))

    @property
    def dense_activations(self):
        """The activation code of each Dense layer, in order."""
        return self.table[self.dense_ops, ACT]

    def pair(self, buffer, op):
        """The two parameter (or gradient) views of op index ``op``: (W, b) shaped, or
        (γ, β)."""
        n_in, n_out, p0, p1 = (int(self.table[op, c]) for c in (N_IN, N_OUT, P0, P1))
        if self.table[op, KIND] == OpKind.DENSE:
            return buffer[p0:p0 + n_in * n_out].reshape(n_in, n_out), buffer[p1:p1 + n_out]
        return buffer[p0:p0 + n_in], buffer[p1:p1 + n_in]

    def weight(self, buffer, layer):
        """Dense layer ``layer``'s (n_in, n_out) view of ``buffer``."""
        return self.pair(buffer, self.dense_ops[layer])[0]

    def bias(self, buffer, layer):
        return self.pair(buffer, self.dense_ops[layer])[1]

    def pairs(self, buffer):
        """Per parameterised op, in order: its two views of ``buffer``."""
        return [self.pair(buffer, op) for op, _ in self.param_ops]

    def running_stats(self, op):
        """A BatchNorm op's (running_mean, running_var) views."""
        start, n = int(self.table[op, ARG]), int(self.table[op, N_IN])
        return self.stats[start:start + n], self.stats[start + n:start + 2 * n]

    @property
    def capacity(self):
        """Rows the current workspace holds (dense input)."""
        return self.capacity_for(False)

    def capacity_for(self, sparse):
        """Rows the current workspace holds for dense or sparse input."""
        return self.workspace.shape[0] // (self.sparse_row_length if sparse else self.row_length)

    def largest_gemm_flops(self, rows):
        """Floating-point operations of the step's largest GEMM on ``rows`` rows."""
        return 2 * rows * self._largest_product

    def workspace_bytes(self, rows):
        return (rows * self.row_length + self.scratch.shape[0]) * self.dtype.itemsize

    def ensure_capacity(self, rows, sparse=False):
        """Grow (never shrink) the workspace to hold ``rows`` sample rows of dense input, or
        of ``sparse`` input."""
        if self.capacity_for(sparse) < rows:
            length = self.sparse_row_length if sparse else self.row_length
            self.workspace = np.zeros(rows * length, dtype=self.dtype)

    def predict_rows(self, n_rows, sparse=False):
        """Chunk size for forward passes over ``n_rows`` rows (dense or ``sparse``)."""
        length = self.sparse_row_length if sparse else self.row_length
        budget = max(PREDICT_WORKSPACE_ELEMENTS,
                     min(4 * self.n_params, PREDICT_WORKSPACE_MAX_ELEMENTS))
        return min(n_rows, max(self.capacity_for(sparse), budget // length, 1))

    def reset_state(self, optimizer):
        """Fresh optimizer state (and step and epoch counts) for ``optimizer``."""
        self.state = optimizer.initial_state(self.n_params, self.dtype)
        self.steps = 0
        self.epochs = 0

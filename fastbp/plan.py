"""A compiled model: the one object the C core reads.

Layout of the flat parameter buffer: every layer's weight ``W`` (in_features x out_features,
row-major) in layer order, then every layer's bias. Gradients and optimizer state mirror it,
so weight decay covers exactly the prefix ``[0, n_weights)``.
"""
import numpy as np

from ._native import core as _core

_TABLE_COLUMNS = ("n_in", "n_out", "act", "w_offset", "b_offset")

#: Prediction runs in chunks whose workspace holds at most this many elements (16 MB float32).
PREDICT_WORKSPACE_ELEMENTS = 1 << 22


class Plan:
    """Layer table, flat buffers and workspace of one model (see module docstring).

    Attributes read by ``fastbp._core``: ``table`` (int64, one row per layer:
    n_in, n_out, activation code, weight offset, bias offset), ``loss_code``, ``n_weights``,
    ``params``, ``grads``, ``state`` (optimizer) and ``workspace``. The workspace's layout
    is the core's (``workspace_row_length`` elements per sample row, which include a
    pre-activation block for each gelu or swish layer); Python only sizes it.
    """

    def __init__(self, specs, loss_code, dtype):
        self.dtype = np.dtype(dtype)
        self.loss_code = int(loss_code)
        sizes = [(s.in_features, s.out_features) for s in specs]
        self.n_weights = sum(i * o for i, o in sizes)
        self.n_params = self.n_weights + sum(o for _, o in sizes)
        table = np.zeros((len(specs), len(_TABLE_COLUMNS)), dtype=np.int64)
        w_offset, b_offset = 0, self.n_weights
        for row, spec in zip(table, specs):
            row[:] = (spec.in_features, spec.out_features, spec.activation_code, w_offset, b_offset)
            w_offset += spec.in_features * spec.out_features
            b_offset += spec.out_features
        self.table = table
        self.row_length = _core.workspace_row_length(table)
        self.params = np.zeros(self.n_params, dtype=self.dtype)
        self.grads = np.zeros(self.n_params, dtype=self.dtype)
        self.state = np.zeros(0, dtype=self.dtype)
        self.steps = 0    # optimizer updates since the state was created
        self.epochs = 0   # fit epochs completed since then (what per-epoch schedules count)
        self.chunk_batches = {}  # batch size -> batches per compiled call (see training.py)
        self.workspace = np.zeros(0, dtype=self.dtype)

    def weight(self, buffer, layer):
        n_in, n_out, _, w, _ = self.table[layer]
        return buffer[w:w + n_in * n_out].reshape(n_in, n_out)

    def bias(self, buffer, layer):
        _, n_out, _, _, b = self.table[layer]
        return buffer[b:b + n_out]

    @property
    def capacity(self):
        """Rows the current workspace holds."""
        return self.workspace.shape[0] // self.row_length

    def largest_gemm_flops(self, rows):
        """Floating-point operations of the step's largest GEMM on ``rows`` rows."""
        return 2 * rows * int((self.table[:, 0] * self.table[:, 1]).max())

    def workspace_bytes(self, rows):
        return rows * self.row_length * self.dtype.itemsize

    def ensure_capacity(self, rows):
        """Grow (never shrink) the workspace to hold ``rows`` sample rows."""
        if self.capacity < rows:
            self.workspace = np.zeros(rows * self.row_length, dtype=self.dtype)

    def predict_rows(self, n_rows):
        """Chunk size for forward passes over ``n_rows`` rows."""
        return min(n_rows, max(self.capacity, PREDICT_WORKSPACE_ELEMENTS // self.row_length, 1))

    def reset_state(self, optimizer):
        """Fresh optimizer state (and step and epoch counts) for ``optimizer``."""
        self.state = optimizer.initial_state(self.n_params, self.dtype)
        self.steps = 0
        self.epochs = 0

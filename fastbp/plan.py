"""A compiled model: the one object the C core reads.

Layout of the flat parameter buffer: every layer's weight ``W`` (in_features x out_features,
row-major) in layer order, then every layer's bias. Gradients and optimizer state mirror it,
so weight decay covers exactly the prefix ``[0, n_weights)``.

The table has one row per Dense layer; a Dropout spec becomes the ``drop`` column of the
Dense layer after it (dropout on that layer's input), so the core sees only Dense layers.
"""
import numpy as np

from ._native import core as _core
from .layers import Dense, Dropout

_TABLE_COLUMNS = ("n_in", "n_out", "act", "w_offset", "b_offset", "drop")


def dropout_threshold(rate):
    """The core's integer form of a dropout rate: an element is dropped when its uniform
    32-bit draw is below ``floor(rate * 2**32)`` (0: no dropout)."""
    return min(int(rate * 2.0 ** 32), 2 ** 32 - 1)

#: Prediction runs in chunks whose workspace holds at most this many elements (16 MB float32).
PREDICT_WORKSPACE_ELEMENTS = 1 << 22


class Plan:
    """Layer table, flat buffers and workspace of one model (see module docstring).

    Attributes read by ``fastbp._core``: ``table`` (int64, one row per Dense layer:
    n_in, n_out, activation code, weight offset, bias offset, dropout threshold of its
    input), ``loss_code``, ``n_weights``, ``params``, ``grads``, ``state`` (optimizer),
    ``workspace`` and ``dropout_seed``. The workspace's layout is the core's
    (``workspace_row_length`` elements per sample row, which include a pre-activation block
    for each gelu or swish layer and a dropped-input block for each layer with dropout);
    Python only sizes it.
    """

    def __init__(self, specs, loss_code, dtype):
        self.dtype = np.dtype(dtype)
        self.loss_code = int(loss_code)
        dense = [spec for spec in specs if isinstance(spec, Dense)]
        sizes = [(s.in_features, s.out_features) for s in dense]
        self.n_weights = sum(i * o for i, o in sizes)
        self.n_params = self.n_weights + sum(o for _, o in sizes)
        table = np.zeros((len(dense), len(_TABLE_COLUMNS)), dtype=np.int64)
        w_offset, b_offset, row, drop = 0, self.n_weights, 0, 0
        for spec in specs:
            if isinstance(spec, Dropout):
                drop = dropout_threshold(spec.rate)
                continue
            table[row] = (spec.in_features, spec.out_features, spec.activation_code, w_offset,
                          b_offset, drop)
            w_offset += spec.in_features * spec.out_features
            b_offset += spec.out_features
            row, drop = row + 1, 0
        self.table = table
        self.row_length = _core.workspace_row_length(table)
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

    @property
    def has_dropout(self):
        """Whether any layer drops its input while training."""
        return bool(np.any(self.table[:, 5] != 0))

    def weight(self, buffer, layer):
        n_in, n_out, w = (int(self.table[layer, column]) for column in (0, 1, 3))
        return buffer[w:w + n_in * n_out].reshape(n_in, n_out)

    def bias(self, buffer, layer):
        n_out, b = int(self.table[layer, 1]), int(self.table[layer, 4])
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

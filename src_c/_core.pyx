# A. Invariants: Python owns every buffer; this module only reads a compiled plan
#    (fastbp.plan.Plan) and the arrays it is handed. All arrays are C-contiguous and of the
#    plan's dtype; the Python layer validates values (labels in range, finite inputs) and the
#    entry points here re-check every size and offset that could index out of bounds.
# B. The network is plan.table, one row per op (_ops.pxd): this file unpacks it, lays out
#    the workspace, and runs the loop: forward over the ops in order, the loss fused with the
#    last Dense layer's output, the deltas over the ops in reverse (row-local, so threads
#    can take disjoint rows), then the parameter gradients (each needs every row: split by
#    rows of dW instead) and the optimizer step. Each op kind's forward and backward sit
#    side by side in its own _op_*.pxd. Workspace, for a capacity of C sample rows: the
#    gathered batch, then C x width blocks: every op's output (a Dropout's only while
#    training with dropout), the delta blocks, the pre-activations that gelu and swish
#    Dense layers keep, and per-row LayerNorm figures; see _layout. Values stay intact
#    through backward.
# C. Why: one entry call runs every mini-batch of an epoch inside a single `nogil` block with
#    no allocation and no Python; errors become status codes raised once back in Python.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport isfinite, sqrt, NAN, INFINITY
from libc.stdlib cimport malloc, free
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

from _blas cimport (mm_nn, mm_nt, mm_tn, blas_nn, blas_nt, blas_tn,
                   SMALL_GEMM_MACS as _SMALL_GEMM_MACS, FASTBP_SMALL_GEMM,
                   fastbp_small_gemm_on)
from _activations cimport (bias_act, act_backward, act_needs_z, LEAKY_SLOPE,
                           ELU_ALPHA as _ELU_ALPHA, ACT_IDENTITY, ACT_SIGMOID, ACT_TANH,
                           ACT_RELU, ACT_LEAKY_RELU, ACT_GELU, ACT_SOFTPLUS, ACT_ELU, ACT_SWISH)
from _losses cimport (loss_backward, weighted_loss_backward, output_activation, HUBER_DELTA as _HUBER_DELTA,
                      LOSS_MSE, LOSS_CROSS_ENTROPY, LOSS_BINARY_CROSS_ENTROPY, LOSS_HUBER,
                      LOSS_MAE)
from _optim cimport (OptimizerStep, Bounds, apply_update, apply_rule, transform_gradients,
                     transforms_gradients, update_norm, l2_norm, measure_bounds,
                     max_magnitude, n_slots, rule_range, bounded,
                     OPT_SGD, OPT_ADAM, OPT_ADAMW, OPT_RMSPROP, OPT_ADAGRAD)
from _ops cimport (Op, Net, at, LOC_BATCH, OP_DENSE, OP_DROPOUT, OP_ACTIVATION, OP_BATCHNORM,
                   OP_LAYERNORM, OP_RESIDUAL_BEGIN, OP_RESIDUAL_ADD)
from _gather cimport gather, prefetch_rows, prefetch_range
from _op_dense cimport dense_forward, dense_backward, dense_param_grads, colsum
from _op_dropout cimport (dropout_op_forward, dropout_op_backward, dropout_forward,
                          dropout_backward, dropout_keys, draw as _draw)
from _op_activation cimport activation_forward, activation_backward, act_copy
from _op_batchnorm cimport (batchnorm_forward_train, batchnorm_forward_infer,
                            batchnorm_prepare_inference, batchnorm_backward,
                            batchnorm_update_running)
from _op_layernorm cimport layernorm_forward, layernorm_backward, layernorm_param_grads
from _op_residual cimport (residual_add_forward, residual_add_backward,
                           residual_begin_backward)
from libc.float cimport FLT_MAX, DBL_MAX

import numpy as np

cdef enum:
    STATUS_OK = 0
    STATUS_NONFINITE_LOSS = 1
    STATUS_NONFINITE_PARAMS = 2

# The C codes, by name; fastbp's IntEnum twins are tested against this table.
CODES = {
    "ACT_IDENTITY": ACT_IDENTITY, "ACT_SIGMOID": ACT_SIGMOID, "ACT_TANH": ACT_TANH,
    "ACT_RELU": ACT_RELU, "ACT_LEAKY_RELU": ACT_LEAKY_RELU, "ACT_GELU": ACT_GELU,
    "ACT_SOFTPLUS": ACT_SOFTPLUS, "ACT_ELU": ACT_ELU, "ACT_SWISH": ACT_SWISH,
    "LOSS_MSE": LOSS_MSE, "LOSS_CROSS_ENTROPY": LOSS_CROSS_ENTROPY,
    "LOSS_BINARY_CROSS_ENTROPY": LOSS_BINARY_CROSS_ENTROPY, "LOSS_HUBER": LOSS_HUBER,
    "LOSS_MAE": LOSS_MAE,
    "OPT_SGD": OPT_SGD, "OPT_ADAM": OPT_ADAM, "OPT_ADAMW": OPT_ADAMW,
    "OPT_RMSPROP": OPT_RMSPROP, "OPT_ADAGRAD": OPT_ADAGRAD,
    "STATUS_OK": STATUS_OK, "STATUS_NONFINITE_LOSS": STATUS_NONFINITE_LOSS,
    "STATUS_NONFINITE_PARAMS": STATUS_NONFINITE_PARAMS,
    "OP_DENSE": OP_DENSE, "OP_DROPOUT": OP_DROPOUT, "OP_ACTIVATION": OP_ACTIVATION,
    "OP_BATCHNORM": OP_BATCHNORM, "OP_LAYERNORM": OP_LAYERNORM,
    "OP_RESIDUAL_BEGIN": OP_RESIDUAL_BEGIN, "OP_RESIDUAL_ADD": OP_RESIDUAL_ADD,
}
LEAKY_RELU_SLOPE = LEAKY_SLOPE
ELU_ALPHA = _ELU_ALPHA
HUBER_DELTA = _HUBER_DELTA

# Columns of plan.table, one row per op (fastbp.plan writes them). COL_ARG: a Dropout's
# threshold floor(rate·2³²); a residual op's partner; a BatchNorm's offset into plan.stats.
# COL_KEY: a Dropout's mask key index; a BatchNorm's offset into plan.scratch.
# plan.reals holds (eps, momentum) per op.
cdef enum:
    COL_KIND = 0
    COL_N_IN = 1
    COL_N_OUT = 2
    COL_ACT = 3
    COL_P0 = 4
    COL_P1 = 5
    COL_ARG = 6
    COL_KEY = 7
    N_COLS = 8

cdef int INT_MAX = 2147483647


# ---------------------------------------------------------------- plan unpacking (with GIL)

cdef inline bint _has_params(const Op *op) noexcept nogil:
    return op.p0 >= 0


cdef Py_ssize_t _layout(Net *net, Py_ssize_t cap) noexcept nogil:
    """Workspace offsets for a capacity of ``cap`` rows (A, B); returns the total size.
    Outputs first, then deltas (the last Dense's delta is its output), then kept
    pre-activations, then LayerNorm figures; a delta exists where the op has parameters or
    something below it has (din), and Dropout, Activation and a block's begin scale or pass
    the delta of their input in place."""
    cdef Py_ssize_t i, off = cap * net.ops[0].n_in, value_delta = -1
    cdef bint grads_below = False
    cdef Op *op
    for i in range(net.n_ops):
        op = &net.ops[i]
        op.out = -1
        if op.kind != OP_RESIDUAL_BEGIN:
            op.out = off
            off += cap * op.n_out
    for i in range(net.n_ops):
        op = &net.ops[i]
        op.din = value_delta if grads_below else -1
        if op.kind == OP_DROPOUT or op.kind == OP_ACTIVATION or op.kind == OP_RESIDUAL_BEGIN:
            op.dout = op.din
        elif i == net.n_ops - 1:
            op.dout = op.out
        elif _has_params(op) or grads_below:
            op.dout = off
            off += cap * op.n_out
        else:
            op.dout = -1
        value_delta = op.dout
        grads_below = grads_below or _has_params(op)
    for i in range(net.n_ops):
        op = &net.ops[i]
        op.z = -1
        if op.kind == OP_DENSE and act_needs_z(op.act):
            op.z = off
            off += cap * op.n_out
        if op.kind == OP_LAYERNORM:
            op.aux = off
            off += cap * 2
    return off


cdef int _build(const long long[:, ::1] table, const double[:, ::1] reals, Net *net,
                Py_ssize_t n_params, Py_ssize_t n_weights, Py_ssize_t n_stats,
                Py_ssize_t n_scratch, bint check_offsets=True) except -1:
    """Fill net.ops (allocated by the caller) from the table; check every width and pairing,
    and (check_offsets) every offset against the buffers' sizes. The workspace layout is
    _layout's."""
    cdef Py_ssize_t i, width, n
    cdef Op *op
    if table.shape[0] < 1 or table.shape[1] != N_COLS:
        raise ValueError("plan.table must have shape (n_ops, %d)" % N_COLS)
    if reals.shape[0] != table.shape[0] or reals.shape[1] != 2:
        raise ValueError("plan.reals must have shape (%d, 2)" % table.shape[0])
    width = table[0, COL_N_IN]
    for i in range(net.n_ops):
        op = &net.ops[i]
        op.kind = <int> table[i, COL_KIND]
        op.act = <int> table[i, COL_ACT]
        op.n_in, op.n_out = table[i, COL_N_IN], table[i, COL_N_OUT]
        op.p0, op.p1 = table[i, COL_P0], table[i, COL_P1]
        op.stats, op.aux, op.partner = -1, -1, -1
        op.drop, op.scale, op.key_index, op.keys = 0, 1.0, 0, 0
        op.eps, op.momentum = reals[i, 0], reals[i, 1]
        op.loss_fused = False
        op.in_loc = op.out_loc = LOC_BATCH
        n = op.n_in
        bad = (n != width or n < 1 or op.n_out < 1 or not OP_DENSE <= op.kind <= OP_RESIDUAL_ADD
               or (op.kind != OP_DENSE and op.n_out != n)
               or (op.p0 < 0) != (op.p1 < 0))
        if op.kind == OP_DENSE:
            bad = bad or op.p0 < 0 or (check_offsets and (
                op.p0 + n * op.n_out > n_weights or op.p1 < n_weights
                or op.p1 + op.n_out > n_params))
        elif op.kind == OP_BATCHNORM or op.kind == OP_LAYERNORM:
            bad = bad or (check_offsets and op.p0 >= 0 and (
                op.p0 < n_weights or op.p0 + n > n_params or op.p1 < n_weights
                or op.p1 + n > n_params))
            bad = bad or not op.eps > 0
            if op.kind == OP_BATCHNORM:
                op.stats, op.aux = table[i, COL_ARG], table[i, COL_KEY]
                bad = bad or op.stats < 0 or op.aux < 0 or not 0 <= op.momentum <= 1
                bad = bad or (check_offsets and (op.stats + 2 * n > n_stats
                                                 or op.aux + 5 * n > n_scratch))
        else:
            bad = bad or op.p0 >= 0
            if op.kind == OP_DROPOUT:
                bad = bad or not 0 <= table[i, COL_ARG] <= <long long> 0xFFFFFFFF
                op.drop = <uint32_t> table[i, COL_ARG]
                op.scale = 4294967296.0 / (4294967296.0 - op.drop)
                op.key_index = <uint64_t> table[i, COL_KEY]
            elif op.kind == OP_RESIDUAL_BEGIN or op.kind == OP_RESIDUAL_ADD:
                op.partner = table[i, COL_ARG]
                bad = bad or not ((op.kind == OP_RESIDUAL_BEGIN and i < op.partner < net.n_ops)
                                  or (op.kind == OP_RESIDUAL_ADD and 0 <= op.partner < i))
                bad = bad or (table[op.partner, COL_ARG] != i
                              or table[op.partner, COL_KIND] + op.kind
                              != OP_RESIDUAL_BEGIN + OP_RESIDUAL_ADD
                              or table[op.partner, COL_N_IN] != n)
        if bad:
            raise ValueError("plan.table is inconsistent at op %d" % i)
        width = op.n_out
    if net.ops[net.n_ops - 1].kind != OP_DENSE:
        raise ValueError("plan.table must end with a Dense op (the loss is fused with it)")
    net.ops[net.n_ops - 1].loss_fused = True
    net.row_local = True
    for i in range(net.n_ops):
        if net.ops[i].kind == OP_BATCHNORM:
            net.row_local = False
    return 0


def workspace_row_length(const long long[:, ::1] table, const double[:, ::1] reals):
    """Workspace elements per sample row of the op list (see _layout)."""
    cdef Net net
    cdef Py_ssize_t row
    net.n_ops = table.shape[0]
    net.ops = <Op *> malloc(max(net.n_ops, 1) * sizeof(Op))
    if net.ops == NULL:
        raise MemoryError()
    try:
        _build(table, reals, &net, 0, 0, 0, 0, False)
        row = _layout(&net, 1)
    finally:
        free(net.ops)
    return row


cdef Net _unpack(plan, Py_ssize_t n_params, Py_ssize_t n_workspace) except *:
    """Read plan.table into a C Net (caller frees net.ops); check every offset fits."""
    cdef const long long[:, ::1] table = plan.table
    cdef Net net
    cdef Py_ssize_t row
    net.n_ops = table.shape[0]
    net.n_params = n_params
    net.n_weights = plan.n_weights
    net.n_stats = plan.stats.shape[0]
    net.loss = plan.loss_code
    net.training = False
    net.dropping = False
    net.seed = plan.dropout_seed
    net.ops = <Op *> malloc(max(net.n_ops, 1) * sizeof(Op))
    if net.ops == NULL:
        raise MemoryError()
    try:
        if not 0 <= net.n_weights <= n_params:
            raise ValueError("plan.n_weights is out of range")
        _build(table, plan.reals, &net, n_params, net.n_weights, net.n_stats,
               plan.scratch.shape[0])
        row = _layout(&net, 1)
        net.capacity = n_workspace // row
        _layout(&net, net.capacity)
        _resolve(&net)
    except BaseException:
        free(net.ops)
        raise
    return net


cdef void _resolve(Net *net) noexcept nogil:
    """Each op's input and output location in the current mode (_ops.pxd B): a Dropout
    passes its input through unless training with dropout, a block's begin always does."""
    cdef Py_ssize_t i, loc = LOC_BATCH
    cdef Op *op
    for i in range(net.n_ops):
        op = &net.ops[i]
        op.in_loc = loc
        if op.kind == OP_RESIDUAL_BEGIN or (op.kind == OP_DROPOUT and not net.dropping):
            op.out_loc = loc
        else:
            op.out_loc = op.out
        loc = op.out_loc


cdef void _set_mode(Net *net, bint training, long long dropout_step) noexcept nogil:
    """Training (batch statistics) or inference; with dropout_step >= 0, training step
    dropout_step's masks for every Dropout op (dropout on)."""
    cdef Py_ssize_t i
    net.training = training
    net.dropping = False
    if dropout_step >= 0:
        for i in range(net.n_ops):
            if net.ops[i].kind == OP_DROPOUT and net.ops[i].drop != 0:
                net.ops[i].keys = dropout_keys(net.seed, <uint64_t> dropout_step,
                                               net.ops[i].key_index)
                net.dropping = True
    _resolve(net)


cdef _check_batch_args(Net *net, Py_ssize_t n_rows, Py_ssize_t n_features,
                       Py_ssize_t y_rows, Py_ssize_t y_cols, Py_ssize_t n_labels,
                       Py_ssize_t batch_rows):
    cdef Op *last = &net.ops[net.n_ops - 1]
    cdef Py_ssize_t i
    if n_features != net.ops[0].n_in:
        raise ValueError("X has %d features, the model expects %d" % (n_features, net.ops[0].n_in))
    if net.loss == LOSS_CROSS_ENTROPY:
        if n_labels != n_rows:
            raise ValueError("labels must have one entry per row of X")
    elif y_rows != n_rows or y_cols != last.n_out:
        raise ValueError("Y must have shape (%d, %d)" % (n_rows, last.n_out))
    if batch_rows < 1 or batch_rows > net.capacity:
        raise ValueError("batch of %d rows does not fit the workspace (%d rows)"
                         % (batch_rows, net.capacity))
    for i in range(net.n_ops):
        if (batch_rows * net.ops[i].n_in > INT_MAX or batch_rows * net.ops[i].n_out > INT_MAX
                or net.ops[i].n_in * net.ops[i].n_out > INT_MAX):
            raise ValueError("op %d is too large for 32-bit BLAS indexing" % i)


cdef _check_training_rows(Net *net, Py_ssize_t rows):
    """torch's rule: a BatchNorm cannot take batch statistics of one row."""
    cdef Py_ssize_t i
    if rows < 2:
        for i in range(net.n_ops):
            if net.ops[i].kind == OP_BATCHNORM:
                raise ValueError("a training batch of 1 row: BatchNorm needs at least 2 rows "
                                 "per batch to take batch statistics")


cdef OptimizerStep _read_optimizer(optimizer, Py_ssize_t n_params,
                                   Py_ssize_t n_state) except *:
    """The settings of a fastbp optimizer (fields it lacks are off); checks the state size."""
    cdef OptimizerStep opt
    opt.code = int(optimizer.code)
    opt.lr = 0
    opt.step = 0
    opt.momentum = getattr(optimizer, "momentum", 0.0)
    opt.nesterov = bool(getattr(optimizer, "nesterov", False))
    opt.weight_decay = getattr(optimizer, "weight_decay", 0.0)
    opt.l1 = getattr(optimizer, "l1", 0.0)
    opt.beta1 = getattr(optimizer, "beta1", 0.0)
    opt.beta2 = getattr(optimizer, "beta2", 0.0)
    opt.alpha = getattr(optimizer, "alpha", 0.0)
    opt.eps = getattr(optimizer, "eps", 1.0)
    opt.clip_norm = getattr(optimizer, "clip_norm", None) or 0.0
    opt.clip_value = getattr(optimizer, "clip_value", None) or 0.0
    if opt.code < OPT_SGD or opt.code > OPT_ADAGRAD:
        raise ValueError("unknown optimizer code %d" % opt.code)
    if n_state != n_slots(&opt) * n_params:
        raise ValueError("the optimizer state must hold %d values, not %d"
                         % (n_slots(&opt) * n_params, n_state))
    return opt


# ---------------------------------------------------------------- the loop (nogil)

cdef inline floating *_ptr(floating[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL

cdef inline const floating *_cptr2(const floating[:, ::1] a) noexcept nogil:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL

cdef inline const Py_ssize_t *_iptr(const Py_ssize_t[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL


cdef void _prepare_inference(Net *net, const floating *P, const floating *R,
                             floating *T) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(net.n_ops):
        if net.ops[i].kind == OP_BATCHNORM:
            batchnorm_prepare_inference(&net.ops[i], P, R, T)


cdef void _forward(Net *net, const floating *P, floating *T, floating *ws, const floating *Xb,
                   Py_ssize_t r0, Py_ssize_t r1, floating *out) noexcept nogil:
    """Rows r0:r1 of the batch through every op (for a net with BatchNorm in training, the
    whole batch: r0 = 0). ``out``, if given, receives the last op's output."""
    cdef Py_ssize_t i, rows = r1 - r0
    cdef Op *op
    cdef const floating *X
    for i in range(net.n_ops):
        op = &net.ops[i]
        X = at(op.in_loc, ws, Xb)
        if op.kind == OP_DENSE:
            dense_forward(op, P, ws, X, out if (out != NULL and i == net.n_ops - 1)
                          else ws + op.out, r0, rows)
        elif op.kind == OP_DROPOUT:
            if net.dropping:
                dropout_op_forward(op, X, ws, r0, rows)
        elif op.kind == OP_ACTIVATION:
            activation_forward(op, X, ws, r0, rows)
        elif op.kind == OP_BATCHNORM:
            if net.training:
                batchnorm_forward_train(op, P, T, X, ws, rows)
            else:
                batchnorm_forward_infer(op, T, X, ws, r0, rows)
        elif op.kind == OP_LAYERNORM:
            layernorm_forward(op, P, X, ws, r0, rows)
        elif op.kind == OP_RESIDUAL_ADD:
            residual_add_forward(op, X, at(net.ops[op.partner].in_loc, ws, Xb), ws, r0, rows)


cdef void _deltas(Net *net, const floating *P, floating *G, floating *T, floating *ws,
                  const floating *Xb, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """The delta rule over the ops in reverse, rows r0:r1, from the loss's dLoss/dZ in the
    last op's output (BatchNorm: the whole batch, its γ and β gradients on the way)."""
    cdef Py_ssize_t i, rows = r1 - r0
    cdef Op *op
    for i in range(net.n_ops - 1, -1, -1):
        op = &net.ops[i]
        if op.kind == OP_DENSE:
            dense_backward(op, P, ws, r0, rows)
        elif op.din < 0 and op.kind != OP_BATCHNORM:
            continue
        elif op.kind == OP_DROPOUT:
            if net.dropping:
                dropout_op_backward(op, ws, r0, rows)
        elif op.kind == OP_ACTIVATION:
            activation_backward(op, at(op.in_loc, ws, Xb), ws, r0, rows)
        elif op.kind == OP_BATCHNORM:
            batchnorm_backward(op, P, G, T, at(op.in_loc, ws, Xb), ws, rows)
        elif op.kind == OP_LAYERNORM:
            layernorm_backward(op, P, at(op.in_loc, ws, Xb), ws, r0, rows)
        elif op.kind == OP_RESIDUAL_ADD:
            residual_add_backward(op, ws, r0, rows)
        elif op.kind == OP_RESIDUAL_BEGIN:
            residual_begin_backward(op, &net.ops[op.partner], ws, r0, rows)


cdef void _param_grads(Net *net, floating *G, floating *ws, const floating *Xb, Py_ssize_t B,
                       int part, int n_parts) noexcept nogil:
    """Part ``part`` of ``n_parts`` of the gradients that need every row: each Dense
    layer's rows of dW (and, part 0, db), each LayerNorm's dγ, dβ (part 0). BatchNorm's
    came with its deltas."""
    cdef Py_ssize_t i
    cdef Op *op
    for i in range(net.n_ops):
        op = &net.ops[i]
        if op.kind == OP_DENSE:
            dense_param_grads(op, G, ws, at(op.in_loc, ws, Xb), B, part, n_parts)
        elif op.kind == OP_LAYERNORM and op.p0 >= 0 and part == 0:
            layernorm_param_grads(op, G, at(op.in_loc, ws, Xb), ws, B)


cdef void _forward_gemms(Net *net, const floating *P, floating *ws, const floating *Xb,
                         Py_ssize_t B) noexcept nogil:
    cdef Py_ssize_t i
    cdef Op *op
    for i in range(net.n_ops):
        op = &net.ops[i]
        if op.kind == OP_DENSE:
            blas_nn(at(op.in_loc, ws, Xb), P + op.p0, ws + op.out, <int> B, <int> op.n_in,
                    <int> op.n_out, <floating> 0)


cdef double _gradient_bound(Net *net, const floating *G, floating *ws, const floating *Xb,
                            Py_ssize_t B, double batch_max) noexcept nogil:
    """A bound on every parameter gradient of the batch before the sweep computes them:
    a Dense layer's dW and db each sum B products of an input (at most max|input|) and a
    delta (at most max|δ|); a LayerNorm's dγ and dβ sum B products of δ and x̂, and
    |x̂| <= sqrt(n); BatchNorm's exist already. inf if any of them is not finite.
    ``batch_max``: max|Xb|, the first op's input, if the gather measured it, else -1."""
    cdef Py_ssize_t i
    cdef Op *op
    cdef double bound = 0, part, deltas, inputs
    for i in range(net.n_ops):
        op = &net.ops[i]
        if op.kind == OP_DENSE or (op.kind == OP_LAYERNORM and op.p0 >= 0):
            deltas = max_magnitude(ws + op.dout, B * op.n_out)
            if op.kind == OP_LAYERNORM:
                inputs = sqrt(<double> op.n_in)
            elif op.in_loc == LOC_BATCH and batch_max >= 0:
                inputs = batch_max
            else:
                inputs = max_magnitude(at(op.in_loc, ws, Xb), B * op.n_in)
            if not (isfinite(deltas) and isfinite(inputs)):
                return INFINITY
            part = B * deltas * max(inputs, 1.0)
        elif op.kind == OP_BATCHNORM and op.p0 >= 0:
            part = max(max_magnitude(G + op.p0, op.n_in), max_magnitude(G + op.p1, op.n_in))
            if not isfinite(part):
                return INFINITY
        else:
            continue
        bound = max(bound, part)
    return bound


cdef inline bint _fusing_pays(Net *net, Py_ssize_t B, bint input_known) noexcept nogil:
    """True if _gradient_bound reads fewer values (every Dense layer's δ and input, B rows
    each, but the batch's if the gather measured it) than the pass over g it replaces.
    Narrow layers at large batches keep the separate step: fused, the tiny benchmark
    network ran 3% slower, and scikit-learn's digits defaults 3.6-3.7x faster than
    scikit-learn where the separate step gives 3.8x."""
    cdef Py_ssize_t i, reads = 0
    cdef Op *op
    for i in range(net.n_ops):
        op = &net.ops[i]
        if op.kind == OP_DENSE:
            reads += B * op.n_out
            if op.in_loc != LOC_BATCH or not input_known:
                reads += B * op.n_in
        elif op.p0 >= 0:
            reads += B * op.n_out
    return reads < net.n_params


cdef int _gradients_and_step(Net *net, const OptimizerStep *opt, floating *P, floating *G,
                             floating *S, floating *ws, const floating *Xb, Py_ssize_t B,
                             double batch_max, Bounds *bounds) noexcept nogil:
    """_param_grads then apply_rule, fused (_optim.pxd D): each op's parameters are stepped
    right after their gradients are computed, while those are in cache, and there is no
    pass over g for its bound. Returns 1, writing nothing, where apply_rule would.
    (Smaller blocks than a layer measured slower: each GEMM call packs δ again.)"""
    cdef Py_ssize_t i
    cdef Op *op
    cdef double moved
    cdef Bounds after
    after.params = 0.5 * (FLT_MAX if floating is float else DBL_MAX)
    if not bounded(opt, _gradient_bound(net, G, ws, Xb, B, batch_max), bounds, &after):
        _param_grads(net, G, ws, Xb, B, 0, 1)  # near overflow: the exact way
        return apply_rule(opt, P, G, S, net.n_params, net.n_weights, bounds)
    for i in range(net.n_ops):
        op = &net.ops[i]
        if op.kind == OP_DENSE:
            mm_tn(at(op.in_loc, ws, Xb), ws + op.dout, G + op.p0, <int> op.n_in, <int> B,
                  <int> op.n_out, <floating> 0)
            rule_range(opt, P, G, S, net.n_params, op.p0, op.n_in * op.n_out, True, True,
                       &moved)
            colsum(ws + op.dout, B, op.n_out, G + op.p1)
            rule_range(opt, P, G, S, net.n_params, op.p1, op.n_out, False, True, &moved)
        elif op.p0 >= 0:
            if op.kind == OP_LAYERNORM:
                layernorm_param_grads(op, G, at(op.in_loc, ws, Xb), ws, B)
            rule_range(opt, P, G, S, net.n_params, op.p0, op.n_in, False, True, &moved)
            rule_range(opt, P, G, S, net.n_params, op.p1, op.n_in, False, True, &moved)
    bounds[0] = after
    return 0


cdef void _update_running(Net *net, floating *R, const floating *T, Py_ssize_t B) noexcept nogil:
    """After an accepted training step: every BatchNorm's running statistics."""
    cdef Py_ssize_t i
    for i in range(net.n_ops):
        if net.ops[i].kind == OP_BATCHNORM:
            batchnorm_update_running(&net.ops[i], R, T, B)


cdef double _loss_and_backward(Net *net, const floating *P, floating *G, floating *T,
                               floating *ws, const floating *Xb, Py_ssize_t B,
                               const floating *Y, const Py_ssize_t *labels,
                               const Py_ssize_t *idx, const floating *weights, double *hits,
                               bint param_grads=True) noexcept nogil:
    """Forward, fused loss + output delta, and backward for one batch on this thread (the
    parameter sweep only if asked: _gradients_and_step does it otherwise); returns the
    mean (sample-weighted) loss and adds the batch's hits (_losses.pxd D); backward is
    skipped when the loss is not finite."""
    cdef Op *last = &net.ops[net.n_ops - 1]
    cdef double loss
    _forward(net, P, T, ws, Xb, 0, B, NULL)
    loss = weighted_loss_backward(net.loss, last.act, ws + last.out,
                                  ws + last.z if last.z >= 0 else NULL, Y, labels, idx,
                                  weights, B, last.n_out, B, hits) / B
    if isfinite(loss):
        _deltas(net, P, G, T, ws, Xb, 0, B)
        if param_grads:
            _param_grads(net, G, ws, Xb, B, 0, 1)
    return loss


cdef double _batch_gradients_parallel(Net *net, const floating *P, floating *G, floating *T,
                                      floating *ws, const floating *X, Py_ssize_t F,
                                      const Py_ssize_t *idx, Py_ssize_t start, Py_ssize_t B,
                                      const floating *Y, Py_ssize_t y_cols,
                                      const Py_ssize_t *labels, const floating *weights,
                                      int n_threads, double *hits) noexcept nogil:
    """The batch split over n_threads threads (BLAS must run single-threaded; row-local
    nets only): each takes a block of rows for gather, forward, loss and deltas, then a
    block of every dW's rows. Returns the mean loss and adds the hits; gradients are left in
    G (garbage if the loss is not finite)."""
    cdef Op *last = &net.ops[net.n_ops - 1]
    cdef const floating *Xb = ws if idx != NULL else X + start * F
    cdef double loss = 0, all_hits = 0, thread_hits
    cdef Py_ssize_t t, r0, r1
    for t in prange(n_threads, num_threads=n_threads, schedule="static"):
        r0 = B * t // n_threads
        r1 = B * (t + 1) // n_threads
        thread_hits = 0
        if idx != NULL:
            gather(X, idx + r0, r1 - r0, F, ws + r0 * F)
        _forward(net, P, T, ws, Xb, r0, r1, NULL)
        if idx != NULL:
            loss += weighted_loss_backward(net.loss, last.act, ws + last.out + r0 * last.n_out,
                                           ws + last.z + r0 * last.n_out if last.z >= 0 else NULL,
                                           Y, labels, idx + r0, weights,
                                           r1 - r0, last.n_out, B, &thread_hits)
        else:
            loss += weighted_loss_backward(
                net.loss, last.act, ws + last.out + r0 * last.n_out,
                ws + last.z + r0 * last.n_out if last.z >= 0 else NULL,
                Y + (start + r0) * y_cols if Y != NULL else NULL,
                labels + start + r0 if labels != NULL else NULL, NULL,
                weights + start + r0 if weights != NULL else NULL, r1 - r0, last.n_out, B,
                &thread_hits)
        all_hits += thread_hits
        _deltas(net, P, G, T, ws, Xb, r0, r1)
    hits[0] += all_hits
    if not isfinite(loss):
        return loss
    for t in prange(n_threads, num_threads=n_threads, schedule="static"):
        _param_grads(net, G, ws, Xb, B, <int> t, n_threads)
    return loss / B


cdef enum:
    TEL_GRAD_NORM = 0     # ||dW|| of the batch, before clipping
    TEL_WEIGHT_NORM = 1   # ||W|| before the update
    TEL_UPDATE_NORM = 2   # ||ΔW|| of the update
    TEL_UNITS = 3         # dead (relu family) or saturated (sigmoid, tanh) fraction; NaN else
    N_TEL = 4


cdef double _unit_fraction(const floating *A__bo, Py_ssize_t B, Py_ssize_t O,
                           int act) noexcept nogil:
    """Relu family: the fraction of units that output <= 0 for every row of the batch
    ("dead"). Sigmoid/tanh: the fraction of outputs within 0.01 of an asymptote."""
    cdef Py_ssize_t i, j, count = 0
    if act == ACT_RELU or act == ACT_LEAKY_RELU:
        for j in range(O):
            for i in range(B):
                if A__bo[i * O + j] > 0:
                    break
            else:
                count += 1
        return <double> count / O
    if act == ACT_SIGMOID:
        for i in range(B * O):
            count += A__bo[i] < 0.01 or A__bo[i] > 0.99
        return <double> count / (B * O)
    if act == ACT_TANH:
        for i in range(B * O):
            count += A__bo[i] < -0.99 or A__bo[i] > 0.99
        return <double> count / (B * O)
    return NAN


cdef int _step_with_telemetry(Net *net, OptimizerStep *opt, floating *P, floating *G,
                              floating *S, floating *ws, Py_ssize_t B, Bounds *bounds,
                              double *tel) noexcept nogil:
    """apply_update, recording per-Dense-layer figures (tel: n_dense x N_TEL) on the way."""
    cdef Py_ssize_t i, l = 0, n
    cdef Op *op
    for i in range(net.n_ops):
        op = &net.ops[i]
        if op.kind != OP_DENSE:
            continue
        tel[l * N_TEL + TEL_GRAD_NORM] = l2_norm(G + op.p0, op.n_in * op.n_out)
        tel[l * N_TEL + TEL_UNITS] = (_unit_fraction(ws + op.out, B, op.n_out, op.act)
                                      if i < net.n_ops - 1 else NAN)
        l += 1
    if transform_gradients(opt, G, P, net.n_params, net.n_weights):
        return 1
    l = 0
    for i in range(net.n_ops):
        op = &net.ops[i]
        if op.kind != OP_DENSE:
            continue
        n = op.n_in * op.n_out
        tel[l * N_TEL + TEL_WEIGHT_NORM] = l2_norm(P + op.p0, n)
        tel[l * N_TEL + TEL_UPDATE_NORM] = update_norm(opt, P, G, S, net.n_params, op.p0, n)
        l += 1
    return apply_rule(opt, P, G, S, net.n_params, net.n_weights, bounds)


cdef Py_ssize_t _n_dense(Net *net) noexcept nogil:
    cdef Py_ssize_t i, count = 0
    for i in range(net.n_ops):
        count += net.ops[i].kind == OP_DENSE
    return count


# ---------------------------------------------------------------- entry points

cdef _check_buffers(Net *net, Py_ssize_t n_grads, Py_ssize_t n_stats):
    if n_grads != net.n_params or n_stats != net.n_stats:
        raise ValueError("plan buffers have inconsistent lengths")


def train_epoch(plan, const floating[:, ::1] X, const floating[:, ::1] Y,
                const Py_ssize_t[::1] labels, const Py_ssize_t[::1] order,
                Py_ssize_t batch_size, optimizer, const double[::1] rates,
                long long first_step, Py_ssize_t row0=0, Py_ssize_t row1=-1,
                int n_threads=1, double[:, ::1] telemetry=None,
                const floating[::1] sample_weight=None, long long training_step=0):
    """Run the mini-batches of rows row0:row1 (row1 = -1: to the end) of one pass over
    ``order`` (rows of X; empty = rows in order), in batches starting at row0: a whole epoch
    in one call, or in chunks whose bounds are multiples of batch_size.

    ``optimizer`` is a fastbp optimizer (its settings are read once); batch k uses learning
    rate ``rates[k]`` and is update number ``first_step + k + 1`` (Adam's bias correction).

    With n_threads > 1 each batch is split over that many threads (OpenMP), which call BLAS
    concurrently: the caller must have set BLAS to one thread. A network with BatchNorm
    (whose statistics need the whole batch) runs on one thread.

    ``telemetry`` (n_dense x 4), if given, receives per Dense layer for the call's last
    batch: the weight gradient's norm (before clipping), the weights' norm, the update's
    norm, and the fraction of dead (relu family) or saturated (sigmoid, tanh) units (NaN
    otherwise). ``sample_weight`` (one finite value >= 0 per row of X), if given, weights
    each row's loss and gradient: a batch's loss is Σ w·loss / rows.

    Dropout ops drop on every batch: batch k draws the masks of training step
    ``training_step + k`` (plan.training_steps, the model's count of training batches) from
    ``plan.dropout_seed``. BatchNorm ops use each batch's statistics and, once its update
    is accepted, move their running statistics.

    Returns ``(status, loss_sum, n_batches, hits)``: loss_sum is Σ batch_mean·batch_rows over
    the completed batches, hits their (sample-weighted) count of correct predictions before
    each batch's update (classification losses; 0 otherwise; see _losses.pxd D). A batch
    whose loss or update is non-finite is not applied: training stops there with the
    parameters, running statistics and optimizer state of the batch before.
    """
    cdef Py_ssize_t n_rows = order.shape[0] if order.shape[0] > 0 else X.shape[0]
    cdef Py_ssize_t start, end, B, r, n_batches = 0, n_state
    cdef const Py_ssize_t *idx
    cdef const Py_ssize_t *order_p = _iptr(order)
    cdef const floating *Xb
    cdef double loss, loss_sum = 0, hits = 0, batch_hits, batch_max = -1
    cdef int status = STATUS_OK, refused
    cdef bint fused_step
    cdef const floating *weights_p = NULL
    cdef OptimizerStep opt
    cdef Bounds bounds
    cdef floating[::1] params = plan.params, grads = plan.grads, state = plan.state
    cdef floating[::1] stats = plan.stats, scratch = plan.scratch, workspace = plan.workspace
    cdef floating *P = _ptr(params)
    cdef floating *G = _ptr(grads)
    cdef floating *S = _ptr(state)
    cdef floating *R = _ptr(stats)
    cdef floating *T = _ptr(scratch)
    cdef floating *ws = _ptr(workspace)
    cdef Net net = _unpack(plan, params.shape[0], workspace.shape[0])
    try:
        _check_buffers(&net, grads.shape[0], stats.shape[0])
        n_state = state.shape[0]
        opt = _read_optimizer(optimizer, params.shape[0], n_state)
        end = n_rows if row1 < 0 else row1
        if not 0 <= row0 < end <= n_rows:
            raise ValueError("rows %d:%d are not a non-empty range of the %d rows"
                             % (row0, end, n_rows))
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if rates.shape[0] < (end - row0 + batch_size - 1) // batch_size:
            raise ValueError("rates must hold one learning rate per batch (%d), not %d"
                             % ((end - row0 + batch_size - 1) // batch_size, rates.shape[0]))
        if first_step < 0 or training_step < 0:
            raise ValueError("first_step and training_step must be >= 0")
        if n_threads < 1:
            raise ValueError("n_threads must be >= 1")
        if sample_weight is not None and sample_weight.shape[0] != X.shape[0]:
            raise ValueError("sample_weight has %d entries, X has %d rows"
                             % (sample_weight.shape[0], X.shape[0]))
        if sample_weight is not None and X.shape[0] > 0:
            weights_p = &sample_weight[0]
        if telemetry is not None and (telemetry.shape[0] != _n_dense(&net)
                                      or telemetry.shape[1] != N_TEL):
            raise ValueError("telemetry must have shape (%d, %d)" % (_n_dense(&net), N_TEL))
        _check_batch_args(&net, X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                          labels.shape[0], min(batch_size, end - row0))
        _check_training_rows(&net, min(batch_size, end - row0))
        if (end - row0) % batch_size != 0:
            _check_training_rows(&net, (end - row0) % batch_size)
        if order.shape[0] > 0:
            for r in range(row0, end):
                if order[r] < 0 or order[r] >= X.shape[0]:
                    raise ValueError("order holds row %d, X has %d rows" % (order[r], X.shape[0]))
        if not net.row_local:
            n_threads = 1
        with nogil:
            measure_bounds(P, S, params.shape[0], n_slots(&opt), &bounds)
            start = row0
            while start < end:
                B = min(batch_size, end - start)
                idx = order_p + start if order_p != NULL else NULL
                batch_hits = 0
                _set_mode(&net, True, training_step + n_batches)
                fused_step = False
                if n_threads > 1 and B >= n_threads:
                    loss = _batch_gradients_parallel(
                        &net, P, G, T, ws, &X[0, 0], X.shape[1], idx, start, B,
                        _cptr2(Y), Y.shape[1], _iptr(labels), weights_p, n_threads,
                        &batch_hits)
                else:
                    if idx != NULL:
                        batch_max = gather(&X[0, 0], idx, B, X.shape[1], ws)
                        Xb = ws
                        if net.ops[0].kind != OP_DENSE:
                            batch_max = -1  # the first Dense reads another op's output
                    else:
                        batch_max = -1
                        Xb = &X[start, 0]
                    # Telemetry wants g whole before the step, clipping and L1 too.
                    fused_step = (not transforms_gradients(&opt)
                                  and not (telemetry is not None and start + B >= end)
                                  and _fusing_pays(&net, B, batch_max >= 0))
                    loss = _loss_and_backward(
                        &net, P, G, T, ws, Xb, B,
                        _cptr2(Y) + (0 if idx != NULL or Y.shape[0] == 0 else start * Y.shape[1]),
                        _iptr(labels) + (0 if idx != NULL or labels.shape[0] == 0 else start),
                        idx, weights_p + (start if idx == NULL and weights_p != NULL else 0),
                        &batch_hits, not fused_step)
                if idx != NULL and start + B < end:
                    # Start loading the next batch's rows now, so they arrive while the
                    # parameter gradients and the step run (measured against a prefetch
                    # right after the gather: 5 µs a step faster on the small benchmark
                    # network, 55 on the medium one).
                    prefetch_rows(&X[0, 0], idx + B, min(batch_size, end - start - B),
                                  X.shape[1])
                if not isfinite(loss):
                    status = STATUS_NONFINITE_LOSS
                    break
                opt.lr = rates[n_batches]
                opt.step = first_step + n_batches + 1
                if telemetry is not None and start + B >= end:
                    refused = _step_with_telemetry(&net, &opt, P, G, S, ws, B, &bounds,
                                                   &telemetry[0, 0])
                elif fused_step:
                    refused = _gradients_and_step(&net, &opt, P, G, S, ws, Xb, B, batch_max,
                                                  &bounds)
                else:
                    refused = apply_update(&opt, P, G, S, params.shape[0], net.n_weights,
                                           &bounds)
                if refused:
                    status = STATUS_NONFINITE_PARAMS
                    break
                if not net.row_local:
                    _update_running(&net, R, T, B)
                loss_sum += loss * B
                hits += batch_hits
                n_batches += 1
                start += B
    finally:
        free(net.ops)
    return status, loss_sum, n_batches, hits


def gradients(plan, const floating[:, ::1] X, const floating[:, ::1] Y,
              const Py_ssize_t[::1] labels, double weight_decay,
              const floating[::1] sample_weight=None, long long dropout_step=-1):
    """Loss (+ weight_decay/2·ΣW²) over all rows of X as one batch; gradients into plan.grads.
    BatchNorm ops use the batch's statistics (as in training; the running ones do not
    move). Without dropout (dropout_step -1), as prediction sees the network otherwise;
    with dropout_step >= 0, through the dropout masks that training step draws (as
    train_epoch's)."""
    cdef Py_ssize_t i
    cdef floating wd = <floating> weight_decay
    cdef double loss, penalty = 0, hits = 0
    cdef const floating *weights_p = NULL
    cdef floating[::1] params = plan.params, grads = plan.grads, stats = plan.stats
    cdef floating[::1] scratch = plan.scratch, workspace = plan.workspace
    cdef floating *P = _ptr(params)
    cdef floating *G = _ptr(grads)
    cdef Net net = _unpack(plan, params.shape[0], workspace.shape[0])
    try:
        _check_buffers(&net, grads.shape[0], stats.shape[0])
        _check_batch_args(&net, X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                          labels.shape[0], X.shape[0])
        _check_training_rows(&net, X.shape[0])
        if sample_weight is not None:
            if sample_weight.shape[0] != X.shape[0]:
                raise ValueError("sample_weight has %d entries, X has %d rows"
                                 % (sample_weight.shape[0], X.shape[0]))
            weights_p = &sample_weight[0]
        _set_mode(&net, True, dropout_step)
        with nogil:
            loss = _loss_and_backward(&net, P, G, _ptr(scratch), _ptr(workspace), &X[0, 0],
                                      X.shape[0],
                                      _cptr2(Y), _iptr(labels), NULL, weights_p, &hits)
            if wd != 0:
                for i in range(net.n_weights):
                    G[i] += wd * P[i]
                    penalty += <double> P[i] * P[i]
    finally:
        free(net.ops)
    return loss + 0.5 * weight_decay * penalty


def forward(plan, const floating[:, ::1] X, floating[:, ::1] out, bint apply_output):
    """Write the network's output for every row of X into ``out`` (n_rows x n_outputs), in
    chunks of the workspace capacity; with apply_output, softmax/sigmoid as the loss implies.
    BatchNorm ops use their running statistics."""
    cdef Py_ssize_t start, B, n_out
    cdef floating[::1] params = plan.params, stats = plan.stats, scratch = plan.scratch
    cdef floating[::1] workspace = plan.workspace
    cdef floating *P = _ptr(params)
    cdef floating *R = _ptr(stats)
    cdef floating *T = _ptr(scratch)
    cdef floating *ws = _ptr(workspace)
    cdef Net net = _unpack(plan, params.shape[0], workspace.shape[0])
    try:
        _check_buffers(&net, params.shape[0], stats.shape[0])
        n_out = net.ops[net.n_ops - 1].n_out
        if X.shape[1] != net.ops[0].n_in:
            raise ValueError("X has %d features, the model expects %d" % (X.shape[1], net.ops[0].n_in))
        if out.shape[0] != X.shape[0] or out.shape[1] != n_out:
            raise ValueError("out must have shape (%d, %d)" % (X.shape[0], n_out))
        _check_batch_args(&net, 0, X.shape[1], 0, n_out, 0, min(net.capacity, max(X.shape[0], 1)))
        with nogil:
            _prepare_inference(&net, P, R, T)
            start = 0
            while start < X.shape[0]:
                B = min(net.capacity, X.shape[0] - start)
                _forward(&net, P, T, ws, &X[start, 0], 0, B, &out[start, 0])
                if apply_output:
                    output_activation(net.loss, &out[start, 0], B, n_out)
                start += B
    finally:
        free(net.ops)


def evaluate(plan, const floating[:, ::1] X, const floating[:, ::1] Y,
             const Py_ssize_t[::1] labels, const floating[::1] sample_weight=None):
    """Loss and hits (_losses.pxd D) over all rows of X, in chunks of the workspace capacity:
    returns ``(Σ w·loss / n_rows, Σ w·hits)`` with w = ``sample_weight`` (one per row; all 1
    if None), fit's definition of the loss, with no penalty. BatchNorm ops use their
    running statistics."""
    cdef Py_ssize_t start, B, n_out, y_cols = Y.shape[1]
    cdef double total = 0, hits = 0
    cdef const floating *weights_p = NULL
    cdef Op *last
    cdef floating[::1] params = plan.params, stats = plan.stats, scratch = plan.scratch
    cdef floating[::1] workspace = plan.workspace
    cdef floating *P = _ptr(params)
    cdef floating *R = _ptr(stats)
    cdef floating *T = _ptr(scratch)
    cdef floating *ws = _ptr(workspace)
    cdef Net net = _unpack(plan, params.shape[0], workspace.shape[0])
    try:
        _check_buffers(&net, params.shape[0], stats.shape[0])
        last = &net.ops[net.n_ops - 1]
        n_out = last.n_out
        if X.shape[0] == 0:
            raise ValueError("no rows to evaluate")
        if sample_weight is not None:
            if sample_weight.shape[0] != X.shape[0]:
                raise ValueError("sample_weight has %d entries, X has %d rows"
                                 % (sample_weight.shape[0], X.shape[0]))
            weights_p = &sample_weight[0]
        _check_batch_args(&net, X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                          labels.shape[0], min(net.capacity, X.shape[0]))
        with nogil:
            _prepare_inference(&net, P, R, T)
            start = 0
            while start < X.shape[0]:
                B = min(net.capacity, X.shape[0] - start)
                _forward(&net, P, T, ws, &X[start, 0], 0, B, NULL)
                total += weighted_loss_backward(
                    net.loss, last.act, ws + last.out, ws + last.z if last.z >= 0 else NULL,
                    _cptr2(Y) + (start * y_cols if Y.shape[0] > 0 else 0),
                    _iptr(labels) + (start if labels.shape[0] > 0 else 0),
                    NULL, weights_p + (start if weights_p != NULL else 0), B, n_out, B, &hits)
                start += B
    finally:
        free(net.ops)
    return total / X.shape[0], hits


def gemm_roofline(plan, const floating[:, ::1] X, Py_ssize_t batch_size):
    """Run only the GEMMs of one training epoch over X (rows in order), through the same BLAS
    wrappers and buffers as train_epoch: per batch, each Dense layer's forward Z = A·W, its
    dW = Aᵀ·dZ and, where backward needs it, dA = dZ·Wᵀ. The benchmarks time this as the
    limit ("roofline") that the full training step is measured against; results are junk.
    Always BLAS (blas_*), also where training hands small products to its own C loops."""
    cdef Py_ssize_t start, B, i
    cdef Op *op
    cdef floating[::1] params = plan.params, grads = plan.grads, workspace = plan.workspace
    cdef floating *P = _ptr(params)
    cdef floating *G = _ptr(grads)
    cdef floating *ws = _ptr(workspace)
    cdef Net net = _unpack(plan, params.shape[0], workspace.shape[0])
    try:
        _check_buffers(&net, grads.shape[0], net.n_stats)
        _check_batch_args(&net, 0, X.shape[1], 0, net.ops[net.n_ops - 1].n_out, 0,
                          min(batch_size, X.shape[0]))
        with nogil:
            start = 0
            while start < X.shape[0]:
                B = min(batch_size, X.shape[0] - start)
                _forward_gemms(&net, P, ws, &X[start, 0], B)
                for i in range(net.n_ops - 1, -1, -1):
                    op = &net.ops[i]
                    if op.kind != OP_DENSE:
                        continue
                    blas_tn(at(op.in_loc, ws, &X[start, 0]), ws + op.dout, G + op.p0,
                            <int> op.n_in, <int> B, <int> op.n_out, <floating> 0)
                    if op.din >= 0:
                        blas_nt(ws + op.dout, P + op.p0, ws + op.din, <int> B, <int> op.n_out,
                                <int> op.n_in, <floating> 0)
                start += B
    finally:
        free(net.ops)


include "_rows.pxi"
include "_twins.pxi"

# A. Invariants: Python owns every buffer; this module only reads a compiled plan
#    (fastbp.plan.Plan) and the arrays it is handed. All arrays are C-contiguous and of the
#    plan's dtype, X too unless it is CSR (fastbp.sparse.SparseRows; _op_sparse.pxd); the
#    Python layer validates values (labels in range, finite inputs) and the entry points
#    here re-check every size, offset and CSR index that could index out of bounds.
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
from cython.parallel cimport prange, parallel
from libc.math cimport isfinite, sqrt, NAN, INFINITY
from libc.stdlib cimport malloc, free
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memset

from _blas cimport (mm_nn, mm_nt, mm_tn, blas_nn, blas_nt, blas_tn, nn_by_blas, nt_by_blas,
                   SMALL_GEMM_MACS as _SMALL_GEMM_MACS, FASTBP_SMALL_GEMM,
                   fastbp_small_gemm_on)
from _activations cimport (bias_act, act_backward, act_needs_z, LEAKY_SLOPE,
                           ELU_ALPHA as _ELU_ALPHA, ACT_IDENTITY, ACT_SIGMOID, ACT_TANH,
                           ACT_RELU, ACT_LEAKY_RELU, ACT_GELU, ACT_SOFTPLUS, ACT_ELU, ACT_SWISH)
from _losses cimport (loss_backward, weighted_loss_backward, output_activation, HUBER_DELTA as _HUBER_DELTA,
                      LOSS_MSE, LOSS_CROSS_ENTROPY, LOSS_BINARY_CROSS_ENTROPY, LOSS_HUBER,
                      LOSS_MAE, LOSS_POISSON)
from _optim cimport (OptimizerStep, Bounds, apply_update, apply_rule, transform_gradients,
                     transforms_gradients, update_norm, l2_norm, measure_bounds,
                     max_magnitude, n_slots, rule_range, bounded,
                     OPT_SGD, OPT_ADAM, OPT_ADAMW, OPT_RMSPROP, OPT_ADAGRAD)
from _ops cimport (Op, Net, SparseInput, at, LOC_BATCH, OP_DENSE, OP_DROPOUT, OP_ACTIVATION, OP_BATCHNORM,
                   OP_LAYERNORM, OP_RESIDUAL_BEGIN, OP_RESIDUAL_ADD)
from _gather cimport gather, prefetch_rows, prefetch_range, GATHER_MAX_ROW_LENGTH
from _op_dense cimport (dense_forward, dense_backward, dense_param_grads, colsum, dense_delta,
                        dense_forward_cols, dense_input_grad_cols)
from _op_dropout cimport (dropout_op_forward, dropout_op_backward, dropout_forward,
                          dropout_backward, dropout_keys, draw as _draw)
from _op_activation cimport activation_forward, activation_backward, act_copy
from _op_batchnorm cimport (batchnorm_forward_train, batchnorm_forward_infer,
                            batchnorm_prepare_inference, batchnorm_backward,
                            batchnorm_update_running)
from _op_layernorm cimport layernorm_forward, layernorm_backward, layernorm_param_grads
from _op_sparse cimport (sparse_dense_forward, sparse_weight_grads, sparse_max_magnitude,
                         sparse_row, sparse_weight_step, sparse_batch_entries,
                         SPARSE_BLOCK_ELEMENTS)
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
    "LOSS_MAE": LOSS_MAE, "LOSS_POISSON": LOSS_POISSON,
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


include "_net.pxi"
include "_step.pxi"
include "_team.pxi"


# ---------------------------------------------------------------- entry points

cdef _check_buffers(Net *net, Py_ssize_t n_grads, Py_ssize_t n_stats):
    if n_grads != net.n_params or n_stats != net.n_stats:
        raise ValueError("plan buffers have inconsistent lengths")


def train_epoch(plan, X, const floating[:, ::1] Y,
                const Py_ssize_t[::1] labels, const Py_ssize_t[::1] order,
                Py_ssize_t batch_size, optimizer, const double[::1] rates,
                long long first_step, Py_ssize_t row0=0, Py_ssize_t row1=-1,
                int n_threads=1, double[:, ::1] telemetry=None,
                const floating[::1] sample_weight=None, long long training_step=0,
                bint by_weight_sum=False, double loss_sum=0, double hits=0,
                double[::1] bounds=None):
    """Run the mini-batches of rows row0:row1 (row1 = -1: to the end) of one pass over
    ``order`` (rows of X; empty = rows in order), in batches starting at row0: a whole epoch
    in one call, or in chunks whose bounds are multiples of batch_size. X is a C-contiguous
    array or a scipy CSR matrix (_bind_input; the first op must then be Dense).

    ``optimizer`` is a fastbp optimizer (its settings are read once); batch k uses learning
    rate ``rates[k]`` and is update number ``first_step + k + 1`` (Adam's bias correction).

    A team of n_threads threads (OpenMP) runs every batch, each op split between them
    (_team.pxi); they call BLAS concurrently, so with n_threads > 1 the caller must have set
    BLAS to one thread. The result does not depend on n_threads.

    ``telemetry`` (n_dense x 4), if given, receives per Dense layer for the call's last
    batch: the weight gradient's norm (before clipping), the weights' norm, the update's
    norm, and the fraction of dead (relu family) or saturated (sigmoid, tanh) units (NaN
    otherwise). ``sample_weight`` (one finite value >= 0 per row of X), if given, weights
    each row's loss and gradient: a batch's loss is Σ w·loss / rows, or with
    ``by_weight_sum`` Σ w·loss / Σ w (scikit-learn's rule), its gradient and the optimizer's
    weight_decay term divided the same way (a batch of weight 0 adds neither).

    Dropout ops drop on every batch: batch k draws the masks of training step
    ``training_step + k`` (plan.training_steps, the model's count of training batches) from
    ``plan.dropout_seed``. BatchNorm ops use each batch's statistics and, once its update
    is accepted, move their running statistics.

    Returns ``(status, loss_sum, n_batches, hits)``: loss_sum is the given ``loss_sum`` plus
    Σ batch_mean·batch_rows over the completed batches, hits the given ``hits`` plus their
    (sample-weighted) count of correct predictions before each batch's update
    (classification losses; 0 otherwise; see _losses.pxd D). Passing the running totals in
    adds every batch in order, so an epoch run in chunks reports the loss of one call. A batch
    whose loss or update is non-finite is not applied: training stops there with the
    parameters, running statistics and optimizer state of the batch before.

    ``bounds`` (4 values), if given, carries the overflow bounds on max|parameter| and each
    state slot from call to call, as apply_step's do: bounds[0] < 0 measures them first (a
    pass over the parameters and the state: 3% of the large benchmark network's epoch when
    every chunk measured), and the call leaves the bounds after its last step there. Only a
    caller that knows nothing else wrote the parameters or state in between may pass them on.
    """
    cdef Py_ssize_t end, r, n_state, tiles, n_rows
    cdef Py_ssize_t shape[2]
    cdef const Py_ssize_t *order_p = _iptr(order)
    cdef const floating *weights_p = NULL
    cdef OptimizerStep opt
    cdef Team team
    cdef SparseInput sparse
    cdef floating[::1] params = plan.params, grads = plan.grads, state = plan.state
    cdef floating[::1] stats = plan.stats, scratch = plan.scratch, workspace = plan.workspace
    cdef floating *P = _ptr(params)
    cdef floating *G = _ptr(grads)
    cdef floating *S = _ptr(state)
    cdef floating *R = _ptr(stats)
    cdef floating *T = _ptr(scratch)
    cdef floating *ws = _ptr(workspace)
    cdef const floating *X0 = _bind_input(X, P, &sparse, shape)
    cdef Net net = _unpack(plan, params.shape[0], workspace.shape[0], &sparse)
    n_rows = order.shape[0] if order.shape[0] > 0 else shape[0]
    team.tile_loss = team.maxima = NULL
    team.sparse_index = NULL
    team.sparse_values = NULL
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
        if sample_weight is not None and sample_weight.shape[0] != shape[0]:
            raise ValueError("sample_weight has %d entries, X has %d rows"
                             % (sample_weight.shape[0], shape[0]))
        if sample_weight is not None and shape[0] > 0:
            weights_p = &sample_weight[0]
        if telemetry is not None and (telemetry.shape[0] != _n_dense(&net)
                                      or telemetry.shape[1] != N_TEL):
            raise ValueError("telemetry must have shape (%d, %d)" % (_n_dense(&net), N_TEL))
        if bounds is not None and bounds.shape[0] != 4:
            raise ValueError("bounds must hold 4 values")
        _check_batch_args(&net, shape[0], shape[1], Y.shape[0], Y.shape[1],
                          labels.shape[0], min(batch_size, end - row0))
        _check_training_rows(&net, min(batch_size, end - row0))
        if (end - row0) % batch_size != 0:
            _check_training_rows(&net, (end - row0) % batch_size)
        if order.shape[0] > 0:
            for r in range(row0, end):
                if order[r] < 0 or order[r] >= shape[0]:
                    raise ValueError("order holds row %d, X has %d rows" % (order[r], shape[0]))
        tiles = (min(batch_size, end - row0) + ROW_TILE - 1) // ROW_TILE
        team.tile_loss = <double *> malloc(2 * tiles * sizeof(double))
        team.maxima = <double *> malloc(n_threads * _team_slots(&net) * sizeof(double))
        if team.tile_loss == NULL or team.maxima == NULL:
            raise MemoryError()
        if sparse.indptr != NULL:
            _sparse_scratch(&team, &sparse, order_p, row0, end, batch_size, net.ops[0].n_in,
                            net.ops[0].n_out, n_threads, sizeof(floating))
        team.tile_hits = team.tile_loss + tiles
        team.net, team.opt, team.rates = &net, &opt, &rates[0]
        team.row0, team.end, team.batch_size = row0, end, batch_size
        team.n_features, team.y_cols = shape[1], Y.shape[1]
        team.first_step, team.training_step = first_step, training_step
        team.by_weights = by_weight_sum
        team.telemetry = &telemetry[0, 0] if telemetry is not None else NULL
        team.status, team.n_batches, team.loss_sum, team.hits = STATUS_OK, 0, loss_sum, hits
        with nogil:
            if bounds is not None and bounds[0] >= 0:
                team.bounds.params, team.bounds.state1 = bounds[0], bounds[1]
                team.bounds.state2, team.bounds.state3 = bounds[2], bounds[3]
            else:
                measure_bounds(P, S, params.shape[0], n_slots(&opt), &team.bounds)
            _set_mode(&net, True, training_step)
            with parallel(num_threads=n_threads):
                _team_epoch(&team, P, G, S, R, T, ws, X0, _cptr2(Y), _iptr(labels),
                            order_p, weights_p)
            if bounds is not None:
                bounds[0], bounds[1] = team.bounds.params, team.bounds.state1
                bounds[2], bounds[3] = team.bounds.state2, team.bounds.state3
    finally:
        free(net.ops)
        free(team.tile_loss)
        free(team.maxima)
        free(team.sparse_index)
        free(team.sparse_values)
    return team.status, team.loss_sum, team.n_batches, team.hits


def gradients(plan, X, const floating[:, ::1] Y,
              const Py_ssize_t[::1] labels, double weight_decay,
              const floating[::1] sample_weight=None, long long dropout_step=-1,
              bint by_weight_sum=False):
    """Loss (+ weight_decay/2·ΣW²) over all rows of X as one batch; gradients into plan.grads.
    With ``by_weight_sum`` and sample weights, the loss, its gradient and the weight_decay
    term are divided by Σ w instead of the rows (scikit-learn's rule; see train_epoch).
    BatchNorm ops use the batch's statistics (as in training; the running ones do not
    move). Without dropout (dropout_step -1), as prediction sees the network otherwise;
    with dropout_step >= 0, through the dropout masks that training step draws (as
    train_epoch's)."""
    cdef Py_ssize_t i
    cdef floating wd = <floating> weight_decay
    cdef double loss, penalty = 0, hits = 0, scale = 1.0
    cdef const floating *weights_p = NULL
    cdef floating[::1] params = plan.params, grads = plan.grads, stats = plan.stats
    cdef floating[::1] scratch = plan.scratch, workspace = plan.workspace
    cdef floating *P = _ptr(params)
    cdef floating *G = _ptr(grads)
    cdef Py_ssize_t shape[2]
    cdef SparseInput sparse
    cdef const floating *X0 = _bind_input(X, P, &sparse, shape)
    cdef Net net = _unpack(plan, params.shape[0], workspace.shape[0], &sparse)
    try:
        _check_buffers(&net, grads.shape[0], stats.shape[0])
        _check_batch_args(&net, shape[0], shape[1], Y.shape[0], Y.shape[1],
                          labels.shape[0], shape[0])
        _check_training_rows(&net, shape[0])
        if sample_weight is not None:
            if sample_weight.shape[0] != shape[0]:
                raise ValueError("sample_weight has %d entries, X has %d rows"
                                 % (sample_weight.shape[0], shape[0]))
            weights_p = &sample_weight[0]
            if by_weight_sum:
                scale = _weight_scale(weights_p, NULL, 0, shape[0])
                wd = <floating> (weight_decay * scale)
        _set_mode(&net, True, dropout_step)
        with nogil:
            loss = _loss_and_backward(&net, P, G, _ptr(scratch), _ptr(workspace), X0,
                                      shape[0], _cptr2(Y), _iptr(labels), NULL, weights_p,
                                      scale, &hits)
            if wd != 0:
                for i in range(net.n_weights):
                    G[i] += wd * P[i]
                    penalty += <double> P[i] * P[i]
    finally:
        free(net.ops)
    return loss + 0.5 * weight_decay * scale * penalty


def forward(plan, X, floating[:, ::1] out, bint apply_output,
            int n_threads=1):
    """Write the network's output for every row of X into ``out`` (n_rows x n_outputs), in
    chunks of the workspace capacity, on a team of n_threads (BLAS at one thread where
    that is more than one, as train_epoch); with apply_output, softmax/sigmoid as the loss
    implies. BatchNorm ops use their running statistics."""
    cdef Py_ssize_t n_out
    cdef floating[::1] params = plan.params, stats = plan.stats, scratch = plan.scratch
    cdef floating[::1] workspace = plan.workspace
    cdef floating *P = _ptr(params)
    cdef floating *R = _ptr(stats)
    cdef floating *T = _ptr(scratch)
    cdef floating *ws = _ptr(workspace)
    cdef Py_ssize_t shape[2]
    cdef SparseInput sparse
    cdef const floating *X0 = _bind_input(X, P, &sparse, shape)
    cdef Net net = _unpack(plan, params.shape[0], workspace.shape[0], &sparse)
    try:
        _check_buffers(&net, params.shape[0], stats.shape[0])
        n_out = net.ops[net.n_ops - 1].n_out
        if shape[1] != net.ops[0].n_in:
            raise ValueError("X has %d features, the model expects %d" % (shape[1], net.ops[0].n_in))
        if out.shape[0] != shape[0] or out.shape[1] != n_out:
            raise ValueError("out must have shape (%d, %d)" % (shape[0], n_out))
        if n_threads < 1:
            raise ValueError("n_threads must be >= 1")
        _check_batch_args(&net, 0, shape[1], 0, n_out, 0, min(net.capacity, max(shape[0], 1)))
        if shape[0] == 0:
            return
        with nogil:
            _prepare_inference(&net, P, R, T)
            with parallel(num_threads=n_threads):
                _team_infer(&net, P, T, ws, X0, shape[0], &out[0, 0], apply_output,
                            NULL, 0, NULL, NULL, NULL, NULL, NULL)
    finally:
        free(net.ops)


def evaluate(plan, X, const floating[:, ::1] Y,
             const Py_ssize_t[::1] labels, const floating[::1] sample_weight=None,
             int n_threads=1):
    """Loss and hits (_losses.pxd D) over all rows of X, in chunks of the workspace capacity,
    on a team of n_threads (as forward): returns ``(Σ w·loss / n_rows, Σ w·hits)`` with w =
    ``sample_weight`` (one per row; all 1 if None), fit's definition of the loss, with no
    penalty, summed tile by tile in order whatever the team's size. BatchNorm ops use
    their running statistics."""
    cdef Py_ssize_t tiles
    cdef double total[2]
    cdef double *tile_loss = NULL
    cdef const floating *weights_p = NULL
    cdef floating[::1] params = plan.params, stats = plan.stats, scratch = plan.scratch
    cdef floating[::1] workspace = plan.workspace
    cdef floating *P = _ptr(params)
    cdef floating *R = _ptr(stats)
    cdef floating *T = _ptr(scratch)
    cdef floating *ws = _ptr(workspace)
    cdef Py_ssize_t shape[2]
    cdef SparseInput sparse
    cdef const floating *X0 = _bind_input(X, P, &sparse, shape)
    cdef Net net = _unpack(plan, params.shape[0], workspace.shape[0], &sparse)
    try:
        _check_buffers(&net, params.shape[0], stats.shape[0])
        if shape[0] == 0:
            raise ValueError("no rows to evaluate")
        if n_threads < 1:
            raise ValueError("n_threads must be >= 1")
        if sample_weight is not None:
            if sample_weight.shape[0] != shape[0]:
                raise ValueError("sample_weight has %d entries, X has %d rows"
                                 % (sample_weight.shape[0], shape[0]))
            weights_p = &sample_weight[0]
        _check_batch_args(&net, shape[0], shape[1], Y.shape[0], Y.shape[1],
                          labels.shape[0], min(net.capacity, shape[0]))
        tiles = (min(net.capacity, shape[0]) + ROW_TILE - 1) // ROW_TILE
        tile_loss = <double *> malloc(2 * tiles * sizeof(double))
        if tile_loss == NULL:
            raise MemoryError()
        total[0] = total[1] = 0
        with nogil:
            _prepare_inference(&net, P, R, T)
            with parallel(num_threads=n_threads):
                _team_infer(&net, P, T, ws, X0, shape[0], NULL, False, _cptr2(Y),
                            Y.shape[1], _iptr(labels), weights_p, tile_loss,
                            tile_loss + tiles, total)
    finally:
        free(net.ops)
        free(tile_loss)
    return total[0] / shape[0], total[1]


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


include "_shard.pxi"
include "_rows.pxi"
include "_twins.pxi"

# A. Invariants: Python owns every buffer; this module only reads a compiled plan
#    (fastbp.plan.Plan) and the arrays it is handed. All arrays are C-contiguous and of the
#    plan's dtype; the Python layer validates values (labels in range, finite inputs) and the
#    entry points here re-check every size and offset that could index out of bounds.
# B. Memory layout: params/grads/state are flat, all weights then all biases; layer l's weight
#    W__io is (n_in x n_out) row-major at offset w, its bias at offset b. The workspace holds,
#    for a capacity of C sample rows, C x width blocks: the gathered input batch (n_in of
#    layer 0), each layer's output (a), each hidden layer's delta (d; the last layer's
#    delta overwrites its output, which nothing needs after the loss), and last, only for
#    layers whose activation's derivative needs it (gelu, swish), the pre-activation (z):
#    other networks keep exactly the layout and work they had; after those, for each layer
#    whose input is dropped out (plan column drop > 0), the dropped copy of its input (x;
#    see _dropout.pxd), which the layer's GEMM and dW read while training; prediction
#    reads the undropped output. Outputs stay intact
#    through backward, so deltas (row-local) and weight gradients (needing every row) can be
#    computed in two separate sweeps, each split across threads without overlap; a z block
#    is row-local like a, so threads taking rows r0:r1 of a also take rows r0:r1 of z.
# C. Why: one entry call runs every mini-batch of an epoch inside a single `nogil` block with
#    no allocation and no Python; errors become status codes raised once back in Python.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport isfinite, NAN, INFINITY
from libc.stdlib cimport malloc, free
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

from _blas cimport (mm_nn, mm_nt, mm_tn, mm_tn_rows, blas_nn, blas_nt, blas_tn,
                   SMALL_GEMM_MACS as _SMALL_GEMM_MACS, FASTBP_SMALL_GEMM,
                   fastbp_small_gemm_on)
from _activations cimport (bias_act, act_backward, act_needs_z, LEAKY_SLOPE,
                           ELU_ALPHA as _ELU_ALPHA, ACT_IDENTITY, ACT_SIGMOID, ACT_TANH,
                           ACT_RELU, ACT_LEAKY_RELU, ACT_GELU, ACT_SOFTPLUS, ACT_ELU, ACT_SWISH)
from _losses cimport (loss_backward, weighted_loss_backward, output_activation, HUBER_DELTA as _HUBER_DELTA,
                      LOSS_MSE, LOSS_CROSS_ENTROPY, LOSS_BINARY_CROSS_ENTROPY, LOSS_HUBER,
                      LOSS_MAE)
from _dropout cimport dropout_forward, dropout_backward, dropout_keys, draw as _draw
from _optim cimport (OptimizerStep, Bounds, apply_update, apply_rule, transform_gradients,
                     transforms_gradients, update_norm, l2_norm, measure_bounds,
                     max_magnitude, copy_max_magnitude, n_slots, rule_range, bounded,
                     OPT_SGD, OPT_ADAM, OPT_ADAMW, OPT_RMSPROP, OPT_ADAGRAD)
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
}
LEAKY_RELU_SLOPE = LEAKY_SLOPE
ELU_ALPHA = _ELU_ALPHA
HUBER_DELTA = _HUBER_DELTA

# Columns of plan.table, one row per Dense layer. COL_DROP: the dropout threshold of the
# layer's input, floor(rate·2³²) (0: no dropout; fastbp.plan.dropout_threshold).
cdef enum:
    COL_N_IN = 0
    COL_N_OUT = 1
    COL_ACT = 2
    COL_W = 3
    COL_B = 4
    COL_DROP = 5
    N_COLS = 6

cdef int INT_MAX = 2147483647


cdef struct Layer:
    Py_ssize_t n_in, n_out, w, b, a, d, z  # z = -1: the layer keeps no pre-activation
    Py_ssize_t x          # its dropped input's block; -1: no dropout on its input
    uint32_t drop         # an input element is dropped when its draw is below this
    double scale          # 1 / keep probability = 2³² / (2³² - drop)
    uint64_t keys         # this training step's mask keys (_draw_keys)
    int act

cdef struct Net:
    Layer *layers
    Py_ssize_t n_layers, n_params, n_weights, capacity
    int loss
    bint dropping         # training with dropout: layers with x >= 0 read their dropped input
    uint64_t seed         # plan.dropout_seed


# ---------------------------------------------------------------- plan unpacking (with GIL)

def workspace_row_length(const long long[:, ::1] table):
    """Workspace elements per sample row: layer-0 input, every output, every hidden delta,
    the pre-activation of each layer whose activation needs it (gelu, swish), and the
    dropped input of each layer with dropout on its input."""
    cdef Py_ssize_t l, total
    if table.shape[0] < 1 or table.shape[1] != N_COLS:
        raise ValueError("plan.table must have shape (n_layers, %d)" % N_COLS)
    total = table[0, COL_N_IN]
    for l in range(table.shape[0]):
        total += table[l, COL_N_OUT] * (2 if l < table.shape[0] - 1 else 1)
        if act_needs_z(<int> table[l, COL_ACT]):
            total += table[l, COL_N_OUT]
        if table[l, COL_DROP] != 0:
            total += table[l, COL_N_IN]
    return total


cdef Net _unpack(plan, Py_ssize_t n_params, Py_ssize_t n_workspace) except *:
    """Read plan.table into a C Net (caller frees net.layers); check every offset fits."""
    cdef const long long[:, ::1] table = plan.table
    cdef Net net
    cdef Py_ssize_t l, row = workspace_row_length(table), a
    net.n_layers = table.shape[0]
    net.n_params = n_params
    net.n_weights = plan.n_weights
    net.loss = plan.loss_code
    net.dropping = False
    net.seed = plan.dropout_seed
    net.capacity = n_workspace // row
    net.layers = <Layer *> malloc(net.n_layers * sizeof(Layer))
    if net.layers == NULL:
        raise MemoryError()
    a = net.capacity * table[0, COL_N_IN]
    for l in range(net.n_layers):
        net.layers[l].n_in = table[l, COL_N_IN]
        net.layers[l].n_out = table[l, COL_N_OUT]
        net.layers[l].act = <int> table[l, COL_ACT]
        net.layers[l].w = table[l, COL_W]
        net.layers[l].b = table[l, COL_B]
        net.layers[l].a = a
        a += net.capacity * net.layers[l].n_out
        if (net.layers[l].w < 0 or net.layers[l].b < 0
                or not 0 <= table[l, COL_DROP] <= <long long> 0xFFFFFFFF
                or net.layers[l].w + net.layers[l].n_in * net.layers[l].n_out > net.n_weights
                or net.layers[l].b + net.layers[l].n_out > n_params
                or (l > 0 and net.layers[l].n_in != net.layers[l - 1].n_out)):
            free(net.layers)
            raise ValueError("plan.table is inconsistent at layer %d" % l)
    for l in range(net.n_layers):  # delta blocks after all outputs; the last is in place
        if l < net.n_layers - 1:
            net.layers[l].d = a
            a += net.capacity * net.layers[l].n_out
        else:
            net.layers[l].d = net.layers[l].a
    for l in range(net.n_layers):  # pre-activation blocks last, only where needed
        if act_needs_z(net.layers[l].act):
            net.layers[l].z = a
            a += net.capacity * net.layers[l].n_out
        else:
            net.layers[l].z = -1
    for l in range(net.n_layers):  # dropped-input blocks after those, only where needed
        net.layers[l].drop = <uint32_t> table[l, COL_DROP]
        net.layers[l].scale = 4294967296.0 / (4294967296.0 - net.layers[l].drop)
        net.layers[l].keys = 0
        if net.layers[l].drop != 0:
            net.layers[l].x = a
            a += net.capacity * net.layers[l].n_in
        else:
            net.layers[l].x = -1
    return net


cdef inline void _draw_keys(Net *net, long long step) noexcept nogil:
    """Training step ``step``'s mask keys for every layer with dropout; dropout on."""
    cdef Py_ssize_t l
    net.dropping = False
    for l in range(net.n_layers):
        if net.layers[l].x >= 0:
            net.layers[l].keys = dropout_keys(net.seed, <uint64_t> step, <uint64_t> l)
            net.dropping = True


cdef inline const floating *_input(Net *net, Py_ssize_t l, floating *ws,
                                   const floating *Xb) noexcept nogil:
    """Row 0 of layer l's input: its dropped copy while training with dropout, else the
    previous layer's output (the batch for layer 0)."""
    if net.dropping and net.layers[l].x >= 0:
        return ws + net.layers[l].x
    return Xb if l == 0 else ws + net.layers[l - 1].a


cdef inline floating *_zrows(Layer *L, floating *ws, Py_ssize_t r0) noexcept nogil:
    """Rows r0: of layer L's kept pre-activation, or NULL if its activation keeps none."""
    return ws + L.z + r0 * L.n_out if L.z >= 0 else NULL


cdef inline const floating *_cptr2(const floating[:, ::1] a) noexcept nogil:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL

cdef inline const Py_ssize_t *_iptr(const Py_ssize_t[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL


cdef _check_batch_args(Net *net, Py_ssize_t n_rows, Py_ssize_t n_features,
                       Py_ssize_t y_rows, Py_ssize_t y_cols, Py_ssize_t n_labels,
                       Py_ssize_t batch_rows):
    cdef Layer *last = &net.layers[net.n_layers - 1]
    if n_features != net.layers[0].n_in:
        raise ValueError("X has %d features, the model expects %d" % (n_features, net.layers[0].n_in))
    if net.loss == LOSS_CROSS_ENTROPY:
        if n_labels != n_rows:
            raise ValueError("labels must have one entry per row of X")
    elif y_rows != n_rows or y_cols != last.n_out:
        raise ValueError("Y must have shape (%d, %d)" % (n_rows, last.n_out))
    if batch_rows < 1 or batch_rows > net.capacity:
        raise ValueError("batch of %d rows does not fit the workspace (%d rows)"
                         % (batch_rows, net.capacity))
    for l in range(net.n_layers):
        if (batch_rows * net.layers[l].n_in > INT_MAX or batch_rows * net.layers[l].n_out > INT_MAX
                or net.layers[l].n_in * net.layers[l].n_out > INT_MAX):
            raise ValueError("layer %d is too large for 32-bit BLAS indexing" % l)


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


# ---------------------------------------------------------------- the nogil kernels

cdef extern from "_vecmath.h":
    void fastbp_prefetch(const void *address) noexcept nogil


cdef enum:
    GATHER_AHEAD = 4             # rows whose loads the gather starts before copying one
    GATHER_MAX_ROW_LENGTH = 256  # rows at least this long take their max while copied


cdef inline void _prefetch_range(const void *start, Py_ssize_t n_bytes) noexcept nogil:
    """Ask for every 64-byte cache line of start[0:n_bytes]."""
    cdef Py_ssize_t offset
    for offset in range(0, n_bytes, 64):
        fastbp_prefetch(<const char *> start + offset)


cdef inline void _prefetch_rows(const floating *X__nf, const Py_ssize_t *idx, Py_ssize_t B,
                                Py_ssize_t F) noexcept nogil:
    cdef Py_ssize_t r
    for r in range(B):
        _prefetch_range(X__nf + idx[r] * F, F * <Py_ssize_t> sizeof(floating))


cdef inline double _gather(const floating *X__nf, const Py_ssize_t *idx, Py_ssize_t B,
                           Py_ssize_t F, floating *Xb__bf) noexcept nogil:
    """Copy rows idx[0:B] of X to Xb. Returns their max|x| (for _gradient_bound) if the rows
    are long, taken while copying them (the loads wait on memory anyway), else -1: a
    per-row max costs more than a short row (measured on 64 features: 3% of the step).
    Shuffled rows of a large X miss every cache, and the hardware prefetcher only follows
    one row at a time: loading a few rows ahead keeps several in flight."""
    cdef Py_ssize_t r, j
    cdef const floating *src
    cdef floating *dst
    cdef double row_max, batch_max = 0
    cdef bint max_while_copying = F >= GATHER_MAX_ROW_LENGTH
    _prefetch_rows(X__nf, idx, min(B, GATHER_AHEAD), F)
    for r in range(B):
        if r + GATHER_AHEAD < B:
            _prefetch_rows(X__nf, idx + r + GATHER_AHEAD, 1, F)
        src = X__nf + idx[r] * F
        dst = Xb__bf + r * F
        if max_while_copying:
            row_max = copy_max_magnitude(src, dst, F)
            if row_max > batch_max or row_max != row_max:  # NaN, once seen, stays
                batch_max = row_max
        else:
            for j in range(F):  # a plain loop, not memcpy: short rows would pay its call
                dst[j] = src[j]
    return batch_max if max_while_copying else -1


cdef enum:
    COLSUM_BLOCK_MAX_WIDTH = 256  # wider δ rows are summed in place, row by row


cdef inline Py_ssize_t _colsum_block(const floating *D__bo, Py_ssize_t B, Py_ssize_t O,
                                     floating *out__o, Py_ssize_t j0,
                                     Py_ssize_t W) noexcept nogil:
    """Columns j0:j0+W of Σ_rows D if they exist, in a local array (with W a constant at each
    call, GCC keeps it in registers; W <= 64); returns where the next block starts."""
    cdef floating acc[64]
    cdef Py_ssize_t i, j
    cdef const floating *d
    if j0 + W > O:
        return j0
    for j in range(W):
        acc[j] = D__bo[j0 + j]
    for i in range(1, B):
        d = D__bo + i * O + j0
        for j in range(W):
            acc[j] += d[j]
    for j in range(W):
        out__o[j0 + j] = acc[j]
    return j0 + W


cdef inline void _colsum(const floating *D__bo, Py_ssize_t B, Py_ssize_t O,
                         floating *out__o) noexcept nogil:
    """out = Σ_rows D, each column summed in row order. Narrow rows go in column blocks held
    in registers (64 wide, then one each of 32, 16, ..., 1): summing into out row by row
    stored and reloaded it for every row, 104-118 ns against 14-32 ns for a 32 x 10 or
    32 x 32 δ. From 256 columns on, the row-by-row sum was as fast or faster (strided block
    reads: 128 x 512 took 2.7 µs in blocks, 2.2 row by row)."""
    cdef Py_ssize_t i, j, j0 = 0
    cdef const floating *d
    if O >= COLSUM_BLOCK_MAX_WIDTH:
        memcpy(out__o, D__bo, O * sizeof(floating))
        for i in range(1, B):
            d = D__bo + i * O
            for j in range(O):
                out__o[j] += d[j]
        return
    while j0 + 64 <= O:
        j0 = _colsum_block(D__bo, B, O, out__o, j0, 64)
    j0 = _colsum_block(D__bo, B, O, out__o, j0, 32)
    j0 = _colsum_block(D__bo, B, O, out__o, j0, 16)
    j0 = _colsum_block(D__bo, B, O, out__o, j0, 8)
    j0 = _colsum_block(D__bo, B, O, out__o, j0, 4)
    j0 = _colsum_block(D__bo, B, O, out__o, j0, 2)
    _colsum_block(D__bo, B, O, out__o, j0, 1)


cdef void _forward(Net *net, const floating *P, floating *ws, const floating *Xb,
                   Py_ssize_t r0, Py_ssize_t r1, floating *out) noexcept nogil:
    """Rows r0:r1 of the batch, each layer: Z = A_prev·W (BLAS), then Z = act(Z + b) in one
    pass; while training with dropout, A_prev is first copied, dropped and scaled into the
    layer's x block. ``out``, if given, receives the last layer's output (its rows r0:r1)."""
    cdef Py_ssize_t l, rows = r1 - r0
    cdef Layer *L
    cdef const floating *A_prev = Xb + r0 * net.layers[0].n_in
    cdef floating *Z
    for l in range(net.n_layers):
        L = &net.layers[l]
        if net.dropping and L.x >= 0:
            dropout_forward(A_prev, ws + L.x + r0 * L.n_in, rows * L.n_in,
                            <uint32_t> (r0 * L.n_in), L.keys, L.drop, <floating> L.scale)
            A_prev = ws + L.x + r0 * L.n_in
        Z = (out if (out != NULL and l == net.n_layers - 1) else ws + L.a) + r0 * L.n_out
        mm_nn(A_prev, P + L.w, Z, <int> rows, <int> L.n_in, <int> L.n_out, <floating> 0)
        bias_act(Z, P + L.b, rows, L.n_out, L.act, _zrows(L, ws, r0))
        A_prev = Z


cdef void _forward_gemms(Net *net, const floating *P, floating *ws, const floating *Xb,
                        Py_ssize_t B) noexcept nogil:
    cdef Py_ssize_t l
    cdef const floating *A_prev = Xb
    for l in range(net.n_layers):
        blas_nn(A_prev, P + net.layers[l].w, ws + net.layers[l].a, <int> B,
              <int> net.layers[l].n_in, <int> net.layers[l].n_out, <floating> 0)
        A_prev = ws + net.layers[l].a


cdef void _deltas(Net *net, const floating *P, floating *ws, Py_ssize_t r0,
                  Py_ssize_t r1) noexcept nogil:
    """The delta rule for rows r0:r1, from the last layer's delta down (row-local, so
    threads can take disjoint rows): δ_prev = (δ·Wᵀ) ⊙ act'(A_prev); none for layer 0.
    Where layer l's input was dropped out, δ·Wᵀ is dLoss/d(dropped input): the same mask
    and scale turn it into dLoss/dA_prev before act'."""
    cdef Py_ssize_t l, rows = r1 - r0
    cdef Layer *L
    cdef Layer *prev
    for l in range(net.n_layers - 1, 0, -1):
        L = &net.layers[l]
        prev = &net.layers[l - 1]
        mm_nt(ws + L.d + r0 * L.n_out, P + L.w, ws + prev.d + r0 * L.n_in, <int> rows,
              <int> L.n_out, <int> L.n_in, <floating> 0)
        if net.dropping and L.x >= 0:
            dropout_backward(ws + prev.d + r0 * L.n_in, rows * L.n_in, <uint32_t> (r0 * L.n_in),
                             L.keys, L.drop, <floating> L.scale)
        act_backward(ws + prev.d + r0 * L.n_in, ws + prev.a + r0 * L.n_in,
                     _zrows(prev, ws, r0), rows * L.n_in, prev.act)


cdef void _weight_gradients(Net *net, floating *G, floating *ws, const floating *Xb,
                            Py_ssize_t B, int part, int n_parts) noexcept nogil:
    """Part ``part`` of ``n_parts`` of the gradients: for every layer, rows i0:i1 of
    dW = A_prevᵀ·δ (a contiguous range of the flat gradient; A_prev the layer's input as
    forward used it, dropped out while training); part 0 also does every db = Σ_rows δ."""
    cdef Py_ssize_t l, i0, i1
    cdef Layer *L
    cdef const floating *A_prev
    for l in range(net.n_layers):
        L = &net.layers[l]
        i0 = L.n_in * part // n_parts
        i1 = L.n_in * (part + 1) // n_parts
        A_prev = _input(net, l, ws, Xb)
        if i0 == 0 and i1 == L.n_in:
            mm_tn(A_prev, ws + L.d, G + L.w, <int> L.n_in, <int> B, <int> L.n_out,
                  <floating> 0)
        elif i1 > i0:
            mm_tn_rows(A_prev, ws + L.d, G + L.w, <int> L.n_in, <int> B, <int> L.n_out,
                       <int> i0, <int> i1)
        if part == 0:
            _colsum(ws + L.d, B, L.n_out, G + L.b)


cdef double _gradient_bound(Net *net, floating *ws, const floating *Xb, Py_ssize_t B,
                            double batch_max) noexcept nogil:
    """A bound on every |dW| and |db| of the batch before they are computed: each sums B
    products of an input (at most max|A_prev|) and a delta (at most max|δ|). inf if any
    input or delta is not finite. ``batch_max``: max|Xb|, the first layer's input, if the
    gather measured it, else -1."""
    cdef Py_ssize_t l
    cdef Layer *L
    cdef double bound = 0, deltas, inputs
    for l in range(net.n_layers):
        L = &net.layers[l]
        deltas = max_magnitude(ws + L.d, B * L.n_out)
        if l == 0 and batch_max >= 0:
            inputs = batch_max
        else:
            inputs = max_magnitude(_input(net, l, ws, Xb), B * L.n_in)
        if not (isfinite(deltas) and isfinite(inputs)):
            return INFINITY
        bound = max(bound, B * deltas * max(inputs, 1.0))
    return bound


cdef inline bint _fusing_pays(Net *net, Py_ssize_t B, bint input_known) noexcept nogil:
    """True if _gradient_bound reads fewer values (every δ and layer input, B rows each,
    but the batch's if the gather measured it) than the pass over g it replaces. Narrow
    layers at large batches keep the separate step: fused, the tiny benchmark network ran
    3% slower, and scikit-learn's digits defaults 3.6-3.7x faster than scikit-learn where
    the separate step gives 3.8x."""
    cdef Py_ssize_t l, reads = 0
    for l in range(net.n_layers):
        reads += B * net.layers[l].n_out
        if l > 0 or not input_known:
            reads += B * net.layers[l].n_in
    return reads < net.n_params


cdef int _gradients_and_step(Net *net, const OptimizerStep *opt, floating *P, floating *G,
                             floating *S, floating *ws, const floating *Xb, Py_ssize_t B,
                             double batch_max, Bounds *bounds) noexcept nogil:
    """_weight_gradients then apply_rule, fused (_optim.pxd D): each layer's weights and
    biases are stepped right after their gradients are computed, while those are in cache,
    and there is no pass over g for its bound. Returns 1, writing nothing, where apply_rule
    would. (Smaller blocks than a layer measured slower: each GEMM call packs δ again.)"""
    cdef Py_ssize_t l
    cdef Layer *L
    cdef double moved
    cdef Bounds after
    after.params = 0.5 * (FLT_MAX if floating is float else DBL_MAX)
    if not bounded(opt, _gradient_bound(net, ws, Xb, B, batch_max), bounds, &after):
        _weight_gradients(net, G, ws, Xb, B, 0, 1)  # near overflow: the exact way
        return apply_rule(opt, P, G, S, net.n_params, net.n_weights, bounds)
    for l in range(net.n_layers):
        L = &net.layers[l]
        mm_tn(_input(net, l, ws, Xb), ws + L.d, G + L.w, <int> L.n_in, <int> B, <int> L.n_out,
              <floating> 0)
        rule_range(opt, P, G, S, net.n_params, L.w, L.n_in * L.n_out, True, True, &moved)
        _colsum(ws + L.d, B, L.n_out, G + L.b)
        rule_range(opt, P, G, S, net.n_params, L.b, L.n_out, False, True, &moved)
    bounds[0] = after
    return 0


cdef double _loss_and_backward(Net *net, const floating *P, floating *G, floating *ws,
                               const floating *Xb, Py_ssize_t B, const floating *Y,
                               const Py_ssize_t *labels, const Py_ssize_t *idx,
                               const floating *weights, double *hits,
                               bint weight_gradients=True) noexcept nogil:
    """Forward, fused loss + output delta, and backward for one batch on this thread (the
    weight gradients only if asked: _gradients_and_step does them otherwise); returns the
    mean (sample-weighted) loss and adds the batch's hits (_losses.pxd D); backward is
    skipped when the loss is not finite."""
    cdef Layer *last = &net.layers[net.n_layers - 1]
    cdef double loss
    _forward(net, P, ws, Xb, 0, B, NULL)
    loss = weighted_loss_backward(net.loss, last.act, ws + last.a, _zrows(last, ws, 0), Y,
                                  labels, idx, weights, B, last.n_out, B, hits) / B
    if isfinite(loss):
        _deltas(net, P, ws, 0, B)
        if weight_gradients:
            _weight_gradients(net, G, ws, Xb, B, 0, 1)
    return loss


cdef double _batch_gradients_parallel(Net *net, const floating *P, floating *G, floating *ws,
                                      const floating *X, Py_ssize_t F, const Py_ssize_t *idx,
                                      Py_ssize_t start, Py_ssize_t B, const floating *Y,
                                      Py_ssize_t y_cols, const Py_ssize_t *labels,
                                      const floating *weights, int n_threads,
                                      double *hits) noexcept nogil:
    """The batch split over n_threads threads (BLAS must run single-threaded): each takes
    a block of rows for gather, forward, loss and deltas, then a block of every dW's rows.
    Returns the mean loss and adds the hits; gradients are left in G (garbage if the loss is
    not finite)."""
    cdef Layer *last = &net.layers[net.n_layers - 1]
    cdef const floating *Xb = ws if idx != NULL else X + start * F
    cdef double loss = 0, all_hits = 0, thread_hits
    cdef Py_ssize_t t, r0, r1
    for t in prange(n_threads, num_threads=n_threads, schedule="static"):
        r0 = B * t // n_threads
        r1 = B * (t + 1) // n_threads
        thread_hits = 0
        if idx != NULL:
            _gather(X, idx + r0, r1 - r0, F, ws + r0 * F)
        _forward(net, P, ws, Xb, r0, r1, NULL)
        if idx != NULL:
            loss += weighted_loss_backward(net.loss, last.act, ws + last.a + r0 * last.n_out,
                                           _zrows(last, ws, r0), Y, labels, idx + r0, weights,
                                           r1 - r0, last.n_out, B, &thread_hits)
        else:
            loss += weighted_loss_backward(
                net.loss, last.act, ws + last.a + r0 * last.n_out, _zrows(last, ws, r0),
                Y + (start + r0) * y_cols if Y != NULL else NULL,
                labels + start + r0 if labels != NULL else NULL, NULL,
                weights + start + r0 if weights != NULL else NULL, r1 - r0, last.n_out, B,
                &thread_hits)
        all_hits += thread_hits
        _deltas(net, P, ws, r0, r1)
    hits[0] += all_hits
    if not isfinite(loss):
        return loss
    for t in prange(n_threads, num_threads=n_threads, schedule="static"):
        _weight_gradients(net, G, ws, Xb, B, <int> t, n_threads)
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
    """apply_update, recording per-layer figures (tel: n_layers x N_TEL) on the way."""
    cdef Py_ssize_t l, n
    cdef Layer *L
    for l in range(net.n_layers):
        L = &net.layers[l]
        tel[l * N_TEL + TEL_GRAD_NORM] = l2_norm(G + L.w, L.n_in * L.n_out)
        tel[l * N_TEL + TEL_UNITS] = (_unit_fraction(ws + L.a, B, L.n_out, L.act)
                                      if l < net.n_layers - 1 else NAN)
    if transform_gradients(opt, G, P, net.n_params, net.n_weights):
        return 1
    for l in range(net.n_layers):
        L = &net.layers[l]
        n = L.n_in * L.n_out
        tel[l * N_TEL + TEL_WEIGHT_NORM] = l2_norm(P + L.w, n)
        tel[l * N_TEL + TEL_UPDATE_NORM] = update_norm(opt, P, G, S, net.n_params, L.w, n)
    return apply_rule(opt, P, G, S, net.n_params, net.n_weights, bounds)


# ---------------------------------------------------------------- entry points

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
    concurrently: the caller must have set BLAS to one thread.

    ``telemetry`` (n_layers x 4), if given, receives per layer for the call's last batch:
    the weight gradient's norm (before clipping), the weights' norm, the update's norm, and
    the fraction of dead (relu family) or saturated (sigmoid, tanh) units (NaN otherwise).
    ``sample_weight`` (one finite value >= 0 per row of X), if given, weights each row's
    loss and gradient: a batch's loss is Σ w·loss / rows.

    Layers with dropout on their input (plan.table's drop column) drop it on every batch:
    batch k draws the masks of training step ``training_step + k`` (plan.training_steps,
    the model's count of training batches) from ``plan.dropout_seed``.

    Returns ``(status, loss_sum, n_batches, hits)``: loss_sum is Σ batch_mean·batch_rows over
    the completed batches, hits their (sample-weighted) count of correct predictions before
    each batch's update (classification losses; 0 otherwise; see _losses.pxd D). A batch
    whose loss or update is non-finite is not applied: training
    stops there with the parameters and optimizer state of the batch before.
    """
    cdef floating[::1] P = plan.params, G = plan.grads, S = plan.state
    cdef floating[::1] ws = plan.workspace
    cdef Py_ssize_t n_rows = order.shape[0] if order.shape[0] > 0 else X.shape[0]
    cdef Py_ssize_t start, end, B, r, n_batches = 0
    cdef Py_ssize_t n_state = S.shape[0]
    cdef const Py_ssize_t *idx
    cdef const Py_ssize_t *order_p = _iptr(order)
    cdef const floating *Xb
    cdef double loss, loss_sum = 0, hits = 0, batch_hits, batch_max = -1
    cdef int status = STATUS_OK, refused
    cdef bint fused_step
    cdef const floating *weights_p = NULL
    cdef OptimizerStep opt = _read_optimizer(optimizer, P.shape[0], n_state)
    cdef Bounds bounds
    cdef Net net = _unpack(plan, P.shape[0], ws.shape[0])
    try:
        if G.shape[0] != P.shape[0]:
            raise ValueError("plan buffers have inconsistent lengths")
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
        if telemetry is not None and (telemetry.shape[0] != net.n_layers
                                      or telemetry.shape[1] != N_TEL):
            raise ValueError("telemetry must have shape (%d, %d)" % (net.n_layers, N_TEL))
        _check_batch_args(&net, X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                          labels.shape[0], min(batch_size, end - row0))
        if order.shape[0] > 0:
            for r in range(row0, end):
                if order[r] < 0 or order[r] >= X.shape[0]:
                    raise ValueError("order holds row %d, X has %d rows" % (order[r], X.shape[0]))
        with nogil:
            measure_bounds(&P[0], &S[0] if n_state > 0 else NULL, P.shape[0], n_slots(&opt),
                           &bounds)
            start = row0
            while start < end:
                B = min(batch_size, end - start)
                idx = order_p + start if order_p != NULL else NULL
                batch_hits = 0
                _draw_keys(&net, training_step + n_batches)
                fused_step = False
                if n_threads > 1 and B >= n_threads:
                    loss = _batch_gradients_parallel(
                        &net, &P[0], &G[0], &ws[0], &X[0, 0], X.shape[1], idx, start, B,
                        _cptr2(Y), Y.shape[1], _iptr(labels), weights_p, n_threads,
                        &batch_hits)
                else:
                    if idx != NULL:
                        batch_max = _gather(&X[0, 0], idx, B, X.shape[1], &ws[0])
                        Xb = &ws[0]
                        if _input(&net, 0, &ws[0], Xb) != Xb:
                            batch_max = -1  # dropout: the first layer reads its own copy
                    else:
                        batch_max = -1
                        Xb = &X[start, 0]
                    # Telemetry wants g whole before the step, clipping and L1 too.
                    fused_step = (not transforms_gradients(&opt)
                                  and not (telemetry is not None and start + B >= end)
                                  and _fusing_pays(&net, B, batch_max >= 0))
                    loss = _loss_and_backward(
                        &net, &P[0], &G[0], &ws[0], Xb, B,
                        _cptr2(Y) + (0 if idx != NULL or Y.shape[0] == 0 else start * Y.shape[1]),
                        _iptr(labels) + (0 if idx != NULL or labels.shape[0] == 0 else start),
                        idx, weights_p + (start if idx == NULL and weights_p != NULL else 0),
                        &batch_hits, not fused_step)
                if idx != NULL and start + B < end:
                    # Start loading the next batch's rows now, so they arrive while the
                    # weight gradients and the step run (measured against a prefetch right
                    # after the gather: 5 µs a step faster on the small benchmark network,
                    # 55 on the medium one).
                    _prefetch_rows(&X[0, 0], idx + B, min(batch_size, end - start - B),
                                   X.shape[1])
                if not isfinite(loss):
                    status = STATUS_NONFINITE_LOSS
                    break
                opt.lr = rates[n_batches]
                opt.step = first_step + n_batches + 1
                if telemetry is not None and start + B >= end:
                    refused = _step_with_telemetry(&net, &opt, &P[0], &G[0],
                                                   &S[0] if n_state > 0 else NULL, &ws[0], B,
                                                   &bounds, &telemetry[0, 0])
                elif fused_step:
                    refused = _gradients_and_step(&net, &opt, &P[0], &G[0],
                                                  &S[0] if n_state > 0 else NULL, &ws[0], Xb,
                                                  B, batch_max, &bounds)
                else:
                    refused = apply_update(&opt, &P[0], &G[0], &S[0] if n_state > 0 else NULL,
                                           P.shape[0], net.n_weights, &bounds)
                if refused:
                    status = STATUS_NONFINITE_PARAMS
                    break
                loss_sum += loss * B
                hits += batch_hits
                n_batches += 1
                start += B
    finally:
        free(net.layers)
    return status, loss_sum, n_batches, hits


def gradients(plan, const floating[:, ::1] X, const floating[:, ::1] Y,
              const Py_ssize_t[::1] labels, double weight_decay,
              const floating[::1] sample_weight=None, long long dropout_step=-1):
    """Loss (+ weight_decay/2·ΣW²) over all rows of X as one batch; gradients into plan.grads.
    Without dropout (dropout_step -1), as prediction sees the network; with dropout_step
    >= 0, through the dropout masks that training step draws (as train_epoch's)."""
    cdef floating[::1] P = plan.params, G = plan.grads, ws = plan.workspace
    cdef Py_ssize_t i
    cdef floating wd = <floating> weight_decay
    cdef double loss, penalty = 0, hits = 0
    cdef const floating *weights_p = NULL
    cdef Net net = _unpack(plan, P.shape[0], ws.shape[0])
    try:
        if G.shape[0] != P.shape[0]:
            raise ValueError("plan buffers have inconsistent lengths")
        _check_batch_args(&net, X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                          labels.shape[0], X.shape[0])
        if sample_weight is not None:
            if sample_weight.shape[0] != X.shape[0]:
                raise ValueError("sample_weight has %d entries, X has %d rows"
                                 % (sample_weight.shape[0], X.shape[0]))
            weights_p = &sample_weight[0]
        if dropout_step >= 0:
            _draw_keys(&net, dropout_step)
        with nogil:
            loss = _loss_and_backward(&net, &P[0], &G[0], &ws[0], &X[0, 0], X.shape[0],
                                      _cptr2(Y), _iptr(labels), NULL, weights_p, &hits)
            if wd != 0:
                for i in range(net.n_weights):
                    G[i] += wd * P[i]
                    penalty += <double> P[i] * P[i]
    finally:
        free(net.layers)
    return loss + 0.5 * weight_decay * penalty


def forward(plan, const floating[:, ::1] X, floating[:, ::1] out, bint apply_output):
    """Write the network's output for every row of X into ``out`` (n_rows x n_outputs), in
    chunks of the workspace capacity; with apply_output, softmax/sigmoid as the loss implies."""
    cdef floating[::1] P = plan.params, ws = plan.workspace
    cdef Py_ssize_t start, B, n_out
    cdef Net net = _unpack(plan, P.shape[0], ws.shape[0])
    try:
        n_out = net.layers[net.n_layers - 1].n_out
        if X.shape[1] != net.layers[0].n_in:
            raise ValueError("X has %d features, the model expects %d" % (X.shape[1], net.layers[0].n_in))
        if out.shape[0] != X.shape[0] or out.shape[1] != n_out:
            raise ValueError("out must have shape (%d, %d)" % (X.shape[0], n_out))
        _check_batch_args(&net, 0, X.shape[1], 0, n_out, 0, min(net.capacity, max(X.shape[0], 1)))
        with nogil:
            start = 0
            while start < X.shape[0]:
                B = min(net.capacity, X.shape[0] - start)
                _forward(&net, &P[0], &ws[0], &X[start, 0], 0, B, &out[start, 0])
                if apply_output:
                    output_activation(net.loss, &out[start, 0], B, n_out)
                start += B
    finally:
        free(net.layers)


def evaluate(plan, const floating[:, ::1] X, const floating[:, ::1] Y,
             const Py_ssize_t[::1] labels, const floating[::1] sample_weight=None):
    """Loss and hits (_losses.pxd D) over all rows of X, in chunks of the workspace capacity:
    returns ``(Σ w·loss / n_rows, Σ w·hits)`` with w = ``sample_weight`` (one per row; all 1
    if None), fit's definition of the loss, with no penalty."""
    cdef floating[::1] P = plan.params, ws = plan.workspace
    cdef Py_ssize_t start, B, n_out, y_cols = Y.shape[1]
    cdef double total = 0, hits = 0
    cdef const floating *weights_p = NULL
    cdef Layer *last
    cdef Net net = _unpack(plan, P.shape[0], ws.shape[0])
    try:
        last = &net.layers[net.n_layers - 1]
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
            start = 0
            while start < X.shape[0]:
                B = min(net.capacity, X.shape[0] - start)
                _forward(&net, &P[0], &ws[0], &X[start, 0], 0, B, NULL)
                total += weighted_loss_backward(
                    net.loss, last.act, &ws[0] + last.a, _zrows(last, &ws[0], 0),
                    _cptr2(Y) + (start * y_cols if Y.shape[0] > 0 else 0),
                    _iptr(labels) + (start if labels.shape[0] > 0 else 0),
                    NULL, weights_p + (start if weights_p != NULL else 0), B, n_out, B, &hits)
                start += B
    finally:
        free(net.layers)
    return total / X.shape[0], hits


def gemm_roofline(plan, const floating[:, ::1] X, Py_ssize_t batch_size):
    """Run only the GEMMs of one training epoch over X (rows in order), through the same BLAS
    wrappers and buffers as train_epoch: per batch, each layer's forward Z = A·W, its
    dW = Aᵀ·dZ and, except for the first layer, dA = dZ·Wᵀ. The benchmarks time this as the
    limit ("roofline") that the full training step is measured against; results are junk.
    Always BLAS (blas_*), also where training hands small products to its own C loops."""
    cdef floating[::1] P = plan.params, G = plan.grads, ws = plan.workspace
    cdef Py_ssize_t start, B, l
    cdef Layer *L
    cdef const floating *A_prev
    cdef Net net = _unpack(plan, P.shape[0], ws.shape[0])
    try:
        _check_batch_args(&net, 0, X.shape[1], 0, net.layers[net.n_layers - 1].n_out, 0,
                          min(batch_size, X.shape[0]))
        with nogil:
            start = 0
            while start < X.shape[0]:
                B = min(batch_size, X.shape[0] - start)
                _forward_gemms(&net, &P[0], &ws[0], &X[start, 0], B)
                for l in range(net.n_layers - 1, -1, -1):
                    L = &net.layers[l]
                    A_prev = &X[start, 0] if l == 0 else &ws[0] + net.layers[l - 1].a
                    blas_tn(A_prev, &ws[0] + L.d, &G[0] + L.w, <int> L.n_in, <int> B,
                          <int> L.n_out, <floating> 0)
                    if l > 0:
                        blas_nt(&ws[0] + L.d, &P[0] + L.w, &ws[0] + net.layers[l - 1].d,
                              <int> B, <int> L.n_out, <int> L.n_in, <floating> 0)
                start += B
    finally:
        free(net.layers)


# ---------------------------------------------------------------- shuffling
# fit draws each epoch's row order here from one 64-bit seed that it takes from the model's
# NumPy generator: a SplitMix64 stream (Steele, Lea and Flood's generator; it passes
# BigCrush) drives an inside-out Fisher-Yates shuffle whose bounded draws use Lemire's
# multiply-shift with rejection (unbiased). Measured on 8192 rows: 15 µs, where
# Generator.permutation took 68 µs (3% of the tiny benchmark network's epoch). The same
# seed always gives the same order, on every platform.

cdef inline uint64_t _splitmix64(uint64_t *state) noexcept nogil:
    cdef uint64_t z
    state[0] += <uint64_t> 0x9E3779B97F4A7C15
    z = state[0]
    z = (z ^ (z >> 30)) * <uint64_t> 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t> 0x94D049BB133111EB
    return z ^ (z >> 31)


cdef inline uint64_t _below(uint64_t *state, uint64_t bound) noexcept nogil:
    """A uniform integer in [0, bound), 1 <= bound < 2^32: Lemire's method on the top 32
    bits of a draw, rejecting the few low products that would bias it."""
    cdef uint64_t m = (_splitmix64(state) >> 32) * bound
    cdef uint32_t threshold
    if <uint32_t> m < bound:
        threshold = <uint32_t> ((<uint64_t> 1 << 32) - bound) % <uint32_t> bound
        while <uint32_t> m < threshold:
            m = (_splitmix64(state) >> 32) * bound
    return m >> 32


def shuffled_order(Py_ssize_t[::1] order, uint64_t seed):
    """Fill ``order`` with a permutation of 0..len(order)-1 drawn from ``seed`` (see above)."""
    cdef Py_ssize_t i, j, n = order.shape[0]
    cdef uint64_t state = seed
    if n >= 4294967296:
        raise ValueError("shuffled_order handles fewer than 2^32 rows")
    with nogil:
        for i in range(n):
            j = <Py_ssize_t> _below(&state, <uint64_t> i + 1)
            order[i] = order[j]
            order[j] = i


ctypedef fused float_bits:
    uint32_t
    uint64_t


cdef enum:
    FINITE_BLOCK_BYTES = 256     # all_finite's unit: four cache lines, one OR per block
    FINITE_AHEAD_BYTES = 16384   # how far ahead all_finite asks memory for its input


def all_finite(const float_bits[::1] bits):
    """True if no value is NaN or infinite, given the bits of a float32 (uint32 view) or
    float64 (uint64 view) array: a value is non-finite exactly when its exponent bits are
    all ones. One vectorised pass without the GIL, where min() and max() would take two.
    It prefetches 16 KB ahead: on a 51 MB array from memory, 1.39 ms without, 0.96 with
    (the hardware prefetcher alone left the loop waiting on memory)."""
    cdef float_bits exponent, block_bad
    cdef Py_ssize_t i = 0, j, n = bits.shape[0]
    cdef Py_ssize_t block = FINITE_BLOCK_BYTES // sizeof(float_bits)
    cdef Py_ssize_t ahead = FINITE_AHEAD_BYTES // sizeof(float_bits)
    cdef int bad = 0
    if float_bits is uint32_t:
        exponent = 0x7f800000
    else:
        exponent = 0x7ff0000000000000
    with nogil:
        while i + block <= n:
            if i + ahead + block <= n:
                _prefetch_range(&bits[i + ahead], FINITE_BLOCK_BYTES)
            block_bad = 0
            for j in range(block):
                block_bad |= (bits[i + j] & exponent) == exponent
            bad |= block_bad != 0
            i += block
        for j in range(i, n):
            bad |= (bits[j] & exponent) == exponent
    return not bad


# ---------------------------------------------------------------- test twins of the kernels

SMALL_GEMM_MACS = _SMALL_GEMM_MACS


def small_products(on=None):
    """Whether products of at most SMALL_GEMM_MACS multiply-adds run in fastbp's C loops
    instead of BLAS; ``on`` (a bool) sets it first. Returns False, and ignores ``on``, in a
    build without the loops. fastbp._native sets it at import from BLAS's kernel family."""
    global fastbp_small_gemm_on
    if on is not None:
        fastbp_small_gemm_on = bool(on)
    return bool(FASTBP_SMALL_GEMM and fastbp_small_gemm_on)


MM_KINDS = ("nn", "nt", "tn", "blas_nn", "blas_nt", "blas_tn")


cdef inline void _mm_by_code(int code, const floating *A, const floating *B, floating *C,
                             int m, int k, int n, floating beta) noexcept nogil:
    """MM_KINDS[code]: the wrappers training uses (mm_*), then the BLAS-only ones (blas_*)."""
    if code == 0:
        mm_nn(A, B, C, m, k, n, beta)
    elif code == 1:
        mm_nt(A, B, C, m, k, n, beta)
    elif code == 2:
        mm_tn(A, B, C, m, k, n, beta)
    elif code == 3:
        blas_nn(A, B, C, m, k, n, beta)
    elif code == 4:
        blas_nt(A, B, C, m, k, n, beta)
    else:
        blas_tn(A, B, C, m, k, n, beta)


cdef int _mm_args(str kind, tuple a_shape, tuple b_shape, int *m, int *k, int *n) except -1:
    """MM_KINDS' code of ``kind`` (ValueError if unknown), and the product's m, k, n."""
    cdef int code = MM_KINDS.index(kind)
    m[0], k[0], n[0] = a_shape[0], a_shape[1], b_shape[1]
    if code % 3 == 1:    # A·Bᵀ: B is n x k
        n[0] = b_shape[0]
    elif code % 3 == 2:  # Aᵀ·B: A is k x m
        m[0], k[0] = a_shape[1], a_shape[0]
    return code


def _twin_mm(str kind, const floating[:, ::1] A, const floating[:, ::1] B,
             floating[:, ::1] C, floating beta):
    """C = A·B ("nn"), A·Bᵀ ("nt") or Aᵀ·B ("tn") plus beta·C, through the wrappers that
    training uses (small products in C loops when on); "blas_nn", "blas_nt", "blas_tn":
    always BLAS."""
    cdef int m, k, n
    cdef int code = _mm_args(kind, (A.shape[0], A.shape[1]), (B.shape[0], B.shape[1]),
                             &m, &k, &n)
    _mm_by_code(code, &A[0, 0], &B[0, 0], &C[0, 0], m, k, n, beta)


cdef _check_kept(int act, Py_ssize_t kept_size, Py_ssize_t size):
    """A twin handed no kept pre-activation for gelu/swish would pass NULL to the kernel."""
    if act_needs_z(act) and kept_size != size:
        raise ValueError("this activation needs its pre-activation, shaped as its output")


def _twin_bias_act(floating[:, ::1] Z, const floating[::1] b, int act, floating[:, ::1] K):
    """Z = act(Z + b) in place; K (empty unless the activation keeps z) receives Z + b."""
    _check_kept(act, K.size, Z.size)
    bias_act(&Z[0, 0], &b[0], Z.shape[0], Z.shape[1], act, &K[0, 0] if K.size else NULL)


def _twin_act_backward(floating[::1] A, const floating[::1] K, const floating[::1] dA,
                       int act):
    """A = dA ⊙ act', through act_backward (which scales a delta buffer in place); act' from
    the output A, or from the pre-activation K (empty unless the activation keeps z)."""
    cdef floating[::1] D = np.array(dA)
    _check_kept(act, K.shape[0], A.shape[0])
    act_backward(&D[0], &A[0], &K[0] if K.shape[0] else NULL, A.shape[0], act)
    A[:] = D


def _twin_loss(int loss, int act, floating[:, ::1] Z, const floating[:, ::1] K,
               const floating[:, ::1] Y, const Py_ssize_t[::1] labels):
    """Mean loss over Z's rows, leaving dLoss/dZ in Z; K as for _twin_bias_act."""
    cdef double hits = 0  # tested through evaluate
    _check_kept(act if loss != LOSS_CROSS_ENTROPY and loss != LOSS_BINARY_CROSS_ENTROPY
                else ACT_IDENTITY, K.size, Z.size)
    return loss_backward(loss, act, &Z[0, 0], _cptr2(K), _cptr2(Y), _iptr(labels), NULL,
                         Z.shape[0], Z.shape[1], Z.shape[0], &hits) / Z.shape[0]


def _twin_output_activation(int loss, floating[:, ::1] Z):
    output_activation(loss, &Z[0, 0], Z.shape[0], Z.shape[1])


def _twin_colsum(const floating[:, ::1] D, floating[::1] out):
    _colsum(&D[0, 0], D.shape[0], D.shape[1], &out[0])


def _twin_update(optimizer, floating[::1] params, floating[::1] grads, floating[::1] state,
                 Py_ssize_t n_weights, double lr, long long step):
    """One apply_update of ``optimizer`` (update number ``step``) with fresh bounds."""
    cdef OptimizerStep opt = _read_optimizer(optimizer, params.shape[0], state.shape[0])
    cdef Bounds bounds
    cdef floating *S = &state[0] if state.shape[0] else NULL
    if grads.shape[0] != params.shape[0] or not 0 <= n_weights <= params.shape[0]:
        raise ValueError("inconsistent lengths")
    opt.lr = lr
    opt.step = step
    measure_bounds(&params[0], S, params.shape[0], n_slots(&opt), &bounds)
    return apply_update(&opt, &params[0], &grads[0], S, params.shape[0], n_weights, &bounds)


def _twin_max_magnitude(const floating[::1] x):
    return max_magnitude(&x[0], x.shape[0])


def _twin_dropout_keys(uint64_t seed, uint64_t step, uint64_t layer):
    """The packed mask keys of (seed, training step, layer), as _draw_keys computes them."""
    return dropout_keys(seed, step, layer)


def _twin_dropout_draws(uint32_t[::1] out, uint32_t e0, uint64_t keys):
    """out[i] = the 32-bit draw of element e0 + i under ``keys``."""
    cdef Py_ssize_t i
    for i in range(out.shape[0]):
        out[i] = _draw(e0 + <uint32_t> i, <uint32_t> keys, <uint32_t> (keys >> 32))


def _twin_dropout_forward(const floating[::1] X, floating[::1] Y, uint32_t e0, uint64_t keys,
                          uint32_t threshold, double scale):
    """Y = X dropped out (draw < threshold) and scaled, through dropout_forward."""
    if Y.shape[0] != X.shape[0]:
        raise ValueError("X and Y must have the same length")
    if X.shape[0]:
        dropout_forward(&X[0], &Y[0], X.shape[0], e0, keys, threshold, <floating> scale)


def _twin_dropout_backward(floating[::1] D, uint32_t e0, uint64_t keys, uint32_t threshold,
                           double scale):
    """D scaled where kept, zeroed where dropped, in place, through dropout_backward."""
    if D.shape[0]:
        dropout_backward(&D[0], D.shape[0], e0, keys, threshold, <floating> scale)


def _bench_mm(str kind, const floating[:, ::1] A, const floating[:, ::1] B,
              floating[:, ::1] C, Py_ssize_t repeats):
    """Seconds per call of _twin_mm's ``kind`` (beta 0), timed over ``repeats`` calls in C
    (benchmarks/small_gemm.py)."""
    import time
    cdef Py_ssize_t r
    cdef int m, k, n
    cdef int code = _mm_args(kind, (A.shape[0], A.shape[1]), (B.shape[0], B.shape[1]),
                             &m, &k, &n)
    started = time.perf_counter()
    with nogil:
        for r in range(repeats):
            _mm_by_code(code, &A[0, 0], &B[0, 0], &C[0, 0], m, k, n, <floating> 0)
    return (time.perf_counter() - started) / repeats

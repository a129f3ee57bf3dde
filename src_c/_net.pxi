# Included by _core.pyx (the GIL held here).
# A. Invariants: plan.table becomes a Net of Ops (_ops.pxd) once per entry call; every width,
#    offset and pairing is checked against the buffers' sizes before any loop runs, so the
#    nogil code may trust them.
# B. Layout: _layout assigns each op's workspace blocks (outputs, deltas, kept
#    pre-activations, per-row norm figures) for a capacity; _resolve says where each op
#    reads and writes in the current mode (training with dropout or not).
# C. Why per call: a Net is a few dozen bytes per op; unpacking costs well under a
#    microsecond, and Python may resize the workspace between calls.
# ---------------------------------------------------------------- plan unpacking (with GIL)

cdef inline bint _has_params(const Op *op) noexcept nogil:
    return op.p0 >= 0


cdef Py_ssize_t _layout(Net *net, Py_ssize_t cap, bint batch_block=True) noexcept nogil:
    """Workspace offsets for a capacity of ``cap`` rows (A, B); returns the total size.
    The gathered batch first (not for sparse input: batch_block False), then outputs, then deltas (the last Dense's delta is its output), then kept
    pre-activations, then LayerNorm figures; a delta exists where the op has parameters or
    something below it has (din), and Dropout, Activation and a block's begin scale or pass
    the delta of their input in place."""
    cdef Py_ssize_t i, off = cap * net.ops[0].n_in if batch_block else 0, value_delta = -1
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


def workspace_row_length(const long long[:, ::1] table, const double[:, ::1] reals,
                         bint sparse=False):
    """Workspace elements per sample row of the op list (see _layout), for dense input or
    (``sparse``) CSR input, which needs no gathered batch."""
    cdef Net net
    cdef Py_ssize_t row
    net.n_ops = table.shape[0]
    net.ops = <Op *> malloc(max(net.n_ops, 1) * sizeof(Op))
    if net.ops == NULL:
        raise MemoryError()
    try:
        _build(table, reals, &net, 0, 0, 0, 0, False)
        row = _layout(&net, 1, not sparse)
    finally:
        free(net.ops)
    return row


cdef Net _unpack(plan, Py_ssize_t n_params, Py_ssize_t n_workspace,
                 const SparseInput *sparse=NULL) except *:
    """Read plan.table into a C Net (caller frees net.ops); check every offset fits.
    ``sparse``: the call's CSR input (_bind_input), whose first op must be Dense."""
    cdef const long long[:, ::1] table = plan.table
    cdef Net net
    cdef Py_ssize_t row
    cdef bint dense_input = sparse == NULL or sparse.indptr == NULL
    net.n_ops = table.shape[0]
    net.n_params = n_params
    net.n_weights = plan.n_weights
    net.n_stats = plan.stats.shape[0]
    net.loss = plan.loss_code
    net.training = False
    net.dropping = False
    net.seed = plan.dropout_seed
    net.positions = NULL
    memset(&net.sparse, 0, sizeof(SparseInput))
    if not dense_input:
        net.sparse = sparse[0]
    net.ops = <Op *> malloc(max(net.n_ops, 1) * sizeof(Op))
    if net.ops == NULL:
        raise MemoryError()
    try:
        if not 0 <= net.n_weights <= n_params:
            raise ValueError("plan.n_weights is out of range")
        _build(table, plan.reals, &net, n_params, net.n_weights, net.n_stats,
               plan.scratch.shape[0])
        if not dense_input and net.ops[0].kind != OP_DENSE:
            raise ValueError("sparse input needs a Dense first layer (it reads X's rows "
                             "where they are); op 0 is not Dense")
        row = _layout(&net, 1, dense_input)
        net.capacity = n_workspace // row
        _layout(&net, net.capacity, dense_input)
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
    net.training = training
    net.dropping = dropout_step >= 0 and _set_keys(net, dropout_step)
    _resolve(net)


cdef bint _set_keys(Net *net, long long dropout_step) noexcept nogil:
    """Training step dropout_step's mask keys for every Dropout op that drops; returns
    whether there is one."""
    cdef Py_ssize_t i
    cdef bint any_drops = False
    for i in range(net.n_ops):
        if net.ops[i].kind == OP_DROPOUT and net.ops[i].drop != 0:
            net.ops[i].keys = dropout_keys(net.seed, <uint64_t> dropout_step,
                                           net.ops[i].key_index)
            any_drops = True
    return any_drops


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
    opt.centered = bool(getattr(optimizer, "centered", False))
    opt.lr_decay = getattr(optimizer, "lr_decay", 0.0)
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
    if not opt.lr_decay >= 0:  # a negative decay would divide by 0 at some step
        raise ValueError("lr_decay must be >= 0, got %r" % opt.lr_decay)
    if n_state != n_slots(&opt) * n_params:
        raise ValueError("the optimizer state must hold %d values, not %d"
                         % (n_slots(&opt) * n_params, n_state))
    return opt


cdef const floating *_bind_input(X, const floating *like, SparseInput *sparse,
                                 Py_ssize_t *shape) except *:
    """X's rows: a C-contiguous array (returns its row 0, NULL when empty), or a scipy CSR
    matrix or array with intp indptr, int32 indices and data of ``like``'s dtype, whose
    arrays fill ``sparse`` (returns NULL). shape receives (rows, features). Every CSR
    pointer and column index is checked here, so the loops may trust them; X (which holds
    the arrays) must outlive the call."""
    cdef const floating[:, ::1] dense
    cdef const floating[::1] values
    cdef const Py_ssize_t[::1] indptr
    cdef const int[::1] indices
    cdef Py_ssize_t i, n_rows, n_features, bad = -1
    memset(sparse, 0, sizeof(SparseInput))
    if not hasattr(X, "indptr"):
        dense = X
        shape[0], shape[1] = dense.shape[0], dense.shape[1]
        return &dense[0, 0] if dense.shape[0] > 0 and dense.shape[1] > 0 else NULL
    n_rows, n_features = X.shape
    indptr, indices, values = X.indptr, X.indices, X.data
    if indptr.shape[0] != n_rows + 1 or indices.shape[0] != values.shape[0]:
        raise ValueError("X's CSR arrays do not match its shape")
    with nogil:
        if indptr[0] != 0 or indptr[n_rows] > indices.shape[0]:
            bad = 0
        for i in range(n_rows):
            if indptr[i + 1] < indptr[i]:
                bad = i
                break
        for i in range(indptr[n_rows] if bad < 0 else 0):
            if not 0 <= indices[i] < n_features:
                bad = i
                break
    if bad >= 0:
        raise ValueError("X's CSR structure is invalid (row pointers or column indices out "
                         "of range); scipy's X.check_format() says where")
    shape[0], shape[1] = n_rows, n_features
    sparse.indptr = &indptr[0]
    sparse.indices = &indices[0] if indices.shape[0] > 0 else NULL
    sparse.values = &values[0] if values.shape[0] > 0 else NULL
    return NULL

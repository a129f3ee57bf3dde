# Included by _core.pyx: the training step, without the GIL.
# A. Invariants: forward walks the ops in order, _deltas in reverse (row-local but for
#    BatchNorm), _param_grads then needs every row of the batch; the optimizer step may be
#    fused into that last sweep (_gradients_and_step) when a bound taken beforehand shows it
#    cannot overflow.
# B. Layout: see _core.pyx B and _ops.pxd B; P, G, S the flat parameters, gradients and
#    optimizer state, R BatchNorm's running statistics, T its batch figures, ws the
#    workspace, Xb row 0 of the batch.
# C. Why a switch per op and not per layer kind loops: the op list is short; each op's work
#    is one inlined call from its _op_*.pxd, so the loop costs a few branches per op.
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


cdef inline void _part(Py_ssize_t total, int t, int n, Py_ssize_t *a,
                       Py_ssize_t *b) noexcept nogil:
    """Thread t's share [a, b) of ``total`` items split over n threads."""
    a[0] = total * t // n
    b[0] = total * (t + 1) // n


cdef inline void _sync(int n) noexcept nogil:
    if n > 1:
        fastbp_barrier()


cdef inline void _meet(int n, bint *met) noexcept nogil:
    """A meeting, unless the team has just met with nothing done since (``met``)."""
    if not met[0]:
        _sync(n)
    met[0] = True


cdef enum:
    COLUMN_ALIGN = 16   # column parts start on whole cache lines of float32 rows


cdef inline void _column_part(Py_ssize_t total, int t, int n, Py_ssize_t *a,
                              Py_ssize_t *b) noexcept nogil:
    """Thread t's share [a, b) of ``total`` columns, in whole runs of COLUMN_ALIGN."""
    _part((total + COLUMN_ALIGN - 1) // COLUMN_ALIGN, t, n, a, b)
    a[0] = min(a[0] * COLUMN_ALIGN, total)
    b[0] = min(b[0] * COLUMN_ALIGN, total)


cdef inline bint _reads_sparse(const Net *net, const Op *op) noexcept nogil:
    """Whether op reads the batch and the batch is sparse (_op_sparse.pxd)."""
    return op.in_loc == LOC_BATCH and net.sparse.indptr != NULL


cdef inline bint _by_columns(int n, Py_ssize_t B, Py_ssize_t k, Py_ssize_t cols,
                             bint nt) noexcept nogil:
    """Whether a team of n splits a B x k by k x cols product by columns (_op_dense.pxd
    D): BLAS runs it (as mm_nn, or mm_nt with ``nt``) and its k x cols operand is bigger
    than the B x k one that each thread then packs whole (OpenBLAS packs the operands of
    every call: split by rows, the threads of the medium network's team spent 15% of the
    epoch in sgemm_itcopy, packing W twice over; perf, 2 threads). Measured on 2 cores:
    2-thread epochs 36.1 -> 32.4 ms (small), 156 -> 145 (medium), 540 -> 524 (large)."""
    if n < 2 or B >= cols:
        return False
    return nt_by_blas(<int> B, <int> k, <int> cols) if nt else nn_by_blas(<int> B, <int> k,
                                                                          <int> cols)


cdef enum:
    PARTS_ONLY = 0   # _param_grads: the gradients only
    PARTS_STEP = 1   # ... each part stepped right after
    PARTS_MAX = 2    # ... and max|g| over the thread's parts


cdef inline double _worse(double a, double b) noexcept nogil:
    """The larger of two magnitudes; a NaN, once seen, wins (max() would drop it)."""
    if a != a:
        return a
    return b if (b != b or b > a) else a


cdef void _forward(Net *net, const floating *P, floating *T, floating *ws, const floating *Xb,
                   Py_ssize_t r0, Py_ssize_t r1, floating *out, Py_ssize_t B, int t=0,
                   int n=1) noexcept nogil:
    """Rows r0:r1 of a batch of B rows through every op, on thread t of a team of n (every
    thread of the team calls it, each with its own rows). A BatchNorm in training needs
    every row: the team meets before it, splits it by features, and meets after.
    ``out``, if given, receives the last op's output."""
    cdef Py_ssize_t i, rows = r1 - r0, j0, j1
    cdef Op *op
    cdef const floating *X
    cdef floating *Y
    cdef bint met = False
    for i in range(net.n_ops):
        op = &net.ops[i]
        X = at(op.in_loc, ws, Xb)
        if op.kind == OP_BATCHNORM and net.training:
            _meet(n, &met)
            _part(op.n_in, t, n, &j0, &j1)
            batchnorm_forward_train(op, P, T, X, ws, B, j0, j1)
            _sync(n)
            continue
        if (op.kind == OP_DENSE and not _reads_sparse(net, op)
                and _by_columns(n, B, op.n_in, op.n_out, False)):
            _meet(n, &met)
            _column_part(op.n_out, t, n, &j0, &j1)
            Y = out if (out != NULL and i == net.n_ops - 1) else ws + op.out
            dense_forward_cols(op, P, ws, X, Y, B, j0, j1)
            _sync(n)
            continue
        met = False
        if rows <= 0:
            continue
        elif op.kind == OP_DENSE:
            Y = out if (out != NULL and i == net.n_ops - 1) else ws + op.out
            if _reads_sparse(net, op):
                sparse_dense_forward(op, &net.sparse, P, ws, Y, r0, rows)
            else:
                dense_forward(op, P, ws, X, Y, r0, rows, B)
        elif op.kind == OP_DROPOUT:
            if net.dropping:
                dropout_op_forward(op, X, ws, r0, rows, net.positions)
        elif op.kind == OP_ACTIVATION:
            activation_forward(op, X, ws, r0, rows)
        elif op.kind == OP_BATCHNORM:
            batchnorm_forward_infer(op, T, X, ws, r0, rows)
        elif op.kind == OP_LAYERNORM:
            layernorm_forward(op, P, X, ws, r0, rows)
        elif op.kind == OP_RESIDUAL_ADD:
            residual_add_forward(op, X, at(net.ops[op.partner].in_loc, ws, Xb), ws, r0, rows)


cdef void _deltas(Net *net, const floating *P, floating *G, floating *T, floating *ws,
                  const floating *Xb, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t B, int t=0,
                  int n=1) noexcept nogil:
    """The delta rule over the ops in reverse, rows r0:r1 (thread t of n, as _forward),
    from the loss's dLoss/dZ in the last op's output. A BatchNorm splits by features
    between two meetings of the team, its γ and β gradients on the way."""
    cdef Py_ssize_t i, rows = r1 - r0, j0, j1
    cdef Op *op
    cdef bint met = False
    for i in range(net.n_ops - 1, -1, -1):
        op = &net.ops[i]
        if op.kind == OP_BATCHNORM:
            _meet(n, &met)
            _part(op.n_in, t, n, &j0, &j1)
            batchnorm_backward(op, P, G, T, at(op.in_loc, ws, Xb), ws, B, j0, j1)
            _sync(n)
            continue
        if (op.kind == OP_DENSE and op.din >= 0
                and _by_columns(n, B, op.n_out, op.n_in, True)):
            if rows > 0:
                dense_delta(op, ws, r0, rows)
            met = False
            _meet(n, &met)
            _column_part(op.n_in, t, n, &j0, &j1)
            dense_input_grad_cols(op, P, ws, B, j0, j1)
            _sync(n)
            continue
        met = False
        if rows <= 0:
            continue
        elif op.kind == OP_DENSE:
            dense_backward(op, P, ws, r0, rows, B)
        elif op.din < 0:
            continue
        elif op.kind == OP_DROPOUT:
            if net.dropping:
                dropout_op_backward(op, ws, r0, rows, net.positions)
        elif op.kind == OP_ACTIVATION:
            activation_backward(op, at(op.in_loc, ws, Xb), ws, r0, rows)
        elif op.kind == OP_LAYERNORM:
            layernorm_backward(op, P, at(op.in_loc, ws, Xb), ws, r0, rows)
        elif op.kind == OP_RESIDUAL_ADD:
            residual_add_backward(op, ws, r0, rows)
        elif op.kind == OP_RESIDUAL_BEGIN:
            residual_begin_backward(op, &net.ops[op.partner], ws, r0, rows)


cdef double _param_grads(Net *net, const OptimizerStep *opt, floating *P, floating *G,
                         floating *S, floating *ws, const floating *Xb, Py_ssize_t B, int t,
                         int n, int then) noexcept nogil:
    """Thread t's part (of n) of the gradients that need every row: rows of each Dense
    layer's dW, entries of its db and of each LayerNorm's dγ, dβ (BatchNorm's came with its
    deltas). ``then``: PARTS_STEP steps each part right after computing it, while it is in
    cache (_optim.pxd D); PARTS_MAX returns max|g| over the thread's parts, BatchNorm's
    included; PARTS_ONLY returns 0. The parts of all threads tile every gradient once."""
    cdef Py_ssize_t i, i0, i1, j0, j1
    cdef Op *op
    cdef double moved, g_max = 0, m
    for i in range(net.n_ops):
        op = &net.ops[i]
        if op.p0 < 0:
            continue
        _part(op.n_out if op.kind == OP_DENSE else op.n_in, t, n, &j0, &j1)
        if op.kind == OP_DENSE:
            _part(op.n_in, t, n, &i0, &i1)
            if _reads_sparse(net, op) and then == PARTS_STEP and net.sparse.counts != NULL:
                colsum(ws + op.dout, B, op.n_out, G + op.p1, j0, j1)
                sparse_weight_step(op, &net.sparse, opt, P, S, net.n_params, ws, B, i0, i1)
                rule_range(opt, P, G, S, net.n_params, op.p1 + j0, j1 - j0, False, True,
                           &moved)
                continue
            if _reads_sparse(net, op):
                sparse_weight_grads(op, &net.sparse, G, ws, B, i0, i1)
                colsum(ws + op.dout, B, op.n_out, G + op.p1, j0, j1)
            else:
                dense_param_grads(op, G, ws, at(op.in_loc, ws, Xb), B, i0, i1, j0, j1)
            if then == PARTS_STEP:
                rule_range(opt, P, G, S, net.n_params, op.p0 + i0 * op.n_out,
                           (i1 - i0) * op.n_out, True, True, &moved)
            elif then == PARTS_MAX:
                m = max_magnitude(G + op.p0 + i0 * op.n_out, (i1 - i0) * op.n_out)
                g_max = _worse(g_max, m)
        elif op.kind == OP_LAYERNORM:
            layernorm_param_grads(op, G, at(op.in_loc, ws, Xb), ws, B, j0, j1)
        if then == PARTS_STEP:
            if op.kind != OP_DENSE:
                rule_range(opt, P, G, S, net.n_params, op.p0 + j0, j1 - j0, False, True,
                           &moved)
            rule_range(opt, P, G, S, net.n_params, op.p1 + j0, j1 - j0, False, True, &moved)
        elif then == PARTS_MAX:
            if op.kind != OP_DENSE:
                g_max = _worse(g_max, max_magnitude(G + op.p0 + j0, j1 - j0))
            g_max = _worse(g_max, max_magnitude(G + op.p1 + j0, j1 - j0))
    return g_max


cdef void _forward_gemms(Net *net, const floating *P, floating *ws, const floating *Xb,
                         Py_ssize_t B) noexcept nogil:
    cdef Py_ssize_t i
    cdef Op *op
    for i in range(net.n_ops):
        op = &net.ops[i]
        if op.kind == OP_DENSE:
            blas_nn(at(op.in_loc, ws, Xb), P + op.p0, ws + op.out, <int> B, <int> op.n_in,
                    <int> op.n_out, <floating> 0)


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


cdef void _update_running(Net *net, floating *R, const floating *T, Py_ssize_t B) noexcept nogil:
    """After an accepted training step: every BatchNorm's running statistics."""
    cdef Py_ssize_t i
    for i in range(net.n_ops):
        if net.ops[i].kind == OP_BATCHNORM:
            batchnorm_update_running(&net.ops[i], R, T, B)


cdef double _loss_and_backward(Net *net, const floating *P, floating *G, floating *T,
                               floating *ws, const floating *Xb, Py_ssize_t B,
                               const floating *Y, const Py_ssize_t *labels,
                               const Py_ssize_t *idx, const floating *weights,
                               double scale, double *hits) noexcept nogil:
    """Forward, fused loss + output delta, and backward for one batch on this thread alone
    (the gradients entry; training runs _team_epoch); returns the mean (sample-weighted,
    each weight times ``scale``) loss and adds the batch's hits (_losses.pxd D); backward
    is skipped when the loss is not finite."""
    cdef Op *last = &net.ops[net.n_ops - 1]
    cdef double loss
    _forward(net, P, T, ws, Xb, 0, B, NULL, B)
    loss = weighted_loss_backward(net.loss, last.act, ws + last.out,
                                  ws + last.z if last.z >= 0 else NULL, Y, labels, idx,
                                  weights, scale, B, last.n_out, B, hits) / B
    if isfinite(loss):
        _deltas(net, P, G, T, ws, Xb, 0, B, B)
        _param_grads(net, NULL, NULL, G, NULL, ws, Xb, B, 0, 1, PARTS_ONLY)
    return loss


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

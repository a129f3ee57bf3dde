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

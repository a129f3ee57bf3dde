# Included by _core.pyx: the two entry points of data-parallel training (fastbp.distributed).
# A. Invariants: a batch of batch_rows rows is spread over processes; each holds some of its
#    rows (rows of its own X, and each row's position in the batch). shard_gradients writes
#    into plan.grads Σ over its rows of w·dLoss/dθ / batch_rows: the processes' buffers,
#    summed (one MPI Allreduce), are exactly the batch's gradient as train_epoch computes
#    it, up to the order of the sum. apply_step then makes train_epoch's update from it.
# B. Layout: the process's rows are gathered into rows 0..n-1 of the workspace; a Dropout
#    draws row r's mask at its batch position (Net.positions), so masks match one process.
# C. Why two calls and not train_epoch with a zero learning rate: the gradient must be
#    whole (summed over processes) before any update, and the step must not run twice.
#    BatchNorm needs every row of the batch inside its forward pass, which a per-process
#    call cannot see: such networks are refused (fastbp.distributed says why).

def shard_gradients(plan, const floating[:, ::1] X, const floating[:, ::1] Y,
                    const Py_ssize_t[::1] labels, const Py_ssize_t[::1] rows,
                    const Py_ssize_t[::1] positions, Py_ssize_t first, Py_ssize_t last,
                    Py_ssize_t batch_rows, floating[::1] totals,
                    const floating[::1] sample_weight=None, long long dropout_step=-1):
    """This process's part of one batch's gradient, into plan.grads (A).

    Rows ``rows[first:last]`` of X sit at batch positions ``positions[first:last]`` (each
    in [0, batch_rows)) of a batch of ``batch_rows`` rows. plan.grads receives
    Σ_rows w·dLoss/dθ / batch_rows (zeros when first == last); ``totals[0:2]`` receive
    (Σ w·loss, Σ w·hits) over the rows (_losses.pxd D). Dropout uses training step
    ``dropout_step``'s masks (-1: no dropout). Parameters do not change."""
    cdef Py_ssize_t n = last - first, i
    cdef double loss = 0, hits = 0
    cdef const floating *weights_p = NULL
    cdef floating[::1] params = plan.params, grads = plan.grads, stats = plan.stats
    cdef floating[::1] scratch = plan.scratch, workspace = plan.workspace
    cdef floating *P = _ptr(params)
    cdef floating *G = _ptr(grads)
    cdef floating *ws = _ptr(workspace)
    cdef Op *out_op
    cdef Net net = _unpack(plan, params.shape[0], workspace.shape[0])
    try:
        _check_buffers(&net, grads.shape[0], stats.shape[0])
        if not net.row_local:
            raise ValueError("shard_gradients cannot run BatchNorm: its batch statistics "
                             "need every row of the batch")
        if rows.shape[0] != positions.shape[0]:
            raise ValueError("rows and positions must have the same length")
        if not 0 <= first <= last <= rows.shape[0]:
            raise ValueError("first:last (%d:%d) is not a range of the %d rows"
                             % (first, last, rows.shape[0]))
        if n > batch_rows or batch_rows * net.ops[0].n_in >= 4294967296:
            raise ValueError("batch_rows (%d) must hold the %d rows and fit 32-bit dropout "
                             "indexing" % (batch_rows, n))
        if totals.shape[0] < 2:
            raise ValueError("totals must hold 2 values")
        if sample_weight is not None:
            if sample_weight.shape[0] != X.shape[0]:
                raise ValueError("sample_weight has %d entries, X has %d rows"
                                 % (sample_weight.shape[0], X.shape[0]))
            if X.shape[0] > 0:
                weights_p = &sample_weight[0]
        _check_batch_args(&net, X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                          labels.shape[0], max(n, 1))
        for i in range(first, last):
            if not (0 <= rows[i] < X.shape[0] and 0 <= positions[i] < batch_rows):
                raise ValueError("row %d at position %d is outside X (%d rows) or the batch "
                                 "(%d rows)" % (rows[i], positions[i], X.shape[0], batch_rows))
        _set_mode(&net, True, dropout_step)
        if n > 0:
            net.positions = &positions[first]
        out_op = &net.ops[net.n_ops - 1]
        with nogil:
            if n == 0:
                for i in range(net.n_params):
                    G[i] = 0
            else:
                gather(&X[0, 0], &rows[first], n, X.shape[1], ws)
                _forward(&net, P, _ptr(scratch), ws, ws, 0, n, NULL, n)
                loss = weighted_loss_backward(
                    net.loss, out_op.act, ws + out_op.out,
                    ws + out_op.z if out_op.z >= 0 else NULL, _cptr2(Y), _iptr(labels),
                    &rows[first], weights_p, 1.0, n, out_op.n_out, batch_rows, &hits)
                if isfinite(loss):
                    _deltas(&net, P, G, _ptr(scratch), ws, ws, 0, n, n)
                    _param_grads(&net, NULL, NULL, G, NULL, ws, ws, n, 0, 1, PARTS_ONLY)
    finally:
        free(net.ops)
    totals[0] = <floating> loss
    totals[1] = <floating> hits
    return loss


def apply_step(plan, optimizer, const floating[::1] totals, double lr, long long step,
               double[::1] bounds, double[:, ::1] telemetry=None):
    """One optimizer step from the (already summed) gradient in plan.grads, as train_epoch
    makes it: clipping and L1 if set, then the rule, with learning rate ``lr`` as update
    number ``step`` (1-based). ``totals[0]`` is the batch's summed Σ w·loss: if it is not
    finite, nothing is done (train_epoch's rule). ``bounds`` carries the overflow bounds
    between calls (3 values; set bounds[0] < 0 to measure them afresh). ``telemetry``
    (n_dense x 4), if given, receives train_epoch's per-layer norms; its unit fractions
    are NaN (they need every row of the batch). Returns a status: STATUS_OK,
    STATUS_NONFINITE_LOSS, or STATUS_NONFINITE_PARAMS if the step was refused (nothing
    written)."""
    cdef OptimizerStep opt
    cdef Bounds b
    cdef int refused
    cdef Py_ssize_t l
    cdef floating[::1] params = plan.params, grads = plan.grads, state = plan.state
    cdef floating[::1] workspace = plan.workspace
    cdef floating *P = _ptr(params)
    cdef floating *G = _ptr(grads)
    cdef floating *S = _ptr(state)
    cdef Net net = _unpack(plan, params.shape[0], workspace.shape[0])
    try:
        _check_buffers(&net, grads.shape[0], net.n_stats)
        opt = _read_optimizer(optimizer, params.shape[0], state.shape[0])
        if bounds.shape[0] != 3:
            raise ValueError("bounds must hold 3 values")
        if totals.shape[0] < 1:
            raise ValueError("totals must hold the batch's loss")
        if not isfinite(totals[0]):
            return STATUS_NONFINITE_LOSS
        if step < 1:
            raise ValueError("step must be >= 1")
        if telemetry is not None and (telemetry.shape[0] != _n_dense(&net)
                                      or telemetry.shape[1] != N_TEL):
            raise ValueError("telemetry must have shape (%d, %d)" % (_n_dense(&net), N_TEL))
        opt.lr = lr
        opt.step = step
        with nogil:
            if not bounds[0] >= 0:
                measure_bounds(P, S, net.n_params, n_slots(&opt), &b)
            else:
                b.params, b.state1, b.state2 = bounds[0], bounds[1], bounds[2]
            if telemetry is not None:
                # B = 1: the unit fractions read one (stale) workspace row; set NaN below.
                refused = _step_with_telemetry(&net, &opt, P, G, S, _ptr(workspace), 1, &b,
                                               &telemetry[0, 0])
                for l in range(telemetry.shape[0]):
                    telemetry[l, TEL_UNITS] = NAN
            else:
                refused = apply_update(&opt, P, G, S, net.n_params, net.n_weights, &b)
            bounds[0], bounds[1], bounds[2] = b.params, b.state1, b.state2
    finally:
        free(net.ops)
    return STATUS_NONFINITE_PARAMS if refused else STATUS_OK

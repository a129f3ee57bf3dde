# Included by _core.pyx: train_epoch's batches, run by a team of threads (the GIL released).
# A. Invariants: every thread of the team runs _team_epoch with the same arguments and its
#    own thread number. All take the same branches in the same order, because every
#    decision is made from values that all of them read after a meeting (barrier, _sync),
#    so each meets the others the same number of times. Thread 0 alone writes the Team's
#    results, the shared bounds and the Net's dropout keys.
# B. How a batch is split: its rows, in whole tiles of ROW_TILE, for the gather, forward,
#    loss and deltas (all row-local); features for a BatchNorm (_step.pxi _forward);
#    rows of each dW and entries of each db, γ and β for the parameter gradients, each part
#    stepped by the thread that computed it. Every value is computed by one thread with the
#    arithmetic of the whole batch (each sum over rows runs in row order, each product
#    part makes the whole product's choice of C loop or BLAS: _blas.pxd E), and the loss
#    is summed tile by tile in order, so the result does not depend on the team's size.
#    Meetings per batch: after the deltas, after the step (two more around each BatchNorm
#    forward and backward, and two for a step that needs the whole gradient at once).
#    With tm.by_weights (scikit-learn's sample-weight rule) every thread sums the batch's
#    weights itself, over all its rows in order, so all hold the same divisor.
# C. Why one parallel region per call, not per batch: opening a region costs microseconds,
#    a meeting well under one, and a step of the tiny benchmark network ~10 µs. BLAS must
#    run single-threaded inside the team (the caller sets it): the team is the parallelism.
cdef extern from "_team.h":
    void fastbp_barrier() noexcept nogil
    int fastbp_team_size() noexcept nogil
    int fastbp_thread_number() noexcept nogil

cdef enum:
    ROW_TILE = 8   # rows per tile: threads take whole tiles, and the loss is summed per tile


cdef struct Team:
    Net *net
    const OptimizerStep *opt
    const double *rates
    Py_ssize_t row0, end, batch_size, n_features, y_cols
    long long first_step, training_step
    bint by_weights       # a weighted batch's loss, gradient and L2 term over Σw, not rows
    double *telemetry     # n_dense x N_TEL for the call's last batch, or NULL
    double *tile_loss     # per tile of the batch: Σ w·loss over its rows
    double *tile_hits
    double *maxima        # per thread: 2 per op (_bound_maxima), then max|g| of its parts
    Bounds bounds         # the carried bounds; thread 0 shares them after a whole step
    int refused           # thread 0 shares a whole step's outcome
    int status            # results, written by thread 0
    Py_ssize_t n_batches
    double loss_sum, hits
    # sparse input: per thread, the fused step's scratch (_op_sparse.pxd), or NULL
    Py_ssize_t *sparse_index   # n_in + 1 counts, then sparse_entries rows
    void *sparse_values        # sparse_entries values, then a block
    Py_ssize_t sparse_entries, sparse_block


cdef _sparse_scratch(Team *tm, const SparseInput *sp, const Py_ssize_t *order, Py_ssize_t row0,
                     Py_ssize_t end, Py_ssize_t batch_size, Py_ssize_t n_in, Py_ssize_t n_out,
                     int n_threads, size_t value_size):
    """Allocate each thread's scratch for sparse_weight_step (once per call)."""
    tm.sparse_entries = sparse_batch_entries(sp, order, row0, end, batch_size)
    tm.sparse_block = max(<Py_ssize_t> SPARSE_BLOCK_ELEMENTS, n_out)
    tm.sparse_index = <Py_ssize_t *> malloc(
        n_threads * (n_in + 1 + tm.sparse_entries) * sizeof(Py_ssize_t))
    tm.sparse_values = malloc(n_threads * (tm.sparse_entries + tm.sparse_block) * value_size)
    if tm.sparse_index == NULL or tm.sparse_values == NULL:
        raise MemoryError()


cdef inline Py_ssize_t _team_slots(Net *net) noexcept nogil:
    return 2 * net.n_ops + 1


cdef double _weight_scale(const floating *weights, const Py_ssize_t *idx, Py_ssize_t start,
                          Py_ssize_t B) noexcept nogil:
    """B / Σw over the batch's rows (summed in row order), the factor that turns the rows
    rule's divisor B into scikit-learn's Σw; 0 for a batch whose weights are all 0 (it then
    adds no loss or gradient, where scikit-learn would divide 0 by 0)."""
    cdef Py_ssize_t i
    cdef double total = 0
    for i in range(B):
        total += weights[idx[i]] if idx != NULL else weights[start + i]
    return B / total if total > 0 else 0.0


cdef double _tile_loss(Net *net, floating *ws, const floating *Y, Py_ssize_t y_cols,
                       const Py_ssize_t *labels, const Py_ssize_t *idx,
                       const floating *weights, double scale, Py_ssize_t start,
                       Py_ssize_t a, Py_ssize_t rows, Py_ssize_t B,
                       double *hits) noexcept nogil:
    """The fused loss and output delta of rows a:a+rows of the batch that starts at row
    ``start`` (of ``order`` through idx, or of X); returns Σ scale·w·loss over them."""
    cdef Op *last = &net.ops[net.n_ops - 1]
    cdef floating *Z = ws + last.out + a * last.n_out
    cdef const floating *K = ws + last.z + a * last.n_out if last.z >= 0 else NULL
    if idx != NULL:
        return weighted_loss_backward(net.loss, last.act, Z, K, Y, labels, idx + a, weights,
                                      scale, rows, last.n_out, B, hits)
    return weighted_loss_backward(
        net.loss, last.act, Z, K, Y + (start + a) * y_cols if Y != NULL else NULL,
        labels + start + a if labels != NULL else NULL, NULL,
        weights + start + a if weights != NULL else NULL, scale, rows, last.n_out, B, hits)


cdef void _bound_maxima(Net *net, const floating *G, floating *ws, const floating *Xb,
                        Py_ssize_t r0, Py_ssize_t r1, int t, int n, double gather_max,
                        double *mine) noexcept nogil:
    """This thread's share of what the fused step's gradient bound needs (_combine_bound):
    per op, max|δ| and max|input| over its rows (the gather's max where it took one,
    gather_max >= 0), or a BatchNorm's max|dγ|, |dβ| over its features."""
    cdef Py_ssize_t i, j0, j1
    cdef Op *op
    for i in range(net.n_ops):
        op = &net.ops[i]
        mine[2 * i] = mine[2 * i + 1] = 0
        if op.p0 < 0:
            continue
        if op.kind == OP_BATCHNORM:
            _part(op.n_in, t, n, &j0, &j1)
            mine[2 * i] = _worse(max_magnitude(G + op.p0 + j0, j1 - j0),
                                 max_magnitude(G + op.p1 + j0, j1 - j0))
            continue
        mine[2 * i] = max_magnitude(ws + op.dout + r0 * op.n_out, (r1 - r0) * op.n_out)
        if op.kind == OP_LAYERNORM:
            continue
        if op.in_loc == LOC_BATCH and gather_max >= 0:
            mine[2 * i + 1] = gather_max if r1 > r0 else 0
        else:
            mine[2 * i + 1] = max_magnitude(at(op.in_loc, ws, Xb) + r0 * op.n_in,
                                            (r1 - r0) * op.n_in)


cdef double _combine_bound(Net *net, const double *maxima, Py_ssize_t slots, int n,
                           Py_ssize_t B) noexcept nogil:
    """A bound on every parameter gradient of the batch before they are computed, from all
    threads' _bound_maxima: a Dense layer's dW and db each sum B products of an input (at
    most max|input|) and a delta (at most max|δ|); a LayerNorm's dγ and dβ sum B products of
    δ and x̂, and |x̂| <= sqrt(n); BatchNorm's exist already. inf if any is not finite."""
    cdef Py_ssize_t i
    cdef int k
    cdef Op *op
    cdef double bound = 0, deltas, inputs
    for i in range(net.n_ops):
        op = &net.ops[i]
        if op.p0 < 0:
            continue
        deltas = inputs = 0
        for k in range(n):
            deltas = _worse(deltas, maxima[k * slots + 2 * i])
            inputs = _worse(inputs, maxima[k * slots + 2 * i + 1])
        if op.kind == OP_LAYERNORM:
            inputs = sqrt(<double> op.n_in)
        if not (isfinite(deltas) and isfinite(inputs)):
            return INFINITY
        bound = max(bound, deltas if op.kind == OP_BATCHNORM else B * deltas * max(inputs, 1.0))
    return bound


cdef void _step_parts(Net *net, const OptimizerStep *opt, floating *P, floating *G,
                      floating *S, int t, int n) noexcept nogil:
    """The rule over thread t's parts of the gradients (_param_grads' split), computed."""
    cdef Py_ssize_t i, i0, i1, j0, j1
    cdef Op *op
    cdef double moved
    for i in range(net.n_ops):
        op = &net.ops[i]
        if op.p0 < 0:
            continue
        _part(op.n_out if op.kind == OP_DENSE else op.n_in, t, n, &j0, &j1)
        if op.kind == OP_DENSE:
            _part(op.n_in, t, n, &i0, &i1)
            rule_range(opt, P, G, S, net.n_params, op.p0 + i0 * op.n_out,
                       (i1 - i0) * op.n_out, True, True, &moved)
        else:
            rule_range(opt, P, G, S, net.n_params, op.p0 + j0, j1 - j0, False, True, &moved)
        rule_range(opt, P, G, S, net.n_params, op.p1 + j0, j1 - j0, False, True, &moved)


cdef int _whole_step(Team *tm, Net *net, OptimizerStep *opt, floating *P, floating *G,
                     floating *S, floating *ws, Py_ssize_t B, Bounds *bounds, bint telemetry,
                     int t, int n) noexcept nogil:
    """The step that needs the whole gradient at once (clipping, L1, telemetry, or a
    bound near overflow: apply_rule's exact way), on thread 0 while the others wait;
    returns 1 if it was refused. Every thread's gradient parts must be done."""
    _sync(n)
    if t == 0:
        if telemetry:
            tm.refused = _step_with_telemetry(net, opt, P, G, S, ws, B, bounds, tm.telemetry)
        else:
            tm.refused = apply_update(opt, P, G, S, net.n_params, net.n_weights, bounds)
        tm.bounds = bounds[0]
    _sync(n)
    bounds[0] = tm.bounds
    return tm.refused


cdef void _team_epoch(Team *tm, floating *P, floating *G, floating *S, floating *R,
                      floating *T, floating *ws, const floating *X, const floating *Y,
                      const Py_ssize_t *labels, const Py_ssize_t *order,
                      const floating *weights) noexcept nogil:
    """The batches of rows tm.row0:tm.end, on this thread of the team (A, B)."""
    cdef int t = fastbp_thread_number(), n = fastbp_team_size(), refused
    cdef Net own = tm.net[0]  # a copy: each thread points its sparse input at its batch
    cdef Net *net = &own
    cdef bint sparse = net.sparse.indptr != NULL
    cdef Py_ssize_t n_index = net.ops[0].n_in + 1 + tm.sparse_entries
    cdef OptimizerStep opt = tm.opt[0]
    cdef Bounds bounds = tm.bounds, after
    cdef Py_ssize_t F = tm.n_features, start = tm.row0, B, r0, r1, a, b, k, n_tiles
    cdef Py_ssize_t n_batches = 0, slots = _team_slots(net), next_rows, q0, q1
    cdef const Py_ssize_t *idx
    cdef const floating *Xb
    cdef double *mine = tm.maxima + t * slots
    cdef double loss, hits, gather_max, g_max, scale = 1.0
    cdef bint input_known, telemetry, whole, fused, last_batch
    if sparse and tm.sparse_index != NULL:
        net.sparse.counts = tm.sparse_index + t * n_index
        net.sparse.entry_rows = net.sparse.counts + net.ops[0].n_in + 1
        net.sparse.entry_values = (<floating *> tm.sparse_values
                                   + t * (tm.sparse_entries + tm.sparse_block))
        net.sparse.block = <floating *> net.sparse.entry_values + tm.sparse_entries
    while start < tm.end:
        B = min(tm.batch_size, tm.end - start)
        last_batch = start + B >= tm.end
        idx = order + start if order != NULL else NULL
        n_tiles = (B + ROW_TILE - 1) // ROW_TILE
        _part(n_tiles, t, n, &a, &b)
        r0, r1 = a * ROW_TILE, min(b * ROW_TILE, B)
        gather_max = -1
        if sparse:  # nothing to gather: the first op reads X's rows where they are
            Xb = NULL
            net.sparse.rows, net.sparse.first = idx, start
            gather_max = sparse_max_magnitude(&net.sparse, <const floating *> net.sparse.values,
                                              r0, r1)
        elif idx != NULL:
            Xb = ws
            if r1 > r0:
                gather_max = gather(X, idx + r0, r1 - r0, F, ws + r0 * F)
        else:
            Xb = X + start * F
        input_known = sparse or (idx != NULL and F >= GATHER_MAX_ROW_LENGTH
                                 and net.ops[0].kind == OP_DENSE)
        # Telemetry and the gradient transforms want g whole before the step.
        telemetry = tm.telemetry != NULL and last_batch
        whole = transforms_gradients(&opt) or telemetry
        fused = not whole and _fusing_pays(net, B, input_known)

        if tm.by_weights and weights != NULL:
            scale = _weight_scale(weights, idx, start, B)
            # the L2 term is over Σw too (none for a batch of weight 0: scale is 0)
            opt.weight_decay = tm.opt.weight_decay * scale
        _forward(net, P, T, ws, Xb, r0, r1, NULL, B, t, n)
        for k in range(a, b):
            tm.tile_hits[k] = 0
            tm.tile_loss[k] = _tile_loss(net, ws, Y, tm.y_cols, labels, idx, weights, scale,
                                         start, k * ROW_TILE, min(ROW_TILE, B - k * ROW_TILE),
                                         B, &tm.tile_hits[k])
        _deltas(net, P, G, T, ws, Xb, r0, r1, B, t, n)
        if fused:
            _bound_maxima(net, G, ws, Xb, r0, r1, t, n,
                          gather_max if input_known else -1, mine)
        if idx != NULL and not sparse and not last_batch:
            # Start loading this thread's rows of the next batch now, so they arrive while
            # the parameter gradients and the step run (measured against a prefetch right
            # after the gather: 5 µs a step faster on the small benchmark network, 55 on
            # the medium one).
            next_rows = min(tm.batch_size, tm.end - start - B)
            _part((next_rows + ROW_TILE - 1) // ROW_TILE, t, n, &q0, &q1)
            q0, q1 = q0 * ROW_TILE, min(q1 * ROW_TILE, next_rows)
            if q1 > q0:
                prefetch_rows(X, idx + B + q0, q1 - q0, F)
        _sync(n)  # every row's deltas exist

        loss = hits = 0
        for k in range(n_tiles):
            loss += tm.tile_loss[k]
            hits += tm.tile_hits[k]
        loss = loss / B
        if not isfinite(loss):
            if t == 0:
                tm.status = STATUS_NONFINITE_LOSS
            break
        if t == 0 and net.dropping and not last_batch:
            _set_keys(net, tm.training_step + n_batches + 1)  # nobody reads them until _sync
        opt.lr = tm.rates[n_batches]
        opt.step = tm.first_step + n_batches + 1
        after.params = 0.5 * (FLT_MAX if floating is float else DBL_MAX)
        if fused and bounded(&opt, _combine_bound(net, tm.maxima, slots, n, B), &bounds,
                             &after):
            _param_grads(net, &opt, P, G, S, ws, Xb, B, t, n, PARTS_STEP)
            bounds = after
            refused = 0
        elif whole or fused:  # fused but near overflow: the exact way
            _param_grads(net, &opt, P, G, S, ws, Xb, B, t, n, PARTS_ONLY)
            refused = _whole_step(tm, net, &opt, P, G, S, ws, B, &bounds, telemetry, t, n)
        else:
            mine[slots - 1] = _param_grads(net, &opt, P, G, S, ws, Xb, B, t, n, PARTS_MAX)
            _sync(n)
            g_max = 0
            for k in range(n):
                g_max = _worse(g_max, tm.maxima[k * slots + slots - 1])
            if bounded(&opt, g_max, &bounds, &after):
                _step_parts(net, &opt, P, G, S, t, n)
                bounds = after
                refused = 0
            else:
                refused = _whole_step(tm, net, &opt, P, G, S, ws, B, &bounds, False, t, n)
        if refused:
            if t == 0:
                tm.status = STATUS_NONFINITE_PARAMS
            break
        if t == 0:
            if not net.row_local:
                _update_running(net, R, T, B)
            tm.loss_sum += loss * B
            tm.hits += hits
            tm.n_batches += 1
        n_batches += 1
        start += B
        _sync(n)  # the step is done before the next batch's gather and forward
    if t == 0:  # every thread carried the same bounds; train_epoch may hand them on
        tm.bounds = bounds


cdef void _team_infer(Net *net, const floating *P, floating *T, floating *ws,
                      const floating *X, Py_ssize_t n_rows, floating *out, bint apply_output,
                      const floating *Y, Py_ssize_t y_cols, const Py_ssize_t *labels,
                      const floating *weights, double *tile_loss, double *tile_hits,
                      double *total) noexcept nogil:
    """Every row of X through the network (inference: row-local ops only), in chunks of the
    workspace's capacity, on this thread of the team: each chunk's rows split by tiles. With
    ``out``, the outputs go there (with apply_output, softmax/sigmoid as the loss implies);
    without, thread 0 adds the tiles' Σ w·loss and hits to total[0], total[1], tile by tile
    in order, as _team_epoch does."""
    cdef int t = fastbp_thread_number(), n = fastbp_team_size()
    cdef Net own = net[0]  # a copy: each thread points its sparse input at its chunk
    cdef bint sparse = own.sparse.indptr != NULL
    cdef Op *last = &net.ops[net.n_ops - 1]
    cdef Py_ssize_t F = net.ops[0].n_in, n_out = last.n_out, start = 0, B, a, b, k, r0, r1
    cdef Py_ssize_t row, rows
    while start < n_rows:
        B = min(net.capacity, n_rows - start)
        _part((B + ROW_TILE - 1) // ROW_TILE, t, n, &a, &b)
        r0, r1 = a * ROW_TILE, min(b * ROW_TILE, B)
        own.sparse.rows, own.sparse.first = NULL, start
        _forward(&own, P, T, ws, NULL if sparse else X + start * F, r0, r1,
                 out + start * n_out if out != NULL else NULL, B, t, n)
        if out != NULL:
            if apply_output and r1 > r0:
                output_activation(net.loss, out + (start + r0) * n_out, r1 - r0, n_out)
        else:
            for k in range(a, b):
                row, rows = k * ROW_TILE, min(ROW_TILE, B - k * ROW_TILE)
                tile_hits[k] = 0
                tile_loss[k] = weighted_loss_backward(
                    net.loss, last.act, ws + last.out + row * n_out,
                    ws + last.z + row * n_out if last.z >= 0 else NULL,
                    Y + (start + row) * y_cols if Y != NULL else NULL,
                    labels + start + row if labels != NULL else NULL, NULL,
                    weights + start + row if weights != NULL else NULL, 1.0, rows, n_out, B,
                    &tile_hits[k])
            _sync(n)
            if t == 0:
                for k in range((B + ROW_TILE - 1) // ROW_TILE):
                    total[0] += tile_loss[k]
                    total[1] += tile_hits[k]
        _sync(n)  # the chunk is done before the next one reuses the workspace
        start += B

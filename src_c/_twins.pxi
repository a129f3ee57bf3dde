# Included by _core.pyx, so that each compiled build (baseline, AVX2, AVX-512) has them:
# the def twins of the inline kernels, used only by tests and benchmarks/small_gemm.py.
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
    _check_kept(act if loss not in (LOSS_CROSS_ENTROPY, LOSS_BINARY_CROSS_ENTROPY, LOSS_POISSON)
                else ACT_IDENTITY, K.size, Z.size)
    return loss_backward(loss, act, &Z[0, 0], _cptr2(K), _cptr2(Y), _iptr(labels), NULL,
                         Z.shape[0], Z.shape[1], Z.shape[0], &hits) / Z.shape[0]


def _twin_output_activation(int loss, floating[:, ::1] Z):
    output_activation(loss, &Z[0, 0], Z.shape[0], Z.shape[1])


def _twin_colsum(const floating[:, ::1] D, floating[::1] out, int parts=1):
    """out = Σ_rows D, as ``parts`` column ranges summed one after the other (a team's split)."""
    cdef int t
    for t in range(parts):
        colsum(&D[0, 0], D.shape[0], D.shape[1], &out[0], D.shape[1] * t // parts,
               D.shape[1] * (t + 1) // parts)


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


cdef Op _twin_op(int kind, Py_ssize_t n, bint affine, double eps, double momentum,
                 Py_ssize_t B):
    """An op over workspace blocks [Y | dY | dX | per-row figures] of B x n, its γ and β at
    the parameter offsets 0 and n (none without affine), its scratch at 0."""
    cdef Op op
    op.kind, op.act, op.n_in, op.n_out = kind, 0, n, n
    op.p0 = 0 if affine else -1
    op.p1 = n if affine else -1
    op.out, op.dout, op.din, op.z = 0, B * n, 2 * B * n, -1
    op.aux = 3 * B * n if kind == OP_LAYERNORM else 0
    op.stats, op.partner, op.eps, op.momentum = 0, -1, eps, momentum
    return op


def _twin_norm(int kind, const floating[:, ::1] X, const floating[::1] gamma_beta,
               const floating[:, ::1] dY, floating[:, ::1] Y, floating[:, ::1] dX,
               floating[::1] grads, floating[::1] running, double eps, double momentum,
               int parts=1):
    """One BatchNorm (kind OP_BATCHNORM, training mode, then the running-statistics update)
    or LayerNorm (OP_LAYERNORM) over the rows of X through its forward and backward
    kernels: Y, dX = dLoss/dX given dY, grads = (dγ, dβ) if gamma_beta (γ then β) is not
    empty; running = (mean, variance), BatchNorm's, updated in place. The kernels that
    take feature ranges run as ``parts`` ranges one after the other (a team's split)."""
    cdef Py_ssize_t B = X.shape[0], n = X.shape[1]
    cdef int t
    cdef bint affine = gamma_beta.shape[0] > 0
    cdef Op op = _twin_op(kind, n, affine, eps, momentum, B)
    work = np.zeros(3 * B * n + 2 * B, dtype=np.asarray(X).dtype)
    cdef floating[::1] ws = work
    cdef floating[::1] T = np.zeros(5 * n, dtype=np.asarray(X).dtype)
    if (Y.shape[0] != B or Y.shape[1] != n or dY.shape[0] != B or dY.shape[1] != n
            or dX.shape[0] != B or dX.shape[1] != n or (affine and gamma_beta.shape[0] != 2 * n)
            or (affine and grads.shape[0] != 2 * n) or not kind in (OP_BATCHNORM, OP_LAYERNORM)
            or (kind == OP_BATCHNORM and B < 2)
            or (kind == OP_BATCHNORM and running.shape[0] != 2 * n)):
        raise ValueError("inconsistent shapes")
    work[B * n:2 * B * n] = np.asarray(dY).ravel()
    if kind == OP_BATCHNORM:
        for t in range(parts):
            batchnorm_forward_train(&op, &gamma_beta[0] if affine else NULL, &T[0], &X[0, 0],
                                    &ws[0], B, n * t // parts, n * (t + 1) // parts)
        for t in range(parts):
            batchnorm_backward(&op, &gamma_beta[0] if affine else NULL,
                               &grads[0] if affine else NULL, &T[0], &X[0, 0], &ws[0], B,
                               n * t // parts, n * (t + 1) // parts)
        batchnorm_update_running(&op, &running[0], &T[0], B)
    else:
        layernorm_forward(&op, &gamma_beta[0] if affine else NULL, &X[0, 0], &ws[0], 0, B)
        layernorm_backward(&op, &gamma_beta[0] if affine else NULL, &X[0, 0], &ws[0], 0, B)
        for t in range(parts if affine else 0):
            layernorm_param_grads(&op, &grads[0], &X[0, 0], &ws[0], B, n * t // parts,
                                  n * (t + 1) // parts)
    np.asarray(Y)[...] = work[:B * n].reshape(B, n)
    np.asarray(dX)[...] = work[2 * B * n:3 * B * n].reshape(B, n)


def _twin_batchnorm_infer(const floating[:, ::1] X, const floating[::1] gamma_beta,
                          const floating[::1] running, floating[:, ::1] Y, double eps):
    """BatchNorm's inference forward (running statistics) through its kernels."""
    cdef Py_ssize_t B = X.shape[0], n = X.shape[1]
    cdef bint affine = gamma_beta.shape[0] > 0
    cdef Op op = _twin_op(OP_BATCHNORM, n, affine, eps, 0.1, B)
    cdef floating[::1] T = np.zeros(5 * n, dtype=np.asarray(X).dtype)
    if Y.shape[0] != B or Y.shape[1] != n or running.shape[0] != 2 * n or B < 1:
        raise ValueError("inconsistent shapes")
    batchnorm_prepare_inference(&op, &gamma_beta[0] if affine else NULL, &running[0], &T[0])
    batchnorm_forward_infer(&op, &T[0], &X[0, 0], &Y[0, 0], 0, B)


def _twin_act_copy(const floating[::1] X, floating[::1] A, int act):
    """A = act(X) through the standalone Activation op's kernel."""
    if A.shape[0] != X.shape[0]:
        raise ValueError("X and A must have the same length")
    if X.shape[0]:
        act_copy(&X[0], &A[0], X.shape[0], act)


def _twin_residual(const floating[:, ::1] X, const floating[:, ::1] S,
                   const floating[:, ::1] dY, floating[:, ::1] Y, floating[:, ::1] dS):
    """y = X + S (a block's add), then the skip's share: dS = dS (the branch's) + dY,
    through residual_add_forward, residual_add_backward and residual_begin_backward."""
    cdef Py_ssize_t B = X.shape[0], n = X.shape[1]
    cdef Op add = _twin_op(OP_RESIDUAL_ADD, n, False, 1.0, 0.0, B)
    cdef Op begin = _twin_op(OP_RESIDUAL_BEGIN, n, False, 1.0, 0.0, B)
    work = np.zeros(3 * B * n, dtype=np.asarray(X).dtype)
    cdef floating[::1] ws = work
    if (S.shape[0] != B or S.shape[1] != n or dY.shape[0] != B or dY.shape[1] != n
            or Y.shape[0] != B or Y.shape[1] != n or dS.shape[0] != B or dS.shape[1] != n):
        raise ValueError("inconsistent shapes")
    work[B * n:2 * B * n] = np.asarray(dY).ravel()   # add's dout
    residual_add_forward(&add, &X[0, 0], &S[0, 0], &ws[0], 0, B)
    residual_add_backward(&add, &ws[0], 0, B)         # into its din: the branch's delta
    np.asarray(Y)[...] = work[:B * n].reshape(B, n)
    if not np.array_equal(work[2 * B * n:], np.asarray(dY).ravel()):
        raise AssertionError("residual_add_backward did not copy dY")
    work[2 * B * n:] = np.asarray(dS).ravel()         # the branch's share of dLoss/dS
    residual_begin_backward(&begin, &add, &ws[0], 0, B)
    np.asarray(dS)[...] = work[2 * B * n:].reshape(B, n)


cdef Op _twin_sparse_op(Py_ssize_t n_in, Py_ssize_t n_out, Py_ssize_t B):
    """The sparse first layer's Dense op: W at 0, b after it; workspace [Y | δ] of B x n_out."""
    cdef Op op = _twin_op(OP_DENSE, n_in, False, 1.0, 0.0, B)
    op.n_out, op.act, op.p0, op.p1 = n_out, ACT_IDENTITY, 0, n_in * n_out
    op.out, op.dout, op.din = 0, B * n_out, -1
    return op


cdef _twin_sparse_batch(X, const floating *like, const Py_ssize_t[::1] rows, Py_ssize_t n_in,
                        SparseInput *sp):
    """X (CSR, as the core takes it) bound, its batch the given rows, each checked."""
    cdef Py_ssize_t shape[2]
    cdef Py_ssize_t r
    _bind_input(X, like, sp, shape)
    if sp.indptr == NULL or shape[1] != n_in or rows.shape[0] < 1:
        raise ValueError("X must be CSR with %d features, and rows not empty" % n_in)
    for r in range(rows.shape[0]):
        if not 0 <= rows[r] < shape[0]:
            raise ValueError("rows holds %d, X has %d rows" % (rows[r], shape[0]))
    sp.rows = &rows[0]


def _twin_sparse(X, const Py_ssize_t[::1] rows, const floating[:, ::1] W,
                 const floating[::1] b, const floating[:, ::1] D, floating[:, ::1] Y,
                 floating[:, ::1] dW, int parts=1):
    """The sparse first layer's kernels on batch rows ``rows`` of X: Y = X[rows]·W + b
    (sparse_dense_forward, in ``parts`` row ranges) and dW = X[rows]ᵀ·D
    (sparse_weight_grads, in ``parts`` ranges of dW's rows: a team's split)."""
    cdef Py_ssize_t B = rows.shape[0], n_in = W.shape[0], n_out = W.shape[1]
    cdef Op op = _twin_sparse_op(n_in, n_out, B)
    cdef SparseInput sp
    cdef int t
    params = np.concatenate([np.asarray(W).ravel(), np.asarray(b)])
    work = np.concatenate([np.zeros(B * n_out, dtype=params.dtype), np.asarray(D).ravel()])
    grads = np.zeros_like(params)
    cdef floating[::1] P = params, ws = work, G = grads
    _twin_sparse_batch(X, &W[0, 0], rows, n_in, &sp)
    if (b.shape[0] != n_out or D.shape[0] != B or D.shape[1] != n_out or Y.shape[0] != B
            or Y.shape[1] != n_out or dW.shape[0] != n_in or dW.shape[1] != n_out):
        raise ValueError("inconsistent shapes")
    for t in range(parts):
        sparse_dense_forward(&op, &sp, &P[0], &ws[0], &ws[0], B * t // parts,
                             B * (t + 1) // parts - B * t // parts)
        sparse_weight_grads(&op, &sp, &G[0], &ws[0], B, n_in * t // parts,
                            n_in * (t + 1) // parts)
    np.asarray(Y)[...] = work[:B * n_out].reshape(B, n_out)
    np.asarray(dW)[...] = grads[:n_in * n_out].reshape(n_in, n_out)


def _twin_sparse_step(optimizer, X, const Py_ssize_t[::1] rows, const floating[:, ::1] D,
                      floating[:, ::1] W, floating[::1] state, double lr, long long step,
                      int parts=1):
    """sparse_weight_step: one update of W by ``optimizer`` (its rule, decay included;
    update number ``step``) from dW = X[rows]ᵀ·D, in ``parts`` ranges of W's rows.
    ``state`` is the optimizer's state for W alone (n_slots x W.size)."""
    cdef Py_ssize_t B = rows.shape[0], n_in = W.shape[0], n_out = W.shape[1], n = W.size
    cdef Op op = _twin_sparse_op(n_in, n_out, B)
    cdef OptimizerStep opt = _read_optimizer(optimizer, n, state.shape[0])
    cdef SparseInput sp
    cdef int t
    work = np.concatenate([np.zeros(B * n_out, dtype=np.asarray(W).dtype), np.asarray(D).ravel()])
    cdef floating[::1] ws = work
    _twin_sparse_batch(X, &W[0, 0], rows, n_in, &sp)
    if D.shape[0] != B or D.shape[1] != n_out:
        raise ValueError("inconsistent shapes")
    cdef Py_ssize_t entries = sparse_batch_entries(&sp, &rows[0], 0, B, B)
    cdef Py_ssize_t[::1] index = np.zeros(n_in + 1 + entries, dtype=np.intp)
    cdef floating[::1] scratch = np.zeros(entries + max(SPARSE_BLOCK_ELEMENTS, n_out),
                                          dtype=work.dtype)
    sp.counts = &index[0]
    sp.entry_rows = &index[n_in + 1] if entries > 0 else NULL  # (checked builds index them)
    sp.entry_values = &scratch[0] if entries > 0 else NULL
    sp.block = &scratch[entries]
    opt.lr, opt.step = lr, step
    for t in range(parts):
        sparse_weight_step(&op, &sp, &opt, &W[0, 0], &state[0] if state.shape[0] else NULL,
                           n, &ws[0], B, n_in * t // parts, n_in * (t + 1) // parts)

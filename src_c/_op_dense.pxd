# A. Invariants: a Dense op is Z = X·W + b, A = act(Z), with W__io (n_in x n_out) row-major
#    at p0 and b at p1 of the flat parameters. Forward writes A into its output block (and Z
#    into its z block where the activation's derivative needs it: gelu, swish); backward
#    turns dLoss/dA into δ = dLoss/dZ in place (the loss does it for the last layer, fused
#    with softmax/sigmoid) and writes dLoss/dX = δ·Wᵀ into the input's delta block.
# B. Two backward sweeps: dense_backward is row-local (threads take rows r0:r1), and
#    dense_param_grads needs every row of the batch (dW = Xᵀ·δ, db = Σ_rows δ), so it runs
#    after all deltas exist, split by rows of dW and columns of db instead. X is the input
#    as forward read it (the dropped copy while training with dropout). B is always the
#    whole batch's rows, so a part's products run the arithmetic of the whole (_blas.pxd E).
# C. Why bias and activation in one pass: the output block is read and written once
#    (scikit-learn's MLP applies activations in place; derivatives come from the output).
from cython cimport floating
from libc.string cimport memcpy

from _ops cimport Op
from _blas cimport mm_nn, mm_nt, mm_tn, mm_tn_rows, blas_nn_cols, blas_nt_cols
from _activations cimport bias_act, act_backward


cdef inline floating *_rows(floating *ws, Py_ssize_t block, Py_ssize_t r0,
                            Py_ssize_t width) noexcept nogil:
    """Row r0 of a workspace block, or NULL for a block the op does not have (-1)."""
    return ws + block + r0 * width if block >= 0 else NULL


cdef inline void dense_forward(const Op *op, const floating *P, floating *ws,
                               const floating *X, floating *Y, Py_ssize_t r0,
                               Py_ssize_t rows, Py_ssize_t B) noexcept nogil:
    """Rows r0:r0+rows of a batch of B: Y = act(X·W + b); X and Y point at row 0 of their
    blocks."""
    cdef floating *Z = Y + r0 * op.n_out
    mm_nn(X + r0 * op.n_in, P + op.p0, Z, <int> rows, <int> op.n_in, <int> op.n_out,
          <floating> 0, <int> B)
    bias_act(Z, P + op.p1, rows, op.n_out, op.act, _rows(ws, op.z, r0, op.n_out))


cdef inline void dense_delta(const Op *op, floating *ws, Py_ssize_t r0,
                             Py_ssize_t rows) noexcept nogil:
    """Rows r0:r0+rows: δ = dLoss/dA ⊙ act' in place (unless the loss gave δ)."""
    if not op.loss_fused:
        act_backward(ws + op.dout + r0 * op.n_out, ws + op.out + r0 * op.n_out,
                     _rows(ws, op.z, r0, op.n_out), rows * op.n_out, op.act)


cdef inline void dense_backward(const Op *op, const floating *P, floating *ws,
                                Py_ssize_t r0, Py_ssize_t rows, Py_ssize_t B) noexcept nogil:
    """Rows r0:r0+rows: δ (dense_delta), then dLoss/dX = δ·Wᵀ into the input's delta block
    (if anything below needs it)."""
    dense_delta(op, ws, r0, rows)
    if op.din >= 0:
        mm_nt(ws + op.dout + r0 * op.n_out, P + op.p0, ws + op.din + r0 * op.n_in, <int> rows,
              <int> op.n_out, <int> op.n_in, <floating> 0, <int> B)


# D. Column blocks (_step.pxi _by_columns): where BLAS runs a product and W is bigger than
#    the batch's rows, a team splits it by output columns, so each thread packs only its
#    part of W (split by rows, every thread packed all of W). Every row's input (forward)
#    or δ (dX) must exist first, and every column before the next op reads a row.


cdef inline void dense_forward_cols(const Op *op, const floating *P, floating *ws,
                                    const floating *X, floating *Y, Py_ssize_t B,
                                    Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """Columns j0:j1 of Y = act(X·W + b) for all B rows."""
    cdef Py_ssize_t r
    cdef floating *K
    blas_nn_cols(X, P + op.p0, Y, <int> B, <int> op.n_in, <int> op.n_out, <int> j0, <int> j1)
    for r in range(B):
        K = _rows(ws, op.z, r, op.n_out)
        bias_act(Y + r * op.n_out + j0, P + op.p1 + j0, 1, j1 - j0, op.act,
                 K + j0 if K != NULL else NULL)


cdef inline void dense_input_grad_cols(const Op *op, const floating *P, floating *ws,
                                       Py_ssize_t B, Py_ssize_t i0,
                                       Py_ssize_t i1) noexcept nogil:
    """Columns i0:i1 of dLoss/dX = δ·Wᵀ for all B rows."""
    blas_nt_cols(ws + op.dout, P + op.p0, ws + op.din, <int> B, <int> op.n_out,
                 <int> op.n_in, <int> i0, <int> i1)


cdef enum:
    COLSUM_BLOCK_MAX_WIDTH = 256  # wider δ rows are summed in place, row by row


cdef inline Py_ssize_t _colsum_block(const floating *D__bo, Py_ssize_t B, Py_ssize_t O,
                                     floating *out__o, Py_ssize_t j0, Py_ssize_t W,
                                     Py_ssize_t j1) noexcept nogil:
    """Columns j0:j0+W of Σ_rows D if they are below j1, in a local array (with W a constant
    at each call, GCC keeps it in registers; W <= 64); returns where the next block starts."""
    cdef floating acc[64]
    cdef Py_ssize_t i, j
    cdef const floating *d
    if j0 + W > j1:
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


cdef inline void colsum(const floating *D__bo, Py_ssize_t B, Py_ssize_t O,
                        floating *out__o, Py_ssize_t j0=0, Py_ssize_t j1=-1) noexcept nogil:
    """out[j0:j1] = columns j0:j1 (j1 = -1: O) of Σ_rows D, each column summed in row order
    (so any split of the columns gives the same sums). Narrow rows go in column blocks held
    in registers (64 wide, then one each of 32, 16, ..., 1): summing into out row by row
    stored and reloaded it for every row, 104-118 ns against 14-32 ns for a 32 x 10 or
    32 x 32 δ. From 256 columns on, the row-by-row sum was as fast or faster (strided block
    reads: 128 x 512 took 2.7 µs in blocks, 2.2 row by row)."""
    cdef Py_ssize_t i, j
    cdef const floating *d
    if j1 < 0:
        j1 = O
    if j1 <= j0:
        return
    if O >= COLSUM_BLOCK_MAX_WIDTH:
        memcpy(out__o + j0, D__bo + j0, (j1 - j0) * sizeof(floating))
        for i in range(1, B):
            d = D__bo + i * O
            for j in range(j0, j1):
                out__o[j] += d[j]
        return
    while j0 + 64 <= j1:
        j0 = _colsum_block(D__bo, B, O, out__o, j0, 64, j1)
    j0 = _colsum_block(D__bo, B, O, out__o, j0, 32, j1)
    j0 = _colsum_block(D__bo, B, O, out__o, j0, 16, j1)
    j0 = _colsum_block(D__bo, B, O, out__o, j0, 8, j1)
    j0 = _colsum_block(D__bo, B, O, out__o, j0, 4, j1)
    j0 = _colsum_block(D__bo, B, O, out__o, j0, 2, j1)
    _colsum_block(D__bo, B, O, out__o, j0, 1, j1)


cdef inline void dense_param_grads(const Op *op, floating *G, floating *ws, const floating *X,
                                   Py_ssize_t B, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t j0,
                                   Py_ssize_t j1) noexcept nogil:
    """Rows i0:i1 of dW = Xᵀ·δ (a contiguous range of the flat gradient) and entries j0:j1
    of db = Σ_rows δ: one thread's part (B)."""
    if i0 == 0 and i1 == op.n_in:
        mm_tn(X, ws + op.dout, G + op.p0, <int> op.n_in, <int> B, <int> op.n_out,
              <floating> 0)
    else:
        mm_tn_rows(X, ws + op.dout, G + op.p0, <int> op.n_in, <int> B, <int> op.n_out,
                   <int> i0, <int> i1)
    colsum(ws + op.dout, B, op.n_out, G + op.p1, j0, j1)

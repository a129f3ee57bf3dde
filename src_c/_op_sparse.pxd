# A. Invariants: with sparse input (Net.sparse.indptr not NULL) the first op is a Dense layer
#    and the only op that reads the batch; X is never gathered or densified. Batch row r is
#    row sparse_row(sp, r) of X, whose entries (column, value) are CSR entries
#    indptr[x]:indptr[x+1] (duplicates add up, as scipy's products do). Every index was
#    checked against X's shape before the loops run (_core.pyx _bind_input).
# B. Layout: the weights W__io (n_in x n_out, row-major) as for any Dense op (_op_dense.pxd);
#    forward reads only the rows of W that a batch row's entries name, and dW = Xᵀ·δ writes
#    every row of its part: zero where the batch has no entry in that column.
# C. Why CSR rows and no BLAS: a TF-IDF row holds ~0.2% non-zeros, so a row's output is a
#    short sum of rows of W (an axpy per entry), and the products of the densified batch
#    would spend ~500x the arithmetic on zeros. Each output element and each dW element sums
#    its terms in batch-row order, whatever the team's split, so results do not depend on
#    the number of threads.
from cython cimport floating
from libc.string cimport memset

from _ops cimport Op, SparseInput
from _activations cimport bias_act


cdef inline Py_ssize_t sparse_row(const SparseInput *sp, Py_ssize_t r) noexcept nogil:
    """Row of X that is row r of the current batch."""
    return sp.rows[r] if sp.rows != NULL else sp.first + r


cdef inline void sparse_dense_forward(const Op *op, const SparseInput *sp, const floating *P,
                                      floating *ws, floating *Y, Py_ssize_t r0,
                                      Py_ssize_t rows) noexcept nogil:
    """Rows r0:r0+rows of Y = act(X·W + b), X the batch's sparse rows; Y points at row 0."""
    cdef const floating *values = <const floating *> sp.values
    cdef const floating *W = P + op.p0
    cdef const floating *w
    cdef floating *z
    cdef floating v
    cdef Py_ssize_t r, k, j, x, n_out = op.n_out
    for r in range(r0, r0 + rows):
        x = sparse_row(sp, r)
        z = Y + r * n_out
        for j in range(n_out):
            z[j] = 0
        for k in range(sp.indptr[x], sp.indptr[x + 1]):
            v = values[k]
            w = W + sp.indices[k] * n_out
            for j in range(n_out):
                z[j] += v * w[j]
    bias_act(Y + r0 * n_out, P + op.p1, rows, n_out, op.act,
             ws + op.z + r0 * n_out if op.z >= 0 else NULL)


cdef inline void sparse_weight_grads(const Op *op, const SparseInput *sp, floating *G,
                                     const floating *ws, Py_ssize_t B, Py_ssize_t i0,
                                     Py_ssize_t i1) noexcept nogil:
    """Rows i0:i1 of dW = Xᵀ·δ over the B rows of the batch (one thread's part): zeroed,
    then each entry (r, column c, value v) with i0 <= c < i1 adds v·δ[r] to row c."""
    cdef const floating *values = <const floating *> sp.values
    cdef const floating *d
    cdef floating *g
    cdef floating v
    cdef Py_ssize_t r, k, j, c, x, n_out = op.n_out
    cdef floating *dW = G + op.p0
    if i1 <= i0:
        return
    memset(dW + i0 * n_out, 0, (i1 - i0) * n_out * sizeof(floating))
    for r in range(B):
        x = sparse_row(sp, r)
        d = ws + op.dout + r * n_out
        for k in range(sp.indptr[x], sp.indptr[x + 1]):
            c = sp.indices[k]
            if c < i0 or c >= i1:
                continue
            v = values[k]
            g = dW + c * n_out
            for j in range(n_out):
                g[j] += v * d[j]


cdef inline double sparse_max_magnitude(const SparseInput *sp, const floating *values,
                                        Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """max|x| over the entries of batch rows r0:r1 (the fused step's input bound);
    ``values`` is sp.values in the plan's dtype."""
    cdef Py_ssize_t r, k, x
    cdef double m = 0, a
    for r in range(r0, r1):
        x = sparse_row(sp, r)
        for k in range(sp.indptr[x], sp.indptr[x + 1]):
            a = values[k] if values[k] >= 0 else -values[k]
            if a > m:
                m = a
    return m

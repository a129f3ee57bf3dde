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
from _optim cimport OptimizerStep, _rule, n_slots

cdef enum:
    SPARSE_BLOCK_ELEMENTS = 8192  # a block of dW rows that stays in L1/L2 while stepped


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


cdef inline Py_ssize_t sparse_batch_entries(const SparseInput *sp, const Py_ssize_t *order,
                                            Py_ssize_t row0, Py_ssize_t end,
                                            Py_ssize_t batch_size) noexcept nogil:
    """The most entries any batch of rows row0:end (of order, or of X) holds: what each
    thread's entry arrays must hold for sparse_weight_step."""
    cdef Py_ssize_t start, r, x, total, most = 0
    start = row0
    while start < end:
        total = 0
        for r in range(start, min(start + batch_size, end)):
            x = order[r] if order != NULL else r
            total += sp.indptr[x + 1] - sp.indptr[x]
        most = max(most, total)
        start += batch_size
    return most


cdef inline void sparse_weight_step(const Op *op, const SparseInput *sp,
                                    const OptimizerStep *opt, floating *P, floating *S,
                                    Py_ssize_t n_params, const floating *ws, Py_ssize_t B,
                                    Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    """Rows i0:i1 of dW = Xᵀ·δ, each block of rows stepped by the optimizer while it is in
    cache, without writing dW to the gradient buffer: the fused step's way for the sparse
    layer (the separate pass over a 50,000 x 256 dW wrote, reread and stepped 51 MB a
    batch). The batch's entries in columns i0:i1 are first sorted by column (counting
    sort, rows in order), so each dW row sums its terms in batch-row order, as
    sparse_weight_grads does: the same values, bitwise."""
    cdef const floating *values = <const floating *> sp.values
    cdef floating *entry_values = <floating *> sp.entry_values
    cdef floating *block = <floating *> sp.block
    cdef Py_ssize_t *counts = sp.counts
    cdef Py_ssize_t r, k, j, c, c0, c1, x, e, n_out = op.n_out, slots = n_slots(opt)
    cdef Py_ssize_t block_rows = max(1, SPARSE_BLOCK_ELEMENTS // n_out), start
    cdef const floating *d
    cdef floating *g
    cdef floating v
    cdef double moved
    if i1 <= i0:
        return
    for c in range(i1 - i0 + 1):
        counts[c] = 0
    for r in range(B):  # counts[c - i0 + 1]: column c's entries
        x = sparse_row(sp, r)
        for k in range(sp.indptr[x], sp.indptr[x + 1]):
            c = sp.indices[k]
            if i0 <= c < i1:
                counts[c - i0 + 1] += 1
    for c in range(i1 - i0):  # counts[c - i0]: where column c's entries start
        counts[c + 1] += counts[c]
    for r in range(B):  # place them in row order; counts[c - i0] becomes where they end
        x = sparse_row(sp, r)
        for k in range(sp.indptr[x], sp.indptr[x + 1]):
            c = sp.indices[k]
            if i0 <= c < i1:
                e = counts[c - i0]
                sp.entry_rows[e] = r
                entry_values[e] = values[k]
                counts[c - i0] = e + 1
    e = 0
    c0 = i0
    while c0 < i1:
        c1 = min(c0 + block_rows, i1)
        for c in range(c0, c1):
            g = block + (c - c0) * n_out
            for j in range(n_out):
                g[j] = 0
            while e < counts[c - i0]:
                v = entry_values[e]
                d = ws + op.dout + sp.entry_rows[e] * n_out
                for j in range(n_out):
                    g[j] += v * d[j]
                e += 1
        start = op.p0 + c0 * n_out
        _rule(opt, P + start, block, S + start if slots >= 1 else NULL,
              S + n_params + start if slots >= 2 else NULL,
              S + 2 * n_params + start if slots >= 3 else NULL, (c1 - c0) * n_out, True, True,
              &moved)
        c0 = c1

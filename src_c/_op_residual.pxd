# A. Invariants: a residual block y = x + f(x) is two ops around its branch's ops: begin
#    (a pass-through where the branch starts; partner = its add) and add (partner = its
#    begin). add's output is a block of its own; begin's output is its input x.
# B. Backward: add copies dLoss/dy into the branch output's delta (the branch's ops may
#    scale that block in place, so dLoss/dy itself must stay in add's dout); when the
#    branch has written dLoss/dx through f into x's delta block, begin adds dLoss/dy to it:
#    dLoss/dx = dLoss/dy + (∂f/∂x)ᵀ·dLoss/dy. All of it is row-local.
# C. Why two ops and not one with a sub-list: the loop stays flat (darknet's shortcut layer
#    likewise adds an earlier layer's output), nested blocks are just nested pairs.
from cython cimport floating
from libc.string cimport memcpy

from _ops cimport Op


cdef inline void residual_add_forward(const Op *op, const floating *X, const floating *S,
                                      floating *ws, Py_ssize_t r0,
                                      Py_ssize_t rows) noexcept nogil:
    """Rows r0:r0+rows: y = branch output X + block input S."""
    cdef Py_ssize_t i, n = rows * op.n_in
    cdef const floating *x = X + r0 * op.n_in
    cdef const floating *s = S + r0 * op.n_in
    cdef floating *y = ws + op.out + r0 * op.n_in
    for i in range(n):
        y[i] = x[i] + s[i]


cdef inline void residual_add_backward(const Op *op, floating *ws, Py_ssize_t r0,
                                       Py_ssize_t rows) noexcept nogil:
    """The branch output's delta = dLoss/dy (a copy: see B)."""
    memcpy(ws + op.din + r0 * op.n_in, ws + op.dout + r0 * op.n_in,
           rows * op.n_in * sizeof(floating))


cdef inline void residual_begin_backward(const Op *op, const Op *add, floating *ws,
                                         Py_ssize_t r0, Py_ssize_t rows) noexcept nogil:
    """x's delta += dLoss/dy, the skip connection's share."""
    cdef Py_ssize_t i, n = rows * op.n_in
    cdef floating *d = ws + op.din + r0 * op.n_in
    cdef const floating *dy = ws + add.dout + r0 * op.n_in
    for i in range(n):
        d[i] += dy[i]

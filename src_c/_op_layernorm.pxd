# A. Invariants: torch.nn.LayerNorm over the feature axis: per row, mean and biased variance
#    of its n features, x̂ = (x - mean)·rstd with rstd = 1/sqrt(var + eps), y = γ·x̂ + β
#    (γ, β at p0, p1, shared by all rows; none without elementwise_affine). Training and
#    inference compute the same thing.
# B. Layout: the workspace keeps (mean, rstd) per row at aux (two values a row), so backward
#    recomputes x̂ from the intact input. Forward and the input's delta are row-local;
#    dγ = Σ_rows δ·x̂ and dβ = Σ_rows δ need every row, so they run in the parameter sweep
#    with the Dense layers' dW (layernorm_param_grads).
# C. Row statistics accumulate in double: one scalar sum per row, whatever the width.
from cython cimport floating
from libc.math cimport sqrt

from _ops cimport Op


cdef inline void layernorm_forward(const Op *op, const floating *P, const floating *X,
                                   floating *ws, Py_ssize_t r0,
                                   Py_ssize_t rows) noexcept nogil:
    cdef Py_ssize_t i, j, n = op.n_in
    cdef const floating *x
    cdef floating *y
    cdef floating *stats
    cdef double total, d
    cdef floating mean, rstd
    for i in range(r0, r0 + rows):
        x = X + i * n
        y = ws + op.out + i * n
        stats = ws + op.aux + 2 * i
        total = 0
        for j in range(n):
            total += x[j]
        mean = <floating> (total / n)
        total = 0
        for j in range(n):
            d = x[j] - mean
            total += d * d
        rstd = <floating> (1.0 / sqrt(total / n + op.eps))
        stats[0] = mean
        stats[1] = rstd
        if op.p0 >= 0:
            for j in range(n):
                y[j] = (x[j] - mean) * rstd * P[op.p0 + j] + P[op.p1 + j]
        else:
            for j in range(n):
                y[j] = (x[j] - mean) * rstd


cdef inline void layernorm_backward(const Op *op, const floating *P, const floating *X,
                                    floating *ws, Py_ssize_t r0,
                                    Py_ssize_t rows) noexcept nogil:
    """Per row, with g = δ·γ: dLoss/dx = rstd·(g - mean(g) - x̂·mean(g·x̂))."""
    cdef Py_ssize_t i, j, n = op.n_in
    cdef const floating *x
    cdef const floating *d
    cdef floating *dx
    cdef floating mean, rstd, g, xh, mean_g, mean_gx
    cdef double sum_g, sum_gx
    for i in range(r0, r0 + rows):
        x = X + i * n
        d = ws + op.dout + i * n
        dx = ws + op.din + i * n
        mean = ws[op.aux + 2 * i]
        rstd = ws[op.aux + 2 * i + 1]
        sum_g = 0
        sum_gx = 0
        for j in range(n):
            g = d[j] * (P[op.p0 + j] if op.p0 >= 0 else 1)
            sum_g += g
            sum_gx += g * ((x[j] - mean) * rstd)
        mean_g = <floating> (sum_g / n)
        mean_gx = <floating> (sum_gx / n)
        for j in range(n):
            g = d[j] * (P[op.p0 + j] if op.p0 >= 0 else 1)
            xh = (x[j] - mean) * rstd
            dx[j] = rstd * (g - mean_g - xh * mean_gx)


cdef inline void layernorm_param_grads(const Op *op, floating *G, const floating *X,
                                       floating *ws, Py_ssize_t B, Py_ssize_t j0,
                                       Py_ssize_t j1) noexcept nogil:
    """Entries j0:j1 of dγ = Σ_rows δ·x̂ and dβ = Σ_rows δ, each column summed in row order
    (so any split of the columns gives the same sums)."""
    cdef Py_ssize_t i, j, n = op.n_in
    cdef const floating *x
    cdef const floating *d
    cdef floating *dgamma = G + op.p0
    cdef floating *dbeta = G + op.p1
    cdef floating mean, rstd
    for j in range(j0, j1):
        dgamma[j] = 0
        dbeta[j] = 0
    for i in range(B):
        x = X + i * n
        d = ws + op.dout + i * n
        mean = ws[op.aux + 2 * i]
        rstd = ws[op.aux + 2 * i + 1]
        for j in range(j0, j1):
            dgamma[j] += d[j] * ((x[j] - mean) * rstd)
            dbeta[j] += d[j]

# A. Invariants: torch.nn.BatchNorm1d's semantics. Training: per feature j, the batch's mean
#    and biased variance, x̂ = (x - mean)·invstd with invstd = 1/sqrt(var + eps), and
#    y = γ·x̂ + β (γ, β at p0, p1; none without affine). The running mean and UNBIASED
#    running variance move by `momentum` only once the batch's update has been accepted
#    (batchnorm_update_running), so a refused step leaves the model as it was. Inference
#    (predict, evaluate): y = x·scale + shift from the running statistics.
# B. Layout: per op, 5·n values of the net's scratch at aux: mean, invstd, var (the batch's,
#    kept for backward and the running update), then Σ_rows δ and Σ_rows δ·x̂ (backward);
#    inference puts scale and shift where mean and invstd were. The running statistics
#    (mean, then variance) sit at `stats` of their own buffer (plan.stats).
# C. Why features j0:j1 of the whole batch per call: the statistics couple every row, so
#    neither forward nor backward is row-local; a thread team splits the features instead,
#    and each feature's sums run over the rows in order whatever the split. Loops run over
#    rows outside and features inside, so each inner loop is a contiguous, vectorisable
#    pass.
from cython cimport floating
from libc.math cimport sqrt

from _ops cimport Op


cdef inline floating _inv_sqrt(floating v) noexcept nogil:
    return <floating> (1.0 / sqrt(<double> v))


cdef inline void batchnorm_forward_train(const Op *op, const floating *P, floating *T,
                                         const floating *X, floating *ws, Py_ssize_t B,
                                         Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """Features j0:j1 (C): the batch's statistics into the scratch, then y."""
    cdef Py_ssize_t i, j, n = op.n_in
    cdef floating *mean = T + op.aux
    cdef floating *inv = mean + n
    cdef floating *var = mean + 2 * n
    cdef floating *y
    cdef const floating *x
    cdef floating d
    for j in range(j0, j1):
        mean[j] = 0
        var[j] = 0
    for i in range(B):
        x = X + i * n
        for j in range(j0, j1):
            mean[j] += x[j]
    for j in range(j0, j1):
        mean[j] = mean[j] / B
    for i in range(B):
        x = X + i * n
        for j in range(j0, j1):
            d = x[j] - mean[j]
            var[j] += d * d
    for j in range(j0, j1):
        var[j] = var[j] / B
        inv[j] = _inv_sqrt(var[j] + <floating> op.eps)
    for i in range(B):
        x = X + i * n
        y = ws + op.out + i * n
        if op.p0 >= 0:
            for j in range(j0, j1):
                y[j] = (x[j] - mean[j]) * inv[j] * P[op.p0 + j] + P[op.p1 + j]
        else:
            for j in range(j0, j1):
                y[j] = (x[j] - mean[j]) * inv[j]


cdef inline void batchnorm_update_running(const Op *op, floating *R, const floating *T,
                                          Py_ssize_t B) noexcept nogil:
    """running = (1 - momentum)·running + momentum·batch figure; the variance unbiased."""
    cdef Py_ssize_t j, n = op.n_in
    cdef floating m = <floating> op.momentum, keep = <floating> (1 - op.momentum)
    cdef floating unbias = <floating> (<double> B / (B - 1))
    cdef const floating *mean = T + op.aux
    cdef floating *running_mean = R + op.stats
    cdef floating *running_var = R + op.stats + n
    for j in range(n):
        running_mean[j] = keep * running_mean[j] + m * mean[j]
        running_var[j] = keep * running_var[j] + m * (mean[2 * n + j] * unbias)


cdef inline void batchnorm_prepare_inference(const Op *op, const floating *P, const floating *R,
                                             floating *T) noexcept nogil:
    """scale = γ/sqrt(running var + eps), shift = β - running mean·scale (B)."""
    cdef Py_ssize_t j, n = op.n_in
    cdef floating s
    for j in range(n):
        s = _inv_sqrt(R[op.stats + n + j] + <floating> op.eps)
        if op.p0 >= 0:
            s = s * P[op.p0 + j]
        T[op.aux + j] = s
        T[op.aux + n + j] = (P[op.p1 + j] if op.p0 >= 0 else 0) - R[op.stats + j] * s


cdef inline void batchnorm_forward_infer(const Op *op, const floating *T, const floating *X,
                                         floating *ws, Py_ssize_t r0,
                                         Py_ssize_t rows) noexcept nogil:
    cdef Py_ssize_t i, j, n = op.n_in
    cdef const floating *scale = T + op.aux
    cdef const floating *shift = T + op.aux + n
    cdef const floating *x
    cdef floating *y
    for i in range(r0, r0 + rows):
        x = X + i * n
        y = ws + op.out + i * n
        for j in range(n):
            y[j] = x[j] * scale[j] + shift[j]


cdef inline void batchnorm_backward(const Op *op, const floating *P, floating *G, floating *T,
                                    const floating *X, floating *ws, Py_ssize_t B,
                                    Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """Features j0:j1 (C): dβ = Σ δ, dγ = Σ δ·x̂ (into G, with affine), and, if anything
    below needs it, dLoss/dx = γ·invstd·(δ - dβ/B - x̂·dγ/B), torch's formula."""
    cdef Py_ssize_t i, j, n = op.n_in
    cdef const floating *mean = T + op.aux
    cdef const floating *inv = mean + n
    cdef floating *sum_d = T + op.aux + 3 * n
    cdef floating *sum_dx = T + op.aux + 4 * n
    cdef const floating *x
    cdef const floating *d
    cdef floating *dx
    cdef floating xh, rB = <floating> (1.0 / B)
    for j in range(j0, j1):
        sum_d[j] = 0
        sum_dx[j] = 0
    for i in range(B):
        x = X + i * n
        d = ws + op.dout + i * n
        for j in range(j0, j1):
            sum_d[j] += d[j]
            sum_dx[j] += d[j] * ((x[j] - mean[j]) * inv[j])
    if op.p0 >= 0:
        for j in range(j0, j1):
            G[op.p0 + j] = sum_dx[j]
            G[op.p1 + j] = sum_d[j]
    if op.din < 0:
        return
    for i in range(B):
        x = X + i * n
        d = ws + op.dout + i * n
        dx = ws + op.din + i * n
        for j in range(j0, j1):
            xh = (x[j] - mean[j]) * inv[j]
            dx[j] = ((P[op.p0 + j] if op.p0 >= 0 else 1) * inv[j]
                     * (d[j] - sum_d[j] * rB - xh * (sum_dx[j] * rB)))

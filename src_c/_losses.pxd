# A. Invariants: every loss works on B rows of the last layer's output block Z__bo (B x out)
#    and overwrites them IN PLACE with dLoss/dZ, scaled for a mean over a batch of `batch`
#    rows (B < batch when threads share a batch). It returns the SUM over its rows of each
#    row's loss (accumulated in double even for float32 models); divide by batch for the mean.
# B. Targets: row r's target is row idx[r] (or r when idx is NULL) of Y__no (mse, huber,
#    mae, bce, poisson) or of labels (cross-entropy class indices, validated in Python
#    before the call).
#    The regression losses (mse, huber, mae) take the ACTIVATED output A__bo of any
#    activation and go through its derivative; for gelu and swish that derivative reads the
#    layer's kept pre-activation K__bo (same rows; NULL for the other activations).
# C. Why from logits: softmax and sigmoid are fused into their losses and computed with
#    log-sum-exp / exp(-|z|), so no overflow and one exp per element, one log per row.
#    Codes are mirrored by fastbp.losses.Loss (a test asserts they agree).
# D. Accuracy rides along: the classification losses add to *hits the rows whose first
#    arg-max is the label (cross-entropy; numpy.argmax's tie rule) or the outputs on the
#    target's side of 0 (bce), read from the logits before they become gradients; the
#    regression losses leave it alone. It costs a compare per row (per output for bce).
# E. Poisson reads the last layer's raw output as the log-rate z (its exp is fused in, as
#    softmax and sigmoid are) and leaves out the terms free of z (log y!, or the deviance's
#    y·log y - y): torch's PoissonNLLLoss(log_input=True, full=False) and scikit-learn's
#    HalfPoissonLoss without its constant_to_optimal_zero. Gradients are the same either way.
from cython cimport floating
from libc.math cimport log, log1p, fabs
from _activations cimport fexp, act_derivative

cdef enum:
    LOSS_MSE = 0
    LOSS_CROSS_ENTROPY = 1
    LOSS_BINARY_CROSS_ENTROPY = 2
    LOSS_HUBER = 3
    LOSS_MAE = 4
    LOSS_POISSON = 5

cdef extern from *:
    """
    #define FASTBP_HUBER_DELTA 1.0  /* torch.nn.HuberLoss's default delta */
    """
    double HUBER_DELTA "FASTBP_HUBER_DELTA"


cdef inline Py_ssize_t _row(const Py_ssize_t *idx, Py_ssize_t r) noexcept nogil:
    return idx[r] if idx != NULL else r


cdef inline const floating *_pre(const floating *K__bo, floating *a, Py_ssize_t i,
                                 Py_ssize_t O) noexcept nogil:
    """Row i of the kept pre-activation, or the output row itself where none is kept (its
    activation's derivative then does not read it)."""
    return K__bo + i * O if K__bo != NULL else a


cdef inline double mse(floating *A__bo, const floating *K__bo, const floating *Y__no,
                       const Py_ssize_t *idx, Py_ssize_t B, Py_ssize_t O, Py_ssize_t batch,
                       int act) noexcept nogil:
    """(A - Y)² averaged over outputs; gradient 2(A - Y)/(batch·O), through the activation."""
    cdef Py_ssize_t i, j
    cdef floating *a
    cdef const floating *y
    cdef const floating *k
    cdef floating d, scale = <floating> (2.0 / (batch * O))
    cdef double total = 0
    for i in range(B):
        a = A__bo + i * O
        k = _pre(K__bo, a, i, O)
        y = Y__no + _row(idx, i) * O
        for j in range(O):
            d = a[j] - y[j]
            total += d * d
            a[j] = scale * d * act_derivative(a[j], k[j], act)
    return total / O


cdef inline double huber(floating *A__bo, const floating *K__bo, const floating *Y__no,
                         const Py_ssize_t *idx, Py_ssize_t B, Py_ssize_t O, Py_ssize_t batch,
                         int act) noexcept nogil:
    """With d = A - Y: d²/2 where |d| <= delta, else delta·(|d| - delta/2), averaged over
    outputs (torch.nn.HuberLoss); gradient clamp(d, -delta, delta)/(batch·O), through the
    activation."""
    cdef Py_ssize_t i, j
    cdef floating *a
    cdef const floating *y
    cdef const floating *k
    cdef floating d, m, g, delta = <floating> HUBER_DELTA, half = <floating> 0.5
    cdef floating scale = <floating> (1.0 / (batch * O))
    cdef double total = 0
    for i in range(B):
        a = A__bo + i * O
        k = _pre(K__bo, a, i, O)
        y = Y__no + _row(idx, i) * O
        for j in range(O):
            d = a[j] - y[j]
            m = d if d > 0 else -d
            total += half * d * d if m <= delta else delta * (m - half * delta)
            g = d if d < delta else delta
            g = g if g > -delta else -delta
            a[j] = scale * g * act_derivative(a[j], k[j], act)
    return total / O


cdef inline double mae(floating *A__bo, const floating *K__bo, const floating *Y__no,
                       const Py_ssize_t *idx, Py_ssize_t B, Py_ssize_t O, Py_ssize_t batch,
                       int act) noexcept nogil:
    """|A - Y| averaged over outputs (torch.nn.L1Loss); gradient sign(A - Y)/(batch·O), with
    sign(0) = 0 as torch's, through the activation."""
    cdef Py_ssize_t i, j
    cdef floating *a
    cdef const floating *y
    cdef const floating *k
    cdef floating d, sign, scale = <floating> (1.0 / (batch * O))
    cdef double total = 0
    for i in range(B):
        a = A__bo + i * O
        k = _pre(K__bo, a, i, O)
        y = Y__no + _row(idx, i) * O
        for j in range(O):
            d = a[j] - y[j]
            total += d if d > 0 else -d
            sign = <floating> (d > 0) - <floating> (d < 0)
            a[j] = scale * sign * act_derivative(a[j], k[j], act)
    return total / O


cdef inline double cross_entropy(floating *Z__bo, const Py_ssize_t *labels, const Py_ssize_t *idx,
                                 Py_ssize_t B, Py_ssize_t O, Py_ssize_t batch,
                                 double *hits) noexcept nogil:
    """logsumexp(z) - z[label] per row; gradient (softmax(z) - onehot) / batch.

    Σ log(s_i) is taken as log(Π s_i): each row's s_i = Σ exp(z - max) lies in [1, O], so
    the product grows slowly and is logged only when it nears double's range (the libm log
    per row was ~4% of a tiny network's step). Three passes: per row, shift by its max; then
    one exp over the whole block, so a 10-class output runs full vectors instead of one
    vector and two scalar exps per row (the loss was 10% of the tiny network's step, 6%
    after); then per row, the sum in column order, the scale and the label's -1/batch.
    The values are bitwise those of the one-pass loop."""
    cdef Py_ssize_t i, j, label
    cdef floating *z
    cdef floating zmax, s, scale, inv_b = <floating> (1.0 / batch)
    cdef double total = 0, product = 1
    cdef Py_ssize_t correct = 0
    cdef bint hit
    for i in range(B):
        z = Z__bo + i * O
        label = labels[_row(idx, i)]
        zmax = z[0]
        for j in range(1, O):
            if z[j] > zmax:
                zmax = z[j]
        total += zmax - z[label]
        hit = z[label] == zmax
        j = 0
        while hit and j < label:  # a tie earlier in the row wins, as in numpy.argmax
            hit = z[j] != zmax
            j += 1
        correct += hit
        for j in range(O):
            z[j] = z[j] - zmax
    for j in range(B * O):  # kept apart from the sums so it vectorises
        Z__bo[j] = fexp(Z__bo[j])
    for i in range(B):
        z = Z__bo + i * O
        label = labels[_row(idx, i)]
        s = 0
        for j in range(O):
            s += z[j]
        product *= s
        if product > 1e250:
            total += log(product)
            product = 1
        scale = inv_b / s
        for j in range(O):
            z[j] *= scale
        z[label] -= inv_b
    hits[0] += correct
    return total + log(product)


cdef inline double binary_cross_entropy(floating *Z__bo, const floating *Y__no,
                                        const Py_ssize_t *idx, Py_ssize_t B, Py_ssize_t O,
                                        Py_ssize_t batch, double *hits) noexcept nogil:
    """max(z,0) - z·y + log(1 + exp(-|z|)) averaged over outputs; gradient
    (sigmoid(z) - y) / (batch·O)."""
    cdef Py_ssize_t i, j
    cdef floating *z
    cdef const floating *y
    cdef floating v, e, p, scale = <floating> (1.0 / (batch * O))
    cdef double total = 0
    cdef Py_ssize_t correct = 0
    for i in range(B):
        z = Z__bo + i * O
        y = Y__no + _row(idx, i) * O
        for j in range(O):
            v = z[j]
            correct += (v > 0) == (y[j] > <floating> 0.5)
            e = fexp(-fabs(v))
            total += (v if v > 0 else 0) - v * y[j] + log1p(e)
            p = <floating> 1 / (<floating> 1 + e) if v >= 0 else e / (<floating> 1 + e)
            z[j] = scale * (p - y[j])
    hits[0] += correct
    return total / O


cdef inline double poisson(floating *Z__bo, const floating *Y__no, const Py_ssize_t *idx,
                           Py_ssize_t B, Py_ssize_t O, Py_ssize_t batch) noexcept nogil:
    """exp(z) - y·z averaged over outputs, from the log-rate z (see E); gradient
    (exp(z) - y) / (batch·O). An exp that overflows makes the loss inf, which the caller
    reports as a non-finite loss."""
    cdef Py_ssize_t i, j
    cdef floating *z
    cdef const floating *y
    cdef floating rate, scale = <floating> (1.0 / (batch * O))
    cdef double total = 0
    for i in range(B):
        z = Z__bo + i * O
        y = Y__no + _row(idx, i) * O
        for j in range(O):
            rate = fexp(z[j])
            total += <double> rate - <double> y[j] * z[j]
            z[j] = scale * (rate - y[j])
    return total / O


cdef inline double loss_backward(int loss, int act, floating *Z__bo, const floating *K__bo,
                                 const floating *Y__no, const Py_ssize_t *labels,
                                 const Py_ssize_t *idx, Py_ssize_t B, Py_ssize_t O,
                                 Py_ssize_t batch, double *hits) noexcept nogil:
    """The loss's sum over B rows, leaving dLoss/dZ in Z (see A); K as in B, hits as in D."""
    if loss == LOSS_CROSS_ENTROPY:
        return cross_entropy(Z__bo, labels, idx, B, O, batch, hits)
    if loss == LOSS_BINARY_CROSS_ENTROPY:
        return binary_cross_entropy(Z__bo, Y__no, idx, B, O, batch, hits)
    if loss == LOSS_HUBER:
        return huber(Z__bo, K__bo, Y__no, idx, B, O, batch, act)
    if loss == LOSS_MAE:
        return mae(Z__bo, K__bo, Y__no, idx, B, O, batch, act)
    if loss == LOSS_POISSON:
        return poisson(Z__bo, Y__no, idx, B, O, batch)
    return mse(Z__bo, K__bo, Y__no, idx, B, O, batch, act)


cdef inline double weighted_loss_backward(int loss, int act, floating *Z__bo,
                                          const floating *K__bo, const floating *Y__no,
                                          const Py_ssize_t *labels, const Py_ssize_t *idx,
                                          const floating *w__n, double scale,
                                          Py_ssize_t B, Py_ssize_t O,
                                          Py_ssize_t batch, double *hits) noexcept nogil:
    """loss_backward with a weight per sample (w__n, indexed like the targets; NULL: all 1):
    returns Σ s·w·row loss and scales each row's gradient by s·w, s = ``scale``, so the mean
    over a batch is Σ w·loss / batch (Keras's sample_weight) with s = 1, and Σ w·loss / Σ w
    (scikit-learn's) with s = batch / Σ w; hits are weighted by w alone. One call per row:
    the weighted path trades a little speed for not touching every loss kernel."""
    cdef Py_ssize_t i, row
    cdef Py_ssize_t j
    cdef double total = 0, row_hits
    cdef floating w, sw
    cdef floating *z
    if w__n == NULL:
        return loss_backward(loss, act, Z__bo, K__bo, Y__no, labels, idx, B, O, batch, hits)
    for i in range(B):
        row = _row(idx, i)
        z = Z__bo + i * O
        w = w__n[row]
        sw = <floating> (w * scale)  # exactly w when scale is 1
        row_hits = 0
        if idx != NULL:
            total += sw * loss_backward(loss, act, z, K__bo + i * O if K__bo != NULL else NULL,
                                        Y__no, labels, idx + i, 1, O, batch, &row_hits)
        else:
            total += sw * loss_backward(loss, act, z, K__bo + i * O if K__bo != NULL else NULL,
                                        Y__no + i * O if Y__no != NULL else NULL,
                                        labels + i if labels != NULL else NULL, NULL, 1, O,
                                        batch, &row_hits)
        hits[0] += w * row_hits
        for j in range(O):
            z[j] *= sw
    return total


cdef inline void output_activation(int loss, floating *Z__bo, Py_ssize_t B,
                                   Py_ssize_t O) noexcept nogil:
    """What predict returns: softmax for cross-entropy, sigmoid for bce, the rate exp(z) for
    poisson, the output as is for the other regression losses."""
    cdef Py_ssize_t i, j
    cdef floating *z
    cdef floating zmax, s
    if loss == LOSS_CROSS_ENTROPY:
        for i in range(B):
            z = Z__bo + i * O
            zmax = z[0]
            for j in range(1, O):
                if z[j] > zmax:
                    zmax = z[j]
            for j in range(O):
                z[j] = fexp(z[j] - zmax)
            s = 0
            for j in range(O):
                s += z[j]
            s = 1 / s
            for j in range(O):
                z[j] *= s
    elif loss == LOSS_BINARY_CROSS_ENTROPY:
        for i in range(B * O):
            Z__bo[i] = <floating> 1 / (<floating> 1 + fexp(-Z__bo[i]))
    elif loss == LOSS_POISSON:
        for i in range(B * O):
            Z__bo[i] = fexp(Z__bo[i])

# A. Invariants: parameters, gradients and optimizer state are flat buffers of one length with
#    all weights first and all biases after, so weight decay covers exactly the prefix
#    [0, n_weights) and every update is one pass over contiguous memory.
# B. Rules follow torch.optim (dampening 0): g += wd·p (weights only); v = μ·v + g;
#    step = g + μ·v (Nesterov) or v; p -= lr·step. With μ = 0 there is no state.
# C. Why a returned flag: the pass also notes whether any new parameter is non-finite (x - x is
#    NaN only for inf/NaN), an integer OR that vectorises, so a diverging step is caught
#    without a second pass. Codes are mirrored by fastbp.optimizers.OptimizerCode.
from cython cimport floating

cdef enum:
    OPT_SGD = 0

cdef struct OptimizerStep:
    int code
    double lr
    double momentum
    double weight_decay
    int nesterov


cdef inline int _sgd_range(floating *p, const floating *g, floating *v, Py_ssize_t n,
                           floating lr, floating mu, floating wd, int nesterov) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d, x
    cdef int bad = 0
    if mu == 0:
        for i in range(n):
            x = p[i] - lr * (g[i] + wd * p[i])
            p[i] = x
            d = x - x
            bad |= d != d
    elif nesterov:
        for i in range(n):
            d = g[i] + wd * p[i]
            v[i] = mu * v[i] + d
            x = p[i] - lr * (d + mu * v[i])
            p[i] = x
            d = x - x
            bad |= d != d
    else:
        for i in range(n):
            v[i] = mu * v[i] + (g[i] + wd * p[i])
            x = p[i] - lr * v[i]
            p[i] = x
            d = x - x
            bad |= d != d
    return bad


cdef inline int apply_update(const OptimizerStep *opt, floating *params, const floating *grads,
                             floating *state, Py_ssize_t n_params,
                             Py_ssize_t n_weights) noexcept nogil:
    """One optimizer step over the flat buffers; returns 1 if any parameter became non-finite."""
    cdef floating lr = <floating> opt.lr, mu = <floating> opt.momentum
    cdef floating wd = <floating> opt.weight_decay
    cdef floating *v_bias = state + n_weights if mu != 0 else state
    cdef int bad = _sgd_range(params, grads, state, n_weights, lr, mu, wd, opt.nesterov)
    bad |= _sgd_range(params + n_weights, grads + n_weights, v_bias,
                      n_params - n_weights, lr, mu, <floating> 0, opt.nesterov)
    return bad

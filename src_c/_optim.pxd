# A. Invariants: parameters, gradients and optimizer state are flat buffers of one length with
#    all weights first and all biases after, so weight decay covers exactly the prefix
#    [0, n_weights) and every update is one pass over contiguous memory.
# B. Rules follow torch.optim (dampening 0): g += wd·p (weights only); v = μ·v + g;
#    step = g + μ·v (Nesterov) or v; p -= lr·step. With μ = 0 there is no state.
# C. Never half-updated: a step first runs the rule without writing, only checking that every
#    new parameter and state value is finite (x - x is NaN only for inf/NaN; an integer OR
#    that vectorises), then writes. A diverging step is refused with the model untouched,
#    at the price of one read-only pass and without a backup copy of the parameters.
#    Codes are mirrored by fastbp.optimizers.OptimizerCode.
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
                           floating lr, floating mu, floating wd, int nesterov,
                           bint write) noexcept nogil:
    """The SGD rule over n entries: with write, update p (and v); without, only return 1 if
    any new value would be non-finite. The flags are loop-invariant, so GCC unswitches."""
    cdef Py_ssize_t i
    cdef floating d, vn, x, check
    cdef int bad = 0
    if mu == 0:
        for i in range(n):
            x = p[i] - lr * (g[i] + wd * p[i])
            if write:
                p[i] = x
            else:
                check = x - x
                bad |= check != check
    else:
        for i in range(n):
            d = g[i] + wd * p[i]
            vn = mu * v[i] + d
            x = p[i] - lr * (d + mu * vn if nesterov else vn)
            if write:
                v[i] = vn
                p[i] = x
            else:
                check = (x - x) + (vn - vn)
                bad |= check != check
    return bad


cdef inline int apply_update(const OptimizerStep *opt, floating *params, const floating *grads,
                             floating *state, Py_ssize_t n_params,
                             Py_ssize_t n_weights) noexcept nogil:
    """One optimizer step over the flat buffers. Returns 1, writing nothing, if any new
    parameter or state value would be non-finite; 0 after updating."""
    cdef floating lr = <floating> opt.lr, mu = <floating> opt.momentum
    cdef floating wd = <floating> opt.weight_decay
    cdef floating *v_bias = state + n_weights if mu != 0 else state
    cdef Py_ssize_t n_biases = n_params - n_weights
    cdef bint write
    for write in range(2):
        if (_sgd_range(params, grads, state, n_weights, lr, mu, wd, opt.nesterov, write)
                | _sgd_range(params + n_weights, grads + n_weights, v_bias, n_biases, lr, mu,
                             <floating> 0, opt.nesterov, write)):
            return 1
    return 0

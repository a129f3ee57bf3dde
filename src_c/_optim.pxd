# A. Invariants: parameters, gradients and optimizer state are flat buffers of one length with
#    all weights first and all biases after, so weight decay covers exactly the prefix
#    [0, n_weights) and every update is one pass over contiguous memory.
# B. Rules follow torch.optim (dampening 0): g += wd·p (weights only); v = μ·v + g;
#    step = g + μ·v (Nesterov) or v; p -= lr·step. With μ = 0 there is no state.
# C. Never half-updated: a step that would make any parameter or state value non-finite is
#    refused before anything is written. Proving that exactly needs a read-only pass of the
#    rule over p, g and v, which cost 2-8% of a training step. So each step first bounds the
#    result instead: max|g| from one integer-max pass over g (cheap: g was just written and
#    is in cache; NaN and inf sort above every finite value), and max|p|, max|v| carried
#    from step to step by the rule's own bound. Only if that bound comes near overflow
#    (or g is not finite) does the exact pass run. Codes are mirrored by
#    fastbp.optimizers.OptimizerCode.
from cython cimport floating
from libc.float cimport FLT_MAX, DBL_MAX
from libc.stdint cimport int32_t, int64_t

cdef extern from "_vecmath.h":
    int32_t fastbp_magnitude_f32(float x) noexcept nogil
    int64_t fastbp_magnitude_f64(double x) noexcept nogil
    double fastbp_from_magnitude_f32(int32_t m) noexcept nogil
    double fastbp_from_magnitude_f64(int64_t m) noexcept nogil

cdef enum:
    OPT_SGD = 0

cdef struct OptimizerStep:
    int code
    double lr
    double momentum
    double weight_decay
    int nesterov

cdef struct Bounds:
    double params   # upper bound on max|parameter|
    double state    # upper bound on max|optimizer state|


cdef inline double max_magnitude(const floating *x, Py_ssize_t n) noexcept nogil:
    """max|x| over n values (0 if n == 0); inf or NaN if any value is not finite."""
    cdef Py_ssize_t i
    cdef int32_t m32 = 0, b32
    cdef int64_t m64 = 0, b64
    if floating is float:
        for i in range(n):
            b32 = fastbp_magnitude_f32(x[i])
            m32 = b32 if b32 > m32 else m32
        return fastbp_from_magnitude_f32(m32)
    else:
        for i in range(n):
            b64 = fastbp_magnitude_f64(x[i])
            m64 = b64 if b64 > m64 else m64
        return fastbp_from_magnitude_f64(m64)


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


cdef inline int _refused(const OptimizerStep *opt, floating *params, const floating *grads,
                         floating *state, Py_ssize_t n_params, Py_ssize_t n_weights) noexcept nogil:
    """The exact test: would any new parameter or state value be non-finite?"""
    cdef floating lr = <floating> opt.lr, mu = <floating> opt.momentum
    cdef floating *v_bias = state + n_weights if mu != 0 else state
    return (_sgd_range(params, grads, state, n_weights, lr, mu, <floating> opt.weight_decay,
                       opt.nesterov, False)
            | _sgd_range(params + n_weights, grads + n_weights, v_bias, n_params - n_weights,
                         lr, mu, <floating> 0, opt.nesterov, False))


cdef inline int apply_update(const OptimizerStep *opt, floating *params, const floating *grads,
                             floating *state, Py_ssize_t n_params, Py_ssize_t n_weights,
                             Bounds *bounds) noexcept nogil:
    """One optimizer step over the flat buffers. Returns 1, writing nothing, if any new
    parameter or state value would be non-finite; else updates and returns 0. ``bounds``
    holds upper bounds on max|params| and max|state| and is kept valid for the next step."""
    cdef double lr = opt.lr, mu = opt.momentum, limit = 0.5 * (FLT_MAX if floating is float
                                                                else DBL_MAX)
    cdef double d, v, step
    cdef floating *v_bias = state + n_weights if mu != 0 else state
    # Bound every intermediate of the rule (see _sgd_range) from max|g|, max|p|, max|v|.
    d = max_magnitude(grads, n_params) + opt.weight_decay * bounds.params
    v = mu * bounds.state + d if mu != 0 else 0
    step = (d + mu * v if opt.nesterov else v) if mu != 0 else d
    if not (d < limit and v < limit and step < limit and lr * step < limit
            and bounds.params + lr * step < limit):
        if _refused(opt, params, grads, state, n_params, n_weights):
            return 1
        bounds.params = DBL_MAX  # bounds unusable: measure them again after the write
    _sgd_range(params, grads, state, n_weights, <floating> lr, <floating> mu,
               <floating> opt.weight_decay, opt.nesterov, True)
    _sgd_range(params + n_weights, grads + n_weights, v_bias, n_params - n_weights,
               <floating> lr, <floating> mu, <floating> 0, opt.nesterov, True)
    if bounds.params == DBL_MAX:
        measure_bounds(params, state, n_params, state != NULL and mu != 0, bounds)
    else:
        bounds.params = bounds.params + lr * step
        bounds.state = v
    return 0


cdef inline void measure_bounds(const floating *params, const floating *state,
                                Py_ssize_t n_params, bint has_state, Bounds *bounds) noexcept nogil:
    """Exact max|params| and max|state|, to start (or restart) the carried bounds."""
    bounds.params = max_magnitude(params, n_params)
    bounds.state = max_magnitude(state, n_params) if has_state else 0

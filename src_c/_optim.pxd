# A. Invariants: parameters, gradients and each optimizer-state slot are flat buffers of one
#    length with all weights first and all biases after, so L2/L1 decay covers exactly the
#    prefix [0, n_weights) and every update is one pass over contiguous memory. The state
#    holds n_slots(opt) such buffers back to back (slot 1, then slot 2, then slot 3).
# B. Rules follow torch.optim (see fastbp/optimizers.py for each formula); the gradients
#    buffer is scratch, so clipping and L1 are applied to it in place before the rule runs.
# C. Never half-updated: a step that would make any parameter or state value non-finite is
#    refused before anything is written. Proving that exactly needs a read-only pass of the
#    rule over p, g and the state, which cost 2-8% of a training step. So each step first
#    bounds the result instead: max|g| from one integer-max pass over g (cheap: g was just
#    written and is in cache; NaN and inf sort above every finite value), and max|p| and
#    max|state slot| carried from step to step by the rule's own bound. Only if that bound
#    comes near overflow (or g is not finite) does the exact pass run. Codes are mirrored by
#    fastbp.optimizers.OptimizerCode.
# D. rule_range runs the rule over any range of the flat buffers, so training can step each
#    layer right after the GEMM that wrote its gradients, while they are in cache (_core's
#    _gradients_and_step; a change from one pass over the whole buffer, worth 1-3% of
#    the small and medium benchmark networks' epochs). No gradient exists yet when that
#    step must be shown safe, so bounded() is given a bound on max|g| from the GEMM's
#    inputs instead.
from cython cimport floating
from libc.float cimport FLT_MAX, DBL_MAX
from libc.math cimport sqrt, sqrtf, isfinite, pow
from libc.stdint cimport int32_t, int64_t

cdef extern from "_vecmath.h":
    int32_t fastbp_magnitude_f32(float x) noexcept nogil
    int64_t fastbp_magnitude_f64(double x) noexcept nogil
    double fastbp_from_magnitude_f32(int32_t m) noexcept nogil
    double fastbp_from_magnitude_f64(int64_t m) noexcept nogil

cdef enum:
    OPT_SGD = 0
    OPT_ADAM = 1
    OPT_ADAMW = 2
    OPT_RMSPROP = 3
    OPT_ADAGRAD = 4

cdef struct OptimizerStep:
    int code
    double lr              # this step's learning rate (the schedule's value)
    long long step         # 1-based number of this update (Adam's bias correction)
    double momentum        # SGD, RMSprop
    int nesterov           # SGD
    int centered           # RMSprop: divide by the root of the variance, not of the mean square
    double lr_decay        # Adagrad: this step's rate is lr / (1 + (step - 1)·lr_decay)
    double weight_decay    # L2 on weights (AdamW: decoupled shrink)
    double l1              # L1 on weights: g += l1·sign(W)
    double beta1, beta2    # Adam, AdamW
    double alpha           # RMSprop's smoothing constant
    double eps             # Adam, AdamW, RMSprop, Adagrad
    double clip_norm       # > 0: scale g so its global L2 norm is at most this
    double clip_value      # > 0: clamp every g to [-clip_value, clip_value]

cdef struct Bounds:
    double params   # upper bound on max|parameter|
    double state1   # upper bound on max|state slot 1|
    double state2   # upper bound on max|state slot 2|
    double state3   # upper bound on max|state slot 3|


cdef inline int n_slots(const OptimizerStep *opt) noexcept nogil:
    """State buffers the rule keeps per parameter."""
    if opt.code == OPT_ADAM or opt.code == OPT_ADAMW:
        return 2
    if opt.code == OPT_RMSPROP:  # the mean square, the momentum buffer, the mean gradient
        return 1 + (opt.momentum != 0) + (opt.centered != 0)
    if opt.code == OPT_ADAGRAD:
        return 1
    return 1 if opt.momentum != 0 else 0


cdef inline double max_magnitude(const floating *x, Py_ssize_t n) noexcept nogil:
    """max|x| over n values (0 if n == 0); inf or NaN if any value is not finite."""
    return copy_max_magnitude(x, NULL, n)


cdef inline double copy_max_magnitude(const floating *x, floating *out,
                                      Py_ssize_t n) noexcept nogil:
    """max_magnitude, also copying x to ``out`` unless it is NULL (the row gather, whose
    loads wait on memory, gets the max for free). GCC unswitches the loop on out."""
    cdef Py_ssize_t i
    cdef int32_t m32 = 0, b32
    cdef int64_t m64 = 0, b64
    if floating is float:
        for i in range(n):
            if out != NULL:
                out[i] = x[i]
            b32 = fastbp_magnitude_f32(x[i])
            m32 = b32 if b32 > m32 else m32
        return fastbp_from_magnitude_f32(m32)
    else:
        for i in range(n):
            if out != NULL:
                out[i] = x[i]
            b64 = fastbp_magnitude_f64(x[i])
            m64 = b64 if b64 > m64 else m64
        return fastbp_from_magnitude_f64(m64)


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


# ---------------------------------------------------------------- the rules
# Each runs over n entries. With write, it updates p and the state; without, it writes
# nothing and returns 1 if any new value would be non-finite. `write` is loop-invariant, so
# GCC unswitches the loop. wd is 0 over the biases. Constants such as 1 - beta come in as
# floating arguments: a literal 1 in the loop becomes Cython's C double 1.0, and the float32
# loop then runs in double (Adam's step on 12.8M weights: 27.9 -> 18.7 ms on AVX2).

cdef inline int _sgd_range(floating *p, const floating *g, floating *v, Py_ssize_t n,
                           floating lr, floating mu, floating wd, int nesterov,
                           bint write, double *moved) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d, vn, x, check
    cdef int bad = 0
    cdef double moved_sq = 0
    if mu == 0:
        for i in range(n):
            x = p[i] - lr * (g[i] + wd * p[i])
            if write:
                p[i] = x
            else:
                check = x - x
                bad |= check != check
                moved_sq += <double> (x - p[i]) * (x - p[i])
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
                moved_sq += <double> (x - p[i]) * (x - p[i])
    moved[0] = moved_sq
    return bad


cdef inline int _adam_range(floating *p, const floating *g, floating *m, floating *v,
                            Py_ssize_t n, floating step_size, floating c1, floating b2,
                            floating c2, floating eps, floating wd, floating shrink,
                            bint write, double *moved) noexcept nogil:
    """Adam (wd: L2 added to g) and AdamW (shrink = 1 - lr·wd applied to p first), as
    p - step_size·m/(sqrt(v) + eps) with _rule's scaled step_size and eps (see there)."""
    cdef Py_ssize_t i
    cdef floating d, mn, vn, x, check
    cdef int bad = 0
    cdef double moved_sq = 0
    for i in range(n):
        d = g[i] + wd * p[i]
        mn = m[i] + c1 * (d - m[i])   # torch's lerp form
        vn = b2 * v[i] + c2 * d * d
        x = shrink * p[i] - step_size * (mn / (_sqrt(vn) + eps))
        if write:
            m[i] = mn
            v[i] = vn
            p[i] = x
        else:
            check = (x - x) + (mn - mn) + (vn - vn)
            bad |= check != check
            moved_sq += <double> (x - p[i]) * (x - p[i])
    moved[0] = moved_sq
    return bad


cdef inline int _rmsprop_range(floating *p, const floating *g, floating *sq, floating *buf,
                               floating *avg, Py_ssize_t n, floating lr, floating alpha,
                               floating c, floating eps, floating mu, floating wd, bint write,
                               double *moved) noexcept nogil:
    """RMSprop; centered where ``avg`` (the mean gradient) is given. Its variance
    sn - mn² is >= 0 in exact arithmetic but can round below 0, where torch's sqrt gives
    NaN: it is taken as 0 here, so the denominator stays >= eps (which bounded() relies on)."""
    cdef Py_ssize_t i
    cdef floating d, sn, mn = 0, var, bn, x, check
    cdef int bad = 0
    cdef double moved_sq = 0
    for i in range(n):
        d = g[i] + wd * p[i]
        sn = alpha * sq[i] + c * d * d
        var = sn
        if avg != NULL:
            mn = avg[i] + c * (d - avg[i])   # torch's lerp form
            var = sn - mn * mn
            var = var if var > 0 else 0
        bn = d / (_sqrt(var) + eps)
        if mu != 0:
            bn = mu * buf[i] + bn
        x = p[i] - lr * bn
        if write:
            sq[i] = sn
            if avg != NULL:
                avg[i] = mn
            if mu != 0:
                buf[i] = bn
            p[i] = x
        else:
            check = (x - x) + (sn - sn) + (bn - bn) + (mn - mn)
            bad |= check != check
            moved_sq += <double> (x - p[i]) * (x - p[i])
    moved[0] = moved_sq
    return bad


cdef inline int _adagrad_range(floating *p, const floating *g, floating *acc, Py_ssize_t n,
                               floating lr, floating eps, floating wd, bint write,
                               double *moved) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d, an, x, check
    cdef int bad = 0
    cdef double moved_sq = 0
    for i in range(n):
        d = g[i] + wd * p[i]
        an = acc[i] + d * d
        x = p[i] - lr * (d / (_sqrt(an) + eps))
        if write:
            acc[i] = an
            p[i] = x
        else:
            check = (x - x) + (an - an)
            bad |= check != check
            moved_sq += <double> (x - p[i]) * (x - p[i])
    moved[0] = moved_sq
    return bad


cdef inline double adagrad_rate(const OptimizerStep *opt) noexcept nogil:
    """Adagrad's rate at this step: lr / (1 + (step - 1)·lr_decay), as torch.optim.Adagrad."""
    return opt.lr / (1 + (opt.step - 1) * opt.lr_decay)


cdef inline int _rule(const OptimizerStep *opt, floating *p, const floating *g, floating *s1,
                      floating *s2, floating *s3, Py_ssize_t n, bint weights, bint write,
                      double *moved) noexcept nogil:
    """The optimizer's rule over p[0:n] (weights: decay applies), state slots s1, s2, s3.
    Without write, also puts Σ(new p - p)² in ``moved``."""
    cdef double lr = opt.lr, wd = opt.weight_decay if weights else 0.0, bias1, root2
    if opt.code == OPT_ADAM or opt.code == OPT_ADAMW:
        # torch's lr/bias1·m/(sqrt(v)/root2 + eps) times root2/root2: the same step in exact
        # arithmetic (scikit-learn's form, its eps scaled by root2) with one division per
        # element fewer: 0.86 -> 0.72 ns per element in cache (AVX2; last bits differ).
        bias1 = 1 - pow(opt.beta1, <double> opt.step)
        root2 = sqrt(1 - pow(opt.beta2, <double> opt.step))
        return _adam_range(p, g, s1, s2, n, <floating> (lr * root2 / bias1),
                           <floating> (1 - opt.beta1), <floating> opt.beta2,
                           <floating> (1 - opt.beta2), <floating> (opt.eps * root2),
                           <floating> (wd if opt.code == OPT_ADAM else 0.0),
                           <floating> (1 - lr * wd if opt.code == OPT_ADAMW else 1.0), write,
                           moved)
    if opt.code == OPT_RMSPROP:  # slots: s, then b with momentum, then the mean if centered
        return _rmsprop_range(p, g, s1, s2 if opt.momentum != 0 else NULL,
                              (s3 if opt.momentum != 0 else s2) if opt.centered else NULL, n,
                              <floating> lr, <floating> opt.alpha,
                              <floating> (1 - opt.alpha), <floating> opt.eps,
                              <floating> opt.momentum, <floating> wd, write, moved)
    if opt.code == OPT_ADAGRAD:
        return _adagrad_range(p, g, s1, n, <floating> adagrad_rate(opt), <floating> opt.eps,
                              <floating> wd, write, moved)
    return _sgd_range(p, g, s1, n, <floating> lr, <floating> opt.momentum, <floating> wd,
                      opt.nesterov, write, moved)


cdef inline int rule_range(const OptimizerStep *opt, floating *params, const floating *grads,
                           floating *state, Py_ssize_t n_params, Py_ssize_t start, Py_ssize_t n,
                           bint weights, bint write, double *moved) noexcept nogil:
    """_rule over params[start:start+n], their gradients and their entries of every state
    slot (weights: decay applies)."""
    cdef int slots = n_slots(opt)
    return _rule(opt, params + start, grads + start,
                 state + start if slots >= 1 else NULL,
                 state + n_params + start if slots >= 2 else NULL,
                 state + 2 * n_params + start if slots >= 3 else NULL, n, weights, write, moved)


cdef inline int _rule_all(const OptimizerStep *opt, floating *params, const floating *grads,
                          floating *state, Py_ssize_t n_params, Py_ssize_t n_weights,
                          bint write) noexcept nogil:
    """The rule over weights (with decay) then biases (without)."""
    cdef double moved
    return (rule_range(opt, params, grads, state, n_params, 0, n_weights, True, write, &moved)
            | rule_range(opt, params, grads, state, n_params, n_weights, n_params - n_weights,
                         False, write, &moved))


cdef inline double update_norm(const OptimizerStep *opt, floating *params,
                               const floating *grads, floating *state, Py_ssize_t n_params,
                               Py_ssize_t w, Py_ssize_t n) noexcept nogil:
    """||ΔW|| the coming step would make to the weights params[w:w+n] (one layer), from a
    read-only pass of the rule (telemetry; runs once per chunk, not per step)."""
    cdef double moved = 0
    rule_range(opt, params, grads, state, n_params, w, n, True, False, &moved)
    return sqrt(moved)


# ---------------------------------------------------------------- gradient transforms

cdef inline double l2_norm(const floating *x, Py_ssize_t n) noexcept nogil:
    """sqrt(Σ x²) in double, in eight partial sums: one running sum is a chain of dependent
    adds that GCC may not reorder. Measured on 100352 floats: 103 µs one sum, 13 µs eight
    (clip_norm takes it every step, telemetry once per chunk)."""
    cdef Py_ssize_t i, k, n8 = n - n % 8
    cdef double part[8]
    for k in range(8):
        part[k] = 0
    for i in range(0, n8, 8):
        for k in range(8):
            part[k] += <double> x[i + k] * x[i + k]
    for i in range(n8, n):
        part[i - n8] += <double> x[i] * x[i]
    return sqrt(((part[0] + part[1]) + (part[2] + part[3]))
                + ((part[4] + part[5]) + (part[6] + part[7])))


cdef inline int clip_and_l1(const OptimizerStep *opt, floating *grads, const floating *params,
                            Py_ssize_t n_params, Py_ssize_t n_weights) noexcept nogil:
    """In place, in torch's order: clip by global norm (torch.nn.utils.clip_grad_norm_:
    g·max_norm/(norm + 1e-6) when that factor is < 1), clip by value, then add L1's
    l1·sign(W) to the weights' gradients. Returns 1 if the gradient is not finite (torch's
    clipping would carry NaN on, or clamp inf to a finite value)."""
    cdef Py_ssize_t i
    cdef double norm
    cdef floating scale = 1, c = <floating> opt.clip_value, v, check, l1 = <floating> opt.l1, w
    cdef int bad = 0
    if opt.clip_norm > 0:
        norm = l2_norm(grads, n_params)
        if not isfinite(norm):
            return 1
        if opt.clip_norm / (norm + 1e-6) < 1:
            scale = <floating> (opt.clip_norm / (norm + 1e-6))
            for i in range(n_params):
                grads[i] *= scale
    if c > 0:
        for i in range(n_params):  # clamping would hide a non-finite gradient: flag it
            v = grads[i]
            check = v - v
            bad |= check != check
            grads[i] = c if v > c else (-c if v < -c else v)
        if bad:
            return 1
    if l1 > 0:
        for i in range(n_weights):
            w = params[i]
            grads[i] += l1 if w > 0 else (-l1 if w < 0 else 0)
    return 0


# ---------------------------------------------------------------- the step

cdef inline bint bounded(const OptimizerStep *opt, double g_max, Bounds *bounds,
                         Bounds *after) noexcept nogil:
    """Bound every intermediate of the rule from max|g| and the carried bounds; fill
    ``after`` and return True if all stay below half the dtype's range (the caller passes
    that range in after.params)."""
    cdef double limit = after.params, lr = opt.lr, mu = opt.momentum, d, m, v, ratio, step
    cdef double P = bounds.params, wd = opt.weight_decay, root2
    after.state1 = 0
    after.state2 = 0
    after.state3 = 0
    if opt.code == OPT_ADAM or opt.code == OPT_ADAMW:
        d = g_max + (wd * P if opt.code == OPT_ADAM else 0.0)
        m = opt.beta1 * bounds.state1 + (1 - opt.beta1) * d
        v = opt.beta2 * bounds.state2 + (1 - opt.beta2) * d * d
        root2 = sqrt(1 - pow(opt.beta2, <double> opt.step))
        ratio = m / (opt.eps * root2)   # the denominator is at least eps·root2 (_rule)
        step = lr * root2 / (1 - pow(opt.beta1, <double> opt.step)) * ratio
        after.params = (abs(1 - lr * wd) * P if opt.code == OPT_ADAMW else P) + step
        after.state1, after.state2 = m, v
        return d * d < limit and v < limit and ratio < limit and after.params < limit
    d = g_max + wd * P
    if opt.code == OPT_RMSPROP:  # the denominator is at least eps (centered too: see its rule)
        v = opt.alpha * bounds.state1 + (1 - opt.alpha) * d * d
        ratio = d / opt.eps
        step = mu * bounds.state2 + ratio if mu != 0 else ratio
        after.params = P + lr * step
        after.state1 = v
        after.state2 = step if mu != 0 else 0
        m = 0
        if opt.centered:  # the mean gradient, in slot 3 after the momentum buffer, else 2
            m = opt.alpha * (bounds.state3 if mu != 0 else bounds.state2) + (1 - opt.alpha) * d
            if mu != 0:
                after.state3 = m
            else:
                after.state2 = m
        return (d * d < limit and v < limit and step < limit and after.params < limit
                and m < limit)
    if opt.code == OPT_ADAGRAD:
        v = bounds.state1 + d * d
        ratio = d / opt.eps
        after.params = P + adagrad_rate(opt) * ratio
        after.state1 = v
        return d * d < limit and v < limit and ratio < limit and after.params < limit
    v = mu * bounds.state1 + d if mu != 0 else 0
    step = (d + mu * v if opt.nesterov else v) if mu != 0 else d
    after.params = P + lr * step
    after.state1 = v
    return d < limit and v < limit and step < limit and after.params < limit


cdef inline bint transforms_gradients(const OptimizerStep *opt) noexcept nogil:
    """Whether the step clips or adds L1 first, and so needs the whole gradient."""
    return opt.clip_norm > 0 or opt.clip_value > 0 or opt.l1 > 0


cdef inline int transform_gradients(const OptimizerStep *opt, floating *grads,
                                    const floating *params, Py_ssize_t n_params,
                                    Py_ssize_t n_weights) noexcept nogil:
    """Clipping and L1 (if any) in place; 1 if the gradient is not finite."""
    if transforms_gradients(opt):
        return clip_and_l1(opt, grads, params, n_params, n_weights)
    return 0


cdef inline int apply_rule(const OptimizerStep *opt, floating *params, const floating *grads,
                           floating *state, Py_ssize_t n_params, Py_ssize_t n_weights,
                           Bounds *bounds) noexcept nogil:
    """The rule's step over the flat buffers, from already transformed gradients. Returns 1,
    writing nothing, if any new parameter or state value would be non-finite; else updates
    and returns 0. ``bounds`` stays valid for the next step."""
    cdef Bounds after
    after.params = 0.5 * (FLT_MAX if floating is float else DBL_MAX)
    if bounded(opt, max_magnitude(grads, n_params), bounds, &after):
        _rule_all(opt, params, grads, state, n_params, n_weights, True)
        bounds[0] = after
        return 0
    if _rule_all(opt, params, grads, state, n_params, n_weights, False):
        return 1
    _rule_all(opt, params, grads, state, n_params, n_weights, True)
    measure_bounds(params, state, n_params, n_slots(opt), bounds)
    return 0


cdef inline int apply_update(const OptimizerStep *opt, floating *params, floating *grads,
                             floating *state, Py_ssize_t n_params, Py_ssize_t n_weights,
                             Bounds *bounds) noexcept nogil:
    """transform_gradients then apply_rule: one whole optimizer step (1 if refused)."""
    if transform_gradients(opt, grads, params, n_params, n_weights):
        return 1
    return apply_rule(opt, params, grads, state, n_params, n_weights, bounds)


cdef inline void measure_bounds(const floating *params, const floating *state,
                                Py_ssize_t n_params, int slots, Bounds *bounds) noexcept nogil:
    """Exact max|params| and max|state slot|, to start (or restart) the carried bounds."""
    bounds.params = max_magnitude(params, n_params)
    bounds.state1 = max_magnitude(state, n_params) if slots >= 1 else 0
    bounds.state2 = max_magnitude(state + n_params, n_params) if slots >= 2 else 0
    bounds.state3 = max_magnitude(state + 2 * n_params, n_params) if slots >= 3 else 0

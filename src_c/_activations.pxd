# A. Invariants: each activation's forward sits beside its derivative. The derivative is
#    written from the activation's OUTPUT a wherever a determines it (sigmoid a(1-a), tanh
#    1-a², relu [a>0], elu a+1 below 0, softplus 1-exp(-a)), so the forward pass can
#    overwrite z with a in place and backward never needs z. gelu and swish are not
#    invertible: their forward also copies z into a block of its own (act_needs_z) and their
#    derivative is written from z; no other activation pays for that block or that store.
# B. Layout: Z__bo is a C-contiguous (batch x out) block; b__o the layer's bias; K__bo (gelu
#    and swish only; NULL otherwise) the same-shaped block that keeps z.
# C. Why one switch outside the loops: each inner loop is branch-free so GCC vectorises it;
#    the newer activations are small inline pairs over fexp/fexpm1/flog1p, which vectorise
#    in float32 (see _vecmath.h). Codes are mirrored by fastbp.activations.Activation (a
#    test asserts they agree).
from cython cimport floating
from libc.math cimport exp, expm1, log1p, tanh, tanhf

cdef enum:
    ACT_IDENTITY = 0
    ACT_SIGMOID = 1
    ACT_TANH = 2
    ACT_RELU = 3
    ACT_LEAKY_RELU = 4
    ACT_GELU = 5
    ACT_SOFTPLUS = 6
    ACT_ELU = 7
    ACT_SWISH = 8

cdef extern from *:
    """
    #define FASTBP_LEAKY_SLOPE 0.01  /* torch.nn.LeakyReLU's default negative slope */
    #define FASTBP_ELU_ALPHA 1.0     /* torch.nn.ELU's default alpha */
    #define FASTBP_GELU_K 0.7978845608028654  /* sqrt(2/pi), GELU's tanh approximation */
    #define FASTBP_GELU_C 0.044715
    """
    double LEAKY_SLOPE "FASTBP_LEAKY_SLOPE"
    double ELU_ALPHA "FASTBP_ELU_ALPHA"
    double GELU_K "FASTBP_GELU_K"
    double GELU_C "FASTBP_GELU_C"


cdef extern from "_vecmath.h":
    float fastbp_expf(float x) noexcept nogil
    float fastbp_expm1f(float x) noexcept nogil
    float fastbp_log1pf(float x) noexcept nogil


cdef inline floating fexp(floating x) noexcept nogil:
    """exp that vectorises in float32 (see _vecmath.h); libm's exp in float64, for accuracy."""
    if floating is float:
        return fastbp_expf(x)
    else:
        return exp(x)


cdef inline floating fexpm1(floating x) noexcept nogil:
    """exp(x) - 1, accurate near 0; vectorises in float32, libm's expm1 in float64."""
    if floating is float:
        return fastbp_expm1f(x)
    else:
        return expm1(x)


cdef inline floating flog1p(floating x) noexcept nogil:
    """log(1 + x) for x in [0, 1], accurate near 0; vectorises in float32, libm in float64."""
    if floating is float:
        return fastbp_log1pf(x)
    else:
        return log1p(x)


cdef inline bint act_needs_z(int act) noexcept nogil:
    """Whether the derivative needs the pre-activation z (so the layer keeps a z block)."""
    return act == ACT_GELU or act == ACT_SWISH


# ---------------------------------------------------------------- forward beside derivative
# The newer activations as scalar pairs; the loops below call them, inline.

cdef inline floating elu(floating z) noexcept nogil:
    """z above 0, alpha·(exp(z) - 1) at or below it (torch.nn.ELU, alpha 1)."""
    return z if z > 0 else <floating> ELU_ALPHA * fexpm1(z)

cdef inline floating elu_prime(floating a) noexcept nogil:
    """From the output: 1 above 0, alpha·exp(z) = a + alpha at or below it."""
    return 1 if a > 0 else a + <floating> ELU_ALPHA


cdef inline floating softplus(floating z) noexcept nogil:
    """log(1 + exp(z)) (torch.nn.Softplus, beta 1) as max(z, 0) + log1p(exp(-|z|)): no
    overflow for any z. Exact where torch switches to z itself (z > 20): the two differ by
    log1p(exp(-z)) < 2e-9 there, below float32's resolution."""
    return (z if z > 0 else 0) + flog1p(fexp(-z if z > 0 else z))

cdef inline floating softplus_prime(floating a) noexcept nogil:
    """From the output: sigmoid(z) = 1 - exp(-a), as -expm1(-a) so small a keep their digits."""
    return -fexpm1(-a)


cdef inline floating _gelu_2u(floating z) noexcept nogil:
    return z * (<floating> (2 * GELU_K) + <floating> (2 * GELU_K * GELU_C) * z * z)

cdef inline floating gelu(floating z) noexcept nogil:
    """0.5·z·(1 + tanh u), u = √(2/π)·(z + 0.044715 z³) (torch.nn.GELU(approximate="tanh")),
    computed as z·sigmoid(2u), which is equal: one vectorisable exp, no tanh call, and no
    cancellation where tanh u nears -1."""
    return z / (<floating> 1 + fexp(-_gelu_2u(z)))

cdef inline floating gelu_prime(floating z) noexcept nogil:
    """From z: s + z·s(1-s)·2u', s = sigmoid(2u), 2u' = 2√(2/π)(1 + 3·0.044715 z²). The
    second term is dropped where s(1-s) is 0 (|z| past ~10), so a z whose square overflows
    gives 0 or 1, not 0·inf."""
    cdef floating s = <floating> 1 / (<floating> 1 + fexp(-_gelu_2u(z)))
    cdef floating w = s * (<floating> 1 - s)
    cdef floating t = z * w * (<floating> (2 * GELU_K) + <floating> (6 * GELU_K * GELU_C) * z * z)
    return s + (t if w != 0 else 0)


cdef inline floating swish(floating z) noexcept nogil:
    """z·sigmoid(z) (torch.nn.SiLU), as z / (1 + exp(-z)): an exp overflowing to inf gives
    -0, not NaN."""
    return z / (<floating> 1 + fexp(-z))

cdef inline floating swish_prime(floating z) noexcept nogil:
    """From z: s·(1 + z(1 - s)), s = sigmoid(z); finite for every finite z."""
    cdef floating s = <floating> 1 / (<floating> 1 + fexp(-z))
    return s * (<floating> 1 + z * (<floating> 1 - s))


# ---------------------------------------------------------------- the layer loops


cdef inline void bias_act(floating *Z__bo, const floating *b__o, Py_ssize_t B, Py_ssize_t O,
                          int act, floating *K__bo) noexcept nogil:
    """Z = act(Z + b) in place, row by row; gelu and swish also keep Z + b in K."""
    cdef Py_ssize_t i, j
    cdef floating *z
    cdef floating *k
    cdef floating v, slope = <floating> LEAKY_SLOPE
    for i in range(B):
        z = Z__bo + i * O
        if act == ACT_IDENTITY:
            for j in range(O):
                z[j] = z[j] + b__o[j]
        elif act == ACT_RELU:
            for j in range(O):
                v = z[j] + b__o[j]
                z[j] = v if v > 0 else 0
        elif act == ACT_LEAKY_RELU:
            for j in range(O):
                v = z[j] + b__o[j]
                z[j] = v if v > 0 else slope * v
        elif act == ACT_SIGMOID:
            for j in range(O):
                z[j] = <floating> 1 / (<floating> 1 + fexp(-(z[j] + b__o[j])))
        elif act == ACT_TANH:
            for j in range(O):
                if floating is float:
                    z[j] = tanhf(z[j] + b__o[j])
                else:
                    z[j] = tanh(z[j] + b__o[j])
        elif act == ACT_GELU:
            k = K__bo + i * O
            for j in range(O):
                v = z[j] + b__o[j]
                k[j] = v
                z[j] = gelu(v)
        elif act == ACT_SWISH:
            k = K__bo + i * O
            for j in range(O):
                v = z[j] + b__o[j]
                k[j] = v
                z[j] = swish(v)
        elif act == ACT_ELU:
            for j in range(O):
                z[j] = elu(z[j] + b__o[j])
        elif act == ACT_SOFTPLUS:
            for j in range(O):
                z[j] = softplus(z[j] + b__o[j])


cdef inline void act_backward(floating *D, const floating *A, const floating *Z, Py_ssize_t n,
                              int act) noexcept nogil:
    """D = D ⊙ act': turns dLoss/dA into the layer's delta, with act' from the output A, or
    for gelu and swish from the kept pre-activation Z (NULL for the others)."""
    # Both operands are loaded before the select so GCC emits a vector blend, not a branch
    # (a data-dependent branch here cost ~5 ns per element in mispredictions).
    cdef Py_ssize_t i
    cdef floating a, d, slope = <floating> LEAKY_SLOPE
    if act == ACT_RELU:
        for i in range(n):
            d = D[i]
            D[i] = d if A[i] > 0 else 0
    elif act == ACT_LEAKY_RELU:
        for i in range(n):
            d = D[i]
            D[i] = d if A[i] > 0 else slope * d
    elif act == ACT_SIGMOID:
        for i in range(n):
            a = A[i]
            D[i] = D[i] * (a * (<floating> 1 - a))
    elif act == ACT_TANH:
        for i in range(n):
            a = A[i]
            D[i] = D[i] * (<floating> 1 - a * a)
    elif act == ACT_GELU:
        for i in range(n):
            D[i] = D[i] * gelu_prime(Z[i])
    elif act == ACT_SWISH:
        for i in range(n):
            D[i] = D[i] * swish_prime(Z[i])
    elif act == ACT_ELU:
        for i in range(n):
            D[i] = D[i] * elu_prime(A[i])
    elif act == ACT_SOFTPLUS:
        for i in range(n):
            D[i] = D[i] * softplus_prime(A[i])


cdef inline floating act_derivative(floating a, floating z, int act) noexcept nogil:
    """act'(z) from a = act(z), or from z itself for gelu and swish; used where one element
    is at hand (the regression losses). z is not read for the other activations."""
    if act == ACT_RELU:
        return 1 if a > 0 else 0
    if act == ACT_LEAKY_RELU:
        return 1 if a > 0 else <floating> LEAKY_SLOPE
    if act == ACT_SIGMOID:
        return a * (<floating> 1 - a)
    if act == ACT_TANH:
        return <floating> 1 - a * a
    if act == ACT_GELU:
        return gelu_prime(z)
    if act == ACT_SWISH:
        return swish_prime(z)
    if act == ACT_ELU:
        return elu_prime(a)
    if act == ACT_SOFTPLUS:
        return softplus_prime(a)
    return 1

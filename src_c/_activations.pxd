# A. Invariants: each activation's forward sits beside its derivative, and the derivative is
#    written from the activation's OUTPUT a (sigmoid a(1-a), tanh 1-a², relu [a>0]) so the
#    forward pass can overwrite z with a in place and backward never needs z.
# B. Layout: Z__bo is a C-contiguous (batch x out) block; b__o the layer's bias.
# C. Why one switch outside the loops: each inner loop is branch-free so GCC vectorises it.
#    Codes are mirrored by fastbp.activations.Activation (a test asserts they agree).
from cython cimport floating
from libc.math cimport exp, tanh, tanhf

cdef enum:
    ACT_IDENTITY = 0
    ACT_SIGMOID = 1
    ACT_TANH = 2
    ACT_RELU = 3
    ACT_LEAKY_RELU = 4

cdef extern from *:
    """
    #define FASTBP_LEAKY_SLOPE 0.01  /* torch.nn.LeakyReLU's default negative slope */
    """
    double LEAKY_SLOPE "FASTBP_LEAKY_SLOPE"


cdef extern from "_vecmath.h":
    float fastbp_expf(float x) noexcept nogil


cdef inline floating fexp(floating x) noexcept nogil:
    """exp that vectorises in float32 (see _vecmath.h); libm's exp in float64, for accuracy."""
    if floating is float:
        return fastbp_expf(x)
    else:
        return exp(x)


cdef inline void bias_act(floating *Z__bo, const floating *b__o, Py_ssize_t B, Py_ssize_t O,
                          int act) noexcept nogil:
    """Z = act(Z + b) in place, row by row."""
    cdef Py_ssize_t i, j
    cdef floating *z
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
                z[j] = 1 / (1 + fexp(-(z[j] + b__o[j])))
        elif act == ACT_TANH:
            for j in range(O):
                if floating is float:
                    z[j] = tanhf(z[j] + b__o[j])
                else:
                    z[j] = tanh(z[j] + b__o[j])


cdef inline void act_backward(floating *D, const floating *A, Py_ssize_t n,
                              int act) noexcept nogil:
    """D = D ⊙ act'(A): turns dLoss/dA into the layer's delta, with act' from the output A."""
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
            D[i] = D[i] * (a * (1 - a))
    elif act == ACT_TANH:
        for i in range(n):
            a = A[i]
            D[i] = D[i] * (1 - a * a)


cdef inline floating act_derivative(floating a, int act) noexcept nogil:
    """act'(z) written from a = act(z); used where one element is at hand (the mse loss)."""
    if act == ACT_RELU:
        return 1 if a > 0 else 0
    if act == ACT_LEAKY_RELU:
        return 1 if a > 0 else <floating> LEAKY_SLOPE
    if act == ACT_SIGMOID:
        return a * (1 - a)
    if act == ACT_TANH:
        return 1 - a * a
    return 1

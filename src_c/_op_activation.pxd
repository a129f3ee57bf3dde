# A. Invariants: a standalone Activation op writes A = act(X) into its own output block and
#    keeps nothing else: its input X stays intact, so it is the pre-activation that gelu's
#    and swish's derivatives read. Backward scales its delta in place (din is dout).
# B. Layout: X, A and the delta are (rows x n) blocks; n_in == n_out.
# C. Why a copy and not bias_act in place: the input belongs to the op before (its output,
#    read again by that op's backward), and there is no bias to add.
from cython cimport floating
from libc.math cimport tanh, tanhf

from _ops cimport Op
from _activations cimport (act_backward, fexp, gelu, swish, elu, softplus, LEAKY_SLOPE,
                           ACT_IDENTITY, ACT_SIGMOID, ACT_TANH, ACT_RELU, ACT_LEAKY_RELU,
                           ACT_GELU, ACT_SOFTPLUS, ACT_ELU, ACT_SWISH)


cdef inline void act_copy(const floating *X, floating *A, Py_ssize_t n, int act) noexcept nogil:
    """A = act(X), elementwise; one branch-free loop per activation."""
    cdef Py_ssize_t i
    cdef floating v, slope = <floating> LEAKY_SLOPE
    if act == ACT_RELU:
        for i in range(n):
            v = X[i]
            A[i] = v if v > 0 else 0
    elif act == ACT_LEAKY_RELU:
        for i in range(n):
            v = X[i]
            A[i] = v if v > 0 else slope * v
    elif act == ACT_SIGMOID:
        for i in range(n):
            A[i] = <floating> 1 / (<floating> 1 + fexp(-X[i]))
    elif act == ACT_TANH:
        for i in range(n):
            A[i] = tanhf(X[i]) if floating is float else tanh(X[i])
    elif act == ACT_GELU:
        for i in range(n):
            A[i] = gelu(X[i])
    elif act == ACT_SWISH:
        for i in range(n):
            A[i] = swish(X[i])
    elif act == ACT_ELU:
        for i in range(n):
            A[i] = elu(X[i])
    elif act == ACT_SOFTPLUS:
        for i in range(n):
            A[i] = softplus(X[i])
    else:
        for i in range(n):
            A[i] = X[i]


cdef inline void activation_forward(const Op *op, const floating *X, floating *ws,
                                    Py_ssize_t r0, Py_ssize_t rows) noexcept nogil:
    act_copy(X + r0 * op.n_in, ws + op.out + r0 * op.n_in, rows * op.n_in, op.act)


cdef inline void activation_backward(const Op *op, const floating *X, floating *ws,
                                     Py_ssize_t r0, Py_ssize_t rows) noexcept nogil:
    """δ ⊙ act' in place, act' from the output (or from the input X: gelu, swish)."""
    act_backward(ws + op.din + r0 * op.n_in, ws + op.out + r0 * op.n_in, X + r0 * op.n_in,
                 rows * op.n_in, op.act)

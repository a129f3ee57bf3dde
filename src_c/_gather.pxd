# A. Invariants: the batch's rows are copied from X (n_rows x F, C-contiguous) in the order
#    the epoch's permutation gives, into the workspace's first block (B x F).
# B. Why prefetching: shuffled rows of a large X miss every cache, and the hardware
#    prefetcher only follows one row at a time: loading a few rows ahead keeps several in
#    flight, and the next batch's rows are requested while the current one's weight
#    gradients and step run (_core.pyx).
from cython cimport floating

from _optim cimport copy_max_magnitude

cdef extern from "_vecmath.h":
    void fastbp_prefetch(const void *address) noexcept nogil

cdef enum:
    GATHER_AHEAD = 4             # rows whose loads the gather starts before copying one
    GATHER_MAX_ROW_LENGTH = 256  # rows at least this long take their max while copied


cdef inline void prefetch_range(const void *start, Py_ssize_t n_bytes) noexcept nogil:
    """Ask for every 64-byte cache line of start[0:n_bytes]."""
    cdef Py_ssize_t offset
    for offset in range(0, n_bytes, 64):
        fastbp_prefetch(<const char *> start + offset)


cdef inline void prefetch_rows(const floating *X__nf, const Py_ssize_t *idx, Py_ssize_t B,
                               Py_ssize_t F) noexcept nogil:
    cdef Py_ssize_t r
    for r in range(B):
        prefetch_range(X__nf + idx[r] * F, F * <Py_ssize_t> sizeof(floating))


cdef inline double gather(const floating *X__nf, const Py_ssize_t *idx, Py_ssize_t B,
                          Py_ssize_t F, floating *Xb__bf) noexcept nogil:
    """Copy rows idx[0:B] of X to Xb. Returns their max|x| (for the fused step's gradient
    bound) if the rows are long, taken while copying them (the loads wait on memory
    anyway), else -1: a per-row max costs more than a short row (measured on 64 features:
    3% of the step)."""
    cdef Py_ssize_t r, j
    cdef const floating *src
    cdef floating *dst
    cdef double row_max, batch_max = 0
    cdef bint max_while_copying = F >= GATHER_MAX_ROW_LENGTH
    prefetch_rows(X__nf, idx, min(B, GATHER_AHEAD), F)
    for r in range(B):
        if r + GATHER_AHEAD < B:
            prefetch_rows(X__nf, idx + r + GATHER_AHEAD, 1, F)
        src = X__nf + idx[r] * F
        dst = Xb__bf + r * F
        if max_while_copying:
            row_max = copy_max_magnitude(src, dst, F)
            if row_max > batch_max or row_max != row_max:  # NaN, once seen, stays
                batch_max = row_max
        else:
            for j in range(F):  # a plain loop, not memcpy: short rows would pay its call
                dst[j] = src[j]
    return batch_max if max_while_copying else -1

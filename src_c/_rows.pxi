# Included by _core.pyx: the epoch's row order and the finite check of fit's input, which
# the training loop does not call (Python does, once per epoch or per fit).
# ---------------------------------------------------------------- shuffling
# fit draws each epoch's row order here from one 64-bit seed that it takes from the model's
# NumPy generator: a SplitMix64 stream (Steele, Lea and Flood's generator; it passes
# BigCrush) drives an inside-out Fisher-Yates shuffle whose bounded draws use Lemire's
# multiply-shift with rejection (unbiased). Measured on 8192 rows: 15 µs, where
# Generator.permutation took 68 µs (3% of the tiny benchmark network's epoch). The same
# seed always gives the same order, on every platform.

cdef inline uint64_t _splitmix64(uint64_t *state) noexcept nogil:
    cdef uint64_t z
    state[0] += <uint64_t> 0x9E3779B97F4A7C15
    z = state[0]
    z = (z ^ (z >> 30)) * <uint64_t> 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t> 0x94D049BB133111EB
    return z ^ (z >> 31)


cdef inline uint64_t _below(uint64_t *state, uint64_t bound) noexcept nogil:
    """A uniform integer in [0, bound), 1 <= bound < 2^32: Lemire's method on the top 32
    bits of a draw, rejecting the few low products that would bias it."""
    cdef uint64_t m = (_splitmix64(state) >> 32) * bound
    cdef uint32_t threshold
    if <uint32_t> m < bound:
        threshold = <uint32_t> ((<uint64_t> 1 << 32) - bound) % <uint32_t> bound
        while <uint32_t> m < threshold:
            m = (_splitmix64(state) >> 32) * bound
    return m >> 32


def shuffled_order(Py_ssize_t[::1] order, uint64_t seed):
    """Fill ``order`` with a permutation of 0..len(order)-1 drawn from ``seed`` (see above)."""
    cdef Py_ssize_t i, j, n = order.shape[0]
    cdef uint64_t state = seed
    if n >= 4294967296:
        raise ValueError("shuffled_order handles fewer than 2^32 rows")
    with nogil:
        for i in range(n):
            j = <Py_ssize_t> _below(&state, <uint64_t> i + 1)
            order[i] = order[j]
            order[j] = i


ctypedef fused float_bits:
    uint32_t
    uint64_t


cdef enum:
    FINITE_BLOCK_BYTES = 256     # all_finite's unit: four cache lines, one OR per block
    FINITE_AHEAD_BYTES = 16384   # how far ahead all_finite asks memory for its input


def all_finite(const float_bits[::1] bits):
    """True if no value is NaN or infinite, given the bits of a float32 (uint32 view) or
    float64 (uint64 view) array: a value is non-finite exactly when its exponent bits are
    all ones. One vectorised pass without the GIL, where min() and max() would take two.
    It prefetches 16 KB ahead: on a 51 MB array from memory, 1.39 ms without, 0.96 with
    (the hardware prefetcher alone left the loop waiting on memory)."""
    cdef float_bits exponent, block_bad
    cdef Py_ssize_t i = 0, j, n = bits.shape[0]
    cdef Py_ssize_t block = FINITE_BLOCK_BYTES // sizeof(float_bits)
    cdef Py_ssize_t ahead = FINITE_AHEAD_BYTES // sizeof(float_bits)
    cdef int bad = 0
    if float_bits is uint32_t:
        exponent = 0x7f800000
    else:
        exponent = 0x7ff0000000000000
    with nogil:
        while i + block <= n:
            if i + ahead + block <= n:
                prefetch_range(&bits[i + ahead], FINITE_BLOCK_BYTES)
            block_bad = 0
            for j in range(block):
                block_bad |= (bits[i + j] & exponent) == exponent
            bad |= block_bad != 0
            i += block
        for j in range(i, n):
            bad |= (bits[j] & exponent) == exponent
    return not bad



# A. Invariants: a dropout mask is never stored. On training step k, element e of a layer's
#    input block (e = row·n_in + unit, rows counted from the batch's first row) is kept
#    iff draw(e, keys) >= threshold, with keys = dropout_keys(seed, k, layer); kept elements
#    are scaled by 1/(1 - threshold/2³²) (inverted dropout), dropped ones become 0. Forward
#    and backward call the same draw, so backward regenerates forward's mask exactly, and
#    threads taking rows r0:r1 draw from e = r0·n_in on, as one thread would.
# B. Layout: X__e the layer's input (the previous layer's output, or the batch), Y__e its
#    dropped copy in a workspace block of its own (the next GEMM and dW read it; the
#    undropped output stays for act_backward and telemetry), D__e a delta block scaled in
#    place; all are `n` consecutive elements starting at element `e0` of the batch's block.
# C. Why a counter-based hash and not a sequential generator (xoshiro, PCG): forward,
#    backward and every thread need the draw of any element in any order, with no mask
#    memory and no generator state to carry between batches or through save/load. A
#    sequential stream would have to be stored or skipped ahead per row. The per-element
#    draw is two rounds of a 32-bit multiply-xorshift mixer, keyed by two 32-bit words:
#    32-bit lanes vectorise (AVX2 vpmulld, 8 per instruction) where a 64-bit multiply does
#    not. The per-batch keys come from splitmix64's finaliser over (seed, step, layer), once
#    per layer and batch. The second keyed round keeps two steps' masks unrelated even
#    when their first-round keys agree in the high bits (the same set of first-round
#    values, permuted). fastbp's NumPy reference (benchmarks/numpy_reference.py) recomputes
#    the same draws with NumPy integer arithmetic, and a test holds the two equal.
#    The step is the model's count of training batches (plan.training_steps), not the
#    optimizer's update count: that one restarts with every new optimizer (a warm-started
#    scikit-learn fit makes one), which would replay the masks of the first fit, the same
#    mask for the same row on every epoch of an unshuffled run.
#    Cost, measured (2-core Zen 5, float32, per element and direction): 0.41 ns with AVX2,
#    1.4 ns in the SSE2 baseline build (no 32-bit vector multiply); a Dropout(0.5) on the
#    benchmark's 784-128-10 network costs 2-4% of an epoch, and networks without dropout
#    run exactly the code they ran before plus one branch per layer.
#    As an op (the end of this file): while training with dropout it writes its own output
#    block and scales its delta in place (din is dout); otherwise it passes its input
#    through and does nothing. Each Dropout op draws with its own key_index (fastbp.plan).
from libc.stdint cimport uint32_t, uint64_t
from cython cimport floating

from _ops cimport Op


cdef inline uint64_t splitmix64(uint64_t x) noexcept nogil:
    """splitmix64's output function: a bijective 64-bit mixer (golden-ratio increment, two
    multiply-xorshift rounds)."""
    x += <uint64_t> 0x9E3779B97F4A7C15
    x = (x ^ (x >> 30)) * <uint64_t> 0xBF58476D1CE4E5B9
    x = (x ^ (x >> 27)) * <uint64_t> 0x94D049BB133111EB
    return x ^ (x >> 31)


cdef inline uint64_t dropout_keys(uint64_t seed, uint64_t step, uint64_t layer) noexcept nogil:
    """The two 32-bit keys of one layer's masks on one training step, packed (low, high)."""
    return splitmix64(splitmix64(seed ^ splitmix64(step)) + layer)


cdef inline uint32_t mix32(uint32_t x) noexcept nogil:
    """A bijective 32-bit multiply-xorshift mixer (good avalanche with two multiplies)."""
    x ^= x >> 16
    x *= <uint32_t> 0x7FEB352D
    x ^= x >> 15
    x *= <uint32_t> 0x846CA68B
    x ^= x >> 16
    return x


cdef inline uint32_t draw(uint32_t e, uint32_t k0, uint32_t k1) noexcept nogil:
    """The uniform 32-bit draw of element e under keys (k0, k1)."""
    return mix32(mix32(e ^ k0) ^ k1)


# ---------------------------------------------------------------- forward beside backward

cdef inline void dropout_forward(const floating *X__e, floating *Y__e, Py_ssize_t n,
                                 uint32_t e0, uint64_t keys, uint32_t threshold,
                                 floating scale) noexcept nogil:
    """Y = X·scale where kept, 0 where dropped (draw < threshold): a select, not a multiply
    by 0, so an infinite input stays visible to the loss instead of turning into NaN."""
    cdef Py_ssize_t i
    cdef uint32_t k0 = <uint32_t> keys, k1 = <uint32_t> (keys >> 32)
    cdef floating v
    for i in range(n):
        v = X__e[i] * scale
        Y__e[i] = v if draw(e0 + <uint32_t> i, k0, k1) >= threshold else 0


cdef inline void dropout_backward(floating *D__e, Py_ssize_t n, uint32_t e0, uint64_t keys,
                                  uint32_t threshold, floating scale) noexcept nogil:
    """D = D·scale where forward kept, 0 where it dropped: dLoss/dX from dLoss/dY, the same
    mask regenerated from the same keys."""
    cdef Py_ssize_t i
    cdef uint32_t k0 = <uint32_t> keys, k1 = <uint32_t> (keys >> 32)
    cdef floating v
    for i in range(n):
        v = D__e[i] * scale
        D__e[i] = v if draw(e0 + <uint32_t> i, k0, k1) >= threshold else 0


cdef inline void dropout_op_forward(const Op *op, const floating *X, floating *ws,
                                    Py_ssize_t r0, Py_ssize_t rows,
                                    const Py_ssize_t *positions=NULL) noexcept nogil:
    """Rows r0:r0+rows of the op's output: its input dropped out and scaled. With
    ``positions``, row r draws the mask of batch row positions[r] (a process holding some
    rows of a batch spread over processes: fastbp.distributed), else of row r."""
    cdef Py_ssize_t r
    if positions == NULL:
        dropout_forward(X + r0 * op.n_in, ws + op.out + r0 * op.n_in, rows * op.n_in,
                        <uint32_t> (r0 * op.n_in), op.keys, op.drop, <floating> op.scale)
        return
    for r in range(r0, r0 + rows):
        dropout_forward(X + r * op.n_in, ws + op.out + r * op.n_in, op.n_in,
                        <uint32_t> (positions[r] * op.n_in), op.keys, op.drop,
                        <floating> op.scale)


cdef inline void dropout_op_backward(const Op *op, floating *ws, Py_ssize_t r0,
                                     Py_ssize_t rows,
                                     const Py_ssize_t *positions=NULL) noexcept nogil:
    """Rows r0:r0+rows of its delta, masked and scaled in place (positions: as forward)."""
    cdef Py_ssize_t r
    if positions == NULL:
        dropout_backward(ws + op.din + r0 * op.n_in, rows * op.n_in,
                         <uint32_t> (r0 * op.n_in), op.keys, op.drop, <floating> op.scale)
        return
    for r in range(r0, r0 + rows):
        dropout_backward(ws + op.din + r * op.n_in, op.n_in,
                         <uint32_t> (positions[r] * op.n_in), op.keys, op.drop,
                         <floating> op.scale)

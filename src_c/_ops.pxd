# A. Invariants: a network is a list of ops run forward in order and backward in reverse
#    (darknet's network.c). Every op reads the value before it (the batch for op 0) and
#    writes a value of its own, except the pass-throughs (a residual block's begin, and
#    dropout while not training), whose output IS their input. Values stay intact through
#    backward, so an op's backward may read its input and its output.
# B. Layout: every offset is into the model's flat buffers: p0/p1 into the parameters (and
#    gradients; Dense W/b, norm γ/β; -1: none), out/dout/z/aux into the workspace (-1: none),
#    stats into the running statistics (BatchNorm). A location (in_loc, out_loc) is a
#    workspace offset or LOC_BATCH, the batch input; locations are resolved once per call
#    (_resolve in _core.pyx), since which ops pass through depends only on the mode.
#    Deltas: dout is dLoss/d(output); din is the delta block of the op's input value, which
#    backward writes (-1: nothing below needs it). Dropout and Activation scale their delta
#    in place, so their din and dout are one block; the last Dense's dout is its output,
#    which the loss overwrites with dLoss/dZ.
# C. Why an enum switch and not function pointers: the kinds are few, each call is a
#    direct inline call the compiler sees, and a new kind is one file plus one case.
#    Codes are mirrored by fastbp.plan.OpKind (a test asserts they agree).
from cython cimport floating
from libc.stdint cimport uint32_t, uint64_t

cdef enum:
    OP_DENSE = 0
    OP_DROPOUT = 1
    OP_ACTIVATION = 2
    OP_BATCHNORM = 3
    OP_LAYERNORM = 4
    OP_RESIDUAL_BEGIN = 5
    OP_RESIDUAL_ADD = 6

cdef enum:
    LOC_BATCH = -1   # the location of the batch input (op 0's input)

cdef struct Op:
    int kind
    int act               # Dense, Activation: the activation code
    Py_ssize_t n_in, n_out
    Py_ssize_t p0, p1     # parameter offsets (W or γ, b or β); -1: none
    Py_ssize_t out        # its output block; -1: a pass-through
    Py_ssize_t dout, din  # delta blocks of its output and of its input; -1: none
    Py_ssize_t z          # Dense: kept pre-activation (gelu, swish); -1: none
    Py_ssize_t aux        # norms: per-feature (BatchNorm) or per-row (LayerNorm) figures
    Py_ssize_t stats      # BatchNorm: running mean, then running variance
    Py_ssize_t partner    # residual: the index of the matching begin or add
    Py_ssize_t in_loc, out_loc  # resolved per call (A, B)
    uint32_t drop         # Dropout: an element is dropped when its draw is below this
    double scale          # Dropout: 1 / keep probability = 2³² / (2³² - drop)
    uint64_t key_index    # Dropout: which masks it draws (fastbp.plan: stable per layer)
    uint64_t keys         # Dropout: this training step's mask keys
    double eps, momentum  # norms
    bint loss_fused       # the last Dense: the loss computed its dZ

cdef struct SparseInput:
    const Py_ssize_t *indptr   # CSR of all rows of X: row x's entries are indptr[x]:indptr[x+1]
    const int *indices         # their columns (features)
    const void *values         # their values (the plan's dtype)
    const Py_ssize_t *rows     # the current batch's rows of X (its order), or NULL: first + r
    Py_ssize_t first
    # one thread's scratch for the fused step (_op_sparse.pxd sparse_weight_step), or NULL:
    Py_ssize_t *counts         # n_in + 1: per column of its part, where its entries end
    Py_ssize_t *entry_rows     # the batch's entries in its columns, by column (capacity)
    void *entry_values
    void *block                # SPARSE_BLOCK_ELEMENTS (or n_out) gradient values


cdef struct Net:
    Op *ops
    Py_ssize_t n_ops, n_params, n_weights, capacity, n_stats
    int loss
    bint training         # batch statistics in the norms (else running statistics)
    bint dropping         # training with dropout: dropouts write their own block
    bint row_local        # no op needs the whole batch: threads may split rows
    uint64_t seed         # plan.dropout_seed
    const Py_ssize_t *positions  # per row: its position in the batch (dropout draws); NULL: row i is i
    SparseInput sparse    # X as CSR rows (_op_sparse.pxd); sparse.indptr NULL: X is dense


cdef inline const floating *at(Py_ssize_t loc, floating *ws,
                                const floating *Xb) noexcept nogil:
    """Row 0 of the value at a location (B): the batch or a workspace block."""
    return Xb if loc == LOC_BATCH else ws + loc

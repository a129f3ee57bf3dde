# A. Invariants: every matrix here is C-contiguous (row-major) with the shape its name gives;
#    e.g. A__mk is m rows by k columns, leading dimension k. Callers never pass a leading
#    dimension: this file is the only place that knows BLAS is column-major.
# B. Layout trick: a row-major (r x c) matrix is the column-major (c x r) matrix of its
#    transpose, so row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the
#    operands and keep the transpose flags.
# C. Why fused wrappers: one kernel source serves float32 (sgemm) and float64 (dgemm); the
#    branch on `floating` is resolved at compile time. All are noexcept nogil.
from cython cimport floating
# D. Small products (at most SMALL_GEMM_MACS multiply-adds, beta 0) skip BLAS when
#    fastbp_small_gemm_on: the mm_* wrappers hand them to the register-blocked C loops of
#    _smallgemm.h, which beat OpenBLAS's AVX2 kernels' call, dispatch and packing there
#    (measured: benchmarks/small_gemm.py); see _smallgemm.h E for when it is off.
#    blas_* always call BLAS (the GEMM-only roofline times those).
from scipy.linalg.cython_blas cimport sgemm, dgemm

cdef extern from "_smallgemm.h":
    int FASTBP_SMALL_GEMM
    int fastbp_small_gemm_on
    void fastbp_small_sgemm(int m, int n, int k, const float *A, Py_ssize_t ars,
                            Py_ssize_t aks, const float *B, float *C) noexcept nogil
    void fastbp_small_dgemm(int m, int n, int k, const double *A, Py_ssize_t ars,
                            Py_ssize_t aks, const double *B, double *C) noexcept nogil

cdef enum:
    SMALL_GEMM_MACS = 131072   # the largest product (m·n·k) the C loops take
    SMALL_NT_SCRATCH = 4096    # mm_nt copies Bᵀ (n·k entries) to the stack first

cdef enum:
    NO_TRANS = 78   # 'N'
    TRANS = 84      # 'T'


cdef inline void _gemm(char transa, char transb, int m, int n, int k,
                       floating alpha, const floating *A, int lda,
                       const floating *B, int ldb, floating beta,
                       floating *C, int ldc) noexcept nogil:
    # Column-major GEMM: C(m x n) = alpha·op(A)·op(B) + beta·C.
    if floating is float:
        sgemm(&transa, &transb, &m, &n, &k, &alpha, <float *> A, &lda,
              <float *> B, &ldb, &beta, C, &ldc)
    else:
        dgemm(&transa, &transb, &m, &n, &k, &alpha, <double *> A, &lda,
              <double *> B, &ldb, &beta, C, &ldc)


cdef inline void blas_nn(const floating *A__mk, const floating *B__kn, floating *C__mn,
                         int m, int k, int n, floating beta) noexcept nogil:
    """C = A·B + beta·C, row-major, through BLAS."""
    _gemm(NO_TRANS, NO_TRANS, n, m, k, <floating> 1.0, B__kn, n, A__mk, k, beta, C__mn, n)


cdef inline void blas_nt(const floating *A__mk, const floating *B__nk, floating *C__mn,
                         int m, int k, int n, floating beta) noexcept nogil:
    """C = A·Bᵀ + beta·C, row-major, through BLAS."""
    _gemm(TRANS, NO_TRANS, n, m, k, <floating> 1.0, B__nk, k, A__mk, k, beta, C__mn, n)


cdef inline void blas_tn(const floating *A__km, const floating *B__kn, floating *C__mn,
                         int m, int k, int n, floating beta) noexcept nogil:
    """C = Aᵀ·B + beta·C, row-major, through BLAS."""
    _gemm(NO_TRANS, TRANS, n, m, k, <floating> 1.0, B__kn, n, A__km, m, beta, C__mn, n)




cdef inline void _small(int m, int n, int k, const floating *A, Py_ssize_t ars,
                        Py_ssize_t aks, const floating *B, floating *C) noexcept nogil:
    if floating is float:
        fastbp_small_sgemm(m, n, k, A, ars, aks, B, C)
    else:
        fastbp_small_dgemm(m, n, k, A, ars, aks, B, C)


cdef inline bint _use_small(int m, int k, int n, floating beta) noexcept nogil:
    return (FASTBP_SMALL_GEMM and fastbp_small_gemm_on and beta == 0 and m > 0 and n > 0 and k > 0
            and <long long> m * n * k <= SMALL_GEMM_MACS)


# E. Thread teams split a product by rows: ``m_full`` (the whole product's m; -1: m) makes
#    the C-loop-or-BLAS choice for the whole product, so every part of it runs the same
#    arithmetic whatever the number of parts (the result must not depend on the team size).


cdef inline void mm_nn(const floating *A__mk, const floating *B__kn, floating *C__mn,
                       int m, int k, int n, floating beta, int m_full=-1) noexcept nogil:
    """C = A·B + beta·C, row-major (small products in C, see D and E)."""
    if _use_small(m_full if m_full >= 0 else m, k, n, beta) and m > 0:
        _small(m, n, k, A__mk, k, 1, B__kn, C__mn)
    else:
        blas_nn(A__mk, B__kn, C__mn, m, k, n, beta)


cdef inline void mm_nt(const floating *A__mk, const floating *B__nk, floating *C__mn,
                       int m, int k, int n, floating beta, int m_full=-1) noexcept nogil:
    """C = A·Bᵀ + beta·C, row-major (small products in C on a transposed copy of B; E)."""
    cdef floating Bt__kn[SMALL_NT_SCRATCH]
    cdef Py_ssize_t j, p
    # The copy of B pays off only for short rows (the 32x10x32 product of a 10-unit layer's
    # delta ran in 0.26 µs against BLAS's 0.42; at k = 32 or 64 the two tied or BLAS won).
    if (_use_small(m_full if m_full >= 0 else m, k, n, beta) and m > 0 and k <= 16
            and <long long> n * k <= SMALL_NT_SCRATCH):
        for j in range(n):
            for p in range(k):
                Bt__kn[p * n + j] = B__nk[j * k + p]
        _small(m, n, k, A__mk, k, 1, Bt__kn, C__mn)
    else:
        blas_nt(A__mk, B__nk, C__mn, m, k, n, beta)


cdef inline void mm_tn(const floating *A__km, const floating *B__kn, floating *C__mn,
                       int m, int k, int n, floating beta) noexcept nogil:
    """C = Aᵀ·B + beta·C, row-major (small products in C, see D)."""
    if _use_small(m, k, n, beta):
        _small(m, n, k, A__km, 1, m, B__kn, C__mn)
    else:
        blas_tn(A__km, B__kn, C__mn, m, k, n, beta)


cdef inline void mm_tn_rows(const floating *A__km, const floating *B__kn, floating *C__mn,
                            int m, int k, int n, int row0, int row1) noexcept nogil:
    """Rows row0:row1 of C = Aᵀ·B, row-major: C[row0:row1] = (A[:, row0:row1])ᵀ·B, the same
    arithmetic as mm_tn's for those rows (E). Parts that split C's rows write disjoint,
    contiguous ranges of C."""
    if row1 <= row0:
        return
    if _use_small(m, k, n, <floating> 0):
        _small(row1 - row0, n, k, A__km + row0, 1, m, B__kn, C__mn + <Py_ssize_t> row0 * n)
    else:
        _gemm(NO_TRANS, TRANS, n, row1 - row0, k, <floating> 1.0, B__kn, n, A__km + row0, m,
              <floating> 0, C__mn + <Py_ssize_t> row0 * n, n)


# F. Column blocks, BLAS only: a team splits a product that BLAS runs by C's columns where
#    a split by rows would have every thread pack the whole of the other operand (a layer's
#    W, bigger than the batch's rows; _step.pxi _by_columns). C keeps its row length n.


cdef inline bint _small_macs(int m, int k, int n) noexcept nogil:
    return (FASTBP_SMALL_GEMM and fastbp_small_gemm_on and m > 0 and n > 0 and k > 0
            and <long long> m * n * k <= SMALL_GEMM_MACS)


cdef inline bint nn_by_blas(int m, int k, int n) noexcept nogil:
    """True if mm_nn gives the product (of the whole batch's m rows, beta 0) to BLAS."""
    return not _small_macs(m, k, n)


cdef inline bint nt_by_blas(int m, int k, int n) noexcept nogil:
    """True if mm_nt gives the product (of the whole batch's m rows, beta 0) to BLAS."""
    return not (_small_macs(m, k, n) and k <= 16 and <long long> n * k <= SMALL_NT_SCRATCH)


cdef inline void blas_nn_cols(const floating *A__mk, const floating *B__kn, floating *C__mn,
                              int m, int k, int n, int col0, int col1) noexcept nogil:
    """Columns col0:col1 of C = A·B, row-major, through BLAS: C[:, col0:col1] =
    A·B[:, col0:col1]."""
    if col1 > col0:
        _gemm(NO_TRANS, NO_TRANS, col1 - col0, m, k, <floating> 1.0, B__kn + col0, n, A__mk,
              k, <floating> 0, C__mn + col0, n)


cdef inline void blas_nt_cols(const floating *A__mk, const floating *B__nk, floating *C__mn,
                              int m, int k, int n, int col0, int col1) noexcept nogil:
    """Columns col0:col1 of C = A·Bᵀ, row-major, through BLAS: C[:, col0:col1] =
    A·(B[col0:col1])ᵀ."""
    if col1 > col0:
        _gemm(TRANS, NO_TRANS, col1 - col0, m, k, <floating> 1.0, B__nk + <Py_ssize_t> col0 * k,
              k, A__mk, k, <floating> 0, C__mn + col0, n)

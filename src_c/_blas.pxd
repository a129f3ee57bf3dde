# A. Invariants: every matrix here is C-contiguous (row-major) with the shape its name gives;
#    e.g. A__mk is m rows by k columns, leading dimension k. Callers never pass a leading
#    dimension: this file is the only place that knows BLAS is column-major.
# B. Layout trick: a row-major (r x c) matrix is the column-major (c x r) matrix of its
#    transpose, so row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the
#    operands and keep the transpose flags.
# C. Why fused wrappers: one kernel source serves float32 (sgemm) and float64 (dgemm); the
#    branch on `floating` is resolved at compile time. All are noexcept nogil.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm

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


cdef inline void mm_nn(const floating *A__mk, const floating *B__kn, floating *C__mn,
                       int m, int k, int n, floating beta) noexcept nogil:
    """C = A·B + beta·C, row-major."""
    _gemm(NO_TRANS, NO_TRANS, n, m, k, <floating> 1.0, B__kn, n, A__mk, k, beta, C__mn, n)


cdef inline void mm_nt(const floating *A__mk, const floating *B__nk, floating *C__mn,
                       int m, int k, int n, floating beta) noexcept nogil:
    """C = A·Bᵀ + beta·C, row-major."""
    _gemm(TRANS, NO_TRANS, n, m, k, <floating> 1.0, B__nk, k, A__mk, k, beta, C__mn, n)


cdef inline void mm_tn(const floating *A__km, const floating *B__kn, floating *C__mn,
                       int m, int k, int n, floating beta) noexcept nogil:
    """C = Aᵀ·B + beta·C, row-major."""
    _gemm(NO_TRANS, TRANS, n, m, k, <floating> 1.0, B__kn, n, A__km, m, beta, C__mn, n)


cdef inline void mm_tn_rows(const floating *A__km, const floating *B__kn, floating *C__mn,
                            int m, int k, int n, int row0, int row1) noexcept nogil:
    """Rows row0:row1 of C = Aᵀ·B, row-major: C[row0:row1] = (A[:, row0:row1])ᵀ·B. Threads
    that split C's rows this way write disjoint, contiguous ranges of C."""
    _gemm(NO_TRANS, TRANS, n, row1 - row0, k, <floating> 1.0, B__kn, n, A__km + row0, m,
          <floating> 0, C__mn + <Py_ssize_t> row0 * n, n)

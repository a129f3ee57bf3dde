# A. The two declarations of SciPy's scipy/linalg/cython_blas.pxd that the core cimports
#    (_blas.pxd), copied as SciPy writes them (its typedef names s and d included), so that
#    Cython finds them here (setup.py passes -I src_c) and the build needs neither SciPy nor
#    NumPy installed.
# B. At import the core still takes sgemm and dgemm from the installed SciPy's
#    scipy.linalg.cython_blas (its __pyx_capi__), and Cython checks each function's
#    signature there: a SciPy whose declarations differed would fail the import with
#    "Function signature mismatch", never call a wrong one. SciPy documents this module's
#    declarations as a stable API (>= 0.16).
# C. Why: build isolation installed NumPy and SciPy (about 215 MB) into every fresh build
#    environment only for this file: measured (issue 18, 2-core machine) 11.7 s of CPU for
#    setuptools + Cython + NumPy + SciPy against 3.7 s for setuptools + Cython, in each of
#    the README's two commands.
ctypedef float s
ctypedef double d

cdef void dgemm(char *transa, char *transb, int *m, int *n, int *k, d *alpha, d *a, int *lda, d *b, int *ldb, d *beta, d *c, int *ldc) noexcept nogil
cdef void sgemm(char *transa, char *transb, int *m, int *n, int *k, s *alpha, s *a, int *lda, s *b, int *ldb, s *beta, s *c, int *ldc) noexcept nogil

/* Small row-major matrix products in plain C, for the layers where OpenBLAS's call, packing
 * and dispatch cost more than the arithmetic (_blas.pxd picks this or BLAS by size).
 *
 * A. What: C (m x n, leading dimension n) = sum over p < k of A(i, p) * B(p, j), where
 *    A(i, p) = A[i*ars + p*aks] (so A may be read transposed: ars = 1, aks = m) and B is
 *    row-major k x n. C is written, never read (beta = 0).
 * B. How: blocks of 4 rows x 2 vectors of C held in registers across the whole k loop
 *    (8 accumulators, 2 loads of B and 4 broadcasts of A per step: 16 registers; vectors
 *    of W = 8 floats, 16 in the AVX-512 build), then a 4 x 1-vector block, then the last
 *    n % W columns as one vector against a zero-padded copy of them (scalar where that
 *    copy would be large); leftover rows one at a time.
 *    GCC's vector extensions keep it portable C; the AVX2+FMA build turns each `c += a*b`
 *    into one FMA. Each C entry is one sequential sum over p, as in OpenBLAS's own kernels.
 * C. Why: measured on the 64-32-10 network at batch 32 (see benchmarks/small_gemm.py) the
 *    step's five products took about 2x as long through OpenBLAS as here; for products
 *    above a few hundred thousand multiply-adds OpenBLAS's blocking wins.
 * D. Compilers without GCC vector extensions (MSVC) get FASTBP_SMALL_GEMM 0 and BLAS only.
 * E. fastbp_small_gemm_on is set at import (fastbp._native): OpenBLAS's AVX-512 kernels
 *    have small-matrix paths of their own that run these products about 2x faster than the
 *    AVX2 loops here, as fast as the AVX-512 loops on 32 columns and 2x faster on 10, so
 *    the loops are used only when OpenBLAS runs AVX2 kernels.
 */
#ifndef FASTBP_SMALLGEMM_H
#define FASTBP_SMALLGEMM_H
#include <stddef.h>

static int fastbp_small_gemm_on = 0;

#if defined(__GNUC__) || defined(__clang__)
#define FASTBP_SMALL_GEMM 1
#define FASTBP_TAIL_MAX 2048  /* entries of the zero-padded copy of B's last columns */

#ifdef __AVX512F__  /* the AVX-512 build: one zmm register per vector */
typedef float fastbp_vf __attribute__((vector_size(64)));
typedef double fastbp_vd __attribute__((vector_size(64)));
#define FASTBP_FLOATS_PER_VECTOR 16
#define FASTBP_DOUBLES_PER_VECTOR 8
#else
typedef float fastbp_vf __attribute__((vector_size(32)));
typedef double fastbp_vd __attribute__((vector_size(32)));
#define FASTBP_FLOATS_PER_VECTOR 8
#define FASTBP_DOUBLES_PER_VECTOR 4
#endif

#define FASTBP_DEFINE_SMALL_GEMM(NAME, T, V, W)                                              \
static inline V NAME##_load(const T *p) { V v; __builtin_memcpy(&v, p, sizeof v); return v; } \
static inline void NAME##_store(T *p, V v) { __builtin_memcpy(p, &v, sizeof v); }        \
static void NAME(int m, int n, int k, const T *A, ptrdiff_t ars, ptrdiff_t aks,         \
                 const T *B, T *C)                                                       \
{                                                                                        \
    int i = 0, j, p, q, jt = n - n % W;                                                  \
    /* the last n % W columns of B, zero-padded to one vector per row, when small */    \
    T tail[FASTBP_TAIL_MAX];                                                             \
    int use_tail = jt < n && k * W <= FASTBP_TAIL_MAX;                                   \
    if (use_tail)                                                                        \
        for (p = 0; p < k; p++)                                                          \
            for (q = 0; q < W; q++)                                                      \
                tail[p * W + q] = jt + q < n ? B[(ptrdiff_t) p * n + jt + q] : 0;        \
    for (; i + 4 <= m; i += 4) {                                                         \
        const T *a0 = A + (ptrdiff_t) i * ars, *a1 = a0 + ars, *a2 = a1 + ars,          \
                *a3 = a2 + ars;                                                          \
        T *c = C + (ptrdiff_t) i * n;                                                    \
        for (j = 0; j + 2 * W <= n; j += 2 * W) {                                        \
            V c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0},          \
              c30 = {0}, c31 = {0};                                                      \
            for (p = 0; p < k; p++) {                                                    \
                const T *b = B + (ptrdiff_t) p * n + j;                                  \
                V b0 = NAME##_load(b), b1 = NAME##_load(b + W);                          \
                T x0 = a0[p * aks], x1 = a1[p * aks], x2 = a2[p * aks], x3 = a3[p * aks]; \
                c00 += x0 * b0; c01 += x0 * b1; c10 += x1 * b0; c11 += x1 * b1;         \
                c20 += x2 * b0; c21 += x2 * b1; c30 += x3 * b0; c31 += x3 * b1;         \
            }                                                                            \
            NAME##_store(c + j, c00); NAME##_store(c + j + W, c01);                      \
            NAME##_store(c + n + j, c10); NAME##_store(c + n + j + W, c11);              \
            NAME##_store(c + 2 * n + j, c20); NAME##_store(c + 2 * n + j + W, c21);      \
            NAME##_store(c + 3 * n + j, c30); NAME##_store(c + 3 * n + j + W, c31);      \
        }                                                                                \
        for (; j + W <= n; j += W) {                                                     \
            V c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};                                    \
            for (p = 0; p < k; p++) {                                                    \
                V b0 = NAME##_load(B + (ptrdiff_t) p * n + j);                           \
                c0 += a0[p * aks] * b0; c1 += a1[p * aks] * b0;                          \
                c2 += a2[p * aks] * b0; c3 += a3[p * aks] * b0;                          \
            }                                                                            \
            NAME##_store(c + j, c0); NAME##_store(c + n + j, c1);                        \
            NAME##_store(c + 2 * n + j, c2); NAME##_store(c + 3 * n + j, c3);            \
        }                                                                                \
        if (use_tail) {                                                                  \
            V c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};                                    \
            T out[4][W];                                                                 \
            for (p = 0; p < k; p++) {                                                    \
                V b0 = NAME##_load(tail + p * W);                                        \
                c0 += a0[p * aks] * b0; c1 += a1[p * aks] * b0;                          \
                c2 += a2[p * aks] * b0; c3 += a3[p * aks] * b0;                          \
            }                                                                            \
            NAME##_store(out[0], c0); NAME##_store(out[1], c1);                          \
            NAME##_store(out[2], c2); NAME##_store(out[3], c3);                          \
            for (q = 0; j < n; j++, q++) {                                               \
                c[j] = out[0][q]; c[n + j] = out[1][q];                                  \
                c[2 * n + j] = out[2][q]; c[3 * n + j] = out[3][q];                      \
            }                                                                            \
        }                                                                                \
        for (; j < n; j++) {                                                             \
            T s0 = 0, s1 = 0, s2 = 0, s3 = 0;                                            \
            for (p = 0; p < k; p++) {                                                    \
                T b0 = B[(ptrdiff_t) p * n + j];                                         \
                s0 += a0[p * aks] * b0; s1 += a1[p * aks] * b0;                          \
                s2 += a2[p * aks] * b0; s3 += a3[p * aks] * b0;                          \
            }                                                                            \
            c[j] = s0; c[n + j] = s1; c[2 * n + j] = s2; c[3 * n + j] = s3;              \
        }                                                                                \
    }                                                                                    \
    for (; i < m; i++) {                                                                 \
        const T *a0 = A + (ptrdiff_t) i * ars;                                           \
        T *c = C + (ptrdiff_t) i * n;                                                    \
        for (j = 0; j + W <= n; j += W) {                                                \
            V c0 = {0};                                                                  \
            for (p = 0; p < k; p++)                                                      \
                c0 += a0[p * aks] * NAME##_load(B + (ptrdiff_t) p * n + j);              \
            NAME##_store(c + j, c0);                                                     \
        }                                                                                \
        if (use_tail) {                                                                  \
            V c0 = {0};                                                                  \
            T out[W];                                                                    \
            for (p = 0; p < k; p++)                                                      \
                c0 += a0[p * aks] * NAME##_load(tail + p * W);                           \
            NAME##_store(out, c0);                                                       \
            for (q = 0; j < n; j++, q++)                                                 \
                c[j] = out[q];                                                           \
        }                                                                                \
        for (; j < n; j++) {                                                             \
            T s0 = 0;                                                                    \
            for (p = 0; p < k; p++)                                                      \
                s0 += a0[p * aks] * B[(ptrdiff_t) p * n + j];                            \
            c[j] = s0;                                                                   \
        }                                                                                \
    }                                                                                    \
}

FASTBP_DEFINE_SMALL_GEMM(fastbp_small_sgemm, float, fastbp_vf, FASTBP_FLOATS_PER_VECTOR)
FASTBP_DEFINE_SMALL_GEMM(fastbp_small_dgemm, double, fastbp_vd, FASTBP_DOUBLES_PER_VECTOR)

#else
#define FASTBP_SMALL_GEMM 0
static void fastbp_small_sgemm(int m, int n, int k, const float *A, ptrdiff_t ars,
                               ptrdiff_t aks, const float *B, float *C)
{ (void) m; (void) n; (void) k; (void) A; (void) ars; (void) aks; (void) B; (void) C; }
static void fastbp_small_dgemm(int m, int n, int k, const double *A, ptrdiff_t ars,
                               ptrdiff_t aks, const double *B, double *C)
{ (void) m; (void) n; (void) k; (void) A; (void) ars; (void) aks; (void) B; (void) C; }
#endif

#endif

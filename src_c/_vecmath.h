/* Small C helpers for the Cython kernels: a vectorisable float32 exp (and expm1, log1p on
 * [0, 1]), magnitude bits (for exact max|x| by an integer reduction, which vectorises where a
 * float max does not) and a prefetch.
 *
 * A. Why: libm's expf is an opaque call, so a loop calling it runs one element at a time;
 *    this inline version is plain arithmetic that GCC vectorises at -O3. Measured on the
 *    tiny benchmark network, expf calls were ~10% of the training step.
 * B. Method: exp(x) = 2^n · exp(r) with n = round(x / ln 2) and |r| <= ln2/2 (Cody-Waite
 *    split of ln 2), exp(r) by its degree-6 Taylor polynomial (truncation < 1.3e-7
 *    relative, i.e. about 2 ulp), 2^n built in the exponent bits.
 * C. Range: the reduction runs on x clamped to [-87, 88], so 2^n stays a normal float; the
 *    result is then 0 below -87 (true value < 1.7e-38, the smallest normal float's
 *    neighbourhood) and +inf above 88.7 (true overflow). Both are selects, not branches.
 * D. expm1 and log1p (elu, softplus) near 0 would lose every digit to cancellation as
 *    exp(x) - 1 and log(1 + x); both are polynomials there, kept vectorisable (see each).
 */
#ifndef FASTBP_VECMATH_H
#define FASTBP_VECMATH_H
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float fastbp_expf(float x_in)
{
    float x = x_in < -87.0f ? -87.0f : x_in;
    x = x > 88.0f ? 88.0f : x;
    /* round to nearest by the 1.5·2^23 trick: exact for |x·log2 e| < 2^22 */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;          /* ln 2, high part (exact product) */
    r = r - n * -2.12194440e-4f;              /* ln 2, low part */
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.66666667e-1f + r * (4.16666667e-2f
              + r * (8.33333333e-3f + r * 1.38888889e-3f)))));
    int32_t bits = ((int32_t) n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    p = x_in < -87.0f ? 0.0f : p * scale;
    return x_in > 88.72f ? INFINITY : p;
}

/* exp(x) - 1 without cancellation: for |x| < ln2/2 the degree-7 Taylor polynomial of exp
 * without its leading 1 (truncation < 2e-8 relative), elsewhere expf(x) - 1, whose result is
 * then at least 0.29 in magnitude. Both are computed and one selected, so loops vectorise. */
static inline float fastbp_expm1f(float x)
{
    float p = x * (1.0f + x * (0.5f + x * (1.66666667e-1f + x * (4.16666667e-2f
              + x * (8.33333333e-3f + x * (1.38888889e-3f + x * 1.98412698e-4f))))));
    float e = fastbp_expf(x) - 1.0f;
    return (x > -0.346573590f && x < 0.346573590f) ? p : e;
}

/* log(1 + x) for x in [0, 1] (softplus takes it of exp(-|z|)): 2·atanh(s) with
 * s = x / (2 + x) in [0, 1/3], whose odd series to s^13 truncates below 2e-8 relative; s is
 * exact to rounding, so small x keep their digits (1 + x would drop them). */
static inline float fastbp_log1pf(float x)
{
    float s = x / (2.0f + x);
    float s2 = s * s;
    return 2.0f * s * (1.0f + s2 * (3.33333333e-1f + s2 * (2.0e-1f + s2 * (1.42857143e-1f
           + s2 * (1.11111111e-1f + s2 * (9.09090909e-2f + s2 * 7.69230769e-2f))))));
}

/* The magnitude of x as an integer that orders like |x|: the bits with the sign cleared.
 * Infinity and NaN compare above every finite value. */
static inline int32_t fastbp_magnitude_f32(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return (int32_t) (bits & 0x7fffffffu);
}

static inline int64_t fastbp_magnitude_f64(double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    return (int64_t) (bits & 0x7fffffffffffffffull);
}

/* Back from magnitude bits to the value |x|. */
static inline double fastbp_from_magnitude_f32(int32_t m)
{
    float x;
    memcpy(&x, &m, sizeof x);
    return x;
}

static inline double fastbp_from_magnitude_f64(int64_t m)
{
    double x;
    memcpy(&x, &m, sizeof x);
    return x;
}

/* Ask for one cache line ahead of use (read, keep in the outer caches); no-op elsewhere. */
static inline void fastbp_prefetch(const void *address)
{
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(address, 0, 1);
#else
    (void) address;
#endif
}

#endif

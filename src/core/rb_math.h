/* rb_math: small vectorizable numeric kernels shared by the forward pass, metrics and quantizers. */
#ifndef RB_MATH_H
#define RB_MATH_H

#include <stdint.h>
#include <string.h>

/* exp for softmax and SiLU: Cody–Waite range reduction and a degree-6 Taylor polynomial on
 * |r| ≤ ln2/2 (relative error < 2e-7, below fp32 rounding of the sums it feeds), written without
 * calls or branches so the loops vectorize. Input clamped to the normal range. */
static inline float rb_expf_fast(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = x * 1.44269504f + 12582912.0f - 12582912.0f; /* round to nearest (magic-number trick) */
    float r = x - n * 0.693145752f - n * 1.42860677e-6f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666668e-2f + r * (8.3333338e-3f + r * 1.3888889e-3f)))));
    int32_t e = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &e, 4);
    return p * s;
}

/* Lanes of the manual reductions below: fp reductions do not vectorize without -ffast-math, so
 * they are written as RB_LANES independent partial results. */
#define RB_LANES 16

/* x[j] ← exp(x[j] − shift), j < n. */
static inline void rb_vexp_shift(float *x, int n, float shift) {
    for (int j = 0; j < n; j++) x[j] = rb_expf_fast(x[j] - shift);
}

/* max of x[0..n), n ≥ 1. */
static inline float rb_vmax(const float *x, int n) {
    float m[RB_LANES];
    int j = 0;
    for (int l = 0; l < RB_LANES; l++) m[l] = x[0];
    for (; j + RB_LANES <= n; j += RB_LANES)
        for (int l = 0; l < RB_LANES; l++) m[l] = x[j + l] > m[l] ? x[j + l] : m[l];
    float r = m[0];
    for (int l = 1; l < RB_LANES; l++) r = m[l] > r ? m[l] : r;
    for (; j < n; j++) r = x[j] > r ? x[j] : r;
    return r;
}

/* Σ x[0..n) with fp32 partial sums per lane, combined in double. */
static inline double rb_vsum(const float *x, int n) {
    float s[RB_LANES] = {0};
    int j = 0;
    for (; j + RB_LANES <= n; j += RB_LANES)
        for (int l = 0; l < RB_LANES; l++) s[l] += x[j + l];
    double r = 0.0;
    for (int l = 0; l < RB_LANES; l++) r += s[l];
    for (; j < n; j++) r += x[j];
    return r;
}

/* Index of the first NaN or ±Inf of x[n], or -1. The scan ORs an exponent-all-ones test (an integer
 * reduction, which vectorizes) and locates the entry only when one exists: about one read of x. */
static inline long rb_first_nonfinite(const float *x, size_t n) {
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, x + i, 4);
        bad |= (b & 0x7f800000u) == 0x7f800000u;
    }
    if (!bad) return -1;
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, x + i, 4);
        if ((b & 0x7f800000u) == 0x7f800000u) return (long)i;
    }
    return -1;
}

/* qsort comparator of doubles, ascending. */
static inline int rb_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif

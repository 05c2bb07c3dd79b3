#include "rb_fwht.h"

#include "core/rb_error.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

int rb_is_pow2(long n) { return n >= 1 && (n & (n - 1)) == 0; }

/* Butterfly stages over contiguous spans of length h (h ≥ 4 here), written so the j loops
 * vectorize: a single stage at stride h, and two stages (h, 2h) fused into one radix-4 pass so
 * the row is read and written half as often. */
#define RB_FWHT_STAGES(T, SUF)                                                                                \
    __attribute__((unused)) static void stage2_##SUF(T *x, int n, int h) {                                    \
        for (int i = 0; i < n; i += 2 * h) {                                                                  \
            T *restrict a = x + i, *restrict b = a + h;                                                       \
            for (int j = 0; j < h; j++) {                                                                     \
                T u = a[j], v = b[j];                                                                         \
                a[j] = u + v;                                                                                 \
                b[j] = u - v;                                                                                 \
            }                                                                                                 \
        }                                                                                                     \
    }                                                                                                         \
    __attribute__((unused)) static void stage4_##SUF(T *x, int n, int h) {                                    \
        for (int i = 0; i < n; i += 4 * h) {                                                                  \
            T *restrict a = x + i, *restrict b = a + h, *restrict c = b + h, *restrict d = c + h;             \
            for (int j = 0; j < h; j++) {                                                                     \
                T u0 = a[j] + b[j], u1 = a[j] - b[j], u2 = c[j] + d[j], u3 = c[j] - d[j];                     \
                a[j] = u0 + u2;                                                                               \
                b[j] = u1 + u3;                                                                               \
                c[j] = u0 - u2;                                                                               \
                d[j] = u1 - u3;                                                                               \
            }                                                                                                 \
        }                                                                                                     \
    }                                                                                                         \
    /* Strides 1 and 2 on each group of 4: y = (x0+x1+x2+x3, x0−x1+x2−x3, x0+x1−x2−x3, ...). */       \
    __attribute__((unused)) static void first4_scalar_##SUF(T *x, int n) {                                    \
        for (int i = 0; i < n; i += 4) {                                                                      \
            T u0 = x[i] + x[i + 1], u1 = x[i] - x[i + 1], u2 = x[i + 2] + x[i + 3], u3 = x[i + 2] - x[i + 3]; \
            x[i] = u0 + u2;                                                                                   \
            x[i + 1] = u1 + u3;                                                                               \
            x[i + 2] = u0 - u2;                                                                               \
            x[i + 3] = u1 - u3;                                                                               \
        }                                                                                                     \
    }                                                                                                         \
    static void scale_##SUF(T *x, size_t len, T s) {                                                          \
        for (size_t j = 0; j < len; j++) x[j] *= s;                                                           \
    }

RB_FWHT_STAGES(float, f)
RB_FWHT_STAGES(double, d)

/* Strides 1, 2, 4 and 8 of each group of 16 in registers: strides 1 and 2 inside each 4-float
 * vector (two shuffles, two sign flips, two adds), strides 4 and 8 across the four vectors. */
#if defined(__SSE2__)
static inline __m128 in4_f(__m128 v) {
    const __m128 m1 = _mm_setr_ps(1.0f, -1.0f, 1.0f, -1.0f), m2 = _mm_setr_ps(1.0f, 1.0f, -1.0f, -1.0f);
    __m128 w = _mm_add_ps(_mm_shuffle_ps(v, v, _MM_SHUFFLE(2, 3, 0, 1)), _mm_mul_ps(v, m1));
    return _mm_add_ps(_mm_shuffle_ps(w, w, _MM_SHUFFLE(1, 0, 3, 2)), _mm_mul_ps(w, m2));
}
#endif

static void first4_f(float *x, int n) {
#if defined(__SSE2__)
    for (int i = 0; i < n; i += 4) _mm_storeu_ps(x + i, in4_f(_mm_loadu_ps(x + i)));
#else
    first4_scalar_f(x, n);
#endif
}

static void first16_f(float *x, int n) {
#if defined(__SSE2__)
    for (int i = 0; i < n; i += 16) {
        __m128 a = in4_f(_mm_loadu_ps(x + i)), b = in4_f(_mm_loadu_ps(x + i + 4));
        __m128 c = in4_f(_mm_loadu_ps(x + i + 8)), d = in4_f(_mm_loadu_ps(x + i + 12));
        __m128 u0 = _mm_add_ps(a, b), u1 = _mm_sub_ps(a, b), u2 = _mm_add_ps(c, d), u3 = _mm_sub_ps(c, d);
        _mm_storeu_ps(x + i, _mm_add_ps(u0, u2));
        _mm_storeu_ps(x + i + 4, _mm_add_ps(u1, u3));
        _mm_storeu_ps(x + i + 8, _mm_sub_ps(u0, u2));
        _mm_storeu_ps(x + i + 12, _mm_sub_ps(u1, u3));
    }
#else
    first4_scalar_f(x, n);
    stage4_f(x, n, 4);
#endif
}

static void first4_d(double *x, int n) { first4_scalar_d(x, n); }

static void first16_d(double *x, int n) {
    first4_scalar_d(x, n);
    stage4_d(x, n, 4);
}

/* fp32 stages for h ≥ 16 (a multiple of 4): explicit 4-wide vectors, so no per-span aliasing
 * checks or remainder loops. */
static void stage2v_f(float *x, int n, int h) {
#if defined(__SSE2__)
    for (int i = 0; i < n; i += 2 * h) {
        float *a = x + i, *b = a + h;
        for (int j = 0; j < h; j += 4) {
            __m128 u = _mm_loadu_ps(a + j), v = _mm_loadu_ps(b + j);
            _mm_storeu_ps(a + j, _mm_add_ps(u, v));
            _mm_storeu_ps(b + j, _mm_sub_ps(u, v));
        }
    }
#else
    stage2_f(x, n, h);
#endif
}

static void stage4v_f(float *x, int n, int h) {
#if defined(__SSE2__)
    for (int i = 0; i < n; i += 4 * h) {
        float *a = x + i, *b = a + h, *c = b + h, *d = c + h;
        for (int j = 0; j < h; j += 4) {
            __m128 va = _mm_loadu_ps(a + j), vb = _mm_loadu_ps(b + j), vc = _mm_loadu_ps(c + j),
                   vd = _mm_loadu_ps(d + j);
            __m128 u0 = _mm_add_ps(va, vb), u1 = _mm_sub_ps(va, vb), u2 = _mm_add_ps(vc, vd), u3 = _mm_sub_ps(vc, vd);
            _mm_storeu_ps(a + j, _mm_add_ps(u0, u2));
            _mm_storeu_ps(b + j, _mm_add_ps(u1, u3));
            _mm_storeu_ps(c + j, _mm_sub_ps(u0, u2));
            _mm_storeu_ps(d + j, _mm_sub_ps(u1, u3));
        }
    }
#else
    stage4_f(x, n, h);
#endif
}

static void stage2v_d(double *x, int n, int h) { stage2_d(x, n, h); }
static void stage4v_d(double *x, int n, int h) { stage4_d(x, n, h); }

/* One row: strides 1–8 in registers (strides 1–2 for n < 16), then fused stage pairs, then a
 * last single stage if the number of remaining stages is odd. */
#define RB_FWHT_ROW(T, SUF)                                \
    static inline void row_##SUF(T *x, int n) {            \
        if (n == 1) return;                                \
        if (n == 2) {                                      \
            T u = x[0], v = x[1];                          \
            x[0] = u + v;                                  \
            x[1] = u - v;                                  \
            return;                                        \
        }                                                  \
        int h;                                             \
        if (n >= 16) {                                     \
            first16_##SUF(x, n);                           \
            h = 16;                                        \
        } else {                                           \
            first4_##SUF(x, n);                            \
            h = 4;                                         \
        }                                                  \
        for (; 4 * h <= n; h *= 4) stage4v_##SUF(x, n, h); \
        if (2 * h <= n) stage2v_##SUF(x, n, h);            \
    }

RB_FWHT_ROW(float, f)
RB_FWHT_ROW(double, d)

void rb_fwht_rows(float *x, size_t rows, int n, float scale) {
    RB_ASSERT(rb_is_pow2(n));
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * (size_t)n;
        row_f(row, n);
        if (scale != 1.0f) scale_f(row, (size_t)n, scale);
    }
}

void rb_fwht_rows_d(double *x, size_t rows, int n, double scale) {
    RB_ASSERT(rb_is_pow2(n));
    for (size_t r = 0; r < rows; r++) {
        double *row = x + r * (size_t)n;
        row_d(row, n);
        if (scale != 1.0) scale_d(row, (size_t)n, scale);
    }
}

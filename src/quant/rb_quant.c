#include "rb_quant.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "core/rb_blas.h"
#include "core/rb_math.h"

/* RUQuant/OmniQuant CLIPMIN / CLIPMAX: scale clamp of the raw-min/max family, and the bound of
 * its zero point before rounding (quantizer.py: zero_point.clamp(-1e4, 1e4)). */
#define RAW_SCALE_MIN 1e-5f
#define RAW_SCALE_MAX 1e4f
#define RAW_ZERO_MAX 1e4f

rb_qspec rb_qspec_make(int bits, int sym, int gran, int group) {
    rb_qspec s = {.bits = bits, .sym = sym, .gran = gran, .group = group, .clip = 1.0f};
    return s;
}

int rb_qspec_check(const rb_qspec *s, rb_error *err) {
    if (s->bits != RB_QBITS_OFF && (s->bits < 2 || s->bits > 8))
        return rb_error_set(err, RB_EINVAL, "quantizer: bits %d not in 2..8 or 16", s->bits);
    if (s->gran < 0 || s->gran >= RB_QGRAN_COUNT)
        return rb_error_set(err, RB_EINVAL, "quantizer: unknown granularity %d", s->gran);
    if (s->gran == RB_QGRAN_GROUP && s->group <= 0)
        return rb_error_set(err, RB_EINVAL, "quantizer: group size %d must be positive", s->group);
    if (!(s->clip > 0.0f && s->clip <= 1.0f))
        return rb_error_set(err, RB_EINVAL, "quantizer: clip ratio %g not in (0, 1]", (double)s->clip);
    if (s->raw_minmax && s->sym)
        return rb_error_set(err, RB_EINVAL, "quantizer: raw min/max range is asymmetric only");
    return 0;
}

int rb_qspec_maxq(const rb_qspec *s) {
    RB_ASSERT(s->bits >= 2 && s->bits <= 8);
    return s->sym ? (1 << (s->bits - 1)) - 1 : (1 << s->bits) - 1;
}

static const char *const g_gran_names[RB_QGRAN_COUNT] = {"tensor", "channel", "token", "group", "head"};

const char *rb_qgran_name(int gran) { return gran >= 0 && gran < RB_QGRAN_COUNT ? g_gran_names[gran] : "?"; }

int rb_qgran_parse(const char *name, int *gran, rb_error *err) {
    for (int g = 0; g < RB_QGRAN_COUNT; g++)
        if (name && strcmp(name, g_gran_names[g]) == 0) {
            *gran = g;
            return 0;
        }
    return rb_error_set(err, RB_EINVAL, "quantizer: unknown granularity '%s' (tensor|channel|token|group|head)",
                        name ? name : "(null)");
}

int rb_qspec_format(const rb_qspec *s, char *buf, size_t cap) {
    if (s->bits == RB_QBITS_OFF) return snprintf(buf, cap, "off");
    char gran[32];
    if (s->gran == RB_QGRAN_GROUP)
        snprintf(gran, sizeof gran, "group%d", s->group);
    else
        snprintf(gran, sizeof gran, "%s", rb_qgran_name(s->gran));
    return snprintf(buf, cap, "int%d %s %s clip=%.2f%s%s", s->bits, s->sym ? "sym" : "asym", gran, (double)s->clip,
                    s->clip_search ? " search" : "", s->raw_minmax ? " raw" : "");
}

/* Units per row and their nominal length; per-tensor is one unit of rows·cols. */
static int unit_shape(const rb_qspec *s, int rows, int cols, int head_dim, long *per_row, long *len, rb_error *err) {
    int rc = rb_qspec_check(s, err);
    if (rc) return rc;
    if (rows <= 0 || cols <= 0)
        return rb_error_set(err, RB_EINVAL, "quantizer: empty matrix %d x %d", rows, cols);
    switch (s->gran) {
    case RB_QGRAN_TENSOR: *per_row = 0, *len = (long)rows * cols; break;
    case RB_QGRAN_CHANNEL:
    case RB_QGRAN_TOKEN: *per_row = 1, *len = cols; break;
    case RB_QGRAN_GROUP: *per_row = (cols + s->group - 1) / s->group, *len = s->group; break;
    default: /* RB_QGRAN_HEAD */
        if (head_dim <= 0 || cols % head_dim)
            return rb_error_set(err, RB_EINVAL, "quantizer: head_dim %d does not divide %d columns", head_dim, cols);
        *per_row = cols / head_dim, *len = head_dim;
    }
    return 0;
}

int rb_qparams_count(const rb_qspec *s, int rows, int cols, int head_dim, long *count, rb_error *err) {
    long per_row = 0, len = 0;
    int rc = unit_shape(s, rows, cols, head_dim, &per_row, &len, err);
    if (rc) return rc;
    *count = per_row ? per_row * rows : 1;
    return 0;
}

/* ---- kernels on one contiguous unit --------------------------------------------------------- */

/* Hot kernels are compiled twice, for AVX2 and for the x86-64 baseline (SSE2), and picked at load
 * time (GCC/clang target_clones, an ifunc): the build has no -march, and the AVX2 versions of the
 * quantize and clip-search loops run ~3× faster here. FMA is not enabled, and reductions use
 * fixed lanes, so both versions give bit-identical results. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(RB_NO_TARGET_CLONES)
#define RB_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RB_CLONES
#endif

/* 4-float vectors (SSE2 registers) for the min/max reduction, which gcc does not vectorize from
 * scalar code without -ffinite-math-only. vsel(m, a, b) = m ? a : b lane-wise. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
static inline v4f vsel(v4i m, v4f a, v4f b) { return (v4f)(((v4i)a & m) | ((v4i)b & ~m)); }

/* min and max of x[0..n), n ≥ 1: four 4-lane accumulators, then a scalar tail. */
static void minmax(const float *x, long n, float *lo, float *hi) {
    float a = x[0], b = x[0];
    long j = 0;
    if (n >= 16) {
        v4f mn[4], mx[4];
        for (int l = 0; l < 4; l++) {
            memcpy(&mn[l], x + 4 * l, sizeof mn[l]);
            mx[l] = mn[l];
        }
        for (j = 16; j + 16 <= n; j += 16)
            for (int l = 0; l < 4; l++) {
                v4f v;
                memcpy(&v, x + j + 4 * l, sizeof v);
                mn[l] = vsel(v < mn[l], v, mn[l]);
                mx[l] = vsel(v > mx[l], v, mx[l]);
            }
        for (int l = 0; l < 4; l++)
            for (int k = 0; k < 4; k++) {
                a = mn[l][k] < a ? mn[l][k] : a;
                b = mx[l][k] > b ? mx[l][k] : b;
            }
    }
    for (; j < n; j++) {
        a = x[j] < a ? x[j] : a;
        b = x[j] > b ? x[j] : b;
    }
    *lo = a;
    *hi = b;
}

/* Integer clamp bounds of the quantized value q (before subtracting zero). */
static void qbounds(const rb_qspec *s, float *lo, float *hi) {
    int maxq = rb_qspec_maxq(s);
    *lo = s->sym ? -(float)(maxq + 1) : 0.0f;
    *hi = (float)maxq;
}

/* Range [xmin, xmax] of a unit with raw extremes lo..hi before any shrink: clip applied, 0 forced in
 * (QuaRot family) and the asym all-zero case widened to [−1, 1] as QuaRot does. */
static void base_range(const rb_qspec *s, float lo, float hi, float *xmin, float *xmax) {
    if (s->raw_minmax) {
        *xmin = lo * s->clip;
        *xmax = hi * s->clip;
        return;
    }
    *xmin = (lo < 0.0f ? lo : 0.0f) * s->clip;
    *xmax = (hi > 0.0f ? hi : 0.0f) * s->clip;
    if (!s->sym && *xmin == 0.0f && *xmax == 0.0f) {
        *xmin = -1.0f;
        *xmax = 1.0f;
    }
}

/* (scale, zero) for the range shrunk by p (p = 1: unshrunk), operation order as in QuaRot. */
static void params_at(const rb_qspec *s, float xmin, float xmax, float p, float *scale, float *zero) {
    float maxq = (float)rb_qspec_maxq(s);
    if (s->sym) {
        float m = -xmin > xmax ? -xmin : xmax;
        float sc = (p * m) / maxq;
        *scale = sc > 0.0f ? sc : 1.0f;
        *zero = 0.0f;
        return;
    }
    float a = p * xmin, b = p * xmax;
    float sc = (b - a) / maxq;
    if (s->raw_minmax) {
        sc = sc < RAW_SCALE_MIN ? RAW_SCALE_MIN : (sc > RAW_SCALE_MAX ? RAW_SCALE_MAX : sc);
        float z = -a / sc;
        z = z < -RAW_ZERO_MAX ? -RAW_ZERO_MAX : (z > RAW_ZERO_MAX ? RAW_ZERO_MAX : z);
        *scale = sc;
        *zero = nearbyintf(z);
        return;
    }
    if (!(sc > 0.0f)) sc = 1.0f;
    *scale = sc;
    *zero = nearbyintf(-a / sc);
}

/* Shrink factor of clip-search candidate i: 1 − i/grid, rounded to fp32 once, as torch multiplies
 * an fp32 tensor by a Python float. */
static float clip_p(int i) { return (float)(1.0 - (double)i / RB_QCLIP_GRID); }

/* scale·(clamp(round(v/scale) + zero, lo, hi) − zero): rb_quant_value with the bounds precomputed. */
static inline float qdq(float v, float scale, float zero, float lo, float hi) {
    float q = rb_round_even(v / scale) + zero;
    q = q < lo ? lo : q;
    q = q > hi ? hi : q;
    return scale * (q - zero);
}

/* The quantize pass over one unit. */
RB_CLONES static void apply_unit(float *x, long n, float scale, float zero, float lo, float hi) {
    for (long j = 0; j < n; j++) x[j] = qdq(x[j], scale, zero, lo, hi);
}

/* a^2.4 for a ≥ 0 as a²·exp(0.4·ln a), branch-free so the error loop vectorizes. ln a from the
 * exponent bits and an atanh series of the mantissa moved into [√½, √2) (|t| ≤ 0.172, series
 * truncation < 1e-9); exp by rb_expf_fast (relative error < 2e-7). Overall relative error ~1e-6,
 * the size of the fp32 rounding of the reference's own sums. a = 0 and subnormal a give 0 (a² is 0). */
static inline float pow24(float a) {
    uint32_t b;
    memcpy(&b, &a, sizeof b);
    float e = (float)((int32_t)(b >> 23) - 127);
    uint32_t mb = (b & 0x007fffffu) | 0x3f800000u;
    float m;
    memcpy(&m, &mb, sizeof m);
    int big = m > 1.41421356f;
    m = big ? 0.5f * m : m;
    e = big ? e + 1.0f : e;
    float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
    float lnm = 2.0f * t * (1.0f + t2 * (1.0f / 3 + t2 * (1.0f / 5 + t2 * (1.0f / 7 + t2 * (1.0f / 9)))));
    float lna = e * 0.693147181f + lnm;
    return a * a * rb_expf_fast(0.4f * lna);
}

/* Elements between the checks of unit_err's early exit (a multiple of RB_LANES). Within one chunk
 * each lane sums 16 terms in fp32; chunks are combined in double. */
#define ERR_CHUNK 256

/* Σ |dequant(x[j]) − x[j]|^2.4 over one unit for one candidate (scale, zero). Terms are ≥ 0, so
 * once a partial sum exceeds `bound` the candidate cannot win and +∞ is returned; otherwise the
 * full sum, which does not depend on bound. */
RB_CLONES static double unit_err(const float *x, long n, float scale, float zero, float lo, float hi, double bound) {
    double acc[RB_LANES] = {0};
    long j = 0;
    while (j + RB_LANES <= n) {
        long end = j + ERR_CHUNK < n ? j + ERR_CHUNK : n;
        float part[RB_LANES] = {0};
        for (; j + RB_LANES <= end; j += RB_LANES)
            for (int l = 0; l < RB_LANES; l++) part[l] += pow24(fabsf(qdq(x[j + l], scale, zero, lo, hi) - x[j + l]));
        double sum = 0.0;
        for (int l = 0; l < RB_LANES; l++) {
            acc[l] += part[l];
            sum += acc[l];
        }
        if (sum > bound) return INFINITY;
    }
    double r = 0.0;
    for (int l = 0; l < RB_LANES; l++) r += acc[l];
    for (; j < n; j++) r += pow24(fabsf(qdq(x[j], scale, zero, lo, hi) - x[j]));
    return r;
}

/* Parameters of one unit; with clip search, the candidate of index `hint` (the previous row's
 * choice, or 0) is evaluated first so that its error prunes the ordered scan from the start.
 * The result is that of the plain ordered scan with strict "<" (earliest p among equal errors):
 * a candidate is only skipped once its partial error exceeds a value some candidate attains. */
static void unit_params(const rb_qspec *s, const float *x, long n, int hint, float *scale, float *zero, int *chosen) {
    float lo, hi, xmin, xmax;
    minmax(x, n, &lo, &hi);
    base_range(s, lo, hi, &xmin, &xmax);
    params_at(s, xmin, xmax, 1.0f, scale, zero);
    *chosen = 0;
    if (!s->clip_search) return;
    float qlo, qhi;
    qbounds(s, &qlo, &qhi);
    float sc, z;
    double best = INFINITY, hint_err = INFINITY;
    if (hint > 0 && hint < RB_QCLIP_STEPS) {
        params_at(s, xmin, xmax, clip_p(hint), &sc, &z);
        hint_err = unit_err(x, n, sc, z, qlo, qhi, INFINITY);
    } else {
        hint = -1; /* candidate 0 is evaluated first anyway */
    }
    for (int i = 0; i < RB_QCLIP_STEPS; i++) {
        params_at(s, xmin, xmax, clip_p(i), &sc, &z);
        double err = i == hint ? hint_err : unit_err(x, n, sc, z, qlo, qhi, best < hint_err ? best : hint_err);
        if (err < best) { /* strict: ties keep the earlier (larger) p, like GPTQ's err < best */
            best = err;
            *scale = sc;
            *zero = z;
            *chosen = i;
        }
    }
}

void rb_qparams_unit(const rb_qspec *s, const float *x, long n, float *scale, float *zero, float *shrink) {
    RB_ASSERT(n >= 1 && s->bits != RB_QBITS_OFF);
    int chosen;
    unit_params(s, x, n, 0, scale, zero, &chosen);
    if (shrink) *shrink = clip_p(chosen);
}

/* ---- whole matrices ---------------------------------------------------------------------------- */

/* Clip search runs its rows on rb_blas_threads() threads (BLAS is idle meanwhile: one pool busy
 * at a time) when a matrix has at least this many elements: 80 candidates × 64 Ki elements is
 * ~10 ms of work, well above the ~0.1 ms of starting threads. Plain min/max (the per-token
 * activation path) stays on the caller's thread. */
#define PAR_MIN_ELEMS (1L << 16)
#define PAR_MAX_THREADS 16

/* Rows [r0, r1) of a matrix with units inside rows: find each unit's parameters (stored when
 * scale is non-NULL) and, with apply, fake-quantize the unit in place. */
typedef struct rows_job {
    const rb_qspec *s;
    float *x; /* [rows][cols]; written only with apply */
    long cols, per_row, len, r0, r1;
    float *scale, *zero; /* [rows][per_row] or NULL */
    int apply;
} rows_job;

static void run_rows(const rows_job *j) {
    float lo, hi;
    qbounds(j->s, &lo, &hi);
    int hint = 0; /* neighbouring units of a weight tend to choose similar shrinks */
    for (long r = j->r0; r < j->r1; r++)
        for (long u = 0; u < j->per_row; u++) {
            long c0 = u * j->len, n = c0 + j->len <= j->cols ? j->len : j->cols - c0;
            float *p = j->x + r * j->cols + c0, sc, z;
            unit_params(j->s, p, n, hint, &sc, &z, &hint);
            if (j->scale) j->scale[r * j->per_row + u] = sc, j->zero[r * j->per_row + u] = z;
            if (j->apply) apply_unit(p, n, sc, z, lo, hi);
        }
}

static void *rows_thread(void *arg) {
    run_rows(arg);
    return NULL;
}

/* run_rows over all rows, split across threads for a large clip search. Results do not depend on
 * the split (the search hint only changes the pruning order). A thread that cannot be started
 * has its rows run on the caller's thread. */
static void run_rows_parallel(const rows_job *base, long rows) {
    int nt = 1;
    if (base->s->clip_search && rows * base->cols >= PAR_MIN_ELEMS) nt = rb_blas_threads();
    nt = nt > PAR_MAX_THREADS ? PAR_MAX_THREADS : (nt < 1 ? 1 : nt);
    nt = nt > rows ? (int)rows : nt;
    rows_job jobs[PAR_MAX_THREADS];
    pthread_t th[PAR_MAX_THREADS];
    int started[PAR_MAX_THREADS] = {0};
    for (int t = 0; t < nt; t++) {
        jobs[t] = *base;
        jobs[t].r0 = rows * t / nt;
        jobs[t].r1 = rows * (t + 1) / nt;
    }
    for (int t = 1; t < nt; t++) started[t] = pthread_create(&th[t], NULL, rows_thread, &jobs[t]) == 0;
    run_rows(&jobs[0]);
    for (int t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            run_rows(&jobs[t]);
    }
}

int rb_qparams_find(const rb_qspec *s, const float *x, int rows, int cols, int head_dim, float *scale,
                    float *zero, rb_error *err) {
    long per_row = 0, len = 0;
    int rc = unit_shape(s, rows, cols, head_dim, &per_row, &len, err);
    if (rc) return rc;
    long count = per_row ? per_row * rows : 1;
    if (s->bits == RB_QBITS_OFF) {
        for (long u = 0; u < count; u++) scale[u] = 1.0f, zero[u] = 0.0f;
        return 0;
    }
    if (!per_row) {
        int chosen;
        unit_params(s, x, len, 0, scale, zero, &chosen);
        return 0;
    }
    rows_job job = {.s = s, .x = (float *)(uintptr_t)x, .cols = cols, .per_row = per_row, .len = len,
                    .scale = scale, .zero = zero, .apply = 0};
    run_rows_parallel(&job, rows);
    return 0;
}

int rb_quant_apply(const rb_qspec *s, float *x, int rows, int cols, int head_dim, const float *scale,
                   const float *zero, rb_error *err) {
    long per_row = 0, len = 0;
    int rc = unit_shape(s, rows, cols, head_dim, &per_row, &len, err);
    if (rc || s->bits == RB_QBITS_OFF) return rc;
    float lo, hi;
    qbounds(s, &lo, &hi);
    if (!per_row) {
        apply_unit(x, len, scale[0], zero[0], lo, hi);
        return 0;
    }
    for (long r = 0; r < rows; r++)
        for (long u = 0; u < per_row; u++) {
            long c0 = u * len, n = c0 + len <= cols ? len : cols - c0;
            apply_unit(x + r * cols + c0, n, scale[r * per_row + u], zero[r * per_row + u], lo, hi);
        }
    return 0;
}

int rb_quant_fake(const rb_qspec *s, float *x, int rows, int cols, int head_dim, rb_error *err) {
    long per_row = 0, len = 0;
    int rc = unit_shape(s, rows, cols, head_dim, &per_row, &len, err);
    if (rc || s->bits == RB_QBITS_OFF) return rc;
    if (!per_row) {
        float lo, hi, sc, z;
        int chosen;
        qbounds(s, &lo, &hi);
        unit_params(s, x, len, 0, &sc, &z, &chosen);
        apply_unit(x, len, sc, z, lo, hi);
        return 0;
    }
    rows_job job = {.s = s, .x = x, .cols = cols, .per_row = per_row, .len = len, .apply = 1};
    run_rows_parallel(&job, rows);
    return 0;
}

int rb_quant_ste_mask(const rb_qspec *s, const float *x, float *dx, int rows, int cols, int head_dim, rb_error *err) {
    long per_row = 0, len = 0;
    int rc = unit_shape(s, rows, cols, head_dim, &per_row, &len, err);
    if (rc || s->bits == RB_QBITS_OFF) return rc;
    float lo, hi;
    qbounds(s, &lo, &hi);
    long units = per_row ? per_row * rows : 1;
    for (long u = 0; u < units; u++) {
        long r = per_row ? u / per_row : 0, c0 = per_row ? (u % per_row) * len : 0;
        long n = per_row ? (c0 + len <= cols ? len : cols - c0) : len;
        const float *xu = x + r * (long)cols + c0;
        float *du = dx + r * (long)cols + c0;
        float sc, z;
        int chosen;
        unit_params(s, xu, n, 0, &sc, &z, &chosen);
        for (long i = 0; i < n; i++) {
            float q = rb_round_even(xu[i] / sc) + z;
            if (q < lo || q > hi) du[i] = 0.0f;
        }
    }
    return 0;
}

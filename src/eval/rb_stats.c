/* rb_stats: moments, per-vector statistics, log-histogram median, activation accumulator, TSV. */
#include "rb_stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"

/* Independent partial sums in the per-vector reductions: fp reductions only vectorize when written
 * as separate lanes (no -ffast-math). 4 double lanes × 4 sums fill 8 SSE registers; 8 lanes spill
 * on baseline x86-64 and measured ~1.7× slower there (and no faster with AVX2). */
#define VLANES 4
/* Lanes of the max|x| loop, kept separate from the double sums: mixing fp32 and fp64 lanes in
 * one loop stops GCC from vectorizing it. */
#define MAXLANES 16

/* ---- Moments ------------------------------------------------------------------------------- */

void rb_moments_merge(rb_moments *a, const rb_moments *b) {
    if (b->n <= 0) return;
    if (a->n <= 0) {
        *a = *b;
        return;
    }
    double na = a->n, nb = b->n, n = na + nb;
    double d = b->mean - a->mean, dn = d / n, dn2 = dn * dn;
    double m2 = a->m2 + b->m2 + d * dn * na * nb;
    double m3 = a->m3 + b->m3 + d * dn2 * na * nb * (na - nb) + 3.0 * dn * (na * b->m2 - nb * a->m2);
    double m4 = a->m4 + b->m4 + d * dn2 * dn * na * nb * (na * na - na * nb + nb * nb) +
                6.0 * dn2 * (na * na * b->m2 + nb * nb * a->m2) + 4.0 * dn * (na * b->m3 - nb * a->m3);
    a->n = n;
    a->mean += dn * nb;
    a->m2 = m2;
    a->m3 = m3;
    a->m4 = m4;
}

/* Σ(x−μ)² small against Σx² = m2 + n·μ²: see RB_STATS_ZERO_VAR_REL. */
static int zero_var(double m2, double sumsq) { return !(m2 > RB_STATS_ZERO_VAR_REL * sumsq); }

double rb_moments_kurtosis(const rb_moments *m) {
    if (m->n <= 0 || zero_var(m->m2, m->m2 + m->n * m->mean * m->mean)) return NAN;
    return m->n * m->m4 / (m->m2 * m->m2);
}

/* ---- One vector -------------------------------------------------------------------------------- */

/* max |x[j]|, j < d (NaN entries are ignored; the caller checks finiteness separately). */
static float vmax_abs(const float *restrict x, int d) {
    float m[MAXLANES] = {0};
    int j = 0;
    for (; j + MAXLANES <= d; j += MAXLANES)
        for (int l = 0; l < MAXLANES; l++) {
            float a = fabsf(x[j + l]);
            m[l] = a > m[l] ? a : m[l];
        }
    float r = 0;
    for (int l = 0; l < MAXLANES; l++) r = m[l] > r ? m[l] : r;
    for (; j < d; j++) r = fabsf(x[j]) > r ? fabsf(x[j]) : r;
    return r;
}

void rb_vec_stats_compute(const float *restrict x, int d, rb_vec_stats *s) {
    RB_ASSERT(d >= 1);
    double s1[VLANES] = {0}, s2[VLANES] = {0}, s4[VLANES] = {0}, sa[VLANES] = {0};
    int j = 0;
    for (; j + VLANES <= d; j += VLANES)
        for (int l = 0; l < VLANES; l++) {
            double v = x[j + l], v2 = v * v;
            s1[l] += v;
            s2[l] += v2;
            s4[l] += v2 * v2;
            sa[l] += fabs(v);
        }
    for (int l = 0; j < d; j++, l++) { /* tail: at most VLANES − 1 entries, one per lane */
        double v = x[j], v2 = v * v;
        s1[l] += v;
        s2[l] += v2;
        s4[l] += v2 * v2;
        sa[l] += fabs(v);
    }
    double sum = 0, sumsq = 0, sum4 = 0, sabs = 0;
    for (int l = 0; l < VLANES; l++) {
        sum += s1[l];
        sumsq += s2[l];
        sum4 += s4[l];
        sabs += sa[l];
    }
    float amax = vmax_abs(x, d);
    memset(s, 0, sizeof *s);
    s->sum = sum;
    s->sumsq = sumsq;
    s->sum4 = sum4;
    s->sum_abs = sabs;
    s->max_abs = amax;
    /* Finite floats give finite sums (x⁴·d ≤ 1.4e154·2³¹ ≪ DBL_MAX), so this catches every inf/NaN. */
    s->finite = isfinite(sumsq);
    if (!s->finite) {
        s->kurt = s->flat = s->incoherence = s->corner = NAN;
        return;
    }
    double mu = sum / d;
    double c2[VLANES] = {0}, c3[VLANES] = {0}, c4[VLANES] = {0};
    j = 0;
    for (; j + VLANES <= d; j += VLANES)
        for (int l = 0; l < VLANES; l++) {
            double c = (double)x[j + l] - mu, cc = c * c;
            c2[l] += cc;
            c3[l] += cc * c;
            c4[l] += cc * cc;
        }
    for (int l = 0; j < d; j++, l++) {
        double c = (double)x[j] - mu, cc = c * c;
        c2[l] += cc;
        c3[l] += cc * c;
        c4[l] += cc * cc;
    }
    for (int l = 0; l < VLANES; l++) {
        s->c2 += c2[l];
        s->c3 += c3[l];
        s->c4 += c4[l];
    }
    double dd = d;
    s->kurt = zero_var(s->c2, sumsq) ? NAN : dd * s->c4 / (s->c2 * s->c2);
    if (sumsq > 0) {
        double norm = sqrt(sumsq), sq_d = sqrt(dd);
        s->flat = dd * sum4 / (sumsq * sumsq);
        s->incoherence = sq_d * amax / norm;
        s->corner = sabs / (sq_d * norm);
    } else {
        s->flat = s->incoherence = s->corner = NAN;
    }
}

/* ---- Log histogram ----------------------------------------------------------------------------- */

int rb_log_hist_init(rb_log_hist *h, double vmax, rb_error *err) {
    RB_ASSERT(vmax >= 1.0 && isfinite(vmax));
    memset(h, 0, sizeof *h);
    h->nbins = (int)floor(log2(vmax) * RB_STATS_HIST_BINS_PER_OCTAVE) + 1;
    h->count = rb_calloc((size_t)h->nbins, sizeof *h->count);
    h->vmin = rb_calloc((size_t)h->nbins, sizeof *h->vmin);
    h->vmax = rb_calloc((size_t)h->nbins, sizeof *h->vmax);
    if (!h->count || !h->vmin || !h->vmax) {
        rb_log_hist_free(h);
        return rb_error_set(err, RB_ENOMEM, "statistics: out of memory for a %g-range histogram", vmax);
    }
    return 0;
}

void rb_log_hist_free(rb_log_hist *h) {
    rb_free(h->count);
    rb_free(h->vmin);
    rb_free(h->vmax);
    memset(h, 0, sizeof *h);
}

void rb_log_hist_reset(rb_log_hist *h) {
    h->total = 0;
    memset(h->count, 0, (size_t)h->nbins * sizeof *h->count);
}

void rb_log_hist_add(rb_log_hist *h, double v) {
    double t = log2(v) * RB_STATS_HIST_BINS_PER_OCTAVE;
    int i = !(t >= 0) ? 0 : t >= h->nbins - 1 ? h->nbins - 1 : (int)t; /* NaN-safe clamp before the cast */
    if (h->count[i] == 0) {
        h->vmin[i] = h->vmax[i] = v;
    } else {
        h->vmin[i] = v < h->vmin[i] ? v : h->vmin[i];
        h->vmax[i] = v > h->vmax[i] ? v : h->vmax[i];
    }
    h->count[i]++;
    h->total++;
}

void rb_log_hist_merge(rb_log_hist *dst, const rb_log_hist *src) {
    RB_ASSERT(dst->nbins == src->nbins);
    for (int i = 0; i < src->nbins; i++) {
        if (src->count[i] == 0) continue;
        if (dst->count[i] == 0) {
            dst->vmin[i] = src->vmin[i];
            dst->vmax[i] = src->vmax[i];
        } else {
            dst->vmin[i] = src->vmin[i] < dst->vmin[i] ? src->vmin[i] : dst->vmin[i];
            dst->vmax[i] = src->vmax[i] > dst->vmax[i] ? src->vmax[i] : dst->vmax[i];
        }
        dst->count[i] += src->count[i];
    }
    dst->total += src->total;
}

double rb_log_hist_rank(const rb_log_hist *h, uint64_t k) {
    RB_ASSERT(k >= 1 && k <= h->total);
    uint64_t cum = 0;
    int i = 0;
    for (; i < h->nbins - 1; i++) {
        cum += h->count[i];
        if (cum >= k) break;
    }
    double mid = exp2((i + 0.5) / RB_STATS_HIST_BINS_PER_OCTAVE);
    return mid < h->vmin[i] ? h->vmin[i] : mid > h->vmax[i] ? h->vmax[i] : mid;
}

double rb_log_hist_median(const rb_log_hist *h) {
    uint64_t n = h->total;
    if (n == 0) return NAN;
    if (n % 2) return rb_log_hist_rank(h, n / 2 + 1);
    return 0.5 * (rb_log_hist_rank(h, n / 2) + rb_log_hist_rank(h, n / 2 + 1));
}

/* ---- Activation accumulator -------------------------------------------------------------------- */

int rb_act_stats_init(rb_act_stats *s, int cols, rb_error *err) {
    RB_ASSERT(cols >= 1);
    memset(s, 0, sizeof *s);
    s->cols = cols;
    /* κ and φ of a length-cols vector both lie in [1, cols]. */
    int rc = rb_log_hist_init(&s->kurt_hist, cols, err);
    if (!rc) rc = rb_log_hist_init(&s->flat_hist, cols, err);
    if (rc) {
        rb_act_stats_free(s);
        return rc;
    }
    s->ch_mean = rb_calloc((size_t)cols, sizeof(double));
    s->ch_m2 = rb_calloc((size_t)cols, sizeof(double));
    s->ch_m3 = rb_calloc((size_t)cols, sizeof(double));
    s->ch_m4 = rb_calloc((size_t)cols, sizeof(double));
    if (!s->ch_mean || !s->ch_m2 || !s->ch_m3 || !s->ch_m4) {
        rb_act_stats_free(s);
        return rb_error_set(err, RB_ENOMEM, "statistics: out of memory for %d channels", cols);
    }
    return 0;
}

void rb_act_stats_free(rb_act_stats *s) {
    rb_log_hist_free(&s->kurt_hist);
    rb_log_hist_free(&s->flat_hist);
    rb_free(s->ch_mean);
    rb_free(s->ch_m2);
    rb_free(s->ch_m3);
    rb_free(s->ch_m4);
    memset(s, 0, sizeof *s);
}

void rb_act_stats_reset(rb_act_stats *s) {
    size_t c = (size_t)s->cols;
    s->tokens = s->zero_var = s->zero_norm = s->nonfinite = s->ch_n = 0;
    s->kurt_sum = s->kurt_max = s->flat_sum = s->incoh_sum = s->incoh_max = 0;
    s->corner_sum = s->sqnorm_sum = 0;
    rb_log_hist_reset(&s->kurt_hist);
    rb_log_hist_reset(&s->flat_hist);
    memset(s->ch_mean, 0, c * sizeof(double));
    memset(s->ch_m2, 0, c * sizeof(double));
    memset(s->ch_m3, 0, c * sizeof(double));
    memset(s->ch_m4, 0, c * sizeof(double));
}

/* Welford/Pébay update of every channel's moments with one more row (n−1 → n samples); the loop
 * runs across channels and vectorizes. */
static void channel_update(rb_act_stats *s, const float *restrict x) {
    double *restrict mean = s->ch_mean, *restrict m2 = s->ch_m2, *restrict m3 = s->ch_m3, *restrict m4 = s->ch_m4;
    double n = (double)(s->ch_n + 1), n1 = n - 1.0, inv = 1.0 / n;
    double k3 = n - 2.0, k4 = n * n - 3.0 * n + 3.0;
    int cols = s->cols;
    for (int j = 0; j < cols; j++) {
        double d = (double)x[j] - mean[j], dn = d * inv, dn2 = dn * dn, t = d * dn * n1;
        double a2 = m2[j], a3 = m3[j];
        m4[j] += t * dn2 * k4 + 6.0 * dn2 * a2 - 4.0 * dn * a3;
        m3[j] = a3 + t * dn * k3 - 3.0 * dn * a2;
        m2[j] = a2 + t;
        mean[j] += dn;
    }
    s->ch_n++;
}

void rb_act_stats_add(rb_act_stats *s, const float *x, size_t rows, size_t ld) {
    RB_ASSERT(ld >= (size_t)s->cols);
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * ld;
        rb_vec_stats v;
        rb_vec_stats_compute(row, s->cols, &v);
        s->tokens++;
        if (!v.finite) {
            s->nonfinite++;
            continue;
        }
        s->sqnorm_sum += v.sumsq;
        if (isnan(v.kurt)) {
            s->zero_var++;
        } else {
            s->kurt_sum += v.kurt;
            s->kurt_max = v.kurt > s->kurt_max ? v.kurt : s->kurt_max;
            rb_log_hist_add(&s->kurt_hist, v.kurt);
        }
        if (isnan(v.flat)) {
            s->zero_norm++;
        } else {
            s->flat_sum += v.flat;
            rb_log_hist_add(&s->flat_hist, v.flat);
            s->incoh_sum += v.incoherence;
            s->incoh_max = v.incoherence > s->incoh_max ? v.incoherence : s->incoh_max;
            s->corner_sum += v.corner;
        }
        channel_update(s, row);
    }
}

void rb_act_stats_merge(rb_act_stats *dst, const rb_act_stats *src) {
    RB_ASSERT(dst->cols == src->cols);
    dst->tokens += src->tokens;
    dst->zero_var += src->zero_var;
    dst->zero_norm += src->zero_norm;
    dst->nonfinite += src->nonfinite;
    dst->kurt_sum += src->kurt_sum;
    dst->kurt_max = src->kurt_max > dst->kurt_max ? src->kurt_max : dst->kurt_max;
    dst->flat_sum += src->flat_sum;
    dst->incoh_sum += src->incoh_sum;
    dst->incoh_max = src->incoh_max > dst->incoh_max ? src->incoh_max : dst->incoh_max;
    dst->corner_sum += src->corner_sum;
    dst->sqnorm_sum += src->sqnorm_sum;
    rb_log_hist_merge(&dst->kurt_hist, &src->kurt_hist);
    rb_log_hist_merge(&dst->flat_hist, &src->flat_hist);
    double na = (double)dst->ch_n, nb = (double)src->ch_n;
    for (int j = 0; j < dst->cols; j++) {
        rb_moments a = {na, dst->ch_mean[j], dst->ch_m2[j], dst->ch_m3[j], dst->ch_m4[j]};
        rb_moments b = {nb, src->ch_mean[j], src->ch_m2[j], src->ch_m3[j], src->ch_m4[j]};
        rb_moments_merge(&a, &b);
        dst->ch_mean[j] = a.mean;
        dst->ch_m2[j] = a.m2;
        dst->ch_m3[j] = a.m3;
        dst->ch_m4[j] = a.m4;
    }
    dst->ch_n += src->ch_n;
}

void rb_act_stats_result(const rb_act_stats *s, rb_act_stats_row *r) {
    memset(r, 0, sizeof *r);
    uint64_t fin = s->tokens - s->nonfinite;
    uint64_t nk = fin - s->zero_var, nf = fin - s->zero_norm;
    r->tokens = (double)s->tokens;
    r->kurt_token_mean = nk ? s->kurt_sum / (double)nk : NAN;
    r->kurt_token_median = rb_log_hist_median(&s->kurt_hist);
    r->kurt_token_max = nk ? s->kurt_max : NAN;
    r->flat_token_mean = nf ? s->flat_sum / (double)nf : NAN;
    r->flat_token_median = rb_log_hist_median(&s->flat_hist);
    r->incoherence_mean = nf ? s->incoh_sum / (double)nf : NAN;
    r->incoherence_max = nf ? s->incoh_max : NAN;
    r->corner_mean = nf ? s->corner_sum / (double)nf : NAN;
    r->sqnorm_mean = fin ? s->sqnorm_sum / (double)fin : NAN;
    r->tokens_zero_var = (double)s->zero_var;
    r->tokens_zero_norm = (double)s->zero_norm;
    r->tokens_nonfinite = (double)s->nonfinite;

    double n = (double)s->ch_n, ksum = 0, kmax = -INFINITY;
    int nvalid = 0;
    rb_moments all = {0};
    for (int j = 0; j < s->cols; j++) {
        rb_moments m = {n, s->ch_mean[j], s->ch_m2[j], s->ch_m3[j], s->ch_m4[j]};
        rb_moments_merge(&all, &m);
        double k = rb_moments_kurtosis(&m);
        if (isnan(k)) continue;
        ksum += k;
        kmax = k > kmax ? k : kmax;
        nvalid++;
    }
    r->kurt_channel_mean = nvalid ? ksum / nvalid : NAN;
    r->kurt_channel_max = nvalid ? kmax : NAN;
    r->channels_zero_var = s->cols - nvalid;
    r->kurt_all = rb_moments_kurtosis(&all);
}

/* ---- TSV ------------------------------------------------------------------------------------------ */

typedef struct tsv_field {
    const char *name;
    size_t off;
    int is_count;
} tsv_field;

#define F(type, name, cnt) {#name, offsetof(type, name), cnt}
static const tsv_field act_fields[] = {
    F(rb_act_stats_row, tokens, 1),
    F(rb_act_stats_row, kurt_token_mean, 0),
    F(rb_act_stats_row, kurt_token_median, 0),
    F(rb_act_stats_row, kurt_token_max, 0),
    F(rb_act_stats_row, flat_token_mean, 0),
    F(rb_act_stats_row, flat_token_median, 0),
    F(rb_act_stats_row, kurt_channel_mean, 0),
    F(rb_act_stats_row, kurt_channel_max, 0),
    F(rb_act_stats_row, kurt_all, 0),
    F(rb_act_stats_row, incoherence_mean, 0),
    F(rb_act_stats_row, incoherence_max, 0),
    F(rb_act_stats_row, corner_mean, 0),
    F(rb_act_stats_row, sqnorm_mean, 0),
    F(rb_act_stats_row, tokens_zero_var, 1),
    F(rb_act_stats_row, tokens_zero_norm, 1),
    F(rb_act_stats_row, tokens_nonfinite, 1),
    F(rb_act_stats_row, channels_zero_var, 1),
};
static const tsv_field weight_fields[] = {
    F(rb_weight_stats, kurt_all, 0),
    F(rb_weight_stats, kurt_row_mean, 0),
    F(rb_weight_stats, kurt_row_max, 0),
    F(rb_weight_stats, sum_w4, 0),
    F(rb_weight_stats, flat_row_mean, 0),
    F(rb_weight_stats, incoherence, 0),
    F(rb_weight_stats, fro_sq, 0),
    F(rb_weight_stats, rows_zero_var, 1),
    F(rb_weight_stats, rows_zero, 1),
};
#undef F
/* Every double of the structs is listed: adding a field without a column fails to compile. */
_Static_assert(sizeof act_fields / sizeof act_fields[0] == sizeof(rb_act_stats_row) / sizeof(double),
               "act_fields out of sync with rb_act_stats_row");
_Static_assert(sizeof weight_fields / sizeof weight_fields[0] == sizeof(rb_weight_stats) / sizeof(double),
               "weight_fields out of sync with rb_weight_stats");

static void tsv_header(FILE *f, const tsv_field *fl, size_t n) {
    for (size_t i = 0; i < n; i++) fprintf(f, "%s%s", i ? "\t" : "", fl[i].name);
}

static void tsv_row(FILE *f, const tsv_field *fl, size_t n, const void *row) {
    for (size_t i = 0; i < n; i++) {
        double v;
        memcpy(&v, (const char *)row + fl[i].off, sizeof v);
        fprintf(f, fl[i].is_count ? "%s%.0f" : "%s%.9g", i ? "\t" : "", v);
    }
}

void rb_act_stats_tsv_header(FILE *f) { tsv_header(f, act_fields, sizeof act_fields / sizeof act_fields[0]); }
void rb_act_stats_tsv_row(FILE *f, const rb_act_stats_row *r) {
    tsv_row(f, act_fields, sizeof act_fields / sizeof act_fields[0], r);
}
void rb_weight_stats_tsv_header(FILE *f) { tsv_header(f, weight_fields, sizeof weight_fields / sizeof weight_fields[0]); }
void rb_weight_stats_tsv_row(FILE *f, const rb_weight_stats *s) {
    tsv_row(f, weight_fields, sizeof weight_fields / sizeof weight_fields[0], s);
}

/* rb_qerr: quantization-error accumulators, weight statistics and KL divergence (API in rb_stats.h). */
#include <math.h>
#include <string.h>

#include "core/rb_math.h"
#include "rb_stats.h"

/* Independent double partial sums per reduction (see rb_stats.c). */
#define VLANES 4

/* Σ(b−a)² and Σa² over n entries, differences and squares in double. */
static void sq_err(const float *restrict a, const float *restrict b, int n, double *err, double *ref) {
    double e[VLANES] = {0}, r[VLANES] = {0};
    int j = 0;
    for (; j + VLANES <= n; j += VLANES)
        for (int l = 0; l < VLANES; l++) {
            double x = a[j + l], d = (double)b[j + l] - x;
            e[l] += d * d;
            r[l] += x * x;
        }
    for (int l = 0; j < n; j++, l++) {
        double x = a[j], d = (double)b[j] - x;
        e[l] += d * d;
        r[l] += x * x;
    }
    double se = 0, sr = 0;
    for (int l = 0; l < VLANES; l++) {
        se += e[l];
        sr += r[l];
    }
    *err = se;
    *ref = sr;
}

/* ---- Relative error accumulator ---------------------------------------------------------------- */

void rb_relerr_reset(rb_relerr_acc *a) { memset(a, 0, sizeof *a); }

void rb_relerr_add(rb_relerr_acc *a, const float *ref, const float *approx, size_t rows, int cols, size_t ld) {
    RB_ASSERT(cols >= 0 && ld >= (size_t)cols);
    for (size_t r = 0; r < rows; r++) {
        double e, s;
        sq_err(ref + r * ld, approx + r * ld, cols, &e, &s);
        a->err_sq += e;
        a->ref_sq += s;
    }
    a->rows += rows;
}

void rb_relerr_merge(rb_relerr_acc *dst, const rb_relerr_acc *src) {
    dst->rows += src->rows;
    dst->err_sq += src->err_sq;
    dst->ref_sq += src->ref_sq;
}

double rb_relerr_value(const rb_relerr_acc *a) { return a->ref_sq > 0 ? a->err_sq / a->ref_sq : NAN; }

/* ---- Weights ------------------------------------------------------------------------------------- */

void rb_weight_err_compute(const float *w, const float *wq, int rows, int cols, rb_weight_err *out) {
    RB_ASSERT(rows >= 0 && cols >= 0);
    memset(out, 0, sizeof *out);
    double rsum = 0, rmax = 0;
    int nrow = 0;
    for (int i = 0; i < rows; i++) {
        double e, s;
        sq_err(w + (size_t)i * (size_t)cols, wq + (size_t)i * (size_t)cols, cols, &e, &s);
        out->err_sq += e;
        out->ref_sq += s;
        if (s > 0) {
            double q = e / s;
            rsum += q;
            rmax = q > rmax ? q : rmax;
            nrow++;
        } else {
            out->rows_zero++;
        }
    }
    out->rel = out->ref_sq > 0 ? out->err_sq / out->ref_sq : NAN;
    out->row_rel_mean = nrow ? rsum / nrow : NAN;
    out->row_rel_max = nrow ? rmax : NAN;
}

void rb_weight_stats_compute(const float *w, int rows, int cols, rb_weight_stats *out) {
    RB_ASSERT(rows >= 1 && cols >= 1);
    memset(out, 0, sizeof *out);
    rb_moments all = {0};
    double ksum = 0, kmax = -INFINITY, fsum = 0, amax = 0;
    int nk = 0, nf = 0;
    for (int i = 0; i < rows; i++) {
        rb_vec_stats v;
        rb_vec_stats_compute(w + (size_t)i * (size_t)cols, cols, &v);
        rb_moments m = {cols, v.sum / cols, v.c2, v.c3, v.c4};
        rb_moments_merge(&all, &m);
        out->sum_w4 += v.sum4;
        out->fro_sq += v.sumsq;
        amax = v.max_abs > amax ? v.max_abs : amax;
        if (isnan(v.kurt)) {
            out->rows_zero_var++;
        } else {
            ksum += v.kurt;
            kmax = v.kurt > kmax ? v.kurt : kmax;
            nk++;
        }
        if (isnan(v.flat)) {
            out->rows_zero++;
        } else {
            fsum += v.flat;
            nf++;
        }
    }
    out->kurt_all = rb_moments_kurtosis(&all);
    out->kurt_row_mean = nk ? ksum / nk : NAN;
    out->kurt_row_max = nk ? kmax : NAN;
    out->flat_row_mean = nf ? fsum / nf : NAN;
    out->incoherence = out->fro_sq > 0 ? amax * sqrt((double)rows * cols) / sqrt(out->fro_sq) : NAN;
}

/* ---- KL divergence ------------------------------------------------------------------------------- */

/* Logits per chunk of the KL loop: exps are computed into fp32 buffers of this size (a pure-fp32
 * loop that vectorizes) and then summed in double lanes. */
#define KL_CHUNK 256

/* One pass over a row pair: with e_v = exp(p_v − mp), f_v = exp(q_v − mq) and c = mp − mq,
 *   Zp = Σ e_v,  Zq = Σ f_v,  B = Σ e_v·((p_v − q_v) − c),
 *   KL = Σ_v (e_v/Zp)·(log p_v − log q_v) = B/Zp − (log Zp − log Zq).
 * Both terms are O(|log Zp − log Zq|) ≤ log vocab, so the final subtraction loses only ~1e-15
 * absolute; the log-ratio in B is formed in double from the fp32 logits (exact differences). */
static double kl_row(const float *restrict p, const float *restrict q, int vocab) {
    float ep[KL_CHUNK], eq[KL_CHUNK];
    float mp = rb_vmax(p, vocab), mq = rb_vmax(q, vocab);
    double c = (double)mp - (double)mq;
    double zp[VLANES] = {0}, zq[VLANES] = {0}, b[VLANES] = {0};
    for (int j0 = 0; j0 < vocab; j0 += KL_CHUNK) {
        int m = vocab - j0 < KL_CHUNK ? vocab - j0 : KL_CHUNK;
        const float *pp = p + j0, *qq = q + j0;
        for (int k = 0; k < m; k++) {
            ep[k] = rb_expf_fast(pp[k] - mp);
            eq[k] = rb_expf_fast(qq[k] - mq);
        }
        int k = 0;
        for (; k + VLANES <= m; k += VLANES)
            for (int l = 0; l < VLANES; l++) {
                double e = ep[k + l];
                zp[l] += e;
                zq[l] += eq[k + l];
                b[l] += e * (((double)pp[k + l] - (double)qq[k + l]) - c);
            }
        for (int l = 0; k < m; k++, l++) {
            double e = ep[k];
            zp[l] += e;
            zq[l] += eq[k];
            b[l] += e * (((double)pp[k] - (double)qq[k]) - c);
        }
    }
    double Zp = 0, Zq = 0, B = 0;
    for (int l = 0; l < VLANES; l++) {
        Zp += zp[l];
        Zq += zq[l];
        B += b[l];
    }
    return B / Zp - (log(Zp) - log(Zq));
}

void rb_kl_rows(const float *logits_fp, const float *logits_q, size_t rows, int vocab, double *kl) {
    RB_ASSERT(vocab >= 1);
    for (size_t r = 0; r < rows; r++) kl[r] = kl_row(logits_fp + r * (size_t)vocab, logits_q + r * (size_t)vocab, vocab);
}

void rb_kl_acc_reset(rb_kl_acc *a) { memset(a, 0, sizeof *a); }

void rb_kl_acc_add(rb_kl_acc *a, const double *kl, size_t n) {
    for (size_t i = 0; i < n; i++) {
        a->sum += kl[i];
        a->max = a->n + i == 0 || kl[i] > a->max ? kl[i] : a->max;
    }
    a->n += n;
}

void rb_kl_acc_merge(rb_kl_acc *dst, const rb_kl_acc *src) {
    if (src->n == 0) return;
    dst->max = dst->n == 0 || src->max > dst->max ? src->max : dst->max;
    dst->sum += src->sum;
    dst->n += src->n;
}

double rb_kl_acc_mean(const rb_kl_acc *a) { return a->n ? a->sum / (double)a->n : NAN; }

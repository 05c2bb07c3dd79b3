/* rb_stats: outlier / flatness / quantization-error metrics of METHODS §9, as streaming
 * accumulators. The caller keeps one accumulator per (layer, site) and feeds it batches of rows
 * (tokens); memory depends only on the row width, never on the number of tokens. All statistics
 * are computed and reduced in double.
 *
 * Two fourth-moment ratios of a vector x of length d are used throughout; they differ only in
 * centering:
 *   kurtosis (Pearson, non-excess)  κ(x) = mean_j (x_j − μ)⁴ / (mean_j (x_j − μ)²)²,  μ = mean_j x_j.
 *       Gaussian 3, continuous uniform 1.8, ±1 vector 1, one-hot of length d: (d² − 3d + 3)/(d − 1)
 *       (= d − 2 + 1/(d − 1), the maximum possible for length d). Undefined for a constant vector.
 *   flatness (non-centered)         φ(x) = d·Σ_j x_j⁴ / (Σ_j x_j²)².
 *       ±1 vector 1, one-hot of length d exactly d (the maximum); equals κ when μ = 0 (so Gaussian
 *       ≈ 3). This is OptRot's normalized Σ W⁴ proxy. Undefined for x = 0.
 * Neither subtracts 3 ("excess" kurtosis appears nowhere in this module). Both lie in [1, d]. */
#ifndef RB_STATS_H
#define RB_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/rb_error.h"

/* ---- Mergeable central moments ----------------------------------------------------------- */

/* Sample of n values summarized by its mean and central power sums m_k = Σ (x − mean)^k.
 * Combining two summaries (Pébay 2008 / Chan et al.) is exact up to rounding, so shards, batches
 * and channels can be merged in any grouping. {0} is the empty sample. */
typedef struct rb_moments {
    double n, mean, m2, m3, m4;
} rb_moments;

/* a ← a ∪ b. */
void rb_moments_merge(rb_moments *a, const rb_moments *b);
/* Pearson kurtosis n·m4/m2²; NaN when the sample is empty or has zero variance (see RB_STATS_ZERO_VAR_REL). */
double rb_moments_kurtosis(const rb_moments *m);

/* A variance is treated as zero when Σ(x−μ)² ≤ RB_STATS_ZERO_VAR_REL·Σx². Two distinct fp32 values
 * differ by at least 2^-24 ≈ 6e-8 relative, so a non-constant fp32 sample of n values has a ratio
 * of at least ~3.6e-15/n (> 1e-28 for any n < 10¹³), while double rounding of a constant sample
 * leaves at most ~1e-31. */
#define RB_STATS_ZERO_VAR_REL 1e-28

/* ---- Statistics of one vector -------------------------------------------------------------- */

typedef struct rb_vec_stats {
    double sum, sumsq, sum4, sum_abs; /* Σx, Σx², Σx⁴, Σ|x| */
    double max_abs;                   /* max |x| */
    double c2, c3, c4;                /* Σ(x−μ)², Σ(x−μ)³, Σ(x−μ)⁴ (two-pass, μ = Σx/d) */
    double kurt;                      /* Pearson κ; NaN when zero variance */
    double flat;                      /* flatness φ; NaN when x = 0 */
    double incoherence;               /* √d·max|x|/‖x‖₂ ∈ [1, √d]; NaN when x = 0 */
    double corner;                    /* ‖x‖₁/(√d‖x‖₂) ∈ [1/√d, 1], 1 on a hypercube corner; NaN when x = 0 */
    int finite;                       /* 0 when x holds an inf or NaN (then the fields above are meaningless) */
} rb_vec_stats;

/* Fills *s from x[d], d ≥ 1. */
void rb_vec_stats_compute(const float *x /* [d] */, int d, rb_vec_stats *s);

/* ---- Median without storing the values ------------------------------------------------------ */

/* Log-spaced histogram over [1, vmax] with RB_STATS_HIST_BINS_PER_OCTAVE bins per factor of 2
 * (ratio r = 2^(1/512) between bin edges). Values outside the range (rounding) go to the end bins.
 * Each bin also keeps the smallest and largest value it received; a rank estimate is the bin's
 * geometric centre clamped to those, so it and the true value lie in one bin and are within a
 * factor √r of each other:
 *     |median_est / median − 1| ≤ RB_STATS_MEDIAN_REL_BOUND = 2^(1/1024) − 1 ≈ 6.77e-4
 * (for an even count the two middle ranks are each estimated so and averaged: same bound). It is
 * exact when all values in the median's bin are equal. 512 bins/octave keeps the bound below the
 * sampling noise of a median over ~10⁵ tokens at ~170 KB per histogram for d = 16384. */
#define RB_STATS_HIST_BINS_PER_OCTAVE 512
#define RB_STATS_MEDIAN_REL_BOUND 6.78e-4

typedef struct rb_log_hist {
    int nbins;
    uint64_t total;
    uint64_t *count; /* [nbins] */
    double *vmin;    /* [nbins] smallest value in the bin (valid where count > 0) */
    double *vmax;    /* [nbins] largest value in the bin */
} rb_log_hist;

/* Histogram over [1, vmax], vmax ≥ 1. Errors: RB_ENOMEM. */
int rb_log_hist_init(rb_log_hist *h, double vmax, rb_error *err);
void rb_log_hist_free(rb_log_hist *h);
void rb_log_hist_reset(rb_log_hist *h);
/* Adds a finite value v > 0. */
void rb_log_hist_add(rb_log_hist *h, double v);
/* dst ← dst ∪ src; both made with the same vmax. */
void rb_log_hist_merge(rb_log_hist *dst, const rb_log_hist *src);
/* Estimate of the k-th smallest value (1 ≤ k ≤ total), within a factor √r. */
double rb_log_hist_rank(const rb_log_hist *h, uint64_t k);
/* Median estimate (mean of the two middle ranks for an even count); NaN when empty. */
double rb_log_hist_median(const rb_log_hist *h);

/* ---- Activation statistics accumulator ------------------------------------------------------ */

/* Statistics of a tensor of width `cols` fed as batches of rows (tokens):
 *  per token: κ and φ (sum + histogram for mean/median, max κ), incoherence (sum, max), corner
 *             (sum), ‖x‖² (sum). Rows with zero variance are left out of κ only; rows equal to 0
 *             of φ, incoherence and corner; rows holding inf/NaN of everything (all counted).
 *  per channel: central moments over tokens (Welford/Pébay updates per row rather than raw power
 *             sums Σx..Σx⁴, which cancel catastrophically when |mean| ≫ std; same memory), giving
 *             κ per channel and, by merging all channels, κ of the flattened tensor.
 * Feeding the same rows in any batch split gives bitwise-identical state. */
typedef struct rb_act_stats {
    int cols;
    uint64_t tokens;      /* rows fed */
    uint64_t zero_var;    /* finite rows with zero variance (κ undefined) */
    uint64_t zero_norm;   /* finite rows equal to 0 (φ, incoherence, corner undefined) */
    uint64_t nonfinite;   /* rows holding inf/NaN: skipped entirely */
    double kurt_sum, kurt_max;
    double flat_sum;
    double incoh_sum, incoh_max;
    double corner_sum;
    double sqnorm_sum;    /* Σ over finite rows of ‖x‖² */
    rb_log_hist kurt_hist, flat_hist;
    uint64_t ch_n;        /* rows in the channel moments (= finite rows) */
    double *ch_mean;      /* [cols] */
    double *ch_m2;        /* [cols] Σ_t (x_tj − mean_j)² */
    double *ch_m3;        /* [cols] */
    double *ch_m4;        /* [cols] */
} rb_act_stats;

/* Empty accumulator for rows of width cols ≥ 1. Errors: RB_ENOMEM. */
int rb_act_stats_init(rb_act_stats *s, int cols, rb_error *err);
void rb_act_stats_free(rb_act_stats *s);
/* Back to empty (keeps the allocations). */
void rb_act_stats_reset(rb_act_stats *s);
/* Accumulates rows x[r*ld .. r*ld + cols), r < rows, ld ≥ cols (ld = cols for a dense batch; a
 * head's slice of a K/V row: x + g*group_dim with cols = group_dim, ld = full width). */
void rb_act_stats_add(rb_act_stats *s, const float *x /* [rows][ld] */, size_t rows, size_t ld);
/* dst ← dst ∪ src (shards of one site); same cols. */
void rb_act_stats_merge(rb_act_stats *dst, const rb_act_stats *src);

/* One flat result row. Means are over the rows (channels) where the statistic is defined; NaN
 * when there are none. Counts are stored as doubles. */
typedef struct rb_act_stats_row {
    double tokens;
    double kurt_token_mean, kurt_token_median, kurt_token_max; /* Pearson κ per token over channels */
    double flat_token_mean, flat_token_median;                 /* flatness φ per token (non-centered) */
    double kurt_channel_mean, kurt_channel_max;                /* Pearson κ per channel over tokens */
    double kurt_all;                                           /* Pearson κ of all entries */
    double incoherence_mean, incoherence_max;                  /* √d·max|x|/‖x‖₂ per token */
    double corner_mean;                                        /* ‖x‖₁/(√d‖x‖₂) per token */
    double sqnorm_mean;                                        /* ‖x‖₂² per token */
    double tokens_zero_var, tokens_zero_norm, tokens_nonfinite, channels_zero_var;
} rb_act_stats_row;

/* Finalizes the accumulator into *r (O(cols + bins); the accumulator is unchanged). */
void rb_act_stats_result(const rb_act_stats *s, rb_act_stats_row *r);

/* TSV helpers: the field names / values of a row, tab-separated, in struct order, with no leading
 * or trailing tab and no newline (the caller adds its own key columns and the "\n"). Values are
 * %.9g; counts are printed as integers. */
void rb_act_stats_tsv_header(FILE *f);
void rb_act_stats_tsv_row(FILE *f, const rb_act_stats_row *r);

/* ---- Quantization error accumulators --------------------------------------------------------- */

/* Relative squared error Σ‖approx − ref‖² / Σ‖ref‖² accumulated batch by batch. Used for
 *   activation quantization MSE: ref = x_t (or x_t R: the denominator is rotation-invariant),
 *                                approx = Q(x_t R) in the same coordinates as ref's numerator;
 *   layer / block output MSE:    ref = Y_fp, approx = Y_q. */
typedef struct rb_relerr_acc {
    uint64_t rows;
    double err_sq; /* Σ‖approx − ref‖² */
    double ref_sq; /* Σ‖ref‖² */
} rb_relerr_acc;

void rb_relerr_reset(rb_relerr_acc *a);
/* Accumulates rows of ref and approx, both [rows][ld] with the first `cols` entries used. */
void rb_relerr_add(rb_relerr_acc *a, const float *ref /* [rows][ld] */, const float *approx /* [rows][ld] */,
                   size_t rows, int cols, size_t ld);
void rb_relerr_merge(rb_relerr_acc *dst, const rb_relerr_acc *src);
/* err_sq / ref_sq; NaN when ref_sq = 0. */
double rb_relerr_value(const rb_relerr_acc *a);

/* Weight quantization error of w[rows][cols] vs its quantized wq. */
typedef struct rb_weight_err {
    double err_sq;       /* ‖wq − w‖_F² */
    double ref_sq;       /* ‖w‖_F² (to normalize by the unfused ‖W‖ instead, divide err_sq yourself) */
    double rel;          /* err_sq / ref_sq (NaN when ref_sq = 0) */
    double row_rel_mean; /* mean over rows of ‖wq_i − w_i‖² / ‖w_i‖² (rows with w_i = 0 left out) */
    double row_rel_max;
    double rows_zero;    /* rows with w_i = 0 */
} rb_weight_err;

void rb_weight_err_compute(const float *w /* [rows][cols] */, const float *wq /* [rows][cols] */, int rows, int cols,
                           rb_weight_err *out);

/* ---- Weight statistics ----------------------------------------------------------------------- */

typedef struct rb_weight_stats {
    double kurt_all;                    /* Pearson κ of all entries */
    double kurt_row_mean, kurt_row_max; /* Pearson κ per row over its cols (zero-variance rows left out) */
    double sum_w4;                      /* OptRot proxy Σ_ij W_ij⁴ */
    double flat_row_mean;               /* mean_i cols·Σ_j W_ij⁴ / (Σ_j W_ij²)² (zero rows left out) */
    double incoherence;                 /* max|W|·√(rows·cols) / ‖W‖_F */
    double fro_sq;                      /* ‖W‖_F² */
    double rows_zero_var, rows_zero;
} rb_weight_stats;

void rb_weight_stats_compute(const float *w /* [rows][cols] */, int rows, int cols, rb_weight_stats *out);
/* TSV header / row of rb_weight_stats, same conventions as rb_act_stats_tsv_*. */
void rb_weight_stats_tsv_header(FILE *f);
void rb_weight_stats_tsv_row(FILE *f, const rb_weight_stats *s);

/* ---- KL divergence of next-token distributions ----------------------------------------------- */

/* kl[r] = KL(p_fp ‖ p_q) = Σ_v p_fp(v)·(log p_fp(v) − log p_q(v)) in nats, p = softmax(logits row).
 * Log-softmax with max subtraction, one pass per row; exps by rb_expf_fast (relative error < 2e-7),
 * sums and log-ratios in double. Exactly 0 for identical rows; against a libm double reference
 * the absolute error measured ≤ 6e-8 nats (vocab 32000, KL 1e-9 … 0.5), so values below ~1e-6
 * nats (fp16 vs fp32 noise) are not resolved. Logits must be finite. */
void rb_kl_rows(const float *logits_fp /* [rows][vocab] */, const float *logits_q /* [rows][vocab] */, size_t rows,
                int vocab, double *kl /* [rows] */);

/* Aggregate of per-token KL values (e.g. the scored positions of each window). */
typedef struct rb_kl_acc {
    uint64_t n;
    double sum, max;
} rb_kl_acc;

void rb_kl_acc_reset(rb_kl_acc *a);
/* Adds kl[0..n). */
void rb_kl_acc_add(rb_kl_acc *a, const double *kl /* [n] */, size_t n);
void rb_kl_acc_merge(rb_kl_acc *dst, const rb_kl_acc *src);
/* Mean KL; NaN when empty. */
double rb_kl_acc_mean(const rb_kl_acc *a);

#endif

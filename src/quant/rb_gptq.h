/* rb_gptq: calibration Hessians and GPTQ weight quantization (METHODS.md §8.2, following
 * GPTQ/QuaRot gptq_utils.py: add_batch and fasterquant).
 *
 * Hessians are symmetric n×n double matrices stored row-major in full n·n storage of which only
 * the upper triangle (row i, columns j ≥ i) is written by rb_hessian_add and read by every
 * function here; the strictly lower triangle is left as zeros (rb_hessian_symmetrize fills it). */
#ifndef RB_GPTQ_H
#define RB_GPTQ_H

#include <stdint.h>

#include "quant/rb_quant.h"

/* Running H = (2/N)·Σ_t x_tᵀ x_t of the inputs of one linear with n inputs (N tokens so far). */
typedef struct rb_hessian {
    int n;          /* inputs of the linear */
    long nsamples;  /* tokens added so far (N) */
    double *h;      /* [n][n] upper triangle valid, owned */
    float *scratch; /* [RB_HESSIAN_BLOCK][n] fp32 product of one block of rows, owned */
} rb_hessian;

/* Rows of XᵀX computed per sgemm in rb_hessian_add (bounds the fp32 scratch to BLOCK·n floats). */
#define RB_HESSIAN_BLOCK 512

/* Zero Hessian for n ≥ 1 inputs. RB_ENOMEM (h stays freeable) or RB_EINVAL. */
int rb_hessian_init(rb_hessian *h, int n, rb_error *err);
void rb_hessian_free(rb_hessian *h);

/* Adds ntok ≥ 0 tokens x[ntok][n] (fp32) exactly like GPTQ's add_batch with tmp = ntok:
 * H ← H·N/(N+ntok); N ← N+ntok; H ← H + (2/N)·xᵀx. Never fails for a valid accumulator. */
void rb_hessian_add(rb_hessian *h, const float *x, int ntok);

/* Copies the upper triangle of h[n][n] into the lower one. */
void rb_hessian_symmetrize(double *h, int n);

/* The quantizer parameters a quantization used, so its result can be written as integers (weight
 * store, GPTQ export): weight (r, c) = scale[r·n_units + u]·(q − zero[r·n_units + u]) with
 * u = g_idx[c] and q an integer of the quantizer's range. Caller-owned buffers. */
typedef struct rb_qparams_out {
    float *scale;   /* [rows][n_units]: n_units = ceil(cols/group) for group granularity, else 1 */
    float *zero;    /* same shape */
    int32_t *g_idx; /* [cols] unit of each input column (group granularity; NULL otherwise). Without
                       act-order or with static groups u = c / group; act-order GPTQ forms its groups in
                       processing order, u = (position of column c in that order) / group (GPTQ's g_idx) */
} rb_qparams_out;

typedef struct rb_gptq_opts {
    double percdamp;   /* damping = percdamp · mean(diag H) added to the diagonal; GPTQ default 0.01 */
    int act_order;     /* 1: process columns by descending diag H (GPTQ --act_order); default 0 */
    int blocksize;     /* columns per lazy batch; default 128 */
    int static_groups; /* 1: group parameters fixed up front from the (dead-zeroed) W; default 0 */
    const char *name;  /* matrix name used in error messages ("layers.3.mlp.gate_proj"); may be NULL */
    rb_qparams_out *params; /* NULL, or where the parameters used are written (filled on success) */
} rb_gptq_opts;

/* The defaults above. */
rb_gptq_opts rb_gptq_opts_default(void);

typedef struct rb_gptq_stats {
    double loss;        /* GPTQ's reported error: Σ over columns and rows of (w − q)²/d² / 2 */
    int dead_cols;      /* columns with H_jj = 0 (set to 0) */
    double damp;        /* damping added to the diagonal */
    double t_params_s;  /* quantizer parameters (incl. clip search), copies, permutations */
    double t_chol_s;    /* upper Cholesky factor of H⁻¹ (dpotrf + dtrtri) */
    double t_quant_s;   /* per-column quantization and intra-block updates */
    double t_update_s;  /* trailing-block sgemm updates */
    double update_flop; /* floating-point operations of those sgemms */
} rb_gptq_stats;

/* GPTQ of a linear's weight w[rows][cols] (rows = outputs, cols = inputs) in place against the
 * Hessian h[cols][cols] (upper triangle read, not modified) of its inputs. spec: the weight
 * quantizer (granularity tensor, channel/token or group; head is RB_EINVAL); per-channel/tensor
 * parameters come from the unmodified W (clip-searched if spec->clip_search), group parameters
 * are recomputed every spec->group columns from the partially updated W as GPTQ does (or fixed up
 * front with opts->static_groups). On return w lies on each unit's quantizer grid. bits = 16
 * returns 0 with w untouched. opts may be NULL (defaults); stats may be NULL.
 * Work space: cols²·8 bytes (H's factor, reused in place for its fp32 copy), plus rows·cols·4
 * with act_order. Per-channel clip search runs on rb_blas_threads() threads; the rest is BLAS
 * (LAPACK Cholesky, sgemm trailing updates) and a single-threaded per-row column loop.
 * Errors: RB_EINVAL (bad spec or shape, or H not positive definite even after damping, message
 * names opts->name), RB_ENOMEM: w unchanged. RB_EINTERRUPTED (SIGINT/SIGTERM, checked per column
 * block): w left part quantized, to be discarded. */
int rb_gptq_quantize(const rb_qspec *spec, float *w, int rows, int cols, const double *h, const rb_gptq_opts *opts,
                     rb_gptq_stats *stats, rb_error *err);

/* Layer reconstruction loss on the calibration Hessian: *out = tr((W − Q) H (W − Q)ᵀ) for
 * w, q [rows][cols] and h [cols][cols] (upper triangle read), computed in double. RB_ENOMEM. */
int rb_quant_hessian_error(const float *w, const float *q, const double *h, int rows, int cols, double *out,
                           rb_error *err);

#endif

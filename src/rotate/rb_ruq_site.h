/* rb_ruq_site: RUQuant's per-layer, per-linear-input online transform (METHODS §5.2), a member of
 * the rotation set (rb_rotset.h) that fusion applies (rb_fuse.h). The algorithms that build it
 * (stage 1, METHODS §5.3) are the method's: methods/rb_ruquant.h.
 *
 * Row convention (METHODS §0): a site transform acts on an activation row x [n] as
 *     x ← (x / s) · A,    A = blockdiag(blk0) · P · blockdiag(blk1) · (I − 2·v·vᵀ)
 * and on every weight W [out][n] reading that input as
 *     W ← W · diag(s) · A
 * so that x·Wᵀ is unchanged. blockdiag(M) applies the same B×B matrix M to every consecutive block
 * of B channels (x viewed as [n/B][B], times M); P is a gather x'_j = x_{perm[j]}. In the notation of
 * §5.3, blk0 = R_0ᵀ and blk1 = R_1ᵀ (get_R returns R for column vectors; rows are multiplied by Rᵀ).
 *
 * The smoothing s is RUQuant's SmoothQuant step. RUQuant folds it into the RMSNorm weights (qkv,
 * fc1), the up_proj rows (down) or applies it online (o_proj under GQA); here it is always applied
 * online, together with A. The product is the same linear map, so the model function is the same;
 * only where the division happens differs (and our norms are already γ-free after preparation). */
#ifndef RB_RUQ_SITE_H
#define RB_RUQ_SITE_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_error.h"
#include "core/rb_rng.h"

/* The four transform sites of a decoder layer (RUQuant's names: qkv, out, fc1, down). */
enum { RB_RUQ_QKV = 0, RB_RUQ_OUT, RB_RUQ_FC1, RB_RUQ_DOWN, RB_RUQ_NSITES };

/* HDF5 / log name of a site: the forward site it sits at ("attn_in", "o_in", "mlp_in", "down_in").
 * RB_ASSERTs k in range. */
const char *rb_ruq_site_name(int k);
/* Index of a site name, or -1. */
int rb_ruq_site_from_name(const char *name);
/* The forward hook site (rb_forward.h RB_SITE_*) of site k; the site at forward site `site`, or -1. */
int rb_ruq_forward_site(int k);
int rb_ruq_site_at(int site);

/* RUQuant's skip threshold on ‖y − t‖² (absolute, in the activation's units, as in the code's
 * get_R: a Householder whose vector would be this short is numerically meaningless). */
#define RB_RUQ_SKIP_NORM2 1e-10

typedef struct rb_ruq_site {
    int n;             /* width of the linear input */
    int block;         /* B: divides n */
    double *scale;     /* [n] smoothing s_j > 0 */
    double *blk0;      /* [B][B] orthogonal (R_0ᵀ) */
    int32_t *perm;     /* [n] zig-zag gather, a permutation of 0..n−1 */
    double *blk1;      /* [B][B] orthogonal (R_1ᵀ) */
    double *hh;        /* [n] unit global Householder vector v; all zeros = identity */
    int scale_fused;   /* 1: the division by s is folded into the weights producing the input (RUQuant's
                          released code: up_proj rows for down_in, v_proj rows for o_in under MHA), so the
                          online transform is A alone; 0: x/s online (rb_fuse.c applies both) */
    /* fp32 copies for the online activation path, refreshed by rb_ruq_site_check */
    float *inv_scale_f; /* [n] 1/s */
    float *blk0_f, *blk1_f; /* [B][B] */
    float *hh_f;       /* [n] */
    double orth_err;   /* max ‖QᵀQ − I‖_max of blk0, blk1 and I − 2vvᵀ, measured by rb_ruq_site_check */
} rb_ruq_site;

/* A site of width n and block B (1 ≤ B, B divides n) holding the identity transform (s = 1,
 * blocks I, perm identity, v = 0), fp32 copies filled. Errors: RB_EINVAL (shape), RB_ENOMEM. */
int rb_ruq_site_alloc(int n, int block, rb_ruq_site **out, rb_error *err);
void rb_ruq_site_free(rb_ruq_site *s);

/* Validates a filled site: s finite and > 0, perm a permutation, blk0/blk1 orthogonal and v zero
 * or unit (each within RB_ROT_ORTH_TOL), no NaN. *orth_err (may be NULL) gets the measured error.
 * RB_EINVAL with a one-line reason naming the field ("perm: entry 5 = 3 repeats entry 2"),
 * RB_ENOMEM. */
int rb_ruq_site_validate(const rb_ruq_site *s, double *orth_err, rb_error *err);
/* rb_ruq_site_validate, then refreshes the fp32 copies and orth_err (after any edit of the double
 * fields, before the site is applied to activations). */
int rb_ruq_site_check(rb_ruq_site *s, rb_error *err);

/* ‖QᵀQ − I‖_max over the three orthogonal factors, measured now (NaN if any entry is not finite;
 * +∞ when memory runs out, so a tolerance check fails safe). */
double rb_ruq_site_orth_err(const rb_ruq_site *s);

/* Weights, in double: W[rows][n] ← W · diag(s) · A. tmp: [rows][n] scratch. */
void rb_ruq_apply_weight_d(const rb_ruq_site *s, double *W, size_t rows, double *tmp);
/* Activations, in fp32: X[rows][n] ← (X / s) · A, or X · A alone with `skip_scale` (the online step of
 * a site whose scale_fused is set: its input arrives divided already). tmp: [rows][n] scratch. */
void rb_ruq_apply_act_f(const rb_ruq_site *s, float *X, size_t rows, float *tmp, int skip_scale);
/* The inverse map back to the model's basis, in fp32: X[rows][n] ← (X · Aᵀ) · diag(s), whatever the
 * placement (statistics: the error a quantizer makes after the transform, seen where the model is
 * comparable with other methods'). tmp: [rows][n] scratch. */
void rb_ruq_unapply_act_f(const rb_ruq_site *s, float *X, size_t rows, float *tmp);
/* The transpose of rb_ruq_apply_act_f (its backward), in fp32: X[rows][n] ← (X · Aᵀ) / s, or X · Aᵀ
 * with skip_scale. tmp: [rows][n] scratch. */
void rb_ruq_apply_act_t_f(const rb_ruq_site *s, float *X, size_t rows, float *tmp, int skip_scale);
/* The map and its transpose without the global Householder (stage 2 trains it: methods/rb_ruq_train.h),
 * in fp32: X[rows][n] ← (X / s) · B, and X ← (X · Bᵀ) / s (both without the division by s with
 * skip_scale), B = blockdiag(blk0) · P · blockdiag(blk1); the site's hh is not read. tmp: [rows][n]. */
void rb_ruq_apply_act_pre_f(const rb_ruq_site *s, float *X, size_t rows, float *tmp, int skip_scale);
void rb_ruq_apply_act_pre_t_f(const rb_ruq_site *s, float *X, size_t rows, float *tmp, int skip_scale);
/* The same in double (tests, calibration): X[rows][n] ← (X / s) · A. tmp: [rows][n] scratch. */
void rb_ruq_apply_act_d(const rb_ruq_site *s, double *X, size_t rows, double *tmp);

#endif

/* rb_ruquant: RUQuant stage 1 (METHODS §5.3) — the closed-form algorithms that build a site
 * transform (rotate/rb_ruq_site.h) from the site's calibration inputs; the algorithm follows
 * RUQuant-code/RUQuant:quantize/quantizer.py. */
#ifndef RB_RUQUANT_H
#define RB_RUQUANT_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_error.h"
#include "core/rb_rng.h"
#include "rotate/rb_ruq_site.h"

/* Largest divisor of width that is ≤ block (block ≥ 1). */
int rb_ruq_block_for(int width, int block);

/* SmoothQuant scales (RUQuant code): s_j = clamp(max(xmax_j, 1e-5)^α / max(wmax_j, 1e-5)^(1−α), ≥ 1e-5).
 * xmax [n]: max |X_ij| over the site's input rows; wmax [n]: max |W_ij| over the rows of every
 * weight reading the site. */
void rb_ruq_smooth_scales(const double *xmax, const double *wmax, int n, double alpha, double *s);

/* Zig-zag permutation (DuQuant/RUQuant permutation_zigzag): channels sorted by chmax descending
 * (stable) are dealt into the n/B blocks in the order 0,1,…,nb−1,nb−1,…,0,0,1,…; each block is then
 * sorted descending (stable); perm[b·B + i] = the i-th channel of block b. chmax: [n]. B divides n.
 * Errors: RB_ENOMEM. */
int rb_ruq_zigzag(const double *chmax, int n, int B, int32_t *perm, rb_error *err);

/* get_R (§5.3) on the chunks Y[N][B] (one B-channel block of one token per row), in place, in
 * double: K times { Householder mapping the row with the largest |entry| exactly onto a U[0,1)^B
 * target scaled to its norm (skipped, with its permutation rounds, when ‖y − t‖² < RB_RUQ_SKIP_NORM2);
 * λ times { random permutation; Givens layer on pairs (0,1),(2,3),… rotating the pairs of the row
 * with the largest |entry| onto the pairs of a U[0,1)^B target (odd B: last coordinate untouched) } }.
 * code_givens = 1 uses the released code's mirror block [[c, s], [−s, c]] (rotation by −θ) instead
 * of the intended [[c, −s], [s, c]]. On return Y = Y₀·M with M [B][B] (= Rᵀ) orthogonal; *applied
 * (may be NULL) gets the number of Householder steps not skipped. Draws from rng, per step: B
 * uniforms (target), then per round a Fisher–Yates shuffle of B and B uniforms. Ties in the largest
 * |entry| go to the first row. Errors: RB_ENOMEM. */
int rb_ruq_get_R(double *Y, size_t N, int B, int K, int lambda, int code_givens, rb_rng *rng, double *M,
                 int *applied, rb_error *err);

/* Global Householder (§5.3 step 4) on X[rows][n]: x* = the row with the largest |entry|, t =
 * U[0,1)^n (n draws) scaled to ‖x*‖, v = (x* − t)/‖x* − t‖. Returns 1 and v, or 0 and v = 0 when
 * ‖x* − t‖² < RB_RUQ_SKIP_NORM2. X is not modified. */
int rb_ruq_global_householder(const double *X, size_t rows, int n, rb_rng *rng, double *v);

/* Stage-1 options. */
typedef struct rb_ruq_fit_opts {
    int block;       /* B for this site (divides the width) */
    int steps;       /* K */
    int perms;       /* λ */
    int code_givens; /* 0 intended Givens, 1 code variant */
    double alpha;    /* smoothing exponent */
} rb_ruq_fit_opts;

/* What one fit did (for the trace). */
typedef struct rb_ruq_fit_info {
    int applied0, applied1; /* Householder steps of get_R for blk0 / blk1 not skipped */
    int global;             /* 1 when the global Householder is not the identity */
    double max_abs_smoothed; /* max |x/s| before A */
    double max_abs_out;      /* max |(x/s)·A| */
} rb_ruq_fit_info;

/* Fits the whole site transform (§5.3 steps 1–4, smoothing first) on the site's inputs X[rows][n]
 * (double, overwritten with (X/s)·A) and the weight column maxima wmax [n]. Draws from rng (R_0,
 * then R_1, then the global target). *out: a checked site (free with rb_ruq_site_free). Errors:
 * RB_EINVAL (bad options, non-finite inputs), RB_ENOMEM. */
int rb_ruq_fit_site(double *X, size_t rows, int n, const double *wmax, const rb_ruq_fit_opts *o, rb_rng *rng,
                    rb_ruq_site **out, rb_ruq_fit_info *info, rb_error *err);

#endif

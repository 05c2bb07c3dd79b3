/* rb_ruq_site: RUQuant's per-site online transform (layout and conventions in rb_ruq_site.h). */
#include "rotate/rb_ruq_site.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_blas.h"
#include "model/rb_forward.h"
#include "rotate/rb_orth.h"
#include "rotate/rb_rotset.h"

/* Largest chunk count handed to one gemm call (its M argument is an int). */
#define RUQ_MAX_GEMM_ROWS (1 << 30)

static const char *const site_names[RB_RUQ_NSITES] = {"attn_in", "o_in", "mlp_in", "down_in"};

const char *rb_ruq_site_name(int k) {
    RB_ASSERT(k >= 0 && k < RB_RUQ_NSITES);
    return site_names[k];
}

int rb_ruq_site_from_name(const char *name) {
    for (int k = 0; k < RB_RUQ_NSITES; k++)
        if (!strcmp(name, site_names[k])) return k;
    return -1;
}

static const int forward_sites[RB_RUQ_NSITES] = {RB_SITE_ATTN_IN, RB_SITE_O_IN, RB_SITE_MLP_IN, RB_SITE_DOWN_IN};

int rb_ruq_forward_site(int k) {
    RB_ASSERT(k >= 0 && k < RB_RUQ_NSITES);
    return forward_sites[k];
}

int rb_ruq_site_at(int site) {
    for (int k = 0; k < RB_RUQ_NSITES; k++)
        if (forward_sites[k] == site) return k;
    return -1;
}

/* ---- the site object ------------------------------------------------------------------- */

void rb_ruq_site_free(rb_ruq_site *s) {
    if (!s) return;
    free(s->scale);
    free(s->blk0);
    free(s->perm);
    free(s->blk1);
    free(s->hh);
    free(s->inv_scale_f);
    free(s->blk0_f);
    free(s->blk1_f);
    free(s->hh_f);
    free(s);
}

/* fp32 copies of the online path. */
static void refresh_f(rb_ruq_site *s) {
    size_t bb = (size_t)s->block * (size_t)s->block;
    for (int j = 0; j < s->n; j++) {
        s->inv_scale_f[j] = (float)(1.0 / s->scale[j]);
        s->hh_f[j] = (float)s->hh[j];
    }
    for (size_t q = 0; q < bb; q++) {
        s->blk0_f[q] = (float)s->blk0[q];
        s->blk1_f[q] = (float)s->blk1[q];
    }
}

int rb_ruq_site_alloc(int n, int block, rb_ruq_site **out, rb_error *err) {
    *out = NULL;
    if (n < 1 || block < 1 || block > n || n % block)
        return rb_error_set(err, RB_EINVAL, "RUQuant site: block %d does not divide width %d", block, n);
    rb_ruq_site *s = calloc(1, sizeof *s);
    size_t bb = (size_t)block * (size_t)block, nn = (size_t)n;
    if (s) {
        s->n = n;
        s->block = block;
        s->scale = malloc(nn * sizeof *s->scale);
        s->blk0 = malloc(bb * sizeof *s->blk0);
        s->perm = malloc(nn * sizeof *s->perm);
        s->blk1 = malloc(bb * sizeof *s->blk1);
        s->hh = calloc(nn, sizeof *s->hh);
        s->inv_scale_f = malloc(nn * sizeof *s->inv_scale_f);
        s->blk0_f = malloc(bb * sizeof *s->blk0_f);
        s->blk1_f = malloc(bb * sizeof *s->blk1_f);
        s->hh_f = malloc(nn * sizeof *s->hh_f);
    }
    if (!s || !s->scale || !s->blk0 || !s->perm || !s->blk1 || !s->hh || !s->inv_scale_f || !s->blk0_f || !s->blk1_f ||
        !s->hh_f) {
        rb_ruq_site_free(s);
        return rb_error_set(err, RB_ENOMEM, "RUQuant site of width %d, block %d: out of memory", n, block);
    }
    for (int j = 0; j < n; j++) {
        s->scale[j] = 1.0;
        s->perm[j] = j;
    }
    rb_orth_identity(s->blk0, block);
    rb_orth_identity(s->blk1, block);
    refresh_f(s);
    *out = s;
    return 0;
}

/* ‖QᵀQ − I‖_max of one block (NaN when it holds a non-finite entry: rb_orth_error's max skips NaN,
 * its Frobenius norm does not). */
static int block_err(const double *Q, int B, double *e, rb_error *err) {
    double mx, fro;
    int rc = rb_orth_error(Q, B, &mx, &fro, err);
    if (!rc) *e = isfinite(fro) ? mx : NAN;
    return rc;
}

/* Of I − 2vvᵀ: (I − 2vvᵀ)ᵀ(I − 2vvᵀ) − I = 4(‖v‖² − 1)·vvᵀ, whose largest entry is
 * 4·|‖v‖² − 1|·max_i v_i²; 0 for v = 0 (the identity). NaN for a non-finite v. */
static double hh_err(const double *v, int n) {
    double ss = 0, mx = 0;
    for (int i = 0; i < n; i++) {
        ss += v[i] * v[i];
        if (v[i] * v[i] > mx) mx = v[i] * v[i];
    }
    if (!isfinite(ss)) return NAN;
    return 4.0 * fabs(ss - 1.0) * mx * (ss > 0);
}

double rb_ruq_site_orth_err(const rb_ruq_site *s) {
    double e0, e1;
    if (block_err(s->blk0, s->block, &e0, NULL) || block_err(s->blk1, s->block, &e1, NULL)) return INFINITY;
    double eh = hh_err(s->hh, s->n);
    if (isnan(e0) || isnan(e1) || isnan(eh)) return NAN;
    return fmax(e0, fmax(e1, eh));
}

int rb_ruq_site_validate(const rb_ruq_site *s, double *orth_err, rb_error *err) {
    int n = s->n, B = s->block;
    if (n < 1 || B < 1 || B > n || n % B)
        return rb_error_set(err, RB_EINVAL, "block %d does not divide width %d", B, n);
    for (int j = 0; j < n; j++)
        if (!(isfinite(s->scale[j]) && s->scale[j] > 0))
            return rb_error_set(err, RB_EINVAL, "scale: entry %d = %g, expected a finite value > 0", j, s->scale[j]);
    int *seen = malloc(sizeof(int) * (size_t)n);
    if (!seen) return rb_error_set(err, RB_ENOMEM, "out of memory");
    for (int j = 0; j < n; j++) seen[j] = -1;
    int rc = 0;
    for (int j = 0; j < n && !rc; j++) {
        int32_t p = s->perm[j];
        if (p < 0 || p >= n)
            rc = rb_error_set(err, RB_EINVAL, "perm: entry %d = %d outside [0, %d)", j, (int)p, n);
        else if (seen[p] >= 0)
            rc = rb_error_set(err, RB_EINVAL, "perm: entry %d = %d repeats entry %d", j, (int)p, seen[p]);
        else
            seen[p] = j;
    }
    free(seen);
    if (rc) return rc;
    double e0, e1, eh = hh_err(s->hh, n);
    if ((rc = block_err(s->blk0, B, &e0, err)) || (rc = block_err(s->blk1, B, &e1, err))) return rc;
    const char *bad = !(e0 <= RB_ROT_ORTH_TOL) ? "blk0" : !(e1 <= RB_ROT_ORTH_TOL) ? "blk1" : NULL;
    if (bad)
        return rb_error_set(err, RB_EINVAL, "%s is not orthogonal: ‖QᵀQ − I‖_max = %.3g > %.0e", bad,
                            !(e0 <= RB_ROT_ORTH_TOL) ? e0 : e1, RB_ROT_ORTH_TOL);
    if (!(eh <= RB_ROT_ORTH_TOL))
        return rb_error_set(err, RB_EINVAL,
                            "householder: I − 2vvᵀ is not orthogonal (v neither zero nor unit): error %.3g > %.0e", eh,
                            RB_ROT_ORTH_TOL);
    if (orth_err) *orth_err = fmax(e0, fmax(e1, eh));
    return 0;
}

int rb_ruq_site_check(rb_ruq_site *s, rb_error *err) {
    int rc = rb_ruq_site_validate(s, &s->orth_err, err);
    if (!rc) refresh_f(s);
    return rc;
}

/* ---- applying a site ------------------------------------------------------------------- */

/* Is v the zero vector (the identity reflection)? */
static int is_zero(const double *v, int n) {
    for (int i = 0; i < n; i++)
        if (v[i] != 0) return 0;
    return 1;
}

/* X[rows][n] (double) ← the site's A after the smoothing step has been done; tmp: [rows][n]. */
static void apply_A_d(const rb_ruq_site *s, double *X, size_t rows, double *tmp) {
    int n = s->n, B = s->block;
    size_t nb = (size_t)(n / B), slab = RUQ_MAX_GEMM_ROWS / nb > 0 ? RUQ_MAX_GEMM_ROWS / nb : 1;
    for (size_t r0 = 0; r0 < rows; r0 += slab) { /* chunks of B channels, all blocks times blk0 */
        size_t nr = rows - r0 < slab ? rows - r0 : slab;
        rb_dgemm(0, 0, (int)(nr * nb), B, B, 1.0, X + r0 * n, B, s->blk0, B, 0.0, tmp + r0 * n, B);
    }
    for (size_t r = 0; r < rows; r++) {
        double *x = X + r * n;
        const double *t = tmp + r * n;
        for (int j = 0; j < n; j++) x[j] = t[s->perm[j]];
    }
    for (size_t r0 = 0; r0 < rows; r0 += slab) {
        size_t nr = rows - r0 < slab ? rows - r0 : slab;
        rb_dgemm(0, 0, (int)(nr * nb), B, B, 1.0, X + r0 * n, B, s->blk1, B, 0.0, tmp + r0 * n, B);
    }
    int has_hh = !is_zero(s->hh, n);
    for (size_t r = 0; r < rows; r++) {
        double *x = X + r * n;
        const double *t = tmp + r * n;
        double d = has_hh ? 2.0 * cblas_ddot(n, t, 1, s->hh, 1) : 0.0;
        for (int j = 0; j < n; j++) x[j] = t[j] - d * s->hh[j];
    }
}

void rb_ruq_apply_weight_d(const rb_ruq_site *s, double *W, size_t rows, double *tmp) {
    int n = s->n;
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < n; j++) W[r * n + j] *= s->scale[j];
    apply_A_d(s, W, rows, tmp);
}

void rb_ruq_apply_act_d(const rb_ruq_site *s, double *X, size_t rows, double *tmp) {
    int n = s->n;
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < n; j++) X[r * n + j] /= s->scale[j];
    apply_A_d(s, X, rows, tmp);
}

/* X ← (X/s)·B·H (or without /s with skip_scale), B = blockdiag(blk0)·P·blockdiag(blk1), H the site's
 * reflection when with_hh (else stops before it). */
static void act_forward(const rb_ruq_site *s, float *X, size_t rows, float *tmp, int skip_scale, int with_hh) {
    int n = s->n, B = s->block;
    size_t nb = (size_t)(n / B), slab = RUQ_MAX_GEMM_ROWS / nb > 0 ? RUQ_MAX_GEMM_ROWS / nb : 1;
    for (size_t r = 0; r < rows && !skip_scale; r++) {
        float *x = X + r * n;
        for (int j = 0; j < n; j++) x[j] *= s->inv_scale_f[j];
    }
    for (size_t r0 = 0; r0 < rows; r0 += slab) {
        size_t nr = rows - r0 < slab ? rows - r0 : slab;
        rb_sgemm(0, 0, (int)(nr * nb), B, B, 1.0f, X + r0 * n, B, s->blk0_f, B, 0.0f, tmp + r0 * n, B);
    }
    for (size_t r = 0; r < rows; r++) {
        float *x = X + r * n;
        const float *t = tmp + r * n;
        for (int j = 0; j < n; j++) x[j] = t[s->perm[j]];
    }
    for (size_t r0 = 0; r0 < rows; r0 += slab) {
        size_t nr = rows - r0 < slab ? rows - r0 : slab;
        rb_sgemm(0, 0, (int)(nr * nb), B, B, 1.0f, X + r0 * n, B, s->blk1_f, B, 0.0f, tmp + r0 * n, B);
    }
    int has_hh = with_hh && !is_zero(s->hh, n);
    for (size_t r = 0; r < rows; r++) {
        float *x = X + r * n;
        const float *t = tmp + r * n;
        float d = has_hh ? 2.0f * cblas_sdot(n, t, 1, s->hh_f, 1) : 0.0f;
        for (int j = 0; j < n; j++) x[j] = t[j] - d * s->hh_f[j];
    }
}

void rb_ruq_apply_act_f(const rb_ruq_site *s, float *X, size_t rows, float *tmp, int skip_scale) {
    act_forward(s, X, rows, tmp, skip_scale, 1);
}

void rb_ruq_apply_act_pre_f(const rb_ruq_site *s, float *X, size_t rows, float *tmp, int skip_scale) {
    act_forward(s, X, rows, tmp, skip_scale, 0);
}

/* X ← (X·Aᵀ)·diag(s^pow) for pow = +1 (the inverse), −1 (the transpose of x ↦ (x/s)·A: its backward)
 * or 0 (the transpose of x ↦ x·A); without the reflection (A replaced by B) unless with_hh. */
static void act_transposed(const rb_ruq_site *s, float *X, size_t rows, float *tmp, int pow, int with_hh) {
    int n = s->n, B = s->block;
    size_t nb = (size_t)(n / B), slab = RUQ_MAX_GEMM_ROWS / nb > 0 ? RUQ_MAX_GEMM_ROWS / nb : 1;
    int has_hh = with_hh && !is_zero(s->hh, n);
    for (size_t r = 0; r < rows && has_hh; r++) { /* the reflection is its own inverse */
        float *x = X + r * n;
        float d = 2.0f * cblas_sdot(n, x, 1, s->hh_f, 1);
        for (int j = 0; j < n; j++) x[j] -= d * s->hh_f[j];
    }
    for (size_t r0 = 0; r0 < rows; r0 += slab) { /* ·blockdiag(blk1)ᵀ */
        size_t nr = rows - r0 < slab ? rows - r0 : slab;
        rb_sgemm(0, 1, (int)(nr * nb), B, B, 1.0f, X + r0 * n, B, s->blk1_f, B, 0.0f, tmp + r0 * n, B);
    }
    for (size_t r = 0; r < rows; r++) { /* scatter back: x'_{perm[j]} = t_j */
        float *x = X + r * n;
        const float *t = tmp + r * n;
        for (int j = 0; j < n; j++) x[s->perm[j]] = t[j];
    }
    for (size_t r0 = 0; r0 < rows; r0 += slab) { /* ·blockdiag(blk0)ᵀ */
        size_t nr = rows - r0 < slab ? rows - r0 : slab;
        rb_sgemm(0, 1, (int)(nr * nb), B, B, 1.0f, X + r0 * n, B, s->blk0_f, B, 0.0f, tmp + r0 * n, B);
    }
    for (size_t r = 0; r < rows; r++) {
        float *x = X + r * n;
        const float *t = tmp + r * n;
        if (pow > 0)
            for (int j = 0; j < n; j++) x[j] = t[j] / s->inv_scale_f[j];
        else if (pow < 0)
            for (int j = 0; j < n; j++) x[j] = t[j] * s->inv_scale_f[j];
        else
            memcpy(x, t, sizeof(float) * n);
    }
}

void rb_ruq_unapply_act_f(const rb_ruq_site *s, float *X, size_t rows, float *tmp) {
    act_transposed(s, X, rows, tmp, 1, 1);
}

void rb_ruq_apply_act_t_f(const rb_ruq_site *s, float *X, size_t rows, float *tmp, int skip_scale) {
    act_transposed(s, X, rows, tmp, skip_scale ? 0 : -1, 1);
}

void rb_ruq_apply_act_pre_t_f(const rb_ruq_site *s, float *X, size_t rows, float *tmp, int skip_scale) {
    act_transposed(s, X, rows, tmp, skip_scale ? 0 : -1, 0);
}


/* rb_ruquant: RUQuant stage-1 site transform and its construction (layout and conventions in
 * rb_ruquant.h; the algorithm follows RUQuant-code/RUQuant:quantize/quantizer.py, METHODS §5.3). */
#include "rotate/rb_ruquant.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_blas.h"
#include "rotate/rb_orth.h"
#include "rotate/rb_rotset.h"

/* RUQuant clamps of the smoothing statistics and scales (quantize/const.py CLIPMIN). */
#define RUQ_CLIPMIN 1e-5
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

static void identity(double *M, int B) {
    memset(M, 0, sizeof(double) * (size_t)B * (size_t)B);
    for (int i = 0; i < B; i++) M[(size_t)i * B + i] = 1.0;
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
    identity(s->blk0, block);
    identity(s->blk1, block);
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

void rb_ruq_apply_act_f(const rb_ruq_site *s, float *X, size_t rows, float *tmp) {
    int n = s->n, B = s->block;
    size_t nb = (size_t)(n / B), slab = RUQ_MAX_GEMM_ROWS / nb > 0 ? RUQ_MAX_GEMM_ROWS / nb : 1;
    for (size_t r = 0; r < rows; r++) {
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
    int has_hh = !is_zero(s->hh, n);
    for (size_t r = 0; r < rows; r++) {
        float *x = X + r * n;
        const float *t = tmp + r * n;
        float d = has_hh ? 2.0f * cblas_sdot(n, t, 1, s->hh_f, 1) : 0.0f;
        for (int j = 0; j < n; j++) x[j] = t[j] - d * s->hh_f[j];
    }
}

/* ---- stage-1 building blocks ----------------------------------------------------------- */

int rb_ruq_block_for(int width, int block) {
    RB_ASSERT(width >= 1 && block >= 1);
    for (int b = block < width ? block : width; b > 1; b--)
        if (width % b == 0) return b;
    return 1;
}

void rb_ruq_smooth_scales(const double *xmax, const double *wmax, int n, double alpha, double *s) {
    for (int j = 0; j < n; j++) {
        double a = fmax(xmax[j], RUQ_CLIPMIN), w = fmax(wmax[j], RUQ_CLIPMIN);
        s[j] = fmax(pow(a, alpha) / pow(w, 1.0 - alpha), RUQ_CLIPMIN);
    }
}

typedef struct chan {
    double v;
    int i;
} chan;

/* Descending value, ascending index on ties: Python's stable sort(reverse=True) of channels listed
 * in index order. */
static int chan_desc(const void *a, const void *b) {
    const chan *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* perm from chmax; c: [n] and blk: [n] scratch, cnt: [n/B] scratch. */
static void zigzag_into(const double *chmax, int n, int B, int32_t *perm, chan *c, chan *blk, int *cnt) {
    int nb = n / B;
    for (int j = 0; j < n; j++) c[j] = (chan){chmax[j], j};
    qsort(c, (size_t)n, sizeof *c, chan_desc);
    memset(cnt, 0, sizeof(int) * (size_t)nb);
    int cur = 0, up = 1;
    for (int k = 0; k < n; k++) { /* bounce: 0,1,…,nb−1,nb−1,…,0,0,1,… (permutation_zigzag) */
        RB_ASSERT(cnt[cur] < B);
        blk[(size_t)cur * B + cnt[cur]++] = c[k];
        if (up && ++cur == nb) cur = nb - 1, up = 0;
        else if (!up && --cur < 0) cur = 0, up = 1;
    }
    for (int b = 0; b < nb; b++) {
        RB_ASSERT(cnt[b] == B);
        qsort(blk + (size_t)b * B, (size_t)B, sizeof *blk, chan_desc);
        for (int k = 0; k < B; k++) perm[(size_t)b * B + k] = blk[(size_t)b * B + k].i;
    }
}

int rb_ruq_zigzag(const double *chmax, int n, int B, int32_t *perm, rb_error *err) {
    RB_ASSERT(B >= 1 && n >= B && n % B == 0);
    chan *c = malloc(sizeof *c * 2 * (size_t)n);
    int *cnt = malloc(sizeof *cnt * (size_t)(n / B));
    int rc = c && cnt ? 0 : rb_error_set(err, RB_ENOMEM, "zig-zag permutation of %d channels: out of memory", n);
    if (!rc) zigzag_into(chmax, n, B, perm, c, c + n, cnt);
    free(c);
    free(cnt);
    return rc;
}

/* Row of Y[N][B] holding the largest |entry|, first row on ties. */
static size_t argmax_row(const double *Y, size_t N, int B) {
    size_t best = 0;
    double m = -1;
    for (size_t r = 0; r < N; r++)
        for (int j = 0; j < B; j++)
            if (fabs(Y[r * B + j]) > m) m = fabs(Y[r * B + j]), best = r;
    return best;
}

/* Y[N][B] ← Y·(I − 2vvᵀ); returns the argmax row of the result (fused: one pass). */
static size_t house_rows(double *Y, size_t N, int B, const double *v) {
    size_t best = 0;
    double m = -1;
    for (size_t r = 0; r < N; r++) {
        double *y = Y + r * B, d = 0;
        for (int j = 0; j < B; j++) d += y[j] * v[j];
        d *= 2.0;
        for (int j = 0; j < B; j++) {
            y[j] -= d * v[j];
            if (fabs(y[j]) > m) m = fabs(y[j]), best = r;
        }
    }
    return best;
}

/* Every row of Y[N][B]: y_i ← y_{pi[i]} (row: [B] scratch). Leaves the argmax row unchanged. */
static void perm_rows(double *Y, size_t N, int B, const int *pi, double *row) {
    for (size_t r = 0; r < N; r++) {
        double *y = Y + r * B;
        memcpy(row, y, sizeof(double) * (size_t)B);
        for (int i = 0; i < B; i++) y[i] = row[pi[i]];
    }
}

/* Pair p of every row: (y_2p, y_2p+1) ← (c_p·y_2p − s_p·y_2p+1, s_p·y_2p + c_p·y_2p+1); returns the
 * argmax row of the result. */
static size_t givens_rows(double *Y, size_t N, int B, const double *c, const double *s) {
    size_t best = 0;
    double m = -1;
    for (size_t r = 0; r < N; r++) {
        double *y = Y + r * B;
        for (int p = 0; p < B / 2; p++) {
            double a = y[2 * p], b = y[2 * p + 1];
            y[2 * p] = c[p] * a - s[p] * b;
            y[2 * p + 1] = s[p] * a + c[p] * b;
        }
        for (int j = 0; j < B; j++)
            if (fabs(y[j]) > m) m = fabs(y[j]), best = r;
    }
    return best;
}

static double norm2(const double *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += v[i] * v[i];
    return sqrt(s);
}

int rb_ruq_get_R(double *Y, size_t N, int B, int K, int lambda, int code_givens, rb_rng *rng, double *M,
                 int *applied, rb_error *err) {
    RB_ASSERT(N >= 1 && B >= 1 && K >= 0 && lambda >= 0);
    double *w = malloc(sizeof(double) * 6 * (size_t)B);
    int *pi = malloc(sizeof(int) * (size_t)B);
    if (!w || !pi) {
        free(w);
        free(pi);
        return rb_error_set(err, RB_ENOMEM, "get_R: out of memory");
    }
    double *y = w, *t = y + B, *v = t + B, *c = v + B, *s = c + B, *row = s + B;
    identity(M, B);
    int done = 0;
    size_t arg = argmax_row(Y, N, B);
    for (int k = 0; k < K; k++) {
        memcpy(y, Y + arg * B, sizeof(double) * (size_t)B);
        for (int i = 0; i < B; i++) t[i] = rb_rng_uniform(rng);
        double ny = norm2(y, B), nt = norm2(t, B), w2 = 0;
        for (int i = 0; i < B; i++) {
            double d = y[i] - (nt > 0 ? t[i] * ny / nt : 0);
            w2 += d * d;
        }
        /* As the code: a step whose reflection would be degenerate is skipped with its rounds. */
        if (!(w2 >= RB_RUQ_SKIP_NORM2) || !rb_householder_make(y, t, B, v)) continue;
        arg = house_rows(Y, N, B, v);
        house_rows(M, (size_t)B, B, v);
        done++;
        for (int j = 0; j < lambda; j++) {
            for (int i = 0; i < B; i++) pi[i] = i;
            rb_rng_shuffle(rng, pi, (size_t)B);
            perm_rows(Y, N, B, pi, row);
            perm_rows(M, (size_t)B, B, pi, row);
            const double *yr = Y + arg * B; /* a permutation within rows keeps the argmax row */
            for (int i = 0; i < B; i++) t[i] = rb_rng_uniform(rng);
            for (int p = 0; p < B / 2; p++) {
                rb_givens_make(yr[2 * p], yr[2 * p + 1], t[2 * p], t[2 * p + 1], &c[p], &s[p]);
                if (code_givens) s[p] = -s[p]; /* [[c, s], [−s, c]]: rotation by −θ */
            }
            arg = givens_rows(Y, N, B, c, s);
            givens_rows(M, (size_t)B, B, c, s);
        }
    }
    free(w);
    free(pi);
    if (applied) *applied = done;
    return 0;
}

int rb_ruq_global_householder(const double *X, size_t rows, int n, rb_rng *rng, double *v) {
    RB_ASSERT(rows >= 1 && n >= 1);
    const double *x = X + argmax_row(X, rows, n) * (size_t)n;
    for (int i = 0; i < n; i++) v[i] = rb_rng_uniform(rng);
    double nx = norm2(x, n), nt = norm2(v, n), w2 = 0;
    if (nx == 0 || nt == 0) {
        memset(v, 0, sizeof(double) * (size_t)n);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        v[i] = x[i] - v[i] * (nx / nt);
        w2 += v[i] * v[i];
    }
    if (!(w2 >= RB_RUQ_SKIP_NORM2)) {
        memset(v, 0, sizeof(double) * (size_t)n);
        return 0;
    }
    double inv = 1.0 / sqrt(w2);
    for (int i = 0; i < n; i++) v[i] *= inv;
    return 1;
}

/* ---- the whole site -------------------------------------------------------------------- */

int rb_ruq_fit_site(double *X, size_t rows, int n, const double *wmax, const rb_ruq_fit_opts *o, rb_rng *rng,
                    rb_ruq_site **out, rb_ruq_fit_info *info, rb_error *err) {
    *out = NULL;
    if (rows < 1 || n < 1 || o->block < 1 || o->block > n || n % o->block || o->steps < 0 || o->perms < 0 ||
        !(o->alpha >= 0 && o->alpha <= 1))
        return rb_error_set(err, RB_EINVAL, "RUQuant fit: bad arguments (rows %zu, width %d, block %d, steps %d, "
                            "perms %d, alpha %g)", rows, n, o->block, o->steps, o->perms, o->alpha);
    for (size_t q = 0; q < rows * (size_t)n; q++)
        if (!isfinite(X[q]))
            return rb_error_set(err, RB_EINVAL, "RUQuant fit: site input row %zu, channel %zu is %g", q / n, q % n, X[q]);
    for (int j = 0; j < n; j++)
        if (!(isfinite(wmax[j]) && wmax[j] >= 0))
            return rb_error_set(err, RB_EINVAL, "RUQuant fit: weight column %d max |W| is %g", j, wmax[j]);
    rb_ruq_site *s;
    int rc = rb_ruq_site_alloc(n, o->block, &s, err);
    if (rc) return rc;
    int B = o->block, nb = n / B;
    double *col = malloc(sizeof(double) * (size_t)n * 2);
    chan *ch = malloc(sizeof(chan) * 2 * (size_t)n);
    int *cnt = malloc(sizeof(int) * (size_t)nb);
    rb_ruq_fit_info fi = {0};
    if (!col || !ch || !cnt) {
        rc = rb_error_set(err, RB_ENOMEM, "RUQuant fit: out of memory");
        goto out;
    }
    double *row = col + n;
    /* 1. smoothing: per-channel max |x| of the inputs as given */
    for (int j = 0; j < n; j++) col[j] = 0;
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < n; j++) col[j] = fmax(col[j], fabs(X[r * n + j]));
    rb_ruq_smooth_scales(col, wmax, n, o->alpha, s->scale);
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < n; j++) {
            X[r * n + j] /= s->scale[j];
            fi.max_abs_smoothed = fmax(fi.max_abs_smoothed, fabs(X[r * n + j]));
        }
    /* 2. R_0 on all B-chunks of all tokens; X becomes X·blockdiag(R_0ᵀ) */
    if ((rc = rb_ruq_get_R(X, rows * (size_t)nb, B, o->steps, o->perms, o->code_givens, rng, s->blk0, &fi.applied0,
                           err)))
        goto out;
    /* 3. zig-zag permutation on the transformed channels' max |x| */
    for (int j = 0; j < n; j++) col[j] = 0;
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < n; j++) col[j] = fmax(col[j], fabs(X[r * n + j]));
    zigzag_into(col, n, B, s->perm, ch, ch + n, cnt);
    for (size_t r = 0; r < rows; r++) {
        memcpy(row, X + r * n, sizeof(double) * (size_t)n);
        for (int j = 0; j < n; j++) X[r * n + j] = row[s->perm[j]];
    }
    /* 4. R_1 */
    if ((rc = rb_ruq_get_R(X, rows * (size_t)nb, B, o->steps, o->perms, o->code_givens, rng, s->blk1, &fi.applied1,
                           err)))
        goto out;
    /* 5. global Householder toward a uniform target from the row with the largest |entry| */
    fi.global = rb_ruq_global_householder(X, rows, n, rng, s->hh);
    for (size_t r = 0; r < rows; r++) {
        double *x = X + r * n, d = 0;
        for (int j = 0; j < n; j++) d += x[j] * s->hh[j];
        for (int j = 0; j < n; j++) {
            x[j] -= 2.0 * d * s->hh[j];
            fi.max_abs_out = fmax(fi.max_abs_out, fabs(x[j]));
        }
    }
    rc = rb_ruq_site_check(s, err);
out:
    free(col);
    free(ch);
    free(cnt);
    if (rc) {
        rb_ruq_site_free(s);
        return rc;
    }
    if (info) *info = fi;
    *out = s;
    return 0;
}

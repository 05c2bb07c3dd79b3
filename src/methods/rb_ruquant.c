/* rb_ruquant: RUQuant stage 1 building blocks (METHODS §5.3; conventions in rb_ruquant.h). */
#include "methods/rb_ruquant.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_blas.h"
#include "rotate/rb_orth.h"
#include "rotate/rb_rotset.h"

/* RUQuant clamps of the smoothing statistics and scales (quantize/const.py CLIPMIN). */
#define RUQ_CLIPMIN 1e-5

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
    rb_orth_identity(M, B);
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
            return rb_error_set(err, RB_ENUMERIC, "RUQuant fit: site input row %zu, channel %zu is %g", q / n, q % n, X[q]);
    for (int j = 0; j < n; j++)
        if (!(isfinite(wmax[j]) && wmax[j] >= 0))
            return rb_error_set(err, RB_ENUMERIC, "RUQuant fit: weight column %d max |W| is %g", j, wmax[j]);
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

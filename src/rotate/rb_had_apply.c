/* The Hadamard transform object: x ↦ x·R, R = diag(s)·H_nᵀ/√n, H_n = H_m ⊗ S_{2^k} (see header). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "rb_fwht.h"
#include "rb_hadamard.h"

/* Rows per block of the dense m×m step: the block is gathered into an m × (B·2^k) matrix so one
 * GEMM has N = B·2^k columns. About 2^17 elements per buffer (512 KiB fp32) keeps the two
 * buffers in L2 while N stays large enough for BLAS to run near its peak. */
#define HAD_BLOCK_ELEMS (1L << 17)

int rb_had_init_dir(rb_had *h, long n, const int8_t *signs, const char *data_dir, rb_error *err) {
    memset(h, 0, sizeof *h);
    if (n < 1) return rb_error_set(err, RB_EINVAL, "Hadamard order %ld: must be ≥ 1", n);
    if (signs)
        for (long i = 0; i < n; i++)
            if (signs[i] != 1 && signs[i] != -1)
                return rb_error_set(err, RB_EINVAL, "Hadamard signs: entry %ld is %d, expected ±1", i, signs[i]);
    rb_had_plan pl;
    int rc = rb_hadamard_factor(n, data_dir, &pl, &h->H, h->source, sizeof h->source, err);
    if (rc) return rc;
    h->n = n;
    h->m = pl.m;
    h->k = pl.k;
    h->kind = pl.kind;
    size_t mm = (size_t)h->m * (size_t)h->m;
    if (h->H) {
        h->Hf = malloc(sizeof *h->Hf * mm);
        h->Hd = malloc(sizeof *h->Hd * mm);
        if (!h->Hf || !h->Hd) goto oom;
        for (size_t t = 0; t < mm; t++) h->Hf[t] = h->Hd[t] = h->H[t];
    }
    if (signs) {
        h->signs = malloc((size_t)n);
        h->sf = malloc(sizeof *h->sf * (size_t)n);
        h->sd = malloc(sizeof *h->sd * (size_t)n);
        h->sfn = malloc(sizeof *h->sfn * (size_t)n);
        h->sdn = malloc(sizeof *h->sdn * (size_t)n);
        if (!h->signs || !h->sf || !h->sd || !h->sfn || !h->sdn) goto oom;
        for (long i = 0; i < n; i++) {
            h->sf[i] = h->sd[i] = h->signs[i] = signs[i];
            h->sdn[i] = signs[i] * (1.0 / sqrt((double)n)); /* the same value rb_had_dense_rows uses */
            h->sfn[i] = (float)h->sdn[i];
        }
    }
    return 0;
oom:
    rb_had_free(h);
    return rb_error_set(err, RB_ENOMEM, "Hadamard %ld: out of memory", n);
}

int rb_had_init(rb_had *h, long n, const int8_t *signs, rb_error *err) {
    return rb_had_init_dir(h, n, signs, NULL, err);
}

int rb_had_init_random(rb_had *h, long n, rb_rng *rng, rb_error *err) {
    if (n < 1) return rb_error_set(err, RB_EINVAL, "Hadamard order %ld: must be ≥ 1", n);
    int8_t *s = malloc((size_t)n);
    if (!s) return rb_error_set(err, RB_ENOMEM, "Hadamard %ld: out of memory", n);
    for (long i = 0; i < n; i++) s[i] = rb_rng_below(rng, 2) ? 1 : -1;
    int rc = rb_had_init(h, n, s, err);
    free(s);
    return rc;
}

void rb_had_free(rb_had *h) {
    free(h->H);
    free(h->Hf);
    free(h->Hd);
    free(h->signs);
    free(h->sf);
    free(h->sd);
    free(h->sfn);
    free(h->sdn);
    memset(h, 0, sizeof *h);
}

/* Element-type operations, so one driver serves fp32 and fp64. */
typedef struct had_ops {
    size_t esz;
    void (*signs)(const rb_had *h, void *x);                   /* x[0..n) ⊙= s */
    void (*signs_scaled)(const rb_had *h, void *x);            /* x[0..n) ⊙= s/√n */
    void (*fwht)(void *x, size_t rows, int len, double scale); /* rb_fwht_rows[_d] */
    /* W = scale · op(H_m) · Z, op = transpose when trans; Z, W: [m][N] */
    void (*gemm)(const rb_had *h, int trans, size_t N, double scale, const void *Z, void *W);
} had_ops;

static void signs_f(const rb_had *h, void *x) {
    float *v = x;
    for (long j = 0; j < h->n; j++) v[j] *= h->sf[j];
}
static void signs_d(const rb_had *h, void *x) {
    double *v = x;
    for (long j = 0; j < h->n; j++) v[j] *= h->sd[j];
}
static void signs_scaled_f(const rb_had *h, void *x) {
    float *v = x;
    for (long j = 0; j < h->n; j++) v[j] *= h->sfn[j];
}
static void signs_scaled_d(const rb_had *h, void *x) {
    double *v = x;
    for (long j = 0; j < h->n; j++) v[j] *= h->sdn[j];
}
static void fwht_f(void *x, size_t rows, int len, double scale) { rb_fwht_rows(x, rows, len, (float)scale); }
static void fwht_d(void *x, size_t rows, int len, double scale) { rb_fwht_rows_d(x, rows, len, scale); }
static void gemm_f(const rb_had *h, int trans, size_t N, double scale, const void *Z, void *W) {
    int m = (int)h->m;
    rb_sgemm(trans, 0, m, (int)N, m, (float)scale, h->Hf, m, Z, (int)N, 0.0f, W, (int)N);
}
static void gemm_d(const rb_had *h, int trans, size_t N, double scale, const void *Z, void *W) {
    int m = (int)h->m;
    rb_dgemm(trans, 0, m, (int)N, m, scale, h->Hd, m, Z,
                (int)N, 0.0, W, (int)N);
}
static const had_ops ops_f = {sizeof(float), signs_f, signs_scaled_f, fwht_f, gemm_f};
static const had_ops ops_d = {sizeof(double), signs_d, signs_scaled_d, fwht_d, gemm_d};

/* Forward (x·R): signs, FWHT of the length-2^k rows, the dense factor by one GEMM per block of rows.
 * Transpose (x·Rᵀ): the same with H_mᵀ and the signs last. The 1/√n scale rides on the FWHT when
 * m = 1 and on the GEMM's alpha otherwise. */
static int apply(const rb_had *h, void *xv, size_t rows, int trans, const had_ops *o) {
    const long n = h->n, m = h->m, c = 1L << h->k;
    const double scale = 1.0 / sqrt((double)n);
    const size_t rowb = (size_t)n * o->esz, spanb = (size_t)c * o->esz;
    const int sg = h->signs != NULL;
    char *x = xv;
    if (m == 1) { /* row by row while it is in L1; with signs, 1/√n rides on them (one pass fewer) */
        for (size_t r = 0; r < rows; r++) {
            char *xr = x + r * rowb;
            if (sg && !trans) o->signs_scaled(h, xr);
            o->fwht(xr, 1, (int)c, sg ? 1.0 : scale);
            if (sg && trans) o->signs_scaled(h, xr);
        }
        return 0;
    }
    size_t B = (size_t)(HAD_BLOCK_ELEMS / n);
    if (B < 1) B = 1;
    if (B > rows) B = rows;
    char *Z = rb_alloc(B * rowb), *W = rb_alloc(B * rowb);
    if (!Z || !W) {
        rb_free(Z);
        rb_free(W);
        return RB_ENOMEM;
    }
    for (size_t r0 = 0; r0 < rows; r0 += B) {
        const size_t nb = rows - r0 < B ? rows - r0 : B, ldzb = nb * spanb;
        char *xb = x + r0 * rowb;
        for (size_t r = 0; r < nb && sg && !trans; r++) o->signs(h, xb + r * rowb);
        o->fwht(xb, nb * (size_t)m, (int)c, 1.0);
        for (size_t r = 0; r < nb; r++) /* gather: Z[a][r·c + d] = x[r][a·c + d] */
            for (long a = 0; a < m; a++) memcpy(Z + a * ldzb + r * spanb, xb + r * rowb + a * spanb, spanb);
        o->gemm(h, trans, nb * (size_t)c, scale, Z, W);
        for (size_t r = 0; r < nb; r++) /* scatter back */
            for (long a = 0; a < m; a++) memcpy(xb + r * rowb + a * spanb, W + a * ldzb + r * spanb, spanb);
        for (size_t r = 0; r < nb && sg && trans; r++) o->signs(h, xb + r * rowb);
    }
    rb_free(Z);
    rb_free(W);
    return 0;
}

int rb_had_apply_rows(const rb_had *h, float *x, size_t rows) { return apply(h, x, rows, 0, &ops_f); }
int rb_had_apply_rows_t(const rb_had *h, float *x, size_t rows) { return apply(h, x, rows, 1, &ops_f); }
int rb_had_apply_rows_d(const rb_had *h, double *x, size_t rows) { return apply(h, x, rows, 0, &ops_d); }
int rb_had_apply_rows_t_d(const rb_had *h, double *x, size_t rows) { return apply(h, x, rows, 1, &ops_d); }

void rb_had_dense_rows(const rb_had *h, long r0, long nr, double *R) {
    RB_ASSERT(r0 >= 0 && nr >= 0 && r0 + nr <= h->n);
    const long n = h->n, m = h->m, c = 1L << h->k;
    const double scale = 1.0 / sqrt((double)n);
    for (long t = 0; t < nr; t++) {
        long i = r0 + t, ai = i / c, bi = i % c;
        double si = (h->signs ? h->signs[i] : 1) * scale;
        double *row = R + t * n;
        for (long aj = 0; aj < m; aj++) {
            double v = m > 1 ? si * h->H[aj * m + ai] : si;
            for (long bj = 0; bj < c; bj++)
                row[aj * c + bj] = (__builtin_popcountl((unsigned long)(bi & bj)) & 1) ? -v : v;
        }
    }
}

void rb_had_dense(const rb_had *h, double *R) { rb_had_dense_rows(h, 0, h->n, R); }

#include "rotate/rb_junction.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "rotate/rb_orth.h"
#include "rotate/rb_rotset.h"

const char *rb_junction_name(int k) {
    RB_ASSERT(k >= 0 && k < RB_JN_COUNT);
    return k == RB_JN_ATTN ? "attn" : "mlp";
}

void rb_junction_free(rb_junction *j) {
    if (!j) return;
    free(j->Q);
    free(j->M);
    free(j->Qf);
    free(j->Mf);
    free(j);
}

int rb_junction_alloc(int n, int r, rb_junction **out, rb_error *err) {
    *out = NULL;
    if (n < 1 || r < 0 || r > n) return rb_error_set(err, RB_EINVAL, "junction: rank %d for width %d", r, n);
    rb_junction *j = calloc(1, sizeof *j);
    size_t nr = (size_t)n * r, rr = (size_t)r * r;
    if (j && r > 0) {
        j->Q = calloc(nr, sizeof(double));
        j->M = calloc(rr, sizeof(double));
        j->Qf = calloc(nr, sizeof(float));
        j->Mf = calloc(rr, sizeof(float));
    }
    if (!j || (r > 0 && (!j->Q || !j->M || !j->Qf || !j->Mf))) {
        rb_junction_free(j);
        return rb_error_set(err, RB_ENOMEM, "junction: out of memory (width %d, rank %d)", n, r);
    }
    j->n = n, j->r = r;
    j->dev = j->approx_err = NAN;
    *out = j;
    return 0;
}

/* max |GᵀG − I| over an [n][c] G with orthonormal columns expected (NaN propagates, +∞ out of memory). */
static double cols_orth_err(const double *G, int n, int c) {
    if (c == 0) return 0;
    double *P = malloc(sizeof(double) * (size_t)c * c);
    if (!P) return INFINITY;
    rb_dgemm(1, 0, c, c, n, 1.0, G, c, G, c, 0.0, P, c);
    double e = 0;
    for (int a = 0; a < c; a++)
        for (int b = 0; b < c; b++) {
            double v = fabs(P[(size_t)a * c + b] - (a == b));
            if (!(v <= e)) e = v; /* NaN wins */
        }
    free(P);
    return e;
}

double rb_junction_orth_err(const rb_junction *j) {
    int r = j->r;
    if (r == 0) return 0;
    double *R = malloc(sizeof(double) * (size_t)r * r);
    if (!R) return INFINITY;
    for (size_t q = 0; q < (size_t)r * r; q++) R[q] = j->M[q];
    for (int a = 0; a < r; a++) R[(size_t)a * r + a] += 1.0;
    double eq = cols_orth_err(j->Q, j->n, r), er = cols_orth_err(R, r, r);
    free(R);
    return isnan(eq) || isnan(er) ? NAN : fmax(eq, er);
}

int rb_junction_check(rb_junction *j, rb_error *err) {
    double e = rb_junction_orth_err(j);
    if (isinf(e)) return rb_error_set(err, RB_ENOMEM, "junction: out of memory");
    if (!(e <= RB_ROT_ORTH_TOL))
        return rb_error_set(err, RB_EINVAL,
                            "junction (width %d, rank %d): Q not orthonormal or M + I not orthogonal: error %.3g > %.0e",
                            j->n, j->r, e, RB_ROT_ORTH_TOL);
    j->orth_err = e;
    for (size_t q = 0; q < (size_t)j->n * j->r; q++) j->Qf[q] = (float)j->Q[q];
    for (size_t q = 0; q < (size_t)j->r * j->r; q++) j->Mf[q] = (float)j->M[q];
    return 0;
}

void rb_junction_dense(const rb_junction *j, double *T) {
    int n = j->n, r = j->r;
    memset(T, 0, sizeof(double) * (size_t)n * n);
    for (int i = 0; i < n; i++) T[(size_t)i * n + i] = 1.0;
    if (r == 0) return;
    double *QM = malloc(sizeof(double) * (size_t)n * r);
    RB_ASSERT(QM); /* tests and diagnostics only, n·r doubles */
    rb_dgemm(0, 0, n, r, r, 1.0, j->Q, r, j->M, r, 0.0, QM, r);
    rb_dgemm(0, 1, n, n, r, 1.0, QM, r, j->Q, r, 1.0, T, n);
    free(QM);
}

int rb_junction_fit(const double *T, int n, int r, rb_junction **out, rb_error *err) {
    int rc = rb_junction_alloc(n, r, out, err);
    if (rc) return rc;
    rb_junction *j = *out;
    size_t nn = (size_t)n * n;
    double *S = malloc(sizeof(double) * nn), *Th = malloc(sizeof(double) * nn);
    double *w = malloc(sizeof(double) * (size_t)n), *TQ = malloc(sizeof(double) * (size_t)n * (r ? r : 1));
    double *C = malloc(sizeof(double) * (size_t)(r ? r : 1) * (r ? r : 1));
    lapack_int *isuppz = malloc(sizeof(lapack_int) * 2 * (size_t)n);
    if (!S || !Th || !w || !TQ || !C || !isuppz) {
        rc = rb_error_set(err, RB_ENOMEM, "junction: out of memory fitting width %d", n);
        goto out;
    }
    double dev = 0;
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) {
            double d = T[(size_t)a * n + b] - (a == b);
            dev += d * d;
            /* ΔT·ΔTᵀ = 2I − T − Tᵀ, symmetric by construction */
            S[(size_t)a * n + b] = 2.0 * (a == b) - T[(size_t)a * n + b] - T[(size_t)b * n + a];
        }
    j->dev = sqrt(dev);
    if (r > 0) {
        lapack_int m;
        lapack_int info = LAPACKE_dsyevr(LAPACK_ROW_MAJOR, 'V', 'I', 'U', n, S, n, 0.0, 0.0, n - r + 1, n, 0.0, &m, w,
                                         j->Q, r, isuppz);
        if (info || m != r) {
            rc = rb_error_set(err, RB_EINVAL, "junction: eigensolver failed (dsyevr info %d, %d of %d eigenpairs)",
                              (int)info, (int)m, r);
            goto out;
        }
        /* R̂ = polar(Qᵀ·T·Q), M = R̂ − I */
        rb_dgemm(0, 0, n, r, n, 1.0, T, n, j->Q, r, 0.0, TQ, r);
        rb_dgemm(1, 0, r, r, n, 1.0, j->Q, r, TQ, r, 0.0, C, r);
        if ((rc = rb_polar(C, r, j->M, err))) goto out;
        for (int a = 0; a < r; a++) j->M[(size_t)a * r + a] -= 1.0;
    }
    rb_junction_dense(j, Th);
    double ae = 0;
    for (size_t q = 0; q < nn; q++) ae += (T[q] - Th[q]) * (T[q] - Th[q]);
    j->approx_err = sqrt(ae);
    rc = rb_junction_check(j, err);
out:
    free(S);
    free(Th);
    free(w);
    free(TQ);
    free(C);
    free(isuppz);
    if (rc) {
        rb_junction_free(*out);
        *out = NULL;
    }
    return rc;
}

void rb_junction_apply_f(const rb_junction *j, float *X, size_t rows, float *tmp, int transpose) {
    int n = j->n, r = j->r;
    if (r == 0 || rows == 0) return;
    float *y = tmp, *z = tmp + rows * (size_t)r;
    rb_sgemm(0, 0, (int)rows, r, n, 1.0f, X, n, j->Qf, r, 0.0f, y, r);              /* y = X·Q */
    rb_sgemm(0, transpose, (int)rows, r, r, 1.0f, y, r, j->Mf, r, 0.0f, z, r);      /* z = y·M (Mᵀ) */
    rb_sgemm(0, 1, (int)rows, n, r, 1.0f, z, r, j->Qf, r, 1.0f, X, n);              /* X += z·Qᵀ */
}

/* ---- hooks ------------------------------------------------------------------------------- */

int rb_junctions_init(rb_junctions *j, int n_layers, int n, rb_error *err) {
    memset(j, 0, sizeof *j);
    j->n_layers = n_layers, j->n = n;
    size_t cnt = (size_t)n_layers * RB_JN_COUNT;
    j->dense = calloc(cnt ? cnt : 1, sizeof *j->dense);
    j->lr = calloc(cnt ? cnt : 1, sizeof *j->lr);
    if (!j->dense || !j->lr) {
        rb_junctions_free(j);
        return rb_error_set(err, RB_ENOMEM, "junctions: out of memory");
    }
    return 0;
}

void rb_junctions_free(rb_junctions *j) {
    rb_free(j->lazy_T[0]);
    rb_free(j->lazy_T[1]);
    free(j->lazy_d);
    for (int i = 0; j->dense && i < j->n_layers * RB_JN_COUNT; i++) rb_free(j->dense[i]);
    free(j->dense);
    free(j->lr);
    rb_free(j->tmp);
    rb_free(j->prod);
    memset(j, 0, sizeof *j);
}

int rb_junctions_set_dense(rb_junctions *j, int l, int k, const double *T, rb_error *err) {
    RB_ASSERT(l >= 0 && l < j->n_layers && k >= 0 && k < RB_JN_COUNT);
    size_t nn = (size_t)j->n * j->n;
    float **slot = &j->dense[l * RB_JN_COUNT + k];
    if (!*slot && !(*slot = rb_alloc(nn * sizeof(float))))
        return rb_error_set(err, RB_ENOMEM, "junctions: out of memory for a dense %d×%d transform", j->n, j->n);
    for (size_t q = 0; q < nn; q++) (*slot)[q] = (float)T[q];
    return 0;
}

int rb_junctions_lazy_exact(rb_junctions *j, const struct rb_rotset *rs, rb_error *err) {
    RB_ASSERT(rs->ra && rs->dim == j->n && rs->n_layers == j->n_layers);
    size_t nn = (size_t)j->n * j->n;
    j->lazy_T[0] = rb_alloc(nn * sizeof(float));
    j->lazy_T[1] = rb_alloc(nn * sizeof(float));
    j->lazy_d = malloc(nn * sizeof(double));
    if (!j->lazy_T[0] || !j->lazy_T[1] || !j->lazy_d)
        return rb_error_set(err, RB_ENOMEM, "junctions: out of memory for the exact junctions of one layer");
    j->lazy_rs = rs;
    j->lazy_layer = -1;
    return 0;
}

/* The exact dense T of layer l (lazy mode), computed when the layer changes. */
static const float *lazy_at(rb_junctions *j, int l, int k) {
    if (j->lazy_layer != l) {
        size_t nn = (size_t)j->n * j->n;
        for (int q = 0; q < RB_JN_COUNT; q++) {
            rb_rotset_junction_exact(j->lazy_rs, l, q, j->lazy_d);
            for (size_t t = 0; t < nn; t++) j->lazy_T[q][t] = (float)j->lazy_d[t];
        }
        j->lazy_layer = l;
    }
    return j->lazy_T[k];
}

int rb_junctions_any(const rb_junctions *j) {
    if (j->lazy_rs) return 1;
    for (int i = 0; j->dense && i < j->n_layers * RB_JN_COUNT; i++)
        if (j->dense[i] || j->lr[i]) return 1;
    return 0;
}

/* Index of the hook's junction, scratch of rows·2n floats ready; -1 with *rc on failure. */
static int junction_at(rb_junctions *j, const rb_site_info *in, int *rc, rb_error *err) {
    *rc = 0;
    RB_ASSERT(in->site == RB_SITE_RES_ATTN || in->site == RB_SITE_RES_MLP);
    RB_ASSERT(in->layer >= 0 && in->layer < j->n_layers && in->cols == j->n);
    size_t need = (size_t)in->n_seq * in->seq_len * 2 * (size_t)j->n; /* dense: rows·n; low-rank: rows·2r */
    if (need > j->cap) {
        rb_free(j->tmp);
        j->cap = 0;
        if (!(j->tmp = rb_alloc(need * sizeof(float)))) {
            *rc = rb_error_set(err, RB_ENOMEM, "junction: out of memory for %zu floats of scratch", need);
            return -1;
        }
        j->cap = need;
    }
    return in->layer * RB_JN_COUNT + (in->site == RB_SITE_RES_ATTN ? RB_JN_ATTN : RB_JN_MLP);
}

int rb_hook_junction(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    rb_junctions *j = ctx;
    int rc, i = junction_at(j, in, &rc, err);
    if (i < 0) return rc;
    size_t rows = (size_t)in->n_seq * in->seq_len;
    int n = j->n;
    const float *D = j->lazy_rs ? lazy_at(j, in->layer, i % RB_JN_COUNT) : j->dense[i];
    if (D) {
        rb_sgemm(0, 0, (int)rows, n, n, 1.0f, x, n, D, n, 0.0f, j->tmp, n);
        memcpy(x, j->tmp, sizeof(float) * rows * n);
    } else if (j->lr[i]) {
        rb_junction_apply_f(j->lr[i], x, rows, j->tmp, 0);
    }
    return 0;
}

/* M[n][n] += op(A)ᵀ·B over rows (float sgemm into prod, accumulated in double). */
static int acc_add(rb_junctions *j, double *M, const float *A, const float *B, size_t rows, rb_error *err) {
    int n = j->n;
    if (!j->prod && !(j->prod = rb_alloc(sizeof(float) * (size_t)n * n)))
        return rb_error_set(err, RB_ENOMEM, "junction gradients: out of memory");
    rb_sgemm(1, 0, n, n, (int)rows, 1.0f, A, n, B, n, 0.0f, j->prod, n);
    for (size_t q = 0; q < (size_t)n * n; q++) M[q] += j->prod[q];
    return 0;
}

int rb_hook_junction_bwd(void *ctx, const rb_site_info *in, const float *x_in, float *dx, rb_error *err) {
    rb_junctions *j = ctx;
    int rc, i = junction_at(j, in, &rc, err);
    if (i < 0) return rc;
    size_t rows = (size_t)in->n_seq * in->seq_len;
    int n = j->n;
    double *ain = j->acc_in ? j->acc_in[i] : NULL, *aout = j->acc_out ? j->acc_out[i] : NULL;
    const float *D = j->lazy_rs ? lazy_at(j, in->layer, i % RB_JN_COUNT) : j->dense[i];
    if (D) {
        const float *T = D;
        if (aout) { /* s_out = s_in·T; M_out += s_outᵀ·ds_out */
            RB_ASSERT(x_in);
            rb_sgemm(0, 0, (int)rows, n, n, 1.0f, x_in, n, T, n, 0.0f, j->tmp, n);
            if ((rc = acc_add(j, aout, j->tmp, dx, rows, err))) return rc;
        }
        rb_sgemm(0, 1, (int)rows, n, n, 1.0f, dx, n, T, n, 0.0f, j->tmp, n); /* ds_in = ds_out·Tᵀ */
        memcpy(dx, j->tmp, sizeof(float) * rows * n);
        if (ain) { /* M_in += ds_inᵀ·s_in */
            RB_ASSERT(x_in);
            if ((rc = acc_add(j, ain, dx, x_in, rows, err))) return rc;
        }
    } else if (j->lr[i]) {
        RB_ASSERT(!ain && !aout); /* training runs with the exact dense junctions */
        rb_junction_apply_f(j->lr[i], dx, rows, j->tmp, 1);
    }
    return 0;
}

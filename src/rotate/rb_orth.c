#include "rb_orth.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_blas.h"
#include "rotate/rb_rotset.h"


void rb_orth_identity(double *M, int n) {
    memset(M, 0, sizeof(double) * (size_t)n * (size_t)n);
    for (int i = 0; i < n; i++) M[(size_t)i * n + i] = 1.0;
}

/* SpinQuant's epsilons (train_utils/optimizer.py): row-norm guard of unit() and the ‖W‖₁ guard
 * of the step cap. SpinQuant's unit() divides by ‖v‖ + 1e-8 in fp32, where for unit-norm rows the
 * 1e-8 is below half an ulp of 1 and vanishes; in double it would shrink every row by 1e-8 per
 * step and hold ‖PᵀP − I‖ at ~2e-8. So here the guard only protects against zero rows:
 * v / max(‖v‖, 1e-8) — the same result as the fp32 reference for any row of norm ≫ 1e-8. */
#define CAYLEY_ROW_EPS 1e-8
#define CAYLEY_NORM1_EPS 1e-8
/* Probability 1/CAYLEY_RETRACT_ODDS of a QR retraction per step (random.randint(1, 101) == 1). */
#define CAYLEY_RETRACT_ODDS 101

static double *dalloc(size_t count) { return malloc(sizeof(double) * count); }

static size_t sq(int n) { return (size_t)n * (size_t)n; }

/* C = alpha·op(A)·op(B) + beta·C, all n×n row-major. */
static void gemm(int ta, int tb, int n, double alpha, const double *A, const double *B, double beta, double *C) {
    rb_dgemm(ta, tb, n, n, n, alpha, A, n, B,
                n, beta, C, n);
}

static void transpose(int n, const double *A, double *T) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) T[(size_t)j * n + i] = A[(size_t)i * n + j];
}

int rb_orth_qr_fix(int n, double *A, rb_error *err) {
    double *tau = dalloc((size_t)n), *d = dalloc((size_t)n);
    int rc = 0;
    if (!tau || !d) {
        rc = rb_error_set(err, RB_ENOMEM, "QR %d×%d: out of memory", n, n);
        goto out;
    }
    lapack_int info = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, n, n, A, n, tau);
    if (info) {
        rc = rb_error_set(err, info > 0 ? RB_ENUMERIC : RB_EINVAL, "QR %d×%d: dgeqrf failed (info %d)", n, n, (int)info);
        goto out;
    }
    for (int j = 0; j < n; j++) d[j] = A[(size_t)j * n + j] < 0 ? -1.0 : 1.0;
    info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, n, n, n, A, n, tau);
    if (info) {
        rc = rb_error_set(err, info > 0 ? RB_ENUMERIC : RB_EINVAL, "QR %d×%d: dorgqr failed (info %d)", n, n, (int)info);
        goto out;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) A[(size_t)i * n + j] *= d[j];
out:
    free(tau);
    free(d);
    return rc;
}

int rb_orth_random(rb_rng *rng, int n, double *Q, rb_error *err) {
    RB_ASSERT(n >= 1);
    rb_rng_gauss_d(rng, Q, sq(n), 0.0, 1.0);
    return rb_orth_qr_fix(n, Q, err);
}

int rb_orth_error(const double *R, int n, double *max_abs, double *fro, rb_error *err) {
    double *E = dalloc(sq(n));
    if (!E) return rb_error_set(err, RB_ENOMEM, "orthogonality error %d×%d: out of memory", n, n);
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, n, 1.0, R, n, 0.0, E, n); /* upper of RᵀR */
    double mx = 0, f2 = 0;
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) {
            double e = E[(size_t)i * n + j] - (i == j);
            double a = fabs(e);
            mx = a > mx ? a : mx;
            f2 += (i == j ? 1.0 : 2.0) * e * e;
        }
    free(E);
    if (max_abs) *max_abs = mx;
    if (fro) *fro = sqrt(f2);
    return 0;
}

int rb_orth_error_f(const float *R, int n, double *max_abs, double *fro, rb_error *err) {
    double *D = dalloc(sq(n));
    if (!D) return rb_error_set(err, RB_ENOMEM, "orthogonality error %d×%d: out of memory", n, n);
    for (size_t t = 0; t < sq(n); t++) D[t] = R[t];
    int rc = rb_orth_error(D, n, max_abs, fro, err);
    free(D);
    return rc;
}

int rb_polar(const double *C, int n, double *R, rb_error *err) {
    double *A = dalloc(sq(n)), *U = dalloc(sq(n)), *VT = dalloc(sq(n)), *S = dalloc((size_t)n);
    int rc = 0;
    if (!A || !U || !VT || !S) {
        rc = rb_error_set(err, RB_ENOMEM, "polar %d×%d: out of memory", n, n);
        goto out;
    }
    memcpy(A, C, sizeof(double) * sq(n));
    lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'A', n, n, A, n, S, U, n, VT, n);
    if (info) {
        rc = rb_error_set(err, info > 0 ? RB_ENUMERIC : RB_EINVAL, "polar %d×%d: dgesdd failed (info %d%s)", n, n,
                          (int)info, info > 0 ? ": no convergence" : "");
        goto out;
    }
    gemm(0, 0, n, 1.0, U, VT, 0.0, R);
out:
    free(A);
    free(U);
    free(VT);
    free(S);
    return rc;
}

int rb_polar_ns(const double *C, int n, double eps, int max_iter, double tol, double *R, int *iters, double *final_err,
                rb_error *err) {
    double *X = dalloc(sq(n)), *M = dalloc(sq(n)), *Y = dalloc(sq(n));
    int rc = 0, it = 0;
    double e = INFINITY;
    if (!X || !M || !Y) {
        rc = rb_error_set(err, RB_ENOMEM, "Newton–Schulz %d×%d: out of memory", n, n);
        goto out;
    }
    memcpy(X, C, sizeof(double) * sq(n));
    for (int i = 0; i < n && eps > 0; i++) X[(size_t)i * n + i] += eps;
    double f2 = 0;
    for (size_t t = 0; t < sq(n); t++) f2 += X[t] * X[t];
    if (f2 == 0) {
        rc = rb_error_set(err, RB_ENUMERIC, "Newton–Schulz %d×%d: zero matrix", n, n);
        goto out;
    }
    double inv = 1.0 / sqrt(f2);
    for (size_t t = 0; t < sq(n); t++) X[t] *= inv;
    for (;;) {
        gemm(1, 0, n, 1.0, X, X, 0.0, M); /* M = XᵀX */
        double s2 = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                double d = M[(size_t)i * n + j] - (i == j);
                s2 += d * d;
            }
        e = sqrt(s2);
        if (e <= tol || it >= max_iter) break;
        memcpy(Y, X, sizeof(double) * sq(n));
        gemm(0, 0, n, -0.5, X, M, 1.5, Y); /* Y = 1.5·X − 0.5·X·M */
        double *t = X;
        X = Y;
        Y = t;
        it++;
    }
    memcpy(R, X, sizeof(double) * sq(n));
    if (e > tol)
        rc = rb_error_set(err, RB_ENUMERIC, "Newton–Schulz %d×%d: ‖XᵀX − I‖_F = %.3g > %.3g after %d iterations", n, n, e,
                          tol, it);
out:
    if (iters) *iters = it;
    if (final_err) *final_err = e;
    free(X);
    free(M);
    free(Y);
    return rc;
}

static double norm2(const double *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += v[i] * v[i];
    return sqrt(s);
}

int rb_householder_make(const double *y, const double *t, int n, double *v) {
    double ny = norm2(y, n), nt = norm2(t, n);
    memset(v, 0, sizeof(double) * (size_t)n);
    if (ny == 0 || nt == 0) return 0;
    double f = ny / nt;
    for (int i = 0; i < n; i++) v[i] = y[i] - f * t[i];
    double nv = norm2(v, n);
    if (nv == 0) return 0; /* y already equals its target; H = I */
    for (int i = 0; i < n; i++) v[i] /= nv;
    return 1;
}

int rb_householder_apply_rows(const double *v, int n, double *X, size_t rows, rb_error *err) {
    if (rows == 0) return 0;
    double *w = dalloc(rows);
    if (!w) return rb_error_set(err, RB_ENOMEM, "Householder: out of memory for %zu rows", rows);
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)rows, n, 1.0, X, n, v, 1, 0.0, w, 1);
    cblas_dger(CblasRowMajor, (int)rows, n, -2.0, w, 1, v, 1, X, n);
    free(w);
    return 0;
}

int rb_householder_apply_rows_f(const double *v, int n, float *X, size_t rows, rb_error *err) {
    if (rows == 0) return 0;
    float *w = malloc(sizeof(float) * rows), *vf = malloc(sizeof(float) * (size_t)n);
    if (!w || !vf) {
        free(w);
        free(vf);
        return rb_error_set(err, RB_ENOMEM, "Householder: out of memory for %zu rows", rows);
    }
    for (int i = 0; i < n; i++) vf[i] = (float)v[i];
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)rows, n, 1.0f, X, n, vf, 1, 0.0f, w, 1);
    cblas_sger(CblasRowMajor, (int)rows, n, -2.0f, w, 1, vf, 1, X, n);
    free(w);
    free(vf);
    return 0;
}

void rb_givens_make(double a, double b, double ta, double tb, double *c, double *s) {
    double r = hypot(a, b), rt = hypot(ta, tb);
    if (r == 0 || rt == 0) {
        *c = 1;
        *s = 0;
        return;
    }
    double cc = (a * ta + b * tb) / (r * rt), ss = (a * tb - b * ta) / (r * rt);
    double h = hypot(cc, ss); /* 1 up to rounding; renormalize so the 2×2 block is orthogonal */
    *c = cc / h;
    *s = ss / h;
}

void rb_givens_apply_rows(const rb_givens *g, int count, int n, double *X, size_t rows) {
    for (int t = 0; t < count; t++)
        RB_ASSERT(g[t].i >= 0 && g[t].i < n && g[t].j >= 0 && g[t].j < n && g[t].i != g[t].j);
    for (size_t r = 0; r < rows; r++) {
        double *x = X + r * (size_t)n;
        for (int t = 0; t < count; t++) {
            double xi = x[g[t].i], xj = x[g[t].j];
            x[g[t].i] = g[t].c * xi - g[t].s * xj;
            x[g[t].j] = g[t].s * xi + g[t].c * xj;
        }
    }
}

void rb_givens_apply_rows_f(const rb_givens *g, int count, int n, float *X, size_t rows) {
    for (int t = 0; t < count; t++)
        RB_ASSERT(g[t].i >= 0 && g[t].i < n && g[t].j >= 0 && g[t].j < n && g[t].i != g[t].j);
    for (size_t r = 0; r < rows; r++) {
        float *x = X + r * (size_t)n;
        for (int t = 0; t < count; t++) {
            double xi = x[g[t].i], xj = x[g[t].j];
            x[g[t].i] = (float)(g[t].c * xi - g[t].s * xj);
            x[g[t].j] = (float)(g[t].s * xi + g[t].c * xj);
        }
    }
}

int rb_cayley_sgd_init(rb_cayley_sgd *s, int n, double momentum, rb_error *err) {
    memset(s, 0, sizeof *s);
    RB_ASSERT(n >= 1);
    s->n = n;
    s->momentum = momentum;
    s->cayley_iters = 5;
    s->V = calloc(sq(n), sizeof(double));
    s->work = dalloc(7 * sq(n));
    if (!s->V || !s->work) {
        rb_cayley_sgd_free(s);
        return rb_error_set(err, RB_ENOMEM, "Cayley SGD %d×%d: out of memory", n, n);
    }
    return 0;
}

void rb_cayley_sgd_free(rb_cayley_sgd *s) {
    free(s->V);
    free(s->work);
    s->V = s->work = NULL;
}

int rb_cayley_sgd_step(rb_cayley_sgd *s, double *P, const double *G, double lr, rb_rng *rng, rb_error *err) {
    const int n = s->n;
    const size_t nn = sq(n);
    double *U = s->work, *X = U + nn, *A = X + nn, *T = A + nn, *W = T + nn, *Y = W + nn, *S = Y + nn;
    double *V = s->V;
    /* U = rows of P normalized (unit(), see CAYLEY_ROW_EPS) */
    for (int i = 0; i < n; i++) {
        const double *p = P + (size_t)i * n;
        double nr = norm2(p, n), inv = 1.0 / (nr > CAYLEY_ROW_EPS ? nr : CAYLEY_ROW_EPS);
        for (int j = 0; j < n; j++) U[(size_t)i * n + j] = p[j] * inv;
    }
    if (rb_rng_below(rng, CAYLEY_RETRACT_ODDS) == 0) { /* U = qr_retraction(U) = qr_fix(Uᵀ)ᵀ */
        transpose(n, U, T);
        int rc = rb_orth_qr_fix(n, T, err);
        if (rc) return rc;
        transpose(n, T, U);
        s->retractions++;
    }
    /* V = β·V − Gᵀ */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) V[(size_t)i * n + j] = s->momentum * V[(size_t)i * n + j] - G[(size_t)j * n + i];
    gemm(0, 0, n, 1.0, V, U, 0.0, A);  /* A = V·U */
    gemm(0, 0, n, 1.0, U, A, 0.0, T);  /* T = U·A */
    gemm(1, 0, n, -0.5, U, T, 1.0, A); /* A = Ŵ = A − ½·Uᵀ·T */
    double norm1 = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) W[(size_t)i * n + j] = A[(size_t)i * n + j] - A[(size_t)j * n + i];
    for (int j = 0; j < n; j++) { /* max absolute column sum */
        double c = 0;
        for (int i = 0; i < n; i++) c += fabs(W[(size_t)i * n + j]);
        norm1 = c > norm1 ? c : norm1;
    }
    double t = 1.0 / (norm1 + CAYLEY_NORM1_EPS), alpha = t < lr ? t : lr;
    transpose(n, U, X);
    for (size_t q = 0; q < nn; q++) Y[q] = X[q] + alpha * V[q];
    for (int it = 0; it < s->cayley_iters; it++) {
        for (size_t q = 0; q < nn; q++) S[q] = X[q] + Y[q];
        memcpy(Y, X, sizeof(double) * nn);
        gemm(0, 0, n, 0.5 * alpha, W, S, 1.0, Y); /* Y = X + α·W·(X + Y)/2 */
    }
    transpose(n, Y, P);
    gemm(0, 0, n, 1.0, W, X, 0.0, V); /* V ← W·X */
    s->last_alpha = alpha;
    s->steps++;
    return 0;
}

int rb_orth_restore(double *P, int n, double *E, double *T, double *drift, double *after, rb_error *err) {
    size_t nn = (size_t)n * n;
    for (int it = 0;; it++) {
        rb_dgemm(1, 0, n, n, n, 1.0, P, n, P, n, 0.0, E, n);
        double e = 0;
        for (int i = 0; i < n; i++) E[(size_t)i * n + i] -= 1.0;
        for (size_t q = 0; q < nn; q++) e = fabs(E[q]) > e ? fabs(E[q]) : e;
        if (it == 0) *drift = e;
        *after = e;
        if (e <= RB_ORTH_RESTORE_TARGET || !isfinite(e)) break;
        if (it == RB_ORTH_RESTORE_MAX_ITERS) {
            if (e <= RB_ROT_ORTH_TOL) break;
            int rc = rb_polar(P, n, P, err);
            if (rc) return rb_error_prefix(err, "re-orthonormalization");
            return rb_orth_error(P, n, after, NULL, err);
        }
        rb_dgemm(0, 0, n, n, n, -0.5, P, n, E, n, 0.0, T, n);
        for (size_t q = 0; q < nn; q++) P[q] += T[q];
    }
    if (!isfinite(*after))
        return rb_error_set(err, RB_ENUMERIC, "the rotation became non-finite in training (lower rotation.options.lr)");
    return 0;
}

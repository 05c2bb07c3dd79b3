/* rb_rotset: construction and release of rotation sets and their matrices (save/load in
 * rb_rotset_io.c). */
#include "rb_rotset.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "rb_orth.h"

int rb_rotset_init(rb_rotset *s, const char *method, int dim, int head_dim, int hidden_dim, int n_layers,
                   rb_error *err) {
    RB_ASSERT(s && method);
    memset(s, 0, sizeof *s);
    if (strlen(method) >= sizeof s->method)
        return rb_error_set(err, RB_EINVAL, "rotation set: method name '%s' longer than %zu bytes", method,
                            sizeof s->method - 1);
    if (dim < 1 || head_dim < 1 || hidden_dim < 1 || n_layers < 0)
        return rb_error_set(err, RB_EINVAL,
                            "rotation set: bad shape dim %d, head_dim %d, hidden_dim %d, n_layers %d", dim,
                            head_dim, hidden_dim, n_layers);
    snprintf(s->method, sizeof s->method, "%s", method);
    s->dim = dim;
    s->head_dim = head_dim;
    s->hidden_dim = hidden_dim;
    s->n_layers = n_layers;
    /* The per-layer array exists up front so callers can assign s->r2[l] directly. */
    if (n_layers > 0) {
        s->r2 = calloc((size_t)n_layers, sizeof *s->r2);
        if (!s->r2) {
            memset(s, 0, sizeof *s);
            return rb_error_set(err, RB_ENOMEM, "rotation set: out of memory (%d layers)", n_layers);
        }
    }
    return 0;
}

void rb_rotset_free(rb_rotset *s) {
    if (!s) return;
    rb_rot_free(s->r1);
    if (s->r2)
        for (int l = 0; l < s->n_layers; l++) rb_rot_free(s->r2[l]);
    free(s->r2);
    if (s->ruq)
        for (int l = 0; l < s->n_layers; l++)
            for (int k = 0; k < RB_RUQ_NSITES; k++) rb_ruq_site_free(s->ruq[l][k]);
    free(s->ruq);
    for (int l = 0; s->ra && l <= s->n_layers; l++) rb_rot_free(s->ra[l]);
    for (int l = 0; s->rm && l < s->n_layers; l++) rb_rot_free(s->rm[l]);
    free(s->ra);
    free(s->rm);
    for (int l = 0; s->jn && l < s->n_layers; l++)
        for (int k = 0; k < RB_JN_COUNT; k++) rb_junction_free(s->jn[l][k]);
    free(s->jn);
    memset(s, 0, sizeof *s);
}

int rb_rotset_layerwise_alloc(rb_rotset *s, rb_error *err) {
    if (s->ra) return 0;
    if (s->n_layers < 1) return rb_error_set(err, RB_EINVAL, "rotation set: layer-wise bases need at least one layer");
    if (s->r1) return rb_error_set(err, RB_EINVAL, "rotation set: layer-wise bases replace R1, which is set");
    s->ra = calloc((size_t)s->n_layers + 1, sizeof *s->ra);
    s->rm = calloc((size_t)s->n_layers, sizeof *s->rm);
    if (!s->ra || !s->rm) {
        free(s->ra);
        free(s->rm);
        s->ra = s->rm = NULL;
        return rb_error_set(err, RB_ENOMEM, "rotation set: out of memory (%d layers)", s->n_layers);
    }
    return 0;
}

int rb_rotset_jn_alloc(rb_rotset *s, rb_error *err) {
    if (s->jn) return 0;
    if (s->n_layers < 1) return rb_error_set(err, RB_EINVAL, "rotation set: junctions need at least one layer");
    if (!(s->jn = calloc((size_t)s->n_layers, sizeof *s->jn)))
        return rb_error_set(err, RB_ENOMEM, "rotation set: out of memory (%d layers)", s->n_layers);
    return 0;
}

void rb_rotset_junction_exact(const rb_rotset *s, int l, int k, double *T) {
    RB_ASSERT(s->ra && l >= 0 && l < s->n_layers && k >= 0 && k < RB_JN_COUNT);
    int n = s->dim;
    const rb_rot *a = k == RB_JN_ATTN ? s->ra[l] : s->rm[l], *b = k == RB_JN_ATTN ? s->rm[l] : s->ra[l + 1];
    if (a && b) {
        rb_dgemm(1, 0, n, n, n, 1.0, a->R, n, b->R, n, 0.0, T, n);
        return;
    }
    if (!a && !b) {
        rb_orth_identity(T, n);
        return;
    }
    if (b) memcpy(T, b->R, sizeof(double) * (size_t)n * n); /* Iᵀ·B */
    else /* Aᵀ·I */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) T[(size_t)i * n + j] = a->R[(size_t)j * n + i];
}

int rb_rotset_ruq_alloc(rb_rotset *s, rb_error *err) {
    if (s->ruq) return 0;
    if (s->n_layers < 1) return rb_error_set(err, RB_EINVAL, "rotation set: RUQuant transforms need at least one layer");
    if (!(s->ruq = calloc((size_t)s->n_layers, sizeof *s->ruq)))
        return rb_error_set(err, RB_ENOMEM, "rotation set: out of memory (%d layers)", s->n_layers);
    return 0;
}

void rb_rot_free(rb_rot *r) {
    if (!r) return;
    free(r->R);
    free(r->signs);
    free(r);
}

/* A rotation of order n with R allocated (uninitialized), kind dense, no signs. */
static int rot_alloc(int n, rb_rot **out, rb_error *err) {
    *out = NULL;
    if (n < 1) return rb_error_set(err, RB_EINVAL, "rotation of order %d: must be ≥ 1", n);
    rb_rot *r = calloc(1, sizeof *r);
    size_t nn;
    if (!r || !rb_mul_ok((size_t)n, (size_t)n, &nn) || !rb_mul_ok(nn, sizeof(double), &nn) ||
        !(r->R = malloc(nn))) {
        free(r);
        return rb_error_set(err, RB_ENOMEM, "rotation of order %d: out of memory", n);
    }
    r->n = n;
    r->kind = RB_ROT_DENSE;
    *out = r;
    return 0;
}

/* ‖RᵀR − I‖_max, NaN when R holds a NaN or ∞: rb_orth_error's max skips NaN entries, so the
 * Frobenius norm (which propagates them) is the non-finite detector. */
static int orth_err_of(const double *R, int n, double *out, rb_error *err) {
    double mx, fro;
    int rc = rb_orth_error(R, n, &mx, &fro, err);
    if (rc) return rc;
    *out = isfinite(fro) ? mx : NAN;
    return 0;
}

/* Measures ‖RᵀR − I‖_max into r->orth_err and refuses it above RB_ROT_ORTH_TOL (NaN included). */
static int rot_check(rb_rot *r, const char *what, rb_error *err) {
    int rc = orth_err_of(r->R, r->n, &r->orth_err, err);
    if (rc) return rc;
    if (!(r->orth_err <= RB_ROT_ORTH_TOL))
        return rb_error_set(err, RB_EINVAL, "%s rotation of order %d is not orthogonal: ‖RᵀR − I‖_max = %.3g > %.0e",
                            what, r->n, r->orth_err, RB_ROT_ORTH_TOL);
    return 0;
}

int rb_rot_from_dense(const double *R, int n, rb_rot **out, rb_error *err) {
    RB_ASSERT(R && out);
    int rc = rot_alloc(n, out, err);
    if (rc) return rc;
    memcpy((*out)->R, R, sizeof(double) * (size_t)n * (size_t)n);
    if ((rc = rot_check(*out, "dense", err))) {
        rb_rot_free(*out);
        *out = NULL;
    }
    return rc;
}

int rb_rot_from_hadamard(int n, const int8_t *signs, rb_rot **out, rb_error *err) {
    RB_ASSERT(out);
    int rc = rot_alloc(n, out, err);
    if (rc) return rc;
    rb_rot *r = *out;
    r->kind = RB_ROT_HADAMARD;
    /* The recipe is always explicit (all +1 when no signs are given) so that save never has to
     * special-case it. */
    if (!(r->signs = malloc((size_t)n))) {
        rc = rb_error_set(err, RB_ENOMEM, "Hadamard rotation of order %d: out of memory", n);
        goto fail;
    }
    if (signs)
        memcpy(r->signs, signs, (size_t)n);
    else
        memset(r->signs, 1, (size_t)n);
    rb_had h;
    if ((rc = rb_had_init(&h, n, r->signs, err))) goto fail;
    rb_had_dense(&h, r->R);
    rb_had_free(&h);
    if ((rc = rot_check(r, "Hadamard", err))) goto fail;
    return 0;
fail:
    rb_rot_free(r);
    *out = NULL;
    return rc;
}

double rb_rotset_orth_err(const rb_rotset *s) {
    /* Recomputed from the matrices rather than taken from orth_err: the fields are public and a
     * caller may have edited R in place since construction. An allocation failure reports +∞ so
     * that any tolerance check on the result fails safe. */
    double worst = 0;
    int count = s->r2 ? s->n_layers : 0;
    for (int l = -1; l < count; l++) {
        const rb_rot *r = l < 0 ? s->r1 : s->r2[l];
        if (!r) continue;
        double e;
        if (orth_err_of(r->R, r->n, &e, NULL)) return INFINITY;
        if (isnan(e)) return e;
        if (e > worst) worst = e;
    }
    for (int l = 0; s->ruq && l < s->n_layers; l++)
        for (int k = 0; k < RB_RUQ_NSITES; k++) {
            if (!s->ruq[l][k]) continue;
            double e = rb_ruq_site_orth_err(s->ruq[l][k]);
            if (isnan(e)) return e;
            if (e > worst) worst = e;
        }
    for (int l = 0; s->ra && l < 2 * s->n_layers + 1; l++) {
        const rb_rot *r = l <= s->n_layers ? s->ra[l] : s->rm[l - s->n_layers - 1];
        double e;
        if (!r) continue;
        if (orth_err_of(r->R, r->n, &e, NULL)) return INFINITY;
        if (isnan(e)) return e;
        if (e > worst) worst = e;
    }
    for (int l = 0; s->jn && l < s->n_layers; l++)
        for (int k = 0; k < RB_JN_COUNT; k++) {
            if (!s->jn[l][k]) continue;
            double e = rb_junction_orth_err(s->jn[l][k]);
            if (isnan(e)) return e;
            if (e > worst) worst = e;
        }
    return worst;
}

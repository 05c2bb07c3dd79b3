#include "rotate/rb_rotsite.h"

#include <string.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"

int rb_rotsite_init(rb_rotsite *s, int n, const double *R, const rb_quant_cfg *q, int clipped, rb_error *err) {
    memset(s, 0, sizeof *s);
    RB_ASSERT(n > 0);
    s->n = n;
    s->q = q;
    s->clipped = clipped;
    s->Rf = rb_alloc(sizeof(float) * (size_t)n * n);
    s->acc = rb_alloc(sizeof(float) * (size_t)n * n);
    s->dR = rb_alloc(sizeof(double) * (size_t)n * n);
    if (!s->Rf || !s->acc || !s->dR) {
        rb_rotsite_free(s);
        return rb_error_set(err, RB_ENOMEM, "rotation site: out of memory (order %d)", n);
    }
    rb_rotsite_set(s, R);
    rb_rotsite_zero_grad(s);
    return 0;
}

void rb_rotsite_free(rb_rotsite *s) {
    rb_free(s->Rf);
    rb_free(s->acc);
    rb_free(s->dR);
    rb_free(s->z);
    rb_free(s->qz);
    memset(s, 0, sizeof *s);
}

void rb_rotsite_set(rb_rotsite *s, const double *R) {
    size_t nn = (size_t)s->n * s->n;
    for (size_t i = 0; i < nn; i++) s->Rf[i] = R ? (float)R[i] : (i % (size_t)(s->n + 1) == 0 ? 1.0f : 0.0f);
}

void rb_rotsite_zero_grad(rb_rotsite *s) { memset(s->dR, 0, sizeof(double) * (size_t)s->n * s->n); }

static int grow(rb_rotsite *s, size_t n, rb_error *err) {
    if (n <= s->cap) return 0;
    rb_free(s->z);
    rb_free(s->qz);
    s->z = rb_alloc(n * sizeof(float));
    s->qz = rb_alloc(n * sizeof(float));
    s->cap = s->z && s->qz ? n : 0;
    return s->cap ? 0 : rb_error_set(err, RB_ENOMEM, "rotation site: out of memory for %zu values", n);
}

/* z ← x·R and qz ← Q(z) over the site's slices. */
static int forward_slices(rb_rotsite *s, const rb_site_info *in, const float *x, rb_error *err) {
    size_t total = (size_t)in->n_seq * in->seq_len * in->cols;
    RB_ASSERT(in->cols % s->n == 0);
    int rc = grow(s, total, err);
    if (rc) return rc;
    int slices = (int)(total / s->n);
    rb_sgemm(0, 0, slices, s->n, s->n, 1.0f, x, s->n, s->Rf, s->n, 0.0f, s->z, s->n);
    memcpy(s->qz, s->z, total * sizeof(float));
    return s->q ? rb_quant_site_hook((void *)s->q, in, s->qz, err) : 0;
}

int rb_hook_rotsite(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    rb_rotsite *s = ctx;
    int rc = forward_slices(s, in, x, err);
    if (rc) return rc;
    int slices = (int)((size_t)in->n_seq * in->seq_len * in->cols / s->n);
    rb_sgemm(0, 1, slices, s->n, s->n, 1.0f, s->qz, s->n, s->Rf, s->n, 0.0f, x, s->n);
    return 0;
}

int rb_hook_rotsite_bwd(void *ctx, const rb_site_info *in, const float *x_in, float *dx, rb_error *err) {
    rb_rotsite *s = ctx;
    RB_ASSERT(x_in); /* added with needs_input */
    int rc = forward_slices(s, in, x_in, err);
    if (rc) return rc;
    int n = s->n, slices = (int)((size_t)in->n_seq * in->seq_len * in->cols / n);
    size_t nn = (size_t)n * n;
    /* dyᵀ·Q(z) uses dy before it is overwritten */
    rb_sgemm(1, 0, n, n, slices, 1.0f, dx, n, s->qz, n, 0.0f, s->acc, n);
    for (size_t i = 0; i < nn; i++) s->dR[i] += s->acc[i];
    /* dz = dy·R (then masked), into qz */
    rb_sgemm(0, 0, slices, n, n, 1.0f, dx, n, s->Rf, n, 0.0f, s->qz, n);
    if (s->clipped && s->q && (rc = rb_quant_site_ste_clip((void *)s->q, in, s->z, s->qz, err))) return rc;
    rb_sgemm(1, 0, n, n, slices, 1.0f, x_in, n, s->qz, n, 0.0f, s->acc, n);
    for (size_t i = 0; i < nn; i++) s->dR[i] += s->acc[i];
    rb_sgemm(0, 1, slices, n, n, 1.0f, s->qz, n, s->Rf, n, 0.0f, dx, n); /* dx = dz·Rᵀ */
    return 0;
}

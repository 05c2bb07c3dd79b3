#include "rotate/rb_fuse.h"

#include <stdlib.h>
#include <string.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"

/* Embedding/lm_head rows rotated per dgemm: bounds the double work buffers. */
#define FUSE_ROW_BLOCK 1024

static void to_double(double *d, const float *s, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = s[i];
}
static void to_float(float *d, const double *s, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = (float)s[i];
}

/* W[rows][cols] ← W·diag(g) */
static void fold_cols(double *W, int rows, int cols, const float *g) {
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) W[(size_t)r * cols + j] *= g[j];
}

/* Input side: W[rows][n] ← W·R (R [n][n]); uses tmp of the same size. */
static void mul_right(double *W, double *tmp, int rows, int n, const double *R) {
    rb_dgemm(0, 0, rows, n, n, 1.0, W, n, R, n, 0.0, tmp, n);
    memcpy(W, tmp, sizeof(double) * (size_t)rows * n);
}

/* Output side: W[n][cols] ← Rᵀ·W. */
static void mul_left_t(double *W, double *tmp, int n, int cols, const double *R) {
    rb_dgemm(1, 0, n, cols, n, 1.0, R, n, W, cols, 0.0, tmp, cols);
    memcpy(W, tmp, sizeof(double) * (size_t)n * cols);
}

/* The junction hooks of a layer-wise set: its low-rank junctions, or the exact dense T from the bases
 * (skipped where T is exactly the identity, e.g. two NULL bases). */
static int junctions_init(rb_fused *f, rb_error *err) {
    const rb_rotset *rs = f->rs;
    if (!rs->ra) {
        if (rs->jn) return rb_error_set(err, RB_EINVAL, "rotation set (%s): junctions without layer-wise bases", rs->method);
        return 0;
    }
    if (rs->r1) return rb_error_set(err, RB_EINVAL, "rotation set (%s): both R1 and layer-wise bases", rs->method);
    int n = f->cfg.dim, L = f->cfg.n_layers, rc = rb_junctions_init(&f->junc, L, n, err);
    if (rc) return rc;
    f->has_junc = 1;
    double *T = rs->jn ? NULL : malloc(sizeof(double) * (size_t)n * n);
    if (!rs->jn && !T) return rb_error_set(err, RB_ENOMEM, "fuse: out of memory for a junction");
    for (int l = 0; l < L && !rc; l++)
        for (int k = 0; k < RB_JN_COUNT && !rc; k++) {
            if (rs->jn) {
                const rb_junction *j = rs->jn[l][k];
                if (j && j->n != n)
                    rc = rb_error_set(err, RB_EINVAL, "rotation set (%s): junction %s of layer %d has width %d, dim is %d",
                                      rs->method, rb_junction_name(k), l, j->n, n);
                f->junc.lr[l * RB_JN_COUNT + k] = j;
                continue;
            }
            rb_rotset_junction_exact(rs, l, k, T);
            int ident = 1;
            for (int a = 0; a < n && ident; a++)
                for (int b = 0; b < n && ident; b++) ident = T[(size_t)a * n + b] == (a == b);
            if (!ident) rc = rb_junctions_set_dense(&f->junc, l, k, T, err);
        }
    free(T);
    return rc;
}

int rb_rotset_check_model(const rb_rotset *rs, const rb_llama_config *c, rb_error *err) {
    if (rs->dim != c->dim || rs->head_dim != c->head_dim || rs->hidden_dim != c->hidden_dim ||
        rs->n_layers != c->n_layers)
        return rb_error_set(err, RB_EINVAL,
                            "rotation set (%s) is for dim %d, head_dim %d, hidden %d, %d layers; the model has %d, %d, "
                            "%d, %d",
                            rs->method, rs->dim, rs->head_dim, rs->hidden_dim, rs->n_layers, c->dim, c->head_dim,
                            c->hidden_dim, c->n_layers);
    return 0;
}

int rb_fused_init(rb_fused *f, const rb_weights_src *base, const rb_llama_config *c, const rb_rotset *rs,
                  rb_error *err) {
    memset(f, 0, sizeof *f);
    f->base = *base;
    f->cfg = *c;
    f->rs = rs;
    int rc;
    if (rs && (rc = rb_rotset_check_model(rs, c, err))) return rc;
    if (rs && rs->r3) {
        if ((rc = rb_had_init(&f->r3, c->head_dim, NULL, err))) return rb_error_prefix(err, "R3 (head_dim %d)", c->head_dim);
        f->has_r3 = 1;
    }
    if (rs && rs->r4) {
        if ((rc = rb_had_init(&f->r4, c->hidden_dim, NULL, err))) {
            rb_fused_free(f);
            return rb_error_prefix(err, "R4 (intermediate size %d)", c->hidden_dim);
        }
        f->has_r4 = 1;
    }
    if (rs && rs->cross_head) {
        if ((rc = rb_had_init(&f->ch, c->n_heads, NULL, err))) {
            rb_fused_free(f);
            return rb_error_prefix(err, "cross-head Hadamard (%d heads)", c->n_heads);
        }
        f->has_ch = 1;
    }
    for (int l = 0; rs && rs->ruq && l < rs->n_layers; l++)
        for (int k = 0; k < RB_RUQ_NSITES; k++) {
            const rb_ruq_site *q = rs->ruq[l][k];
            int want = k == RB_RUQ_DOWN ? c->hidden_dim : k == RB_RUQ_OUT ? c->n_heads * c->head_dim : c->dim;
            if (q && q->n != want) {
                rb_fused_free(f);
                return rb_error_set(err, RB_EINVAL, "rotation set (%s): RUQuant transform of layer %d at %s has width %d, "
                                    "the model's is %d", rs->method, l, rb_ruq_site_name(k), q->n, want);
            }
            /* folded scales need a producer with one output row per input channel of the site */
            if (q && q->scale_fused &&
                !(k == RB_RUQ_DOWN || (k == RB_RUQ_OUT && c->n_kv_heads == c->n_heads && !rs->cross_head))) {
                rb_fused_free(f);
                return rb_error_set(err, RB_EINVAL,
                                    "rotation set (%s): RUQuant smoothing of layer %d at %s is folded into the producing "
                                    "weights, which only down_in (up_proj) and o_in under MHA without the cross-head "
                                    "transform (v_proj) allow",
                                    rs->method, l, rb_ruq_site_name(k));
            }
        }
    if (rs && (rc = junctions_init(f, err))) {
        rb_fused_free(f);
        return rc;
    }
    size_t qd = (size_t)c->n_heads * c->head_dim, big = (size_t)c->dim * c->hidden_dim;
    if ((size_t)c->dim * qd > big) big = (size_t)c->dim * qd;
    if ((size_t)FUSE_ROW_BLOCK * c->dim > big) big = (size_t)FUSE_ROW_BLOCK * c->dim;
    f->wa = rb_alloc(big * sizeof(double));
    f->wb = rb_alloc(big * sizeof(double));
    if (!f->wa || !f->wb) {
        rb_fused_free(f);
        return rb_error_set(err, RB_ENOMEM, "fuse: out of memory");
    }
    return 0;
}

void rb_fused_free(rb_fused *f) {
    rb_had_free(&f->r3);
    rb_had_free(&f->r4);
    rb_had_free(&f->ch);
    rb_free(f->emb);
    rb_free(f->wa);
    rb_free(f->wb);
    rb_free(f->ruq_tmp);
    rb_junctions_free(&f->junc);
    memset(f, 0, sizeof *f);
}

/* RUQuant transform of layer l at site k, or NULL. */
static const rb_ruq_site *ruq_at(const rb_fused *f, int l, int k) {
    return f->rs && f->rs->ruq ? f->rs->ruq[l][k] : NULL;
}

/* One linear through fold (g may be NULL), the residual basis on the input (in_rot) or output (out_rot) side, an
 * extra per-linear step, the RUQuant transform rq of its input (may be NULL), and last, when
 * `produces` is a RUQuant site with scale_fused, its smoothing scales folded into the output rows
 * (W ← diag(1/s)·W: the activation it produces arrives at that site already divided). */
enum { STEP_NONE, STEP_R2_VOUT, STEP_R2_OIN, STEP_R4_IN };

static void fuse_linear(rb_fused *f, float *W, int rows, int cols, const float *g, const rb_rot *in_rot,
                        const rb_rot *out_rot, int step, int layer, const rb_ruq_site *rq, const rb_ruq_site *produces) {
    const rb_rotset *rs = f->rs;
    const rb_llama_config *c = &f->cfg;
    size_t n = (size_t)rows * cols;
    double *A = f->wa;
    to_double(A, W, n);
    if (g) fold_cols(A, rows, cols, g);
    if (in_rot) mul_right(A, f->wb, rows, cols, in_rot->R);
    if (out_rot) mul_left_t(A, f->wb, rows, cols, out_rot->R);
    const rb_rot *r2 = rs && rs->r2 ? rs->r2[layer] : NULL;
    int hd = c->head_dim;
    if (r2 && step == STEP_R2_VOUT) /* each KV head's row block: Wv[h] ← R2ᵀ·Wv[h] */
        for (int h = 0; h < rows / hd; h++) mul_left_t(A + (size_t)h * hd * cols, f->wb, hd, cols, r2->R);
    if (r2 && step == STEP_R2_OIN) { /* each head's column block: Wo[:,h] ← Wo[:,h]·R2 */
        for (int h = 0; h < cols / hd; h++) {
            rb_dgemm(0, 0, rows, hd, hd, 1.0, A + (size_t)h * hd, cols, r2->R,
                        hd, 0.0, f->wb, hd);
            for (int r = 0; r < rows; r++) memcpy(A + (size_t)r * cols + (size_t)h * hd, f->wb + (size_t)r * hd, sizeof(double) * hd);
        }
    }
    if (f->has_ch && step == STEP_R2_OIN) { /* W_o ← W_o·(C ⊗ I_hd): each row as [heads][hd], C across heads */
        int nh = cols / hd;
        for (int r = 0; r < rows; r++) {
            double *row = A + (size_t)r * cols, *t = f->wb;
            for (int a = 0; a < nh; a++)
                for (int b = 0; b < hd; b++) t[(size_t)b * nh + a] = row[(size_t)a * hd + b];
            rb_had_apply_rows_d(&f->ch, t, (size_t)hd);
            for (int a = 0; a < nh; a++)
                for (int b = 0; b < hd; b++) row[(size_t)a * hd + b] = t[(size_t)b * nh + a];
        }
    }
    if (f->has_r4 && step == STEP_R4_IN) rb_had_apply_rows_d(&f->r4, A, (size_t)rows);
    /* Last, as online: the activation reaching the linear went through every transform above first. */
    if (rq) rb_ruq_apply_weight_d(rq, A, (size_t)rows, f->wb);
    if (produces && produces->scale_fused) {
        RB_ASSERT(produces->n == rows); /* checked at rb_fused_init */
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++) A[(size_t)r * cols + j] /= produces->scale[r];
    }
    to_float(W, A, n);
}

/* The residual basis at layer l: its attention basis (mid = 0; l = n_layers: the lm_head input) or its
 * mid-layer basis (mid = 1): ra[l] / rm[l] of a layer-wise set, R1 otherwise (NULL = identity). */
static const rb_rot *basis(const rb_fused *f, int l, int mid) {
    const rb_rotset *rs = f->rs;
    if (!rs) return NULL;
    if (!rs->ra) return rs->r1;
    return mid ? rs->rm[l] : rs->ra[l];
}

static int fused_load_layer(void *ctx, int l, rb_layer_weights *w, rb_error *err) {
    rb_fused *f = ctx;
    const rb_llama_config *c = &f->cfg;
    int rc = f->base.load_layer(f->base.ctx, l, w, err);
    if (rc) return rc;
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    const rb_ruq_site *qkv = ruq_at(f, l, RB_RUQ_QKV), *fc1 = ruq_at(f, l, RB_RUQ_FC1);
    const rb_ruq_site *out = ruq_at(f, l, RB_RUQ_OUT), *down = ruq_at(f, l, RB_RUQ_DOWN);
    const rb_rot *ba = basis(f, l, 0), *bm = basis(f, l, 1), *bn = basis(f, l + 1, 0);
    fuse_linear(f, w->wq, qd, c->dim, w->rms_att, ba, NULL, STEP_NONE, l, qkv, NULL);
    fuse_linear(f, w->wk, kvd, c->dim, w->rms_att, ba, NULL, STEP_NONE, l, qkv, NULL);
    fuse_linear(f, w->wv, kvd, c->dim, w->rms_att, ba, NULL, STEP_R2_VOUT, l, qkv, out);
    fuse_linear(f, w->wo, c->dim, qd, NULL, NULL, bm, STEP_R2_OIN, l, out, NULL);
    fuse_linear(f, w->w_gate, c->hidden_dim, c->dim, w->rms_ffn, bm, NULL, STEP_NONE, l, fc1, NULL);
    fuse_linear(f, w->w_up, c->hidden_dim, c->dim, w->rms_ffn, bm, NULL, STEP_NONE, l, fc1, down);
    fuse_linear(f, w->w_down, c->dim, c->hidden_dim, NULL, NULL, bn, STEP_R4_IN, l, down, NULL);
    for (int j = 0; j < c->dim; j++) w->rms_att[j] = w->rms_ffn[j] = 1.0f;
    return 0;
}

/* Rows [n][dim] (float) ← prepared and rotated, in double: optional centering, then ·R (NULL: none). */
static void rotate_rows(rb_fused *f, float *X, size_t n, const float *g, int center, const rb_rot *R) {
    const rb_llama_config *c = &f->cfg;
    size_t d = (size_t)c->dim;
    for (size_t r0 = 0; r0 < n; r0 += FUSE_ROW_BLOCK) {
        size_t nr = n - r0 < FUSE_ROW_BLOCK ? n - r0 : FUSE_ROW_BLOCK;
        double *A = f->wa;
        to_double(A, X + r0 * d, nr * d);
        if (g) fold_cols(A, (int)nr, (int)d, g);
        if (center)
            for (size_t r = 0; r < nr; r++) {
                double m = 0;
                for (size_t j = 0; j < d; j++) m += A[r * d + j];
                m /= (double)d;
                for (size_t j = 0; j < d; j++) A[r * d + j] -= m;
            }
        if (R) mul_right(A, f->wb, (int)nr, (int)d, R->R);
        to_float(X + r0 * d, A, nr * d);
    }
}

static int fused_embed(void *ctx, const int32_t *ids, size_t n, float *out, rb_error *err) {
    rb_fused *f = ctx;
    const rb_llama_config *c = &f->cfg;
    size_t d = (size_t)c->dim, V = (size_t)c->vocab_size;
    if (!f->emb) {
        float *e = rb_alloc(V * d * sizeof(float));
        int32_t *all = malloc(V * sizeof *all);
        if (!e || !all) {
            rb_free(e);
            free(all);
            return rb_error_set(err, RB_ENOMEM, "fuse: out of memory for the rotated embedding");
        }
        for (size_t i = 0; i < V; i++) all[i] = (int32_t)i;
        int rc = f->base.embed(f->base.ctx, all, V, e, err);
        free(all);
        if (rc) {
            rb_free(e);
            return rc;
        }
        rotate_rows(f, e, V, NULL, f->rs && f->rs->emb_center, basis(f, 0, 0));
        f->emb = e;
    }
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= V)
            return rb_error_set(err, RB_EINVAL, "fuse: token id %d out of range [0, %zu)", ids[i], V);
        memcpy(out + i * d, f->emb + (size_t)ids[i] * d, d * sizeof(float));
    }
    return 0;
}

static int fused_final_norm(void *ctx, float *out, rb_error *err) {
    (void)err;
    rb_fused *f = ctx;
    for (int j = 0; j < f->cfg.dim; j++) out[j] = 1.0f;
    return 0;
}

static int fused_lm_head(void *ctx, float *out, rb_error *err) {
    rb_fused *f = ctx;
    float *g = rb_alloc((size_t)f->cfg.dim * sizeof(float));
    if (!g) return rb_error_set(err, RB_ENOMEM, "fuse: out of memory");
    int rc = f->base.load_final_norm(f->base.ctx, g, err);
    if (!rc) rc = f->base.load_lm_head(f->base.ctx, out, err);
    if (!rc) rotate_rows(f, out, (size_t)f->cfg.vocab_size, g, 0, basis(f, f->cfg.n_layers, 0));
    rb_free(g);
    return rc;
}

rb_weights_src rb_fused_src(rb_fused *f) {
    rb_weights_src s = {f, fused_load_layer, fused_embed, fused_final_norm, fused_lm_head};
    return s;
}

/* R3: x[rows][heads·hd] viewed as [rows·heads][hd]. */
int rb_hook_had_heads(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    const rb_had *h = ctx;
    if (rb_had_apply_rows(h, x, (size_t)in->n_seq * in->seq_len * in->n_groups))
        return rb_error_set(err, RB_ENOMEM, "R3: out of memory");
    return 0;
}

int rb_hook_had_heads_bwd(void *ctx, const rb_site_info *in, const float *x_in, float *dx, rb_error *err) {
    (void)x_in;
    const rb_had *h = ctx;
    if (rb_had_apply_rows_t(h, dx, (size_t)in->n_seq * in->seq_len * in->n_groups))
        return rb_error_set(err, RB_ENOMEM, "R3 backward: out of memory");
    return 0;
}

int rb_hook_had_rows(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    const rb_had *h = ctx;
    if (rb_had_apply_rows(h, x, (size_t)in->n_seq * in->seq_len)) return rb_error_set(err, RB_ENOMEM, "R4: out of memory");
    return 0;
}

int rb_hook_had_rows_bwd(void *ctx, const rb_site_info *in, const float *x_in, float *dx, rb_error *err) {
    (void)x_in;
    const rb_had *h = ctx;
    if (rb_had_apply_rows_t(h, dx, (size_t)in->n_seq * in->seq_len))
        return rb_error_set(err, RB_ENOMEM, "R4 backward: out of memory");
    return 0;
}

int rb_had_cross_rows(const rb_had *h, float *x, size_t rows, int nh, int hd, int transpose) {
    float *t = malloc(sizeof(float) * (size_t)nh * hd);
    if (!t) return RB_ENOMEM;
    int rc = 0;
    for (size_t r = 0; r < rows && !rc; r++) {
        float *row = x + r * (size_t)nh * hd;
        for (int a = 0; a < nh; a++)
            for (int b = 0; b < hd; b++) t[(size_t)b * nh + a] = row[(size_t)a * hd + b];
        rc = transpose ? rb_had_apply_rows_t(h, t, (size_t)hd) : rb_had_apply_rows(h, t, (size_t)hd);
        for (int a = 0; a < nh; a++)
            for (int b = 0; b < hd; b++) row[(size_t)a * hd + b] = t[(size_t)b * nh + a];
    }
    free(t);
    return rc ? RB_ENOMEM : 0;
}

/* Cross-head: each token's o_proj input [heads][hd] → C applied across heads (x ↦ x·(C ⊗ I)). */
int rb_hook_had_cross(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    if (rb_had_cross_rows(ctx, x, (size_t)in->n_seq * in->seq_len, in->n_groups, in->group_dim, 0))
        return rb_error_set(err, RB_ENOMEM, "cross-head: out of memory");
    return 0;
}

int rb_hook_had_cross_bwd(void *ctx, const rb_site_info *in, const float *x_in, float *dx, rb_error *err) {
    (void)x_in;
    if (rb_had_cross_rows(ctx, dx, (size_t)in->n_seq * in->seq_len, in->n_groups, in->group_dim, 1))
        return rb_error_set(err, RB_ENOMEM, "cross-head backward: out of memory");
    return 0;
}

/* The RUQuant transform at the hook's site (NULL: none) and scratch for it. */
static const rb_ruq_site *ruq_site_for(rb_fused *f, const rb_site_info *in, int *rc, rb_error *err) {
    *rc = 0;
    int k = rb_ruq_site_at(in->site);
    if (k < 0) return NULL;
    RB_ASSERT(in->layer >= 0 && (!f->rs || in->layer < f->rs->n_layers));
    const rb_ruq_site *q = ruq_at(f, in->layer, k);
    if (!q) return NULL;
    RB_ASSERT(q->n == in->cols);
    size_t rows = (size_t)in->n_seq * in->seq_len, need = rows * (size_t)in->cols;
    if (need > f->ruq_cap) {
        rb_free(f->ruq_tmp);
        f->ruq_cap = 0;
        if (!(f->ruq_tmp = rb_alloc(need * sizeof(float)))) {
            *rc = rb_error_set(err, RB_ENOMEM, "RUQuant: out of memory for %zu rows of %d", rows, in->cols);
            return NULL;
        }
        f->ruq_cap = need;
    }
    return q;
}

int rb_hook_ruq(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    int rc;
    const rb_ruq_site *q = ruq_site_for(ctx, in, &rc, err);
    if (q) rb_ruq_apply_act_f(q, x, (size_t)in->n_seq * in->seq_len, ((rb_fused *)ctx)->ruq_tmp, q->scale_fused);
    return rc;
}

int rb_hook_ruq_bwd(void *ctx, const rb_site_info *in, const float *x_in, float *dx, rb_error *err) {
    (void)x_in;
    int rc;
    const rb_ruq_site *q = ruq_site_for(ctx, in, &rc, err);
    if (q) rb_ruq_apply_act_t_f(q, dx, (size_t)in->n_seq * in->seq_len, ((rb_fused *)ctx)->ruq_tmp, q->scale_fused);
    return rc;
}

int rb_hook_ruq_inverse(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    int rc;
    const rb_ruq_site *q = ruq_site_for(ctx, in, &rc, err);
    if (q) rb_ruq_unapply_act_f(q, x, (size_t)in->n_seq * in->seq_len, ((rb_fused *)ctx)->ruq_tmp);
    return rc;
}

void rb_fused_add_online_hooks(rb_fused *f, rb_hooks *hk) {
    if (f->has_ch) rb_hooks_add_bwd(hk, RB_SITE_O_IN, rb_hook_had_cross, rb_hook_had_cross_bwd, 0, &f->ch);
    if (f->has_r3) {
        rb_hooks_add_bwd(hk, RB_SITE_Q, rb_hook_had_heads, rb_hook_had_heads_bwd, 0, &f->r3);
        rb_hooks_add_bwd(hk, RB_SITE_K, rb_hook_had_heads, rb_hook_had_heads_bwd, 0, &f->r3);
    }
    if (f->has_r4) rb_hooks_add_bwd(hk, RB_SITE_DOWN_IN, rb_hook_had_rows, rb_hook_had_rows_bwd, 0, &f->r4);
    /* After the Hadamards: the RUQuant transforms were fitted on (and fused after) them. Added
     * whenever the set can hold RUQuant transforms, since calibration fills it afterwards. */
    if (f->rs && f->rs->ruq) {
        for (int k = 0; k < RB_RUQ_NSITES; k++)
            rb_hooks_add_bwd(hk, rb_ruq_forward_site(k), rb_hook_ruq, rb_hook_ruq_bwd, 0, f);
    }
    if (f->has_junc && rb_junctions_any(&f->junc)) {
        int acc = f->junc.acc_in || f->junc.acc_out;
        rb_hooks_add_bwd(hk, RB_SITE_RES_ATTN, rb_hook_junction, rb_hook_junction_bwd, acc, &f->junc);
        rb_hooks_add_bwd(hk, RB_SITE_RES_MLP, rb_hook_junction, rb_hook_junction_bwd, acc, &f->junc);
    }
}

#include "model/rb_backward.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_math.h"

static size_t site_width(const rb_llama_config *c, int site) {
    switch (site) {
    case RB_SITE_ATTN_IN:
    case RB_SITE_MLP_IN:
    case RB_SITE_RES_ATTN:
    case RB_SITE_RES_MLP: return (size_t)c->dim;
    case RB_SITE_Q:
    case RB_SITE_O_IN: return (size_t)c->n_heads * c->head_dim;
    case RB_SITE_K:
    case RB_SITE_V: return (size_t)c->n_kv_heads * c->head_dim;
    default: return (size_t)c->hidden_dim;
    }
}

size_t rb_backward_bytes(const rb_llama_config *c, int max_T, int max_rows) {
    size_t R = (size_t)max_rows, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    return sizeof(float) * (R * (2 * (size_t)c->dim + 2 * (size_t)c->hidden_dim + 4 * qd + 2 * kvd) +
                            2 * (size_t)RB_ATT_QBLOCK * max_T) +
           sizeof(double) * (size_t)c->dim;
}

void rb_backward_free(rb_backward *b) {
    float **bufs[] = {&b->xa, &b->dxa, &b->ua, &b->du, &b->o, &b->dO, &b->dq, &b->dk, &b->dv, &b->pre, &b->S, &b->dP};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) rb_free(*bufs[i]);
    rb_free(b->dg);
    for (int s = 0; s < RB_HOOK_SITES; s++)
        for (int i = 0; i < RB_MAX_HOOKS_PER_SITE; i++) rb_free(b->saved[s][i]);
    memset(b, 0, sizeof *b);
}

int rb_backward_init(rb_backward *b, const rb_llama_config *c, int max_T, int max_rows, rb_error *err) {
    memset(b, 0, sizeof *b);
    RB_ASSERT(max_T > 0 && max_rows >= max_T);
    b->cfg = *c;
    b->max_T = max_T;
    b->max_rows = max_rows;
    size_t R = (size_t)max_rows, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t fs = sizeof(float);
    b->xa = rb_alloc(R * c->dim * fs);
    b->dxa = rb_alloc(R * c->dim * fs);
    b->ua = rb_alloc(R * c->hidden_dim * fs);
    b->du = rb_alloc(R * c->hidden_dim * fs);
    b->o = rb_alloc(R * qd * fs);
    b->dO = rb_alloc(R * qd * fs);
    b->dq = rb_alloc(R * qd * fs);
    b->dk = rb_alloc(R * kvd * fs);
    b->dv = rb_alloc(R * kvd * fs);
    b->pre = rb_alloc(R * qd * fs);
    b->S = rb_alloc((size_t)RB_ATT_QBLOCK * max_T * fs);
    b->dP = rb_alloc((size_t)RB_ATT_QBLOCK * max_T * fs);
    b->dg = rb_alloc((size_t)c->dim * sizeof(double));
    if (!b->xa || !b->dxa || !b->ua || !b->du || !b->o || !b->dO || !b->dq || !b->dk || !b->dv || !b->pre || !b->S ||
        !b->dP || !b->dg) {
        rb_backward_free(b);
        return rb_error_set(err, RB_ENOMEM, "backward: out of memory for %d rows (%.1f MiB of scratch)", max_rows,
                            rb_backward_bytes(c, max_T, max_rows) / 1048576.0);
    }
    return 0;
}

int rb_hooks_check_backward(const rb_hooks *hk, int layer, rb_error *err) {
    for (int s = 0; hk && s < RB_HOOK_SITES; s++)
        for (int i = 0; i < hk->n[s]; i++)
            if (!hk->bwd[s][i]) {
                char where[32] = "";
                if (layer >= 0) snprintf(where, sizeof where, "layer %d, ", layer);
                return rb_error_set(err, RB_EUNSUPPORTED,
                                    "backward: %ssite %s: hook %d of %d has no backward (this transform cannot be "
                                    "trained through)",
                                    where, rb_site_name(s), i + 1, hk->n[s]);
            }
    return 0;
}

void rb_rmsnorm_backward(const float *x, const float *g, const float *dy, float *dx, double *dg, size_t rows,
                         int dim, double eps) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * (size_t)dim, *dyr = dy + r * (size_t)dim;
        float *dxr = dx + r * (size_t)dim;
        double ss = 0.0, dot = 0.0;
        for (int j = 0; j < dim; j++) {
            ss += (double)xr[j] * xr[j];
            dot += (double)dyr[j] * (g ? g[j] : 1.0f) * xr[j];
        }
        double s = 1.0 / sqrt(ss / dim + eps);
        double coef = s * s * s * dot / dim;
        for (int j = 0; j < dim; j++)
            dxr[j] += (float)(s * (g ? g[j] : 1.0f) * dyr[j] - xr[j] * coef);
        if (dg)
            for (int j = 0; j < dim; j++) dg[j] += (double)dyr[j] * xr[j] * s;
    }
}

/* Hook inputs kept for site `site` hook i (allocated on first need). */
static float *saved_buf(rb_backward *b, int site, int i, rb_error *err) {
    if (!b->saved[site][i]) {
        size_t n = (size_t)b->max_rows * site_width(&b->cfg, site);
        if (!(b->saved[site][i] = rb_alloc(n * sizeof(float)))) {
            rb_error_set(err, RB_ENOMEM, "backward: out of memory keeping a hook input at site %s", rb_site_name(site));
            return NULL;
        }
    }
    return b->saved[site][i];
}

/* rb_site_info_at for `site` at its width in this config; returns the width. */
static int info_at(const rb_backward *b, rb_site_info *info, int site, int groups) {
    int cols = (int)site_width(&b->cfg, site);
    rb_site_info_at(info, site, cols, groups);
    return cols;
}

/* Reruns the hooks of `site` on x (the site's tensor before its hooks → after them), keeping the input
 * of each hook whose backward needs it. */
static int replay(rb_backward *b, const rb_hooks *hk, rb_site_info *info, int site, int groups, float *x,
                  rb_error *err) {
    int cols = info_at(b, info, site, groups);
    size_t n = (size_t)info->n_seq * info->seq_len * cols;
    for (int i = 0; hk && i < hk->n[site]; i++) {
        if (hk->needs_input[site][i]) {
            float *keep = saved_buf(b, site, i, err);
            if (!keep) return RB_ENOMEM;
            memcpy(keep, x, n * sizeof(float));
        }
        int rc = hk->fn[site][i](hk->ctx[site][i], info, x, err);
        if (rc > 0)
            return rb_error_set(err, RB_EINVAL, "backward: layer %d, site %s: a hook stopped the layer", info->layer,
                                rb_site_name(site));
        if (rc) return rc;
    }
    return 0;
}

/* dx ← the gradient before the hooks of `site` (in reverse order). */
static int site_backward(rb_backward *b, const rb_hooks *hk, rb_site_info *info, int site, int groups, float *dx,
                         rb_error *err) {
    info_at(b, info, site, groups);
    for (int i = hk ? hk->n[site] - 1 : -1; i >= 0; i--) {
        RB_ASSERT(hk->bwd[site][i]); /* rb_hooks_check_backward ran first */
        int rc = hk->bwd[site][i](hk->ctx[site][i], info, hk->needs_input[site][i] ? b->saved[site][i] : NULL, dx,
                                  err);
        if (rc) return rc;
    }
    return 0;
}

static int site_needs_input(const rb_hooks *hk, int site) {
    for (int i = 0; hk && i < hk->n[site]; i++)
        if (hk->needs_input[site][i]) return 1;
    return 0;
}

/* Causal attention backward of one sequence: dq (overwritten), dk, dv (overwritten) from dO, with P
 * recomputed per query block from lse. O is the forward's attention output (D = rowsum(dO∘O)). */
static void attention_bwd_seq(rb_backward *b, const float *q, const float *k, const float *v, const float *O,
                              const float *lse, const float *dO, float *dq, float *dk, float *dv, int T) {
    const rb_llama_config *c = &b->cfg;
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    float scale = (float)(1.0 / sqrt((double)hd));
    memset(dk, 0, sizeof(float) * (size_t)T * kvd);
    memset(dv, 0, sizeof(float) * (size_t)T * kvd);
    for (int h = 0; h < c->n_heads; h++) {
        int kh = h / group;
        for (int i0 = 0; i0 < T; i0 += RB_ATT_QBLOCK) {
            int bq = T - i0 < RB_ATT_QBLOCK ? T - i0 : RB_ATT_QBLOCK;
            int nk = i0 + bq;
            const float *qb = q + (size_t)i0 * qd + h * hd, *dOb = dO + (size_t)i0 * qd + h * hd;
            float *P = b->S, *dS = b->dP;
            rb_sgemm(0, 1, bq, nk, hd, scale, qb, qd, k + kh * hd, kvd, 0.0f, P, nk);
            for (int r = 0; r < bq; r++) {
                float *row = P + (size_t)r * nk;
                int len = i0 + r + 1;
                rb_vexp_shift(row, len, lse[(size_t)(i0 + r) * c->n_heads + h]);
                for (int j = len; j < nk; j++) row[j] = 0.0f;
            }
            rb_sgemm(1, 0, nk, hd, bq, 1.0f, P, nk, dOb, qd, 1.0f, dv + kh * hd, kvd); /* dV += Pᵀ dO */
            rb_sgemm(0, 1, bq, nk, hd, 1.0f, dOb, qd, v + kh * hd, kvd, 0.0f, dS, nk);  /* dP = dO Vᵀ */
            for (int r = 0; r < bq; r++) {
                const float *o = O + (size_t)(i0 + r) * qd + h * hd, *g = dOb + (size_t)r * qd;
                double D = 0.0;
                for (int j = 0; j < hd; j++) D += (double)g[j] * o[j];
                float Df = (float)D, *pr = P + (size_t)r * nk, *sr = dS + (size_t)r * nk;
                int len = i0 + r + 1;
                for (int j = 0; j < len; j++) sr[j] = pr[j] * (sr[j] - Df);
                for (int j = len; j < nk; j++) sr[j] = 0.0f;
            }
            rb_sgemm(0, 0, bq, hd, nk, scale, dS, nk, k + kh * hd, kvd, 0.0f, dq + (size_t)i0 * qd + h * hd, qd);
            rb_sgemm(1, 0, nk, hd, bq, scale, dS, nk, qb, qd, 1.0f, dk + kh * hd, kvd);
        }
    }
}

/* Residual junction `site` (h_out = hooks(h) + branch): dh ← its backward of dh, replaying the hooks
 * from the recorded stream h into scratch first when one of them needs its input. */
static int junction_backward(rb_backward *b, const rb_hooks *hk, rb_site_info *info, int site, const float *h,
                             float *scratch, float *dh, rb_error *err) {
    if (!hk || !hk->n[site]) return 0;
    if (site_needs_input(hk, site)) {
        memcpy(scratch, h, sizeof(float) * (size_t)info->n_seq * info->seq_len * b->cfg.dim);
        int rc = replay(b, hk, info, site, 1, scratch, err);
        if (rc) return rc;
    }
    return site_backward(b, hk, info, site, 1, dh, err);
}

static void add_dg(float *dst, const double *dg, int n) {
    for (int j = 0; j < n; j++) dst[j] += (float)dg[j];
}

/* Recomputes q, k or v before its hooks into b->pre (when a hook there needs its input) and replays. */
static int replay_qkv(rb_backward *b, const rb_forward *f, const rb_layer_weights *w, const rb_hooks *hk,
                      rb_site_info *info, int site, rb_error *err) {
    const rb_llama_config *c = &b->cfg;
    if (!site_needs_input(hk, site)) return 0;
    int rows = info->n_seq * info->seq_len, d = c->dim;
    int nh = site == RB_SITE_Q ? c->n_heads : c->n_kv_heads, width = nh * c->head_dim;
    const float *W = site == RB_SITE_Q ? w->wq : site == RB_SITE_K ? w->wk : w->wv;
    rb_sgemm(0, 1, rows, width, d, 1.0f, b->xa, d, W, d, 0.0f, b->pre, width);
    if (site != RB_SITE_V) rb_rope_apply(f, b->pre, info->n_seq, info->seq_len, nh, 0);
    return replay(b, hk, info, site, nh, b->pre, err);
}

int rb_backward_layer(rb_backward *b, const rb_forward *f, const rb_tape *t, const rb_layer_weights *w,
                      const rb_hooks *hk, float *dh, rb_layer_weights *dw, rb_error *err) {
    const rb_llama_config *c = &b->cfg;
    int n_seq = t->n_seq, T = t->T, rows = n_seq * T, d = c->dim, hd = c->head_dim;
    int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd, ff = c->hidden_dim;
    RB_ASSERT(T <= b->max_T && rows <= b->max_rows && T <= f->max_T);
    rb_site_info info = {.layer = t->layer, .n_seq = n_seq, .seq_len = T, .seq_offset = t->seq_offset};
    size_t R = (size_t)rows, n_ff = R * ff;
    int rc = rb_hooks_check_backward(hk, t->layer, err);
    if (rc) return rc;

    /* ---- MLP block: h_out = h_mid + down(SwiGLU(gate(m), up(m))), m = hooks(RMSNorm(h_mid)) ---- */
    rb_rmsnorm(b->xa, t->h_mid, w->rms_ffn, R, d, c->rms_eps);
    if ((rc = replay(b, hk, &info, RB_SITE_MLP_IN, 1, b->xa, err))) return rc;
    for (size_t i = 0; i < n_ff; i++) b->ua[i] = rb_swiglu(t->gate[i], t->up[i]);
    if ((rc = replay(b, hk, &info, RB_SITE_DOWN_IN, 1, b->ua, err))) return rc;
    rb_sgemm(0, 0, rows, ff, d, 1.0f, dh, d, w->w_down, ff, 0.0f, b->du, ff);
    if (dw) rb_sgemm(1, 0, d, ff, rows, 1.0f, dh, d, b->ua, ff, 1.0f, dw->w_down, ff);
    if ((rc = site_backward(b, hk, &info, RB_SITE_DOWN_IN, 1, b->du, err))) return rc;
    for (size_t i = 0; i < n_ff; i++) { /* SiLU(g)·u: d(up) into ua, d(gate) into du */
        float g = t->gate[i], sig = 1.0f / (1.0f + rb_expf_fast(-g)), ds = b->du[i];
        b->ua[i] = ds * g * sig;
        b->du[i] = ds * t->up[i] * sig * (1.0f + g * (1.0f - sig));
    }
    rb_sgemm(0, 0, rows, d, ff, 1.0f, b->du, ff, w->w_gate, d, 0.0f, b->dxa, d);
    rb_sgemm(0, 0, rows, d, ff, 1.0f, b->ua, ff, w->w_up, d, 1.0f, b->dxa, d);
    if (dw) {
        rb_sgemm(1, 0, ff, d, rows, 1.0f, b->du, ff, b->xa, d, 1.0f, dw->w_gate, d);
        rb_sgemm(1, 0, ff, d, rows, 1.0f, b->ua, ff, b->xa, d, 1.0f, dw->w_up, d);
    }
    if ((rc = site_backward(b, hk, &info, RB_SITE_MLP_IN, 1, b->dxa, err))) return rc;
    /* dh still holds dL/dh_out (the products above only read it); h_out = J(h_mid) + mlp(h_mid) */
    if ((rc = junction_backward(b, hk, &info, RB_SITE_RES_MLP, t->h_mid, b->xa, dh, err))) return rc;
    memset(b->dg, 0, sizeof(double) * d);
    rb_rmsnorm_backward(t->h_mid, w->rms_ffn, b->dxa, dh, dw ? b->dg : NULL, R, d, c->rms_eps);
    if (dw) add_dg(dw->rms_ffn, b->dg, d);

    /* ---- attention block: h_mid = h_in + o(hooks(attention(q, k, v))) ---- */
    rb_rmsnorm(b->xa, t->h_in, w->rms_att, R, d, c->rms_eps);
    if ((rc = replay(b, hk, &info, RB_SITE_ATTN_IN, 1, b->xa, err))) return rc;
    memcpy(b->o, t->att, R * qd * sizeof(float));
    if ((rc = replay(b, hk, &info, RB_SITE_O_IN, c->n_heads, b->o, err))) return rc;
    rb_sgemm(0, 0, rows, qd, d, 1.0f, dh, d, w->wo, qd, 0.0f, b->dO, qd);
    if (dw) rb_sgemm(1, 0, d, qd, rows, 1.0f, dh, d, b->o, qd, 1.0f, dw->wo, qd);
    if ((rc = site_backward(b, hk, &info, RB_SITE_O_IN, c->n_heads, b->dO, err))) return rc;
    for (int s = 0; s < n_seq; s++) {
        size_t r0 = (size_t)s * T;
        attention_bwd_seq(b, t->q + r0 * qd, t->k + r0 * kvd, t->v + r0 * kvd, t->att + r0 * qd,
                          t->lse + r0 * c->n_heads, b->dO + r0 * qd, b->dq + r0 * qd, b->dk + r0 * kvd,
                          b->dv + r0 * kvd, T);
    }
    static const int qkv[3] = {RB_SITE_Q, RB_SITE_K, RB_SITE_V};
    float *dqkv[3] = {b->dq, b->dk, b->dv};
    for (int i = 0; i < 3; i++) {
        int nh = qkv[i] == RB_SITE_Q ? c->n_heads : c->n_kv_heads;
        if ((rc = replay_qkv(b, f, w, hk, &info, qkv[i], err)) ||
            (rc = site_backward(b, hk, &info, qkv[i], nh, dqkv[i], err)))
            return rc;
    }
    rb_rope_apply(f, b->dq, n_seq, T, c->n_heads, 1);
    rb_rope_apply(f, b->dk, n_seq, T, c->n_kv_heads, 1);
    rb_sgemm(0, 0, rows, d, qd, 1.0f, b->dq, qd, w->wq, d, 0.0f, b->dxa, d);
    rb_sgemm(0, 0, rows, d, kvd, 1.0f, b->dk, kvd, w->wk, d, 1.0f, b->dxa, d);
    rb_sgemm(0, 0, rows, d, kvd, 1.0f, b->dv, kvd, w->wv, d, 1.0f, b->dxa, d);
    if (dw) {
        rb_sgemm(1, 0, qd, d, rows, 1.0f, b->dq, qd, b->xa, d, 1.0f, dw->wq, d);
        rb_sgemm(1, 0, kvd, d, rows, 1.0f, b->dk, kvd, b->xa, d, 1.0f, dw->wk, d);
        rb_sgemm(1, 0, kvd, d, rows, 1.0f, b->dv, kvd, b->xa, d, 1.0f, dw->wv, d);
    }
    if ((rc = site_backward(b, hk, &info, RB_SITE_ATTN_IN, 1, b->dxa, err))) return rc;
    if ((rc = junction_backward(b, hk, &info, RB_SITE_RES_ATTN, t->h_in, b->xa, dh, err))) return rc;
    memset(b->dg, 0, sizeof(double) * d);
    rb_rmsnorm_backward(t->h_in, w->rms_att, b->dxa, dh, dw ? b->dg : NULL, R, d, c->rms_eps);
    if (dw) add_dg(dw->rms_att, b->dg, d);
    return 0;
}

/* rb_optrot: OptRot / OptRot⁺ loss and gradients (formulas in rb_optrot.h), and the Hessian
 * statistics OptRot⁺ weights them with. */
#include "methods/rb_optrot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "model/rb_stream.h"

/* Calibration forward: windows per rb_llama_hidden call are limited so that their hidden states
 * stay below this (each call reloads every layer, so larger chunks only save reloads). */
#define OPTROT_CALIB_CHUNK_BYTES ((size_t)256 << 20)

static const char *const mat_names[RB_OPTROT_NMAT] = {"q", "k", "v", "o", "gate", "up", "down"};

const char *rb_optrot_mat_name(int m) {
    RB_ASSERT(m >= 0 && m < RB_OPTROT_NMAT);
    return mat_names[m];
}

static size_t mat_elems(const rb_llama_config *c, int m) {
    int r, k;
    rb_layer_linear_shape(c, m, &r, &k);
    return (size_t)r * (size_t)k;
}

/* Bytes of one layer as rb_layer_weights_init allocates it. */
static size_t layer_bytes(const rb_llama_config *c) {
    size_t b = 2 * (size_t)c->dim;
    for (int m = 0; m < RB_OPTROT_NMAT; m++) b += mat_elems(c, m);
    return b * sizeof(float);
}

static int max3(int a, int b, int c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

void rb_optrot_free(rb_optrot *p) {
    if (p->cache)
        for (int l = 0; l < p->cfg.n_layers; l++) rb_layer_weights_free(&p->cache[l]);
    free(p->cache);
    rb_layer_weights_free(&p->buf);
    if (p->hess)
        for (int l = 0; l < p->cfg.n_layers; l++) {
            rb_free(p->hess[l].attn);
            rb_free(p->hess[l].mlp);
            rb_free(p->hess[l].o);
            rb_free(p->hess[l].down);
        }
    free(p->hess);
    free(p->fro2);
    float *fb[] = {p->r1f, p->r2f, p->g1f, p->g2f, p->wt, p->nb, p->mb, p->hr, p->hro, p->cf};
    for (size_t i = 0; i < sizeof fb / sizeof *fb; i++) rb_free(fb[i]);
    double *db[] = {p->dt, p->cw, p->cs, p->st};
    for (size_t i = 0; i < sizeof db / sizeof *db; i++) rb_free(db[i]);
    memset(p, 0, sizeof *p);
}

int rb_optrot_init(rb_optrot *p, const rb_weights_src *src, const rb_llama_config *c, const rb_optrot_opts *o,
                   rb_error *err) {
    memset(p, 0, sizeof *p);
    p->cfg = *c;
    p->src = *src;
    p->o = *o;
    const size_t d = (size_t)c->dim, hd = (size_t)c->head_dim, nh = (size_t)c->n_heads, L = (size_t)c->n_layers;
    const size_t qd = nh * hd, kvd = (size_t)c->n_kv_heads * hd, dff = (size_t)c->hidden_dim;
    size_t maxmat = 0;
    for (int m = 0; m < RB_OPTROT_NMAT; m++)
        if (mat_elems(c, m) > maxmat) maxmat = mat_elems(c, m);
    size_t vmax = (size_t)max3((int)d, (int)qd, (int)dff);
    p->fro2 = calloc(L * RB_OPTROT_NMAT, sizeof *p->fro2);
    p->cache = calloc(L ? L : 1, sizeof *p->cache);
    p->r1f = rb_alloc(d * d * sizeof(float));
    p->g1f = rb_alloc(d * d * sizeof(float));
    p->r2f = rb_alloc(hd * hd * sizeof(float));
    p->g2f = rb_alloc(hd * hd * sizeof(float));
    p->wt = rb_alloc(maxmat * sizeof(float));
    p->nb = rb_alloc(d * (qd > kvd ? qd : kvd) * sizeof(float));
    p->mb = rb_alloc(d * qd * sizeof(float));
    p->cf = rb_alloc(vmax * sizeof(float));
    p->dt = rb_alloc(vmax * sizeof(double));
    p->cw = rb_alloc(vmax * sizeof(double));
    p->cs = rb_alloc(vmax * sizeof(double));
    p->st = rb_alloc(vmax * sizeof(double));
    int bad = !p->fro2 || !p->cache || !p->r1f || !p->g1f || !p->r2f || !p->g2f || !p->wt || !p->nb || !p->mb ||
              !p->cf || !p->dt || !p->cw || !p->cs || !p->st;
    if (!bad && o->plus) {
        p->hr = rb_alloc(d * d * sizeof(float));
        p->hro = rb_alloc(qd * hd * sizeof(float));
        p->hess = calloc(L ? L : 1, sizeof *p->hess);
        bad = !p->hr || !p->hro || !p->hess;
        for (size_t l = 0; !bad && l < L; l++) {
            rb_optrot_hess *h = &p->hess[l];
            h->attn = rb_calloc(d * d, sizeof(float));
            h->mlp = rb_calloc(d * d, sizeof(float));
            h->o = rb_calloc(qd * hd, sizeof(float));
            h->down = rb_calloc(dff, sizeof(double));
            bad = !h->attn || !h->mlp || !h->o || !h->down;
        }
    }
    if (bad) {
        rb_optrot_free(p);
        return rb_error_set(err, RB_ENOMEM, "optrot: out of memory");
    }
    int rc = rb_layer_weights_init(&p->buf, c, err);
    size_t used = 0, lb = layer_bytes(c);
    for (size_t l = 0; !rc && l < L; l++) {
        rb_layer_weights *w = &p->buf;
        if (used + lb <= o->cache_bytes) { /* cache while the budget lasts; later layers stream */
            if ((rc = rb_layer_weights_init(&p->cache[l], c, err))) break;
            w = &p->cache[l];
            used += lb;
            p->n_cached++;
        }
        if ((rc = p->src.load_layer(p->src.ctx, (int)l, w, err))) break;
        for (int m = 0; m < RB_OPTROT_NMAT; m++) {
            int r, k;
            const float *x = rb_layer_linear(w, c, m, &r, &k);
            size_t n = (size_t)r * (size_t)k;
            double s = 0;
            for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
            p->fro2[l * RB_OPTROT_NMAT + (size_t)m] = s;
        }
    }
    if (rc) rb_optrot_free(p);
    return rc;
}

/* ---- OptRot⁺ statistics ---- */

typedef struct hess_acc {
    rb_optrot *p;
    long *ntok; /* [n_layers] tokens seen at attn_in */
} hess_acc;

/* Accumulates Σ xᵀx (fp32 sgemm with β = 1: each call sums ≤ a few thousand tokens inside the
 * GEMM, so the running sum has O(chunks) fp32 additions per entry, not O(tokens)). */
static int hess_hook(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    (void)err;
    hess_acc *a = ctx;
    rb_optrot_hess *h = &a->p->hess[in->layer];
    int rows = in->n_seq * in->seq_len, n = in->cols;
    switch (in->site) {
    case RB_SITE_ATTN_IN:
        rb_sgemm(1, 0, n, n, rows, 1.0f, x, n, x, n, 1.0f, h->attn, n);
        a->ntok[in->layer] += rows;
        break;
    case RB_SITE_MLP_IN: rb_sgemm(1, 0, n, n, rows, 1.0f, x, n, x, n, 1.0f, h->mlp, n); break;
    case RB_SITE_O_IN: {
        int gd = in->group_dim;
        for (int g = 0; g < in->n_groups; g++)
            rb_sgemm(1, 0, gd, gd, rows, 1.0f, x + (size_t)g * gd, n, x + (size_t)g * gd, n, 1.0f,
                     h->o + (size_t)g * gd * gd, gd);
        break;
    }
    case RB_SITE_DOWN_IN:
        for (int r = 0; r < rows; r++) {
            const float *xr = x + (size_t)r * n;
            for (int j = 0; j < n; j++) h->down[j] += (double)xr[j] * xr[j];
        }
        break;
    default: break;
    }
    return 0;
}

/* Each of the nb blocks A [n][n] ← f·(A + Aᵀ)/2. */
static void sym_scale(float *A, int n, int nb, float f) {
    for (int b = 0; b < nb; b++) {
        float *M = A + (size_t)b * n * n;
        for (int i = 0; i < n; i++) {
            M[(size_t)i * n + i] *= f;
            for (int j = i + 1; j < n; j++) {
                float v = 0.5f * f * (M[(size_t)i * n + j] + M[(size_t)j * n + i]);
                M[(size_t)i * n + j] = M[(size_t)j * n + i] = v;
            }
        }
    }
}

int rb_optrot_hessians(rb_optrot *p, const rb_hooks *online, const int32_t *win, int n, int T, rb_error *err) {
    RB_ASSERT(p->o.plus && p->hess);
    const rb_llama_config *c = &p->cfg;
    if (n < 1 || T < 1) return rb_error_set(err, RB_EINVAL, "optrot+: need calibration windows (got %d of %d tokens)", n, T);
    const size_t d = (size_t)c->dim, hd = (size_t)c->head_dim, qd = (size_t)c->n_heads * hd;
    for (int l = 0; l < c->n_layers; l++) {
        rb_optrot_hess *h = &p->hess[l];
        memset(h->attn, 0, d * d * sizeof(float));
        memset(h->mlp, 0, d * d * sizeof(float));
        memset(h->o, 0, qd * hd * sizeof(float));
        memset(h->down, 0, (size_t)c->hidden_dim * sizeof(double));
    }
    hess_acc acc = {p, calloc((size_t)c->n_layers + 1, sizeof(long))};
    size_t chunk = OPTROT_CALIB_CHUNK_BYTES / ((size_t)T * d * sizeof(float));
    if (chunk < 1) chunk = 1;
    if (chunk > (size_t)n) chunk = (size_t)n;
    float *hn = rb_alloc(chunk * (size_t)T * d * sizeof(float));
    if (!acc.ntok || !hn) {
        free(acc.ntok);
        rb_free(hn);
        return rb_error_set(err, RB_ENOMEM, "optrot+: out of memory for the calibration forward");
    }
    rb_hooks hk;
    if (online) hk = *online;
    else rb_hooks_init(&hk);
    static const int sites[] = {RB_SITE_ATTN_IN, RB_SITE_O_IN, RB_SITE_MLP_IN, RB_SITE_DOWN_IN};
    for (int i = 0; i < 4; i++) rb_hooks_add(&hk, sites[i], hess_hook, &acc);
    int rc = 0;
    for (int s0 = 0; s0 < n && !rc; s0 += (int)chunk) {
        int ns = n - s0 < (int)chunk ? n - s0 : (int)chunk;
        rc = rb_llama_hidden(&p->src, c, win + (size_t)s0 * T, ns, T, s0, &hk, hn, err);
    }
    for (int l = 0; !rc && l < c->n_layers; l++) {
        RB_ASSERT(acc.ntok[l] == (long)n * T);
        float sf = 1.0f / (float)acc.ntok[l];
        double sd = 1.0 / (double)acc.ntok[l];
        rb_optrot_hess *h = &p->hess[l];
        /* scale, and make exactly symmetric (the two triangles come from differently ordered sgemm sums; the
         * gradient through D̃ assumes H = Hᵀ) */
        sym_scale(h->attn, (int)d, 1, sf);
        sym_scale(h->mlp, (int)d, 1, sf);
        sym_scale(h->o, (int)hd, c->n_heads, sf);
        for (int j = 0; j < c->hidden_dim; j++) h->down[j] *= sd;
    }
    if (!rc) p->hess_tokens = (long)n * T;
    free(acc.ntok);
    rb_free(hn);
    return rc;
}

/* ---- loss and gradient ---- */

/* The loss weight s of matrix m of layer l (see rb_optrot.h); mean_h = tr H/n of its input. */
static double mat_scale(const rb_optrot *p, int l, int m, double mean_h) {
    double s = 1.0;
    if (p->o.normalize) {
        double f = p->fro2[(size_t)l * RB_OPTROT_NMAT + (size_t)m];
        if (f > 0) s /= f * f;
        if (p->o.plus && mean_h > 0) s /= mean_h * mean_h;
    }
    return s;
}

/* One pass over W̃ [rows][cols]: cs_j = Σ_i W̃_ij⁴ (double); with grad, W̃ ← G̃ = cf_j·W̃³ in place
 * (cf_j = 4·s·c_j). Returns s·Σ_j c_j·cs_j (c NULL: c = 1). */
static double quartic(rb_optrot *p, float *w, int rows, int cols, double s, const double *c, int grad) {
    double *cs = p->cs;
    float *cf = p->cf;
    for (int j = 0; j < cols; j++) {
        cs[j] = 0;
        cf[j] = (float)(4.0 * s * (c ? c[j] : 1.0));
    }
    for (int i = 0; i < rows; i++) {
        float *r = w + (size_t)i * cols;
        if (grad)
            for (int j = 0; j < cols; j++) {
                float x = r[j];
                double x2 = (double)x * x;
                cs[j] += x2 * x2;
                r[j] = cf[j] * (x * x * x);
            }
        else
            for (int j = 0; j < cols; j++) {
                double x2 = (double)r[j] * r[j];
                cs[j] += x2 * x2;
            }
    }
    double t = 0;
    for (int j = 0; j < cols; j++) t += (c ? c[j] : 1.0) * cs[j];
    return s * t;
}

/* OptRot⁺ weights of an input rotated by R (fp32 [n][n]) with Hessian Hm [n][n]: HR ← Hm·R,
 * dt_j = (Rᵀ·Hm·R)_jj, cw_j = dt_j². Returns tr Hm / n. */
static double rotated_diag(const float *Hm, const float *R, int n, float *HR, double *dt, double *cw) {
    rb_sgemm(0, 0, n, n, n, 1.0f, Hm, n, R, n, 0.0f, HR, n);
    double tr = 0;
    for (int j = 0; j < n; j++) dt[j] = 0, tr += Hm[(size_t)j * n + j];
    for (int a = 0; a < n; a++)
        for (int j = 0; j < n; j++) dt[j] += (double)R[(size_t)a * n + j] * HR[(size_t)a * n + j];
    for (int j = 0; j < n; j++) cw[j] = dt[j] * dt[j];
    return tr / n;
}

/* g[n][n] += 4·HR·diag(dt ∘ st): the gradient through D̃ of every matrix sharing it. */
static void add_diag_term(float *g, const float *HR, const double *dt, const double *st, int n) {
    for (int a = 0; a < n; a++)
        for (int j = 0; j < n; j++) g[(size_t)a * n + j] += (float)(4.0 * HR[(size_t)a * n + j] * dt[j] * st[j]);
}

/* Input-side matrix W [rows][d] ← W·R1: loss term, column sums into st (plus), Wᵀ·G̃ into g1f. */
static double input_side(rb_optrot *p, int l, int m, const float *W, double mean_h, int g1) {
    const int d = p->cfg.dim;
    int rows, cols;
    rb_layer_linear_shape(&p->cfg, m, &rows, &cols);
    rb_sgemm(0, 0, rows, d, d, 1.0f, W, d, p->r1f, d, 0.0f, p->wt, d);
    double s = mat_scale(p, l, m, mean_h);
    double v = quartic(p, p->wt, rows, d, s, p->o.plus ? p->cw : NULL, g1);
    if (p->o.plus)
        for (int j = 0; j < d; j++) p->st[j] += s * p->cs[j];
    if (g1) rb_sgemm(1, 0, d, d, rows, 1.0f, W, d, p->wt, d, 1.0f, p->g1f, d);
    return v;
}

/* W̃_v = blockdiag(R2ᵀ)·W_v·R1 (per KV head). */
static double v_term(rb_optrot *p, int l, const float *Wv, double mean_h, int g1, int g2) {
    const int d = p->cfg.dim, hd = p->cfg.head_dim, kvd = p->cfg.n_kv_heads * hd;
    float *N = p->nb;
    rb_sgemm(0, 0, kvd, d, d, 1.0f, Wv, d, p->r1f, d, 0.0f, N, d); /* N = W_v·R1 */
    for (int h = 0; h < p->cfg.n_kv_heads; h++)                   /* W̃_h = R2ᵀ·N_h */
        rb_sgemm(1, 0, hd, d, hd, 1.0f, p->r2f, hd, N + (size_t)h * hd * d, d, 0.0f, p->wt + (size_t)h * hd * d, d);
    double s = mat_scale(p, l, RB_OPTROT_V, mean_h);
    double v = quartic(p, p->wt, kvd, d, s, p->o.plus ? p->cw : NULL, g1 || g2);
    if (p->o.plus)
        for (int j = 0; j < d; j++) p->st[j] += s * p->cs[j];
    for (int h = 0; g2 && h < p->cfg.n_kv_heads; h++) /* ∂/∂R2 += N_h·G̃_hᵀ */
        rb_sgemm(0, 1, hd, hd, d, 1.0f, N + (size_t)h * hd * d, d, p->wt + (size_t)h * hd * d, d, 1.0f, p->g2f, hd);
    if (g1) { /* ∂/∂R1 += W_vᵀ·blockdiag(R2)·G̃ (N is free again) */
        for (int h = 0; h < p->cfg.n_kv_heads; h++)
            rb_sgemm(0, 0, hd, d, hd, 1.0f, p->r2f, hd, p->wt + (size_t)h * hd * d, d, 0.0f, N + (size_t)h * hd * d, d);
        rb_sgemm(1, 0, d, d, kvd, 1.0f, Wv, d, N, d, 1.0f, p->g1f, d);
    }
    return v;
}

/* W̃_o = R1ᵀ·W_o·blockdiag(R2) (per head column block). */
static double o_term(rb_optrot *p, int l, const float *Wo, int g1, int g2) {
    const int d = p->cfg.dim, hd = p->cfg.head_dim, nh = p->cfg.n_heads, qd = nh * hd;
    float *N = p->nb;
    rb_sgemm(1, 0, d, qd, d, 1.0f, p->r1f, d, Wo, qd, 0.0f, N, qd); /* N = R1ᵀ·W_o */
    for (int h = 0; h < nh; h++)                                    /* W̃[:,h] = N_h·R2 */
        rb_sgemm(0, 0, d, hd, hd, 1.0f, N + (size_t)h * hd, qd, p->r2f, hd, 0.0f, p->wt + (size_t)h * hd, qd);
    double mean_h = 0;
    if (p->o.plus) {
        for (int h = 0; h < nh; h++)
            mean_h += rotated_diag(p->hess[l].o + (size_t)h * hd * hd, p->r2f, hd, p->hro + (size_t)h * hd * hd,
                                   p->dt + (size_t)h * hd, p->cw + (size_t)h * hd) /
                      nh;
    }
    double s = mat_scale(p, l, RB_OPTROT_O, mean_h);
    double v = quartic(p, p->wt, d, qd, s, p->o.plus ? p->cw : NULL, g1 || g2);
    if (g1) { /* ∂/∂R1 += (W_o·B)·G̃ᵀ */
        for (int h = 0; h < nh; h++)
            rb_sgemm(0, 0, d, hd, hd, 1.0f, Wo + (size_t)h * hd, qd, p->r2f, hd, 0.0f, p->mb + (size_t)h * hd, qd);
        rb_sgemm(0, 1, d, d, qd, 1.0f, p->mb, qd, p->wt, qd, 1.0f, p->g1f, d);
    }
    if (g2) { /* ∂/∂R2 += Σ_h N_hᵀ·G̃_h (+ 4·H_h·R2·diag(s·D̃_h∘S_h)) */
        for (int h = 0; h < nh; h++) {
            rb_sgemm(1, 0, hd, hd, d, 1.0f, N + (size_t)h * hd, qd, p->wt + (size_t)h * hd, qd, 1.0f, p->g2f, hd);
            if (p->o.plus) {
                for (int j = 0; j < hd; j++) p->st[j] = s * p->cs[(size_t)h * hd + j];
                add_diag_term(p->g2f, p->hro + (size_t)h * hd * hd, p->dt + (size_t)h * hd, p->st, hd);
            }
        }
    }
    return v;
}

/* W̃_down = R1ᵀ·W_down (H4 already inside the prepared weight; its D̃ is fixed). */
static double down_term(rb_optrot *p, int l, const float *Wd, int g1) {
    const int d = p->cfg.dim, dff = p->cfg.hidden_dim;
    rb_sgemm(1, 0, d, dff, d, 1.0f, p->r1f, d, Wd, dff, 0.0f, p->wt, dff);
    double mean_h = 0;
    if (p->o.plus) {
        const double *dd = p->hess[l].down;
        for (int j = 0; j < dff; j++) p->cw[j] = dd[j] * dd[j], mean_h += dd[j] / dff;
    }
    double s = mat_scale(p, l, RB_OPTROT_DOWN, mean_h);
    double v = quartic(p, p->wt, d, dff, s, p->o.plus ? p->cw : NULL, g1);
    if (g1) rb_sgemm(0, 1, d, d, dff, 1.0f, Wd, dff, p->wt, dff, 1.0f, p->g1f, d); /* W_down·G̃ᵀ */
    return v;
}

/* Both input-side groups: {q, k, v} on attn_in and {gate, up} on mlp_in. */
static double group_term(rb_optrot *p, int l, const rb_layer_weights *w, int attn, int g1, int g2) {
    static const int attn_ms[] = {RB_OPTROT_Q, RB_OPTROT_K, RB_OPTROT_V}, mlp_ms[] = {RB_OPTROT_GATE, RB_OPTROT_UP};
    const int d = p->cfg.dim, *ms = attn ? attn_ms : mlp_ms, nm = attn ? 3 : 2;
    unsigned bits = 0;
    for (int i = 0; i < nm; i++) bits |= 1u << ms[i];
    if (!(p->o.mask & bits)) return 0;
    double mean_h = 0, v = 0;
    if (p->o.plus) {
        mean_h = rotated_diag(attn ? p->hess[l].attn : p->hess[l].mlp, p->r1f, d, p->hr, p->dt, p->cw);
        memset(p->st, 0, (size_t)d * sizeof(double));
    }
    for (int i = 0; i < nm; i++) {
        int m = ms[i];
        if (!(p->o.mask & (1u << m))) continue;
        if (m == RB_OPTROT_V) v += v_term(p, l, w->wv, mean_h, g1, g2);
        else {
            int rows, cols;
            v += input_side(p, l, m, rb_layer_linear(w, &p->cfg, m, &rows, &cols), mean_h, g1);
        }
    }
    if (p->o.plus && g1) add_diag_term(p->g1f, p->hr, p->dt, p->st, d);
    return v;
}

int rb_optrot_eval(rb_optrot *p, const double *R1, const double *const *R2, double *loss, double *G1,
                   double *const *G2, rb_error *err) {
    const rb_llama_config *c = &p->cfg;
    if (p->o.plus && !p->hess_tokens)
        return rb_error_set(err, RB_EINVAL, "optrot+: the Hessians were not measured (no calibration forward)");
    const size_t d = (size_t)c->dim, hd = (size_t)c->head_dim;
    for (size_t i = 0; i < d * d; i++) p->r1f[i] = (float)R1[i];
    if (G1) memset(G1, 0, d * d * sizeof(double));
    double total = 0;
    int g1 = G1 != NULL, g2 = G2 != NULL;
    for (int l = 0; l < c->n_layers; l++) {
        const rb_layer_weights *w = &p->cache[l];
        if (!w->wq) {
            int rc = p->src.load_layer(p->src.ctx, l, &p->buf, err);
            if (rc) return rb_error_prefix(err, "optrot: layer %d", l);
            w = &p->buf;
        }
        for (size_t i = 0; i < hd * hd; i++) p->r2f[i] = R2 && R2[l] ? (float)R2[l][i] : (float)(i % (hd + 1) == 0);
        if (g1) memset(p->g1f, 0, d * d * sizeof(float));
        if (g2) memset(p->g2f, 0, hd * hd * sizeof(float));
        double v = group_term(p, l, w, 1, g1, g2);
        if (p->o.mask & (1u << RB_OPTROT_O)) v += o_term(p, l, w->wo, g1, g2);
        v += group_term(p, l, w, 0, g1, g2);
        if (p->o.mask & (1u << RB_OPTROT_DOWN)) v += down_term(p, l, w->w_down, g1);
        total += v;
        if (g1)
            for (size_t i = 0; i < d * d; i++) G1[i] += p->g1f[i];
        if (g2)
            for (size_t i = 0; i < hd * hd; i++) G2[l][i] = p->g2f[i];
    }
    *loss = total;
    return 0;
}

double rb_optrot_eval_flops(const rb_optrot *p) {
    const rb_llama_config *c = &p->cfg;
    const double d = c->dim, hd = c->head_dim, nh = c->n_heads, qd = nh * hd, kvd = c->n_kv_heads * hd;
    double per = 0;
    for (int m = 0; m < RB_OPTROT_NMAT; m++)
        if (p->o.mask & (1u << m)) per += 4.0 * (double)mat_elems(c, m) * d; /* W̃ and its gradient product */
    if (p->o.mask & (1u << RB_OPTROT_V)) per += 3 * 2.0 * kvd * d * hd;   /* R2ᵀ·N, N·G̃ᵀ, R2·G̃ */
    if (p->o.mask & (1u << RB_OPTROT_O)) per += 3 * 2.0 * d * qd * hd;    /* N·R2, W_o·R2, Nᵀ·G̃ */
    if (p->o.plus) per += 2 * 2.0 * d * d * d + nh * 2.0 * hd * hd * hd; /* H·R1 twice, H_h·R2 */
    return per * c->n_layers;
}

#include "rb_forward.h"

#include <math.h>
#include <string.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_math.h"
#include "core/rb_signal.h"


static const char *const site_names[RB_HOOK_SITES] = {"attn_in", "q",      "k",        "v",      "o_in",
                                                      "mlp_in",  "down_in", "res_attn", "res_mlp"};

const char *rb_site_name(int site) {
    RB_ASSERT(site >= 0 && site < RB_HOOK_SITES);
    return site_names[site];
}

int rb_site_from_name(const char *name) {
    for (int i = 0; i < RB_SITE_COUNT; i++)
        if (!strcmp(name, site_names[i])) return i;
    return -1;
}

void rb_hooks_init(rb_hooks *hk) { memset(hk, 0, sizeof *hk); }

void rb_hooks_add(rb_hooks *hk, int site, rb_hook_fn fn, void *ctx) {
    RB_ASSERT(site >= 0 && site < RB_HOOK_SITES && fn);
    RB_ASSERT(hk->n[site] < RB_MAX_HOOKS_PER_SITE);
    hk->fn[site][hk->n[site]] = fn;
    hk->ctx[site][hk->n[site]] = ctx;
    hk->n[site]++;
}

void rb_hooks_add_bwd(rb_hooks *hk, int site, rb_hook_fn fn, rb_hook_bwd_fn bwd, int needs_input, void *ctx) {
    rb_hooks_add(hk, site, fn, ctx);
    hk->bwd[site][hk->n[site] - 1] = bwd;
    hk->needs_input[site][hk->n[site] - 1] = (unsigned char)(needs_input != 0);
}

void rb_hooks_add_all(rb_hooks *hk, rb_hook_fn fn, void *ctx) {
    for (int s = 0; s < RB_SITE_COUNT; s++) rb_hooks_add(hk, s, fn, ctx);
}

static int model_load_layer(void *ctx, int layer, rb_layer_weights *w, rb_error *err) {
    return rb_model_load_layer(ctx, layer, w, err);
}
static int model_embed(void *ctx, const int32_t *ids, size_t n, float *out, rb_error *err) {
    return rb_model_embed(ctx, ids, n, out, err);
}
static int model_final_norm(void *ctx, float *out, rb_error *err) {
    return rb_model_load_final_norm(ctx, out, err);
}
static int model_lm_head(void *ctx, float *out, rb_error *err) { return rb_model_load_lm_head(ctx, out, err); }

rb_weights_src rb_weights_from_model(rb_model *m) {
    rb_weights_src s = {m, model_load_layer, model_embed, model_final_norm, model_lm_head};
    return s;
}

size_t rb_tape_bytes(const rb_llama_config *c, int max_rows) {
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    return sizeof(float) * (size_t)max_rows *
           (2 * (size_t)c->dim + 2 * qd + 2 * kvd + (size_t)c->n_heads + 2 * (size_t)c->hidden_dim);
}

void rb_tape_free(rb_tape *t) {
    rb_free(t->h_in);
    rb_free(t->q);
    rb_free(t->k);
    rb_free(t->v);
    rb_free(t->lse);
    rb_free(t->att);
    rb_free(t->h_mid);
    rb_free(t->gate);
    rb_free(t->up);
    memset(t, 0, sizeof *t);
}

int rb_tape_init(rb_tape *t, const rb_llama_config *c, int max_rows, rb_error *err) {
    memset(t, 0, sizeof *t);
    RB_ASSERT(max_rows > 0);
    size_t R = (size_t)max_rows, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    t->max_rows = max_rows;
    t->h_in = rb_alloc(R * c->dim * sizeof(float));
    t->q = rb_alloc(R * qd * sizeof(float));
    t->k = rb_alloc(R * kvd * sizeof(float));
    t->v = rb_alloc(R * kvd * sizeof(float));
    t->lse = rb_alloc(R * c->n_heads * sizeof(float));
    t->att = rb_alloc(R * qd * sizeof(float));
    t->h_mid = rb_alloc(R * c->dim * sizeof(float));
    t->gate = rb_alloc(R * c->hidden_dim * sizeof(float));
    t->up = rb_alloc(R * c->hidden_dim * sizeof(float));
    if (!t->h_in || !t->q || !t->k || !t->v || !t->lse || !t->att || !t->h_mid || !t->gate || !t->up) {
        rb_tape_free(t);
        return rb_error_set(err, RB_ENOMEM, "backward: out of memory for a tape of %d rows (%.1f MiB)", max_rows,
                            rb_tape_bytes(c, max_rows) / 1048576.0);
    }
    return 0;
}

/* Inverse RoPE frequencies, with Llama-3.1 "llama3" scaling when configured (HF
 * _compute_llama3_parameters), in double. */
static void rope_inv_freq(const rb_llama_config *c, double *inv) {
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow(c->rope_theta, (double)(2 * i) / (double)c->head_dim);
        if (c->rope_scaling) {
            double old = (double)c->rope_original_max_pos;
            double low_wl = old / c->rope_low_freq_factor, high_wl = old / c->rope_high_freq_factor;
            double wl = 2.0 * M_PI / f;
            if (wl > low_wl) {
                f = f / c->rope_factor;
            } else if (wl >= high_wl) {
                double s = (old / wl - c->rope_low_freq_factor) /
                           (c->rope_high_freq_factor - c->rope_low_freq_factor);
                f = (1.0 - s) * f / c->rope_factor + s * f;
            }
        }
        inv[i] = f;
    }
}

void rb_forward_free(rb_forward *f) {
    rb_free(f->xn);
    rb_free(f->q);
    rb_free(f->k);
    rb_free(f->v);
    rb_free(f->att);
    rb_free(f->gate);
    rb_free(f->up);
    rb_free(f->scores);
    rb_free(f->rope_cos);
    rb_free(f->rope_sin);
    memset(f, 0, sizeof *f);
}

int rb_forward_init(rb_forward *f, const rb_llama_config *c, int max_T, int max_rows, rb_error *err) {
    memset(f, 0, sizeof *f);
    RB_ASSERT(max_T > 0 && max_rows >= max_T);
    RB_ASSERT(c->head_dim % 2 == 0);
    f->cfg = *c;
    f->max_T = max_T;
    f->max_rows = max_rows;
    size_t R = (size_t)max_rows;
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t half = (size_t)c->head_dim / 2;
    /* seqlen-sized scratch: a 400k-token window asks for gigabytes here (issue 16) */
    size_t bytes = (R * ((size_t)c->dim + 2 * qd + 2 * kvd + 2 * (size_t)c->hidden_dim) +
                    (size_t)RB_ATT_QBLOCK * (size_t)max_T + 2 * (size_t)max_T * half) *
                   sizeof(float);
    char what[96];
    snprintf(what, sizeof what, "the forward pass's scratch for %d rows of %d tokens", max_rows, max_T);
    int rc = rb_mem_check(bytes, what, "lower the sequence length (--seqlen, data.*.seqlen) or the batch", err);
    if (rc) return rc;
    f->xn = rb_calloc(R * (size_t)c->dim, sizeof(float));
    f->q = rb_calloc(R * qd, sizeof(float));
    f->k = rb_calloc(R * kvd, sizeof(float));
    f->v = rb_calloc(R * kvd, sizeof(float));
    f->att = rb_calloc(R * qd, sizeof(float));
    f->gate = rb_calloc(R * (size_t)c->hidden_dim, sizeof(float));
    f->up = rb_calloc(R * (size_t)c->hidden_dim, sizeof(float));
    f->scores = rb_calloc((size_t)RB_ATT_QBLOCK * (size_t)max_T, sizeof(float));
    f->rope_cos = rb_calloc((size_t)max_T * half, sizeof(float));
    f->rope_sin = rb_calloc((size_t)max_T * half, sizeof(float));
    if (!f->xn || !f->q || !f->k || !f->v || !f->att || !f->gate || !f->up || !f->scores || !f->rope_cos ||
        !f->rope_sin) {
        rb_forward_free(f);
        return rb_error_set(err, RB_ENOMEM, "forward: out of memory for %d rows", max_rows);
    }
    double inv[RB_MAX_HEAD_DIM / 2];
    RB_ASSERT(half <= RB_MAX_HEAD_DIM / 2); /* the readers refuse larger heads */
    rope_inv_freq(c, inv);
    for (int t = 0; t < max_T; t++)
        for (size_t i = 0; i < half; i++) {
            double a = (double)t * inv[i];
            f->rope_cos[(size_t)t * half + i] = (float)cos(a);
            f->rope_sin[(size_t)t * half + i] = (float)sin(a);
        }
    return 0;
}

void rb_rmsnorm(float *out, const float *x, const float *g, size_t rows, int dim, double eps) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * (size_t)dim;
        float *o = out + r * (size_t)dim;
        double ss = 0.0;
        for (int j = 0; j < dim; j++) ss += (double)xr[j] * xr[j];
        float s = (float)(1.0 / sqrt(ss / dim + eps));
        if (g)
            for (int j = 0; j < dim; j++) o[j] = xr[j] * s * g[j];
        else
            for (int j = 0; j < dim; j++) o[j] = xr[j] * s;
    }
}

void rb_rope_apply(const rb_forward *f, float *x, int n_seq, int T, int n_h, int inverse) {
    int hd = f->cfg.head_dim, half = hd / 2;
    size_t width = (size_t)n_h * hd;
    for (int s = 0; s < n_seq; s++)
        for (int t = 0; t < T; t++) {
            int p = f->layout ? f->layout->pos[(size_t)s * T + t] : t;
            const float *cs = f->rope_cos + (size_t)p * half, *sn = f->rope_sin + (size_t)p * half;
            float *row = x + ((size_t)s * T + t) * width;
            for (int h = 0; h < n_h; h++) {
                float *a = row + (size_t)h * hd, *b = a + half;
                if (inverse)
                    for (int i = 0; i < half; i++) {
                        float x0 = a[i], x1 = b[i];
                        a[i] = x0 * cs[i] + x1 * sn[i];
                        b[i] = x1 * cs[i] - x0 * sn[i];
                    }
                else
                    for (int i = 0; i < half; i++) {
                        float x0 = a[i], x1 = b[i];
                        a[i] = x0 * cs[i] - x1 * sn[i];
                        b[i] = x1 * cs[i] + x0 * sn[i];
                    }
            }
        }
}

/* RB_ENUMERIC naming the layer, the place (`where`, after "site " for a hook site) and the entry when
 * x[rows][cols] holds a NaN or Inf. */
static int check_finite(const rb_site_info *info, int is_site, const char *where, const float *x, int cols,
                        rb_error *err) {
    size_t rows = (size_t)info->n_seq * info->seq_len;
    long i = rb_first_nonfinite(x, rows * (size_t)cols);
    if (i < 0) return 0;
    size_t r = (size_t)i / cols;
    return rb_error_set(err, RB_ENUMERIC,
                        "layer %d, %s%s: non-finite activation %g (sequence %zu, token %zu, channel %ld): the model "
                        "overflowed float32 here",
                        info->layer, is_site ? "site " : "", where, (double)x[i], info->seq_offset + r / info->seq_len, r % info->seq_len,
                        (long)(i % cols));
}

/* Runs the hooks of `site` on x, then checks x is finite (what the next product reads). */
static int run_hooks(const rb_hooks *hk, rb_site_info *info, int site, int cols, int groups, float *x,
                     rb_error *err) {
    rb_site_info_at(info, site, cols, groups);
    for (int i = 0; hk && i < hk->n[site]; i++) {
        int rc = hk->fn[site][i](hk->ctx[site][i], info, x, err);
        if (rc) return rc;
    }
    return check_finite(info, 1, site_names[site], x, cols, err);
}

/* Causal softmax attention of one sequence: att[T][n_h*hd] from q, k, v rows of that sequence; with
 * lse (may be NULL) each score row's log-sum-exp into lse[T][n_heads]. */
static void attention_seq(rb_forward *f, const float *q, const float *k, const float *v, float *att, float *lse,
                          int T) {
    const rb_llama_config *c = &f->cfg;
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    float scale = (float)(1.0 / sqrt((double)hd));
    for (int h = 0; h < c->n_heads; h++) {
        int kh = h / group;
        /* a signal stops a long window between query blocks */
        for (int i0 = 0; i0 < T && !rb_interrupted(); i0 += RB_ATT_QBLOCK) {
            int bq = T - i0 < RB_ATT_QBLOCK ? T - i0 : RB_ATT_QBLOCK;
            int nk = i0 + bq; /* keys visible to the last query of the block */
            float *S = f->scores;
            rb_sgemm(0, 1, bq, nk, hd, scale, q + (size_t)i0 * qd + h * hd,
                        qd, k + kh * hd, kvd, 0.0f, S, nk);
            for (int r = 0; r < bq; r++) {
                float *row = S + (size_t)r * nk;
                int len = i0 + r + 1;
                float mx = rb_vmax(row, len);
                rb_vexp_shift(row, len, mx);
                double sum = rb_vsum(row, len);
                float inv = (float)(1.0 / sum);
                if (lse) lse[(size_t)(i0 + r) * c->n_heads + h] = (float)((double)mx + log(sum));
                for (int j = 0; j < len; j++) row[j] *= inv;
                for (int j = len; j < nk; j++) row[j] = 0.0f;
            }
            rb_sgemm(0, 0, bq, hd, nk, 1.0f, S, nk, v + kh * hd, kvd, 0.0f,
                        att + (size_t)i0 * qd + h * hd, qd);
        }
    }
}

/* Softmax of the visible entries of a score row (S[j] holds key lo + j), in place; the others are
 * zeroed. Visible: [a0, a1) ∪ [b0, b1) in key indices. */
static void softmax_ranges(float *row, int nk, int lo, int a0, int a1, int b0, int b1) {
    a0 -= lo, a1 -= lo, b0 -= lo, b1 -= lo;
    float mx = -INFINITY;
    if (a1 > a0) mx = rb_vmax(row + a0, a1 - a0);
    float mb = rb_vmax(row + b0, b1 - b0);
    if (mb > mx) mx = mb;
    double sum = 0.0;
    if (a1 > a0) {
        rb_vexp_shift(row + a0, a1 - a0, mx);
        sum += rb_vsum(row + a0, a1 - a0);
    }
    rb_vexp_shift(row + b0, b1 - b0, mx);
    sum += rb_vsum(row + b0, b1 - b0);
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < nk; j++) row[j] = (j >= a0 && j < a1) || (j >= b0 && j < b1) ? row[j] * inv : 0.0f;
}

/* attention_seq under a layout (lay: the sequence's entries): each query block multiplies only the key
 * columns from the lowest key any of its rows sees. */
static void attention_seq_layout(rb_forward *f, const float *q, const float *k, const float *v, float *att,
                                 int T, const rb_att_layout *lay, size_t r0) {
    const rb_llama_config *c = &f->cfg;
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    float scale = (float)(1.0 / sqrt((double)hd));
    for (int i0 = 0; i0 < T && !rb_interrupted(); i0 += RB_ATT_QBLOCK) {
        int bq = T - i0 < RB_ATT_QBLOCK ? T - i0 : RB_ATT_QBLOCK;
        int lo = i0;
        for (int r = i0; r < i0 + bq; r++) {
            int a = lay->pre_hi[r0 + r] > lay->pre_lo[r0 + r] ? lay->pre_lo[r0 + r] : lay->self_lo[r0 + r];
            RB_ASSERT(a >= 0 && lay->self_lo[r0 + r] <= r && lay->pre_hi[r0 + r] <= lay->self_lo[r0 + r]);
            if (a < lo) lo = a;
        }
        int nk = i0 + bq - lo;
        for (int h = 0; h < c->n_heads; h++) {
            int kh = h / group;
            float *S = f->scores;
            rb_sgemm(0, 1, bq, nk, hd, scale, q + (size_t)i0 * qd + h * hd, qd, k + (size_t)lo * kvd + kh * hd, kvd,
                     0.0f, S, nk);
            for (int r = 0; r < bq; r++) {
                size_t g = r0 + (size_t)(i0 + r);
                softmax_ranges(S + (size_t)r * nk, nk, lo, lay->pre_lo[g], lay->pre_hi[g], lay->self_lo[g], i0 + r + 1);
            }
            rb_sgemm(0, 0, bq, hd, nk, 1.0f, S, nk, v + (size_t)lo * kvd + kh * hd, kvd, 0.0f,
                     att + (size_t)i0 * qd + h * hd, qd);
        }
    }
}

int rb_forward_layer(rb_forward *f, const rb_layer_weights *w, int layer, float *h, int n_seq, int T,
                     int seq_offset, const rb_hooks *hooks, rb_error *err) {
    const rb_llama_config *c = &f->cfg;
    RB_ASSERT(T > 0 && T <= f->max_T && n_seq > 0 && (size_t)n_seq * T <= (size_t)f->max_rows);
    int rows = n_seq * T, d = c->dim, hd = c->head_dim;
    int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd, ff = c->hidden_dim;
    rb_site_info info = {.layer = layer, .n_seq = n_seq, .seq_len = T, .seq_offset = seq_offset};
    int rc;
    rb_tape *tp = f->tape;
    size_t R = (size_t)rows;
    if (tp) {
        RB_ASSERT(rows <= tp->max_rows);
        tp->layer = layer, tp->n_seq = n_seq, tp->T = T, tp->seq_offset = seq_offset;
        memcpy(tp->h_in, h, R * d * sizeof(float));
    }

    /* attention block */
    rb_rmsnorm(f->xn, h, w->rms_att, (size_t)rows, d, c->rms_eps);
    if ((rc = run_hooks(hooks, &info, RB_SITE_ATTN_IN, d, 1, f->xn, err))) return rc;
    rb_sgemm(0, 1, rows, qd, d, 1.0f, f->xn, d, w->wq, d, 0.0f, f->q, qd);
    rb_sgemm(0, 1, rows, kvd, d, 1.0f, f->xn, d, w->wk, d, 0.0f, f->k, kvd);
    rb_sgemm(0, 1, rows, kvd, d, 1.0f, f->xn, d, w->wv, d, 0.0f, f->v, kvd);
    rb_rope_apply(f, f->q, n_seq, T, c->n_heads, 0);
    rb_rope_apply(f, f->k, n_seq, T, c->n_kv_heads, 0);
    if ((rc = run_hooks(hooks, &info, RB_SITE_Q, qd, c->n_heads, f->q, err))) return rc;
    if ((rc = run_hooks(hooks, &info, RB_SITE_K, kvd, c->n_kv_heads, f->k, err))) return rc;
    if ((rc = run_hooks(hooks, &info, RB_SITE_V, kvd, c->n_kv_heads, f->v, err))) return rc;
    RB_ASSERT(!(tp && f->layout)); /* the backward knows plain causal attention only */
    for (int s = 0; s < n_seq; s++) {
        size_t r0 = (size_t)s * T;
        if (f->layout) {
            attention_seq_layout(f, f->q + r0 * qd, f->k + r0 * kvd, f->v + r0 * kvd, f->att + r0 * qd, T, f->layout, r0);
            continue;
        }
        attention_seq(f, f->q + r0 * qd, f->k + r0 * kvd, f->v + r0 * kvd, f->att + r0 * qd,
                      tp ? tp->lse + r0 * c->n_heads : NULL, T);
    }
    /* attention of one long window can take minutes: SIGINT/SIGTERM end it between query blocks (issue 16) */
    if (rb_interrupted())
        return rb_error_set(err, RB_EINTERRUPTED, "interrupted in the attention of layer %d", layer);
    if (tp) {
        memcpy(tp->q, f->q, R * qd * sizeof(float));
        memcpy(tp->k, f->k, R * kvd * sizeof(float));
        memcpy(tp->v, f->v, R * kvd * sizeof(float));
        memcpy(tp->att, f->att, R * qd * sizeof(float));
    }
    if ((rc = run_hooks(hooks, &info, RB_SITE_O_IN, qd, c->n_heads, f->att, err))) return rc;
    if (hooks && hooks->n[RB_SITE_RES_ATTN] && (rc = run_hooks(hooks, &info, RB_SITE_RES_ATTN, d, 1, h, err)))
        return rc;
    rb_sgemm(0, 1, rows, d, qd, 1.0f, f->att, qd, w->wo, qd, 1.0f, h, d);
    if ((rc = check_finite(&info, 0, "residual stream after attention (o_proj output)", h, d, err))) return rc;
    if (tp) memcpy(tp->h_mid, h, R * d * sizeof(float));

    /* MLP block */
    rb_rmsnorm(f->xn, h, w->rms_ffn, (size_t)rows, d, c->rms_eps);
    if ((rc = run_hooks(hooks, &info, RB_SITE_MLP_IN, d, 1, f->xn, err))) return rc;
    rb_sgemm(0, 1, rows, ff, d, 1.0f, f->xn, d, w->w_gate, d, 0.0f, f->gate,
                ff);
    rb_sgemm(0, 1, rows, ff, d, 1.0f, f->xn, d, w->w_up, d, 0.0f, f->up, ff);
    size_t n = (size_t)rows * ff;
    if (tp) {
        memcpy(tp->gate, f->gate, n * sizeof(float));
        memcpy(tp->up, f->up, n * sizeof(float));
    }
    for (size_t i = 0; i < n; i++) {
        f->gate[i] = rb_swiglu(f->gate[i], f->up[i]);
    }
    if ((rc = run_hooks(hooks, &info, RB_SITE_DOWN_IN, ff, 1, f->gate, err))) return rc;
    if (hooks && hooks->n[RB_SITE_RES_MLP] && (rc = run_hooks(hooks, &info, RB_SITE_RES_MLP, d, 1, h, err)))
        return rc;
    rb_sgemm(0, 1, rows, d, ff, 1.0f, f->gate, ff, w->w_down, ff, 1.0f, h,
                d);
    return check_finite(&info, 0, "residual stream after the MLP (down_proj output)", h, d, err);
}

void rb_nll_rows(const float *logits, size_t rows, int vocab, const int32_t *targets, double *nll) {
    for (size_t r = 0; r < rows; r++) {
        const float *row = logits + r * (size_t)vocab;
        float mx = rb_vmax(row, vocab);
        double sum = 0.0;
        for (int j = 0; j < vocab; j++) sum += (double)rb_expf_fast(row[j] - mx);
        RB_ASSERT(targets[r] >= 0 && targets[r] < vocab);
        nll[r] = (double)mx + log(sum) - (double)row[targets[r]];
    }
}

void rb_llama_logits(const float *hn, size_t rows, const float *lm_head, const rb_llama_config *c, float *out) {
    rb_sgemm(0, 1, (int)rows, c->vocab_size, c->dim, 1.0f, hn, c->dim,
                lm_head, c->dim, 0.0f, out, c->vocab_size);
}

/* rb_ruq_train: RUQuant stage 2 (derivation and conventions in rb_ruq_train.h). */
#include "methods/rb_ruq_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_signal.h"
#include "model/rb_grad.h"

/* AdamW constants of torch.optim.AdamW's defaults, which RUQuant's code keeps. */
#define RUQ_ADAM_BETA1 0.9
#define RUQ_ADAM_BETA2 0.999
#define RUQ_ADAM_EPS 1e-8

/* The linears reading each site (RB_LIN_*), -1 terminated. */
static const int site_readers[RB_RUQ_NSITES][4] = {
    {RB_LIN_Q, RB_LIN_K, RB_LIN_V, -1}, {RB_LIN_O, -1}, {RB_LIN_GATE, RB_LIN_UP, -1}, {RB_LIN_DOWN, -1}};

static int site_width(const rb_llama_config *c, int k) {
    return k == RB_RUQ_DOWN ? c->hidden_dim : k == RB_RUQ_OUT ? c->n_heads * c->head_dim : c->dim;
}

static int widest(const rb_llama_config *c) {
    int w = c->dim;
    for (int k = 0; k < RB_RUQ_NSITES; k++) w = site_width(c, k) > w ? site_width(c, k) : w;
    return w;
}

size_t rb_ruq_train_bytes(const rb_llama_config *c, int T, int max_seq) {
    size_t rows = (size_t)max_seq * T, lw = 0, sites = 0;
    for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
        int r, k;
        rb_layer_linear_shape(c, lin, &r, &k);
        lw += (size_t)r * k;
    }
    for (int k = 0; k < RB_RUQ_NSITES; k++) sites += (size_t)site_width(c, k);
    return 3 * (lw + 2 * (size_t)c->dim) * sizeof(float)                       /* W'', W'_t, dW */
           + 2 * rows * c->dim * sizeof(float) + 2 * rows * widest(c) * sizeof(float) /* h, dh, u, tmp */
           + sites * (6 * sizeof(double) + sizeof(float))                       /* per-site vectors */
           + rb_tape_bytes(c, (int)rows) + rb_backward_bytes(c, T, (int)rows)
           /* forward scratch (normed input, q/k/v, attention output, gate/up), bounded above */
           + rows * (size_t)(c->dim + 4 * c->n_heads * c->head_dim + 2 * c->hidden_dim) * sizeof(float);
}

/* ---- the training hook ---------------------------------------------------------------- */

/* x ← x − 2(x·n)n for every row of X[rows][n] (dot products in double). */
static void reflect_rows(float *X, size_t rows, int n, const float *nf) {
    for (size_t r = 0; r < rows; r++) {
        float *x = X + r * n;
        double d = 0;
        for (int j = 0; j < n; j++) d += (double)x[j] * nf[j];
        float dd = (float)(2.0 * d);
        for (int j = 0; j < n; j++) x[j] -= dd * nf[j];
    }
}

static const rb_ruq_site *site_of(const rb_ruq_train *t, int k) { return t->fz->rs->ruq[t->layer][k]; }

/* Forward (rb_hook_fn, ctx the site's rb_ruq_train_site): x ← (x/s)·B·H(v). */
static int train_hook(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    (void)err;
    rb_ruq_train_site *ts = ctx;
    rb_ruq_train *t = ts->t;
    RB_ASSERT(in->layer == t->layer); /* the hooks are only used on the layer being trained */
    const rb_ruq_site *s = site_of(t, ts->k);
    size_t rows = (size_t)in->n_seq * in->seq_len;
    RB_ASSERT(in->cols == s->n && rows <= (size_t)t->max_seq * t->T);
    rb_ruq_apply_act_pre_f(s, x, rows, t->tmp, s->scale_fused);
    if (ts->active) reflect_rows(x, rows, s->n, ts->nf);
    return 0;
}

/* Backward (rb_hook_bwd_fn): accumulates the activation term of dL/dn from u = (x_in/s)·B and the
 * output gradient, then dx ← ((dx·H)·Bᵀ)/s. */
static int train_hook_bwd(void *ctx, const rb_site_info *in, const float *x_in, float *dx, rb_error *err) {
    (void)err;
    rb_ruq_train_site *ts = ctx;
    rb_ruq_train *t = ts->t;
    const rb_ruq_site *s = site_of(t, ts->k);
    size_t rows = (size_t)in->n_seq * in->seq_len;
    int n = s->n;
    RB_ASSERT(x_in && in->cols == n && rows <= (size_t)t->max_seq * t->T);
    if (ts->active) {
        memcpy(t->u, x_in, sizeof(float) * rows * n);
        rb_ruq_apply_act_pre_f(s, t->u, rows, t->tmp, s->scale_fused);
        const float *nf = ts->nf;
        for (size_t r = 0; r < rows; r++) {
            const float *u = t->u + r * n;
            float *g = dx + r * n;
            double a = 0, b = 0;
            for (int j = 0; j < n; j++) a += (double)u[j] * nf[j], b += (double)g[j] * nf[j];
            for (int j = 0; j < n; j++) ts->g[j] -= 2.0 * ((double)u[j] * b + (double)g[j] * a);
            float bb = (float)(2.0 * b); /* dx·H = dx − 2(dx·n)nᵀ */
            for (int j = 0; j < n; j++) g[j] -= bb * nf[j];
        }
    }
    rb_ruq_apply_act_pre_t_f(s, dx, rows, t->tmp, s->scale_fused);
    return 0;
}

/* ---- state ----------------------------------------------------------------------------- */

void rb_ruq_train_free(rb_ruq_train *t) {
    for (int k = 0; k < RB_RUQ_NSITES; k++) {
        rb_ruq_train_site *ts = &t->site[k];
        free(ts->v);
        free(ts->nv);
        free(ts->nf);
        free(ts->g);
        free(ts->dv);
        free(ts->m);
        free(ts->s2);
    }
    rb_layer_weights_free(&t->wpp);
    rb_layer_weights_free(&t->w);
    rb_layer_weights_free(&t->dw);
    rb_forward_free(&t->f);
    rb_backward_free(&t->b);
    rb_tape_free(&t->tape);
    rb_free(t->h);
    rb_free(t->dh);
    rb_free(t->u);
    rb_free(t->tmp);
    memset(t, 0, sizeof *t);
}

int rb_ruq_train_init(rb_ruq_train *t, const rb_llama_config *c, rb_fused *fz, const rb_quant_cfg *q,
                      const rb_ruq_train_opts *o, int T, rb_error *err) {
    memset(t, 0, sizeof *t);
    if (o->epochs < 0 || o->samples < 1 || o->batch < 1 || !(o->lr > 0) || !(o->weight_decay >= 0) ||
        !(o->guard >= 0 && o->guard < 1) || T < 1)
        return rb_error_set(err, RB_EINVAL,
                            "ruquant stage 2: bad settings (epochs %d, samples %d, batch %d, lr %g, weight decay %g, "
                            "guard %g, %d tokens)",
                            o->epochs, o->samples, o->batch, o->lr, o->weight_decay, o->guard, T);
    if (!fz->rs || !fz->rs->ruq)
        return rb_error_set(err, RB_EINVAL, "ruquant stage 2: the rotation set holds no RUQuant transforms");
    t->c = c, t->fz = fz, t->o = *o, t->T = T, t->layer = -1;
    t->q = q && rb_quant_cfg_active(q) ? q : NULL;
    t->max_seq = o->batch < o->samples ? o->batch : o->samples;
    size_t rows = (size_t)t->max_seq * T, bytes = rb_ruq_train_bytes(c, T, t->max_seq);
    int ok = 1;
    for (int k = 0; k < RB_RUQ_NSITES; k++) {
        rb_ruq_train_site *ts = &t->site[k];
        size_t n = (size_t)site_width(c, k);
        ts->t = t, ts->k = k;
        ts->v = malloc(n * sizeof(double)), ts->nv = malloc(n * sizeof(double)), ts->g = malloc(n * sizeof(double));
        ts->dv = calloc(n, sizeof(double)), ts->m = calloc(n, sizeof(double)), ts->s2 = calloc(n, sizeof(double));
        ts->nf = malloc(n * sizeof(float));
        ok = ok && ts->v && ts->nv && ts->g && ts->dv && ts->m && ts->s2 && ts->nf;
    }
    t->h = rb_alloc(rows * c->dim * sizeof(float));
    t->dh = rb_alloc(rows * c->dim * sizeof(float));
    t->u = rb_alloc(rows * widest(c) * sizeof(float));
    t->tmp = rb_alloc(rows * widest(c) * sizeof(float));
    int rc = 0;
    if (!ok || !t->h || !t->dh || !t->u || !t->tmp)
        rc = rb_error_set(err, RB_ENOMEM, "ruquant stage 2: out of memory (%.1f MiB)", bytes / 1048576.0);
    if (!rc) rc = rb_layer_weights_init(&t->wpp, c, err);
    if (!rc) rc = rb_layer_weights_init(&t->w, c, err);
    if (!rc) rc = rb_layer_weights_init(&t->dw, c, err);
    if (!rc) rc = rb_forward_init(&t->f, c, T, (int)rows, err);
    if (!rc) rc = rb_backward_init(&t->b, c, T, (int)rows, err);
    if (!rc) rc = rb_tape_init(&t->tape, c, (int)rows, err);
    if (rc) {
        rb_ruq_train_free(t);
        return rc;
    }
    /* the model's online hooks in their order, the RUQuant transforms swapped for the training hooks */
    rb_hooks_init(&t->hk);
    rb_fused_add_online_hooks(fz, &t->hk);
    for (int s = 0; s < RB_SITE_COUNT; s++)
        for (int i = 0; i < t->hk.n[s]; i++)
            if (t->hk.fn[s][i] == rb_hook_ruq) {
                int k = rb_ruq_site_at(s);
                RB_ASSERT(k >= 0);
                t->hk.fn[s][i] = train_hook;
                t->hk.bwd[s][i] = train_hook_bwd;
                t->hk.needs_input[s][i] = 1;
                t->hk.ctx[s][i] = &t->site[k];
            }
    if (t->q) rb_quant_add_train_hooks(&t->hk, t->q, 0);
    return 0;
}

/* nv = v/‖v‖ and its fp32 copy. */
static void normalize(rb_ruq_train_site *ts, int n) {
    double ss = 0;
    for (int j = 0; j < n; j++) ss += ts->v[j] * ts->v[j];
    double inv = 1.0 / sqrt(ss);
    for (int j = 0; j < n; j++) ts->nv[j] = ts->v[j] * inv, ts->nf[j] = (float)ts->nv[j];
}

int rb_ruq_train_begin(rb_ruq_train *t, int l, rb_error *err) {
    const rb_llama_config *c = t->c;
    RB_ASSERT(l >= 0 && l < c->n_layers);
    for (int k = 0; k < RB_RUQ_NSITES; k++)
        if (!t->fz->rs->ruq[l][k])
            return rb_error_set(err, RB_EINVAL, "ruquant stage 2: layer %d has no transform at %s", l, rb_ruq_site_name(k));
    t->layer = l;
    for (int k = 0; k < RB_RUQ_NSITES; k++) { /* v ← hh; hh ← 0 while W'' is loaded */
        rb_ruq_train_site *ts = &t->site[k];
        rb_ruq_site *s = t->fz->rs->ruq[l][k];
        RB_ASSERT(s->n == site_width(c, k));
        ts->active = 0;
        for (int j = 0; j < s->n; j++) ts->active |= s->hh[j] != 0;
        memcpy(ts->v, s->hh, sizeof(double) * s->n);
        memset(s->hh, 0, sizeof(double) * s->n);
        memset(ts->m, 0, sizeof(double) * s->n);
        memset(ts->s2, 0, sizeof(double) * s->n);
        memset(ts->dv, 0, sizeof(double) * s->n);
    }
    rb_weights_src src = rb_fused_src(t->fz);
    int rc = src.load_layer(src.ctx, l, &t->wpp, err);
    for (int k = 0; k < RB_RUQ_NSITES; k++) {
        rb_ruq_train_site *ts = &t->site[k];
        rb_ruq_site *s = t->fz->rs->ruq[l][k];
        memcpy(s->hh, ts->v, sizeof(double) * s->n);
        if (ts->active) normalize(ts, s->n);
    }
    t->adam_t = 0;
    t->stale = 1;
    return rc;
}

/* The engine's weights from W'' and the current directions: W'_t = W'' − 2(W''n)nᵀ, then RTN. */
static int set_weights(rb_ruq_train *t, rb_error *err) {
    const rb_llama_config *c = t->c;
    for (int k = 0; k < RB_RUQ_NSITES; k++) {
        const rb_ruq_train_site *ts = &t->site[k];
        for (int i = 0; site_readers[k][i] >= 0; i++) {
            int rows, n;
            const float *Wpp = rb_layer_linear(&t->wpp, c, site_readers[k][i], &rows, &n);
            float *W = rb_layer_linear(&t->w, c, site_readers[k][i], &rows, &n);
            for (int r = 0; r < rows; r++) {
                const float *a = Wpp + (size_t)r * n;
                float *o = W + (size_t)r * n;
                double d = 0;
                if (ts->active)
                    for (int j = 0; j < n; j++) d += (double)a[j] * ts->nv[j];
                for (int j = 0; j < n; j++) o[j] = (float)((double)a[j] - 2.0 * d * ts->nv[j]);
            }
            if (t->q && t->q->w.bits < RB_QBITS_OFF) {
                int rc = rb_quant_fake(&t->q->w, W, rows, n, 0, err);
                if (rc) return rc;
            }
        }
    }
    memcpy(t->w.rms_att, t->wpp.rms_att, sizeof(float) * c->dim);
    memcpy(t->w.rms_ffn, t->wpp.rms_ffn, sizeof(float) * c->dim);
    t->stale = 0;
    return 0;
}

/* Adds the weight term of dL/dn of site k: −2·Σ_readers [W''ᵀ(G·n) + Gᵀ(W''·n)], G = dL/dW'_t. */
static void weight_grad(rb_ruq_train *t, int k) {
    rb_ruq_train_site *ts = &t->site[k];
    for (int i = 0; site_readers[k][i] >= 0; i++) {
        int rows, n;
        const float *Wpp = rb_layer_linear(&t->wpp, t->c, site_readers[k][i], &rows, &n);
        const float *G = rb_layer_linear(&t->dw, t->c, site_readers[k][i], &rows, &n);
        for (int r = 0; r < rows; r++) {
            const float *a = Wpp + (size_t)r * n, *g = G + (size_t)r * n;
            double wa = 0, gb = 0;
            for (int j = 0; j < n; j++) wa += (double)a[j] * ts->nv[j], gb += (double)g[j] * ts->nv[j];
            for (int j = 0; j < n; j++) ts->g[j] -= 2.0 * ((double)a[j] * gb + (double)g[j] * wa);
        }
    }
}

int rb_ruq_train_loss(rb_ruq_train *t, const float *X, const float *Y, int n_seq, int grad, double *loss,
                      rb_error *err) {
    const rb_llama_config *c = t->c;
    RB_ASSERT(t->layer >= 0 && n_seq >= 1 && n_seq <= t->max_seq);
    int rc;
    if (t->stale && (rc = set_weights(t, err))) return rc;
    size_t N = (size_t)n_seq * t->T * c->dim;
    memcpy(t->h, X, N * sizeof(float));
    t->f.tape = grad ? &t->tape : NULL;
    rc = rb_forward_layer(&t->f, &t->w, t->layer, t->h, n_seq, t->T, 0, &t->hk, err);
    t->f.tape = NULL;
    if (rc > 0) rc = rb_error_set(err, RB_EINVAL, "ruquant stage 2: a hook stopped layer %d", t->layer);
    if (rc) return rc;
    double sum = 0;
    for (size_t i = 0; i < N; i++) {
        double e = (double)t->h[i] - Y[i];
        sum += e * e;
    }
    *loss = sum / (double)N;
    if (!isfinite(*loss))
        return rb_error_set(err, RB_ENUMERIC, "ruquant stage 2: layer %d: block-output MSE became %g", t->layer, *loss);
    if (!grad) return 0;
    for (size_t i = 0; i < N; i++) t->dh[i] = (float)(2.0 * ((double)t->h[i] - Y[i]) / (double)N);
    for (int k = 0; k < RB_RUQ_NSITES; k++) memset(t->site[k].g, 0, sizeof(double) * site_width(c, k));
    rb_layer_weights_zero(&t->dw, c);
    if ((rc = rb_backward_layer(&t->b, &t->f, &t->tape, &t->w, &t->hk, t->dh, &t->dw, err))) return rc;
    for (int k = 0; k < RB_RUQ_NSITES; k++) {
        rb_ruq_train_site *ts = &t->site[k];
        int n = site_width(c, k);
        if (!ts->active) continue;
        weight_grad(t, k);
        double vv = 0, ng = 0; /* dL/dv = (I − nnᵀ)·g_n/‖v‖ */
        for (int j = 0; j < n; j++) vv += ts->v[j] * ts->v[j], ng += ts->nv[j] * ts->g[j];
        double inv = 1.0 / sqrt(vv);
        for (int j = 0; j < n; j++) ts->dv[j] = (ts->g[j] - ng * ts->nv[j]) * inv;
    }
    return 0;
}

void rb_ruq_train_guard(rb_ruq_train *t) {
    double gd = t->o.guard;
    if (!(gd > 0)) return;
    for (int k = 0; k < RB_RUQ_NSITES; k++) {
        rb_ruq_train_site *ts = &t->site[k];
        int n = site_width(t->c, k);
        if (!ts->active) continue;
        for (int j = 0; j < n; j++)
            if (fabs(ts->v[j]) < gd) ts->v[j] = ts->v[j] < 0 ? -gd : gd;
        normalize(ts, n);
    }
    t->stale = 1;
}

void rb_ruq_train_set_v(rb_ruq_train *t, int k, const double *v) {
    RB_ASSERT(k >= 0 && k < RB_RUQ_NSITES && t->site[k].active);
    int n = site_width(t->c, k);
    memcpy(t->site[k].v, v, sizeof(double) * n);
    normalize(&t->site[k], n);
    t->stale = 1;
}

int rb_ruq_train_step(rb_ruq_train *t, rb_error *err) {
    t->adam_t++;
    double b1 = RUQ_ADAM_BETA1, b2 = RUQ_ADAM_BETA2, lr = t->o.lr;
    double c1 = 1.0 - pow(b1, (double)t->adam_t), c2 = 1.0 - pow(b2, (double)t->adam_t);
    double decay = 1.0 - lr * t->o.weight_decay; /* torch's AdamW: decay first, then the Adam step */
    for (int k = 0; k < RB_RUQ_NSITES; k++) {
        rb_ruq_train_site *ts = &t->site[k];
        int n = site_width(t->c, k);
        if (!ts->active) continue;
        double ss = 0;
        for (int j = 0; j < n; j++) {
            double g = ts->dv[j];
            ts->m[j] = b1 * ts->m[j] + (1.0 - b1) * g;
            ts->s2[j] = b2 * ts->s2[j] + (1.0 - b2) * g * g;
            ts->v[j] = ts->v[j] * decay - lr * (ts->m[j] / c1) / (sqrt(ts->s2[j] / c2) + RUQ_ADAM_EPS);
            ss += ts->v[j] * ts->v[j];
        }
        if (!(isfinite(ss) && ss > 0))
            return rb_error_set(err, RB_ENUMERIC,
                                "ruquant stage 2: layer %d, %s: the Householder vector became %s at step %ld (lower "
                                "rotation.options.lr)",
                                t->layer, rb_ruq_site_name(k), ss > 0 ? "non-finite" : "zero", t->adam_t);
        normalize(ts, n);
    }
    t->stale = 1;
    return 0;
}

int rb_ruq_train_end(rb_ruq_train *t, rb_error *err) {
    for (int k = 0; k < RB_RUQ_NSITES; k++) {
        rb_ruq_train_site *ts = &t->site[k];
        rb_ruq_site *s = t->fz->rs->ruq[t->layer][k];
        if (!ts->active) continue;
        memcpy(s->hh, ts->nv, sizeof(double) * s->n);
        int rc = rb_ruq_site_check(s, err);
        if (rc) return rb_error_prefix(err, "ruquant stage 2: layer %d, %s", t->layer, rb_ruq_site_name(k));
    }
    return 0;
}

/* Mean block-output MSE over S windows (forward only, windows weighted equally). */
static int eval_mse(rb_ruq_train *t, const float *Xq, const float *Y, int S, double *mse, rb_error *err) {
    size_t win = (size_t)t->T * t->c->dim;
    double sum = 0;
    for (int w0 = 0; w0 < S; w0 += t->max_seq) {
        int ns = S - w0 < t->max_seq ? S - w0 : t->max_seq;
        double l;
        int rc = rb_ruq_train_loss(t, Xq + (size_t)w0 * win, Y + (size_t)w0 * win, ns, 0, &l, err);
        if (rc) return rc;
        sum += l * ns;
    }
    *mse = sum / S;
    return 0;
}

int rb_ruq_train_layer(rb_ruq_train *t, int l, const float *Xq, const float *Y, int S, rb_trace_table *tt,
                       rb_ruq_train_info *info, rb_error *err) {
    double t0 = rb_now();
    int rc = rb_ruq_train_begin(t, l, err);
    if (rc) return rc;
    memset(info, 0, sizeof *info);
    for (int k = 0; k < RB_RUQ_NSITES; k++) {
        info->trained += t->site[k].active;
        if (!t->site[k].active)
            rb_info("ruquant stage 2: layer %d, %s: no global Householder (stage 1 skipped it): stays the identity, "
                    "not trained",
                    l, rb_ruq_site_name(k));
    }
    if ((rc = eval_mse(t, Xq, Y, S, &info->mse_stage1, err))) return rc;
    double row[] = {l, 0, info->mse_stage1, rb_now() - t0};
    if ((rc = rb_trace_row(tt, row, err))) return rc;
    size_t win = (size_t)t->T * t->c->dim;
    for (int e = 1; e <= t->o.epochs && info->trained; e++) {
        double sum = 0;
        int steps = 0;
        for (int w0 = 0; w0 < S; w0 += t->max_seq, steps++) {
            int ns = S - w0 < t->max_seq ? S - w0 : t->max_seq;
            double loss;
            rb_ruq_train_guard(t);
            if ((rc = rb_ruq_train_loss(t, Xq + (size_t)w0 * win, Y + (size_t)w0 * win, ns, 1, &loss, err)) ||
                (rc = rb_ruq_train_step(t, err)))
                return rc;
            sum += loss;
            if (rb_interrupted())
                return rb_error_set(err, RB_EINTERRUPTED, "ruquant stage 2: interrupted in layer %d, epoch %d", l, e);
        }
        double r2[] = {l, e, sum / steps, rb_now() - t0};
        if ((rc = rb_trace_row(tt, r2, err))) return rc;
    }
    if ((rc = rb_ruq_train_end(t, err))) return rc;
    if ((rc = eval_mse(t, Xq, Y, S, &info->mse_stage2, err))) return rc;
    info->seconds = rb_now() - t0;
    rb_info("ruquant stage 2: layer %d: block-output MSE %.6g -> %.6g (%.4f of stage 1), %d sites, %d epochs x %d "
            "windows, %.1f s",
            l, info->mse_stage1, info->mse_stage2, info->mse_stage2 / info->mse_stage1, info->trained, t->o.epochs, S,
            info->seconds);
    return 0;
}

/* rb_backward / rb_grad: every gradient of the engine against central finite differences.
 *
 * The engine computes in float32; the losses here are reduced in double, and each check compares a
 * directional derivative Σ grad·V (V a random direction) with (L(θ+εV) − L(θ−εV)) / 2ε. */
#include "rb_test.h"

#include <math.h>
#include <unistd.h>

#include "core/rb_file.h"
#include "core/rb_rng.h"
#include "model/rb_backward.h"
#include "model/rb_grad.h"
#include "model/rb_make_model.h"
#include "model/rb_model.h"
#include "quant/rb_qpreset.h"
#include "rotate/rb_fuse.h"
#include "rotate/rb_orth.h"
#include "rotate/rb_rotsite.h"
#include "rotate/rb_ruq_site.h"

/* Step of the central differences, relative to the RMS of the perturbed tensor: the truncation
 * error is O(ε²) ≈ 1e-5 relative, and float32 rounding of the loss (≈ 1e-7 · √N relative over N
 * summed outputs) divided by 2ε stays near 1e-4 of a typical directional derivative. */
#define FD_EPS 3e-3
/* Accepted |FD − analytic| / max(|analytic|, FD_FLOOR · scale): float32 forward at ε = 3e-3 gives
 * agreement to ~1e-4..1e-3; a wrong term (sign, transpose, missing path) is off by O(1). */
#define FD_REL_TOL 5e-3
#define FD_FLOOR 1e-2

/* Generated models go to numbered subdirectories of the group's temporary directory, removed with it
 * (rb_test_dir_teardown). */
static char g_root[512];
static int g_models;

static int group_setup(void **state) {
    int rc = rb_test_dir_setup(state);
    snprintf(g_root, sizeof g_root, "%s", ((rb_test_dir_fixture *)*state)->dir);
    return rc;
}

typedef struct fixture {
    char dir[600];
    rb_model *m;
    rb_llama_config c;
    rb_layer_weights w;
} fixture;

/* A generated model of `preset`, or (path set) an existing checkpoint. */
static void fixture_open_path(fixture *fx, const char *preset, const char *path) {
    rb_error err = {0};
    if (!path) {
        snprintf(fx->dir, sizeof fx->dir, "%s/m%d", g_root, g_models++);
        rb_make_model_opts o = {.preset = preset, .seed = 3};
        if (rb_make_model(fx->dir, &o, &err)) fail_msg("%s", err.msg);
        path = fx->dir;
    }
    if (rb_model_open(path, &fx->m, &err)) fail_msg("%s", err.msg);
    fx->c = *rb_model_config(fx->m);
    assert_int_equal(rb_layer_weights_init(&fx->w, &fx->c, &err), 0);
    assert_int_equal(rb_model_load_layer(fx->m, 0, &fx->w, &err), 0);
}

static void fixture_open(fixture *fx, const char *preset) { fixture_open_path(fx, preset, NULL); }

static void fixture_close(fixture *fx) {
    rb_layer_weights_free(&fx->w);
    rb_model_close(fx->m);
}

static double rms(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s / (double)n) + 1e-30;
}

/* Σ coef·(layer output) in double for layer input h_in. */
static double layer_loss(rb_forward *f, const rb_layer_weights *w, const float *h_in, const float *coef, int n_seq,
                         int T, const rb_hooks *hk) {
    size_t n = (size_t)n_seq * T * f->cfg.dim;
    float *h = malloc(n * sizeof(float));
    memcpy(h, h_in, n * sizeof(float));
    rb_error err = {0};
    int rc = rb_forward_layer(f, w, 0, h, n_seq, T, 0, hk, &err);
    if (rc) fail_msg("forward: %s", err.msg);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)coef[i] * h[i];
    free(h);
    return s;
}

static void check_dir(const char *what, double an, double fd, double scale) {
    double den = fmax(fabs(an), FD_FLOOR * scale);
    double rel = fabs(an - fd) / den;
    if (rel > FD_REL_TOL) fail_msg("%s: analytic %.8g vs finite difference %.8g (rel %.2e)", what, an, fd, rel);
    fprintf(stderr, "# %-28s analytic %+.6e fd %+.6e rel %.1e\n", what, an, fd, rel);
}

/* Perturbs p[n] along V and compares with the gradient g[n]. */
static void fd_tensor(const char *what, float *p, const float *g, size_t n, rb_forward *f, const rb_layer_weights *w,
                      float *h_in, const float *coef, int n_seq, int T, const rb_hooks *hk, rb_rng *rng) {
    float *V = malloc(n * sizeof(float)), *p0 = malloc(n * sizeof(float));
    rb_rng_gauss(rng, V, n, 0.0, 1.0);
    memcpy(p0, p, n * sizeof(float));
    double eps = FD_EPS * rms(p0, n), an = 0, gscale = 0;
    for (size_t i = 0; i < n; i++) an += (double)g[i] * V[i], gscale += (double)g[i] * g[i];
    for (size_t i = 0; i < n; i++) p[i] = (float)(p0[i] + eps * V[i]);
    double lp = layer_loss(f, w, h_in, coef, n_seq, T, hk);
    for (size_t i = 0; i < n; i++) p[i] = (float)(p0[i] - eps * V[i]);
    double lm = layer_loss(f, w, h_in, coef, n_seq, T, hk);
    memcpy(p, p0, n * sizeof(float));
    check_dir(what, an, (lp - lm) / (2 * eps), sqrt(gscale * n));
    free(V);
    free(p0);
}

/* The whole layer: forward with a tape, backward, then FD for the input and every weight. */
static void layer_fd_path(const char *preset, const char *path, int n_seq, int T, rb_hooks *hk, const char *tag) {
    fixture fx;
    fixture_open_path(&fx, preset, path);
    rb_llama_config *c = &fx.c;
    rb_error err = {0};
    size_t rows = (size_t)n_seq * T, n = rows * c->dim;
    rb_forward f;
    rb_backward b;
    rb_tape t;
    rb_layer_weights dw;
    assert_int_equal(rb_forward_init(&f, c, T, (int)rows, &err), 0);
    assert_int_equal(rb_backward_init(&b, c, T, (int)rows, &err), 0);
    assert_int_equal(rb_tape_init(&t, c, (int)rows, &err), 0);
    assert_int_equal(rb_layer_weights_init(&dw, c, &err), 0);
    rb_layer_weights_zero(&dw, c);
    rb_rng rng;
    rb_rng_seed(&rng, 11, "test.backward");
    float *h_in = malloc(n * sizeof(float)), *coef = malloc(n * sizeof(float)), *h = malloc(n * sizeof(float));
    rb_rng_gauss(&rng, h_in, n, 0.0, 1.0);
    rb_rng_gauss(&rng, coef, n, 0.0, 1.0);
    memcpy(h, h_in, n * sizeof(float));
    f.tape = &t;
    if (rb_forward_layer(&f, &fx.w, 0, h, n_seq, T, 0, hk, &err)) fail_msg("%s", err.msg);
    f.tape = NULL;
    memcpy(h, coef, n * sizeof(float));
    if (rb_backward_layer(&b, &f, &t, &fx.w, hk, h, &dw, &err)) fail_msg("%s", err.msg);
    fprintf(stderr, "# %s %s, %d x %d tokens\n", preset, tag, n_seq, T);
    fd_tensor("d h_in (whole layer)", h_in, h, n, &f, &fx.w, h_in, coef, n_seq, T, hk, &rng);
    for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
        int r, k;
        float *p = rb_layer_linear(&fx.w, c, lin, &r, &k), *g = rb_layer_linear(&dw, c, lin, &r, &k);
        fd_tensor(rb_linear_name(lin), p, g, (size_t)r * k, &f, &fx.w, h_in, coef, n_seq, T, hk, &rng);
    }
    fd_tensor("input_layernorm (gamma)", fx.w.rms_att, dw.rms_att, c->dim, &f, &fx.w, h_in, coef, n_seq, T, hk, &rng);
    fd_tensor("post_attention_layernorm", fx.w.rms_ffn, dw.rms_ffn, c->dim, &f, &fx.w, h_in, coef, n_seq, T, hk, &rng);
    free(h_in);
    free(coef);
    free(h);
    rb_layer_weights_free(&dw);
    rb_tape_free(&t);
    rb_backward_free(&b);
    rb_forward_free(&f);
    fixture_close(&fx);
}

static void layer_fd(const char *preset, int n_seq, int T, rb_hooks *hk, const char *tag) {
    layer_fd_path(preset, NULL, n_seq, T, hk, tag);
}

static void test_layer_presets(void **state) {
    (void)state;
    static const char *const presets[] = {"tiny", "gqa", "npot", "llama3"};
    for (int i = 0; i < 4; i++) layer_fd(presets[i], 2, 24, NULL, "plain");
}

/* T beyond one attention query block (RB_ATT_QBLOCK = 256): the blockwise recomputation of P. */
static void test_layer_long(void **state) {
    (void)state;
    layer_fd("gqa", 1, RB_ATT_QBLOCK + 37, NULL, "two query blocks");
}

/* The online Hadamards' backwards (R3 per head on Q and K, R4 on the down_proj input, QuaRot's
 * cross-head transform on the o_proj input). */
static void test_layer_online_hooks(void **state) {
    (void)state;
    rb_error err = {0};
    rb_had r3, r4, ch;
    assert_int_equal(rb_had_init(&r3, 16, NULL, &err), 0);  /* tiny: head_dim 16 */
    assert_int_equal(rb_had_init(&r4, 176, NULL, &err), 0); /* tiny: hidden 176 = 11·16 */
    assert_int_equal(rb_had_init(&ch, 4, NULL, &err), 0);   /* tiny: 4 heads */
    rb_hooks hk;
    rb_hooks_init(&hk);
    rb_hooks_add_bwd(&hk, RB_SITE_Q, rb_hook_had_heads, rb_hook_had_heads_bwd, 0, &r3);
    rb_hooks_add_bwd(&hk, RB_SITE_K, rb_hook_had_heads, rb_hook_had_heads_bwd, 0, &r3);
    rb_hooks_add_bwd(&hk, RB_SITE_DOWN_IN, rb_hook_had_rows, rb_hook_had_rows_bwd, 0, &r4);
    rb_hooks_add_bwd(&hk, RB_SITE_O_IN, rb_hook_had_cross, rb_hook_had_cross_bwd, 0, &ch);
    layer_fd("tiny", 2, 20, &hk, "R3 + R4 + cross-head hooks");
    rb_had_free(&r3);
    rb_had_free(&r4);
    rb_had_free(&ch);
}

/* A rotation site x ← Q(xR)Rᵀ (Q off, so the loss is differentiable) at attn_in and, per head,
 * at v; its input gradient through the layer, and dR by finite differences of R itself. */
static void test_rotsite(void **state) {
    (void)state;
    fixture fx;
    fixture_open(&fx, "tiny");
    rb_llama_config *c = &fx.c;
    rb_error err = {0};
    int n_seq = 2, T = 16, d = c->dim;
    size_t rows = (size_t)n_seq * T, n = rows * d;
    rb_rng rng;
    rb_rng_seed(&rng, 5, "test.rotsite");
    double *R = malloc(sizeof(double) * d * d);
    assert_int_equal(rb_orth_random(&rng, d, R, &err), 0);
    rb_rotsite rs;
    assert_int_equal(rb_rotsite_init(&rs, d, R, NULL, 0, &err), 0);
    rb_hooks hk;
    rb_hooks_init(&hk);
    rb_hooks_add_bwd(&hk, RB_SITE_ATTN_IN, rb_hook_rotsite, rb_hook_rotsite_bwd, 1, &rs);
    layer_fd("tiny", n_seq, T, &hk, "rotation site at attn_in");

    /* dR: gradient of Σ coef·h_out with respect to R (any matrix: the map x·R·Rᵀ is polynomial) */
    rb_forward f;
    rb_backward b;
    rb_tape t;
    assert_int_equal(rb_forward_init(&f, c, T, (int)rows, &err), 0);
    assert_int_equal(rb_backward_init(&b, c, T, (int)rows, &err), 0);
    assert_int_equal(rb_tape_init(&t, c, (int)rows, &err), 0);
    float *h_in = malloc(n * sizeof(float)), *coef = malloc(n * sizeof(float)), *h = malloc(n * sizeof(float));
    rb_rng_gauss(&rng, h_in, n, 0.0, 1.0);
    rb_rng_gauss(&rng, coef, n, 0.0, 1.0);
    memcpy(h, h_in, n * sizeof(float));
    f.tape = &t;
    assert_int_equal(rb_forward_layer(&f, &fx.w, 0, h, n_seq, T, 0, &hk, &err), 0);
    f.tape = NULL;
    memcpy(h, coef, n * sizeof(float));
    rb_rotsite_zero_grad(&rs);
    assert_int_equal(rb_backward_layer(&b, &f, &t, &fx.w, &hk, h, NULL, &err), 0);
    double *V = malloc(sizeof(double) * d * d), *Rp = malloc(sizeof(double) * d * d), an = 0, gs = 0;
    rb_rng_gauss_d(&rng, V, (size_t)d * d, 0.0, 1.0);
    for (int i = 0; i < d * d; i++) an += rs.dR[i] * V[i], gs += rs.dR[i] * rs.dR[i];
    double eps = FD_EPS / sqrt((double)d), l[2];
    for (int sgn = 0; sgn < 2; sgn++) {
        for (int i = 0; i < d * d; i++) Rp[i] = R[i] + (sgn ? -eps : eps) * V[i];
        rb_rotsite_set(&rs, Rp);
        l[sgn] = layer_loss(&f, &fx.w, h_in, coef, n_seq, T, &hk);
    }
    check_dir("dR of the rotation site", an, (l[0] - l[1]) / (2 * eps), sqrt(gs) * d);
    free(V), free(Rp), free(h_in), free(coef), free(h), free(R);
    rb_tape_free(&t);
    rb_backward_free(&b);
    rb_forward_free(&f);
    rb_rotsite_free(&rs);
    fixture_close(&fx);
}

/* RUQuant's online transforms x ← (x/s)·A at attn_in and x·A (scale fused) at down_in: their
 * backward (the transpose) through a whole layer. */
static void test_ruq_hooks(void **state) {
    (void)state;
    fixture fx;
    fixture_open(&fx, "tiny");
    const rb_llama_config *c = &fx.c;
    rb_error err = {0};
    rb_rng rng;
    rb_rng_seed(&rng, 8, "test.ruq");
    rb_rotset rs;
    assert_int_equal(rb_rotset_init(&rs, "test", c->dim, c->head_dim, c->hidden_dim, c->n_layers, &err), 0);
    assert_int_equal(rb_rotset_ruq_alloc(&rs, &err), 0);
    static const int kinds[2] = {RB_RUQ_QKV, RB_RUQ_DOWN};
    for (int i = 0; i < 2; i++) {
        int n = kinds[i] == RB_RUQ_DOWN ? c->hidden_dim : c->dim, B = 16;
        rb_ruq_site *q;
        assert_int_equal(rb_ruq_site_alloc(n, B, &q, &err), 0);
        assert_int_equal(rb_orth_random(&rng, B, q->blk0, &err), 0);
        assert_int_equal(rb_orth_random(&rng, B, q->blk1, &err), 0);
        for (int j = n - 1; j > 0; j--) { /* Fisher–Yates */
            int k = (int)rb_rng_below(&rng, (uint64_t)j + 1);
            int32_t t = q->perm[j];
            q->perm[j] = q->perm[k], q->perm[k] = t;
        }
        double nn = 0;
        rb_rng_gauss_d(&rng, q->hh, (size_t)n, 0.0, 1.0);
        for (int j = 0; j < n; j++) nn += q->hh[j] * q->hh[j];
        for (int j = 0; j < n; j++) q->hh[j] /= sqrt(nn), q->scale[j] = 0.5 + 1.5 * rb_rng_uniform(&rng);
        q->scale_fused = kinds[i] == RB_RUQ_DOWN;
        assert_int_equal(rb_ruq_site_check(q, &err), 0);
        rs.ruq[0][kinds[i]] = q;
    }
    rb_weights_src base = rb_weights_from_model(fx.m);
    rb_fused fz;
    if (rb_fused_init(&fz, &base, c, &rs, &err)) fail_msg("%s", err.msg);
    rb_hooks hk;
    rb_hooks_init(&hk);
    rb_fused_add_online_hooks(&fz, &hk);
    layer_fd("tiny", 2, 20, &hk, "RUQuant online transforms (attn_in with s, down_in fused s)");
    rb_fused_free(&fz);
    rb_rotset_free(&rs);
    fixture_close(&fx);
}

static int no_bwd_hook(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    (void)ctx, (void)in, (void)x, (void)err;
    return 0;
}

/* A hook without a backward is refused, naming the site, before any work. */
static void test_hook_without_backward(void **state) {
    (void)state;
    rb_hooks hk;
    rb_hooks_init(&hk);
    rb_hooks_add(&hk, RB_SITE_O_IN, no_bwd_hook, NULL);
    rb_error err = {0};
    assert_int_equal(rb_hooks_check_backward(&hk, 3, &err), RB_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "layer 3, site o_in"));
    assert_non_null(strstr(err.msg, "no backward"));
}

/* STE passes the gradient unchanged; the clipped STE zeroes exactly the clamped entries. */
static void test_ste(void **state) {
    (void)state;
    rb_qspec s = rb_qspec_make(4, 1, RB_QGRAN_TOKEN, 0);
    s.clip = 0.5f; /* half the range: the largest entries are clamped */
    float x[8] = {0.1f, -0.2f, 0.3f, 1.0f, -0.9f, 0.05f, 0.45f, -0.5f}, dx[8];
    for (int i = 0; i < 8; i++) dx[i] = 1.0f;
    rb_error err = {0};
    assert_int_equal(rb_quant_ste_mask(&s, x, dx, 1, 8, 8, &err), 0);
    /* scale = 0.5·1.0/7: levels −8..7 cover [−0.571, 0.5]; 1.0 and −0.9 lie beyond */
    float want[8] = {1, 1, 1, 0, 0, 1, 1, 1};
    for (int i = 0; i < 8; i++) assert_true(dx[i] == want[i]);
    rb_quant_cfg q;
    assert_int_equal(rb_quant_preset("W4A4KV4", &q, &err), 0);
    rb_site_info in = {.site = RB_SITE_ATTN_IN, .n_seq = 1, .seq_len = 1, .cols = 8, .n_groups = 1, .group_dim = 8};
    for (int i = 0; i < 8; i++) dx[i] = (float)i;
    assert_int_equal(rb_quant_site_ste(&q, &in, x, dx, &err), 0);
    for (int i = 0; i < 8; i++) assert_true(dx[i] == (float)i);
}

/* ---- whole model ---- */

typedef struct perturb_src {
    rb_weights_src base;
    const float *V;  /* direction for layer `layer`'s wq (or the embedding rows when layer < 0) */
    double eps;
    int layer;
    const rb_llama_config *c;
} perturb_src;

static int p_load(void *ctx, int l, rb_layer_weights *w, rb_error *err) {
    perturb_src *p = ctx;
    int rc = p->base.load_layer(p->base.ctx, l, w, err);
    if (!rc && p->V && l == p->layer) {
        size_t n = (size_t)p->c->n_heads * p->c->head_dim * p->c->dim;
        for (size_t i = 0; i < n; i++) w->wq[i] = (float)(w->wq[i] + p->eps * p->V[i]);
    }
    return rc;
}
static int p_embed(void *ctx, const int32_t *ids, size_t n, float *out, rb_error *err) {
    perturb_src *p = ctx;
    int rc = p->base.embed(p->base.ctx, ids, n, out, err);
    if (!rc && p->V && p->layer < 0)
        for (size_t i = 0; i < n * p->c->dim; i++) out[i] = (float)(out[i] + p->eps * p->V[i]);
    return rc;
}
static int p_norm(void *ctx, float *out, rb_error *err) {
    perturb_src *p = ctx;
    return p->base.load_final_norm(p->base.ctx, out, err);
}
static int p_head(void *ctx, float *out, rb_error *err) {
    perturb_src *p = ctx;
    return p->base.load_lm_head(p->base.ctx, out, err);
}

typedef struct sink_rec {
    const rb_llama_config *c;
    float *dwq;  /* [L][qd*d] */
    float *dw_all; /* [L][all linears] for the checkpoint comparison */
    size_t per_layer;
    float *dh0;
} sink_rec;

static int rec_layer(void *ctx, int l, const rb_layer_weights *w, const rb_layer_weights *dw, rb_error *err) {
    (void)w, (void)err;
    sink_rec *s = ctx;
    size_t off = 0;
    for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
        int r, k;
        float *g = rb_layer_linear(dw, s->c, lin, &r, &k);
        memcpy(s->dw_all + (size_t)l * s->per_layer + off, g, sizeof(float) * (size_t)r * k);
        off += (size_t)r * k;
    }
    return 0;
}
static int rec_embed(void *ctx, const int32_t *ids, const float *h0, const float *dh0, size_t rows, rb_error *err) {
    (void)ids, (void)h0, (void)err;
    sink_rec *s = ctx;
    memcpy(s->dh0, dh0, sizeof(float) * rows * s->c->dim);
    return 0;
}

static void run_model(const rb_weights_src *src, const rb_llama_config *c, const int32_t *ids, int n_seq, int T,
                      int no_ckpt, sink_rec *rec, double *loss) {
    rb_error err = {0};
    rb_grad_sink sink = {rec, rec ? rec_layer : NULL, rec ? rec_embed : NULL, NULL};
    rb_grad_opts o = {.no_checkpoint = no_ckpt};
    if (rb_llama_loss_grad(src, c, ids, n_seq, T, NULL, &o, rec ? &sink : NULL, loss, &err)) fail_msg("%s", err.msg);
}

static void test_model_fd_and_checkpointing(void **state) {
    (void)state;
    fixture fx;
    fixture_open(&fx, "tiny");
    rb_llama_config *c = &fx.c;
    int n_seq = 3, T = 20, L = c->n_layers;
    size_t rows = (size_t)n_seq * T;
    int32_t *ids = malloc(rows * sizeof(int32_t));
    rb_rng rng;
    rb_rng_seed(&rng, 9, "test.model");
    for (size_t i = 0; i < rows; i++) ids[i] = (int32_t)rb_rng_below(&rng, (uint64_t)c->vocab_size);
    size_t per = 0;
    for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
        int r, k;
        rb_layer_linear_shape(c, lin, &r, &k);
        per += (size_t)r * k;
    }
    sink_rec a = {c, NULL, calloc(per * L, sizeof(float)), per, calloc(rows * c->dim, sizeof(float))};
    sink_rec b = {c, NULL, calloc(per * L, sizeof(float)), per, calloc(rows * c->dim, sizeof(float))};
    rb_weights_src base = rb_weights_from_model(fx.m);
    double la, lb;
    run_model(&base, c, ids, n_seq, T, 0, &a, &la);
    run_model(&base, c, ids, n_seq, T, 1, &b, &lb);
    /* identical with and without checkpointing: the same code on the same inputs */
    assert_true(la == lb);
    assert_memory_equal(a.dw_all, b.dw_all, per * L * sizeof(float));
    assert_memory_equal(a.dh0, b.dh0, rows * c->dim * sizeof(float));
    fprintf(stderr, "# loss %.8f, gradients bit-identical with and without checkpointing\n", la);

    /* FD: layer 0's wq and the embedding output (through every layer, the final norm, lm_head and the
     * cross-entropy) */
    for (int which = 0; which < 2; which++) {
        int layer = which == 0 ? 0 : -1;
        size_t n = which == 0 ? (size_t)c->n_heads * c->head_dim * c->dim : rows * c->dim;
        const float *g = which == 0 ? a.dw_all : a.dh0; /* wq is the first block of layer 0 */
        float *V = malloc(n * sizeof(float));
        rb_rng_gauss(&rng, V, n, 0.0, 1.0);
        double an = 0, gs = 0;
        for (size_t i = 0; i < n; i++) an += (double)g[i] * V[i], gs += (double)g[i] * g[i];
        double scale = which == 0 ? rms(fx.w.wq, n) : 1.0;
        perturb_src p = {base, V, FD_EPS * scale, layer, c};
        rb_weights_src ps = {&p, p_load, p_embed, p_norm, p_head};
        double lp, lm;
        run_model(&ps, c, ids, n_seq, T, 0, NULL, &lp);
        p.eps = -p.eps;
        run_model(&ps, c, ids, n_seq, T, 0, NULL, &lm);
        check_dir(which == 0 ? "model: layer 0 q_proj" : "model: embedding output", an,
                  (lp - lm) / (2 * FD_EPS * scale), sqrt(gs * n));
        free(V);
    }
    free(a.dw_all), free(a.dh0), free(b.dw_all), free(b.dh0), free(ids);
    fixture_close(&fx);
}

/* A real llama2.c checkpoint: its interleaved RoPE layout is converted on load, so the backward sees
 * rotate_half as for HF files; the layer checks, and the whole-model loss and embedding gradient of
 * the .bin and the HF copy of stories260K agree. */
static void test_llama2c_layout(void **state) {
    (void)state;
    RB_REQUIRE_DATA(bin, "stories260K/stories260K.bin");
    RB_REQUIRE_DATA(hf, "stories260K/hf");
    layer_fd_path("stories260K.bin", bin, 2, 24, NULL, "llama2.c layout");
    rb_model *m[2];
    rb_error err = {0};
    assert_int_equal(rb_model_open(bin, &m[0], &err), 0);
    assert_int_equal(rb_model_open(hf, &m[1], &err), 0);
    const rb_llama_config *c = rb_model_config(m[0]);
    int n_seq = 2, T = 32;
    size_t rows = (size_t)n_seq * T;
    int32_t ids[64];
    for (int i = 0; i < 64; i++) ids[i] = (int32_t)((i * 37 + 11) % c->vocab_size);
    float *dh[2];
    double loss[2];
    for (int k = 0; k < 2; k++) {
        dh[k] = calloc(rows * c->dim, sizeof(float));
        sink_rec r = {c, NULL, NULL, 0, dh[k]};
        rb_grad_sink sink = {&r, NULL, rec_embed, NULL};
        rb_weights_src src = rb_weights_from_model(m[k]);
        if (rb_llama_loss_grad(&src, c, ids, n_seq, T, NULL, NULL, &sink, &loss[k], &err)) fail_msg("%s", err.msg);
    }
    double md = 0, mx = 0;
    for (size_t i = 0; i < rows * c->dim; i++) md = fmax(md, fabs((double)dh[0][i] - dh[1][i])), mx = fmax(mx, fabs(dh[1][i]));
    fprintf(stderr, "# stories260K .bin vs hf: loss %.9f vs %.9f, max |d dh0| %.2e of %.2e\n", loss[0], loss[1], md, mx);
    assert_true(fabs(loss[0] - loss[1]) < 1e-5 * loss[1]);
    assert_true(md <= 1e-4 * mx);
    free(dh[0]), free(dh[1]);
    rb_model_close(m[0]);
    rb_model_close(m[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_presets),
        cmocka_unit_test(test_layer_long),
        cmocka_unit_test(test_llama2c_layout),
        cmocka_unit_test(test_layer_online_hooks),
        cmocka_unit_test(test_rotsite),
        cmocka_unit_test(test_ruq_hooks),
        cmocka_unit_test(test_hook_without_backward),
        cmocka_unit_test(test_ste),
        cmocka_unit_test(test_model_fd_and_checkpointing),
    };
    return cmocka_run_group_tests(tests, group_setup, rb_test_dir_teardown);
}

/* OptRot / OptRot⁺ (METHODS §4): the closed-form gradients against central finite differences for
 * every matrix type (plain, plus, normalize on/off), the loss against the actually fused model,
 * the calibration Hessian against a direct computation, and on stories260K: the loss goes down
 * from the Hadamard start, the fused weights get flatter than under Hadamard, rotations are
 * orthogonal and reproducible; option errors name rotation.options.<name>. */
#include "rb_test.h"

#include <math.h>

#include "core/rb_file.h"
#include "core/rb_rng.h"
#include "core/rb_trace.h"
#include "text/rb_calib.h"
#include "pipeline/rb_pipeline.h"
#include "eval/rb_stats.h"
#include "model/rb_forward.h"
#include "model/rb_make_model.h"
#include "model/rb_model.h"
#include "rotate/rb_fuse.h"
#include "methods/rb_method.h"
#include "methods/rb_optrot.h"
#include "rotate/rb_orth.h"
#include "text/rb_tokenizer.h"

/* Central differences of an fp32-GEMM loss (reductions in double): with step h the rounding noise
 * of L (~1e-7 relative) contributes ~1e-7·L/h and truncation O(h²·L'''); h = 1e-3 on O(1/√n)
 * entries balances both near 1e-4 of the directional derivative. Measured worst 4.5e-5; bound
 * 2e-3 relative to the derivative along the direction of steepest ascent. */
#define FD_STEP 1e-3
#define FD_REL_TOL 2e-3
/* The loss on the prepared model at (R1, R2) vs the loss on the model fused with (R1, R2) at the
 * identity: the same numbers up to fp32 rounding of the fused weights (and, for OptRot⁺, of the
 * forward that measures H in the rotated basis): ≤ 7e-8 relative measured. */
#define LOSS_MATCH_REL_TOL 1e-6
/* Hessian of layer 0's attention input vs a direct Σxᵀx/N in double: fp32 sgemm sums over 96
 * tokens, 3e-7 relative measured. */
#define HESS_REL_TOL 1e-5

/* ---- small generated model: prepared source and calibration windows ---- */

enum { GEN_NWIN = 4, GEN_T = 24 };

typedef struct gen {
    char dir[512];
    rb_model *m;
    const rb_llama_config *c;
    rb_weights_src base;  /* checkpoint */
    rb_rotset prep_rs;    /* R1 = R2 = I, R4 on */
    rb_fused prep;
    rb_weights_src src;   /* prepared */
    rb_hooks hk;          /* online R4 of the prepared model */
    int32_t win[GEN_NWIN * GEN_T]; /* calibration windows [GEN_NWIN][GEN_T] of random ids */
} gen;

static void gen_open(gen *g, const char *preset) {
    rb_error err = {0};
    rb_test_tmpdir(g->dir, sizeof g->dir);
    rb_make_model_opts o = {.preset = preset, .seed = 5};
    assert_int_equal(rb_make_model(g->dir, &o, &err), 0);
    assert_int_equal(rb_model_open(g->dir, &g->m, &err), 0);
    g->c = rb_model_config(g->m);
    g->base = rb_weights_from_model(g->m);
    const rb_llama_config *c = g->c;
    assert_int_equal(rb_rotset_init(&g->prep_rs, "prep", c->dim, c->head_dim, c->hidden_dim, c->n_layers, &err), 0);
    g->prep_rs.r4 = 1;
    assert_int_equal(rb_fused_init(&g->prep, &g->base, c, &g->prep_rs, &err), 0);
    g->src = rb_fused_src(&g->prep);
    rb_hooks_init(&g->hk);
    rb_fused_add_online_hooks(&g->prep, &g->hk);
    rb_rng r;
    rb_rng_seed(&r, 9, "test.optrot.ids");
    for (int i = 0; i < GEN_NWIN * GEN_T; i++) g->win[i] = (int32_t)rb_rng_below(&r, (uint64_t)c->vocab_size);
}

static void gen_close(gen *g) {
    rb_fused_free(&g->prep);
    rb_rotset_free(&g->prep_rs);
    rb_model_close(g->m);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g->dir);
    if (system(cmd) != 0) fprintf(stderr, "# could not remove %s\n", g->dir);
}

/* Random orthogonal R1 [d][d] and R2[l] [hd][hd] (generic point: no Hadamard symmetry). */
static void random_point(const rb_llama_config *c, uint64_t seed, double *R1, double **R2) {
    rb_error err = {0};
    rb_rng r;
    rb_rng_seed(&r, seed, "test.optrot.point");
    assert_int_equal(rb_orth_random(&r, c->dim, R1, &err), 0);
    for (int l = 0; l < c->n_layers; l++) assert_int_equal(rb_orth_random(&r, c->head_dim, R2[l], &err), 0);
}

static void problem_init(rb_optrot *p, gen *g, const rb_weights_src *src, const rb_hooks *hk, int plus, int normalize,
                         unsigned mask) {
    rb_error err = {0};
    rb_optrot_opts o = {.plus = plus, .normalize = normalize, .mask = mask, .cache_bytes = (size_t)1 << 30};
    int rc = rb_optrot_init(p, src, g->c, &o, &err);
    if (!rc && plus) rc = rb_optrot_hessians(p, hk, g->win, GEN_NWIN, GEN_T, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
}

static double eval_loss(rb_optrot *p, const double *R1, double **R2) {
    rb_error err = {0};
    double L;
    assert_int_equal(rb_optrot_eval(p, R1, (const double *const *)R2, &L, NULL, NULL, &err), 0);
    return L;
}

/* (L(X + hE) − L(X − hE))/2h for X = R1 (which = -1) or all R2 (which = 1). */
static double central_diff(rb_optrot *p, double *R1, double **R2, int which, const double *E1, double *const *E2) {
    const rb_llama_config *c = &p->cfg;
    double Lp = 0, Lm = 0;
    for (int sgn = -1; sgn <= 1; sgn += 2) {
        double h = sgn * FD_STEP;
        if (which < 0)
            for (int i = 0; i < c->dim * c->dim; i++) R1[i] += h * E1[i];
        else
            for (int l = 0; l < c->n_layers; l++)
                for (int i = 0; i < c->head_dim * c->head_dim; i++) R2[l][i] += h * E2[l][i];
        double L = eval_loss(p, R1, R2);
        if (which < 0)
            for (int i = 0; i < c->dim * c->dim; i++) R1[i] -= h * E1[i];
        else
            for (int l = 0; l < c->n_layers; l++)
                for (int i = 0; i < c->head_dim * c->head_dim; i++) R2[l][i] -= h * E2[l][i];
        if (sgn < 0) Lm = L;
        else Lp = L;
    }
    return (Lp - Lm) / (2 * FD_STEP);
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* One configuration: directional derivatives along the gradient itself (value ‖G‖) and along a
 * random direction mixed with it, for R1 and for the R2 set. */
static void check_fd(gen *g, int plus, int normalize, int mat, double *worst) {
    const rb_llama_config *c = g->c;
    const int d = c->dim, hd = c->head_dim, L = c->n_layers;
    unsigned mask = mat < 0 ? RB_OPTROT_ALL : 1u << mat;
    rb_optrot p;
    problem_init(&p, g, &g->src, &g->hk, plus, normalize, mask);
    double *R1 = malloc(sizeof(double) * d * d), *G1 = malloc(sizeof(double) * d * d),
           *E1 = malloc(sizeof(double) * d * d);
    double *R2[8], *G2[8], *E2[8];
    assert_true(L <= 8);
    for (int l = 0; l < L; l++) {
        R2[l] = malloc(sizeof(double) * hd * hd), G2[l] = malloc(sizeof(double) * hd * hd);
        E2[l] = malloc(sizeof(double) * hd * hd);
    }
    random_point(c, 3, R1, R2);
    rb_error err = {0};
    double loss;
    assert_int_equal(rb_optrot_eval(&p, R1, (const double *const *)R2, &loss, G1, G2, &err), 0);
    assert_true(loss > 0);
    rb_rng r;
    rb_rng_seed(&r, 4, "test.optrot.dir");
    /* R1 */
    double n1 = sqrt(dot(G1, G1, (size_t)d * d));
    assert_true(n1 > 0);
    for (int kind = 0; kind < 2; kind++) {
        rb_rng_gauss_d(&r, E1, (size_t)d * d, 0.0, 1.0 / d); /* ‖E‖_F ≈ 1 */
        for (int i = 0; i < d * d; i++) E1[i] = kind == 0 ? G1[i] / n1 : 0.5 * G1[i] / n1 + E1[i];
        double an = dot(G1, E1, (size_t)d * d), fd = central_diff(&p, R1, R2, -1, E1, NULL);
        double rel = fabs(fd - an) / n1;
        if (rel > *worst) *worst = rel;
        if (rel > FD_REL_TOL)
            fprintf(stderr, "# R1 %s plus %d normalize %d dir %d: fd %.9g analytic %.9g (rel %.2g)\n",
                    mat < 0 ? "all" : rb_optrot_mat_name(mat), plus, normalize, kind, fd, an, rel);
        assert_true(rel <= FD_REL_TOL);
    }
    /* R2: only v and o depend on it (exactly zero otherwise) */
    double g2 = 0;
    for (int l = 0; l < L; l++) g2 += dot(G2[l], G2[l], (size_t)hd * hd);
    g2 = sqrt(g2);
    int uses_r2 = (mask & ((1u << RB_OPTROT_V) | (1u << RB_OPTROT_O))) != 0;
    if (!uses_r2) {
        assert_true(g2 == 0.0);
        for (int l = 0; l < L; l++) rb_rng_gauss_d(&r, E2[l], (size_t)hd * hd, 0.0, 1.0);
        assert_true(central_diff(&p, R1, R2, 1, NULL, E2) == 0.0);
    }
    for (int kind = 0; uses_r2 && kind < 2; kind++) {
        double an = 0;
        for (int l = 0; l < L; l++) {
            rb_rng_gauss_d(&r, E2[l], (size_t)hd * hd, 0.0, 1.0 / (hd * sqrt((double)L)));
            for (int i = 0; i < hd * hd; i++) E2[l][i] = kind == 0 ? G2[l][i] / g2 : 0.5 * G2[l][i] / g2 + E2[l][i];
            an += dot(G2[l], E2[l], (size_t)hd * hd);
        }
        double fd = central_diff(&p, R1, R2, 1, NULL, E2), rel = fabs(fd - an) / g2;
        if (rel > *worst) *worst = rel;
        if (rel > FD_REL_TOL)
            fprintf(stderr, "# R2 %s plus %d normalize %d dir %d: fd %.9g analytic %.9g (rel %.2g)\n",
                    mat < 0 ? "all" : rb_optrot_mat_name(mat), plus, normalize, kind, fd, an, rel);
        assert_true(rel <= FD_REL_TOL);
    }
    for (int l = 0; l < L; l++) free(R2[l]), free(G2[l]), free(E2[l]);
    free(R1), free(G1), free(E1);
    rb_optrot_free(&p);
}

static void test_gradients(void **state) {
    (void)state;
    gen g;
    gen_open(&g, "gqa"); /* 8 query heads over 2 KV heads: R2 on both sides of the GQA layout */
    double worst = 0;
    for (int plus = 0; plus < 2; plus++)
        for (int normalize = 0; normalize < 2; normalize++)
            for (int mat = -1; mat < RB_OPTROT_NMAT; mat++) check_fd(&g, plus, normalize, mat, &worst);
    fprintf(stderr, "# gradients vs central differences: worst relative error %.3g (bound %g)\n", worst, FD_REL_TOL);
    gen_close(&g);
}

/* The loss on the prepared model at (R1, R2) equals the loss of the model fused with (R1, R2) (and
 * for OptRot⁺ its Hessians measured in that rotated basis) at the identity; for plain OptRot also
 * Σ W⁴ of the fused weights as rb_weight_stats sums them. Catches any misplaced R1/R2/R4/cross-head
 * side in the loss. */
static void check_matches_fused(gen *g, int cross_head) {
    const rb_llama_config *c = g->c;
    const int d = c->dim, hd = c->head_dim, L = c->n_layers;
    rb_error err = {0};
    rb_rotset rs;
    assert_int_equal(rb_rotset_init(&rs, "test", d, hd, c->hidden_dim, L, &err), 0);
    rs.r3 = rs.r4 = 1;
    rs.cross_head = cross_head;
    double *R1 = malloc(sizeof(double) * d * d), *I1 = calloc((size_t)d * d, sizeof(double));
    double *R2[8];
    for (int l = 0; l < L; l++) R2[l] = malloc(sizeof(double) * hd * hd);
    for (int i = 0; i < d; i++) I1[i * d + i] = 1;
    random_point(c, 8, R1, R2);
    assert_int_equal(rb_rot_from_dense(R1, d, &rs.r1, &err), 0);
    for (int l = 0; l < L; l++) assert_int_equal(rb_rot_from_dense(R2[l], hd, &rs.r2[l], &err), 0);
    /* prepared side: the R4 (and cross-head) part of the prepared model must match rs */
    rb_rotset prs;
    assert_int_equal(rb_rotset_init(&prs, "prep", d, hd, c->hidden_dim, L, &err), 0);
    prs.r4 = 1;
    prs.cross_head = cross_head;
    rb_fused pf, ff;
    assert_int_equal(rb_fused_init(&pf, &g->base, c, &prs, &err), 0);
    assert_int_equal(rb_fused_init(&ff, &g->base, c, &rs, &err), 0);
    rb_weights_src psrc = rb_fused_src(&pf), fsrc = rb_fused_src(&ff);
    rb_hooks phk, fhk;
    rb_hooks_init(&phk);
    rb_hooks_init(&fhk);
    rb_fused_add_online_hooks(&pf, &phk);
    rb_fused_add_online_hooks(&ff, &fhk);
    for (int plus = 0; plus < 2; plus++)
        for (int normalize = 0; normalize < 2; normalize++) {
            rb_optrot pa, pb;
            problem_init(&pa, g, &psrc, &phk, plus, normalize, RB_OPTROT_ALL);
            problem_init(&pb, g, &fsrc, &fhk, plus, normalize, RB_OPTROT_ALL);
            double La = eval_loss(&pa, R1, R2), Lb = eval_loss(&pb, I1, NULL);
            double rel = fabs(La - Lb) / Lb;
            fprintf(stderr, "# cross_head %d plus %d normalize %d: loss %.9g prepared at R vs %.9g fused at I (rel %.2g)\n",
                    cross_head, plus, normalize, La, Lb, rel);
            assert_true(rel <= LOSS_MATCH_REL_TOL);
            if (!plus && !normalize) { /* independent sum over the fused weights */
                rb_layer_weights w;
                assert_int_equal(rb_layer_weights_init(&w, c, &err), 0);
                double s4 = 0;
                int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
                for (int l = 0; l < L; l++) {
                    assert_int_equal(fsrc.load_layer(fsrc.ctx, l, &w, &err), 0);
                    const float *ws[] = {w.wq, w.wk, w.wv, w.wo, w.w_gate, w.w_up, w.w_down};
                    const int rows[] = {qd, kvd, kvd, d, c->hidden_dim, c->hidden_dim, d};
                    const int cols[] = {d, d, d, qd, d, d, c->hidden_dim};
                    for (int m = 0; m < RB_OPTROT_NMAT; m++) {
                        rb_weight_stats st;
                        rb_weight_stats_compute(ws[m], rows[m], cols[m], &st);
                        s4 += st.sum_w4;
                    }
                }
                rb_layer_weights_free(&w);
                assert_true(fabs(La - s4) / s4 <= LOSS_MATCH_REL_TOL);
            }
            rb_optrot_free(&pa);
            rb_optrot_free(&pb);
        }
    rb_fused_free(&pf);
    rb_fused_free(&ff);
    rb_rotset_free(&prs);
    rb_rotset_free(&rs);
    for (int l = 0; l < L; l++) free(R2[l]);
    free(R1), free(I1);
}

static void test_loss_matches_fused(void **state) {
    (void)state;
    gen g;
    gen_open(&g, "gqa");
    check_matches_fused(&g, 0);
    check_matches_fused(&g, 1); /* 8 heads: the cross-head Hadamard exists */
    gen_close(&g);
}

/* Layer 0's attention input is RMSNorm(embedding) (γ folded away): its mean xᵀx computed directly
 * in double matches the statistic; H is symmetric; streaming (no cache) gives the same loss. */
static void test_hessian_and_streaming(void **state) {
    (void)state;
    gen g;
    gen_open(&g, "tiny");
    const rb_llama_config *c = g.c;
    const int d = c->dim, N = GEN_NWIN * GEN_T;
    rb_optrot p;
    problem_init(&p, &g, &g.src, &g.hk, 1, 0, RB_OPTROT_ALL);
    rb_error err = {0};
    float *x = malloc(sizeof(float) * N * d);
    assert_int_equal(g.src.embed(g.src.ctx, g.win, (size_t)N, x, &err), 0);
    rb_rmsnorm(x, x, NULL, (size_t)N, d, c->rms_eps);
    double mx = 0, diff = 0;
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int t = 0; t < N; t++) s += (double)x[t * d + i] * x[t * d + j];
            s /= N;
            mx = fmax(mx, fabs(s));
            diff = fmax(diff, fabs(s - p.hess[0].attn[i * d + j]));
            assert_true(p.hess[0].attn[i * d + j] == p.hess[0].attn[j * d + i]);
        }
    fprintf(stderr, "# layer 0 attn_in Hessian: max |diff| %.3g of max %.3g\n", diff, mx);
    assert_true(diff <= HESS_REL_TOL * mx);
    assert_int_equal(p.hess_tokens, N);
    /* streaming: cache budget 0 reloads every layer; same loss bit for bit (same products) */
    double *R1 = malloc(sizeof(double) * d * d), *R2[8];
    for (int l = 0; l < c->n_layers; l++) R2[l] = malloc(sizeof(double) * c->head_dim * c->head_dim);
    random_point(c, 2, R1, R2);
    rb_optrot q;
    rb_optrot_opts o = p.o;
    o.cache_bytes = 0;
    assert_int_equal(rb_optrot_init(&q, &g.src, c, &o, &err), 0);
    assert_int_equal(q.n_cached, 0);
    assert_int_equal(p.n_cached, c->n_layers);
    assert_int_equal(rb_optrot_eval(&q, R1, (const double *const *)R2, &(double){0}, NULL, NULL, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "Hessians"));
    assert_int_equal(rb_optrot_hessians(&q, &g.hk, g.win, GEN_NWIN, GEN_T, &err), 0);
    assert_true(eval_loss(&p, R1, R2) == eval_loss(&q, R1, R2));
    for (int l = 0; l < c->n_layers; l++) free(R2[l]);
    free(R1), free(x);
    rb_optrot_free(&p);
    rb_optrot_free(&q);
    gen_close(&g);
}

/* ---- stories260K ---- */

#define STORIES_STEPS 300 /* most of the descent: 1000 steps reach 0.46 of the initial loss at seed 0, 300 reach 0.43 at seed 1 */
#define STORIES_PLUS_STEPS 150
enum { CAL_N = 8, CAL_T = 64 };

typedef struct stories {
    int loaded, ok;
    rb_model *m;
    const rb_llama_config *c;
    rb_weights_src base;
    int32_t *calib; /* [CAL_N][CAL_T] from WikiText-2 test, first half */
} stories;

static stories st;

static int stories_load(void) {
    if (st.loaded) return st.ok;
    st.loaded = 1;
    char model[4096], hdir[4096], text[4096];
    const char *rel[] = {"stories260K/hf", "hadamard/had172.txt", "wikitext-2/wiki.test.raw"};
    char *dst[] = {model, hdir, text};
    for (int i = 0; i < 3; i++) { /* rb_test_data returns one static buffer: copy each */
        const char *q = rb_test_data(rel[i]);
        if (!q) return 0;
        snprintf(dst[i], 4096, "%s", q);
    }
    *strrchr(hdir, '/') = 0;
    setenv("RB_HADAMARD_DIR", hdir, 1); /* R4 of order 172 needs the table */
    rb_error err = {0};
    assert_int_equal(rb_model_open(model, &st.m, &err), 0);
    st.c = rb_model_config(st.m);
    st.base = rb_weights_from_model(st.m);
    rb_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0, b, e;
    assert_int_equal(rb_tokenizer_load(model, &tok, &err), 0);
    assert_int_equal(rb_tokenize_file(tok, text, 1, NULL, &ids, &n, &err), 0);
    assert_int_equal(rb_token_range_parse("0:0.5", n, &b, &e, &err), 0);
    assert_int_equal(rb_calib_sample(ids, e, CAL_N, CAL_T, 0, &st.calib, &err), 0);
    free(ids);
    rb_tokenizer_free(tok);
    st.ok = 1;
    return 1;
}

#define REQUIRE_STORIES()                                                                                        \
    do {                                                                                                         \
        if (!stories_load()) {                                                                                   \
            fprintf(stderr, "#\n# SKIPPED: shared data stories260K/hf, hadamard/had172.txt or "                  \
                            "wikitext-2/wiki.test.raw not found (set RB_SHARED_DATA)\n#\n");                     \
            skip();                                                                                              \
        }                                                                                                        \
    } while (0)

/* rb_method_run on stories260K with options "a=1,b=x" (NULL: none); returns its code. */
static int run(const char *method, const char *optstr, int with_calib, rb_rotset *rs, rb_trace *tr, rb_error *err) {
    char buf[512];
    const char *names[16], *vals[16];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", optstr ? optstr : "");
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        char *eq = strchr(t, '=');
        assert_non_null(eq);
        *eq = 0;
        names[n] = t, vals[n++] = eq + 1;
    }
    rb_method_ctx mc = {.cfg = st.c, .src = &st.base, .seed = 1, .r3 = -1, .r4 = -1, .emb_center = 1, .cross_head = -1,
                        .calib = with_calib ? st.calib : NULL, .calib_n = with_calib ? CAL_N : 0,
                        .calib_T = with_calib ? CAL_T : 0, .calib_batch = 1, .opt_names = names, .opt_values = vals,
                        .n_opts = n, .trace = tr};
    return rb_method_run(method, &mc, rs, err);
}

/* Mean Pearson kurtosis (over all 7·L quantized matrices) and Σ W⁴ of the model fused with rs. */
static void fused_stats(const rb_rotset *rs, double *kurt, double *sum4) {
    const rb_llama_config *c = st.c;
    rb_error err = {0};
    rb_fused f;
    rb_layer_weights w;
    assert_int_equal(rb_fused_init(&f, &st.base, c, rs, &err), 0);
    assert_int_equal(rb_layer_weights_init(&w, c, &err), 0);
    rb_weights_src src = rb_fused_src(&f);
    int d = c->dim, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim, h = c->hidden_dim;
    *kurt = *sum4 = 0;
    for (int l = 0; l < c->n_layers; l++) {
        assert_int_equal(src.load_layer(src.ctx, l, &w, &err), 0);
        const float *ws[] = {w.wq, w.wk, w.wv, w.wo, w.w_gate, w.w_up, w.w_down};
        const int rows[] = {qd, kvd, kvd, d, h, h, d}, cols[] = {d, d, d, qd, d, d, h};
        for (int m = 0; m < RB_OPTROT_NMAT; m++) {
            rb_weight_stats ws_;
            rb_weight_stats_compute(ws[m], rows[m], cols[m], &ws_);
            *kurt += ws_.kurt_all / (RB_OPTROT_NMAT * c->n_layers);
            *sum4 += ws_.sum_w4;
        }
    }
    rb_layer_weights_free(&w);
    rb_fused_free(&f);
}

static int col_of(const rb_trace_table *t, const char *name) {
    for (int i = 0; i < t->n_cols; i++)
        if (!strcmp(t->cols[i], name)) return i;
    fail_msg("trace column %s missing", name);
    return -1;
}

/* Two regimes of SpinQuant's Cayley SGD (α = min(lr, 1/‖W‖₁)):
 *  - below the cap (lr 3e-4 here, α = lr for R1) it is a plain descent method: the loss must not
 *    rise at any step beyond rounding (MONO_REL_SLACK; measured: no rise at all);
 *  - at the default lr 1 the R1 step sits at the cap, which on a 64-wide R1 is large enough to
 *    settle into a period-2 oscillation (the loss alternates by a few %); the envelope
 *    E_t = max(L_t, L_{t+1}) must still fall: at most ENV_RISE_STEPS_FRAC of the steps may raise it,
 *    none by more than ENV_RISE_MAX of the initial loss (measured: plain OptRot never, OptRot⁺
 *    34–40 rises in 150 steps, the largest 3.5% — so OptRot⁺ is only held to the final loss).
 * Final (best) loss bounds, measured on stories260K seed 1: OptRot 0.433 (lr 1) and 0.462 (lr 3e-4)
 * after 300 steps; OptRot⁺ 0.147 (lr 1) and 0.164 (lr 3e-4) after 150. */
#define MONO_REL_SLACK 1e-9
#define ENV_RISE_STEPS_FRAC 0.02
#define ENV_RISE_MAX 0.01
#define STORIES_FINAL_FRAC 0.55
#define STORIES_PLUS_FINAL_FRAC 0.25
#define STORIES_SMALL_LR "3e-4"

/* Rows, orthogonality and the running best; returns the loss column. */
static const double *trace_loss(const rb_trace_table *t, int steps, double *L0, double *best) {
    int cl = col_of(t, "loss"), cb = col_of(t, "best"), co = col_of(t, "orth_err");
    (void)col_of(t, "alpha"), (void)col_of(t, "seconds"), (void)col_of(t, "step");
    assert_int_equal((int)t->rows, steps + 1);
    double run = INFINITY;
    for (int i = 0; i <= steps; i++) {
        const double *r = t->data + (size_t)i * t->n_cols;
        assert_true(r[co] <= RB_ROT_ORTH_TOL);
        run = fmin(run, r[cl]);
        assert_true(r[cb] == run);
    }
    *L0 = t->data[cl];
    *best = run;
    static double col[4096];
    assert_true(steps < 4096);
    for (int i = 0; i <= steps; i++) col[i] = t->data[(size_t)i * t->n_cols + cl];
    return col;
}

static void check_monotone(const rb_trace_table *t, int steps, double final_frac, const char *label) {
    double L0, best;
    const double *L = trace_loss(t, steps, &L0, &best);
    int rises = 0;
    for (int i = 1; i <= steps; i++) rises += L[i] > L[i - 1] * (1 + MONO_REL_SLACK);
    fprintf(stderr, "# %s: loss %.6g -> %.6g (%.4f) in %d steps, %d rises\n", label, L0, L[steps], L[steps] / L0, steps,
            rises);
    assert_int_equal(rises, 0);
    assert_true(L[steps] == best);
    assert_true(best < final_frac * L0);
}

static void check_envelope(const rb_trace_table *t, int steps, double final_frac, int strict, const char *label) {
    double L0, best, worst = 0;
    const double *L = trace_loss(t, steps, &L0, &best);
    int rises = 0;
    for (int i = 0; i + 2 <= steps; i++) {
        double e0 = fmax(L[i], L[i + 1]), e1 = fmax(L[i + 1], L[i + 2]);
        if (e1 > e0) rises++, worst = fmax(worst, (e1 - e0) / L0);
    }
    fprintf(stderr, "# %s: loss %.6g -> best %.6g (%.4f) in %d steps; envelope rose at %d steps, at most %.3g of L0\n",
            label, L0, best, best / L0, steps, rises, worst);
    assert_true(best < final_frac * L0);
    if (strict) {
        assert_true(rises <= ENV_RISE_STEPS_FRAC * steps);
        assert_true(worst <= ENV_RISE_MAX);
    }
}

static void test_stories_optrot(void **state) {
    (void)state;
    REQUIRE_STORIES();
    rb_error err = {0};
    char o[64];
    snprintf(o, sizeof o, "steps=%d", STORIES_STEPS);
    rb_rotset rs, rs2, had;
    rb_trace tr, tr2;
    rb_trace_init(&tr);
    rb_trace_init(&tr2);
    int rc = run("optrot", o, 0, &rs, &tr, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_string_equal(rs.method, "optrot");
    assert_true(rs.r3 && rs.r4 && rs.emb_center);
    assert_true(rb_rotset_orth_err(&rs) <= RB_ROT_ORTH_TOL);
    const rb_trace_table *t = rb_trace_find(&tr, "optrot");
    assert_non_null(t);
    check_envelope(t, STORIES_STEPS, STORIES_FINAL_FRAC, 1, "optrot lr 1");
    /* the start (steps=0: random Hadamard R1 and R2): its fused Σ W⁴ is the first loss; the returned set's is
     * the best */
    assert_int_equal(run("optrot", "steps=0", 0, &had, NULL, &err), 0);
    double k_had, s_had, k_opt, s_opt;
    fused_stats(&had, &k_had, &s_had);
    fused_stats(&rs, &k_opt, &s_opt);
    double L0 = t->data[col_of(t, "loss")], best = t->data[(size_t)STORIES_STEPS * t->n_cols + col_of(t, "best")];
    fprintf(stderr, "# fused weights: mean kurtosis start %.4f -> optrot %.4f; sum W^4 %.6g -> %.6g (trace %.6g -> %.6g)\n",
            k_had, k_opt, s_had, s_opt, L0, best);
    assert_true(fabs(L0 - s_had) <= LOSS_MATCH_REL_TOL * s_had);
    assert_true(fabs(best - s_opt) <= LOSS_MATCH_REL_TOL * s_opt);
    assert_true(k_opt <= k_had);
    /* determinism */
    assert_int_equal(run("optrot", o, 0, &rs2, &tr2, &err), 0);
    int d = st.c->dim, hd = st.c->head_dim;
    assert_memory_equal(rs.r1->R, rs2.r1->R, sizeof(double) * d * d);
    for (int l = 0; l < st.c->n_layers; l++) assert_memory_equal(rs.r2[l]->R, rs2.r2[l]->R, sizeof(double) * hd * hd);
    rb_rotset_free(&rs2);
    rb_trace_free(&tr2);
    /* below the cap: monotone */
    rb_trace_init(&tr2);
    snprintf(o, sizeof o, "steps=%d,lr=%s", STORIES_STEPS, STORIES_SMALL_LR);
    assert_int_equal(run("optrot", o, 0, &rs2, &tr2, &err), 0);
    check_monotone(rb_trace_find(&tr2, "optrot"), STORIES_STEPS, STORIES_FINAL_FRAC, "optrot lr " STORIES_SMALL_LR);
    rb_rotset_free(&rs);
    rb_rotset_free(&rs2);
    rb_rotset_free(&had);
    rb_trace_free(&tr);
    rb_trace_free(&tr2);
}

static void test_stories_plus(void **state) {
    (void)state;
    REQUIRE_STORIES();
    rb_error err = {0};
    char o[64];
    for (int small = 0; small < 2; small++) {
        rb_rotset rs;
        rb_trace tr;
        rb_trace_init(&tr);
        snprintf(o, sizeof o, "plus=on,steps=%d%s", STORIES_PLUS_STEPS, small ? ",lr=" STORIES_SMALL_LR : "");
        int rc = run("optrot", o, 1, &rs, &tr, &err);
        if (rc) fprintf(stderr, "# %s\n", err.msg);
        assert_int_equal(rc, 0);
        assert_string_equal(rs.method, "optrot+");
        assert_true(rb_rotset_orth_err(&rs) <= RB_ROT_ORTH_TOL);
        const rb_trace_table *t = rb_trace_find(&tr, "optrot");
        if (small) check_monotone(t, STORIES_PLUS_STEPS, STORIES_PLUS_FINAL_FRAC, "optrot+ lr " STORIES_SMALL_LR);
        else check_envelope(t, STORIES_PLUS_STEPS, STORIES_PLUS_FINAL_FRAC, 0, "optrot+ lr 1");
        rb_rotset_free(&rs);
        rb_trace_free(&tr);
    }
}

/* init / train_r2 / steps = 0: the returned set is exactly the initialization. */
static void test_stories_init(void **state) {
    (void)state;
    REQUIRE_STORIES();
    rb_error err = {0};
    rb_rotset a, had, b;
    assert_int_equal(run("optrot", "steps=0", 0, &a, NULL, &err), 0);
    assert_int_equal(run("hadamard", NULL, 0, &had, NULL, &err), 0);
    int d = st.c->dim, hd = st.c->head_dim;
    assert_memory_equal(a.r1->R, had.r1->R, sizeof(double) * d * d);
    /* R2 of layer l: a random Hadamard, diag(s_l)·Hᵀ/√hd with s_l from stream rotation.r2.<l> (method
     * hadamard's R2 is the plain Hᵀ/√hd) */
    int8_t s[256];
    assert_true(hd <= 256);
    int differ = 0;
    for (int l = 0; l < st.c->n_layers; l++) {
        char stream[32];
        snprintf(stream, sizeof stream, "rotation.r2.%d", l);
        rb_method_signs(1, stream, hd, s);
        for (int i = 0; i < hd; i++)
            for (int j = 0; j < hd; j++) assert_true(a.r2[l]->R[i * hd + j] == s[i] * had.r2[l]->R[i * hd + j]);
        differ |= l > 0 && memcmp(a.r2[l]->R, a.r2[0]->R, sizeof(double) * hd * hd) != 0;
    }
    assert_true(differ);
    rb_rotset_free(&a);
    assert_int_equal(run("optrot", "steps=0,r2_signs=none", 0, &a, NULL, &err), 0);
    assert_memory_equal(a.r2[0]->R, had.r2[0]->R, sizeof(double) * hd * hd);
    rb_rotset_free(&a);
    /* identity start, R2 frozen: R2 stays I while R1 moves */
    assert_int_equal(run("optrot", "init=identity,train_r2=off,steps=20", 0, &b, NULL, &err), 0);
    for (int l = 0; l < st.c->n_layers; l++)
        for (int i = 0; i < hd; i++)
            for (int j = 0; j < hd; j++) assert_true(b.r2[l]->R[i * hd + j] == (i == j));
    double moved = 0;
    for (int i = 0; i < d; i++) moved = fmax(moved, fabs(b.r1->R[i * d + i] - 1));
    assert_true(moved > 0);
    rb_rotset_free(&b);
    assert_int_equal(run("optrot", "init=random,steps=5,normalize=on", 0, &b, NULL, &err), 0);
    assert_true(rb_rotset_orth_err(&b) <= RB_ROT_ORTH_TOL);
    rb_rotset_free(&b);
    rb_rotset_free(&had);
}

static void expect_einval(const char *opts, int with_calib, const char *needle) {
    rb_error err = {0};
    rb_rotset rs;
    assert_int_equal(run("optrot", opts, with_calib, &rs, NULL, &err), RB_EINVAL);
    fprintf(stderr, "# %s -> %s\n", opts, err.msg);
    assert_non_null(strstr(err.msg, needle));
}

static void test_bad_options(void **state) {
    (void)state;
    REQUIRE_STORIES();
    expect_einval("steps=-1", 0, "rotation.options.steps");
    expect_einval("steps=ten", 0, "rotation.options.steps");
    expect_einval("lr=0", 0, "rotation.options.lr");
    expect_einval("lr=nan", 0, "rotation.options.lr");
    expect_einval("init=orthogonal", 0, "rotation.options.init");
    expect_einval("train_r2=maybe", 0, "rotation.options.train_r2");
    expect_einval("normalize=2", 0, "rotation.options.normalize");
    expect_einval("cache_mib=-5", 0, "rotation.options.cache_mib");
    expect_einval("plus=on", 0, "rotation.options.plus");
    expect_einval("stpes=10", 0, "did you mean 'steps'");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_loss_matches_fused),
        cmocka_unit_test(test_hessian_and_streaming),
        cmocka_unit_test(test_stories_optrot),
        cmocka_unit_test(test_stories_plus),
        cmocka_unit_test(test_stories_init),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

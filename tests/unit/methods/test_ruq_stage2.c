/* RUQuant stage 2 (METHODS §5.4; methods/rb_ruq_train.h): the gradient of the block-output MSE with
 * respect to the free Householder vectors against central differences (a generated model, no shared
 * data), FP invariance and orthogonality of stage-2 sets, option errors, and on stories260K that
 * stage 2 lowers every layer's block-output MSE from stage 1 under RUQuant's W4A4 quantizer. */
#include "rb_test.h"
#include "rb_test_model.h"

#include <math.h>

#include "core/rb_rng.h"
#include "core/rb_trace.h"
#include "methods/rb_method.h"
#include "methods/rb_ruq_train.h"
#include "model/rb_make_model.h"
#include "model/rb_model.h"
#include "quant/rb_qpreset.h"
#include "rotate/rb_fuse.h"
#include "text/rb_calib.h"

/* Finite differences of an fp32 layer forward: the loss is summed in double, but each output
 * element carries ~1e-7 relative rounding that changes with the perturbation; with a step of
 * FD_STEP on unit vectors the central difference's rounding error is ~1e-7·L/FD_STEP ≈ 1e-4·L
 * while its truncation error is O(FD_STEP²). Along the gradient direction the signal is ‖dL/dv‖,
 * several orders above that; FD_REL_TOL (2 %) leaves a wide margin and still catches a wrong sign,
 * a missing term (activation or weight side: each alone is far off, see the invariance check) or a
 * wrong projection. */
#define FD_STEP 1e-3
#define FD_REL_TOL 2e-2
/* Without any quantizer the layer does not depend on v (x·Wᵀ is invariant), so the activation and
 * the weight terms of dL/dv must cancel: fp32 rounding leaves a residue far below the magnitude of
 * the gradient with the nonlinearity on (checked relative to it). */
#define CANCEL_REL_TOL 1e-3
/* As test_invariance: the same function in two bases in an fp32 forward differs by rounding. */
#define INVARIANCE_LOGIT_ABS_TOL 1e-4

/* A smooth stand-in for a quantizer after the training hook (x ← x + c·x³): breaks the invariance
 * so that the loss depends on v, while keeping it differentiable for finite differences. */
#define CUBIC 0.05f
static int cubic_hook(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    (void)ctx, (void)err;
    size_t n = (size_t)in->n_seq * in->seq_len * in->cols;
    for (size_t i = 0; i < n; i++) x[i] += CUBIC * x[i] * x[i] * x[i];
    return 0;
}
static int cubic_bwd(void *ctx, const rb_site_info *in, const float *x_in, float *dx, rb_error *err) {
    (void)ctx, (void)err;
    size_t n = (size_t)in->n_seq * in->seq_len * in->cols;
    for (size_t i = 0; i < n; i++) dx[i] *= 1.0f + 3.0f * CUBIC * x_in[i] * x_in[i];
    return 0;
}

static int run_ruquant(const rb_llama_config *c, const rb_weights_src *src, const int32_t *ids, int n, int T,
                       const rb_quant_cfg *q, const char *opts, rb_trace *tr, rb_rotset *rs, rb_error *err) {
    char *buf;
    const char *on[16], *ov[16];
    int no;
    assert_int_equal(rb_method_split_opts(opts, &buf, on, ov, 16, &no, err), 0);
    rb_method_ctx mc = {.cfg = c, .src = src, .seed = 1, .r3 = -1, .r4 = -1, .cross_head = -1, .calib = ids,
                        .calib_n = n, .calib_T = T, .calib_batch = 1, .quant = q, .opt_names = on,
                        .opt_values = ov, .n_opts = no, .trace = tr};
    int rc = rb_method_run("ruquant", &mc, rs, err);
    free(buf);
    return rc;
}

/* The generated MHA model (o_in and down_in with fused smoothing, qkv and fc1 online) with stage-1
 * sites; dL/dv of every site against central differences along the gradient and along a random
 * direction, on random inputs and targets through the cubic stand-in quantizer. */
static void test_gradient(void **state) {
    enum { T = 16, NW = 2 };
    const char *dir = ((rb_test_dir_fixture *)*state)->dir;
    rb_error err = {0};
    rb_model *m = rb_test_make_model(dir, "tiny", 5);
    const rb_llama_config *c = rb_model_config(m);
    rb_weights_src base = rb_weights_from_model(m);
    int32_t ids[4 * T];
    for (int i = 0; i < 4 * T; i++) ids[i] = (int32_t)((i * 37 + 11) % c->vocab_size);
    rb_quant_cfg q = rb_test_ruq_quant();
    rb_rotset rs;
    assert_int_equal(run_ruquant(c, &base, ids, 4, T, &q, "stage=1", NULL, &rs, &err), 0);
    rb_fused fz;
    assert_int_equal(rb_fused_init(&fz, &base, c, &rs, &err), 0);
    rb_ruq_train_opts o = {.epochs = 1, .samples = NW, .batch = NW, .lr = 1e-2, .guard = 0};
    rb_ruq_train t;
    assert_int_equal(rb_ruq_train_init(&t, c, &fz, NULL, &o, T, &err), 0);
    int l = c->n_layers - 1;
    assert_int_equal(rb_ruq_train_begin(&t, l, &err), 0);
    size_t N = (size_t)NW * T * c->dim;
    float *X = malloc(N * sizeof(float)), *Y = malloc(N * sizeof(float));
    rb_rng r;
    rb_rng_seed(&r, 3, "test.stage2");
    rb_rng_gauss(&r, X, N, 0.0, 1.0);
    rb_rng_gauss(&r, Y, N, 0.0, 1.0);
    /* no quantizer: the activation and weight terms cancel */
    double L0, gsum = 0, gcancel = 0;
    assert_int_equal(rb_ruq_train_loss(&t, X, Y, NW, 1, &L0, &err), 0);
    for (int k = 0; k < RB_RUQ_NSITES; k++) {
        assert_true(t.site[k].active); /* stage 1 found a global Householder at every site here */
        for (int j = 0; j < rs.ruq[l][k]->n; j++) gcancel += t.site[k].dv[j] * t.site[k].dv[j];
    }
    /* the smooth stand-in quantizer at the four RUQuant sites, after the training hooks */
    static const int sites[] = {RB_SITE_ATTN_IN, RB_SITE_O_IN, RB_SITE_MLP_IN, RB_SITE_DOWN_IN};
    for (int i = 0; i < 4; i++) rb_hooks_add_bwd(&t.hk, sites[i], cubic_hook, cubic_bwd, 1, NULL);
    assert_int_equal(rb_ruq_train_loss(&t, X, Y, NW, 1, &L0, &err), 0);
    double *v0[RB_RUQ_NSITES], *dv[RB_RUQ_NSITES], *dir_r[RB_RUQ_NSITES], *tmp = malloc(sizeof(double) * c->hidden_dim);
    for (int k = 0; k < RB_RUQ_NSITES; k++) {
        int n = rs.ruq[l][k]->n;
        v0[k] = malloc(sizeof(double) * n), dv[k] = malloc(sizeof(double) * n), dir_r[k] = malloc(sizeof(double) * n);
        memcpy(v0[k], t.site[k].v, sizeof(double) * n);
        memcpy(dv[k], t.site[k].dv, sizeof(double) * n);
        rb_rng_gauss_d(&r, dir_r[k], (size_t)n, 0.0, 1.0);
        for (int j = 0; j < n; j++) gsum += dv[k][j] * dv[k][j];
    }
    fprintf(stderr, "# stage-2 gradient, tiny layer %d: |dL/dv| %.4e with the cubic, %.2e without (cancellation)\n", l,
            sqrt(gsum), sqrt(gcancel));
    assert_true(gsum > 0);
    assert_true(sqrt(gcancel) <= CANCEL_REL_TOL * sqrt(gsum));
    /* per site, two directions: the gradient and a random one */
    for (int k = 0; k < RB_RUQ_NSITES; k++) {
        int n = rs.ruq[l][k]->n;
        for (int d = 0; d < 2; d++) {
            const double *u = d == 0 ? dv[k] : dir_r[k];
            double un = 0, an = 0;
            for (int j = 0; j < n; j++) un += u[j] * u[j];
            un = sqrt(un);
            for (int j = 0; j < n; j++) an += dv[k][j] * u[j] / un;
            double Lp, Lm;
            for (int j = 0; j < n; j++) tmp[j] = v0[k][j] + FD_STEP * u[j] / un;
            rb_ruq_train_set_v(&t, k, tmp);
            assert_int_equal(rb_ruq_train_loss(&t, X, Y, NW, 0, &Lp, &err), 0);
            for (int j = 0; j < n; j++) tmp[j] = v0[k][j] - FD_STEP * u[j] / un;
            rb_ruq_train_set_v(&t, k, tmp);
            assert_int_equal(rb_ruq_train_loss(&t, X, Y, NW, 0, &Lm, &err), 0);
            rb_ruq_train_set_v(&t, k, v0[k]);
            double fd = (Lp - Lm) / (2 * FD_STEP);
            fprintf(stderr, "#   %-7s %s: analytic %+.6e, central difference %+.6e\n", rb_ruq_site_name(k),
                    d == 0 ? "along dL/dv" : "random dir ", an, fd);
            /* relative to the site's gradient norm: a random direction's derivative may be small */
            double gk = 0;
            for (int j = 0; j < n; j++) gk += dv[k][j] * dv[k][j];
            assert_true(fabs(an - fd) <= FD_REL_TOL * sqrt(gk));
        }
    }
    for (int k = 0; k < RB_RUQ_NSITES; k++) free(v0[k]), free(dv[k]), free(dir_r[k]);
    free(tmp);
    free(X);
    free(Y);
    rb_ruq_train_free(&t);
    rb_fused_free(&fz);
    rb_rotset_free(&rs);
    rb_model_close(m);
}

/* Stage-2 sets keep the FP model's function and are orthogonal to 1e-10, on the generated GQA model
 * (o_in's smoothing online under GQA): X_q shared with stage 1, kept separately (pseudo_sequence,
 * calib_quant off). */
static void test_invariance(void **state) {
    enum { T = 24, NW = 3 };
    const char *dir = ((rb_test_dir_fixture *)*state)->dir;
    rb_error err = {0};
    rb_model *m = rb_test_make_model(dir, "gqa", 9);
    const rb_llama_config *c = rb_model_config(m);
    rb_weights_src base = rb_weights_from_model(m);
    int32_t ids[NW * T];
    for (int i = 0; i < NW * T; i++) ids[i] = (int32_t)((i * 53 + 3) % c->vocab_size);
    rb_quant_cfg q = rb_test_ruq_quant();
    float *ref = rb_test_logits(&base, c, ids, NW, T, NULL);
    static const char *const variants[] = {"epochs=2", "epochs=2,pseudo_sequence=on,batch=2",
                                           "epochs=1,calib_quant=off,samples=2"};
    for (int v = 0; v < 3; v++) {
        rb_rotset rs, rs1;
        rb_trace tr;
        rb_trace_init(&tr);
        int rc = run_ruquant(c, &base, ids, NW, T, &q, variants[v], &tr, &rs, &err);
        if (rc) fail_msg("ruquant %s: %s", variants[v], err.msg);
        char v1[96];
        snprintf(v1, sizeof v1, "%s,stage=1", variants[v]);
        assert_int_equal(run_ruquant(c, &base, ids, NW, T, &q, v1, NULL, &rs1, &err), 0);
        double oe = rb_rotset_orth_err(&rs);
        const rb_trace_table *te = rb_trace_find(&tr, "ruquant_stage2_eval");
        assert_non_null(te);
        assert_int_equal(te->rows, (size_t)c->n_layers);
        /* stage 2 changed the vectors (at least of the first layer, whose inputs are the same) */
        int changed = 0;
        for (int k = 0; k < RB_RUQ_NSITES; k++)
            changed |= memcmp(rs.ruq[0][k]->hh, rs1.ruq[0][k]->hh, sizeof(double) * rs.ruq[0][k]->n) != 0;
        assert_true(changed);
        rb_fused f;
        assert_int_equal(rb_fused_init(&f, &base, c, &rs, &err), 0);
        rb_weights_src fs = rb_fused_src(&f);
        rb_hooks hk;
        rb_hooks_init(&hk);
        rb_fused_add_online_hooks(&f, &hk);
        float *got = rb_test_logits(&fs, c, ids, NW, T, &hk);
        double maxd = 0;
        for (size_t i = 0; i < (size_t)NW * T * c->vocab_size; i++) maxd = fmax(maxd, fabs((double)got[i] - ref[i]));
        fprintf(stderr, "# gqa ruquant[%s]: orth %.2e, max |dlogit| %.2e\n", variants[v], oe, maxd);
        assert_true(oe <= 1e-10);
        assert_true(maxd < INVARIANCE_LOGIT_ABS_TOL);
        rb_free(got);
        rb_fused_free(&f);
        rb_rotset_free(&rs);
        rb_rotset_free(&rs1);
        rb_trace_free(&tr);
    }
    /* without quantization stage 2 has nothing to train: the stage-1 set, no stage-2 trace */
    rb_rotset a, b;
    rb_trace tr;
    rb_trace_init(&tr);
    assert_int_equal(run_ruquant(c, &base, ids, NW, T, NULL, "epochs=1", &tr, &a, &err), 0);
    assert_null(rb_trace_find(&tr, "ruquant_stage2"));
    assert_int_equal(run_ruquant(c, &base, ids, NW, T, NULL, "stage=1", NULL, &b, &err), 0);
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < RB_RUQ_NSITES; k++)
            assert_memory_equal(a.ruq[l][k]->hh, b.ruq[l][k]->hh, sizeof(double) * a.ruq[l][k]->n);
    rb_rotset_free(&a);
    rb_rotset_free(&b);
    rb_trace_free(&tr);
    rb_free(ref);
    rb_model_close(m);
}

/* Bad stage-2 option values name the option. */
static void test_errors(void **state) {
    enum { T = 16 };
    const char *dir = ((rb_test_dir_fixture *)*state)->dir;
    rb_error err = {0};
    rb_model *m = rb_test_make_model(dir, "tiny", 2);
    const rb_llama_config *c = rb_model_config(m);
    rb_weights_src base = rb_weights_from_model(m);
    int32_t ids[2 * T] = {0};
    rb_quant_cfg q = rb_test_ruq_quant();
    rb_rotset rs;
    static const char *const bad[][2] = {
        {"stage=3", "rotation.options.stage"},  {"stage=0", "rotation.options.stage"},
        {"epochs=-1", "rotation.options.epochs"}, {"lr=0", "rotation.options.lr"},
        {"lr=x", "lr"},                            {"guard=-0.1", "rotation.options.guard"},
        {"guard=0.9", "rotation.options.guard"},   {"batch=0", "rotation.options.batch"},
        {"weight_decay=-1", "rotation.options.weight_decay"},
        {"samples=3", "rotation.options.samples: 3, but only 2 calibration windows"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = run_ruquant(c, &base, ids, 2, T, &q, bad[i][0], NULL, &rs, &err);
        fprintf(stderr, "# %s: %s\n", bad[i][0], err.msg);
        assert_int_equal(rc, RB_EINVAL);
        assert_non_null(strstr(err.msg, bad[i][1]));
    }
    rb_model_close(m);
}

/* stories260K, RUQuant's W4A4 quantizer: stage 2 lowers the block-output MSE of every layer from
 * stage 1 (the trace's per-layer pair, both on the same quantized inputs and FP targets). */
static void test_stories_mse(void **state) {
    (void)state;
    rb_test_stories st;
    if (!rb_test_stories_open(&st, 0)) {
        fprintf(stderr, "#\n# SKIPPED: shared data '%s' or '%s' not found (set RB_SHARED_DATA)\n#\n",
                RB_TEST_STORIES_MODEL, RB_TEST_STORIES_TEXT);
        skip();
    }
    enum { CN = 8, CT = 128 };
    rb_error err = {0};
    int32_t *calib;
    assert_int_equal(rb_calib_sample(st.ids, st.calib_end, CN, CT, 0, &calib, &err), 0);
    rb_quant_cfg q = rb_test_ruq_quant();
    rb_trace tr;
    rb_trace_init(&tr);
    rb_rotset rs;
    int rc = run_ruquant(st.c, &st.src, calib, CN, CT, &q, "epochs=5", &tr, &rs, &err);
    if (rc) fail_msg("ruquant: %s", err.msg);
    const rb_trace_table *te = rb_trace_find(&tr, "ruquant_stage2_eval");
    assert_non_null(te);
    assert_int_equal(te->rows, (size_t)st.c->n_layers);
    int c1 = rb_trace_col(te, "mse_stage1"), c2 = rb_trace_col(te, "mse_stage2"), cl = rb_trace_col(te, "layer");
    assert_true(c1 >= 0 && c2 >= 0 && cl >= 0);
    for (size_t i = 0; i < te->rows; i++) {
        const double *row = te->data + i * te->n_cols;
        fprintf(stderr, "# stories260K W4A4 (RUQuant quantizer), %dx%d windows, 5 epochs: layer %.0f block-output MSE "
                        "stage 1 %.6g, stage 2 %.6g (%.4f)\n",
                CN, CT, row[cl], row[c1], row[c2], row[c2] / row[c1]);
    }
    for (size_t i = 0; i < te->rows; i++) {
        const double *row = te->data + i * te->n_cols;
        assert_true(row[c2] < row[c1]);
    }
    assert_true(rb_rotset_orth_err(&rs) <= 1e-10);
    rb_rotset_free(&rs);
    rb_trace_free(&tr);
    free(calib);
    rb_test_stories_close(&st);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gradient, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_invariance, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_errors, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test(test_stories_mse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

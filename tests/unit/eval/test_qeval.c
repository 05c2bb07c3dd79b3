/* Acceptance tests of the quantized evaluation pipeline (rb_qeval) on the real stories260K model
 * and WikiText-2 test text.
 *
 * Protocol (WikiText-2 train is not available): the test text is tokenized once with one BOS;
 * calibration windows are drawn from the first half of the tokens (rb_calib_sample, seed 0, as
 * `rotbench ppl --calib-range 0:0.5`), evaluation windows are the first EVAL_WINDOWS gptq-protocol
 * windows of the second half (`--text-range 0.5:1 --max-windows EVAL_WINDOWS`). Small sizes keep
 * the whole file well under a minute on two shared cores.
 *
 * Some runs are shared between tests (cached in the fixture): W4A16 RTN / GPTQ / GPTQ act-order
 * with statistics. */
#include "rb_test.h"
#include "rb_test_model.h"

#include <math.h>

#include "text/rb_calib.h"
#include "eval/rb_ppl.h"
#include "pipeline/rb_pipeline.h"
#include "eval/rb_qeval.h"
#include "eval/rb_stats.h"
#include "model/rb_make_model.h"
#include "rotate/rb_fuse.h"
#include "model/rb_forward.h"
#include "model/rb_model.h"
#include "quant/rb_gptq.h"
#include "quant/rb_qpreset.h"
#include "text/rb_tokenizer.h"

#define MODEL_REL RB_TEST_STORIES_MODEL
#define TEXT_REL RB_TEST_STORIES_TEXT

#define SEQLEN 256
#define EVAL_WINDOWS 32   /* 32 × 255 = 8160 scored tokens */
#define CALIB_SAMPLES 48  /* windows of SEQLEN from the first half */
#define CALIB_SEED 0

/* W16A16 through rb_qeval runs the same fp32 forward as rb_ppl_run on the same windows; the only
 * possible differences are in how rows are batched into sgemm calls and logits chunks. Measured:
 * bitwise equal. 1e-12 relative leaves room for a BLAS kernel choosing a different blocking for a
 * different row count, not for any real change of the computation. */
#define FP_REPRO_REL_TOL 1e-12
/* W8A8 (RTN weights per channel with clip search, 8-bit per-token asymmetric activations) is
 * expected to be near-lossless; measured here −0.22 % (ppl 119.58 vs FP 119.84: the 8-bit noise
 * happens to lower it). 1 % is the acceptance bound of the spec. */
#define W8A8_PPL_REL_TOL 0.01
/* W4A16: GPTQ must cut the mean KL to FP by at least 10 % vs RTN (measured: by 33–40 %). */
#define KL_GPTQ_GAIN 0.9
/* W4A16: bound on |ppl_GPTQ / ppl_RTN − 1|. Measured −2.2 % … +0.8 % over 32/64 evaluation ×
 * 32/48/64 calibration windows (−1.1 % / +0.2 % in this file's setting); the 4-bit degradation
 * itself is ~5.5 %, so 3 % still catches a GPTQ that wrecks the model. */
#define GPTQ_RTN_PPL_BAND 0.03

typedef struct fixture {
    int loaded;   /* 1 after the first attempt */
    int ok;       /* data present and loaded */
    rb_test_stories st;
    int32_t *calib; /* [CALIB_SAMPLES][SEQLEN] from the first half */
    /* cached runs: W4A16 with stats, [0] RTN, [1] GPTQ, [2] GPTQ act-order */
    int w4_done[3];
    rb_qeval_result w4[3];
} fixture;

static fixture fx;

static int load_fixture(void) {
    if (fx.loaded) return fx.ok;
    fx.loaded = 1;
    if (!rb_test_stories_open(&fx.st, 0)) return 0;
    rb_error err = {0};
    assert_int_equal(rb_calib_sample(fx.st.ids, fx.st.calib_end, CALIB_SAMPLES, SEQLEN, CALIB_SEED, &fx.calib, &err), 0);
    fprintf(stderr, "# stories260K: %d layers, dim %d, hidden %d; %zu tokens, eval %zu (second half), calib %d x %d\n",
            fx.st.c->n_layers, fx.st.c->dim, fx.st.c->hidden_dim, fx.st.n, fx.st.n_eval, CALIB_SAMPLES, SEQLEN);
    fx.ok = 1;
    return 1;
}

/* Loud skip when the shared data is absent. */
#define REQUIRE_FIXTURE()                                                                                     \
    do {                                                                                                      \
        if (!load_fixture()) {                                                                                \
            fprintf(stderr, "#\n# SKIPPED: shared data '%s' or '%s' not found (set RB_SHARED_DATA)\n#\n", \
                    MODEL_REL, TEXT_REL);                                                                     \
            skip();                                                                                           \
        }                                                                                                     \
    } while (0)

static rb_ppl_opts eval_opts(void) {
    rb_ppl_opts o = {.protocol = RB_PPL_GPTQ, .seqlen = SEQLEN, .max_windows = EVAL_WINDOWS, .bos_id = fx.st.c->bos_id};
    return o;
}

static rb_quant_cfg preset(const char *name, int algo, int act_order) {
    rb_quant_cfg q;
    rb_error err = {0};
    assert_int_equal(rb_quant_preset(name, &q, &err), 0);
    q.w_algo = algo;
    q.gptq.act_order = act_order;
    return q;
}

static void run_qeval(const rb_quant_cfg *q, int stats, rb_qeval_result *r) {
    double tw;
    rb_qeval_opts o = {.q = q, .ppl = eval_opts(), .fp_ref = 1, .stats = stats};
    rb_test_qeval(&fx.st.src, fx.st.c, fx.st.eval, fx.st.n_eval, o, fx.calib, CALIB_SAMPLES, SEQLEN, r, &tw);
    fprintf(stderr, "# %-8s %-4s%s stats=%d: ppl %.6f  ppl_fp %.6f  KL %.6g  (%.1f s, weights %.1f s)\n",
            q ? q->name : "none", q && q->w_algo == RB_WALGO_GPTQ ? "gptq" : "rtn",
            q && q->w_algo == RB_WALGO_GPTQ && q->gptq.act_order ? "+ao" : "   ", stats, r->q.ppl, r->fp.ppl,
            r->kl_mean, r->seconds_total, tw);
    assert_int_equal(r->q.windows, EVAL_WINDOWS);
    assert_int_equal(r->q.scored, (long)EVAL_WINDOWS * (SEQLEN - 1));
    assert_true(isfinite(r->q.ppl) && isfinite(r->fp.ppl) && isfinite(r->kl_mean));
}

/* The shared W4A16 runs with stats: 0 RTN, 1 GPTQ, 2 GPTQ act-order. */
static const rb_qeval_result *w4a16(int which) {
    if (!fx.w4_done[which]) {
        rb_quant_cfg q = preset("W4A16", which ? RB_WALGO_GPTQ : RB_WALGO_RTN, which == 2);
        run_qeval(&q, 1, &fx.w4[which]);
        fx.w4_done[which] = 1;
    }
    return &fx.w4[which];
}

static int group_teardown(void **state) {
    (void)state;
    for (int i = 0; i < 3; i++)
        if (fx.w4_done[i]) rb_qeval_result_free(&fx.w4[i]);
    rb_test_stories_close(&fx.st);
    free(fx.calib);
    memset(&fx, 0, sizeof fx);
    return 0;
}

/* ---- 1. W16A16 reproduces the FP perplexity ------------------------------------------------- */

static void test_w16a16_is_fp(void **state) {
    (void)state;
    REQUIRE_FIXTURE();
    rb_error err = {0};
    rb_ppl_opts o = eval_opts();
    rb_ppl_result ref;
    assert_int_equal(rb_ppl_run(&fx.st.src, fx.st.c, fx.st.eval, fx.st.n_eval, &o, NULL, &ref, &err), 0);
    fprintf(stderr, "# rb_ppl_run FP: ppl %.17g over %d windows, %ld scored\n", ref.ppl, ref.windows, ref.scored);
    for (int algo = RB_WALGO_RTN; algo <= RB_WALGO_GPTQ; algo++) {
        /* W16A16 is inactive: no weight algorithm runs, GPTQ included */
        rb_quant_cfg q = preset("W16A16", algo, 0);
        for (int stats = 0; stats <= 1; stats++) {
            rb_qeval_result r;
            run_qeval(&q, stats, &r);
            assert_int_equal(r.q.windows, ref.windows);
            assert_int_equal(r.q.scored, ref.scored);
            double rel = fabs(r.q.ppl - ref.ppl) / ref.ppl;
            fprintf(stderr, "# W16A16 %s stats=%d: ppl %.17g, |Δ|/ppl = %.3g%s\n", algo ? "gptq" : "rtn", stats,
                    r.q.ppl, rel, r.q.ppl == ref.ppl ? " (bitwise equal)" : "");
            assert_true(rel <= FP_REPRO_REL_TOL);
            for (int w = 0; w < r.q.windows; w++)
                assert_true(fabs(r.q.win_nll[w] - ref.win_nll[w]) <= FP_REPRO_REL_TOL * fabs(ref.win_nll[w]));
            /* q and FP streams are the same computation: identical logits */
            assert_true(r.q.ppl == r.fp.ppl);
            assert_true(r.q.nll_sum == r.fp.nll_sum);
            assert_true(r.kl_mean == 0.0);
            for (int w = 0; w < r.q.windows; w++) assert_true(r.win_kl[w] == 0.0);
            for (int l = 0; l < fx.st.c->n_layers; l++) assert_true(rb_relerr_value(&r.layer_mse[l]) == 0.0);
            rb_qeval_result_free(&r);
        }
    }
    rb_ppl_result_free(&ref);
}

/* ---- 2. W8A8 within 1 % of FP --------------------------------------------------------------- */

static void test_w8a8_close_to_fp(void **state) {
    (void)state;
    REQUIRE_FIXTURE();
    rb_quant_cfg q = preset("W8A8", RB_WALGO_RTN, 0);
    rb_qeval_result r;
    run_qeval(&q, 0, &r);
    double rel = (r.q.ppl - r.fp.ppl) / r.fp.ppl;
    fprintf(stderr, "# W8A8 RTN: ppl %.6f vs FP %.6f: %+.3f %%\n", r.q.ppl, r.fp.ppl, 100 * rel);
    assert_true(fabs(rel) <= W8A8_PPL_REL_TOL);
    assert_true(r.kl_mean > 0); /* something was quantized */
    rb_qeval_result_free(&r);
}

/* ---- 3. GPTQ with 16-bit weights leaves weights unchanged ----------------------------------- */

static void assert_weights_untouched(const rb_qeval_result *r) {
    for (int l = 0; l < r->n_layers; l++)
        for (int k = 0; k < RB_LIN_COUNT; k++) {
            const rb_linear_row *lr = &r->lin[l * RB_LIN_COUNT + k];
            if (lr->w_relerr != 0.0) fail_msg("layer %d %s: w_relerr %.3g", l, rb_linear_name(k), lr->w_relerr);
            assert_true(lr->w.fro_sq > 0);         /* the row was filled */
            assert_true(isnan(lr->h_err));         /* no GPTQ ran */
            assert_true(isnan(lr->h_err_rtn));
        }
}

static void test_gptq_w16_identity(void **state) {
    (void)state;
    REQUIRE_FIXTURE();
    /* (a) W16A16 + GPTQ with calibration windows: weights untouched, ppl = FP exactly */
    rb_quant_cfg q = preset("W16A16", RB_WALGO_GPTQ, 0);
    rb_qeval_result r;
    run_qeval(&q, 1, &r);
    assert_weights_untouched(&r);
    assert_true(r.q.ppl == r.fp.ppl && r.kl_mean == 0.0);
    rb_qeval_result_free(&r);

    /* (b) W16A8 + GPTQ: activations quantized, weights still untouched */
    q = preset("W8A8", RB_WALGO_GPTQ, 0);
    q.w = rb_qspec_make(RB_QBITS_OFF, 1, RB_QGRAN_CHANNEL, 0);
    run_qeval(&q, 1, &r);
    assert_weights_untouched(&r);
    assert_true(r.kl_mean > 0);
    rb_qeval_result_free(&r);

    /* (c) rb_gptq_quantize itself with bits 16 on a real weight (layer 0 q_proj) and the real
     * Hessian of its inputs (RMSNorm of the calibration embeddings): bitwise unchanged */
    rb_error err = {0};
    const rb_llama_config *c = fx.st.c;
    rb_layer_weights lw;
    assert_int_equal(rb_layer_weights_init(&lw, c, &err), 0);
    assert_int_equal(fx.st.src.load_layer(fx.st.src.ctx, 0, &lw, &err), 0);
    size_t ntok = (size_t)CALIB_SAMPLES * SEQLEN, rows = (size_t)c->n_heads * c->head_dim;
    float *x = malloc(ntok * c->dim * sizeof(float)), *w = malloc(rows * c->dim * sizeof(float));
    assert_non_null(x);
    assert_non_null(w);
    assert_int_equal(fx.st.src.embed(fx.st.src.ctx, fx.calib, ntok, x, &err), 0);
    rb_rmsnorm(x, x, lw.rms_att, ntok, c->dim, c->rms_eps);
    rb_hessian h;
    assert_int_equal(rb_hessian_init(&h, c->dim, &err), 0);
    rb_hessian_add(&h, x, (int)ntok);
    memcpy(w, lw.wq, rows * c->dim * sizeof(float));
    rb_qspec s16 = rb_qspec_make(RB_QBITS_OFF, 1, RB_QGRAN_CHANNEL, 0);
    for (int ao = 0; ao <= 1; ao++) {
        rb_gptq_opts go = rb_gptq_opts_default();
        go.act_order = ao;
        assert_int_equal(rb_gptq_quantize(&s16, w, (int)rows, c->dim, h.h, &go, NULL, &err), 0);
        assert_memory_equal(w, lw.wq, rows * c->dim * sizeof(float));
    }
    /* control: the same call at 4 bits does change it */
    rb_qspec s4 = rb_qspec_make(4, 1, RB_QGRAN_CHANNEL, 0);
    assert_int_equal(rb_gptq_quantize(&s4, w, (int)rows, c->dim, h.h, NULL, NULL, &err), 0);
    assert_true(memcmp(w, lw.wq, rows * c->dim * sizeof(float)) != 0);
    rb_hessian_free(&h);
    free(x);
    free(w);
    rb_layer_weights_free(&lw);
}

/* ---- 4. GPTQ's Hessian loss never exceeds RTN's --------------------------------------------- */

static void test_gptq_hessian_error(void **state) {
    (void)state;
    REQUIRE_FIXTURE();
    for (int which = 1; which <= 2; which++) {
        const rb_qeval_result *r = w4a16(which);
        double worst = 0, sum_g = 0, sum_r = 0;
        for (int l = 0; l < r->n_layers; l++)
            for (int k = 0; k < RB_LIN_COUNT; k++) {
                const rb_linear_row *lr = &r->lin[l * RB_LIN_COUNT + k];
                assert_true(isfinite(lr->h_err) && isfinite(lr->h_err_rtn));
                assert_true(lr->h_err > 0 && lr->h_err_rtn > 0);
                assert_true(lr->w_relerr > 0);
                double ratio = lr->h_err / lr->h_err_rtn;
                worst = ratio > worst ? ratio : worst;
                sum_g += lr->h_err;
                sum_r += lr->h_err_rtn;
                if (!(lr->h_err <= lr->h_err_rtn))
                    fail_msg("%s layer %d %s: h_err %.6g > h_err_rtn %.6g", which == 2 ? "act-order" : "plain", l,
                             rb_linear_name(k), lr->h_err, lr->h_err_rtn);
            }
        fprintf(stderr, "# GPTQ%s W4A16: h_err/h_err_rtn max %.3f over %d linears; total %.4g vs %.4g (%.3f)\n",
                which == 2 ? " act-order" : "", worst, r->n_layers * RB_LIN_COUNT, sum_g, sum_r, sum_g / sum_r);
    }
}

/* ---- 5. GPTQ vs RTN at W4A16 ---------------------------------------------------------------- */

static void test_gptq_vs_rtn(void **state) {
    (void)state;
    REQUIRE_FIXTURE();
    const rb_qeval_result *rtn = w4a16(0), *g = w4a16(1), *ga = w4a16(2);
    fprintf(stderr,
            "# W4A16 on %d windows of %d (FP ppl %.4f):\n"
            "#   RTN            ppl %.4f  KL %.5f\n"
            "#   GPTQ           ppl %.4f  KL %.5f\n"
            "#   GPTQ act-order ppl %.4f  KL %.5f\n",
            EVAL_WINDOWS, SEQLEN, rtn->fp.ppl, rtn->q.ppl, rtn->kl_mean, g->q.ppl, g->kl_mean, ga->q.ppl,
            ga->kl_mean);
    /* the FP reference is the same in all three runs */
    assert_true(rtn->fp.ppl == g->fp.ppl && g->fp.ppl == ga->fp.ppl);
    /* What is robust: GPTQ is closer to the FP model in distribution (KL), with or without
     * act-order, by a clear margin (measured KL ratio GPTQ/RTN 0.60–0.67 for 32/48/64 calibration
     * windows and 32/64 evaluation windows; asserted with margin KL_GPTQ_GAIN). */
    assert_true(g->kl_mean < KL_GPTQ_GAIN * rtn->kl_mean);
    assert_true(ga->kl_mean < KL_GPTQ_GAIN * rtn->kl_mean);
    /* Perplexity is not: on this 5-layer model the GPTQ−RTN ppl difference is a percent or two and its
     * sign flips with the calibration set (32 eval windows: act-order GPTQ is below RTN with 48
     * calibration windows, above it with 32 or 64; plain GPTQ is above RTN with 32 or 48; with 64
     * eval windows both are 1.6–2.2 % below). Only a band is asserted; the side each variant falls
     * on is reported. */
    fprintf(stderr, "# ppl vs RTN: GPTQ %+.3f %%, GPTQ act-order %+.3f %%\n", 100 * (g->q.ppl / rtn->q.ppl - 1),
            100 * (ga->q.ppl / rtn->q.ppl - 1));
    assert_true(fabs(g->q.ppl / rtn->q.ppl - 1) <= GPTQ_RTN_PPL_BAND);
    assert_true(fabs(ga->q.ppl / rtn->q.ppl - 1) <= GPTQ_RTN_PPL_BAND);
    /* and every variant is worse than FP */
    assert_true(rtn->q.ppl > rtn->fp.ppl && g->q.ppl > g->fp.ppl && ga->q.ppl > ga->fp.ppl);
}

/* ---- 6. Statistics sanity ------------------------------------------------------------------- */

static void check_act_rows(const rb_act_stats *s, int l, int site, int expect_tokens, const char *stream) {
    rb_act_stats_row a;
    rb_act_stats_result(s, &a);
    int d = s->cols; /* the site's row width */
    if (!expect_tokens) {
        assert_true(a.tokens == 0);
        return;
    }
    if (a.tokens != (double)EVAL_WINDOWS * SEQLEN)
        fail_msg("%s layer %d %s: %g tokens", stream, l, rb_site_name(site), a.tokens);
    assert_true(a.tokens_nonfinite == 0);
    double v[] = {a.kurt_token_mean, a.kurt_token_median, a.kurt_token_max, a.kurt_channel_mean, a.kurt_all,
                  a.flat_token_mean, a.incoherence_mean, a.corner_mean};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        if (!isfinite(v[i])) fail_msg("%s layer %d %s: statistic %zu is %g", stream, l, rb_site_name(site), i, v[i]);
    /* Pearson kurtosis of a vector of length d lies in [1, d] (non-excess) */
    assert_true(a.kurt_token_mean >= 1 && a.kurt_token_mean <= d);
    assert_true(a.kurt_token_median >= 1 && a.kurt_token_median <= d);
    assert_true(a.kurt_token_max >= a.kurt_token_mean);
    assert_true(a.incoherence_mean >= 1 && a.incoherence_mean <= sqrt((double)d) * (1 + 1e-12));
}

static void test_stats_sanity(void **state) {
    (void)state;
    REQUIRE_FIXTURE();
    /* W4A4: linear inputs quantized, K/V not; W4A4KV4: all six sites */
    const char *names[2] = {"W4A4", "W4A4KV4"};
    for (int pi = 0; pi < 2; pi++) {
        rb_quant_cfg q = preset(names[pi], RB_WALGO_RTN, 0);
        rb_qeval_result r;
        run_qeval(&q, 1, &r);
        int L = r.n_layers;
        fprintf(stderr, "# %s layer_mse:", names[pi]);
        for (int l = 0; l < L; l++) fprintf(stderr, " %.4g", rb_relerr_value(&r.layer_mse[l]));
        fprintf(stderr, "\n# %s act_mse of layer 0:", names[pi]);
        for (int s = 0; s < RB_SITE_COUNT; s++) fprintf(stderr, " %s %.4g", rb_site_name(s), rb_relerr_value(&r.act_mse[s]));
        fprintf(stderr, "\n");
        for (int l = 0; l < L; l++) {
            for (int s = 0; s < RB_SITE_COUNT; s++) {
                int quantized = rb_quant_site_spec(&q, s)->bits < RB_QBITS_OFF;
                check_act_rows(&r.site_fp[l * RB_SITE_COUNT + s], l, s, 1, "fp");
                check_act_rows(&r.site_q[l * RB_SITE_COUNT + s], l, s, quantized, "q");
                const rb_relerr_acc *am = &r.act_mse[l * RB_SITE_COUNT + s];
                double v = rb_relerr_value(am);
                if (quantized) {
                    if (!(isfinite(v) && v > 0)) fail_msg("%s layer %d %s: act_mse %g", names[pi], l, rb_site_name(s), v);
                    /* 4-bit per-token asym: well below the signal (would be ~1 for garbage) */
                    assert_true(v < 0.5);
                } else {
                    assert_true(am->rows == 0);
                    assert_true(isnan(v) || v == 0.0);
                }
            }
            /* layer output error: positive and finite at every layer (errors propagate) */
            double lm = rb_relerr_value(&r.layer_mse[l]);
            assert_true(isfinite(lm) && lm > 0 && lm < 1);
            /* weight rows: RTN has no Hessian loss */
            for (int k = 0; k < RB_LIN_COUNT; k++) {
                const rb_linear_row *lr = &r.lin[l * RB_LIN_COUNT + k];
                assert_true(isfinite(lr->w.kurt_all) && lr->w.kurt_all >= 1);
                assert_true(lr->w_relerr > 0 && lr->w_relerr < 0.1);
                assert_true(isnan(lr->h_err) && isnan(lr->h_err_rtn));
            }
        }
        /* the error at the model output is larger than after the first block */
        assert_true(rb_relerr_value(&r.layer_mse[L - 1]) > rb_relerr_value(&r.layer_mse[0]));
        /* the TSV writer accepts the result */
        FILE *f = tmpfile();
        assert_non_null(f);
        assert_int_equal(rb_qeval_write_tsv(&r, f), 0);
        long lines = 0;
        rewind(f);
        for (int ch; (ch = fgetc(f)) != EOF;) lines += ch == '\n';
        fclose(f);
        assert_int_equal(lines, 1 + L * (RB_SITE_COUNT + RB_LIN_COUNT + 1));
        rb_qeval_result_free(&r);
    }
    /* the FP-stream statistics do not depend on the quantization setting */
    const rb_qeval_result *a = w4a16(0), *b = w4a16(1);
    for (int i = 0; i < fx.st.c->n_layers * RB_SITE_COUNT; i++) {
        rb_act_stats_row ra, rb;
        rb_act_stats_result(&a->site_fp[i], &ra);
        rb_act_stats_result(&b->site_fp[i], &rb);
        assert_true(ra.kurt_token_mean == rb.kurt_token_mean && ra.kurt_all == rb.kurt_all);
    }
}

/* The activation MSE of a run with a non-orthogonal online map (RUQuant's smoothing) is measured in
 * the model's basis: a site transform that is a pure scaling x ← x/s at layer 0's attn_in (A = I)
 * reports Σ‖(Q(x/s) − x/s)∘s‖² / Σ‖x‖² for x the normed embeddings, not the error of x/s itself. */
static void test_act_mse_model_basis(void **state) {
    (void)state;
    enum { T = 32, NW = 4 };
    char dir[512];
    rb_test_tmpdir(dir, sizeof dir);
    rb_error err = {0};
    rb_model *m = rb_test_make_model(dir, "tiny", 4);
    const rb_llama_config *c = rb_model_config(m);
    rb_weights_src base = rb_weights_from_model(m);
    rb_rotset rs;
    assert_int_equal(rb_rotset_init(&rs, "scaled", c->dim, c->head_dim, c->hidden_dim, c->n_layers, &err), 0);
    assert_int_equal(rb_rotset_ruq_alloc(&rs, &err), 0);
    rb_ruq_site *q;
    assert_int_equal(rb_ruq_site_alloc(c->dim, c->dim, &q, &err), 0);
    for (int j = 0; j < c->dim; j++) q->scale[j] = 0.25 + 0.1 * (j % 17);
    assert_int_equal(rb_ruq_site_check(q, &err), 0);
    rs.ruq[0][RB_RUQ_QKV] = q;
    rb_fused f;
    assert_int_equal(rb_fused_init(&f, &base, c, &rs, &err), 0);
    rb_weights_src fs = rb_fused_src(&f);
    rb_hooks hk;
    rb_hooks_init(&hk);
    rb_fused_add_online_hooks(&f, &hk);
    int32_t ids[NW * T];
    for (int i = 0; i < NW * T; i++) ids[i] = (int32_t)((i * 37 + 11) % c->vocab_size);
    rb_quant_cfg qc = preset("W16A16", RB_WALGO_RTN, 0);
    qc.a = rb_qspec_make(4, 0, RB_QGRAN_TOKEN, 0);
    rb_qeval_opts o = {.q = &qc, .ppl = {.protocol = RB_PPL_GPTQ, .seqlen = T}, .fp_ref = 1, .stats = 1, .online = &hk,
                       .to_model_basis = rb_hook_ruq_inverse, .basis_ctx = &f};
    rb_qeval_result r;
    rb_test_qeval(&fs, c, ids, NW * T, o, NULL, 0, 0, &r, NULL);
    /* by hand: x = the weight-free RMSNorm of the embeddings (γ is folded into the weights) */
    float *x = malloc(sizeof(float) * NW * T * c->dim), *y = malloc(sizeof(float) * NW * T * c->dim);
    assert_int_equal(fs.embed(fs.ctx, ids, NW * T, x, &err), 0);
    rb_rmsnorm(x, x, NULL, NW * T, c->dim, c->rms_eps);
    for (int i = 0; i < NW * T * c->dim; i++) y[i] = (float)(x[i] / q->scale[i % c->dim]);
    float *yq = malloc(sizeof(float) * NW * T * c->dim);
    memcpy(yq, y, sizeof(float) * NW * T * c->dim);
    assert_int_equal(rb_quant_fake(&qc.a, yq, NW * T, c->dim, 0, &err), 0);
    double num = 0, den = 0, num_t = 0, den_t = 0;
    for (int i = 0; i < NW * T * c->dim; i++) {
        double e = ((double)yq[i] - y[i]) * q->scale[i % c->dim];
        num += e * e, den += (double)x[i] * x[i];
        num_t += ((double)yq[i] - y[i]) * ((double)yq[i] - y[i]), den_t += (double)y[i] * y[i];
    }
    double got = rb_relerr_value(&r.act_mse[0 * RB_SITE_COUNT + RB_SITE_ATTN_IN]);
    fprintf(stderr, "# act MSE at layer 0 attn_in: %.6g (model basis, by hand %.6g; in the smoothed basis it would be %.6g)\n",
            got, num / den, num_t / den_t);
    assert_true(fabs(got - num / den) <= 1e-4 * (num / den)); /* float maps: a few ulps per entry */
    assert_true(fabs(num_t / den_t - num / den) > 0.01 * (num / den)); /* the basis matters here */
    free(x);
    free(y);
    free(yq);
    rb_qeval_result_free(&r);
    rb_fused_free(&f);
    rb_rotset_free(&rs);
    rb_model_close(m);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_act_mse_model_basis),
        cmocka_unit_test(test_w16a16_is_fp),      cmocka_unit_test(test_w8a8_close_to_fp),
        cmocka_unit_test(test_gptq_w16_identity), cmocka_unit_test(test_gptq_hessian_error),
        cmocka_unit_test(test_gptq_vs_rtn),       cmocka_unit_test(test_stats_sanity),
    };
    return cmocka_run_group_tests(tests, NULL, group_teardown);
}

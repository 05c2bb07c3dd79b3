/* Synthetic runs for the results/index tests: a hand-built rb_qeval_result (2 layers, statistics
 * accumulators fed a few rows through rb_act_stats_add), a small rotation set, run metadata, and
 * a helper writing a whole run directory. */
#ifndef RESULTS_FIXTURE_H
#define RESULTS_FIXTURE_H

#include "rb_test.h"

#include <hdf5.h>
#include <math.h>
#include <unistd.h>

#include "core/rb_rng.h"
#include "harness/rb_results.h"
#include "quant/rb_qpreset.h"
#include "rotate/rb_orth.h"

enum { FX_LAYERS = 2, FX_DIM = 8, FX_HEAD = 4, FX_NH = 2, FX_NKV = 1, FX_HIDDEN = 16, FX_WIN = 3, FX_T = 32 };

/* Above 2^63: the seed must travel as uint64. */
#define FX_SEED 0xF00DCAFEDEADBEEFull

static const char FX_SHA_A[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
static const char FX_SHA_B[] = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

/* No HDF5 object may stay open after any results/index call. */
static inline void fx_assert_no_open_h5(void) {
    assert_int_equal(H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

static inline int fx_site_cols(int site) {
    return site == RB_SITE_ATTN_IN || site == RB_SITE_MLP_IN ? FX_DIM
           : site == RB_SITE_K || site == RB_SITE_V          ? FX_NKV * FX_HEAD
           : site == RB_SITE_O_IN || site == RB_SITE_Q       ? FX_NH * FX_HEAD
                                                             : FX_HIDDEN;
}

/* A result as rb_qeval_run would leave it with stats and an FP reference. Exact values where the
 * index golden text depends on them (ppl, ppl_fp, kl_mean). The q stream's site "q" is left empty
 * (NaN columns), layer 1's act_mse at attn_in has ref 0 (NaN), linear k_proj of layer 0 has no
 * Hessian error (NaN, as RTN). */
static inline void fx_result(rb_qeval_result *r, double ppl, double ppl_fp, double kl, uint64_t seed) {
    memset(r, 0, sizeof *r);
    rb_error err;
    rb_rng rng;
    rb_rng_seed(&rng, seed, "fixture");
    r->n_layers = FX_LAYERS;
    size_t ns = (size_t)FX_LAYERS * RB_SITE_COUNT;
    r->site_fp = calloc(ns, sizeof *r->site_fp);
    r->site_q = calloc(ns, sizeof *r->site_q);
    r->act_mse = calloc(ns, sizeof *r->act_mse);
    r->layer_mse = calloc(FX_LAYERS, sizeof *r->layer_mse);
    r->lin = calloc((size_t)FX_LAYERS * RB_LIN_COUNT, sizeof *r->lin);
    assert_true(r->site_fp && r->site_q && r->act_mse && r->layer_mse && r->lin);
    float x[16 * 16], xq[16 * 16];
    for (size_t i = 0; i < ns; i++) {
        int site = (int)(i % RB_SITE_COUNT), cols = fx_site_cols(site);
        assert_int_equal(rb_act_stats_init(&r->site_fp[i], cols, &err), 0);
        assert_int_equal(rb_act_stats_init(&r->site_q[i], cols, &err), 0);
        rb_rng_gauss(&rng, x, (size_t)10 * cols, 0.1, 1.0);
        x[3] = 9.0f; /* an outlier */
        rb_act_stats_add(&r->site_fp[i], x, 6, (size_t)cols);
        rb_act_stats_add(&r->site_fp[i], x + 6 * cols, 4, (size_t)cols); /* two batches */
        for (int k = 0; k < 10 * cols; k++) xq[k] = x[k] * 0.5f;
        if (site != RB_SITE_Q) rb_act_stats_add(&r->site_q[i], xq, 10, (size_t)cols);
        if (!(i / RB_SITE_COUNT == 1 && site == RB_SITE_ATTN_IN)) {
            for (int k = 0; k < 10 * cols; k++) xq[k] = x[k] + 0.01f * (float)(k % 7);
            rb_relerr_add(&r->act_mse[i], x, xq, 10, cols, (size_t)cols);
        }
    }
    for (int l = 0; l < FX_LAYERS; l++) {
        rb_rng_gauss(&rng, x, 10 * FX_DIM, 0, 1);
        for (int k = 0; k < 10 * FX_DIM; k++) xq[k] = x[k] * 1.01f;
        rb_relerr_add(&r->layer_mse[l], x, xq, 10, FX_DIM, FX_DIM);
        for (int j = 0; j < RB_LIN_COUNT; j++) {
            rb_linear_row *lr = &r->lin[l * RB_LIN_COUNT + j];
            rb_rng_gauss(&rng, x, 8 * 16, 0, 0.02);
            rb_weight_stats_compute(x, 8, 16, &lr->w);
            lr->w_relerr = 0.001 * (j + 1) + l;
            lr->h_err = l == 0 && j == RB_LIN_K ? NAN : 10.0 * j + l;
            lr->h_err_rtn = l == 0 && j == RB_LIN_K ? NAN : 20.0 * j + l;
        }
    }
    rb_ppl_result *ps[2] = {&r->q, &r->fp};
    for (int p = 0; p < 2; p++) {
        rb_ppl_result *q = ps[p];
        q->windows = FX_WIN;
        q->tokens = FX_WIN * FX_T + 5;
        q->win_nll = calloc(FX_WIN, sizeof(double));
        q->win_scored = calloc(FX_WIN, sizeof(long));
        for (int w = 0; w < FX_WIN; w++) {
            q->win_nll[w] = 50.0 + w + 10.0 * p + rb_rng_uniform(&rng);
            q->win_scored[w] = FX_T - 1;
            q->nll_sum += q->win_nll[w];
            q->scored += q->win_scored[w];
        }
        q->ppl = p ? ppl_fp : ppl;
        q->seconds = 1.5 + p;
    }
    r->win_kl = calloc(FX_WIN, sizeof(double));
    for (int w = 0; w < FX_WIN; w++) r->win_kl[w] = 0.25 * (w + 1);
    r->kl_mean = kl;
    r->seconds_total = 2.5;
}

/* R1 dense random orthogonal; R2 Hadamard with signs on layer 0, identity on layer 1. */
static inline void fx_rotset(rb_rotset *s) {
    rb_error err;
    rb_rng rng;
    rb_rng_seed(&rng, 7, "fixture-rot");
    assert_int_equal(rb_rotset_init(s, "hadamard", FX_DIM, FX_HEAD, FX_HIDDEN, FX_LAYERS, &err), 0);
    double Q[FX_DIM * FX_DIM];
    assert_int_equal(rb_orth_random(&rng, FX_DIM, Q, &err), 0);
    assert_int_equal(rb_rot_from_dense(Q, FX_DIM, &s->r1, &err), 0);
    int8_t signs[FX_HEAD] = {1, -1, -1, 1};
    assert_int_equal(rb_rot_from_hadamard(FX_HEAD, signs, &s->r2[0], &err), 0);
    s->seed = FX_SEED;
    s->r3 = 1;
    s->r4 = 1;
    s->emb_center = 0;
    s->cross_head = 1;
}

static const char *const fx_argv[] = {"rotbench", "run", "exp.yaml", "quant.w.bits=4"};
static const char *const fx_overrides[] = {"quant.w.bits=4", "name=with, comma \"quoted\""};

static inline rb_run_meta fx_meta(const char *run_id, const char *name, const char *method, int w_algo) {
    rb_run_meta m = {0};
    m.run_id = run_id;
    m.name = name;
    m.method = method;
    m.quant = "W4A4KV4";
    m.w_bits = 4;
    m.a_bits = 4;
    m.kv_bits = 4;
    m.w_algo = w_algo;
    m.seed = FX_SEED;
    m.resolved_yaml = "name: exp\nmodel: {path: /models/tiny}\nrotation: {method: hadamard}\n# ünïcødé\n";
    m.overrides = fx_overrides;
    m.n_overrides = 2;
    m.argv = fx_argv;
    m.argc = 4;
    return m;
}

static inline rb_inputs fx_inputs(void) {
    static const rb_input_file model[] = {{"model-00001-of-00002.safetensors", "/models/tiny/model-00001-of-00002.safetensors", FX_SHA_A},
                                          {"model-00002-of-00002.safetensors", "/models/tiny/model-00002-of-00002.safetensors", FX_SHA_B}};
    static const rb_input_file corpora[] = {{"wikitext2-test", "/data/wiki.test.raw", FX_SHA_B}};
    rb_inputs in = {"/models/tiny", model, 2, corpora, 1};
    return in;
}

/* Writes a run directory <parent>/<sub> with one results file: evaluations of `n_eval` corpora
 * ("wikitext2-test", then "c4") with ppl, ppl + 1, ...; status `status` (DONE renames). */
static inline void fx_write_run(const char *parent, const char *sub, const char *run_id, const char *name,
                                const char *method, int w_algo, int n_eval, double ppl, double ppl_fp, double kl,
                                double seconds, int status) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", parent, sub);
    assert_int_equal(mkdir(dir, 0777), 0);
    rb_run_meta m = fx_meta(run_id, name, method, w_algo);
    rb_results *w;
    rb_error err;
    rb_error_clear(&err);
    int rc = rb_results_create(dir, &m, NULL, 0, &w, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
    static const char *const corp[] = {"wikitext2-test", "c4"};
    for (int i = 0; i < n_eval; i++) {
        rb_qeval_result r;
        fx_result(&r, ppl + i, ppl_fp + i, kl, 3);
        assert_int_equal(rb_results_put_eval(w, corp[i], i ? RB_PPL_LLAMACPP : RB_PPL_GPTQ, FX_T, &r, &err), 0);
        rb_qeval_result_free(&r);
    }
    rb_stage_times t = {NAN, 0.5, 1.0, seconds};
    assert_int_equal(rb_results_put_times(w, &t, &err), 0);
    assert_int_equal(rb_results_finish(w, status, &err), 0);
    fx_assert_no_open_h5();
}

#endif

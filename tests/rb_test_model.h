/* Test helper: logits of n_seq sequences of T tokens through a weights source (with hooks). */
#ifndef RB_TEST_MODEL_H
#define RB_TEST_MODEL_H

#include "rb_test.h"

#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"
#include "text/rb_calib.h"
#include "pipeline/rb_pipeline.h"
#include "model/rb_forward.h"
#include "model/rb_model.h"
#include "text/rb_tokenizer.h"
#include "model/rb_stream.h"
#include "eval/rb_qeval.h"
#include "quant/rb_wquant.h"
#include "quant/rb_qpreset.h"
#include "model/rb_make_model.h"
#include <unistd.h>

#define RB_TEST_STORIES_MODEL "stories260K/hf"
#define RB_TEST_STORIES_TEXT "wikitext-2/wiki.test.raw"

/* The real-model setting of the quantization tests: stories260K and WikiText-2 test tokenized
 * (BOS first) and cut in halves — calibration from the first, evaluation on the second (the train
 * split is not shipped). */
typedef struct rb_test_stories {
    rb_model *m;
    const rb_llama_config *c;
    rb_weights_src src;
    int32_t *ids;        /* whole text */
    size_t n;
    size_t calib_end;    /* first half: ids[0, calib_end) */
    const int32_t *eval; /* second half */
    size_t n_eval;
} rb_test_stories;

/* Opens the model and tokenizes the text; with `hadamard_tables`, also points $RB_HADAMARD_DIR at
 * the shared tables (stories260K's d_ff = 172 needs had172.txt for R4). Returns 0 when a shared
 * file is missing (the caller skips loudly), 1 when loaded; any other failure fails the test. */
static inline int rb_test_stories_open(rb_test_stories *s, int hadamard_tables) {
    memset(s, 0, sizeof *s);
    const char *mp = rb_test_data(RB_TEST_STORIES_MODEL), *tp, *hp;
    if (!mp) return 0;
    char model[4096], text[4096], hdir[4096];
    snprintf(model, sizeof model, "%s", mp);
    if (!(tp = rb_test_data(RB_TEST_STORIES_TEXT))) return 0;
    snprintf(text, sizeof text, "%s", tp);
    if (hadamard_tables) {
        if (!(hp = rb_test_data("hadamard/had172.txt"))) return 0;
        snprintf(hdir, sizeof hdir, "%s", hp);
        *strrchr(hdir, '/') = '\0';
        setenv("RB_HADAMARD_DIR", hdir, 1);
    }
    rb_error err = {0};
    rb_tokenizer *tok = NULL;
    assert_int_equal(rb_model_open(model, &s->m, &err), 0);
    assert_int_equal(rb_tokenizer_load(model, &tok, &err), 0);
    assert_int_equal(rb_tokenize_file(tok, text, 1, NULL, &s->ids, &s->n, &err), 0);
    rb_tokenizer_free(tok);
    s->c = rb_model_config(s->m);
    s->src = rb_weights_from_model(s->m);
    size_t b, e;
    assert_int_equal(rb_token_range_parse("0.5:1", s->n, &b, &e, &err), 0);
    s->eval = s->ids + b;
    s->n_eval = e - b;
    assert_int_equal(rb_token_range_parse("0:0.5", s->n, &b, &e, &err), 0);
    assert_int_equal(b, 0);
    s->calib_end = e;
    return 1;
}

static inline void rb_test_stories_close(rb_test_stories *s) {
    free(s->ids);
    if (s->m) rb_model_close(s->m);
    memset(s, 0, sizeof *s);
}

/* Heap [n_seq*T][vocab] logits (free with rb_free); fails the test on any error. */
static inline float *rb_test_logits(const rb_weights_src *src, const rb_llama_config *c, const int32_t *ids,
                                    int n_seq, int T, const rb_hooks *hk) {
    rb_error err = {0};
    size_t rows = (size_t)n_seq * T;
    float *hn = rb_alloc(rows * c->dim * sizeof(float));
    float *head = rb_alloc((size_t)c->vocab_size * c->dim * sizeof(float));
    float *out = rb_alloc(rows * c->vocab_size * sizeof(float));
    assert_non_null(hn);
    assert_non_null(head);
    assert_non_null(out);
    int rc = rb_llama_hidden(src, c, ids, n_seq, T, 0, hk, hn, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(src->load_lm_head(src->ctx, head, &err), 0);
    rb_llama_logits(hn, rows, head, c, out);
    rb_free(hn);
    rb_free(head);
    return out;
}

/* rb_qeval_run as the pipeline runs it: the weights quantized first (RTN, or GPTQ on calib[calib_n]
 * [calib_T] with o->online active) into a temporary weight store, removed afterwards. Fails the
 * test on any error. */
static inline void rb_test_qeval(const rb_weights_src *src, const rb_llama_config *c, const int32_t *tokens, size_t n,
                                 rb_qeval_opts o, const int32_t *calib, int calib_n, int calib_T,
                                 rb_qeval_result *res, double *seconds_wquant) {
    rb_error err = {0};
    rb_wstore *ws = NULL;
    char dir[512], path[600];
    int wq = o.q && o.q->w.bits < RB_QBITS_OFF;
    if (seconds_wquant) *seconds_wquant = 0;
    if (wq) {
        rb_test_tmpdir(dir, sizeof dir);
        snprintf(path, sizeof path, "%s/wquant.h5", dir);
        rb_wquant_opts wo = {.q = o.q, .calib = calib, .calib_n = calib_n, .calib_T = calib_T, .online = o.online,
                             .h_err = o.stats};
        int rc = rb_wstore_create(path, c, "test", "test", "test", &ws, &err);
        if (!rc) rc = rb_wquant_run(src, c, &wo, ws, seconds_wquant, &err);
        if (!rc) rc = rb_wstore_finish(ws, &err);
        if (rc) fail_msg("rb_wquant_run(%s): %s", o.q->name, err.msg);
    }
    o.wq = ws;
    int rc = rb_qeval_run(src, c, tokens, n, &o, res, &err);
    if (rc) fail_msg("rb_qeval_run(%s): %s", o.q ? o.q->name : "none", err.msg);
    if (wq) {
        rb_wstore_close(ws);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
    }
}

/* Generates make-model preset `preset` (seed) into dir and opens it; fails the test on error. */
static inline rb_model *rb_test_make_model(const char *dir, const char *preset, uint64_t seed) {
    rb_make_model_opts mo = {.preset = preset, .seed = seed};
    rb_error err = {0};
    rb_model *m = NULL;
    if (rb_make_model(dir, &mo, &err) || rb_model_open(dir, &m, &err)) fail_msg("%s: %s", dir, err.msg);
    return m;
}

/* RUQuant's W4A4 quantizer (METHODS §5.5; configs/quant/w4a4-ruquant.yaml): weights asym per channel
 * raw min/max × 0.8 RTN, activations asym per token raw × 0.9, K/V asym per head raw. */
static inline rb_quant_cfg rb_test_ruq_quant(void) {
    rb_quant_cfg q;
    rb_error err;
    assert_int_equal(rb_quant_preset("W4A4KV4", &q, &err), 0);
    snprintf(q.name, sizeof q.name, "W4A4KV4-ruq");
    q.w = rb_qspec_make(4, 0, RB_QGRAN_CHANNEL, 0);
    q.w.clip = 0.8f;
    q.w.raw_minmax = 1;
    q.a = rb_qspec_make(4, 0, RB_QGRAN_TOKEN, 0);
    q.a.clip = 0.9f;
    q.a.raw_minmax = 1;
    q.k = rb_qspec_make(4, 0, RB_QGRAN_HEAD, 0);
    q.k.raw_minmax = 1;
    q.v = q.k;
    assert_int_equal(rb_qspec_check(&q.w, &err), 0);
    assert_int_equal(rb_qspec_check(&q.a, &err), 0);
    assert_int_equal(rb_qspec_check(&q.k, &err), 0);
    return q;
}

#endif

/* Perplexity protocols: window layout on synthetic streams, and the golden numbers of the
 * independent float64 reference (tests/ref/ppl_ref.py) on stories260K / WikiText-2 test. */
#include "rb_test.h"

#include <math.h>

#include "pipeline/rb_pipeline.h"
#include "eval/rb_ppl.h"
#include "model/rb_model.h"
#include "text/rb_tokenizer.h"

static void test_windows_gptq(void **state) {
    (void)state;
    int32_t tok[23];
    for (int i = 0; i < 23; i++) tok[i] = 100 + i;
    rb_ppl_opts o = {.protocol = RB_PPL_GPTQ, .seqlen = 5, .bos_id = 1};
    int32_t *w;
    int n, first;
    rb_error err = {0};
    assert_int_equal(rb_ppl_windows(tok, 23, &o, &w, &n, &first, &err), 0);
    assert_int_equal(n, 4); /* ⌊23/5⌋, tail dropped */
    assert_int_equal(first, 0);
    for (int i = 0; i < 20; i++) assert_int_equal(w[i], 100 + i); /* fed as-is, mid-text starts */
    free(w);
    o.max_windows = 2;
    assert_int_equal(rb_ppl_windows(tok, 23, &o, &w, &n, &first, &err), 0);
    assert_int_equal(n, 2);
    free(w);
}

static void test_windows_llamacpp(void **state) {
    (void)state;
    int32_t tok[23];
    for (int i = 0; i < 23; i++) tok[i] = 100 + i;
    rb_ppl_opts o = {.protocol = RB_PPL_LLAMACPP, .seqlen = 6, .bos_id = 1};
    int32_t *w;
    int n, first;
    rb_error err = {0};
    assert_int_equal(rb_ppl_windows(tok, 23, &o, &w, &n, &first, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(first, 3); /* scored from seqlen/2 */
    for (int k = 0; k < 3; k++) {
        assert_int_equal(w[k * 6], 1); /* first token replaced by BOS */
        for (int i = 1; i < 6; i++) assert_int_equal(w[k * 6 + i], 100 + k * 6 + i);
    }
    free(w);
    o.bos_id = -1;
    assert_int_equal(rb_ppl_windows(tok, 23, &o, &w, &n, &first, &err), RB_EINVAL);
}

static void test_windows_too_short(void **state) {
    (void)state;
    int32_t tok[4] = {1, 2, 3, 4};
    rb_ppl_opts o = {.protocol = RB_PPL_GPTQ, .seqlen = 5};
    int32_t *w;
    int n, first;
    rb_error err = {0};
    assert_int_equal(rb_ppl_windows(tok, 4, &o, &w, &n, &first, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "fewer than one window"));
}

/* Golden values of the independent float64 reference tests/ref/ppl_ref.py (tests/ref/golden.json),
 * which mirrors QuaRot's eval loop (gptq) and llama-perplexity (llamacpp). rotbench's fp32 forward
 * agrees with float64 logits to ~2e-5 absolute; per-window NLL sums then agree to ~1e-6 relative. */
#define PPL_REL_TOL 1e-5
#define WIKI_TOKENS_WITH_BOS 809290

typedef struct golden_run {
    int protocol, max_windows, windows;
    long scored;
    double ppl;
    double first8[8];
} golden_run;

static const golden_run golden_runs[] = {
    {RB_PPL_GPTQ, 0, 1580, 807380, 119.37182615463665,
     {2394.4256768164305, 2298.0493016514492, 2677.2058651211755, 2335.5192101711555, 2597.1107371908365,
      2404.5932405516933, 2323.2601351514913, 2770.72145153929}},
    {RB_PPL_LLAMACPP, 0, 1580, 402900, 127.55566285707908,
     {1240.5272556095792, 1135.2001747216968, 1219.166562030327, 1116.1634458832468, 1253.3820312258877,
      1174.7435790444356, 1245.3039022926923, 1288.4964720939092}},
    {RB_PPL_GPTQ, 8, 8, 4088, 126.93318751978133, {0}},
    {RB_PPL_LLAMACPP, 8, 8, 2040, 114.62415293142884, {0}},
};

static void test_golden_stories(void **state) {
    (void)state;
    RB_REQUIRE_DATA(model, "stories260K/hf");
    RB_REQUIRE_DATA(text, "wikitext-2/wiki.test.raw");
    rb_error err = {0};
    rb_model *m = NULL;
    rb_tokenizer *tok = NULL;
    assert_int_equal(rb_model_open(model, &m, &err), 0);
    assert_int_equal(rb_tokenizer_load(model, &tok, &err), 0);
    int32_t *ids;
    size_t n;
    assert_int_equal(rb_tokenize_file(tok, text, 1, NULL, &ids, &n, &err), 0);
    assert_int_equal(n, WIKI_TOKENS_WITH_BOS);
    rb_weights_src src = rb_weights_from_model(m);
    for (size_t g = 0; g < sizeof golden_runs / sizeof *golden_runs; g++) {
        const golden_run *gr = &golden_runs[g];
        rb_ppl_opts o = {.protocol = gr->protocol, .seqlen = 512, .max_windows = gr->max_windows,
                         .bos_id = rb_tokenizer_bos(tok)};
        rb_ppl_result r;
        int rc = rb_ppl_run(&src, rb_model_config(m), ids, n, &o, NULL, &r, &err);
        if (rc) fprintf(stderr, "# %s\n", err.msg);
        assert_int_equal(rc, 0);
        fprintf(stderr, "# %s max_windows %d: ppl %.9g (reference %.9g)\n", rb_ppl_protocol_name(gr->protocol),
                gr->max_windows, r.ppl, gr->ppl);
        assert_int_equal(r.windows, gr->windows);
        assert_int_equal(r.scored, gr->scored);
        assert_true(fabs(r.ppl - gr->ppl) / gr->ppl < PPL_REL_TOL);
        if (gr->first8[0] > 0)
            for (int w = 0; w < 8; w++) assert_true(fabs(r.win_nll[w] - gr->first8[w]) / gr->first8[w] < PPL_REL_TOL);
        rb_ppl_result_free(&r);
    }
    free(ids);
    rb_tokenizer_free(tok);
    rb_model_close(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_windows_gptq),
        cmocka_unit_test(test_windows_llamacpp),
        cmocka_unit_test(test_windows_too_short),
        cmocka_unit_test(test_golden_stories),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

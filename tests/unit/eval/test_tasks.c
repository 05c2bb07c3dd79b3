/* Zero-shot task scoring (eval/rb_tasks.h): hand-computed decisions, log-probabilities and request
 * tokenization; packed scoring equal to one sequence per request; and the golden test: every shipped
 * task file (first 100 documents) scored on stories260K against tests/ref/tasks_stories260K.json, the
 * independent float64 reference of tests/ref/task_ref.py (its own prompts, SentencePiece tokenizer and
 * numpy forward). */
#include "rb_test.h"

#include <jansson.h>
#include <math.h>

#include "eval/rb_tasks.h"
#include "model/rb_model.h"
#include "tasks/rb_taskfile.h"
#include "text/rb_tokenizer.h"

/* fp32 forward vs the float64 reference: per-token log-probabilities agree to ~1e-6 on stories260K
 * (logits of magnitude ≤ 20, fp32 rounding ~1e-7 relative, through 5 layers); a continuation sums up
 * to ~100 of them. */
#define LL_TOL 1e-3
/* Packed vs separate scoring: the same fp32 arithmetic except the attention products' shapes. */
#define PACK_TOL 1e-4

static void test_decide(void **state) {
    (void)state;
    int pred, norm;
    /* acc: −2 twice, the first wins; acc_norm: −3/1, −2/4, −2/2 → −0.5 wins */
    double ll[] = {-3, -2, -2};
    int chars[] = {1, 4, 2}, ntok[] = {1, 1, 1};
    unsigned char gr[] = {0, 0, 0};
    rb_task_decide(RB_SCORE_CHOICE, ll, gr, ntok, chars, 3, &pred, &norm);
    assert_int_equal(pred, 1);
    assert_int_equal(norm, 1);
    /* length normalization flips the decision: −4/2 = −2 < −6/6 = −1 */
    double ll2[] = {-4, -6};
    int chars2[] = {2, 6};
    rb_task_decide(RB_SCORE_CHOICE, ll2, gr, ntok, chars2, 2, &pred, &norm);
    assert_int_equal(pred, 0);
    assert_int_equal(norm, 1);
    /* exact tie under acc_norm: −3/3 = −2/2 → the first */
    double ll3[] = {-3, -2};
    int chars3[] = {3, 2};
    rb_task_decide(RB_SCORE_CHOICE, ll3, gr, ntok, chars3, 2, &pred, &norm);
    assert_int_equal(pred, 1);
    assert_int_equal(norm, 0);
    /* llama.cpp: the mean per token, −6/3 = −2 beats −4/1 */
    double ll4[] = {-6, -4};
    int ntok4[] = {3, 1};
    rb_task_decide(RB_SCORE_LLAMACPP, ll4, gr, ntok4, chars3, 2, &pred, &norm);
    assert_int_equal(pred, 0);
    assert_int_equal(norm, 0);
    /* lambada: right only when every token was the argmax */
    unsigned char yes = 1, no = 0;
    rb_task_decide(RB_SCORE_GREEDY, ll, &yes, ntok, chars, 1, &pred, &norm);
    assert_int_equal(pred, 0);
    rb_task_decide(RB_SCORE_GREEDY, ll, &no, ntok, chars, 1, &pred, &norm);
    assert_int_equal(pred, -1);
}

static void test_logprob(void **state) {
    (void)state;
    float row[] = {1.0f, 3.0f, 3.0f, 0.0f};
    double lse = log(exp(1.0) + 2 * exp(3.0) + 1.0);
    int g;
    assert_true(fabs(rb_task_logprob(row, 4, 1, &g) - (3.0 - lse)) < 1e-6);
    assert_int_equal(g, 1); /* the first index of the maximum */
    assert_true(fabs(rb_task_logprob(row, 4, 2, &g) - (3.0 - lse)) < 1e-6);
    assert_int_equal(g, 0); /* tied with an earlier id: torch.argmax returns the earlier one */
    assert_true(fabs(rb_task_logprob(row, 4, 3, &g) - (0.0 - lse)) < 1e-6);
    assert_int_equal(g, 0);
}

static int32_t *enc(const rb_tokenizer *t, const char *s, int bos, size_t *n) {
    int32_t *ids = NULL;
    rb_error err = {0};
    assert_int_equal(rb_tokenizer_encode(t, s, strlen(s), bos, &ids, n, &err), 0);
    return ids;
}

static void test_encode_pair(void **state) {
    (void)state;
    RB_REQUIRE_DATA(tokp, "stories260K/tok512.bin");
    rb_tokenizer *t = NULL;
    rb_error err = {0};
    assert_int_equal(rb_tokenizer_load(tokp, &t, &err), 0);
    int32_t *seq, *seq2;
    int n, nc, tr, n2, nc2, tr2;
    /* the split: the context alone, then what the whole string adds past it */
    assert_int_equal(rb_task_encode_pair(t, "Once upon a time", " there was", 0, 512, &seq, &n, &nc, &tr, "t", &err), 0);
    size_t nctx, nwhole;
    int32_t *c = enc(t, "Once upon a time", 0, &nctx), *w = enc(t, "Once upon a time there was", 0, &nwhole);
    assert_int_equal(n, (int)nwhole);
    assert_int_equal(nc, (int)(nwhole - nctx));
    assert_memory_equal(seq, c, nctx * sizeof *c);
    assert_memory_equal(seq + nctx, w + nctx, (nwhole - nctx) * sizeof *w);
    assert_int_equal(tr, 0);
    /* a trailing space of the context moves to the continuation */
    assert_int_equal(rb_task_encode_pair(t, "Once upon a time ", "there was", 0, 512, &seq2, &n2, &nc2, &tr2, "t", &err), 0);
    assert_int_equal(n2, n);
    assert_int_equal(nc2, nc);
    assert_memory_equal(seq2, seq, (size_t)n * sizeof *seq);
    free(seq2);
    /* BOS when the tokenizer's default asks for it */
    assert_int_equal(rb_task_encode_pair(t, "Once upon a time", " there was", 1, 512, &seq2, &n2, &nc2, &tr2, "t", &err), 0);
    assert_int_equal(seq2[0], rb_tokenizer_bos(t));
    assert_int_equal(n2, n + 1);
    assert_int_equal(nc2, nc);
    free(seq2);
    /* left truncation keeps the last max_length + 1 tokens and the whole continuation */
    assert_int_equal(rb_task_encode_pair(t, "Once upon a time", " there was", 0, 3, &seq2, &n2, &nc2, &tr2, "t", &err),
                     nc <= 3 ? 0 : RB_EINVAL);
    if (nc <= 3) {
        assert_int_equal(n2, 4);
        assert_int_equal(tr2, 1);
        assert_memory_equal(seq2, seq + n - 4, 4 * sizeof *seq);
        free(seq2);
    }
    /* a continuation longer than max_length is refused, naming the place */
    assert_int_equal(rb_task_encode_pair(t, "Once", " upon a time there was a little girl", 0, 2, &seq2, &n2, &nc2, &tr2,
                                         "x.jsonl:7", &err),
                     RB_EINVAL);
    assert_non_null(strstr(err.msg, "x.jsonl:7"));
    /* an empty context is the BOS token */
    assert_int_equal(rb_task_encode_pair(t, "", "Once", 0, 512, &seq2, &n2, &nc2, &tr2, "t", &err), 0);
    assert_int_equal(seq2[0], rb_tokenizer_bos(t));
    assert_int_equal(nc2, n2 - 1);
    free(seq2);
    free(seq);
    free(c);
    free(w);
    rb_tokenizer_free(t);
}

/* The reference's task name → file under the shared data and the BOS settings it holds. */
static const char *ref_path(void) {
    static char buf[4096];
    const char *root = getenv("RB_SOURCE_ROOT");
    snprintf(buf, sizeof buf, "%s/tests/ref/tasks_stories260K.json", root ? root : ".");
    return buf;
}

typedef struct golden_ctx {
    rb_model *m;
    rb_tokenizer *tok;
    rb_weights_src src;
    const rb_llama_config *c;
} golden_ctx;

static int golden_setup(golden_ctx *g) {
    const char *mp = rb_test_data("stories260K/hf");
    char model[4096];
    if (!mp) return -1;
    snprintf(model, sizeof model, "%s", mp);
    const char *tp = rb_test_data("stories260K/tok512.bin");
    if (!tp) return -1;
    rb_error err = {0};
    assert_int_equal(rb_tokenizer_load(tp, &g->tok, &err), 0);
    assert_int_equal(rb_model_open(model, &g->m, &err), 0);
    g->src = rb_weights_from_model(g->m);
    g->c = rb_model_config(g->m);
    return 0;
}

static void golden_free(golden_ctx *g) {
    if (g->m) rb_model_close(g->m);
    if (g->tok) rb_tokenizer_free(g->tok);
}

/* Compares one task under one BOS setting with the reference's documents. */
static void check_against(const rb_task_result *r, json_t *ref, const char *what) {
    json_t *docs = json_object_get(ref, "docs");
    assert_non_null(docs);
    assert_int_equal((int)json_array_size(docs), r->n_docs);
    int near_ties = 0, checked = 0;
    double max_diff = 0;
    for (int d = 0; d < r->n_docs; d++) {
        json_t *doc = json_array_get(docs, (size_t)d);
        assert_int_equal((int)json_integer_value(json_array_get(doc, 0)), r->gold[d]);
        json_t *reqs = json_array_get(doc, 1);
        int a = r->req_off[d], n = r->req_off[d + 1] - a;
        assert_int_equal((int)json_array_size(reqs), n);
        double ref_ll[64];
        for (int k = 0; k < n; k++) {
            json_t *q = json_array_get(reqs, (size_t)k);
            ref_ll[k] = json_number_value(json_array_get(q, 0));
            int ref_greedy = (int)json_integer_value(json_array_get(q, 1));
            int ref_n = (int)json_integer_value(json_array_get(q, 2));
            assert_int_equal(r->n_tok[a + k], ref_n);
            if (r->scoring == RB_SCORE_CHOICE) /* acc_norm's divisor (the other scorings do not use it) */
                assert_int_equal(r->n_chars[a + k], (int)json_integer_value(json_array_get(q, 4)));
            double diff = fabs(r->q.ll[a + k] - ref_ll[k]);
            if (diff > max_diff) max_diff = diff;
            if (diff > LL_TOL) fail_msg("%s doc %d request %d: ll %.9g, reference %.9g", what, d, k, r->q.ll[a + k], ref_ll[k]);
            if (ref_greedy != r->q.greedy[a + k]) near_ties++; /* only a near-tie of the top two logits flips it */
        }
        /* the decision must match unless the reference's top two (raw or normalized) are within tolerance */
        int pred, pred_norm;
        rb_task_decide(r->scoring, ref_ll, r->q.greedy + a, r->n_tok + a, r->n_chars + a, n, &pred, &pred_norm);
        int tie = 0;
        for (int k = 0; k < n; k++)
            for (int l = 0; l < n; l++) {
                double s = r->scoring == RB_SCORE_LLAMACPP ? 1.0 / r->n_tok[a + k] : 1.0;
                if (k != l && fabs(ref_ll[k] - ref_ll[l]) < 2 * LL_TOL * s) tie = 1;
            }
        if (!tie && r->scoring != RB_SCORE_GREEDY) {
            assert_int_equal(r->q.correct[d], pred == r->gold[d]);
            checked++;
        }
    }
    assert_true(near_ties <= 1);
    fprintf(stderr, "# %s: %d documents, %d decisions checked, max |Δll| %.2e, greedy near-ties %d\n", what,
            r->n_docs, checked, max_diff, near_ties);
    assert_int_equal(r->truncated, (int)json_integer_value(json_object_get(ref, "n_truncated")));
    /* with no near-tie every decision was checked, so the accuracies are the reference's exactly */
    const char *metric[] = {"acc", "acc_norm"};
    double mine[] = {r->q.acc, r->q.acc_norm};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(ref, metric[i]);
        if (!v) continue;
        if (checked == r->n_docs || r->scoring == RB_SCORE_GREEDY)
            assert_true(fabs(mine[i] - json_number_value(v)) < 1e-12);
        else
            assert_true(fabs(mine[i] - json_number_value(v)) <= (double)(r->n_docs - checked) / r->n_docs);
    }
}

static void test_golden(void **state) {
    (void)state;
    RB_REQUIRE_DATA(model_dir, "stories260K/hf");
    json_error_t je;
    json_t *ref = json_load_file(ref_path(), 0, &je);
    if (!ref) fail_msg("%s:%d: %s", ref_path(), je.line, je.text);
    golden_ctx g = {0};
    if (golden_setup(&g)) {
        json_decref(ref);
        skip();
    }
    json_t *tasks = json_object_get(ref, "tasks");
    long limit = (long)json_integer_value(json_object_get(ref, "limit"));
    int max_length = (int)json_integer_value(json_object_get(ref, "max_length"));
    assert_true(limit > 0 && max_length > 0);
    const char *name;
    json_t *t;
    int n_tasks = 0;
    json_object_foreach(tasks, name, t) {
        int task = rb_task_from_name(name);
        assert_true(task >= 0);
        char rel[512];
        snprintf(rel, sizeof rel, "%s", json_string_value(json_object_get(t, "file")));
        const char *path = rb_test_data(rel);
        assert_non_null(path);
        rb_task_set ts;
        rb_error err = {0};
        if (rb_taskfile_read(path, task, NULL, limit, &ts, &err)) fail_msg("%s", err.msg);
        const char *bname;
        json_t *b;
        json_object_foreach(json_object_get(t, "bos"), bname, b) {
            rb_tasks_opts o = {.bos = !strcmp(bname, "tokenizer-default") ? RB_TASK_BOS_DEFAULT : RB_TASK_BOS_NONE,
                               .max_length = max_length};
            rb_task_result r;
            if (rb_tasks_run(&g.src, g.c, g.tok, &ts, 1, &o, &r, &err)) fail_msg("%s: %s", name, err.msg);
            char what[128];
            snprintf(what, sizeof what, "%s/%s", name, bname);
            check_against(&r, b, what);
            rb_task_result_free(&r);
        }
        rb_task_set_free(&ts);
        n_tasks++;
    }
    assert_int_equal(n_tasks, RB_TASK_COUNT);
    golden_free(&g);
    json_decref(ref);
}

/* Packing (shared prefixes, several documents per sequence) changes no score. */
static void test_packed_equals_separate(void **state) {
    (void)state;
    RB_REQUIRE_DATA(piqa, "tasks/piqa/valid.jsonl");
    RB_REQUIRE_DATA(hs, "tasks/hellaswag/hellaswag_val_full.txt");
    RB_REQUIRE_DATA(wg, "tasks/llm-foundry/winogrande.jsonl");
    golden_ctx g = {0};
    if (golden_setup(&g)) skip();
    rb_task_set ts[3];
    rb_error err = {0};
    assert_int_equal(rb_taskfile_read(piqa, RB_TASK_PIQA, NULL, 40, &ts[0], &err), 0);
    assert_int_equal(rb_taskfile_read(hs, RB_TASK_HELLASWAG, NULL, 20, &ts[1], &err), 0);
    assert_int_equal(rb_taskfile_read(wg, RB_TASK_WINOGRANDE, NULL, 40, &ts[2], &err), 0);
    rb_tasks_opts o = {.bos = RB_TASK_BOS_DEFAULT};
    rb_task_result a[3], b[3];
    assert_int_equal(rb_tasks_run(&g.src, g.c, g.tok, ts, 3, &o, a, &err), 0);
    o.separate = 1;
    assert_int_equal(rb_tasks_run(&g.src, g.c, g.tok, ts, 3, &o, b, &err), 0);
    for (int t = 0; t < 3; t++) {
        assert_int_equal(a[t].n_req, b[t].n_req);
        assert_true(a[t].tokens_forward < b[t].tokens_forward); /* shared contexts are computed once */
        assert_int_equal(b[t].tokens_forward, b[t].tokens_request);
        for (int k = 0; k < a[t].n_req; k++) assert_true(fabs(a[t].q.ll[k] - b[t].q.ll[k]) < PACK_TOL);
        rb_task_result_free(&a[t]);
        rb_task_result_free(&b[t]);
        rb_task_set_free(&ts[t]);
    }
    golden_free(&g);
}

static void test_paired(void **state) {
    (void)state;
    /* 10 documents: q right on 0..5, FP right on 2..8 → q only {0,1}, FP only {6,7,8} */
    unsigned char q[10] = {1, 1, 1, 1, 1, 1, 0, 0, 0, 0}, f[10] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 0};
    rb_task_paired p;
    rb_task_paired_compute(q, f, 10, 7, &p);
    assert_int_equal(p.n_q_only, 2);
    assert_int_equal(p.n_fp_only, 3);
    assert_true(fabs(p.delta - (-0.1)) < 1e-12);
    /* exact McNemar: 2·P(Bin(5, ½) ≤ 2) = 2·16/32 = 1 */
    assert_true(fabs(p.p_mcnemar - 1.0) < 1e-12);
    assert_true(p.lo <= p.delta && p.delta <= p.hi && p.lo < p.hi);
    /* 0 vs 6 discordant: p = 2/64 */
    unsigned char a[8] = {0, 0, 0, 0, 0, 0, 1, 1}, b[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    rb_task_paired_compute(a, b, 8, 7, &p);
    assert_true(fabs(p.p_mcnemar - 2.0 / 64) < 1e-12);
    assert_true(p.hi < 0);
    /* same outcomes: a zero-width interval at 0 */
    rb_task_paired_compute(b, b, 8, 7, &p);
    assert_true(p.delta == 0 && p.lo == 0 && p.hi == 0 && p.p_mcnemar == 1.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_logprob),
        cmocka_unit_test(test_paired),
        cmocka_unit_test(test_encode_pair),
        cmocka_unit_test(test_packed_equals_separate),
        cmocka_unit_test(test_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

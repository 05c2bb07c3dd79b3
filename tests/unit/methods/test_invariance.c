/* The test that catches fusion bugs: with quantization off, every rotation method on every model
 * shape (stories260K; generated GQA, tied, non-power-of-two, Llama-3 rope-scaling models)
 * reproduces the unrotated logits and perplexity. Mean-centering off (it is not an invariance); so
 * are ReSpinQuant's low-rank junctions (their error is reported; its exact variant is checked). */
#include "rb_test.h"
#include "rb_test_model.h"

#include <math.h>

#include "core/rb_file.h"
#include "core/rb_rng.h"
#include "eval/rb_ppl.h"
#include "model/rb_forward.h"
#include "model/rb_make_model.h"
#include "model/rb_model.h"
#include "quant/rb_qpreset.h"
#include "rotate/rb_fuse.h"
#include "rotate/rb_had_plan.h"
#include "methods/rb_method.h"

/* fp32 forward of the same function in two bases: logits differ by rounding only (~1e-6 relative
 * per op over a few layers); the bound. */
#define INVARIANCE_LOGIT_ABS_TOL 1e-4
#define INVARIANCE_PPL_REL_TOL 1e-5
#define T_SEQ 48
#define N_SEQ 3

static float *logits(const rb_weights_src *src, const rb_llama_config *c, const int32_t *ids, const rb_hooks *hk) {
    return rb_test_logits(src, c, ids, N_SEQ, T_SEQ, hk);
}

static double ppl_of(const rb_weights_src *src, const rb_llama_config *c, const int32_t *ids, const rb_hooks *hk) {
    rb_error err = {0};
    rb_ppl_opts o = {.protocol = RB_PPL_GPTQ, .seqlen = T_SEQ};
    rb_ppl_result r;
    assert_int_equal(rb_ppl_run(src, c, ids, (size_t)N_SEQ * T_SEQ, &o, hk, &r, &err), 0);
    double p = r.ppl;
    rb_ppl_result_free(&r);
    return p;
}

/* The rotated, unquantized model of rs reproduces the reference logits and perplexity. Frees rs. */
static void check_rotset(const rb_weights_src *base, const rb_llama_config *c, const int32_t *ids, const float *ref,
                         double ppl_ref, rb_rotset *rs, const char *label, int seed) {
    rb_error err = {0};
    assert_true(rb_rotset_orth_err(rs) <= RB_ROT_ORTH_TOL);
    rb_fused f;
    rb_had_plan hp;
    rb_had_plan_make(c->n_heads, &hp);
    if (rs->cross_head && hp.kind == RB_HAD_NONE) { /* e.g. 6 heads: no Hadamard of order 6 exists */
        assert_int_equal(rb_fused_init(&f, base, c, rs, &err), RB_ENOTFOUND);
        assert_non_null(strstr(err.msg, "cross-head"));
        rb_rotset_free(rs);
        return;
    }
    assert_int_equal(rb_fused_init(&f, base, c, rs, &err), 0);
    rb_weights_src fs = rb_fused_src(&f);
    rb_hooks hk;
    rb_hooks_init(&hk);
    rb_fused_add_online_hooks(&f, &hk);
    float *got = logits(&fs, c, ids, &hk);
    double maxd = 0;
    for (size_t i = 0; i < (size_t)N_SEQ * T_SEQ * c->vocab_size; i++) maxd = fmax(maxd, fabs((double)got[i] - ref[i]));
    double p = ppl_of(&fs, c, ids, &hk);
    fprintf(stderr, "# %-10s %-8s seed %d (r3 %d r4 %d cross %d): max |Δlogit| %.2e, ppl %.9g vs %.9g\n", label,
            rs->method, seed, rs->r3, rs->r4, rs->cross_head, maxd, p, ppl_ref);
    if (rs->jn) {
        /* low-rank ReSpinQuant junctions approximate the exact ones: not an invariance (reported here;
         * test_respinquant checks the error per rank and exactness at full rank) */
        fprintf(stderr, "#   (low-rank junctions: FP logit error reported, not asserted)\n");
    } else {
        assert_true(maxd < INVARIANCE_LOGIT_ABS_TOL);
        assert_true(fabs(p - ppl_ref) / ppl_ref < INVARIANCE_PPL_REL_TOL);
    }
    rb_free(got);
    rb_fused_free(&f);
    rb_rotset_free(rs);
}

static void check_model(const char *path, const char *label) {
    rb_error err = {0};
    rb_model *m = NULL;
    int rc = rb_model_open(path, &m, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
    const rb_llama_config *c = rb_model_config(m);
    int32_t ids[N_SEQ * T_SEQ];
    rb_rng r;
    rb_rng_seed(&r, 7, "test.ids");
    for (int i = 0; i < N_SEQ * T_SEQ; i++) ids[i] = (int32_t)rb_rng_below(&r, (uint64_t)c->vocab_size);
    rb_weights_src base = rb_weights_from_model(m);
    float *ref = logits(&base, c, ids, NULL);
    double ppl_ref = ppl_of(&base, c, ids, NULL);
    /* every registered runnable method with each of its cheap test variants (learned methods
     * calibrate on the test windows themselves, with W4A4KV4 activations upstream), and with
     * QuaRot's cross-head online Hadamard where the method takes rotation.cross_head */
    rb_quant_cfg q;
    assert_int_equal(rb_quant_preset("W4A4KV4", &q, &err), 0);
    static const char *const defaults_only[] = {"", NULL};
    rb_had_plan hp;
    rb_had_plan_make(c->n_heads, &hp);
    int has_cross_had = hp.kind != RB_HAD_NONE;
    for (const rb_method *const *m = rb_methods(); *m; m++) {
        if (!(*m)->calibrate) continue;
        int takes_cross = rb_method_uses_key(*m, "cross_head");
        for (const char *const *v = (*m)->test_variants ? (*m)->test_variants : defaults_only; *v; v++)
            for (int cross = -1; cross <= takes_cross; cross += 2)
                for (int seed = 0; seed < 2; seed++) {
                    char *buf;
                    const char *on[8], *ov[8];
                    int no;
                    assert_int_equal(rb_method_split_opts(*v, &buf, on, ov, 8, &no, &err), 0);
                    rb_method_ctx mc = {.cfg = c, .src = &base, .seed = (uint64_t)seed, .r3 = -1, .r4 = -1,
                                        .emb_center = 0, .cross_head = cross, .calib = ids, .calib_n = N_SEQ,
                                        .calib_T = T_SEQ, .calib_batch = 1, .quant = &q, .opt_names = on,
                                        .opt_values = ov, .n_opts = no};
                    rb_rotset rs;
                    rc = rb_method_run((*m)->name, &mc, &rs, &err);
                    free(buf);
                    if (rc) fprintf(stderr, "# %s %s[%s]: %s\n", label, (*m)->name, *v, err.msg);
                    if (rc == RB_ENOTFOUND && cross == 1 && !has_cross_had) { /* refused up front: fine */
                        assert_non_null(strstr(err.msg, "cross-head"));
                        continue;
                    }
                    assert_int_equal(rc, 0);
                    check_rotset(&base, c, ids, ref, ppl_ref, &rs, label, seed);
                }
    }
    rb_free(ref);
    rb_model_close(m);
}
static void check_preset(const char *preset) {
    char dir[512];
    rb_test_tmpdir(dir, sizeof dir);
    rb_make_model_opts o = {.preset = preset, .seed = 11};
    rb_error err = {0};
    assert_int_equal(rb_make_model(dir, &o, &err), 0);
    check_model(dir, preset);
}

static void test_stories(void **state) {
    (void)state;
    RB_REQUIRE_DATA(model, "stories260K/hf");
    RB_REQUIRE_DATA(hdir, "hadamard/had172.txt"); /* 172 has no construction: R4 needs the table */
    char *slash = strrchr(hdir, '/');
    *slash = 0;
    setenv("RB_HADAMARD_DIR", hdir, 1);
    check_model(model, "stories");
}
static void test_gqa(void **state) { (void)state; check_preset("gqa"); }
static void test_tied(void **state) { (void)state; check_preset("tied"); }
static void test_npot(void **state) { (void)state; check_preset("npot"); }
static void test_llama3(void **state) { (void)state; check_preset("llama3"); }
static void test_outliers(void **state) { (void)state; check_preset("outliers"); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories), cmocka_unit_test(test_gqa),    cmocka_unit_test(test_tied),
        cmocka_unit_test(test_npot),    cmocka_unit_test(test_llama3), cmocka_unit_test(test_outliers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The configuration schema's value lists agree with the modules that consume them: quantization
 * presets (rb_qpreset), rotation methods (rb_method), calibration orders (rb_calib), perplexity
 * protocols (rb_ppl). Links the whole library. */
#include "cfg_test_util.h"

#include "text/rb_calib.h"
#include "eval/rb_ppl.h"
#include "quant/rb_qpreset.h"
#include "methods/rb_method.h"

static int load1(const char *ov, rb_config *c) {
    rb_error e;
    const char *o[] = {ov};
    int rc = cfg_load(CFG_MIN, o, 1, c, &e);
    if (rc) fprintf(stderr, "# %s: %s\n", ov, e.msg);
    return rc;
}

static void test_presets(void **state) {
    (void)state;
    int n = 0;
    for (const char *const *p = rb_quant_preset_names(); *p; p++, n++) {
        char ov[64];
        snprintf(ov, sizeof ov, "quant.preset=%s", *p);
        rb_config c;
        assert_int_equal(load1(ov, &c), 0);
        rb_quant_cfg q;
        rb_error e;
        assert_int_equal(rb_quant_preset(*p, &q, &e), 0);
        assert_string_equal(c.quant.preset, q.name);
        assert_int_equal(c.quant.w.bits, q.w.bits);
        assert_int_equal(c.quant.a.bits, q.a.bits);
        assert_int_equal(c.quant.kv.bits, q.k.bits);
        assert_int_equal(c.quant.kv.bits, q.v.bits);
        /* the schema's defaults are the preset's other settings */
        assert_int_equal(c.quant.w.sym, q.w.sym);
        assert_int_equal(c.quant.a.sym, q.a.sym);
        assert_int_equal(c.quant.kv.sym, q.k.sym);
        assert_int_equal(c.quant.w.gran, q.w.gran);
        assert_int_equal(c.quant.a.gran, q.a.gran);
        assert_int_equal(c.quant.kv.gran, q.k.gran);
        assert_true(c.quant.a.clip == q.a.clip && c.quant.kv.clip == q.k.clip);
        if (q.w.bits < RB_QBITS_OFF) assert_int_equal(c.quant.w.clip_search, q.w.clip_search);
        assert_int_equal(c.quant.w.algo, q.w_algo);
        assert_true(c.quant.w.damp == q.gptq.percdamp);
        assert_int_equal(c.quant.w.act_order, q.gptq.act_order);
        rb_config_free(&c);
    }
    assert_int_equal(n, 10);
}

static void test_methods_orders_protocols(void **state) {
    (void)state;
    int n = 0;
    for (const rb_method *const *m = rb_methods(); *m; m++, n++) {
        char ov[64];
        snprintf(ov, sizeof ov, "rotation.method=%s", (*m)->name);
        rb_config c;
        rb_error e;
        const char *o[] = {ov};
        assert_int_equal(cfg_load(CFG_MIN_CALIB, o, 1, &c, &e), 0);
        assert_string_equal(c.rotation.method, (*m)->name);
        rb_config_free(&c);
    }
    assert_true(n >= 7); /* at least the methods of issue 6 */
    for (int o = RB_CALIB_SEQUENTIAL; o <= RB_CALIB_REVERSED; o++) {
        char ov[96];
        snprintf(ov, sizeof ov, "++data.calib={corpus: c, order: %s}", rb_calib_order_name(o));
        rb_config c;
        assert_int_equal(load1(ov, &c), 0);
        assert_int_equal(c.data.calib.order, o);
        rb_config_free(&c);
    }
    const int protos[] = {RB_PPL_GPTQ, RB_PPL_LLAMACPP};
    for (int i = 0; i < 2; i++) {
        char ov[64];
        snprintf(ov, sizeof ov, "data.eval.0.protocol=%s", rb_ppl_protocol_name(protos[i]));
        rb_config c;
        assert_int_equal(load1(ov, &c), 0);
        assert_int_equal(c.data.eval[0].protocol, protos[i]);
        rb_config_free(&c);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_methods_orders_protocols),
    };
    return cmocka_run_group_tests(tests, cfg_setup, NULL);
}

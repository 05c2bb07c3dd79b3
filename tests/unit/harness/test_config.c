/* Harness configuration: schema validation, canonical form, composition, overrides, error
 * messages (exact FILE:LINE:COL: key.path: prefix for every error class). */
#include "cfg_test_util.h"

#include "core/rb_file.h"
#include "text/rb_calib.h"
#include "eval/rb_ppl.h"
#include "quant/rb_qpreset.h"
#include "quant/rb_quant.h"

static const char *const golden_min =
    "name: t\n"
    "seed: 0\n"
    "model:\n"
    "  path: /m\n"
    "data:\n"
    "  eval:\n"
    "    - corpus: /d/wiki.test.raw\n"
    "      name: wiki.test.raw\n"
    "      range: \"0:1\"\n"
    "      seqlen: 2048\n"
    "      protocol: gptq\n"
    "      max_windows: 0\n"
    "quant:\n"
    "  w:\n"
    "    bits: 16\n"
    "    sym: true\n"
    "    group: channel\n"
    "    clip: search\n"
    "    algo: rtn\n"
    "    act_order: false\n"
    "    damp: 0.01\n"
    "    raw_minmax: false\n"
    "  a:\n"
    "    bits: 16\n"
    "    sym: false\n"
    "    group: token\n"
    "    clip: 1.0\n"
    "    raw_minmax: false\n"
    "    o_proj: auto\n"
    "  kv:\n"
    "    bits: 16\n"
    "    sym: false\n"
    "    group: head\n"
    "    clip: 1.0\n"
    "    raw_minmax: false\n"
    "  q:\n"
    "    bits: 16\n"
    "    sym: false\n"
    "    group: head\n"
    "    clip: 1.0\n"
    "    raw_minmax: false\n"
    "rotation:\n"
    "  method: identity\n"
    "  emb_center: true\n"
    "metrics: [kurtosis, mse, kl]\n"
    "figures: []\n";

/* Loading text, then its canonical form, gives the same bytes (returned, caller frees). */
static char *roundtrip(const char *text) {
    rb_config a, b;
    rb_error e;
    if (cfg_load(text, NULL, 0, &a, &e)) {
        fprintf(stderr, "# %s\n", e.msg);
        fail();
    }
    if (cfg_load(a.canonical, NULL, 0, &b, &e)) {
        fprintf(stderr, "# canonical does not load: %s\n%s", e.msg, a.canonical);
        fail();
    }
    assert_string_equal(a.canonical, b.canonical);
    char *s = rb_strdup(a.canonical);
    rb_config_free(&a);
    rb_config_free(&b);
    return s;
}

static void test_defaults_golden(void **state) {
    (void)state;
    char *s = roundtrip(CFG_MIN);
    assert_string_equal(s, golden_min);
    free(s);
    rb_config c;
    rb_error e;
    assert_int_equal(cfg_load(CFG_MIN, NULL, 0, &c, &e), 0);
    assert_string_equal(c.name, "t");
    assert_true(c.seed == 0);
    assert_string_equal(c.model.path, "/m");
    assert_null(c.model.tokenizer);
    assert_int_equal(c.data.has_calib, 0);
    assert_int_equal(c.data.n_eval, 1);
    assert_string_equal(c.data.eval[0].name, "wiki.test.raw");
    assert_string_equal(c.data.eval[0].range, "0:1");
    assert_int_equal(c.data.eval[0].seqlen, 2048);
    assert_int_equal(c.data.eval[0].protocol, RB_PPL_GPTQ);
    assert_null(c.quant.preset);
    assert_int_equal(c.quant.w.bits, 16);
    assert_int_equal(c.quant.w.sym, 1);
    assert_int_equal(c.quant.w.gran, RB_QGRAN_CHANNEL);
    assert_int_equal(c.quant.w.clip_search, 1);
    assert_int_equal(c.quant.w.algo, RB_WALGO_RTN);
    assert_true(c.quant.w.damp == 0.01);
    assert_int_equal(c.quant.a.gran, RB_QGRAN_TOKEN);
    assert_int_equal(c.quant.kv.gran, RB_QGRAN_HEAD);
    assert_true(c.quant.kv.clip == 1.0);
    assert_string_equal(c.rotation.method, "identity");
    assert_int_equal(c.rotation.r3, -1);
    assert_int_equal(c.rotation.r4, -1);
    assert_int_equal(c.rotation.cross_head, -1);
    assert_int_equal(c.quant.o_proj, RB_OPROJ_AUTO);
    assert_int_equal(c.quant.q.bits, 16);
    assert_int_equal(c.rotation.emb_center, 1);
    assert_int_equal(c.rotation.has_seed, 0);
    assert_int_equal(c.metrics, RB_METRIC_ALL);
    assert_int_equal(c.n_figures, 0);
    assert_int_equal(c.has_sweep, 0);
    rb_config_free(&c);
    rb_config_free(&c); /* a freed config is zeroed: freeing again is harmless */
}

static void test_full_roundtrip(void **state) {
    (void)state;
    const char *text =
        "name: full.run-1\n"
        "seed: 18446744073709551\n"
        "model: {path: '${RB_TEST_MODELS}/Llama-2-7b-hf', tokenizer: /tok/t.model}\n"
        "data:\n"
        "  calib: {corpus: wikitext2-train, range: '0.5:', samples: 64, seqlen: 512, order: sorted_by_norm,\n"
        "          batch: 8}\n"
        "  eval:\n"
        "    - {corpus: /d/wiki.test.raw, name: wiki, seqlen: 4096, protocol: llamacpp, max_windows: 10}\n"
        "    - corpus: /d/c4.txt\n"
        "      range: ':0.25'\n"
        "quant:\n"
        "  preset: w4a4kv4\n"
        "  w: {bits: 3, sym: false, group: 128, clip: 0.9, algo: gptq, act_order: true, damp: 1e-3}\n"
        "  a: {group: head, clip: 0.95}\n"
        "  kv: {group: 64, sym: true}\n"
        "rotation: {method: hadamard, r3: false, r4: true, cross_head: true, emb_center: false, seed: 7}\n"
        "metrics: [kl, kurtosis]\n"
        "figures: [kurtosis_per_layer, ppl_vs_bits]\n";
    char *s = roundtrip(text);
    rb_config c;
    rb_error e;
    assert_int_equal(cfg_load(text, NULL, 0, &c, &e), 0);
    assert_true(c.seed == 18446744073709551ull);
    assert_string_equal(c.model.path, "/models/Llama-2-7b-hf");
    assert_string_equal(c.model.tokenizer, "/tok/t.model");
    assert_int_equal(c.data.has_calib, 1);
    assert_string_equal(c.data.calib.range, "0.5:");
    assert_int_equal(c.data.calib.order, RB_CALIB_SORTED_BY_NORM);
    assert_int_equal(c.data.calib.batch, 8);
    assert_int_equal(c.data.n_eval, 2);
    assert_int_equal(c.data.eval[0].protocol, RB_PPL_LLAMACPP);
    assert_int_equal(c.data.eval[0].max_windows, 10);
    assert_string_equal(c.data.eval[1].name, "c4.txt");
    assert_string_equal(c.quant.preset, "W4A4KV4"); /* case-insensitive, canonical spelling */
    assert_int_equal(c.quant.w.bits, 3);            /* explicit bits win over the preset */
    assert_int_equal(c.quant.a.bits, 4);            /* the preset fills the rest */
    assert_int_equal(c.quant.kv.bits, 4);
    assert_int_equal(c.quant.w.gran, RB_QGRAN_GROUP);
    assert_int_equal(c.quant.w.group, 128);
    assert_int_equal(c.quant.w.clip_search, 0);
    assert_true(c.quant.w.clip == 0.9);
    assert_true(c.quant.w.damp == 1e-3);
    assert_int_equal(c.quant.a.gran, RB_QGRAN_HEAD);
    assert_int_equal(c.quant.kv.gran, RB_QGRAN_GROUP);
    assert_int_equal(c.rotation.r3, 0);
    assert_int_equal(c.rotation.r4, 1);
    assert_true(c.rotation.has_seed && c.rotation.seed == 7);
    assert_int_equal(c.metrics, RB_METRIC_KL | RB_METRIC_KURTOSIS);
    assert_int_equal(c.n_figures, 2);
    assert_string_equal(c.figures[1], "ppl_vs_bits");
    /* spot-check the canonical text */
    assert_non_null(strstr(s, "  calib:\n    corpus: wikitext2-train\n    range: \"0.5:\"\n"));
    assert_non_null(strstr(s, "    group: 128\n    clip: 0.9\n    algo: gptq\n    act_order: true\n    damp: 0.001\n"));
    assert_non_null(strstr(s, "rotation:\n  method: hadamard\n  r3: false\n  r4: true\n"));
    assert_non_null(strstr(s, "  seed: 7\nmetrics: [kurtosis, kl]\nfigures: [kurtosis_per_layer, ppl_vs_bits]\n"));
    assert_string_equal(c.canonical, s);
    rb_config_free(&c);
    free(s);
}

/* rotation.options: sorted by name in the canonical form, values kept as written; raw_minmax. */
static void test_method_options(void **state) {
    (void)state;
    const char *text = CFG_MIN_CALIB "rotation: {method: conqur, options: {passes: 2, init: identity, beta: 0.5}}\n"
                               "quant: {a: {bits: 4, raw_minmax: true}}\n";
    char *s = roundtrip(text);
    assert_non_null(strstr(s, "  options: {beta: 0.5, init: identity, passes: 2}\n"));
    assert_non_null(strstr(s, "    clip: 1.0\n    raw_minmax: true\n"));
    rb_config c;
    rb_error e;
    assert_int_equal(cfg_load(text, NULL, 0, &c, &e), 0);
    assert_int_equal(c.rotation.n_opts, 3);
    assert_string_equal(c.rotation.opt_names[0], "beta");
    assert_string_equal(c.rotation.opt_values[0], "0.5");
    assert_string_equal(c.rotation.opt_names[2], "passes");
    assert_int_equal(c.quant.a.raw_minmax, 1);
    assert_int_equal(c.quant.w.raw_minmax, 0);
    rb_config_free(&c);
    free(s);
}

static void test_strings_quoted(void **state) {
    (void)state;
    /* names and paths that YAML could misread are quoted in the canonical form */
    char *s = roundtrip("name: '123'\nmodel: {path: 'a b/\"q\"\\x:y'}\ndata: {eval: [{corpus: true, name: 'yes'}]}\n");
    assert_non_null(strstr(s, "name: \"123\"\n"));
    assert_non_null(strstr(s, "  path: \"a b/\\\"q\\\"\\\\x:y\"\n"));
    assert_non_null(strstr(s, "    - corpus: \"true\"\n      name: \"yes\"\n"));
    free(s);
    /* YAML line breaks beyond \n (NEL U+0085, LS U+2028, PS U+2029) and C1 controls are escaped, or
     * the reload folds them (a fuzz finding: not a fixed point) */
    s = roundtrip("name: t\nmodel: {path: \"/m\\N\\L\\P\\x9f/x\"}\ndata: {eval: [{corpus: /e}]}\n");
    assert_non_null(strstr(s, "  path: \"/m\\x85\\L\\P\\x9f/x\"\n"));
    free(s);
}

/* doc_sep (issue 14): optional on calib and each eval entry, emitted only when set, quoted. */
static void test_doc_sep(void **state) {
    (void)state;
    char *s = roundtrip("name: t\nmodel: {path: /m}\ndata:\n  calib: {corpus: /d/train.txt, doc_sep: '<|endoftext|>'}\n"
                        "  eval: [{corpus: /d/valid.txt, doc_sep: '<|endoftext|>'}, {corpus: /d/wiki.test.raw}]\n");
    assert_non_null(strstr(s, "    doc_sep: \"<|endoftext|>\"\n  eval:\n"));
    assert_non_null(strstr(s, "      doc_sep: \"<|endoftext|>\"\n    - corpus: /d/wiki.test.raw\n"));
    free(s);
    s = roundtrip(CFG_MIN);
    assert_null(strstr(s, "doc_sep"));
    free(s);
}

static void test_composition(void **state) {
    (void)state;
    rb_config c;
    rb_error e;
    const char *text = "defaults: [models/tiny, quant/w4, quant/w3, methods/random]\n"
                       "name: comp\n"
                       "data: {eval: [{corpus: /e}], calib: {corpus: /c}}\n"
                       "rotation: {method: hadamard}\n"
                       "metrics: [mse]\n";
    assert_int_equal(cfg_load(text, NULL, 0, &c, &e), 0);
    assert_string_equal(c.model.path, "/m/tiny");      /* from a block */
    assert_int_equal(c.quant.w.bits, 3);               /* w3 after w4 */
    assert_int_equal(c.quant.w.algo, RB_WALGO_GPTQ);   /* deep merge keeps w4's other keys */
    assert_int_equal(c.quant.a.bits, 8);
    assert_string_equal(c.rotation.method, "hadamard"); /* the file's own keys win */
    assert_int_equal(c.metrics, RB_METRIC_MSE);        /* lists are replaced, not merged */
    assert_int_equal(c.n_figures, 2);                  /* from w3, untouched */
    rb_config_free(&c);
    /* reversed order: w4 wins; ".yaml" may be written; an empty block is fine */
    const char *text2 = "defaults: [models/tiny.yaml, quant/w3, quant/w4, methods/empty]\nname: x\n"
                        "data: {eval: [{corpus: /e}], calib: {corpus: /c}}\n";
    assert_int_equal(cfg_load(text2, NULL, 0, &c, &e), 0);
    assert_int_equal(c.quant.w.bits, 4);
    assert_int_equal(c.metrics, RB_METRIC_KL);
    rb_config_free(&c);
    /* a preset from a block fills bits; a later explicit key overrides one of them */
    assert_int_equal(cfg_load("defaults: [models/tiny, quant/w4a4]\nname: x\ndata: {eval: [{corpus: /e}]}\n"
                              "quant: {a: {bits: 8}}\n",
                              NULL, 0, &c, &e),
                     0);
    assert_string_equal(c.quant.preset, "W4A4");
    assert_int_equal(c.quant.w.bits, 4);
    assert_int_equal(c.quant.a.bits, 8);
    assert_int_equal(c.quant.kv.bits, 16);
    rb_config_free(&c);
}

static void test_errors(void **state) {
    (void)state;
    struct {
        const char *text, *msg;
    } cases[] = {
        /* malformed YAML, with libyaml's position */
        {"name: x\nmodel: {path: /m\n",
         "exp.yaml:3:1: yaml: did not find expected ',' or '}' (while parsing a flow mapping at 2:8)"},
        {"name: x\n\tmodel: 1\n", "exp.yaml:2:1: yaml: found a tab character that violates indentation (while "
                                  "scanning a plain scalar at 1:7)"},
        {"name: x\n  seed: 1\n", "exp.yaml:2:7: yaml: mapping values are not allowed in this context"},
        {"name: x\nmodel: {path: ${RB_TEST_MODELS}/m}\n",
         "exp.yaml:2:16: yaml: did not find expected ',' or '}' (while parsing a flow mapping at 2:8); quote values "
         "with ${...} inside {...} or [...]"},
        /* unknown keys, with and without a close match */
        {CFG_MIN "quant: {w: {bitz: 4}}\n", "exp.yaml:5:13: quant.w.bitz: unknown key (did you mean 'bits'?)"},
        {CFG_MIN "data2: 1\n", "exp.yaml:5:1: data2: unknown key (did you mean 'data'?)"},
        {CFG_MIN "zzz: 1\n", "exp.yaml:5:1: zzz: unknown key (expected one of: name, seed, model, data, quant, "
                             "rotation, metrics, figures, export, sweep)"},
        {"name: x\nmodel: {path: /m}\ndata:\n  calib: {corpus: c, sampels: 3}\n  eval: [{corpus: /e}]\n",
         "exp.yaml:4:22: data.calib.sampels: unknown key (did you mean 'samples'?)"},
        /* wrong types */
        {CFG_MIN "seed: abc\n", "exp.yaml:5:7: seed: expected an integer, got abc"},
        {CFG_MIN "seed: '5'\n", "exp.yaml:5:7: seed: expected an integer, got \"5\""},
        {CFG_MIN "seed: 1.5\n", "exp.yaml:5:7: seed: expected an integer, got 1.5"},
        {"name: x\nmodel: [a]\n", "exp.yaml:2:8: model: expected a map, got a list"},
        {CFG_MIN "metrics: kl\n", "exp.yaml:5:10: metrics: expected a list, got kl"},
        {CFG_MIN "quant: {w: {damp: x}}\n", "exp.yaml:5:19: quant.w.damp: expected a number in [0, 1], got x"},
        {CFG_MIN "quant: {w: {damp: .inf}}\n",
         "exp.yaml:5:19: quant.w.damp: expected a number in [0, 1], got .inf"},
        {CFG_MIN "quant: {a: {clip: 0}}\n", "exp.yaml:5:19: quant.a.clip: expected a number in (0, 1], got 0"},
        {CFG_MIN "quant: {w: {clip: 1.5}}\n",
         "exp.yaml:5:19: quant.w.clip: expected a number in (0, 1] or search, got 1.5"},
        /* calibration windows required by the method or GPTQ: refused at load (issue 16) */
        {CFG_MIN "rotation: {method: conqur}\n",
         "exp.yaml:5:20: rotation.method: conqur needs calibration windows: add data.calib (corpus, samples, seqlen)"},
        {CFG_MIN "rotation: {method: optrot, options: {plus: on}}\n",
         "exp.yaml:5:20: rotation.method: optrot with plus: on needs calibration windows: add data.calib (corpus, "
         "samples, seqlen)"},
        {CFG_MIN "quant: {w: {bits: 4, algo: gptq}}\n",
         "exp.yaml:5:28: quant.w.algo: gptq needs calibration windows: add data.calib (corpus, samples, seqlen)"},
        /* rotation.cross_head asked of a method that would ignore it */
        {CFG_MIN "rotation: {method: random, cross_head: true}\n",
         "exp.yaml:5:40: rotation.cross_head: method random does not apply QuaRot's cross-head Hadamard (methods "
         "that do: hadamard, spinquant, respinquant, optrot, ruquant)"},
        /* rotation.options against the method's table; raw min/max needs asymmetric ranges */
        {CFG_MIN "rotation: {method: conqur, options: {pases: 2}}\n",
         "exp.yaml:5:38: rotation.options.pases: unknown option of method conqur (did you mean 'passes'?)"},
        {CFG_MIN "rotation: {method: conqur, options: {passes: two}}\n",
         "exp.yaml:5:46: rotation.options.passes: expected an integer, got 'two'"},
        {CFG_MIN "rotation: {method: conqur, options: {init: qr}}\n",
         "exp.yaml:5:44: rotation.options.init: expected one of hadamard|random|identity, got 'qr'"},
        {CFG_MIN "rotation: {method: hadamard, options: {passes: 2}}\n",
         "exp.yaml:5:40: rotation.options.passes: method hadamard takes no options"},
        {CFG_MIN "rotation: {method: conqur, options: [1]}\n",
         "exp.yaml:5:37: rotation.options: expected a map of option: value, got a list"},
        {CFG_MIN "quant: {a: {raw_minmax: true, sym: true}}\n",
         "exp.yaml:5:25: quant.a.raw_minmax: raw min/max ranges are asymmetric: set quant.a.sym: false"},
        /* enums */
        {CFG_MIN "rotation: {method: hadamrd}\n",
         "exp.yaml:5:20: rotation.method: expected one of @METHODS@, got hadamrd (did you mean 'hadamard'?)"},
        {CFG_MIN "quant: {w: {bits: 7}}\n", "exp.yaml:5:19: quant.w.bits: expected one of 2,3,4,5,6,8,16, got 7"},
        {CFG_MIN "quant: {w: {group: token}}\n",
         "exp.yaml:5:20: quant.w.group: expected one of channel, tensor or a group size in [1, 1048576], got token"},
        {CFG_MIN "quant: {preset: W4A4K4}\n",
         "exp.yaml:5:17: quant.preset: expected one of W16A16, W4A16, W8A8, W6A6, W4A8, W4A4, W4A4KV4, W3A3, "
         "W3A3KV3, W8A8KV8, got W4A4K4 (did you mean 'W4A4KV4'?)"},
        {CFG_MIN "metrics: [kurtosis, kl, kurtosis]\n", "exp.yaml:5:25: metrics[2]: kurtosis listed twice"},
        {CFG_MIN "metrics: [mse, msse]\n",
         "exp.yaml:5:16: metrics[1]: expected one of kurtosis, mse, kl, got msse (did you mean 'mse'?)"},
        /* booleans are true/false only */
        {CFG_MIN "rotation: {r3: yes}\n", "exp.yaml:5:16: rotation.r3: expected true or false, got yes"},
        {CFG_MIN "rotation: {emb_center: on}\n", "exp.yaml:5:24: rotation.emb_center: expected true or false, got on"},
        {CFG_MIN "rotation: {r4: 'true'}\n", "exp.yaml:5:16: rotation.r4: expected true or false, got \"true\""},
        /* out-of-range integers */
        {"name: x\nmodel: {path: /m}\ndata:\n  calib: {corpus: c, samples: 0}\n  eval: [{corpus: /e}]\n",
         "exp.yaml:4:31: data.calib.samples: expected an integer >= 1, got 0"},
        {CFG_MIN "seed: -3\n", "exp.yaml:5:7: seed: expected an integer >= 0, got -3"},
        {CFG_MIN "seed: 9223372036854775808\n",
         "exp.yaml:5:7: seed: expected an integer in [0, 9223372036854775807], got 9223372036854775808"},
        {"name: x\nmodel: {path: /m}\ndata:\n  calib: {corpus: c, samples: 2147483648}\n  eval: [{corpus: /e}]\n",
         "exp.yaml:4:31: data.calib.samples: expected an integer in [1, 2147483647], got 2147483648"},
        {"name: x\nmodel: {path: /m}\ndata: {eval: [{corpus: /e, seqlen: 1}]}\n",
         "exp.yaml:3:36: data.eval[0].seqlen: expected an integer in [2, 1048576], got 1"},
        {"name: x\nmodel: {path: /m}\ndata:\n  calib: {corpus: c, samples: 4, batch: 8}\n  eval: [{corpus: /e}]\n",
         "exp.yaml:4:41: data.calib.batch: batch 8 is larger than samples 4"},
        /* missing required keys / values */
        {"name: x\ndata: {eval: [{corpus: /e}]}\n", "exp.yaml:1:1: model: required key is missing"},
        {"name: x\nmodel: {tokenizer: /t}\ndata: {eval: [{corpus: /e}]}\n",
         "exp.yaml:2:8: model.path: required key is missing"},
        {"name:\nmodel: {path: /m}\ndata: {eval: [{corpus: /e}]}\n", "exp.yaml:1:6: name: required value is missing"},
        {"name: x\nmodel: {path: /m}\ndata: {eval: []}\n", "exp.yaml:3:14: data.eval: expected at least one entry"},
        {"name: x\nmodel: {path: /m}\ndata: {eval: [{name: e}]}\n",
         "exp.yaml:3:15: data.eval[0].corpus: required key is missing"},
        {"", "exp.yaml:1:1: name: required key is missing"},
        /* ${ENV} */
        {"name: x\nmodel: {path: '/a/${RB_TEST_UNSET}/b'}\n",
         "exp.yaml:2:19: model.path: environment variable RB_TEST_UNSET is not set"},
        {"name: x\nmodel:\n  path: ${RB_TEST_UNSET}\n",
         "exp.yaml:3:9: model.path: environment variable RB_TEST_UNSET is not set"},
        {"name: x\nmodel:\n  path: /a/${1X}\n",
         "exp.yaml:3:12: model.path: malformed ${...}: expected ${NAME} or ${NAME:-fallback}"},
        {"name: x\nmodel:\n  path: /a/${X\n", "exp.yaml:3:12: model.path: malformed ${...}: expected ${NAME} or "
                                              "${NAME:-fallback}"},
        /* names, ranges, lists */
        {"name: a/b\n", "exp.yaml:1:7: name: expected a name of [A-Za-z0-9._-]+, got a/b"},
        {CFG_MIN "figures: [a, a]\n", "exp.yaml:5:14: figures[1]: a listed twice"},
        {"name: x\nmodel: {path: /m}\ndata: {eval: [{corpus: /e, range: '0.5:0.5'}]}\n",
         "exp.yaml:3:35: data.eval[0].range: expected a:b with fractions 0 <= a < b <= 1, got \"0.5:0.5\""},
        {"name: x\nmodel: {path: /m}\ndata: {eval: [{corpus: /a/e}, {corpus: /b/e}]}\n",
         "exp.yaml:3:31: data.eval[1].name: duplicate evaluation name 'e' (also data.eval[0])"},
        /* YAML features we refuse */
        {"name: &n x\nmodel: {path: *n}\n", "exp.yaml:2:9: model.path: YAML aliases (*name) are not supported; write "
                                            "the value out"},
        {"name: x\nname: y\n", "exp.yaml:2:1: name: duplicate key (first at 1:1)"},
        {"name: !!str x\nseed: !!int 3\n", "exp.yaml:2:7: seed: explicit YAML tags (!!type) are not supported"},
        {"name: x\n---\nname: y\n", "exp.yaml:3:1: yaml: a second YAML document; one per file"},
        {"- a\n- b\n", "exp.yaml:1:1: (root): expected a map of keys, got a list"},
        {"? [a]\n: b\n", "exp.yaml:1:3: (root): mapping keys must be plain names"},
        /* composition */
        {"defaults: [models/tiny, models/tyni]\nname: x\n",
         NULL /* filled below: names the tmp dir */},
        {"defaults: models/tiny\nname: x\n",
         "exp.yaml:1:11: defaults: expected a list of building blocks like [models/stories260K, quant/w4a4]"},
        {"defaults: [../etc/passwd]\n", "exp.yaml:1:12: defaults: expected a building block name like "
                                        "models/stories260K"},
        {"defaults: [methods/bad, models/tiny]\nname: x\ndata: {eval: [{corpus: /e}]}\n",
         NULL /* error inside the block file */},
        {"defaults: [methods/nested]\n", NULL},
    };
    char want[3][5000];
    snprintf(want[0], sizeof want[0],
             "exp.yaml:1:25: defaults: building block %s/models/tyni.yaml not found (did you mean 'models/tiny'?)",
             cfg_dir);
    snprintf(want[1], sizeof want[1],
             "%s/methods/bad.yaml:2:11: rotation.method: expected one of @METHODS@, got hadamrd (did you mean "
             "'hadamard'?)",
             cfg_dir);
    snprintf(want[2], sizeof want[2],
             "%s/methods/nested.yaml:1:1: defaults: a building block cannot have defaults (one level only)", cfg_dir);
    int k = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        cfg_expect_err(cases[i].text, NULL, 0, cases[i].msg ? cases[i].msg : want[k++]);
    /* no configs directory */
    rb_config c;
    rb_error e;
    const char *t = "defaults: [models/tiny]\n";
    assert_int_equal(rb_config_load_string(t, strlen(t), "exp.yaml", NULL, NULL, 0, &c, &e), RB_EINVAL);
    assert_string_equal(e.msg, "exp.yaml:1:12: defaults: no configs directory to find models/tiny in (pass "
                               "--configs DIR)");
    /* a missing file */
    assert_int_equal(rb_config_load("/nonexistent/exp.yaml", cfg_dir, NULL, 0, &c, &e), RB_ENOTFOUND);
    assert_non_null(strstr(e.msg, "/nonexistent/exp.yaml"));
}

static void test_env(void **state) {
    (void)state;
    rb_config c;
    rb_error e;
    setenv("RB_TEST_EMPTY", "", 1);
    const char *t = "name: x\nmodel:\n  path: ${RB_TEST_MODELS}/a$$b/${RB_TEST_UNSET:-fb}/${RB_TEST_EMPTY:-e}\n"
                    "  tokenizer: $HOME/x\ndata: {eval: [{corpus: '${RB_TEST_MODELS}'}]}\n";
    assert_int_equal(cfg_load(t, NULL, 0, &c, &e), 0);
    assert_string_equal(c.model.path, "/models/a$b/fb/e");
    assert_string_equal(c.model.tokenizer, "$HOME/x"); /* only ${...} expands */
    assert_string_equal(c.data.eval[0].name, "models");
    rb_config_free(&c);
    /* literal dollars survive the canonical round trip ($$ re-escaped where expansion would read it) */
    char *s = roundtrip("name: x\nmodel: {path: '/a/$${X}/$$$$/b$'}\ndata: {eval: [{corpus: /e}]}\n");
    assert_non_null(strstr(s, "  path: \"/a/$${X}/$$$/b$\"\n"));
    free(s);
    assert_int_equal(cfg_load("name: x\nmodel: {path: '/a/$${X}/$$$$/b$'}\ndata: {eval: [{corpus: /e}]}\n", NULL, 0,
                              &c, &e),
                     0);
    assert_string_equal(c.model.path, "/a/${X}/$$/b$");
    rb_config_free(&c);
    cfg_expect_err("name: x\nmodel: {path: /m}\ndata: {eval: [{corpus: '${RB_TEST_EMPTY}'}]}\n", NULL, 0,
                   "exp.yaml:3:25: data.eval[0].corpus: environment variable RB_TEST_EMPTY is not set");
    /* name is not a path: no expansion, and '$' is not a name character */
    cfg_expect_err("name: ${RB_TEST_MODELS}\n", NULL, 0,
                   "exp.yaml:1:7: name: expected a name of [A-Za-z0-9._-]+, got ${RB_TEST_MODELS}");
}

static void test_overrides(void **state) {
    (void)state;
    rb_config c;
    rb_error e;
    const char *ov[] = {"quant.w.bits=4",
                        "+model.tokenizer=/t.model",
                        "metrics=[kl, mse]",
                        "data.eval.0.seqlen=1024",
                        "data.eval[0].protocol=llamacpp",
                        "+data.calib.corpus=${RB_TEST_MODELS}/train",
                        "data.calib.samples=16",
                        "~rotation.emb_center",
                        "++rotation.seed=9",
                        "name='over'",
                        "quant.w.group=64",
                        "quant.a.clip=0.5"};
    const char *text = CFG_MIN "rotation: {emb_center: false}\n";
    assert_int_equal(cfg_load(text, ov, sizeof ov / sizeof *ov, &c, &e), 0);
    assert_int_equal(c.quant.w.bits, 4);
    assert_string_equal(c.model.tokenizer, "/t.model");
    assert_int_equal(c.metrics, RB_METRIC_KL | RB_METRIC_MSE);
    assert_int_equal(c.data.eval[0].seqlen, 1024);
    assert_int_equal(c.data.eval[0].protocol, RB_PPL_LLAMACPP);
    assert_int_equal(c.data.has_calib, 1);
    assert_string_equal(c.data.calib.corpus, "/models/train");
    assert_int_equal(c.data.calib.samples, 16);
    assert_int_equal(c.rotation.emb_center, 1); /* removed: back to the default */
    assert_true(c.rotation.has_seed && c.rotation.seed == 9);
    assert_string_equal(c.name, "over");
    assert_int_equal(c.quant.w.group, 64);
    assert_true(c.quant.a.clip == 0.5);
    rb_config_free(&c);
    /* ~ of an optional key; a whole list entry replaced; keys absent from the file with defaults */
    const char *ov2[] = {"~model.tokenizer", "data.eval.0={corpus: /z/q, name: q}", "seed=3", "~data.eval.1"};
    const char *text2 = "name: x\nmodel: {path: /m, tokenizer: /t}\ndata: {eval: [{corpus: /e}, {corpus: /f}]}\n";
    assert_int_equal(cfg_load(text2, ov2, 4, &c, &e), 0);
    assert_null(c.model.tokenizer);
    assert_int_equal(c.data.n_eval, 1);
    assert_string_equal(c.data.eval[0].name, "q");
    assert_true(c.seed == 3);
    rb_config_free(&c);
    /* rotation.options.NAME: set, add, remove (checked against the method when validated) */
    const char *ov4[] = {"rotation.options.passes=2", "+rotation.options.beta=0.5", "~rotation.options.init"};
    assert_int_equal(cfg_load(CFG_MIN_CALIB "rotation: {method: conqur, options: {init: random}}\n", ov4, 3, &c, &e), 0);
    assert_int_equal(c.rotation.n_opts, 2);
    assert_string_equal(c.rotation.opt_names[0], "beta");
    assert_string_equal(c.rotation.opt_values[1], "2");
    rb_config_free(&c);
    const char *ov5[] = {"rotation.method=conqur", "rotation.options.pases=2"};
    assert_int_equal(cfg_load(CFG_MIN, ov5, 2, &c, &e), RB_EINVAL);
    assert_string_equal(e.msg, "cmdline:2:1: rotation.options.pases: unknown option of method conqur (did you mean "
                               "'passes'?)");
    const char *ov6[] = {"rotation.method=conqur", "rotation.options.a.b=2"};
    assert_int_equal(cfg_load(CFG_MIN, ov6, 2, &c, &e), RB_EINVAL);
    assert_non_null(strstr(e.msg, "rotation.options.a: method options are name: value pairs"));
    /* overrides can build a whole config from an empty file */
    const char *ov3[] = {"name=x", "model.path=/m", "data.eval=[{corpus: /e}]"};
    assert_int_equal(cfg_load("", ov3, 3, &c, &e), 0);
    assert_string_equal(c.model.path, "/m");
    rb_config_free(&c);
}

static void test_override_errors(void **state) {
    (void)state;
    struct {
        const char *ov, *msg;
    } cases[] = {
        {"quant.w.bits=7", "cmdline:1:14: quant.w.bits: expected one of 2,3,4,5,6,8,16, got 7"},
        {"quant.w.bitz=4", "cmdline:1:1: quant.w.bitz: unknown key (did you mean 'bits'?)"},
        {"qaunt.w.bits=4", "cmdline:1:1: qaunt: unknown key (did you mean 'quant'?)"},
        {"+model.path=/x", "cmdline:1:2: model.path: is already set (exp.yaml:2:15); use model.path=VALUE to change it"},
        {"~model.path", "cmdline:1:2: model.path: is required and cannot be removed"},
        {"~rotation.seed", "cmdline:1:2: rotation.seed: is not set"},
        {"~rotation.seed=3", "cmdline:1:16: rotation.seed: ~KEY removes a key and takes no value"},
        {"data.calib.samples=3", "cmdline:1:1: data.calib.corpus: required key is missing"},
        {"rotation.r3=yes", "cmdline:1:13: rotation.r3: expected true or false, got yes"},
        {"data.eval.3.seqlen=5", "cmdline:1:1: data.eval[3]: no such entry (the list has 1)"},
        {"data.eval.seqlen=5", "cmdline:1:1: data.eval: is a list; address an entry by index (data.eval.0.seqlen)"},
        {"quant.w.bits.x=1", "cmdline:1:1: quant.w.bits: is a value, not a map"},
        {"quant[0]=1", "cmdline:1:1: quant[0]: is a map, not a list"},
        {"quant..w=1", "cmdline:1:1: quant..w: malformed key path (expected names joined by '.', e.g. quant.w.bits)"},
        {"bits", "cmdline:1:1: bits: expected key.path=value, +key.path=value or ~key.path"},
        {"=3", "cmdline:1:1: =3: empty key"},
        {"rotation.method=[a", "cmdline:1:19: yaml: did not find expected ',' or ']' (while parsing a flow "
                               "sequence at 1:17)"},
        {"metrics=[kl, mse, kl]", "cmdline:1:19: metrics[2]: kl listed twice"},
        {"model.path=${RB_TEST_UNSET}/x", "cmdline:1:12: model.path: environment variable RB_TEST_UNSET is not set"},
        {"sweep.grid.x=1", "cmdline:1:1: sweep.grid: sweep axes are keys with dots; add one with -m key=a,b"},
        {"~data.eval.0", "cmdline:1:2: data.eval[0]: is the only entry; at least one is required"},
        {"+data.eval.0={corpus: x}", "cmdline:1:2: data.eval[0]: is already set; use data.eval.0=VALUE to change it"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *ov[] = {"seed=1", cases[i].ov};
        char msg[1024];
        /* the position names the argument's index (here 2) */
        snprintf(msg, sizeof msg, "cmdline:2%s", strchr(cases[i].msg, ':') + 2);
        char *at = strstr(msg, " at 1:");
        if (at) at[4] = '2';
        cfg_expect_err(CFG_MIN, ov, 2, msg);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_golden), cmocka_unit_test(test_full_roundtrip),
        cmocka_unit_test(test_strings_quoted),  cmocka_unit_test(test_composition),
        cmocka_unit_test(test_method_options),  cmocka_unit_test(test_doc_sep),
        cmocka_unit_test(test_errors),          cmocka_unit_test(test_env),
        cmocka_unit_test(test_overrides),       cmocka_unit_test(test_override_errors),
    };
    return cmocka_run_group_tests(tests, cfg_setup, NULL);
}

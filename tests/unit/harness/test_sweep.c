/* Harness configuration: sweep expansion (grid, zip, grid × zip, -m axes, errors), run id
 * stability, stream seeds, and the repository's configs/ building blocks. */
#include "cfg_test_util.h"

#include "core/rb_file.h"
#include "harness/rb_sha256.h"
#include "quant/rb_qpreset.h"

static void expand(const char *text, const char *const *mr, size_t n_mr, rb_config *c, rb_sweep *s) {
    rb_error e;
    if (cfg_load(text, NULL, 0, c, &e)) {
        fprintf(stderr, "# %s\n", e.msg);
        fail();
    }
    if (rb_sweep_expand(c, mr, n_mr, s, &e)) {
        fprintf(stderr, "# %s\n", e.msg);
        fail();
    }
}

/* Row r's assignments joined by spaces. */
static const char *row_str(const rb_sweep *s, size_t r) {
    static char buf[1024];
    buf[0] = 0;
    for (size_t j = 0; j < s->rows[r].n_overrides; j++)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", j ? " " : "", s->rows[r].overrides[j]);
    return buf;
}

/* Each row replays: the base file + the row's assignments + ~sweep gives the row's canonical bytes. */
static void check_replay(const char *text, const rb_sweep *s) {
    for (size_t r = 0; r < s->n_rows; r++) {
        const char *ov[32];
        size_t n = 0;
        for (size_t j = 0; j < s->rows[r].n_overrides; j++) ov[n++] = s->rows[r].overrides[j];
        ov[n++] = "~sweep";
        rb_config c;
        rb_error e;
        assert_int_equal(cfg_load(text, ov, n, &c, &e), 0);
        assert_string_equal(c.canonical, s->rows[r].cfg.canonical);
        assert_null(strstr(c.canonical, "sweep"));
        rb_config_free(&c);
    }
}

static void test_grid(void **state) {
    (void)state;
    const char *text = CFG_MIN "sweep:\n  grid:\n    quant.w.bits: [4, 3]\n"
                               "    rotation.method: [identity, random, hadamard]\n";
    rb_config c;
    rb_sweep s;
    expand(text, NULL, 0, &c, &s);
    assert_int_equal(c.has_sweep, 1);
    assert_non_null(strstr(c.canonical, "sweep:\n  grid:\n    quant.w.bits: [4, 3]\n"
                                        "    rotation.method: [identity, random, hadamard]\n"));
    static const char *const want[] = {
        "quant.w.bits=4 rotation.method=identity", "quant.w.bits=4 rotation.method=random",
        "quant.w.bits=4 rotation.method=hadamard", "quant.w.bits=3 rotation.method=identity",
        "quant.w.bits=3 rotation.method=random",   "quant.w.bits=3 rotation.method=hadamard",
    };
    assert_int_equal(s.n_rows, 6);
    for (size_t r = 0; r < 6; r++) {
        assert_string_equal(row_str(&s, r), want[r]);
        assert_int_equal(s.rows[r].cfg.quant.w.bits, r < 3 ? 4 : 3);
        static const char *const methods[] = {"identity", "random", "hadamard"};
        assert_string_equal(s.rows[r].cfg.rotation.method, methods[r % 3]);
        assert_int_equal(s.rows[r].cfg.has_sweep, 0);
    }
    check_replay(text, &s);
    /* stable: a second expansion gives the same bytes */
    rb_sweep s2;
    rb_error e;
    assert_int_equal(rb_sweep_expand(&c, NULL, 0, &s2, &e), 0);
    for (size_t r = 0; r < 6; r++) assert_string_equal(s.rows[r].cfg.canonical, s2.rows[r].cfg.canonical);
    rb_sweep_free(&s2);
    rb_sweep_free(&s);
    rb_sweep_free(&s); /* zeroed: harmless */
    rb_config_free(&c);
}

static void test_zip_and_product(void **state) {
    (void)state;
    const char *zip = CFG_MIN "sweep:\n  zip: {quant.w.bits: [4, 3, 8], quant.a.bits: [4, 3, 8], seed: [1, 2, 3]}\n";
    rb_config c;
    rb_sweep s;
    expand(zip, NULL, 0, &c, &s);
    assert_int_equal(s.n_rows, 3);
    assert_string_equal(row_str(&s, 1), "quant.w.bits=3 quant.a.bits=3 seed=2");
    assert_int_equal(s.rows[2].cfg.quant.a.bits, 8);
    assert_true(s.rows[2].cfg.seed == 3);
    check_replay(zip, &s);
    rb_sweep_free(&s);
    rb_config_free(&c);

    /* grid × zip (zip fastest); values of any type: lists, strings needing quotes, optional keys */
    const char *both = CFG_MIN "sweep:\n"
                               "  grid:\n    rotation.method: [hadamard, random]\n"
                               "    metrics: [[kl], [mse, kurtosis]]\n"
                               "  zip:\n    quant.w.bits: [4, 3]\n    rotation.seed: [5, 6]\n";
    expand(both, NULL, 0, &c, &s);
    assert_int_equal(s.n_rows, 8);
    assert_string_equal(row_str(&s, 0), "rotation.method=hadamard metrics=[kl] quant.w.bits=4 rotation.seed=5");
    assert_string_equal(row_str(&s, 1), "rotation.method=hadamard metrics=[kl] quant.w.bits=3 rotation.seed=6");
    assert_string_equal(row_str(&s, 3),
                        "rotation.method=hadamard metrics=[mse, kurtosis] quant.w.bits=3 rotation.seed=6");
    assert_string_equal(row_str(&s, 7), "rotation.method=random metrics=[mse, kurtosis] quant.w.bits=3 rotation.seed=6");
    assert_true(s.rows[7].cfg.rotation.has_seed && s.rows[7].cfg.rotation.seed == 6);
    check_replay(both, &s);
    rb_sweep_free(&s);
    rb_config_free(&c);

    /* a config without a sweep is one row with no assignments */
    expand(CFG_MIN, NULL, 0, &c, &s);
    assert_int_equal(s.n_rows, 1);
    assert_int_equal(s.rows[0].n_overrides, 0);
    assert_string_equal(s.rows[0].cfg.canonical, c.canonical);
    rb_sweep_free(&s);
    rb_config_free(&c);
}

static void test_multirun(void **state) {
    (void)state;
    const char *text = CFG_MIN "sweep:\n  grid: {quant.w.bits: [4, 3]}\n  zip: {quant.a.bits: [8, 4]}\n";
    const char *mr[] = {"rotation.method=random,hadamard", "quant.w.bits=2,3,4", "model.path=/a,'/b c'"};
    rb_config c;
    rb_sweep s;
    expand(text, mr, 3, &c, &s);
    /* w.bits replaced in place (first axis), method and path appended, zip last */
    assert_int_equal(s.n_rows, 3 * 2 * 2 * 2);
    assert_string_equal(row_str(&s, 0), "quant.w.bits=2 rotation.method=random model.path=/a quant.a.bits=8");
    assert_string_equal(row_str(&s, 3),
                        "quant.w.bits=2 rotation.method=random model.path=\"/b c\" quant.a.bits=4");
    assert_string_equal(row_str(&s, 23),
                        "quant.w.bits=4 rotation.method=hadamard model.path=\"/b c\" quant.a.bits=4");
    assert_string_equal(s.rows[23].cfg.model.path, "/b c");
    rb_sweep_free(&s);
    rb_config_free(&c);
    /* -m on a config without a sweep */
    const char *mr2[] = {"data.eval.0.seqlen=512, 1024"};
    expand(CFG_MIN, mr2, 1, &c, &s);
    assert_int_equal(s.n_rows, 2);
    assert_string_equal(row_str(&s, 1), "data.eval.0.seqlen=1024");
    assert_int_equal(s.rows[1].cfg.data.eval[0].seqlen, 1024);
    rb_sweep_free(&s);
    rb_config_free(&c);
}

static void sweep_err(const char *text, const char *const *mr, size_t n, const char *msg) {
    rb_config c;
    rb_sweep s;
    rb_error e;
    msg = cfg_subst(msg);
    int rc = cfg_load(text, NULL, 0, &c, &e);
    if (!rc) {
        rc = rb_sweep_expand(&c, mr, n, &s, &e);
        assert_int_equal(s.n_rows, 0);
        assert_null(s.rows);
        rb_config_free(&c);
    }
    if (rc != RB_EINVAL || strcmp(e.msg, msg)) {
        fprintf(stderr, "# want: %s\n# got (%d): %s\n", msg, rc, rc ? e.msg : "(ok)");
        fail();
    }
}

static void test_sweep_errors(void **state) {
    (void)state;
    sweep_err(CFG_MIN "sweep:\n  grid: {quant.w.bits: [4, 3]}\n  zip: {quant.w.bits: [4, 3]}\n", NULL, 0,
              "exp.yaml:7:9: sweep.zip.quant.w.bits: also in sweep.grid (exp.yaml:6:10); an axis is in one of them");
    sweep_err(CFG_MIN "sweep:\n  zip:\n    quant.w.bits: [4, 3]\n    quant.a.bits: [4, 3, 2]\n", NULL, 0,
              "exp.yaml:8:19: sweep.zip.quant.a.bits: has 3 values but sweep.zip.quant.w.bits (7:19) has 2; zip "
              "lists must have equal length");
    sweep_err(CFG_MIN "sweep:\n  grid: {quant.w.bitz: [4, 3]}\n", NULL, 0,
              "exp.yaml:6:10: quant.w.bitz: unknown key (did you mean 'bits'?)");
    sweep_err(CFG_MIN "sweep:\n  grid: {quant.w.bits: []}\n", NULL, 0,
              "exp.yaml:6:24: sweep.grid.quant.w.bits: expected a non-empty list of values, e.g. [4, 3]");
    sweep_err(CFG_MIN "sweep:\n  grid: {quant.w.bits: 4}\n", NULL, 0,
              "exp.yaml:6:24: sweep.grid.quant.w.bits: expected a non-empty list of values, e.g. [4, 3]");
    sweep_err(CFG_MIN "sweep:\n  grid: [a]\n", NULL, 0, "exp.yaml:6:9: sweep.grid: expected a map of key.path: [values]");
    sweep_err(CFG_MIN "sweep:\n  grdi: {}\n", NULL, 0, "exp.yaml:6:3: sweep.grdi: unknown key (did you mean 'grid'?)");
    sweep_err(CFG_MIN "sweep:\n  grid: {sweep.zip: [a]}\n", NULL, 0,
              "exp.yaml:6:10: sweep.grid.sweep.zip: a sweep cannot sweep its own section");
    /* a bad value is reported at the value, with the key it sets */
    sweep_err(CFG_MIN "sweep:\n  grid: {quant.w.bits: [4, 7]}\n", NULL, 0,
              "exp.yaml:6:28: quant.w.bits: expected one of 2,3,4,5,6,8,16, got 7");
    sweep_err(CFG_MIN "sweep:\n  zip: {rotation.method: [random, hadamrd]}\n", NULL, 0,
              "exp.yaml:6:35: rotation.method: expected one of @METHODS@, got hadamrd (did you mean 'hadamard'?)");
    /* -m errors */
    const char *m1[] = {"seed=1", "quant.w.bits=4,7"};
    sweep_err(CFG_MIN, m1, 2, "multirun:2:16: quant.w.bits: expected one of 2,3,4,5,6,8,16, got 7");
    const char *m2[] = {"rotation.methd=a,b"};
    sweep_err(CFG_MIN, m2, 1, "multirun:1:1: rotation.methd: unknown key (did you mean 'method'?)");
    const char *m3[] = {"quant.a.bits=4,8"};
    sweep_err(CFG_MIN "sweep: {zip: {quant.a.bits: [4, 8]}}\n", m3, 1,
              "multirun:1:1: quant.a.bits: also in sweep.zip (exp.yaml:5:15)");
    const char *m4[] = {"seed"};
    sweep_err(CFG_MIN, m4, 1, "multirun:1:1: seed: expected key.path=a,b,c");
    const char *m5[] = {"seed="};
    sweep_err(CFG_MIN, m5, 1, "multirun:1:6: seed: expected a non-empty list a,b,c");
    const char *m6[] = {"seed=1,[2"};
    sweep_err(CFG_MIN, m6, 1, "multirun:1:11: yaml: did not find expected ',' or ']' (while parsing a flow sequence "
                              "at 1:5)");
    /* too many rows */
    const char *m7[] = {"seed=0,1,2,3,4,5,6,7,8,9", "rotation.seed=0,1,2,3,4,5,6,7,8,9",
                        "data.eval.0.max_windows=0,1,2,3,4,5,6,7,8,9", "data.eval.0.seqlen=2,3,4,5,6,7,8,9,10,11",
                        "quant.w.damp=0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9", "quant.a.bits=2,3"};
    sweep_err(CFG_MIN, m7, 6, "multirun:6:13: quant.a.bits: the sweep would have more than 100000 rows");
}

static void test_run_id(void **state) {
    (void)state;
    /* same config, different key order, style and whitespace ⇒ same canonical bytes and id */
    const char *a = "name: r\nseed: 3\nmodel: {path: /m}\ndata: {eval: [{corpus: /e, seqlen: 128}]}\n"
                    "quant: {w: {bits: 4}, a: {bits: 8}}\n";
    const char *b = "# a comment\nquant:\n  a:\n    bits:   8\n  w:\n      bits: 4\n"
                    "data:\n  eval:\n  - seqlen: 128\n    corpus: \"/e\"\n"
                    "model:\n    path: /m\nseed: 3\nname: 'r'\nrotation: {method: identity, emb_center: true}\n";
    rb_config ca, cb, cc;
    rb_error e;
    assert_int_equal(cfg_load(a, NULL, 0, &ca, &e), 0);
    assert_int_equal(cfg_load(b, NULL, 0, &cb, &e), 0);
    assert_string_equal(ca.canonical, cb.canonical);
    char ia[RB_RUN_ID_LEN + 1], ib[RB_RUN_ID_LEN + 1], ic[RB_RUN_ID_LEN + 1];
    rb_run_id(ca.canonical, NULL, 0, ia);
    rb_run_id(cb.canonical, NULL, 0, ib);
    assert_string_equal(ia, ib);
    assert_int_equal(strlen(ia), 64);
    char h[RB_SHA256_HEX_LEN + 1];
    rb_sha256_hex(ca.canonical, strlen(ca.canonical), h);
    assert_string_equal(ia, h); /* no inputs: sha256 of the canonical YAML */
    /* input hashes change the id, in order */
    const char *x[] = {"aa", "bb"}, *y[] = {"bb", "aa"};
    rb_run_id(ca.canonical, x, 2, ib);
    rb_run_id(ca.canonical, y, 2, ic);
    assert_string_not_equal(ia, ib);
    assert_string_not_equal(ib, ic);
    /* any change of value changes it */
    const char *ov[] = {"seed=4"};
    assert_int_equal(cfg_load(a, ov, 1, &cc, &e), 0);
    rb_run_id(cc.canonical, NULL, 0, ic);
    assert_string_not_equal(ia, ic);
    rb_config_free(&ca);
    rb_config_free(&cb);
    rb_config_free(&cc);
}

static void test_stream_seeds(void **state) {
    (void)state;
    rb_config c;
    rb_error e;
    assert_int_equal(cfg_load(CFG_MIN "seed: 11\n", NULL, 0, &c, &e), 0);
    assert_true(rb_config_stream_seed(&c, RB_STREAM_CALIB_ORDER) == 11);
    assert_true(rb_config_stream_seed(&c, "rotation.r1") == 11);
    rb_config_free(&c);
    assert_int_equal(cfg_load(CFG_MIN "seed: 11\nrotation: {seed: 5}\n", NULL, 0, &c, &e), 0);
    assert_true(rb_config_stream_seed(&c, RB_STREAM_CALIB_SAMPLE) == 11);
    assert_true(rb_config_stream_seed(&c, RB_STREAM_EVAL_SUBSAMPLE) == 11);
    assert_true(rb_config_stream_seed(&c, RB_STREAM_ROTATION) == 5);
    assert_true(rb_config_stream_seed(&c, "rotation.r2.3") == 5);
    rb_config_free(&c);
}

/* The repository's configs/: every building block composes into a valid config. */
static void test_repo_configs(void **state) {
    (void)state;
    const char *root = getenv("RB_SOURCE_ROOT");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/configs", root ? root : ".");
    if (!rb_path_is_dir(dir)) {
        fprintf(stderr, "#\n# SKIPPED: %s not found (set RB_SOURCE_ROOT)\n#\n", dir);
        skip();
    }
    setenv("RB_MODELS", "/models", 1);
    setenv("RB_SHARED_DATA", "/shared", 1);
    static const struct {
        const char *block, *path;
    } models[] = {{"models/stories260K", "/shared/stories260K/hf"},
                  {"models/llama-2-7b", "/models/Llama-2-7b-hf"},
                  {"models/llama-3-8b", "/models/Meta-Llama-3-8B"}};
    static const struct {
        const char *block, *preset;
        int w, a, kv;
    } quants[] = {{"quant/w16a16", "W16A16", 16, 16, 16}, {"quant/w4a16", "W4A16", 4, 16, 16},
                  {"quant/w8a8", "W8A8", 8, 8, 16},       {"quant/w6a6", "W6A6", 6, 6, 16},
                  {"quant/w4a8", "W4A8", 4, 8, 16},       {"quant/w4a4", "W4A4", 4, 4, 16},
                  {"quant/w4a4kv4", "W4A4KV4", 4, 4, 4},  {"quant/w3a3", "W3A3", 3, 3, 16},
                  {"quant/w3a3kv3", "W3A3KV3", 3, 3, 3}};
    static const char *const methods[] = {"identity", "random", "hadamard"};
    for (size_t m = 0; m < 3; m++)
        for (size_t q = 0; q < 9; q++)
            for (size_t r = 0; r < 3; r++) {
                char text[512];
                snprintf(text, sizeof text, "defaults: [%s, %s, methods/%s]\nname: x\ndata: {eval: [{corpus: /e}]}\n",
                         models[m].block, quants[q].block, methods[r]);
                rb_config c;
                rb_error e;
                if (rb_config_load_string(text, strlen(text), "exp.yaml", dir, NULL, 0, &c, &e)) {
                    fprintf(stderr, "# %s\n", e.msg);
                    fail();
                }
                assert_string_equal(c.model.path, models[m].path);
                assert_string_equal(c.quant.preset, quants[q].preset);
                assert_int_equal(c.quant.w.bits, quants[q].w);
                assert_int_equal(c.quant.a.bits, quants[q].a);
                assert_int_equal(c.quant.kv.bits, quants[q].kv);
                assert_string_equal(c.rotation.method, methods[r]);
                rb_config_free(&c);
            }
    unsetenv("RB_SHARED_DATA");
    const char *t = "defaults: [models/stories260K]\nname: x\ndata: {eval: [{corpus: /e}]}\n";
    rb_config c;
    rb_error e;
    assert_int_equal(rb_config_load_string(t, strlen(t), "exp.yaml", dir, NULL, 0, &c, &e), 0);
    assert_string_equal(c.model.path, "../shared/data/stories260K/hf");
    rb_config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grid),        cmocka_unit_test(test_zip_and_product), cmocka_unit_test(test_multirun),
        cmocka_unit_test(test_sweep_errors), cmocka_unit_test(test_run_id),         cmocka_unit_test(test_stream_seeds),
        cmocka_unit_test(test_repo_configs),
    };
    return cmocka_run_group_tests(tests, cfg_setup, NULL);
}

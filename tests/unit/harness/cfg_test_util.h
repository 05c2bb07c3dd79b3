/* Helpers shared by the harness configuration tests: a temporary configs directory and loaders. */
#ifndef CFG_TEST_UTIL_H
#define CFG_TEST_UTIL_H

#include "rb_test.h"

#include <unistd.h>

#include "harness/rb_config.h"
#include "methods/rb_method.h"

static char cfg_dir[4200]; /* <tmp>/configs, made by cfg_setup */

static void cfg_write(const char *rel, const char *text) {
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", cfg_dir, rel);
    char *slash = strrchr(path, '/');
    *slash = 0;
    mkdir(path, 0755);
    *slash = '/';
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int cfg_setup(void **state) {
    (void)state;
    char tmp[4096];
    rb_test_tmpdir(tmp, sizeof tmp);
    snprintf(cfg_dir, sizeof cfg_dir, "%s/configs", tmp);
    mkdir(cfg_dir, 0755);
    cfg_write("models/tiny.yaml", "model:\n  path: /m/tiny\n");
    cfg_write("quant/w4a4.yaml", "quant:\n  preset: W4A4\n");
    cfg_write("quant/w4.yaml", "quant:\n  w: {bits: 4, algo: gptq}\n  a: {bits: 8}\n");
    cfg_write("quant/w3.yaml", "quant:\n  w: {bits: 3}\nmetrics: [kl]\nfigures: [f1, f2]\n");
    cfg_write("methods/random.yaml", "rotation:\n  method: random\n");
    cfg_write("methods/nested.yaml", "defaults: [models/tiny]\nrotation: {method: random}\n");
    cfg_write("methods/bad.yaml", "rotation:\n  method: hadamrd\n");
    cfg_write("methods/empty.yaml", "");
    setenv("RB_TEST_MODELS", "/models", 1);
    unsetenv("RB_TEST_UNSET");
    return 0;
}

/* Loads `text` as exp.yaml with the test configs dir. */
static int cfg_load(const char *text, const char *const *ov, size_t n, rb_config *c, rb_error *e) {
    rb_error_clear(e);
    return rb_config_load_string(text, strlen(text), "exp.yaml", cfg_dir, ov, n, c, e);
}

/* msg with "@METHODS@" replaced by the registered method names ("identity, random, ..."), so that
 * expected messages do not change when a method is registered. Static buffer (one at a time). */
static inline const char *cfg_subst(const char *msg) {
    static char out[8192];
    char names[2048] = "";
    size_t k = 0;
    for (const rb_method *const *m = rb_methods(); *m; m++)
        k += (size_t)snprintf(names + k, k < sizeof names ? sizeof names - k : 0, "%s%s", k ? ", " : "", (*m)->name);
    const char *at = strstr(msg, "@METHODS@");
    if (!at) snprintf(out, sizeof out, "%s", msg);
    else snprintf(out, sizeof out, "%.*s%s%s", (int)(at - msg), msg, names, at + 9);
    return out;
}

/* Asserts that loading fails with RB_EINVAL and exactly `msg` (after cfg_subst). */
static inline void cfg_expect_err(const char *text, const char *const *ov, size_t n, const char *msg) {
    rb_config c;
    rb_error e;
    msg = cfg_subst(msg);
    int rc = cfg_load(text, ov, n, &c, &e);
    if (rc != RB_EINVAL || strcmp(e.msg, msg)) {
        fprintf(stderr, "# input:\n%s# want: %s\n# got (%d): %s\n", text, msg, rc, rc ? e.msg : "(loaded)");
        if (!rc) rb_config_free(&c);
        fail();
    }
    /* a failed load leaves nothing to free */
    assert_null(c.canonical);
    assert_null(c.priv);
}

/* Minimal valid body (append keys to it). */
#define CFG_MIN "name: t\nmodel: {path: /m}\ndata:\n  eval: [{corpus: /d/wiki.test.raw}]\n"
/* ... with calibration windows (methods and GPTQ that need them are refused without) */
#define CFG_MIN_CALIB CFG_MIN "  calib: {corpus: /d/train.txt}\n"

#endif

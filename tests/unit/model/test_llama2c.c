/* llama2.c legacy .bin: layout of every section, the q/k RoPE permutation, the untied classifier,
 * and rejection of bad headers and sizes. Files are written float by float in a temp dir. */
#include "rb_test.h"

#include <unistd.h>

#include "model/rb_model.h"

/* dim 8, hidden 12, 2 layers, 2 heads (hd 4), 1 kv head, vocab 5, seq_len 3. */
enum { D = 8, HID = 12, L = 2, NH = 2, NKV = 1, HD = 4, V = 5, SEQ = 3 };
#define KVD (NKV * HD)
/* Float counts of each section, in file order. */
static const size_t SECTIONS[] = {
    V * D,       /* token_embedding_table */
    L *D,        /* rms_att */
    L *D *D,     /* wq */
    L *KVD *D,   /* wk */
    L *KVD *D,   /* wv */
    L *D *D,     /* wo */
    L *D,        /* rms_ffn */
    L *HID *D,   /* w1 */
    L *D *HID,   /* w2 */
    L *HID *D,   /* w3 */
    D,           /* rms_final */
    SEQ *HD / 2, /* freq_cis_real */
    SEQ *HD / 2, /* freq_cis_imag */
    V *D,        /* wcls (untied only) */
};
enum { S_EMB, S_RMS_ATT, S_WQ, S_WK, S_WV, S_WO, S_RMS_FFN, S_W1, S_W2, S_W3, S_RMS_FINAL, S_FR, S_FI, S_WCLS, S_N };

static char dir[256], path[400];

/* Float index (in the weight area) where section s starts. */
static size_t section_start(int s) {
    size_t o = 0;
    for (int i = 0; i < s; i++) o += SECTIONS[i];
    return o;
}

/* Writes the model with header `h` (7 ints); float k of the weights is k + 0.5; `extra` floats are
 * added (negative: removed) at the end. */
static void write_bin(const int32_t h[7], int untied, long extra) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(h, 4, 7, f);
    long n = (long)section_start(untied ? S_N : S_WCLS) + extra;
    for (long k = 0; k < n; k++) {
        float v = (float)k + 0.5f;
        fwrite(&v, 4, 1, f);
    }
    fclose(f);
}

static int setup(void **state) {
    (void)state;
    rb_test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/m.bin", dir);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    unlink(path);
    rmdir(dir);
    return 0;
}

static void test_layout(void **state) {
    (void)state;
    const int32_t h[7] = {D, HID, L, NH, NKV, -V, SEQ};
    write_bin(h, 1, 0);
    rb_model *m;
    rb_error err = {0};
    if (rb_model_open(path, &m, &err)) fail_msg("%s", err.msg);
    const rb_llama_config *c = rb_model_config(m);
    assert_int_equal(c->tied, 0);
    assert_int_equal(c->vocab_size, V);
    assert_int_equal(c->head_dim, HD);
    assert_int_equal(c->max_seq_len, SEQ);
    assert_string_equal(rb_model_dir(m), dir);
    assert_int_equal(rb_model_tensor(m, -1, NULL), 14);
    assert_int_equal(rb_model_param_count(m), section_start(S_N) - 2 * SEQ * HD / 2);

    rb_layer_weights w;
    assert_int_equal(rb_layer_weights_init(&w, c, &err), 0);
    static const int perm[HD] = {0, 2, 1, 3};
    for (int l = 0; l < L; l++) {
        assert_int_equal(rb_model_load_layer(m, l, &w, &err), 0);
        /* Unpermuted sections: element i of layer l is start + l*size + i. */
        struct {
            const float *buf;
            int sec;
            size_t n;
        } plain[] = {
            {w.rms_att, S_RMS_ATT, D}, {w.wv, S_WV, KVD * D},     {w.wo, S_WO, D * D},     {w.rms_ffn, S_RMS_FFN, D},
            {w.w_gate, S_W1, HID * D}, {w.w_down, S_W2, D * HID}, {w.w_up, S_W3, HID * D},
        };
        for (size_t k = 0; k < sizeof plain / sizeof plain[0]; k++)
            for (size_t i = 0; i < plain[k].n; i++)
                assert_true(plain[k].buf[i] == (float)(section_start(plain[k].sec) + l * plain[k].n + i) + 0.5f);
        /* q and k: HF row h*HD + j is stored row h*HD + perm[j]. */
        for (int hh = 0; hh < NH; hh++)
            for (int j = 0; j < HD; j++)
                for (int col = 0; col < D; col++) {
                    size_t src = section_start(S_WQ) + (size_t)l * D * D + (size_t)(hh * HD + perm[j]) * D + col;
                    assert_true(w.wq[(hh * HD + j) * D + col] == (float)src + 0.5f);
                }
        for (int j = 0; j < HD; j++)
            for (int col = 0; col < D; col++) {
                size_t src = section_start(S_WK) + (size_t)l * KVD * D + (size_t)perm[j] * D + col;
                assert_true(w.wk[j * D + col] == (float)src + 0.5f);
            }
    }
    rb_layer_weights_free(&w);
    float e[V * D], lm[V * D], nrm[D];
    assert_int_equal(rb_model_load_embedding(m, e, &err), 0);
    assert_int_equal(rb_model_load_lm_head(m, lm, &err), 0);
    assert_int_equal(rb_model_load_final_norm(m, nrm, &err), 0);
    for (int i = 0; i < V * D; i++) {
        assert_true(e[i] == (float)i + 0.5f);
        assert_true(lm[i] == (float)(section_start(S_WCLS) + i) + 0.5f);
    }
    for (int i = 0; i < D; i++) assert_true(nrm[i] == (float)(section_start(S_RMS_FINAL) + i) + 0.5f);
    rb_model_close(m);

    /* Tied (positive vocab): no wcls, lm_head is the embedding. */
    const int32_t ht[7] = {D, HID, L, NH, NKV, V, SEQ};
    write_bin(ht, 0, 0);
    assert_int_equal(rb_model_open(path, &m, &err), 0);
    assert_int_equal(rb_model_config(m)->tied, 1);
    assert_int_equal(rb_model_load_lm_head(m, lm, &err), 0);
    assert_memory_equal(lm, e, sizeof e);
    rb_model_close(m);
}

static void expect_fail(int code, const char *what) {
    rb_model *m = (rb_model *)1;
    rb_error err = {0};
    int rc = rb_model_open(path, &m, &err);
    if (rc != code) fail_msg("want %d, got %d: %s", code, rc, err.msg);
    assert_null(m);
    if (getenv("RB_TEST_VERBOSE")) fprintf(stderr, "# %s\n", err.msg);
    if (!strstr(err.msg, path) || !strstr(err.msg, what)) fail_msg("message lacks path or '%s': %s", what, err.msg);
}

static void test_bad_files(void **state) {
    (void)state;
    const int32_t h[7] = {D, HID, L, NH, NKV, -V, SEQ};
    write_bin(h, 1, -1);
    expect_fail(RB_EFORMAT, "(truncated)");
    write_bin(h, 0, 0); /* says untied but the classifier is missing */
    expect_fail(RB_EFORMAT, "(truncated)");
    write_bin(h, 1, 3);
    expect_fail(RB_EFORMAT, "(trailing bytes)");
    const int32_t zero_dim[7] = {0, HID, L, NH, NKV, V, SEQ};
    write_bin(zero_dim, 0, 0);
    expect_fail(RB_EFORMAT, "header field dim = 0");
    const int32_t bad_kv[7] = {D, HID, L, NH, 3, V, SEQ};
    write_bin(bad_kv, 0, 0);
    expect_fail(RB_EFORMAT, "n_kv_heads = 3");
    const int32_t bad_heads[7] = {D, HID, L, 3, 1, V, SEQ};
    write_bin(bad_heads, 0, 0);
    expect_fail(RB_EFORMAT, "n_heads = 3");
    const int32_t huge[7] = {1 << 30, 1 << 30, 1 << 30, 1 << 20, 1, V, SEQ};
    write_bin(huge, 0, 0);
    expect_fail(RB_EFORMAT, "implies");
    const int32_t big_head[7] = {1 << 14, HID, L, 2, 1, V, SEQ}; /* refused before any buffer is sized by it */
    write_bin(big_head, 0, 0);
    expect_fail(RB_EUNSUPPORTED, "head size 8192, above the supported 2048");
    const int32_t magic[7] = {0x616b3432, 1, 0, 0, 0, 0, 0};
    write_bin(magic, 0, 0);
    expect_fail(RB_EUNSUPPORTED, "version 1");
    FILE *f = fopen(path, "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    expect_fail(RB_EFORMAT, "too short");
}

static void test_stories_truncated(void **state) {
    (void)state;
    RB_REQUIRE_DATA(bin, "stories260K/stories260K.bin");
    FILE *in = fopen(bin, "rb"), *out = fopen(path, "wb");
    assert_non_null(in);
    char buf[4096];
    size_t n, total = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0 && total < 500000) {
        fwrite(buf, 1, n, out);
        total += n;
    }
    fclose(in);
    fclose(out);
    expect_fail(RB_EFORMAT, "implies 1056540 (truncated)");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stories_truncated, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

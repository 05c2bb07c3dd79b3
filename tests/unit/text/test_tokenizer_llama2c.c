/* llama2.c tokenizer.bin: agreement with the SentencePiece models it was exported from, the
 * verified WikiText-2 counts, and corrupt input. */
#include "tok_test_util.h"

#include "pipeline/rb_pipeline.h"

static void test_bin_vectors(void **state) {
    (void)state;
    RB_REQUIRE_DATA(bin, "llama2/tokenizer.bin");
    RB_REQUIRE_DATA(inp, "tokenizer-vectors/ggml-vocab-llama-spm.gguf.inp");
    RB_REQUIRE_DATA(out, "tokenizer-vectors/ggml-vocab-llama-spm.gguf.out");
    rb_tokenizer *t = tok_load_ok(bin);
    assert_int_equal(rb_tokenizer_kind(t), RB_TOK_LLAMA2C);
    assert_int_equal(rb_tokenizer_vocab_size(t), 32000);
    assert_int_equal(rb_tokenizer_bos(t), 1);
    assert_int_equal(rb_tokenizer_eos(t), 2);
    static tok_vectors v;
    tok_vectors_load(&v, inp, out);
    assert_int_equal(v.count, 46);
    /* run.c's encode() equals sentencepiece on all of them (it differs only on a literal U+2581
     * in the text, which run.c byte-encodes; none of the vectors has one). */
    assert_int_equal(tok_check_vectors(t, &v), 0);
    tok_vectors_free(&v);
    rb_tokenizer_free(t);
}

static void expect_same_ids(const rb_tokenizer *a, const rb_tokenizer *b, const char *path, int bos,
                            size_t want) {
    size_t na, nb;
    int32_t *ia = tok_encode_file(a, path, bos, &na), *ib = tok_encode_file(b, path, bos, &nb);
    assert_int_equal(na, want);
    assert_int_equal(nb, want);
    assert_memory_equal(ia, ib, na * sizeof *ia);
    free(ia);
    free(ib);
}

static void test_bin_wikitext_llama2(void **state) {
    (void)state;
    RB_REQUIRE_DATA(bin, "llama2/tokenizer.bin");
    RB_REQUIRE_DATA(model, "llama2/tokenizer.model");
    RB_REQUIRE_DATA(raw, "wikitext-2/wiki.test.raw");
    rb_tokenizer *a = tok_load_ok(bin), *b = tok_load_ok(model);
    expect_same_ids(a, b, raw, 0, 335687);
    rb_tokenizer_free(a);
    rb_tokenizer_free(b);
}

static void test_bin_wikitext_tok512(void **state) {
    (void)state;
    RB_REQUIRE_DATA(bin, "stories260K/tok512.bin");
    RB_REQUIRE_DATA(model, "stories260K/tok512.reconstructed.model");
    RB_REQUIRE_DATA(raw, "wikitext-2/wiki.test.raw");
    rb_tokenizer *a = tok_load_ok(bin), *b = tok_load_ok(model);
    assert_int_equal(rb_tokenizer_vocab_size(a), 512);
    expect_same_ids(a, b, raw, 1, 809290);
    rb_tokenizer_free(a);
    rb_tokenizer_free(b);
}

static void test_bin_pieces(void **state) {
    (void)state;
    RB_REQUIRE_DATA(bin, "stories260K/tok512.bin");
    rb_tokenizer *t = tok_load_ok(bin);
    char buf[16];
    size_t len;
    const char *p = rb_tokenizer_piece(t, 1, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(p, "\n<s>\n", 5);
    assert_int_equal(rb_tokenizer_decode_piece(t, 3 + 'A', buf, sizeof buf), 1); /* <0x41> */
    assert_int_equal(buf[0], 'A');
    assert_int_equal(rb_tokenizer_decode_piece(t, 259, buf, sizeof buf), 2); /* " t" */
    assert_memory_equal(buf, " t", 2);
    /* Empty text: no dummy prefix, only the requested BOS. */
    rb_error err = {0};
    int32_t *ids;
    size_t n;
    assert_int_equal(rb_tokenizer_encode(t, "", 0, 1, &ids, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 1);
    free(ids);
    assert_int_equal(rb_tokenizer_encode(t, "", 0, 0, &ids, &n, &err), 0);
    assert_int_equal(n, 0);
    free(ids);
    rb_tokenizer_free(t);
}

static void test_bin_corrupt(void **state) {
    (void)state;
    RB_REQUIRE_DATA(bin, "stories260K/tok512.bin");
    size_t len;
    char *data = tok_read(bin, &len);
    char dir[512], path[600];
    rb_test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/tok.bin", dir);
    /* Header only, or a cut inside a record's header or bytes. A cut exactly between records is
     * a valid, shorter vocabulary, so these cuts avoid record boundaries. */
    size_t cuts[] = {0, 3, 4 + 4, 4 + 8 + 2, 4 + 8 + 5 + 3, len / 2 + 1, len - 1};
    tok_write(path, data, 4);
    tok_expect_load_error(path, RB_EFORMAT);
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        tok_write(path, data, cuts[i]);
        rb_error err = {0};
        rb_tokenizer *t = NULL;
        int rc = rb_tokenizer_load(path, &t, &err);
        if (rc == 0) { /* landed on a record boundary after all */
            rb_tokenizer_free(t);
            continue;
        }
        assert_int_equal(rc, RB_EFORMAT);
        assert_non_null(strstr(err.msg, path));
    }
    /* A negative length and one larger than max_token_length. */
    char *copy = malloc(len);
    memcpy(copy, data, len);
    memcpy(copy + 8, "\xff\xff\xff\xff", 4);
    tok_write(path, copy, len);
    tok_expect_load_error(path, RB_EFORMAT);
    memcpy(copy, data, len);
    copy[8] = 100;
    tok_write(path, copy, len);
    tok_expect_load_error(path, RB_EFORMAT);
    /* Byte flips: any outcome but a crash; a failure must name the file. */
    uint32_t seed = 777;
    for (int iter = 0; iter < 300; iter++) {
        memcpy(copy, data, len);
        for (int k = 0; k < 3; k++) {
            seed = seed * 1664525u + 1013904223u;
            copy[(seed >> 8) % len] ^= (char)(1 + (seed & 0x7F));
        }
        tok_write(path, copy, len);
        rb_error err = {0};
        rb_tokenizer *t = NULL;
        if (rb_tokenizer_load(path, &t, &err) == 0) {
            int32_t *ids;
            size_t n;
            const char *s = "Once upon a time, \xE4\xBD\xA0\xE5\xA5\xBD\xFF!\n";
            if (rb_tokenizer_encode(t, s, strlen(s), 1, &ids, &n, &err) == 0) free(ids);
            rb_tokenizer_free(t);
        } else {
            assert_non_null(strstr(err.msg, path));
        }
    }
    free(copy);
    remove(path);
    snprintf(path, sizeof path, "%s/missing.bin", dir);
    tok_expect_load_error(path, RB_ENOTFOUND);
    /* A directory with no tokenizer file in it. */
    tok_expect_load_error(dir, RB_ENOTFOUND);
    rmdir(dir);
    free(data);
}

/* A directory resolves to its tokenizer file. */
static void test_load_directory(void **state) {
    (void)state;
    RB_REQUIRE_DATA(dir, "llama2");
    rb_tokenizer *t = tok_load_ok(dir);
    assert_int_equal(rb_tokenizer_kind(t), RB_TOK_SPM); /* tokenizer.model before .bin */
    rb_tokenizer_free(t);
}

/* Documents split at a separator string: each stripped and tokenized on its own with BOS (as llama2.c
 * pretokenizes TinyStories); the separator is never tokenized. */
static void test_doc_sep(void **state) {
    (void)state;
    RB_REQUIRE_DATA(bin, "stories260K/tok512.bin");
    rb_tokenizer *t = NULL;
    rb_error err = {0};
    assert_int_equal(rb_tokenizer_load(bin, &t, &err), 0);
    char dir[512], path[600];
    rb_test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/docs.txt", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("Once upon a time.\n<|endoftext|>\n  The end.\n<|endoftext|>\n\n", f);
    fclose(f);
    int32_t *ids = NULL, *a = NULL, *b = NULL;
    size_t n = 0, na = 0, nb = 0;
    assert_int_equal(rb_tokenize_file(t, path, 1, "<|endoftext|>", &ids, &n, &err), 0);
    assert_int_equal(rb_tokenizer_encode(t, "Once upon a time.", 17, 1, &a, &na, &err), 0);
    assert_int_equal(rb_tokenizer_encode(t, "The end.", 8, 1, &b, &nb, &err), 0);
    assert_int_equal(n, na + nb);
    assert_memory_equal(ids, a, na * sizeof *a);
    assert_memory_equal(ids + na, b, nb * sizeof *b);
    assert_int_equal(ids[0], rb_tokenizer_bos(t));
    assert_int_equal(ids[na], rb_tokenizer_bos(t));
    free(ids);
    /* without BOS: the documents only */
    assert_int_equal(rb_tokenize_file(t, path, 0, "<|endoftext|>", &ids, &n, &err), 0);
    assert_int_equal(n, na + nb - 2);
    assert_memory_equal(ids, a + 1, (na - 1) * sizeof *a);
    free(ids);
    /* nothing but separators is an input error naming the file */
    f = fopen(path, "w");
    fputs("<|endoftext|>\n\n<|endoftext|>", f);
    fclose(f);
    assert_int_equal(rb_tokenize_file(t, path, 1, "<|endoftext|>", &ids, &n, &err), RB_EFORMAT);
    assert_non_null(strstr(err.msg, "docs.txt"));
    free(a);
    free(b);
    remove(path);
    rmdir(dir);
    rb_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bin_vectors),         cmocka_unit_test(test_bin_wikitext_llama2),
        cmocka_unit_test(test_bin_wikitext_tok512), cmocka_unit_test(test_bin_pieces),
        cmocka_unit_test(test_bin_corrupt),         cmocka_unit_test(test_load_directory),
        cmocka_unit_test(test_doc_sep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

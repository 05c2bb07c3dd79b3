/* GGUF export and reader: round trips (stories260K and synthetic presets, F32 exact with identical
 * logits, F16/BF16 equal to the rounding of the source), the vocabulary metadata, an independent
 * Python reader (tests/ref/gguf_read.py), and malformed files (every truncation of the header,
 * patched fields) refused with a clear error and no crash. */
#include "rb_test_model.h"

#include <errno.h>
#include <jansson.h>
#include <sys/mman.h>

#include "core/rb_half.h"
#include "export/rb_export.h"
#include "model/rb_gguf.h"
#include "model/rb_safetensors.h"

/* ---- helpers ---- */

static int export_model(rb_model *m, const rb_weights_src *src, const rb_tokenizer *tok, int dtype, const char *dir,
                        rb_error *err) {
    rb_export_in in = {0};
    in.cfg = *rb_model_config(m);
    in.cfg.tied = 0;
    snprintf(in.cfg.dtype, sizeof in.cfg.dtype, "%s", dtype == RB_DT_F32 ? "F32" : dtype == RB_DT_F16 ? "F16" : "BF16");
    rb_weights_src own = rb_weights_from_model(m);
    in.src = src ? src : &own;
    in.tok = tok;
    in.name = "gguf test";
    in.model_dir = rb_model_dir(m);
    in.dtype = dtype;
    return rb_export_gguf(&in, dir, err);
}

/* Exports m into a fresh directory under `root` and reopens the file; fails the test on error. */
static rb_model *export_reopen(rb_model *m, const rb_tokenizer *tok, int dtype, const char *root, const char *sub,
                               char *path, size_t cap) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", root, sub);
    assert_int_equal(mkdir(dir, 0777), 0);
    rb_error err = {0};
    if (export_model(m, NULL, tok, dtype, dir, &err)) fail_msg("export: %s", err.msg);
    snprintf(path, cap, "%s/%s", dir, RB_EXPORT_GGUF_FILE);
    char partial[700];
    snprintf(partial, sizeof partial, "%s.partial", path);
    assert_false(rb_path_exists(partial));
    rb_model *g = NULL;
    if (rb_model_open(path, &g, &err)) fail_msg("reopen %s: %s", path, err.msg);
    assert_int_equal(rb_model_kind(g), RB_MODEL_GGUF);
    return g;
}

static void round_to(float *x, size_t n, int dt) {
    for (size_t i = 0; i < n; i++)
        if (dt == RB_DT_F16)
            x[i] = rb_f16_to_f32(rb_f32_to_f16(x[i]));
        else if (dt == RB_DT_BF16)
            x[i] = rb_bf16_to_f32(rb_f32_to_bf16(x[i]));
}

static void same_floats(const float *want, const float *got, size_t n, const char *what, int l) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&want[i], &got[i], 4) != 0)
            fail_msg("%s (layer %d) element %zu: want %.9g got %.9g", what, l, i, (double)want[i], (double)got[i]);
}

/* Every tensor of `got` (a GGUF read back) equals `src`'s, rounded to dt for matrices (norms stay
 * F32); the config survives (untied, dtype named). */
static void check_models(rb_model *src, rb_model *got, int dt) {
    const rb_llama_config *a = rb_model_config(src), *b = rb_model_config(got);
#define SAME(f) assert_true(a->f == b->f)
    SAME(dim), SAME(hidden_dim), SAME(n_layers), SAME(n_heads), SAME(n_kv_heads), SAME(head_dim), SAME(vocab_size);
    SAME(max_seq_len), SAME(rms_eps), SAME(rope_theta), SAME(rope_scaling), SAME(rope_factor);
    SAME(rope_low_freq_factor), SAME(rope_high_freq_factor), SAME(rope_original_max_pos), SAME(bos_id), SAME(eos_id);
#undef SAME
    assert_int_equal(b->tied, 0);
    assert_string_equal(b->dtype, dt == RB_DT_F32 ? "F32" : dt == RB_DT_F16 ? "F16" : "BF16");
    rb_error err = {0};
    rb_layer_weights wa, wb;
    assert_int_equal(rb_layer_weights_init(&wa, a, &err), 0);
    assert_int_equal(rb_layer_weights_init(&wb, a, &err), 0);
    for (int l = 0; l < a->n_layers; l++) {
        assert_int_equal(rb_model_load_layer(src, l, &wa, &err), 0);
        if (rb_model_load_layer(got, l, &wb, &err)) fail_msg("%s", err.msg);
        for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
            int r, c;
            float *x = rb_layer_linear(&wa, a, lin, &r, &c), *y = rb_layer_linear(&wb, a, lin, &r, &c);
            round_to(x, (size_t)r * c, dt);
            same_floats(x, y, (size_t)r * c, rb_linear_name(lin), l);
        }
        same_floats(wa.rms_att, wb.rms_att, (size_t)a->dim, "rms_att", l);
        same_floats(wa.rms_ffn, wb.rms_ffn, (size_t)a->dim, "rms_ffn", l);
    }
    rb_layer_weights_free(&wa);
    rb_layer_weights_free(&wb);
    size_t VD = (size_t)a->vocab_size * a->dim;
    float *x = malloc(VD * 4), *y = malloc(VD * 4);
    assert_int_equal(rb_model_load_embedding(src, x, &err), 0);
    assert_int_equal(rb_model_load_embedding(got, y, &err), 0);
    round_to(x, VD, dt);
    same_floats(x, y, VD, "embedding", -1);
    assert_int_equal(rb_model_load_lm_head(src, x, &err), 0);
    assert_int_equal(rb_model_load_lm_head(got, y, &err), 0);
    round_to(x, VD, dt);
    same_floats(x, y, VD, "lm_head", -1);
    assert_int_equal(rb_model_load_final_norm(src, x, &err), 0);
    assert_int_equal(rb_model_load_final_norm(got, y, &err), 0);
    same_floats(x, y, (size_t)a->dim, "final norm", -1);
    free(x);
    free(y);
    /* Untied: the lm_head is counted once more than in a tied source. */
    assert_int_equal(rb_model_param_count(got), rb_model_param_count(src) + (a->tied ? VD : 0));
}

/* Logits of two sequences through both models are bit-identical. */
static void check_logits(rb_model *a, rb_model *b) {
    const rb_llama_config *ca = rb_model_config(a), *cb = rb_model_config(b);
    enum { T = 12 };
    int32_t ids[2 * T];
    for (int i = 0; i < 2 * T; i++) ids[i] = (int32_t)((i * 37 + 5) % ca->vocab_size);
    rb_weights_src sa = rb_weights_from_model(a), sb = rb_weights_from_model(b);
    float *la = rb_test_logits(&sa, ca, ids, 2, T, NULL), *lb = rb_test_logits(&sb, cb, ids, 2, T, NULL);
    same_floats(la, lb, (size_t)2 * T * ca->vocab_size, "logits", -1);
    rb_free(la);
    rb_free(lb);
}

/* The parsed header of a written file (mapping + parse), for metadata checks. */
typedef struct parsed {
    rb_mapped map;
    rb_gguf g;
} parsed;

static void parse_file(parsed *p, const char *path) {
    rb_error err = {0};
    assert_int_equal(rb_mapped_open(&p->map, path, &err), 0);
    if (rb_gguf_parse(&p->g, path, p->map.data, p->map.size, &err)) fail_msg("%s", err.msg);
}

static void parsed_close(parsed *p) {
    rb_gguf_free(&p->g);
    rb_mapped_close(&p->map);
}

static void expect_str(const rb_gguf *g, const char *key, const char *want) {
    const char *s;
    size_t n;
    rb_error err = {0};
    if (rb_gguf_get_str(g, key, &s, &n, &err)) fail_msg("%s", err.msg);
    if (n != strlen(want) || memcmp(s, want, n)) fail_msg("%s = \"%.*s\", want \"%s\"", key, (int)n, s, want);
}

static int64_t get_int(const rb_gguf *g, const char *key) {
    int64_t v = -1;
    rb_error err = {0};
    if (rb_gguf_get_int(g, key, &v, &err)) fail_msg("%s", err.msg);
    return v;
}

/* tokens/scores/token_type arrays of a "llama" vocabulary equal the tokenizer's, with llama2.c's
 * export quirks undone. */
static void check_spm_vocab(const rb_gguf *g, const rb_tokenizer *t) {
    rb_error err = {0};
    const rb_gguf_kv *tok, *sc, *ty;
    expect_str(g, "tokenizer.ggml.model", "llama");
    assert_int_equal(rb_gguf_get_array(g, "tokenizer.ggml.tokens", RB_GGUF_STRING, &tok, &err), 0);
    assert_int_equal(rb_gguf_get_array(g, "tokenizer.ggml.scores", RB_GGUF_F32, &sc, &err), 0);
    assert_int_equal(rb_gguf_get_array(g, "tokenizer.ggml.token_type", RB_GGUF_I32, &ty, &err), 0);
    const int n = rb_tokenizer_vocab_size(t);
    assert_int_equal(tok->arr_n, n);
    assert_int_equal(sc->arr_n, n);
    assert_int_equal(ty->arr_n, n);
    const char **s = malloc(n * sizeof *s);
    size_t *len = malloc(n * sizeof *len);
    rb_gguf_array_strs(tok, s, len);
    int spaced = 0;
    for (int id = 0; id < n; id++) {
        size_t pl;
        const char *p = rb_tokenizer_piece(t, id, &pl);
        assert_true(rb_gguf_array_num(sc, id) == rb_tokenizer_score(t, id));
        assert_int_equal((int)rb_gguf_array_num(ty, id), rb_tokenizer_piece_type(t, id));
        assert_null(memchr(s[id], ' ', len[id])); /* spaces are U+2581 in a "llama" vocabulary */
        if (rb_tokenizer_kind(t) == RB_TOK_LLAMA2C && memchr(p, ' ', pl))
            spaced++;
        else if (id > 2)
            assert_true(len[id] == pl && memcmp(s[id], p, pl) == 0);
    }
    assert_int_equal(len[1], 3);
    assert_memory_equal(s[1], "<s>", 3);
    assert_memory_equal(s[2], "</s>", 4);
    assert_memory_equal(s[3], "<0x00>", 6);
    assert_int_equal((int)rb_gguf_array_num(ty, 3), RB_GGUF_TOKEN_BYTE);
    if (rb_tokenizer_kind(t) == RB_TOK_LLAMA2C) assert_int_equal(spaced, 91); /* tok512's pieces with a space */
    free(s);
    free(len);
    assert_int_equal(get_int(g, "tokenizer.ggml.bos_token_id"), 1);
    assert_int_equal(get_int(g, "tokenizer.ggml.eos_token_id"), 2);
    assert_int_equal(get_int(g, "tokenizer.ggml.unknown_token_id"), 0);
}

/* Writes n bytes to path (plain stdio: no fsync, these are throwaway files). */
static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* n bytes of a file at off (heap; fails the test on a short read). */
static uint8_t *file_bytes(const char *path, long off, size_t n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t *b = malloc(n ? n : 1);
    assert_int_equal(fseek(f, off, SEEK_SET), 0);
    assert_int_equal(fread(b, 1, n, f), n);
    fclose(f);
    return b;
}

/* ---- round trips on stories260K ---- */

static void test_stories_bin_f32(void **state) {
    rb_test_dir_fixture *fx = *state;
    RB_REQUIRE_DATA(bin, "stories260K/stories260K.bin");
    RB_REQUIRE_DATA(tokp, "stories260K/tok512.bin");
    rb_model *m;
    rb_tokenizer *tok;
    rb_error err = {0};
    assert_int_equal(rb_model_open(bin, &m, &err), 0);
    assert_int_equal(rb_tokenizer_load(tokp, &tok, &err), 0);
    char path[700];
    rb_model *g = export_reopen(m, tok, RB_DT_F32, fx->dir, "bin", path, sizeof path);
    check_models(m, g, RB_DT_F32);
    check_logits(m, g);

    parsed p;
    parse_file(&p, path);
    assert_true(p.g.version == 3 && p.g.alignment == 32);
    expect_str(&p.g, "general.architecture", "llama");
    expect_str(&p.g, "general.name", "gguf test");
    assert_int_equal(get_int(&p.g, "general.file_type"), RB_GGUF_FTYPE_ALL_F32);
    assert_true(get_int(&p.g, "llama.block_count") == 5 && get_int(&p.g, "llama.attention.head_count_kv") == 4 &&
                get_int(&p.g, "llama.rope.dimension_count") == 8 && get_int(&p.g, "llama.context_length") == 512);
    assert_null(rb_gguf_find(&p.g, "llama.attention.key_length")); /* head_dim = dim / heads */
    double eps;
    assert_int_equal(rb_gguf_get_float(&p.g, "llama.attention.layer_norm_rms_epsilon", &eps, &err), 0);
    assert_true(eps == (double)1e-5f);
    assert_non_null(rb_gguf_find(&p.g, "rotbench.version"));
    assert_int_equal(p.g.n_tensors, 3 + 9 * 5);
    const rb_gguf_tensor *q = rb_gguf_find_tensor(&p.g, "blk.4.attn_q.weight");
    assert_true(q && q->n_dims == 2 && q->ne[0] == 64 && q->ne[1] == 64 && q->type == RB_GGML_F32);
    assert_int_equal(rb_gguf_find_tensor(&p.g, "blk.0.attn_norm.weight")->n_dims, 1);
    /* llama.cpp's q rows are the llama2.c file's interleaved rows: the export equals them byte for
     * byte (layer 4's wq starts after the embedding, 5 rms_att and 4 earlier wq). */
    long off = 28 + 4L * (512 * 64 + 5 * 64) + 4L * 4 * 64 * 64;
    uint8_t *raw = file_bytes(bin, off, 64 * 64 * 4);
    assert_memory_equal(q->data, raw, 64 * 64 * 4);
    free(raw);
    check_spm_vocab(&p.g, tok);
    parsed_close(&p);
    rb_model_close(g);
    rb_model_close(m);
    rb_tokenizer_free(tok);
}

/* The HF copy in F16 with its SentencePiece tokenizer.model: weights are the F16 rounding, and the
 * vocabulary equals the one written from llama2.c's tok512.bin (its quirks undone). */
static void test_stories_hf_f16(void **state) {
    rb_test_dir_fixture *fx = *state;
    RB_REQUIRE_DATA(dir, "stories260K/hf");
    RB_REQUIRE_DATA(tokp, "stories260K/tok512.bin");
    rb_model *m;
    rb_tokenizer *spm, *l2c;
    rb_error err = {0};
    assert_int_equal(rb_model_open(dir, &m, &err), 0);
    assert_int_equal(rb_tokenizer_load(dir, &spm, &err), 0);
    assert_int_equal(rb_tokenizer_kind(spm), RB_TOK_SPM);
    assert_int_equal(rb_tokenizer_load(tokp, &l2c, &err), 0);
    char pa[700], pb[700];
    rb_model *g = export_reopen(m, spm, RB_DT_F16, fx->dir, "f16", pa, sizeof pa);
    check_models(m, g, RB_DT_F16);
    rb_model_close(g);
    g = export_reopen(m, l2c, RB_DT_F32, fx->dir, "l2c", pb, sizeof pb);
    rb_model_close(g);
    parsed a, b;
    parse_file(&a, pa);
    parse_file(&b, pb);
    check_spm_vocab(&a.g, spm);
    assert_int_equal(get_int(&a.g, "general.file_type"), RB_GGUF_FTYPE_MOSTLY_F16);
    assert_int_equal(rb_gguf_find_tensor(&a.g, "blk.0.ffn_down.weight")->type, RB_GGML_F16);
    assert_int_equal(rb_gguf_find_tensor(&a.g, "blk.0.ffn_norm.weight")->type, RB_GGML_F32);
    static const char *const keys[] = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"};
    for (int k = 0; k < 3; k++) {
        const rb_gguf_kv *x = rb_gguf_find(&a.g, keys[k]), *y = rb_gguf_find(&b.g, keys[k]);
        assert_true(x && y);
        /* Same count and the same encoded elements (up to the next pair: these are never last). */
        assert_int_equal(x->arr_n, y->arr_n);
        size_t bytes = (x + 1)->off - (size_t)(x->val - a.map.data),
               bytes_b = (y + 1)->off - (size_t)(y->val - b.map.data);
        assert_int_equal(bytes, bytes_b);
        assert_memory_equal(x->val, y->val, bytes);
    }
    parsed_close(&a);
    parsed_close(&b);
    rb_tokenizer_free(spm);
    rb_tokenizer_free(l2c);
    rb_model_close(m);
}

/* ---- the independent Python reader ---- */

static uint64_t checksum(const rb_gguf_tensor *t) {
    uint64_t s = 0;
    const size_t w = t->type == RB_GGML_F32 ? 4 : 2;
    for (uint64_t i = 0; i < t->nelem; i++) {
        uint64_t u = w == 4 ? (uint64_t)t->data[4 * i] | (uint64_t)t->data[4 * i + 1] << 8 |
                                  (uint64_t)t->data[4 * i + 2] << 16 | (uint64_t)t->data[4 * i + 3] << 24
                            : (uint64_t)t->data[2 * i] | (uint64_t)t->data[2 * i + 1] << 8;
        s += u * (i + 1);
    }
    return s;
}

static double elem_f(const rb_gguf_tensor *t, uint64_t i) {
    if (t->type == RB_GGML_F32) {
        float f;
        memcpy(&f, t->data + 4 * i, 4);
        return f;
    }
    uint16_t h = (uint16_t)(t->data[2 * i] | t->data[2 * i + 1] << 8);
    return t->type == RB_GGML_F16 ? rb_f16_to_f32(h) : rb_bf16_to_f32(h);
}

/* One array element from the Python view equals ours. */
static void same_item(const rb_gguf_kv *kv, uint64_t i, json_t *j, const char *const *s, const size_t *len) {
    if (kv->arr_type == RB_GGUF_STRING) {
        assert_true(json_is_string(j));
        if (json_string_length(j) != len[i] || memcmp(json_string_value(j), s[i], len[i]))
            fail_msg("%s[%llu]: python \"%s\" vs \"%.*s\"", kv->key, (unsigned long long)i, json_string_value(j),
                     (int)len[i], s[i]);
    } else if (kv->arr_type == RB_GGUF_BOOL) {
        assert_int_equal(json_is_true(j), rb_gguf_array_num(kv, i) != 0);
    } else {
        assert_true(json_number_value(j) == rb_gguf_array_num(kv, i));
    }
}

/* Runs tests/ref/gguf_read.py on the file and compares every key and tensor with rb_gguf's parse. */
static void check_python(const char *path) {
    const char *root = getenv("RB_SOURCE_ROOT");
    char script[4200], cmd[9000];
    snprintf(script, sizeof script, "%s/tests/ref/gguf_read.py", root ? root : ".");
    if (!rb_path_exists("/usr/bin/python3") || !rb_path_exists(script) ||
        system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) {
        fprintf(stderr,
                "#\n# SKIPPED (python part): /usr/bin/python3 with numpy or %s not found (set "
                "RB_SOURCE_ROOT)\n#\n",
                script);
        return;
    }
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", script, path);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    json_error_t je;
    json_t *o = json_loadf(f, 0, &je);
    assert_int_equal(pclose(f), 0);
    if (!o) fail_msg("gguf_read.py output: %s", je.text);
    parsed p;
    parse_file(&p, path);
    assert_int_equal(json_integer_value(json_object_get(o, "version")), p.g.version);
    assert_int_equal(json_integer_value(json_object_get(o, "alignment")), p.g.alignment);
    assert_int_equal(json_integer_value(json_object_get(o, "data_offset")), p.g.data_off);
    json_t *kvs = json_object_get(o, "kv");
    assert_int_equal(json_object_size(kvs), p.g.n_kv);
    for (uint64_t i = 0; i < p.g.n_kv; i++) {
        const rb_gguf_kv *kv = &p.g.kv[i];
        json_t *j = json_object_get(kvs, kv->key);
        if (!j) fail_msg("python lacks key %s", kv->key);
        if (kv->type == RB_GGUF_ARRAY) {
            assert_string_equal(json_string_value(json_object_get(j, "elem")), rb_gguf_type_name(kv->arr_type));
            assert_int_equal(json_integer_value(json_object_get(j, "count")), kv->arr_n);
            const char **s = NULL;
            size_t *len = NULL;
            if (kv->arr_type == RB_GGUF_STRING) {
                s = malloc((kv->arr_n + 1) * sizeof *s);
                len = malloc((kv->arr_n + 1) * sizeof *len);
                rb_gguf_array_strs(kv, s, len);
            }
            json_t *head = json_object_get(j, "head"), *tail = json_object_get(j, "tail");
            for (size_t k = 0; k < json_array_size(head); k++) same_item(kv, k, json_array_get(head, k), s, len);
            size_t nt = json_array_size(tail);
            for (size_t k = 0; k < nt; k++) same_item(kv, kv->arr_n - nt + k, json_array_get(tail, k), s, len);
            free(s);
            free(len);
            continue;
        }
        assert_string_equal(json_string_value(json_object_get(j, "type")), rb_gguf_type_name(kv->type));
        json_t *v = json_object_get(j, "value");
        rb_error err = {0};
        if (kv->type == RB_GGUF_STRING) {
            const char *s;
            size_t n;
            assert_int_equal(rb_gguf_get_str(&p.g, kv->key, &s, &n, &err), 0);
            assert_true(json_string_length(v) == n && memcmp(json_string_value(v), s, n) == 0);
        } else if (kv->type == RB_GGUF_F32 || kv->type == RB_GGUF_F64) {
            double d;
            assert_int_equal(rb_gguf_get_float(&p.g, kv->key, &d, &err), 0);
            assert_true(json_number_value(v) == d);
        } else if (kv->type == RB_GGUF_BOOL) {
            assert_int_equal(json_is_true(v), kv->val[0]);
        } else {
            int64_t x;
            assert_int_equal(rb_gguf_get_int(&p.g, kv->key, &x, &err), 0);
            assert_int_equal(json_integer_value(v), x);
        }
    }
    json_t *ts = json_object_get(o, "tensors");
    assert_int_equal(json_array_size(ts), p.g.n_tensors);
    for (uint64_t i = 0; i < p.g.n_tensors; i++) {
        const rb_gguf_tensor *t = &p.g.tensors[i];
        json_t *j = json_array_get(ts, i), *ne = json_object_get(j, "ne");
        assert_string_equal(json_string_value(json_object_get(j, "name")), t->name);
        assert_string_equal(json_string_value(json_object_get(j, "type")), rb_ggml_type_name(t->type));
        assert_int_equal(json_array_size(ne), t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) assert_int_equal(json_integer_value(json_array_get(ne, d)), t->ne[d]);
        assert_int_equal(json_integer_value(json_object_get(j, "offset")), t->offset);
        char hex[32];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)checksum(t));
        assert_string_equal(json_string_value(json_object_get(j, "check")), hex);
        assert_true(json_number_value(json_object_get(j, "first")) == elem_f(t, 0));
        if (t->nelem > t->ne[0]) assert_true(json_number_value(json_object_get(j, "row1")) == elem_f(t, t->ne[0]));
    }
    json_decref(o);
    parsed_close(&p);
}

static void test_python_reference(void **state) {
    rb_test_dir_fixture *fx = *state;
    RB_REQUIRE_DATA(bin, "stories260K/stories260K.bin");
    RB_REQUIRE_DATA(tokp, "stories260K/tok512.bin");
    rb_model *m;
    rb_tokenizer *tok;
    rb_error err = {0};
    assert_int_equal(rb_model_open(bin, &m, &err), 0);
    assert_int_equal(rb_tokenizer_load(tokp, &tok, &err), 0);
    char path[700], mdir[600];
    rb_model *g = export_reopen(m, tok, RB_DT_F32, fx->dir, "py", path, sizeof path);
    check_python(path);
    /* Row 1 of blk.0.attn_q in llama.cpp's order is HF row head_dim/2 = 4 (checked by python's row1). */
    rb_model_close(g);
    rb_model_close(m);
    rb_tokenizer_free(tok);
    /* A Llama-3-style model: rope_freqs, key_length, BF16, a byte-level BPE vocabulary. */
    snprintf(mdir, sizeof mdir, "%s/l3", fx->dir);
    m = rb_test_make_model(mdir, "llama3", 3);
    assert_int_equal(rb_tokenizer_load(mdir, &tok, &err), 0);
    g = export_reopen(m, tok, RB_DT_BF16, fx->dir, "py3", path, sizeof path);
    check_python(path);
    rb_model_close(g);
    rb_model_close(m);
    rb_tokenizer_free(tok);
}

/* ---- synthetic presets ---- */

static void test_presets(void **state) {
    rb_test_dir_fixture *fx = *state;
    static const char *const presets[] = {"gqa", "npot", "llama3", "tiny"};
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        char mdir[600], sub[64], path[700];
        snprintf(mdir, sizeof mdir, "%s/m-%s", fx->dir, presets[i]);
        rb_model *m = rb_test_make_model(mdir, presets[i], 11 + i);
        rb_tokenizer *tok;
        rb_error err = {0};
        assert_int_equal(rb_tokenizer_load(mdir, &tok, &err), 0);
        snprintf(sub, sizeof sub, "%s-f32", presets[i]);
        rb_model *g = export_reopen(m, tok, RB_DT_F32, fx->dir, sub, path, sizeof path);
        check_models(m, g, RB_DT_F32);
        check_logits(m, g);
        rb_model_close(g);
        parsed p;
        parse_file(&p, path);
        expect_str(&p.g, "tokenizer.ggml.model", "gpt2");
        expect_str(&p.g, "tokenizer.ggml.pre", "llama-bpe");
        assert_null(rb_gguf_find(&p.g, "tokenizer.ggml.scores"));
        const rb_gguf_kv *tk;
        assert_int_equal(rb_gguf_get_array(&p.g, "tokenizer.ggml.tokens", RB_GGUF_STRING, &tk, &err), 0);
        assert_int_equal(tk->arr_n, rb_model_config(m)->vocab_size);
        if (strcmp(presets[i], "llama3") == 0) {
            assert_int_equal(get_int(&p.g, "llama.attention.key_length"), 32);
            const rb_gguf_tensor *rf = rb_gguf_find_tensor(&p.g, "rope_freqs.weight");
            assert_non_null(rf);
            assert_int_equal(rf->ne[0], 16);
            /* Reading is checked against the parameters: a factor that does not fit is refused. */
            size_t at = (size_t)(rf->data - p.map.data);
            float bad = 3.0f;
            uint8_t *copy = file_bytes(path, 0, p.map.size);
            memcpy(copy + at, &bad, 4);
            char bp[700];
            snprintf(bp, sizeof bp, "%s/bad-rope.gguf", fx->dir);
            write_bytes(bp, copy, p.map.size);
            free(copy);
            rb_model *x = NULL;
            assert_int_equal(rb_model_open(bp, &x, &err), RB_EUNSUPPORTED);
            assert_non_null(strstr(err.msg, "rope_freqs.weight[0]"));
            for (int dt = RB_DT_F16; dt <= RB_DT_BF16; dt++) {
                snprintf(sub, sizeof sub, "llama3-%d", dt);
                g = export_reopen(m, tok, dt, fx->dir, sub, path, sizeof path);
                check_models(m, g, dt);
                rb_model_close(g);
            }
        } else {
            assert_null(rb_gguf_find_tensor(&p.g, "rope_freqs.weight"));
        }
        parsed_close(&p);
        rb_tokenizer_free(tok);
        rb_model_close(m);
    }
}

/* The Llama-3 tokenizer: 128256 tokens with their types and all 280147 merges in tokenizer.json's
 * order. */
static void test_llama3_vocab(void **state) {
    rb_test_dir_fixture *fx = *state;
    RB_REQUIRE_DATA(tj, "llama3/tokenizer.json");
    char mdir[600], path[700];
    snprintf(mdir, sizeof mdir, "%s/big", fx->dir);
    rb_make_model_opts mo = {.preset = "tiny",
                             .seed = 5,
                             .dim = 16,
                             .hidden_dim = 32,
                             .n_layers = 1,
                             .n_heads = 2,
                             .n_kv_heads = 2,
                             .vocab_size = 128256};
    rb_error err = {0};
    rb_model *m;
    rb_tokenizer *tok;
    assert_int_equal(rb_make_model(mdir, &mo, &err), 0);
    assert_int_equal(rb_model_open(mdir, &m, &err), 0);
    assert_int_equal(rb_tokenizer_load(tj, &tok, &err), 0);
    rb_model *g = export_reopen(m, tok, RB_DT_F16, fx->dir, "l3vocab", path, sizeof path);
    assert_int_equal(rb_model_config(g)->vocab_size, 128256);
    rb_model_close(g);
    parsed p;
    parse_file(&p, path);
    expect_str(&p.g, "tokenizer.ggml.model", "gpt2");
    const rb_gguf_kv *tk, *ty, *mg;
    assert_int_equal(rb_gguf_get_array(&p.g, "tokenizer.ggml.tokens", RB_GGUF_STRING, &tk, &err), 0);
    assert_int_equal(rb_gguf_get_array(&p.g, "tokenizer.ggml.token_type", RB_GGUF_I32, &ty, &err), 0);
    assert_int_equal(rb_gguf_get_array(&p.g, "tokenizer.ggml.merges", RB_GGUF_STRING, &mg, &err), 0);
    assert_int_equal(tk->arr_n, 128256);
    const char **s = malloc(300000 * sizeof *s);
    size_t *len = malloc(300000 * sizeof *len);
    rb_gguf_array_strs(tk, s, len);
    assert_true(len[128000] == 17 && memcmp(s[128000], "<|begin_of_text|>", 17) == 0);
    assert_int_equal((int)rb_gguf_array_num(ty, 128000), RB_GGUF_TOKEN_CONTROL);
    assert_int_equal((int)rb_gguf_array_num(ty, 0), RB_GGUF_TOKEN_NORMAL);
    for (int id = 0; id < 128256; id++) {
        size_t pl;
        const char *pc = rb_tokenizer_piece(tok, id, &pl);
        assert_true(pc && pl == len[id] && memcmp(pc, s[id], pl) == 0);
    }
    json_error_t je;
    json_t *root = json_load_file(tj, 0, &je), *merges = json_object_get(json_object_get(root, "model"), "merges");
    assert_non_null(merges);
    assert_int_equal(mg->arr_n, json_array_size(merges));
    rb_gguf_array_strs(mg, s, len);
    for (size_t i = 0; i < mg->arr_n; i++) {
        json_t *x = json_array_get(merges, i);
        assert_true(json_is_string(x));
        if (json_string_length(x) != len[i] || memcmp(json_string_value(x), s[i], len[i]))
            fail_msg("merge %zu: \"%.*s\" vs tokenizer.json \"%s\"", i, (int)len[i], s[i], json_string_value(x));
    }
    json_decref(root);
    free(s);
    free(len);
    parsed_close(&p);
    rb_tokenizer_free(tok);
    rb_model_close(m);
}

/* ---- malformed files ---- */

/* Offset of the u64-length-prefixed string s in b (a key or a tensor name). */
static size_t find_lp(const uint8_t *b, size_t n, const char *s) {
    size_t l = strlen(s);
    for (size_t i = 0; i + 8 + l <= n; i++)
        if (b[i] == l && !memcmp(b + i + 1, "\0\0\0\0\0\0\0", 7) && !memcmp(b + i + 8, s, l)) return i;
    fail_msg("\"%s\" not found", s);
    return 0;
}
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i);
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i);
}

/* Writes buf to path, opens it, and expects `code` with a message naming the file and `needle`. */
static void expect_bad(const char *path, const uint8_t *buf, size_t n, int code, const char *needle, const char *what) {
    rb_error err = {0};
    write_bytes(path, buf, n);
    rb_model *m = NULL;
    int rc = rb_model_open(path, &m, &err);
    if (rc != code || !strstr(err.msg, path) || !strstr(err.msg, needle))
        fail_msg("%s: rc %d (want %d), message \"%s\" (want \"%s\")", what, rc, code, err.msg, needle);
    assert_null(m);
}

enum { K_TYPE, K_VALUE, T_NDIMS, T_NE0, T_NE1, T_TYPE, T_OFFSET };
/* Offset of a field of key/tensor `name`: the value type or value of a key (for an array, its
 * element type), or a tensor info's n_dims, ne[0], ne[1], type or offset. */
static size_t field(const uint8_t *b, size_t n, const char *name, int f) {
    size_t at = find_lp(b, n, name) + 8 + strlen(name);
    if (f <= K_VALUE) return at + (f == K_VALUE ? 4 : 0);
    uint32_t nd = b[at];
    switch (f) {
    case T_NDIMS: return at;
    case T_NE0: return at + 4;
    case T_NE1: return at + 12;
    case T_TYPE: return at + 4 + 8 * nd;
    default: return at + 8 + 8 * nd;
    }
}

static void test_bad_files(void **state) {
    rb_test_dir_fixture *fx = *state;
    char mdir[600], path[700], bad[700];
    snprintf(mdir, sizeof mdir, "%s/m", fx->dir);
    rb_model *m = rb_test_make_model(mdir, "gqa", 2);
    rb_tokenizer *tok;
    rb_error err = {0};
    assert_int_equal(rb_tokenizer_load(mdir, &tok, &err), 0);
    rb_model *g = export_reopen(m, tok, RB_DT_F32, fx->dir, "ok", path, sizeof path);
    rb_model_close(g);
    rb_model_close(m);
    rb_tokenizer_free(tok);
    parsed p;
    parse_file(&p, path);
    const size_t n = p.map.size, data_off = p.g.data_off, last_info = p.g.tensors[p.g.n_tensors - 1].info_off;
    assert_string_equal(p.g.tensors[p.g.n_tensors - 1].name, "output.weight");
    uint8_t *base = file_bytes(path, 0, n), *b = malloc(n);
    parsed_close(&p);
    snprintf(bad, sizeof bad, "%s/bad.gguf", fx->dir);

    /* Every truncation of the header and directory, and a sample of the data: a format error. */
    write_bytes(bad, base, n);
    for (size_t k = n - 1; k + 1 > 0; k--) {
        if (k >= data_off && k % 997 != 0 && k != data_off && k != n - 1) continue;
        assert_int_equal(truncate(bad, (off_t)k), 0);
        rb_model *x = NULL;
        int rc = rb_model_open(bad, &x, &err);
        if (rc != RB_EFORMAT || !strstr(err.msg, bad)) fail_msg("truncated at %zu: rc %d: %s", k, rc, err.msg);
    }

#define CASE(code, needle, ...)                                                                                        \
    do {                                                                                                               \
        memcpy(b, base, n);                                                                                            \
        __VA_ARGS__;                                                                                                   \
        expect_bad(bad, b, n, code, needle, #__VA_ARGS__);                                                             \
    } while (0)
    CASE(RB_EFORMAT, "magic", b[3] = 'X');
    CASE(RB_EUNSUPPORTED, "version 1", put32(b + 4, 1));
    CASE(RB_EFORMAT, "version 4", put32(b + 4, 4));
    CASE(RB_EUNSUPPORTED, "big-endian", put32(b + 4, 0x03000000u));
    CASE(RB_EFORMAT, "tensor_count", put64(b + 8, 1ull << 60));
    CASE(RB_EFORMAT, "kv_count", put64(b + 16, 1ull << 60));
    CASE(RB_EFORMAT, "key of pair 0", put64(b + 24, 1ull << 62));
    CASE(RB_EFORMAT, "tokenizer.ggml.tokens", put64(b + field(b, n, "tokenizer.ggml.tokens", K_VALUE) + 4, 1ull << 40));
    CASE(RB_EFORMAT, "nested", put32(b + field(b, n, "tokenizer.ggml.tokens", K_VALUE), RB_GGUF_ARRAY));
    CASE(RB_EFORMAT, "unknown value type", put32(b + field(b, n, "llama.block_count", K_TYPE), 77));
    CASE(RB_EFORMAT, "llama.block_count has type f32",
         put32(b + field(b, n, "llama.block_count", K_TYPE), RB_GGUF_F32));
    CASE(RB_ENOTFOUND, "llama.block_count", b[field(b, n, "llama.block_count", K_TYPE) - 1] = 'x');
    /* A block count the tensor table cannot hold is refused before the layer table is sized by it
     * (fuzz_gguf: 14680066 blocks asked for an 8 GB calloc). */
    CASE(RB_EFORMAT, "llama.block_count 14680066 needs 132120594 layer tensors",
         put32(b + field(b, n, "llama.block_count", K_VALUE), 14680066));
    CASE(RB_EUNSUPPORTED, "mamba", memcpy(b + field(b, n, "general.architecture", K_VALUE) + 8, "mamba", 5));
    CASE(RB_EFORMAT, "power of two", put32(b + field(b, n, "general.alignment", K_VALUE), 24));
    CASE(RB_EFORMAT, "bool value 2", b[field(b, n, "tokenizer.ggml.add_bos_token", K_VALUE)] = 2);
    CASE(RB_EFORMAT, "head_count_kv 3", put32(b + field(b, n, "llama.attention.head_count_kv", K_VALUE), 3));
    CASE(RB_EFORMAT, "bos_token_id", put32(b + field(b, n, "tokenizer.ggml.bos_token_id", K_VALUE), 100000));
    CASE(RB_EFORMAT, "not a positive int", put32(b + field(b, n, "llama.embedding_length", K_VALUE), 0));
    CASE(RB_EUNSUPPORTED, "Q4_0", put32(b + field(b, n, "blk.0.attn_q.weight", T_TYPE), 2));
    CASE(RB_EUNSUPPORTED, "blk.0.attn_q.weight", put32(b + field(b, n, "blk.0.attn_q.weight", T_TYPE), 12));
    CASE(RB_EFORMAT, "output.weight: data", put64(b + field(b, n, "output.weight", T_OFFSET), 1ull << 40));
    CASE(RB_EFORMAT, "not a multiple", b[field(b, n, "output.weight", T_OFFSET)] += 4);
    CASE(RB_EFORMAT, "blk.1.attn_k.weight: ne", put64(b + field(b, n, "blk.1.attn_k.weight", T_NE0), 32));
    CASE(RB_EFORMAT, "n_dims 5", put32(b + field(b, n, "blk.0.attn_norm.weight", T_NDIMS), 5));
    CASE(RB_EFORMAT, "overflows", put64(b + field(b, n, "token_embd.weight", T_NE1), 1ull << 62));
    CASE(RB_EFORMAT, "llama.vocab_size 512 != token_embd.weight rows 511",
         put64(b + field(b, n, "token_embd.weight", T_NE1), 511));
    CASE(RB_EFORMAT, "appears more than once", b[find_lp(b, n, "blk.0.attn_v.weight") + 8 + 11] = 'k');
    CASE(RB_EFORMAT, "key llama.block_count appears",
         memcpy(b + find_lp(b, n, "general.file_type") + 8, "llama.block_count", 17));
    CASE(RB_EUNSUPPORTED, "outpux.weight", b[find_lp(b, n, "output.weight") + 8 + 5] = 'x');
    CASE(RB_EFORMAT, "NUL byte", b[find_lp(b, n, "blk.1.ffn_up.weight") + 8 + 2] = 0);
#undef CASE
    expect_bad(bad, b, 0, RB_EFORMAT, "magic", "empty file");

    /* Version 2 reads as 3. Without output.weight the model is tied: drop the last tensor info
     * (output.weight's) and lengthen general.name by as many bytes, so the data section stays put. */
    memcpy(b, base, n);
    put32(b + 4, 2);
    write_bytes(bad, b, n);
    assert_int_equal(rb_model_open(bad, &g, &err), 0);
    rb_model_close(g);
    const size_t name = field(base, n, "general.name", K_VALUE), name_end = name + 8 + base[name],
                 k = data_off - last_info;
    memcpy(b, base, name_end);
    memset(b + name_end, '_', k);
    memcpy(b + name_end + k, base + name_end, last_info - name_end);
    memcpy(b + data_off, base + data_off, n - data_off);
    put64(b + 8, base[8] - 1u);
    put64(b + name, base[name] + k);
    write_bytes(bad, b, n);
    if (rb_model_open(bad, &g, &err)) fail_msg("%s", err.msg);
    const rb_llama_config *c = rb_model_config(g);
    assert_int_equal(c->tied, 1);
    size_t VD = (size_t)c->vocab_size * c->dim;
    float *e = malloc(VD * 4), *h = malloc(VD * 4);
    assert_int_equal(rb_model_load_embedding(g, e, &err), 0);
    assert_int_equal(rb_model_load_lm_head(g, h, &err), 0);
    assert_memory_equal(e, h, VD * 4);
    assert_int_equal(rb_model_tensor(g, -1, NULL), 2 + 9 * c->n_layers);
    rb_model_close(g);
    free(e);
    free(h);
    free(b);
    free(base);
}

/* ---- refusals and write failures ---- */

/* A source whose layer 1 k_proj holds one value beyond F16's range. */
typedef struct big_src {
    rb_weights_src base;
} big_src;

static int big_layer(void *ctx, int l, rb_layer_weights *w, rb_error *err) {
    big_src *s = ctx;
    int rc = s->base.load_layer(s->base.ctx, l, w, err);
    if (!rc && l == 1) w->wk[3 * 64 + 5] = 1e6f;
    return rc;
}
static int big_embed(void *ctx, const int32_t *ids, size_t n, float *out, rb_error *err) {
    big_src *s = ctx;
    return s->base.embed(s->base.ctx, ids, n, out, err);
}
static int big_norm(void *ctx, float *out, rb_error *err) {
    big_src *s = ctx;
    return s->base.load_final_norm(s->base.ctx, out, err);
}
static int big_head(void *ctx, float *out, rb_error *err) {
    big_src *s = ctx;
    return s->base.load_lm_head(s->base.ctx, out, err);
}

static void test_refusals(void **state) {
    rb_test_dir_fixture *fx = *state;
    char mdir[600], dir[600], file[700];
    snprintf(mdir, sizeof mdir, "%s/m", fx->dir);
    rb_model *m = rb_test_make_model(mdir, "gqa", 4);
    rb_error err = {0};
    snprintf(dir, sizeof dir, "%s/out", fx->dir);
    assert_int_equal(mkdir(dir, 0777), 0);
    snprintf(file, sizeof file, "%s/%s", dir, RB_EXPORT_GGUF_FILE);

    assert_int_equal(export_model(m, NULL, NULL, 99, dir, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "dtype"));

    /* F16 cannot hold 1e6: refused naming the tensor and the (HF) position; BF16 can. */
    big_src bs = {rb_weights_from_model(m)};
    rb_weights_src src = {&bs, big_layer, big_embed, big_norm, big_head};
    assert_int_equal(export_model(m, &src, NULL, RB_DT_F16, dir, &err), RB_EINVAL);
    if (!strstr(err.msg, "blk.1.attn_k.weight [3][5]")) fail_msg("%s", err.msg);
    assert_false(rb_path_exists(file));
    char partial[800];
    snprintf(partial, sizeof partial, "%s.partial", file);
    assert_false(rb_path_exists(partial));
    assert_int_equal(export_model(m, &src, NULL, RB_DT_BF16, dir, &err), 0);
    unlink(file);

    /* No tokenizer: vocabulary "none", the config's BOS/EOS kept. */
    assert_int_equal(export_model(m, NULL, NULL, RB_DT_F32, dir, &err), 0);
    parsed p;
    parse_file(&p, file);
    expect_str(&p.g, "tokenizer.ggml.model", "none");
    assert_null(rb_gguf_find(&p.g, "tokenizer.ggml.tokens"));
    /* rb_gguf's typed reads: absent and mistyped keys. */
    int64_t v;
    double d;
    const char *s;
    size_t sn;
    const rb_gguf_kv *kv;
    assert_int_equal(rb_gguf_get_int(&p.g, "no.such.key", &v, &err), RB_ENOTFOUND);
    assert_non_null(strstr(err.msg, "no.such.key"));
    assert_int_equal(rb_gguf_get_int(&p.g, "general.name", &v, &err), RB_EFORMAT);
    assert_non_null(strstr(err.msg, "general.name has type string, expected an integer"));
    assert_int_equal(rb_gguf_get_float(&p.g, "llama.block_count", &d, &err), RB_EFORMAT);
    assert_int_equal(rb_gguf_get_str(&p.g, "llama.rope.freq_base", &s, &sn, &err), RB_EFORMAT);
    assert_int_equal(rb_gguf_get_array(&p.g, "general.name", RB_GGUF_STRING, &kv, &err), RB_EFORMAT);
    assert_int_equal(rb_gguf_get_float(&p.g, "rotbench.f64.llama.rope.freq_base", &d, &err), 0);
    assert_true(d == 10000.0);
    parsed_close(&p);
    rb_model *g;
    assert_int_equal(rb_model_open(file, &g, &err), 0);
    assert_int_equal(rb_model_config(g)->bos_id, rb_model_config(m)->bos_id);
    assert_int_equal(rb_model_config(g)->eos_id, rb_model_config(m)->eos_id);
    rb_model_close(g);
    unlink(file);

    /* A tokenizer larger than the model's vocabulary does not belong to it. */
    const char *tj = rb_test_data("llama3/tokenizer.json");
    if (tj) {
        rb_tokenizer *tok;
        assert_int_equal(rb_tokenizer_load(tj, &tok, &err), 0);
        assert_int_equal(export_model(m, NULL, tok, RB_DT_F32, dir, &err), RB_EINVAL);
        assert_non_null(strstr(err.msg, "128256"));
        rb_tokenizer_free(tok);
    }

    /* Disk full: the partial file is a link to /dev/full. */
    if (rb_path_exists("/dev/full")) {
        assert_int_equal(symlink("/dev/full", partial), 0);
        assert_int_equal(export_model(m, NULL, NULL, RB_DT_F32, dir, &err), RB_EIO);
        assert_non_null(strstr(err.msg, partial));
        assert_non_null(strstr(err.msg, strerror(ENOSPC)));
        assert_false(rb_path_exists(file));
        unlink(partial);
    } else {
        fprintf(stderr, "#\n# SKIPPED (disk-full part): /dev/full not found\n#\n");
    }
    /* An unwritable directory. */
    assert_int_equal(export_model(m, NULL, NULL, RB_DT_F32, "/nonexistent-dir-rbtest", &err), RB_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent-dir-rbtest/model.gguf.partial"));
    rb_model_close(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stories_bin_f32, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_stories_hf_f16, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_python_reference, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_presets, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_llama3_vocab, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_refusals, rb_test_dir_setup, rb_test_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

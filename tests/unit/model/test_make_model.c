/* rb_make_model: every preset round-trips through the reader with the generator's exact values. */
#include "rb_test.h"

#include <jansson.h>
#include <math.h>
#include <unistd.h>

#include "core/rb_file.h"
#include "core/rb_half.h"
#include "model/rb_make_model.h"
#include "model/rb_model.h"
#include "model/rb_safetensors.h"

static const char *const slot_names[9] = {
    "model.layers.%d.input_layernorm.weight",  "model.layers.%d.self_attn.q_proj.weight",
    "model.layers.%d.self_attn.k_proj.weight", "model.layers.%d.self_attn.v_proj.weight",
    "model.layers.%d.self_attn.o_proj.weight", "model.layers.%d.post_attention_layernorm.weight",
    "model.layers.%d.mlp.gate_proj.weight",    "model.layers.%d.mlp.up_proj.weight",
    "model.layers.%d.mlp.down_proj.weight",
};

static float round_to(float x, const char *dtype) {
    if (strcmp(dtype, "BF16") == 0) return rb_bf16_to_f32(rb_f32_to_bf16(x));
    if (strcmp(dtype, "F16") == 0) return rb_f16_to_f32(rb_f32_to_f16(x));
    return x;
}

/* got[i] must be exactly the generator's value rounded to the storage dtype. */
static void check_values(const rb_make_model_opts *o, const char *name, const float *got, size_t n) {
    float *want = malloc(n * sizeof *want);
    rb_error err = {0};
    assert_int_equal(rb_make_model_tensor(o, name, want, n, &err), 0);
    const char *dt = o->dtype ? o->dtype : "F32";
    for (size_t i = 0; i < n; i++) {
        float w = round_to(want[i], dt);
        if (memcmp(&w, &got[i], 4) != 0) fail_msg("%s %s[%zu]: got %g, want %g", dt, name, i, got[i], w);
        /* and the rounding is within the dtype's half-ulp */
        double tol = strcmp(dt, "BF16") == 0 ? 1.0 / 256 : strcmp(dt, "F16") == 0 ? 1.0 / 2048 : 0;
        if (fabs((double)got[i] - want[i]) > tol * fabs(want[i]) + 1e-7) fail_msg("%s: rounding too coarse", name);
    }
    free(want);
}

static void check_model(const char *dir, const rb_make_model_opts *o) {
    rb_error err = {0};
    rb_llama_config want;
    assert_int_equal(rb_make_model_config(o, &want, &err), 0);
    rb_model *m;
    if (rb_model_open(dir, &m, &err) != 0) fail_msg("%s", err.msg);
    const rb_llama_config *c = rb_model_config(m);
    assert_int_equal(c->dim, want.dim);
    assert_int_equal(c->hidden_dim, want.hidden_dim);
    assert_int_equal(c->n_layers, want.n_layers);
    assert_int_equal(c->n_heads, want.n_heads);
    assert_int_equal(c->n_kv_heads, want.n_kv_heads);
    assert_int_equal(c->head_dim, want.head_dim);
    assert_int_equal(c->vocab_size, want.vocab_size);
    assert_int_equal(c->max_seq_len, want.max_seq_len);
    assert_true(c->rms_eps == want.rms_eps);
    assert_true(c->rope_theta == want.rope_theta);
    assert_int_equal(c->rope_scaling, want.rope_scaling);
    assert_true(c->rope_factor == want.rope_factor);
    assert_true(c->rope_low_freq_factor == want.rope_low_freq_factor);
    assert_true(c->rope_high_freq_factor == want.rope_high_freq_factor);
    assert_int_equal(c->rope_original_max_pos, want.rope_original_max_pos);
    assert_int_equal(c->tied, want.tied);
    assert_int_equal(c->bos_id, 256);
    assert_int_equal(c->eos_id, 257);
    assert_string_equal(c->dtype, o->dtype ? o->dtype : "F32");

    const size_t D = (size_t)c->dim, V = (size_t)c->vocab_size, H = (size_t)c->hidden_dim;
    const size_t Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    uint64_t per_layer = 2 * D + Q * D + 2 * KV * D + D * Q + 3 * H * D;
    assert_int_equal(rb_model_param_count(m), V * D * (c->tied ? 1 : 2) + c->n_layers * per_layer + D);
    assert_int_equal(rb_model_tensor(m, -1, NULL), 2 + 9 * c->n_layers + (c->tied ? 0 : 1));

    rb_layer_weights w;
    assert_int_equal(rb_layer_weights_init(&w, c, &err), 0);
    for (int l = 0; l < c->n_layers; l++) {
        assert_int_equal(rb_model_load_layer(m, l, &w, &err), 0);
        float *bufs[9] = {w.rms_att, w.wq, w.wk, w.wv, w.wo, w.rms_ffn, w.w_gate, w.w_up, w.w_down};
        size_t sizes[9] = {D, Q * D, KV * D, KV * D, D * Q, D, H * D, H * D, D * H};
        for (int s = 0; s < 9; s++) {
            char name[128];
            snprintf(name, sizeof name, slot_names[s], l);
            check_values(o, name, bufs[s], sizes[s]);
        }
    }
    rb_layer_weights_free(&w);
    float *e = malloc(V * D * 4), *lm = malloc(V * D * 4), norm[512];
    assert_int_equal(rb_model_load_embedding(m, e, &err), 0);
    check_values(o, "model.embed_tokens.weight", e, V * D);
    assert_int_equal(rb_model_load_lm_head(m, lm, &err), 0);
    if (c->tied)
        assert_memory_equal(lm, e, V * D * 4);
    else
        check_values(o, "lm_head.weight", lm, V * D);
    assert_int_equal(rb_model_load_final_norm(m, norm, &err), 0);
    check_values(o, "model.norm.weight", norm, D);
    free(e);
    free(lm);
    rb_model_close(m);
}

static void rm_rf(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_presets_roundtrip(void **state) {
    (void)state;
    const char *const *names = rb_make_model_presets();
    int n = 0;
    for (; names[n]; n++) {
        assert_non_null(rb_make_model_preset_desc(names[n]));
        for (int d = 0; d < 3; d++) {
            static const char *const dts[3] = {"F32", "F16", "BF16"};
            char dir[256];
            rb_test_tmpdir(dir, sizeof dir);
            rb_make_model_opts o = {.preset = names[n], .seed = 42 + (uint64_t)n, .dtype = dts[d]};
            rb_error err = {0};
            if (rb_make_model(dir, &o, &err) != 0) fail_msg("%s: %s", names[n], err.msg);
            check_model(dir, &o);
            rm_rf(dir);
        }
    }
    assert_int_equal(n, 6);
    assert_null(rb_make_model_preset_desc("nope"));
}

static int files_equal(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    rb_error err;
    if (rb_read_file(a, 1 << 30, &x, &nx, &err) || rb_read_file(b, 1 << 30, &y, &ny, &err)) return -1;
    int eq = nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return eq;
}

static void test_same_seed_same_bytes(void **state) {
    (void)state;
    char a[256], b[256], c[256], pa[300], pb[300];
    rb_test_tmpdir(a, sizeof a);
    rb_test_tmpdir(b, sizeof b);
    rb_test_tmpdir(c, sizeof c);
    rb_make_model_opts o = {.preset = "llama3", .seed = 7, .dtype = "BF16"};
    rb_error err = {0};
    assert_int_equal(rb_make_model(a, &o, &err), 0);
    assert_int_equal(rb_make_model(b, &o, &err), 0);
    o.seed = 8;
    assert_int_equal(rb_make_model(c, &o, &err), 0);
    static const char *const files[3] = {"config.json", "model.safetensors", "tokenizer.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
        assert_int_equal(files_equal(pa, pb), 1);
    }
    snprintf(pb, sizeof pb, "%s/model.safetensors", c);
    snprintf(pa, sizeof pa, "%s/model.safetensors", a);
    assert_int_equal(files_equal(pa, pb), 0);
    rm_rf(a);
    rm_rf(b);
    rm_rf(c);
}

static void test_sharded(void **state) {
    (void)state;
    char dir[256], path[400];
    rb_test_tmpdir(dir, sizeof dir);
    rb_make_model_opts o = {.preset = "npot", .seed = 3, .dtype = "F16", .shards = 3};
    rb_error err = {0};
    assert_int_equal(rb_make_model(dir, &o, &err), 0);
    for (int s = 1; s <= 3; s++) {
        snprintf(path, sizeof path, "%s/model-%05d-of-00003.safetensors", dir, s);
        assert_true(rb_path_exists(path));
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_false(rb_path_exists(path));
    check_model(dir, &o);
    rb_model *m;
    assert_int_equal(rb_model_open(dir, &m, &err), 0);
    rb_tensor_desc d;
    assert_int_equal(rb_model_tensor(m, 0, &d), 0);
    assert_non_null(strstr(d.file, "model-00001-of-00003.safetensors"));
    assert_int_equal(rb_model_tensor(m, rb_model_tensor(m, -1, NULL) - 1, &d), 0);
    assert_non_null(strstr(d.file, "model-00003-of-00003.safetensors"));
    uint64_t params = rb_model_param_count(m);
    rb_model_close(m);

    /* The index's total_size is the sum of the tensors' bytes. */
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    json_t *idx = json_load_file(path, 0, NULL);
    assert_non_null(idx);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(idx, "metadata"), "total_size")), 2 * params);
    json_decref(idx);

    /* Rewriting unsharded into the same directory removes the stale index. */
    o.shards = 1;
    assert_int_equal(rb_make_model(dir, &o, &err), 0);
    assert_false(rb_path_exists(path));
    check_model(dir, &o);

    o.shards = 10000;
    assert_int_equal(rb_make_model(dir, &o, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "shards"));
    rm_rf(dir);
}

static void test_config_files(void **state) {
    (void)state;
    char dir[256], path[300];
    rb_test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/config.json", dir);
    rb_error err = {0};
    rb_make_model_opts o = {.preset = "llama3", .seed = 1};
    assert_int_equal(rb_make_model(dir, &o, &err), 0);
    json_t *j = json_load_file(path, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "head_dim")), 32);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "rope_scaling"), "rope_type")), "llama3");
    assert_true(json_real_value(json_object_get(j, "rope_theta")) == 500000.0);
    json_decref(j);
    /* llama3 RoPE bands: with theta 5e5 and head_dim 32, some wavelengths 2*pi*theta^(2i/hd) fall
     * below orig/high (2048), some between, some above orig/low (8192). */
    int bands[3] = {0, 0, 0};
    for (int i = 0; i < 16; i++) {
        double wl = 2 * M_PI * pow(500000.0, 2.0 * i / 32);
        bands[wl < 2048 ? 0 : wl > 8192 ? 2 : 1]++;
    }
    assert_true(bands[0] > 0 && bands[1] > 0 && bands[2] > 0);

    o.preset = "tiny";
    assert_int_equal(rb_make_model(dir, &o, &err), 0);
    j = json_load_file(path, 0, NULL);
    assert_null(json_object_get(j, "head_dim")); /* implied by hidden_size / heads */
    assert_true(json_is_null(json_object_get(j, "rope_scaling")));
    assert_int_equal(json_integer_value(json_object_get(j, "bos_token_id")), 256);
    json_decref(j);

    /* tokenizer.json: byte b is id b under GPT-2's byte-to-unicode spelling. */
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    j = json_load_file(path, 0, NULL);
    assert_non_null(j);
    json_t *model = json_object_get(j, "model");
    assert_string_equal(json_string_value(json_object_get(model, "type")), "BPE");
    json_t *vocab = json_object_get(model, "vocab");
    assert_int_equal(json_object_size(vocab), 256);
    assert_int_equal(json_integer_value(json_object_get(vocab, "A")), 65);
    assert_int_equal(json_integer_value(json_object_get(vocab, "\xc4\xa0")), 32);  /* U+0120 'Ġ' is space */
    assert_int_equal(json_integer_value(json_object_get(vocab, "\xc4\x80")), 0);   /* U+0100 */
    assert_int_equal(json_integer_value(json_object_get(vocab, "\xc5\x83")), 173); /* U+0143, the last */
    assert_int_equal(json_integer_value(json_object_get(vocab, "\xc3\xbf")), 255); /* U+00FF itself */
    assert_int_equal(json_array_size(json_object_get(model, "merges")), 0);
    assert_true(json_is_true(json_object_get(model, "ignore_merges")));
    json_t *added = json_object_get(j, "added_tokens");
    assert_int_equal(json_array_size(added), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(added, 1), "id")), 257);
    assert_string_equal(json_string_value(json_object_get(json_array_get(added, 0), "content")), "<|begin_of_text|>");
    json_t *split = json_array_get(json_object_get(json_object_get(j, "pre_tokenizer"), "pretokenizers"), 0);
    const char *re = json_string_value(json_object_get(json_object_get(split, "pattern"), "Regex"));
    assert_non_null(re);
    assert_non_null(strstr(re, "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"));
    json_decref(j);
    rm_rf(dir);
}

static void test_overrides_and_bad_opts(void **state) {
    (void)state;
    char dir[256];
    rb_test_tmpdir(dir, sizeof dir);
    rb_error err = {0};
    rb_make_model_opts o = {
        .preset = "gqa", .seed = 5, .n_layers = 3, .dim = 48, .hidden_dim = 100, .n_heads = 6, .vocab_size = 300};
    assert_int_equal(rb_make_model(dir, &o, &err), 0);
    check_model(dir, &o);
    rb_llama_config c;
    assert_int_equal(rb_make_model_config(&o, &c, &err), 0);
    assert_int_equal(c.n_kv_heads, 2); /* the preset's kv heads are kept (6 % 2 == 0) */
    assert_int_equal(c.head_dim, 8);
    o.preset = NULL; /* tiny, MHA: kv follows heads */
    assert_int_equal(rb_make_model_config(&o, &c, &err), 0);
    assert_int_equal(c.n_kv_heads, 6);

    struct {
        rb_make_model_opts o;
        const char *what;
    } bad[] = {
        {{.preset = "huge"}, "unknown preset 'huge'"},
        {{.dtype = "F64"}, "dtype 'F64'"},
        {{.n_heads = 5}, "--heads 5 does not divide --dim 64"},
        {{.preset = "gqa", .n_kv_heads = 3}, "--kv-heads 3 does not divide --heads 8"},
        {{.vocab_size = 100}, "--vocab 100"},
        {{.dim = -4}, "--dim -4"},
        {{.dim = 12, .n_heads = 4}, "head_dim 3 is odd"},
        {{.shards = -1}, "--shards -1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = rb_make_model(dir, &bad[i].o, &err);
        if (rc != RB_EINVAL || !strstr(err.msg, bad[i].what)) fail_msg("case %zu: %d %s", i, rc, err.msg);
    }
    char file[300];
    snprintf(file, sizeof file, "%s/config.json", dir);
    o = (rb_make_model_opts){.preset = "tiny"};
    assert_int_equal(rb_make_model(file, &o, &err), RB_EIO); /* a file, not a directory */
    assert_non_null(strstr(err.msg, file));
    float x[4];
    assert_int_equal(rb_make_model_tensor(&o, "lm_head.weight", x, 4, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "has 32768 elements"));
    assert_int_equal(rb_make_model_tensor(&o, "nope", x, 4, &err), RB_EINVAL);
    o.preset = "tied";
    assert_int_equal(rb_make_model_tensor(&o, "lm_head.weight", x, 4, &err), RB_EINVAL);
    rm_rf(dir);
}

/* Column RMS of a [rows, cols] matrix. */
static void col_rms(const float *a, size_t rows, size_t cols, double *out) {
    for (size_t j = 0; j < cols; j++) {
        double s = 0;
        for (size_t i = 0; i < rows; i++) s += (double)a[i * cols + j] * a[i * cols + j];
        out[j] = sqrt(s / rows);
    }
}

static void test_outliers(void **state) {
    (void)state;
    rb_error err = {0};
    rb_make_model_opts o = {.preset = "outliers", .seed = 11};
    int ch[8], hch[8], n_ch, n_hch;
    assert_int_equal(rb_make_model_outlier_channels(&o, ch, &n_ch, hch, &n_hch, &err), 0);
    assert_int_equal(n_ch, 3);
    assert_int_equal(n_hch, 2);
    assert_true(ch[0] < ch[1] && ch[1] < ch[2] && ch[2] < 64);
    float *e = malloc(512 * 64 * 4), g[64];
    double rms[64];
    assert_int_equal(rb_make_model_tensor(&o, "model.embed_tokens.weight", e, 512 * 64, &err), 0);
    col_rms(e, 512, 64, rms);
    for (int j = 0, k = 0; j < 64; j++) {
        int planted = k < n_ch && ch[k] == j;
        if (planted) k++;
        if (planted ? rms[j] < 8 : rms[j] > 1.5) fail_msg("channel %d rms %g (planted %d)", j, rms[j], planted);
    }
    assert_int_equal(rb_make_model_tensor(&o, "model.layers.1.input_layernorm.weight", g, 64, &err), 0);
    for (int k = 0; k < n_ch; k++) assert_true(g[ch[k]] > 3.0f);
    free(e);
    o.preset = "tiny";
    assert_int_equal(rb_make_model_outlier_channels(&o, ch, &n_ch, hch, &n_hch, &err), 0);
    assert_int_equal(n_ch + n_hch, 0);
}

static void test_safetensors_writer(void **state) {
    (void)state;
    char dir[256], path[300];
    rb_test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    float a[24], b[3] = {1.0f, -2.5f, 65504.0f};
    for (int i = 0; i < 24; i++) a[i] = (float)i / 7.0f;
    rb_st_write_tensor ts[] = {
        {.name = "a", .dtype = RB_DT_BF16, .ndim = 3, .shape = {2, 3, 4}, .data = a},
        {.name = "b \"quoted\"", .dtype = RB_DT_F16, .ndim = 1, .shape = {3}, .data = b},
        {.name = "c", .dtype = RB_DT_F32, .ndim = 2, .shape = {0, 5}, .data = NULL},
        {.name = "d", .dtype = RB_DT_F32, .ndim = 0, .data = b},
    };
    rb_error err = {0};
    assert_int_equal(rb_safetensors_write(path, ts, 4, &err), 0);
    rb_st_file f;
    assert_int_equal(rb_st_open(&f, path, &err), 0);
    assert_int_equal((8 + f.header_len) % 8, 0);
    const char last = (char)f.map.data[8 + f.header_len - 1];
    assert_true(last == ' ' || last == '}'); /* padded with spaces */
    assert_int_equal(f.n, 4);
    const rb_st_tensor *t = rb_st_find(&f, "a");
    assert_non_null(t);
    assert_int_equal(t->ndim, 3);
    assert_int_equal(t->shape[2], 4);
    assert_int_equal(t->end - t->begin, 48);
    for (int i = 0; i < 24; i++) {
        uint16_t h;
        memcpy(&h, t->data + 2 * i, 2);
        assert_int_equal(h, rb_f32_to_bf16(a[i]));
    }
    t = rb_st_find(&f, "b \"quoted\"");
    assert_non_null(t);
    for (int i = 0; i < 3; i++) {
        uint16_t h;
        memcpy(&h, t->data + 2 * i, 2);
        assert_true(rb_f16_to_f32(h) == b[i]);
    }
    t = rb_st_find(&f, "c");
    assert_int_equal(t->numel, 0);
    assert_null(t->data);
    t = rb_st_find(&f, "d");
    assert_int_equal(t->ndim, 0);
    assert_int_equal(t->numel, 1);
    assert_null(rb_st_find(&f, "e"));
    rb_st_close(&f);

    /* no tensors at all */
    assert_int_equal(rb_safetensors_write(path, NULL, 0, &err), 0);
    assert_int_equal(rb_st_open(&f, path, &err), 0);
    assert_int_equal(f.n, 0);
    rb_st_close(&f);

    rb_st_write_tensor bad_dt = {.name = "x", .dtype = RB_DT_I8, .ndim = 1, .shape = {1}, .data = b};
    assert_int_equal(rb_safetensors_write(path, &bad_dt, 1, &err), RB_EINVAL);
    rb_st_write_tensor dup[2] = {{.name = "x", .dtype = RB_DT_F32, .ndim = 1, .shape = {1}, .data = b},
                                 {.name = "x", .dtype = RB_DT_F32, .ndim = 1, .shape = {1}, .data = b}};
    assert_int_equal(rb_safetensors_write(path, dup, 2, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "tensor x"));
    rb_st_write_tensor nodata = {.name = "x", .dtype = RB_DT_F32, .ndim = 1, .shape = {1}};
    assert_int_equal(rb_safetensors_write(path, &nodata, 1, &err), RB_EINVAL);
    /* a failed write leaves no file behind and the old one intact */
    assert_int_equal(rb_st_open(&f, path, &err), 0);
    rb_st_close(&f);
    snprintf(path, sizeof path, "%s/no/such/dir/t.safetensors", dir);
    assert_int_equal(rb_safetensors_write(path, ts, 1, &err), RB_EIO);
    rm_rf(dir);
}

/* Every finite one of the 65536 fp16 bit patterns, planted in a checkpoint's embedding, loads
 * exactly as rb_f16_to_f32 converts it (the loader may use a SIMD path); Inf and NaN patterns are
 * refused at load, naming the tensor and entry. */
static void test_f16_all_patterns(void **state) {
    (void)state;
    char dir[256], path[300];
    rb_test_tmpdir(dir, sizeof dir);
    rb_make_model_opts o = {.preset = "tiny", .seed = 2, .dtype = "F16", .vocab_size = 1024};
    rb_error err = {0};
    assert_int_equal(rb_make_model(dir, &o, &err), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    rb_st_file f;
    assert_int_equal(rb_st_open(&f, path, &err), 0);
    const rb_st_tensor *t = rb_st_find(&f, "model.embed_tokens.weight");
    assert_non_null(t);
    assert_int_equal(t->numel, 65536);
    long off = (long)(8 + f.header_len + t->begin);
    rb_st_close(&f);
    uint16_t *pat = malloc(65536 * 2);
    for (uint32_t i = 0; i < 65536; i++) pat[i] = (i & 0x7c00u) == 0x7c00u ? 0 : (uint16_t)i; /* finite only */
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, off, SEEK_SET), 0);
    assert_int_equal(fwrite(pat, 2, 65536, fp), 65536);
    fclose(fp);
    free(pat);
    rb_model *m;
    assert_int_equal(rb_model_open(dir, &m, &err), 0);
    float *e = malloc(65536 * 4);
    assert_int_equal(rb_model_load_embedding(m, e, &err), 0);
    for (uint32_t i = 0; i < 65536; i++) {
        float want = rb_f16_to_f32((i & 0x7c00u) == 0x7c00u ? 0 : (uint16_t)i);
        if (memcmp(&want, &e[i], 4) != 0) fail_msg("fp16 0x%04x: got %a, want %a", i, e[i], want);
    }
    int32_t id = 1023;
    float row[64];
    assert_int_equal(rb_model_embed(m, &id, 1, row, &err), 0);
    assert_memory_equal(row, e + 1023 * 64, sizeof row);
    rb_model_close(m);
    /* +Inf (0x7c00) at row 3, column 5 */
    fp = fopen(path, "r+b");
    assert_non_null(fp);
    uint16_t inf = 0x7c00;
    assert_int_equal(fseek(fp, off + 2 * (3 * 64 + 5), SEEK_SET), 0);
    assert_int_equal(fwrite(&inf, 2, 1, fp), 1);
    fclose(fp);
    assert_int_equal(rb_model_open(dir, &m, &err), 0);
    assert_int_equal(rb_model_load_embedding(m, e, &err), RB_EFORMAT);
    assert_non_null(strstr(err.msg, "tensor model.embed_tokens.weight: non-finite value inf at [3][5]"));
    id = 3;
    assert_int_equal(rb_model_embed(m, &id, 1, row, &err), RB_EFORMAT);
    free(e);
    rb_model_close(m);
    /* widths that are not multiples of 8 (the SIMD tail) */
    o = (rb_make_model_opts){.preset = "gqa",
                             .seed = 2,
                             .dtype = "F16",
                             .dim = 36,
                             .n_heads = 2,
                             .n_kv_heads = 1,
                             .hidden_dim = 92,
                             .vocab_size = 259};
    assert_int_equal(rb_make_model(dir, &o, &err), 0);
    check_model(dir, &o);
    rm_rf(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets_roundtrip),
        cmocka_unit_test(test_same_seed_same_bytes),
        cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_config_files),
        cmocka_unit_test(test_overrides_and_bad_opts),
        cmocka_unit_test(test_outliers),
        cmocka_unit_test(test_safetensors_writer),
        cmocka_unit_test(test_f16_all_patterns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

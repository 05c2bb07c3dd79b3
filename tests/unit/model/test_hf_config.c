/* config.json parsing: defaults, Llama-3 rope scaling, token id lists, and each rejection naming
 * the key. Also the writer round-trip. */
#include "rb_test.h"

#include <unistd.h>

#include "model/rb_hf_config.h"

#define BASE                                                                                                           \
    "\"hidden_size\": 64, \"intermediate_size\": 176, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "          \
    "\"vocab_size\": 512"

static int parse(const char *json, rb_llama_config *c, rb_error *err) {
    return rb_hf_config_parse("/m/config.json", json, strlen(json), c, err);
}

static void expect_bad(const char *json, int code, const char *what) {
    rb_llama_config c;
    rb_error err = {0};
    int rc = parse(json, &c, &err);
    if (rc != code) fail_msg("want %d, got %d (%s) for %s", code, rc, err.msg, json);
    if (getenv("RB_TEST_VERBOSE")) fprintf(stderr, "# %s\n", err.msg);
    if (!strstr(err.msg, "/m/config.json: ") || !strstr(err.msg, what))
        fail_msg("message lacks file or '%s': %s", what, err.msg);
}

static void test_defaults(void **state) {
    (void)state;
    rb_llama_config c;
    rb_error err = {0};
    assert_int_equal(parse("{" BASE "}", &c, &err), 0);
    assert_int_equal(c.dim, 64);
    assert_int_equal(c.hidden_dim, 176);
    assert_int_equal(c.n_layers, 2);
    assert_int_equal(c.n_heads, 4);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.vocab_size, 512);
    assert_int_equal(c.max_seq_len, 2048);
    assert_true(c.rms_eps == 1e-6);
    assert_true(c.rope_theta == 10000.0);
    assert_int_equal(c.rope_scaling, 0);
    assert_int_equal(c.tied, 0);
    assert_int_equal(c.bos_id, -1);
    assert_int_equal(c.eos_id, -1);
    assert_string_equal(c.dtype, "");
}

static void test_full(void **state) {
    (void)state;
    rb_llama_config c;
    rb_error err = {0};
    const char *j =
        "{" BASE ", \"num_key_value_heads\": 2, \"head_dim\": 32, \"rms_norm_eps\": 1e-5,"
        " \"rope_theta\": 500000, \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\","
        " \"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008, 128009],"
        " \"max_position_embeddings\": 131072, \"model_type\": \"llama\", \"hidden_act\": \"silu\","
        " \"attention_bias\": false, \"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0,"
        " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}}";
    assert_int_equal(parse(j, &c, &err), 0);
    assert_int_equal(c.n_kv_heads, 2);
    assert_int_equal(c.head_dim, 32);
    assert_true(c.rms_eps == 1e-5);
    assert_true(c.rope_theta == 500000.0);
    assert_int_equal(c.tied, 1);
    assert_string_equal(c.dtype, "BF16");
    assert_int_equal(c.bos_id, 128000);
    assert_int_equal(c.eos_id, 128001);
    assert_int_equal(c.max_seq_len, 131072);
    assert_int_equal(c.rope_scaling, 1);
    assert_true(c.rope_factor == 8.0);
    assert_true(c.rope_low_freq_factor == 1.0);
    assert_true(c.rope_high_freq_factor == 4.0);
    assert_int_equal(c.rope_original_max_pos, 8192);

    /* The old "type" spelling, "default" rope type, head_dim null, transformers-5 dtype key. */
    assert_int_equal(parse("{" BASE ", \"rope_scaling\": {\"type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1,"
                           " \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}}",
                           &c, &err),
                     0);
    assert_int_equal(c.rope_scaling, 1);
    assert_int_equal(parse("{" BASE ", \"rope_scaling\": {\"rope_type\": \"default\"}, \"head_dim\": null,"
                           " \"dtype\": \"float16\"}",
                           &c, &err),
                     0);
    assert_int_equal(c.rope_scaling, 0);
    assert_int_equal(c.head_dim, 16);
    assert_string_equal(c.dtype, "F16");
    /* transformers-5 rope_parameters */
    assert_int_equal(parse("{" BASE ", \"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0,"
                           " \"factor\": 32, \"low_freq_factor\": 1, \"high_freq_factor\": 4,"
                           " \"original_max_position_embeddings\": 8192}}",
                           &c, &err),
                     0);
    assert_true(c.rope_theta == 500000.0);
    assert_true(c.rope_factor == 32.0);
    assert_int_equal(c.rope_scaling, 1);
}

static void test_rejects(void **state) {
    (void)state;
    expect_bad("{" BASE, RB_EFORMAT, "malformed JSON");
    expect_bad("[1]", RB_EFORMAT, "not a JSON object");
    expect_bad("{\"hidden_size\": 64}", RB_ENOTFOUND, "key 'intermediate_size': missing");
    expect_bad("{" BASE ", \"hidden_size\": 64}", RB_EFORMAT, "duplicate");
    expect_bad(
        "{\"hidden_size\": 64.5, \"intermediate_size\": 176, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
        " \"vocab_size\": 512}",
        RB_EFORMAT, "key 'hidden_size': expected a positive integer, got a real");
    expect_bad("{\"hidden_size\": 64, \"intermediate_size\": 176, \"num_hidden_layers\": 0, \"num_attention_heads\": 4,"
               " \"vocab_size\": 512}",
               RB_EFORMAT, "key 'num_hidden_layers': 0 is not a positive");
    expect_bad("{\"hidden_size\": 64, \"intermediate_size\": 176, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
               " \"vocab_size\": 99999999999}",
               RB_EFORMAT, "key 'vocab_size'");
    expect_bad("{" BASE ", \"num_key_value_heads\": 3}", RB_EFORMAT, "key 'num_key_value_heads'");
    expect_bad("{\"hidden_size\": 60, \"intermediate_size\": 176, \"num_hidden_layers\": 2, \"num_attention_heads\": 8,"
               " \"vocab_size\": 512}",
               RB_EFORMAT, "key 'num_attention_heads'");
    expect_bad("{" BASE ", \"head_dim\": 15}", RB_EFORMAT, "key 'head_dim'");
    expect_bad("{" BASE ", \"head_dim\": 4096}", RB_EUNSUPPORTED, "key 'head_dim': 4096 is above the supported 2048");
    expect_bad("{" BASE ", \"rms_norm_eps\": -1}", RB_EFORMAT, "key 'rms_norm_eps'");
    expect_bad("{" BASE ", \"rms_norm_eps\": \"1e-5\"}", RB_EFORMAT, "key 'rms_norm_eps': expected a positive number");
    expect_bad("{" BASE ", \"rope_theta\": 0}", RB_EFORMAT, "key 'rope_theta'");
    expect_bad("{" BASE ", \"tie_word_embeddings\": 1}", RB_EFORMAT, "key 'tie_word_embeddings'");
    expect_bad("{" BASE ", \"bos_token_id\": \"<s>\"}", RB_EFORMAT, "key 'bos_token_id'");
    expect_bad("{" BASE ", \"eos_token_id\": [-1]}", RB_EFORMAT, "key 'eos_token_id'");
    expect_bad("{" BASE ", \"torch_dtype\": \"int8\"}", RB_EFORMAT, "key 'torch_dtype'");
    expect_bad("{" BASE ", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}}", RB_EUNSUPPORTED,
               "key 'rope_scaling.rope_type': 'yarn' is not supported");
    expect_bad("{" BASE ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 4}}", RB_EUNSUPPORTED, "'linear'");
    expect_bad("{" BASE ", \"rope_scaling\": {\"factor\": 4}}", RB_EFORMAT, "key 'rope_scaling.rope_type'");
    expect_bad("{" BASE ", \"rope_scaling\": 3}", RB_EFORMAT, "key 'rope_scaling'");
    expect_bad("{" BASE ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"low_freq_factor\": 1,"
               " \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}}",
               RB_ENOTFOUND, "key 'rope_scaling.factor': missing");
    expect_bad("{" BASE ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4,"
               " \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}}",
               RB_EFORMAT, "key 'rope_scaling.high_freq_factor'");
    expect_bad("{" BASE ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1,"
               " \"high_freq_factor\": 4, \"original_max_position_embeddings\": 0}}",
               RB_EFORMAT, "key 'rope_scaling.original_max_position_embeddings'");
    expect_bad("{" BASE ", \"model_type\": \"qwen2\"}", RB_EUNSUPPORTED, "key 'model_type': 'qwen2'");
    expect_bad("{" BASE ", \"attention_bias\": true}", RB_EUNSUPPORTED, "key 'attention_bias'");
    expect_bad("{" BASE ", \"hidden_act\": \"gelu\"}", RB_EUNSUPPORTED, "key 'hidden_act'");
}

static void assert_config_equal(const rb_llama_config *a, const rb_llama_config *b) {
    assert_int_equal(a->dim, b->dim);
    assert_int_equal(a->hidden_dim, b->hidden_dim);
    assert_int_equal(a->n_layers, b->n_layers);
    assert_int_equal(a->n_heads, b->n_heads);
    assert_int_equal(a->n_kv_heads, b->n_kv_heads);
    assert_int_equal(a->head_dim, b->head_dim);
    assert_int_equal(a->vocab_size, b->vocab_size);
    assert_int_equal(a->max_seq_len, b->max_seq_len);
    assert_true(a->rms_eps == b->rms_eps);
    assert_true(a->rope_theta == b->rope_theta);
    assert_int_equal(a->rope_scaling, b->rope_scaling);
    if (a->rope_scaling) {
        assert_true(a->rope_factor == b->rope_factor);
        assert_true(a->rope_low_freq_factor == b->rope_low_freq_factor);
        assert_true(a->rope_high_freq_factor == b->rope_high_freq_factor);
        assert_int_equal(a->rope_original_max_pos, b->rope_original_max_pos);
    }
    assert_int_equal(a->tied, b->tied);
    assert_int_equal(a->bos_id, b->bos_id);
    assert_int_equal(a->eos_id, b->eos_id);
    assert_string_equal(a->dtype, b->dtype);
}

static void test_write_roundtrip(void **state) {
    (void)state;
    rb_llama_config c = {.dim = 96,
                         .hidden_dim = 344,
                         .n_layers = 3,
                         .n_heads = 6,
                         .n_kv_heads = 3,
                         .head_dim = 16,
                         .vocab_size = 500,
                         .max_seq_len = 4096,
                         .rms_eps = 1e-5,
                         .rope_theta = 500000.0,
                         .rope_scaling = 1,
                         .rope_factor = 8,
                         .rope_low_freq_factor = 1,
                         .rope_high_freq_factor = 4,
                         .rope_original_max_pos = 8192,
                         .tied = 1,
                         .bos_id = 256,
                         .eos_id = 257,
                         .dtype = "BF16"};
    char dir[256], path[300];
    rb_test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/config.json", dir);
    rb_error err = {0};
    assert_int_equal(rb_hf_config_write(path, &c, &err), 0);
    rb_llama_config d;
    assert_int_equal(rb_hf_config_load(path, &d, &err), 0);
    assert_config_equal(&c, &d);
    c.rms_eps = 1.0 / 3.0; /* needs 17 digits */
    c.rope_scaling = 0;
    assert_int_equal(rb_hf_config_write(path, &c, &err), 0);
    assert_int_equal(rb_hf_config_load(path, &d, &err), 0);
    assert_config_equal(&c, &d);
    unlink(path);
    snprintf(path, sizeof path, "%s/missing.json", dir);
    assert_int_equal(rb_hf_config_load(path, &d, &err), RB_ENOTFOUND);
    assert_non_null(strstr(err.msg, path));
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_write_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

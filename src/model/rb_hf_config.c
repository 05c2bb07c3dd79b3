#include "rb_hf_config.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"

/* config.json files are a few KiB; anything this large is not one. */
#define RB_CONFIG_MAX_BYTES ((size_t)16 << 20)

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* Positive int key. Absent or null: *out = def, or RB_ENOTFOUND when def < 0 (required). */
static int get_pos_int(const char *path, json_t *o, const char *key, int def, int *out, rb_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (def < 0) return rb_error_set(err, RB_ENOTFOUND, "%s: key '%s': missing (required)", path, key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v))
        return rb_error_set(err, RB_EFORMAT, "%s: key '%s': expected a positive integer, got %s", path, key,
                            json_kind(v));
    json_int_t x = json_integer_value(v);
    if (x <= 0 || x > INT_MAX)
        return rb_error_set(err, RB_EFORMAT, "%s: key '%s': %lld is not a positive 32-bit integer", path, key,
                            (long long)x);
    *out = (int)x;
    return 0;
}

/* Positive finite number key (integer or real). Absent or null: *out = def, or RB_ENOTFOUND when
 * def < 0. */
static int get_pos_num(const char *path, json_t *o, const char *what, const char *key, double def, double *out,
                       rb_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (def < 0) return rb_error_set(err, RB_ENOTFOUND, "%s: key '%s%s': missing (required)", path, what, key);
        *out = def;
        return 0;
    }
    if (!json_is_number(v))
        return rb_error_set(err, RB_EFORMAT, "%s: key '%s%s': expected a positive number, got %s", path, what, key,
                            json_kind(v));
    double x = json_number_value(v);
    if (!(x > 0) || !isfinite(x))
        return rb_error_set(err, RB_EFORMAT, "%s: key '%s%s': %g is not a positive number", path, what, key, x);
    *out = x;
    return 0;
}

/* Token id: integer, list of integers (first is used, as generation_config does), or null. */
static int get_token_id(const char *path, json_t *o, const char *key, int *out, rb_error *err) {
    json_t *v = json_object_get(o, key);
    *out = -1;
    if (!v || json_is_null(v)) return 0;
    if (json_is_array(v)) {
        if (json_array_size(v) == 0) return 0;
        v = json_array_get(v, 0);
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT_MAX)
        return rb_error_set(err, RB_EFORMAT, "%s: key '%s': expected a non-negative integer or a list of them", path,
                            key);
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_bool(const char *path, json_t *o, const char *key, int def, int *out, rb_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return rb_error_set(err, RB_EFORMAT, "%s: key '%s': expected true or false, got %s", path, key, json_kind(v));
    *out = json_is_true(v);
    return 0;
}

static const char *dtype_from_torch(const char *s) {
    if (strcmp(s, "float32") == 0) return "F32";
    if (strcmp(s, "float16") == 0) return "F16";
    if (strcmp(s, "bfloat16") == 0) return "BF16";
    return NULL;
}

/* rope_scaling (or transformers-5 rope_parameters): only "llama3" changes anything. */
static int parse_rope_scaling(const char *path, json_t *rs, const char *key, rb_llama_config *c, rb_error *err) {
    if (!rs || json_is_null(rs)) return 0;
    if (!json_is_object(rs))
        return rb_error_set(err, RB_EFORMAT, "%s: key '%s': expected an object or null, got %s", path, key,
                            json_kind(rs));
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type"); /* the pre-4.43 spelling */
    if (!json_is_string(t))
        return rb_error_set(err, RB_EFORMAT, "%s: key '%s.rope_type': missing or not a string", path, key);
    const char *type = json_string_value(t);
    if (strcmp(type, "default") == 0) return 0;
    if (strcmp(type, "llama3") != 0)
        return rb_error_set(err, RB_EUNSUPPORTED, "%s: key '%s.rope_type': '%s' is not supported (only llama3)", path,
                            key, type);
    char what[64];
    snprintf(what, sizeof what, "%s.", key);
    int rc = get_pos_num(path, rs, what, "factor", -1, &c->rope_factor, err);
    if (!rc) rc = get_pos_num(path, rs, what, "low_freq_factor", -1, &c->rope_low_freq_factor, err);
    if (!rc) rc = get_pos_num(path, rs, what, "high_freq_factor", -1, &c->rope_high_freq_factor, err);
    if (rc) return rc;
    json_t *om = json_object_get(rs, "original_max_position_embeddings");
    if (!om)
        return rb_error_set(err, RB_ENOTFOUND, "%s: key '%s.original_max_position_embeddings': missing (required)",
                            path, key);
    if (!json_is_integer(om) || json_integer_value(om) <= 0 || json_integer_value(om) > INT_MAX)
        return rb_error_set(err, RB_EFORMAT,
                            "%s: key '%s.original_max_position_embeddings': expected a positive integer", path, key);
    c->rope_original_max_pos = (int)json_integer_value(om);
    /* The smoothing between the two bands divides by (high - low). */
    if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
        return rb_error_set(err, RB_EFORMAT, "%s: key '%s.high_freq_factor': %g must exceed low_freq_factor %g", path,
                            key, c->rope_high_freq_factor, c->rope_low_freq_factor);
    c->rope_scaling = 1;
    return 0;
}

static int parse_root(const char *path, json_t *root, rb_llama_config *c, rb_error *err) {
    json_t *v = json_object_get(root, "model_type");
    if (v && !json_is_string(v))
        return rb_error_set(err, RB_EFORMAT, "%s: key 'model_type': expected a string, got %s", path, json_kind(v));
    /* Other architectures (qwen2, mistral, ...) differ in biases, windows or norms that this
     * reader would silently drop. */
    if (v && strcmp(json_string_value(v), "llama") != 0)
        return rb_error_set(err, RB_EUNSUPPORTED, "%s: key 'model_type': '%s' is not supported (only llama)", path,
                            json_string_value(v));
    int rc;
    if ((rc = get_pos_int(path, root, "hidden_size", -1, &c->dim, err)) ||
        (rc = get_pos_int(path, root, "intermediate_size", -1, &c->hidden_dim, err)) ||
        (rc = get_pos_int(path, root, "num_hidden_layers", -1, &c->n_layers, err)) ||
        (rc = get_pos_int(path, root, "num_attention_heads", -1, &c->n_heads, err)) ||
        (rc = get_pos_int(path, root, "num_key_value_heads", c->n_heads, &c->n_kv_heads, err)) ||
        (rc = get_pos_int(path, root, "vocab_size", -1, &c->vocab_size, err)) ||
        (rc = get_pos_int(path, root, "max_position_embeddings", 2048, &c->max_seq_len, err)))
        return rc;
    json_t *hd = json_object_get(root, "head_dim");
    if (!hd || json_is_null(hd)) {
        if (c->dim % c->n_heads != 0)
            return rb_error_set(err, RB_EFORMAT,
                                "%s: key 'num_attention_heads': %d does not divide hidden_size %d (and no head_dim)",
                                path, c->n_heads, c->dim);
        c->head_dim = c->dim / c->n_heads;
    } else if ((rc = get_pos_int(path, root, "head_dim", 0, &c->head_dim, err))) {
        return rc;
    }
    if (c->head_dim % 2 != 0)
        return rb_error_set(err, RB_EFORMAT, "%s: key 'head_dim': %d is odd; RoPE rotates pairs", path, c->head_dim);
    if (c->head_dim > RB_MAX_HEAD_DIM)
        return rb_error_set(err, RB_EUNSUPPORTED, "%s: key 'head_dim': %d is above the supported %d%s", path,
                            c->head_dim, RB_MAX_HEAD_DIM, hd && !json_is_null(hd) ? "" : " (hidden_size / num_attention_heads)");
    if (c->n_heads % c->n_kv_heads != 0)
        return rb_error_set(err, RB_EFORMAT, "%s: key 'num_key_value_heads': %d does not divide num_attention_heads %d",
                            path, c->n_kv_heads, c->n_heads);
    if ((long long)c->n_heads * c->head_dim > INT_MAX)
        return rb_error_set(err, RB_EFORMAT, "%s: key 'head_dim': num_attention_heads x head_dim overflows", path);

    json_t *rp = json_object_get(root, "rope_parameters");
    if (rp && !json_is_null(rp) && !json_is_object(rp))
        return rb_error_set(err, RB_EFORMAT, "%s: key 'rope_parameters': expected an object, got %s", path,
                            json_kind(rp));
    double theta_def = 10000.0;
    if (json_is_object(rp) && (rc = get_pos_num(path, rp, "rope_parameters.", "rope_theta", 10000.0, &theta_def, err)))
        return rc;
    if ((rc = get_pos_num(path, root, "", "rms_norm_eps", 1e-6, &c->rms_eps, err)) ||
        (rc = get_pos_num(path, root, "", "rope_theta", theta_def, &c->rope_theta, err)))
        return rc;
    json_t *rs = json_object_get(root, "rope_scaling");
    if (rs && !json_is_null(rs))
        rc = parse_rope_scaling(path, rs, "rope_scaling", c, err);
    else if (json_is_object(rp))
        rc = parse_rope_scaling(path, rp, "rope_parameters", c, err);
    if (rc) return rc;

    if ((rc = get_bool(path, root, "tie_word_embeddings", 0, &c->tied, err)) ||
        (rc = get_token_id(path, root, "bos_token_id", &c->bos_id, err)) ||
        (rc = get_token_id(path, root, "eos_token_id", &c->eos_id, err)))
        return rc;
    static const char *const no_bias[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        int b;
        if ((rc = get_bool(path, root, no_bias[i], 0, &b, err))) return rc;
        if (b) return rb_error_set(err, RB_EUNSUPPORTED, "%s: key '%s': biases are not supported", path, no_bias[i]);
    }
    v = json_object_get(root, "hidden_act");
    if (v && !json_is_string(v))
        return rb_error_set(err, RB_EFORMAT, "%s: key 'hidden_act': expected a string, got %s", path, json_kind(v));
    if (v && strcmp(json_string_value(v), "silu") != 0)
        return rb_error_set(err, RB_EUNSUPPORTED, "%s: key 'hidden_act': '%s' is not supported (only silu)", path,
                            json_string_value(v));
    v = json_object_get(root, "torch_dtype");
    if (!v || json_is_null(v)) v = json_object_get(root, "dtype"); /* transformers >= 4.56 */
    if (v && !json_is_null(v)) {
        const char *d = json_is_string(v) ? dtype_from_torch(json_string_value(v)) : NULL;
        if (!d)
            return rb_error_set(err, RB_EFORMAT,
                                "%s: key 'torch_dtype': expected \"float32\", \"float16\" or \"bfloat16\"", path);
        snprintf(c->dtype, sizeof c->dtype, "%s", d);
    }
    return 0;
}

int rb_hf_config_parse(const char *path, const char *text, size_t len, rb_llama_config *c, rb_error *err) {
    memset(c, 0, sizeof *c);
    c->bos_id = c->eos_id = -1;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return rb_error_set(err, RB_EFORMAT, "%s: malformed JSON: %s (line %d, column %d)", path, jerr.text, jerr.line,
                            jerr.column);
    int rc = json_is_object(root) ? parse_root(path, root, c, err)
                                  : rb_error_set(err, RB_EFORMAT, "%s: top level is not a JSON object", path);
    json_decref(root);
    return rc;
}

int rb_hf_config_load(const char *path, rb_llama_config *c, rb_error *err) {
    char *text;
    size_t len;
    int rc = rb_read_file(path, RB_CONFIG_MAX_BYTES, &text, &len, err);
    if (rc) return rc;
    rc = rb_hf_config_parse(path, text, len, c, err);
    free(text);
    return rc;
}

/* Smallest %g precision >= `from` that parses back to exactly `x`. */
static int shortest_precision(double x, int from) {
    char buf[64];
    for (int p = from; p < 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, x);
        if (strtod(buf, NULL) == x) return p;
    }
    return 17;
}

static int set_num(json_t *o, const char *key, double x) { return json_object_set_new(o, key, json_real(x)); }
static int set_int(json_t *o, const char *key, long long x) { return json_object_set_new(o, key, json_integer(x)); }

int rb_hf_config_write(const char *path, const rb_llama_config *c, rb_error *err) {
    const char *torch = strcmp(c->dtype, "BF16") == 0  ? "bfloat16"
                        : strcmp(c->dtype, "F16") == 0 ? "float16"
                                                       : "float32";
    json_t *o = json_object(), *arch = json_array(), *rs = NULL;
    int bad =
        !o || !arch || json_array_append_new(arch, json_string("LlamaForCausalLM")) ||
        json_object_set_new(o, "architectures", arch) || json_object_set_new(o, "model_type", json_string("llama")) ||
        set_int(o, "hidden_size", c->dim) || set_int(o, "intermediate_size", c->hidden_dim) ||
        set_int(o, "num_hidden_layers", c->n_layers) || set_int(o, "num_attention_heads", c->n_heads) ||
        set_int(o, "num_key_value_heads", c->n_kv_heads) || set_int(o, "vocab_size", c->vocab_size) ||
        set_int(o, "max_position_embeddings", c->max_seq_len) || set_num(o, "rms_norm_eps", c->rms_eps) ||
        set_num(o, "rope_theta", c->rope_theta) || json_object_set_new(o, "hidden_act", json_string("silu")) ||
        json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tied)) ||
        json_object_set_new(o, "attention_bias", json_false()) || json_object_set_new(o, "mlp_bias", json_false()) ||
        json_object_set_new(o, "torch_dtype", json_string(torch));
    /* head_dim only when hidden_size / heads does not imply it, as in transformers' own configs. */
    if (!bad && (c->n_heads <= 0 || c->dim % c->n_heads != 0 || c->head_dim != c->dim / c->n_heads))
        bad = set_int(o, "head_dim", c->head_dim);
    if (!bad && c->bos_id >= 0) bad = set_int(o, "bos_token_id", c->bos_id);
    if (!bad && c->eos_id >= 0) bad = set_int(o, "eos_token_id", c->eos_id);
    if (!bad && c->rope_scaling) {
        rs = json_object();
        bad = !rs || json_object_set_new(rs, "rope_type", json_string("llama3")) ||
              set_num(rs, "factor", c->rope_factor) || set_num(rs, "low_freq_factor", c->rope_low_freq_factor) ||
              set_num(rs, "high_freq_factor", c->rope_high_freq_factor) ||
              set_int(rs, "original_max_position_embeddings", c->rope_original_max_pos) ||
              json_object_set_new(o, "rope_scaling", rs);
    } else if (!bad) {
        bad = json_object_set_new(o, "rope_scaling", json_null());
    }
    /* jansson prints reals with one fixed precision; use the smallest that round-trips every real
     * here, so 1e-05 is written as 1e-05 and not 1.0000000000000001e-05. */
    double reals[] = {c->rms_eps, c->rope_theta, c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor};
    int prec = 6;
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++) prec = shortest_precision(reals[i], prec);
    char *s = bad ? NULL : json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(prec));
    json_decref(o);
    if (!s) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    }
    s = t;
    s[n++] = '\n';
    s[n] = '\0';
    int rc = rb_write_file(path, s, n, err);
    free(s);
    return rc;
}

/* rotbench inspect / logits / make-model. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/rb_file.h"
#include "model/rb_forward.h"
#include "model/rb_make_model.h"
#include "model/rb_model.h"
#include "rotate/rb_had_plan.h"
#include "model/rb_stream.h"

static json_t *had_plan_json(const char *what, long n) {
    rb_had_plan p;
    rb_had_plan_make(n, &p);
    json_t *j = json_pack("{s:s, s:I, s:I, s:i, s:s}", "width", what, "n", (json_int_t)n, "m", (json_int_t)p.m,
                          "k", p.k, "construction", rb_had_kind_name(p.kind));
    if (p.q) json_object_set_new(j, "q", json_sprintf("%ld = %ld^%d", p.q, p.p, p.e));
    if (p.kind == RB_HAD_TABLE) json_object_set_new(j, "table", json_sprintf("had%ld.txt", p.m));
    json_object_set_new(j, "factorization", json_sprintf("%ld = %ld*2^%d", n, p.m, p.k));
    return j;
}

int rb_cmd_inspect(int argc, char **argv) {
    rb_error err = {0};
    rb_args a;
    rb_model *m = NULL;
    if (rb_args_init(&a, "inspect", argc, argv)) return RB_EXIT_FAIL;
    const char *path = rb_args_pos(&a, 0);
    if (rb_args_finish(&a, 1, &err)) goto fail;
    if (!path) {
        rb_error_set(&err, RB_EINVAL, "inspect: usage: rotbench inspect MODEL");
        goto fail;
    }
    if (rb_model_open(path, &m, &err)) goto fail;
    const rb_llama_config *c = rb_model_config(m);
    json_t *cfg = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:s, s:i, s:i}", "dim", c->dim,
                            "hidden_dim", c->hidden_dim, "n_layers", c->n_layers, "n_heads", c->n_heads, "n_kv_heads",
                            c->n_kv_heads, "head_dim", c->head_dim, "vocab_size", c->vocab_size, "max_seq_len",
                            c->max_seq_len, "rms_eps", c->rms_eps, "rope_theta", c->rope_theta, "tied", c->tied,
                            "dtype", c->dtype, "bos_id", c->bos_id, "eos_id", c->eos_id);
    if (c->rope_scaling)
        json_object_set_new(cfg, "rope_scaling",
                            json_pack("{s:s, s:f, s:f, s:f, s:i}", "rope_type", "llama3", "factor", c->rope_factor,
                                      "low_freq_factor", c->rope_low_freq_factor, "high_freq_factor",
                                      c->rope_high_freq_factor, "original_max_position_embeddings",
                                      c->rope_original_max_pos));
    json_t *tensors = json_array();
    int nt = rb_model_tensor(m, -1, NULL);
    for (int i = 0; i < nt; i++) {
        rb_tensor_desc d;
        if (rb_model_tensor(m, i, &d)) continue;
        json_t *shape = json_array();
        for (int k = 0; k < d.ndim; k++) json_array_append_new(shape, json_integer(d.shape[k]));
        json_array_append_new(tensors, json_pack("{s:s, s:o, s:s, s:I, s:s}", "name", d.name, "shape", shape, "dtype",
                                                 d.dtype, "bytes", (json_int_t)d.nbytes, "file", d.file ? d.file : ""));
    }
    json_t *had = json_array();
    json_array_append_new(had, had_plan_json("hidden (R1)", c->dim));
    json_array_append_new(had, had_plan_json("intermediate (R4)", c->hidden_dim));
    json_array_append_new(had, had_plan_json("head_dim (R2/R3)", c->head_dim));
    json_array_append_new(had, had_plan_json("n_heads (cross-head)", c->n_heads));
    json_t *j = json_pack("{s:s, s:s, s:o, s:I, s:o, s:o}", "path", path, "format",
                          rb_model_kind(m) == RB_MODEL_HF     ? "hf"
                          : rb_model_kind(m) == RB_MODEL_GGUF ? "gguf"
                                                              : "llama2c", "config", cfg, "parameters",
                          (json_int_t)rb_model_param_count(m), "hadamard", had, "tensors", tensors);
    rb_cli_print_json(j, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    rb_model_close(m);
    rb_args_free(&a);
    return RB_EXIT_OK;
fail:
    if (m) rb_model_close(m);
    rb_args_free(&a);
    return rb_cli_fail(&err);
}

int rb_cmd_logits(int argc, char **argv) {
    rb_error err = {0};
    rb_args a;
    rb_model *m = NULL;
    int32_t *ids = NULL;
    float *hn = NULL, *head = NULL, *out = NULL;
    size_t n = 0;
    if (rb_args_init(&a, "logits", argc, argv)) return RB_EXIT_FAIL;
    const char *idf = rb_args_str(&a, "ids", &err);
    const char *outf = rb_args_str(&a, "out", &err);
    const char *path = rb_args_pos(&a, 0);
    if (err.code || rb_args_finish(&a, 1, &err)) goto fail;
    if (!path || !idf || !outf) {
        rb_error_set(&err, RB_EINVAL, "logits: usage: rotbench logits MODEL --ids FILE --out FILE");
        goto fail;
    }
    if (rb_model_open(path, &m, &err)) goto fail;
    const rb_llama_config *c = rb_model_config(m);
    if (rb_read_ids(idf, &ids, &n, &err)) goto fail;
    if (n > (1u << 20)) {
        rb_error_set(&err, RB_EINVAL, "%s: %zu ids is more than one sequence can hold here", idf, n);
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size) {
            rb_error_set(&err, RB_EINVAL, "%s: id %d at index %zu is outside the vocabulary [0, %d)", idf, ids[i], i,
                         c->vocab_size);
            goto fail;
        }
    hn = rb_alloc(n * (size_t)c->dim * sizeof(float));
    head = rb_alloc((size_t)c->vocab_size * c->dim * sizeof(float));
    out = rb_alloc(n * (size_t)c->vocab_size * sizeof(float));
    if (!hn || !head || !out) {
        rb_error_set(&err, RB_ENOMEM, "logits: out of memory");
        goto fail;
    }
    rb_weights_src src = rb_weights_from_model(m);
    if (rb_llama_hidden(&src, c, ids, 1, (int)n, 0, NULL, hn, &err)) goto fail;
    if (rb_model_load_lm_head(m, head, &err)) goto fail;
    rb_llama_logits(hn, n, head, c, out);
    if (rb_write_file(outf, out, n * (size_t)c->vocab_size * sizeof(float), &err)) goto fail;
    printf("{\"tokens\": %zu, \"vocab\": %d, \"out\": \"%s\"}\n", n, c->vocab_size, outf);
    rb_free(hn);
    rb_free(head);
    rb_free(out);
    free(ids);
    rb_model_close(m);
    rb_args_free(&a);
    return RB_EXIT_OK;
fail:
    rb_free(hn);
    rb_free(head);
    rb_free(out);
    free(ids);
    if (m) rb_model_close(m);
    rb_args_free(&a);
    return rb_cli_fail(&err);
}

/* Shared by fuzz_llama2c.c and fuzz_gguf.c: opens a checkpoint file with rb_model_open and
 * materializes everything through the rb_model_* API (every layer, embedding rows, the whole
 * embedding, final norm, lm_head, the tensor listing). Inputs whose config implies more than
 * FZ_MODEL_MAX_BYTES of fp32 buffers are opened but not loaded, so that a valid-looking header
 * cannot make the target allocate huge memory (libFuzzer's -rss_limit_mb would report it). */
#ifndef FUZZ_MODEL_H
#define FUZZ_MODEL_H

#include "fuzz_util.h"
#include "model/rb_model.h"

#define FZ_MODEL_MAX_BYTES ((uint64_t)64 << 20)

/* fp32 bytes that loading implies: one layer + embedding + lm_head + final norm; UINT64_MAX when absurd. */
static uint64_t fz_model_bytes(const rb_llama_config *c) {
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->head_dim <= 0 || c->vocab_size <= 0)
        return UINT64_MAX;
    uint64_t D = (uint64_t)c->dim, H = (uint64_t)c->hidden_dim, V = (uint64_t)c->vocab_size;
    uint64_t q = (uint64_t)c->n_heads * (uint64_t)c->head_dim, kv = (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim;
    /* each factor < 2^31, products < 2^63 */
    uint64_t layer = 2 * D + q * D + 2 * kv * D + D * q + 3 * H * D;
    uint64_t all = layer + 2 * V * D + D;
    return all * 4;
}

static void fz_model_exercise(const char *path) {
    rb_model *m = NULL;
    rb_error err;
    if (fz_note("rb_model_open", rb_model_open(path, &m, &err), &err) != 0) {
        if (m) abort(); /* documented: *out is NULL on failure */
        return;
    }
    const rb_llama_config *c = rb_model_config(m);
    (void)rb_model_kind(m);
    (void)rb_model_param_count(m);
    (void)rb_model_dir(m);
    int nt = rb_model_tensor(m, -1, NULL);
    for (int i = 0; i < nt; i++) {
        rb_tensor_desc d;
        (void)rb_model_tensor(m, i, &d);
    }
    if (fz_model_bytes(c) <= FZ_MODEL_MAX_BYTES) {
        rb_layer_weights w;
        memset(&w, 0, sizeof w);
        if (rb_layer_weights_init(&w, c, &err) == 0) {
            for (int l = 0; l < c->n_layers; l++)
                if (fz_note("rb_model_load_layer", rb_model_load_layer(m, l, &w, &err), &err) != 0) break;
            rb_layer_weights_free(&w);
        }
        size_t D = (size_t)c->dim, V = (size_t)c->vocab_size;
        float *buf = malloc(V * D * sizeof(float));
        if (buf) {
            int32_t ids[4] = {0, (int32_t)(V - 1), (int32_t)(V / 2), 0};
            (void)rb_model_embed(m, ids, 4, buf, &err);
            (void)fz_note("rb_model_load_embedding", rb_model_load_embedding(m, buf, &err), &err);
            (void)rb_model_load_lm_head(m, buf, &err);
            (void)rb_model_load_final_norm(m, buf, &err);
            free(buf);
        }
    }
    rb_model_close(m);
}

#endif

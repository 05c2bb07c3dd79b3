/* rb_export_hf: the exported model as a Hugging Face Llama directory (contract in rb_export.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"
#include "export/rb_export.h"
#include "model/rb_hf_config.h"
#include "model/rb_safetensors.h"

typedef struct tensor_src {
    rb_export_layer_cache *lc;
    int layer, slot; /* slot: 0..8 RB_W_* order of a layer, or one of the model-level kinds below */
} tensor_src;

enum { T_EMBED = 100, T_NORM, T_LM_HEAD };

/* HF names of a layer's tensors, in the rb_layer_weights order. */
static const char *const layer_fmt[9] = {
    "model.layers.%d.input_layernorm.weight", "model.layers.%d.self_attn.q_proj.weight",
    "model.layers.%d.self_attn.k_proj.weight", "model.layers.%d.self_attn.v_proj.weight",
    "model.layers.%d.self_attn.o_proj.weight", "model.layers.%d.post_attention_layernorm.weight",
    "model.layers.%d.mlp.gate_proj.weight",     "model.layers.%d.mlp.up_proj.weight",
    "model.layers.%d.mlp.down_proj.weight"};

/* Slot s of w with its HF shape (vectors [dim]; linears [rows][cols]). */
static float *slot(rb_layer_weights *w, const rb_llama_config *c, int s, int *ndim, int64_t shape[2]) {
    if (s == 0 || s == 5) {
        *ndim = 1;
        shape[0] = c->dim;
        return s == 0 ? w->rms_att : w->rms_ffn;
    }
    static const int lin_of_slot[9] = {-1, RB_LIN_Q, RB_LIN_K, RB_LIN_V, RB_LIN_O, -1, RB_LIN_GATE, RB_LIN_UP, RB_LIN_DOWN};
    int rows, cols;
    float *m = rb_layer_linear(w, c, lin_of_slot[s], &rows, &cols);
    *ndim = 2;
    shape[0] = rows;
    shape[1] = cols;
    return m;
}

static int fill(void *ctx, float *out, rb_error *err) {
    tensor_src *t = ctx;
    const rb_export_in *in = t->lc->in;
    switch (t->slot) {
    case T_EMBED: return rb_export_load_embedding(in, out, err);
    case T_NORM: return in->src->load_final_norm(in->src->ctx, out, err);
    case T_LM_HEAD: return in->src->load_lm_head(in->src->ctx, out, err);
    default: break;
    }
    rb_export_layer_cache *lc = t->lc;
    int rc = rb_export_layer_cache_get(lc, t->layer, err);
    if (rc) return rc;
    int nd;
    int64_t sh[2];
    const float *m = slot(&lc->w, &in->cfg, t->slot, &nd, sh);
    memcpy(out, m, (size_t)sh[0] * (size_t)(nd == 2 ? sh[1] : 1) * sizeof(float));
    return 0;
}

int rb_export_hf(const rb_export_in *in, const char *dir, rb_error *err) {
    const rb_llama_config *c = &in->cfg;
    if (in->dtype != RB_DT_F32 && in->dtype != RB_DT_F16 && in->dtype != RB_DT_BF16)
        return rb_error_set(err, RB_EINVAL, "hf: dtype %s: expected F32, F16 or BF16", rb_dtype_name(in->dtype));
    const size_t n = 3 + (size_t)c->n_layers * 9;
    rb_st_write_tensor *w = calloc(n, sizeof *w);
    tensor_src *ts = calloc(n, sizeof *ts);
    char *names = calloc(n, 64);
    rb_export_layer_cache lc = {0};
    int rc = !w || !ts || !names ? rb_error_set(err, RB_ENOMEM, "hf: out of memory") : 0;
    if (!rc) rc = rb_export_layer_cache_init(&lc, in, err);
    size_t k = 0;
    for (int i = -1; i <= c->n_layers && !rc; i++) {
        /* embedding first, the layers, then the final norm and lm_head (transformers' order) */
        int count = i < 0 ? 1 : i == c->n_layers ? 2 : 9;
        for (int s = 0; s < count; s++, k++) {
            char *nm = names + k * 64;
            ts[k].lc = &lc;
            ts[k].layer = i;
            w[k].dtype = in->dtype;
            w[k].fill = fill;
            w[k].ctx = &ts[k];
            if (i < 0 || i == c->n_layers) {
                int kind = i < 0 ? T_EMBED : s == 0 ? T_NORM : T_LM_HEAD;
                ts[k].slot = kind;
                snprintf(nm, 64, "%s", kind == T_EMBED ? "model.embed_tokens.weight" : kind == T_NORM ? "model.norm.weight" : "lm_head.weight");
                w[k].ndim = kind == T_NORM ? 1 : 2;
                w[k].shape[0] = kind == T_NORM ? c->dim : c->vocab_size;
                w[k].shape[1] = c->dim;
            } else {
                ts[k].slot = s;
                snprintf(nm, 64, layer_fmt[s], i);
                slot(&lc.w, c, s, &w[k].ndim, w[k].shape);
            }
            w[k].name = nm;
        }
    }
    if (!rc) {
        rb_llama_config hc = *c;
        hc.tied = 0;
        snprintf(hc.dtype, sizeof hc.dtype, "%s", rb_dtype_name(in->dtype));
        char *cp = rb_path_join(dir, "config.json");
        rc = cp ? rb_hf_config_write(cp, &hc, err) : rb_error_set(err, RB_ENOMEM, "hf: out of memory");
        free(cp);
    }
    if (!rc) rc = rb_safetensors_write_dir(dir, w, k, in->max_shard_bytes, NULL, err);
    rb_export_layer_cache_free(&lc);
    free(w);
    free(ts);
    free(names);
    return rc;
}

/* rb_make_model: small synthetic HF-format Llama checkpoints (config.json, model.safetensors or
 * shards + model.safetensors.index.json, tokenizer.json) generated from a seed, so tests and
 * experiments can cover GQA, tied embeddings, Llama-3 RoPE scaling, odd widths and outlier
 * channels without downloading anything. Same options and seed ⇒ byte-identical files. */
#ifndef RB_MAKE_MODEL_H
#define RB_MAKE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_error.h"
#include "rb_model.h"

typedef struct rb_make_model_opts {
    const char *preset; /* one of rb_make_model_presets(); NULL means "tiny" */
    uint64_t seed;
    const char *dtype;  /* "F32" (NULL means this), "F16" or "BF16" */
    int shards;         /* 0 or 1: one model.safetensors; N > 1: N shards + index */
    /* Overrides of the preset; 0 keeps the preset's value. head_dim stays the preset's when it
     * sets one explicitly (llama3), else it is dim / n_heads. */
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size;
} rb_make_model_opts;

/* Writes the model described by `o` into `out_dir` (created if missing, one level; files of the
 * other single/sharded layout left there are removed so the directory opens as what was just
 * written). Errors: RB_EINVAL (unknown preset/dtype, inconsistent sizes, vocab < 258, more
 * shards than tensors), RB_EIO, RB_ENOMEM. */
int rb_make_model(const char *out_dir, const rb_make_model_opts *o, rb_error *err);

/* NULL-terminated list of preset names. */
const char *const *rb_make_model_presets(void);
/* One-line description of a preset, NULL when `name` is not one. */
const char *rb_make_model_preset_desc(const char *name);

/* The config `o` produces (preset + overrides), validated as rb_make_model does. */
int rb_make_model_config(const rb_make_model_opts *o, rb_llama_config *c, rb_error *err);

/* fp32 values (before F16/BF16 rounding) of HF tensor `name` in the model `o` produces, into
 * out[n]; n must equal the tensor's element count. Lets tests check loaded weights exactly.
 * Errors: RB_EINVAL (bad options, unknown name — including lm_head.weight when tied — or n). */
int rb_make_model_tensor(const rb_make_model_opts *o, const char *name, float *out, size_t n, rb_error *err);

/* Residual channels (and FFN hidden channels) the "outliers" preset plants, ascending, into
 * ch[*n_ch] and hch[*n_hch] (room for 8 each). Both counts are 0 for other presets. */
int rb_make_model_outlier_channels(const rb_make_model_opts *o, int *ch, int *n_ch, int *hch, int *n_hch,
                                   rb_error *err);

/* Writes the minimal byte-level BPE tokenizer.json rb_make_model uses: ids 0..255 are the bytes
 * (GPT-2 byte-to-unicode spelling), no merges, 256 <|begin_of_text|>, 257 <|end_of_text|>, the
 * Llama-3 pre-tokenizer regex. */
int rb_make_model_write_tokenizer(const char *path, rb_error *err);

#endif

/* rb_model: a Llama checkpoint opened for layer-at-a-time fp32 materialization.
 *
 * Sources: a Hugging Face directory (config.json + model.safetensors or a sharded
 * model.safetensors.index.json; F32/F16/BF16) or a llama2.c legacy `.bin` file. Files are
 * memory-mapped and every size/offset is validated at open time, so the load functions below
 * cannot read out of bounds. llama2.c's and GGUF's interleaved-pair RoPE layout is converted on load
 * (q/k rows permuted per head to HF's rotate_half layout), so the forward pass knows one
 * convention only. */
#ifndef RB_MODEL_H
#define RB_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_error.h"

typedef struct rb_llama_config {
    int dim;          /* hidden_size */
    int hidden_dim;   /* intermediate_size */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;     /* config head_dim, else dim / n_heads */
    int vocab_size;
    int max_seq_len;  /* max_position_embeddings (informational) */
    double rms_eps;
    double rope_theta;
    /* Llama-3.1 "llama3" rope scaling; rope_scaling == 0 means none. */
    int rope_scaling;
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
    int tied;         /* lm_head shares the embedding matrix */
    int bos_id, eos_id; /* -1 when unknown */
    char dtype[16];   /* storage dtype of the checkpoint: "F32", "F16", "BF16" */
} rb_llama_config;

/* One decoder layer in fp32, row-major, HF layout (y = x Wᵀ). Caller-owned via
 * rb_layer_weights_init/free; buffers are reused across layers. */
typedef struct rb_layer_weights {
    float *rms_att;  /* [dim] */
    float *wq;       /* [n_heads*head_dim, dim] */
    float *wk;       /* [n_kv_heads*head_dim, dim] */
    float *wv;       /* [n_kv_heads*head_dim, dim] */
    float *wo;       /* [dim, n_heads*head_dim] */
    float *rms_ffn;  /* [dim] */
    float *w_gate;   /* [hidden_dim, dim] */
    float *w_up;     /* [hidden_dim, dim] */
    float *w_down;   /* [dim, hidden_dim] */
} rb_layer_weights;

/* The seven linears of a layer, in HF order (also the order of rb_qeval's results). */
/* Largest head_dim accepted at load: the RoPE tables of rb_forward hold head_dim/2 frequencies in a
 * fixed buffer; real models use 64..256. Checked by every reader (the error names the key). */
#define RB_MAX_HEAD_DIM 2048

enum { RB_LIN_Q = 0, RB_LIN_K, RB_LIN_V, RB_LIN_O, RB_LIN_GATE, RB_LIN_UP, RB_LIN_DOWN, RB_LIN_COUNT };

/* "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" for RB_LIN_*. */
const char *rb_linear_name(int lin);

/* HF shape [*rows][*cols] of linear `lin` (RB_LIN_*); RB_ASSERTs lin in range. */
void rb_layer_linear_shape(const rb_llama_config *c, int lin, int *rows, int *cols);
/* Weight matrix of linear `lin` inside w, with its shape. */
float *rb_layer_linear(const rb_layer_weights *w, const rb_llama_config *c, int lin, int *rows, int *cols);

enum { RB_MODEL_HF = 1, RB_MODEL_LLAMA2C = 2, RB_MODEL_GGUF = 3 };

typedef struct rb_model rb_model; /* opaque; defined in rb_model_internal.h */

/* Opens a checkpoint: a directory is read as HF (plain, or GPTQ-packed linears dequantized on load),
 * a `.gguf` file as GGUF (F32/F16/BF16 tensors), another file as llama2.c `.bin`. On failure *out is
 * NULL and err names the file and the tensor/key. Errors: RB_ENOTFOUND, RB_EFORMAT, RB_EIO,
 * RB_EUNSUPPORTED, RB_ENOMEM. */
int rb_model_open(const char *path, rb_model **out, rb_error *err);
void rb_model_close(rb_model *m);

const rb_llama_config *rb_model_config(const rb_model *m);
int rb_model_kind(const rb_model *m);
const char *rb_model_path(const rb_model *m);
/* Directory holding the checkpoint (for tokenizer discovery). Never NULL. */
const char *rb_model_dir(const rb_model *m);

/* Allocates fp32 buffers for one layer of config `c`. */
int rb_layer_weights_init(rb_layer_weights *w, const rb_llama_config *c, rb_error *err);
void rb_layer_weights_free(rb_layer_weights *w);
/* Copies every tensor of src into dst (both initialized for c). */
void rb_layer_weights_copy(rb_layer_weights *dst, const rb_layer_weights *src, const rb_llama_config *c);

/* Materializes layer `l` (0-based) into `w` (converted to fp32). */
int rb_model_load_layer(rb_model *m, int l, rb_layer_weights *w, rb_error *err);

/* Gathers embedding rows for `n` token ids into out[n][dim]. Ids must be in [0, vocab). */
int rb_model_embed(rb_model *m, const int32_t *ids, size_t n, float *out, rb_error *err);

/* Final RMSNorm weight into out[dim]. */
int rb_model_load_final_norm(rb_model *m, float *out, rb_error *err);
/* lm_head into out[vocab][dim] (the embedding when tied). */
int rb_model_load_lm_head(rb_model *m, float *out, rb_error *err);
/* Whole embedding matrix into out[vocab][dim]. */
int rb_model_load_embedding(rb_model *m, float *out, rb_error *err);

/* Tensor listing for `rotbench inspect`: i-th tensor's name, shape (up to 4 dims), dtype, bytes.
 * Returns the count when `i` < 0. */
typedef struct rb_tensor_desc {
    const char *name;
    const char *dtype;
    int ndim;
    int64_t shape[4];
    uint64_t nbytes;
    const char *file;
} rb_tensor_desc;
int rb_model_tensor(const rb_model *m, int i, rb_tensor_desc *out);

/* Total parameters of the model as stored (tied embeddings counted once). */
uint64_t rb_model_param_count(const rb_model *m);

#endif

/* rb_model internals shared by rb_model.c, rb_hf_model.c, rb_llama2c.c and rb_make_model.c; not a
 * public API. */
#ifndef RB_MODEL_INTERNAL_H
#define RB_MODEL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_file.h"
#include "rb_model.h"
#include "rb_safetensors.h"

/* HF tensor names of the layer slots, with %d for the layer. */
extern const char *const rb_hf_slot_names[];

/* A validated view of one stored matrix [rows, cols] (a vector is [n, 1]): data points into a
 * mapping and holds rows*cols elements of `dtype`. When perm_heads > 0 the rows are stored in
 * llama2.c's interleaved-pair RoPE order and are permuted per head of perm_head_dim rows on load. */
struct rb_gptq_tref; /* a GPTQ-packed linear (rb_gptq_model.c) */

typedef struct rb_tref {
    const uint8_t *data;
    int dtype;            /* RB_DT_F32, RB_DT_F16 or RB_DT_BF16 */
    size_t rows, cols;
    int perm_heads, perm_head_dim;
    const char *name;     /* owned by the model (or a static string) */
    const char *file;     /* owned by the model */
    const struct rb_gptq_tref *gq; /* not NULL: a GPTQ-packed linear [rows = out][cols = in]; data/dtype unused,
                                      loaded by rb_gptq_tref_load (owned by the model's ext state) */
} rb_tref;

/* Dequantizes a GPTQ-packed linear into dst[rows][cols] (fp32, HF [out][in] layout). Errors:
 * RB_EFORMAT (a non-finite value, naming tensor and entry). (rb_gptq_model.c) */
int rb_gptq_tref_load(const rb_tref *t, float *dst, rb_error *err);

/* Per-layer slots, in rb_layer_weights order. */
enum { RB_W_ATTN_NORM, RB_W_Q, RB_W_K, RB_W_V, RB_W_O, RB_W_FFN_NORM, RB_W_GATE, RB_W_UP, RB_W_DOWN, RB_W_COUNT };

struct rb_model {
    int kind;                   /* RB_MODEL_HF, RB_MODEL_LLAMA2C or RB_MODEL_GGUF */
    char *path;                 /* as given to rb_model_open */
    char *dir;                  /* directory holding the checkpoint */
    rb_llama_config cfg;

    rb_st_file *shards;         /* HF: [n_shards] opened safetensors files */
    int n_shards;
    rb_mapped bin;              /* llama2.c and GGUF: the mapped file */
    void *ext;                  /* format-specific state (GPTQ: the packed linears; GGUF: its metadata), freed by
                                   ext_free at close */
    void (*ext_free)(void *ext);

    rb_tref embed;              /* [vocab, dim] */
    rb_tref final_norm;         /* [dim] */
    rb_tref lm_head;            /* [vocab, dim]; equals embed when tied */
    rb_tref *layers;            /* [n_layers * RB_W_COUNT] */

    rb_tensor_desc *list;       /* [n_list] for rb_model_tensor */
    int n_list;
    uint64_t n_params;
};

/* Opens the HF checkpoint in directory m->dir into a zeroed `m` (path/dir already set). On
 * failure `m` may hold partial state that rb_model_close frees. (rb_hf_model.c) */
int rb_hf_open(rb_model *m, rb_error *err);

/* Opens the GGUF file m->path into a zeroed `m` (rb_gguf.c), as rb_hf_open. */
int rb_gguf_open(rb_model *m, rb_error *err);

/* Called by rb_hf_open after config.json is read and the shards are opened: when config.json has a
 * GPTQ quantization_config (or quantize_config.json is present), points the linear slots of m->layers
 * at GPTQ-packed tensors (setting m->ext/ext_free) and returns 0; returns 0 without touching anything
 * for a plain checkpoint. Errors name the file and tensor (rb_gptq_model.c). */
int rb_gptq_attach(rb_model *m, rb_error *err);

/* Expected shape of layer slot `s` under config `c`: a vector [shape[0]] (*ndim 1) or a matrix
 * [shape[0], shape[1]] (*ndim 2). */
void rb_model_slot_shape(const rb_llama_config *c, int slot, int *ndim, size_t shape[2]);

/* Appends an entry to m->list (names/dtype/file are borrowed; they must outlive m). */
int rb_model_list_add(rb_model *m, const char *name, const char *dtype, int ndim, const int64_t *shape,
                      uint64_t nbytes, const char *file, rb_error *err);

#endif

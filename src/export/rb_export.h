/* rb_export: write out the model a run produced (issue 15; docs/export.md).
 *
 * What is exported is the model as the run evaluates it: the rotation set fused into the weights
 * (RMSNorm γ folded into the linears, so every norm weight is 1; embedding and lm_head untied), and,
 * when the run quantized weights, the quantized linears from its weight store. Three formats:
 *   hf    a Hugging Face Llama directory: config.json, model.safetensors (or shards + index),
 *         F32/F16/BF16, the tokenizer files of the source checkpoint copied;
 *   gptq  the GPTQ checkpoint layout (int32-packed qweight/qzeros, scales, g_idx,
 *         quantize_config.json + config.json quantization_config) of the weight store's integers;
 *   gguf  a llama.cpp GGUF v3 file model.gguf (F32/F16/BF16), llama.cpp tensor names and q/k row order.
 * Every writer streams: one layer of weights in memory at a time (plus the embedding / lm_head).
 *
 * A writer writes into a directory that already exists and is empty (rb_export_run creates it as
 * <out>.partial and renames it to <out> only when everything is written, so an interrupted or failed
 * export never leaves a directory that looks complete). */
#ifndef RB_EXPORT_H
#define RB_EXPORT_H

#include "model/rb_forward.h"
#include "model/rb_model.h"
#include "quant/rb_qpreset.h"
#include "quant/rb_wstore.h"
#include "rotate/rb_rotset.h"
#include "text/rb_tokenizer.h"

enum { RB_EXPORT_HF = 1, RB_EXPORT_GPTQ, RB_EXPORT_GGUF };

/* "hf", "gptq", "gguf" <-> RB_EXPORT_*; parse returns 0 and sets *fmt, or RB_EINVAL naming the choices. */
const char *rb_export_format_name(int fmt);
int rb_export_format_parse(const char *name, int *fmt, rb_error *err);

/* Everything a writer reads. All pointers borrowed. */
typedef struct rb_export_in {
    rb_llama_config cfg;         /* config of the exported model: the source's with tied = 0 (fusion
                                    unties), dtype the export dtype name */
    const rb_weights_src *src;   /* the fused FP weights (layers, embedding rows, final norm, lm_head) */
    rb_wstore *wq;               /* the quantized linears (NULL: FP export) */
    const rb_quant_cfg *quant;   /* the run's quantization (NULL or inactive: none) */
    const rb_tokenizer *tok;     /* the run's tokenizer (vocabulary for GGUF), may be NULL */
    const char *tokenizer_path;  /* its file (copied by hf/gptq when it is an HF tokenizer file), may be NULL */
    const char *model_dir;       /* directory of the source checkpoint (tokenizer_config.json etc. copied) */
    const char *name;            /* model name recorded in metadata (general.name, _name_or_path) */
    int dtype;                   /* RB_DT_F32 | RB_DT_F16 | RB_DT_BF16 for the float tensors (norms stay F32 in gguf) */
    int gptq_scales_dtype;       /* gptq: RB_DT_F32 (exact, the default) or RB_DT_F16 (what GPU kernels take) */
    uint64_t max_shard_bytes;    /* hf/gptq: shard model.safetensors above this size (0 = never) */
} rb_export_in;

/* Layer l of the exported model into w (initialized for in->cfg): the fused FP layer, its seven
 * linears replaced by the weight store's when in->wq is set. Errors: the source's and the store's. */
int rb_export_load_layer(const rb_export_in *in, int l, rb_layer_weights *w, rb_error *err);
/* The whole fused embedding matrix into out[vocab][dim] (streamed through src->embed in chunks). */
int rb_export_load_embedding(const rb_export_in *in, float *out, rb_error *err);

/* The layer a writer's fill callbacks are in: a writer asks for tensors in order, so each layer is
 * loaded once (rb_export_load_layer) for all its tensors and dropped when the next one starts. Start
 * zeroed ({0}: rb_export_layer_cache_free is then safe whether or not init ran). */
typedef struct rb_export_layer_cache {
    const rb_export_in *in;
    rb_layer_weights w; /* layer `layer`; its buffers (allocated by init) also give the shapes */
    int layer;          /* loaded layer, -1 = none */
} rb_export_layer_cache;

/* Binds lc to in (borrowed) with no layer loaded and allocates w for in->cfg. Errors: RB_ENOMEM. */
int rb_export_layer_cache_init(rb_export_layer_cache *lc, const rb_export_in *in, rb_error *err);
/* Makes layer l the one in lc->w, loading it unless it already is. On error no layer counts as loaded.
 * Errors: those of rb_export_load_layer. */
int rb_export_layer_cache_get(rb_export_layer_cache *lc, int l, rb_error *err);
/* Frees w's buffers (lc stays safe to free again). */
void rb_export_layer_cache_free(rb_export_layer_cache *lc);

/* The writers. dir exists and is empty. Errors: RB_EINVAL (a request the format cannot express,
 * one line saying why: e.g. gptq without a weight store with integer parameters), RB_EIO (write
 * failures with the file and strerror: disk full lands here), RB_ENOMEM, the sources' errors. */
int rb_export_hf(const rb_export_in *in, const char *dir, rb_error *err);
int rb_export_gptq(const rb_export_in *in, const char *dir, rb_error *err);
int rb_export_gguf(const rb_export_in *in, const char *dir, rb_error *err);

/* One export request (rb_export_run). */
typedef struct rb_export_req {
    int format;               /* RB_EXPORT_* */
    const char *out;          /* the directory to create */
    int force;                /* replace an existing `out` (only once the new export is complete) */
    int allow_online_dropped; /* export although the run needs online operations no plain checkpoint holds */
    const rb_rotset *rs;      /* the run's rotation set (online ops; saved as rotation.h5 beside them), may be NULL */
    const char *provenance;   /* JSON object text recorded in rotbench_export.json (resolved config, run id), may be NULL */
} rb_export_req;

/* File names the driver writes beside the model. */
#define RB_EXPORT_MANIFEST "rotbench_export.json"
#define RB_EXPORT_ONLINE_OPS "rotbench_online_ops.json"
#define RB_EXPORT_ROTATION "rotation.h5"

/* The online operations of a run that no plain Llama checkpoint can hold (R3/R4 Hadamards,
 * QuaRot's cross-head Hadamard, RUQuant's block transforms, ReSpinQuant's residual junctions,
 * activation and KV quantizers), as a JSON array of objects {name, site, layers, definition,
 * exact_without_in_fp} (docs/export.md). *ops is a new reference (an empty array when none).
 * Errors: RB_ENOMEM. */
struct json_t;
int rb_export_online_ops(const rb_export_in *in, const rb_rotset *rs, struct json_t **ops, rb_error *err);

/* What can be checked before the expensive stages (rotation training aside): an existing `out`
 * without force, a missing parent directory, online operations without allow_online_dropped, and
 * for gptq the quantization and the widths (in->wq may still be NULL). rb_export_run checks the
 * same. Errors: RB_EINVAL naming the problem and the option that avoids it. */
int rb_export_precheck(const rb_export_in *in, const rb_export_req *req, rb_error *err);
/* The gptq part of it (rb_export_gptq.c). */
int rb_export_gptq_check(const rb_export_in *in, rb_error *err);

/* Exports: checks the request (an existing `out` without force; online ops without
 * allow_online_dropped: RB_EINVAL naming them and the options that avoid them), writes the model
 * into <out>.partial (a stale one is removed first) with the format's writer, copies the source's
 * tokenizer files (hf, gptq), writes rotbench_online_ops.json + rotation.h5 when there are online
 * ops, then rotbench_export.json (format, versions, source, quantization, provenance) last, and
 * renames <out>.partial to <out>. On any error <out>.partial is removed and `out` is untouched.
 * Errors: those of the writers, RB_EIO. */
int rb_export_run(const rb_export_in *in, const rb_export_req *req, rb_error *err);

/* GGUF file name inside the export directory. */
#define RB_EXPORT_GGUF_FILE "model.gguf"

#endif

/* rb_pipeline: one run, end to end — open the checkpoint and tokenizer, tokenize the corpora,
 * sample and order calibration windows, build or load a rotation set and fuse it (prepare),
 * quantize the weights once into a weight store (quantize_weights, or open_weights on resume), and
 * evaluate each corpus on the (quantized) model (load_text + evaluate). Shared by `rotbench ppl`
 * and the experiment harness (docs/architecture.md). */
#ifndef RB_PIPELINE_H
#define RB_PIPELINE_H

#include <stdint.h>

#include "core/rb_trace.h"
#include "eval/rb_ppl.h"
#include "eval/rb_qeval.h"
#include "eval/rb_tasks.h"
#include "export/rb_export.h"
#include "model/rb_model.h"
#include "quant/rb_qpreset.h"
#include "quant/rb_wstore.h"
#include "rotate/rb_fuse.h"
#include "rotate/rb_rotset.h"
#include "text/rb_tokenizer.h"

typedef struct rb_pipe_spec {
    const char *model_path;
    const char *tokenizer_path; /* NULL: the one beside an HF checkpoint */
    uint64_t seed;              /* root seed: streams calib.sample, calib.order */
    uint64_t rotation_seed;     /* seed of the rotation.* streams (usually = seed) */
    int add_bos;                /* 1: one BOS at the start of each tokenized corpus */
    /* evaluation */
    const char *text;           /* corpus file (NULL: load later with rb_pipe_load_text) */
    const char *text_range;     /* "a:b" fraction of its tokens, NULL = all */
    const char *text_doc_sep;   /* documents separated by this string, each with its own BOS; NULL = one stream */
    rb_ppl_opts ppl;            /* protocol, seqlen (0 = min(2048, max_position)), max_windows */
    /* calibration (needed by GPTQ) */
    const char *calib;          /* NULL = none */
    const char *calib_range;
    const char *calib_doc_sep;  /* as text_doc_sep, for the calibration corpus */
    int calib_samples, calib_seqlen, calib_order; /* seqlen 0 = the evaluation's; RB_CALIB_* order */
    int calib_batch;            /* windows per update of online methods (0 = 1) */
    /* quantization: NULL or inactive = FP evaluation (rb_ppl_run) */
    const rb_quant_cfg *quant;
    int fp_ref, stats;          /* with quantization: FP reference stream, per-layer statistics */
    /* rotation: method name, or a set loaded by the caller (load wins); NULL/NULL = none */
    const char *rotation;
    const rb_rotset *rotset;
    const char *rotset_path;    /* the file rotset was read from, for messages (NULL: not a file) */
    int r3, r4, cross_head;     /* -1 = method default */
    int emb_center;
    const char *const *rot_opt_names, *const *rot_opt_values; /* rotation.options */
    int n_rot_opts;
} rb_pipe_spec;

typedef struct rb_pipe {
    rb_model *model;
    rb_tokenizer *tok;
    rb_llama_config cfg;
    int32_t *ids;           /* evaluation tokens (after the range) */
    size_t n_ids;
    int32_t *calib_win;     /* [calib_samples][calib_seqlen] */
    int calib_seqlen;       /* resolved calibration window length */
    rb_rotset rotset;       /* built here when spec->rotation names a method */
    rb_trace trace;         /* the method's per-step logs (empty for fixed rotations) */
    int own_rotset;
    const rb_rotset *rs;    /* the set in use (NULL = none) */
    rb_fused fused;
    int have_fused;
    rb_weights_src base, src;
    rb_hooks online;
    rb_hooks online_fp;     /* the FP reference stream's hooks: `online` with exact junctions in place of low-rank
                               ones (ReSpinQuant), so ppl_fp and KL are against the model itself */
    rb_junctions jexact;    /* those exact junctions, one layer at a time (when have_jexact) */
    int have_jexact;
    int quantized;          /* evaluation ran through rb_qeval */
    rb_quant_cfg quant;     /* the spec's quantization with o_proj resolved for the rotation set (prepare) */
    rb_wstore *wq;          /* quantized weights (NULL: weights not quantized, or not yet) */
    char *wq_tmpdir;        /* temporary directory holding wq (removed by rb_pipe_free), or NULL */
    double seconds_wquant;  /* weight quantization wall time (0 when loaded) */
    rb_ppl_result plain;    /* FP evaluation result */
    rb_qeval_result q;      /* quantized evaluation result */
    double seconds_rotation;
    int seqlen;             /* evaluation window length (resolved by prepare) */
} rb_pipe;

/* Prepares everything up to the evaluation: model, tokenizer, tokens, calibration windows, rotation
 * set, fused weights source and online hooks. On error everything is released. */
int rb_pipe_prepare(rb_pipe *p, const rb_pipe_spec *s, rb_error *err);
/* (Re)loads the evaluation tokens from `path` (documents split at doc_sep when not NULL, see
 * rb_tokenize_file) restricted to `range` (may be NULL), replacing the previous ones and any previous
 * result: one prepared pipeline evaluates several corpora. */
int rb_pipe_load_text(rb_pipe *p, const char *path, const char *range, int add_bos, const char *doc_sep,
                      rb_error *err);
/* Does the spec quantize weights (then evaluation needs quantize_weights or open_weights first)? */
int rb_pipe_quantizes_weights(const rb_pipe_spec *s);
/* Quantizes every linear once (RTN or GPTQ on the calibration windows, online transforms active)
 * into a weight store at `path` (NULL: a temporary directory under $TMPDIR, removed by
 * rb_pipe_free), recording `id` in it. No-op when the spec does not quantize weights.
 * Interruptible (RB_EINTERRUPTED; the unfinished store is removed). */
int rb_pipe_quantize_weights(rb_pipe *p, const rb_pipe_spec *s, const char *path, const char *id, rb_error *err);
/* Opens a finished weight store written for `id` (a resumed run). Errors as rb_wstore_open. */
int rb_pipe_open_weights(rb_pipe *p, const char *path, const char *id, rb_error *err);
/* Runs the evaluation (rb_ppl_run or rb_qeval_run per the spec). Interruptible (RB_EINTERRUPTED). */
int rb_pipe_evaluate(rb_pipe *p, const rb_pipe_spec *s, rb_error *err);
/* Scores the zero-shot task sets sets[n] on the prepared (and, when the spec quantizes weights,
 * weight-quantized) model: quantized with an FP reference when the spec quantizes (spec->fp_ref), FP
 * otherwise; the online transforms of the rotation set apply. bos: RB_TASK_BOS_*; max_length 0 = the
 * model's. res[n] filled (rb_task_result_free each). Interruptible (RB_EINTERRUPTED). */
int rb_pipe_tasks(rb_pipe *p, const rb_pipe_spec *s, const rb_task_set *sets, int n, int bos, int max_length,
                  rb_task_result *res, rb_error *err);
/* Fills the model-dependent fields of o (quantization, weight store, online hooks, FP reference,
 * seed) as rb_pipe_tasks does, leaving bos, max_length, pack_rows and separate as the caller set them. */
void rb_pipe_tasks_opts(rb_pipe *p, const rb_pipe_spec *s, rb_tasks_opts *o);
/* The export inputs of the prepared model: cfg, src, wq (NULL until the weights are quantized:
 * rb_export_precheck runs before), quant, tokenizer, model dir and name; dtype F32, gptq scales F32, shards of 5 GB
 * (HF's default) — the caller may change those before rb_export_run. */
void rb_pipe_export_in(rb_pipe *p, const rb_pipe_spec *s, rb_export_in *in);

/* The quantized (or FP) result summary: ppl, and ppl_fp/kl when available (NaN otherwise). */
const rb_ppl_result *rb_pipe_result(const rb_pipe *p);
void rb_pipe_free(rb_pipe *p);

/* Tokenizes a whole text file (≤ 4 GiB) with optional BOS. With doc_sep (not NULL or empty) the file
 * is a sequence of documents separated by that string (TinyStories: a line `<|endoftext|>`): each
 * document, stripped of surrounding whitespace, is tokenized on its own with BOS first (when bos) and
 * the results are concatenated, as llama2.c pretokenizes TinyStories; the separator is never
 * tokenized, so never scored. RB_EFORMAT when no document is left. */
int rb_tokenize_file(const rb_tokenizer *tok, const char *file, int bos, const char *doc_sep, int32_t **ids,
                     size_t *n, rb_error *err);

#endif

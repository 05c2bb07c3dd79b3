/* rb_results: one run's results.h5 (DESIGN §5; the schema field by field is docs/results-schema.md).
 *
 * Life of a file:
 *   rb_results_create   <run_dir>/results.h5.partial is created (truncating a stale one), with /,
 *                       /config, /env, an empty /eval and a NaN /summary: readable from the start.
 *   rb_results_put_*    each writes one group (replacing an earlier copy, so a resumed unit is
 *                       simply rewritten) and flushes the file (H5Fflush) before returning.
 *   rb_results_mark_unit  records a finished pipeline unit (/units) and flushes.
 *   rb_results_finish   DONE: status "done", file closed, fsync'ed and renamed to results.h5
 *                       (atomic: readers see the old file or the whole new one); INTERRUPTED /
 *                       FAILED: status written, file closed, left as results.h5.partial.
 *   rb_results_resume   reopens a results.h5.partial (after validating it) to go on writing.
 * The writer only ever writes <run_dir>/results.h5.partial; a completed results.h5 is replaced
 * only by the rename of a finished run, and only when created with RB_RESULTS_REPLACE.
 * A process killed mid-write can leave a .partial that HDF5 cannot open: resume then fails with
 * RB_EFORMAT naming the file and the damage; rb_results_discard or rb_results_create start over.
 * Not for signal handlers: on SIGINT set a flag and call rb_results_finish(INTERRUPTED) from the
 * main flow. One writer per run directory: a second is refused ("in use by another process"). */
#ifndef RB_RESULTS_H
#define RB_RESULTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_error.h"
#include "eval/rb_qeval.h"
#include "harness/rb_env.h"
#include "core/rb_trace.h"
#include "rotate/rb_rotset.h"

/* Layout version written as /schema_version; readers refuse newer files (RB_EUNSUPPORTED). */
#define RB_RESULTS_SCHEMA_VERSION 1

#define RB_RESULTS_FILE "results.h5"
#define RB_RESULTS_PARTIAL "results.h5.partial"

/* Run status (root attribute "status", a string). */
enum { RB_RUN_PARTIAL = 0, RB_RUN_DONE = 1, RB_RUN_INTERRUPTED = 2, RB_RUN_FAILED = 3, RB_RUN_STATUS_COUNT };
/* "partial", "done", "interrupted", "failed"; NULL for other values. */
const char *rb_run_status_name(int status);
/* Name → status, or -1. */
int rb_run_status_from_name(const char *name);

/* Bounds on identifiers (bytes, excluding the NUL). run ids and corpus names are also HDF5 link
 * names: [A-Za-z0-9._-], not starting with '.'. */
#define RB_RUN_ID_MAX 127
#define RB_RUN_NAME_MAX 255
#define RB_RUN_WORD_MAX 63 /* method, quant preset, w_algo, corpus */
#define RB_RESULTS_MAX_CORPORA 16

/* The run's resolved configuration values the index needs, filled by the harness from the
 * resolved config; stored as attributes of /config so no reader ever parses YAML. Strings may be
 * NULL (stored as ""), except run_id. */
typedef struct rb_run_meta {
    const char *run_id;          /* required: sha256-derived id, a valid link name (see above) */
    const char *name;            /* experiment name (config `name`) */
    const char *method;          /* rotation method ("identity", "hadamard", ...; "none" if unrotated) */
    const char *quant;           /* quantization preset name, or "custom" */
    int w_bits, a_bits, kv_bits; /* 2..8, or RB_QBITS_OFF (16) = not quantized */
    int w_algo;                  /* RB_WALGO_RTN | RB_WALGO_GPTQ (quant/rb_qpreset.h) */
    uint64_t seed;               /* root seed */
    const char *resolved_yaml;   /* canonical resolved config */
    const char *const *overrides; /* [n_overrides] command-line overrides as given ("key=value") */
    int n_overrides;
    const char *const *argv;     /* [argc] the command line */
    int argc;
} rb_run_meta;

/* One input file and its SHA-256 (64 lowercase hex digits, computed by the caller). */
typedef struct rb_input_file {
    const char *name;   /* shard: file name within the model directory; corpus: the corpus name */
    const char *path;   /* as opened (may be NULL: "") */
    const char *sha256;
} rb_input_file;

typedef struct rb_inputs {
    const char *model_path;        /* checkpoint directory or file */
    const rb_input_file *model_files; /* [n_model_files] shards (+ config.json, tokenizer, ...) */
    int n_model_files;
    const rb_input_file *corpora;  /* [n_corpora] calibration and evaluation text files */
    int n_corpora;
} rb_inputs;

/* Wall time per pipeline stage, seconds; NaN = stage not run / unknown. */
typedef struct rb_stage_times {
    double calibrate; /* rotation method calibration */
    double quantize;  /* weight quantization (GPTQ/RTN), incl. Hessian collection */
    double evaluate;  /* quantized + FP evaluation forward passes and scoring */
    double total;     /* whole run */
} rb_stage_times;

typedef struct rb_results rb_results; /* open writer */

/* Flags of rb_results_create. */
enum { RB_RESULTS_REPLACE = 1 }; /* allow a run dir holding a completed results.h5 (replaced at finish DONE) */

/* Creates <run_dir>/results.h5.partial (run_dir must exist) and writes /, /config, /env (env
 * may be NULL: collected now), /eval (empty), /units (empty) and /summary (NaN), then flushes. A
 * stale .partial is truncated (call rb_results_resume first to keep it). Errors: RB_EINVAL bad
 * meta, or results.h5 already present without RB_RESULTS_REPLACE ("run already complete");
 * RB_ENOTFOUND run_dir missing; RB_EIO cannot create (errno text) or the .partial is held by
 * another writer ("in use by another process"); RB_ENOMEM. On failure no .partial is left. */
int rb_results_create(const char *run_dir, const rb_run_meta *meta, const rb_env *env, int flags, rb_results **out,
                      rb_error *err);

/* Reopens <run_dir>/results.h5.partial for writing after validating it (as read_summary does);
 * run_id (may be NULL) must match the file's. Status goes back to "partial". Errors: RB_ENOTFOUND
 * no .partial; RB_EFORMAT corrupt/foreign file (message: file + what + how to start over);
 * RB_EINVAL run id mismatch; RB_EUNSUPPORTED newer schema. */
int rb_results_resume(const char *run_dir, const char *run_id, rb_results **out, rb_error *err);

/* Removes <run_dir>/results.h5.partial (absent is fine). */
int rb_results_discard(const char *run_dir, rb_error *err);

/* Path of the file being written ("<run_dir>/results.h5.partial"). */
const char *rb_results_path(const rb_results *w);

/* /inputs attributes. Every sha256 must be 64 lowercase hex digits (RB_EINVAL otherwise). */
int rb_results_put_inputs(rb_results *w, const rb_inputs *in, rb_error *err);

/* /rotations: the rotation set in rb_rotset_save's layout (validated and orthogonality-checked
 * the same way: it is saved to a temporary file next to the .partial and copied in). */
int rb_results_put_rotset(rb_results *w, const rb_rotset *s, rb_error *err);

/* /layers from the per-layer metrics of r (r->n_layers ≥ 1 and act_mse/layer_mse present).
 * Rows, per layer l in order: the RB_SITE_COUNT sites (kind act; when r->site_fp or r->act_mse),
 * the RB_LIN_COUNT linears (kind linear; when r->lin), then one block row (kind layer). */
int rb_results_put_layers(rb_results *w, const rb_qeval_result *r, rb_error *err);

/* /eval/<corpus>: per-window arrays and attrs of r's quantized (q) and FP (fp) streams;
 * protocol RB_PPL_*, seqlen T. Without an FP reference (r->fp.win_nll NULL) nll_fp and kl are
 * NaN. A plain FP evaluation can pass an rb_qeval_result whose q is the rb_ppl_result.
 * The first corpus written (creation order) also fills /summary's ppl, ppl_fp, delta, kl. */
int rb_results_put_eval(rb_results *w, const char *corpus, int protocol, int seqlen, const rb_qeval_result *r,
                        rb_error *err);

/* /summary stage times (seconds_calibrate, seconds_quantize, seconds_evaluate, seconds_total). */
/* Writes each table of the method's trace as /calibration/<name>: float64 [rows][cols] with attr
 * `columns` (list of column names). Replaces existing tables of the same name. */
int rb_results_put_trace(rb_results *w, const rb_trace *tr, rb_error *err);
int rb_results_put_times(rb_results *w, const rb_stage_times *t, rb_error *err);

/* Records unit `unit` (a name without '/') as finished, taking `seconds`, and flushes. */
int rb_results_mark_unit(rb_results *w, const char *unit, double seconds, rb_error *err);
/* 1 when the unit was recorded (by this writer or before a resume), 0 otherwise. */
int rb_results_unit_done(rb_results *w, const char *unit);

/* Writes the final status, closes, and for RB_RUN_DONE renames to results.h5. Frees w in every
 * case (w may be NULL: no-op). status RB_RUN_PARTIAL just closes. */
int rb_results_finish(rb_results *w, int status, rb_error *err);

/* ---- reading --------------------------------------------------------------------------------- */

/* Per-corpus evaluation summary (attrs of /eval/<corpus>). */
typedef struct rb_run_corpus {
    char corpus[RB_RUN_WORD_MAX + 1];
    int protocol; /* RB_PPL_GPTQ | RB_PPL_LLAMACPP */
    int seqlen, windows;
    int64_t tokens, scored;
    double ppl, ppl_fp, delta, kl;
} rb_run_corpus;

/* What status/index need of one run, fully validated. */
typedef struct rb_run_summary {
    int schema_version;
    int status; /* RB_RUN_* */
    char rotbench_version[64];
    char run_id[RB_RUN_ID_MAX + 1];
    char name[RB_RUN_NAME_MAX + 1];
    char created_utc[32], updated_utc[32];
    char method[RB_RUN_WORD_MAX + 1], quant[RB_RUN_WORD_MAX + 1], w_algo[RB_RUN_WORD_MAX + 1];
    int w_bits, a_bits, kv_bits;
    uint64_t seed;
    double ppl, ppl_fp, delta, kl; /* /summary: the first corpus (NaN before any evaluation) */
    rb_stage_times seconds;
    int n_corpora;                 /* in /eval creation order */
    rb_run_corpus corpora[RB_RESULTS_MAX_CORPORA];
    int n_units;                   /* finished units recorded */
} rb_run_summary;

/* Reads and validates the summary of a results file (results.h5 or .partial). Errors:
 * RB_ENOTFOUND/RB_EIO (OS), RB_EFORMAT (not HDF5, corrupt, missing or ill-typed field, unknown
 * status, ...: one line "<file>: <object>: <what>"), RB_EUNSUPPORTED (newer schema). */
int rb_results_read_summary(const char *path, rb_run_summary *out, rb_error *err);

/* Row kinds and names of /layers (HDF5 enums "kind" and "name" in the file). */
enum { RB_LROW_ACT = 0, RB_LROW_LINEAR = 1, RB_LROW_LAYER = 2 };
/* name: sites 0..RB_SITE_COUNT-1 (rb_site_name), then linears (rb_linear_name), then "block". */
#define RB_LNAME_LINEAR(lin) (RB_SITE_COUNT + (lin))
#define RB_LNAME_BLOCK (RB_SITE_COUNT + RB_LIN_COUNT)
#define RB_LNAME_COUNT (RB_LNAME_BLOCK + 1)
/* "kind" / "name" labels. */
const char *rb_lrow_kind_name(int kind);
const char *rb_lrow_name(int name);

/* One row of /layers, the in-memory layout of the compound (metric columns flattened in the file
 * as fp_<field>, q_<field>, w_<field>; NaN where a column does not apply to the row's kind). */
typedef struct rb_layer_row {
    uint8_t kind;           /* RB_LROW_* */
    int32_t layer;          /* 0-based decoder layer */
    uint8_t name;           /* RB_LNAME: site, linear or block */
    rb_act_stats_row fp, q; /* activation statistics, FP / quantized stream (act rows) */
    double act_mse;         /* Σ‖Q(x) − x‖² / Σ‖x‖² at the site (act rows) */
    rb_weight_stats w;      /* fused FP weight (linear rows) */
    double w_relerr, h_err, h_err_rtn; /* linear rows */
    double layer_out_mse;   /* block output relative MSE (layer rows) */
} rb_layer_row;

/* The /layers table (*rows heap, caller frees with free()). Every expected column must be
 * present with a numeric/enum type; kind/name/layer values are range-checked. */
int rb_results_read_layers(const char *path, rb_layer_row **rows, size_t *n, rb_error *err);

/* Converts a qeval result to rows as put_layers writes them (*rows heap). */
int rb_results_layer_rows(const rb_qeval_result *r, rb_layer_row **rows, size_t *n, rb_error *err);

/* /eval/<corpus> in full. */
typedef struct rb_eval_data {
    rb_run_corpus s;
    double nll_sum, nll_fp_sum, seconds;
    double *nll, *nll_fp, *kl; /* [s.windows] */
    int64_t *scored;           /* [s.windows] */
} rb_eval_data;

int rb_results_read_eval(const char *path, const char *corpus, rb_eval_data *out, rb_error *err);
void rb_eval_data_free(rb_eval_data *d);

/* Reads trace table /calibration/<name> into a fresh table (*out; free with rb_trace_table_free).
 * RB_ENOTFOUND when the run logged no such table; RB_EFORMAT for a malformed one (not float64
 * [rows][cols] with 1..RB_TRACE_MAX_COLS named columns, or more than RB_TRACE_MAX_ROWS rows). */
#define RB_TRACE_MAX_ROWS 10000000
int rb_results_read_trace(const char *path, const char *name, rb_trace_table **out, rb_error *err);
/* /rotations back as a rotation set, validated by rb_rotset_load (via a temporary file under
 * $TMPDIR). RB_ENOTFOUND when the run stored none. Free with rb_rotset_free. */
int rb_results_read_rotset(const char *path, rb_rotset *s, rb_error *err);

#endif

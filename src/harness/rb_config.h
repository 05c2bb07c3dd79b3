/* rb_config: experiment configuration (DESIGN §4). A YAML file, composed from building blocks in a
 * configs directory and changed by command-line overrides, is validated against one schema (a
 * static table in rb_config.c) into `rb_config`, a plain struct the run pipeline reads directly,
 * and printed back as canonical YAML (schema order, every default filled, deterministic bytes)
 * whose sha256 is the run id.
 *
 * Composition. A top-level `defaults: [models/stories260K, quant/w4a4kv4, methods/hadamard]` names
 * files `<configs_dir>/<item>.yaml`, deep-merged in order (maps merge key by key, lists and scalars
 * replace), then the file's own keys override them. One level only: a building block cannot have
 * `defaults`.
 *
 * Overrides (Hydra grammar), applied after composition, in order:
 *   key.path=value    sets a key of the schema (an unknown key is an error with a did-you-mean
 *                     hint); maps on the way are created
 *   +key.path=value   adds a key that is not set (optional ones: model.tokenizer, rotation.seed,
 *                     rotation.r3, ...); an error when it is set
 *   ++key.path=value  same as key=value (Hydra's force-add)
 *   ~key.path         removes a key that is set and not required (a defaulted key returns to its
 *                     default, an optional one becomes unset); ~data.eval.N removes an entry
 * The value is YAML flow text, typed by the schema: 4, true, hadamard, [kurtosis, mse], "a b".
 * List entries are addressed by index: data.eval.0.seqlen=1024 (or data.eval[0].seqlen).
 *
 * Errors are RB_EINVAL with exactly one line `FILE:LINE:COL: key.path: what is wrong`, e.g.
 *   exp.yaml:12:7: quant.w.bits: expected one of 2,3,4,5,6,8,16, got 7
 * where an override's position is `cmdline:N:COL` (N = 1-based override index, COL = column in
 * that argument), a `-m` axis's is `multirun:N:COL`, and YAML syntax errors read
 * `FILE:L:C: yaml: <libyaml's message>`. Missing files: RB_ENOTFOUND "PATH: cannot open: ...".
 *
 * Strings typed `path` expand ${VAR} (an unset or empty VAR is an error naming it and its position),
 * ${VAR:-fallback} and $$ (a literal $). The canonical YAML holds the expanded paths (a literal '$'
 * before '$' or '{' written back as $$, so the canonical text loads to the same bytes). Note that
 * in YAML flow style `{path: ${X}/m}` the '}' of ${X} closes the map: quote such values.
 *
 * The canonical YAML of a config with a sweep contains its `sweep:` section (what --cfg prints for
 * a sweep file); the rows of rb_sweep_expand have none, so a run's id does not depend on the sweep
 * it was part of.
 *
 * Zero-shot tasks (data.tasks, data.task_bos, data.task_max_length) are emitted only when data.tasks
 * has entries, so configs without tasks keep their canonical bytes (and run ids); limit and
 * task_max_length are emitted only when nonzero, labels only when set. Example:
 *   data:
 *     tasks:
 *       - {name: piqa, file: data/piqa/valid.jsonl, limit: 200}   # labels: data/piqa/valid-labels.lst
 *       - {name: arc_easy, file: data/llm-foundry/arc_easy.jsonl}
 *     task_bos: none            # or tokenizer-default (lm-eval > 0.4.9.1 adds Llama's BOS)
 *     task_max_length: 2048     # optional; default the model's max_seq_len
 * Task files (and PIQA's labels file, given or the default one when it exists) enter the run id
 * like the evaluation corpora. */
#ifndef RB_CONFIG_H
#define RB_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_error.h"

/* Named rb_rng streams of the root seed (see rb_config_stream_seed). */
#define RB_STREAM_CALIB_SAMPLE "calib.sample"     /* which calibration windows (rb_calib_sample) */
#define RB_STREAM_CALIB_ORDER "calib.order"       /* their order when shuffled (rb_calib_reorder) */
#define RB_STREAM_ROTATION "rotation.init"        /* rotation init; every "rotation.*" stream */
#define RB_STREAM_EVAL_SUBSAMPLE "eval.subsample" /* evaluation window subsample */

/* metrics bit set */
enum { RB_METRIC_KURTOSIS = 1, RB_METRIC_MSE = 2, RB_METRIC_KL = 4, RB_METRIC_ALL = 7 };

/* data.calib (present when data.has_calib). */
typedef struct rb_cfg_calib {
    char *corpus;    /* path, ${ENV} expanded */
    char *range;     /* "a:b" fractions of the token stream (rb_token_range_parse), default "0:1" */
    int samples;     /* ≥ 1, default 128 */
    int seqlen;      /* ≥ 1, default 2048 */
    int order;       /* RB_CALIB_* (text/rb_calib.h), default sequential */
    int batch;       /* 1 ≤ batch ≤ samples, default 1 */
    char *doc_sep;   /* optional: documents separated by this string, each tokenized with its own BOS
                        (rb_tokenize_file; TinyStories: "<|endoftext|>"); NULL = one stream */
} rb_cfg_calib;

/* One entry of data.eval. */
typedef struct rb_cfg_eval {
    char *corpus;    /* path, ${ENV} expanded */
    char *name;      /* [A-Za-z0-9._-]+, unique; default: basename of corpus */
    char *range;     /* default "0:1" */
    int seqlen;      /* ≥ 2, default 2048 */
    int protocol;    /* RB_PPL_GPTQ | RB_PPL_LLAMACPP (eval/rb_ppl.h), default gptq */
    char *doc_sep;   /* optional, as data.calib.doc_sep */
    int max_windows; /* ≥ 0, 0 = all */
} rb_cfg_eval;

/* One entry of data.tasks: a zero-shot task scored after the perplexity evaluations (lm-eval's
 * prompts and metrics; eval/rb_tasks.h, tasks/rb_taskfile.h). */
typedef struct rb_cfg_task {
    int task;        /* enum rb_task_id: piqa|arc_easy|arc_challenge|hellaswag|winogrande|lambada_openai|
                        boolq|openbookqa|copa (required; each at most once: results go to /tasks/<name>) */
    char *file;      /* path, ${ENV} expanded (required); its format is recognized from the content */
    char *labels;    /* PIQA's labels file (piqa only); NULL: <stem>-labels.lst beside <stem>.jsonl */
    int limit;       /* ≥ 0: the first `limit` documents; 0 (the default) = all */
} rb_cfg_task;

/* quant.w, quant.a, quant.kv or quant.q. */
typedef struct rb_cfg_qtensor {
    int bits;        /* 2,3,4,5,6,8 or 16 (= off); default 16, or the preset's */
    int sym;         /* 0/1; default 1 for w, 0 for a and kv */
    int gran;        /* RB_QGRAN_* (quant/rb_quant.h): w channel|tensor, a token|head, kv head|token,
                        RB_QGRAN_GROUP when `group` is an integer */
    int group;       /* columns per group for RB_QGRAN_GROUP, else 0 */
    double clip;     /* range multiplier in (0, 1]; 1 with clip_search */
    int clip_search; /* w only: clip: search (the default for w) */
    int raw_minmax;  /* RUQuant/OmniQuant range (raw min/max, not forced to include 0); needs sym: false */
    int algo;        /* w only: RB_WALGO_RTN | RB_WALGO_GPTQ (quant/rb_qpreset.h), default rtn */
    int act_order;   /* w only: GPTQ act_order, default 0 */
    double damp;     /* w only: GPTQ percdamp in [0, 1], default 0.01 */
} rb_cfg_qtensor;

/* A resolved configuration. Owned by the caller; release with rb_config_free. */
typedef struct rb_config {
    char *name;      /* [A-Za-z0-9._-]+ */
    uint64_t seed;   /* root seed, default 0 */
    struct {
        char *path;      /* required */
        char *tokenizer; /* NULL when unset */
    } model;
    struct {
        int has_calib;
        rb_cfg_calib calib;
        rb_cfg_eval *eval; /* n_eval ≥ 1 entries */
        int n_eval;
        rb_cfg_task *tasks; /* n_tasks ≥ 0 entries (data.tasks; optional) */
        int n_tasks;
        int task_bos;       /* data.task_bos: RB_TASK_BOS_* (eval/rb_tasks.h): none (default; lm-eval ≤ 0.4.9.1,
                               QuaRot's pin) | tokenizer-default */
        int task_max_length; /* data.task_max_length: left truncation of task requests; 0 (default) = the
                                model's max_seq_len */
    } data;
    struct {
        const char *preset; /* "W4A4KV4", ... (static string) or NULL; fills bits not given explicitly */
        rb_cfg_qtensor w, a, kv;
        rb_cfg_qtensor q;   /* Q after RoPE/R3: bits 16 (off) unless set; never filled by a preset */
        int o_proj;         /* quant.a.o_proj: RB_OPROJ_* (quant/rb_qpreset.h), default auto */
    } quant;
    struct {
        const char *method; /* identity|random|hadamard|optrot|ruquant|conqur|respinquant (static) */
        int r3, r4;         /* 0/1, or -1 = unset: the method's default (rb_method_ctx) */
        int cross_head;     /* 0/1, or -1 = unset: the method's default (hadamard: on, QuaRot) */
        int emb_center;     /* default 1 */
        int has_seed;
        uint64_t seed;      /* when has_seed: replaces the root seed for "rotation.*" streams */
        char **opt_names;   /* rotation.options: n_opts entries, sorted by name (method-specific, checked */
        char **opt_values;  /*   against `rotbench methods METHOD`); values as written */
        int n_opts;
    } rotation;
    unsigned metrics;       /* RB_METRIC_* bits, default all */
    char **figures;         /* n_figures names, default none */
    int n_figures;
    struct {                /* export: the run's model written beside its results (export/rb_export.h);
                               emitted only when present, so other configs keep their run ids */
        int has;
        int format;         /* RB_EXPORT_HF | GPTQ | GGUF (required) */
        int dtype;          /* RB_DT_F32 (default) | F16 | BF16 */
        int allow_online_dropped; /* default false: a run needing online ops fails at the export unit */
        int gptq_scales;    /* RB_DT_F32 (default, exact) | RB_DT_F16 */
    } export;
    int has_sweep;          /* a sweep: section is present (rb_sweep_expand) */
    char *canonical;        /* canonical YAML of this config (NUL-terminated) */
    struct rb_config_priv *priv;
} rb_config;

/* Loads `path`, composes its `defaults` from configs_dir (NULL: a file with `defaults` is an error),
 * applies overrides[0..n_overrides) and validates into *out (zeroed first; nothing to free on
 * error). Errors as described above. */
int rb_config_load(const char *path, const char *configs_dir, const char *const *overrides, size_t n_overrides,
                   rb_config *out, rb_error *err);
/* Same from text[0..len) named `file` in positions. */
int rb_config_load_string(const char *text, size_t len, const char *file, const char *configs_dir,
                          const char *const *overrides, size_t n_overrides, rb_config *out, rb_error *err);
/* Frees everything *cfg owns and zeroes it; NULL or a zeroed config is fine. */
void rb_config_free(rb_config *cfg);

/* The seed of rb_rng stream `stream`: draw with rb_rng_seed(&r, rb_config_stream_seed(cfg, s), s).
 * Derivation: rb_rng_seed keys the stream by (seed, FNV-1a of the name) through splitmix64, so the
 * seed returned is the root `seed`, except for names starting with "rotation" when rotation.seed
 * is set, which get rotation.seed. Different names are independent streams; changing one stream's
 * consumer (e.g. calib.order in an order ablation) never shifts another's draws. */
uint64_t rb_config_stream_seed(const rb_config *cfg, const char *stream);

/* The run's method label for tables, figures and the results' /config method: rotation.method,
 * followed by "[name=value,...]" when rotation.options are given (sorted; e.g.
 * "optrot[plus=on]"), truncated to cap − 1 bytes. */
void rb_config_method_label(const rb_config *cfg, char *buf, size_t cap);

#define RB_RUN_ID_LEN 64
/* Run id: lowercase hex sha256 of `canonical` followed, for each i, by "\ninput " extra_hashes[i]
 * (e.g. sha256 of model shards and corpora, in the caller's stable order). With n = 0 it is the
 * sha256 of the canonical YAML alone. */
void rb_run_id(const char *canonical, const char *const *extra_hashes, size_t n, char out[RB_RUN_ID_LEN + 1]);

/* One row of a sweep: the assignments that make it ("key.path=value", grid axes then zip axes,
 * replayable as overrides of the sweep's file) and its resolved config (no sweep section). */
typedef struct rb_sweep_row {
    char **overrides;
    size_t n_overrides;
    rb_config cfg;
} rb_sweep_row;

typedef struct rb_sweep {
    rb_sweep_row *rows;
    size_t n_rows;
} rb_sweep;

#define RB_SWEEP_MAX_ROWS 100000

/* Expands cfg's sweep (sweep.grid: Cartesian product, first axis slowest; sweep.zip: lists of equal
 * length taken together; rows = grid × zip with zip fastest) into *out. multirun[0..n_multirun)
 * are extra grid axes "key.path=a,b,c" (a `-m` argument; an axis already in sweep.grid is
 * replaced in place, new ones are appended). A config without sweep gives one row with no
 * assignments. Every row is validated; errors point at the offending value (in the sweep section
 * or `multirun:N:COL`). A key both in grid and zip, zip lists of unequal length, an empty axis or
 * more than RB_SWEEP_MAX_ROWS rows are errors. */
int rb_sweep_expand(const rb_config *cfg, const char *const *multirun, size_t n_multirun, rb_sweep *out,
                    rb_error *err);
void rb_sweep_free(rb_sweep *s);

#endif

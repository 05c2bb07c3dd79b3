/* rb_method: the rotation-method interface (DESIGN §3). A method file exposes one
 * `const rb_method` registered in rb_method.c; `calibrate` produces a rotation set. */
#ifndef RB_METHOD_H
#define RB_METHOD_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_trace.h"
#include "model/rb_forward.h"
#include "quant/rb_qpreset.h"
#include "rotate/rb_rotset.h"

/* One documented knob of a method. kind:
 *   "key"        a rotation.<name> config key shared by methods (seed, r3, r4, cross_head); listed
 *                for its per-method default and meaning only
 *   "int"        integer            (rotation.options.<name>)
 *   "real"       floating point     (rotation.options.<name>)
 *   "bool"       on|off|true|false  (rotation.options.<name>)
 *   "a|b|c"      one of the alternatives (rotation.options.<name>)
 * Ranges beyond the kind are checked by the method when it runs (message names the option). */
typedef struct rb_method_option {
    const char *name, *kind, *default_value, *meaning;
} rb_method_option;

/* What a method may use. */
typedef struct rb_method_ctx {
    const rb_llama_config *cfg;
    const rb_weights_src *src; /* the unrotated model (not prepared: γ not folded, embeddings tied as stored) */
    uint64_t seed;             /* root seed; methods draw from named rb_rng streams ("rotation.r1", ...) */
    int r3, r4;                /* online Hadamards requested (-1: the method's default) */
    int emb_center;            /* 0/1 */
    int cross_head;            /* QuaRot cross-head online Hadamard (-1: the method's default) */
    /* calibration (data-dependent methods; calib NULL = none given) */
    const int32_t *calib;      /* [calib_n][calib_T] token windows, already in the configured order */
    int calib_n, calib_T;
    int calib_batch;           /* windows per update for online methods (data.calib.batch; ≥ 1) */
    const rb_quant_cfg *quant; /* the run's quantization (NULL = FP): for calibration on quantized activations */
    /* rotation.options: n_opts name/value pairs (validated by rb_method_run against the method's table) */
    const char *const *opt_names, *const *opt_values;
    int n_opts;
    rb_trace *trace;           /* per-step logs (may be NULL) */
} rb_method_ctx;

/* A figure of `rotbench plot` drawn from the method's trace (rb_trace tables written to
 * /calibration/<table>): column `col` against column `xcol` (NULL: the row index), one curve per
 * series (runs sharing method label, quantization, calibration windows, batch and order averaged);
 * normalize: each run's curve divided by its first value. Skipped for runs without the table. */
typedef struct rb_method_figure {
    const char *name;  /* file name of the figure (plots/<name>.{gp,svg,png}) */
    const char *table, *xcol, *col;
    const char *title, *xlabel, *ylabel;
    int normalize;
} rb_method_figure;

typedef struct rb_method {
    const char *name;
    const char *status;      /* "done", or what is missing */
    const char *description;
    const rb_method_option *options; /* NULL-name terminated */
    int (*calibrate)(const rb_method_ctx *ctx, rb_rotset *out, rb_error *err); /* NULL: not implemented */
    /* Cheap option sets ("steps=20,plus=on"; "" = the defaults), NULL-terminated; each is one variant
     * in the pinned-numbers test (tests/ref/pinned.py). NULL: one run with the defaults. */
    const char *const *test_variants;
    const rb_method_figure *figures; /* NULL-name terminated; NULL = none */
    /* Calibration windows: NULL = data-free; "" = always needed; "<bool option>" = needed when that
     * option is on (OptRot's "plus"). Checked when a config loads (rb_method_needs_calib). */
    const char *calib;
} rb_method;

/* Registry position of a method name or run label ("optrot[plus=on]" counts as optrot), or the
 * number of registered methods for an unknown one (it sorts last). */
int rb_method_index(const char *name_or_label);

/* NULL-terminated registry, in display order. */
const rb_method *const *rb_methods(void);
/* By name, or NULL. */
const rb_method *rb_method_find(const char *name);

/* 1 when method m with these (validated) options needs calibration windows (see rb_method.calib). */
int rb_method_needs_calib(const rb_method *m, const char *const *names, const char *const *values, int n);

/* 0 when `name` is a registered, implemented method, every option is one of its own with a value
 * of the right kind, and cross_head (1 = asked for, 0 = off, -1 = the method's default) is not asked
 * of a method that does not apply it; else RB_EINVAL (RB_EUNSUPPORTED for a method not implemented)
 * with the message rb_method_run gives. */
int rb_method_check(const char *name, const char *const *names, const char *const *values, int n, int cross_head,
                    rb_error *err);

/* 1 when m's option table lists the shared rotation.<key> (kind "key": seed, r3, r4, cross_head),
 * i.e. the method applies that key. */
int rb_method_uses_key(const rb_method *m, const char *key);

/* Checks the shared keys a config or command line asked of m: cross_head 1 (asked for) for a method
 * that does not apply it. 0, or RB_EINVAL with msg = the problem ("method random does not apply
 * QuaRot's cross-head Hadamard (methods that do: hadamard, ...)"); like rb_method_check_option. */
int rb_method_check_keys(const rb_method *m, int cross_head, char *msg, size_t cap);

/* 1 when method `name` with these options leaves the checkpoint's weights as they are: identity
 * without fold_norms and without R3/R4 (r3/r4: 1 = on, 0 = off, -1 = the method's default). Such a
 * run takes the unrotated path (no fused model: RMSNorm gains stay in the norms), QuaRot's baseline;
 * every other method, and identity with fold_norms, folds the norms into the next linears. */
int rb_method_is_noop(const char *name, const char *const *names, const char *const *values, int n, int r3, int r4);

/* Runs method `name`: fills *out (rb_rotset_free it). RB_EINVAL for an unknown name (listing the
 * registered ones) or a method that is not implemented yet (saying so). */
int rb_method_run(const char *name, const rb_method_ctx *ctx, rb_rotset *out, rb_error *err);

/* Checks one rotation.options entry against m's table: known name (not a "key" entry) and a value
 * of its kind. 0, or RB_EINVAL with msg = the problem ("unknown option 'x' of method conqur (did you
 * mean 'y'?; options: a, b)", "expected an integer, got 'z'"). */
int rb_method_check_option(const rb_method *m, const char *name, const char *value, char *msg, size_t cap);

/* Splits "a=1,b=x" (NULL or "" = none) into at most `max` name/value pairs pointing into *buf (a heap
 * copy the caller frees, also on error). RB_EINVAL naming the malformed entry ("expected
 * NAME=VALUE[,NAME=VALUE...], got 'x'") or more than max entries; RB_ENOMEM. Names and values are
 * checked later (rb_method_run). */
int rb_method_split_opts(const char *spec, char **buf, const char **names, const char **values, int max, int *n,
                         rb_error *err);

/* Typed option values: ctx's rotation.options entry `name` or the table default of method m.
 * Range violations are RB_EINVAL naming "rotation.options.<name>". An enum gets the index of the
 * alternative in the kind string. RB_ASSERTs that m declares `name` with a matching kind. */
int rb_method_opt_int(const rb_method_ctx *ctx, const rb_method *m, const char *name, long lo, long hi, int *out,
                      rb_error *err);
int rb_method_opt_real(const rb_method_ctx *ctx, const rb_method *m, const char *name, double lo, double hi,
                       double *out, rb_error *err);
int rb_method_opt_bool(const rb_method_ctx *ctx, const rb_method *m, const char *name, int *out, rb_error *err);
int rb_method_opt_enum(const rb_method_ctx *ctx, const rb_method *m, const char *name, int *out, rb_error *err);

/* Starting rotations shared by methods; the option kind "hadamard|random|identity" lists them in
 * this order, so its index is the enum value. */
enum { RB_INIT_HADAMARD = 0, RB_INIT_RANDOM, RB_INIT_IDENTITY };

/* A random Hadamard's sign vector: s[i] = ±1 from stream `stream` of seed ("rotation.r1" gives
 * QuaRot's R1 signs, method hadamard's). */
void rb_method_signs(uint64_t seed, const char *stream, int n, int8_t *s); /* s: [n] */

/* R [n][n] ← the starting rotation `kind` from stream `stream` of seed: RB_INIT_HADAMARD =
 * diag(s)·H_nᵀ/√n with s = rb_method_signs(stream) when `signs` (a random Hadamard, METHODS §1.3),
 * all +1 otherwise (the plain Hadamard, method hadamard's R2); RB_INIT_RANDOM = Haar-random (method
 * random's); RB_INIT_IDENTITY. Errors: RB_ENOMEM, the Hadamard construction's, LAPACK failures. */
int rb_method_init_rot(int kind, uint64_t seed, const char *stream, int signs, int n, double *R, rb_error *err);

/* Shared by methods: an empty set for ctx's model with r3/r4/emb_center resolved (req < 0 → def). */
int rb_method_init_set(const rb_method_ctx *ctx, const char *name, int def_r3, int def_r4, rb_rotset *out,
                       rb_error *err);

#endif

/* The options `rotbench ppl` and `rotbench grad` share (model, tokenizer, text, quantization,
 * rotation, calibration) parsed into one pipeline spec. */
#ifndef RB_CLI_PIPE_H
#define RB_CLI_PIPE_H

#include <jansson.h>

#include "cli.h"
#include "pipeline/rb_pipeline.h"

#define RB_MAX_ROT_OPTS 32

typedef struct rb_cli_pipe {
    rb_pipe_spec spec;
    rb_pipe pipe;
    rb_quant_cfg qcfg;  /* --quant (W16A16 when absent), --w-algo, --o-proj, --act-order */
    int have_quant;     /* --quant given */
    const char *walgo;  /* --w-algo as given, or NULL */
    const char *save_rot;
    rb_rotset loaded;
    int have_loaded;
    char *opt_buf;
    const char *opt_names[RB_MAX_ROT_OPTS], *opt_vals[RB_MAX_ROT_OPTS];
} rb_cli_pipe;

/* rb_cli_pipe_setup flags. STATS: spec.quant is set even without --quant (ppl --stats); NO_TEXT:
 * --text is optional (tasks). */
enum { RB_CLI_PIPE_STATS = 1, RB_CLI_PIPE_NO_TEXT = 2 };

/* Parses the shared options of command `cmd` from a (then rb_args_finish with MODEL as the one
 * positional) into cp->spec, loads --load-rotation. flags: RB_CLI_PIPE_*. On error everything is
 * released (rb_cli_pipe_free is still safe). */
int rb_cli_pipe_setup(rb_cli_pipe *cp, rb_args *a, const char *cmd, int flags, rb_error *err);
void rb_cli_pipe_free(rb_cli_pipe *cp);

/* --save-rotation: writes the set cp's pipeline (prepared) uses; 0 without the option. RB_EINVAL when
 * no set is in use (identity without fold_norms/R3/R4 is the unrotated model: nothing to save). */
int rb_cli_pipe_save_rotation(const rb_cli_pipe *cp, rb_error *err);

/* JSON number, or null for NaN/Inf (JSON has no such values; a diverged quantized model gives them). */
json_t *rb_cli_jnum(double v);

/* rotation, orth_error, emb_center, seconds_rotation (when a set is in use), blas_core, threads. */
void rb_cli_json_rotation(json_t *j, const rb_pipe *p);

#endif

/* rb_run: one experiment run — a resolved config executed into a run directory
 * (config.yaml, run.log, results.h5, figures/), resumable unit by unit (DESIGN §1, §5). */
#ifndef RB_RUN_H
#define RB_RUN_H

#include "harness/rb_config.h"

typedef struct rb_run_opts {
    int resume;                    /* go on from a results.h5.partial */
    int force;                     /* redo a done run / overwrite a partial one */
    const char *const *argv;       /* the command line, stored in the results */
    int argc;
    const char *const *overrides;  /* this run's overrides ("key=value"), stored in the results */
    int n_overrides;
} rb_run_opts;

/* Run id of cfg: sha256 of its canonical YAML plus the sha256 of every input file (model files,
 * tokenizer, corpora, task files and PIQA's labels file; hashed once per path per process). */
int rb_run_compute_id(const rb_config *cfg, char id[RB_RUN_ID_LEN + 1], rb_error *err);

/* Directory name of a run: "<name>-<first 12 hex of the id>". */
void rb_run_dir_name(const rb_config *cfg, const char *run_id, char *buf, size_t cap);

/* Outcome of rb_run_execute. */
enum { RB_RUN_RAN = 0, RB_RUN_SKIPPED_DONE = 1 };

/* Executes cfg into run_dir (created if missing). A run whose results.h5 exists is skipped
 * (*outcome = RB_RUN_SKIPPED_DONE) unless force; an existing .partial is resumed with o->resume,
 * replaced with o->force, and refused otherwise. Units, each recorded in results.h5 when finished
 * and not redone on resume: rotation; wquant (when weights are quantized: the weight store
 * <run_dir>/RB_WSTORE_FILE, reused on resume, removed when the run is done); eval.<corpus> each;
 * tasks (when data.tasks has entries: every task file is read before the rotation, so a bad file
 * fails the run at once; after the perplexity evaluations all tasks are scored in one pass,
 * rb_pipe_tasks, quantized with the FP reference when the run quantizes, and written as
 * /tasks/<name>; an interrupted pass is redone whole on resume).
 * SIGINT/SIGTERM: the current unit is abandoned, the file is flushed and marked interrupted,
 * RB_EINTERRUPTED is returned. Other failures mark it failed. Errors name the file/position
 * (config, model, corpus). */
int rb_run_execute(const rb_config *cfg, const char *run_dir, const char *run_id, const rb_run_opts *o,
                   int *outcome, rb_error *err);

#endif

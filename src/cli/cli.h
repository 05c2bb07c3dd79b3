/* Shared pieces of the rotbench command-line front end. Only main() exits. */
#ifndef RB_CLI_H
#define RB_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/rb_error.h"

/* Exit codes (DESIGN §7). */
enum { RB_EXIT_OK = 0, RB_EXIT_FAIL = 1, RB_EXIT_USAGE = 2, RB_EXIT_INTERRUPTED = 3 };

/* Minimal option parser: argv after the subcommand name. Options are `--name value` or
 * `--flag`; everything else is positional. */
typedef struct rb_args {
    int argc;
    char **argv;
    unsigned char *used; /* [argc] */
    const char *cmd;
} rb_args;

int rb_args_init(rb_args *a, const char *cmd, int argc, char **argv);
void rb_args_free(rb_args *a);
/* Value of --name, or NULL. A missing value is a usage error reported through err. */
const char *rb_args_str(rb_args *a, const char *name, rb_error *err);
/* Presence of a --flag without value. */
int rb_args_flag(rb_args *a, const char *name);
/* Integer option with range check; absent → *out = def. */
int rb_args_int(rb_args *a, const char *name, long def, long lo, long hi, long *out, rb_error *err);
/* --name on|off into *out (absent → def). */
int rb_args_onoff(rb_args *a, const char *name, int def, int *out, rb_error *err);
/* The i-th positional argument, or NULL. Call after all options were consumed. */
const char *rb_args_pos(rb_args *a, int i);
/* Error for any argument not consumed. */
int rb_args_finish(rb_args *a, int n_pos, rb_error *err);

/* Exit code of a library error code: 0 ok; 1 failed (out of memory, numerical failure); 2 usage or
 * input error (everything else: the message names the file and position); 3 interrupted. */
int rb_cli_exit_code(int code);
/* Prints "rotbench: msg" on stderr and returns rb_cli_exit_code (1 for an unset code). */
int rb_cli_fail(const rb_error *err);

/* A command's JSON result on stdout: j dumped with jansson's `flags` (JSON_COMPACT | JSON_REAL_PRECISION(n)
 * or JSON_INDENT(n)), then a newline. Steals j (freed here). Output failures are not reported: the
 * exit code stays the command's. */
struct json_t;
void rb_cli_print_json(struct json_t *j, size_t flags);

/* Reads int32 little-endian ids from a file (size must be a multiple of 4). */
int rb_read_ids(const char *path, int32_t **ids, size_t *n, rb_error *err);

int rb_cmd_ppl(int argc, char **argv);
int rb_cmd_tasks(int argc, char **argv);
int rb_cmd_grad(int argc, char **argv);
int rb_cmd_export_model(int argc, char **argv);
int rb_cmd_tokenize(int argc, char **argv);
int rb_cmd_logits(int argc, char **argv);
int rb_cmd_inspect(int argc, char **argv);
int rb_cmd_make_model(int argc, char **argv);
int rb_cmd_bench(int argc, char **argv);
/* `bench respinquant-step` (cmd_bench_train.c): one ReSpinQuant training step by parts, JSON on stdout. */
int rb_bench_respinquant_step(rb_args *a, rb_error *err);
int rb_cmd_methods(int argc, char **argv);
int rb_cmd_run(int argc, char **argv);
int rb_cmd_sweep(int argc, char **argv);
int rb_cmd_status(int argc, char **argv);
int rb_cmd_index(int argc, char **argv);
int rb_cmd_export(int argc, char **argv);
int rb_cmd_plot(int argc, char **argv);
int rb_cmd_table(int argc, char **argv);

#endif

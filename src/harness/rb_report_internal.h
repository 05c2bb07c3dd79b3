/* Internal to rb_report.c and rb_report_tasks.c: the done runs of a directory as the reports see
 * them, and the zero-shot task table and figure. */
#ifndef RB_REPORT_INTERNAL_H
#define RB_REPORT_INTERNAL_H

#include <stddef.h>
#include <stdio.h>

#include "core/rb_error.h"
#include "harness/rb_config.h"
#include "harness/rb_index.h"
#include "harness/rb_results.h"

/* One done run: its index row, resolved config and per-layer table. */
typedef struct rb_report_run {
    rb_index_row *row;
    rb_config cfg;
    rb_layer_row *layers;
    size_t n_layers_rows;
    char *file; /* results file path */
    /* Figures' method label: rotation.method with only the options whose value differs among the
     * loaded runs of that method ("respinquant[rank=8]"); "" until rb_report_plot fills it. */
    char mlabel[RB_RUN_WORD_MAX + 1];
} rb_report_run;

/* Loads the done runs of dir (one per run, whatever its corpora); quant (NULL = all) keeps only the
 * runs of that quantization preset (case-insensitive). *rows (the index rows the runs point into)
 * and *out are heap: free *rows with free(), the runs with rb_report_runs_free (on success; on error
 * nothing is left to free). Errors: those of rb_index_scan; RB_ENOTFOUND for no run directories;
 * RB_EFORMAT when runs exist but none can be read (each reported as a warning). */
int rb_report_runs_load(const char *dir, const char *quant, rb_index_row **rows, rb_report_run **out, size_t *n_out,
                        rb_error *err);
void rb_report_runs_free(rb_report_run *r, size_t n);
/* "W4A4KV4 RTN": the quantization setting of a run (table columns, figure series). */
void rb_report_setting_label(const rb_report_run *r, char *buf, size_t cap);
/* qsort comparator of method labels (const char *): registry order, then natural order. */
int rb_report_cmp_method(const void *a, const void *b);

/* After the perplexity table: the zero-shot accuracy table and, when an FP reference was scored, the
 * paired-difference table of the runs' /tasks (rb_table_tasks), each preceded by a blank line and a
 * caption (Markdown: a paragraph; LaTeX: % comments; CSV: none). Nothing at all when no run scored
 * tasks. methods: row order (registry order). */
int rb_report_tasks_table(const rb_report_run *r, size_t n, const char *const *methods, size_t n_methods,
                          int format, FILE *f, rb_error *err);
/* Figure tasks_delta: per task (x, categorical), quantized − FP accuracy (the papers' metric) in
 * percentage points with its 95 % bootstrap interval as error bars, one series per run (method and
 * setting, and the seed when several runs share them), a line at 0. Only when some run scored tasks
 * with an FP reference; *count incremented when written. */
int rb_report_tasks_plot(const char *figdir, const rb_report_run *r, size_t n, int *count, rb_error *err);

#endif

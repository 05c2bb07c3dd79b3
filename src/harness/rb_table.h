/* rb_table: text tables (DESIGN §6) rendered as Markdown, LaTeX (booktabs) or CSV, and the
 * papers' methods × settings perplexity pivot.
 *
 * A table is a header of n_cols strings and rows of n_cols cells, all UTF-8 strings owned by the
 * table (copied in). Numbers are formatted when set (rb_table_set_num). Output is deterministic.
 *
 *   Markdown  GitHub pipe table; columns padded to a common width (counted in code points);
 *             '|' escaped as "\|", line breaks as spaces; alignment row from the column alignment.
 *   LaTeX     \begin{tabular}{l r …} \toprule header \midrule rows \bottomrule \end{tabular}
 *             (needs \usepackage{booktabs}); a \midrule also after rows marked with
 *             rb_table_rule_after. Text escaped: \ { } $ & # % _ ~ ^ | < > → \textbackslash{} \{ \}
 *             \$ \& \# \% \_ \textasciitilde{} \textasciicircum{} \textbar{} \textless{}
 *             \textgreater{}; "–" (U+2013) → "--", "—" → "---",
 *             "Δ" → "$\Delta$", "±" → "$\pm$"; line breaks as spaces.
 *   CSV       RFC 4180 quoting: a field holding ',' '"' CR or LF is quoted, '"' doubled; header
 *             first; lines end with "\n" (as the index CSV). */
#ifndef RB_TABLE_H
#define RB_TABLE_H

#include <stddef.h>

#include "core/rb_error.h"

enum { RB_TABLE_MARKDOWN = 0, RB_TABLE_LATEX = 1, RB_TABLE_CSV = 2 };
enum { RB_ALIGN_LEFT = 0, RB_ALIGN_RIGHT = 1, RB_ALIGN_CENTER = 2 };

/* The text written for a missing value: "–" (U+2013 EN DASH). */
#define RB_TABLE_MISSING "\xe2\x80\x93"

typedef struct rb_table {
    size_t n_cols, n_rows;
    char **header;        /* [n_cols] */
    char **cells;         /* [n_rows * n_cols], row-major, never NULL ("" when unset) */
    int *align;           /* [n_cols] RB_ALIGN_*; default left */
    unsigned char *rule;  /* [n_rows] nonzero: \midrule after this row (LaTeX only) */
    size_t cap_rows;
} rb_table;

/* An empty table with n_cols >= 1 columns; header[i] may be NULL (""). header NULL: all "".
 * Free with rb_table_free (also after a failed init). */
int rb_table_init(rb_table *t, size_t n_cols, const char *const *header, rb_error *err);
void rb_table_free(rb_table *t);

/* Appends a row of n_cols cells (cells NULL, or a NULL cell: ""). Index of the row in *row_out
 * (may be NULL). */
int rb_table_add_row(rb_table *t, const char *const *cells, size_t *row_out, rb_error *err);

/* Replaces one cell (text NULL: ""). RB_EINVAL when row/col are out of range. */
int rb_table_set(rb_table *t, size_t row, size_t col, const char *text, rb_error *err);
int rb_table_setf(rb_table *t, size_t row, size_t col, rb_error *err, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* A number with `decimals` digits after the point ("%.*f", C decimal point whatever the locale);
 * NaN → RB_TABLE_MISSING, ±inf → "inf" / "-inf". decimals < 0: "%.9g". */
int rb_table_set_num(rb_table *t, size_t row, size_t col, double v, int decimals, rb_error *err);

/* Column alignment (RB_ALIGN_*), used by Markdown and LaTeX. */
int rb_table_set_align(rb_table *t, size_t col, int align, rb_error *err);
/* Marks a LaTeX \midrule after `row`. */
int rb_table_rule_after(rb_table *t, size_t row, rb_error *err);

/* Renders into a fresh NUL-terminated heap buffer (*out, caller frees; *len bytes without the
 * NUL). format: RB_TABLE_*. */
int rb_table_render(const rb_table *t, int format, char **out, size_t *len, rb_error *err);
/* rb_table_render written atomically to `path` (rb_write_file). */
int rb_table_write(const rb_table *t, int format, const char *path, rb_error *err);
/* Format from a path's extension: ".md" → MARKDOWN, ".tex" → LATEX, ".csv" → CSV; -1 otherwise. */
int rb_table_format_from_path(const char *path);

/* ---- the papers' perplexity pivot ---------------------------------------------------------- */

/* One result: method (row), setting label (column, e.g. "W4A4KV4 RTN"), model, perplexity of the
 * quantized model and of the FP model (NaN when unknown). */
typedef struct rb_pivot_rec {
    const char *method;
    const char *setting;
    const char *model;
    double ppl, ppl_fp;
} rb_pivot_rec;

typedef struct rb_pivot_opts {
    const char *const *methods; /* row order; methods not listed follow in first-seen order; a
                                 * listed method without records gets a row of "–" */
    size_t n_methods;
    const char *fp_label;       /* first row's label; NULL → "FP16" */
    const char *corner;         /* header of the first column; NULL → "Method" */
    int decimals;               /* digits after the point; 0 → 2 (use -1 for none) */
} rb_pivot_opts;

/* Builds (into a fresh table t; rb_table_free it) the methods × settings pivot:
 *   columns  "Method", then one per distinct (model, setting) in first-seen order; headed by the
 *            setting alone when all records share one model, else "<model> <setting>";
 *   row 1    fp_label, cells ppl_fp of the column (the first finite one; a record whose ppl_fp
 *            differs by more than 1e-6 relative is reported with rb_warn), then a \midrule;
 *   rows     one per method: "ppl (Δ)" with Δ = ppl − ppl_fp of that record, e.g. "6.10 (+0.63)";
 *            "ppl" alone when ppl_fp is NaN; "inf" for a diverged run; "–" when the record is
 *            missing or its ppl is NaN.
 * Value columns are right-aligned. RB_EINVAL for a record with a NULL/empty method or setting
 * (model may be NULL or ""), or for two records of the same method and column (aggregate seeds
 * before pivoting). opts may be NULL. */
int rb_table_pivot(rb_table *t, const rb_pivot_rec *recs, size_t n, const rb_pivot_opts *opts,
                   rb_error *err);

/* ---- zero-shot task tables (rb_table_tasks.c) ------------------------------------------------ */

/* One task score of one run: the metric the papers show (acc_norm where lm-eval reports it, else
 * acc) as fractions. */
typedef struct rb_task_rec {
    const char *method, *setting; /* row (both non-empty) */
    const char *model;            /* NULL or "": one model */
    int task;                     /* enum rb_task_id (tasks/rb_taskfile.h) */
    double acc;                   /* the evaluated (quantized) model; NaN: not scored */
    double fp;                    /* the FP model on the same documents; NaN: unknown */
    double delta, lo, hi;         /* paired acc − fp and its 95 % bootstrap interval; delta NaN: no FP reference */
    double p_mcnemar;             /* exact McNemar p of the paired comparison (NaN: none) */
    int fp_only;                  /* an unquantized, unrotated run: supplies `fp` only, no row of its own */
} rb_task_rec;

/* The papers' zero-shot layout from records (several records of one row and task, e.g. seeds, are
 * averaged):
 *   acc    columns [Model,] Setting, Method, one per task present in rb_task_id order headed by
 *          rb_task_label ("PIQA", "ARC-e", …), then "Avg" (mean of the row's task columns; "–" when
 *          one is missing). Values in percent with `decimals` digits (opts->decimals, 0 → 2). Per
 *          model with FP values a first row opts->fp_label ("FP16" when NULL) with them (the first
 *          finite `fp` of the model's records; a differing one is reported with rb_warn), then a \midrule;
 *          then per setting (first-seen order) its methods (opts->methods order, then first-seen),
 *          a \midrule after each setting.
 *   delta  built only when some record has a paired comparison (else left zeroed: n_cols 0): the
 *          same rows without the FP row (and without rows that have no comparison), cells
 *          "-1.30 [-3.40, +0.80]" = Δ in percentage points with its interval, "*" appended when
 *          McNemar p < 0.05; a cell averaging k > 1 records reads "-1.30 (sd 0.40, k runs)"; Avg =
 *          mean of the row's Δ.
 * RB_EINVAL for a record without method or setting, or an unknown task. Free both tables. */
int rb_table_tasks(rb_table *acc, rb_table *delta, const rb_task_rec *recs, size_t n, const rb_pivot_opts *opts,
                   rb_error *err);

#endif

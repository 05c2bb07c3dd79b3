/* rb_trace: per-step logs of a calibrating method (OptRot's loss per Cayley step, ConQuR's corner
 * alignment per update, ...) as named tables of doubles, kept in memory and written by the caller
 * (the experiment harness stores each table as /calibration/<name> in results.h5).
 *
 * A table has fixed named columns; rows are appended. Every function accepts a NULL table (and
 * rb_trace_table_new a NULL trace, returning a NULL table) so that a method logs unconditionally
 * and a caller that does not want the logs passes NULL. */
#ifndef RB_TRACE_H
#define RB_TRACE_H

#include <stddef.h>

#include "core/rb_error.h"

#define RB_TRACE_MAX_TABLES 64
#define RB_TRACE_MAX_COLS 32

typedef struct rb_trace_table {
    char name[64];            /* [A-Za-z0-9._-]+, unique in its trace */
    int n_cols;
    char *cols[RB_TRACE_MAX_COLS]; /* owned */
    double *data;             /* [rows][n_cols] row-major (owned) */
    size_t rows, cap;
} rb_trace_table;

typedef struct rb_trace {
    rb_trace_table *tables[RB_TRACE_MAX_TABLES]; /* owned */
    int n;
} rb_trace;

void rb_trace_init(rb_trace *tr);
void rb_trace_free(rb_trace *tr);

/* New table `name` with the comma-separated column names `cols` ("step,loss,seconds"). tr NULL:
 * *out = NULL and 0. Errors: RB_EINVAL (bad or duplicate name, too many tables/columns),
 * RB_ENOMEM. */
int rb_trace_table_new(rb_trace *tr, const char *name, const char *cols, rb_trace_table **out, rb_error *err);
/* Appends one row of t->n_cols values (t NULL: no-op). Errors: RB_ENOMEM. */
int rb_trace_row(rb_trace_table *t, const double *vals, rb_error *err);
/* Frees a table that is not part of a trace (rb_results_read_trace); NULL is fine. */
void rb_trace_table_free(rb_trace_table *t);
/* Index of column `col` in t, or -1. */
int rb_trace_col(const rb_trace_table *t, const char *col);
/* Table by name, or NULL. */
const rb_trace_table *rb_trace_find(const rb_trace *tr, const char *name);

#endif

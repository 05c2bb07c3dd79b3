#include "core/rb_trace.h"

#include <stdlib.h>
#include <string.h>

void rb_trace_init(rb_trace *tr) { memset(tr, 0, sizeof *tr); }

void rb_trace_table_free(rb_trace_table *t) {
    if (!t) return;
    for (int i = 0; i < t->n_cols; i++) free(t->cols[i]);
    free(t->data);
    free(t);
}

void rb_trace_free(rb_trace *tr) {
    if (!tr) return;
    for (int i = 0; i < tr->n; i++) rb_trace_table_free(tr->tables[i]);
    memset(tr, 0, sizeof *tr);
}

static int valid_name(const char *s) {
    if (!*s || strlen(s) >= 64) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '.' ||
              *s == '_' || *s == '-'))
            return 0;
    return 1;
}

int rb_trace_table_new(rb_trace *tr, const char *name, const char *cols, rb_trace_table **out, rb_error *err) {
    *out = NULL;
    if (!tr) return 0;
    if (!valid_name(name)) return rb_error_set(err, RB_EINVAL, "trace: bad table name '%s'", name);
    if (rb_trace_find(tr, name)) return rb_error_set(err, RB_EINVAL, "trace: table '%s' exists", name);
    if (tr->n >= RB_TRACE_MAX_TABLES) return rb_error_set(err, RB_EINVAL, "trace: more than %d tables", RB_TRACE_MAX_TABLES);
    rb_trace_table *t = calloc(1, sizeof *t);
    if (!t) return rb_error_set(err, RB_ENOMEM, "trace: out of memory");
    strcpy(t->name, name);
    for (const char *p = cols; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (t->n_cols >= RB_TRACE_MAX_COLS || !len || len >= 64) {
            rb_trace_table_free(t);
            return rb_error_set(err, RB_EINVAL, "trace '%s': bad column list '%s'", name, cols);
        }
        if (!(t->cols[t->n_cols] = strndup(p, len))) {
            rb_trace_table_free(t);
            return rb_error_set(err, RB_ENOMEM, "trace: out of memory");
        }
        t->n_cols++;
        p += len + (e != NULL);
    }
    if (!t->n_cols) {
        rb_trace_table_free(t);
        return rb_error_set(err, RB_EINVAL, "trace '%s': no columns", name);
    }
    tr->tables[tr->n++] = t;
    *out = t;
    return 0;
}

int rb_trace_row(rb_trace_table *t, const double *vals, rb_error *err) {
    if (!t) return 0;
    if (t->rows == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        double *d = realloc(t->data, cap * (size_t)t->n_cols * sizeof *d);
        if (!d) return rb_error_set(err, RB_ENOMEM, "trace '%s': out of memory", t->name);
        t->data = d;
        t->cap = cap;
    }
    memcpy(t->data + t->rows * (size_t)t->n_cols, vals, (size_t)t->n_cols * sizeof *vals);
    t->rows++;
    return 0;
}

const rb_trace_table *rb_trace_find(const rb_trace *tr, const char *name) {
    for (int i = 0; tr && i < tr->n; i++)
        if (!strcmp(tr->tables[i]->name, name)) return tr->tables[i];
    return NULL;
}

int rb_trace_col(const rb_trace_table *t, const char *col) {
    for (int i = 0; t && i < t->n_cols; i++)
        if (!strcmp(t->cols[i], col)) return i;
    return -1;
}

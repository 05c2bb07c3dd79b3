/* rb_table_tasks: the papers' zero-shot accuracy table and the paired-difference table
 * (rb_table.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"
#include "core/rb_log.h"
#include "harness/rb_table.h"
#include "tasks/rb_taskfile.h"

static const char *nz(const char *s) { return s ? s : ""; }

/* One row of the tables: (model, setting, method), and per task the sums of its records. */
typedef struct trow {
    const char *model, *setting, *method;
    size_t model_i, setting_i; /* first-seen indices (ordering) */
    int method_rank;           /* position in opts->methods, or n_methods + first-seen */
    double acc[RB_TASK_COUNT];
    int n_acc[RB_TASK_COUNT];
    double d[RB_TASK_COUNT], d2[RB_TASK_COUNT], lo[RB_TASK_COUNT], hi[RB_TASK_COUNT], p[RB_TASK_COUNT];
    int n_d[RB_TASK_COUNT];
} trow;

static size_t intern(const char **v, size_t *n, const char *s) {
    for (size_t i = 0; i < *n; i++)
        if (!strcmp(v[i], s)) return i;
    v[*n] = s;
    return (*n)++;
}

static int cmp_trow(const void *a, const void *b) {
    const trow *x = a, *y = b;
    if (x->model_i != y->model_i) return x->model_i < y->model_i ? -1 : 1;
    if (x->setting_i != y->setting_i) return x->setting_i < y->setting_i ? -1 : 1;
    return (x->method_rank > y->method_rank) - (x->method_rank < y->method_rank);
}

/* "%+.*f" of a fraction in percent, without "-0.00". */
static void signed_pct(char *buf, size_t cap, double v, int dec) {
    snprintf(buf, cap, "%+.*f", dec, 100.0 * v);
    if (buf[0] == '-' && strspn(buf + 1, "0.") == strlen(buf + 1)) buf[0] = '+';
}

static int set_pct(rb_table *t, size_t row, size_t col, double v, int dec, rb_error *err) {
    return rb_table_set_num(t, row, col, isnan(v) ? NAN : 100.0 * v, dec, err);
}

typedef struct layout {
    int multi_model, ncol_lead, n_tasks;
    int tasks[RB_TASK_COUNT];
} layout;

static int make_table(rb_table *t, const layout *L, rb_error *err) {
    const char *hdr[3 + RB_TASK_COUNT + 1];
    int k = 0;
    if (L->multi_model) hdr[k++] = "Model";
    hdr[k++] = "Setting";
    hdr[k++] = "Method";
    for (int j = 0; j < L->n_tasks; j++) hdr[k++] = rb_task_label(L->tasks[j]);
    hdr[k++] = "Avg";
    int rc = rb_table_init(t, (size_t)k, hdr, err);
    for (int c = L->ncol_lead; !rc && c < k; c++) rc = rb_table_set_align(t, (size_t)c, RB_ALIGN_RIGHT, err);
    return rc;
}

static int put_lead(rb_table *t, size_t row, const layout *L, const char *model, const char *setting,
                    const char *method, rb_error *err) {
    int c = 0, rc = 0;
    if (L->multi_model) rc = rb_table_set(t, row, (size_t)c++, model, err);
    if (!rc) rc = rb_table_set(t, row, (size_t)c++, setting, err);
    if (!rc) rc = rb_table_set(t, row, (size_t)c, method, err);
    return rc;
}

/* A row of percentages v[task] (NaN: missing) and their mean. */
static int put_values(rb_table *t, size_t row, const layout *L, const double *v, int dec, rb_error *err) {
    double sum = 0;
    int all = 1, rc = 0;
    for (int j = 0; j < L->n_tasks && !rc; j++) {
        double x = v[L->tasks[j]];
        rc = set_pct(t, row, (size_t)(L->ncol_lead + j), x, dec, err);
        if (isnan(x)) all = 0;
        sum += x;
    }
    if (!rc) rc = set_pct(t, row, (size_t)(L->ncol_lead + L->n_tasks), all ? sum / L->n_tasks : NAN, dec, err);
    return rc;
}

static int delta_row(rb_table *t, size_t row, const layout *L, const trow *r, int dec, rb_error *err) {
    double sum = 0;
    int all = 1, rc = 0;
    for (int j = 0; j < L->n_tasks && !rc; j++) {
        int ti = L->tasks[j], k = r->n_d[ti];
        char cell[160], a[48], b[48], c[48];
        if (k == 0) {
            all = 0;
            rc = rb_table_set(t, row, (size_t)(L->ncol_lead + j), RB_TABLE_MISSING, err);
            continue;
        }
        double mean = r->d[ti] / k;
        sum += mean;
        signed_pct(a, sizeof a, mean, dec);
        if (k == 1) {
            signed_pct(b, sizeof b, r->lo[ti], dec);
            signed_pct(c, sizeof c, r->hi[ti], dec);
            if (isnan(r->lo[ti]) || isnan(r->hi[ti])) snprintf(cell, sizeof cell, "%s", a);
            else snprintf(cell, sizeof cell, "%s [%s, %s]%s", a, b, c, r->p[ti] < 0.05 ? "*" : "");
        } else {
            double var = (r->d2[ti] - k * mean * mean) / (k - 1);
            snprintf(cell, sizeof cell, "%s (sd %.*f, %d runs)", a, dec, 100.0 * sqrt(var > 0 ? var : 0), k);
        }
        rc = rb_table_set(t, row, (size_t)(L->ncol_lead + j), cell, err);
    }
    if (!rc && all) {
        char a[48];
        signed_pct(a, sizeof a, sum / L->n_tasks, dec);
        rc = rb_table_set(t, row, (size_t)(L->ncol_lead + L->n_tasks), a, err);
    } else if (!rc) {
        rc = rb_table_set(t, row, (size_t)(L->ncol_lead + L->n_tasks), RB_TABLE_MISSING, err);
    }
    return rc;
}

int rb_table_tasks(rb_table *acc, rb_table *delta, const rb_task_rec *recs, size_t n, const rb_pivot_opts *opts,
                   rb_error *err) {
    RB_ASSERT(acc && delta);
    memset(acc, 0, sizeof *acc);
    memset(delta, 0, sizeof *delta);
    rb_pivot_opts def = {0};
    if (!opts) opts = &def;
    int dec = opts->decimals == 0 ? 2 : opts->decimals < 0 ? 0 : opts->decimals;
    if (dec > 9) dec = 9;
    if (n && !recs) return rb_error_set(err, RB_EINVAL, "task table: %zu records but recs is NULL", n);
    for (size_t i = 0; i < n; i++) {
        if (!recs[i].method || !*recs[i].method || !recs[i].setting || !*recs[i].setting)
            return rb_error_set(err, RB_EINVAL, "task table: record %zu has no method or setting", i);
        if (recs[i].task < 0 || recs[i].task >= RB_TASK_COUNT)
            return rb_error_set(err, RB_EINVAL, "task table: record %zu: unknown task %d", i, recs[i].task);
    }
    int rc = 0;
    const char **models = calloc(n + 1, sizeof *models), **settings = calloc(n + 1, sizeof *settings);
    const char **meths = calloc(n + opts->n_methods + 1, sizeof *meths);
    trow *rows = calloc(n + 1, sizeof *rows);
    double *fp = calloc((n + 1) * RB_TASK_COUNT, sizeof *fp);
    size_t nm = 0, ns = 0, nme = 0, nr = 0;
    if (!models || !settings || !meths || !rows || !fp) {
        rc = rb_error_set(err, RB_ENOMEM, "task table: out of memory");
        goto done;
    }
    for (size_t i = 0; i < opts->n_methods; i++) intern(meths, &nme, opts->methods[i]);
    layout L = {0};
    int present[RB_TASK_COUNT] = {0}, any_delta = 0;
    for (size_t i = 0; i < n; i++) {
        const rb_task_rec *x = &recs[i];
        size_t mi = intern(models, &nm, nz(x->model)), si = intern(settings, &ns, x->setting);
        int rank = (int)intern(meths, &nme, x->method);
        if (mi) L.multi_model = 1;
        present[x->task] = 1;
        if (x->fp_only) continue;
        size_t r = 0;
        while (r < nr && !(rows[r].model_i == mi && rows[r].setting_i == si && !strcmp(rows[r].method, x->method))) r++;
        if (r == nr) {
            rows[nr++] = (trow){.model = models[mi], .setting = x->setting, .method = x->method, .model_i = mi,
                                .setting_i = si, .method_rank = rank};
        }
        trow *w = &rows[r];
        if (!isnan(x->acc)) w->acc[x->task] += x->acc, w->n_acc[x->task]++;
        if (!isnan(x->delta)) {
            any_delta = 1;
            w->d[x->task] += x->delta;
            w->d2[x->task] += x->delta * x->delta;
            w->lo[x->task] = x->lo;
            w->hi[x->task] = x->hi;
            w->p[x->task] = x->p_mcnemar;
            w->n_d[x->task]++;
        }
    }
    /* FP values per model and task */
    for (size_t i = 0; i < nm * RB_TASK_COUNT; i++) fp[i] = NAN;
    for (size_t i = 0; i < n; i++) {
        const rb_task_rec *x = &recs[i];
        size_t mi = intern(models, &nm, nz(x->model));
        double *f = &fp[mi * RB_TASK_COUNT + x->task];
        if (isnan(x->fp)) continue;
        if (isnan(*f)) *f = x->fp;
        else if (fabs(*f - x->fp) > 1e-9)
            rb_warn("task table: %s%s%s: FP accuracy %.6f of %s (%s) differs from %.6f (first seen); different "
                    "documents (limit) or settings?", nz(x->model), *nz(x->model) ? " " : "", rb_task_name(x->task),
                    x->fp, x->method, x->setting, *f);
    }
    for (int t = 0; t < RB_TASK_COUNT; t++)
        if (present[t]) L.tasks[L.n_tasks++] = t;
    L.ncol_lead = 2 + L.multi_model;
    qsort(rows, nr, sizeof *rows, cmp_trow);

    if ((rc = make_table(acc, &L, err))) goto done;
    size_t row;
    for (size_t m = 0; m < nm && !rc; m++) {
        int have_fp = 0; /* the FP row only when the model has an FP value */
        for (int t = 0; t < RB_TASK_COUNT; t++) have_fp |= !isnan(fp[m * RB_TASK_COUNT + t]);
        if (have_fp) {
            if ((rc = rb_table_add_row(acc, NULL, &row, err)) ||
                (rc = put_lead(acc, row, &L, models[m], "", opts->fp_label ? opts->fp_label : "FP16", err)) ||
                (rc = put_values(acc, row, &L, &fp[m * RB_TASK_COUNT], dec, err)))
                break;
            acc->rule[row] = 1;
        }
        for (size_t r = 0; r < nr && !rc; r++) {
            if (rows[r].model_i != m) continue;
            double v[RB_TASK_COUNT];
            for (int t = 0; t < RB_TASK_COUNT; t++) v[t] = rows[r].n_acc[t] ? rows[r].acc[t] / rows[r].n_acc[t] : NAN;
            if ((rc = rb_table_add_row(acc, NULL, &row, err)) ||
                (rc = put_lead(acc, row, &L, rows[r].model, rows[r].setting, rows[r].method, err)) ||
                (rc = put_values(acc, row, &L, v, dec, err)))
                break;
            if (r + 1 == nr || rows[r + 1].setting_i != rows[r].setting_i || rows[r + 1].model_i != m) acc->rule[row] = 1;
        }
    }
    if (rc || !any_delta) goto done;
    if ((rc = make_table(delta, &L, err))) goto done;
    size_t last = SIZE_MAX;
    for (size_t r = 0; r < nr && !rc; r++) {
        int k = 0;
        for (int t = 0; t < RB_TASK_COUNT; t++) k += rows[r].n_d[t];
        if (!k) continue;
        if (last != SIZE_MAX && (rows[last].setting_i != rows[r].setting_i || rows[last].model_i != rows[r].model_i))
            delta->rule[delta->n_rows - 1] = 1;
        if ((rc = rb_table_add_row(delta, NULL, &row, err)) ||
            (rc = put_lead(delta, row, &L, rows[r].model, rows[r].setting, rows[r].method, err)))
            break;
        rc = delta_row(delta, row, &L, &rows[r], dec, err);
        last = r;
    }
done:
    if (rc) {
        rb_table_free(acc);
        rb_table_free(delta);
    }
    free(models);
    free(settings);
    free(meths);
    free(rows);
    free(fp);
    return rc;
}

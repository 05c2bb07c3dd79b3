/* rb_report_tasks: zero-shot task results of a directory of runs as the papers' table, the paired
 * difference table and the tasks_delta figure (rb_report_internal.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_log.h"
#include "harness/rb_figure.h"
#include "harness/rb_report_internal.h"
#include "harness/rb_results_tasks.h"
#include "harness/rb_table.h"
#include "quant/rb_qpreset.h"

#define MAX_SERIES 64

/* Task data of every run (runs that scored none have nd 0). */
typedef struct run_tasks {
    rb_task_data *d;
    int nd;
    char setting[96];
} run_tasks;

static void tasks_free(run_tasks *t, size_t n) {
    for (size_t i = 0; t && i < n; i++) rb_task_data_free(t[i].d, t[i].nd);
    free(t);
}

/* Reads /tasks of every run (an unreadable one is skipped with a warning). *total: task groups read.
 * The setting label of a run scored with data.task_bos: tokenizer-default gets " +BOS". */
static int tasks_load(const rb_report_run *r, size_t n, run_tasks **out, size_t *total, rb_error *err) {
    run_tasks *t = calloc(n + 1, sizeof *t);
    if (!t) return rb_error_set(err, RB_ENOMEM, "out of memory");
    *total = 0;
    for (size_t i = 0; i < n; i++) {
        rb_error e = {0};
        if (rb_results_read_tasks(r[i].file, 0, &t[i].d, &t[i].nd, &e)) {
            if (e.code == RB_ENOMEM) {
                tasks_free(t, n);
                *err = e;
                return e.code;
            }
            rb_warn("%s: zero-shot tasks skipped: %s", r[i].row->dir, e.msg);
            continue;
        }
        rb_report_setting_label(&r[i], t[i].setting, sizeof t[i].setting);
        if (t[i].nd && t[i].d[0].bos == RB_TASK_BOS_DEFAULT) /* data.task_bos is the run's: keep such runs apart */
            strncat(t[i].setting, " +BOS", sizeof t[i].setting - strlen(t[i].setting) - 1);
        *total += (size_t)t[i].nd;
    }
    *out = t;
    return 0;
}

/* An unquantized, unrotated run: its scores are the FP model's. */
static int is_fp_run(const rb_report_run *r) {
    return r->row->w_bits == RB_QBITS_OFF && r->row->a_bits == RB_QBITS_OFF && r->row->kv_bits == RB_QBITS_OFF &&
           r->cfg.quant.q.bits == RB_QBITS_OFF && !strcmp(r->cfg.rotation.method, "identity");
}

static const char *model_name(const rb_report_run *r) {
    const char *m = r->cfg.model.path, *slash = strrchr(m, '/');
    return slash && slash[1] ? slash + 1 : m;
}

static void write_caption(FILE *f, int format, const char *text) {
    if (format == RB_TABLE_MARKDOWN) fprintf(f, "\n%s\n\n", text);
    else if (format == RB_TABLE_LATEX) fprintf(f, "\n%% %s\n", text);
    else fputs("\n", f);
}

static int render_to(const rb_table *t, int format, FILE *f, rb_error *err) {
    char *out = NULL;
    size_t len = 0;
    int rc = rb_table_render(t, format, &out, &len, err);
    if (!rc) fwrite(out, 1, len, f);
    free(out);
    return rc;
}

int rb_report_tasks_table(const rb_report_run *r, size_t n, const char *const *methods, size_t n_methods,
                          int format, FILE *f, rb_error *err) {
    run_tasks *t;
    size_t total;
    int rc = tasks_load(r, n, &t, &total, err);
    if (rc) return rc;
    rb_task_rec *rec = calloc(total + 1, sizeof *rec);
    size_t k = 0;
    int docs[RB_TASK_COUNT] = {0}, warned[RB_TASK_COUNT] = {0};
    if (!rec) rc = rb_error_set(err, RB_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++)
        for (int j = 0; j < t[i].nd; j++) {
            const rb_task_data *d = &t[i].d[j];
            if (!docs[d->task]) docs[d->task] = d->n_docs;
            else if (docs[d->task] != d->n_docs && !warned[d->task]++)
                rb_warn("task %s: runs scored %d and %d documents (data.tasks limit); the table compares and "
                        "averages different document sets", rb_task_name(d->task), docs[d->task], d->n_docs);
            const rb_task_paired *p = rb_task_data_primary_pair(d);
            double acc = rb_task_data_primary(d, 0);
            rec[k++] = (rb_task_rec){.method = r[i].row->method, .setting = t[i].setting, .model = model_name(&r[i]),
                                     .task = d->task, .acc = acc,
                                     .fp = d->have_fp ? rb_task_data_primary(d, 1) : is_fp_run(&r[i]) ? acc : NAN,
                                     .delta = d->have_fp ? p->delta : NAN, .lo = p->lo, .hi = p->hi,
                                     .p_mcnemar = p->p_mcnemar, .fp_only = is_fp_run(&r[i]) && !d->have_fp};
        }
    rb_table ta, td;
    memset(&ta, 0, sizeof ta);
    memset(&td, 0, sizeof td);
    rb_pivot_opts po = {.methods = methods, .n_methods = n_methods, .fp_label = "FP32", .decimals = 2};
    if (!rc && k && !(rc = rb_table_tasks(&ta, &td, rec, k, &po, err))) {
        write_caption(f, format,
                      "Zero-shot accuracy (%): acc_norm where lm-eval reports it, else acc (QuaRot's tables); "
                      "Avg = mean of the task columns; FP32 = the FP model on the same documents.");
        rc = render_to(&ta, format, f, err);
        if (!rc && td.n_cols) {
            write_caption(f, format,
                          "Quantized - FP (percentage points, same metric) with the 95% paired bootstrap interval "
                          "over documents; * = McNemar p < 0.05; several runs (seeds): mean (sd, runs).");
            rc = render_to(&td, format, f, err);
        }
    }
    rb_table_free(&ta);
    rb_table_free(&td);
    free(rec);
    tasks_free(t, n);
    return rc;
}

/* One series of the figure: the runs sharing a method and setting. */
typedef struct dser {
    const char *method, *setting;
    char name[192];
    double sum[RB_TASK_COUNT], sum2[RB_TASK_COUNT], lo[RB_TASK_COUNT], hi[RB_TASK_COUNT];
    int cnt[RB_TASK_COUNT];
} dser;

int rb_report_tasks_plot(const char *figdir, const rb_report_run *r, size_t n, int *count, rb_error *err) {
    run_tasks *t;
    size_t total;
    int rc = tasks_load(r, n, &t, &total, err);
    if (rc) return rc;
    dser *ser = calloc(MAX_SERIES, sizeof *ser);
    int ns = 0, present[RB_TASK_COUNT] = {0}, multi = 0;
    if (!ser) rc = rb_error_set(err, RB_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++)
        for (int j = 0; j < t[i].nd; j++) {
            const rb_task_data *d = &t[i].d[j];
            const rb_task_paired *p = rb_task_data_primary_pair(d);
            if (!d->have_fp || isnan(p->delta)) continue;
            int s = 0;
            while (s < ns && !(!strcmp(ser[s].method, r[i].row->method) && !strcmp(ser[s].setting, t[i].setting))) s++;
            if (s == ns) {
                if (ns == MAX_SERIES) continue;
                ser[ns].method = r[i].row->method;
                ser[ns].setting = t[i].setting;
                ns++;
            }
            present[d->task] = 1;
            ser[s].sum[d->task] += p->delta;
            ser[s].sum2[d->task] += p->delta * p->delta;
            ser[s].lo[d->task] = p->lo;
            ser[s].hi[d->task] = p->hi;
            if (++ser[s].cnt[d->task] > 1) multi = 1;
        }
    int tasks[RB_TASK_COUNT], nt = 0;
    for (int k = 0; k < RB_TASK_COUNT; k++)
        if (present[k]) tasks[nt++] = k;
    if (!rc && ns && nt) {
        const char *xt[RB_TASK_COUNT];
        double *buf = calloc((size_t)ns * 5 * nt, sizeof *buf);
        rb_fig_series *fs = calloc((size_t)ns + 1, sizeof *fs);
        if (!buf || !fs) rc = rb_error_set(err, RB_ENOMEM, "out of memory");
        for (int j = 0; j < nt; j++) xt[j] = rb_task_label(tasks[j]);
        for (int s = 0; !rc && s < ns; s++) {
            double *x = buf + (size_t)s * 5 * nt, *y = x + nt, *lo = y + nt, *hi = lo + nt, *sd = hi + nt;
            int several = 0;
            for (int j = 0; j < nt; j++) several |= ser[s].cnt[tasks[j]] > 1;
            for (int j = 0; j < nt; j++) {
                int k = tasks[j], c = ser[s].cnt[k];
                double m = c ? ser[s].sum[k] / c : NAN;
                x[j] = j + (ns > 1 ? (s - (ns - 1) / 2.0) * (0.7 / ns) : 0.0);
                y[j] = 100.0 * m;
                lo[j] = c == 1 ? 100.0 * ser[s].lo[k] : NAN;
                hi[j] = c == 1 ? 100.0 * ser[s].hi[k] : NAN;
                double var = c > 1 ? (ser[s].sum2[k] - c * m * m) / (c - 1) : NAN;
                sd[j] = c > 1 ? 100.0 * sqrt(var > 0 ? var : 0) : NAN;
            }
            snprintf(ser[s].name, sizeof ser[s].name, "%s %s%s", ser[s].method, ser[s].setting,
                     several ? " (mean ± sd over runs)" : "");
            fs[s] = (rb_fig_series){.name = ser[s].name, .n = (size_t)nt, .x = x, .y = y, .style = RB_FIG_POINTS};
            if (several) fs[s].ysd = sd;
            else fs[s].ylo = lo, fs[s].yhi = hi;
        }
        static const double zy[2] = {0, 0};
        double zxe[2] = {-0.5, nt - 0.5};
        fs[ns] = (rb_fig_series){.name = NULL, .n = 2, .x = zxe, .y = zy, .style = RB_FIG_LINES};
        rb_figure fig = {.title = multi ? "zero-shot accuracy, quantized - FP (runs of one method and setting: mean ± sd)"
                                        : "zero-shot accuracy, quantized - FP, with 95% paired bootstrap intervals",
                         .xlabel = "task",
                         .ylabel = "accuracy difference (percentage points; acc_norm where reported)",
                         .xtics = xt, .n_xtics = (size_t)nt, .series = fs, .n_series = (size_t)ns + 1,
                         .width = nt > 5 ? 420 + 110 * nt : 0, .height = 600}; /* room for the task labels */
        if (!rc && !(rc = rb_figure_save(&fig, figdir, "tasks_delta", err))) (*count)++;
        free(buf);
        free(fs);
    }
    free(ser);
    tasks_free(t, n);
    return rc;
}

#include "harness/rb_report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/rb_file.h"
#include "core/rb_log.h"
#include "text/rb_calib.h"
#include "harness/rb_config.h"
#include "harness/rb_figure.h"
#include "harness/rb_index.h"
#include "harness/rb_report_internal.h"
#include "harness/rb_results.h"
#include "harness/rb_table.h"
#include "methods/rb_method.h"
#include "model/rb_forward.h"

#define MAX_GROUPS 64

typedef rb_report_run run;

void rb_report_runs_free(run *r, size_t n) {
    for (size_t i = 0; i < n; i++) {
        rb_config_free(&r[i].cfg);
        free(r[i].layers);
        free(r[i].file);
    }
    free(r);
}

int rb_report_runs_load(const char *dir, const char *quant, rb_index_row **rows, run **out, size_t *n_out,
                        rb_error *err) {
    size_t n = 0;
    *out = NULL;
    *n_out = 0;
    int rc = rb_index_scan(dir, rows, &n, err);
    if (rc) return rc;
    run *r = calloc(n + 1, sizeof *r);
    if (!r) return rb_error_set(err, RB_ENOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        rb_index_row *x = &(*rows)[i];
        if (x->status != RB_RUN_DONE || (quant && strcasecmp(x->quant, quant))) continue;
        int dup = 0; /* one entry per run: the index has a row per corpus */
        for (size_t j = 0; j < k; j++) dup |= !strcmp(r[j].row->run_id, x->run_id);
        if (dup) continue;
        char *rd = rb_path_join(dir, x->dir), *rf = rd ? rb_path_join(rd, x->file) : NULL;
        rb_run_summary s;
        char *yaml = NULL;
        rb_error e = {0};
        if (!rf || rb_results_read_summary(rf, &s, &e) || rb_results_read_layers(rf, &r[k].layers, &r[k].n_layers_rows, &e)) {
            rb_warn("%s: skipped: %s", x->dir, e.msg);
            free(rd);
            free(rf);
            continue;
        }
        char *cy = rd ? rb_path_join(rd, "config.yaml") : NULL;
        size_t len;
        if (cy && !rb_read_file(cy, 16u << 20, &yaml, &len, &e) &&
            !rb_config_load_string(yaml, len, cy, NULL, NULL, 0, &r[k].cfg, &e)) {
            r[k].row = x;
            r[k].file = rf;
            rf = NULL;
            k++;
        } else {
            rb_warn("%s: config not readable, skipped: %s", x->dir, e.msg);
            free(r[k].layers);
            r[k].layers = NULL;
        }
        free(yaml);
        free(cy);
        free(rd);
        free(rf);
    }
    *out = r;
    *n_out = k;
    return 0;
}

static int group_of(const char **names, int *n, const char *name) {
    for (int i = 0; i < *n; i++)
        if (!strcmp(names[i], name)) return i;
    if (*n >= MAX_GROUPS) return -1;
    names[*n] = name;
    return (*n)++;
}

/* Per-layer curve of one site statistic, averaged over the runs of each method. */
static int plot_per_layer(const char *figdir, run *r, size_t n, int site, int mse, int *count, rb_error *err) {
    const char *methods[MAX_GROUPS];
    int nm = 0, L = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < r[i].n_layers_rows; k++) L = r[i].layers[k].layer + 1 > L ? r[i].layers[k].layer + 1 : L;
    if (L == 0) return 0;
    double *sum = calloc((size_t)MAX_GROUPS * L, sizeof *sum), *cnt = calloc((size_t)MAX_GROUPS * L, sizeof *cnt);
    double *x = malloc((size_t)L * sizeof *x), *y = malloc((size_t)MAX_GROUPS * L * sizeof *y);
    rb_fig_series *ser = calloc(MAX_GROUPS, sizeof *ser);
    int rc = 0;
    if (!sum || !cnt || !x || !y || !ser) {
        rc = rb_error_set(err, RB_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        int g = group_of(methods, &nm, r[i].row->method);
        if (g < 0) continue;
        for (size_t k = 0; k < r[i].n_layers_rows; k++) {
            const rb_layer_row *lr = &r[i].layers[k];
            if (lr->kind != RB_LROW_ACT || lr->name != site) continue;
            double v = mse ? lr->act_mse : lr->fp.kurt_token_mean;
            if (!isfinite(v)) continue;
            sum[g * L + lr->layer] += v;
            cnt[g * L + lr->layer] += 1;
        }
    }
    for (int l = 0; l < L; l++) x[l] = l;
    for (int g = 0; g < nm; g++) {
        for (int l = 0; l < L; l++) y[g * L + l] = cnt[g * L + l] > 0 ? sum[g * L + l] / cnt[g * L + l] : NAN;
        ser[g] = (rb_fig_series){.name = methods[g], .n = (size_t)L, .x = x, .y = y + (size_t)g * L};
    }
    char title[128], ylabel[128], name[64];
    snprintf(title, sizeof title, "%s at %s per layer", mse ? "activation quantization MSE" : "per-token kurtosis",
             rb_site_name(site));
    snprintf(ylabel, sizeof ylabel, "%s", mse ? "relative MSE  sum|Q(x)-x|^2 / sum|x|^2" : "Pearson kurtosis (mean over tokens)");
    snprintf(name, sizeof name, "%s_%s", mse ? "act_mse" : "kurtosis", rb_site_name(site));
    rb_figure fig = {.title = title, .xlabel = "decoder layer", .ylabel = ylabel, .logy = 1, .series = ser,
                     .n_series = (size_t)nm};
    if (!(rc = rb_figure_save(&fig, figdir, name, err))) (*count)++;
done:
    free(sum);
    free(cnt);
    free(x);
    free(y);
    free(ser);
    return rc;
}

/* y (mean ± sd over runs) of each method at categorical x values (labels in first-seen order). */
typedef struct catplot {
    const char *xl[MAX_GROUPS], *gl[MAX_GROUPS];
    int nx, ng;
    double s[MAX_GROUPS][MAX_GROUPS], s2[MAX_GROUPS][MAX_GROUPS], c[MAX_GROUPS][MAX_GROUPS];
} catplot;

static void cat_add(catplot *cp, const char *xlabel, const char *group, double v) {
    int x = group_of(cp->xl, &cp->nx, xlabel), g = group_of(cp->gl, &cp->ng, group);
    if (x < 0 || g < 0 || !isfinite(v)) return;
    cp->s[g][x] += v;
    cp->s2[g][x] += v * v;
    cp->c[g][x] += 1;
}

static int cat_save(const catplot *cp, const char *figdir, const char *name, const char *title, const char *xlabel,
                    const char *ylabel, int *count, rb_error *err) {
    double y[MAX_GROUPS][MAX_GROUPS], sd[MAX_GROUPS][MAX_GROUPS];
    rb_fig_series ser[MAX_GROUPS];
    for (int g = 0; g < cp->ng; g++) {
        for (int x = 0; x < cp->nx; x++) {
            double c = cp->c[g][x];
            y[g][x] = c > 0 ? cp->s[g][x] / c : NAN;
            sd[g][x] = c > 1 ? sqrt(fmax(0.0, (cp->s2[g][x] - c * y[g][x] * y[g][x]) / (c - 1))) : 0.0;
        }
        ser[g] = (rb_fig_series){.name = cp->gl[g], .n = (size_t)cp->nx, .y = y[g], .ysd = sd[g]};
    }
    rb_figure fig = {.title = title, .xlabel = xlabel, .ylabel = ylabel, .logy = 1, .xtics = cp->xl,
                     .n_xtics = (size_t)cp->nx, .series = ser, .n_series = (size_t)cp->ng};
    int rc = rb_figure_save(&fig, figdir, name, err);
    if (!rc) (*count)++;
    return rc;
}

void rb_report_setting_label(const run *r, char *buf, size_t cap) {
    snprintf(buf, cap, "%s %s", r->row->quant, r->row->w_algo == 1 ? "GPTQ" : "RTN");
}

/* Column `col` of every run's trace `table` against the row index, averaged over the runs with the
 * same series key (method label, quantization setting, calibration batch and order); optionally
 * divided by the first row. No figure when no run logged the table. */
static int plot_trace(const char *figdir, run *r, size_t n, const char *table, const char *xcol, const char *col,
                      int normalize, const char *name, const char *title, const char *xlabel, const char *ylabel,
                      int *count, rb_error *err) {
    enum { MAXK = 16 };
    char keys[MAXK][160];
    int nk = 0, rc = 0;
    size_t len[MAXK] = {0};
    double *sum[MAXK] = {0}, *cnt[MAXK] = {0}, *xs[MAXK] = {0};
    for (size_t i = 0; i < n && !rc; i++) {
        rb_trace_table *t = NULL;
        rb_error e = {0};
        if (rb_results_read_trace(r[i].file, table, &t, &e)) {
            if (e.code != RB_ENOTFOUND) rb_warn("%s", e.msg);
            continue;
        }
        int c = rb_trace_col(t, col);
        char key[160];
        const rb_cfg_calib *cc = &r[i].cfg.data.calib;
        snprintf(key, sizeof key, "%s %s, %d windows, batch %d, %s", r[i].row->method, r[i].row->quant, cc->samples,
                 cc->batch, rb_calib_order_name(cc->order));
        int k = 0;
        while (k < nk && strcmp(keys[k], key)) k++;
        if (c < 0 || !t->rows || (k == nk && nk == MAXK)) {
            rb_trace_table_free(t);
            continue;
        }
        if (k == nk) snprintf(keys[nk++], sizeof keys[0], "%s", key);
        if (t->rows > len[k]) {
            double *s2 = realloc(sum[k], t->rows * sizeof *s2), *c2 = s2 ? realloc(cnt[k], t->rows * sizeof *c2) : NULL;
            if (s2) sum[k] = s2;
            if (!c2) {
                rb_trace_table_free(t);
                rc = rb_error_set(err, RB_ENOMEM, "out of memory");
                break;
            }
            cnt[k] = c2;
            double *x2 = realloc(xs[k], t->rows * sizeof *x2);
            if (!x2) {
                rb_trace_table_free(t);
                rc = rb_error_set(err, RB_ENOMEM, "out of memory");
                break;
            }
            xs[k] = x2;
            /* x: the column xcol made cumulative across passes (it restarts), else the row number */
            int xc = xcol ? rb_trace_col(t, xcol) : -1;
            double off = 0, prev = 0;
            for (size_t j = 0; j < t->rows; j++) {
                double v = xc >= 0 ? t->data[j * (size_t)t->n_cols + xc] : (double)(j + 1);
                if (xc >= 0 && v < prev) off += prev;
                prev = v;
                if (j >= len[k]) xs[k][j] = v + off;
            }
            for (size_t j = len[k]; j < t->rows; j++) sum[k][j] = cnt[k][j] = 0;
            len[k] = t->rows;
        }
        double y0 = t->data[c];
        for (size_t j = 0; j < t->rows; j++) {
            double v = t->data[j * (size_t)t->n_cols + c];
            if (normalize) v = y0 != 0 ? v / y0 : NAN;
            if (isfinite(v)) sum[k][j] += v, cnt[k][j] += 1;
        }
        rb_trace_table_free(t);
    }
    if (!rc && nk) {
        rb_fig_series ser[MAXK];
        for (int k = 0; k < nk; k++) {
            for (size_t j = 0; j < len[k]; j++) sum[k][j] = cnt[k][j] > 0 ? sum[k][j] / cnt[k][j] : NAN;
            ser[k] = (rb_fig_series){.name = keys[k], .n = len[k], .x = xs[k], .y = sum[k]};
        }
        rb_figure fig = {.title = title, .xlabel = xlabel, .ylabel = ylabel, .series = ser, .n_series = (size_t)nk};
        if (!(rc = rb_figure_save(&fig, figdir, name, err))) (*count)++;
    }
    for (int k = 0; k < MAXK; k++) free(sum[k]), free(cnt[k]), free(xs[k]);
    return rc;
}

/* The value of rotation option `opt` of run r: as configured, else method m's documented default. */
static const char *opt_value(const run *r, const rb_method *m, const char *opt) {
    for (int k = 0; k < r->cfg.rotation.n_opts; k++)
        if (!strcmp(r->cfg.rotation.opt_names[k], opt)) return r->cfg.rotation.opt_values[k];
    for (const rb_method_option *o = m->options; o && o->name; o++)
        if (!strcmp(o->name, opt)) return o->default_value;
    return NULL;
}

static int cmp_value(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    char *ex, *ey;
    double u = strtod(x, &ex), v = strtod(y, &ey);
    if (!*ex && !*ey && ex != x && ey != y) return (u > v) - (u < v); /* numeric: by value */
    return strcmp(x, y);
}

/* Option ablations: for every method and rotation option whose value differs among the method's runs
 * (e.g. respinquant's rank, spinquant's lr), perplexity and KL against the option's value
 * (categorical, numeric order), one series per quantization setting, mean ± sd over seeds:
 * <method>_<option>_ppl and <method>_<option>_kl. */
static int plot_option_ablations(const char *figdir, run *r, size_t n, int *count, rb_error *err) {
    char(*lab)[RB_RUN_WORD_MAX + 8] = calloc(n ? n : 1, sizeof *lab);
    const char **vals = calloc(n ? n : 1, sizeof *vals);
    catplot *cp = calloc(2, sizeof *cp);
    int rc = lab && vals && cp ? 0 : rb_error_set(err, RB_ENOMEM, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) rb_report_setting_label(&r[i], lab[i], sizeof lab[i]);
    for (const rb_method *const *m = rb_methods(); !rc && *m; m++)
        for (const rb_method_option *o = (*m)->options; !rc && o && o->name; o++) {
            if (!strcmp(o->kind, "key")) continue;
            int nv = 0;
            for (size_t i = 0; i < n; i++) {
                if (strcmp(r[i].cfg.rotation.method, (*m)->name)) continue;
                const char *v = opt_value(&r[i], *m, o->name);
                int seen = 0;
                for (int k = 0; k < nv && !seen; k++) seen = !strcmp(vals[k], v);
                if (!seen && nv < MAX_GROUPS) vals[nv++] = v;
            }
            if (nv < 2) continue;
            qsort(vals, (size_t)nv, sizeof *vals, cmp_value);
            memset(cp, 0, 2 * sizeof *cp);
            for (int k = 0; k < nv; k++) group_of(cp[0].xl, &cp[0].nx, vals[k]), group_of(cp[1].xl, &cp[1].nx, vals[k]);
            for (size_t i = 0; i < n; i++) {
                if (strcmp(r[i].cfg.rotation.method, (*m)->name)) continue;
                const char *v = opt_value(&r[i], *m, o->name);
                for (int k = 0; k < nv; k++)
                    if (!strcmp(vals[k], v)) v = vals[k]; /* the interned label */
                cat_add(&cp[0], v, lab[i], r[i].row->ppl);
                cat_add(&cp[1], v, lab[i], r[i].row->kl);
            }
            for (int y = 0; y < 2 && !rc; y++) {
                char name[96], title[160], xlabel[96];
                snprintf(name, sizeof name, "%s_%s_%s", (*m)->name, o->name, y ? "kl" : "ppl");
                snprintf(title, sizeof title, "%s: %s vs %s (mean ± sd over seeds)", (*m)->name,
                         y ? "KL to the FP model" : "perplexity", o->name);
                snprintf(xlabel, sizeof xlabel, "rotation.options.%s", o->name);
                rc = cat_save(&cp[y], figdir, name, title, xlabel,
                              y ? "KL divergence (nats per token)" : "perplexity (first eval corpus)", count, err);
            }
        }
    free(lab);
    free(vals);
    free(cp);
    return rc;
}

int rb_report_plot(const char *dir, const char *quant, int *n_out, rb_error *err) {
    *n_out = 0;
    rb_index_row *rows = NULL;
    run *r = NULL;
    size_t n = 0;
    int rc = rb_report_runs_load(dir, quant, &rows, &r, &n, err);
    if (rc) return rc;
    if (quant && !n) {
        free(r);
        free(rows);
        return rb_error_set(err, RB_ENOTFOUND, "%s: no done run with quantization '%s'", dir, quant);
    }
    char sub[96];
    snprintf(sub, sizeof sub, quant ? "figures-%s" : "figures", quant);
    char *figdir = rb_path_join(dir, sub);
    if (!figdir) rc = rb_error_set(err, RB_ENOMEM, "out of memory");
    else if (mkdir(figdir, 0777) && !rb_path_is_dir(figdir)) rc = rb_error_set(err, RB_EIO, "%s: cannot create", figdir);
    static const int sites[] = {RB_SITE_ATTN_IN, RB_SITE_O_IN, RB_SITE_MLP_IN, RB_SITE_DOWN_IN};
    for (int s = 0; !rc && n && s < 4; s++) {
        rc = plot_per_layer(figdir, r, n, sites[s], 0, n_out, err);
        if (!rc) rc = plot_per_layer(figdir, r, n, sites[s], 1, n_out, err);
    }
    catplot *cp = calloc(1, sizeof *cp);
    if (!rc && !cp) rc = rb_error_set(err, RB_ENOMEM, "out of memory");
    if (!rc && n) { /* perplexity vs bit-width per method */
        /* x axis from most to fewest bits, whatever order the runs were found in */
        static const char *const by_bits[] = {"W16A16", "W8A8KV8", "W8A8",    "W6A6", "W4A16",
                                              "W4A8",   "W4A4",    "W4A4KV4", "W3A3", "W3A3KV3"};
        for (size_t b = 0; b < sizeof by_bits / sizeof *by_bits; b++)
            for (size_t i = 0; i < n; i++)
                if (!strcmp(r[i].row->quant, by_bits[b])) {
                    group_of(cp->xl, &cp->nx, by_bits[b]);
                    break;
                }
        for (size_t i = 0; i < n; i++) cat_add(cp, r[i].row->quant, r[i].row->method, r[i].row->ppl);
        rc = cat_save(cp, figdir, "ppl_vs_bits", "perplexity vs bit-width", "quantization setting",
                      "perplexity (first eval corpus)", n_out, err);
    }
    /* ablations: only the axes the runs actually vary */
    static const char *const abl[] = {"order", "batch", "samples"};
    for (int a = 0; !rc && n && a < 3; a++) {
        memset(cp, 0, sizeof *cp);
        for (size_t i = 0; i < n; i++) {
            if (!r[i].cfg.data.has_calib) continue;
            const rb_cfg_calib *c = &r[i].cfg.data.calib;
            char xl[32];
            if (a == 0) snprintf(xl, sizeof xl, "%s", rb_calib_order_name(c->order));
            else snprintf(xl, sizeof xl, "%d", a == 1 ? c->batch : c->samples);
            /* labels must outlive the loop: intern them in the config strings (static tables) */
            const char *label = a == 0 ? rb_calib_order_name(c->order) : NULL;
            if (!label) {
                static char pool[MAX_GROUPS][32];
                static int np;
                int found = -1;
                for (int k = 0; k < np; k++)
                    if (!strcmp(pool[k], xl)) found = k;
                if (found < 0 && np < MAX_GROUPS) {
                    snprintf(pool[np], sizeof pool[np], "%s", xl);
                    found = np++;
                }
                if (found < 0) continue;
                label = pool[found];
            }
            cat_add(cp, label, r[i].row->method, r[i].row->ppl);
        }
        if (cp->nx < 2) continue;
        char name[32], title[96], xlabel[64];
        snprintf(name, sizeof name, "ablation_%s", abl[a]);
        snprintf(title, sizeof title, "perplexity vs calibration %s (mean ± sd over seeds)", abl[a]);
        snprintf(xlabel, sizeof xlabel, "calibration %s%s", abl[a], a == 1 ? " (windows per batch)" : a == 2 ? " (windows)" : "");
        rc = cat_save(cp, figdir, name, title, xlabel, "perplexity (first eval corpus)", n_out, err);
    }
    if (!rc && n) rc = plot_option_ablations(figdir, r, n, n_out, err);
    /* learned methods: the figures each declares over its per-update logs (mean over runs sharing a label) */
    for (const rb_method *const *m = rb_methods(); !rc && n && *m; m++)
        for (const rb_method_figure *g = (*m)->figures; !rc && g && g->name; g++)
            rc = plot_trace(figdir, r, n, g->table, g->xcol, g->col, g->normalize, g->name, g->title, g->xlabel,
                            g->ylabel, n_out, err);
    if (!rc && n) rc = rb_report_tasks_plot(figdir, r, n, n_out, err); /* zero-shot task deltas, when any */
    free(cp);
    free(figdir);
    rb_report_runs_free(r, n);
    free(rows);
    return rc;
}

/* strcmp, except that runs of digits compare by value ("rank=8" before "rank=16"). */
static int natural_cmp(const char *a, const char *b) {
    while (*a && *b) {
        if (*a >= '0' && *a <= '9' && *b >= '0' && *b <= '9') {
            while (*a == '0') a++;
            while (*b == '0') b++;
            size_t la = strspn(a, "0123456789"), lb = strspn(b, "0123456789");
            if (la != lb) return la < lb ? -1 : 1;
            int c = strncmp(a, b, la);
            if (c) return c;
            a += la, b += lb;
            continue;
        }
        if (*a != *b) return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
        a++, b++;
    }
    return (unsigned char)*a - (unsigned char)*b;
}

int rb_report_cmp_method(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    int ix = rb_method_index(x), iy = rb_method_index(y);
    return ix != iy ? (ix < iy ? -1 : 1) : natural_cmp(x, y);
}

int rb_report_table(const char *dir, int format, FILE *f, rb_error *err) {
    rb_index_row *rows = NULL;
    run *r = NULL;
    size_t n = 0;
    int rc = rb_report_runs_load(dir, NULL, &rows, &r, &n, err);
    if (rc) return rc;
    /* average seeds: one record per (method, setting, model) */
    rb_pivot_rec *rec = calloc(n + 1, sizeof *rec);
    char (*settings)[96] = calloc(n + 1, sizeof *settings);
    double *cnt = calloc(n + 1, sizeof *cnt);
    size_t nr = 0;
    if (!rec || !settings || !cnt) rc = rb_error_set(err, RB_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        char set[96];
        rb_report_setting_label(&r[i], set, sizeof set);
        const char *model = r[i].cfg.model.path;
        const char *slash = strrchr(model, '/');
        const char *mname = slash && slash[1] ? slash + 1 : model;
        size_t j = 0;
        for (; j < nr; j++)
            if (!strcmp(rec[j].method, r[i].row->method) && !strcmp(settings[j], set) && !strcmp(rec[j].model, mname))
                break;
        if (j == nr) {
            snprintf(settings[nr], sizeof settings[nr], "%s", set);
            rec[nr] = (rb_pivot_rec){r[i].row->method, settings[nr], mname, 0, 0};
            nr++;
        }
        rec[j].ppl += r[i].row->ppl;
        rec[j].ppl_fp += r[i].row->ppl_fp;
        cnt[j] += 1;
    }
    for (size_t j = 0; j < nr; j++) {
        rec[j].ppl /= cnt[j];
        rec[j].ppl_fp /= cnt[j];
    }
    /* rows in registry order (a method's option variants after its plain label, alphabetically) */
    const char **order = calloc(nr + 1, sizeof *order);
    size_t no = 0;
    if (!rc && !order) rc = rb_error_set(err, RB_ENOMEM, "out of memory");
    for (size_t j = 0; !rc && j < nr; j++) {
        size_t k = 0;
        while (k < no && strcmp(order[k], rec[j].method)) k++;
        if (k == no) order[no++] = rec[j].method;
    }
    if (!rc) qsort(order, no, sizeof *order, rb_report_cmp_method);
    rb_pivot_opts po = {.methods = order, .n_methods = no, .fp_label = "FP32", .decimals = 2};
    rb_table t;
    memset(&t, 0, sizeof t);
    if (!rc && !(rc = rb_table_pivot(&t, rec, nr, &po, err))) {
        char *out = NULL;
        size_t len = 0;
        if (!(rc = rb_table_render(&t, format, &out, &len, err))) fwrite(out, 1, len, f);
        free(out);
        rb_table_free(&t);
    }
    if (!rc) rc = rb_report_tasks_table(r, n, order, no, format, f, err); /* zero-shot tasks, when any */
    free(order);
    free(rec);
    free(settings);
    free(cnt);
    rb_report_runs_free(r, n);
    free(rows);
    return rc;
}

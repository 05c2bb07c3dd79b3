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
#include "rotate/rb_junction.h"

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
    if (n == 0) return rb_error_set(err, RB_ENOTFOUND, "%s holds no run directories (results.h5 or results.h5.partial)", dir);
    run *r = calloc(n + 1, sizeof *r);
    if (!r) {
        free(*rows);
        *rows = NULL;
        return rb_error_set(err, RB_ENOMEM, "out of memory");
    }
    size_t k = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        rb_index_row *x = &(*rows)[i];
        if (x->status == RB_INDEX_UNREADABLE) { /* reported, never dropped silently (issue 16) */
            rb_warn("%s: left out: its results cannot be read: %s", x->dir, x->error);
            bad++;
            continue;
        }
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
            bad++;
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
            bad++;
            free(r[k].layers);
            r[k].layers = NULL;
        }
        free(yaml);
        free(cy);
        free(rd);
        free(rf);
    }
    if (k == 0 && bad > 0) { /* nothing to show, and not because nothing is done yet */
        free(r);
        free(*rows); /* the callers own rows only on success */
        *rows = NULL;
        return rb_error_set(err, RB_EFORMAT, "%s: none of its runs can be read (%zu damaged, see above)", dir, bad);
    }
    *out = r;
    *n_out = k;
    return 0;
}

/* ---- series labels: a run is named by what varies among the runs of a figure ---------------- */

static const char *opt_value(const run *r, const rb_method *m, const char *opt);

/* Parts of a label, in the order they are written. */
enum {
    P_METHOD = 1,   /* "optrot[plus=on]" */
    P_PRESET = 2,   /* "W4A4KV4" */
    P_ALGO = 4,     /* "RTN" / "GPTQ" */
    P_MODEL = 8,    /* the model path's last component */
    P_ORDER = 16,   /* "order shuffled" */
    P_BATCH = 32,   /* "batch 4" */
    P_SAMPLES = 64, /* "32 windows" */
    P_COUNT = 7,
    P_CALIB = P_ORDER | P_BATCH | P_SAMPLES,
};
#define LABEL_MAX 160

static void label_part(const run *r, int part, char *buf, size_t cap) {
    const rb_cfg_calib *c = &r->cfg.data.calib;
    const char *m = r->cfg.model.path ? r->cfg.model.path : "", *sl = strrchr(m, '/');
    const char *model = sl && sl[1] ? sl + 1 : m;
    if (sl && sl[1] && strlen(model) < 3) /* "stories260K/hf", not "hf" */
        for (model = sl; model > m && model[-1] != '/';) model--;
    buf[0] = '\0';
    switch (part) {
    case P_METHOD: snprintf(buf, cap, "%s", r->mlabel[0] ? r->mlabel : r->row->method); break;
    case P_PRESET: snprintf(buf, cap, "%s", r->row->quant); break;
    case P_ALGO: snprintf(buf, cap, "%s", r->row->w_algo == 1 ? "GPTQ" : "RTN"); break;
    case P_MODEL: snprintf(buf, cap, "%s", model); break;
    case P_ORDER: if (r->cfg.data.has_calib) snprintf(buf, cap, "order %s", rb_calib_order_name(c->order)); break;
    case P_BATCH: if (r->cfg.data.has_calib) snprintf(buf, cap, "batch %d", c->batch); break;
    case P_SAMPLES: if (r->cfg.data.has_calib) snprintf(buf, cap, "%d windows", c->samples); break;
    }
}

/* The parts among `cand` whose value differs among the runs (those of rotation method `only`, when
 * not NULL). */
static unsigned varied_parts(const run *r, size_t n, const char *only, unsigned cand) {
    unsigned v = 0;
    for (int p = 0; p < P_COUNT; p++) {
        int part = 1 << p;
        if (!(cand & part)) continue;
        char first[LABEL_MAX], cur[LABEL_MAX];
        int have = 0;
        for (size_t i = 0; i < n && !(v & part); i++) {
            if (only && strcmp(r[i].cfg.rotation.method, only)) continue;
            label_part(&r[i], part, have ? cur : first, LABEL_MAX);
            if (have && strcmp(first, cur)) v |= part;
            have = 1;
        }
    }
    return v;
}

/* The label of run r made of `parts` (space-separated, in part order). */
static void series_label(const run *r, unsigned parts, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = '\0';
    for (int p = 0; p < P_COUNT && k + 1 < cap; p++) {
        char s[LABEL_MAX];
        if (!(parts & (1u << p))) continue;
        label_part(r, 1 << p, s, sizeof s);
        for (const char *q = k && s[0] ? " " : ""; *q && k + 1 < cap; q++) buf[k++] = *q;
        for (const char *q = s; *q && k + 1 < cap; q++) buf[k++] = *q;
        buf[k] = '\0';
    }
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

/* Series order: by the registry position of the label's first word as a method name (labels that
 * start with a method), then naturally ("W3A3" before "W4A4KV4"); perm[0..n) receives the order of
 * names[0..n). Colours then follow the registry, whatever order the runs were found in. */
static void series_order(char (*names)[LABEL_MAX], int n, int *perm) {
    int key[MAX_GROUPS];
    for (int g = 0; g < n; g++) {
        char w[LABEL_MAX];
        size_t len = strcspn(names[g], "[ ");
        snprintf(w, sizeof w, "%.*s", (int)len, names[g]);
        key[g] = rb_method_index(w);
        perm[g] = g;
    }
    for (int a = 1; a < n; a++)
        for (int b = a; b > 0; b--) {
            int p = perm[b - 1], q = perm[b];
            if (key[p] < key[q] || (key[p] == key[q] && natural_cmp(names[p], names[q]) <= 0)) break;
            perm[b - 1] = q, perm[b] = p;
        }
}

/* Fills r[i].mlabel: rotation.method with the options (configured or default) whose value differs
 * among the runs of that method, in the config's (sorted) option order. */
static void method_labels(run *r, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const rb_method *m = rb_method_find(r[i].cfg.rotation.method);
        size_t k = (size_t)snprintf(r[i].mlabel, sizeof r[i].mlabel, "%s", r[i].cfg.rotation.method);
        int nk = 0;
        for (int o = 0; m && o < r[i].cfg.rotation.n_opts && k < sizeof r[i].mlabel; o++) {
            const char *nm = r[i].cfg.rotation.opt_names[o], *v = r[i].cfg.rotation.opt_values[o];
            int differs = 0;
            for (size_t j = 0; j < n && !differs; j++) {
                if (strcmp(r[j].cfg.rotation.method, m->name)) continue;
                const char *w = opt_value(&r[j], m, nm);
                differs = !w || strcmp(w, v);
            }
            if (differs)
                k += (size_t)snprintf(r[i].mlabel + k, sizeof r[i].mlabel - k, "%s%s=%s", nk++ ? "," : "[", nm, v);
        }
        if (nk && k + 1 < sizeof r[i].mlabel) r[i].mlabel[k] = ']', r[i].mlabel[k + 1] = '\0';
        if (!m) snprintf(r[i].mlabel, sizeof r[i].mlabel, "%s", r[i].row->method);
    }
}

/* Index of `name` in tab[0..*n) (copied in when new), or -1 when the table is full. */
static int intern(char (*tab)[LABEL_MAX], int *n, const char *name) {
    for (int i = 0; i < *n; i++)
        if (!strcmp(tab[i], name)) return i;
    if (*n >= MAX_GROUPS) return -1;
    snprintf(tab[*n], LABEL_MAX, "%s", name);
    return (*n)++;
}

static void warn_dropped(const char *fig, int dropped) {
    if (dropped) rb_warn("figure %s: more than %d series or categories; %d runs left out", fig, MAX_GROUPS, dropped);
}

/* ---- per-layer figures -------------------------------------------------------------------- */

/* Per-layer curve of one site statistic (integer layer axis), averaged over the runs of each
 * method (and model, and for the MSE quantization preset, when the runs differ in those). */
static int plot_per_layer(const char *figdir, run *r, size_t n, int site, int mse, int *count, rb_error *err) {
    int L = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < r[i].n_layers_rows; k++) L = r[i].layers[k].layer + 1 > L ? r[i].layers[k].layer + 1 : L;
    if (L == 0) return 0;
    char(*names)[LABEL_MAX] = calloc(MAX_GROUPS, sizeof *names);
    double *sum = calloc((size_t)MAX_GROUPS * L, sizeof *sum), *cnt = calloc((size_t)MAX_GROUPS * L, sizeof *cnt);
    double *x = malloc((size_t)L * sizeof *x), *y = malloc((size_t)MAX_GROUPS * L * sizeof *y);
    rb_fig_series *ser = calloc(MAX_GROUPS, sizeof *ser);
    int rc = 0, nm = 0, dropped = 0;
    if (!names || !sum || !cnt || !x || !y || !ser) {
        rc = rb_error_set(err, RB_ENOMEM, "out of memory");
        goto done;
    }
    unsigned parts = P_METHOD | varied_parts(r, n, NULL, P_MODEL | (mse ? P_PRESET : 0));
    for (size_t i = 0; i < n; i++) {
        char lab[LABEL_MAX];
        series_label(&r[i], parts, lab, sizeof lab);
        int g = intern(names, &nm, lab);
        if (g < 0) {
            dropped++;
            continue;
        }
        for (size_t k = 0; k < r[i].n_layers_rows; k++) {
            const rb_layer_row *lr = &r[i].layers[k];
            if (lr->kind != RB_LROW_ACT || lr->name != site) continue;
            double v = mse ? lr->act_mse : lr->fp.kurt_token_mean;
            if (!isfinite(v)) continue;
            sum[g * L + lr->layer] += v;
            cnt[g * L + lr->layer] += 1;
        }
    }
    int perm[MAX_GROUPS];
    series_order(names, nm, perm);
    for (int l = 0; l < L; l++) x[l] = l;
    for (int g = 0; g < nm; g++) {
        for (int l = 0; l < L; l++) y[g * L + l] = cnt[g * L + l] > 0 ? sum[g * L + l] / cnt[g * L + l] : NAN;
        ser[g] = (rb_fig_series){.name = names[perm[g]], .n = (size_t)L, .x = x, .y = y + (size_t)perm[g] * L};
    }
    char title[128], ylabel[128], name[64];
    snprintf(title, sizeof title, "%s at %s per layer", mse ? "activation quantization MSE" : "per-token kurtosis",
             rb_site_name(site));
    snprintf(ylabel, sizeof ylabel, "%s", mse ? "relative MSE  sum|Q(x)-x|^2 / sum|x|^2" : "Pearson kurtosis (mean over tokens)");
    snprintf(name, sizeof name, "%s_%s", mse ? "act_mse" : "kurtosis", rb_site_name(site));
    warn_dropped(name, dropped);
    rb_figure fig = {.title = title, .xlabel = "decoder layer", .ylabel = ylabel, .logy = 1, .xint = 1, .series = ser,
                     .n_series = (size_t)nm};
    if (!(rc = rb_figure_save(&fig, figdir, name, err))) (*count)++;
done:
    free(names);
    free(sum);
    free(cnt);
    free(x);
    free(y);
    free(ser);
    return rc;
}

/* ---- categorical figures: one point per setting, over seeds --------------------------------- */

/* y of each series (a group of runs that differ only in their seed) at categorical x values (labels
 * in first-seen order): mean, spread and range over the runs. */
typedef struct catplot {
    char xl[MAX_GROUPS][LABEL_MAX], gl[MAX_GROUPS][LABEL_MAX];
    int nx, ng, dropped;
    double s[MAX_GROUPS][MAX_GROUPS], s2[MAX_GROUPS][MAX_GROUPS], mn[MAX_GROUPS][MAX_GROUPS],
        mx[MAX_GROUPS][MAX_GROUPS];
    int c[MAX_GROUPS][MAX_GROUPS];
    double y[MAX_GROUPS][MAX_GROUPS], lo[MAX_GROUPS][MAX_GROUPS], hi[MAX_GROUPS][MAX_GROUPS]; /* cat_save's */
} catplot;

static void cat_add(catplot *cp, const char *xlabel, const char *group, double v) {
    int x = intern(cp->xl, &cp->nx, xlabel), g = intern(cp->gl, &cp->ng, group);
    if (x < 0 || g < 0) cp->dropped++;
    if (x < 0 || g < 0 || !isfinite(v)) return;
    cp->mn[g][x] = cp->c[g][x] ? fmin(cp->mn[g][x], v) : v;
    cp->mx[g][x] = cp->c[g][x] ? fmax(cp->mx[g][x], v) : v;
    cp->s[g][x] += v;
    cp->s2[g][x] += v * v;
    cp->c[g][x] += 1;
}

/* Markers at the mean over seeds, no line between categories. Error bars: ± sd when every point
 * with several seeds has at least 3, else min–max (an sd of 2 values says little); none for a
 * single seed. The key's last line says which. */
static int cat_save(catplot *cp, const char *figdir, const char *name, const char *title, const char *xlabel,
                    const char *ylabel, int *count, rb_error *err) {
    int cmin = 0, cmax = 0, single = 0;
    for (int g = 0; g < cp->ng; g++)
        for (int x = 0; x < cp->nx; x++) {
            int c = cp->c[g][x];
            single |= c == 1;
            if (c > 1) cmin = cmin ? (c < cmin ? c : cmin) : c, cmax = c > cmax ? c : cmax;
        }
    int use_sd = cmin >= 3, perm[MAX_GROUPS];
    rb_fig_series ser[MAX_GROUPS];
    const char *xt[MAX_GROUPS];
    series_order(cp->gl, cp->ng, perm);
    for (int x = 0; x < cp->nx; x++) xt[x] = cp->xl[x];
    for (int g = 0; g < cp->ng; g++) {
        for (int x = 0; x < cp->nx; x++) {
            double c = cp->c[g][x], m = c > 0 ? cp->s[g][x] / c : NAN;
            cp->y[g][x] = m;
            cp->lo[g][x] = cp->hi[g][x] = NAN;
            if (c > 1 && use_sd) cp->lo[g][x] = sqrt(fmax(0.0, (cp->s2[g][x] - c * m * m) / (c - 1)));
            else if (c > 1) cp->lo[g][x] = cp->mn[g][x], cp->hi[g][x] = cp->mx[g][x];
        }
    }
    for (int k = 0; k < cp->ng; k++) {
        int g = perm[k];
        ser[k] = (rb_fig_series){.name = cp->gl[g], .n = (size_t)cp->nx, .y = cp->y[g]};
        if (use_sd) ser[k].ysd = cp->lo[g];
        else if (cmax) ser[k].ylo = cp->lo[g], ser[k].yhi = cp->hi[g];
    }
    char note[128], seeds[32];
    snprintf(seeds, sizeof seeds, cmin == cmax ? "%d seeds" : "%d-%d seeds", cmin, cmax);
    if (!cmax) snprintf(note, sizeof note, "1 seed: no error bars");
    else
        snprintf(note, sizeof note, "%s, %s%s", use_sd ? "mean ± sd" : "mean, min-max", seeds,
                 single ? " (1 seed: no bar)" : "");
    warn_dropped(name, cp->dropped);
    rb_figure fig = {.title = title, .xlabel = xlabel, .ylabel = ylabel, .logy = 1, .xtics = xt,
                     .n_xtics = (size_t)cp->nx, .series = ser, .n_series = (size_t)cp->ng, .categorical = 1,
                     .key_note = note, .width = cp->nx > 6 ? 600 + 70 * cp->nx : 0};
    int rc = rb_figure_save(&fig, figdir, name, err);
    if (!rc) (*count)++;
    return rc;
}

void rb_report_setting_label(const run *r, char *buf, size_t cap) {
    snprintf(buf, cap, "%s %s", r->row->quant, r->row->w_algo == 1 ? "GPTQ" : "RTN");
}

/* ---- learned methods' traces -------------------------------------------------------------- */

/* One curve: the position-wise mean of the runs' traces sharing its key; x from the first run that
 * reaches a position. */
typedef struct tcurve {
    char key[LABEL_MAX];
    size_t len;
    double *sum, *cnt, *x;
} tcurve;

static int tcurve_add(tcurve *c, const double *x, const double *y, size_t m) {
    if (m > c->len) {
        double *s = realloc(c->sum, m * sizeof *s);
        if (s) c->sum = s;
        double *k = s ? realloc(c->cnt, m * sizeof *k) : NULL;
        if (k) c->cnt = k;
        double *xs = k ? realloc(c->x, m * sizeof *xs) : NULL;
        if (!xs) return RB_ENOMEM;
        c->x = xs;
        for (size_t j = c->len; j < m; j++) c->sum[j] = c->cnt[j] = 0, c->x[j] = x[j];
        c->len = m;
    }
    for (size_t j = 0; j < m; j++)
        if (isfinite(y[j])) c->sum[j] += y[j], c->cnt[j] += 1;
    return 0;
}

/* Column g->col of every run's trace g->table against g->xcol (made cumulative across passes when
 * it restarts; the row number without xcol), averaged over the runs with the same key (method
 * label, and quantization setting, model and calibration where the method's runs differ in them);
 * optionally divided by the first row. A per-layer trace (xcol "layer") has an integer layer axis, and one curve per junction
 * when the table has a "junction" column (several rows per layer). No figure when no run logged the
 * table. */
static int plot_trace(const char *figdir, run *r, size_t n, const rb_method *m, const rb_method_figure *g, int *count,
                      rb_error *err) {
    enum { MAXK = 16 };
    tcurve *cv = calloc(MAXK, sizeof *cv);
    int nk = 0, rc = cv ? 0 : rb_error_set(err, RB_ENOMEM, "out of memory");
    int per_layer = g->xcol && !strcmp(g->xcol, "layer");
    unsigned parts = P_METHOD | varied_parts(r, n, m->name, P_PRESET | P_ALGO | P_MODEL | P_CALIB);
    for (size_t i = 0; i < n && !rc; i++) {
        rb_trace_table *t = NULL;
        rb_error e = {0};
        if (rb_results_read_trace(r[i].file, g->table, &t, &e)) {
            if (e.code != RB_ENOTFOUND) rb_warn("%s", e.msg);
            continue;
        }
        size_t nc = (size_t)t->n_cols;
        int c = rb_trace_col(t, g->col), xc = g->xcol ? rb_trace_col(t, g->xcol) : -1;
        int sc = per_layer ? rb_trace_col(t, "junction") : -1;
        double *xs = c >= 0 && t->rows ? malloc(2 * t->rows * sizeof *xs) : NULL, *ys = xs ? xs + t->rows : NULL;
        if (c >= 0 && t->rows && !xs) rc = rb_error_set(err, RB_ENOMEM, "out of memory");
        char base[LABEL_MAX - 24]; /* room for ", junction attn" */
        series_label(&r[i], parts, base, sizeof base);
        /* one pass per junction (per-layer tables with a junction column), else one pass */
        for (int jn = 0; xs && !rc && jn < (sc >= 0 ? RB_JN_COUNT : 1); jn++) {
            size_t m = 0;
            double off = 0, prev = 0;
            for (size_t j = 0; j < t->rows; j++) {
                const double *row = t->data + j * nc;
                if (sc >= 0 && row[sc] != jn) continue;
                double v = xc >= 0 ? row[xc] : (double)(m + 1);
                if (xc >= 0 && !per_layer && v < prev) off += prev; /* x restarts each pass */
                prev = v;
                xs[m] = v + off;
                ys[m] = row[c];
                m++;
            }
            if (!m) continue;
            double y0 = ys[0];
            for (size_t j = 0; g->normalize && j < m; j++) ys[j] = y0 != 0 ? ys[j] / y0 : NAN;
            char key[sizeof cv->key];
            snprintf(key, sizeof key, "%s%s%s", base, sc >= 0 ? ", junction " : "", sc >= 0 ? rb_junction_name(jn) : "");
            int k = 0;
            while (k < nk && strcmp(cv[k].key, key)) k++;
            if (k == nk && nk == MAXK) continue;
            if (k == nk) snprintf(cv[nk++].key, sizeof cv->key, "%s", key);
            if (tcurve_add(&cv[k], xs, ys, m)) rc = rb_error_set(err, RB_ENOMEM, "out of memory");
        }
        free(xs);
        rb_trace_table_free(t);
    }
    if (!rc && nk) {
        rb_fig_series ser[MAXK];
        char names[MAXK][LABEL_MAX];
        int xint = 1, perm[MAXK];
        for (int k = 0; k < nk; k++) snprintf(names[k], sizeof names[k], "%s", cv[k].key);
        series_order(names, nk, perm);
        for (int k = 0; k < nk; k++) {
            for (size_t j = 0; j < cv[k].len; j++) {
                cv[k].sum[j] = cv[k].cnt[j] > 0 ? cv[k].sum[j] / cv[k].cnt[j] : NAN;
                xint &= cv[k].x[j] == floor(cv[k].x[j]) && fabs(cv[k].x[j]) < 1e15;
            }
        }
        for (int k = 0; k < nk; k++) {
            const tcurve *c = &cv[perm[k]];
            ser[k] = (rb_fig_series){.name = c->key, .n = c->len, .x = c->x, .y = c->sum,
                                     .style = c->len > 40 ? RB_FIG_LINES : RB_FIG_LINESPOINTS};
        }
        rb_figure fig = {.title = g->title, .xlabel = g->xlabel, .ylabel = g->ylabel, .xint = xint, .series = ser,
                         .n_series = (size_t)nk};
        if (!(rc = rb_figure_save(&fig, figdir, g->name, err))) (*count)++;
    }
    for (int k = 0; cv && k < MAXK; k++) free(cv[k].sum), free(cv[k].cnt), free(cv[k].x);
    free(cv);
    return rc;
}

/* ---- ablations ---------------------------------------------------------------------------- */

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

/* Interns the distinct vals[0..nv) into cp's categories in cmp_value order. */
static void cat_order(catplot *cp, const char **vals, int nv) {
    qsort(vals, (size_t)nv, sizeof *vals, cmp_value);
    for (int k = 0; k < nv; k++) intern(cp->xl, &cp->nx, vals[k]);
}

/* Option ablations: for every method and rotation option whose value differs among the method's runs
 * (e.g. respinquant's rank, spinquant's lr), perplexity and KL against the option's value
 * (categorical, numeric order), one series per quantization setting (and model, calibration, other
 * option values, where the method's runs differ in them), over seeds: <method>_<option>_ppl and
 * <method>_<option>_kl. */
static int plot_option_ablations(const char *figdir, run *r, size_t n, int *count, rb_error *err) {
    const char **vals = calloc(n ? n : 1, sizeof *vals);
    catplot *cp = calloc(2, sizeof *cp);
    int rc = vals && cp ? 0 : rb_error_set(err, RB_ENOMEM, "out of memory");
    for (const rb_method *const *m = rb_methods(); !rc && *m; m++) {
        unsigned parts = P_PRESET | P_ALGO | varied_parts(r, n, (*m)->name, P_MODEL | P_CALIB);
        for (const rb_method_option *o = (*m)->options; !rc && o && o->name; o++) {
            if (!strcmp(o->kind, "key")) continue;
            int nv = 0;
            for (size_t i = 0; i < n; i++) {
                if (strcmp(r[i].cfg.rotation.method, (*m)->name)) continue;
                const char *v = opt_value(&r[i], *m, o->name);
                int seen = !v;
                for (int k = 0; k < nv && !seen; k++) seen = !strcmp(vals[k], v);
                if (!seen && nv < MAX_GROUPS) vals[nv++] = v;
            }
            if (nv < 2) continue;
            memset(cp, 0, 2 * sizeof *cp);
            cat_order(&cp[0], vals, nv);
            cat_order(&cp[1], vals, nv);
            for (size_t i = 0; i < n; i++) {
                if (strcmp(r[i].cfg.rotation.method, (*m)->name)) continue;
                const char *v = opt_value(&r[i], *m, o->name);
                if (!v) continue;
                char lab[LABEL_MAX];
                series_label(&r[i], parts, lab, sizeof lab);
                /* the method's other options, where its runs differ in them */
                for (const rb_method_option *p = (*m)->options; p && p->name; p++) {
                    const char *pv = p == o || !strcmp(p->kind, "key") ? NULL : opt_value(&r[i], *m, p->name);
                    int differs = 0;
                    for (size_t j = 0; pv && j < n && !differs; j++) {
                        const char *qv = strcmp(r[j].cfg.rotation.method, (*m)->name) ? NULL : opt_value(&r[j], *m, p->name);
                        differs = qv && strcmp(qv, pv);
                    }
                    size_t k = strlen(lab);
                    if (differs && k + 1 < sizeof lab) snprintf(lab + k, sizeof lab - k, " %s=%s", p->name, pv);
                }
                cat_add(&cp[0], v, lab, r[i].row->ppl);
                cat_add(&cp[1], v, lab, r[i].row->kl);
            }
            for (int y = 0; y < 2 && !rc; y++) {
                char name[96], title[160], xlabel[96];
                snprintf(name, sizeof name, "%s_%s_%s", (*m)->name, o->name, y ? "kl" : "ppl");
                snprintf(title, sizeof title, "%s: %s vs %s", (*m)->name, y ? "KL to the FP model" : "perplexity", o->name);
                snprintf(xlabel, sizeof xlabel, "rotation.options.%s", o->name);
                rc = cat_save(&cp[y], figdir, name, title, xlabel,
                              y ? "KL divergence (nats per token)" : "perplexity (first eval corpus)", count, err);
            }
        }
    }
    free(vals);
    free(cp);
    return rc;
}

/* Perplexity against each quantization setting (categorical, most bits first; "RTN"/"GPTQ" appended
 * when the runs use both), one series per method (and model and calibration where runs differ). */
static int plot_ppl_vs_bits(const char *figdir, run *r, size_t n, catplot *cp, int *count, rb_error *err) {
    static const char *const by_bits[] = {"W16A16", "W8A8KV8", "W8A8", "W6A6",    "W4A16",
                                          "W4A8",   "W4A4",    "W4A4KV4", "W3A3", "W3A3KV3"};
    int algos = varied_parts(r, n, NULL, P_ALGO) != 0;
    unsigned parts = P_METHOD | varied_parts(r, n, NULL, P_MODEL | P_CALIB);
    char xl[LABEL_MAX], lab[LABEL_MAX];
    memset(cp, 0, sizeof *cp);
    for (size_t b = 0; b < sizeof by_bits / sizeof *by_bits; b++) /* x order whatever order the runs come in */
        for (int a = 0; a < 2; a++)
            for (size_t i = 0; i < n; i++)
                if (!strcmp(r[i].row->quant, by_bits[b]) && (!algos || (r[i].row->w_algo == 1) == a)) {
                    series_label(&r[i], P_PRESET | (algos ? P_ALGO : 0), xl, sizeof xl);
                    intern(cp->xl, &cp->nx, xl);
                    break;
                }
    for (size_t i = 0; i < n; i++) {
        series_label(&r[i], P_PRESET | (algos ? P_ALGO : 0), xl, sizeof xl);
        series_label(&r[i], parts, lab, sizeof lab);
        cat_add(cp, xl, lab, r[i].row->ppl);
    }
    return cat_save(cp, figdir, "ppl_vs_bits", "perplexity vs bit-width", "quantization setting",
                    "perplexity (first eval corpus)", count, err);
}

/* Calibration ablations ablation_{order,batch,samples}: perplexity against each value of the axis
 * when the runs vary it, one series per method (and setting, model, other calibration axes where the
 * runs differ in them). */
static int plot_calib_ablations(const char *figdir, run *r, size_t n, catplot *cp, int *count, rb_error *err) {
    static const char *const abl[] = {"order", "batch", "samples"};
    static const unsigned part[] = {P_ORDER, P_BATCH, P_SAMPLES};
    char(*xv)[32] = calloc(n ? n : 1, sizeof *xv);
    const char **vals = calloc(n ? n : 1, sizeof *vals);
    int rc = xv && vals ? 0 : rb_error_set(err, RB_ENOMEM, "out of memory");
    for (int a = 0; !rc && a < 3; a++) {
        unsigned parts = P_METHOD | (varied_parts(r, n, NULL, P_PRESET | P_ALGO | P_MODEL | P_CALIB) & ~part[a]);
        int nv = 0;
        memset(cp, 0, sizeof *cp);
        for (size_t i = 0; i < n; i++) {
            if (!r[i].cfg.data.has_calib) continue;
            const rb_cfg_calib *c = &r[i].cfg.data.calib;
            if (a == 0) snprintf(xv[i], sizeof xv[i], "%s", rb_calib_order_name(c->order));
            else snprintf(xv[i], sizeof xv[i], "%d", a == 1 ? c->batch : c->samples);
            int seen = 0;
            for (int k = 0; k < nv && !seen; k++) seen = !strcmp(vals[k], xv[i]);
            if (!seen && nv < MAX_GROUPS) vals[nv++] = xv[i];
        }
        if (nv < 2) continue;
        if (a) cat_order(cp, vals, nv); /* numbers ascending */
        for (int o = RB_CALIB_SEQUENTIAL; !a && o <= RB_CALIB_REVERSED; o++) /* orders as declared */
            for (int k = 0; k < nv; k++)
                if (!strcmp(vals[k], rb_calib_order_name(o))) intern(cp->xl, &cp->nx, vals[k]);
        for (size_t i = 0; i < n; i++) {
            if (!r[i].cfg.data.has_calib) continue;
            char lab[LABEL_MAX];
            series_label(&r[i], parts, lab, sizeof lab);
            cat_add(cp, xv[i], lab, r[i].row->ppl);
        }
        char name[32], title[96], xlabel[64];
        snprintf(name, sizeof name, "ablation_%s", abl[a]);
        snprintf(title, sizeof title, "perplexity vs calibration %s", abl[a]);
        snprintf(xlabel, sizeof xlabel, "calibration %s%s", abl[a], a == 1 ? " (windows per batch)" : a == 2 ? " (windows)" : "");
        rc = cat_save(cp, figdir, name, title, xlabel, "perplexity (first eval corpus)", count, err);
    }
    free(xv);
    free(vals);
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
    method_labels(r, n);
    static const int sites[] = {RB_SITE_ATTN_IN, RB_SITE_O_IN, RB_SITE_MLP_IN, RB_SITE_DOWN_IN};
    for (int s = 0; !rc && n && s < 4; s++) {
        rc = plot_per_layer(figdir, r, n, sites[s], 0, n_out, err);
        if (!rc) rc = plot_per_layer(figdir, r, n, sites[s], 1, n_out, err);
    }
    catplot *cp = calloc(1, sizeof *cp);
    if (!rc && !cp) rc = rb_error_set(err, RB_ENOMEM, "out of memory");
    if (!rc && n) rc = plot_ppl_vs_bits(figdir, r, n, cp, n_out, err);
    if (!rc && n) rc = plot_calib_ablations(figdir, r, n, cp, n_out, err); /* only the axes the runs vary */
    if (!rc && n) rc = plot_option_ablations(figdir, r, n, n_out, err);
    /* learned methods: the figures each declares over its per-update logs (mean over runs sharing a label) */
    for (const rb_method *const *m = rb_methods(); !rc && n && *m; m++)
        for (const rb_method_figure *g = (*m)->figures; !rc && g && g->name; g++)
            rc = plot_trace(figdir, r, n, *m, g, n_out, err);
    if (!rc && n) rc = rb_report_tasks_plot(figdir, r, n, n_out, err); /* zero-shot task deltas, when any */
    free(cp);
    free(figdir);
    rb_report_runs_free(r, n);
    free(rows);
    return rc;
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

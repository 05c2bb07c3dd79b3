/* rb_results_tasks: /tasks/<name> in results.h5 — writer and validating reader (schema in
 * docs/results-schema.md). */
#include "harness/rb_results_tasks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"
#include "core/rb_h5.h"
#include "harness/rb_results_internal.h"


static int format_from_name(const char *name) {
    for (int f = RB_TFMT_PIQA; f <= RB_TFMT_HELLASWAG_TXT; f++) {
        const char *s = rb_task_format_name(f);
        if (s && !strcmp(s, name)) return f;
    }
    return -1;
}

double rb_task_data_primary(const rb_task_data *d, int fp) {
    int norm = rb_task_primary_metric(d->task, d->scoring) == RB_METRIC_ACC_NORM;
    if (fp) return norm ? d->fp_acc_norm : d->fp_acc;
    return norm ? d->acc_norm : d->acc;
}

const rb_task_paired *rb_task_data_primary_pair(const rb_task_data *d) {
    return rb_task_primary_metric(d->task, d->scoring) == RB_METRIC_ACC_NORM ? &d->acc_norm_pair : &d->acc_pair;
}

/* ---- writer ------------------------------------------------------------------------------ */

/* RB_EINVAL naming the task when r is not a result rb_tasks_run could have produced. */
static int check_result(const rb_task_result *r, const char *partial, rb_error *err) {
    const char *tn = r->task >= 0 && r->task < RB_TASK_COUNT ? rb_task_name(r->task) : NULL;
    if (!tn) return rb_error_set(err, RB_EINVAL, "%s: /tasks: unknown task %d", partial, r->task);
#define BAD(...) rb_error_set(err, RB_EINVAL, "%s: /tasks/%s: " __VA_ARGS__)
    if (!rb_task_scoring_name(r->scoring)) return BAD("unknown scoring %d", partial, tn, r->scoring);
    if (r->bos != RB_TASK_BOS_NONE && r->bos != RB_TASK_BOS_DEFAULT) return BAD("unknown bos setting %d", partial, tn, r->bos);
    if (r->n_docs < 1 || r->n_req < r->n_docs || r->n_docs > RB_RES_MAX_TASK_DOCS || r->n_req > RB_RES_MAX_TASK_REQS)
        return BAD("%d documents, %d requests", partial, tn, r->n_docs, r->n_req);
    int metrics = rb_task_metrics(r->task, r->scoring);
    int norm = (metrics & RB_METRIC_ACC_NORM) != 0;
    if (!r->req_off || !r->gold || !r->n_tok || !r->n_chars || !r->q.ll || !r->q.greedy || !r->q.correct ||
        (norm && !r->q.correct_norm))
        return BAD("missing per-request or per-document arrays", partial, tn);
    if (r->have_fp && (!r->fp.ll || !r->fp.greedy || !r->fp.correct || (norm && !r->fp.correct_norm)))
        return BAD("missing arrays of the FP reference", partial, tn);
    if (r->req_off[0] != 0 || r->req_off[r->n_docs] != r->n_req)
        return BAD("request offsets run from %d to %d, expected 0 to %d", partial, tn, r->req_off[0],
                   r->req_off[r->n_docs], r->n_req);
    for (int i = 0; i < r->n_docs; i++) {
        int k = r->req_off[i + 1] - r->req_off[i];
        if (k < 1) return BAD("document %d has %d requests", partial, tn, i, k);
        if (r->gold[i] < 0 || r->gold[i] >= k) return BAD("document %d: gold %d of %d requests", partial, tn, i, r->gold[i], k);
    }
#undef BAD
    return 0;
}

static int put_pair(hid_t g, const char *m, const rb_task_paired *p) {
    char n[64];
    const char *suf[] = {"delta", "ci_lo", "ci_hi", "p_mcnemar"};
    const double v[] = {p->delta, p->lo, p->hi, p->p_mcnemar};
    for (int i = 0; i < 4; i++) {
        snprintf(n, sizeof n, "%s_%s", m, suf[i]);
        if (rb_h5_put_f64(g, n, v[i])) return -1;
    }
    snprintf(n, sizeof n, "%s_n_fp_only", m);
    if (rb_h5_put_i32(g, n, p->n_fp_only)) return -1;
    snprintf(n, sizeof n, "%s_n_q_only", m);
    return rb_h5_put_i32(g, n, p->n_q_only);
}

/* Metric attributes of one model: prefix "" (evaluated) or "fp_". */
static int put_metrics(hid_t g, const char *prefix, int metrics, const rb_task_scores *s) {
    char n[32];
    const int bit[] = {RB_METRIC_ACC, RB_METRIC_ACC_NORM, RB_METRIC_PPL};
    const char *nm[] = {"acc", "acc_norm", "ppl"};
    const double v[] = {s->acc, s->acc_norm, s->ppl};
    for (int i = 0; i < 3; i++) {
        if (!(metrics & bit[i])) continue;
        snprintf(n, sizeof n, "%s%s", prefix, nm[i]);
        if (rb_h5_put_f64(g, n, v[i])) return -1;
    }
    return 0;
}

static int put_arrays(hid_t g, const char *suffix, int norm, int n_docs, int n_req, const rb_task_scores *s) {
    hsize_t dd[1] = {(hsize_t)n_docs}, dr[1] = {(hsize_t)n_req};
    char n[32];
    snprintf(n, sizeof n, "ll%s", suffix);
    if (rb_h5_put_dataset(g, n, 1, dr, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, s->ll)) return -1;
    snprintf(n, sizeof n, "greedy%s", suffix);
    if (rb_h5_put_dataset(g, n, 1, dr, H5T_STD_U8LE, H5T_NATIVE_UCHAR, s->greedy)) return -1;
    snprintf(n, sizeof n, "correct%s", suffix);
    if (rb_h5_put_dataset(g, n, 1, dd, H5T_STD_U8LE, H5T_NATIVE_UCHAR, s->correct)) return -1;
    snprintf(n, sizeof n, "correct_norm%s", suffix);
    if (norm && rb_h5_put_dataset(g, n, 1, dd, H5T_STD_U8LE, H5T_NATIVE_UCHAR, s->correct_norm)) return -1;
    return 0;
}

int rb_results_put_task(rb_results *w, const char *file, const char *labels, int format, const rb_task_result *r,
                        rb_error *err) {
    RB_ASSERT(w && r);
    const char *partial = rb_results_path(w);
    int rc = check_result(r, partial, err);
    if (rc) return rc;
    const char *tn = rb_task_name(r->task);
    if (format < RB_TFMT_PIQA || format > RB_TFMT_HELLASWAG_TXT)
        return rb_error_set(err, RB_EINVAL, "%s: /tasks/%s: unknown format %d", partial, tn, format);
    const char *fname = rb_task_format_name(format);
    int metrics = rb_task_metrics(r->task, r->scoring), norm = (metrics & RB_METRIC_ACC_NORM) != 0;
    char what[64];
    snprintf(what, sizeof what, "/tasks/%s", tn);
    hsize_t dd[1] = {(hsize_t)r->n_docs + 1}, dg[1] = {(hsize_t)r->n_docs}, dr[1] = {(hsize_t)r->n_req};
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    hid_t gt = -1, g = -1;
    if ((gt = rb_h5_group(rb_results_h5(w), "tasks", 0, 1)) < 0 || (g = rb_h5_group(gt, tn, 1, 0)) < 0 ||
        rb_h5_put_dataset(g, "req_off", 1, dd, H5T_STD_I32LE, H5T_NATIVE_INT, r->req_off) ||
        rb_h5_put_dataset(g, "gold", 1, dg, H5T_STD_I32LE, H5T_NATIVE_INT, r->gold) ||
        rb_h5_put_dataset(g, "n_tok", 1, dr, H5T_STD_I32LE, H5T_NATIVE_INT, r->n_tok) ||
        rb_h5_put_dataset(g, "n_chars", 1, dr, H5T_STD_I32LE, H5T_NATIVE_INT, r->n_chars) ||
        put_arrays(g, "", norm, r->n_docs, r->n_req, &r->q) ||
        (r->have_fp && put_arrays(g, "_fp", norm, r->n_docs, r->n_req, &r->fp)) || rb_h5_put_str(g, "file", file) ||
        rb_h5_put_str(g, "labels", labels) || rb_h5_put_str(g, "format", fname) ||
        rb_h5_put_str(g, "scoring", rb_task_scoring_name(r->scoring)) || rb_h5_put_str(g, "bos", rb_task_bos_name(r->bos)) ||
        rb_h5_put_i32(g, "n_docs", r->n_docs) || rb_h5_put_i32(g, "n_req", r->n_req) ||
        rb_h5_put_i32(g, "fp_ref", r->have_fp ? 1 : 0) || rb_h5_put_i32(g, "truncated", r->truncated) ||
        put_metrics(g, "", metrics, &r->q) || (r->have_fp && put_metrics(g, "fp_", metrics, &r->fp)) ||
        (r->have_fp && put_pair(g, "acc", &r->acc_pair)) ||
        (r->have_fp && norm && put_pair(g, "acc_norm", &r->acc_norm_pair)) ||
        rb_h5_put_i64(g, "tokens_forward", (int64_t)r->tokens_forward) ||
        rb_h5_put_i64(g, "tokens_request", (int64_t)r->tokens_request) || rb_h5_put_f64(g, "seconds", r->seconds))
        rc = rb_results_werr(w, err, what);
    rb_h5_close(&g);
    rb_h5_close(&gt);
    if (!rc) rc = rb_results_flush(w, err);
    rb_h5_quiet_off(&q);
    return rc;
}

/* ---- reader ------------------------------------------------------------------------------ */

void rb_task_data_free(rb_task_data *d, int n) {
    for (int i = 0; d && i < n; i++) {
        rb_task_data *x = &d[i];
        free(x->file);
        free(x->labels);
        free(x->req_off);
        free(x->gold);
        free(x->n_tok);
        free(x->n_chars);
        free(x->ll);
        free(x->ll_fp);
        free(x->greedy);
        free(x->greedy_fp);
        free(x->correct);
        free(x->correct_fp);
        free(x->correct_norm);
        free(x->correct_norm_fp);
    }
    free(d);
}

static void pair_nan(rb_task_paired *p) { *p = (rb_task_paired){NAN, NAN, NAN, -1, -1, NAN}; }

static int get_pair(rb_h5_reader *R, hid_t g, const char *on, const char *m, int n_docs, rb_task_paired *p) {
    char n[64];
    const char *suf[] = {"delta", "ci_lo", "ci_hi", "p_mcnemar"};
    double *dst[] = {&p->delta, &p->lo, &p->hi, &p->p_mcnemar};
    int rc = 0;
    for (int i = 0; i < 4 && !rc; i++) {
        snprintf(n, sizeof n, "%s_%s", m, suf[i]);
        rc = rb_h5_get_f64(R, g, on, n, dst[i]);
    }
    snprintf(n, sizeof n, "%s_n_fp_only", m);
    if (!rc) rc = rb_h5_get_i32(R, g, on, n, 0, n_docs, &p->n_fp_only);
    snprintf(n, sizeof n, "%s_n_q_only", m);
    if (!rc) rc = rb_h5_get_i32(R, g, on, n, 0, n_docs, &p->n_q_only);
    if (!rc && p->n_fp_only + p->n_q_only > n_docs)
        rc = rb_h5_fail(R, RB_EFORMAT, on, "%s: %d + %d discordant documents of %d", m, p->n_fp_only, p->n_q_only,
                        n_docs);
    return rc;
}

static int get_metrics(rb_h5_reader *R, hid_t g, const char *on, const char *prefix, int metrics, double *v3) {
    char n[32];
    const int bit[] = {RB_METRIC_ACC, RB_METRIC_ACC_NORM, RB_METRIC_PPL};
    const char *nm[] = {"acc", "acc_norm", "ppl"};
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++) {
        v3[i] = NAN;
        if (!(metrics & bit[i])) continue;
        snprintf(n, sizeof n, "%s%s", prefix, nm[i]);
        rc = rb_h5_get_f64(R, g, on, n, &v3[i]);
        if (!rc && i < 2 && !(v3[i] >= 0 && v3[i] <= 1) && !isnan(v3[i]))
            rc = rb_h5_fail(R, RB_EFORMAT, on, "%s = %g is not a fraction in [0, 1]", n, v3[i]);
    }
    return rc;
}

/* Reads dataset `name` of g ([n] elements of class cls) into a fresh buffer *out. */
static int get_array(rb_h5_reader *R, hid_t g, const char *on, const char *name, H5T_class_t cls, hid_t mtype,
                     size_t esz, long long n, void **out) {
    char dn[128];
    snprintf(dn, sizeof dn, "%s/%s", on, name);
    hid_t d = -1;
    int rc = rb_h5_open_dataset_1d(R, g, dn, name, cls, 0, n, &d, NULL);
    if (rc) return rc;
    if (!(*out = malloc((size_t)(n ? n : 1) * esz)))
        rc = rb_h5_fail(R, RB_ENOMEM, dn, "out of memory");
    else if (n && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
        rc = rb_h5_fail(R, RB_EFORMAT, dn, "cannot read: %s", rb_h5_detail(R));
    rb_h5_close(&d);
    return rc;
}

static int check_flags(rb_h5_reader *R, const char *on, const char *name, const uint8_t *v, int n, double frac) {
    long k = 0;
    for (int i = 0; i < n; i++) {
        if (v[i] > 1) return rb_h5_fail(R, RB_EFORMAT, on, "%s[%d] = %d is not 0 or 1", name, i, v[i]);
        k += v[i];
    }
    if (!isnan(frac) && fabs((double)k / n - frac) > 1e-9)
        return rb_h5_fail(R, RB_EFORMAT, on, "%s: %ld of %d documents right, but the accuracy attribute is %.9g", name,
                          k, n, frac);
    return 0;
}

static int read_arrays(rb_h5_reader *R, hid_t g, const char *on, rb_task_data *d) {
    int norm = (d->metrics & RB_METRIC_ACC_NORM) != 0, nd = d->n_docs, nr = d->n_req;
    int rc = get_array(R, g, on, "req_off", H5T_INTEGER, H5T_NATIVE_INT32, 4, nd + 1, (void **)&d->req_off);
    if (!rc) rc = get_array(R, g, on, "gold", H5T_INTEGER, H5T_NATIVE_INT32, 4, nd, (void **)&d->gold);
    if (!rc) rc = get_array(R, g, on, "n_tok", H5T_INTEGER, H5T_NATIVE_INT32, 4, nr, (void **)&d->n_tok);
    if (!rc) rc = get_array(R, g, on, "n_chars", H5T_INTEGER, H5T_NATIVE_INT32, 4, nr, (void **)&d->n_chars);
    for (int fp = 0; fp <= d->have_fp && !rc; fp++) {
        const char *sf = fp ? "_fp" : "";
        char n[32];
        snprintf(n, sizeof n, "ll%s", sf);
        rc = get_array(R, g, on, n, H5T_FLOAT, H5T_NATIVE_DOUBLE, 8, nr, (void **)(fp ? &d->ll_fp : &d->ll));
        snprintf(n, sizeof n, "greedy%s", sf);
        if (!rc) rc = get_array(R, g, on, n, H5T_INTEGER, H5T_NATIVE_UINT8, 1, nr, (void **)(fp ? &d->greedy_fp : &d->greedy));
        if (!rc) rc = check_flags(R, on, n, fp ? d->greedy_fp : d->greedy, nr, NAN);
        snprintf(n, sizeof n, "correct%s", sf);
        if (!rc) rc = get_array(R, g, on, n, H5T_INTEGER, H5T_NATIVE_UINT8, 1, nd, (void **)(fp ? &d->correct_fp : &d->correct));
        if (!rc) rc = check_flags(R, on, n, fp ? d->correct_fp : d->correct, nd, fp ? d->fp_acc : d->acc);
        snprintf(n, sizeof n, "correct_norm%s", sf);
        if (!rc && norm)
            rc = get_array(R, g, on, n, H5T_INTEGER, H5T_NATIVE_UINT8, 1, nd,
                           (void **)(fp ? &d->correct_norm_fp : &d->correct_norm));
        if (!rc && norm)
            rc = check_flags(R, on, n, fp ? d->correct_norm_fp : d->correct_norm, nd, fp ? d->fp_acc_norm : d->acc_norm);
    }
    if (rc) return rc;
    if (d->req_off[0] != 0 || d->req_off[nd] != nr)
        return rb_h5_fail(R, RB_EFORMAT, on, "req_off runs from %d to %d, expected 0 to %d", d->req_off[0],
                          d->req_off[nd], nr);
    for (int i = 0; i < nd; i++) {
        int k = d->req_off[i + 1] - d->req_off[i];
        if (k < 1) return rb_h5_fail(R, RB_EFORMAT, on, "req_off: document %d has %d requests", i, k);
        if (d->gold[i] < 0 || d->gold[i] >= k)
            return rb_h5_fail(R, RB_EFORMAT, on, "gold[%d] = %d, the document has %d requests", i, d->gold[i], k);
    }
    for (int i = 0; i < nr; i++)
        if (d->n_tok[i] < 0 || d->n_chars[i] < 0)
            return rb_h5_fail(R, RB_EFORMAT, on, "request %d: %d tokens, %d characters", i, d->n_tok[i], d->n_chars[i]);
    return 0;
}

static int read_task(rb_h5_reader *R, hid_t g, const char *name, int arrays, rb_task_data *d) {
    char on[96], s[64];
    snprintf(on, sizeof on, "/tasks/%s", name);
    d->task = rb_task_from_name(name);
    if (d->task < 0 || strcmp(rb_task_name(d->task), name))
        return rb_h5_fail(R, RB_EFORMAT, "/tasks", "member '%.64s' is not a task name", name);
    int rc = rb_h5_get_str_alloc(R, g, on, "file", 1 << 16, &d->file);
    if (!rc) rc = rb_h5_get_str_alloc(R, g, on, "labels", 1 << 16, &d->labels);
    if (!rc) rc = rb_h5_get_str(R, g, on, "format", s, sizeof s);
    if (!rc && (d->format = format_from_name(s)) < 0) rc = rb_h5_fail(R, RB_EFORMAT, on, "unknown format '%s'", s);
    if (!rc) rc = rb_h5_get_str(R, g, on, "scoring", s, sizeof s);
    if (!rc && (d->scoring = rb_task_scoring_from_name(s)) < 0)
        rc = rb_h5_fail(R, RB_EFORMAT, on, "unknown scoring '%s' (expected choice, greedy or llamacpp)", s);
    if (!rc) rc = rb_h5_get_str(R, g, on, "bos", s, sizeof s);
    if (!rc && (d->bos = rb_task_bos_from_name(s)) < 0)
        rc = rb_h5_fail(R, RB_EFORMAT, on, "unknown bos '%s' (expected none or tokenizer-default)", s);
    if (!rc) rc = rb_h5_get_i32(R, g, on, "n_docs", 1, RB_RES_MAX_TASK_DOCS, &d->n_docs);
    if (!rc) rc = rb_h5_get_i32(R, g, on, "n_req", d->n_docs, RB_RES_MAX_TASK_REQS, &d->n_req);
    if (!rc) rc = rb_h5_get_i32(R, g, on, "fp_ref", 0, 1, &d->have_fp);
    if (!rc) rc = rb_h5_get_i32(R, g, on, "truncated", 0, d->n_req, &d->truncated);
    if (!rc) d->metrics = rb_task_metrics(d->task, d->scoring);
    double v[3], f[3] = {NAN, NAN, NAN};
    if (!rc) rc = get_metrics(R, g, on, "", d->metrics, v);
    if (!rc && d->have_fp) rc = get_metrics(R, g, on, "fp_", d->metrics, f);
    d->acc = v[0], d->acc_norm = v[1], d->ppl = v[2];
    d->fp_acc = f[0], d->fp_acc_norm = f[1], d->fp_ppl = f[2];
    pair_nan(&d->acc_pair);
    pair_nan(&d->acc_norm_pair);
    if (!rc && d->have_fp) rc = get_pair(R, g, on, "acc", d->n_docs, &d->acc_pair);
    if (!rc && d->have_fp && (d->metrics & RB_METRIC_ACC_NORM))
        rc = get_pair(R, g, on, "acc_norm", d->n_docs, &d->acc_norm_pair);
    if (!rc) rc = rb_h5_get_int(R, g, on, "tokens_forward", 0, INT64_MAX, &d->tokens_forward);
    if (!rc) rc = rb_h5_get_int(R, g, on, "tokens_request", 0, INT64_MAX, &d->tokens_request);
    if (!rc) rc = rb_h5_get_f64(R, g, on, "seconds", &d->seconds);
    if (!rc && arrays) rc = read_arrays(R, g, on, d);
    return rc;
}

typedef struct task_iter {
    rb_h5_reader *R;
    int arrays, rc, n, cap;
    rb_task_data *v;
} task_iter;

static herr_t task_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)info;
    task_iter *it = data;
    if (it->n == it->cap) {
        int cap = it->cap ? 2 * it->cap : 8;
        rb_task_data *v = realloc(it->v, (size_t)cap * sizeof *v);
        if (!v) {
            it->rc = rb_h5_fail(it->R, RB_ENOMEM, "/tasks", "out of memory");
            return -1;
        }
        it->v = v;
        it->cap = cap;
    }
    rb_task_data *d = &it->v[it->n++];
    memset(d, 0, sizeof *d);
    hid_t tg;
    char on[96];
    snprintf(on, sizeof on, "/tasks/%.64s", name);
    if ((it->rc = rb_h5_open_group(it->R, g, on, name, &tg))) return -1;
    it->rc = read_task(it->R, tg, name, it->arrays, d);
    rb_h5_close(&tg);
    return it->rc ? -1 : 0;
}

static int rb_results_read_tasks_direct(const char *path, int arrays, rb_task_data **out, int *n, rb_error *err) {
    RB_ASSERT(path && out && n);
    *out = NULL;
    *n = 0;
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    hid_t f = -1, g = -1;
    int rc = rb_h5_open_read(path, &f, err);
    rb_h5_reader R = {.path = path, .err = err};
    task_iter it = {&R, arrays, 0, 0, 0, NULL};
    int has = rc ? 0 : rb_h5_has_link(&R, f, "/", "tasks");
    if (has < 0) rc = err ? err->code : RB_EFORMAT;
    if (!rc && has && !(rc = rb_h5_open_group(&R, f, "/tasks", "tasks", &g))) {
        hid_t gcpl = H5Gget_create_plist(g);
        unsigned flags = 0;
        if (gcpl >= 0 && H5Pget_link_creation_order(gcpl, &flags) < 0) flags = 0;
        rb_h5_close(&gcpl);
        hsize_t idx = 0;
        H5_index_t by = (flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
        herr_t ir = H5Literate(g, by, H5_ITER_INC, &idx, task_cb, &it);
        rc = it.rc;
        if (!rc && ir < 0) rc = rb_h5_fail(&R, RB_EFORMAT, "/tasks", "cannot list members: %s", rb_h5_detail(&R));
    }
    rb_h5_close(&g);
    rb_h5_close(&f);
    rb_h5_quiet_off(&q);
    if (rc) {
        rb_task_data_free(it.v, it.n);
        return rc;
    }
    *out = it.v;
    *n = it.n;
    return 0;
}

/* The public reader: rb_results_read_tasks_direct under rb_h5_guard (RB_RESULTS_GUARDED). */
RB_RESULTS_GUARDED(rb_results_read_tasks, const char *path; int arrays; rb_task_data **out; int *n, x->path, x->arrays,
                   x->out, x->n)

int rb_results_read_tasks(const char *path, int arrays, rb_task_data **out, int *n, rb_error *err) {
    return rb_h5_guard(path, rb_results_read_tasks_fn, &(rb_results_read_tasks_ctx){path, arrays, out, n}, err);
}

/* rb_results_read: the results.h5 readers (schema in docs/results-schema.md): every size read from
 * a file is bounded before it is allocated. */
#include "harness/rb_results.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"
#include "core/rb_h5.h"
#include "quant/rb_qpreset.h"



#include "harness/rb_results_internal.h"

/* ---- reading ------------------------------------------------------------------------------ */

typedef struct eval_iter {
    rb_h5_reader *R;
    rb_run_summary *s;
    int rc;
} eval_iter;

/* Attributes of one /eval/<corpus> group into c. */
static int read_corpus_attrs(rb_h5_reader *R, hid_t g, const char *oname, rb_run_corpus *c) {
    char proto[32];
    int rc = rb_h5_get_str(R, g, oname, "protocol", proto, sizeof proto);
    if (!rc && (c->protocol = rb_ppl_protocol_from_name(proto)) < 0)
        rc = rb_h5_fail(R, RB_EFORMAT, oname, "unknown protocol '%s'", proto);
    if (!rc) rc = rb_h5_get_i32(R, g, oname, "seqlen", 1, 1 << 30, &c->seqlen);
    if (!rc) rc = rb_h5_get_i32(R, g, oname, "windows", 1, (int)(RB_RES_MAX_WINDOWS - 1), &c->windows);
    if (!rc) rc = rb_h5_get_int(R, g, oname, "tokens", 0, INT64_MAX, &c->tokens);
    if (!rc) rc = rb_h5_get_int(R, g, oname, "scored", 0, INT64_MAX, &c->scored);
    if (!rc) rc = rb_h5_get_f64(R, g, oname, "ppl", &c->ppl);
    if (!rc) rc = rb_h5_get_f64(R, g, oname, "ppl_fp", &c->ppl_fp);
    if (!rc) rc = rb_h5_get_f64(R, g, oname, "kl", &c->kl);
    if (!rc) c->delta = c->ppl - c->ppl_fp;
    return rc;
}

static herr_t eval_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)info;
    eval_iter *it = data;
    rb_run_summary *s = it->s;
    char oname[RB_RUN_WORD_MAX + 16];
    snprintf(oname, sizeof oname, "/eval/%.*s", RB_RUN_WORD_MAX + 1, name);
    if (!rb_results_valid_ident(name, RB_RUN_WORD_MAX)) {
        it->rc = rb_h5_fail(it->R, RB_EFORMAT, "/eval", "member '%.80s' is not a valid corpus name", name);
        return -1;
    }
    if (s->n_corpora >= RB_RESULTS_MAX_CORPORA) {
        it->rc = rb_h5_fail(it->R, RB_EFORMAT, "/eval", "more than %d corpora", RB_RESULTS_MAX_CORPORA);
        return -1;
    }
    hid_t cg;
    if ((it->rc = rb_h5_open_group(it->R, g, oname, name, &cg))) return -1;
    rb_run_corpus *c = &s->corpora[s->n_corpora];
    memset(c, 0, sizeof *c);
    snprintf(c->corpus, sizeof c->corpus, "%s", name);
    it->rc = read_corpus_attrs(it->R, cg, oname, c);
    rb_h5_close(&cg);
    if (it->rc) return -1;
    s->n_corpora++;
    return 0;
}

/* Iterates g's links in creation order where the group tracks it, else by name. */
static herr_t iterate_links(hid_t g, H5L_iterate_t cb, void *data) {
    hid_t gcpl = H5Gget_create_plist(g);
    unsigned flags = 0;
    if (gcpl >= 0) {
        if (H5Pget_link_creation_order(gcpl, &flags) < 0) flags = 0;
        H5Pclose(gcpl);
    }
    hsize_t idx = 0;
    H5_index_t by = (flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
    return H5Literate(g, by, H5_ITER_INC, &idx, cb, data);
}

static int read_summary_open(rb_h5_reader *R, hid_t f, rb_run_summary *s) {
    memset(s, 0, sizeof *s);
    char status[32];
    int rc = rb_h5_get_i32(R, f, "/", "schema_version", 1, 1 << 30, &s->schema_version);
    if (rc) return rc;
    if (s->schema_version > RB_RESULTS_SCHEMA_VERSION)
        return rb_h5_fail(R, RB_EUNSUPPORTED, "/", "schema version %d is newer than this rotbench reads (%d)",
                          s->schema_version, RB_RESULTS_SCHEMA_VERSION);
    if (!rc) rc = rb_h5_get_str(R, f, "/", "rotbench_version", s->rotbench_version, sizeof s->rotbench_version);
    if (!rc) rc = rb_h5_get_str(R, f, "/", "run_id", s->run_id, sizeof s->run_id);
    if (!rc && !rb_results_valid_ident(s->run_id, RB_RUN_ID_MAX))
        rc = rb_h5_fail(R, RB_EFORMAT, "/", "run_id '%s' is not a valid run id", s->run_id);
    if (!rc) rc = rb_h5_get_str(R, f, "/", "name", s->name, sizeof s->name);
    if (!rc) rc = rb_h5_get_str(R, f, "/", "status", status, sizeof status);
    if (!rc && (s->status = rb_run_status_from_name(status)) < 0)
        rc = rb_h5_fail(R, RB_EFORMAT, "/", "unknown status '%s' (expected partial, done, interrupted or failed)",
                        status);
    if (!rc) rc = rb_h5_get_str(R, f, "/", "created_utc", s->created_utc, sizeof s->created_utc);
    if (!rc) rc = rb_h5_get_str(R, f, "/", "updated_utc", s->updated_utc, sizeof s->updated_utc);
    if (rc) return rc;

    hid_t g = -1;
    if ((rc = rb_h5_open_group(R, f, "/config", "config", &g))) return rc;
    char *text = NULL, **v = NULL;
    size_t nv = 0;
    rc = rb_h5_get_str_alloc(R, g, "/config", "resolved_yaml", RB_RES_MAX_TEXT, &text);
    free(text);
    if (!rc) rc = rb_h5_get_str_array(R, g, "/config", "overrides", RB_RES_MAX_ARGS, &v, &nv);
    rb_h5_free_strs(v, nv);
    v = NULL;
    if (!rc) rc = rb_h5_get_str_array(R, g, "/config", "argv", RB_RES_MAX_ARGS, &v, &nv);
    rb_h5_free_strs(v, nv);
    if (!rc) rc = rb_h5_get_str(R, g, "/config", "method", s->method, sizeof s->method);
    if (!rc) rc = rb_h5_get_str(R, g, "/config", "quant", s->quant, sizeof s->quant);
    if (!rc) rc = rb_h5_get_str(R, g, "/config", "w_algo", s->w_algo, sizeof s->w_algo);
    if (!rc && strcmp(s->w_algo, "rtn") && strcmp(s->w_algo, "gptq"))
        rc = rb_h5_fail(R, RB_EFORMAT, "/config", "w_algo '%s' (expected rtn or gptq)", s->w_algo);
    if (!rc) rc = rb_h5_get_i32(R, g, "/config", "w_bits", 1, RB_QBITS_OFF, &s->w_bits);
    if (!rc) rc = rb_h5_get_i32(R, g, "/config", "a_bits", 1, RB_QBITS_OFF, &s->a_bits);
    if (!rc) rc = rb_h5_get_i32(R, g, "/config", "kv_bits", 1, RB_QBITS_OFF, &s->kv_bits);
    if (!rc) rc = rb_h5_get_u64(R, g, "/config", "seed", &s->seed);
    rb_h5_close(&g);
    if (rc) return rc;

    if ((rc = rb_h5_open_group(R, f, "/summary", "summary", &g))) return rc;
    rc = rb_h5_get_f64(R, g, "/summary", "ppl", &s->ppl);
    if (!rc) rc = rb_h5_get_f64(R, g, "/summary", "ppl_fp", &s->ppl_fp);
    if (!rc) rc = rb_h5_get_f64(R, g, "/summary", "delta", &s->delta);
    if (!rc) rc = rb_h5_get_f64(R, g, "/summary", "kl", &s->kl);
    if (!rc) rc = rb_h5_get_f64(R, g, "/summary", "seconds_calibrate", &s->seconds.calibrate);
    if (!rc) rc = rb_h5_get_f64(R, g, "/summary", "seconds_quantize", &s->seconds.quantize);
    if (!rc) rc = rb_h5_get_f64(R, g, "/summary", "seconds_evaluate", &s->seconds.evaluate);
    if (!rc) rc = rb_h5_get_f64(R, g, "/summary", "seconds_total", &s->seconds.total);
    char corpus[RB_RUN_WORD_MAX + 1];
    if (!rc) rc = rb_h5_get_str(R, g, "/summary", "corpus", corpus, sizeof corpus);
    rb_h5_close(&g);
    if (rc) return rc;

    if ((rc = rb_h5_open_group(R, f, "/eval", "eval", &g))) return rc;
    eval_iter it = {R, s, 0};
    herr_t ir = iterate_links(g, eval_cb, &it);
    rb_h5_close(&g);
    if (it.rc) return it.rc;
    if (ir < 0) return rb_h5_fail(R, RB_EFORMAT, "/eval", "cannot list members: %s", rb_h5_detail(R));
    if (s->n_corpora > 0 && strcmp(corpus, s->corpora[0].corpus))
        return rb_h5_fail(R, RB_EFORMAT, "/summary", "corpus '%s' is not the first evaluated corpus '%s'", corpus,
                          s->corpora[0].corpus);

    if ((rc = rb_h5_open_group(R, f, "/units", "units", &g))) return rc;
    H5O_info_t oi;
    if (H5Oget_info(g, &oi) < 0)
        rc = rb_h5_fail(R, RB_EFORMAT, "/units", "cannot list attributes: %s", rb_h5_detail(R));
    else
        s->n_units = (int)oi.num_attrs;
    rb_h5_close(&g);
    return rc;
}

static int rb_results_read_summary_direct(const char *path, rb_run_summary *out, rb_error *err) {
    RB_ASSERT(path && out);
    memset(out, 0, sizeof *out);
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    hid_t f;
    int rc = rb_h5_open_read(path, &f, err);
    if (!rc) {
        rb_h5_reader R = {.path = path, .err = err};
        rc = read_summary_open(&R, f, out);
        rb_h5_close(&f);
    }
    rb_h5_quiet_off(&q);
    if (rc) memset(out, 0, sizeof *out);
    return rc;
}

static int read_layers_open(rb_h5_reader *R, hid_t f, rb_layer_row **rows, size_t *n) {
    hid_t d = -1, ft = -1, mt = -1, sp = -1;
    int rc = 0;
    H5O_info_t oi;
    int has = rb_h5_has_link(R, f, "/", "layers");
    if (has < 0) return R->err ? R->err->code : RB_EFORMAT;
    if (!has) return rb_h5_fail(R, RB_ENOTFOUND, "/layers", "missing (the run has no per-layer metrics yet)");
    if (H5Oget_info_by_name(f, "layers", &oi, H5P_DEFAULT) < 0 || oi.type != H5O_TYPE_DATASET)
        return rb_h5_fail(R, RB_EFORMAT, "/layers", "not a dataset");
    if ((d = H5Dopen2(f, "layers", H5P_DEFAULT)) < 0)
        return rb_h5_fail(R, RB_EFORMAT, "/layers", "cannot open: %s", rb_h5_detail(R));
    rb_lcol c[RB_LAYER_COLS_MAX];
    int nc = rb_results_layer_cols(c);
    hsize_t dims[1] = {0};
    rb_layer_row *v = NULL;
    if ((ft = H5Dget_type(d)) < 0 || H5Tget_class(ft) != H5T_COMPOUND) {
        rc = rb_h5_fail(R, RB_EFORMAT, "/layers", "not a compound table");
        goto out;
    }
    for (int i = 0; i < nc; i++) {
        int idx = H5Tget_member_index(ft, c[i].name);
        if (idx < 0) {
            rc = rb_h5_fail(R, RB_EFORMAT, "/layers", "column '%s' missing", c[i].name);
            goto out;
        }
        H5T_class_t mc = H5Tget_member_class(ft, (unsigned)idx);
        H5T_class_t want = c[i].type == 0 ? H5T_FLOAT : c[i].type == 1 ? H5T_INTEGER : H5T_ENUM;
        if (mc != want) {
            rc = rb_h5_fail(R, RB_EFORMAT, "/layers", "column '%s' is %s, expected %s", c[i].name,
                            rb_h5_class_name(mc), rb_h5_class_name(want));
            goto out;
        }
    }
    if ((sp = H5Dget_space(d)) < 0 || H5Sget_simple_extent_type(sp) != H5S_SIMPLE ||
        H5Sget_simple_extent_ndims(sp) != 1 || H5Sget_simple_extent_dims(sp, dims, NULL) != 1) {
        rc = rb_h5_fail(R, RB_EFORMAT, "/layers", "not a one-dimensional table");
        goto out;
    }
    if (dims[0] > (hsize_t)RB_RES_MAX_LAYER_ROWS) {
        rc = rb_h5_fail(R, RB_EFORMAT, "/layers", "%llu rows, more than %lld", (unsigned long long)dims[0],
                        RB_RES_MAX_LAYER_ROWS);
        goto out;
    }
    if (dims[0] > 0 && H5Dget_storage_size(d) == 0) {
        rc = rb_h5_fail(R, RB_EFORMAT, "/layers", "dataset has no data written");
        goto out;
    }
    if (!(v = calloc(dims[0] ? dims[0] : 1, sizeof *v))) {
        rc = rb_h5_fail(R, RB_ENOMEM, "/layers", "out of memory");
        goto out;
    }
    if ((mt = rb_results_layer_type(0)) < 0 || (dims[0] && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)) {
        rc = rb_h5_fail(R, RB_EFORMAT, "/layers", "cannot read: %s", rb_h5_detail(R));
        goto out;
    }
    for (hsize_t i = 0; i < dims[0]; i++) {
        const rb_layer_row *r = &v[i];
        int ok = r->layer >= 0 && r->kind <= RB_LROW_LAYER &&
                 (r->kind == RB_LROW_ACT      ? r->name < RB_SITE_COUNT
                  : r->kind == RB_LROW_LINEAR ? r->name >= RB_SITE_COUNT && r->name < RB_LNAME_BLOCK
                                              : r->name == RB_LNAME_BLOCK);
        if (!ok) {
            rc = rb_h5_fail(R, RB_EFORMAT, "/layers", "row %llu: kind %d, layer %d, name %d is not a valid row",
                            (unsigned long long)i, r->kind, r->layer, r->name);
            goto out;
        }
    }
out:
    rb_h5_close(&sp);
    rb_h5_close(&mt);
    rb_h5_close(&ft);
    rb_h5_close(&d);
    if (rc) {
        free(v);
        return rc;
    }
    *rows = v;
    *n = dims[0];
    return 0;
}

static int rb_results_read_layers_direct(const char *path, rb_layer_row **rows, size_t *n, rb_error *err) {
    RB_ASSERT(path && rows && n);
    *rows = NULL;
    *n = 0;
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    hid_t f;
    int rc = rb_h5_open_read(path, &f, err);
    if (!rc) {
        rb_h5_reader R = {.path = path, .err = err};
        rc = read_layers_open(&R, f, rows, n);
        rb_h5_close(&f);
    }
    rb_h5_quiet_off(&q);
    return rc;
}

void rb_eval_data_free(rb_eval_data *d) {
    if (!d) return;
    free(d->nll);
    free(d->nll_fp);
    free(d->kl);
    free(d->scored);
    memset(d, 0, sizeof *d);
}

static int read_eval_open(rb_h5_reader *R, hid_t f, const char *corpus, rb_eval_data *out) {
    char oname[RB_RUN_WORD_MAX + 16];
    snprintf(oname, sizeof oname, "/eval/%s", corpus);
    hid_t ge = -1, g = -1, d = -1;
    int rc = rb_h5_open_group(R, f, "/eval", "eval", &ge);
    if (rc) return rc;
    int has = rb_h5_has_link(R, ge, "/eval", corpus);
    if (has <= 0) {
        rb_h5_close(&ge);
        return has < 0 ? (R->err ? R->err->code : RB_EFORMAT)
                       : rb_h5_fail(R, RB_ENOTFOUND, oname, "no evaluation of this corpus");
    }
    rc = rb_h5_open_group(R, ge, oname, corpus, &g);
    rb_h5_close(&ge);
    if (rc) return rc;
    snprintf(out->s.corpus, sizeof out->s.corpus, "%s", corpus);
    rc = read_corpus_attrs(R, g, oname, &out->s);
    if (!rc) rc = rb_h5_get_f64(R, g, oname, "nll_sum", &out->nll_sum);
    if (!rc) rc = rb_h5_get_f64(R, g, oname, "nll_fp_sum", &out->nll_fp_sum);
    if (!rc) rc = rb_h5_get_f64(R, g, oname, "seconds", &out->seconds);
    size_t W = (size_t)out->s.windows;
    static const char *const names[] = {"nll", "nll_fp", "kl", "scored"};
    void **dst[] = {(void **)&out->nll, (void **)&out->nll_fp, (void **)&out->kl, (void **)&out->scored};
    for (int i = 0; i < 4 && !rc; i++) {
        char dn[RB_RUN_WORD_MAX + 32];
        snprintf(dn, sizeof dn, "%s/%s", oname, names[i]);
        int is_int = i == 3;
        if ((rc = rb_h5_open_dataset_1d(R, g, dn, names[i], is_int ? H5T_INTEGER : H5T_FLOAT, 0, (long long)W, &d,
                                        NULL)))
            break;
        if (!(*dst[i] = malloc(W * 8)))
            rc = rb_h5_fail(R, RB_ENOMEM, dn, "out of memory");
        else if (H5Dread(d, is_int ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *dst[i]) < 0)
            rc = rb_h5_fail(R, RB_EFORMAT, dn, "cannot read: %s", rb_h5_detail(R));
        rb_h5_close(&d);
    }
    rb_h5_close(&g);
    return rc;
}

static int rb_results_read_eval_direct(const char *path, const char *corpus, rb_eval_data *out, rb_error *err) {
    RB_ASSERT(path && corpus && out);
    memset(out, 0, sizeof *out);
    if (!rb_results_valid_ident(corpus, RB_RUN_WORD_MAX))
        return rb_error_set(err, RB_EINVAL, "%s: '%s' is not a valid corpus name", path, corpus);
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    hid_t f;
    int rc = rb_h5_open_read(path, &f, err);
    if (!rc) {
        rb_h5_reader R = {.path = path, .err = err};
        rc = read_eval_open(&R, f, corpus, out);
        rb_h5_close(&f);
    }
    rb_h5_quiet_off(&q);
    if (rc) rb_eval_data_free(out);
    return rc;
}





static int rb_results_read_trace_direct(const char *path, const char *name, rb_trace_table **out, rb_error *err) {
    RB_ASSERT(path && name && out);
    *out = NULL;
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    hid_t f = -1, g = -1, d = -1, sp = -1;
    char **cols = NULL;
    size_t nc = 0;
    rb_trace_table *t = NULL;
    char obj[128];
    snprintf(obj, sizeof obj, "/calibration/%s", name);
    int rc = rb_h5_open_read(path, &f, err);
    rb_h5_reader R = {.path = path, .err = err};
    if (!rc) {
        int has = rb_h5_has_link(&R, f, "/", "calibration");
        if (has > 0 && !(rc = rb_h5_open_group(&R, f, "/calibration", "calibration", &g)))
            has = rb_h5_has_link(&R, g, "/calibration", name);
        if (!rc && has < 0) rc = err->code;
        else if (!rc && !has) rc = rb_h5_fail(&R, RB_ENOTFOUND, obj, "the run logged no such trace");
    }
    hsize_t dims[2] = {0, 0};
    if (!rc && ((d = H5Dopen2(g, name, H5P_DEFAULT)) < 0 || (sp = H5Dget_space(d)) < 0))
        rc = rb_h5_fail(&R, RB_EFORMAT, obj, "cannot open the dataset: %s", rb_h5_detail(&R));
    if (!rc) {
        hid_t ty = H5Dget_type(d);
        int ok = ty >= 0 && H5Tget_class(ty) == H5T_FLOAT && H5Tget_size(ty) == 8;
        if (ty >= 0) H5Tclose(ty);
        if (!ok || H5Sget_simple_extent_ndims(sp) != 2 || H5Sget_simple_extent_dims(sp, dims, NULL) != 2)
            rc = rb_h5_fail(&R, RB_EFORMAT, obj, "expected a float64 [rows][cols] dataset");
        else if (dims[1] < 1 || dims[1] > RB_TRACE_MAX_COLS || dims[0] > RB_TRACE_MAX_ROWS)
            rc = rb_h5_fail(&R, RB_EFORMAT, obj, "shape [%llu][%llu] out of range", (unsigned long long)dims[0],
                            (unsigned long long)dims[1]);
    }
    if (!rc) rc = rb_h5_get_str_array(&R, d, obj, "columns", RB_TRACE_MAX_COLS, &cols, &nc);
    if (!rc && nc != dims[1])
        rc = rb_h5_fail(&R, RB_EFORMAT, obj, "%zu column names for %llu columns", nc, (unsigned long long)dims[1]);
    if (!rc && !(t = calloc(1, sizeof *t))) rc = rb_error_set(err, RB_ENOMEM, "out of memory");
    if (!rc) {
        snprintf(t->name, sizeof t->name, "%s", name);
        t->n_cols = (int)nc;
        for (size_t i = 0; i < nc; i++) t->cols[i] = cols[i], cols[i] = NULL;
        t->rows = t->cap = dims[0];
        if (dims[0] && !(t->data = malloc(dims[0] * dims[1] * sizeof(double))))
            rc = rb_error_set(err, RB_ENOMEM, "out of memory");
        else if (dims[0] && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0)
            rc = rb_h5_fail(&R, RB_EFORMAT, obj, "cannot read: %s", rb_h5_detail(&R));
    }
    if (cols) rb_h5_free_strs(cols, nc);
    if (sp >= 0) H5Sclose(sp);
    rb_h5_close(&d);
    rb_h5_close(&g);
    rb_h5_close(&f);
    rb_h5_quiet_off(&q);
    if (rc) rb_trace_table_free(t);
    else *out = t;
    return rc;
}

static int rb_results_read_rotset_direct(const char *path, rb_rotset *s, rb_error *err) {
    RB_ASSERT(path && s);
    memset(s, 0, sizeof *s);
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    hid_t f = -1, g = -1;
    int rc = rb_h5_open_read(path, &f, err);
    rb_h5_reader R = {.path = path, .err = err};
    if (!rc) {
        int has = rb_h5_has_link(&R, f, "/", "rotations");
        if (has < 0)
            rc = err ? err->code : RB_EFORMAT;
        else if (!has)
            rc = rb_h5_fail(&R, RB_ENOTFOUND, "/rotations", "the run stored no rotation set");
        else
            rc = rb_h5_open_group(&R, f, "/rotations", "rotations", &g);
    }
    if (!rc) {
        char where[4200];
        snprintf(where, sizeof where, "%s: /rotations", path);
        rc = rb_rotset_read_loc((int64_t)g, where, s, err);
    }
    rb_h5_close(&g);
    rb_h5_close(&f);
    rb_h5_quiet_off(&q);
    return rc;
}

/* The public readers: each runs its _direct reader under rb_h5_guard (RB_RESULTS_GUARDED). */
RB_RESULTS_GUARDED(rb_results_read_summary, const char *path; rb_run_summary *out, x->path, x->out)

int rb_results_read_summary(const char *path, rb_run_summary *out, rb_error *err) {
    return rb_h5_guard(path, rb_results_read_summary_fn, &(rb_results_read_summary_ctx){path, out}, err);
}

RB_RESULTS_GUARDED(rb_results_read_layers, const char *path; rb_layer_row **rows; size_t *n, x->path, x->rows, x->n)

int rb_results_read_layers(const char *path, rb_layer_row **rows, size_t *n, rb_error *err) {
    return rb_h5_guard(path, rb_results_read_layers_fn, &(rb_results_read_layers_ctx){path, rows, n}, err);
}

RB_RESULTS_GUARDED(rb_results_read_eval, const char *path; const char *corpus; rb_eval_data *out, x->path, x->corpus,
                   x->out)

int rb_results_read_eval(const char *path, const char *corpus, rb_eval_data *out, rb_error *err) {
    return rb_h5_guard(path, rb_results_read_eval_fn, &(rb_results_read_eval_ctx){path, corpus, out}, err);
}

RB_RESULTS_GUARDED(rb_results_read_trace, const char *path; const char *name; rb_trace_table **out, x->path, x->name,
                   x->out)

int rb_results_read_trace(const char *path, const char *name, rb_trace_table **out, rb_error *err) {
    return rb_h5_guard(path, rb_results_read_trace_fn, &(rb_results_read_trace_ctx){path, name, out}, err);
}

RB_RESULTS_GUARDED(rb_results_read_rotset, const char *path; rb_rotset *s, x->path, x->s)

int rb_results_read_rotset(const char *path, rb_rotset *s, rb_error *err) {
    return rb_h5_guard(path, rb_results_read_rotset_fn, &(rb_results_read_rotset_ctx){path, s}, err);
}

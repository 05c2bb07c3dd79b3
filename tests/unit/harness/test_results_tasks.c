/* /tasks/<name> in results.h5: hand-filled task results written and read back (every array and
 * attribute, the HDF5 types, what is absent without acc_norm or an FP reference), replacement on
 * resume, refusal of inconsistent results, and the reader's validation of tampered files. */
#include "results_fixture.h"

#include "core/rb_h5.h"
#include "harness/rb_results_tasks.h"

typedef rb_test_dir_fixture fixture;

/* A task result as rb_tasks_run could leave it, in static storage (never rb_task_result_free'd). */
typedef struct fx_task {
    rb_task_result r;
    int req_off[8], gold[8], n_tok[16], n_chars[16];
    double ll[16], ll_fp[16];
    unsigned char greedy[16], greedy_fp[16], correct[8], correct_fp[8], correct_norm[8], correct_norm_fp[8];
} fx_task;

/* PIQA-like: 4 documents of 2 choices; acc, acc_norm; with or without FP reference. */
static void fx_piqa(fx_task *t, int with_fp) {
    memset(t, 0, sizeof *t);
    rb_task_result *r = &t->r;
    r->task = RB_TASK_PIQA;
    r->scoring = RB_SCORE_CHOICE;
    r->bos = RB_TASK_BOS_NONE;
    r->n_docs = 4;
    r->n_req = 8;
    for (int i = 0; i <= 4; i++) t->req_off[i] = 2 * i;
    const int gold[4] = {0, 1, 1, 0};
    const unsigned char c[4] = {1, 0, 1, 1}, cn[4] = {1, 1, 1, 0}, cf[4] = {1, 1, 0, 1}, cnf[4] = {1, 1, 1, 1};
    for (int i = 0; i < 4; i++) {
        t->gold[i] = gold[i];
        t->correct[i] = c[i];
        t->correct_norm[i] = cn[i];
        t->correct_fp[i] = cf[i];
        t->correct_norm_fp[i] = cnf[i];
    }
    for (int j = 0; j < 8; j++) {
        t->n_tok[j] = 3 + j;
        t->n_chars[j] = 10 + 2 * j;
        t->ll[j] = -1.5 * (j + 1);
        t->ll_fp[j] = -1.25 * (j + 1);
        t->greedy[j] = (unsigned char)(j % 3 == 0);
        t->greedy_fp[j] = (unsigned char)(j % 2 == 0);
    }
    r->req_off = t->req_off;
    r->gold = t->gold;
    r->n_tok = t->n_tok;
    r->n_chars = t->n_chars;
    r->q = (rb_task_scores){t->ll, t->greedy, t->correct, t->correct_norm, 0.75, 0.75, NAN};
    if (with_fp) {
        r->have_fp = 1;
        r->fp = (rb_task_scores){t->ll_fp, t->greedy_fp, t->correct_fp, t->correct_norm_fp, 0.75, 1.0, NAN};
        r->acc_pair = (rb_task_paired){0.0, -0.5, 0.5, 1, 1, 1.0};
        r->acc_norm_pair = (rb_task_paired){-0.25, -0.75, 0.0, 1, 0, 1.0};
    } else {
        r->fp = (rb_task_scores){NULL, NULL, NULL, NULL, NAN, NAN, NAN};
    }
    r->truncated = 1;
    r->tokens_forward = 40;
    r->tokens_request = 64;
    r->seconds = 2.5;
}

/* LAMBADA-like: 3 single-request documents, greedy acc and perplexity, FP reference. */
static void fx_lambada(fx_task *t) {
    memset(t, 0, sizeof *t);
    rb_task_result *r = &t->r;
    r->task = RB_TASK_LAMBADA;
    r->scoring = RB_SCORE_GREEDY;
    r->bos = RB_TASK_BOS_DEFAULT;
    r->n_docs = r->n_req = 3;
    for (int i = 0; i <= 3; i++) t->req_off[i] = i;
    const unsigned char g[3] = {1, 0, 0}, gf[3] = {1, 1, 0};
    for (int i = 0; i < 3; i++) {
        t->n_tok[i] = 1 + i;
        t->n_chars[i] = 5 + i;
        t->ll[i] = -2.0 - i;
        t->ll_fp[i] = -1.0 - i;
        t->greedy[i] = t->correct[i] = g[i];
        t->greedy_fp[i] = t->correct_fp[i] = gf[i];
    }
    r->req_off = t->req_off;
    r->gold = t->gold;
    r->n_tok = t->n_tok;
    r->n_chars = t->n_chars;
    r->q = (rb_task_scores){t->ll, t->greedy, t->correct, NULL, 1.0 / 3, NAN, exp(3.0)};
    r->fp = (rb_task_scores){t->ll_fp, t->greedy_fp, t->correct_fp, NULL, 2.0 / 3, NAN, exp(2.0)};
    r->have_fp = 1;
    r->acc_pair = (rb_task_paired){-1.0 / 3, -1.0, 0.0, 1, 0, 1.0};
    r->tokens_forward = r->tokens_request = 6;
    r->seconds = 2.5;
}

static rb_results *open_run(const char *dir) {
    rb_run_meta m = fx_meta("tasks-run", "tasks", "hadamard", RB_WALGO_RTN);
    rb_results *w;
    rb_error err;
    rb_error_clear(&err);
    int rc = rb_results_create(dir, &m, NULL, 0, &w, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
    return w;
}

static void write_tasks(const char *dir, int status) {
    rb_results *w = open_run(dir);
    rb_error err;
    fx_task a, b;
    fx_lambada(&b);
    fx_piqa(&a, 1);
    /* written lambada first: read back in creation order */
    assert_int_equal(rb_results_put_task(w, "/d/lambada.jsonl", NULL, RB_TFMT_FOUNDRY_LM, &b.r, &err), 0);
    assert_int_equal(rb_results_put_task(w, "/d/piqa/valid.jsonl", "/d/piqa/valid-labels.lst", RB_TFMT_PIQA, &a.r, &err),
                     0);
    assert_int_equal(rb_results_mark_unit(w, "tasks", 2.5, &err), 0);
    assert_int_equal(rb_results_finish(w, status, &err), 0);
    fx_assert_no_open_h5();
}

static int has_link(hid_t f, const char *path) { return H5Lexists(f, path, H5P_DEFAULT) > 0; }

static int has_attr(hid_t f, const char *obj, const char *name) {
    return H5Aexists_by_name(f, obj, name, H5P_DEFAULT) > 0;
}

static void assert_dset(hid_t f, const char *path, H5T_class_t c, size_t size, hsize_t n) {
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    assert_int_equal(H5Tget_class(t), c);
    assert_int_equal(H5Tget_size(t), size);
    if (c == H5T_INTEGER) assert_int_equal(H5Tget_order(t), H5T_ORDER_LE);
    hsize_t dims[2] = {0, 0};
    assert_int_equal(H5Sget_simple_extent_ndims(sp), 1);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    assert_int_equal(dims[0], n);
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(d);
}

static void test_tasks_roundtrip(void **state) {
    fixture *fx = *state;
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/rt", fx->dir);
    assert_int_equal(mkdir(dir, 0777), 0);
    write_tasks(dir, RB_RUN_DONE);
    snprintf(path, sizeof path, "%s/%s", dir, RB_RESULTS_FILE);
    /* HDF5 layout */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_dset(f, "/tasks/piqa/req_off", H5T_INTEGER, 4, 5);
    assert_dset(f, "/tasks/piqa/gold", H5T_INTEGER, 4, 4);
    assert_dset(f, "/tasks/piqa/n_tok", H5T_INTEGER, 4, 8);
    assert_dset(f, "/tasks/piqa/n_chars", H5T_INTEGER, 4, 8);
    assert_dset(f, "/tasks/piqa/ll", H5T_FLOAT, 8, 8);
    assert_dset(f, "/tasks/piqa/ll_fp", H5T_FLOAT, 8, 8);
    assert_dset(f, "/tasks/piqa/greedy", H5T_INTEGER, 1, 8);
    assert_dset(f, "/tasks/piqa/greedy_fp", H5T_INTEGER, 1, 8);
    assert_dset(f, "/tasks/piqa/correct", H5T_INTEGER, 1, 4);
    assert_dset(f, "/tasks/piqa/correct_norm_fp", H5T_INTEGER, 1, 4);
    assert_dset(f, "/tasks/lambada_openai/correct_fp", H5T_INTEGER, 1, 3);
    assert_false(has_link(f, "/tasks/lambada_openai/correct_norm")); /* lambada reports no acc_norm */
    const char *piqa_attrs[] = {"file",           "labels",        "format",        "scoring",          "bos",
                                "n_docs",         "n_req",         "fp_ref",        "truncated",        "acc",
                                "acc_norm",       "fp_acc",        "fp_acc_norm",   "acc_delta",        "acc_ci_lo",
                                "acc_ci_hi",      "acc_n_fp_only", "acc_n_q_only",  "acc_p_mcnemar",    "acc_norm_delta",
                                "acc_norm_ci_lo", "acc_norm_ci_hi", "acc_norm_n_fp_only", "acc_norm_n_q_only",
                                "acc_norm_p_mcnemar", "tokens_forward", "tokens_request", "seconds"};
    for (size_t i = 0; i < sizeof piqa_attrs / sizeof *piqa_attrs; i++) {
        if (!has_attr(f, "/tasks/piqa", piqa_attrs[i])) fprintf(stderr, "# missing %s\n", piqa_attrs[i]);
        assert_true(has_attr(f, "/tasks/piqa", piqa_attrs[i]));
    }
    assert_false(has_attr(f, "/tasks/piqa", "ppl")); /* not reported for piqa */
    assert_true(has_attr(f, "/tasks/lambada_openai", "ppl"));
    assert_true(has_attr(f, "/tasks/lambada_openai", "fp_ppl"));
    assert_false(has_attr(f, "/tasks/lambada_openai", "acc_norm"));
    assert_false(has_attr(f, "/tasks/lambada_openai", "acc_norm_delta"));
    assert_true(H5Aexists_by_name(f, "/units", "tasks", H5P_DEFAULT) > 0);
    H5Fclose(f);
    /* read back */
    rb_task_data *d;
    int n;
    rb_error err;
    int rc = rb_results_read_tasks(path, 1, &d, &n, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
    fx_assert_no_open_h5();
    assert_int_equal(n, 2);
    assert_int_equal(d[0].task, RB_TASK_LAMBADA);
    assert_int_equal(d[1].task, RB_TASK_PIQA);
    const rb_task_data *p = &d[1], *l = &d[0];
    fx_task a;
    fx_piqa(&a, 1);
    assert_string_equal(p->file, "/d/piqa/valid.jsonl");
    assert_string_equal(p->labels, "/d/piqa/valid-labels.lst");
    assert_string_equal(l->labels, "");
    assert_int_equal(p->format, RB_TFMT_PIQA);
    assert_int_equal(l->format, RB_TFMT_FOUNDRY_LM);
    assert_int_equal(p->scoring, RB_SCORE_CHOICE);
    assert_int_equal(l->scoring, RB_SCORE_GREEDY);
    assert_int_equal(p->bos, RB_TASK_BOS_NONE);
    assert_int_equal(l->bos, RB_TASK_BOS_DEFAULT);
    assert_int_equal(p->n_docs, 4);
    assert_int_equal(p->n_req, 8);
    assert_int_equal(p->metrics, RB_METRIC_ACC | RB_METRIC_ACC_NORM);
    assert_int_equal(l->metrics, RB_METRIC_ACC | RB_METRIC_PPL);
    assert_int_equal(p->have_fp, 1);
    assert_int_equal(p->truncated, 1);
    assert_true(p->acc == 0.75 && p->acc_norm == 0.75 && isnan(p->ppl));
    assert_true(p->fp_acc == 0.75 && p->fp_acc_norm == 1.0 && isnan(p->fp_ppl));
    assert_true(l->ppl == exp(3.0) && l->fp_ppl == exp(2.0) && isnan(l->acc_norm));
    assert_true(p->acc_norm_pair.delta == -0.25 && p->acc_norm_pair.lo == -0.75 && p->acc_norm_pair.hi == 0.0);
    assert_int_equal(p->acc_norm_pair.n_fp_only, 1);
    assert_int_equal(p->acc_norm_pair.n_q_only, 0);
    assert_true(p->acc_pair.p_mcnemar == 1.0);
    assert_true(isnan(l->acc_norm_pair.delta));
    assert_true(p->tokens_forward == 40 && p->tokens_request == 64 && p->seconds == 2.5);
    assert_memory_equal(p->req_off, a.req_off, 5 * sizeof(int32_t));
    assert_memory_equal(p->gold, a.gold, 4 * sizeof(int32_t));
    assert_memory_equal(p->n_tok, a.n_tok, 8 * sizeof(int32_t));
    assert_memory_equal(p->n_chars, a.n_chars, 8 * sizeof(int32_t));
    assert_memory_equal(p->ll, a.ll, 8 * sizeof(double));
    assert_memory_equal(p->ll_fp, a.ll_fp, 8 * sizeof(double));
    assert_memory_equal(p->greedy, a.greedy, 8);
    assert_memory_equal(p->greedy_fp, a.greedy_fp, 8);
    assert_memory_equal(p->correct, a.correct, 4);
    assert_memory_equal(p->correct_fp, a.correct_fp, 4);
    assert_memory_equal(p->correct_norm, a.correct_norm, 4);
    assert_memory_equal(p->correct_norm_fp, a.correct_norm_fp, 4);
    assert_null(l->correct_norm);
    /* the papers' metric: acc_norm for piqa, acc for lambada */
    assert_int_equal(rb_task_primary_metric(RB_TASK_PIQA, RB_SCORE_CHOICE), RB_METRIC_ACC_NORM);
    assert_int_equal(rb_task_primary_metric(RB_TASK_LAMBADA, RB_SCORE_GREEDY), RB_METRIC_ACC);
    assert_true(rb_task_data_primary(p, 1) == 1.0 && rb_task_data_primary(l, 0) == 1.0 / 3);
    assert_true(rb_task_data_primary_pair(p)->delta == -0.25);
    rb_task_data_free(d, n);
    /* attributes only */
    assert_int_equal(rb_results_read_tasks(path, 0, &d, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_null(d[1].ll);
    assert_true(d[1].acc_norm == 0.75);
    rb_task_data_free(d, n);
}

/* Without an FP reference: no *_fp datasets or attributes, NaN on reading; a resumed unit replaces
 * its group; a file without tasks reads as none. */
static void test_tasks_without_fp_and_replace(void **state) {
    fixture *fx = *state;
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/nofp", fx->dir);
    assert_int_equal(mkdir(dir, 0777), 0);
    rb_results *w = open_run(dir);
    rb_error err;
    snprintf(path, sizeof path, "%s/%s", dir, RB_RESULTS_PARTIAL);
    rb_task_data *d;
    int n = -1;
    assert_int_equal(rb_results_read_tasks(rb_results_path(w), 1, &d, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_null(d);
    fx_task a;
    fx_piqa(&a, 1);
    assert_int_equal(rb_results_put_task(w, "/first", NULL, RB_TFMT_PIQA, &a.r, &err), 0);
    fx_piqa(&a, 0);
    assert_int_equal(rb_results_put_task(w, "/second", NULL, RB_TFMT_FOUNDRY_MC, &a.r, &err), 0);
    assert_int_equal(rb_results_finish(w, RB_RUN_INTERRUPTED, &err), 0);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_false(has_link(f, "/tasks/piqa/ll_fp"));
    assert_false(has_link(f, "/tasks/piqa/correct_norm_fp"));
    assert_false(has_attr(f, "/tasks/piqa", "fp_acc"));
    assert_false(has_attr(f, "/tasks/piqa", "acc_delta"));
    H5Fclose(f);
    assert_int_equal(rb_results_read_tasks(path, 1, &d, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(d[0].file, "/second");
    assert_int_equal(d[0].format, RB_TFMT_FOUNDRY_MC);
    assert_int_equal(d[0].have_fp, 0);
    assert_true(isnan(d[0].fp_acc) && isnan(d[0].fp_acc_norm));
    assert_true(isnan(d[0].acc_pair.delta) && d[0].acc_pair.n_q_only == -1);
    assert_null(d[0].ll_fp);
    rb_task_data_free(d, n);
    fx_assert_no_open_h5();
}

static void expect_put_error(rb_results *w, const rb_task_result *r, int format, const char *needle) {
    rb_error err;
    rb_error_clear(&err);
    assert_int_equal(rb_results_put_task(w, "/f", NULL, format, r, &err), RB_EINVAL);
    if (!strstr(err.msg, needle)) fprintf(stderr, "# got: %s\n# want: %s\n", err.msg, needle);
    assert_non_null(strstr(err.msg, needle));
}

static void test_tasks_put_refuses(void **state) {
    fixture *fx = *state;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/bad", fx->dir);
    assert_int_equal(mkdir(dir, 0777), 0);
    rb_results *w = open_run(dir);
    fx_task a;
    fx_piqa(&a, 1);
    a.r.task = RB_TASK_COUNT;
    expect_put_error(w, &a.r, RB_TFMT_PIQA, "/tasks: unknown task 9");
    fx_piqa(&a, 1);
    expect_put_error(w, &a.r, 99, "/tasks/piqa: unknown format 99");
    a.r.scoring = 7;
    expect_put_error(w, &a.r, RB_TFMT_PIQA, "/tasks/piqa: unknown scoring 7");
    fx_piqa(&a, 1);
    a.req_off[2] = 2; /* {0, 2, 2, 6, 8} */
    expect_put_error(w, &a.r, RB_TFMT_PIQA, "document 1 has 0 requests");
    fx_piqa(&a, 1);
    a.gold[3] = 2;
    expect_put_error(w, &a.r, RB_TFMT_PIQA, "document 3: gold 2 of 2 requests");
    fx_piqa(&a, 1);
    a.r.q.correct_norm = NULL;
    expect_put_error(w, &a.r, RB_TFMT_PIQA, "missing per-request or per-document arrays");
    fx_piqa(&a, 1);
    a.r.fp.ll = NULL;
    expect_put_error(w, &a.r, RB_TFMT_PIQA, "missing arrays of the FP reference");
    fx_piqa(&a, 1);
    a.req_off[4] = 7;
    expect_put_error(w, &a.r, RB_TFMT_PIQA, "request offsets run from 0 to 7, expected 0 to 8");
    rb_error err;
    assert_int_equal(rb_results_finish(w, RB_RUN_FAILED, &err), 0);
    fx_assert_no_open_h5();
}

/* Rewrites attribute `name` of obj as string sv, int32 v, or float64 dv (sv NULL, v == -12345). */
static void tamper_attr(const char *path, const char *obj, const char *name, const char *sv, int v, double dv) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    assert_true(o >= 0);
    if (sv) assert_int_equal(rb_h5_put_str(o, name, sv), 0);
    else if (v != -12345) assert_int_equal(rb_h5_put_i32(o, name, v), 0);
    else assert_int_equal(rb_h5_put_f64(o, name, dv), 0);
    H5Oclose(o);
    H5Fclose(f);
}

static void tamper_u8(const char *path, const char *dset, int index, uint8_t value) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT), sp = H5Dget_space(d);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(sp, &n, NULL);
    uint8_t v[64];
    assert_true(n <= 64);
    assert_true(H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    v[index] = value;
    assert_true(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
}

static void test_tasks_reader_validation(void **state) {
    fixture *fx = *state;
    char dir[600], good[700], path[700];
    snprintf(dir, sizeof dir, "%s/val", fx->dir);
    assert_int_equal(mkdir(dir, 0777), 0);
    write_tasks(dir, RB_RUN_DONE);
    snprintf(good, sizeof good, "%s/%s", dir, RB_RESULTS_FILE);
    snprintf(path, sizeof path, "%s/t.h5", dir);
    struct {
        const char *obj, *name, *sv;
        int v;
        double dv;
        const char *dset;
        const char *needle;
    } cases[] = {
        {"/tasks/piqa", "scoring", "bogus", 0, 0, NULL,
         "t.h5: /tasks/piqa: unknown scoring 'bogus' (expected choice, greedy or llamacpp)"},
        {"/tasks/piqa", "format", "csv", 0, 0, NULL, "/tasks/piqa: unknown format 'csv'"},
        {"/tasks/piqa", "bos", "always", 0, 0, NULL, "/tasks/piqa: unknown bos 'always'"},
        {"/tasks/piqa", "n_docs", NULL, 0, 0, NULL, "/tasks/piqa: attribute 'n_docs'"},
        {"/tasks/piqa", "n_req", NULL, 3, 0, NULL, "/tasks/piqa: attribute 'n_req'"},
        {"/tasks/piqa", "n_docs", NULL, 5, 0, NULL, "/tasks/piqa/req_off"},
        {"/tasks/piqa", "acc", NULL, -12345, 1.5, NULL, "/tasks/piqa: acc = 1.5 is not a fraction in [0, 1]"},
        {"/tasks/piqa", "acc", NULL, -12345, 0.5, NULL,
         "/tasks/piqa: correct: 3 of 4 documents right, but the accuracy attribute is 0.5"},
        {"/tasks/piqa", "acc_n_q_only", NULL, 4, 0, NULL, "/tasks/piqa: acc: 1 + 4 discordant documents of 4"},
        {NULL, NULL, NULL, 0, 0, "/tasks/piqa/correct_fp", "/tasks/piqa: correct_fp[1] = 2 is not 0 or 1"},
        {NULL, NULL, NULL, 0, 0, "/tasks/piqa/greedy", "/tasks/piqa: greedy[0] = 2 is not 0 or 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char cmd[1600];
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", good, path);
        assert_int_equal(system(cmd), 0);
        if (cases[i].dset) tamper_u8(path, cases[i].dset, strstr(cases[i].dset, "_fp") ? 1 : 0, 2);
        else tamper_attr(path, cases[i].obj, cases[i].name, cases[i].sv, cases[i].v, cases[i].dv);
        rb_task_data *d = NULL;
        int n = 0;
        rb_error err;
        rb_error_clear(&err);
        int rc = rb_results_read_tasks(path, 1, &d, &n, &err);
        if (rc != RB_EFORMAT) fprintf(stderr, "# case %zu: rc %d: %s\n", i, rc, rc ? err.msg : "");
        assert_int_equal(rc, RB_EFORMAT);
        if (!strstr(err.msg, cases[i].needle)) fprintf(stderr, "# case %zu got: %s\n", i, err.msg);
        assert_non_null(strstr(err.msg, cases[i].needle));
        assert_null(d);
        if (H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL)) fprintf(stderr, "# case %zu leaves objects open\n", i);
        fx_assert_no_open_h5();
    }
    /* a group that is not a task */
    char cmd[1600];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", good, path);
    assert_int_equal(system(cmd), 0);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(H5Lmove(f, "/tasks/piqa", f, "/tasks/squad", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    H5Fclose(f);
    rb_task_data *d = NULL;
    int n = 0;
    rb_error err;
    assert_int_equal(rb_results_read_tasks(path, 0, &d, &n, &err), RB_EFORMAT);
    assert_non_null(strstr(err.msg, "/tasks: member 'squad' is not a task name"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tasks_roundtrip, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_tasks_without_fp_and_replace, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_tasks_put_refuses, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_tasks_reader_validation, rb_test_dir_setup, rb_test_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

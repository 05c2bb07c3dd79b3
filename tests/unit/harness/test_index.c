/* Sweep index: index.h5 over three runs (one partial) with rows, enums and external links
 * checked through the HDF5 API, CSV golden text, unreadable runs, duplicate run ids. */
#include "results_fixture.h"

#include <dirent.h>
#include <sys/stat.h>

#include "core/rb_file.h"
#include "core/rb_h5.h"
#include "harness/rb_index.h"

typedef rb_test_dir_fixture fixture;

static void write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(s, f);
    assert_int_equal(fclose(f), 0);
}

/* Three runs, written out of name order, plus things that are not runs. */
static void make_sweep(const char *dir) {
    fx_write_run(dir, "c-partial", "run-c", "c", "identity", RB_WALGO_RTN, 0, 0, 0, 0, NAN, RB_RUN_PARTIAL);
    fx_write_run(dir, "a-hadamard", "run-a", "a name", "hadamard", RB_WALGO_GPTQ, 2, 12.5, 10.25, 0.0625, 3.0,
                 RB_RUN_DONE);
    fx_write_run(dir, "b-identity", "run-b", "ident, \"quoted\"", "identity", RB_WALGO_RTN, 1, 30.0, 10.25, 1.5, 2.5,
                 RB_RUN_DONE);
    char p[1024];
    snprintf(p, sizeof p, "%s/notes", dir);
    assert_int_equal(mkdir(p, 0777), 0);
    snprintf(p, sizeof p, "%s/notes/results.txt", dir);
    write_text(p, "not a run\n");
    snprintf(p, sizeof p, "%s/README.txt", dir);
    write_text(p, "sweep\n");
    snprintf(p, sizeof p, "%s/.hidden", dir);
    assert_int_equal(mkdir(p, 0777), 0);
    snprintf(p, sizeof p, "%s/.hidden/results.h5", dir);
    write_text(p, "skipped: hidden\n");
}

static const char golden_csv[] =
    "dir,run_id,name,status,method,quant,w_bits,a_bits,kv_bits,w_algo,seed,corpus,protocol,seqlen,ppl,ppl_fp,delta,kl,"
    "seconds,error\n"
    "a-hadamard,run-a,a name,done,hadamard,W4A4KV4,4,4,4,gptq,17297704939806375663,wikitext2-test,gptq,32,12.5,10.25,"
    "2.25,0.0625,3,\n"
    "a-hadamard,run-a,a name,done,hadamard,W4A4KV4,4,4,4,gptq,17297704939806375663,c4,llamacpp,32,13.5,11.25,2.25,"
    "0.0625,3,\n"
    "b-identity,run-b,\"ident, \"\"quoted\"\"\",done,identity,W4A4KV4,4,4,4,rtn,17297704939806375663,wikitext2-test,"
    "gptq,32,30,10.25,19.75,1.5,2.5,\n"
    "c-partial,run-c,c,partial,identity,W4A4KV4,4,4,4,rtn,17297704939806375663,,,,,,,,,\n";

static char *csv_of(const char *dir, int *rc, rb_error *err) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    *rc = rb_index_export_csv(dir, f, err);
    fclose(f);
    return buf;
}

/* /summary row subset read through HDF5's compound conversion (by member name). */
typedef struct sub_row {
    char *run_id, *dir;
    int8_t status, w_algo, protocol;
    int32_t seqlen;
    double ppl, seconds;
    uint64_t seed;
} sub_row;

static hid_t enum8(const char *const *labels, const int *values, int n) {
    hid_t t = H5Tenum_create(H5T_NATIVE_INT8);
    for (int i = 0; i < n; i++) {
        int8_t v = (int8_t)values[i];
        assert_true(H5Tenum_insert(t, labels[i], &v) >= 0);
    }
    return t;
}

static void test_index_three_runs(void **state) {
    fixture *fx = *state;
    make_sweep(fx->dir);
    rb_error err;
    rb_error_clear(&err);
    int rc = rb_index_build(fx->dir, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
    fx_assert_no_open_h5();
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fx->dir, RB_INDEX_FILE);

    /* Rows through the C API. */
    rb_index_row *rows;
    size_t n;
    assert_int_equal(rb_index_scan(fx->dir, &rows, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_string_equal(rows[0].dir, "a-hadamard");
    assert_string_equal(rows[0].corpus, "wikitext2-test");
    assert_string_equal(rows[1].corpus, "c4");
    assert_int_equal(rows[1].protocol, RB_PPL_LLAMACPP);
    assert_string_equal(rows[2].dir, "b-identity");
    assert_int_equal(rows[2].w_algo, RB_WALGO_RTN);
    assert_string_equal(rows[3].dir, "c-partial");
    assert_string_equal(rows[3].file, RB_RESULTS_PARTIAL);
    assert_int_equal(rows[3].status, RB_RUN_PARTIAL);
    assert_true(isnan(rows[3].ppl) && rows[3].seqlen == -1 && rows[3].corpus[0] == 0);
    free(rows);

    /* The HDF5 file: types, rows, links. */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, "summary", H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t ft = H5Dget_type(d);
    static const char *const enum_cols[] = {"status", "w_algo", "protocol"};
    for (int i = 0; i < 3; i++) {
        int idx = H5Tget_member_index(ft, enum_cols[i]);
        assert_true(idx >= 0);
        assert_int_equal(H5Tget_member_class(ft, (unsigned)idx), H5T_ENUM);
    }
    static const char *const str_cols[] = {"dir", "file", "run_id", "name", "method", "quant", "corpus", "error"};
    for (int i = 0; i < 8; i++) {
        int idx = H5Tget_member_index(ft, str_cols[i]);
        assert_true(idx >= 0);
        hid_t mt = H5Tget_member_type(ft, (unsigned)idx);
        assert_int_equal(H5Tget_class(mt), H5T_STRING);
        assert_true(H5Tis_variable_str(mt) > 0);
        assert_int_equal(H5Tget_cset(mt), H5T_CSET_UTF8);
        H5Tclose(mt);
    }
    assert_int_equal(H5Tget_nmembers(ft), 21);
    assert_int_equal(H5Tget_member_index(ft, "dir"), 0);
    assert_int_equal(H5Tget_member_index(ft, "error"), 20);
    H5Tclose(ft);
    static const char *const st_l[] = {"partial", "done", "interrupted", "failed", "unreadable"};
    static const int st_v[] = {0, 1, 2, 3, 4};
    static const char *const wa_l[] = {"unknown", "rtn", "gptq"};
    static const int wa_v[] = {-1, 0, 1};
    static const char *const pr_l[] = {"none", "gptq", "llamacpp"};
    static const int pr_v[] = {0, 1, 2};
    hid_t mt = H5Tcreate(H5T_COMPOUND, sizeof(sub_row)), s = rb_h5_str_type(), es = enum8(st_l, st_v, 5),
          ew = enum8(wa_l, wa_v, 3), ep = enum8(pr_l, pr_v, 3);
    H5Tinsert(mt, "run_id", offsetof(sub_row, run_id), s);
    H5Tinsert(mt, "dir", offsetof(sub_row, dir), s);
    H5Tinsert(mt, "status", offsetof(sub_row, status), es);
    H5Tinsert(mt, "w_algo", offsetof(sub_row, w_algo), ew);
    H5Tinsert(mt, "protocol", offsetof(sub_row, protocol), ep);
    H5Tinsert(mt, "seqlen", offsetof(sub_row, seqlen), H5T_NATIVE_INT32);
    H5Tinsert(mt, "ppl", offsetof(sub_row, ppl), H5T_NATIVE_DOUBLE);
    H5Tinsert(mt, "seconds", offsetof(sub_row, seconds), H5T_NATIVE_DOUBLE);
    H5Tinsert(mt, "seed", offsetof(sub_row, seed), H5T_NATIVE_UINT64);
    sub_row r[4];
    memset(r, 0, sizeof r);
    hid_t sp = H5Dget_space(d);
    assert_int_equal(H5Sget_simple_extent_npoints(sp), 4);
    assert_true(H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, r) >= 0);
    assert_string_equal(r[0].run_id, "run-a");
    assert_int_equal(r[0].status, 1);
    assert_int_equal(r[0].w_algo, 1);
    assert_int_equal(r[0].protocol, 1);
    assert_int_equal(r[0].seqlen, FX_T);
    assert_true(r[0].ppl == 12.5 && r[0].seconds == 3.0 && r[0].seed == FX_SEED);
    assert_int_equal(r[1].protocol, 2);
    assert_true(r[1].ppl == 13.5);
    assert_string_equal(r[2].run_id, "run-b");
    assert_int_equal(r[2].w_algo, 0);
    assert_string_equal(r[3].dir, "c-partial");
    assert_int_equal(r[3].status, 0);
    assert_int_equal(r[3].protocol, 0);
    assert_true(isnan(r[3].ppl) && isnan(r[3].seconds));
    H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, r);
    hid_t ids[] = {sp, mt, s, es, ew, ep};
    for (int i = 0; i < 6; i++) rb_h5_close(&ids[i]);
    H5Dclose(d);
    hid_t a = H5Aopen(f, "runs", H5P_DEFAULT);
    int32_t runs;
    H5Aread(a, H5T_NATIVE_INT32, &runs);
    H5Aclose(a);
    assert_int_equal(runs, 3);

    /* External links: relative targets, resolved from another working directory. */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir("/"), 0);
    static const char *const ids_[] = {"run-a", "run-b", "run-c"};
    static const char *const targets[] = {"a-hadamard/results.h5", "b-identity/results.h5",
                                          "c-partial/results.h5.partial"};
    hid_t g = H5Gopen2(f, "runs", H5P_DEFAULT);
    H5G_info_t gi;
    H5Gget_info(g, &gi);
    assert_int_equal(gi.nlinks, 3);
    for (int i = 0; i < 3; i++) {
        H5L_info_t li;
        assert_true(H5Lget_info(g, ids_[i], &li, H5P_DEFAULT) >= 0);
        assert_int_equal(li.type, H5L_TYPE_EXTERNAL);
        char val[512];
        const char *file, *obj;
        unsigned flags;
        assert_true(H5Lget_val(g, ids_[i], val, sizeof val, H5P_DEFAULT) >= 0);
        assert_true(H5Lunpack_elink_val(val, li.u.val_size, &flags, &file, &obj) >= 0);
        assert_string_equal(file, targets[i]);
        assert_string_equal(obj, "/");
        hid_t o = H5Oopen(g, ids_[i], H5P_DEFAULT);
        assert_true(o >= 0);
        hid_t at = H5Aopen(o, "run_id", H5P_DEFAULT), t = H5Aget_type(at);
        char *id = NULL;
        assert_true(H5Aread(at, t, &id) >= 0);
        assert_string_equal(id, ids_[i]);
        H5free_memory(id);
        H5Tclose(t);
        H5Aclose(at);
        H5Oclose(o);
    }
    H5Gclose(g);
    H5Fclose(f);
    assert_int_equal(chdir(cwd), 0);
    fx_assert_no_open_h5();

    /* CSV golden text. */
    char *csv = csv_of(fx->dir, &rc, &err);
    assert_int_equal(rc, 0);
    if (strcmp(csv, golden_csv)) fprintf(stderr, "# got:\n%s", csv);
    assert_string_equal(csv, golden_csv);
    free(csv);
    /* No temporary left beside the index. */
    DIR *dd = opendir(fx->dir);
    for (struct dirent *e; (e = readdir(dd));) assert_null(strstr(e->d_name, "tmp"));
    closedir(dd);
    /* Rebuilding replaces the index. */
    assert_int_equal(rb_index_build(fx->dir, &err), 0);
    fx_assert_no_open_h5();
}

static void test_index_unreadable_and_duplicates(void **state) {
    fixture *fx = *state;
    make_sweep(fx->dir);
    char p[1024], q[1024];
    snprintf(p, sizeof p, "%s/d-broken", fx->dir);
    assert_int_equal(mkdir(p, 0777), 0);
    snprintf(p, sizeof p, "%s/d-broken/%s", fx->dir, RB_RESULTS_PARTIAL);
    write_text(p, "crashed before the superblock\n");
    rb_error err;
    rb_error_clear(&err);
    int rc = rb_index_build(fx->dir, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
    rb_index_row *rows;
    size_t n;
    assert_int_equal(rb_index_scan(fx->dir, &rows, &n, &err), 0);
    assert_int_equal(n, 5);
    assert_string_equal(rows[4].dir, "d-broken");
    assert_int_equal(rows[4].status, RB_INDEX_UNREADABLE);
    assert_string_equal(rb_index_status_name(rows[4].status), "unreadable");
    assert_non_null(strstr(rows[4].error, "not an HDF5 file"));
    assert_non_null(strstr(rows[4].error, p));
    free(rows);
    char *csv = csv_of(fx->dir, &rc, &err);
    assert_int_equal(rc, 0);
    char want[2048];
    snprintf(want, sizeof want, "%sd-broken,,,unreadable,,,,,,,,,,,,,,,,%s: not an HDF5 file\n", golden_csv, p);
    assert_string_equal(csv, want);
    free(csv);

    /* Two directories holding the same run: the index cannot represent it. */
    snprintf(p, sizeof p, "%s/e-copy", fx->dir);
    assert_int_equal(mkdir(p, 0777), 0);
    snprintf(p, sizeof p, "%s/a-hadamard/%s", fx->dir, RB_RESULTS_FILE);
    snprintf(q, sizeof q, "%s/e-copy/%s", fx->dir, RB_RESULTS_FILE);
    char *bytes;
    size_t len;
    assert_int_equal(rb_read_file(p, 1 << 26, &bytes, &len, &err), 0);
    FILE *f = fopen(q, "wb");
    fwrite(bytes, 1, len, f);
    fclose(f);
    free(bytes);
    rc = rb_index_build(fx->dir, &err);
    fprintf(stderr, "# duplicate -> %d: %s\n", rc, err.msg);
    assert_int_equal(rc, RB_EFORMAT);
    assert_non_null(strstr(err.msg, "run id 'run-a' appears in both a-hadamard/ and e-copy/"));
    fx_assert_no_open_h5();
    /* The previous index is still there, whole. */
    snprintf(p, sizeof p, "%s/%s", fx->dir, RB_INDEX_FILE);
    hid_t fi = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(fi >= 0);
    H5Fclose(fi);
    DIR *dd = opendir(fx->dir);
    for (struct dirent *e; (e = readdir(dd));) assert_null(strstr(e->d_name, "tmp"));
    closedir(dd);
}

static void test_index_empty_and_missing(void **state) {
    fixture *fx = *state;
    rb_error err;
    /* a directory without runs is an error, not an empty index (issue 16: it used to succeed silently) */
    assert_int_equal(rb_index_build(fx->dir, &err), RB_ENOTFOUND);
    assert_non_null(strstr(err.msg, "holds no run directories"));
    int rc;
    char *csv = csv_of(fx->dir, &rc, &err);
    assert_int_equal(rc, RB_ENOTFOUND);
    free(csv);
    char p[1024];
    snprintf(p, sizeof p, "%s/nope", fx->dir);
    assert_int_equal(rb_index_build(p, &err), RB_ENOTFOUND);
    assert_non_null(strstr(err.msg, p));
    fx_assert_no_open_h5();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_index_three_runs, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_index_unreadable_and_duplicates, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_index_empty_and_missing, rb_test_dir_setup, rb_test_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* results.h5: full write/read round trip of a synthetic run (every field, HDF5 types of strings
 * and enums checked with the HDF5 API), partial → done life cycle and resume, refusal to clobber a
 * completed run, corrupt .partial, reader validation, environment record.
 *
 * `test_results --write-example DIR` writes the example run to DIR/results.h5 and exits (used by
 * tests/cli/h5py_example.sh). */
#include "results_fixture.h"

#include <dirent.h>
#include <sys/stat.h>

#include <jansson.h>

#include "core/rb_file.h"
#include "harness/rb_env.h"
#include "core/rb_h5.h"

typedef rb_test_dir_fixture fixture;

/* A fresh run directory <fx->dir>/<sub>. */
static void run_dir(const fixture *fx, const char *sub, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s", fx->dir, sub);
    assert_int_equal(mkdir(buf, 0777), 0);
}

static void file_in(const char *dir, const char *name, char *buf, size_t cap) { snprintf(buf, cap, "%s/%s", dir, name); }

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Writes the full example run into dir (done unless status says otherwise). */
static void write_example(const char *dir, int status) {
    rb_run_meta m = fx_meta("3f2a9c1d-w4a4", "example", "hadamard", RB_WALGO_GPTQ);
    rb_env env;
    rb_error err;
    rb_error_clear(&err);
    assert_int_equal(rb_env_collect(&env, &err), 0);
    rb_results *w;
    int rc = rb_results_create(dir, &m, &env, 0, &w, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
    rb_inputs in = fx_inputs();
    assert_int_equal(rb_results_put_inputs(w, &in, &err), 0);
    rb_rotset s;
    fx_rotset(&s);
    rc = rb_results_put_rotset(w, &s, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
    rb_rotset_free(&s);
    assert_int_equal(rb_results_mark_unit(w, "calibrate", 0.125, &err), 0);
    rb_qeval_result r;
    fx_result(&r, 12.5, 10.25, 0.0625, 1);
    rc = rb_results_put_layers(w, &r, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(rb_results_put_eval(w, "wikitext2-test", RB_PPL_GPTQ, FX_T, &r, &err), 0);
    rb_qeval_result_free(&r);
    fx_result(&r, 20.0, 16.0, 0.125, 2);
    assert_int_equal(rb_results_put_eval(w, "c4", RB_PPL_LLAMACPP, FX_T, &r, &err), 0);
    rb_qeval_result_free(&r);
    rb_stage_times t = {0.125, 0.75, 1.75, 3.0};
    assert_int_equal(rb_results_put_times(w, &t, &err), 0);
    assert_int_equal(rb_results_mark_unit(w, "evaluate", 2.5, &err), 0);
    assert_int_equal(rb_results_finish(w, status, &err), 0);
    fx_assert_no_open_h5();
}

/* ---- HDF5-level checks --------------------------------------------------------------------- */

/* Attribute `name` of object `obj` in f is a scalar variable-length UTF-8 string equal to want. */
static void assert_str_attr(hid_t f, const char *obj, const char *name, const char *want) {
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    assert_int_equal(H5Tget_class(t), H5T_STRING);
    assert_true(H5Tis_variable_str(t) > 0);
    assert_int_equal(H5Tget_cset(t), H5T_CSET_UTF8);
    assert_int_equal(H5Sget_simple_extent_type(sp), H5S_SCALAR);
    char *s = NULL;
    assert_true(H5Aread(a, t, &s) >= 0);
    if (want) assert_string_equal(s, want);
    H5free_memory(s);
    H5Sclose(sp);
    H5Tclose(t);
    H5Aclose(a);
}

/* Attribute is a 1-D array of variable-length UTF-8 strings equal to want[n]. */
static void assert_str_array_attr(hid_t f, const char *obj, const char *name, const char *const *want, size_t n) {
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    assert_int_equal(H5Tget_class(t), H5T_STRING);
    assert_true(H5Tis_variable_str(t) > 0);
    assert_int_equal(H5Tget_cset(t), H5T_CSET_UTF8);
    assert_int_equal(H5Sget_simple_extent_ndims(sp), 1);
    assert_int_equal(H5Sget_simple_extent_npoints(sp), (hssize_t)n);
    char **s = calloc(n + 1, sizeof *s);
    if (n) assert_true(H5Aread(a, t, s) >= 0);
    for (size_t i = 0; i < n; i++) assert_string_equal(s[i], want[i]);
    if (n) H5Dvlen_reclaim(t, sp, H5P_DEFAULT, s);
    free(s);
    H5Sclose(sp);
    H5Tclose(t);
    H5Aclose(a);
}

static double f64_attr(hid_t f, const char *obj, const char *name) {
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    hid_t t = H5Aget_type(a);
    assert_int_equal(H5Tget_class(t), H5T_FLOAT);
    assert_int_equal(H5Tget_size(t), 8);
    double v;
    assert_true(H5Aread(a, H5T_NATIVE_DOUBLE, &v) >= 0);
    H5Tclose(t);
    H5Aclose(a);
    return v;
}

static long long int_attr(hid_t f, const char *obj, const char *name, size_t size, int is_signed) {
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    hid_t t = H5Aget_type(a);
    assert_int_equal(H5Tget_class(t), H5T_INTEGER);
    assert_int_equal(H5Tget_size(t), size);
    assert_int_equal(H5Tget_sign(t) == H5T_SGN_2, is_signed);
    long long v;
    unsigned long long u;
    if (is_signed)
        assert_true(H5Aread(a, H5T_NATIVE_LLONG, &v) >= 0);
    else {
        assert_true(H5Aread(a, H5T_NATIVE_ULLONG, &u) >= 0);
        memcpy(&v, &u, sizeof v);
    }
    H5Tclose(t);
    H5Aclose(a);
    return v;
}

/* Member `name` of compound t is an enum whose labels are exactly labels[n] with values 0..n-1. */
static void assert_enum_member(hid_t t, const char *name, const char *const *labels, int n) {
    int idx = H5Tget_member_index(t, name);
    assert_true(idx >= 0);
    hid_t et = H5Tget_member_type(t, (unsigned)idx);
    assert_int_equal(H5Tget_class(et), H5T_ENUM);
    assert_int_equal(H5Tget_nmembers(et), n);
    for (int i = 0; i < n; i++) {
        uint8_t v = (uint8_t)i;
        char buf[64];
        assert_true(H5Tenum_nameof(et, &v, buf, sizeof buf) >= 0);
        assert_string_equal(buf, labels[i]);
    }
    H5Tclose(et);
}

static void assert_member_class(hid_t t, const char *name, H5T_class_t c, size_t size) {
    int idx = H5Tget_member_index(t, name);
    if (idx < 0) fprintf(stderr, "# column %s missing\n", name);
    assert_true(idx >= 0);
    hid_t mt = H5Tget_member_type(t, (unsigned)idx);
    assert_int_equal(H5Tget_class(mt), c);
    assert_int_equal(H5Tget_size(mt), size);
    H5Tclose(mt);
}

static void assert_dataset_1d(hid_t f, const char *path, H5T_class_t c, size_t size, hsize_t n) {
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    assert_int_equal(H5Tget_class(t), c);
    if (size) assert_int_equal(H5Tget_size(t), size);
    hsize_t dims[2];
    assert_int_equal(H5Sget_simple_extent_dims(sp, dims, NULL), 1);
    assert_int_equal(dims[0], n);
    H5Sclose(sp);
    H5Tclose(t);
    H5Dclose(d);
}

static void check_h5_layout(const char *path) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    /* / */
    assert_int_equal(int_attr(f, "/", "schema_version", 4, 1), RB_RESULTS_SCHEMA_VERSION);
    assert_str_attr(f, "/", "rotbench_version", NULL);
    assert_str_attr(f, "/", "run_id", "3f2a9c1d-w4a4");
    assert_str_attr(f, "/", "name", "example");
    assert_str_attr(f, "/", "status", "done");
    assert_str_attr(f, "/", "created_utc", NULL);
    /* /config */
    assert_str_attr(f, "/config", "resolved_yaml", fx_meta("x", 0, 0, 0).resolved_yaml);
    assert_str_array_attr(f, "/config", "overrides", fx_overrides, 2);
    assert_str_array_attr(f, "/config", "argv", fx_argv, 4);
    assert_str_attr(f, "/config", "method", "hadamard");
    assert_str_attr(f, "/config", "quant", "W4A4KV4");
    assert_str_attr(f, "/config", "w_algo", "gptq");
    assert_int_equal(int_attr(f, "/config", "w_bits", 4, 1), 4);
    assert_int_equal(int_attr(f, "/config", "a_bits", 4, 1), 4);
    assert_int_equal(int_attr(f, "/config", "kv_bits", 4, 1), 4);
    assert_true((unsigned long long)int_attr(f, "/config", "seed", 8, 0) == FX_SEED);
    /* /env */
    rb_env e;
    rb_env_collect(&e, NULL);
    assert_str_attr(f, "/env", "hdf5", e.hdf5_version);
    assert_str_attr(f, "/env", "blas_core", e.blas_core);
    assert_str_attr(f, "/env", "cpu_model", e.cpu_model);
    assert_str_attr(f, "/env", "host", e.host);
    assert_str_attr(f, "/env", "libyaml", e.libyaml_version);
    assert_str_attr(f, "/env", "jansson", e.jansson_version);
    assert_str_attr(f, "/env", "pcre2", e.pcre2_version);
    assert_str_attr(f, "/env", "openblas_config", e.openblas_config);
    assert_str_attr(f, "/env", "rotbench_version", e.rotbench_version);
    assert_str_attr(f, "/env", "compiler", e.compiler);
    assert_str_attr(f, "/env", "os", e.os);
    assert_str_attr(f, "/env", "utc", NULL);
    assert_int_equal(int_attr(f, "/env", "blas_threads", 4, 1), e.blas_threads);
    assert_int_equal(int_attr(f, "/env", "cpu_count", 4, 1), e.cpu_count);
    /* /inputs */
    rb_inputs in = fx_inputs();
    const char *mf[] = {in.model_files[0].name, in.model_files[1].name};
    const char *ms[] = {FX_SHA_A, FX_SHA_B};
    const char *cn[] = {"wikitext2-test"}, *cp[] = {"/data/wiki.test.raw"}, *cs[] = {FX_SHA_B};
    assert_str_attr(f, "/inputs", "model_path", "/models/tiny");
    assert_str_array_attr(f, "/inputs", "model_files", mf, 2);
    assert_str_array_attr(f, "/inputs", "model_sha256", ms, 2);
    assert_str_array_attr(f, "/inputs", "corpus_names", cn, 1);
    assert_str_array_attr(f, "/inputs", "corpus_paths", cp, 1);
    assert_str_array_attr(f, "/inputs", "corpus_sha256", cs, 1);
    /* /rotations: rb_rotset_save's layout */
    assert_str_attr(f, "/rotations", "method", "hadamard");
    assert_true((unsigned long long)int_attr(f, "/rotations", "seed", 8, 0) == FX_SEED);
    assert_int_equal(int_attr(f, "/rotations", "r3", 4, 1), 1);
    assert_int_equal(int_attr(f, "/rotations", "r4", 4, 1), 1);
    assert_int_equal(int_attr(f, "/rotations", "emb_center", 4, 1), 0);
    assert_int_equal(int_attr(f, "/rotations", "cross_head", 4, 1), 1);
    double oe = f64_attr(f, "/rotations", "max_orth_error");
    assert_true(oe >= 0 && oe < 1e-12);
    assert_str_attr(f, "/rotations/r1", "kind", "dense");
    assert_str_attr(f, "/rotations/r2/0", "kind", "hadamard");
    hid_t d = H5Dopen2(f, "/rotations/r1/R", H5P_DEFAULT);
    assert_true(d >= 0);
    H5Dclose(d);
    assert_dataset_1d(f, "/rotations/r2/0/signs", H5T_INTEGER, 1, FX_HEAD);
    assert_int_equal(H5Lexists(f, "/rotations/r2/1", H5P_DEFAULT), 0);
    /* /layers: enums and columns */
    d = H5Dopen2(f, "/layers", H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t t = H5Dget_type(d);
    assert_int_equal(H5Tget_class(t), H5T_COMPOUND);
    static const char *const kinds[] = {"act", "linear", "layer"};
    assert_enum_member(t, "kind", kinds, 3);
    const char *names[RB_LNAME_COUNT];
    for (int i = 0; i < RB_LNAME_COUNT; i++) names[i] = rb_lrow_name(i);
    assert_string_equal(names[0], "attn_in");
    assert_string_equal(names[RB_LNAME_LINEAR(RB_LIN_DOWN)], "down_proj");
    assert_string_equal(names[RB_LNAME_BLOCK], "block");
    assert_enum_member(t, "name", names, RB_LNAME_COUNT);
    assert_member_class(t, "layer", H5T_INTEGER, 4);
    /* Every metric column of rb_qeval_write_tsv, as float64. */
    static const char *const tsv_cols[] = {
        "fp_tokens", "fp_kurt_token_mean", "fp_kurt_token_median", "fp_kurt_channel_mean", "fp_kurt_channel_max",
        "fp_kurt_all", "fp_flat_token_mean", "fp_incoherence_mean", "fp_incoherence_max", "fp_corner_mean",
        "q_kurt_token_mean", "q_kurt_token_median", "q_kurt_channel_mean", "q_kurt_channel_max", "q_kurt_all",
        "q_flat_token_mean", "q_incoherence_mean", "q_incoherence_max", "q_corner_mean", "act_mse", "w_kurt_all",
        "w_kurt_row_mean", "w_sum_w4", "w_flat_row_mean", "w_incoherence", "w_relerr", "h_err", "h_err_rtn",
        "layer_out_mse"};
    for (size_t i = 0; i < sizeof tsv_cols / sizeof *tsv_cols; i++) assert_member_class(t, tsv_cols[i], H5T_FLOAT, 8);
    /* kind, layer, name, 17 fp_, 17 q_, act_mse, 9 w_, w_relerr, h_err, h_err_rtn, layer_out_mse */
    assert_int_equal(H5Tget_nmembers(t), 3 + 17 + 17 + 1 + 9 + 4);
    assert_int_equal(H5Tget_member_index(t, "kind"), 0);
    assert_int_equal(H5Tget_member_index(t, "layer"), 1);
    assert_int_equal(H5Tget_member_index(t, "name"), 2);
    H5Tclose(t);
    assert_int_equal(int_attr(f, "/layers", "n_layers", 4, 1), FX_LAYERS);
    H5Dclose(d);
    assert_dataset_1d(f, "/layers", H5T_COMPOUND, 0, FX_LAYERS * (RB_SITE_COUNT + RB_LIN_COUNT + 1));
    /* /eval */
    assert_dataset_1d(f, "/eval/wikitext2-test/nll", H5T_FLOAT, 8, FX_WIN);
    assert_dataset_1d(f, "/eval/wikitext2-test/nll_fp", H5T_FLOAT, 8, FX_WIN);
    assert_dataset_1d(f, "/eval/wikitext2-test/kl", H5T_FLOAT, 8, FX_WIN);
    assert_dataset_1d(f, "/eval/wikitext2-test/scored", H5T_INTEGER, 8, FX_WIN);
    assert_str_attr(f, "/eval/wikitext2-test", "protocol", "gptq");
    assert_str_attr(f, "/eval/c4", "protocol", "llamacpp");
    assert_int_equal(int_attr(f, "/eval/c4", "seqlen", 4, 1), FX_T);
    assert_int_equal(int_attr(f, "/eval/c4", "windows", 4, 1), FX_WIN);
    assert_int_equal(int_attr(f, "/eval/c4", "tokens", 8, 1), FX_WIN * FX_T + 5);
    assert_int_equal(int_attr(f, "/eval/c4", "scored", 8, 1), FX_WIN * (FX_T - 1));
    assert_true(f64_attr(f, "/eval/c4", "ppl") == 20.0);
    assert_true(f64_attr(f, "/eval/c4", "ppl_fp") == 16.0);
    assert_true(f64_attr(f, "/eval/c4", "kl") == 0.125);
    /* /summary: the first corpus */
    assert_str_attr(f, "/summary", "corpus", "wikitext2-test");
    assert_true(f64_attr(f, "/summary", "ppl") == 12.5);
    assert_true(f64_attr(f, "/summary", "ppl_fp") == 10.25);
    assert_true(f64_attr(f, "/summary", "delta") == 2.25);
    assert_true(f64_attr(f, "/summary", "kl") == 0.0625);
    assert_true(f64_attr(f, "/summary", "seconds_calibrate") == 0.125);
    assert_true(f64_attr(f, "/summary", "seconds_quantize") == 0.75);
    assert_true(f64_attr(f, "/summary", "seconds_evaluate") == 1.75);
    assert_true(f64_attr(f, "/summary", "seconds_total") == 3.0);
    /* /units */
    assert_true(f64_attr(f, "/units", "calibrate") == 0.125);
    assert_true(f64_attr(f, "/units", "evaluate") == 2.5);
    H5Fclose(f);
}

/* ---- tests ---------------------------------------------------------------------------------- */

static int same_double(double a, double b) { return memcmp(&a, &b, sizeof a) == 0 || (isnan(a) && isnan(b)); }

static void test_roundtrip(void **state) {
    fixture *fx = *state;
    char dir[600], done[700], part[700];
    run_dir(fx, "run", dir, sizeof dir);
    write_example(dir, RB_RUN_DONE);
    file_in(dir, RB_RESULTS_FILE, done, sizeof done);
    file_in(dir, RB_RESULTS_PARTIAL, part, sizeof part);
    assert_true(exists(done));
    assert_false(exists(part));
    check_h5_layout(done);
    fx_assert_no_open_h5();

    /* Summary. */
    rb_run_summary s;
    rb_error err;
    rb_error_clear(&err);
    int rc = rb_results_read_summary(done, &s, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(s.schema_version, RB_RESULTS_SCHEMA_VERSION);
    assert_int_equal(s.status, RB_RUN_DONE);
    assert_string_equal(s.run_id, "3f2a9c1d-w4a4");
    assert_string_equal(s.name, "example");
    assert_string_equal(s.method, "hadamard");
    assert_string_equal(s.quant, "W4A4KV4");
    assert_string_equal(s.w_algo, "gptq");
    assert_int_equal(s.w_bits, 4);
    assert_int_equal(s.a_bits, 4);
    assert_int_equal(s.kv_bits, 4);
    assert_true(s.seed == FX_SEED);
    assert_int_equal(strlen(s.created_utc), 20);
    assert_true(s.ppl == 12.5 && s.ppl_fp == 10.25 && s.delta == 2.25 && s.kl == 0.0625);
    assert_true(s.seconds.calibrate == 0.125 && s.seconds.quantize == 0.75 && s.seconds.evaluate == 1.75 &&
                s.seconds.total == 3.0);
    assert_int_equal(s.n_corpora, 2);
    assert_string_equal(s.corpora[0].corpus, "wikitext2-test");
    assert_string_equal(s.corpora[1].corpus, "c4"); /* evaluation order, not name order */
    assert_int_equal(s.corpora[0].protocol, RB_PPL_GPTQ);
    assert_int_equal(s.corpora[1].protocol, RB_PPL_LLAMACPP);
    assert_true(s.corpora[1].ppl == 20.0 && s.corpora[1].ppl_fp == 16.0 && s.corpora[1].delta == 4.0 &&
                s.corpora[1].kl == 0.125);
    assert_int_equal(s.corpora[1].seqlen, FX_T);
    assert_int_equal(s.corpora[1].windows, FX_WIN);
    assert_int_equal(s.corpora[1].tokens, FX_WIN * FX_T + 5);
    assert_int_equal(s.n_units, 2);

    /* Layers: identical to the rows put_layers derived from the result. */
    rb_qeval_result r;
    fx_result(&r, 12.5, 10.25, 0.0625, 1);
    rb_layer_row *want, *got;
    size_t nw, ng;
    assert_int_equal(rb_results_layer_rows(&r, &want, &nw, &err), 0);
    assert_int_equal(rb_results_read_layers(done, &got, &ng, &err), 0);
    assert_int_equal(ng, nw);
    assert_int_equal(ng, FX_LAYERS * (RB_SITE_COUNT + RB_LIN_COUNT + 1));
    for (size_t i = 0; i < ng; i++) {
        assert_int_equal(got[i].kind, want[i].kind);
        assert_int_equal(got[i].layer, want[i].layer);
        assert_int_equal(got[i].name, want[i].name);
        const double *a = (const double *)&got[i].fp, *b = (const double *)&want[i].fp;
        size_t nd = (sizeof(rb_layer_row) - offsetof(rb_layer_row, fp)) / sizeof(double);
        for (size_t k = 0; k < nd; k++) assert_true(same_double(a[k], b[k]));
    }
    /* Spot checks against the sources and the TSV's applicability rules. */
    const rb_layer_row *row = &got[RB_SITE_COUNT + RB_LIN_COUNT + 1 + RB_SITE_MLP_IN]; /* layer 1, mlp_in */
    assert_int_equal(row->kind, RB_LROW_ACT);
    assert_int_equal(row->layer, 1);
    assert_string_equal(rb_lrow_name(row->name), "mlp_in");
    rb_act_stats_row ref;
    rb_act_stats_result(&r.site_fp[RB_SITE_COUNT + RB_SITE_MLP_IN], &ref);
    assert_true(row->fp.tokens == 10 && row->fp.kurt_token_mean == ref.kurt_token_mean &&
                row->fp.kurt_channel_max == ref.kurt_channel_max && row->fp.corner_mean == ref.corner_mean);
    assert_true(row->act_mse == rb_relerr_value(&r.act_mse[RB_SITE_COUNT + RB_SITE_MLP_IN]));
    assert_true(isnan(row->w.kurt_all) && isnan(row->w_relerr) && isnan(row->layer_out_mse));
    assert_true(isnan(got[RB_SITE_Q].q.kurt_all) && isnan(got[RB_SITE_Q].q.tokens)); /* empty q stream */
    assert_false(isnan(got[RB_SITE_Q].fp.kurt_all));
    assert_true(isnan(got[RB_SITE_COUNT + RB_LIN_COUNT + 1 + RB_SITE_ATTN_IN].act_mse)); /* ref 0 */
    const rb_layer_row *lin = &got[RB_SITE_COUNT + RB_LIN_UP];                          /* layer 0, up_proj */
    assert_int_equal(lin->kind, RB_LROW_LINEAR);
    assert_string_equal(rb_lrow_name(lin->name), "up_proj");
    assert_true(lin->w.sum_w4 == r.lin[RB_LIN_UP].w.sum_w4 && lin->w_relerr == r.lin[RB_LIN_UP].w_relerr &&
                lin->h_err == r.lin[RB_LIN_UP].h_err);
    assert_true(isnan(got[RB_SITE_COUNT + RB_LIN_K].h_err) && isnan(lin->fp.kurt_all) && isnan(lin->act_mse));
    const rb_layer_row *blk = &got[RB_SITE_COUNT + RB_LIN_COUNT];
    assert_int_equal(blk->kind, RB_LROW_LAYER);
    assert_string_equal(rb_lrow_name(blk->name), "block");
    assert_true(blk->layer_out_mse == rb_relerr_value(&r.layer_mse[0]) && isnan(blk->w_relerr));
    free(want);
    free(got);

    /* Eval arrays. */
    rb_eval_data ev;
    assert_int_equal(rb_results_read_eval(done, "wikitext2-test", &ev, &err), 0);
    assert_int_equal(ev.s.windows, FX_WIN);
    assert_true(ev.s.ppl == 12.5 && ev.s.ppl_fp == 10.25 && ev.s.kl == 0.0625);
    assert_true(ev.nll_sum == r.q.nll_sum && ev.nll_fp_sum == r.fp.nll_sum && ev.seconds == r.q.seconds);
    for (int i = 0; i < FX_WIN; i++) {
        assert_true(ev.nll[i] == r.q.win_nll[i]);
        assert_true(ev.nll_fp[i] == r.fp.win_nll[i]);
        assert_true(ev.kl[i] == r.win_kl[i]);
        assert_int_equal(ev.scored[i], r.q.win_scored[i]);
    }
    rb_eval_data_free(&ev);
    assert_int_equal(rb_results_read_eval(done, "nope", &ev, &err), RB_ENOTFOUND);
    assert_non_null(strstr(err.msg, "/eval/nope"));
    rb_qeval_result_free(&r);

    /* Rotation set: bitwise. */
    rb_rotset a, b;
    fx_rotset(&a);
    rc = rb_results_read_rotset(done, &b, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_string_equal(a.method, b.method);
    assert_true(a.seed == b.seed);
    assert_int_equal(b.r3, 1);
    assert_int_equal(b.r4, 1);
    assert_int_equal(b.emb_center, 0);
    assert_int_equal(b.cross_head, 1);
    assert_int_equal(b.dim, FX_DIM);
    assert_memory_equal(a.r1->R, b.r1->R, sizeof(double) * FX_DIM * FX_DIM);
    assert_int_equal(b.r2[0]->kind, RB_ROT_HADAMARD);
    assert_memory_equal(a.r2[0]->signs, b.r2[0]->signs, FX_HEAD);
    assert_null(b.r2[1]);
    rb_rotset_free(&a);
    rb_rotset_free(&b);
    fx_assert_no_open_h5();
}

static void test_partial_resume_done(void **state) {
    fixture *fx = *state;
    char dir[600], done[700], part[700];
    run_dir(fx, "life", dir, sizeof dir);
    file_in(dir, RB_RESULTS_FILE, done, sizeof done);
    file_in(dir, RB_RESULTS_PARTIAL, part, sizeof part);
    rb_run_meta m = fx_meta("life-1", "life", "identity", RB_WALGO_RTN);
    rb_results *w;
    rb_error err;
    rb_error_clear(&err);
    assert_int_equal(rb_results_create(dir, &m, NULL, 0, &w, &err), 0);
    assert_string_equal(rb_results_path(w), part);
    /* Readable mid-run, while the writer holds it open. */
    rb_run_summary s;
    int rc = rb_results_read_summary(part, &s, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(s.status, RB_RUN_PARTIAL);
    assert_int_equal(s.n_corpora, 0);
    assert_true(isnan(s.ppl) && isnan(s.seconds.total));
    assert_false(exists(done));
    char created[32];
    snprintf(created, sizeof created, "%s", s.created_utc);
    /* A second writer on the same run is refused, and the first's file stays intact. */
    rb_results *w2;
    rc = rb_results_create(dir, &m, NULL, 0, &w2, &err);
    fprintf(stderr, "# second writer -> %d: %s\n", rc, err.msg);
    assert_int_equal(rc, RB_EIO);
    assert_non_null(strstr(err.msg, "in use"));
    assert_int_equal(rb_results_read_summary(part, &s, &err), 0);

    assert_int_equal(rb_results_mark_unit(w, "calibrate", 1.0, &err), 0);
    assert_true(rb_results_unit_done(w, "calibrate"));
    assert_false(rb_results_unit_done(w, "quantize"));
    assert_int_equal(rb_results_finish(w, RB_RUN_INTERRUPTED, &err), 0);
    assert_true(exists(part));
    assert_false(exists(done));
    assert_int_equal(rb_results_read_summary(part, &s, &err), 0);
    assert_int_equal(s.status, RB_RUN_INTERRUPTED);
    assert_int_equal(s.n_units, 1);
    fx_assert_no_open_h5();

    /* Resume: wrong run id refused, right one continues. */
    assert_int_equal(rb_results_resume(dir, "other", &w, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "life-1"));
    assert_int_equal(rb_results_resume(dir, "life-1", &w, &err), 0);
    assert_true(rb_results_unit_done(w, "calibrate"));
    assert_int_equal(rb_results_read_summary(part, &s, &err), 0);
    assert_int_equal(s.status, RB_RUN_PARTIAL);
    rb_qeval_result r;
    fx_result(&r, 8.0, 7.0, 0.5, 4);
    assert_int_equal(rb_results_put_eval(w, "wikitext2-test", RB_PPL_GPTQ, FX_T, &r, &err), 0);
    /* Rewriting a unit after a resume replaces it (no duplicate objects). */
    assert_int_equal(rb_results_put_layers(w, &r, &err), 0);
    assert_int_equal(rb_results_put_layers(w, &r, &err), 0);
    rb_qeval_result_free(&r);
    assert_int_equal(rb_results_finish(w, RB_RUN_DONE, &err), 0);
    assert_false(exists(part));
    assert_true(exists(done));
    assert_int_equal(rb_results_read_summary(done, &s, &err), 0);
    assert_int_equal(s.status, RB_RUN_DONE);
    assert_true(s.ppl == 8.0 && s.delta == 1.0);
    assert_string_equal(s.created_utc, created); /* kept across resume */
    fx_assert_no_open_h5();

    /* Nothing to resume now. */
    assert_int_equal(rb_results_resume(dir, NULL, &w, &err), RB_ENOTFOUND);
    /* FAILED stays a .partial too. */
    char dir2[600];
    run_dir(fx, "fails", dir2, sizeof dir2);
    m.argc = m.n_overrides = 0; /* empty string arrays */
    m.argv = m.overrides = NULL;
    m.name = m.method = m.quant = NULL; /* stored as "" */
    m.w_bits = m.a_bits = m.kv_bits = RB_QBITS_OFF;
    assert_int_equal(rb_results_create(dir2, &m, NULL, 0, &w, &err), 0);
    assert_int_equal(rb_results_finish(w, RB_RUN_FAILED, &err), 0);
    file_in(dir2, RB_RESULTS_PARTIAL, part, sizeof part);
    assert_int_equal(rb_results_read_summary(part, &s, &err), 0);
    assert_int_equal(s.status, RB_RUN_FAILED);
    assert_string_equal(s.name, "");
    assert_string_equal(s.method, "");
    assert_int_equal(s.w_bits, RB_QBITS_OFF);
    hid_t f = H5Fopen(part, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_str_array_attr(f, "/config", "argv", NULL, 0);
    assert_str_array_attr(f, "/config", "overrides", NULL, 0);
    H5Fclose(f);
    fx_assert_no_open_h5();
}

static char *slurp(const char *path, size_t *len) {
    char *buf;
    rb_error err;
    assert_int_equal(rb_read_file(path, 1 << 26, &buf, len, &err), 0);
    return buf;
}

static void test_never_clobbers_done(void **state) {
    fixture *fx = *state;
    char dir[600], done[700];
    run_dir(fx, "complete", dir, sizeof dir);
    write_example(dir, RB_RUN_DONE);
    file_in(dir, RB_RESULTS_FILE, done, sizeof done);
    size_t n0, n1;
    char *before = slurp(done, &n0);
    rb_run_meta m = fx_meta("3f2a9c1d-w4a4", "example", "hadamard", RB_WALGO_GPTQ);
    rb_results *w;
    rb_error err;
    int rc = rb_results_create(dir, &m, NULL, 0, &w, &err);
    fprintf(stderr, "# create over done -> %d: %s\n", rc, err.msg);
    assert_int_equal(rc, RB_EINVAL);
    assert_non_null(strstr(err.msg, done));
    assert_non_null(strstr(err.msg, "already complete"));
    /* With REPLACE the old file stays untouched until the new run completes. */
    assert_int_equal(rb_results_create(dir, &m, NULL, RB_RESULTS_REPLACE, &w, &err), 0);
    assert_int_equal(rb_results_finish(w, RB_RUN_FAILED, &err), 0);
    char *after = slurp(done, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(after);
    /* Another run in a sibling directory does not touch it either. */
    char dir2[600];
    run_dir(fx, "sibling", dir2, sizeof dir2);
    write_example(dir2, RB_RUN_DONE);
    after = slurp(done, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(after);
    free(before);
    fx_assert_no_open_h5();
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void expect_error(int rc, int code, const rb_error *err, const char *path, const char *needle) {
    fprintf(stderr, "# -> %d: %s\n", rc, err->msg);
    assert_int_equal(rc, code);
    assert_non_null(strstr(err->msg, path));
    if (needle) assert_non_null(strstr(err->msg, needle));
    assert_null(strchr(err->msg, '\n'));
    fx_assert_no_open_h5();
}

static void test_corrupt_partial(void **state) {
    fixture *fx = *state;
    char dir[600], part[700];
    run_dir(fx, "corrupt", dir, sizeof dir);
    file_in(dir, RB_RESULTS_PARTIAL, part, sizeof part);
    rb_results *w;
    rb_error err;
    rb_run_summary s;
    /* Not HDF5 at all. */
    write_bytes(part, "garbage, not HDF5\n", 18);
    expect_error(rb_results_resume(dir, NULL, &w, &err), RB_EFORMAT, &err, part, "not an HDF5 file");
    assert_non_null(strstr(err.msg, "start the run afresh"));
    expect_error(rb_results_read_summary(part, &s, &err), RB_EFORMAT, &err, part, "not an HDF5 file");
    /* A real partial cut in half (a crash mid-write). */
    rb_run_meta m = fx_meta("cut-1", "cut", "identity", RB_WALGO_RTN);
    assert_int_equal(rb_results_create(dir, &m, NULL, 0, &w, &err), 0);
    rb_qeval_result r;
    fx_result(&r, 8.0, 7.0, 0.5, 4);
    assert_int_equal(rb_results_put_layers(w, &r, &err), 0);
    rb_qeval_result_free(&r);
    assert_int_equal(rb_results_finish(w, RB_RUN_INTERRUPTED, &err), 0);
    size_t n;
    char *bytes = slurp(part, &n);
    write_bytes(part, bytes, n / 2);
    free(bytes);
    expect_error(rb_results_resume(dir, NULL, &w, &err), RB_EFORMAT, &err, part, "corrupt or truncated");
    /* Summary intact, the /layers dataset's object header overwritten: every object is read before
     * HDF5 gets the file for writing, so the resume is refused instead of failing later (issue 16). */
    assert_int_equal(rb_results_create(dir, &m, NULL, 0, &w, &err), 0);
    fx_result(&r, 8.0, 7.0, 0.5, 4);
    assert_int_equal(rb_results_put_layers(w, &r, &err), 0);
    rb_qeval_result_free(&r);
    assert_int_equal(rb_results_finish(w, RB_RUN_INTERRUPTED, &err), 0);
    hid_t f = H5Fopen(part, H5F_ACC_RDONLY, H5P_DEFAULT);
    H5O_info_t oi;
    assert_true(f >= 0 && H5Oget_info_by_name2(f, "layers", &oi, H5O_INFO_BASIC, H5P_DEFAULT) >= 0);
    H5Fclose(f);
    bytes = slurp(part, &n);
    assert_true(oi.addr + 64 <= n);
    memset(bytes + oi.addr, 0xA5, 64);
    write_bytes(part, bytes, n);
    free(bytes);
    assert_int_equal(rb_results_read_summary(part, &s, &err), 0);
    expect_error(rb_results_resume(dir, NULL, &w, &err), RB_EFORMAT, &err, part, "layers");
    fprintf(stderr, "# %s\n", err.msg);
    assert_non_null(strstr(err.msg, "start the run afresh"));
    /* The caller can discard it, or overwrite it by creating afresh. */
    assert_int_equal(rb_results_create(dir, &m, NULL, 0, &w, &err), 0);
    assert_int_equal(rb_results_finish(w, RB_RUN_INTERRUPTED, &err), 0);
    assert_int_equal(rb_results_read_summary(part, &s, &err), 0);
    assert_int_equal(rb_results_discard(dir, &err), 0);
    assert_false(exists(part));
    assert_int_equal(rb_results_discard(dir, &err), 0); /* absent is fine */
    expect_error(rb_results_read_summary(part, &s, &err), RB_ENOTFOUND, &err, part, "No such file");
}

/* Rewrites attribute `name` of object obj in an existing file as int32 v or string sv. */
static void tamper(const char *path, const char *obj, const char *name, const char *sv, int v) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    assert_true(o >= 0);
    if (H5Aexists(o, name) > 0) H5Adelete(o, name);
    if (sv)
        assert_int_equal(rb_h5_put_str(o, name, sv), 0);
    else if (v != -12345)
        assert_int_equal(rb_h5_put_i32(o, name, v), 0);
    H5Oclose(o);
    H5Fclose(f);
}

static void test_reader_validation(void **state) {
    fixture *fx = *state;
    char dir[600], done[700], copy[700];
    run_dir(fx, "valid", dir, sizeof dir);
    write_example(dir, RB_RUN_DONE);
    file_in(dir, RB_RESULTS_FILE, done, sizeof done);
    file_in(dir, "copy.h5", copy, sizeof copy);
    size_t n;
    char *bytes = slurp(done, &n);
    rb_run_summary s;
    rb_error err;
    struct {
        const char *obj, *name, *sv;
        int v, code;
        const char *needle;
    } cases[] = {
        {"/", "status", NULL, 1, RB_EFORMAT, "/: attribute 'status' is integer, expected string"},
        {"/", "status", "finished", 0, RB_EFORMAT, "unknown status 'finished'"},
        {"/", "schema_version", NULL, 99, RB_EUNSUPPORTED, "schema version 99 is newer"},
        {"/", "run_id", "a/b", 0, RB_EFORMAT, "not a valid run id"},
        {"/config", "w_bits", NULL, 99, RB_EFORMAT, "/config: attribute 'w_bits' = 99 out of range"},
        {"/config", "w_algo", "awq", 0, RB_EFORMAT, "w_algo 'awq'"},
        {"/config", "seed", NULL, -12345, RB_EFORMAT, "/config: attribute 'seed' missing"},
        {"/summary", "ppl", "12.5", 0, RB_EFORMAT, "/summary: attribute 'ppl' is string, expected float"},
        {"/eval/c4", "protocol", "lm-eval", 0, RB_EFORMAT, "/eval/c4: unknown protocol 'lm-eval'"},
        {"/eval/c4", "windows", NULL, 0, RB_EFORMAT, "/eval/c4: attribute 'windows' = 0 out of range"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_bytes(copy, bytes, n);
        tamper(copy, cases[i].obj, cases[i].name, cases[i].sv, cases[i].v);
        expect_error(rb_results_read_summary(copy, &s, &err), cases[i].code, &err, copy, cases[i].needle);
    }
    /* A wrong-shaped eval dataset and a /layers table missing a column. */
    write_bytes(copy, bytes, n);
    hid_t f = H5Fopen(copy, H5F_ACC_RDWR, H5P_DEFAULT);
    double two[2] = {1, 2};
    hsize_t d2[1] = {2};
    assert_int_equal(rb_h5_put_dataset(f, "eval/c4/nll", 1, d2, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, two), 0);
    hid_t t = H5Tcreate(H5T_COMPOUND, 8);
    H5Tinsert(t, "kind", 0, H5T_NATIVE_INT32);
    assert_int_equal(rb_h5_put_dataset(f, "layers", 1, d2, t, t, two), 0);
    H5Tclose(t);
    H5Fclose(f);
    rb_eval_data ev;
    expect_error(rb_results_read_eval(copy, "c4", &ev, &err), RB_EFORMAT, &err, copy,
                 "/eval/c4/nll: has 2 elements, expected 3");
    rb_layer_row *rows;
    size_t nr;
    expect_error(rb_results_read_layers(copy, &rows, &nr, &err), RB_EFORMAT, &err, copy,
                 "/layers: column 'kind' is integer, expected enum");
    free(bytes);

    /* Writer-side validation. */
    rb_results *w;
    rb_run_meta m = fx_meta("bad/id", "x", "identity", RB_WALGO_RTN);
    char dir2[600];
    run_dir(fx, "invalid", dir2, sizeof dir2);
    assert_int_equal(rb_results_create(dir2, &m, NULL, 0, &w, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "run id 'bad/id'"));
    m = fx_meta("ok", "x", "identity", RB_WALGO_RTN);
    m.a_bits = 1;
    assert_int_equal(rb_results_create(dir2, &m, NULL, 0, &w, &err), RB_EINVAL);
    m.a_bits = 16;
    char missing[700];
    file_in(dir2, "nope", missing, sizeof missing);
    assert_int_equal(rb_results_create(missing, &m, NULL, 0, &w, &err), RB_ENOTFOUND);
    assert_int_equal(rb_results_create(dir2, &m, NULL, 0, &w, &err), 0);
    rb_input_file bad = {"model.safetensors", NULL, "ABC"};
    rb_inputs in = {"/m", &bad, 1, NULL, 0};
    assert_int_equal(rb_results_put_inputs(w, &in, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "model.safetensors"));
    rb_qeval_result r;
    fx_result(&r, 8.0, 7.0, 0.5, 4);
    assert_int_equal(rb_results_put_eval(w, "../x", RB_PPL_GPTQ, FX_T, &r, &err), RB_EINVAL);
    assert_int_equal(rb_results_put_eval(w, "wiki", 7, FX_T, &r, &err), RB_EINVAL);
    rb_qeval_result_free(&r);
    rb_rotset rs;
    fx_rotset(&rs);
    rs.r1->R[1] += 1e-3; /* no longer orthogonal: refused like rb_rotset_save */
    assert_int_equal(rb_results_put_rotset(w, &rs, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "not orthogonal"));
    rb_rotset_free(&rs);
    assert_int_equal(rb_results_mark_unit(w, "a/b", 1, &err), RB_EINVAL);
    assert_int_equal(rb_results_finish(w, 42, &err), RB_EINVAL);
    fx_assert_no_open_h5();
    /* No temporary files left behind in the run directory. */
    DIR *dd = opendir(dir2);
    int entries = 0;
    for (struct dirent *e; (e = readdir(dd));) entries += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(dd);
    assert_int_equal(entries, 1); /* results.h5.partial only */
}

static void test_without_fp_reference(void **state) {
    fixture *fx = *state;
    char dir[600], done[700];
    run_dir(fx, "nofp", dir, sizeof dir);
    rb_run_meta m = fx_meta("nofp", "nofp", "identity", RB_WALGO_RTN);
    rb_results *w;
    rb_error err;
    assert_int_equal(rb_results_create(dir, &m, NULL, 0, &w, &err), 0);
    /* A plain FP perplexity: only q is filled, no stats. */
    rb_qeval_result r;
    fx_result(&r, 6.0, 0, 0, 5);
    rb_ppl_result_free(&r.fp);
    free(r.win_kl);
    r.win_kl = NULL;
    r.kl_mean = NAN;
    for (int i = 0; i < FX_LAYERS * RB_SITE_COUNT; i++) {
        rb_act_stats_free(&r.site_fp[i]);
        rb_act_stats_free(&r.site_q[i]);
    }
    free(r.site_fp);
    free(r.site_q);
    free(r.lin);
    free(r.act_mse);
    r.site_fp = r.site_q = NULL;
    r.lin = NULL;
    r.act_mse = NULL;
    assert_int_equal(rb_results_put_eval(w, "wiki", RB_PPL_GPTQ, FX_T, &r, &err), 0);
    assert_int_equal(rb_results_put_layers(w, &r, &err), 0);
    assert_int_equal(rb_results_finish(w, RB_RUN_DONE, &err), 0);
    file_in(dir, RB_RESULTS_FILE, done, sizeof done);
    rb_run_summary s;
    assert_int_equal(rb_results_read_summary(done, &s, &err), 0);
    assert_true(s.ppl == 6.0 && isnan(s.ppl_fp) && isnan(s.delta) && isnan(s.kl));
    rb_eval_data ev;
    assert_int_equal(rb_results_read_eval(done, "wiki", &ev, &err), 0);
    for (int i = 0; i < FX_WIN; i++) assert_true(isnan(ev.nll_fp[i]) && isnan(ev.kl[i]));
    rb_eval_data_free(&ev);
    rb_layer_row *rows;
    size_t n;
    assert_int_equal(rb_results_read_layers(done, &rows, &n, &err), 0);
    assert_int_equal(n, FX_LAYERS); /* block rows only */
    assert_int_equal(rows[1].kind, RB_LROW_LAYER);
    assert_false(isnan(rows[1].layer_out_mse));
    free(rows);
    rb_rotset rs;
    assert_int_equal(rb_results_read_rotset(done, &rs, &err), RB_ENOTFOUND);
    rb_qeval_result_free(&r);
    fx_assert_no_open_h5();
}

static void test_env(void **state) {
    (void)state;
    rb_env e;
    memset(&e, 0x5a, sizeof e);
    assert_int_equal(rb_env_collect(&e, NULL), 0);
    fprintf(stderr, "# env: %s | hdf5 %s | %s (%d threads) | yaml %s | jansson %s | pcre2 %s | %s | %d cpus | %s | %s\n",
            e.rotbench_version, e.hdf5_version, e.blas_core, e.blas_threads, e.libyaml_version, e.jansson_version,
            e.pcre2_version, e.cpu_model, e.cpu_count, e.os, e.utc);
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    char v[32];
    snprintf(v, sizeof v, "%u.%u.%u", maj, min, rel);
    assert_string_equal(e.hdf5_version, v);
    assert_string_equal(e.jansson_version, JANSSON_VERSION);
    assert_true(strlen(e.libyaml_version) > 0 && strlen(e.pcre2_version) > 0 && strlen(e.blas_core) > 0);
    assert_non_null(strstr(e.openblas_config, "OpenBLAS"));
    assert_true(e.blas_threads >= 1 && e.cpu_count >= 1);
    assert_true(strlen(e.cpu_model) > 0 && strlen(e.host) > 0 && strlen(e.os) > 0);
    assert_int_equal(strlen(e.utc), 20);
    assert_int_equal(e.utc[10], 'T');
    assert_int_equal(e.utc[19], 'Z');
    char buf[32];
    assert_string_equal(rb_env_format_utc(0, buf, sizeof buf), "1970-01-01T00:00:00Z");
    assert_string_equal(rb_env_format_utc(1700000000, buf, sizeof buf), "2023-11-14T22:13:20Z");
    char m[64];
    assert_int_equal(rb_env_cpu_model_from_cpuinfo("processor\t: 0\nvendor_id\t: X\nmodel name\t: Fancy CPU @ 3GHz  \n", m,
                                                   sizeof m),
                     0);
    assert_string_equal(m, "Fancy CPU @ 3GHz");
    assert_int_equal(rb_env_cpu_model_from_cpuinfo("processor : 0\nBogoMIPS : 50\nModel : Raspberry Pi 4\n", m, sizeof m),
                     0);
    assert_string_equal(m, "Raspberry Pi 4");
    assert_int_equal(rb_env_cpu_model_from_cpuinfo("processor : 0\nmodel : 85\n", m, sizeof m), -1);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-example")) {
        /* cmocka asserts outside a test abort the process on failure: fine for a generator. */
        write_example(argv[2], RB_RUN_DONE);
        printf("%s/%s\n", argv[2], RB_RESULTS_FILE);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_partial_resume_done, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_never_clobbers_done, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_partial, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_reader_validation, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_without_fp_reference, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test(test_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Rotation sets: construction, orthogonality checks and the HDF5 round trip (refusal of bad files:
 * test_rotset_bad.c). */
#include "rotset_fixture.h"

/* ---- construction ------------------------------------------------------------------------ */

static void test_rot_dense(void **state) {
    (void)state;
    const int n = 32;
    rb_rng rng;
    rb_error err;
    rb_rng_seed(&rng, 12, "dense");
    double *Q = malloc(sizeof(double) * n * n), *Q0 = malloc(sizeof(double) * n * n);
    assert_int_equal(rb_orth_random(&rng, n, Q, &err), 0);
    memcpy(Q0, Q, sizeof(double) * n * n);
    rb_rot *r = NULL;
    assert_int_equal(rb_rot_from_dense(Q, n, &r, &err), 0);
    assert_int_equal(r->n, n);
    assert_int_equal(r->kind, RB_ROT_DENSE);
    assert_null(r->signs);
    assert_true(r->orth_err < BUILT_ORTH_TOL);
    Q[0] = 7; /* a copy: the source may change afterwards */
    assert_memory_equal(r->R, Q0, sizeof(double) * n * n);
    rb_rot_free(r);

    /* slightly off: refused, with the measured error in the message */
    memcpy(Q, Q0, sizeof(double) * n * n);
    Q[5] += PERTURB;
    double mx;
    assert_int_equal(rb_orth_error(Q, n, &mx, NULL, &err), 0);
    char expect[64];
    snprintf(expect, sizeof expect, "%.3g", mx);
    rb_rot dummy;
    r = &dummy; /* must be reset to NULL on failure */
    rb_error_clear(&err);
    assert_int_equal(rb_rot_from_dense(Q, n, &r, &err), RB_EINVAL);
    assert_null(r);
    assert_int_equal(err.code, RB_EINVAL);
    assert_non_null(strstr(err.msg, "not orthogonal"));
    assert_non_null(strstr(err.msg, expect));
    /* 2·I: error 3 */
    memset(Q, 0, sizeof(double) * n * n);
    for (int i = 0; i < n; i++) Q[i * n + i] = 2;
    assert_int_equal(rb_rot_from_dense(Q, n, &r, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "= 3 "));
    /* a NaN entry: rb_orth_error's max alone would not see it */
    memcpy(Q, Q0, sizeof(double) * n * n);
    Q[3 * n + 4] = NAN;
    assert_int_equal(rb_rot_from_dense(Q, n, &r, &err), RB_EINVAL);
    assert_null(r);
    assert_non_null(strstr(err.msg, "nan"));
    Q[3 * n + 4] = INFINITY;
    assert_int_equal(rb_rot_from_dense(Q, n, &r, &err), RB_EINVAL);
    assert_int_equal(rb_rot_from_dense(Q0, 0, &r, &err), RB_EINVAL);
    assert_null(r);
    rb_rot_free(NULL);
    free(Q);
    free(Q0);
}

static void test_rot_hadamard(void **state) {
    (void)state;
    rb_rng rng;
    rb_error err;
    rb_rng_seed(&rng, 13, "had");
    /* powers of two and orders built by Paley constructions (no table needed) */
    const int orders[] = {1, 2, 16, 12, 20, 40, 64};
    for (size_t t = 0; t < sizeof orders / sizeof *orders; t++) {
        int n = orders[t];
        int8_t *s = malloc((size_t)n);
        for (int i = 0; i < n; i++) s[i] = rb_rng_below(&rng, 2) ? 1 : -1;
        rb_rot *r = NULL, *r1 = NULL;
        assert_int_equal(rb_rot_from_hadamard(n, s, &r, &err), 0);
        assert_int_equal(r->kind, RB_ROT_HADAMARD);
        assert_int_equal(r->n, n);
        assert_memory_equal(r->signs, s, (size_t)n);
        assert_true(r->orth_err < BUILT_ORTH_TOL);
        rb_had h;
        double *R = malloc(sizeof(double) * n * n);
        assert_int_equal(rb_had_init(&h, n, s, &err), 0);
        rb_had_dense(&h, R);
        rb_had_free(&h);
        assert_memory_equal(r->R, R, sizeof(double) * n * n);
        /* no signs: an explicit all +1 recipe, the same matrix as rb_had with NULL signs */
        assert_int_equal(rb_rot_from_hadamard(n, NULL, &r1, &err), 0);
        for (int i = 0; i < n; i++) assert_int_equal(r1->signs[i], 1);
        assert_int_equal(rb_had_init(&h, n, NULL, &err), 0);
        rb_had_dense(&h, R);
        rb_had_free(&h);
        assert_memory_equal(r1->R, R, sizeof(double) * n * n);
        rb_rot_free(r);
        rb_rot_free(r1);
        free(R);
        free(s);
    }
    int8_t bad[16];
    memset(bad, 1, sizeof bad);
    bad[9] = 0;
    rb_rot *r = NULL;
    assert_int_equal(rb_rot_from_hadamard(16, bad, &r, &err), RB_EINVAL);
    assert_null(r);
    assert_true(rb_rot_from_hadamard(6, NULL, &r, &err) < 0); /* no Hadamard matrix of order 6 */
    assert_null(r);
    assert_int_equal(rb_rot_from_hadamard(0, NULL, &r, &err), RB_EINVAL);
}

static void test_set_init_free(void **state) {
    (void)state;
    rb_rotset s;
    rb_error err;
    assert_int_equal(rb_rotset_init(&s, "identity", DIM, HEAD, HIDDEN, LAYERS, &err), 0);
    assert_string_equal(s.method, "identity");
    assert_non_null(s.r2);
    for (int l = 0; l < LAYERS; l++) assert_null(s.r2[l]);
    assert_null(s.r1);
    assert_true(s.r3 == 0 && s.r4 == 0 && s.emb_center == 0 && s.seed == 0);
    assert_true(rb_rotset_orth_err(&s) == 0);
    rb_rotset_free(&s);
    assert_zeroed(&s);
    rb_rotset_free(&s); /* idempotent on a zeroed set */
    assert_int_equal(rb_rotset_init(&s, "x", DIM, HEAD, HIDDEN, 0, &err), 0);
    assert_null(s.r2);
    rb_rotset_free(&s);
    assert_int_equal(rb_rotset_init(&s, "a-method-name-well-over-31-bytes-long", DIM, HEAD, HIDDEN, 1, &err),
                     RB_EINVAL);
    assert_zeroed(&s);
    assert_int_equal(rb_rotset_init(&s, "x", 0, HEAD, HIDDEN, 1, &err), RB_EINVAL);
    assert_int_equal(rb_rotset_init(&s, "x", DIM, HEAD, HIDDEN, -1, &err), RB_EINVAL);

    make_set(&s);
    double worst = fmax(s.r1->orth_err, fmax(s.r2[0]->orth_err, s.r2[2]->orth_err));
    assert_true(rb_rotset_orth_err(&s) == worst);
    s.r1->R[7] += PERTURB; /* edited in place after construction: measured afresh */
    assert_true(rb_rotset_orth_err(&s) > RB_ROT_ORTH_TOL);
    s.r1->R[7] = NAN;
    assert_true(isnan(rb_rotset_orth_err(&s)));
    rb_rotset_free(&s);
}

/* ---- save / load round trip -------------------------------------------------------------- */

/* Type of attribute `name` on `obj` of file f has class c and size (0: variable-length string). */
static void assert_attr_type(hid_t f, const char *obj, const char *name, H5T_class_t c, size_t size) {
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    hid_t t = H5Aget_type(a);
    assert_int_equal(H5Tget_class(t), c);
    if (c == H5T_STRING) {
        assert_true(H5Tis_variable_str(t) > 0);
        assert_int_equal(H5Tget_cset(t), H5T_CSET_UTF8);
    } else {
        assert_int_equal(H5Tget_size(t), size);
    }
    H5Tclose(t);
    H5Aclose(a);
}

static void test_roundtrip(void **state) {
    fixture *fx = *state;
    rb_rotset a, b;
    rb_error err;
    make_set(&a);
    assert_int_equal(rb_rotset_load(fx->good, &b, &err), 0);
    assert_no_open_h5();
    assert_set_equal(&a, &b);
    assert_true(b.seed == SEED);
    assert_true(rb_rotset_orth_err(&b) == rb_rotset_orth_err(&a));

    /* the on-disk layout: types as documented, identity layers absent */
    hid_t f = H5Fopen(fx->good, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_attr_type(f, "/", "method", H5T_STRING, 0);
    assert_attr_type(f, "/", "rotbench_version", H5T_STRING, 0);
    assert_attr_type(f, "/", "seed", H5T_INTEGER, 8);
    assert_attr_type(f, "/", "dim", H5T_INTEGER, 4);
    assert_attr_type(f, "/", "emb_center", H5T_INTEGER, 4);
    assert_attr_type(f, "/", "max_orth_error", H5T_FLOAT, 8);
    assert_attr_type(f, "/r1", "kind", H5T_STRING, 0);
    assert_attr_type(f, "/r2/0", "orth_error", H5T_FLOAT, 8);
    hid_t at = H5Aopen(f, "seed", H5P_DEFAULT), tt = H5Aget_type(at);
    assert_int_equal(H5Tget_sign(tt), H5T_SGN_NONE);
    H5Tclose(tt);
    H5Aclose(at);
    char *ver = NULL;
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    at = H5Aopen(f, "rotbench_version", H5P_DEFAULT);
    assert_true(H5Aread(at, st, &ver) >= 0);
    assert_string_equal(ver, RB_VERSION);
    H5free_memory(ver);
    H5Aclose(at);
    H5Tclose(st);
    assert_true(H5Lexists(f, "/r1/R", H5P_DEFAULT) > 0);
    assert_true(H5Lexists(f, "/r1/signs", H5P_DEFAULT) == 0);
    assert_true(H5Lexists(f, "/r2/0/signs", H5P_DEFAULT) > 0);
    assert_true(H5Lexists(f, "/r2/1", H5P_DEFAULT) == 0);
    assert_true(H5Lexists(f, "/r2/2/signs", H5P_DEFAULT) > 0);
    assert_true(H5Lexists(f, "/r2/3", H5P_DEFAULT) == 0);
    H5Fclose(f);
    assert_no_open_h5();

    /* overwrite in place, and no temp file left behind */
    int before = count_entries(fx->dir);
    assert_int_equal(rb_rotset_save(&b, fx->good, &err), 0);
    assert_int_equal(count_entries(fx->dir), before);
    rb_rotset_free(&b);
    assert_int_equal(rb_rotset_load(fx->good, &b, &err), 0);
    assert_set_equal(&a, &b);
    rb_rotset_free(&a);
    rb_rotset_free(&b);

    /* all identity (no /r1, no /r2), r2 array absent, flags off, non-power-of-two orders */
    char p[1024];
    path_in(fx, "identity.h5", p, sizeof p);
    assert_int_equal(rb_rotset_init(&a, "", 40, 12, 100, 3, &err), 0);
    free(a.r2);
    a.r2 = NULL;
    assert_int_equal(rb_rotset_save(&a, p, &err), 0);
    assert_int_equal(rb_rotset_load(p, &b, &err), 0);
    assert_set_equal(&a, &b);
    assert_true(b.seed == 0 && b.r3 == 0 && b.emb_center == 0);
    rb_rotset_free(&b);
    /* Hadamard R1 of order 40 (20·2, Paley) and R2 of order 12 */
    assert_int_equal(rb_rot_from_hadamard(40, NULL, &a.r1, &err), 0);
    a.r2 = calloc(3, sizeof *a.r2);
    assert_int_equal(rb_rot_from_hadamard(12, NULL, &a.r2[1], &err), 0);
    a.r4 = 1;
    assert_int_equal(rb_rotset_save(&a, p, &err), 0);
    assert_int_equal(rb_rotset_load(p, &b, &err), 0);
    assert_set_equal(&a, &b);
    rb_rotset_free(&a);
    rb_rotset_free(&b);
    assert_no_open_h5();
}

/* The same layout inside a group of a larger file (the results file's /rotations); an older
 * file without cross_head reads as off. */
static void test_roundtrip_in_group(void **state) {
    fixture *fx = *state;
    char p[1024];
    path_in(fx, "results.h5", p, sizeof p);
    rb_rotset a, b;
    rb_error err;
    make_set(&a);
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "rotations", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0 && g >= 0);
    assert_int_equal(rb_rotset_write_loc((int64_t)g, &a, "results.h5:/rotations", &err), 0);
    H5Gclose(g);
    H5Fclose(f);
    assert_no_open_h5();
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    g = H5Gopen2(f, "rotations", H5P_DEFAULT);
    assert_int_equal(rb_rotset_read_loc((int64_t)g, "results.h5:/rotations", &b, &err), 0);
    assert_set_equal(&a, &b);
    rb_rotset_free(&b);
    /* a bad member names the location given */
    assert_true(H5Adelete_by_name(g, "r1", "n", H5P_DEFAULT) >= 0);
    assert_int_equal(rb_rotset_read_loc((int64_t)g, "results.h5:/rotations", &b, &err), RB_EFORMAT);
    assert_non_null(strstr(err.msg, "results.h5:/rotations: /r1: attribute 'n' missing"));
    assert_zeroed(&b);
    H5Gclose(g);
    H5Fclose(f);
    assert_no_open_h5();
    rb_rotset_free(&a);

    copy_file(fx->good, p, -1);
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(H5Adelete(f, "cross_head") >= 0);
    H5Fclose(f);
    assert_int_equal(rb_rotset_load(p, &b, &err), 0);
    assert_int_equal(b.cross_head, 0);
    rb_rotset_free(&b);
}

/* Order 172 needs the shared table had172.txt: round trip through $RB_HADAMARD_DIR, and a load
 * without the table reports the missing table as RB_ENOTFOUND. */
static void test_roundtrip_table(void **state) {
    fixture *fx = *state;
    RB_REQUIRE_DATA(tables, "hadamard/had172.txt");
    *strrchr(tables, '/') = '\0';
    const char *old = getenv("RB_HADAMARD_DIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("RB_HADAMARD_DIR", tables, 1);
    rb_rotset a, b;
    rb_error err;
    rb_rng rng;
    rb_rng_seed(&rng, 14, "172");
    int8_t s[172];
    for (int i = 0; i < 172; i++) s[i] = rb_rng_below(&rng, 2) ? 1 : -1;
    assert_int_equal(rb_rotset_init(&a, "quarot", 172, 16, 344, 1, &err), 0);
    assert_int_equal(rb_rot_from_hadamard(172, s, &a.r1, &err), 0);
    char p[1024];
    path_in(fx, "t172.h5", p, sizeof p);
    assert_int_equal(rb_rotset_save(&a, p, &err), 0);
    assert_int_equal(rb_rotset_load(p, &b, &err), 0);
    assert_set_equal(&a, &b);
    rb_rotset_free(&b);
    char empty[600], buf[1024];
    path_in(fx, "no-tables", empty, sizeof empty);
    assert_int_equal(mkdir(empty, 0755), 0);
    setenv("RB_HADAMARD_DIR", empty, 1);
    if (rb_hadamard_find_table(172, NULL, buf, sizeof buf))
        fprintf(stderr, "# had172.txt also at %s: missing-table case not tested\n", buf);
    else
        expect_load_error(p, RB_ENOTFOUND, "/r1/signs");
    rmdir(empty);
    if (saved)
        setenv("RB_HADAMARD_DIR", saved, 1);
    else
        unsetenv("RB_HADAMARD_DIR");
    free(saved);
    rb_rotset_free(&a);
}

static void test_save_refuses(void **state) {
    fixture *fx = *state;
    rb_rotset a;
    rb_error err;
    char p[1024];
    path_in(fx, "refused.h5", p, sizeof p);
    make_set(&a);
    /* an R2 whose order is not head_dim */
    rb_rot *keep = a.r2[2];
    assert_int_equal(rb_rot_from_hadamard(8, NULL, &a.r2[2], &err), 0);
    assert_int_equal(rb_rotset_save(&a, p, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, p));
    assert_non_null(strstr(err.msg, "/r2/2: order 8 does not match head_dim 16"));
    assert_false(rb_path_exists(p));
    rb_rot_free(a.r2[2]);
    a.r2[2] = keep;
    /* R1 edited into a non-rotation after construction */
    double v = a.r1->R[3];
    a.r1->R[3] += PERTURB;
    assert_int_equal(rb_rotset_save(&a, p, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "/r1: not orthogonal"));
    assert_false(rb_path_exists(p));
    a.r1->R[3] = v;
    /* OS errors carry errno's text */
    path_in(fx, "no-such-dir/x.h5", p, sizeof p);
    assert_int_equal(rb_rotset_save(&a, p, &err), RB_EIO);
    assert_non_null(strstr(err.msg, p));
    assert_non_null(strstr(err.msg, "No such file or directory"));
    assert_no_open_h5();
    rb_rotset_free(&a);
}

/* ---- RUQuant site transforms ---------------------------------------------------------------- */

/* Round trip with RUQuant sites; files without /ruquant (all older ones) load with none. */
static void test_roundtrip_ruq(void **state) {
    fixture *fx = *state;
    rb_rotset a, b;
    rb_error err;
    make_ruq_set(&a);
    assert_int_equal(rb_rotset_load(fx->good_ruq, &b, &err), 0);
    assert_no_open_h5();
    assert_set_equal(&a, &b);
    assert_true(rb_rotset_orth_err(&b) == rb_rotset_orth_err(&a));
    assert_true(rb_rotset_orth_err(&a) >= a.ruq[1][RB_RUQ_OUT]->orth_err);
    rb_rotset_free(&b);
    rb_rotset_free(&a);
    hid_t f = H5Fopen(fx->good_ruq, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_true(H5Lexists(f, "/ruquant/1/o_in/perm", H5P_DEFAULT) > 0);
    assert_true(H5Lexists(f, "/ruquant/0/attn_in/householder", H5P_DEFAULT) > 0);
    assert_true(H5Lexists(f, "/ruquant/2", H5P_DEFAULT) == 0);
    assert_true(H5Lexists(f, "/ruquant/3/attn_in", H5P_DEFAULT) == 0);
    assert_attr_type(f, "/ruquant/3/down_in", "block", H5T_INTEGER, 4);
    assert_attr_type(f, "/ruquant/3/down_in", "orth_error", H5T_FLOAT, 8);
    H5Fclose(f);
    assert_int_equal(rb_rotset_load(fx->good, &b, &err), 0);
    assert_null(b.ruq);
    rb_rotset_free(&b);
    assert_no_open_h5();
}

static void test_save_refuses_ruq(void **state) {
    fixture *fx = *state;
    rb_rotset a;
    rb_error err;
    rb_rng rng;
    rb_rng_seed(&rng, 13, "ruq-refuse");
    char p[1024];
    path_in(fx, "refused_ruq.h5", p, sizeof p);
    make_ruq_set(&a);
    a.ruq[2][RB_RUQ_FC1] = make_site(&rng, DIM / 2, 8, 1);
    assert_int_equal(rb_rotset_save(&a, p, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "/ruquant/2/mlp_in: width 32 does not match dim 64"));
    rb_ruq_site_free(a.ruq[2][RB_RUQ_FC1]);
    a.ruq[2][RB_RUQ_FC1] = NULL;
    a.ruq[2][RB_RUQ_OUT] = make_site(&rng, 40, 8, 1);
    assert_int_equal(rb_rotset_save(&a, p, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "/ruquant/2/o_in: width 40 is not a multiple of head_dim 16"));
    rb_ruq_site_free(a.ruq[2][RB_RUQ_OUT]);
    a.ruq[2][RB_RUQ_OUT] = NULL;
    a.ruq[1][RB_RUQ_OUT]->perm[3] = a.ruq[1][RB_RUQ_OUT]->perm[2];
    assert_int_equal(rb_rotset_save(&a, p, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "/ruquant/1/o_in: perm: entry 3"));
    assert_false(rb_path_exists(p));
    rb_rotset_free(&a);
    assert_no_open_h5();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rot_dense),
        cmocka_unit_test(test_rot_hadamard),
        cmocka_unit_test(test_set_init_free),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_roundtrip_in_group),
        cmocka_unit_test(test_roundtrip_table),
        cmocka_unit_test(test_save_refuses),
        cmocka_unit_test(test_roundtrip_ruq),
        cmocka_unit_test(test_save_refuses_ruq),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

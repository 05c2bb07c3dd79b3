/* Rotation sets: construction, orthogonality checks, HDF5 round trip, and refusal of bad files
 * (each with a one-line message naming the file and the object, nothing leaked). */
#include "rb_test.h"

#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <unistd.h>

#include "core/rb_file.h"
#include "core/rb_rng.h"
#include "rotate/rb_orth.h"
#include "rotate/rb_rotset.h"

/* Orthogonality of LAPACK / Hadamard matrices built in double at n ≤ 172: a few hundred ulps. */
#define BUILT_ORTH_TOL 1e-13
/* A perturbation well above RB_ROT_ORTH_TOL, so refusal does not hinge on rounding. */
#define PERTURB 1e-6

enum { DIM = 64, HEAD = 16, HIDDEN = 128, LAYERS = 4 };
/* Above 2^63: the seed must travel as uint64, not int64. */
#define SEED 0xF00DCAFEDEADBEEFull

typedef struct fixture {
    char dir[512];
    char good[600]; /* a valid file written by rb_rotset_save */
    char good_ruq[600]; /* the same set with RUQuant site transforms (make_ruq_set) */
} fixture;

static void path_in(const fixture *fx, const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s", fx->dir, name);
}

/* No HDF5 object (file, group, dataset, attribute, type, space) may stay open after save/load. */
static void assert_no_open_h5(void) { assert_int_equal(H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL), 0); }

static void assert_zeroed(const rb_rotset *s) {
    rb_rotset z;
    memset(&z, 0, sizeof z);
    assert_memory_equal(s, &z, sizeof z);
}

/* R1 dense random orthogonal; R2: layer 0 Hadamard with random signs, layer 2 Hadamard all +1,
 * layers 1 and 3 identity. */
static void make_set(rb_rotset *s) {
    rb_error err;
    rb_rng rng;
    rb_rng_seed(&rng, 11, "rotset");
    assert_int_equal(rb_rotset_init(s, "unit-test", DIM, HEAD, HIDDEN, LAYERS, &err), 0);
    double *Q = malloc(sizeof(double) * DIM * DIM);
    assert_int_equal(rb_orth_random(&rng, DIM, Q, &err), 0);
    assert_int_equal(rb_rot_from_dense(Q, DIM, &s->r1, &err), 0);
    free(Q);
    int8_t signs[HEAD];
    for (int i = 0; i < HEAD; i++) signs[i] = rb_rng_below(&rng, 2) ? 1 : -1;
    assert_int_equal(rb_rot_from_hadamard(HEAD, signs, &s->r2[0], &err), 0);
    assert_int_equal(rb_rot_from_hadamard(HEAD, NULL, &s->r2[2], &err), 0);
    s->seed = SEED;
    s->r3 = 1;
    s->r4 = 0;
    s->emb_center = 1;
    s->cross_head = 1;
}

/* A valid RUQuant site of width n, block B: random orthogonal blocks, shuffled permutation, scales
 * in [0.1, 1.1), a random unit Householder vector (hh) or zero. */
static rb_ruq_site *make_site(rb_rng *rng, int n, int B, int hh) {
    rb_ruq_site *q;
    rb_error err;
    assert_int_equal(rb_ruq_site_alloc(n, B, &q, &err), 0);
    assert_int_equal(rb_orth_random(rng, B, q->blk0, &err), 0);
    assert_int_equal(rb_orth_random(rng, B, q->blk1, &err), 0);
    int *p = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) p[i] = i;
    rb_rng_shuffle(rng, p, (size_t)n);
    double nv = 0;
    for (int i = 0; i < n; i++) {
        q->perm[i] = p[i];
        q->scale[i] = 0.1 + rb_rng_uniform(rng);
        q->hh[i] = hh ? rb_rng_uniform(rng) - 0.5 : 0;
        nv += q->hh[i] * q->hh[i];
    }
    for (int i = 0; hh && i < n; i++) q->hh[i] /= sqrt(nv);
    free(p);
    assert_int_equal(rb_ruq_site_check(q, &err), 0);
    return q;
}

/* make_set plus RUQuant sites: layer 0 attn_in (block 64, identity Householder), layer 1 o_in
 * (block 16), layer 3 down_in (block 32). */
static void make_ruq_set(rb_rotset *s) {
    rb_error err;
    rb_rng rng;
    rb_rng_seed(&rng, 12, "ruq");
    make_set(s);
    assert_int_equal(rb_rotset_ruq_alloc(s, &err), 0);
    s->ruq[0][RB_RUQ_QKV] = make_site(&rng, DIM, 64, 0);
    s->ruq[1][RB_RUQ_OUT] = make_site(&rng, DIM, 16, 1);
    s->ruq[3][RB_RUQ_DOWN] = make_site(&rng, HIDDEN, 32, 1);
}

static void assert_ruq_equal(const rb_ruq_site *a, const rb_ruq_site *b) {
    if (!a || !b) {
        assert_true(!a && !b);
        return;
    }
    assert_true(a->n == b->n && a->block == b->block && a->orth_err == b->orth_err);
    size_t n = (size_t)a->n, bb = (size_t)a->block * a->block;
    assert_memory_equal(a->scale, b->scale, n * sizeof(double)); /* bitwise */
    assert_memory_equal(a->blk0, b->blk0, bb * sizeof(double));
    assert_memory_equal(a->perm, b->perm, n * sizeof(int32_t));
    assert_memory_equal(a->blk1, b->blk1, bb * sizeof(double));
    assert_memory_equal(a->hh, b->hh, n * sizeof(double));
    assert_memory_equal(a->blk0_f, b->blk0_f, bb * sizeof(float)); /* online copies rebuilt on load */
}

static void assert_rot_equal(const rb_rot *a, const rb_rot *b) {
    if (!a || !b) {
        assert_true(!a && !b);
        return;
    }
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->kind, b->kind);
    assert_memory_equal(a->R, b->R, sizeof(double) * (size_t)a->n * (size_t)a->n); /* bitwise */
    if (a->kind == RB_ROT_HADAMARD)
        assert_memory_equal(a->signs, b->signs, (size_t)a->n);
    else
        assert_true(!a->signs && !b->signs);
    assert_true(a->orth_err == b->orth_err);
}

static void assert_set_equal(const rb_rotset *a, const rb_rotset *b) {
    assert_string_equal(a->method, b->method);
    assert_true(a->seed == b->seed);
    assert_int_equal(a->dim, b->dim);
    assert_int_equal(a->head_dim, b->head_dim);
    assert_int_equal(a->hidden_dim, b->hidden_dim);
    assert_int_equal(a->n_layers, b->n_layers);
    assert_int_equal(a->r3, b->r3);
    assert_int_equal(a->r4, b->r4);
    assert_int_equal(a->emb_center, b->emb_center);
    assert_int_equal(a->cross_head, b->cross_head);
    assert_rot_equal(a->r1, b->r1);
    for (int l = 0; l < a->n_layers; l++)
        assert_rot_equal(a->r2 ? a->r2[l] : NULL, b->r2 ? b->r2[l] : NULL);
    for (int l = 0; l < a->n_layers; l++)
        for (int k = 0; k < RB_RUQ_NSITES; k++)
            assert_ruq_equal(a->ruq ? a->ruq[l][k] : NULL, b->ruq ? b->ruq[l][k] : NULL);
}

static void copy_file(const char *from, const char *to, long limit) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[4096];
    size_t k;
    long done = 0;
    while ((limit < 0 || done < limit) && (k = fread(buf, 1, sizeof buf, a)) > 0) {
        if (limit >= 0 && done + (long)k > limit) k = (size_t)(limit - done);
        assert_int_equal(fwrite(buf, 1, k, b), k);
        done += (long)k;
    }
    fclose(a);
    assert_int_equal(fclose(b), 0);
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

/* Expects load to fail with `code`, the path and `needle` in the message, *s zeroed, no HDF5 id
 * left open. */
static void expect_load_error(const char *path, int code, const char *needle) {
    rb_rotset s;
    rb_error err;
    memset(&s, 0x5a, sizeof s); /* garbage in: the output must come back zeroed */
    rb_error_clear(&err);
    int rc = rb_rotset_load(path, &s, &err);
    fprintf(stderr, "# %s -> %d: %s\n", strrchr(path, '/') + 1, rc, err.msg);
    assert_int_equal(rc, code);
    assert_int_equal(err.code, code);
    assert_non_null(strstr(err.msg, path));
    if (needle) assert_non_null(strstr(err.msg, needle));
    assert_null(strchr(err.msg, '\n'));
    assert_zeroed(&s);
    assert_no_open_h5();
}

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    rb_test_tmpdir(fx->dir, sizeof fx->dir);
    path_in(fx, "good.h5", fx->good, sizeof fx->good);
    rb_rotset s;
    rb_error err;
    make_set(&s);
    if (rb_rotset_save(&s, fx->good, &err)) {
        fprintf(stderr, "# save: %s\n", err.msg);
        return -1;
    }
    rb_rotset_free(&s);
    path_in(fx, "good_ruq.h5", fx->good_ruq, sizeof fx->good_ruq);
    make_ruq_set(&s);
    if (rb_rotset_save(&s, fx->good_ruq, &err)) {
        fprintf(stderr, "# save: %s\n", err.msg);
        return -1;
    }
    rb_rotset_free(&s);
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    DIR *d = opendir(fx->dir);
    if (d) {
        for (struct dirent *e; (e = readdir(d));) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", fx->dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

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

/* ---- bad files ---------------------------------------------------------------------------- */

static void test_load_missing_and_not_hdf5(void **state) {
    fixture *fx = *state;
    char p[1024];
    path_in(fx, "absent.h5", p, sizeof p);
    expect_load_error(p, RB_ENOTFOUND, "No such file");
    expect_load_error(fx->dir, RB_EIO, "directory");
    path_in(fx, "text.h5", p, sizeof p);
    FILE *f = fopen(p, "w");
    fputs("this is not HDF5\n", f);
    fclose(f);
    expect_load_error(p, RB_EFORMAT, "not an HDF5 file");
    path_in(fx, "empty.h5", p, sizeof p);
    fclose(fopen(p, "w"));
    expect_load_error(p, RB_EFORMAT, "not an HDF5 file");
}

static void test_load_truncated(void **state) {
    fixture *fx = *state;
    struct stat st;
    assert_int_equal(stat(fx->good, &st), 0);
    const long cuts[] = {st.st_size / 2, st.st_size - 1, 100, 8};
    char p[1024];
    for (size_t t = 0; t < sizeof cuts / sizeof *cuts; t++) {
        snprintf(p, sizeof p, "%s/cut%ld.h5", fx->dir, cuts[t]);
        copy_file(fx->good, p, cuts[t]);
        expect_load_error(p, RB_EFORMAT, NULL);
    }
}

/* ---- files edited with the HDF5 API: one defect each ---------------------------------------- */

static void rm(hid_t f, const char *name) { assert_true(H5Ldelete(f, name, H5P_DEFAULT) >= 0); }

static void put_scalar(hid_t obj, const char *name, hid_t type, const void *v) {
    if (H5Aexists(obj, name) > 0) assert_true(H5Adelete(obj, name) >= 0);
    hid_t sp = H5Screate(H5S_SCALAR), a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, type, v) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
}

static void put_int(hid_t f, const char *obj, const char *name, hid_t type, long long v) {
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    assert_true(o >= 0);
    if (H5Tget_size(type) == 8) {
        put_scalar(o, name, type, &v);
    } else {
        int32_t x = (int32_t)v;
        put_scalar(o, name, type, &x);
    }
    H5Oclose(o);
}

static void put_string(hid_t f, const char *obj, const char *name, const char *v, int fixed) {
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT), t = H5Tcopy(H5T_C_S1);
    if (fixed) { /* fixed-length ASCII, as numpy bytes attributes are stored */
        H5Tset_size(t, strlen(v) + 1);
        put_scalar(o, name, t, v);
    } else {
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, H5T_CSET_UTF8);
        put_scalar(o, name, t, &v);
    }
    H5Tclose(t);
    H5Oclose(o);
}

/* Dataset `name` of `type` and shape dims (rank 1 or 2) filled from data (NULL: never written). */
static void put_data(hid_t f, const char *name, hid_t type, int rank, hsize_t d0, hsize_t d1, const void *data) {
    if (H5Lexists(f, name, H5P_DEFAULT) > 0) rm(f, name);
    hsize_t dims[2] = {d0, d1};
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    if (data) assert_true(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
}

static void identity_into(double *R, int n, double scale) {
    memset(R, 0, sizeof(double) * n * n);
    for (int i = 0; i < n; i++) R[i * n + i] = scale;
}

typedef void (*mutator)(hid_t f);

static void m_r1_shape(hid_t f) {
    static double R[DIM * DIM / 2];
    put_data(f, "/r1/R", H5T_NATIVE_DOUBLE, 2, DIM, DIM / 2, R);
}
static void m_r1_rank1(hid_t f) {
    static double R[DIM * DIM];
    put_data(f, "/r1/R", H5T_NATIVE_DOUBLE, 1, DIM * DIM, 0, R);
}
static void m_r1_float32(hid_t f) {
    static float R[DIM * DIM];
    put_data(f, "/r1/R", H5T_NATIVE_FLOAT, 2, DIM, DIM, R);
}
static void m_r1_int64(hid_t f) {
    static int64_t R[DIM * DIM];
    put_data(f, "/r1/R", H5T_NATIVE_INT64, 2, DIM, DIM, R);
}
static void m_r1_unwritten(hid_t f) { put_data(f, "/r1/R", H5T_NATIVE_DOUBLE, 2, DIM, DIM, NULL); }
static void m_r1_not_orth(hid_t f) {
    static double R[DIM * DIM];
    identity_into(R, DIM, 1.0);
    R[DIM + 2] = 0.5;
    put_data(f, "/r1/R", H5T_NATIVE_DOUBLE, 2, DIM, DIM, R);
}
static void m_r1_nan(hid_t f) {
    static double R[DIM * DIM];
    identity_into(R, DIM, 1.0);
    R[5 * DIM + 5] = NAN;
    put_data(f, "/r1/R", H5T_NATIVE_DOUBLE, 2, DIM, DIM, R);
}
static void m_r1_both(hid_t f) {
    int8_t s[DIM];
    memset(s, 1, sizeof s);
    put_data(f, "/r1/signs", H5T_NATIVE_INT8, 1, DIM, 0, s);
}
static void m_r1_kind_hadamard(hid_t f) { put_string(f, "/r1", "kind", "hadamard", 0); }
static void m_r1_kind_unknown(hid_t f) { put_string(f, "/r1", "kind", "sparse", 0); }
static void m_r1_n(hid_t f) { put_int(f, "/r1", "n", H5T_STD_I32LE, 32); }
static void m_r1_no_kind(hid_t f) { assert_true(H5Adelete_by_name(f, "/r1", "kind", H5P_DEFAULT) >= 0); }
static void m_r1_no_n(hid_t f) { assert_true(H5Adelete_by_name(f, "/r1", "n", H5P_DEFAULT) >= 0); }
static void m_r1_no_orth(hid_t f) { assert_true(H5Adelete_by_name(f, "/r1", "orth_error", H5P_DEFAULT) >= 0); }
static void m_r1_orth_nan(hid_t f) {
    double v = NAN;
    hid_t o = H5Oopen(f, "/r1", H5P_DEFAULT);
    put_scalar(o, "orth_error", H5T_NATIVE_DOUBLE, &v);
    H5Oclose(o);
}
static void m_r1_dataset(hid_t f) {
    rm(f, "/r1");
    double v = 1;
    put_data(f, "/r1", H5T_NATIVE_DOUBLE, 1, 1, 0, &v);
}
static void m_r1_R_group(hid_t f) {
    rm(f, "/r1/R");
    H5Gclose(H5Gcreate2(f, "/r1/R", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
}
static void m_r1_no_R(hid_t f) { rm(f, "/r1/R"); }
static void m_signs_int16(hid_t f) {
    int16_t s[HEAD];
    for (int i = 0; i < HEAD; i++) s[i] = 1;
    put_data(f, "/r2/0/signs", H5T_NATIVE_INT16, 1, HEAD, 0, s);
}
static void m_signs_uint8(hid_t f) {
    uint8_t s[HEAD];
    memset(s, 1, sizeof s);
    put_data(f, "/r2/0/signs", H5T_NATIVE_UINT8, 1, HEAD, 0, s);
}
static void m_signs_len(hid_t f) {
    int8_t s[HEAD / 2];
    memset(s, 1, sizeof s);
    put_data(f, "/r2/0/signs", H5T_NATIVE_INT8, 1, HEAD / 2, 0, s);
}
static void m_signs_value(hid_t f) {
    int8_t s[HEAD];
    memset(s, 1, sizeof s);
    s[7] = 3;
    put_data(f, "/r2/0/signs", H5T_NATIVE_INT8, 1, HEAD, 0, s);
}
static void m_layers_fewer(hid_t f) { put_int(f, "/", "n_layers", H5T_STD_I32LE, 2); }
static void m_layer_name(hid_t f) { H5Gclose(H5Gcreate2(f, "/r2/abc", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)); }
static void m_layer_zero_pad(hid_t f) { assert_true(H5Lmove(f, "/r2/2", f, "/r2/02", H5P_DEFAULT, H5P_DEFAULT) >= 0); }
static void m_dim_float(hid_t f) {
    double v = DIM;
    put_scalar(f, "dim", H5T_NATIVE_DOUBLE, &v);
}
static void m_dim_zero(hid_t f) { put_int(f, "/", "dim", H5T_STD_I32LE, 0); }
static void m_dim_array(hid_t f) {
    H5Adelete(f, "dim");
    hsize_t two = 2;
    int32_t v[2] = {DIM, DIM};
    hid_t sp = H5Screate_simple(1, &two, NULL), a = H5Acreate2(f, "dim", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT32, v);
    H5Aclose(a);
    H5Sclose(sp);
}
static void m_r3_two(hid_t f) { put_int(f, "/", "r3", H5T_STD_I32LE, 2); }
static void m_cross_two(hid_t f) { put_int(f, "/", "cross_head", H5T_STD_I32LE, 2); }
static void m_seed_negative(hid_t f) { put_int(f, "/", "seed", H5T_STD_I64LE, -5); }
static void m_method_int(hid_t f) { put_int(f, "/", "method", H5T_STD_I32LE, 7); }
static void m_method_long(hid_t f) { put_string(f, "/", "method", "a-method-name-well-over-31-bytes-long", 0); }
static void m_version_float(hid_t f) {
    double v = 0.1;
    put_scalar(f, "rotbench_version", H5T_NATIVE_DOUBLE, &v);
}
static void m_dim_mismatch(hid_t f) { put_int(f, "/", "dim", H5T_STD_I32LE, DIM * 2); }

typedef struct bad_case {
    const char *name;
    mutator fn;
    int code;
    const char *needle; /* object and problem as the message states them */
} bad_case;

static const bad_case bad_cases[] = {
    {"r1_shape", m_r1_shape, RB_EFORMAT, "/r1/R: shape [64][32] does not match dim 64"},
    {"r1_rank1", m_r1_rank1, RB_EFORMAT, "/r1/R: shape [4096] does not match dim 64"},
    {"r1_float32", m_r1_float32, RB_EFORMAT, "/r1/R: type is 4-byte float, expected 8-byte float"},
    {"r1_int64", m_r1_int64, RB_EFORMAT, "/r1/R: type is 8-byte integer"},
    {"r1_unwritten", m_r1_unwritten, RB_EFORMAT, "/r1/R: dataset has no data written"},
    {"r1_not_orth", m_r1_not_orth, RB_EFORMAT, "/r1/R: dense rotation of order 64 is not orthogonal"},
    {"r1_nan", m_r1_nan, RB_EFORMAT, "/r1/R: dense rotation of order 64 is not orthogonal"},
    {"r1_both", m_r1_both, RB_EFORMAT, "/r1: holds both R and signs"},
    {"r1_kind_hadamard", m_r1_kind_hadamard, RB_EFORMAT, "/r1/signs: dataset missing (kind hadamard)"},
    {"r1_kind_unknown", m_r1_kind_unknown, RB_EFORMAT, "/r1: unknown kind 'sparse'"},
    {"r1_n", m_r1_n, RB_EFORMAT, "/r1: n = 32 does not match dim 64"},
    {"r1_no_kind", m_r1_no_kind, RB_EFORMAT, "/r1: attribute 'kind' missing"},
    {"r1_no_n", m_r1_no_n, RB_EFORMAT, "/r1: attribute 'n' missing"},
    {"r1_no_orth", m_r1_no_orth, RB_EFORMAT, "/r1: attribute 'orth_error' missing"},
    {"r1_orth_nan", m_r1_orth_nan, RB_EFORMAT, "/r1: attribute 'orth_error' = nan"},
    {"r1_dataset", m_r1_dataset, RB_EFORMAT, "/r1: cannot open as a group"},
    {"r1_R_group", m_r1_R_group, RB_EFORMAT, "/r1/R: cannot open as a dataset"},
    {"r1_no_R", m_r1_no_R, RB_EFORMAT, "/r1/R: dataset missing (kind dense)"},
    {"signs_int16", m_signs_int16, RB_EFORMAT, "/r2/0/signs: type is 2-byte integer"},
    {"signs_uint8", m_signs_uint8, RB_EFORMAT, "/r2/0/signs: type is 1-byte integer (unsigned)"},
    {"signs_len", m_signs_len, RB_EFORMAT, "/r2/0/signs: shape [8] does not match head_dim 16"},
    {"signs_value", m_signs_value, RB_EFORMAT, "/r2/0/signs: entry 7 is 3, expected ±1"},
    {"layers_fewer", m_layers_fewer, RB_EFORMAT, "/r2: member '2' is not a layer index in [0, 2)"},
    {"layer_name", m_layer_name, RB_EFORMAT, "/r2: member 'abc' is not a layer index"},
    {"layer_zero_pad", m_layer_zero_pad, RB_EFORMAT, "/r2: member '02' is not a layer index"},
    {"dim_float", m_dim_float, RB_EFORMAT, "/: attribute 'dim' is float, expected integer"},
    {"dim_zero", m_dim_zero, RB_EFORMAT, "/: attribute 'dim' = 0 out of range"},
    {"dim_array", m_dim_array, RB_EFORMAT, "/: attribute 'dim' has 2 elements, expected a scalar"},
    {"dim_mismatch", m_dim_mismatch, RB_EFORMAT, "/r1: n = 64 does not match dim 128"},
    {"r3_two", m_r3_two, RB_EFORMAT, "/: attribute 'r3' = 2 out of range [0, 1]"},
    {"cross_two", m_cross_two, RB_EFORMAT, "/: attribute 'cross_head' = 2 out of range [0, 1]"},
    {"seed_negative", m_seed_negative, RB_EFORMAT, "/: attribute 'seed' = -5 is negative"},
    {"method_int", m_method_int, RB_EFORMAT, "/: attribute 'method' is integer, expected string"},
    {"method_long", m_method_long, RB_EFORMAT, "/: attribute 'method' longer than 31 bytes"},
    {"version_float", m_version_float, RB_EFORMAT, "/: attribute 'rotbench_version' is float"},
};

static void mutate_copy_of(const fixture *fx, const char *src, const char *name, mutator fn, char *p, size_t cap) {
    snprintf(p, cap, "%s/%s.h5", fx->dir, name);
    copy_file(src, p, -1);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    fn(f);
    assert_true(H5Fclose(f) >= 0);
    assert_no_open_h5();
}

static void mutate_copy(const fixture *fx, const char *name, mutator fn, char *p, size_t cap) {
    mutate_copy_of(fx, fx->good, name, fn, p, cap);
}

static void test_load_bad_content(void **state) {
    fixture *fx = *state;
    char p[1024];
    for (size_t t = 0; t < sizeof bad_cases / sizeof *bad_cases; t++) {
        mutate_copy(fx, bad_cases[t].name, bad_cases[t].fn, p, sizeof p);
        expect_load_error(p, bad_cases[t].code, bad_cases[t].needle);
    }
}

static const char *const root_attrs[] = {"method", "rotbench_version", "seed", "dim", "head_dim", "hidden_dim",
                                         "n_layers", "r3", "r4", "emb_center", "max_orth_error"};

static void test_load_missing_attrs(void **state) {
    fixture *fx = *state;
    char p[1024], needle[128];
    for (size_t t = 0; t < sizeof root_attrs / sizeof *root_attrs; t++) {
        snprintf(p, sizeof p, "%s/no_%s.h5", fx->dir, root_attrs[t]);
        copy_file(fx->good, p, -1);
        hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
        assert_true(H5Adelete(f, root_attrs[t]) >= 0);
        H5Fclose(f);
        snprintf(needle, sizeof needle, "/: attribute '%s' missing", root_attrs[t]);
        expect_load_error(p, RB_EFORMAT, needle);
    }
}

/* File offset of the first stored chunk of dataset `name`. */
static long chunk0_offset(const char *path, const char *name) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, name, H5P_DEFAULT), sp = H5Dget_space(d);
    haddr_t addr = HADDR_UNDEF;
    hsize_t size = 0, off[2];
    unsigned mask;
    assert_true(H5Dget_chunk_info(d, sp, 0, off, &mask, &addr, &size) >= 0);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    assert_true(addr != HADDR_UNDEF && size > 0);
    return (long)addr;
}

static void flip_byte(const char *path, long pos, int mask) {
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    fseek(fp, pos, SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, pos, SEEK_SET);
    fputc(c ^ mask, fp);
    assert_int_equal(fclose(fp), 0);
}

/* Bit rot inside the stored numbers (not HDF5 structure): the saved datasets carry checksums, so
 * even the lowest mantissa bit of R, which the orthogonality recheck could not see, is caught;
 * so is a sign. */
static void test_load_flipped_data(void **state) {
    fixture *fx = *state;
    char p[1024];
    snprintf(p, sizeof p, "%s/flipped_R.h5", fx->dir);
    copy_file(fx->good, p, -1);
    flip_byte(p, chunk0_offset(p, "/r1/R") + 8 * (5 * DIM + 9), 0x01); /* lowest bit of R[5][9] */
    expect_load_error(p, RB_EFORMAT, "/r1/R: cannot read");
    snprintf(p, sizeof p, "%s/flipped_signs.h5", fx->dir);
    copy_file(fx->good, p, -1);
    flip_byte(p, chunk0_offset(p, "/r2/0/signs") + 3, 0xfe); /* ±1 → ∓1: still a valid recipe */
    expect_load_error(p, RB_EFORMAT, "/r2/0/signs: cannot read");
}

/* What other writers (h5py, numpy) produce and the format allows: fixed-length ASCII strings,
 * int64 dims, int32 seed. */
static void m_foreign_types(hid_t f) {
    put_string(f, "/", "method", "unit-test", 1);
    put_string(f, "/r1", "kind", "dense", 1);
    put_int(f, "/", "dim", H5T_STD_I64LE, DIM);
    put_int(f, "/", "n_layers", H5T_STD_U64LE, LAYERS);
    put_int(f, "/", "seed", H5T_STD_I32LE, 42);
    float e = 0;
    hid_t o = H5Oopen(f, "/r2/0", H5P_DEFAULT);
    put_scalar(o, "orth_error", H5T_NATIVE_FLOAT, &e);
    H5Oclose(o);
}

static void test_load_foreign_types(void **state) {
    fixture *fx = *state;
    char p[1024];
    mutate_copy(fx, "foreign", m_foreign_types, p, sizeof p);
    rb_rotset a, b;
    rb_error err;
    assert_int_equal(rb_rotset_load(p, &b, &err), 0);
    make_set(&a);
    a.seed = 42;
    assert_set_equal(&a, &b);
    rb_rotset_free(&a);
    rb_rotset_free(&b);
    assert_no_open_h5();
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

static void m_ruq_perm_dup(hid_t f) {
    int32_t v[DIM];
    for (int i = 0; i < DIM; i++) v[i] = i;
    v[9] = 4;
    put_data(f, "/ruquant/1/o_in/perm", H5T_NATIVE_INT32, 1, DIM, 0, v);
}
static void m_ruq_perm_i64(hid_t f) {
    int64_t v[DIM];
    for (int i = 0; i < DIM; i++) v[i] = i;
    put_data(f, "/ruquant/1/o_in/perm", H5T_NATIVE_INT64, 1, DIM, 0, v);
}
static void m_ruq_scale_neg(hid_t f) {
    double v[DIM];
    for (int i = 0; i < DIM; i++) v[i] = 1;
    v[5] = -1;
    put_data(f, "/ruquant/1/o_in/scale", H5T_NATIVE_DOUBLE, 1, DIM, 0, v);
}
static void m_ruq_blk_orth(hid_t f) {
    static double R[16 * 16];
    identity_into(R, 16, 1.0);
    R[17] = 1.001;
    put_data(f, "/ruquant/1/o_in/blk0", H5T_NATIVE_DOUBLE, 2, 16, 16, R);
}
static void m_ruq_blk_shape(hid_t f) {
    static double R[16 * 8];
    put_data(f, "/ruquant/1/o_in/blk1", H5T_NATIVE_DOUBLE, 2, 16, 8, R);
}
static void m_ruq_hh(hid_t f) {
    double v[DIM] = {0.5};
    put_data(f, "/ruquant/1/o_in/householder", H5T_NATIVE_DOUBLE, 1, DIM, 0, v);
}
static void m_ruq_unwritten(hid_t f) { put_data(f, "/ruquant/3/down_in/scale", H5T_NATIVE_DOUBLE, 1, HIDDEN, 0, NULL); }
static void m_ruq_block(hid_t f) { put_int(f, "/ruquant/1/o_in", "block", H5T_STD_I32LE, 5); }
static void m_ruq_n_down(hid_t f) { put_int(f, "/ruquant/3/down_in", "n", H5T_STD_I32LE, DIM); }
static void m_ruq_n_out(hid_t f) { put_int(f, "/ruquant/1/o_in", "n", H5T_STD_I32LE, 60); }
static void m_ruq_site(hid_t f) { H5Gclose(H5Gcreate2(f, "/ruquant/1/q", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)); }
static void m_ruq_layer(hid_t f) { H5Gclose(H5Gcreate2(f, "/ruquant/7", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)); }
static void m_ruq_missing(hid_t f) { rm(f, "/ruquant/1/o_in/blk1"); }
static void m_ruq_no_block(hid_t f) { assert_true(H5Adelete_by_name(f, "/ruquant/1/o_in", "block", H5P_DEFAULT) >= 0); }
static void m_ruq_dataset(hid_t f) {
    rm(f, "/ruquant");
    double v = 1;
    put_data(f, "/ruquant", H5T_NATIVE_DOUBLE, 1, 1, 0, &v);
}

static const bad_case bad_ruq[] = {
    {"ruq_perm_dup", m_ruq_perm_dup, RB_EFORMAT, "/ruquant/1/o_in: perm: entry 9 = 4 repeats entry 4"},
    {"ruq_perm_i64", m_ruq_perm_i64, RB_EFORMAT, "/ruquant/1/o_in/perm: type is 8-byte integer"},
    {"ruq_scale_neg", m_ruq_scale_neg, RB_EFORMAT, "/ruquant/1/o_in: scale: entry 5 = -1"},
    {"ruq_blk_orth", m_ruq_blk_orth, RB_EFORMAT, "/ruquant/1/o_in: blk0 is not orthogonal"},
    {"ruq_blk_shape", m_ruq_blk_shape, RB_EFORMAT, "/ruquant/1/o_in/blk1: shape [16][8] does not match block 16"},
    {"ruq_hh", m_ruq_hh, RB_EFORMAT, "/ruquant/1/o_in: householder"},
    {"ruq_unwritten", m_ruq_unwritten, RB_EFORMAT, "/ruquant/3/down_in/scale: dataset has no data written"},
    {"ruq_block", m_ruq_block, RB_EFORMAT, "/ruquant/1/o_in: block 5 does not divide n = 64"},
    {"ruq_n_down", m_ruq_n_down, RB_EFORMAT, "/ruquant/3/down_in: n = 64 does not match hidden_dim 128"},
    {"ruq_n_out", m_ruq_n_out, RB_EFORMAT, "/ruquant/1/o_in: n = 60 is not a multiple of head_dim 16"},
    {"ruq_site", m_ruq_site, RB_EFORMAT, "/ruquant/1: member 'q' is not a site"},
    {"ruq_layer", m_ruq_layer, RB_EFORMAT, "/ruquant: member '7' is not a layer index in [0, 4)"},
    {"ruq_missing", m_ruq_missing, RB_EFORMAT, "/ruquant/1/o_in/blk1: dataset missing"},
    {"ruq_no_block", m_ruq_no_block, RB_EFORMAT, "/ruquant/1/o_in: attribute 'block' missing"},
    {"ruq_dataset", m_ruq_dataset, RB_EFORMAT, "/ruquant: cannot open as a group"},
};

static void test_load_bad_ruq(void **state) {
    fixture *fx = *state;
    char p[1024];
    for (size_t t = 0; t < sizeof bad_ruq / sizeof *bad_ruq; t++) {
        mutate_copy_of(fx, fx->good_ruq, bad_ruq[t].name, bad_ruq[t].fn, p, sizeof p);
        expect_load_error(p, bad_ruq[t].code, bad_ruq[t].needle);
    }
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
        cmocka_unit_test(test_load_missing_and_not_hdf5),
        cmocka_unit_test(test_load_truncated),
        cmocka_unit_test(test_load_bad_content),
        cmocka_unit_test(test_load_missing_attrs),
        cmocka_unit_test(test_load_flipped_data),
        cmocka_unit_test(test_load_foreign_types),
        cmocka_unit_test(test_roundtrip_ruq),
        cmocka_unit_test(test_save_refuses_ruq),
        cmocka_unit_test(test_load_bad_ruq),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* Shared by the rotation-set tests (test_rotset.c: construction and round trips; test_rotset_bad.c:
 * refusal of bad files): a fixture directory holding valid files, set builders, comparisons, and
 * the helpers that edit a copy of a file with the HDF5 API (one defect per copy). */
#ifndef ROTSET_FIXTURE_H
#define ROTSET_FIXTURE_H

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
    char good_lw[600];  /* a layer-wise set with rank-4 junctions (make_lw_set) */
} fixture;

static inline void path_in(const fixture *fx, const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s", fx->dir, name);
}

/* No HDF5 object (file, group, dataset, attribute, type, space) may stay open after save/load. */
static inline void assert_no_open_h5(void) { assert_int_equal(H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL), 0); }

static inline void assert_zeroed(const rb_rotset *s) {
    rb_rotset z;
    memset(&z, 0, sizeof z);
    assert_memory_equal(s, &z, sizeof z);
}

/* R1 dense random orthogonal; R2: layer 0 Hadamard with random signs, layer 2 Hadamard all +1,
 * layers 1 and 3 identity. */
static inline void make_set(rb_rotset *s) {
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
static inline rb_ruq_site *make_site(rb_rng *rng, int n, int B, int hh) {
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
static inline void make_ruq_set(rb_rotset *s) {
    rb_error err;
    rb_rng rng;
    rb_rng_seed(&rng, 12, "ruq");
    make_set(s);
    assert_int_equal(rb_rotset_ruq_alloc(s, &err), 0);
    s->ruq[0][RB_RUQ_QKV] = make_site(&rng, DIM, 64, 0);
    s->ruq[1][RB_RUQ_OUT] = make_site(&rng, DIM, 16, 1);
    s->ruq[3][RB_RUQ_DOWN] = make_site(&rng, HIDDEN, 32, 1);
}

static inline void assert_ruq_equal(const rb_ruq_site *a, const rb_ruq_site *b) {
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

static inline void assert_rot_equal(const rb_rot *a, const rb_rot *b) {
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

static inline void assert_set_equal(const rb_rotset *a, const rb_rotset *b) {
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

static inline void copy_file(const char *from, const char *to, long limit) {
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

static inline int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

/* Expects load to fail with `code`, the path and `needle` in the message, *s zeroed, no HDF5 id
 * left open. */
static inline void expect_load_error(const char *path, int code, const char *needle) {
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

/* A layer-wise set (ReSpinQuant's layout): random ra[0..LAYERS], rm, and rank-4 junctions fitted to
 * the exact ones; layer 2 has no mid basis (identity). */
static inline void make_lw_set(rb_rotset *s) {
    rb_error err;
    rb_rng rng;
    rb_rng_seed(&rng, 13, "lw");
    assert_int_equal(rb_rotset_init(s, "respinquant", DIM, HEAD, HIDDEN, LAYERS, &err), 0);
    assert_int_equal(rb_rotset_layerwise_alloc(s, &err), 0);
    double *R = malloc(sizeof(double) * DIM * DIM);
    for (int l = 0; l < 2 * LAYERS + 1; l++) {
        if (l == LAYERS + 1 + 2) continue;
        assert_int_equal(rb_orth_random(&rng, DIM, R, &err), 0);
        assert_int_equal(rb_rot_from_dense(R, DIM, l <= LAYERS ? &s->ra[l] : &s->rm[l - LAYERS - 1], &err), 0);
    }
    assert_int_equal(rb_rotset_jn_alloc(s, &err), 0);
    for (int l = 0; l < LAYERS; l++)
        for (int k = 0; k < RB_JN_COUNT; k++) {
            rb_rotset_junction_exact(s, l, k, R);
            assert_int_equal(rb_junction_fit(R, DIM, 4, &s->jn[l][k], &err), 0);
        }
    free(R);
}

static inline int setup(void **state) {
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
    path_in(fx, "good_lw.h5", fx->good_lw, sizeof fx->good_lw);
    make_lw_set(&s);
    if (rb_rotset_save(&s, fx->good_lw, &err)) {
        fprintf(stderr, "# save: %s\n", err.msg);
        return -1;
    }
    rb_rotset_free(&s);
    *state = fx;
    return 0;
}

static inline int teardown(void **state) {
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

/* ---- files edited with the HDF5 API: one defect each ---------------------------------------- */

static inline void rm(hid_t f, const char *name) { assert_true(H5Ldelete(f, name, H5P_DEFAULT) >= 0); }

static inline void put_scalar(hid_t obj, const char *name, hid_t type, const void *v) {
    if (H5Aexists(obj, name) > 0) assert_true(H5Adelete(obj, name) >= 0);
    hid_t sp = H5Screate(H5S_SCALAR), a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, type, v) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
}

static inline void put_int(hid_t f, const char *obj, const char *name, hid_t type, long long v) {
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

static inline void put_string(hid_t f, const char *obj, const char *name, const char *v, int fixed) {
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
static inline void put_data(hid_t f, const char *name, hid_t type, int rank, hsize_t d0, hsize_t d1, const void *data) {
    if (H5Lexists(f, name, H5P_DEFAULT) > 0) rm(f, name);
    hsize_t dims[2] = {d0, d1};
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    if (data) assert_true(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
}

static inline void identity_into(double *R, int n, double scale) {
    memset(R, 0, sizeof(double) * n * n);
    for (int i = 0; i < n; i++) R[i * n + i] = scale;
}

typedef void (*mutator)(hid_t f);

static inline void mutate_copy_of(const fixture *fx, const char *src, const char *name, mutator fn, char *p, size_t cap) {
    snprintf(p, cap, "%s/%s.h5", fx->dir, name);
    copy_file(src, p, -1);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    fn(f);
    assert_true(H5Fclose(f) >= 0);
    assert_no_open_h5();
}

static inline void mutate_copy(const fixture *fx, const char *name, mutator fn, char *p, size_t cap) {
    mutate_copy_of(fx, fx->good, name, fn, p, cap);
}

#endif

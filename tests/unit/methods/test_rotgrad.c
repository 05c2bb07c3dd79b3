/* rb_rotgrad: dL/dR1 and dL/dR2 of the fused model against central finite differences in the
 * rotations themselves, on make-model tiny (MHA, 4 heads: the cross-head transform applies) and gqa. */
#include "rb_test.h"
#include "rb_test_model.h"

#include <math.h>

#include "core/rb_rng.h"
#include "methods/rb_rotgrad.h"
#include "model/rb_make_model.h"
#include "model/rb_model.h"
#include "rotate/rb_orth.h"
#include "core/rb_h5.h"
#include <hdf5.h>

/* Step relative to an entry of an orthogonal matrix (~1/√n), and the accepted relative gap: the
 * same float32-forward reasoning as test_backward.c (FD_EPS, FD_REL_TOL there). */
#define FD_EPS 3e-3
#define FD_REL_TOL 5e-3
#define FD_FLOOR 1e-2

/* A dense rotation object around R (not orthogonality-checked: the perturbed points are not). */
static rb_rot *dense(const double *R, int n) {
    rb_rot *r = calloc(1, sizeof *r);
    r->n = n;
    r->kind = RB_ROT_DENSE;
    r->R = malloc(sizeof(double) * (size_t)n * n);
    memcpy(r->R, R, sizeof(double) * (size_t)n * n);
    return r;
}

static void make_set(rb_rotset *s, const rb_llama_config *c, const double *R1, double *const *R2, int online) {
    rb_error err = {0};
    assert_int_equal(rb_rotset_init(s, "test", c->dim, c->head_dim, c->hidden_dim, c->n_layers, &err), 0);
    s->r1 = dense(R1, c->dim);
    for (int l = 0; l < c->n_layers; l++) s->r2[l] = dense(R2[l], c->head_dim);
    s->r3 = s->r4 = online;
    s->emb_center = 1;
    s->cross_head = online && c->n_heads == c->n_kv_heads;
}

static double loss_at(const rb_weights_src *base, const rb_llama_config *c, const double *R1, double *const *R2,
                      int online, const int32_t *ids, int n_seq, int T, rb_rotgrad *g) {
    rb_rotset s;
    make_set(&s, c, R1, R2, online);
    rb_error err = {0};
    rb_rotgrad_opts o = {0};
    if (rb_rotgrad_run(base, c, &s, &o, ids, n_seq, T, g, &err)) fail_msg("%s", err.msg);
    rb_rotset_free(&s);
    return g->loss;
}

static void check(const char *what, double an, double fd, double scale) {
    double rel = fabs(an - fd) / fmax(fabs(an), FD_FLOOR * scale);
    fprintf(stderr, "# %-34s analytic %+.6e fd %+.6e rel %.1e\n", what, an, fd, rel);
    if (rel > FD_REL_TOL) fail_msg("%s: analytic %.8g vs finite difference %.8g", what, an, fd);
}

/* The model goes to root/<preset> (root: the test's temporary directory, removed by its teardown). */
static void run_preset(const char *root, const char *preset, int online) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", root, preset);
    rb_error err = {0};
    rb_model *m = rb_test_make_model(dir, preset, 2);
    const rb_llama_config *c = rb_model_config(m);
    rb_weights_src base = rb_weights_from_model(m);
    int d = c->dim, hd = c->head_dim, L = c->n_layers, n_seq = 2, T = 24;
    rb_rng rng;
    rb_rng_seed(&rng, 4, "test.rotgrad");
    int32_t ids[2 * 24];
    for (int i = 0; i < n_seq * T; i++) ids[i] = (int32_t)rb_rng_below(&rng, (uint64_t)c->vocab_size);
    double *R1 = malloc(sizeof(double) * d * d), *P1 = malloc(sizeof(double) * d * d), *V1 = malloc(sizeof(double) * d * d);
    double **R2 = calloc(L, sizeof *R2), **P2 = calloc(L, sizeof *P2), **V2 = calloc(L, sizeof *V2);
    assert_int_equal(rb_orth_random(&rng, d, R1, &err), 0);
    for (int l = 0; l < L; l++) {
        R2[l] = malloc(sizeof(double) * hd * hd), P2[l] = malloc(sizeof(double) * hd * hd);
        V2[l] = malloc(sizeof(double) * hd * hd);
        assert_int_equal(rb_orth_random(&rng, hd, R2[l], &err), 0);
        rb_rng_gauss_d(&rng, V2[l], (size_t)hd * hd, 0.0, 1.0);
    }
    rb_rng_gauss_d(&rng, V1, (size_t)d * d, 0.0, 1.0);
    rb_rotgrad g, tmp;
    assert_int_equal(rb_rotgrad_init(&g, c, &err), 0);
    assert_int_equal(rb_rotgrad_init(&tmp, c, &err), 0);
    double loss = loss_at(&base, c, R1, R2, online, ids, n_seq, T, &g);
    fprintf(stderr, "# %s%s: loss %.6f\n", preset, online ? " (R3, R4, cross-head, emb_center)" : "", loss);
    /* R1 direction */
    double an = 0, gs = 0, eps1 = FD_EPS / sqrt((double)d), l2[2];
    for (int i = 0; i < d * d; i++) an += g.dR1[i] * V1[i], gs += g.dR1[i] * g.dR1[i];
    for (int sg = 0; sg < 2; sg++) {
        for (int i = 0; i < d * d; i++) P1[i] = R1[i] + (sg ? -eps1 : eps1) * V1[i];
        l2[sg] = loss_at(&base, c, P1, R2, online, ids, n_seq, T, &tmp);
    }
    check("dL/dR1", an, (l2[0] - l2[1]) / (2 * eps1), sqrt(gs) * d);
    /* every R2 together, then layer 0's alone */
    for (int only0 = 0; only0 < 2; only0++) {
        double eps2 = FD_EPS / sqrt((double)hd);
        an = 0, gs = 0;
        for (int l = 0; l < L; l++)
            for (int i = 0; i < hd * hd && (!only0 || l == 0); i++) an += g.dR2[l][i] * V2[l][i], gs += g.dR2[l][i] * g.dR2[l][i];
        for (int sg = 0; sg < 2; sg++) {
            for (int l = 0; l < L; l++)
                for (int i = 0; i < hd * hd; i++)
                    P2[l][i] = R2[l][i] + (only0 && l > 0 ? 0.0 : (sg ? -eps2 : eps2) * V2[l][i]);
            l2[sg] = loss_at(&base, c, R1, P2, online, ids, n_seq, T, &tmp);
        }
        check(only0 ? "dL/dR2 (layer 0)" : "dL/dR2 (all layers)", an, (l2[0] - l2[1]) / (2 * eps2), sqrt(gs) * hd);
    }
    /* FP invariance: at an orthogonal point the loss does not depend on R, so the gradient has no
     * component along the manifold: Rᵀ·dR is symmetric (to float rounding) */
    double asym = 0, mag = 0;
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double a = 0, b = 0;
            for (int k = 0; k < d; k++) a += R1[k * d + i] * g.dR1[k * d + j], b += R1[k * d + j] * g.dR1[k * d + i];
            asym = fmax(asym, fabs(a - b));
            mag = fmax(mag, fabs(a));
        }
    fprintf(stderr, "# R1ᵀ·dR1 skew part %.2e of %.2e\n", asym, mag);
    assert_true(asym <= 1e-3 * mag);
    rb_rotgrad_free(&g);
    rb_rotgrad_free(&tmp);
    for (int l = 0; l < L; l++) free(R2[l]), free(P2[l]), free(V2[l]);
    free(R2), free(P2), free(V2), free(R1), free(P1), free(V1);
    rb_model_close(m);
}

/* ---- layer-wise sets (ReSpinQuant): bases ra[0..L], rm[0..L-1], exact dense junctions ---- */

typedef struct lw_point {
    int d, hd, L;
    double **B;  /* [2L+1]: ra[0..L] then rm[0..L-1] */
    double **R2; /* [L] */
} lw_point;

static double lw_loss(const rb_weights_src *base, const rb_llama_config *c, const lw_point *p, int online,
                      const int32_t *ids, int n_seq, int T, rb_rotgrad *g) {
    rb_rotset s;
    rb_error err = {0};
    assert_int_equal(rb_rotset_init(&s, "test", c->dim, c->head_dim, c->hidden_dim, c->n_layers, &err), 0);
    assert_int_equal(rb_rotset_layerwise_alloc(&s, &err), 0);
    for (int i = 0; i < 2 * p->L + 1; i++) {
        rb_rot *r = dense(p->B[i], p->d);
        if (i <= p->L) s.ra[i] = r;
        else s.rm[i - p->L - 1] = r;
    }
    for (int l = 0; l < p->L; l++) s.r2[l] = dense(p->R2[l], p->hd);
    s.r3 = s.r4 = online;
    rb_rotgrad_opts o = {0};
    if (rb_rotgrad_run(base, c, &s, &o, ids, n_seq, T, g, &err)) fail_msg("%s", err.msg);
    rb_rotset_free(&s);
    return g->loss;
}

/* The gradient of basis i (ra then rm) in g. */
static const double *lw_grad(const rb_rotgrad *g, int i, int L) { return i <= L ? g->dRa[i] : g->dRm[i - L - 1]; }

static void run_layerwise(const char *root, const char *preset, int online) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", root, preset);
    rb_error err = {0};
    rb_model *m = rb_test_make_model(dir, preset, 3);
    const rb_llama_config *c = rb_model_config(m);
    rb_weights_src base = rb_weights_from_model(m);
    int d = c->dim, hd = c->head_dim, L = c->n_layers, n_seq = 2, T = 20, nb = 2 * L + 1;
    rb_rng rng;
    rb_rng_seed(&rng, 5, "test.rotgrad.layerwise");
    int32_t ids[2 * 20];
    for (int i = 0; i < n_seq * T; i++) ids[i] = (int32_t)rb_rng_below(&rng, (uint64_t)c->vocab_size);
    lw_point p = {d, hd, L, calloc(nb, sizeof(double *)), calloc(L, sizeof(double *))}, q = p;
    q.B = calloc(nb, sizeof(double *));
    double **V = calloc(nb, sizeof(double *));
    for (int i = 0; i < nb; i++) {
        p.B[i] = malloc(sizeof(double) * d * d), q.B[i] = malloc(sizeof(double) * d * d);
        V[i] = malloc(sizeof(double) * d * d);
        assert_int_equal(rb_orth_random(&rng, d, p.B[i], &err), 0); /* independent bases: junctions far from I */
        rb_rng_gauss_d(&rng, V[i], (size_t)d * d, 0.0, 1.0);
    }
    for (int l = 0; l < L; l++) {
        p.R2[l] = malloc(sizeof(double) * hd * hd);
        assert_int_equal(rb_orth_random(&rng, hd, p.R2[l], &err), 0);
    }
    q.R2 = p.R2;
    rb_rotgrad g, tmp;
    assert_int_equal(rb_rotgrad_init(&g, c, &err), 0);
    assert_int_equal(rb_rotgrad_init(&tmp, c, &err), 0);
    assert_int_equal(rb_rotgrad_layerwise(&g, &err), 0);
    assert_int_equal(rb_rotgrad_layerwise(&tmp, &err), 0);
    double loss = lw_loss(&base, c, &p, online, ids, n_seq, T, &g);
    fprintf(stderr, "# %s layer-wise%s: loss %.6f\n", preset, online ? " (R3, R4)" : "", loss);
    /* one basis at a time: the embedding's, a middle attention basis (junction output and input), a
     * mid-layer basis, the lm_head's; then all together */
    int picks[] = {0, L > 1 ? 1 : 0, L + 1, L, -1};
    for (int pi = 0; pi < 5; pi++) {
        double an = 0, gs = 0, eps = FD_EPS / sqrt((double)d), l2[2];
        for (int i = 0; i < nb; i++) {
            if (picks[pi] >= 0 && i != picks[pi]) continue;
            const double *G = lw_grad(&g, i, L);
            for (int k = 0; k < d * d; k++) an += G[k] * V[i][k], gs += G[k] * G[k];
        }
        for (int sg = 0; sg < 2; sg++) {
            for (int i = 0; i < nb; i++)
                for (int k = 0; k < d * d; k++)
                    q.B[i][k] = p.B[i][k] + (picks[pi] >= 0 && i != picks[pi] ? 0.0 : (sg ? -eps : eps) * V[i][k]);
            l2[sg] = lw_loss(&base, c, &q, online, ids, n_seq, T, &tmp);
        }
        char what[64];
        if (picks[pi] < 0) snprintf(what, sizeof what, "dL/d(every basis)");
        else if (picks[pi] <= L) snprintf(what, sizeof what, "dL/d(ra[%d])", picks[pi]);
        else snprintf(what, sizeof what, "dL/d(rm[%d])", picks[pi] - L - 1);
        check(what, an, (l2[0] - l2[1]) / (2 * eps), sqrt(gs) * d);
    }
    /* FP invariance with exact junctions: every Bᵀ·dB symmetric (no tangent component) */
    for (int i = 0; i < nb; i++) {
        const double *G = lw_grad(&g, i, L);
        double asym = 0, mag = 0;
        for (int a = 0; a < d; a++)
            for (int b = 0; b < d; b++) {
                double x = 0, y = 0;
                for (int k = 0; k < d; k++) x += p.B[i][k * d + a] * G[k * d + b], y += p.B[i][k * d + b] * G[k * d + a];
                asym = fmax(asym, fabs(x - y)), mag = fmax(mag, fabs(x));
            }
        if (!(asym <= 1e-3 * mag)) fail_msg("basis %d: Bᵀ·dB skew part %.3g of %.3g", i, asym, mag);
    }
    rb_rotgrad_free(&g);
    rb_rotgrad_free(&tmp);
    for (int i = 0; i < nb; i++) free(p.B[i]), free(q.B[i]), free(V[i]);
    for (int l = 0; l < L; l++) free(p.R2[l]);
    free(p.B), free(q.B), free(V), free(p.R2);
    rb_model_close(m);
}

static void test_layerwise_tiny_online(void **state) { run_layerwise(((rb_test_dir_fixture *)*state)->dir, "tiny", 1); }
static void test_layerwise_gqa(void **state) { run_layerwise(((rb_test_dir_fixture *)*state)->dir, "gqa", 0); }

static void test_tiny_online(void **state) { run_preset(((rb_test_dir_fixture *)*state)->dir, "tiny", 1); }
static void test_gqa_plain(void **state) { run_preset(((rb_test_dir_fixture *)*state)->dir, "gqa", 0); }

/* rb_rotgrad_save: every documented field read back with the HDF5 API. */
static void test_save_layout(void **state) {
    const char *dir = ((rb_test_dir_fixture *)*state)->dir;
    rb_llama_config c = {.dim = 6, .head_dim = 2, .n_layers = 2};
    rb_rotgrad g;
    rb_error err = {0};
    assert_int_equal(rb_rotgrad_init(&g, &c, &err), 0);
    g.loss = 1.25;
    for (int i = 0; i < 36; i++) g.dR1[i] = i * 0.5 - 3;
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < 4; i++) g.dR2[l][i] = 10 * l + i;
    int32_t ids[3 * 4];
    for (int i = 0; i < 12; i++) ids[i] = 100 + i;
    char path[600];
    snprintf(path, sizeof path, "%s/grads.h5", dir);
    rb_rotgrad_meta m = {"model-x", "W4A4KV4", "hadamard", 4, 3, 1, 1};
    assert_int_equal(rb_rotgrad_save(path, &g, ids, &m, &err), 0);
    hid_t f;
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    assert_int_equal(rb_h5_open_read(path, &f, &err), 0);
    rb_h5_reader R = {.path = path, .err = &err};
    double loss;
    char buf[64];
    int v;
    assert_int_equal(rb_h5_get_f64(&R, f, "/", "loss", &loss), 0);
    assert_true(loss == 1.25);
    assert_int_equal(rb_h5_get_str(&R, f, "/", "ste", buf, sizeof buf), 0);
    assert_string_equal(buf, "clipped");
    assert_int_equal(rb_h5_get_i32(&R, f, "/", "windows", 0, 100, &v), 0);
    assert_int_equal(v, 3);
    hid_t ds;
    long long want_ids[2] = {3, 4}, want_r1[2] = {6, 6}, want_r2[2] = {2, 2};
    int32_t got_ids[12];
    double got[36];
    assert_int_equal(rb_h5_open_dataset(&R, f, "/ids", "ids", H5T_INTEGER, 4, 2, want_ids, &ds, NULL), 0);
    assert_true(H5Dread(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, got_ids) >= 0);
    rb_h5_close(&ds);
    assert_memory_equal(got_ids, ids, sizeof ids);
    hid_t gg, g2;
    assert_int_equal(rb_h5_open_group(&R, f, "/grad", "grad", &gg), 0);
    assert_int_equal(rb_h5_open_dataset(&R, gg, "/grad/r1", "r1", H5T_FLOAT, 8, 2, want_r1, &ds, NULL), 0);
    assert_true(H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, got) >= 0);
    rb_h5_close(&ds);
    assert_memory_equal(got, g.dR1, 36 * sizeof(double));
    assert_int_equal(rb_h5_open_group(&R, gg, "/grad/r2", "r2", &g2), 0);
    assert_int_equal(rb_h5_open_dataset(&R, g2, "/grad/r2/1", "1", H5T_FLOAT, 8, 2, want_r2, &ds, NULL), 0);
    assert_true(H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, got) >= 0);
    rb_h5_close(&ds);
    assert_memory_equal(got, g.dR2[1], 4 * sizeof(double));
    rb_h5_close(&g2);
    rb_h5_close(&gg);
    rb_h5_close(&f);
    rb_h5_quiet_off(&q);
    /* an unwritable destination is an error naming the file, and leaves nothing behind */
    char bad[700];
    snprintf(bad, sizeof bad, "%s/missing-dir/grads.h5", dir);
    assert_int_equal(rb_rotgrad_save(bad, &g, ids, &m, &err), RB_EIO);
    assert_non_null(strstr(err.msg, "missing-dir/grads.h5"));
    rb_rotgrad_free(&g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tiny_online, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_gqa_plain, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_save_layout, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_layerwise_tiny_online, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_layerwise_gqa, rb_test_dir_setup, rb_test_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

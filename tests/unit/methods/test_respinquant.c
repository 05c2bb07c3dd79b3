/* ReSpinQuant (METHODS §7): the low-rank junction fit against its definition, and on a trained set
 * (a generated model always, stories260K when the shared data is present) the FP logit error of the
 * junctions per rank — exact with the dense junctions and at rank = dim, growing as the rank drops —
 * orthogonality of every matrix, and the rotation file round trip with junctions. */
#include "rb_test.h"
#include "rb_test_model.h"

#include <math.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_rng.h"
#include "methods/rb_method.h"
#include "model/rb_make_model.h"
#include "model/rb_model.h"
#include "quant/rb_qpreset.h"
#include "rotate/rb_fuse.h"
#include "rotate/rb_junction.h"
#include "rotate/rb_orth.h"

/* Fit of a rotation acting on a k-dim subspace at rank ≥ k: exact up to the rounding of an
 * eigensolver and a few n×n products in double (~1e-14 at n = 48); 1e-10 leaves margin. */
#define FIT_EXACT_TOL 1e-10
/* fp32 online path against the double T̂: a few float ulps of O(1) entries after 3 products of
 * length ≤ n. */
#define APPLY_F_TOL 1e-5
/* As test_invariance: the same function in two bases in an fp32 forward differs by rounding. */
#define INVARIANCE_LOGIT_ABS_TOL 1e-4
#define T_SEQ 48
#define N_SEQ 3

/* T = I + U·(S − I)·Uᵀ: a rotation S of order k on a random k-dim subspace of R^n. */
static void subspace_rotation(rb_rng *rng, int n, int k, double *T) {
    rb_error err = {0};
    double *Q = malloc(sizeof(double) * n * n), *S = malloc(sizeof(double) * k * k), *US = malloc(sizeof(double) * n * k);
    assert_int_equal(rb_orth_random(rng, n, Q, &err), 0);
    assert_int_equal(rb_orth_random(rng, k, S, &err), 0);
    for (int i = 0; i < k; i++) S[i * k + i] -= 1.0;
    /* U = the first k columns of Q */
    rb_dgemm(0, 0, n, k, k, 1.0, Q, n, S, k, 0.0, US, k); /* lda n: the first k columns */
    rb_orth_identity(T, n);
    rb_dgemm(0, 1, n, n, k, 1.0, US, k, Q, n, 1.0, T, n);
    free(Q), free(S), free(US);
}

static void test_junction_fit(void **state) {
    (void)state;
    rb_rng rng;
    rb_rng_seed(&rng, 1, "test.junction");
    int n = 48, k = 6;
    double *T = malloc(sizeof(double) * n * n), *Th = malloc(sizeof(double) * n * n);
    subspace_rotation(&rng, n, k, T);
    rb_error err = {0};
    double prev = INFINITY;
    for (int r = 0; r <= n; r += (r < 8 ? 2 : 20)) {
        rb_junction *j;
        assert_int_equal(rb_junction_fit(T, n, r, &j, &err), 0);
        assert_true(j->orth_err <= RB_ROT_ORTH_TOL);
        rb_junction_dense(j, Th);
        double e = 0, dev = 0;
        for (int q = 0; q < n * n; q++) e += pow(T[q] - Th[q], 2), dev += pow(T[q] - (q / n == q % n), 2);
        e = sqrt(e), dev = sqrt(dev);
        fprintf(stderr, "# rank %2d: ||T - T^||_F %.3e (reported %.3e), ||T - I||_F %.3e\n", r, e, j->approx_err, dev);
        assert_true(fabs(e - j->approx_err) <= 1e-12 && fabs(dev - j->dev) <= 1e-12);
        if (r == 0) assert_true(fabs(e - dev) <= 1e-12);
        if (r >= k) assert_true(e <= FIT_EXACT_TOL); /* the whole moving subspace is captured */
        assert_true(e <= prev + 1e-12);
        prev = e;
        /* the fp32 online map and its transpose against T̂ in double */
        int rows = 5;
        float *X = malloc(sizeof(float) * rows * n), *Y = malloc(sizeof(float) * rows * n);
        float *tmp = malloc(sizeof(float) * rows * 2 * n);
        rb_rng_gauss(&rng, X, (size_t)rows * n, 0.0, 1.0);
        for (int tr = 0; tr < 2; tr++) {
            memcpy(Y, X, sizeof(float) * rows * n);
            rb_junction_apply_f(j, Y, rows, tmp, tr);
            for (int a = 0; a < rows; a++)
                for (int b = 0; b < n; b++) {
                    double want = 0;
                    for (int q = 0; q < n; q++) want += X[a * n + q] * (tr ? Th[b * n + q] : Th[q * n + b]);
                    assert_true(fabs(want - Y[a * n + b]) <= APPLY_F_TOL);
                }
        }
        free(X), free(Y), free(tmp);
        rb_junction_free(j);
    }
    free(T), free(Th);
}

/* Max |Δlogit| of the FP fused model of rs against ref. */
static double fp_error(const rb_weights_src *base, const rb_llama_config *c, const int32_t *ids, int n_seq, int T,
                       const float *ref, const rb_rotset *rs) {
    rb_error err = {0};
    rb_fused f;
    assert_int_equal(rb_fused_init(&f, base, c, rs, &err), 0);
    rb_weights_src fs = rb_fused_src(&f);
    rb_hooks hk;
    rb_hooks_init(&hk);
    rb_fused_add_online_hooks(&f, &hk);
    float *got = rb_test_logits(&fs, c, ids, n_seq, T, &hk);
    double maxd = 0;
    for (size_t i = 0; i < (size_t)n_seq * T * c->vocab_size; i++) maxd = fmax(maxd, fabs((double)got[i] - ref[i]));
    rb_free(got);
    rb_fused_free(&f);
    return maxd;
}

/* Replaces the junctions of a trained layer-wise set by rank-r ones (r = dim: fitted at full rank;
 * r > dim: none, the exact dense ones). */
static void set_rank(rb_rotset *rs, int r) {
    rb_error err = {0};
    int d = rs->dim;
    for (int l = 0; rs->jn && l < rs->n_layers; l++)
        for (int k = 0; k < RB_JN_COUNT; k++) rb_junction_free(rs->jn[l][k]);
    free(rs->jn);
    rs->jn = NULL;
    if (r > d) return;
    assert_int_equal(rb_rotset_jn_alloc(rs, &err), 0);
    double *T = malloc(sizeof(double) * d * d);
    for (int l = 0; l < rs->n_layers; l++)
        for (int k = 0; k < RB_JN_COUNT; k++) {
            rb_rotset_junction_exact(rs, l, k, T);
            assert_int_equal(rb_junction_fit(T, d, r, &rs->jn[l][k], &err), 0);
        }
    free(T);
}

/* Trains respinquant briefly on ids, then the FP logit error per rank, orthogonality and the file
 * round trip. */
static void ranks_on(const char *label, const rb_weights_src *base, const rb_llama_config *c, const int32_t *ids,
                     int n_seq, int T, const char *dir) {
    rb_error err = {0};
    rb_quant_cfg q;
    assert_int_equal(rb_quant_preset("W4A4KV4", &q, &err), 0);
    const char *on[] = {"steps", "windows", "rank"}, *ov[] = {"4", "2", "1000000"};
    rb_method_ctx mc = {.cfg = c, .src = base, .seed = 3, .r3 = -1, .r4 = -1, .cross_head = -1, .calib = ids,
                        .calib_n = n_seq, .calib_T = T, .calib_batch = 1, .quant = &q, .opt_names = on,
                        .opt_values = ov, .n_opts = 3};
    rb_rotset rs;
    assert_int_equal(rb_method_run("respinquant", &mc, &rs, &err), 0);
    assert_non_null(rs.ra);
    assert_null(rs.jn);
    double oe = rb_rotset_orth_err(&rs);
    fprintf(stderr, "# %s: max orthogonality error %.2e\n", label, oe);
    assert_true(oe <= RB_ROT_ORTH_TOL);
    float *ref = rb_test_logits(base, c, ids, n_seq, T, NULL);
    double exact = fp_error(base, c, ids, n_seq, T, ref, &rs);
    fprintf(stderr, "# %s: exact dense junctions: FP max |dlogit| %.3e\n", label, exact);
    assert_true(exact < INVARIANCE_LOGIT_ABS_TOL);
    int ranks[] = {0, 8, 16, 32, c->dim};
    double e[5];
    for (int i = 0; i < 5; i++) {
        set_rank(&rs, ranks[i]); /* rank = dim: a full-rank fit through the low-rank path, T^ = T */
        assert_true(rb_rotset_orth_err(&rs) <= RB_ROT_ORTH_TOL);
        e[i] = fp_error(base, c, ids, n_seq, T, ref, &rs);
        fprintf(stderr, "# %s: rank %3d: FP max |dlogit| %.3e\n", label, ranks[i], e[i]);
    }
    assert_true(e[4] < INVARIANCE_LOGIT_ABS_TOL); /* rank = dim is exact */
    assert_true(e[0] > e[4] && e[3] <= e[0]);
    /* round trip of a low-rank set: same logits bit for bit */
    set_rank(&rs, 8);
    char path[700];
    snprintf(path, sizeof path, "%s/respinquant.h5", dir);
    assert_int_equal(rb_rotset_save(&rs, path, &err), 0);
    rb_rotset back;
    assert_int_equal(rb_rotset_load(path, &back, &err), 0);
    assert_non_null(back.ra);
    assert_non_null(back.jn);
    assert_int_equal(back.jn[0][RB_JN_MLP]->r, 8);
    assert_true(fp_error(base, c, ids, n_seq, T, ref, &rs) == fp_error(base, c, ids, n_seq, T, ref, &back));
    rb_rotset_free(&back);
    rb_free(ref);
    rb_rotset_free(&rs);
}

static void test_generated(void **state) {
    const char *root = ((rb_test_dir_fixture *)*state)->dir;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/gqa", root);
    rb_model *m = rb_test_make_model(dir, "gqa", 5);
    const rb_llama_config *c = rb_model_config(m);
    rb_weights_src base = rb_weights_from_model(m);
    int32_t ids[N_SEQ * T_SEQ];
    rb_rng r;
    rb_rng_seed(&r, 7, "test.ids");
    for (int i = 0; i < N_SEQ * T_SEQ; i++) ids[i] = (int32_t)rb_rng_below(&r, (uint64_t)c->vocab_size);
    ranks_on("gqa", &base, c, ids, N_SEQ, T_SEQ, root);
    rb_model_close(m);
}

static void test_stories(void **state) {
    rb_test_stories s;
    if (!rb_test_stories_open(&s, 1)) {
        fprintf(stderr, "#\n# SKIPPED: stories260K, WikiText-2 or the Hadamard tables not found (set RB_SHARED_DATA)\n#\n");
        skip();
    }
    ranks_on("stories260K", &s.src, s.c, s.ids, 4, 64, ((rb_test_dir_fixture *)*state)->dir);
    rb_test_stories_close(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_junction_fit),
        cmocka_unit_test_setup_teardown(test_generated, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_stories, rb_test_dir_setup, rb_test_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

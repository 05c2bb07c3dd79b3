/* ConQuR: the corner statistics by hand, the Procrustes alternation recovering a planted rotation
 * (ITQ's monotone ascent), and on stories260K: higher corner alignment and lower per-token
 * kurtosis at every R1/R2 site than the Hadamard initialization, on held-out windows. */
#include "rb_test.h"
#include "rb_test_model.h"

#include <math.h>

#include "core/rb_file.h"
#include "core/rb_rng.h"
#include "text/rb_calib.h"
#include "pipeline/rb_pipeline.h"
#include "eval/rb_stats.h"
#include "model/rb_forward.h"
#include "quant/rb_qpreset.h"
#include "methods/rb_conqur.h"
#include "rotate/rb_fuse.h"
#include "methods/rb_method.h"
#include "rotate/rb_orth.h"
#include "model/rb_stream.h"

/* Sums of a few products of exact binary fractions: only the float→double steps round. */
#define HAND_TOL 1e-6

static void test_acc_by_hand(void **state) {
    (void)state;
    rb_error err = {0};
    rb_conqur_acc a;
    assert_int_equal(rb_conqur_acc_init(&a, 2, &err), 0);
    /* rows (3, 4) and (0, -2) and a zero row (skipped) */
    float Z[] = {3, 4, 0, -2, 0, 0};
    assert_int_equal(rb_conqur_acc_add(&a, Z, 3, &err), 0);
    /* ẑ1 = (0.6, 0.8), b1 = (1, 1)/√2; ẑ2 = (0, -1), b2 = (0, -1)/√2 (sign(0) = 0) */
    double s = 1 / sqrt(2.0);
    double want[4] = {0.6 * s, 0.6 * s, 0.8 * s, 0.8 * s + 1 * s};
    for (int i = 0; i < 4; i++) assert_true(fabs(a.M[i] - want[i]) < HAND_TOL);
    assert_true(fabs(a.rows - 2) < 1e-12);
    /* alignment: (3+4)/(√2·5) and 2/(√2·2) */
    assert_true(fabs(a.align_sum - (7 / (sqrt(2.0) * 5) + 1 / sqrt(2.0))) < HAND_TOL);
    assert_true(fabs(rb_corner_alignment(Z, 2) - 7 / (sqrt(2.0) * 5)) < HAND_TOL);
    /* take: C = R·M with R = [[0,1],[1,0]] swaps M's rows, and resets */
    double R[4] = {0, 1, 1, 0}, C[4];
    rb_conqur_acc_take(&a, R, C);
    assert_true(fabs(C[0] - want[2]) < HAND_TOL && fabs(C[3] - want[1]) < HAND_TOL);
    assert_true(a.rows == 0 && a.align_sum == 0 && a.M[3] == 0);
    rb_conqur_acc_free(&a);
}

/* Rows holding NaN or Inf are skipped as promised: they leave M, the row count and the alignment
 * exactly as the clean rows alone do (before the fix a NaN row poisoned M through NaN·0 in the
 * product). Also across the chunk boundary RB_CONQUR_ROWS_PER_GEMM, where compaction restarts. */
static void test_acc_nonfinite_rows(void **state) {
    (void)state;
    enum { N = 8, ROWS = RB_CONQUR_ROWS_PER_GEMM + 40 };
    rb_error err = {0};
    rb_rng r;
    rb_rng_seed(&r, 4, "conqur-nan");
    float *Z = malloc(sizeof(float) * ROWS * N), *clean = malloc(sizeof(float) * ROWS * N);
    rb_rng_gauss(&r, Z, (size_t)ROWS * N, 0.0, 1.0);
    size_t nc = 0;
    for (int t = 0; t < ROWS; t++) {
        int bad = t == 3 || t == 7 || t == RB_CONQUR_ROWS_PER_GEMM + 1 || t == ROWS - 1;
        if (bad) Z[(size_t)t * N + (t % N)] = t % 2 ? NAN : -INFINITY;
        else memcpy(clean + nc++ * N, Z + (size_t)t * N, sizeof(float) * N);
    }
    rb_conqur_acc a, b;
    assert_int_equal(rb_conqur_acc_init(&a, N, &err), 0);
    assert_int_equal(rb_conqur_acc_init(&b, N, &err), 0);
    assert_int_equal(rb_conqur_acc_add(&a, Z, ROWS, &err), 0);
    assert_int_equal(rb_conqur_acc_add(&b, clean, nc, &err), 0);
    assert_true(a.rows == (double)nc && a.rows == b.rows);
    assert_true(isfinite(a.align_sum) && fabs(a.align_sum - b.align_sum) < 1e-9 * b.align_sum);
    double md = 0;
    for (int i = 0; i < N * N; i++) {
        assert_true(isfinite(a.M[i]));
        md = fmax(md, fabs(a.M[i] - b.M[i]));
    }
    /* the two products split the same rows differently across chunks: float rounding only */
    assert_true(md < HAND_TOL * ROWS);
    rb_conqur_acc_free(&a);
    rb_conqur_acc_free(&b);
    free(Z);
    free(clean);
}

/* Rows that are hypercube corners seen through an unknown rotation Qᵀ (plus a little noise):
 * alternating sign and Procrustes steps never lowers Σ‖x̂R‖₁ (each half-step maximizes it given the
 * other, ITQ's argument). From the identity the ascent can stop in a local maximum; from a
 * perturbed Q it finds the planted rotation (alignment → 1). */
enum { PN = 16, PROWS = 4000 };

/* Runs `iters` alternations from R (updated in place) on X; returns the last alignment. */
static double itq(const float *X, double *R, int iters, double *first) {
    *first = 0;
    rb_error err = {0};
    float *Z = malloc((size_t)PROWS * PN * sizeof(float)), Rf[PN * PN];
    double C[PN * PN], prev = 0;
    rb_conqur_acc a;
    assert_int_equal(rb_conqur_acc_init(&a, PN, &err), 0);
    for (int it = 0; it < iters; it++) {
        for (int i = 0; i < PN * PN; i++) Rf[i] = (float)R[i];
        for (int t = 0; t < PROWS; t++)
            for (int j = 0; j < PN; j++) {
                double v = 0;
                for (int k = 0; k < PN; k++) v += X[(size_t)t * PN + k] * Rf[k * PN + j];
                Z[(size_t)t * PN + j] = (float)v;
            }
        assert_int_equal(rb_conqur_acc_add(&a, Z, PROWS, &err), 0);
        double align = a.align_sum / a.rows;
        if (it == 0) *first = align;
        assert_true(align >= prev - 1e-6); /* monotone up to float rounding of the statistics */
        prev = align;
        rb_conqur_acc_take(&a, R, C);
        assert_int_equal(rb_polar(C, PN, R, &err), 0);
    }
    double e;
    assert_int_equal(rb_orth_error(R, PN, &e, NULL, &err), 0);
    assert_true(e <= RB_ROT_ORTH_TOL);
    rb_conqur_acc_free(&a);
    free(Z);
    return prev;
}

static void test_procrustes_ascent(void **state) {
    (void)state;
    rb_error err = {0};
    rb_rng g;
    rb_rng_seed(&g, 3, "test.planted");
    double Q[PN * PN], R[PN * PN], G[PN * PN];
    float *X = malloc((size_t)PROWS * PN * sizeof(float));
    int8_t *B = malloc((size_t)PROWS * PN);
    assert_int_equal(rb_orth_random(&g, PN, Q, &err), 0);
    for (size_t i = 0; i < (size_t)PROWS * PN; i++) B[i] = (rb_rng_next(&g) >> 63) ? 1 : -1;
    for (int t = 0; t < PROWS; t++) /* x = b·Qᵀ + noise, b ∈ {±1}^N */
        for (int j = 0; j < PN; j++) {
            double v = 0;
            for (int k = 0; k < PN; k++) v += B[(size_t)t * PN + k] * Q[(size_t)j * PN + k];
            X[(size_t)t * PN + j] = (float)(v + 0.05 * (rb_rng_uniform(&g) - 0.5));
        }
    double first = 0, last;
    for (int i = 0; i < PN * PN; i++) R[i] = i % (PN + 1) == 0;
    last = itq(X, R, 60, &first);
    fprintf(stderr, "# from the identity: alignment %.4f -> %.4f\n", first, last);
    assert_true(first < 0.85 && last > first + 0.1);
    assert_int_equal(rb_orth_random(&g, PN, G, &err), 0);
    for (int i = 0; i < PN * PN; i++) G[i] = Q[i] + 0.3 * G[i];
    assert_int_equal(rb_polar(G, PN, R, &err), 0);
    last = itq(X, R, 30, &first);
    fprintf(stderr, "# from a perturbed planted rotation: alignment %.4f -> %.4f\n", first, last);
    assert_true(last > 0.999);
    free(X);
    free(B);
}

/* ---- stories260K ---- */

enum { CAL_N = 24, EVAL_N = 8, T = 256 };

typedef struct site_meas {
    const rb_llama_config *c;
    double align[64][3], rows[64][3]; /* [layer][attn_in, mlp_in, o_in (per head)] */
    rb_act_stats kurt[64][3];         /* per-token kurtosis over the full row */
} site_meas;

static int meas_hook(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    site_meas *m = ctx;
    int k = in->site == RB_SITE_ATTN_IN ? 0 : in->site == RB_SITE_MLP_IN ? 1 : in->site == RB_SITE_O_IN ? 2 : -1;
    if (k < 0) return 0;
    size_t rows = (size_t)in->n_seq * in->seq_len;
    int g = k == 2 ? in->n_groups : 1, w = in->cols / g;
    for (size_t r = 0; r < rows * g; r++) m->align[in->layer][k] += rb_corner_alignment(x + r * w, w);
    m->rows[in->layer][k] += (double)(rows * g);
    (void)err;
    rb_act_stats_add(&m->kurt[in->layer][k], x, rows, (size_t)in->cols);
    return 0;
}

/* Alignment and per-token kurtosis at every learned site of the model rotated by rs (no quantization). */
static void measure(const rb_weights_src *base, const rb_llama_config *c, const rb_rotset *rs, const int32_t *ids,
                    site_meas *m) {
    rb_error err = {0};
    memset(m, 0, sizeof *m);
    m->c = c;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < 3; k++)
            assert_int_equal(rb_act_stats_init(&m->kurt[l][k], k == 2 ? c->n_heads * c->head_dim : c->dim, &err), 0);
    rb_fused f;
    assert_int_equal(rb_fused_init(&f, base, c, rs, &err), 0);
    rb_weights_src fs = rb_fused_src(&f);
    rb_hooks hk;
    rb_hooks_init(&hk);
    rb_fused_add_online_hooks(&f, &hk);
    rb_hooks_add_all(&hk, meas_hook, m);
    float *hn = malloc((size_t)EVAL_N * T * c->dim * sizeof(float));
    assert_int_equal(rb_llama_hidden(&fs, c, ids, EVAL_N, T, 0, &hk, hn, &err), 0);
    free(hn);
    rb_fused_free(&f);
}

static void meas_free(site_meas *m) {
    for (int l = 0; l < m->c->n_layers; l++)
        for (int k = 0; k < 3; k++) rb_act_stats_free(&m->kurt[l][k]);
}

static void test_stories(void **state) {
    (void)state;
    rb_test_stories st;
    if (!rb_test_stories_open(&st, 1)) {
        fprintf(stderr, "#\n# SKIPPED: shared data (stories260K, wiki.test.raw, hadamard/) not found (set RB_SHARED_DATA)\n#\n");
        skip();
    }
    rb_error err = {0};
    const rb_llama_config *c = st.c;
    assert_true(c->n_layers <= 64);
    /* calibration windows from the first half, measurement windows from the second */
    int32_t *cal, *ev;
    assert_int_equal(rb_calib_sample(st.ids, st.calib_end, CAL_N, T, 1, &cal, &err), 0);
    assert_int_equal(rb_calib_sample(st.eval, st.n_eval, EVAL_N, T, 2, &ev, &err), 0);
    rb_quant_cfg q;
    assert_int_equal(rb_quant_preset("W4A4KV4", &q, &err), 0);
    rb_trace tr;
    rb_trace_init(&tr);
    rb_method_ctx mc = {.cfg = c, .src = &st.src, .seed = 0, .r3 = -1, .r4 = -1, .emb_center = 0, .cross_head = -1,
                        .calib = cal, .calib_n = CAL_N, .calib_T = T, .calib_batch = 4, .quant = &q, .trace = &tr};
    rb_rotset had, cq, cq2;
    assert_int_equal(rb_method_run("hadamard", &mc, &had, &err), 0);
    int rc = rb_method_run("conqur", &mc, &cq, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_true(rb_rotset_orth_err(&cq) <= RB_ROT_ORTH_TOL);
    /* the trace: one row per update (CAL_N / batch), alignment logged */
    const rb_trace_table *t = rb_trace_find(&tr, "conqur");
    assert_non_null(t);
    assert_int_equal((int)t->rows, CAL_N / 4);
    assert_non_null(rb_trace_find(&tr, "conqur.sites"));
    /* same seed, same windows: same rotations, bit for bit */
    rb_method_ctx mc2 = mc;
    mc2.trace = NULL;
    assert_int_equal(rb_method_run("conqur", &mc2, &cq2, &err), 0);
    assert_memory_equal(cq.r1->R, cq2.r1->R, (size_t)c->dim * c->dim * sizeof(double));
    rb_rotset_free(&cq2);
    /* the other schedules run and stay orthogonal: inner alternations on the kept batch with an EMA,
     * per-batch targets from the identity over two passes (one trace row per update) */
    static const char *const on1[] = {"inner_iters", "accumulation", "beta"}, *const ov1[] = {"3", "ema", "0.5"};
    static const char *const on2[] = {"accumulation", "init", "passes"}, *const ov2[] = {"per-batch", "identity", "2"};
    const char *const *opt_names[] = {on1, on2}, *const *opt_vals[] = {ov1, ov2};
    for (int k = 0; k < 2; k++) {
        rb_trace tk;
        rb_trace_init(&tk);
        rb_method_ctx mk = mc;
        mk.opt_names = opt_names[k];
        mk.opt_values = opt_vals[k];
        mk.n_opts = 3;
        mk.trace = &tk;
        rc = rb_method_run("conqur", &mk, &cq2, &err);
        if (rc) fprintf(stderr, "# %s\n", err.msg);
        assert_int_equal(rc, 0);
        assert_true(rb_rotset_orth_err(&cq2) <= RB_ROT_ORTH_TOL);
        const rb_trace_table *tt = rb_trace_find(&tk, "conqur");
        assert_int_equal((int)tt->rows, (k == 1 ? 2 : 1) * CAL_N / 4);
        int a = rb_trace_col(tt, "align_r1");
        fprintf(stderr, "# schedule %d: alignment R1 first batch %.4f, last batch %.4f\n", k, tt->data[a],
                tt->data[(tt->rows - 1) * tt->n_cols + a]);
        assert_true(tt->data[(tt->rows - 1) * tt->n_cols + a] > tt->data[a]);
        rb_rotset_free(&cq2);
        rb_trace_free(&tk);
    }
    /* bad options are named */
    const char *bad_n[] = {"passes"}, *bad_v[] = {"0"};
    mc2.opt_names = bad_n;
    mc2.opt_values = bad_v;
    mc2.n_opts = 1;
    assert_int_equal(rb_method_run("conqur", &mc2, &cq2, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "rotation.options.passes"));
    mc2.n_opts = 0;
    mc2.calib = NULL;
    assert_int_equal(rb_method_run("conqur", &mc2, &cq2, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "calibration"));

    /* held-out windows: ConQuR beats its own start at every site (the start: random Hadamard R1 as
     * method hadamard's, random-sign Hadamard R2) */
    static const char *const off_n[] = {"learn_r1", "learn_r2"}, *const off_v[] = {"off", "off"};
    rb_method_ctx m0 = mc;
    m0.trace = NULL;
    m0.opt_names = off_n;
    m0.opt_values = off_v;
    m0.n_opts = 2;
    rb_rotset start;
    assert_int_equal(rb_method_run("conqur", &m0, &start, &err), 0);
    assert_memory_equal(start.r1->R, had.r1->R, (size_t)c->dim * c->dim * sizeof(double));
    site_meas *mh = calloc(1, sizeof *mh), *mq = calloc(1, sizeof *mq);
    measure(&st.src, c, &start, ev, mh);
    measure(&st.src, c, &cq, ev, mq);
    static const char *const names[] = {"attn_in", "mlp_in", "o_in"};
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < 3; k++) {
            rb_act_stats_row rh, rq;
            rb_act_stats_result(&mh->kurt[l][k], &rh);
            rb_act_stats_result(&mq->kurt[l][k], &rq);
            double ah = mh->align[l][k] / mh->rows[l][k], aq = mq->align[l][k] / mq->rows[l][k];
            fprintf(stderr, "# layer %d %-7s alignment start %.4f conqur %.4f | token kurtosis %.3f -> %.3f\n", l,
                    names[k], ah, aq, rh.kurt_token_mean, rq.kurt_token_mean);
            assert_true(aq > ah);
            if (k < 2) assert_true(rq.kurt_token_mean < rh.kurt_token_mean);
        }
    meas_free(mh);
    meas_free(mq);
    free(mh);
    free(mq);
    rb_rotset_free(&start);
    rb_trace_free(&tr);
    rb_rotset_free(&had);
    rb_rotset_free(&cq);
    free(cal);
    free(ev);
    rb_test_stories_close(&st);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acc_by_hand),
        cmocka_unit_test(test_acc_nonfinite_rows),
        cmocka_unit_test(test_procrustes_ascent),
        cmocka_unit_test(test_stories),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* GPTQ and Hessians (METHODS.md §8.2, §9.1): running-average Hessian, bits-16 identity, GPTQ ≤ RTN
 * on the calibration Hessian, agreement with a textbook unblocked GPTQ, grid membership, dead
 * columns, act-order, a non-PD Hessian. */
#include "rb_test.h"

#include <lapacke.h>
#include <math.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_rng.h"
#include "core/rb_signal.h"
#include "quant/rb_gptq.h"
#include "quant/rb_wstore.h"

enum { ROWS = 64, COLS = 256, NTOK = 1024 };

/* fp32 products of ~1000 tokens against a double reference: a few fp32 ulps times √K. */
#define HESSIAN_REL_TOL 2e-5

typedef struct fixture {
    float *x;  /* [NTOK][COLS] correlated calibration inputs */
    double *h; /* [COLS][COLS] their Hessian (upper triangle) */
    float *w;  /* [ROWS][COLS] random weight */
} fixture;

/* Inputs x = z·M·diag(c): Gaussian z, a random mixing M = I + 0.3·G/√n (so columns correlate)
 * and column scales c spread over e^{±1} (so act-order has an order to follow). */
static void make_inputs(float *x, int ntok, int n, uint64_t seed) {
    rb_rng r;
    rb_rng_seed(&r, seed, "gptq-x");
    float *z = rb_alloc((size_t)ntok * n * sizeof(float)), *m = rb_alloc((size_t)n * n * sizeof(float));
    float *c = rb_alloc((size_t)n * sizeof(float));
    assert_non_null(z);
    assert_non_null(m);
    assert_non_null(c);
    rb_rng_gauss(&r, z, (size_t)ntok * n, 0.0, 1.0);
    rb_rng_gauss(&r, m, (size_t)n * n, 0.0, 0.3 / sqrt((double)n));
    for (int i = 0; i < n; i++) m[(size_t)i * n + i] += 1.0f;
    rb_rng_gauss(&r, c, (size_t)n, 0.0, 0.5);
    for (int j = 0; j < n; j++) c[j] = expf(c[j]);
    rb_sgemm(0, 0, ntok, n, n, 1.0f, z, n, m, n, 0.0f, x, n);
    for (int t = 0; t < ntok; t++)
        for (int j = 0; j < n; j++) x[(size_t)t * n + j] *= c[j];
    rb_free(z);
    rb_free(m);
    rb_free(c);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->x = rb_alloc((size_t)NTOK * COLS * sizeof(float));
    f->w = rb_alloc((size_t)ROWS * COLS * sizeof(float));
    make_inputs(f->x, NTOK, COLS, 1);
    rb_rng r;
    rb_rng_seed(&r, 2, "gptq-w");
    rb_rng_gauss(&r, f->w, (size_t)ROWS * COLS, 0.0, 0.02);
    rb_hessian hs;
    rb_error err = {0};
    if (rb_hessian_init(&hs, COLS, &err)) return -1;
    for (int t0 = 0; t0 < NTOK; t0 += 256) rb_hessian_add(&hs, f->x + (size_t)t0 * COLS, 256);
    f->h = hs.h;
    rb_free(hs.scratch);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    rb_free(f->x);
    rb_free(f->w);
    rb_free(f->h);
    free(f);
    return 0;
}

static float *copy_w(const fixture *f) {
    float *w = rb_alloc((size_t)ROWS * COLS * sizeof(float));
    assert_non_null(w);
    memcpy(w, f->w, (size_t)ROWS * COLS * sizeof(float));
    return w;
}

static void test_hessian_accumulation(void **state) {
    (void)state;
    /* n = 600 crosses a RB_HESSIAN_BLOCK boundary; uneven batches (incl. an empty one) must give
     * (2/N)·XᵀX over all N tokens */
    enum { N = 600, T = 300 };
    float *x = rb_alloc((size_t)T * N * sizeof(float));
    make_inputs(x, T, N, 5);
    rb_hessian hs;
    rb_error err = {0};
    assert_int_equal(rb_hessian_init(&hs, N, &err), 0);
    const int batches[] = {7, 0, 100, 193};
    int t0 = 0;
    for (size_t b = 0; b < sizeof batches / sizeof *batches; b++) {
        rb_hessian_add(&hs, x + (size_t)t0 * N, batches[b]);
        t0 += batches[b];
    }
    assert_int_equal(hs.nsamples, T);
    double worst = 0, scale = 0;
    for (int i = 0; i < N; i++) scale = fmax(scale, hs.h[(size_t)i * N + i]);
    for (int i = 0; i < N; i += 7)
        for (int j = i; j < N; j += 3) {
            double ref = 0;
            for (int t = 0; t < T; t++) ref += (double)x[(size_t)t * N + i] * x[(size_t)t * N + j];
            ref *= 2.0 / T;
            worst = fmax(worst, fabs(hs.h[(size_t)i * N + j] - ref));
        }
    assert_true(worst < HESSIAN_REL_TOL * scale);
    assert_true(hs.h[1 * N + 0] == 0.0); /* lower triangle untouched */
    rb_hessian_symmetrize(hs.h, N);
    assert_true(hs.h[(size_t)5 * N + 3] == hs.h[(size_t)3 * N + 5]);
    assert_true(hs.h[(size_t)599 * N + 1] == hs.h[(size_t)1 * N + 599]);
    rb_hessian_free(&hs);
    rb_free(x);
    assert_int_equal(rb_hessian_init(&hs, 0, &err), RB_EINVAL);
}

static void test_hessian_error(void **state) {
    (void)state;
    /* tr((W−Q)H(W−Q)ᵀ) against the triple sum, on a shape that spans several row chunks */
    enum { R = 300, C = 9 };
    rb_rng r;
    rb_rng_seed(&r, 4, "herr");
    float w[R * C], q[R * C];
    double h[C * C], a[C * C];
    rb_rng_gauss(&r, w, R * C, 0, 1);
    rb_rng_gauss(&r, q, R * C, 0, 1);
    rb_rng_gauss_d(&r, a, C * C, 0, 1);
    for (int i = 0; i < C; i++) /* H = AᵀA, stored in the upper triangle only */
        for (int j = 0; j < C; j++) {
            double s = 0;
            for (int k = 0; k < C; k++) s += a[k * C + i] * a[k * C + j];
            h[i * C + j] = j >= i ? s : -123.0; /* garbage below: must not be read */
        }
    double ref = 0;
    for (int k = 0; k < R; k++)
        for (int i = 0; i < C; i++)
            for (int j = 0; j < C; j++)
                ref += ((double)w[k * C + i] - q[k * C + i]) * h[i <= j ? i * C + j : j * C + i] *
                       ((double)w[k * C + j] - q[k * C + j]);
    double got;
    rb_error err = {0};
    assert_int_equal(rb_quant_hessian_error(w, q, h, R, C, &got, &err), 0);
    assert_true(fabs(got - ref) < 1e-10 * fabs(ref));
    assert_int_equal(rb_quant_hessian_error(w, w, h, R, C, &got, &err), 0);
    assert_true(got == 0.0);
}

static void test_bits16_identity(void **state) {
    fixture *f = *state;
    float *w = copy_w(f);
    rb_qspec s = rb_qspec_make(RB_QBITS_OFF, 1, RB_QGRAN_CHANNEL, 0);
    rb_gptq_stats st;
    rb_error err = {0};
    assert_int_equal(rb_gptq_quantize(&s, w, ROWS, COLS, f->h, NULL, &st, &err), 0);
    assert_memory_equal(w, f->w, (size_t)ROWS * COLS * sizeof(float));
    assert_true(st.loss == 0.0);
    rb_free(w);
}

/* Every value of each row lies on that row's grid: v = scale·(k − zero), k integer in range. */
static void expect_on_grid(const rb_qspec *s, const float *q, const float *scale, const float *zero, int rows,
                           int cols, int unit_cols) {
    int maxq = rb_qspec_maxq(s), per_row = (cols + unit_cols - 1) / unit_cols;
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) {
            float sc = scale[r * per_row + j / unit_cols], z = zero[r * per_row + j / unit_cols];
            float v = q[(size_t)r * cols + j], k = v / sc + z, kr = nearbyintf(k);
            if (fabsf(k - kr) > 1e-4f || kr < (s->sym ? -(maxq + 1) : 0) || kr > maxq || sc * (kr - z) != v)
                fail_msg("row %d col %d: %g is not on the grid (k = %g)", r, j, (double)v, (double)k);
        }
}

static void test_gptq_beats_rtn(void **state) {
    fixture *f = *state;
    struct {
        int sym, gran, group, act_order, clip_search, static_groups;
    } cases[] = {
        {1, RB_QGRAN_CHANNEL, 0, 0, 0, 0}, {1, RB_QGRAN_CHANNEL, 0, 1, 0, 0}, {0, RB_QGRAN_CHANNEL, 0, 0, 0, 0},
        {0, RB_QGRAN_CHANNEL, 0, 1, 0, 0}, {1, RB_QGRAN_GROUP, 32, 0, 0, 0},  {1, RB_QGRAN_GROUP, 32, 1, 0, 0},
        {0, RB_QGRAN_GROUP, 32, 0, 0, 0},  {0, RB_QGRAN_GROUP, 32, 1, 0, 1},  {1, RB_QGRAN_CHANNEL, 0, 0, 1, 0},
        {1, RB_QGRAN_GROUP, 32, 1, 1, 1},  {1, RB_QGRAN_TENSOR, 0, 0, 0, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        rb_qspec s = rb_qspec_make(4, cases[c].sym, cases[c].gran, cases[c].group);
        s.clip_search = cases[c].clip_search;
        rb_gptq_opts o = rb_gptq_opts_default();
        o.act_order = cases[c].act_order;
        o.static_groups = cases[c].static_groups;
        o.blocksize = 48; /* several blocks and a short last one on 256 columns */
        float *q = copy_w(f), *rtn = copy_w(f), *q2 = copy_w(f);
        rb_gptq_stats st;
        rb_error err = {0};
        assert_int_equal(rb_gptq_quantize(&s, q, ROWS, COLS, f->h, &o, &st, &err), 0);
        /* the parameters it reports (for integer export) reproduce every weight bit for bit — also for
         * act-order with dynamic groups, whose grids cannot be recomputed outside — and asking for
         * them changes nothing */
        rb_wparams wp;
        assert_int_equal(rb_wparams_alloc(&wp, &s, ROWS, COLS, &err), 0);
        rb_qparams_out po = {wp.scale, wp.zero, wp.g_idx};
        o.params = &po;
        assert_int_equal(rb_gptq_quantize(&s, q2, ROWS, COLS, f->h, &o, NULL, &err), 0);
        o.params = NULL;
        assert_memory_equal(q, q2, (size_t)ROWS * COLS * sizeof(float));
        uint8_t *codes = rb_alloc((size_t)ROWS * COLS), zu[ROWS * COLS];
        assert_int_equal(rb_wparams_codes(&s, &wp, q, codes, zu, &err), 0);
        if (wp.g_idx) { /* act-order groups are formed in processing order: g_idx is then not c / group */
            int monotone = 1;
            for (int j = 1; j < COLS; j++) monotone &= wp.g_idx[j] >= wp.g_idx[j - 1];
            assert_int_equal(monotone, !(o.act_order && !o.static_groups));
        }
        q2[5] += 1e-3f; /* off the grid: refused, naming the entry */
        assert_int_equal(rb_wparams_codes(&s, &wp, q2, NULL, NULL, &err), RB_EFORMAT);
        assert_non_null(strstr(err.msg, "[0][5]"));
        rb_free(codes);
        rb_wparams_free(&wp);
        rb_free(q2);
        assert_int_equal(rb_quant_fake(&s, rtn, ROWS, COLS, 0, &err), 0);
        double eg, er;
        assert_int_equal(rb_quant_hessian_error(f->w, q, f->h, ROWS, COLS, &eg, &err), 0);
        assert_int_equal(rb_quant_hessian_error(f->w, rtn, f->h, ROWS, COLS, &er, &err), 0);
        print_message("# case %zu: gptq %.4g rtn %.4g (ratio %.3f) loss %.4g\n", c, eg, er, eg / er, st.loss);
        assert_true(eg <= er);
        assert_true(st.loss > 0 && st.dead_cols == 0);
        /* grid membership where the parameters can be recomputed outside: per-channel/tensor (from
         * the original W) and static groups (from W before any update) */
        if (s.gran != RB_QGRAN_GROUP || o.static_groups) {
            long count;
            assert_int_equal(rb_qparams_count(&s, ROWS, COLS, 0, &count, &err), 0);
            size_t np = (size_t)(count > ROWS ? count : ROWS); /* per-tensor is broadcast to every row */
            float *sc = rb_alloc(np * sizeof(float)), *z = rb_alloc(np * sizeof(float));
            assert_int_equal(rb_qparams_find(&s, f->w, ROWS, COLS, 0, sc, z, &err), 0);
            if (s.gran == RB_QGRAN_TENSOR)
                for (int r = 1; r < ROWS; r++) sc[r] = sc[0], z[r] = z[0];
            expect_on_grid(&s, q, sc, z, ROWS, COLS, s.gran == RB_QGRAN_GROUP ? s.group : COLS);
            rb_free(sc);
            rb_free(z);
        }
        rb_free(q);
        rb_free(rtn);
    }
}

/* Textbook GPTQ in double, column by column with immediate full updates (no lazy blocks), from
 * the same damped Hessian; per-channel parameters from W, or group parameters from the updated W
 * at each group start. */
static void ref_gptq(const rb_qspec *s, float *w, int rows, int cols, const double *h, double percdamp) {
    size_t n = (size_t)cols;
    double *a = rb_alloc(n * n * sizeof(double)), *wd = rb_alloc((size_t)rows * n * sizeof(double));
    double mean = 0;
    for (size_t i = 0; i < n; i++) mean += h[i * n + i] / cols;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) a[i * n + j] = i <= j ? h[i * n + j] : h[j * n + i];
    for (size_t i = 0; i < n; i++) a[i * n + i] += percdamp * mean;
    assert_int_equal(LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', cols, a, cols), 0);
    assert_int_equal(LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'U', cols, a, cols), 0);
    assert_int_equal(LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', cols, a, cols), 0);
    for (size_t i = 0; i < (size_t)rows * n; i++) wd[i] = w[i];
    int maxq = rb_qspec_maxq(s);
    float *tmp = rb_alloc(n * sizeof(float));
    for (int r = 0; r < rows; r++) {
        float sc = 0, z = 0;
        if (s->gran != RB_QGRAN_GROUP) rb_qparams_unit(s, w + (size_t)r * n, cols, &sc, &z, NULL);
        double *wr = wd + (size_t)r * n;
        for (int i = 0; i < cols; i++) {
            if (s->gran == RB_QGRAN_GROUP && i % s->group == 0) {
                int len = i + s->group <= cols ? s->group : cols - i;
                for (int j = 0; j < len; j++) tmp[j] = (float)wr[i + j];
                rb_qparams_unit(s, tmp, len, &sc, &z, NULL);
            }
            float q = rb_quant_value((float)wr[i], sc, z, maxq, s->sym);
            double e = (wr[i] - q) / a[(size_t)i * n + i];
            for (int j = i + 1; j < cols; j++) wr[j] -= e * a[(size_t)i * n + j];
            wr[i] = q;
        }
    }
    for (size_t i = 0; i < (size_t)rows * n; i++) w[i] = (float)wd[i];
    rb_free(a);
    rb_free(wd);
    rb_free(tmp);
}

/* Weights are ~N(0, 0.02²): 4-bit steps are ~5e-3 and fp32 ulps ~2e-9. Group scales computed
 * from fp32- vs double-updated W differ in the last bits, which moves every level by a few ulps;
 * a different rounding decision moves a value by a whole step. */
#define SAME_LEVEL_TOL 1e-6f

static void test_gptq_matches_reference(void **state) {
    fixture *f = *state;
    /* blocksize 16 divides the group size 32, so groups start at block starts and GPTQ's outer-W
     * read sees every earlier update: blocked and unblocked GPTQ are the same algorithm. fp32 vs
     * double arithmetic may flip an occasional rounding, which then propagates along its row. */
    const int grans[][2] = {{RB_QGRAN_CHANNEL, 0}, {RB_QGRAN_GROUP, 32}};
    for (int c = 0; c < 2; c++) {
        rb_qspec s = rb_qspec_make(4, c == 0, grans[c][0], grans[c][1]);
        rb_gptq_opts o = rb_gptq_opts_default();
        o.blocksize = 16;
        float *q = copy_w(f), *ref = copy_w(f);
        rb_error err = {0};
        assert_int_equal(rb_gptq_quantize(&s, q, ROWS, COLS, f->h, &o, NULL, &err), 0);
        ref_gptq(&s, ref, ROWS, COLS, f->h, o.percdamp);
        int same = 0;
        for (int i = 0; i < ROWS * COLS; i++) same += fabsf(q[i] - ref[i]) <= SAME_LEVEL_TOL;
        print_message("# %s: %d of %d entries on the reference's level\n", c ? "group32" : "channel", same,
                      ROWS * COLS);
        assert_true(same >= ROWS * COLS * 0.97);
        double eq, er;
        assert_int_equal(rb_quant_hessian_error(f->w, q, f->h, ROWS, COLS, &eq, &err), 0);
        assert_int_equal(rb_quant_hessian_error(f->w, ref, f->h, ROWS, COLS, &er, &err), 0);
        assert_true(fabs(eq - er) < 0.02 * er);
        rb_free(q);
        rb_free(ref);
    }
}

static void test_dead_columns(void **state) {
    (void)state;
    /* inputs 3 and 10 are always zero: H has zero rows/columns there */
    enum { R = 16, C = 40, T = 200 };
    float *x = rb_alloc((size_t)T * C * sizeof(float));
    make_inputs(x, T, C, 9);
    for (int t = 0; t < T; t++) x[t * C + 3] = x[t * C + 10] = 0.0f;
    rb_hessian hs;
    rb_error err = {0};
    assert_int_equal(rb_hessian_init(&hs, C, &err), 0);
    rb_hessian_add(&hs, x, T);
    float w[R * C];
    rb_rng r;
    rb_rng_seed(&r, 3, "dead");
    rb_rng_gauss(&r, w, R * C, 0, 1);
    for (int act = 0; act <= 1; act++) {
        for (int sym = 0; sym <= 1; sym++) {
            float q[R * C];
            memcpy(q, w, sizeof q);
            rb_qspec s = rb_qspec_make(3, sym, RB_QGRAN_CHANNEL, 0);
            rb_gptq_opts o = rb_gptq_opts_default();
            o.act_order = act;
            rb_gptq_stats st;
            assert_int_equal(rb_gptq_quantize(&s, q, R, C, hs.h, &o, &st, &err), 0);
            assert_int_equal(st.dead_cols, 2);
            for (int i = 0; i < R; i++) {
                assert_true(q[i * C + 3] == 0.0f && q[i * C + 10] == 0.0f);
                for (int j = 0; j < C; j++) assert_true(isfinite(q[i * C + j]));
            }
        }
    }
    rb_hessian_free(&hs);
    rb_free(x);
}

static void test_not_positive_definite(void **state) {
    (void)state;
    /* an indefinite "Hessian" (diag 1, −5, 1, 1): damping 0.01·mean(diag) = −0.005 cannot fix it */
    double h[16] = {1, 0, 0, 0, 0, -5, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8}, w0[8];
    memcpy(w0, w, sizeof w);
    rb_qspec s = rb_qspec_make(4, 1, RB_QGRAN_CHANNEL, 0);
    rb_gptq_opts o = rb_gptq_opts_default();
    o.name = "layers.0.mlp.down_proj";
    rb_error err = {0};
    assert_int_equal(rb_gptq_quantize(&s, w, 2, 4, h, &o, NULL, &err), RB_ENUMERIC);
    assert_non_null(strstr(err.msg, "layers.0.mlp.down_proj"));
    assert_non_null(strstr(err.msg, "positive definite"));
    assert_memory_equal(w, w0, sizeof w);
    /* bad arguments */
    s.gran = RB_QGRAN_HEAD;
    assert_int_equal(rb_gptq_quantize(&s, w, 2, 4, h, &o, NULL, &err), RB_EINVAL);
    s.gran = RB_QGRAN_CHANNEL;
    o.blocksize = 0;
    assert_int_equal(rb_gptq_quantize(&s, w, 2, 4, h, &o, NULL, &err), RB_EINVAL);
}

/* SIGINT/SIGTERM are honoured inside one linear's column loop (issue 16), leaking nothing (ASan). */
static void test_interrupted(void **state) {
    (void)state;
    enum { ROWS = 3, COLS = 300 };
    double *h = calloc((size_t)COLS * COLS, sizeof *h);
    float *w = malloc((size_t)ROWS * COLS * sizeof *w);
    assert_non_null(h);
    assert_non_null(w);
    for (int j = 0; j < COLS; j++) h[(size_t)j * COLS + j] = 1.0 + j % 7;
    for (int i = 0; i < ROWS * COLS; i++) w[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    rb_qspec s = rb_qspec_make(4, 1, RB_QGRAN_CHANNEL, 0);
    rb_gptq_opts o = rb_gptq_opts_default();
    o.name = "layers.1.mlp.down_proj";
    for (int act = 0; act < 2; act++) {
        o.act_order = act;
        rb_error err = {0};
        rb_interrupt_raise();
        assert_int_equal(rb_gptq_quantize(&s, w, ROWS, COLS, h, &o, NULL, &err), RB_EINTERRUPTED);
        assert_non_null(strstr(err.msg, "layers.1.mlp.down_proj: interrupted at column 0 of 300"));
        rb_interrupt_clear();
        assert_int_equal(rb_gptq_quantize(&s, w, ROWS, COLS, h, &o, NULL, &err), 0);
    }
    free(h);
    free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hessian_accumulation),
        cmocka_unit_test(test_hessian_error),
        cmocka_unit_test(test_bits16_identity),
        cmocka_unit_test(test_gptq_beats_rtn),
        cmocka_unit_test(test_gptq_matches_reference),
        cmocka_unit_test(test_dead_columns),
        cmocka_unit_test(test_not_positive_definite),
        cmocka_unit_test(test_interrupted),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* Quantizers (METHODS.md §8.1): hand-computed RTN cases for every variant, granularities, clipping
 * and clip search. Inputs are chosen so that every scale is exact in fp32 (powers of two), which
 * makes x/scale land exactly on k + 0.5 where a tie is wanted. */
#include "rb_test.h"

#include <math.h>

#include "core/rb_rng.h"
#include "model/rb_forward.h"
#include "quant/rb_qpreset.h"
#include "quant/rb_quant.h"

#define N_OF(a) (sizeof(a) / sizeof *(a))

/* Compares a quantized vector with hand-computed values exactly (they are all exact in fp32). */
static void expect_exact(const float *got, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (got[i] != want[i]) fail_msg("element %zu: got %.9g, want %.9g", i, (double)got[i], (double)want[i]);
    }
}

/* Fake-quantizes a copy of x as one [1][n] row and checks it against want. */
static void check_row(const rb_qspec *s, const float *x, const float *want, size_t n) {
    float buf[64];
    assert_true(n <= N_OF(buf));
    memcpy(buf, x, n * sizeof *x);
    rb_error err = {0};
    assert_int_equal(rb_quant_fake(s, buf, 1, (int)n, 0, &err), 0);
    expect_exact(buf, want, n);
}

static void test_sym4_ties(void **state) {
    (void)state;
    rb_qspec s = rb_qspec_make(4, 1, RB_QGRAN_TOKEN, 0);
    /* maxq = 7, scale = max|x|/7 = 1.75/7 = 0.25; q = clamp(round(x/0.25), −8, 7)
     *   1.75 → 7 → 1.75;   0.375 → 1.5 → 2 → 0.5;   0.625 → 2.5 → 2 → 0.5;   −0.125 → −0.5 → −0 → 0;
     *  −0.875 → −3.5 → −4 → −1.0;   0.3 → 1.2 → 1 → 0.25;   −0.625 → −2.5 → −2 → −0.5;
     *   0.875 → 3.5 → 4 → 1.0;  0.125 → 0.5 → 0 → 0 */
    const float x[] = {1.75f, 0.375f, 0.625f, -0.125f, -0.875f, 0.3f, -0.625f, 0.875f, 0.125f};
    const float want[] = {1.75f, 0.5f, 0.5f, 0.0f, -1.0f, 0.25f, -0.5f, 1.0f, 0.0f};
    check_row(&s, x, want, N_OF(x));
    float sc, z;
    rb_qparams_unit(&s, x, N_OF(x), &sc, &z, NULL);
    assert_true(sc == 0.25f && z == 0.0f);
}

static void test_sym3_clip(void **state) {
    (void)state;
    rb_qspec s = rb_qspec_make(3, 1, RB_QGRAN_TOKEN, 0);
    s.clip = 0.375f;
    /* maxq = 3; xmin = −2·0.375 = −0.75, xmax = 1.5·0.375 = 0.5625; scale = max(0.75, 0.5625)/3 = 0.25;
     * q = clamp(round(x/0.25), −4, 3):
     *   −2 → −8 → −4 → −1.0;   1.5 → 6 → 3 → 0.75;   0.1 → 0.4 → 0 → 0;   −0.875 → −3.5 → −4 → −1.0;
     *   0.625 → 2.5 → 2 → 0.5;   −0.375 → −1.5 → −2 → −0.5 */
    const float x[] = {-2.0f, 1.5f, 0.1f, -0.875f, 0.625f, -0.375f};
    const float want[] = {-1.0f, 0.75f, 0.0f, -1.0f, 0.5f, -0.5f};
    check_row(&s, x, want, N_OF(x));
}

static void test_asym4(void **state) {
    (void)state;
    rb_qspec s = rb_qspec_make(4, 0, RB_QGRAN_TOKEN, 0);
    /* maxq = 15; xmin = −0.5, xmax = 3.25; scale = 3.75/15 = 0.25; zero = round(0.5/0.25) = 2;
     * q = clamp(round(x/0.25) + 2, 0, 15), dequant 0.25·(q − 2):
     *   −0.5 → −2+2 = 0 → −0.5;   3.25 → 13+2 = 15 → 3.25;   1.0 → 4+2 → 1.0;   0.3125 → 1.25 → 1+2 → 0.25;
     *   0.375 → 1.5 → 2+2 → 0.5;   0.625 → 2.5 → 2+2 → 0.5;   −0.375 → −1.5 → −2+2 → −0.5 */
    const float x[] = {-0.5f, 3.25f, 1.0f, 0.3125f, 0.375f, 0.625f, -0.375f};
    const float want[] = {-0.5f, 3.25f, 1.0f, 0.25f, 0.5f, 0.5f, -0.5f};
    check_row(&s, x, want, N_OF(x));
    float sc, z;
    rb_qparams_unit(&s, x, N_OF(x), &sc, &z, NULL);
    assert_true(sc == 0.25f && z == 2.0f);
}

static void test_asym4_zero_tie(void **state) {
    (void)state;
    rb_qspec s = rb_qspec_make(4, 0, RB_QGRAN_TOKEN, 0);
    /* xmin = −0.625, xmax = 3.125: scale = 3.75/15 = 0.25, zero = round(2.5) = 2 (half to even):
     *   −0.625 → round(−2.5) = −2, +2 = 0 → 0.25·(0−2) = −0.5;   3.125 → round(12.5) = 12, +2 = 14 → 3.0;
     *   1.125 → round(4.5) = 4, +2 → 1.0 */
    const float x[] = {-0.625f, 3.125f, 1.125f};
    const float want[] = {-0.5f, 3.0f, 1.0f};
    check_row(&s, x, want, N_OF(x));
    float sc, z;
    rb_qparams_unit(&s, x, N_OF(x), &sc, &z, NULL);
    assert_true(sc == 0.25f && z == 2.0f);
}

static void test_asym3_positive_only(void **state) {
    (void)state;
    rb_qspec s = rb_qspec_make(3, 0, RB_QGRAN_TOKEN, 0);
    /* maxq = 7; all positive, so xmin = min(0.1, 0) = 0, xmax = 1.75: scale = 0.25, zero = 0:
     *   1.75 → 7;   0.5 → 2 → 0.5;   0.875 → 3.5 → 4 → 1.0;   0.625 → 2.5 → 2 → 0.5;   0.1 → 0.4 → 0 → 0 */
    const float x[] = {1.75f, 0.5f, 0.875f, 0.625f, 0.1f};
    const float want[] = {1.75f, 0.5f, 1.0f, 0.5f, 0.0f};
    check_row(&s, x, want, N_OF(x));
}

static void test_negative_only(void **state) {
    (void)state;
    /* asym 4-bit: xmin = −3.75, xmax = max(−0.25, 0) = 0: scale = 0.25, zero = round(15) = 15:
     *   −1 → −4+15 = 11 → −1.0;   −0.25 → 14 → −0.25;   −3.75 → 0 → −3.75;   −0.375 → −1.5 → −2+15 → −0.5 */
    rb_qspec a = rb_qspec_make(4, 0, RB_QGRAN_TOKEN, 0);
    const float xa[] = {-1.0f, -0.25f, -3.75f, -0.375f};
    const float wa[] = {-1.0f, -0.25f, -3.75f, -0.5f};
    check_row(&a, xa, wa, N_OF(xa));
    /* sym 4-bit: scale = 1.75/7 = 0.25:  −0.3 → −1.2 → −1 → −0.25;  −0.875 → −3.5 → −4 → −1.0 */
    rb_qspec s = rb_qspec_make(4, 1, RB_QGRAN_TOKEN, 0);
    const float xs[] = {-1.75f, -0.3f, -0.875f};
    const float ws[] = {-1.75f, -0.25f, -1.0f};
    check_row(&s, xs, ws, N_OF(xs));
}

static void test_all_zero(void **state) {
    (void)state;
    const float x[4] = {0};
    float sc, z;
    /* sym: scale 0 → 1 */
    rb_qspec s = rb_qspec_make(4, 1, RB_QGRAN_TOKEN, 0);
    rb_qparams_unit(&s, x, 4, &sc, &z, NULL);
    assert_true(sc == 1.0f && z == 0.0f);
    check_row(&s, x, x, 4);
    /* asym: QuaRot widens to [−1, 1]: scale = 2/15, which rounds up in fp32 (0.13333334), so
     * zero = round(1/0.13333334) = round(7.4999996) = 7, as torch computes it in fp32 too */
    rb_qspec a = rb_qspec_make(4, 0, RB_QGRAN_TOKEN, 0);
    rb_qparams_unit(&a, x, 4, &sc, &z, NULL);
    assert_true(sc == 2.0f / 15.0f && z == 7.0f);
    check_row(&a, x, x, 4);
    /* with clip search as well */
    a.clip_search = 1;
    check_row(&a, x, x, 4);
}

static void test_raw_minmax(void **state) {
    (void)state;
    rb_qspec s = rb_qspec_make(4, 0, RB_QGRAN_TOKEN, 0);
    s.raw_minmax = 1;
    /* raw range (0 not forced in): xmin = 1, xmax = 4.75: scale = 3.75/15 = 0.25, zero = round(−4) = −4;
     *   1 → 4−4 = 0 → 1.0;   2 → 8−4 → 2.0;   4.75 → 19−4 = 15 → 4.75;   1.125 → 4.5 → 4, −4 = 0 → 1.0;
     *   1.375 → 5.5 → 6, −4 = 2 → 0.25·(2+4) = 1.5 */
    const float x[] = {1.0f, 2.0f, 4.75f, 1.125f, 1.375f};
    const float want[] = {1.0f, 2.0f, 4.75f, 1.0f, 1.5f};
    check_row(&s, x, want, N_OF(x));
    /* clip 0.5 (RUQuant lac/swc): xmin = −0.5, xmax = 3.25: scale 0.25, zero 2;
     *   6.5 → 26+2 → 15 → 3.25;   −1 → −4+2 → 0 → −0.5;   0.625 → 2.5 → 2+2 → 0.5 */
    s.clip = 0.5f;
    const float x2[] = {-1.0f, 6.5f, 0.625f};
    const float w2[] = {-0.5f, 3.25f, 0.5f};
    check_row(&s, x2, w2, N_OF(x2));
    /* constant row: scale (3−3)/15 = 0 clamps to 1e-5, zero = round(clamp(−3/1e-5, ±1e4)) = −1e4;
     * q = clamp(300000 − 10000, 0, 15) = 15 → 1e-5·(15 + 10000) = 0.10015 */
    s.clip = 1.0f;
    const float x3[] = {3.0f, 3.0f};
    float sc, z, buf[2] = {3.0f, 3.0f};
    rb_qparams_unit(&s, x3, 2, &sc, &z, NULL);
    assert_true(sc == 1e-5f && z == -1e4f);
    rb_error err = {0};
    assert_int_equal(rb_quant_fake(&s, buf, 1, 2, 0, &err), 0);
    assert_float_equal(buf[0], 0.10015, 1e-6);
}

/* A 2×8 matrix whose scales are exact at every granularity (sym 4-bit, maxq 7). */
static const float g_mat[2][8] = {
    {1.75f, 0.5f, -0.25f, 0.375f, 3.5f, -1.0f, 0.75f, 0.125f},
    {-0.875f, 0.0f, 0.125f, 0.25f, 0.4375f, -0.3f, 0.0625f, 0.2f},
};

static void quant_mat(int gran, int group, int head_dim, float out[2][8]) {
    rb_qspec s = rb_qspec_make(4, 1, gran, group);
    memcpy(out, g_mat, sizeof g_mat);
    rb_error err = {0};
    assert_int_equal(rb_quant_fake(&s, &out[0][0], 2, 8, head_dim, &err), 0);
}

static void test_granularities(void **state) {
    (void)state;
    float q[2][8];
    /* per tensor: scale = 3.5/7 = 0.5 for everything.
     * row 0: 1.75 → 3.5 → 4 → 2.0; 0.5 → 1; −0.25 → −0.5 → 0; 0.375 → 0.75 → 1 → 0.5; 3.5 → 7; −1 → −2;
     *        0.75 → 1.5 → 2 → 1.0; 0.125 → 0.25 → 0
     * row 1: −0.875 → −1.75 → −2 → −1.0; 0; 0.125 → 0; 0.25 → 0.5 → 0; 0.4375 → 0.875 → 1 → 0.5;
     *        −0.3 → −0.6 → −1 → −0.5; 0.0625 → 0; 0.2 → 0.4 → 0 */
    const float tensor[2][8] = {{2.0f, 0.5f, 0.0f, 0.5f, 3.5f, -1.0f, 1.0f, 0.0f},
                                {-1.0f, 0.0f, 0.0f, 0.0f, 0.5f, -0.5f, 0.0f, 0.0f}};
    quant_mat(RB_QGRAN_TENSOR, 0, 0, q);
    expect_exact(&q[0][0], &tensor[0][0], 16);
    /* per row (channel = token): row 0 as above (its max is 3.5); row 1 scale = 0.875/7 = 0.125:
     *   −0.875 → −7; 0; 0.125 → 1; 0.25 → 2; 0.4375 → 3.5 → 4 → 0.5; −0.3 → −2.4 → −2 → −0.25;
     *   0.0625 → 0.5 → 0; 0.2 → 1.6 → 2 → 0.25 */
    const float row[2][8] = {{2.0f, 0.5f, 0.0f, 0.5f, 3.5f, -1.0f, 1.0f, 0.0f},
                             {-0.875f, 0.0f, 0.125f, 0.25f, 0.5f, -0.25f, 0.0f, 0.25f}};
    quant_mat(RB_QGRAN_CHANNEL, 0, 0, q);
    expect_exact(&q[0][0], &row[0][0], 16);
    quant_mat(RB_QGRAN_TOKEN, 0, 0, q);
    expect_exact(&q[0][0], &row[0][0], 16);
    /* groups of 4: scales 0.25, 0.5 (row 0) and 0.125, 0.0625 (row 1)
     *   r0g0: 1.75 → 7; 0.5 → 2; −0.25 → −1; 0.375 → 1.5 → 2 → 0.5
     *   r0g1: 3.5; −1.0; 0.75 → 1.5 → 2 → 1.0; 0.125 → 0.25 → 0
     *   r1g0: exact on 0.125 steps
     *   r1g1: 0.4375 → 7; −0.3 → −4.8 → −5 → −0.3125; 0.0625 → 1; 0.2 → 3.2 → 3 → 0.1875 */
    const float grp[2][8] = {{1.75f, 0.5f, -0.25f, 0.5f, 3.5f, -1.0f, 1.0f, 0.0f},
                             {-0.875f, 0.0f, 0.125f, 0.25f, 0.4375f, -0.3125f, 0.0625f, 0.1875f}};
    quant_mat(RB_QGRAN_GROUP, 4, 0, q);
    expect_exact(&q[0][0], &grp[0][0], 16);
    /* heads of 4 columns are the same units */
    quant_mat(RB_QGRAN_HEAD, 0, 4, q);
    expect_exact(&q[0][0], &grp[0][0], 16);

    /* a ragged last group (8 = 3 + 3 + 2): parameter layout [rows][3] */
    rb_qspec s = rb_qspec_make(4, 1, RB_QGRAN_GROUP, 3);
    rb_error err = {0};
    long count;
    assert_int_equal(rb_qparams_count(&s, 2, 8, 0, &count, &err), 0);
    assert_int_equal(count, 6);
    float sc[6], z[6];
    assert_int_equal(rb_qparams_find(&s, &g_mat[0][0], 2, 8, 0, sc, z, &err), 0);
    /* row 0: {1.75, 0.5, −0.25} → 0.25; {0.375, 3.5, −1} → 0.5; {0.75, 0.125} → 0.75/7 */
    assert_true(sc[0] == 0.25f && sc[1] == 0.5f && sc[2] == 0.75f / 7.0f);
    /* row 1: {−0.875, 0, 0.125} → 0.125; {0.25, 0.4375, −0.3} → 0.0625; {0.0625, 0.2} → 0.2/7 */
    assert_true(sc[3] == 0.125f && sc[4] == 0.0625f && sc[5] == 0.2f / 7.0f);
    /* rb_quant_apply with found parameters equals rb_quant_fake */
    float a[2][8], b[2][8];
    memcpy(a, g_mat, sizeof a);
    memcpy(b, g_mat, sizeof b);
    assert_int_equal(rb_quant_apply(&s, &a[0][0], 2, 8, 0, sc, z, &err), 0);
    assert_int_equal(rb_quant_fake(&s, &b[0][0], 2, 8, 0, &err), 0);
    expect_exact(&a[0][0], &b[0][0], 16);
    /* head_dim must divide the row */
    s.gran = RB_QGRAN_HEAD;
    assert_int_equal(rb_quant_fake(&s, &a[0][0], 2, 8, 3, &err), RB_EINVAL);
    assert_int_equal(rb_qparams_count(&s, 2, 8, 0, &count, &err), RB_EINVAL);
}

static void test_bits16_identity(void **state) {
    (void)state;
    float x[3][5], y[3][5];
    rb_rng r;
    rb_rng_seed(&r, 1, "q16");
    rb_rng_gauss(&r, &x[0][0], 15, 0.0, 3.0);
    memcpy(y, x, sizeof x);
    for (int g = 0; g < RB_QGRAN_COUNT; g++) {
        rb_qspec s = rb_qspec_make(RB_QBITS_OFF, 0, g, 2);
        s.clip_search = 1;
        rb_error err = {0};
        assert_int_equal(rb_quant_fake(&s, &y[0][0], 3, 5, 5, &err), 0);
        assert_memory_equal(x, y, sizeof x);
        float sc[15], z[15];
        assert_int_equal(rb_qparams_find(&s, &x[0][0], 3, 5, 5, sc, z, &err), 0);
        assert_true(sc[0] == 1.0f && z[0] == 0.0f);
    }
}

/* Clip-search reference in double: the same candidate grid, error Σ|q − x|^2.4 with libm pow. */
static float ref_search(const rb_qspec *s, const float *x, int n) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
    float xmin = s->raw_minmax ? lo * s->clip : fminf(lo, 0) * s->clip;
    float xmax = s->raw_minmax ? hi * s->clip : fmaxf(hi, 0) * s->clip;
    int maxq = rb_qspec_maxq(s);
    double best = INFINITY;
    float bestp = 0;
    for (int i = 0; i < RB_QCLIP_STEPS; i++) {
        float p = (float)(1.0 - i / 100.0), sc, z = 0;
        if (s->sym) {
            sc = p * fmaxf(-xmin, xmax) / (float)maxq;
        } else {
            sc = (p * xmax - p * xmin) / (float)maxq;
            if (s->raw_minmax) sc = fminf(fmaxf(sc, 1e-5f), 1e4f);
            z = nearbyintf(-(p * xmin) / sc);
        }
        double e = 0;
        for (int j = 0; j < n; j++) {
            float q = nearbyintf(x[j] / sc) + z;
            q = fminf(fmaxf(q, s->sym ? -(float)(maxq + 1) : 0.0f), (float)maxq);
            e += pow(fabs((double)(sc * (q - z) - x[j])), 2.4);
        }
        if (e < best) best = e, bestp = p;
    }
    return bestp;
}

static void test_clip_search_outlier(void **state) {
    (void)state;
    /* one outlier 4.0 among 63 ones, sym 4-bit: scale(p) = 4p/7. Errors Σ|q − x|^2.4 (fp32
     * quantization, double sums): p = 1.00: 1.0 → 1.75 steps → 2 → 1.1429, 63·0.1429^2.4 = 0.590;
     * p = 0.92: 0.1158; p = 0.91: 1.0 → 2 → 1.04, 63·0.04^2.4 + (4 − 3.64)^2.4 = 0.0277 + 0.0862 = 0.1139
     * (the minimum); p = 0.90: 0.1233; p = 0.25: the outlier clips to 1.0, 3^2.4 = 13.97. */
    float x[64];
    x[0] = 4.0f;
    for (int i = 1; i < 64; i++) x[i] = 1.0f;
    rb_qspec s = rb_qspec_make(4, 1, RB_QGRAN_CHANNEL, 0);
    s.clip_search = 1;
    float sc, z, p;
    rb_qparams_unit(&s, x, 64, &sc, &z, &p);
    assert_true(p == 0.91f);
    assert_true(sc == 0.91f * 4.0f / 7.0f);
    assert_true(p == ref_search(&s, x, 64));
    /* without the outlier the unshrunk range is exact (every 1.0 on the grid): p stays 1 */
    rb_qparams_unit(&s, x + 1, 63, &sc, &z, &p);
    assert_true(p == 1.0f);
    /* ties keep the larger p: a constant row has error 0 from p = 1 on */
    const float c[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    s.sym = 0;
    rb_qparams_unit(&s, c, 4, &sc, &z, &p);
    assert_true(p == 1.0f);
}

static void test_clip_search_random(void **state) {
    (void)state;
    /* heavy-tailed rows (Gaussian plus sparse spikes); every variant agrees with the double reference */
    rb_rng r;
    rb_rng_seed(&r, 7, "clip");
    float x[300];
    for (int trial = 0; trial < 12; trial++) {
        rb_rng_gauss(&r, x, 300, 0.1 * (trial % 3), 1.0);
        for (int k = 0; k < 3; k++) x[rb_rng_below(&r, 300)] *= 6.0f;
        rb_qspec s = rb_qspec_make(trial % 2 ? 3 : 4, trial % 4 < 2, RB_QGRAN_CHANNEL, 0);
        s.clip_search = 1;
        if (trial >= 8) s.sym = 0, s.raw_minmax = 1, s.clip = 0.9f;
        float sc, z, p;
        rb_qparams_unit(&s, x, 300, &sc, &z, &p);
        print_message("# trial %d: p = %.2f\n", trial, (double)p);
        assert_true(p == ref_search(&s, x, 300));
    }
}

static void test_clip_search_threads(void **state) {
    (void)state;
    /* 64 × 2048 is above the threading threshold: the split search must equal the per-row one,
     * and rb_quant_fake must equal find + apply */
    enum { R = 64, C = 2048 };
    float *x = malloc(sizeof(float) * R * C), *y = malloc(sizeof(float) * R * C);
    rb_rng r;
    rb_rng_seed(&r, 13, "threads");
    rb_rng_gauss(&r, x, (size_t)R * C, 0.0, 1.0);
    for (int k = 0; k < 200; k++) x[rb_rng_below(&r, (size_t)R * C)] *= 8.0f;
    rb_qspec s = rb_qspec_make(4, 0, RB_QGRAN_CHANNEL, 0);
    s.clip_search = 1;
    float sc[R], z[R];
    rb_error err = {0};
    assert_int_equal(rb_qparams_find(&s, x, R, C, 0, sc, z, &err), 0);
    for (int i = 0; i < R; i++) {
        float a, b;
        rb_qparams_unit(&s, x + (size_t)i * C, C, &a, &b, NULL);
        assert_true(a == sc[i] && b == z[i]);
    }
    memcpy(y, x, sizeof(float) * R * C);
    assert_int_equal(rb_quant_fake(&s, y, R, C, 0, &err), 0);
    assert_int_equal(rb_quant_apply(&s, x, R, C, 0, sc, z, &err), 0);
    assert_memory_equal(x, y, sizeof(float) * R * C);
    free(x);
    free(y);
}

static void test_round_even(void **state) {
    (void)state;
    /* every k + 0.5 and k ± 0.25 over the range a quantizer sees, plus random and huge values */
    for (int k = -300; k <= 300; k++)
        for (int f = -3; f <= 3; f++) {
            float v = (float)k + 0.25f * (float)f;
            assert_true(rb_round_even(v) == nearbyintf(v));
        }
    rb_rng r;
    rb_rng_seed(&r, 3, "round");
    for (int i = 0; i < 100000; i++) {
        float v = (float)((rb_rng_uniform(&r) - 0.5) * 1e7);
        assert_true(rb_round_even(v) == nearbyintf(v) || fabsf(v) >= 4194304.0f);
    }
    /* beyond 2^22 the rounding may differ but the clamped quantized value cannot */
    const float big[] = {5e6f, -5e6f, 1.3e7f, -1.3e7f, 3e9f, -3e9f, 1e30f, -1e30f};
    for (size_t i = 0; i < N_OF(big); i++) {
        for (int sym = 0; sym <= 1; sym++) {
            float zero = sym ? 0.0f : 8.0f, lo = sym ? -8.0f : 0.0f, hi = sym ? 7.0f : 15.0f;
            float q = fminf(fmaxf(nearbyintf(big[i] / 0.5f) + zero, lo), hi);
            assert_true(rb_quant_value(big[i], 0.5f, zero, sym ? 7 : 15, sym) == 0.5f * (q - zero));
        }
    }
}

static void test_spec_names(void **state) {
    (void)state;
    rb_error err = {0};
    for (int g = 0; g < RB_QGRAN_COUNT; g++) {
        int back = -1;
        assert_int_equal(rb_qgran_parse(rb_qgran_name(g), &back, &err), 0);
        assert_int_equal(back, g);
    }
    int g;
    assert_int_equal(rb_qgran_parse("row", &g, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "row"));
    assert_string_equal(rb_qgran_name(99), "?");
    char buf[96];
    rb_qspec s = rb_qspec_make(4, 0, RB_QGRAN_GROUP, 128);
    s.clip = 0.9f;
    s.clip_search = 1;
    s.raw_minmax = 1;
    rb_qspec_format(&s, buf, sizeof buf);
    assert_string_equal(buf, "int4 asym group128 clip=0.90 search raw");
    s.bits = RB_QBITS_OFF;
    rb_qspec_format(&s, buf, sizeof buf);
    assert_string_equal(buf, "off");
    /* invalid specs */
    rb_qspec bad = rb_qspec_make(9, 1, RB_QGRAN_TOKEN, 0);
    assert_int_equal(rb_qspec_check(&bad, &err), RB_EINVAL);
    bad = rb_qspec_make(4, 1, RB_QGRAN_GROUP, 0);
    assert_int_equal(rb_qspec_check(&bad, &err), RB_EINVAL);
    bad = rb_qspec_make(4, 1, RB_QGRAN_TOKEN, 0);
    bad.raw_minmax = 1;
    assert_int_equal(rb_qspec_check(&bad, &err), RB_EINVAL);
    bad.raw_minmax = 0, bad.clip = 0.0f;
    assert_int_equal(rb_qspec_check(&bad, &err), RB_EINVAL);
    bad.clip = 1.0f, bad.gran = 17;
    assert_int_equal(rb_qspec_check(&bad, &err), RB_EINVAL);
    float x[4] = {0};
    assert_int_equal(rb_quant_fake(&bad, x, 1, 4, 0, &err), RB_EINVAL);
    rb_qspec ok = rb_qspec_make(8, 1, RB_QGRAN_TOKEN, 0);
    assert_int_equal(rb_qspec_check(&ok, &err), 0);
    assert_int_equal(rb_qspec_maxq(&ok), 127);
    ok.sym = 0;
    assert_int_equal(rb_qspec_maxq(&ok), 255);
}

static void test_grid_large(void **state) {
    (void)state;
    /* on a long row (vectorized path plus a tail) every output is scale·(integer in range − zero) */
    enum { R = 3, C = 4099 };
    static float x[R][C], y[R][C];
    rb_rng r;
    rb_rng_seed(&r, 11, "grid");
    rb_rng_gauss(&r, &x[0][0], R * C, 0.0, 2.0);
    for (int sym = 0; sym <= 1; sym++) {
        rb_qspec s = rb_qspec_make(4, sym, RB_QGRAN_TOKEN, 0);
        s.clip = 0.9f;
        memcpy(y, x, sizeof x);
        rb_error err = {0};
        assert_int_equal(rb_quant_fake(&s, &y[0][0], R, C, 0, &err), 0);
        float sc[R], z[R];
        assert_int_equal(rb_qparams_find(&s, &x[0][0], R, C, 0, sc, z, &err), 0);
        int maxq = rb_qspec_maxq(&s);
        for (int i = 0; i < R; i++)
            for (int j = 0; j < C; j++) {
                float want = sc[i] * (fminf(fmaxf(nearbyintf(x[i][j] / sc[i]) + z[i], sym ? -(float)(maxq + 1) : 0.0f),
                                            (float)maxq) -
                                      z[i]);
                if (y[i][j] != want) fail_msg("row %d col %d: %g vs %g", i, j, (double)y[i][j], (double)want);
            }
    }
}

/* The site hook of a preset: o_proj input per (token, head) unless o_proj is ROW (QuaRot, after the
 * cross-head Hadamard), AUTO resolved by the cross-head choice; Q quantized only when quant.q is set. */
static void test_site_hook(void **state) {
    (void)state;
    enum { TOK = 3, H = 2, HD = 4, C = H * HD };
    rb_error err = {0};
    rb_quant_cfg q;
    assert_int_equal(rb_quant_preset("W4A4KV4", &q, &err), 0);
    assert_int_equal(q.o_proj, RB_OPROJ_AUTO);
    assert_int_equal(q.q.bits, RB_QBITS_OFF);
    float x[TOK * C], a[TOK * C], b[TOK * C];
    for (int i = 0; i < TOK * C; i++) x[i] = (float)((i * 7) % 11) * (i % C < HD ? 1.0f : 40.0f) - 3.0f;
    rb_site_info in = {.layer = 0, .site = RB_SITE_O_IN, .n_seq = 1, .seq_len = TOK, .cols = C, .n_groups = H,
                       .group_dim = HD};
    /* AUTO acts as HEAD: equal to quantizing each head as its own token */
    memcpy(a, x, sizeof x);
    assert_int_equal(rb_quant_site_hook(&q, &in, a, &err), 0);
    memcpy(b, x, sizeof x);
    assert_int_equal(rb_quant_fake(&q.a, b, TOK * H, HD, 0, &err), 0);
    assert_memory_equal(a, b, sizeof a);
    /* resolved with the cross-head transform: ROW, one scale over the whole row */
    rb_quant_cfg r = q;
    rb_quant_cfg_resolve(&r, 1);
    assert_int_equal(r.o_proj, RB_OPROJ_ROW);
    memcpy(a, x, sizeof x);
    assert_int_equal(rb_quant_site_hook(&r, &in, a, &err), 0);
    memcpy(b, x, sizeof x);
    assert_int_equal(rb_quant_fake(&q.a, b, TOK, C, 0, &err), 0);
    assert_memory_equal(a, b, sizeof a);
    assert_true(memcmp(a, x, sizeof x) != 0);
    rb_quant_cfg_resolve(&q, 0);
    assert_int_equal(q.o_proj, RB_OPROJ_HEAD);
    /* other sites use the per-token spec over the row; Q is off unless quant.q */
    in.site = RB_SITE_Q;
    memcpy(a, x, sizeof x);
    assert_int_equal(rb_quant_site_hook(&q, &in, a, &err), 0);
    assert_memory_equal(a, x, sizeof a);
    q.q = rb_qspec_make(4, 0, RB_QGRAN_HEAD, 0);
    assert_true(rb_quant_cfg_active(&q));
    assert_int_equal(rb_quant_site_hook(&q, &in, a, &err), 0);
    memcpy(b, x, sizeof x);
    assert_int_equal(rb_quant_fake(&q.q, b, TOK, C, HD, &err), 0);
    assert_memory_equal(a, b, sizeof a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sym4_ties),
        cmocka_unit_test(test_site_hook),
        cmocka_unit_test(test_sym3_clip),
        cmocka_unit_test(test_asym4),
        cmocka_unit_test(test_asym4_zero_tie),
        cmocka_unit_test(test_asym3_positive_only),
        cmocka_unit_test(test_negative_only),
        cmocka_unit_test(test_all_zero),
        cmocka_unit_test(test_raw_minmax),
        cmocka_unit_test(test_granularities),
        cmocka_unit_test(test_bits16_identity),
        cmocka_unit_test(test_clip_search_outlier),
        cmocka_unit_test(test_clip_search_random),
        cmocka_unit_test(test_clip_search_threads),
        cmocka_unit_test(test_round_even),
        cmocka_unit_test(test_spec_names),
        cmocka_unit_test(test_grid_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

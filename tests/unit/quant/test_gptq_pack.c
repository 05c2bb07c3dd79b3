/* GPTQ checkpoint packing (export/rb_gptq_pack.h): the worked example of docs/export-gptq.md word
 * for word, AutoGPTQ's explicit 3-bit loop as an independent reference, pack/unpack/dequant round
 * trips for 2/3/4/8 bits with per-channel, grouped and act-order g_idx (F32 scales bit for bit, F16
 * and BF16 scales rounded), unaligned buffers, and the refusals (bits, widths, zero 0 in v1, zeros
 * out of range, g_idx out of range, non-finite scales). */
#include "rb_test.h"

#include <math.h>

#include "core/rb_half.h"
#include "core/rb_rng.h"
#include "export/rb_gptq_pack.h"
#include "model/rb_safetensors.h"

/* docs/export-gptq.md: 8 outputs × 8 inputs, 4 bits, group_size 4 (2 groups), asymmetric, no
 * act order. q[o][c] = (o + 3c) mod 16; zu[o][0] = o + 1, zu[o][1] = 15 − o; scales 0.5 and 0.25. */
static void worked_example(uint8_t q[64], uint8_t zu[16], float scale[16]) {
    for (int o = 0; o < 8; o++) {
        for (int c = 0; c < 8; c++) q[o * 8 + c] = (uint8_t)((o + 3 * c) % 16);
        zu[o * 2 + 0] = (uint8_t)(o + 1);
        zu[o * 2 + 1] = (uint8_t)(15 - o);
        scale[o * 2 + 0] = 0.5f;
        scale[o * 2 + 1] = 0.25f;
    }
}

static void test_worked_example(void **state) {
    (void)state;
    uint8_t q[64], zu[16], q2[64];
    float scale[16], scales[16], w[64];
    worked_example(q, zu, scale);
    rb_gptq_dims d = {.bits = 4, .in = 8, .out = 8, .n_groups = 2};
    rb_error err = {0};
    assert_int_equal(rb_gptq_dims_check(&d, "ex", &err), 0);
    int32_t qw[8], qz[2];
    rb_gptq_pack_qweight(&d, q, qw);
    /* column o is row o of q, code c in nibble c (lowest first) */
    static const uint32_t want_qw[8] = {0x52FC9630u, 0x630DA741u, 0x741EB852u, 0x852FC963u,
                                        0x9630DA74u, 0xA741EB85u, 0xB852FC96u, 0xC9630DA7u};
    for (int o = 0; o < 8; o++) assert_int_equal((uint32_t)qw[o], want_qw[o]);
    assert_int_equal(rb_gptq_pack_qzeros(&d, zu, 1, qz, "ex", &err), 0);
    assert_int_equal((uint32_t)qz[0], 0x76543210u); /* zero − 1 = o */
    assert_int_equal((uint32_t)qz[1], 0x789ABCDEu); /* zero − 1 = 14 − o */
    rb_gptq_pack_scales(&d, scale, scales);
    for (int o = 0; o < 8; o++) {
        assert_true(scales[o] == 0.5f);
        assert_true(scales[8 + o] == 0.25f);
    }
    rb_gptq_unpack_qweight(&d, qw, q2);
    assert_memory_equal(q, q2, sizeof q);
    int32_t g_idx[8] = {0, 0, 0, 0, 1, 1, 1, 1};
    rb_gptq_view v = {.d = d, .qweight = qw, .qzeros = qz, .scales = scales, .scales_dtype = RB_DT_F32,
                      .g_idx = g_idx, .zero_offset = 1};
    assert_int_equal(rb_gptq_dequant(&v, w, "ex", &err), 0);
    /* row 0 as the docs spell it out */
    static const float row0[8] = {-0.5f, 1.0f, 2.5f, 4.0f, -0.75f, 0.0f, -3.25f, -2.5f};
    assert_memory_equal(w, row0, sizeof row0);
    /* the same with g_idx absent (group_size 4) */
    v.g_idx = NULL;
    v.group_size = 4;
    float w2[64];
    assert_int_equal(rb_gptq_dequant(&v, w2, "ex", &err), 0);
    assert_memory_equal(w, w2, sizeof w);
    /* symmetric 4-bit zeros (8) are stored as 7 in every nibble */
    uint8_t sym[16];
    memset(sym, 8, sizeof sym);
    assert_int_equal(rb_gptq_pack_qzeros(&d, sym, 1, qz, "ex", &err), 0);
    assert_int_equal((uint32_t)qz[0], 0x77777777u);
    assert_int_equal((uint32_t)qz[1], 0x77777777u);
}

/* AutoGPTQ's QuantLinear.pack loop for 3 bits, transcribed: intweight [in][out] → qweight rows. */
static void autogptq_pack3(const uint32_t *iw, int in, int out, uint32_t *qw) {
    memset(qw, 0, sizeof *qw * (size_t)(in / 32 * 3) * (size_t)out);
    int i = 0, row = 0;
    while (row < in / 32 * 3) {
        for (int o = 0; o < out; o++) {
            int ii = i;
            uint32_t *r0 = qw + (size_t)row * out, *r1 = r0 + out, *r2 = r1 + out;
            for (int j = ii; j < ii + 10; j++) r0[o] |= iw[(size_t)j * out + o] << (3 * (j - ii));
            ii += 10;
            r0[o] |= iw[(size_t)ii * out + o] << 30;
            r1[o] |= (iw[(size_t)ii * out + o] >> 2) & 1;
            ii += 1;
            for (int j = ii; j < ii + 10; j++) r1[o] |= iw[(size_t)j * out + o] << (3 * (j - ii) + 1);
            ii += 10;
            r1[o] |= iw[(size_t)ii * out + o] << 31;
            r2[o] |= (iw[(size_t)ii * out + o] >> 1) & 3;
            ii += 1;
            for (int j = ii; j < ii + 10; j++) r2[o] |= iw[(size_t)j * out + o] << (3 * (j - ii) + 2);
        }
        i += 32;
        row += 3;
    }
}

static void test_three_bit_layout(void **state) {
    (void)state;
    enum { IN = 64, OUT = 32 };
    uint8_t q[OUT * IN], q2[OUT * IN];
    uint32_t iw[IN * OUT], ref[IN / 32 * 3 * OUT];
    int32_t qw[IN / 32 * 3 * OUT];
    rb_rng r;
    rb_rng_seed(&r, 7, "gptq-pack-3");
    for (int o = 0; o < OUT; o++)
        for (int c = 0; c < IN; c++) {
            q[o * IN + c] = (uint8_t)(rb_rng_next(&r) & 7);
            iw[c * OUT + o] = q[o * IN + c];
        }
    rb_gptq_dims d = {.bits = 3, .in = IN, .out = OUT, .n_groups = 1};
    rb_error err = {0};
    assert_int_equal(rb_gptq_dims_check(&d, "t", &err), 0);
    rb_gptq_pack_qweight(&d, q, qw);
    autogptq_pack3(iw, IN, OUT, ref);
    assert_memory_equal(qw, ref, sizeof ref);
    rb_gptq_unpack_qweight(&d, qw, q2);
    assert_memory_equal(q, q2, sizeof q);
    /* code 10 straddles words 0 (bits 30-31) and 1 (bit 0) */
    uint8_t one[OUT * 32] = {0};
    one[10] = 5; /* 0b101 */
    rb_gptq_dims d1 = {.bits = 3, .in = 32, .out = OUT, .n_groups = 1};
    int32_t w1[3 * OUT];
    rb_gptq_pack_qweight(&d1, one, w1);
    assert_int_equal((uint32_t)w1[0], 1u << 30);
    assert_int_equal((uint32_t)w1[OUT], 1u);
    assert_int_equal((uint32_t)w1[2 * OUT], 0u);
}

/* Random grid round trip: codes and zeros through pack/unpack; dequant against the direct formula
 * with F32 (bit for bit), F16 and BF16 scales (rounded scale, then the same formula). */
static void roundtrip(int bits, int in, int out, int group_size, int act_order) {
    rb_error err = {0};
    rb_rng r;
    rb_rng_seed(&r, (uint64_t)(bits * 1000 + in + group_size + act_order), "gptq-pack-rt");
    const int ng = rb_gptq_n_groups(in, group_size), top = 1 << bits;
    rb_gptq_dims d = {.bits = bits, .in = in, .out = out, .n_groups = ng};
    assert_int_equal(rb_gptq_dims_check(&d, "rt", &err), 0);
    uint8_t *q = malloc((size_t)out * in), *q2 = malloc((size_t)out * in), *zu = malloc((size_t)out * ng);
    int32_t *zback = malloc(sizeof(int32_t) * out * ng), *g_idx = malloc(sizeof(int32_t) * in);
    float *scale = malloc(sizeof(float) * out * ng), *scales = malloc(sizeof(float) * out * ng);
    float *w = malloc(sizeof(float) * out * in);
    int32_t *qw = malloc(rb_gptq_qweight_rows(&d) * out * 4 + 1), *qz = malloc((size_t)ng * rb_gptq_qzeros_cols(&d) * 4);
    for (int i = 0; i < out * in; i++) q[i] = (uint8_t)(rb_rng_next(&r) % (uint64_t)top);
    for (int i = 0; i < out * ng; i++) {
        zu[i] = (uint8_t)(1 + rb_rng_next(&r) % (uint64_t)(top - 1)); /* v1 needs zero ≥ 1 */
        scale[i] = (float)(0.001 + rb_rng_uniform(&r)) * (i % 3 ? 1.0f : 1e-3f);
    }
    /* act order: a permutation of the columns, grouped in processing order (GPTQ's g_idx) */
    for (int c = 0; c < in; c++) g_idx[c] = c;
    if (act_order)
        for (int c = in - 1; c > 0; c--) {
            int j = (int)(rb_rng_next(&r) % (uint64_t)(c + 1)), t = g_idx[c];
            g_idx[c] = g_idx[j];
            g_idx[j] = t;
        }
    for (int c = 0; c < in; c++) g_idx[c] = group_size == -1 ? 0 : g_idx[c] / group_size;
    rb_gptq_pack_qweight(&d, q, qw);
    assert_int_equal(rb_gptq_pack_qzeros(&d, zu, 1, qz, "rt", &err), 0);
    rb_gptq_pack_scales(&d, scale, scales);
    rb_gptq_unpack_qweight(&d, qw, q2);
    assert_memory_equal(q, q2, (size_t)out * in);
    rb_gptq_unpack_qzeros(&d, qz, 1, zback);
    for (int i = 0; i < out * ng; i++) assert_int_equal(zback[i], zu[i]);
    /* unaligned copy of qweight: the unpackers read bytes */
    uint8_t *shifted = malloc(rb_gptq_qweight_rows(&d) * out * 4 + 1);
    memcpy(shifted + 1, qw, rb_gptq_qweight_rows(&d) * out * 4);
    rb_gptq_unpack_qweight(&d, shifted + 1, q2);
    assert_memory_equal(q, q2, (size_t)out * in);
    for (int dt = 0; dt < 3; dt++) {
        const int dtype = dt == 0 ? RB_DT_F32 : dt == 1 ? RB_DT_F16 : RB_DT_BF16;
        uint16_t *half = malloc(sizeof(uint16_t) * out * ng);
        float *used = malloc(sizeof(float) * out * ng); /* [group][out] as stored, rounded */
        for (int i = 0; i < out * ng; i++) {
            half[i] = dt == 1 ? rb_f32_to_f16(scales[i]) : rb_f32_to_bf16(scales[i]);
            used[i] = dt == 0 ? scales[i] : dt == 1 ? rb_f16_to_f32(half[i]) : rb_bf16_to_f32(half[i]);
        }
        rb_gptq_view v = {.d = d, .qweight = shifted + 1, .qzeros = qz, .scales = dt == 0 ? (void *)scales : half,
                          .scales_dtype = dtype, .g_idx = g_idx, .zero_offset = 1};
        assert_int_equal(rb_gptq_check_gidx(&v, "rt", &err), 0);
        assert_int_equal(rb_gptq_dequant(&v, w, "rt", &err), 0);
        for (int o = 0; o < out; o++)
            for (int c = 0; c < in; c++) {
                int g = g_idx[c];
                float want = used[g * out + o] * (float)((int)q[o * in + c] - (int)zu[o * ng + g]);
                assert_memory_equal(&w[o * in + c], &want, sizeof want);
            }
        free(half);
        free(used);
    }
    /* v2 stores the zeros themselves: the same weights back */
    assert_int_equal(rb_gptq_pack_qzeros(&d, zu, 0, qz, "rt", &err), 0);
    rb_gptq_unpack_qzeros(&d, qz, 0, zback);
    for (int i = 0; i < out * ng; i++) assert_int_equal(zback[i], zu[i]);
    free(q), free(q2), free(zu), free(zback), free(g_idx), free(scale), free(scales), free(w), free(qw), free(qz);
    free(shifted);
}

static void test_roundtrips(void **state) {
    (void)state;
    static const int bits[] = {2, 3, 4, 8};
    for (int b = 0; b < 4; b++) {
        roundtrip(bits[b], 64, 32, -1, 0);    /* per channel */
        roundtrip(bits[b], 128, 64, 32, 0);   /* groups */
        roundtrip(bits[b], 96, 32, 64, 0);    /* a short last group */
        roundtrip(bits[b], 128, 96, 32, 1);   /* act order */
        roundtrip(bits[b], 128, 32, 128, 1);  /* one group, act order */
    }
    roundtrip(4, 8, 8, -1, 0);   /* one word per column */
    roundtrip(8, 4, 4, 2, 1);
    roundtrip(2, 16, 16, 4, 1);
}

static void test_refusals(void **state) {
    (void)state;
    rb_error err = {0};
    rb_gptq_dims d = {.bits = 5, .in = 64, .out = 64, .n_groups = 1};
    assert_int_equal(rb_gptq_dims_check(&d, "L.q_proj", &err), RB_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "L.q_proj: GPTQ packing: 5-bit codes are not supported (2, 3, 4 and 8 are)"));
    assert_int_equal(rb_gptq_bits_check(16, &err), RB_EUNSUPPORTED);
    d = (rb_gptq_dims){.bits = 4, .in = 172, .out = 64, .n_groups = 1};
    assert_int_equal(rb_gptq_dims_check(&d, "layers.0.mlp.down_proj", &err), RB_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "layers.0.mlp.down_proj: [64 out][172 in] cannot be packed at 4 bits: both widths "
                                    "must be multiples of 8"));
    d = (rb_gptq_dims){.bits = 3, .in = 64, .out = 48, .n_groups = 1};
    assert_int_equal(rb_gptq_dims_check(&d, "x", &err), RB_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "multiples of 32"));
    d = (rb_gptq_dims){.bits = 8, .in = 172, .out = 172, .n_groups = 1};
    assert_int_equal(rb_gptq_dims_check(&d, "x", &err), 0);
    d.n_groups = 173;
    assert_int_equal(rb_gptq_dims_check(&d, "x", &err), RB_EINVAL);
    d.n_groups = 0;
    assert_int_equal(rb_gptq_dims_check(&d, "x", &err), RB_EINVAL);
    assert_int_equal(rb_gptq_n_groups(172, 64), 3);
    assert_int_equal(rb_gptq_n_groups(172, -1), 1);

    /* v1 cannot store an asymmetric zero of 0; v2 can */
    d = (rb_gptq_dims){.bits = 4, .in = 8, .out = 8, .n_groups = 2};
    uint8_t q[64], zu[16];
    float scale[16], scales[16], w[64];
    worked_example(q, zu, scale);
    int32_t qw[8], qz[2];
    zu[5 * 2 + 1] = 0;
    assert_int_equal(rb_gptq_pack_qzeros(&d, zu, 1, qz, "layers.1.self_attn.k_proj", &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "layers.1.self_attn.k_proj: row 5 group 1 has zero point 0, which "
                                    "checkpoint_format \"gptq\" (v1) cannot store"));
    assert_non_null(strstr(err.msg, "symmetric"));
    assert_int_equal(rb_gptq_pack_qzeros(&d, zu, 0, qz, "k", &err), 0);
    zu[3] = 17; /* v1 stores 16 as 15; 17 does not fit */
    assert_int_equal(rb_gptq_pack_qzeros(&d, zu, 1, qz, "k", &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "k: row 1 group 1: zero point 17 outside [1, 16]"));

    /* g_idx out of range; non-finite scales and results */
    worked_example(q, zu, scale);
    rb_gptq_pack_qweight(&d, q, qw);
    assert_int_equal(rb_gptq_pack_qzeros(&d, zu, 1, qz, "k", &err), 0);
    rb_gptq_pack_scales(&d, scale, scales);
    int32_t g_idx[8] = {0, 0, 0, 0, 1, 1, 2, 1};
    rb_gptq_view v = {.d = d, .qweight = qw, .qzeros = qz, .scales = scales, .scales_dtype = RB_DT_F32,
                      .g_idx = g_idx, .zero_offset = 1};
    assert_int_equal(rb_gptq_check_gidx(&v, "m.g_idx", &err), RB_EFORMAT);
    assert_non_null(strstr(err.msg, "m.g_idx: g_idx[6] = 2 outside [0, 2)"));
    assert_int_equal(rb_gptq_dequant(&v, w, "m", &err), RB_EFORMAT);
    assert_non_null(strstr(err.msg, "g_idx[6] = 2 outside [0, 2)"));
    g_idx[6] = -1;
    assert_int_equal(rb_gptq_dequant(&v, w, "m", &err), RB_EFORMAT);
    g_idx[6] = 1;
    assert_int_equal(rb_gptq_dequant(&v, w, "m", &err), 0);
    scales[9] = NAN;
    assert_int_equal(rb_gptq_dequant(&v, w, "m", &err), RB_EFORMAT);
    assert_non_null(strstr(err.msg, "m: scales[1][1] is not finite"));
    scales[9] = 3e38f; /* finite, but 3e38·(q − zero) overflows */
    assert_int_equal(rb_gptq_dequant(&v, w, "m", &err), RB_EFORMAT);
    assert_non_null(strstr(err.msg, "m: dequantized weight [1][5] is not finite"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worked_example),
        cmocka_unit_test(test_three_bit_layout),
        cmocka_unit_test(test_roundtrips),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

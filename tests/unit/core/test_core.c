/* Core utilities: errors, half-precision conversion, Hadamard order planning. */
#include "rb_test.h"

#include <math.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "core/rb_error.h"
#include "core/rb_file.h"
#include "core/rb_h5.h"
#include "core/rb_half.h"
#include "core/rb_math.h"
#include "rotate/rb_had_plan.h"

static void test_error_prefix(void **state) {
    (void)state;
    rb_error e;
    assert_int_equal(rb_error_set(&e, RB_EFORMAT, "tensor %s: bad", "x"), RB_EFORMAT);
    rb_error_prefix(&e, "%s", "/a/model.safetensors");
    assert_string_equal(e.msg, "/a/model.safetensors: tensor x: bad");
    assert_string_equal(rb_strerror(RB_EFORMAT), "format error");
    /* a long prefix truncates without overflowing */
    char big[3000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    rb_error_prefix(&e, "%s", big);
    assert_int_equal(strlen(e.msg), RB_ERROR_MSG_MAX - 1);
}

static void test_half(void **state) {
    (void)state;
    /* exact values */
    assert_true(rb_f16_to_f32(0x3c00) == 1.0f);
    assert_true(rb_f16_to_f32(0xc000) == -2.0f);
    assert_true(rb_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(rb_f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    assert_true(isinf(rb_f16_to_f32(0x7c00)));
    assert_true(isnan(rb_f16_to_f32(0x7e00)));
    assert_true(rb_bf16_to_f32(0x3f80) == 1.0f);
    /* round trip of every finite f16 value */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00) continue;
        assert_int_equal(rb_f32_to_f16(rb_f16_to_f32((uint16_t)h)), h);
    }
    /* ties to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10 */
    assert_int_equal(rb_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);
    assert_int_equal(rb_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80);
    uint8_t le[4] = {0x00, 0x3c, 0x80, 0x3f};
    float out[2];
    rb_f16_to_f32_n(le, out, 1);
    assert_true(out[0] == 1.0f);
    rb_bf16_to_f32_n(le + 2, out, 1);
    assert_true(out[0] == 1.0f);
}

static void test_had_plan(void **state) {
    (void)state;
    struct {
        long n, m;
        int kind;
        long q;
    } cases[] = {
        {4096, 1, RB_HAD_SYLVESTER, 0},  {8192, 1, RB_HAD_SYLVESTER, 0}, {128, 1, RB_HAD_SYLVESTER, 0},
        {1, 1, RB_HAD_SYLVESTER, 0},     {3072, 12, RB_HAD_PALEY1, 11},  {24, 12, RB_HAD_PALEY1, 11},
        {5120, 20, RB_HAD_PALEY1, 19},   {40, 20, RB_HAD_PALEY1, 19},    {11008, 344, RB_HAD_PALEY1, 343},
        {13824, 108, RB_HAD_PALEY1, 107}, {14336, 28, RB_HAD_PALEY1, 27}, {28672, 28, RB_HAD_PALEY1, 27},
        {172, 172, RB_HAD_TABLE, 0},     {36, 36, RB_HAD_PALEY2, 17},    {6, 0, RB_HAD_NONE, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rb_had_plan p;
        rb_had_plan_make(cases[i].n, &p);
        assert_int_equal(p.kind, cases[i].kind);
        if (p.kind == RB_HAD_NONE) continue;
        assert_int_equal(p.m, cases[i].m);
        assert_int_equal(p.q, cases[i].q);
        assert_int_equal(p.m << p.k, cases[i].n);
    }
    long pp;
    int e;
    assert_true(rb_prime_power(343, &pp, &e) && pp == 7 && e == 3);
    assert_false(rb_prime_power(171, &pp, &e));
}

/* rb_expf_fast feeds softmax sums in fp32, so a few fp32 ulps of relative error are enough. */
#define EXPF_FAST_REL_TOL 4e-7

static void test_expf_fast(void **state) {
    (void)state;
    double worst = 0;
    for (int i = 0; i <= 200000; i++) {
        float x = -87.0f + 175.0f * (float)i / 200000.0f;
        double ref = exp((double)x), got = rb_expf_fast(x);
        double rel = fabs(got - ref) / ref;
        worst = rel > worst ? rel : worst;
    }
    assert_true(worst < EXPF_FAST_REL_TOL);
    assert_true(rb_expf_fast(0.0f) == 1.0f);
    assert_true(rb_expf_fast(-1e30f) > 0.0f && rb_expf_fast(-1e30f) < 1e-37f); /* clamped, no NaN */
    assert_true(isfinite(rb_expf_fast(1e30f)));
}

static void test_read_file_limits(void **state) {
    (void)state;
    char dir[256], path[512];
    rb_test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/f.txt", dir);
    rb_error err = {0};
    assert_int_equal(rb_write_file(path, "hello", 5, &err), 0);
    char *buf;
    size_t n;
    assert_int_equal(rb_read_file(path, 100, &buf, &n, &err), 0);
    assert_int_equal(n, 5);
    assert_string_equal(buf, "hello");
    free(buf);
    assert_int_equal(rb_read_file(path, 4, &buf, &n, &err), RB_EFORMAT);
    assert_non_null(strstr(err.msg, path));
    snprintf(path, sizeof path, "%s/missing", dir);
    assert_int_equal(rb_read_file(path, 4, &buf, &n, &err), RB_ENOTFOUND);
    rb_mapped m;
    assert_int_equal(rb_mapped_open(&m, path, &err), RB_ENOTFOUND);
    snprintf(path, sizeof path, "%s/f.txt", dir);
    remove(path);
    remove(dir);
}

/* The forked probe of rb_h5_guard: each way a reader can end (issue 16). */
static int probe_ok(void *ctx, rb_error *err) {
    (void)err;
    (*(int *)ctx)++;
    return 0;
}
static int probe_refuse(void *ctx, rb_error *err) {
    (*(int *)ctx)++;
    return rb_error_set(err, RB_EFORMAT, "refused by the reader");
}
static int probe_hang(void *ctx, rb_error *err) {
    (void)ctx, (void)err;
    for (int i = 0; i < 600; i++) sleep(1); /* far beyond the probe's limit */
    return 0;
}
static int probe_exit(void *ctx, rb_error *err) {
    (void)ctx, (void)err;
    _exit(5);
}
static int probe_segv(void *ctx, rb_error *err) {
    (void)ctx, (void)err;
    signal(SIGSEGV, SIG_DFL); /* not cmocka's handler, which would go on running the tests in the child */
    raise(SIGSEGV);
    return 0;
}

static void test_h5_probe(void **state) {
    (void)state;
    rb_error err = {0};
    int calls = 0;
    /* a clean result runs again in this process; a clean refusal is the reader's own error */
    assert_int_equal(rb_h5_guard("f.h5", probe_ok, &calls, &err), 0);
    assert_int_equal(calls, 1); /* the child's increment is not this process's */
    assert_int_equal(rb_h5_guard("f.h5", probe_refuse, &calls, &err), RB_EFORMAT);
    assert_string_equal(err.msg, "refused by the reader");
    assert_int_equal(rb_h5_probe("f.h5", probe_refuse, &calls, 5.0, &err), 0);
    /* hang, odd exit status, signal: refused, naming the file */
    assert_int_equal(rb_h5_probe("f.h5", probe_hang, NULL, 0.3, &err), RB_EFORMAT);
    assert_string_equal(err.msg, "f.h5: reading it did not finish in 0.3 s (a damaged HDF5 file can make the library "
                                 "loop): refused");
    assert_int_equal(rb_h5_probe("f.h5", probe_exit, NULL, 5.0, &err), RB_EFORMAT);
    assert_string_equal(err.msg, "f.h5: the HDF5 library crashed reading it (exit status 5): a damaged file, refused");
    /* a sanitizer build turns the signal into a report and exit status 1 */
    assert_int_equal(rb_h5_probe("f.h5", probe_segv, NULL, 5.0, &err), RB_EFORMAT);
    assert_non_null(strstr(err.msg, "f.h5: the HDF5 library crashed reading it ("));
    int calls0 = calls;
    assert_int_equal(rb_h5_guard("f.h5", probe_segv, &calls, &err), RB_EFORMAT); /* never run here */
    assert_int_equal(calls, calls0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_prefix),
        cmocka_unit_test(test_half),
        cmocka_unit_test(test_had_plan),
        cmocka_unit_test(test_expf_fast),
        cmocka_unit_test(test_read_file_limits),
        cmocka_unit_test(test_h5_probe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

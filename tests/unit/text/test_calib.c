/* Calibration windows: seeded sampling, token ranges, orders. */
#include "rb_test.h"

#include "text/rb_calib.h"

static void test_sample(void **state) {
    (void)state;
    int32_t tok[100];
    for (int i = 0; i < 100; i++) tok[i] = i;
    int32_t *a, *b, *c;
    rb_error err = {0};
    assert_int_equal(rb_calib_sample(tok, 100, 5, 10, 3, &a, &err), 0);
    assert_int_equal(rb_calib_sample(tok, 100, 5, 10, 3, &b, &err), 0);
    assert_int_equal(rb_calib_sample(tok, 100, 5, 10, 4, &c, &err), 0);
    assert_memory_equal(a, b, 50 * sizeof *a); /* same seed, same windows */
    assert_memory_not_equal(a, c, 50 * sizeof *a);
    for (int s = 0; s < 5; s++) {
        assert_true(a[s * 10] >= 0 && a[s * 10] <= 90); /* start in [0, n - seqlen] */
        for (int i = 1; i < 10; i++) assert_int_equal(a[s * 10 + i], a[s * 10] + i); /* contiguous */
    }
    free(a);
    free(b);
    free(c);
    assert_int_equal(rb_calib_sample(tok, 5, 1, 10, 0, &a, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "fewer than one window"));
}

static void test_range(void **state) {
    (void)state;
    size_t b, e;
    rb_error err = {0};
    assert_int_equal(rb_token_range_parse("0:0.5", 1001, &b, &e, &err), 0);
    assert_int_equal(b, 0);
    assert_int_equal(e, 500);
    assert_int_equal(rb_token_range_parse("0.5:", 1000, &b, &e, &err), 0);
    assert_int_equal(b, 500);
    assert_int_equal(e, 1000);
    assert_int_equal(rb_token_range_parse(":", 10, &b, &e, &err), 0);
    assert_int_equal(e, 10);
    assert_int_equal(rb_token_range_parse("0.6:0.5", 10, &b, &e, &err), RB_EINVAL);
    assert_int_equal(rb_token_range_parse("half", 10, &b, &e, &err), RB_EINVAL);
    assert_int_equal(rb_token_range_parse("0:1.5", 10, &b, &e, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "0:1.5"));
}

static void test_orders(void **state) {
    (void)state;
    rb_error err = {0};
    int32_t w[8], orig[8] = {0, 0, 1, 1, 2, 2, 3, 3}; /* 4 windows of 2 */
    memcpy(w, orig, sizeof w);
    assert_int_equal(rb_calib_reorder(w, 4, 2, RB_CALIB_SEQUENTIAL, NULL, 0, &err), 0);
    assert_memory_equal(w, orig, sizeof w);
    assert_int_equal(rb_calib_reorder(w, 4, 2, RB_CALIB_REVERSED, NULL, 0, &err), 0);
    int32_t rev[8] = {3, 3, 2, 2, 1, 1, 0, 0};
    assert_memory_equal(w, rev, sizeof w);
    memcpy(w, orig, sizeof w);
    double norm[4] = {1.0, 5.0, 5.0, 2.0};
    assert_int_equal(rb_calib_reorder(w, 4, 2, RB_CALIB_SORTED_BY_NORM, norm, 0, &err), 0);
    int32_t srt[8] = {1, 1, 2, 2, 3, 3, 0, 0}; /* descending, ties in sampling order */
    assert_memory_equal(w, srt, sizeof w);
    memcpy(w, orig, sizeof w);
    assert_int_equal(rb_calib_reorder(w, 4, 2, RB_CALIB_SHUFFLED, NULL, 9, &err), 0);
    int seen[4] = {0};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(w[2 * i], w[2 * i + 1]); /* windows move whole */
        seen[w[2 * i]]++;
    }
    for (int i = 0; i < 4; i++) assert_int_equal(seen[i], 1); /* a permutation */
    assert_int_equal(rb_calib_reorder(w, 4, 2, RB_CALIB_SORTED_BY_NORM, NULL, 0, &err), RB_EINVAL);
    assert_int_equal(rb_calib_order_from_name("sorted_by_norm"), RB_CALIB_SORTED_BY_NORM);
    assert_int_equal(rb_calib_order_from_name("random"), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_range),
        cmocka_unit_test(test_orders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

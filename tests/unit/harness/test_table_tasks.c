/* rb_table_tasks: the papers' zero-shot table (task columns in rb_task_id order with their labels,
 * Avg, FP row, rows grouped by setting in method order, seeds averaged) and the paired-difference
 * table (Δ with the bootstrap interval, McNemar star, sd over runs), several models, errors. */
#include "rb_test.h"

#include <math.h>

#include "harness/rb_table.h"
#include "tasks/rb_taskfile.h"

static void expect(const rb_table *t, int format, const char *want) {
    char *s = NULL;
    size_t n = 0;
    rb_error err = {0};
    assert_int_equal(rb_table_render(t, format, &s, &n, &err), 0);
    if (strcmp(s, want) != 0) fprintf(stderr, "# got:\n%s# want:\n%s", s, want);
    assert_string_equal(s, want);
    free(s);
}

#define R(m, s, t, a, f, d, lo, hi, p) {m, s, "stories260K", t, a, f, d, lo, hi, p, 0}
static const rb_task_rec k_recs[] = {
    R("identity", "W4A4 RTN", RB_TASK_PIQA, 0.50, 0.60, -0.10, -0.15, -0.05, 0.001),
    R("identity", "W4A4 RTN", RB_TASK_ARC_EASY, 0.30, 0.40, -0.10, -0.20, 0.0, 0.2),
    R("identity", "W16A16 RTN", RB_TASK_PIQA, 0.60, 0.60, NAN, NAN, NAN, NAN), /* an FP run: no comparison */
    R("hadamard", "W4A4 RTN", RB_TASK_PIQA, 0.58, 0.60, -0.02, -0.05, 0.01, 0.4), /* two seeds */
    R("hadamard", "W4A4 RTN", RB_TASK_PIQA, 0.56, 0.60, -0.04, -0.08, 0.0, 0.1),
    R("hadamard", "W4A4 RTN", RB_TASK_ARC_EASY, 0.38, 0.40, -0.02, -0.05, 0.01, 0.5),
    R("hadamard", "W4A4 GPTQ", RB_TASK_PIQA, 0.59, 0.60, -0.01, -0.03, 0.01, 1.0),
    R("zeta", "W4A4 RTN", RB_TASK_PIQA, 0.55, 0.60, -0.05, NAN, NAN, NAN), /* not in the method order */
};

static void test_tasks_layout(void **state) {
    (void)state;
    const char *order[] = {"identity", "hadamard", "spinquant"};
    rb_pivot_opts o = {.methods = order, .n_methods = 3, .fp_label = "FP32"};
    rb_table a, d;
    rb_error err = {0};
    assert_int_equal(rb_table_tasks(&a, &d, k_recs, sizeof k_recs / sizeof *k_recs, &o, &err), 0);
    expect(&a, RB_TABLE_MARKDOWN,
           "| Setting    | Method   |  PIQA | ARC-e |   Avg |\n"
           "|:-----------|:---------|------:|------:|------:|\n"
           "|            | FP32     | 60.00 | 40.00 | 50.00 |\n"
           "| W4A4 RTN   | identity | 50.00 | 30.00 | 40.00 |\n"
           "| W4A4 RTN   | hadamard | 57.00 | 38.00 | 47.50 |\n"
           "| W4A4 RTN   | zeta     | 55.00 |     – |     – |\n"
           "| W16A16 RTN | identity | 60.00 |     – |     – |\n"
           "| W4A4 GPTQ  | hadamard | 59.00 |     – |     – |\n");
    expect(&a, RB_TABLE_LATEX,
           "\\begin{tabular}{llrrr}\n"
           "\\toprule\n"
           "Setting & Method & PIQA & ARC-e & Avg \\\\\n"
           "\\midrule\n"
           " & FP32 & 60.00 & 40.00 & 50.00 \\\\\n"
           "\\midrule\n"
           "W4A4 RTN & identity & 50.00 & 30.00 & 40.00 \\\\\n"
           "W4A4 RTN & hadamard & 57.00 & 38.00 & 47.50 \\\\\n"
           "W4A4 RTN & zeta & 55.00 & -- & -- \\\\\n"
           "\\midrule\n"
           "W16A16 RTN & identity & 60.00 & -- & -- \\\\\n"
           "\\midrule\n"
           "W4A4 GPTQ & hadamard & 59.00 & -- & -- \\\\\n"
           "\\bottomrule\n"
           "\\end{tabular}\n");
    expect(&d, RB_TABLE_MARKDOWN,
           "| Setting   | Method   |                    PIQA |                  ARC-e |    Avg |\n"
           "|:----------|:---------|------------------------:|-----------------------:|-------:|\n"
           "| W4A4 RTN  | identity | -10.00 [-15.00, -5.00]* | -10.00 [-20.00, +0.00] | -10.00 |\n"
           "| W4A4 RTN  | hadamard | -3.00 (sd 1.41, 2 runs) |   -2.00 [-5.00, +1.00] |  -2.50 |\n"
           "| W4A4 RTN  | zeta     |                   -5.00 |                      – |      – |\n"
           "| W4A4 GPTQ | hadamard |    -1.00 [-3.00, +1.00] |                      – |      – |\n");
    expect(&d, RB_TABLE_CSV,
           "Setting,Method,PIQA,ARC-e,Avg\n"
           "W4A4 RTN,identity,\"-10.00 [-15.00, -5.00]*\",\"-10.00 [-20.00, +0.00]\",-10.00\n"
           "W4A4 RTN,hadamard,\"-3.00 (sd 1.41, 2 runs)\",\"-2.00 [-5.00, +1.00]\",-2.50\n"
           "W4A4 RTN,zeta,-5.00,–,–\n"
           "W4A4 GPTQ,hadamard,\"-1.00 [-3.00, +1.00]\",–,–\n");
    rb_table_free(&a);
    rb_table_free(&d);
}

/* Columns follow rb_task_id order whatever the records' order; several models get a Model column
 * and an FP row each; no comparison at all leaves the delta table empty; a model without FP values
 * has no FP row. */
static void test_tasks_models_and_order(void **state) {
    (void)state;
    const rb_task_rec recs[] = {
        {"hadamard", "W4A4 RTN", "llama-2-7b", RB_TASK_WINOGRANDE, 0.6, 0.7, NAN, NAN, NAN, NAN, 0},
        {"hadamard", "W4A4 RTN", "llama-2-7b", RB_TASK_PIQA, 0.75, 0.8, NAN, NAN, NAN, NAN, 0},
        {"hadamard", "W4A4 RTN", "llama-3-8b", RB_TASK_LAMBADA, 0.5, NAN, NAN, NAN, NAN, NAN, 0},
    };
    rb_table a, d;
    rb_error err = {0};
    assert_int_equal(rb_table_tasks(&a, &d, recs, 3, NULL, &err), 0);
    expect(&a, RB_TABLE_MARKDOWN,
           "| Model      | Setting  | Method   |  PIQA | WinoGrande | LAMBADA | Avg |\n"
           "|:-----------|:---------|:---------|------:|-----------:|--------:|----:|\n"
           "| llama-2-7b |          | FP16     | 80.00 |      70.00 |       – |   – |\n"
           "| llama-2-7b | W4A4 RTN | hadamard | 75.00 |      60.00 |       – |   – |\n"
           "| llama-3-8b | W4A4 RTN | hadamard |     – |          – |   50.00 |   – |\n");
    assert_int_equal(d.n_cols, 0);
    rb_table_free(&a);
    rb_table_free(&d);
    /* an unquantized, unrotated run supplies the FP row and gets no row of its own */
    const rb_task_rec fr[] = {
        {"hadamard", "W4A4 RTN", NULL, RB_TASK_COPA, 0.55, NAN, NAN, NAN, NAN, NAN, 0},
        {"identity", "W16A16 RTN", NULL, RB_TASK_COPA, 0.65, 0.65, NAN, NAN, NAN, NAN, 1},
    };
    assert_int_equal(rb_table_tasks(&a, &d, fr, 2, NULL, &err), 0);
    expect(&a, RB_TABLE_MARKDOWN,
           "| Setting  | Method   |  COPA |   Avg |\n"
           "|:---------|:---------|------:|------:|\n"
           "|          | FP16     | 65.00 | 65.00 |\n"
           "| W4A4 RTN | hadamard | 55.00 | 55.00 |\n");
    rb_table_free(&a);
    rb_table_free(&d);
    /* every label */
    rb_task_rec all[RB_TASK_COUNT];
    for (int t = 0; t < RB_TASK_COUNT; t++)
        all[t] = (rb_task_rec){"m", "s", NULL, RB_TASK_COUNT - 1 - t, 0.5, 0.5, 0, 0, 0, 1, 0};
    assert_int_equal(rb_table_tasks(&a, &d, all, RB_TASK_COUNT, NULL, &err), 0);
    const char *want[] = {"Setting", "Method",  "PIQA", "ARC-e", "ARC-c", "HellaSwag", "WinoGrande",
                          "LAMBADA", "BoolQ",   "OBQA", "COPA",  "Avg"};
    assert_int_equal(a.n_cols, 12);
    for (size_t c = 0; c < 12; c++) assert_string_equal(a.header[c], want[c]);
    assert_string_equal(d.cells[d.n_cols - 1], "+0.00");
    assert_string_equal(d.cells[2], "+0.00 [+0.00, +0.00]");
    rb_table_free(&a);
    rb_table_free(&d);
}

static void test_tasks_errors(void **state) {
    (void)state;
    rb_table a, d;
    rb_error err = {0};
    rb_task_rec r = {"m", "", NULL, RB_TASK_PIQA, 0.5, NAN, NAN, NAN, NAN, NAN, 0};
    assert_int_equal(rb_table_tasks(&a, &d, &r, 1, NULL, &err), RB_EINVAL);
    assert_string_equal(err.msg, "task table: record 0 has no method or setting");
    r.setting = "s";
    r.task = RB_TASK_COUNT;
    assert_int_equal(rb_table_tasks(&a, &d, &r, 1, NULL, &err), RB_EINVAL);
    assert_string_equal(err.msg, "task table: record 0: unknown task 9");
    assert_int_equal(a.n_cols, 0);
    assert_int_equal(rb_table_tasks(&a, &d, NULL, 1, NULL, &err), RB_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tasks_layout),
        cmocka_unit_test(test_tasks_models_and_order),
        cmocka_unit_test(test_tasks_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

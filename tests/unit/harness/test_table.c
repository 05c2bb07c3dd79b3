/* rb_table: golden Markdown / LaTeX / CSV text, escaping in each format, numbers, the papers'
 * methods × settings pivot (FP row, order, missing cells, Δ, several models), errors. */
#include "rb_test.h"

#include <math.h>
#include <unistd.h>

#include "core/rb_file.h"
#include "harness/rb_table.h"

static char *render(const rb_table *t, int format) {
    char *s = NULL;
    size_t n = 0;
    rb_error err = {0};
    int rc = rb_table_render(t, format, &s, &n, &err);
    if (rc) fprintf(stderr, "# rb_table_render: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(strlen(s), n);
    return s;
}

static void expect(const rb_table *t, int format, const char *want) {
    char *got = render(t, format);
    if (strcmp(got, want) != 0) fprintf(stderr, "# got:\n%s# want:\n%s", got, want);
    assert_string_equal(got, want);
    free(got);
}

/* A small table with every special character. */
static void make_small(rb_table *t) {
    rb_error err = {0};
    const char *h[] = {"name", "value_1 (%)", "note"};
    assert_int_equal(rb_table_init(t, 3, h, &err), 0);
    const char *r1[] = {"a&b", "12.5", "x, \"y\""};
    assert_int_equal(rb_table_add_row(t, r1, NULL, &err), 0);
    size_t r = 99;
    assert_int_equal(rb_table_add_row(t, NULL, &r, &err), 0);
    assert_int_equal(r, 1);
    assert_int_equal(rb_table_set(t, r, 0, "c|d #1", &err), 0);
    assert_int_equal(rb_table_set_num(t, r, 1, NAN, 2, &err), 0);
    assert_int_equal(rb_table_setf(t, r, 2, &err, "%d~%s^", 3, "$x_{i}\\"), 0);
    const char *r3[] = {"<Δ±>", NULL, "two\nlines"};
    assert_int_equal(rb_table_add_row(t, r3, NULL, &err), 0);
    assert_int_equal(rb_table_set_num(t, 2, 1, 1.0 / 3, 3, &err), 0);
    assert_int_equal(rb_table_set_align(t, 1, RB_ALIGN_RIGHT, &err), 0);
    assert_int_equal(rb_table_set_align(t, 2, RB_ALIGN_CENTER, &err), 0);
    assert_int_equal(rb_table_rule_after(t, 0, &err), 0);
}

/* Control characters from result strings never reach the terminal (issue 16). */
static void test_control_chars(void **state) {
    (void)state;
    rb_table t;
    rb_error err = {0};
    const char *h[] = {"m"};
    assert_int_equal(rb_table_init(&t, 1, h, &err), 0);
    const char *r[] = {"\x1b[31mred\x07\x7f"};
    assert_int_equal(rb_table_add_row(&t, r, NULL, &err), 0);
    char *got = render(&t, RB_TABLE_CSV);
    assert_non_null(strstr(got, "?[31mred??"));
    assert_null(strchr(got, 0x1b));
    free(got);
    rb_table_free(&t);
}

static void test_markdown(void **state) {
    (void)state;
    rb_table t;
    make_small(&t);
    expect(&t, RB_TABLE_MARKDOWN,
           "| name    | value_1 (%) |    note    |\n"
           "|:--------|------------:|:----------:|\n"
           "| a&b     |        12.5 |   x, \"y\"   |\n"
           "| c\\|d #1 |           – | 3~$x_{i}\\^ |\n"
           "| <Δ±>    |       0.333 | two lines  |\n");
    rb_table_free(&t);
}

static void test_latex(void **state) {
    (void)state;
    rb_table t;
    make_small(&t);
    expect(&t, RB_TABLE_LATEX,
           "\\begin{tabular}{lrc}\n"
           "\\toprule\n"
           "name & value\\_1 (\\%) & note \\\\\n"
           "\\midrule\n"
           "a\\&b & 12.5 & x, \"y\" \\\\\n"
           "\\midrule\n"
           "c\\textbar{}d \\#1 & -- & 3\\textasciitilde{}\\$x\\_\\{i\\}\\textbackslash{}\\textasciicircum{} \\\\\n"
           "\\textless{}$\\Delta$$\\pm$\\textgreater{} & 0.333 & two lines \\\\\n"
           "\\bottomrule\n"
           "\\end{tabular}\n");
    rb_table_free(&t);
}

static void test_csv(void **state) {
    (void)state;
    rb_table t;
    make_small(&t);
    expect(&t, RB_TABLE_CSV,
           "name,value_1 (%),note\n"
           "a&b,12.5,\"x, \"\"y\"\"\"\n"
           "c|d #1,–,3~$x_{i}\\^\n"
           "<Δ±>,0.333,\"two\nlines\"\n");
    rb_table_free(&t);
}

static void test_numbers_and_empty(void **state) {
    (void)state;
    rb_error err = {0};
    rb_table t;
    assert_int_equal(rb_table_init(&t, 2, NULL, &err), 0);
    /* No rows: the header alone. */
    expect(&t, RB_TABLE_MARKDOWN, "|     |     |\n|:----|:----|\n");
    expect(&t, RB_TABLE_CSV, ",\n");
    assert_int_equal(rb_table_add_row(&t, NULL, NULL, &err), 0);
    assert_int_equal(rb_table_set_num(&t, 0, 0, INFINITY, 2, &err), 0);
    assert_int_equal(rb_table_set_num(&t, 0, 1, -INFINITY, 2, &err), 0);
    expect(&t, RB_TABLE_CSV, ",\ninf,-inf\n");
    assert_int_equal(rb_table_set_num(&t, 0, 0, 0.1 + 0.2, -1, &err), 0);
    assert_int_equal(rb_table_set_num(&t, 0, 1, 2.5, 0, &err), 0);
    expect(&t, RB_TABLE_CSV, ",\n0.3,2\n");
    rb_table_free(&t);
}

static void test_errors(void **state) {
    (void)state;
    rb_error err = {0};
    rb_table t;
    assert_int_equal(rb_table_init(&t, 0, NULL, &err), RB_EINVAL);
    rb_table_free(&t);
    assert_int_equal(rb_table_init(&t, 2, NULL, &err), 0);
    assert_int_equal(rb_table_set(&t, 0, 0, "x", &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "outside"));
    assert_int_equal(rb_table_add_row(&t, NULL, NULL, &err), 0);
    assert_int_equal(rb_table_set(&t, 0, 2, "x", &err), RB_EINVAL);
    assert_int_equal(rb_table_setf(&t, 1, 0, &err, "%d", 1), RB_EINVAL);
    assert_int_equal(rb_table_set_align(&t, 2, RB_ALIGN_LEFT, &err), RB_EINVAL);
    assert_int_equal(rb_table_set_align(&t, 0, 9, &err), RB_EINVAL);
    assert_int_equal(rb_table_rule_after(&t, 1, &err), RB_EINVAL);
    char *s = (char *)1;
    size_t n;
    assert_int_equal(rb_table_render(&t, 7, &s, &n, &err), RB_EINVAL);
    assert_null(s);
    rb_table_free(&t);
    assert_int_equal(rb_table_format_from_path("a/b.md"), RB_TABLE_MARKDOWN);
    assert_int_equal(rb_table_format_from_path("b.tex"), RB_TABLE_LATEX);
    assert_int_equal(rb_table_format_from_path("b.csv"), RB_TABLE_CSV);
    assert_int_equal(rb_table_format_from_path("b.txt"), -1);
    assert_int_equal(rb_table_format_from_path("md"), -1);
}

static void test_write(void **state) {
    (void)state;
    char dir[512];
    rb_test_tmpdir(dir, sizeof dir);
    char *path = rb_path_join(dir, "t.csv");
    rb_table t;
    make_small(&t);
    rb_error err = {0};
    assert_int_equal(rb_table_write(&t, rb_table_format_from_path(path), path, &err), 0);
    char *txt;
    size_t n;
    assert_int_equal(rb_read_file(path, 1 << 20, &txt, &n, &err), 0);
    char *want = render(&t, RB_TABLE_CSV);
    assert_string_equal(txt, want);
    free(want);
    free(txt);
    rb_table_free(&t);
    char *bad = rb_path_join(dir, "no/such/dir/t.md");
    make_small(&t);
    assert_int_equal(rb_table_write(&t, RB_TABLE_MARKDOWN, bad, &err), RB_EIO);
    rb_table_free(&t);
    free(bad);
    unlink(path);
    rmdir(dir);
    free(path);
}

/* ---- pivot -------------------------------------------------------------------------------- */

static const rb_pivot_rec k_recs[] = {
    {"quarot", "W4A4KV4 RTN", "llama2-7b", 6.10, 5.47},
    {"spinquant", "W4A4KV4 RTN", "llama2-7b", 5.96, 5.47},
    {"quarot", "W4A16 GPTQ", "llama2-7b", 5.60, 5.47},
    {"rtn", "W4A4KV4 RTN", "llama2-7b", INFINITY, 5.47},
    {"extra", "W4A16 GPTQ", "llama2-7b", 5.469, 5.47}, /* Δ rounds to -0.00: shown +0.00 */
    {"failed", "W4A16 GPTQ", "llama2-7b", NAN, 5.47},
};

static void test_pivot_layout(void **state) {
    (void)state;
    const char *order[] = {"rtn", "spinquant", "quarot", "duquant"};
    rb_pivot_opts o = {.methods = order, .n_methods = 4};
    rb_table t;
    rb_error err = {0};
    assert_int_equal(rb_table_pivot(&t, k_recs, 6, &o, &err), 0);
    expect(&t, RB_TABLE_MARKDOWN,
           "| Method    |  W4A4KV4 RTN |   W4A16 GPTQ |\n"
           "|:----------|-------------:|-------------:|\n"
           "| FP16      |         5.47 |         5.47 |\n"
           "| rtn       |          inf |            – |\n"
           "| spinquant | 5.96 (+0.49) |            – |\n"
           "| quarot    | 6.10 (+0.63) | 5.60 (+0.13) |\n"
           "| duquant   |            – |            – |\n"
           "| extra     |            – | 5.47 (+0.00) |\n"
           "| failed    |            – |            – |\n");
    expect(&t, RB_TABLE_LATEX,
           "\\begin{tabular}{lrr}\n"
           "\\toprule\n"
           "Method & W4A4KV4 RTN & W4A16 GPTQ \\\\\n"
           "\\midrule\n"
           "FP16 & 5.47 & 5.47 \\\\\n"
           "\\midrule\n"
           "rtn & inf & -- \\\\\n"
           "spinquant & 5.96 (+0.49) & -- \\\\\n"
           "quarot & 6.10 (+0.63) & 5.60 (+0.13) \\\\\n"
           "duquant & -- & -- \\\\\n"
           "extra & -- & 5.47 (+0.00) \\\\\n"
           "failed & -- & -- \\\\\n"
           "\\bottomrule\n"
           "\\end{tabular}\n");
    expect(&t, RB_TABLE_CSV,
           "Method,W4A4KV4 RTN,W4A16 GPTQ\n"
           "FP16,5.47,5.47\n"
           "rtn,inf,–\n"
           "spinquant,5.96 (+0.49),–\n"
           "quarot,6.10 (+0.63),5.60 (+0.13)\n"
           "duquant,–,–\n"
           "extra,–,5.47 (+0.00)\n"
           "failed,–,–\n");
    rb_table_free(&t);
}

static void test_pivot_models_and_options(void **state) {
    (void)state;
    /* Two models: columns "<model> <setting>", first-seen order; no method order: first-seen. */
    const rb_pivot_rec recs[] = {
        {"b_method", "W4A4", "7B", 6.5, 5.0},
        {"a_method", "W4A4", "13B", 5.25, 4.875},
        {"a_method", "W4A4", "7B", 6.0, NAN},   /* FP unknown here: ppl alone */
        {"b_method", "W8A8", "7B", 5.0, 5.0},
        {"c_method", "W8A8", "7B", 4.0, 5.0},   /* better than FP: negative Δ */
    };
    rb_pivot_opts o = {.fp_label = "FP16 (bf16)", .corner = "Method \\ Model", .decimals = 3};
    rb_table t;
    rb_error err = {0};
    assert_int_equal(rb_table_pivot(&t, recs, 5, &o, &err), 0);
    expect(&t, RB_TABLE_CSV,
           "Method \\ Model,7B W4A4,13B W4A4,7B W8A8\n"
           "FP16 (bf16),5.000,4.875,5.000\n"
           "b_method,6.500 (+1.500),–,5.000 (+0.000)\n"
           "a_method,6.000,5.250 (+0.375),–\n"
           "c_method,–,–,4.000 (-1.000)\n");
    rb_table_free(&t);

    /* decimals < 0: none; NULL opts; no records: the FP row alone. */
    rb_pivot_opts o0 = {.decimals = -1};
    const rb_pivot_rec one[] = {{"b_method", "W4A4", "7B", 6.75, 5.0}};
    assert_int_equal(rb_table_pivot(&t, one, 1, &o0, &err), 0);
    expect(&t, RB_TABLE_CSV, "Method,W4A4\nFP16,5\nb_method,7 (+2)\n");
    rb_table_free(&t);
    assert_int_equal(rb_table_pivot(&t, NULL, 0, NULL, &err), 0);
    expect(&t, RB_TABLE_CSV, "Method\nFP16\n");
    rb_table_free(&t);
}

static void test_pivot_escaping(void **state) {
    (void)state;
    const rb_pivot_rec recs[] = {{"my_method #2", "W4A4 & 50% KV", "m", 6.0, 5.5}};
    rb_table t;
    rb_error err = {0};
    assert_int_equal(rb_table_pivot(&t, recs, 1, NULL, &err), 0);
    expect(&t, RB_TABLE_LATEX,
           "\\begin{tabular}{lr}\n\\toprule\nMethod & W4A4 \\& 50\\% KV \\\\\n\\midrule\nFP16 & 5.50 \\\\\n"
           "\\midrule\nmy\\_method \\#2 & 6.00 (+0.50) \\\\\n\\bottomrule\n\\end{tabular}\n");
    rb_table_free(&t);
}

static void test_pivot_errors(void **state) {
    (void)state;
    rb_table t;
    rb_error err = {0};
    const rb_pivot_rec dup[] = {{"m", "W4A4", "7B", 6.0, 5.0}, {"n", "W4A4", "7B", 6.0, 5.0},
                                {"m", "W4A4", "7B", 6.1, 5.0}};
    assert_int_equal(rb_table_pivot(&t, dup, 3, NULL, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "records 0 and 2"));
    assert_non_null(strstr(err.msg, "'m'"));
    assert_int_equal(t.n_cols, 0);
    /* The same setting on two models is two columns, not a duplicate. */
    const rb_pivot_rec two[] = {{"m", "W4A4", "7B", 6.0, 5.0}, {"m", "W4A4", "13B", 5.0, 4.0}};
    assert_int_equal(rb_table_pivot(&t, two, 2, NULL, &err), 0);
    assert_int_equal(t.n_cols, 3);
    rb_table_free(&t);
    const rb_pivot_rec nometh[] = {{"", "W4A4", "7B", 6.0, 5.0}};
    assert_int_equal(rb_table_pivot(&t, nometh, 1, NULL, &err), RB_EINVAL);
    const rb_pivot_rec noset[] = {{"m", NULL, "7B", 6.0, 5.0}};
    assert_int_equal(rb_table_pivot(&t, noset, 1, NULL, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "no setting"));
    /* Inconsistent FP perplexities: a warning, the first one is shown. */
    const rb_pivot_rec fp[] = {{"m", "W4A4", "7B", 6.0, 5.0}, {"n", "W4A4", "7B", 6.0, 5.1}};
    assert_int_equal(rb_table_pivot(&t, fp, 2, NULL, &err), 0);
    expect(&t, RB_TABLE_CSV, "Method,W4A4\nFP16,5.00\nm,6.00 (+1.00)\nn,6.00 (+0.90)\n");
    rb_table_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_markdown),
        cmocka_unit_test(test_control_chars),
        cmocka_unit_test(test_latex),
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_numbers_and_empty),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_pivot_layout),
        cmocka_unit_test(test_pivot_models_and_options),
        cmocka_unit_test(test_pivot_escaping),
        cmocka_unit_test(test_pivot_errors),
    };
    return cmocka_run_group_tests_name("rb_table", tests, NULL, NULL);
}

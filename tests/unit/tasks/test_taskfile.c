/* Zero-shot task files: every layout with lm-eval's exact prompts, limits, bad files naming file:line, and the
 * shipped files under ../shared/data/tasks (counts and one known document each). */
#include "rb_test.h"

#include "tasks/rb_taskfile.h"

/* ---- helpers ---- */

/* Writes dir/name with the given contents; the path goes to out. */
static void put_file(const char *dir, const char *name, const char *text, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s", dir, name);
    FILE *f = fopen(out, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* Reads a file that must be valid. */
static void read_ok(const char *path, int task, const char *labels, long limit, rb_task_set *ts) {
    rb_error err = {0};
    int rc = rb_taskfile_read(path, task, labels, limit, ts, &err);
    if (rc != 0) fprintf(stderr, "# unexpected error: %s\n", err.msg);
    assert_int_equal(rc, 0);
}

/* Writes `text` as dir/name, reads it as `task` and expects error `code` whose message holds `want` (and `want2`
 * unless NULL). The set must be left empty. */
static void expect_err(const char *dir, const char *name, const char *text, int task, int code, const char *want,
                       const char *want2) {
    char path[700];
    put_file(dir, name, text, path, sizeof path);
    rb_task_set ts;
    rb_error err = {0};
    int rc = rb_taskfile_read(path, task, NULL, 0, &ts, &err);
    if (rc != code || !strstr(err.msg, want) || (want2 && !strstr(err.msg, want2)))
        fprintf(stderr, "# %s: got %d \"%s\", wanted %d with \"%s\"%s%s\n", name, rc, err.msg, code, want,
                want2 ? " and " : "", want2 ? want2 : "");
    assert_int_equal(rc, code);
    assert_non_null(strstr(err.msg, want));
    if (want2) assert_non_null(strstr(err.msg, want2));
    assert_null(ts.docs);
    assert_int_equal(ts.n_docs, 0);
    rb_task_set_free(&ts); /* safe after an error */
}

static void check_req(const rb_task_doc *d, int k, const char *ctx, const char *cont, const char *choice) {
    assert_true(k < d->n_req);
    assert_string_equal(d->ctx[k], ctx);
    assert_string_equal(d->cont[k], cont);
    assert_string_equal(d->choice[k], choice);
}

/* ---- names, labels, metrics ---- */

static void test_names(void **state) {
    (void)state;
    const char *names[] = {"piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande",
                           "lambada_openai", "boolq", "openbookqa", "copa"};
    for (int t = 0; t < RB_TASK_COUNT; t++) {
        assert_int_equal(rb_task_from_name(names[t]), t);
        assert_string_equal(rb_task_name(t), names[t]);
    }
    assert_int_equal(rb_task_from_name("lambada"), RB_TASK_LAMBADA);
    assert_int_equal(rb_task_from_name("mmlu"), -1);
    assert_int_equal(rb_task_from_name(NULL), -1);
    assert_string_equal(rb_task_label(RB_TASK_ARC_CHALLENGE), "ARC-c");
    assert_string_equal(rb_task_label(RB_TASK_OPENBOOKQA), "OBQA");
    assert_string_equal(rb_task_format_name(RB_TFMT_FOUNDRY_SCHEMA), "foundry-schema");
    assert_string_equal(rb_task_format_name(RB_TFMT_HELLASWAG_TXT), "hellaswag-txt");
    assert_int_equal(rb_task_metrics(RB_TASK_PIQA, RB_SCORE_CHOICE), RB_METRIC_ACC | RB_METRIC_ACC_NORM);
    assert_int_equal(rb_task_metrics(RB_TASK_HELLASWAG, RB_SCORE_CHOICE), RB_METRIC_ACC | RB_METRIC_ACC_NORM);
    assert_int_equal(rb_task_metrics(RB_TASK_HELLASWAG, RB_SCORE_LLAMACPP), RB_METRIC_ACC);
    assert_int_equal(rb_task_metrics(RB_TASK_WINOGRANDE, RB_SCORE_CHOICE), RB_METRIC_ACC);
    assert_int_equal(rb_task_metrics(RB_TASK_LAMBADA, RB_SCORE_GREEDY), RB_METRIC_ACC | RB_METRIC_PPL);
    assert_int_equal(rb_task_metrics(RB_TASK_COPA, RB_SCORE_CHOICE), RB_METRIC_ACC);
    assert_int_equal(rb_task_metrics(RB_TASK_OPENBOOKQA, RB_SCORE_CHOICE), RB_METRIC_ACC | RB_METRIC_ACC_NORM);
}

/* ---- PIQA ---- */

static const char piqa_jsonl[] = "{\"goal\": \"Open a jar\", \"sol1\": \"Twist the lid.\", \"sol2\": \"Hit it.\"}\n"
                                 "\n"
                                 "{\"goal\": \"Dry hair\", \"sol1\": \"Use a towel.\", \"sol2\": \"Use water.\"}\r\n"
                                 "{\"goal\": \"g3\", \"sol1\": \"a\", \"sol2\": \"b\"}\n";

static void test_piqa(void **state) {
    rb_test_dir_fixture *fx = *state;
    char path[700], lab[700], other[700];
    put_file(fx->dir, "p.jsonl", piqa_jsonl, path, sizeof path);
    put_file(fx->dir, "p-labels.lst", "0\n1\r\n1\n\n", lab, sizeof lab);
    rb_task_set ts;
    read_ok(path, RB_TASK_PIQA, NULL, 0, &ts); /* default labels path p-labels.lst */
    assert_int_equal(ts.n_docs, 3);
    assert_int_equal(ts.format, RB_TFMT_PIQA);
    assert_int_equal(ts.scoring, RB_SCORE_CHOICE);
    assert_int_equal(ts.task, RB_TASK_PIQA);
    assert_string_equal(ts.path, path);
    assert_int_equal(ts.docs[0].n_req, 2);
    check_req(&ts.docs[0], 0, "Question: Open a jar\nAnswer:", " Twist the lid.", "Twist the lid.");
    check_req(&ts.docs[0], 1, "Question: Open a jar\nAnswer:", " Hit it.", "Hit it.");
    assert_int_equal(ts.docs[0].gold, 0);
    assert_int_equal(ts.docs[1].gold, 1);
    assert_int_equal(ts.docs[2].gold, 1);
    assert_int_equal(ts.docs[0].line, 1);
    assert_int_equal(ts.docs[1].line, 3); /* blank lines count */
    assert_int_equal(ts.docs[2].line, 4);
    rb_task_set_free(&ts);
    rb_task_set_free(&ts); /* twice is harmless */

    /* explicit labels file; limit keeps the first documents but the labels must still match the whole file */
    put_file(fx->dir, "other.lst", "1\n0\n0\n", other, sizeof other);
    read_ok(path, RB_TASK_PIQA, other, 2, &ts);
    assert_int_equal(ts.n_docs, 2);
    assert_int_equal(ts.docs[0].gold, 1);
    assert_int_equal(ts.docs[1].gold, 0);
    rb_task_set_free(&ts);

    /* inline "label" (HF layout) */
    put_file(fx->dir, "hf.jsonl",
             "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 1}\n"
             "{\"goal\": \"h\", \"sol1\": \"c\", \"sol2\": \"d\", \"label\": 0}\n",
             other, sizeof other);
    read_ok(other, RB_TASK_PIQA, NULL, 0, &ts);
    assert_int_equal(ts.n_docs, 2);
    assert_int_equal(ts.docs[0].gold, 1);
    assert_int_equal(ts.docs[1].gold, 0);
    rb_task_set_free(&ts);
}

static void test_piqa_errors(void **state) {
    rb_test_dir_fixture *fx = *state;
    char path[700], lab[700];
    rb_task_set ts;
    rb_error err = {0};
    put_file(fx->dir, "p.jsonl", piqa_jsonl, path, sizeof path);
    /* missing labels file */
    assert_int_equal(rb_taskfile_read(path, RB_TASK_PIQA, NULL, 0, &ts, &err), RB_ENOTFOUND);
    assert_non_null(strstr(err.msg, "p-labels.lst"));
    assert_non_null(strstr(err.msg, "p.jsonl"));
    /* too few labels */
    put_file(fx->dir, "p-labels.lst", "0\n1\n", lab, sizeof lab);
    assert_int_equal(rb_taskfile_read(path, RB_TASK_PIQA, NULL, 0, &ts, &err), RB_EFORMAT);
    assert_non_null(strstr(err.msg, "p-labels.lst:2:"));
    assert_non_null(strstr(err.msg, "3 documents"));
    /* too many labels, also under a limit */
    put_file(fx->dir, "p-labels.lst", "0\n1\n1\n0\n", lab, sizeof lab);
    assert_int_equal(rb_taskfile_read(path, RB_TASK_PIQA, NULL, 1, &ts, &err), RB_EFORMAT);
    assert_non_null(strstr(err.msg, "p-labels.lst:4:"));
    /* a label that is not 0/1 */
    put_file(fx->dir, "p-labels.lst", "0\n2\n1\n", lab, sizeof lab);
    assert_int_equal(rb_taskfile_read(path, RB_TASK_PIQA, NULL, 0, &ts, &err), RB_EFORMAT);
    assert_non_null(strstr(err.msg, "p-labels.lst:2: label '2'"));
    assert_null(ts.docs);

    expect_err(fx->dir, "keys.jsonl",
               "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}\n"
               "{\"goal\": \"g\", \"sol1\": \"a\", \"solution2\": \"b\", \"label\": 0}\n",
               RB_TASK_PIQA, RB_EFORMAT,
               "keys.jsonl:2: missing key 'sol2' (expected the PIQA release layout {goal, sol1, sol2})", NULL);
    expect_err(fx->dir, "range.jsonl", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 3}\n",
               RB_TASK_PIQA, RB_EFORMAT, "range.jsonl:1: label 3 out of range 0..1", NULL);
    expect_err(fx->dir, "empty.jsonl", "\n\n{\"goal\": \"g\", \"sol1\": \"\", \"sol2\": \"b\", \"label\": 0}\n",
               RB_TASK_PIQA, RB_EFORMAT, "empty.jsonl:3:", "sol1 is an empty choice");
    expect_err(fx->dir, "type.jsonl", "{\"goal\": 5, \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}\n", RB_TASK_PIQA,
               RB_EFORMAT, "type.jsonl:1: 'goal' is an integer, not a string", NULL);
    /* a foundry multiple-choice file is refused for piqa, naming the task, the format and the file */
    expect_err(fx->dir, "fmc.jsonl", "{\"query\": \"Question: q\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n",
               RB_TASK_PIQA, RB_EFORMAT, "fmc.jsonl:1: task piqa", "foundry-mc");
}

/* ---- ARC and OpenBookQA ---- */

static void test_arc(void **state) {
    rb_test_dir_fixture *fx = *state;
    char path[700];
    rb_task_set ts;
    put_file(fx->dir, "arc.jsonl",
             "{\"id\": \"a1\", \"question\": {\"stem\": \"Which is a gas?\", \"choices\": [{\"text\": \"ice\", "
             "\"label\": \"A\"}, {\"text\": \"steam\", \"label\": \"B\"}, {\"text\": \"rock\", \"label\": \"C\"}, "
             "{\"text\": \"wood\", \"label\": \"D\"}, {\"text\": \"iron\", \"label\": \"E\"}]}, \"answerKey\": \"B\"}\n"
             "{\"id\": \"a2\", \"question\": {\"stem\": \"Pick 3\", \"choices\": [{\"text\": \"one\", \"label\": "
             "\"1\"}, {\"text\": \"two\", \"label\": \"2\"}, {\"text\": \"three\", \"label\": \"3\"}]}, \"answerKey\": "
             "\"3\"}\n",
             path, sizeof path);
    read_ok(path, RB_TASK_ARC_CHALLENGE, NULL, 0, &ts);
    assert_int_equal(ts.format, RB_TFMT_ARC);
    assert_int_equal(ts.n_docs, 2);
    assert_int_equal(ts.docs[0].n_req, 5);
    assert_int_equal(ts.docs[0].gold, 1);
    check_req(&ts.docs[0], 4, "Question: Which is a gas?\nAnswer:", " iron", "iron");
    assert_int_equal(ts.docs[1].n_req, 3);
    assert_int_equal(ts.docs[1].gold, 2);
    rb_task_set_free(&ts);
    /* the same file as openbookqa: the stem as is */
    read_ok(path, RB_TASK_OPENBOOKQA, NULL, 0, &ts);
    check_req(&ts.docs[0], 1, "Which is a gas?", " steam", "steam");
    rb_task_set_free(&ts);

    /* OpenBookQA: answerKey.lstrip(); ARC does not strip */
    const char *obqa = "{\"id\": \"o\", \"question\": {\"stem\": \"Predators eat\", \"choices\": "
                       "[{\"text\": \"lions\", "
                       "\"label\": \"A\"}, {\"text\": \"bunnies\", \"label\": \"B\"}]}, \"answerKey\": \" B\"}\n";
    put_file(fx->dir, "obqa.jsonl", obqa, path, sizeof path);
    read_ok(path, RB_TASK_OPENBOOKQA, NULL, 0, &ts);
    assert_int_equal(ts.docs[0].gold, 1);
    rb_task_set_free(&ts);
    expect_err(fx->dir, "obqa.jsonl", obqa, RB_TASK_ARC_EASY, RB_EFORMAT, "obqa.jsonl:1: answerKey ' B' is not one",
               "A, B");

    /* foundry copies */
    put_file(fx->dir, "f.jsonl",
             "{\"choices\": [\"ice\", \"steam\"], \"query\": \"Question: Which is a gas?\", \"gold\": 1}\n", path,
             sizeof path);
    read_ok(path, RB_TASK_ARC_EASY, NULL, 0, &ts);
    assert_int_equal(ts.format, RB_TFMT_FOUNDRY_MC);
    check_req(&ts.docs[0], 0, "Question: Which is a gas?\nAnswer:", " ice", "ice");
    assert_int_equal(ts.docs[0].gold, 1);
    rb_task_set_free(&ts);
    read_ok(path, RB_TASK_OPENBOOKQA, NULL, 0, &ts);
    check_req(&ts.docs[0], 1, "Question: Which is a gas?", " steam", "steam");
    rb_task_set_free(&ts);

    expect_err(fx->dir, "noq.jsonl", "{\"choices\": [\"a\", \"b\"], \"query\": \"Which?\", \"gold\": 0}\n",
               RB_TASK_ARC_EASY, RB_EFORMAT, "noq.jsonl:1:", "Question: ");
    expect_err(fx->dir, "gold.jsonl",
               "{\"choices\": [\"a\", \"b\", \"c\", \"d\"], \"query\": \"Question: q\", \"gold\": 0}\n"
               "{\"choices\": [\"a\", \"b\", \"c\", \"d\"], \"query\": \"Question: q\", \"gold\": 5}\n",
               RB_TASK_ARC_EASY, RB_EFORMAT, "gold.jsonl:2: gold 5 out of range 0..3", NULL);
    expect_err(fx->dir, "one.jsonl", "{\"choices\": [\"a\"], \"query\": \"Question: q\", \"gold\": 0}\n",
               RB_TASK_ARC_EASY, RB_EFORMAT, "one.jsonl:1: 1 choices", NULL);
    expect_err(fx->dir, "stem.jsonl",
               "{\"id\": \"a\", \"question\": {\"choices\": [{\"text\": \"x\", \"label\": \"A\"}]}, \"answerKey\": "
               "\"A\"}\n",
               RB_TASK_ARC_EASY, RB_EFORMAT, "stem.jsonl:1: missing key 'question.stem'", NULL);
}

/* ---- HellaSwag ---- */

static void test_hellaswag_jsonl(void **state) {
    rb_test_dir_fixture *fx = *state;
    char path[700];
    rb_task_set ts;
    /* strip (Unicode whitespace too), " [title]" -> ". ", non-greedy "[...]" not across '\n', one pass of
     * "  " -> " ", capitalize (first upper, the rest lower) */
    put_file(fx->dir, "hs.jsonl",
             "{\"activity_label\": \" Home and Garden\", \"ctx_a\": \"A man [header] is seen [title] cleaning\", "
             "\"ctx_b\": \"tHE Floor.  He   [x\", \"endings\": [\"\\u00a0 wipes it [step] clean.\\u2003 \", "
             "\"[title] mops   up.\", \"a [b\\n] c [d]\", \"rubs [it] [title] x\"], \"label\": \"2\"}\n"
             "\n"
             "{\"activity_label\": \"A\", \"ctx_a\": \"b\", \"ctx_b\": \"\", \"endings\": [\"1\", \"2\", \"3\", "
             "\"4\"], \"label\": 3}\n",
             path, sizeof path);
    read_ok(path, RB_TASK_HELLASWAG, NULL, 0, &ts);
    assert_int_equal(ts.format, RB_TFMT_HELLASWAG_JSONL);
    assert_int_equal(ts.scoring, RB_SCORE_CHOICE);
    assert_int_equal(ts.n_docs, 2);
    const char *ctx = "Home and Garden: A man is seen. cleaning The floor. he  [x";
    check_req(&ts.docs[0], 0, ctx, " wipes it clean.", "wipes it clean.");
    check_req(&ts.docs[0], 1, ctx, "  mops  up.", " mops  up.");
    check_req(&ts.docs[0], 2, ctx, " a [b\n] c ", "a [b\n] c ");
    check_req(&ts.docs[0], 3, ctx, " rubs . x", "rubs . x");
    assert_int_equal(ts.docs[0].gold, 2);
    check_req(&ts.docs[1], 0, "A: b", " 1", "1"); /* "A: b " stripped */
    assert_int_equal(ts.docs[1].gold, 3);
    assert_int_equal(ts.docs[1].line, 3);
    rb_task_set_free(&ts);

    expect_err(fx->dir, "e3.jsonl",
               "{\"activity_label\": \"A\", \"ctx_a\": \"b\", \"ctx_b\": \"c\", \"endings\": [\"1\", \"2\", \"3\"], "
               "\"label\": 0}\n",
               RB_TASK_HELLASWAG, RB_EFORMAT, "e3.jsonl:1: 3 endings (task hellaswag has 4)", NULL);
    expect_err(fx->dir, "el.jsonl",
               "{\"activity_label\": \"A\", \"ctx_a\": \"b\", \"ctx_b\": \"c\", \"endings\": [\"1\", \"2\", \"3\", "
               "\"4\"], \"label\": \"\"}\n",
               RB_TASK_HELLASWAG, RB_EFORMAT, "el.jsonl:1: label '' is not an integer", NULL);
    expect_err(fx->dir, "ee.jsonl",
               "{\"activity_label\": \"A\", \"ctx_a\": \"b\", \"ctx_b\": \"c\", \"endings\": [\"1\", \"[x] \", \"3\", "
               "\"4\"], \"label\": 1}\n",
               RB_TASK_HELLASWAG, RB_EFORMAT, "ee.jsonl:1: endings[1] is an empty choice", NULL);
}

static void test_hellaswag_txt(void **state) {
    rb_test_dir_fixture *fx = *state;
    char path[700];
    rb_task_set ts;
    const char *txt = "Roof shingle removal: A man is sitting on a roof. he\n"
                      "3\n"
                      "is using wrap to wrap a pair of skis.\n"
                      "is ripping level tiles off.\n"
                      "is holding a rubik's cube.\n"
                      "starts pulling up roofing on a roof.\n"
                      "Ctx [two]\r\n"
                      "0\r\n"
                      "e0\r\n"
                      "e1 \r\n"
                      "e2\r\n"
                      "e3\r\n";
    put_file(fx->dir, "hs.txt", txt, path, sizeof path);
    read_ok(path, RB_TASK_HELLASWAG, NULL, 0, &ts);
    assert_int_equal(ts.format, RB_TFMT_HELLASWAG_TXT);
    assert_int_equal(ts.scoring, RB_SCORE_LLAMACPP);
    assert_int_equal(ts.n_docs, 2);
    check_req(&ts.docs[0], 3, "Roof shingle removal: A man is sitting on a roof. he",
              " starts pulling up roofing on a roof.", "starts pulling up roofing on a roof.");
    assert_int_equal(ts.docs[0].gold, 3);
    check_req(&ts.docs[1], 1, "Ctx [two]", " e1 ", "e1 "); /* as is: only the '\r' goes */
    assert_int_equal(ts.docs[1].gold, 0);
    assert_int_equal(ts.docs[1].line, 7);
    rb_task_set_free(&ts);
    read_ok(path, RB_TASK_HELLASWAG, NULL, 1, &ts);
    assert_int_equal(ts.n_docs, 1);
    rb_task_set_free(&ts);

    expect_err(fx->dir, "trunc.txt", "c\n1\na\nb\nc\nd\nnext context\n", RB_TASK_HELLASWAG, RB_EFORMAT,
               "trunc.txt:7: truncated task", NULL);
    expect_err(fx->dir, "g5.txt", "c\n1\na\nb\nc\nd\nc2\n5\na\nb\nc\nd\n", RB_TASK_HELLASWAG, RB_EFORMAT,
               "g5.txt:8: gold 5 out of range 0..3", NULL);
    expect_err(fx->dir, "gx.txt", "c\nx\na\nb\nc\nd\n", RB_TASK_HELLASWAG, RB_EFORMAT, "gx.txt:2: gold index 'x'",
               NULL);
    expect_err(fx->dir, "ee.txt", "c\n0\na\n\nc\nd\n", RB_TASK_HELLASWAG, RB_EFORMAT, "ee.txt:4: empty ending", NULL);
    /* a text file for another task */
    expect_err(fx->dir, "copa.txt", txt, RB_TASK_COPA, RB_EFORMAT, "copa.txt:1: task copa", "hellaswag-txt");
}

/* ---- WinoGrande ---- */

static void test_winogrande(void **state) {
    rb_test_dir_fixture *fx = *state;
    char path[700];
    rb_task_set ts;
    put_file(fx->dir, "w.jsonl",
             "{\"sentence\": \"The trophy doesn't fit into the brown suitcase because the _ is too  large. \", "
             "\"option1\": \"trophy\", \"option2\": \"suitcase\", \"answer\": \"1\"}\n"
             "{\"sentence\": \"_ ran.\", \"option1\": \"Ann\", \"option2\": \"Bo\", \"answer\": \"2\"}\n",
             path, sizeof path);
    read_ok(path, RB_TASK_WINOGRANDE, NULL, 0, &ts);
    assert_int_equal(ts.format, RB_TFMT_WINOGRANDE);
    assert_int_equal(ts.scoring, RB_SCORE_CHOICE);
    check_req(&ts.docs[0], 0, "The trophy doesn't fit into the brown suitcase because the trophy", " is too  large.",
              "The trophy doesn't fit into the brown suitcase because the trophy");
    check_req(&ts.docs[0], 1, "The trophy doesn't fit into the brown suitcase because the suitcase",
              " is too  large.", "The trophy doesn't fit into the brown suitcase because the suitcase");
    assert_int_equal(ts.docs[0].gold, 0);
    check_req(&ts.docs[1], 1, "Bo", " ran.", "Bo");
    assert_int_equal(ts.docs[1].gold, 1);
    rb_task_set_free(&ts);

    put_file(fx->dir, "fw.jsonl",
             "{\"context_options\": [\"Sarah was better so Sarah\", \"Sarah was better so Maria\"], "
             "\"continuation\": \"got the easier cases.\", \"gold\": 1}\n",
             path, sizeof path);
    read_ok(path, RB_TASK_WINOGRANDE, NULL, 0, &ts);
    assert_int_equal(ts.format, RB_TFMT_FOUNDRY_SCHEMA);
    assert_string_equal(ts.docs[0].ctx[1], "Sarah was better so Maria");
    assert_string_equal(ts.docs[0].cont[0], " got the easier cases.");
    assert_string_equal(ts.docs[0].cont[1], " got the easier cases.");
    assert_int_equal(ts.docs[0].gold, 1);
    rb_task_set_free(&ts);

    expect_err(fx->dir, "nous.jsonl", "{\"sentence\": \"No blank.\", \"option1\": \"a\", \"option2\": \"b\", "
               "\"answer\": \"1\"}\n", RB_TASK_WINOGRANDE, RB_EFORMAT, "nous.jsonl:1: no '_'", NULL);
    expect_err(fx->dir, "ans.jsonl", "{\"sentence\": \"_ x\", \"option1\": \"a\", \"option2\": \"b\", "
               "\"answer\": \"3\"}\n", RB_TASK_WINOGRANDE, RB_EFORMAT, "ans.jsonl:1: answer '3'", NULL);
    expect_err(fx->dir, "wb.jsonl", "{\"sentence\": \"_ x\", \"option1\": \"a\", \"option2\": \"b\", "
               "\"answer\": \"1\"}\n", RB_TASK_BOOLQ, RB_EFORMAT, "wb.jsonl:1: task boolq", "winogrande");
}

/* ---- LAMBADA ---- */

static void test_lambada(void **state) {
    rb_test_dir_fixture *fx = *state;
    char path[700];
    rb_task_set ts;
    put_file(fx->dir, "l.jsonl", "{\"text\": \"He said  \\\"go\\\"\\n\\nand left  home\"}\n", path, sizeof path);
    read_ok(path, RB_TASK_LAMBADA, NULL, 0, &ts);
    assert_int_equal(ts.format, RB_TFMT_LAMBADA);
    assert_int_equal(ts.scoring, RB_SCORE_GREEDY);
    assert_int_equal(ts.docs[0].n_req, 1);
    check_req(&ts.docs[0], 0, "He said  \"go\"\n\nand left ", " home", "home"); /* split(' '): the empty piece stays */
    assert_int_equal(ts.docs[0].gold, 0);
    rb_task_set_free(&ts);

    put_file(fx->dir, "fl.jsonl",
             "{\"context\": \"I don't care about\", \"continuation\": \"signs\"}\n"
             "{\"context\": \"a b\", \"continuation\": \"c d\"}\n",
             path, sizeof path);
    read_ok(path, RB_TASK_LAMBADA, NULL, 0, &ts);
    assert_int_equal(ts.format, RB_TFMT_FOUNDRY_LM);
    check_req(&ts.docs[0], 0, "I don't care about", " signs", "signs");
    check_req(&ts.docs[1], 0, "a b c", " d", "d"); /* re-split as lm-eval splits the joined text */
    rb_task_set_free(&ts);

    expect_err(fx->dir, "nosp.jsonl", "{\"text\": \"word\"}\n", RB_TASK_LAMBADA, RB_EFORMAT, "nosp.jsonl:1:", NULL);
    expect_err(fx->dir, "endsp.jsonl", "{\"text\": \"a b \"}\n", RB_TASK_LAMBADA, RB_EFORMAT, "endsp.jsonl:1:",
               "empty last word");
}

/* ---- BoolQ ---- */

static void test_boolq(void **state) {
    rb_test_dir_fixture *fx = *state;
    char path[700];
    rb_task_set ts;
    put_file(fx->dir, "b.jsonl",
             "{\"question\": \"is it wet\", \"passage\": \"Water is wet.\", \"idx\": 0, \"label\": true}\n"
             "{\"question\": \"is it dry\", \"passage\": \"P\", \"idx\": 1, \"label\": false}\n"
             "{\"question\": \"q\", \"passage\": \"P\", \"idx\": 2, \"label\": 1}\n",
             path, sizeof path);
    read_ok(path, RB_TASK_BOOLQ, NULL, 0, &ts);
    assert_int_equal(ts.format, RB_TFMT_BOOLQ);
    check_req(&ts.docs[0], 0, "Water is wet.\nQuestion: is it wet?\nAnswer:", " no", "no");
    check_req(&ts.docs[0], 1, "Water is wet.\nQuestion: is it wet?\nAnswer:", " yes", "yes");
    assert_int_equal(ts.docs[0].gold, 1);
    assert_int_equal(ts.docs[1].gold, 0);
    assert_int_equal(ts.docs[2].gold, 1);
    rb_task_set_free(&ts);

    /* the passage itself holds "\nQuestion: ": the last one separates */
    put_file(fx->dir, "fb.jsonl",
             "{\"query\": \"Passage: Intro\\nQuestion: old\\nQuestion: is it?\", \"choices\": [\"no\", \"yes\"], "
             "\"gold\": 0}\n",
             path, sizeof path);
    read_ok(path, RB_TASK_BOOLQ, NULL, 0, &ts);
    assert_int_equal(ts.format, RB_TFMT_FOUNDRY_MC);
    check_req(&ts.docs[0], 1, "Intro\nQuestion: old\nQuestion: is it?\nAnswer:", " yes", "yes");
    rb_task_set_free(&ts);

    expect_err(fx->dir, "fbc.jsonl",
               "{\"query\": \"Passage: P\\nQuestion: q?\", \"choices\": [\"yes\", \"no\"], \"gold\": 0}\n",
               RB_TASK_BOOLQ, RB_EFORMAT, "fbc.jsonl:1: choices", NULL);
    expect_err(fx->dir, "fbp.jsonl", "{\"query\": \"P\\nQuestion: q?\", \"choices\": [\"no\", \"yes\"], \"gold\": 0}\n",
               RB_TASK_BOOLQ, RB_EFORMAT, "fbp.jsonl:1:", "Passage: ");
    expect_err(fx->dir, "fbs.jsonl", "{\"query\": \"Passage: P q?\", \"choices\": [\"no\", \"yes\"], \"gold\": 0}\n",
               RB_TASK_BOOLQ, RB_EFORMAT, "fbs.jsonl:1:", "Question: ");
    expect_err(fx->dir, "bl.jsonl", "{\"question\": \"q\", \"passage\": \"P\", \"label\": \"yes\"}\n", RB_TASK_BOOLQ,
               RB_EFORMAT, "bl.jsonl:1: 'label' is a string", NULL);
}

/* ---- COPA ---- */

static void test_copa(void **state) {
    rb_test_dir_fixture *fx = *state;
    char path[700];
    rb_task_set ts;
    put_file(fx->dir, "c.jsonl",
             "{\"premise\": \"  The man turned on the faucet. \", \"choice1\": \"The toilet filled with water.\", "
             "\"choice2\": \"Water flowed from the spout.\", \"question\": \"effect\", \"label\": 1, \"idx\": 0}\n"
             "{\"premise\": \"My body cast a shadow over the grass.\", \"choice1\": \"The sun was rising.\", "
             "\"choice2\": \"The grass was cut.\", \"question\": \"cause\", \"label\": 0, \"idx\": 1}\n"
             "{\"premise\": \"Caf\\u00e9\\u00e9\", \"choice1\": \"x\", \"choice2\": \"y\", \"question\": \"cause\", "
             "\"label\": 0, \"idx\": 2}\n",
             path, sizeof path);
    read_ok(path, RB_TASK_COPA, NULL, 0, &ts);
    assert_int_equal(ts.format, RB_TFMT_COPA);
    /* two spaces: lm-eval's doc_to_choice " " + choice after the target delimiter " " */
    check_req(&ts.docs[0], 0, "The man turned on the faucet therefore", "  the toilet filled with water.",
              " the toilet filled with water.");
    check_req(&ts.docs[0], 1, "The man turned on the faucet therefore", "  water flowed from the spout.",
              " water flowed from the spout.");
    assert_int_equal(ts.docs[0].gold, 1);
    check_req(&ts.docs[1], 0, "My body cast a shadow over the grass because", "  the sun was rising.",
              " the sun was rising.");
    assert_string_equal(ts.docs[2].ctx[0], "Caf\xc3\xa9 because"); /* [:-1] drops one character, two bytes */
    rb_task_set_free(&ts);

    put_file(fx->dir, "fc.jsonl",
             "{\"query\": \"The man turned on the faucet, therefore\", \"gold\": 1, \"choices\": [\"the toilet filled "
             "with water.\", \"water flowed from the spout.\"]}\n"
             "{\"query\": \"The hamburger meat browned, because\", \"gold\": 1, \"choices\": [\"the cook froze it.\", "
             "\"the cook grilled it.\"]}\n",
             path, sizeof path);
    read_ok(path, RB_TASK_COPA, NULL, 0, &ts);
    assert_int_equal(ts.format, RB_TFMT_FOUNDRY_MC);
    check_req(&ts.docs[0], 1, "The man turned on the faucet therefore", "  water flowed from the spout.",
              " water flowed from the spout.");
    check_req(&ts.docs[1], 0, "The hamburger meat browned because", "  the cook froze it.", " the cook froze it.");
    rb_task_set_free(&ts);

    expect_err(fx->dir, "fcq.jsonl", "{\"query\": \"The man turned on the faucet so\", \"gold\": 1, \"choices\": "
               "[\"a\", \"b\"]}\n", RB_TASK_COPA, RB_EFORMAT, "fcq.jsonl:1:", "because");
    expect_err(fx->dir, "fc3.jsonl", "{\"query\": \"X, because\", \"gold\": 1, \"choices\": [\"a\", \"b\", \"c\"]}\n",
               RB_TASK_COPA, RB_EFORMAT, "fc3.jsonl:1: 3 choices (task copa has 2)", NULL);
    expect_err(fx->dir, "cq.jsonl", "{\"premise\": \"P.\", \"choice1\": \"a\", \"choice2\": \"b\", \"question\": "
               "\"why\", \"label\": 0}\n", RB_TASK_COPA, RB_EFORMAT, "cq.jsonl:1: question 'why'", NULL);
    expect_err(fx->dir, "ce.jsonl", "{\"premise\": \"P.\", \"choice1\": \"a\", \"choice2\": \"\", \"question\": "
               "\"cause\", \"label\": 0}\n", RB_TASK_COPA, RB_EFORMAT, "ce.jsonl:1: choice2 is an empty choice", NULL);
}

/* ---- files that are not what they should be ---- */

static void test_bad_files(void **state) {
    rb_test_dir_fixture *fx = *state;
    const char *ok = "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}\n";
    char text[512];
    snprintf(text, sizeof text, "%s\n{\"goal\": \"g\", \"sol1\": \"a\",\n", ok);
    expect_err(fx->dir, "bad.jsonl", text, RB_TASK_PIQA, RB_EFORMAT, "bad.jsonl:3:", "invalid JSON");
    snprintf(text, sizeof text, "%s[1, 2]\n", ok);
    expect_err(fx->dir, "arr.jsonl", text, RB_TASK_PIQA, RB_EFORMAT, "arr.jsonl:2: the line is an array, not a JSON "
               "object", NULL);
    expect_err(fx->dir, "arr1.jsonl", "[1, 2]\n", RB_TASK_PIQA, RB_EFORMAT, "arr1.jsonl:1:", "not a JSON object");
    expect_err(fx->dir, "unk.jsonl", "{\"foo\": 1, \"bar\": 2}\n", RB_TASK_BOOLQ, RB_EFORMAT,
               "unk.jsonl:1: unrecognized record layout {foo, bar}", NULL);
    expect_err(fx->dir, "fl.jsonl", "{\"context\": \"a\", \"continuation\": \"b\"}\n", RB_TASK_OPENBOOKQA,
               RB_EFORMAT, "fl.jsonl:1: task openbookqa cannot be read from a foundry-lm file", NULL);
    expect_err(fx->dir, "empty.jsonl", "", RB_TASK_BOOLQ, RB_EFORMAT, "empty.jsonl", "no documents");
    expect_err(fx->dir, "blank.jsonl", "\n  \n\r\n", RB_TASK_BOOLQ, RB_EFORMAT, "blank.jsonl", "no documents");
    rb_task_set ts;
    rb_error err = {0};
    char path[700];
    snprintf(path, sizeof path, "%s/none.jsonl", fx->dir);
    assert_int_equal(rb_taskfile_read(path, RB_TASK_BOOLQ, NULL, 0, &ts, &err), RB_ENOTFOUND);
    assert_non_null(strstr(err.msg, "none.jsonl"));
    assert_int_equal(rb_taskfile_read(fx->dir, RB_TASK_BOOLQ, NULL, 0, &ts, &err), RB_EIO); /* a directory */
    rb_task_set_free(&ts);
}

/* ---- shipped files ---- */

typedef struct shipped {
    const char *rel;
    int task, format, n_docs;
} shipped;

static const rb_task_doc *read_shipped(const char *rel, int task, int format, int n_docs, rb_task_set *ts) {
    const char *p = rb_test_data(rel);
    if (!p) return NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s", p);
    read_ok(path, task, NULL, 0, ts);
    assert_int_equal(ts->format, format);
    assert_int_equal(ts->n_docs, n_docs);
    for (int i = 0; i < ts->n_docs; i++) {
        const rb_task_doc *d = &ts->docs[i];
        assert_true(d->gold >= 0 && d->gold < d->n_req);
        for (int k = 0; k < d->n_req; k++) assert_true(d->choice[k][0] && d->cont[k][0] == ' ');
    }
    return ts->docs;
}

static void test_shipped_piqa(void **state) {
    (void)state;
    RB_REQUIRE_DATA(p, "tasks/piqa/valid.jsonl");
    RB_REQUIRE_DATA(l, "tasks/piqa/valid-labels.lst");
    rb_task_set ts;
    const rb_task_doc *d = read_shipped("tasks/piqa/valid.jsonl", RB_TASK_PIQA, RB_TFMT_PIQA, 1838, &ts);
    check_req(&d[0], 0, "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:",
              " Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips, you "
              "will also need to supply it with a water bottle and a food dish.",
              "Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips, you "
              "will also need to supply it with a water bottle and a food dish.");
    assert_int_equal(d[0].gold, 0);
    assert_int_equal(d[1].gold, 1);
    rb_task_set_free(&ts);
    read_ok(p, RB_TASK_PIQA, l, 10, &ts);
    assert_int_equal(ts.n_docs, 10);
    rb_task_set_free(&ts);
}

static void test_shipped_hellaswag(void **state) {
    (void)state;
    RB_REQUIRE_DATA(p, "tasks/hellaswag/hellaswag_val_full.txt");
    rb_task_set ts;
    const rb_task_doc *d = read_shipped("tasks/hellaswag/hellaswag_val_full.txt", RB_TASK_HELLASWAG,
                                        RB_TFMT_HELLASWAG_TXT, 10042, &ts);
    assert_int_equal(ts.scoring, RB_SCORE_LLAMACPP);
    check_req(&d[0], 0, "Roof shingle removal: A man is sitting on a roof. he",
              " is using wrap to wrap a pair of skis.", "is using wrap to wrap a pair of skis.");
    assert_int_equal(d[0].gold, 3);
    assert_int_equal(d[10041].gold, 2);
    assert_int_equal(d[10041].line, 60247);
    rb_task_set_free(&ts);
    read_ok(p, RB_TASK_HELLASWAG, NULL, 100, &ts);
    assert_int_equal(ts.n_docs, 100);
    rb_task_set_free(&ts);
}

static void test_shipped_foundry(void **state) {
    (void)state;
    RB_REQUIRE_DATA(p, "tasks/llm-foundry/copa.jsonl");
    rb_task_set ts;
    const rb_task_doc *d;
    if ((d = read_shipped("tasks/llm-foundry/copa.jsonl", RB_TASK_COPA, RB_TFMT_FOUNDRY_MC, 100, &ts))) {
        check_req(&d[0], 0, "The man turned on the faucet therefore", "  the toilet filled with water.",
                  " the toilet filled with water.");
        check_req(&d[0], 1, "The man turned on the faucet therefore", "  water flowed from the spout.",
                  " water flowed from the spout.");
        assert_int_equal(d[0].gold, 1);
        rb_task_set_free(&ts);
    }
    const char *missing[8];
    int n_missing = 0;
    if ((d = read_shipped("tasks/llm-foundry/arc_easy.jsonl", RB_TASK_ARC_EASY, RB_TFMT_FOUNDRY_MC, 2376, &ts))) {
        check_req(&d[0], 0,
                  "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\n"
                  "Answer:",
                  " Sunlight is the source of energy for nearly all ecosystems.",
                  "Sunlight is the source of energy for nearly all ecosystems.");
        assert_int_equal(d[0].gold, 0);
        rb_task_set_free(&ts);
    } else missing[n_missing++] = "arc_easy";
    if ((d = read_shipped("tasks/llm-foundry/arc_challenge.jsonl", RB_TASK_ARC_CHALLENGE, RB_TFMT_FOUNDRY_MC, 1172,
                          &ts))) {
        assert_string_equal(d[0].cont[2], " Planetary days will become shorter.");
        assert_int_equal(d[0].gold, 2);
        assert_int_equal(d[0].n_req, 4);
        rb_task_set_free(&ts);
    } else missing[n_missing++] = "arc_challenge";
    if ((d = read_shipped("tasks/llm-foundry/openbook_qa.jsonl", RB_TASK_OPENBOOKQA, RB_TFMT_FOUNDRY_MC, 500, &ts))) {
        check_req(&d[0], 1,
                  "A person wants to start saving money so that they can afford a nice vacation at the end of the "
                  "year. After looking over their budget and expenses, they decide the best way to save money is to",
                  " quit eating lunch out", "quit eating lunch out");
        assert_int_equal(d[0].gold, 1);
        rb_task_set_free(&ts);
    } else missing[n_missing++] = "openbook_qa";
    if ((d = read_shipped("tasks/llm-foundry/winogrande.jsonl", RB_TASK_WINOGRANDE, RB_TFMT_FOUNDRY_SCHEMA, 1267,
                          &ts))) {
        check_req(&d[0], 1, "Sarah was a much better surgeon than Maria so Maria", " always got the easier cases.",
                  "Sarah was a much better surgeon than Maria so Maria");
        assert_int_equal(d[0].gold, 1);
        rb_task_set_free(&ts);
    } else missing[n_missing++] = "winogrande";
    if ((d = read_shipped("tasks/llm-foundry/lambada_openai.jsonl", RB_TASK_LAMBADA, RB_TFMT_FOUNDRY_LM, 5153,
                          &ts))) {
        assert_int_equal(ts.scoring, RB_SCORE_GREEDY);
        size_t n = strlen(d[0].ctx[0]);
        assert_true(n > 40);
        assert_string_equal(d[0].ctx[0] + n - 40, " in a confident grin, I don't care about");
        assert_string_equal(d[0].cont[0], " signs");
        rb_task_set_free(&ts);
    } else missing[n_missing++] = "lambada_openai";
    if ((d = read_shipped("tasks/llm-foundry/boolq.jsonl", RB_TASK_BOOLQ, RB_TFMT_FOUNDRY_MC, 3270, &ts))) {
        const char *c = d[0].ctx[0];
        assert_int_equal(strncmp(c, "All biomass goes through at least some of these steps: it ne", 60), 0);
        const char *tail = "\nQuestion: does ethanol take more energy make that produces?\nAnswer:";
        assert_true(strlen(c) > strlen(tail));
        assert_string_equal(c + strlen(c) - strlen(tail), tail);
        assert_int_equal(d[0].gold, 0);
        rb_task_set_free(&ts);
    } else missing[n_missing++] = "boolq";
    for (int i = 0; i < n_missing; i++)
        fprintf(stderr, "#\n# SKIPPED: shared data file 'tasks/llm-foundry/%s.jsonl' not found\n#\n", missing[i]);
    if (n_missing) skip();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test_setup_teardown(test_piqa, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_piqa_errors, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_arc, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_hellaswag_jsonl, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_hellaswag_txt, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_winogrande, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_lambada, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_boolq, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_copa, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, rb_test_dir_setup, rb_test_dir_teardown),
        cmocka_unit_test(test_shipped_piqa),
        cmocka_unit_test(test_shipped_hellaswag),
        cmocka_unit_test(test_shipped_foundry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* data.tasks, data.task_bos, data.task_max_length: validation with positions, the canonical form
 * (emitted only with tasks, so task-free configs keep their ids), overrides, the schema's task names
 * against rb_task_name, and the run id (task files and PIQA's labels file are inputs). */
#include "cfg_test_util.h"

#include "core/rb_file.h"
#include "eval/rb_tasks.h"
#include "harness/rb_run.h"
#include "harness/rb_sha256.h"
#include "tasks/rb_taskfile.h"

#define TASKS_MIN CFG_MIN "  tasks:\n"

static char *load_canonical(const char *text, const char *const *ov, size_t n) {
    rb_config a, b;
    rb_error e;
    if (cfg_load(text, ov, n, &a, &e)) {
        fprintf(stderr, "# %s\n", e.msg);
        fail();
    }
    if (cfg_load(a.canonical, NULL, 0, &b, &e)) {
        fprintf(stderr, "# canonical does not load: %s\n%s", e.msg, a.canonical);
        fail();
    }
    assert_string_equal(a.canonical, b.canonical);
    char *s = rb_strdup(a.canonical);
    rb_config_free(&a);
    rb_config_free(&b);
    return s;
}

static void test_tasks_parse(void **state) {
    (void)state;
    const char *text = TASKS_MIN
        "    - {name: piqa, file: '${RB_TEST_MODELS}/piqa/valid.jsonl', labels: /d/piqa/valid-labels.lst, limit: 200}\n"
        "    - name: arc_easy\n"
        "      file: /d/arc_easy.jsonl\n"
        "    - {name: lambada_openai, file: /d/lambada.jsonl, limit: 0}\n"
        "  task_bos: tokenizer-default\n"
        "  task_max_length: 1024\n";
    rb_config c;
    rb_error e;
    assert_int_equal(cfg_load(text, NULL, 0, &c, &e), 0);
    assert_int_equal(c.data.n_tasks, 3);
    assert_int_equal(c.data.tasks[0].task, RB_TASK_PIQA);
    assert_string_equal(c.data.tasks[0].file, "/models/piqa/valid.jsonl");
    assert_string_equal(c.data.tasks[0].labels, "/d/piqa/valid-labels.lst");
    assert_int_equal(c.data.tasks[0].limit, 200);
    assert_int_equal(c.data.tasks[1].task, RB_TASK_ARC_EASY);
    assert_null(c.data.tasks[1].labels);
    assert_int_equal(c.data.tasks[1].limit, 0);
    assert_int_equal(c.data.tasks[2].task, RB_TASK_LAMBADA);
    assert_int_equal(c.data.task_bos, RB_TASK_BOS_DEFAULT);
    assert_int_equal(c.data.task_max_length, 1024);
    rb_config_free(&c);
    char *s = load_canonical(text, NULL, 0);
    const char *want = "  tasks:\n"
                       "    - name: piqa\n"
                       "      file: /models/piqa/valid.jsonl\n"
                       "      labels: /d/piqa/valid-labels.lst\n"
                       "      limit: 200\n"
                       "    - name: arc_easy\n"
                       "      file: /d/arc_easy.jsonl\n"
                       "    - name: lambada_openai\n"
                       "      file: /d/lambada.jsonl\n"
                       "  task_bos: tokenizer-default\n"
                       "  task_max_length: 1024\n"
                       "quant:\n";
    if (!s || !strstr(s, want)) fprintf(stderr, "# canonical:\n%s", s ? s : "(none)");
    assert_non_null(strstr(s, want));
    free(s);
    /* "lambada" is rb_task_from_name's alias of lambada_openai; the canonical form spells it out */
    s = load_canonical(TASKS_MIN "    - {name: lambada, file: /d/l.jsonl}\n", NULL, 0);
    assert_non_null(strstr(s, "    - name: lambada_openai\n"));
    free(s);
    /* defaults: bos none (emitted with tasks), max_length 0 = the model's (not emitted) */
    s = load_canonical(TASKS_MIN "    - {name: copa, file: /d/copa.jsonl}\n", NULL, 0);
    assert_non_null(strstr(s, "    - name: copa\n      file: /d/copa.jsonl\n  task_bos: none\nquant:\n"));
    free(s);
    assert_int_equal(cfg_load(TASKS_MIN "    - {name: copa, file: /d/copa.jsonl}\n", NULL, 0, &c, &e), 0);
    assert_int_equal(c.data.task_bos, RB_TASK_BOS_NONE);
    assert_int_equal(c.data.task_max_length, 0);
    rb_config_free(&c);
}

/* Without tasks nothing task-related is emitted: the canonical bytes (the run id) of a config are the
 * same as before tasks existed, whatever task_bos / task_max_length / an empty list say. */
static void test_tasks_absent_canonical(void **state) {
    (void)state;
    char *base = load_canonical(CFG_MIN, NULL, 0);
    assert_null(strstr(base, "task"));
    const char *variants[] = {CFG_MIN "  tasks: []\n", CFG_MIN "  task_bos: tokenizer-default\n",
                              CFG_MIN "  task_max_length: 512\n", CFG_MIN "  tasks:\n"};
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        char *s = load_canonical(variants[i], NULL, 0);
        assert_string_equal(s, base);
        free(s);
    }
    free(base);
}

static void test_tasks_errors(void **state) {
    (void)state;
    struct {
        const char *text, *msg;
    } cases[] = {
        {TASKS_MIN "    - {name: piqaa, file: /p}\n",
         "exp.yaml:6:14: data.tasks[0].name: expected one of piqa, arc_easy, arc_challenge, hellaswag, winogrande, "
         "lambada_openai, boolq, openbookqa, copa, lambada, got piqaa (did you mean 'piqa'?)"},
        {TASKS_MIN "    - {name: piqa}\n", "exp.yaml:6:7: data.tasks[0].file: required key is missing"},
        {TASKS_MIN "    - {file: /p}\n", "exp.yaml:6:7: data.tasks[0].name: required key is missing"},
        {TASKS_MIN "    - {name: piqa, file: /p, limt: 3}\n",
         "exp.yaml:6:30: data.tasks[0].limt: unknown key (did you mean 'limit'?)"},
        {TASKS_MIN "    - {name: piqa, file: /p, limit: -1}\n",
         "exp.yaml:6:37: data.tasks[0].limit: expected an integer >= 0, got -1"},
        {TASKS_MIN "    - {name: piqa, file: /p, limit: all}\n",
         "exp.yaml:6:37: data.tasks[0].limit: expected an integer, got all"},
        {TASKS_MIN "    - {name: boolq, file: /b}\n    - {name: copa, file: /c}\n    - {name: boolq, file: /b2}\n",
         "exp.yaml:8:14: data.tasks[2].name: duplicate task 'boolq' (also data.tasks[0])"},
        {TASKS_MIN "    - {name: arc_easy, file: /a, labels: /l}\n",
         "exp.yaml:6:42: data.tasks[0].labels: only piqa takes a labels file, not arc_easy"},
        {TASKS_MIN "    - {name: piqa, file: ''}\n",
         "exp.yaml:6:26: data.tasks[0].file: expected a path, got an empty string"},
        {TASKS_MIN "    - {name: piqa, file: '${RB_TEST_UNSET}/p'}\n",
         "exp.yaml:6:27: data.tasks[0].file: environment variable RB_TEST_UNSET is not set"},
        {TASKS_MIN "    - piqa\n", "exp.yaml:6:7: data.tasks[0]: expected a map, got piqa"},
        {CFG_MIN "  tasks: {name: piqa, file: /p}\n", "exp.yaml:5:10: data.tasks: expected a list, got a map"},
        {CFG_MIN "  task_bos: always\n",
         "exp.yaml:5:13: data.task_bos: expected one of none, tokenizer-default, got always"},
        {CFG_MIN "  task_bos: tokenizer_default\n",
         "exp.yaml:5:13: data.task_bos: expected one of none, tokenizer-default, got tokenizer_default (did you "
         "mean 'tokenizer-default'?)"},
        {CFG_MIN "  task_max_length: 2000000\n",
         "exp.yaml:5:20: data.task_max_length: expected an integer in [0, 1048576], got 2000000"},
        {CFG_MIN "  taks: []\n", "exp.yaml:5:3: data.taks: unknown key (did you mean 'tasks'?)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) cfg_expect_err(cases[i].text, NULL, 0, cases[i].msg);
}

static void test_tasks_overrides(void **state) {
    (void)state;
    rb_config c;
    rb_error e;
    const char *text = TASKS_MIN "    - {name: piqa, file: /p.jsonl}\n    - {name: copa, file: /c.jsonl}\n";
    const char *ov[] = {"data.tasks.0.limit=50", "+data.tasks[1].limit=7", "data.task_bos=tokenizer-default",
                        "+data.task_max_length=256", "~data.tasks.0"};
    assert_int_equal(cfg_load(text, ov, 5, &c, &e), 0);
    assert_int_equal(c.data.n_tasks, 1);
    assert_int_equal(c.data.tasks[0].task, RB_TASK_COPA);
    assert_int_equal(c.data.tasks[0].limit, 7);
    assert_int_equal(c.data.task_bos, RB_TASK_BOS_DEFAULT);
    assert_int_equal(c.data.task_max_length, 256);
    rb_config_free(&c);
    /* the only entry may go (tasks are optional); the whole list too; or be added from the command line */
    const char *ov2[] = {"~data.tasks.0", "~data.tasks.0"};
    assert_int_equal(cfg_load(text, ov2, 2, &c, &e), 0);
    assert_int_equal(c.data.n_tasks, 0);
    rb_config_free(&c);
    const char *ov3[] = {"+data.tasks=[{name: hellaswag, file: /h.txt, limit: 5}]"};
    assert_int_equal(cfg_load(CFG_MIN, ov3, 1, &c, &e), 0);
    assert_int_equal(c.data.n_tasks, 1);
    assert_int_equal(c.data.tasks[0].task, RB_TASK_HELLASWAG);
    rb_config_free(&c);
    const struct {
        const char *ov, *msg;
    } bad[] = {
        {"data.tasks.2.limit=1", "cmdline:1:1: data.tasks[2]: no such entry (the list has 2)"},
        {"data.tasks.0.name=lambda", "cmdline:1:19: data.tasks[0].name: expected one of piqa, arc_easy, "
                                     "arc_challenge, hellaswag, winogrande, lambada_openai, boolq, openbookqa, copa, "
                                     "lambada, got lambda (did you mean 'lambada'?)"},
        {"data.tasks.1.name=piqa", "cmdline:1:19: data.tasks[1].name: duplicate task 'piqa' (also data.tasks[0])"},
        {"data.task_max_length=x", "cmdline:1:22: data.task_max_length: expected an integer, got x"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *o[] = {bad[i].ov};
        cfg_expect_err(text, o, 1, bad[i].msg);
    }
}

/* The schema's names are the task module's (rb_task_name / rb_task_bos_name). */
static void test_tasks_names_agree(void **state) {
    (void)state;
    for (int t = 0; t < RB_TASK_COUNT; t++) {
        char text[512];
        snprintf(text, sizeof text, TASKS_MIN "    - {name: %s, file: /x}\n", rb_task_name(t));
        rb_config c;
        rb_error e;
        assert_int_equal(cfg_load(text, NULL, 0, &c, &e), 0);
        assert_int_equal(c.data.tasks[0].task, t);
        rb_config_free(&c);
    }
    for (int b = RB_TASK_BOS_NONE; b <= RB_TASK_BOS_DEFAULT; b++) {
        char text[512];
        snprintf(text, sizeof text, TASKS_MIN "    - {name: copa, file: /x}\n  task_bos: %s\n", rb_task_bos_name(b));
        rb_config c;
        rb_error e;
        assert_int_equal(cfg_load(text, NULL, 0, &c, &e), 0);
        assert_int_equal(c.data.task_bos, b);
        rb_config_free(&c);
    }
}

static void put(const char *path, const char *text) {
    rb_error e;
    assert_int_equal(rb_write_file(path, text, strlen(text), &e), 0);
}

static void run_id_of(const char *text, char id[RB_RUN_ID_LEN + 1]) {
    rb_config c;
    rb_error e;
    assert_int_equal(cfg_load(text, NULL, 0, &c, &e), 0);
    int rc = rb_run_compute_id(&c, id, &e);
    if (rc) fprintf(stderr, "# %s\n", e.msg);
    assert_int_equal(rc, 0);
    rb_config_free(&c);
}

/* The sha256 of file dir/name into out. */
static void sha_of(const char *dir, const char *name, char out[RB_SHA256_HEX_LEN + 1]) {
    char p[4300];
    rb_error e;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    assert_int_equal(rb_sha256_file(p, out, &e), 0);
}

/* Task files enter the run id like corpora, after them: id = sha256 of the canonical YAML and of the
 * model, corpus, task file and PIQA's default labels file beside it (when it exists); configs
 * without tasks are unaffected. (Hashes are cached per path per process, so this checks the inputs
 * list instead of editing files.) */
static void test_tasks_run_id(void **state) {
    (void)state;
    char dir[4096], p[4300], text[16384], a[RB_RUN_ID_LEN + 1], b[RB_RUN_ID_LEN + 1], c0[RB_RUN_ID_LEN + 1];
    char h[4][RB_SHA256_HEX_LEN + 1];
    rb_test_tmpdir(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/model.bin", dir);
    put(p, "not a model, hashed only");
    snprintf(p, sizeof p, "%s/text.txt", dir);
    put(p, "some text\n");
    snprintf(p, sizeof p, "%s/valid.jsonl", dir);
    put(p, "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n");
    snprintf(p, sizeof p, "%s/valid-labels.lst", dir);
    put(p, "0\n");
    sha_of(dir, "model.bin", h[0]);
    sha_of(dir, "text.txt", h[1]);
    sha_of(dir, "valid.jsonl", h[2]);
    sha_of(dir, "valid-labels.lst", h[3]);
    const char *head = "name: t\nmodel: {path: %s/model.bin}\ndata:\n  eval: [{corpus: %s/text.txt}]\n";
    snprintf(text, sizeof text, head, dir, dir);
    run_id_of(text, c0);
    rb_config c;
    rb_error e;
    assert_int_equal(cfg_load(text, NULL, 0, &c, &e), 0);
    const char *in0[] = {h[0], h[1]};
    rb_run_id(c.canonical, in0, 2, b);
    assert_string_equal(b, c0); /* as before tasks existed */
    rb_config_free(&c);
    size_t k = strlen(text);
    snprintf(text + k, sizeof text - k, "  tasks: [{name: piqa, file: %s/valid.jsonl}]\n", dir);
    run_id_of(text, a);
    assert_int_equal(cfg_load(text, NULL, 0, &c, &e), 0);
    const char *in1[] = {h[0], h[1], h[2], h[3]};
    rb_run_id(c.canonical, in1, 4, b);
    assert_string_equal(a, b);
    /* without the labels file beside it, only the task file */
    snprintf(p, sizeof p, "%s/valid-labels.lst", dir);
    assert_int_equal(unlink(p), 0);
    run_id_of(text, a);
    rb_run_id(c.canonical, in1, 3, b);
    assert_string_equal(a, b);
    rb_config_free(&c);
    /* a labels file given explicitly counts too (here the task file itself, any path does) */
    k = strlen(text);
    snprintf(text + k - 3, sizeof text - k + 3, ", labels: %s/text.txt}]\n", dir);
    run_id_of(text, a);
    assert_int_equal(cfg_load(text, NULL, 0, &c, &e), 0);
    const char *in2[] = {h[0], h[1], h[2], h[1]};
    rb_run_id(c.canonical, in2, 4, b);
    assert_string_equal(a, b);
    rb_config_free(&c);
    /* a missing task file is an error naming it */
    snprintf(text, sizeof text, head, dir, dir);
    k = strlen(text);
    snprintf(text + k, sizeof text - k, "  tasks: [{name: copa, file: %s/nope.jsonl}]\n", dir);
    assert_int_equal(cfg_load(text, NULL, 0, &c, &e), 0);
    assert_int_not_equal(rb_run_compute_id(&c, a, &e), 0);
    assert_non_null(strstr(e.msg, "nope.jsonl"));
    rb_config_free(&c);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tasks_parse),      cmocka_unit_test(test_tasks_absent_canonical),
        cmocka_unit_test(test_tasks_errors),     cmocka_unit_test(test_tasks_overrides),
        cmocka_unit_test(test_tasks_names_agree), cmocka_unit_test(test_tasks_run_id),
    };
    return cmocka_run_group_tests(tests, cfg_setup, NULL);
}

/* rotbench tasks: zero-shot task scoring (eval/rb_tasks.h) on the FP or quantized model. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_pipe.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "eval/rb_tasks.h"
#include "pipeline/rb_pipeline.h"
#include "tasks/rb_taskfile.h"

#define RB_MAX_TASK_ARGS 32


/* The reported metrics of one model's scores. */
static json_t *scores_json(const rb_task_scores *s, int rep) {
    json_t *o = json_object();
    if (rep & RB_METRIC_ACC) json_object_set_new(o, "acc", rb_cli_jnum(s->acc));
    if (rep & RB_METRIC_ACC_NORM) json_object_set_new(o, "acc_norm", rb_cli_jnum(s->acc_norm));
    if (rep & RB_METRIC_PPL) json_object_set_new(o, "perplexity", rb_cli_jnum(s->ppl));
    return o;
}

static json_t *paired_json(const rb_task_paired *p) {
    return json_pack("{s:o, s:o, s:o, s:i, s:i, s:o}", "delta", rb_cli_jnum(p->delta), "ci_lo", rb_cli_jnum(p->lo), "ci_hi",
                     rb_cli_jnum(p->hi), "n_fp_only", p->n_fp_only, "n_q_only", p->n_q_only, "p_mcnemar", rb_cli_jnum(p->p_mcnemar));
}

/* The one number per task (rb_task_primary_metric). */
static double primary(const rb_task_scores *s, const rb_task_result *r) {
    return rb_task_primary_metric(r->task, r->scoring) == RB_METRIC_ACC_NORM ? s->acc_norm : s->acc;
}

/* Per-request TSV: task, doc, request, gold, n_tok, n_chars, ll, greedy (and the FP reference's). */
static int write_docs(const char *path, const rb_task_result *res, int n, rb_error *err) {
    FILE *f = fopen(path, "w");
    if (!f) return rb_error_set(err, RB_EIO, "%s: cannot create", path);
    fprintf(f, "task\tdoc\trequest\tgold\tn_tok\tn_chars\tll\tgreedy\tll_fp\tgreedy_fp\n");
    for (int t = 0; t < n; t++) {
        const rb_task_result *r = &res[t];
        for (int d = 0; d < r->n_docs; d++)
            for (int k = r->req_off[d]; k < r->req_off[d + 1]; k++) {
                fprintf(f, "%s\t%d\t%d\t%d\t%d\t%d\t%.17g\t%d", rb_task_name(r->task), d, k - r->req_off[d], r->gold[d],
                        r->n_tok[k], r->n_chars[k], r->q.ll[k], r->q.greedy[k]);
                if (r->have_fp)
                    fprintf(f, "\t%.17g\t%d\n", r->fp.ll[k], r->fp.greedy[k]);
                else
                    fputs("\t\t\n", f);
            }
    }
    if (fclose(f)) return rb_error_set(err, RB_EIO, "%s: write failed", path);
    return 0;
}

int rb_cmd_tasks(int argc, char **argv) {
    rb_error err = {0};
    rb_args a;
    rb_cli_pipe cp;
    rb_task_set sets[RB_MAX_TASK_ARGS];
    rb_task_result res[RB_MAX_TASK_ARGS];
    int n = 0, scored = 0;
    memset(sets, 0, sizeof sets);
    memset(&cp, 0, sizeof cp);
    if (rb_args_init(&a, "tasks", argc, argv)) return RB_EXIT_FAIL;
    const char *specs[RB_MAX_TASK_ARGS];
    for (const char *v; n < RB_MAX_TASK_ARGS && (v = rb_args_str(&a, "task", &err));) specs[n++] = v;
    const char *bos_s = rb_args_str(&a, "bos", &err), *labels = rb_args_str(&a, "labels", &err);
    const char *docs_out = rb_args_str(&a, "docs-out", &err);
    int separate = rb_args_flag(&a, "separate");
    long limit = 0, max_len = 0;
    if (err.code || rb_args_int(&a, "limit", 0, 0, 1L << 30, &limit, &err) ||
        rb_args_int(&a, "max-length", 0, 0, 1 << 20, &max_len, &err))
        goto fail_args;
    if (n == RB_MAX_TASK_ARGS && rb_args_str(&a, "task", &err)) {
        rb_error_set(&err, RB_EINVAL, "tasks: at most %d --task options", RB_MAX_TASK_ARGS);
        goto fail_args;
    }
    int bos = bos_s ? rb_task_bos_from_name(bos_s) : RB_TASK_BOS_NONE;
    if (bos < 0) {
        rb_error_set(&err, RB_EINVAL, "tasks: --bos: expected none or tokenizer-default, got '%s'", bos_s);
        goto fail_args;
    }
    if (rb_cli_pipe_setup(&cp, &a, "tasks", RB_CLI_PIPE_NO_TEXT, &err)) goto fail;
    if (n == 0) {
        rb_error_set(&err, RB_EINVAL, "tasks: usage: rotbench tasks MODEL --task NAME=FILE [--task NAME=FILE ...] "
                                      "[--limit N] [--bos none|tokenizer-default] (+ the options of ppl)");
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        const char *eq = strchr(specs[i], '=');
        char name[64];
        if (!eq || eq == specs[i] || (size_t)(eq - specs[i]) >= sizeof name || !eq[1]) {
            rb_error_set(&err, RB_EINVAL, "tasks: --task '%s': expected NAME=FILE", specs[i]);
            goto fail;
        }
        memcpy(name, specs[i], (size_t)(eq - specs[i]));
        name[eq - specs[i]] = 0;
        int task = rb_task_from_name(name);
        if (task < 0) {
            rb_error_set(&err, RB_EINVAL, "tasks: --task %s: unknown task (expected piqa, arc_easy, arc_challenge, "
                         "hellaswag, winogrande, lambada_openai, boolq, openbookqa or copa)", name);
            goto fail;
        }
        if (rb_taskfile_read(eq + 1, task, task == RB_TASK_PIQA ? labels : NULL, limit, &sets[i], &err)) goto fail;
    }
    rb_pipe_spec *spec = &cp.spec;
    rb_pipe *pipe = &cp.pipe;
    if (rb_pipe_prepare(pipe, spec, &err)) goto fail;
    if (rb_cli_pipe_save_rotation(&cp, &err)) goto fail;
    if (rb_pipe_quantize_weights(pipe, spec, NULL, "rotbench tasks", &err)) goto fail;
    rb_tasks_opts to = {.bos = bos, .max_length = (int)max_len, .separate = separate};
    rb_pipe_tasks_opts(pipe, spec, &to);
    if (rb_tasks_run(&pipe->src, &pipe->cfg, pipe->tok, sets, n, &to, res, &err)) goto fail;
    scored = 1;
    if (docs_out && write_docs(docs_out, res, n, &err)) goto fail;
    json_t *tj = json_object();
    double avg = 0, avg_fp = 0, secs = res[0].seconds;
    long rows = 0, rows_req = 0;
    for (int i = 0; i < n; i++) {
        const rb_task_result *r = &res[i];
        int rep = rb_task_metrics(r->task, r->scoring);
        json_t *o = scores_json(&r->q, rep);
        json_object_set_new(o, "n", json_integer(r->n_docs));
        json_object_set_new(o, "file", json_string(sets[i].path));
        json_object_set_new(o, "format", json_string(rb_task_format_name(sets[i].format)));
        json_object_set_new(o, "scoring", json_string(rb_task_scoring_name(r->scoring)));
        json_object_set_new(o, "truncated", json_integer(r->truncated));
        avg += primary(&r->q, r);
        if (r->have_fp) {
            json_object_set_new(o, "fp", scores_json(&r->fp, rep));
            json_object_set_new(o, "paired_acc", paired_json(&r->acc_pair));
            if (rep & RB_METRIC_ACC_NORM) json_object_set_new(o, "paired_acc_norm", paired_json(&r->acc_norm_pair));
            avg_fp += primary(&r->fp, r);
        }
        json_object_set_new(tj, rb_task_name(r->task), o);
        rows += r->tokens_forward, rows_req += r->tokens_request;
    }
    int models = res[0].have_fp ? 2 : 1;
    json_t *j = json_pack("{s:o, s:o, s:s, s:i, s:I, s:I, s:f, s:o, s:f}", "tasks", tj, "average", rb_cli_jnum(avg / n), "bos",
                          rb_task_bos_name(bos), "max_length", res[0].max_length, "tokens_forward", (json_int_t)rows,
                          "tokens_request", (json_int_t)rows_req, "seconds", secs, "tokens_per_second",
                          rb_cli_jnum(secs > 0 ? (double)rows * models / secs : NAN), "peak_rss_mb", rb_peak_rss_mb());
    if (res[0].have_fp) json_object_set_new(j, "average_fp", rb_cli_jnum(avg_fp / n));
    json_object_set_new(j, "separate", json_boolean(separate));
    if (pipe->quantized || (spec->quant && rb_quant_cfg_active(spec->quant))) {
        json_object_set_new(j, "quant", json_string(cp.qcfg.name));
        json_object_set_new(j, "w_algo", json_string(cp.qcfg.w_algo == RB_WALGO_GPTQ ? "gptq" : "rtn"));
    }
    rb_cli_json_rotation(j, pipe);
    rb_cli_print_json(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
    for (int i = 0; i < n; i++) rb_task_result_free(&res[i]), rb_task_set_free(&sets[i]);
    rb_cli_pipe_free(&cp);
    rb_args_free(&a);
    return RB_EXIT_OK;
fail:
    if (scored)
        for (int i = 0; i < n; i++) rb_task_result_free(&res[i]);
    for (int i = 0; i < n; i++) rb_task_set_free(&sets[i]);
    rb_cli_pipe_free(&cp);
fail_args:
    rb_args_free(&a);
    return rb_cli_fail(&err);
}

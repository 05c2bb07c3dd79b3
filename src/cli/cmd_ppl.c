/* rotbench ppl / tokenize. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "cli_pipe.h"
#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "text/rb_calib.h"
#include "pipeline/rb_pipeline.h"
#include "eval/rb_ppl.h"
#include "eval/rb_qeval.h"
#include "quant/rb_qpreset.h"
#include "rotate/rb_fuse.h"
#include "methods/rb_method.h"
#include "model/rb_forward.h"
#include "model/rb_model.h"
#include "text/rb_tokenizer.h"





static int write_nll_tsv(const char *path, const rb_ppl_result *r, rb_error *err) {
    FILE *f = fopen(path, "w");
    if (!f) return rb_error_set(err, RB_EIO, "%s: cannot create", path);
    fprintf(f, "window\tnll_sum\tscored\n");
    for (int i = 0; i < r->windows; i++) fprintf(f, "%d\t%.17g\t%ld\n", i, r->win_nll[i], r->win_scored[i]);
    if (fclose(f)) return rb_error_set(err, RB_EIO, "%s: write failed", path);
    return 0;
}

int rb_cmd_ppl(int argc, char **argv) {
    rb_error err = {0};
    rb_args a;
    rb_cli_pipe cp;
    int rc;
    if (rb_args_init(&a, "ppl", argc, argv)) return RB_EXIT_FAIL;
    const char *proto = rb_args_str(&a, "protocol", &err), *nll_out = rb_args_str(&a, "nll-out", &err);
    const char *stats = rb_args_str(&a, "stats", &err);
    if (err.code) goto fail_args;
    if (rb_cli_pipe_setup(&cp, &a, "ppl", stats ? RB_CLI_PIPE_STATS : 0, &err)) goto fail; /* cp is initialized even on error */
    rb_pipe_spec *spec = &cp.spec;
    if (proto && (spec->ppl.protocol = rb_ppl_protocol_from_name(proto)) < 0) {
        rb_error_set(&err, RB_EINVAL, "ppl: --protocol: expected gptq or llamacpp, got '%s'", proto);
        goto fail;
    }
    spec->stats = stats != NULL;
    rb_pipe *pipe = &cp.pipe;
    if ((rc = rb_pipe_prepare(pipe, spec, &err))) goto fail;
    if ((rc = rb_cli_pipe_save_rotation(&cp, &err))) goto fail;
    if ((rc = rb_pipe_quantize_weights(pipe, spec, NULL, "rotbench ppl", &err))) goto fail;
    if ((rc = rb_pipe_evaluate(pipe, spec, &err))) goto fail;
    const rb_ppl_result *r = rb_pipe_result(pipe);
    if (nll_out && (rc = write_nll_tsv(nll_out, r, &err))) goto fail;
    if (stats) {
        FILE *f = fopen(stats, "w");
        if (!f) {
            rb_error_set(&err, RB_EIO, "%s: cannot create", stats);
            goto fail;
        }
        rc = rb_qeval_write_tsv(&pipe->q, f);
        if (fclose(f) || rc) {
            rb_error_set(&err, RB_EIO, "%s: write failed", stats);
            goto fail;
        }
    }
    json_t *j = json_pack("{s:o, s:i, s:I, s:I, s:f, s:s, s:i, s:o, s:f}", "ppl", rb_cli_jnum(r->ppl), "windows", r->windows,
                          "scored_tokens", (json_int_t)r->scored, "tokens", (json_int_t)r->tokens, "seconds",
                          r->seconds, "protocol", rb_ppl_protocol_name(spec->ppl.protocol), "seqlen",
                          pipe->seqlen,
                          "nll_sum", rb_cli_jnum(r->nll_sum), "peak_rss_mb", rb_peak_rss_mb());
    if (pipe->quantized) {
        json_object_set_new(j, "ppl_fp", rb_cli_jnum(pipe->q.fp.ppl));
        json_object_set_new(j, "kl", rb_cli_jnum(pipe->q.kl_mean));
        json_object_set_new(j, "seconds_wquant", json_real(pipe->seconds_wquant));
        json_object_set_new(j, "quant", json_string(cp.qcfg.name));
        json_object_set_new(j, "w_algo", json_string(cp.qcfg.w_algo == RB_WALGO_GPTQ ? "gptq" : "rtn"));
    }
    if (spec->text_doc_sep) json_object_set_new(j, "doc_sep", json_string(spec->text_doc_sep));
    rb_cli_json_rotation(j, pipe);
    rb_cli_print_json(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
    rb_cli_pipe_free(&cp);
    rb_args_free(&a);
    return RB_EXIT_OK;
fail:
    rb_cli_pipe_free(&cp);
fail_args:
    rb_args_free(&a);
    return rb_cli_fail(&err);
}

int rb_cmd_tokenize(int argc, char **argv) {
    rb_error err = {0};
    rb_args a;
    rb_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    if (rb_args_init(&a, "tokenize", argc, argv)) return RB_EXIT_FAIL;
    const char *tokp = rb_args_str(&a, "tokenizer", &err);
    const char *file = rb_args_str(&a, "file", &err);
    const char *fmt = rb_args_str(&a, "format", &err);
    const char *doc_sep = rb_args_str(&a, "doc-sep", &err);
    int bos = rb_args_flag(&a, "bos");
    if (err.code || rb_args_finish(&a, 0, &err)) goto fail;
    if (!tokp || !file) {
        rb_error_set(&err, RB_EINVAL, "tokenize: usage: rotbench tokenize --tokenizer PATH --file FILE");
        goto fail;
    }
    if (!fmt) fmt = "json";
    if (strcmp(fmt, "json") && strcmp(fmt, "lines") && strcmp(fmt, "count")) {
        rb_error_set(&err, RB_EINVAL, "tokenize: --format: expected json, lines or count, got '%s'", fmt);
        goto fail;
    }
    if (rb_tokenizer_load(tokp, &tok, &err)) goto fail;
    if (rb_tokenize_file(tok, file, bos, doc_sep, &ids, &n, &err)) goto fail;
    if (!strcmp(fmt, "count")) {
        printf("%zu\n", n);
    } else if (!strcmp(fmt, "lines")) {
        for (size_t i = 0; i < n; i++) printf("%d\n", ids[i]);
    } else {
        fputc('[', stdout);
        for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
        fputs("]\n", stdout);
    }
    free(ids);
    rb_tokenizer_free(tok);
    rb_args_free(&a);
    return RB_EXIT_OK;
fail:
    free(ids);
    if (tok) rb_tokenizer_free(tok);
    rb_args_free(&a);
    return rb_cli_fail(&err);
}

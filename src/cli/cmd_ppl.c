/* rotbench ppl / tokenize. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
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

/* JSON number, or null for NaN/Inf (JSON has no such values; a diverged quantized model gives them). */
static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }




static int write_nll_tsv(const char *path, const rb_ppl_result *r, rb_error *err) {
    FILE *f = fopen(path, "w");
    if (!f) return rb_error_set(err, RB_EIO, "%s: cannot create", path);
    fprintf(f, "window\tnll_sum\tscored\n");
    for (int i = 0; i < r->windows; i++) fprintf(f, "%d\t%.17g\t%ld\n", i, r->win_nll[i], r->win_scored[i]);
    if (fclose(f)) return rb_error_set(err, RB_EIO, "%s: write failed", path);
    return 0;
}

#define RB_MAX_ROT_OPTS 32

typedef struct ppl_args {
    const char *text, *tokp, *proto, *nll_out, *quant, *walgo, *calib, *calib_range, *text_range, *stats;
    const char *rotation, *save_rot, *load_rot, *rot_opts, *o_proj;
    long seqlen, maxw, calib_n, calib_T, calib_batch, seed;
    int no_bos, act_order, r3, r4, emb_center, cross_head;
} ppl_args;

static int parse_ppl_args(rb_args *a, ppl_args *p, rb_error *err) {
    memset(p, 0, sizeof *p);
    p->text = rb_args_str(a, "text", err);
    p->tokp = rb_args_str(a, "tokenizer", err);
    p->proto = rb_args_str(a, "protocol", err);
    p->nll_out = rb_args_str(a, "nll-out", err);
    p->quant = rb_args_str(a, "quant", err);
    p->walgo = rb_args_str(a, "w-algo", err);
    p->calib = rb_args_str(a, "calib", err);
    p->calib_range = rb_args_str(a, "calib-range", err);
    p->text_range = rb_args_str(a, "text-range", err);
    p->stats = rb_args_str(a, "stats", err);
    p->rotation = rb_args_str(a, "rotation", err);
    p->save_rot = rb_args_str(a, "save-rotation", err);
    p->load_rot = rb_args_str(a, "load-rotation", err);
    p->rot_opts = rb_args_str(a, "rot-opt", err);
    p->o_proj = rb_args_str(a, "o-proj", err);
    if (rb_args_onoff(a, "r3", -1, &p->r3, err) || rb_args_onoff(a, "r4", -1, &p->r4, err) ||
        rb_args_onoff(a, "emb-center", 1, &p->emb_center, err) || rb_args_onoff(a, "cross-head", -1, &p->cross_head, err))
        return err->code;
    p->no_bos = rb_args_flag(a, "no-bos");
    p->act_order = rb_args_flag(a, "act-order");
    if (err->code) return err->code;
    if (rb_args_int(a, "seqlen", 0, 2, 1 << 20, &p->seqlen, err) ||
        rb_args_int(a, "max-windows", 0, 0, 1 << 30, &p->maxw, err) ||
        rb_args_int(a, "calib-samples", 128, 1, 1 << 20, &p->calib_n, err) ||
        rb_args_int(a, "calib-seqlen", 0, 2, 1 << 20, &p->calib_T, err) ||
        rb_args_int(a, "calib-batch", 1, 1, 1 << 20, &p->calib_batch, err) ||
        rb_args_int(a, "seed", 0, 0, 0x7fffffffL, &p->seed, err))
        return err->code;
    if (p->walgo && strcmp(p->walgo, "rtn") && strcmp(p->walgo, "gptq"))
        return rb_error_set(err, RB_EINVAL, "ppl: --w-algo: expected rtn or gptq, got '%s'", p->walgo);
    if (p->walgo && !strcmp(p->walgo, "gptq") && !p->calib)
        return rb_error_set(err, RB_EINVAL, "ppl: --w-algo gptq needs --calib FILE");
    if (p->rotation && p->load_rot)
        return rb_error_set(err, RB_EINVAL, "ppl: --rotation and --load-rotation are exclusive");
    if (p->rot_opts && !p->rotation)
        return rb_error_set(err, RB_EINVAL, "ppl: --rot-opt needs --rotation METHOD");
    if (p->calib_batch > p->calib_n)
        return rb_error_set(err, RB_EINVAL, "ppl: --calib-batch %ld is larger than --calib-samples %ld", p->calib_batch,
                            p->calib_n);
    if (p->save_rot && !p->rotation)
        return rb_error_set(err, RB_EINVAL, "ppl: --save-rotation needs --rotation METHOD");
    return 0;
}

int rb_cmd_ppl(int argc, char **argv) {
    rb_error err = {0};
    rb_args a;
    ppl_args p;
    rb_quant_cfg qcfg;
    rb_rotset loaded;
    int have_loaded = 0, rc;
    char *opt_buf = NULL;
    rb_pipe pipe;
    memset(&pipe, 0, sizeof pipe);
    if (rb_args_init(&a, "ppl", argc, argv)) return RB_EXIT_FAIL;
    if (parse_ppl_args(&a, &p, &err)) goto fail;
    const char *model_path = rb_args_pos(&a, 0);
    if (rb_args_finish(&a, 1, &err)) goto fail;
    if (!model_path || !p.text) {
        rb_error_set(&err, RB_EINVAL, "ppl: usage: rotbench ppl MODEL --text FILE [options]");
        goto fail;
    }
    rb_pipe_spec spec = {.model_path = model_path, .tokenizer_path = p.tokp, .seed = (uint64_t)p.seed,
                         .rotation_seed = (uint64_t)p.seed,
                         .add_bos = !p.no_bos, .text = p.text, .text_range = p.text_range,
                         .ppl = {.protocol = RB_PPL_GPTQ, .seqlen = (int)p.seqlen, .max_windows = (int)p.maxw},
                         .calib = p.calib, .calib_range = p.calib_range, .calib_samples = (int)p.calib_n,
                         .calib_order = RB_CALIB_SEQUENTIAL, .fp_ref = 1, .stats = p.stats != NULL,
                         .rotation = p.rotation, .r3 = p.r3, .r4 = p.r4, .cross_head = p.cross_head,
                         .emb_center = p.emb_center, .calib_batch = (int)p.calib_batch};
    const char *opt_names[RB_MAX_ROT_OPTS], *opt_vals[RB_MAX_ROT_OPTS];
    if (rb_method_split_opts(p.rot_opts, &opt_buf, opt_names, opt_vals, RB_MAX_ROT_OPTS, &spec.n_rot_opts, &err)) {
        rb_error_prefix(&err, "ppl: --rot-opt");
        goto fail;
    }
    spec.rot_opt_names = opt_names;
    spec.rot_opt_values = opt_vals;
    if (p.proto && (spec.ppl.protocol = rb_ppl_protocol_from_name(p.proto)) < 0) {
        rb_error_set(&err, RB_EINVAL, "ppl: --protocol: expected gptq or llamacpp, got '%s'", p.proto);
        goto fail;
    }
    if (rb_quant_preset(p.quant ? p.quant : "W16A16", &qcfg, &err)) goto fail;
    if (p.walgo && !strcmp(p.walgo, "gptq")) qcfg.w_algo = RB_WALGO_GPTQ;
    if (p.o_proj && (qcfg.o_proj = rb_oproj_from_name(p.o_proj)) < 0) {
        rb_error_set(&err, RB_EINVAL, "ppl: --o-proj: expected auto, head or row, got '%s'", p.o_proj);
        goto fail;
    }
    qcfg.gptq.act_order = p.act_order;
    if (p.quant || p.stats) spec.quant = &qcfg;
    if (p.load_rot) {
        if ((rc = rb_rotset_load(p.load_rot, &loaded, &err))) goto fail;
        have_loaded = 1;
        spec.rotset = &loaded;
    }
    spec.calib_seqlen = (int)p.calib_T; /* 0: the evaluation window length */
    if ((rc = rb_pipe_prepare(&pipe, &spec, &err))) goto fail;
    if (p.save_rot && (rc = rb_rotset_save(pipe.rs, p.save_rot, &err))) goto fail;
    if ((rc = rb_pipe_quantize_weights(&pipe, &spec, NULL, "rotbench ppl", &err))) goto fail;
    if ((rc = rb_pipe_evaluate(&pipe, &spec, &err))) goto fail;
    const rb_ppl_result *r = rb_pipe_result(&pipe);
    if (p.nll_out && (rc = write_nll_tsv(p.nll_out, r, &err))) goto fail;
    if (p.stats) {
        FILE *f = fopen(p.stats, "w");
        if (!f) {
            rb_error_set(&err, RB_EIO, "%s: cannot create", p.stats);
            goto fail;
        }
        rc = rb_qeval_write_tsv(&pipe.q, f);
        if (fclose(f) || rc) {
            rb_error_set(&err, RB_EIO, "%s: write failed", p.stats);
            goto fail;
        }
    }
    json_t *j = json_pack("{s:o, s:i, s:I, s:I, s:f, s:s, s:i, s:o, s:f}", "ppl", jnum(r->ppl), "windows", r->windows,
                          "scored_tokens", (json_int_t)r->scored, "tokens", (json_int_t)r->tokens, "seconds",
                          r->seconds, "protocol", rb_ppl_protocol_name(spec.ppl.protocol), "seqlen",
                          pipe.seqlen,
                          "nll_sum", jnum(r->nll_sum), "peak_rss_mb", rb_peak_rss_mb());
    if (pipe.quantized) {
        json_object_set_new(j, "ppl_fp", jnum(pipe.q.fp.ppl));
        json_object_set_new(j, "kl", jnum(pipe.q.kl_mean));
        json_object_set_new(j, "seconds_wquant", json_real(pipe.seconds_wquant));
        json_object_set_new(j, "quant", json_string(qcfg.name));
        json_object_set_new(j, "w_algo", json_string(qcfg.w_algo == RB_WALGO_GPTQ ? "gptq" : "rtn"));
    }
    if (pipe.rs) {
        json_object_set_new(j, "rotation", json_string(pipe.rs->method));
        json_object_set_new(j, "orth_error", json_real(rb_rotset_orth_err(pipe.rs)));
        json_object_set_new(j, "emb_center", json_boolean(pipe.rs->emb_center));
        json_object_set_new(j, "seconds_rotation", json_real(pipe.seconds_rotation));
    }
    json_object_set_new(j, "blas_core", json_string(rb_blas_corename()));
    json_object_set_new(j, "threads", json_integer(rb_blas_threads()));
    char *out = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
    printf("%s\n", out);
    free(out);
    json_decref(j);
    rb_pipe_free(&pipe);
    free(opt_buf);
    if (have_loaded) rb_rotset_free(&loaded);
    rb_args_free(&a);
    return RB_EXIT_OK;
fail:
    rb_pipe_free(&pipe);
    free(opt_buf);
    if (have_loaded) rb_rotset_free(&loaded);
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
    if (rb_tokenize_file(tok, file, bos, &ids, &n, &err)) goto fail;
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

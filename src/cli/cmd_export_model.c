/* rotbench export-model: the model a run produces (rotation fused, weights quantized) written as an
 * HF directory, a GPTQ checkpoint or a GGUF file (export/rb_export.h, docs/export.md). */
#include <jansson.h>
#include <string.h>

#include "cli.h"
#include "cli_pipe.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "export/rb_export.h"
#include "model/rb_safetensors.h"
#include "pipeline/rb_pipeline.h"

int rb_cmd_export_model(int argc, char **argv) {
    rb_error err = {0};
    rb_args a;
    rb_cli_pipe cp;
    memset(&cp, 0, sizeof cp);
    if (rb_args_init(&a, "export-model", argc, argv)) return RB_EXIT_FAIL;
    const char *fmt_s = rb_args_str(&a, "format", &err), *out = rb_args_str(&a, "out", &err);
    const char *dtype_s = rb_args_str(&a, "dtype", &err), *scales_s = rb_args_str(&a, "gptq-scales", &err);
    int allow = rb_args_flag(&a, "allow-online-dropped"), force = rb_args_flag(&a, "force");
    long shard_mb = 0;
    int fmt = 0;
    if (err.code || rb_args_int(&a, "max-shard-mb", 5000, 0, 1L << 30, &shard_mb, &err)) goto fail_args;
    if (!fmt_s || !out) {
        rb_error_set(&err, RB_EINVAL, "export-model: usage: rotbench export-model MODEL --format hf|gptq|gguf --out DIR "
                                      "[--dtype F32|F16|BF16] [--allow-online-dropped] [--force] (+ the rotation, "
                                      "quantization and calibration options of ppl; --text adds the run's perplexity)");
        goto fail_args;
    }
    if (rb_export_format_parse(fmt_s, &fmt, &err)) goto fail_args;
    int dtype = dtype_s ? rb_dtype_from_name(dtype_s) : RB_DT_F32;
    if (!rb_dtype_is_float(dtype)) {
        rb_error_set(&err, RB_EINVAL, "export-model: --dtype %s: expected F32, F16 or BF16", dtype_s);
        goto fail_args;
    }
    int scales = RB_DT_F32;
    if (scales_s && strcmp(scales_s, "F32") && strcmp(scales_s, "F16")) {
        rb_error_set(&err, RB_EINVAL, "export-model: --gptq-scales %s: expected F32 (exact) or F16", scales_s);
        goto fail_args;
    }
    if (scales_s && !strcmp(scales_s, "F16")) scales = RB_DT_F16;
    /* refuse before any work what needs no model (the rest right after the rotation is built) */
    rb_export_req req = {.format = fmt, .out = out, .force = force, .allow_online_dropped = allow};
    if (rb_path_exists(out) && !force) {
        rb_error_set(&err, RB_EINVAL, "export-model: %s exists: remove it, choose another --out, or pass --force", out);
        goto fail_args;
    }
    if (rb_cli_pipe_setup(&cp, &a, "export-model", RB_CLI_PIPE_NO_TEXT, &err)) goto fail;
    rb_pipe_spec *spec = &cp.spec;
    rb_pipe *pipe = &cp.pipe;
    if (rb_pipe_prepare(pipe, spec, &err)) goto fail;
    if (rb_cli_pipe_save_rotation(&cp, &err)) goto fail;
    rb_export_in in;
    rb_pipe_export_in(pipe, spec, &in);
    in.dtype = dtype;
    in.gptq_scales_dtype = scales;
    in.max_shard_bytes = (uint64_t)shard_mb * 1000000ull;
    req.rs = pipe->rs;
    if (rb_export_precheck(&in, &req, &err)) goto fail; /* before weight quantization and evaluation */
    if (rb_pipe_quantize_weights(pipe, spec, NULL, "rotbench export-model", &err)) goto fail;
    in.wq = pipe->wq;
    json_t *j = json_object();
    if (spec->text) { /* the run's perplexity, to compare with the exported model's */
        if (rb_pipe_evaluate(pipe, spec, &err)) {
            json_decref(j);
            goto fail;
        }
        const rb_ppl_result *r = rb_pipe_result(pipe);
        json_object_set_new(j, "ppl", rb_cli_jnum(r->ppl));
        json_object_set_new(j, "ppl_fp", rb_cli_jnum(pipe->quantized ? pipe->q.fp.ppl : r->ppl));
    }
    double t0 = rb_now();
    if (rb_export_run(&in, &req, &err)) {
        json_decref(j);
        goto fail;
    }
    json_object_set_new(j, "out", json_string(out));
    json_object_set_new(j, "format", json_string(rb_export_format_name(fmt)));
    json_object_set_new(j, "dtype", json_string(rb_dtype_name(dtype)));
    json_object_set_new(j, "seconds_export", json_real(rb_now() - t0));
    json_object_set_new(j, "peak_rss_mb", json_real(rb_peak_rss_mb()));
    if (in.quant) json_object_set_new(j, "quant", json_string(cp.qcfg.name));
    if (in.wq) json_object_set_new(j, "w_algo", json_string(cp.qcfg.w_algo == RB_WALGO_GPTQ ? "gptq" : "rtn"));
    rb_cli_json_rotation(j, pipe);
    rb_cli_print_json(j, JSON_COMPACT | JSON_REAL_PRECISION(17));
    rb_cli_pipe_free(&cp);
    rb_args_free(&a);
    return RB_EXIT_OK;
fail:
    rb_cli_pipe_free(&cp);
fail_args:
    rb_args_free(&a);
    return rb_cli_fail(&err);
}

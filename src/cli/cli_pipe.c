#include "cli_pipe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_blas.h"
#include "methods/rb_method.h"
#include "text/rb_calib.h"

typedef struct pipe_args {
    const char *text, *tokp, *quant, *walgo, *calib, *calib_range, *text_range;
    const char *rotation, *save_rot, *load_rot, *rot_opts, *o_proj, *doc_sep;
    long seqlen, maxw, calib_n, calib_T, calib_batch, seed;
    int no_bos, act_order, r3, r4, emb_center, cross_head;
} pipe_args;

static int parse(rb_args *a, const char *cmd, pipe_args *p, rb_error *err) {
    memset(p, 0, sizeof *p);
    p->text = rb_args_str(a, "text", err);
    p->tokp = rb_args_str(a, "tokenizer", err);
    p->quant = rb_args_str(a, "quant", err);
    p->walgo = rb_args_str(a, "w-algo", err);
    p->calib = rb_args_str(a, "calib", err);
    p->calib_range = rb_args_str(a, "calib-range", err);
    p->text_range = rb_args_str(a, "text-range", err);
    p->rotation = rb_args_str(a, "rotation", err);
    p->save_rot = rb_args_str(a, "save-rotation", err);
    p->load_rot = rb_args_str(a, "load-rotation", err);
    p->rot_opts = rb_args_str(a, "rot-opt", err);
    p->o_proj = rb_args_str(a, "o-proj", err);
    p->doc_sep = rb_args_str(a, "doc-sep", err);
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
        return rb_error_set(err, RB_EINVAL, "%s: --w-algo: expected rtn or gptq, got '%s'", cmd, p->walgo);
    if (p->walgo && !strcmp(p->walgo, "gptq") && !p->calib)
        return rb_error_set(err, RB_EINVAL, "%s: --w-algo gptq needs --calib FILE", cmd);
    if (p->rotation && p->load_rot)
        return rb_error_set(err, RB_EINVAL, "%s: --rotation and --load-rotation are exclusive", cmd);
    if (p->rot_opts && !p->rotation) return rb_error_set(err, RB_EINVAL, "%s: --rot-opt needs --rotation METHOD", cmd);
    if (p->calib_batch > p->calib_n)
        return rb_error_set(err, RB_EINVAL, "%s: --calib-batch %ld is larger than --calib-samples %ld", cmd,
                            p->calib_batch, p->calib_n);
    if (p->save_rot && !p->rotation)
        return rb_error_set(err, RB_EINVAL, "%s: --save-rotation needs --rotation METHOD", cmd);
    return 0;
}

int rb_cli_pipe_save_rotation(const rb_cli_pipe *cp, rb_error *err) {
    if (!cp->save_rot) return 0;
    if (!cp->pipe.rs)
        return rb_error_set(err, RB_EINVAL,
                            "--save-rotation %s: rotation %s is the unrotated model, there is no rotation set to save "
                            "(--rot-opt fold_norms=on makes one with R1 = R2 = I)",
                            cp->save_rot, cp->spec.rotation);
    return rb_rotset_save(cp->pipe.rs, cp->save_rot, err);
}

void rb_cli_pipe_free(rb_cli_pipe *cp) {
    rb_pipe_free(&cp->pipe);
    free(cp->opt_buf);
    cp->opt_buf = NULL;
    if (cp->have_loaded) rb_rotset_free(&cp->loaded);
    cp->have_loaded = 0;
}

int rb_cli_pipe_setup(rb_cli_pipe *cp, rb_args *a, const char *cmd, int flags, rb_error *err) {
    int quant_for_stats = (flags & RB_CLI_PIPE_STATS) != 0;
    memset(cp, 0, sizeof *cp);
    pipe_args p;
    if (parse(a, cmd, &p, err)) return err->code;
    const char *model_path = rb_args_pos(a, 0);
    if (rb_args_finish(a, 1, err)) return err->code;
    if (!model_path || (!p.text && !(flags & RB_CLI_PIPE_NO_TEXT)))
        return rb_error_set(err, RB_EINVAL, "%s: usage: rotbench %s MODEL --text FILE [options]", cmd, cmd);
    rb_pipe_spec spec = {.model_path = model_path, .tokenizer_path = p.tokp, .seed = (uint64_t)p.seed,
                         .rotation_seed = (uint64_t)p.seed,
                         .add_bos = !p.no_bos, .text = p.text, .text_range = p.text_range,
                         .text_doc_sep = p.doc_sep, .calib_doc_sep = p.doc_sep,
                         .ppl = {.protocol = RB_PPL_GPTQ, .seqlen = (int)p.seqlen, .max_windows = (int)p.maxw},
                         .calib = p.calib, .calib_range = p.calib_range, .calib_samples = (int)p.calib_n,
                         .calib_seqlen = (int)p.calib_T, .calib_order = RB_CALIB_SEQUENTIAL, .fp_ref = 1,
                         .rotation = p.rotation, .r3 = p.r3, .r4 = p.r4, .cross_head = p.cross_head,
                         .emb_center = p.emb_center, .calib_batch = (int)p.calib_batch};
    cp->spec = spec;
    cp->walgo = p.walgo;
    cp->save_rot = p.save_rot;
    if (rb_method_split_opts(p.rot_opts, &cp->opt_buf, cp->opt_names, cp->opt_vals, RB_MAX_ROT_OPTS,
                             &cp->spec.n_rot_opts, err))
        return rb_error_prefix(err, "%s: --rot-opt", cmd);
    cp->spec.rot_opt_names = cp->opt_names;
    cp->spec.rot_opt_values = cp->opt_vals;
    if (rb_quant_preset(p.quant ? p.quant : "W16A16", &cp->qcfg, err)) return err->code;
    if (p.walgo && !strcmp(p.walgo, "gptq")) cp->qcfg.w_algo = RB_WALGO_GPTQ;
    if (p.o_proj && (cp->qcfg.o_proj = rb_oproj_from_name(p.o_proj)) < 0)
        return rb_error_set(err, RB_EINVAL, "%s: --o-proj: expected auto, head or row, got '%s'", cmd, p.o_proj);
    cp->qcfg.gptq.act_order = p.act_order;
    cp->have_quant = p.quant != NULL;
    if (p.quant || quant_for_stats) cp->spec.quant = &cp->qcfg;
    if (p.load_rot) {
        int rc = rb_rotset_load(p.load_rot, &cp->loaded, err);
        if (rc) return rc;
        cp->have_loaded = 1;
        cp->spec.rotset = &cp->loaded;
        cp->spec.rotset_path = p.load_rot;
    }
    return 0;
}

void rb_cli_print_json(json_t *j, size_t flags) {
    char *s = json_dumps(j, flags);
    if (s) printf("%s\n", s);
    else fprintf(stderr, "rotbench: out of memory printing the result\n");
    free(s);
    json_decref(j);
}

json_t *rb_cli_jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

void rb_cli_json_rotation(json_t *j, const rb_pipe *p) {
    if (p->rs) {
        json_object_set_new(j, "rotation", json_string(p->rs->method));
        json_object_set_new(j, "orth_error", json_real(rb_rotset_orth_err(p->rs)));
        json_object_set_new(j, "emb_center", json_boolean(p->rs->emb_center));
        json_object_set_new(j, "seconds_rotation", json_real(p->seconds_rotation));
    }
    json_object_set_new(j, "blas_core", json_string(rb_blas_corename()));
    json_object_set_new(j, "threads", json_integer(rb_blas_threads()));
}

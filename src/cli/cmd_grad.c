/* rotbench grad: the training loss of a (rotated, fake-quantized) model on text windows and its
 * gradients with respect to R1 and every R2, written to HDF5 (docs/results-schema.md, "grads.h5"). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_pipe.h"
#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "methods/rb_rotgrad.h"

static double fro(const double *a, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * a[i];
    return sqrt(s);
}

int rb_cmd_grad(int argc, char **argv) {
    rb_error err = {0};
    rb_args a;
    rb_cli_pipe cp;
    rb_rotgrad g = {0};
    int32_t *win = NULL;
    long windows;
    if (rb_args_init(&a, "grad", argc, argv)) return RB_EXIT_FAIL;
    const char *out = rb_args_str(&a, "out", &err);
    int no_ckpt = rb_args_flag(&a, "no-checkpoint"), clipped = rb_args_flag(&a, "clipped-ste");
    if (err.code || rb_args_int(&a, "windows", 1, 1, 1 << 20, &windows, &err)) goto fail_args;
    if (rb_cli_pipe_setup(&cp, &a, "grad", 0, &err)) goto fail;
    if (!out) {
        rb_error_set(&err, RB_EINVAL, "grad: --out FILE is required (the gradients' HDF5 file)");
        goto fail;
    }
    if (cp.walgo && !strcmp(cp.walgo, "gptq")) {
        rb_error_set(&err, RB_EINVAL,
                     "grad: --w-algo gptq: GPTQ has no gradient; train with 16-bit weights (a W16 preset, SpinQuant's "
                     "recipe before GPTQ) or RTN weights (straight-through)");
        goto fail;
    }
    rb_pipe *p = &cp.pipe;
    int rc = rb_pipe_prepare(p, &cp.spec, &err);
    if (rc) goto fail;
    if ((rc = rb_cli_pipe_save_rotation(&cp, &err))) goto fail;
    rb_ppl_opts wo = {.protocol = RB_PPL_GPTQ, .seqlen = p->seqlen, .max_windows = (int)windows};
    int n_win = 0, first = 0;
    if ((rc = rb_ppl_windows(p->ids, p->n_ids, &wo, &win, &n_win, &first, &err))) goto fail;
    if (n_win < windows)
        rb_warn("grad: the text holds %d windows of %d tokens; using %d (--windows %ld)", n_win, p->seqlen, n_win,
                windows);
    if ((rc = rb_rotgrad_init(&g, &p->cfg, &err))) goto fail;
    if (p->rs && p->rs->ra && (rc = rb_rotgrad_layerwise(&g, &err))) goto fail; /* ReSpinQuant's bases */
    rb_rotgrad_opts go = {.quant = cp.have_quant ? &p->quant : NULL, .clipped_ste = clipped, .no_checkpoint = no_ckpt};
    double t0 = rb_now();
    if ((rc = rb_rotgrad_run(&p->base, &p->cfg, p->rs, &go, win, n_win, p->seqlen, &g, &err))) goto fail;
    double secs = rb_now() - t0;
    rb_rotgrad_meta m = {cp.spec.model_path, cp.have_quant ? cp.qcfg.name : "none", p->rs ? p->rs->method : "none",
                   p->seqlen, n_win, clipped, p->rs ? p->rs->emb_center : cp.spec.emb_center};
    if ((rc = rb_rotgrad_save(out, &g, win, &m, &err))) goto fail;
    double n2 = 0;
    for (int l = 0; l < g.n_layers; l++) n2 += pow(fro(g.dR2[l], (size_t)g.head_dim * g.head_dim), 2);
    json_t *j = json_pack("{s:f, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:s}", "loss", g.loss, "windows", n_win, "seqlen",
                          p->seqlen, "grad_r1_norm", fro(g.dR1, (size_t)g.dim * g.dim), "grad_r2_norm", sqrt(n2),
                          "seconds", secs, "engine_mib", g.peak_bytes / 1048576.0, "peak_rss_mb", rb_peak_rss_mb(),
                          "out", out);
    json_object_set_new(j, "quant", json_string(m.quant));
    if (g.dRa) { /* layer-wise bases (ReSpinQuant): the norm over every ra and rm */
        double na = 0;
        for (int l = 0; l <= g.n_layers; l++) na += pow(fro(g.dRa[l], (size_t)g.dim * g.dim), 2);
        for (int l = 0; l < g.n_layers; l++) na += pow(fro(g.dRm[l], (size_t)g.dim * g.dim), 2);
        json_object_set_new(j, "grad_bases_norm", json_real(sqrt(na)));
    }
    rb_cli_json_rotation(j, p);
    rb_cli_print_json(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
    free(win);
    rb_rotgrad_free(&g);
    rb_cli_pipe_free(&cp);
    rb_args_free(&a);
    return RB_EXIT_OK;
fail:
    free(win);
    if (g.dR1) rb_rotgrad_free(&g);
    rb_cli_pipe_free(&cp);
fail_args:
    rb_args_free(&a);
    return rb_cli_fail(&err);
}

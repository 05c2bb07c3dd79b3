/* rb_wquant: weight quantization of a whole model into a weight store (contract in rb_wquant.h). */
#include "quant/rb_wquant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_signal.h"
#include "model/rb_stream.h"

/* Accumulates the site's inputs into the Hessian (ctx) and stops the layer there. */
static int hook_hessian(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    (void)err;
    rb_hessian_add(ctx, x, in->n_seq * in->seq_len);
    return 1;
}

/* Sequential GPTQ groups (QuaRot gptq_fwrd): the site whose inputs feed them and their linears. */
static const struct {
    int site, n, lin[3];
} gptq_groups[4] = {
    {RB_SITE_ATTN_IN, 3, {RB_LIN_K, RB_LIN_V, RB_LIN_Q}},
    {RB_SITE_O_IN, 1, {RB_LIN_O}},
    {RB_SITE_MLP_IN, 2, {RB_LIN_UP, RB_LIN_GATE}},
    {RB_SITE_DOWN_IN, 1, {RB_LIN_DOWN}},
};

/* tr((W−Q)H(W−Q)ᵀ) of GPTQ's result q and of RTN of orig, on the same Hessian. */
static int hessian_errors(const rb_qspec *spec, const float *orig, const float *q, int rows, int cols, const double *h,
                          double *e_gptq, double *e_rtn, rb_error *err) {
    size_t nw = (size_t)rows * cols;
    float *rtn = rb_alloc(nw * sizeof(float));
    if (!rtn) return rb_error_set(err, RB_ENOMEM, "gptq: out of memory");
    memcpy(rtn, orig, nw * sizeof(float));
    int rc = rb_quant_fake(spec, rtn, rows, cols, 0, err);
    if (!rc) rc = rb_quant_hessian_error(orig, rtn, h, rows, cols, e_rtn, err);
    if (!rc) rc = rb_quant_hessian_error(orig, q, h, rows, cols, e_gptq, err);
    rb_free(rtn);
    return rc;
}

/* GPTQ of the linears of layer `layer` in w, group by group, Hessians from the calibration stream
 * (run on copies: the stream itself moves on only after the whole layer is quantized). */
static int gptq_layer(rb_forward *f, rb_layer_weights *w, int layer, rb_stream *cal, const rb_wquant_opts *o,
                      float *copy, double *h_err, double *h_err_rtn, rb_wparams *params, rb_error *err) {
    const rb_llama_config *c = &f->cfg;
    int rc = 0;
    for (int g = 0; g < 4 && !rc; g++) {
        int rows, cols;
        rb_layer_linear(w, c, gptq_groups[g].lin[0], &rows, &cols);
        rb_hessian h;
        if ((rc = rb_hessian_init(&h, cols, err))) return rc;
        rb_hooks hk;
        if (o->online) hk = *o->online;
        else rb_hooks_init(&hk);
        rb_hooks_add(&hk, gptq_groups[g].site, hook_hessian, &h);
        rc = rb_stream_layer(f, w, layer, cal, &hk, copy, err);
        for (int i = 0; i < gptq_groups[g].n && !rc; i++) {
            int lin = gptq_groups[g].lin[i];
            float *m = rb_layer_linear(w, c, lin, &rows, &cols);
            size_t nw = (size_t)rows * cols;
            float *orig = o->h_err ? rb_alloc(nw * sizeof(float)) : NULL;
            if (o->h_err && !orig) {
                rc = rb_error_set(err, RB_ENOMEM, "gptq: out of memory");
                break;
            }
            if (orig) memcpy(orig, m, nw * sizeof(float));
            char name[64];
            snprintf(name, sizeof name, "layers.%d.%s", layer, rb_linear_name(lin));
            rb_gptq_opts go = o->q->gptq;
            go.name = name;
            rb_qparams_out po = {params[lin].scale, params[lin].zero, params[lin].g_idx};
            go.params = &po;
            rc = rb_gptq_quantize(&o->q->w, m, rows, cols, h.h, &go, NULL, err);
            if (!rc && orig) rc = hessian_errors(&o->q->w, orig, m, rows, cols, h.h, &h_err[lin], &h_err_rtn[lin], err);
            rb_free(orig);
        }
        rb_hessian_free(&h);
    }
    return rc;
}

int rb_wquant_run(const rb_weights_src *src, const rb_llama_config *c, const rb_wquant_opts *o, rb_wstore *store,
                  double *seconds, rb_error *err) {
    const rb_quant_cfg *q = o->q;
    RB_ASSERT(q && q->w.bits < RB_QBITS_OFF);
    double t0 = rb_now();
    int gptq = q->w_algo == RB_WALGO_GPTQ;
    if (gptq && (!o->calib || o->calib_n < 1 || o->calib_T < 2))
        return rb_error_set(err, RB_EINVAL, "GPTQ needs calibration windows (data.calib / --calib FILE)");
    rb_stream cal = {NULL, gptq ? o->calib_n : 0, o->calib_T, 0, NULL};
    rb_forward f = {0};
    rb_layer_weights w = {0};
    float *copy = NULL;
    rb_wparams params[RB_LIN_COUNT] = {0};
    int rc = rb_layer_weights_init(&w, c, err);
    if (rc) return rc;
    if (gptq) {
        size_t rows = rb_stream_batch_rows(cal.T, cal.n_seq);
        if ((rc = rb_mem_check(((size_t)cal.n_seq * cal.T + rows) * c->dim * sizeof(float),
                               "GPTQ: the hidden states of the calibration windows",
                               "lower data.calib.samples (--calib-samples) or data.calib.seqlen", err)))
            goto done;
        /* one linear at a time holds its Hessian and GPTQ's work copy of it (cols² doubles each), the
         * act-order permuted W and, with h_err, a copy of W: the widest linear bounds it (issue 16) */
        size_t hbytes = 0;
        int hcols = 0;
        for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
            int r, k;
            rb_layer_linear_shape(c, lin, &r, &k);
            size_t b = 2 * (size_t)k * k * sizeof(double) +
                       (size_t)r * k * sizeof(float) * ((q->gptq.act_order ? 1 : 0) + (o->h_err ? 2 : 0));
            if (b > hbytes) hbytes = b, hcols = k;
        }
        char what[160];
        snprintf(what, sizeof what, "GPTQ: the Hessian of the widest linear (%d inputs) and its factor", hcols);
        if ((rc = rb_mem_check(hbytes + ((size_t)cal.n_seq * cal.T + rows) * c->dim * sizeof(float), what,
                               "no option reduces it (set by the model's widest linear): use quant.w.algo: rtn or "
                               "a machine with more memory",
                               err)))
            goto done;
        cal.h = rb_alloc((size_t)cal.n_seq * cal.T * c->dim * sizeof(float));
        copy = rb_alloc(rows * (size_t)c->dim * sizeof(float));
        if (!cal.h || !copy) {
            rc = rb_error_set(err, RB_ENOMEM, "GPTQ: out of memory for the hidden states of %d calibration windows of %d "
                                              "tokens (data.calib.samples bounds it)",
                              cal.n_seq, cal.T);
            goto done;
        }
        if ((rc = rb_forward_init(&f, c, cal.T, (int)rows, err))) goto done;
        if ((rc = src->embed(src->ctx, o->calib, (size_t)cal.n_seq * cal.T, cal.h, err))) goto done;
    }
    for (int lin = 0; lin < RB_LIN_COUNT && !rc; lin++) {
        int r, k;
        rb_layer_linear_shape(c, lin, &r, &k);
        rc = rb_wparams_alloc(&params[lin], &q->w, r, k, err);
    }
    if (rc) goto done;
    rb_progress prog;
    rb_progress_init(&prog, gptq ? "gptq layers" : "rtn layers", c->n_layers);
    for (int l = 0; l < c->n_layers; l++) {
        double h_err[RB_LIN_COUNT], h_err_rtn[RB_LIN_COUNT];
        for (int i = 0; i < RB_LIN_COUNT; i++) h_err[i] = h_err_rtn[i] = NAN;
        if ((rc = src->load_layer(src->ctx, l, &w, err))) goto done;
        if (gptq) {
            if ((rc = gptq_layer(&f, &w, l, &cal, o, copy, h_err, h_err_rtn, params, err))) goto done;
        } else {
            for (int lin = 0; lin < RB_LIN_COUNT && !rc; lin++) {
                int r, k;
                float *m = rb_layer_linear(&w, c, lin, &r, &k);
                /* the same parameters rb_quant_fake finds (one unit_params per unit), kept for the store */
                rc = rb_qparams_find(&q->w, m, r, k, 0, params[lin].scale, params[lin].zero, err);
                if (!rc) rc = rb_quant_apply(&q->w, m, r, k, 0, params[lin].scale, params[lin].zero, err);
                if (!rc && q->w.gran == RB_QGRAN_TENSOR) /* one unit: the same grid for every row */
                    for (int i = 1; i < r; i++) params[lin].scale[i] = params[lin].scale[0], params[lin].zero[i] = params[lin].zero[0];
                if (!rc && params[lin].g_idx)
                    for (int j = 0; j < k; j++) params[lin].g_idx[j] = j / q->w.group;
            }
            if (rc) goto done;
        }
        if ((rc = rb_wstore_put_layer(store, l, &w, &q->w, gptq && q->gptq.act_order, h_err, h_err_rtn, params, err)))
            goto done;
        /* the calibration stream goes on through the quantized layer (QuaRot: inps = layer(inps)) */
        if (gptq && (rc = rb_stream_layer(&f, &w, l, &cal, o->online, NULL, err))) goto done;
        rb_progress_step(&prog, 1);
        if (rb_interrupted()) {
            rc = rb_error_set(err, RB_EINTERRUPTED, "weight quantization interrupted after layer %d of %d", l + 1,
                              c->n_layers);
            goto done;
        }
    }
    rb_progress_done(&prog);
done:
    for (int lin = 0; lin < RB_LIN_COUNT; lin++) rb_wparams_free(&params[lin]);
    rb_free(cal.h);
    rb_free(copy);
    rb_forward_free(&f);
    rb_layer_weights_free(&w);
    if (seconds) *seconds = rb_now() - t0;
    return rc;
}

#include "eval/rb_qeval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_signal.h"
#include "model/rb_stream.h"

/* ---- hooks ---- */

typedef struct qe_ctx {
    const rb_quant_cfg *q;
    rb_qeval_result *res;
    int stats;
    float *scratch;   /* [max_rows][max site width] copy for the activation MSE */
    float *scratch2;  /* the same, for the quantized tensor mapped to the model's basis (to_model_basis) */
    rb_hook_fn basis;
    void *basis_ctx;
} qe_ctx;

static int hook_stats(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    (void)err;
    rb_act_stats *s = ctx;
    rb_act_stats_add(&s[in->layer * RB_SITE_COUNT + in->site], x, (size_t)in->n_seq * in->seq_len, (size_t)in->cols);
    return 0;
}

static int hook_quant(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    qe_ctx *c = ctx;
    if (rb_quant_site_spec(c->q, in->site)->bits >= RB_QBITS_OFF) return 0;
    size_t rows = (size_t)in->n_seq * in->seq_len, n = rows * (size_t)in->cols;
    if (c->stats) {
        rb_act_stats_add(&c->res->site_q[in->layer * RB_SITE_COUNT + in->site], x, rows, (size_t)in->cols);
        memcpy(c->scratch, x, n * sizeof(float));
    }
    int rc = rb_quant_site_hook((void *)c->q, in, x, err);
    if (rc || !c->stats) return rc;
    const float *q = x;
    if (c->basis) { /* both sides back to the model's basis: the map is linear, so is the error */
        memcpy(c->scratch2, x, n * sizeof(float));
        if ((rc = c->basis(c->basis_ctx, in, c->scratch, err)) || (rc = c->basis(c->basis_ctx, in, c->scratch2, err)))
            return rc;
        q = c->scratch2;
    }
    rb_relerr_add(&c->res->act_mse[in->layer * RB_SITE_COUNT + in->site], c->scratch, q, rows, in->cols,
                  (size_t)in->cols);
    return 0;
}

static void result_alloc_stats(rb_qeval_result *r, const rb_llama_config *c, int stats, rb_error *err, int *rc) {
    size_t ns = (size_t)c->n_layers * RB_SITE_COUNT;
    r->act_mse = calloc(ns, sizeof *r->act_mse);
    r->layer_mse = calloc((size_t)c->n_layers, sizeof *r->layer_mse);
    if (!r->act_mse || !r->layer_mse) goto oom;
    if (!stats) return;
    r->site_fp = calloc(ns, sizeof *r->site_fp);
    r->site_q = calloc(ns, sizeof *r->site_q);
    r->lin = calloc((size_t)c->n_layers * RB_LIN_COUNT, sizeof *r->lin);
    if (!r->site_fp || !r->site_q || !r->lin) goto oom;
    for (size_t i = 0; i < ns; i++) {
        int site = (int)(i % RB_SITE_COUNT);
        int cols = site == RB_SITE_ATTN_IN || site == RB_SITE_MLP_IN ? c->dim
                   : site == RB_SITE_K || site == RB_SITE_V         ? c->n_kv_heads * c->head_dim
                   : site == RB_SITE_O_IN || site == RB_SITE_Q      ? c->n_heads * c->head_dim
                                                                    : c->hidden_dim;
        if ((*rc = rb_act_stats_init(&r->site_fp[i], cols, err)) || (*rc = rb_act_stats_init(&r->site_q[i], cols, err)))
            return;
    }
    for (size_t i = 0; i < (size_t)c->n_layers * RB_LIN_COUNT; i++) r->lin[i].h_err = r->lin[i].h_err_rtn = NAN;
    return;
oom:
    *rc = rb_error_set(err, RB_ENOMEM, "qeval: out of memory");
}

void rb_qeval_result_free(rb_qeval_result *r) {
    rb_ppl_result_free(&r->q);
    rb_ppl_result_free(&r->fp);
    free(r->win_kl);
    if (r->site_fp)
        for (int i = 0; i < r->n_layers * RB_SITE_COUNT; i++) rb_act_stats_free(&r->site_fp[i]);
    if (r->site_q)
        for (int i = 0; i < r->n_layers * RB_SITE_COUNT; i++) rb_act_stats_free(&r->site_q[i]);
    free(r->site_fp);
    free(r->site_q);
    free(r->act_mse);
    free(r->layer_mse);
    free(r->lin);
    memset(r, 0, sizeof *r);
}

/* Final norm + lm_head + NLL (+ KL against the FP stream) for every window. */
static int score_windows(const rb_weights_src *src, const rb_llama_config *c, const int32_t *win, int W, int T,
                         int first, rb_stream *sq, rb_stream *sf, rb_qeval_result *res, rb_error *err) {
    size_t d = (size_t)c->dim, V = (size_t)c->vocab_size;
    size_t lrows = T - 1 - first < 512 ? (size_t)(T - 1 - first) : 512;
    float *norm = rb_alloc(d * sizeof(float)), *head = rb_alloc(V * d * sizeof(float));
    float *lq = rb_alloc(lrows * V * sizeof(float)), *lf = sf ? rb_alloc(lrows * V * sizeof(float)) : NULL;
    double *nll = malloc(lrows * sizeof *nll), *kl = malloc(lrows * sizeof *kl);
    int rc = 0;
    if (!norm || !head || !lq || (sf && !lf) || !nll || !kl) {
        rc = rb_error_set(err, RB_ENOMEM, "qeval: out of memory for logits");
        goto done;
    }
    if ((rc = src->load_final_norm(src->ctx, norm, err)) || (rc = src->load_lm_head(src->ctx, head, err))) goto done;
    rb_rmsnorm(sq->h, sq->h, norm, (size_t)W * T, c->dim, c->rms_eps);
    if (sf) rb_rmsnorm(sf->h, sf->h, norm, (size_t)W * T, c->dim, c->rms_eps);
    for (int w = 0; w < W; w++) {
        const int32_t *ids = win + (size_t)w * T;
        double sq_nll = 0, sf_nll = 0, skl = 0;
        for (int p0 = first; p0 < T - 1; p0 += (int)lrows) {
            int nr = T - 1 - p0 < (int)lrows ? T - 1 - p0 : (int)lrows;
            rb_llama_logits(sq->h + ((size_t)w * T + p0) * d, (size_t)nr, head, c, lq);
            rb_nll_rows(lq, (size_t)nr, c->vocab_size, ids + p0 + 1, nll);
            for (int r = 0; r < nr; r++) sq_nll += nll[r];
            if (sf) {
                rb_llama_logits(sf->h + ((size_t)w * T + p0) * d, (size_t)nr, head, c, lf);
                rb_nll_rows(lf, (size_t)nr, c->vocab_size, ids + p0 + 1, nll);
                for (int r = 0; r < nr; r++) sf_nll += nll[r];
                rb_kl_rows(lf, lq, (size_t)nr, c->vocab_size, kl);
                for (int r = 0; r < nr; r++) skl += kl[r];
            }
        }
        long scored = T - 1 - first;
        if (!isfinite(sq_nll) || !isfinite(sf_nll) || !isfinite(skl)) {
            rc = rb_error_set(err, RB_ENUMERIC, "qeval: window %d: NLL %g (FP %g), KL %g: the logits overflowed float32",
                              w, sq_nll, sf_nll, skl);
            goto done;
        }
        res->q.win_nll[w] = sq_nll;
        res->q.win_scored[w] = scored;
        res->q.nll_sum += sq_nll;
        res->q.scored += scored;
        if (sf) {
            res->fp.win_nll[w] = sf_nll;
            res->fp.win_scored[w] = scored;
            res->fp.nll_sum += sf_nll;
            res->fp.scored += scored;
            res->win_kl[w] = skl;
        }
    }
done:
    rb_free(norm);
    rb_free(head);
    rb_free(lq);
    rb_free(lf);
    free(nll);
    free(kl);
    return rc;
}

int rb_qeval_run(const rb_weights_src *src, const rb_llama_config *c, const int32_t *tokens, size_t n,
                 const rb_qeval_opts *o, rb_qeval_result *res, rb_error *err) {
    memset(res, 0, sizeof *res);
    double t0 = rb_now();
    res->n_layers = c->n_layers;
    const rb_quant_cfg *q = rb_quant_cfg_active(o->q) ? o->q : NULL;
    RB_ASSERT(!q || q->w.bits >= RB_QBITS_OFF || o->wq); /* quantized weights come from the store */
    int32_t *win = NULL;
    int W = 0, first = 0, rc = 0;
    if ((rc = rb_ppl_windows(tokens, n, &o->ppl, &win, &W, &first, err))) return rc;
    int T = o->ppl.seqlen;
    size_t d = (size_t)c->dim;
    for (size_t i = 0; i < (size_t)W * T; i++)
        if (win[i] < 0 || win[i] >= c->vocab_size) {
            int32_t id = win[i]; /* read before the free (issue 16) */
            free(win);
            return rb_error_set(err, RB_EINVAL, "qeval: token id %d is outside the vocabulary (%d)", id,
                                c->vocab_size);
        }
    rb_stream sq = {NULL, W, T, 0, NULL}, sf = {NULL, W, T, 0, NULL};
    rb_forward f = {0};
    rb_layer_weights wf = {0}, wq = {0};
    float *copy = NULL;
    qe_ctx qc = {.q = q, .res = res, .stats = o->stats};
    size_t max_rows = rb_stream_batch_rows(T, W);
    int widest = c->hidden_dim > c->n_heads * c->head_dim ? c->hidden_dim : c->n_heads * c->head_dim;
    if (widest < c->dim) widest = c->dim;

    size_t need = (size_t)W * T * d * sizeof(float) * (o->fp_ref ? 2 : 1) +
                  max_rows * (size_t)widest * sizeof(float) * (o->stats && o->to_model_basis ? 2 : 1);
    if ((rc = rb_mem_check(need, "evaluation: the hidden states of every window (quantized and FP streams)",
                           "lower data.eval[].max_windows (--max-windows) or seqlen", err))) {
        free(win);
        return rc;
    }
    res->q.win_nll = calloc((size_t)W, sizeof(double));
    res->q.win_scored = calloc((size_t)W, sizeof(long));
    if (o->fp_ref) {
        res->fp.win_nll = calloc((size_t)W, sizeof(double));
        res->fp.win_scored = calloc((size_t)W, sizeof(long));
        res->win_kl = calloc((size_t)W, sizeof(double));
    }
    sq.h = rb_alloc((size_t)W * T * d * sizeof(float));
    if (o->fp_ref) sf.h = rb_alloc((size_t)W * T * d * sizeof(float));
    copy = rb_alloc(max_rows * (size_t)widest * sizeof(float));
    qc.scratch = copy;
    if (o->stats && o->to_model_basis) {
        qc.basis = o->to_model_basis;
        qc.basis_ctx = o->basis_ctx;
        qc.scratch2 = rb_alloc(max_rows * (size_t)widest * sizeof(float));
    }
    if (!res->q.win_nll || !res->q.win_scored || (o->fp_ref && (!res->fp.win_nll || !res->fp.win_scored || !res->win_kl)) ||
        !sq.h || (o->fp_ref && !sf.h) || !copy || (qc.basis && !qc.scratch2)) {
        rc = rb_error_set(err, RB_ENOMEM, "qeval: out of memory for hidden states (%d windows of %d tokens)", W, T);
        goto done;
    }
    result_alloc_stats(res, c, o->stats, err, &rc);
    if (rc) goto done;
    if ((rc = rb_forward_init(&f, c, T, (int)max_rows, err))) goto done;
    if ((rc = rb_layer_weights_init(&wf, c, err)) || (rc = rb_layer_weights_init(&wq, c, err))) goto done;
    if ((rc = src->embed(src->ctx, win, (size_t)W * T, sq.h, err))) goto done;
    if (sf.h) memcpy(sf.h, sq.h, (size_t)W * T * d * sizeof(float));

    rb_hooks hk_fp, hk_q;
    if (o->online) hk_q = *o->online;
    else rb_hooks_init(&hk_q);
    if (o->online_fp || o->online) hk_fp = *(o->online_fp ? o->online_fp : o->online);
    else rb_hooks_init(&hk_fp);
    if (o->stats) rb_hooks_add_all(&hk_fp, hook_stats, res->site_fp);
    if (q)
        for (int s = 0; s < RB_SITE_COUNT; s++) rb_hooks_add(&hk_q, s, hook_quant, &qc);

    rb_progress prog;
    rb_progress_init(&prog, "layers", c->n_layers);
    for (int l = 0; l < c->n_layers; l++) {
        if ((rc = src->load_layer(src->ctx, l, &wf, err))) goto done;
        rb_layer_weights_copy(&wq, &wf, c);
        if (q && q->w.bits < RB_QBITS_OFF && (rc = rb_wstore_load_layer(o->wq, l, &wq, err))) goto done;
        if (res->lin)
            for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
                int r, k;
                float *w0 = rb_layer_linear(&wf, c, lin, &r, &k), *w1 = rb_layer_linear(&wq, c, lin, &r, &k);
                rb_linear_row *lr = &res->lin[l * RB_LIN_COUNT + lin];
                rb_weight_stats_compute(w0, r, k, &lr->w);
                rb_weight_err we;
                rb_weight_err_compute(w0, w1, r, k, &we);
                lr->w_relerr = we.rel;
                if (q && q->w.bits < RB_QBITS_OFF && (rc = rb_wstore_herr(o->wq, l, lin, &lr->h_err, &lr->h_err_rtn, err)))
                    goto done;
            }
        if (sf.h && (rc = rb_stream_layer(&f, &wf, l, &sf, &hk_fp, NULL, err))) goto done;
        if ((rc = rb_stream_layer(&f, &wq, l, &sq, &hk_q, NULL, err))) goto done;
        if (sf.h) rb_relerr_add(&res->layer_mse[l], sf.h, sq.h, (size_t)W * T, c->dim, d);
        rb_progress_step(&prog, 1);
        if (rb_interrupted()) {
            rc = rb_error_set(err, RB_EINTERRUPTED, "interrupted after layer %d of %d", l + 1, c->n_layers);
            goto done;
        }
    }
    rb_progress_done(&prog);
    if ((rc = score_windows(src, c, win, W, T, first, &sq, sf.h ? &sf : NULL, res, err))) goto done;
    res->q.windows = W;
    res->q.tokens = n;
    res->q.ppl = exp(res->q.nll_sum / (double)res->q.scored);
    if (sf.h) {
        res->fp.windows = W;
        res->fp.tokens = n;
        res->fp.ppl = exp(res->fp.nll_sum / (double)res->fp.scored);
        double kls = 0;
        for (int w = 0; w < W; w++) kls += res->win_kl[w];
        res->kl_mean = kls / (double)res->q.scored;
    } else {
        res->kl_mean = NAN;
    }
    res->seconds_total = res->q.seconds = rb_now() - t0;
done:
    rb_free(qc.scratch2);
    free(win);
    rb_free(sq.h);
    rb_free(sf.h);
    rb_free(copy);
    rb_forward_free(&f);
    rb_layer_weights_free(&wf);
    rb_layer_weights_free(&wq);
    if (rc) rb_qeval_result_free(res);
    return rc;
}

static void tsv_num(FILE *f, double v) {
    if (isnan(v))
        fputs("\t", f);
    else
        fprintf(f, "\t%.9g", v);
}

int rb_qeval_write_tsv(const rb_qeval_result *r, FILE *f) {
    static const char *const act_cols[] = {"tokens", "kurt_token_mean", "kurt_token_median", "kurt_channel_mean",
                                           "kurt_channel_max", "kurt_all", "flat_token_mean", "incoherence_mean",
                                           "incoherence_max", "corner_mean"};
    const int n_act = (int)(sizeof act_cols / sizeof *act_cols);
    fputs("kind\tlayer\tname", f);
    for (int i = 0; i < n_act; i++) fprintf(f, "\tfp_%s", act_cols[i]);
    for (int i = 1; i < n_act; i++) fprintf(f, "\tq_%s", act_cols[i]);
    fputs("\tact_mse\tw_kurt_all\tw_kurt_row_mean\tw_sum_w4\tw_flat_row_mean\tw_incoherence\tw_relerr\th_err\th_err_rtn"
          "\tlayer_out_mse\n",
          f);
    for (int l = 0; l < r->n_layers; l++) {
        for (int s = 0; s < RB_SITE_COUNT && r->site_fp; s++) {
            rb_act_stats_row a, b;
            rb_act_stats_result(&r->site_fp[l * RB_SITE_COUNT + s], &a);
            rb_act_stats_result(&r->site_q[l * RB_SITE_COUNT + s], &b);
            double va[] = {a.tokens, a.kurt_token_mean, a.kurt_token_median, a.kurt_channel_mean, a.kurt_channel_max,
                           a.kurt_all, a.flat_token_mean, a.incoherence_mean, a.incoherence_max, a.corner_mean};
            double vb[] = {b.tokens, b.kurt_token_mean, b.kurt_token_median, b.kurt_channel_mean, b.kurt_channel_max,
                           b.kurt_all, b.flat_token_mean, b.incoherence_mean, b.incoherence_max, b.corner_mean};
            fprintf(f, "act\t%d\t%s", l, rb_site_name(s));
            for (int i = 0; i < n_act; i++) tsv_num(f, a.tokens > 0 ? va[i] : NAN);
            for (int i = 1; i < n_act; i++) tsv_num(f, b.tokens > 0 ? vb[i] : NAN);
            tsv_num(f, r->act_mse[l * RB_SITE_COUNT + s].ref_sq > 0 ? rb_relerr_value(&r->act_mse[l * RB_SITE_COUNT + s]) : NAN);
            fputs("\t\t\t\t\t\t\t\t\t\n", f);
        }
        for (int k = 0; k < RB_LIN_COUNT && r->lin; k++) {
            const rb_linear_row *lr = &r->lin[l * RB_LIN_COUNT + k];
            fprintf(f, "linear\t%d\t%s", l, rb_linear_name(k));
            for (int i = 0; i < 2 * n_act; i++) fputc('\t', f);
            tsv_num(f, lr->w.kurt_all);
            tsv_num(f, lr->w.kurt_row_mean);
            tsv_num(f, lr->w.sum_w4);
            tsv_num(f, lr->w.flat_row_mean);
            tsv_num(f, lr->w.incoherence);
            tsv_num(f, lr->w_relerr);
            tsv_num(f, lr->h_err);
            tsv_num(f, lr->h_err_rtn);
            fputs("\t\n", f);
        }
        fprintf(f, "layer\t%d\tblock", l);
        for (int i = 0; i < 2 * n_act - 1 + 9; i++) fputc('\t', f);
        tsv_num(f, r->layer_mse[l].ref_sq > 0 ? rb_relerr_value(&r->layer_mse[l]) : NAN);
        fputc('\n', f);
    }
    return ferror(f) ? RB_EIO : 0;
}

/* rb_qeval: evaluation of a quantized model, layer-major, with a full-precision reference.
 *
 * One pass over the layers; each layer's FP weights come from the weights source and its
 * quantized weights from the run's weight store (quant/rb_wquant.h quantized them once), and two
 * streams of hidden states go through them side by side:
 *   q      evaluation windows through quantized weights with fake-quantized activations and KV.
 *   fp     the same windows through the FP model (ppl_fp, KL, layer output MSE, FP statistics).
 * Memory: one layer of weights twice (FP and quantized) + the two streams' hidden states. */
#ifndef RB_QEVAL_H
#define RB_QEVAL_H

#include <stdio.h>

#include "eval/rb_ppl.h"
#include "eval/rb_stats.h"
#include "quant/rb_qpreset.h"
#include "quant/rb_wstore.h"

typedef struct rb_qeval_opts {
    const rb_quant_cfg *q;   /* quantization; NULL = none */
    rb_wstore *wq;           /* the quantized weights (required when q quantizes weights) */
    rb_ppl_opts ppl;         /* protocol, seqlen, max_windows, bos_id (max_hidden_bytes unused) */
    int fp_ref;              /* also run the FP stream (ppl_fp, KL, layer output MSE, FP site stats) */
    int stats;               /* per-layer per-site / per-linear metrics */
    const rb_hooks *online;  /* transforms applied at sites before quantization (rotations), may be NULL */
    const rb_hooks *online_fp; /* the FP stream's (NULL: online): differs when the method's online maps are an
                                  approximation (ReSpinQuant's low-rank junctions), so the FP reference is exact */
    /* Maps a site tensor in its quantization basis back to the model's (rb_hook_ruq_inverse), so the
     * activation MSE is comparable across methods; NULL when the online maps are orthogonal. */
    rb_hook_fn to_model_basis;
    void *basis_ctx;
} rb_qeval_opts;

/* Metrics of one linear of one layer. */
typedef struct rb_linear_row {
    rb_weight_stats w;       /* of the (fused) FP weight */
    double w_relerr;         /* ‖Q(W) − W‖²_F / ‖W‖²_F */
    double h_err;            /* tr((W−Q)H(W−Q)ᵀ) of the chosen algorithm (GPTQ with stats, else NaN) */
    double h_err_rtn;        /* same for RTN on the same Hessian (GPTQ with stats, else NaN) */
} rb_linear_row;

typedef struct rb_qeval_result {
    rb_ppl_result q;          /* quantized model */
    rb_ppl_result fp;         /* FP reference (zeroed when fp_ref = 0) */
    double kl_mean;           /* mean over scored tokens of KL(p_fp ‖ p_q), nats; NaN without fp_ref */
    double *win_kl;           /* [windows] KL sum per window */
    int n_layers;
    rb_act_stats *site_fp;    /* [n_layers][RB_SITE_COUNT] FP stream (stats) */
    rb_act_stats *site_q;     /* [n_layers][RB_SITE_COUNT] quantized stream, before quantization (stats) */
    rb_relerr_acc *act_mse;   /* [n_layers][RB_SITE_COUNT] Σ‖Q(x) − x‖² / Σ‖x‖² at each quantized site, in the
                                 model's basis (rotations keep norms; RUQuant's smoothing is undone) */
    rb_relerr_acc *layer_mse; /* [n_layers] block output: quantized on quantized inputs vs FP on FP */
    rb_linear_row *lin;       /* [n_layers][RB_LIN_COUNT] (stats) */
    double seconds_total;
} rb_qeval_result;

/* Runs the pipeline on the token stream tokens[n] (windows as rb_ppl_windows). */
int rb_qeval_run(const rb_weights_src *src, const rb_llama_config *c, const int32_t *tokens, size_t n,
                 const rb_qeval_opts *o, rb_qeval_result *res, rb_error *err);
void rb_qeval_result_free(rb_qeval_result *r);

/* Per-layer table as TSV (header + rows): kind (act|linear|layer), layer, name, then the metric
 * columns; fields that do not apply to a kind are empty. */
int rb_qeval_write_tsv(const rb_qeval_result *r, FILE *f);

#endif

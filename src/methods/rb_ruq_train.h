/* rb_ruq_train: RUQuant stage 2 (METHODS §5.4) — the four global Householder vectors of one decoder
 * layer fine-tuned on the block-output MSE between the FP layer on FP inputs and the quantized layer
 * on the already-quantized inputs, through the backward engine (model/rb_backward.h).
 *
 * Parameterization [reading]: each trained site's reflection is H(v) = I − 2·v·vᵀ/‖v‖² of a free
 * vector v (initialized from stage 1's unit hh), orthogonal for every v ≠ 0 — the spec's guard
 * (entries with |v_i| < guard set to ±guard before each step) makes v non-unit, so the reflection
 * is taken of its direction n = v/‖v‖. A site whose stage-1 hh is 0 (global Householder skipped)
 * stays the identity and is not trained.
 *
 * With B = blockdiag(blk0)·P·blockdiag(blk1) (rotate/rb_ruq_site.h):
 *   activation  u = (x/s)·B (x·B with scale_fused), x' = u·H = u − 2(u·n)nᵀ   (a training hook)
 *   weights     W'' = W·diag(s)·B of every reader (the fused layer with the site's hh zeroed),
 *               W'_t = W''·H(n) = W'' − 2(W''n)nᵀ, then RTN with the run's weight spec
 *               (straight-through: dL/dW'_t = the engine's weight gradient)
 *   gradient    g_n = −2·Σ_rows [ u(dx'·n) + dx'(u·n) ] − 2·Σ_readers [ W''ᵀ(dW'·n) + dW'ᵀ(W''n) ],
 *               dL/dv = (I − nnᵀ)·g_n/‖v‖
 * all O(rows·width) with dot products accumulated in double; never a width×width matrix.
 *
 * The hooks of a training forward are rb_fused_add_online_hooks' (R3 at q/k, R4 and the cross-head
 * transform when on) with the layer's four RUQuant transforms replaced by the training hooks, then
 * the run's quantizers with the plain straight-through estimator (rb_quant_add_train_hooks). */
#ifndef RB_RUQ_TRAIN_H
#define RB_RUQ_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_trace.h"
#include "model/rb_backward.h"
#include "quant/rb_qpreset.h"
#include "rotate/rb_fuse.h"

typedef struct rb_ruq_train_opts {
    int epochs;          /* passes over the samples (RUQuant: 20) */
    int samples;         /* windows trained on (RUQuant: 128) */
    int batch;           /* windows per step (RUQuant: 1) */
    double lr;           /* AdamW learning rate (RUQuant lh_lr: 1e-2) */
    double weight_decay; /* AdamW decoupled weight decay (RUQuant: 0) */
    double guard;        /* |v_i| < guard → ±guard before each step (RUQuant: 0.01); 0 = off */
} rb_ruq_train_opts;

/* What training one layer did (also in the trace). */
typedef struct rb_ruq_train_info {
    double mse_stage1;  /* block-output MSE over the samples with the stage-1 vectors */
    double mse_stage2;  /* the same with the trained vectors */
    double seconds;
    int trained;        /* sites trained (stage-1 hh ≠ 0) */
} rb_ruq_train_info;

/* Per-site state of the layer being trained. */
typedef struct rb_ruq_train_site {
    struct rb_ruq_train *t;
    int k;          /* RB_RUQ_* */
    int active;     /* 1: trained (stage-1 hh ≠ 0); 0: identity reflection */
    double *v;      /* [n] free vector */
    double *nv;     /* [n] v/‖v‖ */
    float *nf;      /* [n] fp32 copy of nv for the activation hook */
    double *g;      /* [n] dL/dn accumulated over a step */
    double *dv;     /* [n] dL/dv of the last rb_ruq_train_loss_grad */
    double *m, *s2; /* [n] AdamW moments */
} rb_ruq_train_site;

typedef struct rb_ruq_train {
    const rb_llama_config *c;
    rb_fused *fz;             /* not owned: the quantized model (its set holds the layer's stage-1 sites) */
    const rb_quant_cfg *q;    /* not owned; NULL or inactive: nothing quantized (exact gradients) */
    rb_ruq_train_opts o;
    int T, max_seq;           /* tokens per window, windows per call */
    int layer;                /* the layer rb_ruq_train_begin prepared (-1: none) */
    long adam_t;              /* AdamW steps taken on this layer */
    int stale;                /* the engine's weights do not reflect the current vectors */
    rb_ruq_train_site site[4];
    rb_layer_weights wpp, w, dw; /* W'' per reader; the engine's (re-quantized) W'_t; its gradient */
    rb_forward f;
    rb_backward b;
    rb_tape tape;
    rb_hooks hk;              /* the training hooks (see the top comment) */
    float *h, *dh;            /* [max_seq·T][dim] */
    float *u, *tmp;           /* [max_seq·T][widest] hook scratch */
} rb_ruq_train;

/* Bytes rb_ruq_train_init allocates for config c, windows of T tokens and max_seq windows a call. */
size_t rb_ruq_train_bytes(const rb_llama_config *c, int T, int max_seq);

/* Training state for the model behind fz (config c; fz's set must hold RUQuant sites at every layer
 * trained), quantization q (NULL = none), windows of T tokens, at most o->batch windows a call.
 * fz and q must outlive t. Errors: RB_EINVAL (bad options), RB_ENOMEM naming the size. */
int rb_ruq_train_init(rb_ruq_train *t, const rb_llama_config *c, rb_fused *fz, const rb_quant_cfg *q,
                      const rb_ruq_train_opts *o, int T, rb_error *err);
void rb_ruq_train_free(rb_ruq_train *t);

/* Prepares layer l: loads W'' (the fused layer with its four hh zeroed, restored afterwards), sets
 * each v to the site's stage-1 hh and clears the AdamW state. Errors: the weights source's. */
int rb_ruq_train_begin(rb_ruq_train *t, int l, rb_error *err);

/* Block-output loss L = mean over elements of (layer(X) − Y)² for X, Y [n_seq·T][dim] (n_seq ≤
 * max_seq windows) with the current vectors (weights re-quantized first when they changed), into
 * *loss. With grad, also every trained site's dL/dv into site[k].dv (a backward pass). Errors: the
 * forward's and the backward's (RB_ENUMERIC for a non-finite loss). */
int rb_ruq_train_loss(rb_ruq_train *t, const float *X, const float *Y, int n_seq, int grad, double *loss,
                      rb_error *err);

/* Applies the guard to every trained v (entries with |v_i| < guard → ±guard, + for 0); the weights
 * follow at the next loss. */
void rb_ruq_train_guard(rb_ruq_train *t);

/* Sets site k's free vector to v [width] (not all zero; the site must be trained: site[k].active) and
 * its direction; the weights follow at the next loss (tests: finite differences). */
void rb_ruq_train_set_v(rb_ruq_train *t, int k, const double *v);

/* One AdamW step on every trained v from site[k].dv (betas 0.9/0.999, eps 1e-8, decoupled weight
 * decay). Errors: RB_ENUMERIC when a v becomes non-finite or zero. */
int rb_ruq_train_step(rb_ruq_train *t, rb_error *err);

/* Writes n = v/‖v‖ into the layer's sites' hh and refreshes them (rb_ruq_site_check). Errors: the
 * check's (RB_EINVAL naming the site). */
int rb_ruq_train_end(rb_ruq_train *t, rb_error *err);

/* The whole of stage 2 for layer l (after rb_ruq_train_begin's preconditions): X_q [S][T][dim] the
 * quantized stream and Y [S][T][dim] the FP layer's outputs on the FP stream (S = o->samples).
 * Evaluates the block-output MSE over the samples with the stage-1 vectors, trains o->epochs passes
 * of S/batch steps (the guard, a loss and gradient, an AdamW step), writes the trained vectors back
 * (rb_ruq_train_end) and evaluates again. Trace table tt (may be NULL; columns layer, epoch, mse,
 * seconds): epoch 0 = the stage-1 MSE over the samples, epoch e ≥ 1 = the mean loss of its steps.
 * Interruptible between steps (RB_EINTERRUPTED). */
int rb_ruq_train_layer(rb_ruq_train *t, int l, const float *Xq, const float *Y, int S, rb_trace_table *tt,
                       rb_ruq_train_info *info, rb_error *err);

#endif

/* rb_backward: reverse mode of the one decoder layer (DESIGN §2b).
 *
 * rb_backward_layer reads the tape rb_forward_layer recorded (f->tape) and turns the gradient with
 * respect to the layer's output hidden states into the gradient with respect to its input, adding
 * every weight's gradient on the way. What the tape does not hold is recomputed: the RMSNorm
 * outputs, the SwiGLU product and the hook chains at attn_in, o_in, mlp_in, down_in and the residual
 * junctions are replayed
 * forward (the same code, so the same floats), and attention probabilities are recomputed per query
 * block from the recorded log-sum-exp (flash-style: never T×T per head in memory).
 *
 * Hooks run backward in reverse order through their rb_hook_bwd_fn; a hook without one makes the
 * backward fail naming the layer and site, before any work. Every dense product is one sgemm over
 * all rows of the sub-batch. Reductions (RMSNorm, attention's D = rowsum(dO∘O)) in double. */
#ifndef RB_BACKWARD_H
#define RB_BACKWARD_H

#include "model/rb_forward.h"

/* Scratch of the backward of one layer over at most max_rows rows of at most max_T tokens. */
typedef struct rb_backward {
    rb_llama_config cfg;
    int max_T, max_rows;
    float *xa;    /* [max_rows][dim] normed input after its hooks (mlp_in, then attn_in) */
    float *dxa;   /* [max_rows][dim] its gradient */
    float *ua;    /* [max_rows][hidden_dim] down_proj input after its hooks, then d(up) */
    float *du;    /* [max_rows][hidden_dim] d(down_proj input), then d(gate) */
    float *o;     /* [max_rows][n_heads*head_dim] o_proj input after its hooks */
    float *dO;    /* [max_rows][n_heads*head_dim] d(attention output) */
    float *dq;    /* [max_rows][n_heads*head_dim] */
    float *dk;    /* [max_rows][n_kv*head_dim] */
    float *dv;    /* [max_rows][n_kv*head_dim] */
    float *pre;   /* [max_rows][n_heads*head_dim] q/k/v before their hooks, when a hook needs its input */
    float *S, *dP; /* [RB_ATT_QBLOCK][max_T] one query block's probabilities and their gradient */
    double *dg;   /* [dim] RMSNorm weight gradient of one sub-batch */
    float *saved[RB_HOOK_SITES][RB_MAX_HOOKS_PER_SITE]; /* hook inputs kept by a replay (on demand) */
} rb_backward;

/* Scratch for config c, tokens per sequence ≤ max_T, rows ≤ max_rows. Errors: RB_ENOMEM. */
int rb_backward_init(rb_backward *b, const rb_llama_config *c, int max_T, int max_rows, rb_error *err);
void rb_backward_free(rb_backward *b);

/* Bytes of rb_backward_init's scratch (hook-input copies, allocated on demand, not included). */
size_t rb_backward_bytes(const rb_llama_config *c, int max_T, int max_rows);

/* 0 when every hook of hk has a backward; RB_EUNSUPPORTED naming layer `layer` (< 0: every layer,
 * not named), the site and the hook position otherwise. */
int rb_hooks_check_backward(const rb_hooks *hk, int layer, rb_error *err);

/* Backward of the layer forward recorded in tape t (weights w, hooks hk as in that forward; f
 * provides the RoPE tables). dh[rows][dim]: on entry dL/d(layer output), on return dL/d(layer
 * input). dw (may be NULL): every weight's gradient is added to it (+=; the norms' γ included).
 * Returns 0 or a hook's negative error. */
int rb_backward_layer(rb_backward *b, const rb_forward *f, const rb_tape *t, const rb_layer_weights *w,
                      const rb_hooks *hk, float *dh, rb_layer_weights *dw, rb_error *err);

/* RMSNorm backward of rows x[rows][dim] (weight g, NULL = weight-free): dx += ∂L/∂x given dy = ∂L/∂y
 * of y = rb_rmsnorm(x, g); dg (may be NULL, needs g) += Σ_rows dy∘x/rms, in double. */
void rb_rmsnorm_backward(const float *x, const float *g, const float *dy, float *dx, double *dg, size_t rows,
                         int dim, double eps);

#endif

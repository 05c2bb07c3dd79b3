/* rb_grad: the whole-model next-token loss and its reverse pass (DESIGN §2b).
 *
 * Loss: the mean cross-entropy of every next-token prediction of n_seq windows of T tokens (T−1 per
 * window, natural log, summed in double) — the training loss of SpinQuant. The forward runs
 * layer-major like rb_llama_hidden; the backward walks the layers in reverse.
 *
 * Checkpointing (default): the forward keeps each layer's input hidden states only; the backward
 * recomputes one layer's tape at a time, sub-batch by sub-batch. Peak memory ≈ (n_layers + 2) ×
 * rows × dim floats of checkpoints and gradients + one sub-batch tape and backward scratch + one
 * layer of weights and of weight gradients + one logits chunk, whatever the depth. Without it, every
 * layer's tape is kept from the forward (memory grows with depth; for tests and comparison — the
 * numbers are identical, the same code runs on the same inputs). */
#ifndef RB_GRAD_H
#define RB_GRAD_H

#include "model/rb_backward.h"
#include "model/rb_forward.h"

/* Where gradients go. Every callback may be NULL; a non-zero return aborts the pass with it. */
typedef struct rb_grad_sink {
    void *ctx;
    /* Layer `layer`'s weight gradients dw (summed over all windows) for the weights w it ran with. */
    int (*layer)(void *ctx, int layer, const rb_layer_weights *w, const rb_layer_weights *dw, rb_error *err);
    /* Embedding output h0[rows][dim] (the rows of ids) and dL/dh0. */
    int (*embed)(void *ctx, const int32_t *ids, const float *h0, const float *dh0, size_t rows, rb_error *err);
    /* One chunk of final-normed hidden states hn[rows][dim] (the lm_head input) and dL/dhn. */
    int (*head)(void *ctx, const float *hn, const float *dhn, size_t rows, rb_error *err);
} rb_grad_sink;

typedef struct rb_grad_opts {
    int no_checkpoint;  /* 1: keep every layer's tape from the forward instead of recomputing it */
    int seq_base;       /* global index of the first window (hooks' seq_offset) */
    size_t peak_bytes;  /* out: bytes the pass allocated at most (checkpoints, tapes, scratch, weights) */
} rb_grad_opts;

/* Loss of windows ids[n_seq*T] (T ≥ 2) through the model of src (config c) with hooks (may be NULL;
 * every hook needs a backward) into *loss, and gradients into sink. Interruptible between layers
 * (RB_EINTERRUPTED). Errors: RB_ENOMEM (naming the size), RB_EUNSUPPORTED (a hook without backward),
 * RB_ENUMERIC (a non-finite activation or loss), the source's and the hooks' errors. */
int rb_llama_loss_grad(const rb_weights_src *src, const rb_llama_config *c, const int32_t *ids, int n_seq, int T,
                       const rb_hooks *hooks, rb_grad_opts *o, const rb_grad_sink *sink, double *loss,
                       rb_error *err);

/* Zeroes every buffer of w (config c). */
void rb_layer_weights_zero(rb_layer_weights *w, const rb_llama_config *c);

#endif

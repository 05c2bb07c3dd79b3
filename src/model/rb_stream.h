/* rb_stream: the one driver that pushes hidden states through decoder layers (DESIGN §2).
 *
 * A stream is the hidden states of n_seq sequences of T tokens, h[n_seq*T][dim], that travel through
 * the layers together (layer-major). One layer is applied in sub-batches of whole sequences, each
 * one rb_forward_layer call over at most RB_STREAM_ROWS rows: enough rows for sgemm to reach its
 * large-shape rate, few enough that the forward scratch stays small. Evaluation (FP, quantized and
 * calibration streams side by side), GPTQ's Hessian passes, RUQuant's site collection and the
 * whole-model forward (rb_llama_hidden) all go through rb_stream_layer. */
#ifndef RB_STREAM_H
#define RB_STREAM_H

#include "model/rb_forward.h"

/* Rows per layer sub-batch (PERF: sgemm reaches its large-shape rate from T ≥ 512 rows). */
#define RB_STREAM_ROWS 4096

typedef struct rb_stream {
    float *h;     /* [n_seq*T][dim], owned by the caller */
    int n_seq, T;
    int seq_base; /* global index of the first sequence (hooks see seq_base + s as seq_offset) */
    const rb_att_layout *layout; /* NULL: causal; else the attention layout of all n_seq*T rows */
} rb_stream;

/* Sequences per sub-batch for windows of T tokens: max(1, RB_STREAM_ROWS / T), at most n_seq. */
int rb_stream_batch_seqs(int T, int n_seq);
/* Rows of the largest sub-batch of a stream of n_seq windows of T tokens: size rb_forward (max_rows)
 * and copy scratch with the largest value over the streams that share them. */
size_t rb_stream_batch_rows(int T, int n_seq);

/* Pushes stream s through decoder layer `layer` (weights w) with hooks hk (may be NULL), sub-batch
 * by sub-batch. f must allow T tokens and rb_stream_batch_rows(s->T, s->n_seq) rows. With scratch
 * NULL the stream is updated in place; otherwise each sub-batch runs on a copy in scratch
 * ([batch rows][dim]) and the stream is left unchanged — for passes whose hooks stop the layer at a
 * site to collect its inputs (a hook's positive stop value ends that sub-batch only). Returns 0 or
 * the first negative error of a sub-batch (err filled). */
int rb_stream_layer(rb_forward *f, const rb_layer_weights *w, int layer, rb_stream *s, const rb_hooks *hk,
                    float *scratch, rb_error *err);

/* Full forward of n_seq sequences of T tokens (ids[n_seq*T]) layer-major, leaving the final-normed
 * hidden states in hn[n_seq*T][dim] (caller-allocated). Memory: one layer of weights + the hidden
 * states + scratch for one sub-batch. `seq_base` is the global index of ids' first sequence
 * (reported to hooks as seq_offset). Interruptible between layers (RB_EINTERRUPTED). */
int rb_llama_hidden(const rb_weights_src *src, const rb_llama_config *c, const int32_t *ids, int n_seq,
                    int T, int seq_base, const rb_hooks *hooks, float *hn, rb_error *err);

#endif

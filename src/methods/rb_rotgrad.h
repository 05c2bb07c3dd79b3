/* rb_rotgrad: the training loss of a rotated, fake-quantized model and its gradient with respect to
 * R1 and every R2 of the rotation set (SpinQuant's objective, METHODS §3; `rotbench grad`).
 *
 * The model is the set's fused model (rb_fused: γ folded, embeddings centered when the set says so,
 * R1/R2/R4 fused, R3/R4/cross-head online with their transposes as backward). Activations and the
 * KV cache are fake-quantized by the given setting with a straight-through estimator; weights (when
 * w.bits < 16) by RTN of the fused weights, also straight-through (SpinQuant's quant_linear).
 *
 * Chain rule into the rotations, in the row convention of rb_rotset.h. With W' the fused,
 * unquantized weights and dW' their gradients (the engine's, for the quantized weights, passed
 * straight through):
 *   dL/dR1 = R1 · M1,  M1 = Σ_readers W'ᵀ·dW' + Σ_writers W'·dW'ᵀ + h0ᵀ·dh0 + dhnᵀ·hn
 * (readers q,k,v,gate,up of every layer; writers o,down; h0 the rotated embedding rows; the lm_head
 * term written through its input hn), since each fused weight is (R1-free part)·R1 or R1ᵀ·(...);
 *   dL/dR2 = R2 · M2,  M2 = Σ_kv-heads Wv'_h·dWv'_hᵀ + Σ_heads Wo'_hᵀ·dWo'_h
 * (Wv'_h the head's row block of v_proj, Wo'_h the head's column block of o_proj, with QuaRot's
 * cross-head transform taken off first when the set has it). Products in float through sgemm,
 * accumulated in double.
 *
 * Layer-wise sets (ReSpinQuant: ra, rm instead of R1, rb_rotset.h): each basis B gets dL/dB = B·M_B
 * from its own readers and writers — ra[l]: q,k,v of layer l (readers), down of layer l−1 or the
 * embeddings (writers), lm_head for ra[n_layers]; rm[l]: gate,up (readers) and o (writer) of layer
 * l — plus the exact dense junctions it takes part in (rb_junction.h: input side ds_inᵀ·s_in, output
 * side s_outᵀ·ds_out; from T = Aᵀ·B, dL/dA = B·Gᵀ = A·(T·Gᵀ) and dL/dB = A·G = B·(Tᵀ·G) with
 * G = s_inᵀ·ds_out). Every junction runs as a dense hook during a gradient pass, identity included,
 * since dL/dT is not zero there. Low-rank junctions are refused (not differentiated). */
#ifndef RB_ROTGRAD_H
#define RB_ROTGRAD_H

#include "model/rb_forward.h"
#include "quant/rb_qpreset.h"
#include "rotate/rb_rotset.h"

typedef struct rb_rotgrad_opts {
    const rb_quant_cfg *quant; /* training quantization (NULL = none); o_proj resolved against the set here */
    int clipped_ste;           /* activations: clipped straight-through estimator instead of the plain one */
    int no_checkpoint;         /* keep every layer's tape (see rb_grad.h) */
    int seq_base;              /* hooks' seq_offset of the first window */
} rb_rotgrad_opts;

typedef struct rb_rotgrad {
    int dim, head_dim, n_layers;
    double loss;       /* mean next-token cross-entropy (nats) */
    double *dR1;       /* [dim][dim] dL/dR1 */
    double **dR2;      /* [n_layers] of [head_dim][head_dim] dL/dR2 of each layer */
    double **dRa;      /* [n_layers + 1] of [dim][dim] dL/d(ra[l]) of a layer-wise set (rb_rotgrad_layerwise) */
    double **dRm;      /* [n_layers] of [dim][dim] dL/d(rm[l]) */
    size_t peak_bytes; /* the engine's allocation (rb_grad_opts.peak_bytes) */
} rb_rotgrad;

/* Buffers for config c. Errors: RB_ENOMEM. */
int rb_rotgrad_init(rb_rotgrad *g, const rb_llama_config *c, rb_error *err);
void rb_rotgrad_free(rb_rotgrad *g);
/* Adds the layer-wise gradient buffers dRa, dRm ((2·n_layers + 1)·dim² doubles) for layer-wise sets.
 * Errors: RB_ENOMEM naming the size. */
int rb_rotgrad_layerwise(rb_rotgrad *g, rb_error *err);

/* Loss and gradients of windows ids[n_seq*T] (T ≥ 2) for the model `base` (unprepared, as
 * rb_fused_init takes it; config c) under rotation set rs (NULL = no rotation: gradients at the
 * identity; a layer-wise set needs rb_rotgrad_layerwise first and fills dRa/dRm, not dR1). A set with
 * RUQuant transforms or low-rank junctions is refused (RB_EUNSUPPORTED: the chain rule through their
 * fused diag(s)·A is not derived; the engine itself differentiates through their online maps). Errors: as rb_llama_loss_grad and rb_fused_init. */
int rb_rotgrad_run(const rb_weights_src *base, const rb_llama_config *c, const rb_rotset *rs,
                   const rb_rotgrad_opts *o, const int32_t *ids, int n_seq, int T, rb_rotgrad *g, rb_error *err);

/* What `rotbench grad` records beside the gradients. */
typedef struct rb_rotgrad_meta {
    const char *model, *quant, *rotation;
    int seqlen, windows, clipped, emb_center;
} rb_rotgrad_meta;

/* Writes g and the windows ids[windows][seqlen] to `path` (through path.partial, renamed when
 * complete): root attributes loss (mean cross-entropy, nats), model, quant, rotation, seqlen, windows,
 * dim, head_dim, n_layers, emb_center, ste ("plain"|"clipped"), rotbench_version, blas_core,
 * threads; datasets ids int32 [windows][seqlen], grad/r1 float64 [dim][dim], grad/r2/<layer> float64
 * [head_dim][head_dim], and for a layer-wise set grad/ra/<l> (l ≤ n_layers) and grad/rm/<l> float64
 * [dim][dim] (grad/r1 then zero) (docs/results-schema.md). Errors: RB_EIO naming the file, RB_ENOMEM. */
int rb_rotgrad_save(const char *path, const rb_rotgrad *g, const int32_t *ids, const rb_rotgrad_meta *m,
                    rb_error *err);

#endif

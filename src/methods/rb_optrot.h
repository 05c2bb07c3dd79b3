/* rb_optrot: the OptRot / OptRot⁺ objective of METHODS §4.1/§4.3 and its closed-form gradient
 * with respect to R1 and every R2^l (the optimizer and the method live in rb_m_optrot.c).
 *
 * The weights are those of a *prepared* source (rb_fused with R1 = R2 = I: γ folded, untied, and
 * when R4 is on W_down already multiplied by the fixed H4 on its input side; with the cross-head
 * transform on, W_o already carries (C ⊗ I)). For layer l, with B = blockdiag(R2^l) per head:
 *     q, k, gate, up   W̃ = W·R1                       (input side)
 *     v                W̃ = blockdiag(R2ᵀ)·W_v·R1      (R2ᵀ on each KV head's row block)
 *     o                W̃ = R1ᵀ·W_o·B                  (R2 on each head's column block)
 *     down             W̃ = R1ᵀ·W_down                 (H4 already in the prepared weight)
 *     L = Σ_l Σ_m s_m Σ_ij W̃_ij⁴ · c_j
 * with c_j = 1 (OptRot) or c_j = D̃_j² (OptRot⁺), D̃ = diag(R̃ᵀ·H·R̃) the rotated Hessian diagonal
 * of the matrix's input: R̃ = R1 for q,k,v (H at attn_in) and gate,up (mlp_in), R̃ = B for o (only
 * the per-head diagonal blocks of H at o_in matter), fixed for down (diag of H at down_in, which
 * already includes H4). s_m = 1, or with normalize 1/‖W‖_F⁴ (OptRot) and 1/(‖W‖_F⁴·(tr H/n)²)
 * (OptRot⁺), both rotation-invariant, making every matrix's term scale-free.
 *
 * Gradients (G̃ = ∂L/∂W̃ = 4·s·W̃^{∘3}·diag(c), S_j = Σ_i W̃_ij⁴):
 *     W̃ = A ᵀ·M  (output side)  ∂/∂A = M·G̃ᵀ
 *     W̃ = N·R    (input side)   ∂/∂R = Nᵀ·G̃  + 4·H·R·diag(s·D̃∘S)   (second term: OptRot⁺ only)
 * summed over every matrix that shares the rotation (and for R2 over the head blocks).
 *
 * Precision: weight products run in fp32 sgemm (operands are fp32 weights and an fp32 copy of the
 * rotation); every reduction (loss, column sums, gradient accumulation over layers) is in double. */
#ifndef RB_OPTROT_H
#define RB_OPTROT_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_error.h"
#include "model/rb_forward.h"

/* The quantized matrices of a layer, in loss order: the model's linears (RB_LIN_*). */
enum {
    RB_OPTROT_Q = RB_LIN_Q,
    RB_OPTROT_K = RB_LIN_K,
    RB_OPTROT_V = RB_LIN_V,
    RB_OPTROT_O = RB_LIN_O,
    RB_OPTROT_GATE = RB_LIN_GATE,
    RB_OPTROT_UP = RB_LIN_UP,
    RB_OPTROT_DOWN = RB_LIN_DOWN,
    RB_OPTROT_NMAT = RB_LIN_COUNT
};
#define RB_OPTROT_ALL ((1u << RB_OPTROT_NMAT) - 1u)

/* "q", "k", "v", "o", "gate", "up", "down". */
const char *rb_optrot_mat_name(int m);

typedef struct rb_optrot_opts {
    int plus;           /* OptRot⁺: weight columns by D̃² (needs rb_optrot_hessians) */
    int normalize;      /* per-matrix scale-free terms (see above) */
    unsigned mask;      /* matrices in the loss: bit m for RB_OPTROT_<m> (RB_OPTROT_ALL normally; tests isolate one) */
    size_t cache_bytes; /* prepared layers are kept in memory while their total stays within this; the rest is
                           reloaded (and re-prepared) from the source at every evaluation */
} rb_optrot_opts;

/* One layer's OptRot⁺ statistics in the prepared basis: mean over calibration tokens of xᵀx. */
typedef struct rb_optrot_hess {
    float *attn;  /* [dim][dim] at attn_in (input of q, k, v) */
    float *mlp;   /* [dim][dim] at mlp_in (input of gate, up) */
    float *o;     /* [n_heads][head_dim][head_dim] diagonal head blocks at o_in */
    double *down; /* [hidden_dim] diagonal at down_in (after the online R4 when on) */
} rb_optrot_hess;

typedef struct rb_optrot {
    rb_llama_config cfg;
    rb_weights_src src;       /* prepared weights (not owned; must outlive the object) */
    rb_optrot_opts o;
    double *fro2;             /* [n_layers][RB_OPTROT_NMAT] ‖W‖_F² of the prepared weights */
    rb_layer_weights *cache;  /* [n_layers]; entry l cached when cache[l].wq != NULL */
    int n_cached;             /* layers held in cache */
    rb_layer_weights buf;     /* one streamed layer */
    rb_optrot_hess *hess;     /* [n_layers] when o.plus, else NULL */
    long hess_tokens;         /* calibration tokens behind hess (0: not measured yet) */
    /* work space (fp32 GEMM operands and per-layer accumulators) */
    float *r1f;               /* [dim][dim] fp32 copy of R1 */
    float *r2f;               /* [head_dim][head_dim] fp32 copy of this layer's R2 */
    float *g1f;               /* [dim][dim] this layer's ∂L/∂R1 */
    float *g2f;               /* [head_dim][head_dim] this layer's ∂L/∂R2 */
    float *wt;                /* [max rows·cols] W̃, then G̃ in place */
    float *nb;                /* [dim][max(q_dim, kv_dim)] products N = R1ᵀ·W_o, W_v·R1, R2·G̃_v */
    float *mb;                /* [dim][q_dim] W_o·B */
    float *hr;                /* [dim][dim] H·R1 (OptRot⁺) */
    float *hro;               /* [n_heads][head_dim][head_dim] H_o,h·R2 (OptRot⁺) */
    double *dt;               /* [max(dim, q_dim, hidden_dim)] D̃ of the current input */
    double *cw;               /* [same] column weights c_j */
    double *cs;               /* [same] Σ_i W̃_ij⁴ of the current matrix */
    double *st;               /* [same] Σ_m s_m·S^m over the matrices sharing the current D̃ */
    float *cf;                /* [same] 4·s·c_j of the current matrix (fp32 factor of G̃) */
} rb_optrot;

/* Sets up the objective for the prepared source `src` (not owned, e.g. rb_fused_src of a set
 * with R1 = R2 = I) of config c: reads every layer once for ‖W‖_F² and keeps as many layers as fit
 * o->cache_bytes. With o->plus the Hessian arrays are allocated (zero) for rb_optrot_hessians;
 * memory: per layer 2·dim²·4 + n_heads·head_dim²·4 + hidden_dim·8 bytes (Llama-2-7B: 4.4 GB in
 * all). Work space: (hidden_dim·dim + 2·dim·q_dim + 3·dim²)·4 bytes plus one streamed layer. Errors: RB_ENOMEM,
 * the source's load errors. */
int rb_optrot_init(rb_optrot *p, const rb_weights_src *src, const rb_llama_config *c, const rb_optrot_opts *o,
                   rb_error *err);
void rb_optrot_free(rb_optrot *p);

/* OptRot⁺: measures p->hess from an fp32 forward of the n windows win[n][T] through p->src with
 * the caller's online hooks (may be NULL; e.g. the R4 / cross-head transforms of the prepared
 * source, which then run before the accumulation), in chunks of windows. RB_ASSERTs o->plus.
 * Errors: RB_EINVAL (n < 1 or T < 1), the forward's errors (RB_ENOMEM, RB_EINTERRUPTED, ...). */
int rb_optrot_hessians(rb_optrot *p, const rb_hooks *online, const int32_t *win, int n, int T, rb_error *err);

/* *loss = L(R1, {R2^l}) and, when G1 is non-NULL, G1 = ∂L/∂R1; when G2 is non-NULL also
 * G2[l] = ∂L/∂R2^l. R1 [dim][dim] and R2[l] [head_dim][head_dim] need not be orthogonal (the
 * formulas are Euclidean). Layers are evaluated one at a time (cached or streamed). Errors: the
 * source's load errors when streaming, RB_EINVAL when o->plus and no Hessians were measured. */
int rb_optrot_eval(rb_optrot *p, const double *R1, const double *const *R2, double *loss, double *G1,
                   double *const *G2, rb_error *err); /* G1: [dim][dim], G2[l]: [head_dim][head_dim] */

/* Floating-point operations (2 per multiply-add) of the GEMMs of one rb_optrot_eval with both
 * gradients, for the matrices in o->mask (OptRot⁺'s H·R products included). */
double rb_optrot_eval_flops(const rb_optrot *p);

#endif

/* rb_fuse: the model as a rotation method leaves it (METHODS §1.1–1.4), presented as a weights
 * source so the forward engine, GPTQ and evaluation need no change:
 *   prepare  untie (the embedding and lm_head are separate copies), fold every RMSNorm γ into the
 *            linears that read it (γ ← 1), optionally center embedding rows (emb_center);
 *   fuse     R1 into embeddings, q/k/v/gate/up/lm_head inputs and o/down outputs (a layer-wise set:
 *            ra[l] into layer l's q/k/v inputs and layer l−1's down output (the embeddings for l = 0,
 *            lm_head for ra[n_layers]), rm[l] into layer l's o output and gate/up inputs); R2 per layer on
 *            the V outputs and o_proj inputs per head; R4 into down_proj's input side;
 *   online   R3 (Q and K after RoPE, per head), R4 (down_proj input) and QuaRot's cross-head
 *            Hadamard (o_proj input) as forward hooks; a layer-wise set's residual junctions
 *            (rb_junction.h) at res_attn and res_mlp: the set's low-rank T̂, or without them the
 *            exact dense T computed from the bases at rb_fused_init;
 *   RUQuant  per layer and linear input (rb_ruquant.h): x ← (x/s)·A online at attn_in, o_in,
 *            mlp_in, down_in (after the transforms above), W ← W·diag(s)·A on the input side of
 *            q/k/v, o, gate/up, down (after R1/R2/cross-head/R4, in double).
 * All algebra in double, cast to fp32 at the end. Layers are fused when loaded (one at a time);
 * the rotated embedding matrix is built once on first use and kept. */
#ifndef RB_FUSE_H
#define RB_FUSE_H

#include "model/rb_forward.h"
#include "rotate/rb_hadamard.h"
#include "rotate/rb_rotset.h"

typedef struct rb_fused {
    rb_weights_src base;
    rb_llama_config cfg;
    const rb_rotset *rs;  /* not owned */
    rb_had r3, r4;        /* online transforms (order head_dim / hidden_dim, no signs) */
    rb_had ch;            /* cross-head transform (order n_heads), when rs->cross_head */
    int has_r3, has_r4, has_ch;
    float *emb;           /* [vocab][dim] prepared + rotated embedding, built lazily */
    double *wa, *wb;      /* [max matrix elements] double work buffers */
    float *ruq_tmp;       /* [ruq_cap] scratch of the RUQuant hook (grown on demand) */
    size_t ruq_cap;
    rb_junctions junc;    /* the residual junctions of a layer-wise set (has_junc); a caller may point
                             junc.acc_in/acc_out at gradient accumulators before adding the hooks */
    int has_junc;
} rb_fused;

/* RB_EINVAL naming both shapes when rotation set rs was made for another model shape than c. */
int rb_rotset_check_model(const rb_rotset *rs, const rb_llama_config *c, rb_error *err);

/* Wraps `base` (not owned, must outlive f) for config c and rotation set rs (not owned; NULL =
 * preparation only). Builds the R3/R4 Hadamards when enabled; their errors name the options.
 * RUQuant transforms present in rs are checked against the model's widths (RB_EINVAL naming the
 * layer and site). A layer-wise set's junctions are fixed here (dense exact ones computed: n_layers·2
 * dim² floats). rs is read again at every layer load and hook call: RUQuant sites may be added
 * to it afterwards (calibration fits them layer by layer), each taking effect from then on. */
int rb_fused_init(rb_fused *f, const rb_weights_src *base, const rb_llama_config *c, const rb_rotset *rs,
                  rb_error *err);
void rb_fused_free(rb_fused *f);

/* The fused model as a weights source (ctx = f). */
rb_weights_src rb_fused_src(rb_fused *f);

/* Hooks applying an rb_had (ctx) online: per head (rows·n_groups rows of group_dim; R3) or per
 * row (R4). */
int rb_hook_had_heads(void *ctx, const rb_site_info *in, float *x, rb_error *err);
int rb_hook_had_rows(void *ctx, const rb_site_info *in, float *x, rb_error *err);
/* QuaRot's cross-head transform on the o_proj input (ctx: rb_had of order n_heads). */
int rb_hook_had_cross(void *ctx, const rb_site_info *in, float *x, rb_error *err);
/* Their backwards (rb_hook_bwd_fn): the transposes. */
int rb_hook_had_heads_bwd(void *ctx, const rb_site_info *in, const float *x_in, float *dx, rb_error *err);
int rb_hook_had_rows_bwd(void *ctx, const rb_site_info *in, const float *x_in, float *dx, rb_error *err);
int rb_hook_had_cross_bwd(void *ctx, const rb_site_info *in, const float *x_in, float *dx, rb_error *err);
/* x[rows][nh*hd] ← x·(C ⊗ I_hd) (transpose: x·(Cᵀ ⊗ I_hd)) for the order-nh transform h. RB_ENOMEM. */
int rb_had_cross_rows(const rb_had *h, float *x, size_t rows, int nh, int hd, int transpose);

/* RUQuant's online transform of the site's layer (ctx: rb_fused *; no-op where the set has none).
 * Errors: RB_ENOMEM (scratch). */
int rb_hook_ruq(void *ctx, const rb_site_info *in, float *x, rb_error *err);

/* Its backward (rb_hook_bwd_fn): dx ← (dx·Aᵀ)/s (dx·Aᵀ when the site's scale is fused), the transpose
 * of the online map; the transform's own parameters are not differentiated here. */
int rb_hook_ruq_bwd(void *ctx, const rb_site_info *in, const float *x_in, float *dx, rb_error *err);

/* The inverse of rb_hook_ruq (ctx: rb_fused *): maps a site tensor in the basis it is quantized in
 * back to the model's basis (RUQuant's A undone and its smoothing multiplied back), so quantization
 * errors of RUQuant runs are measured where other methods' are (their online maps are orthogonal and
 * keep norms). A no-op where the set has no RUQuant transform. Errors: RB_ENOMEM. */
int rb_hook_ruq_inverse(void *ctx, const rb_site_info *in, float *x, rb_error *err);

/* Appends the online transforms (R3 at q and k, R4 at down_in, QuaRot's cross-head at o_in, then
 * RUQuant's at attn_in, o_in, mlp_in, down_in when rs holds RUQuant transforms, and a layer-wise
 * set's junctions at res_attn, res_mlp) to hk. Must run
 * before any quantization hook at those sites. Every online hook carries its backward (the transpose
 * of its map). */
void rb_fused_add_online_hooks(rb_fused *f, rb_hooks *hk);

#endif

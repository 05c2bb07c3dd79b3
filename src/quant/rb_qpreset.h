/* rb_qpreset: a whole-model quantization setting (weights, linear inputs, KV cache) and the named
 * presets of the literature (W4A4KV4, ...). The exact settings of each preset are in the table of
 * rb_qpreset.c and in README.md. */
#ifndef RB_QPRESET_H
#define RB_QPRESET_H

#include "quant/rb_gptq.h"
#include "quant/rb_quant.h"

enum { RB_WALGO_RTN = 0, RB_WALGO_GPTQ = 1 };

/* Granularity of the o_proj input quantizer (the per-token activation spec `a` otherwise):
 *   HEAD  groups of head_dim, one scale per (token, head): SpinQuant's evaluation (no cross-head
 *         transform; METHODS §3 "Evaluation setting")
 *   ROW   one scale per token over the whole row: QuaRot's, after its online cross-head Hadamard
 *   AUTO  ROW when the rotation set applies QuaRot's cross-head Hadamard, HEAD otherwise (resolved
 *         by rb_quant_cfg_resolve; unresolved it acts as HEAD) */
enum { RB_OPROJ_AUTO = 0, RB_OPROJ_HEAD = 1, RB_OPROJ_ROW = 2 };
/* "auto", "head", "row"; -1 / NULL for anything else. */
int rb_oproj_from_name(const char *name);
const char *rb_oproj_name(int o);

typedef struct rb_quant_cfg {
    char name[32];   /* preset name, or "custom" */
    rb_qspec w;      /* weights of q,k,v,o,gate,up,down (never embeddings or lm_head) */
    rb_qspec a;      /* inputs of q/k/v, o_proj, gate/up, down_proj (per token; o_proj per o_proj below) */
    int o_proj;      /* RB_OPROJ_*: the o_proj input's grouping */
    rb_qspec q;      /* Q after RoPE (and R3): off in every preset (RUQuant quantizes it, METHODS §5.5) */
    rb_qspec k;      /* K cache: after RoPE (and R3) */
    rb_qspec v;      /* V cache: v_proj output */
    int w_algo;      /* RB_WALGO_RTN | RB_WALGO_GPTQ */
    rb_gptq_opts gptq;
} rb_quant_cfg;

/* Fills *q from a preset name (case-insensitive). RB_EINVAL listing the names otherwise. */
int rb_quant_preset(const char *name, rb_quant_cfg *q, rb_error *err);
/* NULL-terminated preset names. */
const char *const *rb_quant_preset_names(void);

struct rb_site_info;
/* The spec that applies at a forward site (RB_SITE_*): q, k, v, and a for the linear inputs (the
 * o_proj input's granularity per q->o_proj, applied by the hook). */
const rb_qspec *rb_quant_site_spec(const rb_quant_cfg *q, int site);

/* Forward hook (rb_hook_fn) fake-quantizing the site's tensor in place with ctx = const
 * rb_quant_cfg *: per token for linear inputs (per head at o_proj unless o_proj is ROW), per
 * (token, head) for Q/K/V with their default granularity. */
int rb_quant_site_hook(void *ctx, const struct rb_site_info *info, float *x, rb_error *err);

/* Backwards of rb_quant_site_hook (rb_hook_bwd_fn, ctx the same rb_quant_cfg): the straight-through
 * estimator (gradient passed unchanged) and its clipped variant (zero where the input was clamped
 * to the quantizer's range; needs the hook's input). */
int rb_quant_site_ste(void *ctx, const struct rb_site_info *info, const float *x_in, float *dx, rb_error *err);
int rb_quant_site_ste_clip(void *ctx, const struct rb_site_info *info, const float *x_in, float *dx, rb_error *err);
struct rb_hooks;
/* Appends rb_quant_site_hook with its backward (STE, or clipped STE) at every site q quantizes (q is
 * not copied: it must outlive hk). */
void rb_quant_add_train_hooks(struct rb_hooks *hk, const rb_quant_cfg *q, int clipped);

/* AUTO o_proj → ROW when the rotation applies QuaRot's cross-head Hadamard (cross_head), else HEAD. */
void rb_quant_cfg_resolve(rb_quant_cfg *q, int cross_head);

/* Any quantization active (weights, activations or KV)? */
int rb_quant_cfg_active(const rb_quant_cfg *q);

#endif

/* rb_rotsite: a trainable rotation at a forward site, simulated without fusing it into weights:
 *   x ← Q(x·R)·Rᵀ        (R [n][n]; rows of the site cut into n-wide slices, e.g. per head)
 * i.e. the site's tensor quantized in the rotated basis and handed back to unrotated weights — the
 * simulation ConQuR calibrates with. Its backward (straight-through Q, or the clipped STE) passes
 * dx = dz·Rᵀ with dz = (dy·R) masked, and accumulates in double
 *   dR += xᵀ·dz + dyᵀ·Q(x·R)
 * over every call (reset with rb_rotsite_zero_grad). */
#ifndef RB_ROTSITE_H
#define RB_ROTSITE_H

#include "model/rb_forward.h"
#include "quant/rb_qpreset.h"

typedef struct rb_rotsite {
    int n;                  /* order; the site's width must be a multiple of n */
    float *Rf;              /* [n][n] the rotation in float (rb_rotsite_set) */
    double *dR;             /* [n][n] accumulated gradient */
    const rb_quant_cfg *q;  /* quantization in the rotated basis (not owned; NULL = none) */
    int clipped;            /* 1: clipped STE */
    float *z, *qz;          /* [cap] scratch */
    float *acc;             /* [n][n] one call's product before the double accumulation */
    size_t cap;
} rb_rotsite;

/* Site of order n with rotation R (copied; NULL = identity) and quantizer q. RB_ENOMEM. */
int rb_rotsite_init(rb_rotsite *s, int n, const double *R, const rb_quant_cfg *q, int clipped, rb_error *err);
void rb_rotsite_free(rb_rotsite *s);
/* Replaces the rotation (R [n][n], copied to float). */
void rb_rotsite_set(rb_rotsite *s, const double *R);
void rb_rotsite_zero_grad(rb_rotsite *s);

/* The hook and its backward (ctx: rb_rotsite *; add with needs_input = 1). */
int rb_hook_rotsite(void *ctx, const rb_site_info *in, float *x, rb_error *err);
int rb_hook_rotsite_bwd(void *ctx, const rb_site_info *in, const float *x_in, float *dx, rb_error *err);

#endif

/* hadamard (QuaRot): random Hadamard R1 = diag(s)·H_dᵀ/√d with seeded signs, Hadamard R2 = H_dh/√dh
 * in every layer, online Hadamard R3 (Q/K) and R4 (down_proj input); with cross_head on, also QuaRot's
 * online Hadamard across heads before o_proj (off by default: SpinQuant's per-head R2 layout). */
#include <stdlib.h>

#include "methods/rb_method.h"

static const rb_method_option opts[] = {
    {"seed", "key", "0", "root seed; the R1 sign vector comes from stream rotation.r1"},
    {"r3", "key", "on", "online Hadamard on Q/K after RoPE (per head)"},
    {"r4", "key", "on", "online Hadamard on the down_proj input (fused into W_down)"},
    {"cross_head", "key", "off", "QuaRot's online Hadamard across heads on the o_proj input (W_o sees H_nh (x) H_dh)"},
    {NULL, NULL, NULL, NULL},
};

static int calibrate(const rb_method_ctx *ctx, rb_rotset *out, rb_error *err) {
    int rc = rb_method_init_set(ctx, "hadamard", 1, 1, out, err);
    if (rc) return rc;
    out->cross_head = ctx->cross_head > 0;
    int8_t *s = malloc((size_t)out->dim);
    if (!s) return rb_error_set(err, RB_ENOMEM, "hadamard: out of memory");
    rb_method_signs(ctx->seed, "rotation.r1", out->dim, s);
    rc = rb_rot_from_hadamard(out->dim, s, &out->r1, err);
    free(s);
    if (rc) return rb_error_prefix(err, "R1");
    for (int l = 0; l < out->n_layers && !rc; l++) rc = rb_rot_from_hadamard(out->head_dim, NULL, &out->r2[l], err);
    return rc ? rb_error_prefix(err, "R2") : 0;
}

const rb_method rb_method_hadamard = {
    .name = "hadamard",
    .status = "done",
    .description = "QuaRot: random Hadamard R1, Hadamard R2 per layer, online Hadamard R3/R4",
    .options = opts,
    .calibrate = calibrate};

/* hadamard (QuaRot): random Hadamard R1 = diag(s)·H_dᵀ/√d with seeded signs, Hadamard R2 = H_dh/√dh
 * in every layer, online Hadamard R3 (Q/K) and R4 (down_proj input), and QuaRot's online Hadamard
 * across heads before o_proj (cross_head, on by default as QuaRot publishes it: W_o sees the full
 * H_nh ⊗ H_dh and the o_proj input is then quantized per token over the whole row, quant.a.o_proj
 * auto). A head count with no Hadamard matrix (e.g. 6) falls back to off, with a log line, unless
 * cross_head was asked for explicitly. */
#include <stdlib.h>

#include "core/rb_log.h"
#include "methods/rb_method.h"
#include "rotate/rb_had_plan.h"

static const rb_method_option opts[] = {
    {"seed", "key", "0", "root seed; the R1 sign vector comes from stream rotation.r1"},
    {"r3", "key", "on", "online Hadamard on Q/K after RoPE (per head)"},
    {"r4", "key", "on", "online Hadamard on the down_proj input (fused into W_down)"},
    {"cross_head", "key", "on",
     "QuaRot's online Hadamard across heads on the o_proj input (W_o sees H_nh (x) H_dh; QuaRot's published setting); "
     "off: SpinQuant's per-head R2 layout. With the default, a head count without a Hadamard matrix falls back to off"},
    {NULL, NULL, NULL, NULL},
};

static int calibrate(const rb_method_ctx *ctx, rb_rotset *out, rb_error *err) {
    int rc = rb_method_init_set(ctx, "hadamard", 1, 1, out, err);
    if (rc) return rc;
    out->cross_head = ctx->cross_head != 0;
    if (ctx->cross_head < 0) {
        rb_had_plan hp;
        rb_had_plan_make(ctx->cfg->n_heads, &hp);
        if (hp.kind == RB_HAD_NONE) {
            rb_info("hadamard: no Hadamard matrix of order %d (the head count): cross-head transform off",
                    ctx->cfg->n_heads);
            out->cross_head = 0;
        }
    }
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
    .description = "QuaRot: random Hadamard R1, Hadamard R2 per layer, online Hadamard R3/R4 and across heads before "
                   "o_proj",
    .options = opts,
    .calibrate = calibrate};

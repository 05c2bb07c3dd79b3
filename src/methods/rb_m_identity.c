/* identity: no rotation (the unrotated baseline; norms are still folded). */
#include "methods/rb_method.h"

static const rb_method_option opts[] = {
    {"r3", "key", "off", "online Hadamard on Q/K after RoPE (per head)"},
    {"r4", "key", "off", "online Hadamard on the down_proj input (fused into W_down)"},
    {NULL, NULL, NULL, NULL},
};

static int calibrate(const rb_method_ctx *ctx, rb_rotset *out, rb_error *err) {
    return rb_method_init_set(ctx, "identity", 0, 0, out, err);
}

const rb_method rb_method_identity = {
    .name = "identity", .status = "done", .description = "no rotation: R1 = R2 = I (baseline)", .options = opts,
    .calibrate = calibrate};

/* identity: no rotation. By default the checkpoint's weights as they are (QuaRot's unrotated
 * baseline: rb_method_is_noop); fold_norms, R3 or R4 take the fused path with R1 = R2 = I, which
 * folds the RMSNorm gains into the next linears as every rotating method does — the control that
 * separates a rotation's effect from the fold's. */
#include "methods/rb_method.h"

static const rb_method_option opts[] = {
    {"r3", "key", "off", "online Hadamard on Q/K after RoPE (per head)"},
    {"r4", "key", "off", "online Hadamard on the down_proj input (fused into W_down)"},
    {"fold_norms", "bool", "off",
     "fold the RMSNorm gains into the next linears as rotating methods do (off: the checkpoint's weights as they "
     "are, QuaRot's baseline; on: the fused model with R1 = R2 = I, the control for the fold alone; R3/R4 on "
     "imply it)"},
    {NULL, NULL, NULL, NULL},
};

static int calibrate(const rb_method_ctx *ctx, rb_rotset *out, rb_error *err) {
    return rb_method_init_set(ctx, "identity", 0, 0, out, err);
}

/* "": the unrotated model; fold_norms=on: the fused one with R1 = R2 = I (the pinned numbers that
 * identity had before fold_norms existed, when ppl --rotation identity always folded). */
static const char *const test_variants[] = {"", "fold_norms=on", NULL};

const rb_method rb_method_identity = {
    .name = "identity", .status = "done", .description = "no rotation: R1 = R2 = I (baseline)", .options = opts,
    .calibrate = calibrate, .test_variants = test_variants};

/* random: Haar-random orthogonal R1 (d×d) and R2 per layer (QuaRot/SpinQuant "random" mode),
 * with online Hadamard R3/R4. */
#include <stdio.h>
#include <stdlib.h>

#include "core/rb_file.h"
#include "methods/rb_method.h"

static const rb_method_option opts[] = {
    {"seed", "key", "0", "root seed; R1 from stream rotation.r1, R2 of layer l from rotation.r2.<l>"},
    {"r3", "key", "on", "online Hadamard on Q/K after RoPE (per head)"},
    {"r4", "key", "on", "online Hadamard on the down_proj input (fused into W_down)"},
    {NULL, NULL, NULL, NULL},
};

static int random_rot(uint64_t seed, const char *stream, int n, rb_rot **out, rb_error *err) {
    double *Q = rb_alloc((size_t)n * n * sizeof(double));
    if (!Q) return rb_error_set(err, RB_ENOMEM, "random rotation: out of memory");
    int rc = rb_method_init_rot(RB_INIT_RANDOM, seed, stream, 0, n, Q, err);
    if (!rc) rc = rb_rot_from_dense(Q, n, out, err);
    rb_free(Q);
    return rc;
}

static int calibrate(const rb_method_ctx *ctx, rb_rotset *out, rb_error *err) {
    int rc = rb_method_init_set(ctx, "random", 1, 1, out, err);
    if (rc) return rc;
    if ((rc = random_rot(ctx->seed, "rotation.r1", out->dim, &out->r1, err))) return rc;
    for (int l = 0; l < out->n_layers; l++) {
        char name[48];
        snprintf(name, sizeof name, "rotation.r2.%d", l);
        if ((rc = random_rot(ctx->seed, name, out->head_dim, &out->r2[l], err))) return rc;
    }
    return 0;
}

const rb_method rb_method_random = {
    .name = "random",
    .status = "done",
    .description = "random orthogonal R1 and per-layer R2 (QR of a Gaussian, sign-fixed); "
                                    "Hadamard R3/R4 online",
    .options = opts,
    .calibrate = calibrate};

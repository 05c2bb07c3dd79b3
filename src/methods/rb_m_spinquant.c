/* spinquant (METHODS §3): R1 and every R2 learned by Cayley SGD on the next-token cross-entropy of the
 * quantized network, through the backward engine (rb_rotgrad: the fused model with the rotations of
 * the current iterate, activations and KV fake-quantized with a straight-through estimator, weights
 * RTN-with-STE or 16-bit).
 *
 * Each step (rb_rottrain.h): the loss and dL/dR1, dL/dR2 on `windows` calibration windows (taken in
 * order, wrapping), one Cayley step per matrix (rb_cayley_sgd_step, SpinQuant's optimizer) with this
 * step's learning rate (cosine or constant schedule), then Newton–Schulz re-orthonormalization
 * (rb_orth_restore) so every iterate the next step fuses is orthogonal to 1e-12 — SpinQuant itself lets the 5-step
 * fixed-point drift of up to ~1e-4 stand between its QR retractions; restoring it changes the
 * iterate by that drift only, and makes every rotation this method hands out orthogonal to 1e-10. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_log.h"
#include "core/rb_signal.h"
#include "methods/rb_method.h"
#include "methods/rb_rotgrad.h"
#include "methods/rb_rottrain.h"

extern const rb_method rb_method_spinquant;

static const rb_method_option opts[] = {
    {"seed", "key", "0", "root seed: R1 init from stream rotation.r1, R2 of layer l from rotation.r2.<l> (random "
                         "Hadamard signs); QR retractions of Cayley SGD from rotation.spinquant.cayley"},
    {"r3", "key", "on (variant had)", "online Hadamard on Q/K after RoPE (per head), active during training"},
    {"r4", "key", "on (variant had)", "online Hadamard on the down_proj input (fused into W_down), active during training"},
    {"cross_head", "key", "off",
     "QuaRot's cross-head Hadamard on the o_proj input (not in SpinQuant; active during training when on)"},
    {"variant", "had|no_had", "had",
     "SpinQuant_had: R3/R4 online Hadamards (for W4A4); no_had: R1/R2 only (for W4A8); rotation.r3/r4 override"},
    RB_ROTTRAIN_OPTION_ROWS,
    {"init", "hadamard|random|identity", "hadamard", "start: random Hadamard R1 and R2 (SpinQuant); Haar-random; identity"},
    {NULL, NULL, NULL, NULL},
};

typedef struct sq_state {
    const rb_method_ctx *ctx;
    const rb_rottrain_cfg *o;
    const rb_rotset *like;        /* online flags of the result */
    int d, hd, L;
    double **P, **G;              /* [1 + L]: R1, then R2 of each layer (iterate; gradients = g's buffers) */
    int *order, *group;
    int32_t *ids;                 /* [windows][seqlen] this step's windows */
    rb_rotgrad g;
} sq_state;

static void state_free(sq_state *s) {
    for (int i = 0; s->P && i <= s->L; i++) free(s->P[i]);
    free(s->P);
    free(s->G);
    free(s->order);
    free(s->group);
    free(s->ids);
    if (s->g.dR1) rb_rotgrad_free(&s->g);
}

static int state_init(sq_state *s, const rb_llama_config *c, const rb_rottrain_cfg *o, rb_error *err) {
    memset(s, 0, sizeof *s);
    s->d = c->dim, s->hd = c->head_dim, s->L = c->n_layers;
    int n = s->L + 1;
    s->P = calloc((size_t)n, sizeof *s->P);
    s->G = calloc((size_t)n, sizeof *s->G);
    s->order = malloc(sizeof(int) * (size_t)n);
    s->group = malloc(sizeof(int) * (size_t)n);
    s->ids = malloc(sizeof(int32_t) * (size_t)o->run.windows * o->seqlen);
    int ok = s->P && s->G && s->order && s->group && s->ids;
    for (int i = 0; ok && i < n; i++) {
        s->order[i] = i ? s->hd : s->d, s->group[i] = i > 0;
        ok = (s->P[i] = malloc(sizeof(double) * s->order[i] * s->order[i])) != NULL;
    }
    if (!ok) return rb_error_set(err, RB_ENOMEM, "spinquant: out of memory");
    int rc = rb_rotgrad_init(&s->g, c, err);
    if (rc) return rc;
    s->G[0] = s->g.dR1;
    for (int l = 0; l < s->L; l++) s->G[l + 1] = s->g.dR2[l];
    return 0;
}

/* The set of the current iterate (every matrix orthogonality-checked) with like's online flags. */
static int iterate_set(const sq_state *s, const rb_rotset *like, rb_rotset *cur, rb_error *err) {
    int rc = rb_rotset_init(cur, like->method, like->dim, like->head_dim, like->hidden_dim, like->n_layers, err);
    if (rc) return rc;
    cur->r3 = like->r3, cur->r4 = like->r4, cur->emb_center = like->emb_center, cur->cross_head = like->cross_head;
    rc = rb_rot_from_dense(s->P[0], s->d, &cur->r1, err);
    for (int l = 0; !rc && l < s->L; l++) rc = rb_rot_from_dense(s->P[l + 1], s->hd, &cur->r2[l], err);
    if (rc) rb_rotset_free(cur);
    return rc;
}

/* rb_rottrain eval: loss and gradients at the current iterate on n ≤ windows calibration windows from
 * index w0 (wrapping). */
static int eval_at(void *vs, long w0, int n, double *loss, rb_error *err) {
    sq_state *s = vs;
    const rb_method_ctx *ctx = s->ctx;
    int T = s->o->seqlen;
    rb_rottrain_windows(ctx, w0, n, T, s->ids);
    rb_rotset cur;
    int rc = iterate_set(s, s->like, &cur, err);
    if (rc) return rc;
    rc = rb_rotgrad_run(ctx->src, ctx->cfg, &cur, &s->o->ro, s->ids, n, T, &s->g, err);
    rb_rotset_free(&cur);
    if (!rc && !isfinite(s->g.loss))
        rc = rb_error_set(err, RB_ENUMERIC, "spinquant: loss became %g at windows %ld.. (lower rotation.options.lr)",
                          s->g.loss, w0);
    *loss = s->g.loss;
    return rc;
}

static void param_name(void *vs, int i, char *buf, size_t cap) {
    (void)vs;
    if (i == 0) snprintf(buf, cap, "R1");
    else snprintf(buf, cap, "R2 of layer %d", i - 1);
}

static int calibrate(const rb_method_ctx *ctx, rb_rotset *out, rb_error *err) {
    const rb_llama_config *c = ctx->cfg;
    rb_rottrain_cfg o;
    int variant, rc;
    if ((rc = rb_method_opt_enum(ctx, &rb_method_spinquant, "variant", &variant, err)) ||
        (rc = rb_rottrain_read(ctx, &rb_method_spinquant, &o, err)))
        return rc;
    int had = variant == 0;
    if ((rc = rb_method_init_set(ctx, "spinquant", had, had, out, err))) return rc;
    out->cross_head = ctx->cross_head > 0;
    sq_state s;
    if ((rc = state_init(&s, c, &o, err))) goto done;
    s.ctx = ctx, s.o = &o, s.like = out;
    rc = rb_method_init_rot(o.init, ctx->seed, "rotation.r1", 1, c->dim, s.P[0], err);
    for (int l = 0; !rc && l < c->n_layers; l++) {
        char name[48];
        snprintf(name, sizeof name, "rotation.r2.%d", l);
        rc = rb_method_init_rot(o.init, ctx->seed, name, 1, c->head_dim, s.P[l + 1], err);
    }
    if (rc) goto done;
    rb_info("spinquant (%s): %d steps x %d windows of %d tokens, lr %g (%s), weights %s, STE %s, r3 %s, r4 %s",
            had ? "had" : "no_had", o.run.steps, o.run.windows, o.seqlen, o.run.lr,
            o.run.schedule == 0 ? "cosine" : "constant", o.wmode,
            o.ste ? "clipped" : "plain", out->r3 ? "on" : "off", out->r4 ? "on" : "off");
    rb_rottrain tr = {c->n_layers + 1, s.P, s.G, s.order, s.group, eval_at, param_name, &s};
    if ((rc = rb_rottrain_run(&tr, &o.run, ctx->trace, ctx->seed, err))) goto done;
    if ((rc = rb_rot_from_dense(s.P[0], c->dim, &out->r1, err))) goto done;
    for (int l = 0; !rc && l < c->n_layers; l++) rc = rb_rot_from_dense(s.P[l + 1], c->head_dim, &out->r2[l], err);
done:
    state_free(&s);
    return rc;
}

/* Short runs: pinned numbers do not depend on how far the optimizer got. */
static const char *const test_variants[] = {"steps=2,windows=2", NULL};

static const rb_method_figure figures[] = {
    {"spinquant_loss", "spinquant", "step", "loss", "SpinQuant: training loss vs Cayley SGD step", "optimizer step",
     "loss / loss at initialization", 1},
    {NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0},
};

const rb_method rb_method_spinquant = {
    .name = "spinquant",
    .status = "done",
    .description = "SpinQuant: R1 and per-layer R2 learned by Cayley SGD on the quantized model's next-token loss "
                   "(backward engine, straight-through quantizers); online Hadamard R3/R4 (variant had) or none (no_had)",
    .options = opts,
    .calibrate = calibrate,
    .calib = "",
    .test_variants = test_variants,
    .figures = figures};

/* spinquant (METHODS §3): R1 and every R2 learned by Cayley SGD on the next-token cross-entropy of the
 * quantized network, through the backward engine (rb_rotgrad: the fused model with the rotations of
 * the current iterate, activations and KV fake-quantized with a straight-through estimator, weights
 * RTN-with-STE or 16-bit).
 *
 * Each step: the loss and dL/dR1, dL/dR2 on `windows` calibration windows (taken in order, wrapping),
 * one Cayley step per matrix (rb_cayley_sgd_step, SpinQuant's optimizer) with this step's learning
 * rate (cosine or constant schedule), then Newton–Schulz re-orthonormalization (rb_orth_restore) so
 * every iterate the next step fuses is orthogonal to 1e-12 — SpinQuant itself lets the 5-step
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
#include "rotate/rb_orth.h"

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
    {"steps", "int", "100", "Cayley SGD steps (SpinQuant: 100)"},
    {"lr", "real", "1.5", "Cayley SGD learning rate (SpinQuant: 1.5); each step is alpha = min(lr_t, 1/||W||_1)"},
    {"windows", "int", "8", "calibration windows per step (SpinQuant: 8 GPUs x batch 1), taken in order, wrapping"},
    {"seqlen", "int", "0", "tokens per training window: the first seqlen of each calibration window (0: all)"},
    {"eval_windows", "int", "32",
     "the training objective on the first eval_windows calibration windows (all at seqlen) before training and for the "
     "result, logged to trace spinquant_eval (0: off); at most the calibration windows"},
    {"schedule", "cosine|constant", "cosine", "learning rate over steps: lr/2*(1+cos(pi*t/steps)) (SpinQuant), or lr"},
    {"momentum", "real", "0", "Cayley SGD momentum beta (SpinQuant: 0)"},
    {"train_quant", "auto|rtn|w16", "auto",
     "weights during training: rtn = the run's weight quantizer by RTN with a straight-through estimator; w16 = "
     "16-bit weights (SpinQuant's recipe before GPTQ); auto = w16 when the run's weights use GPTQ, rtn otherwise. "
     "Activations and KV: the run's quantizers, straight-through"},
    {"ste", "plain|clipped", "plain",
     "activation/KV straight-through estimator: plain (SpinQuant) or clipped (zero gradient where the quantizer "
     "clamped)"},
    {"init", "hadamard|random|identity", "hadamard", "start: random Hadamard R1 and R2 (SpinQuant); Haar-random; identity"},
    {NULL, NULL, NULL, NULL},
};

typedef struct sq_opts {
    int variant, steps, windows, seqlen, schedule, train_quant, ste, init, eval_windows;
    double lr, momentum;
} sq_opts;

static int read_opts(const rb_method_ctx *ctx, sq_opts *o, rb_error *err) {
    const rb_method *m = &rb_method_spinquant;
    int rc;
    if ((rc = rb_method_opt_enum(ctx, m, "variant", &o->variant, err)) ||
        (rc = rb_method_opt_int(ctx, m, "steps", 0, 10000000, &o->steps, err)) ||
        (rc = rb_method_opt_real(ctx, m, "lr", 1e-12, 1e12, &o->lr, err)) ||
        (rc = rb_method_opt_int(ctx, m, "windows", 1, 1 << 20, &o->windows, err)) ||
        (rc = rb_method_opt_int(ctx, m, "seqlen", 0, 1 << 24, &o->seqlen, err)) ||
        (rc = rb_method_opt_int(ctx, m, "eval_windows", 0, 1 << 20, &o->eval_windows, err)) ||
        (rc = rb_method_opt_enum(ctx, m, "schedule", &o->schedule, err)) ||
        (rc = rb_method_opt_real(ctx, m, "momentum", 0.0, 0.999999, &o->momentum, err)) ||
        (rc = rb_method_opt_enum(ctx, m, "train_quant", &o->train_quant, err)) ||
        (rc = rb_method_opt_enum(ctx, m, "ste", &o->ste, err)) || (rc = rb_method_opt_enum(ctx, m, "init", &o->init, err)))
        return rc;
    if (!ctx->calib || ctx->calib_n < 1)
        return rb_error_set(err, RB_EINVAL,
                            "spinquant: training needs calibration windows (data.calib in a config, --calib with "
                            "rotbench ppl)");
    if (ctx->calib_T < 2) return rb_error_set(err, RB_EINVAL, "spinquant: calibration windows of %d tokens", ctx->calib_T);
    if (o->seqlen == 1 || o->seqlen > ctx->calib_T)
        return rb_error_set(err, RB_EINVAL, "rotation.options.seqlen: %d, expected 0 or 2..%d (the calibration window)",
                            o->seqlen, ctx->calib_T);
    if (o->seqlen == 0) o->seqlen = ctx->calib_T;
    if (o->eval_windows > ctx->calib_n) o->eval_windows = ctx->calib_n;
    return 0;
}

typedef struct sq_state {
    int d, hd, L;
    double *R1, **R2;             /* iterate */
    double *E, *T;                /* [max(d,hd)]² scratch */
    rb_cayley_sgd c1, *c2;
    int32_t *ids;                 /* [windows][seqlen] this step's windows */
    rb_rotgrad g;
} sq_state;

static void state_free(sq_state *s) {
    for (int l = 0; s->R2 && l < s->L; l++) free(s->R2[l]);
    for (int l = 0; s->c2 && l < s->L; l++) rb_cayley_sgd_free(&s->c2[l]);
    free(s->R2);
    free(s->c2);
    free(s->R1);
    free(s->E);
    free(s->T);
    free(s->ids);
    rb_cayley_sgd_free(&s->c1);
    if (s->g.dR1) rb_rotgrad_free(&s->g);
}

static int state_init(sq_state *s, const rb_llama_config *c, const sq_opts *o, rb_error *err) {
    memset(s, 0, sizeof *s);
    s->d = c->dim, s->hd = c->head_dim, s->L = c->n_layers;
    size_t n = (size_t)(s->d > s->hd ? s->d : s->hd);
    s->R1 = malloc(sizeof(double) * s->d * s->d);
    s->R2 = calloc((size_t)s->L, sizeof *s->R2);
    s->c2 = calloc((size_t)s->L, sizeof *s->c2);
    s->E = malloc(sizeof(double) * n * n);
    s->T = malloc(sizeof(double) * n * n);
    s->ids = malloc(sizeof(int32_t) * (size_t)o->windows * o->seqlen);
    int ok = s->R1 && s->R2 && s->c2 && s->E && s->T && s->ids;
    for (int l = 0; ok && l < s->L; l++) ok = (s->R2[l] = malloc(sizeof(double) * s->hd * s->hd)) != NULL;
    if (!ok) return rb_error_set(err, RB_ENOMEM, "spinquant: out of memory");
    int rc = rb_cayley_sgd_init(&s->c1, s->d, o->momentum, err);
    for (int l = 0; !rc && l < s->L; l++) rc = rb_cayley_sgd_init(&s->c2[l], s->hd, o->momentum, err);
    if (!rc) rc = rb_rotgrad_init(&s->g, c, err);
    return rc;
}

/* The set of the current iterate (every matrix orthogonality-checked) with out's online flags. */
static int iterate_set(const sq_state *s, const rb_rotset *like, rb_rotset *cur, rb_error *err) {
    int rc = rb_rotset_init(cur, like->method, like->dim, like->head_dim, like->hidden_dim, like->n_layers, err);
    if (rc) return rc;
    cur->r3 = like->r3, cur->r4 = like->r4, cur->emb_center = like->emb_center, cur->cross_head = like->cross_head;
    rc = rb_rot_from_dense(s->R1, s->d, &cur->r1, err);
    for (int l = 0; !rc && l < s->L; l++) rc = rb_rot_from_dense(s->R2[l], s->hd, &cur->r2[l], err);
    if (rc) rb_rotset_free(cur);
    return rc;
}

/* Loss and gradients at the current iterate on n ≤ windows calibration windows from index w0 (wrapping). */
static int eval_at(const rb_method_ctx *ctx, sq_state *s, const sq_opts *o, const rb_rotset *like,
                   const rb_rotgrad_opts *ro, long w0, int n, rb_error *err) {
    for (int i = 0; i < n; i++) {
        long w = (w0 + i) % ctx->calib_n;
        memcpy(s->ids + (size_t)i * o->seqlen, ctx->calib + (size_t)w * ctx->calib_T, sizeof(int32_t) * o->seqlen);
    }
    rb_rotset cur;
    int rc = iterate_set(s, like, &cur, err);
    if (rc) return rc;
    rc = rb_rotgrad_run(ctx->src, ctx->cfg, &cur, ro, s->ids, n, o->seqlen, &s->g, err);
    rb_rotset_free(&cur);
    if (!rc && !isfinite(s->g.loss))
        rc = rb_error_set(err, RB_ENUMERIC, "spinquant: loss became %g at windows %ld.. (lower rotation.options.lr)",
                          s->g.loss, w0);
    return rc;
}

/* Mean loss over the first eval_windows calibration windows, in chunks of `windows`. */
static int eval_loss(const rb_method_ctx *ctx, sq_state *s, const sq_opts *o, const rb_rotset *like,
                     const rb_rotgrad_opts *ro, double *loss, rb_error *err) {
    double sum = 0;
    for (int w0 = 0; w0 < o->eval_windows; w0 += o->windows) {
        int n = o->eval_windows - w0 < o->windows ? o->eval_windows - w0 : o->windows;
        int rc = eval_at(ctx, s, o, like, ro, w0, n, err);
        if (rc) return rc;
        sum += s->g.loss * n;
    }
    *loss = sum / o->eval_windows;
    return 0;
}

static double fro(const double *a, size_t n) {
    double t = 0;
    for (size_t i = 0; i < n; i++) t += a[i] * a[i];
    return sqrt(t);
}

/* Trace /calibration/spinquant, one row per step: step; loss (mean cross-entropy of that step's
 * windows at the iterate before its update); lr (this step's scheduled rate); alpha, alpha_r2 (the
 * Cayley step actually taken: min(lr, 1/‖W‖₁), R1 and mean over the R2); orth_drift (max over the
 * matrices before re-orthonormalization), orth_err (after); grad_r1, grad_r2 (Frobenius norms);
 * seconds since the start. Row `steps`: the result's loss on step 0's windows (compare row 0).
 * Trace /calibration/spinquant_eval (eval_windows > 0): rows step 0 and step `steps`, the mean loss
 * over the first eval_windows calibration windows at the initialization and at the result — the same
 * windows, so the pair is the training effect without the window-to-window spread of the steps. */
static int train(const rb_method_ctx *ctx, const sq_opts *o, const rb_rotgrad_opts *ro, const rb_rotset *like,
                 sq_state *s, rb_error *err) {
    rb_trace_table *tab = NULL;
    int rc = rb_trace_table_new(ctx->trace, "spinquant",
                                "step,loss,lr,alpha,alpha_r2,orth_drift,orth_err,grad_r1,grad_r2,seconds", &tab, err);
    if (rc) return rc;
    rb_trace_table *ev = NULL;
    double e0 = NAN, e1 = NAN;
    if (o->eval_windows > 0) {
        if ((rc = rb_trace_table_new(ctx->trace, "spinquant_eval", "step,loss,windows", &ev, err)) ||
            (rc = eval_loss(ctx, s, o, like, ro, &e0, err)))
            return rc;
        double row[] = {0, e0, o->eval_windows};
        if ((rc = rb_trace_row(ev, row, err))) return rc;
    }
    rb_rng rng;
    rb_rng_seed(&rng, ctx->seed, "rotation.spinquant.cayley");
    double t0 = rb_now(), loss0 = NAN;
    int every = o->steps >= 10 ? o->steps / 10 : 1;
    for (int it = 0; it <= o->steps; it++) {
        int last = it == o->steps;
        if ((rc = eval_at(ctx, s, o, like, ro, last ? 0 : (long)it * o->windows, o->windows, err))) return rc;
        if (it == 0) loss0 = s->g.loss;
        double lr = o->schedule == 0 ? 0.5 * o->lr * (1.0 + cos(M_PI * it / (o->steps > 0 ? o->steps : 1))) : o->lr;
        double st[4] = {0, 0, 0, 0}, g2 = 0;
        for (int l = 0; l < s->L; l++) g2 += pow(fro(s->g.dR2[l], (size_t)s->hd * s->hd), 2);
        double g1 = fro(s->g.dR1, (size_t)s->d * s->d);
        if (!last) {
            double drift, after;
            if ((rc = rb_cayley_sgd_step(&s->c1, s->R1, s->g.dR1, lr, &rng, err)) ||
                (rc = rb_orth_restore(s->R1, s->d, s->E, s->T, &drift, &after, err)))
                return rb_error_prefix(err, "spinquant: R1");
            st[0] = s->c1.last_alpha, st[2] = drift, st[3] = after;
            for (int l = 0; l < s->L; l++) {
                if ((rc = rb_cayley_sgd_step(&s->c2[l], s->R2[l], s->g.dR2[l], lr, &rng, err)) ||
                    (rc = rb_orth_restore(s->R2[l], s->hd, s->E, s->T, &drift, &after, err)))
                    return rb_error_prefix(err, "spinquant: R2 of layer %d", l);
                st[1] += s->c2[l].last_alpha / s->L;
                st[2] = fmax(st[2], drift), st[3] = fmax(st[3], after);
            }
        }
        double row[] = {it, s->g.loss, last ? 0 : lr, st[0], st[1], st[2], st[3], g1, sqrt(g2), rb_now() - t0};
        if ((rc = rb_trace_row(tab, row, err))) return rc;
        if (last)
            rb_info("spinquant: result on step 0's windows: loss %.6g (initialization %.6g, %.4f of it), %.1f s",
                    s->g.loss, loss0, s->g.loss / loss0, rb_now() - t0);
        else if (it % every == 0)
            rb_info("spinquant: step %d/%d loss %.6g lr %.3g alpha %.3g |dR1| %.3g, %.1f s", it, o->steps, s->g.loss, lr,
                    st[0], g1, rb_now() - t0);
        if (rb_interrupted())
            return rb_error_set(err, RB_EINTERRUPTED, "spinquant: interrupted at step %d of %d", it, o->steps);
    }
    if (o->eval_windows > 0) {
        if ((rc = eval_loss(ctx, s, o, like, ro, &e1, err))) return rc;
        double row[] = {o->steps, e1, o->eval_windows};
        if ((rc = rb_trace_row(ev, row, err))) return rc;
        rb_info("spinquant: training objective on the first %d calibration windows: %.6g at the initialization, "
                "%.6g for the result (%.4f of it)",
                o->eval_windows, e0, e1, e1 / e0);
    }
    return 0;
}

static int calibrate(const rb_method_ctx *ctx, rb_rotset *out, rb_error *err) {
    const rb_llama_config *c = ctx->cfg;
    sq_opts o;
    int rc = read_opts(ctx, &o, err);
    if (rc) return rc;
    int had = o.variant == 0;
    if ((rc = rb_method_init_set(ctx, "spinquant", had, had, out, err))) return rc;
    out->cross_head = ctx->cross_head > 0;
    /* training quantization: the run's activations/KV; weights per train_quant */
    rb_quant_cfg tq;
    int quant = ctx->quant && rb_quant_cfg_active(ctx->quant);
    const char *wmode = "none";
    if (quant) {
        tq = *ctx->quant;
        int w16 = o.train_quant == 2 || (o.train_quant == 0 && ctx->quant->w_algo == RB_WALGO_GPTQ);
        if (w16) tq.w.bits = RB_QBITS_OFF;
        wmode = tq.w.bits >= RB_QBITS_OFF ? "16-bit" : "RTN + STE";
    } else {
        rb_warn("spinquant: no quantization configured: the FP loss does not depend on the rotations, which stay at "
                "their initialization");
    }
    rb_rotgrad_opts ro = {.quant = quant ? &tq : NULL, .clipped_ste = o.ste == 1};
    sq_state s;
    if ((rc = state_init(&s, c, &o, err))) goto done;
    rc = rb_method_init_rot(o.init, ctx->seed, "rotation.r1", 1, c->dim, s.R1, err);
    for (int l = 0; !rc && l < c->n_layers; l++) {
        char name[48];
        snprintf(name, sizeof name, "rotation.r2.%d", l);
        rc = rb_method_init_rot(o.init, ctx->seed, name, 1, c->head_dim, s.R2[l], err);
    }
    if (rc) goto done;
    rb_info("spinquant (%s): %d steps x %d windows of %d tokens, lr %g (%s), weights %s, STE %s, r3 %s, r4 %s",
            had ? "had" : "no_had", o.steps, o.windows, o.seqlen, o.lr, o.schedule == 0 ? "cosine" : "constant", wmode,
            o.ste ? "clipped" : "plain", out->r3 ? "on" : "off", out->r4 ? "on" : "off");
    if ((rc = train(ctx, &o, &ro, out, &s, err))) goto done;
    if ((rc = rb_rot_from_dense(s.R1, c->dim, &out->r1, err))) goto done;
    for (int l = 0; !rc && l < c->n_layers; l++) rc = rb_rot_from_dense(s.R2[l], c->head_dim, &out->r2[l], err);
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
    .test_variants = test_variants,
    .figures = figures};

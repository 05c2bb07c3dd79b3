/* optrot (METHODS §4): R1 and per-layer R2 learned by full-batch Cayley SGD (§3) on the OptRot
 * proxy Σ W̃⁴ of the fused quantized weights (rb_optrot.h), data-free; with `plus` on, OptRot⁺
 * weights every column by the squared rotated Hessian diagonal measured on the calibration
 * windows. R3/R4 are the fixed online Hadamards (R4 enters the down_proj term as a constant).
 *
 * Flow: prepare the model (rb_fused with R1 = R2 = I, the requested R4, emb_center; that is the
 * W of the loss) → (plus) one fp32 forward of the calibration windows for the Hessians → init
 * R1/R2 → `steps` Cayley steps, each re-orthonormalized → the evaluated iterate of lowest loss as
 * dense R1/R2 of the produced set ("optrot", or "optrot+" with plus on). Per-step log: trace table
 * "optrot" (columns at optimize()). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_rng.h"
#include "core/rb_signal.h"
#include "rotate/rb_fuse.h"
#include "methods/rb_method.h"
#include "methods/rb_optrot.h"
#include "rotate/rb_orth.h"

extern const rb_method rb_method_optrot;

static const rb_method_option opts[] = {
    {"seed", "key", "0", "root seed: R1 init from stream rotation.r1, R2 of layer l from rotation.r2.<l> (random-Hadamard "
                         "signs, or the Haar draw with init random); QR retractions of Cayley SGD from "
                         "rotation.optrot.cayley"},
    {"r3", "key", "on", "online Hadamard on Q/K after RoPE (per head); not part of the loss"},
    {"r4", "key", "on", "online Hadamard on the down_proj input, fused into W_down: the down term uses W_down·H4"},
    {"cross_head", "key", "off", "QuaRot's cross-head Hadamard on the o_proj input (then part of the W_o term)"},
    {"steps", "int", "1000", "Cayley SGD steps (full batch; paper: 1000); 0 returns the initialization"},
    {"lr", "real", "1",
     "Cayley SGD learning rate, the same for R1 and the R2; each step is alpha = min(lr, 1/||W||_1) of the skew "
     "gradient W (METHODS 3). Paper: 1 for OptRot, 1e5 for OptRot+ from a sweep over its own loss scaling; here "
     "OptRot+ weights by the per-token mean x^T x (about 1 on the RMS-normalized q/k/v/gate/up inputs), so its loss "
     "has the OptRot scale and keeps the default 1"},
    {"init", "hadamard|random|identity", "hadamard",
     "start: random Hadamard R1 (seeded signs as method hadamard) and R2 (see r2_signs); Haar-random; identity"},
    {"r2_signs", "random|none", "random",
     "with init hadamard: R2 of layer l starts as a random Hadamard (signs from stream rotation.r2.<l>, as SpinQuant "
     "and METHODS 4.2), or the plain Hadamard H/sqrt(d_h) (none: the start before issue 10)"},
    {"train_r2", "bool", "on", "learn the per-layer R2 (off: R2 stays at its initialization)"},
    {"normalize", "bool", "off",
     "per-matrix scale-free terms: sum W^4 / ||W||_F^4 (OptRot+: also / (tr H/n)^2)"},
    {"plus", "bool", "off",
     "OptRot+: sum_ij W_ij^4 * D_j^2, D = diag(R^T H R) the rotated Hessian diagonal of the linear's input, "
     "H from an fp32 forward of the calibration windows (data.calib required); rotation set named optrot+"},
    {"cache_mib", "int", "1024",
     "prepared layers kept in memory up to this many MiB (the rest re-read and re-prepared every step)"},
    {NULL, NULL, NULL, NULL},
};


typedef struct run_opts {
    int steps, init, r2_plain, train_r2, normalize, plus, cache_mib;
    double lr;
} run_opts;

static int read_opts(const rb_method_ctx *ctx, run_opts *o, rb_error *err) {
    const rb_method *m = &rb_method_optrot;
    int rc;
    if ((rc = rb_method_opt_int(ctx, m, "steps", 0, 10000000, &o->steps, err)) ||
        (rc = rb_method_opt_real(ctx, m, "lr", 1e-12, 1e12, &o->lr, err)) ||
        (rc = rb_method_opt_enum(ctx, m, "init", &o->init, err)) ||
        (rc = rb_method_opt_enum(ctx, m, "r2_signs", &o->r2_plain, err)) ||
        (rc = rb_method_opt_bool(ctx, m, "train_r2", &o->train_r2, err)) ||
        (rc = rb_method_opt_bool(ctx, m, "normalize", &o->normalize, err)) ||
        (rc = rb_method_opt_bool(ctx, m, "plus", &o->plus, err)) ||
        (rc = rb_method_opt_int(ctx, m, "cache_mib", 0, 1 << 30, &o->cache_mib, err)))
        return rc;
    if (o->plus && (!ctx->calib || ctx->calib_n < 1 || ctx->calib_T < 1))
        return rb_error_set(err, RB_EINVAL,
                            "rotation.options.plus: OptRot+ needs calibration windows to estimate the Hessians "
                            "(set data.calib)");
    return 0;
}

/* Everything the optimization owns. */
typedef struct state {
    int d, hd, L;
    double *R1, *G1, *E, *T;   /* [d][d] each */
    double *B1;                /* [d][d] best R1 seen */
    double **R2, **G2, **B2;   /* [L] of [hd][hd]: R2, its gradient, best R2 seen */
    rb_cayley_sgd c1, *c2;     /* optimizers of R1 and of each R2 */
} state;

static void state_free(state *s) {
    rb_free(s->R1), rb_free(s->G1), rb_free(s->E), rb_free(s->T), rb_free(s->B1);
    for (int l = 0; l < s->L; l++) {
        if (s->R2) rb_free(s->R2[l]);
        if (s->G2) rb_free(s->G2[l]);
        if (s->B2) rb_free(s->B2[l]);
        if (s->c2) rb_cayley_sgd_free(&s->c2[l]);
    }
    free(s->R2), free(s->G2), free(s->B2), free(s->c2);
    rb_cayley_sgd_free(&s->c1);
}

static int state_init(state *s, const rb_llama_config *c, rb_error *err) {
    memset(s, 0, sizeof *s);
    s->d = c->dim, s->hd = c->head_dim, s->L = c->n_layers;
    size_t dd = (size_t)s->d * s->d * sizeof(double), hh = (size_t)s->hd * s->hd * sizeof(double);
    s->R1 = rb_alloc(dd), s->G1 = rb_alloc(dd), s->E = rb_alloc(dd), s->T = rb_alloc(dd), s->B1 = rb_alloc(dd);
    s->R2 = calloc((size_t)s->L + 1, sizeof *s->R2);
    s->G2 = calloc((size_t)s->L + 1, sizeof *s->G2);
    s->B2 = calloc((size_t)s->L + 1, sizeof *s->B2);
    s->c2 = calloc((size_t)s->L + 1, sizeof *s->c2);
    int bad = !s->R1 || !s->G1 || !s->E || !s->T || !s->B1 || !s->R2 || !s->G2 || !s->B2 || !s->c2;
    for (int l = 0; !bad && l < s->L; l++)
        bad = !(s->R2[l] = rb_alloc(hh)) || !(s->G2[l] = rb_alloc(hh)) || !(s->B2[l] = rb_alloc(hh));
    if (bad) {
        state_free(s);
        return rb_error_set(err, RB_ENOMEM, "optrot: out of memory");
    }
    int rc = rb_cayley_sgd_init(&s->c1, s->d, 0.0, err); /* momentum 0 as SpinQuant */
    for (int l = 0; !rc && l < s->L; l++) rc = rb_cayley_sgd_init(&s->c2[l], s->hd, 0.0, err);
    if (rc) state_free(s);
    return rc;
}

static double fro(const double *A, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += A[i] * A[i];
    return sqrt(s);
}

/* One Cayley step of every trained parameter plus re-orthonormalization. out[0..3] = α of R1,
 * mean α of the R2, max drift before and max orthogonality error after the fix-up. */
static int step_all(state *s, const run_opts *o, rb_rng *rng, double out[4], rb_error *err) {
    double drift, after;
    int rc = rb_cayley_sgd_step(&s->c1, s->R1, s->G1, o->lr, rng, err);
    if (rc) return rc;
    if ((rc = rb_orth_restore(s->R1, s->d, s->E, s->T, &drift, &after, err))) return rb_error_prefix(err, "optrot");
    out[0] = s->c1.last_alpha, out[1] = 0, out[2] = drift, out[3] = after;
    for (int l = 0; o->train_r2 && l < s->L; l++) {
        if ((rc = rb_cayley_sgd_step(&s->c2[l], s->R2[l], s->G2[l], o->lr, rng, err))) return rc;
        if ((rc = rb_orth_restore(s->R2[l], s->hd, s->E, s->T, &drift, &after, err)))
            return rb_error_prefix(err, "optrot");
        out[1] += s->c2[l].last_alpha / s->L;
        out[2] = drift > out[2] ? drift : out[2];
        out[3] = after > out[3] ? after : out[3];
    }
    return 0;
}

/* best ← cur (to_best) or cur ← best, for R1 and every R2. */
static void copy_iterate(state *s, int to_best) {
    size_t dd = (size_t)s->d * s->d * sizeof(double), hh = (size_t)s->hd * s->hd * sizeof(double);
    memcpy(to_best ? s->B1 : s->R1, to_best ? s->R1 : s->B1, dd);
    for (int l = 0; l < s->L; l++) memcpy(to_best ? s->B2[l] : s->R2[l], to_best ? s->R2[l] : s->B2[l], hh);
}

/* Runs the steps; leaves in s->R1/R2 the evaluated iterate of lowest loss. Full-batch Cayley SGD
 * at the 1/‖W‖₁ cap can settle into a period-2 oscillation on small models (stories260K, d = 64:
 * the loss alternates by a few % while its envelope keeps falling), so the last iterate may sit on
 * the high side: the best one is kept (one copy of the rotations per improvement). Trace columns:
 * step; loss at that step's iterate (before its step; row `steps` is the last iterate, no step);
 * best (lowest loss so far, the one returned at the end); orth_err after the re-orthonormalization
 * and orth_drift before it (max over R1 and the R2); alpha (R1's Cayley step) and alpha_r2 (mean
 * over layers); grad_r1 = ‖∂L/∂R1‖_F; seconds since the optimization started. */
static int optimize(const rb_method_ctx *ctx, const char *name, const run_opts *o, rb_optrot *p, state *s,
                    rb_error *err) {
    rb_trace_table *tab = NULL;
    int rc = rb_trace_table_new(ctx->trace, "optrot",
                                "step,loss,best,orth_err,orth_drift,alpha,alpha_r2,grad_r1,seconds", &tab, err);
    if (rc) return rc;
    rb_rng rng;
    rb_rng_seed(&rng, ctx->seed, "rotation.optrot.cayley");
    double t0 = rb_now(), loss0 = NAN, loss = NAN, orth0 = 0, best = INFINITY;
    int best_it = 0;
    for (int l = -1; l < s->L; l++) { /* the initialization's own error (Hadamard/QR: rounding level) */
        double e;
        if ((rc = rb_orth_error(l < 0 ? s->R1 : s->R2[l], l < 0 ? s->d : s->hd, &e, NULL, err))) return rc;
        orth0 = e > orth0 ? e : orth0;
    }
    int every = o->steps >= 10 ? o->steps / 10 : 1;
    for (int it = 0; it <= o->steps; it++) {
        int last = it == o->steps; /* the final row: loss of the result, no step */
        rc = rb_optrot_eval(p, s->R1, (const double *const *)s->R2, &loss, last ? NULL : s->G1,
                            last || !o->train_r2 ? NULL : s->G2, err);
        if (rc) return rc;
        if (it == 0) loss0 = loss;
        if (!isfinite(loss))
            return rb_error_set(err, RB_ENUMERIC, "optrot: loss became %g at step %d (lower rotation.options.lr)", loss, it);
        if (loss < best) {
            best = loss, best_it = it;
            copy_iterate(s, 1);
        }
        double st[4] = {0, 0, 0, orth0}, gn = last ? 0 : fro(s->G1, (size_t)s->d * s->d);
        if (!last && (rc = step_all(s, o, &rng, st, err))) return rc;
        if (!last) orth0 = st[3];
        double row[] = {it, loss, best, st[3], st[2], st[0], st[1], gn, rb_now() - t0};
        if ((rc = rb_trace_row(tab, row, err))) return rc;
        if (last || it % every == 0)
            rb_info("%s: step %d/%d loss %.6g (%.4f of init) alpha %.3g, drift %.2g, %.1f s", name, it, o->steps, loss,
                    loss / loss0, st[0], st[2], rb_now() - t0);
        if (rb_interrupted())
            return rb_error_set(err, RB_EINTERRUPTED, "%s: interrupted at step %d of %d", name, it, o->steps);
    }
    copy_iterate(s, 0);
    rb_info("%s: returning the iterate of step %d: loss %.6g (%.4f of init)", name, best_it, best, best / loss0);
    return 0;
}

static int calibrate(const rb_method_ctx *ctx, rb_rotset *out, rb_error *err) {
    const rb_llama_config *c = ctx->cfg;
    run_opts o;
    int rc = read_opts(ctx, &o, err);
    if (rc) return rc;
    if ((rc = rb_method_init_set(ctx, o.plus ? "optrot+" : "optrot", 1, 1, out, err))) return rc;
    out->cross_head = ctx->cross_head > 0;
    /* the prepared, unrotated model: W of the loss (R4 and the cross-head transform are fixed parts of it) */
    rb_rotset base;
    if ((rc = rb_rotset_init(&base, "optrot.base", c->dim, c->head_dim, c->hidden_dim, c->n_layers, err))) return rc;
    base.r4 = out->r4, base.emb_center = out->emb_center, base.cross_head = out->cross_head;
    rb_fused fb;
    rb_optrot p;
    state s;
    memset(&p, 0, sizeof p);
    memset(&s, 0, sizeof s);
    if ((rc = rb_fused_init(&fb, ctx->src, c, &base, err))) {
        rb_rotset_free(&base);
        return rc;
    }
    rb_weights_src src = rb_fused_src(&fb);
    rb_optrot_opts po = {.plus = o.plus, .normalize = o.normalize, .mask = RB_OPTROT_ALL,
                         .cache_bytes = (size_t)o.cache_mib << 20};
    double t0 = rb_now();
    if ((rc = rb_optrot_init(&p, &src, c, &po, err))) goto done;
    rb_info("%s: %d steps, lr %g, init %s%s, train_r2 %s, normalize %s; %d of %d layers cached", out->method, o.steps,
            o.lr, o.init == RB_INIT_HADAMARD ? "hadamard" : o.init == RB_INIT_RANDOM ? "random" : "identity",
            o.init == RB_INIT_HADAMARD ? (o.r2_plain ? " (plain R2)" : " (random-sign R2)") : "",
            o.train_r2 ? "on" : "off", o.normalize ? "on" : "off", p.n_cached, c->n_layers);
    if (o.plus) {
        rb_hooks hk;
        rb_hooks_init(&hk);
        rb_fused_add_online_hooks(&fb, &hk); /* R4 / cross-head: the Hessians are in the prepared basis */
        if ((rc = rb_optrot_hessians(&p, &hk, ctx->calib, ctx->calib_n, ctx->calib_T, err))) goto done;
        rb_info("optrot+: Hessians from %d windows of %d tokens in %.1f s", ctx->calib_n, ctx->calib_T, rb_now() - t0);
    }
    if ((rc = state_init(&s, c, err))) goto done;
    /* the same starting point as method hadamard (R1 signs from stream rotation.r1) */
    rc = rb_method_init_rot(o.init, ctx->seed, "rotation.r1", 1, c->dim, s.R1, err);
    for (int l = 0; !rc && l < c->n_layers; l++) {
        char name[48];
        snprintf(name, sizeof name, "rotation.r2.%d", l);
        rc = rb_method_init_rot(o.init, ctx->seed, name, !o.r2_plain, c->head_dim, s.R2[l], err);
    }
    if (rc) goto done;
    if ((rc = optimize(ctx, out->method, &o, &p, &s, err))) goto done;
    if ((rc = rb_rot_from_dense(s.R1, c->dim, &out->r1, err))) goto done;
    for (int l = 0; !rc && l < c->n_layers; l++) rc = rb_rot_from_dense(s.R2[l], c->head_dim, &out->r2[l], err);
done:
    state_free(&s);
    rb_optrot_free(&p);
    rb_fused_free(&fb);
    rb_rotset_free(&base);
    return rc;
}

/* Short runs: pinned numbers do not depend on how far the optimizer got. */
static const char *const test_variants[] = {"steps=20", "steps=20,plus=on", NULL};

static const rb_method_figure figures[] = {
    {"optrot_loss", "optrot", NULL, "loss", "OptRot: objective vs Cayley SGD step", "optimizer step",
     "loss / loss at initialization", 1},
    {NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0},
};

const rb_method rb_method_optrot = {
    .name = "optrot",
    .status = "done",
    .description = "OptRot: R1 and per-layer R2 minimizing sum W^4 of the fused weights by Cayley SGD (data-free); "
    "OptRot+ (plus=on): weighted by the rotated calibration Hessian diagonal; online Hadamard R3/R4",
    .options = opts,
    .calibrate = calibrate,
    .calib = "plus",
    .test_variants = test_variants,
    .figures = figures};

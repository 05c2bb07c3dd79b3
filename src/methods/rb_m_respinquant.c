/* respinquant (METHODS §7): SpinQuant's training with layer-wise residual bases. Per layer l a dense
 * attention basis ra[l] (also layer l−1's FFN output basis), a dense mid-layer basis rm[l] (attention
 * output / FFN input) and a head rotation r2[l]; ra[n_layers] = R_final, fused into lm_head; the
 * online Q/K (R3) and down_proj (R4) Hadamards kept. The residual adds then mix bases: 2·n_layers
 * junctions T (rb_junction.h) run online.
 *
 * Training (rb_rottrain.h, as spinquant): Cayley SGD on the next-token cross-entropy of the quantized
 * model over every ra, rm and r2, with the exact dense junctions (rb_rotgrad differentiates through
 * them). All residual bases start from the same random Hadamard (shared_init [reading], METHODS
 * §7.3), so every junction starts at the identity and stays close to it. After training each
 * junction is replaced by the rank-`rank` rotation T̂ = I + Q·M·Qᵀ (rank ≥ dim: the exact dense T
 * stays online); the pipeline's GPTQ and evaluation run with those junctions active, since they are
 * online hooks of the fused model.
 *
 * Memory: the parameters, their gradients and one d×d optimizer scratch set: (2·n_layers + 1)·dim²
 * doubles twice (2.2 G values at Llama-3-8B, the "1.09 G parameters" of the paper), plus the dense
 * junctions in fp32 during each step (2·n_layers·dim²); checked before training starts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"
#include "core/rb_log.h"
#include "methods/rb_method.h"
#include "methods/rb_rotgrad.h"
#include "methods/rb_rottrain.h"
#include "rotate/rb_junction.h"

extern const rb_method rb_method_respinquant;

static const rb_method_option opts[] = {
    {"seed", "key", "0",
     "root seed: the shared residual basis from stream rotation.r1 (shared_init) or ra[l] / rm[l] from "
     "rotation.respinquant.ra.<l> / .rm.<l>; head rotation l from rotation.r2.<l>; QR retractions from "
     "rotation.respinquant.cayley"},
    {"r3", "key", "on", "online Hadamard on Q/K after RoPE (per head), active during training (the paper's R4)"},
    {"r4", "key", "on", "online Hadamard on the down_proj input (fused into W_down), active during training (R5)"},
    {"cross_head", "key", "off", "QuaRot's cross-head Hadamard on the o_proj input (not in ReSpinQuant)"},
    {"rank", "int", "32",
     "rank r of each junction after training: T^ = I + Q (R^ - I) Q^T on the top-r singular subspace of T - I (2 dim r "
     "+ r^2 MACs per token); 0 drops the junctions (identity); >= dim keeps the exact dense T online"},
    {"shared_init", "bool", "on",
     "every residual basis starts from the same random Hadamard, so every junction starts at I (the paper's premise); "
     "off: independent random Hadamards (junctions start far from I)"},
    RB_ROTTRAIN_OPTION_ROWS, /* SpinQuant's settings: the paper gives no lr, steps or batch */
    {"init", "hadamard|random|identity", "hadamard", "start of every rotation: random Hadamard; Haar-random; identity"},
    {NULL, NULL, NULL, NULL},
};

typedef struct rs_state {
    const rb_method_ctx *ctx;
    const rb_rottrain_cfg *o;
    const rb_rotset *like;
    int d, hd, L, np;          /* np = 3L + 1 parameters: ra[0..L], rm[0..L-1], r2[0..L-1] */
    double **P, **G;
    int *order, *group;
    int32_t *ids;
    rb_rotgrad g;
} rs_state;

static void state_free(rs_state *s) {
    for (int i = 0; s->P && i < s->np; i++) free(s->P[i]);
    free(s->P);
    free(s->G);
    free(s->order);
    free(s->group);
    free(s->ids);
    if (s->g.dR1) rb_rotgrad_free(&s->g);
}

/* Bytes training holds beyond the model: parameters and gradients in double, the junctions in fp32,
 * the optimizer's 9 d×d scratch matrices, rotgrad's d×d temporary and the fused weights' work buffers
 * (an estimate of the part that grows with dim²·layers; the engine checks its own). */
static size_t train_bytes(const rb_llama_config *c) {
    size_t dd = (size_t)c->dim * c->dim, L = (size_t)c->n_layers, hh = (size_t)c->head_dim * c->head_dim;
    return 2 * ((2 * L + 1) * dd + L * hh) * sizeof(double) + 2 * L * dd * sizeof(float) + 10 * dd * sizeof(double);
}

static int state_init(rs_state *s, const rb_llama_config *c, const rb_rottrain_cfg *o, rb_error *err) {
    memset(s, 0, sizeof *s);
    s->d = c->dim, s->hd = c->head_dim, s->L = c->n_layers, s->np = 3 * c->n_layers + 1;
    s->P = calloc((size_t)s->np, sizeof *s->P);
    s->G = calloc((size_t)s->np, sizeof *s->G);
    s->order = malloc(sizeof(int) * (size_t)s->np);
    s->group = malloc(sizeof(int) * (size_t)s->np);
    s->ids = malloc(sizeof(int32_t) * (size_t)o->run.windows * o->seqlen);
    int ok = s->P && s->G && s->order && s->group && s->ids;
    for (int i = 0; ok && i < s->np; i++) {
        int head = i > 2 * s->L;
        s->order[i] = head ? s->hd : s->d, s->group[i] = head;
        ok = (s->P[i] = malloc(sizeof(double) * s->order[i] * s->order[i])) != NULL;
    }
    if (!ok) return rb_error_set(err, RB_ENOMEM, "respinquant: out of memory for the rotations");
    int rc = rb_rotgrad_init(&s->g, c, err);
    if (!rc) rc = rb_rotgrad_layerwise(&s->g, err);
    if (rc) return rc;
    for (int l = 0; l <= s->L; l++) s->G[l] = s->g.dRa[l];
    for (int l = 0; l < s->L; l++) s->G[s->L + 1 + l] = s->g.dRm[l], s->G[2 * s->L + 1 + l] = s->g.dR2[l];
    return 0;
}

/* A rotation borrowing R (no copy, no check: rb_orth_restore holds every iterate to 1e-12); released by
 * unborrow before the set is freed. */
static rb_rot *borrow(double *R, int n) {
    rb_rot *r = calloc(1, sizeof *r);
    if (r) r->n = n, r->kind = RB_ROT_DENSE, r->R = R;
    return r;
}

static void unborrow(rb_rotset *s) {
    for (int l = 0; s->ra && l <= s->n_layers; l++)
        if (s->ra[l]) s->ra[l]->R = NULL;
    for (int l = 0; s->rm && l < s->n_layers; l++)
        if (s->rm[l]) s->rm[l]->R = NULL;
    for (int l = 0; s->r2 && l < s->n_layers; l++)
        if (s->r2[l]) s->r2[l]->R = NULL;
    rb_rotset_free(s);
}

/* The current iterate as a layer-wise set (borrowing s->P) with like's online flags. */
static int iterate_set(const rs_state *s, rb_rotset *cur, rb_error *err) {
    const rb_rotset *like = s->like;
    int rc = rb_rotset_init(cur, like->method, like->dim, like->head_dim, like->hidden_dim, like->n_layers, err);
    if (!rc) rc = rb_rotset_layerwise_alloc(cur, err);
    if (rc) return rc;
    cur->r3 = like->r3, cur->r4 = like->r4, cur->emb_center = like->emb_center, cur->cross_head = like->cross_head;
    int ok = 1;
    for (int l = 0; l <= s->L; l++) ok &= (cur->ra[l] = borrow(s->P[l], s->d)) != NULL;
    for (int l = 0; l < s->L; l++) {
        ok &= (cur->rm[l] = borrow(s->P[s->L + 1 + l], s->d)) != NULL;
        ok &= (cur->r2[l] = borrow(s->P[2 * s->L + 1 + l], s->hd)) != NULL;
    }
    if (!ok) {
        unborrow(cur);
        return rb_error_set(err, RB_ENOMEM, "respinquant: out of memory");
    }
    return 0;
}

static int eval_at(void *vs, long w0, int n, double *loss, rb_error *err) {
    rs_state *s = vs;
    const rb_method_ctx *ctx = s->ctx;
    int T = s->o->seqlen;
    rb_rottrain_windows(ctx, w0, n, T, s->ids);
    rb_rotset cur;
    int rc = iterate_set(s, &cur, err);
    if (rc) return rc;
    rc = rb_rotgrad_run(ctx->src, ctx->cfg, &cur, &s->o->ro, s->ids, n, T, &s->g, err);
    unborrow(&cur);
    *loss = s->g.loss;
    return rc;
}

static void param_name(void *vs, int i, char *buf, size_t cap) {
    const rs_state *s = vs;
    if (i <= s->L) snprintf(buf, cap, i == s->L ? "R_final (ra[%d])" : "ra[%d]", i);
    else if (i <= 2 * s->L) snprintf(buf, cap, "rm[%d]", i - s->L - 1);
    else snprintf(buf, cap, "head rotation of layer %d", i - 2 * s->L - 1);
}

/* Starting points: one shared basis (or one per ra/rm), head rotations as SpinQuant's R2. */
static int init_params(rs_state *s, const rb_method_ctx *ctx, int shared, rb_error *err) {
    int rc = 0, init = s->o->init;
    char name[64];
    for (int i = 0; i <= 2 * s->L && !rc; i++) {
        if (shared && i > 0) {
            memcpy(s->P[i], s->P[0], sizeof(double) * s->d * s->d);
            continue;
        }
        if (shared) snprintf(name, sizeof name, "rotation.r1");
        else if (i <= s->L) snprintf(name, sizeof name, "rotation.respinquant.ra.%d", i);
        else snprintf(name, sizeof name, "rotation.respinquant.rm.%d", i - s->L - 1);
        rc = rb_method_init_rot(init, ctx->seed, name, 1, s->d, s->P[i], err);
    }
    for (int l = 0; l < s->L && !rc; l++) {
        snprintf(name, sizeof name, "rotation.r2.%d", l);
        rc = rb_method_init_rot(init, ctx->seed, name, 1, s->hd, s->P[2 * s->L + 1 + l], err);
    }
    return rc;
}

/* The junctions of the trained set: rank r (< dim) low-rank ones into out->jn; rank ≥ dim leaves the
 * exact dense ones. Trace respinquant_junctions, one row per junction (junction 0 = attention add,
 * 1 = FFN add): ‖T − I‖_F (dev), ‖T − T̂‖_F (approx_err), their ratio, T̂'s orthogonality error and its
 * online multiply-adds per token. */
static int fit_junctions(const rb_method_ctx *ctx, rb_rotset *out, int rank, rb_error *err) {
    const rb_llama_config *c = ctx->cfg;
    int d = c->dim, L = c->n_layers, rc;
    rb_trace_table *tt = NULL;
    if ((rc = rb_trace_table_new(ctx->trace, "respinquant_junctions", "layer,junction,rank,dev,approx_err,rel_err,orth_error,online_macs",
                                 &tt, err)))
        return rc;
    double *T = malloc(sizeof(double) * (size_t)d * d);
    if (!T) return rb_error_set(err, RB_ENOMEM, "respinquant: out of memory");
    int exact = rank >= d;
    if (!exact && (rc = rb_rotset_jn_alloc(out, err))) goto done;
    double worst_dev = 0, sum_rel = 0;
    for (int l = 0; l < L && !rc; l++)
        for (int k = 0; k < RB_JN_COUNT && !rc; k++) {
            rb_rotset_junction_exact(out, l, k, T);
            rb_junction *j = NULL;
            if ((rc = rb_junction_fit(T, d, exact ? 0 : rank, &j, err))) {
                rc = rb_error_prefix(err, "respinquant: junction %s of layer %d", rb_junction_name(k), l);
                break;
            }
            double ae = exact ? 0.0 : j->approx_err, rel = j->dev > 0 ? ae / j->dev : 0.0;
            double macs = exact ? (double)d * d : 2.0 * d * rank + (double)rank * rank; /* per token */
            double row[] = {l, k, exact ? d : rank, j->dev, ae, rel, exact ? 0.0 : j->orth_err, macs};
            worst_dev = fmax(worst_dev, j->dev), sum_rel += rel;
            if (exact) rb_junction_free(j);
            else out->jn[l][k] = j;
            rc = rb_trace_row(tt, row, err);
        }
    if (rc) goto done;
    /* online cost per token against the model's linear layers (multiply-adds) */
    double lin = (double)L * ((double)d * (c->n_heads + 2 * c->n_kv_heads) * c->head_dim + (double)d * c->n_heads * c->head_dim +
                              3.0 * d * c->hidden_dim) + (double)d * c->vocab_size;
    double cost = 2.0 * L * (exact ? (double)d * d : 2.0 * d * rank + (double)rank * rank);
    rb_info("respinquant: %d junctions, %s: max ||T - I||_F %.4g, mean ||T - T^||_F / ||T - I||_F %.4g; online cost "
            "%.4g MACs per token (%.3f%% of the linear layers)",
            2 * L, exact ? "exact dense" : "low rank", worst_dev, exact ? 0.0 : sum_rel / (2 * L), cost, 100.0 * cost / lin);
done:
    free(T);
    return rc;
}

static int calibrate(const rb_method_ctx *ctx, rb_rotset *out, rb_error *err) {
    const rb_llama_config *c = ctx->cfg;
    const rb_method *m = &rb_method_respinquant;
    rb_rottrain_cfg o;
    int rank, shared, rc;
    if ((rc = rb_rottrain_read(ctx, m, &o, err)) || (rc = rb_method_opt_int(ctx, m, "rank", 0, 1 << 20, &rank, err)) ||
        (rc = rb_method_opt_bool(ctx, m, "shared_init", &shared, err)))
        return rc;
    if ((rc = rb_method_init_set(ctx, "respinquant", 1, 1, out, err))) return rc;
    out->cross_head = ctx->cross_head > 0;
    if ((rc = rb_rotset_layerwise_alloc(out, err))) return rc;
    if ((rc = rb_mem_check(train_bytes(c), "respinquant: the layer-wise rotations, their gradients and junctions",
                           "a smaller model, or spinquant (one R1)", err)))
        return rc;
    rs_state s;
    if ((rc = state_init(&s, c, &o, err))) goto done;
    s.ctx = ctx, s.o = &o, s.like = out;
    if ((rc = init_params(&s, ctx, shared, err))) goto done;
    rb_info("respinquant: %d rotations (%d of order %d, %d of order %d, %.3g M parameters), %d steps x %d windows of %d "
            "tokens, lr %g (%s), weights %s, STE %s, r3 %s, r4 %s, init %s",
            s.np, 2 * s.L + 1, s.d, s.L, s.hd, ((2.0 * s.L + 1) * s.d * s.d + (double)s.L * s.hd * s.hd) / 1e6,
            o.run.steps, o.run.windows, o.seqlen, o.run.lr, o.run.schedule == 0 ? "cosine" : "constant", o.wmode,
            o.ste ? "clipped" : "plain", out->r3 ? "on" : "off", out->r4 ? "on" : "off",
            shared ? "shared (junctions at I)" : "independent");
    rb_rottrain tr = {s.np, s.P, s.G, s.order, s.group, eval_at, param_name, &s};
    if ((rc = rb_rottrain_run(&tr, &o.run, ctx->trace, ctx->seed, err))) goto done;
    for (int i = 0; i < s.np && !rc; i++) {
        int l = i <= s.L ? i : i <= 2 * s.L ? i - s.L - 1 : i - 2 * s.L - 1;
        rb_rot **slot = i <= s.L ? &out->ra[l] : i <= 2 * s.L ? &out->rm[l] : &out->r2[l];
        rc = rb_rot_from_dense(s.P[i], s.order[i], slot, err);
    }
    if (!rc) rc = fit_junctions(ctx, out, rank, err);
done:
    state_free(&s);
    return rc;
}

/* Short runs: an exact-junction variant (the FP invariance test holds exactly) and a low-rank one. */
static const char *const test_variants[] = {"steps=2,windows=2,rank=65536", "steps=2,windows=2,rank=8", NULL};

static const rb_method_figure figures[] = {
    {"respinquant_loss", "respinquant", "step", "loss", "ReSpinQuant: training loss vs Cayley SGD step",
     "optimizer step", "loss / loss at initialization", 1},
    {"respinquant_junctions", "respinquant_junctions", "layer", "rel_err",
     "ReSpinQuant: low-rank junction error ||T - T^||_F / ||T - I||_F", "layer", "relative error", 0},
    {NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0},
};

const rb_method rb_method_respinquant = {
    .name = "respinquant",
    .status = "done",
    .description = "ReSpinQuant: per-layer residual bases, head rotations and R_final learned by Cayley SGD on the quantized "
                   "model's next-token loss with exact junctions, then low-rank residual junctions T^ online; R3/R4 Hadamards",
    .options = opts,
    .calibrate = calibrate,
    .calib = "",
    .test_variants = test_variants,
    .figures = figures};

/* conqur (METHODS §6, [reading] where the abstract is silent): R1 (global) and R2 (per layer)
 * learned by online orthogonal Procrustes toward hypercube corners; R3/R4 stay online Hadamards.
 *
 * Calibration windows stream through the prepared (γ-folded) model in batches of
 * data.calib.batch windows. The rotated model is simulated without re-fusing weights (§6.4 tip):
 * at each R1 site (attn_in, mlp_in of every layer) the hook computes z = x·R1, accumulates the
 * corner statistics, fake-quantizes z as the fused model would quantize its input, and hands
 * Q(z)·R1ᵀ to the unrotated weights — identical to the fused model with FP weights. The o_proj
 * input (per head, R2 of the layer), V (per KV head, R2), K (R3) and the down_proj input (R4) are
 * simulated the same way, so layer l sees the activation/KV quantization error of every layer
 * before it. After each batch every rotation is re-solved: R ← polar(C). Nothing but the n×n
 * accumulators outlives a batch (unless inner_iters > 1, which keeps the batch's activations). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_signal.h"
#include "methods/rb_conqur.h"
#include "rotate/rb_fuse.h"
#include "methods/rb_method.h"
#include "rotate/rb_orth.h"
#include "model/rb_stream.h"

extern const rb_method rb_method_conqur;

static const rb_method_option opts[] = {
    {"seed", "key", "0", "root seed: Hadamard signs of R1 (stream rotation.r1) and of R2 of layer l (rotation.r2.<l>), or "
                         "the random inits from the same streams"},
    {"r3", "key", "on", "online Hadamard on Q/K after RoPE (per head); also simulated during calibration"},
    {"r4", "key", "on", "online Hadamard on the down_proj input (fused into W_down); also simulated during calibration"},
    {"init", "hadamard|random|identity", "hadamard",
     "starting rotations: random Hadamard R1 (QuaRot's signs) and R2 (see r2_signs) as in 6.4, Haar-random, or the "
     "identity"},
    {"r2_signs", "random|none", "random",
     "with init hadamard: R2 of layer l starts as a random Hadamard (signs from stream rotation.r2.<l>, METHODS 6.4), "
     "or the plain Hadamard H/sqrt(d_h) (none: the start before issue 10)"},
    {"accumulation", "cumulative|ema|per-batch", "cumulative",
     "cross-covariance across batches: sum of all batches, C <- beta*C + (1-beta)*C_batch, or the last batch only"},
    {"beta", "real", "0.9", "EMA factor for accumulation: ema, in [0, 1)"},
    {"inner_iters", "int", "1",
     "sign/Procrustes alternations per batch on the batch's own statistics (> 1 keeps the batch's activations in memory)"},
    {"passes", "int", "1", "passes over the calibration windows"},
    {"target", "quant|fp", "quant",
     "calibration forward with the run's activation/KV fake quantization upstream (quant), or in full precision (fp)"},
    {"learn_r1", "bool", "on", "learn R1 (off: keep its initialization)"},
    {"learn_r2", "bool", "on", "learn the per-layer R2 (off: keep their initialization)"},
    {NULL, NULL, NULL, NULL},
};

enum { ACC_CUMULATIVE = 0, ACC_EMA, ACC_PER_BATCH };
/* Sites with a learned rotation, in trace order. */
enum { CS_ATTN = 0, CS_MLP, CS_O, CS_COUNT };

/* A growable store of float rows (the batch's activations when inner_iters > 1). */
typedef struct fbuf {
    float *x;
    size_t rows, cap;
} fbuf;

static int fbuf_add(fbuf *b, const float *x, size_t rows, int n, rb_error *err) {
    if (b->rows + rows > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->rows + rows) cap *= 2;
        float *p = realloc(b->x, cap * (size_t)n * sizeof *p);
        if (!p) return rb_error_set(err, RB_ENOMEM, "conqur: out of memory (inner_iters keeps the batch activations)");
        b->x = p;
        b->cap = cap;
    }
    memcpy(b->x + b->rows * (size_t)n, x, rows * (size_t)n * sizeof *x);
    b->rows += rows;
    return 0;
}

/* One learned rotation: current value, the accumulated target and the batch statistics. */
typedef struct cq_rot {
    int n;
    double *R;  /* [n][n] */
    float *Rf;  /* [n][n] R as float (sgemm operand of the simulation) */
    double *C;  /* [n][n] accumulated Procrustes target (original basis) */
    rb_conqur_acc acc;
    fbuf keep;
} cq_rot;

typedef struct cq_state {
    const rb_llama_config *c;
    const rb_quant_cfg *q; /* NULL: FP calibration forward */
    int learn_r1, learn_r2, keep;
    cq_rot r1;
    cq_rot *r2;           /* [n_layers] */
    double *site_align;   /* [n_layers][CS_COUNT] this batch's alignment sums */
    double *site_rows;    /* [n_layers][CS_COUNT] */
    rb_had h3, h4;
    int has_h3, has_h4;
    float *Z;             /* [zcap] rotated rows (scratch) */
    size_t zcap;
    double last_a1, last_a2; /* mean alignment of the last batch at R1 / R2 sites (progress log) */
    double rss0;             /* resident set (MB) when the method started: the trace logs growth over it */
    double *work;            /* [3][dim][dim] solve scratch: C_batch and R_old (2·n²), C_new (n²) */
} cq_state;

static int rot_init(cq_rot *r, int n, rb_error *err) {
    memset(r, 0, sizeof *r);
    r->n = n;
    r->R = rb_alloc((size_t)n * n * sizeof(double));
    r->C = rb_alloc((size_t)n * n * sizeof(double));
    r->Rf = rb_alloc((size_t)n * n * sizeof(float));
    if (!r->R || !r->C || !r->Rf) return rb_error_set(err, RB_ENOMEM, "conqur: out of memory");
    memset(r->C, 0, (size_t)n * n * sizeof(double));
    return rb_conqur_acc_init(&r->acc, n, err);
}

static void rot_free(cq_rot *r) {
    rb_free(r->R);
    rb_free(r->C);
    rb_free(r->Rf);
    rb_conqur_acc_free(&r->acc);
    free(r->keep.x);
    memset(r, 0, sizeof *r);
}

static void rot_sync_f(cq_rot *r) {
    for (size_t i = 0; i < (size_t)r->n * r->n; i++) r->Rf[i] = (float)r->R[i];
}

static float *scratch(cq_state *s, size_t count, rb_error *err) {
    if (count > s->zcap) {
        rb_free(s->Z);
        s->zcap = 0;
        if (!(s->Z = rb_alloc(count * sizeof(float)))) {
            rb_error_set(err, RB_ENOMEM, "conqur: out of memory");
            return NULL;
        }
        s->zcap = count;
    }
    return s->Z;
}

static int quant_on(const cq_state *s, int site) {
    if (!s->q) return 0;
    const rb_qspec *qs = rb_quant_site_spec(s->q, site);
    return qs && qs->bits < 16;
}

/* x [rows][n] (rows counted in n-wide slices) at a learned site: statistics of x·R, then, when the
 * site is quantized, x ← Q(x·R)·Rᵀ (the fused model's quantized input seen by unrotated weights). */
static int learned_site(cq_state *s, cq_rot *r, int learn, const rb_site_info *in, float *x, int cs,
                        rb_error *err) {
    int quant = quant_on(s, in->site);
    if (!learn && !quant) return 0; /* nothing to learn from or simulate here */
    size_t rows = (size_t)in->n_seq * in->seq_len * (in->cols / r->n);
    int n = r->n;
    float *Z = scratch(s, rows * (size_t)n, err);
    if (!Z) return RB_ENOMEM;
    rb_sgemm(0, 0, (int)rows, n, n, 1.0f, x, n, r->Rf, n, 0.0f, Z, n);
    int rc = 0;
    if (learn) {
        double a0 = r->acc.align_sum, n0 = r->acc.rows;
        if (s->keep && (rc = fbuf_add(&r->keep, x, rows, n, err))) return rc;
        if ((rc = rb_conqur_acc_add(&r->acc, Z, rows, err))) return rc;
        s->site_align[in->layer * CS_COUNT + cs] += r->acc.align_sum - a0;
        s->site_rows[in->layer * CS_COUNT + cs] += r->acc.rows - n0;
    }
    if (quant) {
        if ((rc = rb_quant_site_hook((void *)s->q, in, Z, err))) return rc;
        rb_sgemm(0, 1, (int)rows, n, n, 1.0f, Z, n, r->Rf, n, 0.0f, x, n);
    }
    return 0;
}

/* A fixed online Hadamard (R3 per head, R4 per row) followed by quantization: x ← Q(x·H)·Hᵀ. */
static int had_site(cq_state *s, const rb_had *h, const rb_site_info *in, float *x, rb_error *err) {
    size_t rows = (size_t)in->n_seq * in->seq_len * (in->cols / h->n);
    int rc = rb_had_apply_rows(h, x, rows);
    if (!rc) rc = rb_quant_site_hook((void *)s->q, in, x, err);
    if (!rc) rc = rb_had_apply_rows_t(h, x, rows);
    return rc;
}

static int hook(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    cq_state *s = ctx;
    switch (in->site) {
    case RB_SITE_ATTN_IN: return learned_site(s, &s->r1, s->learn_r1, in, x, CS_ATTN, err);
    case RB_SITE_MLP_IN: return learned_site(s, &s->r1, s->learn_r1, in, x, CS_MLP, err);
    case RB_SITE_O_IN: return learned_site(s, &s->r2[in->layer], s->learn_r2, in, x, CS_O, err);
    case RB_SITE_V: /* V is produced in the R2 basis (Wv[h] ← R2ᵀ·Wv[h]) and cached there */
        return learned_site(s, &s->r2[in->layer], 0, in, x, CS_O, err);
    case RB_SITE_Q: /* quantized only when quant.q is set (RUQuant's setting) */
    case RB_SITE_K:
        if (!quant_on(s, in->site)) return 0;
        return s->has_h3 ? had_site(s, &s->h3, in, x, err) : rb_quant_site_hook((void *)s->q, in, x, err);
    case RB_SITE_DOWN_IN:
        if (!quant_on(s, in->site)) return 0;
        return s->has_h4 ? had_site(s, &s->h4, in, x, err) : rb_quant_site_hook((void *)s->q, in, x, err);
    default: return 0;
    }
}

/* Re-solves one rotation after a batch: C_batch from the statistics (and, for inner_iters > 1,
 * further sign/Procrustes alternations on the kept activations), combined into r->C per the
 * accumulation rule, R ← polar(C). *delta = ‖R_new − R_old‖_F/√n. */
static int update_rot(cq_state *s, cq_rot *r, int inner, int accum, double beta, double *Cb, double *Cn,
                      double *delta, rb_error *err) {
    const int n = r->n;
    const size_t nn = (size_t)n * n;
    double *R0 = Cb + nn; /* caller gives Cb room for 2·n² */
    memcpy(R0, r->R, nn * sizeof *R0);
    int rc = 0;
    rb_conqur_acc_take(&r->acc, r->R, Cb);
    for (int it = 0; it < inner && !rc; it++) {
        if (it > 0) { /* b = sign(x̂·R) with the R just solved, on the kept batch */
            for (size_t r0 = 0; r0 < r->keep.rows && !rc; r0 += RB_CONQUR_ROWS_PER_GEMM) {
                size_t nr = r->keep.rows - r0 < RB_CONQUR_ROWS_PER_GEMM ? r->keep.rows - r0 : RB_CONQUR_ROWS_PER_GEMM;
                float *Z = scratch(s, nr * (size_t)n, err);
                if (!Z) return RB_ENOMEM;
                rb_sgemm(0, 0, (int)nr, n, n, 1.0f, r->keep.x + r0 * (size_t)n, n, r->Rf, n, 0.0f, Z, n);
                rc = rb_conqur_acc_add(&r->acc, Z, nr, err);
            }
            if (rc) return rc;
            rb_conqur_acc_take(&r->acc, r->R, Cb);
        }
        for (size_t i = 0; i < nn; i++)
            Cn[i] = accum == ACC_CUMULATIVE ? r->C[i] + Cb[i]
                    : accum == ACC_EMA      ? beta * r->C[i] + (1 - beta) * Cb[i]
                                            : Cb[i];
        if ((rc = rb_polar(Cn, n, r->R, err))) return rb_error_prefix(err, "conqur: Procrustes update");
        rot_sync_f(r);
    }
    memcpy(r->C, Cn, nn * sizeof *Cn);
    r->keep.rows = 0;
    double d = 0;
    for (size_t i = 0; i < nn; i++) d += (r->R[i] - R0[i]) * (r->R[i] - R0[i]);
    *delta = sqrt(d / n);
    return 0;
}

static int rot_orth(const cq_rot *r, double *e, rb_error *err) { return rb_orth_error(r->R, r->n, e, NULL, err); }

static void state_free(cq_state *s) {
    rot_free(&s->r1);
    for (int l = 0; s->r2 && l < s->c->n_layers; l++) rot_free(&s->r2[l]);
    free(s->r2);
    free(s->site_align);
    free(s->site_rows);
    if (s->has_h3) rb_had_free(&s->h3);
    if (s->has_h4) rb_had_free(&s->h4);
    rb_free(s->Z);
    rb_free(s->work);
}

typedef struct cq_opts {
    int init, r2_plain, accum, inner, passes, target_q, learn_r1, learn_r2;
    double beta;
} cq_opts;

static int read_opts(const rb_method_ctx *ctx, cq_opts *o, rb_error *err) {
    const rb_method *m = &rb_method_conqur;
    int rc;
    if ((rc = rb_method_opt_enum(ctx, m, "init", &o->init, err)) ||
        (rc = rb_method_opt_enum(ctx, m, "r2_signs", &o->r2_plain, err)) ||
        (rc = rb_method_opt_enum(ctx, m, "accumulation", &o->accum, err)) ||
        (rc = rb_method_opt_real(ctx, m, "beta", 0.0, 0.999999, &o->beta, err)) ||
        (rc = rb_method_opt_int(ctx, m, "inner_iters", 1, 1000, &o->inner, err)) ||
        (rc = rb_method_opt_int(ctx, m, "passes", 1, 1000, &o->passes, err)) ||
        (rc = rb_method_opt_enum(ctx, m, "target", &o->target_q, err)) ||
        (rc = rb_method_opt_bool(ctx, m, "learn_r1", &o->learn_r1, err)) ||
        (rc = rb_method_opt_bool(ctx, m, "learn_r2", &o->learn_r2, err)))
        return rc;
    o->target_q = o->target_q == 0;
    return 0;
}

/* One update: solve every learned rotation, log the trace rows. */
static int solve_all(cq_state *s, const cq_opts *o, int update, int pass, int seen, double t0,
                     rb_trace_table *tmain, rb_trace_table *tsites, rb_error *err) {
    const rb_llama_config *c = s->c;
    int d = c->dim, L = c->n_layers, rc = 0;
    double *W = s->work;
    double a1 = 0, n1 = 0, a2 = 0, n2 = 0, d1 = 0, d2 = 0, orth = 0, e;
    for (int l = 0; l < L; l++) {
        a1 += s->site_align[l * CS_COUNT + CS_ATTN] + s->site_align[l * CS_COUNT + CS_MLP];
        n1 += s->site_rows[l * CS_COUNT + CS_ATTN] + s->site_rows[l * CS_COUNT + CS_MLP];
        a2 += s->site_align[l * CS_COUNT + CS_O];
        n2 += s->site_rows[l * CS_COUNT + CS_O];
        for (int k = 0; k < CS_COUNT && !rc; k++) {
            double rows = s->site_rows[l * CS_COUNT + k];
            if (rows > 0) rc = rb_trace_row(tsites, (double[]){update, l, k, s->site_align[l * CS_COUNT + k] / rows}, err);
        }
    }
    if (!rc && o->learn_r1 && s->r1.acc.rows > 0) {
        rc = update_rot(s, &s->r1, o->inner, o->accum, o->beta, W, W + (size_t)2 * d * d, &d1, err);
        if (!rc && !(rc = rot_orth(&s->r1, &e, err)) && e > orth) orth = e;
    }
    for (int l = 0; l < L && !rc && o->learn_r2; l++) {
        cq_rot *r = &s->r2[l];
        double dl;
        if (r->acc.rows <= 0) continue;
        size_t nn = (size_t)r->n * r->n;
        if ((rc = update_rot(s, r, o->inner, o->accum, o->beta, W, W + 2 * nn, &dl, err))) break;
        if (dl > d2) d2 = dl;
        if (!(rc = rot_orth(r, &e, err)) && e > orth) orth = e;
    }
    if (rc) return rc;
    memset(s->site_align, 0, (size_t)L * CS_COUNT * sizeof(double));
    memset(s->site_rows, 0, (size_t)L * CS_COUNT * sizeof(double));
    s->last_a1 = n1 > 0 ? a1 / n1 : NAN;
    s->last_a2 = n2 > 0 ? a2 / n2 : NAN;
    double row[] = {update, pass, seen, s->last_a1, s->last_a2, d1, d2, orth, rb_now() - t0, rb_rss_mb() - s->rss0};
    return rb_trace_row(tmain, row, err);
}

static int calibrate(const rb_method_ctx *ctx, rb_rotset *out, rb_error *err) {
    const rb_llama_config *c = ctx->cfg;
    cq_opts o;
    int rc = read_opts(ctx, &o, err);
    if (rc) return rc;
    if (!ctx->calib || ctx->calib_n < 1)
        return rb_error_set(err, RB_EINVAL, "conqur: needs calibration windows (data.calib in a config, --calib for ppl)");
    if ((rc = rb_method_init_set(ctx, "conqur", 1, 1, out, err))) return rc;
    cq_state s;
    memset(&s, 0, sizeof s);
    s.rss0 = rb_rss_mb();
    s.c = c;
    s.learn_r1 = o.learn_r1;
    s.learn_r2 = o.learn_r2;
    s.keep = o.inner > 1;
    s.q = o.target_q && ctx->quant && rb_quant_cfg_active(ctx->quant) ? ctx->quant : NULL;
    rb_rotset prep;
    rb_fused f;
    int have_prep = 0, have_fused = 0;
    float *hn = NULL;
    rb_trace_table *tmain = NULL, *tsites = NULL;
    if ((rc = rb_rotset_init(&prep, "prepare", c->dim, c->head_dim, c->hidden_dim, c->n_layers, err))) return rc;
    have_prep = 1;
    prep.emb_center = ctx->emb_center;
    if ((rc = rb_fused_init(&f, ctx->src, c, &prep, err))) goto done;
    have_fused = 1;
    rb_weights_src src = rb_fused_src(&f);
    if (!(s.r2 = calloc((size_t)c->n_layers, sizeof *s.r2)) ||
        !(s.site_align = calloc((size_t)c->n_layers * CS_COUNT, sizeof(double))) ||
        !(s.site_rows = calloc((size_t)c->n_layers * CS_COUNT, sizeof(double)))) {
        rc = rb_error_set(err, RB_ENOMEM, "conqur: out of memory");
        goto done;
    }
    if (!(s.work = rb_alloc((size_t)3 * c->dim * c->dim * sizeof(double)))) {
        rc = rb_error_set(err, RB_ENOMEM, "conqur: out of memory");
        goto done;
    }
    if ((rc = rot_init(&s.r1, c->dim, err)) ||
        (rc = rb_method_init_rot(o.init, ctx->seed, "rotation.r1", 1, c->dim, s.r1.R, err)))
        goto done;
    rot_sync_f(&s.r1);
    for (int l = 0; l < c->n_layers; l++) {
        char stream[48];
        snprintf(stream, sizeof stream, "rotation.r2.%d", l);
        if ((rc = rot_init(&s.r2[l], c->head_dim, err)) ||
            (rc = rb_method_init_rot(o.init, ctx->seed, stream, !o.r2_plain, c->head_dim, s.r2[l].R, err)))
            goto done;
        rot_sync_f(&s.r2[l]);
    }
    if (s.q && out->r3) {
        if ((rc = rb_had_init(&s.h3, c->head_dim, NULL, err))) goto done;
        s.has_h3 = 1;
    }
    if (s.q && out->r4) {
        if ((rc = rb_had_init(&s.h4, c->hidden_dim, NULL, err))) goto done;
        s.has_h4 = 1;
    }
    if ((rc = rb_trace_table_new(ctx->trace, "conqur",
                                 "update,pass,windows,align_r1,align_r2,delta_r1,delta_r2_max,orth_err,seconds,rss_delta_mb", &tmain,
                                 err)) ||
        (rc = rb_trace_table_new(ctx->trace, "conqur.sites", "update,layer,site,align", &tsites, err)))
        goto done;
    int B = ctx->calib_batch > 0 ? ctx->calib_batch : 1, T = ctx->calib_T, n = ctx->calib_n;
    if (B > n) B = n;
    size_t batch_tok = (size_t)B * T;
    if ((rc = rb_mem_check(batch_tok * c->dim * sizeof(float), "conqur: the hidden states of a calibration batch",
                           "lower data.calib.batch (--calib-batch)", err)))
        goto done;
    if (s.keep && (rc = rb_mem_check(batch_tok * ((size_t)2 * c->n_layers * c->dim +
                                                  (size_t)c->n_layers * c->n_heads * c->head_dim) * sizeof(float) +
                                         batch_tok * c->dim * sizeof(float),
                                     "conqur: inner_iters > 1 keeps a batch's activations at every learned site",
                                     "lower data.calib.batch (--calib-batch), or set rotation.options.inner_iters: 1",
                                     err)))
        goto done;
    if (!(hn = rb_alloc((size_t)B * T * c->dim * sizeof(float)))) {
        rc = rb_error_set(err, RB_ENOMEM, "conqur: out of memory (hidden states of a batch)");
        goto done;
    }
    /* R, C, M (double) and R, one chunk product (float) per rotation, plus the solve scratch */
    double state_mb = ((3.0 * 8 + 2.0 * 4) * ((double)c->dim * c->dim + (double)c->n_layers * c->head_dim * c->head_dim) +
                       3.0 * 8 * c->dim * c->dim) / 1e6;
    rb_info("conqur: %d windows of %d tokens, batch %d, %d pass(es), init %s, calibration forward %s; state %.1f MB "
            "(independent of the number of windows)",
            n, T, B, o.passes, o.init == RB_INIT_HADAMARD ? "hadamard" : o.init == RB_INIT_RANDOM ? "random" : "identity",
            s.q ? "with activation/KV fake quantization" : "in full precision", state_mb);
    rb_hooks hk;
    rb_hooks_init(&hk);
    rb_hooks_add_all(&hk, hook, &s);
    double t0 = rb_now();
    int update = 0, nb = (n + B - 1) / B;
    for (int p = 0; p < o.passes && !rc; p++) {
        for (int b = 0; b < nb && !rc; b++) {
            int w0 = b * B, nw = n - w0 < B ? n - w0 : B;
            if ((rc = rb_llama_hidden(&src, c, ctx->calib + (size_t)w0 * T, nw, T, w0, &hk, hn, err))) break;
            if (rb_interrupted()) { /* before the solve: n³ per rotation, minutes at dim 8192 */
                rc = rb_error_set(err, RB_EINTERRUPTED, "conqur: interrupted after %d of %d windows (pass %d)", w0 + nw,
                                  n, p + 1);
                break;
            }
            rc = solve_all(&s, &o, update, p, w0 + nw, t0, tmain, tsites, err);
            if (!rc && (update % (nb > 10 ? nb / 10 : 1) == 0 || b == nb - 1))
                rb_info("conqur: pass %d, %d/%d windows: alignment R1 %.4f, R2 %.4f", p + 1, w0 + nw, n, s.last_a1,
                        s.last_a2);
            update++;
        }
    }
    if (!rc) rc = rb_rot_from_dense(s.r1.R, c->dim, &out->r1, err);
    for (int l = 0; l < c->n_layers && !rc; l++) rc = rb_rot_from_dense(s.r2[l].R, c->head_dim, &out->r2[l], err);
done:
    rb_free(hn);
    state_free(&s);
    if (have_fused) rb_fused_free(&f);
    if (have_prep) rb_rotset_free(&prep);
    return rc;
}

#define CQ_WINDOWS "calibration windows seen (the rotations are re-solved after each batch)"
static const rb_method_figure figures[] = {
    {"conqur_align_r1", "conqur", "windows", "align_r1", "ConQuR: corner alignment at the R1 sites during calibration",
     CQ_WINDOWS, "mean |x^R|_1 / (sqrt(d)|x|) over the batch, before its update", 0},
    {"conqur_align_r2", "conqur", "windows", "align_r2",
     "ConQuR: corner alignment at the R2 sites (per head) during calibration", CQ_WINDOWS,
     "mean |x^R|_1 / (sqrt(d_h)|x|) over the batch, before its update", 0},
    {"conqur_memory", "conqur", "windows", "rss_delta_mb", "ConQuR: memory taken by the calibration", CQ_WINDOWS,
     "resident set after each update minus at the start (MB)", 0},
    {NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0},
};

const rb_method rb_method_conqur = {
    .name = "conqur",
    .status = "done ([reading] of the abstract: R1/R2 positions, schedule and options are this harness's reconstruction)",
    .description = "ConQuR: R1 and per-layer R2 aligned with hypercube corners by online orthogonal Procrustes (SVD) while "
    "calibration windows stream through the quantized model; Hadamard R3/R4 online",
    .options = opts,
    .calibrate = calibrate,
    .calib = "",
    .figures = figures};

/* ruquant: RUQuant (METHODS §5.2–5.4). Stage 1: per decoder layer and linear input (attn_in, o_in,
 * mlp_in, down_in) a SmoothQuant scaling followed by blockdiag(R_0ᵀ)·P_zigzag·blockdiag(R_1ᵀ)·
 * (I − 2vvᵀ), fitted in closed form on that site's calibration inputs (rb_ruquant.c), applied
 * online to the activation and fused into the weights reading it (rb_fuse.c). Stage 2 (option
 * stage, default 2 as published): the four global Householder vectors of each layer fine-tuned on
 * the block-output MSE (rb_ruq_train.c). R1/R2 are the identity; R3 (per-head Hadamard on Q/K after
 * RoPE) is RUQuant's Q/K Hadamard; R4 is off since down_in gets its own transform.
 *
 * Calibration is layer-major over the prepared model (γ folded, untied; rb_fused on the set being
 * built, so every site sees the transforms already fitted upstream): for each layer and each of its
 * four sites in forward order, the stream of calibration hidden states is pushed through the layer
 * up to the site (a hook collects the site's inputs and stops the layer there), the site is fitted,
 * and once all four are fitted the stream goes through the whole layer. With calib_quant (default)
 * and an active quant setting, weights are RTN-quantized with the run's weight spec and activations
 * and K/V fake-quantized with its a/kv specs upstream of every collected site, as RUQuant does.
 *
 * Stage 2, per layer after its four sites are fitted: the FP stream (the first `samples` windows
 * through the original FP layers, no transform, no quantization) goes through FP layer l, giving
 * the targets; the quantized stream X_q (the same windows through the already trained quantized
 * layers) is the input; `epochs` passes of AdamW steps on `batch` windows each train the four
 * vectors (weights re-quantized from the current vectors every step, straight-through); the trained
 * vectors are written back and X_q goes through the trained layer. When the stage-1 stream already
 * is X_q (pseudo_sequence off, calib_quant on, quantization active) it is shared. Without any
 * quantization the block output equals the FP one and stage 2 is skipped (logged).
 *
 * Memory: the stream's hidden states (S·T·dim floats, S = calib_n windows, or 1 with
 * pseudo_sequence), the collected inputs of one site in double (S·T·width, width up to
 * max(dim, hidden_dim)) which the fit transforms in place, one layer of weights, and forward scratch
 * for one sub-batch. With 128×2048 windows of a 7B model (hidden 11008) the site buffer alone is
 * 23 GB: use pseudo_sequence (RUQuant's own setting, 180 MB) there. Stage 2 adds the FP stream and,
 * unless shared, X_q (samples·T·dim floats each), three copies of a layer's weights (W'', the
 * re-quantized W'_t, its gradient) and the tape and backward scratch of `batch` windows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_rng.h"
#include "core/rb_signal.h"
#include "model/rb_stream.h"
#include "rotate/rb_fuse.h"
#include "methods/rb_method.h"
#include "methods/rb_ruquant.h"
#include "methods/rb_ruq_train.h"

/* Upper bounds on the integer options: far beyond RUQuant's settings (K 16, λ 3), low enough that
 * a typo cannot turn calibration into hours of work. */
#define RUQ_MAX_STEPS 4096
#define RUQ_MAX_PERMS 64
#define RUQ_MAX_EPOCHS 100000

extern const rb_method rb_method_ruquant;

static const rb_method_option opts[] = {
    {"seed", "key", "0", "root seed; site <site> of layer <l> draws from stream rotation.ruquant.<l>.<site>"},
    {"r3", "key", "on", "online Hadamard on Q/K after RoPE per head (RUQuant's Q/K Hadamard)"},
    {"r4", "key", "off", "online Hadamard on the down_proj input (RUQuant transforms down_in itself)"},
    {"cross_head", "key", "off",
     "QuaRot's online Hadamard across heads on the o_proj input, before the o_in transform (o_in's smoothing then "
     "divides online)"},
    {"alpha", "real", "0.6", "SmoothQuant exponent: s_j = max|X_j|^alpha / max_i |W_ij|^(1-alpha), clamped >= 1e-5"},
    {"block", "int", "128",
     "block size B of the block-diagonal rotations; a site whose width B does not divide uses the largest "
     "divisor of its width below B (logged)"},
    {"steps", "int", "16", "K: Householder steps of get_R (RUQuant max_rotation_step)"},
    {"perms", "int", "3", "lambda: random permutation + Givens layers after each step (random_permutation_times)"},
    {"givens", "intended|code", "intended",
     "2x2 Givens block: intended [[c,-s],[s,c]] maps the pair onto its target; code: the released code's "
     "[[c,s],[-s,c]], which maps it onto the target's mirror image"},
    {"pseudo_sequence", "bool", "off",
     "off: fit on every calibration window; on: RUQuant's code, the windows' embeddings averaged element-wise "
     "into one sequence that is pushed through the layers"},
    {"smoothing", "fused|online", "fused",
     "where the SmoothQuant division x/s happens: fused = the released code's placement (its published numbers): the "
     "scales of the down_proj input are folded into up_proj's rows and, under MHA without the cross-head transform, those "
     "of the o_proj input into v_proj's rows, so up_proj and the V cache are quantized in the smoothed basis (the qkv "
     "and gate/up inputs' scales, folded into the RMSNorm weights by the code, divide online here: the same function); "
     "online = every division online, before A (the same model in full precision, not when quantized)"},
    {"calib_quant", "bool", "on",
     "calibration stream through RTN-quantized weights and quantized activations/KV of the run's quant "
     "setting (RUQuant); off: full precision"},
    {"stage", "int", "2",
     "1: stage 1 only (closed form); 2: then fine-tune each layer's four global Householder vectors on the block-output "
     "MSE (RUQuant's published setting; skipped without quantization)"},
    {"epochs", "int", "20", "stage 2: passes over the samples per layer (RUQuant: 20)"},
    {"samples", "int", "0", "stage 2: calibration windows trained on, the first ones (0: all; RUQuant: 128)"},
    {"batch", "int", "1", "stage 2: windows per AdamW step (RUQuant: 1)"},
    {"lr", "real", "0.01", "stage 2: AdamW learning rate (RUQuant lh_lr: 1e-2)"},
    {"weight_decay", "real", "0", "stage 2: AdamW decoupled weight decay (RUQuant: 0)"},
    {"guard", "real", "0.01",
     "stage 2: before each step entries with |v_i| < guard are set to +-guard (sign of v_i, + for 0; RUQuant's "
     "overflow guard); 0: off. The reflection is I - 2vv^T/|v|^2 (orthogonal for any v != 0)"},
    {NULL, NULL, NULL, NULL},
};

/* Width of site k. */
static int site_width(const rb_llama_config *c, int k) {
    return k == RB_RUQ_DOWN ? c->hidden_dim : k == RB_RUQ_OUT ? c->n_heads * c->head_dim : c->dim;
}

/* The weights reading site k: pointers into w and their row counts. Returns how many. */
static int site_weights(const rb_layer_weights *w, const rb_llama_config *c, int k, float *W[3], int rows[3]) {
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    switch (k) {
    case RB_RUQ_QKV: W[0] = w->wq, W[1] = w->wk, W[2] = w->wv, rows[0] = qd, rows[1] = rows[2] = kvd; return 3;
    case RB_RUQ_OUT: W[0] = w->wo, rows[0] = c->dim; return 1;
    case RB_RUQ_FC1: W[0] = w->w_gate, W[1] = w->w_up, rows[0] = rows[1] = c->hidden_dim; return 2;
    default: W[0] = w->w_down, rows[0] = c->dim; return 1;
    }
}

/* wmax[j] = max |W_ij| over the rows of every weight reading site k (SmoothQuant's weight side,
 * the matrices concatenated along their outputs). */
static void weight_colmax(const rb_layer_weights *w, const rb_llama_config *c, int k, double *wmax) {
    float *W[3];
    int rows[3], n = site_width(c, k), m = site_weights(w, c, k, W, rows);
    for (int j = 0; j < n; j++) wmax[j] = 0;
    for (int i = 0; i < m; i++)
        for (int r = 0; r < rows[i]; r++)
            for (int j = 0; j < n; j++) wmax[j] = fmax(wmax[j], fabs((double)W[i][(size_t)r * n + j]));
}

/* RTN of every linear of the layer with spec s (as rb_qeval's RTN path). */
static int quantize_weights(rb_layer_weights *w, const rb_llama_config *c, const rb_qspec *s, rb_error *err) {
    int rc = 0;
    for (int k = 0; k < RB_RUQ_NSITES && !rc; k++) {
        float *W[3];
        int rows[3], m = site_weights(w, c, k, W, rows);
        for (int i = 0; i < m && !rc; i++) rc = rb_quant_fake(s, W[i], rows[i], site_width(c, k), 0, err);
    }
    return rc;
}

/* Where the collect hook puts a site's inputs. */
typedef struct collect {
    double *X; /* [cap][width] */
    size_t rows, cap;
    int width;
} collect;

/* Appends the site's rows (in double) and stops the layer forward there. */
static int hook_collect(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    (void)err;
    collect *c = ctx;
    size_t rows = (size_t)in->n_seq * in->seq_len, n = rows * (size_t)in->cols;
    RB_ASSERT(in->cols == c->width && c->rows + rows <= c->cap);
    double *d = c->X + c->rows * (size_t)c->width;
    for (size_t q = 0; q < n; q++) d[q] = x[q];
    c->rows += rows;
    return 1;
}

/* The calibration state. */
typedef struct calib {
    const rb_llama_config *c;
    rb_fused fused;
    rb_weights_src src;
    rb_forward fw;
    rb_layer_weights w;
    const rb_quant_cfg *q; /* NULL: FP stream */
    rb_hooks on;           /* online transforms (R3, RUQuant) */
    rb_stream s;           /* the calibration hidden states [S][T][dim] */
    float *scratch;        /* [one sub-batch][dim] copy for partial forwards */
    double *wmax;          /* [max width] */
    collect col;
    /* stage 2 (tr.c set when it runs) */
    rb_ruq_train tr;
    const rb_weights_src *fp_src; /* the unrotated model: the FP stream's layers */
    const rb_quant_cfg *q2;       /* the run's quantization (resolved), active */
    rb_stream fp;                 /* FP stream [samples][T][dim] */
    rb_stream xq;                 /* quantized stream: own [samples][T][dim], or shared with s */
    int xq_shared;
    rb_trace_table *tt2, *tt2e;
} calib;

/* Pushes the stream through layer l with hooks hk; with `partial` each sub-batch runs on a copy
 * (the hooks stop it at a site) and the stream is left unchanged. */
static int run_layer(calib *st, int l, const rb_hooks *hk, int partial, rb_error *err) {
    return rb_stream_layer(&st->fw, &st->w, l, &st->s, hk, partial ? st->scratch : NULL, err);
}

/* Layer l's weights through the fused source (with every site fitted so far), then RTN when the
 * stream is quantized; wmax of site k (k < 0: none) from the FP weights. */
static int load_layer(calib *st, int l, int k, rb_error *err) {
    int rc = st->src.load_layer(st->src.ctx, l, &st->w, err);
    if (rc) return rc;
    if (k >= 0) weight_colmax(&st->w, st->c, k, st->wmax);
    if (st->q && st->q->w.bits < RB_QBITS_OFF) rc = quantize_weights(&st->w, st->c, &st->q->w, err);
    return rc;
}

/* Online hooks + quantization hooks (+ the collect hook at site k before the quantizer, k ≥ 0). */
static rb_hooks hooks_for(calib *st, int k) {
    rb_hooks hk = st->on;
    if (k >= 0) rb_hooks_add(&hk, rb_ruq_forward_site(k), hook_collect, &st->col);
    if (st->q)
        for (int s = 0; s < RB_SITE_COUNT; s++) rb_hooks_add(&hk, s, rb_quant_site_hook, (void *)st->q);
    return hk;
}

/* Embeddings of the windows into the stream: all of them, or their element-wise mean (pseudo). */
static int embed_stream(calib *st, const rb_method_ctx *ctx, int pseudo, rb_error *err) {
    size_t d = (size_t)st->c->dim, T = (size_t)st->s.T;
    if (!pseudo) return st->src.embed(st->src.ctx, ctx->calib, (size_t)st->s.n_seq * T, st->s.h, err);
    double *acc = calloc(T * d, sizeof *acc);
    float *e = rb_alloc(T * d * sizeof(float));
    int rc = acc && e ? 0 : rb_error_set(err, RB_ENOMEM, "ruquant: out of memory for the pseudo-sequence");
    for (int i = 0; i < ctx->calib_n && !rc; i++) {
        if ((rc = st->src.embed(st->src.ctx, ctx->calib + (size_t)i * T, T, e, err))) break;
        for (size_t q = 0; q < T * d; q++) acc[q] += e[q];
    }
    for (size_t q = 0; q < T * d && !rc; q++) st->s.h[q] = (float)(acc[q] / ctx->calib_n);
    free(acc);
    rb_free(e);
    return rc;
}

static void calib_free(calib *st) {
    if (st->tr.c) rb_ruq_train_free(&st->tr);
    rb_free(st->fp.h);
    if (!st->xq_shared) rb_free(st->xq.h);
    rb_fused_free(&st->fused);
    rb_forward_free(&st->fw);
    rb_layer_weights_free(&st->w);
    rb_free(st->s.h);
    rb_free(st->scratch);
    free(st->wmax);
    rb_free(st->col.X);
}

typedef struct ruq_opts {
    rb_ruq_fit_opts fit; /* block = the option; per site it becomes rb_ruq_block_for(width, block) */
    int pseudo, calib_quant, smooth_online, stage;
    rb_ruq_train_opts train; /* samples 0 = all windows (resolved in calibrate) */
} ruq_opts;

static int read_opts(const rb_method_ctx *ctx, ruq_opts *o, rb_error *err) {
    const rb_method *m = &rb_method_ruquant;
    int rc, givens;
    if ((rc = rb_method_opt_real(ctx, m, "alpha", 0.0, 1.0, &o->fit.alpha, err)) ||
        (rc = rb_method_opt_int(ctx, m, "block", 1, 1 << 20, &o->fit.block, err)) ||
        (rc = rb_method_opt_int(ctx, m, "steps", 0, RUQ_MAX_STEPS, &o->fit.steps, err)) ||
        (rc = rb_method_opt_int(ctx, m, "perms", 0, RUQ_MAX_PERMS, &o->fit.perms, err)) ||
        (rc = rb_method_opt_enum(ctx, m, "givens", &givens, err)) ||
        (rc = rb_method_opt_bool(ctx, m, "pseudo_sequence", &o->pseudo, err)) ||
        (rc = rb_method_opt_bool(ctx, m, "calib_quant", &o->calib_quant, err)) ||
        (rc = rb_method_opt_enum(ctx, m, "smoothing", &o->smooth_online, err)) ||
        (rc = rb_method_opt_int(ctx, m, "stage", 1, 2, &o->stage, err)) ||
        (rc = rb_method_opt_int(ctx, m, "epochs", 0, RUQ_MAX_EPOCHS, &o->train.epochs, err)) ||
        (rc = rb_method_opt_int(ctx, m, "samples", 0, 1 << 24, &o->train.samples, err)) ||
        (rc = rb_method_opt_int(ctx, m, "batch", 1, 1 << 20, &o->train.batch, err)) ||
        (rc = rb_method_opt_real(ctx, m, "lr", 1e-12, 1e3, &o->train.lr, err)) ||
        (rc = rb_method_opt_real(ctx, m, "weight_decay", 0.0, 1e3, &o->train.weight_decay, err)) ||
        (rc = rb_method_opt_real(ctx, m, "guard", 0.0, 0.5, &o->train.guard, err)))
        return rc;
    o->fit.code_givens = givens == 1;
    return 0;
}

/* Stage 2 of layer l (its four sites fitted): the FP stream through FP layer l gives the targets,
 * the layer's vectors are trained on X_q, then an own X_q goes through the trained quantized layer
 * (a shared one goes with the stage-1 stream in calibrate_layer). */
static int stage2_layer(calib *st, int l, rb_error *err) {
    int rc = st->fp_src->load_layer(st->fp_src->ctx, l, &st->w, err);
    if (!rc) rc = rb_stream_layer(&st->fw, &st->w, l, &st->fp, NULL, NULL, err);
    if (rc) return rc;
    rb_ruq_train_info info;
    if ((rc = rb_ruq_train_layer(&st->tr, l, st->xq.h, st->fp.h, st->fp.n_seq, st->tt2, &info, err)))
        return rc;
    double row[] = {l, info.trained, st->fp.n_seq, info.mse_stage1, info.mse_stage2, info.seconds};
    if ((rc = rb_trace_row(st->tt2e, row, err)) || st->xq_shared) return rc;
    if ((rc = st->src.load_layer(st->src.ctx, l, &st->w, err)) ||
        (st->q2->w.bits < RB_QBITS_OFF && (rc = quantize_weights(&st->w, st->c, &st->q2->w, err))))
        return rc;
    rb_hooks hk = st->on;
    for (int s = 0; s < RB_SITE_COUNT; s++) rb_hooks_add(&hk, s, rb_quant_site_hook, (void *)st->q2);
    return rb_stream_layer(&st->fw, &st->w, l, &st->xq, &hk, NULL, err);
}

/* Fits the four sites of layer l, trains them (stage 2), then pushes the stream through it. */
static int calibrate_layer(calib *st, int l, const ruq_opts *o, uint64_t seed, rb_rotset *out, rb_trace_table *tt,
                           rb_error *err) {
    for (int k = 0; k < RB_RUQ_NSITES; k++) {
        double t0 = rb_now();
        int rc = load_layer(st, l, k, err);
        if (rc) return rc;
        st->col.rows = 0;
        st->col.width = site_width(st->c, k);
        rb_hooks hk = hooks_for(st, k);
        if ((rc = run_layer(st, l, &hk, 1, err))) return rc;
        RB_ASSERT(st->col.rows == (size_t)st->s.n_seq * st->s.T);
        rb_ruq_fit_opts fo = o->fit;
        fo.block = rb_ruq_block_for(st->col.width, o->fit.block);
        char name[96];
        snprintf(name, sizeof name, "rotation.ruquant.%d.%s", l, rb_ruq_site_name(k));
        rb_rng rng;
        rb_rng_seed(&rng, seed, name);
        rb_ruq_fit_info fi;
        if ((rc = rb_ruq_fit_site(st->col.X, st->col.rows, st->col.width, st->wmax, &fo, &rng, &out->ruq[l][k], &fi,
                                  err)))
            return rb_error_prefix(err, "ruquant: layer %d, %s", l, rb_ruq_site_name(k));
        /* the released code's placement: the producer of down_in (up_proj) and, under MHA without the
         * cross-head transform, of o_in (v_proj) divides by s; from the next load of this layer on */
        out->ruq[l][k]->scale_fused =
            !o->smooth_online && (k == RB_RUQ_DOWN || (k == RB_RUQ_OUT && st->c->n_kv_heads == st->c->n_heads &&
                                                       !out->cross_head));
        double row[] = {l,           k,          st->col.width,       fo.block,         (double)st->col.rows,
                        fi.applied0, fi.applied1, fi.global,          fi.max_abs_smoothed, fi.max_abs_out,
                        out->ruq[l][k]->orth_err, rb_now() - t0};
        if ((rc = rb_trace_row(tt, row, err))) return rc;
    }
    int rc = st->tr.c ? stage2_layer(st, l, err) : 0;
    if (!rc) rc = load_layer(st, l, -1, err);
    if (rc) return rc;
    rb_hooks hk = hooks_for(st, -1);
    return run_layer(st, l, &hk, 0, err);
}

static int calibrate(const rb_method_ctx *ctx, rb_rotset *out, rb_error *err) {
    const rb_llama_config *c = ctx->cfg;
    ruq_opts o;
    int rc = read_opts(ctx, &o, err);
    if (rc) return rc;
    if (!ctx->calib || ctx->calib_n < 1 || ctx->calib_T < 1)
        return rb_error_set(err, RB_EINVAL, "ruquant: needs calibration windows (data.calib / --calib)");
    if ((rc = rb_method_init_set(ctx, "ruquant", 1, 0, out, err)) || (rc = rb_rotset_ruq_alloc(out, err))) return rc;
    out->cross_head = ctx->cross_head > 0; /* the o_in transform is then fitted on top of it */
    for (int k = 0; k < RB_RUQ_NSITES; k++) {
        int w = site_width(c, k), b = rb_ruq_block_for(w, o.fit.block);
        if (b != o.fit.block)
            rb_info("ruquant: %s width %d: block %d (the largest divisor of the width <= %d)", rb_ruq_site_name(k), w, b,
                    o.fit.block);
    }
    calib st = {.c = c, .s = {NULL, o.pseudo ? 1 : ctx->calib_n, ctx->calib_T, 0, NULL}};
    rb_quant_cfg qres; /* the run's quantization with o_proj resolved for this set's cross-head choice */
    if (ctx->quant) {
        qres = *ctx->quant;
        rb_quant_cfg_resolve(&qres, out->cross_head);
    }
    st.q = o.calib_quant && rb_quant_cfg_active(ctx->quant) ? &qres : NULL;
    int stage2 = o.stage == 2 && rb_quant_cfg_active(ctx->quant);
    if (o.stage == 2 && !stage2)
        rb_info("ruquant: stage 2 skipped: no quantization configured, so the quantized block output is the FP one and "
                "there is nothing to train (the result is stage 1's)");
    int S = o.train.samples ? o.train.samples : ctx->calib_n;
    if (stage2 && S > ctx->calib_n)
        return rb_error_set(err, RB_EINVAL, "rotation.options.samples: %d, but only %d calibration windows are given",
                            S, ctx->calib_n);
    o.train.samples = S;
    st.xq_shared = stage2 && !o.pseudo && st.q;
    size_t batch_rows = rb_stream_batch_rows(st.s.T, st.s.n_seq);
    if (stage2 && rb_stream_batch_rows(st.s.T, S) > batch_rows) batch_rows = rb_stream_batch_rows(st.s.T, S);
    int widest = c->dim;
    for (int k = 0; k < RB_RUQ_NSITES; k++) widest = site_width(c, k) > widest ? site_width(c, k) : widest;
    size_t rows = (size_t)st.s.n_seq * st.s.T, d = (size_t)c->dim;
    rb_info("ruquant: %d calibration sequence%s of %d tokens (%s), stream %s; holds %.1f MiB (hidden states %.1f, "
            "site inputs %.1f)",
            st.s.n_seq, st.s.n_seq > 1 ? "s" : "", st.s.T, o.pseudo ? "pseudo-sequence: mean of the windows" : "all windows",
            st.q ? st.q->name : "full precision", (rows * d * 4.0 + rows * widest * 8.0) / 1048576.0,
            rows * d * 4.0 / 1048576.0, rows * widest * 8.0 / 1048576.0);
    rb_trace_table *tt = NULL;
    if ((rc = rb_trace_table_new(ctx->trace, "ruquant",
                                 "layer,site,width,block,rows,steps_r0,steps_r1,global_householder,max_abs_smoothed,"
                                 "max_abs_out,orth_error,seconds",
                                 &tt, err)))
        return rc;
    size_t need = rows * d * sizeof(float) + rows * (size_t)widest * sizeof(double) + batch_rows * d * sizeof(float);
    if ((rc = rb_mem_check(need, "ruquant: the calibration stream (hidden states and one site's inputs in double)",
                           "lower data.calib.samples (--calib-samples), or set rotation.options.pseudo_sequence: on",
                           err)))
        return rc;
    size_t srows = (size_t)S * st.s.T;
    if (stage2) {
        size_t need2 = need + srows * d * sizeof(float) * (st.xq_shared ? 1 : 2) +
                       rb_ruq_train_bytes(c, st.s.T, o.train.batch < S ? o.train.batch : S);
        rb_info("ruquant: stage 2 on the first %d windows: %d epochs, batch %d, AdamW lr %g, weight decay %g, guard %g; "
                "quantized stream %s; holds %.1f MiB more",
                S, o.train.epochs, o.train.batch, o.train.lr, o.train.weight_decay, o.train.guard,
                st.xq_shared ? "shared with stage 1" : "kept separately", (need2 - need) / 1048576.0);
        if ((rc = rb_mem_check(need2,
                               "ruquant: stage 1 and stage 2 (FP and quantized streams, a layer's weights three times, "
                               "tape and backward scratch)",
                               "lower rotation.options.samples or batch, or data.calib.samples", err)) ||
            (rc = rb_trace_table_new(ctx->trace, "ruquant_stage2", "layer,epoch,mse,seconds", &st.tt2, err)) ||
            (rc = rb_trace_table_new(ctx->trace, "ruquant_stage2_eval",
                                     "layer,trained_sites,samples,mse_stage1,mse_stage2,seconds", &st.tt2e, err)))
            return rc;
    }
    if ((rc = rb_fused_init(&st.fused, ctx->src, c, out, err))) return rc;
    st.src = rb_fused_src(&st.fused);
    rb_hooks_init(&st.on);
    rb_fused_add_online_hooks(&st.fused, &st.on);
    st.col.cap = rows;
    st.s.h = rb_alloc(rows * d * sizeof(float));
    st.scratch = rb_alloc(batch_rows * d * sizeof(float));
    st.wmax = malloc(sizeof(double) * (size_t)widest);
    st.col.X = rb_alloc(rows * (size_t)widest * sizeof(double));
    if (!st.s.h || !st.scratch || !st.wmax || !st.col.X) {
        rc = rb_error_set(err, RB_ENOMEM, "ruquant: out of memory for %zu calibration rows", rows);
        goto done;
    }
    if ((rc = rb_forward_init(&st.fw, c, st.s.T, (int)batch_rows, err)) || (rc = rb_layer_weights_init(&st.w, c, err)) ||
        (rc = embed_stream(&st, ctx, o.pseudo, err)))
        goto done;
    if (stage2) { /* the FP stream and (unless shared) X_q, embeddings of the first S windows */
        st.fp_src = ctx->src;
        st.q2 = &qres;
        st.fp = (rb_stream){rb_alloc(srows * d * sizeof(float)), S, st.s.T, 0, NULL};
        st.xq = st.xq_shared ? (rb_stream){st.s.h, S, st.s.T, 0, NULL}
                             : (rb_stream){rb_alloc(srows * d * sizeof(float)), S, st.s.T, 0, NULL};
        if (!st.fp.h || !st.xq.h) {
            rc = rb_error_set(err, RB_ENOMEM, "ruquant: out of memory for the stage-2 streams (%zu rows)", srows);
            goto done;
        }
        if ((rc = ctx->src->embed(ctx->src->ctx, ctx->calib, srows, st.fp.h, err)) ||
            (!st.xq_shared && (rc = st.src.embed(st.src.ctx, ctx->calib, srows, st.xq.h, err))) ||
            (rc = rb_ruq_train_init(&st.tr, c, &st.fused, &qres, &o.train, st.s.T, err)))
            goto done;
    }
    rb_progress prog;
    rb_progress_init(&prog, "ruquant layers", c->n_layers);
    for (int l = 0; l < c->n_layers && !rc; l++) {
        rc = calibrate_layer(&st, l, &o, ctx->seed, out, tt, err);
        rb_progress_step(&prog, 1);
        if (!rc && rb_interrupted())
            rc = rb_error_set(err, RB_EINTERRUPTED, "ruquant: interrupted after layer %d of %d", l + 1, c->n_layers);
    }
    if (!rc) rb_progress_done(&prog);
done:
    calib_free(&st);
    return rc;
}

/* Pinned-numbers variants: stage 1 alone, and a short stage 2 (pinned numbers do not depend on how far
 * the optimizer got; the default's 20 epochs would dominate the test's runtime). */
static const char *const test_variants[] = {"stage=1", "epochs=1", NULL};

const rb_method rb_method_ruquant = {
    .name = "ruquant",
    .status = "done",
    .description = "RUQuant: per layer and linear input, SmoothQuant scaling and block Householder+Givens maps toward "
    "uniform targets (zig-zag permutation between two block rotations, one global Householder), online; Hadamard "
    "on Q/K (stage 1, closed form); stage 2 fine-tunes each layer's four global Householder vectors by AdamW on the "
    "block-output MSE of the quantized layer",
    .options = opts,
    .calibrate = calibrate,
    .calib = "",
    .test_variants = test_variants};

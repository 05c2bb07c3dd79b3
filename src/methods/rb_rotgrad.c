#include "methods/rb_rotgrad.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_h5.h"
#include "core/rb_log.h"
#include "model/rb_grad.h"
#include "rotate/rb_fuse.h"

int rb_rotgrad_init(rb_rotgrad *g, const rb_llama_config *c, rb_error *err) {
    memset(g, 0, sizeof *g);
    g->dim = c->dim, g->head_dim = c->head_dim, g->n_layers = c->n_layers;
    size_t dd = (size_t)c->dim * c->dim, hh = (size_t)c->head_dim * c->head_dim;
    g->dR1 = calloc(dd, sizeof(double));
    g->dR2 = calloc((size_t)c->n_layers, sizeof *g->dR2);
    int ok = g->dR1 && g->dR2;
    for (int l = 0; ok && l < c->n_layers; l++) ok = (g->dR2[l] = calloc(hh, sizeof(double))) != NULL;
    if (!ok) {
        rb_rotgrad_free(g);
        return rb_error_set(err, RB_ENOMEM, "rotation gradients: out of memory");
    }
    return 0;
}

int rb_rotgrad_layerwise(rb_rotgrad *g, rb_error *err) {
    int L = g->n_layers;
    size_t dd = (size_t)g->dim * g->dim;
    if (g->dRa) return 0;
    g->dRa = calloc((size_t)L + 1, sizeof *g->dRa);
    g->dRm = calloc((size_t)L, sizeof *g->dRm);
    int ok = g->dRa && g->dRm;
    for (int l = 0; ok && l <= L; l++) ok = (g->dRa[l] = calloc(dd, sizeof(double))) != NULL;
    for (int l = 0; ok && l < L; l++) ok = (g->dRm[l] = calloc(dd, sizeof(double))) != NULL;
    if (!ok)
        return rb_error_set(err, RB_ENOMEM, "rotation gradients: out of memory for %d layer-wise bases (%.1f MiB)",
                            2 * L + 1, (2.0 * L + 1) * dd * 8 / 1048576.0);
    return 0;
}

void rb_rotgrad_free(rb_rotgrad *g) {
    for (int l = 0; g->dR2 && l < g->n_layers; l++) free(g->dR2[l]);
    free(g->dR2);
    for (int l = 0; g->dRa && l <= g->n_layers; l++) free(g->dRa[l]);
    for (int l = 0; g->dRm && l < g->n_layers; l++) free(g->dRm[l]);
    free(g->dRa);
    free(g->dRm);
    free(g->dR1);
    memset(g, 0, sizeof *g);
}

/* The fused model with RTN-quantized weights for the forward, keeping the unquantized fused layer
 * for the chain rule (when weights are not quantized the engine's own layer is that layer). */
typedef struct rg_state {
    const rb_llama_config *c;
    rb_weights_src fused;
    const rb_qspec *wspec;  /* NULL: weights not quantized */
    rb_layer_weights fp;    /* the last loaded layer, fused and unquantized (only with wspec) */
    int fp_layer;
    const rb_had *ch;       /* cross-head transform (NULL: none) */
    double *M1;             /* [d][d] (global R1) */
    double **Ma, **Mm;      /* layer-wise: [L+1] / [L] of [d][d] (the gradient buffers, converted in place) */
    double **M2;            /* [L] of [hd][hd] */
    float *acc;             /* [max(d, hd)]² one product before accumulation */
    float *wo_nc, *dwo_nc;  /* [d][qd] o_proj and its gradient without the cross-head transform */
} rg_state;

static int rg_load(void *ctx, int l, rb_layer_weights *w, rb_error *err) {
    rg_state *s = ctx;
    int rc = s->fused.load_layer(s->fused.ctx, l, w, err);
    if (rc) return rc;
    const rb_llama_config *c = s->c;
    for (int lin = 0; s->wspec && lin < RB_LIN_COUNT; lin++) {
        int r, k;
        float *m = rb_layer_linear(w, c, lin, &r, &k), *keep = rb_layer_linear(&s->fp, c, lin, &r, &k);
        memcpy(keep, m, sizeof(float) * (size_t)r * k);
        if ((rc = rb_quant_fake(s->wspec, m, r, k, 0, err))) return rc;
    }
    s->fp_layer = l;
    return 0;
}
static int rg_embed(void *ctx, const int32_t *ids, size_t n, float *out, rb_error *err) {
    rg_state *s = ctx;
    return s->fused.embed(s->fused.ctx, ids, n, out, err);
}
static int rg_norm(void *ctx, float *out, rb_error *err) {
    rg_state *s = ctx;
    return s->fused.load_final_norm(s->fused.ctx, out, err);
}
static int rg_head(void *ctx, float *out, rb_error *err) {
    rg_state *s = ctx;
    return s->fused.load_lm_head(s->fused.ctx, out, err);
}

/* M[n][n] += op(A)·op(B) for float operands (one sgemm, accumulated in double). */
static void acc_gemm(rg_state *s, double *M, int n, int ta, int tb, int K, const float *A, int lda, const float *B,
                     int ldb) {
    rb_sgemm(ta, tb, n, n, K, 1.0f, A, lda, B, ldb, 0.0f, s->acc, n);
    for (size_t i = 0; i < (size_t)n * n; i++) M[i] += s->acc[i];
}

static int rg_layer(void *ctx, int l, const rb_layer_weights *w, const rb_layer_weights *dw, rb_error *err) {
    rg_state *s = ctx;
    const rb_llama_config *c = s->c;
    RB_ASSERT(s->fp_layer == l); /* the engine loads a layer right before handing its gradients over */
    const rb_layer_weights *fp = s->wspec ? &s->fp : w; /* W', the fused unquantized weights */
    int d = c->dim, hd = c->head_dim, qd = c->n_heads * hd;
    static const int readers[] = {RB_LIN_Q, RB_LIN_K, RB_LIN_V, RB_LIN_GATE, RB_LIN_UP};
    /* the bases: attention input (q,k,v), mid-layer (o output, gate/up input), next layer's (down output) */
    double *Mattn = s->Ma ? s->Ma[l] : s->M1, *Mmid = s->Ma ? s->Mm[l] : s->M1, *Mnext = s->Ma ? s->Ma[l + 1] : s->M1;
    for (int i = 0; i < 5; i++) {
        int r, k;
        const float *W = rb_layer_linear(fp, c, readers[i], &r, &k), *G = rb_layer_linear(dw, c, readers[i], &r, &k);
        acc_gemm(s, i < 3 ? Mattn : Mmid, d, 1, 0, r, W, k, G, k); /* W'ᵀ·dW' */
    }
    acc_gemm(s, Mmid, d, 0, 1, qd, fp->wo, qd, dw->wo, qd); /* Wo'·dWo'ᵀ */
    acc_gemm(s, Mnext, d, 0, 1, c->hidden_dim, fp->w_down, c->hidden_dim, dw->w_down, c->hidden_dim);
    for (int h = 0; h < c->n_kv_heads; h++) /* Wv'_h·dWv'_hᵀ */
        acc_gemm(s, s->M2[l], hd, 0, 1, d, fp->wv + (size_t)h * hd * d, d, dw->wv + (size_t)h * hd * d, d);
    const float *wo = fp->wo, *dwo = dw->wo;
    if (s->ch) { /* W_o' = W_o''·(C ⊗ I): take C off both (orthogonal, so the gradient maps the same way) */
        memcpy(s->wo_nc, fp->wo, sizeof(float) * (size_t)d * qd);
        memcpy(s->dwo_nc, dw->wo, sizeof(float) * (size_t)d * qd);
        if (rb_had_cross_rows(s->ch, s->wo_nc, (size_t)d, c->n_heads, hd, 1) ||
            rb_had_cross_rows(s->ch, s->dwo_nc, (size_t)d, c->n_heads, hd, 1))
            return rb_error_set(err, RB_ENOMEM, "rotation gradients: out of memory");
        wo = s->wo_nc, dwo = s->dwo_nc;
    }
    for (int h = 0; h < c->n_heads; h++) /* Wo'_hᵀ·dWo'_h */
        acc_gemm(s, s->M2[l], hd, 1, 0, d, wo + (size_t)h * hd, qd, dwo + (size_t)h * hd, qd);
    return 0;
}

static int rg_embed_grad(void *ctx, const int32_t *ids, const float *h0, const float *dh0, size_t rows,
                         rb_error *err) {
    (void)ids, (void)err;
    rg_state *s = ctx;
    acc_gemm(s, s->Ma ? s->Ma[0] : s->M1, s->c->dim, 1, 0, (int)rows, h0, s->c->dim, dh0, s->c->dim);
    return 0;
}

static int rg_head_grad(void *ctx, const float *hn, const float *dhn, size_t rows, rb_error *err) {
    (void)err;
    rg_state *s = ctx;
    acc_gemm(s, s->Ma ? s->Ma[s->c->n_layers] : s->M1, s->c->dim, 1, 0, (int)rows, dhn, s->c->dim, hn, s->c->dim);
    return 0;
}

/* out = R·M (R NULL: identity). */
static void left_mul(const rb_rot *R, const double *M, int n, double *out) {
    if (!R) {
        memcpy(out, M, sizeof(double) * (size_t)n * n);
        return;
    }
    rb_dgemm(0, 0, n, n, n, 1.0, R->R, n, M, n, 0.0, out, n);
}

int rb_rotgrad_run(const rb_weights_src *base, const rb_llama_config *c, const rb_rotset *rs,
                   const rb_rotgrad_opts *o, const int32_t *ids, int n_seq, int T, rb_rotgrad *g, rb_error *err) {
    if (rs && rs->ruq)
        for (int l = 0; l < rs->n_layers; l++)
            for (int k = 0; k < RB_RUQ_NSITES; k++)
                if (rs->ruq[l][k])
                    return rb_error_set(err, RB_EUNSUPPORTED,
                                        "gradients: rotation set '%s' holds RUQuant transforms (layer %d, %s): the "
                                        "chain rule into R1/R2 through their fused diag(s)*A is not derived",
                                        rs->method, l, rb_ruq_site_name(k));
    int layerwise = rs && rs->ra;
    if (layerwise && !g->dRa)
        return rb_error_set(err, RB_EINVAL, "gradients: layer-wise set without rb_rotgrad_layerwise buffers");
    if (layerwise && rs->jn)
        return rb_error_set(err, RB_EUNSUPPORTED,
                            "gradients: rotation set '%s' holds low-rank junctions: training differentiates the exact "
                            "dense junctions only (fit the low-rank ones after training)",
                            rs->method);
    rb_fused fz;
    double **acc_in = NULL, **acc_out = NULL, *Tj = NULL; /* junction gradient accumulators, a d×d temporary */
    int rc = rb_fused_init(&fz, base, c, rs, err);
    if (rc) return rc;
    int d = c->dim, hd = c->head_dim, L = c->n_layers, qd = c->n_heads * hd;
    rb_quant_cfg q;
    int quant = o && o->quant && rb_quant_cfg_active(o->quant);
    if (quant) {
        q = *o->quant;
        rb_quant_cfg_resolve(&q, rs && rs->cross_head);
    }
    rg_state s = {.c = c, .fused = rb_fused_src(&fz), .fp_layer = -1, .ch = fz.has_ch ? &fz.ch : NULL};
    s.wspec = quant && q.w.bits < RB_QBITS_OFF ? &q.w : NULL;
    int n = d > hd ? d : hd;
    s.M1 = calloc((size_t)d * d, sizeof(double));
    s.M2 = calloc((size_t)L, sizeof *s.M2);
    s.acc = rb_alloc(sizeof(float) * (size_t)n * n);
    if (s.ch) {
        s.wo_nc = rb_alloc(sizeof(float) * (size_t)d * qd);
        s.dwo_nc = rb_alloc(sizeof(float) * (size_t)d * qd);
    }
    int ok = s.M1 && s.M2 && s.acc && (!s.ch || (s.wo_nc && s.dwo_nc));
    for (int l = 0; ok && l < L; l++) ok = (s.M2[l] = calloc((size_t)hd * hd, sizeof(double))) != NULL;
    if (!ok) {
        rc = rb_error_set(err, RB_ENOMEM, "rotation gradients: out of memory");
        goto done;
    }
    if (s.wspec && (rc = rb_layer_weights_init(&s.fp, c, err))) goto done;
    if (layerwise) {
        s.Ma = g->dRa, s.Mm = g->dRm;
        for (int l = 0; l <= L; l++) memset(g->dRa[l], 0, sizeof(double) * (size_t)d * d);
        for (int l = 0; l < L; l++) memset(g->dRm[l], 0, sizeof(double) * (size_t)d * d);
        acc_in = calloc((size_t)L * RB_JN_COUNT, sizeof *acc_in);
        acc_out = calloc((size_t)L * RB_JN_COUNT, sizeof *acc_out);
        Tj = malloc(sizeof(double) * (size_t)d * d);
        if (!acc_in || !acc_out || !Tj) {
            rc = rb_error_set(err, RB_ENOMEM, "rotation gradients: out of memory");
            goto done;
        }
        for (int l = 0; l < L && !rc; l++)
            for (int k = 0; k < RB_JN_COUNT && !rc; k++) {
                int i = l * RB_JN_COUNT + k;
                acc_in[i] = k == RB_JN_ATTN ? s.Ma[l] : s.Mm[l];
                acc_out[i] = k == RB_JN_ATTN ? s.Mm[l] : s.Ma[l + 1];
                if (fz.junc.dense[i]) continue; /* exactly the identity: dL/dT still counts */
                rb_rotset_junction_exact(rs, l, k, Tj);
                rc = rb_junctions_set_dense(&fz.junc, l, k, Tj, err);
            }
        if (rc) goto done;
        fz.junc.acc_in = acc_in, fz.junc.acc_out = acc_out;
    }
    rb_hooks hk;
    rb_hooks_init(&hk);
    rb_fused_add_online_hooks(&fz, &hk);
    if (quant) rb_quant_add_train_hooks(&hk, &q, o->clipped_ste);
    rb_weights_src src = {&s, rg_load, rg_embed, rg_norm, rg_head};
    rb_grad_sink sink = {&s, rg_layer, rg_embed_grad, rg_head_grad};
    rb_grad_opts go = {.no_checkpoint = o ? o->no_checkpoint : 0, .seq_base = o ? o->seq_base : 0};
    if ((rc = rb_llama_loss_grad(&src, c, ids, n_seq, T, &hk, &go, &sink, &g->loss, err))) goto done;
    g->peak_bytes = go.peak_bytes;
    if (layerwise) { /* dB = B·M_B in place, through the one d×d temporary */
        for (int l = 0; l < 2 * L + 1; l++) {
            double *M = l <= L ? g->dRa[l] : g->dRm[l - L - 1];
            const rb_rot *B = l <= L ? rs->ra[l] : rs->rm[l - L - 1];
            if (!B) continue;
            left_mul(B, M, d, Tj);
            memcpy(M, Tj, sizeof(double) * (size_t)d * d);
        }
    } else {
        left_mul(rs ? rs->r1 : NULL, s.M1, d, g->dR1);
    }
    for (int l = 0; l < L; l++) left_mul(rs && rs->r2 ? rs->r2[l] : NULL, s.M2[l], hd, g->dR2[l]);
done:
    free(acc_in);
    free(acc_out);
    free(Tj);
    if (s.fp.wq) rb_layer_weights_free(&s.fp);
    for (int l = 0; s.M2 && l < L; l++) free(s.M2[l]);
    free(s.M2);
    free(s.M1);
    rb_free(s.acc);
    rb_free(s.wo_nc);
    rb_free(s.dwo_nc);
    rb_fused_free(&fz);
    return rc;
}

int rb_rotgrad_save(const char *path, const rb_rotgrad *g, const int32_t *ids, const rb_rotgrad_meta *m,
                    rb_error *err) {
    size_t plen = strlen(path) + 16;
    char *tmp = malloc(plen);
    if (!tmp) return rb_error_set(err, RB_ENOMEM, "out of memory");
    snprintf(tmp, plen, "%s.partial", path);
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    char d[256];
    int rc = 0;
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), gg = -1, g2 = -1;
    if (f < 0) {
        rc = rb_error_set(err, RB_EIO, "%s: cannot create %s: %s", path, tmp, rb_h5_last_error(d, sizeof d));
        goto done;
    }
    hsize_t dd[2] = {(hsize_t)g->dim, (hsize_t)g->dim}, hh[2] = {(hsize_t)g->head_dim, (hsize_t)g->head_dim};
    hsize_t wd[2] = {(hsize_t)m->windows, (hsize_t)m->seqlen};
    int bad = rb_h5_put_f64(f, "loss", g->loss) || rb_h5_put_str(f, "model", m->model) ||
              rb_h5_put_str(f, "quant", m->quant) || rb_h5_put_str(f, "rotation", m->rotation) ||
              rb_h5_put_i32(f, "seqlen", m->seqlen) || rb_h5_put_i32(f, "windows", m->windows) ||
              rb_h5_put_i32(f, "dim", g->dim) || rb_h5_put_i32(f, "head_dim", g->head_dim) ||
              rb_h5_put_i32(f, "n_layers", g->n_layers) || rb_h5_put_i32(f, "emb_center", m->emb_center) ||
              rb_h5_put_str(f, "ste", m->clipped ? "clipped" : "plain") ||
              rb_h5_put_str(f, "rotbench_version", RB_VERSION) || rb_h5_put_str(f, "blas_core", rb_blas_corename()) ||
              rb_h5_put_i32(f, "threads", rb_blas_threads()) ||
              rb_h5_put_dataset(f, "ids", 2, wd, H5T_STD_I32LE, H5T_NATIVE_INT32, ids);
    if (!bad) bad = (gg = rb_h5_group(f, "grad", 1, 1)) < 0;
    if (!bad) bad = rb_h5_put_dataset(gg, "r1", 2, dd, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, g->dR1);
    if (!bad) bad = (g2 = rb_h5_group(gg, "r2", 1, 1)) < 0;
    for (int l = 0; !bad && l < g->n_layers; l++) {
        char name[16];
        snprintf(name, sizeof name, "%d", l);
        bad = rb_h5_put_dataset(g2, name, 2, hh, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, g->dR2[l]);
    }
    rb_h5_close(&g2);
    for (int k = 0; !bad && g->dRa && k < 2; k++) { /* layer-wise bases: grad/ra/<l> (l ≤ n_layers), grad/rm/<l> */
        bad = (g2 = rb_h5_group(gg, k ? "rm" : "ra", 1, 1)) < 0;
        for (int l = 0; !bad && l < g->n_layers + !k; l++) {
            char name[16];
            snprintf(name, sizeof name, "%d", l);
            bad = rb_h5_put_dataset(g2, name, 2, dd, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, k ? g->dRm[l] : g->dRa[l]);
        }
        rb_h5_close(&g2);
    }
    rb_h5_close(&gg);
    if (bad) {
        rc = rb_error_set(err, RB_EIO, "%s: writing %s failed: %s", path, tmp, rb_h5_last_error(d, sizeof d));
        goto done;
    }
    herr_t cl = H5Fclose(f); /* the final flush: a full disk shows up here */
    f = -1;
    if (cl < 0) {
        rc = rb_error_set(err, RB_EIO, "%s: closing %s failed: %s", path, tmp, rb_h5_last_error(d, sizeof d));
        goto done;
    }
    rc = rb_rename_durable(tmp, path, err);
done:
    rb_h5_close(&f);
    if (rc) unlink(tmp);
    rb_h5_quiet_off(&q);
    free(tmp);
    return rc;
}

#include "model/rb_grad.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_math.h"
#include "core/rb_signal.h"
#include "model/rb_stream.h"

/* Rows of logits held at once by the loss head: 512 × vocab floats (64 MiB at a 32k vocabulary). */
#define RB_GRAD_LOGIT_ROWS 512

void rb_layer_weights_zero(rb_layer_weights *w, const rb_llama_config *c) {
    int r, k;
    for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
        float *m = rb_layer_linear(w, c, lin, &r, &k);
        memset(m, 0, sizeof(float) * (size_t)r * k);
    }
    memset(w->rms_att, 0, sizeof(float) * c->dim);
    memset(w->rms_ffn, 0, sizeof(float) * c->dim);
}

typedef struct grad_state {
    const rb_llama_config *c;
    int n_seq, T, per, n_sub, L;
    size_t rows, d, max_rows;
    float *ckpt;     /* [L+1 or 2][rows][dim]: layer inputs (all, or only h0 and h_L without checkpointing) */
    float *dh;       /* [rows][dim] */
    float *hbuf;     /* [max_rows][dim] a sub-batch's hidden states during the recompute */
    rb_tape *tapes;  /* [1] with checkpointing, [L][n_sub] without */
    int n_tapes;     /* tapes initialized */
    int no_ckpt;
    rb_forward f;
    rb_backward b;
    rb_layer_weights w, dw;
    int have_f, have_b, have_w, have_dw;
    float *head_w;   /* [vocab][dim] lm_head */
    float *norm;     /* [dim] final norm weight */
    float *hn, *dhn; /* [RB_GRAD_LOGIT_ROWS][dim] */
    float *logits;   /* [RB_GRAD_LOGIT_ROWS][vocab] */
} grad_state;

static void state_free(grad_state *g) {
    for (int i = 0; i < g->n_tapes; i++) rb_tape_free(&g->tapes[i]);
    free(g->tapes);
    if (g->have_f) rb_forward_free(&g->f);
    if (g->have_b) rb_backward_free(&g->b);
    if (g->have_w) rb_layer_weights_free(&g->w);
    if (g->have_dw) rb_layer_weights_free(&g->dw);
    rb_free(g->ckpt);
    rb_free(g->dh);
    rb_free(g->hbuf);
    rb_free(g->head_w);
    rb_free(g->norm);
    rb_free(g->hn);
    rb_free(g->dhn);
    rb_free(g->logits);
}

static float *h_at(grad_state *g, int l) {
    /* without checkpointing only h0 (slot 0) and h_L (slot 1) are kept */
    int slot = g->no_ckpt ? (l == 0 ? 0 : 1) : l;
    return g->ckpt + (size_t)slot * g->rows * g->d;
}

static int state_init(grad_state *g, const rb_llama_config *c, int n_seq, int T, int no_ckpt, size_t *bytes,
                      rb_error *err) {
    memset(g, 0, sizeof *g);
    g->c = c;
    g->n_seq = n_seq, g->T = T, g->L = c->n_layers;
    g->per = rb_stream_batch_seqs(T, n_seq);
    g->n_sub = (n_seq + g->per - 1) / g->per;
    g->rows = (size_t)n_seq * T, g->d = (size_t)c->dim;
    g->max_rows = (size_t)g->per * T;
    g->no_ckpt = no_ckpt;
    int made = no_ckpt ? g->L * g->n_sub : 1;
    size_t n_ckpt = no_ckpt ? 2 : (size_t)g->L + 1, V = (size_t)c->vocab_size, fs = sizeof(float);
    size_t lw = 0;
    for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
        int r, k;
        rb_layer_linear_shape(c, lin, &r, &k);
        lw += (size_t)r * k;
    }
    *bytes = fs * (n_ckpt * g->rows * g->d + 2 * g->rows * g->d + 2 * (lw + 2 * g->d) + V * g->d +
                   RB_GRAD_LOGIT_ROWS * (2 * g->d + V)) +
             (size_t)made * rb_tape_bytes(c, (int)g->max_rows) + rb_backward_bytes(c, T, (int)g->max_rows);
    int rc = rb_mem_check(*bytes, "the backward pass (checkpoints, tapes, weights and their gradients)",
                          no_ckpt ? "use checkpointing or fewer windows" : "use fewer or shorter windows", err);
    if (rc) return rc;
    g->ckpt = rb_alloc(n_ckpt * g->rows * g->d * fs);
    g->dh = rb_alloc(g->rows * g->d * fs);
    g->hbuf = rb_alloc(g->max_rows * g->d * fs);
    g->head_w = rb_alloc(V * g->d * fs);
    g->norm = rb_alloc(g->d * fs);
    g->hn = rb_alloc(RB_GRAD_LOGIT_ROWS * g->d * fs);
    g->dhn = rb_alloc(RB_GRAD_LOGIT_ROWS * g->d * fs);
    g->logits = rb_alloc(RB_GRAD_LOGIT_ROWS * V * fs);
    g->tapes = calloc((size_t)made, sizeof *g->tapes);
    if (!g->ckpt || !g->dh || !g->hbuf || !g->head_w || !g->norm || !g->hn || !g->dhn || !g->logits || !g->tapes)
        return rb_error_set(err, RB_ENOMEM, "backward: out of memory (%.1f MiB)", *bytes / 1048576.0);
    for (int i = 0; i < made; i++, g->n_tapes++)
        if ((rc = rb_tape_init(&g->tapes[i], c, (int)g->max_rows, err))) return rc;
    if ((rc = rb_forward_init(&g->f, c, T, (int)g->max_rows, err))) return rc;
    g->have_f = 1;
    if ((rc = rb_backward_init(&g->b, c, T, (int)g->max_rows, err))) return rc;
    g->have_b = 1;
    if ((rc = rb_layer_weights_init(&g->w, c, err))) return rc;
    g->have_w = 1;
    if ((rc = rb_layer_weights_init(&g->dw, c, err))) return rc;
    g->have_dw = 1;
    return 0;
}

/* Loss head over rows [r0, r0+nr) of h_L: final norm, logits, cross-entropy of rows that have a next
 * token, dL/dh_L into g->dh. Adds the chunk's NLL to *nll_sum. */
static int head_chunk(grad_state *g, const int32_t *ids, size_t r0, int nr, double inv_n, double *nll_sum,
                      const rb_grad_sink *sink, rb_error *err) {
    const rb_llama_config *c = g->c;
    int V = c->vocab_size, d = c->dim;
    const float *hL = h_at(g, g->L) + r0 * g->d;
    rb_rmsnorm(g->hn, hL, g->norm, (size_t)nr, d, c->rms_eps);
    rb_llama_logits(g->hn, (size_t)nr, g->head_w, c, g->logits);
    for (int r = 0; r < nr; r++) {
        size_t gr = r0 + (size_t)r;
        float *row = g->logits + (size_t)r * V;
        if ((int)(gr % g->T) == g->T - 1) { /* the window's last position predicts nothing */
            memset(row, 0, sizeof(float) * V);
            continue;
        }
        int32_t tgt = ids[gr + 1];
        RB_ASSERT(tgt >= 0 && tgt < V);
        float mx = rb_vmax(row, V);
        double sum = 0.0;
        for (int j = 0; j < V; j++) sum += (double)rb_expf_fast(row[j] - mx);
        double lse = (double)mx + log(sum), nll = lse - (double)row[tgt];
        if (!isfinite(nll))
            return rb_error_set(err, RB_ENUMERIC, "loss: non-finite cross-entropy at sequence %zu, token %zu",
                                gr / g->T, gr % g->T);
        *nll_sum += nll;
        for (int j = 0; j < V; j++) row[j] = (float)(exp((double)row[j] - lse) * inv_n);
        row[tgt] -= (float)inv_n;
    }
    rb_sgemm(0, 0, nr, d, V, 1.0f, g->logits, V, g->head_w, d, 0.0f, g->dhn, d); /* dhn = dlogits · W_lm */
    if (sink && sink->head) {
        int rc = sink->head(sink->ctx, g->hn, g->dhn, (size_t)nr, err);
        if (rc) return rc;
    }
    float *dh = g->dh + r0 * g->d;
    memset(dh, 0, sizeof(float) * (size_t)nr * d);
    rb_rmsnorm_backward(hL, g->norm, g->dhn, dh, NULL, (size_t)nr, d, c->rms_eps);
    return 0;
}

static int interrupted(const char *what, int l, int L, rb_error *err) {
    if (!rb_interrupted()) return 0;
    return rb_error_set(err, RB_EINTERRUPTED, "interrupted in the %s after layer %d of %d", what, l, L);
}

int rb_llama_loss_grad(const rb_weights_src *src, const rb_llama_config *c, const int32_t *ids, int n_seq, int T,
                       const rb_hooks *hooks, rb_grad_opts *o, const rb_grad_sink *sink, double *loss,
                       rb_error *err) {
    RB_ASSERT(T >= 2 && n_seq > 0);
    rb_grad_opts dflt = {0};
    if (!o) o = &dflt;
    int rc = rb_hooks_check_backward(hooks, -1, err); /* the same hooks run in every layer */
    if (rc) return rc;
    grad_state g;
    size_t bytes = 0;
    if ((rc = state_init(&g, c, n_seq, T, o->no_checkpoint, &bytes, err))) goto done;
    o->peak_bytes = bytes;
    size_t d = g.d;

    /* forward: h0, then each layer's input (or its tapes) */
    if ((rc = src->embed(src->ctx, ids, g.rows, h_at(&g, 0), err))) goto done;
    float *h = g.dh; /* the running hidden states (dh is free until the head) */
    memcpy(h, h_at(&g, 0), g.rows * d * sizeof(float));
    for (int l = 0; l < g.L; l++) {
        if (!o->no_checkpoint && l > 0) memcpy(h_at(&g, l), h, g.rows * d * sizeof(float)); /* h0 is there */
        if ((rc = src->load_layer(src->ctx, l, &g.w, err))) goto done;
        for (int sb = 0; sb < g.n_sub; sb++) {
            int s0 = sb * g.per, ns = n_seq - s0 < g.per ? n_seq - s0 : g.per;
            g.f.tape = o->no_checkpoint ? &g.tapes[l * g.n_sub + sb] : NULL;
            rc = rb_forward_layer(&g.f, &g.w, l, h + (size_t)s0 * T * d, ns, T, o->seq_base + s0, hooks, err);
            g.f.tape = NULL;
            if (rc > 0) rc = rb_error_set(err, RB_EINVAL, "loss: a hook stopped layer %d", l);
            if (rc) goto done;
        }
        if ((rc = interrupted("forward", l + 1, g.L, err))) goto done;
    }
    memcpy(h_at(&g, g.L), h, g.rows * d * sizeof(float));

    /* loss head, in row chunks */
    if ((rc = src->load_final_norm(src->ctx, g.norm, err)) || (rc = src->load_lm_head(src->ctx, g.head_w, err)))
        goto done;
    double nll = 0.0, inv_n = 1.0 / ((double)n_seq * (T - 1));
    for (size_t r0 = 0; r0 < g.rows; r0 += RB_GRAD_LOGIT_ROWS) {
        int nr = g.rows - r0 < RB_GRAD_LOGIT_ROWS ? (int)(g.rows - r0) : RB_GRAD_LOGIT_ROWS;
        if ((rc = head_chunk(&g, ids, r0, nr, inv_n, &nll, sink, err))) goto done;
    }
    *loss = nll * inv_n;

    /* backward, layer by layer in reverse */
    for (int l = g.L - 1; l >= 0; l--) {
        if ((rc = src->load_layer(src->ctx, l, &g.w, err))) goto done;
        rb_layer_weights_zero(&g.dw, c);
        for (int sb = 0; sb < g.n_sub; sb++) {
            int s0 = sb * g.per, ns = n_seq - s0 < g.per ? n_seq - s0 : g.per;
            size_t off = (size_t)s0 * T * d;
            rb_tape *tp = &g.tapes[0];
            if (o->no_checkpoint) {
                tp = &g.tapes[l * g.n_sub + sb];
            } else { /* recompute this sub-batch's tape from the layer's checkpointed input */
                memcpy(g.hbuf, h_at(&g, l) + off, sizeof(float) * (size_t)ns * T * d);
                g.f.tape = tp;
                rc = rb_forward_layer(&g.f, &g.w, l, g.hbuf, ns, T, o->seq_base + s0, hooks, err);
                g.f.tape = NULL;
                if (rc > 0) rc = rb_error_set(err, RB_EINVAL, "loss: a hook stopped layer %d", l);
                if (rc) goto done;
            }
            if ((rc = rb_backward_layer(&g.b, &g.f, tp, &g.w, hooks, g.dh + off, &g.dw, err))) goto done;
        }
        long bad = rb_first_nonfinite(g.dh, g.rows * d);
        if (bad >= 0) {
            rc = rb_error_set(err, RB_ENUMERIC, "backward: layer %d: non-finite gradient %g (sequence %zu, token %zu)", l,
                              (double)g.dh[bad], (size_t)bad / d / T, (size_t)bad / d % T);
            goto done;
        }
        if (sink && sink->layer && (rc = sink->layer(sink->ctx, l, &g.w, &g.dw, err))) goto done;
        if ((rc = interrupted("backward", g.L - l, g.L, err))) goto done;
    }
    if (sink && sink->embed) rc = sink->embed(sink->ctx, ids, h_at(&g, 0), g.dh, g.rows, err);
done:
    state_free(&g);
    return rc;
}

#include "rb_ppl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_signal.h"
#include "model/rb_stream.h"

/* Default bound on hidden states held between layers: windows beyond it are processed in further
 * chunks (each re-reading the weights), so a 70B evaluation fits in memory. */
#define RB_PPL_DEFAULT_HIDDEN_BYTES ((size_t)6 << 30)
/* Rows of logits computed at once: bounds the [rows][vocab] buffer (≈260 MB at Llama-3's vocab). */
#define RB_PPL_LOGIT_ROWS 512

int rb_ppl_protocol_from_name(const char *name) {
    if (!strcmp(name, "gptq")) return RB_PPL_GPTQ;
    if (!strcmp(name, "llamacpp")) return RB_PPL_LLAMACPP;
    return -1;
}

const char *rb_ppl_protocol_name(int p) { return p == RB_PPL_GPTQ ? "gptq" : p == RB_PPL_LLAMACPP ? "llamacpp" : "?"; }

int rb_ppl_windows(const int32_t *tokens, size_t n, const rb_ppl_opts *o, int32_t **win, int *n_win, int *first,
                   rb_error *err) {
    *win = NULL;
    *n_win = 0;
    if (o->seqlen < 2) return rb_error_set(err, RB_EINVAL, "perplexity: seqlen must be at least 2, got %d", o->seqlen);
    size_t T = (size_t)o->seqlen;
    size_t W = n / T;
    if (o->max_windows > 0 && W > (size_t)o->max_windows) W = (size_t)o->max_windows;
    if (W == 0)
        return rb_error_set(err, RB_EINVAL, "perplexity: %zu tokens are fewer than one window of %d", n, o->seqlen);
    if (W > INT32_MAX) return rb_error_set(err, RB_EINVAL, "perplexity: too many windows");
    if (o->protocol == RB_PPL_LLAMACPP && o->bos_id < 0)
        return rb_error_set(err, RB_EINVAL, "perplexity: protocol llamacpp needs a BOS token id");
    int32_t *w = malloc(W * T * sizeof *w);
    if (!w) return rb_error_set(err, RB_ENOMEM, "perplexity: out of memory");
    memcpy(w, tokens, W * T * sizeof *w);
    if (o->protocol == RB_PPL_LLAMACPP)
        for (size_t i = 0; i < W; i++) w[i * T] = o->bos_id;
    *win = w;
    *n_win = (int)W;
    *first = o->protocol == RB_PPL_LLAMACPP ? o->seqlen / 2 : 0;
    return 0;
}

void rb_ppl_result_free(rb_ppl_result *r) {
    free(r->win_nll);
    free(r->win_scored);
    memset(r, 0, sizeof *r);
}

int rb_ppl_run(const rb_weights_src *src, const rb_llama_config *c, const int32_t *tokens, size_t n,
               const rb_ppl_opts *o, const rb_hooks *hooks, rb_ppl_result *res, rb_error *err) {
    memset(res, 0, sizeof *res);
    double t0 = rb_now();
    int32_t *win = NULL;
    int W = 0, first = 0;
    int rc = rb_ppl_windows(tokens, n, o, &win, &W, &first, err);
    if (rc) return rc;
    for (size_t i = 0; i < (size_t)W * o->seqlen; i++)
        if (win[i] < 0 || win[i] >= c->vocab_size) {
            int32_t id = win[i]; /* read before the free (issue 16: was a use after free) */
            free(win);
            return rb_error_set(err, RB_EINVAL, "perplexity: token id %d at position %zu is outside the vocabulary (%d)",
                                id, i, c->vocab_size);
        }
    int T = o->seqlen;
    size_t per_win = (size_t)T * c->dim * sizeof(float);
    size_t budget = o->max_hidden_bytes ? o->max_hidden_bytes : RB_PPL_DEFAULT_HIDDEN_BYTES;
    /* chunks are cheap (each re-reads the weights once): keep half of the free memory for the rest */
    size_t half_free = rb_mem_available() / 2;
    if (!o->max_hidden_bytes && budget > half_free) budget = half_free;
    int chunk = (int)(budget / per_win);
    if (chunk < 1) chunk = 1;
    if (chunk > W) chunk = W;
    size_t lrows = RB_PPL_LOGIT_ROWS < T ? RB_PPL_LOGIT_ROWS : (size_t)T;
    /* the vocabulary matrix (4.2 GB for Llama-3-70B) and one window are the least it needs */
    size_t fixed = (size_t)c->vocab_size * c->dim * sizeof(float) + lrows * (size_t)c->vocab_size * sizeof(float);
    if ((rc = rb_mem_check(fixed + (size_t)chunk * per_win,
                           "perplexity: the output head, a block of logits and the hidden states of a window",
                           "lower the sequence length (--seqlen, data.eval[].seqlen)", err))) {
        free(win);
        return rc;
    }
    float *hn = rb_alloc((size_t)chunk * per_win);
    float *head = rb_alloc((size_t)c->vocab_size * c->dim * sizeof(float));
    float *logits = rb_alloc(lrows * (size_t)c->vocab_size * sizeof(float));
    double *nll = malloc(lrows * sizeof *nll);
    res->win_nll = calloc((size_t)W, sizeof *res->win_nll);
    res->win_scored = calloc((size_t)W, sizeof *res->win_scored);
    if (!hn || !head || !logits || !nll || !res->win_nll || !res->win_scored) {
        rc = rb_error_set(err, RB_ENOMEM, "perplexity: out of memory (%d windows of %d tokens per chunk)", chunk, T);
        goto done;
    }
    if ((rc = src->load_lm_head(src->ctx, head, err))) goto done;
    rb_progress prog;
    rb_progress_init(&prog, "perplexity windows", W);
    for (int w0 = 0; w0 < W; w0 += chunk) {
        int nw = W - w0 < chunk ? W - w0 : chunk;
        rc = rb_llama_hidden(src, c, win + (size_t)w0 * T, nw, T, w0, hooks, hn, err);
        if (rc) goto done;
        for (int s = 0; s < nw; s++) {
            const int32_t *ids = win + (size_t)(w0 + s) * T;
            const float *hs = hn + (size_t)s * T * c->dim;
            double wsum = 0.0;
            /* position p predicts ids[p+1]; scored positions are [first, T-1) */
            for (int p0 = first; p0 < T - 1; p0 += (int)lrows) {
                int nr = T - 1 - p0 < (int)lrows ? T - 1 - p0 : (int)lrows;
                rb_llama_logits(hs + (size_t)p0 * c->dim, (size_t)nr, head, c, logits);
                rb_nll_rows(logits, (size_t)nr, c->vocab_size, ids + p0 + 1, nll);
                for (int r = 0; r < nr; r++) wsum += nll[r];
            }
            if (!isfinite(wsum)) {
                rc = rb_error_set(err, RB_ENUMERIC, "perplexity: window %d: NLL is %g (the logits overflowed float32)",
                                  w0 + s, wsum);
                goto done;
            }
            res->win_nll[w0 + s] = wsum;
            res->win_scored[w0 + s] = T - 1 - first;
            res->nll_sum += wsum;
            res->scored += T - 1 - first;
        }
        rb_progress_step(&prog, nw);
        if (rb_interrupted()) {
            rc = rb_error_set(err, RB_EINTERRUPTED, "interrupted after %d of %d windows", w0 + nw, W);
            goto done;
        }
    }
    rb_progress_done(&prog);
    res->windows = W;
    res->tokens = n;
    res->ppl = exp(res->nll_sum / (double)res->scored);
    res->seconds = rb_now() - t0;
done:
    free(win);
    rb_free(hn);
    rb_free(head);
    rb_free(logits);
    free(nll);
    if (rc) rb_ppl_result_free(res);
    return rc;
}

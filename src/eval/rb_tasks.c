/* Zero-shot task scoring: requests → packed sequences → layer-major forward (quantized and FP side
 * by side) → continuation log-likelihoods → metrics (rb_tasks.h). */
#include "eval/rb_tasks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_math.h"
#include "core/rb_signal.h"
#include "model/rb_stream.h"

/* Rows per packed sequence: documents are first-fit into sequences this long (a longer document gets a
 * sequence of its own length). Attention only multiplies each query block's visible key span, so the
 * length bounds padding waste, not work. */
#define RB_TASK_PACK_ROWS 512
/* Scored rows per logits product: bounds the [rows][vocab] buffer (≈65 MB at Llama-3's vocab). */
#define RB_TASK_LOGIT_ROWS 128
/* Hidden states held at once (both streams); beyond it the packed sequences are processed in chunks,
 * each re-reading the weights (as rb_ppl). */
#define RB_TASK_HIDDEN_BYTES ((size_t)6 << 30)
/* Requests per document (choices) supported: rb_task_decide's scratch. */
#define RB_TASK_MAX_CHOICES 64
/* lm-eval's max_length when the model does not say (HFLM's _DEFAULT_MAX_LENGTH). */
#define RB_TASK_DEFAULT_MAX_LENGTH 2048

int rb_task_bos_from_name(const char *name) {
    if (!strcmp(name, "none")) return RB_TASK_BOS_NONE;
    if (!strcmp(name, "tokenizer-default")) return RB_TASK_BOS_DEFAULT;
    return -1;
}

const char *rb_task_bos_name(int bos) { return bos == RB_TASK_BOS_DEFAULT ? "tokenizer-default" : "none"; }

/* One request's tokens: seq[0..n) = context + continuation after truncation; the model reads seq[0..n-1)
 * and positions [n-1-n_cont, n-1) score seq[p+1]. */
typedef struct treq {
    int32_t *seq;
    int n, n_cont;
    int seg; /* row of seq[P] within its document's packed rows (P = the document's shared prefix) */
} treq;

/* A packed document (or, in separate mode, a single request). */
typedef struct tdoc {
    int r0, n_req; /* global requests [r0, r0 + n_req) */
    int P;         /* shared input prefix rows */
    int len;       /* packed rows: P + Σ (n_k − 1 − P) */
    int seq, off;  /* packed sequence and first row there */
    int set;       /* the task set its requests belong to */
} tdoc;

/* Python str.rstrip() whitespace, ASCII part (the task texts hold no other trailing whitespace). */
static int is_ws(unsigned char ch) { return ch == ' ' || (ch >= '\t' && ch <= '\r') || (ch >= 0x1c && ch <= 0x1f); }

static size_t code_points(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* lm-eval's _encode_pair + left truncation into r. */
static int tokenize_lmeval(const rb_tokenizer *tok, const char *ctx, const char *cont, int bos, int L, treq *r,
                           int *truncated, const char *where, rb_error *err) {
    size_t lc = strlen(ctx), lk = strlen(cont), ns = 0;
    while (ns < lc && is_ws((unsigned char)ctx[lc - 1 - ns])) ns++;
    char *whole = malloc(lc + lk + 1);
    if (!whole) return rb_error_set(err, RB_ENOMEM, "tasks: out of memory");
    memcpy(whole, ctx, lc);
    memcpy(whole + lc, cont, lk + 1);
    size_t lctx = lc - ns; /* the context without its trailing spaces; they lead the continuation */
    int32_t *ci = NULL, *wi = NULL;
    size_t nc = 0, nw = 0;
    int rc;
    if (lctx == 0) { /* lm-eval: an empty context is the prefix token (BOS, else EOS) */
        int pre = rb_tokenizer_bos(tok) >= 0 ? rb_tokenizer_bos(tok) : rb_tokenizer_eos(tok);
        if (pre < 0) {
            free(whole);
            return rb_error_set(err, RB_EINVAL, "%s: empty context and the tokenizer has no BOS or EOS", where);
        }
        int32_t *k = NULL;
        size_t nk = 0;
        if ((rc = rb_tokenizer_encode(tok, whole, lc + lk, 0, &k, &nk, err))) goto done;
        if (!(wi = malloc((nk + 1) * sizeof *wi))) {
            free(k);
            rc = rb_error_set(err, RB_ENOMEM, "tasks: out of memory");
            goto done;
        }
        wi[0] = pre;
        memcpy(wi + 1, k, nk * sizeof *k);
        free(k);
        nw = nk + 1, nc = 1;
    } else {
        if ((rc = rb_tokenizer_encode(tok, whole, lctx, bos, &ci, &nc, err)) || (rc = rb_tokenizer_encode(tok, whole, lc + lk, bos, &wi, &nw, err)))
            goto done;
    }
    if (nw <= nc) {
        rc = rb_error_set(err, RB_EINVAL, "%s: the continuation '%s' adds no token to its context", where, cont);
        goto done;
    }
    /* the model reads ctx_ids + whole[len(ctx_ids):] (the context tokenized alone) */
    if (ci) memcpy(wi, ci, nc * sizeof *ci);
    r->n_cont = (int)(nw - nc);
    if (r->n_cont > L) {
        rc = rb_error_set(err, RB_EINVAL, "%s: the continuation is %d tokens, more than max_length %d (lm-eval refuses it too; "
                           "raise --max-length / data.task_max_length)", where, r->n_cont, L);
        goto done;
    }
    size_t keep = nw > (size_t)L + 1 ? (size_t)L + 1 : nw;
    if (keep < nw) {
        memmove(wi, wi + (nw - keep), keep * sizeof *wi);
        (*truncated)++;
    }
    r->seq = wi, r->n = (int)keep, wi = NULL;
done:
    free(whole);
    free(ci);
    free(wi);
    return rc;
}

int rb_task_encode_pair(const rb_tokenizer *tok, const char *ctx, const char *cont, int bos, int max_length,
                        int32_t **seq, int *n, int *n_cont, int *truncated, const char *where, rb_error *err) {
    treq r = {0};
    int t = 0;
    *seq = NULL, *n = *n_cont = 0, *truncated = 0;
    int rc = tokenize_lmeval(tok, ctx, cont, bos, max_length, &r, &t, where, err);
    if (rc) return rc;
    *seq = r.seq, *n = r.n, *n_cont = r.n_cont, *truncated = t;
    return 0;
}

/* llama.cpp's HellaSwag: the whole string with BOS; the scored tail is set per document. */
static int tokenize_llamacpp(const rb_tokenizer *tok, const char *ctx, const char *cont, int L, treq *r,
                             const char *where, rb_error *err) {
    size_t lc = strlen(ctx), lk = strlen(cont);
    char *whole = malloc(lc + lk + 1);
    if (!whole) return rb_error_set(err, RB_ENOMEM, "tasks: out of memory");
    memcpy(whole, ctx, lc);
    memcpy(whole + lc, cont, lk + 1);
    size_t n = 0;
    int rc = rb_tokenizer_encode(tok, whole, lc + lk, 1, &r->seq, &n, err);
    free(whole);
    if (rc) return rc;
    r->n = (int)n;
    if (n > (size_t)L) /* llama.cpp: "task does not fit in the context window" */
        return rb_error_set(err, RB_EINVAL, "%s: %zu tokens do not fit the context window of %d", where, n, L);
    return 0;
}

static int lcp(const treq *a, const treq *b, int n) {
    int i = 0;
    while (i < n && a->seq[i] == b->seq[i]) i++;
    return i;
}

/* Everything one rb_tasks_run keeps. */
typedef struct tjob {
    const rb_llama_config *c;
    treq *req;          /* [n_req] all sets' requests */
    int n_req;
    tdoc *doc;          /* [n_doc] */
    int n_doc;
    int T, n_seq;       /* packed sequences */
    int32_t *ids;       /* [n_seq*T] */
    int32_t *pos, *pre_lo, *pre_hi, *self_lo; /* [n_seq*T] layout */
} tjob;

static void tjob_free(tjob *j) {
    for (int i = 0; i < j->n_req; i++) free(j->req[i].seq);
    free(j->req);
    free(j->doc);
    free(j->ids);
    free(j->pos);
    free(j->pre_lo);
    free(j->pre_hi);
    free(j->self_lo);
    memset(j, 0, sizeof *j);
}

/* Result arrays of a set (the FP side when fp). */
static int result_alloc(rb_task_result *r, const rb_task_set *ts, int fp) {
    rb_task_scores *s = fp ? &r->fp : &r->q;
    s->ll = calloc((size_t)r->n_req, sizeof *s->ll);
    s->greedy = calloc((size_t)r->n_req, 1);
    s->correct = calloc((size_t)ts->n_docs, 1);
    s->correct_norm = calloc((size_t)ts->n_docs, 1);
    s->acc = s->acc_norm = s->ppl = NAN;
    return s->ll && s->greedy && s->correct && s->correct_norm ? 0 : -1;
}

void rb_task_result_free(rb_task_result *r) {
    rb_task_scores *s[2] = {&r->q, &r->fp};
    for (int i = 0; i < 2; i++) {
        free(s[i]->ll);
        free(s[i]->greedy);
        free(s[i]->correct);
        free(s[i]->correct_norm);
    }
    free(r->req_off);
    free(r->gold);
    free(r->n_tok);
    free(r->n_chars);
    memset(r, 0, sizeof *r);
}

/* Tokenizes every request of every set; fills res' request tables. */
static int build_requests(tjob *j, const rb_tokenizer *tok, const rb_task_set *sets, int n_sets, const rb_tasks_opts *o,
                          int L, rb_task_result *res, int fp, rb_error *err) {
    int total = 0;
    for (int s = 0; s < n_sets; s++)
        for (int d = 0; d < sets[s].n_docs; d++) total += sets[s].docs[d].n_req;
    j->req = calloc((size_t)total, sizeof *j->req);
    if (!j->req) return rb_error_set(err, RB_ENOMEM, "tasks: out of memory for %d requests", total);
    j->n_req = total;
    int g = 0;
    char where[1200];
    for (int s = 0; s < n_sets; s++) {
        const rb_task_set *ts = &sets[s];
        rb_task_result *r = &res[s];
        r->task = ts->task, r->scoring = ts->scoring, r->n_docs = ts->n_docs, r->bos = o->bos, r->max_length = L;
        r->n_req = 0;
        for (int d = 0; d < ts->n_docs; d++) r->n_req += ts->docs[d].n_req;
        r->req_off = malloc(((size_t)ts->n_docs + 1) * sizeof *r->req_off);
        r->gold = malloc((size_t)ts->n_docs * sizeof *r->gold);
        r->n_tok = malloc((size_t)r->n_req * sizeof *r->n_tok);
        r->n_chars = malloc((size_t)r->n_req * sizeof *r->n_chars);
        if (!r->req_off || !r->gold || !r->n_tok || !r->n_chars || result_alloc(r, ts, 0) || (fp && result_alloc(r, ts, 1)))
            return rb_error_set(err, RB_ENOMEM, "tasks: out of memory");
        r->have_fp = fp;
        int k = 0;
        for (int d = 0; d < ts->n_docs; d++) {
            const rb_task_doc *doc = &ts->docs[d];
            r->req_off[d] = k;
            r->gold[d] = doc->gold;
            snprintf(where, sizeof where, "%s:%d", ts->path ? ts->path : rb_task_name(ts->task), doc->line);
            int g0 = g;
            if (doc->n_req > RB_TASK_MAX_CHOICES)
                return rb_error_set(err, RB_EUNSUPPORTED, "%s: %d choices; at most %d are supported", where, doc->n_req,
                                    RB_TASK_MAX_CHOICES);
            for (int i = 0; i < doc->n_req; i++, k++, g++) {
                int rc = ts->scoring == RB_SCORE_LLAMACPP
                             ? tokenize_llamacpp(tok, doc->ctx[i], doc->cont[i], L, &j->req[g], where, err)
                             : tokenize_lmeval(tok, doc->ctx[i], doc->cont[i], o->bos, L, &j->req[g], &r->truncated,
                                               where, err);
                if (rc) return rc;
                r->n_chars[k] = (int)code_points(doc->choice[i]);
            }
            if (ts->scoring == RB_SCORE_LLAMACPP) { /* score what follows the common prefix of all endings */
                int P = j->req[g0].n;
                for (int i = g0 + 1; i < g; i++) {
                    int m = lcp(&j->req[g0], &j->req[i], P < j->req[i].n ? P : j->req[i].n);
                    if (m < P) P = m;
                }
                for (int i = g0; i < g; i++) {
                    if (j->req[i].n == P)
                        return rb_error_set(err, RB_EINVAL, "%s: ending %d tokenizes to a prefix of another ending",
                                            where, i - g0);
                    j->req[i].n_cont = j->req[i].n - P;
                }
            }
            for (int i = g0; i < g; i++) r->n_tok[r->req_off[d] + (i - g0)] = j->req[i].n_cont;
        }
        r->req_off[ts->n_docs] = k;
    }
    return 0;
}

static int cmp_doc_len(const void *a, const void *b) {
    const tdoc *x = *(const tdoc *const *)a, *y = *(const tdoc *const *)b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->r0 < y->r0 ? -1 : x->r0 > y->r0;
}

/* Documents (or single requests when separate), their shared prefixes and segments, then first-fit
 * decreasing into sequences of T rows, and the layout of every row. */
static int pack(tjob *j, const rb_task_set *sets, int n_sets, int separate, int pack_rows, rb_task_result *res,
                rb_error *err) {
    int n = 0;
    for (int s = 0; s < n_sets; s++) n += separate ? res[s].n_req : sets[s].n_docs;
    j->doc = calloc((size_t)n, sizeof *j->doc);
    tdoc **order = malloc((size_t)n * sizeof *order);
    int *fill = NULL;
    if (!j->doc || !order) goto oom;
    j->n_doc = n;
    int g = 0, di = 0;
    for (int s = 0; s < n_sets; s++)
        for (int d = 0; d < sets[s].n_docs; d++) {
            int nr = sets[s].docs[d].n_req;
            for (int part = 0; part < (separate ? nr : 1); part++) {
                tdoc *D = &j->doc[di++];
                D->r0 = g + part, D->n_req = separate ? 1 : nr, D->set = s;
                int P = j->req[D->r0].n - 1;
                for (int i = D->r0 + 1; i < D->r0 + D->n_req; i++) {
                    int m = lcp(&j->req[D->r0], &j->req[i], P < j->req[i].n - 1 ? P : j->req[i].n - 1);
                    if (m < P) P = m;
                }
                D->P = P, D->len = P;
                for (int i = D->r0; i < D->r0 + D->n_req; i++) {
                    j->req[i].seg = D->len;
                    D->len += j->req[i].n - 1 - P;
                }
            }
            g += nr;
        }
    int T = pack_rows;
    for (int i = 0; i < n; i++) {
        order[i] = &j->doc[i];
        if (j->doc[i].len > T) T = j->doc[i].len;
    }
    qsort(order, (size_t)n, sizeof *order, cmp_doc_len);
    fill = malloc((size_t)n * sizeof *fill);
    if (!fill) goto oom;
    int n_seq = 0, first_open = 0;
    for (int i = 0; i < n; i++) { /* first fit; sequences before first_open are full enough to skip */
        tdoc *D = order[i];
        int s = first_open;
        while (s < n_seq && fill[s] + D->len > T) s++;
        if (s == n_seq) fill[n_seq++] = 0;
        D->seq = s, D->off = fill[s];
        fill[s] += D->len;
        while (first_open < n_seq && fill[first_open] == T) first_open++;
    }
    j->T = T, j->n_seq = n_seq;
    size_t rows = (size_t)n_seq * T;
    j->ids = malloc(rows * sizeof *j->ids);
    j->pos = malloc(rows * sizeof *j->pos);
    j->pre_lo = malloc(rows * sizeof *j->pre_lo);
    j->pre_hi = malloc(rows * sizeof *j->pre_hi);
    j->self_lo = malloc(rows * sizeof *j->self_lo);
    if (!j->ids || !j->pos || !j->pre_lo || !j->pre_hi || !j->self_lo) goto oom;
    for (size_t r = 0; r < rows; r++) { /* padding rows: token 0 at position 0, attending to themselves */
        j->ids[r] = 0, j->pos[r] = 0, j->pre_lo[r] = j->pre_hi[r] = 0, j->self_lo[r] = (int32_t)(r % T);
    }
    for (int i = 0; i < n; i++) {
        const tdoc *D = &j->doc[i];
        size_t base = (size_t)D->seq * T;
        for (int p = 0; p < D->P; p++) {
            size_t r = base + D->off + p;
            j->ids[r] = j->req[D->r0].seq[p], j->pos[r] = p, j->self_lo[r] = D->off;
        }
        for (int q = D->r0; q < D->r0 + D->n_req; q++) {
            const treq *R = &j->req[q];
            for (int p = D->P; p < R->n - 1; p++) {
                size_t r = base + D->off + R->seg + (p - D->P);
                j->ids[r] = R->seq[p], j->pos[r] = p;
                j->pre_lo[r] = D->off, j->pre_hi[r] = D->off + D->P, j->self_lo[r] = D->off + R->seg;
            }
        }
    }
    free(order);
    free(fill);
    return 0;
oom:
    free(order);
    free(fill);
    return rb_error_set(err, RB_ENOMEM, "tasks: out of memory packing %d documents", n);
}

/* Row of position p of request q (document D) within the packed stream. */
static size_t row_of(const tjob *j, const tdoc *D, const treq *R, int p) {
    size_t base = (size_t)D->seq * j->T + D->off;
    return p < D->P ? base + p : base + R->seg + (p - D->P);
}

double rb_task_logprob(const float *row, int vocab, int target, int *greedy) {
    float mx = rb_vmax(row, vocab);
    double sum = 0.0;
    for (int v = 0; v < vocab; v++) sum += (double)rb_expf_fast(row[v] - mx);
    int first = 0;
    while (row[first] != mx) first++;
    *greedy = first == target;
    return (double)row[target] - ((double)mx + log(sum));
}

/* Logits of the nb gathered rows buf[nb][dim]; each row's target log-probability added to its request's
 * ll and its greedy flag and-ed into greedy. */
static void score_batch(const float *buf, int nb, const int *rq, const int *tg, const float *head,
                        const rb_llama_config *c, float *logits, double *ll, unsigned char *greedy) {
    rb_llama_logits(buf, (size_t)nb, head, c, logits);
    for (int b = 0; b < nb; b++) {
        int gr;
        ll[rq[b]] += rb_task_logprob(logits + (size_t)b * c->vocab_size, c->vocab_size, tg[b], &gr);
        greedy[rq[b]] &= (unsigned char)gr;
    }
}

/* Final norm + lm_head over the scored rows of documents [d0, d1) (sequences [s0, s0+ns) held in h);
 * adds into ll/greedy (indexed by global request). */
static int score_rows(const tjob *j, const float *h, int s0, int ns, const float *head, double *ll,
                      unsigned char *greedy, rb_error *err) {
    const rb_llama_config *c = j->c;
    size_t d = (size_t)c->dim, V = (size_t)c->vocab_size;
    float *buf = rb_alloc(RB_TASK_LOGIT_ROWS * d * sizeof(float));
    float *logits = rb_alloc(RB_TASK_LOGIT_ROWS * V * sizeof(float));
    int *rq = malloc(RB_TASK_LOGIT_ROWS * sizeof *rq), *tg = malloc(RB_TASK_LOGIT_ROWS * sizeof *tg);
    int rc = 0, nb = 0;
    if (!buf || !logits || !rq || !tg) {
        rc = rb_error_set(err, RB_ENOMEM, "tasks: out of memory for logits");
        goto done;
    }
    for (int i = 0; i < j->n_doc; i++) {
        const tdoc *D = &j->doc[i];
        if (D->seq < s0 || D->seq >= s0 + ns) continue;
        for (int q = D->r0; q < D->r0 + D->n_req; q++) {
            const treq *R = &j->req[q];
            for (int p = R->n - 1 - R->n_cont; p < R->n - 1; p++) {
                size_t r = row_of(j, D, R, p) - (size_t)s0 * j->T;
                memcpy(buf + (size_t)nb * d, h + r * d, d * sizeof(float));
                rq[nb] = q, tg[nb] = R->seq[p + 1];
                if (++nb == RB_TASK_LOGIT_ROWS) {
                    score_batch(buf, nb, rq, tg, head, c, logits, ll, greedy);
                    nb = 0;
                }
            }
        }
    }
    if (nb) score_batch(buf, nb, rq, tg, head, c, logits, ll, greedy);
done:
    rb_free(buf);
    rb_free(logits);
    free(rq);
    free(tg);
    return rc;
}

/* Sequences of one chunk through every layer (q and, when sf, the FP stream), then scoring. */
static int run_chunk(tjob *j, const rb_weights_src *src, const rb_tasks_opts *o, const rb_quant_cfg *q, int s0,
                     int ns, float *hq, float *hf, rb_forward *f, rb_layer_weights *wf, rb_layer_weights *wq,
                     const rb_hooks *hk_q, const rb_hooks *hk_f, const float *norm, const float *head, double *ll_q,
                     unsigned char *gr_q, double *ll_f, unsigned char *gr_f, rb_error *err) {
    const rb_llama_config *c = j->c;
    size_t o0 = (size_t)s0 * j->T, rows = (size_t)ns * j->T;
    rb_att_layout lay = {j->pos + o0, j->pre_lo + o0, j->pre_hi + o0, j->self_lo + o0};
    rb_stream sq = {hq, ns, j->T, s0, &lay}, sf = {hf, ns, j->T, s0, &lay};
    int rc;
    if ((rc = src->embed(src->ctx, j->ids + o0, rows, hq, err))) return rc;
    if (hf) memcpy(hf, hq, rows * c->dim * sizeof(float));
    for (int l = 0; l < c->n_layers; l++) {
        if ((rc = src->load_layer(src->ctx, l, wf, err))) return rc;
        const rb_layer_weights *wuse = wf;
        if (q && q->w.bits < RB_QBITS_OFF) {
            rb_layer_weights_copy(wq, wf, c);
            if ((rc = rb_wstore_load_layer(o->wq, l, wq, err))) return rc;
            wuse = wq;
        }
        if (hf && (rc = rb_stream_layer(f, wf, l, &sf, hk_f, NULL, err))) return rc;
        if ((rc = rb_stream_layer(f, wuse, l, &sq, hk_q, NULL, err))) return rc;
        if (rb_interrupted())
            return rb_error_set(err, RB_EINTERRUPTED, "tasks: interrupted after layer %d of %d", l + 1, c->n_layers);
    }
    rb_rmsnorm(hq, hq, norm, rows, c->dim, c->rms_eps);
    if ((rc = score_rows(j, hq, s0, ns, head, ll_q, gr_q, err))) return rc;
    if (hf) {
        rb_rmsnorm(hf, hf, norm, rows, c->dim, c->rms_eps);
        if ((rc = score_rows(j, hf, s0, ns, head, ll_f, gr_f, err))) return rc;
    }
    return 0;
}

static int argmax_first(const double *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}


void rb_task_decide(int scoring, const double *ll, const unsigned char *greedy, const int *n_tok,
                    const int *n_chars, int n, int *pred, int *pred_norm) {
    RB_ASSERT(n >= 1 && n <= RB_TASK_MAX_CHOICES);
    double v[RB_TASK_MAX_CHOICES];
    if (scoring == RB_SCORE_GREEDY) {
        *pred = *pred_norm = greedy[0] ? 0 : -1;
        return;
    }
    if (scoring == RB_SCORE_LLAMACPP) {
        for (int i = 0; i < n; i++) v[i] = ll[i] / n_tok[i];
        *pred = *pred_norm = argmax_first(v, n);
        return;
    }
    *pred = argmax_first(ll, n);
    for (int i = 0; i < n; i++) v[i] = ll[i] / (double)n_chars[i];
    *pred_norm = argmax_first(v, n);
}

/* Per-document decisions and the task's metrics from the summed log-likelihoods. */
static void metrics(rb_task_result *r, const rb_task_set *ts, rb_task_scores *s) {
    int rep = rb_task_metrics(ts->task, ts->scoring);
    double n_ok = 0, n_norm = 0, ll_sum = 0;
    for (int d = 0; d < r->n_docs; d++) {
        int a = r->req_off[d], n = r->req_off[d + 1] - a, pred, pred_norm;
        rb_task_decide(ts->scoring, s->ll + a, s->greedy + a, r->n_tok + a, r->n_chars + a, n, &pred, &pred_norm);
        if (ts->scoring == RB_SCORE_GREEDY) ll_sum += s->ll[a];
        s->correct[d] = pred == r->gold[d];
        s->correct_norm[d] = pred_norm == r->gold[d];
        n_ok += s->correct[d], n_norm += s->correct_norm[d];
    }
    if (rep & RB_METRIC_ACC) s->acc = n_ok / r->n_docs;
    if (rep & RB_METRIC_ACC_NORM) s->acc_norm = n_norm / r->n_docs;
    if (rep & RB_METRIC_PPL) s->ppl = exp(-ll_sum / r->n_docs);
}

int rb_tasks_run(const rb_weights_src *src, const rb_llama_config *c, const rb_tokenizer *tok,
                 const rb_task_set *sets, int n_sets, const rb_tasks_opts *o, rb_task_result *res, rb_error *err) {
    RB_ASSERT(n_sets > 0);
    for (int s = 0; s < n_sets; s++) RB_ASSERT(sets[s].n_docs > 0); /* rb_taskfile_read refuses empty files */
    memset(res, 0, (size_t)n_sets * sizeof *res);
    double t0 = rb_now();
    const rb_quant_cfg *q = rb_quant_cfg_active(o->q) ? o->q : NULL;
    RB_ASSERT(!q || q->w.bits >= RB_QBITS_OFF || o->wq);
    int fp = q && o->fp_ref;
    int L = o->max_length > 0 ? o->max_length : c->max_seq_len > 0 ? c->max_seq_len : RB_TASK_DEFAULT_MAX_LENGTH;
    tjob j = {.c = c};
    rb_forward f = {0};
    rb_layer_weights wf = {0}, wq = {0};
    float *hq = NULL, *hf = NULL, *norm = NULL, *head = NULL;
    double *ll_q = NULL, *ll_f = NULL;
    unsigned char *gr_q = NULL, *gr_f = NULL;
    int rc;
    if ((rc = build_requests(&j, tok, sets, n_sets, o, L, res, fp, err))) goto done;
    double t_tok = rb_now() - t0;
    if ((rc = pack(&j, sets, n_sets, o->separate, o->pack_rows > 0 ? o->pack_rows : RB_TASK_PACK_ROWS, res, err)))
        goto done;
    for (int i = 0; i < j.n_req; i++)
        for (int p = 0; p < j.req[i].n; p++)
            if (j.req[i].seq[p] < 0 || j.req[i].seq[p] >= c->vocab_size) {
                rc = rb_error_set(err, RB_EINVAL, "tasks: token id %d is outside the model's vocabulary (%d): "
                                  "wrong tokenizer for this model?", j.req[i].seq[p], c->vocab_size);
                goto done;
            }
    /* chunks of whole sequences within the hidden-state budget */
    size_t per_seq = (size_t)j.T * c->dim * sizeof(float) * (fp ? 2 : 1);
    size_t budget = RB_TASK_HIDDEN_BYTES, half_free = rb_mem_available() / 2;
    if (budget > half_free) budget = half_free;
    int chunk = (int)(budget / per_seq);
    if (chunk < 1) chunk = 1;
    if (chunk > j.n_seq) chunk = j.n_seq;
    size_t max_rows = rb_stream_batch_rows(j.T, chunk);
    if ((rc = rb_mem_check((size_t)chunk * per_seq, "zero-shot tasks: the hidden states of one chunk of packed sequences",
                           "lower data.tasks[].limit (--limit)", err)))
        goto done;
    hq = rb_alloc((size_t)chunk * j.T * c->dim * sizeof(float));
    if (fp) hf = rb_alloc((size_t)chunk * j.T * c->dim * sizeof(float));
    norm = rb_alloc((size_t)c->dim * sizeof(float));
    head = rb_alloc((size_t)c->vocab_size * c->dim * sizeof(float));
    ll_q = calloc((size_t)j.n_req, sizeof *ll_q);
    gr_q = malloc((size_t)j.n_req);
    if (fp) {
        ll_f = calloc((size_t)j.n_req, sizeof *ll_f);
        gr_f = malloc((size_t)j.n_req);
    }
    if (!hq || (fp && (!hf || !ll_f || !gr_f)) || !norm || !head || !ll_q || !gr_q) {
        rc = rb_error_set(err, RB_ENOMEM, "tasks: out of memory for %d packed sequences of %d rows", chunk, j.T);
        goto done;
    }
    memset(gr_q, 1, (size_t)j.n_req);
    if (gr_f) memset(gr_f, 1, (size_t)j.n_req);
    if ((rc = rb_forward_init(&f, c, j.T, (int)max_rows, err)) || (rc = rb_layer_weights_init(&wf, c, err)) ||
        (q && q->w.bits < RB_QBITS_OFF && (rc = rb_layer_weights_init(&wq, c, err))))
        goto done;
    if ((rc = src->load_final_norm(src->ctx, norm, err)) || (rc = src->load_lm_head(src->ctx, head, err))) goto done;
    rb_hooks hk_q, hk_f;
    if (o->online) hk_q = *o->online;
    else rb_hooks_init(&hk_q);
    if (o->online_fp || o->online) hk_f = *(o->online_fp ? o->online_fp : o->online);
    else rb_hooks_init(&hk_f);
    if (q) rb_quant_add_train_hooks(&hk_q, q, 0);
    long rows_fwd = 0, rows_req = 0;
    for (int i = 0; i < j.n_doc; i++) rows_fwd += j.doc[i].len;
    for (int i = 0; i < j.n_req; i++) rows_req += j.req[i].n - 1;
    rb_info("tasks: %d requests in %d documents packed into %d sequences of %d rows (%ld rows for %ld request "
            "tokens), max_length %d, bos %s, %d chunk(s)",
            j.n_req, j.n_doc, j.n_seq, j.T, rows_fwd, rows_req, L, rb_task_bos_name(o->bos), (j.n_seq + chunk - 1) / chunk);
    rb_progress prog;
    rb_progress_init(&prog, "task sequences", j.n_seq);
    for (int s0 = 0; s0 < j.n_seq; s0 += chunk) {
        int ns = j.n_seq - s0 < chunk ? j.n_seq - s0 : chunk;
        if ((rc = run_chunk(&j, src, o, q, s0, ns, hq, hf, &f, &wf, &wq, &hk_q, &hk_f, norm, head, ll_q, gr_q, ll_f,
                            gr_f, err)))
            goto done;
        rb_progress_step(&prog, ns);
    }
    rb_progress_done(&prog);
    double secs = rb_now() - t0;
    rb_info("tasks: tokenized in %.2f s, scored in %.2f s", t_tok, secs - t_tok);
    int g = 0;
    for (int s = 0; s < n_sets; s++) {
        rb_task_result *r = &res[s];
        for (int k = 0; k < r->n_req; k++, g++) {
            if (!isfinite(ll_q[g]) || (fp && !isfinite(ll_f[g]))) {
                rc = rb_error_set(err, RB_ENUMERIC, "tasks: %s: a log-likelihood is %g: the logits overflowed float32",
                                  rb_task_name(r->task), ll_q[g]);
                goto done;
            }
            r->q.ll[k] = ll_q[g], r->q.greedy[k] = gr_q[g];
            if (fp) r->fp.ll[k] = ll_f[g], r->fp.greedy[k] = gr_f[g];
            r->tokens_request += j.req[g].n - 1;
        }
        metrics(r, &sets[s], &r->q);
        if (fp) {
            metrics(r, &sets[s], &r->fp);
            rb_task_paired_compute(r->q.correct, r->fp.correct, r->n_docs, o->seed, &r->acc_pair);
            rb_task_paired_compute(r->q.correct_norm, r->fp.correct_norm, r->n_docs, o->seed, &r->acc_norm_pair);
        }
        r->seconds = secs;
    }
    for (int i = 0; i < j.n_doc; i++) res[j.doc[i].set].tokens_forward += j.doc[i].len;
done:
    tjob_free(&j);
    rb_forward_free(&f);
    rb_layer_weights_free(&wf);
    rb_layer_weights_free(&wq);
    rb_free(hq);
    rb_free(hf);
    rb_free(norm);
    rb_free(head);
    free(ll_q);
    free(ll_f);
    free(gr_q);
    free(gr_f);
    if (rc)
        for (int s = 0; s < n_sets; s++) rb_task_result_free(&res[s]);
    return rc;
}

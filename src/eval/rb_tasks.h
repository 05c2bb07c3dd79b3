/* rb_tasks: zero-shot task scoring on the (fake-quantized) forward, as lm-evaluation-harness scores
 * (METHODS §8.5), with an FP reference scored alongside for paired comparisons.
 *
 * Requests. lm-eval's _encode_pair: trailing spaces of the context move to the continuation;
 * ctx = tok(context), whole = tok(context + continuation), cont = whole[len(ctx):]; the model reads
 * (ctx + cont)[-(max_length+1):][:-1] and the last len(cont) positions score cont. BOS is a setting:
 * none (lm-eval ≤ 0.4.9.1, QuaRot's pin) or the tokenizer's default (later lm-eval: Llama adds BOS).
 * llama.cpp's HellaSwag mode tokenizes ctx + cont as one string with BOS and scores the tokens after
 * the common prefix of a document's requests (mean log-probability per token).
 *
 * Packing. A document's requests share their longest common input prefix (the context): it is
 * computed once, and each request's remaining tokens follow it in the same packed sequence, attending
 * to the prefix and to themselves only (rb_att_layout). Several documents are packed into one
 * sequence of up to pack_rows rows. All tasks and both models (quantized, FP) stream through the
 * layers together, layer-major: each layer's weights are read once.
 *
 * Metrics. acc = argmax of the summed log-likelihoods; acc_norm = argmax of the sums divided by each
 * choice's length in characters; ties go to the first; greedy acc (lambada) = every continuation token
 * is the argmax (ties to the lowest id, as torch.argmax); perplexity = exp(−mean over documents of the
 * summed log-likelihood). llama.cpp HellaSwag: acc = argmax of the mean per-token log-probability. */
#ifndef RB_TASKS_H
#define RB_TASKS_H

#include <stdint.h>

#include "model/rb_forward.h"
#include "quant/rb_qpreset.h"
#include "quant/rb_wstore.h"
#include "tasks/rb_taskfile.h"
#include "text/rb_tokenizer.h"

enum { RB_TASK_BOS_NONE = 0, RB_TASK_BOS_DEFAULT = 1 };

/* "none" / "tokenizer-default" → RB_TASK_BOS_*, or -1. */
int rb_task_bos_from_name(const char *name);
const char *rb_task_bos_name(int bos);

/* Bootstrap resamples of the paired confidence interval. */
#define RB_TASK_BOOTSTRAP 2000

typedef struct rb_tasks_opts {
    int bos;                   /* RB_TASK_BOS_*: lm-eval tasks (llama.cpp HellaSwag always adds BOS) */
    int max_length;            /* left truncation (lm-eval max_length); 0 = the model's max_seq_len, or 2048 */
    int pack_rows;             /* rows per packed sequence; 0 = default (RB_TASK_PACK_ROWS) */
    int separate;              /* 1: no sharing or packing, one sequence per request (lm-eval's way; to measure
                                  the speedup of packing) */
    const rb_quant_cfg *q;     /* quantization; NULL or inactive = FP only */
    rb_wstore *wq;             /* quantized weights (required when q quantizes weights) */
    const rb_hooks *online;    /* online transforms of the evaluated model (rotations), may be NULL */
    const rb_hooks *online_fp; /* the FP reference's (NULL: online) */
    int fp_ref;                /* with quantization: also score the FP model (paired comparison) */
    uint64_t seed;             /* bootstrap seed */
} rb_tasks_opts;

/* Paired comparison of one metric between the evaluated model and the FP reference, over documents. */
typedef struct rb_task_paired {
    double delta;      /* accuracy(q) − accuracy(fp), fraction */
    double lo, hi;     /* 95 % percentile bootstrap interval of delta (RB_TASK_BOOTSTRAP document resamples) */
    int n_fp_only;     /* documents right under FP only */
    int n_q_only;      /* documents right under q only */
    double p_mcnemar;  /* exact two-sided McNemar p-value on those discordant pairs */
} rb_task_paired;

/* One model's scores of one task. */
typedef struct rb_task_scores {
    double *ll;                  /* [n_req] summed continuation log-likelihood (nats); llama.cpp mode: the sum
                                    over the scored tokens (divide by n_tok for its mean) */
    unsigned char *greedy;       /* [n_req] every continuation token was the argmax */
    unsigned char *correct;      /* [n_docs] acc per document (greedy for lambada) */
    unsigned char *correct_norm; /* [n_docs] acc_norm per document */
    double acc, acc_norm, ppl;   /* fractions / perplexity; NaN where the task does not report it */
} rb_task_scores;

typedef struct rb_task_result {
    int task, scoring, n_docs, n_req, bos;
    int max_length;      /* the resolved left-truncation length */
    int *req_off;        /* [n_docs+1] requests of document i are [req_off[i], req_off[i+1]) */
    int *gold;           /* [n_docs] */
    int *n_tok;          /* [n_req] tokens scored */
    int *n_chars;        /* [n_req] choice length in code points */
    rb_task_scores q;    /* the evaluated model (quantized; FP when nothing is quantized) */
    rb_task_scores fp;   /* FP reference (all NULL/NaN without it) */
    int have_fp;
    rb_task_paired acc_pair, acc_norm_pair; /* valid when have_fp (acc_norm_pair when reported) */
    int truncated;       /* requests left-truncated to max_length */
    long tokens_forward; /* rows run through the forward (prefixes once), per model */
    long tokens_request; /* Σ over requests of their input length (what separate scoring runs), per model */
    double seconds;      /* wall time of the pass that scored this task (shared by tasks scored together) */
} rb_task_result;

/* Scores n_sets task sets on the model behind src (config c) in one layer-major pass. res[n_sets] is
 * filled (free each with rb_task_result_free). Errors: RB_EINVAL for a continuation longer than
 * max_length (naming file and line), RB_ENOMEM, RB_ENUMERIC (non-finite logits), RB_EINTERRUPTED. */
int rb_tasks_run(const rb_weights_src *src, const rb_llama_config *c, const rb_tokenizer *tok,
                 const rb_task_set *sets, int n_sets, const rb_tasks_opts *o, rb_task_result *res, rb_error *err);
void rb_task_result_free(rb_task_result *r);

/* lm-eval's _encode_pair plus left truncation: trailing whitespace of ctx moves to the front of cont;
 * the context is tokenized alone (BOS per bos) and the continuation is what tok(ctx + cont) adds past
 * it; *seq (heap) = ctx_ids + cont_ids cut to its last max_length + 1 tokens, *n its length, *n_cont
 * the continuation tokens (the last ones), *truncated 1 when cut. An empty context is the tokenizer's
 * BOS (else EOS). Errors: RB_EINVAL when the continuation adds no token or exceeds max_length (message
 * prefixed with `where`). */
int rb_task_encode_pair(const rb_tokenizer *tok, const char *ctx, const char *cont, int bos, int max_length,
                        int32_t **seq, int *n, int *n_cont, int *truncated, const char *where, rb_error *err);

/* Log-probability (natural log, log-sum-exp in double) of `target` in one row of logits[vocab], and
 * whether target is the row's argmax (the first index of the maximum, as torch.argmax). */
double rb_task_logprob(const float *row, int vocab, int target, int *greedy);

/* A document's decisions from its requests' scores: *pred = argmax of ll (ties → first); *pred_norm =
 * argmax of ll / n_chars (RB_SCORE_CHOICE) or of ll / n_tok (RB_SCORE_LLAMACPP: its only metric, also
 * in *pred). RB_SCORE_GREEDY: *pred = *pred_norm = 0 when greedy[0], else -1. */
void rb_task_decide(int scoring, const double *ll, const unsigned char *greedy, const int *n_tok,
                    const int *n_chars, int n, int *pred, int *pred_norm);

/* Paired comparison of per-document 0/1 outcomes a (evaluated) and b (reference) over n documents. */
void rb_task_paired_compute(const unsigned char *a, const unsigned char *b, int n, uint64_t seed,
                            rb_task_paired *out);

#endif

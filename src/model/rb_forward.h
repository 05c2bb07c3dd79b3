/* rb_forward: the one Llama decoder implementation (fp32, token-batched, layer-major), with hook
 * points at the quantization sites of DESIGN §2.
 *
 * Hidden states of a batch of sequences live in one row-major buffer h[n_seq*T][dim]; sequence s
 * occupies rows [s*T, (s+1)*T). Every projection is one sgemm over all rows of the batch. */
#ifndef RB_FORWARD_H
#define RB_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_math.h"
#include "rb_model.h"

/* Query rows per attention block: bounds the score buffer to QBLOCK×T and lets causal attention
 * skip the key columns after the block (half the FLOPs of a full T×T product). */
#define RB_ATT_QBLOCK 256

/* Sites where hooks run, in forward order. */
enum rb_site {
    RB_SITE_ATTN_IN = 0, /* RMSNorm_in output → q,k,v           [rows][dim] */
    RB_SITE_Q,           /* Q after RoPE (never quantized; R3)    [rows][n_heads*head_dim] */
    RB_SITE_K,           /* K after RoPE                          [rows][n_kv*head_dim] */
    RB_SITE_V,           /* V (v_proj output)                     [rows][n_kv*head_dim] */
    RB_SITE_O_IN,        /* attention output → o_proj             [rows][n_heads*head_dim] */
    RB_SITE_MLP_IN,      /* RMSNorm_post output → gate, up        [rows][dim] */
    RB_SITE_DOWN_IN,     /* SwiGLU product → down                 [rows][hidden_dim] */
    RB_SITE_COUNT,       /* the quantization sites above */
    /* Residual junctions (ReSpinQuant, METHODS §7.2): the residual stream itself [rows][dim],
     * transformed in place right before the o_proj (RES_ATTN) / down_proj (RES_MLP) output is added
     * to it. Never quantized; hooks there change what the branch output is added to. */
    RB_SITE_RES_ATTN = RB_SITE_COUNT,
    RB_SITE_RES_MLP,
    RB_HOOK_SITES
};

/* "attn_in", "q", "k", "v", "o_in", "mlp_in", "down_in", and for the junctions "res_attn",
 * "res_mlp". */
const char *rb_site_name(int site);
/* Quantization-site index (< RB_SITE_COUNT) for a name, or -1. */
int rb_site_from_name(const char *name);

/* What a hook sees besides the tensor. */
typedef struct rb_site_info {
    int layer;
    int site;
    int n_seq;      /* sequences in this batch */
    int seq_len;    /* tokens per sequence (T) */
    int seq_offset; /* global index of the batch's first sequence */
    int cols;       /* row width */
    int n_groups;   /* heads for q, k, v, o_in; 1 otherwise */
    int group_dim;  /* cols / n_groups */
} rb_site_info;

/* Points info at `site` of width cols cut into `groups` equal groups (what hooks see there). */
static inline void rb_site_info_at(rb_site_info *info, int site, int cols, int groups) {
    info->site = site;
    info->cols = cols;
    info->n_groups = groups;
    info->group_dim = cols / groups;
}

/* A hook may read and modify x[n_seq*seq_len][cols] in place. A negative return (RB_E*, err
 * filled) aborts the forward pass with that code; a positive return stops the layer forward at
 * that site without error and is returned as is by rb_forward_layer (used to collect one site's
 * inputs without running the rest of the layer). */
typedef int (*rb_hook_fn)(void *ctx, const rb_site_info *info, float *x, rb_error *err);

/* A hook's backward (rb_backward_layer): dx[n_seq*seq_len][cols] holds the gradient with respect to
 * the hook's output on entry and must hold the gradient with respect to its input on return. x_in is
 * the tensor the hook's forward received (NULL unless the hook was added with needs_input). Returns 0
 * or a negative RB_E* with err filled. */
typedef int (*rb_hook_bwd_fn)(void *ctx, const rb_site_info *info, const float *x_in, float *dx, rb_error *err);

#define RB_MAX_HOOKS_PER_SITE 8

typedef struct rb_hooks {
    rb_hook_fn fn[RB_HOOK_SITES][RB_MAX_HOOKS_PER_SITE];
    rb_hook_bwd_fn bwd[RB_HOOK_SITES][RB_MAX_HOOKS_PER_SITE]; /* NULL: the backward refuses the site */
    unsigned char needs_input[RB_HOOK_SITES][RB_MAX_HOOKS_PER_SITE];
    void *ctx[RB_HOOK_SITES][RB_MAX_HOOKS_PER_SITE];
    int n[RB_HOOK_SITES];
} rb_hooks;

void rb_hooks_init(rb_hooks *hk);
/* Appends a hook at `site`; hooks at one site run in the order added. A hook added this way has no
 * backward: rb_backward_layer through its site fails naming the site. */
void rb_hooks_add(rb_hooks *hk, int site, rb_hook_fn fn, void *ctx);
/* Appends a hook with its backward; needs_input: the backward reads the hook's input (kept by the
 * backward's replay of the site). */
void rb_hooks_add_bwd(rb_hooks *hk, int site, rb_hook_fn fn, rb_hook_bwd_fn bwd, int needs_input, void *ctx);
/* The same hook at every quantization site (not the residual junctions). */
void rb_hooks_add_all(rb_hooks *hk, rb_hook_fn fn, void *ctx);

/* Where layer weights come from: the checkpoint, or (later) a transformed copy. */
typedef struct rb_weights_src {
    void *ctx;
    int (*load_layer)(void *ctx, int layer, rb_layer_weights *w, rb_error *err);
    /* Embedding rows of n ids into out[n][dim]. */
    int (*embed)(void *ctx, const int32_t *ids, size_t n, float *out, rb_error *err);
    /* Final RMSNorm weight into out[dim]. */
    int (*load_final_norm)(void *ctx, float *out, rb_error *err);
    /* lm_head into out[vocab][dim]. */
    int (*load_lm_head)(void *ctx, float *out, rb_error *err);
} rb_weights_src;

/* A weights source reading straight from `m` (not owned). */
rb_weights_src rb_weights_from_model(rb_model *m);

/* What one layer forward records for its backward (DESIGN §2b), for one sub-batch of at most
 * max_rows rows. Everything else the backward needs (normed inputs, hook outputs at attn_in, o_in,
 * mlp_in and down_in, the SwiGLU product) is recomputed from these. */
typedef struct rb_tape {
    int max_rows;
    int layer, n_seq, T, seq_offset; /* the forward recorded */
    float *h_in;  /* [max_rows][dim] layer input */
    float *q;     /* [max_rows][n_heads*head_dim] after RoPE and the q hooks */
    float *k;     /* [max_rows][n_kv*head_dim] after RoPE and the k hooks */
    float *v;     /* [max_rows][n_kv*head_dim] after the v hooks */
    float *lse;   /* [max_rows][n_heads] log-sum-exp of each (scaled) score row */
    float *att;   /* [max_rows][n_heads*head_dim] attention output, before the o_in hooks */
    float *h_mid; /* [max_rows][dim] residual stream after attention */
    float *gate;  /* [max_rows][hidden_dim] gate_proj output (before SiLU) */
    float *up;    /* [max_rows][hidden_dim] up_proj output */
} rb_tape;

/* Tape for config c and sub-batches of at most max_rows rows (≈ (4·dim + 3·q/kv width + 2·hidden)
 * floats a row). Errors: RB_ENOMEM naming the size. */
int rb_tape_init(rb_tape *t, const rb_llama_config *c, int max_rows, rb_error *err);
void rb_tape_free(rb_tape *t);
/* Bytes rb_tape_init allocates. */
size_t rb_tape_bytes(const rb_llama_config *c, int max_rows);

/* Attention layout of packed sequences (zero-shot scoring, eval/rb_tasks.h): row r of a sequence sits
 * at RoPE position pos[r] and attends to the keys [pre_lo[r], pre_hi[r]) ∪ [self_lo[r], r] of its
 * sequence (indices within the sequence; pre_lo == pre_hi: no prefix). Each array holds one entry per
 * row of the batch, from its first row. Plain causal attention is pos = r, no prefix, self_lo = 0. */
typedef struct rb_att_layout {
    const int32_t *pos;     /* [rows] */
    const int32_t *pre_lo;  /* [rows] */
    const int32_t *pre_hi;  /* [rows] */
    const int32_t *self_lo; /* [rows] */
} rb_att_layout;

/* Scratch for one layer forward over at most `max_rows` rows of at most `max_T` tokens each. */
typedef struct rb_forward {
    rb_llama_config cfg;
    int max_T, max_rows;
    float *xn;        /* [max_rows][dim] normed input */
    float *q;         /* [max_rows][n_heads*head_dim] */
    float *k;         /* [max_rows][n_kv*head_dim] */
    float *v;         /* [max_rows][n_kv*head_dim] */
    float *att;       /* [max_rows][n_heads*head_dim] attention output */
    float *gate;      /* [max_rows][hidden_dim] */
    float *up;        /* [max_rows][hidden_dim] */
    float *scores;    /* [RB_ATT_QBLOCK][max_T] one query block of one head */
    float *rope_cos;  /* [max_T][head_dim/2] */
    float *rope_sin;  /* [max_T][head_dim/2] */
    rb_tape *tape;    /* when set (not owned), rb_forward_layer records into it */
    const rb_att_layout *layout; /* when set (not owned), rb_forward_layer attends and places RoPE by it
                                    (forward only: not with a tape) */
} rb_forward;

int rb_forward_init(rb_forward *f, const rb_llama_config *c, int max_T, int max_rows, rb_error *err);
void rb_forward_free(rb_forward *f);

/* Runs decoder layer `layer` (weights w) over h[n_seq*T][dim] in place: h ← h + attn, h ← h + mlp.
 * Requires T ≤ max_T and n_seq*T ≤ max_rows. Hooks (may be NULL) run at each site. Every site's
 * tensor after its hooks and the residual stream after each block are checked finite: a NaN/Inf is
 * RB_ENUMERIC naming the layer, the site, the sequence, token and channel. With f->tape set (its
 * max_rows ≥ n_seq*T) the layer's tape is recorded. Returns 0, a negative
 * error, or a hook's positive stop value (h then holds a partially updated state). */
int rb_forward_layer(rb_forward *f, const rb_layer_weights *w, int layer, float *h, int n_seq, int T,
                     int seq_offset, const rb_hooks *hooks, rb_error *err);

/* rotate_half RoPE of every head of x[n_seq*T][n_h*head_dim] at positions 0..T-1 of each sequence
 * (f->layout's positions when set); inverse: rotation by the negative angles (the transpose: RoPE's
 * backward). */
void rb_rope_apply(const rb_forward *f, float *x, int n_seq, int T, int n_h, int inverse);

/* SwiGLU of one pair: SiLU(g)·u, with the exp the forward uses (the backward's replay must match it
 * bit for bit). */
static inline float rb_swiglu(float g, float u) { return g / (1.0f + rb_expf_fast(-g)) * u; }

/* RMSNorm of each row: out[r] = x[r] / sqrt(mean(x[r]²) + eps) ⊙ g (g may be NULL: weight-free).
 * Sum of squares in double. out may equal x. */
void rb_rmsnorm(float *out, const float *x, const float *g, size_t rows, int dim, double eps);

/* Per-row log-softmax statistics: for logits[rows][vocab], nll[r] = logsumexp(row) − row[target[r]],
 * in double. */
void rb_nll_rows(const float *logits, size_t rows, int vocab, const int32_t *targets, double *nll);

/* Logits of the rows of hn: out[rows][vocab] = hn · lm_headᵀ (one sgemm). */
void rb_llama_logits(const float *hn, size_t rows, const float *lm_head, const rb_llama_config *c,
                     float *out);

#endif

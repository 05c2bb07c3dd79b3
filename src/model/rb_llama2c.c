#include "rb_llama2c.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rb_model_internal.h"

/* First int32 of llama2.c's versioned exports (export.py version 1 and 2): "ak42". */
#define LLAMA2C_MAGIC 0x616b3432

/* One float32 array of the file: `count` = a*b*c elements starting at byte `off`. */
typedef struct section {
    const char *name; /* run.c's TransformerWeights field name */
    int ndim;
    int64_t shape[3];
    size_t off, bytes;
} section;

enum {
    S_EMB,
    S_RMS_ATT,
    S_WQ,
    S_WK,
    S_WV,
    S_WO,
    S_RMS_FFN,
    S_W1,
    S_W2,
    S_W3,
    S_RMS_FINAL,
    S_FREQ_RE,
    S_FREQ_IM,
    S_WCLS,
    S_COUNT
};

/* Lays out section `s` at *off; 0 on size overflow. */
static int take(section *s, const char *name, size_t *off, int ndim, int64_t a, int64_t b, int64_t c) {
    s->name = name;
    s->ndim = ndim;
    s->shape[0] = a;
    s->shape[1] = b;
    s->shape[2] = c;
    size_t n = 4;
    for (int i = 0; i < ndim; i++)
        if (!rb_mul_ok(n, (size_t)s->shape[i], &n)) return 0;
    s->off = *off;
    s->bytes = n;
    if (*off > SIZE_MAX - n) return 0;
    *off += n;
    return 1;
}

static int32_t read_i32(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

static int check_header(const char *path, const int32_t *h, rb_error *err) {
    static const char *const names[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                         "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++) {
        int ok = i == 5 ? (h[i] != 0 && h[i] != INT32_MIN) : h[i] > 0;
        if (!ok)
            return rb_error_set(err, RB_EFORMAT, "%s: header field %s = %d is invalid (not a llama2.c .bin?)", path,
                                names[i], h[i]);
    }
    if (h[0] % h[3] != 0)
        return rb_error_set(err, RB_EFORMAT, "%s: header field n_heads = %d does not divide dim %d", path, h[3], h[0]);
    if (h[4] > h[3] || h[3] % h[4] != 0)
        return rb_error_set(err, RB_EFORMAT, "%s: header field n_kv_heads = %d does not divide n_heads %d", path, h[4],
                            h[3]);
    if ((h[0] / h[3]) % 2 != 0)
        return rb_error_set(err, RB_EFORMAT, "%s: header field n_heads = %d gives an odd head size %d", path, h[3],
                            h[0] / h[3]);
    if (h[0] / h[3] > RB_MAX_HEAD_DIM)
        return rb_error_set(err, RB_EUNSUPPORTED, "%s: header fields dim %d / n_heads %d give head size %d, above the "
                            "supported %d", path, h[0], h[3], h[0] / h[3], RB_MAX_HEAD_DIM);
    return 0;
}

static rb_tref tref(const rb_model *m, const section *s, size_t layer, size_t rows, size_t cols) {
    rb_tref t = {0};
    t.data = m->bin.data + s->off + layer * rows * cols * 4; /* inside the file: size checked */
    t.dtype = RB_DT_F32;
    t.rows = rows;
    t.cols = cols;
    t.name = s->name;
    t.file = m->path;
    return t;
}

int rb_llama2c_open(rb_model *m, rb_error *err) {
    const char *path = m->path;
    int rc = rb_mapped_open(&m->bin, path, err);
    if (rc) return rc;
    if (m->bin.size < RB_LLAMA2C_HEADER_BYTES)
        return rb_error_set(err, RB_EFORMAT, "%s: %zu bytes, too short for the %d-byte llama2.c header", path,
                            m->bin.size, RB_LLAMA2C_HEADER_BYTES);
    int32_t h[7];
    for (int i = 0; i < 7; i++) h[i] = read_i32(m->bin.data + 4 * i);
    if (h[0] == LLAMA2C_MAGIC)
        return rb_error_set(err, RB_EUNSUPPORTED,
                            "%s: llama2.c versioned export (magic \"ak42\", version %d) is not supported; use the "
                            "legacy format or an HF directory",
                            path, h[1]);
    if ((rc = check_header(path, h, err))) return rc;

    rb_llama_config *c = &m->cfg;
    c->dim = h[0];
    c->hidden_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->tied = h[5] > 0;
    c->vocab_size = h[5] > 0 ? h[5] : -h[5];
    c->max_seq_len = h[6];
    c->head_dim = c->dim / c->n_heads;
    /* run.c hard-codes these. */
    c->rms_eps = 1e-5;
    c->rope_theta = 10000.0;
    c->bos_id = 1;
    c->eos_id = 2;
    snprintf(c->dtype, sizeof c->dtype, "F32");

    const int64_t D = c->dim, H = c->hidden_dim, L = c->n_layers, V = c->vocab_size, hd = c->head_dim;
    const int64_t kvd = (int64_t)c->n_kv_heads * hd;
    section s[S_COUNT];
    size_t off = RB_LLAMA2C_HEADER_BYTES;
    int ok = take(&s[S_EMB], "token_embedding_table", &off, 2, V, D, 0) &&
             take(&s[S_RMS_ATT], "rms_att_weight", &off, 2, L, D, 0) && take(&s[S_WQ], "wq", &off, 3, L, D, D) &&
             take(&s[S_WK], "wk", &off, 3, L, kvd, D) && take(&s[S_WV], "wv", &off, 3, L, kvd, D) &&
             take(&s[S_WO], "wo", &off, 3, L, D, D) && take(&s[S_RMS_FFN], "rms_ffn_weight", &off, 2, L, D, 0) &&
             take(&s[S_W1], "w1", &off, 3, L, H, D) && take(&s[S_W2], "w2", &off, 3, L, D, H) &&
             take(&s[S_W3], "w3", &off, 3, L, H, D) && take(&s[S_RMS_FINAL], "rms_final_weight", &off, 1, D, 0, 0) &&
             take(&s[S_FREQ_RE], "freq_cis_real", &off, 2, h[6], hd / 2, 0) &&
             take(&s[S_FREQ_IM], "freq_cis_imag", &off, 2, h[6], hd / 2, 0);
    int n_sec = S_WCLS;
    if (ok && !c->tied) {
        ok = take(&s[S_WCLS], "wcls", &off, 2, V, D, 0);
        n_sec = S_COUNT;
    }
    if (!ok)
        return rb_error_set(err, RB_EFORMAT,
                            "%s: header (dim %d, hidden_dim %d, n_layers %d, vocab %d) implies a size "
                            "that overflows",
                            path, h[0], h[1], h[2], h[5]);
    if (m->bin.size != off)
        return rb_error_set(err, RB_EFORMAT,
                            "%s: %zu bytes but the header (dim %d, hidden_dim %d, n_layers %d, n_heads %d, "
                            "n_kv_heads %d, vocab_size %d, seq_len %d) implies %zu%s",
                            path, m->bin.size, h[0], h[1], h[2], h[3], h[4], h[5], h[6], off,
                            m->bin.size < off ? " (truncated)" : " (trailing bytes)");

    m->layers = calloc((size_t)L * RB_W_COUNT, sizeof *m->layers);
    if (!m->layers) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    for (int64_t l = 0; l < L; l++) {
        rb_tref *w = &m->layers[l * RB_W_COUNT];
        w[RB_W_ATTN_NORM] = tref(m, &s[S_RMS_ATT], (size_t)l, (size_t)D, 1);
        w[RB_W_Q] = tref(m, &s[S_WQ], (size_t)l, (size_t)D, (size_t)D);
        w[RB_W_K] = tref(m, &s[S_WK], (size_t)l, (size_t)kvd, (size_t)D);
        w[RB_W_V] = tref(m, &s[S_WV], (size_t)l, (size_t)kvd, (size_t)D);
        w[RB_W_O] = tref(m, &s[S_WO], (size_t)l, (size_t)D, (size_t)D);
        w[RB_W_FFN_NORM] = tref(m, &s[S_RMS_FFN], (size_t)l, (size_t)D, 1);
        w[RB_W_GATE] = tref(m, &s[S_W1], (size_t)l, (size_t)H, (size_t)D);
        w[RB_W_DOWN] = tref(m, &s[S_W2], (size_t)l, (size_t)D, (size_t)H);
        w[RB_W_UP] = tref(m, &s[S_W3], (size_t)l, (size_t)H, (size_t)D);
        /* llama2.c rotates pairs (2i, 2i+1) of each head; HF's rotate_half pairs (i, i + hd/2). */
        w[RB_W_Q].perm_heads = c->n_heads;
        w[RB_W_K].perm_heads = c->n_kv_heads;
        w[RB_W_Q].perm_head_dim = w[RB_W_K].perm_head_dim = c->head_dim;
    }
    m->embed = tref(m, &s[S_EMB], 0, (size_t)V, (size_t)D);
    m->final_norm = tref(m, &s[S_RMS_FINAL], 0, (size_t)D, 1);
    m->lm_head = c->tied ? m->embed : tref(m, &s[S_WCLS], 0, (size_t)V, (size_t)D);

    /* The listing mirrors the file (stacked per-layer arrays, llama2.c names); freq_cis is stored
     * but unused (RoPE is recomputed from rope_theta), so it is not a parameter. */
    for (int i = 0; i < n_sec; i++)
        if ((rc = rb_model_list_add(m, s[i].name, "F32", s[i].ndim, s[i].shape, s[i].bytes, m->path, err))) return rc;
    for (int i = 0; i < n_sec; i++)
        if (i != S_FREQ_RE && i != S_FREQ_IM) m->n_params += s[i].bytes / 4;
    return 0;
}

/* rb_export_gguf: the exported model as one llama.cpp GGUF v3 file (model/rb_gguf.h has the layout).
 *
 * llama.cpp's Llama conventions: tensor names token_embd / blk.N.{attn_norm, attn_q, attn_k, attn_v,
 * attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down} / output_norm / output (always written: the
 * export is untied), a matrix [rows][cols] stored row-major with ne = [cols, rows], q/k rows per head
 * in the interleaved-pair RoPE order (convert_hf_to_gguf's permutation of HF's rotate_half rows),
 * norm vectors F32 whatever the dtype, Llama-3.1 RoPE scaling as the rope_freqs.weight table.
 *
 * Vocabulary: SentencePiece and llama2.c tokenizers become tokenizer.ggml.model "llama" (tokens,
 * scores, token types; llama2.c's export quirks undone: its ' ' back to U+2581, its "\n<s>\n" /
 * "\n</s>\n" back to "<s>" / "</s>"); byte-level BPE becomes "gpt2" with its merges and pre-tokenizer
 * "llama-bpe" (the Llama-3 regex: rotbench's byte-level BPE targets are Llama-3 tokenizers); no
 * tokenizer gives model "none" and a warning. Ids the tokenizer lacks up to the model's vocabulary
 * are padded as "[PAD<id>]" unused tokens, as convert_hf_to_gguf does.
 *
 * Float hyperparameters are f32 in GGUF; the f64 values ride along as rotbench.f64.<key> so that
 * rotbench reads back exactly what it wrote. The file is written as model.gguf.partial (header and
 * tensor directory first, sizes being known from the config, then the data one layer at a time)
 * and renamed when complete. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rb_file.h"
#include "core/rb_half.h"
#include "core/rb_log.h"
#include "core/rb_strbuf.h"
#include "model/rb_gguf.h"
#include "model/rb_safetensors.h"
#include "rb_export.h"

#ifndef RB_VERSION
#define RB_VERSION "unknown"
#endif

#define ALIGN RB_GGUF_DEFAULT_ALIGNMENT
#define STAGE_BYTES (1u << 20)

/* ---- metadata encoding (little endian, into a growing buffer whose OOM is checked once) ---- */

typedef struct meta {
    rb_strbuf b;
    uint64_t n; /* pairs written */
} meta;

static void put_u32(rb_strbuf *b, uint32_t v) {
    char p[4] = {(char)(v & 0xff), (char)(v >> 8 & 0xff), (char)(v >> 16 & 0xff), (char)(v >> 24)};
    rb_strbuf_put(b, p, 4);
}
static void put_u64(rb_strbuf *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}
static void put_f32(rb_strbuf *b, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(b, u);
}
static void put_str(rb_strbuf *b, const char *s, size_t n) {
    put_u64(b, n);
    rb_strbuf_put(b, s, n);
}
static void key(meta *m, const char *k, uint32_t type) {
    put_str(&m->b, k, strlen(k));
    put_u32(&m->b, type);
    m->n++;
}
static void kv_u32(meta *m, const char *k, uint32_t v) { key(m, k, RB_GGUF_U32), put_u32(&m->b, v); }
static void kv_f32(meta *m, const char *k, float v) { key(m, k, RB_GGUF_F32), put_f32(&m->b, v); }
static void kv_bool(meta *m, const char *k, int v) {
    key(m, k, RB_GGUF_BOOL), rb_strbuf_put(&m->b, v ? "\1" : "\0", 1);
}
static void kv_str(meta *m, const char *k, const char *s) { key(m, k, RB_GGUF_STRING), put_str(&m->b, s, strlen(s)); }
static void kv_f64(meta *m, const char *k, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    key(m, k, RB_GGUF_F64);
    put_u64(&m->b, u);
}
static void kv_arr(meta *m, const char *k, uint32_t elem_type, uint64_t n) {
    key(m, k, RB_GGUF_ARRAY);
    put_u32(&m->b, elem_type);
    put_u64(&m->b, n);
}
/* A float hyperparameter: f32 as llama.cpp reads it, plus the exact f64 for rotbench. */
static void kv_hparam(meta *m, const char *k, double v) {
    char exact[96];
    kv_f32(m, k, (float)v);
    snprintf(exact, sizeof exact, "rotbench.f64.%s", k);
    kv_f64(m, exact, v);
}

/* BOS/EOS ids: the model config's (what it was trained with), else the tokenizer's. */
static void put_special(meta *m, const rb_export_in *in, int bos, int eos) {
    if (in->cfg.bos_id >= 0) bos = in->cfg.bos_id;
    if (in->cfg.eos_id >= 0) eos = in->cfg.eos_id;
    if (bos >= 0 && bos < in->cfg.vocab_size) kv_u32(m, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (eos >= 0 && eos < in->cfg.vocab_size) kv_u32(m, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
}

/* tokenizer.ggml.*: see the file comment. */
static int put_vocab(meta *m, const rb_export_in *in, rb_error *err) {
    const rb_tokenizer *t = in->tok;
    if (!t) {
        rb_warn("export gguf: no tokenizer given: tokenizer.ggml.model is \"none\", so llama.cpp can run the file "
                "only on token ids");
        kv_str(m, "tokenizer.ggml.model", "none");
        put_special(m, in, -1, -1);
        return 0;
    }
    const int kind = rb_tokenizer_kind(t), V = in->cfg.vocab_size, n_tok = rb_tokenizer_vocab_size(t);
    const int bpe = kind == RB_TOK_BPE, l2c = kind == RB_TOK_LLAMA2C;
    const int bos = rb_tokenizer_bos(t), eos = rb_tokenizer_eos(t), unk = rb_tokenizer_unk(t);
    if (n_tok > V)
        return rb_error_set(err, RB_EINVAL,
                            "the tokenizer has %d ids but the model's vocabulary is %d: they do not "
                            "belong together",
                            n_tok, V);
    kv_str(m, "tokenizer.ggml.model", bpe ? "gpt2" : "llama");
    if (bpe) kv_str(m, "tokenizer.ggml.pre", "llama-bpe");
    kv_arr(m, "tokenizer.ggml.tokens", RB_GGUF_STRING, (uint64_t)V);
    for (int id = 0; id < V; id++) {
        size_t len = 0;
        const char *s = id < n_tok ? rb_tokenizer_piece(t, id, &len) : NULL;
        char pad[32];
        if (!s) {
            snprintf(pad, sizeof pad, "[PAD%d]", id);
            put_str(&m->b, pad, strlen(pad));
        } else if (l2c && (id == bos || id == eos)) {
            put_str(&m->b, id == bos ? "<s>" : "</s>", id == bos ? 3 : 4);
        } else if (l2c && memchr(s, ' ', len)) { /* llama2.c's export turned U+2581 into ' ' */
            size_t sp = 0;
            for (size_t i = 0; i < len; i++) sp += s[i] == ' ';
            put_u64(&m->b, len + 2 * sp);
            for (size_t i = 0; i < len; i++)
                rb_strbuf_put(&m->b, s[i] == ' ' ? "\xE2\x96\x81" : s + i, s[i] == ' ' ? 3 : 1);
        } else {
            put_str(&m->b, s, len);
        }
    }
    if (!bpe) {
        kv_arr(m, "tokenizer.ggml.scores", RB_GGUF_F32, (uint64_t)V);
        for (int id = 0; id < V; id++)
            put_f32(&m->b, rb_tokenizer_piece_type(t, id) ? rb_tokenizer_score(t, id) : -1000.0f);
    }
    kv_arr(m, "tokenizer.ggml.token_type", RB_GGUF_I32, (uint64_t)V);
    for (int id = 0; id < V; id++) {
        int ty = rb_tokenizer_piece_type(t, id);
        put_u32(&m->b, (uint32_t)(ty ? ty : RB_GGUF_TOKEN_UNUSED));
    }
    if (bpe) {
        int32_t *pairs;
        size_t n;
        int rc = rb_tokenizer_bpe_merges(t, &pairs, &n, err);
        if (rc) return rc;
        kv_arr(m, "tokenizer.ggml.merges", RB_GGUF_STRING, n);
        for (size_t i = 0; i < n; i++) {
            size_t la, lb;
            const char *a = rb_tokenizer_piece(t, pairs[2 * i], &la), *b = rb_tokenizer_piece(t, pairs[2 * i + 1], &lb);
            RB_ASSERT(a && b); /* merges were validated against the vocabulary at load */
            put_u64(&m->b, la + 1 + lb);
            rb_strbuf_put(&m->b, a, la);
            rb_strbuf_put(&m->b, " ", 1);
            rb_strbuf_put(&m->b, b, lb);
        }
        free(pairs);
    }
    put_special(m, in, bos, eos);
    if (unk >= 0) kv_u32(m, "tokenizer.ggml.unknown_token_id", (uint32_t)unk);
    kv_bool(m, "tokenizer.ggml.add_bos_token", bos >= 0 || in->cfg.bos_id >= 0); /* rotbench evaluates with BOS first */
    kv_bool(m, "tokenizer.ggml.add_eos_token", 0);
    return 0;
}

/* general.* and llama.* keys, rotbench provenance, the vocabulary. */
static int put_meta(meta *m, const rb_export_in *in, uint32_t ftype, rb_error *err) {
    const rb_llama_config *c = &in->cfg;
    kv_str(m, "general.architecture", "llama");
    kv_str(m, "general.name", in->name && *in->name ? in->name : "rotbench export");
    kv_u32(m, "general.alignment", ALIGN);
    kv_u32(m, "general.file_type", ftype);
    kv_u32(m, "llama.vocab_size", (uint32_t)c->vocab_size);
    kv_u32(m, "llama.context_length", (uint32_t)(c->max_seq_len > 0 ? c->max_seq_len : 2048));
    kv_u32(m, "llama.embedding_length", (uint32_t)c->dim);
    kv_u32(m, "llama.block_count", (uint32_t)c->n_layers);
    kv_u32(m, "llama.feed_forward_length", (uint32_t)c->hidden_dim);
    kv_u32(m, "llama.rope.dimension_count", (uint32_t)c->head_dim);
    kv_u32(m, "llama.attention.head_count", (uint32_t)c->n_heads);
    kv_u32(m, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads);
    if (c->head_dim * c->n_heads != c->dim) {
        kv_u32(m, "llama.attention.key_length", (uint32_t)c->head_dim);
        kv_u32(m, "llama.attention.value_length", (uint32_t)c->head_dim);
    }
    kv_hparam(m, "llama.attention.layer_norm_rms_epsilon", c->rms_eps);
    kv_hparam(m, "llama.rope.freq_base", c->rope_theta);
    if (c->rope_scaling) { /* the table is rope_freqs.weight; its parameters for rotbench */
        kv_f64(m, "rotbench.rope_scaling.factor", c->rope_factor);
        kv_f64(m, "rotbench.rope_scaling.low_freq_factor", c->rope_low_freq_factor);
        kv_f64(m, "rotbench.rope_scaling.high_freq_factor", c->rope_high_freq_factor);
        kv_u32(m, "rotbench.rope_scaling.original_max_position_embeddings", (uint32_t)c->rope_original_max_pos);
    }
    kv_str(m, "rotbench.version", RB_VERSION);
    if (in->model_dir) kv_str(m, "rotbench.source", in->model_dir);
    kv_str(m, "rotbench.quant", in->quant && rb_quant_cfg_active(in->quant) ? in->quant->name : "none");
    kv_bool(m, "rotbench.weights_quantized", in->wq != NULL); /* linears hold dequantized integer grids */
    return put_vocab(m, in, err);
}

/* ---- the tensor directory ---- */

typedef struct tplan {
    char name[RB_GGUF_MAX_NAME + 1];
    uint32_t n_dims, type;
    uint64_t ne[2];
    uint64_t offset, nbytes;
} tplan;

/* Adds a tensor [rows][cols] (a vector when cols == 0) at the next aligned offset. */
static int plan_add(tplan *p, int *n, uint64_t *off, const char *name, uint64_t rows, uint64_t cols, uint32_t type,
                    rb_error *err) {
    tplan *t = &p[(*n)++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = cols ? 2 : 1;
    t->ne[0] = cols ? cols : rows;
    t->ne[1] = cols ? rows : 1;
    t->type = type;
    uint64_t es = type == RB_GGML_F32 ? 4 : 2;
    if (t->ne[1] && t->ne[0] > UINT64_MAX / 8 / t->ne[1])
        return rb_error_set(err, RB_EINVAL, "tensor %s [%llu x %llu] is too large", name, (unsigned long long)rows,
                            (unsigned long long)cols);
    t->nbytes = t->ne[0] * t->ne[1] * es;
    t->offset = *off;
    *off += (t->nbytes + ALIGN - 1) / ALIGN * ALIGN;
    return 0;
}

/* ---- the file ---- */

typedef struct wr {
    FILE *f;
    const char *path;
    uint64_t pos;
    uint8_t *stage;
    size_t cap, len;
    rb_error *err;
} wr;

static int wr_flush(wr *w) {
    errno = 0;
    if (w->len && fwrite(w->stage, 1, w->len, w->f) != w->len)
        return rb_error_set(w->err, RB_EIO, "%s: write failed: %s", w->path, strerror(errno ? errno : EIO));
    w->pos += w->len;
    w->len = 0;
    return 0;
}

static int wr_bytes(wr *w, const void *p, size_t n) {
    const uint8_t *s = p;
    while (n) {
        if (w->len == w->cap && wr_flush(w)) return w->err->code;
        size_t k = w->cap - w->len < n ? w->cap - w->len : n;
        memcpy(w->stage + w->len, s, k);
        w->len += k, s += k, n -= k;
    }
    return 0;
}

static int wr_pad(wr *w) {
    static const uint8_t zero[ALIGN];
    uint64_t at = w->pos + w->len;
    return wr_bytes(w, zero, (size_t)((ALIGN - at % ALIGN) % ALIGN));
}

/* Tensor t from x[rows][cols] (HF layout) converted to t->type; with perm_heads > 0 the rows go out
 * in the interleaved-pair order per head of hd rows: stored row h*hd + 2i + s is HF row h*hd + s*hd/2
 * + i (the inverse of the readers' un-permutation). */
static int wr_tensor(wr *w, const tplan *t, uint64_t data_off, const float *x, size_t rows, size_t cols, int perm_heads,
                     int hd) {
    int rc = wr_pad(w);
    if (rc) return rc;
    RB_ASSERT(w->pos + w->len == data_off + t->offset);
    const size_t es = t->type == RB_GGML_F32 ? 4 : 2, half = (size_t)hd / 2;
    uint8_t buf[256];
    for (size_t r = 0; r < rows; r++) {
        size_t src = r;
        if (perm_heads) {
            size_t h = r / (size_t)hd, j = r % (size_t)hd;
            src = h * (size_t)hd + (j % 2) * half + j / 2;
        }
        const float *row = x + src * cols;
        for (size_t c0 = 0; c0 < cols; c0 += sizeof buf / es) {
            size_t n = cols - c0 < sizeof buf / es ? cols - c0 : sizeof buf / es;
            if (t->type == RB_GGML_F32) memcpy(buf, row + c0, n * 4);
            for (size_t i = 0; i < n && t->type != RB_GGML_F32; i++) {
                const float v = row[c0 + i];
                const int f16 = t->type == RB_GGML_F16;
                const uint16_t h = f16 ? rb_f32_to_f16(v) : rb_f32_to_bf16(v), inf = f16 ? 0x7c00u : 0x7f80u;
                if (isfinite(v) && (h & inf) == inf)
                    return rb_error_set(w->err, RB_EINVAL, "tensor %s [%zu][%zu] = %g overflows %s; export F32%s",
                                        t->name, src, c0 + i, (double)v, f16 ? "F16 (max 65504)" : "BF16",
                                        f16 ? " or BF16" : "");
                buf[2 * i] = (uint8_t)(h & 0xff), buf[2 * i + 1] = (uint8_t)(h >> 8);
            }
            if ((rc = wr_bytes(w, buf, n * es))) return rc;
        }
    }
    return 0;
}

/* The data section in directory order: embedding, rope table, layers, final norm, lm_head. */
static int wr_data(wr *w, const rb_export_in *in, const tplan *p, uint64_t data_off, rb_error *err) {
    const rb_llama_config *c = &in->cfg;
    const size_t V = (size_t)c->vocab_size, D = (size_t)c->dim;
    int k = 0, rc;
    rb_layer_weights lw = {0};
    float *big = NULL, vec[RB_MAX_HEAD_DIM / 2];
    size_t nbig = 0;
    if (!rb_mul_ok(V, D, &nbig) || !rb_mul_ok(nbig, sizeof(float), &nbig))
        return rb_error_set(err, RB_EINVAL, "vocab %zu x dim %zu is too large", V, D);
    if ((rc = rb_mem_check(nbig, "the embedding matrix", "export from a machine with more memory", err))) return rc;
    if (!(big = rb_alloc(nbig))) return rb_error_set(err, RB_ENOMEM, "cannot allocate the %zu x %zu embedding", V, D);
    if ((rc = rb_export_load_embedding(in, big, err)) || (rc = wr_tensor(w, &p[k++], data_off, big, V, D, 0, 0)))
        goto done;
    if (c->rope_scaling) {
        const int half = c->head_dim / 2;
        const double old = c->rope_original_max_pos, low_wl = old / c->rope_low_freq_factor,
                     high_wl = old / c->rope_high_freq_factor;
        for (int i = 0; i < half; i++) { /* as rb_forward's inverse frequencies, as a divisor per frequency */
            double f = 1.0 / pow(c->rope_theta, (double)(2 * i) / (double)c->head_dim), wl = 2.0 * M_PI / f, d = 1.0;
            if (wl > low_wl)
                d = c->rope_factor;
            else if (wl >= high_wl) {
                double s = (old / wl - c->rope_low_freq_factor) / (c->rope_high_freq_factor - c->rope_low_freq_factor);
                d = 1.0 / ((1.0 - s) / c->rope_factor + s);
            }
            vec[i] = (float)d;
        }
        if ((rc = wr_tensor(w, &p[k++], data_off, vec, (size_t)half, 1, 0, 0))) goto done;
    }
    if ((rc = rb_layer_weights_init(&lw, c, err))) goto done;
    for (int l = 0; l < c->n_layers; l++) {
        if ((rc = rb_export_load_layer(in, l, &lw, err))) goto done;
        float *const mats[9] = {lw.rms_att, lw.wq, lw.wk, lw.wv, lw.wo, lw.rms_ffn, lw.w_gate, lw.w_up, lw.w_down};
        for (int s = 0; s < 9; s++) {
            const tplan *t = &p[k++];
            int perm = s == 1 ? c->n_heads : s == 2 ? c->n_kv_heads : 0;
            if ((rc = wr_tensor(w, t, data_off, mats[s], (size_t)t->ne[1], (size_t)t->ne[0], perm, c->head_dim)))
                goto done;
        }
    }
    if ((rc = in->src->load_final_norm(in->src->ctx, big, err)) ||
        (rc = wr_tensor(w, &p[k++], data_off, big, D, 1, 0, 0)) ||
        (rc = in->src->load_lm_head(in->src->ctx, big, err)) ||
        (rc = wr_tensor(w, &p[k++], data_off, big, V, D, 0, 0)) || (rc = wr_pad(w)))
        goto done;
    rc = wr_flush(w);
done:
    rb_layer_weights_free(&lw);
    rb_free(big);
    return rc;
}

static int check_in(const rb_export_in *in, uint32_t *mtype, uint32_t *ftype, rb_error *err) {
    const rb_llama_config *c = &in->cfg;
    RB_ASSERT(in->src && in->src->load_layer && in->src->embed && in->src->load_final_norm && in->src->load_lm_head);
    switch (in->dtype) {
    case RB_DT_F32: *mtype = RB_GGML_F32, *ftype = RB_GGUF_FTYPE_ALL_F32; break;
    case RB_DT_F16: *mtype = RB_GGML_F16, *ftype = RB_GGUF_FTYPE_MOSTLY_F16; break;
    case RB_DT_BF16: *mtype = RB_GGML_BF16, *ftype = RB_GGUF_FTYPE_MOSTLY_BF16; break;
    default: return rb_error_set(err, RB_EINVAL, "dtype %d is not F32, F16 or BF16", in->dtype);
    }
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->vocab_size <= 0 || c->head_dim <= 0 || c->head_dim % 2 || c->head_dim > RB_MAX_HEAD_DIM ||
        c->n_heads % c->n_kv_heads)
        return rb_error_set(err, RB_EINVAL,
                            "config (dim %d, hidden %d, layers %d, heads %d/%d, head_dim "
                            "%d, vocab %d) is not a valid Llama",
                            c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size);
    if (c->rope_scaling && !(c->rope_high_freq_factor > c->rope_low_freq_factor && c->rope_factor >= 1))
        return rb_error_set(err, RB_EINVAL, "rope scaling factors (factor %g, low %g, high %g) are invalid",
                            c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor);
    return 0;
}

/* The tensor directory in data order (*n entries, heap), *bytes the data section's size. */
static int plan_tensors(const rb_export_in *in, uint32_t mtype, tplan **out, int *n, uint64_t *bytes, rb_error *err) {
    const rb_llama_config *c = &in->cfg;
    const uint64_t D = (uint64_t)c->dim, H = (uint64_t)c->hidden_dim, V = (uint64_t)c->vocab_size;
    const uint64_t qd = (uint64_t)c->n_heads * (uint64_t)c->head_dim,
                   kvd = (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim;
    const int count = 3 + (c->rope_scaling ? 1 : 0) + RB_GGUF_LAYER_TENSORS * c->n_layers;
    tplan *p = *out = calloc((size_t)count, sizeof *p);
    if (!p) return rb_error_set(err, RB_ENOMEM, "out of memory");
    *n = 0;
    *bytes = 0;
    int rc = plan_add(p, n, bytes, "token_embd.weight", V, D, mtype, err);
    if (!rc && c->rope_scaling)
        rc = plan_add(p, n, bytes, "rope_freqs.weight", (uint64_t)c->head_dim / 2, 0, RB_GGML_F32, err);
    for (int l = 0; l < c->n_layers && !rc; l++) {
        const uint64_t rows[9] = {D, qd, kvd, kvd, D, D, H, H, D}, cols[9] = {0, D, D, D, qd, 0, D, D, H};
        for (int s = 0; s < RB_GGUF_LAYER_TENSORS && !rc; s++) {
            char name[RB_GGUF_MAX_NAME + 1];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, rb_gguf_layer_names[s]);
            rc = plan_add(p, n, bytes, name, rows[s], cols[s], cols[s] ? mtype : RB_GGML_F32, err);
        }
    }
    if (!rc) rc = plan_add(p, n, bytes, "output_norm.weight", D, 0, RB_GGML_F32, err);
    if (!rc) rc = plan_add(p, n, bytes, "output.weight", V, D, mtype, err);
    RB_ASSERT(rc || *n == count);
    return rc;
}

/* Magic, version, counts, the metadata, the tensor infos. */
static void put_header(rb_strbuf *hdr, const meta *m, const tplan *p, int n) {
    rb_strbuf_put(hdr, RB_GGUF_MAGIC, 4);
    put_u32(hdr, RB_GGUF_VERSION);
    put_u64(hdr, (uint64_t)n);
    put_u64(hdr, m->n);
    if (!m->b.oom) rb_strbuf_put(hdr, m->b.p, m->b.len);
    for (int i = 0; i < n; i++) {
        put_str(hdr, p[i].name, strlen(p[i].name));
        put_u32(hdr, p[i].n_dims);
        for (uint32_t d = 0; d < p[i].n_dims; d++) put_u64(hdr, p[i].ne[d]);
        put_u32(hdr, p[i].type);
        put_u64(hdr, p[i].offset);
    }
}

/* Writes the whole file at w->path (opened here, closed on success; w->f stays set on failure). */
static int write_file(wr *w, const rb_export_in *in, const rb_strbuf *hdr, const tplan *p, uint64_t bytes,
                      rb_error *err) {
    const uint64_t data_off = (hdr->len + ALIGN - 1) / ALIGN * ALIGN;
    if (!(w->stage = malloc(STAGE_BYTES))) return rb_error_set(err, RB_ENOMEM, "out of memory");
    w->cap = STAGE_BYTES;
    errno = 0;
    if (!(w->f = fopen(w->path, "wb")))
        return rb_error_set(err, RB_EIO, "%s: cannot create: %s", w->path, strerror(errno));
    int rc;
    if ((rc = wr_bytes(w, hdr->p, hdr->len)) || (rc = wr_pad(w)) || (rc = wr_data(w, in, p, data_off, err))) return rc;
    RB_ASSERT(w->pos == data_off + bytes);
    /* Buffered data reaches the disk only at fflush/fclose: a full disk often shows up here. */
    errno = 0;
    int bad = fflush(w->f) != 0 || ferror(w->f), e = errno;
    bad |= fclose(w->f) != 0;
    if (!e) e = errno;
    w->f = NULL;
    if (bad) return rb_error_set(err, RB_EIO, "%s: write failed: %s", w->path, strerror(e ? e : EIO));
    return 0;
}

int rb_export_gguf(const rb_export_in *in, const char *dir, rb_error *err) {
    RB_ASSERT(in && dir);
    uint32_t mtype = 0, ftype = 0;
    int rc = check_in(in, &mtype, &ftype, err);
    if (rc) return rc;
    meta m = {0};
    rb_strbuf hdr = {0};
    tplan *p = NULL;
    int n = 0;
    uint64_t bytes = 0;
    char *path = rb_path_join(dir, RB_EXPORT_GGUF_FILE), *partial = NULL;
    size_t plen = path ? strlen(path) : 0;
    if (path && (partial = malloc(plen + sizeof ".partial")))
        memcpy(partial, path, plen), memcpy(partial + plen, ".partial", sizeof ".partial");
    wr w = {.path = partial, .err = err};
    if (!partial) rc = rb_error_set(err, RB_ENOMEM, "out of memory");
    if (!rc) rc = put_meta(&m, in, ftype, err);
    if (!rc) rc = plan_tensors(in, mtype, &p, &n, &bytes, err);
    if (!rc) {
        put_header(&hdr, &m, p, n);
        if (m.b.oom || hdr.oom) rc = rb_error_set(err, RB_ENOMEM, "out of memory building the header");
    }
    if (!rc) rc = write_file(&w, in, &hdr, p, bytes, err);
    if (!rc) rc = rb_rename_durable(partial, path, err);
    if (w.f) fclose(w.f);
    if (rc && w.stage) unlink(partial); /* only once this call may have created it */
    free(w.stage);
    free(m.b.p);
    free(hdr.p);
    free(p);
    free(path);
    free(partial);
    return rc;
}

#include "rb_make_model.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rb_file.h"
#include "core/rb_rng.h"
#include "rb_hf_config.h"
#include "rb_model_internal.h"
#include "rb_safetensors.h"

/* ---- presets ---- */

typedef struct preset {
    const char *name, *desc;
    int dim, hidden, layers, heads, kv_heads;
    int head_dim; /* 0: dim / heads, written to config.json only when it differs from that */
    int vocab, max_pos, tied, llama3_rope, outliers;
    double rope_theta;
} preset;

static const preset presets[] = {
    {"tiny", "MHA, untied lm_head: dim 64, hidden 176, 2 layers, 4 heads (hd 16), vocab 512", 64, 176, 2, 4, 4, 0, 512,
     2048, 0, 0, 0, 10000.0},
    {"gqa", "grouped-query attention: dim 64, hidden 176, 2 layers, 8 heads / 2 kv heads (hd 8), vocab 512", 64, 176, 2,
     8, 2, 0, 512, 2048, 0, 0, 0, 10000.0},
    {"tied", "tie_word_embeddings (no lm_head.weight stored): dim 64, hidden 176, 2 layers, 4 heads, vocab 512", 64,
     176, 2, 4, 4, 0, 512, 2048, 1, 0, 0, 10000.0},
    {"llama3",
     "Llama-3.1 RoPE scaling (factor 8, low 1, high 4, original 8192, theta 500000; head_dim 32 puts frequencies in "
     "all three bands), GQA 4/2, explicit head_dim 32 != dim/heads: dim 64, hidden 192, 2 layers, vocab 512",
     64, 192, 2, 4, 2, 32, 512, 131072, 0, 1, 0, 500000.0},
    {"npot", "non-power-of-two widths: dim 96, hidden 344, 3 layers, 6 heads / 3 kv heads (hd 16), vocab 500", 96, 344,
     3, 6, 3, 0, 500, 2048, 0, 0, 0, 10000.0},
    {"outliers",
     "planted outlier channels (3 residual channels with x12 embedding columns, x4 norm gains and x8 down_proj rows; "
     "2 FFN channels with x6 up_proj rows): dim 64, hidden 176, 2 layers, 4 heads, vocab 512",
     64, 176, 2, 4, 4, 0, 512, 2048, 0, 0, 1, 10000.0},
};
#define N_PRESETS (sizeof presets / sizeof presets[0])

const char *const *rb_make_model_presets(void) {
    static const char *names[N_PRESETS + 1];
    for (size_t i = 0; i < N_PRESETS; i++) names[i] = presets[i].name;
    names[N_PRESETS] = NULL;
    return names;
}

static const preset *find_preset(const char *name) {
    for (size_t i = 0; i < N_PRESETS; i++)
        if (strcmp(presets[i].name, name) == 0) return &presets[i];
    return NULL;
}

const char *rb_make_model_preset_desc(const char *name) {
    const preset *p = name ? find_preset(name) : NULL;
    return p ? p->desc : NULL;
}

/* Token ids the generated tokenizer.json defines. */
#define TOK_BOS 256
#define TOK_EOS 257

static int resolve_opts(const rb_make_model_opts *o, const preset **pp, rb_llama_config *c, int *dtype, rb_error *err) {
    const char *pname = o->preset ? o->preset : "tiny";
    const preset *p = find_preset(pname);
    if (!p) return rb_error_set(err, RB_EINVAL, "make-model: unknown preset '%s'", pname);
    const char *dt = o->dtype ? o->dtype : "F32";
    *dtype = rb_dtype_from_name(dt);
    if (!rb_dtype_is_float(*dtype))
        return rb_error_set(err, RB_EINVAL, "make-model: dtype '%s' is not F32, F16 or BF16", dt);
    const int ov[6] = {o->dim, o->hidden_dim, o->n_layers, o->n_heads, o->n_kv_heads, o->vocab_size};
    static const char *const ovn[6] = {"dim", "hidden", "layers", "heads", "kv-heads", "vocab"};
    for (int i = 0; i < 6; i++)
        if (ov[i] < 0) return rb_error_set(err, RB_EINVAL, "make-model: --%s %d is negative", ovn[i], ov[i]);
    if (o->shards < 0) return rb_error_set(err, RB_EINVAL, "make-model: --shards %d is negative", o->shards);
    memset(c, 0, sizeof *c);
    c->dim = o->dim ? o->dim : p->dim;
    c->hidden_dim = o->hidden_dim ? o->hidden_dim : p->hidden;
    c->n_layers = o->n_layers ? o->n_layers : p->layers;
    c->n_heads = o->n_heads ? o->n_heads : p->heads;
    /* Overriding the heads alone keeps the preset's attention kind (MHA stays MHA). */
    c->n_kv_heads = o->n_kv_heads ? o->n_kv_heads : (p->kv_heads == p->heads ? c->n_heads : p->kv_heads);
    c->vocab_size = o->vocab_size ? o->vocab_size : p->vocab;
    if (p->head_dim) {
        c->head_dim = p->head_dim;
    } else {
        if (c->dim % c->n_heads)
            return rb_error_set(err, RB_EINVAL, "make-model: --heads %d does not divide --dim %d", c->n_heads, c->dim);
        c->head_dim = c->dim / c->n_heads;
    }
    if (c->head_dim % 2)
        return rb_error_set(err, RB_EINVAL, "make-model: head_dim %d is odd (RoPE rotates pairs)", c->head_dim);
    if (c->head_dim > RB_MAX_HEAD_DIM)
        return rb_error_set(err, RB_EINVAL, "make-model: head_dim %d is above the supported %d", c->head_dim,
                            RB_MAX_HEAD_DIM);
    if (c->n_heads % c->n_kv_heads)
        return rb_error_set(err, RB_EINVAL, "make-model: --kv-heads %d does not divide --heads %d", c->n_kv_heads,
                            c->n_heads);
    if (c->vocab_size < TOK_EOS + 1)
        return rb_error_set(err, RB_EINVAL, "make-model: --vocab %d is below %d (the tokenizer's ids)", c->vocab_size,
                            TOK_EOS + 1);
    c->max_seq_len = p->max_pos;
    c->rms_eps = 1e-5;
    c->rope_theta = p->rope_theta;
    if (p->llama3_rope) {
        c->rope_scaling = 1;
        c->rope_factor = 8.0;
        c->rope_low_freq_factor = 1.0;
        c->rope_high_freq_factor = 4.0;
        c->rope_original_max_pos = 8192;
    }
    c->tied = p->tied;
    c->bos_id = TOK_BOS;
    c->eos_id = TOK_EOS;
    snprintf(c->dtype, sizeof c->dtype, "%s", rb_dtype_name(*dtype));
    *pp = p;
    return 0;
}

int rb_make_model_config(const rb_make_model_opts *o, rb_llama_config *c, rb_error *err) {
    const preset *p;
    int dt;
    return resolve_opts(o, &p, c, &dt, err);
}

/* Each tensor gets its own rb_rng stream, keyed by seed and name, so any one tensor can be
 * regenerated without the others (rb_make_model_tensor) and the write order does not matter. */

/* k distinct values in [0, n), ascending (k <= n, k <= 8). */
static void pick_channels(rb_rng *r, int n, int k, int *out) {
    for (int i = 0; i < k; i++) {
        int v, dup;
        do {
            v = (int)(rb_rng_next(r) % (uint64_t)n);
            dup = 0;
            for (int j = 0; j < i; j++) dup |= out[j] == v;
        } while (dup);
        int j = i;
        for (; j > 0 && out[j - 1] > v; j--) out[j] = out[j - 1];
        out[j] = v;
    }
}

typedef struct outl {
    int ch[8], n_ch, hch[8], n_hch;
} outl;

static void outlier_set(const rb_make_model_opts *o, const preset *p, const rb_llama_config *c, outl *ol) {
    memset(ol, 0, sizeof *ol);
    if (!p->outliers) return;
    rb_rng r;
    rb_rng_seed(&r, o->seed, "outlier channels");
    ol->n_ch = c->dim < 3 ? c->dim : 3;
    ol->n_hch = c->hidden_dim < 2 ? c->hidden_dim : 2;
    pick_channels(&r, c->dim, ol->n_ch, ol->ch);
    pick_channels(&r, c->hidden_dim, ol->n_hch, ol->hch);
}

int rb_make_model_outlier_channels(const rb_make_model_opts *o, int *ch, int *n_ch, int *hch, int *n_hch,
                                   rb_error *err) {
    const preset *p;
    rb_llama_config c;
    int dt, rc = resolve_opts(o, &p, &c, &dt, err);
    if (rc) return rc;
    outl ol;
    outlier_set(o, p, &c, &ol);
    memcpy(ch, ol.ch, sizeof ol.ch);
    memcpy(hch, ol.hch, sizeof ol.hch);
    *n_ch = ol.n_ch;
    *n_hch = ol.n_hch;
    return 0;
}

/* ---- tensors ---- */

enum { K_EMBED = -1, K_NORM = -2, K_LM_HEAD = -3 }; /* >= 0: a layer slot RB_W_* */

typedef struct gen_tensor {
    char name[96];
    int kind, layer, ndim;
    int64_t shape[2];
    /* for the fill callback */
    const rb_make_model_opts *o;
    const outl *ol;
} gen_tensor;

static void gen_describe(gen_tensor *t, const rb_llama_config *c, int kind, int layer) {
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->layer = layer;
    t->ndim = 2;
    t->shape[0] = c->vocab_size;
    t->shape[1] = c->dim;
    if (kind == K_EMBED) {
        snprintf(t->name, sizeof t->name, "model.embed_tokens.weight");
    } else if (kind == K_LM_HEAD) {
        snprintf(t->name, sizeof t->name, "lm_head.weight");
    } else if (kind == K_NORM) {
        snprintf(t->name, sizeof t->name, "model.norm.weight");
        t->ndim = 1;
        t->shape[0] = c->dim;
    } else {
        snprintf(t->name, sizeof t->name, rb_hf_slot_names[kind], layer);
        size_t sh[2];
        rb_model_slot_shape(c, kind, &t->ndim, sh);
        t->shape[0] = (int64_t)sh[0];
        t->shape[1] = (int64_t)sh[1];
    }
}

/* Generates tensor `t` into out (numel floats). Weights are N(0, 1/fan_in), so activations keep
 * unit scale layer to layer; the embedding is N(0, 1); RMSNorm gains are 1 + N(0, 0.1²). */
static void gen_values(const gen_tensor *t, const rb_make_model_opts *o, const outl *ol, float *out) {
    rb_rng r;
    rb_rng_seed(&r, o->seed, t->name);
    const size_t rows = (size_t)t->shape[0], cols = t->ndim == 2 ? (size_t)t->shape[1] : 1;
    const size_t n = rows * cols;
    const int norm = t->kind == K_NORM || t->kind == RB_W_ATTN_NORM || t->kind == RB_W_FFN_NORM;
    if (norm) {
        rb_rng_gauss(&r, out, n, 1.0, 0.1);
    } else {
        double fan_in = t->kind == K_EMBED ? 1.0 : (double)cols;
        rb_rng_gauss(&r, out, n, 0.0, 1.0 / sqrt(fan_in));
    }
    /* Outliers as in real Llamas: a few residual channels carry large values (embedding columns,
     * MLP writes via down_proj rows) and the norms amplify them, so the inputs of q/k/v and
     * gate/up have outlier channels; a few FFN channels are large at the down_proj input. */
    for (int k = 0; k < ol->n_ch; k++) {
        size_t ch = (size_t)ol->ch[k];
        if (t->kind == K_EMBED)
            for (size_t i = 0; i < rows; i++) out[i * cols + ch] *= 12.0f;
        else if (t->kind == RB_W_ATTN_NORM || t->kind == RB_W_FFN_NORM)
            out[ch] *= 4.0f;
        else if (t->kind == RB_W_DOWN)
            for (size_t j = 0; j < cols; j++) out[ch * cols + j] *= 8.0f;
    }
    for (int k = 0; k < ol->n_hch && t->kind == RB_W_UP; k++)
        for (size_t j = 0; j < cols; j++) out[(size_t)ol->hch[k] * cols + j] *= 6.0f;
}

static int gen_fill(void *ctx, float *out, rb_error *err) {
    (void)err;
    const gen_tensor *t = ctx;
    gen_values(t, t->o, t->ol, out);
    return 0;
}

/* All tensors of the model in file order: embedding, layers, final norm, lm_head (unless tied). */
static gen_tensor *gen_list(const rb_llama_config *c, size_t *n) {
    size_t cap = (size_t)c->n_layers * RB_W_COUNT + 3, k = 0;
    gen_tensor *ts = calloc(cap, sizeof *ts);
    if (!ts) return NULL;
    gen_describe(&ts[k++], c, K_EMBED, 0);
    for (int l = 0; l < c->n_layers; l++)
        for (int s = 0; s < RB_W_COUNT; s++) gen_describe(&ts[k++], c, s, l);
    gen_describe(&ts[k++], c, K_NORM, 0);
    if (!c->tied) gen_describe(&ts[k++], c, K_LM_HEAD, 0);
    *n = k;
    return ts;
}

int rb_make_model_tensor(const rb_make_model_opts *o, const char *name, float *out, size_t n, rb_error *err) {
    const preset *p;
    rb_llama_config c;
    int dt, rc = resolve_opts(o, &p, &c, &dt, err);
    if (rc) return rc;
    size_t nt, i = 0;
    gen_tensor *ts = gen_list(&c, &nt);
    if (!ts) return rb_error_set(err, RB_ENOMEM, "make-model: out of memory");
    while (i < nt && strcmp(ts[i].name, name) != 0) i++;
    if (i == nt) {
        rc = rb_error_set(err, RB_EINVAL, "make-model: preset %s has no tensor %s", p->name, name);
    } else {
        size_t numel = (size_t)ts[i].shape[0] * (ts[i].ndim == 2 ? (size_t)ts[i].shape[1] : 1);
        if (numel != n) {
            rc = rb_error_set(err, RB_EINVAL, "make-model: tensor %s has %zu elements, not %zu", name, numel, n);
        } else {
            outl ol;
            outlier_set(o, p, &c, &ol);
            gen_values(&ts[i], o, &ol, out);
        }
    }
    free(ts);
    return rc;
}

/* ---- JSON files ---- */

/* Writes `root` (consumed) as indented JSON with a final newline. */
static int write_json(const char *path, json_t *root, rb_error *err) {
    int rc = root ? rb_json_write_file(path, root, err) : rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    json_decref(root);
    return rc;
}

/* ---- tokenizer.json ---- */

/* Llama-3's pre-tokenizer split (backslashes are regex escapes, not C ones). */
static const char llama3_regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
 * map in order to U+0100.. so every byte has a visible, non-space character. */
static unsigned byte_to_unicode(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return (unsigned)b;
    unsigned k = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) k++;
    return 256 + k;
}

static json_t *added_token(int id, const char *content) {
    return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", content, "single_word", 0, "lstrip", 0,
                     "rstrip", 0, "normalized", 0, "special", 1);
}

int rb_make_model_write_tokenizer(const char *path, rb_error *err) {
    json_t *vocab = json_object();
    for (int b = 0; b < 256 && vocab; b++) {
        unsigned cp = byte_to_unicode(b);
        char key[3] = {0};
        if (cp < 0x80) {
            key[0] = (char)cp;
        } else { /* cp < 0x800: two UTF-8 bytes */
            key[0] = (char)(0xc0 | (cp >> 6));
            key[1] = (char)(0x80 | (cp & 0x3f));
        }
        if (json_object_set_new(vocab, key, json_integer(b))) {
            json_decref(vocab);
            vocab = NULL;
        }
    }
    json_t *root =
        !vocab ? NULL
               : json_pack("{s:s, s:n, s:n, s:[o, o], s:n,"
                           " s:{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]},"
                           " s:n, s:{s:s, s:b, s:b, s:b},"
                           " s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:[]}}",
                           "version", "1.0", "truncation", "padding", "added_tokens",
                           added_token(TOK_BOS, "<|begin_of_text|>"), added_token(TOK_EOS, "<|end_of_text|>"),
                           "normalizer", "pre_tokenizer", "type", "Sequence", "pretokenizers", "type", "Split",
                           "pattern", "Regex", llama3_regex, "behavior", "Isolated", "invert", 0, "type", "ByteLevel",
                           "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0, "post_processor", "decoder",
                           "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1, "use_regex", 1, "model",
                           "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                           "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 1, "vocab", vocab, "merges");
    return write_json(path, root, err);
}

/* ---- the checkpoint ---- */

/* Shard of each tensor: by cumulative bytes, but moving at most one shard per tensor and never
 * leaving fewer tensors than shards, so every shard gets at least one tensor. */
static void assign_shards(const rb_st_write_tensor *w, size_t n, int shards, int *idx) {
    uint64_t total = 0, cum = 0;
    for (size_t i = 0; i < n; i++) total += rb_st_write_nbytes(&w[i]);
    for (size_t i = 0; i < n; i++) {
        long long target = total ? (long long)((double)cum / (double)total * shards) : 0;
        long long lo = i ? idx[i - 1] : 0, hi = i ? idx[i - 1] + 1 : 0;
        long long need = (long long)shards - (long long)(n - i); /* shards left - tensors left */
        if (target < lo) target = lo;
        if (target < need) target = need;
        if (target > hi) target = hi;
        if (target > shards - 1) target = shards - 1;
        idx[i] = (int)target;
        cum += rb_st_write_nbytes(&w[i]);
    }
}

static int write_sharded(const char *dir, const rb_st_write_tensor *w, size_t n, int shards, rb_error *err) {
    if ((size_t)shards > n)
        return rb_error_set(err, RB_EINVAL, "make-model: --shards %d is more than the %zu tensors", shards, n);
    int *idx = malloc(n * sizeof *idx);
    if (!idx) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", dir);
    assign_shards(w, n, shards, idx);
    int rc = rb_safetensors_write_shards(dir, w, n, idx, shards, err);
    free(idx);
    return rc;
}

/* Removes dir/name if present: a stale file of the other layout would shadow what was written. */
static int remove_stale(const char *dir, const char *name, rb_error *err) {
    char *p = rb_path_join(dir, name);
    if (!p) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", dir);
    int rc = 0;
    if (unlink(p) != 0 && errno != ENOENT) rc = rb_error_set(err, RB_EIO, "%s: cannot remove: %s", p, strerror(errno));
    free(p);
    return rc;
}

int rb_make_model(const char *out_dir, const rb_make_model_opts *o, rb_error *err) {
    RB_ASSERT(out_dir && o);
    const preset *p;
    rb_llama_config c;
    int dtype, rc = resolve_opts(o, &p, &c, &dtype, err);
    if (rc) return rc;
    if (mkdir(out_dir, 0777) != 0 && !(errno == EEXIST && rb_path_is_dir(out_dir)))
        return rb_error_set(err, RB_EIO, "%s: cannot create directory: %s", out_dir, strerror(errno));
    outl ol;
    outlier_set(o, p, &c, &ol);
    size_t n;
    gen_tensor *ts = gen_list(&c, &n);
    rb_st_write_tensor *w = calloc(n ? n : 1, sizeof *w);
    char *cfg = rb_path_join(out_dir, "config.json"), *tok = rb_path_join(out_dir, "tokenizer.json"),
         *single = rb_path_join(out_dir, "model.safetensors");
    if (!ts || !w || !cfg || !tok || !single) {
        rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", out_dir);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        ts[i].o = o;
        ts[i].ol = &ol;
        w[i].name = ts[i].name;
        w[i].dtype = dtype;
        w[i].ndim = ts[i].ndim;
        w[i].shape[0] = ts[i].shape[0];
        w[i].shape[1] = ts[i].shape[1];
        w[i].fill = gen_fill;
        w[i].ctx = &ts[i];
    }
    if ((rc = rb_hf_config_write(cfg, &c, err)) || (rc = rb_make_model_write_tokenizer(tok, err))) goto done;
    if (o->shards > 1) {
        if (!(rc = remove_stale(out_dir, "model.safetensors", err))) rc = write_sharded(out_dir, w, n, o->shards, err);
    } else {
        if (!(rc = remove_stale(out_dir, "model.safetensors.index.json", err)))
            rc = rb_safetensors_write(single, w, n, err);
    }
done:
    free(ts);
    free(w);
    free(cfg);
    free(tok);
    free(single);
    return rc;
}

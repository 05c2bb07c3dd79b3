/* rb_model: format dispatch, accessors, and fp32 materialization of validated tensor views. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <sys/stat.h>

#include "core/rb_half.h"
#include "core/rb_math.h"
#include "rb_llama2c.h"
#include "rb_model_internal.h"

/* ---- shapes and bookkeeping shared with the readers ---- */

void rb_model_slot_shape(const rb_llama_config *c, int slot, int *ndim, size_t shape[2]) {
    const size_t D = (size_t)c->dim, H = (size_t)c->hidden_dim;
    const size_t qd = (size_t)c->n_heads * (size_t)c->head_dim, kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    *ndim = 2;
    shape[1] = D;
    switch (slot) {
    case RB_W_ATTN_NORM:
    case RB_W_FFN_NORM:
        *ndim = 1;
        shape[0] = D;
        shape[1] = 0;
        break;
    case RB_W_Q: shape[0] = qd; break;
    case RB_W_K:
    case RB_W_V: shape[0] = kvd; break;
    case RB_W_O:
        shape[0] = D;
        shape[1] = qd;
        break;
    case RB_W_GATE:
    case RB_W_UP: shape[0] = H; break;
    case RB_W_DOWN:
        shape[0] = D;
        shape[1] = H;
        break;
    default: RB_ASSERT(0 && "bad layer slot");
    }
}

int rb_model_list_add(rb_model *m, const char *name, const char *dtype, int ndim, const int64_t *shape, uint64_t nbytes,
                      const char *file, rb_error *err) {
    /* Capacity is 16, then doubles whenever the count reaches a power of two >= 16. */
    if (m->n_list == 0 || (m->n_list >= 16 && (m->n_list & (m->n_list - 1)) == 0)) {
        size_t cap = m->n_list ? (size_t)m->n_list * 2 : 16;
        rb_tensor_desc *l = realloc(m->list, cap * sizeof *l);
        if (!l) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", m->path);
        m->list = l;
    }
    rb_tensor_desc *d = &m->list[m->n_list++];
    memset(d, 0, sizeof *d);
    d->name = name;
    d->dtype = dtype;
    d->ndim = ndim;
    for (int i = 0; i < ndim && i < 4; i++) d->shape[i] = shape[i];
    d->nbytes = nbytes;
    d->file = file;
    return 0;
}

/* ---- open / close ---- */

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return rb_strdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, path, n);
        d[n] = '\0';
    }
    return d;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int rb_model_open(const char *path, rb_model **out, rb_error *err) {
    RB_ASSERT(path && out);
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0)
        return rb_error_set(err, errno == ENOENT ? RB_ENOTFOUND : RB_EIO, "%s: cannot open: %s", path, strerror(errno));
    rb_model *m = calloc(1, sizeof *m);
    if (!m) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    m->path = rb_strdup(path);
    int is_dir = S_ISDIR(st.st_mode);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    /* A file of an HF checkpoint names its directory (convenient on the command line). */
    int hf_file = !is_dir && (strcmp(base, "config.json") == 0 || ends_with(base, ".safetensors") ||
                              ends_with(base, ".safetensors.index.json"));
    m->dir = is_dir ? rb_strdup(path) : dir_of(path);
    int rc;
    if (!m->path || !m->dir) {
        rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    } else if (is_dir || hf_file) {
        m->kind = RB_MODEL_HF;
        rc = rb_hf_open(m, err);
    } else if (ends_with(base, ".gguf")) {
        m->kind = RB_MODEL_GGUF;
        rc = rb_gguf_open(m, err);
    } else {
        m->kind = RB_MODEL_LLAMA2C;
        rc = rb_llama2c_open(m, err);
    }
    if (rc) {
        rb_model_close(m);
        return rc;
    }
    *out = m;
    return 0;
}

void rb_model_close(rb_model *m) {
    if (!m) return;
    for (int s = 0; s < m->n_shards; s++) rb_st_close(&m->shards[s]);
    free(m->shards);
    rb_mapped_close(&m->bin);
    if (m->ext && m->ext_free) m->ext_free(m->ext);
    free(m->layers);
    free(m->list);
    free(m->path);
    free(m->dir);
    free(m);
}

const rb_llama_config *rb_model_config(const rb_model *m) { return &m->cfg; }
int rb_model_kind(const rb_model *m) { return m->kind; }
const char *rb_model_path(const rb_model *m) { return m->path; }
const char *rb_model_dir(const rb_model *m) { return m->dir; }
uint64_t rb_model_param_count(const rb_model *m) { return m->n_params; }

int rb_model_tensor(const rb_model *m, int i, rb_tensor_desc *out) {
    if (i < 0) return m->n_list;
    if (i >= m->n_list) return RB_EINVAL;
    *out = m->list[i];
    return 0;
}

/* ---- layer buffers ---- */

static float **slot_buf(rb_layer_weights *w, int s) {
    switch (s) {
    case RB_W_ATTN_NORM: return &w->rms_att;
    case RB_W_Q: return &w->wq;
    case RB_W_K: return &w->wk;
    case RB_W_V: return &w->wv;
    case RB_W_O: return &w->wo;
    case RB_W_FFN_NORM: return &w->rms_ffn;
    case RB_W_GATE: return &w->w_gate;
    case RB_W_UP: return &w->w_up;
    case RB_W_DOWN: return &w->w_down;
    }
    RB_ASSERT(0 && "bad layer slot");
    return NULL;
}

int rb_layer_weights_init(rb_layer_weights *w, const rb_llama_config *c, rb_error *err) {
    memset(w, 0, sizeof *w);
    for (int s = 0; s < RB_W_COUNT; s++) {
        int nd;
        size_t sh[2], n;
        rb_model_slot_shape(c, s, &nd, sh);
        if (nd == 1) sh[1] = 1;
        if (!rb_mul_ok(sh[0], sh[1], &n) || !rb_mul_ok(n, sizeof(float), &n) || !(*slot_buf(w, s) = rb_alloc(n))) {
            rb_layer_weights_free(w);
            return rb_error_set(err, RB_ENOMEM, "layer weights: cannot allocate %zu x %zu floats", sh[0], sh[1]);
        }
    }
    return 0;
}

void rb_layer_weights_free(rb_layer_weights *w) {
    for (int s = 0; s < RB_W_COUNT; s++) {
        rb_free(*slot_buf(w, s));
        *slot_buf(w, s) = NULL;
    }
}

/* ---- conversion to fp32 ---- */

/* bf16 is the top half of an fp32: shift it into place. The memcpys (src may be unaligned) become
 * plain loads/stores, and gcc -O2 vectorizes the loop. */
static void bf16_to_f32(const uint8_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        uint32_t u = (uint32_t)h << 16;
        memcpy(&dst[i], &u, 4);
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
/* F16C converts 8 halves per instruction, exactly (subnormals included): ~5x the portable
 * branchy scalar path, which matters for fp16 checkpoints such as Llama-2's. */
__attribute__((target("avx,f16c"))) static void f16_to_f32_f16c(const uint8_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i))));
    rb_f16_to_f32_n(src + 2 * i, dst + i, n - i);
}

/* F16C and AVX with the OS saving YMM state, from cpuid (clang 14 rejects __builtin_cpu_supports("f16c"),
 * and libFuzzer builds use clang). Computed once; a racing first call writes the same value. */
static int have_f16c(void) {
    static int cached = -1;
    if (cached < 0) {
        unsigned a, b, c, d;
        int ok = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) && (c & bit_AVX) && (c & bit_OSXSAVE);
        if (ok) {
            unsigned lo, hi;
            __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            ok = (lo & 6u) == 6u; /* XMM and YMM state enabled */
        }
        cached = ok;
    }
    return cached;
}

static void f16_to_f32(const uint8_t *src, float *dst, size_t n) {
    if (have_f16c())
        f16_to_f32_f16c(src, dst, n);
    else
        rb_f16_to_f32_n(src, dst, n);
}
#else
static void f16_to_f32(const uint8_t *src, float *dst, size_t n) { rb_f16_to_f32_n(src, dst, n); }
#endif

static void convert(const uint8_t *src, int dtype, float *dst, size_t n) {
    if (n == 0) return;
    switch (dtype) {
    case RB_DT_F32: memcpy(dst, src, n * 4); break;
    case RB_DT_BF16: bf16_to_f32(src, dst, n); break;
    case RB_DT_F16: f16_to_f32(src, dst, n); break;
    default: RB_ASSERT(0 && "dtype not validated at open");
    }
}

/* Drops the mapping's resident pages of [p, p+n) once converted: file-backed pages count in RSS,
 * and without this a layer-major pass would end up holding the whole checkpoint resident. The
 * page cache keeps the data, so a later read refaults it cheaply. */
static void release_pages(const uint8_t *p, size_t n) {
    static long page = 0;
    if (!page) page = sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~((uintptr_t)page - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

/* A NaN/Inf weight is refused where it is read, naming the tensor and the entry (it would otherwise
 * surface as a NaN perplexity). n values of dst, entry 0 at row row0 of the tensor. */
static int check_finite(const rb_tref *t, const float *dst, size_t n, size_t row0, rb_error *err) {
    long i = rb_first_nonfinite(dst, n);
    if (i < 0) return 0;
    return rb_error_set(err, RB_EFORMAT, "%s: tensor %s: non-finite value %g at [%zu][%zu]", t->file, t->name,
                        (double)dst[i], row0 + (size_t)i / t->cols, (size_t)i % t->cols);
}

/* Whole tensor into dst[rows][cols], applying the llama2.c → HF per-head row permutation: new row
 * j of a head is old row 2j for j < hd/2 and old row 2(j - hd/2) + 1 after. Errors: RB_EFORMAT (a
 * non-finite value; its position is the stored row's, before the permutation). */
static int load_tref(const rb_tref *t, float *dst, rb_error *err) {
    if (t->gq) return rb_gptq_tref_load(t, dst, err);
    const size_t row_bytes = t->cols * rb_dtype_size(t->dtype);
    if (!t->perm_heads) {
        convert(t->data, t->dtype, dst, t->rows * t->cols);
    } else {
        const size_t hd = (size_t)t->perm_head_dim, half = hd / 2;
        for (size_t h = 0; h < (size_t)t->perm_heads; h++)
            for (size_t j = 0; j < hd; j++) {
                size_t old = h * hd + (j < half ? 2 * j : 2 * (j - half) + 1);
                convert(t->data + old * row_bytes, t->dtype, dst + (h * hd + j) * t->cols, t->cols);
                if (check_finite(t, dst + (h * hd + j) * t->cols, t->cols, old, err)) return err->code;
            }
    }
    release_pages(t->data, t->rows * row_bytes);
    return t->perm_heads ? 0 : check_finite(t, dst, t->rows * t->cols, 0, err);
}

int rb_model_load_layer(rb_model *m, int l, rb_layer_weights *w, rb_error *err) {
    RB_ASSERT(m && w);
    if (l < 0 || l >= m->cfg.n_layers)
        return rb_error_set(err, RB_EINVAL, "%s: layer %d out of range [0, %d)", m->path, l, m->cfg.n_layers);
    for (int s = 0; s < RB_W_COUNT; s++) {
        int rc = load_tref(&m->layers[(size_t)l * RB_W_COUNT + s], *slot_buf(w, s), err);
        if (rc) return rc;
    }
    return 0;
}

int rb_model_embed(rb_model *m, const int32_t *ids, size_t n, float *out, rb_error *err) {
    RB_ASSERT(m && (ids || n == 0) && (out || n == 0));
    const rb_tref *e = &m->embed;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return rb_error_set(err, RB_EINVAL, "%s: token id %d (position %zu) out of range [0, %d)", m->path,
                                (int)ids[i], i, m->cfg.vocab_size);
    const size_t row_bytes = e->cols * rb_dtype_size(e->dtype);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        convert(e->data + (size_t)ids[i] * row_bytes, e->dtype, out + i * e->cols, e->cols);
        rc = check_finite(e, out + i * e->cols, e->cols, (size_t)ids[i], err);
    }
    release_pages(e->data, e->rows * row_bytes);
    return rc;
}

int rb_model_load_final_norm(rb_model *m, float *out, rb_error *err) { return load_tref(&m->final_norm, out, err); }

int rb_model_load_lm_head(rb_model *m, float *out, rb_error *err) { return load_tref(&m->lm_head, out, err); }

int rb_model_load_embedding(rb_model *m, float *out, rb_error *err) { return load_tref(&m->embed, out, err); }

const char *rb_linear_name(int lin) {
    static const char *const names[RB_LIN_COUNT] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                    "gate_proj", "up_proj", "down_proj"};
    RB_ASSERT(lin >= 0 && lin < RB_LIN_COUNT);
    return names[lin];
}

void rb_layer_linear_shape(const rb_llama_config *c, int lin, int *rows, int *cols) {
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    switch (lin) {
    case RB_LIN_Q: *rows = qd, *cols = c->dim; break;
    case RB_LIN_K:
    case RB_LIN_V: *rows = kvd, *cols = c->dim; break;
    case RB_LIN_O: *rows = c->dim, *cols = qd; break;
    case RB_LIN_GATE:
    case RB_LIN_UP: *rows = c->hidden_dim, *cols = c->dim; break;
    default: RB_ASSERT(lin == RB_LIN_DOWN); *rows = c->dim, *cols = c->hidden_dim; break;
    }
}

float *rb_layer_linear(const rb_layer_weights *w, const rb_llama_config *c, int lin, int *rows, int *cols) {
    rb_layer_linear_shape(c, lin, rows, cols);
    float *const m[RB_LIN_COUNT] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
    return m[lin];
}

void rb_layer_weights_copy(rb_layer_weights *dst, const rb_layer_weights *src, const rb_llama_config *c) {
    int r, k;
    for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
        float *s = rb_layer_linear(src, c, lin, &r, &k), *d = rb_layer_linear(dst, c, lin, &r, &k);
        memcpy(d, s, sizeof(float) * (size_t)r * k);
    }
    memcpy(dst->rms_att, src->rms_att, sizeof(float) * c->dim);
    memcpy(dst->rms_ffn, src->rms_ffn, sizeof(float) * c->dim);
}

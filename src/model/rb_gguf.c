/* rb_gguf: GGUF parsing (rb_gguf.h) and the GGUF model reader behind rb_model_open (F32/F16/BF16
 * llama tensors; quantized ggml types are refused by name). Everything is validated against the
 * file size before any tensor is viewed, so the load functions of rb_model.c cannot read outside
 * the mapping. */
#include "rb_gguf.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_half.h"
#include "rb_model_internal.h"

/* ---- names and sizes ---- */

const char *rb_gguf_type_name(uint32_t type) {
    static const char *const n[RB_GGUF_NTYPES] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                                  "bool", "string", "array", "u64", "i64", "f64"};
    return type < RB_GGUF_NTYPES ? n[type] : "?";
}

size_t rb_gguf_type_size(uint32_t type) {
    static const size_t sz[RB_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return type < RB_GGUF_NTYPES ? sz[type] : 0;
}

const char *rb_ggml_type_name(uint32_t type) {
    static const char *const n[] = {"F32",     "F16",    "Q4_0",    "Q4_1",  "Q4_2",   "Q4_3",  "Q5_0",  "Q5_1",
                                    "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
                                    "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
                                    "I8",      "I16",    "I32",     "I64",   "F64",    "IQ1_M", "BF16"};
    if (type < sizeof n / sizeof n[0]) return n[type];
    return type == 34 ? "TQ1_0" : type == 35 ? "TQ2_0" : type == 39 ? "MXFP4" : "unknown";
}

static size_t ggml_elem_size(uint32_t type) {
    return type == RB_GGML_F32 ? 4 : (type == RB_GGML_F16 || type == RB_GGML_BF16) ? 2 : 0;
}

/* ---- a bounds-checked cursor over the mapping ---- */

typedef struct cur {
    const uint8_t *p;
    size_t size, at;
    const char *path;
    rb_error *err;
} cur;

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static int need(cur *c, uint64_t n, const char *what) {
    if (n > c->size - c->at)
        return rb_error_set(c->err, RB_EFORMAT, "%s: offset %zu: %s runs past the end of the file (%zu bytes left)",
                            c->path, c->at, what, c->size - c->at);
    return 0;
}
static int rd_u32(cur *c, uint32_t *v, const char *what) {
    int rc = need(c, 4, what);
    if (!rc) *v = le32(c->p + c->at), c->at += 4;
    return rc;
}
static int rd_u64(cur *c, uint64_t *v, const char *what) {
    int rc = need(c, 8, what);
    if (!rc) *v = le64(c->p + c->at), c->at += 8;
    return rc;
}
/* A string of at most max bytes (0: any length that fits in the file). */
static int rd_str(cur *c, const uint8_t **s, uint64_t *len, uint64_t max, const char *what) {
    size_t at = c->at;
    int rc = rd_u64(c, len, what);
    if (rc) return rc;
    if (max && *len > max)
        return rb_error_set(c->err, RB_EFORMAT, "%s: offset %zu: %s of %llu bytes (at most %llu allowed)", c->path, at,
                            what, (unsigned long long)*len, (unsigned long long)max);
    if ((rc = need(c, *len, what))) return rc;
    *s = c->p + c->at;
    c->at += (size_t)*len;
    return 0;
}

/* Skips (validating) one value of `type`; arrays of arrays are refused (llama.cpp writes none). */
static int skip_value(cur *c, uint32_t type, const char *key, rb_gguf_kv *kv) {
    size_t sz = rb_gguf_type_size(type);
    if (sz) {
        if (type == RB_GGUF_BOOL && need(c, 1, key) == 0 && c->p[c->at] > 1)
            return rb_error_set(c->err, RB_EFORMAT, "%s: offset %zu: key %s: bool value %u is not 0 or 1", c->path,
                                c->at, key, c->p[c->at]);
        int rc = need(c, sz, key);
        if (!rc) kv->val = c->p + c->at, c->at += sz;
        return rc;
    }
    if (type == RB_GGUF_STRING) {
        const uint8_t *s;
        uint64_t len;
        int rc = rd_str(c, &s, &len, 0, key);
        if (!rc) kv->val = s - 8;
        return rc;
    }
    if (type != RB_GGUF_ARRAY)
        return rb_error_set(c->err, RB_EFORMAT, "%s: offset %zu: key %s: unknown value type %u", c->path, c->at - 4,
                            key, type);
    uint32_t et;
    uint64_t n;
    int rc;
    if ((rc = rd_u32(c, &et, key)) || (rc = rd_u64(c, &n, key))) return rc;
    if (et == RB_GGUF_ARRAY || et >= RB_GGUF_NTYPES)
        return rb_error_set(c->err, RB_EFORMAT, "%s: offset %zu: key %s: array element type %u (%s) is not supported",
                            c->path, c->at - 12, key, et, et == RB_GGUF_ARRAY ? "nested array" : "unknown");
    kv->arr_type = et;
    kv->arr_n = n;
    kv->val = c->p + c->at;
    sz = rb_gguf_type_size(et);
    uint64_t min = sz ? sz : 8; /* a string is at least its length */
    if (n > (c->size - c->at) / min)
        return rb_error_set(c->err, RB_EFORMAT,
                            "%s: offset %zu: key %s: array of %llu %s elements runs past the end "
                            "of the file",
                            c->path, c->at - 12, key, (unsigned long long)n, rb_gguf_type_name(et));
    if (sz) {
        if (et == RB_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (c->p[c->at + i] > 1)
                    return rb_error_set(c->err, RB_EFORMAT, "%s: offset %zu: key %s[%llu]: bool value %u is not 0 or 1",
                                        c->path, c->at + (size_t)i, key, (unsigned long long)i, c->p[c->at + i]);
        c->at += (size_t)(n * sz);
        return 0;
    }
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *s;
        uint64_t len;
        if ((rc = rd_str(c, &s, &len, 0, key))) return rc;
    }
    return 0;
}

/* ---- the parser ---- */

typedef struct arena {
    char *p;
    size_t len, cap;
} arena;

/* Copies a name (no NUL bytes allowed) into the arena; returns its offset, or SIZE_MAX on OOM. */
static size_t arena_add(arena *a, const uint8_t *s, size_t n) {
    if (a->len + n + 1 > a->cap) {
        size_t cap = a->cap ? a->cap : 4096;
        while (cap < a->len + n + 1) cap *= 2;
        char *p = realloc(a->p, cap);
        if (!p) return SIZE_MAX;
        a->p = p, a->cap = cap;
    }
    size_t off = a->len;
    memcpy(a->p + off, s, n);
    a->p[off + n] = '\0';
    a->len += n + 1;
    return off;
}

/* A pair's key or a tensor's name (1..max bytes, no NUL) at the cursor into the arena at *off. Messages
 * call it "<what> <i>" and point at its length field. Errors: RB_EFORMAT, RB_ENOMEM. */
static int rd_name(cur *c, arena *ar, uint64_t max, const char *what, uint64_t i, size_t *off) {
    const size_t at = c->at;
    const uint8_t *s = NULL; /* set by rd_str on success; gcc cannot tell */
    uint64_t len;
    char w[48];
    snprintf(w, sizeof w, "%s %llu", what, (unsigned long long)i);
    int rc = rd_str(c, &s, &len, max, w);
    if (rc) return rc;
    if (len == 0 || memchr(s, 0, (size_t)len))
        return rb_error_set(c->err, RB_EFORMAT, "%s: offset %zu: %s is empty or holds a NUL byte", c->path, at, w);
    if ((*off = arena_add(ar, s, (size_t)len)) == SIZE_MAX)
        return rb_error_set(c->err, RB_ENOMEM, "%s: out of memory", c->path);
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* A name that appears twice among names[n] (sorted in place), or NULL. */
static const char *find_duplicate(const char **names, size_t n) {
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) return names[i];
    return NULL;
}

void rb_gguf_free(rb_gguf *g) {
    if (!g) return;
    free(g->kv);
    free(g->tensors);
    free(g->names);
    memset(g, 0, sizeof *g);
}

#define MAX_COUNT (1u << 20) /* kv pairs / tensors: real files have < 1e5 */

static int parse(rb_gguf *g, cur *c, arena *ar, size_t **offs_out) {
    const char *path = c->path;
    rb_error *err = c->err;
    int rc;
    if (c->size < 4 || memcmp(c->p, RB_GGUF_MAGIC, 4) != 0)
        return rb_error_set(err, RB_EFORMAT, "%s: offset 0: no \"GGUF\" magic (not a GGUF file)", path);
    c->at = 4;
    if ((rc = rd_u32(c, &g->version, "version"))) return rc;
    if (g->version == 1 || g->version > 0xffff)
        return rb_error_set(err, RB_EUNSUPPORTED, "%s: offset 4: GGUF version %u is not supported (2 and 3 are%s)",
                            path, g->version, g->version > 0xffff ? "; a big-endian file?" : "");
    if (g->version != 2 && g->version != 3)
        return rb_error_set(err, RB_EFORMAT, "%s: offset 4: GGUF version %u is not supported (2 and 3 are)", path,
                            g->version);
    if ((rc = rd_u64(c, &g->n_tensors, "tensor_count")) || (rc = rd_u64(c, &g->n_kv, "kv_count"))) return rc;
    /* Each pair takes >= 13 bytes (key length, one key byte, type), each tensor info >= 33. */
    if (g->n_kv > (c->size - c->at) / 13 || g->n_kv > MAX_COUNT)
        return rb_error_set(err, RB_EFORMAT, "%s: offset 16: kv_count %llu is impossible for a file of %zu bytes", path,
                            (unsigned long long)g->n_kv, c->size);
    if (g->n_tensors > (c->size - c->at) / 33 || g->n_tensors > MAX_COUNT)
        return rb_error_set(err, RB_EFORMAT, "%s: offset 8: tensor_count %llu is impossible for a file of %zu bytes",
                            path, (unsigned long long)g->n_tensors, c->size);
    g->kv = calloc((size_t)g->n_kv + 1, sizeof *g->kv);
    g->tensors = calloc((size_t)g->n_tensors + 1, sizeof *g->tensors);
    size_t *offs = *offs_out = malloc(((size_t)(g->n_kv + g->n_tensors) + 1) * sizeof *offs);
    if (!g->kv || !g->tensors || !offs) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);

    g->alignment = RB_GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        rb_gguf_kv *kv = &g->kv[i];
        kv->off = c->at;
        if ((rc = rd_name(c, ar, RB_GGUF_MAX_KEY, "key of pair", i, &offs[i]))) return rc;
        const char *key = ar->p + offs[i];
        if ((rc = rd_u32(c, &kv->type, key)) || (rc = skip_value(c, kv->type, key, kv))) return rc;
        if (strcmp(key, "general.alignment") == 0) {
            if (kv->type != RB_GGUF_U32)
                return rb_error_set(err, RB_EFORMAT, "%s: offset %zu: key general.alignment has type %s, expected u32",
                                    path, kv->off, rb_gguf_type_name(kv->type));
            g->alignment = le32(kv->val);
            if (g->alignment == 0 || (g->alignment & (g->alignment - 1)))
                return rb_error_set(err, RB_EFORMAT, "%s: offset %zu: general.alignment %llu is not a power of two",
                                    path, kv->off, (unsigned long long)g->alignment);
        }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        rb_gguf_tensor *t = &g->tensors[i];
        t->info_off = c->at;
        if ((rc = rd_name(c, ar, RB_GGUF_MAX_NAME, "name of tensor info", i, &offs[g->n_kv + i]))) return rc;
        const char *name = ar->p + offs[g->n_kv + i];
        if ((rc = rd_u32(c, &t->n_dims, name))) return rc;
        if (t->n_dims < 1 || t->n_dims > RB_GGUF_MAX_DIMS)
            return rb_error_set(err, RB_EFORMAT, "%s: offset %zu: tensor %s: n_dims %u outside 1..%d", path, c->at - 4,
                                name, t->n_dims, RB_GGUF_MAX_DIMS);
        t->nelem = 1;
        for (uint32_t d = 0; d < RB_GGUF_MAX_DIMS; d++) {
            t->ne[d] = 1;
            if (d >= t->n_dims) continue;
            if ((rc = rd_u64(c, &t->ne[d], name))) return rc;
            if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT64_MAX / t->nelem)
                return rb_error_set(err, RB_EFORMAT,
                                    "%s: offset %zu: tensor %s: ne[%u] = %llu is zero or overflows the "
                                    "element count",
                                    path, c->at - 8, name, d, (unsigned long long)t->ne[d]);
            t->nelem *= t->ne[d];
        }
        if ((rc = rd_u32(c, &t->type, name)) || (rc = rd_u64(c, &t->offset, name))) return rc;
        size_t es = ggml_elem_size(t->type);
        if (es && t->nelem > (uint64_t)INT64_MAX / es)
            return rb_error_set(err, RB_EFORMAT, "%s: tensor %s: %llu elements overflow the byte size", path, name,
                                (unsigned long long)t->nelem);
        t->nbytes = t->nelem * es;
    }
    /* The data section starts at the next multiple of the alignment. */
    size_t a = (size_t)g->alignment, pad = (a - c->at % a) % a;
    if (g->n_tensors && pad > c->size - c->at)
        return rb_error_set(err, RB_EFORMAT,
                            "%s: offset %zu: the data section (aligned to %zu) starts past the end of "
                            "the file",
                            path, c->at, a);
    g->data_off = c->at + (g->n_tensors ? pad : 0);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        rb_gguf_tensor *t = &g->tensors[i];
        const char *name = ar->p + offs[g->n_kv + i];
        size_t avail = c->size - g->data_off;
        if (t->offset % g->alignment != 0)
            return rb_error_set(err, RB_EFORMAT,
                                "%s: offset %zu: tensor %s: data offset %llu is not a multiple of the "
                                "alignment %llu",
                                path, t->info_off, name, (unsigned long long)t->offset,
                                (unsigned long long)g->alignment);
        if (t->offset > avail || t->nbytes > avail - t->offset)
            return rb_error_set(err, RB_EFORMAT,
                                "%s: offset %zu: tensor %s: data [%llu, +%llu) lies outside the %zu-byte "
                                "data section (truncated file?)",
                                path, t->info_off, name, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                                avail);
        t->data = c->p + g->data_off + t->offset;
    }
    return 0;
}

int rb_gguf_parse(rb_gguf *g, const char *path, const uint8_t *data, size_t size, rb_error *err) {
    memset(g, 0, sizeof *g);
    g->path = path;
    g->base = data;
    g->size = size;
    cur c = {data, size, 0, path, err};
    arena ar = {0};
    size_t *offs = NULL;
    int rc = parse(g, &c, &ar, &offs);
    if (!rc) {
        /* The arena no longer moves: point the copies in, then look for repeats. */
        const char **v = malloc(((size_t)(g->n_kv + g->n_tensors) + 1) * sizeof *v);
        for (uint64_t i = 0; i < g->n_kv; i++) g->kv[i].key = ar.p + offs[i];
        for (uint64_t i = 0; i < g->n_tensors; i++) g->tensors[i].name = ar.p + offs[g->n_kv + i];
        const char *dup = NULL;
        if (!v) {
            rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
        } else {
            for (uint64_t i = 0; i < g->n_kv + g->n_tensors; i++) v[i] = ar.p + offs[i];
            if ((dup = find_duplicate(v, (size_t)g->n_kv)))
                rc = rb_error_set(err, RB_EFORMAT, "%s: key %s appears more than once", path, dup);
            else if ((dup = find_duplicate(v + g->n_kv, (size_t)g->n_tensors)))
                rc = rb_error_set(err, RB_EFORMAT, "%s: tensor %s appears more than once", path, dup);
        }
        free(v);
    }
    free(offs);
    g->names = ar.p;
    if (rc) rb_gguf_free(g);
    return rc;
}

const rb_gguf_kv *rb_gguf_find(const rb_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const rb_gguf_tensor *rb_gguf_find_tensor(const rb_gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

/* ---- typed reads ---- */

static double num_at(uint32_t type, const uint8_t *p) {
    uint32_t u;
    float f;
    double d;
    switch (type) {
    case RB_GGUF_U8:
    case RB_GGUF_BOOL: return p[0];
    case RB_GGUF_I8: return (int8_t)p[0];
    case RB_GGUF_U16: return (uint16_t)(p[0] | p[1] << 8);
    case RB_GGUF_I16: return (int16_t)(uint16_t)(p[0] | p[1] << 8);
    case RB_GGUF_U32: return le32(p);
    case RB_GGUF_I32: return (int32_t)le32(p);
    case RB_GGUF_F32: u = le32(p), memcpy(&f, &u, 4); return f;
    case RB_GGUF_U64: return (double)le64(p);
    case RB_GGUF_I64: return (double)(int64_t)le64(p);
    case RB_GGUF_F64: {
        uint64_t v = le64(p);
        memcpy(&d, &v, 8);
        return d;
    }
    }
    return 0;
}

static int is_int_type(uint32_t t) { return t <= RB_GGUF_I32 || t == RB_GGUF_U64 || t == RB_GGUF_I64; }

static int get_kv(const rb_gguf *g, const char *key, const rb_gguf_kv **kv, rb_error *err) {
    if (!(*kv = rb_gguf_find(g, key))) return rb_error_set(err, RB_ENOTFOUND, "%s: key %s is missing", g->path, key);
    return 0;
}

static int wrong_type(const rb_gguf *g, const rb_gguf_kv *kv, const char *expected, rb_error *err) {
    return rb_error_set(err, RB_EFORMAT, "%s: offset %zu: key %s has type %s%s%s, expected %s", g->path, kv->off,
                        kv->key, rb_gguf_type_name(kv->type), kv->type == RB_GGUF_ARRAY ? " of " : "",
                        kv->type == RB_GGUF_ARRAY ? rb_gguf_type_name(kv->arr_type) : "", expected);
}

int rb_gguf_get_int(const rb_gguf *g, const char *key, int64_t *out, rb_error *err) {
    const rb_gguf_kv *kv;
    int rc = get_kv(g, key, &kv, err);
    if (rc) return rc;
    if (!is_int_type(kv->type)) return wrong_type(g, kv, "an integer", err);
    if (kv->type == RB_GGUF_U64 && le64(kv->val) > (uint64_t)INT64_MAX)
        return rb_error_set(err, RB_EFORMAT, "%s: key %s: value %llu is out of range", g->path, key,
                            (unsigned long long)le64(kv->val));
    *out = kv->type == RB_GGUF_U64 || kv->type == RB_GGUF_I64 ? (int64_t)le64(kv->val)
                                                              : (int64_t)num_at(kv->type, kv->val);
    return 0;
}

int rb_gguf_get_float(const rb_gguf *g, const char *key, double *out, rb_error *err) {
    const rb_gguf_kv *kv;
    int rc = get_kv(g, key, &kv, err);
    if (rc) return rc;
    if (kv->type != RB_GGUF_F32 && kv->type != RB_GGUF_F64) return wrong_type(g, kv, "f32 or f64", err);
    *out = num_at(kv->type, kv->val);
    return 0;
}

int rb_gguf_get_str(const rb_gguf *g, const char *key, const char **s, size_t *len, rb_error *err) {
    const rb_gguf_kv *kv;
    int rc = get_kv(g, key, &kv, err);
    if (rc) return rc;
    if (kv->type != RB_GGUF_STRING) return wrong_type(g, kv, "string", err);
    *len = (size_t)le64(kv->val);
    *s = (const char *)kv->val + 8;
    return 0;
}

int rb_gguf_get_array(const rb_gguf *g, const char *key, uint32_t elem_type, const rb_gguf_kv **kv, rb_error *err) {
    int rc = get_kv(g, key, kv, err);
    if (rc) return rc;
    if ((*kv)->type != RB_GGUF_ARRAY || (*kv)->arr_type != elem_type) {
        char exp[32];
        snprintf(exp, sizeof exp, "array of %s", rb_gguf_type_name(elem_type));
        return wrong_type(g, *kv, exp, err);
    }
    return 0;
}

double rb_gguf_array_num(const rb_gguf_kv *kv, uint64_t i) {
    RB_ASSERT(kv->type == RB_GGUF_ARRAY && i < kv->arr_n && rb_gguf_type_size(kv->arr_type));
    return num_at(kv->arr_type, kv->val + i * rb_gguf_type_size(kv->arr_type));
}

void rb_gguf_array_strs(const rb_gguf_kv *kv, const char **s, size_t *len) {
    RB_ASSERT(kv->type == RB_GGUF_ARRAY && kv->arr_type == RB_GGUF_STRING);
    const uint8_t *p = kv->val;
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        len[i] = (size_t)le64(p);
        s[i] = (const char *)p + 8;
        p += 8 + len[i];
    }
}

/* ---- the model reader ---- */

/* RB_W_* order is rb_layer_weights' field order. */
const char *const rb_gguf_layer_names[RB_GGUF_LAYER_TENSORS] = {
    "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};
_Static_assert(RB_W_COUNT == RB_GGUF_LAYER_TENSORS, "one GGUF name per layer slot");

static void ext_free(void *p) {
    rb_gguf_free(p);
    free(p);
}

/* A required positive integer key that fits an int. */
static int get_pos(const rb_gguf *g, const char *key, int required, int dflt, int *out, rb_error *err) {
    int64_t v;
    int rc = rb_gguf_get_int(g, key, &v, err);
    if (rc == RB_ENOTFOUND && !required) {
        *out = dflt;
        return 0;
    }
    if (rc) return rc;
    if (v <= 0 || v > INT_MAX)
        return rb_error_set(err, RB_EFORMAT, "%s: key %s = %lld is not a positive int", g->path, key, (long long)v);
    *out = (int)v;
    return 0;
}

/* A float key read back as the decimal a converter wrote: f32 values are widened through their
 * shortest round-trip decimal (1e-5f reads as 1e-5, the config.json value, not 1.0000000e-5f's
 * double), so a model survives HF → GGUF → rotbench with its exact hyperparameters. */
static int get_decimal(const rb_gguf *g, const char *key, double dflt, int required, double *out, rb_error *err) {
    const rb_gguf_kv *kv = rb_gguf_find(g, key);
    if (!kv && !required) {
        *out = dflt;
        return 0;
    }
    int rc = rb_gguf_get_float(g, key, out, err);
    if (rc) return rc;
    if (!isfinite(*out)) return rb_error_set(err, RB_EFORMAT, "%s: key %s is not finite", g->path, key);
    if (kv->type == RB_GGUF_F32) {
        float f = (float)*out;
        char buf[32];
        for (int prec = 1; prec <= 9; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
            if ((float)strtod(buf, NULL) == f) break;
        }
        *out = strtod(buf, NULL);
    }
    /* rotbench's exports also carry the f64 value: prefer it when it rounds to the f32 one. */
    char exact[96];
    snprintf(exact, sizeof exact, "rotbench.f64.%s", key);
    double e;
    if (kv->type == RB_GGUF_F32 && rb_gguf_find(g, exact) && rb_gguf_get_float(g, exact, &e, NULL) == 0 &&
        (float)e == (float)*out)
        *out = e;
    return 0;
}

static int tensor_view(rb_model *m, const rb_gguf *g, const char *name, int ndim, size_t rows, size_t cols,
                       int required, rb_tref *t, rb_error *err) {
    const rb_gguf_tensor *gt = rb_gguf_find_tensor(g, name);
    memset(t, 0, sizeof *t);
    if (!gt) return required ? rb_error_set(err, RB_ENOTFOUND, "%s: tensor %s is missing", m->path, name) : 0;
    if (!ggml_elem_size(gt->type))
        return rb_error_set(err, RB_EUNSUPPORTED,
                            "%s: tensor %s has ggml type %s (%u); only F32, F16 and BF16 tensors are read "
                            "(convert the checkpoint with convert_hf_to_gguf.py --outtype f32, f16 or bf16)",
                            m->path, name, rb_ggml_type_name(gt->type), gt->type);
    uint64_t want[RB_GGUF_MAX_DIMS] = {ndim == 1 ? rows : cols, ndim == 1 ? 1 : rows, 1, 1};
    if (memcmp(want, gt->ne, sizeof want) != 0)
        return rb_error_set(err, RB_EFORMAT,
                            "%s: tensor %s: ne [%llu, %llu, %llu, %llu] but the llama.* keys imply "
                            "[%llu, %llu] (ne[0] = columns)",
                            m->path, name, (unsigned long long)gt->ne[0], (unsigned long long)gt->ne[1],
                            (unsigned long long)gt->ne[2], (unsigned long long)gt->ne[3], (unsigned long long)want[0],
                            (unsigned long long)want[1]);
    t->data = gt->data;
    t->dtype = gt->type == RB_GGML_F32 ? RB_DT_F32 : gt->type == RB_GGML_F16 ? RB_DT_F16 : RB_DT_BF16;
    t->rows = rows;
    t->cols = ndim == 1 ? 1 : cols;
    t->name = gt->name;
    t->file = m->path;
    return 0;
}

static const char *dt_name(int dt) { return dt == RB_DT_F32 ? "F32" : dt == RB_DT_F16 ? "F16" : "BF16"; }

static int read_config(rb_model *m, const rb_gguf *g, rb_error *err) {
    rb_llama_config *c = &m->cfg;
    const char *s;
    size_t n;
    int rc = rb_gguf_get_str(g, "general.architecture", &s, &n, err);
    if (rc) return rc;
    if (n != 5 || memcmp(s, "llama", 5) != 0)
        return rb_error_set(err, RB_EUNSUPPORTED, "%s: general.architecture is \"%.*s\"; only \"llama\" is supported",
                            m->path, (int)(n > 64 ? 64 : n), s);
    int kl = 0, vl = 0, n_rot = 0, experts = 0;
    if ((rc = get_pos(g, "llama.embedding_length", 1, 0, &c->dim, err)) ||
        (rc = get_pos(g, "llama.feed_forward_length", 1, 0, &c->hidden_dim, err)) ||
        (rc = get_pos(g, "llama.block_count", 1, 0, &c->n_layers, err)) ||
        (rc = get_pos(g, "llama.attention.head_count", 1, 0, &c->n_heads, err)) ||
        (rc = get_pos(g, "llama.attention.head_count_kv", 0, c->n_heads, &c->n_kv_heads, err)) ||
        (rc = get_pos(g, "llama.context_length", 0, 2048, &c->max_seq_len, err)) ||
        (rc = get_pos(g, "llama.attention.key_length", 0, c->dim / c->n_heads, &kl, err)) ||
        (rc = get_pos(g, "llama.attention.value_length", 0, kl, &vl, err)) ||
        (rc = get_pos(g, "llama.rope.dimension_count", 0, kl, &n_rot, err)))
        return rc;
    int64_t ex;
    if (rb_gguf_get_int(g, "llama.expert_count", &ex, NULL) == 0 && ex > 0)
        experts = (int)(ex > INT_MAX ? INT_MAX : ex);
    if (experts)
        return rb_error_set(err, RB_EUNSUPPORTED,
                            "%s: llama.expert_count = %d: mixture-of-experts models are not "
                            "supported",
                            m->path, experts);
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
        return rb_error_set(err, RB_EFORMAT, "%s: llama.attention.head_count_kv %d does not divide head_count %d",
                            m->path, c->n_kv_heads, c->n_heads);
    if (vl != kl)
        return rb_error_set(err, RB_EUNSUPPORTED, "%s: llama.attention.value_length %d != key_length %d", m->path, vl,
                            kl);
    if (kl <= 0 || kl % 2 || kl > RB_MAX_HEAD_DIM)
        return rb_error_set(err, RB_EUNSUPPORTED,
                            "%s: head size %d (llama.attention.key_length or embedding_length / "
                            "head_count) is odd or above the supported %d",
                            m->path, kl, RB_MAX_HEAD_DIM);
    if (n_rot != kl)
        return rb_error_set(err, RB_EUNSUPPORTED,
                            "%s: llama.rope.dimension_count %d != head size %d: partial RoPE is "
                            "not supported",
                            m->path, n_rot, kl);
    c->head_dim = kl;
    if ((rc = get_decimal(g, "llama.attention.layer_norm_rms_epsilon", 0, 1, &c->rms_eps, err)) ||
        (rc = get_decimal(g, "llama.rope.freq_base", 10000.0, 0, &c->rope_theta, err)))
        return rc;
    if (!(c->rms_eps > 0) || !(c->rope_theta > 1))
        return rb_error_set(err, RB_EFORMAT, "%s: layer_norm_rms_epsilon %g or rope.freq_base %g out of range", m->path,
                            c->rms_eps, c->rope_theta);
    if (rb_gguf_get_str(g, "llama.rope.scaling.type", &s, &n, NULL) == 0 && !(n == 4 && memcmp(s, "none", 4) == 0))
        return rb_error_set(err, RB_EUNSUPPORTED,
                            "%s: llama.rope.scaling.type \"%.*s\" is not supported (Llama-3 "
                            "scaling comes as rope_freqs.weight)",
                            m->path, (int)(n > 32 ? 32 : n), s);
    c->bos_id = c->eos_id = -1;
    return 0;
}

/* Llama-3.1 "llama3" RoPE scaling, which llama.cpp stores as rope_freqs.weight: the per-frequency
 * divisor of each inverse frequency. Its parameters come from rotbench's own keys when present, else
 * the defaults convert_hf_to_gguf assumes (low 1, high 4, original 8192) with the factor read off
 * the tensor; either way every entry must match what those parameters give, or the file is refused
 * (the forward computes the scaling from parameters, not from a table). */
static int read_rope_freqs(rb_model *m, const rb_gguf *g, rb_error *err) {
    rb_llama_config *c = &m->cfg;
    const size_t half = (size_t)c->head_dim / 2;
    rb_tref t;
    int rc = tensor_view(m, g, "rope_freqs.weight", 1, half, 1, 0, &t, err);
    if (rc || !t.data) return rc;
    float f[RB_MAX_HEAD_DIM / 2];
    float fmax = 0;
    for (size_t i = 0; i < half; i++) {
        const uint8_t *p = t.data + i * rb_dtype_size(t.dtype);
        uint16_t h = (uint16_t)(p[0] | p[1] << 8);
        if (t.dtype == RB_DT_F16) {
            f[i] = rb_f16_to_f32(h);
        } else if (t.dtype == RB_DT_BF16) {
            f[i] = rb_bf16_to_f32(h);
        } else {
            uint32_t u = le32(p);
            memcpy(&f[i], &u, 4);
        }
        if (!(f[i] >= 1.0f) || !isfinite(f[i]))
            return rb_error_set(err, RB_EFORMAT, "%s: tensor rope_freqs.weight[%zu] = %g is not a finite factor >= 1",
                                m->path, i, (double)f[i]);
        if (f[i] > fmax) fmax = f[i];
    }
    if (fmax == 1.0f) return 0; /* no scaling at all */
    int64_t orig = 8192;
    c->rope_factor = fmax;
    c->rope_low_freq_factor = 1.0;
    c->rope_high_freq_factor = 4.0;
    if (rb_gguf_find(g, "rotbench.rope_scaling.factor")) {
        if ((rc = rb_gguf_get_float(g, "rotbench.rope_scaling.factor", &c->rope_factor, err)) ||
            (rc = rb_gguf_get_float(g, "rotbench.rope_scaling.low_freq_factor", &c->rope_low_freq_factor, err)) ||
            (rc = rb_gguf_get_float(g, "rotbench.rope_scaling.high_freq_factor", &c->rope_high_freq_factor, err)) ||
            (rc = rb_gguf_get_int(g, "rotbench.rope_scaling.original_max_position_embeddings", &orig, err)))
            return rc;
    }
    if (orig <= 0 || orig > INT_MAX || !(c->rope_factor >= 1) ||
        !(c->rope_high_freq_factor > c->rope_low_freq_factor && c->rope_low_freq_factor > 0))
        return rb_error_set(err, RB_EFORMAT, "%s: rotbench.rope_scaling.* values are out of range", m->path);
    c->rope_scaling = 1;
    c->rope_original_max_pos = (int)orig;
    const double old = (double)orig, low_wl = old / c->rope_low_freq_factor, high_wl = old / c->rope_high_freq_factor;
    for (size_t i = 0; i < half; i++) {
        double fr = 1.0 / pow(c->rope_theta, (double)(2 * i) / (double)c->head_dim), wl = 2.0 * M_PI / fr, want = 1;
        if (wl > low_wl)
            want = c->rope_factor;
        else if (wl >= high_wl) {
            double s = (old / wl - c->rope_low_freq_factor) / (c->rope_high_freq_factor - c->rope_low_freq_factor);
            want = 1.0 / ((1.0 - s) / c->rope_factor + s);
        }
        if (fabs(f[i] - want) > 1e-5 * want)
            return rb_error_set(err, RB_EUNSUPPORTED,
                                "%s: tensor rope_freqs.weight[%zu] = %.7g, but Llama-3.1 scaling "
                                "with factor %g, low %g, high %g, original %lld gives %.7g; other RoPE scalings are "
                                "not supported",
                                m->path, i, (double)f[i], c->rope_factor, c->rope_low_freq_factor,
                                c->rope_high_freq_factor, (long long)orig, want);
    }
    return 0;
}

static int read_special(rb_model *m, const rb_gguf *g, const char *key, int *out, rb_error *err) {
    int64_t v;
    int rc = rb_gguf_get_int(g, key, &v, err);
    if (rc == RB_ENOTFOUND) return 0;
    if (rc) return rc;
    if (v < 0 || v >= m->cfg.vocab_size)
        return rb_error_set(err, RB_EFORMAT, "%s: key %s = %lld is outside the vocabulary [0, %d)", m->path, key,
                            (long long)v, m->cfg.vocab_size);
    *out = (int)v;
    return 0;
}

int rb_gguf_open(rb_model *m, rb_error *err) {
    int rc = rb_mapped_open(&m->bin, m->path, err);
    if (rc) return rc;
    rb_gguf *g = calloc(1, sizeof *g);
    if (!g) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", m->path);
    if ((rc = rb_gguf_parse(g, m->path, m->bin.data, m->bin.size, err))) {
        free(g);
        return rc;
    }
    m->ext = g;
    m->ext_free = ext_free;
    if ((rc = read_config(m, g, err))) return rc;
    rb_llama_config *c = &m->cfg;

    /* The vocabulary size is the embedding's row count. */
    const rb_gguf_tensor *emb = rb_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return rb_error_set(err, RB_ENOTFOUND, "%s: tensor token_embd.weight is missing", m->path);
    if (emb->ne[1] == 0 || emb->ne[1] > INT_MAX)
        return rb_error_set(err, RB_EFORMAT, "%s: tensor token_embd.weight: %llu rows is not a vocabulary size",
                            m->path, (unsigned long long)emb->ne[1]);
    c->vocab_size = (int)emb->ne[1];
    int vs = 0;
    if ((rc = get_pos(g, "llama.vocab_size", 0, c->vocab_size, &vs, err))) return rc;
    if (vs != c->vocab_size)
        return rb_error_set(err, RB_EFORMAT, "%s: llama.vocab_size %d != token_embd.weight rows %d", m->path, vs,
                            c->vocab_size);
    const size_t D = (size_t)c->dim, V = (size_t)c->vocab_size;
    if ((rc = tensor_view(m, g, "token_embd.weight", 2, V, D, 1, &m->embed, err)) ||
        (rc = tensor_view(m, g, "output_norm.weight", 1, D, 1, 1, &m->final_norm, err)) ||
        (rc = tensor_view(m, g, "output.weight", 2, V, D, 0, &m->lm_head, err)) || (rc = read_rope_freqs(m, g, err)))
        return rc;
    c->tied = m->lm_head.data == NULL;
    if (c->tied) m->lm_head = m->embed;

    /* Every block is RB_W_COUNT tensors: a block count the tensor table cannot hold is refused before
     * the per-layer table is sized by it (a fuzzed count asked for gigabytes). */
    if ((uint64_t)c->n_layers > g->n_tensors / RB_W_COUNT)
        return rb_error_set(err, RB_EFORMAT,
                            "%s: llama.block_count %d needs %llu layer tensors but the file has %llu tensors",
                            m->path, c->n_layers, (unsigned long long)c->n_layers * RB_W_COUNT,
                            (unsigned long long)g->n_tensors);
    m->layers = calloc((size_t)c->n_layers * RB_W_COUNT, sizeof *m->layers);
    if (!m->layers) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", m->path);
    for (int l = 0; l < c->n_layers; l++)
        for (int s = 0; s < RB_W_COUNT; s++) {
            char name[RB_GGUF_MAX_NAME + 32];
            int nd;
            size_t sh[2];
            rb_model_slot_shape(c, s, &nd, sh);
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, rb_gguf_layer_names[s]);
            rb_tref *t = &m->layers[(size_t)l * RB_W_COUNT + s];
            if ((rc = tensor_view(m, g, name, nd, sh[0], sh[1], 1, t, err))) return rc;
            /* llama.cpp keeps q/k rows in the interleaved-pair RoPE order (convert_hf_to_gguf permutes
             * HF's back): un-permute them on load as the llama2.c reader does. */
            if (s == RB_W_Q || s == RB_W_K) {
                t->perm_heads = s == RB_W_Q ? c->n_heads : c->n_kv_heads;
                t->perm_head_dim = c->head_dim;
            }
        }
    /* Every tensor must be one the model uses: an ignored one (a bias, a second norm) would make
     * the logits silently differ from llama.cpp's. */
    const size_t expected = 2 + (c->tied ? 0 : 1) + (rb_gguf_find_tensor(g, "rope_freqs.weight") ? 1 : 0) +
                            (size_t)c->n_layers * RB_W_COUNT;
    if (g->n_tensors != expected) {
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const char *nm = g->tensors[i].name;
            int known = !strcmp(nm, "token_embd.weight") || !strcmp(nm, "output_norm.weight") ||
                        !strcmp(nm, "output.weight") || !strcmp(nm, "rope_freqs.weight");
            for (int l = 0; l < c->n_layers && !known; l++)
                for (int s = 0; s < RB_W_COUNT && !known; s++) {
                    char name[RB_GGUF_MAX_NAME + 32];
                    snprintf(name, sizeof name, "blk.%d.%s.weight", l, rb_gguf_layer_names[s]);
                    known = !strcmp(nm, name);
                }
            if (!known)
                return rb_error_set(err, RB_EUNSUPPORTED,
                                    "%s: tensor %s is not part of a llama model with %d layers "
                                    "(not supported)",
                                    m->path, nm, c->n_layers);
        }
    }
    if ((rc = read_special(m, g, "tokenizer.ggml.bos_token_id", &c->bos_id, err)) ||
        (rc = read_special(m, g, "tokenizer.ggml.eos_token_id", &c->eos_id, err)))
        return rc;
    const rb_tref *rep = c->n_layers ? &m->layers[RB_W_Q] : &m->embed;
    snprintf(c->dtype, sizeof c->dtype, "%s", dt_name(rep->dtype));

    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const rb_gguf_tensor *t = &g->tensors[i];
        int64_t shape[RB_GGUF_MAX_DIMS];
        for (uint32_t d = 0; d < t->n_dims; d++) shape[d] = (int64_t)t->ne[t->n_dims - 1 - d]; /* row-major */
        const char *dt = t->type == RB_GGML_F32 ? "F32" : t->type == RB_GGML_F16 ? "F16" : "BF16";
        if ((rc = rb_model_list_add(m, t->name, dt, (int)t->n_dims, shape, t->nbytes, m->path, err))) return rc;
        if (strcmp(t->name, "rope_freqs.weight") != 0) m->n_params += t->nelem; /* a table, not a parameter */
    }
    return 0;
}

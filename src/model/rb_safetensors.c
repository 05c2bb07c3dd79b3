#include "rb_safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rb_half.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "rotbench reads little-endian tensor data in place; big-endian hosts are not supported"
#endif

static const struct {
    const char *name;
    size_t size;
} dtype_table[RB_DT_COUNT] = {
    [RB_DT_UNKNOWN] = {"?", 0},       [RB_DT_F32] = {"F32", 4},   [RB_DT_F16] = {"F16", 2},
    [RB_DT_BF16] = {"BF16", 2},       [RB_DT_F64] = {"F64", 8},   [RB_DT_I64] = {"I64", 8},
    [RB_DT_I32] = {"I32", 4},         [RB_DT_I16] = {"I16", 2},   [RB_DT_I8] = {"I8", 1},
    [RB_DT_U64] = {"U64", 8},         [RB_DT_U32] = {"U32", 4},   [RB_DT_U16] = {"U16", 2},
    [RB_DT_U8] = {"U8", 1},           [RB_DT_BOOL] = {"BOOL", 1}, [RB_DT_F8_E4M3] = {"F8_E4M3", 1},
    [RB_DT_F8_E5M2] = {"F8_E5M2", 1},
};

const char *rb_dtype_name(int dtype) { return dtype > 0 && dtype < RB_DT_COUNT ? dtype_table[dtype].name : "?"; }

size_t rb_dtype_size(int dtype) { return dtype > 0 && dtype < RB_DT_COUNT ? dtype_table[dtype].size : 0; }

int rb_dtype_from_name(const char *name) {
    for (int d = 1; d < RB_DT_COUNT; d++)
        if (strcmp(name, dtype_table[d].name) == 0) return d;
    return RB_DT_UNKNOWN;
}

int rb_dtype_is_float(int dtype) { return dtype == RB_DT_F32 || dtype == RB_DT_F16 || dtype == RB_DT_BF16; }

/* ---- reader ---- */

static uint64_t read_u64_le(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Non-negative JSON integer into *out; 0 if `v` is not one. */
static int json_uint(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

static int parse_tensor(rb_st_file *f, const char *name, json_t *v, rb_st_tensor *t, rb_error *err) {
    const char *path = f->map.path;
    if (!json_is_object(v))
        return rb_error_set(err, RB_EFORMAT, "%s: tensor %s: header entry is not a JSON object", path, name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd))
        return rb_error_set(err, RB_EFORMAT, "%s: tensor %s: missing or non-string \"dtype\"", path, name);
    t->dtype = rb_dtype_from_name(json_string_value(jd));
    if (t->dtype == RB_DT_UNKNOWN)
        return rb_error_set(err, RB_EUNSUPPORTED, "%s: tensor %s: unknown dtype '%s'", path, name,
                            json_string_value(jd));
    if (!json_is_array(js))
        return rb_error_set(err, RB_EFORMAT, "%s: tensor %s: missing or non-array \"shape\"", path, name);
    size_t nd = json_array_size(js);
    if (nd > RB_ST_MAX_DIMS)
        return rb_error_set(err, RB_EUNSUPPORTED, "%s: tensor %s: %zu dimensions (at most %d supported)", path, name,
                            nd, RB_ST_MAX_DIMS);
    t->ndim = (int)nd;
    size_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (!json_uint(json_array_get(js, i), &d) || d > INT64_MAX)
            return rb_error_set(err, RB_EFORMAT, "%s: tensor %s: shape entry %zu is not a non-negative integer", path,
                                name, i);
        t->shape[i] = (int64_t)d;
        if (!rb_mul_ok(numel, (size_t)d, &numel))
            return rb_error_set(err, RB_EFORMAT, "%s: tensor %s: element count overflows", path, name);
    }
    t->numel = numel;
    size_t nbytes;
    if (!rb_mul_ok(numel, rb_dtype_size(t->dtype), &nbytes))
        return rb_error_set(err, RB_EFORMAT, "%s: tensor %s: byte size overflows", path, name);
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_uint(json_array_get(jo, 0), &t->begin) ||
        !json_uint(json_array_get(jo, 1), &t->end))
        return rb_error_set(err, RB_EFORMAT,
                            "%s: tensor %s: \"data_offsets\" is not an array of two non-negative integers", path, name);
    if (t->begin > t->end)
        return rb_error_set(err, RB_EFORMAT, "%s: tensor %s: data offsets [%llu, %llu) begin after their end", path,
                            name, (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end > f->data_size)
        return rb_error_set(err, RB_EFORMAT,
                            "%s: tensor %s: data offsets [%llu, %llu) outside the %llu-byte data section", path, name,
                            (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)f->data_size);
    if (t->end - t->begin != nbytes)
        return rb_error_set(
            err, RB_EFORMAT,
            "%s: tensor %s: data offsets span %llu bytes but the %s shape needs %zu (%zu elements x %zu)", path, name,
            (unsigned long long)(t->end - t->begin), rb_dtype_name(t->dtype), nbytes, numel, rb_dtype_size(t->dtype));
    t->data = nbytes ? f->map.data + 8 + f->header_len + t->begin : NULL;
    t->name = rb_strdup(name);
    if (!t->name) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    return 0;
}

static int cmp_offset(const void *a, const void *b) {
    const rb_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* qsort has no context argument (qsort_r is not C11), so the array being sorted by name is passed
 * through a thread-local; it is only set right before the qsort call in rb_st_open. */
static _Thread_local const rb_st_tensor *sort_base;
static int cmp_name_idx(const void *a, const void *b) {
    return strcmp(sort_base[*(const size_t *)a].name, sort_base[*(const size_t *)b].name);
}

int rb_st_open(rb_st_file *f, const char *path, rb_error *err) {
    memset(f, 0, sizeof *f);
    int rc = rb_mapped_open(&f->map, path, err);
    if (rc) return rc;
    const size_t size = f->map.size;
    if (size < 8) {
        rc = rb_error_set(err, RB_EFORMAT, "%s: %zu bytes, too short for the 8-byte header length", path, size);
        goto fail;
    }
    f->header_len = read_u64_le(f->map.data);
    if (f->header_len > RB_ST_HEADER_MAX) {
        rc = rb_error_set(err, RB_EFORMAT, "%s: header length %llu exceeds the %llu-byte cap", path,
                          (unsigned long long)f->header_len, (unsigned long long)RB_ST_HEADER_MAX);
        goto fail;
    }
    if (f->header_len > size - 8) {
        rc = rb_error_set(err, RB_EFORMAT, "%s: header length %llu larger than the %zu bytes after it (truncated?)",
                          path, (unsigned long long)f->header_len, size - 8);
        goto fail;
    }
    f->data_size = size - 8 - f->header_len;

    json_error_t jerr;
    /* Duplicate names would make lookups ambiguous; jansson keeps the last one silently. */
    json_t *root = json_loadb((const char *)f->map.data + 8, (size_t)f->header_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        rc = rb_error_set(err, RB_EFORMAT, "%s: malformed JSON header: %s (header byte %d)", path, jerr.text,
                          jerr.position);
        goto fail;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        rc = rb_error_set(err, RB_EFORMAT, "%s: JSON header is not an object", path);
        goto fail;
    }
    size_t cap = json_object_size(root);
    f->tensors = calloc(cap ? cap : 1, sizeof *f->tensors);
    f->by_name = calloc(cap ? cap : 1, sizeof *f->by_name);
    if (!f->tensors || !f->by_name) {
        json_decref(root);
        rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                json_decref(root);
                rc = rb_error_set(err, RB_EFORMAT, "%s: \"__metadata__\" is not a JSON object", path);
                goto fail;
            }
            continue;
        }
        rc = parse_tensor(f, key, val, &f->tensors[f->n], err);
        if (rc) {
            free(f->tensors[f->n].name);
            f->tensors[f->n].name = NULL;
            json_decref(root);
            goto fail;
        }
        f->n++;
    }
    json_decref(root);

    qsort(f->tensors, f->n, sizeof *f->tensors, cmp_offset);
    for (size_t i = 1; i < f->n; i++) {
        const rb_st_tensor *a = &f->tensors[i - 1], *b = &f->tensors[i];
        if (a->end > b->begin) {
            rc =
                rb_error_set(err, RB_EFORMAT, "%s: tensor %s: data offsets [%llu, %llu) overlap tensor %s [%llu, %llu)",
                             path, b->name, (unsigned long long)b->begin, (unsigned long long)b->end, a->name,
                             (unsigned long long)a->begin, (unsigned long long)a->end);
            goto fail;
        }
    }
    for (size_t i = 0; i < f->n; i++) f->by_name[i] = i;
    sort_base = f->tensors;
    qsort(f->by_name, f->n, sizeof *f->by_name, cmp_name_idx);
    return 0;
fail:
    rb_st_close(f);
    return rc;
}

void rb_st_close(rb_st_file *f) {
    if (f->tensors)
        for (size_t i = 0; i < f->n; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->by_name);
    rb_mapped_close(&f->map);
    memset(f, 0, sizeof *f);
}

const rb_st_tensor *rb_st_find(const rb_st_file *f, const char *name) {
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const rb_st_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(t->name, name);
        if (c == 0) return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- writer ---- */

uint64_t rb_st_write_nbytes(const rb_st_write_tensor *t) {
    size_t n = rb_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0 || !rb_mul_ok(n, (size_t)t->shape[i], &n)) return 0;
    return n;
}

static size_t write_numel(const rb_st_write_tensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i]; /* checked by rb_st_write_nbytes */
    return n;
}

/* Converts fp32 to the on-disk dtype in chunks and writes it. */
static int write_values(FILE *fp, const float *x, size_t n, int dtype) {
    if (dtype == RB_DT_F32) return fwrite(x, 4, n, fp) == n;
    uint16_t buf[4096];
    for (size_t i = 0; i < n;) {
        size_t m = n - i < 4096 ? n - i : 4096;
        for (size_t j = 0; j < m; j++)
            buf[j] = dtype == RB_DT_BF16 ? rb_f32_to_bf16(x[i + j]) : rb_f32_to_f16(x[i + j]);
        if (fwrite(buf, 2, m, fp) != m) return 0;
        i += m;
    }
    return 1;
}

/* Builds the header JSON padded to a multiple of 8 bytes, so the data section (at 8 + *len)
 * is 8-aligned; *out is malloc'ed (caller frees). */
static int build_header(const char *path, const rb_st_write_tensor *ts, size_t n, char **out, size_t *len,
                        rb_error *err) {
    json_t *root = json_object(), *meta = json_object();
    if (!root || !meta || json_object_set_new(meta, "format", json_string("pt")) ||
        json_object_set_new(root, "__metadata__", meta)) {
        json_decref(root);
        return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const rb_st_write_tensor *t = &ts[i];
        uint64_t nb = rb_st_write_nbytes(t);
        int isf = rb_dtype_is_float(t->dtype);
        /* float values only for float dtypes, raw bytes only for the others */
        int bad = !t->name || !*t->name || strcmp(t->name, "__metadata__") == 0 || t->dtype <= RB_DT_UNKNOWN ||
                  t->dtype >= RB_DT_COUNT || (isf ? (t->raw || t->fill_raw) : (t->data || t->fill)) || t->ndim < 0 ||
                  t->ndim > 4 || (nb == 0 && write_numel(t) != 0);
        if (bad || json_object_get(root, t->name)) {
            json_decref(root);
            return rb_error_set(err, RB_EINVAL, "%s: tensor %s: bad name, dtype or shape, or a duplicate", path,
                                t->name ? t->name : "(null)");
        }
        json_t *e = json_object(), *sh = json_array(), *of = json_array();
        int bad_json = !e || !sh || !of;
        for (int d = 0; d < t->ndim && !bad_json; d++) bad_json |= json_array_append_new(sh, json_integer(t->shape[d]));
        bad_json = bad_json || json_array_append_new(of, json_integer((json_int_t)off)) ||
                   json_array_append_new(of, json_integer((json_int_t)(off + nb)));
        off += nb;
        if (bad_json || json_object_set_new(e, "dtype", json_string(rb_dtype_name(t->dtype))) ||
            json_object_set_new(e, "shape", sh) || json_object_set_new(e, "data_offsets", of) ||
            json_object_set_new(root, t->name, e)) {
            json_decref(root);
            return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
        }
    }
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!s) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    size_t sl = strlen(s), padded = (sl + 7) & ~(size_t)7;
    char *h = realloc(s, padded + 1);
    if (!h) {
        free(s);
        return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    }
    /* Spaces are JSON whitespace, so readers need not know about the alignment. */
    memset(h + sl, ' ', padded - sl);
    h[padded] = '\0';
    *out = h;
    *len = padded;
    return 0;
}

int rb_safetensors_write(const char *path, const rb_st_write_tensor *tensors, size_t n, rb_error *err) {
    char *hdr = NULL;
    size_t hlen = 0;
    int rc = build_header(path, tensors, n, &hdr, &hlen, err);
    if (rc) return rc;
    size_t plen = strlen(path) + 32;
    char *tmp = malloc(plen);
    if (!tmp) {
        free(hdr);
        return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    }
    snprintf(tmp, plen, "%s.tmp%d", path, (int)getpid());
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        rc = rb_error_set(err, RB_EIO, "%s: cannot create: %s", path, strerror(errno));
        free(hdr);
        free(tmp);
        return rc;
    }
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    int ok = fwrite(lenb, 1, 8, fp) == 8 && fwrite(hdr, 1, hlen, fp) == hlen;
    free(hdr);
    void *scratch = NULL;
    for (size_t i = 0; i < n && ok && rc == 0; i++) {
        const rb_st_write_tensor *t = &tensors[i];
        size_t numel = write_numel(t);
        int isf = rb_dtype_is_float(t->dtype);
        const void *src = isf ? (const void *)t->data : t->raw;
        if (!src && numel) {
            if (isf ? !t->fill : !t->fill_raw) {
                rc = rb_error_set(err, RB_EINVAL, "%s: tensor %s: neither data nor fill given", path, t->name);
                break;
            }
            rb_free(scratch);
            scratch = rb_alloc(numel * (isf ? sizeof(float) : rb_dtype_size(t->dtype)));
            if (!scratch) {
                rc = rb_error_set(err, RB_ENOMEM, "%s: tensor %s: out of memory", path, t->name);
                break;
            }
            rc = isf ? t->fill(t->ctx, scratch, err) : t->fill_raw(t->ctx, scratch, err);
            src = scratch;
        }
        if (rc == 0 && numel)
            ok = isf ? write_values(fp, src, numel, t->dtype)
                     : fwrite(src, rb_dtype_size(t->dtype), numel, fp) == numel;
    }
    rb_free(scratch);
    int e = errno;
    ok = (fclose(fp) == 0) && ok;
    if (rc == 0 && !ok) rc = rb_error_set(err, RB_EIO, "%s: write failed: %s", path, strerror(e));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = rb_error_set(err, RB_EIO, "%s: cannot rename temp file: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
}

int rb_json_write_file(const char *path, const json_t *root, rb_error *err) {
    char *s = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    size_t n = s ? strlen(s) : 0;
    char *t = s ? realloc(s, n + 2) : NULL;
    if (!t) {
        free(s);
        return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    }
    t[n++] = '\n';
    t[n] = '\0';
    int rc = rb_write_file(path, t, n, err);
    free(t);
    return rc;
}

/* Shard of each tensor: a new shard starts when the next tensor would push the current one past max
 * (a tensor larger than max gets a shard of its own). Returns the shard count. */
static int plan_shards(const rb_st_write_tensor *w, size_t n, uint64_t max, int *idx) {
    int shard = 0;
    uint64_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t nb = rb_st_write_nbytes(&w[i]);
        if (i > 0 && cur > 0 && cur + nb > max) shard++, cur = 0;
        idx[i] = shard;
        cur += nb;
    }
    return n ? shard + 1 : 1;
}

static int write_index_json(const char *dir, const rb_st_write_tensor *w, size_t n, const int *idx, int shards,
                            rb_error *err) {
    json_t *map = json_object();
    uint64_t total = 0;
    int rc = map ? 0 : rb_error_set(err, RB_ENOMEM, "%s: out of memory", dir);
    for (size_t i = 0; i < n && !rc; i++) {
        char fname[64];
        snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", idx[i] + 1, shards);
        total += rb_st_write_nbytes(&w[i]);
        if (json_object_set_new(map, w[i].name, json_string(fname)))
            rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", dir);
    }
    json_t *root = rc ? NULL : json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)total, "weight_map", map);
    if (!rc && !root) rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", dir);
    if (rc) {
        json_decref(map);
        return rc;
    }
    char *ip = rb_path_join(dir, "model.safetensors.index.json");
    rc = ip ? rb_json_write_file(ip, root, err) : rb_error_set(err, RB_ENOMEM, "%s: out of memory", dir);
    free(ip);
    json_decref(root);
    return rc;
}

int rb_safetensors_write_shards(const char *dir, const rb_st_write_tensor *w, size_t n, const int *idx, int shards,
                                rb_error *err) {
    int rc = 0;
    for (size_t i = 0; i < n && !rc;) {
        size_t j = i;
        while (j < n && idx[j] == idx[i]) j++;
        char fname[64];
        snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", idx[i] + 1, shards);
        char *path = rb_path_join(dir, fname);
        rc = path ? rb_safetensors_write(path, w + i, j - i, err) : rb_error_set(err, RB_ENOMEM, "%s: out of memory", dir);
        free(path);
        i = j;
    }
    return rc ? rc : write_index_json(dir, w, n, idx, shards, err);
}

int rb_safetensors_write_dir(const char *dir, const rb_st_write_tensor *w, size_t n, uint64_t max_shard_bytes,
                             int *n_shards_out, rb_error *err) {
    int *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", dir);
    int shards = max_shard_bytes ? plan_shards(w, n, max_shard_bytes, idx) : 1, rc = 0;
    if (shards == 1) {
        char *p = rb_path_join(dir, "model.safetensors");
        rc = p ? rb_safetensors_write(p, w, n, err) : rb_error_set(err, RB_ENOMEM, "%s: out of memory", dir);
        free(p);
    } else {
        rc = rb_safetensors_write_shards(dir, w, n, idx, shards, err);
    }
    free(idx);
    if (!rc && n_shards_out) *n_shards_out = shards;
    return rc;
}

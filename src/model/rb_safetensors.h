/* rb_safetensors: validating reader (memory-mapped) and streaming writer for the safetensors
 * format: an 8-byte little-endian u64 header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end)}, "__metadata__": {...}}, then the data
 * section. Offsets are relative to the start of the data section. */
#ifndef RB_SAFETENSORS_H
#define RB_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_error.h"
#include "core/rb_file.h"

/* The safetensors dtypes. Only F32/F16/BF16 can be converted to fp32; the others are parsed so
 * that files holding e.g. integer buffers next to the weights still validate. */
enum {
    RB_DT_UNKNOWN = 0,
    RB_DT_F32,
    RB_DT_F16,
    RB_DT_BF16,
    RB_DT_F64,
    RB_DT_I64,
    RB_DT_I32,
    RB_DT_I16,
    RB_DT_I8,
    RB_DT_U64,
    RB_DT_U32,
    RB_DT_U16,
    RB_DT_U8,
    RB_DT_BOOL,
    RB_DT_F8_E4M3,
    RB_DT_F8_E5M2,
    RB_DT_COUNT
};

/* Largest JSON header accepted (the reference implementation's cap). */
#define RB_ST_HEADER_MAX ((uint64_t)100 << 20)
#define RB_ST_MAX_DIMS 8

/* "F32", ...; "?" for an out-of-range code. */
const char *rb_dtype_name(int dtype);
/* Bytes per element; 0 for RB_DT_UNKNOWN. */
size_t rb_dtype_size(int dtype);
/* Code of a safetensors dtype string, RB_DT_UNKNOWN if not one. */
int rb_dtype_from_name(const char *name);
/* 1 for the dtypes the loaders convert to fp32 (F32, F16, BF16). */
int rb_dtype_is_float(int dtype);

typedef struct rb_st_tensor {
    char *name;
    int dtype;
    int ndim;
    int64_t shape[RB_ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;   /* byte range within the data section, validated */
    const uint8_t *data;   /* mapped bytes of the tensor (NULL when empty) */
} rb_st_tensor;

/* One opened, fully validated safetensors file. Caller-owned; rb_st_open/rb_st_close. */
typedef struct rb_st_file {
    rb_mapped map;
    uint64_t header_len;
    uint64_t data_size;     /* bytes after the header */
    size_t n;
    rb_st_tensor *tensors;  /* [n], sorted by data offset (file order) */
    size_t *by_name;        /* [n] indices into tensors, sorted by name (for lookup) */
} rb_st_file;

/* Maps and validates `path`: header length (cap, ≤ file size), well-formed JSON, known dtypes,
 * shapes of non-negative integers, byte size = numel × dtype size, offsets inside the data
 * section, no overlaps. Errors (naming the file and tensor): RB_ENOTFOUND, RB_EIO, RB_EFORMAT,
 * RB_EUNSUPPORTED (unknown dtype string, more than RB_ST_MAX_DIMS dims), RB_ENOMEM. */
int rb_st_open(rb_st_file *f, const char *path, rb_error *err);
void rb_st_close(rb_st_file *f);

/* Tensor named `name`, or NULL. O(log n). */
const rb_st_tensor *rb_st_find(const rb_st_file *f, const char *name);

/* One tensor to write. Float tensors (F32/F16/BF16) take fp32 values from `data` (numel elements)
 * or, when `data` is NULL, from fill(ctx, out) called once into a scratch buffer, converted on write.
 * Other dtypes (I32, U8, ...) are written as raw little-endian bytes from `raw` or, when `raw` is
 * NULL, from fill_raw(ctx, out) into a scratch buffer of numel·dtype-size bytes. Either way a writer
 * of many tensors holds one tensor in memory at a time, and fills run in tensor order. */
typedef struct rb_st_write_tensor {
    const char *name;
    int dtype;           /* any RB_DT_* but UNKNOWN */
    int ndim;            /* 1..4 */
    int64_t shape[4];
    const float *data;
    int (*fill)(void *ctx, float *out, rb_error *err);
    void *ctx;
    const void *raw;     /* non-float dtypes */
    int (*fill_raw)(void *ctx, void *out, rb_error *err);
} rb_st_write_tensor;

/* Writes `n` tensors, in the given order and contiguously, to `path` (temp file + rename), with
 * "__metadata__": {"format": "pt"} and the header padded with spaces so the data starts at a
 * multiple of 8 bytes. F16/BF16 round to nearest even. Errors: RB_EINVAL (bad dtype/shape,
 * duplicate name), RB_EIO (naming the file and strerror: a full disk lands here), RB_ENOMEM, or what
 * a fill callback returns. */
int rb_safetensors_write(const char *path, const rb_st_write_tensor *tensors, size_t n, rb_error *err);

/* Writes the tensors into directory `dir` as HF does: one model.safetensors when max_shard_bytes is 0
 * or the total fits in it, else model-0000k-of-0000N.safetensors shards of at most max_shard_bytes
 * each (a larger single tensor gets a shard of its own), in order, plus model.safetensors.index.json
 * {metadata: {total_size}, weight_map}. *n_shards_out (may be NULL) gets N (1 for a single file).
 * Errors as rb_safetensors_write. */
int rb_safetensors_write_dir(const char *dir, const rb_st_write_tensor *tensors, size_t n, uint64_t max_shard_bytes,
                             int *n_shards_out, rb_error *err);

/* The sharded layout with a given assignment: tensor i into model-<idx[i]+1>-of-<shards>.safetensors
 * (idx non-decreasing, every shard non-empty), plus model.safetensors.index.json. */
int rb_safetensors_write_shards(const char *dir, const rb_st_write_tensor *tensors, size_t n, const int *idx,
                                int shards, rb_error *err);

/* Writes the JSON value `root` (not consumed) to `path` indented by 2, keys in insertion order, with a
 * final newline, atomically (temp file + rename). Errors: RB_ENOMEM, RB_EIO. */
struct json_t;
int rb_json_write_file(const char *path, const struct json_t *root, rb_error *err);

/* Bytes the tensor takes on disk (0 on overflow). */
uint64_t rb_st_write_nbytes(const rb_st_write_tensor *t);

#endif

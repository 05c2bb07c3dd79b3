/* rb_gguf: the GGUF container (llama.cpp's model file) — format constants shared by the reader
 * (rb_gguf.c, behind rb_model_open) and the writer (export/rb_export_gguf.c), and a validating
 * parser of a mapped file's header, metadata and tensor directory (also used by tests to read the
 * metadata back).
 *
 * Layout (little endian): "GGUF", u32 version, u64 tensor_count, u64 kv_count, kv_count key/value
 * pairs, tensor_count tensor infos, padding to general.alignment (default 32), then the data
 * section; each tensor's offset is relative to the data section and a multiple of the alignment.
 * A string is u64 length + bytes (no NUL); an array is u32 element type + u64 count + elements. A
 * tensor info is name, u32 n_dims, n_dims u64 ne[] (ne[0] the fastest-varying, i.e. the column
 * count of a row-major matrix), u32 ggml type, u64 offset. */
#ifndef RB_GGUF_H
#define RB_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_error.h"

#define RB_GGUF_MAGIC "GGUF"
#define RB_GGUF_VERSION 3
#define RB_GGUF_DEFAULT_ALIGNMENT 32
#define RB_GGUF_MAX_DIMS 4
#define RB_GGUF_MAX_NAME 64   /* tensor name bytes (the spec's limit; ggml's GGML_MAX_NAME) */
#define RB_GGUF_MAX_KEY 65535 /* key bytes (the spec's limit) */

/* Metadata value types. */
enum {
    RB_GGUF_U8 = 0,
    RB_GGUF_I8 = 1,
    RB_GGUF_U16 = 2,
    RB_GGUF_I16 = 3,
    RB_GGUF_U32 = 4,
    RB_GGUF_I32 = 5,
    RB_GGUF_F32 = 6,
    RB_GGUF_BOOL = 7,
    RB_GGUF_STRING = 8,
    RB_GGUF_ARRAY = 9,
    RB_GGUF_U64 = 10,
    RB_GGUF_I64 = 11,
    RB_GGUF_F64 = 12,
    RB_GGUF_NTYPES
};

/* ggml tensor types rotbench reads and writes (the quantized ones are refused by name). */
enum { RB_GGML_F32 = 0, RB_GGML_F16 = 1, RB_GGML_BF16 = 30 };

/* general.file_type values (llama.cpp's LLAMA_FTYPE_*). */
enum { RB_GGUF_FTYPE_ALL_F32 = 0, RB_GGUF_FTYPE_MOSTLY_F16 = 1, RB_GGUF_FTYPE_MOSTLY_BF16 = 32 };

/* tokenizer.ggml.token_type values: llama.cpp's, which are SentencePiece's piece types (the same
 * numbers as RB_PIECE_* of text/rb_tok_internal.h). */
enum {
    RB_GGUF_TOKEN_NORMAL = 1,
    RB_GGUF_TOKEN_UNKNOWN = 2,
    RB_GGUF_TOKEN_CONTROL = 3,
    RB_GGUF_TOKEN_USER = 4,
    RB_GGUF_TOKEN_UNUSED = 5,
    RB_GGUF_TOKEN_BYTE = 6
};

/* llama.cpp's per-layer tensor names ("blk.N.<name>.weight"), in rb_layer_weights field order:
 * attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down. */
#define RB_GGUF_LAYER_TENSORS 9
extern const char *const rb_gguf_layer_names[RB_GGUF_LAYER_TENSORS];

/* "u8", "string", "array", ... ("?" for an unknown type). */
const char *rb_gguf_type_name(uint32_t type);
/* Bytes of one fixed-size value of `type`; 0 for string, array and unknown types. */
size_t rb_gguf_type_size(uint32_t type);
/* ggml type name: "F32", "F16", "BF16", "Q4_0", "Q8_0", "Q4_K", ... ("unknown" when unnamed). */
const char *rb_ggml_type_name(uint32_t type);

/* One metadata pair. Strings point into the mapping (not NUL-terminated); key is a NUL-terminated
 * copy owned by the rb_gguf. */
typedef struct rb_gguf_kv {
    const char *key;
    uint32_t type;      /* RB_GGUF_* */
    uint32_t arr_type;  /* element type when type is RB_GGUF_ARRAY */
    uint64_t arr_n;     /* element count when type is RB_GGUF_ARRAY */
    const uint8_t *val; /* the value (for an array: its first element) */
    size_t off;         /* file offset of the pair (for messages) */
} rb_gguf_kv;

typedef struct rb_gguf_tensor {
    const char *name; /* NUL-terminated copy owned by the rb_gguf */
    uint32_t n_dims;
    uint64_t ne[RB_GGUF_MAX_DIMS]; /* ne[0] fastest; unused dims are 1 */
    uint32_t type;                 /* ggml type */
    uint64_t offset;               /* relative to the data section */
    uint64_t nelem;                /* product of ne (checked for overflow) */
    uint64_t nbytes;               /* nelem * element size; 0 for types this parser does not size */
    const uint8_t *data;           /* start of the tensor's bytes in the mapping (bounds checked when nbytes > 0) */
    size_t info_off;               /* file offset of the tensor info (for messages) */
} rb_gguf_tensor;

typedef struct rb_gguf {
    const char *path; /* borrowed, for messages */
    const uint8_t *base;
    size_t size;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    rb_gguf_kv *kv;          /* [n_kv] */
    rb_gguf_tensor *tensors; /* [n_tensors], file order */
    uint64_t alignment;
    size_t data_off; /* start of the data section */
    char *names;     /* arena of the key and tensor-name copies */
} rb_gguf;

/* Parses and validates the header, every key/value pair and the tensor directory of the `size`
 * bytes at `data` (path only names the file in messages; both must outlive g): magic, version 2 or
 * 3, counts bounded by the file size, string lengths, array element types and counts, keys and
 * tensor names unique, n_dims in 1..4, ne products without overflow, general.alignment (u32, a
 * power of two) and, for F32/F16/BF16 tensors, offset aligned and offset + bytes inside the file.
 * Other tensor types are parsed (nbytes 0) and left for the caller to refuse by name. On failure g
 * is zeroed and err names the file and the offset, key or tensor. Errors: RB_EFORMAT,
 * RB_EUNSUPPORTED (GGUF version 1, a big-endian file), RB_ENOMEM. Free with rb_gguf_free. */
int rb_gguf_parse(rb_gguf *g, const char *path, const uint8_t *data, size_t size, rb_error *err);
void rb_gguf_free(rb_gguf *g);

/* The pair with this key, or NULL. */
const rb_gguf_kv *rb_gguf_find(const rb_gguf *g, const char *key);
/* The tensor with this name, or NULL. */
const rb_gguf_tensor *rb_gguf_find_tensor(const rb_gguf *g, const char *name);

/* Typed reads of key `key`. An absent key is RB_ENOTFOUND (message names the key; *out untouched);
 * a value of another kind is RB_EFORMAT naming the key and both types. Integers accept any integer
 * type whose value fits; floats accept F32 and F64 (f32 widened); strings are not NUL-terminated. */
int rb_gguf_get_int(const rb_gguf *g, const char *key, int64_t *out, rb_error *err);
int rb_gguf_get_float(const rb_gguf *g, const char *key, double *out, rb_error *err);
int rb_gguf_get_str(const rb_gguf *g, const char *key, const char **s, size_t *len, rb_error *err);
/* An array of element type `elem_type` (any count); *kv gets the pair. RB_ENOTFOUND / RB_EFORMAT as above. */
int rb_gguf_get_array(const rb_gguf *g, const char *key, uint32_t elem_type, const rb_gguf_kv **kv, rb_error *err);

/* Element i (< kv->arr_n) of a numeric array as a double (integers exactly up to 2^53). */
double rb_gguf_array_num(const rb_gguf_kv *kv, uint64_t i);
/* The strings of a string array, in order, into s[kv->arr_n] / len[kv->arr_n] (caller allocates;
 * pointers into the mapping). The array was validated by rb_gguf_parse. */
void rb_gguf_array_strs(const rb_gguf_kv *kv, const char **s, size_t *len);

#endif

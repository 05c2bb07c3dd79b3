/* rb_gptq_pack: the integer layout of a GPTQ checkpoint (AutoGPTQ / transformers-optimum / vLLM
 * "gptq", checkpoint_format v1; docs/export-gptq.md has a worked example), packing and unpacking
 * only (no I/O). For a linear with `in` inputs and `out` outputs (HF weight [out][in]):
 *
 *   qweight int32 [in·bits/32][out]    codes q ∈ [0, 2^bits): column o is the bitstream of the codes
 *                                      q[o][0..in), code c at bit c·bits (words little end first:
 *                                      bit k of the stream is bit k%32 of word k/32). For 2/4/8 bits
 *                                      word i holds codes i·32/bits ..; 3 bits cross words (AutoGPTQ's
 *                                      layout: 32 codes per 3 words).
 *   qzeros  int32 [n_groups][out·bits/32]  row g is the bitstream over o of zero[o][g] − 1 (v1 "gptq";
 *                                      "gptq_v2" stores the zero itself)
 *   scales  F16|F32|BF16 [n_groups][out]
 *   g_idx   int32 [in]                 group of input column c (c / group_size, or the act-order group)
 *
 *   w[o][c] = scales[g][o] · (q[o][c] − zero[o][g]),  g = g_idx[c],  zero = stored + 1 (v1)
 *
 * v1 cannot store a zero of 0 (it would be −1, which wraps to 2^bits − 1): asymmetric grids whose
 * unit has no negative weight hit this, symmetric grids (zero 2^(bits−1)) never do.
 * Words are int32 in host order in memory; the checkpoint is little-endian (the unpackers read
 * explicit little-endian bytes, the packers assume a little-endian host as the writers do). */
#ifndef RB_GPTQ_PACK_H
#define RB_GPTQ_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_error.h"

/* checkpoint_format values: v1 stores zero − 1, v2 the zero. */
#define RB_GPTQ_FORMAT_V1 "gptq"
#define RB_GPTQ_FORMAT_V2 "gptq_v2"

/* Geometry of one packed linear. */
typedef struct rb_gptq_dims {
    int bits;     /* 2, 3, 4 or 8 */
    int in, out;  /* inputs (HF columns), outputs (HF rows) */
    int n_groups; /* rows of qzeros and scales: ceil(in / group_size), 1 per channel (group_size −1) */
} rb_gptq_dims;

/* 0 for bits 2, 3, 4, 8; RB_EUNSUPPORTED otherwise (one line listing them). */
int rb_gptq_bits_check(int bits, rb_error *err);

/* Groups of a linear with `in` inputs: ceil(in / group_size), or 1 for group_size −1 (per channel).
 * group_size must be −1 or > 0 (RB_ASSERT). */
int rb_gptq_n_groups(int in, int group_size);

/* 0 when d can be packed exactly: bits supported, in, out ≥ 1, in·bits and out·bits multiples of 32
 * (whole int32 words, as every engine's loader expects), 1 ≤ n_groups ≤ in. Otherwise
 * RB_EUNSUPPORTED (bits, widths that do not fill whole words) or RB_EINVAL, the message starting
 * with `what` (a tensor or linear name). */
int rb_gptq_dims_check(const rb_gptq_dims *d, const char *what, rb_error *err);

/* Words per column of qweight (in·bits/32) and per row of qzeros (out·bits/32); d checked. */
static inline size_t rb_gptq_qweight_rows(const rb_gptq_dims *d) { return (size_t)d->in * (size_t)d->bits / 32; }
static inline size_t rb_gptq_qzeros_cols(const rb_gptq_dims *d) { return (size_t)d->out * (size_t)d->bits / 32; }

/* Packs codes q[out][in] (each < 2^bits, RB_ASSERT) into qweight[in·bits/32][out]. d checked. */
void rb_gptq_pack_qweight(const rb_gptq_dims *d, const uint8_t *q, int32_t *qweight);

/* Packs zeros zu[out][n_groups] into qzeros[n_groups][out·bits/32], storing zu − offset (offset 1:
 * v1 "gptq", 0: "gptq_v2"). Errors: RB_EINVAL, starting with `what`, naming (row, group), when a
 * stored value falls outside [0, 2^bits): a zero of 0 in v1 (suggesting symmetric weights or v2), or
 * a zero above 2^bits − 1 + offset. Nothing is written past the failing row on error. */
int rb_gptq_pack_qzeros(const rb_gptq_dims *d, const uint8_t *zu, int offset, int32_t *qzeros, const char *what,
                        rb_error *err);

/* Transposes scale[out][n_groups] (rb_wparams' layout) into scales[n_groups][out]. */
void rb_gptq_pack_scales(const rb_gptq_dims *d, const float *scale, float *scales);

/* Inverses of the packers, reading little-endian int32 words from raw bytes (any alignment):
 * qweight → q[out][in]; qzeros → zero[out][n_groups] = stored + offset (so up to 2^bits for v1). */
void rb_gptq_unpack_qweight(const rb_gptq_dims *d, const void *qweight, uint8_t *q);
void rb_gptq_unpack_qzeros(const rb_gptq_dims *d, const void *qzeros, int offset, int32_t *zero);

/* A packed linear as stored (all pointers borrowed raw little-endian bytes, any alignment). */
typedef struct rb_gptq_view {
    rb_gptq_dims d;
    const void *qweight; /* int32 [in·bits/32][out] */
    const void *qzeros;  /* int32 [n_groups][out·bits/32] */
    const void *scales;  /* scales_dtype [n_groups][out] */
    int scales_dtype;    /* RB_DT_F32, RB_DT_F16 or RB_DT_BF16 (rb_safetensors.h) */
    const void *g_idx;   /* int32 [in], or NULL: group of column c is c / group_size */
    int group_size;      /* used when g_idx is NULL: > 0, or −1 (one group) */
    int zero_offset;     /* 1: v1 "gptq" (stored zero − 1), 0: "gptq_v2" */
} rb_gptq_view;

/* Checks every g_idx entry lies in [0, n_groups) (0 without g_idx). RB_EFORMAT naming `what`, the
 * column and the value. */
int rb_gptq_check_gidx(const rb_gptq_view *v, const char *what, rb_error *err);

/* Dequantizes v into w[out][in] (fp32, HF layout): w = scale · (float)(q − zero), one rounding, so a
 * grid with F32 scales comes back bit for bit as the quantizer produced it (rb_wparams_codes'
 * reconstruction). Work space: n_groups·out·8 bytes. Errors (starting with `what`): RB_EFORMAT (a
 * g_idx entry out of range, a non-finite scale or result: naming the entry), RB_ENOMEM. */
int rb_gptq_dequant(const rb_gptq_view *v, float *w, const char *what, rb_error *err);

#endif

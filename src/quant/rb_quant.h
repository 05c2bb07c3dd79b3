/* rb_quant: uniform integer quantizers as fake quantization (quantize then dequantize, fp32 in and
 * out), following METHODS.md §8.1 exactly:
 *
 *   QuaRot / SpinQuant family (default): the range always contains 0,
 *     xmin = min(min x, 0)·clip, xmax = max(max x, 0)·clip over one quantization unit;
 *     sym:  maxq = 2^(b−1) − 1, scale = max(−xmin, xmax)/maxq, q = clamp(round(x/scale), −(maxq+1), maxq),
 *           dequant scale·q;
 *     asym: maxq = 2^b − 1, (xmin, xmax) = (−1, +1) when both are 0, scale = (xmax − xmin)/maxq,
 *           zero = round(−xmin/scale), q = clamp(round(x/scale) + zero, 0, maxq), dequant scale·(q − zero).
 *     A scale that comes out 0 (all-zero unit, or fp32 underflow) is replaced by 1.
 *   RUQuant / DuQuant / OmniQuant family (raw_minmax, asym only): xmin/xmax are the raw min/max
 *     times clip (0 not forced in), scale clamped to [1e-5, 1e4], zero = round(clamp(−xmin/scale, ±1e4)).
 *   round() is round-half-to-even (torch.round), never roundf.
 *
 * A "unit" is the set of values sharing one (scale, zero): the whole tensor, one row (channel for a
 * weight [out][in], token for an activation [tokens][dim]), `group` consecutive columns of a row
 * (the last group of a row may be shorter), or one head (head_dim consecutive columns) of a row.
 * Every unit is a contiguous run of the row-major matrix. Parameters are stored [rows][units per
 * row] ([1] for per-tensor). */
#ifndef RB_QUANT_H
#define RB_QUANT_H

#include <stddef.h>

#include "core/rb_error.h"

/* bits value meaning "not quantized" (identity everywhere). */
#define RB_QBITS_OFF 16

/* Granularities. CHANNEL and TOKEN are the same operation (one unit per row); both exist so that
 * names round-trip through rb_qgran_parse/rb_qgran_name. */
enum { RB_QGRAN_TENSOR = 0, RB_QGRAN_CHANNEL, RB_QGRAN_TOKEN, RB_QGRAN_GROUP, RB_QGRAN_HEAD, RB_QGRAN_COUNT };

/* Clip search (QuaRot --w_clip / GPTQ find_params mse branch): shrink factors p = 1 − i/GRID for
 * i < MAXSHRINK·GRID (p = 1.00, 0.99, …, 0.21), error Σ|dequant(x) − x|^NORM per unit. */
#define RB_QCLIP_GRID 100
#define RB_QCLIP_STEPS 80 /* maxshrink 0.8 × grid 100 */
#define RB_QCLIP_NORM 2.4f

typedef struct rb_qspec {
    int bits;        /* 2..8 (the literature uses 2,3,4,5,6,8); RB_QBITS_OFF = off */
    int sym;         /* 1 symmetric (zero = 0), 0 asymmetric */
    int gran;        /* RB_QGRAN_* */
    int group;       /* columns per unit for RB_QGRAN_GROUP (> 0); ignored otherwise */
    float clip;      /* range multiplier in (0, 1]: QuaRot clip_ratio, RUQuant lac/swc; 1 = none */
    int clip_search; /* 1: per unit, pick the best shrink p of the clipped range (weights) */
    int raw_minmax;  /* 1: RUQuant/OmniQuant range (raw min/max, scale clamp); requires sym = 0 */
} rb_qspec;

/* A spec with clip 1, no search, QuaRot range. Not validated (see rb_qspec_check). */
rb_qspec rb_qspec_make(int bits, int sym, int gran, int group);

/* 0 if *s is usable; RB_EINVAL with a one-line reason otherwise (bits outside 2..8 and not 16,
 * unknown granularity, group ≤ 0 for RB_QGRAN_GROUP, clip outside (0, 1], raw_minmax with sym). */
int rb_qspec_check(const rb_qspec *s, rb_error *err);

/* Largest integer level: 2^(b−1) − 1 (sym) or 2^b − 1 (asym). Undefined for bits = 16. */
int rb_qspec_maxq(const rb_qspec *s);

/* "tensor", "channel", "token", "group", "head"; "?" for an unknown value. */
const char *rb_qgran_name(int gran);
/* Parses one of the names above into *gran. RB_EINVAL for anything else. */
int rb_qgran_parse(const char *name, int *gran, rb_error *err);

/* One-line description ("int4 asym group128 clip=0.90 search raw", or "off") into buf (always
 * NUL-terminated). Returns snprintf's length. */
int rb_qspec_format(const rb_qspec *s, char *buf, size_t cap);

/* Number of units (= entries of the scale and zero arrays) of a [rows][cols] matrix into *count.
 * head_dim is used only by RB_QGRAN_HEAD and must then divide cols. RB_EINVAL for a bad spec or
 * shape. */
int rb_qparams_count(const rb_qspec *s, int rows, int cols, int head_dim, long *count, rb_error *err);

/* (scale, zero) of one contiguous unit x[0..n), n ≥ 1, with clip search when s->clip_search.
 * *shrink (may be NULL) receives the chosen p (1 without search). s must be valid and quantizing
 * (bits < 16). Never fails; NaN/Inf inputs give unspecified parameters. */
void rb_qparams_unit(const rb_qspec *s, const float *x, long n, float *scale, float *zero, float *shrink);

/* Parameters of every unit of x[rows][cols] into scale[count], zero[count] (count from
 * rb_qparams_count, layout [rows][units per row]). bits = 16 fills scale 1, zero 0. */
int rb_qparams_find(const rb_qspec *s, const float *x, int rows, int cols, int head_dim, float *scale,
                    float *zero, rb_error *err);

/* Fake-quantizes x[rows][cols] in place with given parameters (as from rb_qparams_find). */
int rb_quant_apply(const rb_qspec *s, float *x, int rows, int cols, int head_dim, const float *scale,
                   const float *zero, rb_error *err);

/* Finds the parameters of every unit of x[rows][cols] and fake-quantizes it in place, in one pass
 * per unit and without allocating (the per-token activation path: one read for min/max, one
 * read+write for the quantization). bits = 16 returns at once with x untouched. */
int rb_quant_fake(const rb_qspec *s, float *x, int rows, int cols, int head_dim, rb_error *err);

/* Clipped straight-through estimator (the backward of rb_quant_fake): zeroes dx[rows][cols] where x
 * (the quantizer's input) falls outside its unit's representable range, i.e. where the rounded level
 * was clamped; elsewhere the gradient passes unchanged. bits = 16 leaves dx untouched. */
int rb_quant_ste_mask(const rb_qspec *s, const float *x, float *dx, int rows, int cols, int head_dim, rb_error *err);

/* Round half to even, equal to nearbyintf() in the default rounding mode for |v| < 2^22, written
 * with the 1.5·2^23 trick so that loops vectorize without SSE4.1. Larger |v| give an integer-or-
 * huge value of the same sign, which every caller clamps to at most 2^8 + 1e4, so quantized
 * results equal the nearbyintf ones for every finite input. Needs IEEE semantics (no -ffast-math). */
static inline float rb_round_even(float v) {
    const float magic = 12582912.0f; /* 1.5·2^23: sums in [2^23, 2^24) have an ulp of exactly 1 */
    return (v + magic) - magic;
}

/* One value through the quantizer: sym: scale·clamp(round(x/scale), −(maxq+1), maxq) (zero must be
 * 0); asym: scale·(clamp(round(x/scale) + zero, 0, maxq) − zero). The formula GPTQ applies per
 * column. */
static inline float rb_quant_value(float x, float scale, float zero, int maxq, int sym) {
    float lo = sym ? -(float)(maxq + 1) : 0.0f, hi = (float)maxq;
    float q = rb_round_even(x / scale) + zero;
    q = q < lo ? lo : q;
    q = q > hi ? hi : q;
    return scale * (q - zero);
}

#endif

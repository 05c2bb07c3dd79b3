/* GPTQ checkpoint packing (rb_gptq_pack.h). Every packed dimension is a bitstream of `bits`-wide
 * fields, field k at bit k·bits, stored in 32-bit words little end first. It is processed in blocks
 * of V = 32/gcd(bits, 32) fields, which fill exactly B = V·bits/32 words (1 word for 2/4/8 bits, 3
 * words for 3 bits), so a block never shares a word with the next one. */
#include "export/rb_gptq_pack.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_half.h"
#include "model/rb_safetensors.h"

int rb_gptq_bits_check(int bits, rb_error *err) {
    if (bits == 2 || bits == 3 || bits == 4 || bits == 8) return 0;
    return rb_error_set(err, RB_EUNSUPPORTED, "GPTQ packing: %d-bit codes are not supported (2, 3, 4 and 8 are)",
                        bits);
}

int rb_gptq_n_groups(int in, int group_size) {
    RB_ASSERT(in > 0 && (group_size == -1 || group_size > 0));
    return group_size == -1 ? 1 : (int)(((long)in + group_size - 1) / group_size);
}

/* Fields per block and words per block. */
static int block_vals(int bits) { return bits == 3 ? 32 : 32 / bits; }
static int block_words(int bits) { return bits == 3 ? 3 : 1; }

int rb_gptq_dims_check(const rb_gptq_dims *d, const char *what, rb_error *err) {
    int rc = rb_gptq_bits_check(d->bits, err);
    if (rc) return rb_error_prefix(err, "%s", what);
    if (d->in < 1 || d->out < 1)
        return rb_error_set(err, RB_EINVAL, "%s: bad shape [%d out][%d in]", what, d->out, d->in);
    /* Engines size qweight as in / (32/bits) and qzeros as out / (32/bits) words; a width that does not
     * fill whole words has no GPTQ representation they load. */
    const int v = block_vals(d->bits);
    if (d->in % v || d->out % v)
        return rb_error_set(err, RB_EUNSUPPORTED,
                            "%s: [%d out][%d in] cannot be packed at %d bits: both widths must be multiples of %d "
                            "(whole int32 words)",
                            what, d->out, d->in, d->bits, v);
    if (d->n_groups < 1 || d->n_groups > d->in)
        return rb_error_set(err, RB_EINVAL, "%s: %d groups for %d inputs", what, d->n_groups, d->in);
    return 0;
}

/* v[0..V) → w[0..B) (zeroed here). */
static void put_block(const uint32_t *v, int bits, uint32_t *w) {
    const int nv = block_vals(bits), nw = block_words(bits);
    for (int j = 0; j < nw; j++) w[j] = 0;
    for (int k = 0; k < nv; k++) {
        const int bit = k * bits, wi = bit >> 5, sh = bit & 31;
        w[wi] |= v[k] << sh;
        if (sh + bits > 32) w[wi + 1] |= v[k] >> (32 - sh); /* 3 bits: the field crosses into the next word */
    }
}

/* w[0..B) → v[0..V). */
static void get_block(const uint32_t *w, int bits, uint32_t *v) {
    const int nv = block_vals(bits);
    const uint32_t mask = (1u << bits) - 1;
    for (int k = 0; k < nv; k++) {
        const int bit = k * bits, wi = bit >> 5, sh = bit & 31;
        uint32_t x = w[wi] >> sh;
        if (sh + bits > 32) x |= w[wi + 1] << (32 - sh);
        v[k] = x & mask;
    }
}

static uint32_t rd32(const void *base, size_t idx) {
    const uint8_t *p = (const uint8_t *)base + idx * 4;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void rb_gptq_pack_qweight(const rb_gptq_dims *d, const uint8_t *q, int32_t *qweight) {
    const int nv = block_vals(d->bits), nw = block_words(d->bits);
    const size_t out = (size_t)d->out, in = (size_t)d->in;
    uint32_t *qw = (uint32_t *)qweight; /* signed/unsigned variants of one type may alias */
    uint32_t v[32], w[3];
    for (size_t b = 0; b < in / (size_t)nv; b++)
        for (size_t o = 0; o < out; o++) {
            const uint8_t *src = q + o * in + b * (size_t)nv;
            for (int k = 0; k < nv; k++) {
                RB_ASSERT(src[k] < (1u << d->bits));
                v[k] = src[k];
            }
            put_block(v, d->bits, w);
            for (int j = 0; j < nw; j++) qw[(b * (size_t)nw + (size_t)j) * out + o] = w[j];
        }
}

int rb_gptq_pack_qzeros(const rb_gptq_dims *d, const uint8_t *zu, int offset, int32_t *qzeros, const char *what,
                        rb_error *err) {
    const int nv = block_vals(d->bits), nw = block_words(d->bits);
    const size_t out = (size_t)d->out, ng = (size_t)d->n_groups, cols = rb_gptq_qzeros_cols(d);
    const int top = 1 << d->bits;
    uint32_t *qz = (uint32_t *)qzeros;
    uint32_t v[32], w[3];
    for (size_t g = 0; g < ng; g++)
        for (size_t b = 0; b < out / (size_t)nv; b++) {
            for (int k = 0; k < nv; k++) {
                const size_t o = b * (size_t)nv + (size_t)k;
                const int z = (int)zu[o * ng + g] - offset;
                if (z < 0)
                    return rb_error_set(err, RB_EINVAL,
                                        "%s: row %zu group %zu has zero point 0, which checkpoint_format \"gptq\" (v1) "
                                        "cannot store (it keeps zero − 1); quantize the weights symmetric (sym) to "
                                        "export them as GPTQ",
                                        what, o, g);
                if (z >= top)
                    return rb_error_set(err, RB_EINVAL, "%s: row %zu group %zu: zero point %d outside [%d, %d]", what,
                                        o, g, (int)zu[o * ng + g], offset, top - 1 + offset);
                v[k] = (uint32_t)z;
            }
            put_block(v, d->bits, w);
            for (int j = 0; j < nw; j++) qz[g * cols + b * (size_t)nw + (size_t)j] = w[j];
        }
    return 0;
}

void rb_gptq_pack_scales(const rb_gptq_dims *d, const float *scale, float *scales) {
    const size_t out = (size_t)d->out, ng = (size_t)d->n_groups;
    for (size_t g = 0; g < ng; g++)
        for (size_t o = 0; o < out; o++) scales[g * out + o] = scale[o * ng + g];
}

void rb_gptq_unpack_qweight(const rb_gptq_dims *d, const void *qweight, uint8_t *q) {
    const int nv = block_vals(d->bits), nw = block_words(d->bits);
    const size_t out = (size_t)d->out, in = (size_t)d->in;
    uint32_t v[32], w[3];
    for (size_t b = 0; b < in / (size_t)nv; b++)
        for (size_t o = 0; o < out; o++) {
            for (int j = 0; j < nw; j++) w[j] = rd32(qweight, (b * (size_t)nw + (size_t)j) * out + o);
            get_block(w, d->bits, v);
            for (int k = 0; k < nv; k++) q[o * in + b * (size_t)nv + (size_t)k] = (uint8_t)v[k];
        }
}

void rb_gptq_unpack_qzeros(const rb_gptq_dims *d, const void *qzeros, int offset, int32_t *zero) {
    const int nv = block_vals(d->bits), nw = block_words(d->bits);
    const size_t out = (size_t)d->out, ng = (size_t)d->n_groups, cols = rb_gptq_qzeros_cols(d);
    uint32_t v[32], w[3];
    for (size_t g = 0; g < ng; g++)
        for (size_t b = 0; b < out / (size_t)nv; b++) {
            for (int j = 0; j < nw; j++) w[j] = rd32(qzeros, g * cols + b * (size_t)nw + (size_t)j);
            get_block(w, d->bits, v);
            for (int k = 0; k < nv; k++) zero[(b * (size_t)nv + (size_t)k) * ng + g] = (int32_t)v[k] + offset;
        }
}

/* Group of column c, validated. */
static int gidx_at(const rb_gptq_view *v, size_t c) {
    if (!v->g_idx) return v->group_size == -1 ? 0 : (int)(c / (size_t)v->group_size);
    return (int32_t)rd32(v->g_idx, c);
}

int rb_gptq_check_gidx(const rb_gptq_view *v, const char *what, rb_error *err) {
    for (size_t c = 0; c < (size_t)v->d.in; c++) {
        int g = gidx_at(v, c);
        if (g < 0 || g >= v->d.n_groups)
            return rb_error_set(err, RB_EFORMAT, "%s: g_idx[%zu] = %d outside [0, %d)", what, c, g, v->d.n_groups);
    }
    return 0;
}

static float scale_at(const rb_gptq_view *v, size_t i) {
    const uint8_t *p = v->scales;
    switch (v->scales_dtype) {
    case RB_DT_F32: {
        uint32_t u = rd32(p, i);
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    case RB_DT_F16: return rb_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    default: return rb_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    }
}

int rb_gptq_dequant(const rb_gptq_view *v, float *w, const char *what, rb_error *err) {
    const rb_gptq_dims *d = &v->d;
    RB_ASSERT(v->scales_dtype == RB_DT_F32 || v->scales_dtype == RB_DT_F16 || v->scales_dtype == RB_DT_BF16);
    const size_t out = (size_t)d->out, in = (size_t)d->in, ng = (size_t)d->n_groups;
    const int nv = block_vals(d->bits), nw = block_words(d->bits);
    float *sc = malloc(ng * out * sizeof *sc), *zf = malloc(ng * out * sizeof *zf);
    int32_t *gi = malloc(in * sizeof *gi), *zi = malloc(ng * out * sizeof *zi);
    int rc = 0, huge = 0;
    if (!sc || !zf || !gi || !zi) {
        rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory dequantizing [%zu][%zu]", what, out, in);
        goto done;
    }
    for (size_t c = 0; c < in; c++) {
        gi[c] = gidx_at(v, c);
        if (gi[c] < 0 || gi[c] >= d->n_groups) {
            rc = rb_error_set(err, RB_EFORMAT, "%s: g_idx[%zu] = %d outside [0, %d)", what, c, gi[c], d->n_groups);
            goto done;
        }
    }
    rb_gptq_unpack_qzeros(d, v->qzeros, v->zero_offset, zi);
    for (size_t g = 0; g < ng; g++)
        for (size_t o = 0; o < out; o++) {
            const float s = scale_at(v, g * out + o);
            if (!isfinite(s)) {
                rc = rb_error_set(err, RB_EFORMAT, "%s: scales[%zu][%zu] is not finite", what, g, o);
                goto done;
            }
            huge |= fabsf(s) > FLT_MAX / 512; /* |q − zero| ≤ 2^bits ≤ 256: only such a scale can overflow */
            /* [group][out] so that the loop below reads both tables along o, as it walks qweight */
            sc[g * out + o] = s;
            zf[g * out + o] = (float)zi[o * ng + g]; /* exact: a small integer */
        }
    uint32_t wd[3], q[32];
    for (size_t b = 0; b < in / (size_t)nv; b++)
        for (size_t o = 0; o < out; o++) {
            for (int j = 0; j < nw; j++) wd[j] = rd32(v->qweight, (b * (size_t)nw + (size_t)j) * out + o);
            get_block(wd, d->bits, q);
            float *dst = w + o * in + b * (size_t)nv;
            for (int k = 0; k < nv; k++) {
                const size_t t = (size_t)gi[b * (size_t)nv + (size_t)k] * out + o;
                /* (q − zero) is exact in float, so this is the quantizer's scale·(q − zero): one rounding */
                dst[k] = sc[t] * ((float)q[k] - zf[t]);
            }
        }
    if (huge)
        for (size_t i = 0; i < out * in; i++)
            if (!isfinite(w[i])) {
                rc = rb_error_set(err, RB_EFORMAT, "%s: dequantized weight [%zu][%zu] is not finite (scale overflow)",
                                  what, i / in, i % in);
                goto done;
            }
done:
    free(sc);
    free(zf);
    free(gi);
    free(zi);
    return rc;
}

#include "model/rb_synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"
#include "core/rb_rng.h"

static void gauss(uint64_t seed, const char *what, long idx, float *x, size_t n, double std) {
    char name[64];
    snprintf(name, sizeof name, "synth.%s.%ld", what, idx);
    rb_rng r;
    rb_rng_seed(&r, seed, name);
    rb_rng_gauss(&r, x, n, 0.0, std);
}

static void gen_layer(const rb_llama_config *c, uint64_t seed, int l, rb_layer_weights *w) {
    static const char *const names[RB_LIN_COUNT] = {"wq", "wk", "wv", "wo", "wg", "wu", "wd"};
    for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
        int rows, cols;
        float *W = rb_layer_linear(w, c, lin, &rows, &cols);
        gauss(seed, names[lin], l, W, (size_t)rows * cols, 1.0 / sqrt((double)cols));
    }
    for (int j = 0; j < c->dim; j++) w->rms_att[j] = w->rms_ffn[j] = 1.0f;
}

void rb_synth_free(rb_synth *s) {
    for (int l = 0; s->w && l < s->c->n_layers; l++) rb_layer_weights_free(&s->w[l]);
    free(s->w);
    rb_free(s->head);
    memset(s, 0, sizeof *s);
}

int rb_synth_init(rb_synth *s, const rb_llama_config *c, uint64_t seed, int cache, rb_error *err) {
    memset(s, 0, sizeof *s);
    s->c = c, s->seed = seed;
    if (!cache) return 0;
    size_t nh = (size_t)c->vocab_size * c->dim;
    s->w = calloc((size_t)c->n_layers, sizeof *s->w);
    s->head = rb_alloc(sizeof(float) * nh);
    if (!s->w || !s->head) {
        rb_synth_free(s);
        return rb_error_set(err, RB_ENOMEM, "synthetic model: out of memory for %d cached layers", c->n_layers);
    }
    gauss(seed, "head", 0, s->head, nh, 1.0 / sqrt((double)c->dim));
    for (int l = 0; l < c->n_layers; l++) {
        int rc = rb_layer_weights_init(&s->w[l], c, err);
        if (rc) {
            rb_synth_free(s);
            return rc;
        }
        gen_layer(c, seed, l, &s->w[l]);
    }
    return 0;
}

static int synth_layer(void *ctx, int l, rb_layer_weights *w, rb_error *err) {
    (void)err;
    const rb_synth *s = ctx;
    const rb_llama_config *c = s->c;
    if (!s->w) {
        gen_layer(c, s->seed, l, w);
        return 0;
    }
    for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
        int r, k;
        float *dst = rb_layer_linear(w, c, lin, &r, &k);
        memcpy(dst, rb_layer_linear(&s->w[l], c, lin, &r, &k), sizeof(float) * (size_t)r * k);
    }
    memcpy(w->rms_att, s->w[l].rms_att, sizeof(float) * c->dim);
    memcpy(w->rms_ffn, s->w[l].rms_ffn, sizeof(float) * c->dim);
    return 0;
}

static int synth_embed(void *ctx, const int32_t *ids, size_t n, float *out, rb_error *err) {
    const rb_synth *s = ctx;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= s->c->vocab_size)
            return rb_error_set(err, RB_EINVAL, "synthetic model: token id %d out of range", ids[i]);
        gauss(s->seed, "emb", ids[i], out + i * s->c->dim, (size_t)s->c->dim, 1.0);
    }
    return 0;
}

static int synth_norm(void *ctx, float *out, rb_error *err) {
    (void)err;
    const rb_synth *s = ctx;
    for (int j = 0; j < s->c->dim; j++) out[j] = 1.0f;
    return 0;
}

static int synth_head(void *ctx, float *out, rb_error *err) {
    (void)err;
    const rb_synth *s = ctx;
    size_t nh = (size_t)s->c->vocab_size * s->c->dim;
    if (s->head) memcpy(out, s->head, sizeof(float) * nh);
    else gauss(s->seed, "head", 0, out, nh, 1.0 / sqrt((double)s->c->dim));
    return 0;
}

rb_weights_src rb_synth_src(rb_synth *s) {
    rb_weights_src src = {s, synth_layer, synth_embed, synth_norm, synth_head};
    return src;
}

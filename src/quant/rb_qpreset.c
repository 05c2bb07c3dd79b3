#include "quant/rb_qpreset.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "model/rb_forward.h"

/* Settings follow SpinQuant's evaluation script (METHODS §3 "Evaluation setting", [code]), the most
 * completely documented protocol of the family: weights symmetric per output channel with the MSE
 * clip search (--w_clip); activations per token, asymmetric (--a_asym), clip 1.0; K and V
 * asymmetric per (token, head) (group = head_dim), clip 1.0; lm_head, embeddings, Q and attention
 * probabilities stay FP. Every field can be changed after the preset is loaded. */
typedef struct preset {
    const char *name;
    int wb, ab, kvb;
} preset;

static const preset presets[] = {
    {"W16A16", 16, 16, 16}, {"W4A16", 4, 16, 16}, {"W8A8", 8, 8, 16},    {"W6A6", 6, 6, 16},   {"W4A8", 4, 8, 16},
    {"W4A4", 4, 4, 16},     {"W4A4KV4", 4, 4, 4}, {"W3A3", 3, 3, 16},    {"W3A3KV3", 3, 3, 3}, {"W8A8KV8", 8, 8, 8},
};
#define N_PRESETS (sizeof presets / sizeof presets[0])

const char *const *rb_quant_preset_names(void) {
    static const char *names[N_PRESETS + 1];
    for (size_t i = 0; i < N_PRESETS; i++) names[i] = presets[i].name;
    return names;
}

int rb_quant_preset(const char *name, rb_quant_cfg *q, rb_error *err) {
    const preset *p = NULL;
    for (size_t i = 0; i < N_PRESETS; i++)
        if (!strcasecmp(name, presets[i].name)) p = &presets[i];
    if (!p) {
        char list[256] = "";
        for (size_t i = 0; i < N_PRESETS; i++) {
            strncat(list, presets[i].name, sizeof list - strlen(list) - 1);
            if (i + 1 < N_PRESETS) strncat(list, ", ", sizeof list - strlen(list) - 1);
        }
        return rb_error_set(err, RB_EINVAL, "quant preset '%s': expected one of %s", name, list);
    }
    memset(q, 0, sizeof *q);
    snprintf(q->name, sizeof q->name, "%s", p->name);
    q->w = rb_qspec_make(p->wb, 1, RB_QGRAN_CHANNEL, 0);
    q->w.clip_search = p->wb < RB_QBITS_OFF;
    q->a = rb_qspec_make(p->ab, 0, RB_QGRAN_TOKEN, 0);
    q->k = rb_qspec_make(p->kvb, 0, RB_QGRAN_HEAD, 0);
    q->v = rb_qspec_make(p->kvb, 0, RB_QGRAN_HEAD, 0);
    q->q = rb_qspec_make(RB_QBITS_OFF, 0, RB_QGRAN_HEAD, 0);
    q->o_proj = RB_OPROJ_AUTO;
    q->w_algo = RB_WALGO_RTN;
    q->gptq = rb_gptq_opts_default();
    return 0;
}

int rb_quant_cfg_active(const rb_quant_cfg *q) {
    return q && (q->w.bits < RB_QBITS_OFF || q->a.bits < RB_QBITS_OFF || q->k.bits < RB_QBITS_OFF ||
                 q->v.bits < RB_QBITS_OFF || q->q.bits < RB_QBITS_OFF);
}

int rb_oproj_from_name(const char *name) {
    return !strcmp(name, "auto") ? RB_OPROJ_AUTO : !strcmp(name, "head") ? RB_OPROJ_HEAD : !strcmp(name, "row") ? RB_OPROJ_ROW : -1;
}

const char *rb_oproj_name(int o) {
    return o == RB_OPROJ_AUTO ? "auto" : o == RB_OPROJ_HEAD ? "head" : o == RB_OPROJ_ROW ? "row" : NULL;
}

void rb_quant_cfg_resolve(rb_quant_cfg *q, int cross_head) {
    if (q->o_proj == RB_OPROJ_AUTO) q->o_proj = cross_head ? RB_OPROJ_ROW : RB_OPROJ_HEAD;
}

const rb_qspec *rb_quant_site_spec(const rb_quant_cfg *q, int site) {
    return site == RB_SITE_Q ? &q->q : site == RB_SITE_K ? &q->k : site == RB_SITE_V ? &q->v : &q->a;
}

/* The spec applied at a site, with the o_proj input's per-head grouping resolved into *tmp. */
static const rb_qspec *site_spec_eff(const rb_quant_cfg *q, int site, rb_qspec *tmp) {
    const rb_qspec *s = rb_quant_site_spec(q, site);
    if (site == RB_SITE_O_IN && q->o_proj != RB_OPROJ_ROW && (s->gran == RB_QGRAN_TOKEN || s->gran == RB_QGRAN_CHANNEL)) {
        *tmp = *s;
        tmp->gran = RB_QGRAN_HEAD; /* one scale per (token, head): group_dim = head_dim here */
        s = tmp;
    }
    return s;
}

int rb_quant_site_hook(void *ctx, const rb_site_info *in, float *x, rb_error *err) {
    rb_qspec tmp;
    const rb_qspec *s = site_spec_eff(ctx, in->site, &tmp);
    if (s->bits >= RB_QBITS_OFF) return 0;
    return rb_quant_fake(s, x, in->n_seq * in->seq_len, in->cols, in->group_dim, err);
}

int rb_quant_site_ste(void *ctx, const rb_site_info *in, const float *x_in, float *dx, rb_error *err) {
    (void)ctx, (void)in, (void)x_in, (void)dx, (void)err;
    return 0; /* straight through: d(input) = d(output) */
}

int rb_quant_site_ste_clip(void *ctx, const rb_site_info *in, const float *x_in, float *dx, rb_error *err) {
    rb_qspec tmp;
    const rb_qspec *s = site_spec_eff(ctx, in->site, &tmp);
    if (s->bits >= RB_QBITS_OFF) return 0;
    return rb_quant_ste_mask(s, x_in, dx, in->n_seq * in->seq_len, in->cols, in->group_dim, err);
}

void rb_quant_add_train_hooks(rb_hooks *hk, const rb_quant_cfg *q, int clipped) {
    for (int s = 0; s < RB_SITE_COUNT; s++) {
        if (rb_quant_site_spec(q, s)->bits >= RB_QBITS_OFF) continue;
        if (clipped)
            rb_hooks_add_bwd(hk, s, rb_quant_site_hook, rb_quant_site_ste_clip, 1, (void *)q);
        else
            rb_hooks_add_bwd(hk, s, rb_quant_site_hook, rb_quant_site_ste, 0, (void *)q);
    }
}

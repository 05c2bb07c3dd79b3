/* rb_export_gptq: the run's quantized linears as a GPTQ checkpoint (contract in rb_export.h; layout
 * in rb_gptq_pack.h and docs/export-gptq.md): qweight/qzeros/scales/g_idx of every linear from the
 * weight store's integer grid, FP embedding, norms and lm_head, config.json with a
 * quantization_config (transformers, vLLM) and quantize_config.json (AutoGPTQ).
 *
 * Streaming: the safetensors writer asks for tensors in order; the first tensor of a layer loads it
 * (fused FP layer with the store's linears) and turns each linear into codes once; the codes are
 * checked against the weights bit for bit (rb_wparams_codes), so what is written dequantizes to
 * exactly the weights the run evaluated (with F32 scales). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"
#include "core/rb_half.h"
#include "core/rb_log.h"
#include "export/rb_export.h"
#include "export/rb_gptq_pack.h"
#include "model/rb_hf_config.h"
#include "model/rb_safetensors.h"

/* What the checkpoint records about the quantization, derived once from in->quant. */
typedef struct gptq_meta {
    const rb_qspec *spec;
    int group_size; /* −1 per channel */
    int desc_act, static_groups;
    int scales_dtype;
} gptq_meta;

/* The current layer as codes: filled on the first tensor of a layer, reused by its other tensors. */
typedef struct layer_cache {
    rb_export_layer_cache fp; /* the layer the codes are of (fused, the store's linears) */
    const gptq_meta *meta;
    int layer; /* the codes' layer, -1: none */
    rb_wparams p[RB_LIN_COUNT];
    uint8_t *q[RB_LIN_COUNT];  /* [out][in] codes */
    uint8_t *zu[RB_LIN_COUNT]; /* [out][n_groups] unsigned zeros */
} layer_cache;

enum { P_QWEIGHT, P_QZEROS, P_SCALES, P_GIDX, P_NORM, P_EMBED, P_FINAL_NORM, P_LM_HEAD };

typedef struct tensor_src {
    layer_cache *lc;
    int layer, lin, part; /* lin: RB_LIN_* (P_NORM: 0 input, 1 post-attention) */
} tensor_src;

static void cache_drop(layer_cache *lc) {
    for (int i = 0; i < RB_LIN_COUNT; i++) {
        rb_wparams_free(&lc->p[i]);
        free(lc->q[i]);
        free(lc->zu[i]);
        lc->q[i] = lc->zu[i] = NULL;
    }
    lc->layer = -1;
}

static void lin_dims(const rb_llama_config *c, const gptq_meta *m, int lin, rb_gptq_dims *d) {
    int rows, cols;
    rb_layer_linear_shape(c, lin, &rows, &cols);
    *d = (rb_gptq_dims){.bits = m->spec->bits, .in = cols, .out = rows,
                        .n_groups = rb_gptq_n_groups(cols, m->group_size)};
}

/* "layers.L.<linear>" for messages. */
static void lin_what(char *buf, size_t cap, int l, int lin) { snprintf(buf, cap, "layers.%d.%s", l, rb_linear_name(lin)); }

/* Loads layer l and turns its seven linears into codes, checking them against the spec's grid. */
static int cache_layer(layer_cache *lc, int l, rb_error *err) {
    if (lc->layer == l) return 0;
    cache_drop(lc);
    const rb_export_in *in = lc->fp.in;
    const gptq_meta *m = lc->meta;
    int rc = rb_export_layer_cache_get(&lc->fp, l, err);
    for (int lin = 0; lin < RB_LIN_COUNT && !rc; lin++) {
        char what[64];
        lin_what(what, sizeof what, l, lin);
        rb_gptq_dims d;
        lin_dims(&in->cfg, m, lin, &d);
        if ((rc = rb_wstore_load_params(in->wq, l, lin, &lc->p[lin], err))) break;
        const rb_wparams *p = &lc->p[lin];
        if (p->rows != d.out || p->cols != d.in || p->n_units != d.n_groups) {
            rc = rb_error_set(err, RB_EINVAL, "%s: the store's grid has %d units per row, the spec (%s) %d", what,
                              p->n_units, rb_wstore_spec_desc(in->wq), d.n_groups);
            break;
        }
        /* Without desc_act engines take group c / group_size whatever g_idx says (exllama, Marlin) */
        for (int c = 0; p->g_idx && !m->desc_act && c < d.in; c++)
            if (p->g_idx[c] != (m->group_size > 0 ? c / m->group_size : 0)) {
                rc = rb_error_set(err, RB_EINVAL, "%s: g_idx[%d] = %d in a run without act order (expected %d)", what,
                                  c, (int)p->g_idx[c], m->group_size > 0 ? c / m->group_size : 0);
                break;
            }
        if (rc) break;
        lc->q[lin] = malloc((size_t)d.out * (size_t)d.in);
        lc->zu[lin] = malloc((size_t)d.out * (size_t)d.n_groups);
        if (!lc->q[lin] || !lc->zu[lin]) {
            rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory for the codes", what);
            break;
        }
        int rows, cols;
        const float *wm = rb_layer_linear(&lc->fp.w, &in->cfg, lin, &rows, &cols);
        if ((rc = rb_wparams_codes(m->spec, p, wm, lc->q[lin], lc->zu[lin], err))) {
            rb_error_prefix(err, "%s", what);
            break;
        }
    }
    if (rc) {
        cache_drop(lc);
        return rc;
    }
    lc->layer = l;
    return 0;
}

static int fill_float(void *ctx, float *out, rb_error *err) {
    tensor_src *t = ctx;
    layer_cache *lc = t->lc;
    const rb_export_in *in = lc->fp.in;
    switch (t->part) {
    case P_EMBED: return rb_export_load_embedding(in, out, err);
    case P_FINAL_NORM: return in->src->load_final_norm(in->src->ctx, out, err);
    case P_LM_HEAD: return in->src->load_lm_head(in->src->ctx, out, err);
    default: break;
    }
    int rc = cache_layer(lc, t->layer, err);
    if (rc) return rc;
    if (t->part == P_NORM) {
        memcpy(out, t->lin == 0 ? lc->fp.w.rms_att : lc->fp.w.rms_ffn, sizeof(float) * (size_t)in->cfg.dim);
        return 0;
    }
    RB_ASSERT(t->part == P_SCALES);
    rb_gptq_dims d;
    lin_dims(&in->cfg, lc->meta, t->lin, &d);
    rb_gptq_pack_scales(&d, lc->p[t->lin].scale, out);
    if (lc->meta->scales_dtype == RB_DT_F16)
        for (size_t i = 0; i < (size_t)d.n_groups * (size_t)d.out; i++) {
            float h = rb_f16_to_f32(rb_f32_to_f16(out[i]));
            if (!(h > 0.0f) || h > 65504.0f) {
                char what[64];
                lin_what(what, sizeof what, t->layer, t->lin);
                return rb_error_set(err, RB_EINVAL,
                                    "%s: scale %g (group %zu, row %zu) is not representable in F16: export F32 scales",
                                    what, (double)out[i], i / (size_t)d.out, i % (size_t)d.out);
            }
        }
    return 0;
}

static int fill_raw(void *ctx, void *out, rb_error *err) {
    tensor_src *t = ctx;
    layer_cache *lc = t->lc;
    int rc = cache_layer(lc, t->layer, err);
    if (rc) return rc;
    rb_gptq_dims d;
    lin_dims(&lc->fp.in->cfg, lc->meta, t->lin, &d);
    switch (t->part) {
    case P_QWEIGHT: rb_gptq_pack_qweight(&d, lc->q[t->lin], out); return 0;
    case P_QZEROS: {
        char what[64];
        lin_what(what, sizeof what, t->layer, t->lin);
        return rb_gptq_pack_qzeros(&d, lc->zu[t->lin], 1, out, what, err);
    }
    default: {
        RB_ASSERT(t->part == P_GIDX);
        int32_t *g = out;
        const rb_wparams *p = &lc->p[t->lin];
        for (int c = 0; c < d.in; c++) g[c] = p->g_idx ? p->g_idx[c] : 0; /* per channel: one group */
        return 0;
    }
    }
}

/* One-line refusals of what a GPTQ checkpoint cannot express; fills *m. */
static int check_request(const rb_export_in *in, gptq_meta *m, int need_store, rb_error *err) {
    const rb_quant_cfg *q = in->quant;
    if ((need_store && !in->wq) || !q || q->w.bits >= RB_QBITS_OFF)
        return rb_error_set(err, RB_EINVAL, "the run has no quantized weights: quantize them (e.g. --quant W4A16, "
                                            "--w-algo gptq) or export --format hf");
    if (q->a.bits < RB_QBITS_OFF || q->q.bits < RB_QBITS_OFF || q->k.bits < RB_QBITS_OFF || q->v.bits < RB_QBITS_OFF)
        return rb_error_set(err, RB_EINVAL,
                            "the run also quantizes activations or the KV cache (%s), which a GPTQ checkpoint "
                            "(weight-only) cannot hold: export a weight-only run (e.g. --quant W4A16)",
                            q->name);
    const rb_qspec *s = &q->w;
    if (s->gran != RB_QGRAN_CHANNEL && s->gran != RB_QGRAN_TOKEN && s->gran != RB_QGRAN_GROUP)
        return rb_error_set(err, RB_EINVAL, "weight granularity %s: GPTQ stores per-channel or group scales",
                            rb_qgran_name(s->gran));
    if (s->raw_minmax)
        return rb_error_set(err, RB_EINVAL, "raw_minmax weight ranges have zeros outside the integer range; "
                                            "quantize with the default range");
    if (rb_gptq_bits_check(s->bits, err))
        return rb_error_set(err, RB_EINVAL, "%d-bit weights: GPTQ checkpoints hold 2, 3, 4 or 8 bits", s->bits);
    if (in->dtype != RB_DT_F32 && in->dtype != RB_DT_F16 && in->dtype != RB_DT_BF16)
        return rb_error_set(err, RB_EINVAL, "dtype %s: expected F32, F16 or BF16", rb_dtype_name(in->dtype));
    m->scales_dtype = in->gptq_scales_dtype ? in->gptq_scales_dtype : RB_DT_F32;
    if (m->scales_dtype != RB_DT_F32 && m->scales_dtype != RB_DT_F16)
        return rb_error_set(err, RB_EINVAL, "scales dtype %s: expected F32 or F16", rb_dtype_name(m->scales_dtype));
    m->spec = s;
    m->group_size = s->gran == RB_QGRAN_GROUP ? s->group : -1;
    const int gptq = q->w_algo == RB_WALGO_GPTQ;
    m->desc_act = gptq && q->gptq.act_order;
    m->static_groups = gptq && q->gptq.static_groups;
    for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
        rb_gptq_dims d;
        lin_dims(&in->cfg, m, lin, &d);
        if (rb_gptq_dims_check(&d, rb_linear_name(lin), err)) {
            char msg[RB_ERROR_MSG_MAX];
            snprintf(msg, sizeof msg, "%s", err->msg);
            return rb_error_set(err, RB_EINVAL, "%s", msg);
        }
        /* a short last group is valid GPTQ (transformers/AutoGPTQ load it), but vLLM refuses it */
        if (m->group_size > 0 && d.in % m->group_size)
            rb_warn("export gptq: %s has %d inputs, not a multiple of group_size %d: vLLM will refuse the checkpoint",
                    rb_linear_name(lin), d.in, m->group_size);
    }
    /* A version-1 store has no integer grid: say so before anything is written. */
    if (!in->wq) return 0; /* checked again once the weights are quantized */
    rb_wparams p;
    int rc = rb_wstore_load_params(in->wq, 0, 0, &p, err);
    if (rc == RB_ENOTFOUND)
        return rb_error_set(err, RB_EINVAL,
                            "the weight store %s has no integer grid (written by an older rotbench): rerun the "
                            "weight quantization to export GPTQ",
                            rb_wstore_path(in->wq));
    if (!rc) rb_wparams_free(&p);
    return rc;
}

static const char *torch_dtype(int dt) { return dt == RB_DT_BF16 ? "bfloat16" : dt == RB_DT_F16 ? "float16" : "float32"; }

/* The quantization settings as transformers (quantization_config) and AutoGPTQ (quantize_config.json)
 * spell them; `autogptq` adds that file's own keys. */
static json_t *quant_json(const rb_export_in *in, const gptq_meta *m, int autogptq) {
    json_t *o = json_object();
    int bad = !o;
    if (!bad && !autogptq) bad = json_object_set_new(o, "quant_method", json_string("gptq"));
    bad = bad || json_object_set_new(o, "bits", json_integer(m->spec->bits)) ||
          json_object_set_new(o, "group_size", json_integer(m->group_size)) ||
          json_object_set_new(o, "desc_act", json_boolean(m->desc_act)) ||
          json_object_set_new(o, "sym", json_boolean(m->spec->sym)) ||
          json_object_set_new(o, "damp_percent", json_real(in->quant->gptq.percdamp)) ||
          json_object_set_new(o, "true_sequential", json_true()) ||
          json_object_set_new(o, "static_groups", json_boolean(m->static_groups));
    if (!bad && autogptq)
        bad = json_object_set_new(o, "model_file_base_name", json_string("model")) ||
              json_object_set_new(o, "quant_method", json_string("gptq"));
    bad = bad || json_object_set_new(o, "checkpoint_format", json_string(RB_GPTQ_FORMAT_V1));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int write_configs(const rb_export_in *in, const gptq_meta *m, const char *dir, rb_error *err) {
    rb_llama_config hc = in->cfg;
    hc.tied = 0;
    snprintf(hc.dtype, sizeof hc.dtype, "%s", rb_dtype_name(in->dtype));
    char *cp = rb_path_join(dir, "config.json"), *qp = rb_path_join(dir, "quantize_config.json");
    json_t *root = NULL, *qc = quant_json(in, m, 0), *ac = quant_json(in, m, 1);
    int rc = !cp || !qp || !qc || !ac ? rb_error_set(err, RB_ENOMEM, "gptq: out of memory") : 0;
    if (!rc) rc = rb_hf_config_write(cp, &hc, err);
    if (!rc) {
        json_error_t jerr;
        root = json_load_file(cp, 0, &jerr);
        if (!root) rc = rb_error_set(err, RB_EIO, "%s: cannot read back: %s", cp, jerr.text);
    }
    if (!rc && (json_object_set_new(root, "torch_dtype", json_string(torch_dtype(in->dtype))) ||
                json_object_set(root, "quantization_config", qc)))
        rc = rb_error_set(err, RB_ENOMEM, "gptq: out of memory");
    if (!rc) rc = rb_json_write_file(cp, root, err);
    if (!rc) rc = rb_json_write_file(qp, ac, err);
    json_decref(root);
    json_decref(qc);
    json_decref(ac);
    free(cp);
    free(qp);
    return rc;
}

int rb_export_gptq(const rb_export_in *in, const char *dir, rb_error *err) {
    RB_ASSERT(in && in->src && dir);
    gptq_meta meta = {0};
    int rc = check_request(in, &meta, 1, err);
    if (rc) return rc;
    const rb_llama_config *c = &in->cfg;
    const size_t per_layer = 2 + 4 * RB_LIN_COUNT, n = 3 + (size_t)c->n_layers * per_layer;
    enum { NAME = 96 };
    rb_st_write_tensor *w = calloc(n, sizeof *w);
    tensor_src *ts = calloc(n, sizeof *ts);
    char *names = calloc(n, NAME);
    layer_cache lc = {.meta = &meta, .layer = -1};
    rc = !w || !ts || !names ? rb_error_set(err, RB_ENOMEM, "gptq: out of memory") : 0;
    if (!rc) rc = rb_export_layer_cache_init(&lc.fp, in, err);
    static const char *const part_name[4] = {"qweight", "qzeros", "scales", "g_idx"};
    size_t k = 0;
    /* embedding, then each layer in HF's order, then the final norm and lm_head */
    for (int i = -1; i <= c->n_layers && !rc; i++) {
        if (i < 0 || i == c->n_layers) {
            for (int j = 0; j < (i < 0 ? 1 : 2); j++, k++) {
                const int part = i < 0 ? P_EMBED : j == 0 ? P_FINAL_NORM : P_LM_HEAD;
                ts[k] = (tensor_src){.lc = &lc, .layer = i, .part = part};
                w[k] = (rb_st_write_tensor){.name = part == P_EMBED        ? "model.embed_tokens.weight"
                                                    : part == P_FINAL_NORM ? "model.norm.weight"
                                                                           : "lm_head.weight",
                                            .dtype = in->dtype, .ndim = part == P_FINAL_NORM ? 1 : 2,
                                            .shape = {part == P_FINAL_NORM ? c->dim : c->vocab_size, c->dim},
                                            .fill = fill_float, .ctx = &ts[k]};
            }
            continue;
        }
        for (int s = 0; s < 2 + RB_LIN_COUNT; s++) {
            /* input_layernorm, q, k, v, o, post_attention_layernorm, gate, up, down */
            const int is_norm = s == 0 || s == 5, lin = s < 5 ? s - 1 : s - 2;
            if (is_norm) {
                char *nm = names + k * NAME;
                snprintf(nm, NAME, "model.layers.%d.%s.weight", i, s == 0 ? "input_layernorm" : "post_attention_layernorm");
                ts[k] = (tensor_src){.lc = &lc, .layer = i, .lin = s == 0 ? 0 : 1, .part = P_NORM};
                w[k] = (rb_st_write_tensor){.name = nm, .dtype = in->dtype, .ndim = 1, .shape = {c->dim},
                                            .fill = fill_float, .ctx = &ts[k]};
                k++;
                continue;
            }
            rb_gptq_dims d;
            lin_dims(c, &meta, lin, &d);
            for (int part = P_QWEIGHT; part <= P_GIDX; part++, k++) {
                char *nm = names + k * NAME;
                snprintf(nm, NAME, "model.layers.%d.%s.%s.%s", i, lin < RB_LIN_GATE ? "self_attn" : "mlp",
                         rb_linear_name(lin), part_name[part]);
                ts[k] = (tensor_src){.lc = &lc, .layer = i, .lin = lin, .part = part};
                rb_st_write_tensor *t = &w[k];
                *t = (rb_st_write_tensor){.name = nm, .ctx = &ts[k]};
                switch (part) {
                case P_QWEIGHT:
                    *t = (rb_st_write_tensor){.name = nm, .dtype = RB_DT_I32, .ndim = 2,
                                              .shape = {(int64_t)rb_gptq_qweight_rows(&d), d.out}, .fill_raw = fill_raw,
                                              .ctx = &ts[k]};
                    break;
                case P_QZEROS:
                    *t = (rb_st_write_tensor){.name = nm, .dtype = RB_DT_I32, .ndim = 2,
                                              .shape = {d.n_groups, (int64_t)rb_gptq_qzeros_cols(&d)},
                                              .fill_raw = fill_raw, .ctx = &ts[k]};
                    break;
                case P_SCALES:
                    *t = (rb_st_write_tensor){.name = nm, .dtype = meta.scales_dtype, .ndim = 2,
                                              .shape = {d.n_groups, d.out}, .fill = fill_float, .ctx = &ts[k]};
                    break;
                default:
                    *t = (rb_st_write_tensor){.name = nm, .dtype = RB_DT_I32, .ndim = 1, .shape = {d.in},
                                              .fill_raw = fill_raw, .ctx = &ts[k]};
                }
            }
        }
    }
    RB_ASSERT(rc || k == n);
    if (!rc) rc = rb_safetensors_write_dir(dir, w, n, in->max_shard_bytes, NULL, err);
    if (!rc) rc = write_configs(in, &meta, dir, err);
    cache_drop(&lc);
    rb_export_layer_cache_free(&lc.fp);
    free(w);
    free(ts);
    free(names);
    return rc;
}

int rb_export_gptq_check(const rb_export_in *in, rb_error *err) {
    gptq_meta meta = {0};
    return check_request(in, &meta, 0, err);
}

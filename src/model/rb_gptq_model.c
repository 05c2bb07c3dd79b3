/* GPTQ-packed Hugging Face checkpoints (AutoGPTQ / transformers-optimum / vLLM "gptq"; layout in
 * export/rb_gptq_pack.h and docs/export-gptq.md): the seven linears of each layer are stored as
 * qweight/qzeros/scales/g_idx and dequantized to fp32 on load; everything else is a plain HF tensor.
 *
 * The quantization settings come from config.json's quantization_config (what transformers reads)
 * or, failing that, quantize_config.json (AutoGPTQ's). Every packed tensor's dtype and exact shape is
 * checked against them at open time, and every g_idx entry against the group count, so loading a
 * layer cannot read outside a tensor. A linear stored with none of the packed tensors is left to the
 * plain `.weight` path (checkpoints that quantize only some modules). */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/rb_gptq_pack.h"
#include "rb_model_internal.h"

struct rb_gptq_tref {
    rb_gptq_view v;
};

typedef struct gptq_state {
    struct rb_gptq_tref *refs; /* [n_layers][RB_LIN_COUNT] */
} gptq_state;

static void state_free(void *p) {
    gptq_state *s = p;
    if (!s) return;
    free(s->refs);
    free(s);
}

typedef struct gptq_cfg {
    int bits, group_size, desc_act, zero_offset;
    char where[600]; /* "<file>: quantization_config" or "<file>": prefix of key messages */
} gptq_cfg;

/* Small JSON files only (config.json, quantize_config.json). */
#define CFG_MAX_BYTES ((size_t)16 << 20)

static int load_json(const char *path, json_t **out, rb_error *err) {
    char *text;
    size_t len;
    int rc = rb_read_file(path, CFG_MAX_BYTES, &text, &len, err);
    if (rc) return rc;
    json_error_t jerr;
    *out = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!*out || !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return rb_error_set(err, RB_EFORMAT, "%s: malformed JSON or not an object: %s (line %d)", path, jerr.text,
                            jerr.line);
    }
    return 0;
}

static int get_int(const gptq_cfg *q, json_t *o, const char *key, int *out, rb_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return rb_error_set(err, RB_ENOTFOUND, "%s: key '%s': missing (required)", q->where, key);
    if (!json_is_integer(v) || json_integer_value(v) < INT_MIN || json_integer_value(v) > INT_MAX)
        return rb_error_set(err, RB_EFORMAT, "%s: key '%s': expected an integer", q->where, key);
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_flag(const gptq_cfg *q, json_t *o, const char *key, int def, int *out, rb_error *err) {
    json_t *v = json_object_get(o, key);
    *out = def;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return rb_error_set(err, RB_EFORMAT, "%s: key '%s': expected true or false", q->where, key);
    *out = json_is_true(v);
    return 0;
}

/* Reads the settings loading needs from quantization object `o`; anything this reader would
 * misinterpret is refused rather than guessed. */
static int parse_cfg(json_t *o, gptq_cfg *q, rb_error *err) {
    json_t *meth = json_object_get(o, "quant_method");
    if (meth && !json_is_null(meth)) {
        if (!json_is_string(meth))
            return rb_error_set(err, RB_EFORMAT, "%s: key 'quant_method': expected a string", q->where);
        if (strcmp(json_string_value(meth), "gptq") != 0)
            return rb_error_set(err, RB_EUNSUPPORTED, "%s: quant_method '%s' is not supported (gptq is)", q->where,
                                json_string_value(meth));
    }
    int rc = get_int(q, o, "bits", &q->bits, err);
    if (!rc) rc = get_int(q, o, "group_size", &q->group_size, err);
    if (!rc) rc = get_flag(q, o, "desc_act", 0, &q->desc_act, err);
    if (rc) return rc;
    if (rb_gptq_bits_check(q->bits, err)) return rb_error_prefix(err, "%s: key 'bits'", q->where);
    if (q->group_size != -1 && q->group_size <= 0)
        return rb_error_set(err, RB_EFORMAT, "%s: key 'group_size': %d (expected -1 or a positive integer)", q->where,
                            q->group_size);
    json_t *fmt = json_object_get(o, "checkpoint_format");
    const char *f = RB_GPTQ_FORMAT_V1;
    if (fmt && !json_is_null(fmt)) {
        if (!json_is_string(fmt))
            return rb_error_set(err, RB_EFORMAT, "%s: key 'checkpoint_format': expected a string", q->where);
        f = json_string_value(fmt);
    }
    if (strcmp(f, RB_GPTQ_FORMAT_V1) == 0)
        q->zero_offset = 1;
    else if (strcmp(f, RB_GPTQ_FORMAT_V2) == 0)
        q->zero_offset = 0;
    else
        return rb_error_set(err, RB_EUNSUPPORTED, "%s: checkpoint_format '%s' is not supported (gptq, gptq_v2 are)",
                            q->where, f);
    int flag;
    if ((rc = get_flag(q, o, "is_marlin_format", 0, &flag, err))) return rc;
    if (flag) return rb_error_set(err, RB_EUNSUPPORTED, "%s: Marlin-format GPTQ weights are not supported", q->where);
    if ((rc = get_flag(q, o, "lm_head", 0, &flag, err))) return rc;
    if (flag) return rb_error_set(err, RB_EUNSUPPORTED, "%s: a quantized lm_head is not supported", q->where);
    json_t *dyn = json_object_get(o, "dynamic");
    if (dyn && !json_is_null(dyn) && !(json_is_object(dyn) && json_object_size(dyn) == 0))
        return rb_error_set(err, RB_EUNSUPPORTED, "%s: per-module overrides ('dynamic') are not supported", q->where);
    return 0;
}

/* Any tensor named "*.qweight" stored? */
static int has_qweight(const rb_model *m) {
    for (int s = 0; s < m->n_shards; s++)
        for (size_t i = 0; i < m->shards[s].n; i++) {
            const char *n = m->shards[s].tensors[i].name;
            size_t l = strlen(n);
            if (l >= 8 && strcmp(n + l - 8, ".qweight") == 0) return 1;
        }
    return 0;
}

/* The GPTQ settings of m->dir into *q; *found = 0 for a plain checkpoint. */
static int read_cfg(const rb_model *m, gptq_cfg *q, int *found, rb_error *err) {
    *found = 0;
    char *cfg = rb_path_join(m->dir, "config.json"), *qc = rb_path_join(m->dir, "quantize_config.json");
    json_t *root = NULL, *o = NULL;
    int rc = 0;
    if (!cfg || !qc) {
        rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", m->dir);
        goto done;
    }
    if ((rc = load_json(cfg, &root, err))) goto done;
    o = json_object_get(root, "quantization_config");
    if (o && !json_is_null(o)) {
        snprintf(q->where, sizeof q->where, "%s: quantization_config", cfg);
        if (!json_is_object(o)) {
            rc = rb_error_set(err, RB_EFORMAT, "%s: expected an object", q->where);
            goto done;
        }
    } else if (rb_path_exists(qc) && has_qweight(m)) {
        /* transformers ignores quantize_config.json: a plain checkpoint that kept one (say, after
         * dequantizing) stays plain; AutoGPTQ-only checkpoints have packed tensors */
        json_decref(root);
        root = NULL;
        if ((rc = load_json(qc, &root, err))) goto done;
        o = root;
        snprintf(q->where, sizeof q->where, "%s", qc);
    } else {
        goto done;
    }
    *found = 1;
    rc = parse_cfg(o, q, err);
done:
    json_decref(root);
    free(cfg);
    free(qc);
    return rc;
}

static const rb_st_tensor *find_any(const rb_model *m, const char *name, const char **file) {
    for (int s = 0; s < m->n_shards; s++) {
        const rb_st_tensor *t = rb_st_find(&m->shards[s], name);
        if (t) {
            *file = m->shards[s].map.path;
            return t;
        }
    }
    return NULL;
}

/* Checks one packed tensor's dtype (I32, or a float dtype when is_scale) and 2-D/1-D shape. */
static int check_tensor(const rb_st_tensor *t, const char *file, const gptq_cfg *q, int is_scale, int ndim,
                        int64_t d0, int64_t d1, rb_error *err) {
    if (is_scale ? !rb_dtype_is_float(t->dtype) : t->dtype != RB_DT_I32)
        return rb_error_set(err, RB_EFORMAT, "%s: tensor %s: dtype %s (GPTQ stores it as %s)", file, t->name,
                            rb_dtype_name(t->dtype), is_scale ? "F16, F32 or BF16" : "I32");
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        char got[96] = "", want[64];
        for (int i = 0; i < t->ndim && i < 4; i++) {
            size_t l = strlen(got);
            snprintf(got + l, sizeof got - l, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        }
        if (ndim == 1)
            snprintf(want, sizeof want, "[%lld]", (long long)d0);
        else
            snprintf(want, sizeof want, "[%lld, %lld]", (long long)d0, (long long)d1);
        return rb_error_set(err, RB_EFORMAT, "%s: tensor %s: shape [%s] but the model's widths with bits %d, group_size "
                            "%d (%s) imply %s",
                            file, t->name, got, q->bits, q->group_size, q->where, want);
    }
    return 0;
}

/* Finds and validates the packed tensors of the linear whose weight is `wname` ("....weight") with
 * shape [out][in]. *present = 0 (and nothing else) when none of them is stored. */
static int attach_linear(const rb_model *m, const gptq_cfg *q, const char *wname, int out, int in,
                         struct rb_gptq_tref *ref, int *present, const char **qw_name, const char **qw_file,
                         rb_error *err) {
    static const char *const part[4] = {"qweight", "qzeros", "scales", "g_idx"};
    const rb_st_tensor *t[4];
    const char *file[4] = {0};
    char name[4][160];
    size_t base = strlen(wname) - strlen("weight");
    int n_found = 0;
    for (int i = 0; i < 4; i++) {
        snprintf(name[i], sizeof name[i], "%.*s%s", (int)base, wname, part[i]);
        t[i] = find_any(m, name[i], &file[i]);
        n_found += t[i] != NULL;
    }
    *present = n_found > 0;
    if (!n_found) return 0;
    const char *any = file[0] ? file[0] : file[1] ? file[1] : file[2] ? file[2] : file[3];
    for (int i = 0; i < 3; i++)
        if (!t[i])
            return rb_error_set(err, RB_ENOTFOUND, "%s: tensor %s: missing (the linear's other GPTQ tensors are stored)",
                                any, name[i]);
    if (!t[3] && q->desc_act)
        return rb_error_set(err, RB_ENOTFOUND, "%s: tensor %s: missing (required with desc_act)", any, name[3]);
    rb_gptq_dims d = {.bits = q->bits, .in = in, .out = out, .n_groups = rb_gptq_n_groups(in, q->group_size)};
    char what[700];
    snprintf(what, sizeof what, "%s: tensor %s", file[0], name[0]);
    int rc = rb_gptq_dims_check(&d, what, err);
    if (rc) return rc == RB_EUNSUPPORTED ? RB_EFORMAT : rc; /* config.json and quantization_config disagree */
    if ((rc = check_tensor(t[0], file[0], q, 0, 2, (int64_t)rb_gptq_qweight_rows(&d), out, err)) ||
        (rc = check_tensor(t[1], file[1], q, 0, 2, d.n_groups, (int64_t)rb_gptq_qzeros_cols(&d), err)) ||
        (rc = check_tensor(t[2], file[2], q, 1, 2, d.n_groups, out, err)) ||
        (t[3] && (rc = check_tensor(t[3], file[3], q, 0, 1, in, 0, err))))
        return rc;
    ref->v = (rb_gptq_view){.d = d, .qweight = t[0]->data, .qzeros = t[1]->data, .scales = t[2]->data,
                            .scales_dtype = t[2]->dtype, .g_idx = t[3] ? t[3]->data : NULL,
                            .group_size = q->group_size, .zero_offset = q->zero_offset};
    if (t[3]) {
        snprintf(what, sizeof what, "%s: tensor %s", file[3], name[3]);
        if ((rc = rb_gptq_check_gidx(&ref->v, what, err))) return rc;
        /* Without desc_act, engines (exllama, Marlin, vLLM) ignore g_idx and use c / group_size: a
         * checkpoint whose g_idx says otherwise means different weights to different engines. */
        const uint8_t *g = t[3]->data;
        for (int c = 0; !q->desc_act && c < in; c++) {
            int32_t v = (int32_t)((uint32_t)g[4 * c] | (uint32_t)g[4 * c + 1] << 8 | (uint32_t)g[4 * c + 2] << 16 |
                                  (uint32_t)g[4 * c + 3] << 24);
            int want = q->group_size == -1 ? 0 : c / q->group_size;
            if (v != want)
                return rb_error_set(err, RB_EFORMAT,
                                    "%s: g_idx[%d] = %d but desc_act is false, where engines use c / group_size = %d",
                                    what, c, v, want);
        }
    }
    *qw_name = t[0]->name;
    *qw_file = file[0];
    return 0;
}

/* Linear slot of m->layers for RB_LIN_* lin. */
static int lin_slot(int lin) {
    static const int slot[RB_LIN_COUNT] = {RB_W_Q, RB_W_K, RB_W_V, RB_W_O, RB_W_GATE, RB_W_UP, RB_W_DOWN};
    return slot[lin];
}

int rb_gptq_attach(rb_model *m, rb_error *err) {
    gptq_cfg q = {0};
    int found, rc = read_cfg(m, &q, &found, err);
    if (rc || !found) return rc;
    const rb_llama_config *c = &m->cfg;
    /* As rb_hf_model.c: a config claiming more layers than there are tensors fails on the first missing
     * tensor instead of allocating n_layers slots. */
    size_t stored = 0;
    for (int s = 0; s < m->n_shards; s++) stored += m->shards[s].n;
    const int alloc = (size_t)c->n_layers * RB_W_COUNT <= stored;
    gptq_state *st = NULL;
    if (alloc) {
        st = calloc(1, sizeof *st);
        if (st) st->refs = calloc((size_t)c->n_layers * RB_LIN_COUNT, sizeof *st->refs);
        if (!m->layers) m->layers = calloc((size_t)c->n_layers * RB_W_COUNT, sizeof *m->layers);
        if (!st || !st->refs || !m->layers) {
            state_free(st);
            return rb_error_set(err, RB_ENOMEM, "%s: out of memory", m->path);
        }
        m->ext = st;
        m->ext_free = state_free;
    }
    int n_packed = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
            const int s = lin_slot(lin);
            char wname[128];
            snprintf(wname, sizeof wname, rb_hf_slot_names[s], l);
            int nd;
            size_t sh[2];
            rb_model_slot_shape(c, s, &nd, sh);
            struct rb_gptq_tref tmp, *ref = st ? &st->refs[(size_t)l * RB_LIN_COUNT + lin] : &tmp;
            int present;
            const char *qn = NULL, *qf = NULL;
            if ((rc = attach_linear(m, &q, wname, (int)sh[0], (int)sh[1], ref, &present, &qn, &qf, err))) return rc;
            if (!present) {
                if (!alloc) return 0; /* the plain path reports the first missing tensor */
                continue;
            }
            n_packed++;
            if (st)
                m->layers[(size_t)l * RB_W_COUNT + s] =
                    (rb_tref){.gq = ref, .dtype = RB_DT_F32, .rows = sh[0], .cols = sh[1], .name = qn, .file = qf};
        }
    RB_ASSERT(alloc); /* every layer had its tensors, so there were that many */
    if (!n_packed)
        return rb_error_set(err, RB_ENOTFOUND,
                            "%s: quantization method gptq, but no GPTQ tensor (model.layers.0.self_attn.q_proj.qweight, "
                            "...) is stored",
                            q.where);
    return 0;
}

int rb_gptq_tref_load(const rb_tref *t, float *dst, rb_error *err) {
    RB_ASSERT(t && t->gq && dst);
    char what[700];
    snprintf(what, sizeof what, "%s: tensor %s", t->file, t->name);
    return rb_gptq_dequant(&t->gq->v, dst, what, err);
}

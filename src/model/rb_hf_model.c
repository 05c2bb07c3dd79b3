/* Hugging Face checkpoint directories: config.json + model.safetensors or a sharded
 * model.safetensors.index.json. Everything is validated here, at open time. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rb_hf_config.h"
#include "rb_model_internal.h"

const char *const rb_hf_slot_names[RB_W_COUNT] = {
    [RB_W_ATTN_NORM] = "model.layers.%d.input_layernorm.weight",
    [RB_W_Q] = "model.layers.%d.self_attn.q_proj.weight",
    [RB_W_K] = "model.layers.%d.self_attn.k_proj.weight",
    [RB_W_V] = "model.layers.%d.self_attn.v_proj.weight",
    [RB_W_O] = "model.layers.%d.self_attn.o_proj.weight",
    [RB_W_FFN_NORM] = "model.layers.%d.post_attention_layernorm.weight",
    [RB_W_GATE] = "model.layers.%d.mlp.gate_proj.weight",
    [RB_W_UP] = "model.layers.%d.mlp.up_proj.weight",
    [RB_W_DOWN] = "model.layers.%d.mlp.down_proj.weight",
};

/* Index files list one line per tensor; even 100k tensors stay far below this. */
#define RB_INDEX_MAX_BYTES ((size_t)100 << 20)

typedef struct wm_entry {
    char *name;
    int shard;
} wm_entry;

/* The tensor → shard map of a sharded checkpoint, only alive during rb_hf_open. */
typedef struct weight_map {
    char *index_path; /* NULL when the checkpoint is a single model.safetensors */
    wm_entry *e;
    size_t n;
} weight_map;

static void weight_map_free(weight_map *w) {
    for (size_t i = 0; i < w->n; i++) free(w->e[i].name);
    free(w->e);
    free(w->index_path);
    memset(w, 0, sizeof *w);
}

static int cmp_wm(const void *a, const void *b) {
    return strcmp(((const wm_entry *)a)->name, ((const wm_entry *)b)->name);
}

/* Opens the shards named by the index and fills `w` (sorted by tensor name). */
static int open_sharded(rb_model *m, weight_map *w, rb_error *err) {
    const char *ip = w->index_path;
    char *text;
    size_t len;
    int rc = rb_read_file(ip, RB_INDEX_MAX_BYTES, &text, &len, err);
    if (rc) return rc;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root)
        return rb_error_set(err, RB_EFORMAT, "%s: malformed JSON: %s (line %d, column %d)", ip, jerr.text, jerr.line,
                            jerr.column);
    json_t *map = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    char **shard_names = NULL;
    if (!json_is_object(map)) {
        rc = rb_error_set(err, RB_EFORMAT, "%s: key 'weight_map': missing or not an object", ip);
        goto done;
    }
    size_t n = json_object_size(map);
    w->e = calloc(n ? n : 1, sizeof *w->e);
    shard_names = calloc(n ? n : 1, sizeof *shard_names);
    if (!w->e || !shard_names) {
        rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", ip);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(map, key, val) {
        const char *f = json_is_string(val) ? json_string_value(val) : NULL;
        /* Shards live next to the index; a path would let an index reach anywhere. */
        if (!f || !*f || strchr(f, '/') || strcmp(f, ".") == 0 || strcmp(f, "..") == 0) {
            rc = rb_error_set(err, RB_EFORMAT, "%s: tensor %s: weight_map value is not a plain file name", ip, key);
            goto done;
        }
        int s = 0;
        while (s < m->n_shards && strcmp(shard_names[s], f) != 0) s++;
        if (s == m->n_shards) shard_names[m->n_shards++] = (char *)f;
        w->e[w->n].shard = s;
        w->e[w->n].name = rb_strdup(key);
        if (!w->e[w->n++].name) {
            rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", ip);
            goto done;
        }
    }
    m->shards = calloc(m->n_shards ? (size_t)m->n_shards : 1, sizeof *m->shards);
    if (!m->shards) {
        m->n_shards = 0;
        rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", ip);
        goto done;
    }
    for (int s = 0; s < m->n_shards; s++) {
        char *sp = rb_path_join(m->dir, shard_names[s]);
        rc = sp ? rb_st_open(&m->shards[s], sp, err) : rb_error_set(err, RB_ENOMEM, "%s: out of memory", ip);
        free(sp);
        if (rc == RB_ENOTFOUND) {
            const char *first = "?";
            for (size_t i = 0; i < w->n; i++)
                if (w->e[i].shard == s) {
                    first = w->e[i].name;
                    break;
                }
            rb_error_prefix(err, "%s: tensor %s: weight_map shard", ip, first);
        }
        if (rc) goto done;
    }
    qsort(w->e, w->n, sizeof *w->e, cmp_wm);
    for (size_t i = 0; i < w->n; i++)
        if (!rb_st_find(&m->shards[w->e[i].shard], w->e[i].name)) {
            rc = rb_error_set(err, RB_ENOTFOUND, "%s: tensor %s: weight_map says %s, which does not contain it", ip,
                              w->e[i].name, m->shards[w->e[i].shard].map.path);
            goto done;
        }
done:
    free(shard_names); /* the strings belong to root */
    json_decref(root);
    return rc;
}

/* Finds `name`; *file is the path to name in messages (the index or the single file). */
static const rb_st_tensor *lookup(const rb_model *m, const weight_map *w, const char *name, const char **file) {
    if (!w->index_path) {
        *file = m->shards[0].map.path;
        return rb_st_find(&m->shards[0], name);
    }
    *file = w->index_path;
    wm_entry key = {(char *)name, 0};
    const wm_entry *e = bsearch(&key, w->e, w->n, sizeof *w->e, cmp_wm);
    if (!e) return NULL;
    *file = m->shards[e->shard].map.path;
    return rb_st_find(&m->shards[e->shard], name);
}

/* Validates tensor `name` against the expected shape and points `out` at it. */
static int resolve(const rb_model *m, const weight_map *w, const char *name, int ndim, size_t d0, size_t d1,
                   rb_tref *out, rb_error *err) {
    const char *file;
    const rb_st_tensor *t = lookup(m, w, name, &file);
    if (!t) return rb_error_set(err, RB_ENOTFOUND, "%s: tensor %s: missing", file, name);
    if (!rb_dtype_is_float(t->dtype))
        return rb_error_set(err, RB_EUNSUPPORTED, "%s: tensor %s: dtype %s is not supported (F32, F16 and BF16 are)",
                            file, name, rb_dtype_name(t->dtype));
    int ok = t->ndim == ndim && (uint64_t)t->shape[0] == d0 && (ndim == 1 || (uint64_t)t->shape[1] == d1);
    if (!ok) {
        char got[160] = "[", want[64];
        for (int i = 0; i < t->ndim; i++) {
            size_t l = strlen(got);
            snprintf(got + l, sizeof got - l, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        }
        strncat(got, "]", sizeof got - strlen(got) - 1);
        if (ndim == 1)
            snprintf(want, sizeof want, "[%zu]", d0);
        else
            snprintf(want, sizeof want, "[%zu, %zu]", d0, d1);
        return rb_error_set(err, RB_EFORMAT, "%s: tensor %s: shape %s but config.json implies %s", file, name, got,
                            want);
    }
    memset(out, 0, sizeof *out);
    out->data = t->data;
    out->dtype = t->dtype;
    out->rows = d0;
    out->cols = ndim == 1 ? 1 : d1;
    out->name = t->name;
    out->file = file;
    return 0;
}

/* Points every tensor the model needs at the shards, checking presence, dtype and shape. */
static int resolve_all(rb_model *m, const weight_map *w, rb_error *err) {
    const rb_llama_config *c = &m->cfg;
    uint64_t per_dtype[RB_DT_COUNT] = {0}, total_packed = 0;
    int rc = resolve(m, w, "model.embed_tokens.weight", 2, (size_t)c->vocab_size, (size_t)c->dim, &m->embed, err);
    if (!rc) rc = resolve(m, w, "model.norm.weight", 1, (size_t)c->dim, 0, &m->final_norm, err);
    if (rc) return rc;
    per_dtype[m->embed.dtype] += m->embed.rows * m->embed.cols;
    per_dtype[m->final_norm.dtype] += m->final_norm.rows;
    if (c->tied) {
        /* transformers ties lm_head to embed_tokens after loading, so a stored lm_head.weight in a
         * tied checkpoint is ignored there too; do the same. */
        m->lm_head = m->embed;
    } else {
        rc = resolve(m, w, "lm_head.weight", 2, (size_t)c->vocab_size, (size_t)c->dim, &m->lm_head, err);
        if (rc == RB_ENOTFOUND && err)
            strncat(err->msg, " (tie_word_embeddings is false)", sizeof err->msg - strlen(err->msg) - 1);
        if (rc) return rc;
        per_dtype[m->lm_head.dtype] += m->lm_head.rows * m->lm_head.cols;
    }
    /* A config claiming more layers than there are tensors must fail as "missing tensor", not as
     * an allocation of n_layers slots: then the loop below runs without storing and hits it. */
    size_t stored = 0;
    for (int s = 0; s < m->n_shards; s++) stored += m->shards[s].n;
    if (!m->layers && (size_t)c->n_layers * RB_W_COUNT <= stored) { /* rb_gptq_attach may have made them */
        m->layers = calloc((size_t)c->n_layers * RB_W_COUNT, sizeof *m->layers);
        if (!m->layers) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", m->path);
    }
    for (int l = 0; l < c->n_layers; l++)
        for (int s = 0; s < RB_W_COUNT; s++) {
            const rb_tref *gq = m->layers ? &m->layers[(size_t)l * RB_W_COUNT + s] : NULL;
            if (gq && gq->gq) { /* a GPTQ-packed linear: counted as its dequantized parameters */
                total_packed += gq->rows * gq->cols;
                continue;
            }
            char name[128];
            snprintf(name, sizeof name, rb_hf_slot_names[s], l);
            int nd;
            size_t sh[2];
            rb_model_slot_shape(c, s, &nd, sh);
            rb_tref t;
            if ((rc = resolve(m, w, name, nd, sh[0], sh[1], &t, err))) return rc;
            if (m->layers) m->layers[(size_t)l * RB_W_COUNT + s] = t;
            per_dtype[t.dtype] += t.rows * t.cols;
        }
    RB_ASSERT(m->layers); /* every name resolved, so there were that many tensors */
    /* The storage dtype reported is the one holding most parameters (norms are often F32 in an
     * otherwise BF16 checkpoint). */
    int best = RB_DT_F32;
    uint64_t total = total_packed;
    for (int d = 1; d < RB_DT_COUNT; d++) {
        total += per_dtype[d];
        if (per_dtype[d] > per_dtype[best]) best = d;
    }
    snprintf(m->cfg.dtype, sizeof m->cfg.dtype, "%s", rb_dtype_name(best));
    m->n_params = total;
    return 0;
}

int rb_hf_open(rb_model *m, rb_error *err) {
    weight_map w = {0};
    char *cfg = rb_path_join(m->dir, "config.json");
    char *single = rb_path_join(m->dir, "model.safetensors");
    char *index = rb_path_join(m->dir, "model.safetensors.index.json");
    int rc = 0;
    if (!cfg || !single || !index) {
        rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", m->dir);
        goto done;
    }
    if (!rb_path_exists(cfg)) {
        rc = rb_error_set(err, RB_ENOTFOUND, "%s: no config.json (not a Hugging Face checkpoint directory)", m->dir);
        goto done;
    }
    if ((rc = rb_hf_config_load(cfg, &m->cfg, err))) goto done;
    /* transformers also prefers the single file when both exist. */
    if (rb_path_exists(single)) {
        m->shards = calloc(1, sizeof *m->shards);
        if (!m->shards) {
            rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", m->dir);
            goto done;
        }
        if ((rc = rb_st_open(&m->shards[0], single, err))) goto done;
        m->n_shards = 1;
    } else if (rb_path_exists(index)) {
        w.index_path = index;
        index = NULL;
        if ((rc = open_sharded(m, &w, err))) goto done;
    } else {
        char *pt = rb_path_join(m->dir, "pytorch_model.bin"),
             *pti = rb_path_join(m->dir, "pytorch_model.bin.index.json");
        int has_pt = (pt && rb_path_exists(pt)) || (pti && rb_path_exists(pti));
        free(pt);
        free(pti);
        rc = has_pt ? rb_error_set(err, RB_EUNSUPPORTED,
                                   "%s: only PyTorch pickle weights (pytorch_model.bin); convert "
                                   "them to safetensors",
                                   m->dir)
                    : rb_error_set(err, RB_ENOTFOUND, "%s: neither model.safetensors nor model.safetensors.index.json",
                                   m->dir);
        goto done;
    }
    /* GPTQ-packed linears (config.json quantization_config): their slots are filled here and skipped by
     * resolve_all; a plain checkpoint is left untouched. */
    if ((rc = rb_gptq_attach(m, err))) goto done;
    if ((rc = resolve_all(m, &w, err))) goto done;
    for (int s = 0; s < m->n_shards; s++) {
        const rb_st_file *f = &m->shards[s];
        for (size_t i = 0; i < f->n; i++) {
            const rb_st_tensor *t = &f->tensors[i];
            /* rb_tensor_desc holds 4 dims; a deeper tensor (never a Llama weight) lists its first 4. */
            rc = rb_model_list_add(m, t->name, rb_dtype_name(t->dtype), t->ndim < 4 ? t->ndim : 4, t->shape,
                                   t->end - t->begin, f->map.path, err);
            if (rc) goto done;
        }
    }
done:
    /* Names in messages may point into w; they are already formatted into err. */
    weight_map_free(&w);
    free(cfg);
    free(single);
    free(index);
    return rc;
}

/* rb_export: the export driver (contract in rb_export.h; docs/export.md). */
#include "export/rb_export.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "model/rb_safetensors.h"

/* Embedding rows converted per call of src->embed: bounds the id buffer, not the output. */
#define EMBED_CHUNK 4096

static const char *const format_names[] = {NULL, "hf", "gptq", "gguf"};

const char *rb_export_format_name(int fmt) { return fmt >= RB_EXPORT_HF && fmt <= RB_EXPORT_GGUF ? format_names[fmt] : "?"; }

int rb_export_format_parse(const char *name, int *fmt, rb_error *err) {
    for (int f = RB_EXPORT_HF; f <= RB_EXPORT_GGUF; f++)
        if (name && strcmp(name, format_names[f]) == 0) {
            *fmt = f;
            return 0;
        }
    return rb_error_set(err, RB_EINVAL, "export format '%s': expected one of hf, gptq, gguf", name ? name : "");
}

int rb_export_load_layer(const rb_export_in *in, int l, rb_layer_weights *w, rb_error *err) {
    int rc = in->src->load_layer(in->src->ctx, l, w, err);
    if (!rc && in->wq) rc = rb_wstore_load_layer(in->wq, l, w, err);
    return rc;
}

int rb_export_layer_cache_init(rb_export_layer_cache *lc, const rb_export_in *in, rb_error *err) {
    lc->in = in;
    lc->layer = -1;
    return rb_layer_weights_init(&lc->w, &in->cfg, err);
}

int rb_export_layer_cache_get(rb_export_layer_cache *lc, int l, rb_error *err) {
    if (lc->layer == l) return 0;
    lc->layer = -1; /* a half-loaded w is no layer */
    int rc = rb_export_load_layer(lc->in, l, &lc->w, err);
    if (!rc) lc->layer = l;
    return rc;
}

void rb_export_layer_cache_free(rb_export_layer_cache *lc) {
    rb_layer_weights_free(&lc->w);
    lc->layer = -1;
}

int rb_export_load_embedding(const rb_export_in *in, float *out, rb_error *err) {
    const int V = in->cfg.vocab_size;
    int32_t ids[EMBED_CHUNK];
    for (int v0 = 0; v0 < V; v0 += EMBED_CHUNK) {
        int n = V - v0 < EMBED_CHUNK ? V - v0 : EMBED_CHUNK;
        for (int i = 0; i < n; i++) ids[i] = v0 + i;
        int rc = in->src->embed(in->src->ctx, ids, (size_t)n, out + (size_t)v0 * in->cfg.dim, err);
        if (rc) return rc;
    }
    return 0;
}

/* ---- online operations -------------------------------------------------------------------- */

static int add_op(json_t *ops, const char *name, const char *site, const char *layers, const char *definition,
                  int exact_without) {
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:b}", "name", name, "site", site, "layers", layers, "definition",
                          definition, "exact_without_in_fp", exact_without);
    return !o || json_array_append_new(ops, o);
}

static void spec_text(const rb_qspec *q, char *buf, size_t cap) { rb_qspec_format(q, buf, cap); }

int rb_export_online_ops(const rb_export_in *in, const rb_rotset *rs, json_t **out, rb_error *err) {
    json_t *ops = json_array();
    int bad = !ops;
    char def[512];
    if (rs && rs->r3) {
        snprintf(def, sizeof def,
                 "x <- x·H/sqrt(%d) per head on Q and K after RoPE, H the Hadamard of order head_dim %d "
                 "(src/rotate/rb_hadamard.h); cancels in Q·K^T, so only a quantized KV cache sees it",
                 in->cfg.head_dim, in->cfg.head_dim);
        bad = bad || add_op(ops, "R3", "self_attn: query and key after RoPE", "all", def, 1);
    }
    if (rs && rs->r4) {
        snprintf(def, sizeof def,
                 "x <- x·R4 on the down_proj input, R4 the normalized Hadamard of order intermediate_size %d "
                 "(H_m ⊗ H_2^k / sqrt(n), src/rotate/rb_hadamard.h); down_proj.weight already holds W·R4, so the "
                 "model is wrong without it",
                 in->cfg.hidden_dim);
        bad = bad || add_op(ops, "R4", "mlp.down_proj input", "all", def, 0);
    }
    if (rs && rs->cross_head) {
        snprintf(def, sizeof def,
                 "x <- x·(H_%d ⊗ I_%d)/sqrt(%d) on the o_proj input (QuaRot's cross-head Hadamard); o_proj.weight "
                 "holds its inverse fused",
                 in->cfg.n_heads, in->cfg.head_dim, in->cfg.n_heads);
        bad = bad || add_op(ops, "cross_head", "self_attn.o_proj input", "all", def, 0);
    }
    if (rs && rs->ruq)
        bad = bad || add_op(ops, "ruquant", "q/k/v, o_proj, gate/up and down_proj inputs", "all",
                            "x <- (x/s)·A per layer and site, s and A in rotation.h5 /ruquant/<layer>/<site>; the "
                            "weights reading the site hold W·diag(s)·A",
                            0);
    if (rs && rs->ra)
        bad = bad || add_op(ops, "respinquant_junctions", "residual stream before the o_proj and down_proj adds", "all",
                            rs->jn ? "h <- h·T^ (low rank) per layer, from rotation.h5 /junctions"
                                   : "h <- h·T with T = ra[l]^T·rm[l] (attention) and rm[l]^T·ra[l+1] (MLP), from "
                                     "rotation.h5 /ra and /rm",
                            0);
    const rb_quant_cfg *q = in->quant;
    if (q) {
        char sp[128];
        if (q->a.bits < RB_QBITS_OFF) {
            spec_text(&q->a, sp, sizeof sp);
            snprintf(def, sizeof def, "fake quantization of every linear input: %s (o_proj input per %s)", sp,
                     q->o_proj == RB_OPROJ_ROW ? "token" : "(token, head)");
            bad = bad || add_op(ops, "act_quant", "linear inputs", "all", def, 0);
        }
        const struct {
            const char *name, *site;
            const rb_qspec *s;
        } kv[] = {{"q_quant", "query after RoPE", &q->q}, {"k_quant", "key cache", &q->k}, {"v_quant", "value cache", &q->v}};
        for (int i = 0; i < 3; i++)
            if (kv[i].s->bits < RB_QBITS_OFF) {
                spec_text(kv[i].s, sp, sizeof sp);
                snprintf(def, sizeof def, "fake quantization: %s", sp);
                bad = bad || add_op(ops, kv[i].name, kv[i].site, "all", def, 0);
            }
    }
    if (bad) {
        json_decref(ops);
        return rb_error_set(err, RB_ENOMEM, "export: out of memory");
    }
    *out = ops;
    return 0;
}

/* ---- files -------------------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) != 0 && errno != ENOENT;
}

/* Removes a directory tree (no error when absent). */
static int remove_tree(const char *path, rb_error *err) {
    if (!rb_path_exists(path)) return 0;
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return rb_error_set(err, RB_EIO, "%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

/* Copies file `from` to dir/name (temp + rename via rb_write_file). Files are small (tokenizers). */
static int copy_file(const char *from, const char *dir, const char *name, rb_error *err) {
    char *data = NULL;
    size_t n = 0;
    int rc = rb_read_file(from, (size_t)1 << 30, &data, &n, err);
    if (rc) return rc;
    char *to = rb_path_join(dir, name);
    rc = to ? rb_write_file(to, data, n, err) : rb_error_set(err, RB_ENOMEM, "export: out of memory");
    free(to);
    free(data);
    return rc;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* The source checkpoint's tokenizer files (HF names), and the run's tokenizer file when it is one of
 * them from elsewhere (a llama2.c tokenizer .bin is copied as is: rotbench reads it, HF does not). */
static int copy_tokenizer(const rb_export_in *in, const char *dir, json_t *copied, rb_error *err) {
    static const char *const names[] = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                        "special_tokens_map.json", "generation_config.json"};
    int rc = 0;
    for (size_t i = 0; i < sizeof names / sizeof *names && !rc && in->model_dir; i++) {
        char *p = rb_path_join(in->model_dir, names[i]);
        if (!p) return rb_error_set(err, RB_ENOMEM, "export: out of memory");
        if (rb_path_exists(p) && !(rc = copy_file(p, dir, names[i], err)))
            json_array_append_new(copied, json_string(names[i]));
        free(p);
    }
    if (!rc && in->tokenizer_path && !rb_path_is_dir(in->tokenizer_path)) {
        const char *b = base_name(in->tokenizer_path);
        char *there = rb_path_join(dir, b);
        if (!there) return rb_error_set(err, RB_ENOMEM, "export: out of memory");
        if (!rb_path_exists(there) && !(rc = copy_file(in->tokenizer_path, dir, b, err)))
            json_array_append_new(copied, json_string(b));
        free(there);
    }
    return rc;
}

static int write_json_in(const char *dir, const char *name, json_t *j, rb_error *err) {
    char *p = rb_path_join(dir, name);
    int rc = p ? rb_json_write_file(p, j, err) : rb_error_set(err, RB_ENOMEM, "export: out of memory");
    free(p);
    return rc;
}

static json_t *manifest(const rb_export_in *in, const rb_export_req *req, json_t *ops, json_t *copied) {
    char wspec[128] = "none";
    if (in->wq && in->quant) rb_qspec_format(&in->quant->w, wspec, sizeof wspec);
    json_t *m = json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:O, s:O}", "format", "rotbench-export",
                          "version", 1, "export_format", rb_export_format_name(req->format), "rotbench_version",
                          RB_VERSION, "blas_core", rb_blas_corename(), "model", in->name ? in->name : "",
                          "dtype", rb_dtype_name(in->dtype), "weight_quantization", wspec, "online_ops_dropped",
                          json_array_size(ops) > 0, "online_ops", ops, "copied_files", copied);
    if (!m) return NULL;
    if (req->rs) json_object_set_new(m, "rotation", json_string(req->rs->method));
    if (req->provenance) {
        json_error_t je;
        json_t *p = json_loads(req->provenance, 0, &je);
        json_object_set_new(m, "provenance", p ? p : json_string(req->provenance));
    }
    return m;
}

/* Makes the partial directory durable and puts it in place of out (replacing an old one when forced). */
static int publish(const char *tmp, const char *out, int force, rb_error *err) {
    int fd = open(tmp, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    char *old = NULL;
    int rc = 0;
    if (force && rb_path_exists(out)) {
        size_t n = strlen(out) + 32;
        if (!(old = malloc(n))) return rb_error_set(err, RB_ENOMEM, "export: out of memory");
        snprintf(old, n, "%s.old%d", out, (int)getpid());
        if (rename(out, old) != 0) {
            rc = rb_error_set(err, RB_EIO, "%s: cannot move the old export aside: %s", out, strerror(errno));
            free(old);
            return rc;
        }
    }
    if (rename(tmp, out) != 0) {
        rc = rb_error_set(err, RB_EIO, "%s: cannot complete the export as %s: %s", tmp, out, strerror(errno));
        if (old) rename(old, out); /* put the old one back */
    } else if (old) {
        rb_error e2 = {0};
        if (remove_tree(old, &e2)) rb_warn("export: %s", e2.msg);
    }
    free(old);
    return rc;
}

/* The names of the online operations, comma-separated, into buf. */
static void op_names(json_t *ops, char *buf, size_t cap) {
    size_t i;
    json_t *o;
    buf[0] = '\0';
    json_array_foreach(ops, i, o) {
        size_t l = strlen(buf);
        snprintf(buf + l, cap - l, "%s%s", i ? ", " : "", json_string_value(json_object_get(o, "name")));
    }
}

/* rb_export_precheck; on success the online ops it computed go to *keep (a new reference) unless keep
 * is NULL, so rb_export_run does not compute them twice. */
static int precheck(const rb_export_in *in, const rb_export_req *req, json_t **keep, rb_error *err) {
    if (rb_path_exists(req->out) && !req->force)
        return rb_error_set(err, RB_EINVAL, "%s exists: remove it, choose another --out, or pass --force", req->out);
    char *parent = rb_strdup(req->out), *slash = parent ? strrchr(parent, '/') : NULL;
    if (slash) *(slash == parent ? slash + 1 : slash) = '\0';
    int bad = parent && slash && !rb_path_is_dir(parent);
    int rc = bad ? rb_error_set(err, RB_EINVAL, "export: %s: %s is not a directory", req->out, parent) : 0;
    free(parent);
    if (rc) return rc;
    json_t *ops = NULL;
    if ((rc = rb_export_online_ops(in, req->rs, &ops, err))) return rc;
    if (json_array_size(ops) && !req->allow_online_dropped) {
        char names[256];
        op_names(ops, names, sizeof names);
        rc = rb_error_set(err, RB_EINVAL,
                          "export --format %s: the run needs online operations a plain checkpoint cannot hold (%s): "
                          "turn them off (--r3 off --r4 off --cross-head off, weight-only quantization), or pass "
                          "--allow-online-dropped (YAML: export.allow_online_dropped) to export the fused weights with "
                          "the operations described in %s",
                          rb_export_format_name(req->format), names, RB_EXPORT_ONLINE_OPS);
    }
    if (!rc && req->format == RB_EXPORT_GPTQ && (rc = rb_export_gptq_check(in, err)))
        rb_error_prefix(err, "export gptq");
    if (!rc && keep)
        *keep = ops;
    else
        json_decref(ops);
    return rc;
}

int rb_export_precheck(const rb_export_in *in, const rb_export_req *req, rb_error *err) {
    return precheck(in, req, NULL, err);
}

int rb_export_run(const rb_export_in *in, const rb_export_req *req, rb_error *err) {
    RB_ASSERT(in && req && req->out && in->src);
    json_t *ops = NULL;
    int rc = precheck(in, req, &ops, err);
    if (rc) return rc;
    json_t *copied = json_array();
    if (!copied) {
        json_decref(ops);
        return rb_error_set(err, RB_ENOMEM, "export: out of memory");
    }
    size_t n = strlen(req->out) + 16;
    char *tmp = malloc(n);
    if (!tmp) {
        json_decref(ops);
        json_decref(copied);
        return rb_error_set(err, RB_ENOMEM, "export: out of memory");
    }
    snprintf(tmp, n, "%s.partial", req->out);
    if (!(rc = remove_tree(tmp, err)) && mkdir(tmp, 0777) != 0)
        rc = rb_error_set(err, RB_EIO, "%s: cannot create the export directory: %s", tmp, strerror(errno));
    if (!rc) {
        switch (req->format) {
        case RB_EXPORT_HF: rc = rb_export_hf(in, tmp, err); break;
        case RB_EXPORT_GPTQ: rc = rb_export_gptq(in, tmp, err); break;
        case RB_EXPORT_GGUF: rc = rb_export_gguf(in, tmp, err); break;
        default: rc = rb_error_set(err, RB_EINVAL, "export: unknown format %d", req->format);
        }
        if (rc) rb_error_prefix(err, "export %s", rb_export_format_name(req->format));
    }
    if (!rc && req->format != RB_EXPORT_GGUF) rc = copy_tokenizer(in, tmp, copied, err);
    if (!rc && json_array_size(ops)) {
        json_t *side = json_pack("{s:s, s:i, s:s, s:O}", "format", "rotbench-online-ops", "version", 1, "convention",
                                 "row vectors: an activation x becomes x·M; W [out][in] reading a rotated input holds W·M",
                                 "ops", ops);
        rc = side ? write_json_in(tmp, RB_EXPORT_ONLINE_OPS, side, err) : rb_error_set(err, RB_ENOMEM, "export: out of memory");
        json_decref(side);
        if (!rc && req->rs) {
            char *rp = rb_path_join(tmp, RB_EXPORT_ROTATION);
            rc = rp ? rb_rotset_save(req->rs, rp, err) : rb_error_set(err, RB_ENOMEM, "export: out of memory");
            free(rp);
        }
    }
    if (!rc) {
        /* the manifest last: a directory with it is complete (and only <out>.partial until renamed) */
        json_t *m = manifest(in, req, ops, copied);
        rc = m ? write_json_in(tmp, RB_EXPORT_MANIFEST, m, err) : rb_error_set(err, RB_ENOMEM, "export: out of memory");
        json_decref(m);
    }
    if (!rc) rc = publish(tmp, req->out, req->force, err);
    if (rc) {
        rb_error e2 = {0};
        if (remove_tree(tmp, &e2)) rb_warn("export: %s", e2.msg);
    }
    free(tmp);
    json_decref(ops);
    json_decref(copied);
    return rc;
}

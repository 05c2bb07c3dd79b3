#include "pipeline/rb_pipeline.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "text/rb_calib.h"
#include "methods/rb_method.h"
#include "model/rb_safetensors.h"
#include "quant/rb_wquant.h"

/* Text files above this are refused rather than read (WikiText-103 is ~540 MB). */
#define RB_MAX_TEXT_BYTES ((size_t)4 << 30)

/* ASCII whitespace (the separators' surrounding newlines). */
static int ws(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Tokenizes text[len] as documents split at every occurrence of sep: each stripped, empty ones
 * skipped, each encoded on its own (BOS first when bos) and appended. */
static int tokenize_docs(const rb_tokenizer *tok, const char *text, size_t len, const char *sep, int bos,
                         int32_t **ids, size_t *n, rb_error *err) {
    size_t ls = strlen(sep), cap = 0, used = 0, docs = 0;
    int32_t *all = NULL;
    const char *p = text, *end = text + len;
    int rc = 0;
    while (p <= end) {
        const char *q = memmem(p, (size_t)(end - p), sep, ls);
        const char *e = q ? q : end, *a = p;
        while (a < e && ws(*a)) a++;
        while (e > a && ws(e[-1])) e--;
        if (e > a) {
            int32_t *d = NULL;
            size_t nd = 0;
            if ((rc = rb_tokenizer_encode(tok, a, (size_t)(e - a), bos, &d, &nd, err))) break;
            if (used + nd > cap) {
                size_t nc = cap ? cap * 2 : 1 << 16;
                while (nc < used + nd) nc *= 2;
                int32_t *g = realloc(all, nc * sizeof *g);
                if (!g) {
                    free(d);
                    rc = rb_error_set(err, RB_ENOMEM, "out of memory tokenizing documents");
                    break;
                }
                all = g, cap = nc;
            }
            memcpy(all + used, d, nd * sizeof *d);
            used += nd, docs++;
            free(d);
        }
        if (!q) break;
        p = q + ls;
    }
    if (!rc && docs == 0) rc = rb_error_set(err, RB_EFORMAT, "no document (separator '%s')", sep);
    if (rc) {
        free(all);
        return rc;
    }
    rb_info("tokenized %zu documents (separator '%s'%s): %zu tokens", docs, sep, bos ? ", BOS each" : "", used);
    *ids = all, *n = used;
    return 0;
}

int rb_tokenize_file(const rb_tokenizer *tok, const char *file, int bos, const char *doc_sep, int32_t **ids,
                     size_t *n, rb_error *err) {
    char *text;
    size_t len;
    int rc = rb_read_file(file, RB_MAX_TEXT_BYTES, &text, &len, err);
    if (rc) return rc;
    if (doc_sep && *doc_sep)
        rc = tokenize_docs(tok, text, len, doc_sep, bos, ids, n, err);
    else
        rc = rb_tokenizer_encode(tok, text, len, bos, ids, n, err);
    if (rc) rb_error_prefix(err, "%s", file);
    free(text);
    return rc;
}

/* Restricts ids[*n] to a fraction range ("a:b") in place. */
static int apply_range(const char *spec, int32_t *ids, size_t *n, rb_error *err) {
    if (!spec) return 0;
    size_t b, e;
    int rc = rb_token_range_parse(spec, *n, &b, &e, err);
    if (rc) return rc;
    memmove(ids, ids + b, (e - b) * sizeof *ids);
    *n = e - b;
    return 0;
}

/* Mean squared embedding norm of each calibration window (the sorted_by_norm key). */
static int window_norms(const rb_weights_src *src, const rb_llama_config *c, const int32_t *w, int n, int T,
                        double *norm, rb_error *err) {
    float *e = rb_alloc((size_t)T * c->dim * sizeof(float));
    if (!e) return rb_error_set(err, RB_ENOMEM, "calibration: out of memory");
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if ((rc = src->embed(src->ctx, w + (size_t)i * T, (size_t)T, e, err))) break;
        double s = 0;
        for (size_t k = 0; k < (size_t)T * c->dim; k++) s += (double)e[k] * e[k];
        norm[i] = s / T;
    }
    rb_free(e);
    return rc;
}

/* Window length when the spec leaves it 0: min(2048, max_position_embeddings). */
static int default_seqlen(const rb_pipe_spec *s, const rb_llama_config *c) {
    if (s->ppl.seqlen) return s->ppl.seqlen;
    return c->max_seq_len > 0 && c->max_seq_len < 2048 ? c->max_seq_len : 2048;
}

/* Opens the run's tokenizer and checks it against the model's vocabulary: a larger one yields ids the
 * embedding does not have (refused, both sizes named); a smaller one is legitimate for padded
 * embeddings but also what a wrong tokenizer looks like, so it is reported. */
static int open_tokenizer(const rb_pipe_spec *s, const rb_model *m, rb_tokenizer **tok, rb_error *err) {
    int rc;
    const char *path = s->tokenizer_path ? s->tokenizer_path : rb_model_dir(m);
    if (!s->tokenizer_path && rb_model_kind(m) == RB_MODEL_LLAMA2C)
        return rb_error_set(err, RB_EINVAL, "%s: llama2.c checkpoints need --tokenizer (e.g. tok512.bin)",
                            rb_model_path(m));
    if ((rc = rb_tokenizer_load(path, tok, err))) return rc;
    int tv = rb_tokenizer_vocab_size(*tok), mv = rb_model_config(m)->vocab_size;
    if (tv > mv) {
        rb_tokenizer_free(*tok);
        *tok = NULL;
        return rb_error_set(err, RB_EINVAL,
                            "tokenizer %s has %d tokens, the model %s has a vocabulary of %d: not this model's tokenizer "
                            "(pass the model's own with --tokenizer / model.tokenizer)",
                            path, tv, rb_model_path(m), mv);
    }
    if (tv < mv)
        rb_warn("tokenizer %s has %d tokens, the model's vocabulary %d (padded embeddings are fine; otherwise this is "
                "not the model's tokenizer)",
                path, tv, mv);
    return 0;
}

int rb_pipe_prepare(rb_pipe *p, const rb_pipe_spec *s, rb_error *err) {
    memset(p, 0, sizeof *p);
    rb_hooks_init(&p->online);
    rb_trace_init(&p->trace);
    int rc;
    if ((rc = rb_model_open(s->model_path, &p->model, err))) goto fail;
    p->cfg = *rb_model_config(p->model);
    p->seqlen = default_seqlen(s, &p->cfg);
    if ((rc = open_tokenizer(s, p->model, &p->tok, err))) goto fail;
    if (s->text && (rc = rb_pipe_load_text(p, s->text, s->text_range, s->add_bos, s->text_doc_sep, err))) goto fail;
    p->base = p->src = rb_weights_from_model(p->model);
    if (s->calib) {
        int32_t *cal = NULL;
        size_t cn = 0;
        int T = s->calib_seqlen ? s->calib_seqlen : default_seqlen(s, &p->cfg);
        p->calib_seqlen = T;
        if (p->cfg.max_seq_len > 0 && T > p->cfg.max_seq_len)
            rb_warn("calibration seqlen %d is beyond the model's trained context (%d)", T, p->cfg.max_seq_len);
        if ((rc = rb_tokenize_file(p->tok, s->calib, s->add_bos, s->calib_doc_sep, &cal, &cn, err))) goto fail;
        if (!(rc = apply_range(s->calib_range, cal, &cn, err)))
            rc = rb_calib_sample(cal, cn, s->calib_samples, T, s->seed, &p->calib_win, err);
        free(cal);
        if (rc) goto fail;
        double *norm = NULL;
        if (s->calib_order == RB_CALIB_SORTED_BY_NORM) {
            if (!(norm = malloc((size_t)s->calib_samples * sizeof *norm))) {
                rc = rb_error_set(err, RB_ENOMEM, "calibration: out of memory");
                goto fail;
            }
            rc = window_norms(&p->base, &p->cfg, p->calib_win, s->calib_samples, T, norm, err);
        }
        if (!rc) rc = rb_calib_reorder(p->calib_win, s->calib_samples, T, s->calib_order, norm, s->seed, err);
        free(norm);
        if (rc) goto fail;
    }
    double t0 = rb_now();
    if (s->rotset) {
        if ((rc = rb_rotset_check_model(s->rotset, &p->cfg, err))) {
            if (s->rotset_path) rb_error_prefix(err, "%s", s->rotset_path);
            goto fail;
        }
        p->rs = s->rotset;
    } else if (s->rotation) {
        /* identity without fold_norms/R3/R4 is the unrotated model itself: no fused model, but its
         * options are still checked (rb_method_run checks them on the other path). */
        if (rb_method_is_noop(s->rotation, s->rot_opt_names, s->rot_opt_values, s->n_rot_opts, s->r3, s->r4)) {
            if ((rc = rb_method_check(s->rotation, s->rot_opt_names, s->rot_opt_values, s->n_rot_opts, s->cross_head,
                                      err)))
                goto fail;
        } else {
            rb_method_ctx mc = {.cfg = &p->cfg, .src = &p->base, .seed = s->rotation_seed, .r3 = s->r3, .r4 = s->r4,
                                .emb_center = s->emb_center, .cross_head = s->cross_head, .calib = p->calib_win,
                                .calib_n = p->calib_win ? s->calib_samples : 0, .calib_T = p->calib_seqlen,
                                .calib_batch = s->calib_batch > 0 ? s->calib_batch : 1, .quant = s->quant,
                                .opt_names = s->rot_opt_names, .opt_values = s->rot_opt_values,
                                .n_opts = s->n_rot_opts, .trace = &p->trace};
            if ((rc = rb_method_run(s->rotation, &mc, &p->rotset, err))) goto fail;
            p->own_rotset = 1;
            p->rs = &p->rotset;
        }
    }
    if (p->rs) {
        if ((rc = rb_fused_init(&p->fused, &p->base, &p->cfg, p->rs, err))) goto fail;
        p->have_fused = 1;
        p->src = rb_fused_src(&p->fused);
        rb_fused_add_online_hooks(&p->fused, &p->online);
        p->online_fp = p->online;
        if (p->rs->ra && p->rs->jn) { /* low-rank junctions change the FP model: the reference keeps exact ones */
            if ((rc = rb_junctions_init(&p->jexact, p->cfg.n_layers, p->cfg.dim, err))) goto fail;
            p->have_jexact = 1;
            if ((rc = rb_junctions_lazy_exact(&p->jexact, p->rs, err))) goto fail;
            p->online_fp.n[RB_SITE_RES_ATTN] = p->online_fp.n[RB_SITE_RES_MLP] = 0;
            rb_hooks_add_bwd(&p->online_fp, RB_SITE_RES_ATTN, rb_hook_junction, rb_hook_junction_bwd, 0, &p->jexact);
            rb_hooks_add_bwd(&p->online_fp, RB_SITE_RES_MLP, rb_hook_junction, rb_hook_junction_bwd, 0, &p->jexact);
        }
        rb_info("rotation %s: r3 %s, r4 %s, cross-head %s, emb_center %s, max orthogonality error %.3g",
                p->rs->method, p->rs->r3 ? "on" : "off", p->rs->r4 ? "on" : "off", p->rs->cross_head ? "on" : "off",
                p->rs->emb_center ? "on" : "off", rb_rotset_orth_err(p->rs));
    }
    p->seconds_rotation = rb_now() - t0;
    if (s->quant) {
        p->quant = *s->quant;
        rb_quant_cfg_resolve(&p->quant, p->rs && p->rs->cross_head);
        if (p->quant.a.bits < RB_QBITS_OFF)
            rb_info("quant: o_proj input per %s", p->quant.o_proj == RB_OPROJ_ROW
                                                      ? "token over the whole row (QuaRot, after the cross-head Hadamard)"
                                                      : "(token, head): groups of head_dim (SpinQuant)");
    }
    return 0;
fail:
    rb_pipe_free(p);
    return rc;
}

int rb_pipe_load_text(rb_pipe *p, const char *path, const char *range, int add_bos, const char *doc_sep,
                      rb_error *err) {
    free(p->ids);
    p->ids = NULL;
    p->n_ids = 0;
    rb_ppl_result_free(&p->plain);
    rb_qeval_result_free(&p->q);
    int rc = rb_tokenize_file(p->tok, path, add_bos, doc_sep, &p->ids, &p->n_ids, err);
    if (!rc) rc = apply_range(range, p->ids, &p->n_ids, err);
    return rc;
}

int rb_pipe_evaluate(rb_pipe *p, const rb_pipe_spec *s, rb_error *err) {
    if (!p->ids) return rb_error_set(err, RB_EINVAL, "evaluate: no evaluation text loaded");
    rb_ppl_opts o = s->ppl;
    const rb_llama_config *c = &p->cfg;
    o.seqlen = default_seqlen(s, c);
    p->seqlen = o.seqlen;
    if (c->max_seq_len > 0 && o.seqlen > c->max_seq_len)
        rb_warn("seqlen %d is beyond the model's trained context (max_position_embeddings %d): RoPE positions it never "
                "saw; perplexity there measures extrapolation",
                o.seqlen, c->max_seq_len);
    o.bos_id = rb_tokenizer_bos(p->tok);
    if (o.bos_id < 0) o.bos_id = c->bos_id;
    p->quantized = s->quant != NULL && (rb_quant_cfg_active(s->quant) || s->stats || s->fp_ref);
    rb_info("evaluate: %zu tokens, seqlen %d, protocol %s, quant %s/%s, blas %s x%d", p->n_ids, o.seqlen,
            rb_ppl_protocol_name(o.protocol), s->quant ? s->quant->name : "none",
            s->quant && s->quant->w_algo == RB_WALGO_GPTQ ? "gptq" : "rtn", rb_blas_corename(), rb_blas_threads());
    if (!p->quantized) return rb_ppl_run(&p->src, c, p->ids, p->n_ids, &o, &p->online, &p->plain, err);
    RB_ASSERT(!rb_pipe_quantizes_weights(s) || p->wq); /* rb_pipe_quantize_weights or rb_pipe_open_weights first */
    rb_qeval_opts qo = {.q = &p->quant, .wq = p->wq, .ppl = o, .fp_ref = s->fp_ref, .stats = s->stats,
                        .online = &p->online, .online_fp = &p->online_fp};
    if (p->rs && p->rs->ruq) { /* RUQuant's smoothing is not orthogonal: measure its errors in the model's basis */
        qo.to_model_basis = rb_hook_ruq_inverse;
        qo.basis_ctx = &p->fused;
    }
    return rb_qeval_run(&p->src, c, p->ids, p->n_ids, &qo, &p->q, err);
}

void rb_pipe_tasks_opts(rb_pipe *p, const rb_pipe_spec *s, rb_tasks_opts *o) {
    int quantized = s->quant != NULL && rb_quant_cfg_active(s->quant);
    RB_ASSERT(!rb_pipe_quantizes_weights(s) || p->wq);
    o->q = quantized ? &p->quant : NULL;
    o->wq = p->wq;
    o->online = &p->online;
    o->online_fp = &p->online_fp;
    o->fp_ref = quantized && s->fp_ref;
    o->seed = s->seed;
    rb_info("tasks: bos %s, quant %s, blas %s x%d", rb_task_bos_name(o->bos), quantized ? s->quant->name : "none",
            rb_blas_corename(), rb_blas_threads());
}

int rb_pipe_tasks(rb_pipe *p, const rb_pipe_spec *s, const rb_task_set *sets, int n, int bos, int max_length,
                  rb_task_result *res, rb_error *err) {
    rb_tasks_opts o = {.bos = bos, .max_length = max_length};
    rb_pipe_tasks_opts(p, s, &o);
    return rb_tasks_run(&p->src, &p->cfg, p->tok, sets, n, &o, res, err);
}

int rb_pipe_quantizes_weights(const rb_pipe_spec *s) { return s->quant && s->quant->w.bits < RB_QBITS_OFF; }

int rb_pipe_quantize_weights(rb_pipe *p, const rb_pipe_spec *s, const char *path, const char *id, rb_error *err) {
    if (!rb_pipe_quantizes_weights(s)) return 0;
    RB_ASSERT(!p->wq);
    char *tmp = NULL;
    if (!path) {
        const char *t = getenv("TMPDIR");
        if (!(p->wq_tmpdir = rb_path_join(t && *t ? t : "/tmp", "rbwq.XXXXXX")) || !mkdtemp(p->wq_tmpdir)) {
            int e = errno;
            free(p->wq_tmpdir);
            p->wq_tmpdir = NULL;
            return rb_error_set(err, RB_EIO, "weight store: cannot create a temporary directory: %s", strerror(e));
        }
        if (!(path = tmp = rb_path_join(p->wq_tmpdir, RB_WSTORE_FILE))) return rb_error_set(err, RB_ENOMEM, "out of memory");
    }
    const rb_quant_cfg *q = &p->quant;
    char desc[128];
    rb_qspec_format(&q->w, desc, sizeof desc);
    const char *algo = q->w_algo == RB_WALGO_GPTQ ? "gptq" : "rtn";
    rb_info("quantize weights: %s %s%s, store %s", desc, algo,
            q->w_algo == RB_WALGO_GPTQ && q->gptq.act_order ? " (act order)" : "", path);
    rb_wquant_opts wo = {.q = q, .calib = p->calib_win, .calib_n = p->calib_win ? s->calib_samples : 0,
                         .calib_T = p->calib_seqlen, .online = &p->online, .h_err = s->stats};
    int rc = rb_wstore_create(path, &p->cfg, id, desc, algo, &p->wq, err);
    if (!rc) rc = rb_wquant_run(&p->src, &p->cfg, &wo, p->wq, &p->seconds_wquant, err);
    if (!rc) rc = rb_wstore_finish(p->wq, err);
    if (rc) {
        rb_wstore_close(p->wq); /* removes the unfinished .partial */
        p->wq = NULL;
    }
    free(tmp);
    return rc;
}

int rb_pipe_open_weights(rb_pipe *p, const char *path, const char *id, rb_error *err) {
    RB_ASSERT(!p->wq);
    p->seconds_wquant = 0;
    return rb_wstore_open(path, &p->cfg, id, &p->wq, err);
}

void rb_pipe_export_in(rb_pipe *p, const rb_pipe_spec *s, rb_export_in *in) {
    memset(in, 0, sizeof *in);
    in->cfg = p->cfg;
    in->cfg.tied = 0; /* the fused model (and every export) carries its own lm_head */
    in->src = &p->src;
    in->wq = p->wq;
    in->quant = s->quant && rb_quant_cfg_active(s->quant) ? &p->quant : NULL;
    in->tok = p->tok;
    in->tokenizer_path = s->tokenizer_path;
    in->model_dir = rb_model_kind(p->model) == RB_MODEL_HF ? rb_model_dir(p->model) : NULL;
    const char *mp = rb_model_path(p->model), *b = strrchr(mp, '/');
    in->name = b && b[1] ? b + 1 : mp;
    in->dtype = RB_DT_F32;
    in->gptq_scales_dtype = RB_DT_F32;
    in->max_shard_bytes = 5000000000ull; /* transformers' save_pretrained default max_shard_size "5GB" */
}

const rb_ppl_result *rb_pipe_result(const rb_pipe *p) { return p->quantized ? &p->q.q : &p->plain; }

void rb_pipe_free(rb_pipe *p) {
    rb_ppl_result_free(&p->plain);
    rb_qeval_result_free(&p->q);
    rb_wstore_close(p->wq);
    if (p->wq_tmpdir) {
        char *f = rb_path_join(p->wq_tmpdir, RB_WSTORE_FILE);
        if (f) unlink(f);
        free(f);
        rmdir(p->wq_tmpdir);
        free(p->wq_tmpdir);
    }
    if (p->have_fused) rb_fused_free(&p->fused);
    if (p->have_jexact) rb_junctions_free(&p->jexact);
    if (p->own_rotset) rb_rotset_free(&p->rotset);
    rb_trace_free(&p->trace);
    free(p->calib_win);
    free(p->ids);
    if (p->tok) rb_tokenizer_free(p->tok);
    if (p->model) rb_model_close(p->model);
    memset(p, 0, sizeof *p);
}

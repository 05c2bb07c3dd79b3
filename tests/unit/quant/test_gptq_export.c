/* GPTQ checkpoint export and read-back end to end (export/rb_export.h rb_export_gptq,
 * model/rb_gptq_model.c): small synthetic models quantized with RTN or GPTQ (per channel, groups,
 * act order; 2/3/4/8 bits; sym and asym) into a weight store, exported, reopened with rb_model_open:
 * every linear equals the store's weights bit for bit (F32 scales), FP tensors equal the source's;
 * F16 scales round as documented; the independent Python reader tests/ref/gptq_unpack.py agrees bit
 * for bit (skipped loudly without python3 + numpy). Refusals of the writer, and damaged GPTQ
 * directories (shapes, dtypes, g_idx, missing tensors, quantization_config, truncation). */
#include "rb_test.h"

#include <jansson.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rb_half.h"
#include "core/rb_rng.h"
#include "eval/rb_ppl.h"
#include "export/rb_export.h"
#include "export/rb_gptq_pack.h"
#include "model/rb_forward.h"
#include "model/rb_make_model.h"
#include "model/rb_safetensors.h"
#include "quant/rb_wquant.h"

typedef struct fx {
    char dir[512];
} fx;

static int setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    rb_test_tmpdir(f->dir, sizeof f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) fprintf(stderr, "# could not remove %s\n", f->dir);
    free(f);
    return 0;
}

/* A run: a source model, its quantization and the finished weight store. */
typedef struct run {
    char mdir[700], store[700];
    rb_model *m;
    rb_weights_src src;
    rb_quant_cfg q;
    rb_wstore *ws;
    int abs_row; /* ≥ 0: row abs_row of layer 1's q_proj made non-negative (an asym zero of 0) */
} run;

static int wrapped_load(void *ctx, int l, rb_layer_weights *w, rb_error *err) {
    run *r = ctx;
    int rc = rb_model_load_layer(r->m, l, w, err);
    if (!rc && l == 1 && r->abs_row >= 0)
        for (int c = 0; c < rb_model_config(r->m)->dim; c++)
            w->wq[(size_t)r->abs_row * rb_model_config(r->m)->dim + c] =
                fabsf(w->wq[(size_t)r->abs_row * rb_model_config(r->m)->dim + c]);
    return rc;
}
static int wrapped_embed(void *ctx, const int32_t *ids, size_t n, float *out, rb_error *err) {
    return rb_model_embed(((run *)ctx)->m, ids, n, out, err);
}
static int wrapped_norm(void *ctx, float *out, rb_error *err) { return rb_model_load_final_norm(((run *)ctx)->m, out, err); }
static int wrapped_head(void *ctx, float *out, rb_error *err) { return rb_model_load_lm_head(((run *)ctx)->m, out, err); }

/* Makes model `preset` in f->dir/<name>/m and quantizes its weights with (bits, sym, gran, group,
 * algo, act_order) into a store; params = 0 writes a version-1 store (no integer grid). */
static void run_make(fx *f, run *r, const char *name, const char *preset, int bits, int sym, int gran, int group,
                     int gptq, int act_order, int params) {
    rb_error err = {0};
    char base[600];
    snprintf(base, sizeof base, "%s/%s", f->dir, name);
    assert_int_equal(mkdir(base, 0777), 0);
    snprintf(r->mdir, sizeof r->mdir, "%s/m", base);
    snprintf(r->store, sizeof r->store, "%s/wquant.h5", base);
    rb_make_model_opts o = {.preset = preset, .seed = 11};
    assert_int_equal(rb_make_model(r->mdir, &o, &err), 0);
    assert_int_equal(rb_model_open(r->mdir, &r->m, &err), 0);
    r->src = (rb_weights_src){r, wrapped_load, wrapped_embed, wrapped_norm, wrapped_head};
    assert_int_equal(rb_quant_preset("W4A16", &r->q, &err), 0);
    r->q.w = rb_qspec_make(bits, sym, gran, group);
    r->q.w_algo = gptq ? RB_WALGO_GPTQ : RB_WALGO_RTN;
    r->q.gptq.act_order = act_order;
    const rb_llama_config *c = rb_model_config(r->m);
    assert_int_equal(rb_wstore_create(r->store, c, "t", "spec", gptq ? "gptq" : "rtn", &r->ws, &err), 0);
    if (params) {
        int32_t calib[8 * 32];
        rb_rng g;
        rb_rng_seed(&g, 3, "gptq-export-calib");
        for (int i = 0; i < 8 * 32; i++) calib[i] = (int32_t)rb_rng_below(&g, (uint64_t)c->vocab_size);
        rb_wquant_opts wo = {.q = &r->q, .calib = gptq ? calib : NULL, .calib_n = gptq ? 8 : 0, .calib_T = 32};
        int rc = rb_wquant_run(&r->src, c, &wo, r->ws, NULL, &err);
        if (rc) fprintf(stderr, "# %s\n", err.msg);
        assert_int_equal(rc, 0);
    } else {
        rb_layer_weights w;
        assert_int_equal(rb_layer_weights_init(&w, c, &err), 0);
        for (int l = 0; l < c->n_layers; l++) {
            assert_int_equal(rb_model_load_layer(r->m, l, &w, &err), 0);
            for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
                int rows, cols;
                float *x = rb_layer_linear(&w, c, lin, &rows, &cols);
                assert_int_equal(rb_quant_fake(&r->q.w, x, rows, cols, 0, &err), 0);
            }
            assert_int_equal(rb_wstore_put_layer(r->ws, l, &w, &r->q.w, 0, NULL, NULL, NULL, &err), 0);
        }
        rb_layer_weights_free(&w);
    }
    assert_int_equal(rb_wstore_finish(r->ws, &err), 0);
}

static void run_free(run *r) {
    rb_wstore_close(r->ws);
    rb_model_close(r->m);
}

static rb_export_in export_in(run *r) {
    rb_export_in in = {0};
    in.cfg = *rb_model_config(r->m);
    in.cfg.tied = 0;
    in.src = &r->src;
    in.wq = r->ws;
    in.quant = &r->q;
    in.dtype = RB_DT_F32;
    in.gptq_scales_dtype = RB_DT_F32;
    return in;
}

/* Exports into a fresh f->dir/<name>; returns the writer's code. */
static int do_export(fx *f, const rb_export_in *in, const char *name, char *out, size_t cap, rb_error *err) {
    snprintf(out, cap, "%s/%s", f->dir, name);
    assert_int_equal(mkdir(out, 0777), 0);
    return rb_export_gptq(in, out, err);
}

/* The store's weights of layer l (source layer with the store's linears) into w. */
static void store_layer(run *r, int l, rb_layer_weights *w) {
    rb_error err = {0};
    assert_int_equal(r->src.load_layer(r->src.ctx, l, w, &err), 0);
    assert_int_equal(rb_wstore_load_layer(r->ws, l, w, &err), 0);
}

/* Reopens `dir` and checks it against the run: linears bit for bit, norms, embedding, final norm and
 * lm_head equal the source (F32 export with F32 scales). */
static void check_reopen(run *r, const char *dir) {
    rb_error err = {0};
    rb_model *e = NULL;
    int rc = rb_model_open(dir, &e, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
    const rb_llama_config *c = rb_model_config(r->m), *ec = rb_model_config(e);
    assert_int_equal(ec->n_layers, c->n_layers);
    assert_int_equal(ec->head_dim, c->head_dim);
    assert_int_equal(ec->tied, 0);
    rb_layer_weights a, b;
    assert_int_equal(rb_layer_weights_init(&a, c, &err), 0);
    assert_int_equal(rb_layer_weights_init(&b, c, &err), 0);
    for (int l = 0; l < c->n_layers; l++) {
        store_layer(r, l, &a);
        assert_int_equal(rb_model_load_layer(e, l, &b, &err), 0);
        assert_memory_equal(a.rms_att, b.rms_att, sizeof(float) * (size_t)c->dim);
        assert_memory_equal(a.rms_ffn, b.rms_ffn, sizeof(float) * (size_t)c->dim);
        for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
            int rows, cols;
            const float *x = rb_layer_linear(&a, c, lin, &rows, &cols), *y = rb_layer_linear(&b, c, lin, &rows, &cols);
            assert_memory_equal(x, y, sizeof(float) * (size_t)rows * cols);
        }
    }
    size_t ne = (size_t)c->vocab_size * c->dim;
    float *u = malloc(ne * sizeof *u), *v = malloc(ne * sizeof *v);
    assert_int_equal(rb_model_load_embedding(r->m, u, &err), 0);
    assert_int_equal(rb_model_load_embedding(e, v, &err), 0);
    assert_memory_equal(u, v, ne * sizeof *u);
    assert_int_equal(rb_model_load_lm_head(r->m, u, &err), 0);
    assert_int_equal(rb_model_load_lm_head(e, v, &err), 0);
    assert_memory_equal(u, v, ne * sizeof *u);
    assert_int_equal(rb_model_load_final_norm(r->m, u, &err), 0);
    assert_int_equal(rb_model_load_final_norm(e, v, &err), 0);
    assert_memory_equal(u, v, (size_t)c->dim * sizeof *u);
    free(u);
    free(v);
    rb_layer_weights_free(&a);
    rb_layer_weights_free(&b);
    rb_model_close(e);
}

/* The run's model as it evaluates it: the source's layers with the store's linears. */
static int run_load_layer(void *ctx, int l, rb_layer_weights *w, rb_error *err) {
    run *r = ctx;
    int rc = r->src.load_layer(r->src.ctx, l, w, err);
    return rc ? rc : rb_wstore_load_layer(r->ws, l, w, err);
}

/* Perplexity of the exported model equals the run's (same NLL sum to the last bit) on random ids. */
static void check_ppl(run *r, const char *dir) {
    rb_error err = {0};
    const rb_llama_config *c = rb_model_config(r->m);
    int32_t ids[4 * 32];
    rb_rng g;
    rb_rng_seed(&g, 9, "gptq-export-ppl");
    for (int i = 0; i < 4 * 32; i++) ids[i] = (int32_t)rb_rng_below(&g, (uint64_t)c->vocab_size);
    rb_ppl_opts o = {.protocol = RB_PPL_GPTQ, .seqlen = 32};
    rb_weights_src qs = r->src;
    qs.ctx = r;
    qs.load_layer = run_load_layer;
    rb_ppl_result a = {0}, b = {0};
    assert_int_equal(rb_ppl_run(&qs, c, ids, 4 * 32, &o, NULL, &a, &err), 0);
    rb_model *e;
    assert_int_equal(rb_model_open(dir, &e, &err), 0);
    rb_weights_src es = rb_weights_from_model(e);
    assert_int_equal(rb_ppl_run(&es, rb_model_config(e), ids, 4 * 32, &o, NULL, &b, &err), 0);
    assert_true(a.nll_sum == b.nll_sum && a.scored == b.scored && isfinite(a.ppl));
    fprintf(stderr, "# ppl run %.9g, exported %.9g\n", a.ppl, b.ppl);
    rb_ppl_result_free(&a);
    rb_ppl_result_free(&b);
    rb_model_close(e);
}

/* A python3 with numpy: $RB_PYTHON, /usr/bin/python3, or python3 on PATH; NULL (skip) if none. */
static const char *find_python(void) {
    static const char *cand[3];
    cand[0] = getenv("RB_PYTHON");
    cand[1] = "/usr/bin/python3";
    cand[2] = "python3";
    for (int i = 0; i < 3; i++) {
        if (!cand[i] || !*cand[i]) continue;
        char cmd[600];
        snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy' >/dev/null 2>&1", cand[i]);
        if (system(cmd) == 0) return cand[i];
    }
    return NULL;
}

/* Runs tests/ref/gptq_unpack.py on dir and compares its dump with the exported model's linears as
 * rotbench reads them (bit for bit); with hf_dir (an hf F32 export of the same run) the script also
 * compares itself with that. */
static void check_python(const char *dir, const char *hf_dir) {
    const char *py = find_python(), *root = getenv("RB_SOURCE_ROOT");
    if (!py || !root) {
        fprintf(stderr, "#\n# SKIPPED: python reference check (%s)\n#\n",
                !py ? "no python3 with numpy; set RB_PYTHON" : "RB_SOURCE_ROOT unset");
        return;
    }
    char dump[700], cmd[2400];
    snprintf(dump, sizeof dump, "%s/py.f32", dir);
    snprintf(cmd, sizeof cmd, "'%s' '%s/tests/ref/gptq_unpack.py' '%s' --dump '%s'%s%s%s >&2", py, root, dir, dump,
             hf_dir ? " --compare-hf '" : "", hf_dir ? hf_dir : "", hf_dir ? "'" : "");
    assert_int_equal(system(cmd), 0);
    rb_error err = {0};
    rb_model *e = NULL;
    assert_int_equal(rb_model_open(dir, &e, &err), 0);
    const rb_llama_config *c = rb_model_config(e);
    rb_layer_weights w;
    assert_int_equal(rb_layer_weights_init(&w, c, &err), 0);
    FILE *fp = fopen(dump, "rb");
    assert_non_null(fp);
    for (int l = 0; l < c->n_layers; l++) {
        assert_int_equal(rb_model_load_layer(e, l, &w, &err), 0);
        for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
            int rows, cols;
            const float *x = rb_layer_linear(&w, c, lin, &rows, &cols);
            float *y = malloc(sizeof(float) * (size_t)rows * cols);
            assert_int_equal(fread(y, sizeof(float), (size_t)rows * cols, fp), (size_t)rows * cols);
            assert_memory_equal(x, y, sizeof(float) * (size_t)rows * cols);
            free(y);
        }
    }
    assert_int_equal(fgetc(fp), EOF);
    fclose(fp);
    unlink(dump);
    rb_layer_weights_free(&w);
    rb_model_close(e);
}

static json_t *read_json(const char *dir, const char *name) {
    char p[800];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    assert_non_null(j);
    return j;
}

static void test_rtn_channel(void **state) {
    fx *f = *state;
    run r = {.abs_row = -1};
    run_make(f, &r, "a", "tiny", 4, 1, RB_QGRAN_CHANNEL, 0, 0, 0, 1);
    rb_export_in in = export_in(&r);
    char out[700];
    rb_error err = {0};
    int rc = do_export(f, &in, "x", out, sizeof out, &err);
    if (rc) fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(rc, 0);
    check_reopen(&r, out);
    check_ppl(&r, out);
    json_t *cfg = read_json(out, "config.json"), *qc = json_object_get(cfg, "quantization_config");
    assert_string_equal(json_string_value(json_object_get(qc, "quant_method")), "gptq");
    assert_int_equal(json_integer_value(json_object_get(qc, "bits")), 4);
    assert_int_equal(json_integer_value(json_object_get(qc, "group_size")), -1);
    assert_true(json_is_false(json_object_get(qc, "desc_act")));
    assert_true(json_is_true(json_object_get(qc, "sym")));
    assert_string_equal(json_string_value(json_object_get(qc, "checkpoint_format")), "gptq");
    assert_string_equal(json_string_value(json_object_get(cfg, "torch_dtype")), "float32");
    assert_true(json_is_false(json_object_get(cfg, "tie_word_embeddings")));
    json_decref(cfg);
    json_t *ac = read_json(out, "quantize_config.json");
    assert_string_equal(json_string_value(json_object_get(ac, "model_file_base_name")), "model");
    assert_int_equal(json_integer_value(json_object_get(ac, "bits")), 4);
    json_decref(ac);
    /* rotbench's hf export of the run holds the quantized weights dequantized: the reference agrees */
    char hf[700];
    snprintf(hf, sizeof hf, "%s/hf", f->dir);
    assert_int_equal(mkdir(hf, 0777), 0);
    assert_int_equal(rb_export_hf(&in, hf, &err), 0);
    check_python(out, hf);
    run_free(&r);
}

/* GPTQ with act order and groups: non-trivial g_idx, desc_act; sharded; F16 scales; BF16 FP tensors. */
static void test_gptq_act_order(void **state) {
    fx *f = *state;
    run r = {.abs_row = -1};
    run_make(f, &r, "a", "gqa", 4, 1, RB_QGRAN_GROUP, 32, 1, 1, 1);
    rb_export_in in = export_in(&r);
    in.max_shard_bytes = 60000;
    char out[700];
    rb_error err = {0};
    assert_int_equal(do_export(f, &in, "x", out, sizeof out, &err), 0);
    check_reopen(&r, out);
    check_ppl(&r, out);
    char idx[800];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", out);
    assert_true(rb_path_exists(idx));
    json_t *cfg = read_json(out, "config.json"), *qc = json_object_get(cfg, "quantization_config");
    assert_true(json_is_true(json_object_get(qc, "desc_act")));
    assert_int_equal(json_integer_value(json_object_get(qc, "group_size")), 32);
    json_decref(cfg);
    /* act order permuted the groups somewhere */
    rb_model *e;
    assert_int_equal(rb_model_open(out, &e, &err), 0);
    int nontrivial = 0;
    for (int i = 0; i < rb_model_tensor(e, -1, NULL); i++) {
        rb_tensor_desc d;
        rb_model_tensor(e, i, &d);
        if (!strstr(d.name, ".g_idx")) continue;
        rb_st_file sf;
        assert_int_equal(rb_st_open(&sf, d.file, &err), 0);
        const rb_st_tensor *t = rb_st_find(&sf, d.name);
        const int32_t *g = (const int32_t *)t->data;
        for (int c = 0; c < (int)t->numel; c++) nontrivial |= g[c] != c / 32;
        rb_st_close(&sf);
    }
    assert_true(nontrivial);
    rb_model_close(e);
    check_python(out, NULL);

    in.max_shard_bytes = 0;
    in.gptq_scales_dtype = RB_DT_F16;
    in.dtype = RB_DT_BF16;
    assert_int_equal(do_export(f, &in, "h", out, sizeof out, &err), 0);
    assert_int_equal(rb_model_open(out, &e, &err), 0);
    rb_tensor_desc d;
    for (int i = 0; i < rb_model_tensor(e, -1, NULL); i++) {
        rb_model_tensor(e, i, &d);
        if (strstr(d.name, ".scales")) assert_string_equal(d.dtype, "F16");
        if (strstr(d.name, "embed_tokens")) assert_string_equal(d.dtype, "BF16");
    }
    rb_model_close(e);
    rb_layer_weights a, b;
    const rb_llama_config *c = rb_model_config(r.m);
    assert_int_equal(rb_layer_weights_init(&a, c, &err), 0);
    assert_int_equal(rb_layer_weights_init(&b, c, &err), 0);
    assert_int_equal(rb_model_open(out, &e, &err), 0);
    store_layer(&r, 1, &a);
    assert_int_equal(rb_model_load_layer(e, 1, &b, &err), 0);
    for (size_t i = 0; i < (size_t)c->hidden_dim * c->dim; i++) /* F16 scale: relative error ≤ 2^-11 */
        assert_true(fabsf(a.w_up[i] - b.w_up[i]) <= fabsf(a.w_up[i]) * 4.9e-4f);
    rb_model_close(e);
    rb_layer_weights_free(&a);
    rb_layer_weights_free(&b);
    check_python(out, NULL); /* F16 scales: the Python reader and rotbench agree bit for bit */
    run_free(&r);
}

/* 2, 3 and 8 bits; asymmetric grids. */
static void test_bits(void **state) {
    fx *f = *state;
    static const struct {
        const char *preset;
        int bits, sym, gran, group, gptq, act;
    } cases[] = {
        {"tiny", 2, 1, RB_QGRAN_GROUP, 16, 1, 0},
        {"llama3", 3, 1, RB_QGRAN_GROUP, 64, 1, 1}, /* every width a multiple of 32 */
        {"tiny", 8, 0, RB_QGRAN_GROUP, 16, 0, 0},
        {"tiny", 4, 0, RB_QGRAN_CHANNEL, 0, 1, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        run r = {.abs_row = -1};
        char name[16], out[700];
        snprintf(name, sizeof name, "c%zu", k);
        run_make(f, &r, name, cases[k].preset, cases[k].bits, cases[k].sym, cases[k].gran, cases[k].group,
                 cases[k].gptq, cases[k].act, 1);
        rb_export_in in = export_in(&r);
        rb_error err = {0};
        snprintf(name, sizeof name, "x%zu", k);
        int rc = do_export(f, &in, name, out, sizeof out, &err);
        if (rc) fprintf(stderr, "# %s\n", err.msg);
        assert_int_equal(rc, 0);
        check_reopen(&r, out);
        check_python(out, NULL);
        run_free(&r);
    }
}

static void expect(int rc, int code, const rb_error *err, const char *needle) {
    if (rc != code || !strstr(err->msg, needle)) fprintf(stderr, "# rc %d: %s\n# expected: %s\n", rc, err->msg, needle);
    assert_int_equal(rc, code);
    assert_non_null(strstr(err->msg, needle));
}

static void test_refusals(void **state) {
    fx *f = *state;
    run r = {.abs_row = -1};
    run_make(f, &r, "a", "tiny", 4, 1, RB_QGRAN_CHANNEL, 0, 0, 0, 1);
    rb_error err = {0};
    char out[700];
    rb_export_in in = export_in(&r);
    in.wq = NULL;
    expect(do_export(f, &in, "r0", out, sizeof out, &err), RB_EINVAL, &err, "the run has no quantized weights");
    in = export_in(&r);
    rb_quant_cfg q = r.q;
    in.quant = &q;
    q.a = rb_qspec_make(4, 0, RB_QGRAN_TOKEN, 0);
    expect(do_export(f, &in, "r1", out, sizeof out, &err), RB_EINVAL, &err, "(weight-only) cannot hold");
    q = r.q;
    q.k = rb_qspec_make(4, 0, RB_QGRAN_HEAD, 0);
    expect(do_export(f, &in, "r2", out, sizeof out, &err), RB_EINVAL, &err, "KV cache");
    q = r.q;
    q.w.gran = RB_QGRAN_TENSOR;
    expect(do_export(f, &in, "r3", out, sizeof out, &err), RB_EINVAL, &err, "weight granularity tensor");
    q = r.q;
    q.w.sym = 0;
    q.w.raw_minmax = 1;
    expect(do_export(f, &in, "r4", out, sizeof out, &err), RB_EINVAL, &err, "raw_minmax");
    q = r.q;
    q.w.bits = 5;
    expect(do_export(f, &in, "r5", out, sizeof out, &err), RB_EINVAL, &err, "5-bit weights");
    q = r.q;
    q.w.bits = 3; /* hidden 176 is not a multiple of 32 */
    expect(do_export(f, &in, "r6", out, sizeof out, &err), RB_EINVAL, &err,
           "gate_proj: [176 out][64 in] cannot be packed at 3 bits");
    in = export_in(&r);
    in.gptq_scales_dtype = RB_DT_BF16;
    expect(do_export(f, &in, "r7", out, sizeof out, &err), RB_EINVAL, &err, "scales dtype BF16");
    run_free(&r);

    run v1 = {.abs_row = -1};
    run_make(f, &v1, "v1", "tiny", 4, 1, RB_QGRAN_CHANNEL, 0, 0, 0, 0);
    in = export_in(&v1);
    expect(do_export(f, &in, "r8", out, sizeof out, &err), RB_EINVAL, &err, "has no integer grid");
    run_free(&v1);

    /* an asymmetric unit without negative weights has zero point 0: not storable in v1 */
    run z = {.abs_row = 5};
    run_make(f, &z, "z", "tiny", 4, 0, RB_QGRAN_CHANNEL, 0, 0, 0, 1);
    in = export_in(&z);
    expect(do_export(f, &in, "r9", out, sizeof out, &err), RB_EINVAL, &err,
           "layers.1.q_proj: row 5 group 0 has zero point 0, which checkpoint_format \"gptq\" (v1) cannot store");
    run_free(&z);
}

/* ---- damaged GPTQ directories -------------------------------------------------------------- */

enum { M_NONE, M_GIDX_RANGE, M_QWEIGHT_SHAPE, M_SCALES_DTYPE, M_DROP_QZEROS, M_DROP_GIDX, M_NAN_SCALE, M_V2 };

/* Copies GPTQ directory src to dst with mutation `mut` of its tensors and, when qkey is set, its
 * quantization_config key qkey set to qval (NULL: deleted; qkey "-": quantization_config removed, and
 * quantize_config.json kept). */
static void rewrite(const char *src, const char *dst, int mut, const char *qkey, json_t *qval) {
    rb_error err = {0};
    assert_int_equal(mkdir(dst, 0777), 0);
    char p[800], q[800];
    json_t *cfg = read_json(src, "config.json"), *qc = json_object_get(cfg, "quantization_config");
    if (qkey && !strcmp(qkey, "-")) json_object_del(cfg, "quantization_config");
    else if (qkey && qval) json_object_set_new(qc, qkey, qval);
    else if (qkey) json_object_del(qc, qkey);
    if (mut == M_V2) json_object_set_new(qc, "checkpoint_format", json_string("gptq_v2"));
    snprintf(p, sizeof p, "%s/config.json", dst);
    assert_int_equal(rb_json_write_file(p, cfg, &err), 0);
    json_decref(cfg);
    json_t *ac = read_json(src, "quantize_config.json");
    snprintf(p, sizeof p, "%s/quantize_config.json", dst);
    assert_int_equal(rb_json_write_file(p, ac, &err), 0);
    json_decref(ac);
    rb_st_file sf;
    snprintf(q, sizeof q, "%s/model.safetensors", src);
    assert_int_equal(rb_st_open(&sf, q, &err), 0);
    rb_st_write_tensor *w = calloc(sf.n, sizeof *w);
    uint8_t **own = calloc(sf.n, sizeof *own); /* mutated copies */
    size_t n = 0;
    for (size_t i = 0; i < sf.n; i++) {
        const rb_st_tensor *t = &sf.tensors[i];
        rb_st_write_tensor *o = &w[n];
        *o = (rb_st_write_tensor){.name = t->name, .dtype = t->dtype, .ndim = t->ndim};
        for (int k = 0; k < t->ndim; k++) o->shape[k] = t->shape[k];
        const int l0 = strstr(t->name, "layers.0.") != NULL, l1 = strstr(t->name, "layers.1.") != NULL;
        if (mut == M_DROP_QZEROS && l0 && strstr(t->name, "v_proj.qzeros")) continue;
        if (mut == M_DROP_GIDX && l0 && strstr(t->name, "v_proj.g_idx")) continue;
        const uint8_t *data = t->data;
        if ((mut == M_GIDX_RANGE && l0 && strstr(t->name, "q_proj.g_idx")) ||
            (mut == M_NAN_SCALE && l1 && strstr(t->name, "o_proj.scales")) || (mut == M_V2 && strstr(t->name, ".qzeros"))) {
            size_t nb = t->end - t->begin;
            uint8_t *b = own[i] = malloc(nb);
            memcpy(b, t->data, nb);
            if (mut == M_GIDX_RANGE) ((int32_t *)b)[5] = 1000;
            if (mut == M_NAN_SCALE) ((float *)b)[3] = NAN;
            if (mut == M_V2) { /* v2 stores the zero itself (v1's stored value + 1) */
                rb_gptq_dims d = {.bits = 4, .in = 8, .out = (int)t->shape[1] * 8, .n_groups = (int)t->shape[0]};
                int32_t *z = malloc(sizeof(int32_t) * (size_t)d.out * d.n_groups);
                uint8_t *zu = malloc((size_t)d.out * d.n_groups);
                rb_gptq_unpack_qzeros(&d, t->data, 1, z);
                for (size_t k = 0; k < (size_t)d.out * d.n_groups; k++) zu[k] = (uint8_t)z[k];
                assert_int_equal(rb_gptq_pack_qzeros(&d, zu, 0, (int32_t *)b, "v2", &err), 0);
                free(z);
                free(zu);
            }
            data = b;
        }
        if (mut == M_QWEIGHT_SHAPE && l1 && strstr(t->name, "down_proj.qweight")) {
            o->shape[0] = t->shape[1];
            o->shape[1] = t->shape[0];
        }
        if (mut == M_SCALES_DTYPE && l0 && strstr(t->name, "k_proj.scales")) o->dtype = RB_DT_I32;
        if (o->dtype == RB_DT_F32) o->data = (const float *)data;
        else o->raw = data;
        n++;
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dst);
    assert_int_equal(rb_safetensors_write(p, w, n, &err), 0);
    for (size_t i = 0; i < sf.n; i++) free(own[i]);
    free(own);
    free(w);
    rb_st_close(&sf);
}

static void test_bad_dirs(void **state) {
    fx *f = *state;
    run r = {.abs_row = -1};
    run_make(f, &r, "a", "tiny", 4, 1, RB_QGRAN_GROUP, 32, 1, 1, 1);
    rb_export_in in = export_in(&r);
    char good[700], bad[800];
    rb_error err = {0};
    assert_int_equal(do_export(f, &in, "good", good, sizeof good, &err), 0);
    rb_model *e = NULL;
    int k = 0;
#define BAD(mut, key, val, code, needle)                                           \
    do {                                                                           \
        snprintf(bad, sizeof bad, "%s/bad%d", f->dir, k++);                        \
        rewrite(good, bad, mut, key, val);                                         \
        expect(rb_model_open(bad, &e, &err), code, &err, needle);                  \
        assert_null(e);                                                            \
    } while (0)
    BAD(M_GIDX_RANGE, NULL, NULL, RB_EFORMAT, "model.layers.0.self_attn.q_proj.g_idx: g_idx[5] = 1000 outside [0, 2)");
    BAD(M_QWEIGHT_SHAPE, NULL, NULL, RB_EFORMAT, "tensor model.layers.1.mlp.down_proj.qweight: shape [64, 22] but the model's widths with bits 4, group_size 32 (");
    BAD(M_SCALES_DTYPE, NULL, NULL, RB_EFORMAT, "model.layers.0.self_attn.k_proj.scales: dtype I32");
    BAD(M_DROP_QZEROS, NULL, NULL, RB_ENOTFOUND, "tensor model.layers.0.self_attn.v_proj.qzeros: missing");
    BAD(M_DROP_GIDX, NULL, NULL, RB_ENOTFOUND, "v_proj.g_idx: missing (required with desc_act)");
    BAD(M_NONE, "desc_act", json_false(), RB_EFORMAT, "but desc_act is false, where engines use c / group_size");
    BAD(M_NONE, "bits", json_integer(5), RB_EUNSUPPORTED, "quantization_config: key 'bits': GPTQ packing: 5-bit");
    BAD(M_NONE, "bits", NULL, RB_ENOTFOUND, "quantization_config: key 'bits': missing");
    BAD(M_NONE, "bits", json_integer(8), RB_EFORMAT, "q_proj.qweight: shape [8, 64] but the model's widths with bits 8, group_size 32");
    BAD(M_NONE, "group_size", json_integer(0), RB_EFORMAT, "key 'group_size': 0");
    BAD(M_NONE, "group_size", json_integer(16), RB_EFORMAT, "q_proj.qzeros: shape [2, 8] but");
    BAD(M_NONE, "quant_method", json_string("awq"), RB_EUNSUPPORTED, "quant_method 'awq' is not supported");
    BAD(M_NONE, "checkpoint_format", json_string("marlin"), RB_EUNSUPPORTED, "checkpoint_format 'marlin'");
    BAD(M_NONE, "lm_head", json_true(), RB_EUNSUPPORTED, "quantized lm_head");
#undef BAD
    /* a non-finite scale is found when its layer is loaded */
    snprintf(bad, sizeof bad, "%s/nan", f->dir);
    rewrite(good, bad, M_NAN_SCALE, NULL, NULL);
    assert_int_equal(rb_model_open(bad, &e, &err), 0);
    rb_layer_weights w;
    assert_int_equal(rb_layer_weights_init(&w, rb_model_config(e), &err), 0);
    assert_int_equal(rb_model_load_layer(e, 0, &w, &err), 0);
    expect(rb_model_load_layer(e, 1, &w, &err), RB_EFORMAT, &err,
           "tensor model.layers.1.self_attn.o_proj.qweight: scales[0][3] is not finite");
    rb_layer_weights_free(&w);
    rb_model_close(e);
    /* quantize_config.json alone (AutoGPTQ), and checkpoint_format gptq_v2: the same weights */
    snprintf(bad, sizeof bad, "%s/autogptq", f->dir);
    rewrite(good, bad, M_NONE, "-", NULL);
    check_reopen(&r, bad);
    snprintf(bad, sizeof bad, "%s/v2", f->dir);
    rewrite(good, bad, M_V2, NULL, NULL);
    check_reopen(&r, bad);
    /* truncated */
    snprintf(bad, sizeof bad, "%s/trunc", f->dir);
    rewrite(good, bad, M_NONE, NULL, NULL);
    char p[900];
    snprintf(p, sizeof p, "%s/model.safetensors", bad);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(truncate(p, st.st_size / 2), 0);
    assert_int_not_equal(rb_model_open(bad, &e, &err), 0);
    assert_non_null(strstr(err.msg, "model.safetensors"));
    /* a plain checkpoint next to a stray quantize_config.json stays plain; a gptq quantization_config
     * without packed tensors is an error */
    snprintf(p, sizeof p, "%s/quantize_config.json", r.mdir);
    json_t *ac = read_json(good, "quantize_config.json");
    assert_int_equal(rb_json_write_file(p, ac, &err), 0);
    json_decref(ac);
    assert_int_equal(rb_model_open(r.mdir, &e, &err), 0);
    rb_model_close(e);
    json_t *cfg = read_json(r.mdir, "config.json"), *gc = read_json(good, "config.json");
    json_object_set(cfg, "quantization_config", json_object_get(gc, "quantization_config"));
    snprintf(p, sizeof p, "%s/config.json", r.mdir);
    assert_int_equal(rb_json_write_file(p, cfg, &err), 0);
    json_decref(cfg);
    json_decref(gc);
    expect(rb_model_open(r.mdir, &e, &err), RB_ENOTFOUND, &err, "quantization method gptq, but no GPTQ tensor");
    run_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rtn_channel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gptq_act_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_dirs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

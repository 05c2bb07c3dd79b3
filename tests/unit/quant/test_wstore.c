/* The weight store (quant/rb_wstore.h): bit-exact round trips of quantized layers (per channel,
 * groups, act-order GPTQ with groups on real Hessians, 16-bit codes), h_err records, and refusals:
 * a weight off its grid, an unfinished store, another model or id, a damaged code. */
#include "rb_test.h"

#include <hdf5.h>
#include <math.h>
#include <unistd.h>

#include "core/rb_rng.h"
#include "model/rb_make_model.h"
#include "model/rb_model.h"
#include "quant/rb_gptq.h"
#include "quant/rb_wstore.h"

typedef struct fx {
    char dir[512], path[600];
    rb_model *m;
    rb_llama_config c;
    rb_layer_weights w[2]; /* the model's two layers, quantized by the test */
    rb_wparams p[2][RB_LIN_COUNT]; /* their integer grids (quantize) */
} fx;

static int setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    rb_test_tmpdir(f->dir, sizeof f->dir);
    char mdir[700];
    snprintf(mdir, sizeof mdir, "%s/m", f->dir);
    snprintf(f->path, sizeof f->path, "%s/wquant.h5", f->dir);
    rb_error err = {0};
    rb_make_model_opts o = {.preset = "tiny", .seed = 3};
    assert_int_equal(rb_make_model(mdir, &o, &err), 0);
    assert_int_equal(rb_model_open(mdir, &f->m, &err), 0);
    f->c = *rb_model_config(f->m);
    for (int l = 0; l < 2; l++) {
        assert_int_equal(rb_layer_weights_init(&f->w[l], &f->c, &err), 0);
        assert_int_equal(rb_model_load_layer(f->m, l, &f->w[l], &err), 0);
    }
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    for (int l = 0; l < 2; l++) {
        rb_layer_weights_free(&f->w[l]);
        for (int lin = 0; lin < RB_LIN_COUNT; lin++) rb_wparams_free(&f->p[l][lin]);
    }
    rb_model_close(f->m);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) fprintf(stderr, "# could not remove %s\n", f->dir);
    free(f);
    return 0;
}

/* Quantizes every linear of both layers with spec (RTN, or GPTQ on a random Hessian). */
static void quantize(fx *f, const rb_qspec *spec, int gptq, int act_order) {
    rb_error err = {0};
    rb_rng r;
    rb_rng_seed(&r, 5, "wstore-x");
    for (int l = 0; l < 2; l++)
        for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
            int rows, cols;
            float *m = rb_layer_linear(&f->w[l], &f->c, lin, &rows, &cols);
            rb_wparams *p = &f->p[l][lin];
            rb_wparams_free(p);
            assert_int_equal(rb_wparams_alloc(p, spec, rows, cols, &err), 0);
            if (!gptq) {
                assert_int_equal(rb_qparams_find(spec, m, rows, cols, 0, p->scale, p->zero, &err), 0);
                assert_int_equal(rb_quant_apply(spec, m, rows, cols, 0, p->scale, p->zero, &err), 0);
                for (int j = 0; p->g_idx && j < cols; j++) p->g_idx[j] = j / spec->group;
                continue;
            }
            int ntok = 4 * cols;
            float *x = malloc(sizeof(float) * (size_t)ntok * cols);
            rb_rng_gauss(&r, x, (size_t)ntok * cols, 0.0, 1.0);
            for (int t = 0; t < ntok; t++) /* column scales make act-order permute */
                for (int j = 0; j < cols; j++) x[(size_t)t * cols + j] *= 1.0f + (float)((j * 7) % 13);
            rb_hessian h;
            assert_int_equal(rb_hessian_init(&h, cols, &err), 0);
            rb_hessian_add(&h, x, ntok);
            rb_gptq_opts go = rb_gptq_opts_default();
            go.act_order = act_order;
            rb_qparams_out po = {p->scale, p->zero, p->g_idx};
            go.params = &po;
            assert_int_equal(rb_gptq_quantize(spec, m, rows, cols, h.h, &go, NULL, &err), 0);
            rb_hessian_free(&h);
            free(x);
        }
}

/* Stores both layers, reopens, and checks every weight comes back bit for bit. */
static void roundtrip(fx *f, const rb_qspec *spec, int permuted) {
    rb_error err = {0};
    const int has_grid = f->p[0][0].scale != NULL; /* quantize() ran for these weights */
    rb_wstore *s;
    assert_int_equal(rb_wstore_create(f->path, &f->c, "run-1", "spec", "rtn", &s, &err), 0);
    for (int l = 0; l < 2; l++) {
        double he[RB_LIN_COUNT], hr[RB_LIN_COUNT];
        for (int i = 0; i < RB_LIN_COUNT; i++) he[i] = l + i * 0.5, hr[i] = NAN;
        /* layer 1 without grids: a store may hold them for some layers only (and version 1 for none) */
        int rc = rb_wstore_put_layer(s, l, &f->w[l], spec, permuted, he, hr, l == 0 && has_grid ? f->p[0] : NULL, &err);
        if (rc) fail_msg("put_layer: %s", err.msg);
    }
    assert_int_equal(rb_wstore_finish(s, &err), 0);
    rb_wstore_close(s);
    assert_int_equal(rb_wstore_open(f->path, &f->c, "run-1", &s, &err), 0);
    rb_layer_weights back;
    assert_int_equal(rb_layer_weights_init(&back, &f->c, &err), 0);
    for (int l = 0; l < 2; l++) {
        assert_int_equal(rb_wstore_load_layer(s, l, &back, &err), 0);
        for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
            int rows, cols;
            const float *a = rb_layer_linear(&f->w[l], &f->c, lin, &rows, &cols);
            const float *b = rb_layer_linear(&back, &f->c, lin, &rows, &cols);
            assert_memory_equal(a, b, sizeof(float) * (size_t)rows * cols);
            double he, hr;
            assert_int_equal(rb_wstore_herr(s, l, lin, &he, &hr, &err), 0);
            assert_true(he == l + lin * 0.5 && isnan(hr));
            rb_wparams p;
            if (l == 1 || !has_grid) {
                assert_int_equal(rb_wstore_load_params(s, l, lin, &p, &err), RB_ENOTFOUND);
                assert_non_null(strstr(err.msg, "rerun the weight quantization"));
                continue;
            }
            assert_int_equal(rb_wstore_load_params(s, l, lin, &p, &err), 0);
            const rb_wparams *o = &f->p[l][lin];
            assert_int_equal(p.n_units, o->n_units);
            assert_memory_equal(p.scale, o->scale, sizeof(float) * (size_t)rows * p.n_units);
            assert_memory_equal(p.zero, o->zero, sizeof(float) * (size_t)rows * p.n_units);
            assert_true(!p.g_idx == !o->g_idx);
            if (p.g_idx) assert_memory_equal(p.g_idx, o->g_idx, sizeof(int32_t) * (size_t)cols);
            if (rb_wparams_check(spec, &p, b, &err)) fail_msg("grid: %s", err.msg);
            /* unsigned codes for the GPTQ layout: any sym grid; raw_minmax zeros fall outside the range */
            int rc = rb_wparams_codes(spec, &p, b, NULL, NULL, &err);
            if (!spec->raw_minmax && rc) fail_msg("codes: %s", err.msg);
            rb_wparams_free(&p);
        }
    }
    rb_layer_weights_free(&back);
    rb_wstore_close(s);
    assert_int_equal(unlink(f->path), 0);
}

static void test_roundtrips(void **state) {
    fx *f = *state;
    rb_qspec ch = rb_qspec_make(4, 1, RB_QGRAN_CHANNEL, 0);
    ch.clip_search = 1;
    quantize(f, &ch, 0, 0);
    roundtrip(f, &ch, 0);
    rb_qspec g = rb_qspec_make(3, 0, RB_QGRAN_GROUP, 16);
    quantize(f, &g, 1, 0);
    roundtrip(f, &g, 0);
    /* act-order with groups: a contiguous chunk of 16 columns spans several permuted groups */
    rb_qspec ga = rb_qspec_make(2, 0, RB_QGRAN_GROUP, 16);
    quantize(f, &ga, 1, 1);
    roundtrip(f, &ga, 1);
    rb_qspec raw = rb_qspec_make(4, 0, RB_QGRAN_CHANNEL, 0);
    raw.raw_minmax = 1;
    raw.clip = 0.8f;
    quantize(f, &raw, 0, 0);
    roundtrip(f, &raw, 0);
}

/* Units wider than 2^bits columns under a group spec hold at most 2^bits values, unless the groups
 * were permuted (act-order GPTQ): then up to the unit's width, with 16-bit codes past 256. */
static void test_wide_codes(void **state) {
    fx *f = *state;
    rb_error err = {0};
    rb_qspec g = rb_qspec_make(8, 0, RB_QGRAN_GROUP, 1 << 20); /* one unit per row, up to its width */
    for (int l = 0; l < 2; l++) {
        assert_int_equal(rb_model_load_layer(f->m, l, &f->w[l], &err), 0);
        for (int lin = 0; lin < RB_LIN_COUNT; lin++) rb_wparams_free(&f->p[l][lin]); /* FP weights: no grid */
    }
    roundtrip(f, &g, 0); /* FP weights: every value distinct, up to 176 per row of down_proj */
    /* and a row with 300 distinct values */
    rb_llama_config c = f->c;
    c.hidden_dim = 320;
    rb_layer_weights w;
    assert_int_equal(rb_layer_weights_init(&w, &c, &err), 0);
    rb_rng r;
    rb_rng_seed(&r, 9, "wide");
    for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
        int rows, cols;
        float *m = rb_layer_linear(&w, &c, lin, &rows, &cols);
        rb_rng_gauss(&r, m, (size_t)rows * cols, 0.0, 1.0);
    }
    rb_wstore *s;
    assert_int_equal(rb_wstore_create(f->path, &c, "x", "spec", "rtn", &s, &err), 0);
    assert_int_equal(rb_wstore_put_layer(s, 0, &w, &g, 0, NULL, NULL, NULL, &err), RB_EINVAL); /* 320 > 2^8 */
    rb_wstore_close(s);
    assert_int_equal(rb_wstore_create(f->path, &c, "x", "spec", "rtn", &s, &err), 0);
    assert_int_equal(rb_wstore_put_layer(s, 0, &w, &g, 1, NULL, NULL, NULL, &err), 0);
    assert_int_equal(rb_wstore_put_layer(s, 1, &w, &g, 1, NULL, NULL, NULL, &err), 0);
    assert_int_equal(rb_wstore_finish(s, &err), 0);
    rb_wstore_close(s);
    assert_int_equal(rb_wstore_open(f->path, &c, "x", &s, &err), 0);
    rb_layer_weights back;
    assert_int_equal(rb_layer_weights_init(&back, &c, &err), 0);
    assert_int_equal(rb_wstore_load_layer(s, 1, &back, &err), 0);
    int rows, cols;
    const float *a = rb_layer_linear(&w, &c, RB_LIN_DOWN, &rows, &cols);
    const float *b = rb_layer_linear(&back, &c, RB_LIN_DOWN, &rows, &cols);
    assert_memory_equal(a, b, sizeof(float) * (size_t)rows * cols);
    rb_layer_weights_free(&back);
    rb_layer_weights_free(&w);
    rb_wstore_close(s);
    unlink(f->path);
}

static void test_refusals(void **state) {
    fx *f = *state;
    rb_error err = {0};
    rb_wstore *s;
    for (int l = 0; l < 2; l++) assert_int_equal(rb_model_load_layer(f->m, l, &f->w[l], &err), 0);
    /* FP weights are not on a 4-bit per-channel grid */
    rb_qspec ch = rb_qspec_make(4, 1, RB_QGRAN_CHANNEL, 0);
    assert_int_equal(rb_wstore_create(f->path, &f->c, "run-1", "spec", "rtn", &s, &err), 0);
    assert_int_equal(rb_wstore_put_layer(s, 0, &f->w[0], &ch, 0, NULL, NULL, NULL, &err), RB_EINVAL);
    assert_non_null(strstr(err.msg, "layers.0.q_proj: row 0"));
    assert_non_null(strstr(err.msg, "more than 16 distinct values"));
    /* finishing with a layer missing is refused; closing removes the .partial */
    assert_int_equal(rb_wstore_finish(s, &err), RB_EINVAL);
    rb_wstore_close(s);
    char partial[700];
    snprintf(partial, sizeof partial, "%s.partial", f->path);
    assert_int_equal(access(partial, F_OK), -1);
    assert_int_equal(rb_wstore_open(f->path, &f->c, NULL, &s, &err), RB_ENOTFOUND);
    /* a finished store: wrong id, other model, a damaged code */
    quantize(f, &ch, 0, 0);
    assert_int_equal(rb_wstore_create(f->path, &f->c, "run-1", "spec", "rtn", &s, &err), 0);
    for (int l = 0; l < 2; l++) assert_int_equal(rb_wstore_put_layer(s, l, &f->w[l], &ch, 0, NULL, NULL, NULL, &err), 0);
    assert_int_equal(rb_wstore_finish(s, &err), 0);
    rb_wstore_close(s);
    assert_int_equal(rb_wstore_open(f->path, &f->c, "run-2", &s, &err), RB_EFORMAT);
    assert_non_null(strstr(err.msg, "written for 'run-1', not for 'run-2'"));
    rb_llama_config other = f->c;
    other.hidden_dim = 192;
    assert_int_equal(rb_wstore_open(f->path, &other, NULL, &s, &err), RB_EFORMAT);
    assert_non_null(strstr(err.msg, "hidden_dim = 176, the model has 192"));
    hid_t h = H5Fopen(f->path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(h >= 0);
    hid_t d = H5Dopen2(h, "/1/o_proj/codes", H5P_DEFAULT);
    assert_true(d >= 0);
    size_t n = (size_t)f->c.dim * f->c.n_heads * f->c.head_dim;
    uint8_t *bad = malloc(n);
    memset(bad, 200, n);
    assert_true(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bad) >= 0);
    free(bad);
    H5Dclose(d);
    H5Fclose(h);
    assert_int_equal(rb_wstore_open(f->path, &f->c, "run-1", &s, &err), 0);
    rb_layer_weights back;
    assert_int_equal(rb_layer_weights_init(&back, &f->c, &err), 0);
    assert_int_equal(rb_wstore_load_layer(s, 0, &back, &err), 0);
    assert_int_equal(rb_wstore_load_layer(s, 1, &back, &err), RB_EFORMAT);
    assert_non_null(strstr(err.msg, "/1/o_proj: code 200 at [0][0] outside the palette"));
    rb_layer_weights_free(&back);
    rb_wstore_close(s);
    unlink(f->path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrips),
        cmocka_unit_test(test_wide_codes),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

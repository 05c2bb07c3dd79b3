/* rb_wstore: exact store of quantized weights (layout and contract in rb_wstore.h). */
#include "quant/rb_wstore.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rb_file.h"
#include "core/rb_h5.h"

/* Bounds on a store's attributes: far above any real model, low enough that a damaged file cannot
 * drive a huge allocation. */
#define WS_MAX_DIM (1 << 20)
#define WS_MAX_LAYERS (1 << 16)
/* Most distinct values one unit may hold: a uint16 code. */
#define WS_MAX_PALETTE 65535

struct rb_wstore {
    char *path;    /* final name */
    char *partial; /* <path>.partial */
    hid_t file;
    int writing;   /* 1 while the .partial is being written */
    rb_llama_config cfg;
    char spec[128];      /* the weight quantizer's description (attribute spec) */
    unsigned char *done; /* [n_layers] layers put (writing) */
    /* encoder scratch: open-addressing table over float bit patterns, stamped per unit */
    uint32_t *hkey, *hstamp;
    int32_t *hval;
    size_t hcap;
    uint32_t stamp;
};

const char *rb_wstore_path(const rb_wstore *s) { return s->writing ? s->partial : s->path; }

static void ws_free(rb_wstore *s) {
    if (!s) return;
    rb_h5_close(&s->file);
    free(s->path);
    free(s->partial);
    free(s->done);
    free(s->hkey);
    free(s->hstamp);
    free(s->hval);
    free(s);
}

void rb_wstore_close(rb_wstore *s) {
    if (!s) return;
    int writing = s->writing;
    rb_h5_close(&s->file);
    if (writing) unlink(s->partial);
    ws_free(s);
}

static int h5_fail(rb_error *err, int code, const char *path, const char *what) {
    char d[256];
    rb_h5_last_error(d, sizeof d);
    return rb_error_set(err, code, "%s: %s%s%s", path, what, *d ? ": " : "", d);
}

static int new_store(const char *path, const rb_llama_config *c, rb_wstore **out, rb_error *err) {
    rb_wstore *s = calloc(1, sizeof *s);
    size_t n = strlen(path);
    if (!s || !(s->path = strdup(path)) || !(s->partial = malloc(n + 9))) {
        ws_free(s);
        return rb_error_set(err, RB_ENOMEM, "weight store: out of memory");
    }
    memcpy(s->partial, path, n);
    memcpy(s->partial + n, ".partial", 9);
    s->file = -1;
    s->cfg = *c;
    *out = s;
    return 0;
}

/* ---- writing ---------------------------------------------------------------------------- */

int rb_wstore_create(const char *path, const rb_llama_config *c, const char *id, const char *spec_desc,
                     const char *algo, rb_wstore **out, rb_error *err) {
    *out = NULL;
    rb_wstore *s;
    int rc = new_store(path, c, &s, err);
    if (rc) return rc;
    snprintf(s->spec, sizeof s->spec, "%s", spec_desc);
    if (!(s->done = calloc((size_t)c->n_layers, 1))) {
        ws_free(s);
        return rb_error_set(err, RB_ENOMEM, "weight store: out of memory");
    }
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    hid_t fapl = rb_h5_fapl_write();
    s->file = H5Fcreate(s->partial, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    rb_h5_close(&fapl);
    if (s->file < 0) {
        rc = h5_fail(err, RB_EIO, s->partial, "cannot create the weight store");
    } else if (rb_h5_put_str(s->file, "format", RB_WSTORE_FORMAT) || rb_h5_put_i32(s->file, "version", RB_WSTORE_VERSION) ||
               rb_h5_put_str(s->file, "id", id) || rb_h5_put_str(s->file, "spec", spec_desc) ||
               rb_h5_put_str(s->file, "algo", algo) || rb_h5_put_i32(s->file, "n_layers", c->n_layers) ||
               rb_h5_put_i32(s->file, "dim", c->dim) || rb_h5_put_i32(s->file, "hidden_dim", c->hidden_dim) ||
               rb_h5_put_i32(s->file, "n_heads", c->n_heads) || rb_h5_put_i32(s->file, "n_kv_heads", c->n_kv_heads) ||
               rb_h5_put_i32(s->file, "head_dim", c->head_dim)) {
        rc = h5_fail(err, RB_EIO, s->partial, "cannot write the weight store header");
    }
    rb_h5_quiet_off(&q);
    if (rc) {
        rb_h5_close(&s->file);
        unlink(s->partial);
        ws_free(s);
        return rc;
    }
    s->writing = 1;
    *out = s;
    return 0;
}

/* Columns per unit and the largest number of distinct values a unit of w may hold under spec: the
 * grid's 2^bits, or with permuted groups (act-order GPTQ: a contiguous chunk spans several groups)
 * up to the chunk's width. */
static void unit_layout(const rb_qspec *spec, int permuted_groups, int cols, int *unit_cols, long *kmax) {
    *unit_cols = spec->gran == RB_QGRAN_GROUP && spec->group < cols ? spec->group : cols;
    *kmax = 1L << spec->bits;
    if (permuted_groups && spec->gran == RB_QGRAN_GROUP && *kmax < *unit_cols) *kmax = *unit_cols;
    if (*kmax > WS_MAX_PALETTE) *kmax = WS_MAX_PALETTE;
}

static int table_reserve(rb_wstore *s, long kmax, rb_error *err) {
    size_t cap = 64;
    while (cap < 2 * (size_t)kmax) cap *= 2;
    if (cap <= s->hcap) return 0;
    free(s->hkey);
    free(s->hstamp);
    free(s->hval);
    s->hkey = malloc(cap * sizeof *s->hkey);
    s->hstamp = calloc(cap, sizeof *s->hstamp);
    s->hval = malloc(cap * sizeof *s->hval);
    s->hcap = s->hkey && s->hstamp && s->hval ? cap : 0;
    s->stamp = 0;
    return s->hcap ? 0 : rb_error_set(err, RB_ENOMEM, "weight store: out of memory");
}

/* Palette index of value bits `b` in the current unit, adding it (and its value) when new; -1 when
 * the unit already holds kmax values. */
static long palette_index(rb_wstore *s, uint32_t b, float v, float *pal, long *k, long kmax) {
    size_t mask = s->hcap - 1, h = (size_t)(b * 2654435761u) & mask;
    while (s->hstamp[h] == s->stamp) {
        if (s->hkey[h] == b) return s->hval[h];
        h = (h + 1) & mask;
    }
    if (*k == kmax) return -1;
    s->hstamp[h] = s->stamp;
    s->hkey[h] = b;
    s->hval[h] = (int32_t)*k;
    pal[*k] = v;
    return (*k)++;
}

/* Encodes w[rows][cols] into codes (uint8 or uint16 per *wide) and palette [units][K]; *K = the
 * largest distinct count over units (≥ 1). Tries uint8 first, redoes with uint16 if needed. */
static int encode(rb_wstore *s, const float *w, int rows, int cols, int unit_cols, long kmax, void **codes,
                  float **palette, long *K, int *wide, const char *name, rb_error *err) {
    long upr = (cols + unit_cols - 1) / unit_cols, units = (long)rows * upr;
    float *pal = calloc((size_t)units * (size_t)kmax, sizeof *pal);
    long *cnt = calloc((size_t)units, sizeof *cnt);
    size_t n = (size_t)rows * cols;
    uint16_t *c16 = malloc(n * sizeof *c16);
    if (!pal || !cnt || !c16) {
        free(pal);
        free(cnt);
        free(c16);
        return rb_error_set(err, RB_ENOMEM, "weight store: out of memory");
    }
    long kmaxseen = 1;
    int rc = 0;
    for (int r = 0; r < rows && !rc; r++)
        for (long u = 0; u < upr && !rc; u++) {
            s->stamp++;
            if (s->stamp == 0) { /* wrapped: clear the stamps once */
                memset(s->hstamp, 0, s->hcap * sizeof *s->hstamp);
                s->stamp = 1;
            }
            long ui = (long)r * upr + u, c0 = u * unit_cols, c1 = c0 + unit_cols < cols ? c0 + unit_cols : cols;
            for (long c = c0; c < c1; c++) {
                float v = w[(size_t)r * cols + c];
                if (!isfinite(v)) {
                    rc = rb_error_set(err, RB_EINVAL, "weight store: %s: non-finite weight at [%d][%ld]", name, r, c);
                    break;
                }
                uint32_t b;
                memcpy(&b, &v, sizeof b);
                long k = palette_index(s, b, v, pal + (size_t)ui * kmax, &cnt[ui], kmax);
                if (k < 0) {
                    rc = rb_error_set(err, RB_EINVAL,
                                      "weight store: %s: row %d, columns %ld..%ld hold more than %ld distinct values: "
                                      "not on the grid of the weight quantizer",
                                      name, r, c0, c1 - 1, kmax);
                    break;
                }
                c16[(size_t)r * cols + c] = (uint16_t)k;
            }
            if (cnt[ui] > kmaxseen) kmaxseen = cnt[ui];
        }
    if (rc) {
        free(pal);
        free(cnt);
        free(c16);
        return rc;
    }
    /* compact the palette to K columns */
    for (long ui = 0; ui < units; ui++) memmove(pal + (size_t)ui * kmaxseen, pal + (size_t)ui * kmax, (size_t)kmaxseen * sizeof *pal);
    free(cnt);
    *K = kmaxseen;
    *palette = pal;
    *wide = kmaxseen > 256;
    if (*wide) {
        *codes = c16;
    } else {
        uint8_t *c8 = malloc(n);
        if (!c8) {
            free(pal);
            free(c16);
            return rb_error_set(err, RB_ENOMEM, "weight store: out of memory");
        }
        for (size_t i = 0; i < n; i++) c8[i] = (uint8_t)c16[i];
        free(c16);
        *codes = c8;
    }
    return 0;
}

/* The integer grid datasets of a linear (version 2), after checking it reproduces w exactly. */
static int put_params(rb_wstore *s, hid_t g, const rb_wparams *p, const float *w, int rows, int cols,
                      const rb_qspec *spec, const char *name, rb_error *err) {
    if (p->rows != rows || p->cols != cols)
        return rb_error_set(err, RB_EINVAL, "weight store: %s: parameters for %d x %d, the linear is %d x %d", name,
                            p->rows, p->cols, rows, cols);
    int rc = rb_wparams_check(spec, p, w, err);
    if (rc) return rb_error_prefix(err, "weight store: %s", name);
    hsize_t du[2] = {(hsize_t)rows, (hsize_t)p->n_units}, dg[1] = {(hsize_t)cols};
    int bad = rb_h5_put_dataset_checked(g, "scale", 2, du, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, p->scale) ||
              rb_h5_put_dataset_checked(g, "zero", 2, du, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, p->zero) ||
              (p->g_idx && rb_h5_put_dataset_checked(g, "g_idx", 1, dg, H5T_STD_I32LE, H5T_NATIVE_INT32, p->g_idx));
    return bad ? h5_fail(err, RB_EIO, s->partial, name) : 0;
}

static int put_linear(rb_wstore *s, hid_t gl, int lin, const float *w, int rows, int cols, const rb_qspec *spec,
                      int permuted_groups, double h_err, double h_err_rtn, const rb_wparams *params, const char *name,
                      rb_error *err) {
    int unit_cols;
    long kmax, K = 0;
    unit_layout(spec, permuted_groups, cols, &unit_cols, &kmax);
    int rc = table_reserve(s, kmax, err);
    if (rc) return rc;
    void *codes = NULL;
    float *pal = NULL;
    int wide;
    if ((rc = encode(s, w, rows, cols, unit_cols, kmax, &codes, &pal, &K, &wide, name, err))) return rc;
    long units = (long)rows * ((cols + unit_cols - 1) / unit_cols);
    hsize_t dc[2] = {(hsize_t)rows, (hsize_t)cols}, dp[2] = {(hsize_t)units, (hsize_t)K};
    hid_t g = H5Gcreate2(gl, rb_linear_name(lin), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int bad = g < 0 || rb_h5_put_i32(g, "unit_cols", unit_cols) || rb_h5_put_f64(g, "h_err", h_err) ||
              rb_h5_put_f64(g, "h_err_rtn", h_err_rtn) ||
              rb_h5_put_dataset_checked(g, "codes", 2, dc, wide ? H5T_STD_U16LE : H5T_STD_U8LE,
                                        wide ? H5T_NATIVE_UINT16 : H5T_NATIVE_UINT8, codes) ||
              rb_h5_put_dataset_checked(g, "palette", 2, dp, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, pal);
    free(codes);
    free(pal);
    if (bad) {
        rb_h5_close(&g);
        return h5_fail(err, RB_EIO, s->partial, name);
    }
    rc = params ? put_params(s, g, params, w, rows, cols, spec, name, err) : 0;
    rb_h5_close(&g);
    return rc;
}

int rb_wstore_put_layer(rb_wstore *s, int layer, const rb_layer_weights *w, const rb_qspec *spec,
                        int permuted_groups, const double *h_err, const double *h_err_rtn, const rb_wparams *params,
                        rb_error *err) {
    RB_ASSERT(s->writing && layer >= 0 && layer < s->cfg.n_layers && spec->bits < RB_QBITS_OFF);
    char lname[32];
    snprintf(lname, sizeof lname, "%d", layer);
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    int rc = 0;
    hid_t gl = H5Gcreate2(s->file, lname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (gl < 0) rc = h5_fail(err, RB_EIO, s->partial, "cannot add a layer");
    for (int lin = 0; lin < RB_LIN_COUNT && !rc; lin++) {
        int rows, cols;
        const float *m = rb_layer_linear(w, &s->cfg, lin, &rows, &cols);
        char name[64];
        snprintf(name, sizeof name, "layers.%d.%s", layer, rb_linear_name(lin));
        rc = put_linear(s, gl, lin, m, rows, cols, spec, permuted_groups, h_err ? h_err[lin] : NAN,
                        h_err_rtn ? h_err_rtn[lin] : NAN, params ? &params[lin] : NULL, name, err);
    }
    rb_h5_close(&gl);
    rb_h5_quiet_off(&q);
    if (!rc) s->done[layer] = 1;
    return rc;
}

int rb_wstore_finish(rb_wstore *s, rb_error *err) {
    RB_ASSERT(s->writing);
    for (int l = 0; l < s->cfg.n_layers; l++)
        if (!s->done[l]) return rb_error_set(err, RB_EINVAL, "weight store: layer %d was not stored", l);
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    int bad = H5Fflush(s->file, H5F_SCOPE_GLOBAL) < 0;
    rb_h5_quiet_off(&q);
    if (bad) return h5_fail(err, RB_EIO, s->partial, "cannot flush the weight store");
    if (H5Fclose(s->file) < 0) { /* the last writes happen here: a full disk shows up now */
        s->file = -1;
        return h5_fail(err, RB_EIO, s->partial, "closing failed");
    }
    s->file = -1;
    int rc = rb_rename_durable(s->partial, s->path, err);
    if (rc) return rc;
    s->writing = 0;
    rb_h5_quiet_on(&q);
    hid_t fapl = rb_h5_fapl_read();
    s->file = H5Fopen(s->path, H5F_ACC_RDONLY, fapl);
    rb_h5_close(&fapl);
    rb_h5_quiet_off(&q);
    return s->file < 0 ? h5_fail(err, RB_EIO, s->path, "cannot reopen the weight store") : 0;
}

/* ---- reading ---------------------------------------------------------------------------- */

static int wstore_open_direct(const char *path, const rb_llama_config *c, const char *id, rb_wstore **out,
                              rb_error *err);

/* The probe of rb_wstore_open: open, then decode every layer, grid and Hessian error once (in the
 * guard's child), i.e. everything rb_wstore_load_layer / _load_params / _herr read later without a
 * guard. A read that fails cleanly does not end the probe: the caller may go on to other reads after
 * it (fuzz_wstore does), so each one must have run in the child. The first error is returned. */
typedef struct probe_ctx {
    const char *path, *id;
    const rb_llama_config *c;
} probe_ctx;

static int probe_fn(void *ctx, rb_error *err) {
    probe_ctx *p = ctx;
    rb_wstore *s;
    int rc = wstore_open_direct(p->path, p->c, p->id, &s, err);
    if (rc) return rc;
    rb_layer_weights w;
    if (!(rc = rb_layer_weights_init(&w, p->c, err))) {
        rb_error e = {0};
        for (int l = 0; l < p->c->n_layers; l++) {
            int r = rb_wstore_load_layer(s, l, &w, &e);
            if (r && !rc) rc = r, *err = e;
            for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
                rb_wparams g;
                r = rb_wstore_load_params(s, l, lin, &g, &e);
                if (r == 0) rb_wparams_free(&g);
                else if (r != RB_ENOTFOUND && !rc) rc = r, *err = e;
                double he, hr;
                r = rb_wstore_herr(s, l, lin, &he, &hr, &e);
                if (r && !rc) rc = r, *err = e;
            }
        }
        rb_layer_weights_free(&w);
    }
    rb_wstore_close(s);
    return rc;
}

int rb_wstore_open(const char *path, const rb_llama_config *c, const char *id, rb_wstore **out, rb_error *err) {
    *out = NULL;
    /* a stored file may be damaged in ways that crash or hang HDF5 itself (issue 16): decode all of it
     * once in a guarded child first; the limit grows with the file (≥ 20 MB/s) */
    struct stat st;
    double limit = RB_H5_GUARD_TIMEOUT_S + (stat(path, &st) == 0 ? (double)st.st_size / 20e6 : 0.0);
    probe_ctx pc = {path, id, c};
    int rc = rb_h5_probe(path, probe_fn, &pc, limit, err);
    return rc ? rc : wstore_open_direct(path, c, id, out, err);
}

static int wstore_open_direct(const char *path, const rb_llama_config *c, const char *id, rb_wstore **out,
                              rb_error *err) {
    *out = NULL;
    rb_wstore *s;
    int rc = new_store(path, c, &s, err);
    if (rc) return rc;
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    if ((rc = rb_h5_open_read(path, &s->file, err))) goto out;
    rb_h5_reader R = {.path = path, .err = err};
    char fmt[64], got_id[512];
    int ver;
    if ((rc = rb_h5_get_str(&R, s->file, "/", "format", fmt, sizeof fmt))) goto out;
    if (strcmp(fmt, RB_WSTORE_FORMAT)) {
        rc = rb_h5_fail(&R, RB_EFORMAT, "/", "format '%s' is not a rotbench weight store", fmt);
        goto out;
    }
    if ((rc = rb_h5_get_i32(&R, s->file, "/", "version", 1, RB_WSTORE_VERSION, &ver)) ||
        (rc = rb_h5_get_str(&R, s->file, "/", "id", got_id, sizeof got_id)) ||
        (rc = rb_h5_get_str(&R, s->file, "/", "spec", s->spec, sizeof s->spec)))
        goto out;
    if (id && strcmp(id, got_id)) {
        rc = rb_h5_fail(&R, RB_EFORMAT, "/", "written for '%s', not for '%s'", got_id, id);
        goto out;
    }
    static const char *const names[] = {"n_layers", "dim", "hidden_dim", "n_heads", "n_kv_heads", "head_dim"};
    const int want[] = {c->n_layers, c->dim, c->hidden_dim, c->n_heads, c->n_kv_heads, c->head_dim};
    for (int i = 0; i < 6 && !rc; i++) {
        int v;
        if ((rc = rb_h5_get_i32(&R, s->file, "/", names[i], 1, i == 0 ? WS_MAX_LAYERS : WS_MAX_DIM, &v))) break;
        if (v != want[i]) rc = rb_h5_fail(&R, RB_EFORMAT, "/", "%s = %d, the model has %d", names[i], v, want[i]);
    }
out:
    rb_h5_quiet_off(&q);
    if (rc) {
        ws_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* Opens group /<layer>/<linear> for reading. */
static int open_linear(rb_wstore *s, rb_h5_reader *R, int layer, int lin, char *obj, size_t cap, hid_t *g) {
    snprintf(obj, cap, "/%d/%s", layer, rb_linear_name(lin));
    *g = -1;
    char lname[32];
    snprintf(lname, sizeof lname, "%d", layer);
    hid_t gl;
    int rc = rb_h5_open_group(R, s->file, obj, lname, &gl);
    if (rc) return rc;
    rc = rb_h5_open_group(R, gl, obj, rb_linear_name(lin), g);
    rb_h5_close(&gl);
    return rc;
}

static int load_linear(rb_wstore *s, rb_h5_reader *R, int layer, int lin, float *w, int rows, int cols) {
    char obj[96], dobj[128];
    hid_t g, dc = -1, dp = -1;
    int rc = open_linear(s, R, layer, lin, obj, sizeof obj, &g);
    if (rc) return rc;
    int unit_cols;
    void *codes = NULL;
    float *pal = NULL;
    hsize_t cd[2], pd[2];
    long long want_c[2] = {rows, cols};
    if ((rc = rb_h5_get_i32(R, g, obj, "unit_cols", 1, cols, &unit_cols))) goto out;
    long upr = (cols + unit_cols - 1) / unit_cols;
    long long want_p[2] = {(long long)rows * upr, -1};
    snprintf(dobj, sizeof dobj, "%s/codes", obj);
    if ((rc = rb_h5_open_dataset(R, g, dobj, "codes", H5T_INTEGER, 0, 2, want_c, &dc, cd))) goto out;
    snprintf(dobj, sizeof dobj, "%s/palette", obj);
    if ((rc = rb_h5_open_dataset(R, g, dobj, "palette", H5T_FLOAT, 4, 2, want_p, &dp, pd))) goto out;
    long K = (long)pd[1];
    if (K < 1 || K > WS_MAX_PALETTE) {
        rc = rb_h5_fail(R, RB_EFORMAT, dobj, "%ld palette entries per unit, expected 1..%d", K, WS_MAX_PALETTE);
        goto out;
    }
    size_t n = (size_t)rows * cols;
    codes = malloc(n * sizeof(uint16_t));
    pal = malloc((size_t)pd[0] * (size_t)K * sizeof *pal);
    if (!codes || !pal) {
        rc = rb_error_set(R->err, RB_ENOMEM, "weight store: out of memory");
        goto out;
    }
    uint16_t *c16 = codes;
    if (H5Dread(dc, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, c16) < 0 ||
        H5Dread(dp, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, pal) < 0) {
        rc = rb_h5_fail(R, RB_EFORMAT, obj, "cannot read (damaged file?): %s", rb_h5_detail(R));
        goto out;
    }
    for (int r = 0; r < rows && !rc; r++)
        for (int c = 0; c < cols; c++) {
            size_t i = (size_t)r * cols + c;
            if (c16[i] >= K) {
                rc = rb_h5_fail(R, RB_EFORMAT, obj, "code %u at [%d][%d] outside the palette of %ld", c16[i], r, c, K);
                break;
            }
            float v = pal[((size_t)r * upr + c / unit_cols) * K + c16[i]];
            if (!isfinite(v)) {
                rc = rb_h5_fail(R, RB_EFORMAT, obj, "non-finite value at [%d][%d]", r, c);
                break;
            }
            w[i] = v;
        }
out:
    free(codes);
    free(pal);
    rb_h5_close(&dc);
    rb_h5_close(&dp);
    rb_h5_close(&g);
    return rc;
}

int rb_wstore_load_layer(rb_wstore *s, int layer, rb_layer_weights *w, rb_error *err) {
    RB_ASSERT(!s->writing && layer >= 0 && layer < s->cfg.n_layers);
    rb_h5_reader R = {.path = s->path, .err = err};
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    int rc = 0;
    for (int lin = 0; lin < RB_LIN_COUNT && !rc; lin++) {
        int rows, cols;
        float *m = rb_layer_linear(w, &s->cfg, lin, &rows, &cols);
        rc = load_linear(s, &R, layer, lin, m, rows, cols);
    }
    rb_h5_quiet_off(&q);
    return rc;
}

int rb_wstore_herr(rb_wstore *s, int layer, int lin, double *h_err, double *h_err_rtn, rb_error *err) {
    RB_ASSERT(!s->writing && layer >= 0 && layer < s->cfg.n_layers && lin >= 0 && lin < RB_LIN_COUNT);
    rb_h5_reader R = {.path = s->path, .err = err};
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    char obj[96];
    hid_t g;
    int rc = open_linear(s, &R, layer, lin, obj, sizeof obj, &g);
    if (!rc) rc = rb_h5_get_f64(&R, g, obj, "h_err", h_err);
    if (!rc) rc = rb_h5_get_f64(&R, g, obj, "h_err_rtn", h_err_rtn);
    rb_h5_close(&g);
    rb_h5_quiet_off(&q);
    return rc;
}

int rb_wstore_load_params(rb_wstore *s, int layer, int lin, rb_wparams *p, rb_error *err) {
    RB_ASSERT(!s->writing && layer >= 0 && layer < s->cfg.n_layers && lin >= 0 && lin < RB_LIN_COUNT && p);
    memset(p, 0, sizeof *p);
    rb_h5_reader R = {.path = s->path, .err = err};
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    char obj[96], dobj[128];
    hid_t g, ds = -1, dz = -1, dg = -1;
    int rows, cols, rc = open_linear(s, &R, layer, lin, obj, sizeof obj, &g);
    rb_layer_linear_shape(&s->cfg, lin, &rows, &cols);
    if (rc) goto out;
    int has = rb_h5_has_link(&R, g, obj, "scale");
    if (has < 0) {
        rc = err->code;
        goto out;
    }
    if (!has) {
        rc = rb_error_set(err, RB_ENOTFOUND,
                          "%s: %s: no integer grid (a version-1 store, or written without parameters): rerun the "
                          "weight quantization",
                          s->path, obj);
        goto out;
    }
    hsize_t du[2];
    long long want[2] = {rows, -1};
    snprintf(dobj, sizeof dobj, "%s/scale", obj);
    if ((rc = rb_h5_open_dataset(&R, g, dobj, "scale", H5T_FLOAT, 4, 2, want, &ds, du))) goto out;
    if (du[1] < 1 || du[1] > (hsize_t)cols) {
        rc = rb_h5_fail(&R, RB_EFORMAT, dobj, "%llu units per row, expected 1..%d", (unsigned long long)du[1], cols);
        goto out;
    }
    want[1] = (long long)du[1];
    snprintf(dobj, sizeof dobj, "%s/zero", obj);
    if ((rc = rb_h5_open_dataset(&R, g, dobj, "zero", H5T_FLOAT, 4, 2, want, &dz, NULL))) goto out;
    p->rows = rows;
    p->cols = cols;
    p->n_units = (int)du[1];
    size_t nu = (size_t)rows * du[1];
    p->scale = rb_alloc(nu * sizeof(float));
    p->zero = rb_alloc(nu * sizeof(float));
    int grouped = p->n_units > 1 || (has = rb_h5_has_link(&R, g, obj, "g_idx")) > 0;
    if (has < 0) {
        rc = err->code;
        goto out;
    }
    if (grouped) p->g_idx = rb_alloc((size_t)cols * sizeof(int32_t));
    if (!p->scale || !p->zero || (grouped && !p->g_idx)) {
        rc = rb_error_set(err, RB_ENOMEM, "weight store: out of memory");
        goto out;
    }
    if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, p->scale) < 0 ||
        H5Dread(dz, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, p->zero) < 0) {
        rc = rb_h5_fail(&R, RB_EFORMAT, obj, "cannot read the grid (damaged file?): %s", rb_h5_detail(&R));
        goto out;
    }
    for (size_t u = 0; u < nu; u++)
        if (!(p->scale[u] > 0.0f) || !isfinite(p->scale[u]) || !isfinite(p->zero[u])) {
            rc = rb_h5_fail(&R, RB_EFORMAT, obj, "unit %zu: scale %g, zero %g", u, (double)p->scale[u],
                            (double)p->zero[u]);
            goto out;
        }
    if (grouped) {
        hsize_t n;
        snprintf(dobj, sizeof dobj, "%s/g_idx", obj);
        if ((rc = rb_h5_open_dataset_1d(&R, g, dobj, "g_idx", H5T_INTEGER, 0, cols, &dg, &n))) goto out;
        if (H5Dread(dg, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, p->g_idx) < 0) {
            rc = rb_h5_fail(&R, RB_EFORMAT, dobj, "cannot read (damaged file?): %s", rb_h5_detail(&R));
            goto out;
        }
        for (int c = 0; c < cols; c++)
            if (p->g_idx[c] < 0 || p->g_idx[c] >= p->n_units) {
                rc = rb_h5_fail(&R, RB_EFORMAT, dobj, "g_idx[%d] = %d outside [0, %d)", c, (int)p->g_idx[c], p->n_units);
                goto out;
            }
    }
out:
    rb_h5_close(&ds);
    rb_h5_close(&dz);
    rb_h5_close(&dg);
    rb_h5_close(&g);
    rb_h5_quiet_off(&q);
    if (rc) rb_wparams_free(p);
    return rc;
}

const char *rb_wstore_spec_desc(const rb_wstore *s) { return s->spec; }

/* Writes the HDF5 seeds of the fuzz corpora with rotbench's own writers (built with -Dfuzz=true as
 * fuzz_gen_seeds; not a test). Usage: fuzz_gen_seeds OUTDIR → OUTDIR/rotset.h5 (small rotation set:
 * Hadamard R1, dense and Hadamard R2, R3/R4 on) and OUTDIR/wstore.h5 (weight store of the fixed
 * config of fuzz_wstore.c, RTN 4-bit per channel, no integer grids: they make
 * the file bigger than a seed should be, and rb_wstore_load_layer does not read them), each also copied in the latest HDF5 format as
 * *-compact.h5 (a few KB; see compact()); with RESULTS.h5 also OUTDIR/results-compact.h5. The results
 * file itself is written by
 * `build/tests/test_results --write-example DIR` (the unit test fixture). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "core/rb_rng.h"
#include "quant/rb_quant.h"
#include "quant/rb_wstore.h"
#include "rotate/rb_rotset.h"

static const rb_llama_config fz_cfg = {
    .dim = 8, .hidden_dim = 16, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .head_dim = 4, .vocab_size = 16,
    .max_seq_len = 64, .rms_eps = 1e-5, .rope_theta = 10000.0, .tied = 0, .bos_id = 1, .eos_id = 2, .dtype = "F32"};

static void die(const char *what, const rb_error *err) {
    fprintf(stderr, "%s: %s\n", what, err->msg);
    exit(1);
}

/* HDF5's default (earliest) format gives every group a symbol-table B-tree and heap of mostly zero
 * bytes (a 1-layer store is ~100 KB). Copying every root link and attribute into a file of the latest
 * format (compact groups) keeps the content and makes seeds a few KB. */
static herr_t copy_link(hid_t g, const char *name, const H5L_info_t *info, void *dst) {
    (void)info;
    hid_t ocpy = H5Pcreate(H5P_OBJECT_COPY);
    herr_t rc = H5Ocopy(g, name, *(hid_t *)dst, name, ocpy, H5P_DEFAULT);
    H5Pclose(ocpy);
    return rc;
}

static herr_t copy_attr(hid_t loc, const char *name, const H5A_info_t *info, void *dst) {
    (void)info;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT), t = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    size_t bytes = (size_t)(n > 0 ? n : 1) * H5Tget_size(t);
    void *buf = calloc(1, bytes);
    hid_t b = H5Acreate2(*(hid_t *)dst, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = (buf && H5Aread(a, t, buf) >= 0 && H5Awrite(b, t, buf) >= 0) ? 0 : -1;
    if (rc == 0 && H5Tdetect_class(t, H5T_VLEN) > 0) H5Dvlen_reclaim(t, sp, H5P_DEFAULT, buf);
    else if (rc == 0 && H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0) H5Dvlen_reclaim(t, sp, H5P_DEFAULT, buf);
    free(buf);
    H5Aclose(b), H5Aclose(a), H5Tclose(t), H5Sclose(sp);
    return rc;
}

static void compact(const char *src, const char *dst) {
    hid_t fs = H5Fopen(src, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    hid_t fd = H5Fcreate(dst, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (fs < 0 || fd < 0 || H5Literate(fs, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_link, &fd) < 0 ||
        H5Aiterate2(fs, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_attr, &fd) < 0) {
        fprintf(stderr, "compact %s: failed\n", src);
        exit(1);
    }
    H5Pclose(fapl);
    H5Fclose(fd);
    H5Fclose(fs);
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s OUTDIR [RESULTS.h5]\n", argv[0]);
        return 2;
    }
    char path[4096];
    rb_error err = {0};

    rb_rotset s;
    if (rb_rotset_init(&s, "hadamard", 16, 8, 32, 2, &err)) die("rotset_init", &err);
    int8_t signs[16];
    for (int i = 0; i < 16; i++) signs[i] = (i * 7) % 3 ? 1 : -1;
    if (rb_rot_from_hadamard(16, signs, &s.r1, &err)) die("r1", &err);
    if (rb_rot_from_hadamard(8, NULL, &s.r2[0], &err)) die("r2[0]", &err);
    double P[64] = {0};
    for (int i = 0; i < 8; i++) P[i * 8 + (i * 3) % 8] = i % 2 ? -1.0 : 1.0; /* signed permutation */
    if (rb_rot_from_dense(P, 8, &s.r2[1], &err)) die("r2[1]", &err);
    s.r3 = s.r4 = 1;
    s.seed = 7;
    snprintf(path, sizeof path, "%s/rotset.h5", argv[1]);
    if (rb_rotset_save(&s, path, &err)) die("rotset_save", &err);
    rb_rotset_free(&s);

    rb_layer_weights w;
    if (rb_layer_weights_init(&w, &fz_cfg, &err)) die("weights", &err);
    rb_rng r;
    rb_rng_seed(&r, 3, "fuzz-seed");
    snprintf(path, sizeof path, "%s/wstore.h5", argv[1]);
    rb_wstore *ws;
    if (rb_wstore_create(path, &fz_cfg, "fz-run", "W4 RTN", "rtn", &ws, &err)) die("wstore_create", &err);
    for (int l = 0; l < fz_cfg.n_layers; l++) {
        rb_qspec spec = l == 0 ? rb_qspec_make(4, 1, RB_QGRAN_CHANNEL, 0) : rb_qspec_make(3, 0, RB_QGRAN_GROUP, 4);
        rb_wparams p[RB_LIN_COUNT];
        memset(p, 0, sizeof p);
        double he[RB_LIN_COUNT], hr[RB_LIN_COUNT];
        for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
            int rows, cols;
            float *m = rb_layer_linear(&w, &fz_cfg, lin, &rows, &cols);
            rb_rng_gauss(&r, m, (size_t)rows * cols, 0.0, 0.05);
            if (rb_wparams_alloc(&p[lin], &spec, rows, cols, &err)) die("wparams", &err);
            if (rb_qparams_find(&spec, m, rows, cols, 0, p[lin].scale, p[lin].zero, &err)) die("qparams", &err);
            if (rb_quant_apply(&spec, m, rows, cols, 0, p[lin].scale, p[lin].zero, &err)) die("quant", &err);
            for (int j = 0; p[lin].g_idx && j < cols; j++) p[lin].g_idx[j] = j / spec.group;
            he[lin] = 0.5 * lin + l;
            hr[lin] = lin == 3 ? NAN : lin;
        }
        if (rb_wstore_put_layer(ws, l, &w, &spec, 0, he, hr, NULL, &err)) die("put_layer", &err);
        for (int lin = 0; lin < RB_LIN_COUNT; lin++) rb_wparams_free(&p[lin]);
    }
    if (rb_wstore_finish(ws, &err)) die("wstore_finish", &err);
    rb_wstore_close(ws);
    rb_layer_weights_free(&w);
    char big[4200];
    snprintf(big, sizeof big, "%s/wstore.h5", argv[1]);
    snprintf(path, sizeof path, "%s/wstore-compact.h5", argv[1]);
    compact(big, path);
    snprintf(big, sizeof big, "%s/rotset.h5", argv[1]);
    snprintf(path, sizeof path, "%s/rotset-compact.h5", argv[1]);
    compact(big, path);
    if (argc == 3) { /* a results file (test_results --write-example) */
        snprintf(path, sizeof path, "%s/results-compact.h5", argv[1]);
        compact(argv[2], path);
    }
    return 0;
}

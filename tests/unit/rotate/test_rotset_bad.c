/* Rotation-set files that must be refused, each with a one-line message naming the file and the
 * object and nothing leaked: missing, not HDF5, truncated, and copies of a valid file edited with the
 * HDF5 API (one defect each: shapes, types, values, attributes, flipped bits, RUQuant sites). */
#include "rotset_fixture.h"

/* ---- bad files ---------------------------------------------------------------------------- */

static void test_load_missing_and_not_hdf5(void **state) {
    fixture *fx = *state;
    char p[1024];
    path_in(fx, "absent.h5", p, sizeof p);
    expect_load_error(p, RB_ENOTFOUND, "No such file");
    expect_load_error(fx->dir, RB_EIO, "directory");
    path_in(fx, "text.h5", p, sizeof p);
    FILE *f = fopen(p, "w");
    fputs("this is not HDF5\n", f);
    fclose(f);
    expect_load_error(p, RB_EFORMAT, "not an HDF5 file");
    path_in(fx, "empty.h5", p, sizeof p);
    fclose(fopen(p, "w"));
    expect_load_error(p, RB_EFORMAT, "not an HDF5 file");
}

static void test_load_truncated(void **state) {
    fixture *fx = *state;
    struct stat st;
    assert_int_equal(stat(fx->good, &st), 0);
    const long cuts[] = {st.st_size / 2, st.st_size - 1, 100, 8};
    char p[1024];
    for (size_t t = 0; t < sizeof cuts / sizeof *cuts; t++) {
        snprintf(p, sizeof p, "%s/cut%ld.h5", fx->dir, cuts[t]);
        copy_file(fx->good, p, cuts[t]);
        expect_load_error(p, RB_EFORMAT, NULL);
    }
}

static void m_r1_shape(hid_t f) {
    static double R[DIM * DIM / 2];
    put_data(f, "/r1/R", H5T_NATIVE_DOUBLE, 2, DIM, DIM / 2, R);
}
static void m_r1_rank1(hid_t f) {
    static double R[DIM * DIM];
    put_data(f, "/r1/R", H5T_NATIVE_DOUBLE, 1, DIM * DIM, 0, R);
}
static void m_r1_float32(hid_t f) {
    static float R[DIM * DIM];
    put_data(f, "/r1/R", H5T_NATIVE_FLOAT, 2, DIM, DIM, R);
}
static void m_r1_int64(hid_t f) {
    static int64_t R[DIM * DIM];
    put_data(f, "/r1/R", H5T_NATIVE_INT64, 2, DIM, DIM, R);
}
static void m_r1_unwritten(hid_t f) { put_data(f, "/r1/R", H5T_NATIVE_DOUBLE, 2, DIM, DIM, NULL); }
static void m_r1_not_orth(hid_t f) {
    static double R[DIM * DIM];
    identity_into(R, DIM, 1.0);
    R[DIM + 2] = 0.5;
    put_data(f, "/r1/R", H5T_NATIVE_DOUBLE, 2, DIM, DIM, R);
}
static void m_r1_nan(hid_t f) {
    static double R[DIM * DIM];
    identity_into(R, DIM, 1.0);
    R[5 * DIM + 5] = NAN;
    put_data(f, "/r1/R", H5T_NATIVE_DOUBLE, 2, DIM, DIM, R);
}
static void m_r1_both(hid_t f) {
    int8_t s[DIM];
    memset(s, 1, sizeof s);
    put_data(f, "/r1/signs", H5T_NATIVE_INT8, 1, DIM, 0, s);
}
static void m_r1_kind_hadamard(hid_t f) { put_string(f, "/r1", "kind", "hadamard", 0); }
static void m_r1_kind_unknown(hid_t f) { put_string(f, "/r1", "kind", "sparse", 0); }
static void m_r1_n(hid_t f) { put_int(f, "/r1", "n", H5T_STD_I32LE, 32); }
static void m_r1_no_kind(hid_t f) { assert_true(H5Adelete_by_name(f, "/r1", "kind", H5P_DEFAULT) >= 0); }
static void m_r1_no_n(hid_t f) { assert_true(H5Adelete_by_name(f, "/r1", "n", H5P_DEFAULT) >= 0); }
static void m_r1_no_orth(hid_t f) { assert_true(H5Adelete_by_name(f, "/r1", "orth_error", H5P_DEFAULT) >= 0); }
static void m_r1_orth_nan(hid_t f) {
    double v = NAN;
    hid_t o = H5Oopen(f, "/r1", H5P_DEFAULT);
    put_scalar(o, "orth_error", H5T_NATIVE_DOUBLE, &v);
    H5Oclose(o);
}
static void m_r1_dataset(hid_t f) {
    rm(f, "/r1");
    double v = 1;
    put_data(f, "/r1", H5T_NATIVE_DOUBLE, 1, 1, 0, &v);
}
static void m_r1_R_group(hid_t f) {
    rm(f, "/r1/R");
    H5Gclose(H5Gcreate2(f, "/r1/R", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
}
static void m_r1_no_R(hid_t f) { rm(f, "/r1/R"); }
static void m_signs_int16(hid_t f) {
    int16_t s[HEAD];
    for (int i = 0; i < HEAD; i++) s[i] = 1;
    put_data(f, "/r2/0/signs", H5T_NATIVE_INT16, 1, HEAD, 0, s);
}
static void m_signs_uint8(hid_t f) {
    uint8_t s[HEAD];
    memset(s, 1, sizeof s);
    put_data(f, "/r2/0/signs", H5T_NATIVE_UINT8, 1, HEAD, 0, s);
}
static void m_signs_len(hid_t f) {
    int8_t s[HEAD / 2];
    memset(s, 1, sizeof s);
    put_data(f, "/r2/0/signs", H5T_NATIVE_INT8, 1, HEAD / 2, 0, s);
}
static void m_signs_value(hid_t f) {
    int8_t s[HEAD];
    memset(s, 1, sizeof s);
    s[7] = 3;
    put_data(f, "/r2/0/signs", H5T_NATIVE_INT8, 1, HEAD, 0, s);
}
static void m_layers_fewer(hid_t f) { put_int(f, "/", "n_layers", H5T_STD_I32LE, 2); }
static void m_layer_name(hid_t f) { H5Gclose(H5Gcreate2(f, "/r2/abc", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)); }
static void m_layer_zero_pad(hid_t f) { assert_true(H5Lmove(f, "/r2/2", f, "/r2/02", H5P_DEFAULT, H5P_DEFAULT) >= 0); }
static void m_dim_float(hid_t f) {
    double v = DIM;
    put_scalar(f, "dim", H5T_NATIVE_DOUBLE, &v);
}
static void m_dim_zero(hid_t f) { put_int(f, "/", "dim", H5T_STD_I32LE, 0); }
static void m_dim_array(hid_t f) {
    H5Adelete(f, "dim");
    hsize_t two = 2;
    int32_t v[2] = {DIM, DIM};
    hid_t sp = H5Screate_simple(1, &two, NULL), a = H5Acreate2(f, "dim", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT32, v);
    H5Aclose(a);
    H5Sclose(sp);
}
static void m_r3_two(hid_t f) { put_int(f, "/", "r3", H5T_STD_I32LE, 2); }
static void m_cross_two(hid_t f) { put_int(f, "/", "cross_head", H5T_STD_I32LE, 2); }
static void m_seed_negative(hid_t f) { put_int(f, "/", "seed", H5T_STD_I64LE, -5); }
static void m_method_int(hid_t f) { put_int(f, "/", "method", H5T_STD_I32LE, 7); }
static void m_method_long(hid_t f) { put_string(f, "/", "method", "a-method-name-well-over-31-bytes-long", 0); }
static void m_version_float(hid_t f) {
    double v = 0.1;
    put_scalar(f, "rotbench_version", H5T_NATIVE_DOUBLE, &v);
}
static void m_dim_mismatch(hid_t f) { put_int(f, "/", "dim", H5T_STD_I32LE, DIM * 2); }

typedef struct bad_case {
    const char *name;
    mutator fn;
    int code;
    const char *needle; /* object and problem as the message states them */
} bad_case;

static const bad_case bad_cases[] = {
    {"r1_shape", m_r1_shape, RB_EFORMAT, "/r1/R: shape [64][32] does not match dim 64"},
    {"r1_rank1", m_r1_rank1, RB_EFORMAT, "/r1/R: shape [4096] does not match dim 64"},
    {"r1_float32", m_r1_float32, RB_EFORMAT, "/r1/R: type is 4-byte float, expected 8-byte float"},
    {"r1_int64", m_r1_int64, RB_EFORMAT, "/r1/R: type is 8-byte integer"},
    {"r1_unwritten", m_r1_unwritten, RB_EFORMAT, "/r1/R: dataset has no data written"},
    {"r1_not_orth", m_r1_not_orth, RB_EFORMAT, "/r1/R: dense rotation of order 64 is not orthogonal"},
    {"r1_nan", m_r1_nan, RB_EFORMAT, "/r1/R: dense rotation of order 64 is not orthogonal"},
    {"r1_both", m_r1_both, RB_EFORMAT, "/r1: holds both R and signs"},
    {"r1_kind_hadamard", m_r1_kind_hadamard, RB_EFORMAT, "/r1/signs: dataset missing (kind hadamard)"},
    {"r1_kind_unknown", m_r1_kind_unknown, RB_EFORMAT, "/r1: unknown kind 'sparse'"},
    {"r1_n", m_r1_n, RB_EFORMAT, "/r1: n = 32 does not match dim 64"},
    {"r1_no_kind", m_r1_no_kind, RB_EFORMAT, "/r1: attribute 'kind' missing"},
    {"r1_no_n", m_r1_no_n, RB_EFORMAT, "/r1: attribute 'n' missing"},
    {"r1_no_orth", m_r1_no_orth, RB_EFORMAT, "/r1: attribute 'orth_error' missing"},
    {"r1_orth_nan", m_r1_orth_nan, RB_EFORMAT, "/r1: attribute 'orth_error' = nan"},
    {"r1_dataset", m_r1_dataset, RB_EFORMAT, "/r1: cannot open as a group"},
    {"r1_R_group", m_r1_R_group, RB_EFORMAT, "/r1/R: cannot open as a dataset"},
    {"r1_no_R", m_r1_no_R, RB_EFORMAT, "/r1/R: dataset missing (kind dense)"},
    {"signs_int16", m_signs_int16, RB_EFORMAT, "/r2/0/signs: type is 2-byte integer"},
    {"signs_uint8", m_signs_uint8, RB_EFORMAT, "/r2/0/signs: type is 1-byte integer (unsigned)"},
    {"signs_len", m_signs_len, RB_EFORMAT, "/r2/0/signs: shape [8] does not match head_dim 16"},
    {"signs_value", m_signs_value, RB_EFORMAT, "/r2/0/signs: entry 7 is 3, expected ±1"},
    {"layers_fewer", m_layers_fewer, RB_EFORMAT, "/r2: member '2' is not a layer index in [0, 2)"},
    {"layer_name", m_layer_name, RB_EFORMAT, "/r2: member 'abc' is not a layer index"},
    {"layer_zero_pad", m_layer_zero_pad, RB_EFORMAT, "/r2: member '02' is not a layer index"},
    {"dim_float", m_dim_float, RB_EFORMAT, "/: attribute 'dim' is float, expected integer"},
    {"dim_zero", m_dim_zero, RB_EFORMAT, "/: attribute 'dim' = 0 out of range"},
    {"dim_array", m_dim_array, RB_EFORMAT, "/: attribute 'dim' has 2 elements, expected a scalar"},
    {"dim_mismatch", m_dim_mismatch, RB_EFORMAT, "/r1: n = 64 does not match dim 128"},
    {"r3_two", m_r3_two, RB_EFORMAT, "/: attribute 'r3' = 2 out of range [0, 1]"},
    {"cross_two", m_cross_two, RB_EFORMAT, "/: attribute 'cross_head' = 2 out of range [0, 1]"},
    {"seed_negative", m_seed_negative, RB_EFORMAT, "/: attribute 'seed' = -5 is negative"},
    {"method_int", m_method_int, RB_EFORMAT, "/: attribute 'method' is integer, expected string"},
    {"method_long", m_method_long, RB_EFORMAT, "/: attribute 'method' longer than 31 bytes"},
    {"version_float", m_version_float, RB_EFORMAT, "/: attribute 'rotbench_version' is float"},
};

static void test_load_bad_content(void **state) {
    fixture *fx = *state;
    char p[1024];
    for (size_t t = 0; t < sizeof bad_cases / sizeof *bad_cases; t++) {
        mutate_copy(fx, bad_cases[t].name, bad_cases[t].fn, p, sizeof p);
        expect_load_error(p, bad_cases[t].code, bad_cases[t].needle);
    }
}

static const char *const root_attrs[] = {"method", "rotbench_version", "seed", "dim", "head_dim", "hidden_dim",
                                         "n_layers", "r3", "r4", "emb_center", "max_orth_error"};

static void test_load_missing_attrs(void **state) {
    fixture *fx = *state;
    char p[1024], needle[128];
    for (size_t t = 0; t < sizeof root_attrs / sizeof *root_attrs; t++) {
        snprintf(p, sizeof p, "%s/no_%s.h5", fx->dir, root_attrs[t]);
        copy_file(fx->good, p, -1);
        hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
        assert_true(H5Adelete(f, root_attrs[t]) >= 0);
        H5Fclose(f);
        snprintf(needle, sizeof needle, "/: attribute '%s' missing", root_attrs[t]);
        expect_load_error(p, RB_EFORMAT, needle);
    }
}

/* File offset of the first stored chunk of dataset `name`. */
static long chunk0_offset(const char *path, const char *name) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, name, H5P_DEFAULT), sp = H5Dget_space(d);
    haddr_t addr = HADDR_UNDEF;
    hsize_t size = 0, off[2];
    unsigned mask;
    assert_true(H5Dget_chunk_info(d, sp, 0, off, &mask, &addr, &size) >= 0);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    assert_true(addr != HADDR_UNDEF && size > 0);
    return (long)addr;
}

static void flip_byte(const char *path, long pos, int mask) {
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    fseek(fp, pos, SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, pos, SEEK_SET);
    fputc(c ^ mask, fp);
    assert_int_equal(fclose(fp), 0);
}

/* Bit rot inside the stored numbers (not HDF5 structure): the saved datasets carry checksums, so
 * even the lowest mantissa bit of R, which the orthogonality recheck could not see, is caught;
 * so is a sign. */
static void test_load_flipped_data(void **state) {
    fixture *fx = *state;
    char p[1024];
    snprintf(p, sizeof p, "%s/flipped_R.h5", fx->dir);
    copy_file(fx->good, p, -1);
    flip_byte(p, chunk0_offset(p, "/r1/R") + 8 * (5 * DIM + 9), 0x01); /* lowest bit of R[5][9] */
    expect_load_error(p, RB_EFORMAT, "/r1/R: cannot read");
    snprintf(p, sizeof p, "%s/flipped_signs.h5", fx->dir);
    copy_file(fx->good, p, -1);
    flip_byte(p, chunk0_offset(p, "/r2/0/signs") + 3, 0xfe); /* ±1 → ∓1: still a valid recipe */
    expect_load_error(p, RB_EFORMAT, "/r2/0/signs: cannot read");
}

/* What other writers (h5py, numpy) produce and the format allows: fixed-length ASCII strings,
 * int64 dims, int32 seed. */
static void m_foreign_types(hid_t f) {
    put_string(f, "/", "method", "unit-test", 1);
    put_string(f, "/r1", "kind", "dense", 1);
    put_int(f, "/", "dim", H5T_STD_I64LE, DIM);
    put_int(f, "/", "n_layers", H5T_STD_U64LE, LAYERS);
    put_int(f, "/", "seed", H5T_STD_I32LE, 42);
    float e = 0;
    hid_t o = H5Oopen(f, "/r2/0", H5P_DEFAULT);
    put_scalar(o, "orth_error", H5T_NATIVE_FLOAT, &e);
    H5Oclose(o);
}

static void test_load_foreign_types(void **state) {
    fixture *fx = *state;
    char p[1024];
    mutate_copy(fx, "foreign", m_foreign_types, p, sizeof p);
    rb_rotset a, b;
    rb_error err;
    assert_int_equal(rb_rotset_load(p, &b, &err), 0);
    make_set(&a);
    a.seed = 42;
    assert_set_equal(&a, &b);
    rb_rotset_free(&a);
    rb_rotset_free(&b);
    assert_no_open_h5();
}

static void m_ruq_perm_dup(hid_t f) {
    int32_t v[DIM];
    for (int i = 0; i < DIM; i++) v[i] = i;
    v[9] = 4;
    put_data(f, "/ruquant/1/o_in/perm", H5T_NATIVE_INT32, 1, DIM, 0, v);
}
static void m_ruq_perm_i64(hid_t f) {
    int64_t v[DIM];
    for (int i = 0; i < DIM; i++) v[i] = i;
    put_data(f, "/ruquant/1/o_in/perm", H5T_NATIVE_INT64, 1, DIM, 0, v);
}
static void m_ruq_scale_neg(hid_t f) {
    double v[DIM];
    for (int i = 0; i < DIM; i++) v[i] = 1;
    v[5] = -1;
    put_data(f, "/ruquant/1/o_in/scale", H5T_NATIVE_DOUBLE, 1, DIM, 0, v);
}
static void m_ruq_blk_orth(hid_t f) {
    static double R[16 * 16];
    identity_into(R, 16, 1.0);
    R[17] = 1.001;
    put_data(f, "/ruquant/1/o_in/blk0", H5T_NATIVE_DOUBLE, 2, 16, 16, R);
}
static void m_ruq_blk_shape(hid_t f) {
    static double R[16 * 8];
    put_data(f, "/ruquant/1/o_in/blk1", H5T_NATIVE_DOUBLE, 2, 16, 8, R);
}
static void m_ruq_hh(hid_t f) {
    double v[DIM] = {0.5};
    put_data(f, "/ruquant/1/o_in/householder", H5T_NATIVE_DOUBLE, 1, DIM, 0, v);
}
static void m_ruq_unwritten(hid_t f) { put_data(f, "/ruquant/3/down_in/scale", H5T_NATIVE_DOUBLE, 1, HIDDEN, 0, NULL); }
static void m_ruq_block(hid_t f) { put_int(f, "/ruquant/1/o_in", "block", H5T_STD_I32LE, 5); }
static void m_ruq_n_down(hid_t f) { put_int(f, "/ruquant/3/down_in", "n", H5T_STD_I32LE, DIM); }
static void m_ruq_n_out(hid_t f) { put_int(f, "/ruquant/1/o_in", "n", H5T_STD_I32LE, 60); }
static void m_ruq_site(hid_t f) { H5Gclose(H5Gcreate2(f, "/ruquant/1/q", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)); }
static void m_ruq_layer(hid_t f) { H5Gclose(H5Gcreate2(f, "/ruquant/7", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)); }
static void m_ruq_missing(hid_t f) { rm(f, "/ruquant/1/o_in/blk1"); }
static void m_ruq_no_block(hid_t f) { assert_true(H5Adelete_by_name(f, "/ruquant/1/o_in", "block", H5P_DEFAULT) >= 0); }
static void m_ruq_dataset(hid_t f) {
    rm(f, "/ruquant");
    double v = 1;
    put_data(f, "/ruquant", H5T_NATIVE_DOUBLE, 1, 1, 0, &v);
}

static const bad_case bad_ruq[] = {
    {"ruq_perm_dup", m_ruq_perm_dup, RB_EFORMAT, "/ruquant/1/o_in: perm: entry 9 = 4 repeats entry 4"},
    {"ruq_perm_i64", m_ruq_perm_i64, RB_EFORMAT, "/ruquant/1/o_in/perm: type is 8-byte integer"},
    {"ruq_scale_neg", m_ruq_scale_neg, RB_EFORMAT, "/ruquant/1/o_in: scale: entry 5 = -1"},
    {"ruq_blk_orth", m_ruq_blk_orth, RB_EFORMAT, "/ruquant/1/o_in: blk0 is not orthogonal"},
    {"ruq_blk_shape", m_ruq_blk_shape, RB_EFORMAT, "/ruquant/1/o_in/blk1: shape [16][8] does not match block 16"},
    {"ruq_hh", m_ruq_hh, RB_EFORMAT, "/ruquant/1/o_in: householder"},
    {"ruq_unwritten", m_ruq_unwritten, RB_EFORMAT, "/ruquant/3/down_in/scale: dataset has no data written"},
    {"ruq_block", m_ruq_block, RB_EFORMAT, "/ruquant/1/o_in: block 5 does not divide n = 64"},
    {"ruq_n_down", m_ruq_n_down, RB_EFORMAT, "/ruquant/3/down_in: n = 64 does not match hidden_dim 128"},
    {"ruq_n_out", m_ruq_n_out, RB_EFORMAT, "/ruquant/1/o_in: n = 60 is not a multiple of head_dim 16"},
    {"ruq_site", m_ruq_site, RB_EFORMAT, "/ruquant/1: member 'q' is not a site"},
    {"ruq_layer", m_ruq_layer, RB_EFORMAT, "/ruquant: member '7' is not a layer index in [0, 4)"},
    {"ruq_missing", m_ruq_missing, RB_EFORMAT, "/ruquant/1/o_in/blk1: dataset missing"},
    {"ruq_no_block", m_ruq_no_block, RB_EFORMAT, "/ruquant/1/o_in: attribute 'block' missing"},
    {"ruq_dataset", m_ruq_dataset, RB_EFORMAT, "/ruquant: cannot open as a group"},
};

static void test_load_bad_ruq(void **state) {
    fixture *fx = *state;
    char p[1024];
    for (size_t t = 0; t < sizeof bad_ruq / sizeof *bad_ruq; t++) {
        mutate_copy_of(fx, fx->good_ruq, bad_ruq[t].name, bad_ruq[t].fn, p, sizeof p);
        expect_load_error(p, bad_ruq[t].code, bad_ruq[t].needle);
    }
}

/* Layer-wise sets: bases and junctions. */
static void m_lw_no_attr(hid_t f) { assert_true(H5Adelete_by_name(f, "/", "layerwise", H5P_DEFAULT) >= 0); }
static void m_lw_ra_index(hid_t f) { H5Gclose(H5Gcreate2(f, "/ra/9", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)); }
static void m_lw_q_shape(hid_t f) {
    static double Q[DIM * 3];
    put_data(f, "/junction/1/mlp/Q", H5T_NATIVE_DOUBLE, 2, DIM, 3, Q);
}
static void m_lw_m_orth(hid_t f) {
    double M[16] = {0.5};
    put_data(f, "/junction/0/attn/M", H5T_NATIVE_DOUBLE, 2, 4, 4, M);
}
static void m_lw_q_orth(hid_t f) {
    static double Q[DIM * 4];
    for (int i = 0; i < 4; i++) Q[i * 4 + i] = 1, Q[(i + 8) * 4 + i] = 1; /* columns of norm √2 */
    put_data(f, "/junction/2/mlp/Q", H5T_NATIVE_DOUBLE, 2, DIM, 4, Q);
}
static void m_lw_rank(hid_t f) { put_int(f, "/junction/1/attn", "r", H5T_STD_I32LE, DIM + 1); }
static void m_lw_n(hid_t f) { put_int(f, "/junction/1/attn", "n", H5T_STD_I32LE, 32); }
static void m_lw_kind(hid_t f) { H5Gclose(H5Gcreate2(f, "/junction/1/ffn", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)); }
static void m_lw_missing(hid_t f) { rm(f, "/junction/3/mlp/M"); }
static void m_lw_r1(hid_t f) {
    static double R[DIM * DIM];
    identity_into(R, DIM, 1.0);
    H5Gclose(H5Gcreate2(f, "/r1", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    put_data(f, "/r1/R", H5T_NATIVE_DOUBLE, 2, DIM, DIM, R);
}

static const bad_case bad_lw[] = {
    {"lw_no_attr", m_lw_no_attr, RB_EFORMAT, "present in a set without layer-wise bases"},
    {"lw_ra_index", m_lw_ra_index, RB_EFORMAT, "/ra: member '9' is not a layer index in [0, 5)"},
    {"lw_q_shape", m_lw_q_shape, RB_EFORMAT, "/junction/1/mlp/Q: shape [64][3] does not match n 64 (expected [64][4])"},
    {"lw_m_orth", m_lw_m_orth, RB_EFORMAT, "/junction/0/attn: junction (width 64, rank 4): Q not orthonormal or M + I not orthogonal"},
    {"lw_q_orth", m_lw_q_orth, RB_EFORMAT, "/junction/2/mlp: junction (width 64, rank 4)"},
    {"lw_rank", m_lw_rank, RB_EFORMAT, "/junction/1/attn: rank 65 above n = 64"},
    {"lw_n", m_lw_n, RB_EFORMAT, "/junction/1/attn: n = 32 does not match dim 64"},
    {"lw_kind", m_lw_kind, RB_EFORMAT, "/junction/1: member 'ffn' is not a junction (attn, mlp)"},
    {"lw_missing", m_lw_missing, RB_EFORMAT, "/junction/3/mlp/M: dataset missing (rank 4)"},
    {"lw_r1", m_lw_r1, RB_EFORMAT, "/r1: present in a set with layer-wise bases"},
};

static void test_load_bad_layerwise(void **state) {
    fixture *fx = *state;
    char p[1024];
    rb_rotset s;
    rb_error err;
    assert_int_equal(rb_rotset_load(fx->good_lw, &s, &err), 0); /* the unmodified file loads */
    assert_non_null(s.jn);
    assert_null(s.rm[2]);
    rb_rotset_free(&s);
    for (size_t t = 0; t < sizeof bad_lw / sizeof *bad_lw; t++) {
        mutate_copy_of(fx, fx->good_lw, bad_lw[t].name, bad_lw[t].fn, p, sizeof p);
        expect_load_error(p, bad_lw[t].code, bad_lw[t].needle);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_missing_and_not_hdf5),
        cmocka_unit_test(test_load_truncated),
        cmocka_unit_test(test_load_bad_content),
        cmocka_unit_test(test_load_missing_attrs),
        cmocka_unit_test(test_load_flipped_data),
        cmocka_unit_test(test_load_foreign_types),
        cmocka_unit_test(test_load_bad_ruq),
        cmocka_unit_test(test_load_bad_layerwise),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

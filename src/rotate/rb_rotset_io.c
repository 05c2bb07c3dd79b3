/* rb_rotset_io: HDF5 save/load of a rotation set (layout in rb_rotset.h).
 *
 * File layout (every attribute a scalar):
 *   /            method, rotbench_version (UTF-8 strings), seed (uint64), dim, head_dim,
 *                hidden_dim, n_layers, r3, r4, emb_center (int32), max_orth_error (float64)
 *   /r1          when R1 is not the identity
 *   /r2/<l>      for each layer l whose R2 is not the identity (decimal, no leading zeros)
 *   /ra/<l>, /rm/<l>  layer-wise residual bases (ReSpinQuant; l ≤ n_layers for ra), when the root
 *                attribute layerwise = 1 (then no /r1)
 *   /junction/<l>/<attn|mlp>  low-rank junctions of a layer-wise set (rb_junction.h): attrs n, r
 *                (int32), dev, approx_err, orth_error (float64); datasets Q float64 [n][r] and M
 *                float64 [r][r] when r > 0. Absent with layerwise: the exact dense junctions
 * each rotation group holding attrs kind ("dense" | "hadamard"), n (int32), orth_error (float64)
 * and either a float64 dataset R [n][n] or an int8 dataset signs [n].
 *   /ruquant/<l>/<site>   RUQuant transform of layer l (decimal as above) at site attn_in | o_in |
 *                mlp_in | down_in (rb_ruq_site.h), when any exists: attrs n, block (int32),
 *                orth_error (float64), optional scale_fused (int32 1: the smoothing is folded into
 *                the producing weights; absent = 0, online); datasets scale float64 [n], blk0 float64 [block][block],
 *                perm int32 [n], blk1 float64 [block][block], householder float64 [n] (zeros =
 *                identity). n must be dim (attn_in, mlp_in), hidden_dim (down_in) or a multiple of
 *                head_dim (o_in: n_heads·head_dim, checked against the model when fused). Files
 *                without /ruquant (every file before it existed) load with no RUQuant transform.
 *
 * Loading trusts nothing: every attribute's class, size and extent and every dataset's class,
 * rank and shape are checked before reading, so a foreign or damaged file yields one error line. */
#include "rb_rotset.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rb_h5.h"
#include "rb_orth.h"
#include "rb_rotset_io_internal.h"

#ifndef RB_VERSION
#define RB_VERSION "unknown"
#endif

/* ---- save ------------------------------------------------------------------------------ */

/* Group `name` under parent holding rotation r with its measured orthogonality error. */
static int put_rot(hid_t parent, const char *name, const rb_rot *r, double orth_err) {
    hid_t g = H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return -1;
    hsize_t dims[2] = {(hsize_t)r->n, (hsize_t)r->n};
    int hadamard = r->kind == RB_ROT_HADAMARD;
    int rc = rb_h5_put_str(g, "kind", hadamard ? "hadamard" : "dense");
    if (!rc) rc = rb_h5_put_i32(g, "n", r->n);
    if (!rc) rc = rb_h5_put_f64(g, "orth_error", orth_err);
    if (!rc)
        rc = hadamard ? rb_h5_put_dataset_checked(g, "signs", 1, dims, H5T_STD_I8LE, H5T_NATIVE_INT8, r->signs)
                      : rb_h5_put_dataset_checked(g, "R", 2, dims, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, r->R);
    H5Gclose(g);
    return rc;
}

/* Checks one rotation of the set before anything is written, so save never produces a file that
 * load would refuse. *orth_err gets ‖RᵀR − I‖_max measured now (R may have been edited since
 * construction). */
static int check_rot(const rb_rot *r, const char *path, const char *obj, int order, const char *order_name,
                     double *orth_err, rb_error *err) {
    if (r->n != order)
        return rb_error_set(err, RB_EINVAL, "%s: %s: order %d does not match %s %d", path, obj, r->n, order_name,
                            order);
    if (!r->R) return rb_error_set(err, RB_EINVAL, "%s: %s: matrix not materialized", path, obj);
    if (r->kind == RB_ROT_HADAMARD) {
        if (!r->signs) return rb_error_set(err, RB_EINVAL, "%s: %s: Hadamard rotation without signs", path, obj);
        for (int i = 0; i < r->n; i++)
            if (r->signs[i] != 1 && r->signs[i] != -1)
                return rb_error_set(err, RB_EINVAL, "%s: %s: sign %d is %d, expected ±1", path, obj, i,
                                    r->signs[i]);
    } else if (r->kind != RB_ROT_DENSE) {
        return rb_error_set(err, RB_EINVAL, "%s: %s: unknown rotation kind %d", path, obj, r->kind);
    }
    double mx, fro;
    rb_error e;
    if (rb_orth_error(r->R, r->n, &mx, &fro, &e)) return rb_error_set(err, e.code, "%s: %s: %s", path, obj, e.msg);
    *orth_err = isfinite(fro) ? mx : NAN; /* rb_orth_error's max skips NaN; the norm does not */
    if (!(*orth_err <= RB_ROT_ORTH_TOL))
        return rb_error_set(err, RB_EINVAL, "%s: %s: not orthogonal: ‖RᵀR − I‖_max = %.3g > %.0e", path, obj,
                            *orth_err, RB_ROT_ORTH_TOL);
    return 0;
}

/* Width a RUQuant site of set s must have: *n (> 0), or 0 with *mult = head_dim for o_in. */
static int ruq_width(const rb_rotset *s, int k, const char **dimname, int *mult) {
    *mult = 0;
    *dimname = k == RB_RUQ_DOWN ? "hidden_dim" : "dim";
    if (k == RB_RUQ_DOWN) return s->hidden_dim;
    if (k != RB_RUQ_OUT) return s->dim;
    *dimname = "head_dim";
    *mult = s->head_dim;
    return 0;
}

/* Checks a RUQuant site of s before anything is written; *orth_err as check_rot's. */
static int check_ruq(const rb_rotset *s, const rb_ruq_site *q, int k, const char *path, const char *obj,
                     double *orth_err, rb_error *err) {
    const char *dn;
    int mult, want = ruq_width(s, k, &dn, &mult);
    if (want ? q->n != want : q->n % mult)
        return rb_error_set(err, RB_EINVAL, want ? "%s: %s: width %d does not match %s %d"
                                                 : "%s: %s: width %d is not a multiple of %s %d",
                            path, obj, q->n, dn, want ? want : mult);
    if (!q->scale || !q->blk0 || !q->perm || !q->blk1 || !q->hh)
        return rb_error_set(err, RB_EINVAL, "%s: %s: transform not materialized", path, obj);
    rb_error e;
    int rc = rb_ruq_site_validate(q, orth_err, &e);
    return rc ? rb_error_set(err, rc, "%s: %s: %s", path, obj, e.msg) : 0;
}

/* Group `name` under parent holding RUQuant site q with its measured orthogonality error. */
static int put_ruq(hid_t parent, const char *name, const rb_ruq_site *q, double orth_err) {
    hid_t g = H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return -1;
    hsize_t dn[1] = {(hsize_t)q->n}, db[2] = {(hsize_t)q->block, (hsize_t)q->block};
    int rc = rb_h5_put_i32(g, "n", q->n);
    if (!rc) rc = rb_h5_put_i32(g, "block", q->block);
    if (!rc) rc = rb_h5_put_f64(g, "orth_error", orth_err);
    if (!rc && q->scale_fused) rc = rb_h5_put_i32(g, "scale_fused", 1);
    if (!rc) rc = rb_h5_put_dataset_checked(g, "scale", 1, dn, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, q->scale);
    if (!rc) rc = rb_h5_put_dataset_checked(g, "blk0", 2, db, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, q->blk0);
    if (!rc) rc = rb_h5_put_dataset_checked(g, "perm", 1, dn, H5T_STD_I32LE, H5T_NATIVE_INT32, q->perm);
    if (!rc) rc = rb_h5_put_dataset_checked(g, "blk1", 2, db, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, q->blk1);
    if (!rc) rc = rb_h5_put_dataset_checked(g, "householder", 1, dn, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, q->hh);
    H5Gclose(g);
    return rc;
}

/* /ruquant of s into loc (sites already checked). */
static int write_ruq(hid_t loc, const rb_rotset *s, const double *oe, const char *path, rb_error *err) {
    hid_t g = -1, gl = -1;
    char d[256], name[ROTSET_NAME_MAX];
    int rc = 0;
    for (int l = 0; l < s->n_layers && !rc; l++) {
        for (int k = 0; k < RB_RUQ_NSITES && !rc; k++) {
            const rb_ruq_site *q = s->ruq[l][k];
            if (!q) continue;
            if (g < 0 && (g = H5Gcreate2(loc, "ruquant", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
                rc = rb_error_set(err, RB_EIO, "%s: creating /ruquant failed: %s", path, rb_h5_last_error(d, sizeof d));
                break;
            }
            snprintf(name, sizeof name, "%d", l);
            if (gl < 0 && (gl = H5Gcreate2(g, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
                rc = rb_error_set(err, RB_EIO, "%s: creating /ruquant/%d failed: %s", path, l,
                                  rb_h5_last_error(d, sizeof d));
                break;
            }
            if (put_ruq(gl, rb_ruq_site_name(k), q, oe[l * RB_RUQ_NSITES + k]))
                rc = rb_error_set(err, RB_EIO, "%s: writing /ruquant/%d/%s failed: %s", path, l, rb_ruq_site_name(k),
                                  rb_h5_last_error(d, sizeof d));
        }
        rb_h5_close(&gl);
    }
    rb_h5_close(&g);
    return rc;
}

/* The layer-indexed rotation groups of a set: R2 per layer and the layer-wise residual bases. */
typedef struct rot_group {
    const char *name;    /* group under the root */
    rb_rot **arr;        /* entries NULL = identity; NULL = none */
    int count, order;    /* entries; matrix order */
    const char *dimname; /* the order's name in messages */
} rot_group;

static int rot_groups(const rb_rotset *s, rot_group g[3]) {
    g[0] = (rot_group){"r2", s->r2, s->n_layers, s->head_dim, "head_dim"};
    g[1] = (rot_group){"ra", s->ra, s->n_layers + 1, s->dim, "dim"};
    g[2] = (rot_group){"rm", s->rm, s->n_layers, s->dim, "dim"};
    return 3;
}

/* Group `gname` under loc holding every non-NULL entry of g as <index> (already checked; oe their
 * measured errors). */
static int write_rot_group(hid_t loc, const rot_group *g, const double *oe, const char *path, rb_error *err) {
    hid_t grp = -1;
    char d[256];
    int rc = 0;
    for (int l = 0; g->arr && l < g->count && !rc; l++) {
        if (!g->arr[l]) continue;
        if (grp < 0 && (grp = H5Gcreate2(loc, g->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
            rc = rb_error_set(err, RB_EIO, "%s: creating /%s failed: %s", path, g->name, rb_h5_last_error(d, sizeof d));
            break;
        }
        char name[ROTSET_NAME_MAX];
        snprintf(name, sizeof name, "%d", l);
        if (put_rot(grp, name, g->arr[l], oe[l]))
            rc = rb_error_set(err, RB_EIO, "%s: writing /%s/%d failed: %s", path, g->name, l,
                              rb_h5_last_error(d, sizeof d));
    }
    rb_h5_close(&grp);
    return rc;
}

/* Attributes, /r1, /r2/<l>, /ra/<l>, /rm/<l>, /junction and /ruquant of s into the HDF5 location loc
 * (a file root or a group); `path` names it in messages. Checks every rotation first. */
int rb_rotset_write_loc(int64_t loc, const rb_rotset *s, const char *path, rb_error *err) {
    hid_t f = (hid_t)loc;
    char d[256];
    rot_group grp[3];
    int ng = rot_groups(s, grp);
    /* Measure everything first: max_orth_error is a root attribute. */
    double *oe[3] = {NULL, NULL, NULL}, *oq = NULL, oe1 = 0, worst = 0;
    char obj[64];
    int rc = 0;
    if (s->ra && s->r1) return rb_error_set(err, RB_EINVAL, "%s: both R1 and layer-wise bases", path);
    if (s->r1 && (rc = check_rot(s->r1, path, "/r1", s->dim, "dim", &oe1, err))) return rc;
    worst = oe1;
    for (int i = 0; i < ng && !rc; i++) {
        if (!grp[i].arr) continue;
        if (!(oe[i] = calloc((size_t)grp[i].count, sizeof(double)))) {
            rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
            break;
        }
        for (int l = 0; l < grp[i].count && !rc; l++) {
            if (!grp[i].arr[l]) continue;
            snprintf(obj, sizeof obj, "/%s/%d", grp[i].name, l);
            rc = check_rot(grp[i].arr[l], path, obj, grp[i].order, grp[i].dimname, &oe[i][l], err);
            if (!rc && oe[i][l] > worst) worst = oe[i][l];
        }
    }
    if (!rc) rc = rb_rsio_check_junctions(s, path, &worst, err);
    if (rc) goto out;
    if (s->ruq) {
        if (s->n_layers < 1) {
            rc = rb_error_set(err, RB_EINVAL, "%s: RUQuant transforms in a set of %d layers", path, s->n_layers);
            goto out;
        }
        if (!(oq = calloc((size_t)s->n_layers * RB_RUQ_NSITES, sizeof *oq))) {
            rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
            goto out;
        }
        for (int l = 0; l < s->n_layers && !rc; l++)
            for (int k = 0; k < RB_RUQ_NSITES && !rc; k++) {
                const rb_ruq_site *q = s->ruq[l][k];
                if (!q) continue;
                snprintf(obj, sizeof obj, "/ruquant/%d/%s", l, rb_ruq_site_name(k));
                double *e = &oq[l * RB_RUQ_NSITES + k];
                if (!(rc = check_ruq(s, q, k, path, obj, e, err)) && *e > worst) worst = *e;
            }
        if (rc) goto out;
    }
    int r3 = s->r3 != 0, r4 = s->r4 != 0, emb = s->emb_center != 0;
    if (rb_h5_put_str(f, "method", s->method) || rb_h5_put_str(f, "rotbench_version", RB_VERSION) ||
        rb_h5_put_u64(f, "seed", s->seed) || rb_h5_put_i32(f, "dim", s->dim) ||
        rb_h5_put_i32(f, "head_dim", s->head_dim) || rb_h5_put_i32(f, "hidden_dim", s->hidden_dim) ||
        rb_h5_put_i32(f, "n_layers", s->n_layers) || rb_h5_put_i32(f, "r3", r3) || rb_h5_put_i32(f, "r4", r4) ||
        rb_h5_put_i32(f, "emb_center", emb) || rb_h5_put_i32(f, "cross_head", s->cross_head != 0) ||
        (s->ra && rb_h5_put_i32(f, "layerwise", 1)) || rb_h5_put_f64(f, "max_orth_error", worst)) {
        rc = rb_error_set(err, RB_EIO, "%s: writing root attributes failed: %s", path, rb_h5_last_error(d, sizeof d));
        goto out;
    }
    if (s->r1 && put_rot(f, "r1", s->r1, oe1)) {
        rc = rb_error_set(err, RB_EIO, "%s: writing /r1 failed: %s", path, rb_h5_last_error(d, sizeof d));
        goto out;
    }
    for (int i = 0; i < ng && !rc; i++) rc = write_rot_group(f, &grp[i], oe[i], path, err);
    if (!rc) rc = rb_rsio_write_junctions(f, s, path, err);
    if (!rc && s->ruq) rc = write_ruq(f, s, oq, path, err);
out:
    for (int i = 0; i < 3; i++) free(oe[i]);
    free(oq);
    return rc;
}

int rb_rotset_save(const rb_rotset *s, const char *path, rb_error *err) {
    RB_ASSERT(s && path);
    if (s->dim < 1 || s->head_dim < 1 || s->hidden_dim < 1 || s->n_layers < 0 || s->dim > ROTSET_MAX_ORDER ||
        s->head_dim > ROTSET_MAX_ORDER || s->hidden_dim > ROTSET_MAX_ORDER || s->n_layers > ROTSET_MAX_LAYERS)
        return rb_error_set(err, RB_EINVAL, "%s: bad shape dim %d, head_dim %d, hidden_dim %d, n_layers %d", path,
                            s->dim, s->head_dim, s->hidden_dim, s->n_layers);
    if (!memchr(s->method, '\0', sizeof s->method))
        return rb_error_set(err, RB_EINVAL, "%s: method name not NUL-terminated", path);
    char tmp_path[4096];
    int rc = 0;
    if ((size_t)snprintf(tmp_path, sizeof tmp_path, "%s.tmp%d", path, (int)getpid()) >= sizeof tmp_path) {
            return rb_error_set(err, RB_EINVAL, "%s: path too long", path);
    }
    /* Create the temp file ourselves first: HDF5 does not report errno, and "Permission denied"
     * or "No such file or directory" is the useful part of the message. */
    int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) {
        int e = errno;
            return rb_error_set(err, RB_EIO, "%s: cannot create %s: %s", path, tmp_path, strerror(e));
    }
    close(fd);

    rb_h5_quiet q;
    char d[256];
    rb_h5_quiet_on(&q);
    /* The HDF5 1.8 file format: its superblock, object headers and group indexes carry checksums
     * that the library verifies before parsing, so damaged metadata is reported rather than
     * interpreted (HDF5 1.10 is not robust against arbitrary garbage in unchecksummed headers).
     * Still readable by any HDF5 ≥ 1.8 and h5py. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), f = -1;
    if (fapl >= 0 && H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) >= 0)
        f = H5Fcreate(tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    rb_h5_close(&fapl);
    if (f < 0) {
        rc = rb_error_set(err, RB_EIO, "%s: cannot create HDF5 file %s: %s", path, tmp_path,
                          rb_h5_last_error(d, sizeof d));
        goto fail;
    }
    if ((rc = rb_rotset_write_loc((int64_t)f, s, path, err))) goto fail;
    herr_t cl = H5Fclose(f); /* the final flush happens here: a full disk shows up now */
    f = -1;
    if (cl < 0) {
        rc = rb_error_set(err, RB_EIO, "%s: closing %s failed: %s", path, tmp_path, rb_h5_last_error(d, sizeof d));
        goto fail;
    }
    /* Data on disk before the rename, so a crash leaves either the old file or the whole new one. */
    fd = open(tmp_path, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0 || rename(tmp_path, path) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        rc = rb_error_set(err, RB_EIO, "%s: %s failed: %s", path, fd < 0 ? "reopen" : "fsync/rename", strerror(e));
        goto fail;
    }
    close(fd);
    rb_h5_quiet_off(&q);
    return 0;
fail:
    rb_h5_close(&f);
    unlink(tmp_path);
    rb_h5_quiet_off(&q);
    return rc;
}

/* ---- load ------------------------------------------------------------------------------ */

/* float32/float64 attribute holding a finite non-negative value (an error measure). */
int rb_rsio_get_err_value(rb_h5_reader *L, hid_t obj, const char *oname, const char *name, double *out) {
    double v;
    int rc = rb_h5_get_f64(L, obj, oname, name, &v);
    if (!rc && !(isfinite(v) && v >= 0))
        rc = rb_h5_fail(L, RB_EFORMAT, oname, "attribute '%s' = %g, expected a finite value ≥ 0", name, v);
    if (!rc) *out = v;
    return rc;
}

/* Opens dataset `name` in g (object name oname) and checks its class, element size and shape
 * [n] (rank 1) or [n][m] (rank 2) before anything is read; dimname names n in messages. */
int rb_rsio_dataset_open(rb_h5_reader *L, hid_t g, const char *oname, const char *name, H5T_class_t want, size_t esize,
                        int rank, int n, int m, const char *dimname, hid_t *out) {
    *out = -1;
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT), t = -1, sp = -1;
    if (d < 0) return rb_h5_fail(L, RB_EFORMAT, oname, "cannot open as a dataset: %s", rb_h5_detail(L));
    int rc = 0;
    t = H5Dget_type(d);
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    size_t size = t >= 0 ? H5Tget_size(t) : 0;
    int is_unsigned = c == H5T_INTEGER && H5Tget_sign(t) != H5T_SGN_2;
    if (c != want || size != esize || is_unsigned) {
        rc = rb_h5_fail(L, RB_EFORMAT, oname, "type is %zu-byte %s%s, expected %zu-byte %s%s", size,
                        rb_h5_class_name(c), is_unsigned ? " (unsigned)" : "", esize, rb_h5_class_name(want),
                        want == H5T_INTEGER ? " (signed)" : "");
        goto out;
    }
    hsize_t dims[H5S_MAX_RANK];
    int r = (sp = H5Dget_space(d)) >= 0 && H5Sget_simple_extent_type(sp) == H5S_SIMPLE
                ? H5Sget_simple_extent_dims(sp, dims, NULL)
                : -1;
    if (r < 0) {
        rc = rb_h5_fail(L, RB_EFORMAT, oname, "not a simple dataspace");
        goto out;
    }
    int ok = r == rank && dims[0] == (hsize_t)n && (rank == 1 || dims[1] == (hsize_t)m);
    if (!ok) {
        char shape[128] = "", want_shape[64];
        size_t k = 0;
        for (int i = 0; i < r && k < sizeof shape - 24; i++)
            k += (size_t)snprintf(shape + k, sizeof shape - k, "[%llu]", (unsigned long long)dims[i]);
        if (r == 0) snprintf(shape, sizeof shape, "scalar");
        if (rank == 1) snprintf(want_shape, sizeof want_shape, "[%d]", n);
        else snprintf(want_shape, sizeof want_shape, "[%d][%d]", n, m);
        rc = rb_h5_fail(L, RB_EFORMAT, oname, "shape %s does not match %s %d (expected %s)", shape, dimname, n,
                        want_shape);
        goto out;
    }
    /* Never-written storage reads back as fill values: report it as what it is. */
    if (H5Dget_storage_size(d) == 0) {
        rc = rb_h5_fail(L, RB_EFORMAT, oname, "dataset has no data written");
        goto out;
    }
out:
    rb_h5_close(&sp);
    rb_h5_close(&t);
    if (rc)
        rb_h5_close(&d);
    else
        *out = d;
    return rc;
}

/* Rotation group g (object name gname) of expected order n (dimname: "dim" or "head_dim"). */
static int read_rot(rb_h5_reader *L, hid_t g, const char *gname, int n, const char *dimname, rb_rot **out) {
    *out = NULL;
    char kind[16], obj[ROTSET_NAME_MAX + 16];
    int fn;
    double stored_err;
    int rc = rb_h5_get_str(L, g, gname, "kind", kind, sizeof kind);
    if (!rc) rc = rb_h5_get_i32(L, g, gname, "n", 1, ROTSET_MAX_ORDER, &fn);
    if (!rc) rc = rb_rsio_get_err_value(L, g, gname, "orth_error", &stored_err);
    if (rc) return rc;
    if (fn != n) return rb_h5_fail(L, RB_EFORMAT, gname, "n = %d does not match %s %d", fn, dimname, n);
    int hadamard = !strcmp(kind, "hadamard");
    if (!hadamard && strcmp(kind, "dense"))
        return rb_h5_fail(L, RB_EFORMAT, gname, "unknown kind '%s' (expected dense or hadamard)", kind);
    const char *name = hadamard ? "signs" : "R", *other = hadamard ? "R" : "signs";
    snprintf(obj, sizeof obj, "%s/%s", gname, name);
    htri_t has = H5Lexists(g, name, H5P_DEFAULT), has_other = H5Lexists(g, other, H5P_DEFAULT);
    if (has < 0 || has_other < 0) return rb_h5_fail(L, RB_EFORMAT, gname, "cannot list members: %s", rb_h5_detail(L));
    if (!has) return rb_h5_fail(L, RB_EFORMAT, obj, "dataset missing (kind %s)", kind);
    /* Both present means the writer was confused about what the matrix is: refuse to guess. */
    if (has_other) return rb_h5_fail(L, RB_EFORMAT, gname, "holds both R and signs (kind %s)", kind);
    hid_t d;
    if ((rc = rb_rsio_dataset_open(L, g, obj, name, hadamard ? H5T_INTEGER : H5T_FLOAT, hadamard ? 1 : 8, hadamard ? 1 : 2, n,
                           n, dimname, &d)))
        return rc;
    size_t count = hadamard ? (size_t)n : (size_t)n * (size_t)n, esize = hadamard ? 1 : sizeof(double);
    void *buf = malloc(count * esize);
    rb_error e;
    if (!buf) {
        rc = rb_h5_fail(L, RB_ENOMEM, obj, "out of memory");
    } else if (H5Dread(d, hadamard ? H5T_NATIVE_INT8 : H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        rc = rb_h5_fail(L, RB_EFORMAT, obj, "cannot read: %s", rb_h5_detail(L));
    } else if (hadamard) {
        const int8_t *s = buf;
        for (int i = 0; i < n && !rc; i++)
            if (s[i] != 1 && s[i] != -1) rc = rb_h5_fail(L, RB_EFORMAT, obj, "entry %d is %d, expected ±1", i, s[i]);
        /* A missing Hadamard table (RB_ENOTFOUND) or memory stays what it is; anything else means
         * the recipe itself is bad. */
        if (!rc && (rc = rb_rot_from_hadamard(n, s, out, &e)))
            rc = rb_h5_fail(L, rc == RB_ENOTFOUND || rc == RB_ENOMEM ? rc : RB_EFORMAT, obj, "%s", e.msg);
    } else if ((rc = rb_rot_from_dense(buf, n, out, &e))) {
        rc = rb_h5_fail(L, rc == RB_ENOMEM ? rc : RB_EFORMAT, obj, "%s", e.msg);
    }
    free(buf);
    H5Dclose(d);
    return rc;
}

/* Parses a layer group name: decimal without sign or leading zeros, below n_layers. */
int rb_rsio_parse_layer(const char *name, int n_layers) {
    if (!name[0] || (name[0] == '0' && name[1])) return -1;
    long v = 0;
    for (const char *p = name; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
        if (v >= n_layers) return -1;
    }
    return (int)v;
}

static int load_rot_group(rb_h5_reader *L, hid_t f, const rot_group *g);
static int load_ruq(rb_h5_reader *L, hid_t f, rb_rotset *s);

/* Everything after the file is open; fills s (already zeroed) and leaves cleanup to the caller. */
static int load_open(rb_h5_reader *L, hid_t f, rb_rotset *s) {
    char method[sizeof s->method], version[64];
    uint64_t seed;
    int dim, head_dim, hidden_dim, n_layers, r3, r4, emb;
    double max_err;
    int rc = rb_h5_get_str(L, f, "/", "method", method, sizeof method);
    if (!rc) rc = rb_h5_get_str(L, f, "/", "rotbench_version", version, sizeof version);
    if (!rc) rc = rb_h5_get_u64(L, f, "/", "seed", &seed);
    if (!rc) rc = rb_h5_get_i32(L, f, "/", "dim", 1, ROTSET_MAX_ORDER, &dim);
    if (!rc) rc = rb_h5_get_i32(L, f, "/", "head_dim", 1, ROTSET_MAX_ORDER, &head_dim);
    if (!rc) rc = rb_h5_get_i32(L, f, "/", "hidden_dim", 1, ROTSET_MAX_ORDER, &hidden_dim);
    if (!rc) rc = rb_h5_get_i32(L, f, "/", "n_layers", 0, ROTSET_MAX_LAYERS, &n_layers);
    if (!rc) rc = rb_h5_get_i32(L, f, "/", "r3", 0, 1, &r3);
    if (!rc) rc = rb_h5_get_i32(L, f, "/", "r4", 0, 1, &r4);
    if (!rc) rc = rb_h5_get_i32(L, f, "/", "emb_center", 0, 1, &emb);
    int cross = 0, layerwise = 0;
    if (!rc && H5Aexists(f, "cross_head") > 0) rc = rb_h5_get_i32(L, f, "/", "cross_head", 0, 1, &cross);
    if (!rc && H5Aexists(f, "layerwise") > 0) rc = rb_h5_get_i32(L, f, "/", "layerwise", 0, 1, &layerwise);
    if (!rc) rc = rb_rsio_get_err_value(L, f, "/", "max_orth_error", &max_err);
    if (rc) return rc;
    rb_error e;
    if ((rc = rb_rotset_init(s, method, dim, head_dim, hidden_dim, n_layers, &e)))
        return rb_h5_fail(L, rc == RB_ENOMEM ? rc : RB_EFORMAT, "/", "%s", e.msg);
    s->seed = seed;
    s->r3 = r3;
    s->r4 = r4;
    s->emb_center = emb;
    s->cross_head = cross;
    if (layerwise && (rc = rb_rotset_layerwise_alloc(s, &e)))
        return rb_h5_fail(L, rc == RB_ENOMEM ? rc : RB_EFORMAT, "/", "%s", e.msg);

    hid_t g = -1;
    htri_t has = H5Lexists(f, "r1", H5P_DEFAULT);
    if (has < 0) return rb_h5_fail(L, RB_EFORMAT, "/", "cannot list members: %s", rb_h5_detail(L));
    if (has && layerwise) return rb_h5_fail(L, RB_EFORMAT, "/r1", "present in a set with layer-wise bases");
    if (has) {
        if ((g = H5Gopen2(f, "r1", H5P_DEFAULT)) < 0)
            return rb_h5_fail(L, RB_EFORMAT, "/r1", "cannot open as a group: %s", rb_h5_detail(L));
        rc = read_rot(L, g, "/r1", dim, "dim", &s->r1);
        rb_h5_close(&g);
        if (rc) return rc;
    }
    rot_group grp[3];
    int ng = rot_groups(s, grp);
    for (int i = 0; i < ng; i++)
        if ((rc = load_rot_group(L, f, &grp[i]))) return rc;
    if ((rc = rb_rsio_load_junctions(L, f, s))) return rc;
    return load_ruq(L, f, s);
}

/* Rotation group g->name (/<name>/<l>, l < g->count) of f into g->arr (allocated). */
static int load_rot_group(rb_h5_reader *L, hid_t f, const rot_group *g) {
    int rc = 0;
    hid_t grp = -1;
    htri_t has;
    char gname[ROTSET_NAME_MAX];
    snprintf(gname, sizeof gname, "/%s", g->name);
    if ((has = H5Lexists(f, g->name, H5P_DEFAULT)) < 0)
        return rb_h5_fail(L, RB_EFORMAT, "/", "cannot list members: %s", rb_h5_detail(L));
    if (!has) return 0;
    if (!g->arr) return rb_h5_fail(L, RB_EFORMAT, gname, "present in a set without layer-wise bases (no 'layerwise' attribute)");
    if ((grp = H5Gopen2(f, g->name, H5P_DEFAULT)) < 0)
        return rb_h5_fail(L, RB_EFORMAT, gname, "cannot open as a group: %s", rb_h5_detail(L));
    H5G_info_t info;
    if (H5Gget_info(grp, &info) < 0) {
        rc = rb_h5_fail(L, RB_EFORMAT, gname, "cannot list members: %s", rb_h5_detail(L));
        goto out;
    }
    for (hsize_t i = 0; i < info.nlinks && !rc; i++) {
        char name[ROTSET_NAME_MAX], obj[ROTSET_NAME_MAX * 2 + 8];
        ssize_t len = H5Lget_name_by_idx(grp, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT);
        if (len < 0) {
            rc = rb_h5_fail(L, RB_EFORMAT, gname, "cannot list members: %s", rb_h5_detail(L));
            break;
        }
        int l = (size_t)len < sizeof name ? rb_rsio_parse_layer(name, g->count) : -1;
        if (l < 0) {
            rc = rb_h5_fail(L, RB_EFORMAT, gname, "member '%s%s' is not a layer index in [0, %d)", name,
                            (size_t)len < sizeof name ? "" : "...", g->count);
            break;
        }
        snprintf(obj, sizeof obj, "%s/%d", gname, l);
        if (g->arr[l]) {
            rc = rb_h5_fail(L, RB_EFORMAT, obj, "appears twice");
            break;
        }
        hid_t gl = H5Gopen2(grp, name, H5P_DEFAULT);
        if (gl < 0) {
            rc = rb_h5_fail(L, RB_EFORMAT, obj, "cannot open as a group: %s", rb_h5_detail(L));
            break;
        }
        rc = read_rot(L, gl, obj, g->order, g->dimname, &g->arr[l]);
        H5Gclose(gl);
    }
out:
    rb_h5_close(&grp);
    return rc;
}

/* Names of the members of group g (object name gname), one at a time: *name gets member i.
 * Returns 0, or an error naming gname; a name longer than cap − 1 reads as "...". */
int rb_rsio_member_name(rb_h5_reader *L, hid_t g, const char *gname, hsize_t i, char *name, size_t cap) {
    ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, cap, H5P_DEFAULT);
    if (len < 0) return rb_h5_fail(L, RB_EFORMAT, gname, "cannot list members: %s", rb_h5_detail(L));
    if ((size_t)len >= cap) snprintf(name, cap, "...");
    return 0;
}

/* One dataset of a RUQuant site group: class want/esize, rank 1 [n] or rank 2 [n][n], read as mtype
 * into buf. */
static int read_ruq_data(rb_h5_reader *L, hid_t g, const char *gname, const char *name, H5T_class_t want,
                         size_t esize, int rank, int n, const char *dimname, hid_t mtype, void *buf) {
    char obj[ROTSET_NAME_MAX * 2 + 32];
    snprintf(obj, sizeof obj, "%s/%s", gname, name);
    htri_t has = H5Lexists(g, name, H5P_DEFAULT);
    if (has < 0) return rb_h5_fail(L, RB_EFORMAT, gname, "cannot list members: %s", rb_h5_detail(L));
    if (!has) return rb_h5_fail(L, RB_EFORMAT, obj, "dataset missing");
    hid_t d;
    int rc = rb_rsio_dataset_open(L, g, obj, name, want, esize, rank, n, n, dimname, &d);
    if (rc) return rc;
    if (H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        rc = rb_h5_fail(L, RB_EFORMAT, obj, "cannot read: %s", rb_h5_detail(L));
    H5Dclose(d);
    return rc;
}

/* RUQuant site group g (object name gname) of site k into *out, validated against s's shapes. */
static int read_ruq_site(rb_h5_reader *L, hid_t g, const char *gname, const rb_rotset *s, int k, rb_ruq_site **out) {
    *out = NULL;
    int n, block;
    double stored_err;
    int rc = rb_h5_get_i32(L, g, gname, "n", 1, ROTSET_MAX_ORDER, &n);
    if (!rc) rc = rb_h5_get_i32(L, g, gname, "block", 1, ROTSET_MAX_ORDER, &block);
    if (!rc) rc = rb_rsio_get_err_value(L, g, gname, "orth_error", &stored_err);
    int fused = 0, has_fused = rc ? 0 : rb_h5_has_attr(L, g, gname, "scale_fused");
    if (has_fused < 0) rc = L->err->code;
    else if (has_fused) rc = rb_h5_get_i32(L, g, gname, "scale_fused", 0, 1, &fused);
    if (rc) return rc;
    const char *dn;
    int mult, want = ruq_width(s, k, &dn, &mult);
    if (want && n != want) return rb_h5_fail(L, RB_EFORMAT, gname, "n = %d does not match %s %d", n, dn, want);
    if (!want && n % mult) return rb_h5_fail(L, RB_EFORMAT, gname, "n = %d is not a multiple of %s %d", n, dn, mult);
    if (block > n || n % block) return rb_h5_fail(L, RB_EFORMAT, gname, "block %d does not divide n = %d", block, n);
    rb_error e;
    rb_ruq_site *q;
    if ((rc = rb_ruq_site_alloc(n, block, &q, &e))) return rb_h5_fail(L, rc, gname, "%s", e.msg);
    q->scale_fused = fused;
    if (!(rc = read_ruq_data(L, g, gname, "scale", H5T_FLOAT, 8, 1, n, "n", H5T_NATIVE_DOUBLE, q->scale)) &&
        !(rc = read_ruq_data(L, g, gname, "blk0", H5T_FLOAT, 8, 2, block, "block", H5T_NATIVE_DOUBLE, q->blk0)) &&
        !(rc = read_ruq_data(L, g, gname, "perm", H5T_INTEGER, 4, 1, n, "n", H5T_NATIVE_INT32, q->perm)) &&
        !(rc = read_ruq_data(L, g, gname, "blk1", H5T_FLOAT, 8, 2, block, "block", H5T_NATIVE_DOUBLE, q->blk1)) &&
        !(rc = read_ruq_data(L, g, gname, "householder", H5T_FLOAT, 8, 1, n, "n", H5T_NATIVE_DOUBLE, q->hh)) &&
        (rc = rb_ruq_site_check(q, &e)))
        rc = rb_h5_fail(L, rc == RB_ENOMEM ? rc : RB_EFORMAT, gname, "%s", e.msg);
    if (rc) rb_ruq_site_free(q);
    else *out = q;
    return rc;
}

/* /ruquant/<l>/<site> of f into s (absent group: no RUQuant transform). */
static int load_ruq(rb_h5_reader *L, hid_t f, rb_rotset *s) {
    htri_t has = H5Lexists(f, "ruquant", H5P_DEFAULT);
    if (has < 0) return rb_h5_fail(L, RB_EFORMAT, "/", "cannot list members: %s", rb_h5_detail(L));
    if (!has) return 0;
    hid_t g = H5Gopen2(f, "ruquant", H5P_DEFAULT), gl = -1, gs = -1;
    if (g < 0) return rb_h5_fail(L, RB_EFORMAT, "/ruquant", "cannot open as a group: %s", rb_h5_detail(L));
    rb_error e;
    int rc = rb_rotset_ruq_alloc(s, &e);
    if (rc) rc = rb_h5_fail(L, rc == RB_ENOMEM ? rc : RB_EFORMAT, "/ruquant", "%s", e.msg);
    H5G_info_t info = {0}, li = {0};
    if (!rc && H5Gget_info(g, &info) < 0) rc = rb_h5_fail(L, RB_EFORMAT, "/ruquant", "cannot list members: %s", rb_h5_detail(L));
    for (hsize_t i = 0; !rc && i < info.nlinks; i++) {
        char name[ROTSET_NAME_MAX], lname[ROTSET_NAME_MAX + 16], site[ROTSET_NAME_MAX], sname[ROTSET_NAME_MAX * 2 + 16];
        if ((rc = rb_rsio_member_name(L, g, "/ruquant", i, name, sizeof name))) break;
        int l = rb_rsio_parse_layer(name, s->n_layers);
        if (l < 0) {
            rc = rb_h5_fail(L, RB_EFORMAT, "/ruquant", "member '%s' is not a layer index in [0, %d)", name, s->n_layers);
            break;
        }
        snprintf(lname, sizeof lname, "/ruquant/%d", l);
        if ((gl = H5Gopen2(g, name, H5P_DEFAULT)) < 0 || H5Gget_info(gl, &li) < 0) {
            rc = rb_h5_fail(L, RB_EFORMAT, lname, "cannot open as a group: %s", rb_h5_detail(L));
            break;
        }
        for (hsize_t j = 0; !rc && j < li.nlinks; j++) {
            if ((rc = rb_rsio_member_name(L, gl, lname, j, site, sizeof site))) break;
            int k = rb_ruq_site_from_name(site);
            if (k < 0) {
                rc = rb_h5_fail(L, RB_EFORMAT, lname, "member '%s' is not a site (attn_in, o_in, mlp_in, down_in)", site);
                break;
            }
            snprintf(sname, sizeof sname, "%s/%s", lname, site);
            if ((gs = H5Gopen2(gl, site, H5P_DEFAULT)) < 0) {
                rc = rb_h5_fail(L, RB_EFORMAT, sname, "cannot open as a group: %s", rb_h5_detail(L));
                break;
            }
            rc = read_ruq_site(L, gs, sname, s, k, &s->ruq[l][k]);
            rb_h5_close(&gs);
        }
        rb_h5_close(&gl);
    }
    rb_h5_close(&gl);
    rb_h5_close(&g);
    return rc;
}

int rb_rotset_read_loc(int64_t loc, const char *path, rb_rotset *s, rb_error *err) {
    memset(s, 0, sizeof *s);
    rb_h5_reader L = {.path = path, .err = err, .any_rank = 1};
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    int rc = load_open(&L, (hid_t)loc, s);
    rb_h5_quiet_off(&q);
    if (rc) rb_rotset_free(s);
    return rc;
}

static int rb_rotset_load_direct(const char *path, rb_rotset *s, rb_error *err) {
    RB_ASSERT(path && s);
    memset(s, 0, sizeof *s);
    /* OS-level problems first, with errno: HDF5 would report them all as "unable to open file". */
    int rc = rb_h5_check_readable(path, err);
    if (rc) return rc;

    rb_h5_reader L = {.path = path, .err = err, .any_rank = 1};
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    hid_t f = -1;
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        rc = rb_error_set(err, RB_EFORMAT, "%s: not an HDF5 file", path);
    } else if ((f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        rc = rb_error_set(err, RB_EFORMAT, "%s: corrupt or truncated HDF5 file: %s", path, rb_h5_detail(&L));
    } else {
        rc = load_open(&L, f, s);
        if (H5Fclose(f) < 0 && !rc)
            rc = rb_error_set(err, RB_EFORMAT, "%s: closing failed: %s", path, rb_h5_detail(&L));
    }
    rb_h5_quiet_off(&q);
    if (rc) rb_rotset_free(s);
    return rc;
}

/* rb_rotset_load through rb_h5_guard: a damaged file crashing or hanging HDF5 is refused (issue 16). */
typedef struct rb_rotset_load_ctx {
    const char *path;
    rb_rotset *s;
} rb_rotset_load_ctx;

static int rb_rotset_load_fn(void *c, rb_error *err) {
    rb_rotset_load_ctx *x = c;
    return rb_rotset_load_direct(x->path, x->s, err);
}

int rb_rotset_load(const char *path, rb_rotset *s, rb_error *err) {
    rb_rotset_load_ctx x = {path, s};
    return rb_h5_guard(path, rb_rotset_load_fn, &x, err);
}

/* rb_rotset_io_junction: save/load of a layer-wise set's low-rank residual junctions
 * (/junction/<l>/<attn|mlp>, layout in rb_rotset_io.c), with the same distrust of the file as the
 * rest of the reader. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rb_rotset_io_internal.h"

/* Group name of junction k of layer l. */
static void junction_obj(char *buf, size_t cap, int l, int k) {
    snprintf(buf, cap, "/junction/%d/%s", l, rb_junction_name(k));
}

/* Checks the junctions of s before anything is written; the worst orthogonality error into *worst. */
int rb_rsio_check_junctions(const rb_rotset *s, const char *path, double *worst, rb_error *err) {
    if (!s->jn) return 0;
    if (!s->ra) return rb_error_set(err, RB_EINVAL, "%s: junctions without layer-wise bases", path);
    char obj[64];
    for (int l = 0; l < s->n_layers; l++)
        for (int k = 0; k < RB_JN_COUNT; k++) {
            const rb_junction *j = s->jn[l][k];
            if (!j) continue;
            junction_obj(obj, sizeof obj, l, k);
            if (j->n != s->dim || j->r < 0 || j->r > j->n)
                return rb_error_set(err, RB_EINVAL, "%s: %s: width %d rank %d for dim %d", path, obj, j->n, j->r, s->dim);
            double e = rb_junction_orth_err(j);
            if (!(e <= RB_ROT_ORTH_TOL))
                return rb_error_set(err, RB_EINVAL, "%s: %s: not orthogonal: error %.3g > %.0e", path, obj, e,
                                    RB_ROT_ORTH_TOL);
            if (e > *worst) *worst = e;
        }
    return 0;
}

/* /junction/<l>/<attn|mlp> of s into loc: attrs n, r (int32), dev, approx_err, orth_error (float64;
 * NaN allowed for the first two: unknown); datasets Q float64 [n][r], M float64 [r][r] when r > 0. */
int rb_rsio_write_junctions(hid_t loc, const rb_rotset *s, const char *path, rb_error *err) {
    hid_t g = -1, gl = -1, gj = -1;
    char d[256], obj[64], name[ROTSET_NAME_MAX];
    int rc = 0;
    for (int l = 0; s->jn && l < s->n_layers && !rc; l++) {
        for (int k = 0; k < RB_JN_COUNT && !rc; k++) {
            const rb_junction *j = s->jn[l][k];
            if (!j) continue;
            junction_obj(obj, sizeof obj, l, k);
            snprintf(name, sizeof name, "%d", l);
            hsize_t dq[2] = {(hsize_t)j->n, (hsize_t)j->r}, dm[2] = {(hsize_t)j->r, (hsize_t)j->r};
            int bad = (g < 0 && (g = H5Gcreate2(loc, "junction", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) ||
                      (gl < 0 && (gl = H5Gcreate2(g, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) ||
                      (gj = H5Gcreate2(gl, rb_junction_name(k), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
                      rb_h5_put_i32(gj, "n", j->n) || rb_h5_put_i32(gj, "r", j->r) ||
                      rb_h5_put_f64(gj, "dev", j->dev) || rb_h5_put_f64(gj, "approx_err", j->approx_err) ||
                      rb_h5_put_f64(gj, "orth_error", rb_junction_orth_err(j));
            if (!bad && j->r > 0)
                bad = rb_h5_put_dataset_checked(gj, "Q", 2, dq, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, j->Q) ||
                      rb_h5_put_dataset_checked(gj, "M", 2, dm, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, j->M);
            rb_h5_close(&gj);
            if (bad) rc = rb_error_set(err, RB_EIO, "%s: writing %s failed: %s", path, obj, rb_h5_last_error(d, sizeof d));
        }
        rb_h5_close(&gl);
    }
    rb_h5_close(&g);
    return rc;
}

/* Junction group g (object name gname) into *out (width s->dim). */
static int read_junction(rb_h5_reader *L, hid_t g, const char *gname, const rb_rotset *s, rb_junction **out) {
    *out = NULL;
    int n, r;
    double dev, ae, stored;
    int rc = rb_h5_get_i32(L, g, gname, "n", 1, ROTSET_MAX_ORDER, &n);
    if (!rc) rc = rb_h5_get_i32(L, g, gname, "r", 0, ROTSET_MAX_ORDER, &r);
    if (!rc) rc = rb_h5_get_f64(L, g, gname, "dev", &dev);
    if (!rc) rc = rb_h5_get_f64(L, g, gname, "approx_err", &ae);
    if (!rc) rc = rb_rsio_get_err_value(L, g, gname, "orth_error", &stored);
    if (rc) return rc;
    if (n != s->dim) return rb_h5_fail(L, RB_EFORMAT, gname, "n = %d does not match dim %d", n, s->dim);
    if (r > n) return rb_h5_fail(L, RB_EFORMAT, gname, "rank %d above n = %d", r, n);
    rb_error e;
    rb_junction *j;
    if ((rc = rb_junction_alloc(n, r, &j, &e))) return rb_h5_fail(L, rc, gname, "%s", e.msg);
    j->dev = dev, j->approx_err = ae;
    char obj[ROTSET_NAME_MAX * 2 + 32];
    for (int i = 0; i < 2 && r > 0 && !rc; i++) {
        const char *name = i ? "M" : "Q";
        snprintf(obj, sizeof obj, "%s/%s", gname, name);
        htri_t has = H5Lexists(g, name, H5P_DEFAULT);
        hid_t d = -1;
        if (has <= 0) rc = rb_h5_fail(L, RB_EFORMAT, obj, "dataset missing (rank %d)", r);
        else if (!(rc = rb_rsio_dataset_open(L, g, obj, name, H5T_FLOAT, 8, 2, i ? r : n, r, i ? "r" : "n", &d))) {
            if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, i ? j->M : j->Q) < 0)
                rc = rb_h5_fail(L, RB_EFORMAT, obj, "cannot read: %s", rb_h5_detail(L));
            H5Dclose(d);
        }
    }
    if (!rc && (rc = rb_junction_check(j, &e))) rc = rb_h5_fail(L, rc == RB_ENOMEM ? rc : RB_EFORMAT, gname, "%s", e.msg);
    if (rc) rb_junction_free(j);
    else *out = j;
    return rc;
}

/* /junction/<l>/<attn|mlp> of f into s (absent: none; needs layer-wise bases). */
int rb_rsio_load_junctions(rb_h5_reader *L, hid_t f, rb_rotset *s) {
    htri_t has = H5Lexists(f, "junction", H5P_DEFAULT);
    if (has < 0) return rb_h5_fail(L, RB_EFORMAT, "/", "cannot list members: %s", rb_h5_detail(L));
    if (!has) return 0;
    if (!s->ra) return rb_h5_fail(L, RB_EFORMAT, "/junction", "present in a set without layer-wise bases");
    rb_error e;
    int rc = rb_rotset_jn_alloc(s, &e);
    if (rc) return rb_h5_fail(L, rc, "/junction", "%s", e.msg);
    hid_t g = H5Gopen2(f, "junction", H5P_DEFAULT), gl = -1, gj = -1;
    if (g < 0) return rb_h5_fail(L, RB_EFORMAT, "/junction", "cannot open as a group: %s", rb_h5_detail(L));
    H5G_info_t info = {0}, li = {0};
    if (H5Gget_info(g, &info) < 0) rc = rb_h5_fail(L, RB_EFORMAT, "/junction", "cannot list members: %s", rb_h5_detail(L));
    for (hsize_t i = 0; !rc && i < info.nlinks; i++) {
        char name[ROTSET_NAME_MAX], lname[ROTSET_NAME_MAX + 16], kn[ROTSET_NAME_MAX], jname[ROTSET_NAME_MAX * 2 + 16];
        if ((rc = rb_rsio_member_name(L, g, "/junction", i, name, sizeof name))) break;
        int l = rb_rsio_parse_layer(name, s->n_layers);
        if (l < 0) {
            rc = rb_h5_fail(L, RB_EFORMAT, "/junction", "member '%s' is not a layer index in [0, %d)", name, s->n_layers);
            break;
        }
        snprintf(lname, sizeof lname, "/junction/%d", l);
        if ((gl = H5Gopen2(g, name, H5P_DEFAULT)) < 0 || H5Gget_info(gl, &li) < 0) {
            rc = rb_h5_fail(L, RB_EFORMAT, lname, "cannot open as a group: %s", rb_h5_detail(L));
            break;
        }
        for (hsize_t q = 0; !rc && q < li.nlinks; q++) {
            if ((rc = rb_rsio_member_name(L, gl, lname, q, kn, sizeof kn))) break;
            int k = !strcmp(kn, "attn") ? RB_JN_ATTN : !strcmp(kn, "mlp") ? RB_JN_MLP : -1;
            if (k < 0) {
                rc = rb_h5_fail(L, RB_EFORMAT, lname, "member '%s' is not a junction (attn, mlp)", kn);
                break;
            }
            snprintf(jname, sizeof jname, "%s/%s", lname, kn);
            if ((gj = H5Gopen2(gl, kn, H5P_DEFAULT)) < 0) {
                rc = rb_h5_fail(L, RB_EFORMAT, jname, "cannot open as a group: %s", rb_h5_detail(L));
                break;
            }
            rc = read_junction(L, gj, jname, s, &s->jn[l][k]);
            rb_h5_close(&gj);
        }
        rb_h5_close(&gl);
    }
    rb_h5_close(&gl);
    rb_h5_close(&g);
    return rc;
}


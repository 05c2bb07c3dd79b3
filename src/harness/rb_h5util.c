/* rb_h5util: shared HDF5 helpers (conventions in rb_h5util.h). */
#include "harness/rb_h5util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- writing ------------------------------------------------------------------------------ */

int rb_h5_put_dataset(hid_t g, const char *name, int rank, const hsize_t *dims, hid_t ftype, hid_t mtype,
                      const void *data) {
    htri_t ex = H5Lexists(g, name, H5P_DEFAULT);
    if (ex < 0 || (ex > 0 && H5Ldelete(g, name, H5P_DEFAULT) < 0)) return -1;
    hid_t sp = H5Screate_simple(rank, dims, NULL), d = -1;
    int ok = sp >= 0 && (d = H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
             H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    rb_h5_close(&d);
    rb_h5_close(&sp);
    return ok ? 0 : -1;
}

hid_t rb_h5_group(hid_t parent, const char *name, int replace, int track_order) {
    htri_t ex = H5Lexists(parent, name, H5P_DEFAULT);
    if (ex < 0) return -1;
    if (ex > 0) {
        if (!replace) return H5Gopen2(parent, name, H5P_DEFAULT);
        if (H5Ldelete(parent, name, H5P_DEFAULT) < 0) return -1;
    }
    hid_t gcpl = H5P_DEFAULT;
    if (track_order) {
        gcpl = H5Pcreate(H5P_GROUP_CREATE);
        if (gcpl < 0 || H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0 ||
            H5Pset_attr_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0) {
            if (gcpl >= 0) H5Pclose(gcpl);
            return -1;
        }
    }
    hid_t g = H5Gcreate2(parent, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (track_order) H5Pclose(gcpl);
    return g;
}

/* ---- reading ------------------------------------------------------------------------------ */

hid_t rb_h5_fapl_read(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return fapl;
#if H5_VERSION_GE(1, 10, 7)
    /* Readers never modify the file; a writer's exclusive lock must not make them fail. */
    H5Pset_file_locking(fapl, 0, 1);
#endif
    return fapl;
}

hid_t rb_h5_fapl_write(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return fapl;
#if H5_VERSION_GE(1, 10, 7)
    H5Pset_file_locking(fapl, 1, 1);
#endif
    return fapl;
}

int rb_h5_open_read(const char *path, hid_t *out, rb_error *err) {
    *out = -1;
    int rc = rb_h5_check_readable(path, err);
    if (rc) return rc;
    char d[256];
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) return rb_error_set(err, RB_EFORMAT, "%s: not an HDF5 file", path);
    hid_t fapl = rb_h5_fapl_read();
    hid_t f = fapl >= 0 ? H5Fopen(path, H5F_ACC_RDONLY, fapl) : -1;
    if (f < 0) {
        /* This process may hold the file open for writing already (HDF5 then insists on the same
         * locking setting): try again with the defaults. */
        rb_h5_last_error(d, sizeof d);
        f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f < 0 && !d[0]) rb_h5_last_error(d, sizeof d);
    }
    if (fapl >= 0) H5Pclose(fapl);
    if (f < 0) return rb_error_set(err, RB_EFORMAT, "%s: corrupt or truncated HDF5 file: %s", path, d);
    *out = f;
    return 0;
}

int rb_h5_has_attr(rb_h5_reader *R, hid_t obj, const char *oname, const char *name) {
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) return rb_h5_fail(R, RB_EFORMAT, oname, "cannot list attributes: %s", rb_h5_detail(R)), -1;
    return ex > 0;
}

int rb_h5_has_link(rb_h5_reader *R, hid_t obj, const char *oname, const char *name) {
    htri_t ex = H5Lexists(obj, name, H5P_DEFAULT);
    if (ex < 0) return rb_h5_fail(R, RB_EFORMAT, oname, "cannot list members: %s", rb_h5_detail(R)), -1;
    return ex > 0;
}

int rb_h5_open_group(rb_h5_reader *R, hid_t parent, const char *oname, const char *name, hid_t *out) {
    *out = -1;
    int has = rb_h5_has_link(R, parent, oname, name);
    if (has < 0) return R->err ? R->err->code : RB_EFORMAT;
    if (!has) return rb_h5_fail(R, RB_EFORMAT, oname, "group missing");
    H5O_info_t info;
    if (H5Oget_info_by_name(parent, name, &info, H5P_DEFAULT) < 0 || info.type != H5O_TYPE_GROUP)
        return rb_h5_fail(R, RB_EFORMAT, oname, "not a group");
    if ((*out = H5Gopen2(parent, name, H5P_DEFAULT)) < 0)
        return rb_h5_fail(R, RB_EFORMAT, oname, "cannot open as a group: %s", rb_h5_detail(R));
    return 0;
}

int rb_h5_open_dataset_1d(rb_h5_reader *R, hid_t g, const char *oname, const char *name, H5T_class_t want,
                          size_t esize, long long n_expect, hid_t *out, hsize_t *n) {
    *out = -1;
    int has = rb_h5_has_link(R, g, oname, name);
    if (has < 0) return R->err ? R->err->code : RB_EFORMAT;
    if (!has) return rb_h5_fail(R, RB_EFORMAT, oname, "dataset missing");
    H5O_info_t info;
    if (H5Oget_info_by_name(g, name, &info, H5P_DEFAULT) < 0 || info.type != H5O_TYPE_DATASET)
        return rb_h5_fail(R, RB_EFORMAT, oname, "not a dataset");
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT), t = -1, sp = -1;
    if (d < 0) return rb_h5_fail(R, RB_EFORMAT, oname, "cannot open as a dataset: %s", rb_h5_detail(R));
    int rc = 0;
    t = H5Dget_type(d);
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    size_t size = t >= 0 ? H5Tget_size(t) : 0;
    hsize_t dims[H5S_MAX_RANK];
    int r;
    if (c != want || (esize && size != esize)) {
        if (esize)
            rc = rb_h5_fail(R, RB_EFORMAT, oname, "type is %zu-byte %s, expected %zu-byte %s", size,
                            rb_h5_class_name(c), esize, rb_h5_class_name(want));
        else
            rc = rb_h5_fail(R, RB_EFORMAT, oname, "type is %s, expected %s", rb_h5_class_name(c),
                            rb_h5_class_name(want));
    } else if ((sp = H5Dget_space(d)) < 0 || H5Sget_simple_extent_type(sp) != H5S_SIMPLE ||
               (r = H5Sget_simple_extent_dims(sp, dims, NULL)) != 1) {
        rc = rb_h5_fail(R, RB_EFORMAT, oname, "not a one-dimensional dataset");
    } else if (n_expect >= 0 && dims[0] != (hsize_t)n_expect) {
        rc = rb_h5_fail(R, RB_EFORMAT, oname, "has %llu elements, expected %lld", (unsigned long long)dims[0],
                        n_expect);
    } else if (dims[0] > 0 && H5Dget_storage_size(d) == 0) {
        /* Never-written storage reads back as fill values: report it as what it is. */
        rc = rb_h5_fail(R, RB_EFORMAT, oname, "dataset has no data written");
    } else if (n) {
        *n = dims[0];
    }
    rb_h5_close(&sp);
    rb_h5_close(&t);
    if (rc)
        rb_h5_close(&d);
    else
        *out = d;
    return rc;
}

/* rb_h5_walk: read every object of an HDF5 file once (contract in rb_h5.h), so that a file about to
 * be reopened for writing (a resumed results.h5.partial) is known to be readable end to end before
 * the library is trusted with it. */
#include "core/rb_h5.h"

#include <stdlib.h>
#include <string.h>

typedef struct walk {
    const char *path;
    size_t max_bytes; /* bound on one dataset/attribute's decoded size */
    rb_error *err;
    int rc;
} walk;

static herr_t walk_fail(walk *k, const char *obj, const char *what) {
    char d[256];
    k->rc = rb_error_set(k->err, RB_EFORMAT, "%s: %s: %s%s%s", k->path, obj, what, rb_h5_last_error(d, sizeof d)[0] ? ": " : "",
                         d);
    return -1;
}

/* Reads every element of attribute or dataset `id` (file type ftype, extent sp) into a temporary
 * buffer in its native type, and releases any variable-length memory HDF5 allocated for them. */
static int read_values(walk *k, const char *obj, hid_t ftype, hid_t sp, int is_attr, hid_t id) {
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    hid_t mt = H5Tget_native_type(ftype, H5T_DIR_ASCEND);
    size_t es = mt >= 0 ? H5Tget_size(mt) : 0;
    if (np < 0 || mt < 0 || es == 0) {
        if (mt >= 0) H5Tclose(mt);
        return walk_fail(k, obj, "unreadable type or extent");
    }
    if ((size_t)np > k->max_bytes / es) {
        H5Tclose(mt);
        return walk_fail(k, obj, "larger than any rotbench file holds");
    }
    void *buf = calloc((size_t)np ? (size_t)np : 1, es);
    if (!buf) {
        H5Tclose(mt);
        k->rc = rb_error_set(k->err, RB_ENOMEM, "%s: %s: out of memory", k->path, obj);
        return -1;
    }
    herr_t r = np == 0 ? 0 : is_attr ? H5Aread(id, mt, buf) : H5Dread(id, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    int vl = H5Tdetect_class(mt, H5T_VLEN) > 0 || (H5Tget_class(mt) == H5T_STRING && H5Tis_variable_str(mt) > 0);
    if (r >= 0 && np > 0 && vl) H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf);
    free(buf);
    H5Tclose(mt);
    if (r < 0) return walk_fail(k, obj, "cannot read");
    return 0;
}

static herr_t walk_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
    (void)info;
    walk *k = data;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return walk_fail(k, name, "cannot open attribute");
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    int rc = t < 0 || sp < 0 ? walk_fail(k, name, "attribute without type or extent")
                             : read_values(k, name, t, sp, 1, a);
    rb_h5_close(&t);
    rb_h5_close(&sp);
    rb_h5_close(&a);
    return rc < 0 ? -1 : 0;
}

/* One object: its attributes, and its values if it is a dataset. */
static int walk_one(walk *k, hid_t loc, const char *name) {
    hid_t o = H5Oopen(loc, name, H5P_DEFAULT);
    if (o < 0) return walk_fail(k, name, "cannot open object");
    H5O_info_t info;
    herr_t r = H5Oget_info2(o, &info, H5O_INFO_BASIC);
    if (r < 0) walk_fail(k, name, "cannot read the object header");
    hsize_t idx = 0;
    if (r >= 0 && (r = H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, walk_attr, k)) < 0 && !k->rc)
        walk_fail(k, name, "cannot list attributes");
    if (r >= 0 && info.type == H5O_TYPE_DATASET) {
        hid_t t = H5Dget_type(o), sp = H5Dget_space(o);
        if (t < 0 || sp < 0) r = walk_fail(k, name, "dataset without type or extent");
        else if (read_values(k, name, t, sp, 0, o) < 0) r = -1;
        rb_h5_close(&t);
        rb_h5_close(&sp);
    }
    rb_h5_close(&o);
    return r < 0 ? -1 : 0;
}

/* Links, not objects, are visited: the callback gets the name even when the object's header is
 * damaged (H5Ovisit fails before calling back). Soft and external links are not followed. */
static herr_t walk_link(hid_t root, const char *name, const H5L_info_t *info, void *data) {
    if (info->type != H5L_TYPE_HARD) return 0;
    return walk_one(data, root, name);
}

int rb_h5_read_all(const char *path, size_t max_bytes, rb_error *err) {
    hid_t f;
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    int rc = rb_h5_open_read(path, &f, err);
    if (!rc) {
        walk k = {path, max_bytes, err, 0};
        if (walk_one(&k, f, ".") < 0 || H5Lvisit(f, H5_INDEX_NAME, H5_ITER_NATIVE, walk_link, &k) < 0)
            rc = k.rc ? k.rc : (walk_fail(&k, "/", "cannot walk the file"), k.rc);
        rb_h5_close(&f);
    }
    rb_h5_quiet_off(&q);
    return rc;
}

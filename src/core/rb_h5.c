/* rb_h5: HDF5 helpers shared by every file rotbench writes; conventions in rb_h5.h. */
#include "rb_h5.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- error stack ------------------------------------------------------------------------- */

void rb_h5_quiet_on(rb_h5_quiet *q) {
    q->func = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void rb_h5_quiet_off(const rb_h5_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

typedef struct detail_buf {
    char *buf;
    size_t cap;
} detail_buf;

static herr_t detail_cb(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    detail_buf *d = data;
    if (!d->buf[0] && e->desc && e->desc[0]) snprintf(d->buf, d->cap, "%s", e->desc);
    return 0;
}

const char *rb_h5_last_error(char *buf, size_t cap) {
    if (!cap) return buf;
    buf[0] = '\0';
    detail_buf d = {buf, cap};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, detail_cb, &d);
    return buf;
}

void rb_h5_close(hid_t *id) {
    if (*id < 0) return;
    switch (H5Iget_type(*id)) {
    case H5I_FILE: H5Fclose(*id); break;
    case H5I_GROUP: H5Gclose(*id); break;
    case H5I_DATASET: H5Dclose(*id); break;
    case H5I_ATTR: H5Aclose(*id); break;
    case H5I_DATATYPE: H5Tclose(*id); break;
    case H5I_DATASPACE: H5Sclose(*id); break;
    case H5I_GENPROP_LST: H5Pclose(*id); break;
    default: break;
    }
    *id = -1;
}

/* ---- writing ------------------------------------------------------------------------------ */

hid_t rb_h5_str_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

/* ---- reading ------------------------------------------------------------------------------ */

int rb_h5_fail(rb_h5_reader *R, int code, const char *obj, const char *fmt, ...) {
    char msg[RB_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rb_error_set(R->err, code, "%s: %s: %s", R->path, obj, msg);
}

const char *rb_h5_detail(rb_h5_reader *R) { return rb_h5_last_error(R->detail, sizeof R->detail); }

const char *rb_h5_class_name(H5T_class_t c) {
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "vlen";
    case H5T_OPAQUE: return "opaque";
    case H5T_BITFIELD: return "bitfield";
    case H5T_REFERENCE: return "reference";
    case H5T_TIME: return "time";
    default: return "unknown";
    }
}

/* Exit status of a probe whose reader returned an error (a clean refusal): distinct from 0 and from a
 * sanitizer's exit status 1, so the parent can tell a handled error from a crash. */
#define PROBE_READ_ERROR 73

static double mono_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int rb_h5_guard(const char *path, int (*fn)(void *ctx, rb_error *err), void *ctx, rb_error *err) {
    int rc = rb_h5_probe(path, fn, ctx, RB_H5_GUARD_TIMEOUT_S, err);
    return rc ? rc : fn(ctx, err);
}

int rb_h5_probe(const char *path, int (*fn)(void *ctx, rb_error *err), void *ctx, double seconds, rb_error *err) {
    const char *ug = getenv("RB_H5_UNGUARDED");
    if (ug && *ug == '1') return 0;
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) { /* the probe: _exit, so the parent's buffered output is not flushed twice */
        rb_error e = {0};
        _exit(fn(ctx, &e) == 0 ? 0 : PROBE_READ_ERROR);
    }
    double t0 = mono_now();
    useconds_t nap = 100;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) return 0; /* cannot watch it: the caller reads directly */
        if (mono_now() - t0 > seconds) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            return rb_error_set(err, RB_EFORMAT,
                                "%s: reading it did not finish in %g s (a damaged HDF5 file can make the library "
                                "loop): refused",
                                path, seconds);
        }
        usleep(nap);
        if (nap < 20000) nap *= 2;
    }
    if (WIFSIGNALED(status))
        return rb_error_set(err, RB_EFORMAT, "%s: the HDF5 library crashed reading it (%s): a damaged file, refused",
                            path, strsignal(WTERMSIG(status)));
    /* any other exit (a sanitizer's report exits 1) is a failure inside the reader too */
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != PROBE_READ_ERROR)
        return rb_error_set(err, RB_EFORMAT,
                            "%s: the HDF5 library crashed reading it (exit status %d): a damaged file, refused", path,
                            WEXITSTATUS(status));
    return 0;
}

int rb_h5_check_readable(const char *path, rb_error *err) {
    /* OS-level problems first, with errno: HDF5 reports them all as "unable to open file". */
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        return rb_error_set(err, e == ENOENT || e == ENOTDIR ? RB_ENOTFOUND : RB_EIO, "%s: cannot open: %s", path,
                            strerror(e));
    }
    if (S_ISDIR(st.st_mode)) return rb_error_set(err, RB_EIO, "%s: is a directory", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        int e = errno;
        return rb_error_set(err, RB_EIO, "%s: cannot open: %s", path, strerror(e));
    }
    close(fd);
    return 0;
}

/* Opens attribute `name` of obj with class `want` and *npoints elements (scalar: 1; npoints < 0:
 * any one-dimensional or scalar extent, returned in *npoints). A fixed count also requires rank
 * ≤ 1 unless R->any_rank. */
static int attr_open(rb_h5_reader *R, hid_t obj, const char *oname, const char *name, H5T_class_t want,
                     long long *npoints, hid_t *a, hid_t *ftype) {
    *a = *ftype = -1;
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) return rb_h5_fail(R, RB_EFORMAT, oname, "cannot read attribute '%s': %s", name, rb_h5_detail(R));
    if (ex == 0) return rb_h5_fail(R, RB_EFORMAT, oname, "attribute '%s' missing", name);
    if ((*a = H5Aopen(obj, name, H5P_DEFAULT)) < 0)
        return rb_h5_fail(R, RB_EFORMAT, oname, "cannot open attribute '%s': %s", name, rb_h5_detail(R));
    hid_t sp = H5Aget_space(*a);
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    H5S_class_t sc = sp >= 0 ? H5Sget_simple_extent_type(sp) : H5S_NO_CLASS;
    rb_h5_close(&sp);
    H5T_class_t c = H5T_NO_CLASS;
    int rc = 0;
    if (*npoints >= 0) {
        if (np != *npoints || (rank > 1 && !R->any_rank))
            rc = rb_h5_fail(R, RB_EFORMAT, oname, "attribute '%s' has %lld elements, expected %s", name,
                            (long long)np, *npoints == 1 ? "a scalar" : "another count");
    } else if (!(sc == H5S_SIMPLE && rank == 1) && !(sc == H5S_SCALAR)) {
        rc = rb_h5_fail(R, RB_EFORMAT, oname, "attribute '%s' is not a one-dimensional array", name);
    } else {
        *npoints = np;
    }
    if (!rc && ((*ftype = H5Aget_type(*a)) < 0 || (c = H5Tget_class(*ftype)) != want))
        rc = rb_h5_fail(R, RB_EFORMAT, oname, "attribute '%s' is %s, expected %s", name, rb_h5_class_name(c),
                        rb_h5_class_name(want));
    if (rc) {
        rb_h5_close(ftype);
        rb_h5_close(a);
    }
    return rc;
}

int rb_h5_get_int(rb_h5_reader *R, hid_t obj, const char *oname, const char *name, int64_t lo, int64_t hi,
                  int64_t *out) {
    hid_t a, t;
    long long one = 1;
    int rc = attr_open(R, obj, oname, name, H5T_INTEGER, &one, &a, &t);
    if (rc) return rc;
    int is_signed = H5Tget_sign(t) == H5T_SGN_2;
    size_t size = H5Tget_size(t);
    int64_t v = 0;
    uint64_t u = 0;
    if (size == 0 || size > 8)
        rc = rb_h5_fail(R, RB_EFORMAT, oname, "attribute '%s' is a %zu-byte integer, expected at most 8", name, size);
    else if (H5Aread(a, is_signed ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64, is_signed ? (void *)&v : (void *)&u) < 0)
        rc = rb_h5_fail(R, RB_EFORMAT, oname, "cannot read attribute '%s': %s", name, rb_h5_detail(R));
    else if (!is_signed && u > (uint64_t)INT64_MAX)
        rc = rb_h5_fail(R, RB_EFORMAT, oname, "attribute '%s' = %llu out of range [%lld, %lld]", name,
                        (unsigned long long)u, (long long)lo, (long long)hi);
    else {
        if (!is_signed) v = (int64_t)u;
        if (v < lo || v > hi)
            rc = rb_h5_fail(R, RB_EFORMAT, oname, "attribute '%s' = %lld out of range [%lld, %lld]", name,
                            (long long)v, (long long)lo, (long long)hi);
    }
    rb_h5_close(&t);
    rb_h5_close(&a);
    if (!rc) *out = v;
    return rc;
}

int rb_h5_get_i32(rb_h5_reader *R, hid_t obj, const char *oname, const char *name, int lo, int hi, int *out) {
    int64_t v;
    int rc = rb_h5_get_int(R, obj, oname, name, lo, hi, &v);
    if (!rc) *out = (int)v;
    return rc;
}

int rb_h5_get_u64(rb_h5_reader *R, hid_t obj, const char *oname, const char *name, uint64_t *out) {
    hid_t a, t;
    long long one = 1;
    int rc = attr_open(R, obj, oname, name, H5T_INTEGER, &one, &a, &t);
    if (rc) return rc;
    int is_signed = H5Tget_sign(t) == H5T_SGN_2;
    size_t size = H5Tget_size(t);
    int64_t v = 0;
    uint64_t u = 0;
    if (size == 0 || size > 8)
        rc = rb_h5_fail(R, RB_EFORMAT, oname, "attribute '%s' is a %zu-byte integer, expected at most 8", name, size);
    else if (H5Aread(a, is_signed ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64, is_signed ? (void *)&v : (void *)&u) < 0)
        rc = rb_h5_fail(R, RB_EFORMAT, oname, "cannot read attribute '%s': %s", name, rb_h5_detail(R));
    else if (is_signed && v < 0)
        rc = rb_h5_fail(R, RB_EFORMAT, oname, "attribute '%s' = %lld is negative", name, (long long)v);
    rb_h5_close(&t);
    rb_h5_close(&a);
    if (!rc) *out = is_signed ? (uint64_t)v : u;
    return rc;
}

int rb_h5_get_f64(rb_h5_reader *R, hid_t obj, const char *oname, const char *name, double *out) {
    hid_t a, t;
    long long one = 1;
    int rc = attr_open(R, obj, oname, name, H5T_FLOAT, &one, &a, &t);
    if (rc) return rc;
    size_t size = H5Tget_size(t);
    double v = 0;
    if (size != 4 && size != 8)
        rc = rb_h5_fail(R, RB_EFORMAT, oname, "attribute '%s' is a %zu-byte float, expected 4 or 8", name, size);
    else if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0)
        rc = rb_h5_fail(R, RB_EFORMAT, oname, "cannot read attribute '%s': %s", name, rb_h5_detail(R));
    rb_h5_close(&t);
    rb_h5_close(&a);
    if (!rc) *out = v;
    return rc;
}

/* Memory string type matching file string type t (same character set: HDF5 converts no strings
 * between ASCII and UTF-8); fixed-length ones NUL-padded to their size. */
static hid_t mem_str_type(hid_t t, int var) {
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5T_cset_t cset = H5Tget_cset(t);
    if (mt < 0 || cset < 0 || H5Tset_cset(mt, cset) < 0 ||
        (var ? H5Tset_size(mt, H5T_VARIABLE) < 0
             : (H5Tset_size(mt, H5Tget_size(t)) < 0 || H5Tset_strpad(mt, H5T_STR_NULLPAD) < 0))) {
        if (mt >= 0) H5Tclose(mt);
        return -1;
    }
    return mt;
}

/* Reads the np strings of attribute a (file type t) into heap strings out[np]. */
static int read_strs(rb_h5_reader *R, hid_t a, hid_t t, const char *oname, const char *name, size_t np,
                     size_t max_len, char **out) {
    htri_t var = H5Tis_variable_str(t);
    size_t size = H5Tget_size(t);
    hid_t mt = var >= 0 ? mem_str_type(t, var > 0) : -1;
    int rc = 0;
    if (mt < 0) {
        rc = rb_h5_fail(R, RB_EFORMAT, oname, "attribute '%s': unreadable string type: %s", name, rb_h5_detail(R));
    } else if (var > 0) {
        char **p = calloc(np ? np : 1, sizeof *p);
        if (!p) {
            rc = rb_h5_fail(R, RB_ENOMEM, oname, "attribute '%s': out of memory", name);
        } else if (np && H5Aread(a, mt, p) < 0) {
            rc = rb_h5_fail(R, RB_EFORMAT, oname, "cannot read attribute '%s': %s", name, rb_h5_detail(R));
        } else {
            for (size_t i = 0; i < np && !rc; i++) {
                const char *s = p[i] ? p[i] : "";
                if (strlen(s) > max_len)
                    rc = rb_h5_fail(R, RB_EFORMAT, oname, "attribute '%s' longer than %zu bytes", name, max_len);
                else if (!(out[i] = malloc(strlen(s) + 1)))
                    rc = rb_h5_fail(R, RB_ENOMEM, oname, "attribute '%s': out of memory", name);
                else
                    memcpy(out[i], s, strlen(s) + 1);
            }
            for (size_t i = 0; i < np; i++)
                if (p[i]) H5free_memory(p[i]);
        }
        free(p);
    } else if (size == 0) {
        rc = rb_h5_fail(R, RB_EFORMAT, oname, "attribute '%s' has an empty string type", name);
    } else {
        char *tmp = np && size < SIZE_MAX / np ? calloc(np * size + 1, 1) : NULL;
        if (np && !tmp) {
            rc = rb_h5_fail(R, RB_ENOMEM, oname, "attribute '%s': out of memory", name);
        } else if (np && H5Aread(a, mt, tmp) < 0) {
            rc = rb_h5_fail(R, RB_EFORMAT, oname, "cannot read attribute '%s': %s", name, rb_h5_detail(R));
        } else {
            for (size_t i = 0; i < np && !rc; i++) {
                const char *s = tmp + i * size;
                size_t len = strnlen(s, size);
                if (len > max_len)
                    rc = rb_h5_fail(R, RB_EFORMAT, oname, "attribute '%s' longer than %zu bytes", name, max_len);
                else if (!(out[i] = malloc(len + 1)))
                    rc = rb_h5_fail(R, RB_ENOMEM, oname, "attribute '%s': out of memory", name);
                else {
                    memcpy(out[i], s, len);
                    out[i][len] = '\0';
                }
            }
        }
        free(tmp);
    }
    if (mt >= 0) H5Tclose(mt);
    if (rc)
        for (size_t i = 0; i < np; i++) {
            free(out[i]);
            out[i] = NULL;
        }
    return rc;
}

int rb_h5_get_str_alloc(rb_h5_reader *R, hid_t obj, const char *oname, const char *name, size_t max_len,
                        char **out) {
    *out = NULL;
    hid_t a, t;
    long long one = 1;
    int rc = attr_open(R, obj, oname, name, H5T_STRING, &one, &a, &t);
    if (rc) return rc;
    rc = read_strs(R, a, t, oname, name, 1, max_len, out);
    rb_h5_close(&t);
    rb_h5_close(&a);
    return rc;
}

int rb_h5_get_str(rb_h5_reader *R, hid_t obj, const char *oname, const char *name, char *buf, size_t cap) {
    char *s;
    int rc = rb_h5_get_str_alloc(R, obj, oname, name, cap - 1, &s);
    if (rc) return rc;
    snprintf(buf, cap, "%s", s);
    free(s);
    return 0;
}

int rb_h5_get_str_array(rb_h5_reader *R, hid_t obj, const char *oname, const char *name, size_t max_n,
                        char ***out, size_t *n) {
    *out = NULL;
    *n = 0;
    hid_t a, t;
    long long np = -1;
    int rc = attr_open(R, obj, oname, name, H5T_STRING, &np, &a, &t);
    if (rc) return rc;
    char **v = NULL;
    if ((size_t)np > max_n)
        rc = rb_h5_fail(R, RB_EFORMAT, oname, "attribute '%s' has %lld strings, more than %zu", name, np, max_n);
    else if (!(v = calloc((size_t)np + 1, sizeof *v)))
        rc = rb_h5_fail(R, RB_ENOMEM, oname, "attribute '%s': out of memory", name);
    else
        rc = read_strs(R, a, t, oname, name, (size_t)np, (size_t)1 << 30, v);
    rb_h5_close(&t);
    rb_h5_close(&a);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *n = (size_t)np;
    return 0;
}

void rb_h5_free_strs(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* ---- writing attributes ---------------------------------------------------------------- */

static int put_attr_space(hid_t obj, const char *name, hid_t ftype, hid_t mtype, hid_t sp, const void *val) {
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0 || (ex > 0 && H5Adelete(obj, name) < 0)) return -1;
    hid_t a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, mtype, val) >= 0;
    rb_h5_close(&a);
    return ok ? 0 : -1;
}

int rb_h5_put_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *val) {
    hid_t sp = H5Screate(H5S_SCALAR);
    int rc = sp >= 0 ? put_attr_space(obj, name, ftype, mtype, sp, val) : -1;
    rb_h5_close(&sp);
    return rc;
}

int rb_h5_put_i32(hid_t obj, const char *name, int v) {
    int32_t x = v;
    return rb_h5_put_attr(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT32, &x);
}

int rb_h5_put_i64(hid_t obj, const char *name, int64_t v) {
    return rb_h5_put_attr(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

int rb_h5_put_u64(hid_t obj, const char *name, uint64_t v) {
    return rb_h5_put_attr(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}

int rb_h5_put_f64(hid_t obj, const char *name, double v) {
    return rb_h5_put_attr(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

int rb_h5_put_str(hid_t obj, const char *name, const char *v) {
    hid_t t = rb_h5_str_type();
    const char *s = v ? v : "";
    int rc = t >= 0 ? rb_h5_put_attr(obj, name, t, t, &s) : -1;
    rb_h5_close(&t);
    return rc;
}

int rb_h5_put_str_array(hid_t obj, const char *name, const char *const *v, size_t n) {
    const char **tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!tmp) return -1;
    for (size_t i = 0; i < n; i++) tmp[i] = v && v[i] ? v[i] : "";
    hsize_t dims[1] = {(hsize_t)n};
    hid_t t = rb_h5_str_type(), sp = H5Screate_simple(1, dims, NULL);
    int rc = t >= 0 && sp >= 0 ? put_attr_space(obj, name, t, t, sp, tmp) : -1;
    rb_h5_close(&sp);
    rb_h5_close(&t);
    free(tmp);
    return rc;
}


/* ---- files, groups, datasets ------------------------------------------------------------ */

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

/* Shape "[a][b]" (or "scalar") of dims[rank] into buf. */
static const char *shape_str(const hsize_t *dims, int rank, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    if (rank == 0) snprintf(buf, cap, "scalar");
    for (int i = 0; i < rank && k + 24 < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "[%llu]", (unsigned long long)dims[i]);
    return buf;
}

int rb_h5_open_dataset(rb_h5_reader *R, hid_t g, const char *oname, const char *name, H5T_class_t want,
                       size_t esize, int rank, const long long *want_dims, hid_t *out, hsize_t *dims) {
    RB_ASSERT(rank >= 1 && rank <= 4);
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
    hsize_t got[H5S_MAX_RANK];
    int r = -1, match = 1;
    if (c != want || (esize && size != esize)) {
        if (esize)
            rc = rb_h5_fail(R, RB_EFORMAT, oname, "type is %zu-byte %s, expected %zu-byte %s", size,
                            rb_h5_class_name(c), esize, rb_h5_class_name(want));
        else
            rc = rb_h5_fail(R, RB_EFORMAT, oname, "type is %s, expected %s", rb_h5_class_name(c),
                            rb_h5_class_name(want));
    } else if ((sp = H5Dget_space(d)) < 0 || H5Sget_simple_extent_type(sp) != H5S_SIMPLE ||
               (r = H5Sget_simple_extent_dims(sp, got, NULL)) != rank) {
        if (rank == 1) rc = rb_h5_fail(R, RB_EFORMAT, oname, "not a one-dimensional dataset");
        else rc = rb_h5_fail(R, RB_EFORMAT, oname, "rank %d, expected %d", r, rank);
    } else {
        hsize_t total = 1;
        for (int i = 0; i < rank; i++) {
            if (want_dims && want_dims[i] >= 0 && got[i] != (hsize_t)want_dims[i]) match = 0;
            total *= got[i];
        }
        if (!match) {
            char a[128], b[128];
            hsize_t w[4];
            for (int i = 0; i < rank; i++) w[i] = want_dims[i] >= 0 ? (hsize_t)want_dims[i] : got[i];
            if (rank == 1)
                rc = rb_h5_fail(R, RB_EFORMAT, oname, "has %llu elements, expected %lld", (unsigned long long)got[0],
                                want_dims[0]);
            else
                rc = rb_h5_fail(R, RB_EFORMAT, oname, "shape %s, expected %s", shape_str(got, rank, a, sizeof a),
                                shape_str(w, rank, b, sizeof b));
        } else if (total > 0 && H5Dget_storage_size(d) == 0) {
            /* Never-written storage reads back as fill values: report it as what it is. */
            rc = rb_h5_fail(R, RB_EFORMAT, oname, "dataset has no data written");
        } else if (dims) {
            for (int i = 0; i < rank; i++) dims[i] = got[i];
        }
    }
    rb_h5_close(&sp);
    rb_h5_close(&t);
    if (rc)
        rb_h5_close(&d);
    else
        *out = d;
    return rc;
}

int rb_h5_open_dataset_1d(rb_h5_reader *R, hid_t g, const char *oname, const char *name, H5T_class_t want,
                          size_t esize, long long n_expect, hid_t *out, hsize_t *n) {
    return rb_h5_open_dataset(R, g, oname, name, want, esize, 1, &n_expect, out, n);
}

int rb_h5_put_dataset_checked(hid_t g, const char *name, int rank, const hsize_t *dims, hid_t ftype, hid_t mtype,
                              const void *data) {
    hsize_t chunk[2] = {dims[0], rank > 1 ? dims[1] : 1};
    size_t row_bytes = (size_t)chunk[1] * H5Tget_size(ftype);
    if (rank > 1 && (hsize_t)(RB_H5_CHUNK_BYTES / row_bytes) < chunk[0])
        chunk[0] = RB_H5_CHUNK_BYTES / row_bytes > 0 ? RB_H5_CHUNK_BYTES / row_bytes : 1;
    if (chunk[0] == 0) chunk[0] = 1; /* HDF5 refuses zero-sized chunks */
    hid_t sp = H5Screate_simple(rank, dims, NULL), d = -1, dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int ok = sp >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, rank, chunk) >= 0 && H5Pset_fletcher32(dcpl) >= 0 &&
             (d = H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) >= 0 &&
             H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    rb_h5_close(&d);
    rb_h5_close(&dcpl);
    rb_h5_close(&sp);
    return ok ? 0 : -1;
}

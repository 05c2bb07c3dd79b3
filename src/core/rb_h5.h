/* rb_h5: HDF5 helpers shared by every file rotbench writes (results, rotation sets, weight stores):
 *   - HDF5's automatic error printing is switched off around every library call sequence
 *     (rb_h5_quiet_on/off) and failures are reported through rb_error, with the innermost
 *     description from HDF5's error stack appended;
 *   - reading trusts nothing: every attribute's class, size and extent is checked before reading,
 *     and each failure is one line "<file>: <object>: <what>". */
#ifndef RB_H5_H
#define RB_H5_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "core/rb_error.h"

/* ---- error stack ------------------------------------------------------------------------- */

typedef struct rb_h5_quiet {
    H5E_auto2_t func;
    void *data;
} rb_h5_quiet;

/* Switches automatic error printing off (saving the current handler) / restores it. */
void rb_h5_quiet_on(rb_h5_quiet *q);
void rb_h5_quiet_off(const rb_h5_quiet *q);

/* The most specific description on HDF5's current error stack (innermost frame first) into buf,
 * "" when there is none. Returns buf. */
const char *rb_h5_last_error(char *buf, size_t cap);

/* Closes any HDF5 id (file, group, dataset, attribute, datatype, dataspace, property list) and
 * sets *id = -1; no-op when *id < 0. */
void rb_h5_close(hid_t *id);

/* ---- writing ------------------------------------------------------------------------------ */

/* Variable-length UTF-8 string type (caller closes). */
hid_t rb_h5_str_type(void);

/* ---- reading with validation --------------------------------------------------------------- */

typedef struct rb_h5_reader {
    const char *path; /* file name used in messages */
    rb_error *err;
    char detail[256];
    /* Where a scalar is expected, accept a one-element attribute of any rank (as rotation-set
     * files always have); otherwise rank ≤ 1 is required. */
    int any_rank;
} rb_h5_reader;

/* "<path>: <obj>: <message>" with `code`; returns code. */
int rb_h5_fail(rb_h5_reader *R, int code, const char *obj, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The innermost HDF5 error description (R->detail). */
const char *rb_h5_detail(rb_h5_reader *R);

/* Seconds a guarded read of one file may take before it counts as hung (real rotbench files read in
 * milliseconds; a damaged one can make HDF5 loop for minutes). */
#define RB_H5_GUARD_TIMEOUT_S 20.0

/* Reads an untrusted HDF5 file safely: runs fn(ctx, err) first in a forked child; if the child is
 * killed by a signal (the HDF5 library crashing on a damaged file) or takes longer than
 * RB_H5_GUARD_TIMEOUT_S, the file is refused (RB_EFORMAT naming the file and what happened) and the
 * caller never touches it; otherwise fn runs again in this process (same bytes, same library: the
 * same outcome, now known not to crash) and its result is returned. Without fork (error) fn runs
 * directly. The environment variable RB_H5_UNGUARDED=1 skips the child (debugging). */
int rb_h5_guard(const char *path, int (*fn)(void *ctx, rb_error *err), void *ctx, rb_error *err);
/* Only the probe, with a caller-chosen time limit in seconds: 0 when fn ran to its end in the child
 * (whatever it returned) or no child could be made, RB_EFORMAT when it crashed or hung. */
int rb_h5_probe(const char *path, int (*fn)(void *ctx, rb_error *err), void *ctx, double seconds, rb_error *err);

/* Reads every attribute and dataset of the file at `path` once, in its native type (nothing is kept):
 * a file about to be reopened for writing is known to decode end to end. max_bytes bounds the decoded
 * size of any one object. Errors: those of rb_h5_open_read; RB_EFORMAT "<path>: <object>: <what>" for
 * an object that does not read or exceeds max_bytes; RB_ENOMEM. Run it under rb_h5_guard for a file
 * that may crash the library. */
int rb_h5_read_all(const char *path, size_t max_bytes, rb_error *err);

/* OS-level checks before opening `path` with HDF5, with errno: missing → RB_ENOTFOUND
 * ("<path>: cannot open: <strerror>"), directory ("<path>: is a directory") or unreadable → RB_EIO. */
int rb_h5_check_readable(const char *path, rb_error *err);

/* Scalar attributes. Integers: any width ≤ 8 bytes and either signedness, range-checked. Floats:
 * 4 or 8 bytes, any value (NaN means "not applicable" throughout the results schema). Strings:
 * variable or fixed length, ASCII or UTF-8; longer than cap − 1 bytes is a format error. */
int rb_h5_get_int(rb_h5_reader *R, hid_t obj, const char *oname, const char *name, int64_t lo, int64_t hi,
                  int64_t *out);
int rb_h5_get_i32(rb_h5_reader *R, hid_t obj, const char *oname, const char *name, int lo, int hi, int *out);
int rb_h5_get_u64(rb_h5_reader *R, hid_t obj, const char *oname, const char *name, uint64_t *out);
int rb_h5_get_f64(rb_h5_reader *R, hid_t obj, const char *oname, const char *name, double *out);
int rb_h5_get_str(rb_h5_reader *R, hid_t obj, const char *oname, const char *name, char *buf, size_t cap);
/* String attribute of any length into a heap string (*out, caller frees); max_len caps it. */
int rb_h5_get_str_alloc(rb_h5_reader *R, hid_t obj, const char *oname, const char *name, size_t max_len,
                        char **out);
/* One-dimensional string-array attribute: *out[*n] heap strings (free with rb_h5_free_strs). */
int rb_h5_get_str_array(rb_h5_reader *R, hid_t obj, const char *oname, const char *name, size_t max_n,
                        char ***out, size_t *n);
void rb_h5_free_strs(char **v, size_t n);

/* Class name for messages ("integer", "compound", ...). */
const char *rb_h5_class_name(H5T_class_t c);

/* ---- writing attributes (return 0, or -1 with the reason on HDF5's error stack) --------- */

/* Scalar attribute `name` on obj, stored as ftype from memory type mtype; an existing attribute
 * of that name is replaced (resumed runs rewrite their units). */
int rb_h5_put_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *val);
int rb_h5_put_i32(hid_t obj, const char *name, int v);
int rb_h5_put_i64(hid_t obj, const char *name, int64_t v);
int rb_h5_put_u64(hid_t obj, const char *name, uint64_t v);
int rb_h5_put_f64(hid_t obj, const char *name, double v);
/* Variable-length UTF-8 string (NULL is stored as ""). */
int rb_h5_put_str(hid_t obj, const char *name, const char *v);
/* One-dimensional attribute of n variable-length UTF-8 strings (n may be 0; NULL entries are
 * stored as ""). */
int rb_h5_put_str_array(hid_t obj, const char *name, const char *const *v, size_t n);

/* ---- files, groups, datasets ------------------------------------------------------------ */

/* Writers return 0, or -1 with the reason on HDF5's error stack. */

/* Dataset `name` in g of the given shape, written from data (contiguous; an existing dataset of
 * that name is replaced). */
int rb_h5_put_dataset(hid_t g, const char *name, int rank, const hsize_t *dims, hid_t ftype, hid_t mtype,
                      const void *data);

/* Dataset `name` (rank 1 or 2, not present before) with a Fletcher-32 checksum per chunk of whole
 * rows (about RB_H5_CHUNK_BYTES each), so flipped bits are caught on read. Any HDF5 reader decodes
 * it (the filter is built in). */
#define RB_H5_CHUNK_BYTES (1u << 20)
int rb_h5_put_dataset_checked(hid_t g, const char *name, int rank, const hsize_t *dims, hid_t ftype, hid_t mtype,
                              const void *data);

/* Group `name` under parent; an existing link of that name is removed first when `replace`.
 * `track_order`: links listed in creation order (H5_INDEX_CRT_ORDER). Returns the group or -1. */
hid_t rb_h5_group(hid_t parent, const char *name, int replace, int track_order);

/* ---- reading with validation --------------------------------------------------------------- */

/* A file-access property list for readers: file locking disabled where the library allows it
 * (HDF5 ≥ 1.10.7), so a sweep's `status`/`index` can read a run's .partial while its own process
 * holds it open for writing. Caller closes. */
hid_t rb_h5_fapl_read(void);

/* A file-access property list for the writer: HDF5's file lock on (a second writer is refused),
 * but a filesystem without lock support (some NFS/Lustre mounts) is not an error (HDF5 ≥ 1.10.7).
 * Caller closes. */
hid_t rb_h5_fapl_write(void);

/* Opens `path` read-only after OS-level checks with errno (missing → RB_ENOTFOUND, directory or
 * unreadable → RB_EIO), then "not an HDF5 file" / "corrupt or truncated HDF5 file: <detail>"
 * (RB_EFORMAT). Error printing must already be quiet. */
int rb_h5_open_read(const char *path, hid_t *out, rb_error *err);

/* Does obj carry attribute / link `name`? (-1 on error, with the message in R->err.) */
int rb_h5_has_attr(rb_h5_reader *R, hid_t obj, const char *oname, const char *name);
int rb_h5_has_link(rb_h5_reader *R, hid_t obj, const char *oname, const char *name);

/* Opens group `name` under parent (oname: the group's path in messages). */
int rb_h5_open_group(rb_h5_reader *R, hid_t parent, const char *oname, const char *name, hid_t *out);

/* Opens dataset `name` of g and checks class `want` (and element size esize when non-zero), rank 1
 * and, when n_expect ≥ 0, extent n_expect; *n gets the extent. A dataset whose storage was never
 * written is an error. Caller closes *out. */
int rb_h5_open_dataset_1d(rb_h5_reader *R, hid_t g, const char *oname, const char *name, H5T_class_t want,
                          size_t esize, long long n_expect, hid_t *out, hsize_t *n);
/* The same for rank `rank` (1..4) with expected extents want[rank] (entries < 0: any); *dims (may be
 * NULL) gets the extents. A mismatch names both shapes ("shape [3][4], expected [3][5]"). */
int rb_h5_open_dataset(rb_h5_reader *R, hid_t g, const char *oname, const char *name, H5T_class_t want,
                       size_t esize, int rank, const long long *want_dims, hid_t *out, hsize_t *dims);

#endif

/* rb_h5util: small HDF5 helpers shared by the results writer/reader and the sweep index, in the
 * conventions of rotate/rb_rotset_io.c:
 *   - HDF5's automatic error printing is switched off around every library call sequence
 *     (rb_h5_quiet_on/off) and failures are reported through rb_error, with the innermost
 *     description from HDF5's error stack appended;
 *   - strings are variable-length UTF-8, scalars are little-endian fixed types;
 *   - reading trusts nothing: every attribute's class, size and extent and every dataset's class,
 *     rank and shape are checked before reading, and each failure is one line
 *     "<file>: <object>: <what>".
 * The pieces rotate/rb_rotset_io.c needs too live in core/rb_h5.h (included here). */
#ifndef RB_H5UTIL_H
#define RB_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "core/rb_error.h"
#include "core/rb_h5.h" /* error stack, close, string type, reader, attribute getters and writers */

/* ---- writing (return 0, or -1 with the reason on HDF5's error stack) ---------------------- */

/* (attribute writers rb_h5_put_attr/i32/i64/u64/f64/str/str_array: core/rb_h5.h) */

/* Dataset `name` in g of the given shape, written from data (contiguous; an existing dataset of
 * that name is replaced). */
int rb_h5_put_dataset(hid_t g, const char *name, int rank, const hsize_t *dims, hid_t ftype, hid_t mtype,
                      const void *data);

/* Group `name` under parent; an existing link of that name is removed first when `replace`.
 * `track_order`: links listed in creation order (H5_INDEX_CRT_ORDER). Returns the group or -1. */
hid_t rb_h5_group(hid_t parent, const char *name, int replace, int track_order);

/* ---- reading with validation (see also core/rb_h5.h) --------------------------------------- */

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

#endif

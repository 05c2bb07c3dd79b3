/* Internal to rb_results.c (writer), rb_results_read.c and rb_results_tasks.c (readers): the /layers
 * table layout and what the readers share. */
#ifndef RB_RESULTS_INTERNAL_H
#define RB_RESULTS_INTERNAL_H

#include <hdf5.h>
#include <stddef.h>

#include "core/rb_error.h"

/* One /layers column: name, offset in rb_layer_row, type (0 f64, 1 i32, 2 kind enum, 3 name enum). */
typedef struct rb_lcol {
    char name[48];
    size_t off;
    int type;
} rb_lcol;

/* Room for every column (rb_results.c asserts its count fits). */
#define RB_LAYER_COLS_MAX 64

/* Fills c[RB_LAYER_COLS_MAX] with the columns in file order; returns their number. */
int rb_results_layer_cols(rb_lcol *c);
/* The compound type of a /layers row: file layout (file = 1) or rb_layer_row in memory (0).
 * Caller closes it; -1 on HDF5 failure. */
hid_t rb_results_layer_type(int file);

/* Run ids, corpus names: 1..max characters of [A-Za-z0-9._-], not starting with '.' (usable as
 * HDF5 link names and directory-safe). */
int rb_results_valid_ident(const char *s, size_t max);

/* For writers of other groups (rb_results_tasks.c): the open file, flush (updated_utc + H5Fflush), and
 * "<partial>: writing <what> failed: <HDF5 detail>" (RB_EIO). Call with HDF5 errors quiet. */
struct rb_results;
hid_t rb_results_h5(struct rb_results *w);
int rb_results_flush(struct rb_results *w, rb_error *err);
int rb_results_werr(const struct rb_results *w, rb_error *err, const char *what);

/* Defines NAME_ctx (a struct of FIELDS) and NAME_fn, the rb_h5_guard callback calling
 * NAME_direct(ARGS..., err) with x the context, so that each public reader NAME is one rb_h5_guard
 * call on its NAME_direct: a damaged file crashing or hanging HDF5 is refused (issue 16). */
#define RB_RESULTS_GUARDED(name, fields, ...)          \
    typedef struct name##_ctx {                         \
        fields;                                         \
    } name##_ctx;                                       \
    static int name##_fn(void *c, rb_error *err) {      \
        name##_ctx *x = c;                              \
        return name##_direct(__VA_ARGS__, err);         \
    }

/* Bounds for reading untrusted files (far above real use, low enough to bound allocations). */
#define RB_RES_MAX_TEXT (64u << 20)       /* resolved YAML */
#define RB_RES_MAX_ARGS 65536             /* argv / overrides entries */
#define RB_RES_MAX_WINDOWS (1ll << 31)    /* evaluation windows per corpus */
#define RB_RES_MAX_LAYER_ROWS (1ll << 24) /* /layers rows */

#endif

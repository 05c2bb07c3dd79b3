/* Internal to the rotation-set file reader/writer (rb_rotset_io.c and rb_rotset_io_junction.c):
 * the shared bounds and the validated-reading helpers. Not part of the library's interface. */
#ifndef RB_ROTSET_IO_INTERNAL_H
#define RB_ROTSET_IO_INTERNAL_H

#include <hdf5.h>

#include "core/rb_h5.h"
#include "rotate/rb_rotset.h"

/* Sanity bounds on a file's shapes: far above any real model, low enough that a corrupt header
 * cannot drive a huge allocation (an order-2^20 R would already be 8 TiB and fail cleanly). */
#define ROTSET_MAX_ORDER (1 << 20)
#define ROTSET_MAX_LAYERS (1 << 16)
/* Layer group names are decimal indices below ROTSET_MAX_LAYERS: a few characters. */
#define ROTSET_NAME_MAX 32

/* float32/float64 attribute holding a finite non-negative value (an error measure). */
int rb_rsio_get_err_value(rb_h5_reader *L, hid_t obj, const char *oname, const char *name, double *out);
/* Opens dataset `name` in g (object name oname) after checking its class want, element size esize
 * and shape [n] (rank 1) or [n][m] (rank 2); dimname names n in messages. */
int rb_rsio_dataset_open(rb_h5_reader *L, hid_t g, const char *oname, const char *name, H5T_class_t want, size_t esize,
                         int rank, int n, int m, const char *dimname, hid_t *out);
/* A layer group name: decimal without sign or leading zeros, below n_layers; -1 otherwise. */
int rb_rsio_parse_layer(const char *name, int n_layers);
/* Member i of group g (object name gname) into name (cap bytes; "..." when longer). */
int rb_rsio_member_name(rb_h5_reader *L, hid_t g, const char *gname, hsize_t i, char *name, size_t cap);

/* Junctions of a layer-wise set (rb_rotset_io_junction.c): checked before anything is written (the
 * worst orthogonality error into *worst), written as /junction/<l>/<attn|mlp>, loaded (absent: none). */
int rb_rsio_check_junctions(const rb_rotset *s, const char *path, double *worst, rb_error *err);
int rb_rsio_write_junctions(hid_t loc, const rb_rotset *s, const char *path, rb_error *err);
int rb_rsio_load_junctions(rb_h5_reader *L, hid_t f, rb_rotset *s);

#endif

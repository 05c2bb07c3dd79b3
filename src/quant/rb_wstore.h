/* rb_wstore: the quantized weights of a run, stored exactly, so that weight quantization is a unit
 * of its own: GPTQ (or RTN) runs once per run however many corpora are evaluated, and a resumed
 * run reuses the weights instead of recomputing them.
 *
 * A quantized linear W [rows][cols] lies on its quantizer's grid: within one quantization unit (a
 * row, or `group` consecutive columns of a row) it takes at most 2^bits distinct values. The store
 * keeps, per unit, its distinct fp32 values (the palette, in first-seen order) and per weight the
 * index of its value (uint8, or uint16 where a unit has more than 256 values, e.g. act-order GPTQ
 * with groups, whose groups are not contiguous). Decoding gives back the very floats quantization
 * produced (bit for bit) at 1 byte per weight: 6.5 GB for Llama-2-7B instead of 27 GB in fp32.
 *
 * File (HDF5, written as <path>.partial and renamed to <path> by rb_wstore_finish):
 *   /                  attrs format ("rotbench-wstore"), version (1), id (who made it: a run id),
 *                      spec (the weight quantizer, rb_qspec_format), algo ("rtn" | "gptq"), n_layers,
 *                      dim, hidden_dim, n_heads, n_kv_heads, head_dim
 *   /<l>/<linear>      group per layer l (decimal) and linear (q_proj, ..., down_proj): datasets
 *                      codes uint8|uint16 [rows][cols], palette float32 [rows·units per row][K]
 *                      (unused tail entries 0), both Fletcher-32 checksummed; attrs unit_cols (int32,
 *                      columns per unit), h_err, h_err_rtn (float64, NaN = not measured: the GPTQ
 *                      calibration loss tr((W−Q)H(W−Q)ᵀ) and the same for RTN on the same Hessian)
 * Opening checks every attribute against the model and the expected id; loading a layer checks
 * shapes, that every code indexes the unit's palette and that every value is finite. */
#ifndef RB_WSTORE_H
#define RB_WSTORE_H

#include "model/rb_model.h"
#include "quant/rb_quant.h"

#define RB_WSTORE_FORMAT "rotbench-wstore"
/* File name of a store in its directory (a run directory, or the temporary one of `rotbench ppl`). */
#define RB_WSTORE_FILE "wquant.h5"
#define RB_WSTORE_VERSION 1

typedef struct rb_wstore rb_wstore;

/* Creates <path>.partial (truncating a stale one) for the linears of model c. id: any text naming
 * what produced the weights (checked by rb_wstore_open); spec_desc, algo: recorded. Errors: RB_EIO
 * (cannot create, with the reason), RB_ENOMEM. */
int rb_wstore_create(const char *path, const rb_llama_config *c, const char *id, const char *spec_desc,
                     const char *algo, rb_wstore **out, rb_error *err);

/* Stores the seven linears of layer `layer` of w (each on the grid of `spec`; units of `spec`'s
 * granularity: a row, or its group of columns) with their h_err / h_err_rtn ([RB_LIN_COUNT], may be
 * NULL = NaN). permuted_groups: the groups were formed in a permuted column order (act-order GPTQ),
 * so a contiguous unit may hold up to its width in values instead of 2^bits. Errors: RB_EINVAL (a
 * unit with more distinct values than that: the weight is not quantized with spec; a non-finite
 * weight; naming layer and linear), RB_EIO, RB_ENOMEM. */
int rb_wstore_put_layer(rb_wstore *s, int layer, const rb_layer_weights *w, const rb_qspec *spec,
                        int permuted_groups, const double *h_err, const double *h_err_rtn, rb_error *err);

/* Flushes and closes the file and renames <path>.partial to <path> (then fsyncs the directory), and
 * reopens it for reading. Every layer must have been put (RB_EINVAL otherwise). */
int rb_wstore_finish(rb_wstore *s, rb_error *err);

/* Opens a finished store for model c; id must match the recorded one (NULL: any). Errors:
 * RB_ENOTFOUND (no file), RB_EFORMAT (not a store, other model, other id, damaged: one line naming
 * the file and what). */
int rb_wstore_open(const char *path, const rb_llama_config *c, const char *id, rb_wstore **out, rb_error *err);

/* Closes; an unfinished store's .partial is removed. NULL is fine. */
void rb_wstore_close(rb_wstore *s);

/* Overwrites the seven linears of w with layer `layer`'s stored weights (norms untouched). Errors:
 * RB_EFORMAT (shape, a code outside its palette, a non-finite value), RB_ENOMEM. */
int rb_wstore_load_layer(rb_wstore *s, int layer, rb_layer_weights *w, rb_error *err);

/* Recorded h_err / h_err_rtn of (layer, linear) (NaN when not measured). Errors: RB_EFORMAT. */
int rb_wstore_herr(rb_wstore *s, int layer, int lin, double *h_err, double *h_err_rtn, rb_error *err);

/* The file path (<path>, or <path>.partial while being written). */
const char *rb_wstore_path(const rb_wstore *s);

#endif

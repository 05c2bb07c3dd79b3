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
 *                      Version 2 adds, per linear, the integer grid (rb_wparams): datasets scale,
 *                      zero float32 [rows][n_units] and, for group granularity, g_idx int32 [cols]
 *                      (Fletcher-32), so the weights can be exported as integers (GPTQ layout).
 * Opening checks every attribute against the model and the expected id; loading a layer checks
 * shapes, that every code indexes the unit's palette and that every value is finite. */
#ifndef RB_WSTORE_H
#define RB_WSTORE_H

#include "model/rb_model.h"
#include "quant/rb_quant.h"

#define RB_WSTORE_FORMAT "rotbench-wstore"
/* File name of a store in its directory (a run directory, or the temporary one of `rotbench ppl`). */
#define RB_WSTORE_FILE "wquant.h5"
#define RB_WSTORE_VERSION 2 /* 1 (no rb_wparams) is still read */

/* The integer grid of one quantized linear [rows][cols]: weight (r, c) = scale[r·n_units + u]·(q − zero[r·n_units + u])
 * with u = g_idx[c] (u = 0 when g_idx is NULL) and q an integer of the quantizer's range. Same meaning
 * as rb_qparams_out (rb_gptq.h). Owned by whoever allocated it (rb_wparams_alloc/free). */
typedef struct rb_wparams {
    int rows, cols, n_units;
    float *scale, *zero; /* [rows][n_units] */
    int32_t *g_idx;      /* [cols] or NULL */
} rb_wparams;

/* Buffers for a [rows][cols] linear quantized with spec (n_units and g_idx from its granularity:
 * groups → ceil(cols/group) units and a g_idx, else one unit per row). RB_ENOMEM. */
int rb_wparams_alloc(rb_wparams *p, const rb_qspec *spec, int rows, int cols, rb_error *err);
void rb_wparams_free(rb_wparams *p);

/* The unsigned integer codes of w [rows][cols] on the grid p of quantizer spec, as the GPTQ checkpoint
 * layout stores them: q[r][c] in [0, 2^bits) and zu[r][u] in [0, 2^bits) with
 * w = scale·(q − zu) bit for bit (sym: q = level + 2^(bits−1), zu = 2^(bits−1); asym: the level and
 * zero themselves). q, zu may be NULL (check only). Errors: RB_EFORMAT naming (row, col) and the
 * values when a weight is not on the grid or a zero is not an integer of the range; RB_EINVAL for a
 * spec with bits 16 or raw_minmax zeros out of range. */
int rb_wparams_codes(const rb_qspec *spec, const rb_wparams *p, const float *w, uint8_t *q, uint8_t *zu,
                     rb_error *err);
/* Only that every weight lies on its unit's grid (any integer zero: RUQuant's raw_minmax grids are
 * valid here and refused by rb_wparams_codes). Errors: RB_EFORMAT naming the weight. */
int rb_wparams_check(const rb_qspec *spec, const rb_wparams *p, const float *w, rb_error *err);

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
/* params: [RB_LIN_COUNT] grids of the seven linears (written as version-2 datasets; each is checked
 * with rb_wparams_check against the weights, RB_EINVAL naming the linear when they disagree), or
 * NULL (the store then has no grid for the layer and rb_wstore_load_params says so). */
int rb_wstore_put_layer(rb_wstore *s, int layer, const rb_layer_weights *w, const rb_qspec *spec,
                        int permuted_groups, const double *h_err, const double *h_err_rtn, const rb_wparams *params,
                        rb_error *err);

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

/* The integer grid of (layer, lin) into *p (allocated here; rb_wparams_free). Errors: RB_ENOTFOUND
 * (a version-1 store or a layer put without params: "rerun weight quantization"), RB_EFORMAT (shapes,
 * a g_idx outside [0, n_units), non-finite or non-positive scales), RB_ENOMEM. */
int rb_wstore_load_params(rb_wstore *s, int layer, int lin, rb_wparams *p, rb_error *err);
/* The weight quantizer the store was written with (parsed back from its spec attribute is not
 * possible: the caller passes the run's spec; this returns the recorded description). */
const char *rb_wstore_spec_desc(const rb_wstore *s);

/* The file path (<path>, or <path>.partial while being written). */
const char *rb_wstore_path(const rb_wstore *s);

#endif

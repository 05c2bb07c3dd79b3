/* rb_calib: calibration windows sampled from a token stream, and token-range selection. */
#ifndef RB_CALIB_H
#define RB_CALIB_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_error.h"

/* `samples` windows of `seqlen` tokens at uniformly random starts in [0, n − seqlen] (QuaRot/GPTQ
 * `get_wikitext2` convention; windows may overlap), drawn from the rb_rng stream "calib.sample" of
 * `seed`. Writes *out (heap, caller frees with free()) [samples][seqlen]. Errors: RB_EINVAL when the
 * stream is shorter than one window. */
int rb_calib_sample(const int32_t *tokens, size_t n, int samples, int seqlen, uint64_t seed, int32_t **out,
                    rb_error *err);

/* Calibration orders, an ablation axis for online methods (GPTQ's Hessian does not depend on it). */
enum { RB_CALIB_SEQUENTIAL = 0, RB_CALIB_SHUFFLED, RB_CALIB_SORTED_BY_NORM, RB_CALIB_REVERSED };
/* "sequential" | "shuffled" | "sorted_by_norm" | "reversed" → order, or -1. */
int rb_calib_order_from_name(const char *name);
const char *rb_calib_order_name(int order);

/* Reorders windows w[n][T] in place: shuffled by the rb_rng stream "calib.order" of `seed`;
 * sorted_by_norm by descending `norm[i]` (a per-window score the caller computes, e.g. the mean
 * squared norm of its input embeddings; ties keep sampling order); reversed. norm may be NULL
 * unless order is RB_CALIB_SORTED_BY_NORM. */
int rb_calib_reorder(int32_t *w, int n, int T, int order, const double *norm, uint64_t seed, rb_error *err);

/* Parses "a:b" with fractions 0 ≤ a < b ≤ 1 (either side may be empty: ":0.5", "0.5:") into the
 * token index range [⌊a·n⌋, ⌊b·n⌋). Errors: RB_EINVAL with the offending text. */
int rb_token_range_parse(const char *spec, size_t n, size_t *begin, size_t *end, rb_error *err);

#endif

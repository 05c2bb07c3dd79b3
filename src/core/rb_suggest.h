/* rb_suggest: "did you mean" for names typed by users (config keys, enum values, method options). */
#ifndef RB_SUGGEST_H
#define RB_SUGGEST_H

#include <stddef.h>

/* The candidate closest to word (case-insensitive optimal string alignment distance), or NULL
 * when none is close enough: at most 1 edit for words of ≤ 3 characters, 2 up to 6, else 3, and
 * fewer edits than the candidate has characters. */
const char *rb_suggest(const char *word, const char *const *cands, size_t n);

#endif

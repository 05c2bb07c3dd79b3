#include "rb_calib.h"

#include <stdlib.h>
#include <string.h>

#include "core/rb_rng.h"

int rb_calib_sample(const int32_t *tokens, size_t n, int samples, int seqlen, uint64_t seed, int32_t **out,
                    rb_error *err) {
    *out = NULL;
    if (samples < 1 || seqlen < 2)
        return rb_error_set(err, RB_EINVAL, "calibration: need samples ≥ 1 and seqlen ≥ 2 (got %d, %d)", samples,
                            seqlen);
    if (n < (size_t)seqlen)
        return rb_error_set(err, RB_EINVAL, "calibration: %zu tokens are fewer than one window of %d", n, seqlen);
    int32_t *w = malloc((size_t)samples * seqlen * sizeof *w);
    if (!w) return rb_error_set(err, RB_ENOMEM, "calibration: out of memory");
    rb_rng r;
    rb_rng_seed(&r, seed, "calib.sample");
    for (int s = 0; s < samples; s++) {
        size_t start = (size_t)rb_rng_below(&r, (uint64_t)(n - (size_t)seqlen + 1));
        memcpy(w + (size_t)s * seqlen, tokens + start, (size_t)seqlen * sizeof *w);
    }
    *out = w;
    return 0;
}

static int parse_frac(const char *s, const char *end, double def, double *out) {
    if (s == end) {
        *out = def;
        return 0;
    }
    char buf[64];
    size_t len = (size_t)(end - s);
    if (len >= sizeof buf) return -1;
    memcpy(buf, s, len);
    buf[len] = 0;
    char *e;
    double v = strtod(buf, &e);
    if (*e || e == buf || !(v >= 0.0 && v <= 1.0)) return -1; /* NaN fails both comparisons (issue 16) */
    *out = v;
    return 0;
}

int rb_token_range_parse(const char *spec, size_t n, size_t *begin, size_t *end, rb_error *err) {
    const char *colon = strchr(spec, ':');
    double a, b;
    if (!colon || parse_frac(spec, colon, 0.0, &a) || parse_frac(colon + 1, colon + strlen(colon), 1.0, &b) || a >= b)
        return rb_error_set(err, RB_EINVAL, "token range '%s': expected a:b with fractions 0 <= a < b <= 1", spec);
    *begin = (size_t)(a * (double)n);
    *end = (size_t)(b * (double)n);
    if (*end > n) *end = n;
    return 0;
}

static const char *const order_names[] = {"sequential", "shuffled", "sorted_by_norm", "reversed"};

int rb_calib_order_from_name(const char *name) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, order_names[i])) return i;
    return -1;
}

const char *rb_calib_order_name(int order) { return order >= 0 && order < 4 ? order_names[order] : "?"; }

typedef struct keyed {
    double key;
    int idx;
} keyed;

static int cmp_desc(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? 1 : -1;
    return x->idx - y->idx;
}

int rb_calib_reorder(int32_t *w, int n, int T, int order, const double *norm, uint64_t seed, rb_error *err) {
    if (order == RB_CALIB_SEQUENTIAL || n < 2) return 0;
    if (order < 0 || order > RB_CALIB_REVERSED) return rb_error_set(err, RB_EINVAL, "calibration: unknown order %d", order);
    if (order == RB_CALIB_SORTED_BY_NORM && !norm)
        return rb_error_set(err, RB_EINVAL, "calibration: sorted_by_norm needs per-window norms");
    int *perm = malloc((size_t)n * sizeof *perm);
    int32_t *copy = malloc((size_t)n * T * sizeof *copy);
    keyed *k = order == RB_CALIB_SORTED_BY_NORM ? malloc((size_t)n * sizeof *k) : NULL;
    if (!perm || !copy || (order == RB_CALIB_SORTED_BY_NORM && !k)) {
        free(perm);
        free(copy);
        free(k);
        return rb_error_set(err, RB_ENOMEM, "calibration: out of memory");
    }
    for (int i = 0; i < n; i++) perm[i] = i;
    if (order == RB_CALIB_SHUFFLED) {
        rb_rng r;
        rb_rng_seed(&r, seed, "calib.order");
        rb_rng_shuffle(&r, perm, (size_t)n);
    } else if (order == RB_CALIB_REVERSED) {
        for (int i = 0; i < n; i++) perm[i] = n - 1 - i;
    } else {
        for (int i = 0; i < n; i++) k[i] = (keyed){norm[i], i};
        qsort(k, (size_t)n, sizeof *k, cmp_desc);
        for (int i = 0; i < n; i++) perm[i] = k[i].idx;
    }
    memcpy(copy, w, (size_t)n * T * sizeof *copy);
    for (int i = 0; i < n; i++) memcpy(w + (size_t)i * T, copy + (size_t)perm[i] * T, (size_t)T * sizeof *w);
    free(perm);
    free(copy);
    free(k);
    return 0;
}

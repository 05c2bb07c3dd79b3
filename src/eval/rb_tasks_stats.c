/* Paired comparison of per-document task outcomes (rb_tasks.h): percentile bootstrap of the accuracy
 * difference and the exact McNemar test. */
#include <math.h>
#include <stdlib.h>

#include "core/rb_math.h"
#include "core/rb_rng.h"
#include "eval/rb_tasks.h"

/* numpy.percentile's default (linear interpolation between order statistics) of sorted v[n]. */
static double percentile(const double *v, int n, double q) {
    double x = q * (n - 1);
    int i = (int)floor(x);
    if (i >= n - 1) return v[n - 1];
    return v[i] + (x - i) * (v[i + 1] - v[i]);
}

/* Exact two-sided McNemar p-value: 2·P(X ≤ min(b, c)), X ~ Binomial(b + c, 1/2), capped at 1. */
static double mcnemar_exact(int b, int c) {
    int n = b + c, k = b < c ? b : c;
    if (n == 0) return 1.0;
    double tail = 0.0;
    for (int i = 0; i <= k; i++) tail += exp(lgamma(n + 1.0) - lgamma(i + 1.0) - lgamma(n - i + 1.0) - n * M_LN2);
    double p = 2.0 * tail;
    return p > 1.0 ? 1.0 : p;
}

void rb_task_paired_compute(const unsigned char *a, const unsigned char *b, int n, uint64_t seed, rb_task_paired *out) {
    out->n_fp_only = out->n_q_only = 0;
    for (int i = 0; i < n; i++) {
        out->n_q_only += a[i] && !b[i];
        out->n_fp_only += !a[i] && b[i];
    }
    out->delta = n ? (double)(out->n_q_only - out->n_fp_only) / n : NAN;
    out->p_mcnemar = mcnemar_exact(out->n_fp_only, out->n_q_only);
    out->lo = out->hi = out->delta;
    double *d = n ? malloc(RB_TASK_BOOTSTRAP * sizeof *d) : NULL;
    if (!d) { /* no documents, or no memory for the resamples: the interval stays the point */
        if (n) out->lo = -INFINITY, out->hi = INFINITY;
        return;
    }
    /* A resample's difference only depends on how many discordant documents it draws of each kind:
     * each draw is +1 (q only) with probability n_q_only/n, −1 (FP only) with n_fp_only/n, else 0. */
    double pq = (double)out->n_q_only / n, pf = (double)out->n_fp_only / n;
    rb_rng rng;
    rb_rng_seed(&rng, seed, "tasks.bootstrap");
    for (int r = 0; r < RB_TASK_BOOTSTRAP; r++) {
        long s = 0;
        for (int i = 0; i < n; i++) {
            double u = rb_rng_uniform(&rng);
            s += u < pq ? 1 : u < pq + pf ? -1 : 0;
        }
        d[r] = (double)s / n;
    }
    qsort(d, RB_TASK_BOOTSTRAP, sizeof *d, rb_cmp_double);
    out->lo = percentile(d, RB_TASK_BOOTSTRAP, 0.025);
    out->hi = percentile(d, RB_TASK_BOOTSTRAP, 0.975);
    free(d);
}

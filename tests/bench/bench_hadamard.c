/* Benchmark: the fast Hadamard transform (FWHT, plus the dense m×m factor when n = m·2^k) vs the
 * dense product x·R with R the same n×n transform in fp32 (one sgemm), over 2048 rows.
 * Prints one JSON object per line. Not a test: `meson test --benchmark bench_hadamard`, or run the
 * binary directly (argument: rows, default 2048). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rb_blas.h"
#include "bench_util.h"
#include "core/rb_file.h"
#include "core/rb_rng.h"
#include "rotate/rb_fwht.h"
#include "rotate/rb_hadamard.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, rb_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}


int main(int argc, char **argv) {
    const size_t rows = argc > 1 ? (size_t)atol(argv[1]) : 2048;
    static const long orders[] = {4096, 11008, 14336};
    const int fast_reps = 7, dense_reps = 3;
    char load[128];
    for (size_t o = 0; o < sizeof orders / sizeof *orders; o++) {
        const long n = orders[o];
        rb_had h;
        rb_error err;
        rb_rng rng;
        rb_rng_seed(&rng, 1, "bench-hadamard");
        if (rb_had_init_random(&h, n, &rng, &err)) {
            fprintf(stderr, "bench_hadamard: %s\n", err.msg);
            return 1;
        }
        size_t len = rows * (size_t)n;
        float *x0 = rb_alloc(sizeof(float) * len), *x = rb_alloc(sizeof(float) * len),
              *y = rb_alloc(sizeof(float) * len);
        float *R = rb_calloc((size_t)n * (size_t)n, sizeof(float));
        if (!x0 || !x || !y || !R) {
            fprintf(stderr, "bench_hadamard: out of memory at n = %ld\n", n);
            return 1;
        }
        rb_rng_gauss(&rng, x0, len, 0.0, 1.0);
        memcpy(x, x0, sizeof(float) * len); /* touch every page before timing */
        memset(y, 0, sizeof(float) * len);
        /* fast transform, in place (orthogonal, so repeated application keeps the scale) */
        double t_fast[16], t_dense[16], t_fwht[16];
        for (int r = 0; r < fast_reps; r++) {
            double t0 = now();
            rb_had_apply_rows(&h, x, rows);
            t_fast[r] = now() - t0;
        }
        /* the FWHT part alone: rows·m butterflies of length 2^k */
        for (int r = 0; r < fast_reps; r++) {
            double t0 = now();
            rb_fwht_rows(x, rows * (size_t)h.m, 1 << h.k, 1.0f / sqrtf((float)(1L << h.k)));
            t_fwht[r] = now() - t0;
        }
        /* dense R = rows of the identity transformed, then y = x·R by one sgemm */
        for (long i = 0; i < n; i++) R[i * n + i] = 1.0f;
        rb_had_apply_rows(&h, R, (size_t)n);
        for (int r = 0; r < dense_reps; r++) {
            double t0 = now();
            rb_sgemm(0, 0, (int)rows, (int)n, (int)n, 1.0f, x0, (int)n, R, (int)n, 0.0f, y, (int)n);
            t_dense[r] = now() - t0;
        }
        memcpy(x, x0, sizeof(float) * len);
        rb_had_apply_rows(&h, x, rows);
        double diff = 0, ymax = 0;
        for (size_t t = 0; t < len; t++) {
            diff = fmax(diff, fabs((double)x[t] - y[t]));
            ymax = fmax(ymax, fabs((double)y[t]));
        }
        double fast = median(t_fast, fast_reps), dense = median(t_dense, dense_reps), fw = median(t_fwht, fast_reps);
        bench_loadavg(load, sizeof load);
        printf("{\"bench\":\"hadamard\",\"n\":%ld,\"m\":%ld,\"k\":%d,\"factor\":\"%s\",\"rows\":%zu,"
               "\"fast_us_per_row\":%.3f,\"fwht_part_us_per_row\":%.3f,\"dense_sgemm_us_per_row\":%.3f,"
               "\"speedup\":%.1f,\"dense_gflops\":%.1f,\"max_abs_diff\":%.3g,\"max_abs_y\":%.3g,"
               "\"blas_core\":\"%s\",\"blas_threads\":%d,\"loadavg\":\"%s\"}\n",
               n, h.m, h.k, h.source, rows, 1e6 * fast / rows, 1e6 * fw / rows, 1e6 * dense / rows, dense / fast,
               2.0 * rows * n * n / dense * 1e-9, diff, ymax, rb_blas_corename(), rb_blas_threads(), load);
        fflush(stdout);
        rb_free(x0);
        rb_free(x);
        rb_free(y);
        rb_free(R);
        rb_had_free(&h);
    }
    return 0;
}

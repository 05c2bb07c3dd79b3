/* Shared by the benchmark programs: process CPU time, the 1-minute load average (the machines are
 * shared, so every benchmark prints it beside its numbers), a median and a checked allocation. */
#ifndef RB_BENCH_UTIL_H
#define RB_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_math.h"

static inline double bench_cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The 1-minute load average as text ("" when unreadable). */
static inline void bench_loadavg(char *buf, size_t cap) {
    FILE *f = fopen("/proc/loadavg", "r");
    buf[0] = '\0';
    if (f) {
        if (fgets(buf, (int)cap, f)) buf[strcspn(buf, " ")] = '\0';
        fclose(f);
    }
}

/* Median of t[n] (sorts t). */
static inline double bench_median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, rb_cmp_double);
    return t[n / 2];
}

static inline void *bench_alloc(size_t n) {
    void *p = rb_alloc(n);
    if (!p) {
        fprintf(stderr, "bench: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* The BLAS identity line of the JSON output (no trailing comma handling: always followed by more). */
static inline void bench_print_blas(void) {
    const char *ct = getenv("OPENBLAS_CORETYPE");
    printf("  \"blas\": {\"corename\": \"%s\", \"threads\": %d, \"OPENBLAS_CORETYPE\": \"%s\"},\n", rb_blas_corename(),
           rb_blas_threads(), ct ? ct : "");
}

#endif

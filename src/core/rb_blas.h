/* rb_blas: the one place that includes cblas; BLAS identity for result files; a row-major sgemm
 * that keeps small products single-threaded. */
#ifndef RB_BLAS_H
#define RB_BLAS_H

#include <cblas.h>

#include "core/rb_error.h"

/* OpenBLAS kernel name ("Haswell", "Cooperlake", ...), thread count and build config. */
const char *rb_blas_corename(void);
int rb_blas_threads(void);
const char *rb_blas_config(void);

/* Row-major C = alpha·op(A)·op(B) + beta·C (op = transpose when ta/tb is non-zero). Products below
 * RB_SGEMM_SMALL_MACS multiply-adds run on one BLAS thread: PERF.md measured small GEMMs getting
 * slower with 2 threads, and a tiny model's forward is made of thousands of them. */
void rb_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc);

/* Same for double (rotation fusion); also restores the thread count a small sgemm may have lowered. */
void rb_dgemm(int ta, int tb, int M, int N, int K, double alpha, const double *A, int lda, const double *B, int ldb,
              double beta, double *C, int ldc);

/* Address space OpenBLAS (pthreads, x86_64) maps per thread for its GEMM work buffers on first use:
 * 128 MiB (its BUFFER_SIZE) plus alignment; measured 259 MiB for 2 threads on this build. */
#define RB_BLAS_BUFFER_BYTES ((size_t)136 << 20)

/* Makes OpenBLAS map its per-thread work buffers now, with one GEMM on every thread. OpenBLAS spins
 * forever when it cannot get them later (under ulimit -v, after rotbench's own large buffers), so
 * commands that compute call this first. Errors: RB_ENOMEM when the address-space limit leaves less
 * than threads · RB_BLAS_BUFFER_BYTES (message names ulimit -v and OPENBLAS_NUM_THREADS). */
int rb_blas_warmup(rb_error *err);

#endif

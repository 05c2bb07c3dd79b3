#include "rb_blas.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/rb_file.h"

/* Below this many multiply-adds (≈0.1 ms of work at the Haswell-kernel rate) a second BLAS thread
 * costs more in hand-off than it saves. */
#define RB_SGEMM_SMALL_MACS (1L << 23)

static int g_default_threads = -1; /* BLAS threads at first use */
static int g_current_threads = -1;

const char *rb_blas_corename(void) { return openblas_get_corename(); }
int rb_blas_threads(void) { return g_default_threads > 0 ? g_default_threads : openblas_get_num_threads(); }
const char *rb_blas_config(void) { return openblas_get_config(); }

static void set_threads(int n) {
    if (n != g_current_threads) {
        openblas_set_num_threads(n);
        g_current_threads = n;
    }
}

/* One BLAS thread for small products, the default count otherwise. */
static void threads_for(int M, int N, int K) {
    if (g_default_threads < 0) g_default_threads = g_current_threads = openblas_get_num_threads();
    set_threads((long)M * N * K < RB_SGEMM_SMALL_MACS ? 1 : g_default_threads);
}

void rb_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc) {
    threads_for(M, N, K);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
                B, ldb, beta, C, ldc);
}

void rb_dgemm(int ta, int tb, int M, int N, int K, double alpha, const double *A, int lda, const double *B, int ldb,
              double beta, double *C, int ldc) {
    threads_for(M, N, K);
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
                B, ldb, beta, C, ldc);
}

int rb_blas_warmup(rb_error *err) {
    if (g_default_threads < 0) g_default_threads = g_current_threads = openblas_get_num_threads();
    size_t need = (size_t)g_default_threads * RB_BLAS_BUFFER_BYTES, room = rb_mem_address_room();
    if (need > room)
        return rb_error_set(err, RB_ENOMEM,
                            "OpenBLAS's work buffers for %d threads need %zu MiB of address space but the limit "
                            "(ulimit -v) leaves %zu MiB: raise it or lower OPENBLAS_NUM_THREADS",
                            g_default_threads, need >> 20, room >> 20);
    enum { N = 256 }; /* 16.8 M multiply-adds: above RB_SGEMM_SMALL_MACS, so every thread takes part */
    float *a = calloc((size_t)3 * N * N, sizeof *a);
    if (!a) return rb_error_set(err, RB_ENOMEM, "out of memory");
    rb_sgemm(0, 0, N, N, N, 1.0f, a, N, a + N * N, N, 0.0f, a + 2 * N * N, N);
    free(a);
    return 0;
}

#include "methods/rb_conqur.h"

#include <math.h>
#include <string.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"

int rb_conqur_acc_init(rb_conqur_acc *a, int n, rb_error *err) {
    memset(a, 0, sizeof *a);
    a->n = n;
    a->M = rb_alloc((size_t)n * n * sizeof(double));
    a->Mf = rb_alloc((size_t)n * n * sizeof(float));
    a->cap_rows = RB_CONQUR_ROWS_PER_GEMM;
    a->S = rb_alloc(a->cap_rows * (size_t)n * sizeof(float));
    if (!a->M || !a->Mf || !a->S) {
        rb_conqur_acc_free(a);
        return rb_error_set(err, RB_ENOMEM, "conqur: out of memory (accumulator of order %d)", n);
    }
    memset(a->M, 0, (size_t)n * n * sizeof(double));
    return 0;
}

void rb_conqur_acc_free(rb_conqur_acc *a) {
    rb_free(a->M);
    rb_free(a->Mf);
    rb_free(a->S);
    rb_free(a->Zc);
    memset(a, 0, sizeof *a);
}

double rb_corner_alignment(const float *z, int n) {
    double l1 = 0, l2 = 0;
    for (int j = 0; j < n; j++) {
        l1 += fabs((double)z[j]);
        l2 += (double)z[j] * z[j];
    }
    return l2 > 0 ? l1 / (sqrt((double)n) * sqrt(l2)) : 0;
}

int rb_conqur_acc_add(rb_conqur_acc *a, const float *Z, size_t rows, rb_error *err) {
    const int n = a->n;
    const double rsn = 1.0 / sqrt((double)n);
    for (size_t r0 = 0; r0 < rows; r0 += a->cap_rows) {
        size_t nr = rows - r0 < a->cap_rows ? rows - r0 : a->cap_rows, kept = 0;
        const float *Zk = Z + r0 * (size_t)n; /* the chunk's kept rows, in order */
        /* S row k = sign(z_t)/(√n‖z_t‖) for the k-th kept row, so that Zkᵀ·S = Σ ẑ_tᵀ·b_t. A skipped
         * row (zero, or not finite) must not enter the product at all: NaN·0 is NaN, so once one is
         * met the kept rows are compacted into Zc. */
        for (size_t t = 0; t < nr; t++) {
            const float *z = Z + (r0 + t) * (size_t)n;
            double l1 = 0, l2 = 0;
            for (int j = 0; j < n; j++) {
                l1 += fabs((double)z[j]);
                l2 += (double)z[j] * z[j];
            }
            if (!(l2 > 0) || !isfinite(l2) || !isfinite(l1)) {
                if (Zk != a->Zc) {
                    if (!a->Zc && !(a->Zc = rb_alloc(a->cap_rows * (size_t)n * sizeof(float))))
                        return rb_error_set(err, RB_ENOMEM, "conqur: out of memory (accumulator of order %d)", n);
                    memcpy(a->Zc, Zk, kept * (size_t)n * sizeof(float));
                    Zk = a->Zc;
                }
                continue;
            }
            if (Zk == a->Zc) memcpy(a->Zc + kept * (size_t)n, z, (size_t)n * sizeof(float));
            double nz = sqrt(l2);
            float pos = (float)(rsn / nz), *s = a->S + kept * (size_t)n;
            for (int j = 0; j < n; j++) s[j] = z[j] > 0 ? pos : z[j] < 0 ? -pos : 0.0f;
            a->align_sum += l1 * rsn / nz;
            a->rows += 1;
            kept++;
        }
        if (!kept) continue;
        rb_sgemm(1, 0, n, n, (int)kept, 1.0f, Zk, n, a->S, n, 0.0f, a->Mf, n);
        for (size_t i = 0; i < (size_t)n * n; i++) a->M[i] += a->Mf[i];
    }
    return 0;
}

void rb_conqur_acc_take(rb_conqur_acc *a, const double *R, double *C) {
    const int n = a->n;
    rb_dgemm(0, 0, n, n, n, 1.0, R, n, a->M, n, 0.0, C, n);
    memset(a->M, 0, (size_t)n * n * sizeof(double));
    a->align_sum = 0;
    a->rows = 0;
}

/* rb_conqur: the statistics and the update of ConQuR (METHODS §6) — corner-aligned rotations by
 * online orthogonal Procrustes.
 *
 * For a site with rotation R (n×n, row convention x ↦ x·R) and rows x_t, let z_t = x_t·R,
 * ẑ_t = z_t/‖z_t‖ and b_t = sign(z_t)/√n (the nearest corner of the inscribed hypercube). The
 * Procrustes target in the original basis is C = Σ_t x̂_tᵀ·b_t = R·(Σ_t ẑ_tᵀ·b_t) (x̂ = ẑ·Rᵀ), and
 * the update is R ← polar(C) = U·Vᵀ of C's SVD. The accumulator here is the rotated-basis sum
 * M = Σ_t ẑ_tᵀ·b_t (R is fixed while a batch streams), turned into C by one product at the end of
 * the batch. Memory: two n×n doubles per rotation, whatever the number of tokens. */
#ifndef RB_CONQUR_H
#define RB_CONQUR_H

#include <stddef.h>

#include "core/rb_error.h"

/* Float products feeding M sum over at most this many rows before the sum moves to double: a
 * float dot product of k terms has relative error ≲ k·2⁻²⁴ (3e-5 at 512, ~1e-6 typical), far below
 * what changes a polar factor, while K = 512 keeps sgemm near its peak rate. */
#define RB_CONQUR_ROWS_PER_GEMM 512

/* One rotation's ConQuR state. */
typedef struct rb_conqur_acc {
    int n;
    double *M;        /* [n][n] Σ ẑᵀ·b in the rotated basis, since the last rb_conqur_acc_take */
    float *Mf;        /* [n][n] one chunk's float product */
    float *S;         /* [cap_rows][n] b_t/‖z_t‖ for the chunk's kept rows (scratch) */
    float *Zc;        /* [cap_rows][n] the chunk's kept rows when some were skipped (lazy scratch) */
    size_t cap_rows;
    double align_sum; /* Σ_t ‖z_t‖₁/(√n·‖z_t‖₂) over rows accumulated (corner alignment ∈ [1/√n, 1]) */
    double rows;      /* rows accumulated (zero rows are skipped) */
} rb_conqur_acc;

int rb_conqur_acc_init(rb_conqur_acc *a, int n, rb_error *err);
void rb_conqur_acc_free(rb_conqur_acc *a);

/* Accumulates the rows of Z [rows][n] (= X·R, already rotated): M += Σ ẑᵀ·sign(ẑ)/√n, and the
 * alignment sum. Rows that are zero or hold a NaN/Inf are skipped: they change neither M nor the
 * counts. Errors: RB_ENOMEM. */
int rb_conqur_acc_add(rb_conqur_acc *a, const float *Z, size_t rows, rb_error *err);

/* The batch's target in the original basis, C_batch = R·M (R [n][n] double, the rotation Z was
 * made with), written to C [n][n]; then M, align_sum and rows are reset. */
void rb_conqur_acc_take(rb_conqur_acc *a, const double *R, double *C);

/* Corner alignment of one row z of length n: ‖z‖₁/(√n‖z‖₂) (0 for a zero row). */
double rb_corner_alignment(const float *z, int n);

#endif

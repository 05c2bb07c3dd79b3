/* rb_orth: orthogonal-matrix toolkit in double (LAPACKE + BLAS): random orthogonal matrices,
 * polar factor / orthogonal Procrustes (SVD and Newton–Schulz), Householder reflections, Givens
 * rotations, SpinQuant's Cayley SGD step, orthogonality error.
 *
 * Row convention throughout (METHODS §0): a matrix R acts on row vectors as x ↦ x·R; "apply to
 * rows" means X ← X·R for X [rows][n]. All matrices are row-major. */
#ifndef RB_ORTH_H
#define RB_ORTH_H

#include <stddef.h>

#include "core/rb_error.h"
#include "core/rb_rng.h"

/* M [n][n] ← I. */
void rb_orth_identity(double *M, int n);

/* ---- random orthogonal ------------------------------------------------------------------- */

/* Q from the QR factorization of an n×n matrix of i.i.d. N(0,1) draws from rng (row-major fill
 * order), columns sign-flipped so that diag(R) > 0: Haar-distributed (QuaRot/SpinQuant
 * "random" mode). Errors: RB_ENOMEM, RB_EINVAL (LAPACK failure). */
int rb_orth_random(rb_rng *rng, int n, double *Q, rb_error *err); /* Q: [n][n] */

/* Q ← the Q factor of A = Q·R with columns flipped so diag(R) ≥ 0 (zeros count as +), in place.
 * This is SpinQuant's qr_retraction applied to a square matrix. */
int rb_orth_qr_fix(int n, double *A, rb_error *err); /* A: [n][n] */

/* ---- orthogonality error ----------------------------------------------------------------- */

/* E = RᵀR − I: *max_abs = max |E_ij|, *fro = ‖E‖_F (either pointer may be NULL). Errors: RB_ENOMEM. */
int rb_orth_error(const double *R, int n, double *max_abs, double *fro, rb_error *err); /* R: [n][n] */
/* The same for an fp32 matrix (computed in double). */
int rb_orth_error_f(const float *R, int n, double *max_abs, double *fro, rb_error *err); /* R: [n][n] */

/* ---- polar factor / orthogonal Procrustes ------------------------------------------------- */

/* R = U·Vᵀ from C = U·Σ·Vᵀ (LAPACKE_dgesdd, divide and conquer): the orthogonal matrix closest to
 * C in Frobenius norm, and the maximizer of tr(Rᵀ·C) over orthogonal R (orthogonal Procrustes:
 * argmin_R ‖A·R − B‖_F is polar(Aᵀ·B)). R may alias C. Errors: RB_ENOMEM, RB_EINVAL (SVD did
 * not converge). */
int rb_polar(const double *C, int n, double *R, rb_error *err); /* C: [n][n], R: [n][n] */

/* Pulls a nearly orthogonal P [n][n] back to orthogonality after an optimizer step: Newton–Schulz
 * steps P ← P·(I − E/2), E = PᵀP − I (quadratic: a 1e-4 drift is at rounding level after two) until
 * max|E| ≤ RB_ORTH_RESTORE_TARGET, with an SVD polar factor as the fallback after
 * RB_ORTH_RESTORE_MAX_ITERS. E, T: [n][n] scratch. *drift gets max|PᵀP − I| before, *after the value
 * after. Errors: RB_ENUMERIC (non-finite P), the SVD's. */
#define RB_ORTH_RESTORE_TARGET 1e-12 /* 100× below RB_ROT_ORTH_TOL, above the double rounding floor of
                                        PᵀP at n = 8192 (~√n·1e-16 ≈ 1e-14) */
#define RB_ORTH_RESTORE_MAX_ITERS 4
int rb_orth_restore(double *P, int n, double *E, double *T, double *drift, double *after, rb_error *err);

/* Newton–Schulz polar iteration (METHODS §6.4): X₀ = C/‖C‖_F (+ eps·I first when eps > 0),
 * X ← 1.5·X − 0.5·X·XᵀX until ‖XᵀX − I‖_F ≤ tol or max_iter iterations; GEMM-only. Converges to
 * polar(C) when C is non-singular (slowly when σ_min/‖C‖_F is tiny). *iters (may be NULL) gets
 * the count, *final_err (may be NULL) the last ‖XᵀX − I‖_F. Returns 0 when converged, RB_EINVAL
 * (with a message) when not; R holds the last iterate either way. R may alias C. */
int rb_polar_ns(const double *C, int n, double eps, int max_iter, double tol, double *R, int *iters, double *final_err,
                rb_error *err); /* C: [n][n], R: [n][n] */

/* ---- Householder ------------------------------------------------------------------------- */

/* Unit v with H = I − 2·v·vᵀ mapping y onto the direction of t: y·H = (‖y‖/‖t‖)·t (H is symmetric,
 * so also H·y). Returns 1 when a reflection was built, 0 when y already points along t (or y or
 * t is zero): then v = 0 and H = I. */
int rb_householder_make(const double *y, const double *t, int n, double *v); /* y, t, v: [n] */

/* X ← X·H = X − 2·(X·v)·vᵀ for unit v (v = 0: no-op), one gemv + one rank-1 update. Errors:
 * RB_ENOMEM (a [rows] workspace). */
int rb_householder_apply_rows(const double *v, int n, double *X, size_t rows, rb_error *err);  /* X: [rows][n] */
int rb_householder_apply_rows_f(const double *v, int n, float *X, size_t rows, rb_error *err); /* X: [rows][n] */

/* ---- Givens ------------------------------------------------------------------------------ */

/* One plane rotation on coordinates (i, j) of a row: (x_i, x_j) ← (c·x_i − s·x_j, s·x_i + c·x_j),
 * i.e. x ↦ x·G with G = I except G[i][i] = G[j][j] = c, G[i][j] = s, G[j][i] = −s. */
typedef struct rb_givens {
    int i, j;
    double c, s;
} rb_givens;

/* (c, s) rotating the pair (a, b) onto the direction of (ta, tb): the result is
 * (‖(a,b)‖/‖(ta,tb)‖)·(ta, tb). A zero pair on either side gives the identity (c = 1, s = 0). */
void rb_givens_make(double a, double b, double ta, double tb, double *c, double *s);

/* Applies the rotations to every row, in array order (for a layer with pairwise disjoint index
 * pairs the order does not matter). RB_ASSERTs indices in range and i ≠ j. */
void rb_givens_apply_rows(const rb_givens *g, int count, int n, double *X, size_t rows);  /* X: [rows][n] */
void rb_givens_apply_rows_f(const rb_givens *g, int count, int n, float *X, size_t rows); /* X: [rows][n] */

/* ---- Cayley SGD (SpinQuant's SGDG optimizer for a square parameter, METHODS §3) -----------
 *
 * For the parameter P [n][n] with Euclidean gradient G = ∂L/∂P:
 *   U = rows of P / ‖row‖₂ (guarded by 1e-8);  with probability 1/101: U = qr_fix(Uᵀ)ᵀ
 *   V = β·V − Gᵀ;  A = V·U;  Ŵ = A − ½·Uᵀ·(U·A);  W = Ŵ − Ŵᵀ
 *   α = min(lr, 1/(‖W‖₁ + 1e-8))   (‖·‖₁ = max absolute column sum)
 *   X = Uᵀ;  Y = X + α·V;  5×: Y = X + α·W·(X + Y)/2
 *   P ← Yᵀ;  V ← W·X
 * The retraction draw is rb_rng_below(rng, 101) == 0 (Python's random.randint(1, 101) == 1).
 * The buffer update V ← W·X is the one METHODS §3 states (SpinQuant's Python rebinds V before the
 * in-place copy, so there the buffer stays 0; identical at β = 0, SpinQuant's setting).
 * Row normalization divides by max(‖row‖, 1e-8) rather than ‖row‖ + 1e-8: identical to the fp32
 * reference for unit rows (there 1e-8 is below half an ulp of 1), while in double the "+ 1e-8"
 * would shrink P by 1e-8 every step. Orthogonality: Cayley maps preserve it, but 5 fixed-point
 * iterations are exact only when α·‖W‖₂ is small; at the 1/‖W‖₁ cap a step can leave
 * ‖PᵀP − I‖ ~ 1e-5..1e-4 at n ≈ 128 (less for larger n, where ‖W‖₂ ≪ ‖W‖₁), which the
 * occasional QR retraction resets — as in SpinQuant. */
typedef struct rb_cayley_sgd {
    int n;
    double momentum;  /* β */
    int cayley_iters; /* fixed-point iterations, 5 in SpinQuant */
    double *V;        /* [n][n] momentum buffer (starts at 0) */
    double *work;     /* [7][n][n] scratch */
    long steps, retractions;
    double last_alpha; /* α of the last step */
} rb_cayley_sgd;

/* Optimizer state for one n×n parameter with momentum β (SpinQuant: 0); V starts at 0,
 * cayley_iters at 5. Errors: RB_ENOMEM. */
int rb_cayley_sgd_init(rb_cayley_sgd *s, int n, double momentum, rb_error *err);
/* Releases the buffers; safe on a zeroed object. */
void rb_cayley_sgd_free(rb_cayley_sgd *s);

/* One step on P in place (lr: this step's learning rate; schedules are the caller's). Errors:
 * RB_EINVAL when the QR retraction fails in LAPACK. */
int rb_cayley_sgd_step(rb_cayley_sgd *s, double *P, const double *G, double lr, rb_rng *rng,
                       rb_error *err); /* P: [n][n], G: [n][n] */

#endif

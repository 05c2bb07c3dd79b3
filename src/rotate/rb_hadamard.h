/* rb_hadamard: ±1 Hadamard matrices (constructions, tables, exact checks) and the orthogonal
 * Hadamard transform of order n = m·2^k used by QuaRot/SpinQuant (METHODS §1.3, §1.4).
 *
 * Matrices are int8 row-major with entries ±1 and H·Hᵀ = m·I. Every matrix built or loaded here
 * is checked exactly before use.
 *
 * Table search path for hadM.txt (M lines of M characters '+'/'-'): the directories in
 * $RB_HADAMARD_DIR (colon-separated), then <data_dir>/hadamard where data_dir is the argument, or
 * when that is NULL the compile-time RB_DATA_DIR (the repository's data/ folder). */
#ifndef RB_HADAMARD_H
#define RB_HADAMARD_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_error.h"
#include "core/rb_rng.h"
#include "rb_had_plan.h"

/* ---- ±1 matrices ------------------------------------------------------------------------- */

/* H[i][j] = (−1)^popcount(i & j): Sylvester's matrix, m a power of two. */
void rb_hadamard_sylvester(long m, int8_t *H); /* H: [m][m] */

/* Paley I over GF(q), q a prime power ≡ 3 mod 4: H = I + C, C = [[0, 1ᵀ], [−1, Q]],
 * Q[i][j] = χ(a_j − a_i) (elements a_i = i as in rb_gf). Errors: RB_EINVAL for a bad q. */
int rb_hadamard_paley1(long q, int8_t *H, rb_error *err); /* H: [q+1][q+1] */

/* Paley II over GF(q), q a prime power ≡ 1 mod 4: C = [[0, 1ᵀ], [1, Q]],
 * H = C ⊗ [[1, 1], [1, −1]] + I_{q+1} ⊗ [[1, −1], [−1, −1]]. Errors: RB_EINVAL for a bad q. */
int rb_hadamard_paley2(long q, int8_t *H, rb_error *err); /* H: [2q+2][2q+2] */

/* H = A ⊗ B: H[ia·b + ib][ja·b + jb] = A[ia][ja]·B[ib][jb]. */
void rb_hadamard_kron(const int8_t *A, long a, const int8_t *B, long b,
                      int8_t *H); /* A: [a][a], B: [b][b], H: [ab][ab] */

/* 1 when every entry is ±1 and H·Hᵀ = m·I exactly, else 0 (with *bad_i, *bad_j, *dot naming the
 * first failing pair when the pointers are non-NULL; bad_i = bad_j = −1 for a non-±1 entry).
 * Exact: int64 sums for m ≤ 1024, above that a double BLAS product (every partial sum is an
 * integer of magnitude ≤ m < 2^53, so it is exact too). */
int rb_hadamard_check(const int8_t *H, long m, long *bad_i, long *bad_j, long *dot); /* H: [m][m] */

/* Parses a table file of exactly m lines of m characters '+'/'-' (each line ends with "\n";
 * "\r\n" and a missing final newline are accepted) and checks it. Errors (message names the file,
 * and the line for parse errors): RB_ENOTFOUND / RB_EIO, RB_EFORMAT (bad shape or character, or
 * not Hadamard). */
int rb_hadamard_load(const char *path, long m, int8_t *H, rb_error *err); /* H: [m][m] */

/* Searches the table path for hadM.txt; on success writes the path into buf and returns 1. */
int rb_hadamard_find_table(long m, const char *data_dir, char *buf, size_t cap);

/* The dense ±1 factor H_m for order n, chosen by rb_had_plan_make(n): a construction, else a
 * table on the search path (any admissible m = odd(n)·2^i, smallest first). On success *H (malloc;
 * NULL when m = 1), *plan (with m/k of the factor actually used) and `source` (a short description:
 * "paley1 GF(7^3)", a table path, ...) are filled. Errors: RB_ENOTFOUND with a message naming the
 * options (table file names, the fallback setting), RB_EFORMAT for a bad table, RB_ENOMEM. */
int rb_hadamard_factor(long n, const char *data_dir, rb_had_plan *plan, int8_t **H, char *source, size_t cap,
                       rb_error *err);

/* ---- the orthogonal transform R of order n ------------------------------------------------
 *
 * Definition (row convention, x a row vector of length n):
 *     H_n = H_m ⊗ S_{2^k}       (S = Sylvester, natural ordering; H_m the ±1 factor)
 *     R   = diag(s) · H_nᵀ / √n  (s ∈ {±1}^n the signs, all +1 when none are given)
 *     apply:   x ↦ x·R  = ((x ⊙ s)·H_nᵀ) / √n
 *     apply_t: x ↦ x·Rᵀ = ((x·H_n) ⊙ s) / √n        (R is orthogonal: apply_t undoes apply)
 * so R[i][j] = s_i · H_m[a_j][a_i] · S[b_i][b_j] / √n with i = a_i·2^k + b_i, j = a_j·2^k + b_j.
 * This is QuaRot's random Hadamard (random_hadamard_matrix: row i of R is s_i times column i of
 * H_n/√n) and its matmul_hadU layout: view x ⊙ s as an m×2^k row-major matrix X[a][b] =
 * x[a·2^k + b], FWHT every length-2^k row, left-multiply by H_m, scale by 1/√n.
 * A weight W (rows = output channels) whose input is rotated becomes W·R: apply W's rows. */
typedef struct rb_had {
    long n; /* order */
    long m; /* dense factor order, n = m·2^k (1: pure FWHT) */
    int k;
    int kind;      /* RB_HAD_* of the factor */
    int8_t *H;     /* [m][m] ±1 factor, NULL when m = 1 */
    float *Hf;     /* [m][m] the factor as float (sgemm operand), NULL when m = 1 */
    double *Hd;    /* [m][m] the factor as double, NULL when m = 1 */
    int8_t *signs; /* [n] ±1, NULL for all +1 */
    float *sf;     /* [n] signs as float, NULL for all +1 */
    double *sd;    /* [n] signs as double, NULL for all +1 */
    float *sfn;    /* [n] s/√n: sign and scale in one pass when m = 1; NULL for all +1 */
    double *sdn;   /* [n] s/√n as double */
    char source[512];
} rb_had;

/* Builds the transform of order n with the given signs (NULL: all +1; entries must be ±1).
 * Errors as rb_hadamard_factor (table search uses the default data dir) and RB_EINVAL for n < 1
 * or bad signs. Free with rb_had_free. */
int rb_had_init(rb_had *h, long n, const int8_t *signs, rb_error *err); /* signs: [n] or NULL */

/* Same with signs drawn i.i.d. uniform from rng (QuaRot's random Hadamard, one draw per index). */
int rb_had_init_random(rb_had *h, long n, rb_rng *rng, rb_error *err);

/* Same as rb_had_init with an explicit data dir for the table search (NULL: RB_DATA_DIR). */
int rb_had_init_dir(rb_had *h, long n, const int8_t *signs, const char *data_dir, rb_error *err);

/* Releases everything and zeroes *h; safe on a zeroed or failed-init object. */
void rb_had_free(rb_had *h);

/* x ← x·R for each row (fp32 data; the dense m×m part runs as one sgemm per block of rows).
 * Fails only with RB_ENOMEM (workspace). */
int rb_had_apply_rows(const rb_had *h, float *x, size_t rows); /* x: [rows][n] row-major */
/* x ← x·Rᵀ = x·R⁻¹ for each row. */
int rb_had_apply_rows_t(const rb_had *h, float *x, size_t rows); /* x: [rows][n] row-major */
/* Double versions (dgemm). */
int rb_had_apply_rows_d(const rb_had *h, double *x, size_t rows);   /* x: [rows][n] row-major */
int rb_had_apply_rows_t_d(const rb_had *h, double *x, size_t rows); /* x: [rows][n] row-major */

/* Rows r0 .. r0+nr−1 of R (formula above, independent of the apply code path). */
void rb_had_dense_rows(const rb_had *h, long r0, long nr, double *R); /* R: [nr][n] row-major */
/* The whole matrix R. */
void rb_had_dense(const rb_had *h, double *R); /* R: [n][n] row-major */

#endif

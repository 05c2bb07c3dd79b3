/* rb_junction: ReSpinQuant's residual junction transforms (METHODS §7.2–7.3).
 *
 * With layer-wise residual bases (rb_rotset.h: ra, rm) each residual add mixes two bases: in row
 * convention the stream s (basis A) must become s·T (basis B) before the branch output (already in
 * basis B) is added, T = Aᵀ·B. At layer l the attention junction is T = ra[l]ᵀ·rm[l] (site res_attn),
 * the FFN junction T = rm[l]ᵀ·ra[l+1] (site res_mlp). Exact, T costs n² multiply-adds per token.
 *
 * The low-rank junction replaces T by the rotation acting on an r-dimensional subspace only:
 *     Q  = the r left singular vectors of ΔT = T − I with the largest singular values   [n][r]
 *     R̂ = polar(Qᵀ·T·Q)   (orthogonal r×r)            M = R̂ − I_r                      [r][r]
 *     T̂ = I + Q·M·Qᵀ      (orthogonal; the identity on span(Q)^⊥)
 * applied online as s ← s + ((s·Q)·M)·Qᵀ: 2·n·r + r² multiply-adds per token. The left singular
 * vectors of ΔT are the eigenvectors of ΔT·ΔTᵀ = 2I − T − Tᵀ (T orthogonal), a symmetric matrix:
 * only its top r eigenpairs are computed (LAPACKE_dsyevr), not a full SVD. r = 0 is the identity
 * (the junctions dropped); r = n reproduces T up to rounding. */
#ifndef RB_JUNCTION_H
#define RB_JUNCTION_H

#include <stddef.h>

#include "core/rb_error.h"
#include "model/rb_forward.h"

/* The two junctions of a layer. */
enum { RB_JN_ATTN = 0, RB_JN_MLP = 1, RB_JN_COUNT };

/* "attn", "mlp". RB_ASSERTs k in range. */
const char *rb_junction_name(int k);

typedef struct rb_junction {
    int n, r;          /* width (dim) and rank, 0 ≤ r ≤ n */
    double *Q;         /* [n][r] orthonormal columns (NULL when r = 0) */
    double *M;         /* [r][r] R̂ − I_r */
    float *Qf, *Mf;    /* fp32 copies for the online path (rb_junction_check) */
    double dev;        /* ‖T − I‖_F of the exact transform it was fitted to (NaN: unknown) */
    double approx_err; /* ‖T − T̂‖_F (NaN: unknown) */
    double orth_err;   /* max(‖QᵀQ − I‖_max, ‖R̂ᵀR̂ − I‖_max), measured by rb_junction_check */
} rb_junction;

/* A junction of width n ≥ 1 and rank 0 ≤ r ≤ n, Q and M zeroed (not yet valid unless r = 0).
 * Errors: RB_EINVAL (shape), RB_ENOMEM. */
int rb_junction_alloc(int n, int r, rb_junction **out, rb_error *err);
void rb_junction_free(rb_junction *j);

/* Fits the rank-r junction to T [n][n] (orthogonal; its orthogonality is the caller's), in double,
 * filling dev and approx_err, then rb_junction_check. Errors: RB_EINVAL (rank, eigensolver or SVD
 * failure), RB_ENOMEM. */
int rb_junction_fit(const double *T, int n, int r, rb_junction **out, rb_error *err);

/* Validates Q orthonormal and R̂ = M + I orthogonal (RB_ROT_ORTH_TOL, NaN refused), stores orth_err
 * and refreshes the fp32 copies. RB_EINVAL naming the field, RB_ENOMEM. */
int rb_junction_check(rb_junction *j, rb_error *err);

/* max(‖QᵀQ − I‖_max, ‖R̂ᵀR̂ − I‖_max) measured now (NaN if an entry is not finite, +∞ out of memory). */
double rb_junction_orth_err(const rb_junction *j);

/* T̂ [n][n] materialized in double (tests, approximation errors). */
void rb_junction_dense(const rb_junction *j, double *T);

/* Rows X[rows][n] ← X·T̂ (transpose: X·T̂ᵀ, the backward), fp32 through sgemm. tmp: [rows][2r]. */
void rb_junction_apply_f(const rb_junction *j, float *X, size_t rows, float *tmp, int transpose);

/* The junctions of a model as online hooks at RB_SITE_RES_ATTN / RB_SITE_RES_MLP (ctx: this
 * struct; the layer comes from the hook's info). Per layer and junction either a dense exact T
 * (fp32, owned) or a low-rank junction (not owned), or nothing (identity). With gradient
 * accumulators set, the dense backward also adds the rotation-gradient terms of its two bases
 * (rb_rotgrad.h): acc_in += dsᵀ_in·s_in and acc_out += s_outᵀ·ds_out, the junction's input-side and
 * output-side contributions in the form dL/dB = B·M_B (B = the basis, M_B accumulated). */
typedef struct rb_junctions {
    int n_layers, n;
    float **dense;           /* [n_layers·2] T [n][n] (owned entries) or NULL */
    const rb_junction **lr;  /* [n_layers·2] low-rank (not owned) or NULL */
    double **acc_in, **acc_out; /* [n_layers·2] [n][n] accumulators (not owned), or NULL arrays */
    float *tmp;              /* [cap] scratch */
    size_t cap;
    float *prod;             /* [n][n] product scratch (accumulation) */
    /* lazy exact mode (rb_junctions_lazy_exact): the dense T of one layer at a time, computed from
     * the bases of `lazy_rs` when a hook first meets that layer (layer-major passes) */
    const struct rb_rotset *lazy_rs;
    int lazy_layer;          /* layer held in lazy_T (-1: none) */
    float *lazy_T[2];        /* [n][n] attn, mlp */
    double *lazy_d;          /* [n][n] double temporary */
} rb_junctions;

/* Empty junctions (all identity) for n_layers layers of width n. Errors: RB_ENOMEM. */
int rb_junctions_init(rb_junctions *j, int n_layers, int n, rb_error *err);
void rb_junctions_free(rb_junctions *j);
/* Dense T of layer l, junction k, copied to fp32 (owned). Errors: RB_ENOMEM. */
int rb_junctions_set_dense(rb_junctions *j, int l, int k, const double *T, rb_error *err);
/* Whether any junction is set. */
int rb_junctions_any(const rb_junctions *j);
/* Switches j (empty, from rb_junctions_init) to the exact junctions of layer-wise set rs, computed one
 * layer at a time (2·n² floats, 2·n³ multiply-adds per layer change): the exact model at the cost
 * of dense online products, for an FP reference beside low-rank junctions. Errors: RB_ENOMEM. */
int rb_junctions_lazy_exact(rb_junctions *j, const struct rb_rotset *rs, rb_error *err);

/* The hook (rb_hook_fn) and its backward (rb_hook_bwd_fn; needs the input when accumulating). */
int rb_hook_junction(void *ctx, const rb_site_info *in, float *x, rb_error *err);
int rb_hook_junction_bwd(void *ctx, const rb_site_info *in, const float *x_in, float *dx, rb_error *err);

#endif

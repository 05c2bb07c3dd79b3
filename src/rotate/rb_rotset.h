/* rb_rotset: a rotation set {R1; R2 per layer; R3; R4} (METHODS §1.2), the record of where it came
 * from, and its save/load.
 *
 * Row convention throughout: an activation row x is rotated as x·R; a linear W [out][in] whose
 * input is rotated becomes W·R, one whose output is rotated becomes Rᵀ·W.
 *   R1 [dim][dim]        residual stream: embeddings, q/k/v/gate/up/lm_head inputs, o/down outputs
 *   R2 [head_dim]^2 ×L   V output per KV head (Wv[h] ← R2ᵀ·Wv[h]) and o_proj input per head
 *                        (Wo[:,h] ← Wo[:,h]·R2); one per layer, shared by all heads (GQA-consistent)
 *   R3 (online)          Hadamard of order head_dim on Q and K after RoPE, per head
 *   R4 (online + fused)  Hadamard of order hidden_dim on the down_proj input; Wdown ← Wdown·H
 *   RUQuant (online + fused, per layer and linear input; rb_ruquant.h): x ← (x/s)·A at attn_in,
 *                        o_in, mlp_in and down_in, the weights reading it W ← W·diag(s)·A; applied
 *                        after every transform above at the same site
 *   ra, rm (ReSpinQuant, METHODS §7.1; instead of R1): layer-wise residual bases. ra[l] [dim]² is
 *                        the basis of layer l's attention input (q/k/v inputs) and of layer l−1's
 *                        FFN output (down_proj output; the embeddings for l = 0), ra[n_layers] is
 *                        R_final (lm_head input); rm[l] is the basis of layer l's attention output
 *                        (o_proj output) and FFN input (gate/up inputs). The residual adds then mix
 *                        bases: the junctions T = ra[l]ᵀ·rm[l] (res_attn) and rm[l]ᵀ·ra[l+1] (res_mlp)
 *                        run online (rb_junction.h), exact and dense, or low-rank T̂ when jn is set
 * A NULL matrix is the identity. Every matrix produced is checked orthogonal (RB_ROT_ORTH_TOL). */
#ifndef RB_ROTSET_H
#define RB_ROTSET_H

#include <stdint.h>

#include "core/rb_error.h"
#include "rotate/rb_hadamard.h"
#include "rotate/rb_junction.h"
#include "rotate/rb_ruq_site.h"

/* Largest ‖RᵀR − I‖_max accepted for a rotation built in double (issue requirement 1e-10). */
#define RB_ROT_ORTH_TOL 1e-10

/* How a dense rotation was made, so it can be stored as a recipe instead of n² numbers. */
enum { RB_ROT_DENSE = 0, RB_ROT_HADAMARD = 1 };

typedef struct rb_rot {
    int n;          /* order */
    int kind;       /* RB_ROT_DENSE | RB_ROT_HADAMARD */
    double *R;      /* [n][n] row-major, always materialized (owned) */
    int8_t *signs;  /* [n] Hadamard recipe: R = diag(s)·H_nᵀ/√n (rb_had definition); NULL otherwise */
    double orth_err; /* ‖RᵀR − I‖_max */
} rb_rot;

typedef struct rb_rotset {
    char method[32];
    uint64_t seed;
    int dim, head_dim, hidden_dim, n_layers;
    rb_rot *r1;     /* NULL = identity */
    rb_rot **r2;    /* [n_layers], entries NULL = identity; the array itself may be NULL */
    int r3, r4;     /* online Hadamards on/off */
    int emb_center; /* subtract each embedding row's mean before R1 (QuaRot/SpinQuant; not exact) */
    int cross_head; /* QuaRot: online Hadamard across heads on the o_proj input, with W_o ← W_o·(H_nh ⊗ I)
                       on top of the per-head R2 (so W_o sees the full H_nh ⊗ H_dh) */
    rb_ruq_site *(*ruq)[RB_RUQ_NSITES]; /* [n_layers][RB_RUQ_NSITES] RUQuant site transforms (owned),
                       entries NULL = none; the array itself NULL = none. Widths: dim (attn_in,
                       mlp_in), n_heads·head_dim (o_in), hidden_dim (down_in) */
    rb_rot **ra;    /* [n_layers + 1] layer-wise residual bases (entries NULL = identity); NULL = the global
                       r1, which must then be NULL when ra is set */
    rb_rot **rm;    /* [n_layers] layer-wise mid-layer bases; allocated with ra */
    rb_junction *(*jn)[RB_JN_COUNT]; /* [n_layers][attn, mlp] low-rank junctions (owned, entries NULL =
                       identity); NULL with ra: the exact dense junctions run online */
} rb_rotset;

/* Empty set (all identity, R3/R4 off) for the given shapes. */
int rb_rotset_init(rb_rotset *s, const char *method, int dim, int head_dim, int hidden_dim, int n_layers,
                   rb_error *err);
void rb_rotset_free(rb_rotset *s);
/* Allocates s->ruq (all entries NULL) when absent. Errors: RB_EINVAL (no layers), RB_ENOMEM. */
int rb_rotset_ruq_alloc(rb_rotset *s, rb_error *err);

/* Allocates the layer-wise bases ra [n_layers+1] and rm [n_layers] (entries NULL = identity) when
 * absent. Errors: RB_EINVAL (no layers, or a global r1 present), RB_ENOMEM. */
int rb_rotset_layerwise_alloc(rb_rotset *s, rb_error *err);
/* Allocates s->jn (all entries NULL) when absent. Errors: RB_EINVAL (no layers), RB_ENOMEM. */
int rb_rotset_jn_alloc(rb_rotset *s, rb_error *err);
/* The exact junction k (RB_JN_ATTN | RB_JN_MLP) of layer l of a layer-wise set: T [dim][dim] =
 * ra[l]ᵀ·rm[l] or rm[l]ᵀ·ra[l+1], in double (NULL bases are the identity). */
void rb_rotset_junction_exact(const rb_rotset *s, int l, int k, double *T);

/* Dense rotation of order n from R (copied), orthogonality checked against RB_ROT_ORTH_TOL. */
int rb_rot_from_dense(const double *R, int n, rb_rot **out, rb_error *err);
/* Hadamard rotation R = diag(s)·H_nᵀ/√n (signs NULL = all +1), materialized and checked. */
int rb_rot_from_hadamard(int n, const int8_t *signs, rb_rot **out, rb_error *err);
void rb_rot_free(rb_rot *r);

/* Largest orthogonality error over every matrix of the set (RUQuant sites, layer-wise bases and
 * junctions included). */
double rb_rotset_orth_err(const rb_rotset *s);

/* Saves to / loads from an HDF5 file: attrs method, seed, dims, r3, r4, emb_center,
 * max_orth_error; groups /r1 and /r2/<layer> holding either a float64 dataset "R" [n][n]
 * (dense) or an int8 dataset "signs" [n] (Hadamard recipe), each with attr orth_error; optional
 * attr cross_head (absent = 0); optional group /ruquant/<layer>/<site> per RUQuant site transform
 * (absent = none; layout in rb_rotset_io.c). Loading validates every shape against the file's dims
 * and rechecks orthogonality. */
int rb_rotset_save(const rb_rotset *s, const char *path, rb_error *err);
/* The same layout written into / read from an open HDF5 location (hid_t as int64_t: file root or
 * group) of a larger file; `path` names it in messages. Used by the results file (/rotations). */
int rb_rotset_write_loc(int64_t loc, const rb_rotset *s, const char *path, rb_error *err);
int rb_rotset_read_loc(int64_t loc, const char *path, rb_rotset *s, rb_error *err);
int rb_rotset_load(const char *path, rb_rotset *s, rb_error *err);

#endif

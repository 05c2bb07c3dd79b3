/* rb_gf: finite fields GF(q), q = p^e, for the Paley Hadamard constructions.
 *
 * Elements are the integers 0..q−1: element a stands for the polynomial Σ d_i x^i over GF(p)
 * whose coefficients d_i are the base-p digits of a (a = Σ d_i p^i). Addition is digit-wise mod p;
 * multiplication goes through log/antilog tables of the primitive element x modulo a monic
 * primitive polynomial of degree e found by search (the first one in the order of its coefficient
 * code c = Σ_{i<e} poly[i]·p^i, ascending). For e = 1 this is Z/p with the primitive root
 * g = −poly[0] mod p as generator. */
#ifndef RB_GF_H
#define RB_GF_H

#include <stdint.h>

#include "core/rb_error.h"

/* Largest field this module builds: tables are 8 bytes per element, and a Paley matrix over GF(q)
 * has (q+1)² entries, so anything bigger is useless here. */
#define RB_GF_MAX_Q (1L << 24)
#define RB_GF_MAX_E 24

typedef struct rb_gf {
    int p, e, q;               /* characteristic, degree, order q = p^e */
    int poly[RB_GF_MAX_E + 1]; /* monic primitive polynomial, poly[i] = coefficient of x^i */
    int32_t *exp;              /* [q−1] g^i as element, g = x */
    int32_t *log;              /* [q] log_g(a); log[0] = −1 */
} rb_gf;

/* Builds GF(q). Errors: RB_EINVAL when q is not a prime power or exceeds RB_GF_MAX_Q,
 * RB_ENOMEM. Free with rb_gf_free. */
int rb_gf_init(rb_gf *f, long q, rb_error *err);
/* Releases the tables; safe on a zeroed or already freed field. */
void rb_gf_free(rb_gf *f);

/* Field operations on elements in [0, q). rb_gf_inv needs a ≠ 0. */
int rb_gf_add(const rb_gf *f, int a, int b);
int rb_gf_sub(const rb_gf *f, int a, int b);
int rb_gf_neg(const rb_gf *f, int a);
int rb_gf_mul(const rb_gf *f, int a, int b);
int rb_gf_inv(const rb_gf *f, int a);

/* Quadratic character for odd q: 0 for a = 0, +1 for a nonzero square, −1 otherwise (a square
 * exactly when its log is even). For p = 2 every element is a square: 1 for a ≠ 0. */
int rb_gf_chi(const rb_gf *f, int a);

#endif

/* ±1 Hadamard matrices: constructions, exact checks, tables, and the factor of a given order. */
#include "rb_hadamard.h"

#include <stdlib.h>
#include <string.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "rb_fwht.h"
#include "rb_gf.h"

/* Up to this order the exact check runs int64 dot products (≈ m³/2 int8 MACs, 0.07 s at 512);
 * above it a double dsyrk, exact as well for integer data, is much faster. */
#define HAD_CHECK_INT_MAX 512

#ifdef RB_DATA_DIR
static const char *const default_data_dir = RB_DATA_DIR;
#else
static const char *const default_data_dir = NULL;
#endif

void rb_hadamard_sylvester(long m, int8_t *H) {
    RB_ASSERT(rb_is_pow2(m));
    for (long i = 0; i < m; i++)
        for (long j = 0; j < m; j++) H[i * m + j] = (__builtin_popcountl((unsigned long)(i & j)) & 1) ? -1 : 1;
}

/* χ over GF(q) as a table, plus the field; q must be odd. */
static int chi_table(long q, rb_gf *f, int8_t **chi, rb_error *err) {
    int rc = rb_gf_init(f, q, err);
    if (rc) return rc;
    *chi = malloc((size_t)q);
    if (!*chi) {
        rb_gf_free(f);
        return rb_error_set(err, RB_ENOMEM, "GF(%ld): out of memory", q);
    }
    for (long a = 0; a < q; a++) (*chi)[a] = (int8_t)rb_gf_chi(f, (int)a);
    return 0;
}

/* Jacobsthal entry Q[i][j] = χ(a_j − a_i). */
static int8_t jacobsthal(const rb_gf *f, const int8_t *chi, long i, long j) {
    return chi[rb_gf_sub(f, (int)j, (int)i)];
}

int rb_hadamard_paley1(long q, int8_t *H, rb_error *err) {
    long p;
    int e;
    if (!rb_prime_power(q, &p, &e) || q % 4 != 3)
        return rb_error_set(err, RB_EINVAL, "Paley I needs a prime power q ≡ 3 mod 4, got %ld", q);
    rb_gf f;
    int8_t *chi;
    int rc = chi_table(q, &f, &chi, err);
    if (rc) return rc;
    long m = q + 1;
    H[0] = 1;
    for (long j = 1; j < m; j++) H[j] = 1;
    for (long i = 1; i < m; i++) {
        H[i * m] = -1;
        for (long j = 1; j < m; j++) H[i * m + j] = (int8_t)(i == j ? 1 : jacobsthal(&f, chi, i - 1, j - 1));
    }
    free(chi);
    rb_gf_free(&f);
    return 0;
}

int rb_hadamard_paley2(long q, int8_t *H, rb_error *err) {
    long p;
    int e;
    if (!rb_prime_power(q, &p, &e) || q % 4 != 1)
        return rb_error_set(err, RB_EINVAL, "Paley II needs a prime power q ≡ 1 mod 4, got %ld", q);
    rb_gf f;
    int8_t *chi;
    int rc = chi_table(q, &f, &chi, err);
    if (rc) return rc;
    static const int8_t A2[2][2] = {{1, 1}, {1, -1}}, B2[2][2] = {{1, -1}, {-1, -1}};
    long c = q + 1, m = 2 * c;
    for (long u = 0; u < c; u++)
        for (long w = 0; w < c; w++) {
            int cuw = (u == 0 || w == 0) ? (u == w ? 0 : 1) : jacobsthal(&f, chi, u - 1, w - 1);
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++)
                    H[(2 * u + a) * m + 2 * w + b] = (int8_t)(cuw * A2[a][b] + (u == w ? B2[a][b] : 0));
        }
    free(chi);
    rb_gf_free(&f);
    return 0;
}

void rb_hadamard_kron(const int8_t *A, long a, const int8_t *B, long b, int8_t *H) {
    long m = a * b;
    for (long ia = 0; ia < a; ia++)
        for (long ib = 0; ib < b; ib++) {
            int8_t *row = H + (ia * b + ib) * m;
            for (long ja = 0; ja < a; ja++) {
                int8_t s = A[ia * a + ja];
                for (long jb = 0; jb < b; jb++) row[ja * b + jb] = (int8_t)(s * B[ib * b + jb]);
            }
        }
}

static int check_fail(long i, long j, long d, long *bad_i, long *bad_j, long *dot) {
    if (bad_i) *bad_i = i;
    if (bad_j) *bad_j = j;
    if (dot) *dot = d;
    return 0;
}

int rb_hadamard_check(const int8_t *H, long m, long *bad_i, long *bad_j, long *dot) {
    for (long t = 0; t < m * m; t++)
        if (H[t] != 1 && H[t] != -1) return check_fail(-1, -1, H[t], bad_i, bad_j, dot);
    double *A = NULL, *C = NULL;
    if (m > HAD_CHECK_INT_MAX) {
        A = malloc(sizeof *A * (size_t)m * (size_t)m);
        C = malloc(sizeof *C * (size_t)m * (size_t)m);
    }
    if (!A || !C) { /* small m, or no memory for the fast path: int dot products */
        free(A);
        free(C);
        for (long i = 0; i < m; i++)
            for (long j = i; j < m; j++) {
                const int8_t *a = H + i * m, *b = H + j * m;
                int64_t s = 0;
                for (long t = 0; t < m; t++) s += a[t] * b[t];
                int64_t want = i == j ? m : 0;
                if (s != want) return check_fail(i, j, (long)s, bad_i, bad_j, dot);
            }
        return 1;
    }
    for (long t = 0; t < m * m; t++) A[t] = H[t];
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)m, (int)m, 1.0, A, (int)m, 0.0, C, (int)m);
    int ok = 1;
    for (long i = 0; i < m && ok; i++)
        for (long j = i; j < m; j++)
            if (C[i * m + j] != (i == j ? (double)m : 0.0)) {
                ok = check_fail(i, j, (long)C[i * m + j], bad_i, bad_j, dot);
                break;
            }
    free(A);
    free(C);
    return ok;
}

int rb_hadamard_load(const char *path, long m, int8_t *H, rb_error *err) {
    char *buf;
    size_t len;
    int rc = rb_read_file(path, (size_t)(m + 2) * (size_t)m + 64, &buf, &len, err);
    if (rc) return rc;
    const char *s = buf, *end = buf + len;
    for (long i = 0; i < m; i++) {
        if (s >= end) {
            rc = rb_error_set(err, RB_EFORMAT, "%s:%ld: expected %ld lines, file ends after %ld", path, i + 1, m, i);
            goto out;
        }
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *le = nl ? nl : end;
        if (le > s && le[-1] == '\r') le--;
        if (le - s != m) {
            rc = rb_error_set(err, RB_EFORMAT, "%s:%ld: expected %ld characters '+'/'-', got %ld", path, i + 1, m,
                              (long)(le - s));
            goto out;
        }
        for (long j = 0; j < m; j++) {
            if (s[j] != '+' && s[j] != '-') {
                rc = rb_error_set(err, RB_EFORMAT, "%s:%ld: column %ld: expected '+' or '-', got 0x%02x", path, i + 1,
                                  j + 1, (unsigned char)s[j]);
                goto out;
            }
            H[i * m + j] = s[j] == '+' ? 1 : -1;
        }
        s = nl ? nl + 1 : end;
    }
    for (; s < end; s++)
        if (*s != '\n' && *s != '\r' && *s != ' ' && *s != '\t') {
            rc = rb_error_set(err, RB_EFORMAT, "%s:%ld: unexpected content after %ld rows", path, m + 1, m);
            goto out;
        }
    long bi, bj, d;
    if (!rb_hadamard_check(H, m, &bi, &bj, &d))
        rc = rb_error_set(err, RB_EFORMAT,
                          "%s: not a Hadamard matrix: rows %ld and %ld have dot product %ld (expected %ld)", path,
                          bi + 1, bj + 1, d, bi == bj ? m : 0);
out:
    free(buf);
    return rc;
}

static int try_dir(const char *dir, size_t dlen, long m, char *buf, size_t cap) {
    int w = snprintf(buf, cap, "%.*s/had%ld.txt", (int)dlen, dir, m);
    return w > 0 && (size_t)w < cap && rb_path_exists(buf);
}

int rb_hadamard_find_table(long m, const char *data_dir, char *buf, size_t cap) {
    const char *env = getenv("RB_HADAMARD_DIR");
    for (const char *s = env; s && *s;) {
        const char *c = strchr(s, ':');
        size_t l = c ? (size_t)(c - s) : strlen(s);
        if (l && try_dir(s, l, m, buf, cap)) return 1;
        s = c ? c + 1 : s + l;
    }
    if (!data_dir) data_dir = default_data_dir;
    if (data_dir) {
        char sub[4096];
        int w = snprintf(sub, sizeof sub, "%s/hadamard", data_dir);
        if (w > 0 && (size_t)w < sizeof sub && try_dir(sub, strlen(sub), m, buf, cap)) return 1;
    }
    return 0;
}

/* The factor of a Sylvester / Paley plan (H = NULL for Sylvester, m = 1). */
static int build_direct(const rb_had_plan *pl, int8_t **H, char *src, size_t cap, rb_error *err) {
    *H = NULL;
    if (pl->kind == RB_HAD_SYLVESTER) {
        snprintf(src, cap, "sylvester");
        return 0;
    }
    RB_ASSERT(pl->kind == RB_HAD_PALEY1 || pl->kind == RB_HAD_PALEY2);
    *H = malloc((size_t)pl->m * (size_t)pl->m);
    if (!*H) return rb_error_set(err, RB_ENOMEM, "Hadamard %ld: out of memory", pl->m);
    int rc = pl->kind == RB_HAD_PALEY1 ? rb_hadamard_paley1(pl->q, *H, err) : rb_hadamard_paley2(pl->q, *H, err);
    if (rc) {
        free(*H);
        *H = NULL;
        return rc;
    }
    if (pl->e > 1)
        snprintf(src, cap, "%s GF(%ld^%d)", rb_had_kind_name(pl->kind), pl->p, pl->e);
    else
        snprintf(src, cap, "%s GF(%ld)", rb_had_kind_name(pl->kind), pl->q);
    return 0;
}

/* Dense ±1 matrix of order N (a Kronecker factor) from a direct construction, Sylvester-expanded:
 * H = H_m ⊗ S_{2^k}. */
static int build_constructed(long N, int8_t **out, char *src, size_t cap, rb_error *err) {
    rb_had_plan pl;
    rb_had_plan_make(N, &pl);
    int8_t *F;
    int rc = build_direct(&pl, &F, src, cap, err);
    if (rc) return rc;
    long s = 1L << pl.k;
    int8_t *S = malloc((size_t)s * (size_t)s), *H = malloc((size_t)N * (size_t)N);
    if (!S || !H) {
        free(F);
        free(S);
        free(H);
        return rb_error_set(err, RB_ENOMEM, "Hadamard %ld: out of memory", N);
    }
    rb_hadamard_sylvester(s, S);
    if (F)
        rb_hadamard_kron(F, pl.m, S, s, H);
    else
        memcpy(H, S, (size_t)N * (size_t)N);
    if (pl.k > 0) {
        size_t l = strlen(src);
        snprintf(src + l, cap - l, " ⊗ S%ld", s);
    }
    free(F);
    free(S);
    *out = H;
    return 0;
}

static int build_factor(const rb_had_plan *pl, int8_t **H, char *src, size_t cap, rb_error *err) {
    if (pl->kind != RB_HAD_KRON) return build_direct(pl, H, src, cap, err);
    int8_t *A = NULL, *B = NULL;
    char sa[64], sb[64];
    *H = NULL;
    int rc = build_constructed(pl->m1, &A, sa, sizeof sa, err);
    if (!rc) rc = build_constructed(pl->m2, &B, sb, sizeof sb, err);
    if (!rc && !(*H = malloc((size_t)pl->m * (size_t)pl->m)))
        rc = rb_error_set(err, RB_ENOMEM, "Hadamard %ld: out of memory", pl->m);
    if (!rc) {
        rb_hadamard_kron(A, pl->m1, B, pl->m2, *H);
        snprintf(src, cap, "kronecker %ld·%ld (%s ⊗ %s)", pl->m1, pl->m2, sa, sb);
    }
    free(A);
    free(B);
    return rc;
}

/* "(172 = 172·2^0; 171 and 85 are not prime powers)" style explanation of why nothing applies. */
static void explain(long n, char *buf, size_t cap, char *files, size_t fcap) {
    long odd = n;
    int v = 0;
    while (odd % 2 == 0) {
        odd /= 2;
        v++;
    }
    long nums[64];
    int cnt = 0;
    long first = 0;
    files[0] = 0;
    for (int i = 0; i <= v; i++) {
        long m = odd << i;
        if (m % 4) continue;
        if (!first) first = m;
        nums[cnt++] = m - 1;
        if (m % 8 == 4) nums[cnt++] = m / 2 - 1; /* else m/2 − 1 ≡ 3 mod 4: Paley II does not apply */
        size_t l = strlen(files);
        snprintf(files + l, fcap - l, "%shad%ld.txt", l ? " or " : "", m);
        if (cnt > 60) break;
    }
    size_t l =
        (size_t)snprintf(buf, cap, "(%ld = %ld·2^%d; ", n, first, (int)(v - __builtin_ctzl((unsigned long)first)));
    for (int t = 0; t < cnt && l < cap; t++)
        l += (size_t)snprintf(buf + l, cap - l, "%ld%s", nums[t], t + 2 < cnt ? ", " : t + 1 < cnt ? " and " : "");
    if (l < cap) l += (size_t)snprintf(buf + l, cap - l, " %s not prime powers", cnt > 1 ? "are" : "is");
    int composite = 0;
    for (long d = 3; d * d <= odd; d += 2)
        if (odd % d == 0) composite = 1;
    if (composite && l < cap)
        l += (size_t)snprintf(buf + l, cap - l, "; no Kronecker product of constructible orders fits");
    if (l < cap) snprintf(buf + l, cap - l, ")");
}

int rb_hadamard_factor(long n, const char *data_dir, rb_had_plan *plan, int8_t **H, char *source, size_t cap,
                       rb_error *err) {
    *H = NULL;
    if (n < 1) return rb_error_set(err, RB_EINVAL, "Hadamard order %ld: must be ≥ 1", n);
    rb_had_plan_make(n, plan);
    if (n > 2 && n % 4)
        return rb_error_set(err, RB_ENOTFOUND,
                            "no Hadamard matrix of order %ld exists (orders above 2 are multiples of 4): set "
                            "hadamard.fallback: random_orthogonal",
                            n);
    int rc = 0;
    if (plan->kind != RB_HAD_TABLE && plan->kind != RB_HAD_NONE) {
        rc = build_factor(plan, H, source, cap, err);
        if (rc) return rc;
    } else {
        long odd = n;
        int v = 0;
        while (odd % 2 == 0) {
            odd /= 2;
            v++;
        }
        char path[4096];
        int found = 0;
        for (int i = 0; i <= v && !found; i++) {
            long m = odd << i;
            if (m % 4 || !rb_hadamard_find_table(m, data_dir, path, sizeof path)) continue;
            found = 1;
            plan->kind = RB_HAD_TABLE;
            plan->m = m;
            plan->k = v - i;
        }
        if (!found) {
            char why[512], files[512];
            explain(n, why, sizeof why, files, sizeof files);
            return rb_error_set(err, RB_ENOTFOUND,
                                "no Hadamard matrix of order %ld can be constructed %s: put %s in $RB_HADAMARD_DIR "
                                "or data/hadamard/, or set hadamard.fallback: random_orthogonal",
                                n, why, files);
        }
        *H = malloc((size_t)plan->m * (size_t)plan->m);
        if (!*H) return rb_error_set(err, RB_ENOMEM, "Hadamard %ld: out of memory", plan->m);
        rc = rb_hadamard_load(path, plan->m, *H, err);
        if (rc) {
            free(*H);
            *H = NULL;
            return rc;
        }
        snprintf(source, cap, "table %s", path);
        return 0; /* checked by rb_hadamard_load */
    }
    long bi, bj, d;
    if (*H && !rb_hadamard_check(*H, plan->m, &bi, &bj, &d)) {
        free(*H);
        *H = NULL;
        return rb_error_set(err, RB_EINVAL,
                            "internal: %s matrix of order %ld fails H·Hᵀ = mI at rows %ld, %ld (dot %ld)", source,
                            plan->m, bi, bj, d);
    }
    return 0;
}

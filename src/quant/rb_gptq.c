#include "rb_gptq.h"

#include <lapacke.h>
#include <string.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_signal.h"

/* Rows of (W − Q) handled per dsymm in rb_quant_hessian_error: bounds its two double scratch
 * blocks to 2·128·cols doubles (11 MB at cols = 11008) while keeping the product BLAS-3 sized. */
#define HERR_ROWS 128

/* ---- BLAS threading ------------------------------------------------------------------------------
 * rb_sgemm drops OpenBLAS to one thread for small products and leaves it there; the big ssyrk-like,
 * LAPACK and dsymm calls made directly here must run on all threads, and must leave the count as
 * they found it so that rb_blas.c's cached value stays true. */
static int blas_threads_all(void) {
    int prev = openblas_get_num_threads(), want = rb_blas_threads();
    if (want != prev) openblas_set_num_threads(want);
    return prev;
}

static void blas_threads_restore(int prev) {
    if (openblas_get_num_threads() != prev) openblas_set_num_threads(prev);
}

/* ---- Hessian accumulation ---------------------------------------------------------------------- */

int rb_hessian_init(rb_hessian *h, int n, rb_error *err) {
    memset(h, 0, sizeof *h);
    if (n <= 0) return rb_error_set(err, RB_EINVAL, "hessian: %d inputs", n);
    h->n = n;
    h->h = rb_calloc((size_t)n * n, sizeof(double));
    h->scratch = rb_alloc((size_t)RB_HESSIAN_BLOCK * n * sizeof(float));
    if (!h->h || !h->scratch) {
        rb_hessian_free(h);
        return rb_error_set(err, RB_ENOMEM, "hessian: %d x %d doubles", n, n);
    }
    return 0;
}

void rb_hessian_free(rb_hessian *h) {
    rb_free(h->h);
    rb_free(h->scratch);
    h->h = NULL;
    h->scratch = NULL;
}

/* Design: the batch product XᵀX is formed in fp32 by sgemm (2× the fp64 rate; this product is the
 * dominant cost of GPTQ calibration) and folded into a double H. Per batch its entries carry a
 * relative error of about √ntok·2⁻²⁴ (~3e-6 at 2048 tokens), far below the 1 % damping that sets
 * H's conditioning in GPTQ, while the running average over 128+ batches is kept in double so that
 * repeated rescaling does not accumulate fp32 drift (GPTQ itself keeps H in fp32 throughout).
 * Only the upper triangle is formed, as a blocked syrk: for each block of RB_HESSIAN_BLOCK rows
 * [b0, b1) one sgemm X[:, b0:b1]ᵀ·X[:, b0:n] — 0.5–0.56 of a full product's flops, through
 * rb_sgemm so the thread count follows its policy, with an fp32 scratch of BLOCK·n floats instead
 * of n·n (485 MB at n = 11008). */
void rb_hessian_add(rb_hessian *h, const float *x, int ntok) {
    RB_ASSERT(h->h && ntok >= 0);
    if (ntok == 0) return;
    int n = h->n;
    double keep = (double)h->nsamples / (double)(h->nsamples + ntok);
    h->nsamples += ntok;
    double a = 2.0 / (double)h->nsamples;
    for (int b0 = 0; b0 < n; b0 += RB_HESSIAN_BLOCK) {
        int nb = n - b0 < RB_HESSIAN_BLOCK ? n - b0 : RB_HESSIAN_BLOCK, w = n - b0;
        rb_sgemm(1, 0, nb, w, ntok, 1.0f, x + b0, n, x + b0, n, 0.0f, h->scratch, w);
        for (int i = 0; i < nb; i++) {
            double *hr = h->h + (size_t)(b0 + i) * n;
            const float *sr = h->scratch + (size_t)i * w;
            for (int j = b0 + i; j < n; j++) hr[j] = hr[j] * keep + a * (double)sr[j - b0];
        }
    }
}

void rb_hessian_symmetrize(double *h, int n) {
    /* tiles keep both the rows read and the columns written in cache */
    enum { T = 64 };
    for (int i0 = 0; i0 < n; i0 += T)
        for (int j0 = i0; j0 < n; j0 += T)
            for (int i = i0; i < i0 + T && i < n; i++)
                for (int j = j0 > i ? j0 : i + 1; j < j0 + T && j < n; j++) h[(size_t)j * n + i] = h[(size_t)i * n + j];
}

/* ---- GPTQ ------------------------------------------------------------------------------------------ */

rb_gptq_opts rb_gptq_opts_default(void) {
    rb_gptq_opts o = {.percdamp = 0.01, .act_order = 0, .blocksize = 128, .static_groups = 0, .name = NULL};
    return o;
}

/* perm[] = columns sorted by descending d[], ties by ascending index (a stable order; torch's
 * argsort leaves ties unspecified). Bottom-up merge sort, O(n log n). */
static void sort_desc(const double *d, int *perm, int *tmp, int n) {
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int width = 1; width < n; width *= 2) {
        for (int lo = 0; lo < n; lo += 2 * width) {
            int mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            int a = lo, b = mid, k = lo;
            while (a < mid && b < hi) tmp[k++] = d[perm[b]] > d[perm[a]] ? perm[b++] : perm[a++];
            while (a < mid) tmp[k++] = perm[a++];
            while (b < hi) tmp[k++] = perm[b++];
        }
        memcpy(perm, tmp, (size_t)n * sizeof *perm);
    }
}

/* Everything one GPTQ run allocates; freed together. */
typedef struct gptq_work {
    double *hw;    /* [cols][cols] damped (permuted) H, then its factors; finally reused as fp32 U */
    double *diag;  /* [cols] diag H with dead columns set to 1 */
    int *perm;     /* [cols] processing order → original column (act-order), else NULL */
    int *tmp;      /* [cols] sort scratch */
    float *wp;     /* [rows][cols] permuted working W (act-order), else the caller's w */
    float *scale;  /* [rows] per-row or current-group, or [groups][rows] static-group parameters */
    float *zero;   /* same shape as scale */
    float *err1;   /* [rows][blocksize] scaled errors (w − q)/d of the current block */
    float *rowbuf; /* [2][blocksize] one row's running block values and its quantized values */
} gptq_work;

static void work_free(gptq_work *k, const float *w) {
    rb_free(k->hw);
    rb_free(k->diag);
    rb_free(k->perm);
    rb_free(k->tmp);
    if (k->wp != w) rb_free(k->wp);
    rb_free(k->scale);
    rb_free(k->zero);
    rb_free(k->err1);
    rb_free(k->rowbuf);
}

/* Upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU), the matrix GPTQ gets from chol(H),
 * cholesky_inverse, chol(·, upper), by one Cholesky and one triangular inverse (2n³/3 flops
 * instead of 4n³/3, and H⁻¹ is never formed): with J the order reversal and H̃ = JHJ = L̃L̃ᵀ,
 * H = (JL̃J)(JL̃J)ᵀ with JL̃J upper, so H⁻¹ = UᵀU for the upper U = (JL̃J)⁻¹ = J L̃⁻¹ J, whose
 * diagonal is positive like GPTQ's factor; the upper Cholesky factor being unique, it is the same.
 * On entry the row-major lower triangle of a[n][n] holds H̃ (the upper is zero); a row-major
 * lower triangle is LAPACK's column-major upper one, so the calls use 'U' with no transposition.
 * Reversing the whole array (a[k] ↔ a[n²−1−k], i.e. a[i][j] ↔ a[n−1−i][n−1−j]) then turns L̃⁻¹
 * into U in the row-major upper triangle. Returns the failing step (1 dpotrf, 2 dtrtri) or 0. */
static int chol_inverse_upper(double *a, int n, int *info) {
    int prev = blas_threads_all();
    int step = 0;
    if ((*info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', n, a, n)) != 0) step = 1;
    else if ((*info = LAPACKE_dtrtri(LAPACK_COL_MAJOR, 'U', 'N', n, a, n)) != 0) step = 2;
    blas_threads_restore(prev);
    if (!step)
        for (size_t k = 0, m = (size_t)n * n; k < m / 2; k++) {
            double t = a[k];
            a[k] = a[m - 1 - k];
            a[m - 1 - k] = t;
        }
    return step;
}

/* Converts the upper triangle of the double matrix a[n][n] into an fp32 upper-triangular matrix
 * (zeros below) occupying the first half of the same buffer. Float row i overlaps only double
 * row ⌊i/2⌋, already consumed; each row goes through a scratch row and memcpy so no
 * float store can be reordered before a double load it overlaps. */
static float *to_float_upper_inplace(double *a, int n, float *row) {
    float *f = (float *)(void *)a;
    for (int i = 0; i < n; i++) {
        const double *ar = a + (size_t)i * n;
        for (int j = 0; j < i; j++) row[j] = 0.0f;
        for (int j = i; j < n; j++) row[j] = (float)ar[j];
        memcpy(f + (size_t)i * n, row, (size_t)n * sizeof(float));
    }
    return f;
}

/* The parameters of the units for rb_qparams_out (the per-column ones of non-static groups were
 * written as each group started): per-row ones, static groups (original column order) and g_idx. */
static void record_params(const gptq_work *k, rb_qparams_out *po, int rows, int cols, int grouped, int static_groups,
                          int g, int ngroups) {
    if (!grouped) {
        memcpy(po->scale, k->scale, (size_t)rows * sizeof(float));
        memcpy(po->zero, k->zero, (size_t)rows * sizeof(float));
        return;
    }
    if (static_groups)
        for (int gi = 0; gi < ngroups; gi++)
            for (int r = 0; r < rows; r++) {
                po->scale[(size_t)r * ngroups + gi] = k->scale[(size_t)gi * rows + r];
                po->zero[(size_t)r * ngroups + gi] = k->zero[(size_t)gi * rows + r];
            }
    /* static groups are in original column order; dynamic ones in processing order (GPTQ's g_idx) */
    for (int j = 0; j < cols; j++) {
        int col = k->perm ? k->perm[j] : j;
        po->g_idx[col] = (static_groups ? col : j) / g;
    }
}

int rb_gptq_quantize(const rb_qspec *spec, float *w, int rows, int cols, const double *h, const rb_gptq_opts *opts,
                     rb_gptq_stats *stats, rb_error *err) {
    rb_gptq_opts o = opts ? *opts : rb_gptq_opts_default();
    const char *name = o.name ? o.name : "weight";
    rb_gptq_stats st = {0};
    if (stats) *stats = st;
    int rc = rb_qspec_check(spec, err);
    if (rc) return rb_error_prefix(err, "gptq %s", name);
    if (rows <= 0 || cols <= 0) return rb_error_set(err, RB_EINVAL, "gptq %s: empty matrix %d x %d", name, rows, cols);
    if (spec->gran == RB_QGRAN_HEAD)
        return rb_error_set(err, RB_EINVAL, "gptq %s: head granularity is for activations; use group", name);
    if (o.blocksize <= 0 || !(o.percdamp >= 0.0))
        return rb_error_set(err, RB_EINVAL, "gptq %s: blocksize %d / percdamp %g invalid", name, o.blocksize,
                            o.percdamp);
    if (spec->bits == RB_QBITS_OFF) return 0;

    double t0 = rb_now();
    const int grouped = spec->gran == RB_QGRAN_GROUP, g = spec->group;
    const int ngroups = grouped ? (cols + g - 1) / g : 1;
    const int bs = o.blocksize < cols ? o.blocksize : cols;
    const size_t n = (size_t)cols, nparams = (size_t)rows * (grouped && o.static_groups ? ngroups : 1);
    gptq_work k = {0};
    k.hw = rb_alloc(n * n * sizeof(double));
    k.diag = rb_alloc(n * sizeof(double));
    k.tmp = rb_alloc(n * sizeof(int));
    k.perm = o.act_order ? rb_alloc(n * sizeof(int)) : NULL;
    k.wp = o.act_order ? rb_alloc((size_t)rows * n * sizeof(float)) : w;
    k.scale = rb_alloc(nparams * sizeof(float));
    k.zero = rb_alloc(nparams * sizeof(float));
    k.err1 = rb_alloc((size_t)rows * bs * sizeof(float));
    k.rowbuf = rb_alloc((n > 2 * (size_t)bs ? n : 2 * (size_t)bs) * sizeof(float));
    if (!k.hw || !k.diag || !k.tmp || (o.act_order && !k.perm) || !k.wp || !k.scale || !k.zero || !k.err1 ||
        !k.rowbuf) {
        work_free(&k, w);
        return rb_error_set(err, RB_ENOMEM, "gptq %s: work buffers for %d x %d", name, rows, cols);
    }

    /* Per-row (or per-tensor) parameters from the untouched W, before dead columns are zeroed,
     * as GPTQ's find_params(W) runs first. */
    if (!grouped) {
        if (spec->gran == RB_QGRAN_TENSOR) {
            rb_qparams_unit(spec, w, (long)rows * cols, &k.scale[0], &k.zero[0], NULL);
            for (int r = 1; r < rows; r++) k.scale[r] = k.scale[0], k.zero[r] = k.zero[0];
        } else if ((rc = rb_qparams_find(spec, w, rows, cols, 0, k.scale, k.zero, err)) != 0) {
            work_free(&k, w);
            return rb_error_prefix(err, "gptq %s", name);
        }
    }

    /* Dead columns, act-order, damping. H is read from its upper triangle only. */
    double dsum = 0.0;
    for (size_t j = 0; j < n; j++) {
        double d = h[j * n + j];
        if (d == 0.0) d = 1.0, st.dead_cols++;
        k.diag[j] = d;
        dsum += d;
    }
    st.damp = o.percdamp * dsum / (double)cols;
    if (o.act_order) sort_desc(k.diag, k.perm, k.tmp, cols);
    /* H̃ = J·H[perm][perm]·J (processing order reversed, see chol_inverse_upper) into the lower
     * triangle, zeros above */
    for (size_t i = 0; i < n; i++) {
        size_t pi = k.perm ? (size_t)k.perm[n - 1 - i] : n - 1 - i;
        double *row = k.hw + i * n;
        for (size_t j = 0; j < i; j++) {
            size_t pj = k.perm ? (size_t)k.perm[n - 1 - j] : n - 1 - j;
            row[j] = pi <= pj ? h[pi * n + pj] : h[pj * n + pi];
        }
        row[i] = k.diag[pi] + st.damp;
        memset(row + i + 1, 0, (n - 1 - i) * sizeof *row);
    }
    st.t_params_s = rb_now() - t0;

    t0 = rb_now();
    int info, step = chol_inverse_upper(k.hw, cols, &info);
    st.t_chol_s = rb_now() - t0;
    if (step) {
        work_free(&k, w);
        return rb_error_set(err, RB_ENUMERIC,
                            "gptq %s: Hessian %d x %d not positive definite after damping %g (%s failed, info %d)",
                            name, cols, cols, st.damp, step == 2 ? "dtrtri" : "dpotrf", info);
    }
    float *u = to_float_upper_inplace(k.hw, cols, k.rowbuf); /* [cols][cols] upper, H⁻¹ = UᵀU */

    /* From here on nothing fails: W may be modified. */
    t0 = rb_now();
    for (size_t j = 0; j < n; j++)
        if (h[j * n + j] == 0.0)
            for (int r = 0; r < rows; r++) w[(size_t)r * n + j] = 0.0f;
    if (grouped && o.static_groups)
        for (int gi = 0; gi < ngroups; gi++) {
            int c0 = gi * g, len = c0 + g <= cols ? g : cols - c0;
            for (int r = 0; r < rows; r++)
                rb_qparams_unit(spec, w + (size_t)r * n + c0, len, &k.scale[(size_t)gi * rows + r],
                                &k.zero[(size_t)gi * rows + r], NULL);
        }
    if (o.act_order)
        for (int r = 0; r < rows; r++)
            for (size_t j = 0; j < n; j++) k.wp[(size_t)r * n + j] = w[(size_t)r * n + k.perm[j]];
    st.t_params_s += rb_now() - t0;

    const int maxq = rb_qspec_maxq(spec), sym = spec->sym;
    double loss = 0.0;
    float *buf = k.rowbuf, *qb = k.rowbuf + bs;
    for (int i1 = 0; i1 < cols; i1 += bs) {
        const int i2 = i1 + bs < cols ? i1 + bs : cols, count = i2 - i1;
        /* one block of a 70B down_proj (28672 columns) takes seconds: honour SIGINT/SIGTERM here, not
         * only between linears (issue 16). W is left part quantized; the caller discards it. */
        if (rb_interrupted()) {
            work_free(&k, w);
            return rb_error_set(err, RB_EINTERRUPTED, "gptq %s: interrupted at column %d of %d", name, i1, cols);
        }
        t0 = rb_now();
        /* Rows are independent inside a block: each runs GPTQ's column loop on its own copy of
         * the block (W1 in GPTQ), against the block's 128×128 triangle of U that stays in cache. */
        for (int r = 0; r < rows; r++) {
            float *wr = k.wp + (size_t)r * n, *er = k.err1 + (size_t)r * count;
            /* current parameters of this row: fixed (per-channel/tensor) or those of the group
             * in progress, which may have started in an earlier block */
            float s = k.scale[r], z = k.zero[r];
            memcpy(buf, wr + i1, (size_t)count * sizeof(float));
            for (int i = 0; i < count; i++) {
                const int col = i1 + i;
                if (grouped && o.static_groups) {
                    size_t gi = (size_t)(k.perm ? k.perm[col] : col) / (size_t)g;
                    s = k.scale[gi * rows + r], z = k.zero[gi * rows + r];
                } else if (grouped && col % g == 0) {
                    /* GPTQ reads W[:, col:col+g] of the outer W: trailing updates of earlier
                     * blocks applied, this block's own column updates not. */
                    rb_qparams_unit(spec, wr + col, col + g <= cols ? g : cols - col, &s, &z, NULL);
                    k.scale[r] = s, k.zero[r] = z;
                    if (o.params) {
                        o.params->scale[(size_t)r * ngroups + col / g] = s;
                        o.params->zero[(size_t)r * ngroups + col / g] = z;
                    }
                }
                const float *ur = u + (size_t)col * n + i1; /* U[col][i1..i2) */
                float x = buf[i], q = rb_quant_value(x, s, z, maxq, sym), e = (x - q) / ur[i];
                loss += (double)e * (double)e;
                for (int j = i + 1; j < count; j++) buf[j] -= e * ur[j];
                er[i] = e;
                qb[i] = q;
            }
            memcpy(wr + i1, qb, (size_t)count * sizeof(float));
        }
        st.t_quant_s += rb_now() - t0;
        if (i2 < cols) {
            t0 = rb_now();
            /* W[:, i2:] −= Err1 · U[i1:i2, i2:] */
            rb_sgemm(0, 0, rows, cols - i2, count, -1.0f, k.err1, count, u + (size_t)i1 * n + i2, cols, 1.0f,
                     k.wp + i2, cols);
            st.t_update_s += rb_now() - t0;
            st.update_flop += 2.0 * rows * (double)(cols - i2) * count;
        }
    }
    if (o.act_order)
        for (int r = 0; r < rows; r++)
            for (size_t j = 0; j < n; j++) w[(size_t)r * n + k.perm[j]] = k.wp[(size_t)r * n + j];
    st.loss = loss / 2.0;
    if (o.params) record_params(&k, o.params, rows, cols, grouped, o.static_groups, g, ngroups);
    work_free(&k, w);
    if (stats) *stats = st;
    return 0;
}

/* ---- reconstruction loss ------------------------------------------------------------------------- */

int rb_quant_hessian_error(const float *w, const float *q, const double *h, int rows, int cols, double *out,
                           rb_error *err) {
    RB_ASSERT(rows > 0 && cols > 0);
    size_t n = (size_t)cols;
    int rc_rows = rows < HERR_ROWS ? rows : HERR_ROWS;
    double *d = rb_alloc((size_t)rc_rows * n * sizeof(double));
    double *dh = rb_alloc((size_t)rc_rows * n * sizeof(double));
    if (!d || !dh) {
        rb_free(d);
        rb_free(dh);
        return rb_error_set(err, RB_ENOMEM, "hessian error: %d x %d doubles", rc_rows, cols);
    }
    double total = 0.0;
    int prev = blas_threads_all();
    for (int r0 = 0; r0 < rows; r0 += rc_rows) {
        int m = rows - r0 < rc_rows ? rows - r0 : rc_rows;
        for (size_t i = 0; i < (size_t)m * n; i++)
            d[i] = (double)w[(size_t)r0 * n + i] - (double)q[(size_t)r0 * n + i];
        /* DH = D·H with H symmetric, upper triangle read */
        cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, m, cols, 1.0, h, cols, d, cols, 0.0, dh, cols);
        double acc[4] = {0};
        size_t i = 0, len = (size_t)m * n;
        for (; i + 4 <= len; i += 4)
            for (int l = 0; l < 4; l++) acc[l] += d[i + l] * dh[i + l];
        for (; i < len; i++) acc[0] += d[i] * dh[i];
        total += acc[0] + acc[1] + acc[2] + acc[3];
    }
    blas_threads_restore(prev);
    rb_free(d);
    rb_free(dh);
    *out = total;
    return 0;
}

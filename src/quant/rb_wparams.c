/* rb_wparams: the integer grid of a quantized linear (contract in rb_wstore.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"
#include "quant/rb_wstore.h"

int rb_wparams_alloc(rb_wparams *p, const rb_qspec *spec, int rows, int cols, rb_error *err) {
    RB_ASSERT(p && spec && rows > 0 && cols > 0);
    memset(p, 0, sizeof *p);
    int grouped = spec->gran == RB_QGRAN_GROUP;
    p->rows = rows;
    p->cols = cols;
    p->n_units = grouped ? (cols + spec->group - 1) / spec->group : 1;
    size_t nu = (size_t)rows * (size_t)p->n_units;
    p->scale = rb_alloc(nu * sizeof(float));
    p->zero = rb_alloc(nu * sizeof(float));
    p->g_idx = grouped ? rb_alloc((size_t)cols * sizeof(int32_t)) : NULL;
    if (!p->scale || !p->zero || (grouped && !p->g_idx)) {
        rb_wparams_free(p);
        return rb_error_set(err, RB_ENOMEM, "quantizer parameters of a %d x %d linear: out of memory", rows, cols);
    }
    return 0;
}

void rb_wparams_free(rb_wparams *p) {
    if (!p) return;
    rb_free(p->scale);
    rb_free(p->zero);
    rb_free(p->g_idx);
    memset(p, 0, sizeof *p);
}

/* Every weight on its unit's grid (v = s·k, k an integer within 2^bits of the zero, reproduced bit for
 * bit); with q/zu the unsigned codes, which needs zeros that are integers of [0, 2^bits). */
static int grid(const rb_qspec *spec, const rb_wparams *p, const float *w, int codes, uint8_t *q, uint8_t *zu,
                rb_error *err) {
    if (spec->bits >= RB_QBITS_OFF || spec->bits < 2 || spec->bits > 8)
        return rb_error_set(err, RB_EINVAL, "integer codes: %d-bit weights are not integers of at most 8 bits",
                            spec->bits);
    const int levels = 1 << spec->bits, off = spec->sym ? levels / 2 : 0;
    for (size_t u = 0; u < (size_t)p->rows * (size_t)p->n_units; u++) {
        float z = p->zero[u], s = p->scale[u];
        if (!(s > 0.0f) || !isfinite(s) || !isfinite(z) || z != floorf(z))
            return rb_error_set(err, RB_EFORMAT, "integer codes: unit %zu has scale %g, zero %g", u, (double)s,
                                (double)z);
        /* sym grids have zero 0 (stored as 2^(bits−1)); asym zeros must be unsigned integers of the range
         * (RUQuant's raw_minmax range clamps zeros to ±1e4 instead) */
        if (codes && (spec->sym ? z != 0.0f : !(z >= 0.0f && z < (float)levels)))
            return rb_error_set(err, RB_EINVAL,
                                "integer codes: unit %zu has zero %g, not an integer of [0, %d): not representable "
                                "as unsigned %d-bit integers",
                                u, (double)z, levels, spec->bits);
        if (zu) zu[u] = (uint8_t)(spec->sym ? off : (int)z);
    }
    for (int r = 0; r < p->rows; r++)
        for (int c = 0; c < p->cols; c++) {
            int u = p->g_idx ? p->g_idx[c] : 0;
            if (u < 0 || u >= p->n_units)
                return rb_error_set(err, RB_EFORMAT, "integer codes: g_idx[%d] = %d outside [0, %d)", c, u, p->n_units);
            size_t ui = (size_t)r * p->n_units + (size_t)u;
            float s = p->scale[ui], z = p->zero[ui], v = w[(size_t)r * p->cols + c];
            /* the level rb_quant_value produced: v = s·(q − z) with q − z an integer of the range, so
             * v/s is within an ulp-sized error of it and rounding recovers it exactly */
            float k = rb_round_even(v / s);
            float qf = k + z + (float)off;
            if (!(qf >= 0.0f && qf < (float)levels) || s * ((k + z) - z) != v)
                return rb_error_set(err, RB_EFORMAT,
                                    "integer codes: weight [%d][%d] = %.9g is not on the grid of its unit (scale %.9g, "
                                    "zero %g)",
                                    r, c, (double)v, (double)s, (double)z);
            if (q) q[(size_t)r * p->cols + c] = (uint8_t)qf;
        }
    return 0;
}

int rb_wparams_check(const rb_qspec *spec, const rb_wparams *p, const float *w, rb_error *err) {
    RB_ASSERT(spec && p && w);
    return grid(spec, p, w, 0, NULL, NULL, err);
}

int rb_wparams_codes(const rb_qspec *spec, const rb_wparams *p, const float *w, uint8_t *q, uint8_t *zu,
                     rb_error *err) {
    RB_ASSERT(spec && p && w);
    return grid(spec, p, w, 1, q, zu, err);
}

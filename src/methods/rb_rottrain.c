#include "methods/rb_rottrain.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_log.h"
#include "core/rb_rng.h"
#include "core/rb_signal.h"
#include "rotate/rb_orth.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

int rb_rottrain_read(const rb_method_ctx *ctx, const rb_method *m, rb_rottrain_cfg *o, rb_error *err) {
    memset(o, 0, sizeof *o);
    rb_rottrain_opts *r = &o->run;
    r->method = m->name;
    int rc;
    if ((rc = rb_method_opt_int(ctx, m, "steps", 0, 10000000, &r->steps, err)) ||
        (rc = rb_method_opt_real(ctx, m, "lr", 1e-12, 1e12, &r->lr, err)) ||
        (rc = rb_method_opt_int(ctx, m, "windows", 1, 1 << 20, &r->windows, err)) ||
        (rc = rb_method_opt_int(ctx, m, "seqlen", 0, 1 << 24, &o->seqlen, err)) ||
        (rc = rb_method_opt_int(ctx, m, "eval_windows", 0, 1 << 20, &r->eval_windows, err)) ||
        (rc = rb_method_opt_enum(ctx, m, "schedule", &r->schedule, err)) ||
        (rc = rb_method_opt_real(ctx, m, "momentum", 0.0, 0.999999, &r->momentum, err)) ||
        (rc = rb_method_opt_enum(ctx, m, "train_quant", &o->train_quant, err)) ||
        (rc = rb_method_opt_enum(ctx, m, "ste", &o->ste, err)) || (rc = rb_method_opt_enum(ctx, m, "init", &o->init, err)))
        return rc;
    if (!ctx->calib || ctx->calib_n < 1)
        return rb_error_set(err, RB_EINVAL,
                            "%s: training needs calibration windows (data.calib in a config, --calib with rotbench ppl)",
                            m->name);
    if (ctx->calib_T < 2) return rb_error_set(err, RB_EINVAL, "%s: calibration windows of %d tokens", m->name, ctx->calib_T);
    if (o->seqlen == 1 || o->seqlen > ctx->calib_T)
        return rb_error_set(err, RB_EINVAL, "rotation.options.seqlen: %d, expected 0 or 2..%d (the calibration window)",
                            o->seqlen, ctx->calib_T);
    if (o->seqlen == 0) o->seqlen = ctx->calib_T;
    if (r->eval_windows > ctx->calib_n) r->eval_windows = ctx->calib_n;
    int quant = ctx->quant && rb_quant_cfg_active(ctx->quant);
    o->wmode = "none";
    if (quant) {
        o->tq = *ctx->quant;
        int w16 = o->train_quant == 2 || (o->train_quant == 0 && ctx->quant->w_algo == RB_WALGO_GPTQ);
        if (w16) o->tq.w.bits = RB_QBITS_OFF;
        o->wmode = o->tq.w.bits >= RB_QBITS_OFF ? "16-bit" : "RTN + STE";
    } else {
        rb_warn("%s: no quantization configured: the FP loss does not depend on the rotations, which stay at their "
                "initialization",
                m->name);
    }
    o->ro = (rb_rotgrad_opts){.quant = quant ? &o->tq : NULL, .clipped_ste = o->ste == 1};
    return 0;
}

void rb_rottrain_windows(const rb_method_ctx *ctx, long w0, int n, int seqlen, int32_t *ids) {
    RB_ASSERT(seqlen <= ctx->calib_T && ctx->calib_n > 0);
    for (int i = 0; i < n; i++) {
        long w = (w0 + i) % ctx->calib_n;
        memcpy(ids + (size_t)i * seqlen, ctx->calib + (size_t)w * ctx->calib_T, sizeof(int32_t) * seqlen);
    }
}

/* Optimizer scratch per distinct order, momentum buffers per parameter (β > 0). */
typedef struct rt_state {
    int n_orders;
    int orders[8];
    rb_cayley_sgd cs[8];
    double **V;     /* [n_params] (β > 0) */
    double *E, *T;  /* [max n]² re-orthonormalization scratch */
} rt_state;

static void rt_free(rt_state *s, int n_params) {
    for (int i = 0; i < s->n_orders; i++) {
        if (s->V) s->cs[i].V = NULL; /* borrowed per parameter */
        rb_cayley_sgd_free(&s->cs[i]);
    }
    for (int i = 0; s->V && i < n_params; i++) free(s->V[i]);
    free(s->V);
    free(s->E);
    free(s->T);
}

static int rt_init(rt_state *s, const rb_rottrain *t, double momentum, rb_error *err) {
    memset(s, 0, sizeof *s);
    int mx = 1, rc = 0;
    for (int i = 0; i < t->n_params && !rc; i++) {
        int n = t->order[i], k = 0;
        mx = n > mx ? n : mx;
        while (k < s->n_orders && s->orders[k] != n) k++;
        if (k < s->n_orders) continue;
        RB_ASSERT(s->n_orders < 8);
        s->orders[s->n_orders] = n;
        rc = rb_cayley_sgd_init(&s->cs[s->n_orders++], n, momentum, err);
    }
    if (rc) return rc;
    s->E = malloc(sizeof(double) * (size_t)mx * mx);
    s->T = malloc(sizeof(double) * (size_t)mx * mx);
    if (!s->E || !s->T) return rb_error_set(err, RB_ENOMEM, "Cayley SGD: out of memory");
    if (momentum > 0) {
        if (!(s->V = calloc((size_t)t->n_params, sizeof *s->V))) return rb_error_set(err, RB_ENOMEM, "out of memory");
        for (int k = 0; k < s->n_orders; k++) free(s->cs[k].V), s->cs[k].V = NULL;
        for (int i = 0; i < t->n_params; i++)
            if (!(s->V[i] = calloc((size_t)t->order[i] * t->order[i], sizeof(double))))
                return rb_error_set(err, RB_ENOMEM, "Cayley SGD: out of memory for the momentum buffers");
    }
    return 0;
}

static rb_cayley_sgd *rt_opt(rt_state *s, const rb_rottrain *t, int i) {
    int k = 0;
    while (s->orders[k] != t->order[i]) k++;
    if (s->V) s->cs[k].V = s->V[i];
    return &s->cs[k];
}

/* Mean loss over the first eval_windows calibration windows, in chunks of `windows`. */
static int eval_loss(const rb_rottrain *t, const rb_rottrain_opts *o, double *loss, rb_error *err) {
    double sum = 0, l;
    for (int w0 = 0; w0 < o->eval_windows; w0 += o->windows) {
        int n = o->eval_windows - w0 < o->windows ? o->eval_windows - w0 : o->windows;
        int rc = t->eval(t->ctx, w0, n, &l, err);
        if (rc) return rc;
        sum += l * n;
    }
    *loss = sum / o->eval_windows;
    return 0;
}

static double fro2(const double *a, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * a[i];
    return s;
}

int rb_rottrain_run(const rb_rottrain *t, const rb_rottrain_opts *o, rb_trace *trace, uint64_t seed, rb_error *err) {
    rt_state s;
    int rc = rt_init(&s, t, o->momentum, err);
    rb_trace_table *tab = NULL, *ev = NULL;
    char name[96];
    double e0 = NAN, e1 = NAN, loss = NAN, loss0 = NAN;
    int n0 = 0, n1 = 0;
    for (int i = 0; i < t->n_params; i++) {
        if (t->group[i]) n1++;
        else n0++;
    }
    if (!rc) rc = rb_trace_table_new(trace, o->method, "step,loss,lr,alpha,alpha_r2,orth_drift,orth_err,grad_r1,grad_r2,seconds",
                                     &tab, err);
    if (!rc && o->eval_windows > 0) {
        snprintf(name, sizeof name, "%s_eval", o->method);
        if (!(rc = rb_trace_table_new(trace, name, "step,loss,windows", &ev, err)) &&
            !(rc = eval_loss(t, o, &e0, err))) {
            double row[] = {0, e0, o->eval_windows};
            rc = rb_trace_row(ev, row, err);
        }
    }
    rb_rng rng;
    snprintf(name, sizeof name, "rotation.%s.cayley", o->method);
    rb_rng_seed(&rng, seed, name);
    double t0 = rb_now();
    int every = o->steps >= 10 ? o->steps / 10 : 1;
    for (int it = 0; it <= o->steps && !rc; it++) {
        int last = it == o->steps;
        if ((rc = t->eval(t->ctx, last ? 0 : (long)it * o->windows, o->windows, &loss, err))) break;
        if (!isfinite(loss)) {
            rc = rb_error_set(err, RB_ENUMERIC, "%s: loss became %g at step %d (lower rotation.options.lr)", o->method,
                              loss, it);
            break;
        }
        if (it == 0) loss0 = loss;
        double lr = o->schedule == 0 ? 0.5 * o->lr * (1.0 + cos(M_PI * it / (o->steps > 0 ? o->steps : 1))) : o->lr;
        double st[4] = {0, 0, 0, 0}, g2[2] = {0, 0};
        for (int i = 0; i < t->n_params; i++) g2[t->group[i] != 0] += fro2(t->G[i], (size_t)t->order[i] * t->order[i]);
        for (int i = 0; i < t->n_params && !last && !rc; i++) {
            double drift, after;
            rb_cayley_sgd *cs = rt_opt(&s, t, i);
            if ((rc = rb_cayley_sgd_step(cs, t->P[i], t->G[i], lr, &rng, err)) ||
                (rc = rb_orth_restore(t->P[i], t->order[i], s.E, s.T, &drift, &after, err))) {
                char pn[64];
                t->name(t->ctx, i, pn, sizeof pn);
                rc = rb_error_prefix(err, "%s: %s", o->method, pn);
                break;
            }
            int g = t->group[i] != 0;
            st[g] += cs->last_alpha / (g ? n1 : n0);
            st[2] = fmax(st[2], drift), st[3] = fmax(st[3], after);
        }
        if (rc) break;
        double row[] = {it, loss, last ? 0 : lr, st[0], st[1], st[2], st[3], sqrt(g2[0]), sqrt(g2[1]), rb_now() - t0};
        if ((rc = rb_trace_row(tab, row, err))) break;
        if (last)
            rb_info("%s: result on step 0's windows: loss %.6g (initialization %.6g, %.4f of it), %.1f s", o->method, loss,
                    loss0, loss / loss0, rb_now() - t0);
        else if (it % every == 0)
            rb_info("%s: step %d/%d loss %.6g lr %.3g alpha %.3g |grad| %.3g, %.1f s", o->method, it, o->steps, loss, lr,
                    st[0], sqrt(g2[0]), rb_now() - t0);
        if (rb_interrupted())
            rc = rb_error_set(err, RB_EINTERRUPTED, "%s: interrupted at step %d of %d", o->method, it, o->steps);
    }
    if (!rc && o->eval_windows > 0 && !(rc = eval_loss(t, o, &e1, err))) {
        double row[] = {o->steps, e1, o->eval_windows};
        rc = rb_trace_row(ev, row, err);
        rb_info("%s: training objective on the first %d calibration windows: %.6g at the initialization, %.6g for the "
                "result (%.4f of it)",
                o->method, o->eval_windows, e0, e1, e1 / e0);
    }
    rt_free(&s, t->n_params);
    return rc;
}

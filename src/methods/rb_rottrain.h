/* rb_rottrain: Cayley SGD over a list of orthogonal parameters on the quantized model's training
 * loss — SpinQuant's training loop (METHODS §3), shared by spinquant and respinquant.
 *
 * Each step: the loss and every parameter's Euclidean gradient at the current iterate (the caller's
 * eval, on `windows` calibration windows taken in order, wrapping), then one Cayley step per
 * parameter (rb_cayley_sgd_step) with this step's learning rate (cosine or constant schedule) and
 * Newton–Schulz re-orthonormalization (rb_orth_restore), so every iterate is orthogonal to 1e-12.
 * Parameters are stepped in list order, drawing the QR-retraction coin from one stream
 * "rotation.<method>.cayley" of the seed. Optimizer scratch is one set per matrix order, shared by
 * every parameter of that order; the momentum buffers (β > 0 only) are per parameter.
 *
 * Trace <method>, one row per step: step; loss (that step's windows at the iterate before its
 * update); lr; alpha, alpha_r2 (the Cayley step taken, min(lr, 1/‖W‖₁), mean over the parameters of
 * group 0 and of group 1); orth_drift (max over the parameters before re-orthonormalization),
 * orth_err (after); grad_r1, grad_r2 (Frobenius norm of the gradients of group 0, of group 1);
 * seconds since the start. Row `steps`: the result's loss on step 0's windows (compare row 0).
 * Trace <method>_eval (eval_windows > 0): rows step 0 and step `steps`, the mean loss over the first
 * eval_windows calibration windows at the initialization and at the result. */
#ifndef RB_ROTTRAIN_H
#define RB_ROTTRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_error.h"
#include "core/rb_trace.h"
#include "methods/rb_method.h"
#include "methods/rb_rotgrad.h"

typedef struct rb_rottrain_opts {
    const char *method; /* log prefix, trace table and RNG stream name */
    int steps, windows; /* Cayley steps; windows per step */
    int eval_windows;   /* 0: no eval table */
    int schedule;       /* 0: cosine lr/2·(1 + cos(π·t/steps)); 1: constant */
    double lr, momentum;
} rb_rottrain_opts;

typedef struct rb_rottrain {
    int n_params;
    double **P;       /* [n_params] of [n][n]: the parameters, updated in place (caller-owned) */
    double **G;       /* [n_params] of [n][n]: gradient buffers that eval fills (caller-owned) */
    const int *order; /* [n_params] n of each */
    const int *group; /* [n_params] 0 or 1 (trace columns) */
    /* Loss (mean cross-entropy) and every G at the current P on n windows from w0 (wrapping). */
    int (*eval)(void *ctx, long w0, int n, double *loss, rb_error *err);
    /* "R1", "R2 of layer 3": names parameter i in errors. */
    void (*name)(void *ctx, int i, char *buf, size_t cap);
    void *ctx;
} rb_rottrain;

/* The options every rotation trainer shares, read from a method's table (which must declare steps,
 * lr, windows, seqlen, eval_windows, schedule, momentum, train_quant, ste, init with the kinds
 * spinquant's table gives them), and the training quantization they imply. */
typedef struct rb_rottrain_cfg {
    rb_rottrain_opts run;   /* run.method = the method's name */
    int seqlen;             /* resolved: 2..calib_T */
    int train_quant, ste, init;
    rb_quant_cfg tq;        /* training quantization: the run's activations/KV; weights 16-bit under train_quant
                               w16 (or auto with GPTQ weights), RTN + STE otherwise */
    rb_rotgrad_opts ro;     /* points at tq (NULL quant: none configured) */
    const char *wmode;      /* "none", "16-bit", "RTN + STE" (logs) */
} rb_rottrain_cfg;

/* The option rows rb_rottrain_read reads, shared by the trainers' tables (init stays per method). */
#define RB_ROTTRAIN_OPTION_ROWS                                                                                  \
    {"steps", "int", "100", "Cayley SGD steps (SpinQuant: 100)"},                                              \
        {"lr", "real", "1.5",                                                                                  \
         "Cayley SGD learning rate (SpinQuant: 1.5); each step is alpha = min(lr_t, 1/||W||_1) per matrix"},   \
        {"windows", "int", "8",                                                                                \
         "calibration windows per step (SpinQuant: 8 GPUs x batch 1), taken in order, wrapping"},              \
        {"seqlen", "int", "0", "tokens per training window: the first seqlen of each calibration window (0: all)"}, \
        {"eval_windows", "int", "32",                                                                          \
         "the training objective on the first eval_windows calibration windows (all at seqlen) before training " \
         "and for the result, logged to trace <method>_eval (0: off); at most the calibration windows"},       \
        {"schedule", "cosine|constant", "cosine",                                                              \
         "learning rate over steps: lr/2*(1+cos(pi*t/steps)) (SpinQuant), or lr"},                              \
        {"momentum", "real", "0", "Cayley SGD momentum beta (SpinQuant: 0); buffers per matrix when > 0"},      \
        {"train_quant", "auto|rtn|w16", "auto",                                                                \
         "weights during training: rtn = the run's weight quantizer by RTN with a straight-through estimator; " \
         "w16 = 16-bit weights (SpinQuant's recipe before GPTQ); auto = w16 when the run's weights use GPTQ, " \
         "rtn otherwise. Activations and KV: the run's quantizers, straight-through"},                         \
        {"ste", "plain|clipped", "plain",                                                                      \
         "activation/KV straight-through estimator: plain (SpinQuant) or clipped (zero gradient where the "    \
         "quantizer clamped)"}

/* Fills o from ctx for method m. Errors: RB_EINVAL naming the option, or missing/short calibration
 * windows. Warns when no quantization is configured (the FP loss does not depend on the rotations). */
int rb_rottrain_read(const rb_method_ctx *ctx, const rb_method *m, rb_rottrain_cfg *o, rb_error *err);

/* ids[n][seqlen] ← the first seqlen tokens of calibration windows w0, w0+1, … of ctx (wrapping). */
void rb_rottrain_windows(const rb_method_ctx *ctx, long w0, int n, int seqlen, int32_t *ids);

/* Runs o->steps steps (interruptible between steps: RB_EINTERRUPTED) with traces into `trace` (may
 * be NULL). Errors: the eval's, RB_ENUMERIC (non-finite loss or rotation), RB_ENOMEM. */
int rb_rottrain_run(const rb_rottrain *t, const rb_rottrain_opts *o, rb_trace *trace, uint64_t seed, rb_error *err);

#endif

/* rb_wquant: weight quantization of a whole model, one unit of a run (DESIGN §1): every linear of
 * every layer quantized once, with RTN or GPTQ, into a weight store (rb_wstore.h) that every
 * evaluation of the run reads.
 *
 * GPTQ follows QuaRot's gptq_fwrd: layer by layer, the calibration windows' hidden states travel
 * through the already quantized layers with the online transforms of the rotation set active and
 * activations in full precision; within a layer the sequential groups {k,v,q}, {o}, {up,gate},
 * {down} each get their Hessian from inputs that went through the groups quantized before them.
 * Memory: the calibration hidden states, one layer of weights, one Hessian, forward scratch. */
#ifndef RB_WQUANT_H
#define RB_WQUANT_H

#include "model/rb_forward.h"
#include "quant/rb_qpreset.h"
#include "quant/rb_wstore.h"

typedef struct rb_wquant_opts {
    const rb_quant_cfg *q;   /* q->w (bits < 16), q->w_algo, q->gptq */
    const int32_t *calib;    /* [calib_n][calib_T] calibration windows (GPTQ) */
    int calib_n, calib_T;
    const rb_hooks *online;  /* online transforms at the sites (rotations), may be NULL */
    int h_err;               /* GPTQ: also measure tr((W−Q)H(W−Q)ᵀ) of GPTQ and of RTN on the same Hessian */
} rb_wquant_opts;

/* Quantizes every linear of src's layers and puts each layer into `store` (opened for writing;
 * the caller finishes it). *seconds (may be NULL) gets the wall time. Interruptible between layers
 * (RB_EINTERRUPTED). Errors: RB_EINVAL (GPTQ without calibration windows; a Hessian that is not
 * positive definite, naming the linear), the weights source's and the store's errors. */
int rb_wquant_run(const rb_weights_src *src, const rb_llama_config *c, const rb_wquant_opts *o, rb_wstore *store,
                  double *seconds, rb_error *err);

#endif

/* respinquant (METHODS §7): registered so that `rotbench methods`, configs and tables know it; not
 * implemented: it trains layer-wise rotations through the quantized network and needs the backward
 * engine (issues 11 and 12). rb_method_run refuses it with its status. */
#include "methods/rb_method.h"

static const rb_method_option opts[] = {{NULL, NULL, NULL, NULL}};

const rb_method rb_method_respinquant = {
    .name = "respinquant",
    .status = "not implemented (issue 12: the backward engine it trains through exists; the per-layer rotations, low-rank junction transforms and their hook sites do not)",
    .description = "ReSpinQuant: layer-wise rotations with low-rank residual-basis corrections",
    .options = opts};

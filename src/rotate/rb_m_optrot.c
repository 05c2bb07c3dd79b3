/* optrot: being implemented (issue 6). */
#include "rotate/rb_method.h"

static const rb_method_option opts[] = {{NULL, NULL, NULL, NULL}};

const rb_method rb_method_optrot = {"optrot", "not implemented (issue 6)", "OptRot / OptRot+: learned R1/R2 minimizing sum W^4 of the fused weights (Cayley SGD)", opts, NULL};

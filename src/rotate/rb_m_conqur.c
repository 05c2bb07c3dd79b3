/* conqur: being implemented (issue 6). */
#include "rotate/rb_method.h"

static const rb_method_option opts[] = {{NULL, NULL, NULL, NULL}};

const rb_method rb_method_conqur = {"conqur", "not implemented (issue 6)", "ConQuR: corner-aligned rotations by online orthogonal Procrustes", opts, NULL};

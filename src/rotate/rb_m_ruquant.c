/* ruquant: being implemented (issue 6). */
#include "rotate/rb_method.h"

static const rb_method_option opts[] = {{NULL, NULL, NULL, NULL}};

const rb_method rb_method_ruquant = {"ruquant", "not implemented (issue 6)", "RUQuant: blockwise Householder+Givens maps toward uniform targets, global Householder", opts, NULL};

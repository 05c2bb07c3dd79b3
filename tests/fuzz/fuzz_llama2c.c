/* Fuzz target: llama2.c legacy checkpoint (.bin) through rb_model_open + every rb_model_* loader. */
#include "fuzz_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_model_exercise(fz_write("in.bin", data, size));
    return 0;
}

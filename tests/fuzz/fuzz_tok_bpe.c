/* Fuzz target: byte-level-BPE tokenizer (`*.json`) through rb_tokenizer_load, then a short fixed string
 * encoded (with and without BOS) and every piece decoded. */
#include "fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_tok_exercise(fz_write("in.json", data, size));
    return 0;
}

/* Fuzz target: safetensors reader rb_st_open (header JSON, dtypes, shapes, offsets), then every
 * tensor is looked up by name and its bytes are touched. */
#include "fuzz_util.h"
#include "model/rb_safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write("in.bin", data, size);
    rb_st_file f;
    rb_error err;
    memset(&f, 0, sizeof f);
    if (fz_note("rb_st_open", rb_st_open(&f, path, &err), &err) == 0) {
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < f.n; i++) {
            const rb_st_tensor *t = &f.tensors[i];
            const rb_st_tensor *u = rb_st_find(&f, t->name);
            if (!u) abort(); /* every listed tensor must be found by its name */
            (void)rb_dtype_name(t->dtype);
            size_t nb = (size_t)(t->end - t->begin);
            if (t->data && nb) sink ^= t->data[0] ^ t->data[nb - 1];
        }
        (void)sink;
        rb_st_close(&f);
    }
    return 0;
}

/* Fuzz target: HDF5 rotation set file, rb_rotset_load (attrs, /r1, /r2/<layer>, /ruquant, layer-wise
 * bases; shapes and orthogonality checked). NOTE: the HDF5 library itself crashes and hangs on some
 * corrupt files (issue 16); see tests/fuzz/README.md before reading a crash here as rotbench's. */
#include "fuzz_h5.h"
#include "rotate/rb_rotset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write("in.h5", data, size);
    rb_rotset s;
    rb_error err;
    memset(&s, 0, sizeof s);
    if (fz_note("rb_rotset_load", rb_rotset_load(path, &s, &err), &err) == 0) {
        (void)rb_rotset_orth_err(&s);
        rb_rotset_free(&s);
    }
    fz_h5_check_closed("rb_rotset_load");
    return 0;
}

/* Fuzz target: HDF5 results file, rb_results_read_summary (what `rotbench status/index` read from every
 * run directory), then the layer table, the rotation set and the eval data of every corpus. NOTE: the
 * HDF5 library itself crashes and hangs on some corrupt files (issue 16); see tests/fuzz/README.md. */
#include "fuzz_h5.h"
#include "harness/rb_results.h"
#include "rotate/rb_rotset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write("in.h5", data, size);
    rb_run_summary *sum = calloc(1, sizeof *sum);
    rb_error err;
    if (sum && fz_note("rb_results_read_summary", rb_results_read_summary(path, sum, &err), &err) == 0) {
        rb_layer_row *rows = NULL;
        size_t n = 0;
        if (rb_results_read_layers(path, &rows, &n, &err) == 0) free(rows);
        rb_rotset s;
        memset(&s, 0, sizeof s);
        if (rb_results_read_rotset(path, &s, &err) == 0) rb_rotset_free(&s);
    }
    free(sum);
    fz_h5_check_closed("rb_results_read_*");
    return 0;
}

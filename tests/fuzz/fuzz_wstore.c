/* Fuzz target: HDF5 weight store, rb_wstore_open for a fixed small model config (the one the seeds were
 * written for) + rb_wstore_load_layer / rb_wstore_herr of every layer. NOTE: the HDF5 library itself
 * crashes and hangs on some corrupt files (issue 16); see tests/fuzz/README.md. */
#include "fuzz_h5.h"
#include "quant/rb_wstore.h"

/* Must match tests/fuzz/gen_seeds.c. */
static const rb_llama_config fz_cfg = {
    .dim = 8, .hidden_dim = 16, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .head_dim = 4, .vocab_size = 16,
    .max_seq_len = 64, .rms_eps = 1e-5, .rope_theta = 10000.0, .tied = 0, .bos_id = 1, .eos_id = 2, .dtype = "F32"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write("in.h5", data, size);
    rb_wstore *s = NULL;
    rb_error err;
    if (fz_note("rb_wstore_open", rb_wstore_open(path, &fz_cfg, NULL, &s, &err), &err) == 0) {
        rb_layer_weights w;
        memset(&w, 0, sizeof w);
        if (rb_layer_weights_init(&w, &fz_cfg, &err) == 0) {
            for (int l = 0; l < fz_cfg.n_layers; l++) {
                (void)fz_note("rb_wstore_load_layer", rb_wstore_load_layer(s, l, &w, &err), &err);
                for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
                    double he, hr;
                    (void)rb_wstore_herr(s, l, lin, &he, &hr, &err);
                }
            }
            rb_layer_weights_free(&w);
        }
        rb_wstore_close(s);
    }
    fz_h5_check_closed("rb_wstore_*");
    return 0;
}

/* Fuzz target: Hugging Face config.json reader rb_hf_config_load. */
#include "fuzz_util.h"
#include "model/rb_hf_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write("config.json", data, size);
    rb_llama_config c;
    rb_error err;
    memset(&c, 0, sizeof c);
    if (fz_note("rb_hf_config_load", rb_hf_config_load(path, &c, &err), &err) == 0) {
        /* a loaded config is consistent: the shapes the loaders allocate from it are well defined */
        if (c.dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.vocab_size <= 0 ||
            c.head_dim <= 0 || c.hidden_dim <= 0)
            abort();
        for (int lin = 0; lin < RB_LIN_COUNT; lin++) {
            int r, k;
            rb_layer_linear_shape(&c, lin, &r, &k);
        }
    }
    return 0;
}

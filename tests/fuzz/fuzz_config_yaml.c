/* Fuzz target: experiment configuration YAML, rb_config_load_string with the input as the text (no
 * configs directory, no overrides). A config that loads must load again from its canonical YAML to
 * the same bytes, and its sweep (if any) must expand. */
#include "fuzz_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_init();
    setenv("RB_FUZZ_VAR", "/fz", 1);
    rb_config c;
    rb_error err;
    if (fz_note("rb_config_load_string", rb_config_load_string((const char *)data, size, "fz.yaml", NULL, NULL, 0, &c, &err), &err) != 0)
        return 0;
    fz_check_canonical(&c);
    rb_sweep s;
    if (rb_sweep_expand(&c, NULL, 0, &s, &err) == 0) rb_sweep_free(&s);
    rb_config_free(&c);
    return 0;
}

/* Fuzz target: command-line overrides (Hydra grammar: key=value, +key=value, ++key=value, ~key),
 * one per input line (at most 64; a final newline adds no empty one), applied by rb_config_load_string to a fixed valid base config.
 * A config that loads must load again from its canonical YAML to the same bytes. */
#include "fuzz_config.h"

static const char base[] =
    "name: fz\nseed: 3\nmodel: {path: /m/model}\n"
    "data:\n  calib: {corpus: /d/train.txt, samples: 8, batch: 2}\n"
    "  eval:\n    - {corpus: /d/wiki.test.raw, range: '0:0.5', protocol: llamacpp}\n    - corpus: /d/valid.txt\n"
    "quant: {preset: W4A4KV4, w: {group: 128, clip: 0.9}, a: {clip: 0.5}}\n"
    "rotation: {method: hadamard, r3: true, seed: 2}\nmetrics: [kl]\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_init();
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    const char *ov[64];
    size_t n = 0;
    for (char *p = text; n < 64;) {
        char *nl = memchr(p, '\n', (size_t)(text + size - p));
        if (nl) *nl = 0;
        if (!nl && p == text + size && n > 0) break; /* the input's final newline ends the list */
        ov[n++] = p; /* an embedded NUL just ends that override early */
        if (!nl) break;
        p = nl + 1;
    }
    rb_config c;
    rb_error err;
    if (fz_note("rb_config_load_string", rb_config_load_string(base, sizeof base - 1, "base.yaml", NULL, ov, n, &c, &err), &err) == 0) {
        fz_check_canonical(&c);
        rb_config_free(&c);
    }
    free(text);
    return 0;
}

/* Shared by the config targets (fuzz_config_yaml, fuzz_config_override). */
#ifndef FUZZ_CONFIG_H
#define FUZZ_CONFIG_H

#include "fuzz_util.h"
#include "harness/rb_config.h"

/* A config that loaded must load again from its canonical YAML, to the same bytes: aborts (a finding)
 * otherwise. */
static inline void fz_check_canonical(const rb_config *c) {
    rb_config c2;
    rb_error err;
    if (rb_config_load_string(c->canonical, strlen(c->canonical), "canonical.yaml", NULL, NULL, 0, &c2, &err) != 0) {
        fprintf(stderr, "canonical YAML does not load again: %s\n%s", err.msg, c->canonical);
        abort();
    }
    if (strcmp(c->canonical, c2.canonical) != 0) {
        fprintf(stderr, "canonical YAML is not a fixed point:\n%s\n---\n%s", c->canonical, c2.canonical);
        abort();
    }
    rb_config_free(&c2);
}

#endif

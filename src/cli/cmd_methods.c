/* rotbench methods [METHOD]: registered rotation methods, their status and options (JSON). */
#include <jansson.h>

#include "cli.h"
#include "methods/rb_method.h"

static json_t *method_json(const rb_method *m) {
    json_t *opts = json_array();
    for (const rb_method_option *o = m->options; o && o->name; o++)
        json_array_append_new(opts, json_pack("{s:s, s:s, s:s, s:s}", "name", o->name, "kind", o->kind, "default", o->default_value,
                                              "meaning", o->meaning));
    json_t *tv = json_array();
    for (const char *const *v = m->test_variants; v && *v; v++) json_array_append_new(tv, json_string(*v));
    return json_pack("{s:s, s:s, s:s, s:b, s:o, s:o}", "name", m->name, "status", m->status, "description",
                     m->description, "runnable", m->calibrate != NULL, "options", opts, "test_variants", tv);
}

int rb_cmd_methods(int argc, char **argv) {
    rb_error err = {0};
    rb_args a;
    if (rb_args_init(&a, "methods", argc, argv)) return RB_EXIT_FAIL;
    const char *name = rb_args_pos(&a, 0);
    if (rb_args_finish(&a, 1, &err)) {
        rb_args_free(&a);
        return rb_cli_fail(&err);
    }
    json_t *j;
    if (name) {
        const rb_method *m = rb_method_find(name);
        if (!m) {
            rb_args_free(&a);
            rb_error_set(&err, RB_EINVAL, "methods: unknown method '%s'", name);
            return rb_cli_fail(&err);
        }
        j = method_json(m);
    } else {
        j = json_array();
        for (const rb_method *const *m = rb_methods(); *m; m++) json_array_append_new(j, method_json(*m));
    }
    rb_cli_print_json(j, JSON_INDENT(2));
    rb_args_free(&a);
    return RB_EXIT_OK;
}

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/rb_file.h"

int rb_args_init(rb_args *a, const char *cmd, int argc, char **argv) {
    a->argc = argc;
    a->argv = argv;
    a->cmd = cmd;
    a->used = calloc((size_t)argc + 1, 1);
    return a->used ? 0 : RB_ENOMEM;
}

void rb_args_free(rb_args *a) {
    free(a->used);
    a->used = NULL;
}

static int find_opt(rb_args *a, const char *name) {
    for (int i = 0; i < a->argc; i++)
        if (!a->used[i] && a->argv[i][0] == '-' && a->argv[i][1] == '-' && !strcmp(a->argv[i] + 2, name)) return i;
    return -1;
}

const char *rb_args_str(rb_args *a, const char *name, rb_error *err) {
    int i = find_opt(a, name);
    if (i < 0) return NULL;
    a->used[i] = 1;
    if (i + 1 >= a->argc) {
        rb_error_set(err, RB_EINVAL, "%s: option --%s needs a value", a->cmd, name);
        return NULL;
    }
    a->used[i + 1] = 1;
    return a->argv[i + 1];
}

int rb_args_flag(rb_args *a, const char *name) {
    int i = find_opt(a, name);
    if (i < 0) return 0;
    a->used[i] = 1;
    return 1;
}

int rb_args_int(rb_args *a, const char *name, long def, long lo, long hi, long *out, rb_error *err) {
    rb_error e = {0};
    const char *s = rb_args_str(a, name, &e);
    if (e.code) {
        *err = e;
        return e.code;
    }
    if (!s) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end)
        return rb_error_set(err, RB_EINVAL, "%s: --%s: expected an integer, got '%s'", a->cmd, name, s);
    if (v < lo || v > hi)
        return rb_error_set(err, RB_EINVAL, "%s: --%s: %ld is outside [%ld, %ld]", a->cmd, name, v, lo, hi);
    *out = v;
    return 0;
}

int rb_args_onoff(rb_args *a, const char *name, int def, int *out, rb_error *err) {
    rb_error e = {0};
    const char *s = rb_args_str(a, name, &e);
    if (e.code) {
        *err = e;
        return e.code;
    }
    if (!s) *out = def;
    else if (!strcmp(s, "on")) *out = 1;
    else if (!strcmp(s, "off")) *out = 0;
    else return rb_error_set(err, RB_EINVAL, "%s: --%s: expected on or off, got '%s'", a->cmd, name, s);
    return 0;
}

const char *rb_args_pos(rb_args *a, int k) {
    int seen = 0;
    for (int i = 0; i < a->argc; i++) {
        if (a->used[i]) continue;
        if (a->argv[i][0] == '-' && a->argv[i][1] == '-') continue;
        if (seen++ == k) {
            a->used[i] = 2;
            return a->argv[i];
        }
    }
    return NULL;
}

int rb_args_finish(rb_args *a, int n_pos, rb_error *err) {
    (void)n_pos;
    for (int i = 0; i < a->argc; i++)
        if (!a->used[i]) return rb_error_set(err, RB_EINVAL, "%s: unexpected argument '%s'", a->cmd, a->argv[i]);
    return 0;
}

int rb_cli_exit_code(int code) {
    switch (code) {
    case RB_OK: return RB_EXIT_OK;
    case RB_EINTERRUPTED: return RB_EXIT_INTERRUPTED;
    case RB_ENOMEM:  /* the machine, not the input */
    case RB_ENUMERIC: return RB_EXIT_FAIL; /* valid input, the computation failed */
    default: return RB_EXIT_USAGE;
    }
}

int rb_cli_fail(const rb_error *err) {
    fprintf(stderr, "rotbench: %s\n", err->msg[0] ? err->msg : rb_strerror(err->code));
    return err->code == RB_OK ? RB_EXIT_FAIL : rb_cli_exit_code(err->code);
}

int rb_read_ids(const char *path, int32_t **ids, size_t *n, rb_error *err) {
    rb_mapped m;
    *ids = NULL;
    *n = 0;
    int rc = rb_mapped_open(&m, path, err);
    if (rc) return rc;
    if (m.size % 4 || m.size == 0) {
        rc = rb_error_set(err, RB_EFORMAT, "%s: %zu bytes is not a non-empty array of int32 ids", path, m.size);
        rb_mapped_close(&m);
        return rc;
    }
    size_t cnt = m.size / 4;
    int32_t *v = malloc(m.size);
    if (!v) {
        rb_mapped_close(&m);
        return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < cnt; i++) {
        const uint8_t *p = m.data + 4 * i;
        v[i] = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    }
    rb_mapped_close(&m);
    *ids = v;
    *n = cnt;
    return 0;
}

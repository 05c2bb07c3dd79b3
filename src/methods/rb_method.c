#include "methods/rb_method.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <math.h>

#include "core/rb_error.h"
#include "core/rb_rng.h"
#include "rotate/rb_orth.h"
#include "core/rb_suggest.h"

/* Generated from src/methods/meson.build (rb_method_registry.c). */
extern const rb_method *const rb_method_registry[];

const rb_method *const *rb_methods(void) { return rb_method_registry; }

int rb_method_index(const char *label) {
    size_t len = strcspn(label, "[");
    int i = 0;
    for (const rb_method *const *m = rb_methods(); *m; m++, i++)
        if (strlen((*m)->name) == len && !strncmp((*m)->name, label, len)) return i;
    return i;
}

const rb_method *rb_method_find(const char *name) {
    for (const rb_method *const *m = rb_methods(); *m; m++)
        if (!strcmp((*m)->name, name)) return *m;
    return NULL;
}

int rb_method_uses_key(const rb_method *m, const char *key) {
    for (const rb_method_option *o = m->options; o && o->name; o++)
        if (!strcmp(o->name, key) && !strcmp(o->kind, "key")) return 1;
    return 0;
}

/* "a, b, c": the runnable methods that use shared key `key`, into buf (cap bytes, truncated). */
static void key_users(const char *key, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    for (const rb_method *const *p = rb_methods(); *p; p++)
        if ((*p)->calibrate && rb_method_uses_key(*p, key) && k < cap)
            k += (size_t)snprintf(buf + k, cap - k, "%s%s", k ? ", " : "", (*p)->name);
}

int rb_method_check_keys(const rb_method *m, int cross_head, char *msg, size_t cap) {
    /* asked for explicitly but not applied would be silently ignored: refuse it instead */
    if (cross_head <= 0 || rb_method_uses_key(m, "cross_head")) return 0;
    char users[256];
    key_users("cross_head", users, sizeof users);
    snprintf(msg, cap, "method %s does not apply QuaRot's cross-head Hadamard (methods that do: %s)", m->name, users);
    return RB_EINVAL;
}

int rb_method_check(const char *name, const char *const *names, const char *const *values, int n, int cross_head,
                    rb_error *err) {
    const rb_method *m = rb_method_find(name);
    if (!m) {
        char list[256] = "";
        for (const rb_method *const *p = rb_methods(); *p; p++) {
            strncat(list, (*p)->name, sizeof list - strlen(list) - 1);
            if (p[1]) strncat(list, ", ", sizeof list - strlen(list) - 1);
        }
        return rb_error_set(err, RB_EINVAL, "rotation method '%s': expected one of %s", name, list);
    }
    if (!m->calibrate) return rb_error_set(err, RB_EUNSUPPORTED, "rotation method '%s': %s", name, m->status);
    for (int i = 0; i < n; i++) {
        char msg[512];
        if (rb_method_check_option(m, names[i], values[i], msg, sizeof msg))
            return rb_error_set(err, RB_EINVAL, "rotation.options.%s: %s", names[i], msg);
    }
    char msg[512];
    if (rb_method_check_keys(m, cross_head, msg, sizeof msg))
        return rb_error_set(err, RB_EINVAL, "rotation.cross_head: %s", msg);
    return 0;
}

int rb_method_run(const char *name, const rb_method_ctx *ctx, rb_rotset *out, rb_error *err) {
    int rc = rb_method_check(name, ctx->opt_names, ctx->opt_values, ctx->n_opts, ctx->cross_head, err);
    if (rc) return rc;
    const rb_method *m = rb_method_find(name);
    memset(out, 0, sizeof *out);
    rc = m->calibrate(ctx, out, err);
    if (rc) {
        rb_rotset_free(out);
        return rc;
    }
    double e = rb_rotset_orth_err(out);
    if (e > RB_ROT_ORTH_TOL) {
        rb_rotset_free(out);
        return rb_error_set(err, RB_ENUMERIC, "rotation method '%s' produced a rotation with orthogonality error %.3g", name,
                            e);
    }
    return 0;
}

int rb_method_init_set(const rb_method_ctx *ctx, const char *name, int def_r3, int def_r4, rb_rotset *out,
                       rb_error *err) {
    const rb_llama_config *c = ctx->cfg;
    int rc = rb_rotset_init(out, name, c->dim, c->head_dim, c->hidden_dim, c->n_layers, err);
    if (rc) return rc;
    if (!out->r2 && !(out->r2 = calloc((size_t)c->n_layers, sizeof *out->r2))) {
        rb_rotset_free(out);
        return rb_error_set(err, RB_ENOMEM, "rotation set: out of memory");
    }
    out->seed = ctx->seed;
    out->r3 = ctx->r3 < 0 ? def_r3 : ctx->r3;
    out->r4 = ctx->r4 < 0 ? def_r4 : ctx->r4;
    out->emb_center = ctx->emb_center;
    return 0;
}

/* ---- options ---- */

static const rb_method_option *find_opt(const rb_method *m, const char *name) {
    for (const rb_method_option *o = m->options; o && o->name; o++)
        if (!strcmp(o->name, name) && strcmp(o->kind, "key")) return o;
    return NULL;
}

static int is_enum_kind(const char *kind) { return strchr(kind, '|') != NULL; }

/* Index of value among the '|'-separated alternatives of kind, or -1. */
static int enum_index(const char *kind, const char *value) {
    size_t vl = strlen(value);
    int i = 0;
    for (const char *p = kind;; i++) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == vl && !strncmp(p, value, len)) return i;
        if (!e) return -1;
        p = e + 1;
    }
}

static int parse_long(const char *s, long *out) {
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (e == s || *e || errno) return -1;
    *out = v;
    return 0;
}

static int parse_real(const char *s, double *out) {
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (e == s || *e || errno || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, int *out) {
    if (!strcmp(s, "on") || !strcmp(s, "true")) *out = 1;
    else if (!strcmp(s, "off") || !strcmp(s, "false")) *out = 0;
    else return -1;
    return 0;
}

/* A bool option's value among names/values, else its table default; 0 when m lacks it. */
static int opt_on(const rb_method *m, const char *name, const char *const *names, const char *const *values, int n) {
    const rb_method_option *o = find_opt(m, name);
    if (!o) return 0;
    RB_ASSERT(!strcmp(o->kind, "bool"));
    const char *v = o->default_value;
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) v = values[i];
    int on = 0;
    return !parse_bool(v, &on) && on;
}

int rb_method_needs_calib(const rb_method *m, const char *const *names, const char *const *values, int n) {
    if (!m->calib) return 0;
    if (!m->calib[0]) return 1;
    RB_ASSERT(find_opt(m, m->calib));
    return opt_on(m, m->calib, names, values, n);
}

int rb_method_is_noop(const char *name, const char *const *names, const char *const *values, int n, int r3, int r4) {
    if (!name || strcmp(name, "identity")) return 0;
    return r3 != 1 && r4 != 1 && !opt_on(rb_method_find("identity"), "fold_norms", names, values, n);
}

int rb_method_check_option(const rb_method *m, const char *name, const char *value, char *msg, size_t cap) {
    const rb_method_option *o = find_opt(m, name);
    if (!o) {
        const char *names[64] = {0};
        size_t n = 0, k = 0;
        char list[256] = "";
        for (const rb_method_option *p = m->options; p && p->name && n < 64; p++) {
            if (!strcmp(p->kind, "key")) continue;
            names[n++] = p->name;
            k += (size_t)snprintf(list + k, k < sizeof list ? sizeof list - k : 0, "%s%s", k ? ", " : "", p->name);
        }
        const char *best = rb_suggest(name, names, n);
        if (best) snprintf(msg, cap, "unknown option of method %s (did you mean '%s'?)", m->name, best);
        else if (n) snprintf(msg, cap, "unknown option of method %s (options: %s)", m->name, list);
        else snprintf(msg, cap, "method %s takes no options", m->name);
        return RB_EINVAL;
    }
    long l;
    double d;
    int b;
    if (!strcmp(o->kind, "int") && parse_long(value, &l)) snprintf(msg, cap, "expected an integer, got '%s'", value);
    else if (!strcmp(o->kind, "real") && parse_real(value, &d)) snprintf(msg, cap, "expected a number, got '%s'", value);
    else if (!strcmp(o->kind, "bool") && parse_bool(value, &b)) snprintf(msg, cap, "expected on or off, got '%s'", value);
    else if (is_enum_kind(o->kind) && enum_index(o->kind, value) < 0)
        snprintf(msg, cap, "expected one of %s, got '%s'", o->kind, value);
    else return 0;
    return RB_EINVAL;
}

int rb_method_split_opts(const char *spec, char **buf, const char **names, const char **values, int max, int *n,
                         rb_error *err) {
    *n = 0;
    *buf = NULL;
    if (!spec || !*spec) return 0;
    if (!(*buf = strdup(spec))) return rb_error_set(err, RB_ENOMEM, "out of memory");
    for (char *save = NULL, *tok = strtok_r(*buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || !eq[1])
            return rb_error_set(err, RB_EINVAL, "expected NAME=VALUE[,NAME=VALUE...], got '%s'", tok);
        if (*n == max) return rb_error_set(err, RB_EINVAL, "more than %d options", max);
        *eq = 0;
        names[*n] = tok;
        values[(*n)++] = eq + 1;
    }
    return 0;
}

/* The value of option `name` (given or default) and its table entry. */
static const char *opt_value(const rb_method_ctx *ctx, const rb_method *m, const char *name, const char *kind,
                             const rb_method_option **o) {
    *o = find_opt(m, name);
    RB_ASSERT(*o && (kind ? !strcmp((*o)->kind, kind) : is_enum_kind((*o)->kind)));
    for (int i = 0; i < ctx->n_opts; i++)
        if (!strcmp(ctx->opt_names[i], name)) return ctx->opt_values[i];
    return (*o)->default_value;
}

int rb_method_opt_int(const rb_method_ctx *ctx, const rb_method *m, const char *name, long lo, long hi, int *out,
                      rb_error *err) {
    const rb_method_option *o;
    const char *v = opt_value(ctx, m, name, "int", &o);
    long x;
    if (parse_long(v, &x)) return rb_error_set(err, RB_EINVAL, "rotation.options.%s: expected an integer, got '%s'", name, v);
    if (x < lo || x > hi)
        return rb_error_set(err, RB_EINVAL, "rotation.options.%s: expected an integer in [%ld, %ld], got %ld", name, lo,
                            hi, x);
    *out = (int)x;
    return 0;
}

int rb_method_opt_real(const rb_method_ctx *ctx, const rb_method *m, const char *name, double lo, double hi,
                       double *out, rb_error *err) {
    const rb_method_option *o;
    const char *v = opt_value(ctx, m, name, "real", &o);
    double x;
    if (parse_real(v, &x)) return rb_error_set(err, RB_EINVAL, "rotation.options.%s: expected a number, got '%s'", name, v);
    if (x < lo || x > hi)
        return rb_error_set(err, RB_EINVAL, "rotation.options.%s: expected a number in [%g, %g], got %g", name, lo, hi,
                            x);
    *out = x;
    return 0;
}

int rb_method_opt_bool(const rb_method_ctx *ctx, const rb_method *m, const char *name, int *out, rb_error *err) {
    const rb_method_option *o;
    const char *v = opt_value(ctx, m, name, "bool", &o);
    if (parse_bool(v, out)) return rb_error_set(err, RB_EINVAL, "rotation.options.%s: expected on or off, got '%s'", name, v);
    return 0;
}

int rb_method_opt_enum(const rb_method_ctx *ctx, const rb_method *m, const char *name, int *out, rb_error *err) {
    const rb_method_option *o;
    const char *v = opt_value(ctx, m, name, NULL, &o);
    if ((*out = enum_index(o->kind, v)) < 0)
        return rb_error_set(err, RB_EINVAL, "rotation.options.%s: expected one of %s, got '%s'", name, o->kind, v);
    return 0;
}

/* ---- starting rotations ---- */

void rb_method_signs(uint64_t seed, const char *stream, int n, int8_t *s) {
    rb_rng r;
    rb_rng_seed(&r, seed, stream);
    for (int i = 0; i < n; i++) s[i] = (rb_rng_next(&r) >> 63) ? 1 : -1;
}

int rb_method_init_rot(int kind, uint64_t seed, const char *stream, int signs, int n, double *R, rb_error *err) {
    if (kind == RB_INIT_IDENTITY) {
        rb_orth_identity(R, n);
        return 0;
    }
    if (kind == RB_INIT_RANDOM) {
        rb_rng r;
        rb_rng_seed(&r, seed, stream);
        return rb_orth_random(&r, n, R, err);
    }
    RB_ASSERT(kind == RB_INIT_HADAMARD);
    int8_t *sg = NULL;
    if (signs) {
        if (!(sg = malloc((size_t)n))) return rb_error_set(err, RB_ENOMEM, "rotation init: out of memory");
        rb_method_signs(seed, stream, n, sg);
    }
    rb_rot *h = NULL;
    int rc = rb_rot_from_hadamard(n, sg, &h, err);
    if (!rc) memcpy(R, h->R, (size_t)n * n * sizeof *R);
    rb_rot_free(h);
    free(sg);
    return rc;
}

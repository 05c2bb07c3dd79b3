/* rb_config_emit: the canonical YAML of a resolved config — schema order, two-space block style,
 * every default filled, optional keys only when set, lists of scalars in flow style. The same
 * config always gives the same bytes; loading the output gives the same config (and bytes). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/rb_config_internal.h"
#include "harness/rb_sha256.h"
#include "quant/rb_quant.h"

/* Shortest text that reads back as exactly x, always with a '.' (YAML 1.1 readers need it). */
static void put_double(rb_ybuf *b, double x) {
    char buf[48];
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, x);
        if (strtod(buf, NULL) == x) break;
    }
    char *e = strpbrk(buf, "eE");
    if (!strchr(buf, '.')) {
        if (e) {
            char tail[24];
            snprintf(tail, sizeof tail, "%s", e);
            snprintf(e, sizeof buf - (size_t)(e - buf), ".0%s", tail);
        } else {
            strcat(buf, ".0");
        }
    }
    rb_ybuf_puts(b, buf);
}

static const char *enum_name(const senum *en, int value) {
    for (int i = 0; en[i].name; i++)
        if (en[i].value == value) return en[i].name;
    return "?";
}

static void indent(rb_ybuf *b, int n) {
    for (int i = 0; i < n; i++) rb_ybuf_puts(b, " ");
}

/* Is optional entry e set in base? */
static int is_set(const sentry *e, const char *base) {
    if (!(e->flags & F_OPT) || e->type == T_AXES) return 1;
    if (e->aux != NOAUX) return *(const int *)(base + e->aux);
    switch (e->type) {
    case T_BOOL: return *(const int *)(base + e->off) >= 0;
    case T_ESTR:
    case T_METHOD: return *(const char *const *)(base + e->off) != NULL;
    case T_INT: return *(const int *)(base + e->off) != 0; /* optional ints: 0 = the default */
    default: return *(char *const *)(base + e->off) != NULL;
    }
}

static void emit_value(rb_ybuf *b, const sentry *e, const char *base) {
    const rb_cfg_qtensor *q = (const rb_cfg_qtensor *)(base + e->off);
    switch (e->type) {
    case T_PATH: { /* re-escape what ${...} expansion would read: '$' before '$' or '{' */
        const char *s = *(char *const *)(base + e->off);
        rb_ybuf t = {0};
        for (const char *p = s; *p; p++) rb_ybuf_puts(&t, *p == '$' && (p[1] == '$' || p[1] == '{') ? "$$" : (char[]){*p, 0});
        char *esc = rb_ybuf_take(&t);
        if (!esc) b->oom = 1;
        else rb_ybuf_str(b, esc);
        free(esc);
        break;
    }
    case T_STR:
    case T_NAME:
    case T_RANGE: rb_ybuf_str(b, *(char *const *)(base + e->off)); break;
    case T_ESTR:
    case T_METHOD: rb_ybuf_str(b, *(const char *const *)(base + e->off)); break;
    case T_INT:
    case T_BITS: rb_ybuf_printf(b, "%d", *(const int *)(base + e->off)); break;
    case T_U64: rb_ybuf_printf(b, "%llu", (unsigned long long)*(const uint64_t *)(base + e->off)); break;
    case T_FLOAT: put_double(b, *(const double *)(base + e->off)); break;
    case T_BOOL: rb_ybuf_puts(b, *(const int *)(base + e->off) ? "true" : "false"); break;
    case T_ENUM: rb_ybuf_puts(b, enum_name(e->en, *(const int *)(base + e->off))); break;
    case T_GROUP:
        if (q->gran == RB_QGRAN_GROUP) rb_ybuf_printf(b, "%d", q->group);
        else rb_ybuf_puts(b, enum_name(e->en, q->gran));
        break;
    case T_CLIP:
        if (q->clip_search) rb_ybuf_puts(b, "search");
        else put_double(b, q->clip);
        break;
    case T_METRICS: {
        unsigned bits = *(const unsigned *)(base + e->off);
        rb_ybuf_puts(b, "[");
        for (int i = 0, k = 0; e->en[i].name; i++)
            if (bits & (unsigned)e->en[i].value) rb_ybuf_printf(b, "%s%s", k++ ? ", " : "", e->en[i].name);
        rb_ybuf_puts(b, "]");
        break;
    }
    case T_OPTS: {
        char *const *nm = *(char **const *)(base + e->off), *const *vl = *((char **const *)(base + e->off) + 1);
        rb_ybuf_puts(b, "{");
        for (int i = 0; i < *(const int *)(base + e->aux); i++) {
            if (i) rb_ybuf_puts(b, ", ");
            rb_ybuf_str(b, nm[i]);
            rb_ybuf_puts(b, ": ");
            char *end;
            strtod(vl[i], &end); /* numbers plain (options are typed by the method, not by YAML) */
            if (end != vl[i] && !*end && !strpbrk(vl[i], " \t")) rb_ybuf_puts(b, vl[i]);
            else rb_ybuf_str(b, vl[i]);
        }
        rb_ybuf_puts(b, "}");
        break;
    }
    case T_NAMES: {
        char *const *arr = *(char **const *)(base + e->off);
        rb_ybuf_puts(b, "[");
        for (int i = 0; i < *(const int *)(base + e->aux); i++) {
            if (i) rb_ybuf_puts(b, ", ");
            rb_ybuf_str(b, arr[i]);
        }
        rb_ybuf_puts(b, "]");
        break;
    }
    default: break;
    }
}

static void emit_axes(rb_ybuf *b, const rb_ynode *axes, int ind) {
    for (size_t i = 0; i < axes->n; i++) {
        indent(b, ind);
        rb_ybuf_str(b, axes->keys[i]->str);
        rb_ybuf_puts(b, ": ");
        rb_ybuf_flow(b, axes->vals[i]);
        rb_ybuf_puts(b, "\n");
    }
}

/* Entries of a map at indentation ind; `first` replaces the indentation of the first line
 * ("- " for a list entry). */
static void emit_map(rb_ybuf *b, const sentry *kids, const char *base, int ind, const char *first,
                     const rb_ynode *sweep) {
    for (const sentry *e = kids; e->name; e++) {
        if (!is_set(e, base)) continue;
        if ((e->flags & F_TASKS) && !((const rb_config *)(const void *)base)->data.n_tasks) continue;
        if (e->type == T_AXES) {
            const rb_ynode *axes = rb_ymap_get(sweep, e->name, NULL);
            if (!axes || axes->kind != RB_YMAP || !axes->n) continue;
        }
        if (e->type == T_MAP && !strcmp(e->name, "sweep")) {
            const rb_ynode *g = rb_ymap_get(sweep, "grid", NULL), *z = rb_ymap_get(sweep, "zip", NULL);
            if (!(g && g->kind == RB_YMAP && g->n) && !(z && z->kind == RB_YMAP && z->n)) continue;
        }
        if (first) {
            indent(b, ind - (int)strlen(first));
            rb_ybuf_puts(b, first);
            first = NULL;
        } else {
            indent(b, ind);
        }
        rb_ybuf_printf(b, "%s:", e->name);
        if (e->type == T_MAP) {
            rb_ybuf_puts(b, "\n");
            emit_map(b, e->kids, base, ind + 2, NULL, !strcmp(e->name, "sweep") ? sweep : NULL);
        } else if (e->type == T_AXES) {
            rb_ybuf_puts(b, "\n");
            emit_axes(b, rb_ymap_get(sweep, e->name, NULL), ind + 2);
        } else if (e->type == T_LIST) {
            rb_ybuf_puts(b, "\n");
            const char *arr = *(const char *const *)(base + e->off);
            for (int i = 0; i < *(const int *)(base + e->aux); i++)
                emit_map(b, e->kids, arr + (size_t)i * (size_t)e->lo, ind + 4, "- ", NULL);
        } else {
            rb_ybuf_puts(b, " ");
            emit_value(b, e, base);
            rb_ybuf_puts(b, "\n");
        }
    }
}

int rb_cfg_emit(const rb_config *cfg, char **out) {
    rb_ybuf b = {0};
    emit_map(&b, rb_cfg_schema, (const char *)cfg, 0, NULL, rb_ymap_get(rb_cfg_tree(cfg), "sweep", NULL));
    *out = rb_ybuf_take(&b);
    return *out ? 0 : RB_ENOMEM;
}

/* ---- labels and run id (from the canonical form) ---- */

void rb_config_method_label(const rb_config *cfg, char *buf, size_t cap) {
    size_t k = (size_t)snprintf(buf, cap, "%s", cfg->rotation.method);
    for (int i = 0; i < cfg->rotation.n_opts && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%s=%s%s", i ? "," : "[", cfg->rotation.opt_names[i],
                              cfg->rotation.opt_values[i], i == cfg->rotation.n_opts - 1 ? "]" : "");
}

void rb_run_id(const char *canonical, const char *const *extra_hashes, size_t n, char out[RB_RUN_ID_LEN + 1]) {
    rb_sha256_ctx c;
    rb_sha256_init(&c);
    rb_sha256_update(&c, canonical, strlen(canonical));
    for (size_t i = 0; i < n; i++) {
        rb_sha256_update(&c, "\ninput ", 7);
        rb_sha256_update(&c, extra_hashes[i], strlen(extra_hashes[i]));
    }
    uint8_t d[RB_SHA256_LEN];
    rb_sha256_final(&c, d);
    rb_sha256_to_hex(d, out);
}

/* rb_config_load: composition from building blocks (`defaults:`), command-line overrides
 * (key=value, +key=value, ++key=value, ~key) and the loading entry points. */
#include <ctype.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"
#include "core/rb_suggest.h"
#include "harness/rb_config_internal.h"

static int at_fail(rb_error *err, const char *file, int line, int col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static int at_fail(rb_error *err, const char *file, int line, int col, const char *path, const char *fmt, ...) {
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return rb_yaml_oneline(err, rb_error_set(err, RB_EINVAL, "%s:%d:%d: %s: %s", file, line, col,
                                             path && *path ? path : "(root)", what));
}

static int oom(rb_error *err) { return rb_error_set(err, RB_ENOMEM, "configuration: out of memory"); }

/* ---- key paths ---- */

#define MAX_COMPS 16

typedef struct pcomp {
    char name[64];
    long index; /* ≥ 0: a list index; -1: a key */
} pcomp;

/* "a.b[0].c" or "a.b.0.c" → components. 0, or -1 when malformed. */
static int split_path(const char *path, pcomp *c, int *n) {
    *n = 0;
    const char *p = path;
    if (!*p) return -1;
    while (*p) {
        if (*n == MAX_COMPS) return -1;
        pcomp *k = &c[(*n)++];
        if (*p == '[') {
            char *e;
            k->index = strtol(p + 1, &e, 10);
            if (e == p + 1 || *e != ']' || k->index < 0 || !isdigit((unsigned char)p[1])) return -1;
            k->name[0] = 0;
            p = e + 1;
            if (*p == '.') p++;
            else if (*p && *p != '[') return -1;
            continue;
        }
        size_t len = strcspn(p, ".[");
        if (!len || len >= sizeof k->name) return -1;
        memcpy(k->name, p, len);
        k->name[len] = 0;
        k->index = -1;
        int digits = 1;
        for (size_t i = 0; i < len; i++) {
            if (!isalnum((unsigned char)p[i]) && p[i] != '_') return -1;
            digits &= isdigit((unsigned char)p[i]) != 0;
        }
        if (digits) k->index = strtol(k->name, NULL, 10);
        p += len;
        if (*p == '.') {
            if (!*++p) return -1;
        }
    }
    return 0;
}

static const sentry *find_kid(const sentry *kids, const char *name) {
    for (const sentry *e = kids; e && e->name; e++)
        if (!strcmp(e->name, name)) return e;
    return NULL;
}

static void shown_add(char *shown, size_t cap, const pcomp *c) {
    size_t len = strlen(shown);
    if (c->index >= 0 && !c->name[0]) snprintf(shown + len, cap - len, "[%ld]", c->index);
    else if (c->index >= 0) snprintf(shown + len, cap - len, "[%s]", c->name);
    else snprintf(shown + len, cap - len, "%s%s", len ? "." : "", c->name);
}

/* Walks schema and (when tree is not NULL) the tree along path; performs `kind` with val at the
 * end. With tree NULL it only resolves the schema entry into *entry. */
static int walk(rb_ynode *tree, const char *path, int kind, rb_ynode *val, const char *file, int line, int col,
                const sentry **entry, rb_error *err) {
    pcomp c[MAX_COMPS];
    int n, rc = 0;
    char shown[512] = "";
    if (split_path(path, c, &n)) {
        rc = at_fail(err, file, line, col, path, "malformed key path (expected names joined by '.', e.g. quant.w.bits)");
        goto out;
    }
    const sentry *kids = rb_cfg_schema, *e = NULL;
    rb_ynode *node = tree;
    for (int i = 0; i < n; i++) {
        int last = i == n - 1;
        if (e && e->type == T_LIST && !kids) { /* at a list: needs an index */
            if (c[i].index < 0) {
                rc = at_fail(err, file, line, col, shown, "is a list; address an entry by index (%s.0.%s)", shown,
                             c[i].name);
                goto out;
            }
            shown_add(shown, sizeof shown, &c[i]);
            if (!tree) {
                kids = e->kids;
                continue;
            }
            if (!node || node->kind != RB_YSEQ || (size_t)c[i].index >= node->n) {
                rc = at_fail(err, file, line, col, shown, "no such entry (the list has %zu)",
                             node && node->kind == RB_YSEQ ? node->n : (size_t)0);
                goto out;
            }
            if (last) {
                size_t k = (size_t)c[i].index;
                if (kind == OV_ADD) {
                    rc = at_fail(err, file, line, col, shown, "is already set; use %s=VALUE to change it", path);
                } else if (kind == OV_DEL) {
                    if ((long long)node->n <= e->hi) {
                        rc = at_fail(err, file, line, col, shown, "is the only entry; at least one is required");
                        goto out;
                    }
                    rb_ynode_free(node->vals[k]);
                    memmove(node->vals + k, node->vals + k + 1, (node->n - k - 1) * sizeof *node->vals);
                    node->n--;
                } else {
                    rb_ynode_free(node->vals[k]);
                    node->vals[k] = val;
                    val = NULL;
                }
                goto out;
            }
            node = node->vals[c[i].index];
            if (node->kind != RB_YMAP) {
                rc = at_fail(err, node->file, node->line, node->col, shown, "expected a map");
                goto out;
            }
            kids = e->kids;
            continue;
        }
        if (e && e->type == T_OPTS && !kids) { /* rotation.options.NAME: checked against the method later */
            shown_add(shown, sizeof shown, &c[i]);
            if (!last || !c[i].name[0] || c[i].index >= 0) {
                rc = at_fail(err, file, line, col, shown, "method options are name: value pairs (rotation.options.NAME)");
                goto out;
            }
            if (!tree) break;
            size_t idx;
            rb_ynode *child = rb_ymap_get(node, c[i].name, &idx);
            if (kind == OV_ADD && child) {
                rc = at_fail(err, file, line, col, shown, "is already set (%s:%d:%d); use %s=VALUE to change it",
                             child->file, child->line, child->col, path);
            } else if (kind == OV_DEL) {
                if (!child) rc = at_fail(err, file, line, col, shown, "is not set");
                else rb_ymap_remove(node, idx);
            } else {
                rb_ynode *key = rb_ynode_scalar(c[i].name, 0, file, line, col);
                if (!key) rc = oom(err);
                else if (rb_ymap_set(node, key, val)) rc = oom(err); /* frees both on failure */
                val = NULL;
            }
            goto out;
        }
        if (!kids) {
            rc = at_fail(err, file, line, col, shown, "is a value, not a map");
            goto out;
        }
        if (!c[i].name[0]) {
            shown_add(shown, sizeof shown, &c[i]);
            rc = at_fail(err, file, line, col, shown, "is a map, not a list");
            goto out;
        }
        e = find_kid(kids, c[i].name);
        shown_add(shown, sizeof shown, &c[i]);
        if (!e) {
            char hint[512];
            rb_cfg_hint_kids(c[i].name, kids, hint, sizeof hint);
            rc = at_fail(err, file, line, col, shown, "unknown key%s", hint);
            goto out;
        }
        if (!tree) {
            kids = e->type == T_MAP ? e->kids : NULL;
            if (e->type == T_AXES && !last) {
                rc = at_fail(err, file, line, col, shown, "sweep axes are keys with dots; add one with -m key=a,b");
                goto out;
            }
            continue;
        }
        size_t idx;
        rb_ynode *child = rb_ymap_get(node, e->name, &idx);
        int unset = !child || rb_ynode_is_null(child);
        if (last) {
            if (kind == OV_ADD && !unset) {
                rc = at_fail(err, file, line, col, shown, "is already set (%s:%d:%d); use %s=VALUE to change it",
                             child->file, child->line, child->col, path);
            } else if (kind == OV_DEL) {
                if (e->flags & F_REQ) rc = at_fail(err, file, line, col, shown, "is required and cannot be removed");
                else if (!child) rc = at_fail(err, file, line, col, shown, "is not set");
                else rb_ymap_remove(node, idx);
            } else {
                rb_ynode *key = rb_ynode_scalar(e->name, 0, file, line, col);
                if (!key) {
                    rc = oom(err);
                } else {
                    if (rb_ymap_set(node, key, val)) rc = oom(err); /* frees both on failure */
                    val = NULL;
                }
            }
            goto out;
        }
        if (e->type == T_LIST) {
            node = child;
            kids = NULL;
            continue;
        }
        if (e->type != T_MAP && e->type != T_OPTS) {
            rc = at_fail(err, file, line, col, shown,
                         e->type == T_AXES ? "sweep axes are keys with dots; add one with -m key=a,b"
                                           : "is a value, not a map");
            goto out;
        }
        if (unset) {
            if (kind == OV_DEL) {
                rc = at_fail(err, file, line, col, path, "is not set");
                goto out;
            }
            rb_ynode *key = rb_ynode_scalar(e->name, 0, file, line, col);
            rb_ynode *m = rb_ynode_collection(RB_YMAP, file, line, col);
            if (!key || !m || rb_ymap_set(node, key, m)) {
                if (!key || !m) rb_ynode_free(key), rb_ynode_free(m);
                rc = oom(err);
                goto out;
            }
            child = m;
        } else if (child->kind != RB_YMAP) {
            rc = at_fail(err, child->file, child->line, child->col, shown, "expected a map");
            goto out;
        }
        node = child;
        kids = e->kids; /* NULL for T_OPTS: the next component is a free option name */
    }
    if (entry) *entry = e;
out:
    rb_ynode_free(val);
    return rc;
}

int rb_cfg_assign(rb_ynode *tree, const char *path, int kind, rb_ynode *val, const char *file, int line, int col,
                  rb_error *err) {
    return walk(tree, path, kind, val, file, line, col, NULL, err);
}

const sentry *rb_cfg_resolve(const char *path, const char *file, int line, int col, rb_error *err) {
    const sentry *e = NULL;
    return walk(NULL, path, OV_SET, NULL, file, line, col, &e, err) ? NULL : e;
}

/* One override argument (1-based index k) applied to tree. */
static int apply_override(rb_ynode *tree, const char *arg, int k, rb_error *err) {
    int kind = OV_SET, off = 0;
    if (!strncmp(arg, "++", 2)) kind = OV_FORCE, off = 2;
    else if (arg[0] == '+') kind = OV_ADD, off = 1;
    else if (arg[0] == '~') kind = OV_DEL, off = 1;
    const char *key = arg + off, *eq = strchr(key, '=');
    size_t klen = eq ? (size_t)(eq - key) : strlen(key);
    char path[512];
    snprintf(path, sizeof path, "%.*s", (int)(klen < sizeof path ? klen : sizeof path - 1), key);
    if (kind == OV_DEL && eq && eq[1])
        return at_fail(err, "cmdline", k, (int)(eq - arg) + 2, path, "~KEY removes a key and takes no value");
    if (kind != OV_DEL && !eq)
        return at_fail(err, "cmdline", k, 1, arg, "expected key.path=value, +key.path=value or ~key.path");
    if (!klen) return at_fail(err, "cmdline", k, off + 1, arg, "empty key");
    rb_ynode *val = NULL;
    if (kind != OV_DEL) {
        int rc = rb_yaml_parse(eq + 1, strlen(eq + 1), "cmdline", k, (int)(eq - arg) + 2, &val, err);
        if (rc) return rc;
    }
    return rb_cfg_assign(tree, path, kind, val, "cmdline", k, off + 1, err);
}

/* ---- composition ---- */

static int valid_block_name(const char *s) {
    if (!*s || *s == '/' || strstr(s, "..")) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("._-/", *s)) return 0;
    return 1;
}

/* " (did you mean 'models/x'?)" from the .yaml files of the item's directory. */
static void block_hint(const char *dir, const char *item, char *hint, size_t cap) {
    hint[0] = 0;
    const char *slash = strrchr(item, '/');
    char sub[256];
    snprintf(sub, sizeof sub, "%.*s", slash ? (int)(slash - item) : 0, item);
    char *d = rb_path_join(dir, sub);
    DIR *dp = d ? opendir(d) : NULL;
    free(d);
    if (!dp) return;
    char names[64][384];
    const char *cands[64];
    size_t n = 0;
    struct dirent *de;
    while (n < 64 && (de = readdir(dp))) {
        size_t len = strlen(de->d_name);
        if (len < 6 || len > 120 || strcmp(de->d_name + len - 5, ".yaml")) continue;
        snprintf(names[n], sizeof names[n], "%s%s%.*s", sub, *sub ? "/" : "", (int)(len - 5), de->d_name);
        cands[n] = names[n];
        n++;
    }
    closedir(dp);
    const char *s = rb_suggest(item, cands, n);
    if (s) snprintf(hint, cap, " (did you mean '%s'?)", s);
}

static int load_block(const rb_ynode *item, const char *configs_dir, rb_ynode **out, rb_error *err) {
    char key[32];
    *out = NULL;
    if (item->kind != RB_YSCALAR || !valid_block_name(item->str))
        return at_fail(err, item->file, item->line, item->col, "defaults",
                       "expected a building block name like models/stories260K");
    if (!configs_dir)
        return at_fail(err, item->file, item->line, item->col, "defaults",
                       "no configs directory to find %s in (pass --configs DIR)", item->str);
    size_t len = strlen(item->str);
    int has_ext = len > 5 && !strcmp(item->str + len - 5, ".yaml");
    char rel[600];
    snprintf(rel, sizeof rel, "%s%s", item->str, has_ext ? "" : ".yaml");
    char *path = rb_path_join(configs_dir, rel);
    if (!path) return oom(err);
    rb_ynode *b;
    int rc = rb_yaml_load_file(path, &b, err);
    if (rc == RB_ENOTFOUND) {
        char hint[300];
        block_hint(configs_dir, item->str, hint, sizeof hint);
        rc = at_fail(err, item->file, item->line, item->col, "defaults", "building block %s not found%s", path, hint);
    }
    free(path);
    if (rc) return rc;
    if (rb_ynode_is_null(b)) { /* an empty block */
        rb_ynode_free(b);
        return 0;
    }
    if (b->kind != RB_YMAP) {
        rc = at_fail(err, b->file, b->line, b->col, "(root)", "expected a map of keys");
    } else {
        size_t i;
        snprintf(key, sizeof key, "defaults");
        if (rb_ymap_get(b, key, &i))
            rc = at_fail(err, b->keys[i]->file, b->keys[i]->line, b->keys[i]->col, key,
                         "a building block cannot have defaults (one level only)");
    }
    if (rc) rb_ynode_free(b);
    else *out = b;
    return rc;
}

/* main (owned) composed with its defaults into *out. */
static int compose(rb_ynode *main, const char *configs_dir, rb_ynode **out, rb_error *err) {
    *out = NULL;
    if (rb_ynode_is_null(main)) {
        *out = main;
        return 0;
    }
    if (main->kind != RB_YMAP) {
        int rc = at_fail(err, main->file, main->line, main->col, "(root)", "expected a map of keys, got a %s",
                         main->kind == RB_YSEQ ? "list" : "scalar");
        rb_ynode_free(main);
        return rc;
    }
    size_t di;
    rb_ynode *defs = rb_ymap_get(main, "defaults", &di);
    if (!defs) {
        *out = main;
        return 0;
    }
    int rc = 0;
    if (!rb_ynode_is_null(defs) && defs->kind != RB_YSEQ)
        rc = at_fail(err, defs->file, defs->line, defs->col, "defaults",
                     "expected a list of building blocks like [models/stories260K, quant/w4a4]");
    rb_ynode *acc = rc ? NULL : rb_ynode_collection(RB_YMAP, main->file, main->line, main->col);
    if (!rc && !acc) rc = oom(err);
    for (size_t i = 0; !rc && defs->kind == RB_YSEQ && i < defs->n; i++) {
        rb_ynode *b;
        rc = load_block(defs->vals[i], configs_dir, &b, err);
        if (!rc && b && rb_ymerge(acc, b)) rc = oom(err);
        rb_ynode_free(b);
    }
    if (!rc) {
        rb_ymap_remove(main, di);
        if (rb_ymerge(acc, main)) rc = oom(err);
    }
    rb_ynode_free(main);
    if (rc) rb_ynode_free(acc);
    else *out = acc;
    return rc;
}

int rb_config_load_string(const char *text, size_t len, const char *file, const char *configs_dir,
                          const char *const *overrides, size_t n_overrides, rb_config *out, rb_error *err) {
    memset(out, 0, sizeof *out);
    rb_ynode *main, *tree;
    int rc = rb_yaml_parse(text, len, file, 1, 1, &main, err);
    if (rc) return rc;
    if ((rc = compose(main, configs_dir, &tree, err))) return rc;
    if (n_overrides && rb_ynode_is_null(tree)) {
        rb_ynode *m = rb_ynode_collection(RB_YMAP, tree->file, tree->line, tree->col);
        rb_ynode_free(tree);
        if (!(tree = m)) return oom(err);
    }
    for (size_t i = 0; i < n_overrides && !rc; i++) rc = apply_override(tree, overrides[i], (int)i + 1, err);
    if (rc) {
        rb_ynode_free(tree);
        return rc;
    }
    return rb_cfg_validate(tree, out, err);
}

int rb_config_load(const char *path, const char *configs_dir, const char *const *overrides, size_t n_overrides,
                   rb_config *out, rb_error *err) {
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    int rc = rb_read_file(path, RB_YAML_MAX_BYTES, &text, &len, err);
    if (rc) return rc;
    rc = rb_config_load_string(text, len, path, configs_dir, overrides, n_overrides, out, err);
    free(text);
    return rc;
}

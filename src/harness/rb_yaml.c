#include "harness/rb_yaml.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "core/rb_file.h"

/* ---- nodes ---- */

void rb_ynode_free(rb_ynode *n) {
    if (!n) return;
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys) rb_ynode_free(n->keys[i]);
        rb_ynode_free(n->vals[i]);
    }
    free(n->keys);
    free(n->vals);
    free(n->str);
    free(n->file);
    free(n);
}

static rb_ynode *node_new(int kind, const char *file, int line, int col) {
    rb_ynode *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->kind = kind;
    n->line = line;
    n->col = col;
    if (!(n->file = rb_strdup(file ? file : "?"))) {
        free(n);
        return NULL;
    }
    return n;
}

rb_ynode *rb_ynode_scalar(const char *s, int quoted, const char *file, int line, int col) {
    rb_ynode *n = node_new(RB_YSCALAR, file, line, col);
    if (!n) return NULL;
    n->quoted = quoted;
    if (!(n->str = rb_strdup(s))) {
        rb_ynode_free(n);
        return NULL;
    }
    return n;
}

rb_ynode *rb_ynode_collection(int kind, const char *file, int line, int col) {
    return node_new(kind, file, line, col);
}

/* Appends (key, val) — key NULL for sequences; takes ownership; frees both on failure. */
static int push(rb_ynode *c, rb_ynode *key, rb_ynode *val) {
    size_t m = c->n + 1;
    rb_ynode **v = realloc(c->vals, m * sizeof *v);
    if (v) c->vals = v;
    if (v && c->kind == RB_YMAP) {
        rb_ynode **k = realloc(c->keys, m * sizeof *k);
        if (k) c->keys = k;
        else v = NULL;
    }
    if (!v) {
        rb_ynode_free(key);
        rb_ynode_free(val);
        return RB_ENOMEM;
    }
    if (c->kind == RB_YMAP) c->keys[c->n] = key;
    c->vals[c->n++] = val;
    return 0;
}

int rb_yseq_push(rb_ynode *s, rb_ynode *val) { return push(s, NULL, val); }

rb_ynode *rb_ynode_copy(const rb_ynode *n) {
    if (!n) return NULL;
    rb_ynode *c = n->kind == RB_YSCALAR ? rb_ynode_scalar(n->str, n->quoted, n->file, n->line, n->col)
                                        : node_new(n->kind, n->file, n->line, n->col);
    if (!c) return NULL;
    for (size_t i = 0; i < n->n; i++) {
        rb_ynode *k = n->keys ? rb_ynode_copy(n->keys[i]) : NULL, *v = rb_ynode_copy(n->vals[i]);
        if (!v || (n->keys && !k) || push(c, k, v)) {
            if (!v || (n->keys && !k)) rb_ynode_free(k), rb_ynode_free(v);
            rb_ynode_free(c);
            return NULL;
        }
    }
    return c;
}

int rb_ynode_is_null(const rb_ynode *n) {
    if (!n || n->kind != RB_YSCALAR || n->quoted) return 0;
    const char *s = n->str;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

rb_ynode *rb_ymap_get(const rb_ynode *m, const char *key, size_t *index) {
    if (!m || m->kind != RB_YMAP) return NULL;
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->keys[i]->str, key)) {
            if (index) *index = i;
            return m->vals[i];
        }
    return NULL;
}

int rb_ymap_set(rb_ynode *m, rb_ynode *key, rb_ynode *val) {
    size_t i;
    if (rb_ymap_get(m, key->str, &i)) {
        rb_ynode_free(m->keys[i]);
        rb_ynode_free(m->vals[i]);
        m->keys[i] = key;
        m->vals[i] = val;
        return 0;
    }
    return push(m, key, val);
}

void rb_ymap_remove(rb_ynode *m, size_t i) {
    if (i >= m->n) return;
    rb_ynode_free(m->keys[i]);
    rb_ynode_free(m->vals[i]);
    memmove(m->keys + i, m->keys + i + 1, (m->n - i - 1) * sizeof *m->keys);
    memmove(m->vals + i, m->vals + i + 1, (m->n - i - 1) * sizeof *m->vals);
    m->n--;
}

int rb_ymerge(rb_ynode *dst, const rb_ynode *src) {
    for (size_t i = 0; i < src->n; i++) {
        const rb_ynode *sv = src->vals[i];
        rb_ynode *dv = rb_ymap_get(dst, src->keys[i]->str, NULL);
        if (dv && dv->kind == RB_YMAP && sv->kind == RB_YMAP) {
            if (rb_ymerge(dv, sv)) return RB_ENOMEM;
            continue;
        }
        rb_ynode *k = rb_ynode_copy(src->keys[i]), *v = rb_ynode_copy(sv);
        if (!k || !v) {
            rb_ynode_free(k);
            rb_ynode_free(v);
            return RB_ENOMEM;
        }
        if (rb_ymap_set(dst, k, v)) return RB_ENOMEM;
    }
    return 0;
}

int rb_yaml_oneline(rb_error *err, int code) {
    if (err)
        for (char *p = err->msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    return code;
}

/* ---- libyaml document → tree ---- */

typedef struct conv {
    yaml_document_t *doc;
    const char *file;
    int line0, col0;
    unsigned char *seen; /* per document node: already converted (a second visit is an alias) */
    rb_error *err;
} conv;

static void pos_of(const conv *c, yaml_mark_t m, int *line, int *col) {
    *line = c->line0 + (int)m.line;
    *col = (m.line == 0 ? c->col0 : 1) + (int)m.column;
}

static int conv_node(conv *c, int id, yaml_mark_t ref, const char *path, int depth, rb_ynode **out);

static int conv_fail(conv *c, yaml_mark_t m, const char *path, const char *what) {
    int l, k;
    pos_of(c, m, &l, &k);
    return rb_yaml_oneline(c->err, rb_error_set(c->err, RB_EINVAL, "%s:%d:%d: %s: %s", c->file, l, k,
                                                *path ? path : "(root)", what));
}

static int conv_node(conv *c, int id, yaml_mark_t ref, const char *path, int depth, rb_ynode **out) {
    yaml_node_t *y = yaml_document_get_node(c->doc, id);
    *out = NULL;
    if (!y) return conv_fail(c, ref, path, "dangling node");
    if (c->seen[id - 1]) return conv_fail(c, ref, path, "YAML aliases (*name) are not supported; write the value out");
    c->seen[id - 1] = 1;
    if (depth > RB_YAML_MAX_DEPTH) return conv_fail(c, y->start_mark, path, "nested too deeply");
    int line, col;
    pos_of(c, y->start_mark, &line, &col);
    const char *tag = (const char *)y->tag;
    if (y->type == YAML_SCALAR_NODE) {
        if (tag && strcmp(tag, YAML_STR_TAG))
            return conv_fail(c, y->start_mark, path, "explicit YAML tags (!!type) are not supported");
        if (memchr(y->data.scalar.value, 0, y->data.scalar.length))
            return conv_fail(c, y->start_mark, path, "value contains a NUL character");
        *out = rb_ynode_scalar((const char *)y->data.scalar.value, y->data.scalar.style != YAML_PLAIN_SCALAR_STYLE,
                               c->file, line, col);
        return *out ? 0 : rb_error_set(c->err, RB_ENOMEM, "%s: out of memory", c->file);
    }
    int is_map = y->type == YAML_MAPPING_NODE;
    if (tag && strcmp(tag, is_map ? YAML_MAP_TAG : YAML_SEQ_TAG))
        return conv_fail(c, y->start_mark, path, "explicit YAML tags (!!type) are not supported");
    rb_ynode *n = rb_ynode_collection(is_map ? RB_YMAP : RB_YSEQ, c->file, line, col);
    if (!n) return rb_error_set(c->err, RB_ENOMEM, "%s: out of memory", c->file);
    size_t cnt = is_map ? (size_t)(y->data.mapping.pairs.top - y->data.mapping.pairs.start)
                        : (size_t)(y->data.sequence.items.top - y->data.sequence.items.start);
    char sub[512];
    int rc = 0;
    if (cnt > RB_YAML_MAX_ITEMS) {
        rb_ynode_free(n);
        return conv_fail(c, y->start_mark, path, "too many entries");
    }
    for (size_t i = 0; i < cnt && !rc; i++) {
        rb_ynode *k = NULL, *v = NULL;
        if (is_map) {
            yaml_node_pair_t *p = y->data.mapping.pairs.start + i;
            yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
            if (!kn || kn->type != YAML_SCALAR_NODE) {
                rc = conv_fail(c, kn ? kn->start_mark : y->start_mark, path, "mapping keys must be plain names");
                break;
            }
            if ((rc = conv_node(c, p->key, kn->start_mark, path, depth + 1, &k))) break;
            snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", k->str);
            size_t j;
            if (rb_ymap_get(n, k->str, &j)) {
                char what[128];
                snprintf(what, sizeof what, "duplicate key (first at %d:%d)", n->keys[j]->line, n->keys[j]->col);
                rc = conv_fail(c, kn->start_mark, sub, what);
                rb_ynode_free(k);
                break;
            }
            rc = conv_node(c, p->value, kn->start_mark, sub, depth + 1, &v);
        } else {
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            rc = conv_node(c, y->data.sequence.items.start[i], y->start_mark, sub, depth + 1, &v);
        }
        if (rc) {
            rb_ynode_free(k);
            break;
        }
        if (push(n, k, v)) rc = rb_error_set(c->err, RB_ENOMEM, "%s: out of memory", c->file);
    }
    if (rc) {
        rb_ynode_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

/* Line and column (1-based, shifted) of byte offset `off` of text. */
static void offset_pos(const char *text, size_t len, size_t off, int line0, int col0, int *line, int *col) {
    int l = 0;
    size_t bol = 0;
    for (size_t i = 0; i < off && i < len; i++)
        if (text[i] == '\n') l++, bol = i + 1;
    *line = line0 + l;
    *col = (l == 0 ? col0 : 1) + (int)(off - bol);
}

static int parser_fail(yaml_parser_t *p, const char *text, size_t len, const char *file, int line0, int col0,
                       rb_error *err) {
    if (p->error == YAML_MEMORY_ERROR) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", file);
    int l, k;
    const char *problem = p->problem ? p->problem : "malformed YAML";
    if (p->error == YAML_READER_ERROR) {
        offset_pos(text, len, p->problem_offset, line0, col0, &l, &k);
        return rb_error_set(err, RB_EINVAL, "%s:%d:%d: yaml: %s", file, l, k, problem);
    }
    conv c = {.line0 = line0, .col0 = col0};
    pos_of(&c, p->problem_mark, &l, &k);
    if (p->problem_mark.index >= len) /* at the end of the input: name its last position */
        offset_pos(text, len, len, line0, col0, &l, &k);
    if (p->context) {
        int cl, ck;
        pos_of(&c, p->context_mark, &cl, &ck);
        /* `{path: ${X}/y}`: the '}' of ${X} closes the flow map. Say so when the line has "${". */
        const char *hint = "";
        size_t bol = p->context_mark.index < len ? p->context_mark.index : len;
        while (bol > 0 && text[bol - 1] != '\n') bol--;
        size_t eol = bol;
        while (eol < len && text[eol] != '\n') eol++;
        if (strstr(p->context, "flow") && memmem(text + bol, eol - bol, "${", 2))
            hint = "; quote values with ${...} inside {...} or [...]";
        return rb_error_set(err, RB_EINVAL, "%s:%d:%d: yaml: %s (%s at %d:%d)%s", file, l, k, problem, p->context, cl,
                            ck, hint);
    }
    return rb_error_set(err, RB_EINVAL, "%s:%d:%d: yaml: %s", file, l, k, problem);
}

int rb_yaml_parse(const char *text, size_t len, const char *file, int line0, int col0, rb_ynode **out,
                  rb_error *err) {
    *out = NULL;
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", file);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    yaml_document_t doc;
    if (!yaml_parser_load(&p, &doc)) {
        int rc = parser_fail(&p, text, len, file, line0, col0, err);
        yaml_parser_delete(&p);
        return rc;
    }
    int rc = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        *out = rb_ynode_scalar("", 0, file, line0, col0);
        if (!*out) rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", file);
    } else {
        size_t nn = (size_t)(doc.nodes.top - doc.nodes.start);
        conv c = {&doc, file, line0, col0, calloc(nn ? nn : 1, 1), err};
        if (!c.seen) rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", file);
        else rc = conv_node(&c, 1, root->start_mark, "", 0, out);
        free(c.seen);
    }
    yaml_document_delete(&doc);
    if (!rc) { /* a second document is an error (a stray '---' usually means a mistake) */
        yaml_document_t d2;
        if (!yaml_parser_load(&p, &d2)) {
            rc = parser_fail(&p, text, len, file, line0, col0, err);
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&d2);
            if (r2) {
                conv c = {.line0 = line0, .col0 = col0};
                int l, k;
                pos_of(&c, r2->start_mark, &l, &k);
                rc = rb_error_set(err, RB_EINVAL, "%s:%d:%d: yaml: a second YAML document; one per file", file, l, k);
            }
            yaml_document_delete(&d2);
        }
        if (rc) {
            rb_ynode_free(*out);
            *out = NULL;
        }
    }
    yaml_parser_delete(&p);
    return rc;
}

int rb_yaml_load_file(const char *path, rb_ynode **out, rb_error *err) {
    char *text;
    size_t len;
    *out = NULL;
    int rc = rb_read_file(path, RB_YAML_MAX_BYTES, &text, &len, err);
    if (rc) return rc;
    rc = rb_yaml_parse(text, len, path, 1, 1, out, err);
    free(text);
    return rc;
}

/* ---- emitting ---- */

static void ybuf_put(rb_ybuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void rb_ybuf_puts(rb_ybuf *b, const char *s) { ybuf_put(b, s, strlen(s)); }

void rb_ybuf_printf(rb_ybuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        ybuf_put(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    ybuf_put(b, big, (size_t)n);
    free(big);
}

char *rb_ybuf_take(rb_ybuf *b) {
    if (b->oom) {
        free(b->s);
        *b = (rb_ybuf){0};
        return NULL;
    }
    char *s = b->s ? b->s : rb_strdup("");
    *b = (rb_ybuf){0};
    return s;
}

static int plain_chars(const char *s) {
    if (!*s || !strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./", *s)) return 0;
    for (const char *p = s + 1; *p; p++)
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./+-", *p)) return 0;
    return 1;
}

/* Could a YAML 1.1/1.2 reader take this plain text for null, a boolean or a number? */
static int ambiguous(const char *s) {
    static const char *const words[] = {"null", "true", "false", "yes", "no", "on", "off", "y", "n", NULL};
    for (int i = 0; words[i]; i++)
        if (!strcasecmp(s, words[i])) return 1;
    const char *p = s + (*s == '.');
    return (*p >= '0' && *p <= '9') || !strcasecmp(s, ".inf") || !strcasecmp(s, ".nan");
}

static void put_quoted(rb_ybuf *b, const char *s) {
    rb_ybuf_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') rb_ybuf_printf(b, "\\%c", *p);
        else if (*p == '\n') rb_ybuf_puts(b, "\\n");
        else if (*p == '\t') rb_ybuf_puts(b, "\\t");
        else if (*p < 0x20 || *p == 0x7f) rb_ybuf_printf(b, "\\x%02x", *p);
        /* UTF-8 that a YAML reader would not take back as written: C1 controls (U+0085 NEL is a line
         * break and folds) and the line/paragraph separators U+2028/U+2029, escaped (fuzz finding:
         * a path holding "\N" was not a fixed point of load → emit → load) */
        else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) rb_ybuf_printf(b, "\\x%02x", *++p);
        else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
            rb_ybuf_puts(b, p[2] == 0xa8 ? "\\L" : "\\P");
            p += 2;
        } else ybuf_put(b, (const char *)p, 1);
    }
    rb_ybuf_puts(b, "\"");
}

void rb_ybuf_str(rb_ybuf *b, const char *s) {
    if (plain_chars(s) && !ambiguous(s)) rb_ybuf_puts(b, s);
    else put_quoted(b, s);
}

void rb_ybuf_flow(rb_ybuf *b, const rb_ynode *n) {
    if (n->kind == RB_YSCALAR) {
        if (n->quoted) rb_ybuf_str(b, n->str);
        else if (rb_ynode_is_null(n)) rb_ybuf_puts(b, "null");
        else if (plain_chars(n->str) || ((*n->str == '-' || *n->str == '+') && plain_chars(n->str + 1)))
            rb_ybuf_puts(b, n->str);
        else put_quoted(b, n->str);
        return;
    }
    rb_ybuf_puts(b, n->kind == RB_YMAP ? "{" : "[");
    for (size_t i = 0; i < n->n; i++) {
        if (i) rb_ybuf_puts(b, ", ");
        if (n->kind == RB_YMAP) {
            rb_ybuf_str(b, n->keys[i]->str);
            rb_ybuf_puts(b, ": ");
        }
        rb_ybuf_flow(b, n->vals[i]);
    }
    rb_ybuf_puts(b, n->kind == RB_YMAP ? "}" : "]");
}

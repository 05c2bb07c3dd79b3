/* rb_taskfile: task names, format detection, the reading loop (blank lines, limit), the string arena,
 * PIQA's labels file and llama.cpp's HellaSwag text file. The JSON record parsers and lm-eval's prompts
 * are in rb_taskfile_lmeval.c. */
#include "tasks/rb_taskfile.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"
#include "tasks/rb_taskfile_int.h"

/* ---- names ---- */

static const char *const k_task_names[RB_TASK_COUNT] = {
    "piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "lambada_openai", "boolq", "openbookqa", "copa",
};
static const char *const k_task_labels[RB_TASK_COUNT] = {
    "PIQA", "ARC-e", "ARC-c", "HellaSwag", "WinoGrande", "LAMBADA", "BoolQ", "OBQA", "COPA",
};
#define N_FORMATS (RB_TFMT_HELLASWAG_TXT + 1)
static const char *const k_format_names[N_FORMATS] = {
    NULL,    "piqa",       "arc",        "hellaswag-jsonl", "winogrande",    "lambada",
    "boolq", "copa",       "foundry-mc", "foundry-schema",  "foundry-lm",    "hellaswag-txt",
};

int rb_task_from_name(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < RB_TASK_COUNT; t++)
        if (strcmp(name, k_task_names[t]) == 0) return t;
    if (strcmp(name, "lambada") == 0) return RB_TASK_LAMBADA;
    return -1;
}

const char *rb_task_name(int task) { return task >= 0 && task < RB_TASK_COUNT ? k_task_names[task] : "unknown"; }

const char *rb_task_label(int task) { return task >= 0 && task < RB_TASK_COUNT ? k_task_labels[task] : "?"; }

const char *rb_task_format_name(int format) {
    return format > 0 && format < N_FORMATS ? k_format_names[format] : "unknown";
}

static const char *const scoring_names[] = {NULL, "choice", "greedy", "llamacpp"};

const char *rb_task_scoring_name(int scoring) {
    return scoring >= RB_SCORE_CHOICE && scoring <= RB_SCORE_LLAMACPP ? scoring_names[scoring] : NULL;
}

int rb_task_scoring_from_name(const char *name) {
    for (int s = RB_SCORE_CHOICE; name && s <= RB_SCORE_LLAMACPP; s++)
        if (!strcmp(name, scoring_names[s])) return s;
    return -1;
}

int rb_task_primary_metric(int task, int scoring) {
    return (rb_task_metrics(task, scoring) & RB_METRIC_ACC_NORM) ? RB_METRIC_ACC_NORM : RB_METRIC_ACC;
}

int rb_task_metrics(int task, int scoring) {
    switch (task) {
    case RB_TASK_PIQA:
    case RB_TASK_ARC_EASY:
    case RB_TASK_ARC_CHALLENGE:
    case RB_TASK_OPENBOOKQA:
        return RB_METRIC_ACC | RB_METRIC_ACC_NORM;
    case RB_TASK_HELLASWAG:
        return scoring == RB_SCORE_LLAMACPP ? RB_METRIC_ACC : RB_METRIC_ACC | RB_METRIC_ACC_NORM;
    case RB_TASK_WINOGRANDE:
    case RB_TASK_BOOLQ:
    case RB_TASK_COPA:
        return RB_METRIC_ACC;
    case RB_TASK_LAMBADA:
        return RB_METRIC_ACC | RB_METRIC_PPL;
    default:
        return 0;
    }
}

/* Formats that can hold each task (bit 1 << format). */
static unsigned task_formats(int task) {
#define F(x) (1u << (x))
    switch (task) {
    case RB_TASK_PIQA: return F(RB_TFMT_PIQA);
    case RB_TASK_ARC_EASY:
    case RB_TASK_ARC_CHALLENGE:
    case RB_TASK_OPENBOOKQA: return F(RB_TFMT_ARC) | F(RB_TFMT_FOUNDRY_MC);
    case RB_TASK_HELLASWAG: return F(RB_TFMT_HELLASWAG_JSONL) | F(RB_TFMT_HELLASWAG_TXT);
    case RB_TASK_WINOGRANDE: return F(RB_TFMT_WINOGRANDE) | F(RB_TFMT_FOUNDRY_SCHEMA);
    case RB_TASK_LAMBADA: return F(RB_TFMT_LAMBADA) | F(RB_TFMT_FOUNDRY_LM);
    case RB_TASK_BOOLQ: return F(RB_TFMT_BOOLQ) | F(RB_TFMT_FOUNDRY_MC);
    case RB_TASK_COPA: return F(RB_TFMT_COPA) | F(RB_TFMT_FOUNDRY_MC);
    default: return 0;
    }
#undef F
}

/* "hellaswag-jsonl or hellaswag-txt" */
static void task_formats_text(int task, char *buf, size_t cap) {
    buf[0] = '\0';
    size_t len = 0;
    unsigned m = task_formats(task);
    for (int f = 1; f < N_FORMATS && len < cap; f++) {
        if (!(m & (1u << f))) continue;
        m &= ~(1u << f);
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", len ? (m ? ", " : " or ") : "", k_format_names[f]);
    }
}

/* ---- arena ---- */

typedef struct rb_tf_block {
    struct rb_tf_block *next;
    size_t used, cap;
    max_align_t data[];
} rb_tf_block;

struct rb_tf_arena {
    rb_tf_block *head;
};

#define ARENA_BLOCK ((size_t)64 * 1024)

rb_tf_arena *rb_tf_arena_new(void) { return calloc(1, sizeof(rb_tf_arena)); }

void rb_tf_arena_free(rb_tf_arena *a) {
    if (!a) return;
    for (rb_tf_block *b = a->head, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    free(a);
}

void *rb_tf_arena_alloc(rb_tf_arena *a, size_t n) {
    const size_t al = alignof(max_align_t);
    if (n > SIZE_MAX / 2) return NULL;
    n = (n + al - 1) / al * al;
    if (n == 0) n = al;
    rb_tf_block *h = a->head;
    if (h && h->cap - h->used >= n) {
        void *p = (char *)h->data + h->used;
        h->used += n;
        return p;
    }
    size_t cap = n > ARENA_BLOCK / 4 ? n : ARENA_BLOCK; /* a large string gets a block of its own */
    rb_tf_block *b = malloc(sizeof *b + cap);
    if (!b) return NULL;
    b->cap = cap;
    b->used = n;
    if (cap == n && h) { /* keep the current block's free space for the next small strings */
        b->next = h->next;
        h->next = b;
    } else {
        b->next = h;
        a->head = b;
    }
    return b->data;
}

char *rb_tf_arena_strn(rb_tf_arena *a, const char *s, size_t n) {
    char *p = rb_tf_arena_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

int rb_tf_doc_alloc(rb_tf_reader *r, rb_task_doc *doc, int n) {
    char **v = rb_tf_arena_alloc(r->arena, 3 * (size_t)n * sizeof *v);
    if (!v) return rb_tf_oom(r);
    doc->n_req = n;
    doc->ctx = v;
    doc->cont = v + n;
    doc->choice = v + 2 * (size_t)n;
    return 0;
}

int rb_tf_oom(rb_tf_reader *r) { return rb_error_set(r->err, RB_ENOMEM, "%s:%d: out of memory", r->path, r->line); }

/* ---- lines ---- */

typedef struct span {
    const char *p;
    size_t n;
} span;

/* The next line of data[0..size) from *pos, without its '\n'; 0 at the end (a final '\n' ends the last line,
 * it does not start an empty one). */
static int next_line(const char *data, size_t size, size_t *pos, span *out) {
    if (*pos >= size) return 0;
    const char *s = data + *pos;
    const char *nl = memchr(s, '\n', size - *pos);
    size_t n = nl ? (size_t)(nl - s) : size - *pos;
    *pos += n + (nl ? 1 : 0);
    out->p = s;
    out->n = n;
    return 1;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

static int is_blank(span l) {
    for (size_t i = 0; i < l.n; i++)
        if (!is_ws(l.p[i])) return 0;
    return 1;
}

static span strip_cr(span l) {
    if (l.n && l.p[l.n - 1] == '\r') l.n--;
    return l;
}

static span trim(span l) {
    while (l.n && is_ws(l.p[0])) l.p++, l.n--;
    while (l.n && is_ws(l.p[l.n - 1])) l.n--;
    return l;
}

/* Decimal integer (optional sign, digits only); 0 on success. */
static int parse_long(span s, long *out) {
    size_t i = 0;
    int neg = 0;
    if (i < s.n && (s.p[i] == '-' || s.p[i] == '+')) neg = s.p[i++] == '-';
    if (i == s.n) return -1;
    long v = 0;
    for (; i < s.n; i++) {
        if (s.p[i] < '0' || s.p[i] > '9' || v > 100000000) return -1;
        v = v * 10 + (s.p[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

static int grow_docs(rb_task_set *ts, int *cap) {
    if (ts->n_docs < *cap) return 0;
    int nc = *cap ? *cap * 2 : 256;
    rb_task_doc *d = realloc(ts->docs, (size_t)nc * sizeof *d);
    if (!d) return -1;
    ts->docs = d;
    *cap = nc;
    return 0;
}

/* ---- llama.cpp's hellaswag_val_full.txt: per task a context line, the gold index (0..3), 4 endings ---- */

static int read_hellaswag_txt(rb_tf_reader *r, const rb_mapped *m, long limit, rb_task_set *ts) {
    const char *data = (const char *)m->data;
    size_t size = m->size;
    while (size && (data[size - 1] == '\n' || data[size - 1] == '\r')) size--; /* trailing empty lines */
    size_t pos = 0;
    int lineno = 0, cap = 0;
    span l;
    while (pos < size && (limit <= 0 || ts->n_docs < limit)) {
        span lines[6];
        int first = lineno + 1, got = 0;
        while (got < 6 && next_line(data, size, &pos, &l)) {
            lines[got++] = strip_cr(l);
            lineno++;
        }
        r->line = first;
        if (got < 6)
            return rb_error_set(r->err, RB_EFORMAT,
                                "%s:%d: truncated task: %d of its 6 lines (context, gold index, 4 endings) before "
                                "the end of the file at line %d",
                                r->path, first, got, lineno);
        long gold;
        span g = trim(lines[1]);
        if (parse_long(g, &gold) != 0)
            return rb_error_set(r->err, RB_EFORMAT, "%s:%d: gold index '%.*s' is not an integer (expected the "
                                "6-line layout: context, gold index 0..3, 4 endings)",
                                r->path, first + 1, (int)(g.n > 40 ? 40 : g.n), g.p);
        if (gold < 0 || gold > 3)
            return rb_error_set(r->err, RB_EFORMAT, "%s:%d: gold %ld out of range 0..3", r->path, first + 1, gold);
        if (grow_docs(ts, &cap) != 0) return rb_tf_oom(r);
        rb_task_doc *d = &ts->docs[ts->n_docs];
        memset(d, 0, sizeof *d);
        int rc = rb_tf_doc_alloc(r, d, 4);
        if (rc != 0) return rc;
        char *ctx = rb_tf_arena_strn(r->arena, lines[0].p, lines[0].n);
        if (!ctx) return rb_tf_oom(r);
        for (int k = 0; k < 4; k++) {
            span e = lines[2 + k];
            if (e.n == 0) return rb_error_set(r->err, RB_EFORMAT, "%s:%d: empty ending %d", r->path, first + 2 + k, k);
            /* llama.cpp tokenizes context + " " + ending */
            char *cont = rb_tf_arena_alloc(r->arena, e.n + 2);
            if (!cont) return rb_tf_oom(r);
            cont[0] = ' ';
            memcpy(cont + 1, e.p, e.n);
            cont[e.n + 1] = '\0';
            d->ctx[k] = ctx;
            d->cont[k] = cont;
            d->choice[k] = cont + 1;
        }
        d->gold = (int)gold;
        d->line = first;
        ts->n_docs++;
    }
    return 0;
}

/* ---- PIQA labels file: one 0/1 per line, as many lines as documents ---- */

char *rb_taskfile_default_labels(const char *path) {
    size_t n = strlen(path);
    if (n > 6 && strcmp(path + n - 6, ".jsonl") == 0) n -= 6;
    char *def = malloc(n + sizeof "-labels.lst");
    if (!def) return NULL;
    memcpy(def, path, n);
    memcpy(def + n, "-labels.lst", sizeof "-labels.lst");
    return def;
}

static int read_piqa_labels(rb_tf_reader *r, const char *labels, int total_docs, rb_task_set *ts) {
    char *def = NULL;
    if (!labels) {
        if (!(def = rb_taskfile_default_labels(r->path))) return rb_tf_oom(r);
        labels = def;
    }
    rb_mapped m;
    rb_error e2 = {0};
    int rc = rb_mapped_open(&m, labels, &e2);
    if (rc != 0) {
        if (rc == RB_ENOTFOUND)
            rb_error_set(r->err, rc, "%s: PIQA labels file not found (the records of %s have no \"label\"; the "
                         "labels file is needed)", labels, r->path);
        else
            rb_error_set(r->err, rc, "PIQA labels: %s", e2.msg);
        free(def);
        return rc;
    }
    const char *data = (const char *)m.data;
    size_t size = m.size;
    while (size && is_ws(data[size - 1])) size--; /* trailing blank lines */
    size_t pos = 0;
    int lineno = 0;
    span l;
    rc = 0;
    while (next_line(data, size, &pos, &l)) {
        lineno++;
        span v = trim(l);
        if (lineno > total_docs) {
            rc = rb_error_set(r->err, RB_EFORMAT, "%s:%d: more labels than the %d documents of %s", labels, lineno,
                              total_docs, r->path);
            break;
        }
        if (v.n != 1 || (v.p[0] != '0' && v.p[0] != '1')) {
            rc = rb_error_set(r->err, RB_EFORMAT, "%s:%d: label '%.*s' is not 0 or 1", labels, lineno,
                              (int)(v.n > 40 ? 40 : v.n), v.p);
            break;
        }
        if (lineno <= ts->n_docs) ts->docs[lineno - 1].gold = v.p[0] - '0';
    }
    if (rc == 0 && lineno < total_docs)
        rc = rb_error_set(r->err, RB_EFORMAT, "%s:%d: the labels file ends after %d labels but %s has %d documents",
                          labels, lineno > 0 ? lineno : 1, lineno, r->path, total_docs);
    rb_mapped_close(&m);
    free(def);
    return rc;
}

/* ---- reading ---- */

void rb_task_set_free(rb_task_set *ts) {
    if (!ts) return;
    free(ts->path);
    free(ts->docs);
    rb_tf_arena_free(ts->arena);
    memset(ts, 0, sizeof *ts);
}

/* First record: its format must fit the task. */
static int check_first(rb_tf_reader *r, const json_t *obj, const char *labels) {
    char want[200];
    task_formats_text(r->task, want, sizeof want);
    int f = rb_tf_detect(obj);
    if (!f) {
        char keys[300];
        size_t len = 0;
        int nk = 0;
        const char *key;
        json_t *v;
        keys[0] = '\0';
        json_object_foreach((json_t *)obj, key, v) {
            (void)v;
            if (len < sizeof keys)
                len += (size_t)snprintf(keys + len, sizeof keys - len, "%s%.40s", nk ? ", " : "", key);
            nk++;
        }
        return rb_error_set(r->err, RB_EFORMAT, "%s:%d: unrecognized record layout {%s} (task %s reads %s files)",
                            r->path, r->line, keys, rb_task_name(r->task), want);
    }
    if (!(task_formats(r->task) & (1u << f)))
        return rb_error_set(r->err, RB_EFORMAT, "%s:%d: task %s cannot be read from a %s file (it reads %s)", r->path,
                            r->line, rb_task_name(r->task), k_format_names[f], want);
    r->format = f;
    r->piqa_inline_labels = f == RB_TFMT_PIQA && !labels && json_object_get(obj, "label") != NULL;
    return 0;
}

static int read_jsonl(rb_tf_reader *r, const rb_mapped *m, const char *labels, long limit, rb_task_set *ts,
                      int *total_docs) {
    const char *data = (const char *)m->data;
    size_t pos = 0;
    int lineno = 0, cap = 0;
    span l;
    *total_docs = 0;
    while (next_line(data, m->size, &pos, &l)) {
        lineno++;
        if (is_blank(l)) continue;
        if (limit > 0 && ts->n_docs >= limit) {
            /* PIQA with a labels file: count the remaining documents, the labels must match them all */
            if (r->format != RB_TFMT_PIQA || r->piqa_inline_labels) break;
            (*total_docs)++;
            continue;
        }
        r->line = lineno;
        json_error_t je;
        json_t *j = json_loadb(l.p, l.n, JSON_DECODE_ANY, &je);
        if (!j)
            return rb_error_set(r->err, RB_EFORMAT, "%s:%d:%d: invalid JSON: %s", r->path, lineno, je.column,
                                je.text);
        int rc = 0;
        if (!json_is_object(j))
            rc = rb_error_set(r->err, RB_EFORMAT, "%s:%d: the line is %s, not a JSON object", r->path, lineno,
                              rb_tf_json_type(j));
        if (rc == 0 && r->format == 0) rc = check_first(r, j, labels);
        if (rc == 0 && grow_docs(ts, &cap) != 0) rc = rb_tf_oom(r);
        if (rc == 0) {
            rb_task_doc *d = &ts->docs[ts->n_docs];
            memset(d, 0, sizeof *d);
            d->line = lineno;
            rc = rb_tf_parse_record(r, j, d);
        }
        json_decref(j);
        if (rc != 0) return rc;
        ts->n_docs++;
        (*total_docs)++;
    }
    return 0;
}

/* JSON lines (1) or text (0, llama.cpp HellaSwag), by the first non-blank line; -1 when there is none. */
static int looks_like_jsonl(const rb_mapped *m) {
    const char *data = (const char *)m->data;
    size_t pos = 0;
    span l;
    while (next_line(data, m->size, &pos, &l)) {
        if (is_blank(l)) continue;
        span t = trim(l);
        if (t.p[0] == '{') return 1;
        if (t.p[0] != '[') return 0;
        json_t *j = json_loadb(t.p, t.n, 0, NULL); /* a JSON array line: a JSON file (refused later) */
        json_decref(j);
        return j != NULL;
    }
    return -1;
}

int rb_taskfile_read(const char *path, int task, const char *labels, long limit, rb_task_set *ts, rb_error *err) {
    memset(ts, 0, sizeof *ts);
    if (task < 0 || task >= RB_TASK_COUNT) return rb_error_set(err, RB_EINVAL, "%s: unknown task id %d", path, task);
    rb_mapped m;
    int rc = rb_mapped_open(&m, path, err);
    if (rc != 0) return rc;
    rb_tf_reader r = {.path = path, .task = task, .err = err};
    ts->task = task;
    ts->path = rb_strdup(path);
    ts->arena = r.arena = rb_tf_arena_new();
    if (!ts->path || !ts->arena) {
        rc = rb_tf_oom(&r);
        goto done;
    }
    int total_docs = 0;
    int kind = looks_like_jsonl(&m);
    if (kind == 1) {
        rc = read_jsonl(&r, &m, labels, limit, ts, &total_docs);
        if (rc == 0 && ts->n_docs > 0 && r.format == RB_TFMT_PIQA && !r.piqa_inline_labels)
            rc = read_piqa_labels(&r, labels, total_docs, ts);
    } else if (kind == 0) {
        r.format = RB_TFMT_HELLASWAG_TXT;
        if (!(task_formats(task) & (1u << RB_TFMT_HELLASWAG_TXT))) {
            char want[200];
            task_formats_text(task, want, sizeof want);
            rc = rb_error_set(err, RB_EFORMAT,
                              "%s:1: task %s cannot be read from a hellaswag-txt file (not JSON lines; it reads %s)",
                              path, rb_task_name(task), want);
        } else {
            rc = read_hellaswag_txt(&r, &m, limit, ts);
        }
    }
    if (rc == 0 && ts->n_docs == 0)
        rc = rb_error_set(err, RB_EFORMAT, "%s: no documents (the file is empty or blank)", path);
    if (rc == 0) {
        ts->format = r.format;
        ts->scoring = r.format == RB_TFMT_HELLASWAG_TXT ? RB_SCORE_LLAMACPP
                      : task == RB_TASK_LAMBADA         ? RB_SCORE_GREEDY
                                                        : RB_SCORE_CHOICE;
    }
done:
    rb_mapped_close(&m);
    if (rc != 0) rb_task_set_free(ts);
    return rc;
}

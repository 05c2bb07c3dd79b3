/* rb_taskfile_lmeval: one parser per JSON record layout, building lm-evaluation-harness's prompts
 * (lm-eval @ 4e7e0d47: piqa.yaml, arc_easy.yaml, openbookqa.yaml, hellaswag/utils.py,
 * winogrande/preprocess_winogrande.py, lambada_openai.yaml, super_glue/boolq, super_glue/copa/utils.py).
 * Requests: ctx = doc_to_text (per option for winogrande), cont = target_delimiter " " + choice. String
 * operations follow Python's semantics (str.strip, slicing by characters, re.sub) on UTF-8 bytes. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tasks/rb_taskfile_int.h"

/* ---- Python string semantics on UTF-8 ---- */

/* Bytes of the character at p[0..n) when Python's str.isspace() holds for it, else 0: ASCII \t\n\v\f\r,
 * \x1c-\x1f and space, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000. */
static size_t ws_at(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    if (n == 0) return 0;
    if (p[0] == ' ' || (p[0] >= 0x09 && p[0] <= 0x0d) || (p[0] >= 0x1c && p[0] <= 0x1f)) return 1;
    if (n >= 2 && p[0] == 0xc2 && (p[1] == 0x85 || p[1] == 0xa0)) return 2;
    if (n >= 3) {
        if (p[0] == 0xe1 && p[1] == 0x9a && p[2] == 0x80) return 3;
        if (p[0] == 0xe2 && p[1] == 0x80 &&
            ((p[2] >= 0x80 && p[2] <= 0x8a) || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf))
            return 3;
        if (p[0] == 0xe2 && p[1] == 0x81 && p[2] == 0x9f) return 3;
        if (p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x80) return 3;
    }
    return 0;
}

/* Bytes of a whitespace character ending at s[n), else 0. */
static size_t ws_before(const char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++)
        if (ws_at(s + n - k, k) == k) return k;
    return 0;
}

/* Python str.lstrip() / str.strip(): narrows [*s, *s + *n). */
static void py_lstrip(const char **s, size_t *n) {
    size_t w;
    while (*n && (w = ws_at(*s, *n)) != 0) *s += w, *n -= w;
}

static void py_strip(const char **s, size_t *n) {
    size_t w;
    py_lstrip(s, n);
    while (*n && (w = ws_before(*s, *n)) != 0) *n -= w;
}

static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }
static char ascii_upper(char c) { return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c; }

/* Python str.capitalize(), in place: first character upper-case, all the rest lower-case. ASCII letters only:
 * non-ASCII bytes are left as they are (Python would also change e.g. 'É' to 'é'; a UTF-8 lead or continuation
 * byte is never an ASCII letter, so a multi-byte character is left whole). */
static void py_capitalize(char *s) {
    if (!*s) return;
    s[0] = ascii_upper(s[0]);
    for (char *p = s + 1; *p; p++) *p = ascii_lower(*p);
}

/* lm-eval hellaswag/utils.py preprocess(), in place on a NUL-terminated string; returns the new length:
 *   text = text.strip(); text = text.replace(" [title]", ". "); text = re.sub("\\[.*?\\]", "", text);
 *   text = text.replace("  ", " ")
 * Every step shrinks the text, so each writes behind where it reads. */
static size_t hellaswag_preprocess(char *s) {
    const char *b = s;
    size_t n = strlen(s);
    py_strip(&b, &n);
    memmove(s, b, n);
    size_t w = 0;
    for (size_t i = 0; i < n;) { /* " [title]" -> ". " */
        if (n - i >= 8 && memcmp(s + i, " [title]", 8) == 0) {
            s[w++] = '.';
            s[w++] = ' ';
            i += 8;
        } else {
            s[w++] = s[i++];
        }
    }
    n = w;
    w = 0;
    for (size_t i = 0; i < n;) { /* non-greedy "[...]": the first ']' after '[', '.' does not match '\n' */
        if (s[i] == '[') {
            size_t j = i + 1;
            while (j < n && s[j] != ']' && s[j] != '\n') j++;
            if (j < n && s[j] == ']') {
                i = j + 1;
                continue;
            }
        }
        s[w++] = s[i++];
    }
    n = w;
    w = 0;
    for (size_t i = 0; i < n;) { /* str.replace("  ", " "): one pass, left to right, so "   " -> "  " */
        if (i + 1 < n && s[i] == ' ' && s[i + 1] == ' ') {
            s[w++] = ' ';
            i += 2;
        } else {
            s[w++] = s[i++];
        }
    }
    s[w] = '\0';
    return w;
}

/* ---- building strings in the arena ---- */

typedef struct piece {
    const char *s;
    size_t n;
} piece;

#define P(str) ((piece){(str), strlen(str)})
#define PN(str, len) ((piece){(str), (len)})
#define JOIN(r, ...) join((r), (piece[]){__VA_ARGS__}, (int)(sizeof((piece[]){__VA_ARGS__}) / sizeof(piece)))

static char *join(rb_tf_reader *r, const piece *v, int count) {
    size_t n = 0;
    for (int i = 0; i < count; i++) n += v[i].n;
    char *p = rb_tf_arena_alloc(r->arena, n + 1);
    if (!p) return NULL;
    char *w = p;
    for (int i = 0; i < count; i++) {
        if (v[i].n) memcpy(w, v[i].s, v[i].n);
        w += v[i].n;
    }
    *w = '\0';
    return p;
}

/* ---- errors ---- */

static int fail(rb_tf_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(rb_tf_reader *r, const char *fmt, ...) {
    char msg[RB_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rb_error_set(r->err, RB_EFORMAT, "%s:%d: %s", r->path, r->line, msg);
}

const char *rb_tf_json_type(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    default: return "null";
    }
}

const char *rb_tf_layout(int format) {
    switch (format) {
    case RB_TFMT_PIQA: return "the PIQA release layout {goal, sol1, sol2}";
    case RB_TFMT_ARC:
        return "the AI2 ARC / OpenBookQA layout {id, question: {stem, choices: [{text, label}]}, answerKey}";
    case RB_TFMT_HELLASWAG_JSONL: return "the HellaSwag layout {activity_label, ctx_a, ctx_b, endings, label}";
    case RB_TFMT_WINOGRANDE: return "the WinoGrande layout {sentence, option1, option2, answer}";
    case RB_TFMT_LAMBADA: return "the LAMBADA layout {text}";
    case RB_TFMT_BOOLQ: return "the SuperGLUE BoolQ layout {question, passage, idx, label}";
    case RB_TFMT_COPA: return "the SuperGLUE COPA layout {premise, choice1, choice2, question, label}";
    case RB_TFMT_FOUNDRY_MC: return "the llm-foundry multiple-choice layout {query, choices, gold}";
    case RB_TFMT_FOUNDRY_SCHEMA: return "the llm-foundry schema layout {context_options, continuation, gold}";
    case RB_TFMT_FOUNDRY_LM: return "the llm-foundry language-modeling layout {context, continuation}";
    case RB_TFMT_HELLASWAG_TXT: return "llama.cpp's HellaSwag text layout (6 lines per task)";
    default: return "a known layout";
    }
}

int rb_tf_detect(const json_t *o) {
#define HAS(k) (json_object_get(o, (k)) != NULL)
    if (HAS("goal")) return RB_TFMT_PIQA;
    if (HAS("activity_label") || HAS("ctx_a") || HAS("endings")) return RB_TFMT_HELLASWAG_JSONL;
    if (HAS("sentence")) return RB_TFMT_WINOGRANDE;
    if (HAS("premise")) return RB_TFMT_COPA;
    if (HAS("passage")) return RB_TFMT_BOOLQ;
    if (HAS("answerKey") || json_is_object(json_object_get(o, "question"))) return RB_TFMT_ARC;
    if (HAS("context_options")) return RB_TFMT_FOUNDRY_SCHEMA;
    if (HAS("query")) return RB_TFMT_FOUNDRY_MC;
    if (HAS("context")) return RB_TFMT_FOUNDRY_LM;
    if (HAS("text")) return RB_TFMT_LAMBADA;
    return 0;
#undef HAS
}

/* ---- typed access; `name` is the key as shown in messages ("question.stem", "choices[2]") ---- */

static const json_t *get_any(rb_tf_reader *r, const json_t *o, const char *key, const char *name, int *rc) {
    const json_t *v = json_object_get(o, key);
    *rc = v ? 0 : fail(r, "missing key '%s' (expected %s)", name, rb_tf_layout(r->format));
    return v;
}

static int wrong_type(rb_tf_reader *r, const char *name, const json_t *v, const char *want) {
    return fail(r, "'%s' is %s, not %s (expected %s)", name, rb_tf_json_type(v), want, rb_tf_layout(r->format));
}

static int get_str(rb_tf_reader *r, const json_t *o, const char *key, const char *name, const char **out) {
    int rc;
    *out = "";
    const json_t *v = get_any(r, o, key, name ? name : key, &rc);
    if (rc) return rc;
    if (!json_is_string(v)) return wrong_type(r, name ? name : key, v, "a string");
    *out = json_string_value(v);
    return 0;
}

static int get_array(rb_tf_reader *r, const json_t *o, const char *key, const char *name, const json_t **out) {
    int rc;
    *out = NULL;
    const json_t *v = get_any(r, o, key, name ? name : key, &rc);
    if (rc) return rc;
    if (!json_is_array(v)) return wrong_type(r, name ? name : key, v, "an array");
    *out = v;
    return 0;
}

/* Element i of a JSON array of strings. */
static int elem_str(rb_tf_reader *r, const json_t *a, size_t i, const char *key, const char **out) {
    *out = "";
    const json_t *v = json_array_get(a, i);
    if (!json_is_string(v)) {
        char name[96];
        snprintf(name, sizeof name, "%s[%zu]", key, i);
        return wrong_type(r, name, v, "a string");
    }
    *out = json_string_value(v);
    return 0;
}

enum { IX_INT = 1, IX_STRING = 2, IX_BOOL = 4 };

/* An index 0..n-1 from key: an integer, a decimal string (Python int(): surrounding whitespace allowed) or a
 * boolean, as `allow` says. */
static int get_index(rb_tf_reader *r, const json_t *o, const char *key, int allow, int n, int *out) {
    int rc;
    const json_t *v = get_any(r, o, key, key, &rc);
    if (rc) return rc;
    long long x;
    if (json_is_integer(v) && (allow & IX_INT)) {
        x = (long long)json_integer_value(v);
    } else if (json_is_boolean(v) && (allow & IX_BOOL)) {
        x = json_is_true(v);
    } else if (json_is_string(v) && (allow & IX_STRING)) {
        const char *s = json_string_value(v);
        size_t len = strlen(s);
        py_strip(&s, &len);
        size_t i = 0;
        int neg = 0;
        if (i < len && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
        x = 0;
        int ok = i < len;
        for (; ok && i < len; i++) {
            if (s[i] < '0' || s[i] > '9' || x > 1000000000LL) ok = 0;
            else x = x * 10 + (s[i] - '0');
        }
        if (!ok) return fail(r, "%s '%.40s' is not an integer", key, json_string_value(v));
        if (neg) x = -x;
    } else {
        const char *want = allow == IX_INT                ? "an integer"
                           : allow == (IX_INT | IX_BOOL)  ? "an integer or a boolean"
                                                          : "an integer or a string of digits";
        return wrong_type(r, key, v, want);
    }
    if (x < 0 || x >= n) return fail(r, "%s %lld out of range 0..%d", key, x, n - 1);
    *out = (int)x;
    return 0;
}

static int choice_count(rb_tf_reader *r, size_t n, const char *what, int want) {
    if (want > 0 && n != (size_t)want)
        return fail(r, "%zu %s (task %s has %d)", n, what, rb_task_name(r->task), want);
    if (want <= 0 && n < 2) return fail(r, "%zu %s (task %s needs at least 2)", n, what, rb_task_name(r->task));
    if (n > 1000) return fail(r, "%zu %s: too many", n, what);
    return 0;
}

/* Request k of d: context ctx, continuation " " + choice (lm-eval's target_delimiter), choice. */
static int put_req(rb_tf_reader *r, rb_task_doc *d, int k, const char *ctx, const char *choice, const char *name) {
    if (!*choice) return fail(r, "%s is an empty choice", name);
    char *cont = JOIN(r, P(" "), P(choice));
    if (!cont) return rb_tf_oom(r);
    d->ctx[k] = (char *)ctx;
    d->cont[k] = cont;
    d->choice[k] = cont + 1;
    return 0;
}

/* ---- one parser per layout ---- */

/* piqa.yaml: "Question: {{goal}}\nAnswer:", choices [sol1, sol2], target label. */
static int parse_piqa(rb_tf_reader *r, const json_t *o, rb_task_doc *d) {
    const char *goal, *s1, *s2;
    int rc;
    if ((rc = get_str(r, o, "goal", NULL, &goal)) || (rc = get_str(r, o, "sol1", NULL, &s1)) ||
        (rc = get_str(r, o, "sol2", NULL, &s2)) || (rc = rb_tf_doc_alloc(r, d, 2)))
        return rc;
    char *ctx = JOIN(r, P("Question: "), P(goal), P("\nAnswer:"));
    if (!ctx) return rb_tf_oom(r);
    if ((rc = put_req(r, d, 0, ctx, s1, "sol1")) || (rc = put_req(r, d, 1, ctx, s2, "sol2"))) return rc;
    d->gold = -1; /* from the labels file */
    if (r->piqa_inline_labels) return get_index(r, o, "label", IX_INT, 2, &d->gold);
    return 0;
}

/* arc_easy.yaml: "Question: {{question}}\nAnswer:", choices.text, choices.label.index(answerKey).
 * openbookqa.yaml: question_stem as is, choices.text, choices.label.index(answerKey.lstrip()). */
static int parse_arc(rb_tf_reader *r, const json_t *o, rb_task_doc *d) {
    int rc;
    const json_t *q = get_any(r, o, "question", "question", &rc);
    if (rc) return rc;
    if (!json_is_object(q)) return wrong_type(r, "question", q, "an object {stem, choices}");
    const char *stem, *key;
    const json_t *ch;
    if ((rc = get_str(r, q, "stem", "question.stem", &stem)) ||
        (rc = get_array(r, q, "choices", "question.choices", &ch)) ||
        (rc = get_str(r, o, "answerKey", NULL, &key)))
        return rc;
    size_t n = json_array_size(ch);
    if ((rc = choice_count(r, n, "choices", 0)) || (rc = rb_tf_doc_alloc(r, d, (int)n))) return rc;
    size_t klen = strlen(key);
    if (r->task == RB_TASK_OPENBOOKQA) py_lstrip(&key, &klen);
    char *ctx = r->task == RB_TASK_OPENBOOKQA ? JOIN(r, P(stem)) : JOIN(r, P("Question: "), P(stem), P("\nAnswer:"));
    if (!ctx) return rb_tf_oom(r);
    char labels[200];
    size_t llen = 0;
    labels[0] = '\0';
    d->gold = -1;
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(ch, i);
        char name[64], tname[80], lname[80];
        snprintf(name, sizeof name, "question.choices[%zu]", i);
        snprintf(tname, sizeof tname, "%s.text", name);
        snprintf(lname, sizeof lname, "%s.label", name);
        if (!json_is_object(c)) return wrong_type(r, name, c, "an object {text, label}");
        const char *text, *label;
        if ((rc = get_str(r, c, "text", tname, &text)) || (rc = get_str(r, c, "label", lname, &label)) ||
            (rc = put_req(r, d, (int)i, ctx, text, tname)))
            return rc;
        if (d->gold < 0 && strlen(label) == klen && memcmp(label, key, klen) == 0) d->gold = (int)i; /* list.index */
        if (llen < sizeof labels)
            llen += (size_t)snprintf(labels + llen, sizeof labels - llen, "%s%.20s", i ? ", " : "", label);
    }
    if (d->gold < 0)
        return fail(r, "answerKey '%.*s' is not one of the choice labels %s", (int)(klen > 20 ? 20 : klen), key,
                    labels);
    return 0;
}

/* hellaswag/utils.py: query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()),
 * choices = [preprocess(e) for e in endings], gold = int(label). */
static int parse_hellaswag(rb_tf_reader *r, const json_t *o, rb_task_doc *d) {
    const char *act, *a, *b;
    const json_t *ends;
    int rc;
    if ((rc = get_str(r, o, "activity_label", NULL, &act)) || (rc = get_str(r, o, "ctx_a", NULL, &a)) ||
        (rc = get_str(r, o, "ctx_b", NULL, &b)) || (rc = get_array(r, o, "endings", NULL, &ends)) ||
        (rc = choice_count(r, json_array_size(ends), "endings", 4)) ||
        (rc = get_index(r, o, "label", IX_INT | IX_STRING, 4, &d->gold)))
        return rc;
    if ((rc = rb_tf_doc_alloc(r, d, 4))) return rc;
    char *ctx = JOIN(r, P(act), P(": "), P(a), P(" "), P(b));
    if (!ctx) return rb_tf_oom(r);
    py_capitalize(ctx + strlen(act) + 2 + strlen(a) + 1);
    hellaswag_preprocess(ctx);
    for (int k = 0; k < 4; k++) {
        const char *e;
        if ((rc = elem_str(r, ends, (size_t)k, "endings", &e))) return rc;
        char *cont = JOIN(r, P(" "), P(e));
        if (!cont) return rb_tf_oom(r);
        if (hellaswag_preprocess(cont + 1) == 0)
            return fail(r, "endings[%d] is an empty choice%s", k, *e ? " (after lm-eval's preprocessing)" : "");
        d->ctx[k] = ctx;
        d->cont[k] = cont;
        d->choice[k] = cont + 1;
    }
    return 0;
}

/* winogrande/preprocess_winogrande.py: idx = sentence.index("_"); contexts sentence[:idx] + option_k; one
 * target " " + sentence[idx + 1:].strip(); gold {"1": 0, "2": 1}[answer]. choice = the context, which is
 * lm-eval's doc_to_choice for winogrande (acc_norm is not reported for it; the foundry layout agrees). */
static int parse_winogrande(rb_tf_reader *r, const json_t *o, rb_task_doc *d) {
    const char *sent, *opt[2];
    int rc;
    if ((rc = get_str(r, o, "sentence", NULL, &sent)) || (rc = get_str(r, o, "option1", NULL, &opt[0])) ||
        (rc = get_str(r, o, "option2", NULL, &opt[1])))
        return rc;
    const json_t *ans = get_any(r, o, "answer", "answer", &rc);
    if (rc) return rc;
    int gold;
    if (json_is_string(ans) && (strcmp(json_string_value(ans), "1") == 0 || strcmp(json_string_value(ans), "2") == 0))
        gold = json_string_value(ans)[0] - '1';
    else if (json_is_integer(ans) && (json_integer_value(ans) == 1 || json_integer_value(ans) == 2))
        gold = (int)json_integer_value(ans) - 1;
    else if (json_is_string(ans))
        return fail(r, "answer '%.40s' is not \"1\" or \"2\"", json_string_value(ans));
    else
        return wrong_type(r, "answer", ans, "\"1\" or \"2\"");
    const char *us = strchr(sent, '_');
    if (!us) return fail(r, "no '_' in sentence");
    const char *rest = us + 1;
    size_t rlen = strlen(rest);
    py_strip(&rest, &rlen);
    if (rlen == 0) return fail(r, "nothing follows the '_' in sentence (empty continuation)");
    if ((rc = rb_tf_doc_alloc(r, d, 2))) return rc;
    d->gold = gold;
    char *cont = JOIN(r, P(" "), PN(rest, rlen));
    if (!cont) return rb_tf_oom(r);
    for (int k = 0; k < 2; k++) {
        if (!*opt[k]) return fail(r, "option%d is an empty choice", k + 1);
        d->ctx[k] = JOIN(r, PN(sent, (size_t)(us - sent)), P(opt[k]));
        d->choice[k] = d->ctx[k];
        if (!d->ctx[k]) return rb_tf_oom(r);
        d->cont[k] = cont; /* shared */
    }
    return 0;
}

/* llm-foundry winogrande: contexts context_options[k], one target " " + continuation; choice = the context (the
 * option alone is not recoverable; lm-eval's own doc_to_choice for winogrande is the context too). */
static int parse_foundry_schema(rb_tf_reader *r, const json_t *o, rb_task_doc *d) {
    const json_t *opts;
    const char *c;
    int rc;
    if ((rc = get_array(r, o, "context_options", NULL, &opts)) ||
        (rc = choice_count(r, json_array_size(opts), "context_options", 2)) ||
        (rc = get_str(r, o, "continuation", NULL, &c)) || (rc = get_index(r, o, "gold", IX_INT, 2, &d->gold)))
        return rc;
    if ((rc = rb_tf_doc_alloc(r, d, 2))) return rc;
    if (!*c) return fail(r, "empty continuation");
    char *cont = JOIN(r, P(" "), P(c));
    if (!cont) return rb_tf_oom(r);
    for (int k = 0; k < 2; k++) {
        const char *ctx;
        if ((rc = elem_str(r, opts, (size_t)k, "context_options", &ctx))) return rc;
        if (!*ctx) return fail(r, "context_options[%d] is an empty choice", k);
        d->ctx[k] = d->choice[k] = JOIN(r, P(ctx));
        if (!d->ctx[k]) return rb_tf_oom(r);
        d->cont[k] = cont;
    }
    return 0;
}

/* lambada_openai.yaml: text.split(' ')[:-1] joined by ' ', target " " + text.split(' ')[-1] (target_delimiter
 * ""): everything before the last ' ' and the last ' ' with what follows it. The foundry layout is re-joined as
 * context + " " + continuation first, so a continuation with spaces is re-split as lm-eval would. */
static int parse_lambada(rb_tf_reader *r, const json_t *o, rb_task_doc *d) {
    int rc;
    char *text;
    if (r->format == RB_TFMT_LAMBADA) {
        const char *t;
        if ((rc = get_str(r, o, "text", NULL, &t))) return rc;
        text = JOIN(r, P(t));
    } else {
        const char *ctx, *cont;
        if ((rc = get_str(r, o, "context", NULL, &ctx)) || (rc = get_str(r, o, "continuation", NULL, &cont))) return rc;
        text = JOIN(r, P(ctx), P(" "), P(cont));
    }
    if (!text) return rb_tf_oom(r);
    char *sp = strrchr(text, ' ');
    if (!sp) return fail(r, "no ' ' in the text to split the last word off");
    if (!sp[1]) return fail(r, "the text ends with ' ': empty last word");
    if (sp == text) return fail(r, "empty context before the last word");
    if ((rc = rb_tf_doc_alloc(r, d, 1))) return rc;
    char *cont = JOIN(r, P(sp));
    if (!cont) return rb_tf_oom(r);
    *sp = '\0';
    d->ctx[0] = text;
    d->cont[0] = cont;
    d->choice[0] = cont + 1;
    d->gold = 0;
    return 0;
}

/* super_glue/boolq: "{{passage}}\nQuestion: {{question}}?\nAnswer:", choices ["no", "yes"], target label. */
static int parse_boolq(rb_tf_reader *r, const json_t *o, rb_task_doc *d) {
    const char *q, *p;
    int rc, gold;
    if ((rc = get_str(r, o, "question", NULL, &q)) || (rc = get_str(r, o, "passage", NULL, &p)) ||
        (rc = get_index(r, o, "label", IX_INT | IX_BOOL, 2, &gold)) || (rc = rb_tf_doc_alloc(r, d, 2)))
        return rc;
    d->gold = gold;
    char *ctx = JOIN(r, P(p), P("\nQuestion: "), P(q), P("?\nAnswer:"));
    if (!ctx) return rb_tf_oom(r);
    if ((rc = put_req(r, d, 0, ctx, "no", "no")) || (rc = put_req(r, d, 1, ctx, "yes", "yes"))) return rc;
    return 0;
}

/* super_glue/copa/utils.py: doc_to_choice returns " " + convert_choice(c) (first character lower-cased), and
 * the target delimiter " " is still prepended, so the continuation starts with TWO spaces: lm-eval's actual
 * behaviour, kept on purpose. choice = " " + convert_choice(c). Lower-casing is ASCII only (a non-ASCII first
 * letter is left as it is). */
static int put_copa_choice(rb_tf_reader *r, rb_task_doc *d, int k, const char *ctx, const char *c, const char *name) {
    if (!*c) return fail(r, "%s is an empty choice", name);
    char *cont = JOIN(r, P("  "), P(c));
    if (!cont) return rb_tf_oom(r);
    cont[2] = ascii_lower(cont[2]);
    d->ctx[k] = (char *)ctx;
    d->cont[k] = cont;
    d->choice[k] = cont + 1;
    return 0;
}

/* doc_to_text: premise.strip()[:-1] + " " + {"cause": "because", "effect": "therefore"}[question]. */
static int parse_copa(rb_tf_reader *r, const json_t *o, rb_task_doc *d) {
    const char *prem, *c1, *c2, *q;
    int rc, gold;
    if ((rc = get_str(r, o, "premise", NULL, &prem)) || (rc = get_str(r, o, "choice1", NULL, &c1)) ||
        (rc = get_str(r, o, "choice2", NULL, &c2)) || (rc = get_str(r, o, "question", NULL, &q)) ||
        (rc = get_index(r, o, "label", IX_INT, 2, &gold)))
        return rc;
    const char *conn = strcmp(q, "cause") == 0 ? "because" : strcmp(q, "effect") == 0 ? "therefore" : NULL;
    if (!conn) return fail(r, "question '%.40s' is not \"cause\" or \"effect\"", q);
    size_t n = strlen(prem);
    py_strip(&prem, &n);
    if (n == 0) return fail(r, "empty premise");
    n--; /* [:-1] drops the last character: its lead byte and any continuation bytes */
    while (n > 0 && ((unsigned char)prem[n] & 0xc0) == 0x80) n--;
    if ((rc = rb_tf_doc_alloc(r, d, 2))) return rc;
    d->gold = gold;
    char *ctx = JOIN(r, PN(prem, n), P(" "), P(conn));
    if (!ctx) return rb_tf_oom(r);
    if ((rc = put_copa_choice(r, d, 0, ctx, c1, "choice1")) || (rc = put_copa_choice(r, d, 1, ctx, c2, "choice2")))
        return rc;
    return 0;
}

static int has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

static int has_suffix(const char *s, const char *x) {
    size_t n = strlen(s), k = strlen(x);
    return n >= k && memcmp(s + n - k, x, k) == 0;
}

/* llm-foundry {query, choices, gold}, rebuilt into lm-eval's prompt of the task:
 *   arc_*:      query "Question: <q>" -> "Question: <q>\nAnswer:"
 *   openbookqa: query is the stem
 *   boolq:      query "Passage: P\nQuestion: Q?" -> "P\nQuestion: Q?\nAnswer:", choices exactly ["no", "yes"]
 *   copa:       query "<premise without its period>, because|therefore" -> "... because|therefore", choices as
 *               in the original layout (" " + first letter lower-cased, continuation with two spaces). */
static int parse_foundry_mc(rb_tf_reader *r, const json_t *o, rb_task_doc *d) {
    const char *query;
    const json_t *ch;
    int rc, gold;
    if ((rc = get_str(r, o, "query", NULL, &query)) || (rc = get_array(r, o, "choices", NULL, &ch))) return rc;
    size_t n = json_array_size(ch);
    int want = r->task == RB_TASK_BOOLQ || r->task == RB_TASK_COPA ? 2 : 0;
    if ((rc = choice_count(r, n, "choices", want)) || (rc = get_index(r, o, "gold", IX_INT, (int)n, &gold)) ||
        (rc = rb_tf_doc_alloc(r, d, (int)n)))
        return rc;
    d->gold = gold;
    char *ctx = NULL;
    if (r->task == RB_TASK_ARC_EASY || r->task == RB_TASK_ARC_CHALLENGE) {
        if (!has_prefix(query, "Question: ")) return fail(r, "query does not start with \"Question: \"");
        ctx = JOIN(r, P(query), P("\nAnswer:"));
    } else if (r->task == RB_TASK_OPENBOOKQA) {
        ctx = JOIN(r, P(query));
    } else if (r->task == RB_TASK_BOOLQ) {
        const char *c0, *c1;
        if ((rc = elem_str(r, ch, 0, "choices", &c0)) || (rc = elem_str(r, ch, 1, "choices", &c1))) return rc;
        if (strcmp(c0, "no") != 0 || strcmp(c1, "yes") != 0)
            return fail(r, "choices are [\"%.20s\", \"%.20s\"], not [\"no\", \"yes\"]", c0, c1);
        if (!has_prefix(query, "Passage: ")) return fail(r, "query does not start with \"Passage: \"");
        /* P + "\nQuestion: " + Q? is the query after "Passage: " whichever "\nQuestion: " separates them */
        if (!strstr(query + strlen("Passage: "), "\nQuestion: "))
            return fail(r, "query has no \"\\nQuestion: \" after its passage");
        ctx = JOIN(r, P(query + strlen("Passage: ")), P("\nAnswer:"));
    } else if (r->task == RB_TASK_COPA) {
        const char *conn = has_suffix(query, ", because")     ? "because"
                           : has_suffix(query, ", therefore") ? "therefore"
                                                              : NULL;
        if (!conn) return fail(r, "query does not end with \", because\" or \", therefore\"");
        ctx = JOIN(r, PN(query, strlen(query) - strlen(conn) - 2), P(" "), P(conn));
    } else {
        return fail(r, "task %s cannot be read from a foundry-mc file", rb_task_name(r->task));
    }
    if (!ctx) return rb_tf_oom(r);
    for (size_t i = 0; i < n; i++) {
        const char *c;
        char name[48];
        snprintf(name, sizeof name, "choices[%zu]", i);
        if ((rc = elem_str(r, ch, i, "choices", &c))) return rc;
        rc = r->task == RB_TASK_COPA ? put_copa_choice(r, d, (int)i, ctx, c, name)
                                     : put_req(r, d, (int)i, ctx, c, name);
        if (rc) return rc;
    }
    return 0;
}

int rb_tf_parse_record(rb_tf_reader *r, const json_t *obj, rb_task_doc *doc) {
    switch (r->format) {
    case RB_TFMT_PIQA: return parse_piqa(r, obj, doc);
    case RB_TFMT_ARC: return parse_arc(r, obj, doc);
    case RB_TFMT_HELLASWAG_JSONL: return parse_hellaswag(r, obj, doc);
    case RB_TFMT_WINOGRANDE: return parse_winogrande(r, obj, doc);
    case RB_TFMT_LAMBADA:
    case RB_TFMT_FOUNDRY_LM: return parse_lambada(r, obj, doc);
    case RB_TFMT_BOOLQ: return parse_boolq(r, obj, doc);
    case RB_TFMT_COPA: return parse_copa(r, obj, doc);
    case RB_TFMT_FOUNDRY_MC: return parse_foundry_mc(r, obj, doc);
    case RB_TFMT_FOUNDRY_SCHEMA: return parse_foundry_schema(r, obj, doc);
    default: return fail(r, "format %s has no JSON record parser", rb_task_format_name(r->format));
    }
}

/* rb_config: the schema table and validation (YAML tree → rb_config), stream seeds, run id. */
#include "harness/rb_config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/rb_file.h"
#include "core/rb_suggest.h"
#include "text/rb_calib.h"
#include "eval/rb_ppl.h"
#include "eval/rb_tasks.h"
#include "export/rb_export.h"
#include "model/rb_safetensors.h"
#include "harness/rb_config_internal.h"
#include "harness/rb_sha256.h"
#include "methods/rb_method.h"
#include "quant/rb_qpreset.h"
#include "quant/rb_quant.h"

struct rb_config_priv {
    rb_ynode *tree;
};

/* ---- the schema ---- */

#define OFF(f) offsetof(rb_config, f)
#define EOFF(f) offsetof(rb_cfg_eval, f)
#define TOFF(f) offsetof(rb_cfg_task, f)

static const senum e_order[] = {{"sequential", RB_CALIB_SEQUENTIAL},
                                {"shuffled", RB_CALIB_SHUFFLED},
                                {"sorted_by_norm", RB_CALIB_SORTED_BY_NORM},
                                {"reversed", RB_CALIB_REVERSED},
                                {NULL, 0}};
static const senum e_protocol[] = {{"gptq", RB_PPL_GPTQ}, {"llamacpp", RB_PPL_LLAMACPP}, {NULL, 0}};
static const senum e_wgroup[] = {{"channel", RB_QGRAN_CHANNEL}, {"tensor", RB_QGRAN_TENSOR}, {NULL, 0}};
static const senum e_agroup[] = {{"token", RB_QGRAN_TOKEN}, {"head", RB_QGRAN_HEAD}, {NULL, 0}};
static const senum e_kvgroup[] = {{"head", RB_QGRAN_HEAD}, {"token", RB_QGRAN_TOKEN}, {NULL, 0}};
static const senum e_algo[] = {{"rtn", RB_WALGO_RTN}, {"gptq", RB_WALGO_GPTQ}, {NULL, 0}};
static const senum e_oproj[] = {{"auto", RB_OPROJ_AUTO}, {"head", RB_OPROJ_HEAD}, {"row", RB_OPROJ_ROW}, {NULL, 0}};
/* Task names as rb_task_name (tasks/rb_taskfile.h; test_config_tasks checks they agree), then
 * rb_task_from_name's alias "lambada" (the canonical form writes the first name of a value). */
static const senum e_task[] = {{"piqa", RB_TASK_PIQA},
                               {"arc_easy", RB_TASK_ARC_EASY},
                               {"arc_challenge", RB_TASK_ARC_CHALLENGE},
                               {"hellaswag", RB_TASK_HELLASWAG},
                               {"winogrande", RB_TASK_WINOGRANDE},
                               {"lambada_openai", RB_TASK_LAMBADA},
                               {"boolq", RB_TASK_BOOLQ},
                               {"openbookqa", RB_TASK_OPENBOOKQA},
                               {"copa", RB_TASK_COPA},
                               {"lambada", RB_TASK_LAMBADA},
                               {NULL, 0}};
static const senum e_task_bos[] = {{"none", RB_TASK_BOS_NONE}, {"tokenizer-default", RB_TASK_BOS_DEFAULT}, {NULL, 0}};
static const senum e_metrics[] = {
    {"kurtosis", RB_METRIC_KURTOSIS}, {"mse", RB_METRIC_MSE}, {"kl", RB_METRIC_KL}, {NULL, 0}};
/* The presets of src/quant/rb_qpreset.c: name, then bits of weights, activations, KV cache. */
static const struct {
    const char *name;
    int w, a, kv;
} presets[] = {{"W16A16", 16, 16, 16}, {"W4A16", 4, 16, 16}, {"W8A8", 8, 8, 16},   {"W6A6", 6, 6, 16},
               {"W4A8", 4, 8, 16},     {"W4A4", 4, 4, 16},   {"W4A4KV4", 4, 4, 4}, {"W3A3", 3, 3, 16},
               {"W3A3KV3", 3, 3, 3},   {"W8A8KV8", 8, 8, 8}};
static const senum e_preset[] = {{"W16A16", 0}, {"W4A16", 1}, {"W8A8", 2}, {"W6A6", 3},    {"W4A8", 4},   {"W4A4", 5},
                                 {"W4A4KV4", 6}, {"W3A3", 7}, {"W3A3KV3", 8}, {"W8A8KV8", 9}, {NULL, 0}};

#define E_END {NULL, 0, 0, NULL, 0, 0, 0, 0, 0, 0, NULL, NULL}
#define S(n, t, f, d, o) {n, t, f, d, o, NOAUX, 0, 0, 0, 0, NULL, NULL}
#define SI(n, d, o, lo, hi) {n, T_INT, 0, d, o, NOAUX, lo, hi, 0, 0, NULL, NULL}
#define SE(n, t, f, d, o, en) {n, t, f, d, o, NOAUX, 0, 0, 0, 0, en, NULL}
#define SF(n, f, d, o, flo, fhi) {n, T_FLOAT, f, d, o, NOAUX, 0, 0, flo, fhi, NULL, NULL}
#define SM(n, f, aux, kids) {n, T_MAP, f, NULL, 0, aux, 0, 0, 0, 0, NULL, kids}

static const sentry s_model[] = {S("path", T_PATH, F_REQ, NULL, OFF(model.path)),
                                 S("tokenizer", T_PATH, F_OPT, NULL, OFF(model.tokenizer)), E_END};
static const sentry s_calib[] = {S("corpus", T_PATH, F_REQ, NULL, OFF(data.calib.corpus)),
                                 S("range", T_RANGE, 0, "'0:1'", OFF(data.calib.range)),
                                 SI("samples", "128", OFF(data.calib.samples), 1, INT_MAX),
                                 SI("seqlen", "2048", OFF(data.calib.seqlen), 1, 1 << 20),
                                 SE("order", T_ENUM, 0, "sequential", OFF(data.calib.order), e_order),
                                 SI("batch", "1", OFF(data.calib.batch), 1, INT_MAX),
                                 S("doc_sep", T_STR, F_OPT, NULL, OFF(data.calib.doc_sep)), E_END};
static const sentry s_eval[] = {S("corpus", T_PATH, F_REQ, NULL, EOFF(corpus)),
                                S("name", T_NAME, F_OPT, NULL, EOFF(name)),
                                S("range", T_RANGE, 0, "'0:1'", EOFF(range)),
                                SI("seqlen", "2048", EOFF(seqlen), 2, 1 << 20),
                                SE("protocol", T_ENUM, 0, "gptq", EOFF(protocol), e_protocol),
                                SI("max_windows", "0", EOFF(max_windows), 0, INT_MAX),
                                S("doc_sep", T_STR, F_OPT, NULL, EOFF(doc_sep)), E_END};
static const sentry s_task[] = {SE("name", T_ENUM, F_REQ, NULL, TOFF(task), e_task),
                                S("file", T_PATH, F_REQ, NULL, TOFF(file)),
                                S("labels", T_PATH, F_OPT, NULL, TOFF(labels)),
                                {"limit", T_INT, F_OPT, NULL, TOFF(limit), NOAUX, 0, INT_MAX, 0, 0, NULL, NULL},
                                E_END};
static const sentry s_data[] = {
    SM("calib", F_OPT, OFF(data.has_calib), s_calib),
    {"eval", T_LIST, F_REQ, NULL, OFF(data.eval), OFF(data.n_eval), sizeof(rb_cfg_eval), 1, 0, 0, NULL, s_eval},
    {"tasks", T_LIST, F_OPT | F_TASKS, NULL, OFF(data.tasks), OFF(data.n_tasks), sizeof(rb_cfg_task), 0, 0, 0, NULL,
     s_task},
    SE("task_bos", T_ENUM, F_TASKS, "none", OFF(data.task_bos), e_task_bos),
    {"task_max_length", T_INT, F_OPT | F_TASKS, NULL, OFF(data.task_max_length), NOAUX, 0, 1 << 20, 0, 0, NULL, NULL},
    E_END};
#define QT(side, f) OFF(quant.side.f)
static const sentry s_w[] = {S("bits", T_BITS, 0, "16", QT(w, bits)),
                             S("sym", T_BOOL, 0, "true", QT(w, sym)),
                             SE("group", T_GROUP, 0, "channel", OFF(quant.w), e_wgroup),
                             S("clip", T_CLIP, F_SEARCH, "search", OFF(quant.w)),
                             SE("algo", T_ENUM, 0, "rtn", QT(w, algo), e_algo),
                             S("act_order", T_BOOL, 0, "false", QT(w, act_order)),
                             SF("damp", 0, "0.01", QT(w, damp), 0.0, 1.0),
                             S("raw_minmax", T_BOOL, 0, "false", QT(w, raw_minmax)),
                             E_END};
static const sentry s_a[] = {S("bits", T_BITS, 0, "16", QT(a, bits)), S("sym", T_BOOL, 0, "false", QT(a, sym)),
                             SE("group", T_GROUP, 0, "token", OFF(quant.a), e_agroup),
                             S("clip", T_CLIP, 0, "1.0", OFF(quant.a)),
                             S("raw_minmax", T_BOOL, 0, "false", QT(a, raw_minmax)),
                             SE("o_proj", T_ENUM, 0, "auto", OFF(quant.o_proj), e_oproj), E_END};
static const sentry s_kv[] = {S("bits", T_BITS, 0, "16", QT(kv, bits)), S("sym", T_BOOL, 0, "false", QT(kv, sym)),
                              SE("group", T_GROUP, 0, "head", OFF(quant.kv), e_kvgroup),
                              S("clip", T_CLIP, 0, "1.0", OFF(quant.kv)),
                              S("raw_minmax", T_BOOL, 0, "false", QT(kv, raw_minmax)), E_END};
static const sentry s_q[] = {S("bits", T_BITS, 0, "16", QT(q, bits)), S("sym", T_BOOL, 0, "false", QT(q, sym)),
                             SE("group", T_GROUP, 0, "head", OFF(quant.q), e_kvgroup),
                             S("clip", T_CLIP, 0, "1.0", OFF(quant.q)),
                             S("raw_minmax", T_BOOL, 0, "false", QT(q, raw_minmax)), E_END};
static const sentry s_quant[] = {SE("preset", T_ESTR, F_OPT | F_NOCASE, NULL, OFF(quant.preset), e_preset),
                                 SM("w", 0, NOAUX, s_w),
                                 SM("a", 0, NOAUX, s_a),
                                 SM("kv", 0, NOAUX, s_kv),
                                 SM("q", 0, NOAUX, s_q),
                                 E_END};
static const sentry s_rotation[] = {
    S("method", T_METHOD, 0, "identity", OFF(rotation.method)),
    S("r3", T_BOOL, F_OPT, NULL, OFF(rotation.r3)),
    S("r4", T_BOOL, F_OPT, NULL, OFF(rotation.r4)),
    S("cross_head", T_BOOL, F_OPT, NULL, OFF(rotation.cross_head)),
    S("emb_center", T_BOOL, 0, "true", OFF(rotation.emb_center)),
    {"seed", T_U64, F_OPT, NULL, OFF(rotation.seed), OFF(rotation.has_seed), 0, 0, 0, 0, NULL, NULL},
    {"options", T_OPTS, F_OPT, NULL, OFF(rotation.opt_names), OFF(rotation.n_opts), 0, 0, 0, 0, NULL, NULL},
    E_END};
static const senum e_exfmt[] = {{"hf", RB_EXPORT_HF}, {"gptq", RB_EXPORT_GPTQ}, {"gguf", RB_EXPORT_GGUF}, {NULL, 0}};
static const senum e_exdtype[] = {{"F32", RB_DT_F32}, {"F16", RB_DT_F16}, {"BF16", RB_DT_BF16}, {NULL, 0}};
static const senum e_exscales[] = {{"F32", RB_DT_F32}, {"F16", RB_DT_F16}, {NULL, 0}};
static const sentry s_export[] = {SE("format", T_ENUM, F_REQ, NULL, OFF(export.format), e_exfmt),
                                  SE("dtype", T_ENUM, 0, "F32", OFF(export.dtype), e_exdtype),
                                  S("allow_online_dropped", T_BOOL, 0, "false", OFF(export.allow_online_dropped)),
                                  SE("gptq_scales", T_ENUM, 0, "F32", OFF(export.gptq_scales), e_exscales), E_END};
static const sentry s_sweep[] = {S("grid", T_AXES, F_OPT, NULL, 0), S("zip", T_AXES, F_OPT, NULL, 0), E_END};

const sentry rb_cfg_schema[] = {
    S("name", T_NAME, F_REQ, NULL, OFF(name)),
    S("seed", T_U64, 0, "0", OFF(seed)),
    SM("model", F_REQ, NOAUX, s_model),
    SM("data", F_REQ, NOAUX, s_data),
    SM("quant", F_PRESET, NOAUX, s_quant),
    SM("rotation", 0, NOAUX, s_rotation),
    SE("metrics", T_METRICS, 0, "[kurtosis, mse, kl]", OFF(metrics), e_metrics),
    {"figures", T_NAMES, 0, "[]", OFF(figures), OFF(n_figures), 0, 0, 0, 0, NULL, NULL},
    SM("export", F_OPT, OFF(export.has), s_export),
    SM("sweep", F_OPT, OFF(has_sweep), s_sweep),
    E_END};

/* ---- did you mean ---- */

static void hint_from(const char *word, const char *const *names, size_t n, char *buf, size_t cap) {
    const char *s = rb_suggest(word, names, n);
    if (s) {
        snprintf(buf, cap, " (did you mean '%s'?)", s);
        return;
    }
    size_t k = (size_t)snprintf(buf, cap, " (expected one of: ");
    for (size_t i = 0; i < n && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? ", " : "", names[i]);
    if (k < cap) snprintf(buf + k, cap - k, ")");
}

void rb_cfg_hint_kids(const char *word, const sentry *kids, char *buf, size_t cap) {
    const char *names[32] = {0};
    size_t n = 0;
    for (; kids[n].name && n < 32; n++) names[n] = kids[n].name;
    hint_from(word, names, n, buf, cap);
}

/* ---- validation ---- */

typedef struct vctx {
    rb_config *cfg;
    rb_error *err;
    char path[512];
} vctx;

static size_t path_push(vctx *v, const char *name, long index) {
    size_t len = strlen(v->path);
    if (name) snprintf(v->path + len, sizeof v->path - len, "%s%s", len ? "." : "", name);
    else snprintf(v->path + len, sizeof v->path - len, "[%ld]", index);
    return len;
}

static int fail(vctx *v, const rb_ynode *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(vctx *v, const rb_ynode *at, const char *fmt, ...) {
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return rb_yaml_oneline(v->err, rb_error_set(v->err, RB_EINVAL, "%s:%d:%d: %s: %s", at->file, at->line, at->col,
                                                v->path[0] ? v->path : "(root)", what));
}

static int oom(vctx *v) { return rb_error_set(v->err, RB_ENOMEM, "configuration: out of memory"); }

/* "got ..." text of a node for messages. */
static const char *got(const rb_ynode *n, char *buf, size_t cap) {
    if (n->kind == RB_YMAP) return "a map";
    if (n->kind == RB_YSEQ) return "a list";
    snprintf(buf, cap, n->quoted ? "\"%.200s\"" : "%.200s", n->str);
    return buf;
}


static int want_scalar(vctx *v, const rb_ynode *n, const char *what) {
    char g[256];
    if (n->kind != RB_YSCALAR) return fail(v, n, "expected %s, got %s", what, got(n, g, sizeof g));
    return 0;
}

/* Plain decimal integer into *out (errno-checked). 0 ok, -1 not an integer, -2 out of range. */
static int parse_ll(const rb_ynode *n, long long *out) {
    const char *s = n->str, *p = s + (*s == '-' || *s == '+');
    if (n->quoted || !*p) return -1;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return -1;
    errno = 0;
    *out = strtoll(s, NULL, 10);
    return errno == ERANGE ? -2 : 0;
}

static int parse_double(const rb_ynode *n, double *out) {
    const char *p = n->str;
    if (n->quoted) return -1;
    p += (*p == '-' || *p == '+');
    int digits = 0;
    while (isdigit((unsigned char)*p)) p++, digits++;
    if (*p == '.')
        for (p++; isdigit((unsigned char)*p); p++) digits++;
    if (!digits) return -1;
    if (*p == 'e' || *p == 'E') {
        p++;
        p += (*p == '-' || *p == '+');
        if (!isdigit((unsigned char)*p)) return -1;
        while (isdigit((unsigned char)*p)) p++;
    }
    if (*p) return -1;
    *out = strtod(n->str, NULL);
    return isfinite(*out) ? 0 : -2;
}

static int lookup_enum(const senum *en, const char *s, int nocase) {
    for (int i = 0; en[i].name; i++)
        if (nocase ? !strcasecmp(en[i].name, s) : !strcmp(en[i].name, s)) return i;
    return -1;
}

/* "expected one of a, b, c<extra>, got X (did you mean 'b'?)" for the k accepted names. */
static int fail_names(vctx *v, const rb_ynode *n, const char *const *names, size_t k, const char *extra) {
    char list[512], g[256], hint[128] = "";
    size_t len = 0;
    list[0] = 0;
    for (size_t i = 0; i < k && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", names[i]);
    if (n->kind == RB_YSCALAR) {
        const char *s = rb_suggest(n->str, names, k);
        if (s) snprintf(hint, sizeof hint, " (did you mean '%s'?)", s);
    }
    return fail(v, n, "expected one of %s%s, got %s%s", list, extra, got(n, g, sizeof g), hint);
}

#define MAX_NAMES 64

static int fail_enum(vctx *v, const rb_ynode *n, const senum *en, const char *extra) {
    const char *names[MAX_NAMES];
    size_t k = 0;
    for (; en[k].name && k < MAX_NAMES; k++) names[k] = en[k].name;
    return fail_names(v, n, names, k, extra);
}

static int is_name(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("._-", *s)) return 0;
    return 1;
}

/* One parser for ranges (rb_token_range_parse: finite fractions 0 <= a < b <= 1, NaN refused). */
static int valid_range(const char *s) {
    size_t b, e;
    return strchr(s, ':') == strrchr(s, ':') && rb_token_range_parse(s, 0, &b, &e, NULL) == 0;
}

/* ${VAR}, ${VAR:-fallback} and $$ in a path-typed scalar. */
static int expand_env(vctx *v, const rb_ynode *n, char **out) {
    rb_ybuf b = {0};
    const char *s = n->str;
    for (const char *p = s; *p;) {
        if (p[0] == '$' && p[1] == '$') {
            rb_ybuf_puts(&b, "$");
            p += 2;
            continue;
        }
        if (p[0] != '$' || p[1] != '{') {
            rb_ybuf_printf(&b, "%c", *p++);
            continue;
        }
        const char *name = p + 2, *close = strchr(name, '}');
        size_t nl = 0;
        while (isalnum((unsigned char)name[nl]) || name[nl] == '_') nl++;
        rb_ynode at = *n;
        at.col += (int)(p - s) + (n->quoted ? 1 : 0);
        int ok = close && nl > 0 && !isdigit((unsigned char)name[0]) &&
                 (name[nl] == '}' || (name[nl] == ':' && name[nl + 1] == '-'));
        if (!ok) {
            free(b.s);
            return fail(v, &at, "malformed ${...}: expected ${NAME} or ${NAME:-fallback}");
        }
        char var[128];
        snprintf(var, sizeof var, "%.*s", (int)nl, name);
        const char *val = getenv(var);
        if (val && *val) rb_ybuf_puts(&b, val);
        else if (name[nl] == ':') rb_ybuf_printf(&b, "%.*s", (int)(close - (name + nl + 2)), name + nl + 2);
        else {
            free(b.s);
            return fail(v, &at, "environment variable %s is not set", var);
        }
        p = close + 1;
    }
    if (!(*out = rb_ybuf_take(&b))) return oom(v);
    if (!**out) {
        free(*out);
        *out = NULL;
        return fail(v, n, "expected a path, got an empty string");
    }
    return 0;
}

static int set_str(vctx *v, char *base, size_t off, const char *s) {
    char **slot = (char **)(base + off);
    free(*slot);
    if (!(*slot = rb_strdup(s))) return oom(v);
    return 0;
}

static int validate_map(vctx *v, const sentry *kids, const rb_ynode *n, const rb_ynode *at, char *base);
static int validate_entry(vctx *v, const sentry *e, const rb_ynode *n, const rb_ynode *at, char *base);

/* data.eval[i] after its keys: the default name (basename of the corpus), unique names. v->path is
 * data.eval[i]. */
static int eval_entry(vctx *v, const rb_ynode *list, size_t i, rb_cfg_eval *arr) {
    const rb_ynode *it = list->vals[i];
    if (!arr[i].name) { /* default: basename of the corpus */
        const char *slash = strrchr(arr[i].corpus, '/');
        const char *bn = slash ? slash + 1 : arr[i].corpus;
        if (!is_name(bn)) return fail(v, it, "no valid default name from corpus basename '%s'; set name", bn);
        if (!(arr[i].name = rb_strdup(bn))) return oom(v);
    }
    for (size_t j = 0; j < i; j++)
        if (!strcmp(arr[j].name, arr[i].name)) {
            const rb_ynode *nm = rb_ymap_get(it, "name", NULL);
            path_push(v, "name", 0);
            return fail(v, nm ? nm : it, "duplicate evaluation name '%s' (also data.eval[%zu])", arr[i].name, j);
        }
    return 0;
}

/* data.tasks[i] after its keys: each task once (its results are /tasks/<name>), labels for piqa only. */
static int task_entry(vctx *v, const rb_ynode *list, size_t i, rb_cfg_task *arr) {
    const rb_ynode *it = list->vals[i];
    const char *name = e_task[0].name;
    for (int k = 0; e_task[k].name; k++)
        if (e_task[k].value == arr[i].task) {
            name = e_task[k].name; /* the first (canonical) name */
            break;
        }
    for (size_t j = 0; j < i; j++)
        if (arr[j].task == arr[i].task) {
            path_push(v, "name", 0);
            return fail(v, rb_ymap_get(it, "name", NULL), "duplicate task '%s' (also data.tasks[%zu])", name, j);
        }
    if (arr[i].labels && arr[i].task != RB_TASK_PIQA) {
        path_push(v, "labels", 0);
        return fail(v, rb_ymap_get(it, "labels", NULL), "only piqa takes a labels file, not %s", name);
    }
    return 0;
}

static int conv_list(vctx *v, const sentry *e, const rb_ynode *n, char *base) {
    char g[256];
    if (n->kind != RB_YSEQ) return fail(v, n, "expected a list, got %s", got(n, g, sizeof g));
    if (e->type == T_METRICS) {
        unsigned bits = 0;
        for (size_t i = 0; i < n->n; i++) {
            size_t len = path_push(v, NULL, (long)i);
            const rb_ynode *it = n->vals[i];
            int k = it->kind == RB_YSCALAR ? lookup_enum(e->en, it->str, 0) : -1;
            if (k < 0) return fail_enum(v, it, e->en, "");
            if (bits & (unsigned)e->en[k].value) return fail(v, it, "%s listed twice", it->str);
            bits |= (unsigned)e->en[k].value;
            v->path[len] = 0;
        }
        *(unsigned *)(base + e->off) = bits;
        return 0;
    }
    if (e->type == T_NAMES) {
        char **arr = calloc(n->n ? n->n : 1, sizeof *arr);
        if (!arr) return oom(v);
        *(char ***)(base + e->off) = arr;
        for (size_t i = 0; i < n->n; i++) {
            size_t len = path_push(v, NULL, (long)i);
            const rb_ynode *it = n->vals[i];
            if (it->kind != RB_YSCALAR || !is_name(it->str))
                return fail(v, it, "expected a name of [A-Za-z0-9._-]+, got %s", got(it, g, sizeof g));
            for (size_t j = 0; j < i; j++)
                if (!strcmp(arr[j], it->str)) return fail(v, it, "%s listed twice", it->str);
            if (!(arr[i] = rb_strdup(it->str))) return oom(v);
            *(int *)(base + e->aux) = (int)i + 1;
            v->path[len] = 0;
        }
        return 0;
    }
    /* T_LIST */
    if ((long long)n->n < e->hi) return fail(v, n, "expected at least one entry");
    if (n->n > 4096) return fail(v, n, "too many entries (%zu)", n->n);
    size_t esz = (size_t)e->lo;
    char *arr = calloc(n->n ? n->n : 1, esz);
    if (!arr) return oom(v);
    *(char **)(base + e->off) = arr;
    *(int *)(base + e->aux) = (int)n->n;
    for (size_t i = 0; i < n->n; i++) {
        size_t len = path_push(v, NULL, (long)i);
        const rb_ynode *it = n->vals[i];
        if (it->kind != RB_YMAP) return fail(v, it, "expected a map, got %s", got(it, g, sizeof g));
        int rc = validate_map(v, e->kids, it, it, arr + i * esz);
        if (!rc) rc = e->kids == s_eval ? eval_entry(v, n, i, (rb_cfg_eval *)(void *)arr)
                                        : task_entry(v, n, i, (rb_cfg_task *)(void *)arr);
        if (rc) return rc;
        v->path[len] = 0;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* rotation.options: a map of scalars, each checked against the (already validated) method's table. */
static int conv_opts(vctx *v, const sentry *e, const rb_ynode *n, char *base) {
    char g[256];
    if (n->kind != RB_YMAP) return fail(v, n, "expected a map of option: value, got %s", got(n, g, sizeof g));
    const rb_method *m = rb_method_find(v->cfg->rotation.method);
    RB_ASSERT(m); /* rotation.method is validated first (schema order) */
    char ***names = (char ***)(base + e->off), ***vals = names + 1;
    if (!(*names = calloc(n->n + 1, sizeof **names)) || !(*vals = calloc(n->n + 1, sizeof **vals))) return oom(v);
    /* sort by name (canonical form) while keeping the node for positions */
    for (size_t i = 0; i < n->n; i++) {
        size_t len = path_push(v, n->keys[i]->str, 0);
        const rb_ynode *val = n->vals[i];
        if (val->kind != RB_YSCALAR || rb_ynode_is_null(val))
            return fail(v, val, "expected a scalar value, got %s", got(val, g, sizeof g));
        char msg[512];
        if (rb_method_check_option(m, n->keys[i]->str, val->str, msg, sizeof msg)) /* name or value */
            return fail(v, strncmp(msg, "expected", 8) ? n->keys[i] : val, "%s", msg);
        v->path[len] = 0;
    }
    char **pairs = calloc(n->n + 1, sizeof *pairs);
    if (!pairs) return oom(v);
    for (size_t i = 0; i < n->n; i++) pairs[i] = (char *)n->keys[i]->str;
    qsort(pairs, n->n, sizeof *pairs, cmp_str);
    for (size_t i = 0; i < n->n; i++) {
        const rb_ynode *val = rb_ymap_get(n, pairs[i], NULL);
        if (!((*names)[i] = rb_strdup(pairs[i])) || !((*vals)[i] = rb_strdup(val->str))) {
            free(pairs);
            return oom(v);
        }
        *(int *)(base + e->aux) = (int)i + 1;
    }
    free(pairs);
    return 0;
}

static int conv_scalar(vctx *v, const sentry *e, const rb_ynode *n, char *base) {
    char g[256];
    long long ll;
    double d;
    int rc;
    switch (e->type) {
    case T_STR:
    case T_NAME:
    case T_RANGE:
        if ((rc = want_scalar(v, n, e->type == T_RANGE ? "a range a:b" : "a string"))) return rc;
        if (e->type == T_NAME && !is_name(n->str))
            return fail(v, n, "expected a name of [A-Za-z0-9._-]+, got %s", got(n, g, sizeof g));
        if (e->type == T_RANGE && !valid_range(n->str))
            return fail(v, n, "expected a:b with fractions 0 <= a < b <= 1, got %s", got(n, g, sizeof g));
        return set_str(v, base, e->off, n->str);
    case T_PATH: {
        if ((rc = want_scalar(v, n, "a path"))) return rc;
        char *s;
        if ((rc = expand_env(v, n, &s))) return rc;
        char **slot = (char **)(base + e->off);
        free(*slot);
        *slot = s;
        return 0;
    }
    case T_INT:
    case T_U64: {
        long long lo = e->type == T_U64 ? 0 : e->lo, hi = e->type == T_U64 ? LLONG_MAX : e->hi;
        if ((rc = want_scalar(v, n, "an integer"))) return rc;
        int p = parse_ll(n, &ll);
        if (p == -1) return fail(v, n, "expected an integer, got %s", got(n, g, sizeof g));
        if (p == -2 || ll < lo || ll > hi) {
            int below = p == -2 ? n->str[0] == '-' : ll < lo;
            if (below && (hi == LLONG_MAX || hi == INT_MAX))
                return fail(v, n, "expected an integer >= %lld, got %s", lo, got(n, g, sizeof g));
            return fail(v, n, "expected an integer in [%lld, %lld], got %s", lo, hi, got(n, g, sizeof g));
        }
        if (e->type == T_U64) *(uint64_t *)(base + e->off) = (uint64_t)ll;
        else *(int *)(base + e->off) = (int)ll;
        return 0;
    }
    case T_BITS: {
        static const senum bits[] = {{"2", 2}, {"3", 3}, {"4", 4}, {"5", 5}, {"6", 6}, {"8", 8}, {"16", 16}, {NULL, 0}};
        if (n->kind == RB_YSCALAR && !parse_ll(n, &ll))
            for (int i = 0; bits[i].name; i++)
                if (ll == bits[i].value) {
                    *(int *)(base + e->off) = (int)ll;
                    return 0;
                }
        return fail(v, n, "expected one of 2,3,4,5,6,8,16, got %s", got(n, g, sizeof g));
    }
    case T_FLOAT:
        if ((rc = want_scalar(v, n, "a number"))) return rc;
        if (parse_double(n, &d) || d > e->fhi || d < e->flo || ((e->flags & F_LOPEN) && d == e->flo))
            return fail(v, n, "expected a number in %c%g, %g], got %s", (e->flags & F_LOPEN) ? '(' : '[', e->flo,
                        e->fhi, got(n, g, sizeof g));
        *(double *)(base + e->off) = d;
        return 0;
    case T_BOOL:
        if (n->kind != RB_YSCALAR || n->quoted || (strcmp(n->str, "true") && strcmp(n->str, "false")))
            return fail(v, n, "expected true or false, got %s", got(n, g, sizeof g));
        *(int *)(base + e->off) = n->str[0] == 't';
        return 0;
    case T_ENUM:
    case T_ESTR: {
        int k = n->kind == RB_YSCALAR ? lookup_enum(e->en, n->str, e->flags & F_NOCASE) : -1;
        if (k < 0) return fail_enum(v, n, e->en, "");
        if (e->type == T_ENUM) *(int *)(base + e->off) = e->en[k].value;
        else *(const char **)(base + e->off) = e->en[k].name;
        return 0;
    }
    case T_METHOD: {
        const rb_method *m = n->kind == RB_YSCALAR ? rb_method_find(n->str) : NULL;
        if (!m) {
            const char *names[MAX_NAMES];
            size_t k = 0;
            for (const rb_method *const *p = rb_methods(); *p && k < MAX_NAMES; p++) names[k++] = (*p)->name;
            return fail_names(v, n, names, k, "");
        }
        *(const char **)(base + e->off) = m->name;
        return 0;
    }
    case T_GROUP: {
        rb_cfg_qtensor *q = (rb_cfg_qtensor *)(base + e->off);
        int k = n->kind == RB_YSCALAR ? lookup_enum(e->en, n->str, 0) : -1;
        if (k >= 0) {
            q->gran = e->en[k].value;
            q->group = 0;
            return 0;
        }
        if (n->kind == RB_YSCALAR && !parse_ll(n, &ll) && ll > 0 && ll <= (1 << 20)) {
            q->gran = RB_QGRAN_GROUP;
            q->group = (int)ll;
            return 0;
        }
        return fail_enum(v, n, e->en, " or a group size in [1, 1048576]");
    }
    case T_CLIP: {
        rb_cfg_qtensor *q = (rb_cfg_qtensor *)(base + e->off);
        if (n->kind == RB_YSCALAR && (e->flags & F_SEARCH) && !strcmp(n->str, "search")) {
            q->clip = 1.0;
            q->clip_search = 1;
            return 0;
        }
        if (n->kind != RB_YSCALAR || parse_double(n, &d) || d <= 0.0 || d > 1.0)
            return fail(v, n, "expected a number in (0, 1]%s, got %s", (e->flags & F_SEARCH) ? " or search" : "",
                        got(n, g, sizeof g));
        q->clip = d;
        q->clip_search = 0;
        return 0;
    }
    default:
        return conv_list(v, e, n, base);
    }
}

/* Fills bits from quant.preset where quant.{w,a,kv}.bits is not given. */
static void apply_preset(vctx *v, const rb_ynode *quant) {
    const char *p = v->cfg->quant.preset;
    if (!p) return;
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++) {
        if (strcmp(presets[i].name, p)) continue;
        const char *sides[3] = {"w", "a", "kv"};
        rb_cfg_qtensor *q[3] = {&v->cfg->quant.w, &v->cfg->quant.a, &v->cfg->quant.kv};
        int bits[3] = {presets[i].w, presets[i].a, presets[i].kv};
        for (int s = 0; s < 3; s++) {
            const rb_ynode *b = rb_ymap_get(rb_ymap_get(quant, sides[s], NULL), "bits", NULL);
            if (!b || rb_ynode_is_null(b)) q[s]->bits = bits[s];
        }
    }
}

static int validate_entry(vctx *v, const sentry *e, const rb_ynode *n, const rb_ynode *at, char *base) {
    int rc;
    if (!n || rb_ynode_is_null(n)) {
        if (e->flags & F_REQ) return fail(v, n ? n : at, n ? "required value is missing" : "required key is missing");
        if (e->flags & F_OPT) {
            if (e->type == T_BOOL) *(int *)(base + e->off) = -1;
            return 0;
        }
        if (e->type == T_MAP) {
            rc = validate_map(v, e->kids, NULL, n ? n : at, base);
            if (!rc && (e->flags & F_PRESET)) apply_preset(v, NULL);
            return rc;
        }
        rb_ynode *d;
        rc = rb_yaml_parse(e->def, strlen(e->def), "<default>", 1, 1, &d, v->err);
        if (rc) return rc;
        rc = conv_scalar(v, e, d, base);
        rb_ynode_free(d);
        return rc;
    }
    if (e->aux != NOAUX && (e->type == T_MAP || e->type == T_U64)) *(int *)(base + e->aux) = 1;
    if (e->type == T_AXES) return 0; /* checked by rb_sweep_check */
    if (e->type == T_OPTS) return conv_opts(v, e, n, base);
    if (e->type == T_MAP) {
        rc = validate_map(v, e->kids, n, n, base);
        if (!rc && (e->flags & F_PRESET)) apply_preset(v, n);
        return rc;
    }
    return conv_scalar(v, e, n, base);
}

static int validate_map(vctx *v, const sentry *kids, const rb_ynode *n, const rb_ynode *at, char *base) {
    char g[256];
    if (n && n->kind != RB_YMAP) return fail(v, n, "expected a map, got %s", got(n, g, sizeof g));
    for (size_t i = 0; n && i < n->n; i++) {
        const char *k = n->keys[i]->str;
        int found = 0;
        for (const sentry *e = kids; e->name && !found; e++) found = !strcmp(e->name, k);
        if (found) continue;
        char hint[512];
        rb_cfg_hint_kids(k, kids, hint, sizeof hint);
        path_push(v, k, 0);
        return fail(v, n->keys[i], "unknown key%s", hint);
    }
    for (const sentry *e = kids; e->name; e++) {
        size_t len = path_push(v, e->name, 0);
        int rc = validate_entry(v, e, rb_ymap_get(n, e->name, NULL), n ? n : at, base);
        if (rc) return rc;
        v->path[len] = 0;
    }
    return 0;
}

static void free_entries(const sentry *kids, char *base) {
    for (const sentry *e = kids; e->name; e++) {
        switch (e->type) {
        case T_MAP: free_entries(e->kids, base); break;
        case T_STR:
        case T_NAME:
        case T_PATH:
        case T_RANGE: free(*(char **)(base + e->off)); break;
        case T_LIST: {
            char *arr = *(char **)(base + e->off);
            for (int i = 0; arr && i < *(int *)(base + e->aux); i++)
                free_entries(e->kids, arr + (size_t)i * (size_t)e->lo);
            free(arr);
            break;
        }
        case T_OPTS: {
            char **nm = *(char ***)(base + e->off), **vl = *((char ***)(base + e->off) + 1);
            for (int i = 0; i < *(int *)(base + e->aux); i++) free(nm[i]), free(vl[i]);
            free(nm);
            free(vl);
            break;
        }
        case T_NAMES: {
            char **arr = *(char ***)(base + e->off);
            for (int i = 0; arr && i < *(int *)(base + e->aux); i++) free(arr[i]);
            free(arr);
            break;
        }
        default: break;
        }
    }
}

void rb_config_free(rb_config *cfg) {
    if (!cfg) return;
    free_entries(rb_cfg_schema, (char *)cfg);
    free(cfg->canonical);
    if (cfg->priv) rb_ynode_free(cfg->priv->tree);
    free(cfg->priv);
    memset(cfg, 0, sizeof *cfg);
}

const rb_ynode *rb_cfg_tree(const rb_config *cfg) { return cfg->priv ? cfg->priv->tree : NULL; }

/* Without data.calib, a method or weight algorithm that needs calibration windows is refused here,
 * with the position, not after the run directory exists (issue 16). */
static int calib_check(vctx *v, const rb_ynode *tree, const rb_config *c) {
    const rb_method *m = rb_method_find(c->rotation.method);
    const rb_ynode *rot = rb_ymap_get(tree, "rotation", NULL), *q = rb_ymap_get(tree, "quant", NULL);
    if (m && rb_method_needs_calib(m, (const char *const *)c->rotation.opt_names,
                                   (const char *const *)c->rotation.opt_values, c->rotation.n_opts)) {
        const rb_ynode *n = rb_ymap_get(rot, "method", NULL);
        snprintf(v->path, sizeof v->path, "rotation.method");
        return fail(v, n ? n : rot ? rot : tree, "%s%s%s%s needs calibration windows: add data.calib (corpus, samples, seqlen)",
                    m->name, m->calib[0] ? " with " : "", m->calib, m->calib[0] ? ": on" : "");
    }
    if (c->quant.w.algo == RB_WALGO_GPTQ && c->quant.w.bits < 16) {
        const rb_ynode *n = rb_ymap_get(rb_ymap_get(q, "w", NULL), "algo", NULL);
        snprintf(v->path, sizeof v->path, "quant.w.algo");
        return fail(v, n ? n : q ? q : tree, "gptq needs calibration windows: add data.calib (corpus, samples, seqlen)");
    }
    return 0;
}

/* rotation.cross_head: true for a method that would ignore it (rb_method_check refuses it too; here
 * with the position). */
static int key_check(vctx *v, const rb_ynode *tree, const rb_config *c) {
    const rb_method *m = rb_method_find(c->rotation.method);
    char msg[512];
    if (!m || !rb_method_check_keys(m, c->rotation.cross_head, msg, sizeof msg)) return 0;
    const rb_ynode *rot = rb_ymap_get(tree, "rotation", NULL), *n = rb_ymap_get(rot, "cross_head", NULL);
    snprintf(v->path, sizeof v->path, "rotation.cross_head");
    return fail(v, n ? n : rot ? rot : tree, "%s", msg);
}

/* What the export format can hold, checked before any run directory exists. */
static int export_check(vctx *v, const rb_ynode *tree, const rb_config *c) {
    const rb_ynode *ex = rb_ymap_get(tree, "export", NULL), *f = rb_ymap_get(ex, "format", NULL);
    snprintf(v->path, sizeof v->path, "export.format");
    int act = c->quant.a.bits < 16 || c->quant.kv.bits < 16 || c->quant.q.bits < 16;
    if (c->export.format == RB_EXPORT_GPTQ && c->quant.w.bits >= 16)
        return fail(v, f ? f : ex, "gptq holds quantized weights: set quant.w.bits (e.g. quant.preset: W4A16)");
    if (c->export.format == RB_EXPORT_GPTQ && act)
        return fail(v, f ? f : ex, "a gptq checkpoint is weight-only: activations/KV are quantized here (use W4A16, "
                                   "or export hf/gguf with allow_online_dropped)");
    return 0;
}

int rb_cfg_validate(rb_ynode *tree, rb_config *out, rb_error *err) {
    memset(out, 0, sizeof *out);
    vctx v = {.cfg = out, .err = err};
    int rc = 0;
    if (rb_ynode_is_null(tree)) { /* an empty file */
        rb_ynode *m = rb_ynode_collection(RB_YMAP, tree->file, tree->line, tree->col);
        rb_ynode_free(tree);
        if (!(tree = m)) return oom(&v);
    }
    if (!(out->priv = calloc(1, sizeof *out->priv))) {
        rb_ynode_free(tree);
        return oom(&v);
    }
    out->priv->tree = tree;
    rc = validate_map(&v, rb_cfg_schema, tree, tree, (char *)out);
    static const struct {
        const char *name;
        size_t off;
    } sides[] = {{"w", offsetof(rb_config, quant.w)},
                 {"a", offsetof(rb_config, quant.a)},
                 {"kv", offsetof(rb_config, quant.kv)},
                 {"q", offsetof(rb_config, quant.q)}};
    for (int i = 0; !rc && i < 4; i++) {
        const rb_cfg_qtensor *t = (const rb_cfg_qtensor *)((const char *)out + sides[i].off);
        if (!t->raw_minmax || !t->sym) continue;
        const rb_ynode *q = rb_ymap_get(rb_ymap_get(tree, "quant", NULL), sides[i].name, NULL);
        const rb_ynode *r = rb_ymap_get(q, "raw_minmax", NULL);
        snprintf(v.path, sizeof v.path, "quant.%s.raw_minmax", sides[i].name);
        rc = fail(&v, r ? r : q ? q : tree, "raw min/max ranges are asymmetric: set quant.%s.sym: false", sides[i].name);
    }
    if (!rc && out->data.has_calib && out->data.calib.batch > out->data.calib.samples) {
        const rb_ynode *calib = rb_ymap_get(rb_ymap_get(tree, "data", NULL), "calib", NULL);
        const rb_ynode *b = rb_ymap_get(calib, "batch", NULL);
        snprintf(v.path, sizeof v.path, "data.calib.batch");
        rc = fail(&v, b ? b : calib, "batch %d is larger than samples %d", out->data.calib.batch,
                  out->data.calib.samples);
    }
    if (!rc && !out->data.has_calib) rc = calib_check(&v, tree, out);
    if (!rc) rc = key_check(&v, tree, out);
    if (!rc && out->export.has) rc = export_check(&v, tree, out);
    if (!rc && out->has_sweep) rc = rb_sweep_check(rb_ymap_get(tree, "sweep", NULL), err);
    if (!rc) rc = rb_cfg_emit(out, &out->canonical) ? oom(&v) : 0;
    if (rc) rb_config_free(out);
    return rc;
}

/* ---- seeds and run id ---- */

uint64_t rb_config_stream_seed(const rb_config *cfg, const char *stream) {
    if (cfg->rotation.has_seed && !strncmp(stream, "rotation", 8)) return cfg->rotation.seed;
    return cfg->seed;
}


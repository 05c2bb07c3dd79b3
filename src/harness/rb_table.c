#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness/rb_table.h"

#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rb_strbuf.h"
#include "core/rb_file.h"
#include "core/rb_log.h"


static void tb_spaces(rb_strbuf *b, size_t n) {
    for (size_t i = 0; i < n; i++) rb_strbuf_put(b, " ", 1);
}

/* printf into a fresh heap string; NULL on failure. */
static char *vfmt(const char *fmt, va_list ap) {
    va_list aq;
    va_copy(aq, ap);
    int n = vsnprintf(NULL, 0, fmt, aq);
    va_end(aq);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (s) vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    char *s = vfmt(f, ap);
    va_end(ap);
    return s;
}

/* Replaces the locale's decimal point (if not ".") by "." in place. */
static void c_decimal_point(char *s) {
    const char *dp = localeconv()->decimal_point;
    if (!dp || !dp[0] || (dp[0] == '.' && !dp[1])) return;
    char *q = strstr(s, dp);
    if (q) {
        size_t dl = strlen(dp);
        *q = '.';
        memmove(q + 1, q + dl, strlen(q + dl) + 1);
    }
}

/* ---- table -------------------------------------------------------------------------------- */

/* Cell text comes from result files anyone may have written: control characters (terminal escape
 * sequences) become '?' before they can reach a terminal (issue 16); newlines and tabs are the
 * formats' business (each renderer escapes them). */
static char *clean(char *s) {
    for (unsigned char *p = (unsigned char *)s; p && *p; p++)
        if ((*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f) *p = '?';
    return s;
}

static char *dup_or_empty(const char *s) { return clean(rb_strdup(s ? s : "")); }

void rb_table_free(rb_table *t) {
    if (!t) return;
    if (t->header)
        for (size_t c = 0; c < t->n_cols; c++) free(t->header[c]);
    if (t->cells)
        for (size_t i = 0; i < t->n_rows * t->n_cols; i++) free(t->cells[i]);
    free(t->header);
    free(t->cells);
    free(t->align);
    free(t->rule);
    memset(t, 0, sizeof *t);
}

int rb_table_init(rb_table *t, size_t n_cols, const char *const *header, rb_error *err) {
    RB_ASSERT(t);
    memset(t, 0, sizeof *t);
    if (n_cols == 0 || n_cols > 100000) return rb_error_set(err, RB_EINVAL, "table: %zu columns", n_cols);
    t->header = calloc(n_cols, sizeof *t->header);
    t->align = calloc(n_cols, sizeof *t->align);
    if (!t->header || !t->align) {
        free(t->header);
        free(t->align);
        t->header = NULL;
        t->align = NULL;
        return rb_error_set(err, RB_ENOMEM, "table: out of memory");
    }
    t->n_cols = n_cols;
    for (size_t c = 0; c < n_cols; c++) {
        t->header[c] = dup_or_empty(header ? header[c] : NULL);
        if (!t->header[c]) {
            rb_table_free(t);
            return rb_error_set(err, RB_ENOMEM, "table: out of memory");
        }
    }
    return 0;
}

int rb_table_add_row(rb_table *t, const char *const *cells, size_t *row_out, rb_error *err) {
    RB_ASSERT(t && t->n_cols);
    if (t->n_rows == t->cap_rows) {
        size_t cap = t->cap_rows ? t->cap_rows * 2 : 16;
        size_t bytes;
        if (!rb_mul_ok(cap, t->n_cols * sizeof(char *), &bytes))
            return rb_error_set(err, RB_ENOMEM, "table: too many rows");
        char **nc = realloc(t->cells, bytes);
        if (!nc) return rb_error_set(err, RB_ENOMEM, "table: out of memory");
        t->cells = nc;
        unsigned char *nr = realloc(t->rule, cap);
        if (!nr) return rb_error_set(err, RB_ENOMEM, "table: out of memory");
        t->rule = nr;
        t->cap_rows = cap;
    }
    char **row = t->cells + t->n_rows * t->n_cols;
    for (size_t c = 0; c < t->n_cols; c++) {
        row[c] = dup_or_empty(cells ? cells[c] : NULL);
        if (!row[c]) {
            for (size_t k = 0; k < c; k++) free(row[k]);
            return rb_error_set(err, RB_ENOMEM, "table: out of memory");
        }
    }
    t->rule[t->n_rows] = 0;
    if (row_out) *row_out = t->n_rows;
    t->n_rows++;
    return 0;
}

static int set_owned(rb_table *t, size_t row, size_t col, char *s, rb_error *err) {
    if (!s) return rb_error_set(err, RB_ENOMEM, "table: out of memory");
    if (row >= t->n_rows || col >= t->n_cols) {
        free(s);
        return rb_error_set(err, RB_EINVAL, "table: cell (%zu, %zu) outside %zu x %zu", row, col, t->n_rows,
                            t->n_cols);
    }
    clean(s);
    char **cell = &t->cells[row * t->n_cols + col];
    free(*cell);
    *cell = s;
    return 0;
}

int rb_table_set(rb_table *t, size_t row, size_t col, const char *text, rb_error *err) {
    RB_ASSERT(t);
    return set_owned(t, row, col, dup_or_empty(text), err);
}

int rb_table_setf(rb_table *t, size_t row, size_t col, rb_error *err, const char *f, ...) {
    RB_ASSERT(t && f);
    va_list ap;
    va_start(ap, f);
    char *s = vfmt(f, ap);
    va_end(ap);
    return set_owned(t, row, col, s, err);
}

/* Number text into a fresh heap string. */
static char *num_text(double v, int decimals) {
    if (isnan(v)) return rb_strdup(RB_TABLE_MISSING);
    if (isinf(v)) return rb_strdup(v > 0 ? "inf" : "-inf");
    char *s = decimals < 0 ? fmt("%.9g", v) : fmt("%.*f", decimals, v);
    if (s) c_decimal_point(s);
    return s;
}

int rb_table_set_num(rb_table *t, size_t row, size_t col, double v, int decimals, rb_error *err) {
    RB_ASSERT(t);
    if (decimals > 17) decimals = 17;
    return set_owned(t, row, col, num_text(v, decimals), err);
}

int rb_table_set_align(rb_table *t, size_t col, int align, rb_error *err) {
    RB_ASSERT(t);
    if (col >= t->n_cols) return rb_error_set(err, RB_EINVAL, "table: column %zu of %zu", col, t->n_cols);
    if (align < RB_ALIGN_LEFT || align > RB_ALIGN_CENTER)
        return rb_error_set(err, RB_EINVAL, "table: unknown alignment %d", align);
    t->align[col] = align;
    return 0;
}

int rb_table_rule_after(rb_table *t, size_t row, rb_error *err) {
    RB_ASSERT(t);
    if (row >= t->n_rows) return rb_error_set(err, RB_EINVAL, "table: row %zu of %zu", row, t->n_rows);
    t->rule[row] = 1;
    return 0;
}

/* ---- rendering ---------------------------------------------------------------------------- */

/* Markdown cell text: '|' → "\|", CR/LF/TAB → space. */
static void md_escape(rb_strbuf *b, const char *s) {
    for (const char *p = s; *p; p++) {
        if (*p == '|')
            rb_strbuf_puts(b, "\\|");
        else if (*p == '\n' || *p == '\r' || *p == '\t')
            rb_strbuf_put(b, " ", 1);
        else
            rb_strbuf_put(b, p, 1);
    }
}

/* Display width: code points (UTF-8 lead bytes). */
static size_t utf8_width(const char *s, size_t n) {
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) w++;
    return w;
}

static size_t md_width(const char *s) {
    rb_strbuf b = {0};
    md_escape(&b, s);
    size_t w = b.p ? utf8_width(b.p, b.len) : 0;
    free(b.p);
    return w;
}

static void md_cell(rb_strbuf *b, const char *s, size_t width, int align) {
    size_t w = md_width(s);
    size_t pad = width > w ? width - w : 0;
    size_t left = align == RB_ALIGN_RIGHT ? pad : align == RB_ALIGN_CENTER ? pad / 2 : 0;
    rb_strbuf_puts(b, " ");
    tb_spaces(b, left);
    md_escape(b, s);
    tb_spaces(b, pad - left);
    rb_strbuf_puts(b, " |");
}

static void render_md(const rb_table *t, rb_strbuf *b) {
    size_t *w = calloc(t->n_cols, sizeof *w);
    if (!w) {
        b->oom = 1;
        return;
    }
    for (size_t c = 0; c < t->n_cols; c++) {
        w[c] = md_width(t->header[c]);
        if (w[c] < 3) w[c] = 3;
        for (size_t r = 0; r < t->n_rows; r++) {
            size_t cw = md_width(t->cells[r * t->n_cols + c]);
            if (cw > w[c]) w[c] = cw;
        }
    }
    rb_strbuf_puts(b, "|");
    for (size_t c = 0; c < t->n_cols; c++) md_cell(b, t->header[c], w[c], t->align[c]);
    rb_strbuf_puts(b, "\n|");
    for (size_t c = 0; c < t->n_cols; c++) {
        int a = t->align[c];
        rb_strbuf_puts(b, a == RB_ALIGN_LEFT || a == RB_ALIGN_CENTER ? ":" : "-");
        for (size_t k = 0; k < w[c]; k++) rb_strbuf_put(b, "-", 1);
        rb_strbuf_puts(b, a == RB_ALIGN_RIGHT || a == RB_ALIGN_CENTER ? ":" : "-");
        rb_strbuf_puts(b, "|");
    }
    rb_strbuf_puts(b, "\n");
    for (size_t r = 0; r < t->n_rows; r++) {
        rb_strbuf_puts(b, "|");
        for (size_t c = 0; c < t->n_cols; c++) md_cell(b, t->cells[r * t->n_cols + c], w[c], t->align[c]);
        rb_strbuf_puts(b, "\n");
    }
    free(w);
}

static void tex_escape(rb_strbuf *b, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '\\': rb_strbuf_puts(b, "\\textbackslash{}"); break;
        case '{': rb_strbuf_puts(b, "\\{"); break;
        case '}': rb_strbuf_puts(b, "\\}"); break;
        case '$': rb_strbuf_puts(b, "\\$"); break;
        case '&': rb_strbuf_puts(b, "\\&"); break;
        case '#': rb_strbuf_puts(b, "\\#"); break;
        case '%': rb_strbuf_puts(b, "\\%"); break;
        case '_': rb_strbuf_puts(b, "\\_"); break;
        case '~': rb_strbuf_puts(b, "\\textasciitilde{}"); break;
        case '^': rb_strbuf_puts(b, "\\textasciicircum{}"); break;
        case '|': rb_strbuf_puts(b, "\\textbar{}"); break;
        case '<': rb_strbuf_puts(b, "\\textless{}"); break;
        case '>': rb_strbuf_puts(b, "\\textgreater{}"); break;
        case '\n':
        case '\r':
        case '\t': rb_strbuf_puts(b, " "); break;
        default:
            if (p[0] == 0xE2 && p[1] == 0x80 && p[2] == 0x93) {
                rb_strbuf_puts(b, "--");
                p += 2;
            } else if (p[0] == 0xE2 && p[1] == 0x80 && p[2] == 0x94) {
                rb_strbuf_puts(b, "---");
                p += 2;
            } else if (p[0] == 0xCE && p[1] == 0x94) {
                rb_strbuf_puts(b, "$\\Delta$");
                p += 1;
            } else if (p[0] == 0xC2 && p[1] == 0xB1) {
                rb_strbuf_puts(b, "$\\pm$");
                p += 1;
            } else {
                rb_strbuf_put(b, (const char *)p, 1);
            }
        }
    }
}

static void render_tex(const rb_table *t, rb_strbuf *b) {
    rb_strbuf_puts(b, "\\begin{tabular}{");
    for (size_t c = 0; c < t->n_cols; c++) {
        int a = t->align[c];
        rb_strbuf_puts(b, a == RB_ALIGN_RIGHT ? "r" : a == RB_ALIGN_CENTER ? "c" : "l");
    }
    rb_strbuf_puts(b, "}\n\\toprule\n");
    for (size_t c = 0; c < t->n_cols; c++) {
        if (c) rb_strbuf_puts(b, " & ");
        tex_escape(b, t->header[c]);
    }
    rb_strbuf_puts(b, " \\\\\n\\midrule\n");
    for (size_t r = 0; r < t->n_rows; r++) {
        for (size_t c = 0; c < t->n_cols; c++) {
            if (c) rb_strbuf_puts(b, " & ");
            tex_escape(b, t->cells[r * t->n_cols + c]);
        }
        rb_strbuf_puts(b, " \\\\\n");
        if (t->rule[r] && r + 1 < t->n_rows) rb_strbuf_puts(b, "\\midrule\n");
    }
    rb_strbuf_puts(b, "\\bottomrule\n\\end{tabular}\n");
}

static void csv_field(rb_strbuf *b, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        rb_strbuf_puts(b, s);
        return;
    }
    rb_strbuf_put(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"') rb_strbuf_put(b, "\"", 1);
        rb_strbuf_put(b, p, 1);
    }
    rb_strbuf_put(b, "\"", 1);
}

static void render_csv(const rb_table *t, rb_strbuf *b) {
    for (size_t c = 0; c < t->n_cols; c++) {
        if (c) rb_strbuf_puts(b, ",");
        csv_field(b, t->header[c]);
    }
    rb_strbuf_puts(b, "\n");
    for (size_t r = 0; r < t->n_rows; r++) {
        for (size_t c = 0; c < t->n_cols; c++) {
            if (c) rb_strbuf_puts(b, ",");
            csv_field(b, t->cells[r * t->n_cols + c]);
        }
        rb_strbuf_puts(b, "\n");
    }
}

int rb_table_render(const rb_table *t, int format, char **out, size_t *len, rb_error *err) {
    RB_ASSERT(t && out && len);
    *out = NULL;
    *len = 0;
    if (!t->n_cols) return rb_error_set(err, RB_EINVAL, "table: not initialised");
    rb_strbuf b = {0};
    switch (format) {
    case RB_TABLE_MARKDOWN: render_md(t, &b); break;
    case RB_TABLE_LATEX: render_tex(t, &b); break;
    case RB_TABLE_CSV: render_csv(t, &b); break;
    default: return rb_error_set(err, RB_EINVAL, "table: unknown format %d", format);
    }
    if (b.oom || !b.p) {
        free(b.p);
        return rb_error_set(err, RB_ENOMEM, "table: out of memory");
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

int rb_table_write(const rb_table *t, int format, const char *path, rb_error *err) {
    char *s;
    size_t n;
    int rc = rb_table_render(t, format, &s, &n, err);
    if (rc) return rb_error_prefix(err, "%s", path);
    rc = rb_write_file(path, s, n, err);
    free(s);
    return rc;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

int rb_table_format_from_path(const char *path) {
    if (!path) return -1;
    if (ends_with(path, ".md")) return RB_TABLE_MARKDOWN;
    if (ends_with(path, ".tex")) return RB_TABLE_LATEX;
    if (ends_with(path, ".csv")) return RB_TABLE_CSV;
    return -1;
}

/* ---- pivot -------------------------------------------------------------------------------- */

static const char *nz(const char *s) { return s ? s : ""; }

typedef struct pcol {
    const char *model, *setting;
    double fp;
} pcol;

static size_t find_str(const char *const *v, size_t n, const char *s) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0) return i;
    return SIZE_MAX;
}

int rb_table_pivot(rb_table *t, const rb_pivot_rec *recs, size_t n, const rb_pivot_opts *opts,
                   rb_error *err) {
    RB_ASSERT(t);
    memset(t, 0, sizeof *t);
    rb_pivot_opts def = {0};
    if (!opts) opts = &def;
    int dec = opts->decimals == 0 ? 2 : opts->decimals < 0 ? 0 : opts->decimals;
    if (dec > 9) dec = 9;
    if (n && !recs) return rb_error_set(err, RB_EINVAL, "pivot: %zu records but recs is NULL", n);
    if (opts->n_methods && !opts->methods)
        return rb_error_set(err, RB_EINVAL, "pivot: n_methods = %zu but methods is NULL", opts->n_methods);
    for (size_t i = 0; i < n; i++) {
        if (!recs[i].method || !*recs[i].method)
            return rb_error_set(err, RB_EINVAL, "pivot: record %zu has no method", i);
        if (!recs[i].setting || !*recs[i].setting)
            return rb_error_set(err, RB_EINVAL, "pivot: record %zu (method '%s') has no setting", i, recs[i].method);
    }
    for (size_t i = 0; i < opts->n_methods; i++)
        if (!opts->methods[i] || !*opts->methods[i])
            return rb_error_set(err, RB_EINVAL, "pivot: methods[%zu] is empty", i);

    int rc = 0;
    pcol *cols = calloc(n ? n : 1, sizeof *cols);
    const char **meth = calloc(opts->n_methods + n + 1, sizeof *meth);
    size_t *rec_col = calloc(n ? n : 1, sizeof *rec_col);
    size_t *rec_row = calloc(n ? n : 1, sizeof *rec_row);
    size_t *cell_rec = NULL;
    char **hdr = NULL;
    size_t nc = 0, nm = 0;
    if (!cols || !meth || !rec_col || !rec_row) {
        rc = rb_error_set(err, RB_ENOMEM, "pivot: out of memory");
        goto done;
    }

    /* Columns: distinct (model, setting) in first-seen order. */
    int multi_model = 0;
    for (size_t i = 0; i < n; i++) {
        const char *mo = nz(recs[i].model), *se = recs[i].setting;
        if (strcmp(mo, nz(recs[0].model)) != 0) multi_model = 1;
        size_t c;
        for (c = 0; c < nc; c++)
            if (strcmp(cols[c].model, mo) == 0 && strcmp(cols[c].setting, se) == 0) break;
        if (c == nc) {
            cols[nc].model = mo;
            cols[nc].setting = se;
            cols[nc].fp = NAN;
            nc++;
        }
        rec_col[i] = c;
        double fp = recs[i].ppl_fp;
        if (isfinite(fp)) {
            if (isnan(cols[c].fp)) {
                cols[c].fp = fp;
            } else if (fabs(fp - cols[c].fp) > 1e-6 * fabs(cols[c].fp)) {
                rb_warn("pivot: %s %s: FP perplexity %.9g of method '%s' differs from %.9g (first seen)",
                        mo, se, fp, recs[i].method, cols[c].fp);
            }
        }
    }
    /* Rows: the given order, then unlisted methods in first-seen order. */
    for (size_t i = 0; i < opts->n_methods; i++)
        if (find_str(meth, nm, opts->methods[i]) == SIZE_MAX) meth[nm++] = opts->methods[i];
    for (size_t i = 0; i < n; i++) {
        size_t r = find_str(meth, nm, recs[i].method);
        if (r == SIZE_MAX) {
            r = nm;
            meth[nm++] = recs[i].method;
        }
        rec_row[i] = r;
    }

    size_t ncell;
    if (!rb_mul_ok(nm ? nm : 1, nc ? nc : 1, &ncell) || !(cell_rec = malloc(ncell * sizeof *cell_rec))) {
        rc = rb_error_set(err, RB_ENOMEM, "pivot: out of memory");
        goto done;
    }
    for (size_t k = 0; k < ncell; k++) cell_rec[k] = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        size_t *slot = &cell_rec[rec_row[i] * nc + rec_col[i]];
        if (*slot != SIZE_MAX) {
            rc = rb_error_set(err, RB_EINVAL,
                              "pivot: records %zu and %zu are both method '%s', %s%s%s (aggregate seeds first)",
                              *slot, i, recs[i].method, cols[rec_col[i]].model,
                              *cols[rec_col[i]].model ? " " : "", cols[rec_col[i]].setting);
            goto done;
        }
        *slot = i;
    }

    hdr = calloc(nc + 1, sizeof *hdr);
    if (!hdr) {
        rc = rb_error_set(err, RB_ENOMEM, "pivot: out of memory");
        goto done;
    }
    hdr[0] = rb_strdup(opts->corner ? opts->corner : "Method");
    if (!hdr[0]) {
        rc = rb_error_set(err, RB_ENOMEM, "pivot: out of memory");
        goto done;
    }
    for (size_t c = 0; c < nc; c++) {
        hdr[c + 1] = multi_model && *cols[c].model ? fmt("%s %s", cols[c].model, cols[c].setting)
                                                   : rb_strdup(cols[c].setting);
        if (!hdr[c + 1]) {
            rc = rb_error_set(err, RB_ENOMEM, "pivot: out of memory");
            goto done;
        }
    }
    rc = rb_table_init(t, nc + 1, (const char *const *)hdr, err);
    if (rc) goto done;
    for (size_t c = 1; c <= nc; c++) t->align[c] = RB_ALIGN_RIGHT;

    /* FP row. */
    size_t row;
    if ((rc = rb_table_add_row(t, NULL, &row, err))) goto done;
    if ((rc = rb_table_set(t, row, 0, opts->fp_label ? opts->fp_label : "FP16", err))) goto done;
    for (size_t c = 0; c < nc; c++)
        if ((rc = rb_table_set_num(t, row, c + 1, cols[c].fp, dec, err))) goto done;
    t->rule[row] = 1;

    for (size_t m = 0; m < nm; m++) {
        if ((rc = rb_table_add_row(t, NULL, &row, err))) goto done;
        if ((rc = rb_table_set(t, row, 0, meth[m], err))) goto done;
        for (size_t c = 0; c < nc; c++) {
            size_t i = cell_rec[m * nc + c];
            char *s;
            if (i == SIZE_MAX || isnan(recs[i].ppl)) {
                s = rb_strdup(RB_TABLE_MISSING);
            } else if (!isfinite(recs[i].ppl) || !isfinite(recs[i].ppl_fp)) {
                s = num_text(recs[i].ppl, dec);
            } else {
                char *a = num_text(recs[i].ppl, dec);
                char *d = fmt("%+.*f", dec, recs[i].ppl - recs[i].ppl_fp);
                if (d) {
                    c_decimal_point(d);
                    if (d[0] == '-' && strspn(d + 1, "0.") == strlen(d + 1)) d[0] = '+'; /* "-0.00" */
                }
                s = a && d ? fmt("%s (%s)", a, d) : NULL;
                free(a);
                free(d);
            }
            if ((rc = set_owned(t, row, c + 1, s, err))) goto done;
        }
    }

done:
    if (rc) rb_table_free(t);
    if (hdr)
        for (size_t c = 0; c <= nc; c++) free(hdr[c]);
    free(hdr);
    free(cols);
    free(meth);
    free(rec_col);
    free(rec_row);
    free(cell_rec);
    return rc;
}

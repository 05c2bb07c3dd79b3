#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness/rb_figure.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/rb_math.h"
#include "core/rb_strbuf.h"
#include "core/rb_file.h"
#include "core/rb_log.h"

extern char **environ;


/* "%.9g" with '.' as decimal point whatever LC_NUMERIC says (gnuplot reads C numbers). */
static void tb_num(rb_strbuf *b, double v) {
    char s[64];
    snprintf(s, sizeof s, "%.9g", v);
    const char *dp = localeconv()->decimal_point;
    if (dp && dp[0] && (dp[0] != '.' || dp[1])) {
        char *q = strstr(s, dp);
        if (q) {
            size_t dl = strlen(dp);
            *q = '.';
            memmove(q + 1, q + dl, strlen(q + dl) + 1);
        }
    }
    rb_strbuf_puts(b, s);
}

/* A gnuplot single-quoted string: '' for ', control characters as spaces. Single quotes matter:
 * gnuplot runs `backquoted` shell commands inside double-quoted strings. */
static void tb_gpstr(rb_strbuf *b, const char *s) {
    rb_strbuf_put(b, "'", 1);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '\'')
            rb_strbuf_put(b, "''", 2);
        else if (*p < 0x20 || *p == 0x7f)
            rb_strbuf_put(b, " ", 1);
        else
            rb_strbuf_put(b, (const char *)p, 1);
    }
    rb_strbuf_put(b, "'", 1);
}

/* ---- script ------------------------------------------------------------------------------- */

#define DEFAULT_W 960
#define DEFAULT_H 600

/* Okabe–Ito colour-blind-safe palette; black last. */
static const char *const k_colors[8] = {"#0072b2", "#d55e00", "#009e73", "#cc79a7",
                                        "#e69f00", "#56b4e9", "#f0e442", "#000000"};
static const int k_points[8] = {7, 5, 9, 11, 13, 15, 1, 2};

static int has_text(const char *s) { return s && *s; }

static int validate(const rb_figure *fig, const char *out_basename, rb_error *err) {
    if (!out_basename || !*out_basename)
        return rb_error_set(err, RB_EINVAL, "figure: empty output basename");
    for (const unsigned char *p = (const unsigned char *)out_basename; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return rb_error_set(err, RB_EINVAL, "figure: output basename holds a control character");
    if (fig->n_xtics && !fig->xtics)
        return rb_error_set(err, RB_EINVAL, "figure: n_xtics = %zu but xtics is NULL", fig->n_xtics);
    if (fig->n_xtics && fig->logx && !fig->xtic_pos)
        return rb_error_set(err, RB_EINVAL,
                            "figure: categorical x positions 0..n-1 cannot be on a log-x axis "
                            "(give xtic_pos, or unset logx)");
    for (size_t i = 0; i < fig->n_xtics; i++) {
        if (fig->xtic_pos && !isfinite(fig->xtic_pos[i]))
            return rb_error_set(err, RB_EINVAL, "figure: xtic_pos[%zu] is not finite", i);
        if (fig->xtic_pos && fig->logx && fig->xtic_pos[i] <= 0)
            return rb_error_set(err, RB_EINVAL, "figure: xtic_pos[%zu] = %g is not positive on a log-x axis",
                                i, fig->xtic_pos[i]);
    }
    if (fig->xint && (fig->logx || fig->n_xtics || fig->categorical))
        return rb_error_set(err, RB_EINVAL, "figure: an integer x axis takes no log-x, xtics or categorical mode");
    if (fig->categorical && (!fig->n_xtics || fig->xtic_pos || fig->logx))
        return rb_error_set(err, RB_EINVAL,
                            "figure: a categorical x axis needs xtics at the default positions 0..n-1 on a linear axis");
    if (fig->n_series && !fig->series)
        return rb_error_set(err, RB_EINVAL, "figure: n_series = %zu but series is NULL", fig->n_series);
    if (fig->width < 0 || fig->height < 0 || fig->width > 20000 || fig->height > 20000 ||
        (fig->width && fig->width < 100) || (fig->height && fig->height < 100))
        return rb_error_set(err, RB_EINVAL, "figure: size %dx%d out of range (100..20000, or 0)",
                            fig->width, fig->height);
    for (size_t s = 0; s < fig->n_series; s++) {
        const rb_fig_series *se = &fig->series[s];
        const char *nm = has_text(se->name) ? se->name : "(unnamed)";
        if (se->n && !se->y)
            return rb_error_set(err, RB_EINVAL, "figure: series %zu '%s' has %zu points but y is NULL", s,
                                nm, se->n);
        if (!se->ylo != !se->yhi)
            return rb_error_set(err, RB_EINVAL, "figure: series %zu '%s': give both ylo and yhi, or neither",
                                s, nm);
        if (se->ysd && se->ylo)
            return rb_error_set(err, RB_EINVAL, "figure: series %zu '%s': ysd and ylo/yhi are exclusive", s,
                                nm);
        if (fig->categorical && (se->x || se->n > fig->n_xtics))
            return rb_error_set(err, RB_EINVAL,
                                "figure: series %zu '%s': a categorical series has no x and at most one point per "
                                "category (%zu points, %zu categories)", s, nm, se->n, fig->n_xtics);
        if (se->style < RB_FIG_LINESPOINTS || se->style > RB_FIG_POINTS)
            return rb_error_set(err, RB_EINVAL, "figure: series %zu '%s': unknown style %d", s, nm,
                                se->style);
    }
    return 0;
}

static double ser_x(const rb_fig_series *se, size_t i) { return se->x ? se->x[i] : (double)i; }

static int point_ok(const rb_figure *fig, double x, double y) {
    if (!isfinite(x) || !isfinite(y)) return 0;
    if (fig->logx && x <= 0) return 0;
    if (fig->logy && y <= 0) return 0;
    return 1;
}

/* Error bar ends of point i into lo/hi; 0 when the point has no (drawable) bar. */
static int bar_of(const rb_figure *fig, const rb_fig_series *se, size_t i, double *lo, double *hi) {
    if (se->ysd) {
        double y = se->y[i], sd = se->ysd[i];
        if (!isfinite(sd)) return 0;
        *lo = y - fabs(sd);
        *hi = y + fabs(sd);
    } else if (se->ylo) {
        *lo = se->ylo[i];
        *hi = se->yhi[i];
    } else {
        return 0;
    }
    if (!isfinite(*lo) || !isfinite(*hi)) return 0;
    if (fig->logy && (*lo <= 0 || *hi <= 0)) return 0;
    return 1;
}

typedef struct ser_count {
    size_t pts, bars, skipped_pts, dropped_bars;
} ser_count;

/* Extent of what is plotted (points and bars). */
typedef struct extent {
    double xmin, xmax, ymin, ymax;
} extent;

static void extent_add(extent *e, double x, double ylo, double yhi) {
    if (x < e->xmin) e->xmin = x;
    if (x > e->xmax) e->xmax = x;
    if (ylo < e->ymin) e->ymin = ylo;
    if (yhi > e->ymax) e->ymax = yhi;
}

static double nice_step(double raw) {
    double p = pow(10.0, floor(log10(raw)));
    double f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
}

/* Explicit linear "nice" tics inside [lo, hi] for a log axis spanning less than a decade (where
 * gnuplot would label at most one tic). */
static void tb_narrow_log_tics(rb_strbuf *b, char axis, double lo, double hi) {
    if (!(hi > lo) || !(lo > 0) || hi / lo >= 10) return;
    double step = nice_step((hi - lo) / 4);
    double k0 = ceil(lo / step - 1e-9), k1 = floor(hi / step + 1e-9);
    if (k1 - k0 > 20 || k1 < k0) return;
    rb_strbuf_printf(b, "set %ctics (", axis);
    for (double k = k0; k <= k1; k++) {
        if (k > k0) rb_strbuf_puts(b, ", ");
        tb_num(b, k * step);
    }
    rb_strbuf_puts(b, ")\n");
}

static void tb_degenerate_range(rb_strbuf *b, char axis, double v, int log) {
    double lo = log ? v / 2 : v == 0 ? -1 : v - fabs(v) * 0.5, hi = log ? v * 2 : v == 0 ? 1 : v + fabs(v) * 0.5;
    rb_strbuf_printf(b, "set %crange [", axis);
    tb_num(b, lo);
    rb_strbuf_puts(b, ":");
    tb_num(b, hi);
    rb_strbuf_puts(b, "]\n");
}

/* Integer x axis over data [xmin, xmax]: integer tics with a step that keeps about 16 labels or
 * fewer (1 up to 16 positions, then 2, 4, 8, 16, then 1-2-5 steps), a minor tic at each integer
 * while the step is at most 8, and a range half a unit (or 2 %) beyond the end points. */
static void tb_int_xaxis(rb_strbuf *b, double xmin, double xmax) {
    double span = xmax - xmin, npos = floor(span + 0.5) + 1, step = 1;
    while (step < 16 && npos > 16 * step) step *= 2;
    if (npos > 16 * step) step = nice_step(span / 10); /* > 256 positions: 25, 50, 100, … (integers) */
    step = fmax(1, floor(step + 0.5));
    double pad = fmax(0.5, 0.02 * span), start = ceil((xmin - pad) / step) * step;
    rb_strbuf_puts(b, "set xrange [");
    tb_num(b, xmin - pad);
    rb_strbuf_puts(b, ":");
    tb_num(b, xmax + pad);
    rb_strbuf_puts(b, "]\nset xtics ");
    tb_num(b, start == 0 ? 0 : start); /* no "-0" */
    rb_strbuf_puts(b, ", ");
    tb_num(b, step);
    rb_strbuf_puts(b, "\nset format x '%.0f'\n");
    if (step > 1 && step <= 8) rb_strbuf_printf(b, "set mxtics %d\n", (int)step);
}

static void count_series(const rb_figure *fig, const rb_fig_series *se, ser_count *c) {
    memset(c, 0, sizeof *c);
    int want_bars = se->ysd || se->ylo;
    for (size_t i = 0; i < se->n; i++) {
        if (!point_ok(fig, ser_x(se, i), se->y[i])) {
            c->skipped_pts++;
            continue;
        }
        c->pts++;
        double lo, hi;
        if (bar_of(fig, se, i, &lo, &hi))
            c->bars++;
        else if (want_bars)
            c->dropped_bars++;
    }
}

int rb_figure_script(const rb_figure *fig, const char *out_basename, char **out, size_t *len,
                     rb_error *err) {
    RB_ASSERT(fig && out && len);
    *out = NULL;
    *len = 0;
    int rc = validate(fig, out_basename, err);
    if (rc) return rc;

    size_t ns = fig->n_series;
    ser_count *cnt = calloc(ns ? ns : 1, sizeof *cnt);
    if (!cnt) return rb_error_set(err, RB_ENOMEM, "figure: out of memory");
    size_t total_pts = 0;
    for (size_t s = 0; s < ns; s++) {
        count_series(fig, &fig->series[s], &cnt[s]);
        total_pts += cnt[s].pts;
    }
    int nodata = total_pts == 0;
    /* Categorical: each series with points gets a fixed slot within every category. */
    double *dodge = calloc(ns ? ns : 1, sizeof *dodge);
    if (!dodge) {
        free(cnt);
        return rb_error_set(err, RB_ENOMEM, "figure: out of memory");
    }
    size_t any_bars = 0;
    if (fig->categorical) {
        size_t m = 0, k = 0;
        for (size_t s = 0; s < ns; s++) m += cnt[s].pts > 0;
        double slot = m > 1 ? fmin(0.8 / (double)m, 0.25) : 0.0;
        for (size_t s = 0; s < ns; s++)
            if (cnt[s].pts) dodge[s] = ((double)k++ - (double)(m - 1) / 2.0) * slot;
    }
    for (size_t s = 0; s < ns; s++) any_bars += cnt[s].bars;
    extent ext = {INFINITY, -INFINITY, INFINITY, -INFINITY};
    for (size_t s = 0; s < ns; s++) {
        const rb_fig_series *se = &fig->series[s];
        for (size_t i = 0; i < se->n; i++) {
            double x = ser_x(se, i) + dodge[s], y = se->y[i], lo, hi;
            if (!point_ok(fig, x, y)) continue;
            extent_add(&ext, x, y, y);
            if (bar_of(fig, se, i, &lo, &hi)) extent_add(&ext, x, fmin(lo, hi), fmax(lo, hi));
        }
    }
    int w = fig->width ? fig->width : DEFAULT_W, h = fig->height ? fig->height : DEFAULT_H;

    rb_strbuf b = {0};
    rb_strbuf_puts(&b, "# rotbench figure (generated by rb_figure; data inline). Render with: gnuplot <this file>\n");
    rb_strbuf_puts(&b, "# outputs: ");
    rb_strbuf_puts(&b, out_basename);
    rb_strbuf_puts(&b, ".svg, ");
    rb_strbuf_puts(&b, out_basename);
    rb_strbuf_puts(&b, ".png\n");

    /* Data blocks. */
    for (size_t s = 0; s < ns; s++) {
        const rb_fig_series *se = &fig->series[s];
        rb_strbuf_printf(&b, "\n# series %zu: ", s);
        tb_gpstr(&b, se->name);
        rb_strbuf_printf(&b, ", %zu points", cnt[s].pts);
        if (cnt[s].skipped_pts)
            rb_strbuf_printf(&b, ", %zu skipped (non-finite%s)", cnt[s].skipped_pts,
                      fig->logx || fig->logy ? " or not positive on a log axis" : "");
        if (se->ysd || se->ylo) rb_strbuf_printf(&b, ", %zu error bars (%s)", cnt[s].bars, se->ysd ? "y +- sd" : "ylo..yhi");
        if (cnt[s].dropped_bars) rb_strbuf_printf(&b, ", %zu bars dropped", cnt[s].dropped_bars);
        rb_strbuf_puts(&b, "\n");
        if (!cnt[s].pts) continue;
        rb_strbuf_printf(&b, "$s%zu << EOD\n", s);
        int gap = 0, any = 0;
        for (size_t i = 0; i < se->n; i++) {
            double x = ser_x(se, i) + dodge[s], y = se->y[i];
            if (!point_ok(fig, x, y)) {
                gap = 1;
                continue;
            }
            if (gap && any) rb_strbuf_puts(&b, "\n"); /* a blank line breaks the curve at skipped points */
            gap = 0;
            any = 1;
            tb_num(&b, x);
            rb_strbuf_puts(&b, " ");
            tb_num(&b, y);
            rb_strbuf_puts(&b, "\n");
        }
        rb_strbuf_puts(&b, "EOD\n");
        if (!cnt[s].bars) continue;
        rb_strbuf_printf(&b, "$e%zu << EOD\n", s);
        for (size_t i = 0; i < se->n; i++) {
            double x = ser_x(se, i) + dodge[s], y = se->y[i], lo, hi;
            if (!point_ok(fig, x, y) || !bar_of(fig, se, i, &lo, &hi)) continue;
            tb_num(&b, x);
            rb_strbuf_puts(&b, " ");
            tb_num(&b, y);
            rb_strbuf_puts(&b, " ");
            tb_num(&b, lo);
            rb_strbuf_puts(&b, " ");
            tb_num(&b, hi);
            rb_strbuf_puts(&b, "\n");
        }
        rb_strbuf_puts(&b, "EOD\n");
    }

    /* Settings. */
    rb_strbuf_puts(&b, "\nset encoding utf8\n");
    if (has_text(fig->title)) {
        rb_strbuf_puts(&b, "set title ");
        tb_gpstr(&b, fig->title);
        rb_strbuf_puts(&b, "\n");
    }
    rb_strbuf_puts(&b, "set xlabel ");
    tb_gpstr(&b, fig->xlabel);
    rb_strbuf_puts(&b, "\nset ylabel ");
    tb_gpstr(&b, fig->ylabel);
    rb_strbuf_puts(&b, "\n");
    for (int i = 0; i < 8; i++)
        rb_strbuf_printf(&b, "set linetype %d linecolor rgb '%s' linewidth 2 pointtype %d pointsize 1.3\n", i + 1,
                  k_colors[i], k_points[i]);
    rb_strbuf_puts(&b, "set linetype cycle 8\n");
    rb_strbuf_puts(&b, "set border linewidth 1\n");
    if (nodata) {
        rb_strbuf_puts(&b, "unset key\nunset xtics\nunset ytics\n");
        rb_strbuf_puts(&b, "set xrange [0:1]\nset yrange [0:1]\n");
        rb_strbuf_puts(&b, "set label 1 'no data' at graph 0.5, graph 0.5 center\n");
    } else {
        rb_strbuf_printf(&b, "set grid %sytics linecolor rgb '#d0d0d0' linewidth 1 dashtype solid\n",
                         fig->categorical ? "" : "xtics ");
        rb_strbuf_puts(&b, "set key outside right top vertical Left reverse samplen 3 spacing 1.2\n");
        /* Ranges hug the data with a 5% margin (instead of jumping to the next tic or decade). */
        rb_strbuf_puts(&b, "set autoscale yfix\n");
        int xfixed = (fig->n_xtics && !fig->xtic_pos) || fig->xint; /* x range set explicitly below */
        if (xfixed)
            rb_strbuf_puts(&b, "set offsets 0, 0, graph 0.05, graph 0.05\n");
        else
            rb_strbuf_puts(&b, "set autoscale xfix\nset offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05\n");
        /* A single x or y value: an explicit range (gnuplot would warn "empty range"). */
        if (ext.xmin == ext.xmax && !xfixed) tb_degenerate_range(&b, 'x', ext.xmin, fig->logx);
        if (fig->xint) tb_int_xaxis(&b, ext.xmin, ext.xmax);
        if (ext.ymin == ext.ymax) tb_degenerate_range(&b, 'y', ext.ymin, fig->logy);
        if (fig->logx) {
            rb_strbuf_puts(&b, "set logscale x 10\nset format x '%g'\n");
            if (!fig->n_xtics) {
                /* Few distinct x values (an ablation over 16, 32, 64, …): label exactly those. */
                double *xs = malloc(total_pts * sizeof *xs);
                size_t nx = 0;
                if (!xs) b.oom = 1;
                for (size_t s = 0; xs && s < ns; s++) {
                    const rb_fig_series *se = &fig->series[s];
                    for (size_t i = 0; i < se->n; i++)
                        if (point_ok(fig, ser_x(se, i), se->y[i])) xs[nx++] = ser_x(se, i);
                }
                if (xs) qsort(xs, nx, sizeof *xs, rb_cmp_double);
                size_t nd = 0;
                for (size_t i = 0; xs && i < nx; i++)
                    if (i == 0 || xs[i] != xs[nd - 1]) xs[nd++] = xs[i];
                if (xs && nd >= 2 && nd <= 12) {
                    rb_strbuf_puts(&b, "set xtics (");
                    for (size_t i = 0; i < nd; i++) {
                        if (i) rb_strbuf_puts(&b, ", ");
                        tb_num(&b, xs[i]);
                    }
                    rb_strbuf_puts(&b, ")\n");
                } else {
                    tb_narrow_log_tics(&b, 'x', ext.xmin, ext.xmax);
                }
                free(xs);
            }
        }
        if (fig->logy) {
            rb_strbuf_puts(&b, "set logscale y 10\nset format y '%g'\nset grid mytics\n");
            tb_narrow_log_tics(&b, 'y', ext.ymin, ext.ymax);
        }
        if (fig->n_xtics) {
            rb_strbuf_puts(&b, "set xtics (");
            for (size_t i = 0; i < fig->n_xtics; i++) {
                if (i) rb_strbuf_puts(&b, ", ");
                tb_gpstr(&b, fig->xtics[i]);
                rb_strbuf_puts(&b, " ");
                tb_num(&b, fig->xtic_pos ? fig->xtic_pos[i] : (double)i);
            }
            rb_strbuf_puts(&b, fig->categorical ? ") scale 0\n" : ")\n");
            if (!fig->xtic_pos) {
                rb_strbuf_puts(&b, "set xrange [-0.5:");
                tb_num(&b, (double)fig->n_xtics - 0.5);
                rb_strbuf_puts(&b, "]\n");
            }
            /* Categories apart: a dashed line between neighbours (no line through them). */
            for (size_t i = 1; fig->categorical && i < fig->n_xtics; i++) {
                rb_strbuf_puts(&b, "set arrow from first ");
                tb_num(&b, (double)i - 0.5);
                rb_strbuf_puts(&b, ", graph 0 to first ");
                tb_num(&b, (double)i - 0.5);
                rb_strbuf_puts(&b, ", graph 1 nohead back linecolor rgb '#b0b0b0' linewidth 1 dashtype 2\n");
            }
        }
    }

    /* Plot command (SVG), then the same for PNG. */
    rb_strbuf_printf(&b, "\nset terminal svg size %d,%d noenhanced font 'sans-serif,12' background rgb '#ffffff'\n",
              w, h);
    rb_strbuf_puts(&b, "set output ");
    {
        size_t n = strlen(out_basename);
        char *o = malloc(n + 5);
        if (!o) b.oom = 1;
        else {
            memcpy(o, out_basename, n);
            memcpy(o + n, ".svg", 5);
            tb_gpstr(&b, o);
            memcpy(o + n, ".png", 5);
            if (nodata) {
                rb_strbuf_puts(&b, "\nplot NaN notitle\n");
            } else {
                rb_strbuf_puts(&b, "\nplot ");
                int first = 1;
                for (size_t s = 0; s < ns; s++) {
                    const rb_fig_series *se = &fig->series[s];
                    int lt = (int)(s % 8) + 1;
                    int dt = (int)((s / 8) % 5) + 1;
                    if (!first) rb_strbuf_puts(&b, ", \\\n     ");
                    first = 0;
                    if (!cnt[s].pts) {
                        rb_strbuf_printf(&b, "keyentry with %s linetype %d dashtype %d title ",
                                         fig->categorical ? "points" : "linespoints", lt, dt);
                        char *t = malloc(strlen(se->name ? se->name : "") + 16);
                        if (!t) {
                            b.oom = 1;
                            break;
                        }
                        sprintf(t, "%s (no data)", has_text(se->name) ? se->name : "series");
                        tb_gpstr(&b, t);
                        free(t);
                        continue;
                    }
                    const char *with = fig->categorical              ? "points"
                                       : se->style == RB_FIG_LINES  ? "lines"
                                       : se->style == RB_FIG_POINTS ? "points"
                                                                    : "linespoints";
                    /* Bars first so that the markers are drawn over them. */
                    if (cnt[s].bars)
                        rb_strbuf_printf(&b, "$e%zu using 1:2:3:4 with yerrorbars linetype %d pointtype -1 notitle, \\\n     ",
                                  s, lt);
                    rb_strbuf_printf(&b, "$s%zu using 1:2 with %s linetype %d dashtype %d ", s, with, lt, dt);
                    if (has_text(se->name)) {
                        rb_strbuf_puts(&b, "title ");
                        tb_gpstr(&b, se->name);
                    } else {
                        rb_strbuf_puts(&b, "notitle");
                    }
                }
                if (has_text(fig->key_note)) {
                    if (!first) rb_strbuf_puts(&b, ", \\\n     ");
                    rb_strbuf_puts(&b, any_bars ? "keyentry with yerrorbars linecolor rgb '#606060' pointtype -1 title "
                                                : "keyentry with points linecolor rgb '#ffffff' pointtype -1 title ");
                    tb_gpstr(&b, fig->key_note);
                }
                rb_strbuf_puts(&b, "\n");
            }
            rb_strbuf_printf(&b, "set terminal pngcairo size %d,%d noenhanced font 'sans-serif,11' background rgb '#ffffff'\n", w,
                      h);
            rb_strbuf_puts(&b, "set output ");
            tb_gpstr(&b, o);
            rb_strbuf_puts(&b, "\nreplot\nunset output\n");
            free(o);
        }
    }
    free(cnt);
    free(dodge);
    if (b.oom) {
        free(b.p);
        return rb_error_set(err, RB_ENOMEM, "figure: out of memory");
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

int rb_figure_write_gp(const rb_figure *fig, const char *path_gp, const char *out_basename,
                       rb_error *err) {
    char *s;
    size_t n;
    int rc = rb_figure_script(fig, out_basename, &s, &n, err);
    if (rc) return rb_error_prefix(err, "%s", path_gp);
    rc = rb_write_file(path_gp, s, n, err);
    free(s);
    return rc;
}

/* ---- rendering ---------------------------------------------------------------------------- */

#define CAPTURE_MAX 65536

/* Appends the child's output; keeps the last CAPTURE_MAX bytes. */
static void capture_read(int fd, rb_strbuf *b) {
    char chunk[4096];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        rb_strbuf_put(b, chunk, (size_t)r);
        if (b->oom) {
            /* Keep going (drain the pipe) but stop collecting. */
            continue;
        }
        if (b->len > CAPTURE_MAX) {
            size_t drop = b->len - CAPTURE_MAX / 2;
            memmove(b->p, b->p + drop, b->len - drop + 1);
            b->len -= drop;
        }
    }
}

/* Output squeezed onto one line ("; " between lines), the last `max` bytes. */
static void one_line(const char *s, size_t n, char *dst, size_t cap) {
    size_t k = 0;
    int pending_sep = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n' || c == '\r') {
            if (k) pending_sep = 1;
            continue;
        }
        if (c == '\t') c = ' ';
        if (pending_sep) {
            if (k + 2 < cap) {
                dst[k++] = ';';
                dst[k++] = ' ';
            }
            pending_sep = 0;
        }
        if (k + 1 < cap) dst[k++] = (char)c;
    }
    dst[k] = '\0';
}

int rb_figure_render(const char *path_gp, rb_error *err) {
    RB_ASSERT(path_gp);
    if (!rb_path_exists(path_gp)) return rb_error_set(err, RB_ENOTFOUND, "%s: no such figure script", path_gp);
    const char *prog = getenv("RB_GNUPLOT");
    if (!prog || !*prog) prog = "gnuplot";

    /* Split into directory (the child's working directory) and file name. */
    char *dir = rb_strdup(path_gp);
    if (!dir) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path_gp);
    const char *base = path_gp;
    char *slash = strrchr(dir, '/');
    if (slash) {
        base = path_gp + (slash - dir) + 1;
        if (slash == dir)
            slash[1] = '\0'; /* "/x.gp" → "/" */
        else
            *slash = '\0';
    }

    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        int e = errno;
        free(dir);
        return rb_error_set(err, RB_EIO, "%s: pipe: %s", path_gp, strerror(e));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
    if (slash) posix_spawn_file_actions_addchdir_np(&fa, dir);
    /* Default signal dispositions and mask in the child (the harness may block or ignore some). */
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    char *argv[3] = {(char *)prog, (char *)base, NULL};
    pid_t pid;
    int se = posix_spawnp(&pid, prog, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(pfd[1]);
    if (se != 0) {
        close(pfd[0]);
        int rc;
        if (se == ENOENT)
            rc = rb_error_set(err, RB_ENOTFOUND,
                              "%s: cannot render: '%s' not found (install gnuplot: apt-get install gnuplot-nox, "
                              "or set RB_GNUPLOT)",
                              path_gp, prog);
        else
            rc = rb_error_set(err, RB_EIO, "%s: cannot start '%s': %s", path_gp, prog, strerror(se));
        free(dir);
        return rc;
    }
    free(dir);

    rb_strbuf out = {0};
    capture_read(pfd[0], &out);
    close(pfd[0]);
    int status;
    pid_t w;
    do {
        w = waitpid(pid, &status, 0);
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
        int e = errno;
        free(out.p);
        return rb_error_set(err, RB_EIO, "%s: waitpid: %s", path_gp, strerror(e));
    }

    char line[RB_ERROR_MSG_MAX];
    const char *txt = out.p ? out.p : "";
    size_t tlen = out.len;
    /* Tail that fits in an error message. */
    size_t keep = 700;
    const char *tail = tlen > keep ? txt + tlen - keep : txt;
    one_line(tail, tlen > keep ? keep : tlen, line, sizeof line);

    int rc = 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        if (line[0]) rb_warn("gnuplot %s: %s", path_gp, line);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && !line[0]) {
        rc = rb_error_set(err, RB_ENOTFOUND, "%s: cannot render: '%s' could not be run (exit 127)", path_gp, prog);
    } else if (WIFEXITED(status)) {
        rc = rb_error_set(err, RB_EFORMAT, "%s: gnuplot failed (exit %d): %s%s", path_gp, WEXITSTATUS(status),
                          tlen > keep ? "..." : "", line[0] ? line : "(no output)");
    } else if (WIFSIGNALED(status)) {
        rc = rb_error_set(err, RB_EIO, "%s: gnuplot killed by signal %d: %s", path_gp, WTERMSIG(status),
                          line[0] ? line : "(no output)");
    } else {
        rc = rb_error_set(err, RB_EIO, "%s: gnuplot ended abnormally", path_gp);
    }
    free(out.p);
    return rc;
}

int rb_figure_save(const rb_figure *fig, const char *dir, const char *name, rb_error *err) {
    RB_ASSERT(fig && dir && name);
    if (!*name || strchr(name, '/'))
        return rb_error_set(err, RB_EINVAL, "figure: name '%s' must be a non-empty file name", name);
    size_t n = strlen(name);
    char *fn = malloc(n + 4);
    if (!fn) return rb_error_set(err, RB_ENOMEM, "figure: out of memory");
    memcpy(fn, name, n);
    memcpy(fn + n, ".gp", 4);
    char *path = rb_path_join(dir, fn);
    free(fn);
    if (!path) return rb_error_set(err, RB_ENOMEM, "figure: out of memory");
    int rc = rb_figure_write_gp(fig, path, name, err);
    if (!rc) rc = rb_figure_render(path, err);
    free(path);
    return rc;
}

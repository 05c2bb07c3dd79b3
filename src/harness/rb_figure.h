/* rb_figure: figures as self-contained gnuplot scripts (DESIGN §6).
 *
 * The caller fills an rb_figure (it owns every array and string; nothing is copied or kept) and
 * rb_figure_write_gp writes ONE gnuplot script with the data inline ($sN / $eN datablocks) that
 * renders <out_basename>.svg (terminal svg) and then <out_basename>.png (terminal pngcairo).
 * The script is byte-reproducible: numbers as "%.9g" (C decimal point whatever the locale), no
 * dates, no absolute paths unless the caller passes them, series in the caller's order.
 *
 * Points with a non-finite x or y are skipped (never passed to gnuplot), as are points with
 * x <= 0 on a log-x axis or y <= 0 on a log-y axis; an error bar with a non-finite end, or a lower
 * end <= 0 on a log-y axis, is dropped (the point stays). The script says how many were skipped
 * in a comment. A figure with no series, or whose series have no plottable point, renders as
 * empty axes saying "no data" (not an error); a series without plottable points keeps its legend
 * entry, suffixed " (no data)".
 *
 * Text (title, labels, legend entries, tick labels) is written as gnuplot single-quoted strings
 * ('' for a quote; backquotes and @macros are NOT expanded there, unlike in double quotes) with
 * enhanced-text markup off, so "W4A4_KV4" or "it's" print literally; control characters become
 * spaces. Text is UTF-8.
 *
 * rb_figure_render runs gnuplot on a script (posix_spawn, no shell) with the script's directory as
 * working directory, so a relative out_basename is resolved against the script's directory: pass
 * a bare name ("ppl_vs_bits" for "plots/ppl_vs_bits.gp") to keep the script movable. */
#ifndef RB_FIGURE_H
#define RB_FIGURE_H

#include <stddef.h>

#include "core/rb_error.h"

/* How a series is drawn. */
enum {
    RB_FIG_LINESPOINTS = 0, /* lines through markers (default) */
    RB_FIG_LINES = 1,       /* lines only (long curves: objective vs step, per-layer stats) */
    RB_FIG_POINTS = 2,      /* markers only */
};

/* One legend entry (one method): n points (x[i], y[i]) with optional error bars. */
typedef struct rb_fig_series {
    const char *name;      /* legend entry; NULL or "" → none */
    size_t n;              /* number of points (0 allowed) */
    const double *x;       /* n x values; NULL → x = 0, 1, …, n-1 (categorical: index of xtics) */
    const double *y;       /* n y values; required when n > 0 */
    const double *ylo;     /* optional error bar ends: bar from ylo[i] to yhi[i] (both or neither) */
    const double *yhi;
    const double *ysd;     /* optional symmetric spread: bar from y-ysd[i] to y+ysd[i] (±sd); not
                            * together with ylo/yhi. A NaN entry means no bar at that point. */
    int style;             /* RB_FIG_* */
} rb_fig_series;

typedef struct rb_figure {
    const char *title;          /* NULL or "" → no title */
    const char *xlabel;         /* with units, e.g. "layer", "calibration samples" */
    const char *ylabel;         /* with units, e.g. "perplexity (WikiText-2)", "MSE" */
    int logx, logy;             /* nonzero → log10 axis */
    const char *const *xtics;   /* optional categorical tick labels ("W8A8", "W4A4", …) */
    const double *xtic_pos;     /* their x positions; NULL → 0, 1, …, n_xtics-1 (then the x range
                                 * is fixed to [-0.5, n_xtics-0.5]; not with logx) */
    size_t n_xtics;
    const rb_fig_series *series; /* n_series legend entries, drawn in this order */
    size_t n_series;
    int width, height;          /* pixels (PNG; the SVG gets the same size); 0 → 960 × 600 */
    /* Integer x (a layer index, a step count): tics at integers only, every one up to 16 positions,
     * else every 2nd, 4th, 8th or 16th (up to 256 positions; beyond, a 1-2-5 integer step) with a
     * minor tic at each integer while the step is at most 8; x range [min − 0.5, max + 0.5] (more
     * for long axes) so that no end point sits on the border. Not with logx or xtics. */
    int xint;
    /* Categorical x: one slot per xtics label (xtic_pos NULL; not with logx). Point i of a series is
     * category i (series x must be NULL, n ≤ n_xtics); series are drawn as markers with their error
     * bars, never lines (style is ignored), side by side within each category (a fixed offset per
     * series that has points), categories separated by dashed lines, no vertical grid. */
    int categorical;
    /* Optional last key entry, e.g. what the error bars are ("mean ± sd over 3 seeds"): drawn with an
     * error-bar sample when some bar is drawn, else as text alone. Not shown without data. */
    const char *key_note;
} rb_figure;

/* The script text for `fig` into a fresh NUL-terminated heap buffer (*out, caller frees; *len
 * bytes without the NUL). out_basename: output path without extension. RB_EINVAL for a malformed
 * description (message names the field), RB_ENOMEM. */
int rb_figure_script(const rb_figure *fig, const char *out_basename, char **out, size_t *len,
                     rb_error *err);

/* rb_figure_script written atomically (rb_write_file) to path_gp. */
int rb_figure_write_gp(const rb_figure *fig, const char *path_gp, const char *out_basename,
                       rb_error *err);

/* Runs `gnuplot <script>` in the script's directory (stdin /dev/null; stdout and stderr captured).
 * The program is $RB_GNUPLOT when set, else "gnuplot" from PATH. Errors: RB_ENOTFOUND when the
 * script or gnuplot is missing ("gnuplot not found … install gnuplot-nox"), RB_EFORMAT when
 * gnuplot fails (message: exit status and the tail of its stderr on one line), RB_EIO when it
 * cannot be started or is killed. Warnings that gnuplot prints on success are logged (rb_warn). */
int rb_figure_render(const char *path_gp, rb_error *err);

/* Convenience: writes <dir>/<name>.gp (outputs "<name>" relative to it, i.e. <dir>/<name>.svg
 * and .png) and renders it. */
int rb_figure_save(const rb_figure *fig, const char *dir, const char *name, rb_error *err);

#endif

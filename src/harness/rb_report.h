/* rb_report: figures and paper-style tables from a directory of runs (index rows + each run's
 * results.h5 and resolved config). */
#ifndef RB_REPORT_H
#define RB_REPORT_H

#include <stdio.h>

#include "core/rb_error.h"

/* Writes <dir>/figures/<name>.{gp,svg,png} (with quant non-NULL: only the runs of that preset,
 * into <dir>/figures-<quant>/; RB_ENOTFOUND when there is none) for: kurtosis_<site> and act_mse_<site> per layer
 * (one line per method; identity = before rotation; integer layer tics), ppl_vs_bits (x = the
 * quantization settings, most bits first, as categories; log y), ablation_{order,batch,samples} (only
 * axes the runs vary), <method>_<option>_{ppl,kl} for every rotation option whose value differs among
 * a method's runs (e.g. respinquant_rank_ppl; x = the option's value, one series per quantization
 * setting), and the learned methods' convergence from their /calibration traces: conqur_align_r1,
 * conqur_align_r2 (alignment per update), optrot_loss (loss / initial loss per step), ...,
 * respinquant_junctions (per layer, one curve per junction), each only when some run logged it;
 * tasks_delta (quantized − FP accuracy per zero-shot task with its 95 % paired bootstrap interval,
 * one series per method and setting) when some run scored tasks with an FP reference.
 * Figures with one point per setting (ppl_vs_bits, the ablations) are categorical: a marker at the
 * mean over the runs that differ only in their seed, error bars ± sd when every point with several
 * seeds has at least 3, else min–max, none for one seed (the key's last line says which), series
 * side by side within a category, never a line between categories. A series is named by its method
 * (with the options that differ among that method's runs) plus whatever else differs among the
 * figure's runs (quantization preset and algorithm, model, calibration order, batch and windows), so
 * a categorical point averages seeds only; the per-layer figures split by method and model (and the
 * MSE by preset) and average the rest. *n_out receives the number written. */
int rb_report_plot(const char *dir, const char *quant, int *n_out, rb_error *err);

/* Methods × settings perplexity table (ppl and Δ vs FP, the papers' layout) of the done runs of
 * <dir>, in format RB_TABLE_* (rb_table.h), to f. Seeds of one cell are averaged. When runs scored
 * zero-shot tasks, two more tables follow, each after a blank line and a caption (Markdown: a
 * paragraph; LaTeX: a % comment; CSV: nothing): the accuracy table (settings × methods rows, one
 * column per task, Avg, an FP row) and the paired Δ-vs-FP table with 95 % intervals
 * (rb_table_tasks). Without tasks the output is the perplexity table alone, as before. */
int rb_report_table(const char *dir, int format, FILE *f, rb_error *err);

#endif

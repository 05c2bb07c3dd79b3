/* rb_report: figures and paper-style tables from a directory of runs (index rows + each run's
 * results.h5 and resolved config). */
#ifndef RB_REPORT_H
#define RB_REPORT_H

#include <stdio.h>

#include "core/rb_error.h"

/* Writes <dir>/figures/<name>.{gp,svg,png} (with quant non-NULL: only the runs of that preset,
 * into <dir>/figures-<quant>/; RB_ENOTFOUND when there is none) for: kurtosis_<site> and act_mse_<site> per layer
 * (one line per method; identity = before rotation), ppl_vs_bits (per method, log y),
 * ablation_{order,batch,samples} (mean ± sd over seeds; only axes the runs vary),
 * <method>_<option>_{ppl,kl} for every rotation option whose value differs among a method's runs
 * (e.g. respinquant_rank_ppl; x = the option's value, one series per quantization setting), and the
 * learned methods' convergence from their /calibration traces: conqur_align_r1, conqur_align_r2
 * (alignment per update) and optrot_loss (loss / initial loss per step), each only when some run
 * logged it; tasks_delta (quantized − FP accuracy per zero-shot task with its 95 % paired bootstrap
 * interval, one series per method and setting) when some run scored tasks with an FP reference.
 * *n_out receives the number written. */
int rb_report_plot(const char *dir, const char *quant, int *n_out, rb_error *err);

/* Methods × settings perplexity table (ppl and Δ vs FP, the papers' layout) of the done runs of
 * <dir>, in format RB_TABLE_* (rb_table.h), to f. Seeds of one cell are averaged. When runs scored
 * zero-shot tasks, two more tables follow, each after a blank line and a caption (Markdown: a
 * paragraph; LaTeX: a % comment; CSV: nothing): the accuracy table (settings × methods rows, one
 * column per task, Avg, an FP row) and the paired Δ-vs-FP table with 95 % intervals
 * (rb_table_tasks). Without tasks the output is the perplexity table alone, as before. */
int rb_report_table(const char *dir, int format, FILE *f, rb_error *err);

#endif

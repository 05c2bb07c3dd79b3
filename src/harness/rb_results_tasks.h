/* rb_results_tasks: zero-shot task results in results.h5 (/tasks/<name>, docs/results-schema.md):
 * the writer of one task's scores (per request, per document, metrics, the paired comparison with
 * the FP reference) and the validating reader of every /tasks group. */
#ifndef RB_RESULTS_TASKS_H
#define RB_RESULTS_TASKS_H

#include <stdint.h>

#include "core/rb_error.h"
#include "eval/rb_tasks.h"
#include "harness/rb_results.h"

/* Bounds when reading (far above real use: HellaSwag has 10042 documents × 4 requests). */
#define RB_RES_MAX_TASK_DOCS (1 << 24)
#define RB_RES_MAX_TASK_REQS (1 << 26)

/* /tasks/<rb_task_name(r->task)>: r's arrays and metrics (docs/results-schema.md), `file` the task
 * file read (its format: rb_task_format_name(format)), labels the labels file given (NULL: none).
 * Replaces an earlier group of the same task (a resumed run rewrites its unit) and flushes. RB_EINVAL
 * for an inconsistent result (counts, offsets, missing arrays), naming the task. */
int rb_results_put_task(rb_results *w, const char *file, const char *labels, int format, const rb_task_result *r,
                        rb_error *err);

/* One /tasks/<name> group read back. Metrics not reported (rb_task_metrics) are NaN, as are the
 * FP and paired values without an FP reference. Arrays only when asked for (else NULL). */
typedef struct rb_task_data {
    int task, format, scoring, bos; /* enum rb_task_id, rb_task_format, rb_task_scoring, RB_TASK_BOS_* */
    char *file, *labels;            /* heap; labels "" when none */
    int n_docs, n_req;
    int metrics;                    /* RB_METRIC_ACC | _ACC_NORM | _PPL bits reported */
    int have_fp;                    /* an FP reference was scored alongside */
    int truncated;                  /* requests left-truncated to max_length */
    double acc, acc_norm, ppl;      /* evaluated (quantized) model; fractions / perplexity */
    double fp_acc, fp_acc_norm, fp_ppl;
    rb_task_paired acc_pair, acc_norm_pair; /* delta/lo/hi/p NaN and counts -1 when absent */
    int64_t tokens_forward, tokens_request;
    double seconds;
    /* per document [n_docs] / request [n_req]; req_off [n_docs + 1] */
    int32_t *req_off, *gold, *n_tok, *n_chars;
    double *ll, *ll_fp;
    uint8_t *greedy, *greedy_fp, *correct, *correct_fp, *correct_norm, *correct_norm_fp;
} rb_task_data;

/* Every /tasks group of a results file in creation order into *out[*n] (heap; free with
 * rb_task_data_free). A file without /tasks gives *n = 0. arrays: also read the datasets (checked:
 * extents, offsets increasing from 0 to n_req, gold within its document, flags 0/1, the metrics
 * agreeing with the flags). Errors as rb_results_read_summary: RB_EFORMAT "<file>: /tasks/x: what". */
int rb_results_read_tasks(const char *path, int arrays, rb_task_data **out, int *n, rb_error *err);
void rb_task_data_free(rb_task_data *d, int n);

/* The primary metric's (rb_task_primary_metric) value for the evaluated model or the FP reference, and
 * its paired comparison. */
double rb_task_data_primary(const rb_task_data *d, int fp);
const rb_task_paired *rb_task_data_primary_pair(const rb_task_data *d);

#endif

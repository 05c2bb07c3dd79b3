#include "harness/rb_run.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_signal.h"
#include "pipeline/rb_pipeline.h"
#include "harness/rb_results.h"
#include "harness/rb_results_tasks.h"
#include "harness/rb_sha256.h"
#include "methods/rb_method.h"
#include "quant/rb_qpreset.h"
#include "quant/rb_wstore.h"

/* ---- input hashing (cached per path: a sweep hashes a 13 GB checkpoint once) ---- */

typedef struct hash_entry {
    char *path;
    char hex[RB_SHA256_HEX_LEN + 1];
} hash_entry;

static hash_entry *g_hashes;
static size_t g_n_hashes;

static int hash_cached(const char *path, char out[RB_SHA256_HEX_LEN + 1], rb_error *err) {
    for (size_t i = 0; i < g_n_hashes; i++)
        if (!strcmp(g_hashes[i].path, path)) {
            memcpy(out, g_hashes[i].hex, RB_SHA256_HEX_LEN + 1);
            return 0;
        }
    int rc = rb_sha256_file(path, out, err);
    if (rc) return rc;
    hash_entry *n = realloc(g_hashes, (g_n_hashes + 1) * sizeof *n);
    if (!n) return rb_error_set(err, RB_ENOMEM, "out of memory");
    g_hashes = n;
    g_hashes[g_n_hashes].path = rb_strdup(path);
    memcpy(g_hashes[g_n_hashes].hex, out, RB_SHA256_HEX_LEN + 1);
    if (g_hashes[g_n_hashes].path) g_n_hashes++;
    return 0;
}

/* Files of a checkpoint that define it: the .bin, or an HF directory's config, weights and
 * tokenizer files (sorted by name for a stable id). */
typedef struct file_list {
    char **path, **name;
    int n;
} file_list;

static void file_list_free(file_list *l) {
    for (int i = 0; i < l->n; i++) {
        free(l->path[i]);
        free(l->name[i]);
    }
    free(l->path);
    free(l->name);
    memset(l, 0, sizeof *l);
}

static int file_list_add(file_list *l, const char *path, const char *name) {
    char **p = realloc(l->path, (size_t)(l->n + 1) * sizeof *p);
    if (!p) return RB_ENOMEM;
    l->path = p;
    char **q = realloc(l->name, (size_t)(l->n + 1) * sizeof *q);
    if (!q) return RB_ENOMEM;
    l->name = q;
    l->path[l->n] = rb_strdup(path);
    l->name[l->n] = rb_strdup(name);
    if (!l->path[l->n] || !l->name[l->n]) return RB_ENOMEM;
    l->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int model_files(const char *model, file_list *l, rb_error *err) {
    memset(l, 0, sizeof *l);
    if (!rb_path_is_dir(model)) {
        if (!rb_path_exists(model)) return rb_error_set(err, RB_ENOTFOUND, "%s: model not found", model);
        const char *b = strrchr(model, '/');
        return file_list_add(l, model, b ? b + 1 : model) ? rb_error_set(err, RB_ENOMEM, "out of memory") : 0;
    }
    DIR *d = opendir(model);
    if (!d) return rb_error_set(err, RB_EIO, "%s: cannot list: %s", model, strerror(errno));
    char **names = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *s = e->d_name;
        size_t len = strlen(s);
        int keep = !strcmp(s, "config.json") || (len > 12 && !strcmp(s + len - 12, ".safetensors")) ||
                   (len > 11 && !strcmp(s + len - 11, ".index.json")) || !strncmp(s, "tokenizer", 9);
        if (!keep) continue;
        char **t = realloc(names, (size_t)(n + 1) * sizeof *t);
        if (!t || !(t[n] = rb_strdup(s))) {
            free(t ? t : names);
            closedir(d);
            return rb_error_set(err, RB_ENOMEM, "out of memory");
        }
        names = t;
        n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char *p = rb_path_join(model, names[i]);
        if (!rc && (!p || file_list_add(l, p, names[i]))) rc = rb_error_set(err, RB_ENOMEM, "out of memory");
        free(p);
        free(names[i]);
    }
    free(names);
    return rc;
}

/* PIQA's labels file of a task entry: the one given, else rb_taskfile_read's default when it exists,
 * else NULL. Heap. */
static char *task_labels_path(const rb_cfg_task *t, int *oom) {
    *oom = 0;
    if (!t->labels && t->task != RB_TASK_PIQA) return NULL;
    char *p = t->labels ? rb_strdup(t->labels) : rb_taskfile_default_labels(t->file);
    *oom = !p;
    if (p && !t->labels && !rb_path_exists(p)) {
        free(p);
        return NULL;
    }
    return p;
}

/* The corpora a config reads: calibration (if any), every evaluation corpus, then every task file
 * ("task.<name>") and PIQA's labels file ("task.piqa.labels"). */
static int corpus_list(const rb_config *cfg, file_list *l) {
    memset(l, 0, sizeof *l);
    if (cfg->data.has_calib && file_list_add(l, cfg->data.calib.corpus, "calib")) return RB_ENOMEM;
    for (int i = 0; i < cfg->data.n_eval; i++)
        if (file_list_add(l, cfg->data.eval[i].corpus, cfg->data.eval[i].name)) return RB_ENOMEM;
    for (int i = 0; i < cfg->data.n_tasks; i++) {
        const rb_cfg_task *t = &cfg->data.tasks[i];
        char name[96];
        snprintf(name, sizeof name, "task.%s", rb_task_name(t->task));
        if (file_list_add(l, t->file, name)) return RB_ENOMEM;
        int oom;
        char *lab = task_labels_path(t, &oom);
        if (oom) return RB_ENOMEM;
        if (lab) {
            snprintf(name, sizeof name, "task.%s.labels", rb_task_name(t->task));
            int rc = file_list_add(l, lab, name);
            free(lab);
            if (rc) return RB_ENOMEM;
        }
    }
    return 0;
}

int rb_run_compute_id(const rb_config *cfg, char id[RB_RUN_ID_LEN + 1], rb_error *err) {
    file_list mf, cf;
    int rc = model_files(cfg->model.path, &mf, err);
    if (rc) return rc;
    if (corpus_list(cfg, &cf)) {
        file_list_free(&mf);
        return rb_error_set(err, RB_ENOMEM, "out of memory");
    }
    int n = mf.n + cf.n + (cfg->model.tokenizer ? 1 : 0);
    char (*hex)[RB_SHA256_HEX_LEN + 1] = calloc((size_t)n + 1, sizeof *hex);
    const char **ptr = calloc((size_t)n + 1, sizeof *ptr);
    int k = 0;
    if (!hex || !ptr) rc = rb_error_set(err, RB_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < mf.n; i++) rc = hash_cached(mf.path[i], hex[k++], err);
    if (!rc && cfg->model.tokenizer) rc = hash_cached(cfg->model.tokenizer, hex[k++], err);
    for (int i = 0; !rc && i < cf.n; i++) rc = hash_cached(cf.path[i], hex[k++], err);
    if (!rc) {
        for (int i = 0; i < k; i++) ptr[i] = hex[i];
        rb_run_id(cfg->canonical, ptr, (size_t)k, id);
    }
    free(hex);
    free(ptr);
    file_list_free(&mf);
    file_list_free(&cf);
    return rc;
}

void rb_run_dir_name(const rb_config *cfg, const char *run_id, char *buf, size_t cap) {
    snprintf(buf, cap, "%s-%.12s", cfg->name, run_id);
}

/* ---- config → pipeline ---- */

static void qspec_from(const rb_cfg_qtensor *t, rb_qspec *q) {
    *q = rb_qspec_make(t->bits, t->sym, t->gran, t->group);
    q->clip = (float)t->clip;
    q->clip_search = t->clip_search;
    q->raw_minmax = t->raw_minmax;
}

static void quant_from(const rb_config *cfg, rb_quant_cfg *q) {
    memset(q, 0, sizeof *q);
    snprintf(q->name, sizeof q->name, "%s", cfg->quant.preset ? cfg->quant.preset : "custom");
    qspec_from(&cfg->quant.w, &q->w);
    qspec_from(&cfg->quant.a, &q->a);
    qspec_from(&cfg->quant.kv, &q->k);
    qspec_from(&cfg->quant.kv, &q->v);
    qspec_from(&cfg->quant.q, &q->q);
    q->o_proj = cfg->quant.o_proj;
    q->w_algo = cfg->quant.w.algo;
    q->gptq = rb_gptq_opts_default();
    q->gptq.act_order = cfg->quant.w.act_order;
    q->gptq.percdamp = cfg->quant.w.damp;
}

static int write_text(const char *dir, const char *name, const char *text, rb_error *err) {
    char *p = rb_path_join(dir, name);
    if (!p) return rb_error_set(err, RB_ENOMEM, "out of memory");
    int rc = rb_write_file(p, text, strlen(text), err);
    free(p);
    return rc;
}

static int make_dirs(const char *dir, rb_error *err) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *s = buf + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(buf, 0777) && errno != EEXIST)
                return rb_error_set(err, RB_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
            *s = '/';
        }
    if (mkdir(buf, 0777) && errno != EEXIST)
        return rb_error_set(err, RB_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
    if (!rb_path_is_dir(buf)) return rb_error_set(err, RB_EIO, "%s: not a directory", buf);
    return 0;
}

/* Opens the results writer per the done/partial/resume/force rules. *w NULL with rc 0: skip. */
static int open_results(const rb_config *cfg, const char *run_dir, const char *run_id, const rb_run_opts *o,
                        const rb_quant_cfg *q, rb_results **w, int *resumed, rb_error *err) {
    *w = NULL;
    *resumed = 0;
    char *done = rb_path_join(run_dir, RB_RESULTS_FILE), *partial = rb_path_join(run_dir, RB_RESULTS_PARTIAL);
    int has_done = done && rb_path_exists(done), has_partial = partial && rb_path_exists(partial);
    free(partial);
    if (has_done && !o->force) {
        /* a results.h5 counts as done only when it reads back as this run, finished (issue 16): a damaged
         * or foreign one is refused, never skipped */
        rb_run_summary sm;
        rb_error e2 = {0};
        int rc = rb_results_read_summary(done, &sm, &e2);
        if (!rc && (sm.status != RB_RUN_DONE || strcmp(sm.run_id, run_id)))
            rc = rb_error_set(&e2, RB_EFORMAT, "status %d, run id %.12s", sm.status, sm.run_id);
        if (rc)
            rc = rb_error_set(err, RB_EFORMAT, "%s: results.h5 is not this run's finished result (%s): --force redoes it",
                              run_dir, e2.msg);
        free(done);
        return rc;
    }
    free(done);
    if (has_partial && !o->force) {
        if (!o->resume)
            return rb_error_set(err, RB_EINVAL, "%s: a partial run exists: pass --resume to go on or --force to redo it",
                                run_dir);
        int rc = rb_results_resume(run_dir, run_id, w, err);
        if (!rc) *resumed = 1;
        return rc;
    }
    char label[RB_RUN_WORD_MAX + 1];
    rb_config_method_label(cfg, label, sizeof label);
    rb_run_meta meta = {.run_id = run_id, .name = cfg->name, .method = label, .quant = q->name,
                        .w_bits = q->w.bits, .a_bits = q->a.bits, .kv_bits = q->k.bits, .w_algo = q->w_algo,
                        .seed = cfg->seed, .resolved_yaml = cfg->canonical, .overrides = o->overrides,
                        .n_overrides = o->n_overrides, .argv = o->argv, .argc = o->argc};
    return rb_results_create(run_dir, &meta, NULL, o->force ? RB_RESULTS_REPLACE : 0, w, err);
}

static int put_inputs(rb_results *w, const rb_config *cfg, rb_error *err) {
    file_list mf, cf;
    int rc = model_files(cfg->model.path, &mf, err);
    if (rc) return rc;
    if (corpus_list(cfg, &cf)) {
        file_list_free(&mf);
        return rb_error_set(err, RB_ENOMEM, "out of memory");
    }
    rb_input_file *m = calloc((size_t)mf.n + 1, sizeof *m), *c = calloc((size_t)cf.n + 1, sizeof *c);
    char (*hex)[RB_SHA256_HEX_LEN + 1] = calloc((size_t)(mf.n + cf.n) + 1, sizeof *hex);
    if (!m || !c || !hex) rc = rb_error_set(err, RB_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < mf.n; i++) {
        rc = hash_cached(mf.path[i], hex[i], err);
        m[i] = (rb_input_file){mf.name[i], mf.path[i], hex[i]};
    }
    for (int i = 0; !rc && i < cf.n; i++) {
        rc = hash_cached(cf.path[i], hex[mf.n + i], err);
        c[i] = (rb_input_file){cf.name[i], cf.path[i], hex[mf.n + i]};
    }
    rb_inputs in = {cfg->model.path, m, mf.n, c, cf.n};
    if (!rc) rc = rb_results_put_inputs(w, &in, err);
    free(m);
    free(c);
    free(hex);
    file_list_free(&mf);
    file_list_free(&cf);
    return rc;
}

/* ---- model export (unit "export") ---- */

static void export_in_of(const rb_config *cfg, rb_pipe *pipe, const rb_pipe_spec *spec, rb_export_in *in) {
    rb_pipe_export_in(pipe, spec, in);
    in->dtype = cfg->export.dtype;
    in->gptq_scales_dtype = cfg->export.gptq_scales;
}

/* Refuses, right after the rotation is known and before weight quantization and evaluation, a run
 * whose export would fail (online operations, a gptq export the quantization cannot give). */
static int export_precheck(const rb_config *cfg, rb_pipe *pipe, const rb_pipe_spec *spec, const char *run_dir,
                           rb_error *err) {
    if (!cfg->export.has) return 0;
    rb_export_in in;
    export_in_of(cfg, pipe, spec, &in);
    rb_export_req req = {.format = cfg->export.format, .out = run_dir, .force = 1,
                         .allow_online_dropped = cfg->export.allow_online_dropped, .rs = pipe->rs};
    int rc = rb_export_precheck(&in, &req, err);
    if (rc) rb_error_prefix(err, "export");
    return rc;
}

/* Writes <run_dir>/model-<format> (rb_export_run; an unfinished one from an interrupted run is replaced). */
static int export_run(const rb_config *cfg, rb_pipe *pipe, const rb_pipe_spec *spec, const char *run_dir,
                      const char *run_id, rb_error *err) {
    rb_export_in in;
    export_in_of(cfg, pipe, spec, &in);
    char name[64];
    snprintf(name, sizeof name, "model-%s", rb_export_format_name(cfg->export.format));
    char *out = rb_path_join(run_dir, name);
    json_t *prov = json_pack("{s:s, s:s, s:s}", "run_id", run_id, "run_dir", run_dir, "config", cfg->canonical);
    char *ptxt = prov ? json_dumps(prov, JSON_COMPACT) : NULL;
    json_decref(prov);
    int rc = 0;
    if (!out || !ptxt) {
        rc = rb_error_set(err, RB_ENOMEM, "export: out of memory");
    } else {
        rb_export_req req = {.format = cfg->export.format, .out = out, .force = 1,
                             .allow_online_dropped = cfg->export.allow_online_dropped, .rs = pipe->rs,
                             .provenance = ptxt};
        rc = rb_export_run(&in, &req, err);
        if (!rc) rb_info("export: %s written", out);
    }
    free(out);
    free(ptxt);
    return rc;
}

/* ---- zero-shot tasks (unit "tasks") ---- */

static void task_sets_free(rb_task_set *sets, int n) {
    for (int i = 0; sets && i < n; i++) rb_task_set_free(&sets[i]);
    free(sets);
}

/* Reads every data.tasks file (before the expensive stages, so a bad file fails the run at once). */
static int tasks_read(const rb_config *cfg, rb_task_set **out, rb_error *err) {
    int n = cfg->data.n_tasks;
    rb_task_set *sets = calloc((size_t)n, sizeof *sets);
    if (!sets) return rb_error_set(err, RB_ENOMEM, "out of memory");
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const rb_cfg_task *t = &cfg->data.tasks[i];
        rc = rb_taskfile_read(t->file, t->task, t->labels, t->limit, &sets[i], err);
        if (!rc)
            rb_info("task %s: %d documents from %s (%s)", rb_task_name(t->task), sets[i].n_docs, t->file,
                    rb_task_format_name(sets[i].format));
    }
    if (rc) {
        task_sets_free(sets, n);
        return rc;
    }
    *out = sets;
    return 0;
}

/* Scores every task in one pass (rb_pipe_tasks: quantized + FP reference when the run quantizes)
 * and writes /tasks/<name>. The seconds it took into *dt. */
static int tasks_run(const rb_config *cfg, rb_pipe *pipe, const rb_pipe_spec *spec, rb_task_set *sets,
                     rb_results *w, double *dt, rb_error *err) {
    int n = cfg->data.n_tasks;
    double ts = rb_now();
    rb_task_result *res = calloc((size_t)n, sizeof *res);
    if (!res) return rb_error_set(err, RB_ENOMEM, "out of memory");
    int rc = rb_pipe_tasks(pipe, spec, sets, n, cfg->data.task_bos, cfg->data.task_max_length, res, err);
    for (int i = 0; !rc && i < n; i++) {
        const rb_task_result *r = &res[i];
        rc = rb_results_put_task(w, sets[i].path, cfg->data.tasks[i].labels, sets[i].format, r, err);
        int p = rb_task_primary_metric(r->task, r->scoring) == RB_METRIC_ACC_NORM;
        double a = p ? r->q.acc_norm : r->q.acc, f = p ? r->fp.acc_norm : r->fp.acc;
        if (!rc && r->have_fp)
            rb_info("task %s: %s %.4f (FP %.4f, delta %+.4f [%+.4f, %+.4f], McNemar p %.3g)", rb_task_name(r->task),
                    p ? "acc_norm" : "acc", a, f, (p ? &r->acc_norm_pair : &r->acc_pair)->delta,
                    (p ? &r->acc_norm_pair : &r->acc_pair)->lo, (p ? &r->acc_norm_pair : &r->acc_pair)->hi,
                    (p ? &r->acc_norm_pair : &r->acc_pair)->p_mcnemar);
        else if (!rc)
            rb_info("task %s: %s %.4f", rb_task_name(r->task), p ? "acc_norm" : "acc", a);
    }
    for (int i = 0; i < n; i++) rb_task_result_free(&res[i]);
    free(res);
    *dt = rb_now() - ts;
    if (!rc) rc = rb_results_mark_unit(w, "tasks", *dt, err);
    return rc;
}

int rb_run_execute(const rb_config *cfg, const char *run_dir, const char *run_id, const rb_run_opts *o,
                   int *outcome, rb_error *err) {
    *outcome = RB_RUN_RAN;
    double t0 = rb_now();
    int rc = make_dirs(run_dir, err);
    if (rc) return rc;
    rb_quant_cfg q;
    quant_from(cfg, &q);
    rb_results *w = NULL;
    int resumed = 0;
    if ((rc = open_results(cfg, run_dir, run_id, o, &q, &w, &resumed, err))) return rc;
    if (!w) {
        *outcome = RB_RUN_SKIPPED_DONE;
        rb_info("%s: done already (results.h5), skipped; --force redoes it", run_dir);
        return 0;
    }
    char *logp = rb_path_join(run_dir, "run.log");
    FILE *logf = logp ? fopen(logp, "a") : NULL;
    free(logp);
    if (logf) rb_log_set_tee(logf);
    rb_info("run %s (%s) in %s%s", run_id, cfg->name, run_dir, resumed ? ", resumed" : "");
    rb_rotset loaded;
    int have_loaded = 0;
    rb_pipe pipe;
    memset(&pipe, 0, sizeof pipe);
    rb_stage_times times = {NAN, NAN, NAN, NAN};
    char *wpath = NULL;
    rb_task_set *tsets = NULL;
    int do_tasks = cfg->data.n_tasks > 0 && !rb_results_unit_done(w, "tasks");
    if ((rc = write_text(run_dir, "config.yaml", cfg->canonical, err))) goto out;
    if (!resumed && (rc = put_inputs(w, cfg, err))) goto out;
    if (do_tasks && (rc = tasks_read(cfg, &tsets, err))) goto out;
    int use_rot = !rb_method_is_noop(cfg->rotation.method, (const char *const *)cfg->rotation.opt_names,
                                     (const char *const *)cfg->rotation.opt_values, cfg->rotation.n_opts,
                                     cfg->rotation.r3, cfg->rotation.r4);
    if (resumed && rb_results_unit_done(w, "rotation")) {
        if ((rc = rb_results_read_rotset(rb_results_path(w), &loaded, err))) goto out;
        have_loaded = 1;
        rb_info("rotation loaded from the partial results");
    }
    rb_pipe_spec spec = {.model_path = cfg->model.path, .tokenizer_path = cfg->model.tokenizer,
                         .seed = rb_config_stream_seed(cfg, RB_STREAM_CALIB_SAMPLE),
                         .rotation_seed = rb_config_stream_seed(cfg, RB_STREAM_ROTATION), .add_bos = 1,
                         .quant = &q, .fp_ref = 1, .stats = (cfg->metrics & (RB_METRIC_KURTOSIS | RB_METRIC_MSE)) != 0,
                         .rotation = use_rot && !have_loaded ? cfg->rotation.method : NULL,
                         .rotset = have_loaded ? &loaded : NULL,
                         .rotset_path = have_loaded ? rb_results_path(w) : NULL, .r3 = cfg->rotation.r3, .r4 = cfg->rotation.r4,
                         .cross_head = cfg->rotation.cross_head, .emb_center = cfg->rotation.emb_center,
                         .rot_opt_names = (const char *const *)cfg->rotation.opt_names,
                         .rot_opt_values = (const char *const *)cfg->rotation.opt_values,
                         .n_rot_opts = cfg->rotation.n_opts};
    if (cfg->data.has_calib) {
        spec.calib = cfg->data.calib.corpus;
        spec.calib_range = cfg->data.calib.range;
        spec.calib_doc_sep = cfg->data.calib.doc_sep;
        spec.calib_samples = cfg->data.calib.samples;
        spec.calib_seqlen = cfg->data.calib.seqlen;
        spec.calib_order = cfg->data.calib.order;
        spec.calib_batch = cfg->data.calib.batch;
    }
    double tp = rb_now();
    if ((rc = rb_pipe_prepare(&pipe, &spec, err))) goto out;
    times.calibrate = rb_now() - tp;
    if ((rc = export_precheck(cfg, &pipe, &spec, run_dir, err))) goto out;
    if (pipe.rs && !have_loaded) {
        if ((rc = rb_results_put_rotset(w, pipe.rs, err)) || (rc = rb_results_put_trace(w, &pipe.trace, err)) ||
            (rc = rb_results_mark_unit(w, "rotation", times.calibrate, err)))
            goto out;
    }
    /* weight quantization: once per run, kept in <run_dir>/wquant.h5 until the run is done */
    if (rb_pipe_quantizes_weights(&spec)) {
        if (!(wpath = rb_path_join(run_dir, RB_WSTORE_FILE))) {
            rc = rb_error_set(err, RB_ENOMEM, "out of memory");
            goto out;
        }
        rb_error we = {0};
        if (resumed && rb_results_unit_done(w, "wquant") && !rb_pipe_open_weights(&pipe, wpath, run_id, &we)) {
            rb_info("quantized weights loaded from %s", wpath);
        } else {
            if (resumed && rb_results_unit_done(w, "wquant")) rb_warn("%s; quantizing the weights again", we.msg);
            if ((rc = rb_pipe_quantize_weights(&pipe, &spec, wpath, run_id, err)) ||
                (rc = rb_results_mark_unit(w, "wquant", pipe.seconds_wquant, err)))
                goto out;
            times.quantize = pipe.seconds_wquant;
        }
    }
    double te = 0;
    for (int i = 0; i < cfg->data.n_eval; i++) {
        const rb_cfg_eval *e = &cfg->data.eval[i];
        char unit[128];
        snprintf(unit, sizeof unit, "eval.%s", e->name);
        if (rb_results_unit_done(w, unit)) {
            rb_info("%s: done before the resume, skipped", unit);
            continue;
        }
        double ts = rb_now();
        spec.ppl = (rb_ppl_opts){.protocol = e->protocol, .seqlen = e->seqlen, .max_windows = e->max_windows};
        if ((rc = rb_pipe_load_text(&pipe, e->corpus, e->range, 1, e->doc_sep, err))) goto out;
        if ((rc = rb_pipe_evaluate(&pipe, &spec, err))) goto out;
        if ((rc = rb_results_put_eval(w, e->name, e->protocol, pipe.seqlen, &pipe.q, err))) goto out;
        if (i == 0 && (rc = rb_results_put_layers(w, &pipe.q, err))) goto out;
        double dt = rb_now() - ts;
        te += dt;
        if ((rc = rb_results_mark_unit(w, unit, dt, err))) goto out;
        rb_info("%s: ppl %.6g (FP %.6g), KL %.4g", e->name, pipe.q.q.ppl, pipe.q.fp.ppl, pipe.q.kl_mean);
    }
    if (do_tasks) {
        double dt = 0;
        if ((rc = tasks_run(cfg, &pipe, &spec, tsets, w, &dt, err))) goto out;
        te += dt;
    } else if (cfg->data.n_tasks) {
        rb_info("tasks: done before the resume, skipped");
    }
    if (cfg->export.has && !rb_results_unit_done(w, "export")) {
        double ts = rb_now();
        if ((rc = export_run(cfg, &pipe, &spec, run_dir, run_id, err)) ||
            (rc = rb_results_mark_unit(w, "export", rb_now() - ts, err)))
            goto out;
    }
    times.evaluate = te;
    times.total = rb_now() - t0;
    rc = rb_results_put_times(w, &times, err);
out:;
    rb_error e2 = {0};
    int status = rc == 0 ? RB_RUN_DONE : rc == RB_EINTERRUPTED ? RB_RUN_INTERRUPTED : RB_RUN_FAILED;
    if (rc) rb_warn("%s: %s", run_dir, err->msg);
    int rc2 = rb_results_finish(w, status, &e2);
    if (!rc && rc2) {
        rc = rc2;
        *err = e2;
    }
    rb_pipe_free(&pipe);
    task_sets_free(tsets, cfg->data.n_tasks);
    if (wpath && status == RB_RUN_DONE && !rc) unlink(wpath); /* only a partial run needs it */
    free(wpath);
    if (have_loaded) rb_rotset_free(&loaded);
    if (logf) {
        rb_log_set_tee(NULL);
        fclose(logf);
    }
    return rc;
}

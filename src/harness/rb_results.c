/* rb_results: results.h5 writer and reader (life cycle in rb_results.h, schema in
 * docs/results-schema.md). */
#include "harness/rb_results.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rb_file.h"
#include "core/rb_h5.h"
#include "harness/rb_results_internal.h"
#include "quant/rb_qpreset.h"

#ifndef RB_VERSION
#define RB_VERSION "unknown"
#endif


/* ---- names ------------------------------------------------------------------------------- */

static const char *const status_names[RB_RUN_STATUS_COUNT] = {"partial", "done", "interrupted", "failed"};

const char *rb_run_status_name(int status) {
    return status >= 0 && status < RB_RUN_STATUS_COUNT ? status_names[status] : NULL;
}

int rb_run_status_from_name(const char *name) {
    for (int i = 0; name && i < RB_RUN_STATUS_COUNT; i++)
        if (!strcmp(name, status_names[i])) return i;
    return -1;
}

static const char *const kind_names[] = {"act", "linear", "layer"};

const char *rb_lrow_kind_name(int kind) { return kind >= 0 && kind < 3 ? kind_names[kind] : NULL; }

const char *rb_lrow_name(int name) {
    if (name >= 0 && name < RB_SITE_COUNT) return rb_site_name(name);
    if (name >= RB_SITE_COUNT && name < RB_LNAME_BLOCK) return rb_linear_name(name - RB_SITE_COUNT);
    return name == RB_LNAME_BLOCK ? "block" : NULL;
}

static const char *w_algo_name(int a) { return a == RB_WALGO_GPTQ ? "gptq" : "rtn"; }

int rb_results_valid_ident(const char *s, size_t max) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max || s[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

static int valid_sha256(const char *s) {
    if (!s || strlen(s) != 64) return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

static int valid_bits(int b) { return (b >= 2 && b <= 8) || b == RB_QBITS_OFF; }

/* ---- writer ------------------------------------------------------------------------------ */

struct rb_results {
    char *dir, *partial, *final;
    hid_t f;
    char first_corpus[RB_RUN_WORD_MAX + 1]; /* first /eval member ("" before any) */
};

const char *rb_results_path(const rb_results *w) { return w->partial; }

static void writer_free(rb_results *w) {
    if (!w) return;
    rb_h5_close(&w->f);
    free(w->dir);
    free(w->partial);
    free(w->final);
    free(w);
}

static int writer_alloc(const char *run_dir, rb_results **out, rb_error *err) {
    rb_results *w = calloc(1, sizeof *w);
    if (!w) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", run_dir);
    w->f = -1;
    w->dir = rb_strdup(run_dir);
    w->partial = rb_path_join(run_dir, RB_RESULTS_PARTIAL);
    w->final = rb_path_join(run_dir, RB_RESULTS_FILE);
    if (!w->dir || !w->partial || !w->final) {
        writer_free(w);
        return rb_error_set(err, RB_ENOMEM, "%s: out of memory", run_dir);
    }
    *out = w;
    return 0;
}

/* "<partial>: writing <what> failed: <HDF5 detail>". Call with errors quiet. */
static int werr(const rb_results *w, rb_error *err, const char *what) {
    char d[256];
    return rb_error_set(err, RB_EIO, "%s: writing %s failed: %s", w->partial, what, rb_h5_last_error(d, sizeof d));
}

/* Makes everything written so far durable in the file (one unit's worth). */
static int flush(rb_results *w, rb_error *err) {
    char now[32];
    rb_env_utc_now(now, sizeof now);
    if (rb_h5_put_str(w->f, "updated_utc", now) || H5Fflush(w->f, H5F_SCOPE_GLOBAL) < 0)
        return werr(w, err, "(flush)");
    return 0;
}

hid_t rb_results_h5(rb_results *w) { return w->f; }
int rb_results_flush(rb_results *w, rb_error *err) { return flush(w, err); }
int rb_results_werr(const rb_results *w, rb_error *err, const char *what) { return werr(w, err, what); }

/* Refuses a .partial that another process holds open for writing (HDF5 takes flock(LOCK_EX) on
 * it; HDF5 would truncate the file before noticing the lock). Absent file: fine. */
static int probe_lock(const char *path, rb_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    int rc = 0;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            rc = rb_error_set(err, RB_EIO, "%s: in use by another process (a run writing there?)", path);
    } else {
        flock(fd, LOCK_UN);
    }
    close(fd);
    return rc;
}

static int check_meta(const rb_run_meta *m, const char *run_dir, rb_error *err) {
    if (!rb_results_valid_ident(m->run_id, RB_RUN_ID_MAX))
        return rb_error_set(err, RB_EINVAL,
                            "%s: run id '%s' is not 1..%d characters of [A-Za-z0-9._-] (not starting with '.')",
                            run_dir, m->run_id ? m->run_id : "(null)", RB_RUN_ID_MAX);
    if (m->name && strlen(m->name) > RB_RUN_NAME_MAX)
        return rb_error_set(err, RB_EINVAL, "%s: run name longer than %d bytes", run_dir, RB_RUN_NAME_MAX);
    const char *words[] = {m->method, m->quant};
    const char *wn[] = {"method", "quant"};
    for (int i = 0; i < 2; i++)
        if (words[i] && strlen(words[i]) > RB_RUN_WORD_MAX)
            return rb_error_set(err, RB_EINVAL, "%s: %s longer than %d bytes", run_dir, wn[i], RB_RUN_WORD_MAX);
    if (!valid_bits(m->w_bits) || !valid_bits(m->a_bits) || !valid_bits(m->kv_bits))
        return rb_error_set(err, RB_EINVAL, "%s: bits w%d a%d kv%d: expected 2..8 or %d (off)", run_dir, m->w_bits,
                            m->a_bits, m->kv_bits, RB_QBITS_OFF);
    if (m->w_algo != RB_WALGO_RTN && m->w_algo != RB_WALGO_GPTQ)
        return rb_error_set(err, RB_EINVAL, "%s: unknown weight algorithm %d", run_dir, m->w_algo);
    if (m->n_overrides < 0 || m->argc < 0 || (m->n_overrides > 0 && !m->overrides) || (m->argc > 0 && !m->argv))
        return rb_error_set(err, RB_EINVAL, "%s: bad overrides/argv counts", run_dir);
    return 0;
}

static int put_env(hid_t g, const rb_env *e) {
    return rb_h5_put_str(g, "rotbench_version", e->rotbench_version) || rb_h5_put_str(g, "hdf5", e->hdf5_version) ||
           rb_h5_put_str(g, "openblas_config", e->openblas_config) || rb_h5_put_str(g, "blas_core", e->blas_core) ||
           rb_h5_put_i32(g, "blas_threads", e->blas_threads) || rb_h5_put_str(g, "libyaml", e->libyaml_version) ||
           rb_h5_put_str(g, "jansson", e->jansson_version) || rb_h5_put_str(g, "pcre2", e->pcre2_version) ||
           rb_h5_put_str(g, "compiler", e->compiler) || rb_h5_put_str(g, "cpu_model", e->cpu_model) ||
           rb_h5_put_i32(g, "cpu_count", e->cpu_count) || rb_h5_put_str(g, "host", e->host) ||
           rb_h5_put_str(g, "os", e->os) || rb_h5_put_str(g, "utc", e->utc);
}

static int put_summary_nan(hid_t g) {
    static const char *const names[] = {"ppl",  "ppl_fp", "delta", "kl", "seconds_calibrate", "seconds_quantize",
                                        "seconds_evaluate", "seconds_total"};
    if (rb_h5_put_str(g, "corpus", "")) return -1;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (rb_h5_put_f64(g, names[i], NAN)) return -1;
    return 0;
}

/* Everything rb_results_create writes once the file exists. */
static int create_layout(rb_results *w, const rb_run_meta *m, const rb_env *env, rb_error *err) {
    char now[32];
    rb_env_utc_now(now, sizeof now);
    hid_t f = w->f, g = -1;
    if (rb_h5_put_i32(f, "schema_version", RB_RESULTS_SCHEMA_VERSION) ||
        rb_h5_put_str(f, "rotbench_version", RB_VERSION) || rb_h5_put_str(f, "run_id", m->run_id) ||
        rb_h5_put_str(f, "name", m->name) || rb_h5_put_str(f, "status", "partial") ||
        rb_h5_put_str(f, "created_utc", now) || rb_h5_put_str(f, "updated_utc", now))
        return werr(w, err, "root attributes");
    if ((g = rb_h5_group(f, "config", 1, 0)) < 0 || rb_h5_put_str(g, "resolved_yaml", m->resolved_yaml) ||
        rb_h5_put_str_array(g, "overrides", m->overrides, (size_t)m->n_overrides) ||
        rb_h5_put_str_array(g, "argv", m->argv, (size_t)m->argc) || rb_h5_put_str(g, "method", m->method) ||
        rb_h5_put_str(g, "quant", m->quant) || rb_h5_put_i32(g, "w_bits", m->w_bits) ||
        rb_h5_put_i32(g, "a_bits", m->a_bits) || rb_h5_put_i32(g, "kv_bits", m->kv_bits) ||
        rb_h5_put_str(g, "w_algo", w_algo_name(m->w_algo)) || rb_h5_put_u64(g, "seed", m->seed)) {
        rb_h5_close(&g);
        return werr(w, err, "/config");
    }
    rb_h5_close(&g);
    rb_env collected;
    if (!env) {
        rb_env_collect(&collected, NULL);
        env = &collected;
    }
    if ((g = rb_h5_group(f, "env", 1, 0)) < 0 || put_env(g, env)) {
        rb_h5_close(&g);
        return werr(w, err, "/env");
    }
    rb_h5_close(&g);
    if ((g = rb_h5_group(f, "eval", 1, 1)) < 0) return werr(w, err, "/eval");
    rb_h5_close(&g);
    if ((g = rb_h5_group(f, "units", 1, 1)) < 0) return werr(w, err, "/units");
    rb_h5_close(&g);
    if ((g = rb_h5_group(f, "summary", 1, 0)) < 0 || put_summary_nan(g)) {
        rb_h5_close(&g);
        return werr(w, err, "/summary");
    }
    rb_h5_close(&g);
    return flush(w, err);
}

int rb_results_create(const char *run_dir, const rb_run_meta *meta, const rb_env *env, int flags, rb_results **out,
                      rb_error *err) {
    RB_ASSERT(run_dir && meta && out);
    *out = NULL;
    int rc = check_meta(meta, run_dir, err);
    if (rc) return rc;
    struct stat st;
    if (stat(run_dir, &st) != 0) {
        int e = errno;
        return rb_error_set(err, e == ENOENT ? RB_ENOTFOUND : RB_EIO, "%s: cannot use run directory: %s", run_dir,
                            strerror(e));
    }
    if (!S_ISDIR(st.st_mode)) return rb_error_set(err, RB_EIO, "%s: not a directory", run_dir);
    rb_results *w;
    if ((rc = writer_alloc(run_dir, &w, err))) return rc;
    if (!(flags & RB_RESULTS_REPLACE) && rb_path_exists(w->final)) {
        rc = rb_error_set(err, RB_EINVAL, "%s: run already complete (remove it to run again)", w->final);
        writer_free(w);
        return rc;
    }
    if ((rc = probe_lock(w->partial, err))) {
        writer_free(w);
        return rc;
    }
    /* Create it ourselves first: HDF5 does not report errno ("Permission denied" is the useful
     * part). No O_TRUNC: HDF5 truncates once it holds the file. */
    int fd = open(w->partial, O_WRONLY | O_CREAT, 0666);
    if (fd < 0) {
        int e = errno;
        rc = rb_error_set(err, RB_EIO, "%s: cannot create: %s", w->partial, strerror(e));
        writer_free(w);
        return rc;
    }
    close(fd);
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    char d[256];
    hid_t fapl = rb_h5_fapl_write();
    if ((w->f = H5Fcreate(w->partial, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0)
        rc = rb_error_set(err, RB_EIO, "%s: cannot create HDF5 file: %s", w->partial, rb_h5_last_error(d, sizeof d));
    rb_h5_close(&fapl);
    if (!rc) rc = create_layout(w, meta, env, err);
    rb_h5_quiet_off(&q);
    if (rc) {
        /* Leave no half-initialized file to be mistaken for a run. */
        rb_h5_quiet_on(&q);
        rb_h5_close(&w->f);
        rb_h5_quiet_off(&q);
        unlink(w->partial);
        writer_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* Largest single object of a results file: its biggest arrays are per-layer statistics and traces
 * (kilobytes to megabytes); anything near this is not rotbench's. */
#define RESULTS_MAX_OBJECT_BYTES ((size_t)1 << 30)

static int read_all_fn(void *ctx, rb_error *err) { return rb_h5_read_all(ctx, RESULTS_MAX_OBJECT_BYTES, err); }

int rb_results_resume(const char *run_dir, const char *run_id, rb_results **out, rb_error *err) {
    RB_ASSERT(run_dir && out);
    *out = NULL;
    rb_results *w;
    int rc = writer_alloc(run_dir, &w, err);
    if (rc) return rc;
    if (!rb_path_exists(w->partial)) {
        rc = rb_error_set(err, RB_ENOTFOUND, "%s: no partial results to resume", w->partial);
        writer_free(w);
        return rc;
    }
    rb_run_summary s;
    if ((rc = rb_results_read_summary(w->partial, &s, err))) {
        if (rc == RB_EFORMAT) {
            char msg[RB_ERROR_MSG_MAX];
            snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
            rb_error_set(err, rc, "%s (cannot resume: remove it to start the run afresh)", msg);
        }
        writer_free(w);
        return rc;
    }
    if (run_id && strcmp(run_id, s.run_id)) {
        rc = rb_error_set(err, RB_EINVAL, "%s: holds run '%s', not '%s'", w->partial, s.run_id, run_id);
        writer_free(w);
        return rc;
    }
    /* The summary reads; now every object must, before HDF5 gets the file for writing: a run killed
     * mid-write or a damaged file must be refused here, not crash the resumed run (issue 16). */
    if ((rc = rb_h5_guard(w->partial, read_all_fn, w->partial, err))) {
        char msg[RB_ERROR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
        rb_error_set(err, rc, "%s (cannot resume: remove it to start the run afresh)", msg);
        writer_free(w);
        return rc;
    }
    if ((rc = probe_lock(w->partial, err))) {
        writer_free(w);
        return rc;
    }
    if (s.n_corpora > 0) snprintf(w->first_corpus, sizeof w->first_corpus, "%s", s.corpora[0].corpus);
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    char d[256];
    hid_t fapl = rb_h5_fapl_write();
    if ((w->f = H5Fopen(w->partial, H5F_ACC_RDWR, fapl)) < 0)
        rc = rb_error_set(err, RB_EIO, "%s: cannot open for writing: %s", w->partial, rb_h5_last_error(d, sizeof d));
    rb_h5_close(&fapl);
    if (!rc) rc = rb_h5_put_str(w->f, "status", "partial") ? werr(w, err, "status") : flush(w, err);
    rb_h5_quiet_off(&q);
    if (rc) {
        writer_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

int rb_results_discard(const char *run_dir, rb_error *err) {
    char *p = rb_path_join(run_dir, RB_RESULTS_PARTIAL);
    if (!p) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", run_dir);
    int rc = 0;
    if (unlink(p) != 0 && errno != ENOENT) {
        int e = errno;
        rc = rb_error_set(err, RB_EIO, "%s: cannot remove: %s", p, strerror(e));
    }
    free(p);
    return rc;
}

int rb_results_put_inputs(rb_results *w, const rb_inputs *in, rb_error *err) {
    RB_ASSERT(w && in);
    if (in->n_model_files < 0 || in->n_corpora < 0 || (in->n_model_files && !in->model_files) ||
        (in->n_corpora && !in->corpora))
        return rb_error_set(err, RB_EINVAL, "%s: /inputs: bad file counts", w->partial);
    int n = in->n_model_files + in->n_corpora;
    for (int i = 0; i < n; i++) {
        const rb_input_file *x = i < in->n_model_files ? &in->model_files[i] : &in->corpora[i - in->n_model_files];
        if (!x->name || !x->name[0])
            return rb_error_set(err, RB_EINVAL, "%s: /inputs: input %d has no name", w->partial, i);
        if (!valid_sha256(x->sha256))
            return rb_error_set(err, RB_EINVAL, "%s: /inputs: sha256 of '%s' is not 64 lowercase hex digits",
                                w->partial, x->name);
    }
    const char **v = malloc(3 * ((size_t)n + 1) * sizeof *v);
    if (!v) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", w->partial);
    const char **names = v, **paths = v + n + 1, **sums = v + 2 * (n + 1);
    for (int i = 0; i < n; i++) {
        const rb_input_file *x = i < in->n_model_files ? &in->model_files[i] : &in->corpora[i - in->n_model_files];
        names[i] = x->name;
        paths[i] = x->path;
        sums[i] = x->sha256;
    }
    size_t nm = (size_t)in->n_model_files, nc = (size_t)in->n_corpora;
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    int rc = 0;
    hid_t g = rb_h5_group(w->f, "inputs", 1, 0);
    if (g < 0 || rb_h5_put_str(g, "model_path", in->model_path) || rb_h5_put_str_array(g, "model_files", names, nm) ||
        rb_h5_put_str_array(g, "model_sha256", sums, nm) ||
        rb_h5_put_str_array(g, "corpus_names", names + nm, nc) ||
        rb_h5_put_str_array(g, "corpus_paths", paths + nm, nc) ||
        rb_h5_put_str_array(g, "corpus_sha256", sums + nm, nc))
        rc = werr(w, err, "/inputs");
    rb_h5_close(&g);
    if (!rc) rc = flush(w, err);
    rb_h5_quiet_off(&q);
    free(v);
    return rc;
}

int rb_results_put_rotset(rb_results *w, const rb_rotset *s, rb_error *err) {
    RB_ASSERT(w && s);
    /* Written in place with rb_rotset_write_loc (same layout and checks as a rotation file).
     * HDF5 1.10's H5Ocopy of a group with dense variable-length string attributes crashes
     * (H5T__conv_vlen), so nothing is copied between files. */
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    int rc = 0;
    htri_t ex = H5Lexists(w->f, "rotations", H5P_DEFAULT);
    hid_t g = -1;
    if (ex < 0 || (ex > 0 && H5Ldelete(w->f, "rotations", H5P_DEFAULT) < 0) ||
        (g = H5Gcreate2(w->f, "rotations", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0)
        rc = werr(w, err, "/rotations");
    if (!rc) {
        char where[4200];
        snprintf(where, sizeof where, "%s: /rotations", w->partial);
        rc = rb_rotset_write_loc((int64_t)g, s, where, err);
    }
    rb_h5_close(&g);
    if (!rc) rc = flush(w, err);
    rb_h5_quiet_off(&q);
    return rc;
}

/* ---- /layers ------------------------------------------------------------------------------ */

typedef struct fld {
    const char *name;
    size_t off;
} fld;

#define AF(x) {#x, offsetof(rb_act_stats_row, x)}
static const fld act_f[] = {
    AF(tokens),           AF(kurt_token_mean),   AF(kurt_token_median), AF(kurt_token_max),   AF(flat_token_mean),
    AF(flat_token_median), AF(kurt_channel_mean), AF(kurt_channel_max),  AF(kurt_all),         AF(incoherence_mean),
    AF(incoherence_max),  AF(corner_mean),       AF(sqnorm_mean),       AF(tokens_zero_var),  AF(tokens_zero_norm),
    AF(tokens_nonfinite), AF(channels_zero_var),
};
#undef AF
#define WF(x) {#x, offsetof(rb_weight_stats, x)}
static const fld w_f[] = {
    WF(kurt_all), WF(kurt_row_mean), WF(kurt_row_max), WF(sum_w4),  WF(flat_row_mean),
    WF(incoherence), WF(fro_sq),     WF(rows_zero_var), WF(rows_zero),
};
#undef WF
#define NACT (sizeof act_f / sizeof act_f[0])
#define NW (sizeof w_f / sizeof w_f[0])
/* Every double of the structs is a column: adding a field without one fails to compile. */
_Static_assert(NACT == sizeof(rb_act_stats_row) / sizeof(double), "act_f out of sync with rb_act_stats_row");
_Static_assert(NW == sizeof(rb_weight_stats) / sizeof(double), "w_f out of sync with rb_weight_stats");

#define NCOLS (3 + 2 * NACT + 1 + NW + 4)
_Static_assert(NCOLS <= RB_LAYER_COLS_MAX, "raise RB_LAYER_COLS_MAX");

int rb_results_layer_cols(rb_lcol *c) {
    int n = 0;
#define ADD(nm, o, t)                                                   \
    do {                                                                \
        snprintf(c[n].name, sizeof c[n].name, "%s", nm);                \
        c[n].off = (o);                                                 \
        c[n].type = (t);                                                \
        n++;                                                            \
    } while (0)
    ADD("kind", offsetof(rb_layer_row, kind), 2);
    ADD("layer", offsetof(rb_layer_row, layer), 1);
    ADD("name", offsetof(rb_layer_row, name), 3);
    char buf[48];
    for (size_t i = 0; i < NACT; i++) {
        snprintf(buf, sizeof buf, "fp_%s", act_f[i].name);
        ADD(buf, offsetof(rb_layer_row, fp) + act_f[i].off, 0);
    }
    for (size_t i = 0; i < NACT; i++) {
        snprintf(buf, sizeof buf, "q_%s", act_f[i].name);
        ADD(buf, offsetof(rb_layer_row, q) + act_f[i].off, 0);
    }
    ADD("act_mse", offsetof(rb_layer_row, act_mse), 0);
    for (size_t i = 0; i < NW; i++) {
        snprintf(buf, sizeof buf, "w_%s", w_f[i].name);
        ADD(buf, offsetof(rb_layer_row, w) + w_f[i].off, 0);
    }
    ADD("w_relerr", offsetof(rb_layer_row, w_relerr), 0);
    ADD("h_err", offsetof(rb_layer_row, h_err), 0);
    ADD("h_err_rtn", offsetof(rb_layer_row, h_err_rtn), 0);
    ADD("layer_out_mse", offsetof(rb_layer_row, layer_out_mse), 0);
#undef ADD
    return n;
}

/* Enum type of the kind (which = 0) or name (1) column; file: little-endian base. */
static hid_t enum_type(int which, int file) {
    hid_t t = H5Tenum_create(file ? H5T_STD_U8LE : H5T_NATIVE_UINT8);
    if (t < 0) return t;
    int n = which ? RB_LNAME_COUNT : 3;
    for (int i = 0; i < n; i++) {
        uint8_t v = (uint8_t)i;
        if (H5Tenum_insert(t, which ? rb_lrow_name(i) : rb_lrow_kind_name(i), &v) < 0) {
            H5Tclose(t);
            return -1;
        }
    }
    return t;
}

/* Compound type of rb_layer_row: memory layout, or (file) packed little-endian. */
hid_t rb_results_layer_type(int file) {
    rb_lcol c[RB_LAYER_COLS_MAX];
    int n = rb_results_layer_cols(c);
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(rb_layer_row));
    if (t < 0) return t;
    hid_t ek = enum_type(0, file), en = enum_type(1, file);
    int ok = ek >= 0 && en >= 0;
    for (int i = 0; ok && i < n; i++) {
        hid_t mt = c[i].type == 0   ? (file ? H5T_IEEE_F64LE : H5T_NATIVE_DOUBLE)
                   : c[i].type == 1 ? (file ? H5T_STD_I32LE : H5T_NATIVE_INT32)
                   : c[i].type == 2 ? ek
                                    : en;
        ok = H5Tinsert(t, c[i].name, c[i].off, mt) >= 0;
    }
    if (ok && file) ok = H5Tpack(t) >= 0;
    if (ek >= 0) H5Tclose(ek);
    if (en >= 0) H5Tclose(en);
    if (!ok) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

static void act_values(const rb_act_stats *s, rb_act_stats_row *r) {
    if (s && s->tokens > 0) {
        rb_act_stats_result(s, r);
        return;
    }
    /* Stream not run / stats off: not applicable (as rb_qeval_write_tsv). */
    double *p = (double *)r;
    for (size_t i = 0; i < NACT; i++) p[i] = NAN;
}

static void nan_row(rb_layer_row *row) {
    double nan = NAN;
    for (size_t i = 0; i < NACT; i++) {
        memcpy((char *)&row->fp + act_f[i].off, &nan, sizeof nan);
        memcpy((char *)&row->q + act_f[i].off, &nan, sizeof nan);
    }
    for (size_t i = 0; i < NW; i++) memcpy((char *)&row->w + w_f[i].off, &nan, sizeof nan);
    row->act_mse = row->w_relerr = row->h_err = row->h_err_rtn = row->layer_out_mse = NAN;
}

static double relerr_or_nan(const rb_relerr_acc *a) { return a && a->ref_sq > 0 ? rb_relerr_value(a) : NAN; }

int rb_results_layer_rows(const rb_qeval_result *r, rb_layer_row **rows, size_t *n, rb_error *err) {
    *rows = NULL;
    *n = 0;
    if (r->n_layers < 1 || !r->layer_mse)
        return rb_error_set(err, RB_EINVAL, "/layers: result has no per-layer metrics (n_layers %d)", r->n_layers);
    int with_act = r->site_fp || r->site_q || r->act_mse, with_lin = r->lin != NULL;
    size_t per = (with_act ? RB_SITE_COUNT : 0) + (with_lin ? RB_LIN_COUNT : 0) + 1;
    size_t total = per * (size_t)r->n_layers, k = 0;
    rb_layer_row *v = calloc(total, sizeof *v);
    if (!v) return rb_error_set(err, RB_ENOMEM, "/layers: out of memory");
    for (int l = 0; l < r->n_layers; l++) {
        for (int s = 0; with_act && s < RB_SITE_COUNT; s++) {
            rb_layer_row *row = &v[k++];
            nan_row(row);
            row->kind = RB_LROW_ACT;
            row->layer = l;
            row->name = (uint8_t)s;
            size_t i = (size_t)l * RB_SITE_COUNT + (size_t)s;
            act_values(r->site_fp ? &r->site_fp[i] : NULL, &row->fp);
            act_values(r->site_q ? &r->site_q[i] : NULL, &row->q);
            row->act_mse = relerr_or_nan(r->act_mse ? &r->act_mse[i] : NULL);
        }
        for (int j = 0; with_lin && j < RB_LIN_COUNT; j++) {
            rb_layer_row *row = &v[k++];
            const rb_linear_row *lr = &r->lin[(size_t)l * RB_LIN_COUNT + (size_t)j];
            nan_row(row);
            row->kind = RB_LROW_LINEAR;
            row->layer = l;
            row->name = (uint8_t)RB_LNAME_LINEAR(j);
            row->w = lr->w;
            row->w_relerr = lr->w_relerr;
            row->h_err = lr->h_err;
            row->h_err_rtn = lr->h_err_rtn;
        }
        rb_layer_row *row = &v[k++];
        nan_row(row);
        row->kind = RB_LROW_LAYER;
        row->layer = l;
        row->name = RB_LNAME_BLOCK;
        row->layer_out_mse = relerr_or_nan(&r->layer_mse[l]);
    }
    *rows = v;
    *n = k;
    return 0;
}

int rb_results_put_layers(rb_results *w, const rb_qeval_result *r, rb_error *err) {
    RB_ASSERT(w && r);
    rb_layer_row *rows;
    size_t n;
    int rc = rb_results_layer_rows(r, &rows, &n, err);
    if (rc) {
        if (err) rb_error_prefix(err, "%s", w->partial);
        return rc;
    }
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    hid_t ft = rb_results_layer_type(1), mt = rb_results_layer_type(0), d = -1;
    hsize_t dims[1] = {n};
    if (ft < 0 || mt < 0 || rb_h5_put_dataset(w->f, "layers", 1, dims, ft, mt, rows) ||
        (d = H5Dopen2(w->f, "layers", H5P_DEFAULT)) < 0 || rb_h5_put_i32(d, "n_layers", r->n_layers))
        rc = werr(w, err, "/layers");
    rb_h5_close(&d);
    rb_h5_close(&ft);
    rb_h5_close(&mt);
    if (!rc) rc = flush(w, err);
    rb_h5_quiet_off(&q);
    free(rows);
    return rc;
}

/* ---- /eval, /summary, /units ------------------------------------------------------------- */

int rb_results_put_eval(rb_results *w, const char *corpus, int protocol, int seqlen, const rb_qeval_result *r,
                        rb_error *err) {
    RB_ASSERT(w && r);
    if (!rb_results_valid_ident(corpus, RB_RUN_WORD_MAX))
        return rb_error_set(err, RB_EINVAL,
                            "%s: corpus name '%s' is not 1..%d characters of [A-Za-z0-9._-] (not starting with '.')",
                            w->partial, corpus ? corpus : "(null)", RB_RUN_WORD_MAX);
    const char *pname = protocol == RB_PPL_GPTQ || protocol == RB_PPL_LLAMACPP ? rb_ppl_protocol_name(protocol) : NULL;
    if (!pname) return rb_error_set(err, RB_EINVAL, "%s: /eval/%s: unknown protocol %d", w->partial, corpus, protocol);
    int W = r->q.windows;
    if (W < 1 || seqlen < 1 || !r->q.win_nll || !r->q.win_scored)
        return rb_error_set(err, RB_EINVAL, "%s: /eval/%s: no evaluation windows (windows %d, seqlen %d)", w->partial,
                            corpus, W, seqlen);
    int has_fp = r->fp.win_nll != NULL, has_kl = r->win_kl != NULL;
    double *buf = malloc((size_t)W * 2 * sizeof(double));
    int64_t *sc = malloc((size_t)W * sizeof *sc);
    if (!buf || !sc) {
        free(buf);
        free(sc);
        return rb_error_set(err, RB_ENOMEM, "%s: out of memory", w->partial);
    }
    double *nll_fp = buf, *kl = buf + W;
    for (int i = 0; i < W; i++) {
        nll_fp[i] = has_fp ? r->fp.win_nll[i] : NAN;
        kl[i] = has_kl ? r->win_kl[i] : NAN;
        sc[i] = r->q.win_scored[i];
    }
    double ppl_fp = has_fp ? r->fp.ppl : NAN, klm = has_kl ? r->kl_mean : NAN;
    hsize_t dims[1] = {(hsize_t)W};
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    int rc = 0;
    char what[128];
    snprintf(what, sizeof what, "/eval/%s", corpus);
    hid_t ge = -1, g = -1, gs = -1;
    if ((ge = rb_h5_group(w->f, "eval", 0, 1)) < 0 || (g = rb_h5_group(ge, corpus, 0, 0)) < 0 ||
        rb_h5_put_dataset(g, "nll", 1, dims, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, r->q.win_nll) ||
        rb_h5_put_dataset(g, "nll_fp", 1, dims, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, nll_fp) ||
        rb_h5_put_dataset(g, "kl", 1, dims, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, kl) ||
        rb_h5_put_dataset(g, "scored", 1, dims, H5T_STD_I64LE, H5T_NATIVE_INT64, sc) ||
        rb_h5_put_str(g, "protocol", pname) || rb_h5_put_i32(g, "seqlen", seqlen) || rb_h5_put_i32(g, "windows", W) ||
        rb_h5_put_i64(g, "tokens", (int64_t)r->q.tokens) || rb_h5_put_i64(g, "scored", (int64_t)r->q.scored) ||
        rb_h5_put_f64(g, "nll_sum", r->q.nll_sum) || rb_h5_put_f64(g, "nll_fp_sum", has_fp ? r->fp.nll_sum : NAN) ||
        rb_h5_put_f64(g, "ppl", r->q.ppl) || rb_h5_put_f64(g, "ppl_fp", ppl_fp) || rb_h5_put_f64(g, "kl", klm) ||
        rb_h5_put_f64(g, "seconds", r->q.seconds))
        rc = werr(w, err, what);
    if (!rc && (!w->first_corpus[0] || !strcmp(w->first_corpus, corpus))) {
        if ((gs = rb_h5_group(w->f, "summary", 0, 0)) < 0 || rb_h5_put_str(gs, "corpus", corpus) ||
            rb_h5_put_f64(gs, "ppl", r->q.ppl) || rb_h5_put_f64(gs, "ppl_fp", ppl_fp) ||
            rb_h5_put_f64(gs, "delta", r->q.ppl - ppl_fp) || rb_h5_put_f64(gs, "kl", klm))
            rc = werr(w, err, "/summary");
        else
            snprintf(w->first_corpus, sizeof w->first_corpus, "%s", corpus);
    }
    rb_h5_close(&gs);
    rb_h5_close(&g);
    rb_h5_close(&ge);
    if (!rc) rc = flush(w, err);
    rb_h5_quiet_off(&q);
    free(buf);
    free(sc);
    return rc;
}

int rb_results_put_trace(rb_results *w, const rb_trace *tr, rb_error *err) {
    RB_ASSERT(w && tr);
    if (!tr->n) return 0;
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    int rc = 0;
    hid_t g = rb_h5_group(w->f, "calibration", 0, 1);
    if (g < 0) rc = werr(w, err, "/calibration");
    for (int i = 0; !rc && i < tr->n; i++) {
        const rb_trace_table *t = tr->tables[i];
        hsize_t dims[2] = {t->rows, (hsize_t)t->n_cols};
        static const double none = 0;
        if (rb_h5_put_dataset(g, t->name, 2, dims, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, t->rows ? t->data : &none)) {
            rc = werr(w, err, "/calibration");
            break;
        }
        hid_t d = H5Dopen2(g, t->name, H5P_DEFAULT);
        if (d < 0 || rb_h5_put_str_array(d, "columns", (const char *const *)t->cols, (size_t)t->n_cols))
            rc = werr(w, err, "/calibration");
        rb_h5_close(&d);
    }
    rb_h5_close(&g);
    if (!rc) rc = flush(w, err);
    rb_h5_quiet_off(&q);
    return rc;
}

int rb_results_put_times(rb_results *w, const rb_stage_times *t, rb_error *err) {
    RB_ASSERT(w && t);
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    int rc = 0;
    hid_t g = rb_h5_group(w->f, "summary", 0, 0);
    if (g < 0 || rb_h5_put_f64(g, "seconds_calibrate", t->calibrate) ||
        rb_h5_put_f64(g, "seconds_quantize", t->quantize) || rb_h5_put_f64(g, "seconds_evaluate", t->evaluate) ||
        rb_h5_put_f64(g, "seconds_total", t->total))
        rc = werr(w, err, "/summary");
    rb_h5_close(&g);
    if (!rc) rc = flush(w, err);
    rb_h5_quiet_off(&q);
    return rc;
}

int rb_results_mark_unit(rb_results *w, const char *unit, double seconds, rb_error *err) {
    RB_ASSERT(w);
    if (!unit || !unit[0] || strchr(unit, '/') || strlen(unit) > 255)
        return rb_error_set(err, RB_EINVAL, "%s: bad unit name '%s'", w->partial, unit ? unit : "(null)");
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    int rc = 0;
    hid_t g = rb_h5_group(w->f, "units", 0, 1);
    if (g < 0 || rb_h5_put_f64(g, unit, seconds)) rc = werr(w, err, "/units");
    rb_h5_close(&g);
    if (!rc) rc = flush(w, err);
    rb_h5_quiet_off(&q);
    return rc;
}

int rb_results_unit_done(rb_results *w, const char *unit) {
    RB_ASSERT(w);
    if (!unit || !unit[0]) return 0;
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    htri_t ex = H5Aexists_by_name(w->f, "units", unit, H5P_DEFAULT);
    rb_h5_quiet_off(&q);
    return ex > 0;
}

int rb_results_finish(rb_results *w, int status, rb_error *err) {
    if (!w) return 0;
    const char *sname = rb_run_status_name(status);
    int rc = 0;
    rb_h5_quiet q;
    rb_h5_quiet_on(&q);
    char d[256];
    if (!sname) {
        rc = rb_error_set(err, RB_EINVAL, "%s: unknown status %d", w->partial, status);
    } else if (status != RB_RUN_PARTIAL && rb_h5_put_str(w->f, "status", sname)) {
        rc = werr(w, err, "status");
    } else if ((rc = flush(w, err)) == 0) {
        herr_t cl = H5Fclose(w->f); /* the final flush happens here: a full disk shows up now */
        w->f = -1;
        if (cl < 0)
            rc = rb_error_set(err, RB_EIO, "%s: closing failed: %s", w->partial, rb_h5_last_error(d, sizeof d));
    }
    rb_h5_quiet_off(&q);
    if (!rc && status == RB_RUN_DONE) {
        /* Data on disk before the rename, so a crash leaves the .partial or the whole results.h5. */
        rc = rb_rename_durable(w->partial, w->final, err);
    }
    writer_free(w);
    return rc;
}


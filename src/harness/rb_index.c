/* rb_index: sweep index (see rb_index.h). */
#include "harness/rb_index.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_h5.h"
#include "quant/rb_qpreset.h"

#ifndef RB_VERSION
#define RB_VERSION "unknown"
#endif

static const char *const index_status[] = {"partial", "done", "interrupted", "failed", "unreadable"};

const char *rb_index_status_name(int status) {
    return status >= 0 && status <= RB_INDEX_UNREADABLE ? index_status[status] : NULL;
}

static const char *w_algo_label(int a) { return a == RB_WALGO_RTN ? "rtn" : a == RB_WALGO_GPTQ ? "gptq" : ""; }
static const char *protocol_label(int p) {
    return p == RB_PPL_GPTQ || p == RB_PPL_LLAMACPP ? rb_ppl_protocol_name(p) : "";
}

/* ---- scan -------------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Appends a row to the growing array. */
static rb_index_row *push(rb_index_row **v, size_t *n, size_t *cap) {
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 16;
        rb_index_row *nv = realloc(*v, nc * sizeof *nv);
        if (!nv) return NULL;
        *v = nv;
        *cap = nc;
    }
    rb_index_row *r = &(*v)[(*n)++];
    memset(r, 0, sizeof *r);
    return r;
}

static void unknown_row(rb_index_row *r) {
    r->w_bits = r->a_bits = r->kv_bits = r->w_algo = r->seqlen = -1;
    r->protocol = 0;
    r->ppl = r->ppl_fp = r->delta = r->kl = r->seconds = NAN;
}

/* Rows of one run directory (sub: its name, path: its results file). */
static int scan_run(const char *sub, const char *file, const char *path, rb_index_row **v, size_t *n, size_t *cap) {
    rb_run_summary *s = malloc(sizeof *s);
    if (!s) return RB_ENOMEM;
    rb_error e;
    int rc = rb_results_read_summary(path, s, &e);
    int rows = rc ? 1 : (s->n_corpora > 0 ? s->n_corpora : 1);
    for (int i = 0; i < rows; i++) {
        rb_index_row *r = push(v, n, cap);
        if (!r) {
            free(s);
            return RB_ENOMEM;
        }
        unknown_row(r);
        snprintf(r->dir, sizeof r->dir, "%s", sub);
        snprintf(r->file, sizeof r->file, "%s", file);
        if (rc) {
            r->status = RB_INDEX_UNREADABLE;
            snprintf(r->error, sizeof r->error, "%s", e.msg);
            continue;
        }
        snprintf(r->run_id, sizeof r->run_id, "%s", s->run_id);
        snprintf(r->name, sizeof r->name, "%s", s->name);
        r->status = s->status;
        snprintf(r->method, sizeof r->method, "%s", s->method);
        snprintf(r->quant, sizeof r->quant, "%s", s->quant);
        r->w_bits = s->w_bits;
        r->a_bits = s->a_bits;
        r->kv_bits = s->kv_bits;
        r->w_algo = !strcmp(s->w_algo, "gptq") ? RB_WALGO_GPTQ : RB_WALGO_RTN;
        r->seed = s->seed;
        r->seconds = s->seconds.total;
        if (s->n_corpora > 0) {
            const rb_run_corpus *c = &s->corpora[i];
            snprintf(r->corpus, sizeof r->corpus, "%s", c->corpus);
            r->protocol = c->protocol;
            r->seqlen = c->seqlen;
            r->ppl = c->ppl;
            r->ppl_fp = c->ppl_fp;
            r->delta = c->delta;
            r->kl = c->kl;
        }
    }
    free(s);
    return 0;
}

int rb_index_scan(const char *dir, rb_index_row **rows, size_t *n, rb_error *err) {
    RB_ASSERT(dir && rows && n);
    *rows = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        return rb_error_set(err, e == ENOENT || e == ENOTDIR ? RB_ENOTFOUND : RB_EIO, "%s: cannot list: %s", dir,
                            strerror(e));
    }
    char **names = NULL;
    size_t nn = 0, capn = 0;
    int rc = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        if (nn == capn) {
            size_t nc = capn ? 2 * capn : 32;
            char **nv = realloc(names, nc * sizeof *nv);
            if (!nv) {
                rc = RB_ENOMEM;
                break;
            }
            names = nv;
            capn = nc;
        }
        if (!(names[nn] = rb_strdup(de->d_name))) {
            rc = RB_ENOMEM;
            break;
        }
        nn++;
    }
    closedir(d);
    if (!rc && nn) qsort(names, nn, sizeof *names, cmp_str);
    rb_index_row *v = NULL;
    size_t nv = 0, cap = 0;
    for (size_t i = 0; i < nn && !rc; i++) {
        if (strlen(names[i]) >= sizeof v->dir) continue; /* not one of ours */
        char *sub = rb_path_join(dir, names[i]), *done = sub ? rb_path_join(sub, RB_RESULTS_FILE) : NULL,
             *part = sub ? rb_path_join(sub, RB_RESULTS_PARTIAL) : NULL;
        if (!sub || !done || !part)
            rc = RB_ENOMEM;
        else if (rb_path_is_dir(sub)) {
            if (is_file(done))
                rc = scan_run(names[i], RB_RESULTS_FILE, done, &v, &nv, &cap);
            else if (is_file(part))
                rc = scan_run(names[i], RB_RESULTS_PARTIAL, part, &v, &nv, &cap);
        }
        free(sub);
        free(done);
        free(part);
    }
    for (size_t i = 0; i < nn; i++) free(names[i]);
    free(names);
    if (rc) {
        free(v);
        return rb_error_set(err, rc, "%s: out of memory while scanning runs", dir);
    }
    *rows = v;
    *n = nv;
    return 0;
}

/* ---- index.h5 ----------------------------------------------------------------------------- */

/* Memory layout of a /summary row (columns in this order). */
typedef struct h5row {
    const char *dir, *file, *run_id, *name;
    int8_t status;
    const char *method, *quant;
    int32_t w_bits, a_bits, kv_bits;
    int8_t w_algo;
    uint64_t seed;
    const char *corpus;
    int8_t protocol;
    int32_t seqlen;
    double ppl, ppl_fp, delta, kl, seconds;
    const char *error;
} h5row;

static hid_t enum_of(int file, const char *const *labels, const int *values, int n) {
    hid_t t = H5Tenum_create(file ? H5T_STD_I8LE : H5T_NATIVE_INT8);
    for (int i = 0; t >= 0 && i < n; i++) {
        int8_t v = (int8_t)values[i];
        if (H5Tenum_insert(t, labels[i], &v) < 0) {
            H5Tclose(t);
            t = -1;
        }
    }
    return t;
}

static hid_t row_type(int file) {
    static const char *const st_l[] = {"partial", "done", "interrupted", "failed", "unreadable"};
    static const int st_v[] = {0, 1, 2, 3, 4};
    static const char *const wa_l[] = {"unknown", "rtn", "gptq"};
    static const int wa_v[] = {-1, RB_WALGO_RTN, RB_WALGO_GPTQ};
    static const char *const pr_l[] = {"none", "gptq", "llamacpp"};
    static const int pr_v[] = {0, RB_PPL_GPTQ, RB_PPL_LLAMACPP};
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(h5row)), s = rb_h5_str_type(), es = enum_of(file, st_l, st_v, 5),
          ew = enum_of(file, wa_l, wa_v, 3), ep = enum_of(file, pr_l, pr_v, 3);
    hid_t i32 = file ? H5T_STD_I32LE : H5T_NATIVE_INT32, u64 = file ? H5T_STD_U64LE : H5T_NATIVE_UINT64,
          f64 = file ? H5T_IEEE_F64LE : H5T_NATIVE_DOUBLE;
    int ok = t >= 0 && s >= 0 && es >= 0 && ew >= 0 && ep >= 0;
#define INS(f, ty) ok = ok && H5Tinsert(t, #f, offsetof(h5row, f), ty) >= 0
    INS(dir, s);
    INS(file, s);
    INS(run_id, s);
    INS(name, s);
    INS(status, es);
    INS(method, s);
    INS(quant, s);
    INS(w_bits, i32);
    INS(a_bits, i32);
    INS(kv_bits, i32);
    INS(w_algo, ew);
    INS(seed, u64);
    INS(corpus, s);
    INS(protocol, ep);
    INS(seqlen, i32);
    INS(ppl, f64);
    INS(ppl_fp, f64);
    INS(delta, f64);
    INS(kl, f64);
    INS(seconds, f64);
    INS(error, s);
#undef INS
    if (ok && file) ok = H5Tpack(t) >= 0;
    hid_t ids[] = {s, es, ew, ep};
    for (int i = 0; i < 4; i++) rb_h5_close(&ids[i]);
    if (!ok) rb_h5_close(&t);
    return t;
}

static int write_index(const char *dir, const char *tmp, const rb_index_row *v, size_t n, rb_error *err) {
    char d[256];
    int rc = 0, runs = 0;
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), g = -1, ft = -1, mt = -1;
    h5row *h = calloc(n ? n : 1, sizeof *h);
    if (!h) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", dir);
    if (f < 0) {
        rc = rb_error_set(err, RB_EIO, "%s: cannot create: %s", tmp, rb_h5_last_error(d, sizeof d));
        goto out;
    }
    if ((g = rb_h5_group(f, "runs", 1, 1)) < 0) goto h5fail;
    for (size_t i = 0; i < n; i++) {
        const rb_index_row *r = &v[i];
        h[i] = (h5row){r->dir,    r->file,       r->run_id,     r->name,    (int8_t)r->status, r->method,
                       r->quant,  r->w_bits,     r->a_bits,     r->kv_bits, (int8_t)r->w_algo, r->seed,
                       r->corpus, (int8_t)r->protocol, r->seqlen, r->ppl,  r->ppl_fp,        r->delta,
                       r->kl,     r->seconds,    r->error};
        /* One link per run: its first row. */
        if (!r->run_id[0] || (i > 0 && !strcmp(v[i - 1].dir, r->dir))) continue;
        htri_t ex = H5Lexists(g, r->run_id, H5P_DEFAULT);
        if (ex < 0) goto h5fail;
        if (ex > 0) {
            const char *other = "?";
            for (size_t j = 0; j < i; j++)
                if (!strcmp(v[j].run_id, r->run_id)) {
                    other = v[j].dir;
                    break;
                }
            rc = rb_error_set(err, RB_EFORMAT, "%s: run id '%s' appears in both %s/ and %s/ (remove one copy)", dir,
                              r->run_id, other, r->dir);
            goto out;
        }
        char target[512];
        snprintf(target, sizeof target, "%s/%s", r->dir, r->file);
        if (H5Lcreate_external(target, "/", g, r->run_id, H5P_DEFAULT, H5P_DEFAULT) < 0) goto h5fail;
        runs++;
    }
    rb_h5_close(&g);
    hsize_t dims[1] = {n};
    char now[32];
    rb_env_utc_now(now, sizeof now);
    if ((ft = row_type(1)) < 0 || (mt = row_type(0)) < 0 || rb_h5_put_dataset(f, "summary", 1, dims, ft, mt, h) ||
        rb_h5_put_i32(f, "schema_version", RB_INDEX_SCHEMA_VERSION) ||
        rb_h5_put_str(f, "rotbench_version", RB_VERSION) || rb_h5_put_str(f, "created_utc", now) ||
        rb_h5_put_i32(f, "runs", runs) || rb_h5_put_i32(f, "rows", (int)n))
        goto h5fail;
    rb_h5_close(&ft);
    rb_h5_close(&mt);
    herr_t cl = H5Fclose(f);
    f = -1;
    if (cl < 0) goto h5fail;
    goto out;
h5fail:
    rc = rb_error_set(err, RB_EIO, "%s: writing failed: %s", tmp, rb_h5_last_error(d, sizeof d));
out:
    rb_h5_close(&ft);
    rb_h5_close(&mt);
    rb_h5_close(&g);
    rb_h5_close(&f);
    free(h);
    return rc;
}

int rb_index_build(const char *dir, rb_error *err) {
    RB_ASSERT(dir);
    rb_index_row *v;
    size_t n;
    int rc = rb_index_scan(dir, &v, &n, err);
    if (rc) return rc;
    if (n == 0) {
        free(v);
        return rb_error_set(err, RB_ENOTFOUND, "%s holds no run directories (results.h5 or results.h5.partial)", dir);
    }
    for (size_t i = 0; i < n; i++)
        if (v[i].status == RB_INDEX_UNREADABLE) rb_warn("%s: its results cannot be read: %s", v[i].dir, v[i].error);
    char *final = rb_path_join(dir, RB_INDEX_FILE), tmp[4200];
    if (!final) {
        free(v);
        return rb_error_set(err, RB_ENOMEM, "%s: out of memory", dir);
    }
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp%d", dir, RB_INDEX_FILE, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) {
        int e = errno;
        rc = rb_error_set(err, RB_EIO, "%s: cannot create: %s", tmp, strerror(e));
    } else {
        close(fd);
        rb_h5_quiet q;
        rb_h5_quiet_on(&q);
        rc = write_index(dir, tmp, v, n, err);
        rb_h5_quiet_off(&q);
        if (!rc && rename(tmp, final) != 0) {
            int e = errno;
            rc = rb_error_set(err, RB_EIO, "%s: cannot rename into place: %s", final, strerror(e));
        }
        if (rc) unlink(tmp);
    }
    free(final);
    free(v);
    return rc;
}

/* ---- CSV ----------------------------------------------------------------------------------- */

static void csv_str(FILE *f, const char *s, int first) {
    if (!first) fputc(',', f);
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (const char *p = s; *p; p++) {
        if (*p == '"') fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

static void csv_int(FILE *f, long long v, int known) {
    fputc(',', f);
    if (known) fprintf(f, "%lld", v);
}

static void csv_num(FILE *f, double v) {
    fputc(',', f);
    if (!isnan(v)) fprintf(f, "%.9g", v);
}

int rb_index_write_csv(const rb_index_row *rows, size_t n, FILE *f) {
    fputs("dir,run_id,name,status,method,quant,w_bits,a_bits,kv_bits,w_algo,seed,corpus,protocol,seqlen,ppl,ppl_fp,"
          "delta,kl,seconds,error\n",
          f);
    for (size_t i = 0; i < n; i++) {
        const rb_index_row *r = &rows[i];
        int known = r->status != RB_INDEX_UNREADABLE;
        const char *st = rb_index_status_name(r->status);
        csv_str(f, r->dir, 1);
        csv_str(f, r->run_id, 0);
        csv_str(f, r->name, 0);
        csv_str(f, st ? st : "", 0);
        csv_str(f, r->method, 0);
        csv_str(f, r->quant, 0);
        csv_int(f, r->w_bits, r->w_bits >= 0);
        csv_int(f, r->a_bits, r->a_bits >= 0);
        csv_int(f, r->kv_bits, r->kv_bits >= 0);
        csv_str(f, w_algo_label(r->w_algo), 0);
        fputc(',', f);
        if (known) fprintf(f, "%llu", (unsigned long long)r->seed);
        csv_str(f, r->corpus, 0);
        csv_str(f, protocol_label(r->protocol), 0);
        csv_int(f, r->seqlen, r->seqlen >= 0);
        csv_num(f, r->ppl);
        csv_num(f, r->ppl_fp);
        csv_num(f, r->delta);
        csv_num(f, r->kl);
        csv_num(f, r->seconds);
        csv_str(f, r->error, 0);
        fputc('\n', f);
    }
    return ferror(f) ? RB_EIO : 0;
}

int rb_index_export_csv(const char *dir, FILE *f, rb_error *err) {
    rb_index_row *v;
    size_t n;
    int rc = rb_index_scan(dir, &v, &n, err);
    if (rc) return rc;
    if (n == 0) {
        free(v);
        return rb_error_set(err, RB_ENOTFOUND, "%s holds no run directories (results.h5 or results.h5.partial)", dir);
    }
    rc = rb_index_write_csv(v, n, f);
    free(v);
    if (rc) return rb_error_set(err, rc, "%s: writing CSV failed", dir);
    return 0;
}

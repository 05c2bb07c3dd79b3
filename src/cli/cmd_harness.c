/* rotbench run / sweep / status / index / export: the experiment harness front end. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "harness/rb_config.h"
#include "harness/rb_index.h"
#include "harness/rb_report.h"
#include "harness/rb_table.h"
#include "harness/rb_results.h"
#include "harness/rb_run.h"

/* Collects `key=value`, `+key=value`, `~key` arguments (anything positional after CONFIG holding
 * '=' or starting with '~') and `-m key=a,b` axes; everything else must be a known option. */
typedef struct harness_args {
    const char *config, *out, *configs, *shard;
    const char **overrides, **multirun;
    int n_overrides, n_multirun;
    int resume, force, cfg_only, dry_run;
    long index;
} harness_args;

static int parse_harness(int argc, char **argv, const char *cmd, harness_args *h, rb_error *err) {
    memset(h, 0, sizeof *h);
    h->index = -1;
    h->overrides = calloc((size_t)argc + 1, sizeof *h->overrides);
    h->multirun = calloc((size_t)argc + 1, sizeof *h->multirun);
    if (!h->overrides || !h->multirun) return rb_error_set(err, RB_ENOMEM, "out of memory");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--resume")) h->resume = 1;
        else if (!strcmp(a, "--force")) h->force = 1;
        else if (!strcmp(a, "--cfg")) h->cfg_only = 1;
        else if (!strcmp(a, "--dry-run")) h->dry_run = 1;
        else if (!strcmp(a, "--out") || !strcmp(a, "--configs") || !strcmp(a, "--shard") || !strcmp(a, "--index") ||
                 !strcmp(a, "-m")) {
            if (!val) return rb_error_set(err, RB_EINVAL, "%s: option %s needs a value", cmd, a);
            i++;
            if (!strcmp(a, "--out")) h->out = val;
            else if (!strcmp(a, "--configs")) h->configs = val;
            else if (!strcmp(a, "--shard")) h->shard = val;
            else if (!strcmp(a, "-m")) h->multirun[h->n_multirun++] = val;
            else {
                char *end;
                h->index = strtol(val, &end, 10);
                if (*end || h->index < 0) return rb_error_set(err, RB_EINVAL, "%s: --index: expected a row number, got '%s'", cmd, val);
            }
        } else if (a[0] == '-' && a[1] == '-') {
            return rb_error_set(err, RB_EINVAL, "%s: unknown option '%s'", cmd, a);
        } else if (!h->config) {
            h->config = a;
        } else if (strchr(a, '=') || a[0] == '~') {
            h->overrides[h->n_overrides++] = a;
        } else {
            return rb_error_set(err, RB_EINVAL, "%s: unexpected argument '%s' (overrides are key=value, +key=value, ~key)",
                                cmd, a);
        }
    }
    if (!h->config) return rb_error_set(err, RB_EINVAL, "%s: usage: rotbench %s CONFIG.yaml [key=value ...] [options]", cmd, cmd);
    return 0;
}

static void harness_free(harness_args *h) {
    free(h->overrides);
    free(h->multirun);
}

/* configs/ beside the binary's source tree is not knowable at run time: default to ./configs. */
static const char *configs_dir(const harness_args *h) { return h->configs ? h->configs : "configs"; }

static char *out_dir(const harness_args *h, const rb_config *cfg) {
    if (h->out) return rb_strdup(h->out);
    char buf[1024];
    snprintf(buf, sizeof buf, "results/%s", cfg->name);
    return rb_strdup(buf);
}

int rb_cmd_run(int argc, char **argv) {
    rb_error err = {0};
    harness_args h;
    rb_config cfg;
    memset(&cfg, 0, sizeof cfg);
    char *dir = NULL;
    int rc = parse_harness(argc, argv, "run", &h, &err);
    if (!rc) rc = rb_config_load(h.config, configs_dir(&h), h.overrides, (size_t)h.n_overrides, &cfg, &err);
    if (!rc && h.cfg_only) {
        fputs(cfg.canonical, stdout);
        goto done;
    }
    if (!rc && cfg.has_sweep) rc = rb_error_set(&err, RB_EINVAL, "%s: has a sweep: section, use rotbench sweep", h.config);
    char id[RB_RUN_ID_LEN + 1];
    if (!rc) rc = rb_run_compute_id(&cfg, id, &err);
    if (!rc) {
        char name[512], *base = out_dir(&h, &cfg);
        rb_run_dir_name(&cfg, id, name, sizeof name);
        dir = base ? rb_path_join(base, name) : NULL;
        free(base);
        if (!dir) rc = rb_error_set(&err, RB_ENOMEM, "out of memory");
    }
    if (!rc) {
        rb_run_opts o = {.resume = h.resume, .force = h.force, .argv = (const char *const *)argv, .argc = argc,
                         .overrides = h.overrides, .n_overrides = h.n_overrides};
        int outcome;
        rc = rb_run_execute(&cfg, dir, id, &o, &outcome, &err);
        if (!rc) printf("{\"run_id\": \"%s\", \"dir\": \"%s\", \"status\": \"%s\"}\n", id, dir,
                        outcome == RB_RUN_SKIPPED_DONE ? "skipped (done)" : "done");
    }
done:
    free(dir);
    rb_config_free(&cfg);
    harness_free(&h);
    return rc ? rb_cli_fail(&err) : RB_EXIT_OK;
}

/* Rows this process runs: --index k, --shard i/n, or SLURM_ARRAY_TASK_ID; all by default. */
static int select_rows(const harness_args *h, size_t n, unsigned char *sel, rb_error *err) {
    const char *slurm = getenv("SLURM_ARRAY_TASK_ID");
    long idx = h->index;
    if (idx < 0 && slurm && *slurm) {
        char *end;
        idx = strtol(slurm, &end, 10);
        if (*end || idx < 0) return rb_error_set(err, RB_EINVAL, "SLURM_ARRAY_TASK_ID: expected a row number, got '%s'", slurm);
    }
    if (idx >= 0) {
        if ((size_t)idx >= n) return rb_error_set(err, RB_EINVAL, "sweep: row %ld does not exist (%zu rows)", idx, n);
        memset(sel, 0, n);
        sel[idx] = 1;
        return 0;
    }
    memset(sel, 1, n);
    if (h->shard) {
        long i, k;
        char c;
        if (sscanf(h->shard, "%ld/%ld%c", &i, &k, &c) != 2 || k < 1 || i < 0 || i >= k)
            return rb_error_set(err, RB_EINVAL, "--shard: expected i/n with 0 <= i < n, got '%s'", h->shard);
        for (size_t r = 0; r < n; r++) sel[r] = (long)(r % (size_t)k) == i;
    }
    return 0;
}

int rb_cmd_sweep(int argc, char **argv) {
    rb_error err = {0};
    harness_args h;
    rb_config cfg;
    memset(&cfg, 0, sizeof cfg);
    rb_sweep sw = {0};
    char *base = NULL, (*ids)[RB_RUN_ID_LEN + 1] = NULL;
    unsigned char *sel = NULL;
    FILE *mf = NULL;
    int rc = parse_harness(argc, argv, "sweep", &h, &err), failures = 0, fail_code = RB_EXIT_OK;
    if (!rc) rc = rb_config_load(h.config, configs_dir(&h), h.overrides, (size_t)h.n_overrides, &cfg, &err);
    if (!rc && h.cfg_only) {
        fputs(cfg.canonical, stdout);
        goto done;
    }
    if (!rc) rc = rb_sweep_expand(&cfg, h.multirun, (size_t)h.n_multirun, &sw, &err);
    if (!rc && !(base = out_dir(&h, &cfg))) rc = rb_error_set(&err, RB_ENOMEM, "out of memory");
    if (!rc && (!(ids = calloc(sw.n_rows, sizeof *ids)) || !(sel = calloc(sw.n_rows, 1))))
        rc = rb_error_set(&err, RB_ENOMEM, "out of memory");
    for (size_t r = 0; !rc && r < sw.n_rows; r++) rc = rb_run_compute_id(&sw.rows[r].cfg, ids[r], &err);
    if (!rc) rc = select_rows(&h, sw.n_rows, sel, &err);
    /* the manifest is written (or printed) before anything runs */
    if (!rc && !h.dry_run) {
        char *mp = NULL;
        char tmp[1200];
        if (!(rc = mkdir(base, 0777) && errno != EEXIST ? rb_error_set(&err, RB_EIO, "%s: cannot create: %s", base, strerror(errno)) : 0)) {
            mp = rb_path_join(base, "manifest.tsv");
            snprintf(tmp, sizeof tmp, "%s.tmp", mp ? mp : "");
            if (!mp || !(mf = fopen(tmp, "w"))) rc = rb_error_set(&err, RB_EIO, "%s: cannot write the manifest", base);
        }
        if (!rc) {
            fprintf(mf, "row\trun_id\tdir\toverrides\n");
            for (size_t r = 0; r < sw.n_rows; r++) {
                char name[512];
                rb_run_dir_name(&sw.rows[r].cfg, ids[r], name, sizeof name);
                fprintf(mf, "%zu\t%s\t%s\t", r, ids[r], name);
                for (size_t k = 0; k < sw.rows[r].n_overrides; k++) fprintf(mf, k ? " %s" : "%s", sw.rows[r].overrides[k]);
                fputc('\n', mf);
            }
            if (fclose(mf) || rename(tmp, mp)) rc = rb_error_set(&err, RB_EIO, "%s: cannot write", mp);
            mf = NULL;
        }
        free(mp);
    }
    for (size_t r = 0; !rc && r < sw.n_rows; r++) {
        char name[512];
        rb_run_dir_name(&sw.rows[r].cfg, ids[r], name, sizeof name);
        if (h.dry_run) {
            printf("%zu\t%s\t%s\t%s\t", r, sel[r] ? "selected" : "-", ids[r], name);
            for (size_t k = 0; k < sw.rows[r].n_overrides; k++) printf(k ? " %s" : "%s", sw.rows[r].overrides[k]);
            putchar('\n');
            continue;
        }
        if (!sel[r]) continue;
        char *dir = rb_path_join(base, name);
        if (!dir) {
            rc = rb_error_set(&err, RB_ENOMEM, "out of memory");
            break;
        }
        rb_run_opts o = {.resume = h.resume, .force = h.force, .argv = (const char *const *)argv, .argc = argc,
                         .overrides = (const char *const *)sw.rows[r].overrides, .n_overrides = (int)sw.rows[r].n_overrides};
        int outcome;
        rb_error re = {0};
        int rr = rb_run_execute(&sw.rows[r].cfg, dir, ids[r], &o, &outcome, &re);
        printf("{\"row\": %zu, \"run_id\": \"%s\", \"dir\": \"%s\", \"status\": \"%s\"}\n", r, ids[r], dir,
               rr ? (rr == RB_EINTERRUPTED ? "interrupted" : "failed") : outcome == RB_RUN_SKIPPED_DONE ? "skipped (done)" : "done");
        fflush(stdout);
        free(dir);
        if (rr == RB_EINTERRUPTED) {
            rc = rr;
            err = re;
        } else if (rr) {
            fprintf(stderr, "rotbench: row %zu: %s\n", r, re.msg);
            if (!failures++) fail_code = rb_cli_exit_code(rr);
        }
    }
done:
    if (mf) fclose(mf);
    free(ids);
    free(sel);
    free(base);
    rb_sweep_free(&sw);
    rb_config_free(&cfg);
    harness_free(&h);
    if (rc) return rb_cli_fail(&err);
    return failures ? fail_code : RB_EXIT_OK; /* the other rows ran; the first failure sets the code */
}

int rb_cmd_status(int argc, char **argv) {
    rb_error err = {0};
    if (argc != 1) {
        rb_error_set(&err, RB_EINVAL, "status: usage: rotbench status DIR");
        return rb_cli_fail(&err);
    }
    const char *dir = argv[0];
    char *mp = rb_path_join(dir, "manifest.tsv");
    char *text = NULL;
    size_t len = 0;
    int rc = mp ? rb_read_file(mp, 64u << 20, &text, &len, &err) : RB_ENOMEM;
    if (rc == RB_ENOTFOUND) { /* a single run directory's parent without manifest: list runs */
        rb_index_row *rows = NULL;
        size_t n = 0;
        rc = rb_index_scan(dir, &rows, &n, &err);
        if (!rc && n == 0)
            rc = rb_error_set(&err, RB_ENOTFOUND, "status: %s holds neither a manifest.tsv nor run directories", dir);
        for (size_t i = 0; !rc && i < n; i++) {
            printf("%s\t%s\t%s\n", rows[i].dir, rb_index_status_name(rows[i].status), rows[i].run_id);
            if (rows[i].status == RB_INDEX_UNREADABLE) rb_warn("%s: %s", rows[i].dir, rows[i].error);
        }
        free(rows);
        free(mp);
        return rc ? rb_cli_fail(&err) : RB_EXIT_OK;
    }
    int counts[6] = {0};
    printf("row\tstatus\trun_id\tdir\n");
    for (char *line = text, *next; !rc && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (!strncmp(line, "row\t", 4)) continue;
        char row[32], id[200], rdir[600];
        if (sscanf(line, "%31[^\t]\t%199[^\t]\t%599[^\t]", row, id, rdir) != 3) {
            rc = rb_error_set(&err, RB_EFORMAT, "%s: malformed line '%.60s'", mp, line);
            break;
        }
        char *rp = rb_path_join(dir, rdir), *res = rp ? rb_path_join(rp, RB_RESULTS_FILE) : NULL,
             *par = rp ? rb_path_join(rp, RB_RESULTS_PARTIAL) : NULL;
        const char *st = "pending";
        rb_run_summary s;
        rb_error e2;
        if (res && rb_path_exists(res))
            st = rb_results_read_summary(res, &s, &e2) || s.status != RB_RUN_DONE || strcmp(s.run_id, id)
                     ? "failed (damaged results.h5)"
                     : "done";
        else if (par && rb_path_exists(par))
            st = rb_results_read_summary(par, &s, &e2) ? "failed (unreadable)"
                 : s.status == RB_RUN_FAILED        ? "failed"
                 : s.status == RB_RUN_INTERRUPTED   ? "partial (interrupted)"
                                                    : "partial";
        counts[st[0] == 'd' ? 0 : st[0] == 'p' && st[1] == 'a' ? 1 : st[0] == 'f' ? 2 : 3]++;
        printf("%s\t%s\t%s\t%s\n", row, st, id, rdir);
        free(rp);
        free(res);
        free(par);
    }
    if (!rc) fprintf(stderr, "%d done, %d partial, %d failed, %d pending\n", counts[0], counts[1], counts[2], counts[3]);
    free(text);
    free(mp);
    return rc ? rb_cli_fail(&err) : RB_EXIT_OK;
}

int rb_cmd_index(int argc, char **argv) {
    rb_error err = {0};
    if (argc != 1) {
        rb_error_set(&err, RB_EINVAL, "index: usage: rotbench index DIR");
        return rb_cli_fail(&err);
    }
    if (rb_index_build(argv[0], &err)) return rb_cli_fail(&err);
    printf("{\"index\": \"%s/index.h5\"}\n", argv[0]);
    return RB_EXIT_OK;
}

int rb_cmd_export(int argc, char **argv) {
    rb_error err = {0};
    if (argc != 2 || strcmp(argv[1], "--csv")) {
        rb_error_set(&err, RB_EINVAL, "export: usage: rotbench export DIR --csv");
        return rb_cli_fail(&err);
    }
    if (rb_index_export_csv(argv[0], stdout, &err)) return rb_cli_fail(&err);
    return RB_EXIT_OK;
}

int rb_cmd_plot(int argc, char **argv) {
    rb_error err = {0};
    const char *quant = argc == 3 && !strcmp(argv[1], "--quant") ? argv[2] : NULL;
    if (argc != 1 && !quant) {
        rb_error_set(&err, RB_EINVAL, "plot: usage: rotbench plot DIR [--quant PRESET]");
        return rb_cli_fail(&err);
    }
    int n = 0;
    if (rb_report_plot(argv[0], quant, &n, &err)) return rb_cli_fail(&err);
    printf("{\"figures\": %d, \"dir\": \"%s/figures%s%s\"}\n", n, argv[0], quant ? "-" : "", quant ? quant : "");
    return RB_EXIT_OK;
}

int rb_cmd_table(int argc, char **argv) {
    rb_error err = {0};
    int format = RB_TABLE_MARKDOWN;
    const char *dir = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--format") && i + 1 < argc) {
            const char *f = argv[++i];
            format = !strcmp(f, "md") ? RB_TABLE_MARKDOWN : !strcmp(f, "latex") ? RB_TABLE_LATEX : !strcmp(f, "csv") ? RB_TABLE_CSV : -1;
            if (format < 0) {
                rb_error_set(&err, RB_EINVAL, "table: --format: expected md, latex or csv, got '%s'", f);
                return rb_cli_fail(&err);
            }
        } else if (!dir && argv[i][0] != '-') {
            dir = argv[i];
        } else {
            rb_error_set(&err, RB_EINVAL, "table: unexpected argument '%s'", argv[i]);
            return rb_cli_fail(&err);
        }
    }
    if (!dir) {
        rb_error_set(&err, RB_EINVAL, "table: usage: rotbench table DIR [--format md|latex|csv]");
        return rb_cli_fail(&err);
    }
    if (rb_report_table(dir, format, stdout, &err)) return rb_cli_fail(&err);
    return RB_EXIT_OK;
}

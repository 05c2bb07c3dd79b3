/* RUQuant stage 1 at Llama-2-7B hidden size: one site of width d = 4096 (block 128, K 16, λ 3)
 * fitted on 2048 tokens of heavy-tailed synthetic activations, then its online transform applied
 * to 2048 fp32 rows, and its weight-side fusion on a 4096×4096 weight in double; against the sgemm
 * rate of a 4096→4096 linear over the same 2048 tokens, measured in the same process. Prints one
 * JSON object on stdout (load average and CPU/wall ratio included: the machine is shared). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_rng.h"
#include "bench_util.h"
#include "methods/rb_ruquant.h"

enum { D = 4096, NTOK = 2048, BLOCK = 128, REPS = 3 };

/* Activations shaped like an LLM's: Gaussian bulk, a few massive-outlier channels (×50) and
 * sparse large entries (×10 on one entry in 97). */
static void activations(rb_rng *r, double *x) {
    rb_rng_gauss_d(r, x, (size_t)NTOK * D, 0.0, 1.0);
    for (int c = 0; c < 8; c++) {
        int j = (int)rb_rng_below(r, D);
        for (int t = 0; t < NTOK; t++) x[(size_t)t * D + j] *= 50.0;
    }
    for (size_t i = 0; i < (size_t)NTOK * D; i += 97) x[i] *= 10.0;
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, rb_cmp_double);
    return t[n / 2];
}

int main(void) {
    char load0[64], load1[64];
    bench_loadavg(load0, sizeof load0);
    double wall0 = rb_now(), cpu0 = bench_cpu_now();
    rb_rng r;
    rb_rng_seed(&r, 1, "bench-ruquant");
    size_t nx = (size_t)NTOK * D;
    double *X = bench_alloc(nx * sizeof(double)), *wmax = bench_alloc(D * sizeof(double));
    double *W = bench_alloc((size_t)D * D * sizeof(double)), *Wt = bench_alloc((size_t)D * D * sizeof(double));
    float *xf = bench_alloc(nx * sizeof(float)), *y = bench_alloc(nx * sizeof(float)), *tmp = bench_alloc(nx * sizeof(float));
    float *b = bench_alloc((size_t)D * D * sizeof(float)), *x0 = bench_alloc(nx * sizeof(float));
    activations(&r, X);
    for (size_t i = 0; i < nx; i++) x0[i] = (float)X[i];
    rb_rng_gauss(&r, b, (size_t)D * D, 0.0, 0.02);
    rb_rng_gauss_d(&r, W, (size_t)D * D, 0.0, 0.02);
    for (int j = 0; j < D; j++) wmax[j] = 0;
    for (size_t i = 0; i < (size_t)D * D; i++) wmax[i % D] = fmax(wmax[i % D], fabs(W[i]));

    /* reference rate: one 4096→4096 linear over 2048 tokens */
    double t[REPS];
    for (int i = 0; i < REPS; i++) {
        double t0 = rb_now();
        rb_sgemm(0, 1, NTOK, D, D, 1.0f, x0, D, b, D, 0.0f, y, D);
        t[i] = rb_now() - t0;
    }
    double sgemm_s = median(t, REPS), sgemm_gflops = 2.0 * NTOK * D * (double)D / sgemm_s * 1e-9;

    /* stage 1: smoothing, get_R, zig-zag, get_R, global Householder on [2048][4096] in double */
    rb_ruq_fit_opts o = {.block = BLOCK, .steps = 16, .perms = 3, .code_givens = 0, .alpha = 0.6};
    rb_ruq_site *s;
    rb_ruq_fit_info fi;
    rb_error err = {0};
    double t0 = rb_now();
    if (rb_ruq_fit_site(X, NTOK, D, wmax, &o, &r, &s, &fi, &err)) {
        fprintf(stderr, "bench_ruquant: %s\n", err.msg);
        return 1;
    }
    double fit_s = rb_now() - t0;

    /* online transform of 2048 fp32 rows (what every forward pays at this site) */
    for (int i = 0; i < REPS; i++) {
        memcpy(xf, x0, nx * sizeof(float));
        t0 = rb_now();
        rb_ruq_apply_act_f(s, xf, NTOK, tmp, 0);
        t[i] = rb_now() - t0;
    }
    double apply_s = median(t, REPS);
    double apply_flop = 2.0 * 2.0 * NTOK * (double)D * BLOCK + 4.0 * NTOK * D; /* two block gemms + Householder */

    /* weight-side fusion, in double, of one 4096×4096 weight */
    t0 = rb_now();
    rb_ruq_apply_weight_d(s, W, D, Wt);
    double fuse_s = rb_now() - t0;

    bench_loadavg(load1, sizeof load1);
    double wall = rb_now() - wall0, cpu = bench_cpu_now() - cpu0;
    printf("{\n");
    printf("  \"benchmark\": \"ruquant\",\n");
    printf("  \"shape\": {\"width\": %d, \"tokens\": %d, \"block\": %d, \"steps\": %d, \"perms\": %d},\n", D, NTOK, BLOCK,
           o.steps, o.perms);
    bench_print_blas();
    printf("  \"load_1min\": {\"start\": %s, \"end\": %s},\n", load0[0] ? load0 : "null", load1[0] ? load1 : "null");
    printf("  \"process_cpu_over_wall\": %.2f,\n", cpu / wall);
    printf("  \"sgemm_2048x4096x4096\": {\"seconds\": %.4f, \"gflops\": %.1f},\n", sgemm_s, sgemm_gflops);
    printf("  \"fit_site\": {\"seconds\": %.3f, \"ratio_to_sgemm\": %.1f, \"householder_steps\": [%d, %d], "
           "\"max_abs_smoothed\": %.3f, \"max_abs_out\": %.3f, \"orth_error\": %.3g},\n",
           fit_s, fit_s / sgemm_s, fi.applied0, fi.applied1, fi.max_abs_smoothed, fi.max_abs_out, s->orth_err);
    printf("  \"online_apply_2048_rows\": {\"seconds\": %.5f, \"gflops\": %.1f, \"ratio_to_sgemm\": %.4f},\n", apply_s,
           apply_flop / apply_s * 1e-9, apply_s / sgemm_s);
    printf("  \"fuse_weight_4096x4096_double\": {\"seconds\": %.4f},\n", fuse_s);
    printf("  \"wall_s\": %.1f\n", wall);
    printf("}\n");
    rb_ruq_site_free(s);
    rb_free(X);
    rb_free(wmax);
    rb_free(W);
    rb_free(Wt);
    rb_free(xf);
    rb_free(y);
    rb_free(tmp);
    rb_free(b);
    rb_free(x0);
    return 0;
}

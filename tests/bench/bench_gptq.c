/* GPTQ at Llama-2-7B gate_proj shape: W [11008 outputs][4096 inputs], H 4096×4096.
 * Times Hessian accumulation of one 2048-token batch (and its extrapolation to the 128×2048
 * calibration set), the Cholesky chain, per-column quantization and the trailing-block sgemms,
 * plus the per-token activation quantizer on a [2048][4096] block, against the sgemm rate
 * measured in the same process. Prints one JSON object on stdout. The machine is shared: the
 * load average and the process's CPU/wall ratio are printed so that numbers can be judged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_rng.h"
#include "quant/rb_gptq.h"
#include "bench_util.h"

enum { ROWS = 11008, COLS = 4096, NTOK = 2048, CALIB_BATCHES = 128, REPS = 3 };

int main(void) {
    char load0[64], load1[64];
    bench_loadavg(load0, sizeof load0);
    double wall0 = rb_now(), cpu0 = bench_cpu_now();
    rb_rng r;
    rb_rng_seed(&r, 1, "bench-gptq");
    float *x = bench_alloc((size_t)NTOK * COLS * sizeof(float));
    float *b = bench_alloc((size_t)COLS * COLS * sizeof(float));
    float *y = bench_alloc((size_t)NTOK * COLS * sizeof(float));
    float *w = bench_alloc((size_t)ROWS * COLS * sizeof(float));
    rb_rng_gauss(&r, x, (size_t)NTOK * COLS, 0.0, 1.0);
    rb_rng_gauss(&r, b, (size_t)COLS * COLS, 0.0, 0.02);
    rb_rng_gauss(&r, w, (size_t)ROWS * COLS, 0.0, 0.02);

    /* reference rate: one 4096→4096 linear over 2048 tokens */
    double t[REPS];
    for (int i = 0; i < REPS; i++) {
        double t0 = rb_now();
        rb_sgemm(0, 1, NTOK, COLS, COLS, 1.0f, x, COLS, b, COLS, 0.0f, y, COLS);
        t[i] = rb_now() - t0;
    }
    qsort(t, REPS, sizeof *t, rb_cmp_double);
    double sgemm_s = t[REPS / 2], sgemm_gflops = 2.0 * NTOK * COLS * (double)COLS / sgemm_s * 1e-9;

    /* per-token activation fake quantization (int4 sym, the W4A4 input path) on the same block */
    rb_qspec aspec = rb_qspec_make(4, 1, RB_QGRAN_TOKEN, 0);
    rb_error err = {0};
    for (int i = 0; i < REPS; i++) {
        memcpy(y, x, (size_t)NTOK * COLS * sizeof(float));
        double t0 = rb_now();
        if (rb_quant_fake(&aspec, y, NTOK, COLS, 0, &err)) {
            fprintf(stderr, "bench_gptq: %s\n", err.msg);
            return 1;
        }
        t[i] = rb_now() - t0;
    }
    qsort(t, REPS, sizeof *t, rb_cmp_double);
    double actq_s = t[REPS / 2];

    /* Hessian: REPS batches of 2048 tokens */
    rb_hessian hs;
    if (rb_hessian_init(&hs, COLS, &err)) {
        fprintf(stderr, "bench_gptq: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < REPS; i++) {
        double t0 = rb_now();
        rb_hessian_add(&hs, x, NTOK);
        t[i] = rb_now() - t0;
    }
    qsort(t, REPS, sizeof *t, rb_cmp_double);
    double hess_s = t[REPS / 2];
    double hess_gflops = (double)NTOK * COLS * (COLS + RB_HESSIAN_BLOCK) / hess_s * 1e-9; /* blocked syrk flops */

    /* GPTQ, QuaRot's W4 setting: per-channel symmetric with clip search, blocks of 128 */
    rb_qspec wspec = rb_qspec_make(4, 1, RB_QGRAN_CHANNEL, 0);
    wspec.clip_search = 1;
    rb_gptq_opts o = rb_gptq_opts_default();
    o.name = "bench.gate_proj";
    rb_gptq_stats st;
    double t0 = rb_now();
    if (rb_gptq_quantize(&wspec, w, ROWS, COLS, hs.h, &o, &st, &err)) {
        fprintf(stderr, "bench_gptq: %s\n", err.msg);
        return 1;
    }
    double gptq_s = rb_now() - t0;
    double upd_gflops = st.t_update_s > 0 ? st.update_flop / st.t_update_s * 1e-9 : 0.0;

    bench_loadavg(load1, sizeof load1);
    double wall = rb_now() - wall0, cpu = bench_cpu_now() - cpu0;
    printf("{\n");
    printf("  \"benchmark\": \"gptq\",\n");
    printf("  \"shape\": {\"rows\": %d, \"cols\": %d, \"tokens_per_batch\": %d},\n", ROWS, COLS, NTOK);
    bench_print_blas();
    printf("  \"load_1min\": {\"start\": %s, \"end\": %s},\n", load0[0] ? load0 : "null", load1[0] ? load1 : "null");
    printf("  \"process_cpu_over_wall\": %.2f,\n", cpu / wall);
    printf("  \"sgemm_2048x4096x4096\": {\"seconds\": %.4f, \"gflops\": %.1f},\n", sgemm_s, sgemm_gflops);
    printf("  \"act_quant_int4_token_2048x4096\": {\"seconds\": %.5f, \"ns_per_element\": %.3f, "
           "\"ratio_to_sgemm\": %.4f},\n",
           actq_s, actq_s * 1e9 / ((double)NTOK * COLS), actq_s / sgemm_s);
    printf("  \"hessian_add_2048_tokens\": {\"seconds\": %.4f, \"gflops\": %.1f, \"extrapolated_128x2048_s\": %.1f},\n",
           hess_s, hess_gflops, hess_s * CALIB_BATCHES);
    printf("  \"gptq\": {\"spec\": \"int4 sym channel clip-search\", \"blocksize\": %d, \"total_s\": %.3f, "
           "\"params_and_clip_search_s\": %.3f, \"cholesky_s\": %.3f, \"column_quant_s\": %.3f, "
           "\"trailing_update_s\": %.3f, \"trailing_update_gflops\": %.1f, "
           "\"trailing_update_rate_over_sgemm\": %.3f, \"loss\": %.6g},\n",
           o.blocksize, gptq_s, st.t_params_s, st.t_chol_s, st.t_quant_s, st.t_update_s, upd_gflops,
           upd_gflops / sgemm_gflops, st.loss);
    printf("  \"wall_s\": %.1f\n", wall);
    printf("}\n");
    rb_hessian_free(&hs);
    rb_free(x);
    rb_free(b);
    rb_free(y);
    rb_free(w);
    return 0;
}

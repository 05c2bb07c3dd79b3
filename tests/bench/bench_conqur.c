/* One ConQuR update at Llama-2-7B's hidden size: d = 4096, one 2048-token batch at one R1 site.
 * Times the pieces of rb_m_conqur.c's per-batch work — the rotation z = x·R (sgemm), the corner
 * statistics M += ẑᵀ·sign(ẑ)/√d (sign pass + sgemm), the simulated quantized input Q(z)·Rᵀ
 * (sgemm), and the solve C = R·M (dgemm) + polar(C) (LAPACKE_dgesdd) — against the sgemm rate
 * measured in the same process. A real update streams 2·L such sites into one R1 accumulator and
 * solves once, so the per-site and per-solve costs are reported apart. JSON on stdout. */
#include "bench_util.h"
#include "core/rb_log.h"
#include "core/rb_rng.h"
#include "methods/rb_conqur.h"
#include "rotate/rb_orth.h"

enum { D = 4096, NTOK = 2048, REPS = 3 };

int main(void) {
    char load0[64], load1[64];
    bench_loadavg(load0, sizeof load0);
    double wall0 = rb_now(), cpu0 = bench_cpu_now();
    rb_error err = {0};
    rb_rng r;
    rb_rng_seed(&r, 1, "bench-conqur");
    float *x = bench_alloc((size_t)NTOK * D * sizeof(float)), *z = bench_alloc((size_t)NTOK * D * sizeof(float));
    float *Rf = bench_alloc((size_t)D * D * sizeof(float));
    double *R = bench_alloc((size_t)D * D * sizeof(double)), *C = bench_alloc((size_t)D * D * sizeof(double));
    rb_rng_gauss(&r, x, (size_t)NTOK * D, 0.0, 1.0);
    for (int i = 0; i < NTOK; i++) x[(size_t)i * D + 7] *= 40; /* an outlier channel */
    if (rb_orth_random(&r, D, R, &err)) {
        fprintf(stderr, "bench_conqur: %s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < (size_t)D * D; i++) Rf[i] = (float)R[i];
    rb_conqur_acc a;
    if (rb_conqur_acc_init(&a, D, &err)) {
        fprintf(stderr, "bench_conqur: %s\n", err.msg);
        return 1;
    }
    double t_rot[REPS], t_acc[REPS], t_back[REPS];
    for (int i = 0; i < REPS; i++) {
        double t0 = rb_now();
        rb_sgemm(0, 0, NTOK, D, D, 1.0f, x, D, Rf, D, 0.0f, z, D);
        double t1 = rb_now();
        rb_conqur_acc_add(&a, z, NTOK, &err);
        double t2 = rb_now();
        rb_sgemm(0, 1, NTOK, D, D, 1.0f, z, D, Rf, D, 0.0f, x, D); /* Q(z)·Rᵀ without the quantizer */
        double t3 = rb_now();
        t_rot[i] = t1 - t0, t_acc[i] = t2 - t1, t_back[i] = t3 - t2;
    }
    /* the solve once (the SVD alone takes tens of seconds on 2 cores) */
    double t3 = rb_now();
    rb_conqur_acc_take(&a, R, C);
    double t4 = rb_now();
    if (rb_polar(C, D, C, &err)) {
        fprintf(stderr, "bench_conqur: %s\n", err.msg);
        return 1;
    }
    double take = t4 - t3, polar = rb_now() - t4;
    double rot = bench_median(t_rot, REPS), acc = bench_median(t_acc, REPS), back = bench_median(t_back, REPS);
    double gf = 2.0 * NTOK * (double)D * D * 1e-9, sgemm_gflops = gf / rot;
    double orth;
    rb_orth_error(C, D, &orth, NULL, &err);
    bench_loadavg(load1, sizeof load1);
    double wall = rb_now() - wall0, cpu = bench_cpu_now() - cpu0;
    printf("{\n  \"benchmark\": \"conqur\",\n  \"shape\": {\"d\": %d, \"tokens\": %d},\n", D, NTOK);
    bench_print_blas();
    printf("  \"load_1min\": {\"start\": %s, \"end\": %s},\n", load0[0] ? load0 : "null", load1[0] ? load1 : "null");
    printf("  \"process_cpu_over_wall\": %.2f,\n", cpu / wall);
    printf("  \"sgemm_rotate_2048x4096x4096\": {\"seconds\": %.4f, \"gflops\": %.1f},\n", rot, sgemm_gflops);
    printf("  \"accumulate\": {\"seconds\": %.4f, \"gflops\": %.1f, \"ratio_to_sgemm\": %.3f},\n", acc, gf / acc,
           gf / acc / sgemm_gflops);
    printf("  \"rotate_back\": {\"seconds\": %.4f},\n", back);
    printf("  \"solve\": {\"R_times_M_dgemm_s\": %.3f, \"dgemm_gflops\": %.1f, \"polar_dgesdd_s\": %.3f, "
           "\"orth_error\": %.3g},\n",
           take, 2.0 * D * (double)D * D * 1e-9 / take, polar, orth);
    printf("  \"update_total_s\": %.3f,\n", rot + acc + back + take + polar);
    printf("  \"site_cost_over_sgemm\": %.3f,\n", (rot + acc + back) / rot);
    printf("  \"wall_s\": %.1f\n}\n", wall);
    rb_conqur_acc_free(&a);
    return 0;
}

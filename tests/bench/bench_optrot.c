/* One OptRot step at Llama-2-7B shapes (d 4096, 32 heads of 128, d_ff 11008, 32 layers): times one
 * layer's loss + gradients (random N(0, 0.02²) weights, cached as the method caches prepared
 * layers that fit its budget), OptRot⁺'s extra terms, and the Cayley step + re-orthonormalization
 * of the 4096² R1, then extrapolates to a full step (32 layers) and to the paper's 1000 steps.
 * Rates are compared with an sgemm / dgemm of 4096³ measured in the same process. Prints one JSON
 * object on stdout; the load average and CPU/wall ratio are printed so numbers can be judged. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_rng.h"
#include "model/rb_synth.h"
#include "bench_util.h"
#include "methods/rb_optrot.h"
#include "rotate/rb_orth.h"

enum { DIM = 4096, HEADS = 32, HEAD_DIM = 128, HIDDEN = 11008, LAYERS = 32, STEPS = 1000 };

static void die(const rb_error *err) {
    fprintf(stderr, "bench_optrot: %s\n", err->msg);
    exit(1);
}

int main(void) {
    char load0[64], load1[64];
    bench_loadavg(load0, sizeof load0);
    double wall0 = rb_now(), cpu0 = bench_cpu_now();
    rb_error err = {0};
    const size_t nn = (size_t)DIM * DIM;
    rb_llama_config c = {.dim = DIM, .hidden_dim = HIDDEN, .n_layers = 1, .n_heads = HEADS, .n_kv_heads = HEADS,
                         .head_dim = HEAD_DIM, .vocab_size = 32000, .rms_eps = 1e-5, .rope_theta = 1e4};
    rb_synth sy; /* random layers N(0, 1/fan_in), generated at each load */
    if (rb_synth_init(&sy, &c, 0, 0, &err)) die(&err);
    rb_weights_src src = rb_synth_src(&sy);

    /* reference rates: 4096³ sgemm and dgemm (median of 3) */
    float *a = bench_alloc(nn * sizeof(float)), *b = bench_alloc(nn * sizeof(float)), *y = bench_alloc(nn * sizeof(float));
    double *R = bench_alloc(nn * sizeof(double)), *G = bench_alloc(nn * sizeof(double)), *E = bench_alloc(nn * sizeof(double)),
           *T = bench_alloc(nn * sizeof(double)), *Gp = bench_alloc(nn * sizeof(double));
    rb_rng r;
    rb_rng_seed(&r, 1, "bench-optrot-ref");
    rb_rng_gauss(&r, a, nn, 0.0, 1.0);
    rb_rng_gauss(&r, b, nn, 0.0, 1.0);
    rb_rng_gauss_d(&r, G, nn, 0.0, 1.0);
    double ts[3], td[3], gemm_flop = 2.0 * DIM * (double)DIM * DIM;
    for (int i = 0; i < 3; i++) {
        double t0 = rb_now();
        rb_sgemm(0, 0, DIM, DIM, DIM, 1.0f, a, DIM, b, DIM, 0.0f, y, DIM);
        ts[i] = rb_now() - t0;
        t0 = rb_now();
        rb_dgemm(0, 0, DIM, DIM, DIM, 1.0, G, DIM, G, DIM, 0.0, E, DIM);
        td[i] = rb_now() - t0;
    }
    double sg = fmin(fmax(ts[0], ts[1]), fmax(fmin(ts[0], ts[1]), ts[2])); /* median */
    double dg = fmin(fmax(td[0], td[1]), fmax(fmin(td[0], td[1]), td[2]));
    double sgemm_gflops = gemm_flop / sg * 1e-9, dgemm_gflops = gemm_flop / dg * 1e-9;
    rb_free(a), rb_free(b), rb_free(y);

    /* R1 and the R2 at a random orthogonal point */
    if (rb_orth_random(&r, DIM, R, &err)) die(&err);
    double *R2 = bench_alloc((size_t)HEAD_DIM * HEAD_DIM * sizeof(double)), *G2 = bench_alloc((size_t)HEAD_DIM * HEAD_DIM * sizeof(double));
    if (rb_orth_random(&r, HEAD_DIM, R2, &err)) die(&err);
    const double *R2s[1] = {R2};
    double *G2s[1] = {G2};

    /* one layer: loss + both gradients (OptRot), then OptRot⁺ with an identity Hessian */
    double layer_s[2], layer_flop[2], loss[2], alpha = 0;
    for (int plus = 0; plus < 2; plus++) {
        rb_optrot p;
        rb_optrot_opts o = {.plus = plus, .mask = RB_OPTROT_ALL, .cache_bytes = (size_t)2 << 30};
        if (rb_optrot_init(&p, &src, &c, &o, &err)) die(&err);
        if (plus) { /* H = I: the timing does not depend on the values */
            rb_optrot_hess *h = &p.hess[0];
            for (int j = 0; j < DIM; j++) h->attn[(size_t)j * DIM + j] = h->mlp[(size_t)j * DIM + j] = 1.0f;
            for (int g = 0; g < HEADS; g++)
                for (int j = 0; j < HEAD_DIM; j++) h->o[((size_t)g * HEAD_DIM + j) * HEAD_DIM + j] = 1.0f;
            for (int j = 0; j < HIDDEN; j++) h->down[j] = 1.0;
            p.hess_tokens = 1;
        }
        double t0 = rb_now();
        if (rb_optrot_eval(&p, R, R2s, &loss[plus], plus ? Gp : G, G2s, &err)) die(&err);
        layer_s[plus] = rb_now() - t0;
        layer_flop[plus] = rb_optrot_eval_flops(&p);
        rb_optrot_free(&p);
    }

    /* Cayley step of R1 (SpinQuant's optimizer) and one Newton–Schulz re-orthonormalization (2 dgemm) */
    rb_cayley_sgd cs;
    if (rb_cayley_sgd_init(&cs, DIM, 0.0, &err)) die(&err);
    rb_rng_seed(&r, 2, "bench-optrot-cayley");
    double t0 = rb_now();
    if (rb_cayley_sgd_step(&cs, R, G, 1.0, &r, &err)) die(&err);
    double cayley_s = rb_now() - t0;
    alpha = cs.last_alpha;
    t0 = rb_now();
    rb_dgemm(1, 0, DIM, DIM, DIM, 1.0, R, DIM, R, DIM, 0.0, E, DIM);
    for (int i = 0; i < DIM; i++) E[(size_t)i * DIM + i] -= 1.0;
    rb_dgemm(0, 0, DIM, DIM, DIM, -0.5, R, DIM, E, DIM, 0.0, T, DIM);
    double ns_s = rb_now() - t0;
    rb_cayley_sgd_free(&cs);

    /* a step: 32 layers + Cayley on R1 + two Newton–Schulz iterations (what the method needs after a
       ~1e-5 drift); the 32 R2 steps (128²) are negligible */
    double step_s = LAYERS * layer_s[0] + cayley_s + 2 * ns_s, step_plus_s = LAYERS * layer_s[1] + cayley_s + 2 * ns_s;
    bench_loadavg(load1, sizeof load1);
    double wall = rb_now() - wall0, cpu = bench_cpu_now() - cpu0;
    printf("{\n");
    printf("  \"benchmark\": \"optrot\",\n");
    printf("  \"shape\": {\"dim\": %d, \"heads\": %d, \"head_dim\": %d, \"hidden\": %d, \"layers\": %d},\n", DIM, HEADS,
           HEAD_DIM, HIDDEN, LAYERS);
    bench_print_blas();
    printf("  \"load_1min\": {\"start\": %s, \"end\": %s},\n", load0[0] ? load0 : "null", load1[0] ? load1 : "null");
    printf("  \"process_cpu_over_wall\": %.2f,\n", cpu / wall);
    printf("  \"sgemm_4096^3\": {\"seconds\": %.4f, \"gflops\": %.1f},\n", sg, sgemm_gflops);
    printf("  \"dgemm_4096^3\": {\"seconds\": %.4f, \"gflops\": %.1f},\n", dg, dgemm_gflops);
    for (int plus = 0; plus < 2; plus++)
        printf("  \"%s_one_layer_loss_and_grad\": {\"seconds\": %.3f, \"gflop\": %.1f, \"gflops\": %.1f, "
               "\"ratio_to_sgemm\": %.3f, \"loss\": %.6g},\n",
               plus ? "optrot_plus" : "optrot", layer_s[plus], layer_flop[plus] * 1e-9,
               layer_flop[plus] / layer_s[plus] * 1e-9, layer_flop[plus] / layer_s[plus] * 1e-9 / sgemm_gflops,
               loss[plus]);
    /* α < 1 means lr 1 is already at the 1/‖W‖₁ cap with one layer's gradient (32 layers only add to ‖W‖₁) */
    printf("  \"cayley_step_r1\": {\"seconds\": %.3f, \"alpha_lr1_one_layer_gradient\": %.3g},\n", cayley_s, alpha);
    printf("  \"newton_schulz_iteration_r1\": {\"seconds\": %.3f},\n", ns_s);
    printf("  \"extrapolated_step_s\": {\"optrot\": %.1f, \"optrot_plus\": %.1f},\n", step_s, step_plus_s);
    printf("  \"extrapolated_%d_steps_h\": {\"optrot\": %.2f, \"optrot_plus\": %.2f},\n", STEPS, step_s * STEPS / 3600,
           step_plus_s * STEPS / 3600);
    printf("  \"wall_s\": %.1f\n", wall);
    printf("}\n");
    rb_free(R), rb_free(G), rb_free(E), rb_free(T), rb_free(Gp), rb_free(R2), rb_free(G2);
    return 0;
}

/* RUQuant stage 2 at Llama-2-7B layer shapes (d 4096, 32 heads of 128, d_ff 11008): one layer
 * epoch of the Householder fine-tuning (rb_ruq_train) on random weights with random stage-1 sites
 * (block 128, unit global Householder vectors, smoothing online) under W4A4KV4: loading W'' through
 * the fused source, then `samples` AdamW steps of one window of T tokens each (guard, weights
 * re-quantized from the current vectors, layer forward with tape, block-output MSE, layer backward
 * with weight gradients, the vectors' gradients, AdamW), and one evaluation pass over the samples.
 * Against the sgemm rate of a T×4096×4096 product measured in the same process. The default run is
 * short (2 windows of 256 tokens; RUQuant publishes 128 windows of 2048 tokens and 20 epochs):
 * `bench_ruq_stage2 [samples [T]]` for more; the JSON extrapolates a published layer (20 epochs ×
 * 128 steps, linear in T: the attention's T² share is not modelled) from the measured step.
 * Prints one JSON object on stdout (load average and CPU/wall ratio included: the machine is
 * shared). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_rng.h"
#include "model/rb_synth.h"
#include "methods/rb_ruq_train.h"
#include "quant/rb_qpreset.h"

enum { DIM = 4096, HEADS = 32, HEAD_DIM = 128, HIDDEN = 11008, BLOCK = 128, REPS = 3 };

static void die(const rb_error *err) {
    fprintf(stderr, "bench_ruq_stage2: %s\n", err->msg);
    exit(1);
}

/* A site of width n: random smoothing in [0.5, 2), identity blocks and permutation (their cost does
 * not depend on their values), a random unit global Householder vector. */
static rb_ruq_site *random_site(int n, rb_rng *r) {
    rb_ruq_site *s;
    rb_error err = {0};
    if (rb_ruq_site_alloc(n, BLOCK, &s, &err)) die(&err);
    double ss = 0;
    for (int j = 0; j < n; j++) {
        s->scale[j] = 0.5 + 1.5 * rb_rng_uniform(r);
        s->hh[j] = rb_rng_uniform(r) - 0.5;
        ss += s->hh[j] * s->hh[j];
    }
    for (int j = 0; j < n; j++) s->hh[j] /= sqrt(ss);
    if (rb_ruq_site_check(s, &err)) die(&err);
    return s;
}

int main(int argc, char **argv) {
    int S = argc > 1 ? atoi(argv[1]) : 2, T = argc > 2 ? atoi(argv[2]) : 256;
    if (S < 1 || T < 2) {
        fprintf(stderr, "usage: bench_ruq_stage2 [samples >= 1 [T >= 2]]\n");
        return 2;
    }
    char load0[64], load1[64];
    bench_loadavg(load0, sizeof load0);
    double wall0 = rb_now(), cpu0 = bench_cpu_now();
    rb_error err = {0};
    rb_llama_config c = {.dim = DIM, .hidden_dim = HIDDEN, .n_layers = 1, .n_heads = HEADS, .n_kv_heads = HEADS,
                         .head_dim = HEAD_DIM, .vocab_size = 32000, .rms_eps = 1e-5, .rope_theta = 1e4};
    rb_synth sy; /* random layers N(0, 1/fan_in), generated at each load */
    if (rb_synth_init(&sy, &c, 0, 0, &err)) die(&err);
    rb_weights_src src = rb_synth_src(&sy);

    /* reference rate: one T×4096×4096 sgemm (median of 3) */
    size_t rows = (size_t)T, nn = (size_t)DIM * DIM;
    float *a = bench_alloc(rows * DIM * sizeof(float)), *b = bench_alloc(nn * sizeof(float));
    float *y = bench_alloc(rows * DIM * sizeof(float));
    rb_rng r;
    rb_rng_seed(&r, 1, "bench-ruq-stage2");
    rb_rng_gauss(&r, a, rows * DIM, 0.0, 1.0);
    rb_rng_gauss(&r, b, nn, 0.0, 0.02);
    double t[REPS];
    for (int i = 0; i < REPS; i++) {
        double t0 = rb_now();
        rb_sgemm(0, 1, T, DIM, DIM, 1.0f, a, DIM, b, DIM, 0.0f, y, DIM);
        t[i] = rb_now() - t0;
    }
    double sgemm_s = bench_median(t, REPS), sgemm_gflops = 2.0 * T * DIM * (double)DIM / sgemm_s * 1e-9;
    rb_free(a);
    rb_free(b);
    rb_free(y);

    /* the set: four random stage-1 sites of layer 0 */
    rb_rotset rs;
    if (rb_rotset_init(&rs, "ruquant", DIM, HEAD_DIM, HIDDEN, 1, &err) || rb_rotset_ruq_alloc(&rs, &err)) die(&err);
    rs.r3 = 1;
    const int widths[RB_RUQ_NSITES] = {DIM, HEADS * HEAD_DIM, DIM, HIDDEN};
    for (int k = 0; k < RB_RUQ_NSITES; k++) rs.ruq[0][k] = random_site(widths[k], &r);
    rb_fused fz;
    if (rb_fused_init(&fz, &src, &c, &rs, &err)) die(&err);
    rb_quant_cfg q;
    if (rb_quant_preset("W4A4KV4", &q, &err)) die(&err);
    rb_quant_cfg_resolve(&q, 0);
    rb_ruq_train_opts o = {.epochs = 1, .samples = S, .batch = 1, .lr = 1e-2, .weight_decay = 0, .guard = 0.01};
    rb_ruq_train tr;
    if (rb_ruq_train_init(&tr, &c, &fz, &q, &o, T, &err)) die(&err);
    size_t n = (size_t)S * T * DIM;
    float *X = bench_alloc(n * sizeof(float)), *Y = bench_alloc(n * sizeof(float));
    rb_rng_gauss(&r, X, n, 0.0, 1.0);
    rb_rng_gauss(&r, Y, n, 0.0, 0.1); /* targets: the inputs plus noise */
    for (size_t i = 0; i < n; i++) Y[i] += X[i];

    /* one layer epoch, in parts */
    double t0 = rb_now();
    if (rb_ruq_train_begin(&tr, 0, &err)) die(&err);
    double begin_s = rb_now() - t0, step_s[64], loss0 = 0, loss_last = 0;
    int nt = 0;
    t0 = rb_now();
    for (int w = 0; w < S; w++) {
        double ts = rb_now(), loss;
        rb_ruq_train_guard(&tr);
        if (rb_ruq_train_loss(&tr, X + (size_t)w * T * DIM, Y + (size_t)w * T * DIM, 1, 1, &loss, &err) ||
            rb_ruq_train_step(&tr, &err))
            die(&err);
        if (nt < 64) step_s[nt++] = rb_now() - ts;
        if (w == 0) loss0 = loss;
        loss_last = loss;
    }
    double epoch_s = rb_now() - t0;
    t0 = rb_now();
    double eval = 0;
    for (int w = 0; w < S; w++) {
        double loss;
        if (rb_ruq_train_loss(&tr, X + (size_t)w * T * DIM, Y + (size_t)w * T * DIM, 1, 0, &loss, &err)) die(&err);
        eval += loss / S;
    }
    double eval_s = rb_now() - t0;
    if (rb_ruq_train_end(&tr, &err)) die(&err);
    double step_med = bench_median(step_s, nt);
    /* linear FLOPs of one step: forward 2·T·P, backward 4·T·P (input and weight gradients), P the
     * layer's linear parameters; the backward's replayed forwards and attention not counted */
    double P = 4.0 * DIM * (double)DIM + 3.0 * DIM * (double)HIDDEN, step_flop = 6.0 * T * P;
    double published_layer_s = 20.0 * 128.0 * step_med * (2048.0 / T);

    bench_loadavg(load1, sizeof load1);
    double wall = rb_now() - wall0, cpu = bench_cpu_now() - cpu0;
    printf("{\n");
    printf("  \"benchmark\": \"ruq_stage2\",\n");
    printf("  \"measures\": \"one RUQuant stage-2 layer epoch at Llama-2-7B shapes: W'' load, %d AdamW steps of 1 "
           "window x %d tokens (re-quantize, forward+tape, backward with weight gradients, dL/dv), one evaluation "
           "pass\",\n",
           S, T);
    printf("  \"shape\": {\"dim\": %d, \"heads\": %d, \"head_dim\": %d, \"hidden\": %d, \"block\": %d, \"samples\": %d, "
           "\"tokens\": %d, \"quant\": \"%s\"},\n",
           DIM, HEADS, HEAD_DIM, HIDDEN, BLOCK, S, T, q.name);
    bench_print_blas();
    printf("  \"load_1min\": {\"start\": %s, \"end\": %s},\n", load0[0] ? load0 : "null", load1[0] ? load1 : "null");
    printf("  \"process_cpu_over_wall\": %.2f,\n", cpu / wall);
    printf("  \"sgemm_%dx4096x4096\": {\"seconds\": %.4f, \"gflops\": %.1f},\n", T, sgemm_s, sgemm_gflops);
    printf("  \"begin_layer_load_W''\": {\"seconds\": %.3f},\n", begin_s);
    printf("  \"train_step\": {\"seconds_median\": %.3f, \"linear_gflops\": %.1f, \"ratio_to_sgemm\": %.1f},\n",
           step_med, step_flop / step_med * 1e-9, step_med / sgemm_s);
    printf("  \"epoch\": {\"seconds\": %.3f, \"ratio_to_sgemm\": %.1f, \"loss_first_step\": %.6g, \"loss_last_step\": "
           "%.6g},\n",
           epoch_s, epoch_s / sgemm_s, loss0, loss_last);
    printf("  \"eval_pass\": {\"seconds\": %.3f, \"mse\": %.6g},\n", eval_s, eval);
    printf("  \"published_layer_extrapolated_s\": %.0f,\n", published_layer_s);
    printf("  \"peak_rss_mb\": %.0f,\n", rb_peak_rss_mb());
    printf("  \"train_state_mb\": %.0f,\n", rb_ruq_train_bytes(&c, T, 1) / 1048576.0);
    printf("  \"wall_s\": %.1f\n", wall);
    printf("}\n");
    rb_free(X);
    rb_free(Y);
    rb_ruq_train_free(&tr);
    rb_fused_free(&fz);
    rb_rotset_free(&rs);
    return 0;
}

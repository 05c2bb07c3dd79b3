/* rotbench bench respinquant-step: one ReSpinQuant training step at Llama shapes, by parts, against
 * plain sgemm measured in the same process.
 *
 * The model is synthetic (model/rb_synth.h: deterministic random weights cached in memory, so no
 * checkpoint of 7B size has to exist): `layers` decoder layers (default 1) of the given shapes with a
 * 32000-token vocabulary. Measured: (1) the gradient pass rb_rotgrad_run on one window of T tokens
 * at W4A4KV4 with STE — fusing every layer with its layer-wise bases, the dense exact junctions, the
 * checkpointed forward, the backward with weight gradients and the chain rule into every basis,
 * and apart its vocabulary-sized share (the rotated embedding table and lm_head, once per step);
 * (2) one Cayley SGD step with re-orthonormalization of one dim×dim and one head_dim×head_dim
 * rotation; (3) one rank-32 junction fit. A full step of an L-layer model is then ≈ L·(1 per layer)
 * + vocabulary share + (2L + 1)·Cayley(dim) + L·Cayley(head_dim) (+ the fits once, after training): printed as the
 * extrapolation to `target_layers` (default 32, Llama-2-7B). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "core/rb_rng.h"
#include "methods/rb_method.h"
#include "methods/rb_rotgrad.h"
#include "model/rb_synth.h"
#include "quant/rb_qpreset.h"
#include "rotate/rb_fuse.h"
#include "rotate/rb_junction.h"
#include "rotate/rb_orth.h"

/* Benchmark data: N(0, 1) from a named stream. */
static void gauss(uint64_t seed, const char *what, float *x, size_t n) {
    rb_rng r;
    rb_rng_seed(&r, seed, what);
    rb_rng_gauss(&r, x, n, 0.0, 1.0);
}

/* Best-of-reps seconds of one Cayley step + re-orthonormalization of an order-n rotation. */
static int time_cayley(int n, int reps, double *secs, rb_error *err) {
    rb_cayley_sgd cs;
    int rc = rb_cayley_sgd_init(&cs, n, 0.0, err);
    if (rc) return rc;
    size_t nn = (size_t)n * n;
    double *P = malloc(sizeof(double) * nn), *G = malloc(sizeof(double) * nn), *E = malloc(sizeof(double) * nn),
           *T = malloc(sizeof(double) * nn);
    rb_rng rng;
    rb_rng_seed(&rng, 1, "bench.cayley");
    if (!P || !G || !E || !T) rc = rb_error_set(err, RB_ENOMEM, "bench: out of memory");
    if (!rc) rc = rb_method_init_rot(RB_INIT_HADAMARD, 1, "rotation.r1", 1, n, P, err);
    *secs = 1e30;
    for (int r = 0; r < reps && !rc; r++) {
        rb_rng_gauss_d(&rng, G, nn, 0.0, 1.0 / n);
        double t0 = rb_now(), drift, after;
        if (!(rc = rb_cayley_sgd_step(&cs, P, G, 0.1, &rng, err)))
            rc = rb_orth_restore(P, n, E, T, &drift, &after, err);
        double dt = rb_now() - t0;
        *secs = dt < *secs ? dt : *secs;
    }
    free(P), free(G), free(E), free(T);
    rb_cayley_sgd_free(&cs);
    return rc;
}

int rb_bench_respinquant_step(rb_args *a, rb_error *err) {
    long dim, hidden, heads, kvh, T, layers, target, reps, rank;
    if (rb_args_int(a, "dim", 4096, 8, 65536, &dim, err) || rb_args_int(a, "hidden", 11008, 8, 262144, &hidden, err) ||
        rb_args_int(a, "heads", 32, 1, 1024, &heads, err) || rb_args_int(a, "kv-heads", 0, 0, 1024, &kvh, err) ||
        rb_args_int(a, "T", 2048, 2, 1 << 16, &T, err) || rb_args_int(a, "layers", 1, 1, 128, &layers, err) ||
        rb_args_int(a, "target-layers", 32, 1, 1024, &target, err) || rb_args_int(a, "reps", 1, 1, 100, &reps, err) ||
        rb_args_int(a, "rank", 32, 0, 65536, &rank, err) || rb_args_finish(a, 0, err))
        return err->code;
    if (kvh == 0) kvh = heads;
    if (dim % heads || heads % kvh)
        return rb_error_set(err, RB_EINVAL, "bench: dim must divide by heads and heads by kv-heads");
    rb_llama_config c = {.dim = (int)dim, .hidden_dim = (int)hidden, .n_layers = (int)layers, .n_heads = (int)heads,
                         .n_kv_heads = (int)kvh, .head_dim = (int)(dim / heads), .vocab_size = 32000,
                         .rms_eps = 1e-5, .rope_theta = 10000.0};
    int d = c.dim, hd = c.head_dim, L = c.n_layers;
    rb_synth sy;
    rb_quant_cfg q;
    int rc = rb_quant_preset("W4A4KV4", &q, err);
    if (!rc) rc = rb_synth_init(&sy, &c, 7, 1, err);
    if (rc) return rc;
    rb_weights_src src = rb_synth_src(&sy);
    /* the set at initialization: every residual basis the same random Hadamard, R3/R4 on */
    rb_rotset rs;
    rb_rotgrad g = {0};
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
    double *B = malloc(sizeof(double) * (size_t)d * d), *H = malloc(sizeof(double) * (size_t)hd * hd);
    if ((rc = rb_rotset_init(&rs, "respinquant", d, hd, c.hidden_dim, L, err))) goto out0;
    rs.r3 = rs.r4 = 1;
    if (!ids || !B || !H) {
        rc = rb_error_set(err, RB_ENOMEM, "bench: out of memory");
        goto out;
    }
    if ((rc = rb_rotset_layerwise_alloc(&rs, err)) ||
        (rc = rb_method_init_rot(RB_INIT_HADAMARD, 1, "rotation.r1", 1, d, B, err)) ||
        (rc = rb_method_init_rot(RB_INIT_HADAMARD, 1, "rotation.r2.0", 1, hd, H, err)))
        goto out;
    for (int l = 0; l <= L && !rc; l++) {
        rc = rb_rot_from_dense(B, d, &rs.ra[l], err);
        if (!rc && l < L) rc = rb_rot_from_dense(B, d, &rs.rm[l], err);
        if (!rc && l < L) rc = rb_rot_from_dense(H, hd, &rs.r2[l], err);
    }
    if (rc || (rc = rb_rotgrad_init(&g, &c, err)) || (rc = rb_rotgrad_layerwise(&g, err))) goto out;
    for (long t = 0; t < T; t++) ids[t] = (int32_t)((t * 7919) % c.vocab_size);
    /* sgemm reference at the layer's largest shape */
    float *A = rb_alloc(sizeof(float) * (size_t)T * d), *W = rb_alloc(sizeof(float) * (size_t)hidden * d),
          *C = rb_alloc(sizeof(float) * (size_t)T * hidden);
    if (!A || !W || !C) {
        rb_free(A), rb_free(W), rb_free(C);
        rc = rb_error_set(err, RB_ENOMEM, "bench: out of memory");
        goto out;
    }
    gauss(1, "bench.A", A, (size_t)T * d);
    gauss(1, "bench.W", W, (size_t)hidden * d);
    double best_gemm = 1e30, best_pass = 1e30;
    rb_rotgrad_opts go = {.quant = &q};
    for (long r = 0; r < reps && !rc; r++) {
        double t0 = rb_now();
        rb_sgemm(0, 1, (int)T, (int)hidden, d, 1.0f, A, d, W, d, 0.0f, C, (int)hidden);
        double dt = rb_now() - t0;
        best_gemm = dt < best_gemm ? dt : best_gemm;
        t0 = rb_now();
        rc = rb_rotgrad_run(&src, &c, &rs, &go, ids, 1, (int)T, &g, err);
        dt = rb_now() - t0;
        best_pass = dt < best_pass ? dt : best_pass;
    }
    rb_free(A), rb_free(W), rb_free(C);
    if (rc) goto out;
    /* the vocabulary-sized share of the pass, paid once per step whatever the depth: the rotated
     * embedding table and lm_head (fused in double, V·dim² multiply-adds each) */
    double t_vocab = 0;
    {
        rb_fused fz;
        float *E = rb_alloc(sizeof(float) * (size_t)T * d), *Hd = rb_alloc(sizeof(float) * (size_t)c.vocab_size * d);
        if (!E || !Hd) rc = rb_error_set(err, RB_ENOMEM, "bench: out of memory");
        else if (!(rc = rb_fused_init(&fz, &src, &c, &rs, err))) { /* (the junctions it computes are per layer) */
            rb_weights_src fs = rb_fused_src(&fz);
            double t0 = rb_now();
            if (!(rc = fs.embed(fs.ctx, ids, (size_t)T, E, err))) rc = fs.load_lm_head(fs.ctx, Hd, err);
            t_vocab = rb_now() - t0;
            rb_fused_free(&fz);
        }
        rb_free(E), rb_free(Hd);
        if (rc) goto out;
    }
    double t_cd, t_ch, t_fit;
    if ((rc = time_cayley(d, (int)reps, &t_cd, err)) || (rc = time_cayley(hd, (int)reps, &t_ch, err))) goto out;
    {
        rb_junction *j = NULL;
        /* a junction near I, as training leaves them: T = ra[0]ᵀ·(a perturbed copy) */
        double t0 = rb_now();
        rb_rotset_junction_exact(&rs, 0, RB_JN_ATTN, B);
        rc = rb_junction_fit(B, d, (int)(rank < d ? rank : d), &j, err);
        t_fit = rb_now() - t0;
        rb_junction_free(j);
        if (rc) goto out;
    }
    /* FLOPs of the gradient pass per layer, counted: forward twice (the checkpointed pass recomputes
     * it with the tape), backward (two products per projection, 2.5× attention), chain rule (one d×d
     * product per linear: 2·rows·cols·d), fusion in double (the same count), dense junctions (apply
     * twice, transpose, two accumulations: 5 products of 2·T·d² each, two junctions) */
    double qd = (double)c.n_heads * hd, kvd = (double)c.n_kv_heads * hd, ff = c.hidden_dim;
    double proj = 2.0 * T * (d * qd + 2 * d * kvd + qd * d + 3 * d * ff), att = 0;
    for (long i0 = 0; i0 < T; i0 += RB_ATT_QBLOCK) {
        double bq = T - i0 < RB_ATT_QBLOCK ? T - i0 : RB_ATT_QBLOCK;
        att += 4.0 * bq * (double)(i0 + bq) * hd * c.n_heads;
    }
    double lin = (double)d * d * (qd + 2 * kvd + qd + 3 * ff);
    double fl_engine = 2 * (proj + att) + 2 * proj + 2.5 * att, fl_chain = 2 * lin, fl_fuse = 2 * lin;
    double fl_junc = 2 * 5 * 2.0 * T * d * d, fl_layer = fl_engine + fl_chain + fl_fuse + fl_junc;
    double sgemm_gflops = 2.0 * T * hidden * d / best_gemm * 1e-9;
    double per_layer = (best_pass - t_vocab) / L;
    double step = target * per_layer + t_vocab + (2.0 * target + 1) * t_cd + target * t_ch;
    json_t *jo = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:i}", "bench", "respinquant-step", "dim", d, "hidden",
                           (int)hidden, "heads", (int)heads, "kv_heads", (int)kvh, "T", (int)T, "layers", L, "blas_core",
                           rb_blas_corename(), "blas_threads", rb_blas_threads());
    json_object_set_new(jo, "sgemm_gflops", json_real(sgemm_gflops));
    json_object_set_new(jo, "grad_pass_seconds", json_real(best_pass));
    json_object_set_new(jo, "grad_pass_seconds_per_layer", json_real(per_layer));
    json_object_set_new(jo, "grad_pass_vocab_seconds", json_real(t_vocab));
    json_object_set_new(jo, "grad_pass_gflop_per_layer", json_real(fl_layer * 1e-9));
    json_object_set_new(jo, "grad_pass_ratio", json_real(fl_layer / per_layer * 1e-9 / sgemm_gflops));
    json_object_set_new(jo, "cayley_seconds_dim", json_real(t_cd));
    json_object_set_new(jo, "cayley_seconds_head_dim", json_real(t_ch));
    /* ~13 products of n³ per Cayley step + restore: 9 in the step (A, U·A, Uᵀ·T, 5 fixed-point, W·X),
     * 4 in two Newton–Schulz iterations */
    json_object_set_new(jo, "cayley_ratio_dim", json_real(13 * 2.0 * pow(d, 3) / t_cd * 1e-9 / sgemm_gflops));
    json_object_set_new(jo, "junction_fit_seconds", json_real(t_fit));
    json_object_set_new(jo, "target_layers", json_integer(target));
    json_object_set_new(jo, "step_seconds_extrapolated", json_real(step));
    json_object_set_new(jo, "engine_mib", json_real(g.peak_bytes / 1048576.0));
    json_object_set_new(jo, "rotation_params_mib_target",
                        json_real(((2.0 * target + 1) * d * d + (double)target * hd * hd) * 8 / 1048576.0));
    json_object_set_new(jo, "peak_rss_mb", json_real(rb_peak_rss_mb()));
    rb_cli_print_json(jo, JSON_COMPACT | JSON_REAL_PRECISION(6));
out:
    rb_rotgrad_free(&g);
    rb_rotset_free(&rs);
out0:
    free(ids), free(B), free(H);
    rb_synth_free(&sy);
    return rc;
}

/* rotbench bench forward|backward: one decoder layer at Llama shapes (forward; forward with its tape
 * and the backward) vs plain sgemm in the same process; respinquant-step: cmd_bench_train.c. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_log.h"
#include "model/rb_backward.h"
#include "model/rb_forward.h"
#include "model/rb_grad.h"
#include "quant/rb_qpreset.h"
#include "rotate/rb_fuse.h"

/* Deterministic fill, roughly N(0, std²) via a sum of uniforms: benchmark data, not statistics. */
static void fill(float *x, size_t n, float std, uint64_t *s) {
    for (size_t i = 0; i < n; i++) {
        float acc = 0;
        for (int k = 0; k < 4; k++) {
            *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
            acc += (float)((*s >> 40) * (1.0 / 16777216.0)) - 0.5f;
        }
        x[i] = acc * std * 1.7320508f;
    }
}

/* FLOPs the layer forward performs (projections + causal block attention as computed); *att_out
 * (may be NULL) gets the attention part. */
static double layer_flops(const rb_llama_config *c, int T, double *att_out) {
    double d = c->dim, qd = (double)c->n_heads * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim;
    double proj = 2.0 * T * (d * qd + 2 * d * kvd + qd * d + 3 * d * c->hidden_dim);
    double att = 0;
    const int QB = 256; /* RB_ATT_QBLOCK in rb_forward.c */
    for (int i0 = 0; i0 < T; i0 += QB) {
        int bq = T - i0 < QB ? T - i0 : QB;
        att += 2.0 * 2.0 * bq * (double)(i0 + bq) * c->head_dim;
    }
    if (att_out) *att_out = att * c->n_heads;
    return proj + att * c->n_heads;
}

static int bench_layer(rb_args *a, int backward, rb_error *err) {
    long dim, hidden, heads, kvh, T, reps;
    if (rb_args_int(a, "dim", 4096, 8, 65536, &dim, err) || rb_args_int(a, "hidden", 11008, 8, 262144, &hidden, err) ||
        rb_args_int(a, "heads", 32, 1, 1024, &heads, err) || rb_args_int(a, "kv-heads", 0, 0, 1024, &kvh, err) ||
        rb_args_int(a, "T", 2048, 1, 1 << 16, &T, err) || rb_args_int(a, "reps", 3, 1, 1000, &reps, err))
        return err->code;
    const char *qname = rb_args_str(a, "quant", err);
    int online = rb_args_flag(a, "online");
    if (err->code || rb_args_finish(a, 0, err)) return err->code;
    rb_quant_cfg qcfg;
    rb_hooks hk;
    rb_hooks_init(&hk);
    rb_had r3 = {0}, r4 = {0};
    if (online) { /* QuaRot's online transforms: R3 on Q/K per head, R4 on the down_proj input */
        if (rb_had_init(&r3, dim / heads, NULL, err) || rb_had_init(&r4, hidden, NULL, err)) {
            rb_had_free(&r3);
            return err->code;
        }
        rb_hooks_add_bwd(&hk, RB_SITE_Q, rb_hook_had_heads, rb_hook_had_heads_bwd, 0, &r3);
        rb_hooks_add_bwd(&hk, RB_SITE_K, rb_hook_had_heads, rb_hook_had_heads_bwd, 0, &r3);
        rb_hooks_add_bwd(&hk, RB_SITE_DOWN_IN, rb_hook_had_rows, rb_hook_had_rows_bwd, 0, &r4);
    }
    if (qname) { /* with their straight-through backwards (the training setting) */
        if (rb_quant_preset(qname, &qcfg, err)) return err->code;
        rb_quant_add_train_hooks(&hk, &qcfg, 0);
    }
    if (kvh == 0) kvh = heads;
    if (dim % heads || heads % kvh)
        return rb_error_set(err, RB_EINVAL, "bench: dim must divide by heads and heads by kv-heads");
    rb_llama_config c = {.dim = (int)dim, .hidden_dim = (int)hidden, .n_layers = 1, .n_heads = (int)heads,
                         .n_kv_heads = (int)kvh, .head_dim = (int)(dim / heads), .vocab_size = 32000,
                         .rms_eps = 1e-5, .rope_theta = 10000.0};
    rb_layer_weights w, dw = {0};
    rb_forward f;
    rb_backward bw = {0};
    rb_tape tape = {0};
    int rc = rb_layer_weights_init(&w, &c, err);
    if (rc) return rc;
    if ((rc = rb_forward_init(&f, &c, (int)T, (int)T, err))) {
        rb_layer_weights_free(&w);
        return rc;
    }
    float *h = NULL, *dh = NULL;
    if (backward && ((rc = rb_tape_init(&tape, &c, (int)T, err)) || (rc = rb_backward_init(&bw, &c, (int)T, (int)T, err)) ||
                     (rc = rb_layer_weights_init(&dw, &c, err))))
        goto done;
    if (backward && !(dh = rb_alloc((size_t)T * dim * sizeof(float)))) {
        rc = rb_error_set(err, RB_ENOMEM, "bench: out of memory");
        goto done;
    }
    size_t qd = (size_t)c.n_heads * c.head_dim, kvd = (size_t)c.n_kv_heads * c.head_dim;
    uint64_t s = 42;
    h = rb_alloc((size_t)T * dim * sizeof(float));
    if (!h) {
        rc = rb_error_set(err, RB_ENOMEM, "bench: out of memory");
        goto done;
    }
    for (long i = 0; i < dim; i++) w.rms_att[i] = w.rms_ffn[i] = 1.0f;
    fill(w.wq, qd * dim, 1.0f / sqrtf((float)dim), &s);
    fill(w.wk, kvd * dim, 1.0f / sqrtf((float)dim), &s);
    fill(w.wv, kvd * dim, 1.0f / sqrtf((float)dim), &s);
    fill(w.wo, qd * dim, 1.0f / sqrtf((float)qd), &s);
    fill(w.w_gate, (size_t)hidden * dim, 1.0f / sqrtf((float)dim), &s);
    fill(w.w_up, (size_t)hidden * dim, 1.0f / sqrtf((float)dim), &s);
    fill(w.w_down, (size_t)hidden * dim, 1.0f / sqrtf((float)hidden), &s);
    fill(h, (size_t)T * dim, 1.0f, &s);

    /* reference: sgemm at the layer's largest shape, [T×d]·[d×hidden], timed in the same loop as
     * the layer (FP, then the variant) so that all see the same machine state; best of reps each */
    float *A = f.xn, *C = f.gate;
    if ((rc = rb_forward_layer(&f, &w, 0, h, 1, (int)T, 0, NULL, err))) goto done; /* warm-up */
    double best_gemm = 1e30, best_layer = 1e30, best_q = 1e30, best_tf = 1e30, best_bw = 1e30;
    int variant = qname || online;
    for (long r = 0; r < reps; r++) {
        double t0 = rb_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)hidden, (int)dim, 1.0f, A, (int)dim,
                    w.w_gate, (int)dim, 0.0f, C, (int)hidden);
        double dt = rb_now() - t0;
        best_gemm = dt < best_gemm ? dt : best_gemm;
        for (int pass = 0; pass < (variant ? 2 : 1); pass++) {
            fill(h, (size_t)T * dim, 1.0f, &s);
            t0 = rb_now();
            if ((rc = rb_forward_layer(&f, &w, 0, h, 1, (int)T, 0, pass ? &hk : NULL, err))) goto done;
            dt = rb_now() - t0;
            if (pass) best_q = dt < best_q ? dt : best_q;
            else best_layer = dt < best_layer ? dt : best_layer;
        }
        if (backward) { /* forward with the tape, then the backward (with every weight gradient) */
            const rb_hooks *bh = variant ? &hk : NULL;
            fill(h, (size_t)T * dim, 1.0f, &s);
            fill(dh, (size_t)T * dim, 1.0f, &s);
            rb_layer_weights_zero(&dw, &c);
            f.tape = &tape;
            t0 = rb_now();
            rc = rb_forward_layer(&f, &w, 0, h, 1, (int)T, 0, bh, err);
            double tf = rb_now() - t0;
            f.tape = NULL;
            if (rc) goto done;
            t0 = rb_now();
            if ((rc = rb_backward_layer(&bw, &f, &tape, &w, bh, dh, &dw, err))) goto done;
            dt = rb_now() - t0;
            best_tf = tf < best_tf ? tf : best_tf;
            best_bw = dt < best_bw ? dt : best_bw;
        }
    }
    double gemm_gflops = 2.0 * T * hidden * dim / best_gemm * 1e-9;
    double att_fl;
    double fl = layer_flops(&c, (int)T, &att_fl);
    double layer_gflops = fl / best_layer * 1e-9;
    json_t *j = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:s, s:i, s:f, s:f, s:f, s:f, s:f}", "bench",
                          backward ? "backward" : "forward",
                          "dim", (int)dim, "hidden", (int)hidden, "heads", (int)heads, "kv_heads", (int)kvh, "T",
                          (int)T, "blas_core", rb_blas_corename(), "blas_threads", rb_blas_threads(), "layer_seconds",
                          best_layer, "layer_gflop", fl * 1e-9, "layer_gflops", layer_gflops, "sgemm_gflops",
                          gemm_gflops, "ratio", layer_gflops / gemm_gflops);
    if (variant) {
        json_object_set_new(j, "variant", json_sprintf("%s%s%s", qname ? qcfg.name : "", qname && online ? "+" : "",
                                                        online ? "online R3/R4" : ""));
        json_object_set_new(j, "variant_layer_seconds", json_real(best_q));
        json_object_set_new(j, "variant_over_fp", json_real(best_q / best_layer));
        if (qname && !online) json_object_set_new(j, "quant_over_fp", json_real(best_q / best_layer));
    }
    if (backward) {
        /* backward FLOPs: two products per projection (input and weight gradient); attention's five
         * per query block (S recomputed, dV, dP, dQ, dK) against the forward's two */
        double bfl = 2.0 * (fl - att_fl) + 2.5 * att_fl, bgf = bfl / best_bw * 1e-9;
        json_object_set_new(j, "variant_hooks", json_string(variant ? "with the variant's hooks (STE backward)" : "none"));
        json_object_set_new(j, "forward_tape_seconds", json_real(best_tf));
        json_object_set_new(j, "backward_seconds", json_real(best_bw));
        /* against the faster forward (with or without the tape): the conservative ratio on a noisy machine */
        json_object_set_new(j, "backward_over_forward", json_real(best_bw / (best_tf < best_layer ? best_tf : best_layer)));
        json_object_set_new(j, "backward_gflop", json_real(bfl * 1e-9));
        json_object_set_new(j, "backward_gflops", json_real(bgf));
        json_object_set_new(j, "backward_ratio", json_real(bgf / gemm_gflops));
        json_object_set_new(j, "tape_mib", json_real(rb_tape_bytes(&c, (int)T) / 1048576.0));
        json_object_set_new(j, "backward_scratch_mib", json_real(rb_backward_bytes(&c, (int)T, (int)T) / 1048576.0));
        json_object_set_new(j, "peak_rss_mb", json_real(rb_peak_rss_mb()));
    }
    rb_cli_print_json(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
done:
    rb_had_free(&r3);
    rb_had_free(&r4);
    rb_free(h);
    rb_free(dh);
    if (backward) {
        rb_tape_free(&tape);
        rb_backward_free(&bw);
        if (dw.wq) rb_layer_weights_free(&dw);
    }
    rb_forward_free(&f);
    rb_layer_weights_free(&w);
    return rc;
}

int rb_cmd_bench(int argc, char **argv) {
    rb_error err = {0};
    rb_args a;
    if (rb_args_init(&a, "bench", argc, argv)) return RB_EXIT_FAIL;
    const char *what = rb_args_pos(&a, 0);
    int rc;
    if (what && (!strcmp(what, "forward") || !strcmp(what, "backward")))
        rc = bench_layer(&a, !strcmp(what, "backward"), &err);
    else if (what && !strcmp(what, "respinquant-step"))
        rc = rb_bench_respinquant_step(&a, &err);
    else
        rc = rb_error_set(&err, RB_EINVAL, "bench: usage: rotbench bench forward|backward|respinquant-step [options]");
    rb_args_free(&a);
    return rc ? rb_cli_fail(&err) : RB_EXIT_OK;
}

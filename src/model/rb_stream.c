#include "model/rb_stream.h"

#include <string.h>

#include "core/rb_file.h"
#include "core/rb_signal.h"

int rb_stream_batch_seqs(int T, int n_seq) {
    RB_ASSERT(T > 0 && n_seq > 0);
    int per = RB_STREAM_ROWS / T;
    if (per < 1) per = 1;
    return per < n_seq ? per : n_seq;
}

size_t rb_stream_batch_rows(int T, int n_seq) { return (size_t)rb_stream_batch_seqs(T, n_seq) * (size_t)T; }

int rb_stream_layer(rb_forward *f, const rb_layer_weights *w, int layer, rb_stream *s, const rb_hooks *hk,
                    float *scratch, rb_error *err) {
    int per = rb_stream_batch_seqs(s->T, s->n_seq);
    size_t d = (size_t)f->cfg.dim;
    for (int s0 = 0; s0 < s->n_seq; s0 += per) {
        int ns = s->n_seq - s0 < per ? s->n_seq - s0 : per;
        float *h = s->h + (size_t)s0 * s->T * d;
        if (scratch) {
            memcpy(scratch, h, sizeof(float) * (size_t)ns * s->T * d);
            h = scratch;
        }
        rb_att_layout sub;
        if (s->layout) {
            size_t o = (size_t)s0 * s->T;
            sub = (rb_att_layout){s->layout->pos + o, s->layout->pre_lo + o, s->layout->pre_hi + o, s->layout->self_lo + o};
            f->layout = &sub;
        }
        int rc = rb_forward_layer(f, w, layer, h, ns, s->T, s->seq_base + s0, hk, err);
        f->layout = NULL;
        if (rc < 0) return rc;
    }
    return 0;
}

int rb_llama_hidden(const rb_weights_src *src, const rb_llama_config *c, const int32_t *ids, int n_seq,
                    int T, int seq_base, const rb_hooks *hooks, float *hn, rb_error *err) {
    size_t rows = (size_t)n_seq * T;
    rb_stream s = {hn, n_seq, T, seq_base, NULL};
    rb_forward f;
    rb_layer_weights w;
    int rc = rb_forward_init(&f, c, T, (int)rb_stream_batch_rows(T, n_seq), err);
    if (rc) return rc;
    if ((rc = rb_layer_weights_init(&w, c, err))) {
        rb_forward_free(&f);
        return rc;
    }
    float *norm = rb_alloc((size_t)c->dim * sizeof(float));
    if (!norm) {
        rc = rb_error_set(err, RB_ENOMEM, "forward: out of memory");
        goto done;
    }
    if ((rc = src->embed(src->ctx, ids, rows, hn, err))) goto done;
    for (int l = 0; l < c->n_layers; l++) {
        if ((rc = src->load_layer(src->ctx, l, &w, err))) goto done;
        if ((rc = rb_stream_layer(&f, &w, l, &s, hooks, NULL, err))) goto done;
        if (rb_interrupted()) {
            rc = rb_error_set(err, RB_EINTERRUPTED, "interrupted after layer %d of %d", l + 1, c->n_layers);
            goto done;
        }
    }
    if ((rc = src->load_final_norm(src->ctx, norm, err))) goto done;
    rb_rmsnorm(hn, hn, norm, rows, c->dim, c->rms_eps);
done:
    rb_free(norm);
    rb_layer_weights_free(&w);
    rb_forward_free(&f);
    return rc;
}

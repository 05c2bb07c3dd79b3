/* rb_synth: a synthetic Llama of any shape as a weights source (rb_forward.h), for benchmarks at
 * shapes no checkpoint here has (Llama-2-7B layers): every linear N(0, 1/fan_in) from stream
 * "synth.<tensor>.<layer>" of the seed (activations keep unit scale layer to layer), RMSNorm γ = 1
 * (already "prepared"), embedding rows N(0, 1) from "synth.emb.<id>", lm_head N(0, 1/dim). With
 * `cache` the layers and lm_head are generated once and served from memory (a pass then measures
 * no random-number generation; n_layers + 1 layers' worth of memory), otherwise at every load. */
#ifndef RB_SYNTH_H
#define RB_SYNTH_H

#include "model/rb_forward.h"

typedef struct rb_synth {
    const rb_llama_config *c; /* not owned */
    uint64_t seed;
    rb_layer_weights *w;      /* [n_layers] when cached */
    float *head;              /* [vocab][dim] when cached */
} rb_synth;

/* Errors: RB_ENOMEM (cache) naming the size. */
int rb_synth_init(rb_synth *s, const rb_llama_config *c, uint64_t seed, int cache, rb_error *err);
void rb_synth_free(rb_synth *s);
rb_weights_src rb_synth_src(rb_synth *s);

#endif

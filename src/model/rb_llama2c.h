/* rb_llama2c: karpathy/llama2.c legacy `.bin` checkpoints (run.c's format). */
#ifndef RB_LLAMA2C_H
#define RB_LLAMA2C_H

#include "core/rb_error.h"
#include "rb_model.h"

/* Size of the legacy header: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size (negative: an untied classifier follows the weights), seq_len). */
#define RB_LLAMA2C_HEADER_BYTES 28

/* Opens m->path (a llama2.c legacy .bin) into `m`, which rb_model_open zeroed and filled with
 * path/dir. The file size must be exactly what the header implies. q/k rows are marked for the
 * per-head permutation from interleaved-pair RoPE to HF rotate_half order (applied on load).
 * Errors: RB_ENOTFOUND, RB_EIO, RB_EFORMAT (bad header, truncated or oversized file),
 * RB_EUNSUPPORTED (llama2.c's newer versioned export format). */
int rb_llama2c_open(struct rb_model *m, rb_error *err);

#endif

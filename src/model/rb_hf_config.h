/* rb_hf_config: Hugging Face LlamaConfig (config.json) to and from rb_llama_config. */
#ifndef RB_HF_CONFIG_H
#define RB_HF_CONFIG_H

#include <stddef.h>

#include "core/rb_error.h"
#include "rb_model.h"

/* Parses config.json text (`len` bytes; `path` is only used in messages). Required keys:
 * hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, vocab_size. Defaults
 * (as transformers' LlamaConfig): num_key_value_heads = heads, head_dim = hidden/heads,
 * rms_norm_eps 1e-6, rope_theta 10000, max_position_embeddings 2048, tie_word_embeddings false,
 * bos/eos -1. c->dtype comes from torch_dtype (or dtype), "" when absent. Errors name the file and
 * key: RB_EFORMAT (malformed, wrong type, non-positive, inconsistent), RB_ENOTFOUND (missing
 * required key), RB_EUNSUPPORTED (rope type other than llama3, non-llama model_type, biases,
 * activation other than silu). */
int rb_hf_config_parse(const char *path, const char *text, size_t len, rb_llama_config *c, rb_error *err);

/* Reads and parses `path` (a config.json file). Adds RB_ENOTFOUND/RB_EIO for the file. */
int rb_hf_config_load(const char *path, rb_llama_config *c, rb_error *err);

/* Writes `c` as a transformers-loadable LlamaForCausalLM config.json at `path` (torch_dtype from
 * c->dtype, default float32). Numbers are printed so they parse back to the same doubles. */
int rb_hf_config_write(const char *path, const rb_llama_config *c, rb_error *err);

#endif

/* rb_tokenizer: SentencePiece BPE (tokenizer.model), llama2.c tokenizer.bin, and Llama-3
 * byte-level BPE (tokenizer.json) behind one interface. Encoding is O(n log n) in the text. */
#ifndef RB_TOKENIZER_H
#define RB_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/rb_error.h"

enum { RB_TOK_SPM = 1, RB_TOK_LLAMA2C = 2, RB_TOK_BPE = 3 };

typedef struct rb_tokenizer rb_tokenizer; /* opaque */

/* Loads a tokenizer; the format is chosen from the file: `*.json` → byte-level BPE,
 * `*.model` → SentencePiece protobuf, otherwise llama2.c `.bin`. A directory is searched for
 * tokenizer.json, then tokenizer.model, then tokenizer.bin. Errors name the file and position. */
int rb_tokenizer_load(const char *path, rb_tokenizer **out, rb_error *err);
void rb_tokenizer_free(rb_tokenizer *t);

int rb_tokenizer_kind(const rb_tokenizer *t);
int rb_tokenizer_vocab_size(const rb_tokenizer *t);
int rb_tokenizer_bos(const rb_tokenizer *t); /* -1 if none */
int rb_tokenizer_eos(const rb_tokenizer *t); /* -1 if none */

/* Encodes `len` bytes of UTF-8 text (as HF `encode(text, add_special_tokens=False)`), with
 * BOS prepended when `add_bos`. *ids is a heap array (caller frees with free()) of *n ids.
 * Does not modify t: concurrent calls on one tokenizer are safe. */
int rb_tokenizer_encode(const rb_tokenizer *t, const char *text, size_t len, int add_bos,
                        int32_t **ids, size_t *n, rb_error *err);

/* Piece text of one id as raw bytes (decoded: byte-fallback <0xXX> and byte-level BPE bytes
 * turned back into bytes, U+2581 into space). Writes at most cap bytes, returns the length or a
 * negative code. Control and added tokens come back as their text ("<s>", "<|begin_of_text|>",
 * "\n<s>\n" in llama2.c files); stripping the space after BOS is the caller's business.
 * RB_EINVAL for an unknown id or when the piece does not fit (nothing is written then). */
int rb_tokenizer_decode_piece(const rb_tokenizer *t, int32_t id, char *buf, size_t cap);

/* The longest piece in bytes: a decode_piece buffer this large always suffices. */
size_t rb_tokenizer_max_piece_bytes(const rb_tokenizer *t);

/* The piece text of id exactly as the file stores it (U+2581, byte-level chars, "<0x0A>"),
 * NUL-terminated, owned by t; *len (may be NULL) gets its length. NULL for an unknown id. */
const char *rb_tokenizer_piece(const rb_tokenizer *t, int32_t id, size_t *len);

/* ---- vocabulary as stored (what a GGUF export writes as tokenizer.ggml.*) ---- */

/* Score of id (SentencePiece/llama2.c merge priority; 0 for byte-level BPE and unknown ids). */
float rb_tokenizer_score(const rb_tokenizer *t, int32_t id);
/* Piece type of id, SentencePiece's numbering (= llama.cpp's token types): 1 normal, 2 unknown,
 * 3 control, 4 user-defined, 5 unused, 6 byte; 0 for an id without a piece (a hole in a sparse
 * tokenizer.json, or out of range). Byte-level BPE: special added tokens are 3, other added tokens 4. */
int rb_tokenizer_piece_type(const rb_tokenizer *t, int32_t id);
int rb_tokenizer_unk(const rb_tokenizer *t); /* -1 if none */

/* Byte-level BPE merges in rank order (first = applied first) as id pairs: *pairs is a heap array
 * (caller frees with free()) of 2 * *n ids, pair i = (left, right), whose pieces joined by one space
 * are the tokenizer.json merge strings (a pair listed twice keeps its last rank, as HF does). Other
 * tokenizer kinds have no merge list: *pairs = NULL, *n = 0. Errors: RB_ENOMEM. */
int rb_tokenizer_bpe_merges(const rb_tokenizer *t, int32_t **pairs, size_t *n, rb_error *err);

#endif

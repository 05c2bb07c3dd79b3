/* Shared by the three tokenizer targets: load, encode a fixed string, decode every piece. */
#ifndef FUZZ_TOK_H
#define FUZZ_TOK_H

#include "fuzz_util.h"
#include "text/rb_tokenizer.h"

static void fz_tok_exercise(const char *path) {
    static const char text[] = "Once upon a time, a  cat\tsaw 123 \xe2\x96\x81<s> \xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80\n\n!";
    rb_tokenizer *t = NULL;
    rb_error err;
    if (fz_note("rb_tokenizer_load", rb_tokenizer_load(path, &t, &err), &err) != 0) return;
    int V = rb_tokenizer_vocab_size(t);
    (void)rb_tokenizer_bos(t);
    (void)rb_tokenizer_eos(t);
    (void)rb_tokenizer_unk(t);
    for (int bos = 0; bos < 2; bos++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (rb_tokenizer_encode(t, text, sizeof text - 1, bos, &ids, &n, &err) == 0) {
            for (size_t i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] >= V) abort(); /* ids are in the vocabulary */
            free(ids);
        }
    }
    int32_t *e_ids = NULL;
    size_t e_n = 0;
    if (rb_tokenizer_encode(t, "", 0, 1, &e_ids, &e_n, &err) == 0) free(e_ids);
    size_t cap = rb_tokenizer_max_piece_bytes(t);
    char *buf = malloc(cap + 1);
    if (buf) {
        for (int32_t id = 0; id < V && id < 70000; id++) {
            int r = rb_tokenizer_decode_piece(t, id, buf, cap);
            if (r > (int)cap) abort();
            (void)rb_tokenizer_piece(t, id, NULL);
            (void)rb_tokenizer_score(t, id);
            (void)rb_tokenizer_piece_type(t, id);
        }
        free(buf);
    }
    int32_t *pairs = NULL;
    size_t np = 0;
    if (rb_tokenizer_bpe_merges(t, &pairs, &np, &err) == 0) free(pairs);
    rb_tokenizer_free(t);
}

#endif

/* rb_tokenizer: format dispatch, accessors and piece decoding over the three back ends. */
#include "rb_tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "core/rb_file.h"
#include "rb_bpe.h"
#include "rb_tok_internal.h"

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

void rb_tokenizer_free(rb_tokenizer *t) {
    if (!t) return;
    rb_spm_free(t->spm);
    rb_bpe_free(t->bpe);
    rb_strmap_free(&t->vocab);
    free(t->arena);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->pair_bits);
    free(t->path);
    free(t);
}

static int load_file(const char *path, rb_tokenizer **out, rb_error *err) {
    rb_mapped m;
    int rc = rb_mapped_open(&m, path, err);
    if (rc) return rc;
    rb_tokenizer *t = calloc(1, sizeof *t);
    if (!t || !(t->path = rb_strdup(path))) {
        free(t);
        rb_mapped_close(&m);
        return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    }
    t->bos = t->eos = t->unk = -1;
    if (ends_with(path, ".json")) {
        t->kind = RB_TOK_BPE;
        rc = rb_bpe_load(t, m.data ? (const char *)m.data : "", m.size, err);
    } else if (ends_with(path, ".model")) {
        t->kind = RB_TOK_SPM;
        rc = rb_spm_load(t, m.data, m.size, err);
    } else {
        t->kind = RB_TOK_LLAMA2C;
        rc = rb_llama2c_load(t, m.data, m.size, err);
    }
    rb_mapped_close(&m);
    if (rc) {
        rb_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int rb_tokenizer_load(const char *path, rb_tokenizer **out, rb_error *err) {
    RB_ASSERT(path && out);
    *out = NULL;
    if (!rb_path_is_dir(path)) return load_file(path, out, err);
    static const char *const names[] = {"tokenizer.json", "tokenizer.model", "tokenizer.bin"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *p = rb_path_join(path, names[i]);
        if (!p) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
        if (rb_path_exists(p)) {
            int rc = load_file(p, out, err);
            free(p);
            return rc;
        }
        free(p);
    }
    return rb_error_set(err, RB_ENOTFOUND, "%s: no tokenizer.json, tokenizer.model or tokenizer.bin in "
                        "this directory", path);
}

int rb_tokenizer_kind(const rb_tokenizer *t) { return t->kind; }
int rb_tokenizer_vocab_size(const rb_tokenizer *t) { return t->n_vocab; }
int rb_tokenizer_bos(const rb_tokenizer *t) { return t->bos; }
int rb_tokenizer_eos(const rb_tokenizer *t) { return t->eos; }
size_t rb_tokenizer_max_piece_bytes(const rb_tokenizer *t) { return t->max_piece; }

const char *rb_tokenizer_piece(const rb_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab || t->type[id] == RB_PIECE_NONE) return NULL;
    if (len) *len = t->len[id];
    return rb_tok_piece(t, id);
}

int rb_tokenizer_encode(const rb_tokenizer *t, const char *text, size_t len, int add_bos,
                        int32_t **ids, size_t *n, rb_error *err) {
    RB_ASSERT(t && ids && n && (text || len == 0));
    *ids = NULL;
    *n = 0;
    rb_ids out = {0};
    int rc = 0;
    if (add_bos) {
        if (t->bos < 0) return rb_error_set(err, RB_EINVAL, "%s: BOS requested but the tokenizer has none", t->path);
        if (rb_ids_push(&out, t->bos)) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", t->path);
    }
    if (len) {
        switch (t->kind) {
        case RB_TOK_SPM: rc = rb_spm_encode(t, text, len, &out, err); break;
        case RB_TOK_LLAMA2C: rc = rb_llama2c_encode(t, text, len, &out, err); break;
        default: rc = rb_bpe_encode(t, text, len, &out, err); break;
        }
    }
    if (rc == 0 && !out.v && !(out.v = malloc(sizeof *out.v)))
        rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", t->path);
    if (rc) {
        free(out.v);
        return rc;
    }
    *ids = out.v;
    *n = out.n;
    return 0;
}

/* Decoded bytes of piece id into buf (room for t->len[id] bytes: decoding never grows). */
static size_t decode_into(const rb_tokenizer *t, int32_t id, char *buf) {
    const char *s = rb_tok_piece(t, id);
    size_t len = t->len[id];
    int byte = t->type[id] == RB_PIECE_BYTE || (t->kind == RB_TOK_BPE && t->type[id] == RB_PIECE_NORMAL)
                   ? rb_tok_parse_byte_piece(s, len)
                   : -1;
    if (byte >= 0 && (t->kind != RB_TOK_BPE || t->byte_id[byte] == id)) {
        buf[0] = (char)byte;
        return 1;
    }
    if (t->kind == RB_TOK_BPE)
        return t->type[id] == RB_PIECE_NORMAL ? rb_bpe_unmap_bytes(s, len, buf) : (memcpy(buf, s, len), len);
    if (t->kind == RB_TOK_LLAMA2C) { /* spaces are already literal in .bin pieces */
        memcpy(buf, s, len);
        return len;
    }
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (i + 3 <= len && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
            buf[o++] = ' ';
            i += 3;
        } else {
            buf[o++] = s[i++];
        }
    }
    return o;
}

int rb_tokenizer_decode_piece(const rb_tokenizer *t, int32_t id, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab || t->type[id] == RB_PIECE_NONE) return RB_EINVAL;
    size_t len = t->len[id];
    if (len > (size_t)INT32_MAX) return RB_EINVAL;
    if (cap >= len) return (int)decode_into(t, id, buf);
    char small[64], *tmp = len <= sizeof small ? small : malloc(len);
    if (!tmp) return RB_ENOMEM;
    size_t n = decode_into(t, id, tmp);
    int rc = n <= cap ? (int)n : RB_EINVAL;
    if (n <= cap) memcpy(buf, tmp, n);
    if (tmp != small) free(tmp);
    return rc;
}

float rb_tokenizer_score(const rb_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->score[id] : 0.0f;
}

int rb_tokenizer_piece_type(const rb_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->type[id] : RB_PIECE_NONE;
}

int rb_tokenizer_unk(const rb_tokenizer *t) { return t->unk; }

static int cmp_rank(const void *a, const void *b) {
    int32_t x = ((const int32_t *)a)[2], y = ((const int32_t *)b)[2];
    return (x > y) - (x < y);
}

int rb_tokenizer_bpe_merges(const rb_tokenizer *t, int32_t **pairs, size_t *n, rb_error *err) {
    *pairs = NULL;
    *n = 0;
    const struct rb_bpe *b = t->kind == RB_TOK_BPE ? t->bpe : NULL;
    if (!b || !b->pairs) return 0;
    size_t count = 0;
    for (size_t i = 0; i < b->pair_cap; i++) count += b->pairs[i].key != UINT64_MAX;
    if (!count) return 0;
    /* The table is a hash: gather (left, right, rank) triples and sort them by rank. */
    int32_t *tri = malloc(count * 3 * sizeof *tri);
    if (!tri) return rb_error_set(err, RB_ENOMEM, "%s: out of memory listing %zu merges", t->path, count);
    size_t k = 0;
    for (size_t i = 0; i < b->pair_cap; i++) {
        const bpe_pair_slot *s = &b->pairs[i];
        if (s->key == UINT64_MAX) continue;
        tri[3 * k] = (int32_t)(uint32_t)(s->key >> 32);
        tri[3 * k + 1] = (int32_t)(uint32_t)s->key;
        tri[3 * k + 2] = s->rank;
        k++;
    }
    qsort(tri, count, 3 * sizeof *tri, cmp_rank);
    for (size_t i = 0; i < count; i++) { /* compact in place to (left, right) pairs */
        tri[2 * i] = tri[3 * i];
        tri[2 * i + 1] = tri[3 * i + 1];
    }
    *pairs = tri;
    *n = count;
    return 0;
}

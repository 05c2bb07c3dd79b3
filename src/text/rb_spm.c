/* SentencePiece BPE from tokenizer.model: a hand-written protobuf reader for ModelProto, the
 * normalizer (identity or precompiled charsmap, whitespace handling) and encoding as
 * sentencepiece's bpe_model.cc does it. */
#include <stdlib.h>
#include <string.h>

#include "rb_tok_internal.h"

enum { MODEL_UNIGRAM = 1, MODEL_BPE = 2 };

struct rb_spm {
    int byte_fallback, add_dummy_prefix, remove_extra_ws, escape_ws, has_unused;
    /* precompiled_charsmap: a Darts-clone double array and NUL-separated replacements */
    uint32_t *units;
    size_t n_units;
    char *repl;
    size_t repl_len;
    /* USER_DEFINED piece ids grouped by first byte: user[ustart[b] .. ustart[b + 1]) */
    int32_t *user;
    uint32_t ustart[257];
};

void rb_spm_free(struct rb_spm *s) {
    if (!s) return;
    free(s->units);
    free(s->repl);
    free(s->user);
    free(s);
}

/* ---- protobuf wire format ---- */

typedef struct pb {
    const uint8_t *p, *end, *base;
} pb;

typedef struct pb_field {
    uint32_t num;
    int wire;
    uint64_t v;          /* varint value, or fixed32/fixed64 bits */
    const uint8_t *data; /* wire type 2 */
    size_t len;
} pb_field;

/* Reads one field; 1 on success, 0 at the end of the message, negative with err filled. */
static int pb_next(pb *r, pb_field *f, const char *path, const char *ctx, rb_error *err) {
    if (r->p >= r->end) return 0;
    size_t at = (size_t)(r->p - r->base);
    uint64_t key = 0;
    for (int shift = 0;; shift += 7) {
        if (r->p >= r->end || shift > 63)
            return rb_error_set(err, RB_EFORMAT, "%s: offset %zu: %s: truncated or overlong varint",
                                path, at, ctx);
        uint8_t b = *r->p++;
        key |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) break;
    }
    f->num = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    if (f->num == 0 || key >> 32)
        return rb_error_set(err, RB_EFORMAT, "%s: offset %zu: %s: invalid field number", path, at, ctx);
    size_t left = (size_t)(r->end - r->p);
    switch (f->wire) {
    case 0:
    case 2:
        f->v = 0;
        for (int shift = 0;; shift += 7) {
            if (r->p >= r->end || shift > 63)
                return rb_error_set(err, RB_EFORMAT,
                                    "%s: offset %zu: %s: field %u: truncated or overlong varint", path,
                                    at, ctx, f->num);
            uint8_t b = *r->p++;
            f->v |= (uint64_t)(b & 0x7F) << shift;
            if (!(b & 0x80)) break;
        }
        if (f->wire == 2) {
            if (f->v > (uint64_t)(r->end - r->p))
                return rb_error_set(err, RB_EFORMAT,
                                    "%s: offset %zu: %s: field %u: length %llu runs past the end "
                                    "(%zu bytes left)",
                                    path, at, ctx, f->num, (unsigned long long)f->v,
                                    (size_t)(r->end - r->p));
            f->data = r->p;
            f->len = (size_t)f->v;
            r->p += f->len;
        }
        return 1;
    case 1:
    case 5: {
        size_t n = f->wire == 1 ? 8 : 4;
        if (left < n)
            return rb_error_set(err, RB_EFORMAT, "%s: offset %zu: %s: field %u: truncated fixed%zu",
                                path, at, ctx, f->num, n * 8);
        f->v = 0;
        for (size_t i = 0; i < n; i++) f->v |= (uint64_t)r->p[i] << (8 * i);
        r->p += n;
        return 1;
    }
    default:
        return rb_error_set(err, RB_EFORMAT, "%s: offset %zu: %s: field %u: unsupported wire type %d",
                            path, at, ctx, f->num, f->wire);
    }
}

static int pb_expect(const pb_field *f, int wire, const pb *r, const char *path, const char *ctx,
                     rb_error *err) {
    if (f->wire == wire) return 0;
    return rb_error_set(err, RB_EFORMAT, "%s: offset %zu: %s: field %u has wire type %d, expected %d",
                        path, (size_t)(r->p - r->base), ctx, f->num, f->wire, wire);
}

/* ---- ModelProto ---- */

typedef struct raw_piece {
    const uint8_t *s;
    size_t len;
    float score;
    int type;
} raw_piece;

typedef struct spm_spec {
    int have_trainer, model_type, byte_fallback, ws_suffix;
    int64_t bos_id, eos_id;
    const uint8_t *bos_piece, *eos_piece;
    size_t bos_len, eos_len;
    const uint8_t *charsmap;
    size_t charsmap_len;
    int add_dummy_prefix, remove_extra_ws, escape_ws;
} spm_spec;

static int parse_piece(const uint8_t *d, size_t n, const uint8_t *base, raw_piece *out, size_t idx,
                       const char *path, rb_error *err) {
    char ctx[64];
    snprintf(ctx, sizeof ctx, "pieces[%zu]", idx);
    pb r = {d, d + n, base};
    pb_field f = {0};
    int rc;
    out->s = NULL, out->len = 0, out->score = 0.0f, out->type = RB_PIECE_NORMAL;
    while ((rc = pb_next(&r, &f, path, ctx, err)) > 0) {
        if (f.num == 1) {
            if ((rc = pb_expect(&f, 2, &r, path, ctx, err))) return rc;
            out->s = f.data, out->len = f.len;
        } else if (f.num == 2) {
            if ((rc = pb_expect(&f, 5, &r, path, ctx, err))) return rc;
            uint32_t bits = (uint32_t)f.v;
            memcpy(&out->score, &bits, sizeof bits);
        } else if (f.num == 3) {
            if ((rc = pb_expect(&f, 0, &r, path, ctx, err))) return rc;
            if (f.v < RB_PIECE_NORMAL || f.v > RB_PIECE_BYTE)
                return rb_error_set(err, RB_EFORMAT, "%s: offset %zu: %s: unknown piece type %llu",
                                    path, (size_t)(r.p - base), ctx, (unsigned long long)f.v);
            out->type = (int)f.v;
        }
    }
    if (rc < 0) return rc;
    if (!out->len)
        return rb_error_set(err, RB_EFORMAT, "%s: offset %zu: %s: empty piece", path,
                            (size_t)(d - base), ctx);
    return 0;
}

static int parse_trainer(const uint8_t *d, size_t n, const uint8_t *base, spm_spec *sp,
                         const char *path, rb_error *err) {
    pb r = {d, d + n, base};
    pb_field f = {0};
    int rc;
    sp->have_trainer = 1;
    while ((rc = pb_next(&r, &f, path, "trainer_spec", err)) > 0) {
        switch (f.num) {
        case 3: case 24: case 35: case 41: case 42:
            if ((rc = pb_expect(&f, 0, &r, path, "trainer_spec", err))) return rc;
            if (f.num == 3) sp->model_type = (int)(f.v > 100 ? 100 : f.v);
            if (f.num == 24) sp->ws_suffix = f.v != 0;
            if (f.num == 35) sp->byte_fallback = f.v != 0;
            /* int32 fields: negative values arrive sign-extended to 64 bits */
            if (f.num == 41) sp->bos_id = (int32_t)(uint32_t)f.v;
            if (f.num == 42) sp->eos_id = (int32_t)(uint32_t)f.v;
            break;
        case 46: case 47:
            if ((rc = pb_expect(&f, 2, &r, path, "trainer_spec", err))) return rc;
            if (f.num == 46) sp->bos_piece = f.data, sp->bos_len = f.len;
            else sp->eos_piece = f.data, sp->eos_len = f.len;
            break;
        default: break;
        }
    }
    return rc;
}

static int parse_normalizer(const uint8_t *d, size_t n, const uint8_t *base, spm_spec *sp,
                            const char *path, rb_error *err) {
    pb r = {d, d + n, base};
    pb_field f = {0};
    int rc;
    while ((rc = pb_next(&r, &f, path, "normalizer_spec", err)) > 0) {
        if (f.num == 2) {
            if ((rc = pb_expect(&f, 2, &r, path, "normalizer_spec", err))) return rc;
            sp->charsmap = f.data, sp->charsmap_len = f.len;
        } else if (f.num >= 3 && f.num <= 5) {
            if ((rc = pb_expect(&f, 0, &r, path, "normalizer_spec", err))) return rc;
            if (f.num == 3) sp->add_dummy_prefix = f.v != 0;
            if (f.num == 4) sp->remove_extra_ws = f.v != 0;
            if (f.num == 5) sp->escape_ws = f.v != 0;
        }
    }
    return rc;
}

static int load_charsmap(rb_tokenizer *t, const spm_spec *sp, rb_error *err) {
    struct rb_spm *s = t->spm;
    if (!sp->charsmap_len) return 0; /* identity */
    const uint8_t *b = sp->charsmap;
    if (sp->charsmap_len <= 4)
        return rb_error_set(err, RB_EFORMAT, "%s: normalizer_spec.precompiled_charsmap: %zu bytes is "
                            "too short", t->path, sp->charsmap_len);
    uint32_t trie_size = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                         (uint32_t)b[3] << 24;
    if (trie_size > sp->charsmap_len - 4 || trie_size < 4)
        return rb_error_set(err, RB_EFORMAT, "%s: normalizer_spec.precompiled_charsmap: trie size %u "
                            "does not fit the %zu-byte blob", t->path, trie_size, sp->charsmap_len);
    s->n_units = trie_size / 4;
    s->repl_len = sp->charsmap_len - 4 - trie_size;
    s->units = malloc(s->n_units * sizeof *s->units);
    s->repl = malloc(s->repl_len + 1);
    if (!s->units || !s->repl) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", t->path);
    for (size_t i = 0; i < s->n_units; i++) {
        const uint8_t *u = b + 4 + 4 * i;
        s->units[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
    }
    memcpy(s->repl, b + 4 + trie_size, s->repl_len);
    return 0;
}

static int build_user_index(rb_tokenizer *t) {
    struct rb_spm *s = t->spm;
    uint32_t count[256] = {0};
    size_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->type[i] == RB_PIECE_USER) count[(uint8_t)rb_tok_piece(t, i)[0]]++, n++;
    if (!n) return 0;
    if (!(s->user = malloc(n * sizeof *s->user))) return RB_ENOMEM;
    uint32_t pos[256];
    s->ustart[0] = 0;
    for (int b = 0; b < 256; b++) s->ustart[b + 1] = s->ustart[b] + count[b], pos[b] = s->ustart[b];
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->type[i] == RB_PIECE_USER) s->user[pos[(uint8_t)rb_tok_piece(t, i)[0]]++] = i;
    return 0;
}

static int32_t find_control(const rb_tokenizer *t, const uint8_t *piece, size_t len, int64_t id) {
    int32_t k = rb_strmap_get(&t->vocab, (const char *)piece, len);
    if (k >= 0 && t->type[k] == RB_PIECE_CONTROL) return k;
    if (id >= 0 && id < t->n_vocab && t->type[id] == RB_PIECE_CONTROL) return (int32_t)id;
    return -1;
}

static int fill_tokenizer(rb_tokenizer *t, const raw_piece *pcs, size_t n, const spm_spec *sp,
                          rb_error *err) {
    int rc;
    if ((rc = rb_tok_alloc_pieces(t, (int32_t)n)))
        return rb_error_set(err, rc, "%s: out of memory for %zu pieces", t->path, n);
    t->unk = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = (int32_t)i, prev;
        if (rb_tok_set_piece(t, id, (const char *)pcs[i].s, pcs[i].len) ||
            rb_strmap_put(&t->vocab, (const char *)pcs[i].s, pcs[i].len, id, &prev))
            return rb_error_set(err, RB_ENOMEM, "%s: out of memory", t->path);
        if (prev >= 0)
            return rb_error_set(err, RB_EFORMAT, "%s: pieces[%zu]: piece \"%.*s\" already defined "
                                "as id %d", t->path, i, (int)pcs[i].len, pcs[i].s, prev);
        t->score[id] = pcs[i].score;
        t->type[id] = (uint8_t)pcs[i].type;
        if (pcs[i].type == RB_PIECE_UNKNOWN) {
            if (t->unk >= 0)
                return rb_error_set(err, RB_EFORMAT, "%s: pieces[%zu]: second UNKNOWN piece (first "
                                    "is id %d)", t->path, i, t->unk);
            t->unk = id;
        } else if (pcs[i].type == RB_PIECE_BYTE) {
            int byte = rb_tok_parse_byte_piece((const char *)pcs[i].s, pcs[i].len);
            if (byte < 0)
                return rb_error_set(err, RB_EFORMAT, "%s: pieces[%zu]: BYTE piece \"%.*s\" is not "
                                    "<0xXX>", t->path, i, (int)pcs[i].len, pcs[i].s);
            t->byte_id[byte] = id;
        } else if (pcs[i].type == RB_PIECE_UNUSED) {
            t->spm->has_unused = 1;
        }
    }
    if (t->unk < 0) return rb_error_set(err, RB_EFORMAT, "%s: no UNKNOWN piece (unk) defined", t->path);
    if (sp->byte_fallback)
        for (int b = 0; b < 256; b++)
            if (t->byte_id[b] < 0)
                return rb_error_set(err, RB_EFORMAT, "%s: byte_fallback is set but piece <0x%02X> is "
                                    "missing", t->path, b);
    t->bos = find_control(t, sp->bos_piece, sp->bos_len, sp->bos_id);
    t->eos = find_control(t, sp->eos_piece, sp->eos_len, sp->eos_id);
    if (build_user_index(t) || rb_tok_build_pair_bits(t))
        return rb_error_set(err, RB_ENOMEM, "%s: out of memory", t->path);
    return 0;
}

int rb_spm_load(rb_tokenizer *t, const uint8_t *data, size_t size, rb_error *err) {
    const char *path = t->path;
    if (!(t->spm = calloc(1, sizeof *t->spm))) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    spm_spec sp = {0, MODEL_UNIGRAM, 0, 0, 1, 2, (const uint8_t *)"<s>", (const uint8_t *)"</s>", 3, 4,
                   NULL, 0, 1, 1, 1};
    raw_piece *pcs = NULL;
    size_t n = 0, cap = 0;
    /* before data + size: an empty file maps to data == NULL (NULL + 0 is undefined behaviour) */
    if (size == 0) return rb_error_set(err, RB_EFORMAT, "%s: empty file", path);
    pb r = {data, data + size, data};
    pb_field f = {0};
    int rc;
    while ((rc = pb_next(&r, &f, path, "ModelProto", err)) > 0) {
        if (f.num >= 1 && f.num <= 3 && (rc = pb_expect(&f, 2, &r, path, "ModelProto", err))) break;
        if (f.num == 1) {
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 1024;
                raw_piece *np = realloc(pcs, ncap * sizeof *np);
                if (!np) {
                    rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
                    break;
                }
                pcs = np, cap = ncap;
            }
            if ((rc = parse_piece(f.data, f.len, data, &pcs[n], n, path, err))) break;
            if (++n > INT32_MAX) {
                rc = rb_error_set(err, RB_EFORMAT, "%s: too many pieces", path);
                break;
            }
        } else if (f.num == 2) {
            if ((rc = parse_trainer(f.data, f.len, data, &sp, path, err))) break;
        } else if (f.num == 3) {
            if ((rc = parse_normalizer(f.data, f.len, data, &sp, path, err))) break;
        }
    }
    if (rc == 0 && n == 0) rc = rb_error_set(err, RB_EFORMAT, "%s: no pieces (not a SentencePiece model?)", path);
    if (rc == 0 && !sp.have_trainer)
        rc = rb_error_set(err, RB_EFORMAT, "%s: no trainer_spec (truncated model?)", path);
    if (rc == 0 && sp.model_type != MODEL_BPE)
        rc = rb_error_set(err, RB_EUNSUPPORTED, "%s: trainer_spec.model_type %d: only BPE (2) is "
                          "supported", path, sp.model_type);
    if (rc == 0 && sp.ws_suffix)
        rc = rb_error_set(err, RB_EUNSUPPORTED, "%s: trainer_spec.treat_whitespace_as_suffix is not "
                          "supported", path);
    if (rc == 0) rc = fill_tokenizer(t, pcs, n, &sp, err);
    if (rc == 0) rc = load_charsmap(t, &sp, err);
    free(pcs);
    if (rc) return rc;
    t->spm->byte_fallback = sp.byte_fallback;
    t->spm->add_dummy_prefix = sp.add_dummy_prefix;
    t->spm->remove_extra_ws = sp.remove_extra_ws;
    t->spm->escape_ws = sp.escape_ws;
    return 0;
}

/* ---- normalization ---- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static int sbuf_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->n + n) {
            if (ncap > SIZE_MAX / 2) return RB_ENOMEM;
            ncap *= 2;
        }
        char *np = realloc(b->p, ncap);
        if (!np) return RB_ENOMEM;
        b->p = np, b->cap = ncap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

/* Longest USER_DEFINED piece at the start of s, or 0. */
static size_t user_match(const rb_tokenizer *t, const char *s, size_t n) {
    const struct rb_spm *sp = t->spm;
    if (!sp->user) return 0;
    uint8_t c = (uint8_t)s[0];
    size_t best = 0;
    for (uint32_t k = sp->ustart[c]; k < sp->ustart[c + 1]; k++) {
        int32_t id = sp->user[k];
        size_t l = t->len[id];
        if (l > best && l <= n && memcmp(rb_tok_piece(t, id), s, l) == 0) best = l;
    }
    return best;
}

/* Darts-clone commonPrefixSearch keeping the longest hit: the rule sentencepiece applies. */
static size_t charsmap_match(const struct rb_spm *s, const uint8_t *in, size_t n, uint32_t *value) {
    const uint32_t *u = s->units;
    size_t best = 0;
    uint32_t id = (u[0] >> 10) << ((u[0] & (1u << 9)) >> 6);
    for (size_t i = 0; i < n; i++) {
        id ^= in[i];
        if (id >= s->n_units) break;
        uint32_t unit = u[id];
        if ((unit & (0x80000000u | 0xFFu)) != in[i]) break;
        id ^= (unit >> 10) << ((unit & (1u << 9)) >> 6);
        if (id >= s->n_units) break;
        if ((unit >> 8) & 1) best = i + 1, *value = u[id] & 0x7FFFFFFFu;
    }
    return best;
}

/* sentencepiece Normalizer::NormalizePrefix: the normalized text of the next unit of input and
 * how many input bytes it consumed. */
static int norm_prefix(const rb_tokenizer *t, const char *in, size_t n, const char **out,
                       size_t *out_len, size_t *consumed, rb_error *err) {
    const struct rb_spm *s = t->spm;
    size_t u = user_match(t, in, n);
    if (u) {
        *out = in, *out_len = u, *consumed = u;
        return 0;
    }
    if (s->n_units) {
        uint32_t v = 0;
        size_t m = charsmap_match(s, (const uint8_t *)in, n, &v);
        if (m) {
            const char *z = v < s->repl_len ? memchr(s->repl + v, '\0', s->repl_len - v) : NULL;
            if (!z)
                return rb_error_set(err, RB_EFORMAT, "%s: normalizer_spec.precompiled_charsmap: "
                                    "replacement offset %u is out of range", t->path, v);
            *out = s->repl + v, *out_len = (size_t)(z - (s->repl + v)), *consumed = m;
            return 0;
        }
    }
    size_t v = rb_utf8_valid_len((const uint8_t *)in, n);
    if (!v) {
        /* Malformed UTF-8 becomes U+FFFD, one input byte at a time. */
        *out = "\xEF\xBF\xBD", *out_len = 3, *consumed = 1;
    } else {
        *out = in, *out_len = v, *consumed = v;
    }
    return 0;
}

static int normalize(const rb_tokenizer *t, const char *in, size_t n, sbuf *o, rb_error *err) {
    const struct rb_spm *s = t->spm;
    static const char ws_sym[] = "\xE2\x96\x81"; /* U+2581 */
    const char *ws = s->escape_ws ? ws_sym : " ";
    size_t ws_len = s->escape_ws ? 3 : 1;
    size_t i = 0, c, pl;
    const char *p;
    int rc;
    if (s->remove_extra_ws) {
        while (i < n) {
            if ((rc = norm_prefix(t, in + i, n - i, &p, &pl, &c, err))) return rc;
            if (pl != 1 || p[0] != ' ') break;
            i += c;
        }
    }
    if (i == n) return 0;
    if (s->add_dummy_prefix && sbuf_put(o, ws, ws_len)) goto oom;
    int prev_space = s->remove_extra_ws;
    while (i < n) {
        if ((rc = norm_prefix(t, in + i, n - i, &p, &pl, &c, err))) return rc;
        while (prev_space && pl && p[0] == ' ') p++, pl--;
        if (pl) {
            size_t run = 0;
            for (size_t k = 0; k < pl; k++) {
                if (s->escape_ws && p[k] == ' ') {
                    if (sbuf_put(o, p + run, k - run) || sbuf_put(o, ws, ws_len)) goto oom;
                    run = k + 1;
                }
            }
            if (sbuf_put(o, p + run, pl - run)) goto oom;
            prev_space = p[pl - 1] == ' ';
        }
        i += c;
        if (!s->remove_extra_ws) prev_space = 0;
    }
    if (s->remove_extra_ws)
        while (o->n >= ws_len && memcmp(o->p + o->n - ws_len, ws, ws_len) == 0) o->n -= ws_len;
    return 0;
oom:
    return rb_error_set(err, RB_ENOMEM, "%s: out of memory normalizing %zu bytes", t->path, n);
}

/* ---- encoding ---- */

static int emit(const rb_tokenizer *t, const char *w, size_t len, int32_t id, rb_ids *out) {
    if (id < 0) id = t->unk;
    if (id == t->unk && t->spm->byte_fallback) {
        if (rb_ids_reserve(out, len)) return RB_ENOMEM;
        for (size_t i = 0; i < len; i++) {
            int32_t b = t->byte_id[(uint8_t)w[i]];
            out->v[out->n++] = b >= 0 ? b : t->unk;
        }
        return 0;
    }
    /* sentencepiece fuses a run of unknown pieces into one, so decoding can copy it through. */
    if (id == t->unk && out->n > 0 && out->v[out->n - 1] == t->unk) return 0;
    return rb_ids_push(out, id);
}

/* sentencepiece's resegment: an UNUSED piece formed by a merge is replaced by its parts. */
static int resegment(const rb_tokenizer *t, const char *w, size_t len, int32_t id,
                     const int32_t *rev_left, rb_ids *out) {
    typedef struct { const char *s; size_t len; } span;
    span stack_small[32], *stack = stack_small;
    size_t top = 0, cap = 32;
    int rc = 0;
    stack[top++] = (span){w, len};
    while (top && rc == 0) {
        span sp = stack[--top];
        int32_t k = (sp.s == w && sp.len == len) ? id : rb_strmap_get(&t->vocab, sp.s, sp.len);
        size_t l = k >= 0 && t->type[k] == RB_PIECE_UNUSED ? (size_t)rev_left[k] : 0;
        if (!l || l >= sp.len) {
            rc = emit(t, sp.s, sp.len, k, out);
            continue;
        }
        if (top + 2 > cap) {
            span *ns = malloc(2 * cap * sizeof *ns);
            if (!ns) {
                rc = RB_ENOMEM;
                break;
            }
            memcpy(ns, stack, top * sizeof *ns);
            if (stack != stack_small) free(stack);
            stack = ns, cap *= 2;
        }
        stack[top++] = (span){sp.s + l, sp.len - l};
        stack[top++] = (span){sp.s, l};
    }
    if (stack != stack_small) free(stack);
    return rc;
}

int rb_spm_encode(const rb_tokenizer *t, const char *text, size_t len, rb_ids *out, rb_error *err) {
    sbuf nb = {0};
    rb_merge_sym *syms = NULL;
    int32_t *rev_left = NULL;
    int rc = normalize(t, text, len, &nb, err);
    if (rc || nb.n == 0) goto done;
    if (nb.n > INT32_MAX) {
        rc = rb_error_set(err, RB_EINVAL, "%s: text of %zu bytes is too long to encode", t->path, nb.n);
        goto done;
    }
    if (!(syms = malloc(nb.n * sizeof *syms))) goto oom;
    if (t->spm->has_unused && !(rev_left = calloc((size_t)t->n_vocab, sizeof *rev_left))) goto oom;
    size_t n = 0;
    for (size_t i = 0; i < nb.n;) {
        size_t l = user_match(t, nb.p + i, nb.n - i);
        int frozen = l > 0;
        if (!frozen) {
            l = rb_utf8_len_lead((uint8_t)nb.p[i]);
            if (l > nb.n - i) l = nb.n - i;
        }
        syms[n] = (rb_merge_sym){nb.p + i, (uint32_t)l, (int32_t)n - 1, (int32_t)n + 1, 0, -1,
                                 (uint8_t)frozen, 0};
        n++, i += l;
    }
    syms[n - 1].next = -1;
    if ((rc = rb_tok_merge_by_score(t, syms, n, 1, rev_left, err))) goto done;
    for (int32_t i = 0; i >= 0; i = syms[i].next) {
        const rb_merge_sym *s = &syms[i];
        int32_t id = s->id >= 0 ? s->id : rb_strmap_get(&t->vocab, s->s, s->len);
        rc = rev_left ? resegment(t, s->s, s->len, id, rev_left, out) : emit(t, s->s, s->len, id, out);
        if (rc) goto oom;
    }
    goto done;
oom:
    rc = rb_error_set(err, RB_ENOMEM, "%s: out of memory encoding %zu bytes", t->path, len);
done:
    free(nb.p);
    free(syms);
    free(rev_left);
    return rc;
}

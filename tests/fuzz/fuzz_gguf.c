/* Fuzz target: GGUF. The buffer goes through rb_gguf_parse directly (every key and tensor looked up
 * back, arrays read), then as a `.gguf` file through rb_model_open + every rb_model_* loader. */
#include "fuzz_model.h"
#include "model/rb_gguf.h"

static void walk(const rb_gguf *g) {
    volatile double sink = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const rb_gguf_kv *kv = &g->kv[i];
        if (rb_gguf_find(g, kv->key) != kv) abort(); /* keys are unique */
        (void)rb_gguf_type_name(kv->type);
        rb_error err;
        int64_t iv;
        double dv;
        const char *s;
        size_t len;
        (void)rb_gguf_get_int(g, kv->key, &iv, &err);
        (void)rb_gguf_get_float(g, kv->key, &dv, &err);
        if (rb_gguf_get_str(g, kv->key, &s, &len, &err) == 0 && len) sink += (unsigned char)s[len - 1];
        if (kv->type != RB_GGUF_ARRAY || kv->arr_n == 0) continue;
        if (kv->arr_type == RB_GGUF_STRING) {
            if (kv->arr_n > ((uint64_t)1 << 20)) continue;
            const char **ss = malloc(kv->arr_n * sizeof *ss);
            size_t *ll = malloc(kv->arr_n * sizeof *ll);
            if (ss && ll) {
                rb_gguf_array_strs(kv, ss, ll);
                for (uint64_t k = 0; k < kv->arr_n; k++)
                    if (ll[k]) sink += (unsigned char)ss[k][0] + (unsigned char)ss[k][ll[k] - 1];
            }
            free(ss);
            free(ll);
        } else if (rb_gguf_type_size(kv->arr_type)) {
            sink += rb_gguf_array_num(kv, 0) + rb_gguf_array_num(kv, kv->arr_n - 1);
        }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const rb_gguf_tensor *t = &g->tensors[i];
        if (rb_gguf_find_tensor(g, t->name) != t) abort(); /* names are unique */
        (void)rb_ggml_type_name(t->type);
        if (t->nbytes && t->data) sink += t->data[0] + t->data[t->nbytes - 1];
    }
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rb_gguf g;
    rb_error err;
    memset(&g, 0, sizeof g);
    fz_init();
    if (fz_note("rb_gguf_parse", rb_gguf_parse(&g, "in.gguf", data, size, &err), &err) == 0) {
        walk(&g);
        rb_gguf_free(&g);
    }
    fz_model_exercise(fz_write("in.gguf", data, size));
    return 0;
}

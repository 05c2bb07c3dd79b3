/* Fuzz target: zero-shot task files, rb_taskfile_read (format recognized from the content).
 * Input byte 0 picks the task (byte % RB_TASK_COUNT: piqa, arc_easy, arc_challenge, hellaswag,
 * winogrande, lambada, boolq, openbookqa, copa) and the limit ((byte / RB_TASK_COUNT) % 3: all, 1, 3);
 * the rest is the file. For piqa a NUL byte splits it: the jsonl before, the labels file
 * (in-labels.lst, passed explicitly) after; without a NUL no labels file exists. */
#include "fuzz_util.h"
#include "tasks/rb_taskfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int task = data[0] % RB_TASK_COUNT;
    static const long limits[3] = {0, 1, 3};
    long limit = limits[(data[0] / RB_TASK_COUNT) % 3];
    data++, size--;
    const char *labels = NULL;
    char lpath[600];
    size_t body = size;
    if (task == RB_TASK_PIQA) {
        const uint8_t *nul = memchr(data, 0, size);
        if (nul) {
            body = (size_t)(nul - data);
            snprintf(lpath, sizeof lpath, "%s", fz_write("in.txt", nul + 1, size - body - 1));
            labels = lpath;
        }
    }
    const char *path = fz_write("in.jsonl", data, body);
    rb_task_set ts;
    rb_error err;
    if (fz_note("rb_taskfile_read", rb_taskfile_read(path, task, labels, limit, &ts, &err), &err) == 0) {
        volatile size_t sink = 0;
        for (int d = 0; d < ts.n_docs; d++) {
            const rb_task_doc *doc = &ts.docs[d];
            if (doc->n_req < 1 || doc->gold < 0 || doc->gold >= doc->n_req) abort();
            for (int q = 0; q < doc->n_req; q++) sink += strlen(doc->ctx[q]) + strlen(doc->cont[q]) + strlen(doc->choice[q]);
        }
        (void)sink;
        (void)rb_task_format_name(ts.format);
    }
    rb_task_set_free(&ts);
    return 0;
}

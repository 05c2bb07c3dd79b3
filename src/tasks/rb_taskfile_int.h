/* rb_taskfile internals shared by rb_taskfile.c (names, detection, reading loop, string arena, PIQA
 * labels, llama.cpp's HellaSwag text file) and rb_taskfile_lmeval.c (one parser per JSON record layout,
 * building lm-eval's prompts). Not a public API. */
#ifndef RB_TASKFILE_INT_H
#define RB_TASKFILE_INT_H

#include <jansson.h>
#include <stddef.h>

#include "tasks/rb_taskfile.h"

/* Bump allocator owning every string and pointer array of a task set (ts->arena). */
typedef struct rb_tf_arena rb_tf_arena;
rb_tf_arena *rb_tf_arena_new(void);
void rb_tf_arena_free(rb_tf_arena *a);
/* n bytes aligned for any type; NULL on OOM. */
void *rb_tf_arena_alloc(rb_tf_arena *a, size_t n);
/* Copy of s[0..n) plus a NUL; NULL on OOM. */
char *rb_tf_arena_strn(rb_tf_arena *a, const char *s, size_t n);

/* State of one read, passed to the record parsers. */
typedef struct rb_tf_reader {
    const char *path;
    int task;               /* enum rb_task_id */
    int format;             /* enum rb_task_format, from the first record */
    int line;               /* 1-based line of the record being parsed */
    int piqa_inline_labels; /* PIQA: gold from each record's "label" rather than a labels file */
    rb_tf_arena *arena;
    rb_error *err;
} rb_tf_reader;

/* "path:line: out of memory" (RB_ENOMEM). */
int rb_tf_oom(rb_tf_reader *r);
/* "an array", "a string", ...: what a JSON value is (error messages). */
const char *rb_tf_json_type(const json_t *j);
/* Format of a JSON record from its keys (enum rb_task_format); 0 when none fits. */
int rb_tf_detect(const json_t *obj);
/* "the PIQA release layout {goal, sol1, sol2}": what a format's records look like (error messages). */
const char *rb_tf_layout(int format);
/* Fills doc (n_req, ctx, cont, choice, gold) from one record of r->format for r->task; doc->line is set
 * by the caller. PIQA records without an inline label get gold -1 (the labels file fills it). */
int rb_tf_parse_record(rb_tf_reader *r, const json_t *obj, rb_task_doc *doc);
/* Allocates doc's three [n] pointer arrays in the arena and sets n_req (gold and line untouched). */
int rb_tf_doc_alloc(rb_tf_reader *r, rb_task_doc *doc, int n);

#endif

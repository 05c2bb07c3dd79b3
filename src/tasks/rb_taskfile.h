/* rb_taskfile: zero-shot task files read into documents of scoring requests, with the prompts of
 * lm-evaluation-harness (METHODS §8.5; pinned to lm-eval @ 4e7e0d47, prompts unchanged since
 * v0.4.2) or, for llama.cpp's HellaSwag text file, llama.cpp's own.
 *
 * A document is a set of requests (context, continuation) of which one is gold. The file format is
 * recognized from the content (the first record's keys; the HellaSwag text file by its 6-line
 * layout); the task name decides the prompt. Readers: PIQA original release (jsonl + labels file),
 * AI2 ARC jsonl, OpenBookQA jsonl, HellaSwag jsonl, WinoGrande jsonl, LAMBADA jsonl ({text}),
 * SuperGLUE BoolQ and COPA jsonl, the llm-foundry copies ({query, choices, gold},
 * {context_options, continuation, gold}, {context, continuation}) and llama.cpp's
 * hellaswag_val_full.txt. */
#ifndef RB_TASKFILE_H
#define RB_TASKFILE_H

#include "core/rb_error.h"

enum rb_task_id {
    RB_TASK_PIQA = 0,
    RB_TASK_ARC_EASY,
    RB_TASK_ARC_CHALLENGE,
    RB_TASK_HELLASWAG,
    RB_TASK_WINOGRANDE,
    RB_TASK_LAMBADA,   /* lambada_openai */
    RB_TASK_BOOLQ,
    RB_TASK_OPENBOOKQA,
    RB_TASK_COPA,
    RB_TASK_COUNT
};

/* How a document's requests are scored (rb_tasks.h). */
enum rb_task_scoring {
    RB_SCORE_CHOICE = 1, /* lm-eval multiple_choice: one context, one continuation per choice (winogrande:
                            one context per choice, one shared continuation — same request layout) */
    RB_SCORE_GREEDY,     /* lm-eval loglikelihood: one request; acc = every continuation token is the argmax,
                            perplexity = exp(−mean over documents of the summed log-likelihood) (lambada) */
    RB_SCORE_LLAMACPP    /* llama.cpp --hellaswag: each request is tokenized as one string ctx + cont (BOS
                            added), the tokens after the common prefix of all requests are scored, and the
                            choice with the highest mean log-probability per token wins */
};

/* Metrics lm-eval reports for a task (what tables and JSON show). */
enum { RB_METRIC_ACC = 1, RB_METRIC_ACC_NORM = 2, RB_METRIC_PPL = 4 };

/* File formats recognized by content. */
enum rb_task_format {
    RB_TFMT_PIQA = 1,        /* {goal, sol1, sol2} + labels file (or an inline "label") */
    RB_TFMT_ARC,             /* {question: {stem, choices: [{text, label}]}, answerKey} (ARC and OpenBookQA) */
    RB_TFMT_HELLASWAG_JSONL, /* {activity_label, ctx_a, ctx_b, endings[], label} */
    RB_TFMT_WINOGRANDE,      /* {sentence, option1, option2, answer} */
    RB_TFMT_LAMBADA,         /* {text} */
    RB_TFMT_BOOLQ,           /* {passage, question, label: true|false} */
    RB_TFMT_COPA,            /* {premise, choice1, choice2, question: cause|effect, label} */
    RB_TFMT_FOUNDRY_MC,      /* llm-foundry {query, choices[], gold} */
    RB_TFMT_FOUNDRY_SCHEMA,  /* llm-foundry {context_options[], continuation, gold} */
    RB_TFMT_FOUNDRY_LM,      /* llm-foundry {context, continuation} */
    RB_TFMT_HELLASWAG_TXT    /* llama.cpp's 6-lines-per-task text file */
};

typedef struct rb_task_doc {
    int n_req;     /* requests (choices); ≥ 1 */
    char **ctx;    /* [n_req] context of each request, as lm-eval's doc_to_text (per option for winogrande) */
    char **cont;   /* [n_req] continuation, target delimiter included (lm-eval: " " + choice) */
    char **choice; /* [n_req] the choice string without the delimiter (acc_norm divides by its length in
                      Unicode code points, as Python's len()) */
    int gold;      /* index of the correct request; 0 for a single-request (greedy) document */
    int line;      /* 1-based line of the document's first line in its file */
} rb_task_doc;

typedef struct rb_task_set {
    int task;           /* enum rb_task_id */
    int format;         /* enum rb_task_format */
    int scoring;        /* enum rb_task_scoring */
    char *path;         /* the file read (heap) */
    rb_task_doc *docs;  /* [n_docs] */
    int n_docs;
    void *arena;        /* owns every string of docs (implementation detail) */
} rb_task_set;

/* "piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "lambada_openai", "boolq",
 * "openbookqa", "copa" ↔ enum rb_task_id; -1 for an unknown name ("lambada" is accepted as an alias of
 * lambada_openai). */
int rb_task_from_name(const char *name);
const char *rb_task_name(int task);
/* Short column label for tables ("PIQA", "ARC-e", "ARC-c", "HellaSwag", "WinoGrande", "LAMBADA",
 * "BoolQ", "OBQA", "COPA"). */
const char *rb_task_label(int task);
/* Name of a format ("piqa", "arc", "hellaswag-jsonl", "winogrande", "lambada", "boolq", "copa",
 * "foundry-mc", "foundry-schema", "foundry-lm", "hellaswag-txt"). */
const char *rb_task_format_name(int format);
/* RB_METRIC_* bits lm-eval reports for the task under the given scoring (llama.cpp HellaSwag: acc
 * only). */
int rb_task_metrics(int task, int scoring);

/* "choice", "greedy", "llamacpp" (enum rb_task_scoring); NULL otherwise. */
const char *rb_task_scoring_name(int scoring);
/* Name → RB_SCORE_*, or -1. */
int rb_task_scoring_from_name(const char *name);
/* The metric the papers' tables show (QuaRot's rule): RB_METRIC_ACC_NORM where lm-eval reports it, else
 * RB_METRIC_ACC. */
int rb_task_primary_metric(int task, int scoring);

/* The PIQA labels file read when none is given: `X-labels.lst` for `X.jsonl` (else path + "-labels.lst").
 * Heap string; NULL when out of memory. */
char *rb_taskfile_default_labels(const char *path);

/* Reads the documents of task `task` from `path` (format recognized by content; it must suit the
 * task: a foundry multiple-choice file for piqa is refused naming both). labels: the PIQA labels
 * file, NULL = `<stem>-labels.lst` beside a PIQA jsonl `<stem>.jsonl` (ignored by other formats).
 * limit > 0 keeps the first `limit` documents. Errors (RB_EFORMAT, RB_ENOTFOUND, RB_EIO) name the
 * file and line: "piqa/valid.jsonl:12: label 3 out of range 0..1", wrong or missing keys, an empty
 * choice, a choice count that differs from the task's, a labels file with fewer or more lines than
 * the documents. ts is zeroed first; free with rb_task_set_free (safe after an error). */
int rb_taskfile_read(const char *path, int task, const char *labels, long limit, rb_task_set *ts, rb_error *err);
void rb_task_set_free(rb_task_set *ts);

#endif

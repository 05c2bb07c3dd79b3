/* rb_error: error codes, caller-provided error messages, programmer-error asserts. */
#ifndef RB_ERROR_H
#define RB_ERROR_H

#include <stdio.h>
#include <stdlib.h>

/* Library functions return 0 on success or one of these negative codes. */
enum {
    RB_OK = 0,
    RB_EINVAL = -1,       /* bad argument or usage */
    RB_EIO = -2,          /* OS-level I/O failure (open, read, mmap, write) */
    RB_EFORMAT = -3,      /* a file's contents are malformed or inconsistent */
    RB_ENOMEM = -4,       /* allocation failed */
    RB_ENOTFOUND = -5,    /* a required file, tensor or key is absent */
    RB_EUNSUPPORTED = -6, /* valid input this build cannot handle */
    RB_EINTERRUPTED = -7, /* stopped by a signal */
    RB_ENUMERIC = -8,     /* numerical failure: no convergence, a non-finite value, LAPACK info > 0, a
                             matrix that should be positive definite is not (exit 1, not 2: the input
                             was valid, the computation failed) */
};

#define RB_ERROR_MSG_MAX 1024

/* Caller-owned error. `msg` holds one line naming the file and position when there is one. */
typedef struct rb_error {
    int code;
    char msg[RB_ERROR_MSG_MAX];
} rb_error;

/* Short name of an error code ("format error"). Never NULL. */
const char *rb_strerror(int code);

/* Fills `err` (may be NULL) with code and printf-style message; returns `code` so callers can
 * write `return rb_error_set(err, RB_EFORMAT, "%s: ...", path);`. */
int rb_error_set(rb_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the existing message with "prefix: " (context added on the way up). Returns err->code. */
int rb_error_prefix(rb_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void rb_error_clear(rb_error *err);

/* Programmer errors (violated preconditions) abort with file:line. Never for bad input. */
#define RB_ASSERT(cond)                                                                    \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#endif

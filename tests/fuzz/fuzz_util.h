/* Helpers shared by the libFuzzer targets (tests/fuzz/fuzz_*.c): the fuzz input written to a file of a
 * given name in a private temporary directory (for APIs that take a path), and quiet logging. */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rb_log.h"

#include "core/rb_error.h"

static char fz_dir[512];
static int fz_verbose; /* RB_FUZZ_VERBOSE=1: print why each input was refused (to check seeds) */

/* Prints a parser's error when RB_FUZZ_VERBOSE is set; returns rc. */
static inline int fz_note(const char *what, int rc, const rb_error *err) {
    if (fz_verbose) fprintf(stderr, "[fuzz] %s: %s\n", what, rc ? err->msg : "ok");
    return rc;
}

static inline void fz_cleanup(void) {
    if (!fz_dir[0]) return;
    /* Remove the few files the targets write, then the directory. */
    static const char *const names[] = {"in.bin", "in.gguf", "in.model", "in.json", "in.jsonl", "in.txt",
                                        "in.h5",  "in.yaml", "config.json"};
    char p[600];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", fz_dir, names[i]);
        unlink(p);
    }
    rmdir(fz_dir);
}

/* One-time setup: quiet logs and a private directory under $TMPDIR (or /tmp). */
static inline void fz_init(void) {
    if (fz_dir[0]) return;
    fz_verbose = getenv("RB_FUZZ_VERBOSE") != NULL;
    rb_log_set_level(RB_LOG_QUIET);
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    snprintf(fz_dir, sizeof fz_dir, "%s/rbfuzz.XXXXXX", tmp);
    if (!mkdtemp(fz_dir)) {
        perror("mkdtemp");
        abort();
    }
    atexit(fz_cleanup);
}

/* Writes data[0..size) to <fz_dir>/<name> (replacing it) and returns the path (static buffer). */
static inline const char *fz_write(const char *name, const uint8_t *data, size_t size) {
    fz_init();
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", fz_dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror(path);
        abort();
    }
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) {
            perror(path);
            abort();
        }
        off += (size_t)w;
    }
    close(fd);
    return path;
}

#endif

/* rb_file: memory-mapped read-only files, small whole-file reads, path helpers. */
#ifndef RB_FILE_H
#define RB_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "rb_error.h"

/* A read-only mapping of a whole file. Caller-owned; rb_mapped_open/rb_mapped_close.
 * `data` is NULL for an empty file (size 0). `path` is a private copy. */
typedef struct rb_mapped {
    const uint8_t *data;
    size_t size;
    char *path;
} rb_mapped;

/* Maps `path` read-only (MAP_PRIVATE). Errors: RB_ENOTFOUND (missing), RB_EIO (other). */
int rb_mapped_open(rb_mapped *m, const char *path, rb_error *err);
void rb_mapped_close(rb_mapped *m);

/* Reads a whole file into a NUL-terminated heap buffer (*out, caller frees) of *len bytes
 * (excluding the NUL). Refuses files larger than `max_bytes` with RB_EFORMAT. */
int rb_read_file(const char *path, size_t max_bytes, char **out, size_t *len, rb_error *err);

/* Writes `len` bytes to `path` atomically (temp file + rename). */
int rb_write_file(const char *path, const void *data, size_t len, rb_error *err);

/* Durable rename of a finished file: fsync(from), rename(from, to), then fsync of to's directory
 * (best effort: not every filesystem allows it), so a crash leaves either the old state or the whole
 * new file. Errors: RB_EIO ("<from>: completing as <to> failed: <strerror>"). */
int rb_rename_durable(const char *from, const char *to, rb_error *err);

int rb_path_is_dir(const char *path);

/* Memory this process can still take, in bytes: the smallest of /proc/meminfo's MemAvailable and
 * the cgroup v2 limit minus usage (/sys/fs/cgroup/memory.max, memory.current) and the address-space
 * limit (ulimit -v) minus this process's virtual size, or $RB_MEM_AVAILABLE
 * when set (bytes, or with a K/M/G/T suffix: a cap for shared machines, and for tests). SIZE_MAX
 * when none of them can be read. */
size_t rb_mem_available(void);
/* The address-space limit (ulimit -v, RLIMIT_AS) minus this process's virtual size; SIZE_MAX when
 * unlimited or unreadable. */
size_t rb_mem_address_room(void);

/* Before a large allocation: RB_ENOMEM when `bytes` exceed rb_mem_available(), with one line
 * "<what> needs 23.4 GiB but 20.1 GiB are available: <bound>" (bound names the option that bounds
 * the size, e.g. "lower data.calib.samples"), instead of an OOM kill later. 0 otherwise. */
int rb_mem_check(size_t bytes, const char *what, const char *bound, rb_error *err);

/* Memory of this process in MB (2^20 bytes): the peak resident set so far (getrusage), and the
 * current resident set (/proc/self/statm; NaN where unavailable). */
double rb_peak_rss_mb(void);
double rb_rss_mb(void);
int rb_path_exists(const char *path);
/* "dir/name" into a fresh heap string (caller frees); NULL on OOM. */
char *rb_path_join(const char *dir, const char *name);
/* strdup that is C11-clean. */
char *rb_strdup(const char *s);

/* 64-byte-aligned allocation of `n` bytes; large blocks are advised to use huge pages (faulting
 * 4 KiB pages in costs ~0.3 s/GiB here). Returns NULL on failure or overflow. Free with rb_free. */
void *rb_alloc(size_t n);
/* Same, zero-filled, for `count` elements of `size` bytes (overflow-checked). */
void *rb_calloc(size_t count, size_t size);
void rb_free(void *p);

/* a*b into *out; returns 0 on overflow. */
static inline int rb_mul_ok(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

#endif

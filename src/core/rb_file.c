#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "rb_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

char *rb_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

int rb_mapped_open(rb_mapped *m, const char *path, rb_error *err) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rb_error_set(err, errno == ENOENT ? RB_ENOTFOUND : RB_EIO, "%s: cannot open: %s", path,
                            strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return rb_error_set(err, RB_EIO, "%s: not a regular file", path);
    }
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return rb_error_set(err, RB_EIO, "%s: mmap failed: %s", path, strerror(e));
        }
        m->data = p;
    }
    close(fd);
    m->path = rb_strdup(path);
    if (!m->path) {
        rb_mapped_close(m);
        return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    }
    return 0;
}

void rb_mapped_close(rb_mapped *m) {
    if (m->data) munmap((void *)m->data, m->size);
    free(m->path);
    memset(m, 0, sizeof *m);
}

int rb_read_file(const char *path, size_t max_bytes, char **out, size_t *len, rb_error *err) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return rb_error_set(err, errno == ENOENT ? RB_ENOTFOUND : RB_EIO, "%s: cannot open: %s", path,
                            strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return rb_error_set(err, RB_EIO, "%s: not a regular file", path);
    }
    if ((size_t)st.st_size > max_bytes) {
        fclose(f);
        return rb_error_set(err, RB_EFORMAT, "%s: file is %lld bytes, larger than the %zu-byte limit",
                            path, (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    }
    if (n && fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return rb_error_set(err, RB_EIO, "%s: short read", path);
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

int rb_write_file(const char *path, const void *data, size_t len, rb_error *err) {
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp) return rb_error_set(err, RB_ENOMEM, "%s: out of memory", path);
    snprintf(tmp, n, "%s.tmp%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int e = errno;
        free(tmp);
        return rb_error_set(err, RB_EIO, "%s: cannot create: %s", path, strerror(e));
    }
    int ok = (len == 0 || fwrite(data, 1, len, f) == len);
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return rb_error_set(err, RB_EIO, "%s: write failed: %s", path, strerror(e));
    }
    free(tmp);
    return 0;
}

/* fsync of a path (file or directory). */
static int sync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int rb_rename_durable(const char *from, const char *to, rb_error *err) {
    if (sync_path(from) != 0 || rename(from, to) != 0) {
        int e = errno;
        return rb_error_set(err, RB_EIO, "%s: completing as %s failed: %s", from, to, strerror(e));
    }
    char *dir = rb_strdup(to);
    if (dir) {
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        sync_path(slash ? (*dir ? dir : "/") : ".");
        free(dir);
    }
    return 0;
}

int rb_path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int rb_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

char *rb_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

/* Blocks at least this large get MADV_HUGEPAGE (below it the advice buys nothing). */
#define RB_HUGEPAGE_MIN_BYTES (4u << 20)
#define RB_ALIGN 64

void *rb_alloc(size_t n) {
    if (n == 0) n = 1;
    if (n > SIZE_MAX - RB_ALIGN) return NULL;
    size_t align = n >= RB_HUGEPAGE_MIN_BYTES ? (2u << 20) : RB_ALIGN;
    void *p = NULL;
    if (posix_memalign(&p, align, n) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    if (n >= RB_HUGEPAGE_MIN_BYTES) madvise(p, n & ~((size_t)(2u << 20) - 1), MADV_HUGEPAGE);
#endif
    return p;
}

void *rb_calloc(size_t count, size_t size) {
    size_t n;
    if (!rb_mul_ok(count, size, &n)) return NULL;
    void *p = rb_alloc(n);
    if (p) memset(p, 0, n);
    return p;
}

void rb_free(void *p) { free(p); }

/* Parses "123", "512M", "2G" (K/M/G/T, powers of 1024) into *out. 0 ok, -1 otherwise. */
static int parse_bytes(const char *s, size_t *out) {
    char *e;
    errno = 0;
    unsigned long long v = strtoull(s, &e, 10);
    if (e == s || errno) return -1;
    int shift = 0;
    switch (*e) {
    case 'K': case 'k': shift = 10; e++; break;
    case 'M': case 'm': shift = 20; e++; break;
    case 'G': case 'g': shift = 30; e++; break;
    case 'T': case 't': shift = 40; e++; break;
    default: break;
    }
    if (*e || (shift && v > (ULLONG_MAX >> shift))) return -1;
    *out = (size_t)(v << shift);
    return 0;
}

/* First unsigned number of a small text file (a cgroup file, /proc/meminfo line), or -1. */
static int read_u64_file(const char *path, unsigned long long *v) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int ok = fscanf(f, "%llu", v) == 1;
    fclose(f);
    return ok ? 0 : -1;
}

size_t rb_mem_available(void) {
    const char *env = getenv("RB_MEM_AVAILABLE");
    size_t v;
    if (env && *env && !parse_bytes(env, &v)) return v;
    size_t best = SIZE_MAX;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                best = (size_t)kb * 1024;
                break;
            }
        fclose(f);
    }
    unsigned long long max, cur;
    if (!read_u64_file("/sys/fs/cgroup/memory.max", &max) && !read_u64_file("/sys/fs/cgroup/memory.current", &cur)) {
        size_t room = max > cur ? (size_t)(max - cur) : 0;
        if (room < best) best = room;
    }
    size_t room = rb_mem_address_room();
    return room < best ? room : best;
}

size_t rb_mem_address_room(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return SIZE_MAX;
    FILE *sf = fopen("/proc/self/statm", "r");
    long pages = 0, ps = sysconf(_SC_PAGESIZE);
    size_t room = SIZE_MAX;
    if (sf && fscanf(sf, "%ld", &pages) == 1 && pages > 0 && ps > 0) {
        size_t used = (size_t)pages * (size_t)ps, lim = (size_t)rl.rlim_cur;
        room = lim > used ? lim - used : 0;
    }
    if (sf) fclose(sf);
    return room;
}

/* "23.4 GiB" / "512.0 MiB" / "20.0 KiB" into buf. */
static const char *human(size_t b, char *buf, size_t cap) {
    double g = (double)b / (1024.0 * 1024.0 * 1024.0);
    if (g >= 1) snprintf(buf, cap, "%.1f GiB", g);
    else if (b >= 1024 * 1024) snprintf(buf, cap, "%.1f MiB", (double)b / (1024.0 * 1024.0));
    else snprintf(buf, cap, "%.1f KiB", (double)b / 1024.0);
    return buf;
}

int rb_mem_check(size_t bytes, const char *what, const char *bound, rb_error *err) {
    size_t avail = rb_mem_available();
    if (bytes <= avail) return 0;
    char a[32], b[32];
    return rb_error_set(err, RB_ENOMEM, "%s needs %s but %s are available: %s", what, human(bytes, a, sizeof a),
                        human(avail, b, sizeof b), bound);
}

double rb_peak_rss_mb(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return NAN;
    return (double)ru.ru_maxrss / 1024.0;
}

double rb_rss_mb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages_total, pages_res;
    int ok = f && fscanf(f, "%ld %ld", &pages_total, &pages_res) == 2;
    if (f) fclose(f);
    long ps = sysconf(_SC_PAGESIZE);
    return ok && ps > 0 ? (double)pages_res * (double)ps / (1024.0 * 1024.0) : NAN;
}

#include "rb_error.h"

#include <stdarg.h>
#include <string.h>

const char *rb_strerror(int code) {
    switch (code) {
    case RB_OK: return "ok";
    case RB_EINVAL: return "invalid argument";
    case RB_EIO: return "I/O error";
    case RB_EFORMAT: return "format error";
    case RB_ENOMEM: return "out of memory";
    case RB_ENOTFOUND: return "not found";
    case RB_EUNSUPPORTED: return "unsupported";
    case RB_EINTERRUPTED: return "interrupted";
    case RB_ENUMERIC: return "numerical failure";
    default: return "unknown error";
    }
}

int rb_error_set(rb_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int rb_error_prefix(rb_error *err, const char *fmt, ...) {
    if (!err) return RB_EINVAL;
    char buf[2 * RB_ERROR_MSG_MAX + 2];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, RB_ERROR_MSG_MAX, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if (n > RB_ERROR_MSG_MAX - 1) n = RB_ERROR_MSG_MAX - 1;
    buf[n++] = ':';
    buf[n++] = ' ';
    memcpy(buf + n, err->msg, RB_ERROR_MSG_MAX);
    buf[n + RB_ERROR_MSG_MAX - 1] = '\0';
    memcpy(err->msg, buf, RB_ERROR_MSG_MAX - 1);
    err->msg[RB_ERROR_MSG_MAX - 1] = '\0';
    return err->code;
}

void rb_error_clear(rb_error *err) {
    if (err) {
        err->code = RB_OK;
        err->msg[0] = '\0';
    }
}

#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int kc_fail(kc_error *e, int code, const char *fmt, ...) {
    if (!e) return code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

int kc_error_prefix(kc_error *e, const char *fmt, ...) {
    if (!e) return KC_ERUNTIME;
    char head[512], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    snprintf(e->msg, sizeof e->msg, "%s: %s", head, old);
    return e->code ? e->code : KC_ERUNTIME;
}

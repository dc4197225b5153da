/* Errors are values: library code fills a kc_error and returns its code;
 * only cli/ prints and exits. */
#ifndef KC_ERROR_H
#define KC_ERROR_H

enum {
    KC_OK = 0,
    KC_ERUNTIME = 1,     /* a failure while running: I/O, numerics, memory */
    KC_ECONFIG = 2,      /* a usage or config-file error */
    KC_EINTERRUPTED = 3, /* stopped on request (Ctrl-C) after saving a checkpoint */
};

typedef struct kc_error {
    int code;
    char msg[2048];
} kc_error;

/* Sets e->code and the formatted message; returns code. e may be NULL. */
int kc_fail(kc_error *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to an existing message (keeps the code); returns the code. */
int kc_error_prefix(kc_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

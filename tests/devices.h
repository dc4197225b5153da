/* Devices for the Check suites: every backend of the registry
 * (core/backends.c, kc_backends[]) opened once per suite and kept until the
 * process exits, so a backend that is slow to open (OpenCL compiles its
 * program) pays that once. The suites run without forking (kc_test_run), so
 * one static table serves every test of a binary.
 *
 * A backend that cannot be opened here (no OpenCL platform, say) is skipped:
 * its reason goes to stderr once per suite and its device is NULL, which the
 * iteration macros below pass over. The reference backend must open; it is
 * the oracle the others are compared against.
 *
 *   KC_FOR_EACH_DEVICE(d) { ... }        every backend that opens, reference too
 *   KC_FOR_EACH_TESTED_DEVICE(d) { ... } the same without the reference backend
 *   tcase_add_loop_test(tc, t, 0, kc_test_backend_count()) with
 *   KC_LOOP_DEVICE(d) at the start of t: one loop iteration per registry entry
 */
#ifndef KC_TEST_DEVICES_H
#define KC_TEST_DEVICES_H

#include <errno.h>

#include "core/backend.h"
#include "core/ops.h"
#include "tests/testutil.h"

#define KC_TEST_MAX_BACKENDS 16
#define KC_TEST_MAX_THREADS 4 /* devices opened with threads = 1 .. this, besides 0 */

typedef struct kc_test_slot {
    int tried; /* open attempted */
    int ok;    /* and it worked: dev is open */
    kc_device dev;
} kc_test_slot;

/* [backend][threads]: threads 0 is the default device (all cores). */
static inline kc_test_slot (*kc_test_slots(void))[KC_TEST_MAX_THREADS + 1] {
    static kc_test_slot slots[KC_TEST_MAX_BACKENDS][KC_TEST_MAX_THREADS + 1];
    return slots;
}

/* Entries in kc_backends (at most KC_TEST_MAX_BACKENDS are tested). */
static inline int kc_test_backend_count(void) {
    int n = 0;
    while (kc_backends[n] && n < KC_TEST_MAX_BACKENDS)
        n++;
    return n;
}

static inline int kc_test_is_reference(int i) {
    return kc_backends[i] == kc_backend_by_name("reference");
}

static inline void kc_test_close_devices(void) {
    kc_test_slot(*s)[KC_TEST_MAX_THREADS + 1] = kc_test_slots();
    for (int i = 0; i < KC_TEST_MAX_BACKENDS; i++)
        for (int t = 0; t <= KC_TEST_MAX_THREADS; t++)
            if (s[i][t].ok) {
                kc_device_close(&s[i][t].dev);
                s[i][t].ok = 0;
            }
}

/* Whether KERASC_TEST_REQUIRE (backend names separated by commas) names
 * `name`: such a backend failing to open is an error, not a skip. */
static inline int kc_test_required(const char *name) {
    const char *req = getenv("KERASC_TEST_REQUIRE");
    size_t n = strlen(name);
    for (const char *p = req; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

/* The device of registry entry i opened with `threads` host threads (0: all
 * cores), or NULL when the backend cannot be opened here. */
static inline kc_device *kc_test_device_threads(int i, int threads) {
    if (i < 0 || i >= kc_test_backend_count() || threads < 0 || threads > KC_TEST_MAX_THREADS)
        return NULL;
    kc_test_slot(*s)[KC_TEST_MAX_THREADS + 1] = kc_test_slots();
    static int at_exit;
    if (!at_exit) {
        atexit(kc_test_close_devices);
        at_exit = 1;
    }
    kc_test_slot *slot = &s[i][threads];
    if (threads && !(s[i][0].tried && s[i][0].ok)) {
        /* the default device decides whether the backend runs here at all */
        if (!kc_test_device_threads(i, 0)) return NULL;
    }
    if (!slot->tried) {
        slot->tried = 1;
        kc_device_opts o = {.device = 0, .threads = threads};
        kc_error e = {0};
        if (kc_device_open(&slot->dev, kc_backends[i], &o, &e) == KC_OK) {
            slot->ok = 1;
        } else if (!threads && kc_test_required(kc_backends[i]->name)) {
            /* the run says this backend must open here (KERASC_TEST_REQUIRE) */
            fprintf(stderr, "%s: the %s backend is required but does not open: %s\n",
                    program_invocation_short_name, kc_backends[i]->name,
                    e.msg[0] ? e.msg : "it does not open");
            exit(1);
        } else if (!threads) {
            fprintf(stderr, "%s: skipping the %s backend: %s\n", program_invocation_short_name,
                    kc_backends[i]->name, e.msg[0] ? e.msg : "it does not open");
        } else {
            /* the backend opened with its default threads; this is a real failure */
            fprintf(stderr, "%s: the %s backend opens, but not with %d threads: %s\n",
                    program_invocation_short_name, kc_backends[i]->name, threads, e.msg);
        }
    }
    return slot->ok ? &slot->dev : NULL;
}

static inline kc_device *kc_test_device(int i) {
    return kc_test_device_threads(i, 0);
}

/* Registry index of a backend by name, -1 when it is not built in. */
static inline int kc_test_backend_index(const char *name) {
    for (int i = 0; i < kc_test_backend_count(); i++)
        if (!strcmp(kc_backends[i]->name, name)) return i;
    return -1;
}

/* A backend's device by name (NULL when not built in or not openable). */
static inline kc_device *kc_test_device_named(const char *name, int threads) {
    return kc_test_device_threads(kc_test_backend_index(name), threads);
}

/* The oracle: must be built in and must open. */
static inline kc_device *kc_test_reference(void) {
    kc_device *d = kc_test_device_named("reference", 0);
    ck_assert_msg(d != NULL, "the reference backend does not open");
    return d;
}

#define KC_FOR_EACH_DEVICE(d)                                                                      \
    for (int kc_fe_i_ = 0; kc_fe_i_ < kc_test_backend_count(); kc_fe_i_++)                         \
        for (kc_device *d = kc_test_device(kc_fe_i_); d; d = NULL)

#define KC_FOR_EACH_TESTED_DEVICE(d)                                                               \
    for (int kc_fe_i_ = 0; kc_fe_i_ < kc_test_backend_count(); kc_fe_i_++)                         \
        for (kc_device *d = kc_test_is_reference(kc_fe_i_) ? NULL : kc_test_device(kc_fe_i_); d;   \
             d = NULL)

/* In a loop test over the registry (_i is Check's loop index). */
#define KC_LOOP_DEVICE(d)                                                                          \
    kc_device *d = kc_test_device(_i);                                                             \
    if (!d) return

/* The cpu backend runs the reference's float operations in the reference's
 * order for its elementwise kernels, updates, penalties and projections, so
 * the suites hold it to the reference's bits there; other backends (which
 * may contract, vectorise or round division and square roots differently)
 * are held to a tolerance instead. */
static inline int kc_test_repeats_reference(const kc_device *d) {
    return !strcmp(d->be->name, "cpu");
}

/* ---- statuses and data movement, each failure naming the device ---- */

#define kc_test_ok(d, what)                                                                        \
    ck_assert_msg(kc_device_status(d) == KC_OK, "%s on %s: %s", (what), (d)->name, (d)->err.msg)

static inline kc_buf kc_test_alloc(kc_device *d, size_t bytes) {
    kc_buf b;
    int rc = kc_alloc(d, bytes ? bytes : 4, &b);
    ck_assert_msg(rc == KC_OK && kc_buf_ok(b), "alloc of %zu bytes on %s: %s", bytes, d->name,
                  d->err.msg);
    return b;
}

static inline void kc_test_put(kc_device *d, kc_buf dst, const void *src, size_t bytes) {
    int rc = kc_upload(d, dst, src, bytes);
    ck_assert_msg(rc == KC_OK, "upload of %zu bytes to %s: %s", bytes, d->name, d->err.msg);
}

static inline void kc_test_get(kc_device *d, void *dst, kc_buf src, size_t bytes) {
    int rc = kc_download(d, dst, src, bytes);
    ck_assert_msg(rc == KC_OK, "download of %zu bytes from %s: %s", bytes, d->name, d->err.msg);
}

/* A new buffer holding n floats of h (zeros when h is NULL). */
static inline kc_buf kc_test_from(kc_device *d, const float *h, size_t n) {
    kc_buf b = kc_test_alloc(d, n * sizeof(float));
    if (h && n) kc_test_put(d, b, h, n * sizeof(float));
    return b;
}

/* n floats downloaded into a new host array (the caller frees it). */
static inline float *kc_test_fetch(kc_device *d, kc_buf src, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof *h);
    ck_assert_ptr_nonnull(h);
    if (n) kc_test_get(d, h, src, n * sizeof *h);
    return h;
}

static inline double kc_test_get_double(kc_device *d, kc_buf src) {
    double v;
    kc_test_get(d, &v, src, sizeof v);
    return v;
}

static inline void kc_test_put_double(kc_device *d, kc_buf dst, double v) {
    kc_test_put(d, dst, &v, sizeof v);
}

#endif

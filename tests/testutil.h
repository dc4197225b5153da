/* Shared helpers for the Check suites. */
#ifndef KC_TESTUTIL_H
#define KC_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Quick mode (sanitizer runs): suites may shrink sizes/iterations, never drop assertions. */
static inline int kc_test_quick(void) {
    const char *q = getenv("KERASC_QUICK");
    return q && *q && *q != '0';
}

/* A fresh private directory under $TMPDIR (or /tmp); caller removes it. */
static inline char *kc_test_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/kerasc-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

static inline void kc_test_rmdir(const char *path) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", path);
}

/* |a - b| <= atol + rtol |b| */
#define ck_assert_close(a, b, atol, rtol)                                                          \
    do {                                                                                           \
        double _a = (a), _b = (b);                                                                 \
        ck_assert_msg(fabs(_a - _b) <= (atol) + (rtol)*fabs(_b), "%s = %.9g, expected %.9g", #a,   \
                      _a, _b);                                                                     \
    } while (0)

/* Runs one suite; returns the process exit status. */
static inline int kc_test_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif

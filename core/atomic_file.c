#include "core/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int kc_atomic_open(kc_atomic_file *a, const char *path, kc_error *e) {
    static _Atomic unsigned counter;
    a->path = path;
    a->f = NULL;
    if (strlen(path) > 4000) return kc_fail(e, KC_ERUNTIME, "%.200s...: path too long", path);
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(a->tmp, sizeof a->tmp, "%s.tmp-%ld-%u", path, (long)getpid(), counter++);
        /* O_EXCL: never reuse a name; mode 0666 lets the umask decide as for any new file */
        int fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) return kc_fail(e, KC_ERUNTIME, "%s: cannot write: %s", path, strerror(errno));
        a->f = fdopen(fd, "wb");
        if (!a->f) {
            close(fd);
            unlink(a->tmp);
            return kc_fail(e, KC_ERUNTIME, "%s: cannot write: %s", path, strerror(errno));
        }
        return KC_OK;
    }
    return kc_fail(e, KC_ERUNTIME, "%s: cannot create a temporary file beside it", path);
}

void kc_atomic_abort(kc_atomic_file *a) {
    if (a->f) fclose(a->f);
    a->f = NULL;
    unlink(a->tmp);
}

int kc_atomic_commit(kc_atomic_file *a, kc_error *e) {
    int failed = ferror(a->f) || fflush(a->f) != 0 || fsync(fileno(a->f)) != 0;
    int err = errno;
    if (fclose(a->f) != 0 && !failed) {
        failed = 1;
        err = errno;
    }
    a->f = NULL;
    if (!failed && rename(a->tmp, a->path) != 0) {
        failed = 1;
        err = errno;
    }
    if (failed) {
        unlink(a->tmp);
        return kc_fail(e, KC_ERUNTIME, "%s: write failed: %s", a->path,
                       err ? strerror(err) : "I/O error");
    }
    return KC_OK;
}


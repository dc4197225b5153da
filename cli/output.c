/* Standard output and the files the verbs write: a failed write to standard
 * output is found (at the latest when it is flushed and closed before exit)
 * and said once on standard error; an output file's location is checked
 * before the work that fills it starts. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/atomic_file.h"

static int out_errno;    /* the first failure's reason */
static int out_reported; /* a verb has said it */

int kc_cli_stdout_error(void) {
    if (!out_errno && ferror(stdout)) out_errno = errno ? errno : EIO;
    return out_errno;
}

/* A failed write leaves what it could not write in the buffer, so flushing
 * again fails again and tells why. */
int kc_cli_stdout_flush(void) {
    if (out_errno) return out_errno;
    int had = ferror(stdout), before = errno;
    if (had) clearerr(stdout);
    errno = 0;
    if (fflush(stdout) != 0)
        out_errno = errno ? errno : EIO;
    else if (had)
        out_errno = before ? before : EIO;
    return out_errno;
}

void kc_cli_stdout_reported(void) {
    out_reported = 1;
}

int kc_cli_finish(int status) {
    int err = kc_cli_stdout_flush();
    errno = 0;
    if (fclose(stdout) != 0 && !err) err = errno ? errno : EIO;
    if (!err) return status;
    if (!out_reported) fprintf(stderr, "kerasc: cannot write standard output: %s\n", strerror(err));
    return status ? status : 1;
}

int kc_cli_output_failure(int rc, kc_error *e) {
    if (rc == KC_ECONFIG) e->code = rc = KC_ERUNTIME;
    return rc;
}

int kc_cli_prepare_output(const char *path, const char *what, kc_error *e) {
    int rc = kc_check_file_writable(path, what, 0, 0, e);
    if (rc) return kc_cli_output_failure(rc, e);
    const char *slash = strrchr(path, '/');
    char glob[4200], target[8400];
    kc_glob_escape(slash ? slash + 1 : path, glob, sizeof glob);
    snprintf(target, sizeof target, "%.*s%s", slash ? (int)(slash - path + 1) : 0, path, glob);
    kc_atomic_remove_stale(target);
    return KC_OK;
}

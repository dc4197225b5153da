#include "core/atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------- the writer --- */

static _Atomic unsigned temp_counter;

/* A fresh PATH.tmp-PID-N, created exclusively; returns its fd or -1 (errno). */
static int create_temp(const char *path, char *tmp, size_t n) {
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(tmp, n, "%s.tmp-%ld-%u", path, (long)getpid(), temp_counter++);
        /* O_EXCL: never reuse a name; mode 0666 lets the umask decide as for any new file */
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    errno = EEXIST;
    return -1;
}

int kc_atomic_open(kc_atomic_file *a, const char *path, kc_error *e) {
    a->path = path;
    a->f = NULL;
    a->tmp[0] = 0;
    if (strlen(path) > 4000) return kc_fail(e, KC_ERUNTIME, "%.200s...: path too long", path);
    int fd = create_temp(path, a->tmp, sizeof a->tmp);
    if (fd < 0) {
        int err = errno;
        a->tmp[0] = 0; /* not ours: kc_atomic_abort must leave it */
        if (err == EEXIST)
            return kc_fail(e, KC_ERUNTIME, "%s: cannot create a temporary file beside it", path);
        return kc_fail(e, KC_ERUNTIME, "%s: cannot write: %s", path, strerror(err));
    }
    a->f = fdopen(fd, "wb");
    if (!a->f) {
        int err = errno;
        close(fd);
        unlink(a->tmp);
        return kc_fail(e, KC_ERUNTIME, "%s: cannot write: %s", path, strerror(err));
    }
    return KC_OK;
}

void kc_atomic_abort(kc_atomic_file *a) {
    if (a->f) fclose(a->f);
    a->f = NULL;
    if (a->tmp[0]) unlink(a->tmp);
}

/* The reason of a write error: an earlier failed write left errno behind,
 * and the data it could not write is still buffered, so flushing again
 * says it once more. */
static int flush_error(FILE *f) {
    int err = 0;
    if (ferror(f)) {
        err = errno ? errno : EIO;
        clearerr(f);
        errno = 0;
        if (fflush(f) != 0 && errno) err = errno;
        return err;
    }
    errno = 0;
    if (fflush(f) != 0) return errno ? errno : EIO;
    if (fsync(fileno(f)) != 0) return errno;
    return 0;
}

int kc_atomic_commit(kc_atomic_file *a, kc_error *e) {
    int err = flush_error(a->f);
    if (fclose(a->f) != 0 && !err) err = errno ? errno : EIO;
    a->f = NULL;
    if (!err && rename(a->tmp, a->path) != 0) err = errno;
    if (err) {
        unlink(a->tmp);
        return kc_fail(e, KC_ERUNTIME, "%s: write failed: %s", a->path, strerror(err));
    }
    return KC_OK;
}

/* --------------------------------------------------------- temporaries --- */

/* Digits only, no leading zero (except "0" when zero_ok), at most 10. */
static int decimal(const char *s, size_t n, int zero_ok, long *out) {
    if (n == 0 || n > 10 || (s[0] == '0' && !(zero_ok && n == 1))) return 0;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

int kc_atomic_temp_of(const char *name, const char *glob, long *pid) {
    const char *mark = NULL;
    for (const char *p = strstr(name, ".tmp-"); p; p = strstr(p + 1, ".tmp-"))
        mark = p;
    if (!mark || mark == name) return 0;
    const char *digits = mark + 5, *dash = strchr(digits, '-');
    size_t plen = dash ? (size_t)(dash - digits) : strlen(digits);
    long v, n;
    if (!decimal(digits, plen, 0, &v) || v > INT_MAX) return 0;
    if (dash && !decimal(dash + 1, strlen(dash + 1), 1, &n)) return 0;
    char base[NAME_MAX + 1];
    size_t blen = (size_t)(mark - name);
    if (blen >= sizeof base) return 0;
    memcpy(base, name, blen);
    base[blen] = 0;
    if (fnmatch(glob, base, 0) != 0) return 0;
    *pid = v;
    return 1;
}

/* Does process pid hold the file st open? 1 yes, 0 no, -1 cannot tell. */
static int held_by(long pid, const struct stat *st) {
    char p[64];
    snprintf(p, sizeof p, "/proc/%ld/fd", pid);
    DIR *d = opendir(p);
    if (!d) return -1;
    int held = 0;
    struct dirent *ent;
    while (!held && (ent = readdir(d))) {
        char fp[128];
        struct stat s;
        if (ent->d_name[0] == '.') continue;
        snprintf(fp, sizeof fp, "%s/%.40s", p, ent->d_name);
        held = stat(fp, &s) == 0 && s.st_dev == st->st_dev && s.st_ino == st->st_ino;
    }
    closedir(d);
    return held;
}

/* A writer holds its temporary open from creation until just before the
 * rename, so a temporary nobody holds and nobody touched for this long is
 * left over. */
#define KC_TEMP_IDLE_S 60

static int is_stale(const char *path, long pid) {
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) return 1;
    if (held_by(pid, &st) != 0) return 0;
    return time(NULL) - st.st_mtime > KC_TEMP_IDLE_S;
}

int kc_atomic_remove_stale(const char *path_glob) {
    const char *slash = strrchr(path_glob, '/');
    char dir[4096];
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if ((size_t)(slash - path_glob) >= sizeof dir)
        return 0;
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path_glob ? 1 : (int)(slash - path_glob),
                 path_glob);
    const char *glob = slash ? slash + 1 : path_glob;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        long pid;
        if (!kc_atomic_temp_of(ent->d_name, glob, &pid)) continue;
        char p[4096 + NAME_MAX + 2];
        snprintf(p, sizeof p, "%s/%s", dir, ent->d_name);
        if (is_stale(p, pid) && unlink(p) == 0) removed++;
    }
    closedir(d);
    return removed;
}

void kc_glob_escape(const char *s, char *out, size_t n) {
    size_t used = 0;
    for (; *s && used + 2 < n; s++) {
        if (strchr("*?[]\\", *s)) out[used++] = '\\';
        out[used++] = *s;
    }
    if (n) out[used < n ? used : n - 1] = 0;
}

/* ------------------------------------------------ output location checks --- */

static int mkdir_one(const char *dir, kc_error *e) {
    if (mkdir(dir, 0777) == 0 || errno == EEXIST) return KC_OK;
    int err = errno;
    return kc_fail(e, err == ENOENT || err == ENOTDIR ? KC_ECONFIG : KC_ERUNTIME,
                   "cannot create directory %s: %s", dir, strerror(err));
}

int kc_mkdir_p(const char *dir, kc_error *e) {
    char buf[4096];
    if (strlen(dir) >= sizeof buf) return kc_fail(e, KC_ECONFIG, "%.200s...: path too long", dir);
    snprintf(buf, sizeof buf, "%s", dir);
    int rc;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/' || p[-1] == '/') continue;
        *p = 0;
        rc = mkdir_one(buf, e);
        *p = '/';
        if (rc) return rc;
    }
    if ((rc = mkdir_one(buf, e))) return rc;
    struct stat st;
    if (stat(buf, &st) || !S_ISDIR(st.st_mode))
        return kc_fail(e, KC_ECONFIG, "%s exists and is not a directory", buf);
    return KC_OK;
}

/* Wrong paths are config mistakes; the rest is the machine's state. */
static int code_of(int err) {
    return err == ENOENT || err == ENOTDIR || err == EISDIR || err == ENAMETOOLONG || err == ELOOP
               ? KC_ECONFIG
               : KC_ERUNTIME;
}

/* Creates and removes a temporary in the existing directory dir; 0 or errno. */
static int probe(const char *dir) {
    char target[4200], tmp[4300];
    snprintf(target, sizeof target, "%s/.kerasc-probe", dir);
    kc_atomic_remove_stale(target);
    int fd = create_temp(target, tmp, sizeof tmp);
    if (fd < 0) return errno;
    close(fd);
    unlink(tmp);
    return 0;
}

/* The directory part of path ("." for a bare name, "/" for "/x"). */
static void parent_of(const char *path, char *out, size_t n) {
    snprintf(out, n, "%s", path);
    size_t len = strlen(out);
    while (len > 1 && out[len - 1] == '/')
        out[--len] = 0;
    char *slash = strrchr(out, '/');
    if (!slash)
        snprintf(out, n, ".");
    else if (slash == out)
        out[1] = 0;
    else
        *slash = 0;
}

/* dir does not exist: the nearest ancestor that does must take new files. */
static int check_ancestor(const char *dir, const char *what, kc_error *e) {
    char cur[4096];
    snprintf(cur, sizeof cur, "%s", dir);
    for (int depth = 0; depth < 1024; depth++) {
        char up[4096];
        parent_of(cur, up, sizeof up);
        struct stat st;
        if (stat(up, &st) == 0) {
            if (!S_ISDIR(st.st_mode))
                return kc_fail(e, KC_ECONFIG, "cannot create %s %s: %s is not a directory", what,
                               dir, up);
            int err = probe(up);
            return err ? kc_fail(e, code_of(err), "cannot create %s %s: cannot write to %s: %s",
                                 what, dir, up, strerror(err))
                       : KC_OK;
        }
        int err = errno;
        if (err != ENOENT || !strcmp(up, cur))
            return kc_fail(e, code_of(err), "cannot create %s %s: %s: %s", what, dir, up,
                           strerror(err));
        snprintf(cur, sizeof cur, "%s", up);
    }
    return kc_fail(e, KC_ECONFIG, "cannot create %s %s: path too deep", what, dir);
}

int kc_check_dir_writable(const char *dir, const char *what, int create, kc_error *e) {
    if (strlen(dir) >= 4000) return kc_fail(e, KC_ECONFIG, "%.200s...: path too long", dir);
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return kc_fail(e, KC_ECONFIG, "%s %s is not a directory", what, dir);
        int err = probe(dir);
        return err ? kc_fail(e, code_of(err), "cannot write to %s %s: %s", what, dir, strerror(err))
                   : KC_OK;
    }
    int err = errno;
    if (err == ENOENT && !create) return kc_fail(e, KC_ECONFIG, "%s %s does not exist", what, dir);
    if (err != ENOENT)
        return kc_fail(e, code_of(err), "cannot write to %s %s: %s", what, dir, strerror(err));
    return check_ancestor(dir, what, e);
}

int kc_check_file_writable(const char *path, const char *what, int in_place, int create_dirs,
                           kc_error *e) {
    if (!*path) return kc_fail(e, KC_ECONFIG, "%s: empty file name", what);
    if (strlen(path) >= 4000) return kc_fail(e, KC_ECONFIG, "%.200s...: path too long", path);
    struct stat st;
    int err = 0;
    if (stat(path, &st) != 0) {
        err = errno;
        if (err != ENOENT)
            return kc_fail(e, code_of(err), "cannot write %s %s: %s", what, path, strerror(err));
    } else if (S_ISDIR(st.st_mode)) {
        return kc_fail(e, KC_ECONFIG, "%s %s is a directory", what, path);
    } else if (in_place && !S_ISREG(st.st_mode)) {
        return KC_OK; /* a device or a pipe: written as it is */
    } else if (in_place) {
        int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
            err = errno;
            return kc_fail(e, code_of(err), "cannot write %s %s: %s", what, path, strerror(err));
        }
        close(fd);
        return KC_OK;
    }
    char dir[4096];
    parent_of(path, dir, sizeof dir);
    int rc = kc_check_dir_writable(dir, "directory", create_dirs, e);
    return rc ? kc_error_prefix(e, "%s %s", what, path) : KC_OK;
}

int kc_fsync_path(const char *path, kc_error *e) {
    int fd = open(path, O_RDONLY);
    int ok = fd >= 0 && (fsync(fd) == 0 || errno == EINVAL);
    int err = errno;
    if (fd >= 0) close(fd);
    if (!ok) return kc_fail(e, KC_ERUNTIME, "cannot write %s: %s", path, strerror(err));
    return KC_OK;
}

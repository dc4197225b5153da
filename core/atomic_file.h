/* Writing a file so that readers only ever see the old version or the whole
 * new one: the data goes to a fresh temporary file beside the target, which
 * is flushed, synced and renamed over it. On failure the temporary file is
 * removed and the target is untouched.
 *
 * Temporaries are named TARGET.tmp-PID-N (this writer) or TARGET.tmp-PID
 * (the checkpoint writer, core/safetensors.c). A process killed while
 * writing leaves one behind; kc_atomic_remove_stale removes those whose
 * writer is gone. Also here: the checks that an output location can be
 * written, made before a long computation starts. */
#ifndef KC_ATOMIC_FILE_H
#define KC_ATOMIC_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "core/error.h"

typedef struct kc_atomic_file {
    const char *path; /* the target; must outlive the kc_atomic_file */
    char tmp[4200];
    FILE *f; /* write through this */
} kc_atomic_file;

/* Creates the temporary file (exclusively, never reusing a name). */
int kc_atomic_open(kc_atomic_file *a, const char *path, kc_error *e);
/* Flush, fsync, close and rename into place; any failure (including an
 * earlier write error on a->f) removes the temporary file and is reported. */
int kc_atomic_commit(kc_atomic_file *a, kc_error *e);
/* Gives up: closes and removes the temporary file. */
void kc_atomic_abort(kc_atomic_file *a);

/* Is `name` (a file name without directory) a temporary of a file whose
 * name matches `glob` (an fnmatch pattern), i.e. GLOB.tmp-PID or
 * GLOB.tmp-PID-N with decimal PID > 0 and N? Sets *pid when it is. */
int kc_atomic_temp_of(const char *name, const char *glob, long *pid);

/* Removes the stale temporaries of the files `path_glob` names: its last
 * component is an fnmatch pattern (kc_glob_escape a plain name), its
 * directory a plain path. A temporary is stale when no process has its PID,
 * or when that process does not hold it open and it has not changed for a
 * minute (the PID was reused). Nothing else is ever removed: only regular
 * files named exactly by the pattern. Returns how many were removed; a
 * directory that cannot be read holds none. */
int kc_atomic_remove_stale(const char *path_glob);

/* s with fnmatch's special characters escaped (out of n bytes; truncates). */
void kc_glob_escape(const char *s, char *out, size_t n);

/* Flushes a finished file (written by a library that does not) to disk,
 * before it is renamed into place. */
int kc_fsync_path(const char *path, kc_error *e);

/* Creates dir and its missing parents (mkdir -p). */
int kc_mkdir_p(const char *dir, kc_error *e);

/* Can files be created in dir? `what` names it in messages ("run
 * directory"). A missing dir is an error unless `create` is set; then the
 * nearest existing ancestor must be a directory files can be created in
 * (the directories are made when first written). The test creates and
 * removes a temporary. Errors name the path and the reason, with
 * KC_ECONFIG when the path itself is wrong (missing, not a directory) and
 * KC_ERUNTIME otherwise (permissions, a read-only file system). */
int kc_check_dir_writable(const char *dir, const char *what, int create, kc_error *e);

/* Can `path` be written? `in_place`: the file is opened and written as it
 * is (an existing regular file must open for appending; otherwise it is
 * created in its directory), else it is replaced by a rename (its directory
 * must take new files, and it must not be a directory). `create_dirs` as
 * `create` above, for its directory. */
int kc_check_file_writable(const char *path, const char *what, int in_place, int create_dirs,
                           kc_error *e);

#endif

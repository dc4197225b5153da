/* Writing a file so that readers only ever see the old version or the whole
 * new one: the data goes to a fresh temporary file beside the target, which
 * is flushed, synced and renamed over it. On failure the temporary file is
 * removed and the target is untouched. */
#ifndef KC_ATOMIC_FILE_H
#define KC_ATOMIC_FILE_H

#include <stdio.h>

#include "core/error.h"

typedef struct kc_atomic_file {
    const char *path; /* the target; must outlive the kc_atomic_file */
    char tmp[4200];
    FILE *f;          /* write through this */
} kc_atomic_file;

/* Creates the temporary file (exclusively, never reusing a name). */
int kc_atomic_open(kc_atomic_file *a, const char *path, kc_error *e);
/* Flush, fsync, close and rename into place; any failure (including an
 * earlier write error on a->f) removes the temporary file and is reported. */
int kc_atomic_commit(kc_atomic_file *a, kc_error *e);
/* Gives up: closes and removes the temporary file. */
void kc_atomic_abort(kc_atomic_file *a);

#endif

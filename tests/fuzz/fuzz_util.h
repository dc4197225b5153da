/* What the fuzz harnesses share (tests/fuzz/README.md).
 *
 * Each tests/fuzz/fuzz_<name>.c is one LLVMFuzzerTestOneInput. `make fuzz`
 * links it with libFuzzer; tests/test_fuzz_replay.c links every harness
 * under another name (-DLLVMFuzzerTestOneInput=kc_fuzz_<name>) and replays
 * the seed and crash corpora through them in `make check`. A harness must
 * therefore be deterministic, print nothing on success, and report a broken
 * invariant by aborting (FUZZ_CHECK), which both drivers treat as a crash. */
#ifndef KC_FUZZ_UTIL_H
#define KC_FUZZ_UTIL_H

#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/tensor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant: says which and aborts. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char fuzz_dir_path[4096];

static inline int fuzz_rm_entry(const char *path, const struct stat *st, int flag,
                                struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void fuzz_dir_remove(void) {
    if (fuzz_dir_path[0]) nftw(fuzz_dir_path, fuzz_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A private directory under $TMPDIR (or /tmp) for this harness in this
 * process, made on first use and removed at exit. */
static inline const char *fuzz_dir(const char *harness) {
    if (fuzz_dir_path[0]) return fuzz_dir_path;
    const char *base = getenv("TMPDIR");
    snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/kerasc-fuzz-%s-XXXXXX",
             base && *base ? base : "/tmp", harness);
    if (!mkdtemp(fuzz_dir_path)) {
        perror(fuzz_dir_path);
        abort();
    }
    atexit(fuzz_dir_remove);
    return fuzz_dir_path;
}

/* dir/name in out. */
static inline const char *fuzz_path(const char *harness, const char *name, char *out, size_t n) {
    snprintf(out, n, "%s/%s", fuzz_dir(harness), name);
    return out;
}

/* Writes the bytes to dir/name (replacing it) and returns the path in out. */
static inline const char *fuzz_write(const char *harness, const char *name, const uint8_t *data,
                                     size_t size, char *out, size_t n) {
    fuzz_path(harness, name, out, n);
    FILE *f = fopen(out, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) {
        perror(out);
        abort();
    }
    return out;
}

/* Reads every byte of a buffer the library handed out, so a buffer shorter
 * than it claims shows up under AddressSanitizer. */
static inline unsigned fuzz_touch(const void *p, size_t n) {
    const volatile unsigned char *b = p;
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += b[i];
    return sum;
}

/* The product of dims [from, rank), or -1 when it does not fit in int64. */
static inline int64_t fuzz_dims_product(const kc_shape *s, int from) {
    int64_t n = 1;
    for (int i = from; i < s->rank; i++) {
        if (s->d[i] < 0) return -1;
        if (s->d[i] && n > INT64_MAX / s->d[i]) return -1;
        n *= s->d[i];
    }
    return n;
}

#endif

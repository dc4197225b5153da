/* Helpers for suites that run the kerasc binary as users do: a scratch
 * directory, a runner capturing stdout/stderr, and a learnable toy dataset. */
#ifndef KC_CLITEST_H
#define KC_CLITEST_H

#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "core/rng.h"
#include "core/safetensors.h"
#include "models/data/data.h"
#include "testutil.h"

static char *dir;          /* per-suite scratch directory */
static const char *kerasc; /* binary */
static char out_buf[1 << 20], err_buf[1 << 16];

static inline void slurp(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
}

/* Runs `[ENV] kerasc ARGS` in the scratch dir (env may be ""); returns its
 * exit status, with its stdout and stderr in out_buf and err_buf. */
static inline int run_env(const char *env, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline int run_env(const char *env, const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd '%s' && %s '%s' %s >'%s/out.txt' 2>'%s/err.txt'", dir, env,
             kerasc, args, dir, dir);
    int st = system(cmd);
    char p[4200];
    snprintf(p, sizeof p, "%s/out.txt", dir);
    slurp(p, out_buf, sizeof out_buf);
    snprintf(p, sizeof p, "%s/err.txt", dir);
    slurp(p, err_buf, sizeof err_buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}
#define run(...) run_env("", __VA_ARGS__)

/* A path inside the scratch dir (one static buffer: use it at once). */
static inline char *path_in(const char *name) {
    static char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static inline void write_file(const char *name, const char *text) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static inline int file_exists(const char *name) {
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

/* A learnable toy problem: 8x8 images (values 0..255) with a bright 3x3 blob
 * in one of four quadrants; the label (0..3) is the quadrant. */
static inline void blob_pixels(float *x, float *y, int n, uint64_t seed) {
    for (int i = 0; i < n; i++) {
        int q = (int)kc_rng_below(seed, 1, (uint64_t)i, 4);
        int oy = (q / 2) * 4 + (int)kc_rng_below(seed, 2, (uint64_t)i, 2);
        int ox = (q % 2) * 4 + (int)kc_rng_below(seed, 3, (uint64_t)i, 2);
        for (int k = 0; k < 64; k++)
            x[i * 64 + k] = 40.0f * kc_rng_uniform(seed, 4, (uint64_t)(i * 64 + k));
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++)
                x[i * 64 + (oy + a) * 8 + ox + b] += 200.0f;
        y[i] = (float)q;
    }
}

static inline void write_npy(const char *name, const float *v, kc_shape sh) {
    kc_error e = {0};
    ck_assert_msg(kc_npy_write(path_in(name), v, &sh, &e) == 0, "%s", e.msg);
}

/* Writes the blobs as xname (n, 8, 8) and yname (n,). */
static inline void make_blobs(const char *xname, const char *yname, int n, uint64_t seed) {
    float *x = calloc((size_t)n * 64, sizeof *x), *y = calloc((size_t)n, sizeof *y);
    blob_pixels(x, y, n, seed);
    write_npy(xname, x, kc_shape3(n, 8, 8));
    write_npy(yname, y, kc_shape1(n));
    free(x);
    free(y);
}

#endif

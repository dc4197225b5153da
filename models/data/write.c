/* Prediction output: .npy and CSV, each written to a temporary file beside the
 * target and renamed into place, so a reader never sees a partial file. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "models/data/data.h"

/* ---- .npy ---- */

/* The header dict, padded with spaces and ended by '\n' so the data starts on
 * a 64-byte boundary, as numpy writes it. Returns its length. */
static size_t npy_header(const kc_shape *shape, char *buf, size_t cap) {
    char dims[KC_MAX_RANK * 24 + 4] = "";
    size_t used = 0;
    for (int i = 0; i < shape->rank; i++)
        used += (size_t)snprintf(dims + used, sizeof dims - used, "%s%lld", i ? ", " : "",
                                 (long long)shape->d[i]);
    if (shape->rank == 1) snprintf(dims + used, sizeof dims - used, ",");
    int n = snprintf(buf, cap, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
    size_t len = (size_t)n;
    size_t total = (10 + len + 1 + 63) / 64 * 64;
    while (10 + len + 1 < total)
        buf[len++] = ' ';
    buf[len++] = '\n';
    buf[len] = 0;
    return len;
}

static int write_f32_le(FILE *f, const float *data, int64_t n) {
    const uint16_t one = 1;
    unsigned char lsb;
    memcpy(&lsb, &one, 1);
    if (lsb) return fwrite(data, sizeof *data, (size_t)n, f) == (size_t)n;
    unsigned char b[4];
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &data[i], 4);
        for (int k = 0; k < 4; k++)
            b[k] = (unsigned char)(u >> (8 * k));
        if (fwrite(b, 1, 4, f) != 4) return 0;
    }
    return 1;
}

int kc_npy_write(const char *path, const float *data, const kc_shape *shape, kc_error *e) {
    if (shape->rank < 0 || shape->rank > KC_MAX_RANK)
        return kc_fail(e, KC_ERUNTIME, "%s: cannot write an array of rank %d", path, shape->rank);
    size_t bytes;
    if (!kc_shape_bytes(shape, sizeof(float), &bytes))
        return kc_fail(e, KC_ERUNTIME,
                       "%s: a negative dimension in the shape, or more elements than memory can "
                       "address",
                       path);
    char header[512];
    size_t hlen = npy_header(shape, header, sizeof header);
    kc_atomic_file a;
    int rc = kc_atomic_open(&a, path, e);
    if (rc) return rc;
    unsigned char pre[10] = {0x93,
                             'N',
                             'U',
                             'M',
                             'P',
                             'Y',
                             1,
                             0,
                             (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    int ok = fwrite(pre, 1, 10, a.f) == 10 && fwrite(header, 1, hlen, a.f) == hlen &&
             write_f32_le(a.f, data, kc_shape_numel(shape));
    if (!ok) {
        int err = errno;
        kc_atomic_abort(&a);
        return kc_fail(e, KC_ERUNTIME, "%s: write failed: %s", path, strerror(err));
    }
    return kc_atomic_commit(&a, e);
}

/* ---- CSV ---- */

/* The shortest %g form that reads back as the same float. */
static void format_float(float v, char *buf, size_t n) {
    if (isnan(v)) {
        snprintf(buf, n, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, n, v < 0 ? "-inf" : "inf");
        return;
    }
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, n, "%.*g", p, (double)v);
        if (strtof(buf, NULL) == v) return;
    }
}

static void write_name(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int kc_csv_write(const char *path, const float *data, int64_t rows, int64_t cols,
                 const char *const *header, kc_error *e) {
    if (rows < 0 || cols < 1)
        return kc_fail(e, KC_ERUNTIME, "%s: cannot write a %lld x %lld table", path,
                       (long long)rows, (long long)cols);
    kc_atomic_file a;
    int rc = kc_atomic_open(&a, path, e);
    if (rc) return rc;
    if (header) {
        for (int64_t j = 0; j < cols; j++) {
            if (j) fputc(',', a.f);
            write_name(a.f, header[j] ? header[j] : "");
        }
        fputc('\n', a.f);
    }
    char num[48];
    for (int64_t i = 0; i < rows && !ferror(a.f); i++) {
        for (int64_t j = 0; j < cols; j++) {
            format_float(data[i * cols + j], num, sizeof num);
            if (j) fputc(',', a.f);
            fputs(num, a.f);
        }
        fputc('\n', a.f);
    }
    return kc_atomic_commit(&a, e);
}

/* Handles and data movement for the backends whose device memory is host
 * memory (cpu, reference). A kc_mem is the base pointer of a host
 * allocation, so a handle is turned into a pointer without any lookup; the
 * null handle gives NULL, which the kernels read as "no optional buffer".
 * Queued transfers complete at once: nothing on the host runs behind the
 * caller's back, so KC_ASYNC needs no bookkeeping and synchronize has no work. */
#ifndef KC_HOST_H
#define KC_HOST_H

#include "core/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The order of the host backends' sums in reduce (SUM, MEAN, SUMSQ, SUMABS),
 * per output: term l (l = 0 .. len-1, in order) is added in double to lane
 * l % KC_HOST_REDUCE_LANES, every lane starting at 0; then lane 0 plus lanes
 * 1 .. min(len, KC_HOST_REDUCE_LANES) - 1, in order. The lanes vectorise a
 * contiguous row, and a fixed lane count keeps the bits independent of the
 * instruction set, the thread count and the layout, so cpu and reference
 * agree bit for bit. MAX, MIN and ARGMAX scan l in order. */
#define KC_HOST_REDUCE_LANES 16

static inline void *kc_host_ptr(kc_buf b) {
    return b.mem ? (void *)((char *)b.mem + b.off) : NULL;
}

static inline float *kc_host_f(kc_buf b) {
    return (float *)kc_host_ptr(b);
}

static inline int32_t *kc_host_i32(kc_buf b) {
    return (int32_t *)kc_host_ptr(b);
}

/* out[0] += v for the double at out; memcpy because nothing promises that a
 * byte offset keeps 8-byte alignment. */
static inline void kc_host_add_double(kc_buf out, double v) {
    double s;
    void *p = kc_host_ptr(out);
    memcpy(&s, p, sizeof s);
    s += v;
    memcpy(p, &s, sizeof s);
}

static inline kc_buf kc_host_buf(void *p) {
    kc_buf b = {(kc_mem *)p, 0};
    return b;
}

static inline void kc_host_free(kc_device *d, kc_buf b) {
    (void)d;
    free(b.mem);
}

static inline int kc_host_upload(kc_device *d, kc_buf dst, const void *src, size_t bytes,
                                 int mode) {
    (void)d, (void)mode;
    if (bytes) memcpy(kc_host_ptr(dst), src, bytes);
    return KC_OK;
}

static inline int kc_host_download(kc_device *d, void *dst, kc_buf src, size_t bytes, int mode) {
    (void)d, (void)mode;
    if (bytes) memcpy(dst, kc_host_ptr(src), bytes);
    return KC_OK;
}

static inline int kc_host_copy(kc_device *d, kc_buf dst, kc_buf src, size_t bytes) {
    (void)d;
    void *to = kc_host_ptr(dst);
    const void *from = kc_host_ptr(src);
    if (bytes && to != from) memmove(to, from, bytes);
    return KC_OK;
}

/* Rows [r0, r1) of a copy2d; one memmove when both sides are dense. */
static inline void kc_host_copy_rows(char *dst, size_t ldd, const char *src, size_t lds, size_t r0,
                                     size_t r1, size_t cols) {
    if (ldd == cols && lds == cols) {
        memmove(dst + r0 * cols * 4, src + r0 * cols * 4, (r1 - r0) * cols * 4);
        return;
    }
    for (size_t r = r0; r < r1; r++)
        memmove(dst + r * ldd * 4, src + r * lds * 4, cols * 4);
}

static inline int kc_host_copy2d(kc_device *d, kc_buf dst, size_t ldd, kc_buf src, size_t lds,
                                 size_t rows, size_t cols) {
    (void)d;
    kc_host_copy_rows(kc_host_ptr(dst), ldd, kc_host_ptr(src), lds, 0, rows, cols);
    return KC_OK;
}

static inline int kc_host_synchronize(kc_device *d) {
    (void)d;
    return KC_OK;
}

/* The single line of --list-devices for a backend that runs on this host. */
static inline int kc_host_list_devices(const char *device, char *buf, size_t n) {
    if (n) snprintf(buf, n, "0: %s\n", device);
    return 1;
}

#endif

/* cpu depthwise convolution: direct loops over NHWC with the channel as the
 * inner, contiguous (vectorised) axis: one pass over the input per output
 * row, no patch matrix. Threads split output rows (forward), input rows
 * (backward data, a gather, so no two threads write one cell) and kernel
 * taps (backward filter: each tap sums its output rows in float and the
 * rows in double, in a fixed order whatever the thread count). */
#include "core/cpu/cpu.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

static size_t pixel(const kc_conv2d_desc *d, int n, int y, int x, int h, int w, int ch) {
    (void)d;
    return (((size_t)n * h + y) * w + x) * ch;
}

/* The output coordinate whose tap k lands on input coordinate i, or -1. */
static int tap_source(int i, int k, int s, int dil, int pad, int on) {
    int t = i + pad - k * dil;
    if (t < 0 || t % s != 0) return -1;
    return t / s < on ? t / s : -1;
}

/* y[o] += x[o / m] w[o] over one pixel's oc outputs. */
static void madd_pixel(float *restrict y, const float *restrict x, const float *restrict w, int c,
                       int m) {
    if (m == 1) {
#pragma omp simd
        for (int i = 0; i < c; i++)
            y[i] += x[i] * w[i];
        return;
    }
    for (int i = 0; i < c; i++)
        for (int j = 0; j < m; j++)
            y[i * m + j] += x[i] * w[i * m + j];
}

static void forward_pixel(const kc_conv2d_desc *d, const float *x, const float *w, float *yp, int n,
                          int oy, int ox, int m) {
    memset(yp, 0, (size_t)d->oc * sizeof *yp);
    for (int ky = 0; ky < d->kh; ky++) {
        int iy = oy * d->sh + ky * d->dh - d->pad_t;
        if (iy < 0 || iy >= d->h) continue;
        for (int kx = 0; kx < d->kw; kx++) {
            int ix = ox * d->sw + kx * d->dw - d->pad_l;
            if (ix < 0 || ix >= d->w) continue;
            madd_pixel(yp, x + pixel(d, n, iy, ix, d->h, d->w, d->c),
                       w + ((size_t)ky * d->kw + kx) * d->oc, d->c, m);
        }
    }
}

void kc_cpu_depthwise_conv2d_forward(const kc_conv2d_desc *d, const float *x, const float *w,
                                     float *y) {
    int nt = kc_cpu_threads(), m = d->oc / d->c;
    size_t total = (size_t)d->n * d->oh * d->ow * d->oc * d->kh * d->kw;
#pragma omp parallel for schedule(static) num_threads(nt) if (total >= KC_CPU_PAR_MIN)
    for (int r = 0; r < d->n * d->oh; r++) {
        int n = r / d->oh, oy = r % d->oh;
        for (int ox = 0; ox < d->ow; ox++)
            forward_pixel(d, x, w, y + pixel(d, n, oy, ox, d->oh, d->ow, d->oc), n, oy, ox, m);
    }
}

/* dx[c] += sum_j dy[c m + j] w[c m + j] over one pixel's channels. */
static void dot_pixel(float *restrict dx, const float *restrict dy, const float *restrict w, int c,
                      int m) {
    if (m == 1) {
#pragma omp simd
        for (int i = 0; i < c; i++)
            dx[i] += dy[i] * w[i];
        return;
    }
    for (int i = 0; i < c; i++) {
        float s = 0.0f;
        for (int j = 0; j < m; j++)
            s += dy[i * m + j] * w[i * m + j];
        dx[i] += s;
    }
}

static void data_pixel(const kc_conv2d_desc *d, const float *dy, const float *w, float *dxp, int n,
                       int iy, int ix, int m) {
    memset(dxp, 0, (size_t)d->c * sizeof *dxp);
    for (int ky = 0; ky < d->kh; ky++) {
        int oy = tap_source(iy, ky, d->sh, d->dh, d->pad_t, d->oh);
        if (oy < 0) continue;
        for (int kx = 0; kx < d->kw; kx++) {
            int ox = tap_source(ix, kx, d->sw, d->dw, d->pad_l, d->ow);
            if (ox < 0) continue;
            dot_pixel(dxp, dy + pixel(d, n, oy, ox, d->oh, d->ow, d->oc),
                      w + ((size_t)ky * d->kw + kx) * d->oc, d->c, m);
        }
    }
}

void kc_cpu_depthwise_conv2d_backward_data(const kc_conv2d_desc *d, const float *dy, const float *w,
                                           float *dx) {
    int nt = kc_cpu_threads(), m = d->oc / d->c;
    size_t total = (size_t)d->n * d->h * d->w * d->oc * d->kh * d->kw;
#pragma omp parallel for schedule(static) num_threads(nt) if (total >= KC_CPU_PAR_MIN)
    for (int r = 0; r < d->n * d->h; r++) {
        int n = r / d->h, iy = r % d->h;
        for (int ix = 0; ix < d->w; ix++)
            data_pixel(d, dy, w, dx + pixel(d, n, iy, ix, d->h, d->w, d->c), n, iy, ix, m);
    }
}

/* part[o] += x[o / m] dy[o] over one pixel. */
static void filter_pixel(float *restrict part, const float *restrict x, const float *restrict dy,
                         int oc, int m) {
    if (m == 1) {
#pragma omp simd
        for (int o = 0; o < oc; o++)
            part[o] += x[o] * dy[o];
        return;
    }
    for (int o = 0; o < oc; o++)
        part[o] += x[o / m] * dy[o];
}

/* acc[o] += x[o / m] dy[o] over every output pixel whose tap (ky, kx) reads
 * a real cell: each output row summed in float (part), the rows in double. */
static void filter_tap(const kc_conv2d_desc *d, const float *x, const float *dy, int ky, int kx,
                       int m, double *restrict acc, float *restrict part) {
    for (int n = 0; n < d->n; n++)
        for (int oy = 0; oy < d->oh; oy++) {
            int iy = oy * d->sh + ky * d->dh - d->pad_t;
            if (iy < 0 || iy >= d->h) continue;
            memset(part, 0, (size_t)d->oc * sizeof *part);
            for (int ox = 0; ox < d->ow; ox++) {
                int ix = ox * d->sw + kx * d->dw - d->pad_l;
                if (ix < 0 || ix >= d->w) continue;
                filter_pixel(part, x + pixel(d, n, iy, ix, d->h, d->w, d->c),
                             dy + pixel(d, n, oy, ox, d->oh, d->ow, d->oc), d->oc, m);
            }
            for (int o = 0; o < d->oc; o++)
                acc[o] += part[o];
        }
}

int kc_cpu_depthwise_conv2d_backward_filter(const kc_conv2d_desc *d, const float *x,
                                            const float *dy, float *dw, float beta) {
    int nt = kc_cpu_threads(), m = d->oc / d->c, taps = d->kh * d->kw, failed = 0;
    size_t total = (size_t)d->n * d->oh * d->ow * d->oc * taps;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (total >= KC_CPU_PAR_MIN)         \
    reduction(||                                                                                   \
              : failed)
    for (int t = 0; t < taps; t++) {
        double *acc = calloc((size_t)d->oc, sizeof *acc);
        float *part = malloc((size_t)d->oc * sizeof *part);
        if (!acc || !part) {
            free(acc), free(part);
            failed = 1;
            continue;
        }
        filter_tap(d, x, dy, t / d->kw, t % d->kw, m, acc, part);
        float *wt = dw + (size_t)t * d->oc;
        for (int o = 0; o < d->oc; o++)
            wt[o] = (float)((beta == 0.0f ? 0.0 : (double)beta * wt[o]) + acc[o]);
        free(acc), free(part);
    }
    return failed ? -1 : 0;
}

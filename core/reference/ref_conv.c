/* Reference convolution and pooling: direct loops over the definitions in
 * core/backend.h. Every gradient is written as a gather (each output element
 * sums what reaches it), so no op depends on a scatter order. */
#include "core/reference/ref.h"

#include <stddef.h>

static size_t nhwc(int n, int y, int x, int c, int h, int w, int ch) {
    return (((size_t)n * h + y) * w + x) * ch + c;
}

static size_t hwio(const kc_conv2d_desc *d, int ky, int kx, int c, int o) {
    return (((size_t)ky * d->kw + kx) * d->c + c) * d->oc + o;
}

size_t kc_ref_conv2d_workspace(const kc_conv2d_desc *d) {
    (void)d;
    return 0;
}

void kc_ref_conv2d_forward(const kc_conv2d_desc *d, const float *x, const float *w, float *y,
                           void *ws) {
    (void)ws;
    for (int n = 0; n < d->n; n++)
        for (int oy = 0; oy < d->oh; oy++)
            for (int ox = 0; ox < d->ow; ox++)
                for (int o = 0; o < d->oc; o++) {
                    double s = 0;
                    for (int ky = 0; ky < d->kh; ky++) {
                        int iy = oy * d->sh + ky * d->dh - d->pad_t;
                        if (iy < 0 || iy >= d->h) continue;
                        for (int kx = 0; kx < d->kw; kx++) {
                            int ix = ox * d->sw + kx * d->dw - d->pad_l;
                            if (ix < 0 || ix >= d->w) continue;
                            for (int c = 0; c < d->c; c++)
                                s += (double)x[nhwc(n, iy, ix, c, d->h, d->w, d->c)] *
                                     w[hwio(d, ky, kx, c, o)];
                        }
                    }
                    y[nhwc(n, oy, ox, o, d->oh, d->ow, d->oc)] = (float)s;
                }
}

/* The output coordinate whose tap k lands on input coordinate i, or -1:
 * i = o*s + k*dil - pad must hold exactly with 0 <= o < on. */
static int tap_source(int i, int k, int s, int dil, int pad, int on) {
    int t = i + pad - k * dil;
    if (t < 0 || t % s != 0) return -1;
    return t / s < on ? t / s : -1;
}

void kc_ref_conv2d_backward_data(const kc_conv2d_desc *d, const float *dy, const float *w,
                                 float *dx, void *ws) {
    (void)ws;
    for (int n = 0; n < d->n; n++)
        for (int iy = 0; iy < d->h; iy++)
            for (int ix = 0; ix < d->w; ix++)
                for (int c = 0; c < d->c; c++) {
                    double s = 0;
                    for (int ky = 0; ky < d->kh; ky++) {
                        int oy = tap_source(iy, ky, d->sh, d->dh, d->pad_t, d->oh);
                        if (oy < 0) continue;
                        for (int kx = 0; kx < d->kw; kx++) {
                            int ox = tap_source(ix, kx, d->sw, d->dw, d->pad_l, d->ow);
                            if (ox < 0) continue;
                            for (int o = 0; o < d->oc; o++)
                                s += (double)dy[nhwc(n, oy, ox, o, d->oh, d->ow, d->oc)] *
                                     w[hwio(d, ky, kx, c, o)];
                        }
                    }
                    dx[nhwc(n, iy, ix, c, d->h, d->w, d->c)] = (float)s;
                }
}

static double filter_grad_at(const kc_conv2d_desc *d, const float *x, const float *dy, int ky,
                             int kx, int c, int o) {
    double s = 0;
    for (int n = 0; n < d->n; n++)
        for (int oy = 0; oy < d->oh; oy++) {
            int iy = oy * d->sh + ky * d->dh - d->pad_t;
            if (iy < 0 || iy >= d->h) continue;
            for (int ox = 0; ox < d->ow; ox++) {
                int ix = ox * d->sw + kx * d->dw - d->pad_l;
                if (ix < 0 || ix >= d->w) continue;
                s += (double)x[nhwc(n, iy, ix, c, d->h, d->w, d->c)] *
                     dy[nhwc(n, oy, ox, o, d->oh, d->ow, d->oc)];
            }
        }
    return s;
}

void kc_ref_conv2d_backward_filter(const kc_conv2d_desc *d, const float *x, const float *dy,
                                   float *dw, float beta, void *ws) {
    (void)ws;
    for (int ky = 0; ky < d->kh; ky++)
        for (int kx = 0; kx < d->kw; kx++)
            for (int c = 0; c < d->c; c++)
                for (int o = 0; o < d->oc; o++) {
                    float *t = &dw[hwio(d, ky, kx, c, o)];
                    double prev = beta == 0.0f ? 0.0 : (double)beta * *t;
                    *t = (float)(prev + filter_grad_at(d, x, dy, ky, kx, c, o));
                }
}

/* The real input rows [*lo, *hi) covered by the window of output row o. */
static void window(int o, int s, int pad, int p, int in, int *lo, int *hi) {
    int start = o * s - pad;
    *lo = start < 0 ? 0 : start;
    *hi = start + p > in ? in : start + p;
}

/* A window with no real cell (possible only with unusual padding) gives 0
 * and argmax -1. Ties keep the first cell in row-major window order. */
void kc_ref_maxpool2d_forward(const kc_pool2d_desc *d, const float *x, float *y, int32_t *argmax) {
    for (int n = 0; n < d->n; n++)
        for (int oy = 0; oy < d->oh; oy++)
            for (int ox = 0; ox < d->ow; ox++)
                for (int c = 0; c < d->c; c++) {
                    int y0, y1, x0, x1;
                    window(oy, d->sh, d->pad_t, d->ph, d->h, &y0, &y1);
                    window(ox, d->sw, d->pad_l, d->pw, d->w, &x0, &x1);
                    long best_i = -1;
                    for (int iy = y0; iy < y1; iy++)
                        for (int ix = x0; ix < x1; ix++) {
                            size_t i = nhwc(n, iy, ix, c, d->h, d->w, d->c);
                            if (best_i < 0 || x[i] > x[best_i]) best_i = (long)i;
                        }
                    size_t out = nhwc(n, oy, ox, c, d->oh, d->ow, d->c);
                    y[out] = best_i < 0 ? 0.0f : x[best_i];
                    argmax[out] = (int32_t)best_i;
                }
}

void kc_ref_maxpool2d_backward(const kc_pool2d_desc *d, const float *dy, const int32_t *argmax,
                               float *dx) {
    size_t in_n = (size_t)d->n * d->h * d->w * d->c;
    size_t out_n = (size_t)d->n * d->oh * d->ow * d->c;
    for (size_t i = 0; i < in_n; i++)
        dx[i] = 0.0f;
    for (size_t o = 0; o < out_n; o++)
        if (argmax[o] >= 0 && (size_t)argmax[o] < in_n) dx[argmax[o]] += dy[o];
}

void kc_ref_avgpool2d_forward(const kc_pool2d_desc *d, const float *x, float *y) {
    for (int n = 0; n < d->n; n++)
        for (int oy = 0; oy < d->oh; oy++)
            for (int ox = 0; ox < d->ow; ox++)
                for (int c = 0; c < d->c; c++) {
                    int y0, y1, x0, x1;
                    window(oy, d->sh, d->pad_t, d->ph, d->h, &y0, &y1);
                    window(ox, d->sw, d->pad_l, d->pw, d->w, &x0, &x1);
                    double s = 0;
                    int count = 0;
                    for (int iy = y0; iy < y1; iy++)
                        for (int ix = x0; ix < x1; ix++, count++)
                            s += x[nhwc(n, iy, ix, c, d->h, d->w, d->c)];
                    y[nhwc(n, oy, ox, c, d->oh, d->ow, d->c)] = count ? (float)(s / count) : 0.0f;
                }
}

static int real_count(int o, int s, int pad, int p, int in) {
    int lo, hi;
    window(o, s, pad, p, in, &lo, &hi);
    return hi > lo ? hi - lo : 0;
}

static int floor_div(int a, int b) {
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* The output coordinates [*lo, *hi) whose windows cover input coordinate i:
 * o*s - pad <= i < o*s - pad + p. */
static void covering(int i, int s, int pad, int p, int on, int *lo, int *hi) {
    int first = floor_div(i + pad - p, s) + 1, last = floor_div(i + pad, s);
    *lo = first < 0 ? 0 : first;
    *hi = last + 1 > on ? on : last + 1;
}

/* Each input cell gathers dy / count from every window that covers it. */
void kc_ref_avgpool2d_backward(const kc_pool2d_desc *d, const float *dy, float *dx) {
    for (int n = 0; n < d->n; n++)
        for (int iy = 0; iy < d->h; iy++)
            for (int ix = 0; ix < d->w; ix++)
                for (int c = 0; c < d->c; c++) {
                    int oy0, oy1, ox0, ox1;
                    covering(iy, d->sh, d->pad_t, d->ph, d->oh, &oy0, &oy1);
                    covering(ix, d->sw, d->pad_l, d->pw, d->ow, &ox0, &ox1);
                    double s = 0;
                    for (int oy = oy0; oy < oy1; oy++)
                        for (int ox = ox0; ox < ox1; ox++) {
                            int count = real_count(oy, d->sh, d->pad_t, d->ph, d->h) *
                                        real_count(ox, d->sw, d->pad_l, d->pw, d->w);
                            s += (double)dy[nhwc(n, oy, ox, c, d->oh, d->ow, d->c)] / count;
                        }
                    dx[nhwc(n, iy, ix, c, d->h, d->w, d->c)] = (float)s;
                }
}

/* ---- depthwise convolution: oc = c * m, kernel (kh, kw, c, m) ---- */

static size_t dw_index(const kc_conv2d_desc *d, int ky, int kx, int o) {
    return ((size_t)ky * d->kw + kx) * d->oc + o;
}

void kc_ref_depthwise_conv2d_forward(const kc_conv2d_desc *d, const float *x, const float *w,
                                     float *y) {
    int m = d->oc / d->c;
    for (int n = 0; n < d->n; n++)
        for (int oy = 0; oy < d->oh; oy++)
            for (int ox = 0; ox < d->ow; ox++)
                for (int o = 0; o < d->oc; o++) {
                    double s = 0;
                    for (int ky = 0; ky < d->kh; ky++) {
                        int iy = oy * d->sh + ky * d->dh - d->pad_t;
                        if (iy < 0 || iy >= d->h) continue;
                        for (int kx = 0; kx < d->kw; kx++) {
                            int ix = ox * d->sw + kx * d->dw - d->pad_l;
                            if (ix < 0 || ix >= d->w) continue;
                            s += (double)x[nhwc(n, iy, ix, o / m, d->h, d->w, d->c)] *
                                 w[dw_index(d, ky, kx, o)];
                        }
                    }
                    y[nhwc(n, oy, ox, o, d->oh, d->ow, d->oc)] = (float)s;
                }
}

static double dw_data_at(const kc_conv2d_desc *d, const float *dy, const float *w, int n, int iy,
                         int ix, int c) {
    int m = d->oc / d->c;
    double s = 0;
    for (int ky = 0; ky < d->kh; ky++) {
        int oy = tap_source(iy, ky, d->sh, d->dh, d->pad_t, d->oh);
        if (oy < 0) continue;
        for (int kx = 0; kx < d->kw; kx++) {
            int ox = tap_source(ix, kx, d->sw, d->dw, d->pad_l, d->ow);
            if (ox < 0) continue;
            for (int j = 0; j < m; j++)
                s += (double)dy[nhwc(n, oy, ox, c * m + j, d->oh, d->ow, d->oc)] *
                     w[dw_index(d, ky, kx, c * m + j)];
        }
    }
    return s;
}

void kc_ref_depthwise_conv2d_backward_data(const kc_conv2d_desc *d, const float *dy, const float *w,
                                           float *dx) {
    for (int n = 0; n < d->n; n++)
        for (int iy = 0; iy < d->h; iy++)
            for (int ix = 0; ix < d->w; ix++)
                for (int c = 0; c < d->c; c++)
                    dx[nhwc(n, iy, ix, c, d->h, d->w, d->c)] =
                        (float)dw_data_at(d, dy, w, n, iy, ix, c);
}

void kc_ref_depthwise_conv2d_backward_filter(const kc_conv2d_desc *d, const float *x,
                                             const float *dy, float *dw, float beta) {
    int m = d->oc / d->c;
    for (int ky = 0; ky < d->kh; ky++)
        for (int kx = 0; kx < d->kw; kx++)
            for (int o = 0; o < d->oc; o++) {
                double s = 0;
                for (int n = 0; n < d->n; n++)
                    for (int oy = 0; oy < d->oh; oy++) {
                        int iy = oy * d->sh + ky * d->dh - d->pad_t;
                        if (iy < 0 || iy >= d->h) continue;
                        for (int ox = 0; ox < d->ow; ox++) {
                            int ix = ox * d->sw + kx * d->dw - d->pad_l;
                            if (ix < 0 || ix >= d->w) continue;
                            s += (double)x[nhwc(n, iy, ix, o / m, d->h, d->w, d->c)] *
                                 dy[nhwc(n, oy, ox, o, d->oh, d->ow, d->oc)];
                        }
                    }
                float *t = &dw[dw_index(d, ky, kx, o)];
                double prev = beta == 0.0f ? 0.0 : (double)beta * *t;
                *t = (float)(prev + s);
            }
}

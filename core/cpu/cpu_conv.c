/* cpu convolution as im2col + sgemm. With NHWC input and an HWIO kernel, the
 * patch matrix of a batch chunk has one row per output pixel and kh*kw*c
 * columns in kernel order, so:
 *   forward          y    = col  . W          (pixels x oc)
 *   backward filter  dW  += colT . dy         (kh*kw*c x oc)
 *   backward data    dcol = dy   . WT, then each input pixel gathers its taps.
 * The workspace holds the patch matrix of one chunk of images. Chunks are
 * sized from the shape alone (never from the thread count), so the filter
 * gradient always adds its chunks in the same order. A 1x1, stride-1,
 * unpadded convolution needs no patch matrix: the input already is one. */
#include "core/cpu/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Patch-matrix bytes per chunk: large enough for efficient sgemm shapes,
 * small enough to stay in the last-level cache on common parts. */
#define CONV_CHUNK_BYTES ((size_t)8 << 20)

typedef struct conv_plan {
    size_t k;      /* patch length kh*kw*c */
    size_t pixels; /* output pixels per image */
    int chunk;     /* images per chunk */
    int direct;    /* the input is its own patch matrix */
} conv_plan;

static conv_plan make_plan(const kc_conv2d_desc *d) {
    conv_plan p;
    p.k = (size_t)d->kh * d->kw * d->c;
    p.pixels = (size_t)d->oh * d->ow;
    p.direct = d->kh == 1 && d->kw == 1 && d->sh == 1 && d->sw == 1 && d->pad_t == 0 &&
               d->pad_l == 0 && d->oh == d->h && d->ow == d->w;
    size_t per_image = p.k * p.pixels * sizeof(float);
    size_t fit = per_image ? CONV_CHUNK_BYTES / per_image : (size_t)d->n;
    p.chunk = fit < 1 ? 1 : (fit > (size_t)d->n ? d->n : (int)fit);
    return p;
}

/* a*b*c*d elements, or 0 if any extent is not positive */
static size_t extent4(int a, int b, int c, int d) {
    return a > 0 && b > 0 && c > 0 && d > 0 ? (size_t)a * b * c * d : 0;
}

static int conv_empty(const kc_conv2d_desc *d) {
    return d->n <= 0 || d->oh <= 0 || d->ow <= 0 || d->oc <= 0 || d->h <= 0 || d->w <= 0 ||
           d->c <= 0 || d->kh <= 0 || d->kw <= 0;
}

size_t kc_cpu_conv2d_workspace(const kc_conv2d_desc *d) {
    if (conv_empty(d)) return 0;
    conv_plan p = make_plan(d);
    return p.direct ? 0 : (size_t)p.chunk * p.pixels * p.k * sizeof(float);
}

/* Scratch for callers that pass none; NULL only if memory is exhausted. */
static float *scratch(const kc_conv2d_desc *d, void *ws, int *owned) {
    *owned = 0;
    size_t bytes = kc_cpu_conv2d_workspace(d);
    if (ws || bytes == 0) return ws;
    *owned = 1;
    return malloc(bytes);
}

static void zero(float *p, size_t n) {
    if (n) memset(p, 0, n * sizeof(float));
}

static void fill_nan(float *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        p[i] = NAN;
}

/* Patch rows for nb images starting at x: row (n, oy, ox), column (ky, kx, c). */
static void im2col(const kc_conv2d_desc *d, const float *x, int nb, float *col) {
    size_t k = (size_t)d->kh * d->kw * d->c, img = (size_t)d->h * d->w * d->c;
    int rows = nb * d->oh, c = d->c, nt = kc_cpu_threads();
    size_t total = (size_t)rows * d->ow * k;
#pragma omp parallel for schedule(static) num_threads(nt) if (total >= KC_CPU_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        int n = r / d->oh, oy = r % d->oh;
        const float *xn = x + (size_t)n * img;
        float *dst = col + (size_t)r * d->ow * k;
        for (int ox = 0; ox < d->ow; ox++)
            for (int ky = 0; ky < d->kh; ky++) {
                int iy = oy * d->sh + ky * d->dh - d->pad_t;
                for (int kx = 0; kx < d->kw; kx++, dst += c) {
                    int ix = ox * d->sw + kx * d->dw - d->pad_l;
                    if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w) {
                        for (int ch = 0; ch < c; ch++)
                            dst[ch] = 0.0f;
                        continue;
                    }
                    const float *src = xn + ((size_t)iy * d->w + ix) * c;
                    for (int ch = 0; ch < c; ch++)
                        dst[ch] = src[ch];
                }
            }
    }
}

/* The output coordinate whose tap k reads input coordinate i, or -1. */
static inline int tap_source(int i, int k, int s, int dil, int pad, int on) {
    int t = i + pad - k * dil;
    if (t < 0 || t % s != 0) return -1;
    return t / s < on ? t / s : -1;
}

/* dx for nb images from their patch-matrix gradient: every input pixel sums
 * its taps in kernel order, so each thread owns whole rows of dx. */
static void col2im_gather(const kc_conv2d_desc *d, const float *col, int nb, float *dx) {
    size_t k = (size_t)d->kh * d->kw * d->c;
    int rows = nb * d->h, c = d->c, nt = kc_cpu_threads();
    size_t total = (size_t)rows * d->w * k;
#pragma omp parallel for schedule(static) num_threads(nt) if (total >= KC_CPU_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        int n = r / d->h, iy = r % d->h;
        float *dst = dx + (size_t)r * d->w * c;
        for (int ix = 0; ix < d->w; ix++, dst += c) {
            for (int ch = 0; ch < c; ch++)
                dst[ch] = 0.0f;
            for (int ky = 0; ky < d->kh; ky++) {
                int oy = tap_source(iy, ky, d->sh, d->dh, d->pad_t, d->oh);
                if (oy < 0) continue;
                for (int kx = 0; kx < d->kw; kx++) {
                    int ox = tap_source(ix, kx, d->sw, d->dw, d->pad_l, d->ow);
                    if (ox < 0) continue;
                    const float *src = col + (((size_t)n * d->oh + oy) * d->ow + ox) * k +
                                       ((size_t)ky * d->kw + kx) * c;
                    for (int ch = 0; ch < c; ch++)
                        dst[ch] += src[ch];
                }
            }
        }
    }
}

void kc_cpu_conv2d_forward(const kc_conv2d_desc *d, const float *x, const float *w, float *y,
                           void *ws) {
    if (conv_empty(d)) { /* no terms: zeros */
        zero(y, extent4(d->n, d->oh, d->ow, d->oc));
        return;
    }
    conv_plan p = make_plan(d);
    size_t in_img = (size_t)d->h * d->w * d->c, out_img = p.pixels * d->oc;
    if (p.direct) {
        kc_cpu_gemm(0, 0, d->n * (int)p.pixels, d->oc, d->c, 1.0f, x, d->c, w, d->oc, 0.0f, y,
                    d->oc);
        return;
    }
    int owned;
    float *col = scratch(d, ws, &owned);
    if (!col) {
        fill_nan(y, (size_t)d->n * out_img);
        return;
    }
    for (int n0 = 0; n0 < d->n; n0 += p.chunk) {
        int nb = d->n - n0 < p.chunk ? d->n - n0 : p.chunk;
        im2col(d, x + n0 * in_img, nb, col);
        kc_cpu_gemm(0, 0, nb * (int)p.pixels, d->oc, (int)p.k, 1.0f, col, (int)p.k, w, d->oc, 0.0f,
                    y + n0 * out_img, d->oc);
    }
    if (owned) free(col);
}

void kc_cpu_conv2d_backward_data(const kc_conv2d_desc *d, const float *dy, const float *w,
                                 float *dx, void *ws) {
    if (conv_empty(d)) {
        zero(dx, extent4(d->n, d->h, d->w, d->c));
        return;
    }
    conv_plan p = make_plan(d);
    size_t in_img = (size_t)d->h * d->w * d->c, out_img = p.pixels * d->oc;
    if (p.direct) {
        kc_cpu_gemm(0, 1, d->n * (int)p.pixels, d->c, d->oc, 1.0f, dy, d->oc, w, d->oc, 0.0f, dx,
                    d->c);
        return;
    }
    int owned;
    float *col = scratch(d, ws, &owned);
    if (!col) {
        fill_nan(dx, (size_t)d->n * in_img);
        return;
    }
    for (int n0 = 0; n0 < d->n; n0 += p.chunk) {
        int nb = d->n - n0 < p.chunk ? d->n - n0 : p.chunk;
        kc_cpu_gemm(0, 1, nb * (int)p.pixels, (int)p.k, d->oc, 1.0f, dy + n0 * out_img, d->oc, w,
                    d->oc, 0.0f, col, (int)p.k);
        col2im_gather(d, col, nb, dx + n0 * in_img);
    }
    if (owned) free(col);
}

void kc_cpu_conv2d_backward_filter(const kc_conv2d_desc *d, const float *x, const float *dy,
                                   float *dw, float beta, void *ws) {
    size_t wn = extent4(d->kh, d->kw, d->c, d->oc);
    if (conv_empty(d)) { /* no terms: dw = beta dw */
        for (size_t i = 0; i < wn; i++)
            dw[i] = beta == 0.0f ? 0.0f : beta * dw[i];
        return;
    }
    conv_plan p = make_plan(d);
    size_t in_img = (size_t)d->h * d->w * d->c, out_img = p.pixels * d->oc;
    if (p.direct) {
        kc_cpu_gemm(1, 0, d->c, d->oc, d->n * (int)p.pixels, 1.0f, x, d->c, dy, d->oc, beta, dw,
                    d->oc);
        return;
    }
    int owned;
    float *col = scratch(d, ws, &owned);
    if (!col) {
        fill_nan(dw, wn);
        return;
    }
    for (int n0 = 0; n0 < d->n; n0 += p.chunk) {
        int nb = d->n - n0 < p.chunk ? d->n - n0 : p.chunk;
        im2col(d, x + n0 * in_img, nb, col);
        kc_cpu_gemm(1, 0, (int)p.k, d->oc, nb * (int)p.pixels, 1.0f, col, (int)p.k,
                    dy + n0 * out_img, d->oc, n0 == 0 ? beta : 1.0f, dw, d->oc);
    }
    if (owned) free(col);
}

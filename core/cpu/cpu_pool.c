/* cpu pooling: threads take rows of output pixels (or whole images for the
 * scattering backward passes); the channel loop is innermost and contiguous.
 * Windows cover only real cells, with the tie rule of the reference backend:
 * the first maximum in row-major window order wins. */
#include "core/cpu/cpu.h"

#include <stdint.h>
#include <string.h>

/* The real input rows [*lo, *hi) under the window of output row o. */
static inline void window(int o, int s, int pad, int p, int in, int *lo, int *hi) {
    int start = o * s - pad;
    *lo = start < 0 ? 0 : start;
    *hi = start + p > in ? in : start + p;
}

static size_t pool_in_size(const kc_pool2d_desc *d) {
    return d->n > 0 && d->h > 0 && d->w > 0 && d->c > 0 ? (size_t)d->n * d->h * d->w * d->c : 0;
}

static size_t pool_out_size(const kc_pool2d_desc *d) {
    return d->n > 0 && d->oh > 0 && d->ow > 0 && d->c > 0 ? (size_t)d->n * d->oh * d->ow * d->c : 0;
}

/* One output pixel: channels compared in parallel, cells in window order. */
static void max_cell(const kc_pool2d_desc *d, const float *x, int n, int oy, int ox, float *y,
                     int32_t *arg) {
    int y0, y1, x0, x1, c = d->c;
    window(oy, d->sh, d->pad_t, d->ph, d->h, &y0, &y1);
    window(ox, d->sw, d->pad_l, d->pw, d->w, &x0, &x1);
    if (y0 >= y1 || x0 >= x1) {
        for (int ch = 0; ch < c; ch++)
            y[ch] = 0.0f, arg[ch] = -1;
        return;
    }
    size_t base = (((size_t)n * d->h + y0) * d->w + x0) * c;
    for (int ch = 0; ch < c; ch++)
        y[ch] = x[base + ch], arg[ch] = (int32_t)(base + ch);
    for (int iy = y0; iy < y1; iy++)
        for (int ix = x0; ix < x1; ix++) {
            size_t at = (((size_t)n * d->h + iy) * d->w + ix) * c;
            for (int ch = 0; ch < c; ch++)
                if (x[at + ch] > y[ch]) y[ch] = x[at + ch], arg[ch] = (int32_t)(at + ch);
        }
}

/* Non-overlapping windows that all lie inside the input (stride = pool size,
 * no padding; trailing rows/columns no window covers are allowed): every
 * input cell belongs to at most one window, which the kernels below use. */
static int pool_tiled(const kc_pool2d_desc *d) {
    return d->sh == d->ph && d->sw == d->pw && d->pad_t == 0 && d->pad_l == 0 &&
           d->oh * d->sh <= d->h && d->ow * d->sw <= d->w;
}

/* Eight channels at a time in vector registers (GCC vector extensions, one
 * clone per instruction set chosen at load time), the rest one by one. */
/* the helpers below are always inlined into the clones, never called across an ABI boundary */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
static const v8i iota8 = {0, 1, 2, 3, 4, 5, 6, 7};

static inline v8f load8(const float *p) {
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline v8i load8i(const int32_t *p) {
    v8i v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* One output pixel of a window known to be inside the input: the first cell
 * initialises, later cells replace only on a strictly greater value, so the
 * first maximum in row-major order wins as in max_cell. */
static inline __attribute__((always_inline)) void
max_window(const float *x, size_t base, int ph, int pw, int w, int c, float *y, int32_t *arg) {
    int ch = 0;
    for (; ch + 8 <= c; ch += 8) {
        v8f best = load8(x + base + ch);
        v8i at_best = iota8 + (int32_t)(base + ch);
        for (int iy = 0; iy < ph; iy++)
            for (int ix = iy == 0 ? 1 : 0; ix < pw; ix++) {
                int32_t at = (int32_t)(base + ((size_t)iy * w + ix) * c + ch);
                v8f v = load8(x + at);
                v8i gt = v > best;
                best = (v8f)(((v8i)v & gt) | ((v8i)best & ~gt));
                at_best = ((iota8 + at) & gt) | (at_best & ~gt);
            }
        memcpy(y + ch, &best, sizeof best);
        memcpy(arg + ch, &at_best, sizeof at_best);
    }
    for (; ch < c; ch++) {
        float best = x[base + ch];
        int32_t at_best = (int32_t)(base + ch);
        for (int iy = 0; iy < ph; iy++)
            for (int ix = iy == 0 ? 1 : 0; ix < pw; ix++) {
                size_t at = base + ((size_t)iy * w + ix) * c + ch;
                if (x[at] > best) best = x[at], at_best = (int32_t)at;
            }
        y[ch] = best;
        arg[ch] = at_best;
    }
}

/* The ow windows of one output row, the first starting at input offset
 * base; one call per row keeps the clone dispatch out of the pixel loop. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
max_window_row(const float *x, size_t base, int ow, int ph, int pw, int w, int c, float *y,
               int32_t *arg) {
    if (ph == 2 && pw == 2) { /* the common pool, its window loop unrolled */
        for (int ox = 0; ox < ow; ox++)
            max_window(x, base + (size_t)ox * 2 * c, 2, 2, w, c, y + (size_t)ox * c,
                       arg + (size_t)ox * c);
        return;
    }
    for (int ox = 0; ox < ow; ox++)
        max_window(x, base + (size_t)ox * pw * c, ph, pw, w, c, y + (size_t)ox * c,
                   arg + (size_t)ox * c);
}

/* dst[ch] = dy[ch] where the window's maximum was input cell at + ch, else 0. */
static inline __attribute__((always_inline)) void max_route(const float *dy, const int32_t *arg,
                                                            int32_t at, int c, float *dst) {
    int ch = 0;
    for (; ch + 8 <= c; ch += 8) {
        v8i hit = load8i(arg + ch) == iota8 + (at + ch);
        v8f g = (v8f)((v8i)load8(dy + ch) & hit);
        memcpy(dst + ch, &g, sizeof g);
    }
    for (; ch < c; ch++)
        dst[ch] = arg[ch] == at + ch ? dy[ch] : 0.0f;
}

void kc_cpu_maxpool2d_forward(const kc_pool2d_desc *d, const float *x, float *y, int32_t *argmax) {
    int rows = d->n * d->oh, nt = kc_cpu_threads();
    if (pool_out_size(d) == 0) return;
    int tiled = pool_tiled(d);
#pragma omp parallel for schedule(static)                                                          \
    num_threads(nt) if (pool_out_size(d) >= KC_CPU_PAR_MIN / 4)
    for (int r = 0; r < rows; r++) {
        int n = r / d->oh, oy = r % d->oh;
        size_t out = (size_t)r * d->ow * d->c;
        if (tiled) {
            max_window_row(x, ((size_t)n * d->h + (size_t)oy * d->sh) * d->w * d->c, d->ow, d->ph,
                           d->pw, d->w, d->c, y + out, argmax + out);
            continue;
        }
        for (int ox = 0; ox < d->ow; ox++)
            max_cell(d, x, n, oy, ox, y + out + (size_t)ox * d->c,
                     argmax + out + (size_t)ox * d->c);
    }
}

/* One input row under the output row whose gradients and argmax start at
 * g and arg: each cell takes its window's gradient if it was the maximum,
 * else zero; the columns no window covers get zero. at is the row's first
 * input index. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
max_route_row(const float *g, const int32_t *arg, int32_t at, int ow, int pw, int w, int c,
              float *dst) {
    for (int ox = 0; ox < ow; ox++)
        for (int kx = 0; kx < pw; kx++) {
            int ix = ox * pw + kx;
            max_route(g + (size_t)ox * c, arg + (size_t)ox * c, at + ix * c, c,
                      dst + (size_t)ix * c);
        }
    if (ow * pw < w)
        memset(dst + (size_t)ow * pw * c, 0, (size_t)(w - ow * pw) * c * sizeof(float));
}

/* Tiled windows: each input cell takes its window's gradient if it was the
 * maximum, else zero; one pass writes dx without clearing it first. */
static void max_backward_tiled(const kc_pool2d_desc *d, const float *dy, const int32_t *argmax,
                               float *dx) {
    int rows = d->n * d->h, c = d->c, nt = kc_cpu_threads();
    size_t total = pool_in_size(d);
#pragma omp parallel for schedule(static) num_threads(nt) if (total >= KC_CPU_PAR_MIN / 4)
    for (int r = 0; r < rows; r++) {
        int n = r / d->h, iy = r % d->h, oy = iy / d->sh;
        float *dst = dx + (size_t)r * d->w * c;
        if (oy >= d->oh) {
            memset(dst, 0, (size_t)d->w * c * sizeof(float));
            continue;
        }
        size_t o = ((size_t)n * d->oh + oy) * d->ow * c;
        max_route_row(dy + o, argmax + o, (int32_t)((size_t)r * d->w * c), d->ow, d->sw, d->w, c,
                      dst);
    }
}

/* Each image's argmax points into its own input, so images are independent. */
void kc_cpu_maxpool2d_backward(const kc_pool2d_desc *d, const float *dy, const int32_t *argmax,
                               float *dx) {
    size_t in_n = pool_in_size(d), out_n = pool_out_size(d);
    if (out_n && in_n && in_n < INT32_MAX && pool_tiled(d)) {
        max_backward_tiled(d, dy, argmax, dx);
        return;
    }
    if (in_n) memset(dx, 0, in_n * sizeof(float));
    if (!out_n) return;
    size_t per_out = out_n / (size_t)d->n;
    int nt = kc_cpu_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (out_n >= KC_CPU_PAR_MIN / 4)
    for (int n = 0; n < d->n; n++)
        for (size_t o = (size_t)n * per_out; o < (size_t)(n + 1) * per_out; o++)
            if (argmax[o] >= 0 && (size_t)argmax[o] < in_n) dx[argmax[o]] += dy[o];
}

static void avg_cell(const kc_pool2d_desc *d, const float *x, int n, int oy, int ox, float *y) {
    int y0, y1, x0, x1, c = d->c;
    window(oy, d->sh, d->pad_t, d->ph, d->h, &y0, &y1);
    window(ox, d->sw, d->pad_l, d->pw, d->w, &x0, &x1);
    for (int ch = 0; ch < c; ch++)
        y[ch] = 0.0f;
    if (y0 >= y1 || x0 >= x1) return;
    for (int iy = y0; iy < y1; iy++)
        for (int ix = x0; ix < x1; ix++) {
            const float *src = x + (((size_t)n * d->h + iy) * d->w + ix) * c;
            for (int ch = 0; ch < c; ch++)
                y[ch] += src[ch];
        }
    float count = (float)((y1 - y0) * (x1 - x0));
    for (int ch = 0; ch < c; ch++)
        y[ch] /= count;
}

void kc_cpu_avgpool2d_forward(const kc_pool2d_desc *d, const float *x, float *y) {
    int rows = d->n * d->oh, nt = kc_cpu_threads();
    if (pool_out_size(d) == 0) return;
#pragma omp parallel for schedule(static)                                                          \
    num_threads(nt) if (pool_out_size(d) >= KC_CPU_PAR_MIN / 4)
    for (int r = 0; r < rows; r++) {
        int n = r / d->oh, oy = r % d->oh;
        for (int ox = 0; ox < d->ow; ox++)
            avg_cell(d, x, n, oy, ox, y + ((size_t)r * d->ow + ox) * d->c);
    }
}

/* Scatters dy / count over each window; an image's windows touch only that
 * image, so threads take whole images and the adding order is fixed. */
void kc_cpu_avgpool2d_backward(const kc_pool2d_desc *d, const float *dy, float *dx) {
    size_t in_n = pool_in_size(d);
    if (in_n) memset(dx, 0, in_n * sizeof(float));
    if (!pool_out_size(d)) return;
    int c = d->c, nt = kc_cpu_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (in_n >= KC_CPU_PAR_MIN / 4)
    for (int n = 0; n < d->n; n++)
        for (int oy = 0; oy < d->oh; oy++)
            for (int ox = 0; ox < d->ow; ox++) {
                int y0, y1, x0, x1;
                window(oy, d->sh, d->pad_t, d->ph, d->h, &y0, &y1);
                window(ox, d->sw, d->pad_l, d->pw, d->w, &x0, &x1);
                if (y0 >= y1 || x0 >= x1) continue;
                float count = (float)((y1 - y0) * (x1 - x0));
                const float *g = dy + (((size_t)n * d->oh + oy) * d->ow + ox) * c;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) {
                        float *dst = dx + (((size_t)n * d->h + iy) * d->w + ix) * c;
                        for (int ch = 0; ch < c; ch++)
                            dst[ch] += g[ch] / count;
                    }
            }
}

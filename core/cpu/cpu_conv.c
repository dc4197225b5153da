/* cpu convolution. Two paths:
 * - with AVX2 or AVX-512 (see cpu_igemm.c), the indirect GEMM reads the input
 *   through offset tables, so no patch matrix is built (the SIMD path below);
 * - otherwise im2col + sgemm. With NHWC input and an HWIO kernel, the patch
 *   matrix of a batch chunk has one row per output pixel and kh*kw*c columns
 *   in kernel order, so:
 *     forward          y    = col  . W          (pixels x oc)
 *     backward filter  dW  += colT . dy         (kh*kw*c x oc)
 *     backward data    dcol = dy   . WT, then each input pixel gathers its taps.
 *   The workspace holds the patch matrix of one chunk of images. Chunks are
 *   sized from the shape alone (never from the thread count), so the filter
 *   gradient always adds its chunks in the same order. A 1x1, stride-1,
 *   unpadded convolution needs no patch matrix: the input already is one.
 * The workspace is sized for either path, so the instruction set may be
 * lowered after planning (tests run both paths that way). */
#include "core/cpu/cpu.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
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

/* ---- the SIMD path: indirect GEMM over a (padded) input, no patch matrix ----
 * forward          y[p, o]   = sum_(ky,kx,c) xp[base(p) + koff(ky,kx,c)] w[(ky,kx,c), o]
 * backward filter  dw[t, o] += sum_p xp[base(p) + koff(t)] dy[p, o]
 * backward data    dcol = dy . w^T a few images at a time, gathered per input
 *                  pixel (see fast_backward_data below)
 * xp is the input with its "same" padding made real, so every tap is in
 * range; a valid convolution reads x itself. */

#define WS_ALIGN 64

static size_t align_up(size_t b) {
    return (b + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
}

typedef struct fast_geom {
    int hp, wp; /* extent of the input the windows read (padded or not) */
    int padded; /* xp is a zero-padded copy of x */
    int ok;     /* every offset fits an int */
} fast_geom;

static fast_geom fast_geometry(const kc_conv2d_desc *d) {
    fast_geom g;
    int reach_h = (d->oh - 1) * d->sh + (d->kh - 1) * d->dh + 1;
    int reach_w = (d->ow - 1) * d->sw + (d->kw - 1) * d->dw + 1;
    g.padded = d->pad_t > 0 || d->pad_l > 0 || reach_h > d->h || reach_w > d->w;
    g.hp = g.padded ? (reach_h > d->h + d->pad_t ? reach_h : d->h + d->pad_t) : d->h;
    g.wp = g.padded ? (reach_w > d->w + d->pad_l ? reach_w : d->w + d->pad_l) : d->w;
    double xp = (double)d->n * g.hp * g.wp * d->c;
    double pix = (double)d->n * d->oh * d->ow;
    double taps = (double)d->kh * d->kw * (d->c > d->oc ? d->c : d->oc);
    g.ok = xp < INT_MAX && pix < INT_MAX && taps < INT_MAX &&
           (double)d->n * d->h * d->w * d->c < INT_MAX;
    return g;
}

/* The filter gradient of a layer with few output tiles (few taps and
 * filters, many pixels: a first layer) would keep one thread busy over all
 * pixels. It is split instead into this many groups of whole images, whose
 * partial gradients are added in group order: the split depends on the shape
 * alone, so the sum does not depend on the thread count. */
#define FILTER_SPLIT_MAX 8
#define FILTER_SPLIT_TAPS 64     /* at most this many rows x 64-column blocks */
#define FILTER_SPLIT_PIXELS 4096 /* pixels per group, at least */

static int filter_groups(const kc_conv2d_desc *d) {
    long rows = (long)d->kh * d->kw * d->c, blocks = (d->oc + 63) / 64;
    long pixels = (long)d->n * d->oh * d->ow;
    if (rows * blocks > FILTER_SPLIT_TAPS) return 1;
    long groups = pixels / FILTER_SPLIT_PIXELS;
    if (groups > FILTER_SPLIT_MAX) groups = FILTER_SPLIT_MAX;
    if (groups > d->n) groups = d->n;
    return groups < 1 ? 1 : (int)groups;
}

/* Bytes of the forward / filter scratch: xp, tap offsets, pixel offsets and
 * the partial filter gradients. */
static size_t fast_ws_fwd(const kc_conv2d_desc *d, const fast_geom *g) {
    size_t xp = g->padded ? (size_t)d->n * g->hp * g->wp * d->c * sizeof(float) : 0;
    size_t taps = (size_t)d->kh * d->kw * d->c * sizeof(int);
    size_t pix = (size_t)d->n * d->oh * d->ow * sizeof(int);
    int groups = filter_groups(d);
    size_t parts = groups > 1 ? (size_t)groups * d->kh * d->kw * d->c * d->oc * sizeof(float) : 0;
    return align_up(xp) + align_up(taps) + align_up(pix) + align_up(parts);
}

static size_t dcol_ws(const kc_conv2d_desc *d);

static size_t im2col_ws(const kc_conv2d_desc *d) {
    conv_plan p = make_plan(d);
    return p.direct ? 0 : (size_t)p.chunk * p.pixels * p.k * sizeof(float);
}

/* Enough for either path, so the instruction set may change after planning. */
size_t kc_cpu_conv2d_workspace(const kc_conv2d_desc *d) {
    if (conv_empty(d)) return 0;
    size_t ws = im2col_ws(d);
    fast_geom g = fast_geometry(d);
    if (g.ok) {
        size_t f = fast_ws_fwd(d, &g);
        if (f > ws) ws = f;
        if (dcol_ws(d) > ws) ws = dcol_ws(d);
    }
    return ws;
}

/* Copies the n images of src (h x w x c) into dst (hp x wp x c) at (top, left), zeros around. */
static void pad_images(const float *src, int n, int h, int w, int c, float *dst, int hp, int wp,
                       int top, int left) {
    int nt = kc_cpu_threads();
    size_t total = (size_t)n * hp * wp * c;
#pragma omp parallel for schedule(static) num_threads(nt) if (total >= KC_CPU_PAR_MIN)
    for (int r = 0; r < n * hp; r++) {
        int img = r / hp, y = r % hp - top;
        float *row = dst + (size_t)r * wp * c;
        if (y < 0 || y >= h) {
            memset(row, 0, (size_t)wp * c * sizeof(float));
            continue;
        }
        size_t lead = (size_t)left * c, body = (size_t)w * c;
        size_t tail = (size_t)wp * c - lead - body;
        if (lead) memset(row, 0, lead * sizeof(float));
        memcpy(row + lead, src + ((size_t)img * h + y) * w * c, body * sizeof(float));
        if (tail) memset(row + lead + body, 0, tail * sizeof(float));
    }
}

/* offsets of the taps (ky, kx, ch) in an image of width wp with ch channels */
static void tap_offsets(int *koff, int kh, int kw, int dh, int dw, int wp, int ch) {
    int t = 0;
    for (int ky = 0; ky < kh; ky++)
        for (int kx = 0; kx < kw; kx++)
            for (int c = 0; c < ch; c++)
                koff[t++] = ((ky * dh) * wp + kx * dw) * ch + c;
}

/* offsets of the windows' top-left corners for an oh x ow output of n images */
static void pixel_offsets(int *off, int n, int oh, int ow, int sh, int sw, int hp, int wp, int ch) {
    int t = 0;
    for (int img = 0; img < n; img++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                off[t++] = ((img * hp + oy * sh) * wp + ox * sw) * ch;
}

/* Lays out the forward / filter scratch; returns the input the windows read. */
static const float *fast_input(const kc_conv2d_desc *d, const fast_geom *g, const float *x,
                               char *ws, int **koff, int **pix) {
    size_t xp = g->padded ? (size_t)d->n * g->hp * g->wp * d->c * sizeof(float) : 0;
    size_t taps = (size_t)d->kh * d->kw * d->c * sizeof(int);
    const float *in = x;
    if (g->padded) {
        pad_images(x, d->n, d->h, d->w, d->c, (float *)ws, g->hp, g->wp, d->pad_t, d->pad_l);
        in = (const float *)ws;
    }
    *koff = (int *)(ws + align_up(xp));
    *pix = (int *)(ws + align_up(xp) + align_up(taps));
    tap_offsets(*koff, d->kh, d->kw, d->dh, d->dw, g->wp, d->c);
    pixel_offsets(*pix, d->n, d->oh, d->ow, d->sh, d->sw, g->hp, g->wp, d->c);
    return in;
}

static int fast_forward(const kc_conv2d_desc *d, const float *x, const float *w, float *y,
                        void *ws) {
    fast_geom g = fast_geometry(d);
    if (!g.ok || kc_cpu_isa() == KC_CPU_PORTABLE) return 0;
    int *koff, *pix;
    const float *in = fast_input(d, &g, x, ws, &koff, &pix);
    kc_cpu_igemm_args a = {.m = d->n * d->oh * d->ow,
                           .n = d->oc,
                           .k = d->kh * d->kw * d->c,
                           .a = in,
                           .aoff = pix,
                           .abase = koff,
                           .b = w,
                           .ldb = d->oc,
                           .beta = 0.0f,
                           .c = y,
                           .ldc = d->oc};
    return kc_cpu_igemm(&a);
}

static int fast_backward_filter(const kc_conv2d_desc *d, const float *x, const float *dy, float *dw,
                                float beta, void *ws) {
    fast_geom g = fast_geometry(d);
    if (!g.ok || kc_cpu_isa() == KC_CPU_PORTABLE) return 0;
    int *koff, *pix;
    const float *in = fast_input(d, &g, x, ws, &koff, &pix);
    int m = d->kh * d->kw * d->c, groups = filter_groups(d);
    kc_cpu_igemm_args a = {.m = m,
                           .n = d->oc,
                           .k = d->n * d->oh * d->ow,
                           .a = in,
                           .aoff = koff,
                           .abase = pix,
                           .b = dy,
                           .ldb = d->oc,
                           .beta = beta,
                           .c = dw,
                           .ldc = d->oc};
    if (groups == 1) return kc_cpu_igemm(&a);
    size_t wn = (size_t)m * d->oc;
    float *parts =
        (float *)((char *)ws + fast_ws_fwd(d, &g) - align_up(groups * wn * sizeof(float)));
    int per = d->oh * d->ow, nt = kc_cpu_threads(), done = 1;
#pragma omp parallel for schedule(static) num_threads(nt) reduction(&& : done)
    for (int s = 0; s < groups; s++) {
        int i0 = (int)((long)d->n * s / groups), i1 = (int)((long)d->n * (s + 1) / groups);
        kc_cpu_igemm_args p = a;
        p.k = (i1 - i0) * per;
        p.abase = pix + (size_t)i0 * per;
        p.b = dy + (size_t)i0 * per * d->oc;
        p.beta = 0.0f;
        p.c = parts + (size_t)s * wn;
        p.threads = 1;
        done = done && kc_cpu_igemm(&p);
    }
    if (!done) return 0;
    for (size_t j = 0; j < wn; j++) {
        float sum = beta == 0.0f ? 0.0f : beta * dw[j];
        for (int s = 0; s < groups; s++)
            sum += parts[(size_t)s * wn + j];
        dw[j] = sum;
    }
    return 1;
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

/* ---- backward data by patch-gradient columns, a few images per task ----
 * For a group of images, dcol = dy . W^T (the indirect GEMM, dy read as a
 * plain matrix), then every input pixel sums its taps from dcol in kernel
 * order, as col2im_gather does. No multiply meets padding, the group's dcol
 * stays in cache, and images are independent, so threads take whole groups
 * and the bits do not depend on the thread count. */
#define DCOL_GROUP_BYTES ((size_t)512 << 10)
#define DCOL_SLOTS_MAX 8

/* the helpers are inlined into the clones, never called across an ABI boundary */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float kc_v16f __attribute__((vector_size(64)));

static int dcol_slots(void) {
    int p = omp_get_num_procs();
    return p < 1 ? 1 : (p > DCOL_SLOTS_MAX ? DCOL_SLOTS_MAX : p);
}

static int dcol_group(const kc_conv2d_desc *d) {
    size_t per = (size_t)d->oh * d->ow * d->kh * d->kw * d->c * sizeof(float);
    size_t g = per ? DCOL_GROUP_BYTES / per : 1;
    return g < 1 ? 1 : (g > (size_t)d->n ? d->n : (int)g);
}

/* W^T, then one dcol per slot */
static size_t dcol_ws(const kc_conv2d_desc *d) {
    size_t k = (size_t)d->kh * d->kw * d->c;
    size_t per = (size_t)d->oh * d->ow * k * sizeof(float);
    return align_up(k * d->oc * sizeof(float)) +
           (size_t)dcol_slots() * align_up(per * dcol_group(d));
}

/* dx of one image from its dcol; 16 channels at a time in a register. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
gather_image(const kc_conv2d_desc *d, const float *col, float *dx) {
    int c = d->c;
    size_t k = (size_t)d->kh * d->kw * c;
    for (int iy = 0; iy < d->h; iy++)
        for (int ix = 0; ix < d->w; ix++) {
            float *dst = dx + ((size_t)iy * d->w + ix) * c;
            const float *src[64];
            int taps = 0, many = d->kh * d->kw > 64;
            if (!many)
                for (int ky = 0; ky < d->kh; ky++) {
                    int oy = tap_source(iy, ky, d->sh, d->dh, d->pad_t, d->oh);
                    if (oy < 0) continue;
                    for (int kx = 0; kx < d->kw; kx++) {
                        int ox = tap_source(ix, kx, d->sw, d->dw, d->pad_l, d->ow);
                        if (ox >= 0)
                            src[taps++] =
                                col + ((size_t)oy * d->ow + ox) * k + ((size_t)ky * d->kw + kx) * c;
                    }
                }
            int ch = 0;
            for (; !many && ch + 16 <= c; ch += 16) {
                kc_v16f acc = {0};
                for (int t = 0; t < taps; t++) {
                    kc_v16f v;
                    memcpy(&v, src[t] + ch, sizeof v);
                    acc += v;
                }
                memcpy(dst + ch, &acc, sizeof acc);
            }
            for (; ch < c; ch++) {
                float acc = 0.0f;
                for (int ky = 0; ky < d->kh; ky++) {
                    int oy = tap_source(iy, ky, d->sh, d->dh, d->pad_t, d->oh);
                    if (oy < 0) continue;
                    for (int kx = 0; kx < d->kw; kx++) {
                        int ox = tap_source(ix, kx, d->sw, d->dw, d->pad_l, d->ow);
                        if (ox >= 0)
                            acc += col[((size_t)oy * d->ow + ox) * k +
                                       ((size_t)ky * d->kw + kx) * c + ch];
                    }
                }
                dst[ch] = acc;
            }
        }
}

static int fast_backward_data(const kc_conv2d_desc *d, const float *dy, const float *w, float *dx,
                              void *ws) {
    fast_geom g = fast_geometry(d);
    size_t k = (size_t)d->kh * d->kw * d->c, pix = (size_t)d->oh * d->ow;
    if (!g.ok || kc_cpu_isa() == KC_CPU_PORTABLE || (double)d->n * pix * k >= INT_MAX) return 0;
    float *wt = ws;
    char *slots = (char *)ws + align_up(k * d->oc * sizeof(float));
    int group = dcol_group(d);
    size_t slot_bytes = align_up(pix * k * sizeof(float) * group);
    for (int o = 0; o < d->oc; o++) /* wt[o, j] = w[j, o] */
        for (size_t j = 0; j < k; j++)
            wt[(size_t)o * k + j] = w[j * d->oc + o];
    int nt = kc_cpu_threads(), slots_n = dcol_slots();
    if (nt > slots_n) nt = slots_n;
    if (nt > d->n) nt = d->n;
    int done = 1;
    /* each thread an equal share of the images, in groups of near-equal size */
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(&& : done)
    {
        int t = omp_get_thread_num(), parts = omp_get_num_threads();
        float *col = (float *)(slots + (size_t)t * slot_bytes);
        int first = (int)((long)d->n * t / parts),
            count = (int)((long)d->n * (t + 1) / parts) - first;
        int groups = (count + group - 1) / group;
        for (int gi = 0; gi < groups; gi++) {
            int i0 = first + (int)((long)count * gi / groups);
            int nb = first + (int)((long)count * (gi + 1) / groups) - i0;
            kc_cpu_igemm_args a = {.m = nb * (int)pix,
                                   .n = (int)k,
                                   .k = d->oc,
                                   .a = dy + (size_t)i0 * pix * d->oc,
                                   .rs = d->oc,
                                   .cs = 1,
                                   .b = wt,
                                   .ldb = (long)k,
                                   .beta = 0.0f,
                                   .c = col,
                                   .ldc = (long)k,
                                   .threads = 1};
            done = done && kc_cpu_igemm(&a);
            for (int i = 0; i < nb; i++)
                gather_image(d, col + (size_t)i * pix * k,
                             dx + (size_t)(i0 + i) * d->h * d->w * d->c);
        }
    }
    return done;
}

int kc_cpu_conv2d_forward(const kc_conv2d_desc *d, const float *x, const float *w, float *y,
                          void *ws) {
    if (conv_empty(d)) { /* no terms: zeros */
        zero(y, extent4(d->n, d->oh, d->ow, d->oc));
        return 0;
    }
    conv_plan p = make_plan(d);
    size_t in_img = (size_t)d->h * d->w * d->c, out_img = p.pixels * d->oc;
    int owned;
    float *col = scratch(d, ws, &owned);
    if (!col && kc_cpu_conv2d_workspace(d)) return -1;
    if (fast_forward(d, x, w, y, col)) {
        if (owned) free(col);
        return 0;
    }
    if (p.direct) {
        kc_cpu_gemm(0, 0, d->n * (int)p.pixels, d->oc, d->c, 1.0f, x, d->c, w, d->oc, 0.0f, y,
                    d->oc);
        if (owned) free(col);
        return 0;
    }
    for (int n0 = 0; n0 < d->n; n0 += p.chunk) {
        int nb = d->n - n0 < p.chunk ? d->n - n0 : p.chunk;
        im2col(d, x + n0 * in_img, nb, col);
        kc_cpu_gemm(0, 0, nb * (int)p.pixels, d->oc, (int)p.k, 1.0f, col, (int)p.k, w, d->oc, 0.0f,
                    y + n0 * out_img, d->oc);
    }
    if (owned) free(col);
    return 0;
}

int kc_cpu_conv2d_backward_data(const kc_conv2d_desc *d, const float *dy, const float *w, float *dx,
                                void *ws) {
    if (conv_empty(d)) {
        zero(dx, extent4(d->n, d->h, d->w, d->c));
        return 0;
    }
    conv_plan p = make_plan(d);
    size_t in_img = (size_t)d->h * d->w * d->c, out_img = p.pixels * d->oc;
    int owned;
    float *col = scratch(d, ws, &owned);
    if (!col && kc_cpu_conv2d_workspace(d)) return -1;
    if (fast_backward_data(d, dy, w, dx, col)) {
        if (owned) free(col);
        return 0;
    }
    if (p.direct) {
        kc_cpu_gemm(0, 1, d->n * (int)p.pixels, d->c, d->oc, 1.0f, dy, d->oc, w, d->oc, 0.0f, dx,
                    d->c);
        if (owned) free(col);
        return 0;
    }
    for (int n0 = 0; n0 < d->n; n0 += p.chunk) {
        int nb = d->n - n0 < p.chunk ? d->n - n0 : p.chunk;
        kc_cpu_gemm(0, 1, nb * (int)p.pixels, (int)p.k, d->oc, 1.0f, dy + n0 * out_img, d->oc, w,
                    d->oc, 0.0f, col, (int)p.k);
        col2im_gather(d, col, nb, dx + n0 * in_img);
    }
    if (owned) free(col);
    return 0;
}

int kc_cpu_conv2d_backward_filter(const kc_conv2d_desc *d, const float *x, const float *dy,
                                  float *dw, float beta, void *ws) {
    size_t wn = extent4(d->kh, d->kw, d->c, d->oc);
    if (conv_empty(d)) { /* no terms: dw = beta dw */
        for (size_t i = 0; i < wn; i++)
            dw[i] = beta == 0.0f ? 0.0f : beta * dw[i];
        return 0;
    }
    conv_plan p = make_plan(d);
    size_t in_img = (size_t)d->h * d->w * d->c, out_img = p.pixels * d->oc;
    int owned;
    float *col = scratch(d, ws, &owned);
    if (!col && kc_cpu_conv2d_workspace(d)) return -1;
    if (fast_backward_filter(d, x, dy, dw, beta, col)) {
        if (owned) free(col);
        return 0;
    }
    if (p.direct) {
        kc_cpu_gemm(1, 0, d->c, d->oc, d->n * (int)p.pixels, 1.0f, x, d->c, dy, d->oc, beta, dw,
                    d->oc);
        if (owned) free(col);
        return 0;
    }
    for (int n0 = 0; n0 < d->n; n0 += p.chunk) {
        int nb = d->n - n0 < p.chunk ? d->n - n0 : p.chunk;
        im2col(d, x + n0 * in_img, nb, col);
        kc_cpu_gemm(1, 0, (int)p.k, d->oc, nb * (int)p.pixels, 1.0f, col, (int)p.k,
                    dy + n0 * out_img, d->oc, n0 == 0 ? beta : 1.0f, dw, d->oc);
    }
    if (owned) free(col);
    return 0;
}

/* 2-D convolution on OpenCL as patch matrices and CLBlast products. The
 * patch matrix of a chunk of images (rows (n, oy, ox), columns (ky, kx, c),
 * the HWIO kernel's row order) lives in the workspace:
 *   forward          y  = col w                 (im2col, gemm)
 *   backward data    dx = col2im(dy w^T)        (gemm, gather)
 *   backward filter  dw = beta dw + col^T dy    (im2col, split-k gemm)
 * Chunks hold whole images, so the workspace stays bounded for any batch.
 * A 1x1 kernel with stride 1 and no padding needs no patch matrix: x itself
 * is one.
 *
 * The filter gradient is a small matrix summed over every output pixel of
 * the batch (k in the tens of thousands): one product would give the device
 * a handful of work-groups. Its rows are cut into slices whose products go
 * to partial gradients after the patch matrix in the workspace, and a
 * fixed-order reduction adds the partials (in double where the device has
 * it) into dw. */
#include "core/opencl/ocl.h"
#include "core/ops.h"

#include <stdint.h>

/* The patch matrix never exceeds this, nor half the device's largest
 * allocation; a chunk is at least one image. */
#define WORKSPACE_CAP ((size_t)128 << 20)
/* The partial filter gradients: at most this many bytes and slices, and
 * slices of at least this many rows. */
#define PARTIALS_CAP ((size_t)64 << 20)
#define MAX_SLICES 64
#define SLICE_ROWS_MIN 512

static int pointwise(const kc_conv2d_desc *g) {
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->pad_t == 0 && g->pad_l == 0 &&
           g->oh == g->h && g->ow == g->w;
}

static size_t patch_cols(const kc_conv2d_desc *g) {
    return (size_t)g->kh * g->kw * g->c;
}

static size_t image_floats(const kc_conv2d_desc *g) {
    return (size_t)g->oh * g->ow * patch_cols(g);
}

static size_t in_image(const kc_conv2d_desc *g) {
    return (size_t)g->h * g->w * g->c;
}

static size_t out_image(const kc_conv2d_desc *g) {
    return (size_t)g->oh * g->ow * g->oc;
}

/* Images per chunk; all of them when x is its own patch matrix. */
static int chunk_images(const kc_device *d, const kc_conv2d_desc *g) {
    if (pointwise(g)) return g->n;
    size_t cap = WORKSPACE_CAP, half = (size_t)(kc_ocl_of(d)->max_alloc / 2);
    if (half < cap) cap = half;
    size_t per = image_floats(g) * sizeof(float), nb = per ? cap / per : (size_t)g->n;
    if (nb < 1) nb = 1;
    return nb < (size_t)g->n ? (int)nb : g->n;
}

static int chunk_len(const kc_conv2d_desc *g, int n0, int chunk) {
    return g->n - n0 < chunk ? g->n - n0 : chunk;
}

static size_t col_floats(const kc_device *d, const kc_conv2d_desc *g) {
    return pointwise(g) ? 0 : (size_t)chunk_images(d, g) * image_floats(g);
}

/* Rows per slice of the filter gradient, 0 when one product does. */
static size_t slice_rows(const kc_conv2d_desc *g) {
    size_t per = patch_cols(g) * (size_t)g->oc * sizeof(float);
    size_t rows = (size_t)g->n * g->oh * g->ow, cap = per ? PARTIALS_CAP / per : 0;
    if (cap > MAX_SLICES) cap = MAX_SLICES;
    if (cap < 2 || rows < 2 * SLICE_ROWS_MIN) return 0;
    size_t s = (rows + cap - 1) / cap;
    return s < SLICE_ROWS_MIN ? SLICE_ROWS_MIN : s;
}

/* Slices over the whole batch: each chunk's rows are cut on their own. */
static size_t slice_count(const kc_device *d, const kc_conv2d_desc *g) {
    size_t sr = slice_rows(g), total = 0;
    int chunk = chunk_images(d, g);
    for (int n0 = 0; sr && n0 < g->n; n0 += chunk) {
        size_t rows = (size_t)chunk_len(g, n0, chunk) * g->oh * g->ow;
        total += (rows + sr - 1) / sr;
    }
    return total;
}

size_t kc_ocl_conv2d_workspace(const kc_device *d, const kc_conv2d_desc *g) {
    if (g->n <= 0) return 0;
    size_t partials = slice_count(d, g) * patch_cols(g) * (size_t)g->oc;
    return (col_floats(d, g) + partials) * sizeof(float);
}

/* The caller's workspace, or the backend's own when given none. */
static int workspace(kc_device *d, const kc_conv2d_desc *g, kc_buf ws, kc_buf *out) {
    kc_ocl *o = kc_ocl_of(d);
    size_t bytes = kc_ocl_conv2d_workspace(d, g);
    *out = ws;
    if (kc_buf_ok(ws) || !bytes) return KC_OK;
    int rc = kc_ocl_reserve(d, &o->conv_tmp, &o->conv_tmp_bytes, bytes,
                            "clCreateBuffer (conv2d workspace)");
    out->mem = (kc_mem *)(void *)o->conv_tmp;
    out->off = 0;
    return rc;
}

static cl_int16 geometry(const kc_conv2d_desc *g) {
    cl_int16 v = {{g->n, g->h, g->w, g->c, g->kh, g->kw, g->oc, g->sh, g->sw, g->dh, g->dw,
                   g->pad_t, g->pad_l, g->oh, g->ow, 0}};
    return v;
}

static int im2col(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf col, int images) {
    cl_int16 geo = geometry(g);
    size_t rows = (size_t)images * g->oh * g->ow, taps = rows * g->kh * g->kw;
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_im2col);
    kc_ocl_buf(&c, x);
    kc_ocl_buf(&c, col);
    kc_ocl_raw(&c, sizeof geo, &geo);
    kc_ocl_i32(&c, (int)rows);
    return kc_ocl_run(&c, taps);
}

static int col2im(kc_device *d, const kc_conv2d_desc *g, kc_buf col, kc_buf dx, int images) {
    cl_int16 geo = geometry(g);
    size_t pixels = (size_t)images * g->h * g->w;
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_col2im);
    kc_ocl_buf(&c, col);
    kc_ocl_buf(&c, dx);
    kc_ocl_raw(&c, sizeof geo, &geo);
    kc_ocl_i32(&c, (int)pixels);
    return kc_ocl_run(&c, pixels);
}

/* The kernels index a chunk with 32-bit integers; then the workspace. */
static int prepare(kc_device *d, const kc_conv2d_desc *g, kc_buf *ws) {
    size_t in = (size_t)g->n * g->h * g->w * g->c, out = (size_t)g->n * g->oh * g->ow * g->oc;
    if (g->n < 0 || in > UINT32_MAX || out > UINT32_MAX || image_floats(g) > UINT32_MAX)
        return kc_device_fail(d, KC_ECONFIG, "opencl: conv2d tensors beyond 2^32 elements");
    return workspace(d, g, *ws, ws);
}

int kc_ocl_conv2d_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w, kc_buf y,
                          kc_buf ws) {
    int rc = prepare(d, g, &ws);
    if (rc) return rc;
    int k = (int)patch_cols(g);
    if (pointwise(g))
        return kc_ocl_gemm(d, 0, 0, g->n * g->h * g->w, g->oc, g->c, 1.0f, x, g->c, w, g->oc, 0.0f,
                           y, g->oc);
    int chunk = chunk_images(d, g);
    for (int n0 = 0; !rc && n0 < g->n; n0 += chunk) {
        int nb = chunk_len(g, n0, chunk), rows = nb * g->oh * g->ow;
        rc = im2col(d, g, kc_buf_f(x, (size_t)n0 * in_image(g)), ws, nb);
        if (!rc)
            rc = kc_ocl_gemm(d, 0, 0, rows, g->oc, k, 1.0f, ws, k, w, g->oc, 0.0f,
                             kc_buf_f(y, (size_t)n0 * out_image(g)), g->oc);
    }
    return rc;
}

int kc_ocl_conv2d_backward_data(kc_device *d, const kc_conv2d_desc *g, kc_buf dy, kc_buf w,
                                kc_buf dx, kc_buf ws) {
    int rc = prepare(d, g, &ws);
    if (rc) return rc;
    int k = (int)patch_cols(g);
    if (pointwise(g))
        return kc_ocl_gemm(d, 0, 1, g->n * g->h * g->w, g->c, g->oc, 1.0f, dy, g->oc, w, g->oc,
                           0.0f, dx, g->c);
    int chunk = chunk_images(d, g);
    for (int n0 = 0; !rc && n0 < g->n; n0 += chunk) {
        int nb = chunk_len(g, n0, chunk), rows = nb * g->oh * g->ow;
        rc = kc_ocl_gemm(d, 0, 1, rows, k, g->oc, 1.0f, kc_buf_f(dy, (size_t)n0 * out_image(g)),
                         g->oc, w, g->oc, 0.0f, ws, k);
        if (!rc) rc = col2im(d, g, ws, kc_buf_f(dx, (size_t)n0 * in_image(g)), nb);
    }
    return rc;
}

/* Partial gradients of one chunk's rows: full slices in one batched product,
 * the shorter last slice on its own. */
static int filter_slices(kc_device *d, const kc_conv2d_desc *g, kc_buf patches, kc_buf dy,
                         size_t rows, size_t sr, kc_buf part) {
    int k = (int)patch_cols(g), oc = g->oc;
    size_t full = rows / sr, rest = rows - full * sr, pk = (size_t)k * oc;
    int rc = KC_OK;
    if (full)
        rc = kc_ocl_gemm_batched(d, 1, 0, k, oc, (int)sr, 1.0f, patches, k, sr * k, dy, oc, sr * oc,
                                 0.0f, part, oc, pk, (int)full);
    if (!rc && rest)
        rc = kc_ocl_gemm(d, 1, 0, k, oc, (int)rest, 1.0f, kc_buf_f(patches, full * sr * k), k,
                         kc_buf_f(dy, full * sr * oc), oc, 0.0f, kc_buf_f(part, full * pk), oc);
    return rc;
}

int kc_ocl_conv2d_backward_filter(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf dy,
                                  kc_buf dw, float beta, kc_buf ws) {
    int rc = prepare(d, g, &ws);
    if (rc) return rc;
    size_t k = patch_cols(g), sr = slice_rows(g), done = 0;
    if (g->n <= 0 || g->oh <= 0 || g->ow <= 0)
        return kc_ocl_scale2d(d, dw, (size_t)g->oc, k, (size_t)g->oc, beta);
    kc_buf part = kc_buf_f(ws, col_floats(d, g));
    int chunk = chunk_images(d, g);
    for (int n0 = 0; !rc && n0 < g->n; n0 += chunk) {
        int nb = chunk_len(g, n0, chunk);
        size_t rows = (size_t)nb * g->oh * g->ow;
        kc_buf patches = pointwise(g) ? x : ws, dyc = kc_buf_f(dy, (size_t)n0 * out_image(g));
        if (!pointwise(g)) rc = im2col(d, g, kc_buf_f(x, (size_t)n0 * in_image(g)), ws, nb);
        if (rc) break;
        if (!sr) {
            rc = kc_ocl_gemm(d, 1, 0, (int)k, g->oc, (int)rows, 1.0f, patches, (int)k, dyc, g->oc,
                             n0 == 0 ? beta : 1.0f, dw, g->oc);
            continue;
        }
        rc = filter_slices(d, g, patches, dyc, rows, sr, kc_buf_f(part, done * k * g->oc));
        done += (rows + sr - 1) / sr;
    }
    if (rc || !sr) return rc;
    kc_reduce_desc sum = {1, (int64_t)done, (int64_t)(k * g->oc)};
    return kc_ocl_reduce(d, KC_RED_SUM, &sum, 1.0f, part, beta, dw);
}

/* ---- depthwise convolution: direct gather kernels, one work-item per
 * output, input or kernel element (no workspace, no products) ---- */

static int dw_launch(kc_device *d, int kernel, const kc_conv2d_desc *g, kc_buf a, kc_buf b,
                     kc_buf out, size_t total, const float *beta) {
    size_t in = (size_t)g->n * g->h * g->w * g->c, o = (size_t)g->n * g->oh * g->ow * g->oc;
    if (g->n < 0 || g->c <= 0 || g->oc % g->c || in > UINT32_MAX || o > UINT32_MAX)
        return kc_device_fail(d, KC_ECONFIG,
                              "opencl: depthwise conv2d tensors beyond 2^32 elements");
    if (!total) return KC_OK;
    cl_int16 geo = geometry(g);
    kc_ocl_call c = kc_ocl_begin(d, kernel);
    kc_ocl_buf(&c, a);
    kc_ocl_buf(&c, b);
    kc_ocl_buf(&c, out);
    kc_ocl_raw(&c, sizeof geo, &geo);
    if (beta) kc_ocl_f32(&c, *beta);
    kc_ocl_i32(&c, (int)total);
    return kc_ocl_run(&c, total);
}

int kc_ocl_depthwise_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w, kc_buf y) {
    size_t n = g->n > 0 ? (size_t)g->n * g->oh * g->ow * g->oc : 0;
    return dw_launch(d, KC_OCL_K_dw_forward, g, x, w, y, n, NULL);
}

int kc_ocl_depthwise_backward_data(kc_device *d, const kc_conv2d_desc *g, kc_buf dy, kc_buf w,
                                   kc_buf dx) {
    size_t n = g->n > 0 ? (size_t)g->n * g->h * g->w * g->c : 0;
    return dw_launch(d, KC_OCL_K_dw_data, g, dy, w, dx, n, NULL);
}

int kc_ocl_depthwise_backward_filter(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf dy,
                                     kc_buf dw, float beta) {
    size_t n = (size_t)g->kh * g->kw * g->oc;
    return dw_launch(d, KC_OCL_K_dw_filter, g, x, dy, dw, n, &beta);
}

/* UpSampling2D, Resizing and CenterCrop over NHWC inputs.
 *
 * Interpolated resizes are separable: with Mh (oh x h) and Mw (ow x w) the
 * interpolation matrices, y[b] = Mh x[b] Mw^T per channel, run as two
 * batched products (along H over rows of w*c values, then along W over
 * rows of c values); backward runs the transposed products. The matrices
 * follow tf.image.resize without antialiasing (half-pixel centers):
 * bilinear, nearest and area. A crop or pad to the target's aspect ratio is
 * folded into the matrices (padding reads zeros). UpSampling2D with nearest
 * is a strided copy. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/layers/common.h"

enum { RS_BILINEAR, RS_NEAREST, RS_AREA };

/* One axis: `out` cells from a window of `len` cells starting at input cell
 * `start` (negative or past the input: padding) of an input of `in` cells. */
typedef struct rs_axis {
    int64_t out, len, start, in;
} rs_axis;

typedef struct rs_state {
    int mode;
    int up[2]; /* UpSampling2D size */
    int target[2];
    int crop, pad; /* to the aspect ratio */
    int copy;      /* CenterCrop of a large enough input: a plain window copy */
    rs_axis ax[2];
    int64_t c;
} rs_state;

static void add_tap(float *row, const rs_axis *a, int64_t j, float w) {
    int64_t i = j + a->start;
    if (i >= 0 && i < a->in) row[i] += w;
}

static void bilinear_row(float *row, const rs_axis *a, int64_t o) {
    float scale = (float)a->len / (float)a->out;
    float src = ((float)o + 0.5f) * scale - 0.5f;
    float f = floorf(src);
    int64_t lo = f < 0 ? 0 : (int64_t)f, hi = (int64_t)ceilf(src);
    if (hi > a->len - 1) hi = a->len - 1;
    if (lo > a->len - 1) lo = a->len - 1;
    float t = src - f;
    add_tap(row, a, lo, 1.0f - t);
    add_tap(row, a, hi, t);
}

static void nearest_row(float *row, const rs_axis *a, int64_t o) {
    float scale = (float)a->len / (float)a->out;
    int64_t j = (int64_t)floorf(((float)o + 0.5f) * scale);
    add_tap(row, a, j < a->len - 1 ? j : a->len - 1, 1.0f);
}

/* The box [o, o + 1) * scale, each cell weighted by its overlap. */
static void area_row(float *row, const rs_axis *a, int64_t o) {
    double scale = (double)a->len / (double)a->out, s0 = (double)o * scale, s1 = s0 + scale;
    for (int64_t j = (int64_t)floor(s0); (double)j < s1; j++) {
        double ov = fmin((double)j + 1, s1) - fmax((double)j, s0);
        if (ov > 0) add_tap(row, a, j < a->len - 1 ? j : a->len - 1, (float)(ov / scale));
    }
}

static void rs_matrix(float *m, const rs_axis *a, int mode) {
    memset(m, 0, (size_t)(a->out * a->in) * sizeof(float));
    for (int64_t o = 0; o < a->out; o++) {
        float *row = m + o * a->in;
        if (mode == RS_NEAREST)
            nearest_row(row, a, o);
        else if (mode == RS_AREA)
            area_row(row, a, o);
        else
            bilinear_row(row, a, o);
    }
}

static size_t mat_floats(const rs_state *s) {
    return (size_t)(s->ax[0].out * s->ax[0].in + s->ax[1].out * s->ax[1].in);
}

/* The matrices live in the layer's buffer, written by every forward. */
static size_t rs_buffer(const kc_layer *l, int max_batch, const kc_device *d) {
    const rs_state *s = l->state;
    return s->copy ? 0 : mat_floats(s) * sizeof(float);
}

/* The image resized along H only. */
static size_t rs_workspace(const kc_layer *l, int max_batch, const kc_device *d) {
    const rs_state *s = l->state;
    if (s->copy) return 0;
    return (size_t)(s->ax[0].out * s->ax[1].in * s->c) * (size_t)max_batch * sizeof(float);
}

static int rs_upload(const kc_layer *l, kc_device *d) {
    const rs_state *s = l->state;
    size_t n = mat_floats(s);
    float *m = malloc(n * sizeof(float));
    if (!m) return kc_device_fail(d, KC_ERUNTIME, "%s: out of memory", l->name);
    rs_matrix(m, &s->ax[0], s->mode);
    rs_matrix(m + s->ax[0].out * s->ax[0].in, &s->ax[1], s->mode);
    kc_upload(d, l->buf, m, n * sizeof(float));
    free(m);
    return kc_device_status(d);
}

static int rs_forward(const kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const rs_state *s = l->state;
    const rs_axis *h = &s->ax[0], *w = &s->ax[1];
    kc_device *d = ex->dev;
    if ((int64_t)ex->batch * h->out > INT_MAX)
        return kc_device_fail(d, KC_ERUNTIME, "%s: batch of %d is too large", l->name, ex->batch);
    int rc = rs_upload(l, d);
    if (rc) return rc;
    kc_buf mh = l->buf, mw = kc_buf_f(l->buf, (size_t)(h->out * h->in)), t = ex->ws;
    int wc = (int)(w->in * s->c), c = (int)s->c;
    kc_gemm_batched(d, 0, 0, (int)h->out, wc, (int)h->in, 1.0f, mh, (int)h->in, 0, x, wc,
                    (size_t)(h->in * wc), 0.0f, t, wc, (size_t)(h->out * wc), ex->batch);
    return kc_gemm_batched(d, 0, 0, (int)w->out, c, (int)w->in, 1.0f, mw, (int)w->in, 0, t, c,
                           (size_t)wc, 0.0f, y, c, (size_t)(w->out * c), ex->batch * (int)h->out);
}

static int rs_backward(const kc_layer *l, const kc_exec *ex, kc_buf dy, kc_buf dx) {
    const rs_state *s = l->state;
    const rs_axis *h = &s->ax[0], *w = &s->ax[1];
    kc_device *d = ex->dev;
    if ((int64_t)ex->batch * h->out > INT_MAX)
        return kc_device_fail(d, KC_ERUNTIME, "%s: batch of %d is too large", l->name, ex->batch);
    kc_buf mh = l->buf, mw = kc_buf_f(l->buf, (size_t)(h->out * h->in)), t = ex->ws;
    int wc = (int)(w->in * s->c), c = (int)s->c;
    kc_gemm_batched(d, 1, 0, (int)w->in, c, (int)w->out, 1.0f, mw, (int)w->in, 0, dy, c,
                    (size_t)(w->out * c), 0.0f, t, c, (size_t)wc, ex->batch * (int)h->out);
    return kc_gemm_batched(d, 1, 0, (int)h->in, wc, (int)h->out, 1.0f, mh, (int)h->in, 0, t, wc,
                           (size_t)(h->out * wc), 0.0f, dx, wc, (size_t)(h->in * wc), ex->batch);
}

static int64_t rs_flops(const kc_layer *l) {
    const rs_state *s = l->state;
    if (s->copy) return 0;
    const rs_axis *h = &s->ax[0], *w = &s->ax[1];
    return 2 * s->c * (h->out * h->in * w->in + w->out * w->in * h->out);
}

/* a * b * c <= KC_RS_MAX for positive a, b, c, without overflow. */
#define KC_RS_MAX ((int64_t)(INT_MAX / 64))
static int fits(int64_t a, int64_t b, int64_t c) {
    return a > 0 && b > 0 && c > 0 && a <= KC_RS_MAX && b <= KC_RS_MAX / a &&
           c <= KC_RS_MAX / (a * b);
}

static int image_input(const kc_layer *l, kc_error *e) {
    char ib[160];
    const kc_shape *in = &l->in_shape;
    if (in->rank != 3)
        return kc_layer_fail(l, e, "expects an input of shape (height, width, channels), got %s",
                             kc_shape_str(in, 1, ib, sizeof ib));
    if (!fits(in->d[0], in->d[1], in->d[2]))
        return kc_layer_fail(l, e, "input %s is too large", kc_shape_str(in, 1, ib, sizeof ib));
    return KC_OK;
}

/* Output (oh, ow) of the whole input, cropped or padded to its aspect ratio
 * (Keras's integer arithmetic in float32). */
static int rs_geometry(kc_layer *l, int64_t oh, int64_t ow, kc_error *e) {
    rs_state *s = l->state;
    int64_t h = l->in_shape.d[0], w = l->in_shape.d[1];
    char ob[160];
    l->out_shape = kc_shape3(oh, ow, l->in_shape.d[2]);
    if (!fits(oh, ow, l->in_shape.d[2]))
        return kc_layer_fail(l, e, "output %s is too large",
                             kc_shape_str(&l->out_shape, 1, ob, sizeof ob));
    s->c = l->in_shape.d[2];
    rs_axis ah = {oh, h, 0, h}, aw = {ow, w, 0, w};
    if (s->crop || s->pad) {
        int64_t ch = (int64_t)((float)(w * oh) / (float)ow);
        int64_t cw = (int64_t)((float)(h * ow) / (float)oh);
        if (s->crop) {
            ah.len = ch < h ? (ch < 1 ? 1 : ch) : h;
            aw.len = cw < w ? (cw < 1 ? 1 : cw) : w;
            ah.start = (int64_t)((float)(h - ah.len) / 2);
            aw.start = (int64_t)((float)(w - aw.len) / 2);
        } else { /* the same margin on both sides */
            int64_t ph = ch > h ? ch : h, pw = cw > w ? cw : w;
            int64_t mh = (int64_t)((float)(ph - h) / 2), mw = (int64_t)((float)(pw - w) / 2);
            ah.len = h + 2 * mh;
            aw.len = w + 2 * mw;
            ah.start = -mh;
            aw.start = -mw;
        }
    }
    s->ax[0] = ah;
    s->ax[1] = aw;
    return KC_OK;
}

/* Keras's interpolations; kerasc runs the first `supported` of them. */
static int interp_arg(kc_args *a, const char *def, int supported, int *mode, kc_error *e) {
    static const char *const names[] = {"bilinear",      "nearest",  "area",     "bicubic",
                                        "lanczos3",      "lanczos5", "gaussian", "lanczos",
                                        "mitchellcubic", NULL};
    int rc = kc_args_enum(a, "interpolation", def, names, mode, e);
    if (rc || *mode < supported) return rc;
    return kc_node_fail(e, kc_args_node(a, "interpolation"),
                        "%s argument 'interpolation': '%s' is not supported yet by kerasc "
                        "(supported: bilinear, nearest%s)",
                        a->owner, names[*mode], supported > 2 ? ", area" : "");
}

/* ---- UpSampling2D ---- */

static int up_configure(kc_layer *l, kc_args *a, kc_error *e) {
    rs_state *s = l->state;
    static const int two[2] = {2, 2};
    int rc = kc_args_int_tuple(a, "size", 2, 0, two, 1, 1 << 16, s->up, e);
    if (!rc) rc = interp_arg(a, "nearest", 2, &s->mode, e);
    if (!rc) rc = kc_layer_data_format(a, e);
    return rc;
}

static int up_build(kc_layer *l, kc_error *e) {
    rs_state *s = l->state;
    int rc = image_input(l, e);
    if (rc) return rc;
    s->copy = s->mode == RS_NEAREST;
    return rs_geometry(l, l->in_shape.d[0] * s->up[0], l->in_shape.d[1] * s->up[1], e);
}

/* Output cells (i*sh + p, j*sw + q) of every (p, q) read input cell (i, j). */
static kc_copy_desc up_view(const kc_layer *l, int batch, int p, int q, int64_t *off) {
    const rs_state *s = l->state;
    int64_t h = l->in_shape.d[0], w = l->in_shape.d[1], c = s->c;
    int64_t ow = w * s->up[1];
    kc_copy_desc g = {4,
                      {batch, h, w, c},
                      {h * s->up[0] * ow * c, s->up[0] * ow * c, s->up[1] * c, 1},
                      {h * w * c, w * c, c, 1}};
    *off = ((int64_t)p * ow + q) * c;
    return g;
}

static int up_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const rs_state *s = l->state;
    if (!s->copy) return rs_forward(l, ex, x, y);
    for (int p = 0; p < s->up[0]; p++)
        for (int q = 0; q < s->up[1]; q++) {
            int64_t off;
            kc_copy_desc g = up_view(l, ex->batch, p, q, &off);
            kc_copy_desc f = {4, {0}, {0}, {0}};
            for (int k = 0; k < 4; k++) {
                f.dims[k] = g.dims[k];
                f.ss[k] = g.ds[k];
                f.ds[k] = g.ss[k];
            }
            kc_copy_strided(ex->dev, KC_COPY_SET, &f, x, kc_buf_f(y, (size_t)off));
        }
    return kc_device_status(ex->dev);
}

/* dx (i, j) = sum over (p, q) of dy (i*sh + p, j*sw + q). */
static int up_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    const rs_state *s = l->state;
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    if (!s->copy) return rs_backward(l, ex, dy, dx);
    for (int p = 0; p < s->up[0]; p++)
        for (int q = 0; q < s->up[1]; q++) {
            int64_t off;
            kc_copy_desc g = up_view(l, ex->batch, p, q, &off);
            kc_copy_strided(ex->dev, p || q ? KC_COPY_ADD : KC_COPY_SET, &g,
                            kc_buf_f(dy, (size_t)off), dx);
        }
    return kc_device_status(ex->dev);
}

const kc_layer_class kc_up_sampling2d_class = {
    .class_name = "UpSampling2D",
    .base_name = "up_sampling2d",
    .state_size = sizeof(rs_state),
    .configure = up_configure,
    .build = up_build,
    .buffer_bytes = rs_buffer,
    .workspace_bytes = rs_workspace,
    .flops = rs_flops,
    .forward = up_forward,
    .backward = up_backward,
};

/* ---- Resizing ---- */

static int target_args(kc_layer *l, kc_args *a, kc_error *e) {
    rs_state *s = l->state;
    long long h, w;
    int rc = kc_args_int(a, "height", 1, 0, 1, 1 << 16, &h, e);
    if (!rc) rc = kc_args_int(a, "width", 1, 0, 1, 1 << 16, &w, e);
    s->target[0] = (int)h;
    s->target[1] = (int)w;
    return rc;
}

static int resizing_configure(kc_layer *l, kc_args *a, kc_error *e) {
    rs_state *s = l->state;
    static const char *const fill_modes[] = {"constant", NULL};
    int fm, anti;
    double fill;
    int rc = target_args(l, a, e);
    if (!rc) rc = interp_arg(a, "bilinear", 3, &s->mode, e);
    if (!rc) rc = kc_args_bool(a, "crop_to_aspect_ratio", 0, &s->crop, e);
    if (!rc) rc = kc_args_bool(a, "pad_to_aspect_ratio", 0, &s->pad, e);
    if (!rc) rc = kc_args_enum(a, "fill_mode", "constant", fill_modes, &fm, e);
    if (!rc) rc = kc_args_float(a, "fill_value", 0, 0.0, -INFINITY, INFINITY, &fill, e);
    if (!rc && fill != 0.0)
        return kc_node_fail(e, kc_args_node(a, "fill_value"),
                            "Resizing argument 'fill_value': only 0 (the default) is supported "
                            "yet by kerasc, got %g",
                            fill);
    if (!rc) rc = kc_args_bool(a, "antialias", 0, &anti, e);
    if (!rc && anti)
        return kc_node_fail(e, kc_args_node(a, "antialias"),
                            "Resizing argument 'antialias': true is not supported yet by kerasc");
    if (!rc && s->crop && s->pad)
        return kc_node_fail(e, kc_args_node(a, "pad_to_aspect_ratio"),
                            "Resizing: only one of 'pad_to_aspect_ratio' and "
                            "'crop_to_aspect_ratio' can be true");
    if (!rc) rc = kc_layer_data_format(a, e);
    return rc;
}

static int target_build(kc_layer *l, kc_error *e) {
    rs_state *s = l->state;
    int rc = image_input(l, e);
    if (rc) return rc;
    return rs_geometry(l, s->target[0], s->target[1], e);
}

static int resizing_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    return rs_forward(l, ex, x, y);
}

static int resizing_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                             kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    return rs_backward(l, ex, dy, dx);
}

const kc_layer_class kc_resizing_class = {
    .class_name = "Resizing",
    .base_name = "resizing",
    .state_size = sizeof(rs_state),
    .configure = resizing_configure,
    .build = target_build,
    .buffer_bytes = rs_buffer,
    .workspace_bytes = rs_workspace,
    .flops = rs_flops,
    .forward = resizing_forward,
    .backward = resizing_backward,
};

/* ---- CenterCrop: the centered window, or (Keras's smart_resize) a
 * bilinear resize of the input cropped to the target's aspect ratio when
 * the input is smaller than the target along either axis ---- */

static int center_configure(kc_layer *l, kc_args *a, kc_error *e) {
    int rc = target_args(l, a, e);
    if (!rc) rc = kc_layer_data_format(a, e);
    return rc;
}

static int center_build(kc_layer *l, kc_error *e) {
    rs_state *s = l->state;
    int rc = image_input(l, e);
    if (rc) return rc;
    int64_t h = l->in_shape.d[0], w = l->in_shape.d[1];
    s->mode = RS_BILINEAR;
    s->copy = h >= s->target[0] && w >= s->target[1];
    s->crop = !s->copy;
    rc = rs_geometry(l, s->target[0], s->target[1], e);
    if (!rc && s->copy) {
        s->ax[0].start = (h - s->target[0]) / 2;
        s->ax[1].start = (w - s->target[1]) / 2;
    }
    return rc;
}

/* The window (start0, start1) of the input, as (batch, oh, ow, c). */
static kc_copy_desc center_view(const kc_layer *l, int batch, size_t *off) {
    const rs_state *s = l->state;
    int64_t h = l->in_shape.d[0], w = l->in_shape.d[1], c = s->c;
    int64_t oh = s->target[0], ow = s->target[1];
    kc_copy_desc g = {4, {batch, oh, ow, c}, {h * w * c, w * c, c, 1}, {oh * ow * c, ow * c, c, 1}};
    *off = (size_t)((s->ax[0].start * w + s->ax[1].start) * c);
    return g;
}

static int center_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const rs_state *s = l->state;
    if (!s->copy) return rs_forward(l, ex, x, y);
    size_t off;
    kc_copy_desc g = center_view(l, ex->batch, &off);
    return kc_copy_strided(ex->dev, KC_COPY_SET, &g, kc_buf_f(x, off), y);
}

static int center_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                           kc_buf dx) {
    const rs_state *s = l->state;
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    if (!s->copy) return rs_backward(l, ex, dy, dx);
    size_t off;
    kc_copy_desc g = center_view(l, ex->batch, &off);
    for (int k = 0; k < 4; k++) {
        int64_t t = g.ss[k];
        g.ss[k] = g.ds[k];
        g.ds[k] = t;
    }
    kc_fill(ex->dev, dx, 0.0f, (size_t)kc_shape_numel(&l->in_shape) * (size_t)ex->batch);
    return kc_copy_strided(ex->dev, KC_COPY_SET, &g, dy, kc_buf_f(dx, off));
}

const kc_layer_class kc_center_crop_class = {
    .class_name = "CenterCrop",
    .base_name = "center_crop",
    .state_size = sizeof(rs_state),
    .configure = center_configure,
    .build = center_build,
    .buffer_bytes = rs_buffer,
    .workspace_bytes = rs_workspace,
    .flops = rs_flops,
    .forward = center_forward,
    .backward = center_backward,
};

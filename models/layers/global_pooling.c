/* GlobalAveragePooling2D and GlobalMaxPooling2D over NHWC inputs: a mean or
 * max over the h*w positions of every channel, as (channels) or, with
 * keepdims, (1, 1, channels). GlobalMaxPooling2D sends the gradient to the
 * first maximum of each channel (in row-major order), as MaxPooling2D does.
 * GlobalAveragePooling1D and GlobalMaxPooling1D do the same over the steps
 * of (steps, channels); GlobalAveragePooling1D reads the input's mask as
 * Keras 3 does: the mean over the kept steps, sum(x m) / sum(m) (NaN for a
 * sample with every step masked), and the mask stops there. Keras 3's
 * GlobalMaxPooling1D takes no mask. */
#include <limits.h>
#include <stdlib.h>

#include "models/layers/common.h"

typedef struct gpool_state {
    int keepdims;
    int64_t hw, c; /* positions and channels per sample */
} gpool_state;

static int gpool_configure(kc_layer *l, kc_args *a, kc_error *e) {
    gpool_state *s = l->state;
    int rc = kc_layer_data_format(a, e);
    if (!rc) rc = kc_args_bool(a, "keepdims", 0, &s->keepdims, e);
    return rc;
}

static int gpool_build(kc_layer *l, kc_error *e) {
    gpool_state *s = l->state;
    const kc_shape *in = &l->in_shape;
    char ib[160];
    if (in->rank != 3)
        return kc_layer_fail(l, e, "expects an input of shape (height, width, channels), got %s",
                             kc_shape_str(in, 1, ib, sizeof ib));
    if (in->d[0] * in->d[1] > INT_MAX)
        return kc_layer_fail(l, e, "input %s is too large", kc_shape_str(in, 1, ib, sizeof ib));
    s->hw = in->d[0] * in->d[1];
    s->c = in->d[2];
    l->out_shape = s->keepdims ? kc_shape3(1, 1, s->c) : kc_shape1(s->c);
    return KC_OK;
}

static int gpool1d_build(kc_layer *l, kc_error *e) {
    gpool_state *s = l->state;
    const kc_shape *in = &l->in_shape;
    char ib[160];
    if (in->rank != 2)
        return kc_layer_fail(l, e, "expects an input of shape (steps, channels), got %s",
                             kc_shape_str(in, 1, ib, sizeof ib));
    if (in->d[0] > INT_MAX)
        return kc_layer_fail(l, e, "input %s is too large", kc_shape_str(in, 1, ib, sizeof ib));
    s->hw = in->d[0];
    s->c = in->d[1];
    l->out_shape = s->keepdims ? kc_shape2(1, s->c) : kc_shape1(s->c);
    return KC_OK;
}

static kc_reduce_desc gpool_axis(const kc_layer *l, int batch) {
    const gpool_state *s = l->state;
    kc_reduce_desc g = {batch, s->hw, s->c};
    return g;
}

static int64_t gpool_flops(const kc_layer *l) {
    return kc_shape_numel(&l->in_shape);
}

static int avg_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    kc_reduce_desc g = gpool_axis(l, ex->batch);
    return kc_reduce(ex->dev, KC_RED_MEAN, &g, 1.0f, x, 0.0f, y);
}

/* dx[b, p, c] = dy[b, c] / hw: dy repeated over the positions, then scaled. */
static int avg_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    const gpool_state *s = l->state;
    kc_copy_desc g = {3, {ex->batch, s->hw, s->c}, {s->c, 0, 1}, {s->hw * s->c, s->c, 1}};
    kc_copy_strided(ex->dev, KC_COPY_SET, &g, dy, dx);
    return kc_scale(ex->dev, dx, 1.0f / (float)s->hw, (size_t)(ex->batch * s->hw * s->c));
}

/* ---- GlobalAveragePooling1D with a mask ----
 * Scratch: the mask spread over the channels and a zero (or masked input)
 * block, both (batch, steps, channels), then sum(m) per sample and the
 * gradient's dy / sum(m). */

static size_t avg1d_workspace(const kc_layer *l, int max_batch, const kc_device *d) {
    const gpool_state *s = l->state;
    size_t b = (size_t)max_batch, full = b * (size_t)s->hw * (size_t)s->c;
    return (2 * full + b + b * (size_t)s->c) * sizeof(float);
}

typedef struct avg1d_ws {
    kc_buf mb, z, den, q;
} avg1d_ws;

/* Fills mb with the mask spread over the channels and den with its sum per sample. */
static avg1d_ws avg1d_mask(const kc_layer *l, const kc_exec *ex) {
    const gpool_state *s = l->state;
    size_t full = (size_t)ex->batch * (size_t)s->hw * (size_t)s->c;
    avg1d_ws w = {ex->ws, kc_buf_f(ex->ws, full), kc_buf_f(ex->ws, 2 * full), KC_BUF_NULL};
    w.q = kc_buf_f(w.den, (size_t)ex->batch);
    kc_copy_desc g = {3, {ex->batch, s->hw, s->c}, {s->hw, 1, 0}, {s->hw * s->c, s->c, 1}};
    kc_copy_strided(ex->dev, KC_COPY_SET, &g, ex->mask, w.mb);
    kc_reduce_desc r = {ex->batch, s->hw, 1};
    kc_reduce(ex->dev, KC_RED_SUM, &r, 1.0f, ex->mask, 0.0f, w.den);
    kc_fill(ex->dev, w.z, 0.0f, full);
    return w;
}

/* y = (b, c) / den (b), broadcast over the channels. */
static int per_sample_div(kc_device *d, int batch, int64_t c, kc_buf a, kc_buf den, kc_buf y) {
    const int64_t full[2] = {batch, c}, col[2] = {batch, 1};
    kc_bcast g;
    if (kc_bcast_make(&g, full, 2, col, 2, NULL))
        return kc_device_fail(d, KC_ECONFIG, "GlobalAveragePooling1D: cannot broadcast the mask");
    return kc_binary(d, KC_BIN_DIV, &g, a, den, y);
}

static int avg1d_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    if (!kc_buf_ok(ex->mask)) return avg_forward(l, ex, x, y);
    const gpool_state *s = l->state;
    size_t full = (size_t)ex->batch * (size_t)s->hw * (size_t)s->c;
    avg1d_ws w = avg1d_mask(l, ex);
    kc_select(ex->dev, w.mb, x, w.z, w.z, full); /* where(mask, x, 0) */
    kc_reduce_desc g = gpool_axis(l, ex->batch);
    kc_reduce(ex->dev, KC_RED_SUM, &g, 1.0f, w.z, 0.0f, y);
    return per_sample_div(ex->dev, ex->batch, s->c, y, w.den, y);
}

/* dx[b, t, c] = m[b, t] ? dy[b, c] / sum(m[b]) : 0 */
static int avg1d_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                          kc_buf dx) {
    if (!kc_buf_ok(ex->mask)) return avg_backward(l, ex, x, y, dy, dx);
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    const gpool_state *s = l->state;
    size_t full = (size_t)ex->batch * (size_t)s->hw * (size_t)s->c;
    avg1d_ws w = avg1d_mask(l, ex);
    per_sample_div(ex->dev, ex->batch, s->c, dy, w.den, w.q);
    kc_copy_desc g = {3, {ex->batch, s->hw, s->c}, {s->c, 0, 1}, {s->hw * s->c, s->c, 1}};
    kc_copy_strided(ex->dev, KC_COPY_SET, &g, w.q, dx);
    return kc_select(ex->dev, w.mb, dx, w.z, dx, full);
}

static kc_mask_rule avg1d_mask_rule(const kc_layer *l) {
    return KC_MASK_CONSUME;
}

/* The position of each channel's first maximum, as a float. */
static size_t max_buffer(const kc_layer *l, int max_batch, const kc_device *d) {
    const gpool_state *s = l->state;
    return (size_t)s->c * (size_t)max_batch * sizeof(float);
}

/* The positions 0 .. hw-1 and the one-hot mask of the maxima. */
static size_t max_workspace(const kc_layer *l, int max_batch, const kc_device *d) {
    const gpool_state *s = l->state;
    return ((size_t)s->hw + (size_t)(s->hw * s->c) * (size_t)max_batch) * sizeof(float);
}

static int max_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    kc_reduce_desc g = gpool_axis(l, ex->batch);
    kc_reduce(ex->dev, KC_RED_MAX, &g, 1.0f, x, 0.0f, y);
    return kc_reduce(ex->dev, KC_RED_ARGMAX, &g, 1.0f, x, 0.0f, l->buf);
}

/* dx = (position == argmax) * dy, both broadcast over (batch, hw, c). */
static int max_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    kc_device *d = ex->dev;
    if (!kc_buf_ok(dx)) return kc_device_status(d);
    const gpool_state *s = l->state;
    float *pos = malloc((size_t)s->hw * sizeof(float));
    if (!pos) return kc_device_fail(d, KC_ERUNTIME, "GlobalMaxPooling2D: out of memory");
    for (int64_t i = 0; i < s->hw; i++)
        pos[i] = (float)i;
    kc_buf posd = ex->ws, mask = kc_buf_f(ex->ws, (size_t)s->hw);
    kc_upload(d, posd, pos, (size_t)s->hw * sizeof(float));
    free(pos);
    const int64_t full[3] = {ex->batch, s->hw, s->c}, p[3] = {1, s->hw, 1},
                  per[3] = {ex->batch, 1, s->c};
    kc_bcast g1, g2;
    if (kc_bcast_make(&g1, p, 3, per, 3, NULL) || kc_bcast_make(&g2, full, 3, per, 3, NULL))
        return kc_device_fail(d, KC_ECONFIG, "GlobalMaxPooling2D: cannot broadcast the maxima");
    kc_binary(d, KC_BIN_EQ, &g1, posd, l->buf, mask);
    return kc_binary(d, KC_BIN_MUL, &g2, mask, dy, dx);
}

const kc_layer_class kc_global_average_pooling2d_class = {
    .class_name = "GlobalAveragePooling2D",
    .base_name = "global_average_pooling2d",
    .aliases = (const char *const[]){"GlobalAvgPool2D", NULL},
    .state_size = sizeof(gpool_state),
    .configure = gpool_configure,
    .build = gpool_build,
    .flops = gpool_flops,
    .forward = avg_forward,
    .backward = avg_backward,
};

const kc_layer_class kc_global_max_pooling2d_class = {
    .class_name = "GlobalMaxPooling2D",
    .base_name = "global_max_pooling2d",
    .aliases = (const char *const[]){"GlobalMaxPool2D", NULL},
    .state_size = sizeof(gpool_state),
    .configure = gpool_configure,
    .build = gpool_build,
    .flops = gpool_flops,
    .buffer_bytes = max_buffer,
    .workspace_bytes = max_workspace,
    .forward = max_forward,
    .backward = max_backward,
};

const kc_layer_class kc_global_average_pooling1d_class = {
    .class_name = "GlobalAveragePooling1D",
    .base_name = "global_average_pooling1d",
    .aliases = (const char *const[]){"GlobalAvgPool1D", NULL},
    .state_size = sizeof(gpool_state),
    .configure = gpool_configure,
    .build = gpool1d_build,
    .flops = gpool_flops,
    .workspace_bytes = avg1d_workspace,
    .forward = avg1d_forward,
    .backward = avg1d_backward,
    .mask_rule = avg1d_mask_rule,
};

const kc_layer_class kc_global_max_pooling1d_class = {
    .class_name = "GlobalMaxPooling1D",
    .base_name = "global_max_pooling1d",
    .aliases = (const char *const[]){"GlobalMaxPool1D", NULL},
    .state_size = sizeof(gpool_state),
    .configure = gpool_configure,
    .build = gpool1d_build,
    .flops = gpool_flops,
    .buffer_bytes = max_buffer,
    .workspace_bytes = max_workspace,
    .forward = max_forward,
    .backward = max_backward,
};

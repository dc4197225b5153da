/* MaxPooling1D and AveragePooling1D over (steps, channels) inputs: the 2-D
 * pool ops on a (1, steps, channels) image. */
#include <limits.h>
#include <stdio.h>

#include "models/layers/common.h"

typedef struct pool1d_state {
    int pool, stride;
    int same;
    kc_pool2d_desc d; /* per-sample geometry; n is set per call */
} pool1d_state;

/* Keras 3: MaxPooling1D defaults pool_size to 2, AveragePooling1D has no
 * default; strides None (or absent) means the pool size. */
static int pool1d_configure(kc_layer *l, kc_args *a, int pool_required, kc_error *e) {
    pool1d_state *s = l->state;
    static const int two[1] = {2};
    int rc = kc_args_int_tuple(a, "pool_size", 1, pool_required, two, 1, INT_MAX, &s->pool, e);
    if (rc) return rc;
    if (kc_args_has(a, "strides"))
        rc = kc_args_int_tuple(a, "strides", 1, 1, NULL, 1, INT_MAX, &s->stride, e);
    else
        s->stride = s->pool;
    if (!rc) rc = kc_layer_padding(a, &s->same, e);
    if (!rc) rc = kc_layer_data_format(a, e);
    return rc;
}

static int max_configure(kc_layer *l, kc_args *a, kc_error *e) {
    return pool1d_configure(l, a, 0, e);
}

static int avg_configure(kc_layer *l, kc_args *a, kc_error *e) {
    return pool1d_configure(l, a, 1, e);
}

static int pool1d_build(kc_layer *l, kc_error *e) {
    pool1d_state *s = l->state;
    const kc_shape *in = &l->in_shape;
    char ib[160], ob[160];
    if (in->rank != 2)
        return kc_layer_fail(l, e, "expects an input of shape (steps, channels), got %s",
                             kc_shape_str(in, 1, ib, sizeof ib));
    int64_t out = kc_window_out(in->d[0], s->pool, s->stride, 1, s->same);
    l->out_shape = kc_shape2(out, in->d[1]);
    if (out <= 0)
        return kc_layer_fail(l, e, "pool size %d does not fit input %s: the output would be %s",
                             s->pool, kc_shape_str(in, 1, ib, sizeof ib),
                             kc_shape_str(&l->out_shape, 1, ob, sizeof ob));
    if (in->d[0] > INT_MAX || in->d[1] > INT_MAX)
        return kc_layer_fail(l, e, "input %s is too large", kc_shape_str(in, 1, ib, sizeof ib));
    kc_pool2d_desc *d = &s->d;
    *d = (kc_pool2d_desc){.n = 1, .h = 1, .w = (int)in->d[0], .c = (int)in->d[1]};
    d->ph = d->sh = d->oh = 1;
    d->pw = s->pool;
    d->sw = s->stride;
    d->ow = (int)out;
    d->pad_t = 0;
    d->pad_l = kc_window_pad_before(in->d[0], out, s->pool, s->stride, 1, s->same);
    return KC_OK;
}

static kc_pool2d_desc pool1d_desc(const kc_layer *l, int batch) {
    const pool1d_state *s = l->state;
    kc_pool2d_desc d = s->d;
    d.n = batch;
    return d;
}

/* The argmax of every output cell, kept for backward. */
static size_t max_buffer(const kc_layer *l, int max_batch, const kc_device *dev) {
    return (size_t)kc_shape_numel(&l->out_shape) * (size_t)max_batch * sizeof(int32_t);
}

static int max_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    kc_pool2d_desc d = pool1d_desc(l, ex->batch);
    return kc_maxpool2d_forward(ex->dev, &d, x, y, l->buf);
}

static int max_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    kc_pool2d_desc d = pool1d_desc(l, ex->batch);
    return kc_maxpool2d_backward(ex->dev, &d, dy, l->buf, dx);
}

static int avg_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    kc_pool2d_desc d = pool1d_desc(l, ex->batch);
    return kc_avgpool2d_forward(ex->dev, &d, x, y);
}

static int avg_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    kc_pool2d_desc d = pool1d_desc(l, ex->batch);
    return kc_avgpool2d_backward(ex->dev, &d, dy, dx);
}

static const char *const max_aliases[] = {"MaxPool1D", NULL};
static const char *const avg_aliases[] = {"AvgPool1D", NULL};

const kc_layer_class kc_max_pooling1d_class = {
    .class_name = "MaxPooling1D",
    .base_name = "max_pooling1d",
    .aliases = max_aliases,
    .state_size = sizeof(pool1d_state),
    .configure = max_configure,
    .build = pool1d_build,
    .buffer_bytes = max_buffer,
    .forward = max_forward,
    .backward = max_backward,
};

const kc_layer_class kc_average_pooling1d_class = {
    .class_name = "AveragePooling1D",
    .base_name = "average_pooling1d",
    .aliases = avg_aliases,
    .state_size = sizeof(pool1d_state),
    .configure = avg_configure,
    .build = pool1d_build,
    .forward = avg_forward,
    .backward = avg_backward,
};

/* MaxPooling2D and AveragePooling2D over NHWC inputs. */
#include <limits.h>
#include <stdio.h>

#include "models/layers/common.h"

typedef struct pool_state {
    int pool[2], stride[2];
    int same;
    kc_pool2d_desc d; /* per-sample geometry; n is set per call */
} pool_state;

/* Keras 3: MaxPooling2D defaults pool_size to 2, AveragePooling2D has no default. */
static int pool_configure(kc_layer *l, kc_args *a, int pool_required, kc_error *e) {
    pool_state *s = l->state;
    static const int two[2] = {2, 2};
    int rc = kc_args_int_tuple(a, "pool_size", 2, pool_required, two, 1, INT_MAX, s->pool, e);
    if (rc) return rc;
    if (kc_args_has(a, "strides")) {
        rc = kc_args_int_tuple(a, "strides", 2, 1, NULL, 1, INT_MAX, s->stride, e);
    } else { /* strides=None means the pool size */
        s->stride[0] = s->pool[0];
        s->stride[1] = s->pool[1];
    }
    if (!rc) rc = kc_layer_padding(a, &s->same, e);
    if (!rc) rc = kc_layer_data_format(a, e);
    return rc;
}

static int max_configure(kc_layer *l, kc_args *a, kc_error *e) {
    return pool_configure(l, a, 0, e);
}

static int avg_configure(kc_layer *l, kc_args *a, kc_error *e) {
    return pool_configure(l, a, 1, e);
}

static int pool_build(kc_layer *l, kc_error *e) {
    pool_state *s = l->state;
    const kc_shape *in = &l->in_shape;
    char ib[160], ob[160];
    if (in->rank != 3)
        return kc_layer_fail(l, e, "expects an input of shape (height, width, channels), got %s",
                             kc_shape_str(in, 1, ib, sizeof ib));
    int64_t oh = kc_window_out(in->d[0], s->pool[0], s->stride[0], 1, s->same);
    int64_t ow = kc_window_out(in->d[1], s->pool[1], s->stride[1], 1, s->same);
    l->out_shape = kc_shape3(oh, ow, in->d[2]);
    if (oh <= 0 || ow <= 0)
        return kc_layer_fail(l, e, "pool %dx%d does not fit input %s: the output would be %s",
                             s->pool[0], s->pool[1], kc_shape_str(in, 1, ib, sizeof ib),
                             kc_shape_str(&l->out_shape, 1, ob, sizeof ob));
    if (in->d[0] > INT_MAX || in->d[1] > INT_MAX || in->d[2] > INT_MAX)
        return kc_layer_fail(l, e, "input %s is too large", kc_shape_str(in, 1, ib, sizeof ib));
    kc_pool2d_desc *d = &s->d;
    d->n = 1;
    d->h = (int)in->d[0];
    d->w = (int)in->d[1];
    d->c = (int)in->d[2];
    d->ph = s->pool[0];
    d->pw = s->pool[1];
    d->sh = s->stride[0];
    d->sw = s->stride[1];
    d->oh = (int)oh;
    d->ow = (int)ow;
    d->pad_t = kc_window_pad_before(in->d[0], oh, d->ph, d->sh, 1, s->same);
    d->pad_l = kc_window_pad_before(in->d[1], ow, d->pw, d->sw, 1, s->same);
    return KC_OK;
}

static kc_pool2d_desc pool_desc(const kc_layer *l, int batch) {
    const pool_state *s = l->state;
    kc_pool2d_desc d = s->d;
    d.n = batch;
    return d;
}

/* The argmax of every output cell, kept for backward. */
static size_t max_buffer(const kc_layer *l, int max_batch, const kc_device *dev) {
    return (size_t)kc_shape_numel(&l->out_shape) * (size_t)max_batch * sizeof(int32_t);
}

static int max_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    kc_pool2d_desc d = pool_desc(l, ex->batch);
    return kc_maxpool2d_forward(ex->dev, &d, x, y, l->buf);
}

static int max_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    kc_pool2d_desc d = pool_desc(l, ex->batch);
    return kc_maxpool2d_backward(ex->dev, &d, dy, l->buf, dx);
}

static int avg_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    kc_pool2d_desc d = pool_desc(l, ex->batch);
    return kc_avgpool2d_forward(ex->dev, &d, x, y);
}

static int avg_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    kc_pool2d_desc d = pool_desc(l, ex->batch);
    return kc_avgpool2d_backward(ex->dev, &d, dy, dx);
}

static const char *const max_aliases[] = {"MaxPool2D", NULL};
static const char *const avg_aliases[] = {"AvgPool2D", NULL};

const kc_layer_class kc_max_pooling2d_class = {
    .class_name = "MaxPooling2D",
    .base_name = "max_pooling2d",
    .aliases = max_aliases,
    .state_size = sizeof(pool_state),
    .configure = max_configure,
    .build = pool_build,
    .buffer_bytes = max_buffer,
    .forward = max_forward,
    .backward = max_backward,
};

const kc_layer_class kc_average_pooling2d_class = {
    .class_name = "AveragePooling2D",
    .base_name = "average_pooling2d",
    .aliases = avg_aliases,
    .state_size = sizeof(pool_state),
    .configure = avg_configure,
    .build = pool_build,
    .forward = avg_forward,
    .backward = avg_backward,
};

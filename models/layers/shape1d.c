/* UpSampling1D, ZeroPadding1D and Cropping1D over (steps, channels) inputs:
 * strided copies (and, for UpSampling1D's gradient, a sum over the
 * repeats), so every backend runs them. */
#include <limits.h>
#include <stdio.h>

#include "models/layers/common.h"

static int sequence_input(const kc_layer *l, kc_error *e) {
    char ib[160];
    if (l->in_shape.rank != 2)
        return kc_layer_fail(l, e, "expects an input of shape (steps, channels), got %s",
                             kc_shape_str(&l->in_shape, 1, ib, sizeof ib));
    return KC_OK;
}

/* Steps [first, first + small) of the long sequence <-> the short one:
 * copies short -> long (to_long) or long -> short. */
static int steps_copy(kc_device *d, int batch, int64_t long_steps, int64_t short_steps, int64_t c,
                      int64_t first, kc_buf from, kc_buf to, int to_long) {
    kc_copy_desc g = {3, {batch, short_steps, c}, {0}, {0}};
    const int64_t ls[3] = {long_steps * c, c, 1}, ss[3] = {short_steps * c, c, 1};
    for (int k = 0; k < 3; k++) {
        g.ss[k] = to_long ? ss[k] : ls[k];
        g.ds[k] = to_long ? ls[k] : ss[k];
    }
    size_t off = (size_t)(first * c);
    if (to_long) return kc_copy_strided(d, KC_COPY_SET, &g, from, kc_buf_f(to, off));
    return kc_copy_strided(d, KC_COPY_SET, &g, kc_buf_f(from, off), to);
}

/* ---- ZeroPadding1D and Cropping1D: (before, after) steps ---- */

typedef struct ends_state {
    int v[2]; /* before, after */
} ends_state;

static int ends_arg(kc_args *a, const char *key, int def, int *out, kc_error *e) {
    const int d[2] = {def, def};
    return kc_args_int_tuple(a, key, 2, 0, d, 0, INT_MAX / 4, out, e);
}

static int pad_configure(kc_layer *l, kc_args *a, kc_error *e) {
    ends_state *s = l->state;
    int rc = ends_arg(a, "padding", 1, s->v, e);
    if (!rc) rc = kc_layer_data_format(a, e);
    return rc;
}

static int pad_build(kc_layer *l, kc_error *e) {
    const ends_state *s = l->state;
    int rc = sequence_input(l, e);
    if (rc) return rc;
    const kc_shape *in = &l->in_shape;
    l->out_shape = kc_shape2(in->d[0] + s->v[0] + s->v[1], in->d[1]);
    return KC_OK;
}

static int pad_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const ends_state *s = l->state;
    const kc_shape *in = &l->in_shape, *out = &l->out_shape;
    kc_fill(ex->dev, y, 0.0f, (size_t)kc_shape_numel(out) * (size_t)ex->batch);
    return steps_copy(ex->dev, ex->batch, out->d[0], in->d[0], in->d[1], s->v[0], x, y, 1);
}

static int pad_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    const ends_state *s = l->state;
    const kc_shape *in = &l->in_shape, *out = &l->out_shape;
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    return steps_copy(ex->dev, ex->batch, out->d[0], in->d[0], in->d[1], s->v[0], dy, dx, 0);
}

const kc_layer_class kc_zero_padding1d_class = {
    .class_name = "ZeroPadding1D",
    .base_name = "zero_padding1d",
    .state_size = sizeof(ends_state),
    .configure = pad_configure,
    .build = pad_build,
    .forward = pad_forward,
    .backward = pad_backward,
};

/* Keras 3's Cropping1D takes no data_format. */
static int crop_configure(kc_layer *l, kc_args *a, kc_error *e) {
    ends_state *s = l->state;
    return ends_arg(a, "cropping", 1, s->v, e);
}

static int crop_build(kc_layer *l, kc_error *e) {
    const ends_state *s = l->state;
    int rc = sequence_input(l, e);
    if (rc) return rc;
    const kc_shape *in = &l->in_shape;
    int64_t steps = in->d[0] - s->v[0] - s->v[1];
    if (steps <= 0) {
        char ib[160];
        return kc_layer_fail(l, e,
                             "cropping (%d, %d) leaves nothing of input %s: the values in "
                             "'cropping' must be smaller than the input length",
                             s->v[0], s->v[1], kc_shape_str(in, 1, ib, sizeof ib));
    }
    l->out_shape = kc_shape2(steps, in->d[1]);
    return KC_OK;
}

static int crop_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const ends_state *s = l->state;
    const kc_shape *in = &l->in_shape, *out = &l->out_shape;
    return steps_copy(ex->dev, ex->batch, in->d[0], out->d[0], in->d[1], s->v[0], x, y, 0);
}

static int crop_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    const ends_state *s = l->state;
    const kc_shape *in = &l->in_shape, *out = &l->out_shape;
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    kc_fill(ex->dev, dx, 0.0f, (size_t)kc_shape_numel(in) * (size_t)ex->batch);
    return steps_copy(ex->dev, ex->batch, in->d[0], out->d[0], in->d[1], s->v[0], dy, dx, 1);
}

const kc_layer_class kc_cropping1d_class = {
    .class_name = "Cropping1D",
    .base_name = "cropping1d",
    .state_size = sizeof(ends_state),
    .configure = crop_configure,
    .build = crop_build,
    .forward = crop_forward,
    .backward = crop_backward,
};

/* ---- UpSampling1D: every step repeated `size` times ---- */

typedef struct up_state {
    int size;
} up_state;

static int up_configure(kc_layer *l, kc_args *a, kc_error *e) {
    up_state *s = l->state;
    long long size;
    int rc = kc_args_int(a, "size", 0, 2, 1, INT_MAX, &size, e);
    s->size = (int)size;
    return rc;
}

static int up_build(kc_layer *l, kc_error *e) {
    const up_state *s = l->state;
    int rc = sequence_input(l, e);
    if (rc) return rc;
    const kc_shape *in = &l->in_shape;
    char ib[160];
    if (in->d[0] > INT_MAX / s->size)
        return kc_layer_fail(l, e, "size %d makes input %s too long", s->size,
                             kc_shape_str(in, 1, ib, sizeof ib));
    l->out_shape = kc_shape2(in->d[0] * s->size, in->d[1]);
    return KC_OK;
}

static int up_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const up_state *s = l->state;
    int64_t n = l->in_shape.d[0], c = l->in_shape.d[1], r = s->size;
    kc_copy_desc g = {4, {ex->batch, n, r, c}, {n * c, c, 0, 1}, {n * r * c, r * c, c, 1}};
    return kc_copy_strided(ex->dev, KC_COPY_SET, &g, x, y);
}

/* dx[b, t, c] = sum over the repeats of dy[b, t * size + j, c] */
static int up_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    const up_state *s = l->state;
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    kc_reduce_desc g = {(int64_t)ex->batch * l->in_shape.d[0], s->size, l->in_shape.d[1]};
    return kc_reduce(ex->dev, KC_RED_SUM, &g, 1.0f, dy, 0.0f, dx);
}

const kc_layer_class kc_up_sampling1d_class = {
    .class_name = "UpSampling1D",
    .base_name = "up_sampling1d",
    .state_size = sizeof(up_state),
    .configure = up_configure,
    .build = up_build,
    .forward = up_forward,
    .backward = up_backward,
};

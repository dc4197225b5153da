/* ZeroPadding2D and Cropping2D over NHWC inputs: strided copies of the
 * kept window, so every backend runs them. */
#include <limits.h>
#include <stdio.h>

#include "models/layers/common.h"

typedef struct edge_state {
    int v[4]; /* top, bottom, left, right */
} edge_state;

/* Keras's int / (sym_h, sym_w) / ((top, bottom), (left, right)). */
static int edges_arg(kc_args *a, const char *key, int def, int *out, kc_error *e) {
    kc_node *v = kc_args_node(a, key);
    if (!v || kc_node_is_null(v) || v->kind == KC_NODE_SCALAR ||
        (v->kind == KC_NODE_SEQ && v->n == 2 && v->items[0]->kind == KC_NODE_SCALAR &&
         v->items[1]->kind == KC_NODE_SCALAR)) {
        const int d[2] = {def, def};
        int hw[2];
        int rc = kc_args_int_tuple(a, key, 2, 0, d, 0, INT_MAX / 4, hw, e);
        if (rc) return rc;
        out[0] = out[1] = hw[0];
        out[2] = out[3] = hw[1];
        return KC_OK;
    }
    int ok = v->kind == KC_NODE_SEQ && v->n == 2;
    for (size_t i = 0; ok && i < 2; i++)
        ok = v->items[i]->kind == KC_NODE_SEQ && v->items[i]->n == 2;
    if (!ok)
        return kc_node_fail(e, v,
                            "%s argument '%s': expected an integer, a list of 2 integers or 2 "
                            "lists of 2 integers ((top, bottom), (left, right)), got %s",
                            a->owner, key, kc_node_kind_name(v));
    for (int i = 0; i < 4; i++) {
        const kc_node *n = v->items[i / 2]->items[i % 2];
        long long x;
        if (kc_node_int(n, &x, e)) return e->code;
        if (x < 0 || x > INT_MAX / 4)
            return kc_node_fail(e, n, "%s argument '%s': expected an integer in [0, %d], got %lld",
                                a->owner, key, INT_MAX / 4, x);
        out[i] = (int)x;
    }
    return KC_OK;
}

static int image_input(const kc_layer *l, kc_error *e) {
    char ib[160];
    if (l->in_shape.rank != 3)
        return kc_layer_fail(l, e, "expects an input of shape (height, width, channels), got %s",
                             kc_shape_str(&l->in_shape, 1, ib, sizeof ib));
    return KC_OK;
}

/* The window of the big image (b: bh x bw) that holds the small one (s), at
 * (top, left): copies small -> big (to_big) or big -> small. */
static int window_copy(kc_device *d, int batch, const kc_shape *big, const kc_shape *small, int top,
                       int left, kc_buf from, kc_buf to, int to_big) {
    int64_t bw = big->d[1], c = big->d[2], sh = small->d[0], sw = small->d[1];
    kc_copy_desc g = {4, {batch, sh, sw, c}, {0}, {0}};
    const int64_t bs[4] = {big->d[0] * bw * c, bw * c, c, 1}, ss[4] = {sh * sw * c, sw * c, c, 1};
    size_t off = (size_t)(((int64_t)top * bw + left) * c);
    for (int k = 0; k < 4; k++) {
        g.ss[k] = to_big ? ss[k] : bs[k];
        g.ds[k] = to_big ? bs[k] : ss[k];
    }
    if (to_big) return kc_copy_strided(d, KC_COPY_SET, &g, from, kc_buf_f(to, off));
    return kc_copy_strided(d, KC_COPY_SET, &g, kc_buf_f(from, off), to);
}

/* ---- ZeroPadding2D ---- */

static int pad_configure(kc_layer *l, kc_args *a, kc_error *e) {
    edge_state *s = l->state;
    int rc = edges_arg(a, "padding", 1, s->v, e);
    if (!rc) rc = kc_layer_data_format(a, e);
    return rc;
}

static int pad_build(kc_layer *l, kc_error *e) {
    const edge_state *s = l->state;
    int rc = image_input(l, e);
    if (rc) return rc;
    const kc_shape *in = &l->in_shape;
    l->out_shape = kc_shape3(in->d[0] + s->v[0] + s->v[1], in->d[1] + s->v[2] + s->v[3], in->d[2]);
    return KC_OK;
}

static int pad_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const edge_state *s = l->state;
    kc_fill(ex->dev, y, 0.0f, (size_t)kc_shape_numel(&l->out_shape) * (size_t)ex->batch);
    return window_copy(ex->dev, ex->batch, &l->out_shape, &l->in_shape, s->v[0], s->v[2], x, y, 1);
}

static int pad_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    const edge_state *s = l->state;
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    return window_copy(ex->dev, ex->batch, &l->out_shape, &l->in_shape, s->v[0], s->v[2], dy, dx,
                       0);
}

const kc_layer_class kc_zero_padding2d_class = {
    .class_name = "ZeroPadding2D",
    .base_name = "zero_padding2d",
    .state_size = sizeof(edge_state),
    .configure = pad_configure,
    .build = pad_build,
    .forward = pad_forward,
    .backward = pad_backward,
};

/* ---- Cropping2D ---- */

static int crop_configure(kc_layer *l, kc_args *a, kc_error *e) {
    edge_state *s = l->state;
    int rc = edges_arg(a, "cropping", 0, s->v, e);
    if (!rc) rc = kc_layer_data_format(a, e);
    return rc;
}

static int crop_build(kc_layer *l, kc_error *e) {
    const edge_state *s = l->state;
    int rc = image_input(l, e);
    if (rc) return rc;
    const kc_shape *in = &l->in_shape;
    int64_t h = in->d[0] - s->v[0] - s->v[1], w = in->d[1] - s->v[2] - s->v[3];
    if (h <= 0 || w <= 0) {
        char ib[160];
        return kc_layer_fail(l, e,
                             "cropping ((%d, %d), (%d, %d)) leaves nothing of input %s: values "
                             "in 'cropping' must be smaller than the spatial dimensions",
                             s->v[0], s->v[1], s->v[2], s->v[3],
                             kc_shape_str(in, 1, ib, sizeof ib));
    }
    l->out_shape = kc_shape3(h, w, in->d[2]);
    return KC_OK;
}

static int crop_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const edge_state *s = l->state;
    return window_copy(ex->dev, ex->batch, &l->in_shape, &l->out_shape, s->v[0], s->v[2], x, y, 0);
}

static int crop_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    const edge_state *s = l->state;
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    kc_fill(ex->dev, dx, 0.0f, (size_t)kc_shape_numel(&l->in_shape) * (size_t)ex->batch);
    return window_copy(ex->dev, ex->batch, &l->in_shape, &l->out_shape, s->v[0], s->v[2], dy, dx,
                       1);
}

const kc_layer_class kc_cropping2d_class = {
    .class_name = "Cropping2D",
    .base_name = "cropping2d",
    .state_size = sizeof(edge_state),
    .configure = crop_configure,
    .build = crop_build,
    .forward = crop_forward,
    .backward = crop_backward,
};

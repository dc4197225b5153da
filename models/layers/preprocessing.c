/* Rescaling (y = x * scale + offset) and Identity. */
#include <math.h>

#include "models/layers/common.h"

typedef struct rescale_state {
    float scale, offset;
} rescale_state;

static size_t n_of(const kc_layer *l, int batch) {
    return (size_t)kc_shape_numel(&l->in_shape) * (size_t)batch;
}

static int same_build(kc_layer *l, kc_error *e) {
    l->out_shape = l->in_shape;
    return KC_OK;
}

/* ---- Rescaling ---- */

static int rescale_configure(kc_layer *l, kc_args *a, kc_error *e) {
    rescale_state *s = l->state;
    double scale, offset;
    int rc = kc_args_float(a, "scale", 1, 1.0, -INFINITY, INFINITY, &scale, e);
    if (!rc) rc = kc_args_float(a, "offset", 0, 0.0, -INFINITY, INFINITY, &offset, e);
    if (rc) return rc;
    s->scale = (float)scale;
    s->offset = (float)offset;
    return KC_OK;
}

static int rescale_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const rescale_state *s = l->state;
    size_t n = n_of(l, ex->batch);
    kc_unary(ex->dev, KC_UN_MUL, s->scale, x, y, n);
    return kc_unary(ex->dev, KC_UN_ADD, s->offset, y, y, n);
}

static int rescale_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                            kc_buf dx) {
    const rescale_state *s = l->state;
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    return kc_unary(ex->dev, KC_UN_MUL, s->scale, dy, dx, n_of(l, ex->batch));
}

static int64_t rescale_flops(const kc_layer *l) {
    return 2 * kc_shape_numel(&l->in_shape);
}

const kc_layer_class kc_rescaling_class = {
    .class_name = "Rescaling",
    .mask_rule = kc_mask_propagate,
    .base_name = "rescaling",
    .state_size = sizeof(rescale_state),
    .configure = rescale_configure,
    .build = same_build,
    .flops = rescale_flops,
    .forward = rescale_forward,
    .backward = rescale_backward,
};

/* ---- Identity ---- */

static int identity_configure(kc_layer *l, kc_args *a, kc_error *e) {
    return KC_OK;
}

static int identity_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    return kc_layer_copy(ex->dev, y, x, n_of(l, ex->batch));
}

static int identity_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                             kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    return kc_layer_copy(ex->dev, dx, dy, n_of(l, ex->batch));
}

const kc_layer_class kc_identity_class = {
    .class_name = "Identity",
    .mask_rule = kc_mask_propagate,
    .base_name = "identity",
    .configure = identity_configure,
    .build = same_build,
    .forward = identity_forward,
    .backward = identity_backward,
};

/* Activation: the layer's own forward is the identity; the model applies
 * l->activation after it, as for any layer with an activation. */
#include "models/layers/common.h"

static int activation_configure(kc_layer *l, kc_args *a, kc_error *e) {
    kc_node *n = kc_args_node(a, "activation");
    if (!n) { /* Keras's Activation(activation) has no default */
        const char *unused;
        return kc_args_str(a, "activation", 1, NULL, &unused, e);
    }
    return kc_args_activation(a, "activation", "linear", &l->activation, e);
}

static int activation_build(kc_layer *l, kc_error *e) {
    l->out_shape = l->in_shape;
    return KC_OK;
}

static int activation_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    return kc_layer_copy(ex->dev, y, x, (size_t)kc_shape_numel(&l->in_shape) * (size_t)ex->batch);
}

static int activation_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                               kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    return kc_layer_copy(ex->dev, dx, dy, (size_t)kc_shape_numel(&l->in_shape) * (size_t)ex->batch);
}

const kc_layer_class kc_activation_class = {
    .class_name = "Activation",
    .mask_rule = kc_mask_propagate,
    .base_name = "activation",
    .configure = activation_configure,
    .build = activation_build,
    .forward = activation_forward,
    .backward = activation_backward,
};

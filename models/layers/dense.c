/* Dense: y = x W + b over the last axis; leading axes are rows. */
#include <limits.h>
#include <stdio.h>

#include "models/layers/common.h"

typedef struct dense_state {
    int units;
    int use_bias;
    kc_initializer kernel_init, bias_init;
    kc_weight_opts kernel_opts, bias_opts;
    int64_t in;   /* last input axis */
    int64_t rows; /* rows per sample: the product of the leading axes */
} dense_state;

static const char *const dense_unsupported[] = {
    "lora_rank",
    "lora_alpha",
    "quantization_config",
    NULL,
};

static int dense_configure(kc_layer *l, kc_args *a, kc_error *e) {
    dense_state *s = l->state;
    long long units;
    int rc = kc_args_int(a, "units", 1, 0, 1, LLONG_MAX, &units, e);
    if (!rc && units > INT_MAX)
        rc = kc_node_fail(e, kc_args_node(a, "units"), "Dense argument 'units' is too large: %lld",
                          units);
    if (!rc) rc = kc_args_activation(a, "activation", "linear", &l->activation, e);
    if (!rc) rc = kc_args_bool(a, "use_bias", 1, &s->use_bias, e);
    if (!rc)
        rc = kc_args_initializer(a, "kernel_initializer", "glorot_uniform", &s->kernel_init, e);
    if (!rc) rc = kc_args_initializer(a, "bias_initializer", "zeros", &s->bias_init, e);
    if (!rc) rc = kc_args_weight_opts(a, "kernel", &s->kernel_opts, e);
    if (!rc) rc = kc_args_weight_opts(a, "bias", &s->bias_opts, e);
    if (!rc) rc = kc_layer_reject_unsupported(a, dense_unsupported, e);
    s->units = (int)units;
    return rc;
}

static int dense_build(kc_layer *l, kc_error *e) {
    dense_state *s = l->state;
    const kc_shape *in = &l->in_shape;
    if (in->rank < 1) {
        char buf[160];
        return kc_layer_fail(l, e, "expects an input with at least one axis, got %s",
                             kc_shape_str(in, 1, buf, sizeof buf));
    }
    s->in = in->d[in->rank - 1];
    s->rows = kc_shape_numel(in) / s->in;
    l->out_shape = *in;
    l->out_shape.d[in->rank - 1] = s->units;
    kc_param *k = kc_layer_add_param(l, "kernel", kc_shape2(s->in, s->units), &s->kernel_init, 1);
    int rc = kc_param_set_opts(k, &s->kernel_opts, l->name, e);
    if (!rc && s->use_bias) {
        kc_param *b = kc_layer_add_param(l, "bias", kc_shape1(s->units), &s->bias_init, 1);
        rc = kc_param_set_opts(b, &s->bias_opts, l->name, e);
    }
    return rc;
}

static int dense_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const dense_state *s = l->state;
    kc_device *d = ex->dev;
    int rows = (int)(s->rows * ex->batch), in = (int)s->in, units = s->units;
    int rc =
        kc_gemm(d, 0, 0, rows, units, in, 1.0f, x, in, l->params[0].value, units, 0.0f, y, units);
    if (!rc && s->use_bias) rc = kc_bias_add(d, y, l->params[1].value, rows, units);
    return rc;
}

static int dense_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                          kc_buf dx) {
    const dense_state *s = l->state;
    kc_device *d = ex->dev;
    int rows = (int)(s->rows * ex->batch), in = (int)s->in, units = s->units;
    float beta = ex->accumulate ? 1.0f : 0.0f;
    kc_param *w = &l->params[0];
    if (kc_layer_wants_grad(l, w)) /* dW = x^T dy */
        kc_gemm(d, 1, 0, in, units, rows, 1.0f, x, in, dy, units, beta, w->grad, units);
    if (s->use_bias && kc_layer_wants_grad(l, &l->params[1]))
        kc_bias_grad(d, l->params[1].grad, dy, rows, units, beta);
    if (kc_buf_ok(dx)) /* dx = dy W^T */
        kc_gemm(d, 0, 1, rows, in, units, 1.0f, dy, units, w->value, units, 0.0f, dx, in);
    return kc_device_status(d);
}

static int64_t dense_flops(const kc_layer *l) {
    const dense_state *s = l->state;
    return 2 * s->rows * s->in * (int64_t)s->units;
}

const kc_layer_class kc_dense_class = {
    .class_name = "Dense",
    .mask_rule = kc_mask_propagate,
    .base_name = "dense",
    .aliases = NULL,
    .state_size = sizeof(dense_state),
    .configure = dense_configure,
    .build = dense_build,
    .forward = dense_forward,
    .backward = dense_backward,
    .flops = dense_flops,
};

/* DepthwiseConv2D and SeparableConv2D over NHWC inputs, on the depthwise
 * convolution op (core/backend.h). Keras's layouts: DepthwiseConv2D's
 * "kernel" is (kh, kw, in, depth_multiplier); SeparableConv2D has
 * "depthwise_kernel" (kh, kw, in, depth_multiplier), "pointwise_kernel"
 * (1, 1, in * depth_multiplier, filters) and "bias" (filters). */
#include <limits.h>
#include <stdio.h>

#include "models/layers/common.h"

typedef struct dw_state {
    int separable;
    int filters; /* separable only */
    int k[2], stride[2], dilation[2];
    int same, multiplier, use_bias;
    kc_initializer dw_init, pw_init, bias_init;
    kc_weight_opts dw_opts, pw_opts, bias_opts;
    kc_conv2d_desc d; /* the depthwise step per sample; n set per call */
} dw_state;

static const char *const dw_unsupported[] = {"lora_rank", "lora_alpha", NULL};

static int dw_window_args(kc_args *a, dw_state *s, kc_error *e) {
    static const int ones[2] = {1, 1};
    long long m = 1;
    int rc = kc_args_int_tuple(a, "kernel_size", 2, 1, NULL, 1, INT_MAX, s->k, e);
    if (!rc) rc = kc_args_int_tuple(a, "strides", 2, 0, ones, 1, INT_MAX, s->stride, e);
    if (!rc) rc = kc_layer_padding(a, &s->same, e);
    if (!rc) rc = kc_args_int(a, "depth_multiplier", 0, 1, 1, INT_MAX, &m, e);
    s->multiplier = (int)m;
    if (!rc) rc = kc_layer_data_format(a, e);
    if (!rc) rc = kc_args_int_tuple(a, "dilation_rate", 2, 0, ones, 1, INT_MAX, s->dilation, e);
    if (rc) return rc;
    int strided = s->stride[0] > 1 || s->stride[1] > 1;
    int dilated = s->dilation[0] > 1 || s->dilation[1] > 1;
    if (strided && dilated)
        return kc_node_fail(e, kc_args_node(a, "dilation_rate"),
                            "%s: strides > 1 is not supported together with dilation_rate > 1 "
                            "(got strides (%d, %d) and dilation_rate (%d, %d))",
                            a->owner, s->stride[0], s->stride[1], s->dilation[0], s->dilation[1]);
    return KC_OK;
}

static int dw_common_args(kc_layer *l, kc_args *a, dw_state *s, kc_error *e) {
    int rc = kc_args_activation(a, "activation", "linear", &l->activation, e);
    if (!rc) rc = kc_args_bool(a, "use_bias", 1, &s->use_bias, e);
    if (!rc) rc = kc_args_initializer(a, "depthwise_initializer", "glorot_uniform", &s->dw_init, e);
    if (!rc) rc = kc_args_initializer(a, "bias_initializer", "zeros", &s->bias_init, e);
    if (!rc) rc = kc_args_weight_opts(a, "depthwise", &s->dw_opts, e);
    if (!rc) rc = kc_args_weight_opts(a, "bias", &s->bias_opts, e);
    if (!rc) rc = kc_layer_reject_unsupported(a, dw_unsupported, e);
    return rc;
}

static int depthwise_configure(kc_layer *l, kc_args *a, kc_error *e) {
    dw_state *s = l->state;
    int rc = dw_window_args(a, s, e);
    return rc ? rc : dw_common_args(l, a, s, e);
}

static int separable_configure(kc_layer *l, kc_args *a, kc_error *e) {
    dw_state *s = l->state;
    long long filters = 1;
    s->separable = 1;
    int rc = kc_args_int(a, "filters", 1, 0, 1, INT_MAX, &filters, e);
    s->filters = (int)filters;
    if (!rc) rc = dw_window_args(a, s, e);
    if (!rc) rc = kc_args_initializer(a, "pointwise_initializer", "glorot_uniform", &s->pw_init, e);
    if (!rc) rc = kc_args_weight_opts(a, "pointwise", &s->pw_opts, e);
    return rc ? rc : dw_common_args(l, a, s, e);
}

static int add_param(kc_layer *l, const char *name, kc_shape shape, const kc_initializer *init,
                     const kc_weight_opts *o, kc_error *e) {
    kc_param *p = kc_layer_add_param(l, name, shape, init, 1);
    return kc_param_set_opts(p, o, l->name, e);
}

static int dw_geometry(kc_layer *l, dw_state *s, kc_error *e) {
    const kc_shape *in = &l->in_shape;
    char ib[160];
    if (in->rank != 3)
        return kc_layer_fail(l, e,
                             "expects an input of shape (height, width, channels), got %s; add a "
                             "Reshape layer or give input_shape with three axes",
                             kc_shape_str(in, 1, ib, sizeof ib));
    int64_t oh = kc_window_out(in->d[0], s->k[0], s->stride[0], s->dilation[0], s->same);
    int64_t ow = kc_window_out(in->d[1], s->k[1], s->stride[1], s->dilation[1], s->same);
    if (oh <= 0 || ow <= 0)
        return kc_layer_fail(l, e, "kernel %dx%d (dilation %dx%d) does not fit input %s", s->k[0],
                             s->k[1], s->dilation[0], s->dilation[1],
                             kc_shape_str(in, 1, ib, sizeof ib));
    if (in->d[0] > INT_MAX || in->d[1] > INT_MAX || in->d[2] > INT_MAX / s->multiplier)
        return kc_layer_fail(l, e, "input %s is too large", kc_shape_str(in, 1, ib, sizeof ib));
    kc_conv2d_desc *d = &s->d;
    *d = (kc_conv2d_desc){.n = 1, .h = (int)in->d[0], .w = (int)in->d[1], .c = (int)in->d[2]};
    d->kh = s->k[0], d->kw = s->k[1];
    d->oc = d->c * s->multiplier;
    d->sh = s->stride[0], d->sw = s->stride[1];
    d->dh = s->dilation[0], d->dw = s->dilation[1];
    d->oh = (int)oh, d->ow = (int)ow;
    d->pad_t = kc_window_pad_before(in->d[0], oh, d->kh, d->sh, d->dh, s->same);
    d->pad_l = kc_window_pad_before(in->d[1], ow, d->kw, d->sw, d->dw, s->same);
    return KC_OK;
}

static int depthwise_build(kc_layer *l, kc_error *e) {
    dw_state *s = l->state;
    int rc = dw_geometry(l, s, e);
    if (rc) return rc;
    const kc_conv2d_desc *d = &s->d;
    l->out_shape = kc_shape3(d->oh, d->ow, d->oc);
    rc = add_param(l, "kernel", kc_shape4(d->kh, d->kw, d->c, s->multiplier), &s->dw_init,
                   &s->dw_opts, e);
    if (!rc && s->use_bias)
        rc = add_param(l, "bias", kc_shape1(d->oc), &s->bias_init, &s->bias_opts, e);
    return rc;
}

static int separable_build(kc_layer *l, kc_error *e) {
    dw_state *s = l->state;
    int rc = dw_geometry(l, s, e);
    if (rc) return rc;
    const kc_conv2d_desc *d = &s->d;
    l->out_shape = kc_shape3(d->oh, d->ow, s->filters);
    rc = add_param(l, "depthwise_kernel", kc_shape4(d->kh, d->kw, d->c, s->multiplier), &s->dw_init,
                   &s->dw_opts, e);
    if (!rc)
        rc = add_param(l, "pointwise_kernel", kc_shape4(1, 1, d->oc, s->filters), &s->pw_init,
                       &s->pw_opts, e);
    if (!rc && s->use_bias)
        rc = add_param(l, "bias", kc_shape1(s->filters), &s->bias_init, &s->bias_opts, e);
    return rc;
}

static kc_conv2d_desc dw_desc(const kc_layer *l, int batch) {
    const dw_state *s = l->state;
    kc_conv2d_desc d = s->d;
    d.n = batch;
    return d;
}

/* Output pixels of a batch. */
static int dw_rows(const kc_conv2d_desc *d) {
    return d->n * d->oh * d->ow;
}

static int depthwise_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const dw_state *s = l->state;
    kc_conv2d_desc d = dw_desc(l, ex->batch);
    int rc = kc_depthwise_conv2d_forward(ex->dev, &d, x, l->params[0].value, y);
    if (!rc && s->use_bias) rc = kc_bias_add(ex->dev, y, l->params[1].value, dw_rows(&d), d.oc);
    return rc;
}

static void depthwise_grads(kc_layer *l, const kc_exec *ex, const kc_conv2d_desc *d, kc_buf x,
                            kc_buf dmid, kc_buf dx) {
    kc_param *w = &l->params[0];
    if (kc_layer_wants_grad(l, w))
        kc_depthwise_conv2d_backward_filter(ex->dev, d, x, dmid, w->grad,
                                            ex->accumulate ? 1.0f : 0.0f);
    if (kc_buf_ok(dx)) kc_depthwise_conv2d_backward_data(ex->dev, d, dmid, w->value, dx);
}

static int depthwise_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                              kc_buf dx) {
    const dw_state *s = l->state;
    kc_conv2d_desc d = dw_desc(l, ex->batch);
    if (s->use_bias && kc_layer_wants_grad(l, &l->params[1]))
        kc_bias_grad(ex->dev, l->params[1].grad, dy, dw_rows(&d), d.oc,
                     ex->accumulate ? 1.0f : 0.0f);
    depthwise_grads(l, ex, &d, x, dy, dx);
    return kc_device_status(ex->dev);
}

/* SeparableConv2D keeps the depthwise output (the pointwise input) from
 * forward to backward; its gradient lives in the workspace. */
static size_t separable_mid_bytes(const kc_layer *l, int max_batch, const kc_device *dev) {
    (void)dev;
    kc_conv2d_desc d = dw_desc(l, max_batch);
    return (size_t)dw_rows(&d) * (size_t)d.oc * sizeof(float);
}

static int separable_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const dw_state *s = l->state;
    kc_conv2d_desc d = dw_desc(l, ex->batch);
    kc_device *dev = ex->dev;
    kc_depthwise_conv2d_forward(dev, &d, x, l->params[0].value, l->buf);
    kc_gemm(dev, 0, 0, dw_rows(&d), s->filters, d.oc, 1.0f, l->buf, d.oc, l->params[1].value,
            s->filters, 0.0f, y, s->filters);
    if (s->use_bias) kc_bias_add(dev, y, l->params[2].value, dw_rows(&d), s->filters);
    return kc_device_status(dev);
}

static int separable_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                              kc_buf dx) {
    const dw_state *s = l->state;
    kc_conv2d_desc d = dw_desc(l, ex->batch);
    kc_device *dev = ex->dev;
    float beta = ex->accumulate ? 1.0f : 0.0f;
    kc_param *pw = &l->params[1];
    int rows = dw_rows(&d);
    if (s->use_bias && kc_layer_wants_grad(l, &l->params[2]))
        kc_bias_grad(dev, l->params[2].grad, dy, rows, s->filters, beta);
    if (kc_layer_wants_grad(l, pw))
        kc_gemm(dev, 1, 0, d.oc, s->filters, rows, 1.0f, l->buf, d.oc, dy, s->filters, beta,
                pw->grad, s->filters);
    kc_gemm(dev, 0, 1, rows, d.oc, s->filters, 1.0f, dy, s->filters, pw->value, s->filters, 0.0f,
            ex->ws, d.oc);
    depthwise_grads(l, ex, &d, x, ex->ws, dx);
    return kc_device_status(dev);
}

static int64_t depthwise_flops(const kc_layer *l) {
    const dw_state *s = l->state;
    const kc_conv2d_desc *d = &s->d;
    int64_t f = 2 * (int64_t)d->oh * d->ow * d->oc * d->kh * d->kw;
    if (s->separable) f += 2 * (int64_t)d->oh * d->ow * d->oc * s->filters;
    return f;
}

const kc_layer_class kc_depthwise_conv2d_class = {
    .class_name = "DepthwiseConv2D",
    .base_name = "depthwise_conv2d",
    .state_size = sizeof(dw_state),
    .configure = depthwise_configure,
    .build = depthwise_build,
    .forward = depthwise_forward,
    .backward = depthwise_backward,
    .flops = depthwise_flops,
};

static const char *const separable_aliases[] = {"SeparableConvolution2D", NULL};

const kc_layer_class kc_separable_conv2d_class = {
    .class_name = "SeparableConv2D",
    .base_name = "separable_conv2d",
    .aliases = separable_aliases,
    .state_size = sizeof(dw_state),
    .configure = separable_configure,
    .build = separable_build,
    .buffer_bytes = separable_mid_bytes,
    .workspace_bytes = separable_mid_bytes,
    .forward = separable_forward,
    .backward = separable_backward,
    .flops = depthwise_flops,
};

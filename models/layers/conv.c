/* Conv2D over NHWC inputs with an HWIO kernel (Keras's layout). */
#include <limits.h>
#include <stdio.h>

#include "models/layers/common.h"

typedef struct conv_state {
    int filters;
    int k[2], stride[2], dilation[2];
    int same;
    int use_bias;
    kc_initializer kernel_init, bias_init;
    kc_weight_opts kernel_opts, bias_opts;
    kc_conv2d_desc d; /* per-sample geometry; n is set per call */
} conv_state;

static const char *const conv_unsupported[] = {
    "lora_rank", "lora_alpha", "dora_rank", "dora_alpha", NULL,
};

static int conv_groups(kc_args *a, int filters, kc_error *e) {
    long long groups;
    int rc = kc_args_int(a, "groups", 0, 1, 1, LLONG_MAX, &groups, e);
    if (rc) return rc;
    if (filters % groups != 0)
        return kc_node_fail(e, kc_args_node(a, "groups"),
                            "%s: the number of filters (%d) must be divisible by groups (%lld)",
                            a->owner, filters, groups);
    if (groups != 1)
        return kc_node_fail(e, kc_args_node(a, "groups"),
                            "%s argument 'groups': grouped convolution (groups=%lld) is not "
                            "supported yet by kerasc (use groups: 1)",
                            a->owner, groups);
    return KC_OK;
}

static int conv_configure(kc_layer *l, kc_args *a, kc_error *e) {
    conv_state *s = l->state;
    static const int ones[2] = {1, 1};
    long long filters = 1;
    int rc = kc_args_int(a, "filters", 1, 0, 1, LLONG_MAX, &filters, e);
    if (!rc && filters > INT_MAX)
        rc = kc_node_fail(e, kc_args_node(a, "filters"),
                          "Conv2D argument 'filters' is too large: %lld", filters);
    s->filters = (int)filters;
    if (!rc) rc = kc_args_int_tuple(a, "kernel_size", 2, 1, NULL, 1, INT_MAX, s->k, e);
    if (!rc) rc = kc_args_int_tuple(a, "strides", 2, 0, ones, 1, INT_MAX, s->stride, e);
    if (!rc) rc = kc_layer_padding(a, &s->same, e);
    if (!rc) rc = kc_layer_data_format(a, e);
    if (!rc) rc = kc_args_int_tuple(a, "dilation_rate", 2, 0, ones, 1, INT_MAX, s->dilation, e);
    if (!rc) rc = conv_groups(a, s->filters, e);
    if (!rc) rc = kc_args_activation(a, "activation", "linear", &l->activation, e);
    if (!rc) rc = kc_args_bool(a, "use_bias", 1, &s->use_bias, e);
    if (!rc)
        rc = kc_args_initializer(a, "kernel_initializer", "glorot_uniform", &s->kernel_init, e);
    if (!rc) rc = kc_args_initializer(a, "bias_initializer", "zeros", &s->bias_init, e);
    if (!rc) rc = kc_args_weight_opts(a, "kernel", &s->kernel_opts, e);
    if (!rc) rc = kc_args_weight_opts(a, "bias", &s->bias_opts, e);
    if (!rc) rc = kc_layer_reject_unsupported(a, conv_unsupported, e);
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

static int conv_build(kc_layer *l, kc_error *e) {
    conv_state *s = l->state;
    const kc_shape *in = &l->in_shape;
    char ib[160], ob[160];
    if (in->rank != 3)
        return kc_layer_fail(l, e,
                             "expects an input of shape (height, width, channels), got %s; add a "
                             "Reshape layer or give input_shape with three axes",
                             kc_shape_str(in, 1, ib, sizeof ib));
    int64_t oh = kc_window_out(in->d[0], s->k[0], s->stride[0], s->dilation[0], s->same);
    int64_t ow = kc_window_out(in->d[1], s->k[1], s->stride[1], s->dilation[1], s->same);
    l->out_shape = kc_shape3(oh, ow, s->filters);
    if (oh <= 0 || ow <= 0)
        return kc_layer_fail(l, e,
                             "kernel %dx%d (dilation %dx%d) does not fit input %s: the output "
                             "would be %s",
                             s->k[0], s->k[1], s->dilation[0], s->dilation[1],
                             kc_shape_str(in, 1, ib, sizeof ib),
                             kc_shape_str(&l->out_shape, 1, ob, sizeof ob));
    if (in->d[0] > INT_MAX || in->d[1] > INT_MAX || in->d[2] > INT_MAX)
        return kc_layer_fail(l, e, "input %s is too large", kc_shape_str(in, 1, ib, sizeof ib));
    kc_conv2d_desc *d = &s->d;
    d->n = 1;
    d->h = (int)in->d[0];
    d->w = (int)in->d[1];
    d->c = (int)in->d[2];
    d->kh = s->k[0];
    d->kw = s->k[1];
    d->oc = s->filters;
    d->sh = s->stride[0];
    d->sw = s->stride[1];
    d->dh = s->dilation[0];
    d->dw = s->dilation[1];
    d->oh = (int)oh;
    d->ow = (int)ow;
    d->pad_t = kc_window_pad_before(in->d[0], oh, d->kh, d->sh, d->dh, s->same);
    d->pad_l = kc_window_pad_before(in->d[1], ow, d->kw, d->sw, d->dw, s->same);
    kc_param *k =
        kc_layer_add_param(l, "kernel", kc_shape4(d->kh, d->kw, d->c, d->oc), &s->kernel_init, 1);
    int rc = kc_param_set_opts(k, &s->kernel_opts, l->name, e);
    if (!rc && s->use_bias) {
        kc_param *b = kc_layer_add_param(l, "bias", kc_shape1(d->oc), &s->bias_init, 1);
        rc = kc_param_set_opts(b, &s->bias_opts, l->name, e);
    }
    return rc;
}

static kc_conv2d_desc conv_desc(const kc_layer *l, int batch) {
    const conv_state *s = l->state;
    kc_conv2d_desc d = s->d;
    d.n = batch;
    return d;
}

static size_t conv_workspace(const kc_layer *l, int max_batch, const kc_device *dev) {
    kc_conv2d_desc d = conv_desc(l, max_batch);
    return kc_conv2d_workspace(dev, &d);
}

static int conv_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const conv_state *s = l->state;
    kc_device *dev = ex->dev;
    kc_conv2d_desc d = conv_desc(l, ex->batch);
    int rc = kc_conv2d_forward(dev, &d, x, l->params[0].value, y, ex->ws);
    if (!rc && s->use_bias) rc = kc_bias_add(dev, y, l->params[1].value, d.n * d.oh * d.ow, d.oc);
    return rc;
}

static int conv_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    const conv_state *s = l->state;
    kc_device *dev = ex->dev;
    kc_conv2d_desc d = conv_desc(l, ex->batch);
    float beta = ex->accumulate ? 1.0f : 0.0f;
    kc_param *w = &l->params[0];
    if (kc_layer_wants_grad(l, w)) kc_conv2d_backward_filter(dev, &d, x, dy, w->grad, beta, ex->ws);
    if (s->use_bias && kc_layer_wants_grad(l, &l->params[1]))
        kc_bias_grad(dev, l->params[1].grad, dy, d.n * d.oh * d.ow, d.oc, beta);
    if (kc_buf_ok(dx)) kc_conv2d_backward_data(dev, &d, dy, w->value, dx, ex->ws);
    return kc_device_status(dev);
}

static int64_t conv_flops(const kc_layer *l) {
    const conv_state *s = l->state;
    const kc_conv2d_desc *d = &s->d;
    return 2 * (int64_t)d->oh * d->ow * d->oc * d->kh * d->kw * d->c;
}

static const char *const conv_aliases[] = {"Convolution2D", NULL};

const kc_layer_class kc_conv2d_class = {
    .class_name = "Conv2D",
    .base_name = "conv2d",
    .aliases = conv_aliases,
    .state_size = sizeof(conv_state),
    .configure = conv_configure,
    .build = conv_build,
    .workspace_bytes = conv_workspace,
    .forward = conv_forward,
    .backward = conv_backward,
    .flops = conv_flops,
};

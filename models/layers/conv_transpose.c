/* Conv2DTranspose over NHWC inputs. Keras's kernel is (kh, kw, filters, in):
 * the HWIO kernel of the convolution that maps the layer's output back to
 * its input, so with that convolution's geometry g (input = this layer's
 * output, output = this layer's input)
 *   forward          y  = conv2d backward data (x, kernel)
 *   backward data    dx = conv2d forward (dy, kernel)
 *   backward filter  dK = conv2d backward filter (dy, x)
 * Output sizes and padding follow TensorFlow's conv_transpose (Keras's
 * compute_conv_transpose_output_shape). */
#include <limits.h>
#include <stdio.h>

#include "models/layers/common.h"

typedef struct convt_state {
    int filters;
    int k[2], stride[2], dilation[2];
    int same, use_bias;
    int has_output_padding, output_padding[2];
    kc_initializer kernel_init, bias_init;
    kc_weight_opts kernel_opts, bias_opts;
    kc_conv2d_desc d; /* the convolution from y back to x; n set per call */
} convt_state;

static const char *const convt_unsupported[] = {"lora_rank", "lora_alpha", NULL};

static int convt_output_padding(kc_args *a, convt_state *s, kc_error *e) {
    s->has_output_padding = kc_args_has(a, "output_padding");
    if (!s->has_output_padding) return KC_OK;
    int rc = kc_args_int_tuple(a, "output_padding", 2, 1, NULL, 0, INT_MAX, s->output_padding, e);
    for (int i = 0; !rc && i < 2; i++)
        if (s->output_padding[i] >= s->stride[i])
            rc = kc_node_fail(e, kc_args_node(a, "output_padding"),
                              "%s: output_padding must be strictly less than strides for all "
                              "dimensions; at dimension %d output_padding is %d but strides is %d",
                              a->owner, i, s->output_padding[i], s->stride[i]);
    return rc;
}

static int convt_configure(kc_layer *l, kc_args *a, kc_error *e) {
    convt_state *s = l->state;
    static const int ones[2] = {1, 1};
    long long filters = 1;
    int rc = kc_args_int(a, "filters", 1, 0, 1, INT_MAX, &filters, e);
    s->filters = (int)filters;
    if (!rc) rc = kc_args_int_tuple(a, "kernel_size", 2, 1, NULL, 1, INT_MAX, s->k, e);
    if (!rc) rc = kc_args_int_tuple(a, "strides", 2, 0, ones, 1, INT_MAX, s->stride, e);
    if (!rc) rc = kc_layer_padding(a, &s->same, e);
    if (!rc) rc = convt_output_padding(a, s, e);
    if (!rc) rc = kc_layer_data_format(a, e);
    if (!rc) rc = kc_args_int_tuple(a, "dilation_rate", 2, 0, ones, 1, INT_MAX, s->dilation, e);
    if (!rc) rc = kc_args_activation(a, "activation", "linear", &l->activation, e);
    if (!rc) rc = kc_args_bool(a, "use_bias", 1, &s->use_bias, e);
    if (!rc)
        rc = kc_args_initializer(a, "kernel_initializer", "glorot_uniform", &s->kernel_init, e);
    if (!rc) rc = kc_args_initializer(a, "bias_initializer", "zeros", &s->bias_init, e);
    if (!rc) rc = kc_args_weight_opts(a, "kernel", &s->kernel_opts, e);
    if (!rc) rc = kc_args_weight_opts(a, "bias", &s->bias_opts, e);
    if (!rc) rc = kc_layer_reject_unsupported(a, convt_unsupported, e);
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

/* Keras's _get_output_shape_given_tf_padding. */
static int64_t convt_out(const convt_state *s, int i, int64_t n) {
    int64_t k = (int64_t)(s->k[i] - 1) * s->dilation[i] + 1, st = s->stride[i];
    int64_t op = s->has_output_padding ? s->output_padding[i] : -1;
    if (!s->same) return (n - 1) * st + k + (op >= 0 ? op : (k > st ? k : st) - k);
    return op < 0 ? n * st : (n - 1) * st + k % 2 + op;
}

static int convt_build(kc_layer *l, kc_error *e) {
    convt_state *s = l->state;
    const kc_shape *in = &l->in_shape;
    char ib[160];
    if (in->rank != 3)
        return kc_layer_fail(l, e,
                             "expects an input of shape (height, width, channels), got %s; add a "
                             "Reshape layer or give input_shape with three axes",
                             kc_shape_str(in, 1, ib, sizeof ib));
    if (in->d[0] > INT_MAX / 2 / s->stride[0] || in->d[1] > INT_MAX / 2 / s->stride[1] ||
        in->d[2] > INT_MAX || s->k[0] > INT_MAX / 2 / s->dilation[0] ||
        s->k[1] > INT_MAX / 2 / s->dilation[1])
        return kc_layer_fail(l, e, "input %s is too large", kc_shape_str(in, 1, ib, sizeof ib));
    int64_t oh = convt_out(s, 0, in->d[0]), ow = convt_out(s, 1, in->d[1]);
    l->out_shape = kc_shape3(oh, ow, s->filters);
    kc_conv2d_desc *d = &s->d;
    *d = (kc_conv2d_desc){.n = 1, .h = (int)oh, .w = (int)ow, .c = s->filters};
    d->kh = s->k[0], d->kw = s->k[1], d->oc = (int)in->d[2];
    d->sh = s->stride[0], d->sw = s->stride[1];
    d->dh = s->dilation[0], d->dw = s->dilation[1];
    d->oh = (int)in->d[0], d->ow = (int)in->d[1];
    d->pad_t = kc_window_pad_before(oh, in->d[0], d->kh, d->sh, d->dh, s->same);
    d->pad_l = kc_window_pad_before(ow, in->d[1], d->kw, d->sw, d->dw, s->same);
    kc_param *k = kc_layer_add_param(l, "kernel", kc_shape4(d->kh, d->kw, s->filters, d->oc),
                                     &s->kernel_init, 1);
    int rc = kc_param_set_opts(k, &s->kernel_opts, l->name, e);
    if (!rc && s->use_bias) {
        kc_param *b = kc_layer_add_param(l, "bias", kc_shape1(s->filters), &s->bias_init, 1);
        rc = kc_param_set_opts(b, &s->bias_opts, l->name, e);
    }
    return rc;
}

static kc_conv2d_desc convt_desc(const kc_layer *l, int batch) {
    const convt_state *s = l->state;
    kc_conv2d_desc d = s->d;
    d.n = batch;
    return d;
}

static size_t convt_workspace(const kc_layer *l, int max_batch, const kc_device *dev) {
    kc_conv2d_desc d = convt_desc(l, max_batch);
    return kc_conv2d_workspace(dev, &d);
}

static int convt_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const convt_state *s = l->state;
    kc_conv2d_desc d = convt_desc(l, ex->batch);
    int rc = kc_conv2d_backward_data(ex->dev, &d, x, l->params[0].value, y, ex->ws);
    if (!rc && s->use_bias)
        rc = kc_bias_add(ex->dev, y, l->params[1].value, d.n * d.h * d.w, s->filters);
    return rc;
}

static int convt_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                          kc_buf dx) {
    const convt_state *s = l->state;
    kc_device *dev = ex->dev;
    kc_conv2d_desc d = convt_desc(l, ex->batch);
    float beta = ex->accumulate ? 1.0f : 0.0f;
    kc_param *w = &l->params[0];
    if (s->use_bias && kc_layer_wants_grad(l, &l->params[1]))
        kc_bias_grad(dev, l->params[1].grad, dy, d.n * d.h * d.w, s->filters, beta);
    if (kc_layer_wants_grad(l, w)) kc_conv2d_backward_filter(dev, &d, dy, x, w->grad, beta, ex->ws);
    if (kc_buf_ok(dx)) kc_conv2d_forward(dev, &d, dy, w->value, dx, ex->ws);
    return kc_device_status(dev);
}

static int64_t convt_flops(const kc_layer *l) {
    const convt_state *s = l->state;
    const kc_conv2d_desc *d = &s->d;
    return 2 * (int64_t)d->oh * d->ow * d->oc * d->kh * d->kw * d->c;
}

static const char *const convt_aliases[] = {"Convolution2DTranspose", NULL};

const kc_layer_class kc_conv2d_transpose_class = {
    .class_name = "Conv2DTranspose",
    .base_name = "conv2d_transpose",
    .aliases = convt_aliases,
    .state_size = sizeof(convt_state),
    .configure = convt_configure,
    .build = convt_build,
    .workspace_bytes = convt_workspace,
    .forward = convt_forward,
    .backward = convt_backward,
    .flops = convt_flops,
};

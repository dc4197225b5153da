/* Conv2D over NHWC inputs with an HWIO kernel (Keras's layout), groups
 * included, and the convolution core Conv1D shares (models/layers/conv.h). */
#include <limits.h>
#include <stdio.h>

#include "models/layers/conv.h"

typedef kc_conv_state conv_state;

static const char *const conv_unsupported[] = {
    "lora_rank", "lora_alpha", "dora_rank", "dora_alpha", NULL,
};

static int conv_groups(kc_args *a, int filters, int *out, kc_error *e) {
    long long groups;
    int rc = kc_args_int(a, "groups", 0, 1, 1, INT_MAX, &groups, e);
    if (rc) return rc;
    if (filters % groups != 0)
        return kc_node_fail(e, kc_args_node(a, "groups"),
                            "%s: the number of filters must be evenly divisible by the number "
                            "of groups (got groups=%lld, filters=%d)",
                            a->owner, groups, filters);
    *out = (int)groups;
    return KC_OK;
}

/* padding: "valid", "same" and, for Conv1D, "causal". */
static int conv_padding(kc_args *a, int rank, conv_state *s, kc_error *e) {
    static const char *const with_causal[] = {"valid", "same", "causal", NULL};
    if (rank != 1) return kc_layer_padding(a, &s->same, e);
    kc_node *n = kc_args_node(a, "padding");
    if (n && kc_node_is_null(n))
        return kc_node_fail(e, n,
                            "%s argument 'padding': expected 'valid', 'same' or 'causal', got null",
                            a->owner);
    int which;
    int rc = kc_args_enum(a, "padding", "valid", with_causal, &which, e);
    s->same = which == 1;
    s->causal = which == 2;
    return rc;
}

/* A tuple of `rank` ints into v[2 - rank .. 2) (a Conv1D's values go to the width). */
static int conv_tuple(kc_args *a, const char *key, int rank, int required, int *v, kc_error *e) {
    static const int ones[2] = {1, 1};
    v[0] = v[1] = 1;
    return kc_args_int_tuple(a, key, rank, required, ones, 1, INT_MAX, v + 2 - rank, e);
}

static int conv_strided_dilated(kc_args *a, const conv_state *s, kc_error *e) {
    if (s->rank == 1)
        return kc_node_fail(e, kc_args_node(a, "dilation_rate"),
                            "%s: strides > 1 is not supported together with dilation_rate > 1 "
                            "(got strides %d and dilation_rate %d)",
                            a->owner, s->stride[1], s->dilation[1]);
    return kc_node_fail(e, kc_args_node(a, "dilation_rate"),
                        "%s: strides > 1 is not supported together with dilation_rate > 1 "
                        "(got strides (%d, %d) and dilation_rate (%d, %d))",
                        a->owner, s->stride[0], s->stride[1], s->dilation[0], s->dilation[1]);
}

int kc_conv_configure(kc_layer *l, kc_args *a, int rank, kc_error *e) {
    conv_state *s = l->state;
    s->rank = rank;
    long long filters = 1;
    int rc = kc_args_int(a, "filters", 1, 0, 1, LLONG_MAX, &filters, e);
    if (!rc && filters > INT_MAX)
        rc = kc_node_fail(e, kc_args_node(a, "filters"), "%s argument 'filters' is too large: %lld",
                          a->owner, filters);
    s->filters = (int)filters;
    if (!rc) rc = conv_tuple(a, "kernel_size", rank, 1, s->k, e);
    if (!rc) rc = conv_tuple(a, "strides", rank, 0, s->stride, e);
    if (!rc) rc = conv_padding(a, rank, s, e);
    if (!rc) rc = kc_layer_data_format(a, e);
    if (!rc) rc = conv_tuple(a, "dilation_rate", rank, 0, s->dilation, e);
    if (!rc) rc = conv_groups(a, s->filters, &s->groups, e);
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
    if (strided && dilated) return conv_strided_dilated(a, s, e);
    return KC_OK;
}

static int conv_configure(kc_layer *l, kc_args *a, kc_error *e) {
    return kc_conv_configure(l, a, 2, e);
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
    return kc_conv_declare_params(l, e);
}

int kc_conv_declare_params(kc_layer *l, kc_error *e) {
    conv_state *s = l->state;
    const kc_conv2d_desc *d = &s->d;
    char ib[160];
    if (d->c % s->groups != 0)
        return kc_layer_fail(l, e,
                             "the number of input channels must be evenly divisible by the "
                             "number of groups: groups=%d, but the input %s has %d channels",
                             s->groups, kc_shape_str(&l->in_shape, 1, ib, sizeof ib), d->c);
    int ic = d->c / s->groups;
    kc_shape ks = s->rank == 1 ? kc_shape3(d->kw, ic, d->oc) : kc_shape4(d->kh, d->kw, ic, d->oc);
    kc_param *k = kc_layer_add_param(l, "kernel", ks, &s->kernel_init, 1);
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

/* How a layer runs: one convolution (groups 1), one depthwise convolution
 * (groups == channels: channel c feeds outputs c*m .. c*m + m - 1, and the
 * kernel (kh, kw, 1, c*m) is the depthwise kernel (kh, kw, c, m) bit for
 * bit), or one convolution per group on dense copies of the group's
 * channels, kernel columns and outputs (the conv op stays the only
 * convolution every backend implements). */
typedef enum { CONV_PLAIN, CONV_DEPTHWISE, CONV_GROUPED } conv_kind;

static conv_kind conv_kind_of(const conv_state *s) {
    return s->groups == 1 ? CONV_PLAIN : s->groups == s->d.c ? CONV_DEPTHWISE : CONV_GROUPED;
}

/* The per-group geometry and the floats of its dense copies. */
typedef struct group_plan {
    kc_conv2d_desc d; /* one group's convolution */
    size_t nx, nw, ny;
} group_plan;

static group_plan group_plan_of(const conv_state *s, int batch) {
    group_plan p = {.d = s->d};
    p.d.n = batch;
    p.d.c = s->d.c / s->groups;
    p.d.oc = s->d.oc / s->groups;
    p.nx = (size_t)batch * p.d.h * p.d.w * p.d.c;
    p.nw = (size_t)p.d.kh * p.d.kw * p.d.c * p.d.oc;
    p.ny = (size_t)batch * p.d.oh * p.d.ow * p.d.oc;
    return p;
}

size_t kc_conv_workspace(const kc_layer *l, int max_batch, const kc_device *dev) {
    const conv_state *s = l->state;
    kc_conv2d_desc d = conv_desc(l, max_batch);
    switch (conv_kind_of(s)) {
    case CONV_PLAIN:
        return kc_conv2d_workspace(dev, &d);
    case CONV_DEPTHWISE:
        return 0;
    case CONV_GROUPED:
        break;
    }
    group_plan p = group_plan_of(s, max_batch);
    return (p.nx + 2 * p.nw + p.ny) * sizeof(float) + kc_conv2d_workspace(dev, &p.d);
}

/* Columns [first, first + cols) of a (rows, ld) matrix <-> a dense (rows, cols) one. */
static int columns(kc_device *dev, kc_copy_mode mode, kc_buf wide, size_t ld, size_t first,
                   kc_buf dense, size_t rows, size_t cols, int to_dense) {
    kc_copy_desc g = {.rank = 2, .dims = {(int64_t)rows, (int64_t)cols}};
    int64_t w[2] = {(int64_t)ld, 1}, n[2] = {(int64_t)cols, 1};
    for (int k = 0; k < 2; k++)
        g.ss[k] = to_dense ? w[k] : n[k], g.ds[k] = to_dense ? n[k] : w[k];
    kc_buf at = kc_buf_f(wide, first);
    return to_dense ? kc_copy_strided(dev, mode, &g, at, dense)
                    : kc_copy_strided(dev, mode, &g, dense, at);
}

typedef struct group_bufs {
    kc_buf x, w, dw, y, ws;
} group_bufs;

static group_bufs group_bufs_of(const group_plan *p, kc_buf ws) {
    group_bufs b;
    b.x = ws;
    b.w = kc_buf_f(b.x, p->nx);
    b.dw = kc_buf_f(b.w, p->nw);
    b.y = kc_buf_f(b.dw, p->nw);
    b.ws = kc_buf_f(b.y, p->ny);
    return b;
}

static int grouped_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const conv_state *s = l->state;
    kc_device *dev = ex->dev;
    group_plan p = group_plan_of(s, ex->batch);
    group_bufs b = group_bufs_of(&p, ex->ws);
    size_t pix_in = p.nx / p.d.c, pix_out = p.ny / p.d.oc, taps = p.nw / p.d.oc;
    for (int g = 0; g < s->groups; g++) {
        columns(dev, KC_COPY_SET, x, s->d.c, (size_t)g * p.d.c, b.x, pix_in, p.d.c, 1);
        columns(dev, KC_COPY_SET, l->params[0].value, s->d.oc, (size_t)g * p.d.oc, b.w, taps,
                p.d.oc, 1);
        kc_conv2d_forward(dev, &p.d, b.x, b.w, b.y, b.ws);
        columns(dev, KC_COPY_SET, y, s->d.oc, (size_t)g * p.d.oc, b.y, pix_out, p.d.oc, 0);
    }
    return kc_device_status(dev);
}

static int grouped_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf dy, kc_buf dx) {
    const conv_state *s = l->state;
    kc_device *dev = ex->dev;
    kc_param *w = &l->params[0];
    group_plan p = group_plan_of(s, ex->batch);
    group_bufs b = group_bufs_of(&p, ex->ws);
    size_t pix_in = p.nx / p.d.c, pix_out = p.ny / p.d.oc, taps = p.nw / p.d.oc;
    int want_w = kc_layer_wants_grad(l, w);
    kc_copy_mode into_dw = ex->accumulate ? KC_COPY_ADD : KC_COPY_SET;
    for (int g = 0; g < s->groups; g++) {
        size_t ic = (size_t)g * p.d.c, oc = (size_t)g * p.d.oc;
        columns(dev, KC_COPY_SET, dy, s->d.oc, oc, b.y, pix_out, p.d.oc, 1);
        if (want_w) {
            columns(dev, KC_COPY_SET, x, s->d.c, ic, b.x, pix_in, p.d.c, 1);
            kc_conv2d_backward_filter(dev, &p.d, b.x, b.y, b.dw, 0.0f, b.ws);
            columns(dev, into_dw, w->grad, s->d.oc, oc, b.dw, taps, p.d.oc, 0);
        }
        if (kc_buf_ok(dx)) {
            columns(dev, KC_COPY_SET, w->value, s->d.oc, oc, b.w, taps, p.d.oc, 1);
            kc_conv2d_backward_data(dev, &p.d, b.y, b.w, b.x, b.ws);
            columns(dev, KC_COPY_SET, dx, s->d.c, ic, b.x, pix_in, p.d.c, 0);
        }
    }
    return kc_device_status(dev);
}

int kc_conv_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const conv_state *s = l->state;
    kc_device *dev = ex->dev;
    kc_conv2d_desc d = conv_desc(l, ex->batch);
    int rc;
    switch (conv_kind_of(s)) {
    case CONV_PLAIN:
        rc = kc_conv2d_forward(dev, &d, x, l->params[0].value, y, ex->ws);
        break;
    case CONV_DEPTHWISE:
        rc = kc_depthwise_conv2d_forward(dev, &d, x, l->params[0].value, y);
        break;
    default:
        rc = grouped_forward(l, ex, x, y);
        break;
    }
    if (!rc && s->use_bias) rc = kc_bias_add(dev, y, l->params[1].value, d.n * d.oh * d.ow, d.oc);
    return rc;
}

int kc_conv_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    const conv_state *s = l->state;
    kc_device *dev = ex->dev;
    kc_conv2d_desc d = conv_desc(l, ex->batch);
    float beta = ex->accumulate ? 1.0f : 0.0f;
    kc_param *w = &l->params[0];
    if (s->use_bias && kc_layer_wants_grad(l, &l->params[1]))
        kc_bias_grad(dev, l->params[1].grad, dy, d.n * d.oh * d.ow, d.oc, beta);
    switch (conv_kind_of(s)) {
    case CONV_PLAIN:
        if (kc_layer_wants_grad(l, w))
            kc_conv2d_backward_filter(dev, &d, x, dy, w->grad, beta, ex->ws);
        if (kc_buf_ok(dx)) kc_conv2d_backward_data(dev, &d, dy, w->value, dx, ex->ws);
        break;
    case CONV_DEPTHWISE:
        if (kc_layer_wants_grad(l, w))
            kc_depthwise_conv2d_backward_filter(dev, &d, x, dy, w->grad, beta);
        if (kc_buf_ok(dx)) kc_depthwise_conv2d_backward_data(dev, &d, dy, w->value, dx);
        break;
    case CONV_GROUPED:
        grouped_backward(l, ex, x, dy, dx);
        break;
    }
    return kc_device_status(dev);
}

int64_t kc_conv_flops(const kc_layer *l) {
    const conv_state *s = l->state;
    const kc_conv2d_desc *d = &s->d;
    return 2 * (int64_t)d->oh * d->ow * d->oc * d->kh * d->kw * (d->c / s->groups);
}

static const char *const conv_aliases[] = {"Convolution2D", NULL};

const kc_layer_class kc_conv2d_class = {
    .class_name = "Conv2D",
    .base_name = "conv2d",
    .aliases = conv_aliases,
    .state_size = sizeof(conv_state),
    .configure = conv_configure,
    .build = conv_build,
    .workspace_bytes = kc_conv_workspace,
    .forward = kc_conv_forward,
    .backward = kc_conv_backward,
    .flops = kc_conv_flops,
};

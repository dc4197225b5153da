/* Conv1D over (steps, channels) inputs with a (k, in / groups, filters)
 * kernel (Keras's layout): the Conv2D core (models/layers/conv.h) on a
 * (1, steps, channels) image. Padding "causal" puts dilation * (k - 1)
 * zeros before the sequence, as Keras's Conv1D does, so output t sees
 * inputs up to t * strides only. */
#include <limits.h>
#include <stdio.h>

#include "models/layers/conv.h"

static int conv1d_configure(kc_layer *l, kc_args *a, kc_error *e) {
    return kc_conv_configure(l, a, 1, e);
}

static int conv1d_build(kc_layer *l, kc_error *e) {
    kc_conv_state *s = l->state;
    const kc_shape *in = &l->in_shape;
    char ib[160], ob[160];
    if (in->rank != 2)
        return kc_layer_fail(l, e,
                             "expects an input of shape (steps, channels), got %s; add a Reshape "
                             "layer or give input_shape with two axes",
                             kc_shape_str(in, 1, ib, sizeof ib));
    int k = s->k[1], st = s->stride[1], dil = s->dilation[1];
    int64_t steps = in->d[0];
    /* causal: valid over the input with dilation * (k - 1) zeros before it */
    int64_t out = s->causal ? (steps + st - 1) / st : kc_window_out(steps, k, st, dil, s->same);
    l->out_shape = kc_shape2(out, s->filters);
    if (out <= 0)
        return kc_layer_fail(l, e,
                             "kernel size %d (dilation %d) does not fit input %s: the output "
                             "would be %s",
                             k, dil, kc_shape_str(in, 1, ib, sizeof ib),
                             kc_shape_str(&l->out_shape, 1, ob, sizeof ob));
    if (in->d[0] > INT_MAX || in->d[1] > INT_MAX || (s->causal && (int64_t)dil * (k - 1) > INT_MAX))
        return kc_layer_fail(l, e, "input %s is too large", kc_shape_str(in, 1, ib, sizeof ib));
    kc_conv2d_desc *d = &s->d;
    *d = (kc_conv2d_desc){.n = 1, .h = 1, .w = (int)steps, .c = (int)in->d[1]};
    d->kh = 1;
    d->kw = k;
    d->oc = s->filters;
    d->sh = d->dh = 1;
    d->sw = st;
    d->dw = dil;
    d->oh = 1;
    d->ow = (int)out;
    d->pad_t = 0;
    d->pad_l = s->causal ? dil * (k - 1) : kc_window_pad_before(steps, out, k, st, dil, s->same);
    return kc_conv_declare_params(l, e);
}

static const char *const conv1d_aliases[] = {"Convolution1D", NULL};

const kc_layer_class kc_conv1d_class = {
    .class_name = "Conv1D",
    .base_name = "conv1d",
    .aliases = conv1d_aliases,
    .state_size = sizeof(kc_conv_state),
    .configure = conv1d_configure,
    .build = conv1d_build,
    .workspace_bytes = kc_conv_workspace,
    .forward = kc_conv_forward,
    .backward = kc_conv_backward,
    .flops = kc_conv_flops,
};

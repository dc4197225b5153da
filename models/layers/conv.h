/* The convolution core shared by Conv2D (conv.c) and Conv1D (conv1d.c): one
 * state, one argument reader and one forward/backward over the conv2d ops.
 * Conv1D runs as a (1, steps, channels) image with a (1, k, in, out) kernel,
 * which is its (k, in, out) kernel bit for bit. Private to models/layers/. */
#ifndef KC_LAYERS_CONV_H
#define KC_LAYERS_CONV_H

#include "models/layers/common.h"

typedef struct kc_conv_state {
    int rank; /* 1 (Conv1D) or 2 (Conv2D) */
    int filters;
    int k[2], stride[2], dilation[2]; /* (height, width); Conv1D's values are in [1] */
    int same;
    int causal; /* Conv1D's padding "causal": dilation * (k - 1) zeros before */
    int use_bias;
    int groups;
    kc_initializer kernel_init, bias_init;
    kc_weight_opts kernel_opts, bias_opts;
    kc_conv2d_desc d; /* per-sample geometry; n is set per call */
} kc_conv_state;

/* Reads Keras's BaseConv arguments for a convolution of `rank` spatial axes
 * (padding "causal" is accepted for rank 1 only). */
int kc_conv_configure(kc_layer *l, kc_args *a, int rank, kc_error *e);
/* With s->d set: checks the groups against the input channels and declares
 * the kernel ((k..., in / groups, filters), Keras's layout) and the bias. */
int kc_conv_declare_params(kc_layer *l, kc_error *e);

size_t kc_conv_workspace(const kc_layer *l, int max_batch, const kc_device *d);
int kc_conv_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y);
int kc_conv_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx);
int64_t kc_conv_flops(const kc_layer *l);

#endif

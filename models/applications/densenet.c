/* DenseNet121 (keras/src/applications/densenet.py). */
#include <stdio.h>

#include "models/applications/builder.h"

#define BN(b, x, name) kc_app_bn(b, x, name, .axis = 3, .epsilon = 1.001e-5)

/* conv_block: BN-ReLU-1x1 conv (4 * growth), BN-ReLU-3x3 conv (growth),
 * concatenated to the block's input. */
static int conv_block(kc_app_builder *b, int x, int growth_rate, const char *name) {
    char n[64];
    snprintf(n, sizeof n, "%s_0_bn", name);
    int x1 = BN(b, x, n);
    snprintf(n, sizeof n, "%s_0_relu", name);
    x1 = kc_app_activation(b, x1, n, "relu");
    snprintf(n, sizeof n, "%s_1_conv", name);
    x1 = kc_app_conv2d(b, x1, n, 4 * growth_rate, 1, .no_bias = 1);
    snprintf(n, sizeof n, "%s_1_bn", name);
    x1 = BN(b, x1, n);
    snprintf(n, sizeof n, "%s_1_relu", name);
    x1 = kc_app_activation(b, x1, n, "relu");
    snprintf(n, sizeof n, "%s_2_conv", name);
    x1 = kc_app_conv2d(b, x1, n, growth_rate, 3, .padding = "same", .no_bias = 1);
    snprintf(n, sizeof n, "%s_concat", name);
    return kc_app_concat(b, n, 3, x, x1);
}

static int dense_block(kc_app_builder *b, int x, int blocks, const char *name) {
    char n[64];
    for (int i = 0; i < blocks; i++) {
        snprintf(n, sizeof n, "%s_block%d", name, i + 1);
        x = conv_block(b, x, 32, n);
    }
    return x;
}

/* transition_block with reduction 0.5: int(channels * 0.5) filters. */
static int transition_block(kc_app_builder *b, int x, const char *name) {
    char n[64];
    snprintf(n, sizeof n, "%s_bn", name);
    x = BN(b, x, n);
    snprintf(n, sizeof n, "%s_relu", name);
    x = kc_app_activation(b, x, n, "relu");
    const kc_app_shape *s = kc_app_shape_of(b, x);
    if (!s) return -1;
    long long filters = (long long)((double)s->d[2] * 0.5);
    snprintf(n, sizeof n, "%s_conv", name);
    x = kc_app_conv2d(b, x, n, filters, 1, .no_bias = 1);
    snprintf(n, sizeof n, "%s_pool", name);
    return kc_app_avg_pool(b, x, n, 2, 2);
}

int kc_app_build_densenet121(kc_app_builder *b, const kc_app_opts *o) {
    int x = kc_app_input(b);
    x = kc_app_zero_pad(b, x, NULL, 3, 3, 3, 3);
    x = kc_app_conv2d(b, x, "conv1_conv", 64, 7, .strides = 2, .no_bias = 1);
    x = BN(b, x, "conv1_bn");
    x = kc_app_activation(b, x, "conv1_relu", "relu");
    x = kc_app_zero_pad(b, x, NULL, 1, 1, 1, 1);
    x = kc_app_max_pool(b, x, "pool1", 3, 2, NULL);
    x = dense_block(b, x, 6, "conv2");
    x = transition_block(b, x, "pool2");
    x = dense_block(b, x, 12, "conv3");
    x = transition_block(b, x, "pool3");
    x = dense_block(b, x, 24, "conv4");
    x = transition_block(b, x, "pool4");
    x = dense_block(b, x, 16, "conv5");
    x = BN(b, x, "bn");
    x = kc_app_activation(b, x, "relu", "relu");
    if (!o->include_top) return kc_app_pooling(b, x, o, "avg_pool", "max_pool");
    x = kc_app_global_avg_pool(b, x, "avg_pool");
    return kc_app_predictions(b, x, o, NULL);
}

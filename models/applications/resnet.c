/* ResNet50 and ResNet50V2 (keras/src/applications/resnet.py, resnet_v2.py). */
#include <stdio.h>

#include "models/applications/builder.h"

#define BN(b, x, name) kc_app_bn(b, x, name, .axis = 3, .epsilon = 1.001e-5)

/* residual_block_v1 */
static int block_v1(kc_app_builder *b, int x, int filters, int stride, int conv_shortcut,
                    const char *name) {
    char n[64];
    int shortcut = x;
    if (conv_shortcut) {
        snprintf(n, sizeof n, "%s_0_conv", name);
        shortcut = kc_app_conv2d(b, x, n, 4 * filters, 1, .strides = stride);
        snprintf(n, sizeof n, "%s_0_bn", name);
        shortcut = BN(b, shortcut, n);
    }
    snprintf(n, sizeof n, "%s_1_conv", name);
    x = kc_app_conv2d(b, x, n, filters, 1, .strides = stride);
    snprintf(n, sizeof n, "%s_1_bn", name);
    x = BN(b, x, n);
    snprintf(n, sizeof n, "%s_1_relu", name);
    x = kc_app_activation(b, x, n, "relu");
    snprintf(n, sizeof n, "%s_2_conv", name);
    x = kc_app_conv2d(b, x, n, filters, 3, .padding = "same");
    snprintf(n, sizeof n, "%s_2_bn", name);
    x = BN(b, x, n);
    snprintf(n, sizeof n, "%s_2_relu", name);
    x = kc_app_activation(b, x, n, "relu");
    snprintf(n, sizeof n, "%s_3_conv", name);
    x = kc_app_conv2d(b, x, n, 4 * filters, 1);
    snprintf(n, sizeof n, "%s_3_bn", name);
    x = BN(b, x, n);
    snprintf(n, sizeof n, "%s_add", name);
    x = kc_app_add(b, n, shortcut, x);
    snprintf(n, sizeof n, "%s_out", name);
    return kc_app_activation(b, x, n, "relu");
}

/* stack_residual_blocks_v1 */
static int stack_v1(kc_app_builder *b, int x, int filters, int blocks, int stride1,
                    const char *name) {
    char n[64];
    snprintf(n, sizeof n, "%s_block1", name);
    x = block_v1(b, x, filters, stride1, 1, n);
    for (int i = 2; i <= blocks; i++) {
        snprintf(n, sizeof n, "%s_block%d", name, i);
        x = block_v1(b, x, filters, 1, 0, n);
    }
    return x;
}

/* residual_block_v2: pre-activation; the shortcut of a strided block
 * without a projection is an automatically named MaxPooling2D(1). */
static int block_v2(kc_app_builder *b, int x, int filters, int stride, int conv_shortcut,
                    const char *name) {
    char n[64];
    snprintf(n, sizeof n, "%s_preact_bn", name);
    int preact = BN(b, x, n);
    snprintf(n, sizeof n, "%s_preact_relu", name);
    preact = kc_app_activation(b, preact, n, "relu");
    int shortcut = x;
    snprintf(n, sizeof n, "%s_0_conv", name);
    if (conv_shortcut)
        shortcut = kc_app_conv2d(b, preact, n, 4 * filters, 1, .strides = stride);
    else if (stride > 1)
        shortcut = kc_app_max_pool(b, x, NULL, 1, stride, NULL);
    snprintf(n, sizeof n, "%s_1_conv", name);
    x = kc_app_conv2d(b, preact, n, filters, 1, .no_bias = 1);
    snprintf(n, sizeof n, "%s_1_bn", name);
    x = BN(b, x, n);
    snprintf(n, sizeof n, "%s_1_relu", name);
    x = kc_app_activation(b, x, n, "relu");
    snprintf(n, sizeof n, "%s_2_pad", name);
    x = kc_app_zero_pad(b, x, n, 1, 1, 1, 1);
    snprintf(n, sizeof n, "%s_2_conv", name);
    x = kc_app_conv2d(b, x, n, filters, 3, .strides = stride, .no_bias = 1);
    snprintf(n, sizeof n, "%s_2_bn", name);
    x = BN(b, x, n);
    snprintf(n, sizeof n, "%s_2_relu", name);
    x = kc_app_activation(b, x, n, "relu");
    snprintf(n, sizeof n, "%s_3_conv", name);
    x = kc_app_conv2d(b, x, n, 4 * filters, 1);
    snprintf(n, sizeof n, "%s_out", name);
    return kc_app_add(b, n, shortcut, x);
}

/* stack_residual_blocks_v2: the stride is on the last block. */
static int stack_v2(kc_app_builder *b, int x, int filters, int blocks, int stride1,
                    const char *name) {
    char n[64];
    snprintf(n, sizeof n, "%s_block1", name);
    x = block_v2(b, x, filters, 1, 1, n);
    for (int i = 2; i < blocks; i++) {
        snprintf(n, sizeof n, "%s_block%d", name, i);
        x = block_v2(b, x, filters, 1, 0, n);
    }
    snprintf(n, sizeof n, "%s_block%d", name, blocks);
    return block_v2(b, x, filters, stride1, 0, n);
}

/* ResNet(): the stem, the stacks, the top. */
static int resnet(kc_app_builder *b, const kc_app_opts *o, int preact) {
    int x = kc_app_input(b);
    x = kc_app_zero_pad(b, x, "conv1_pad", 3, 3, 3, 3);
    x = kc_app_conv2d(b, x, "conv1_conv", 64, 7, .strides = 2);
    if (!preact) {
        x = BN(b, x, "conv1_bn");
        x = kc_app_activation(b, x, "conv1_relu", "relu");
    }
    x = kc_app_zero_pad(b, x, "pool1_pad", 1, 1, 1, 1);
    x = kc_app_max_pool(b, x, "pool1_pool", 3, 2, NULL);
    if (preact) {
        x = stack_v2(b, x, 64, 3, 2, "conv2");
        x = stack_v2(b, x, 128, 4, 2, "conv3");
        x = stack_v2(b, x, 256, 6, 2, "conv4");
        x = stack_v2(b, x, 512, 3, 1, "conv5");
        x = BN(b, x, "post_bn");
        x = kc_app_activation(b, x, "post_relu", "relu");
    } else {
        x = stack_v1(b, x, 64, 3, 1, "conv2");
        x = stack_v1(b, x, 128, 4, 2, "conv3");
        x = stack_v1(b, x, 256, 6, 2, "conv4");
        x = stack_v1(b, x, 512, 3, 2, "conv5");
    }
    if (!o->include_top) return kc_app_pooling(b, x, o, "avg_pool", "max_pool");
    x = kc_app_global_avg_pool(b, x, "avg_pool");
    return kc_app_predictions(b, x, o, NULL);
}

int kc_app_build_resnet50(kc_app_builder *b, const kc_app_opts *o) {
    return resnet(b, o, 0);
}

int kc_app_build_resnet50v2(kc_app_builder *b, const kc_app_opts *o) {
    return resnet(b, o, 1);
}

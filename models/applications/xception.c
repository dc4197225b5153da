/* Xception (keras/src/applications/xception.py). Its shortcut convolutions,
 * their BatchNormalization and the Add layers have Keras's automatic
 * names (conv2d, batch_normalization, add, ...). */
#include <stdio.h>

#include "models/applications/builder.h"

#define BN(b, x, name) kc_app_bn(b, x, name, .axis = -1)

static int sepconv_bn(kc_app_builder *b, int x, const char *prefix, int i, long long filters) {
    char n[64];
    snprintf(n, sizeof n, "%s_sepconv%d", prefix, i);
    x = kc_app_separable(b, x, n, filters, 3, .padding = "same", .no_bias = 1);
    snprintf(n, sizeof n, "%s_sepconv%d_bn", prefix, i);
    return BN(b, x, n);
}

static int act(kc_app_builder *b, int x, const char *prefix, int i) {
    char n[64];
    snprintf(n, sizeof n, "%s_sepconv%d_act", prefix, i);
    return kc_app_activation(b, x, n, "relu");
}

/* Blocks 2, 3, 4 and 13: two separable convolutions and a strided pool,
 * plus a strided 1x1 projection shortcut. Block 2 starts without the ReLU. */
static int entry_block(kc_app_builder *b, int x, int block, long long f1, long long f2) {
    char prefix[16], n[64];
    snprintf(prefix, sizeof prefix, "block%d", block);
    int residual = kc_app_conv2d(b, x, NULL, f2, 1, .strides = 2, .padding = "same", .no_bias = 1);
    residual = BN(b, residual, NULL);
    if (block != 2) x = act(b, x, prefix, 1);
    x = sepconv_bn(b, x, prefix, 1, f1);
    x = act(b, x, prefix, 2);
    x = sepconv_bn(b, x, prefix, 2, f2);
    snprintf(n, sizeof n, "%s_pool", prefix);
    x = kc_app_max_pool(b, x, n, 3, 2, "same");
    return kc_app_add(b, NULL, x, residual);
}

/* Blocks 5 to 12: three separable convolutions around an identity shortcut. */
static int middle_block(kc_app_builder *b, int x, int block) {
    char prefix[16];
    snprintf(prefix, sizeof prefix, "block%d", block);
    int residual = x;
    for (int i = 1; i <= 3; i++) {
        x = act(b, x, prefix, i);
        x = sepconv_bn(b, x, prefix, i, 728);
    }
    return kc_app_add(b, NULL, x, residual);
}

int kc_app_build_xception(kc_app_builder *b, const kc_app_opts *o) {
    int x = kc_app_input(b);
    x = kc_app_conv2d(b, x, "block1_conv1", 32, 3, .strides = 2, .no_bias = 1);
    x = BN(b, x, "block1_conv1_bn");
    x = kc_app_activation(b, x, "block1_conv1_act", "relu");
    x = kc_app_conv2d(b, x, "block1_conv2", 64, 3, .no_bias = 1);
    x = BN(b, x, "block1_conv2_bn");
    x = kc_app_activation(b, x, "block1_conv2_act", "relu");
    x = entry_block(b, x, 2, 128, 128);
    x = entry_block(b, x, 3, 256, 256);
    x = entry_block(b, x, 4, 728, 728);
    for (int i = 0; i < 8; i++)
        x = middle_block(b, x, i + 5);
    x = entry_block(b, x, 13, 728, 1024);
    x = sepconv_bn(b, x, "block14", 1, 1536);
    x = act(b, x, "block14", 1);
    x = sepconv_bn(b, x, "block14", 2, 2048);
    x = act(b, x, "block14", 2);
    if (!o->include_top) return kc_app_pooling(b, x, o, NULL, NULL);
    x = kc_app_global_avg_pool(b, x, "avg_pool");
    return kc_app_predictions(b, x, o, NULL);
}

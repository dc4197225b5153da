/* MobileNetV2 (keras/src/applications/mobilenet_v2.py). */
#include <stdio.h>

#include "models/applications/builder.h"

#define BN(b, x, name) kc_app_bn(b, x, name, .axis = -1, .epsilon = 1e-3, .momentum = 0.999)

/* _make_divisible(v, 8): the nearest multiple of 8, at least 8 and not
 * more than 10% below v. */
static long long make_divisible(double v) {
    long long d = 8, nv = (long long)(v + d / 2.0) / d * d;
    if (nv < d) nv = d;
    if ((double)nv < 0.9 * v) nv += d;
    return nv;
}

/* _inverted_res_block */
static int inverted_res_block(kc_app_builder *b, int inputs, int expansion, int stride,
                              double alpha, int filters, int block_id) {
    const kc_app_shape *s = kc_app_shape_of(b, inputs);
    if (!s) return -1;
    long long in_channels = s->d[2];
    long long pointwise_filters = make_divisible((double)(long long)(filters * alpha));
    char prefix[32], n[64];
    int x = inputs;
    snprintf(prefix, sizeof prefix, "block_%d_", block_id);
    if (block_id) {
        snprintf(n, sizeof n, "%sexpand", prefix);
        x = kc_app_conv2d(b, x, n, expansion * in_channels, 1, .padding = "same", .no_bias = 1);
        snprintf(n, sizeof n, "%sexpand_BN", prefix);
        x = BN(b, x, n);
        snprintf(n, sizeof n, "%sexpand_relu", prefix);
        x = kc_app_relu(b, x, n, 6.0);
    } else {
        snprintf(prefix, sizeof prefix, "expanded_conv_");
    }
    if (stride == 2) {
        int pad[4];
        kc_app_correct_pad(b, x, 3, pad);
        snprintf(n, sizeof n, "%spad", prefix);
        x = kc_app_zero_pad(b, x, n, pad[0], pad[1], pad[2], pad[3]);
    }
    snprintf(n, sizeof n, "%sdepthwise", prefix);
    x = kc_app_depthwise(b, x, n, 3, .strides = stride, .no_bias = 1,
                         .padding = stride == 1 ? "same" : "valid");
    snprintf(n, sizeof n, "%sdepthwise_BN", prefix);
    x = BN(b, x, n);
    snprintf(n, sizeof n, "%sdepthwise_relu", prefix);
    x = kc_app_relu(b, x, n, 6.0);
    snprintf(n, sizeof n, "%sproject", prefix);
    x = kc_app_conv2d(b, x, n, pointwise_filters, 1, .padding = "same", .no_bias = 1);
    snprintf(n, sizeof n, "%sproject_BN", prefix);
    x = BN(b, x, n);
    if (in_channels != pointwise_filters || stride != 1) return x;
    snprintf(n, sizeof n, "%sadd", prefix);
    return kc_app_add(b, n, inputs, x);
}

/* filters, stride, expansion of blocks 0..16 */
static const int blocks[17][3] = {
    {16, 1, 1}, {24, 2, 6},  {24, 1, 6},  {32, 2, 6},  {32, 1, 6},  {32, 1, 6},
    {64, 2, 6}, {64, 1, 6},  {64, 1, 6},  {64, 1, 6},  {96, 1, 6},  {96, 1, 6},
    {96, 1, 6}, {160, 2, 6}, {160, 1, 6}, {160, 1, 6}, {320, 1, 6},
};

int kc_app_build_mobilenetv2(kc_app_builder *b, const kc_app_opts *o) {
    double alpha = o->has_alpha ? o->alpha : 1.0;
    int x = kc_app_input(b);
    const kc_app_shape *s = kc_app_shape_of(b, x);
    if (!s) return -1;
    char name[80];
    snprintf(name, sizeof name, "mobilenetv2_%.2f_%lld", alpha, s->d[0]);
    kc_app_set_name(b, name);
    x = kc_app_conv2d(b, x, "Conv1", make_divisible(32 * alpha), 3, .strides = 2, .padding = "same",
                      .no_bias = 1);
    x = BN(b, x, "bn_Conv1");
    x = kc_app_relu(b, x, "Conv1_relu", 6.0);
    for (int i = 0; i < 17; i++)
        x = inverted_res_block(b, x, blocks[i][2], blocks[i][1], alpha, blocks[i][0], i);
    long long last = alpha > 1.0 ? make_divisible(1280 * alpha) : 1280;
    x = kc_app_conv2d(b, x, "Conv_1", last, 1, .no_bias = 1);
    x = BN(b, x, "Conv_1_bn");
    x = kc_app_relu(b, x, "out_relu", 6.0);
    if (!o->include_top) return kc_app_pooling(b, x, o, NULL, NULL);
    x = kc_app_global_avg_pool(b, x, NULL);
    return kc_app_predictions(b, x, o, NULL);
}

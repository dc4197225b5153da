/* EfficientNetB0 (keras/src/applications/efficientnet.py).
 *
 * Keras initializes its convolutions with VarianceScaling(2.0, "fan_out",
 * "truncated_normal") and the classifier with VarianceScaling(1/3,
 * "fan_out", "uniform"); for a known kernel shape these are the
 * TruncatedNormal and RandomUniform written here, whose scale is computed
 * as Keras computes it from the kernel's fan-out. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "models/applications/builder.h"

#define BN(b, x, name) kc_app_bn(b, x, name, .axis = 3)
#define ACTIVATION "swish"

typedef struct block_args {
    int kernel, repeats, filters_in, filters_out, expand_ratio, strides;
} block_args;

/* DEFAULT_BLOCKS_ARGS; every block has id_skip and se_ratio 0.25. */
static const block_args blocks_args[7] = {
    {3, 1, 32, 16, 1, 1},  {3, 2, 16, 24, 6, 2},   {5, 2, 24, 40, 6, 2},   {3, 3, 40, 80, 6, 2},
    {5, 3, 80, 112, 6, 1}, {5, 4, 112, 192, 6, 2}, {3, 1, 192, 320, 6, 1},
};

/* The shortest decimal that reads back as v. */
static void shortest(double v, char *out, size_t n) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, n, "%.*g", prec, v);
        if (strtod(out, NULL) == v) return;
    }
}

/* CONV_KERNEL_INITIALIZER for a (k, k, ., out) kernel: fan_out = k * k * out. */
static const char *conv_init(char *buf, size_t n, int k, long long out) {
    double fan_out = (double)k * k * (double)out;
    char num[40];
    shortest(sqrt(2.0 / (fan_out > 1.0 ? fan_out : 1.0)) / 0.87962566103423978, num, sizeof num);
    snprintf(buf, n, "{TruncatedNormal: {stddev: %s}}", num);
    return buf;
}

/* DENSE_KERNEL_INITIALIZER for `units` outputs. */
static const char *dense_init(char *buf, size_t n, long long units) {
    double fan_out = units > 1 ? (double)units : 1.0;
    char num[40];
    shortest(sqrt(3.0 * ((1.0 / 3.0) / fan_out)), num, sizeof num);
    snprintf(buf, n, "{RandomUniform: {minval: -%s, maxval: %s}}", num, num);
    return buf;
}

/* Squeeze and excitation: channel weights from the pooled activations. */
static int squeeze_excite(kc_app_builder *b, int x, const char *name, long long filters_in,
                          long long filters) {
    char n[64], init[96];
    long long filters_se = (long long)((double)filters_in * 0.25);
    if (filters_se < 1) filters_se = 1;
    snprintf(n, sizeof n, "%sse_squeeze", name);
    int se = kc_app_global_avg_pool(b, x, n);
    snprintf(n, sizeof n, "%sse_reshape", name);
    se = kc_app_reshape(b, se, n, 1, 1, filters);
    snprintf(n, sizeof n, "%sse_reduce", name);
    se = kc_app_conv2d(b, se, n, filters_se, 1, .padding = "same", .activation = ACTIVATION,
                       .initializer = conv_init(init, sizeof init, 1, filters_se));
    snprintf(n, sizeof n, "%sse_expand", name);
    se = kc_app_conv2d(b, se, n, filters, 1, .padding = "same", .activation = "sigmoid",
                       .initializer = conv_init(init, sizeof init, 1, filters));
    snprintf(n, sizeof n, "%sse_excite", name);
    return kc_app_multiply(b, n, x, se);
}

/* block(): expansion, depthwise convolution, squeeze and excitation,
 * projection, and the identity shortcut with its drop-connect Dropout. */
static int mb_block(kc_app_builder *b, int inputs, double drop_rate, const char *name,
                    const block_args *a, long long filters_in, int strides) {
    char n[64], init[96];
    long long filters = filters_in * a->expand_ratio;
    int x = inputs;
    if (a->expand_ratio != 1) {
        snprintf(n, sizeof n, "%sexpand_conv", name);
        x = kc_app_conv2d(b, x, n, filters, 1, .padding = "same", .no_bias = 1,
                          .initializer = conv_init(init, sizeof init, 1, filters));
        snprintf(n, sizeof n, "%sexpand_bn", name);
        x = BN(b, x, n);
        snprintf(n, sizeof n, "%sexpand_activation", name);
        x = kc_app_activation(b, x, n, ACTIVATION);
    }
    if (strides == 2) {
        int pad[4];
        kc_app_correct_pad(b, x, a->kernel, pad);
        snprintf(n, sizeof n, "%sdwconv_pad", name);
        x = kc_app_zero_pad(b, x, n, pad[0], pad[1], pad[2], pad[3]);
    }
    snprintf(n, sizeof n, "%sdwconv", name);
    x = kc_app_depthwise(b, x, n, a->kernel, .strides = strides,
                         .padding = strides == 2 ? "valid" : "same", .no_bias = 1,
                         .initializer = conv_init(init, sizeof init, a->kernel, 1));
    snprintf(n, sizeof n, "%sbn", name);
    x = BN(b, x, n);
    snprintf(n, sizeof n, "%sactivation", name);
    x = kc_app_activation(b, x, n, ACTIVATION);
    x = squeeze_excite(b, x, name, filters_in, filters);
    snprintf(n, sizeof n, "%sproject_conv", name);
    x = kc_app_conv2d(b, x, n, a->filters_out, 1, .padding = "same", .no_bias = 1,
                      .initializer = conv_init(init, sizeof init, 1, a->filters_out));
    snprintf(n, sizeof n, "%sproject_bn", name);
    x = BN(b, x, n);
    if (strides != 1 || filters_in != a->filters_out) return x;
    if (drop_rate > 0) {
        snprintf(n, sizeof n, "%sdrop", name);
        x = kc_app_dropout(b, x, n, drop_rate);
    }
    snprintf(n, sizeof n, "%sadd", name);
    return kc_app_add(b, n, x, inputs);
}

/* The stem, the 16 blocks with drop-connect rates rising to 0.2, the top. */
int kc_app_build_efficientnetb0(kc_app_builder *b, const kc_app_opts *o) {
    char init[96], name[32];
    int x = kc_app_input(b);
    x = kc_app_rescaling(b, x, NULL, 1.0 / 255.0);
    x = kc_app_normalization(b, x, NULL, 3);
    int pad[4];
    kc_app_correct_pad(b, x, 3, pad);
    x = kc_app_zero_pad(b, x, "stem_conv_pad", pad[0], pad[1], pad[2], pad[3]);
    x = kc_app_conv2d(b, x, "stem_conv", 32, 3, .strides = 2, .no_bias = 1,
                      .initializer = conv_init(init, sizeof init, 3, 32));
    x = BN(b, x, "stem_bn");
    x = kc_app_activation(b, x, "stem_activation", ACTIVATION);
    double blocks = 0;
    for (int i = 0; i < 7; i++)
        blocks += blocks_args[i].repeats;
    int done = 0;
    for (int i = 0; i < 7; i++) {
        const block_args *a = &blocks_args[i];
        for (int j = 0; j < a->repeats; j++, done++) {
            snprintf(name, sizeof name, "block%d%c_", i + 1, 'a' + j);
            x = mb_block(b, x, 0.2 * done / blocks, name, a, j ? a->filters_out : a->filters_in,
                         j ? 1 : a->strides);
        }
    }
    x = kc_app_conv2d(b, x, "top_conv", 1280, 1, .padding = "same", .no_bias = 1,
                      .initializer = conv_init(init, sizeof init, 1, 1280));
    x = BN(b, x, "top_bn");
    x = kc_app_activation(b, x, "top_activation", ACTIVATION);
    if (!o->include_top) return kc_app_pooling(b, x, o, "avg_pool", "max_pool");
    x = kc_app_global_avg_pool(b, x, "avg_pool");
    x = kc_app_dropout(b, x, "top_dropout", 0.2);
    return kc_app_predictions(b, x, o, dense_init(init, sizeof init, o->classes));
}

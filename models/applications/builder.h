/* The graph the architectures build, one call per Keras layer, so that each
 * builder reads like Keras's Python:
 *
 *     x = kc_app_conv2d(b, x, "conv1_conv", 64, 7, .strides = 2);
 *     x = kc_app_bn(b, x, "conv1_bn", .axis = 3, .epsilon = 1.001e-5);
 *
 * Every call returns the new layer's id (>= 0). A failure (a shape that does
 * not fit, memory) is kept in the builder and returned as -1 by that call
 * and every later one, so builders check only their final result. A NULL
 * name takes Keras's automatic one (conv2d, conv2d_1, ...). The shapes are
 * tracked as Keras's layers compute them, for the builders that read them
 * (kc_app_shape_of). The file is written in Keras's layer order (that of
 * Functional.layers), whatever the order of the calls. */
#ifndef KC_APPLICATIONS_BUILDER_H
#define KC_APPLICATIONS_BUILDER_H

#include "core/error.h"
#include "core/json.h"
#include "models/applications/applications.h"

/* A per-sample shape: (rows, cols, channels), or (units) after pooling. */
typedef struct kc_app_shape {
    int rank;
    long long d[3];
} kc_app_shape;

/* Keyword arguments of the convolutions; zero means Keras's default. */
typedef struct kc_app_conv_args {
    int given;               /* set by the macros */
    int strides;             /* 1 */
    const char *padding;     /* "valid" */
    int no_bias;             /* use_bias=False */
    const char *activation;  /* None */
    const char *initializer; /* kernel (depthwise) initializer, as YAML; glorot_uniform */
} kc_app_conv_args;

/* Keyword arguments of BatchNormalization; zero: not given. */
typedef struct kc_app_bn_args {
    int given;
    int axis;
    double epsilon, momentum;
} kc_app_bn_args;

kc_app_builder *kc_app_builder_new(const long long input_shape[3]);
void kc_app_builder_free(kc_app_builder *b);
/* The model's name (default: the architecture's). */
void kc_app_set_name(kc_app_builder *b, const char *name);
/* Records a failure of the builder's own (the first one counts); returns -1. */
int kc_app_fail(kc_app_builder *b, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The shape of layer x (NULL for a failed one). */
const kc_app_shape *kc_app_shape_of(const kc_app_builder *b, int x);

int kc_app_input(kc_app_builder *b);
int kc_app_conv2d_(kc_app_builder *b, int x, const char *name, long long filters, int kernel,
                   kc_app_conv_args a);
int kc_app_depthwise_(kc_app_builder *b, int x, const char *name, int kernel, kc_app_conv_args a);
int kc_app_separable_(kc_app_builder *b, int x, const char *name, long long filters, int kernel,
                      kc_app_conv_args a);
int kc_app_bn_(kc_app_builder *b, int x, const char *name, kc_app_bn_args a);
#define kc_app_conv2d(b, x, name, filters, kernel, ...)                                            \
    kc_app_conv2d_(b, x, name, filters, kernel, (kc_app_conv_args){.given = 1, __VA_ARGS__})
#define kc_app_depthwise(b, x, name, kernel, ...)                                                  \
    kc_app_depthwise_(b, x, name, kernel, (kc_app_conv_args){.given = 1, __VA_ARGS__})
#define kc_app_separable(b, x, name, filters, kernel, ...)                                         \
    kc_app_separable_(b, x, name, filters, kernel, (kc_app_conv_args){.given = 1, __VA_ARGS__})
#define kc_app_bn(b, x, name, ...) kc_app_bn_(b, x, name, (kc_app_bn_args){.given = 1, __VA_ARGS__})

int kc_app_activation(kc_app_builder *b, int x, const char *name, const char *activation);
/* ReLU(max_value) */
int kc_app_relu(kc_app_builder *b, int x, const char *name, double max_value);
/* ZeroPadding2D(((top, bottom), (left, right))) */
int kc_app_zero_pad(kc_app_builder *b, int x, const char *name, int top, int bottom, int left,
                    int right);
/* MaxPooling2D / AveragePooling2D(pool_size, strides (0: None), padding (NULL: valid)) */
int kc_app_max_pool(kc_app_builder *b, int x, const char *name, int pool, int strides,
                    const char *padding);
int kc_app_avg_pool(kc_app_builder *b, int x, const char *name, int pool, int strides);
int kc_app_global_avg_pool(kc_app_builder *b, int x, const char *name);
int kc_app_global_max_pool(kc_app_builder *b, int x, const char *name);
int kc_app_flatten(kc_app_builder *b, int x, const char *name);
/* Dense(units, activation (NULL or "": None), kernel_initializer (NULL: default)) */
int kc_app_dense(kc_app_builder *b, int x, const char *name, long long units,
                 const char *activation, const char *initializer);
int kc_app_reshape(kc_app_builder *b, int x, const char *name, long long rows, long long cols,
                   long long channels);
int kc_app_dropout(kc_app_builder *b, int x, const char *name, double rate);
int kc_app_rescaling(kc_app_builder *b, int x, const char *name, double scale);
int kc_app_normalization(kc_app_builder *b, int x, const char *name, int axis);
/* The merges, on two inputs in this order. */
int kc_app_add(kc_app_builder *b, const char *name, int x, int y);
int kc_app_multiply(kc_app_builder *b, const char *name, int x, int y);
int kc_app_concat(kc_app_builder *b, const char *name, int axis, int x, int y);

/* Keras's common tail without the classifier: pooling "avg" or "max" (the
 * layer named avg_name / max_name, NULL: automatic), or nothing. */
int kc_app_pooling(kc_app_builder *b, int x, const kc_app_opts *o, const char *avg_name,
                   const char *max_name);
/* The classifier: Dense(classes, activation=classifier_activation, name="predictions"). */
int kc_app_predictions(kc_app_builder *b, int x, const kc_app_opts *o, const char *initializer);
/* imagenet_utils.correct_pad(x, kernel): the ZeroPadding2D before a strided
 * "valid" convolution, ((top, bottom), (left, right)). */
void kc_app_correct_pad(const kc_app_builder *b, int x, int kernel, int pad[4]);

/* Writes the `model:` section for output layer `out`, in Keras's layer
 * order. Returns the first failure of the build or KC_OK. */
int kc_app_builder_write(kc_app_builder *b, int out, kc_strbuf *s, kc_error *e);

#endif

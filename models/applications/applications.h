/* Keras Applications as kerasc model files: the architectures of
 * keras.applications (VGG16, ResNet50, ResNet50V2, MobileNetV2, Xception,
 * EfficientNetB0, DenseNet121) built with Keras's layer names, order and
 * arguments for the options of Keras's constructors, weights=None. The
 * options change the structure - include_top drops the classifier, pooling
 * adds a layer, input_shape changes every shape - so each file is made for
 * one set of options, as Keras's function call makes one model. */
#ifndef KC_APPLICATIONS_H
#define KC_APPLICATIONS_H

#include <stddef.h>

#include "core/error.h"

typedef enum kc_app_pool {
    KC_APP_POOL_NONE, /* the last convolution block's 4D output */
    KC_APP_POOL_AVG,  /* GlobalAveragePooling2D */
    KC_APP_POOL_MAX,  /* GlobalMaxPooling2D */
} kc_app_pool;

/* Keras's constructor arguments (kc_app_opts_init sets Keras's defaults). */
typedef struct kc_app_opts {
    int include_top;                /* 1: the classifier on top */
    int has_input_shape;            /* 0: input_shape=None */
    long long input_shape[3];       /* rows, cols, channels (channels_last) */
    long long classes;              /* the classifier's units */
    kc_app_pool pooling;            /* without the classifier only */
    char classifier_activation[32]; /* "softmax"; "" is None (logits) */
    int has_alpha;                  /* alpha given (MobileNetV2 only) */
    double alpha;                   /* MobileNetV2's width multiplier */
} kc_app_opts;

/* Graph under construction (builder.c); the architectures add layers to it. */
typedef struct kc_app_builder kc_app_builder;

typedef struct kc_app_arch {
    const char *name;       /* "resnet50": the command-line name */
    const char *keras_name; /* "ResNet50": keras.applications.ResNet50 */
    int default_size;       /* input rows and cols when input_shape is None */
    int min_size;           /* Keras's smallest rows and cols */
    int has_alpha;          /* takes alpha */
    /* Keras's preprocess_input mode ("caffe", "tf", "torch"), or NULL when
     * the model scales its 0..255 input itself */
    const char *preprocess;
    /* where the file's training differs from Keras's (header comment), or NULL */
    const char *note;
    /* Adds the layers, Input first; returns the output layer, or < 0 with
     * the builder's error set. */
    int (*build)(kc_app_builder *b, const kc_app_opts *o);
} kc_app_arch;

/* The architectures, in the order `kerasc applications` lists them. */
size_t kc_app_count(void);
const kc_app_arch *kc_app_get(size_t i);
/* By name or Keras name, case-insensitively ("resnet50", "ResNet50"); NULL
 * when unknown. */
const kc_app_arch *kc_app_find(const char *name);

void kc_app_opts_init(kc_app_opts *o);

/* Keras's obtain_input_shape for weights=None: the given shape checked
 * (three sizes, rows and cols at least the minimum), or the default
 * (default_size, default_size, 3) with the classifier. Without the
 * classifier Keras leaves rows and cols open, which kerasc cannot: that is
 * an error asking for the shape. KC_ECONFIG errors name the value. */
int kc_app_input_shape(const kc_app_arch *a, const kc_app_opts *o, long long shape[3], kc_error *e);

/* Checks the options (KC_ECONFIG errors naming the value) and writes the
 * complete model file: a header naming the Keras call and the command, the
 * `model:` section, and commented compile/data/fit lines. malloc'd. */
int kc_app_model_file(const kc_app_arch *a, const kc_app_opts *o, char **text, kc_error *e);

/* The command that writes this file: "kerasc applications NAME [options]",
 * the options that differ from Keras's defaults. */
void kc_app_command(const kc_app_arch *a, const kc_app_opts *o, char *out, size_t n);

#endif

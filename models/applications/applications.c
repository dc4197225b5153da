/* The registry of Keras Applications, Keras's checks of their arguments,
 * and the model file around the built `model:` section. */
#include "models/applications/applications.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/json.h"
#include "models/activations.h"
#include "models/applications/builder.h"

int kc_app_build_vgg16(kc_app_builder *b, const kc_app_opts *o);
int kc_app_build_resnet50(kc_app_builder *b, const kc_app_opts *o);
int kc_app_build_resnet50v2(kc_app_builder *b, const kc_app_opts *o);
int kc_app_build_mobilenetv2(kc_app_builder *b, const kc_app_opts *o);
int kc_app_build_xception(kc_app_builder *b, const kc_app_opts *o);
int kc_app_build_efficientnetb0(kc_app_builder *b, const kc_app_opts *o);
int kc_app_build_densenet121(kc_app_builder *b, const kc_app_opts *o);

static const char efficientnet_note[] =
    "# Training differs from Keras's in one place: kerasc's Dropout has no noise_shape,\n"
    "# so the blockNx_drop layers drop single values where Keras drops whole samples\n"
    "# (noise_shape=(None, 1, 1, 1)). Keras's VarianceScaling initializers are written\n"
    "# as the TruncatedNormal and RandomUniform they amount to for each kernel.\n";

static const kc_app_arch archs[] = {
    {"vgg16", "VGG16", 224, 32, 0, "caffe", NULL, kc_app_build_vgg16},
    {"resnet50", "ResNet50", 224, 32, 0, "caffe", NULL, kc_app_build_resnet50},
    {"resnet50v2", "ResNet50V2", 224, 32, 0, "tf", NULL, kc_app_build_resnet50v2},
    {"mobilenetv2", "MobileNetV2", 224, 32, 1, "tf", NULL, kc_app_build_mobilenetv2},
    {"xception", "Xception", 299, 71, 0, "tf", NULL, kc_app_build_xception},
    {"efficientnetb0", "EfficientNetB0", 224, 32, 0, NULL, efficientnet_note,
     kc_app_build_efficientnetb0},
    {"densenet121", "DenseNet121", 224, 32, 0, "torch", NULL, kc_app_build_densenet121},
};
#define NARCHS (sizeof archs / sizeof archs[0])

/* Sizes beyond these are refused before any arithmetic on them. */
#define MAX_SIZE 16384
#define MAX_CHANNELS 65536

size_t kc_app_count(void) {
    return NARCHS;
}

const kc_app_arch *kc_app_get(size_t i) {
    return i < NARCHS ? &archs[i] : NULL;
}

const kc_app_arch *kc_app_find(const char *name) {
    for (size_t i = 0; name && i < NARCHS; i++)
        if (!strcasecmp(name, archs[i].name) || !strcasecmp(name, archs[i].keras_name))
            return &archs[i];
    return NULL;
}

void kc_app_opts_init(kc_app_opts *o) {
    memset(o, 0, sizeof *o);
    o->include_top = 1;
    o->classes = 1000;
    o->pooling = KC_APP_POOL_NONE;
    snprintf(o->classifier_activation, sizeof o->classifier_activation, "softmax");
    o->alpha = 1.0;
}

int kc_app_input_shape(const kc_app_arch *a, const kc_app_opts *o, long long shape[3],
                       kc_error *e) {
    if (!o->has_input_shape) {
        if (!o->include_top)
            return kc_fail(e, KC_ECONFIG,
                           "without the classifier Keras leaves %s's image size open "
                           "(None, None, 3), which kerasc cannot build: give --input-shape "
                           "ROWS,COLS,CHANNELS (the default size is %d,%d,3)",
                           a->keras_name, a->default_size, a->default_size);
        shape[0] = shape[1] = a->default_size;
        shape[2] = 3;
        return KC_OK;
    }
    const long long *s = o->input_shape;
    if (s[0] < a->min_size || s[1] < a->min_size)
        return kc_fail(e, KC_ECONFIG,
                       "input shape (%lld, %lld, %lld): %s's input size must be at least %dx%d",
                       s[0], s[1], s[2], a->keras_name, a->min_size, a->min_size);
    if (s[0] > MAX_SIZE || s[1] > MAX_SIZE || s[2] < 1 || s[2] > MAX_CHANNELS)
        return kc_fail(e, KC_ECONFIG,
                       "input shape (%lld, %lld, %lld): kerasc builds images of at most "
                       "%dx%d with 1 to %d channels",
                       s[0], s[1], s[2], MAX_SIZE, MAX_SIZE, MAX_CHANNELS);
    memcpy(shape, s, 3 * sizeof *shape);
    return KC_OK;
}

/* "" (None) or an activation kerasc has. */
static int check_activation(const char *name, kc_error *e) {
    if (!*name) return KC_OK;
    for (size_t i = 0; kc_activation_names[i]; i++)
        if (!strcmp(name, kc_activation_names[i])) return KC_OK;
    char valid[512] = "";
    for (size_t i = 0; kc_activation_names[i]; i++)
        snprintf(valid + strlen(valid), sizeof valid - strlen(valid), "%s, ",
                 kc_activation_names[i]);
    return kc_fail(e, KC_ECONFIG, "unknown classifier activation '%s' (valid: %snone)", name,
                   valid);
}

/* Keras's own checks of the other arguments, for weights=None. */
static int check_opts(const kc_app_arch *a, const kc_app_opts *o, kc_error *e) {
    if (check_activation(o->classifier_activation, e)) return e->code;
    if (o->has_alpha && !a->has_alpha)
        return kc_fail(e, KC_ECONFIG, "%s takes no alpha (only MobileNetV2 does)", a->keras_name);
    if (o->has_alpha && !(o->alpha > 0 && o->alpha <= 16))
        return kc_fail(e, KC_ECONFIG, "alpha %g: expected a width multiplier above 0, at most 16",
                       o->alpha);
    if (o->classes < 1 || o->classes > (1LL << 24))
        return kc_fail(e, KC_ECONFIG, "classes %lld: expected 1 to %lld", o->classes, 1LL << 24);
    return KC_OK;
}

/* ------------------------------------------------------------ the text */

void kc_app_command(const kc_app_arch *a, const kc_app_opts *o, char *out, size_t n) {
    int k = snprintf(out, n, "kerasc applications %s", a->name);
    const char *pool = o->pooling == KC_APP_POOL_AVG ? "avg" : "max";
#define PUT(...) (k < (int)n ? (k += snprintf(out + k, n - (size_t)k, __VA_ARGS__)) : 0)
    if (!o->include_top) PUT(" --no-top");
    if (o->has_input_shape)
        PUT(" --input-shape %lld,%lld,%lld", o->input_shape[0], o->input_shape[1],
            o->input_shape[2]);
    if (a->has_alpha && o->has_alpha && o->alpha != 1.0) PUT(" --alpha %g", o->alpha);
    if (!o->include_top && o->pooling != KC_APP_POOL_NONE) PUT(" --pooling %s", pool);
    if (o->include_top && o->classes != 1000) PUT(" --classes %lld", o->classes);
    if (o->include_top && strcmp(o->classifier_activation, "softmax"))
        PUT(" --classifier-activation %s",
            *o->classifier_activation ? o->classifier_activation : "none");
#undef PUT
}

/* A float as Python prints it: 1.0, 0.35. */
static void put_py_float(kc_strbuf *s, double v) {
    size_t at = s->len;
    kc_json_write_double(s, v);
    if (!s->failed && !strpbrk(s->s + at, ".eEnN")) kc_strbuf_puts(s, ".0");
}

/* keras.applications.X(...) with the arguments as given. */
static void put_call(kc_strbuf *s, const kc_app_arch *a, const kc_app_opts *o) {
    kc_strbuf_printf(s, "# keras.applications.%s(", a->keras_name);
    if (a->has_alpha) {
        kc_strbuf_puts(s, "alpha=");
        put_py_float(s, o->has_alpha ? o->alpha : 1.0);
        kc_strbuf_puts(s, ", ");
    }
    kc_strbuf_printf(
        s, "include_top=%s, weights=None,\n#     input_shape=", o->include_top ? "True" : "False");
    if (o->has_input_shape)
        kc_strbuf_printf(s, "(%lld, %lld, %lld)", o->input_shape[0], o->input_shape[1],
                         o->input_shape[2]);
    else
        kc_strbuf_puts(s, "None");
    const char *pool[] = {"None", "\"avg\"", "\"max\""};
    kc_strbuf_printf(s, ", pooling=%s, classes=%lld, classifier_activation=", pool[o->pooling],
                     o->classes);
    if (*o->classifier_activation)
        kc_strbuf_printf(s, "\"%s\")\n", o->classifier_activation);
    else
        kc_strbuf_puts(s, "None)\n");
}

static void put_header(kc_strbuf *s, const kc_app_arch *a, const kc_app_opts *o) {
    char cmd[256];
    kc_app_command(a, o, cmd, sizeof cmd);
    put_call(s, a, o);
    kc_strbuf_printf(s,
                     "# as a kerasc model file: Keras's layers, names and shapes, random "
                     "initial weights.\n# Written by `%s`.\n",
                     cmd);
    if (a->note) kc_strbuf_puts(s, a->note);
    kc_strbuf_puts(s, "# Fill in the compile, data and fit sections below to train it.\n\n");
}

/* The data lines: an image folder of the input's size, scaled as Keras's
 * preprocess_input would. */
static void put_data(kc_strbuf *s, const kc_app_arch *a, const long long shape[3]) {
    const char *color = shape[2] == 1   ? ", color_mode: grayscale"
                        : shape[2] == 4 ? ", color_mode: rgba"
                                        : "";
    kc_strbuf_puts(s, "# data:\n");
    if (shape[2] == 1 || shape[2] == 3 || shape[2] == 4) {
        for (int v = 0; v < 2; v++)
            kc_strbuf_printf(s,
                             "#   %s: {images: photos/train, image_size: [%lld, %lld]%s, "
                             "validation_split: 0.2, subset: %s, seed: 1337}\n",
                             v ? "validation" : "train", shape[0], shape[1], color,
                             v ? "validation" : "training");
    } else {
        kc_strbuf_puts(s, "#   train: {x: x.npy, y: y.npy}\n");
    }
    if (!a->preprocess)
        kc_strbuf_puts(s, "#   # no rescale: the model scales its 0..255 input itself\n");
    else if (!strcmp(a->preprocess, "tf"))
        kc_strbuf_puts(s, "#   rescale: 1/127.5               # with the offset: Keras's "
                          "preprocess_input, pixels to [-1, 1]\n#   offset: -1\n");
    else if (!strcmp(a->preprocess, "caffe"))
        kc_strbuf_puts(s, "#   rescale: 1/255                 # Keras's preprocess_input "
                          "(\"caffe\" mode) instead makes BGR and subtracts ImageNet's means\n");
    else
        kc_strbuf_puts(s, "#   rescale: 1/255                 # Keras's preprocess_input "
                          "(\"torch\" mode) then normalizes by ImageNet's mean and std\n");
}

static void put_skeleton(kc_strbuf *s, const kc_app_arch *a, const kc_app_opts *o,
                         const long long shape[3]) {
    kc_strbuf_puts(s, "\n# compile:\n#   optimizer: adam\n");
    if (!o->include_top)
        kc_strbuf_puts(s, "#   # the model ends with its features: add a classifier to train it\n");
    if (o->include_top &&
        (!*o->classifier_activation || !strcmp(o->classifier_activation, "linear")))
        kc_strbuf_puts(s, "#   loss: {SparseCategoricalCrossentropy: {from_logits: true}}\n");
    else
        kc_strbuf_puts(s, "#   loss: sparse_categorical_crossentropy\n");
    kc_strbuf_puts(s, "#   metrics: [accuracy]\n#\n");
    put_data(s, a, shape);
    kc_strbuf_puts(s, "#\n# fit:\n#   epochs: 5\n#   batch_size: 32\n");
}

int kc_app_model_file(const kc_app_arch *a, const kc_app_opts *o, char **text, kc_error *e) {
    *text = NULL;
    long long shape[3];
    int rc = check_opts(a, o, e);
    if (!rc) rc = kc_app_input_shape(a, o, shape, e);
    if (rc) return rc;
    kc_app_builder *b = kc_app_builder_new(shape);
    if (!b) return kc_fail(e, KC_ERUNTIME, "out of memory");
    kc_app_set_name(b, a->name);
    int out = a->build(b, o);
    kc_strbuf s = {0};
    put_header(&s, a, o);
    rc = kc_app_builder_write(b, out, &s, e);
    kc_app_builder_free(b);
    if (!rc) put_skeleton(&s, a, o, shape);
    if (!rc && s.failed) rc = kc_fail(e, KC_ERUNTIME, "out of memory");
    if (!rc) *text = kc_strbuf_take(&s);
    if (!rc && !*text) rc = kc_fail(e, KC_ERUNTIME, "out of memory");
    kc_strbuf_free(&s);
    return rc;
}

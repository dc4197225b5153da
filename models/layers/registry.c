/* Every layer class kerasc knows, in the order "did you mean" lists them. */
#include "models/layer.h"

extern const kc_layer_class kc_dense_class;
extern const kc_layer_class kc_conv2d_class;
extern const kc_layer_class kc_max_pooling2d_class;
extern const kc_layer_class kc_average_pooling2d_class;
extern const kc_layer_class kc_flatten_class;
extern const kc_layer_class kc_reshape_class;
extern const kc_layer_class kc_dropout_class;
extern const kc_layer_class kc_activation_class;
extern const kc_layer_class kc_add_class;
extern const kc_layer_class kc_subtract_class;
extern const kc_layer_class kc_multiply_class;
extern const kc_layer_class kc_average_class;
extern const kc_layer_class kc_maximum_class;
extern const kc_layer_class kc_minimum_class;
extern const kc_layer_class kc_concatenate_class;
extern const kc_layer_class kc_dot_class;

const kc_layer_class *const kc_layer_classes[] = {
    &kc_dense_class,
    &kc_conv2d_class,
    &kc_max_pooling2d_class,
    &kc_average_pooling2d_class,
    &kc_flatten_class,
    &kc_reshape_class,
    &kc_dropout_class,
    &kc_activation_class,
    &kc_add_class,
    &kc_subtract_class,
    &kc_multiply_class,
    &kc_average_class,
    &kc_maximum_class,
    &kc_minimum_class,
    &kc_concatenate_class,
    &kc_dot_class,
    NULL,
};

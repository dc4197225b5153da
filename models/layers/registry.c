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
/* activation and regularisation layers */
extern const kc_layer_class kc_relu_class;
extern const kc_layer_class kc_leaky_relu_class;
extern const kc_layer_class kc_prelu_class;
extern const kc_layer_class kc_elu_class;
extern const kc_layer_class kc_softmax_class;
extern const kc_layer_class kc_gaussian_noise_class;
extern const kc_layer_class kc_gaussian_dropout_class;
extern const kc_layer_class kc_alpha_dropout_class;
extern const kc_layer_class kc_spatial_dropout1d_class;
extern const kc_layer_class kc_spatial_dropout2d_class;
extern const kc_layer_class kc_activity_regularization_class;

/* shape, resize, global pooling and preprocessing layers */
extern const kc_layer_class kc_global_average_pooling2d_class;
extern const kc_layer_class kc_global_max_pooling2d_class;
extern const kc_layer_class kc_zero_padding2d_class;
extern const kc_layer_class kc_cropping2d_class;
extern const kc_layer_class kc_up_sampling2d_class;
extern const kc_layer_class kc_resizing_class;
extern const kc_layer_class kc_center_crop_class;
extern const kc_layer_class kc_rescaling_class;
extern const kc_layer_class kc_identity_class;

/* the convolution family */
extern const kc_layer_class kc_depthwise_conv2d_class;
extern const kc_layer_class kc_separable_conv2d_class;
extern const kc_layer_class kc_conv2d_transpose_class;

/* normalization layers */
extern const kc_layer_class kc_batch_normalization_class;
extern const kc_layer_class kc_layer_normalization_class;
extern const kc_layer_class kc_group_normalization_class;
extern const kc_layer_class kc_unit_normalization_class;

/* the 1-D family, RepeatVector and Permute */
extern const kc_layer_class kc_conv1d_class;
extern const kc_layer_class kc_max_pooling1d_class;
extern const kc_layer_class kc_average_pooling1d_class;
extern const kc_layer_class kc_global_average_pooling1d_class;
extern const kc_layer_class kc_global_max_pooling1d_class;
extern const kc_layer_class kc_up_sampling1d_class;
extern const kc_layer_class kc_zero_padding1d_class;
extern const kc_layer_class kc_cropping1d_class;
extern const kc_layer_class kc_repeat_vector_class;
extern const kc_layer_class kc_permute_class;

/* embedding and masking */
extern const kc_layer_class kc_embedding_class;
extern const kc_layer_class kc_masking_class;

/* recurrent layers */
extern const kc_layer_class kc_simple_rnn_class;
extern const kc_layer_class kc_lstm_class;
extern const kc_layer_class kc_gru_class;

/* wrappers */
extern const kc_layer_class kc_time_distributed_class;
extern const kc_layer_class kc_bidirectional_class;
/* image augmentation */
extern const kc_layer_class kc_random_flip_class;
extern const kc_layer_class kc_random_crop_class;
extern const kc_layer_class kc_random_translation_class;
extern const kc_layer_class kc_random_rotation_class;
extern const kc_layer_class kc_random_zoom_class;
extern const kc_layer_class kc_random_brightness_class;
extern const kc_layer_class kc_random_contrast_class;
/* preprocessing statistics */
extern const kc_layer_class kc_normalization_class;

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
    /* activation and regularisation layers */
    &kc_relu_class,
    &kc_leaky_relu_class,
    &kc_prelu_class,
    &kc_elu_class,
    &kc_softmax_class,
    &kc_gaussian_noise_class,
    &kc_gaussian_dropout_class,
    &kc_alpha_dropout_class,
    &kc_spatial_dropout1d_class,
    &kc_spatial_dropout2d_class,
    &kc_activity_regularization_class,
    /* shape, resize, global pooling and preprocessing layers */
    &kc_global_average_pooling2d_class,
    &kc_global_max_pooling2d_class,
    &kc_zero_padding2d_class,
    &kc_cropping2d_class,
    &kc_up_sampling2d_class,
    &kc_resizing_class,
    &kc_center_crop_class,
    &kc_rescaling_class,
    &kc_identity_class,
    /* the convolution family */
    &kc_depthwise_conv2d_class,
    &kc_separable_conv2d_class,
    &kc_conv2d_transpose_class,
    /* normalization layers */
    &kc_batch_normalization_class,
    &kc_layer_normalization_class,
    &kc_group_normalization_class,
    &kc_unit_normalization_class,
    /* the 1-D family, RepeatVector and Permute */
    &kc_conv1d_class,
    &kc_max_pooling1d_class,
    &kc_average_pooling1d_class,
    &kc_global_average_pooling1d_class,
    &kc_global_max_pooling1d_class,
    &kc_up_sampling1d_class,
    &kc_zero_padding1d_class,
    &kc_cropping1d_class,
    &kc_repeat_vector_class,
    &kc_permute_class,
    /* embedding and masking */
    &kc_embedding_class,
    &kc_masking_class,
    /* recurrent layers */
    &kc_simple_rnn_class,
    &kc_lstm_class,
    &kc_gru_class,
    /* wrappers */
    &kc_time_distributed_class,
    &kc_bidirectional_class,
    /* image augmentation */
    &kc_random_flip_class,
    &kc_random_crop_class,
    &kc_random_translation_class,
    &kc_random_rotation_class,
    &kc_random_zoom_class,
    &kc_random_brightness_class,
    &kc_random_contrast_class,
    /* preprocessing statistics */
    &kc_normalization_class,
    NULL,
};

/* Helpers shared by the layer classes in models/layers/ (private to them and
 * models/layer.c): argument checks every family repeats and the Keras
 * output-size rules for sliding windows. */
#ifndef KC_LAYERS_COMMON_H
#define KC_LAYERS_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "models/layer.h"

/* Fails, at the value, for any of `keys` (NULL-terminated) given non-null:
 * Keras accepts them but kerasc does not implement them yet, and silently
 * ignoring a regularizer or constraint would train a different model. */
int kc_layer_reject_unsupported(kc_args *a, const char *const *keys, kc_error *e);

/* data_format: null or "channels_last" (any case, like Keras); channels_first
 * is a valid Keras value that kerasc does not support yet. */
int kc_layer_data_format(kc_args *a, kc_error *e);

/* padding: "valid" (0) or "same" (1). */
int kc_layer_padding(kc_args *a, int *same, kc_error *e);

/* Output length of a window of size k, stride s, dilation d over n cells
 * (Keras's compute_conv_output_shape / compute_pooling_output_shape); may be
 * <= 0 for "valid" when the window does not fit. */
int64_t kc_window_out(int64_t n, int k, int s, int d, int same);
/* Zeros before the input for "same": TF's split, the extra cell goes after. */
int kc_window_pad_before(int64_t n, int64_t out, int k, int s, int d, int same);

/* A shape error at the layer's declaration: "layer 'conv2d' (Conv2D): ..." */
int kc_layer_fail(const kc_layer *l, kc_error *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Should backward write this parameter's gradient? */
static inline int kc_layer_wants_grad(const kc_layer *l, const kc_param *p) {
    return kc_buf_ok(p->grad) && l->trainable && p->trainable;
}

/* y = x on the device, skipped when the buffers are the same. */
static inline int kc_layer_copy(kc_device *d, kc_buf y, kc_buf x, size_t n) {
    return kc_copy(d, y, x, n * sizeof(float));
}

#endif

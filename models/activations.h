/* Keras activation names -> core activation kinds. */
#ifndef KC_ACTIVATIONS_H
#define KC_ACTIVATIONS_H

#include "core/backend.h"
#include "core/ops.h"
#include "models/args.h"

typedef struct kc_activation {
    kc_act act;
    float alpha; /* elu alpha (1.0), leaky_relu negative slope (0.2); unused otherwise */
} kc_activation;

/* "relu", "swish"/"silu", ... ; NULL-terminated list of accepted names */
extern const char *const kc_activation_names[];
/* Looks a name up; unknown names fail at node with the closest valid name. */
int kc_activation_parse(const kc_node *node, kc_activation *out, kc_error *e);
/* Reads argument `key` (default def, e.g. "linear") through args. */
int kc_args_activation(kc_args *a, const char *key, const char *def, kc_activation *out,
                       kc_error *e);
const char *kc_activation_name(kc_act act);

/* y = act(x) for a rows x cols buffer (softmax over cols). */
int kc_activation_forward(kc_device *d, const kc_activation *a, kc_buf x, kc_buf y, int rows,
                          int cols);
/* dx from dy, given x (pre-activation) and y (post-activation). */
int kc_activation_backward(kc_device *d, const kc_activation *a, kc_buf x, kc_buf y, kc_buf dy,
                           kc_buf dx, int rows, int cols);

#endif

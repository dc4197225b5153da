/* A model: the layer stack parsed from the `model:` section, its shapes and
 * parameters, and - once planned on a backend - every buffer a training step
 * needs, allocated once. */
#ifndef KC_MODEL_H
#define KC_MODEL_H

#include <stdint.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/tensor.h"
#include "models/layer.h"
#include "models/yaml.h"

typedef struct kc_model {
    char name[128];
    const kc_node *node;   /* the model: section */
    kc_shape input_shape;  /* per sample */
    const kc_node *input_node;
    kc_layer **layers;
    int nlayers;

    /* ---- after kc_model_plan ---- */
    const kc_backend *be;
    int max_batch;
    int training;          /* planned with gradient buffers */
    float *x;              /* input batch (device) */
    float **z, **y;        /* per layer: pre-activation and output (same buffer when linear) */
    float *grad_a, *grad_b, *grad_z; /* gradient ping-pong buffers */
    float *values, *grads; /* all parameters, contiguous (kc_model_params order) */
    int64_t nvalues;
    void *ws;
    size_t ws_bytes;
    void *arena;           /* activations and gradients */
} kc_model;

/* Parses `model:` (a Sequential stack). Automatic names follow Keras
 * (conv2d, conv2d_1, ...); shapes are propagated and every layer built, so
 * shape errors come out here with file:line:column. */
int kc_model_parse(kc_node *model_node, const char *default_name, kc_model **out, kc_error *e);
void kc_model_free(kc_model *m);

int64_t kc_model_param_count(const kc_model *m, int trainable_only);
const kc_shape *kc_model_output_shape(const kc_model *m);
int64_t kc_model_flops(const kc_model *m); /* forward FLOPs per sample */

/* Allocates every buffer for batches up to max_batch; `training` adds the
 * gradient buffers. Parameters are allocated here too (uninitialised until
 * kc_model_init_weights or a checkpoint load). */
int kc_model_plan(kc_model *m, const kc_backend *be, int max_batch, int training, kc_error *e);
/* Draws every parameter from its initializer with the run's seed. */
void kc_model_init_weights(kc_model *m, uint64_t seed);

/* Parameter iteration in a fixed order (layer order, then each layer's
 * params): names are "layer/param" (Keras's weight paths). */
typedef struct kc_param_ref {
    char name[200];
    kc_layer *layer;
    kc_param *param;
} kc_param_ref;
int kc_model_params(const kc_model *m, kc_param_ref *out, int max); /* returns count */

/* Forward pass of ex->batch samples already in m->x; returns the output
 * buffer (device). The last layer's pre-activation output stays in
 * m->z[nlayers - 1]. */
const float *kc_model_forward(kc_model *m, const kc_exec *ex);
/* Where the caller puts the gradient of the loss (batch x outputs) before
 * kc_model_backward. */
static inline float *kc_model_dy(kc_model *m) { return m->grad_b; }
/* Backward from the gradient in kc_model_dy() w.r.t. the output - or, when
 * dy_is_preactivation, w.r.t. the last layer's pre-activation output. Writes
 * every parameter gradient. */
void kc_model_backward(kc_model *m, const kc_exec *ex, int dy_is_preactivation);

#endif

/* Keras 3 optimizers (SGD, RMSprop, Adam) with Keras's names, defaults and
 * update rules (KERAS.md section 3). The updates run on the backend's
 * sgd_update / rmsprop_update / adam_update ops; slots live in device memory,
 * zero-initialised, and are named and ordered as Keras 3 creates its
 * optimizer variables so checkpoints can carry them. */
#ifndef KC_OPTIMIZERS_H
#define KC_OPTIMIZERS_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/error.h"
#include "models/yaml.h"

typedef enum kc_optimizer_kind {
    KC_OPTIMIZER_SGD,
    KC_OPTIMIZER_RMSPROP,
    KC_OPTIMIZER_ADAM,
} kc_optimizer_kind;

/* Hyperparameters, with Keras's defaults from kc_optimizer_config_default. */
typedef struct kc_optimizer_config {
    kc_optimizer_kind kind;
    char name[64];        /* Keras's `name` argument: "SGD", "rmsprop", "adam" */
    double learning_rate; /* SGD 0.01, others 0.001 */
    double momentum;      /* SGD and RMSprop, 0 */
    int nesterov;         /* SGD */
    double rho;           /* RMSprop 0.9 */
    int centered;         /* RMSprop */
    double epsilon;       /* RMSprop and Adam, 1e-7 */
    double beta_1;        /* Adam 0.9 */
    double beta_2;        /* Adam 0.999 */
    int amsgrad;          /* Adam */
} kc_optimizer_config;

typedef struct kc_optimizer kc_optimizer;

void kc_optimizer_config_default(kc_optimizer_kind kind, kc_optimizer_config *cfg);
/* Checks the ranges (learning_rate > 0, 0 <= momentum <= 1, 0 <= rho <= 1,
 * 0 <= beta < 1, epsilon >= 0) and creates an unbuilt optimizer. */
int kc_optimizer_create(const kc_optimizer_config *cfg, kc_optimizer **out, kc_error *e);

/* A name ("adam", "Adam", "sgd", "SGD", "rmsprop", "RMSprop"), a mapping
 * {class_name: Adam, learning_rate: 0.0005}, {Adam: {learning_rate: ...}} or
 * Keras's {class_name: Adam, config: {...}}. node NULL gives Keras's compile()
 * default, "rmsprop". weight_decay, clipnorm, clipvalue, global_clipnorm,
 * use_ema, loss_scale_factor and gradient_accumulation_steps are accepted only
 * when null/false (kerasc does not implement them), and fail with
 * file:line:column otherwise. */
int kc_optimizer_parse(kc_node *node, kc_optimizer **out, kc_error *e);

/* Allocates zeroed slots for n parameters with the given element counts and
 * names ("conv2d/kernel"), in the order kc_optimizer_step receives them. The
 * names are copied. Building again replaces the slots. */
int kc_optimizer_build(kc_optimizer *o, const kc_backend *be, int n, const size_t *sizes,
                       const char *const *names, kc_error *e);
/* One update of every built parameter (device pointers), then iterations++. */
void kc_optimizer_step(kc_optimizer *o, float *const *weights, const float *const *grads);

int64_t kc_optimizer_iterations(const kc_optimizer *o);
void kc_optimizer_set_iterations(kc_optimizer *o, int64_t it);
double kc_optimizer_learning_rate(const kc_optimizer *o);
/* For callbacks (ReduceLROnPlateau, LearningRateScheduler) and checkpoints. */
void kc_optimizer_set_learning_rate(kc_optimizer *o, double lr);
const kc_optimizer_config *kc_optimizer_get_config(const kc_optimizer *o);
const char *kc_optimizer_name(const kc_optimizer *o); /* class name: "Adam" */

/* Slots in Keras 3's variable order: Adam m0 v0 m1 v1 ... then the amsgrad
 * v_hat of each parameter; RMSprop every velocity, then every momentum, then
 * every average_gradient; SGD every momentum. Named
 * "optimizer/<param>/<slot>" with Keras's slot names (momentum, velocity,
 * velocity_hat, average_gradient). */
int kc_optimizer_slot_count(const kc_optimizer *o);
void kc_optimizer_slot(const kc_optimizer *o, int i, const char **name, float **dev, size_t *n);

/* Optimizer variables as Keras counts them for summary's "Optimizer params":
 * iteration, learning_rate and every slot element. */
int64_t kc_optimizer_variable_count(const kc_optimizer *o);
/* Their size in bytes as Keras on TensorFlow reports it: an int64 iteration,
 * a float32 learning rate and float32 slots. */
int64_t kc_optimizer_variable_bytes(const kc_optimizer *o);

void kc_optimizer_free(kc_optimizer *o);

extern const char *const kc_optimizer_names[];

#endif

/* Keras 3 optimizers (SGD, RMSprop, Adam, AdamW, Adagrad, Adadelta, Adamax,
 * Nadam, Lion) with Keras's names, defaults and update rules (KERAS.md
 * section 3), gradient clipping (clipnorm, clipvalue, global_clipnorm),
 * decoupled weight decay and learning-rate schedules (models/schedules.h).
 *
 * One kc_optimizer_step is Keras's apply(): clip the gradients, decay the
 * weights, run every update, then iterations++ (constraints are the caller's,
 * after the step). The updates run on the backend's *_update ops; slots live
 * in device memory and are named and ordered as Keras 3 creates its optimizer
 * variables so checkpoints can carry them. A step allocates nothing. */
#ifndef KC_OPTIMIZERS_H
#define KC_OPTIMIZERS_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/error.h"
#include "models/schedules.h"
#include "models/yaml.h"

typedef enum kc_optimizer_kind {
    KC_OPTIMIZER_SGD,
    KC_OPTIMIZER_RMSPROP,
    KC_OPTIMIZER_ADAM,
    KC_OPTIMIZER_ADAMW,
    KC_OPTIMIZER_ADAGRAD,
    KC_OPTIMIZER_ADADELTA,
    KC_OPTIMIZER_ADAMAX,
    KC_OPTIMIZER_NADAM,
    KC_OPTIMIZER_LION,
} kc_optimizer_kind;

/* Hyperparameters, with Keras's defaults from kc_optimizer_config_default. */
typedef struct kc_optimizer_config {
    kc_optimizer_kind kind;
    char name[64];                    /* Keras's `name` argument: "SGD", "rmsprop", "adam", ... */
    double learning_rate;             /* SGD 0.01, others 0.001; unused when schedule is set */
    kc_schedule schedule;             /* kind KC_SCHEDULE_NONE: the constant learning_rate */
    double momentum;                  /* SGD and RMSprop, 0 */
    int nesterov;                     /* SGD */
    double rho;                       /* RMSprop 0.9, Adadelta 0.95 */
    int centered;                     /* RMSprop */
    double epsilon;                   /* 1e-7 (all but SGD and Lion) */
    double beta_1;                    /* Adam, AdamW, Adamax, Nadam, Lion: 0.9 */
    double beta_2;                    /* 0.999; Lion 0.99 */
    int amsgrad;                      /* Adam, AdamW */
    double initial_accumulator_value; /* Adagrad 0.1 */
    /* Keras's base-optimizer arguments; 0 means None. At most one clip is set. */
    double weight_decay;    /* AdamW 0.004, others None */
    double clipnorm;        /* per-gradient norm limit */
    double clipvalue;       /* per-element limit */
    double global_clipnorm; /* joint norm limit over all gradients */
} kc_optimizer_config;

typedef struct kc_optimizer kc_optimizer;

void kc_optimizer_config_default(kc_optimizer_kind kind, kc_optimizer_config *cfg);
/* Checks the ranges (learning_rate > 0, 0 <= momentum <= 1, 0 <= rho <= 1,
 * 0 <= beta < 1, epsilon >= 0, Lion 0 < beta_1 <= 1, clips and weight decay
 * >= 0 with one clip at most, the schedule) and creates an unbuilt optimizer. */
int kc_optimizer_create(const kc_optimizer_config *cfg, kc_optimizer **out, kc_error *e);

/* A name ("adam", "Adam", "adamw", "lion", ... matched case-insensitively as
 * Keras does), a mapping {class_name: Adam, learning_rate: 0.0005},
 * {Adam: {learning_rate: ...}} or Keras's {class_name: Adam, config: {...}}.
 * learning_rate may be a schedule ({ExponentialDecay: {...}} or its
 * serialized form). node NULL gives Keras's compile() default, "rmsprop".
 * use_ema, loss_scale_factor and gradient_accumulation_steps are accepted
 * only when null/false (kerasc does not implement them), and fail with
 * file:line:column otherwise. */
int kc_optimizer_parse(kc_node *node, kc_optimizer **out, kc_error *e);

/* Allocates the slots for n parameters with the given element counts and
 * names ("conv2d/kernel"), in the order kc_optimizer_step receives them (zero,
 * or Adagrad's initial_accumulator_value), and the scratch gradients that
 * clipping writes. The names are copied. Building again replaces the slots. */
int kc_optimizer_build(kc_optimizer *o, kc_device *d, int n, const size_t *sizes,
                       const char *const *names, kc_error *e);
/* One apply of every built parameter (device buffers): clip, weight decay,
 * update, iterations++. The gradients are read, never written. Returns the
 * device's status. */
int kc_optimizer_step(kc_optimizer *o, const kc_buf *weights, const kc_buf *grads);

int64_t kc_optimizer_iterations(const kc_optimizer *o);
/* For resuming: also restores Nadam's running product, which follows from
 * the iteration count. */
void kc_optimizer_set_iterations(kc_optimizer *o, int64_t it);
/* The learning rate the next step uses: the schedule at the iteration count,
 * or the constant (Keras's optimizer.learning_rate). */
double kc_optimizer_learning_rate(const kc_optimizer *o);
/* For callbacks (ReduceLROnPlateau, LearningRateScheduler) and checkpoints.
 * Keras refuses to set a float over a schedule; callers check
 * kc_optimizer_has_schedule first. Setting one here replaces the schedule
 * with the constant. */
void kc_optimizer_set_learning_rate(kc_optimizer *o, double lr);
int kc_optimizer_has_schedule(const kc_optimizer *o);
const kc_optimizer_config *kc_optimizer_get_config(const kc_optimizer *o);
const char *kc_optimizer_name(const kc_optimizer *o); /* class name: "Adam" */

/* Slots in Keras 3's variable order, named "optimizer/<param>/<slot>" with
 * Keras's slot names:
 *   SGD       momentum (when momentum != 0)
 *   RMSprop   every velocity, then every momentum (momentum > 0), then every
 *             average_gradient (centered)
 *   Adam(W)   momentum, velocity per parameter; then every velocity_hat (amsgrad)
 *   Adagrad   accumulator
 *   Adadelta  accumulated_grad, accumulated_delta_var per parameter
 *   Adamax    momentum, norm per parameter
 *   Nadam     momentum, velocity per parameter
 *   Lion      momentum */
int kc_optimizer_slot_count(const kc_optimizer *o);
void kc_optimizer_slot(const kc_optimizer *o, int i, const char **name, kc_buf *dev, size_t *n);

/* Optimizer variables as Keras counts them for summary's "Optimizer params":
 * iteration, learning_rate (not with a schedule), every slot element and
 * Nadam's u_product. */
int64_t kc_optimizer_variable_count(const kc_optimizer *o);
/* Their size in bytes as Keras on TensorFlow reports it: an int64 iteration,
 * float32 for the rest. */
int64_t kc_optimizer_variable_bytes(const kc_optimizer *o);

void kc_optimizer_free(kc_optimizer *o);

extern const char *const kc_optimizer_names[];

#endif

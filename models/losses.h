/* Keras losses, computed on the host: predictions are small, so the model
 * downloads them, a loss gives the batch value and the gradient, and the
 * model uploads the gradient.
 *
 * Keras 3 semantics (KERAS.md section 6): one value per sample - the
 * crossentropies, KL divergence, categorical hinge and cosine similarity
 * reduce over the class axis as a whole, the others average over it - then
 * `sum_over_batch_size` (the mean over samples).
 * Probabilities are clipped to [1e-7, 1 - 1e-7] as Keras does; the logits
 * forms are the stable ones and are never clipped. A model whose outputs have
 * more axes (N, T, C) passes n = N*T rows of c, which divides by N*T exactly
 * as Keras's reduction does. */
#ifndef KC_LOSSES_H
#define KC_LOSSES_H

#include "core/backend.h"
#include "core/error.h"
#include "models/args.h"
#include "models/yaml.h"

#define KC_LOSS_EPSILON 1e-7

typedef enum kc_reduction {
    KC_REDUCTION_SUM_OVER_BATCH_SIZE = 0, /* Keras's default: sum / number of rows */
    KC_REDUCTION_SUM,
    KC_REDUCTION_MEAN,                    /* equal to the default without sample weights */
    KC_REDUCTION_MEAN_WITH_SAMPLE_WEIGHT, /* likewise */
} kc_reduction;

struct kc_loss_class;

typedef struct kc_loss {
    const struct kc_loss_class *cls;
    char name[64];         /* what Keras would call it: the user's string, or the object's name */
    int from_logits;       /* crossentropies only */
    float label_smoothing; /* categorical and binary crossentropy only */
    double delta;          /* huber only (Keras default 1.0) */
    kc_reduction reduction;
} kc_loss;

/* Accepts a name ("mse", "categorical_crossentropy", "CategoricalCrossentropy",
 * "huber", "Huber", "log_cosh", "hinge", "squared_hinge", "categorical_hinge",
 * "poisson", "cosine_similarity", "mape", "msle" ...),
 * {class_name: X, from_logits: true}, {X: {from_logits: true}} or Keras's
 * serialized {class_name: X, config: {...}}. Unknown names and arguments fail
 * with file:line:column and the closest valid name. */
int kc_loss_parse(kc_node *node, kc_loss *out, kc_error *e);
/* The same from a bare name with default arguments (for code and tests). */
int kc_loss_init(kc_loss *out, const char *name, kc_error *e);

const char *kc_loss_class_name(const kc_loss *l); /* "CategoricalCrossentropy" */
/* Targets are class indices, one per row (sparse_categorical_crossentropy). */
int kc_loss_sparse_targets(const kc_loss *l);
/* The crossentropies: they can be fused with the output activation. */
int kc_loss_has_logits_form(const kc_loss *l);
/* The activation a fused logits path folds in: KC_ACT_SOFTMAX (categorical,
 * sparse) or KC_ACT_SIGMOID (binary); KC_ACT_LINEAR for the other losses. When
 * the model's last activation is this one (and from_logits is off), computing
 * the loss with `logits` set on the pre-activation output is what TensorFlow
 * Keras does, and its per-sample values are then not capped at -ln(1e-7). */
kc_act kc_loss_logits_activation(const kc_loss *l);

/* Checks targets before kc_loss_compute: for sparse losses every label must be
 * a whole number in [0, c). Fails (KC_ECONFIG) naming the first bad label and
 * its row, e.g. "label 10 of sample 3 is outside [0, 10): the model has 10
 * output classes"; the caller prefixes where the batch came from. Dense targets
 * are not checked (Keras does not either). */
int kc_loss_check_targets(const kc_loss *l, const float *target, int n, int c, kc_error *e);

/* pred: n x c - post-activation, or logits when `logits` is set or
 * l->from_logits (`logits` is ignored by losses without a logits form).
 * target: n x c, or n class indices stored as floats for sparse losses.
 * Writes per_sample[n] if not NULL and, if grad is not NULL, the gradient of
 * the reduced loss with respect to pred (n x c; with respect to the logits in
 * the logits forms, e.g. (softmax(z) - t) / n). Returns the reduced loss.
 * A sparse label that kc_loss_check_targets would reject makes its sample's
 * value NaN (so the returned loss is NaN) and its gradient row zero.
 * hinge and squared_hinge map targets to -1/1 as Keras does: when every
 * target of the call is 0 or 1, t becomes 2t - 1; otherwise they are used as
 * they are. Gradients follow TensorFlow's conventions at kinks: |x| and
 * sign pass 0 at 0, max(a, b) passes to a when a >= b, and a max over the
 * class axis shares its gradient among ties. */
double kc_loss_compute(const kc_loss *l, const float *pred, const float *target, int n, int c,
                       int logits, float *per_sample, float *grad);

/* Every accepted loss name (snake_case, class names, aliases), NULL-terminated. */
extern const char *const kc_loss_names[];

/* Reads the common shape of a Keras object spec (losses, metrics and
 * optimizers share it):
 *   "name"                                 -> *name = "name", arguments empty
 *   {class_name: X, arg: ...}              -> arguments beside class_name
 *   {class_name: X, config: {arg: ...}}    -> Keras's serialized form
 *                                             (module, registered_name ignored)
 *   {X: {arg: ...}} or {X: null}
 * `what` ("loss") is used in messages. *name_node receives the node holding
 * the name, for "unknown X" errors. `args` is initialised over the argument
 * map with owner `what`; callers set args->owner to the class name once known. */
int kc_object_spec(kc_node *node, const char *what, const char **name, const kc_node **name_node,
                   kc_args *args, kc_error *e);

/* Fails with "unknown <what> 'x' (did you mean 'y'?)" or with the valid names
 * listed, located at `at`. */
int kc_unknown_name(const kc_node *at, const char *what, const char *name, const char *const *names,
                    kc_error *e);

#endif

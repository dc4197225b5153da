/* Weight regularizers (l1, l2, l1_l2) and constraints (max_norm,
 * min_max_norm, non_neg, unit_norm) as Keras 3 defines them
 * (keras/src/regularizers, keras/src/constraints).
 *
 * A regularizer adds l1 sum|w| + l2 sum w^2 to the loss - unscaled, after
 * the loss's reduction, in `loss` and `val_loss` alike - recomputed from the
 * current weights at every step. An activity regularizer applies the same
 * penalty to a layer's output (after its activation) divided by the batch
 * size. A constraint projects a weight after every optimizer update. */
#ifndef KC_REGULARIZERS_H
#define KC_REGULARIZERS_H

#include <stddef.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/tensor.h"
#include "models/args.h"
#include "models/yaml.h"

/* Penalty l1 * sum|w| + l2 * sum w^2; both zero means none. */
typedef struct kc_regularizer {
    double l1, l2;
} kc_regularizer;

typedef enum kc_constraint_kind {
    KC_CONSTRAINT_NONE = 0,
    KC_CONSTRAINT_MAX_NORM,
    KC_CONSTRAINT_MIN_MAX_NORM,
    KC_CONSTRAINT_NON_NEG,
    KC_CONSTRAINT_UNIT_NORM,
} kc_constraint_kind;

/* Projection applied after every optimizer update. Norms are taken over
 * Keras's `axis` (default 0; axis: null means the whole weight). */
typedef struct kc_constraint {
    kc_constraint_kind kind;
    double max_value, min_value, rate;
    int axes[KC_MAX_RANK]; /* as written: negative counts from the last axis */
    int naxes;
    int all_axes;        /* axis: null */
    const kc_node *node; /* where it was given, for errors found at build time */
} kc_constraint;

/* Keras's backend.epsilon(), the constraints' guard against a zero norm. */
#define KC_CONSTRAINT_EPSILON 1e-7

/* ---- parsing ---- */

/* A regularizer: "l1", "l2" (factor 0.01), "l1_l2" (0.01 and 0.01, the
 * factors Keras documents for that name), Keras 3's "l1l2"/"L1L2" (0 and 0),
 * "L1"/"L2", {L1: {l1: 0.001}}, {class_name: L1L2, config: {l1: .., l2: ..}}
 * or {class_name: L2, l2: 0.1}. Errors name file:line:column; `ctx` (may be
 * "") prefixes them, e.g. "Dense argument 'kernel_regularizer': ". */
int kc_regularizer_parse(kc_node *node, const char *ctx, kc_regularizer *out, kc_error *e);
/* Reads `key` from a layer's arguments; absent or null gives no penalty. */
int kc_args_regularizer(kc_args *a, const char *key, kc_regularizer *out, kc_error *e);
static inline int kc_regularizer_active(const kc_regularizer *r) {
    return r->l1 != 0.0 || r->l2 != 0.0;
}

/* A constraint: "max_norm", "MaxNorm", "min_max_norm", "non_neg",
 * "unit_norm" (and their class names), {MaxNorm: {max_value: 3, axis: [0, 1,
 * 2]}} or {class_name: MinMaxNorm, config: {...}}. */
int kc_constraint_parse(kc_node *node, const char *ctx, kc_constraint *out, kc_error *e);
int kc_args_constraint(kc_args *a, const char *key, kc_constraint *out, kc_error *e);
/* Checks the axes against the weight's shape (each in [-rank, rank), none
 * twice); `what` names the weight in the message ("kernel of layer 'dense'"). */
int kc_constraint_check(const kc_constraint *c, const kc_shape *shape, const char *what,
                        kc_error *e);

/* A weight's regularizer and constraint, as a layer reads them from its
 * <weight>_regularizer and <weight>_constraint arguments. */
typedef struct kc_weight_opts {
    kc_regularizer regularizer;
    kc_constraint constraint;
} kc_weight_opts;

/* Reads "<prefix>_regularizer" and "<prefix>_constraint" ("kernel", "bias"). */
int kc_args_weight_opts(kc_args *a, const char *prefix, kc_weight_opts *out, kc_error *e);
struct kc_param;
/* Gives a declared weight its options, checking the constraint's axes against
 * its shape; `layer` names the layer in the message. */
int kc_param_set_opts(struct kc_param *p, const kc_weight_opts *o, const char *layer, kc_error *e);

/* Keras's names, for summaries and messages: "L1L2(l1=0.01, l2=0.01)",
 * "MaxNorm(max_value=2, axis=0)". Returns buf. */
char *kc_regularizer_str(const kc_regularizer *r, char *buf, size_t n);
char *kc_constraint_str(const kc_constraint *c, char *buf, size_t n);

/* ---- math (every op through the backend) ---- */

/* The weight penalty of params[0..n): the sum over those with a regularizer,
 * a value and `trainable` set, added to the double at acc (device memory).
 * Keras counts the trainable weights of trainable layers only, so the caller
 * passes those. With add_grads, adds d(penalty)/dw into each such param's
 * grad (when it has one). Returns the device's status. */
int kc_regularization_apply(kc_device *d, struct kc_param *const *params, int n, int add_grads,
                            kc_buf acc);
/* Does any of params[0..n) carry a penalty? */
int kc_regularization_any(struct kc_param *const *params, int n);
/* Projects every param that has a constraint (call after each update). */
int kc_constraints_apply(kc_device *d, struct kc_param *const *params, int n);
/* Activity penalty of a layer output y (numel values of `batch` samples):
 * penalty(y) / batch, as Keras divides it, added to the double at acc. When
 * dy is not null, adds the penalty's gradient (also divided by batch) into
 * dy, the gradient with respect to y. Adds nothing without a regularizer or
 * samples. */
int kc_activity_penalty(kc_device *d, const kc_regularizer *r, kc_buf y, kc_buf dy, size_t numel,
                        int batch, kc_buf acc);

#endif

/* Keras metrics: running means over the samples of an epoch (or of one
 * evaluate), reset by the caller at each start.
 *
 * Names follow Keras 3's compile(): a string metric is shown as the user
 * wrote it ("acc", "mse", "MeanSquaredError"); a mapping shows its `name`
 * argument or the class's default name ("mean_squared_error"). "accuracy" and
 * "acc" (any case) resolve by shapes as Keras 3 does: a prediction with one
 * column -> binary accuracy; class-index targets -> sparse categorical;
 * otherwise categorical. */
#ifndef KC_METRICS_H
#define KC_METRICS_H

#include <stdint.h>

#include "core/error.h"
#include "models/yaml.h"

typedef enum kc_metric_kind {
    KC_METRIC_ACCURACY,        /* Keras's Accuracy class: t == p elementwise */
    KC_METRIC_BINARY_ACCURACY, /* t == (p > threshold) elementwise */
    KC_METRIC_CATEGORICAL_ACCURACY,
    KC_METRIC_SPARSE_CATEGORICAL_ACCURACY,
    KC_METRIC_MEAN_SQUARED_ERROR,
    KC_METRIC_MEAN_ABSOLUTE_ERROR,
} kc_metric_kind;

typedef struct kc_metric {
    kc_metric_kind kind;
    char name[64];   /* the name shown in logs */
    float threshold; /* binary accuracy (Keras default 0.5) */
    double total;    /* sum of per-sample values */
    double count;    /* samples seen */
} kc_metric;

/* Reads one entry of `metrics:`: a name ("accuracy", "mse",
 * "categorical_accuracy", "BinaryAccuracy" ...), {class_name: X, ...},
 * {X: {threshold: 0.7}} or Keras's {class_name: X, config: {...}}.
 * pred_cols is the model's output size (last axis); sparse_targets says the
 * targets are class indices, one per row. A metric that cannot read targets
 * of that layout (categorical_accuracy with class indices, ...) is rejected
 * with file:line:column. */
int kc_metric_parse(kc_node *node, int pred_cols, int sparse_targets, kc_metric *out, kc_error *e);
/* The same from a bare string, as if written in the file. */
int kc_metric_init(kc_metric *out, const char *name, int pred_cols, int sparse_targets,
                   kc_error *e);

void kc_metric_reset(kc_metric *m);
/* pred: n x c (post-activation); target: n x c, or n class indices when
 * kc_metric_sparse_targets(m). Each row is one sample. */
void kc_metric_update(kc_metric *m, const float *pred, const float *target, int n, int c);
double kc_metric_result(const kc_metric *m); /* total / count, 0 before any sample */
const char *kc_metric_name(const kc_metric *m);
/* Targets are read as one class index per row. */
int kc_metric_sparse_targets(const kc_metric *m);
/* +1 when higher is better (accuracies), -1 when lower is (errors): the
 * direction Keras 3's mode="auto" callbacks use. */
int kc_metric_direction(const kc_metric *m);

/* Every accepted metric name, NULL-terminated. */
extern const char *const kc_metric_names[];

#endif

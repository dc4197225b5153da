/* Keras metrics, reset by the caller at the start of each epoch (and of each
 * evaluate). Most are running means over the samples seen; precision,
 * recall and AUC accumulate confusion counts over every batch and compute
 * their value from the totals, as Keras's do.
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
#include "models/losses.h"
#include "models/yaml.h"

typedef enum kc_metric_kind {
    KC_METRIC_ACCURACY,        /* Keras's Accuracy class: t == p elementwise */
    KC_METRIC_BINARY_ACCURACY, /* t == (p > threshold) elementwise */
    KC_METRIC_CATEGORICAL_ACCURACY,
    KC_METRIC_SPARSE_CATEGORICAL_ACCURACY,
    KC_METRIC_MEAN_SQUARED_ERROR,
    KC_METRIC_MEAN_ABSOLUTE_ERROR,
    /* the target is among the k highest predictions; classes tied with the
     * k-th all count (TensorFlow's in_top_k) */
    KC_METRIC_TOP_K_CATEGORICAL_ACCURACY,
    KC_METRIC_SPARSE_TOP_K_CATEGORICAL_ACCURACY,
    /* running means of a loss function's per-sample values */
    KC_METRIC_MEAN_ABSOLUTE_PERCENTAGE_ERROR,
    KC_METRIC_MEAN_SQUARED_LOGARITHMIC_ERROR,
    KC_METRIC_LOG_COSH_ERROR,
    KC_METRIC_POISSON,
    KC_METRIC_HINGE,
    KC_METRIC_SQUARED_HINGE,
    KC_METRIC_CATEGORICAL_HINGE,
    KC_METRIC_COSINE_SIMILARITY, /* +sum(normalize(t) normalize(p)): higher is better */
    /* confusion counts over the whole epoch */
    KC_METRIC_PRECISION,
    KC_METRIC_RECALL,
    KC_METRIC_AUC,
} kc_metric_kind;

/* AUC's thresholds, the two end points included (Keras's default is 200). */
#define KC_METRIC_MAX_THRESHOLDS 1000

typedef enum kc_auc_curve { KC_AUC_ROC, KC_AUC_PR } kc_auc_curve;
typedef enum kc_auc_summation {
    KC_AUC_INTERPOLATION,
    KC_AUC_MINORING,
    KC_AUC_MAJORING,
} kc_auc_summation;

typedef struct kc_metric {
    kc_metric_kind kind;
    char name[64];   /* the name shown in logs */
    float threshold; /* binary accuracy (0.5); precision and recall (0.5, or
                        -1e10 with top_k, as Keras) */
    int k;           /* top-k accuracies (Keras default 5) */
    double total;    /* running means: sum of per-sample values */
    double count;    /* samples seen */
    kc_loss loss;    /* the loss function a running mean averages */

    /* ---- precision, recall and AUC ---- */
    int top_k;       /* precision/recall: only the top_k predictions of a row count; 0 = off */
    int class_id;    /* precision/recall: only this column counts; -1 = every column */
    int from_logits; /* AUC: predictions pass through a sigmoid first */
    kc_auc_curve curve;
    kc_auc_summation summation;
    int nthresholds; /* AUC thresholds, end points included */
    int evenly;      /* AUC: thresholds i / (n - 1) - predictions go to buckets */
    float thresholds[KC_METRIC_MAX_THRESHOLDS]; /* AUC thresholds when not evenly spaced */
    /* Per threshold bucket b: the label weight of predictions positive at
     * thresholds 0..b and negative above (AUC); precision and recall use [0]
     * for their single threshold. */
    double tp[KC_METRIC_MAX_THRESHOLDS], fp[KC_METRIC_MAX_THRESHOLDS];
    double pos, neg; /* labels seen that are true / false */
} kc_metric;

/* Reads one entry of `metrics:`: a name ("accuracy", "mse", "auc",
 * "precision", "top_k_categorical_accuracy", "BinaryAccuracy" ...),
 * {class_name: X, ...}, {X: {threshold: 0.7}} or Keras's {class_name: X,
 * config: {...}}. pred_cols is the model's output size (last axis);
 * sparse_targets says the targets are class indices, one per row. A metric
 * that cannot read targets of that layout (categorical_accuracy with class
 * indices, ...) is rejected with file:line:column. */
int kc_metric_parse(kc_node *node, int pred_cols, int sparse_targets, kc_metric *out, kc_error *e);
/* The same from a bare string, as if written in the file. */
int kc_metric_init(kc_metric *out, const char *name, int pred_cols, int sparse_targets,
                   kc_error *e);

void kc_metric_reset(kc_metric *m);
/* pred: n x c (post-activation); target: n x c, or n class indices when
 * kc_metric_sparse_targets(m). Each row is one sample. */
void kc_metric_update(kc_metric *m, const float *pred, const float *target, int n, int c);
/* Running means: total / count (0 before any sample); precision, recall
 * and AUC: their value from the counts so far (0 when undefined, as Keras's
 * divide_no_nan). */
double kc_metric_result(const kc_metric *m);
const char *kc_metric_name(const kc_metric *m);
/* Targets are read as one class index per row. */
int kc_metric_sparse_targets(const kc_metric *m);
/* +1 when higher is better (accuracies, precision, recall, AUC, cosine
 * similarity), -1 when lower is (errors): the direction Keras 3's
 * mode="auto" callbacks use. */
int kc_metric_direction(const kc_metric *m);

/* Every accepted metric name, NULL-terminated. */
extern const char *const kc_metric_names[];

#endif

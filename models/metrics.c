#include "models/metrics.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "models/args.h"
#include "models/losses.h"

typedef struct metric_entry {
    const char *name; /* as Keras's lookup table spells it */
    kc_metric_kind kind;
    const char *default_name;
    const char *class_name;
} metric_entry;

/* Keras 3 metrics.ALL_OBJECTS_DICT: class names, their snake_case forms and
 * the short aliases. "accuracy"/"acc" as strings are resolved by shape first. */
static const metric_entry table[] = {
    {"Accuracy", KC_METRIC_ACCURACY, "accuracy", "Accuracy"},
    {"accuracy", KC_METRIC_ACCURACY, "accuracy", "Accuracy"},
    {"BinaryAccuracy", KC_METRIC_BINARY_ACCURACY, "binary_accuracy", "BinaryAccuracy"},
    {"binary_accuracy", KC_METRIC_BINARY_ACCURACY, "binary_accuracy", "BinaryAccuracy"},
    {"CategoricalAccuracy", KC_METRIC_CATEGORICAL_ACCURACY, "categorical_accuracy",
     "CategoricalAccuracy"},
    {"categorical_accuracy", KC_METRIC_CATEGORICAL_ACCURACY, "categorical_accuracy",
     "CategoricalAccuracy"},
    {"SparseCategoricalAccuracy", KC_METRIC_SPARSE_CATEGORICAL_ACCURACY,
     "sparse_categorical_accuracy", "SparseCategoricalAccuracy"},
    {"sparse_categorical_accuracy", KC_METRIC_SPARSE_CATEGORICAL_ACCURACY,
     "sparse_categorical_accuracy", "SparseCategoricalAccuracy"},
    {"MeanSquaredError", KC_METRIC_MEAN_SQUARED_ERROR, "mean_squared_error", "MeanSquaredError"},
    {"mean_squared_error", KC_METRIC_MEAN_SQUARED_ERROR, "mean_squared_error", "MeanSquaredError"},
    {"mse", KC_METRIC_MEAN_SQUARED_ERROR, "mean_squared_error", "MeanSquaredError"},
    {"MSE", KC_METRIC_MEAN_SQUARED_ERROR, "mean_squared_error", "MeanSquaredError"},
    {"MeanAbsoluteError", KC_METRIC_MEAN_ABSOLUTE_ERROR, "mean_absolute_error",
     "MeanAbsoluteError"},
    {"mean_absolute_error", KC_METRIC_MEAN_ABSOLUTE_ERROR, "mean_absolute_error",
     "MeanAbsoluteError"},
    {"mae", KC_METRIC_MEAN_ABSOLUTE_ERROR, "mean_absolute_error", "MeanAbsoluteError"},
    {"MAE", KC_METRIC_MEAN_ABSOLUTE_ERROR, "mean_absolute_error", "MeanAbsoluteError"},
};
#define NTABLE (sizeof table / sizeof table[0])

const char *const kc_metric_names[] = {
    "accuracy",
    "acc",
    "Accuracy",
    "binary_accuracy",
    "BinaryAccuracy",
    "categorical_accuracy",
    "CategoricalAccuracy",
    "sparse_categorical_accuracy",
    "SparseCategoricalAccuracy",
    "mean_squared_error",
    "MeanSquaredError",
    "mse",
    "MSE",
    "mean_absolute_error",
    "MeanAbsoluteError",
    "mae",
    "MAE",
    NULL,
};

static const metric_entry *lookup(const char *name) {
    for (size_t i = 0; i < NTABLE; i++)
        if (!strcmp(table[i].name, name)) return &table[i];
    return NULL;
}

static const char *kind_name(kc_metric_kind k) {
    for (size_t i = 0; i < NTABLE; i++)
        if (table[i].kind == k) return table[i].default_name;
    return "metric";
}

static int is_shape_resolved(const char *s) {
    return !strcasecmp(s, "accuracy") || !strcasecmp(s, "acc");
}

/* Keras 3 compile_utils.get_metric's shape rule. */
static kc_metric_kind resolve_accuracy(int pred_cols, int sparse_targets) {
    if (pred_cols == 1) return KC_METRIC_BINARY_ACCURACY;
    if (sparse_targets) return KC_METRIC_SPARSE_CATEGORICAL_ACCURACY;
    return KC_METRIC_CATEGORICAL_ACCURACY;
}

static void metric_defaults(kc_metric *m, kc_metric_kind kind, const char *name) {
    memset(m, 0, sizeof *m);
    m->kind = kind;
    m->threshold = 0.5f;
    snprintf(m->name, sizeof m->name, "%s", name);
}

/* Keras would silently compare mismatched layouts; say what is wrong instead. */
static int check_layout(const kc_metric *m, const kc_node *at, int pred_cols, int sparse,
                        kc_error *e) {
    if (m->kind == KC_METRIC_SPARSE_CATEGORICAL_ACCURACY) {
        if (sparse || pred_cols == 1) return KC_OK;
        return kc_node_fail(e, at,
                            "metric '%s' needs class-index targets, but the targets are "
                            "one-hot rows of %d; use 'categorical_accuracy' or 'accuracy'",
                            m->name, pred_cols);
    }
    if (!sparse) return KC_OK;
    const char *hint = m->kind == KC_METRIC_CATEGORICAL_ACCURACY
                           ? "; use 'sparse_categorical_accuracy' or 'accuracy'"
                           : "";
    return kc_node_fail(e, at,
                        "metric '%s' needs targets shaped like the predictions (%d columns), "
                        "but the targets are class indices%s",
                        m->name, pred_cols, hint);
}

static int from_string(kc_metric *out, const char *name, const kc_node *at, int pred_cols,
                       int sparse, kc_error *e) {
    if (is_shape_resolved(name)) {
        metric_defaults(out, resolve_accuracy(pred_cols, sparse), name);
        return KC_OK;
    }
    const metric_entry *t = lookup(name);
    if (!t) return kc_unknown_name(at, "metric", name, kc_metric_names, e);
    metric_defaults(out, t->kind, name);
    return check_layout(out, at, pred_cols, sparse, e);
}

static int read_args(kc_args *a, kc_metric *m, const metric_entry *t, kc_error *e) {
    const char *s;
    int rc = kc_args_str(a, "name", 0, t->default_name, &s, e);
    if (rc) return rc;
    snprintf(m->name, sizeof m->name, "%s", s);
    if ((rc = kc_args_str(a, "dtype", 0, "float32", &s, e))) return rc;
    if (strcmp(s, "float32"))
        return kc_node_fail(e, kc_args_node(a, "dtype"),
                            "%s argument 'dtype': only float32 is supported, got '%s'", a->owner,
                            s);
    if (m->kind == KC_METRIC_BINARY_ACCURACY) {
        double th;
        if ((rc = kc_args_float(a, "threshold", 0, 0.5, -INFINITY, INFINITY, &th, e))) return rc;
        m->threshold = (float)th;
    }
    return kc_args_finish(a, e);
}

int kc_metric_parse(kc_node *node, int pred_cols, int sparse_targets, kc_metric *out, kc_error *e) {
    int sparse = sparse_targets && pred_cols > 1;
    const char *name;
    const kc_node *at;
    kc_args a;
    int rc = kc_object_spec(node, "metric", &name, &at, &a, e);
    if (rc) return rc;
    if (node->kind == KC_NODE_SCALAR) return from_string(out, name, at, pred_cols, sparse, e);
    /* A mapping names a class, as keras.metrics.get does: {class_name: accuracy}
     * is the Accuracy class, not the shape-resolved string. */
    const metric_entry *t = lookup(name);
    if (!t) return kc_unknown_name(at, "metric", name, kc_metric_names, e);
    metric_defaults(out, t->kind, t->default_name);
    a.owner = t->class_name;
    if ((rc = read_args(&a, out, t, e))) return rc;
    return check_layout(out, node, pred_cols, sparse, e);
}

int kc_metric_init(kc_metric *out, const char *name, int pred_cols, int sparse_targets,
                   kc_error *e) {
    return from_string(out, name, NULL, pred_cols, sparse_targets && pred_cols > 1, e);
}

void kc_metric_reset(kc_metric *m) {
    m->total = m->count = 0;
}

/* First index of the largest value, as numpy/TensorFlow argmax. */
static int argmax(const float *x, int c) {
    int best = 0;
    for (int j = 1; j < c; j++)
        if (x[j] > x[best]) best = j;
    return best;
}

static double row_value(const kc_metric *m, const float *p, const float *t, int c) {
    double sum = 0;
    switch (m->kind) {
    case KC_METRIC_ACCURACY:
        for (int j = 0; j < c; j++)
            sum += t[j] == p[j];
        return sum / c;
    case KC_METRIC_BINARY_ACCURACY:
        for (int j = 0; j < c; j++)
            sum += t[j] == (p[j] > m->threshold ? 1.0f : 0.0f);
        return sum / c;
    case KC_METRIC_CATEGORICAL_ACCURACY:
        return argmax(t, c) == argmax(p, c);
    case KC_METRIC_SPARSE_CATEGORICAL_ACCURACY:
        return (double)t[0] == (double)argmax(p, c);
    case KC_METRIC_MEAN_SQUARED_ERROR:
        for (int j = 0; j < c; j++)
            sum += ((double)p[j] - t[j]) * ((double)p[j] - t[j]);
        return sum / c;
    case KC_METRIC_MEAN_ABSOLUTE_ERROR:
        for (int j = 0; j < c; j++)
            sum += fabs((double)p[j] - t[j]);
        return sum / c;
    }
    return 0;
}

void kc_metric_update(kc_metric *m, const float *pred, const float *target, int n, int c) {
    if (n <= 0 || c <= 0) return;
    size_t tstride = kc_metric_sparse_targets(m) ? 1 : (size_t)c;
    for (int i = 0; i < n; i++)
        m->total += row_value(m, pred + (size_t)i * (size_t)c, target + (size_t)i * tstride, c);
    m->count += n;
}

double kc_metric_result(const kc_metric *m) {
    return m->count > 0 ? m->total / m->count : 0.0;
}

const char *kc_metric_name(const kc_metric *m) {
    return m->name[0] ? m->name : kind_name(m->kind);
}

int kc_metric_sparse_targets(const kc_metric *m) {
    return m->kind == KC_METRIC_SPARSE_CATEGORICAL_ACCURACY;
}

int kc_metric_direction(const kc_metric *m) {
    return m->kind == KC_METRIC_MEAN_SQUARED_ERROR || m->kind == KC_METRIC_MEAN_ABSOLUTE_ERROR ? -1
                                                                                               : 1;
}

#include "models/metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "models/args.h"

typedef struct metric_entry {
    const char *name; /* as Keras's lookup table spells it */
    kc_metric_kind kind;
    const char *default_name;
    const char *class_name;
} metric_entry;

#define ENTRY(kind, def, cls)                                                                      \
    {cls, kind, def, cls}, {                                                                       \
        def, kind, def, cls                                                                        \
    }

/* Keras 3 metrics.ALL_OBJECTS_DICT: class names, their snake_case forms and
 * the short aliases. "accuracy"/"acc" as strings are resolved by shape first.
 * LogCoshError's default name is "logcosh", not its snake_case form. */
static const metric_entry table[] = {
    ENTRY(KC_METRIC_ACCURACY, "accuracy", "Accuracy"),
    ENTRY(KC_METRIC_BINARY_ACCURACY, "binary_accuracy", "BinaryAccuracy"),
    ENTRY(KC_METRIC_CATEGORICAL_ACCURACY, "categorical_accuracy", "CategoricalAccuracy"),
    ENTRY(KC_METRIC_SPARSE_CATEGORICAL_ACCURACY, "sparse_categorical_accuracy",
          "SparseCategoricalAccuracy"),
    ENTRY(KC_METRIC_MEAN_SQUARED_ERROR, "mean_squared_error", "MeanSquaredError"),
    {"mse", KC_METRIC_MEAN_SQUARED_ERROR, "mean_squared_error", "MeanSquaredError"},
    {"MSE", KC_METRIC_MEAN_SQUARED_ERROR, "mean_squared_error", "MeanSquaredError"},
    ENTRY(KC_METRIC_MEAN_ABSOLUTE_ERROR, "mean_absolute_error", "MeanAbsoluteError"),
    {"mae", KC_METRIC_MEAN_ABSOLUTE_ERROR, "mean_absolute_error", "MeanAbsoluteError"},
    {"MAE", KC_METRIC_MEAN_ABSOLUTE_ERROR, "mean_absolute_error", "MeanAbsoluteError"},
    ENTRY(KC_METRIC_TOP_K_CATEGORICAL_ACCURACY, "top_k_categorical_accuracy",
          "TopKCategoricalAccuracy"),
    ENTRY(KC_METRIC_SPARSE_TOP_K_CATEGORICAL_ACCURACY, "sparse_top_k_categorical_accuracy",
          "SparseTopKCategoricalAccuracy"),
    ENTRY(KC_METRIC_MEAN_ABSOLUTE_PERCENTAGE_ERROR, "mean_absolute_percentage_error",
          "MeanAbsolutePercentageError"),
    {"mape", KC_METRIC_MEAN_ABSOLUTE_PERCENTAGE_ERROR, "mean_absolute_percentage_error",
     "MeanAbsolutePercentageError"},
    {"MAPE", KC_METRIC_MEAN_ABSOLUTE_PERCENTAGE_ERROR, "mean_absolute_percentage_error",
     "MeanAbsolutePercentageError"},
    ENTRY(KC_METRIC_MEAN_SQUARED_LOGARITHMIC_ERROR, "mean_squared_logarithmic_error",
          "MeanSquaredLogarithmicError"),
    {"msle", KC_METRIC_MEAN_SQUARED_LOGARITHMIC_ERROR, "mean_squared_logarithmic_error",
     "MeanSquaredLogarithmicError"},
    {"MSLE", KC_METRIC_MEAN_SQUARED_LOGARITHMIC_ERROR, "mean_squared_logarithmic_error",
     "MeanSquaredLogarithmicError"},
    {"LogCoshError", KC_METRIC_LOG_COSH_ERROR, "logcosh", "LogCoshError"},
    {"log_cosh_error", KC_METRIC_LOG_COSH_ERROR, "logcosh", "LogCoshError"},
    ENTRY(KC_METRIC_POISSON, "poisson", "Poisson"),
    ENTRY(KC_METRIC_HINGE, "hinge", "Hinge"),
    ENTRY(KC_METRIC_SQUARED_HINGE, "squared_hinge", "SquaredHinge"),
    ENTRY(KC_METRIC_CATEGORICAL_HINGE, "categorical_hinge", "CategoricalHinge"),
    ENTRY(KC_METRIC_COSINE_SIMILARITY, "cosine_similarity", "CosineSimilarity"),
    ENTRY(KC_METRIC_PRECISION, "precision", "Precision"),
    ENTRY(KC_METRIC_RECALL, "recall", "Recall"),
    {"AUC", KC_METRIC_AUC, "auc", "AUC"},
    {"auc", KC_METRIC_AUC, "auc", "AUC"},
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
    "top_k_categorical_accuracy",
    "TopKCategoricalAccuracy",
    "sparse_top_k_categorical_accuracy",
    "SparseTopKCategoricalAccuracy",
    "mean_absolute_percentage_error",
    "MeanAbsolutePercentageError",
    "mape",
    "MAPE",
    "mean_squared_logarithmic_error",
    "MeanSquaredLogarithmicError",
    "msle",
    "MSLE",
    "log_cosh_error",
    "LogCoshError",
    "poisson",
    "Poisson",
    "hinge",
    "Hinge",
    "squared_hinge",
    "SquaredHinge",
    "categorical_hinge",
    "CategoricalHinge",
    "cosine_similarity",
    "CosineSimilarity",
    "precision",
    "Precision",
    "recall",
    "Recall",
    "auc",
    "AUC",
    NULL,
};

/* The loss function behind each running-mean metric. */
static const char *loss_of(kc_metric_kind k) {
    switch (k) {
    case KC_METRIC_MEAN_ABSOLUTE_PERCENTAGE_ERROR:
        return "mean_absolute_percentage_error";
    case KC_METRIC_MEAN_SQUARED_LOGARITHMIC_ERROR:
        return "mean_squared_logarithmic_error";
    case KC_METRIC_LOG_COSH_ERROR:
        return "log_cosh";
    case KC_METRIC_POISSON:
        return "poisson";
    case KC_METRIC_HINGE:
        return "hinge";
    case KC_METRIC_SQUARED_HINGE:
        return "squared_hinge";
    case KC_METRIC_CATEGORICAL_HINGE:
        return "categorical_hinge";
    case KC_METRIC_COSINE_SIMILARITY:
        return "cosine_similarity";
    default:
        return NULL;
    }
}

static int is_confusion(kc_metric_kind k) {
    return k == KC_METRIC_PRECISION || k == KC_METRIC_RECALL || k == KC_METRIC_AUC;
}

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

/* Keras's AUC default: num_thresholds thresholds i / (n - 1). */
static void auc_even_thresholds(kc_metric *m, int n) {
    m->nthresholds = n;
    m->evenly = 1;
}

static void metric_defaults(kc_metric *m, kc_metric_kind kind, const char *name) {
    memset(m, 0, sizeof *m);
    m->kind = kind;
    m->threshold = 0.5f;
    m->k = 5;
    m->class_id = -1;
    snprintf(m->name, sizeof m->name, "%s", name);
    const char *loss = loss_of(kind);
    if (loss) {
        kc_loss_init(&m->loss, loss, NULL);
        m->loss.reduction = KC_REDUCTION_SUM;
    }
    if (kind == KC_METRIC_AUC) auc_even_thresholds(m, 200);
}

static int is_sparse_kind(kc_metric_kind k) {
    return k == KC_METRIC_SPARSE_CATEGORICAL_ACCURACY ||
           k == KC_METRIC_SPARSE_TOP_K_CATEGORICAL_ACCURACY;
}

/* Keras would silently compare mismatched layouts; say what is wrong instead. */
static int check_layout(const kc_metric *m, const kc_node *at, int pred_cols, int sparse,
                        kc_error *e) {
    if (is_sparse_kind(m->kind)) {
        if (sparse || pred_cols == 1) return KC_OK;
        const char *hint = m->kind == KC_METRIC_SPARSE_CATEGORICAL_ACCURACY
                               ? "'categorical_accuracy' or 'accuracy'"
                               : "'top_k_categorical_accuracy'";
        return kc_node_fail(e, at,
                            "metric '%s' needs class-index targets, but the targets are "
                            "one-hot rows of %d; use %s",
                            m->name, pred_cols, hint);
    }
    if (!sparse) return KC_OK;
    const char *hint = m->kind == KC_METRIC_CATEGORICAL_ACCURACY
                           ? "; use 'sparse_categorical_accuracy' or 'accuracy'"
                       : m->kind == KC_METRIC_TOP_K_CATEGORICAL_ACCURACY
                           ? "; use 'sparse_top_k_categorical_accuracy'"
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

/* ---- class arguments ---- */

static int read_k(kc_args *a, kc_metric *m, kc_error *e) {
    long long k;
    int rc = kc_args_int(a, "k", 0, 5, 1, 1LL << 30, &k, e);
    m->k = (int)k;
    if (rc || m->kind != KC_METRIC_SPARSE_TOP_K_CATEGORICAL_ACCURACY) return rc;
    int sorted;
    if ((rc = kc_args_bool(a, "from_sorted_ids", 0, &sorted, e))) return rc;
    if (sorted)
        return kc_node_fail(e, kc_args_node(a, "from_sorted_ids"),
                            "%s argument 'from_sorted_ids': kerasc models output scores, not "
                            "sorted class ids; remove it or set it to false",
                            a->owner);
    return KC_OK;
}

/* Keras's thresholds: one number in [0, 1] (a list of several would give one
 * value per threshold, which a log entry cannot hold). */
static int read_threshold(kc_args *a, float def, float *out, kc_error *e) {
    kc_node *n = kc_args_node(a, "thresholds");
    *out = def;
    if (!n || kc_node_is_null(n)) return KC_OK;
    kc_node *v = n;
    if (n->kind == KC_NODE_SEQ) {
        if (n->n != 1)
            return kc_node_fail(e, n,
                                "%s argument 'thresholds': give one threshold (a list of %zu "
                                "gives one value per threshold, which the logs cannot hold; "
                                "use one metric per threshold)",
                                a->owner, n->n);
        v = n->items[0];
    }
    double t;
    if (kc_node_float(v, &t, e))
        return kc_node_fail(e, v, "%s argument 'thresholds': expected a number in [0, 1]",
                            a->owner);
    if (!(t >= 0.0 && t <= 1.0))
        return kc_node_fail(e, v, "%s argument 'thresholds': values must be in [0, 1], got %g",
                            a->owner, t);
    *out = (float)t;
    return KC_OK;
}

static int read_precision_recall(kc_args *a, kc_metric *m, int pred_cols, kc_error *e) {
    long long top_k, class_id;
    int rc = kc_args_int(a, "top_k", 0, 0, 1, 1LL << 30, &top_k, e);
    if (rc) return rc;
    if (top_k > pred_cols)
        return kc_node_fail(e, kc_args_node(a, "top_k"),
                            "%s argument 'top_k' (%lld) is larger than the model's %d outputs",
                            a->owner, top_k, pred_cols);
    m->top_k = (int)top_k;
    if ((rc = kc_args_int(a, "class_id", 0, -1, 0, 1LL << 30, &class_id, e))) return rc;
    if (class_id >= pred_cols)
        return kc_node_fail(e, kc_args_node(a, "class_id"),
                            "%s argument 'class_id' (%lld) must be below the number of outputs "
                            "(%d)",
                            a->owner, class_id, pred_cols);
    m->class_id = (int)class_id;
    /* with top_k and no thresholds Keras counts every kept prediction (NEG_INF) */
    return read_threshold(a, m->top_k ? -1e10f : 0.5f, &m->threshold, e);
}

/* numpy's allclose(t, arange(n) / (n - 1), atol=1e-7), as Keras checks. */
static int evenly_spaced(const double *t, int n) {
    if (n < 3) return 0;
    for (int i = 0; i < n; i++) {
        double want = (double)(float)((float)i / (float)(n - 1));
        if (!(fabs(t[i] - want) <= 1e-7 + 1e-5 * fabs(want))) return 0;
    }
    return 1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int read_auc_thresholds(kc_args *a, kc_metric *m, kc_error *e) {
    kc_node *n = kc_args_node(a, "thresholds");
    if (!n || kc_node_is_null(n)) return KC_OK;
    if (n->kind != KC_NODE_SEQ || n->n == 0)
        return kc_node_fail(e, n, "%s argument 'thresholds': expected a list of numbers", a->owner);
    if (n->n + 2 > KC_METRIC_MAX_THRESHOLDS)
        return kc_node_fail(e, n, "%s argument 'thresholds': at most %d thresholds", a->owner,
                            KC_METRIC_MAX_THRESHOLDS - 2);
    double t[KC_METRIC_MAX_THRESHOLDS];
    int count = (int)n->n;
    for (int i = 0; i < count; i++)
        if (kc_node_float(n->items[i], &t[i + 1], e))
            return kc_node_fail(e, n->items[i], "%s argument 'thresholds': expected a number",
                                a->owner);
    qsort(t + 1, (size_t)count, sizeof *t, cmp_double);
    /* Keras tests [0] + thresholds + [1] for even spacing, then uses -eps and
     * 1 + eps as the end points so that predictions of exactly 0 and 1 count */
    t[0] = 0.0;
    t[count + 1] = 1.0;
    m->nthresholds = count + 2;
    m->evenly = evenly_spaced(t, count + 2);
    m->thresholds[0] = (float)(0.0 - KC_LOSS_EPSILON);
    for (int i = 1; i <= count; i++)
        m->thresholds[i] = (float)t[i];
    m->thresholds[count + 1] = (float)(1.0 + KC_LOSS_EPSILON);
    return KC_OK;
}

static int read_auc(kc_args *a, kc_metric *m, kc_error *e) {
    long long nt;
    int rc = kc_args_int(a, "num_thresholds", 0, 200, 2, KC_METRIC_MAX_THRESHOLDS, &nt, e);
    if (rc) return rc;
    auc_even_thresholds(m, (int)nt);
    static const char *const curves[] = {"ROC", "PR", NULL};
    static const char *const sums[] = {"interpolation", "minoring", "majoring", NULL};
    int curve, sum, multi;
    if ((rc = kc_args_enum(a, "curve", "ROC", curves, &curve, e))) return rc;
    if ((rc = kc_args_enum(a, "summation_method", "interpolation", sums, &sum, e))) return rc;
    m->curve = (kc_auc_curve)curve;
    m->summation = (kc_auc_summation)sum;
    if ((rc = kc_args_bool(a, "from_logits", 0, &m->from_logits, e))) return rc;
    if ((rc = kc_args_bool(a, "multi_label", 0, &multi, e))) return rc;
    if (multi)
        return kc_node_fail(e, kc_args_node(a, "multi_label"),
                            "AUC argument 'multi_label': one AUC per label is not supported by "
                            "kerasc; remove it to treat every output as one more prediction");
    if (kc_args_has(a, "num_labels"))
        return kc_node_fail(e, kc_args_node(a, "num_labels"),
                            "AUC argument 'num_labels' is needed only when multi_label is true");
    if (kc_args_has(a, "label_weights"))
        return kc_node_fail(e, kc_args_node(a, "label_weights"),
                            "AUC argument 'label_weights' is not supported by kerasc");
    return read_auc_thresholds(a, m, e);
}

static int read_args(kc_args *a, kc_metric *m, const metric_entry *t, int pred_cols, kc_error *e) {
    const char *s;
    int rc = kc_args_str(a, "name", 0, t->default_name, &s, e);
    if (rc) return rc;
    snprintf(m->name, sizeof m->name, "%s", s);
    if ((rc = kc_args_str(a, "dtype", 0, "float32", &s, e))) return rc;
    if (strcmp(s, "float32"))
        return kc_node_fail(e, kc_args_node(a, "dtype"),
                            "%s argument 'dtype': only float32 is supported, got '%s'", a->owner,
                            s);
    switch (m->kind) {
    case KC_METRIC_BINARY_ACCURACY: {
        double th;
        if ((rc = kc_args_float(a, "threshold", 0, 0.5, -INFINITY, INFINITY, &th, e))) return rc;
        m->threshold = (float)th;
        break;
    }
    case KC_METRIC_TOP_K_CATEGORICAL_ACCURACY:
    case KC_METRIC_SPARSE_TOP_K_CATEGORICAL_ACCURACY:
        rc = read_k(a, m, e);
        break;
    case KC_METRIC_COSINE_SIMILARITY: {
        long long axis;
        rc = kc_args_int(a, "axis", 0, -1, -(1LL << 31), 1LL << 31, &axis, e);
        if (!rc && axis != -1)
            rc = kc_node_fail(e, kc_args_node(a, "axis"),
                              "CosineSimilarity argument 'axis': only -1 (the last axis) is "
                              "supported, got %lld",
                              axis);
        break;
    }
    case KC_METRIC_PRECISION:
    case KC_METRIC_RECALL:
        rc = read_precision_recall(a, m, pred_cols, e);
        break;
    case KC_METRIC_AUC:
        rc = read_auc(a, m, e);
        break;
    default:
        break;
    }
    if (rc) return rc;
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
    if ((rc = read_args(&a, out, t, pred_cols, e))) return rc;
    return check_layout(out, node, pred_cols, sparse, e);
}

int kc_metric_init(kc_metric *out, const char *name, int pred_cols, int sparse_targets,
                   kc_error *e) {
    return from_string(out, name, NULL, pred_cols, sparse_targets && pred_cols > 1, e);
}

void kc_metric_reset(kc_metric *m) {
    m->total = m->count = 0;
    m->pos = m->neg = 0;
    if (is_confusion(m->kind)) {
        int n = m->kind == KC_METRIC_AUC ? m->nthresholds : 1;
        memset(m->tp, 0, (size_t)n * sizeof *m->tp);
        memset(m->fp, 0, (size_t)n * sizeof *m->fp);
    }
}

/* ---- running means ---- */

/* First index of the largest value, as numpy/TensorFlow argmax. */
static int argmax(const float *x, int c) {
    int best = 0;
    for (int j = 1; j < c; j++)
        if (x[j] > x[best]) best = j;
    return best;
}

/* TensorFlow's in_top_k: fewer than k classes score strictly higher, so
 * classes tied at the k-th place all count; a non-finite score or an
 * out-of-range class never does. */
static int in_top_k(const float *p, int c, double target, int k) {
    if (!(target >= 0 && target < c) || target != floor(target)) return 0;
    float v = p[(int)target];
    if (!isfinite(v)) return 0;
    int higher = 0;
    for (int j = 0; j < c; j++)
        higher += p[j] > v;
    return higher < k;
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
    case KC_METRIC_TOP_K_CATEGORICAL_ACCURACY:
        return in_top_k(p, c, argmax(t, c), m->k);
    case KC_METRIC_SPARSE_TOP_K_CATEGORICAL_ACCURACY:
        return in_top_k(p, c, t[0], m->k);
    default:
        return 0;
    }
}

/* ---- confusion counts ---- */

#define NEG_INF_SCORE (-1e10f) /* Keras's NEG_INF for predictions outside top_k */

/* Is column j among the top_k of its row? TensorFlow's top_k keeps exactly
 * k, the lower index first among ties. */
static int kept_by_top_k(const float *p, int c, int j, int k) {
    int ahead = 0;
    for (int i = 0; i < c && ahead < k; i++)
        ahead += p[i] > p[j] || (p[i] == p[j] && i < j);
    return ahead < k;
}

static void update_precision_recall(kc_metric *m, const float *pred, const float *target, int n,
                                    int c) {
    int j0 = m->class_id >= 0 ? m->class_id : 0, j1 = m->class_id >= 0 ? m->class_id + 1 : c;
    double tp = 0, fp = 0, pos = 0, neg = 0;
    for (int i = 0; i < n; i++) {
        const float *p = pred + (size_t)i * c, *t = target + (size_t)i * c;
        for (int j = j0; j < j1; j++) {
            float v = m->top_k && !kept_by_top_k(p, c, j, m->top_k) ? NEG_INF_SCORE : p[j];
            int label = t[j] != 0.0f, positive = v > m->threshold;
            tp += label && positive;
            fp += !label && positive;
            pos += label;
            neg += !label;
        }
    }
    m->tp[0] += tp;
    m->fp[0] += fp;
    m->pos += pos;
    m->neg += neg;
}

static double sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double ez = exp(z);
    return ez / (1.0 + ez);
}

/* The bucket of one prediction: positive at thresholds 0..b, negative
 * above; -1 when positive at none (it still counts among the labels). */
static int auc_bucket(const kc_metric *m, float p) {
    int n = m->nthresholds;
    if (m->evenly) {
        /* Keras's optimised path: clip to [0, 1], then ceil(p (n - 1)) - 1
         * in float32, lifted to 0 for the -eps end point */
        if (isnan(p)) return -1;
        float pc = p < 0.0f ? 0.0f : p > 1.0f ? 1.0f : p;
        int b = (int)ceilf(pc * (float)(n - 1)) - 1;
        return b < 0 ? 0 : b;
    }
    int lo = 0, hi = n; /* the number of thresholds strictly below p */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (p > m->thresholds[mid])
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

static void update_auc(kc_metric *m, const float *pred, const float *target, size_t total) {
    for (size_t i = 0; i < total; i++) {
        float p = m->from_logits ? (float)sigmoid(pred[i]) : pred[i];
        int label = target[i] != 0.0f, b = auc_bucket(m, p);
        if (label)
            m->pos += 1;
        else
            m->neg += 1;
        if (b < 0) continue;
        if (label)
            m->tp[b] += 1;
        else
            m->fp[b] += 1;
    }
}

void kc_metric_update(kc_metric *m, const float *pred, const float *target, int n, int c) {
    if (n <= 0 || c <= 0) return;
    if (m->kind == KC_METRIC_PRECISION || m->kind == KC_METRIC_RECALL) {
        update_precision_recall(m, pred, target, n, c);
        return;
    }
    if (m->kind == KC_METRIC_AUC) {
        update_auc(m, pred, target, (size_t)n * (size_t)c);
        return;
    }
    if (m->loss.cls) { /* a loss function's per-sample values, summed */
        double sum = kc_loss_compute(&m->loss, pred, target, n, c, 0, NULL, NULL);
        m->total += m->kind == KC_METRIC_COSINE_SIMILARITY ? -sum : sum;
        m->count += n;
        return;
    }
    size_t tstride = kc_metric_sparse_targets(m) ? 1 : (size_t)c;
    for (int i = 0; i < n; i++)
        m->total += row_value(m, pred + (size_t)i * (size_t)c, target + (size_t)i * tstride, c);
    m->count += n;
}

/* ---- results ---- */

static double div_no_nan(double a, double b) {
    return b == 0.0 ? 0.0 : a / b;
}

/* Keras's AUC.interpolate_pr_auc (Davis & Goadrich): precision interpolated
 * through true and false positives, not linearly. tp/fp are cumulative. */
static double pr_auc_interpolated(const double *tp, const double *fp, double pos, int n) {
    double sum = 0;
    for (int i = 0; i + 1 < n; i++) {
        double dtp = tp[i] - tp[i + 1];
        double p0 = tp[i] + fp[i], p1 = tp[i + 1] + fp[i + 1];
        double slope = div_no_nan(dtp, fmax(p0 - p1, 0.0));
        double intercept = tp[i + 1] - slope * p1;
        double ratio = p0 > 0 && p1 > 0 ? div_no_nan(p0, fmax(p1, 0.0)) : 1.0;
        double fn1 = pos - tp[i + 1];
        sum += div_no_nan(slope * (dtp + intercept * log(ratio)), fmax(tp[i + 1] + fn1, 0.0));
    }
    return sum;
}

static double auc_result(const kc_metric *m) {
    int n = m->nthresholds;
    double tp[KC_METRIC_MAX_THRESHOLDS], fp[KC_METRIC_MAX_THRESHOLDS];
    double ctp = 0, cfp = 0; /* positive at threshold i: buckets i and above */
    for (int i = n - 1; i >= 0; i--) {
        ctp += m->tp[i];
        cfp += m->fp[i];
        tp[i] = ctp;
        fp[i] = cfp;
    }
    if (m->curve == KC_AUC_PR && m->summation == KC_AUC_INTERPOLATION)
        return pr_auc_interpolated(tp, fp, m->pos, n);
    double sum = 0, x0 = 0, y0 = 0;
    for (int i = 0; i < n; i++) {
        double fn = m->pos - tp[i], tn = m->neg - fp[i];
        double recall = div_no_nan(tp[i], tp[i] + fn), x, y;
        if (m->curve == KC_AUC_ROC) {
            x = div_no_nan(fp[i], fp[i] + tn);
            y = recall;
        } else {
            x = recall;
            y = div_no_nan(tp[i], tp[i] + fp[i]);
        }
        if (i > 0) {
            double h = m->summation == KC_AUC_INTERPOLATION ? (y0 + y) / 2.0
                       : m->summation == KC_AUC_MINORING    ? fmin(y0, y)
                                                            : fmax(y0, y);
            sum += (x0 - x) * h;
        }
        x0 = x;
        y0 = y;
    }
    return sum;
}

double kc_metric_result(const kc_metric *m) {
    switch (m->kind) {
    case KC_METRIC_PRECISION:
        return div_no_nan(m->tp[0], m->tp[0] + m->fp[0]);
    case KC_METRIC_RECALL:
        return div_no_nan(m->tp[0], m->pos);
    case KC_METRIC_AUC:
        return auc_result(m);
    default:
        return m->count > 0 ? m->total / m->count : 0.0;
    }
}

const char *kc_metric_name(const kc_metric *m) {
    return m->name[0] ? m->name : kind_name(m->kind);
}

int kc_metric_sparse_targets(const kc_metric *m) {
    return is_sparse_kind(m->kind);
}

int kc_metric_direction(const kc_metric *m) {
    switch (m->kind) {
    case KC_METRIC_MEAN_SQUARED_ERROR:
    case KC_METRIC_MEAN_ABSOLUTE_ERROR:
    case KC_METRIC_MEAN_ABSOLUTE_PERCENTAGE_ERROR:
    case KC_METRIC_MEAN_SQUARED_LOGARITHMIC_ERROR:
    case KC_METRIC_LOG_COSH_ERROR:
    case KC_METRIC_POISSON:
    case KC_METRIC_HINGE:
    case KC_METRIC_SQUARED_HINGE:
    case KC_METRIC_CATEGORICAL_HINGE:
        return -1;
    default:
        return 1;
    }
}

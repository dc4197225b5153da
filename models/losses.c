#include "models/losses.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef enum loss_kind {
    LOSS_MSE,
    LOSS_MAE,
    LOSS_CATEGORICAL,
    LOSS_SPARSE,
    LOSS_BINARY,
    LOSS_KLD,
    LOSS_MAPE,
    LOSS_MSLE,
    LOSS_HUBER,
    LOSS_LOG_COSH,
    LOSS_HINGE,
    LOSS_SQUARED_HINGE,
    LOSS_CATEGORICAL_HINGE,
    LOSS_POISSON,
    LOSS_COSINE,
} loss_kind;

struct kc_loss_class {
    loss_kind kind;
    const char *fn_name; /* Keras's function name, also the class's default name */
    const char *class_name;
    const char *const *aliases; /* NULL-terminated or NULL */
    int has_logits;             /* takes from_logits */
    int has_smoothing;          /* takes label_smoothing and axis */
    const char *default_name;   /* the class's name when it differs from fn_name */
};

static const char *const mse_aliases[] = {"mse", "MSE", NULL};
static const char *const mae_aliases[] = {"mae", "MAE", NULL};
static const char *const bce_aliases[] = {"bce", "BCE", NULL};
/* kullback_leibler_divergence is the Keras 2 function name */
static const char *const kld_aliases[] = {"kld", "KLD", "kullback_leibler_divergence", NULL};
static const char *const mape_aliases[] = {"mape", "MAPE", NULL};
static const char *const msle_aliases[] = {"msle", "MSLE", NULL};
/* logcosh is the Keras 2 function name (Keras 3's legacy alias) */
static const char *const log_cosh_aliases[] = {"logcosh", NULL};

static const struct kc_loss_class loss_classes[] = {
    {LOSS_MSE, "mean_squared_error", "MeanSquaredError", mse_aliases, 0, 0, NULL},
    {LOSS_MAE, "mean_absolute_error", "MeanAbsoluteError", mae_aliases, 0, 0, NULL},
    {LOSS_CATEGORICAL, "categorical_crossentropy", "CategoricalCrossentropy", NULL, 1, 1, NULL},
    {LOSS_SPARSE, "sparse_categorical_crossentropy", "SparseCategoricalCrossentropy", NULL, 1, 0,
     NULL},
    {LOSS_BINARY, "binary_crossentropy", "BinaryCrossentropy", bce_aliases, 1, 1, NULL},
    {LOSS_KLD, "kl_divergence", "KLDivergence", kld_aliases, 0, 0, NULL},
    {LOSS_MAPE, "mean_absolute_percentage_error", "MeanAbsolutePercentageError", mape_aliases, 0, 0,
     NULL},
    {LOSS_MSLE, "mean_squared_logarithmic_error", "MeanSquaredLogarithmicError", msle_aliases, 0, 0,
     NULL},
    {LOSS_HUBER, "huber", "Huber", NULL, 0, 0, "huber_loss"},
    {LOSS_LOG_COSH, "log_cosh", "LogCosh", log_cosh_aliases, 0, 0, NULL},
    {LOSS_HINGE, "hinge", "Hinge", NULL, 0, 0, NULL},
    {LOSS_SQUARED_HINGE, "squared_hinge", "SquaredHinge", NULL, 0, 0, NULL},
    {LOSS_CATEGORICAL_HINGE, "categorical_hinge", "CategoricalHinge", NULL, 0, 0, NULL},
    {LOSS_POISSON, "poisson", "Poisson", NULL, 0, 0, NULL},
    {LOSS_COSINE, "cosine_similarity", "CosineSimilarity", NULL, 0, 0, NULL},
};
#define NCLASSES (sizeof loss_classes / sizeof loss_classes[0])

const char *const kc_loss_names[] = {
    "mean_squared_error",
    "MeanSquaredError",
    "mse",
    "MSE",
    "mean_absolute_error",
    "MeanAbsoluteError",
    "mae",
    "MAE",
    "categorical_crossentropy",
    "CategoricalCrossentropy",
    "sparse_categorical_crossentropy",
    "SparseCategoricalCrossentropy",
    "binary_crossentropy",
    "BinaryCrossentropy",
    "bce",
    "BCE",
    "kl_divergence",
    "KLDivergence",
    "kld",
    "KLD",
    "kullback_leibler_divergence",
    "mean_absolute_percentage_error",
    "MeanAbsolutePercentageError",
    "mape",
    "MAPE",
    "mean_squared_logarithmic_error",
    "MeanSquaredLogarithmicError",
    "msle",
    "MSLE",
    "huber",
    "Huber",
    "log_cosh",
    "LogCosh",
    "logcosh",
    "hinge",
    "Hinge",
    "squared_hinge",
    "SquaredHinge",
    "categorical_hinge",
    "CategoricalHinge",
    "poisson",
    "Poisson",
    "cosine_similarity",
    "CosineSimilarity",
    NULL,
};

/* Names are case-sensitive, as in Keras's lookup table. */
static const struct kc_loss_class *find_class(const char *name) {
    for (size_t i = 0; i < NCLASSES; i++) {
        const struct kc_loss_class *k = &loss_classes[i];
        if (!strcmp(name, k->fn_name) || !strcmp(name, k->class_name)) return k;
        for (const char *const *a = k->aliases; a && *a; a++)
            if (!strcmp(name, *a)) return k;
    }
    return NULL;
}

/* ---- object specs shared with metrics and optimizers ---- */

int kc_unknown_name(const kc_node *at, const char *what, const char *name, const char *const *names,
                    kc_error *e) {
    size_t n = 0;
    while (names[n])
        n++;
    const char *near = kc_closest(name, names, n);
    if (near) return kc_node_fail(e, at, "unknown %s '%s' (did you mean '%s'?)", what, name, near);
    char list[1024] = "";
    size_t used = 0;
    for (size_t i = 0; i < n && used < sizeof list - 80; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", names[i]);
    return kc_node_fail(e, at, "unknown %s '%s' (valid: %s)", what, name, list);
}

static int spec_with_class_name(kc_node *node, kc_node *cn, const char *what, const char **name,
                                const kc_node **name_node, kc_args *args, kc_error *e) {
    if (cn->kind != KC_NODE_SCALAR || kc_node_is_null(cn))
        return kc_node_fail(e, cn, "%s class_name must be a string, got %s", what,
                            kc_node_kind_name(cn));
    *name = cn->str;
    *name_node = cn;
    kc_node *cfg = kc_map_get(node, "config");
    if (!cfg) {
        kc_args_init(args, node, node, what);
        kc_args_node(args, "class_name");
        return KC_OK;
    }
    if (!kc_node_is_null(cfg) && cfg->kind != KC_NODE_MAP)
        return kc_node_fail(e, cfg, "%s config must be a mapping of arguments, got %s", what,
                            kc_node_kind_name(cfg));
    /* Keras's serialized objects carry these beside config */
    kc_map_get(node, "module");
    kc_map_get(node, "registered_name");
    static const char *const outer[] = {"class_name", "config", "module", "registered_name", NULL};
    char where[96];
    snprintf(where, sizeof where, "the %s", what);
    int rc = kc_map_check_unused(node, where, outer, e);
    if (rc) return rc;
    kc_args_init(args, cfg->kind == KC_NODE_MAP ? cfg : NULL, cn, what);
    return KC_OK;
}

int kc_object_spec(kc_node *node, const char *what, const char **name, const kc_node **name_node,
                   kc_args *args, kc_error *e) {
    kc_args_init(args, NULL, node, what);
    *name = NULL;
    *name_node = node;
    if (!node) return kc_fail(e, KC_ECONFIG, "no %s given", what);
    if (node->kind == KC_NODE_SCALAR) {
        if (kc_node_is_null(node))
            return kc_node_fail(e, node, "expected a %s name, got null", what);
        *name = node->str;
        return KC_OK;
    }
    if (node->kind != KC_NODE_MAP)
        return kc_node_fail(e, node, "expected a %s name or a mapping with class_name, got %s",
                            what, kc_node_kind_name(node));
    kc_node *cn = kc_map_get(node, "class_name");
    if (cn) return spec_with_class_name(node, cn, what, name, name_node, args, e);
    if (node->n != 1)
        return kc_node_fail(e, node,
                            "expected a %s name, {class_name: Name, argument: value, ...} or "
                            "{Name: {argument: value, ...}}; this mapping has %zu keys and no "
                            "class_name",
                            what, node->n);
    kc_node *key = kc_map_key(node, 0), *val = kc_map_val(node, 0);
    key->used = 1;
    if (!kc_node_is_null(val) && val->kind != KC_NODE_MAP)
        return kc_node_fail(e, val, "the arguments of %s '%s' must be a mapping, got %s", what,
                            key->str, kc_node_kind_name(val));
    *name = key->str;
    *name_node = key;
    kc_args_init(args, val->kind == KC_NODE_MAP ? val : NULL, key, what);
    return KC_OK;
}

/* ---- parsing ---- */

static void loss_defaults(kc_loss *l, const struct kc_loss_class *k, const char *name) {
    memset(l, 0, sizeof *l);
    l->cls = k;
    l->reduction = KC_REDUCTION_SUM_OVER_BATCH_SIZE;
    l->delta = 1.0;
    snprintf(l->name, sizeof l->name, "%s", name);
}

int kc_loss_init(kc_loss *out, const char *name, kc_error *e) {
    const struct kc_loss_class *k = find_class(name);
    if (!k) return kc_unknown_name(NULL, "loss", name, kc_loss_names, e);
    loss_defaults(out, k, name);
    return KC_OK;
}

static int read_reduction(kc_args *a, kc_loss *l, kc_error *e) {
    static const char *const choices[] = {"sum_over_batch_size",     "sum",  "mean",
                                          "mean_with_sample_weight", "none", NULL};
    int r;
    int rc = kc_args_enum(a, "reduction", "sum_over_batch_size", choices, &r, e);
    if (rc) return rc;
    if (r == 4)
        return kc_node_fail(e, kc_args_node(a, "reduction"),
                            "%s argument 'reduction': 'none' leaves one loss per sample, which "
                            "training cannot minimise; use 'sum_over_batch_size' (the default) "
                            "or 'sum'",
                            a->owner);
    l->reduction = (kc_reduction)r;
    return KC_OK;
}

static int read_common(kc_args *a, kc_loss *l, kc_error *e) {
    const char *s;
    const char *def = l->cls->default_name ? l->cls->default_name : l->cls->fn_name;
    int rc = kc_args_str(a, "name", 0, def, &s, e);
    if (rc) return rc;
    snprintf(l->name, sizeof l->name, "%s", s);
    if ((rc = read_reduction(a, l, e))) return rc;
    const char *dtype;
    if ((rc = kc_args_str(a, "dtype", 0, "float32", &dtype, e))) return rc;
    if (strcmp(dtype, "float32"))
        return kc_node_fail(e, kc_args_node(a, "dtype"),
                            "%s argument 'dtype': only float32 is supported, got '%s'", a->owner,
                            dtype);
    return KC_OK;
}

/* The class axis: Keras's default, -1, is the only one kerasc takes. */
static int read_last_axis(kc_args *a, kc_error *e) {
    long long axis;
    int rc = kc_args_int(a, "axis", 0, -1, -(1LL << 31), 1LL << 31, &axis, e);
    if (rc) return rc;
    if (axis != -1)
        return kc_node_fail(e, kc_args_node(a, "axis"),
                            "%s argument 'axis': only -1 (the last, class axis) is "
                            "supported, got %lld",
                            a->owner, axis);
    return KC_OK;
}

static int read_delta(kc_args *a, kc_loss *l, kc_error *e) {
    int rc = kc_args_float(a, "delta", 0, 1.0, 0.0, INFINITY, &l->delta, e);
    if (rc) return rc;
    if (!(l->delta > 0.0) || !isfinite(l->delta))
        return kc_node_fail(e, kc_args_node(a, "delta"),
                            "%s argument 'delta' must be a positive number, got %g", a->owner,
                            l->delta);
    return KC_OK;
}

static int read_class_args(kc_args *a, kc_loss *l, kc_error *e) {
    const struct kc_loss_class *k = l->cls;
    int rc;
    if (k->has_logits && (rc = kc_args_bool(a, "from_logits", 0, &l->from_logits, e))) return rc;
    if (k->has_smoothing) {
        double ls;
        if ((rc = kc_args_float(a, "label_smoothing", 0, 0.0, 0.0, 1.0, &ls, e))) return rc;
        l->label_smoothing = (float)ls;
        if ((rc = read_last_axis(a, e))) return rc;
    }
    if (k->kind == LOSS_COSINE && (rc = read_last_axis(a, e))) return rc;
    if (k->kind == LOSS_HUBER && (rc = read_delta(a, l, e))) return rc;
    if (k->kind == LOSS_SPARSE && kc_args_has(a, "ignore_class"))
        return kc_node_fail(e, kc_args_node(a, "ignore_class"),
                            "%s argument 'ignore_class' is not supported; remove it or set it "
                            "to null",
                            a->owner);
    return KC_OK;
}

int kc_loss_parse(kc_node *node, kc_loss *out, kc_error *e) {
    const char *name;
    const kc_node *at;
    kc_args a;
    int rc = kc_object_spec(node, "loss", &name, &at, &a, e);
    if (rc) return rc;
    const struct kc_loss_class *k = find_class(name);
    if (!k) return kc_unknown_name(at, "loss", name, kc_loss_names, e);
    loss_defaults(out, k, name);
    if (node->kind == KC_NODE_SCALAR) return KC_OK; /* Keras keeps the string as the name */
    a.owner = k->class_name;
    if ((rc = read_common(&a, out, e))) return rc;
    if ((rc = read_class_args(&a, out, e))) return rc;
    return kc_args_finish(&a, e);
}

/* ---- properties ---- */

const char *kc_loss_class_name(const kc_loss *l) {
    return l->cls->class_name;
}

int kc_loss_sparse_targets(const kc_loss *l) {
    return l->cls->kind == LOSS_SPARSE;
}

int kc_loss_has_logits_form(const kc_loss *l) {
    return l->cls->has_logits;
}

kc_act kc_loss_logits_activation(const kc_loss *l) {
    switch (l->cls->kind) {
    case LOSS_CATEGORICAL:
    case LOSS_SPARSE:
        return KC_ACT_SOFTMAX;
    case LOSS_BINARY:
        return KC_ACT_SIGMOID;
    default:
        return KC_ACT_LINEAR;
    }
}

/* A sparse label as an index, or -1 when it is not a whole number in [0, c). */
static int label_index(float t, int c) {
    if (!(t >= 0.0f) || !(t < (float)c) || t != floorf(t)) return -1;
    return (int)t;
}

int kc_loss_check_targets(const kc_loss *l, const float *target, int n, int c, kc_error *e) {
    if (l->cls->kind != LOSS_SPARSE) return KC_OK;
    for (int i = 0; i < n; i++)
        if (label_index(target[i], c) < 0)
            return kc_fail(e, KC_ECONFIG,
                           "%s: label %g of sample %d is outside [0, %d): the model has %d "
                           "output classes and sparse labels must be class indices",
                           l->cls->fn_name, (double)target[i], i, c, c);
    return KC_OK;
}

/* ---- per-row values and gradients ----
 * Each returns one sample's value and, when g is set, writes s times the
 * gradient of that value (s carries the reduction's 1/n). */

static double clip(double x, double lo, double hi) {
    return x < lo ? lo : x > hi ? hi : x;
}
/* tf.clip_by_value passes the gradient at the bounds and blocks it outside */
static int inside(double x, double lo, double hi) {
    return x >= lo && x <= hi;
}

static double smooth(const kc_loss *l, double t, double uniform) {
    double ls = l->label_smoothing;
    return ls ? t * (1.0 - ls) + ls * uniform : t;
}

static double row_mse(const float *p, const float *t, int c, float *g, double s) {
    double sum = 0;
    for (int j = 0; j < c; j++) {
        double d = (double)p[j] - t[j];
        sum += d * d;
        if (g) g[j] = (float)(s * 2.0 * d / c);
    }
    return sum / c;
}

static double row_mae(const float *p, const float *t, int c, float *g, double s) {
    double sum = 0;
    for (int j = 0; j < c; j++) {
        double d = (double)p[j] - t[j];
        sum += fabs(d);
        if (g) g[j] = (float)(s * (d > 0 ? 1.0 : d < 0 ? -1.0 : 0.0) / c);
    }
    return sum / c;
}

/* Returns the max and writes sum exp(z - max), for a stable log-sum-exp. */
static double softmax_terms(const float *z, int c, double *sum_exp) {
    double m = z[0];
    for (int j = 1; j < c; j++)
        if (z[j] > m) m = z[j];
    double se = 0;
    for (int j = 0; j < c; j++)
        se += exp((double)z[j] - m);
    *sum_exp = se;
    return m;
}

static double row_categorical_logits(const kc_loss *l, const float *z, const float *t, int c,
                                     float *g, double s) {
    double se, m = softmax_terms(z, c, &se);
    double lse = m + log(se), loss = 0, tsum = 0;
    for (int j = 0; j < c; j++) {
        double tj = smooth(l, t[j], 1.0 / c);
        loss += tj * (lse - z[j]);
        tsum += tj;
    }
    if (g)
        for (int j = 0; j < c; j++)
            g[j] = (float)(s * (exp((double)z[j] - m) / se * tsum - smooth(l, t[j], 1.0 / c)));
    return loss;
}

/* Keras: p / sum(p), clipped, then -sum t ln p. The gradient flows back
 * through the normalisation. */
static double row_categorical_probs(const kc_loss *l, const float *p, const float *t, int c,
                                    float *g, double s) {
    const double eps = KC_LOSS_EPSILON;
    double sum = 0;
    for (int j = 0; j < c; j++)
        sum += p[j];
    double loss = 0, dot = 0; /* dot = sum_j dL/dq_j q_j */
    for (int j = 0; j < c; j++) {
        double q = p[j] / sum, qc = clip(q, eps, 1 - eps), tj = smooth(l, t[j], 1.0 / c);
        loss -= tj * log(qc);
        if (inside(q, eps, 1 - eps)) dot += -tj / qc * q;
    }
    if (g)
        for (int j = 0; j < c; j++) {
            double q = p[j] / sum, tj = smooth(l, t[j], 1.0 / c);
            double dq = inside(q, eps, 1 - eps) ? -tj / q : 0.0;
            g[j] = (float)(s * (dq - dot) / sum);
        }
    return loss;
}

static double row_sparse_logits(const float *z, int y, int c, float *g, double s) {
    double se, m = softmax_terms(z, c, &se);
    if (g)
        for (int j = 0; j < c; j++)
            g[j] = (float)(s * (exp((double)z[j] - m) / se - (j == y)));
    return m + log(se) - z[y];
}

/* TensorFlow's path: clip, take logs, then a softmax crossentropy on them,
 * which renormalises the clipped probabilities: ln(sum q) - ln q_y. */
static double row_sparse_probs(const float *p, int y, int c, float *g, double s) {
    const double eps = KC_LOSS_EPSILON;
    double sum = 0;
    for (int j = 0; j < c; j++)
        sum += clip(p[j], eps, 1 - eps);
    double qy = clip(p[y], eps, 1 - eps);
    if (g)
        for (int j = 0; j < c; j++) {
            double q = clip(p[j], eps, 1 - eps);
            g[j] = inside(p[j], eps, 1 - eps) ? (float)(s * (1.0 / sum - (j == y) / q)) : 0.0f;
        }
    return log(sum) - log(qy);
}

static double sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double ez = exp(z);
    return ez / (1.0 + ez);
}

static double row_binary(const kc_loss *l, const float *p, const float *t, int c, int logits,
                         float *g, double s) {
    const double eps = KC_LOSS_EPSILON;
    double sum = 0;
    for (int j = 0; j < c; j++) {
        double tj = smooth(l, t[j], 0.5), x = p[j];
        if (logits) {
            sum += (x > 0 ? x : 0) - x * tj + log1p(exp(-fabs(x)));
            if (g) g[j] = (float)(s * (sigmoid(x) - tj) / c);
        } else {
            double pc = clip(x, eps, 1 - eps);
            sum -= tj * log(pc) + (1 - tj) * log(1 - pc);
            if (g)
                g[j] = inside(x, eps, 1 - eps) ? (float)(s * (-tj / pc + (1 - tj) / (1 - pc)) / c)
                                               : 0.0f;
        }
    }
    return sum / c;
}

static double row_kld(const float *p, const float *t, int c, float *g, double s) {
    const double eps = KC_LOSS_EPSILON;
    double sum = 0;
    for (int j = 0; j < c; j++) {
        double tc = clip(t[j], eps, 1), pc = clip(p[j], eps, 1);
        sum += tc * log(tc / pc);
        if (g) g[j] = inside(p[j], eps, 1) ? (float)(s * -tc / pc) : 0.0f;
    }
    return sum;
}

/* Keras: 100 mean(|t - p| / max(|t|, eps)). */
static double row_mape(const float *p, const float *t, int c, float *g, double s) {
    double sum = 0;
    for (int j = 0; j < c; j++) {
        double d = (double)t[j] - p[j], den = fmax(fabs((double)t[j]), KC_LOSS_EPSILON);
        sum += fabs(d) / den;
        if (g) g[j] = (float)(s * 100.0 * (d > 0 ? -1.0 : d < 0 ? 1.0 : 0.0) / den / c);
    }
    return 100.0 * sum / c;
}

/* Keras: mean((ln(max(p, eps) + 1) - ln(max(t, eps) + 1))^2). */
static double row_msle(const float *p, const float *t, int c, float *g, double s) {
    const double eps = KC_LOSS_EPSILON;
    double sum = 0;
    for (int j = 0; j < c; j++) {
        double pc = fmax((double)p[j], eps);
        double d = log1p(pc) - log1p(fmax((double)t[j], eps));
        sum += d * d;
        /* max(p, eps) passes the gradient to p when p >= eps */
        if (g) g[j] = p[j] >= eps ? (float)(s * 2.0 * d / (pc + 1.0) / c) : 0.0f;
    }
    return sum / c;
}

static double row_huber(const kc_loss *l, const float *p, const float *t, int c, float *g,
                        double s) {
    double delta = l->delta, sum = 0;
    for (int j = 0; j < c; j++) {
        double e = (double)p[j] - t[j], a = fabs(e);
        if (a <= delta) {
            sum += 0.5 * e * e;
            if (g) g[j] = (float)(s * e / c);
        } else {
            sum += delta * a - 0.5 * delta * delta;
            if (g) g[j] = (float)(s * delta * (e > 0 ? 1.0 : -1.0) / c);
        }
    }
    return sum / c;
}

/* Keras: x + softplus(-2x) - ln 2 = ln cosh x, stable for large |x|. */
static double row_log_cosh(const float *p, const float *t, int c, float *g, double s) {
    double sum = 0;
    for (int j = 0; j < c; j++) {
        double x = (double)p[j] - t[j], z = -2.0 * x;
        sum += x + (z > 0 ? z : 0.0) + log1p(exp(-fabs(z))) - M_LN2;
        if (g) g[j] = (float)(s * tanh(x) / c);
    }
    return sum / c;
}

/* Keras's convert_binary_labels_to_hinge: all targets of the call in {0, 1}. */
static int all_binary(const float *t, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (t[i] != 0.0f && t[i] != 1.0f) return 0;
    return 1;
}

static double row_hinge(const float *p, const float *t, int c, int binary, int squared, float *g,
                        double s) {
    double sum = 0;
    for (int j = 0; j < c; j++) {
        double tt = binary ? 2.0 * t[j] - 1.0 : t[j], m = 1.0 - tt * p[j];
        double h = m > 0 ? m : 0.0;
        sum += squared ? h * h : h;
        /* max(m, 0) passes the gradient to m when m >= 0 */
        if (g) g[j] = m >= 0 ? (float)(s * (squared ? 2.0 * h : 1.0) * -tt / c) : 0.0f;
    }
    return sum / c;
}

/* Keras: max(max_j (1 - t_j) p_j - sum_j t_j p_j + 1, 0). */
static double row_categorical_hinge(const float *p, const float *t, int c, float *g, double s) {
    double pos = 0, neg = -INFINITY;
    for (int j = 0; j < c; j++) {
        pos += (double)t[j] * p[j];
        double q = (1.0 - t[j]) * p[j];
        if (q > neg) neg = q;
    }
    double v = neg - pos + 1.0;
    if (g) {
        int ties = 0;
        for (int j = 0; j < c; j++)
            ties += (1.0 - t[j]) * p[j] == neg;
        for (int j = 0; j < c; j++) {
            /* a max shares its gradient among ties, as TensorFlow's reduce_max */
            double dq = (1.0 - t[j]) * p[j] == neg ? (1.0 - t[j]) / ties : 0.0;
            g[j] = v >= 0 ? (float)(s * (dq - t[j])) : 0.0f;
        }
    }
    return v > 0 ? v : 0.0;
}

/* Keras: mean(p - t ln(p + eps)); no clipping, so p <= -eps gives NaN there too. */
static double row_poisson(const float *p, const float *t, int c, float *g, double s) {
    double sum = 0;
    for (int j = 0; j < c; j++) {
        double pe = (double)p[j] + KC_LOSS_EPSILON;
        sum += p[j] - t[j] * log(pe);
        if (g) g[j] = (float)(s * (1.0 - t[j] / pe) / c);
    }
    return sum / c;
}

/* 1 / ||x|| capped at 1 / eps (Keras 3's normalize); *capped says the cap
 * applied, which stops the gradient through the norm. */
static double inverse_norm(const float *x, int c, int *capped) {
    double sq = 0;
    for (int j = 0; j < c; j++)
        sq += (double)x[j] * x[j];
    double inv = sq > 0 ? 1.0 / sqrt(sq) : INFINITY, cap = 1.0 / KC_LOSS_EPSILON;
    *capped = !(inv <= cap);
    return *capped ? cap : inv;
}

/* Keras: -sum(normalize(t) normalize(p)). */
static double row_cosine(const float *p, const float *t, int c, float *g, double s) {
    int tcap, pcap;
    double it = inverse_norm(t, c, &tcap), ip = inverse_norm(p, c, &pcap), dot = 0;
    for (int j = 0; j < c; j++)
        dot += (double)t[j] * p[j];
    if (g)
        for (int j = 0; j < c; j++) {
            double dn = pcap ? 0.0 : dot * p[j] * ip * ip;
            g[j] = (float)(s * -it * ip * (t[j] - dn));
        }
    return -it * ip * dot;
}

static double row_value(const kc_loss *l, const float *p, const float *t, int c, int logits,
                        int binary, float *g, double s) {
    switch (l->cls->kind) {
    case LOSS_MSE:
        return row_mse(p, t, c, g, s);
    case LOSS_MAE:
        return row_mae(p, t, c, g, s);
    case LOSS_CATEGORICAL:
        return logits ? row_categorical_logits(l, p, t, c, g, s)
                      : row_categorical_probs(l, p, t, c, g, s);
    case LOSS_SPARSE: {
        int y = label_index(t[0], c);
        if (y < 0) {
            if (g) memset(g, 0, (size_t)c * sizeof *g);
            return NAN;
        }
        return logits ? row_sparse_logits(p, y, c, g, s) : row_sparse_probs(p, y, c, g, s);
    }
    case LOSS_BINARY:
        return row_binary(l, p, t, c, logits, g, s);
    case LOSS_KLD:
        return row_kld(p, t, c, g, s);
    case LOSS_MAPE:
        return row_mape(p, t, c, g, s);
    case LOSS_MSLE:
        return row_msle(p, t, c, g, s);
    case LOSS_HUBER:
        return row_huber(l, p, t, c, g, s);
    case LOSS_LOG_COSH:
        return row_log_cosh(p, t, c, g, s);
    case LOSS_HINGE:
        return row_hinge(p, t, c, binary, 0, g, s);
    case LOSS_SQUARED_HINGE:
        return row_hinge(p, t, c, binary, 1, g, s);
    case LOSS_CATEGORICAL_HINGE:
        return row_categorical_hinge(p, t, c, g, s);
    case LOSS_POISSON:
        return row_poisson(p, t, c, g, s);
    case LOSS_COSINE:
        return row_cosine(p, t, c, g, s);
    }
    return NAN;
}

double kc_loss_compute(const kc_loss *l, const float *pred, const float *target, int n, int c,
                       int logits, float *per_sample, float *grad) {
    if (n <= 0 || c <= 0) return 0.0; /* Keras divides with divide_no_nan */
    double scale = l->reduction == KC_REDUCTION_SUM ? 1.0 : 1.0 / n;
    int use_logits = l->cls->has_logits && (logits || l->from_logits);
    int tstride = l->cls->kind == LOSS_SPARSE ? 1 : c;
    int hinge = l->cls->kind == LOSS_HINGE || l->cls->kind == LOSS_SQUARED_HINGE;
    int binary = hinge && all_binary(target, (size_t)n * (size_t)c);
    double total = 0;
    for (int i = 0; i < n; i++) {
        size_t row = (size_t)i * (size_t)c;
        double v = row_value(l, pred + row, target + (size_t)i * (size_t)tstride, c, use_logits,
                             binary, grad ? grad + row : NULL, scale);
        if (per_sample) per_sample[i] = (float)v;
        total += v;
    }
    return total * scale;
}

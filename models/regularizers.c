#include "models/regularizers.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models/layer.h"
#include "models/losses.h"

/* ---- regularizer names ---- */

typedef enum reg_kind { REG_L1, REG_L2, REG_L1L2, REG_NONE, REG_ORTHOGONAL } reg_kind;

typedef struct reg_entry {
    const char *name;  /* as Keras's lookup table spells it */
    const char *klass; /* the class it builds, for messages */
    reg_kind kind;
    double l1, l2; /* defaults */
} reg_entry;

/* Keras 3's regularizers.ALL_OBJECTS_DICT (class names and their snake_case
 * forms) plus "l1_l2", which Keras 3 documents - with factors 0.01 and 0.01,
 * as Keras 2 gave it - but no longer finds by name. */
static const reg_entry reg_table[] = {
    {"l1", "L1", REG_L1, 0.01, 0.0},
    {"L1", "L1", REG_L1, 0.01, 0.0},
    {"l2", "L2", REG_L2, 0.0, 0.01},
    {"L2", "L2", REG_L2, 0.0, 0.01},
    {"l1_l2", "L1L2", REG_L1L2, 0.01, 0.01},
    {"l1l2", "L1L2", REG_L1L2, 0.0, 0.0},
    {"L1L2", "L1L2", REG_L1L2, 0.0, 0.0},
    {"regularizer", "Regularizer", REG_NONE, 0.0, 0.0},
    {"Regularizer", "Regularizer", REG_NONE, 0.0, 0.0},
    {"orthogonal_regularizer", "OrthogonalRegularizer", REG_ORTHOGONAL, 0.0, 0.0},
    {"OrthogonalRegularizer", "OrthogonalRegularizer", REG_ORTHOGONAL, 0.0, 0.0},
};
#define NREG (sizeof reg_table / sizeof reg_table[0])

static const char *const reg_names[] = {"l1", "l2", "l1_l2", "L1", "L2", "L1L2", "l1l2", NULL};

static const reg_entry *find_reg(const char *name) {
    for (size_t i = 0; i < NREG; i++)
        if (!strcmp(reg_table[i].name, name)) return &reg_table[i];
    return NULL;
}

/* "unknown X 'y' (did you mean 'z'?)", or the valid names. */
static int unknown(const kc_node *at, const char *ctx, const char *what, const char *name,
                   const char *const *names, const char *valid, kc_error *e) {
    size_t n = 0;
    while (names[n])
        n++;
    const char *near = kc_closest(name, names, n);
    if (near)
        return kc_node_fail(e, at, "%sunknown %s '%s' (did you mean '%s'?)", ctx, what, name, near);
    return kc_node_fail(e, at, "%sunknown %s '%s' (valid: %s)", ctx, what, name, valid);
}

/* Keras's validate_float_arg: a finite number >= 0. */
static int read_factor(kc_args *a, const char *key, double def, double *out, kc_error *e) {
    int rc = kc_args_float(a, key, 0, def, 0.0, INFINITY, out, e);
    if (rc) return rc;
    if (!isfinite(*out))
        return kc_node_fail(e, kc_args_node(a, key), "%s argument '%s' must be a finite number",
                            a->owner, key);
    return KC_OK;
}

int kc_regularizer_parse(kc_node *node, const char *ctx, kc_regularizer *out, kc_error *e) {
    memset(out, 0, sizeof *out);
    if (!ctx) ctx = "";
    const char *name;
    const kc_node *at;
    kc_args a;
    int rc = kc_object_spec(node, "regularizer", &name, &at, &a, e);
    if (rc) return rc;
    const reg_entry *t = find_reg(name);
    if (!t)
        return unknown(at, ctx, "regularizer", name, reg_names, "l1, l2, l1_l2, L1, L2, L1L2", e);
    if (t->kind == REG_ORTHOGONAL)
        return kc_node_fail(e, at,
                            "%sOrthogonalRegularizer is not supported by kerasc (use l1, l2 or "
                            "l1_l2)",
                            ctx);
    out->l1 = t->l1;
    out->l2 = t->l2;
    if (node->kind == KC_NODE_SCALAR) return KC_OK;
    a.owner = t->klass;
    /* Keras turns a null factor into the class's default */
    if (t->kind == REG_L1 || t->kind == REG_L1L2) rc = read_factor(&a, "l1", t->l1, &out->l1, e);
    if (!rc && (t->kind == REG_L2 || t->kind == REG_L1L2))
        rc = read_factor(&a, "l2", t->l2, &out->l2, e);
    if (!rc) rc = kc_args_finish(&a, e);
    return rc;
}

int kc_args_regularizer(kc_args *a, const char *key, kc_regularizer *out, kc_error *e) {
    memset(out, 0, sizeof *out);
    kc_node *n = kc_args_node(a, key);
    if (!n || kc_node_is_null(n)) return KC_OK;
    char ctx[160];
    snprintf(ctx, sizeof ctx, "%s argument '%s': ", a->owner, key);
    return kc_regularizer_parse(n, ctx, out, e);
}

/* ---- constraint names ---- */

typedef struct con_entry {
    const char *name;
    const char *klass;
    kc_constraint_kind kind;
} con_entry;

/* Keras 3's constraints.ALL_OBJECTS_DICT, plus Keras 2's lower-case aliases
 * (maxnorm, nonneg, unitnorm). The base class Constraint is the identity. */
static const con_entry con_table[] = {
    {"max_norm", "MaxNorm", KC_CONSTRAINT_MAX_NORM},
    {"MaxNorm", "MaxNorm", KC_CONSTRAINT_MAX_NORM},
    {"maxnorm", "MaxNorm", KC_CONSTRAINT_MAX_NORM},
    {"min_max_norm", "MinMaxNorm", KC_CONSTRAINT_MIN_MAX_NORM},
    {"MinMaxNorm", "MinMaxNorm", KC_CONSTRAINT_MIN_MAX_NORM},
    {"non_neg", "NonNeg", KC_CONSTRAINT_NON_NEG},
    {"NonNeg", "NonNeg", KC_CONSTRAINT_NON_NEG},
    {"nonneg", "NonNeg", KC_CONSTRAINT_NON_NEG},
    {"unit_norm", "UnitNorm", KC_CONSTRAINT_UNIT_NORM},
    {"UnitNorm", "UnitNorm", KC_CONSTRAINT_UNIT_NORM},
    {"unitnorm", "UnitNorm", KC_CONSTRAINT_UNIT_NORM},
    {"constraint", "Constraint", KC_CONSTRAINT_NONE},
    {"Constraint", "Constraint", KC_CONSTRAINT_NONE},
};
#define NCON (sizeof con_table / sizeof con_table[0])

static const char *const con_names[] = {"max_norm",  "min_max_norm", "non_neg",
                                        "unit_norm", "MaxNorm",      "MinMaxNorm",
                                        "NonNeg",    "UnitNorm",     NULL};

static const con_entry *find_con(const char *name) {
    for (size_t i = 0; i < NCON; i++)
        if (!strcmp(con_table[i].name, name)) return &con_table[i];
    return NULL;
}

static void constraint_defaults(kc_constraint *c, kc_constraint_kind kind, const kc_node *at) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->node = at;
    c->naxes = 1; /* axis 0 */
    c->rate = 1.0;
    c->max_value = kind == KC_CONSTRAINT_MAX_NORM ? 2.0 : 1.0;
    c->min_value = 0.0;
}

static int axis_int(const kc_node *n, const char *owner, int *out, kc_error *e) {
    long long v;
    if (n->kind != KC_NODE_SCALAR || kc_node_int(n, &v, e) || v < -64 || v > 64)
        return kc_node_fail(e, n,
                            "%s argument 'axis': expected an axis (an integer such as 0 or -1), a "
                            "list of axes or null",
                            owner);
    *out = (int)v;
    return KC_OK;
}

/* axis: an integer, a list of integers, or null (the whole weight). */
static int read_axis(kc_args *a, kc_constraint *c, kc_error *e) {
    kc_node *n = kc_args_node(a, "axis");
    if (!n) return KC_OK;
    c->node = n;
    if (kc_node_is_null(n)) {
        c->all_axes = 1;
        c->naxes = 0;
        return KC_OK;
    }
    if (n->kind != KC_NODE_SEQ) return axis_int(n, a->owner, &c->axes[0], e);
    if (n->n > KC_MAX_RANK)
        return kc_node_fail(e, n, "%s argument 'axis': at most %d axes, got %zu", a->owner,
                            KC_MAX_RANK, n->n);
    c->naxes = (int)n->n;
    for (size_t i = 0; i < n->n; i++) {
        int rc = axis_int(n->items[i], a->owner, &c->axes[i], e);
        if (rc) return rc;
    }
    return KC_OK;
}

static int read_norm_bounds(kc_args *a, kc_constraint *c, kc_error *e) {
    int rc = KC_OK;
    if (c->kind == KC_CONSTRAINT_MIN_MAX_NORM) {
        rc = kc_args_float(a, "min_value", 0, 0.0, 0.0, INFINITY, &c->min_value, e);
        if (!rc) rc = kc_args_float(a, "max_value", 0, 1.0, 0.0, INFINITY, &c->max_value, e);
        if (!rc) rc = kc_args_float(a, "rate", 0, 1.0, 0.0, 1.0, &c->rate, e);
        if (!rc && c->max_value < c->min_value)
            rc = kc_node_fail(
                e, kc_args_node(a, "max_value") ? kc_args_node(a, "max_value") : a->where,
                "MinMaxNorm: max_value (%g) must not be smaller than min_value "
                "(%g)",
                c->max_value, c->min_value);
    } else if (c->kind == KC_CONSTRAINT_MAX_NORM) {
        rc = kc_args_float(a, "max_value", 0, 2.0, 0.0, INFINITY, &c->max_value, e);
    }
    return rc;
}

int kc_constraint_parse(kc_node *node, const char *ctx, kc_constraint *out, kc_error *e) {
    memset(out, 0, sizeof *out);
    if (!ctx) ctx = "";
    const char *name;
    const kc_node *at;
    kc_args a;
    int rc = kc_object_spec(node, "constraint", &name, &at, &a, e);
    if (rc) return rc;
    const con_entry *t = find_con(name);
    if (!t)
        return unknown(at, ctx, "constraint", name, con_names,
                       "max_norm, min_max_norm, non_neg, unit_norm and their class names", e);
    constraint_defaults(out, t->kind, at);
    if (node->kind == KC_NODE_SCALAR) return KC_OK;
    a.owner = t->klass;
    if ((rc = read_norm_bounds(&a, out, e))) return rc;
    if (t->kind != KC_CONSTRAINT_NON_NEG && t->kind != KC_CONSTRAINT_NONE &&
        (rc = read_axis(&a, out, e)))
        return rc;
    return kc_args_finish(&a, e);
}

int kc_args_constraint(kc_args *a, const char *key, kc_constraint *out, kc_error *e) {
    memset(out, 0, sizeof *out);
    kc_node *n = kc_args_node(a, key);
    if (!n || kc_node_is_null(n)) return KC_OK;
    char ctx[160];
    snprintf(ctx, sizeof ctx, "%s argument '%s': ", a->owner, key);
    return kc_constraint_parse(n, ctx, out, e);
}

static int is_norm(const kc_constraint *c) {
    return c->kind == KC_CONSTRAINT_MAX_NORM || c->kind == KC_CONSTRAINT_MIN_MAX_NORM ||
           c->kind == KC_CONSTRAINT_UNIT_NORM;
}

int kc_constraint_check(const kc_constraint *c, const kc_shape *shape, const char *what,
                        kc_error *e) {
    if (!is_norm(c) || c->all_axes) return KC_OK;
    int rank = shape->rank;
    unsigned seen = 0;
    char s[160];
    for (int i = 0; i < c->naxes; i++) {
        int ax = c->axes[i], a = ax < 0 ? ax + rank : ax;
        if (a < 0 || a >= rank)
            return kc_node_fail(e, c->node,
                                "%s: axis %d is out of range for a weight of shape %s (valid "
                                "axes: %d to %d)",
                                what, ax, kc_shape_str(shape, 0, s, sizeof s), -rank, rank - 1);
        if (seen & (1u << a))
            return kc_node_fail(e, c->node, "%s: axis %d is given twice", what, ax);
        seen |= 1u << a;
    }
    return KC_OK;
}

/* ---- descriptions ---- */

char *kc_regularizer_str(const kc_regularizer *r, char *buf, size_t n) {
    if (r->l1 != 0.0 && r->l2 != 0.0)
        snprintf(buf, n, "L1L2(l1=%g, l2=%g)", r->l1, r->l2);
    else if (r->l1 != 0.0)
        snprintf(buf, n, "L1(l1=%g)", r->l1);
    else if (r->l2 != 0.0)
        snprintf(buf, n, "L2(l2=%g)", r->l2);
    else
        snprintf(buf, n, "None");
    return buf;
}

static void axes_str(const kc_constraint *c, char *buf, size_t n) {
    if (c->all_axes) {
        snprintf(buf, n, "None");
        return;
    }
    if (c->naxes == 1) {
        snprintf(buf, n, "%d", c->axes[0]);
        return;
    }
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < c->naxes && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%d", i ? ", " : "", c->axes[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

char *kc_constraint_str(const kc_constraint *c, char *buf, size_t n) {
    char ax[64];
    axes_str(c, ax, sizeof ax);
    switch (c->kind) {
    case KC_CONSTRAINT_MAX_NORM:
        snprintf(buf, n, "MaxNorm(max_value=%g, axis=%s)", c->max_value, ax);
        break;
    case KC_CONSTRAINT_MIN_MAX_NORM:
        snprintf(buf, n, "MinMaxNorm(min_value=%g, max_value=%g, rate=%g, axis=%s)", c->min_value,
                 c->max_value, c->rate, ax);
        break;
    case KC_CONSTRAINT_NON_NEG:
        snprintf(buf, n, "NonNeg()");
        break;
    case KC_CONSTRAINT_UNIT_NORM:
        snprintf(buf, n, "UnitNorm(axis=%s)", ax);
        break;
    default:
        snprintf(buf, n, "None");
    }
    return buf;
}

/* ---- math ---- */

static int penalized(const kc_param *p) {
    return p && p->trainable && kc_regularizer_active(&p->regularizer);
}

int kc_regularization_any(kc_param *const *params, int n) {
    for (int i = 0; i < n; i++)
        if (penalized(params[i])) return 1;
    return 0;
}

int kc_regularization_apply(kc_device *d, kc_param *const *params, int n, int add_grads,
                            kc_buf acc) {
    for (int i = 0; i < n; i++) {
        kc_param *p = params[i];
        if (!penalized(p) || !kc_buf_ok(p->value)) continue;
        /* Keras casts the factors to the weight's float32 */
        kc_l1l2_penalty(d, p->value, add_grads ? p->grad : KC_BUF_NULL,
                        (size_t)kc_shape_numel(&p->shape), (float)p->regularizer.l1,
                        (float)p->regularizer.l2, acc);
    }
    return kc_device_status(d);
}

int kc_activity_penalty(kc_device *d, const kc_regularizer *r, kc_buf y, kc_buf dy, size_t numel,
                        int batch, kc_buf acc) {
    if (!kc_regularizer_active(r) || batch <= 0 || numel == 0) return kc_device_status(d);
    return kc_l1l2_penalty(d, y, dy, numel, (float)(r->l1 / batch), (float)(r->l2 / batch), acc);
}

/* The constraint's norm axes as a bit mask over the weight's axes. */
static unsigned norm_mask(const kc_constraint *c, int rank) {
    if (c->all_axes) return rank >= 32 ? ~0u : (1u << rank) - 1u;
    unsigned mask = 0;
    for (int i = 0; i < c->naxes; i++) {
        int a = c->axes[i] < 0 ? c->axes[i] + rank : c->axes[i];
        if (a >= 0 && a < rank) mask |= 1u << a;
    }
    return mask;
}

/* Merges neighbouring axes of the same kind and drops axes of size 1, so the
 * backend sees the fewest axes: Dense's (in, out) over axis 0 stays
 * (in, out), Conv2D's (kh, kw, in, out) over [0, 1, 2] becomes
 * (kh kw in, out). */
static int merge_axes(const kc_shape *s, unsigned mask, int64_t *dims, unsigned *reduce) {
    int r = 0;
    unsigned prev = 2;
    *reduce = 0;
    for (int i = 0; i < s->rank; i++) {
        if (s->d[i] == 1) continue;
        unsigned flag = (mask >> i) & 1u;
        if (r > 0 && flag == prev) {
            dims[r - 1] *= s->d[i];
            continue;
        }
        dims[r] = s->d[i];
        if (flag) *reduce |= 1u << r;
        prev = flag;
        r++;
    }
    if (r == 0) { /* one value: its norm is |w| whatever the axes */
        dims[0] = 1;
        *reduce = 1u;
        r = 1;
    }
    return r;
}

static int apply_norm(kc_device *d, kc_param *p) {
    const kc_constraint *c = &p->constraint;
    float lo = 0.0f, hi = 1.0f, rate = 1.0f;
    if (c->kind == KC_CONSTRAINT_MAX_NORM) {
        hi = (float)c->max_value;
    } else if (c->kind == KC_CONSTRAINT_MIN_MAX_NORM) {
        lo = (float)c->min_value;
        hi = (float)c->max_value;
        rate = (float)c->rate;
    } else { /* unit norm: the clip pins every norm to 1 */
        lo = 1.0f;
    }
    int64_t dims[KC_MAX_RANK];
    unsigned reduce;
    int rank = merge_axes(&p->shape, norm_mask(c, p->shape.rank), dims, &reduce);
    return kc_norm_rescale(d, p->value, dims, rank, reduce, lo, hi, rate,
                           (float)KC_CONSTRAINT_EPSILON);
}

static int constrained(const kc_param *p) {
    return p && kc_buf_ok(p->value) && p->trainable;
}

static int is_non_neg(const kc_param *p) {
    return constrained(p) && p->constraint.kind == KC_CONSTRAINT_NON_NEG;
}

/* w where w > 0, else +0 - for -0 and NaN too, as the ReLU kerasc used
 * before gave (Keras's w * (w >= 0) keeps both). The 0/1 mask doubles as the
 * zeros the select takes. */
static int apply_non_neg(kc_device *d, kc_param *p, kc_buf mask) {
    size_t n = (size_t)kc_shape_numel(&p->shape);
    kc_unary(d, KC_UN_GT, 0.0f, p->value, mask, n);
    return kc_select(d, mask, p->value, mask, p->value, n);
}

/* Room for the largest NonNeg weight's mask, or null when there is none. */
static int non_neg_mask(kc_device *d, kc_param *const *params, int n, kc_buf *mask) {
    size_t most = 0;
    *mask = KC_BUF_NULL;
    for (int i = 0; i < n; i++)
        if (is_non_neg(params[i])) {
            size_t k = (size_t)kc_shape_numel(&params[i]->shape);
            if (k > most) most = k;
        }
    return most ? kc_alloc(d, most * sizeof(float), mask) : kc_device_status(d);
}

int kc_constraints_apply(kc_device *d, kc_param *const *params, int n) {
    kc_buf mask;
    int rc = non_neg_mask(d, params, n, &mask);
    for (int i = 0; !rc && i < n; i++) {
        kc_param *p = params[i];
        if (is_non_neg(p))
            rc = apply_non_neg(d, p, mask);
        else if (constrained(p) && is_norm(&p->constraint))
            rc = apply_norm(d, p);
    }
    kc_free(d, &mask);
    return rc;
}

/* ---- layer helpers ---- */

int kc_args_weight_opts(kc_args *a, const char *prefix, kc_weight_opts *out, kc_error *e) {
    /* the keys must outlive the args' record of known names */
    static const struct {
        const char *prefix, *reg, *con;
    } keys[] = {
        {"kernel", "kernel_regularizer", "kernel_constraint"},
        {"bias", "bias_regularizer", "bias_constraint"},
        {"depthwise", "depthwise_regularizer", "depthwise_constraint"},
        {"pointwise", "pointwise_regularizer", "pointwise_constraint"},
        {"recurrent", "recurrent_regularizer", "recurrent_constraint"},
        {"embeddings", "embeddings_regularizer", "embeddings_constraint"},
        {"gamma", "gamma_regularizer", "gamma_constraint"},
        {"beta", "beta_regularizer", "beta_constraint"},
    };
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (strcmp(keys[i].prefix, prefix)) continue;
        int rc = kc_args_regularizer(a, keys[i].reg, &out->regularizer, e);
        if (!rc) rc = kc_args_constraint(a, keys[i].con, &out->constraint, e);
        return rc;
    }
    return kc_fail(e, KC_ERUNTIME, "no regularizer arguments for weights named '%s'", prefix);
}

int kc_param_set_opts(kc_param *p, const kc_weight_opts *o, const char *layer, kc_error *e) {
    char what[300];
    snprintf(what, sizeof what, "layer '%s' %s_constraint", layer, p->name);
    int rc = kc_constraint_check(&o->constraint, &p->shape, what, e);
    if (rc) return rc;
    p->regularizer = o->regularizer;
    p->constraint = o->constraint;
    return KC_OK;
}

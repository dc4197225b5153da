/* The activation layers of Keras 3: ReLU (max_value, negative_slope,
 * threshold), LeakyReLU, PReLU (a learned slope per cell), ELU and Softmax
 * over any axis. Each computes in its own forward, on the op API. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models/layers/common.h"

static size_t numel_of(const kc_layer *l, int batch) {
    return (size_t)kc_shape_numel(&l->in_shape) * (size_t)batch;
}

static int same_shape_build(kc_layer *l, kc_error *e) {
    l->out_shape = l->in_shape;
    return KC_OK;
}

/* A float argument that Keras requires to be >= 0 (and not null). */
static int nonneg_float(kc_args *a, const char *key, double def, double *out, kc_error *e) {
    kc_node *n = kc_args_node(a, key);
    if (n && kc_node_is_null(n))
        return kc_node_fail(e, n, "%s argument '%s' cannot be null", a->owner, key);
    int rc = kc_args_float(a, key, 0, def, -INFINITY, INFINITY, out, e);
    if (!rc && !(*out >= 0.0))
        return kc_node_fail(e, n, "%s argument '%s' must be >= 0, got %g", a->owner, key, *out);
    return rc;
}

/* ------------------------------------------------------------------ ReLU */

typedef struct relu_state {
    double max_value, negative_slope, threshold;
    int has_max;
} relu_state;

static int relu_configure(kc_layer *l, kc_args *a, kc_error *e) {
    relu_state *s = l->state;
    kc_node *m = kc_args_node(a, "max_value");
    int rc = KC_OK;
    if (m && !kc_node_is_null(m)) {
        s->has_max = 1;
        rc = nonneg_float(a, "max_value", 0.0, &s->max_value, e);
    }
    if (!rc) rc = nonneg_float(a, "negative_slope", 0.0, &s->negative_slope, e);
    if (!rc) rc = nonneg_float(a, "threshold", 0.0, &s->threshold, e);
    return rc;
}

/* The cases one activation kernel computes: relu, relu6, leaky relu. */
static int relu_simple(const relu_state *s, kc_activation *act) {
    if (s->threshold != 0.0) return 0;
    act->alpha = (float)s->negative_slope;
    if (s->negative_slope == 0.0 && !s->has_max)
        act->act = KC_ACT_RELU;
    else if (s->negative_slope == 0.0 && s->max_value == 6.0)
        act->act = KC_ACT_RELU6;
    else if (!s->has_max)
        act->act = KC_ACT_LEAKY_RELU;
    else
        return 0;
    return 1;
}

static size_t relu_workspace(const kc_layer *l, int max_batch, const kc_device *d) {
    return 2 * numel_of(l, max_batch) * sizeof(float);
}

/* Keras: (x > t ? x : 0) clipped to [0, max_value], minus slope relu(t - x). */
static int relu_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const relu_state *s = l->state;
    kc_device *d = ex->dev;
    size_t n = numel_of(l, ex->batch);
    kc_activation act;
    if (relu_simple(s, &act)) return kc_act_forward(d, act.act, act.alpha, x, y, n);
    kc_buf m = ex->ws;
    float t = (float)s->threshold;
    kc_unary(d, KC_UN_GT, t, x, m, n);
    if (s->negative_slope != 0.0) {
        kc_buf neg = kc_buf_f(ex->ws, n);
        kc_unary(d, KC_UN_RSUB, t, x, neg, n);
        kc_unary(d, KC_UN_MAX, 0.0f, neg, neg, n);
        kc_binary_n(d, KC_BIN_MUL, x, m, y, n);
        if (s->has_max) kc_unary(d, KC_UN_MIN, (float)s->max_value, y, y, n);
        return kc_axpy(d, -(float)s->negative_slope, neg, y, n);
    }
    kc_binary_n(d, KC_BIN_MUL, x, m, y, n);
    if (s->has_max) kc_unary(d, KC_UN_MIN, (float)s->max_value, y, y, n);
    return kc_device_status(d);
}

/* slope: 1 where t < x (<= max_value; < 6 for relu6), negative_slope where x < t */
static int relu_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    const relu_state *s = l->state;
    kc_device *d = ex->dev;
    if (!kc_buf_ok(dx)) return kc_device_status(d);
    size_t n = numel_of(l, ex->batch);
    kc_activation act;
    if (relu_simple(s, &act)) return kc_act_backward(d, act.act, act.alpha, x, y, dy, dx, n);
    kc_buf g = ex->ws, t2 = kc_buf_f(ex->ws, n);
    float t = (float)s->threshold;
    kc_unary(d, KC_UN_GT, t, x, g, n);
    if (s->has_max) {
        kc_unary(d, s->max_value == 6.0 ? KC_UN_LT : KC_UN_LE, (float)s->max_value, x, t2, n);
        kc_binary_n(d, KC_BIN_MUL, g, t2, g, n);
    }
    if (s->negative_slope != 0.0) {
        kc_unary(d, KC_UN_LT, t, x, t2, n);
        kc_axpy(d, (float)s->negative_slope, t2, g, n);
    }
    return kc_binary_n(d, KC_BIN_MUL, dy, g, dx, n);
}

const kc_layer_class kc_relu_class = {
    .class_name = "ReLU",
    .mask_rule = kc_mask_propagate,
    .base_name = "re_lu",
    .state_size = sizeof(relu_state),
    .configure = relu_configure,
    .build = same_shape_build,
    .workspace_bytes = relu_workspace,
    .forward = relu_forward,
    .backward = relu_backward,
};

/* ------------------------------------------------- LeakyReLU and ELU --- */

typedef struct slope_state {
    kc_activation act;
} slope_state;

static int leaky_relu_configure(kc_layer *l, kc_args *a, kc_error *e) {
    slope_state *s = l->state;
    kc_node *old = kc_args_node(a, "alpha"), *now = kc_args_node(a, "negative_slope");
    if (old && now)
        return kc_node_fail(e, old,
                            "LeakyReLU takes 'negative_slope' or its older name 'alpha', not both");
    double v;
    int rc = nonneg_float(a, old ? "alpha" : "negative_slope", 0.3, &v, e);
    s->act.act = KC_ACT_LEAKY_RELU;
    s->act.alpha = (float)v;
    return rc;
}

static int elu_configure(kc_layer *l, kc_args *a, kc_error *e) {
    slope_state *s = l->state;
    double v;
    int rc = kc_args_float(a, "alpha", 0, 1.0, -INFINITY, INFINITY, &v, e);
    s->act.act = KC_ACT_ELU;
    s->act.alpha = (float)v;
    return rc;
}

static int slope_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const slope_state *s = l->state;
    return kc_act_forward(ex->dev, s->act.act, s->act.alpha, x, y, numel_of(l, ex->batch));
}

static int slope_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                          kc_buf dx) {
    const slope_state *s = l->state;
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    return kc_act_backward(ex->dev, s->act.act, s->act.alpha, x, y, dy, dx, numel_of(l, ex->batch));
}

const kc_layer_class kc_leaky_relu_class = {
    .class_name = "LeakyReLU",
    .mask_rule = kc_mask_propagate,
    .base_name = "leaky_re_lu",
    .state_size = sizeof(slope_state),
    .configure = leaky_relu_configure,
    .build = same_shape_build,
    .forward = slope_forward,
    .backward = slope_backward,
};

const kc_layer_class kc_elu_class = {
    .class_name = "ELU",
    .mask_rule = kc_mask_propagate,
    .base_name = "elu",
    .state_size = sizeof(slope_state),
    .configure = elu_configure,
    .build = same_shape_build,
    .forward = slope_forward,
    .backward = slope_backward,
};

/* ----------------------------------------------------------------- PReLU */

typedef struct prelu_state {
    kc_initializer init;
    kc_weight_opts opts;
    int shared[KC_MAX_RANK + 1]; /* by Keras axis: 1 .. rank (0 is the batch) */
    const kc_node *shared_node;
    int64_t full[KC_MAX_RANK + 1], alpha[KC_MAX_RANK + 1]; /* (batch 1, dims), alpha's */
    int rank;                                              /* with the batch axis */
} prelu_state;

static int prelu_shared_axes(prelu_state *s, kc_args *a, kc_error *e) {
    kc_node *n = kc_args_node(a, "shared_axes");
    if (!n || kc_node_is_null(n)) return KC_OK;
    s->shared_node = n;
    int64_t ax[KC_MAX_RANK];
    int na = 0, rc;
    if (n->kind == KC_NODE_SCALAR) {
        long long v;
        rc = kc_args_int(a, "shared_axes", 0, 0, 1, KC_MAX_RANK, &v, e);
        ax[na++] = v;
    } else {
        rc = kc_args_int_list(a, "shared_axes", 0, KC_MAX_RANK, 1, ax, &na, e);
    }
    for (int i = 0; !rc && i < na; i++) {
        if (ax[i] > KC_MAX_RANK)
            return kc_node_fail(e, n, "PReLU argument 'shared_axes': axis %lld is out of range",
                                (long long)ax[i]);
        s->shared[ax[i]] = 1;
    }
    return rc;
}

static int prelu_configure(kc_layer *l, kc_args *a, kc_error *e) {
    prelu_state *s = l->state;
    int rc = kc_args_initializer(a, "alpha_initializer", "zeros", &s->init, e);
    memset(&s->opts, 0, sizeof s->opts);
    if (!rc) rc = kc_args_regularizer(a, "alpha_regularizer", &s->opts.regularizer, e);
    if (!rc) rc = kc_args_constraint(a, "alpha_constraint", &s->opts.constraint, e);
    if (!rc) rc = prelu_shared_axes(s, a, e);
    return rc;
}

static int prelu_build(kc_layer *l, kc_error *e) {
    prelu_state *s = l->state;
    const kc_shape *in = &l->in_shape;
    for (int i = in->rank + 1; i <= KC_MAX_RANK; i++)
        if (s->shared[i])
            return kc_layer_fail(l, e, "shared_axes has axis %d, but the input has rank %d", i,
                                 in->rank + 1);
    kc_shape p = *in;
    s->rank = in->rank + 1;
    s->full[0] = 1;
    s->alpha[0] = 1;
    for (int i = 0; i < in->rank; i++) {
        if (s->shared[i + 1]) p.d[i] = 1;
        s->full[i + 1] = in->d[i];
        s->alpha[i + 1] = p.d[i];
    }
    kc_bcast g;
    if (kc_bcast_make(&g, s->full, s->rank, s->alpha, s->rank, NULL))
        return kc_layer_fail(l, e, "this pattern of shared_axes is not supported by kerasc");
    l->out_shape = *in;
    kc_param *w = kc_layer_add_param(l, "alpha", p, &s->init, 1);
    return kc_param_set_opts(w, &s->opts, l->name, e);
}

static size_t prelu_workspace(const kc_layer *l, int max_batch, const kc_device *d) {
    return 2 * numel_of(l, max_batch) * sizeof(float);
}

static kc_bcast prelu_bcast(const kc_layer *l, int batch) {
    const prelu_state *s = l->state;
    int64_t full[KC_MAX_RANK + 1];
    for (int i = 0; i < s->rank; i++)
        full[i] = s->full[i];
    full[0] = batch;
    kc_bcast g;
    kc_bcast_make(&g, full, s->rank, s->alpha, s->rank, NULL); /* checked at build */
    return g;
}

/* y = relu(x) + alpha min(x, 0) */
static int prelu_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    kc_device *d = ex->dev;
    size_t n = numel_of(l, ex->batch);
    kc_bcast g = prelu_bcast(l, ex->batch);
    kc_buf t = ex->ws;
    kc_unary(d, KC_UN_MIN, 0.0f, x, t, n);
    kc_binary(d, KC_BIN_MUL, &g, t, l->params[0].value, t);
    kc_act_forward(d, KC_ACT_RELU, 0.0f, x, y, n);
    return kc_axpy(d, 1.0f, t, y, n);
}

/* Sums src (dims, rank) over the axes where alpha has extent 1 into dst
 * (dst = sum + beta dst), one reduction per run of such axes; src and tmp
 * are overwritten. */
static int sum_to_alpha(kc_device *d, const prelu_state *s, int batch, kc_buf src, kc_buf tmp,
                        kc_buf dst, float beta) {
    int64_t dims[KC_MAX_RANK + 1];
    int red[KC_MAX_RANK + 1], r = 0;
    for (int i = 0; i < s->rank; i++) {
        int64_t v = i ? s->full[i] : batch;
        int is_red = s->alpha[i] == 1 && v != 1;
        if (v == 1) continue;
        if (r && red[r - 1] == is_red) {
            dims[r - 1] *= v;
        } else {
            dims[r] = v;
            red[r++] = is_red;
        }
    }
    int last = -1;
    for (int i = 0; i < r; i++)
        if (red[i]) last = i;
    if (last < 0) { /* one sample and no shared axis: nothing to sum */
        size_t m = 1;
        for (int i = 0; i < s->rank; i++)
            m *= (size_t)s->alpha[i];
        if (beta != 0.0f) return kc_axpy(d, 1.0f, src, dst, m);
        return kc_copy(d, dst, src, m * sizeof(float));
    }
    kc_buf cur = src, other = tmp;
    for (int i = 0; i < r; i++) {
        if (!red[i]) continue;
        kc_reduce_desc g = {1, dims[i], 1};
        for (int j = 0; j < i; j++)
            g.outer *= dims[j];
        for (int j = i + 1; j < r; j++)
            g.inner *= dims[j];
        kc_buf out = i == last ? dst : other;
        kc_reduce(d, KC_RED_SUM, &g, 1.0f, cur, i == last ? beta : 0.0f, out);
        dims[i] = 1;
        other = cur;
        cur = out;
    }
    return kc_device_status(d);
}

static int prelu_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                          kc_buf dx) {
    const prelu_state *s = l->state;
    kc_device *d = ex->dev;
    size_t n = numel_of(l, ex->batch);
    kc_param *w = &l->params[0];
    kc_buf t = ex->ws, t2 = kc_buf_f(ex->ws, n);
    if (kc_layer_wants_grad(l, w)) { /* dalpha = sum dy min(x, 0) */
        kc_unary(d, KC_UN_MIN, 0.0f, x, t, n);
        kc_binary_n(d, KC_BIN_MUL, t, dy, t, n);
        sum_to_alpha(d, s, ex->batch, t, t2, w->grad, ex->accumulate ? 1.0f : 0.0f);
    }
    if (!kc_buf_ok(dx)) return kc_device_status(d);
    kc_bcast g = prelu_bcast(l, ex->batch); /* dx = dy (x > 0 ? 1 : alpha) */
    kc_unary(d, KC_UN_LE, 0.0f, x, t, n);
    kc_binary_n(d, KC_BIN_MUL, t, dy, t, n);
    kc_binary(d, KC_BIN_MUL, &g, t, w->value, t);
    kc_act_backward(d, KC_ACT_RELU, 0.0f, x, y, dy, dx, n);
    return kc_axpy(d, 1.0f, t, dx, n);
}

const kc_layer_class kc_prelu_class = {
    .class_name = "PReLU",
    .mask_rule = kc_mask_propagate,
    .base_name = "p_re_lu",
    .state_size = sizeof(prelu_state),
    .configure = prelu_configure,
    .build = prelu_build,
    .workspace_bytes = prelu_workspace,
    .forward = prelu_forward,
    .backward = prelu_backward,
};

/* --------------------------------------------------------------- Softmax */

typedef struct softmax_state {
    int axes[KC_MAX_RANK + 1];
    int naxes;
    const kc_node *node;
    int lo, hi; /* the per-sample axes [lo, hi) the softmax spans, after build */
} softmax_state;

static int softmax_configure(kc_layer *l, kc_args *a, kc_error *e) {
    softmax_state *s = l->state;
    kc_node *n = kc_args_node(a, "axis");
    s->node = n;
    if (!n || kc_node_is_null(n)) {
        s->axes[s->naxes++] = -1;
        return KC_OK;
    }
    int64_t v[KC_MAX_RANK + 1];
    int nv = 0, rc;
    if (n->kind == KC_NODE_SCALAR) {
        long long one;
        rc = kc_args_int(a, "axis", 0, -1, -KC_MAX_RANK - 1, KC_MAX_RANK, &one, e);
        v[nv++] = one;
    } else {
        rc = kc_args_int_list(a, "axis", 1, KC_MAX_RANK + 1, -KC_MAX_RANK - 1, v, &nv, e);
        if (!rc && nv == 0) return kc_node_fail(e, n, "Softmax argument 'axis' is an empty list");
    }
    for (int i = 0; !rc && i < nv; i++)
        s->axes[s->naxes++] = (int)v[i];
    return rc;
}

/* The axes (Keras's, 0 the batch) must be per-sample and one contiguous run. */
static int softmax_build(kc_layer *l, kc_error *e) {
    softmax_state *s = l->state;
    int rank = l->in_shape.rank + 1, seen[KC_MAX_RANK + 1] = {0};
    s->lo = rank, s->hi = 0;
    for (int i = 0; i < s->naxes; i++) {
        int ax = s->axes[i] < 0 ? s->axes[i] + rank : s->axes[i];
        if (ax < 0 || ax >= rank)
            return kc_layer_fail(l, e, "axis %d is out of range for an input of rank %d",
                                 s->axes[i], rank);
        if (ax == 0)
            return kc_layer_fail(l, e, "a softmax over the batch axis is not supported by kerasc");
        if (seen[ax]) return kc_layer_fail(l, e, "axis %d is given twice", s->axes[i]);
        seen[ax] = 1;
        s->lo = ax - 1 < s->lo ? ax - 1 : s->lo;
        s->hi = ax > s->hi ? ax : s->hi;
    }
    if (s->hi - s->lo != s->naxes)
        return kc_layer_fail(l, e,
                             "a softmax over axes that are not adjacent is not supported "
                             "by kerasc");
    l->out_shape = l->in_shape;
    return KC_OK;
}

static kc_reduce_desc softmax_geometry(const kc_layer *l, int batch) {
    const softmax_state *s = l->state;
    kc_reduce_desc g = {batch, 1, 1};
    for (int i = 0; i < l->in_shape.rank; i++) {
        int64_t v = l->in_shape.d[i];
        if (i < s->lo)
            g.outer *= v;
        else if (i < s->hi)
            g.len *= v;
        else
            g.inner *= v;
    }
    return g;
}

static int softmax_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    kc_reduce_desc g = softmax_geometry(l, ex->batch);
    return kc_softmax_axis_forward(ex->dev, 0, &g, x, y);
}

static int softmax_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                            kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    kc_reduce_desc g = softmax_geometry(l, ex->batch);
    return kc_softmax_axis_backward(ex->dev, 0, &g, y, dy, dx);
}

const kc_layer_class kc_softmax_class = {
    .class_name = "Softmax",
    .mask_rule = kc_mask_propagate,
    .base_name = "softmax",
    .state_size = sizeof(softmax_state),
    .configure = softmax_configure,
    .build = softmax_build,
    .forward = softmax_forward,
    .backward = softmax_backward,
};

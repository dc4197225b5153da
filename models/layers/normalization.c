/* Normalization layers: BatchNormalization, LayerNormalization,
 * GroupNormalization and UnitNormalization, with Keras 3's arguments,
 * weights and formulas.
 *
 * All four normalize x over a set of axes of the whole tensor (batch axis
 * included): statistics reduce over the axes in `red`, gamma and beta vary
 * along the axes in `par`. GroupNormalization splits its channel axis into
 * (groups, channels per group) first. Reductions run as a fixed sequence of
 * (outer, len, inner) reduce calls, one per run of neighbouring reduced
 * axes, so results do not depend on threads.
 *
 * BatchNormalization keeps moving_mean and moving_variance as
 * non-trainable weights: a training call of a trainable layer normalizes
 * with the batch's statistics and moves them (moving = moving * momentum +
 * batch * (1 - momentum), biased variance as Keras 3); every other call uses
 * them. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models/layers/common.h"

#define NORM_RANK (KC_MAX_RANK + 2)

typedef enum { NORM_BATCH, NORM_LAYER, NORM_GROUP, NORM_UNIT } norm_kind;

typedef struct norm_state {
    norm_kind kind;
    int center, scale, rms;
    double momentum, epsilon;
    long long groups;
    int64_t axes[KC_MAX_RANK + 1]; /* as given: Keras's numbering, batch axis 0 */
    int naxes;
    const kc_node *axis_node;
    kc_initializer beta_init, gamma_init, mean_init, var_init;
    kc_weight_opts beta_opts, gamma_opts;
    /* geometry, dims[0] being the batch */
    int rank;
    int64_t dims[NORM_RANK];
    unsigned red, par;
    int igamma, ibeta, imean, ivar; /* parameter indices, -1 when absent */
} norm_state;

/* ------------------------------------------------------------ geometry --- */

static void full_dims(const norm_state *s, int batch, int64_t *dims) {
    for (int k = 0; k < s->rank; k++)
        dims[k] = s->dims[k];
    dims[0] = batch;
}

/* dims with the axes outside `keep` set to 1 */
static void masked_dims(const norm_state *s, int batch, unsigned keep, int64_t *dims) {
    full_dims(s, batch, dims);
    for (int k = 0; k < s->rank; k++)
        if (!(keep >> k & 1)) dims[k] = 1;
}

static size_t prod(const int64_t *dims, int rank) {
    size_t n = 1;
    for (int k = 0; k < rank; k++)
        n *= (size_t)dims[k];
    return n;
}

static size_t numel(const norm_state *s, int batch) {
    int64_t d[NORM_RANK];
    full_dims(s, batch, d);
    return prod(d, s->rank);
}

/* statistics per call: the product of the axes not reduced */
static size_t nstats(const norm_state *s, int batch) {
    int64_t d[NORM_RANK];
    masked_dims(s, batch, ~s->red, d);
    return prod(d, s->rank);
}

/* elements each statistic reduces over */
static size_t reduced_count(const norm_state *s, int batch) {
    return numel(s, batch) / nstats(s, batch);
}

/* y = alpha * R x + beta * y over the axes in `mask` of x (dims, rank): one
 * reduce per run of reduced axes, innermost first; `op` on the first pass,
 * sums after it. t0 and t1 hold intermediates (numel floats each). */
static int reduce_mask(kc_device *d, kc_reduce_op op, const int64_t *dims, int rank, unsigned mask,
                       float alpha, kc_buf x, float beta, kc_buf y, kc_buf t0, kc_buf t1) {
    int64_t gs[NORM_RANK + 1];
    int gr[NORM_RANK + 1], ng = 0;
    for (int k = 0; k < rank; k++) {
        int r = (int)(mask >> k & 1);
        if (dims[k] == 1) continue;
        if (ng && gr[ng - 1] == r) {
            gs[ng - 1] *= dims[k];
        } else {
            gs[ng] = dims[k];
            gr[ng++] = r;
        }
    }
    int nred = 0, firstred = -1;
    for (int j = 0; j < ng; j++)
        if (gr[j]) nred++, firstred = firstred < 0 ? j : firstred;
    if (!nred) { /* every reduced axis has length 1 */
        gs[ng] = 1;
        gr[ng++] = 1;
        firstred = ng - 1;
    }
    kc_buf cur = x;
    int first = 1, flip = 0;
    for (int j = ng - 1; j >= 0; j--) {
        if (!gr[j]) continue;
        kc_reduce_desc g = {1, gs[j], 1};
        for (int i = 0; i < j; i++)
            g.outer *= gs[i];
        for (int i = j + 1; i < ng; i++)
            g.inner *= gs[i];
        int last = j == firstred;
        kc_buf dst = last ? y : (flip ? t1 : t0);
        kc_reduce(d, first ? op : KC_RED_SUM, &g, last ? alpha : 1.0f, cur, last ? beta : 0.0f,
                  dst);
        gs[j] = 1;
        cur = dst;
        flip = !flip;
        first = 0;
    }
    return kc_device_status(d);
}

/* y = a op b, a of the full shape, b of the full shape masked to `keep` */
static int bin_masked(kc_device *d, const norm_state *s, int batch, kc_binary_op op, kc_buf a,
                      unsigned keep, kc_buf b, kc_buf y) {
    int64_t da[NORM_RANK], db[NORM_RANK];
    full_dims(s, batch, da);
    masked_dims(s, batch, keep, db);
    kc_bcast g;
    if (kc_bcast_make(&g, da, s->rank, db, s->rank, NULL))
        return kc_device_fail(d, KC_ECONFIG, "normalization broadcast does not fit");
    return kc_binary(d, op, &g, a, b, y);
}

/* Can every broadcast of the layer run (at most KC_BCAST_RANK merged axes)? */
static int geometry_fits(const norm_state *s) {
    int64_t da[NORM_RANK], db[NORM_RANK];
    kc_bcast g;
    full_dims(s, 2, da);
    masked_dims(s, 2, ~s->red, db);
    if (kc_bcast_make(&g, da, s->rank, db, s->rank, NULL)) return 0;
    masked_dims(s, 2, s->par, db);
    return !kc_bcast_make(&g, da, s->rank, db, s->rank, NULL);
}

/* ------------------------------------------------------------ arguments --- */

/* axis: an int, or (when `list_ok`) a list of ints; Keras's numbering. */
static int read_axes(kc_layer *l, kc_args *a, int list_ok, kc_error *e) {
    norm_state *s = l->state;
    kc_node *n = kc_args_node(a, "axis");
    s->axis_node = n;
    s->naxes = 1;
    s->axes[0] = -1;
    if (!n || (n->kind == KC_NODE_SCALAR && !strcmp(n->str, "null") && !n->quoted)) return KC_OK;
    if (n->kind == KC_NODE_SEQ && list_ok) {
        return kc_args_int_list(a, "axis", 0, KC_MAX_RANK + 1, -(KC_MAX_RANK + 1), s->axes,
                                &s->naxes, e);
    }
    long long v;
    int rc = kc_args_int(a, "axis", 0, -1, -(KC_MAX_RANK + 1), KC_MAX_RANK, &v, e);
    s->axes[0] = v;
    return rc;
}

static int read_weight_args(kc_layer *l, kc_args *a, kc_error *e) {
    norm_state *s = l->state;
    int rc = kc_args_float(a, "epsilon", 0, 1e-3, 0, INFINITY, &s->epsilon, e);
    if (!rc) rc = kc_args_bool(a, "center", 1, &s->center, e);
    if (!rc) rc = kc_args_bool(a, "scale", 1, &s->scale, e);
    if (!rc) rc = kc_args_initializer(a, "beta_initializer", "zeros", &s->beta_init, e);
    if (!rc) rc = kc_args_initializer(a, "gamma_initializer", "ones", &s->gamma_init, e);
    if (!rc) rc = kc_args_weight_opts(a, "beta", &s->beta_opts, e);
    if (!rc) rc = kc_args_weight_opts(a, "gamma", &s->gamma_opts, e);
    return rc;
}

static const char *const bn_unsupported[] = {"renorm_clipping", NULL};

static int bn_configure(kc_layer *l, kc_args *a, kc_error *e) {
    norm_state *s = l->state;
    s->kind = NORM_BATCH;
    int rc = read_axes(l, a, 0, e), renorm = 0, sync = 0;
    double renorm_momentum;
    if (!rc) rc = kc_args_float(a, "momentum", 0, 0.99, -INFINITY, INFINITY, &s->momentum, e);
    if (!rc) rc = read_weight_args(l, a, e);
    if (!rc) rc = kc_args_initializer(a, "moving_mean_initializer", "zeros", &s->mean_init, e);
    if (!rc) rc = kc_args_initializer(a, "moving_variance_initializer", "ones", &s->var_init, e);
    if (!rc) rc = kc_args_bool(a, "synchronized", 0, &sync, e); /* one device: same result */
    if (!rc) rc = kc_args_bool(a, "renorm", 0, &renorm, e);
    if (!rc && renorm)
        rc = kc_node_fail(e, kc_args_node(a, "renorm"),
                          "BatchNormalization argument 'renorm' is not supported by kerasc");
    if (!rc)
        rc = kc_args_float(a, "renorm_momentum", 0, 0.99, -INFINITY, INFINITY, &renorm_momentum, e);
    if (!rc) rc = kc_layer_reject_unsupported(a, bn_unsupported, e);
    return rc;
}

static int ln_configure(kc_layer *l, kc_args *a, kc_error *e) {
    norm_state *s = l->state;
    s->kind = NORM_LAYER;
    int rc = read_axes(l, a, 1, e);
    if (!rc) rc = read_weight_args(l, a, e);
    if (!rc) rc = kc_args_bool(a, "rms_scaling", 0, &s->rms, e);
    return rc;
}

static int gn_configure(kc_layer *l, kc_args *a, kc_error *e) {
    norm_state *s = l->state;
    s->kind = NORM_GROUP;
    int rc = kc_args_int(a, "groups", 0, 32, -1, INT_MAX, &s->groups, e);
    if (!rc && s->groups == 0)
        rc = kc_node_fail(e, kc_args_node(a, "groups"),
                          "Received an invalid value for argument `groups`, expected a positive "
                          "integer (or `-1` for instance normalization). Received: groups=0");
    if (!rc) rc = read_axes(l, a, 0, e);
    if (!rc) rc = read_weight_args(l, a, e);
    return rc;
}

static int un_configure(kc_layer *l, kc_args *a, kc_error *e) {
    norm_state *s = l->state;
    s->kind = NORM_UNIT;
    return read_axes(l, a, 1, e);
}

/* --------------------------------------------------------------- build --- */

/* The given axes as positions of the whole tensor (1 .. rank), as a mask. */
static int resolve_axes(kc_layer *l, unsigned *mask, kc_error *e) {
    norm_state *s = l->state;
    int full = l->in_shape.rank + 1;
    char buf[160];
    *mask = 0;
    for (int i = 0; i < s->naxes; i++) {
        int64_t a = s->axes[i] < 0 ? s->axes[i] + full : s->axes[i];
        if (a < 1 || a >= full)
            return kc_node_fail(e, s->axis_node ? s->axis_node : l->node,
                                "layer '%s' (%s): axis %lld is out of range for input shape %s%s",
                                l->name, l->cls->class_name, (long long)s->axes[i],
                                kc_shape_str(&l->in_shape, 1, buf, sizeof buf),
                                a == 0 ? " (axis 0 is the batch axis)" : "");
        if (*mask >> a & 1)
            return kc_node_fail(e, s->axis_node ? s->axis_node : l->node,
                                "layer '%s' (%s): axis %lld is given twice", l->name,
                                l->cls->class_name, (long long)s->axes[i]);
        *mask |= 1u << a;
    }
    return KC_OK;
}

static int add_gamma_beta(kc_layer *l, kc_shape shape, kc_error *e) {
    norm_state *s = l->state;
    int rc = KC_OK;
    s->igamma = s->ibeta = s->imean = s->ivar = -1;
    if (s->scale || s->rms) {
        s->igamma = l->nparams;
        kc_param *p = kc_layer_add_param(l, "gamma", shape, &s->gamma_init, 1);
        rc = kc_param_set_opts(p, &s->gamma_opts, l->name, e);
    }
    if (!rc && s->center && !s->rms) {
        s->ibeta = l->nparams;
        kc_param *p = kc_layer_add_param(l, "beta", shape, &s->beta_init, 1);
        rc = kc_param_set_opts(p, &s->beta_opts, l->name, e);
    }
    return rc;
}

static void plain_geometry(norm_state *s, const kc_shape *in) {
    s->rank = in->rank + 1;
    s->dims[0] = 1;
    for (int k = 0; k < in->rank; k++)
        s->dims[k + 1] = in->d[k];
}

static int norm_build(kc_layer *l, kc_error *e) {
    norm_state *s = l->state;
    const kc_shape *in = &l->in_shape;
    unsigned mask;
    int rc = resolve_axes(l, &mask, e);
    if (rc) return rc;
    l->out_shape = *in;
    plain_geometry(s, in);
    unsigned all = (1u << s->rank) - 1;
    kc_shape ps = {0};
    for (int k = 1; k < s->rank; k++)
        if (mask >> k & 1) ps.d[ps.rank++] = s->dims[k];
    if (s->kind == NORM_BATCH) {
        s->red = all & ~mask;
        s->par = mask;
    } else {
        s->red = s->par = mask;
    }
    if (!geometry_fits(s))
        return kc_layer_fail(l, e, "normalizing over these axes is not supported by kerasc");
    if (s->kind == NORM_UNIT) {
        s->igamma = s->ibeta = s->imean = s->ivar = -1;
        return KC_OK;
    }
    rc = add_gamma_beta(l, ps, e);
    if (!rc && s->kind == NORM_BATCH) {
        s->imean = l->nparams;
        kc_layer_add_param(l, "moving_mean", ps, &s->mean_init, 0);
        s->ivar = l->nparams;
        kc_layer_add_param(l, "moving_variance", ps, &s->var_init, 0);
    }
    return rc;
}

static int gn_build(kc_layer *l, kc_error *e) {
    norm_state *s = l->state;
    const kc_shape *in = &l->in_shape;
    unsigned mask;
    int rc = resolve_axes(l, &mask, e);
    if (rc) return rc;
    int ax = 1;
    while (!(mask >> ax & 1))
        ax++;
    int64_t dim = in->d[ax - 1];
    long long groups = s->groups == -1 ? dim : s->groups;
    if (dim < groups)
        return kc_layer_fail(l, e,
                             "Number of groups (%lld) cannot be more than the number of "
                             "channels (%lld).",
                             groups, (long long)dim);
    if (dim % groups)
        return kc_layer_fail(l, e,
                             "Number of groups (%lld) must be a multiple of the number of "
                             "channels (%lld).",
                             groups, (long long)dim);
    l->out_shape = *in;
    /* (batch, ..., groups, dim / groups, ...) */
    s->rank = in->rank + 2;
    s->dims[0] = 1;
    for (int k = 1, j = 1; k <= in->rank; k++) {
        if (k == ax) {
            s->dims[j++] = groups;
            s->dims[j++] = dim / groups;
        } else {
            s->dims[j++] = in->d[k - 1];
        }
    }
    unsigned all = (1u << s->rank) - 1;
    s->red = all & ~1u & ~(1u << ax);
    s->par = 3u << ax;
    if (!geometry_fits(s))
        return kc_layer_fail(l, e, "normalizing over these axes is not supported by kerasc");
    return add_gamma_beta(l, kc_shape1(dim), e);
}

/* ----------------------------------------------------------- workspace --- */

static size_t stat_floats(const norm_state *s, int batch) {
    return 2 * nstats(s, batch);
}

static size_t norm_buffer_bytes(const kc_layer *l, int max_batch, const kc_device *d) {
    (void)d;
    return stat_floats(l->state, max_batch) * sizeof(float);
}

/* T1..T4 and two reduction intermediates (numel each), two statistics
 * scratch rows, and room for the statistics when the layer has no buffer. */
static size_t norm_workspace_bytes(const kc_layer *l, int max_batch, const kc_device *d) {
    (void)d;
    const norm_state *s = l->state;
    return (6 * numel(s, max_batch) + 2 * stat_floats(s, max_batch)) * sizeof(float);
}

typedef struct norm_ws {
    kc_buf t[4], r0, r1, sa, sb, mean, inv;
} norm_ws;

static norm_ws carve(const kc_layer *l, const kc_exec *ex) {
    const norm_state *s = l->state;
    size_t n = numel(s, ex->batch), ns = nstats(s, ex->batch);
    norm_ws w;
    for (int i = 0; i < 4; i++)
        w.t[i] = kc_buf_f(ex->ws, (size_t)i * n);
    w.r0 = kc_buf_f(ex->ws, 4 * n);
    w.r1 = kc_buf_f(ex->ws, 5 * n);
    w.sa = kc_buf_f(ex->ws, 6 * n);
    w.sb = kc_buf_f(w.sa, ns);
    kc_buf st = kc_buf_ok(l->buf) ? l->buf : kc_buf_f(w.sb, ns);
    w.mean = st;
    w.inv = kc_buf_f(st, ns);
    return w;
}

/* y = alpha * R x + beta * y over the statistics axes */
static int reduce_stats(kc_device *d, const norm_state *s, int batch, kc_reduce_op op, float alpha,
                        kc_buf x, float beta, kc_buf y, const norm_ws *w) {
    int64_t dims[NORM_RANK];
    full_dims(s, batch, dims);
    return reduce_mask(d, op, dims, s->rank, s->red, alpha, x, beta, y, w->r0, w->r1);
}

/* Does this call normalize with the batch's own statistics? */
static int batch_stats(const kc_layer *l, const kc_exec *ex) {
    const norm_state *s = l->state;
    return s->kind != NORM_BATCH || (ex->training && l->trainable);
}

/* ------------------------------------------------------------- forward --- */

static void move_stat(kc_device *d, const norm_state *s, kc_buf moving, kc_buf batch, size_t n) {
    kc_scale(d, moving, (float)s->momentum, n);
    kc_axpy(d, (float)(1.0 - s->momentum), batch, moving, n);
}

/* w->mean and w->inv = 1 / sqrt(var + epsilon) */
static int compute_stats(kc_layer *l, const kc_exec *ex, kc_buf x, const norm_ws *w) {
    const norm_state *s = l->state;
    kc_device *d = ex->dev;
    size_t ns = nstats(s, ex->batch);
    if (!batch_stats(l, ex)) {
        kc_copy(d, w->mean, l->params[s->imean].value, ns * sizeof(float));
        kc_unary(d, KC_UN_ADD, (float)s->epsilon, l->params[s->ivar].value, w->inv, ns);
        return kc_unary(d, KC_UN_RSQRT, 0, w->inv, w->inv, ns);
    }
    float m = 1.0f / (float)reduced_count(s, ex->batch);
    reduce_stats(d, s, ex->batch, KC_RED_SUM, m, x, 0, w->mean, w);
    bin_masked(d, s, ex->batch, KC_BIN_SUB, x, ~s->red, w->mean, w->t[0]);
    reduce_stats(d, s, ex->batch, KC_RED_SUMSQ, m, w->t[0], 0, w->inv, w);
    if (s->kind == NORM_BATCH) {
        move_stat(d, s, l->params[s->imean].value, w->mean, ns);
        move_stat(d, s, l->params[s->ivar].value, w->inv, ns);
    }
    kc_unary(d, KC_UN_ADD, (float)s->epsilon, w->inv, w->inv, ns);
    return kc_unary(d, KC_UN_RSQRT, 0, w->inv, w->inv, ns);
}

/* xhat into t: (x - mean) inv, or x inv for rms_scaling */
static int normalized(const kc_layer *l, const kc_exec *ex, kc_buf x, const norm_ws *w, kc_buf t) {
    const norm_state *s = l->state;
    unsigned st = ~s->red;
    if (s->rms) return bin_masked(ex->dev, s, ex->batch, KC_BIN_MUL, x, st, w->inv, t);
    bin_masked(ex->dev, s, ex->batch, KC_BIN_SUB, x, st, w->mean, t);
    return bin_masked(ex->dev, s, ex->batch, KC_BIN_MUL, t, st, w->inv, t);
}

static int unit_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, const norm_ws *w) {
    const norm_state *s = l->state;
    kc_device *d = ex->dev;
    size_t ns = nstats(s, ex->batch);
    reduce_stats(d, s, ex->batch, KC_RED_SUMSQ, 1.0f, x, 0, w->inv, w);
    kc_unary(d, KC_UN_RSQRT, 0, w->inv, w->inv, ns);
    kc_unary(d, KC_UN_MIN, 1e12f, w->inv, w->inv, ns);
    return bin_masked(d, s, ex->batch, KC_BIN_MUL, x, ~s->red, w->inv, y);
}

static int norm_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const norm_state *s = l->state;
    kc_device *d = ex->dev;
    norm_ws w = carve(l, ex);
    if (s->kind == NORM_UNIT) return unit_forward(l, ex, x, y, &w);
    compute_stats(l, ex, x, &w);
    normalized(l, ex, x, &w, w.t[0]);
    kc_buf cur = w.t[0];
    if (s->igamma >= 0) {
        bin_masked(d, s, ex->batch, KC_BIN_MUL, cur, s->par, l->params[s->igamma].value, y);
        cur = y;
    }
    if (s->ibeta >= 0) {
        bin_masked(d, s, ex->batch, KC_BIN_ADD, cur, s->par, l->params[s->ibeta].value, y);
        cur = y;
    }
    if (!kc_buf_eq(cur, y)) kc_copy(d, y, cur, numel(s, ex->batch) * sizeof(float));
    return kc_device_status(d);
}

/* ------------------------------------------------------------ backward --- */

/* grad = sum of v over every axis gamma and beta do not vary along */
static void param_grad(kc_layer *l, const kc_exec *ex, int i, kc_buf v, const norm_ws *w) {
    const norm_state *s = l->state;
    kc_param *p = &l->params[i];
    if (!kc_layer_wants_grad(l, p)) return;
    int64_t dims[NORM_RANK];
    full_dims(s, ex->batch, dims);
    reduce_mask(ex->dev, KC_RED_SUM, dims, s->rank, ~s->par & ((1u << s->rank) - 1), 1.0f, v,
                ex->accumulate ? 1.0f : 0.0f, p->grad, w->r0, w->r1);
}

/* Parameters that get no gradient read as zero gradients (moving statistics). */
static void zero_unused_grads(kc_layer *l, const kc_exec *ex) {
    for (int i = 0; i < l->nparams && !ex->accumulate; i++) {
        kc_param *p = &l->params[i];
        if (kc_buf_ok(p->grad) && !kc_layer_wants_grad(l, p))
            kc_fill(ex->dev, p->grad, 0.0f, (size_t)kc_shape_numel(&p->shape));
    }
}

/* dx = inv (g - mean(g) - xcn mean(g xhat)) (the mean(g) term only when
 * centred); g is the gradient w.r.t. xhat, xcn = (x - mean) inv */
static int stats_dx(const kc_layer *l, const kc_exec *ex, kc_buf g, kc_buf xhat, kc_buf xcn,
                    kc_buf dx, const norm_ws *w) {
    const norm_state *s = l->state;
    kc_device *d = ex->dev;
    size_t n = numel(s, ex->batch);
    unsigned st = ~s->red;
    float m = 1.0f / (float)reduced_count(s, ex->batch);
    kc_binary_n(d, KC_BIN_MUL, g, xhat, w->t[3], n);
    reduce_stats(d, s, ex->batch, KC_RED_SUM, m, w->t[3], 0, w->sa, w);
    bin_masked(d, s, ex->batch, KC_BIN_MUL, xcn, st, w->sa, w->t[3]);
    kc_binary_n(d, KC_BIN_SUB, g, w->t[3], w->t[3], n);
    if (!s->rms) {
        reduce_stats(d, s, ex->batch, KC_RED_SUM, m, g, 0, w->sb, w);
        bin_masked(d, s, ex->batch, KC_BIN_SUB, w->t[3], st, w->sb, w->t[3]);
    }
    return bin_masked(d, s, ex->batch, KC_BIN_MUL, w->t[3], st, w->inv, dx);
}

/* y = x s, s = min(1 / sqrt(sum x^2), 1e12): dx = s (dy - y sum(dy y)) where
 * s is not clipped, s dy where it is */
static int unit_backward(kc_layer *l, const kc_exec *ex, kc_buf y, kc_buf dy, kc_buf dx,
                         const norm_ws *w) {
    const norm_state *s = l->state;
    kc_device *d = ex->dev;
    size_t n = numel(s, ex->batch), ns = nstats(s, ex->batch);
    unsigned st = ~s->red;
    kc_binary_n(d, KC_BIN_MUL, dy, y, w->t[0], n);
    reduce_stats(d, s, ex->batch, KC_RED_SUM, 1.0f, w->t[0], 0, w->sa, w);
    kc_unary(d, KC_UN_LT, 1e12f, w->inv, w->sb, ns);
    kc_binary_n(d, KC_BIN_MUL, w->sa, w->sb, w->sa, ns);
    bin_masked(d, s, ex->batch, KC_BIN_MUL, y, st, w->sa, w->t[0]);
    kc_binary_n(d, KC_BIN_SUB, dy, w->t[0], w->t[0], n);
    return bin_masked(d, s, ex->batch, KC_BIN_MUL, w->t[0], st, w->inv, dx);
}

static int norm_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    const norm_state *s = l->state;
    kc_device *d = ex->dev;
    size_t n = numel(s, ex->batch);
    unsigned st = ~s->red;
    norm_ws w = carve(l, ex);
    if (s->kind == NORM_UNIT) {
        if (kc_buf_ok(dx)) unit_backward(l, ex, y, dy, dx, &w);
        return kc_device_status(d);
    }
    zero_unused_grads(l, ex);
    /* t0 = xcn, t1 = xhat */
    bin_masked(d, s, ex->batch, KC_BIN_SUB, x, st, w.mean, w.t[0]);
    bin_masked(d, s, ex->batch, KC_BIN_MUL, w.t[0], st, w.inv, w.t[0]);
    kc_buf xhat = w.t[0];
    if (s->rms) {
        xhat = w.t[1];
        bin_masked(d, s, ex->batch, KC_BIN_MUL, x, st, w.inv, xhat);
    }
    if (s->igamma >= 0) {
        kc_binary_n(d, KC_BIN_MUL, dy, xhat, w.t[2], n);
        param_grad(l, ex, s->igamma, w.t[2], &w);
    }
    if (s->ibeta >= 0) param_grad(l, ex, s->ibeta, dy, &w);
    if (!kc_buf_ok(dx)) return kc_device_status(d);
    kc_buf g = dy;
    if (s->igamma >= 0) {
        bin_masked(d, s, ex->batch, KC_BIN_MUL, dy, s->par, l->params[s->igamma].value, w.t[2]);
        g = w.t[2];
    }
    if (batch_stats(l, ex)) return stats_dx(l, ex, g, xhat, w.t[0], dx, &w);
    return bin_masked(d, s, ex->batch, KC_BIN_MUL, g, st, w.inv, dx);
}

static int64_t norm_flops(const kc_layer *l) {
    return 8 * (int64_t)numel(l->state, 1);
}

/* --------------------------------------------------------------- classes --- */

#define NORM_CLASS(var, cls, base, conf, bld)                                                      \
    const kc_layer_class var = {                                                                   \
        .class_name = cls,                                                                         \
        .base_name = base,                                                                         \
        .state_size = sizeof(norm_state),                                                          \
        .configure = conf,                                                                         \
        .build = bld,                                                                              \
        .buffer_bytes = norm_buffer_bytes,                                                         \
        .workspace_bytes = norm_workspace_bytes,                                                   \
        .forward = norm_forward,                                                                   \
        .backward = norm_backward,                                                                 \
        .flops = norm_flops,                                                                       \
        .mask_rule = kc_mask_propagate,                                                            \
    }

NORM_CLASS(kc_batch_normalization_class, "BatchNormalization", "batch_normalization", bn_configure,
           norm_build);
NORM_CLASS(kc_layer_normalization_class, "LayerNormalization", "layer_normalization", ln_configure,
           norm_build);
NORM_CLASS(kc_group_normalization_class, "GroupNormalization", "group_normalization", gn_configure,
           gn_build);
NORM_CLASS(kc_unit_normalization_class, "UnitNormalization", "unit_normalization", un_configure,
           norm_build);

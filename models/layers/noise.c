/* Regularisation layers of Keras 3: GaussianNoise, GaussianDropout,
 * AlphaDropout, SpatialDropout1D/2D (random only while training, the
 * identity otherwise) and ActivityRegularization (the identity, with an
 * activity penalty on its output). Random numbers come from the counter RNG
 * keyed by (seed, stream(layer, step), index), the same on every backend. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/rng.h"
#include "models/layers/common.h"

typedef struct noise_state {
    double rate; /* stddev for GaussianNoise */
    int has_seed;
    long long seed;
} noise_state;

static size_t numel_of(const kc_layer *l, int batch) {
    return (size_t)kc_shape_numel(&l->in_shape) * (size_t)batch;
}

static int same_shape_build(kc_layer *l, kc_error *e) {
    l->out_shape = l->in_shape;
    return KC_OK;
}

/* `key` in [0, 1) (Keras accepts 1 but then divides by zero or drops all). */
static int read_rate(kc_layer *l, kc_args *a, const char *key, int allow_one, kc_error *e) {
    noise_state *s = l->state;
    int rc = kc_args_float(a, key, 1, 0.0, -INFINITY, INFINITY, &s->rate, e);
    if (rc) return rc;
    kc_node *n = kc_args_node(a, key);
    if (!(s->rate >= 0.0 && (allow_one ? s->rate <= 1.0 : s->rate < 1.0)))
        return kc_node_fail(e, n, "%s argument '%s' must be in [0, %s, got %g", a->owner, key,
                            allow_one ? "1]" : "1)", s->rate);
    s->has_seed = kc_args_has(a, "seed");
    if (s->has_seed) rc = kc_args_int(a, "seed", 0, 0, LLONG_MIN, LLONG_MAX, &s->seed, e);
    return rc;
}

static int noise_active(const kc_layer *l, const kc_exec *ex) {
    const noise_state *s = l->state;
    return ex->training && s->rate > 0.0;
}

static uint64_t noise_seed(const kc_layer *l, const kc_exec *ex) {
    const noise_state *s = l->state;
    return s->has_seed ? (uint64_t)s->seed : ex->seed;
}

static uint64_t noise_stream(const kc_layer *l, const kc_exec *ex) {
    return kc_rng_stream(l->cls->base_name, (uint64_t)l->index, ex->step);
}

/* The noise (or mask) of the last training forward, kept for backward. */
static size_t full_buffer(const kc_layer *l, int max_batch, const kc_device *d) {
    return numel_of(l, max_batch) * sizeof(float);
}

static int identity_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                             kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    return kc_layer_copy(ex->dev, dx, dy, numel_of(l, ex->batch));
}

/* dx = dy * buf while training, dy otherwise */
static int masked_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                           kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    size_t n = numel_of(l, ex->batch);
    if (noise_active(l, ex)) return kc_binary_n(ex->dev, KC_BIN_MUL, dy, l->buf, dx, n);
    return kc_layer_copy(ex->dev, dx, dy, n);
}

/* --------------------------------------------------------- GaussianNoise */

static int gaussian_noise_configure(kc_layer *l, kc_args *a, kc_error *e) {
    return read_rate(l, a, "stddev", 1, e);
}

/* y = x + N(0, stddev) */
static int gaussian_noise_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const noise_state *s = l->state;
    size_t n = numel_of(l, ex->batch);
    if (!noise_active(l, ex)) return kc_layer_copy(ex->dev, y, x, n);
    kc_rng_normal_fill(ex->dev, l->buf, n, 0.0f, (float)s->rate, noise_seed(l, ex),
                       noise_stream(l, ex));
    return kc_binary_n(ex->dev, KC_BIN_ADD, x, l->buf, y, n);
}

const kc_layer_class kc_gaussian_noise_class = {
    .class_name = "GaussianNoise",
    .mask_rule = kc_mask_propagate,
    .base_name = "gaussian_noise",
    .state_size = sizeof(noise_state),
    .configure = gaussian_noise_configure,
    .build = same_shape_build,
    .buffer_bytes = full_buffer,
    .forward = gaussian_noise_forward,
    .backward = identity_backward,
};

/* ------------------------------------------------------- GaussianDropout */

static int gaussian_dropout_configure(kc_layer *l, kc_args *a, kc_error *e) {
    return read_rate(l, a, "rate", 0, e);
}

/* y = x N(1, sqrt(rate / (1 - rate))) */
static int gaussian_dropout_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const noise_state *s = l->state;
    size_t n = numel_of(l, ex->batch);
    if (!noise_active(l, ex)) return kc_layer_copy(ex->dev, y, x, n);
    float stddev = (float)sqrt(s->rate / (1.0 - s->rate));
    kc_rng_normal_fill(ex->dev, l->buf, n, 1.0f, stddev, noise_seed(l, ex), noise_stream(l, ex));
    return kc_binary_n(ex->dev, KC_BIN_MUL, x, l->buf, y, n);
}

const kc_layer_class kc_gaussian_dropout_class = {
    .class_name = "GaussianDropout",
    .mask_rule = kc_mask_propagate,
    .base_name = "gaussian_dropout",
    .state_size = sizeof(noise_state),
    .configure = gaussian_dropout_configure,
    .build = same_shape_build,
    .buffer_bytes = full_buffer,
    .forward = gaussian_dropout_forward,
    .backward = masked_backward,
};

/* ---------------------------------------------------------- AlphaDropout */

#define SELU_ALPHA 1.6732632423543772848170429916717
#define SELU_SCALE 1.0507009873554804934193349852946

/* AlphaDropout's own state: the noise layers' fields first, so the shared
 * helpers read it as a noise_state. */
typedef struct alpha_state {
    noise_state base;
    int has_shape;
    int64_t shape[KC_MAX_RANK + 1]; /* noise_shape as given, batch first; -1 = null */
    int rank;
    const kc_node *node;
} alpha_state;

static int alpha_dropout_configure(kc_layer *l, kc_args *a, kc_error *e) {
    alpha_state *s = l->state;
    int rc = read_rate(l, a, "rate", 0, e);
    kc_node *ns = kc_args_node(a, "noise_shape");
    if (rc || !ns || kc_node_is_null(ns)) return rc;
    if (ns->kind != KC_NODE_SEQ || ns->n == 0 || ns->n > KC_MAX_RANK + 1)
        return kc_node_fail(e, ns,
                            "AlphaDropout argument 'noise_shape' must be a list of sizes or "
                            "nulls, one per input axis with the batch first");
    s->has_shape = 1;
    s->node = ns;
    s->rank = (int)ns->n;
    for (size_t i = 0; i < ns->n; i++) {
        long long v = -1; /* null: the input's size */
        if (!kc_node_is_null(ns->items[i])) {
            if (kc_node_int(ns->items[i], &v, e)) return KC_ECONFIG;
            if (v < 1 || v > INT32_MAX)
                return kc_node_fail(e, ns->items[i],
                                    "noise_shape sizes must be >= 1 or null, got %lld", v);
        }
        s->shape[i] = v;
    }
    return KC_OK;
}

/* Each noise_shape entry is null, 1, or the input's size (batch: null or 1). */
static int alpha_dropout_build(kc_layer *l, kc_error *e) {
    alpha_state *s = l->state;
    l->out_shape = l->in_shape;
    if (!s->has_shape) return KC_OK;
    if (s->rank != l->in_shape.rank + 1)
        return kc_layer_fail(l, e,
                             "noise_shape has %d entries, the input has rank %d (batch "
                             "included)",
                             s->rank, l->in_shape.rank + 1);
    if (s->shape[0] > 1) return kc_layer_fail(l, e, "noise_shape's batch entry must be null or 1");
    for (int i = 1; i < s->rank; i++)
        if (s->shape[i] != -1 && s->shape[i] != 1 && s->shape[i] != l->in_shape.d[i - 1])
            return kc_layer_fail(l, e, "noise_shape entry %d (%lld) does not broadcast to %lld", i,
                                 (long long)s->shape[i], (long long)l->in_shape.d[i - 1]);
    return KC_OK;
}

/* The mask's dims (batch first) and its element count. */
static size_t alpha_mask_dims(const kc_layer *l, int batch, int64_t *dims, int *rank) {
    const alpha_state *s = l->state;
    *rank = l->in_shape.rank + 1;
    dims[0] = batch;
    for (int i = 1; i < *rank; i++)
        dims[i] = l->in_shape.d[i - 1];
    if (s->has_shape)
        for (int i = 0; i < *rank; i++)
            if (s->shape[i] != -1) dims[i] = s->shape[i];
    size_t n = 1;
    for (int i = 0; i < *rank; i++)
        n *= (size_t)dims[i];
    return n;
}

static size_t alpha_buffer(const kc_layer *l, int max_batch, const kc_device *d) {
    int64_t dims[KC_MAX_RANK + 1];
    int rank;
    return alpha_mask_dims(l, max_batch, dims, &rank) * sizeof(float);
}

static size_t alpha_workspace(const kc_layer *l, int max_batch, const kc_device *d) {
    return 2 * alpha_buffer(l, max_batch, d);
}

static kc_bcast alpha_bcast(const kc_layer *l, int batch) {
    int64_t full[KC_MAX_RANK + 1], m[KC_MAX_RANK + 1];
    int rank;
    alpha_mask_dims(l, batch, m, &rank);
    full[0] = batch;
    for (int i = 1; i < rank; i++)
        full[i] = l->in_shape.d[i - 1];
    kc_bcast g;
    if (kc_bcast_make(&g, full, rank, m, rank, NULL)) g.rank = -1;
    return g;
}

/* Keras 3: kept = u >= rate over noise_shape; y = a (x kept + alpha_p (1 - kept)) + b
 * with alpha_p = -alpha scale, a = ((1 - rate)(1 + rate alpha_p^2))^-1/2,
 * b = -a alpha_p rate. buf keeps a kept for backward. */
static int alpha_dropout_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const noise_state *s = l->state;
    kc_device *d = ex->dev;
    size_t n = numel_of(l, ex->batch);
    if (!noise_active(l, ex) || !n) return kc_layer_copy(d, y, x, n);
    int64_t dims[KC_MAX_RANK + 1];
    int rank;
    size_t nm = alpha_mask_dims(l, ex->batch, dims, &rank);
    kc_bcast g = alpha_bcast(l, ex->batch);
    if (g.rank < 0) return kc_device_fail(d, KC_ECONFIG, "AlphaDropout noise_shape geometry");
    double p = s->rate, alpha_p = -SELU_ALPHA * SELU_SCALE;
    double a = pow((1.0 - p) * (1.0 + p * alpha_p * alpha_p), -0.5), b = -a * alpha_p * p;
    kc_buf t = ex->ws, u = kc_buf_f(ex->ws, nm);
    kc_fill(d, u, 1.0f, nm);
    kc_dropout_forward(d, u, u, l->buf, nm, (float)p, noise_seed(l, ex), noise_stream(l, ex));
    kc_unary(d, KC_UN_GT, 0.0f, l->buf, l->buf, nm);        /* kept: 1 or 0 */
    kc_unary(d, KC_UN_RSUB, 1.0f, l->buf, t, nm);           /* 1 - kept */
    kc_unary(d, KC_UN_MUL, (float)(a * alpha_p), t, t, nm); /* a alpha_p (1 - kept) */
    kc_unary(d, KC_UN_MUL, (float)a, l->buf, l->buf, nm);   /* a kept */
    kc_binary(d, KC_BIN_MUL, &g, x, l->buf, y);
    kc_unary(d, KC_UN_ADD, (float)b, y, y, n);
    return kc_binary(d, KC_BIN_ADD, &g, y, t, y);
}

static int alpha_dropout_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                                  kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    size_t n = numel_of(l, ex->batch);
    if (!noise_active(l, ex) || !n) return kc_layer_copy(ex->dev, dx, dy, n);
    kc_bcast g = alpha_bcast(l, ex->batch);
    return kc_binary(ex->dev, KC_BIN_MUL, &g, dy, l->buf, dx);
}

const kc_layer_class kc_alpha_dropout_class = {
    .class_name = "AlphaDropout",
    .mask_rule = kc_mask_propagate,
    .base_name = "alpha_dropout",
    .state_size = sizeof(alpha_state),
    .configure = alpha_dropout_configure,
    .build = alpha_dropout_build,
    .buffer_bytes = alpha_buffer,
    .workspace_bytes = alpha_workspace,
    .forward = alpha_dropout_forward,
    .backward = alpha_dropout_backward,
};

/* ---------------------------------------------- SpatialDropout1D and 2D */

static int spatial_configure(kc_layer *l, kc_args *a, kc_error *e) {
    int rc = read_rate(l, a, "rate", 0, e);
    if (!rc && !strcmp(l->cls->class_name, "SpatialDropout2D")) rc = kc_layer_data_format(a, e);
    return rc;
}

static int spatial_build(kc_layer *l, kc_error *e) {
    int want = strcmp(l->cls->class_name, "SpatialDropout1D") ? 3 : 2;
    if (l->in_shape.rank != want) {
        char buf[160];
        return kc_layer_fail(l, e, "expects inputs of rank %d (batch included), got %s", want + 1,
                             kc_shape_str(&l->in_shape, 1, buf, sizeof buf));
    }
    l->out_shape = l->in_shape;
    return KC_OK;
}

static int64_t channels(const kc_layer *l) {
    return l->in_shape.d[l->in_shape.rank - 1];
}

/* One mask value per (sample, channel): 1 / (1 - rate) or 0. */
static size_t spatial_buffer(const kc_layer *l, int max_batch, const kc_device *d) {
    return (size_t)channels(l) * (size_t)max_batch * sizeof(float);
}

static kc_bcast spatial_bcast(const kc_layer *l, int batch) {
    int64_t c = channels(l), cells = kc_shape_numel(&l->in_shape) / (c ? c : 1);
    int64_t a[3] = {batch, cells, c}, m[3] = {batch, 1, c};
    kc_bcast g;
    kc_bcast_make(&g, a, 3, m, 3, NULL); /* always broadcasts */
    return g;
}

static int spatial_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    kc_device *d = ex->dev;
    size_t n = numel_of(l, ex->batch), nm = (size_t)channels(l) * (size_t)ex->batch;
    if (!noise_active(l, ex) || !n) return kc_layer_copy(d, y, x, n);
    const noise_state *s = l->state;
    kc_buf t = ex->ws;
    kc_fill(d, t, 1.0f, nm);
    kc_dropout_forward(d, t, t, l->buf, nm, (float)s->rate, noise_seed(l, ex), noise_stream(l, ex));
    kc_bcast g = spatial_bcast(l, ex->batch);
    return kc_binary(d, KC_BIN_MUL, &g, x, l->buf, y);
}

static int spatial_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                            kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    size_t n = numel_of(l, ex->batch);
    if (!noise_active(l, ex) || !n) return kc_layer_copy(ex->dev, dx, dy, n);
    kc_bcast g = spatial_bcast(l, ex->batch);
    return kc_binary(ex->dev, KC_BIN_MUL, &g, dy, l->buf, dx);
}

const kc_layer_class kc_spatial_dropout1d_class = {
    .class_name = "SpatialDropout1D",
    .mask_rule = kc_mask_propagate,
    .base_name = "spatial_dropout1d",
    .state_size = sizeof(noise_state),
    .configure = spatial_configure,
    .build = spatial_build,
    .buffer_bytes = spatial_buffer,
    .workspace_bytes = spatial_buffer,
    .forward = spatial_forward,
    .backward = spatial_backward,
};

const kc_layer_class kc_spatial_dropout2d_class = {
    .class_name = "SpatialDropout2D",
    .mask_rule = kc_mask_propagate,
    .base_name = "spatial_dropout2d",
    .state_size = sizeof(noise_state),
    .configure = spatial_configure,
    .build = spatial_build,
    .buffer_bytes = spatial_buffer,
    .workspace_bytes = spatial_buffer,
    .forward = spatial_forward,
    .backward = spatial_backward,
};

/* ------------------------------------------------- ActivityRegularization */

/* Keras passes L1L2(l1, l2) as the layer's activity regularizer: the model
 * adds the penalty of this layer's output to the loss like any other. */
static int activity_configure(kc_layer *l, kc_args *a, kc_error *e) {
    kc_regularizer r = {0, 0};
    int rc = kc_args_float(a, "l1", 0, 0.0, 0.0, INFINITY, &r.l1, e);
    if (!rc) rc = kc_args_float(a, "l2", 0, 0.0, 0.0, INFINITY, &r.l2, e);
    if (!rc) l->activity_regularizer = r;
    return rc;
}

static int identity_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    return kc_layer_copy(ex->dev, y, x, numel_of(l, ex->batch));
}

const kc_layer_class kc_activity_regularization_class = {
    .class_name = "ActivityRegularization",
    .mask_rule = kc_mask_propagate,
    .base_name = "activity_regularization",
    .configure = activity_configure,
    .build = same_shape_build,
    .forward = identity_forward,
    .backward = identity_backward,
};

/* Dropout: scaled random zeroing while training, identity otherwise. */
#include <limits.h>
#include <math.h>
#include <stdio.h>

#include "core/rng.h"
#include "models/layers/common.h"

typedef struct dropout_state {
    double rate;
    int has_seed;
    long long seed;
} dropout_state;

static int dropout_configure(kc_layer *l, kc_args *a, kc_error *e) {
    dropout_state *s = l->state;
    int rc = kc_args_float(a, "rate", 1, 0.0, -INFINITY, INFINITY, &s->rate, e);
    if (rc) return rc;
    kc_node *n = kc_args_node(a, "rate");
    /* rate = 1 would drop everything and scale the rest by 1/0 */
    if (!(s->rate >= 0.0 && s->rate < 1.0))
        return kc_node_fail(e, n, "Dropout argument 'rate' must be in [0, 1), got %g", s->rate);
    kc_node *ns = kc_args_node(a, "noise_shape");
    if (ns && !kc_node_is_null(ns))
        return kc_node_fail(e, ns,
                            "Dropout argument 'noise_shape' is not supported yet by kerasc "
                            "(remove it or set it to null)");
    s->has_seed = kc_args_has(a, "seed");
    if (s->has_seed) rc = kc_args_int(a, "seed", 0, 0, LLONG_MIN, LLONG_MAX, &s->seed, e);
    return rc;
}

static int dropout_build(kc_layer *l, kc_error *e) {
    l->out_shape = l->in_shape;
    return KC_OK;
}

/* The mask of the last training forward, kept for backward. */
static size_t dropout_buffer(const kc_layer *l, int max_batch, const kc_device *d) {
    return (size_t)kc_shape_numel(&l->in_shape) * (size_t)max_batch * sizeof(float);
}

static int dropout_active(const kc_layer *l, const kc_exec *ex) {
    const dropout_state *s = l->state;
    return ex->training && s->rate > 0.0;
}

static int dropout_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const dropout_state *s = l->state;
    size_t n = (size_t)kc_shape_numel(&l->in_shape) * (size_t)ex->batch;
    if (!dropout_active(l, ex)) return kc_layer_copy(ex->dev, y, x, n);
    uint64_t seed = s->has_seed ? (uint64_t)s->seed : ex->seed;
    uint64_t stream = kc_rng_stream("dropout", (uint64_t)l->index, ex->step);
    return kc_dropout_forward(ex->dev, x, y, l->buf, n, (float)s->rate, seed, stream);
}

static int dropout_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                            kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    size_t n = (size_t)kc_shape_numel(&l->in_shape) * (size_t)ex->batch;
    if (dropout_active(l, ex)) return kc_mul(ex->dev, dy, l->buf, dx, n);
    return kc_layer_copy(ex->dev, dx, dy, n);
}

const kc_layer_class kc_dropout_class = {
    .class_name = "Dropout",
    .mask_rule = kc_mask_propagate,
    .base_name = "dropout",
    .state_size = sizeof(dropout_state),
    .configure = dropout_configure,
    .build = dropout_build,
    .buffer_bytes = dropout_buffer,
    .forward = dropout_forward,
    .backward = dropout_backward,
};

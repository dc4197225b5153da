/* Masking: steps whose features all equal mask_value become zeros and are
 * masked. keep[step] = any(x != mask_value over the last axis);
 * y = keep ? x : 0 (Keras's where, so an infinite masked input still gives 0),
 * and the same for the gradient. The output mask is keep. */
#include <math.h>
#include <stdio.h>

#include "models/layers/common.h"

typedef struct masking_state {
    double mask_value;
    int64_t steps, features; /* rows per sample, and the last axis */
} masking_state;

static int masking_configure(kc_layer *l, kc_args *a, kc_error *e) {
    masking_state *s = l->state;
    return kc_args_float(a, "mask_value", 0, 0.0, -INFINITY, INFINITY, &s->mask_value, e);
}

static int masking_build(kc_layer *l, kc_error *e) {
    masking_state *s = l->state;
    const kc_shape *in = &l->in_shape;
    if (in->rank < 1) {
        char buf[160];
        return kc_layer_fail(l, e, "expects an input with at least one axis, got %s",
                             kc_shape_str(in, 1, buf, sizeof buf));
    }
    s->features = in->d[in->rank - 1];
    s->steps = kc_shape_numel(in) / s->features;
    l->out_shape = *in;
    return KC_OK;
}

/* cond (full size) and keep (one per row), both in the workspace */
static size_t masking_workspace(const kc_layer *l, int max_batch, const kc_device *d) {
    const masking_state *s = l->state;
    size_t per = (size_t)(s->steps * (s->features + 1));
    return per * (size_t)max_batch * sizeof(float);
}

/* cond[r, f] = keep[r] = any(x[r, :] != mask_value); keep goes to `keep`. */
static int masking_cond(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf cond, kc_buf keep) {
    const masking_state *s = l->state;
    kc_device *d = ex->dev;
    size_t rows = (size_t)s->steps * (size_t)ex->batch, n = rows * (size_t)s->features;
    kc_unary(d, KC_UN_EQ, (float)s->mask_value, x, cond, n);
    kc_unary(d, KC_UN_RSUB, 1.0f, cond, cond, n); /* x != v, NaN included */
    kc_reduce_desc over = {(int64_t)rows, s->features, 1};
    kc_reduce(d, KC_RED_MAX, &over, 1.0f, cond, 0.0f, keep);
    kc_bcast g = kc_bcast_cols(rows, (size_t)s->features); /* cond <= keep: max is keep */
    return kc_binary(d, KC_BIN_MAX, &g, cond, keep, cond);
}

static int masking_apply(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf src, kc_buf dst,
                         kc_buf keep_out) {
    const masking_state *s = l->state;
    size_t rows = (size_t)s->steps * (size_t)ex->batch, n = rows * (size_t)s->features;
    kc_buf cond = ex->ws, keep = kc_buf_ok(keep_out) ? keep_out : kc_buf_f(ex->ws, n);
    masking_cond(l, ex, x, cond, keep);
    return kc_select(ex->dev, cond, src, cond, dst, n); /* cond is 0 where masked */
}

static int masking_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    kc_buf keep = l->in_shape.rank == 2 ? ex->mask_out : KC_BUF_NULL;
    return masking_apply(l, ex, x, x, y, keep);
}

static int masking_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                            kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    return masking_apply(l, ex, x, dy, dx, KC_BUF_NULL);
}

/* One mask value per step of axis 0: inputs of shape (batch, steps, features). */
static kc_mask_rule masking_mask_rule(const kc_layer *l) {
    return l->in_shape.rank == 2 ? KC_MASK_PRODUCE : KC_MASK_NONE;
}

const kc_layer_class kc_masking_class = {
    .class_name = "Masking",
    .base_name = "masking",
    .state_size = sizeof(masking_state),
    .configure = masking_configure,
    .build = masking_build,
    .workspace_bytes = masking_workspace,
    .forward = masking_forward,
    .backward = masking_backward,
    .mask_rule = masking_mask_rule,
};

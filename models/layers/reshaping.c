/* Flatten and Reshape: new per-sample shapes over the same row-major data. */
#include <stdio.h>
#include <string.h>

#include "models/layers/common.h"

typedef struct reshape_state {
    int64_t target[KC_MAX_RANK];
    int n;
} reshape_state;

static int copy_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    return kc_layer_copy(ex->dev, y, x, (size_t)kc_shape_numel(&l->out_shape) * (size_t)ex->batch);
}

static int copy_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    return kc_layer_copy(ex->dev, dx, dy, (size_t)kc_shape_numel(&l->in_shape) * (size_t)ex->batch);
}

/* ---- Flatten ---- */

static int flatten_configure(kc_layer *l, kc_args *a, kc_error *e) {
    return kc_layer_data_format(a, e);
}

static int flatten_build(kc_layer *l, kc_error *e) {
    l->out_shape = kc_shape1(kc_shape_numel(&l->in_shape));
    return KC_OK;
}

const kc_layer_class kc_flatten_class = {
    .class_name = "Flatten",
    .base_name = "flatten",
    .configure = flatten_configure,
    .build = flatten_build,
    .forward = copy_forward,
    .backward = copy_backward,
};

/* ---- Reshape ---- */

static int reshape_configure(kc_layer *l, kc_args *a, kc_error *e) {
    reshape_state *s = l->state;
    /* the batch axis takes one of the KC_MAX_RANK slots downstream */
    int rc = kc_args_int_list(a, "target_shape", 1, KC_MAX_RANK - 1, -1, s->target, &s->n, e);
    if (rc) return rc;
    int unknown = 0;
    for (int i = 0; i < s->n; i++) {
        if (s->target[i] == 0)
            return kc_node_fail(e, kc_args_node(a, "target_shape"),
                                "Reshape argument 'target_shape': dimensions must be positive "
                                "(or one -1 to infer), got 0");
        unknown += s->target[i] == -1;
    }
    if (unknown > 1)
        return kc_node_fail(e, kc_args_node(a, "target_shape"),
                            "Reshape argument 'target_shape': at most one dimension can be -1 "
                            "(inferred), got %d",
                            unknown);
    return KC_OK;
}

static int reshape_build(kc_layer *l, kc_error *e) {
    const reshape_state *s = l->state;
    int64_t in = kc_shape_numel(&l->in_shape), known = 1;
    int infer = -1;
    kc_shape out = kc_shape_make(s->n, s->target);
    for (int i = 0; i < s->n; i++) {
        if (s->target[i] == -1)
            infer = i;
        else
            known *= s->target[i];
    }
    if (infer >= 0 && known > 0 && in % known == 0) out.d[infer] = in / known;
    l->out_shape = out;
    if (kc_shape_numel(&out) == in && (infer < 0 || out.d[infer] > 0)) return KC_OK;
    char ib[160], tb[160];
    kc_shape_str(&l->in_shape, 0, ib, sizeof ib);
    kc_shape target = kc_shape_make(s->n, s->target);
    kc_shape_str(&target, 0, tb, sizeof tb);
    return kc_layer_fail(l, e,
                         "cannot reshape input %s (%lld values per sample) to target_shape %s: "
                         "the total size must be unchanged",
                         ib, (long long)in, tb);
}

const kc_layer_class kc_reshape_class = {
    .class_name = "Reshape",
    .base_name = "reshape",
    .state_size = sizeof(reshape_state),
    .configure = reshape_configure,
    .build = reshape_build,
    .forward = copy_forward,
    .backward = copy_backward,
};

/* Embedding: y[..., :] = embeddings[id, :] for integer ids given as floats.
 * The gradient is scattered into a zeroed dense gradient of the whole
 * matrix, as Keras applies it (every row's optimizer moments decay each
 * step). mask_zero produces the mask ids != 0. */
#include "models/layers/embedding.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models/layers/common.h"

extern const kc_layer_class kc_embedding_class;

typedef struct embedding_state {
    int64_t input_dim, output_dim;
    int mask_zero;
    long long input_length; /* 0: not given */
    const kc_node *input_length_node;
    kc_initializer init;
    kc_weight_opts opts;
} embedding_state;

static const char *const embedding_unsupported[] = {
    "weights", "lora_rank", "lora_alpha", "quantization_config", NULL,
};

static int embedding_configure(kc_layer *l, kc_args *a, kc_error *e) {
    embedding_state *s = l->state;
    long long in, out;
    int rc = kc_args_int(a, "input_dim", 1, 0, 1, LLONG_MAX, &in, e);
    if (!rc) rc = kc_args_int(a, "output_dim", 1, 0, 1, INT_MAX, &out, e);
    if (!rc && in > (1LL << 31))
        rc = kc_node_fail(e, kc_args_node(a, "input_dim"),
                          "Embedding argument 'input_dim' is too large: %lld (at most 2^31)", in);
    if (!rc) rc = kc_args_initializer(a, "embeddings_initializer", "uniform", &s->init, e);
    if (!rc) rc = kc_args_weight_opts(a, "embeddings", &s->opts, e);
    if (!rc) rc = kc_args_bool(a, "mask_zero", 0, &s->mask_zero, e);
    if (!rc && kc_args_has(a, "input_length")) {
        s->input_length_node = kc_args_node(a, "input_length");
        rc = kc_args_int(a, "input_length", 0, 0, 1, LLONG_MAX, &s->input_length, e);
    }
    if (!rc) rc = kc_layer_reject_unsupported(a, embedding_unsupported, e);
    s->input_dim = in;
    s->output_dim = out;
    return rc;
}

static int embedding_build(kc_layer *l, kc_error *e) {
    embedding_state *s = l->state;
    const kc_shape *in = &l->in_shape;
    char buf[160];
    if (in->rank < 1 || in->rank >= KC_MAX_RANK)
        return kc_layer_fail(l, e, "expects ids of 1 to %d axes per sample, got %s",
                             KC_MAX_RANK - 1, kc_shape_str(in, 1, buf, sizeof buf));
    if (s->input_length && in->d[0] != s->input_length)
        return kc_node_fail(e, s->input_length_node,
                            "layer '%s' (Embedding): input_length %lld does not match the input "
                            "shape %s",
                            l->name, s->input_length, kc_shape_str(in, 1, buf, sizeof buf));
    if (s->mask_zero && in->rank != 1)
        return kc_layer_fail(l, e,
                             "mask_zero needs ids of shape (batch, steps), got %s (a mask has one "
                             "value per step)",
                             kc_shape_str(in, 1, buf, sizeof buf));
    l->out_shape = *in;
    l->out_shape.d[in->rank] = s->output_dim;
    l->out_shape.rank = in->rank + 1;
    kc_param *p =
        kc_layer_add_param(l, "embeddings", kc_shape2(s->input_dim, s->output_dim), &s->init, 1);
    return kc_param_set_opts(p, &s->opts, l->name, e);
}

static size_t embedding_ids(const kc_layer *l, int batch) {
    return (size_t)kc_shape_numel(&l->in_shape) * (size_t)batch;
}

/* ex->mask_out = (ids != 0) */
static int embedding_mask(kc_device *d, kc_buf ids, kc_buf mask, size_t n) {
    kc_unary(d, KC_UN_EQ, 0.0f, ids, mask, n);
    return kc_unary(d, KC_UN_RSUB, 1.0f, mask, mask, n);
}

static int embedding_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const embedding_state *s = l->state;
    size_t n = embedding_ids(l, ex->batch);
    int rc = kc_embedding_forward(ex->dev, x, l->params[0].value, y, n, (size_t)s->input_dim,
                                  (size_t)s->output_dim);
    if (rc && !strncmp(ex->dev->err.msg, "embedding: ", 11)) /* this op's refusal */
        return kc_error_prefix(&ex->dev->err, "layer '%s' (Embedding)", l->name);
    if (rc) return rc;
    if (!rc && s->mask_zero && kc_buf_ok(ex->mask_out))
        rc = embedding_mask(ex->dev, x, ex->mask_out, n);
    return rc;
}

static int embedding_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                              kc_buf dx) {
    const embedding_state *s = l->state;
    kc_device *d = ex->dev;
    size_t n = embedding_ids(l, ex->batch);
    kc_param *w = &l->params[0];
    if (kc_layer_wants_grad(l, w)) {
        if (!ex->accumulate)
            kc_fill(d, w->grad, 0.0f, (size_t)s->input_dim * (size_t)s->output_dim);
        kc_embedding_backward(d, x, dy, w->grad, n, (size_t)s->input_dim, (size_t)s->output_dim);
    }
    if (kc_buf_ok(dx)) kc_fill(d, dx, 0.0f, n); /* ids take no gradient */
    return kc_device_status(d);
}

static kc_mask_rule embedding_mask_rule(const kc_layer *l) {
    const embedding_state *s = l->state;
    return s->mask_zero ? KC_MASK_PRODUCE : KC_MASK_NONE;
}

int kc_embedding_check_ids(const kc_layer *l, const float *ids, int64_t rows, int64_t row_size,
                           kc_error *e) {
    if (!l || l->cls != &kc_embedding_class || rows <= 0 || row_size <= 0) return KC_OK;
    const embedding_state *s = l->state;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < row_size; k++) {
            float v = ids[r * row_size + k];
            if (v >= 0.0f && floorf(v) == v && (double)v < (double)s->input_dim) continue;
            return kc_fail(e, KC_ECONFIG,
                           "layer '%s' (Embedding): sample %lld, position %lld: id %.9g is not a "
                           "whole number in [0, %lld) (input_dim %lld)",
                           l->name, (long long)r, (long long)k, v, (long long)s->input_dim,
                           (long long)s->input_dim);
        }
    return KC_OK;
}

const kc_layer_class kc_embedding_class = {
    .class_name = "Embedding",
    .base_name = "embedding",
    .state_size = sizeof(embedding_state),
    .configure = embedding_configure,
    .build = embedding_build,
    .forward = embedding_forward,
    .backward = embedding_backward,
    .mask_rule = embedding_mask_rule,
};

/* RepeatVector ((features) -> (n, features)) and Permute (the non-batch
 * axes reordered by Keras's 1-based `dims`): strided copies, with a sum
 * over the repeats for RepeatVector's gradient. */
#include <limits.h>
#include <stdio.h>

#include "models/layers/common.h"

/* ---- RepeatVector ---- */

typedef struct repeat_state {
    int n;
} repeat_state;

static int repeat_configure(kc_layer *l, kc_args *a, kc_error *e) {
    repeat_state *s = l->state;
    long long n;
    int rc = kc_args_int(a, "n", 1, 0, 1, INT_MAX, &n, e);
    s->n = (int)n;
    return rc;
}

static int repeat_build(kc_layer *l, kc_error *e) {
    const repeat_state *s = l->state;
    const kc_shape *in = &l->in_shape;
    char ib[160];
    if (in->rank != 1)
        return kc_layer_fail(l, e, "expects an input of shape (features,), got %s",
                             kc_shape_str(in, 1, ib, sizeof ib));
    if (in->d[0] > INT_MAX / s->n)
        return kc_layer_fail(l, e, "n %d makes input %s too large", s->n,
                             kc_shape_str(in, 1, ib, sizeof ib));
    l->out_shape = kc_shape2(s->n, in->d[0]);
    return KC_OK;
}

static int repeat_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const repeat_state *s = l->state;
    int64_t f = l->in_shape.d[0];
    kc_copy_desc g = {3, {ex->batch, s->n, f}, {f, 0, 1}, {s->n * f, f, 1}};
    return kc_copy_strided(ex->dev, KC_COPY_SET, &g, x, y);
}

/* dx[b, f] = sum over the copies of dy[b, i, f] */
static int repeat_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                           kc_buf dx) {
    const repeat_state *s = l->state;
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    kc_reduce_desc g = {ex->batch, s->n, l->in_shape.d[0]};
    return kc_reduce(ex->dev, KC_RED_SUM, &g, 1.0f, dy, 0.0f, dx);
}

const kc_layer_class kc_repeat_vector_class = {
    .class_name = "RepeatVector",
    .base_name = "repeat_vector",
    .state_size = sizeof(repeat_state),
    .configure = repeat_configure,
    .build = repeat_build,
    .forward = repeat_forward,
    .backward = repeat_backward,
};

/* ---- Permute ---- */

#define PERMUTE_MAX (KC_COPY_RANK - 1) /* axes besides the batch */

typedef struct permute_state {
    int n;
    int dims[PERMUTE_MAX]; /* 0-based: output axis i is input axis dims[i] */
} permute_state;

static int permute_configure(kc_layer *l, kc_args *a, kc_error *e) {
    permute_state *s = l->state;
    int64_t v[PERMUTE_MAX + 1];
    int n = 0;
    int rc = kc_args_int_list(a, "dims", 1, PERMUTE_MAX + 1, 1, v, &n, e);
    if (rc) return rc;
    kc_node *where = kc_args_node(a, "dims");
    if (n > PERMUTE_MAX)
        return kc_node_fail(e, where, "%s argument 'dims': at most %d axes are supported, got %d",
                            a->owner, PERMUTE_MAX, n);
    int seen[PERMUTE_MAX] = {0};
    int ok = n >= 1;
    for (int i = 0; ok && i < n; i++) {
        ok = v[i] >= 1 && v[i] <= n && !seen[v[i] - 1];
        if (ok) seen[v[i] - 1] = 1;
    }
    if (!ok) {
        char got[128] = "";
        size_t len = 0;
        for (int i = 0; i < n && len < sizeof got - 24; i++)
            len += (size_t)snprintf(got + len, sizeof got - len, "%s%lld", i ? ", " : "",
                                    (long long)v[i]);
        return kc_node_fail(e, where,
                            "%s argument 'dims': the set of indices must be consecutive and start "
                            "from 1 (a permutation of 1 .. %d), got [%s]",
                            a->owner, n, got);
    }
    s->n = n;
    for (int i = 0; i < n; i++)
        s->dims[i] = (int)v[i] - 1;
    return KC_OK;
}

static int permute_build(kc_layer *l, kc_error *e) {
    const permute_state *s = l->state;
    const kc_shape *in = &l->in_shape;
    char ib[160];
    if (in->rank != s->n)
        return kc_layer_fail(l, e, "dims has %d axes but the input %s has %d (besides the batch)",
                             s->n, kc_shape_str(in, 1, ib, sizeof ib), in->rank);
    l->out_shape = *in;
    for (int i = 0; i < s->n; i++)
        l->out_shape.d[i] = in->d[s->dims[i]];
    return KC_OK;
}

/* The copy over the output's index space (batch first): contiguous on the
 * output side, the input's strides of the permuted axes on the other. */
static kc_copy_desc permute_desc(const kc_layer *l, int batch, int to_output) {
    const permute_state *s = l->state;
    int64_t in_stride[PERMUTE_MAX], out_stride[PERMUTE_MAX], acc = 1;
    for (int k = s->n - 1; k >= 0; k--) {
        in_stride[k] = acc;
        acc *= l->in_shape.d[k];
    }
    acc = 1;
    for (int k = s->n - 1; k >= 0; k--) {
        out_stride[k] = acc;
        acc *= l->out_shape.d[k];
    }
    kc_copy_desc g = {s->n + 1, {batch}, {acc}, {acc}};
    for (int i = 0; i < s->n; i++) {
        g.dims[i + 1] = l->out_shape.d[i];
        int64_t from = in_stride[s->dims[i]];
        g.ss[i + 1] = to_output ? from : out_stride[i];
        g.ds[i + 1] = to_output ? out_stride[i] : from;
    }
    return g;
}

static int permute_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    kc_copy_desc g = permute_desc(l, ex->batch, 1);
    return kc_copy_strided(ex->dev, KC_COPY_SET, &g, x, y);
}

static int permute_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                            kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    kc_copy_desc g = permute_desc(l, ex->batch, 0);
    return kc_copy_strided(ex->dev, KC_COPY_SET, &g, dy, dx);
}

const kc_layer_class kc_permute_class = {
    .class_name = "Permute",
    .base_name = "permute",
    .state_size = sizeof(permute_state),
    .configure = permute_configure,
    .build = permute_build,
    .forward = permute_forward,
    .backward = permute_backward,
};

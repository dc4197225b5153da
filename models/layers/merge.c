/* Merge layers (Keras 3 semantics): Add, Subtract, Multiply, Average,
 * Maximum, Minimum over inputs that broadcast to one shape; Concatenate
 * along an axis; Dot (batch_dot along a pair of axes, optionally of
 * L2-normalized inputs).
 *
 * Everything runs on device ops. Maximum and Minimum keep, per input after
 * the first, the 0/1 mask of where that input won the running fold (Keras
 * folds left to right and a tie keeps the earlier value, which is where
 * TensorFlow sends the gradient too); the value and the gradient are selected
 * with the mask, so the result is exactly the larger (smaller) input. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "models/layers/common.h"

static size_t numel_of(const kc_shape *s, int batch) {
    return (size_t)kc_shape_numel(s) * (size_t)batch;
}

/* "(None, 4), (None, 5)" */
static void shapes_str(const kc_layer *l, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < l->ninputs && used + 4 < n; i++) {
        char s[160];
        kc_shape_str(&l->in_shapes[i], 1, s, sizeof s);
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "", s);
    }
}

/* Merge layers have no arguments beyond the common ones. */
static int merge_configure(kc_layer *l, kc_args *a, kc_error *e) {
    return KC_OK;
}

/* ---- elementwise: Add, Subtract, Multiply, Average, Maximum, Minimum ---- */

/* Inputs of different shapes broadcast as Keras's Merge does: shapes align
 * at their last axes (a shorter one gains leading 1s), and an axis of 1
 * stretches to the other's size. An input whose shape differs from the
 * output's is expanded into the workspace before the same-shape op runs,
 * and its full-size gradient is summed back over the stretched axes. */
typedef struct bcast_state {
    int any;                                        /* some input is broadcast */
    int rank;                                       /* of the output, per sample */
    int expand[KC_LAYER_MAX_INPUTS];                /* input i differs from the output */
    int64_t dims[KC_LAYER_MAX_INPUTS][KC_MAX_RANK]; /* input i padded to rank with 1s */
} bcast_state;

static int bcast_fail(kc_layer *l, kc_error *e, const kc_shape *a, const kc_shape *b) {
    char all[1024], sa[160], sb[160];
    shapes_str(l, all, sizeof all);
    return kc_layer_fail(l, e, "inputs have incompatible shapes %s: received shapes %s and %s", all,
                         kc_shape_str(a, 0, sa, sizeof sa), kc_shape_str(b, 0, sb, sizeof sb));
}

/* Keras's _compute_elemwise_op_output_shape for a pair. */
static int bcast_pair(kc_layer *l, kc_error *e, kc_shape a, const kc_shape *b, kc_shape *out) {
    const kc_shape *lo = a.rank >= b->rank ? b : &a, *hi = a.rank >= b->rank ? &a : b;
    kc_shape r = *hi;
    for (int k = 0; k < lo->rank; k++) {
        int64_t i = hi->d[hi->rank - lo->rank + k], j = lo->d[k];
        if (i != j && i != 1 && j != 1) return bcast_fail(l, e, hi, lo);
        r.d[hi->rank - lo->rank + k] = i == 1 ? j : i;
    }
    *out = r;
    return KC_OK;
}

static int same_shapes_build(kc_layer *l, kc_error *e) {
    bcast_state *s = l->state;
    kc_shape out = l->in_shapes[0];
    for (int i = 1; i < l->ninputs; i++)
        if (bcast_pair(l, e, out, &l->in_shapes[i], &out)) return e->code;
    l->out_shape = out;
    s->rank = out.rank;
    s->any = 0;
    for (int i = 0; i < l->ninputs; i++) {
        const kc_shape *in = &l->in_shapes[i];
        s->expand[i] = !kc_shape_equal(in, &out);
        s->any |= s->expand[i];
        for (int k = 0; k < out.rank; k++)
            s->dims[i][k] = k < out.rank - in->rank ? 1 : in->d[k - (out.rank - in->rank)];
    }
    return KC_OK;
}

static int64_t elementwise_flops(const kc_layer *l) {
    return kc_shape_numel(&l->out_shape) * (l->ninputs > 1 ? l->ninputs - 1 : 1);
}

static int add_forward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y) {
    kc_device *d = ex->dev;
    size_t n = numel_of(&l->out_shape, ex->batch);
    kc_layer_copy(d, y, x[0], n);
    for (int i = 1; i < l->ninputs; i++)
        kc_axpy(d, 1.0f, x[i], y, n);
    return kc_device_status(d);
}

static int add_backward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y, kc_buf dy,
                        const kc_buf *dx) {
    size_t n = numel_of(&l->out_shape, ex->batch);
    for (int i = 0; i < l->ninputs; i++)
        if (kc_buf_ok(dx[i])) kc_layer_copy(ex->dev, dx[i], dy, n);
    return kc_device_status(ex->dev);
}

static int subtract_forward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y) {
    size_t n = numel_of(&l->out_shape, ex->batch);
    kc_layer_copy(ex->dev, y, x[0], n);
    return kc_axpy(ex->dev, -1.0f, x[1], y, n);
}

static int subtract_backward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y, kc_buf dy,
                             const kc_buf *dx) {
    size_t n = numel_of(&l->out_shape, ex->batch);
    if (kc_buf_ok(dx[0])) kc_layer_copy(ex->dev, dx[0], dy, n);
    if (kc_buf_ok(dx[1])) kc_unary(ex->dev, KC_UN_MUL, -1.0f, dy, dx[1], n);
    return kc_device_status(ex->dev);
}

static int average_forward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y) {
    add_forward(l, ex, x, y);
    return kc_scale(ex->dev, y, 1.0f / (float)l->ninputs, numel_of(&l->out_shape, ex->batch));
}

static int average_backward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y, kc_buf dy,
                            const kc_buf *dx) {
    size_t n = numel_of(&l->out_shape, ex->batch);
    for (int i = 0; i < l->ninputs; i++)
        if (kc_buf_ok(dx[i])) kc_unary(ex->dev, KC_UN_MUL, 1.0f / (float)l->ninputs, dy, dx[i], n);
    return kc_device_status(ex->dev);
}

/* Running products go through the workspace so no op reads and writes one buffer. */
static size_t multiply_workspace(const kc_layer *l, int max_batch, const kc_device *d) {
    return l->ninputs > 2 ? numel_of(&l->out_shape, max_batch) * sizeof(float) : 0;
}

/* out = prod of x[i] over i != skip (skip = -1: all), in input order. */
static int product(const kc_layer *l, const kc_exec *ex, const kc_buf *x, int skip, kc_buf out,
                   size_t n) {
    kc_device *d = ex->dev;
    kc_buf tmp = ex->ws;
    int first = skip == 0 ? 1 : 0, count = l->ninputs - (skip >= 0);
    if (count == 1) return kc_layer_copy(d, out, x[first], n);
    /* alternate between tmp and out so that the last product lands in out */
    int left = count - 1; /* multiplications still to do */
    kc_buf acc = x[first];
    for (int i = first + 1; i < l->ninputs; i++) {
        if (i == skip) continue;
        kc_buf dst = (left % 2 == 1) ? out : tmp;
        kc_mul(d, acc, x[i], dst, n);
        acc = dst;
        left--;
    }
    return kc_device_status(d);
}

static int multiply_forward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y) {
    return product(l, ex, x, -1, y, numel_of(&l->out_shape, ex->batch));
}

static int multiply_backward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y, kc_buf dy,
                             const kc_buf *dx) {
    kc_device *d = ex->dev;
    size_t n = numel_of(&l->out_shape, ex->batch);
    for (int i = 0; i < l->ninputs; i++) {
        if (!kc_buf_ok(dx[i])) continue;
        if (l->ninputs == 1) {
            kc_layer_copy(d, dx[i], dy, n);
            continue;
        }
        /* dx_i = dy * prod_{j != i} x_j; with two inputs the product is x_other itself */
        if (l->ninputs == 2) {
            kc_mul(d, dy, x[1 - i], dx[i], n);
            continue;
        }
        kc_buf others = kc_buf_f(ex->ws, n);
        product(l, ex, x, i, others, n);
        kc_mul(d, dy, others, dx[i], n);
    }
    return kc_device_status(d);
}

static size_t multiply_backward_workspace(const kc_layer *l, int max_batch, const kc_device *d) {
    return l->ninputs > 2 ? 2 * numel_of(&l->out_shape, max_batch) * sizeof(float) : 0;
}

/* Maximum / Minimum: the per-node buffer holds ninputs - 1 masks. */
static size_t extreme_buffer(const kc_layer *l, int max_batch, const kc_device *d) {
    return (size_t)(l->ninputs - 1) * numel_of(&l->out_shape, max_batch) * sizeof(float);
}

/* backward's running gradient and a buffer of zeros */
static size_t extreme_workspace(const kc_layer *l, int max_batch, const kc_device *d) {
    return l->ninputs > 1 ? 2 * numel_of(&l->out_shape, max_batch) * sizeof(float) : 0;
}

static kc_buf extreme_mask(const kc_layer *l, int i, size_t n) {
    return kc_buf_f(l->buf, (size_t)(i - 1) * n);
}

static int extreme_forward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y,
                           kc_binary_op beats) {
    kc_device *d = ex->dev;
    size_t n = numel_of(&l->out_shape, ex->batch);
    kc_layer_copy(d, y, x[0], n);
    for (int i = 1; i < l->ninputs; i++) {
        kc_buf mask = extreme_mask(l, i, n);
        kc_binary_n(d, beats, x[i], y, mask, n); /* strictly: a tie keeps the running value */
        kc_select(d, mask, x[i], y, y, n);
    }
    return kc_device_status(d);
}

static int extreme_backward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y, kc_buf dy,
                            const kc_buf *dx) {
    kc_device *d = ex->dev;
    size_t n = numel_of(&l->out_shape, ex->batch);
    if (l->ninputs == 1) {
        if (kc_buf_ok(dx[0])) kc_layer_copy(d, dx[0], dy, n);
        return kc_device_status(d);
    }
    kc_buf g = ex->ws, zeros = kc_buf_f(ex->ws, n);
    kc_layer_copy(d, g, dy, n);
    kc_fill(d, zeros, 0.0f, n);
    /* unwind the fold: input i takes g where it won, the running value keeps the rest */
    for (int i = l->ninputs - 1; i >= 1; i--) {
        kc_buf mask = extreme_mask(l, i, n);
        if (kc_buf_ok(dx[i])) kc_select(d, mask, g, zeros, dx[i], n);
        kc_select(d, mask, zeros, g, g, n);
    }
    if (kc_buf_ok(dx[0])) kc_layer_copy(d, dx[0], g, n);
    return kc_device_status(d);
}

static int maximum_forward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y) {
    return extreme_forward(l, ex, x, y, KC_BIN_GT);
}

static int minimum_forward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y) {
    return extreme_forward(l, ex, x, y, KC_BIN_LT);
}

static size_t max_of_workspace(const kc_layer *l, int max_batch, const kc_device *d) {
    size_t a = multiply_workspace(l, max_batch, d),
           b = multiply_backward_workspace(l, max_batch, d);
    return a > b ? a : b;
}

typedef int (*ew_forward_fn)(kc_layer *, const kc_exec *, const kc_buf *, kc_buf);
typedef int (*ew_backward_fn)(kc_layer *, const kc_exec *, const kc_buf *, kc_buf, kc_buf,
                              const kc_buf *);
typedef size_t (*ew_workspace_fn)(const kc_layer *, int, const kc_device *);

static size_t inner_floats(const kc_layer *l, int max_batch, const kc_device *d,
                           ew_workspace_fn ws) {
    return ws ? (ws(l, max_batch, d) + sizeof(float) - 1) / sizeof(float) : 0;
}

/* The same-shape op's scratch, then per broadcast input its expanded value
 * and its full-size gradient, then one buffer for the reductions. */
static size_t bcast_workspace(const kc_layer *l, int max_batch, const kc_device *d,
                              ew_workspace_fn ws) {
    const bcast_state *s = l->state;
    size_t inner = inner_floats(l, max_batch, d, ws), slots = 0;
    if (!s->any) return inner * sizeof(float);
    for (int i = 0; i < l->ninputs; i++)
        slots += (size_t)s->expand[i];
    return (inner + (2 * slots + 1) * numel_of(&l->out_shape, max_batch)) * sizeof(float);
}

/* The workspace slot `k` (of size n) after the same-shape op's scratch. */
static kc_buf bcast_slot(const kc_layer *l, const kc_exec *ex, ew_workspace_fn ws, size_t k) {
    size_t n = numel_of(&l->out_shape, ex->batch);
    return kc_buf_f(ex->ws, inner_floats(l, ex->batch, ex->dev, ws) + k * n);
}

/* Input i repeated over its stretched axes into dst (batch, output shape). */
static int bcast_expand(const kc_layer *l, const kc_exec *ex, int i, kc_buf x, kc_buf dst) {
    const bcast_state *s = l->state;
    const kc_shape *out = &l->out_shape;
    kc_copy_desc g = {s->rank + 1, {ex->batch}, {0}, {0}};
    int64_t ss = 1, ds = 1;
    for (int k = s->rank - 1; k >= 0; k--) {
        g.dims[k + 1] = out->d[k];
        g.ss[k + 1] = s->dims[i][k] == 1 ? 0 : ss;
        g.ds[k + 1] = ds;
        ss *= s->dims[i][k];
        ds *= out->d[k];
    }
    g.ss[0] = ss;
    g.ds[0] = ds;
    return kc_copy_strided(ex->dev, KC_COPY_SET, &g, x, dst);
}

/* x with every broadcast input replaced by its expansion. */
static void bcast_inputs(const kc_layer *l, const kc_exec *ex, ew_workspace_fn ws, const kc_buf *x,
                         kc_buf *xs) {
    const bcast_state *s = l->state;
    size_t k = 0;
    for (int i = 0; i < l->ninputs; i++) {
        xs[i] = x[i];
        if (!s->expand[i]) continue;
        xs[i] = bcast_slot(l, ex, ws, k++);
        bcast_expand(l, ex, i, x[i], xs[i]);
    }
}

static int bcast_forward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y,
                         ew_forward_fn fwd, ew_workspace_fn ws) {
    const bcast_state *s = l->state;
    if (!s->any) return fwd(l, ex, x, y);
    kc_buf xs[KC_LAYER_MAX_INPUTS];
    bcast_inputs(l, ex, ws, x, xs);
    return fwd(l, ex, xs, y);
}

/* dx = g summed over input i's stretched axes, one axis at a time, between
 * g and the spare buffer. g is overwritten. */
static int bcast_reduce(const kc_layer *l, const kc_exec *ex, int i, kc_buf g, kc_buf spare,
                        kc_buf dx) {
    const bcast_state *s = l->state;
    int64_t cur[KC_MAX_RANK + 1] = {ex->batch};
    int last = -1;
    for (int k = 0; k < s->rank; k++) {
        cur[k + 1] = l->out_shape.d[k];
        if (s->dims[i][k] == 1 && cur[k + 1] > 1) last = k;
    }
    if (last < 0) /* only leading axes of 1 were added */
        return kc_layer_copy(ex->dev, dx, g, numel_of(&l->out_shape, ex->batch));
    kc_buf src = g, tmp[2] = {spare, g};
    int flip = 0;
    for (int k = 0; k <= last; k++) {
        if (s->dims[i][k] != 1 || cur[k + 1] == 1) continue;
        kc_reduce_desc r = {1, cur[k + 1], 1};
        for (int j = 0; j <= k; j++)
            r.outer *= cur[j];
        for (int j = k + 2; j <= s->rank; j++)
            r.inner *= cur[j];
        kc_buf dst = k == last ? dx : tmp[flip];
        kc_reduce(ex->dev, KC_RED_SUM, &r, 1.0f, src, 0.0f, dst);
        src = dst;
        flip ^= 1;
        cur[k + 1] = 1;
    }
    return kc_device_status(ex->dev);
}

static int bcast_backward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y, kc_buf dy,
                          const kc_buf *dx, ew_backward_fn bwd, ew_workspace_fn ws) {
    const bcast_state *s = l->state;
    if (!s->any) return bwd(l, ex, x, y, dy, dx);
    kc_buf xs[KC_LAYER_MAX_INPUTS], gs[KC_LAYER_MAX_INPUTS];
    bcast_inputs(l, ex, ws, x, xs);
    size_t slots = 0;
    for (int i = 0; i < l->ninputs; i++)
        slots += (size_t)s->expand[i];
    size_t k = slots;
    for (int i = 0; i < l->ninputs; i++) {
        gs[i] = dx[i];
        if (s->expand[i] && kc_buf_ok(dx[i])) gs[i] = bcast_slot(l, ex, ws, k);
        k += (size_t)s->expand[i];
    }
    int rc = bwd(l, ex, xs, y, dy, gs);
    if (rc) return rc;
    kc_buf spare = bcast_slot(l, ex, ws, 2 * slots);
    for (int i = 0; i < l->ninputs; i++)
        if (s->expand[i] && kc_buf_ok(dx[i])) bcast_reduce(l, ex, i, gs[i], spare, dx[i]);
    return kc_device_status(ex->dev);
}

#define ELEMENTWISE_CLASS(var, cls_name, base, min_in, max_in, fwd, bwd, buf, ws)                  \
    static int var##_forward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y) {          \
        return bcast_forward(l, ex, x, y, fwd, ws);                                                \
    }                                                                                              \
    static int var##_backward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y,           \
                              kc_buf dy, const kc_buf *dx) {                                       \
        return bcast_backward(l, ex, x, y, dy, dx, bwd, ws);                                       \
    }                                                                                              \
    static size_t var##_workspace(const kc_layer *l, int max_batch, const kc_device *d) {          \
        return bcast_workspace(l, max_batch, d, ws);                                               \
    }                                                                                              \
    const kc_layer_class var = {                                                                   \
        .class_name = cls_name,                                                                    \
        .base_name = base,                                                                         \
        .state_size = sizeof(bcast_state),                                                         \
        .configure = merge_configure,                                                              \
        .buffer_bytes = buf,                                                                       \
        .workspace_bytes = var##_workspace,                                                        \
        .flops = elementwise_flops,                                                                \
        .mask_rule = kc_mask_propagate,                                                            \
        .min_inputs = min_in,                                                                      \
        .max_inputs = max_in,                                                                      \
        .build_n = same_shapes_build,                                                              \
        .forward_n = var##_forward,                                                                \
        .backward_n = var##_backward,                                                              \
    }

ELEMENTWISE_CLASS(kc_add_class, "Add", "add", 1, 0, add_forward, add_backward, NULL, NULL);
ELEMENTWISE_CLASS(kc_subtract_class, "Subtract", "subtract", 2, 2, subtract_forward,
                  subtract_backward, NULL, NULL);
ELEMENTWISE_CLASS(kc_multiply_class, "Multiply", "multiply", 1, 0, multiply_forward,
                  multiply_backward, NULL, max_of_workspace);
ELEMENTWISE_CLASS(kc_average_class, "Average", "average", 1, 0, average_forward, average_backward,
                  NULL, NULL);
ELEMENTWISE_CLASS(kc_maximum_class, "Maximum", "maximum", 1, 0, maximum_forward, extreme_backward,
                  extreme_buffer, extreme_workspace);
ELEMENTWISE_CLASS(kc_minimum_class, "Minimum", "minimum", 1, 0, minimum_forward, extreme_backward,
                  extreme_buffer, extreme_workspace);

/* ---- Concatenate ---- */

typedef struct concat_state {
    long long axis;                     /* as given: counts the batch axis, negative from the end */
    int p;                              /* the axis in the per-sample shape */
    int64_t outer;                      /* per sample: product of the axes before p */
    int64_t inner[KC_LAYER_MAX_INPUTS]; /* per input: size of axis p times the axes after it */
    int64_t total;                      /* sum of inner */
} concat_state;

static int concat_configure(kc_layer *l, kc_args *a, kc_error *e) {
    concat_state *s = l->state;
    return kc_args_int(a, "axis", 0, -1, INT_MIN, INT_MAX, &s->axis, e);
}

static int concat_build(kc_layer *l, kc_error *e) {
    concat_state *s = l->state;
    const kc_shape *first = &l->in_shapes[0];
    int full = first->rank + 1; /* Keras's axis counts the batch axis */
    long long ax = s->axis < 0 ? s->axis + full : s->axis;
    char all[1024];
    shapes_str(l, all, sizeof all);
    if (ax < 0 || ax >= full)
        return kc_layer_fail(l, e, "axis %lld is out of range for inputs of rank %d (%s)", s->axis,
                             full, all);
    if (ax == 0)
        return kc_layer_fail(l, e,
                             "axis %lld is the batch axis; concatenate along an axis of the "
                             "samples (1 .. %d, or -1 for the last)",
                             s->axis, full - 1);
    s->p = (int)ax - 1;
    kc_shape out = *first;
    out.d[s->p] = 0;
    for (int i = 0; i < l->ninputs; i++) {
        const kc_shape *in = &l->in_shapes[i];
        int ok = in->rank == first->rank;
        for (int k = 0; ok && k < in->rank; k++)
            ok = k == s->p || in->d[k] == first->d[k];
        if (!ok)
            return kc_layer_fail(l, e,
                                 "inputs must have the same shape except along axis %lld, got %s",
                                 s->axis, all);
        out.d[s->p] += in->d[s->p];
    }
    s->outer = 1;
    for (int k = 0; k < s->p; k++)
        s->outer *= first->d[k];
    s->total = 0;
    for (int i = 0; i < l->ninputs; i++) {
        int64_t after = 1;
        for (int k = s->p + 1; k < first->rank; k++)
            after *= first->d[k];
        s->inner[i] = l->in_shapes[i].d[s->p] * after;
        s->total += s->inner[i];
    }
    l->out_shape = out;
    return KC_OK;
}

/* Each output row of `total` values is the inputs' rows side by side. */
static int concat_forward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y) {
    const concat_state *s = l->state;
    size_t rows = (size_t)(s->outer * ex->batch), off = 0;
    for (int i = 0; i < l->ninputs; i++) {
        size_t cols = (size_t)s->inner[i];
        kc_copy2d(ex->dev, kc_buf_f(y, off), (size_t)s->total, x[i], cols, rows, cols);
        off += cols;
    }
    return kc_device_status(ex->dev);
}

static int concat_backward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y, kc_buf dy,
                           const kc_buf *dx) {
    const concat_state *s = l->state;
    size_t rows = (size_t)(s->outer * ex->batch), off = 0;
    for (int i = 0; i < l->ninputs; i++) {
        size_t cols = (size_t)s->inner[i];
        if (kc_buf_ok(dx[i]))
            kc_copy2d(ex->dev, dx[i], cols, kc_buf_f(dy, off), (size_t)s->total, rows, cols);
        off += cols;
    }
    return kc_device_status(ex->dev);
}

const kc_layer_class kc_concatenate_class = {
    .class_name = "Concatenate",
    .mask_rule = kc_mask_propagate,
    .base_name = "concatenate",
    .state_size = sizeof(concat_state),
    .configure = concat_configure,
    .min_inputs = 1,
    .build_n = concat_build,
    .forward_n = concat_forward,
    .backward_n = concat_backward,
};

/* ---- Dot ---- */

/* An input seen as (pre, k, post) around its contracted axis. */
typedef struct dot_view {
    int p; /* contracted axis in the per-sample shape */
    int64_t pre, k, post;
} dot_view;

typedef struct dot_state {
    int axes[2]; /* as given: count the batch axis */
    int normalize;
    dot_view v[2];
    int64_t m, n; /* per-sample output matrix: pre0*post0 rows, pre1*post1 columns */
} dot_state;

#define DOT_EPSILON 1e-7 /* Keras's backend.epsilon(): the norm's lower bound */
/* where Keras clamps the inverse norm: 1 / epsilon in float32 */
#define DOT_INV_MAX ((float)(1.0 / DOT_EPSILON))

static int dot_configure(kc_layer *l, kc_args *a, kc_error *e) {
    dot_state *s = l->state;
    int rc = kc_args_int_tuple(a, "axes", 2, 1, NULL, INT_MIN / 2, INT_MAX / 2, s->axes, e);
    if (!rc) rc = kc_args_bool(a, "normalize", 0, &s->normalize, e);
    return rc;
}

static int dot_build(kc_layer *l, kc_error *e) {
    dot_state *s = l->state;
    char all[1024];
    shapes_str(l, all, sizeof all);
    for (int t = 0; t < 2; t++) {
        const kc_shape *in = &l->in_shapes[t];
        int full = in->rank + 1;
        /* Keras: a negative axis is taken modulo the input's rank (batch included) */
        int ax = s->axes[t] < 0 ? ((s->axes[t] % full) + full) % full : s->axes[t];
        if (ax >= full)
            return kc_layer_fail(l, e, "axes %d is out of range for input %d (inputs %s)",
                                 s->axes[t], t, all);
        if (ax == 0)
            return kc_layer_fail(l, e,
                                 "cannot take the dot product over the batch axis (axes %d, "
                                 "inputs %s)",
                                 s->axes[t], all);
        dot_view *v = &s->v[t];
        v->p = ax - 1;
        v->pre = v->post = 1;
        for (int k = 0; k < v->p; k++)
            v->pre *= in->d[k];
        for (int k = v->p + 1; k < in->rank; k++)
            v->post *= in->d[k];
        v->k = in->d[v->p];
    }
    if (s->v[0].k != s->v[1].k)
        return kc_layer_fail(l, e,
                             "incompatible inputs %s: axis %d of the first has size %lld but "
                             "axis %d of the second has size %lld",
                             all, s->v[0].p + 1, (long long)s->v[0].k, s->v[1].p + 1,
                             (long long)s->v[1].k);
    kc_shape out = {0};
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < l->in_shapes[t].rank; k++)
            if (k != s->v[t].p) {
                if (out.rank >= KC_MAX_RANK - 1)
                    return kc_layer_fail(l, e, "the output of inputs %s has too many axes", all);
                out.d[out.rank++] = l->in_shapes[t].d[k];
            }
    if (out.rank == 0) out = kc_shape1(1);
    s->m = s->v[0].pre * s->v[0].post;
    s->n = s->v[1].pre * s->v[1].post;
    l->out_shape = out;
    return KC_OK;
}

static int64_t dot_flops(const kc_layer *l) {
    const dot_state *s = l->state;
    return 2 * s->m * s->n * s->v[0].k;
}

/* Vectors along the contracted axis, per sample. */
static int64_t dot_vectors(const dot_view *v) {
    return v->pre * v->post;
}

/* Normalized inputs and their inverse norms, kept for backward. */
static size_t dot_buffer(const kc_layer *l, int max_batch, const kc_device *d) {
    const dot_state *s = l->state;
    if (!s->normalize) return 0;
    size_t per = 0;
    for (int t = 0; t < 2; t++)
        per += (size_t)(kc_shape_numel(&l->in_shapes[t]) + dot_vectors(&s->v[t]));
    return per * (size_t)max_batch * sizeof(float);
}

/* Backward through the normalization: a product per element, then a
 * projection and a mask per vector. */
static size_t dot_workspace(const kc_layer *l, int max_batch, const kc_device *d) {
    const dot_state *s = l->state;
    if (!s->normalize) return 0;
    size_t most = 0;
    for (int t = 0; t < 2; t++) {
        size_t need = (size_t)kc_shape_numel(&l->in_shapes[t]) + 2 * (size_t)dot_vectors(&s->v[t]);
        if (need > most) most = need;
    }
    return most * (size_t)max_batch * sizeof(float);
}

/* Where input t's normalized copy and inverse norms live in the node buffer. */
static kc_buf dot_norm_copy(const kc_layer *l, int t, int batch) {
    const dot_state *s = l->state;
    size_t skip = t == 1 ? (size_t)(kc_shape_numel(&l->in_shapes[0]) + dot_vectors(&s->v[0])) : 0;
    return kc_buf_f(l->buf, skip * (size_t)batch);
}

static kc_buf dot_inv_norms(const kc_layer *l, int t, int batch) {
    return kc_buf_f(dot_norm_copy(l, t, batch), numel_of(&l->in_shapes[t], batch));
}

/* Input t as (samples x pre, k, post): the reduction over k ... */
static kc_reduce_desc dot_axis(const dot_view *v, int batch) {
    kc_reduce_desc g = {v->pre * batch, v->k, v->post};
    return g;
}

/* ... and its per-vector values, (samples x pre, 1, post), spread back over k. */
static int dot_spread(kc_device *d, const dot_view *v, int batch, kc_bcast *g) {
    const int64_t full[3] = {v->pre * batch, v->k, v->post}, vec[3] = {v->pre * batch, 1, v->post};
    int rc = kc_bcast_make(g, full, 3, vec, 3, NULL);
    if (rc) return kc_device_fail(d, rc, "Dot: the norms of an input cannot be broadcast");
    return kc_device_status(d);
}

/* Keras's normalize: x * min(rsqrt(sum x^2), 1 / epsilon) along the axis. */
static int dot_normalize(const kc_layer *l, const kc_exec *ex, int t, kc_buf x) {
    const dot_state *s = l->state;
    const dot_view *v = &s->v[t];
    kc_device *d = ex->dev;
    kc_buf xn = dot_norm_copy(l, t, ex->batch), inv = dot_inv_norms(l, t, ex->batch);
    size_t vecs = (size_t)dot_vectors(v) * (size_t)ex->batch;
    kc_reduce_desc axis = dot_axis(v, ex->batch);
    kc_bcast g;
    int rc = dot_spread(d, v, ex->batch, &g);
    if (rc) return rc;
    kc_reduce(d, KC_RED_SUMSQ, &axis, 1.0f, x, 0.0f, inv);
    kc_unary(d, KC_UN_RSQRT, 0.0f, inv, inv, vecs);
    kc_unary(d, KC_UN_MIN, DOT_INV_MAX, inv, inv, vecs);
    return kc_binary(d, KC_BIN_MUL, &g, x, inv, xn);
}

/* The gradient through the normalization, in place on dx (holding d/d(normalized x)):
 * inv (dx - xn sum(xn dx)) per vector, and inv dx where the clamp held, since
 * the map is linear there. */
static int dot_normalize_backward(const kc_layer *l, const kc_exec *ex, int t, kc_buf dx) {
    const dot_state *s = l->state;
    const dot_view *v = &s->v[t];
    kc_device *d = ex->dev;
    kc_buf xn = dot_norm_copy(l, t, ex->batch), inv = dot_inv_norms(l, t, ex->batch);
    size_t n = numel_of(&l->in_shapes[t], ex->batch);
    size_t vecs = (size_t)dot_vectors(v) * (size_t)ex->batch;
    kc_buf prod = ex->ws, proj = kc_buf_f(ex->ws, n), unclamped = kc_buf_f(proj, vecs);
    kc_reduce_desc axis = dot_axis(v, ex->batch);
    kc_bcast g;
    int rc = dot_spread(d, v, ex->batch, &g);
    if (rc) return rc;
    kc_mul(d, xn, dx, prod, n);
    kc_reduce(d, KC_RED_SUM, &axis, 1.0f, prod, 0.0f, proj);
    /* unclamped is 1 where the clamp did not hold, and its zeros blank the projection */
    kc_unary(d, KC_UN_LT, DOT_INV_MAX, inv, unclamped, vecs);
    kc_select(d, unclamped, proj, unclamped, proj, vecs);
    kc_binary(d, KC_BIN_MUL, &g, xn, proj, prod);
    kc_binary_n(d, KC_BIN_SUB, dx, prod, dx, n);
    return kc_binary(d, KC_BIN_MUL, &g, dx, inv, dx);
}

/* out (m x n per sample) = sum over the contracted axis, block by block:
 * rows i*post0 + j, columns i2*post1 + j2; one batched product per block
 * over the samples. */
static int dot_forward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y) {
    const dot_state *s = l->state;
    const dot_view *a = &s->v[0], *b = &s->v[1];
    kc_device *d = ex->dev;
    kc_buf in[2] = {x[0], x[1]};
    if (s->normalize)
        for (int t = 0; t < 2; t++) {
            dot_normalize(l, ex, t, x[t]);
            in[t] = dot_norm_copy(l, t, ex->batch);
        }
    size_t na = (size_t)kc_shape_numel(&l->in_shapes[0]),
           nb = (size_t)kc_shape_numel(&l->in_shapes[1]);
    size_t no = (size_t)kc_shape_numel(&l->out_shape);
    for (int64_t i = 0; i < a->pre; i++)
        for (int64_t i2 = 0; i2 < b->pre; i2++)
            kc_gemm_batched(d, 1, 0, (int)a->post, (int)b->post, (int)a->k, 1.0f,
                            kc_buf_f(in[0], (size_t)(i * a->k * a->post)), (int)a->post, na,
                            kc_buf_f(in[1], (size_t)(i2 * b->k * b->post)), (int)b->post, nb, 0.0f,
                            kc_buf_f(y, (size_t)(i * a->post * s->n + i2 * b->post)), (int)s->n, no,
                            ex->batch);
    return kc_device_status(d);
}

/* Block (i, i2) of dy into both input gradients; the blocks of one input
 * gradient add up over the other input's blocks. */
static void dot_block_backward(const kc_layer *l, const kc_exec *ex, const kc_buf *in, kc_buf dy,
                               const kc_buf *dx, int64_t i, int64_t i2) {
    const dot_state *s = l->state;
    const dot_view *a = &s->v[0], *b = &s->v[1];
    kc_device *d = ex->dev;
    size_t na = (size_t)kc_shape_numel(&l->in_shapes[0]),
           nb = (size_t)kc_shape_numel(&l->in_shapes[1]);
    size_t no = (size_t)kc_shape_numel(&l->out_shape);
    size_t oa = (size_t)(i * a->k * a->post), ob = (size_t)(i2 * b->k * b->post);
    kc_buf blk = kc_buf_f(dy, (size_t)(i * a->post * s->n + i2 * b->post));
    if (kc_buf_ok(dx[0])) /* dA_i (k x post0) += B_i2 (k x post1) blk^T */
        kc_gemm_batched(d, 0, 1, (int)a->k, (int)a->post, (int)b->post, 1.0f, kc_buf_f(in[1], ob),
                        (int)b->post, nb, blk, (int)s->n, no, i2 ? 1.0f : 0.0f, kc_buf_f(dx[0], oa),
                        (int)a->post, na, ex->batch);
    if (kc_buf_ok(dx[1])) /* dB_i2 (k x post1) += A_i (k x post0) blk */
        kc_gemm_batched(d, 0, 0, (int)b->k, (int)b->post, (int)a->post, 1.0f, kc_buf_f(in[0], oa),
                        (int)a->post, na, blk, (int)s->n, no, i ? 1.0f : 0.0f, kc_buf_f(dx[1], ob),
                        (int)b->post, nb, ex->batch);
}

static int dot_backward(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y, kc_buf dy,
                        const kc_buf *dx) {
    const dot_state *s = l->state;
    kc_buf in[2] = {x[0], x[1]};
    if (s->normalize)
        for (int t = 0; t < 2; t++)
            in[t] = dot_norm_copy(l, t, ex->batch);
    for (int64_t i = 0; i < s->v[0].pre; i++)
        for (int64_t i2 = 0; i2 < s->v[1].pre; i2++)
            dot_block_backward(l, ex, in, dy, dx, i, i2);
    if (s->normalize)
        for (int t = 0; t < 2; t++)
            if (kc_buf_ok(dx[t])) dot_normalize_backward(l, ex, t, dx[t]);
    return kc_device_status(ex->dev);
}

const kc_layer_class kc_dot_class = {
    .class_name = "Dot",
    .mask_rule = kc_mask_consume,
    .base_name = "dot",
    .state_size = sizeof(dot_state),
    .configure = dot_configure,
    .buffer_bytes = dot_buffer,
    .workspace_bytes = dot_workspace,
    .flops = dot_flops,
    .min_inputs = 2,
    .max_inputs = 2,
    .build_n = dot_build,
    .forward_n = dot_forward,
    .backward_n = dot_backward,
};

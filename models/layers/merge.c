/* Merge layers (Keras 3 semantics): Add, Subtract, Multiply, Average,
 * Maximum, Minimum over inputs of one shape; Concatenate along an axis; Dot
 * (batch_dot along a pair of axes, optionally of L2-normalized inputs).
 *
 * Everything runs on backend ops. Maximum and Minimum keep, per input after
 * the first, the 0/1 mask of where that input won the running fold (Keras
 * folds left to right and a tie keeps the earlier value, which is where
 * TensorFlow sends the gradient too); with the mask the result is assembled
 * from products by 0 and 1, so it is exactly the larger (smaller) input. */
#include <limits.h>
#include <math.h>
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

static int same_shapes_build(kc_layer *l, kc_error *e) {
    for (int i = 1; i < l->ninputs; i++)
        if (!kc_shape_equal(&l->in_shapes[i], &l->in_shapes[0])) {
            char all[1024];
            shapes_str(l, all, sizeof all);
            return kc_layer_fail(l, e, "inputs must all have the same shape, got %s", all);
        }
    l->out_shape = l->in_shapes[0];
    return KC_OK;
}

static int64_t elementwise_flops(const kc_layer *l) {
    return kc_shape_numel(&l->out_shape) * (l->ninputs > 1 ? l->ninputs - 1 : 1);
}

static void add_forward(kc_layer *l, const kc_exec *ex, const float *const *x, float *y) {
    size_t n = numel_of(&l->out_shape, ex->batch);
    kc_layer_copy(ex->be, y, x[0], n);
    for (int i = 1; i < l->ninputs; i++)
        ex->be->axpy(1.0f, x[i], y, n);
}

static void add_backward(kc_layer *l, const kc_exec *ex, const float *const *x, const float *y,
                         const float *dy, float *const *dx) {
    size_t n = numel_of(&l->out_shape, ex->batch);
    for (int i = 0; i < l->ninputs; i++)
        if (dx[i]) kc_layer_copy(ex->be, dx[i], dy, n);
}

static void subtract_forward(kc_layer *l, const kc_exec *ex, const float *const *x, float *y) {
    size_t n = numel_of(&l->out_shape, ex->batch);
    kc_layer_copy(ex->be, y, x[0], n);
    ex->be->axpy(-1.0f, x[1], y, n);
}

static void subtract_backward(kc_layer *l, const kc_exec *ex, const float *const *x, const float *y,
                              const float *dy, float *const *dx) {
    size_t n = numel_of(&l->out_shape, ex->batch);
    if (dx[0]) kc_layer_copy(ex->be, dx[0], dy, n);
    if (dx[1]) {
        kc_layer_copy(ex->be, dx[1], dy, n);
        ex->be->scale(dx[1], -1.0f, n);
    }
}

static void average_forward(kc_layer *l, const kc_exec *ex, const float *const *x, float *y) {
    add_forward(l, ex, x, y);
    ex->be->scale(y, 1.0f / (float)l->ninputs, numel_of(&l->out_shape, ex->batch));
}

static void average_backward(kc_layer *l, const kc_exec *ex, const float *const *x, const float *y,
                             const float *dy, float *const *dx) {
    size_t n = numel_of(&l->out_shape, ex->batch);
    for (int i = 0; i < l->ninputs; i++)
        if (dx[i]) {
            kc_layer_copy(ex->be, dx[i], dy, n);
            ex->be->scale(dx[i], 1.0f / (float)l->ninputs, n);
        }
}

/* Running products go through the workspace so no op reads and writes one buffer. */
static size_t multiply_workspace(const kc_layer *l, int max_batch, const kc_backend *be) {
    return l->ninputs > 2 ? numel_of(&l->out_shape, max_batch) * sizeof(float) : 0;
}

/* out = prod of x[i] over i != skip (skip = -1: all), in input order. */
static void product(const kc_layer *l, const kc_exec *ex, const float *const *x, int skip,
                    float *out, size_t n) {
    float *tmp = ex->ws;
    int first = skip == 0 ? 1 : 0, count = l->ninputs - (skip >= 0);
    if (count == 1) {
        kc_layer_copy(ex->be, out, x[first], n);
        return;
    }
    /* alternate between tmp and out so that the last product lands in out */
    int left = count - 1; /* multiplications still to do */
    const float *acc = x[first];
    for (int i = first + 1; i < l->ninputs; i++) {
        if (i == skip) continue;
        float *dst = (left % 2 == 1) ? out : tmp;
        ex->be->mul(acc, x[i], dst, n);
        acc = dst;
        left--;
    }
}

static void multiply_forward(kc_layer *l, const kc_exec *ex, const float *const *x, float *y) {
    product(l, ex, x, -1, y, numel_of(&l->out_shape, ex->batch));
}

static void multiply_backward(kc_layer *l, const kc_exec *ex, const float *const *x, const float *y,
                              const float *dy, float *const *dx) {
    size_t n = numel_of(&l->out_shape, ex->batch);
    for (int i = 0; i < l->ninputs; i++) {
        if (!dx[i]) continue;
        if (l->ninputs == 1) {
            kc_layer_copy(ex->be, dx[i], dy, n);
            continue;
        }
        /* dx_i = dy * prod_{j != i} x_j; with two inputs the product is x_other itself */
        if (l->ninputs == 2) {
            ex->be->mul(dy, x[1 - i], dx[i], n);
            continue;
        }
        float *others = (float *)ex->ws + n;
        product(l, ex, x, i, others, n);
        ex->be->mul(dy, others, dx[i], n);
    }
}

static size_t multiply_backward_workspace(const kc_layer *l, int max_batch, const kc_backend *be) {
    return l->ninputs > 2 ? 2 * numel_of(&l->out_shape, max_batch) * sizeof(float) : 0;
}

/* Maximum / Minimum: the per-node buffer holds ninputs - 1 masks. */
static size_t extreme_buffer(const kc_layer *l, int max_batch, const kc_backend *be) {
    return (size_t)(l->ninputs - 1) * numel_of(&l->out_shape, max_batch) * sizeof(float);
}

static size_t extreme_workspace(const kc_layer *l, int max_batch, const kc_backend *be) {
    return l->ninputs > 1 ? 3 * numel_of(&l->out_shape, max_batch) * sizeof(float) : 0;
}

static void extreme_forward(kc_layer *l, const kc_exec *ex, const float *const *x, float *y,
                            int is_max) {
    const kc_backend *be = ex->be;
    size_t n = numel_of(&l->out_shape, ex->batch);
    kc_layer_copy(be, y, x[0], n);
    if (l->ninputs == 1) return;
    float *diff = ex->ws, *ones = diff + n, *part = ones + n;
    be->fill(ones, 1.0f, n);
    for (int i = 1; i < l->ninputs; i++) {
        float *mask = (float *)l->buf + (size_t)(i - 1) * n;
        /* mask = 1 where x_i beats the running value strictly */
        if (is_max) {
            kc_layer_copy(be, diff, x[i], n);
            be->axpy(-1.0f, y, diff, n);
        } else {
            kc_layer_copy(be, diff, y, n);
            be->axpy(-1.0f, x[i], diff, n);
        }
        be->act_backward(KC_ACT_RELU, 0.0f, diff, diff, ones, mask, n);
        /* y = y * (1 - mask) + x_i * mask, each term exact */
        kc_layer_copy(be, diff, ones, n);
        be->axpy(-1.0f, mask, diff, n);
        be->mul(y, diff, part, n);
        be->mul(x[i], mask, y, n);
        be->axpy(1.0f, part, y, n);
    }
}

static void extreme_backward(kc_layer *l, const kc_exec *ex, const float *const *x, const float *y,
                             const float *dy, float *const *dx) {
    const kc_backend *be = ex->be;
    size_t n = numel_of(&l->out_shape, ex->batch);
    if (l->ninputs == 1) {
        if (dx[0]) kc_layer_copy(be, dx[0], dy, n);
        return;
    }
    float *g = ex->ws, *part = g + n;
    kc_layer_copy(be, g, dy, n);
    /* unwind the fold: input i takes g where it won, the running value keeps the rest */
    for (int i = l->ninputs - 1; i >= 1; i--) {
        const float *mask = (const float *)l->buf + (size_t)(i - 1) * n;
        float *dst = dx[i] ? dx[i] : part;
        be->mul(g, mask, dst, n);
        be->axpy(-1.0f, dst, g, n);
    }
    if (dx[0]) kc_layer_copy(be, dx[0], g, n);
}

static void maximum_forward(kc_layer *l, const kc_exec *ex, const float *const *x, float *y) {
    extreme_forward(l, ex, x, y, 1);
}

static void minimum_forward(kc_layer *l, const kc_exec *ex, const float *const *x, float *y) {
    extreme_forward(l, ex, x, y, 0);
}

static size_t max_of_workspace(const kc_layer *l, int max_batch, const kc_backend *be) {
    size_t a = multiply_workspace(l, max_batch, be),
           b = multiply_backward_workspace(l, max_batch, be);
    return a > b ? a : b;
}

#define ELEMENTWISE_CLASS(var, cls_name, base, min_in, max_in, fwd, bwd, buf, ws)                  \
    const kc_layer_class var = {                                                                   \
        .class_name = cls_name,                                                                    \
        .base_name = base,                                                                         \
        .configure = merge_configure,                                                              \
        .buffer_bytes = buf,                                                                       \
        .workspace_bytes = ws,                                                                     \
        .flops = elementwise_flops,                                                                \
        .min_inputs = min_in,                                                                      \
        .max_inputs = max_in,                                                                      \
        .build_n = same_shapes_build,                                                              \
        .forward_n = fwd,                                                                          \
        .backward_n = bwd,                                                                         \
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
static void concat_forward(kc_layer *l, const kc_exec *ex, const float *const *x, float *y) {
    const concat_state *s = l->state;
    int64_t rows = s->outer * ex->batch, off = 0;
    for (int i = 0; i < l->ninputs; i++) {
        size_t bytes = (size_t)s->inner[i] * sizeof(float);
        if (rows == 1 || s->inner[i] == s->total) {
            ex->be->copy(y + off, x[i], (size_t)rows * bytes);
        } else {
            for (int64_t r = 0; r < rows; r++)
                ex->be->copy(y + r * s->total + off, x[i] + r * s->inner[i], bytes);
        }
        off += s->inner[i];
    }
}

static void concat_backward(kc_layer *l, const kc_exec *ex, const float *const *x, const float *y,
                            const float *dy, float *const *dx) {
    const concat_state *s = l->state;
    int64_t rows = s->outer * ex->batch, off = 0;
    for (int i = 0; i < l->ninputs; i++) {
        size_t bytes = (size_t)s->inner[i] * sizeof(float);
        if (dx[i]) {
            if (rows == 1 || s->inner[i] == s->total) {
                ex->be->copy(dx[i], dy + off, (size_t)rows * bytes);
            } else {
                for (int64_t r = 0; r < rows; r++)
                    ex->be->copy(dx[i] + r * s->inner[i], dy + r * s->total + off, bytes);
            }
        }
        off += s->inner[i];
    }
}

const kc_layer_class kc_concatenate_class = {
    .class_name = "Concatenate",
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
static size_t dot_buffer(const kc_layer *l, int max_batch, const kc_backend *be) {
    const dot_state *s = l->state;
    if (!s->normalize) return 0;
    size_t per = 0;
    for (int t = 0; t < 2; t++)
        per += (size_t)(kc_shape_numel(&l->in_shapes[t]) + dot_vectors(&s->v[t]));
    return per * (size_t)max_batch * sizeof(float);
}

static size_t dot_host_workspace(const kc_layer *l, int max_batch) {
    const dot_state *s = l->state;
    if (!s->normalize) return 0;
    size_t most = 0;
    for (int t = 0; t < 2; t++) {
        size_t need = 2 * (size_t)kc_shape_numel(&l->in_shapes[t]) + (size_t)dot_vectors(&s->v[t]);
        if (need > most) most = need;
    }
    return most * (size_t)max_batch * sizeof(float);
}

/* Where input t's normalized copy and inverse norms live in the node buffer. */
static float *dot_norm_copy(const kc_layer *l, int t, int batch) {
    const dot_state *s = l->state;
    float *p = l->buf;
    if (t == 1)
        p += (size_t)(kc_shape_numel(&l->in_shapes[0]) + dot_vectors(&s->v[0])) * (size_t)batch;
    return p;
}

/* Keras's normalize: x * min(rsqrt(sum x^2), 1 / epsilon) along the axis, done on
 * the host like the losses (the backend has no reduction to a square root). */
static void dot_normalize(const kc_layer *l, const kc_exec *ex, int t, const float *x, float *xn,
                          float *inv_dev) {
    const dot_state *s = l->state;
    const dot_view *v = &s->v[t];
    size_t n = numel_of(&l->in_shapes[t], ex->batch);
    int64_t vecs = dot_vectors(v) * ex->batch;
    float *h = ex->host_ws, *inv = h + n;
    ex->be->download(h, x, n * sizeof(float));
    for (int64_t q = 0; q < vecs; q++) {
        int64_t i = q / v->post, j = q % v->post; /* i runs over samples x pre */
        float *base = h + i * v->k * v->post + j;
        double ss = 0;
        for (int64_t c = 0; c < v->k; c++)
            ss += (double)base[c * v->post] * base[c * v->post];
        double r = ss > 0 ? 1.0 / sqrt(ss) : INFINITY;
        if (r > 1.0 / DOT_EPSILON) r = 1.0 / DOT_EPSILON;
        inv[q] = (float)r;
        for (int64_t c = 0; c < v->k; c++)
            base[c * v->post] = (float)(base[c * v->post] * r);
    }
    ex->be->upload(xn, h, n * sizeof(float));
    ex->be->upload(inv_dev, inv, (size_t)vecs * sizeof(float));
}

/* The gradient through the normalization, in place on dx (holding d/d(normalized x)). */
static void dot_normalize_backward(const kc_layer *l, const kc_exec *ex, int t, const float *xn,
                                   const float *inv_dev, float *dx) {
    const dot_state *s = l->state;
    const dot_view *v = &s->v[t];
    size_t n = numel_of(&l->in_shapes[t], ex->batch);
    int64_t vecs = dot_vectors(v) * ex->batch;
    float *hx = ex->host_ws, *hg = hx + n, *inv = hg + n;
    ex->be->download(hx, xn, n * sizeof(float));
    ex->be->download(hg, dx, n * sizeof(float));
    ex->be->download(inv, inv_dev, (size_t)vecs * sizeof(float));
    for (int64_t q = 0; q < vecs; q++) {
        int64_t i = q / v->post, j = q % v->post;
        const float *xb = hx + i * v->k * v->post + j;
        float *gb = hg + i * v->k * v->post + j;
        double r = inv[q];
        if (r >= 1.0 / DOT_EPSILON) { /* the clamp is linear: y = x / epsilon */
            for (int64_t c = 0; c < v->k; c++)
                gb[c * v->post] = (float)(gb[c * v->post] * r);
            continue;
        }
        double proj = 0;
        for (int64_t c = 0; c < v->k; c++)
            proj += (double)xb[c * v->post] * gb[c * v->post];
        for (int64_t c = 0; c < v->k; c++)
            gb[c * v->post] = (float)(r * (gb[c * v->post] - xb[c * v->post] * proj));
    }
    ex->be->upload(dx, hg, n * sizeof(float));
}

/* out (m x n per sample) = sum over the contracted axis, block by block:
 * rows i*post0 + j, columns i2*post1 + j2. */
static void dot_forward(kc_layer *l, const kc_exec *ex, const float *const *x, float *y) {
    const dot_state *s = l->state;
    const dot_view *a = &s->v[0], *b = &s->v[1];
    const float *in[2] = {x[0], x[1]};
    if (s->normalize)
        for (int t = 0; t < 2; t++) {
            float *xn = dot_norm_copy(l, t, ex->batch);
            float *inv = xn + numel_of(&l->in_shapes[t], ex->batch);
            dot_normalize(l, ex, t, x[t], xn, inv);
            in[t] = xn;
        }
    int64_t na = kc_shape_numel(&l->in_shapes[0]), nb = kc_shape_numel(&l->in_shapes[1]);
    int64_t no = kc_shape_numel(&l->out_shape);
    for (int smp = 0; smp < ex->batch; smp++)
        for (int64_t i = 0; i < a->pre; i++)
            for (int64_t i2 = 0; i2 < b->pre; i2++)
                ex->be->gemm(1, 0, (int)a->post, (int)b->post, (int)a->k, 1.0f,
                             in[0] + smp * na + i * a->k * a->post, (int)a->post,
                             in[1] + smp * nb + i2 * b->k * b->post, (int)b->post, 0.0f,
                             y + smp * no + i * a->post * s->n + i2 * b->post, (int)s->n);
}

static void dot_backward(kc_layer *l, const kc_exec *ex, const float *const *x, const float *y,
                         const float *dy, float *const *dx) {
    const dot_state *s = l->state;
    const dot_view *a = &s->v[0], *b = &s->v[1];
    const float *in[2] = {x[0], x[1]};
    if (s->normalize)
        for (int t = 0; t < 2; t++)
            in[t] = dot_norm_copy(l, t, ex->batch);
    int64_t na = kc_shape_numel(&l->in_shapes[0]), nb = kc_shape_numel(&l->in_shapes[1]);
    int64_t no = kc_shape_numel(&l->out_shape);
    for (int smp = 0; smp < ex->batch; smp++) {
        const float *g = dy + smp * no;
        for (int64_t i = 0; i < a->pre; i++)
            for (int64_t i2 = 0; i2 < b->pre; i2++) {
                const float *blk = g + i * a->post * s->n + i2 * b->post;
                const float *xa = in[0] + smp * na + i * a->k * a->post;
                const float *xb = in[1] + smp * nb + i2 * b->k * b->post;
                if (dx[0]) /* dA_i (k x post0) += B_i2 (k x post1) blk^T */
                    ex->be->gemm(0, 1, (int)a->k, (int)a->post, (int)b->post, 1.0f, xb,
                                 (int)b->post, blk, (int)s->n, i2 ? 1.0f : 0.0f,
                                 dx[0] + smp * na + i * a->k * a->post, (int)a->post);
                if (dx[1]) /* dB_i2 (k x post1) += A_i (k x post0) blk */
                    ex->be->gemm(0, 0, (int)b->k, (int)b->post, (int)a->post, 1.0f, xa,
                                 (int)a->post, blk, (int)s->n, i ? 1.0f : 0.0f,
                                 dx[1] + smp * nb + i2 * b->k * b->post, (int)b->post);
            }
    }
    if (s->normalize)
        for (int t = 0; t < 2; t++)
            if (dx[t]) {
                const float *xn = dot_norm_copy(l, t, ex->batch);
                dot_normalize_backward(l, ex, t, xn, xn + numel_of(&l->in_shapes[t], ex->batch),
                                       dx[t]);
            }
}

const kc_layer_class kc_dot_class = {
    .class_name = "Dot",
    .base_name = "dot",
    .state_size = sizeof(dot_state),
    .configure = dot_configure,
    .buffer_bytes = dot_buffer,
    .flops = dot_flops,
    .min_inputs = 2,
    .max_inputs = 2,
    .build_n = dot_build,
    .forward_n = dot_forward,
    .backward_n = dot_backward,
    .host_workspace_bytes = dot_host_workspace,
};

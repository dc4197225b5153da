/* Normalization (the preprocessing layer): y = (x - mean) / max(sqrt(variance),
 * epsilon), or with invert x * max(sqrt(variance), epsilon) + mean, as Keras 3
 * computes it (epsilon 1e-7, Keras's backend.epsilon()).
 *
 * `axis` names the axes that keep their own statistics (an int, a list, or
 * null for one scalar mean and variance); the statistics broadcast over the
 * other axes. Given `mean` and `variance` (scalars or nested lists that
 * broadcast to the kept axes, aligned from the right) are constants of the
 * layer, which then has no weights, as in Keras. Without them the layer has
 * Keras's non-trainable weights mean and variance (shape: the kept axes) and
 * count (shape ()), which adapt() sets from the training data before the
 * first epoch; count stays 0, as Keras leaves it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/layers/common.h"

#define NZ_RANK (KC_MAX_RANK + 1)
/* most values a given mean (and variance) holds */
#define NZ_MAX_GIVEN 4096
#define NZ_EPSILON 1e-7f

typedef struct nz_state {
    int64_t axes[NZ_RANK]; /* as given: Keras's numbering, batch axis 0 */
    int naxes;             /* 0: axis null, one scalar mean and variance */
    const kc_node *axis_node;
    int invert;
    int given; /* mean and variance given: constants, no weights */
    const kc_node *mean_node;
    kc_shape gshape; /* the given values' shape (rank 0: a scalar) */
    int64_t ngiven;
    float gmean[NZ_MAX_GIVEN], gvar[NZ_MAX_GIVEN];
    /* geometry after build, the batch axis first */
    int rank;
    int64_t dims[NZ_RANK];
    int64_t sdims[NZ_RANK]; /* the statistics as they broadcast: 1 on reduced axes */
    unsigned keep;          /* kept axes, a mask over 1 .. rank - 1 */
    size_t nstat;           /* elements of sdims */
} nz_state;

/* ------------------------------------------------------------ arguments --- */

static int read_axes(kc_layer *l, kc_args *a, kc_error *e) {
    nz_state *s = l->state;
    kc_node *n = kc_args_node(a, "axis");
    s->axis_node = n;
    s->naxes = 1;
    s->axes[0] = -1;
    if (!n) return KC_OK;
    if (kc_node_is_null(n) || (n->kind == KC_NODE_SEQ && n->n == 0)) {
        s->naxes = 0; /* Keras's axis=None, saved as [] */
        return KC_OK;
    }
    return kc_args_int_list(a, "axis", 0, NZ_RANK, -NZ_RANK, s->axes, &s->naxes, e);
}

/* The shape of a scalar or of rectangular nested lists of numbers. */
static int value_shape(const kc_node *v, const char *key, kc_shape *sh, kc_error *e) {
    memset(sh, 0, sizeof *sh);
    for (const kc_node *n = v; n->kind == KC_NODE_SEQ; n = n->items[0]) {
        if (n->n == 0) return kc_node_fail(e, n, "Normalization argument '%s': an empty list", key);
        if (sh->rank == KC_MAX_RANK)
            return kc_node_fail(e, n, "Normalization argument '%s': more than %d nested lists", key,
                                KC_MAX_RANK);
        sh->d[sh->rank++] = (int64_t)n->n;
    }
    return KC_OK;
}

/* Reads the numbers of v (shape sh from depth `depth`) into out[*k ..]. */
static int read_values(const kc_node *v, const char *key, const kc_shape *sh, int depth, float *out,
                       int64_t *k, kc_error *e) {
    if (depth == sh->rank) {
        double x;
        if (v->kind != KC_NODE_SCALAR || kc_node_float(v, &x, e))
            return kc_node_fail(e, v, "Normalization argument '%s': expected a number, got %s", key,
                                kc_node_kind_name(v));
        out[(*k)++] = (float)x;
        return KC_OK;
    }
    if (v->kind != KC_NODE_SEQ || (int64_t)v->n != sh->d[depth])
        return kc_node_fail(e, v,
                            "Normalization argument '%s': the nested lists must be rectangular "
                            "(%lld values at this depth)",
                            key, (long long)sh->d[depth]);
    for (size_t i = 0; i < v->n; i++) {
        int rc = read_values(v->items[i], key, sh, depth + 1, out, k, e);
        if (rc) return rc;
    }
    return KC_OK;
}

static int read_stat(kc_node *v, const char *key, kc_shape *sh, float *out, kc_error *e) {
    int rc = value_shape(v, key, sh, e);
    if (rc) return rc;
    int64_t n = kc_shape_numel(sh), k = 0;
    if (n > NZ_MAX_GIVEN)
        return kc_node_fail(e, v, "Normalization argument '%s': at most %d values, got %lld", key,
                            NZ_MAX_GIVEN, (long long)n);
    return read_values(v, key, sh, 0, out, &k, e);
}

/* Keras's checks: both or neither, the same shape, rank at most len(axis). */
static int read_given(kc_layer *l, kc_args *a, kc_error *e) {
    nz_state *s = l->state;
    kc_node *m = kc_args_node(a, "mean"), *v = kc_args_node(a, "variance");
    int hm = m && !kc_node_is_null(m), hv = v && !kc_node_is_null(v);
    if (hm != hv)
        return kc_node_fail(e, hm ? m : v,
                            "Normalization: when setting values directly, both `mean` and "
                            "`variance` must be set (got only `%s`)",
                            hm ? "mean" : "variance");
    if (!hm) return KC_OK;
    kc_shape vs;
    int rc = read_stat(m, "mean", &s->gshape, s->gmean, e);
    if (!rc) rc = read_stat(v, "variance", &vs, s->gvar, e);
    if (rc) return rc;
    char a1[128], a2[128];
    if (!kc_shape_equal(&s->gshape, &vs))
        return kc_node_fail(e, v,
                            "Normalization: `mean` and `variance` must have the same shape, got "
                            "%s and %s",
                            kc_shape_str(&s->gshape, 0, a1, sizeof a1),
                            kc_shape_str(&vs, 0, a2, sizeof a2));
    if (s->gshape.rank > s->naxes)
        return kc_node_fail(e, m,
                            "Normalization: the rank of `mean` (%d) must be less than or equal to "
                            "the number of axes (%d)",
                            s->gshape.rank, s->naxes);
    s->given = 1;
    s->mean_node = m;
    s->ngiven = kc_shape_numel(&s->gshape);
    return KC_OK;
}

static int nz_configure(kc_layer *l, kc_args *a, kc_error *e) {
    nz_state *s = l->state;
    int rc = read_axes(l, a, e);
    if (!rc) rc = kc_args_bool(a, "invert", 0, &s->invert, e);
    if (!rc) rc = read_given(l, a, e);
    return rc;
}

/* --------------------------------------------------------------- build --- */

/* The kept axes as positions 1 .. rank - 1 of the whole tensor. */
static int resolve_axes(kc_layer *l, kc_error *e) {
    nz_state *s = l->state;
    const kc_node *at = s->axis_node ? s->axis_node : l->node;
    char buf[160];
    s->keep = 0;
    for (int i = 0; i < s->naxes; i++) {
        int64_t ax = s->axes[i] < 0 ? s->axes[i] + s->rank : s->axes[i];
        if (ax < 0 || ax >= s->rank)
            return kc_node_fail(e, at,
                                "layer '%s' (Normalization): axis %lld is out of range for input "
                                "shape %s",
                                l->name, (long long)s->axes[i],
                                kc_shape_str(&l->in_shape, 1, buf, sizeof buf));
        if (ax == 0)
            return kc_node_fail(e, at,
                                "layer '%s' (Normalization): axis %lld is the batch axis, whose "
                                "size is not known; the kept axes need a known size",
                                l->name, (long long)s->axes[i]);
        if (s->keep >> ax & 1)
            return kc_node_fail(e, at, "layer '%s' (Normalization): axis %lld is given twice",
                                l->name, (long long)s->axes[i]);
        s->keep |= 1u << ax;
    }
    return KC_OK;
}

/* Given values, aligned from the right with the kept axes, each of size 1
 * or the axis's (numpy's broadcast_to). */
static int given_dims(kc_layer *l, kc_error *e) {
    nz_state *s = l->state;
    int kept[NZ_RANK], nk = 0;
    for (int k = 1; k < s->rank; k++)
        if (s->keep >> k & 1) kept[nk++] = k, s->sdims[k] = 1;
    for (int i = 1; i <= s->gshape.rank; i++) {
        int ax = kept[nk - i];
        int64_t g = s->gshape.d[s->gshape.rank - i];
        if (g != 1 && g != s->dims[ax]) {
            char a1[128], a2[128];
            return kc_node_fail(e, s->mean_node,
                                "layer '%s' (Normalization): mean and variance of shape %s do not "
                                "broadcast to input shape %s on axis %d",
                                l->name, kc_shape_str(&s->gshape, 0, a1, sizeof a1),
                                kc_shape_str(&l->in_shape, 1, a2, sizeof a2), ax);
        }
        s->sdims[ax] = g;
    }
    return KC_OK;
}

static int nz_build(kc_layer *l, kc_error *e) {
    nz_state *s = l->state;
    const kc_shape *in = &l->in_shape;
    s->rank = in->rank + 1;
    s->dims[0] = 1;
    for (int k = 0; k < in->rank; k++)
        s->dims[k + 1] = in->d[k];
    int rc = resolve_axes(l, e);
    if (rc) return rc;
    l->out_shape = *in;
    kc_shape ps = {0};
    for (int k = 0; k < s->rank; k++) {
        int kept = s->keep >> k & 1;
        s->sdims[k] = kept ? s->dims[k] : 1;
        if (kept) ps.d[ps.rank++] = s->dims[k];
    }
    if (s->given && (rc = given_dims(l, e))) return rc;
    s->nstat = 1;
    for (int k = 0; k < s->rank; k++)
        s->nstat *= (size_t)s->sdims[k];
    int64_t full[NZ_RANK];
    memcpy(full, s->dims, sizeof full);
    full[0] = 2;
    kc_bcast g;
    if (kc_bcast_make(&g, full, s->rank, s->sdims, s->rank, NULL))
        return kc_layer_fail(l, e, "normalizing with these axes is not supported by kerasc");
    if (s->given) return KC_OK;
    kc_initializer zeros = {.kind = KC_INIT_ZEROS}, ones = {.kind = KC_INIT_ONES};
    kc_layer_add_param(l, "mean", ps, &zeros, 0);
    kc_layer_add_param(l, "variance", ps, &ones, 0);
    kc_layer_add_param(l, "count", (kc_shape){0}, &zeros, 0)->keras_int64 = 1;
    return KC_OK;
}

/* ----------------------------------------------------- forward, backward --- */

/* l->buf: the mean (given ones only) and the denominator max(sqrt(var), eps). */
static size_t nz_buffer_bytes(const kc_layer *l, int max_batch, const kc_device *d) {
    const nz_state *s = l->state;
    return 2 * s->nstat * sizeof(float);
}

static kc_buf denom_buf(const kc_layer *l) {
    return kc_buf_f(l->buf, ((const nz_state *)l->state)->nstat);
}

/* The mean's buffer, with the denominator written into denom_buf(l). */
static kc_buf statistics(kc_layer *l, kc_device *d) {
    const nz_state *s = l->state;
    kc_buf den = denom_buf(l), mean = l->buf, var = den;
    if (s->given) {
        kc_upload(d, mean, s->gmean, s->nstat * sizeof(float));
        kc_upload(d, var, s->gvar, s->nstat * sizeof(float));
    } else {
        mean = l->params[0].value;
        var = l->params[1].value;
    }
    kc_unary(d, KC_UN_SQRT, 0.0f, var, den, s->nstat);
    kc_unary(d, KC_UN_MAX, NZ_EPSILON, den, den, s->nstat);
    return mean;
}

/* y = a op stat, stat broadcast over the reduced axes */
static int bin_stat(kc_device *d, const nz_state *s, int batch, kc_binary_op op, kc_buf a,
                    kc_buf stat, kc_buf y) {
    int64_t full[NZ_RANK];
    memcpy(full, s->dims, sizeof full);
    full[0] = batch;
    kc_bcast g;
    if (kc_bcast_make(&g, full, s->rank, s->sdims, s->rank, NULL))
        return kc_device_fail(d, KC_ECONFIG, "normalization broadcast does not fit");
    return kc_binary(d, op, &g, a, stat, y);
}

static int nz_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    const nz_state *s = l->state;
    kc_device *d = ex->dev;
    kc_buf mean = statistics(l, d), den = denom_buf(l);
    if (s->invert) {
        bin_stat(d, s, ex->batch, KC_BIN_MUL, x, den, y);
        return bin_stat(d, s, ex->batch, KC_BIN_ADD, y, mean, y);
    }
    bin_stat(d, s, ex->batch, KC_BIN_SUB, x, mean, y);
    return bin_stat(d, s, ex->batch, KC_BIN_DIV, y, den, y);
}

/* A fixed affine map: dx = dy / den (dy den inverted); no weight gradients. */
static int nz_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    const nz_state *s = l->state;
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    return bin_stat(ex->dev, s, ex->batch, s->invert ? KC_BIN_MUL : KC_BIN_DIV, dy, denom_buf(l),
                    dx);
}

static int64_t nz_flops(const kc_layer *l) {
    return 2 * kc_shape_numel(&l->in_shape);
}

/* --------------------------------------------------------------- adapt --- */

/* Running statistics, Keras's batch-wise update in double. */
typedef struct nz_acc {
    size_t per, nstat;
    int64_t *stat_of; /* per sample element: its statistic */
    double *mean, *var, *bmean, *bvar;
    double total;
} nz_acc;

static void acc_free(nz_acc *a) {
    free(a->stat_of);
    free(a->mean);
    free(a->bmean);
    free(a->bvar);
}

static int acc_init(const kc_layer *l, nz_acc *a, kc_error *e) {
    const nz_state *s = l->state;
    memset(a, 0, sizeof *a);
    a->per = (size_t)kc_shape_numel(&l->in_shape);
    a->nstat = s->nstat;
    a->stat_of = malloc(a->per * sizeof *a->stat_of);
    a->mean = calloc(2 * a->nstat, sizeof *a->mean);
    a->bmean = calloc(a->nstat, sizeof *a->bmean);
    a->bvar = calloc(a->nstat, sizeof *a->bvar);
    if (!a->stat_of || !a->mean || !a->bmean || !a->bvar) {
        acc_free(a);
        memset(a, 0, sizeof *a);
        return kc_fail(e, KC_ERUNTIME, "out of memory adapting layer '%s'", l->name);
    }
    a->var = a->mean + a->nstat;
    for (size_t j = 0; j < a->per; j++) { /* row-major position -> kept-axes position */
        size_t rest = j, stat = 0, sstride = 1;
        for (int k = s->rank - 1; k >= 1; k--) {
            size_t c = rest % (size_t)s->dims[k];
            rest /= (size_t)s->dims[k];
            if (s->keep >> k & 1) {
                stat += c * sstride;
                sstride *= (size_t)s->dims[k];
            }
        }
        a->stat_of[j] = (int64_t)stat;
    }
    return KC_OK;
}

/* One batch: its own mean and (biased) variance, then the lack-of-fit
 * update of the totals, as keras.layers.Normalization.adapt does. */
static void acc_batch(nz_acc *a, const float *x, int64_t rows) {
    size_t n = (size_t)rows * a->per;
    double count = (double)n / (double)a->nstat;
    memset(a->bmean, 0, a->nstat * sizeof *a->bmean);
    memset(a->bvar, 0, a->nstat * sizeof *a->bvar);
    for (size_t i = 0; i < n; i++)
        a->bmean[a->stat_of[i % a->per]] += x[i];
    for (size_t k = 0; k < a->nstat; k++)
        a->bmean[k] /= count;
    for (size_t i = 0; i < n; i++) {
        double dev = x[i] - a->bmean[a->stat_of[i % a->per]];
        a->bvar[a->stat_of[i % a->per]] += dev * dev;
    }
    a->total += count;
    double w = count / a->total, keep = 1.0 - w;
    for (size_t k = 0; k < a->nstat; k++) {
        double bv = a->bvar[k] / count;
        double m = a->mean[k] * keep + a->bmean[k] * w;
        double dm = a->mean[k] - m, db = a->bmean[k] - m;
        a->var[k] = (a->var[k] + dm * dm) * keep + (bv + db * db) * w;
        a->mean[k] = m;
    }
}

static int acc_store(kc_layer *l, kc_device *d, const nz_acc *a, kc_error *e) {
    float *h = malloc(2 * a->nstat * sizeof *h);
    if (!h) return kc_fail(e, KC_ERUNTIME, "out of memory adapting layer '%s'", l->name);
    for (size_t k = 0; k < 2 * a->nstat; k++)
        h[k] = (float)a->mean[k];
    kc_upload(d, l->params[0].value, h, a->nstat * sizeof *h);
    kc_upload(d, l->params[1].value, h + a->nstat, a->nstat * sizeof *h);
    free(h);
    return kc_device_error(d, e);
}

static int nz_adapt(kc_layer *l, kc_device *d, const kc_adapt_source *src, kc_error *e) {
    const nz_state *s = l->state;
    if (s->given) return KC_OK;
    nz_acc a;
    int rc = acc_init(l, &a, e);
    for (;;) {
        const float *x = NULL;
        int64_t rows = 0;
        if (rc || (rc = src->next(src->ctx, &x, &rows, e)) || rows <= 0) break;
        acc_batch(&a, x, rows);
    }
    if (!rc && a.total <= 0)
        rc = kc_fail(e, KC_ECONFIG, "layer '%s' (Normalization): no samples to adapt on", l->name);
    if (!rc) rc = acc_store(l, d, &a, e);
    acc_free(&a);
    return rc;
}

const kc_layer_class kc_normalization_class = {
    .class_name = "Normalization",
    .base_name = "normalization",
    .state_size = sizeof(nz_state),
    .mask_rule = kc_mask_propagate,
    .configure = nz_configure,
    .build = nz_build,
    .buffer_bytes = nz_buffer_bytes,
    .forward = nz_forward,
    .backward = nz_backward,
    .flops = nz_flops,
    .adapt = nz_adapt,
};

/* Keras weight initializers: names, arguments, fans and the draws. */
#include "models/initializers.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

/* Keras's truncated-normal correction: the standard deviation of a unit normal
 * truncated to [-2, 2]. Dividing by it makes the truncated draws have the
 * variance VarianceScaling asks for. */
#define TRUNC_STDDEV 0.87962566103423978

/* How a kind is written and what it reads. */
typedef enum {
    ARGS_SEED,
    ARGS_UNIFORM,
    ARGS_NORMAL,
    ARGS_CONSTANT,
    ARGS_GAIN,
    ARGS_NONE
} args_form;

typedef struct init_entry {
    kc_init_kind kind;
    const char *snake, *klass;
    args_form form;
    double a, b; /* defaults */
} init_entry;

static const init_entry table[] = {
    {KC_INIT_GLOROT_UNIFORM, "glorot_uniform", "GlorotUniform", ARGS_SEED, 0, 0},
    {KC_INIT_GLOROT_NORMAL, "glorot_normal", "GlorotNormal", ARGS_SEED, 0, 0},
    {KC_INIT_HE_UNIFORM, "he_uniform", "HeUniform", ARGS_SEED, 0, 0},
    {KC_INIT_HE_NORMAL, "he_normal", "HeNormal", ARGS_SEED, 0, 0},
    {KC_INIT_LECUN_UNIFORM, "lecun_uniform", "LecunUniform", ARGS_SEED, 0, 0},
    {KC_INIT_LECUN_NORMAL, "lecun_normal", "LecunNormal", ARGS_SEED, 0, 0},
    {KC_INIT_RANDOM_UNIFORM, "random_uniform", "RandomUniform", ARGS_UNIFORM, -0.05, 0.05},
    {KC_INIT_RANDOM_NORMAL, "random_normal", "RandomNormal", ARGS_NORMAL, 0.0, 0.05},
    {KC_INIT_TRUNCATED_NORMAL, "truncated_normal", "TruncatedNormal", ARGS_NORMAL, 0.0, 0.05},
    {KC_INIT_ZEROS, "zeros", "Zeros", ARGS_NONE, 0, 0},
    {KC_INIT_ONES, "ones", "Ones", ARGS_NONE, 0, 0},
    {KC_INIT_CONSTANT, "constant", "Constant", ARGS_CONSTANT, 0.0, 0},
    {KC_INIT_ORTHOGONAL, "orthogonal", "Orthogonal", ARGS_GAIN, 1.0, 0},
};
#define NTABLE (sizeof table / sizeof table[0])

/* Keras's short aliases (keras/src/initializers/__init__.py). */
static const struct {
    const char *name;
    kc_init_kind kind;
} aliases[] = {
    {"uniform", KC_INIT_RANDOM_UNIFORM},
    {"normal", KC_INIT_RANDOM_NORMAL},
    {"one", KC_INIT_ONES},
    {"zero", KC_INIT_ZEROS},
    {"OrthogonalInitializer", KC_INIT_ORTHOGONAL},
    {"orthogonal_initializer", KC_INIT_ORTHOGONAL},
};
#define NALIASES (sizeof aliases / sizeof aliases[0])

/* Keras names without a kerasc implementation. */
static const char *const keras_only[] = {
    "VarianceScaling", "variance_scaling", "Identity", "identity",
    "STFTInitializer", "stft_initializer", NULL,
};

/* Every accepted spelling, for "did you mean": the snake_case names, then
 * the class names. A name written in CamelCase is matched against the class
 * names first so the suggestion keeps the user's style. */
static const char *const snake_names[] = {
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "random_uniform",
    "random_normal",
    "truncated_normal",
    "zeros",
    "ones",
    "constant",
    "orthogonal",
    "uniform",
    "normal",
    "one",
    "zero",
    NULL,
};
static const char *const class_names[] = {
    "GlorotUniform", "GlorotNormal", "HeUniform",       "HeNormal", "LecunUniform", "LecunNormal",
    "RandomUniform", "RandomNormal", "TruncatedNormal", "Zeros",    "Ones",         "Constant",
    "Orthogonal",    NULL,
};

static int has_upper(const char *s) {
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z') return 1;
    return 0;
}

static const char *closest_name(const char *s) {
    const char *const *first = has_upper(s) ? class_names : snake_names;
    const char *const *second = first == class_names ? snake_names : class_names;
    size_t n1 = 0, n2 = 0;
    while (first[n1])
        n1++;
    while (second[n2])
        n2++;
    const char *near = kc_closest(s, first, n1);
    return near ? near : kc_closest(s, second, n2);
}

static const init_entry *by_kind(kc_init_kind kind) {
    for (size_t i = 0; i < NTABLE; i++)
        if (table[i].kind == kind) return &table[i];
    return NULL;
}

/* Keras looks names up case-sensitively. */
static const init_entry *by_name(const char *name) {
    for (size_t i = 0; i < NTABLE; i++)
        if (!strcmp(table[i].snake, name) || !strcmp(table[i].klass, name)) return &table[i];
    for (size_t i = 0; i < NALIASES; i++)
        if (!strcmp(aliases[i].name, name)) return by_kind(aliases[i].kind);
    return NULL;
}

static void set_defaults(const init_entry *t, kc_initializer *out) {
    memset(out, 0, sizeof *out);
    out->kind = t->kind;
    out->a = t->a;
    out->b = t->b;
}

/* Resolves a name node; ctx prefixes messages after the location. */
static int name_entry(const kc_node *n, const char *ctx, const init_entry **out, kc_error *e) {
    if (n->kind != KC_NODE_SCALAR || kc_node_is_null(n))
        return kc_node_fail(e, n, "%sexpected an initializer name such as 'glorot_uniform', got %s",
                            ctx, kc_node_kind_name(n));
    *out = by_name(n->str);
    if (*out) return KC_OK;
    for (size_t i = 0; keras_only[i]; i++)
        if (!strcmp(keras_only[i], n->str))
            return kc_node_fail(e, n, "%sinitializer '%s' is not supported yet by kerasc", ctx,
                                n->str);
    const char *near = closest_name(n->str);
    if (near)
        return kc_node_fail(e, n, "%sunknown initializer '%s' (did you mean '%s'?)", ctx, n->str,
                            near);
    return kc_node_fail(e, n,
                        "%sunknown initializer '%s' (valid: glorot_uniform, glorot_normal, "
                        "he_uniform, he_normal, lecun_uniform, lecun_normal, random_uniform, "
                        "random_normal, truncated_normal, zeros, ones, constant, orthogonal)",
                        ctx, n->str);
}

static int read_seed(kc_args *a, kc_initializer *out, kc_error *e) {
    if (!kc_args_has(a, "seed")) return KC_OK;
    long long s;
    int rc = kc_args_int(a, "seed", 0, 0, LLONG_MIN, LLONG_MAX, &s, e);
    if (rc) return rc;
    out->has_seed = 1;
    out->seed = s;
    return KC_OK;
}

/* Reads the kind's arguments through `a` (a->map may be NULL: no arguments). */
static int read_args(const init_entry *t, kc_args *a, kc_initializer *out, kc_error *e) {
    set_defaults(t, out);
    int rc = KC_OK;
    switch (t->form) {
    case ARGS_SEED:
        rc = read_seed(a, out, e);
        break;
    case ARGS_UNIFORM:
        rc = kc_args_float(a, "minval", 0, t->a, -INFINITY, INFINITY, &out->a, e);
        if (!rc) rc = kc_args_float(a, "maxval", 0, t->b, -INFINITY, INFINITY, &out->b, e);
        if (!rc && out->b < out->a)
            rc = kc_node_fail(e, a->where, "%s: maxval (%g) must not be smaller than minval (%g)",
                              a->owner, out->b, out->a);
        if (!rc) rc = read_seed(a, out, e);
        break;
    case ARGS_NORMAL:
        rc = kc_args_float(a, "mean", 0, t->a, -INFINITY, INFINITY, &out->a, e);
        if (!rc) rc = kc_args_float(a, "stddev", 0, t->b, 0.0, INFINITY, &out->b, e);
        if (!rc) rc = read_seed(a, out, e);
        break;
    case ARGS_CONSTANT:
        rc = kc_args_float(a, "value", 0, t->a, -INFINITY, INFINITY, &out->a, e);
        break;
    case ARGS_GAIN:
        rc = kc_args_float(a, "gain", 0, t->a, -INFINITY, INFINITY, &out->a, e);
        if (!rc) rc = read_seed(a, out, e);
        break;
    case ARGS_NONE:
        break;
    }
    if (!rc) rc = kc_args_finish(a, e);
    return rc;
}

/* {class_name: X, config: {...}} (Keras's serialized form) or {class_name: X, <args>}. */
static int parse_class_map(kc_node *node, const char *ctx, kc_initializer *out, kc_error *e) {
    kc_node *cn = kc_map_get(node, "class_name");
    const init_entry *t;
    int rc = name_entry(cn, ctx, &t, e);
    if (rc) return rc;
    kc_node *config = kc_map_get(node, "config");
    kc_args outer, inner;
    kc_args_init(&outer, node, node, t->klass);
    kc_args_node(&outer, "class_name");
    kc_args_node(&outer, "module");
    kc_args_node(&outer, "registered_name");
    if (config && !kc_node_is_null(config)) {
        kc_args_node(&outer, "config");
        if (config->kind != KC_NODE_MAP)
            return kc_node_fail(e, config, "%s%s config: expected a mapping of arguments, got %s",
                                ctx, t->klass, kc_node_kind_name(config));
        rc = kc_args_finish(&outer, e);
        if (rc) return rc;
        kc_args_init(&inner, config, config, t->klass);
        return read_args(t, &inner, out, e);
    }
    kc_args_node(&outer, "config"); /* config: null means no arguments */
    return read_args(t, &outer, out, e);
}

/* {RandomNormal: {stddev: 0.1}} */
static int parse_single_key(kc_node *node, const char *ctx, kc_initializer *out, kc_error *e) {
    kc_node *key = kc_map_key(node, 0), *val = kc_map_val(node, 0);
    const init_entry *t;
    int rc = name_entry(key, ctx, &t, e);
    if (rc) return rc;
    key->used = 1;
    if (!kc_node_is_null(val) && val->kind != KC_NODE_MAP)
        return kc_node_fail(e, val, "%s%s: expected a mapping of arguments, got %s", ctx, t->klass,
                            kc_node_kind_name(val));
    kc_args a;
    kc_args_init(&a, kc_node_is_null(val) ? NULL : val, key, t->klass);
    return read_args(t, &a, out, e);
}

static int parse_at(kc_node *node, const char *ctx, kc_initializer *out, kc_error *e) {
    if (node->kind == KC_NODE_SCALAR) {
        const init_entry *t;
        int rc = name_entry(node, ctx, &t, e);
        if (rc) return rc;
        set_defaults(t, out);
        return KC_OK;
    }
    if (node->kind == KC_NODE_MAP) {
        if (kc_map_get(node, "class_name")) return parse_class_map(node, ctx, out, e);
        if (node->n == 1) return parse_single_key(node, ctx, out, e);
        return kc_node_fail(e, node,
                            "%sexpected an initializer: a name, {class_name: X, config: {...}} "
                            "or {X: {...}}",
                            ctx);
    }
    return kc_node_fail(e, node, "%sexpected an initializer name or mapping, got %s", ctx,
                        kc_node_kind_name(node));
}

int kc_initializer_parse(kc_node *node, kc_initializer *out, kc_error *e) {
    return parse_at(node, "", out, e);
}

int kc_args_initializer(kc_args *a, const char *key, const char *def, kc_initializer *out,
                        kc_error *e) {
    kc_node *n = kc_args_node(a, key);
    const char *name = def;
    if (n && kc_node_is_null(n))
        name = "glorot_uniform"; /* Keras's add_weight falls back to this for None */
    else if (n) {
        char ctx[160];
        snprintf(ctx, sizeof ctx, "%s argument '%s': ", a->owner, key);
        return parse_at(n, ctx, out, e);
    }
    const init_entry *t = by_name(name ? name : "glorot_uniform");
    set_defaults(t ? t : &table[0], out);
    return KC_OK;
}

void kc_compute_fans(const kc_shape *s, double *fan_in, double *fan_out) {
    if (s->rank == 0) {
        *fan_in = *fan_out = 1.0;
    } else if (s->rank == 1) {
        *fan_in = *fan_out = (double)s->d[0];
    } else if (s->rank == 2) {
        *fan_in = (double)s->d[0];
        *fan_out = (double)s->d[1];
    } else {
        double rf = 1.0;
        for (int i = 0; i < s->rank - 2; i++)
            rf *= (double)s->d[i];
        *fan_in = (double)s->d[s->rank - 2] * rf;
        *fan_out = (double)s->d[s->rank - 1] * rf;
    }
}

/* A unit normal truncated to [-2, 2]: attempt j of element i draws index
 * i + j n, so redraws never collide with another element's draws. */
static double truncated_unit(uint64_t seed, uint64_t stream, uint64_t i, uint64_t n) {
    for (uint64_t j = 0; j < 64; j++) {
        double z = kc_rng_normal(seed, stream, i + j * n);
        if (fabs(z) <= 2.0) return z;
    }
    return 0.0; /* 64 misses in a row have probability below 1e-85 */
}

/* VarianceScaling: (scale, mode: 0 fan_in / 1 fan_avg, uniform or truncated normal). */
static void fill_variance_scaling(const kc_shape *s, float *w, size_t n, double scale, int fan_avg,
                                  int uniform, uint64_t seed, uint64_t stream) {
    double fan_in, fan_out;
    kc_compute_fans(s, &fan_in, &fan_out);
    double fan = fan_avg ? (fan_in + fan_out) / 2.0 : fan_in;
    double v = scale / (fan > 1.0 ? fan : 1.0);
    if (uniform) {
        double limit = sqrt(3.0 * v);
        for (size_t i = 0; i < n; i++)
            w[i] = (float)(-limit + 2.0 * limit * kc_rng_uniform(seed, stream, i));
    } else {
        double sigma = sqrt(v) / TRUNC_STDDEV;
        for (size_t i = 0; i < n; i++)
            w[i] = (float)(sigma * truncated_unit(seed, stream, i, n));
    }
}

/* Householder QR of the m x n (m >= n) row-major matrix a, in place: on
 * return q (m x n) holds the thin Q with each column's sign fixed so that
 * R's diagonal is positive (Keras's q * sign(diag(r))). v is scratch of m. */
static void thin_qr(double *a, double *q, double *v, size_t m, size_t n) {
    double *rdiag = q; /* q's first row is written last; borrow n cells for the diagonal */
    for (size_t k = 0; k < n; k++) {
        double norm = 0;
        for (size_t i = k; i < m; i++)
            norm += a[i * n + k] * a[i * n + k];
        norm = sqrt(norm);
        double alpha = a[k * n + k] > 0 ? -norm : norm;
        double vn = 0;
        for (size_t i = k; i < m; i++) {
            v[i] = a[i * n + k] - (i == k ? alpha : 0.0);
            vn += v[i] * v[i];
        }
        vn = sqrt(vn);
        for (size_t i = k; i < m; i++) {
            v[i] = vn > 0 ? v[i] / vn : 0.0;
            a[i * n + k] = v[i]; /* the reflector replaces column k below the diagonal */
        }
        for (size_t j = k + 1; j < n; j++) {
            double dot = 0;
            for (size_t i = k; i < m; i++)
                dot += v[i] * a[i * n + j];
            for (size_t i = k; i < m; i++)
                a[i * n + j] -= 2 * dot * v[i];
        }
        rdiag[k] = alpha;
    }
    double *sign = v; /* m >= n cells */
    for (size_t k = 0; k < n; k++)
        sign[k] = rdiag[k] > 0 ? 1.0 : rdiag[k] < 0 ? -1.0 : 0.0;
    /* Q = H_0 ... H_{n-1} I[:, :n], applied right to left; column k of a holds v_k */
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++)
            q[i * n + j] = i == j ? 1.0 : 0.0;
    for (size_t k = n; k-- > 0;)
        for (size_t j = 0; j < n; j++) {
            double dot = 0;
            for (size_t i = k; i < m; i++)
                dot += a[i * n + k] * q[i * n + j];
            for (size_t i = k; i < m; i++)
                q[i * n + j] -= 2 * dot * a[i * n + k];
        }
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++)
            q[i * n + j] *= sign[j];
}

/* Keras's Orthogonal: a normal (max(r, c), min(r, c)) matrix, r the product
 * of the leading axes and c the last; Q of its QR, transposed when r < c. */
static void fill_orthogonal(const kc_shape *s, float *w, size_t n, double gain, uint64_t seed,
                            uint64_t stream) {
    size_t cols = s->rank ? (size_t)s->d[s->rank - 1] : 1;
    size_t rows = cols ? n / cols : 0;
    size_t m = rows > cols ? rows : cols, k = rows > cols ? cols : rows;
    double *a = m && k ? malloc(m * k * sizeof *a) : NULL;
    double *q = a ? malloc(m * k * sizeof *q) : NULL;
    double *v = q ? malloc(m * sizeof *v) : NULL;
    if (!v) { /* out of memory or empty: zeros, which the caller's checks still see as weights */
        for (size_t i = 0; i < n; i++)
            w[i] = 0.0f;
        free(a), free(q);
        return;
    }
    for (size_t i = 0; i < m * k; i++)
        a[i] = kc_rng_normal(seed, stream, i);
    thin_qr(a, q, v, m, k);
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++)
            w[i * cols + j] = (float)(gain * (rows >= cols ? q[i * k + j] : q[j * k + i]));
    free(a), free(q), free(v);
}

static void fill_plain(const kc_initializer *init, const kc_shape *s, float *w, uint64_t seed,
                       uint64_t stream);

/* unit_forget_bias: (u,) of init, (u,) of ones, (2u,) of init (its own stream) */
static void fill_forget_bias(const kc_initializer *init, float *w, uint64_t seed, uint64_t stream) {
    int64_t u = init->forget_units;
    kc_shape a = kc_shape1(u), c = kc_shape1(2 * u);
    fill_plain(init, &a, w, seed, stream);
    for (int64_t i = 0; i < u; i++)
        w[u + i] = 1.0f;
    fill_plain(init, &c, w + 2 * u, seed, kc_rng_stream("unit_forget_bias", stream, 0));
}

void kc_initializer_fill(const kc_initializer *init, const kc_shape *s, float *w, uint64_t seed,
                         uint64_t stream) {
    if (init->forget_units > 0 && s->rank == 1 && s->d[0] == 4 * init->forget_units) {
        fill_forget_bias(init, w, seed, stream);
        return;
    }
    fill_plain(init, s, w, seed, stream);
}

static void fill_plain(const kc_initializer *init, const kc_shape *s, float *w, uint64_t seed,
                       uint64_t stream) {
    size_t n = (size_t)kc_shape_numel(s);
    if (init->has_seed) seed = (uint64_t)init->seed;
    switch (init->kind) {
    case KC_INIT_GLOROT_UNIFORM:
        fill_variance_scaling(s, w, n, 1.0, 1, 1, seed, stream);
        break;
    case KC_INIT_GLOROT_NORMAL:
        fill_variance_scaling(s, w, n, 1.0, 1, 0, seed, stream);
        break;
    case KC_INIT_HE_UNIFORM:
        fill_variance_scaling(s, w, n, 2.0, 0, 1, seed, stream);
        break;
    case KC_INIT_HE_NORMAL:
        fill_variance_scaling(s, w, n, 2.0, 0, 0, seed, stream);
        break;
    case KC_INIT_LECUN_UNIFORM:
        fill_variance_scaling(s, w, n, 1.0, 0, 1, seed, stream);
        break;
    case KC_INIT_LECUN_NORMAL:
        fill_variance_scaling(s, w, n, 1.0, 0, 0, seed, stream);
        break;
    case KC_INIT_RANDOM_UNIFORM:
        for (size_t i = 0; i < n; i++)
            w[i] = (float)(init->a + (init->b - init->a) * kc_rng_uniform(seed, stream, i));
        break;
    case KC_INIT_RANDOM_NORMAL:
        for (size_t i = 0; i < n; i++)
            w[i] = (float)(init->a + init->b * kc_rng_normal(seed, stream, i));
        break;
    case KC_INIT_TRUNCATED_NORMAL:
        for (size_t i = 0; i < n; i++)
            w[i] = (float)(init->a + init->b * truncated_unit(seed, stream, i, n));
        break;
    case KC_INIT_ZEROS:
        for (size_t i = 0; i < n; i++)
            w[i] = 0.0f;
        break;
    case KC_INIT_ONES:
        for (size_t i = 0; i < n; i++)
            w[i] = 1.0f;
        break;
    case KC_INIT_CONSTANT:
        for (size_t i = 0; i < n; i++)
            w[i] = (float)init->a;
        break;
    case KC_INIT_ORTHOGONAL:
        fill_orthogonal(s, w, n, init->a, seed, stream);
        break;
    }
}

const char *kc_initializer_name(const kc_initializer *init) {
    const init_entry *t = by_kind(init->kind);
    return t ? t->snake : "unknown";
}

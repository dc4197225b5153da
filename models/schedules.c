#include "models/schedules.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/args.h"
#include "models/losses.h"

static const struct {
    const char *class_name;
    kc_schedule_kind kind;
} classes[] = {
    {"ExponentialDecay", KC_SCHEDULE_EXPONENTIAL_DECAY},
    {"PiecewiseConstantDecay", KC_SCHEDULE_PIECEWISE_CONSTANT_DECAY},
    {"InverseTimeDecay", KC_SCHEDULE_INVERSE_TIME_DECAY},
    {"PolynomialDecay", KC_SCHEDULE_POLYNOMIAL_DECAY},
    {"CosineDecay", KC_SCHEDULE_COSINE_DECAY},
};
#define NCLASSES (sizeof classes / sizeof classes[0])

const char *const kc_schedule_names[] = {"ExponentialDecay", "PiecewiseConstantDecay",
                                         "InverseTimeDecay", "PolynomialDecay",
                                         "CosineDecay",      NULL};

const char *kc_schedule_class_name(kc_schedule_kind kind) {
    for (size_t i = 0; i < NCLASSES; i++)
        if (classes[i].kind == kind) return classes[i].class_name;
    return "constant";
}

void kc_schedule_default(kc_schedule_kind kind, kc_schedule *s) {
    memset(s, 0, sizeof *s);
    s->kind = kind;
    /* Keras's default names: PiecewiseConstantDecay calls itself "PiecewiseConstant" */
    snprintf(s->name, sizeof s->name, "%s",
             kind == KC_SCHEDULE_PIECEWISE_CONSTANT_DECAY ? "PiecewiseConstant"
                                                          : kc_schedule_class_name(kind));
    s->end_learning_rate = 0.0001;
    s->power = 1.0;
}

/* ---- values: float32, in Keras's order of operations ---- */

static float exponential(const kc_schedule *s, int64_t step) {
    float p = (float)step / (float)s->decay_steps;
    if (s->staircase) p = floorf(p);
    return (float)s->initial_learning_rate * powf((float)s->decay_rate, p);
}

/* Keras casts the boundaries to the step's integer type and sums
 * indicator * value over the pieces; with increasing boundaries exactly one
 * piece holds, so the sum is that piece's value. */
static float piecewise(const kc_schedule *s, int64_t step) {
    int nb = s->nboundaries;
    if (step <= s->boundaries[0]) return (float)s->values[0];
    if (step > s->boundaries[nb - 1]) return (float)s->values[nb];
    for (int i = 0; i + 1 < nb; i++)
        if (step > s->boundaries[i] && step <= s->boundaries[i + 1]) return (float)s->values[i + 1];
    return 0.0f;
}

static float inverse_time(const kc_schedule *s, int64_t step) {
    float p = (float)step / (float)s->decay_steps;
    if (s->staircase) p = floorf(p);
    float denom = 1.0f + (float)s->decay_rate * p;
    return (float)s->initial_learning_rate / denom;
}

static float polynomial(const kc_schedule *s, int64_t step) {
    float lr0 = (float)s->initial_learning_rate, end = (float)s->end_learning_rate;
    float t = (float)step, ds = (float)s->decay_steps;
    if (s->cycle) {
        /* the first multiple of decay_steps at or above the step (1 at step 0) */
        float mult = t == 0.0f ? 1.0f : ceilf(t / ds);
        ds = ds * mult;
    } else {
        t = fminf(t, ds);
    }
    float p = t / ds;
    return (lr0 - end) * powf(1.0f - p, (float)s->power) + end;
}

static float cosine_part(const kc_schedule *s, float t, float ds, float from) {
    float frac = t / ds;
    float cosine = 0.5f * (1.0f + cosf((float)M_PI * frac));
    float decayed = (float)(1.0 - s->alpha) * cosine + (float)s->alpha;
    return from * decayed;
}

static float cosine(const kc_schedule *s, int64_t step) {
    float lr0 = (float)s->initial_learning_rate, ds = (float)s->decay_steps, t = (float)step;
    if (!s->has_warmup) return cosine_part(s, fminf(t, ds), ds, lr0);
    float target = (float)s->warmup_target, ws = (float)s->warmup_steps;
    t = fminf(t, ds + ws);
    if (t < ws) return (target - lr0) * (t / ws) + lr0;
    return cosine_part(s, t - ws, ds, target);
}

double kc_schedule_value(const kc_schedule *s, int64_t step) {
    switch (s->kind) {
    case KC_SCHEDULE_EXPONENTIAL_DECAY:
        return exponential(s, step);
    case KC_SCHEDULE_PIECEWISE_CONSTANT_DECAY:
        return piecewise(s, step);
    case KC_SCHEDULE_INVERSE_TIME_DECAY:
        return inverse_time(s, step);
    case KC_SCHEDULE_POLYNOMIAL_DECAY:
        return polynomial(s, step);
    case KC_SCHEDULE_COSINE_DECAY:
        return cosine(s, step);
    case KC_SCHEDULE_NONE:
        break;
    }
    return NAN;
}

/* ---- checks ---- */

int kc_schedule_check(const kc_schedule *s, kc_error *e) {
    const char *cls = kc_schedule_class_name(s->kind);
    if (s->kind == KC_SCHEDULE_NONE || !strcmp(cls, "constant"))
        return kc_fail(e, KC_ECONFIG, "not a learning rate schedule (kind %d)", (int)s->kind);
    if (s->kind == KC_SCHEDULE_PIECEWISE_CONSTANT_DECAY) {
        if (s->nboundaries < 1 || s->nboundaries > KC_SCHEDULE_MAX_BOUNDARIES)
            return kc_fail(e, KC_ECONFIG, "%s needs 1 to %d boundaries, got %d", cls,
                           KC_SCHEDULE_MAX_BOUNDARIES, s->nboundaries);
        for (int i = 0; i + 1 < s->nboundaries; i++)
            if (!(s->boundaries[i] < s->boundaries[i + 1]))
                return kc_fail(e, KC_ECONFIG, "%s boundaries must be strictly increasing", cls);
        for (int i = 0; i <= s->nboundaries; i++)
            if (!(s->values[i] >= 0) || !isfinite(s->values[i]))
                return kc_fail(e, KC_ECONFIG, "%s values must be finite and >= 0", cls);
        return KC_OK;
    }
    if (!(s->initial_learning_rate >= 0) || !isfinite(s->initial_learning_rate))
        return kc_fail(e, KC_ECONFIG, "%s: initial_learning_rate must be >= 0, got %g", cls,
                       s->initial_learning_rate);
    if (!(s->decay_steps > 0) || !isfinite(s->decay_steps))
        return kc_fail(e, KC_ECONFIG, "%s: decay_steps must be > 0, got %g", cls, s->decay_steps);
    if ((s->kind == KC_SCHEDULE_EXPONENTIAL_DECAY || s->kind == KC_SCHEDULE_INVERSE_TIME_DECAY) &&
        (!(s->decay_rate >= 0) || !isfinite(s->decay_rate)))
        return kc_fail(e, KC_ECONFIG, "%s: decay_rate must be >= 0, got %g", cls, s->decay_rate);
    if (s->kind == KC_SCHEDULE_POLYNOMIAL_DECAY &&
        (!(s->end_learning_rate >= 0) || !isfinite(s->end_learning_rate) || !(s->power >= 0) ||
         !isfinite(s->power)))
        return kc_fail(e, KC_ECONFIG, "%s: end_learning_rate and power must be >= 0", cls);
    if (s->kind == KC_SCHEDULE_COSINE_DECAY &&
        (!(s->alpha >= 0 && s->alpha <= 1) || !(s->warmup_steps >= 0) ||
         !isfinite(s->warmup_steps) ||
         (s->has_warmup && (!(s->warmup_target >= 0) || !isfinite(s->warmup_target)))))
        return kc_fail(e, KC_ECONFIG,
                       "%s: alpha must be in [0, 1], warmup_steps and warmup_target >= 0", cls);
    return KC_OK;
}

/* ---- parsing ---- */

/* A number > 0 (kc_args_float's ranges are closed). */
static int read_positive(kc_args *a, const char *key, double *out, kc_error *e) {
    int rc = kc_args_float(a, key, 1, 0.0, 0.0, INFINITY, out, e);
    if (rc) return rc;
    if (*out > 0) return KC_OK;
    return kc_node_fail(e, kc_args_node(a, key), "%s argument '%s' must be > 0, got %g", a->owner,
                        key, *out);
}

static int read_name(kc_args *a, kc_schedule *s, kc_error *e) {
    const char *name;
    int rc = kc_args_str(a, "name", 0, NULL, &name, e);
    if (rc) return rc;
    if (name) snprintf(s->name, sizeof s->name, "%s", name);
    return KC_OK;
}

/* A list of numbers; *count receives its length. */
static int read_numbers(kc_args *a, const char *key, int max, double *out, int *count,
                        kc_node **where, kc_error *e) {
    kc_node *n = kc_args_node(a, key);
    if (!n || kc_node_is_null(n))
        return kc_node_fail(e, a->where, "%s requires the argument '%s'", a->owner, key);
    *where = n;
    if (n->kind != KC_NODE_SEQ)
        return kc_node_fail(e, n, "%s argument '%s': expected a list of numbers, got %s", a->owner,
                            key, kc_node_kind_name(n));
    if ((int)n->n > max)
        return kc_node_fail(e, n, "%s argument '%s': at most %d entries, got %zu", a->owner, key,
                            max, n->n);
    for (size_t i = 0; i < n->n; i++)
        if (kc_node_float(n->items[i], &out[i], e))
            return kc_node_fail(e, n->items[i], "%s argument '%s': expected a number, got %s",
                                a->owner, key, kc_node_kind_name(n->items[i]));
    *count = (int)n->n;
    return KC_OK;
}

static int read_piecewise(kc_args *a, kc_schedule *s, kc_error *e) {
    double b[KC_SCHEDULE_MAX_BOUNDARIES];
    int nb, nv;
    kc_node *bn, *vn;
    int rc = read_numbers(a, "boundaries", KC_SCHEDULE_MAX_BOUNDARIES, b, &nb, &bn, e);
    if (rc) return rc;
    if ((rc = read_numbers(a, "values", KC_SCHEDULE_MAX_BOUNDARIES + 1, s->values, &nv, &vn, e)))
        return rc;
    if (nb < 1)
        return kc_node_fail(e, bn, "%s argument 'boundaries' must list at least one step",
                            a->owner);
    if (nv != nb + 1)
        return kc_node_fail(e, vn,
                            "%s argument 'values' must have one more entry than 'boundaries' "
                            "(%d), got %d",
                            a->owner, nb, nv);
    for (int i = 0; i < nb; i++) {
        if (fabs(b[i]) > 9007199254740992.0)
            return kc_node_fail(e, bn->items[i], "%s boundary %g is out of range", a->owner, b[i]);
        if (i && !(b[i] > b[i - 1]))
            return kc_node_fail(e, bn->items[i],
                                "%s argument 'boundaries' must be strictly increasing: %g follows "
                                "%g",
                                a->owner, b[i], b[i - 1]);
        s->boundaries[i] = (int64_t)b[i]; /* Keras casts them to the step's integer type */
    }
    for (int i = 0; i < nv; i++)
        if (!(s->values[i] >= 0))
            return kc_node_fail(e, vn->items[i],
                                "%s learning rates in 'values' must be >= 0, got %g", a->owner,
                                s->values[i]);
    s->nboundaries = nb;
    return KC_OK;
}

static int read_decay(kc_args *a, kc_schedule *s, kc_error *e) {
    int rc = kc_args_float(a, "decay_rate", 1, 0.0, 0.0, INFINITY, &s->decay_rate, e);
    if (rc) return rc;
    return kc_args_bool(a, "staircase", 0, &s->staircase, e);
}

static int read_polynomial(kc_args *a, kc_schedule *s, kc_error *e) {
    int rc =
        kc_args_float(a, "end_learning_rate", 0, 0.0001, 0.0, INFINITY, &s->end_learning_rate, e);
    if (rc) return rc;
    if ((rc = kc_args_float(a, "power", 0, 1.0, 0.0, INFINITY, &s->power, e))) return rc;
    return kc_args_bool(a, "cycle", 0, &s->cycle, e);
}

static int read_cosine(kc_args *a, kc_schedule *s, kc_error *e) {
    int rc = kc_args_float(a, "alpha", 0, 0.0, 0.0, 1.0, &s->alpha, e);
    if (rc) return rc;
    s->has_warmup = kc_args_has(a, "warmup_target");
    if (s->has_warmup &&
        (rc = kc_args_float(a, "warmup_target", 1, 0.0, 0.0, INFINITY, &s->warmup_target, e)))
        return rc;
    return kc_args_float(a, "warmup_steps", 0, 0.0, 0.0, INFINITY, &s->warmup_steps, e);
}

/* Marks every argument of the class as known before any is required, so a
 * missing one is reported as missing rather than as a misspelling of a
 * sibling not read yet ('decay_rate' for 'decay_steps'). */
static void know_keys(kc_args *a, kc_schedule_kind kind) {
    static const char *const common[] = {"initial_learning_rate", "decay_steps", NULL};
    static const char *const decay[] = {"decay_rate", "staircase", NULL};
    static const char *const poly[] = {"end_learning_rate", "power", "cycle", NULL};
    static const char *const cos[] = {"alpha", "warmup_target", "warmup_steps", NULL};
    static const char *const piece[] = {"boundaries", "values", NULL};
    const char *const *lists[2] = {NULL, NULL};
    switch (kind) {
    case KC_SCHEDULE_EXPONENTIAL_DECAY:
    case KC_SCHEDULE_INVERSE_TIME_DECAY:
        lists[0] = common, lists[1] = decay;
        break;
    case KC_SCHEDULE_POLYNOMIAL_DECAY:
        lists[0] = common, lists[1] = poly;
        break;
    case KC_SCHEDULE_COSINE_DECAY:
        lists[0] = common, lists[1] = cos;
        break;
    default:
        lists[0] = piece;
        break;
    }
    for (int l = 0; l < 2; l++)
        for (const char *const *k = lists[l]; k && *k; k++)
            kc_args_node(a, *k);
}

static int read_args(kc_args *a, kc_schedule *s, kc_error *e) {
    know_keys(a, s->kind);
    int rc = read_name(a, s, e);
    if (rc) return rc;
    if (s->kind == KC_SCHEDULE_PIECEWISE_CONSTANT_DECAY) return read_piecewise(a, s, e);
    if ((rc = kc_args_float(a, "initial_learning_rate", 1, 0.0, 0.0, INFINITY,
                            &s->initial_learning_rate, e)))
        return rc;
    if ((rc = read_positive(a, "decay_steps", &s->decay_steps, e))) return rc;
    switch (s->kind) {
    case KC_SCHEDULE_EXPONENTIAL_DECAY:
    case KC_SCHEDULE_INVERSE_TIME_DECAY:
        return read_decay(a, s, e);
    case KC_SCHEDULE_POLYNOMIAL_DECAY:
        return read_polynomial(a, s, e);
    case KC_SCHEDULE_COSINE_DECAY:
        return read_cosine(a, s, e);
    default:
        return KC_OK;
    }
}

int kc_schedule_read(kc_node *node, kc_schedule *out, kc_error *e) {
    const char *name;
    const kc_node *at;
    kc_args a;
    int rc = kc_object_spec(node, "learning rate schedule", &name, &at, &a, e);
    if (rc) return rc;
    size_t i = 0;
    while (i < NCLASSES && strcmp(name, classes[i].class_name))
        i++;
    if (i == NCLASSES)
        return kc_unknown_name(at, "learning rate schedule", name, kc_schedule_names, e);
    kc_schedule s;
    kc_schedule_default(classes[i].kind, &s);
    a.owner = classes[i].class_name;
    if ((rc = read_args(&a, &s, e))) return rc;
    if ((rc = kc_args_finish(&a, e))) return rc;
    *out = s;
    return KC_OK;
}

int kc_schedule_parse(kc_node *node, kc_schedule **out, kc_error *e) {
    *out = NULL;
    kc_schedule s;
    int rc = kc_schedule_read(node, &s, e);
    if (rc) return rc;
    kc_schedule *p = malloc(sizeof *p);
    if (!p) return kc_fail(e, KC_ERUNTIME, "out of memory reading a learning rate schedule");
    *p = s;
    *out = p;
    return KC_OK;
}

void kc_schedule_free(kc_schedule *s) {
    free(s);
}

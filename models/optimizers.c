#include "models/optimizers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/ops.h"
#include "models/args.h"
#include "models/losses.h"

#define KINDS 3 /* slot kinds per parameter at most */

typedef struct slot {
    char *name;
    kc_buf dev;
    size_t n;
    size_t offset; /* in floats, within the block */
} slot;

/* Which slots an optimizer keeps, at fixed kind positions its update uses,
 * and the group that orders them as Keras 3's build() creates them: kinds
 * sharing a group are interleaved per parameter, groups follow each other. */
typedef struct slot_kind {
    const char *name; /* NULL: not kept */
    int group;
} slot_kind;

/* Keras 3's per-step scalars in float32, in Keras's order of operations. */
typedef struct step_scalars {
    float lr;
    float alpha;              /* Adam(W) */
    float one_minus_b1_power; /* Adamax */
    kc_nadam_coef nadam;
} step_scalars;

typedef struct optimizer_class optimizer_class;

struct kc_optimizer {
    kc_optimizer_config cfg;
    const optimizer_class *cls;
    int64_t iterations;
    float u_product; /* Nadam: Keras's running product u_1 ... u_t, float32 */
    kc_device *dev;  /* where the slots live (not owned) */
    int nparams;
    size_t *sizes;
    kc_buf block; /* every slot, one device allocation */
    slot *slots;
    int nslots;
    int *index; /* nparams x KINDS: the slot of (param, kind), or -1 */
    /* Clipping only, one device allocation: for norm clipping a double per
     * parameter (its gradient's sum of squares), then the clipped gradients. */
    kc_buf scratch;
    kc_buf sums;       /* the doubles, at the start of scratch (null without norm clipping) */
    kc_buf *clipped;   /* nparams places in scratch */
    double *host_sums; /* the doubles read back, nparams */
};

/* One Keras optimizer class: its names, defaults, arguments, checks, slots
 * and update. `scalars` may be NULL. */
struct optimizer_class {
    const char *class_name;
    const char *default_name; /* Keras's `name` default */
    kc_optimizer_kind kind;
    void (*defaults)(kc_optimizer_config *c);
    int (*read)(kc_args *a, kc_optimizer_config *c, kc_error *e);
    int (*check)(const kc_optimizer_config *c, const char *cls, kc_error *e);
    void (*slots)(const kc_optimizer_config *c, slot_kind k[KINDS]);
    void (*scalars)(kc_optimizer *o, step_scalars *s); /* once per step, before the updates */
    int (*update)(const kc_optimizer *o, const step_scalars *s, int p, kc_buf w, kc_buf g);
};

static kc_buf slot_of(const kc_optimizer *o, int p, int kind) {
    int i = o->index[p * KINDS + kind];
    return i < 0 ? KC_BUF_NULL : o->slots[i].dev;
}

/* ---- shared readers and checks ---- */

/* A float read through args that must stay below `bound` (kc_args_float's
 * ranges are closed). */
static int read_below(kc_args *a, const char *key, double def, double bound, double *out,
                      kc_error *e) {
    int rc = kc_args_float(a, key, 0, def, 0.0, bound, out, e);
    if (rc) return rc;
    if (*out < bound) return KC_OK;
    return kc_node_fail(e, kc_args_node(a, key), "%s argument '%s' must be in [0, %g), got %g",
                        a->owner, key, bound, *out);
}

static int read_unit(kc_args *a, const char *key, double *v, kc_error *e) {
    return kc_args_float(a, key, 0, *v, 0.0, 1.0, v, e);
}

static int read_epsilon(kc_args *a, kc_optimizer_config *c, kc_error *e) {
    return kc_args_float(a, "epsilon", 0, c->epsilon, 0.0, INFINITY, &c->epsilon, e);
}

static int check_range(const char *cls, const char *key, double v, int open_top, kc_error *e) {
    if (v >= 0 && (open_top ? v < 1 : v <= 1)) return KC_OK;
    return kc_fail(e, KC_ECONFIG, "%s: %s must be in [0, 1%s, got %g", cls, key,
                   open_top ? ")" : "]", v);
}

static void keras_epsilon(kc_optimizer_config *c) {
    c->epsilon = 1e-7;
}

/* ---- SGD ---- */

enum { SGD_MOMENTUM = 0 };

static int sgd_read(kc_args *a, kc_optimizer_config *c, kc_error *e) {
    int rc = read_unit(a, "momentum", &c->momentum, e);
    if (rc) return rc;
    return kc_args_bool(a, "nesterov", 0, &c->nesterov, e);
}

static int sgd_check(const kc_optimizer_config *c, const char *cls, kc_error *e) {
    return check_range(cls, "momentum", c->momentum, 0, e);
}

static void sgd_slots(const kc_optimizer_config *c, slot_kind k[KINDS]) {
    if (c->momentum != 0) k[SGD_MOMENTUM] = (slot_kind){"momentum", 0};
}

static int sgd_update(const kc_optimizer *o, const step_scalars *s, int p, kc_buf w, kc_buf g) {
    return kc_sgd_update(o->dev, w, g, slot_of(o, p, SGD_MOMENTUM), o->sizes[p], s->lr,
                         (float)o->cfg.momentum, o->cfg.nesterov);
}

/* ---- RMSprop ---- */

enum { RMS_VELOCITY = 0, RMS_MOMENTUM = 1, RMS_AVERAGE = 2 };

static void rmsprop_defaults(kc_optimizer_config *c) {
    c->rho = 0.9;
    keras_epsilon(c);
}

static int rmsprop_read(kc_args *a, kc_optimizer_config *c, kc_error *e) {
    int rc;
    if ((rc = read_unit(a, "rho", &c->rho, e))) return rc;
    if ((rc = read_unit(a, "momentum", &c->momentum, e))) return rc;
    if ((rc = read_epsilon(a, c, e))) return rc;
    return kc_args_bool(a, "centered", 0, &c->centered, e);
}

static int rmsprop_check(const kc_optimizer_config *c, const char *cls, kc_error *e) {
    int rc = check_range(cls, "rho", c->rho, 0, e);
    if (rc) return rc;
    return check_range(cls, "momentum", c->momentum, 0, e);
}

static void rmsprop_slots(const kc_optimizer_config *c, slot_kind k[KINDS]) {
    k[RMS_VELOCITY] = (slot_kind){"velocity", 0};
    if (c->momentum > 0) k[RMS_MOMENTUM] = (slot_kind){"momentum", 1};
    if (c->centered) k[RMS_AVERAGE] = (slot_kind){"average_gradient", 2};
}

static int rmsprop_update(const kc_optimizer *o, const step_scalars *s, int p, kc_buf w, kc_buf g) {
    const kc_optimizer_config *c = &o->cfg;
    return kc_rmsprop_update(o->dev, w, g, slot_of(o, p, RMS_VELOCITY), slot_of(o, p, RMS_AVERAGE),
                             slot_of(o, p, RMS_MOMENTUM), o->sizes[p], s->lr, (float)c->rho,
                             (float)(1.0 - c->rho), (float)c->momentum, (float)c->epsilon,
                             c->centered);
}

/* ---- Adam, AdamW, Adamax, Nadam: beta_1, beta_2, epsilon ---- */

static void betas_defaults(kc_optimizer_config *c) {
    c->beta_1 = 0.9;
    c->beta_2 = 0.999;
    keras_epsilon(c);
}

/* Adamax keeps a max of the second moment, not a bias-corrected mean, so its
 * beta_2 may be 1. */
static int beta_2_open(const kc_optimizer_config *c) {
    return c->kind != KC_OPTIMIZER_ADAMAX;
}

static int betas_read(kc_args *a, kc_optimizer_config *c, kc_error *e) {
    int rc = read_below(a, "beta_1", c->beta_1, 1.0, &c->beta_1, e);
    if (rc) return rc;
    if (beta_2_open(c))
        rc = read_below(a, "beta_2", c->beta_2, 1.0, &c->beta_2, e);
    else
        rc = read_unit(a, "beta_2", &c->beta_2, e);
    if (rc) return rc;
    return read_epsilon(a, c, e);
}

static int betas_check(const kc_optimizer_config *c, const char *cls, kc_error *e) {
    int rc = check_range(cls, "beta_1", c->beta_1, 1, e);
    if (rc) return rc;
    return check_range(cls, "beta_2", c->beta_2, beta_2_open(c), e);
}

/* ---- Adam, AdamW ---- */

enum { ADAM_M = 0, ADAM_V = 1, ADAM_VHAT = 2 };

static void adamw_defaults(kc_optimizer_config *c) {
    betas_defaults(c);
    c->weight_decay = 0.004;
}

static int adam_read(kc_args *a, kc_optimizer_config *c, kc_error *e) {
    int rc = betas_read(a, c, e);
    if (rc) return rc;
    return kc_args_bool(a, "amsgrad", 0, &c->amsgrad, e);
}

static void adam_slots(const kc_optimizer_config *c, slot_kind k[KINDS]) {
    k[ADAM_M] = (slot_kind){"momentum", 0};
    k[ADAM_V] = (slot_kind){"velocity", 0};
    if (c->amsgrad) k[ADAM_VHAT] = (slot_kind){"velocity_hat", 1};
}

static void adam_scalars(kc_optimizer *o, step_scalars *s) {
    float t = (float)(o->iterations + 1);
    float b1_power = powf((float)o->cfg.beta_1, t), b2_power = powf((float)o->cfg.beta_2, t);
    s->alpha = s->lr * sqrtf(1.0f - b2_power) / (1.0f - b1_power);
}

static int adam_update(const kc_optimizer *o, const step_scalars *s, int p, kc_buf w, kc_buf g) {
    const kc_optimizer_config *c = &o->cfg;
    return kc_adam_update(o->dev, w, g, slot_of(o, p, ADAM_M), slot_of(o, p, ADAM_V),
                          slot_of(o, p, ADAM_VHAT), o->sizes[p], s->alpha, (float)(1.0 - c->beta_1),
                          (float)(1.0 - c->beta_2), (float)c->epsilon, c->amsgrad);
}

/* ---- Adagrad ---- */

enum { ADAGRAD_ACC = 0 };

static void adagrad_defaults(kc_optimizer_config *c) {
    c->initial_accumulator_value = 0.1;
    keras_epsilon(c);
}

static int adagrad_read(kc_args *a, kc_optimizer_config *c, kc_error *e) {
    int rc = kc_args_float(a, "initial_accumulator_value", 0, c->initial_accumulator_value, 0.0,
                           INFINITY, &c->initial_accumulator_value, e);
    if (rc) return rc;
    return read_epsilon(a, c, e);
}

static int adagrad_check(const kc_optimizer_config *c, const char *cls, kc_error *e) {
    if (c->initial_accumulator_value >= 0 && isfinite(c->initial_accumulator_value)) return KC_OK;
    return kc_fail(e, KC_ECONFIG, "%s: initial_accumulator_value must be >= 0, got %g", cls,
                   c->initial_accumulator_value);
}

static void adagrad_slots(const kc_optimizer_config *c, slot_kind k[KINDS]) {
    k[ADAGRAD_ACC] = (slot_kind){"accumulator", 0};
}

static int adagrad_update(const kc_optimizer *o, const step_scalars *s, int p, kc_buf w, kc_buf g) {
    return kc_adagrad_update(o->dev, w, g, slot_of(o, p, ADAGRAD_ACC), o->sizes[p], s->lr,
                             (float)o->cfg.epsilon);
}

/* ---- Adadelta ---- */

enum { ADADELTA_GRAD = 0, ADADELTA_DELTA = 1 };

static void adadelta_defaults(kc_optimizer_config *c) {
    c->rho = 0.95;
    keras_epsilon(c);
}

static int adadelta_read(kc_args *a, kc_optimizer_config *c, kc_error *e) {
    int rc = read_unit(a, "rho", &c->rho, e);
    if (rc) return rc;
    return read_epsilon(a, c, e);
}

static int adadelta_check(const kc_optimizer_config *c, const char *cls, kc_error *e) {
    return check_range(cls, "rho", c->rho, 0, e);
}

static void adadelta_slots(const kc_optimizer_config *c, slot_kind k[KINDS]) {
    k[ADADELTA_GRAD] = (slot_kind){"accumulated_grad", 0};
    k[ADADELTA_DELTA] = (slot_kind){"accumulated_delta_var", 0};
}

static int adadelta_update(const kc_optimizer *o, const step_scalars *s, int p, kc_buf w,
                           kc_buf g) {
    const kc_optimizer_config *c = &o->cfg;
    return kc_adadelta_update(o->dev, w, g, slot_of(o, p, ADADELTA_GRAD),
                              slot_of(o, p, ADADELTA_DELTA), o->sizes[p], s->lr, (float)c->rho,
                              (float)(1.0 - c->rho), (float)c->epsilon);
}

/* ---- Adamax ---- */

enum { ADAMAX_M = 0, ADAMAX_U = 1 };

static void adamax_slots(const kc_optimizer_config *c, slot_kind k[KINDS]) {
    k[ADAMAX_M] = (slot_kind){"momentum", 0};
    k[ADAMAX_U] = (slot_kind){"norm", 0};
}

static void adamax_scalars(kc_optimizer *o, step_scalars *s) {
    s->one_minus_b1_power = 1.0f - powf((float)o->cfg.beta_1, (float)(o->iterations + 1));
}

static int adamax_update(const kc_optimizer *o, const step_scalars *s, int p, kc_buf w, kc_buf g) {
    const kc_optimizer_config *c = &o->cfg;
    return kc_adamax_update(o->dev, w, g, slot_of(o, p, ADAMAX_M), slot_of(o, p, ADAMAX_U),
                            o->sizes[p], s->lr, (float)(1.0 - c->beta_1), (float)c->beta_2,
                            s->one_minus_b1_power, (float)c->epsilon);
}

/* ---- Nadam ---- */

enum { NADAM_M = 0, NADAM_V = 1 };

static void nadam_slots(const kc_optimizer_config *c, slot_kind k[KINDS]) {
    k[NADAM_M] = (slot_kind){"momentum", 0};
    k[NADAM_V] = (slot_kind){"velocity", 0};
}

/* u_t = b1 (1 - 0.5 * 0.96^t), every operand float32 as in Keras */
static float nadam_u(float b1, float t) {
    return b1 * (1.0f - 0.5f * powf(0.96f, t));
}

/* Keras advances u_product once per apply, before the updates, multiplying
 * (u_product * b1) * (1 - 0.5 * 0.96^t) in that order. */
static float nadam_advance(float product, float b1, float t) {
    return product * b1 * (1.0f - 0.5f * powf(0.96f, t));
}

static void nadam_scalars(kc_optimizer *o, step_scalars *s) {
    const kc_optimizer_config *c = &o->cfg;
    float b1 = (float)c->beta_1, b2 = (float)c->beta_2;
    float t = (float)(o->iterations + 1), t_next = (float)(o->iterations + 2);
    o->u_product = nadam_advance(o->u_product, b1, t);
    float u_next = nadam_u(b1, t_next);
    float prod = o->u_product, prod_next = prod * u_next;
    s->nadam = (kc_nadam_coef){.lr = s->lr,
                               .eps = (float)c->epsilon,
                               .one_minus_b1 = 1.0f - b1,
                               .one_minus_b2 = 1.0f - b2,
                               .u_next = u_next,
                               .one_minus_u = 1.0f - nadam_u(b1, t),
                               .one_minus_prod_next = 1.0f - prod_next,
                               .one_minus_prod = 1.0f - prod,
                               .one_minus_b2_power = 1.0f - powf(b2, t)};
}

static int nadam_update(const kc_optimizer *o, const step_scalars *s, int p, kc_buf w, kc_buf g) {
    return kc_nadam_update(o->dev, w, g, slot_of(o, p, NADAM_M), slot_of(o, p, NADAM_V),
                           o->sizes[p], &s->nadam);
}

/* Nadam's u_product after `it` applies; once it underflows to 0 it stays. */
static float nadam_product(double beta_1, int64_t it) {
    float prod = 1.0f;
    for (int64_t k = 1; k <= it && prod != 0.0f; k++)
        prod = nadam_advance(prod, (float)beta_1, (float)k);
    return prod;
}

/* ---- Lion ---- */

enum { LION_M = 0 };

static void lion_defaults(kc_optimizer_config *c) {
    c->beta_1 = 0.9;
    c->beta_2 = 0.99;
}

static int lion_read(kc_args *a, kc_optimizer_config *c, kc_error *e) {
    int rc = read_unit(a, "beta_1", &c->beta_1, e);
    if (rc) return rc;
    if (!(c->beta_1 > 0))
        return kc_node_fail(e, kc_args_node(a, "beta_1"),
                            "Lion argument 'beta_1' must be in (0, 1] (at 0 Lion is SignSGD), "
                            "got %g",
                            c->beta_1);
    return read_unit(a, "beta_2", &c->beta_2, e);
}

static int lion_check(const kc_optimizer_config *c, const char *cls, kc_error *e) {
    if (!(c->beta_1 > 0 && c->beta_1 <= 1))
        return kc_fail(e, KC_ECONFIG, "%s: beta_1 must be in (0, 1], got %g", cls, c->beta_1);
    return check_range(cls, "beta_2", c->beta_2, 0, e);
}

static void lion_slots(const kc_optimizer_config *c, slot_kind k[KINDS]) {
    k[LION_M] = (slot_kind){"momentum", 0};
}

static int lion_update(const kc_optimizer *o, const step_scalars *s, int p, kc_buf w, kc_buf g) {
    return kc_lion_update(o->dev, w, g, slot_of(o, p, LION_M), o->sizes[p], s->lr,
                          (float)o->cfg.beta_1, (float)o->cfg.beta_2);
}

/* ---- the registry ---- */

static const optimizer_class classes[] = {
    {"SGD", "SGD", KC_OPTIMIZER_SGD, NULL, sgd_read, sgd_check, sgd_slots, NULL, sgd_update},
    {"RMSprop", "rmsprop", KC_OPTIMIZER_RMSPROP, rmsprop_defaults, rmsprop_read, rmsprop_check,
     rmsprop_slots, NULL, rmsprop_update},
    {"Adam", "adam", KC_OPTIMIZER_ADAM, betas_defaults, adam_read, betas_check, adam_slots,
     adam_scalars, adam_update},
    {"AdamW", "adamw", KC_OPTIMIZER_ADAMW, adamw_defaults, adam_read, betas_check, adam_slots,
     adam_scalars, adam_update},
    {"Adagrad", "adagrad", KC_OPTIMIZER_ADAGRAD, adagrad_defaults, adagrad_read, adagrad_check,
     adagrad_slots, NULL, adagrad_update},
    {"Adadelta", "adadelta", KC_OPTIMIZER_ADADELTA, adadelta_defaults, adadelta_read,
     adadelta_check, adadelta_slots, NULL, adadelta_update},
    {"Adamax", "adamax", KC_OPTIMIZER_ADAMAX, betas_defaults, betas_read, betas_check, adamax_slots,
     adamax_scalars, adamax_update},
    {"Nadam", "nadam", KC_OPTIMIZER_NADAM, betas_defaults, betas_read, betas_check, nadam_slots,
     nadam_scalars, nadam_update},
    {"Lion", "lion", KC_OPTIMIZER_LION, lion_defaults, lion_read, lion_check, lion_slots, NULL,
     lion_update},
};
#define NCLASSES (sizeof classes / sizeof classes[0])

const char *const kc_optimizer_names[] = {"SGD",      "sgd",      "RMSprop", "rmsprop", "Adam",
                                          "adam",     "AdamW",    "adamw",   "Adagrad", "adagrad",
                                          "Adadelta", "adadelta", "Adamax",  "adamax",  "Nadam",
                                          "nadam",    "Lion",     "lion",    NULL};

static const optimizer_class *class_of(kc_optimizer_kind kind) {
    for (size_t i = 0; i < NCLASSES; i++)
        if (classes[i].kind == kind) return &classes[i];
    return NULL;
}

/* ---- configuration ---- */

void kc_optimizer_config_default(kc_optimizer_kind kind, kc_optimizer_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = kind;
    cfg->learning_rate = kind == KC_OPTIMIZER_SGD ? 0.01 : 0.001;
    const optimizer_class *k = class_of(kind);
    if (!k) return;
    snprintf(cfg->name, sizeof cfg->name, "%s", k->default_name);
    if (k->defaults) k->defaults(cfg);
}

/* Keras's base-optimizer arguments. */
static int check_generic(const kc_optimizer_config *c, const char *cls, kc_error *e) {
    const double vals[] = {c->weight_decay, c->clipnorm, c->clipvalue, c->global_clipnorm};
    const char *const keys[] = {"weight_decay", "clipnorm", "clipvalue", "global_clipnorm"};
    for (int i = 0; i < 4; i++)
        if (!(vals[i] >= 0) || !isfinite(vals[i]))
            return kc_fail(e, KC_ECONFIG, "%s: %s must be >= 0, got %g", cls, keys[i], vals[i]);
    if ((c->clipnorm > 0) + (c->clipvalue > 0) + (c->global_clipnorm > 0) > 1)
        return kc_fail(e, KC_ECONFIG,
                       "%s: only one of clipnorm, clipvalue and global_clipnorm can be set", cls);
    if (c->schedule.kind != KC_SCHEDULE_NONE) return kc_schedule_check(&c->schedule, e);
    if (!(c->learning_rate > 0) || !isfinite(c->learning_rate))
        return kc_fail(e, KC_ECONFIG, "%s: learning_rate must be > 0, got %g", cls,
                       c->learning_rate);
    return KC_OK;
}

static int check_config(const kc_optimizer_config *c, const optimizer_class *k, kc_error *e) {
    if (!k) return kc_fail(e, KC_ECONFIG, "unknown optimizer kind %d", (int)c->kind);
    int rc = check_generic(c, k->class_name, e);
    if (rc) return rc;
    if (!(c->epsilon >= 0) || !isfinite(c->epsilon))
        return kc_fail(e, KC_ECONFIG, "%s: epsilon must be >= 0, got %g", k->class_name,
                       c->epsilon);
    return k->check(c, k->class_name, e);
}

int kc_optimizer_create(const kc_optimizer_config *cfg, kc_optimizer **out, kc_error *e) {
    *out = NULL;
    const optimizer_class *k = class_of(cfg->kind);
    int rc = check_config(cfg, k, e);
    if (rc) return rc;
    kc_optimizer *o = calloc(1, sizeof *o);
    if (!o) return kc_fail(e, KC_ERUNTIME, "out of memory creating the optimizer");
    o->cfg = *cfg;
    o->cls = k;
    o->u_product = 1.0f;
    *out = o;
    return KC_OK;
}

/* ---- parsing ---- */

static int read_learning_rate(kc_args *a, kc_optimizer_config *c, kc_error *e) {
    if (kc_args_has(a, "lr"))
        return kc_node_fail(e, kc_args_node(a, "lr"),
                            "%s argument 'lr' is no longer supported in Keras 3; use "
                            "'learning_rate'",
                            a->owner);
    kc_node *n = kc_args_node(a, "learning_rate");
    if (n && n->kind == KC_NODE_MAP) return kc_schedule_read(n, &c->schedule, e);
    int rc =
        kc_args_float(a, "learning_rate", 0, c->learning_rate, 0.0, INFINITY, &c->learning_rate, e);
    if (rc) return rc;
    if (c->learning_rate > 0) return KC_OK;
    return kc_node_fail(e, kc_args_node(a, "learning_rate"),
                        "%s argument 'learning_rate' must be > 0, got %g", a->owner,
                        c->learning_rate);
}

static int read_weight_decay(kc_args *a, kc_optimizer_config *c, kc_error *e) {
    kc_node *n = kc_args_node(a, "weight_decay");
    if (c->kind == KC_OPTIMIZER_ADAMW && n && kc_node_is_null(n))
        return kc_node_fail(e, n, "AdamW argument 'weight_decay' must be a number, got null");
    return kc_args_float(a, "weight_decay", 0, c->weight_decay, 0.0, INFINITY, &c->weight_decay, e);
}

/* Keras allows one of the three to be set (not None), even to 0, which
 * turns clipping off. */
static int read_clipping(kc_args *a, kc_optimizer_config *c, kc_error *e) {
    const char *const keys[] = {"clipnorm", "clipvalue", "global_clipnorm"};
    double *const dst[] = {&c->clipnorm, &c->clipvalue, &c->global_clipnorm};
    const char *first = NULL;
    for (int i = 0; i < 3; i++) {
        if (!kc_args_has(a, keys[i])) continue;
        if (first)
            return kc_node_fail(e, kc_args_node(a, keys[i]),
                                "%s: only one of 'clipnorm', 'clipvalue' and 'global_clipnorm' "
                                "can be set, got '%s' and '%s'",
                                a->owner, first, keys[i]);
        first = keys[i];
        int rc = kc_args_float(a, keys[i], 0, 0.0, 0.0, INFINITY, dst[i], e);
        if (rc) return rc;
    }
    return KC_OK;
}

/* Keras's generic arguments kerasc does not implement: accepted only when
 * they would have no effect. */
static int reject_unsupported(kc_args *a, kc_error *e) {
    static const char *const keys[] = {"loss_scale_factor", "gradient_accumulation_steps", "decay",
                                       NULL};
    for (const char *const *k = keys; *k; k++)
        if (kc_args_has(a, *k))
            return kc_node_fail(e, kc_args_node(a, *k),
                                "%s argument '%s' is not supported by kerasc; remove it or set "
                                "it to null",
                                a->owner, *k);
    int ema;
    int rc = kc_args_bool(a, "use_ema", 0, &ema, e);
    if (rc) return rc;
    if (ema)
        return kc_node_fail(e, kc_args_node(a, "use_ema"),
                            "%s argument 'use_ema' is not supported by kerasc; remove it or set "
                            "it to false",
                            a->owner);
    /* without use_ema these two have no effect, as in Keras */
    double m;
    if ((rc = kc_args_float(a, "ema_momentum", 0, 0.99, 0.0, 1.0, &m, e))) return rc;
    long long f;
    return kc_args_int(a, "ema_overwrite_frequency", 0, 0, 1, 1LL << 62, &f, e);
}

static int read_args(kc_args *a, const optimizer_class *k, kc_optimizer_config *c, kc_error *e) {
    const char *name;
    int rc = kc_args_str(a, "name", 0, NULL, &name, e);
    if (rc) return rc;
    if (name) snprintf(c->name, sizeof c->name, "%s", name);
    if ((rc = read_learning_rate(a, c, e))) return rc;
    if ((rc = k->read(a, c, e))) return rc;
    if ((rc = read_weight_decay(a, c, e))) return rc;
    if ((rc = read_clipping(a, c, e))) return rc;
    if ((rc = reject_unsupported(a, e))) return rc;
    return kc_args_finish(a, e);
}

int kc_optimizer_parse(kc_node *node, kc_optimizer **out, kc_error *e) {
    kc_optimizer_config cfg;
    *out = NULL;
    if (!node) {
        kc_optimizer_config_default(KC_OPTIMIZER_RMSPROP, &cfg);
        return kc_optimizer_create(&cfg, out, e);
    }
    const char *name;
    const kc_node *at;
    kc_args a;
    int rc = kc_object_spec(node, "optimizer", &name, &at, &a, e);
    if (rc) return rc;
    /* keras.optimizers.deserialize matches built-in class names case-insensitively */
    size_t i = 0;
    while (i < NCLASSES && strcasecmp(name, classes[i].class_name))
        i++;
    if (i == NCLASSES) return kc_unknown_name(at, "optimizer", name, kc_optimizer_names, e);
    kc_optimizer_config_default(classes[i].kind, &cfg);
    a.owner = classes[i].class_name;
    if ((rc = read_args(&a, &classes[i], &cfg, e))) return rc;
    return kc_optimizer_create(&cfg, out, e);
}

/* ---- slots ---- */

static void release_slots(kc_optimizer *o) {
    if (o->dev) {
        kc_free(o->dev, &o->block);
        kc_free(o->dev, &o->scratch);
    }
    for (int i = 0; i < o->nslots; i++)
        free(o->slots[i].name);
    free(o->slots);
    free(o->index);
    free(o->sizes);
    free(o->clipped);
    free(o->host_sums);
    o->sums = KC_BUF_NULL;
    o->slots = NULL;
    o->index = NULL;
    o->sizes = NULL;
    o->clipped = NULL;
    o->host_sums = NULL;
    o->nslots = o->nparams = 0;
}

static char *slot_name(const char *param, const char *kind) {
    size_t len = strlen("optimizer/") + strlen(param) + 1 + strlen(kind) + 1;
    char *s = malloc(len);
    if (s) snprintf(s, len, "optimizer/%s/%s", param, kind);
    return s;
}

/* Lays the slots out in Keras's order; returns the total element count, or
 * (size_t)-1 when a name could not be allocated. */
static size_t plan_slots(kc_optimizer *o, const size_t *sizes, const char *const *names) {
    slot_kind kinds[KINDS];
    memset(kinds, 0, sizeof kinds);
    o->cls->slots(&o->cfg, kinds);
    size_t total = 0;
    for (int g = 0; g < KINDS; g++)
        for (int p = 0; p < o->nparams; p++)
            for (int k = 0; k < KINDS; k++) {
                if (!kinds[k].name || kinds[k].group != g) continue;
                slot *s = &o->slots[o->nslots];
                s->name = slot_name(names[p], kinds[k].name);
                if (!s->name) return (size_t)-1;
                s->n = sizes[p];
                s->offset = total;
                o->index[p * KINDS + k] = o->nslots++;
                total += sizes[p];
            }
    return total;
}

static int clips(const kc_optimizer_config *c) {
    return c->clipnorm > 0 || c->clipvalue > 0 || c->global_clipnorm > 0;
}

static int clips_norm(const kc_optimizer_config *c) {
    return c->clipnorm > 0 || c->global_clipnorm > 0;
}

static int oom_device(kc_optimizer *o, size_t bytes, const char *what, kc_error *e) {
    release_slots(o);
    return kc_fail(e, KC_ERUNTIME, "out of device memory: the optimizer's %s need %zu bytes", what,
                   bytes);
}

/* The clipped-gradient buffers, laid out like the parameters, after the
 * doubles of norm clipping (first, so that they are aligned). */
static int build_scratch(kc_optimizer *o, kc_error *e) {
    size_t head = clips_norm(&o->cfg) ? 2 * (size_t)o->nparams : 0, total = 0;
    for (int p = 0; p < o->nparams; p++)
        total += o->sizes[p];
    if (head) {
        o->host_sums = malloc((size_t)o->nparams * sizeof *o->host_sums);
        if (!o->host_sums) {
            release_slots(o);
            return kc_fail(e, KC_ERUNTIME, "out of memory building the optimizer");
        }
    }
    size_t bytes = (head + (total ? total : 1)) * sizeof(float);
    if (kc_alloc(o->dev, bytes, &o->scratch)) return oom_device(o, bytes, "clipped gradients", e);
    if (head) o->sums = o->scratch;
    size_t off = head;
    for (int p = 0; p < o->nparams; p++) {
        o->clipped[p] = kc_buf_f(o->scratch, off);
        off += o->sizes[p];
    }
    return KC_OK;
}

/* Keras's Constant initializer for Adagrad's accumulators, in float32. */
static int init_slots(kc_optimizer *o, size_t total, kc_error *e) {
    if (o->cfg.kind != KC_OPTIMIZER_ADAGRAD || !total) return KC_OK;
    int rc = kc_fill(o->dev, o->block, (float)o->cfg.initial_accumulator_value, total);
    if (rc) {
        kc_device_error(o->dev, e);
        release_slots(o);
    }
    return rc;
}

int kc_optimizer_build(kc_optimizer *o, kc_device *d, int n, const size_t *sizes,
                       const char *const *names, kc_error *e) {
    release_slots(o);
    o->dev = d;
    if (n <= 0) return KC_OK;
    o->nparams = n;
    o->sizes = malloc((size_t)n * sizeof *o->sizes);
    o->slots = calloc((size_t)n * KINDS, sizeof *o->slots);
    o->index = malloc((size_t)n * KINDS * sizeof *o->index);
    o->clipped = calloc((size_t)n, sizeof *o->clipped);
    if (!o->sizes || !o->slots || !o->index || !o->clipped) goto oom;
    memcpy(o->sizes, sizes, (size_t)n * sizeof *sizes);
    for (int i = 0; i < n * KINDS; i++)
        o->index[i] = -1;
    size_t total = plan_slots(o, sizes, names);
    if (total == (size_t)-1) goto oom;
    if (total && kc_alloc(d, total * sizeof(float), &o->block))
        return oom_device(o, total * sizeof(float), "slots", e);
    for (int i = 0; i < o->nslots; i++)
        o->slots[i].dev = kc_buf_f(o->block, o->slots[i].offset);
    int rc = init_slots(o, total, e);
    if (!rc && clips(&o->cfg)) rc = build_scratch(o, e);
    return rc;
oom:
    release_slots(o);
    return kc_fail(e, KC_ERUNTIME, "out of memory building the optimizer");
}

/* ---- one apply: clip, weight decay, update, iterations++ ---- */

static float current_learning_rate(const kc_optimizer *o) {
    if (o->cfg.schedule.kind != KC_SCHEDULE_NONE)
        return (float)kc_schedule_value(&o->cfg.schedule, o->iterations);
    return (float)o->cfg.learning_rate;
}

/* Every gradient's sum of squares, each in its own double so that the host
 * sees exactly what one sum_squares call gives. The clip factors are formed
 * on the host for now, so the sums are read back: one transfer per step. */
static int sums_of_squares(kc_optimizer *o, const kc_buf *grads) {
    kc_device *d = o->dev;
    kc_fill(d, o->sums, 0.0f, 2 * (size_t)o->nparams); /* zero bits: doubles of 0.0 */
    for (int p = 0; p < o->nparams; p++)
        kc_sum_squares(d, grads[p], o->sizes[p], kc_buf_f(o->sums, 2 * (size_t)p));
    return kc_download(d, o->host_sums, o->sums, (size_t)o->nparams * sizeof(double));
}

/* tf.clip_by_norm per gradient: g c / max(norm, c), norm from the float32
 * sum of squares (0 stays 0, NaN propagates). */
static int clip_each_norm(kc_optimizer *o, const kc_buf *grads) {
    int rc = sums_of_squares(o, grads);
    if (rc) return rc;
    float c = (float)o->cfg.clipnorm;
    for (int p = 0; p < o->nparams; p++) {
        float l2sum = (float)o->host_sums[p];
        float norm = l2sum > 0 ? sqrtf(l2sum) : l2sum;
        kc_scale_div(o->dev, grads[p], o->clipped[p], c, norm < c ? c : norm, o->sizes[p]);
    }
    return kc_device_status(o->dev);
}

/* Keras's clip_by_global_norm: every gradient times
 * c min(1/norm, 1/c) + (norm - norm), which is NaN for a non-finite norm. */
static int clip_global_norm(kc_optimizer *o, const kc_buf *grads) {
    int rc = sums_of_squares(o, grads);
    if (rc) return rc;
    double total = 0;
    for (int p = 0; p < o->nparams; p++)
        total += o->host_sums[p];
    float norm = sqrtf((float)total), c = (float)o->cfg.global_clipnorm;
    float scale = c * fminf(1.0f / norm, 1.0f / c) + (norm - norm);
    for (int p = 0; p < o->nparams; p++)
        kc_scale_div(o->dev, grads[p], o->clipped[p], scale, 1.0f, o->sizes[p]);
    return kc_device_status(o->dev);
}

static int clip_values(kc_optimizer *o, const kc_buf *grads) {
    float v = (float)o->cfg.clipvalue;
    for (int p = 0; p < o->nparams; p++)
        kc_clip(o->dev, grads[p], o->clipped[p], -v, v, o->sizes[p]);
    return kc_device_status(o->dev);
}

/* The gradients the updates read: the given ones, or their clipped copies. */
static int clip_gradients(kc_optimizer *o, const kc_buf *grads, const kc_buf **out) {
    const kc_optimizer_config *c = &o->cfg;
    *out = o->clipped;
    if (c->clipnorm > 0) return clip_each_norm(o, grads);
    if (c->global_clipnorm > 0) return clip_global_norm(o, grads);
    if (c->clipvalue > 0) return clip_values(o, grads);
    *out = grads;
    return kc_device_status(o->dev);
}

int kc_optimizer_step(kc_optimizer *o, const kc_buf *weights, const kc_buf *grads) {
    const kc_buf *g = grads;
    int rc = o->nparams ? clip_gradients(o, grads, &g) : KC_OK;
    if (rc) return rc;
    step_scalars s = {.lr = current_learning_rate(o)};
    /* decoupled weight decay before the update, at the step's learning rate */
    if (o->cfg.weight_decay > 0)
        for (int p = 0; p < o->nparams; p++)
            kc_weight_decay(o->dev, weights[p], (float)o->cfg.weight_decay, s.lr, o->sizes[p]);
    if (o->cls->scalars) o->cls->scalars(o, &s);
    for (int p = 0; p < o->nparams; p++)
        o->cls->update(o, &s, p, weights[p], g[p]);
    o->iterations++;
    return o->dev ? kc_device_status(o->dev) : KC_OK;
}

/* ---- accessors ---- */

int64_t kc_optimizer_iterations(const kc_optimizer *o) {
    return o->iterations;
}

void kc_optimizer_set_iterations(kc_optimizer *o, int64_t it) {
    o->iterations = it;
    if (o->cfg.kind == KC_OPTIMIZER_NADAM) o->u_product = nadam_product(o->cfg.beta_1, it);
}

double kc_optimizer_learning_rate(const kc_optimizer *o) {
    if (o->cfg.schedule.kind != KC_SCHEDULE_NONE)
        return kc_schedule_value(&o->cfg.schedule, o->iterations);
    return o->cfg.learning_rate;
}

void kc_optimizer_set_learning_rate(kc_optimizer *o, double lr) {
    o->cfg.schedule.kind = KC_SCHEDULE_NONE;
    o->cfg.learning_rate = lr;
}

int kc_optimizer_has_schedule(const kc_optimizer *o) {
    return o->cfg.schedule.kind != KC_SCHEDULE_NONE;
}

const kc_optimizer_config *kc_optimizer_get_config(const kc_optimizer *o) {
    return &o->cfg;
}

const char *kc_optimizer_name(const kc_optimizer *o) {
    return o->cls->class_name;
}

int kc_optimizer_slot_count(const kc_optimizer *o) {
    return o->nslots;
}

void kc_optimizer_slot(const kc_optimizer *o, int i, const char **name, kc_buf *dev, size_t *n) {
    const slot *s = &o->slots[i];
    if (name) *name = s->name;
    if (dev) *dev = s->dev;
    if (n) *n = s->n;
}

static int64_t slot_elements(const kc_optimizer *o) {
    int64_t total = 0;
    for (int i = 0; i < o->nslots; i++)
        total += (int64_t)o->slots[i].n;
    return total;
}

/* float32 variables besides the slots: learning_rate unless a schedule
 * replaces it, and Nadam's u_product */
static int64_t scalar_variables(const kc_optimizer *o) {
    return !kc_optimizer_has_schedule(o) + (o->cfg.kind == KC_OPTIMIZER_NADAM);
}

int64_t kc_optimizer_variable_count(const kc_optimizer *o) {
    return 1 + scalar_variables(o) + slot_elements(o);
}

int64_t kc_optimizer_variable_bytes(const kc_optimizer *o) {
    return 8 + 4 * (scalar_variables(o) + slot_elements(o));
}

void kc_optimizer_free(kc_optimizer *o) {
    if (!o) return;
    release_slots(o);
    free(o);
}

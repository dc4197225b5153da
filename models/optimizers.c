#include "models/optimizers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "models/args.h"
#include "models/losses.h"

#define KINDS 3 /* slot kinds per parameter at most */

typedef struct slot {
    char *name;
    float *dev;
    size_t n;
    size_t offset; /* in floats, within the block */
} slot;

struct kc_optimizer {
    kc_optimizer_config cfg;
    int64_t iterations;
    const kc_backend *be;
    int nparams;
    size_t *sizes;
    float *block; /* every slot, one device allocation */
    slot *slots;
    int nslots;
    int *index; /* nparams x KINDS: the slot of (param, kind), or -1 */
};

/* Which slots an optimizer keeps, at fixed kind positions used by step(),
 * and the group that orders them as Keras 3's build() creates them: kinds
 * sharing a group are interleaved per parameter, groups follow each other. */
typedef struct slot_kind {
    const char *name; /* NULL: not kept */
    int group;
} slot_kind;

enum { SGD_MOMENTUM = 0 };
enum { RMS_VELOCITY = 0, RMS_MOMENTUM = 1, RMS_AVERAGE = 2 };
enum { ADAM_M = 0, ADAM_V = 1, ADAM_VHAT = 2 };

static void slot_kinds(const kc_optimizer_config *c, slot_kind k[KINDS]) {
    memset(k, 0, sizeof(slot_kind) * KINDS);
    switch (c->kind) {
    case KC_OPTIMIZER_SGD:
        if (c->momentum != 0) k[SGD_MOMENTUM] = (slot_kind){"momentum", 0};
        break;
    case KC_OPTIMIZER_RMSPROP:
        k[RMS_VELOCITY] = (slot_kind){"velocity", 0};
        if (c->momentum > 0) k[RMS_MOMENTUM] = (slot_kind){"momentum", 1};
        if (c->centered) k[RMS_AVERAGE] = (slot_kind){"average_gradient", 2};
        break;
    case KC_OPTIMIZER_ADAM:
        k[ADAM_M] = (slot_kind){"momentum", 0};
        k[ADAM_V] = (slot_kind){"velocity", 0};
        if (c->amsgrad) k[ADAM_VHAT] = (slot_kind){"velocity_hat", 1};
        break;
    }
}

/* ---- configuration ---- */

static const struct {
    const char *class_name;
    kc_optimizer_kind kind;
} classes[] = {
    {"SGD", KC_OPTIMIZER_SGD},
    {"RMSprop", KC_OPTIMIZER_RMSPROP},
    {"Adam", KC_OPTIMIZER_ADAM},
};
#define NCLASSES (sizeof classes / sizeof classes[0])

const char *const kc_optimizer_names[] = {"SGD", "sgd", "RMSprop", "rmsprop", "Adam", "adam", NULL};

static const char *class_name_of(kc_optimizer_kind kind) {
    for (size_t i = 0; i < NCLASSES; i++)
        if (classes[i].kind == kind) return classes[i].class_name;
    return "optimizer";
}

void kc_optimizer_config_default(kc_optimizer_kind kind, kc_optimizer_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = kind;
    cfg->epsilon = 1e-7;
    switch (kind) {
    case KC_OPTIMIZER_SGD:
        snprintf(cfg->name, sizeof cfg->name, "SGD");
        cfg->learning_rate = 0.01;
        break;
    case KC_OPTIMIZER_RMSPROP:
        snprintf(cfg->name, sizeof cfg->name, "rmsprop");
        cfg->learning_rate = 0.001;
        cfg->rho = 0.9;
        break;
    case KC_OPTIMIZER_ADAM:
        snprintf(cfg->name, sizeof cfg->name, "adam");
        cfg->learning_rate = 0.001;
        cfg->beta_1 = 0.9;
        cfg->beta_2 = 0.999;
        break;
    }
}

static int check_config(const kc_optimizer_config *c, kc_error *e) {
    const char *cls = class_name_of(c->kind);
    if (!(c->learning_rate > 0) || !isfinite(c->learning_rate))
        return kc_fail(e, KC_ECONFIG, "%s: learning_rate must be > 0, got %g", cls,
                       c->learning_rate);
    if (!(c->momentum >= 0 && c->momentum <= 1))
        return kc_fail(e, KC_ECONFIG, "%s: momentum must be in [0, 1], got %g", cls, c->momentum);
    if (!(c->epsilon >= 0) || !isfinite(c->epsilon))
        return kc_fail(e, KC_ECONFIG, "%s: epsilon must be >= 0, got %g", cls, c->epsilon);
    if (c->kind == KC_OPTIMIZER_RMSPROP && !(c->rho >= 0 && c->rho <= 1))
        return kc_fail(e, KC_ECONFIG, "%s: rho must be in [0, 1], got %g", cls, c->rho);
    if (c->kind == KC_OPTIMIZER_ADAM) {
        if (!(c->beta_1 >= 0 && c->beta_1 < 1))
            return kc_fail(e, KC_ECONFIG, "%s: beta_1 must be in [0, 1), got %g", cls, c->beta_1);
        if (!(c->beta_2 >= 0 && c->beta_2 < 1))
            return kc_fail(e, KC_ECONFIG, "%s: beta_2 must be in [0, 1), got %g", cls, c->beta_2);
    }
    return KC_OK;
}

int kc_optimizer_create(const kc_optimizer_config *cfg, kc_optimizer **out, kc_error *e) {
    *out = NULL;
    int rc = check_config(cfg, e);
    if (rc) return rc;
    kc_optimizer *o = calloc(1, sizeof *o);
    if (!o) return kc_fail(e, KC_ERUNTIME, "out of memory creating the optimizer");
    o->cfg = *cfg;
    *out = o;
    return KC_OK;
}

/* ---- parsing ---- */

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

static int read_learning_rate(kc_args *a, kc_optimizer_config *c, kc_error *e) {
    if (kc_args_has(a, "lr"))
        return kc_node_fail(e, kc_args_node(a, "lr"),
                            "%s argument 'lr' is no longer supported in Keras 3; use "
                            "'learning_rate'",
                            a->owner);
    int rc =
        kc_args_float(a, "learning_rate", 0, c->learning_rate, 0.0, INFINITY, &c->learning_rate, e);
    if (rc) return rc;
    if (c->learning_rate > 0) return KC_OK;
    return kc_node_fail(e, kc_args_node(a, "learning_rate"),
                        "%s argument 'learning_rate' must be > 0, got %g", a->owner,
                        c->learning_rate);
}

/* Keras's generic arguments kerasc does not implement: accepted only when
 * they would have no effect. */
static int reject_unsupported(kc_args *a, kc_error *e) {
    static const char *const keys[] = {"weight_decay",
                                       "clipnorm",
                                       "clipvalue",
                                       "global_clipnorm",
                                       "loss_scale_factor",
                                       "gradient_accumulation_steps",
                                       "decay",
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

static int read_class_args(kc_args *a, kc_optimizer_config *c, kc_error *e) {
    int rc;
    switch (c->kind) {
    case KC_OPTIMIZER_SGD:
        if ((rc = kc_args_float(a, "momentum", 0, 0.0, 0.0, 1.0, &c->momentum, e))) return rc;
        return kc_args_bool(a, "nesterov", 0, &c->nesterov, e);
    case KC_OPTIMIZER_RMSPROP:
        if ((rc = kc_args_float(a, "rho", 0, 0.9, 0.0, 1.0, &c->rho, e))) return rc;
        if ((rc = kc_args_float(a, "momentum", 0, 0.0, 0.0, 1.0, &c->momentum, e))) return rc;
        if ((rc = kc_args_float(a, "epsilon", 0, 1e-7, 0.0, INFINITY, &c->epsilon, e))) return rc;
        return kc_args_bool(a, "centered", 0, &c->centered, e);
    case KC_OPTIMIZER_ADAM:
        if ((rc = read_below(a, "beta_1", 0.9, 1.0, &c->beta_1, e))) return rc;
        if ((rc = read_below(a, "beta_2", 0.999, 1.0, &c->beta_2, e))) return rc;
        if ((rc = kc_args_float(a, "epsilon", 0, 1e-7, 0.0, INFINITY, &c->epsilon, e))) return rc;
        return kc_args_bool(a, "amsgrad", 0, &c->amsgrad, e);
    }
    return KC_OK;
}

static int read_args(kc_args *a, kc_optimizer_config *c, kc_error *e) {
    const char *name;
    int rc = kc_args_str(a, "name", 0, NULL, &name, e);
    if (rc) return rc;
    if (name) snprintf(c->name, sizeof c->name, "%s", name);
    if ((rc = read_learning_rate(a, c, e))) return rc;
    if ((rc = read_class_args(a, c, e))) return rc;
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
    if ((rc = read_args(&a, &cfg, e))) return rc;
    return kc_optimizer_create(&cfg, out, e);
}

/* ---- slots ---- */

static void release_slots(kc_optimizer *o) {
    if (o->block && o->be) o->be->free(o->block);
    for (int i = 0; i < o->nslots; i++)
        free(o->slots[i].name);
    free(o->slots);
    free(o->index);
    free(o->sizes);
    o->block = NULL;
    o->slots = NULL;
    o->index = NULL;
    o->sizes = NULL;
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
    slot_kinds(&o->cfg, kinds);
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

int kc_optimizer_build(kc_optimizer *o, const kc_backend *be, int n, const size_t *sizes,
                       const char *const *names, kc_error *e) {
    release_slots(o);
    o->be = be;
    if (n <= 0) return KC_OK;
    o->nparams = n;
    o->sizes = malloc((size_t)n * sizeof *o->sizes);
    o->slots = calloc((size_t)n * KINDS, sizeof *o->slots);
    o->index = malloc((size_t)n * KINDS * sizeof *o->index);
    if (!o->sizes || !o->slots || !o->index) goto oom;
    memcpy(o->sizes, sizes, (size_t)n * sizeof *sizes);
    for (int i = 0; i < n * KINDS; i++)
        o->index[i] = -1;
    size_t total = plan_slots(o, sizes, names);
    if (total == (size_t)-1) goto oom;
    if (total) {
        o->block = be->alloc(total * sizeof(float));
        if (!o->block) {
            release_slots(o);
            return kc_fail(e, KC_ERUNTIME,
                           "out of device memory: the optimizer's slots need %zu bytes",
                           total * sizeof(float));
        }
    }
    for (int i = 0; i < o->nslots; i++)
        o->slots[i].dev = o->block + o->slots[i].offset;
    return KC_OK;
oom:
    release_slots(o);
    return kc_fail(e, KC_ERUNTIME, "out of memory building the optimizer");
}

static float *slot_of(const kc_optimizer *o, int p, int kind) {
    int i = o->index[p * KINDS + kind];
    return i < 0 ? NULL : o->slots[i].dev;
}

/* ---- updates ---- */

void kc_optimizer_step(kc_optimizer *o, float *const *weights, const float *const *grads) {
    const kc_optimizer_config *c = &o->cfg;
    const kc_backend *be = o->be;
    float lr = (float)c->learning_rate;
    float alpha = 0;
    if (c->kind == KC_OPTIMIZER_ADAM) {
        double t = (double)(o->iterations + 1);
        alpha =
            (float)(c->learning_rate * sqrt(1.0 - pow(c->beta_2, t)) / (1.0 - pow(c->beta_1, t)));
    }
    for (int p = 0; p < o->nparams; p++) {
        size_t n = o->sizes[p];
        switch (c->kind) {
        case KC_OPTIMIZER_SGD:
            be->sgd_update(weights[p], grads[p], slot_of(o, p, SGD_MOMENTUM), n, lr,
                           (float)c->momentum, c->nesterov);
            break;
        case KC_OPTIMIZER_RMSPROP:
            be->rmsprop_update(weights[p], grads[p], slot_of(o, p, RMS_VELOCITY),
                               slot_of(o, p, RMS_AVERAGE), slot_of(o, p, RMS_MOMENTUM), n, lr,
                               (float)c->rho, (float)c->momentum, (float)c->epsilon, c->centered);
            break;
        case KC_OPTIMIZER_ADAM:
            be->adam_update(weights[p], grads[p], slot_of(o, p, ADAM_M), slot_of(o, p, ADAM_V),
                            slot_of(o, p, ADAM_VHAT), n, alpha, (float)c->beta_1, (float)c->beta_2,
                            (float)c->epsilon, c->amsgrad);
            break;
        }
    }
    o->iterations++;
}

/* ---- accessors ---- */

int64_t kc_optimizer_iterations(const kc_optimizer *o) {
    return o->iterations;
}
void kc_optimizer_set_iterations(kc_optimizer *o, int64_t it) {
    o->iterations = it;
}
double kc_optimizer_learning_rate(const kc_optimizer *o) {
    return o->cfg.learning_rate;
}
void kc_optimizer_set_learning_rate(kc_optimizer *o, double lr) {
    o->cfg.learning_rate = lr;
}
const kc_optimizer_config *kc_optimizer_get_config(const kc_optimizer *o) {
    return &o->cfg;
}
const char *kc_optimizer_name(const kc_optimizer *o) {
    return class_name_of(o->cfg.kind);
}

int kc_optimizer_slot_count(const kc_optimizer *o) {
    return o->nslots;
}

void kc_optimizer_slot(const kc_optimizer *o, int i, const char **name, float **dev, size_t *n) {
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

int64_t kc_optimizer_variable_count(const kc_optimizer *o) {
    return 2 + slot_elements(o);
}

int64_t kc_optimizer_variable_bytes(const kc_optimizer *o) {
    return 8 + 4 + 4 * slot_elements(o);
}

void kc_optimizer_free(kc_optimizer *o) {
    if (!o) return;
    release_slots(o);
    free(o);
}

/* Keras 3's learning-rate schedules (keras.optimizers.schedules):
 * ExponentialDecay, PiecewiseConstantDecay, InverseTimeDecay, PolynomialDecay
 * and CosineDecay (with warmup), with Keras's arguments and defaults.
 *
 * A schedule maps a step to a learning rate. An optimizer evaluates its
 * schedule at its iteration count before each update (Keras's
 * optimizer.learning_rate); the LearningRateScheduler callback evaluates one at
 * the epoch index. Values are computed in float32 in the order Keras computes
 * them (the initial learning rate's dtype), then widened to double. */
#ifndef KC_SCHEDULES_H
#define KC_SCHEDULES_H

#include <stdint.h>

#include "core/error.h"
#include "models/yaml.h"

#define KC_SCHEDULE_MAX_BOUNDARIES 64

typedef enum kc_schedule_kind {
    KC_SCHEDULE_NONE = 0, /* no schedule: a constant learning rate */
    KC_SCHEDULE_EXPONENTIAL_DECAY,
    KC_SCHEDULE_PIECEWISE_CONSTANT_DECAY,
    KC_SCHEDULE_INVERSE_TIME_DECAY,
    KC_SCHEDULE_POLYNOMIAL_DECAY,
    KC_SCHEDULE_COSINE_DECAY,
} kc_schedule_kind;

/* A schedule is plain data: copy it by value. Fields a kind does not use stay
 * at their defaults. */
typedef struct kc_schedule {
    kc_schedule_kind kind;
    char name[64];                /* Keras's `name`: "ExponentialDecay", ... */
    double initial_learning_rate; /* all but PiecewiseConstantDecay */
    double decay_steps;           /* all but PiecewiseConstantDecay; > 0 */
    double decay_rate;            /* ExponentialDecay, InverseTimeDecay */
    int staircase;            /* ExponentialDecay, InverseTimeDecay: floor(step / decay_steps) */
    double end_learning_rate; /* PolynomialDecay, 0.0001 */
    double power;             /* PolynomialDecay, 1.0 */
    int cycle;                /* PolynomialDecay */
    double alpha;             /* CosineDecay, 0.0 */
    int has_warmup;           /* CosineDecay: warmup_target is not null */
    double warmup_target;     /* CosineDecay */
    double warmup_steps;      /* CosineDecay, 0 */
    int nboundaries;          /* PiecewiseConstantDecay: values has one more */
    int64_t boundaries[KC_SCHEDULE_MAX_BOUNDARIES];
    double values[KC_SCHEDULE_MAX_BOUNDARIES + 1];
} kc_schedule;

/* Keras's defaults for a kind; the required arguments are left at 0. */
void kc_schedule_default(kc_schedule_kind kind, kc_schedule *s);
/* Checks a filled schedule (decay_steps > 0, strictly increasing boundaries,
 * ...) as kc_schedule_read does for parsed ones. */
int kc_schedule_check(const kc_schedule *s, kc_error *e);

/* Reads {ExponentialDecay: {initial_learning_rate: 0.1, decay_steps: 1000,
 * decay_rate: 0.96}}, {class_name: ExponentialDecay, config: {...}} (Keras's
 * serialized form, module and registered_name allowed) or {class_name:
 * ExponentialDecay, initial_learning_rate: ...}. Class names are Keras's,
 * case-sensitive. Errors name file:line:column. */
int kc_schedule_read(kc_node *node, kc_schedule *out, kc_error *e);
/* The same into a new schedule, freed with kc_schedule_free. */
int kc_schedule_parse(kc_node *node, kc_schedule **out, kc_error *e);
void kc_schedule_free(kc_schedule *s);

/* The learning rate at `step` (>= 0), as Keras's schedule(step). */
double kc_schedule_value(const kc_schedule *s, int64_t step);

const char *kc_schedule_class_name(kc_schedule_kind kind);

/* The class names, NULL-terminated (for messages). */
extern const char *const kc_schedule_names[];

#endif

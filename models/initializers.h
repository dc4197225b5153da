/* Keras weight initializers with Keras's fans and defaults. Values are drawn
 * on the host from the counter-based RNG keyed by (seed, stream), so a seed
 * fixes every weight whatever the order layers are built in. */
#ifndef KC_INITIALIZERS_H
#define KC_INITIALIZERS_H

#include <stdint.h>

#include "core/tensor.h"
#include "models/args.h"

typedef enum kc_init_kind {
    KC_INIT_GLOROT_UNIFORM,
    KC_INIT_GLOROT_NORMAL,
    KC_INIT_HE_UNIFORM,
    KC_INIT_HE_NORMAL,
    KC_INIT_LECUN_UNIFORM,
    KC_INIT_LECUN_NORMAL,
    KC_INIT_RANDOM_UNIFORM,   /* minval -0.05, maxval 0.05 */
    KC_INIT_RANDOM_NORMAL,    /* mean 0, stddev 0.05 */
    KC_INIT_TRUNCATED_NORMAL, /* mean 0, stddev 0.05, redraw beyond 2 sd */
    KC_INIT_ZEROS,
    KC_INIT_ONES,
    KC_INIT_CONSTANT,   /* value 0 */
    KC_INIT_ORTHOGONAL, /* gain 1: Keras's QR of a normal matrix with the sign fix */
} kc_init_kind;

typedef struct kc_initializer {
    kc_init_kind kind;
    double a, b;  /* minval/maxval, mean/stddev or value, by kind */
    int has_seed; /* an explicit `seed:` overrides the run's seed */
    long long seed;
    /* LSTM's unit_forget_bias: nonzero for a (4 forget_units,) bias filled
     * as Keras does: this initializer over (u,), ones over (u,), this
     * initializer over (2u,) */
    int64_t forget_units;
} kc_initializer;

/* Accepts a name ("he_normal", "HeNormal") or a map {class_name: RandomNormal,
 * mean: 0, stddev: 0.1} / {RandomNormal: {stddev: 0.1}}. */
int kc_initializer_parse(kc_node *node, kc_initializer *out, kc_error *e);
int kc_args_initializer(kc_args *a, const char *key, const char *def, kc_initializer *out,
                        kc_error *e);
/* Keras's compute_fans. */
void kc_compute_fans(const kc_shape *s, double *fan_in, double *fan_out);
/* Fills host buffer w (numel of s) deterministically. */
void kc_initializer_fill(const kc_initializer *init, const kc_shape *s, float *w, uint64_t seed,
                         uint64_t stream);
const char *kc_initializer_name(const kc_initializer *init);

#endif

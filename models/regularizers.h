/* Weight regularizers (l1, l2, l1_l2) and constraints (max_norm,
 * min_max_norm, non_neg, unit_norm) as Keras defines them. */
#ifndef KC_REGULARIZERS_H
#define KC_REGULARIZERS_H

/* Penalty l1 * sum|w| + l2 * sum w^2; both zero means none. */
typedef struct kc_regularizer {
    double l1, l2;
} kc_regularizer;

typedef enum kc_constraint_kind {
    KC_CONSTRAINT_NONE = 0,
    KC_CONSTRAINT_MAX_NORM,
    KC_CONSTRAINT_MIN_MAX_NORM,
    KC_CONSTRAINT_NON_NEG,
    KC_CONSTRAINT_UNIT_NORM,
} kc_constraint_kind;

/* Projection applied after every optimizer update. Norms are taken over
 * `axes` (Keras's axis argument; default 0). */
typedef struct kc_constraint {
    kc_constraint_kind kind;
    double max_value, min_value, rate;
    int axes[4];
    int naxes;
} kc_constraint;

#endif

/* Keras 3's image augmentation layers (models/layers/augment.c): each one
 * draws parameters per sample from the counter RNG and then applies the
 * transform those parameters give. The two halves are exposed separately so
 * the transform can be checked for given parameters.
 *
 * Parameters per sample (KC_AUG_NPARAM doubles, unused ones 0):
 *   RandomFlip         [0] 1 to flip, 0 to keep
 *   RandomCrop         [0] h_start, [1] w_start of the crop box (training)
 *   RandomTranslation  [0] shift down, [1] shift right, in pixels
 *   RandomRotation     [0] angle in degrees, counter-clockwise
 *   RandomZoom         [0] height zoom, [1] width zoom (1 = identity)
 *   RandomBrightness   [0] delta added (value_range units)
 *   RandomContrast     [0] contrast factor */
#ifndef KC_LAYERS_AUGMENT_H
#define KC_LAYERS_AUGMENT_H

#include "models/layer.h"

#define KC_AUG_NPARAM 2

/* Is l one of the augmentation classes? */
int kc_augment_is(const kc_layer *l);
/* Draws sample `i`'s parameters for a training call (ex->seed, ex->step). */
void kc_augment_draw(const kc_layer *l, const kc_exec *ex, int i, double p[KC_AUG_NPARAM]);
/* y = the layer's transform of x with the given parameters (ex->batch rows of
 * KC_AUG_NPARAM). Uses ex->ws. */
int kc_augment_apply(kc_layer *l, const kc_exec *ex, const double *p, kc_buf x, kc_buf y);
/* dx = the adjoint of that transform applied to dy. */
int kc_augment_adjoint(kc_layer *l, const kc_exec *ex, const double *p, kc_buf dy, kc_buf dx);

#endif

/* Embedding's host-side id check, for the code that feeds data to a model:
 * the device op refuses invalid ids too (on the backends that can tell
 * cheaply), but only this names the sample. */
#ifndef KC_LAYERS_EMBEDDING_H
#define KC_LAYERS_EMBEDDING_H

#include <stdint.h>

#include "core/error.h"
#include "models/layer.h"

/* Checks `rows` samples of `row_size` ids each (row-major floats) against
 * Embedding layer l: every id must be a whole number in [0, input_dim).
 * Fails with KC_ECONFIG naming the layer, the sample, the position within
 * it and the id; KC_OK otherwise (also for a layer of another class). */
int kc_embedding_check_ids(const kc_layer *l, const float *ids, int64_t rows, int64_t row_size,
                           kc_error *e);

#endif

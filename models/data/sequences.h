/* Ragged integer sequences (token ids of texts, Keras's imdb / reuters
 * samples) and Keras's pad_sequences, which turns them into a dense array.
 *
 * Sequence i is tok[off[i] .. off[i + 1]); off has n + 1 entries, off[0] = 0,
 * non-decreasing. Both arrays come from malloc; kc_ragged_free releases
 * them. A zeroed kc_ragged is empty and may be freed. */
#ifndef KC_DATA_SEQUENCES_H
#define KC_DATA_SEQUENCES_H

#include <stdint.h>

#include "core/error.h"
#include "models/data/data.h"

typedef struct kc_ragged {
    int64_t n;    /* sequences */
    int64_t *off; /* n + 1 offsets into tok */
    int32_t *tok; /* off[n] ids */
} kc_ragged;

void kc_ragged_free(kc_ragged *r);

/* Keras's pad_sequences options. */
typedef enum kc_pad_side { KC_PAD_PRE = 0, KC_PAD_POST = 1 } kc_pad_side;
typedef struct kc_pad_opts {
    int64_t maxlen;         /* <= 0: the longest sequence's length */
    kc_pad_side padding;    /* where the fill goes (Keras default "pre") */
    kc_pad_side truncating; /* which end a long sequence loses (default "pre") */
    float value;            /* the fill (default 0) */
} kc_pad_opts;

/* out: float32 (n, maxlen), as keras.utils.pad_sequences. */
int kc_pad_sequences(const kc_ragged *r, const kc_pad_opts *o, kc_array *out, kc_error *e);

#endif

/* Ragged sequences and Keras's pad_sequences. */
#include "models/data/sequences.h"

#include <stdlib.h>

void kc_ragged_free(kc_ragged *r) {
    if (!r) return;
    free(r->off);
    free(r->tok);
    r->off = NULL;
    r->tok = NULL;
    r->n = 0;
}

static int check_offsets(const kc_ragged *r, int64_t *longest, kc_error *e) {
    *longest = 0;
    if (r->n < 0 || (r->n > 0 && !r->off))
        return kc_fail(e, KC_ERUNTIME, "sequences: %lld sequences without offsets",
                       (long long)r->n);
    if (r->n == 0) return KC_OK;
    if (r->off[0] != 0)
        return kc_fail(e, KC_ERUNTIME, "sequences: the first offset is %lld, not 0",
                       (long long)r->off[0]);
    for (int64_t i = 0; i < r->n; i++) {
        int64_t len = r->off[i + 1] - r->off[i];
        if (r->off[i + 1] < r->off[i])
            return kc_fail(e, KC_ERUNTIME, "sequences: sequence %lld ends before it starts",
                           (long long)i);
        if (len > *longest) *longest = len;
    }
    return KC_OK;
}

/* Row i of out: the kept part of sequence i placed at its side, the rest `value`. */
static void pad_row(const kc_ragged *r, int64_t i, const kc_pad_opts *o, int64_t maxlen,
                    float *row) {
    int64_t len = r->off[i + 1] - r->off[i];
    const int32_t *s = r->tok + r->off[i];
    if (len > maxlen) { /* "pre" drops the start, "post" the end */
        if (o->truncating == KC_PAD_PRE) s += len - maxlen;
        len = maxlen;
    }
    int64_t at = o->padding == KC_PAD_PRE ? maxlen - len : 0;
    for (int64_t j = 0; j < maxlen; j++)
        row[j] = o->value;
    for (int64_t j = 0; j < len; j++)
        row[at + j] = (float)s[j];
}

int kc_pad_sequences(const kc_ragged *r, const kc_pad_opts *o, kc_array *out, kc_error *e) {
    int64_t longest;
    int rc = check_offsets(r, &longest, e);
    if (rc) return rc;
    int64_t maxlen = o->maxlen > 0 ? o->maxlen : longest;
    if (maxlen <= 0) maxlen = 1; /* every sequence empty: Keras gives (n, 0); keep a column */
    kc_shape sh = {.rank = 2, .d = {r->n, maxlen}};
    if ((rc = kc_array_alloc(out, KC_DT_F32, &sh, e))) return rc;
    float *d = out->data;
    for (int64_t i = 0; i < r->n; i++)
        pad_row(r, i, o, maxlen, d + i * maxlen);
    return KC_OK;
}

/* The bounded pickle reader of Keras's sequence datasets (the payload of an
 * object-array .npy inside imdb.npz / reuters.npz): any bytes give either
 * well-formed ragged sequences or an error with a message, never a crash. */
#include "models/data/pickle.h"
#include "tests/fuzz/fuzz_util.h"

static void check_ragged(const kc_ragged *r) {
    FUZZ_CHECK(r->n >= 0, "negative count %lld", (long long)r->n);
    if (r->n == 0) return;
    FUZZ_CHECK(r->off && r->off[0] == 0, "offsets do not start at 0");
    for (int64_t i = 0; i < r->n; i++)
        FUZZ_CHECK(r->off[i + 1] >= r->off[i], "sequence %lld ends before it starts", (long long)i);
    FUZZ_CHECK(r->off[r->n] <= KC_PICKLE_MAX_TOKENS, "more ids than the limit");
    int64_t sum = 0;
    for (int64_t i = 0; i < r->off[r->n]; i++)
        sum += r->tok[i]; /* every id readable */
    (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kc_error e = {0};
    kc_ragged r = {0};
    int rc = kc_pickle_ragged(data, size, "fuzz.npy", &r, &e);
    if (rc == KC_OK) {
        check_ragged(&r);
    } else {
        FUZZ_CHECK(e.msg[0], "failure without a message (rc %d)", rc);
        FUZZ_CHECK(r.n == 0 && !r.off && !r.tok, "failed parse left sequences");
    }
    kc_ragged_free(&r);
    return 0;
}

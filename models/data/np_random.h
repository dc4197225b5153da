/* numpy's legacy np.random.RandomState, bit for bit, for the parts Keras's
 * dataset loaders use: seeding with a 32-bit integer, shuffle of a 1-d array
 * and permutation(n). MT19937 with numpy's bounded-integer rule (mask and
 * reject, 32-bit draws while the bound fits in 32 bits). */
#ifndef KC_DATA_NP_RANDOM_H
#define KC_DATA_NP_RANDOM_H

#include <stdint.h>

typedef struct kc_np_rng {
    uint32_t mt[624];
    int pos;
} kc_np_rng;

/* np.random.RandomState(seed) */
void kc_np_rng_seed(kc_np_rng *r, uint32_t seed);
/* The next 32-bit output (RandomState.randint(2**32, dtype=uint32) order). */
uint32_t kc_np_rng_next32(kc_np_rng *r);
/* A value in [0, max] as numpy's random_interval. */
uint64_t kc_np_rng_interval(kc_np_rng *r, uint64_t max);
/* RandomState.shuffle of a 1-d array of n elements: for i = n-1 .. 1 swap
 * a[i] with a[random_interval(i)]. */
void kc_np_rng_shuffle_i64(kc_np_rng *r, int64_t *a, int64_t n);
/* a = RandomState(seed).permutation(n): arange(n), shuffled. */
void kc_np_permutation(uint32_t seed, int64_t *a, int64_t n);

#endif

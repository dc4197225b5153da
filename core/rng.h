/* Counter-based random numbers (Philox-4x32-10). A draw is a pure function of
 * (seed, stream, index): results do not depend on call order or thread count. */
#ifndef KC_RNG_H
#define KC_RNG_H

#include <stdint.h>

/* Philox-4x32-10 block: key = seed, counter = (stream, index). */
void kc_philox4x32(uint64_t seed, uint64_t stream, uint64_t index, uint32_t out[4]);
/* Uniform in [0, 1) with 24 random bits. */
float kc_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
/* Standard normal (Box-Muller on one Philox block). */
float kc_rng_normal(uint64_t seed, uint64_t stream, uint64_t index);
/* Uniform integer in [0, n) without modulo bias (n > 0). */
uint64_t kc_rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint64_t n);
/* Mixes a string and numbers into a stream id, e.g. kc_rng_stream("dropout", layer, step). */
uint64_t kc_rng_stream(const char *tag, uint64_t a, uint64_t b);

#endif

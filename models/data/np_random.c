/* numpy's legacy RandomState: MT19937 (init_genrand seeding), random_interval
 * and the Fisher-Yates shuffle of numpy/random/_common / mtrand. */
#include "models/data/np_random.h"

#define MT_N 624
#define MT_M 397

void kc_np_rng_seed(kc_np_rng *r, uint32_t seed) {
    r->mt[0] = seed;
    for (int i = 1; i < MT_N; i++)
        r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->pos = MT_N;
}

static void mt_generate(kc_np_rng *r) {
    const uint32_t upper = 0x80000000u, lower = 0x7fffffffu, matrix = 0x9908b0dfu;
    for (int i = 0; i < MT_N; i++) {
        uint32_t y = (r->mt[i] & upper) | (r->mt[(i + 1) % MT_N] & lower);
        r->mt[i] = r->mt[(i + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? matrix : 0u);
    }
    r->pos = 0;
}

uint32_t kc_np_rng_next32(kc_np_rng *r) {
    if (r->pos >= MT_N) mt_generate(r);
    uint32_t y = r->mt[r->pos++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

static uint64_t next64(kc_np_rng *r) {
    uint64_t hi = kc_np_rng_next32(r);
    return (hi << 32) | kc_np_rng_next32(r);
}

uint64_t kc_np_rng_interval(kc_np_rng *r, uint64_t max) {
    if (max == 0) return 0;
    uint64_t mask = max, v;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    mask |= mask >> 32;
    if (max <= 0xffffffffu) {
        while ((v = (kc_np_rng_next32(r) & mask)) > max) {
        }
    } else {
        while ((v = (next64(r) & mask)) > max) {
        }
    }
    return v;
}

void kc_np_rng_shuffle_i64(kc_np_rng *r, int64_t *a, int64_t n) {
    for (int64_t i = n - 1; i >= 1; i--) {
        int64_t j = (int64_t)kc_np_rng_interval(r, (uint64_t)i);
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

void kc_np_permutation(uint32_t seed, int64_t *a, int64_t n) {
    kc_np_rng r;
    kc_np_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++)
        a[i] = i;
    kc_np_rng_shuffle_i64(&r, a, n);
}

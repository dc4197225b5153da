/* Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
 * 3", SC 2011). Every draw is a pure function of (seed, stream, index), which
 * is what lets any backend and any thread count produce the same numbers. */
#include "core/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* golden ratio */
#define PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */
#define PHILOX_ROUNDS 10

static inline void mulhilo32(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

static inline void philox_round(uint32_t c[4], const uint32_t k[2]) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(PHILOX_M0, c[0], &hi0, &lo0);
    mulhilo32(PHILOX_M1, c[2], &hi1, &lo1);
    uint32_t r0 = hi1 ^ c[1] ^ k[0];
    uint32_t r2 = hi0 ^ c[3] ^ k[1];
    c[0] = r0;
    c[1] = lo1;
    c[2] = r2;
    c[3] = lo0;
}

/* Counter words, low first: stream (lo, hi), index (lo, hi); key: seed (lo, hi). */
void kc_philox4x32(uint64_t seed, uint64_t stream, uint64_t index, uint32_t out[4]) {
    uint32_t c[4] = {(uint32_t)stream, (uint32_t)(stream >> 32), (uint32_t)index,
                     (uint32_t)(index >> 32)};
    uint32_t k[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    for (int r = 0; r < PHILOX_ROUNDS; r++) {
        if (r > 0) {
            k[0] += PHILOX_W0;
            k[1] += PHILOX_W1;
        }
        philox_round(c, k);
    }
    for (int i = 0; i < 4; i++)
        out[i] = c[i];
}

float kc_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t r[4];
    kc_philox4x32(seed, stream, index, r);
    /* 24 bits fill a float mantissa exactly, so the result is < 1 */
    return (float)(r[0] >> 8) * (1.0f / 16777216.0f);
}

float kc_rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t r[4];
    kc_philox4x32(seed, stream, index, r);
    /* 53-bit uniforms from two word pairs; u1 lies in (0, 1] so log(u1) is finite */
    uint64_t a = ((uint64_t)r[0] << 21) | (r[1] >> 11);
    uint64_t b = ((uint64_t)r[2] << 21) | (r[3] >> 11);
    double u1 = ((double)a + 1.0) / 9007199254740992.0;
    double u2 = (double)b / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* A fresh key per retry keeps the retries independent of every (stream, index)
 * draw under the original key. */
static uint64_t retry_key(uint64_t seed, unsigned attempt) {
    return seed + 0x9E3779B97F4A7C15ull * (uint64_t)attempt;
}

uint64_t kc_rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint64_t n) {
    if (n <= 1) return 0;
    /* 2^64 mod n: accepting x >= this leaves a multiple of n candidates */
    uint64_t reject_below = (0 - n) % n;
    uint64_t x = 0;
    for (unsigned attempt = 0; attempt < 256; attempt++) {
        uint32_t r[4];
        kc_philox4x32(retry_key(seed, attempt), stream, index, r);
        for (int half = 0; half < 2; half++) {
            x = ((uint64_t)r[2 * half + 1] << 32) | r[2 * half];
            if (x >= reject_below) return x % n;
        }
    }
    /* unreachable in practice: each candidate is accepted with probability > 1/2 */
    return x % n;
}

static uint64_t splitmix64_mix(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t kc_rng_stream(const char *tag, uint64_t a, uint64_t b) {
    uint64_t h = 0xCBF29CE484222325ull; /* FNV-1a 64 offset basis */
    for (const unsigned char *p = (const unsigned char *)(tag ? tag : ""); *p; p++) {
        h ^= *p;
        h *= 0x100000001B3ull; /* FNV-1a 64 prime */
    }
    h = splitmix64_mix(h ^ a);
    h = splitmix64_mix(h ^ b);
    return h;
}

/* Philox-4x32-10 known answers, the derived draws' distributions, and the
 * stream hash. */
#include "core/rng.h"
#include "tests/testutil.h"

#include <stdint.h>

/* Check records a checkpoint for every passing assertion; inside loops over
 * draws only a failure should reach it. */
#define expect(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                                    \
    } while (0)

/* Random123 known-answer vectors (tests/kat_vectors, "philox4x32 10" lines):
 * counter words c0..c3, key words k0 k1, expected output words. kc_philox4x32
 * takes counter = (stream lo, stream hi, index lo, index hi) and key = seed (lo, hi). */
typedef struct kat {
    uint32_t ctr[4], key[2], out[4];
} kat;

static const kat katv[] = {
    {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
     {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
     {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

static uint64_t join(uint32_t lo, uint32_t hi) {
    return ((uint64_t)hi << 32) | lo;
}

START_TEST(test_philox_known_answers) {
    for (size_t t = 0; t < sizeof katv / sizeof katv[0]; t++) {
        const kat *v = &katv[t];
        uint32_t out[4];
        kc_philox4x32(join(v->key[0], v->key[1]), join(v->ctr[0], v->ctr[1]),
                      join(v->ctr[2], v->ctr[3]), out);
        for (int i = 0; i < 4; i++)
            ck_assert_msg(out[i] == v->out[i], "vector %zu word %d: %08x, expected %08x", t, i,
                          out[i], v->out[i]);
    }
}
END_TEST

START_TEST(test_uniform_is_top_24_bits) {
    /* first words of the first two known-answer blocks */
    ck_assert_float_eq(kc_rng_uniform(0, 0, 0), (float)(0x6627e8d5u >> 8) / 16777216.0f);
    ck_assert_float_eq(kc_rng_uniform(UINT64_MAX, UINT64_MAX, UINT64_MAX),
                       (float)(0x408f276du >> 8) / 16777216.0f);
}
END_TEST

static int n_draws(void) {
    return kc_test_quick() ? 20000 : 100000;
}

START_TEST(test_uniform_moments) {
    int n = n_draws();
    double s = 0, s2 = 0, lo = 1, hi = 0;
    for (int i = 0; i < n; i++) {
        double u = kc_rng_uniform(42, 7, (uint64_t)i);
        expect(u >= 0.0 && u < 1.0, "uniform %d = %g", i, u);
        s += u;
        s2 += u * u;
        if (u < lo) lo = u;
        if (u > hi) hi = u;
    }
    double mean = s / n, var = s2 / n - mean * mean;
    /* 5 standard errors: sd(mean) = sqrt(1/12/n) */
    ck_assert_close(mean, 0.5, 5 * sqrt(1.0 / 12 / n), 0);
    ck_assert_close(var, 1.0 / 12, 0.004, 0);
    ck_assert(lo < 0.001 && hi > 0.999);
}
END_TEST

START_TEST(test_normal_moments) {
    int n = n_draws();
    double s = 0, s2 = 0, s4 = 0;
    int within1 = 0;
    for (int i = 0; i < n; i++) {
        double z = kc_rng_normal(3, 11, (uint64_t)i);
        expect(isfinite(z), "normal %d = %g", i, z);
        s += z;
        s2 += z * z;
        s4 += z * z * z * z;
        within1 += fabs(z) < 1.0;
    }
    double mean = s / n, var = s2 / n - mean * mean;
    ck_assert_close(mean, 0.0, 5 / sqrt((double)n), 0);
    ck_assert_close(var, 1.0, 5 * sqrt(2.0 / n), 0);
    ck_assert_close(s4 / n, 3.0, 0.15, 0); /* kurtosis of a Gaussian */
    ck_assert_close((double)within1 / n, 0.6827, 0.01, 0);
}
END_TEST

START_TEST(test_below_range_and_uniformity) {
    enum { K = 10 };
    int n = n_draws(), count[K] = {0};
    for (int i = 0; i < n; i++) {
        uint64_t v = kc_rng_below(5, 1, (uint64_t)i, K);
        expect(v < K, "below(10) = %llu", (unsigned long long)v);
        count[v]++;
    }
    /* chi-square with 9 degrees of freedom: 27.9 is the 0.999 quantile */
    double chi2 = 0, expect = (double)n / K;
    for (int k = 0; k < K; k++)
        chi2 += (count[k] - expect) * (count[k] - expect) / expect;
    ck_assert_msg(chi2 < 27.9, "chi2 = %g", chi2);

    for (uint64_t i = 0; i < 1000; i++) {
        expect(kc_rng_below(5, 1, i, 1) == 0, "below(1) nonzero");
        expect(kc_rng_below(5, 1, i, 0) == 0, "below(0) nonzero");
    }
}
END_TEST

/* n just above 2^63 rejects almost half the candidates, so retries are exercised */
START_TEST(test_below_large_n) {
    uint64_t n = (1ull << 63) + 12345;
    int upper = 0, m = kc_test_quick() ? 2000 : 10000;
    for (int i = 0; i < m; i++) {
        uint64_t v = kc_rng_below(9, 2, (uint64_t)i, n);
        expect(v < n, "below(2^63 + 12345) out of range");
        upper += v >= (n >> 1);
        expect(v == kc_rng_below(9, 2, (uint64_t)i, n), "below not repeatable");
    }
    ck_assert_close((double)upper / m, 0.5, 0.05, 0);
}
END_TEST

START_TEST(test_draws_are_pure_functions) {
    ck_assert_float_eq(kc_rng_uniform(1, 2, 3), kc_rng_uniform(1, 2, 3));
    ck_assert_float_eq(kc_rng_normal(1, 2, 3), kc_rng_normal(1, 2, 3));
    /* each coordinate changes the draw */
    float base = kc_rng_uniform(1, 2, 3);
    ck_assert(kc_rng_uniform(2, 2, 3) != base);
    ck_assert(kc_rng_uniform(1, 3, 3) != base);
    ck_assert(kc_rng_uniform(1, 2, 4) != base);
    ck_assert(kc_rng_uniform(1ull << 40, 2, 3) != base);
    ck_assert(kc_rng_uniform(1, 2, 3ull << 40) != base);
}
END_TEST

START_TEST(test_stream_hash) {
    uint64_t a = kc_rng_stream("dropout", 1, 0);
    ck_assert_uint_eq(a, kc_rng_stream("dropout", 1, 0));
    ck_assert_uint_ne(a, kc_rng_stream("dropout", 0, 1));
    ck_assert_uint_ne(a, kc_rng_stream("dropout", 1, 1));
    ck_assert_uint_ne(a, kc_rng_stream("shuffle", 1, 0));
    ck_assert_uint_ne(kc_rng_stream("", 0, 0), kc_rng_stream("a", 0, 0));
    ck_assert_uint_eq(kc_rng_stream(NULL, 4, 5), kc_rng_stream("", 4, 5));
    /* neighbouring inputs give unrelated streams: about half the bits differ */
    int bits = __builtin_popcountll(kc_rng_stream("layer", 7, 8) ^ kc_rng_stream("layer", 7, 9));
    ck_assert_int_gt(bits, 12);
    ck_assert_int_lt(bits, 52);
}
END_TEST

/* Streams derived from neighbouring ids must not give correlated uniforms. */
START_TEST(test_streams_uncorrelated) {
    int n = n_draws() / 10;
    uint64_t s1 = kc_rng_stream("init", 0, 0), s2 = kc_rng_stream("init", 0, 1);
    double sxy = 0, sx = 0, sy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < n; i++) {
        double x = kc_rng_uniform(1, s1, (uint64_t)i), y = kc_rng_uniform(1, s2, (uint64_t)i);
        sx += x, sy += y, sxy += x * y, sxx += x * x, syy += y * y;
    }
    double cov = sxy / n - (sx / n) * (sy / n);
    double r = cov / sqrt((sxx / n - (sx / n) * (sx / n)) * (syy / n - (sy / n) * (sy / n)));
    ck_assert_close(r, 0.0, 5 / sqrt((double)n), 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("rng");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_philox_known_answers);
    tcase_add_test(tc, test_uniform_is_top_24_bits);
    tcase_add_test(tc, test_uniform_moments);
    tcase_add_test(tc, test_normal_moments);
    tcase_add_test(tc, test_below_range_and_uniformity);
    tcase_add_test(tc, test_below_large_n);
    tcase_add_test(tc, test_draws_are_pure_functions);
    tcase_add_test(tc, test_stream_hash);
    tcase_add_test(tc, test_streams_uncorrelated);
    suite_add_tcase(s, tc);
    return kc_test_run(s);
}

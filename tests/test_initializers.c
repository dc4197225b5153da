/* Initializers: Keras's fans, each kind's distribution against its formula,
 * determinism of the counter-based draws, and every accepted spelling and
 * error of the YAML forms. */
#include "models/initializers.h"
#include "tests/testutil.h"

#include <stdint.h>

#include "core/tensor.h"

/* ---- helpers ---- */

typedef struct stats {
    double mean, var, min, max;
    double frac_beyond; /* fraction with |x - center| > width */
} stats;

static stats stats_of(const float *w, size_t n, double center, double width) {
    stats s = {0, 0, INFINITY, -INFINITY, 0};
    double sum = 0, beyond = 0;
    for (size_t i = 0; i < n; i++) {
        sum += w[i];
        if (w[i] < s.min) s.min = w[i];
        if (w[i] > s.max) s.max = w[i];
        if (fabs(w[i] - center) > width) beyond++;
    }
    s.mean = sum / (double)n;
    double ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += (w[i] - s.mean) * (w[i] - s.mean);
    s.var = ss / (double)(n - 1);
    s.frac_beyond = beyond / (double)n;
    return s;
}

static float *fill(const kc_initializer *init, kc_shape shape, uint64_t seed, uint64_t stream) {
    float *w = malloc(sizeof(float) * (size_t)kc_shape_numel(&shape));
    ck_assert_ptr_nonnull(w);
    kc_initializer_fill(init, &shape, w, seed, stream);
    return w;
}

/* A shape with many values: (in, out) for a dense kernel. */
static kc_shape big_dense(void) {
    return kc_test_quick() ? kc_shape2(200, 150) : kc_shape2(400, 300);
}

static kc_initializer kind(kc_init_kind k, double a, double b) {
    kc_initializer i = {0};
    i.kind = k;
    i.a = a;
    i.b = b;
    return i;
}

/* Uniform on [-limit, limit): bounds, mean, variance limit^2/3 and that the
 * draws reach close to both ends. */
static void check_uniform(const kc_initializer *init, kc_shape shape, double lo, double hi) {
    float *w = fill(init, shape, 42, 7);
    size_t n = (size_t)kc_shape_numel(&shape);
    stats s = stats_of(w, n, 0, 0);
    double width = hi - lo, var = width * width / 12.0;
    ck_assert_msg(s.min >= (float)lo && s.max <= (float)hi, "[%g, %g] outside [%g, %g]", s.min,
                  s.max, lo, hi);
    ck_assert_close(s.min, lo, 0.002 * width, 0);
    ck_assert_close(s.max, hi, 0.002 * width, 0);
    ck_assert_close(s.mean, (lo + hi) / 2, 5 * sqrt(var / (double)n), 0);
    ck_assert_close(s.var, var, 0, 0.03);
    free(w);
}

/* Keras's truncated normal with parameter sigma: nothing beyond 2 sigma, some
 * values near it, and variance sigma^2 * 0.8796^2 (a unit normal truncated
 * to [-2, 2] has standard deviation 0.87962566...). */
static void check_truncated(const kc_initializer *init, kc_shape shape, double mean, double sigma) {
    float *w = fill(init, shape, 42, 7);
    size_t n = (size_t)kc_shape_numel(&shape);
    stats s = stats_of(w, n, mean, 2 * sigma * (1 + 1e-6));
    double tvar = sigma * sigma * 0.87962566103423978 * 0.87962566103423978;
    ck_assert_msg(s.frac_beyond == 0, "%g of the values beyond 2 sigma", s.frac_beyond);
    ck_assert_close(s.max, mean + 2 * sigma, 0.05 * sigma, 0);
    ck_assert_close(s.min, mean - 2 * sigma, 0.05 * sigma, 0);
    ck_assert_close(s.mean, mean, 5 * sqrt(tvar / (double)n), 0);
    ck_assert_close(s.var, tvar, 0, 0.03);
    free(w);
}

/* ---- fans ---- */

START_TEST(test_fans) {
    double fi, fo;
    kc_shape s = kc_shape2(1600, 64);
    kc_compute_fans(&s, &fi, &fo);
    ck_assert_close(fi, 1600, 0, 0);
    ck_assert_close(fo, 64, 0, 0);
    s = kc_shape1(10);
    kc_compute_fans(&s, &fi, &fo);
    ck_assert_close(fi, 10, 0, 0);
    ck_assert_close(fo, 10, 0, 0);
    s = kc_shape4(3, 3, 32, 64); /* conv kernel: receptive field 9 */
    kc_compute_fans(&s, &fi, &fo);
    ck_assert_close(fi, 288, 0, 0);
    ck_assert_close(fo, 576, 0, 0);
    s = kc_shape_make(5, (int64_t[]){2, 3, 4, 5, 6});
    kc_compute_fans(&s, &fi, &fo);
    ck_assert_close(fi, 5 * 24, 0, 0);
    ck_assert_close(fo, 6 * 24, 0, 0);
    s = kc_shape_make(0, NULL);
    kc_compute_fans(&s, &fi, &fo);
    ck_assert_close(fi, 1, 0, 0);
    ck_assert_close(fo, 1, 0, 0);
}
END_TEST

/* ---- variance scaling kinds ---- */

START_TEST(test_glorot_uniform) {
    kc_shape s = big_dense();
    kc_initializer i = kind(KC_INIT_GLOROT_UNIFORM, 0, 0);
    double limit = sqrt(6.0 / (double)(s.d[0] + s.d[1]));
    check_uniform(&i, s, -limit, limit);
}
END_TEST

START_TEST(test_glorot_normal) {
    kc_shape s = big_dense();
    kc_initializer i = kind(KC_INIT_GLOROT_NORMAL, 0, 0);
    double sigma = sqrt(2.0 / (double)(s.d[0] + s.d[1])) / 0.87962566103423978;
    check_truncated(&i, s, 0, sigma);
}
END_TEST

START_TEST(test_he_and_lecun) {
    kc_shape s = big_dense();
    double in = (double)s.d[0];
    kc_initializer i = kind(KC_INIT_HE_UNIFORM, 0, 0);
    check_uniform(&i, s, -sqrt(6.0 / in), sqrt(6.0 / in));
    i = kind(KC_INIT_LECUN_UNIFORM, 0, 0);
    check_uniform(&i, s, -sqrt(3.0 / in), sqrt(3.0 / in));
    i = kind(KC_INIT_HE_NORMAL, 0, 0);
    check_truncated(&i, s, 0, sqrt(2.0 / in) / 0.87962566103423978);
    i = kind(KC_INIT_LECUN_NORMAL, 0, 0);
    check_truncated(&i, s, 0, sqrt(1.0 / in) / 0.87962566103423978);
}
END_TEST

START_TEST(test_conv_fans_in_variance_scaling) {
    /* he_normal on a conv kernel: fan_in = kh * kw * in = 3 * 3 * 32 */
    kc_shape s = kc_test_quick() ? kc_shape4(3, 3, 32, 64) : kc_shape4(3, 3, 32, 256);
    kc_initializer i = kind(KC_INIT_HE_NORMAL, 0, 0);
    check_truncated(&i, s, 0, sqrt(2.0 / 288.0) / 0.87962566103423978);
    /* glorot_uniform: fan_avg = (288 + 9 out) / 2 */
    i = kind(KC_INIT_GLOROT_UNIFORM, 0, 0);
    double limit = sqrt(6.0 / (288.0 + 9.0 * (double)s.d[3]));
    check_uniform(&i, s, -limit, limit);
}
END_TEST

START_TEST(test_bias_fans) {
    /* a rank-1 shape has fan_in = fan_out = its length: he_uniform limit sqrt(6 / 4) */
    kc_shape s = kc_shape1(4);
    kc_initializer i = kind(KC_INIT_HE_UNIFORM, 0, 0);
    double limit = sqrt(6.0 / 4.0), top = 0;
    float w[4];
    for (uint64_t stream = 0; stream < 500; stream++) {
        kc_initializer_fill(&i, &s, w, 3, stream);
        for (int k = 0; k < 4; k++) {
            ck_assert(fabs(w[k]) <= limit);
            if (fabs(w[k]) > top) top = fabs(w[k]);
        }
    }
    ck_assert_close(top, limit, 0.01 * limit, 0);
}
END_TEST

/* ---- plain distributions ---- */

START_TEST(test_random_uniform) {
    kc_initializer i = kind(KC_INIT_RANDOM_UNIFORM, -0.05, 0.05);
    check_uniform(&i, big_dense(), -0.05, 0.05);
    i = kind(KC_INIT_RANDOM_UNIFORM, 2.0, 3.0);
    check_uniform(&i, big_dense(), 2.0, 3.0);
}
END_TEST

START_TEST(test_random_normal_is_not_truncated) {
    kc_shape s = big_dense();
    size_t n = (size_t)kc_shape_numel(&s);
    kc_initializer i = kind(KC_INIT_RANDOM_NORMAL, 1.0, 0.2);
    float *w = fill(&i, s, 5, 9);
    stats st = stats_of(w, n, 1.0, 0.4);
    ck_assert_close(st.mean, 1.0, 5 * 0.2 / sqrt((double)n), 0);
    ck_assert_close(st.var, 0.04, 0, 0.03);
    /* P(|z| > 2) = 0.0455 for an untruncated normal */
    ck_assert_close(st.frac_beyond, 0.0455, 0.006, 0);
    free(w);
}
END_TEST

START_TEST(test_truncated_normal) {
    kc_initializer i = kind(KC_INIT_TRUNCATED_NORMAL, 0.0, 0.05);
    check_truncated(&i, big_dense(), 0.0, 0.05);
    i = kind(KC_INIT_TRUNCATED_NORMAL, -3.0, 0.5);
    check_truncated(&i, big_dense(), -3.0, 0.5);
}
END_TEST

START_TEST(test_constants) {
    kc_shape s = kc_shape2(3, 5);
    float w[15];
    kc_initializer i = kind(KC_INIT_ZEROS, 0, 0);
    for (int k = 0; k < 15; k++)
        w[k] = 7;
    kc_initializer_fill(&i, &s, w, 1, 1);
    for (int k = 0; k < 15; k++)
        ck_assert_float_eq(w[k], 0.0f);
    i = kind(KC_INIT_ONES, 0, 0);
    kc_initializer_fill(&i, &s, w, 1, 1);
    for (int k = 0; k < 15; k++)
        ck_assert_float_eq(w[k], 1.0f);
    i = kind(KC_INIT_CONSTANT, -0.25, 0);
    kc_initializer_fill(&i, &s, w, 1, 1);
    for (int k = 0; k < 15; k++)
        ck_assert_float_eq(w[k], -0.25f);
}
END_TEST

/* ---- determinism ---- */

START_TEST(test_determinism) {
    kc_shape s = kc_shape2(64, 32);
    size_t n = 64 * 32;
    kc_init_kind kinds[] = {KC_INIT_GLOROT_UNIFORM, KC_INIT_HE_NORMAL, KC_INIT_RANDOM_NORMAL,
                            KC_INIT_TRUNCATED_NORMAL, KC_INIT_RANDOM_UNIFORM};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        kc_initializer i = kind(kinds[k], 0, 0.05);
        if (kinds[k] == KC_INIT_RANDOM_UNIFORM) i.a = -0.05;
        float *a = fill(&i, s, 11, 3), *b = fill(&i, s, 11, 3);
        float *c = fill(&i, s, 11, 4), *d = fill(&i, s, 12, 3);
        ck_assert_mem_eq(a, b, n * sizeof(float));
        size_t same_c = 0, same_d = 0;
        for (size_t j = 0; j < n; j++) {
            same_c += a[j] == c[j];
            same_d += a[j] == d[j];
        }
        ck_assert_msg(same_c < n / 100, "another stream repeats %zu values", same_c);
        ck_assert_msg(same_d < n / 100, "another seed repeats %zu values", same_d);
        /* an explicit seed: argument replaces the run's seed */
        i.has_seed = 1;
        i.seed = 99;
        float *e1 = fill(&i, s, 1, 3), *e2 = fill(&i, s, 2, 3);
        ck_assert_mem_eq(e1, e2, n * sizeof(float));
        float *ref = fill(&(kc_initializer){.kind = i.kind, .a = i.a, .b = i.b}, s, 99, 3);
        ck_assert_mem_eq(e1, ref, n * sizeof(float));
        free(a), free(b), free(c), free(d), free(e1), free(e2), free(ref);
    }
}
END_TEST

/* ---- parsing ---- */

static kc_doc *parse_doc(const char *text) {
    kc_doc *doc = NULL;
    kc_error e = {0};
    int rc = kc_doc_parse(&doc, "init.yaml", text, strlen(text), &e);
    ck_assert_msg(rc == 0, "yaml: %s", e.msg);
    return doc;
}

/* Parses `init:` of the text; returns the code, fills out/e. */
static int parse_init(const char *text, kc_initializer *out, kc_error *e) {
    kc_doc *doc = parse_doc(text);
    memset(e, 0, sizeof *e);
    int rc = kc_initializer_parse(kc_map_get(doc->root, "init"), out, e);
    kc_doc_free(doc);
    return rc;
}

static void expect_ok(const char *text, kc_init_kind k, double a, double b) {
    kc_initializer init;
    kc_error e;
    int rc = parse_init(text, &init, &e);
    ck_assert_msg(rc == 0, "%s -> %s", text, e.msg);
    ck_assert_int_eq(init.kind, k);
    ck_assert_close(init.a, a, 1e-12, 0);
    ck_assert_close(init.b, b, 1e-12, 0);
}

static void expect_error(const char *text, const char *where, const char *part) {
    kc_initializer init;
    kc_error e;
    int rc = parse_init(text, &init, &e);
    ck_assert_msg(rc == KC_ECONFIG, "%s accepted", text);
    ck_assert_msg(strncmp(e.msg, where, strlen(where)) == 0, "'%s' does not start with '%s'", e.msg,
                  where);
    ck_assert_msg(strstr(e.msg, part) != NULL, "'%s' lacks '%s'", e.msg, part);
}

START_TEST(test_parse_names) {
    expect_ok("init: glorot_uniform\n", KC_INIT_GLOROT_UNIFORM, 0, 0);
    expect_ok("init: GlorotUniform\n", KC_INIT_GLOROT_UNIFORM, 0, 0);
    expect_ok("init: glorot_normal\n", KC_INIT_GLOROT_NORMAL, 0, 0);
    expect_ok("init: HeNormal\n", KC_INIT_HE_NORMAL, 0, 0);
    expect_ok("init: he_uniform\n", KC_INIT_HE_UNIFORM, 0, 0);
    expect_ok("init: LecunNormal\n", KC_INIT_LECUN_NORMAL, 0, 0);
    expect_ok("init: lecun_uniform\n", KC_INIT_LECUN_UNIFORM, 0, 0);
    expect_ok("init: RandomNormal\n", KC_INIT_RANDOM_NORMAL, 0, 0.05);
    expect_ok("init: normal\n", KC_INIT_RANDOM_NORMAL, 0, 0.05);
    expect_ok("init: random_uniform\n", KC_INIT_RANDOM_UNIFORM, -0.05, 0.05);
    expect_ok("init: uniform\n", KC_INIT_RANDOM_UNIFORM, -0.05, 0.05);
    expect_ok("init: TruncatedNormal\n", KC_INIT_TRUNCATED_NORMAL, 0, 0.05);
    expect_ok("init: Zeros\n", KC_INIT_ZEROS, 0, 0);
    expect_ok("init: zero\n", KC_INIT_ZEROS, 0, 0);
    expect_ok("init: ones\n", KC_INIT_ONES, 0, 0);
    expect_ok("init: one\n", KC_INIT_ONES, 0, 0);
    expect_ok("init: Constant\n", KC_INIT_CONSTANT, 0, 0);
}
END_TEST

START_TEST(test_parse_maps) {
    expect_ok("init: {class_name: RandomNormal, config: {mean: 1, stddev: 0.1}}\n",
              KC_INIT_RANDOM_NORMAL, 1, 0.1);
    expect_ok("init: {class_name: RandomNormal, mean: 2, stddev: 0.3}\n", KC_INIT_RANDOM_NORMAL, 2,
              0.3);
    expect_ok("init: {RandomUniform: {minval: -1, maxval: 2}}\n", KC_INIT_RANDOM_UNIFORM, -1, 2);
    expect_ok("init: {truncated_normal: {stddev: 0.02}}\n", KC_INIT_TRUNCATED_NORMAL, 0, 0.02);
    expect_ok("init: {Constant: {value: 0.5}}\n", KC_INIT_CONSTANT, 0.5, 0);
    expect_ok("init: {HeNormal: null}\n", KC_INIT_HE_NORMAL, 0, 0);
    /* Keras's own serialized form, as to_json writes it */
    expect_ok("init: {module: keras.initializers, class_name: GlorotUniform, config: {seed: null},"
              " registered_name: null}\n",
              KC_INIT_GLOROT_UNIFORM, 0, 0);
    kc_initializer init;
    kc_error e;
    ck_assert_int_eq(parse_init("init: {GlorotNormal: {seed: 1234}}\n", &init, &e), 0);
    ck_assert_int_eq(init.has_seed, 1);
    ck_assert_int_eq(init.seed, 1234);
    ck_assert_int_eq(parse_init("init: he_normal\n", &init, &e), 0);
    ck_assert_int_eq(init.has_seed, 0);
}
END_TEST

START_TEST(test_parse_errors) {
    expect_error("init: glorot_unifrom\n", "init.yaml:1:7:", "did you mean 'glorot_uniform'");
    expect_error("init: HeNormall\n", "init.yaml:1:7:", "did you mean 'HeNormal'");
    expect_error("init: VarianceScaling\n", "init.yaml:1:7:", "not supported yet by kerasc");
    expect_error("init: Identity\n", "init.yaml:1:7:", "not supported yet by kerasc");
    expect_error("init: {RandomNormal: {stdev: 0.1}}\n",
                 "init.yaml:1:23:", "did you mean 'stddev'");
    expect_error("init: {RandomNormal: {stddev: -0.1}}\n", "init.yaml:1:31:", "stddev");
    expect_error("init: {RandomNormal: {stddev: abc}}\n", "init.yaml:1:31:", "expected a number");
    expect_error("init: {class_name: RandomUniform, config: {minval: 1, maxval: 0}}\n",
                 "init.yaml:1:", "maxval");
    expect_error("init:\n  class_name: Zeros\n  config: {seed: 3}\n",
                 "init.yaml:3:12:", "unknown key 'seed'");
    expect_error("init: {class_name: Ones, confg: {}}\n",
                 "init.yaml:1:26:", "did you mean 'config'");
    expect_error("init: [1, 2]\n", "init.yaml:1:7:", "initializer");
    expect_error("init: {a: 1, b: 2}\n", "init.yaml:1:7:", "initializer");
    expect_error("init: {class_name: Nope}\n", "init.yaml:1:20:", "unknown initializer 'Nope'");
}
END_TEST

START_TEST(test_args_initializer) {
    kc_doc *doc = parse_doc("kernel_initializer: he_normal\nbias_initializer: null\n"
                            "other_initializer: {Zeros: {}}\n");
    kc_args a;
    kc_args_init(&a, doc->root, doc->root, "Dense");
    kc_error e = {0};
    kc_initializer k, b, o, d;
    ck_assert_int_eq(kc_args_initializer(&a, "kernel_initializer", "glorot_uniform", &k, &e), 0);
    ck_assert_int_eq(k.kind, KC_INIT_HE_NORMAL);
    /* Keras's add_weight uses glorot_uniform when the initializer is None */
    ck_assert_int_eq(kc_args_initializer(&a, "bias_initializer", "zeros", &b, &e), 0);
    ck_assert_int_eq(b.kind, KC_INIT_GLOROT_UNIFORM);
    ck_assert_int_eq(kc_args_initializer(&a, "other_initializer", "ones", &o, &e), 0);
    ck_assert_int_eq(o.kind, KC_INIT_ZEROS);
    ck_assert_int_eq(kc_args_initializer(&a, "absent_initializer", "ones", &d, &e), 0);
    ck_assert_int_eq(d.kind, KC_INIT_ONES);
    ck_assert_int_eq(kc_args_finish(&a, &e), 0);
    kc_doc_free(doc);

    doc = parse_doc("kernel_initializer: he_nromal\n");
    kc_args_init(&a, doc->root, doc->root, "Dense");
    ck_assert_int_eq(kc_args_initializer(&a, "kernel_initializer", "glorot_uniform", &k, &e),
                     KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "init.yaml:1:21: Dense argument 'kernel_initializer'") == e.msg,
                  "%s", e.msg);
    ck_assert_msg(strstr(e.msg, "did you mean 'he_normal'"), "%s", e.msg);
    kc_doc_free(doc);
}
END_TEST

START_TEST(test_names) {
    kc_initializer i = kind(KC_INIT_HE_NORMAL, 0, 0);
    ck_assert_str_eq(kc_initializer_name(&i), "he_normal");
    i.kind = KC_INIT_TRUNCATED_NORMAL;
    ck_assert_str_eq(kc_initializer_name(&i), "truncated_normal");
    i.kind = KC_INIT_ZEROS;
    ck_assert_str_eq(kc_initializer_name(&i), "zeros");
}
END_TEST

int main(void) {
    Suite *s = suite_create("initializers");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fans);
    tcase_add_test(tc, test_glorot_uniform);
    tcase_add_test(tc, test_glorot_normal);
    tcase_add_test(tc, test_he_and_lecun);
    tcase_add_test(tc, test_conv_fans_in_variance_scaling);
    tcase_add_test(tc, test_bias_fans);
    tcase_add_test(tc, test_random_uniform);
    tcase_add_test(tc, test_random_normal_is_not_truncated);
    tcase_add_test(tc, test_truncated_normal);
    tcase_add_test(tc, test_constants);
    tcase_add_test(tc, test_determinism);
    tcase_add_test(tc, test_parse_names);
    tcase_add_test(tc, test_parse_maps);
    tcase_add_test(tc, test_parse_errors);
    tcase_add_test(tc, test_args_initializer);
    tcase_add_test(tc, test_names);
    suite_add_tcase(s, tc);
    return kc_test_run(s);
}

/* Learning-rate schedules: each of Keras 3's schedules at several steps
 * (staircase, boundaries, warmup, the end of the decay, cycles) against the
 * formulas of keras/src/optimizers/schedules/learning_rate_schedule.py
 * evaluated here in double; the YAML forms; errors with file:line:column. */
#include "testutil.h"

#include "models/schedules.h"
#include "models/yaml.h"

/* Keras computes in float32: about 1e-7 relative, a few ulps of the result. */
#define ck_assert_lr(got, want) ck_assert_close((got), (want), 1e-12, 4e-7)

static kc_doc *doc;

static kc_schedule read_ok(const char *text) {
    kc_error e = {0};
    ck_assert_msg(kc_doc_parse(&doc, "lr.yaml", text, strlen(text), &e) == KC_OK, "%s", e.msg);
    kc_schedule s;
    ck_assert_msg(kc_schedule_read(kc_map_get(doc->root, "lr"), &s, &e) == KC_OK, "%s", e.msg);
    kc_doc_free(doc);
    return s;
}

static void expect_error(const char *text, const char *needle) {
    kc_error e = {0};
    ck_assert_msg(kc_doc_parse(&doc, "lr.yaml", text, strlen(text), &e) == KC_OK, "%s", e.msg);
    kc_schedule *s = NULL;
    ck_assert_int_eq(kc_schedule_parse(kc_map_get(doc->root, "lr"), &s, &e), KC_ECONFIG);
    ck_assert(s == NULL);
    ck_assert_msg(strstr(e.msg, needle), "message '%s' lacks '%s'", e.msg, needle);
    kc_doc_free(doc);
}

START_TEST(test_exponential_decay) {
    kc_schedule s = read_ok("lr: {ExponentialDecay: {initial_learning_rate: 0.1, decay_steps: "
                            "1000, decay_rate: 0.96, staircase: false}}\n");
    ck_assert_int_eq(s.kind, KC_SCHEDULE_EXPONENTIAL_DECAY);
    ck_assert_str_eq(s.name, "ExponentialDecay");
    const int64_t steps[] = {0, 1, 500, 1000, 2500, 100000};
    /* Keras casts decay_rate to float32 before the power, which 100 decays
     * amplify to 2e-6: the hand values use that float32 0.96 */
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        ck_assert_lr(kc_schedule_value(&s, steps[i]), 0.1 * pow((double)0.96f, steps[i] / 1000.0));
    /* staircase: the exponent is floor(step / decay_steps) */
    s.staircase = 1;
    ck_assert_lr(kc_schedule_value(&s, 999), 0.1);
    ck_assert_lr(kc_schedule_value(&s, 1000), 0.096);
    ck_assert_lr(kc_schedule_value(&s, 1999), 0.096);
    ck_assert_lr(kc_schedule_value(&s, 2500), 0.1 * 0.96 * 0.96);
    /* growth is allowed: decay_rate 2 doubles per decay_steps */
    s = read_ok("lr: {ExponentialDecay: {initial_learning_rate: 0.01, decay_steps: 10, "
                "decay_rate: 2}}\n");
    ck_assert_lr(kc_schedule_value(&s, 30), 0.08);
    ck_assert_lr(kc_schedule_value(&s, 5), 0.01 * sqrt(2.0));
}
END_TEST

START_TEST(test_piecewise_constant_decay) {
    /* Keras's docstring example: 1.0 through step 100000, 0.5 through 110000, then 0.1 */
    kc_schedule s = read_ok("lr:\n  PiecewiseConstantDecay:\n    boundaries: [100000, 110000]\n"
                            "    values: [1.0, 0.5, 0.1]\n");
    ck_assert_str_eq(s.name, "PiecewiseConstant");
    ck_assert_lr(kc_schedule_value(&s, 0), 1.0);
    ck_assert_lr(kc_schedule_value(&s, 100000), 1.0); /* boundaries belong to the piece below */
    ck_assert_lr(kc_schedule_value(&s, 100001), 0.5);
    ck_assert_lr(kc_schedule_value(&s, 110000), 0.5);
    ck_assert_lr(kc_schedule_value(&s, 110001), 0.1);
    ck_assert_lr(kc_schedule_value(&s, 1000000000), 0.1);
    /* one boundary; Keras casts boundaries to the step's integer type (10.7 -> 10) */
    s = read_ok("lr: {PiecewiseConstantDecay: {boundaries: [10.7], values: [0.3, 0.03]}}\n");
    ck_assert_lr(kc_schedule_value(&s, 10), 0.3);
    ck_assert_lr(kc_schedule_value(&s, 11), 0.03);
    /* the values are float32 in Keras */
    ck_assert(kc_schedule_value(&s, 0) == (double)0.3f);
}
END_TEST

START_TEST(test_inverse_time_decay) {
    /* Keras's docstring example: 0.1 / (1 + 0.5 step) */
    kc_schedule s = read_ok("lr: {InverseTimeDecay: {initial_learning_rate: 0.1, decay_steps: 1.0, "
                            "decay_rate: 0.5}}\n");
    ck_assert_lr(kc_schedule_value(&s, 0), 0.1);
    ck_assert_lr(kc_schedule_value(&s, 1), 0.1 / 1.5);
    ck_assert_lr(kc_schedule_value(&s, 10), 0.1 / 6);
    s = read_ok("lr: {InverseTimeDecay: {initial_learning_rate: 0.1, decay_steps: 4, "
                "decay_rate: 0.5, staircase: true}}\n");
    ck_assert_lr(kc_schedule_value(&s, 3), 0.1);
    ck_assert_lr(kc_schedule_value(&s, 4), 0.1 / 1.5);
    ck_assert_lr(kc_schedule_value(&s, 9), 0.1 / 2);
    s.staircase = 0;
    ck_assert_lr(kc_schedule_value(&s, 9), 0.1 / (1 + 0.5 * 9 / 4.0));
}
END_TEST

START_TEST(test_polynomial_decay) {
    /* Keras's docstring example: 0.1 to 0.01 in 10000 steps with power 0.5 */
    kc_schedule s =
        read_ok("lr: {PolynomialDecay: {initial_learning_rate: 0.1, decay_steps: 10000, "
                "end_learning_rate: 0.01, power: 0.5}}\n");
    ck_assert_lr(kc_schedule_value(&s, 0), 0.1);
    ck_assert_lr(kc_schedule_value(&s, 2500), 0.09 * sqrt(0.75) + 0.01);
    ck_assert_lr(kc_schedule_value(&s, 7500), 0.09 * 0.5 + 0.01);
    ck_assert_lr(kc_schedule_value(&s, 10000), 0.01); /* the end of the decay */
    ck_assert_lr(kc_schedule_value(&s, 50000), 0.01); /* and it stays there */
    /* defaults: end 0.0001, power 1 (linear) */
    s = read_ok("lr: {PolynomialDecay: {initial_learning_rate: 0.1, decay_steps: 100}}\n");
    ck_assert_close(s.end_learning_rate, 0.0001, 0, 0);
    ck_assert_close(s.power, 1.0, 0, 0);
    ck_assert_int_eq(s.cycle, 0);
    ck_assert_lr(kc_schedule_value(&s, 25), 0.0999 * 0.75 + 0.0001);
    /* cycle: decay_steps grows to the first multiple at or above the step */
    s.cycle = 1;
    ck_assert_lr(kc_schedule_value(&s, 0), 0.1);
    ck_assert_lr(kc_schedule_value(&s, 100), 0.0001);
    ck_assert_lr(kc_schedule_value(&s, 101), 0.0999 * (1 - 101 / 200.0) + 0.0001);
    ck_assert_lr(kc_schedule_value(&s, 150), 0.0999 * 0.25 + 0.0001);
}
END_TEST

START_TEST(test_cosine_decay) {
    kc_schedule s = read_ok("lr: {CosineDecay: {initial_learning_rate: 0.1, decay_steps: 1000}}\n");
    ck_assert_close(s.alpha, 0.0, 0, 0);
    ck_assert_int_eq(s.has_warmup, 0);
    ck_assert_lr(kc_schedule_value(&s, 0), 0.1);
    ck_assert_lr(kc_schedule_value(&s, 250), 0.1 * 0.5 * (1 + cos(M_PI / 4)));
    ck_assert_lr(kc_schedule_value(&s, 500), 0.05);
    ck_assert_close(kc_schedule_value(&s, 1000), 0.0, 1e-9, 0); /* cos(pi) in float32 */
    ck_assert_close(kc_schedule_value(&s, 3000), 0.0, 1e-9, 0);
    /* alpha: the floor as a fraction of the initial rate */
    s.alpha = 0.1;
    ck_assert_lr(kc_schedule_value(&s, 250), 0.1 * (0.9 * 0.5 * (1 + cos(M_PI / 4)) + 0.1));
    ck_assert_lr(kc_schedule_value(&s, 1000), 0.01);
    ck_assert_lr(kc_schedule_value(&s, 5000), 0.01);
}
END_TEST

START_TEST(test_cosine_decay_warmup) {
    /* Keras's docstring example: warm up from 0 to 0.1 over 1000 steps, then decay
     * over 1000 more */
    kc_schedule s =
        read_ok("lr:\n  class_name: CosineDecay\n  config:\n    initial_learning_rate: 0\n"
                "    decay_steps: 1000\n    warmup_target: 0.1\n    warmup_steps: 1000\n");
    ck_assert_int_eq(s.has_warmup, 1);
    ck_assert_lr(kc_schedule_value(&s, 0), 0.0);
    ck_assert_lr(kc_schedule_value(&s, 1), 0.1 / 1000);
    ck_assert_lr(kc_schedule_value(&s, 500), 0.05);
    ck_assert_lr(kc_schedule_value(&s, 999), 0.0999);
    ck_assert_lr(kc_schedule_value(&s, 1000), 0.1); /* the decay starts at the target */
    ck_assert_lr(kc_schedule_value(&s, 1250), 0.1 * 0.5 * (1 + cos(M_PI / 4)));
    ck_assert_lr(kc_schedule_value(&s, 1500), 0.05);
    ck_assert_close(kc_schedule_value(&s, 2000), 0.0, 1e-9, 0);
    ck_assert_close(kc_schedule_value(&s, 9000), 0.0, 1e-9, 0);
    /* warming up from a nonzero start, with an alpha floor of the target */
    s = read_ok("lr: {CosineDecay: {initial_learning_rate: 0.01, decay_steps: 10, alpha: 0.5, "
                "warmup_target: 0.05, warmup_steps: 4}}\n");
    ck_assert_lr(kc_schedule_value(&s, 1), 0.01 + 0.04 / 4);
    ck_assert_lr(kc_schedule_value(&s, 9), 0.05 * (0.5 * 0.5 * (1 + cos(M_PI / 2)) + 0.5));
    ck_assert_lr(kc_schedule_value(&s, 14), 0.025);
    ck_assert_lr(kc_schedule_value(&s, 100), 0.025);
    /* warmup_steps 0: the decay runs from the target at once */
    s.warmup_steps = 0;
    ck_assert_lr(kc_schedule_value(&s, 0), 0.05);
    ck_assert_lr(kc_schedule_value(&s, 5), 0.05 * (0.5 * 0.5 + 0.5));
}
END_TEST

START_TEST(test_forms_and_api) {
    /* Keras's serialized form with module and registered_name, and a name */
    kc_schedule s =
        read_ok("lr:\n  module: keras.optimizers.schedules\n  class_name: ExponentialDecay\n"
                "  config: {initial_learning_rate: 0.5, decay_steps: 2, decay_rate: 0.25, "
                "staircase: true, name: my_decay}\n  registered_name: null\n");
    ck_assert_str_eq(s.name, "my_decay");
    ck_assert_lr(kc_schedule_value(&s, 3), 0.125);
    /* class_name with the arguments beside it */
    s = read_ok("lr: {class_name: InverseTimeDecay, initial_learning_rate: 1, decay_steps: 1, "
                "decay_rate: 1}\n");
    ck_assert_lr(kc_schedule_value(&s, 3), 0.25);
    ck_assert_str_eq(kc_schedule_class_name(s.kind), "InverseTimeDecay");
    /* kc_schedule_parse allocates one for callbacks */
    kc_error e = {0};
    const char *text = "lr: {CosineDecay: {initial_learning_rate: 0.2, decay_steps: 4}}\n";
    ck_assert(kc_doc_parse(&doc, "lr.yaml", text, strlen(text), &e) == KC_OK);
    kc_schedule *p = NULL;
    ck_assert(kc_schedule_parse(kc_map_get(doc->root, "lr"), &p, &e) == KC_OK);
    kc_doc_free(doc);
    ck_assert_lr(kc_schedule_value(p, 2), 0.1);
    kc_schedule_free(p);
    /* filled by hand and checked */
    kc_schedule_default(KC_SCHEDULE_PIECEWISE_CONSTANT_DECAY, &s);
    s.nboundaries = 2;
    s.boundaries[0] = 5;
    s.boundaries[1] = 5;
    s.values[0] = s.values[1] = s.values[2] = 0.1;
    ck_assert_int_eq(kc_schedule_check(&s, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "strictly increasing"), "%s", e.msg);
    s.boundaries[1] = 6;
    ck_assert_int_eq(kc_schedule_check(&s, &e), KC_OK);
    ck_assert_lr(kc_schedule_value(&s, 6), 0.1);
    kc_schedule_default(KC_SCHEDULE_POLYNOMIAL_DECAY, &s);
    s.initial_learning_rate = 0.1;
    ck_assert_int_eq(kc_schedule_check(&s, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "PolynomialDecay: decay_steps must be > 0"), "%s", e.msg);
}
END_TEST

START_TEST(test_parse_errors) {
    expect_error("lr: {ExponentialDecay: {initial_learning_rate: 0.1, decay_steps: 0, "
                 "decay_rate: 0.9}}\n",
                 "lr.yaml:1:66: ExponentialDecay argument 'decay_steps' must be > 0, got 0");
    expect_error("lr: {ExponentialDecay: {initial_learning_rate: 0.1, decay_rate: 0.9}}\n",
                 "lr.yaml:1:6: ExponentialDecay requires the argument 'decay_steps'");
    expect_error("lr: ExponentialDecay\n",
                 "lr.yaml:1:5: ExponentialDecay requires the argument 'initial_learning_rate'");
    expect_error("lr: {ExponentialDecay: {initial_learning_rate: 0.1, decay_step: 10, "
                 "decay_rate: 0.9}}\n",
                 "lr.yaml:1:53: unknown key 'decay_step' in the arguments of ExponentialDecay "
                 "(did you mean 'decay_steps'?)");
    expect_error("lr: {ExponentialDecay: {initial_learning_rate: 0.1, decay_steps: 10, "
                 "decay_rate: 0.9, alpha: 0}}\n",
                 "lr.yaml:1:87: unknown key 'alpha' in the arguments of ExponentialDecay");
    expect_error("lr: {CosineDecy: {}}\n",
                 "lr.yaml:1:6: unknown learning rate schedule 'CosineDecy' (did you mean "
                 "'CosineDecay'?)");
    expect_error("lr: {cosinedecay: {}}\n", "unknown learning rate schedule 'cosinedecay'");
    expect_error("lr: {InverseTimeDecay: {initial_learning_rate: -0.1, decay_steps: 1, "
                 "decay_rate: 1}}\n",
                 "lr.yaml:1:48: InverseTimeDecay argument 'initial_learning_rate' must be >= 0");
    expect_error("lr: {InverseTimeDecay: {initial_learning_rate: 0.1, decay_steps: 1, "
                 "decay_rate: -1}}\n",
                 "InverseTimeDecay argument 'decay_rate' must be >= 0");
    expect_error("lr: {ExponentialDecay: {initial_learning_rate: 0.1, decay_steps: 1, "
                 "decay_rate: 0.5, staircase: maybe}}\n",
                 "lr.yaml:1:97: ExponentialDecay argument 'staircase': expected true or false");
    expect_error("lr: {PiecewiseConstantDecay: {boundaries: [10, 20], values: [0.1, 0.01]}}\n",
                 "lr.yaml:1:61: PiecewiseConstantDecay argument 'values' must have one more "
                 "entry than 'boundaries' (2), got 2");
    expect_error("lr: {PiecewiseConstantDecay: {boundaries: [20, 10], values: [1, 2, 3]}}\n",
                 "lr.yaml:1:48: PiecewiseConstantDecay argument 'boundaries' must be strictly "
                 "increasing: 10 follows 20");
    expect_error("lr: {PiecewiseConstantDecay: {boundaries: 10, values: [1, 2]}}\n",
                 "lr.yaml:1:43: PiecewiseConstantDecay argument 'boundaries': expected a list "
                 "of numbers");
    expect_error("lr: {PiecewiseConstantDecay: {boundaries: [10, x], values: [1, 2, 3]}}\n",
                 "lr.yaml:1:48: PiecewiseConstantDecay argument 'boundaries': expected a number");
    expect_error("lr: {PiecewiseConstantDecay: {boundaries: [], values: [1]}}\n",
                 "must list at least one step");
    expect_error("lr: {PiecewiseConstantDecay: {boundaries: [1], values: [0.1, -0.1]}}\n",
                 "lr.yaml:1:62: PiecewiseConstantDecay learning rates in 'values' must be >= 0");
    expect_error("lr: {PiecewiseConstantDecay: {values: [0.1]}}\n",
                 "PiecewiseConstantDecay requires the argument 'boundaries'");
    expect_error("lr: {PolynomialDecay: {initial_learning_rate: 0.1, decay_steps: 10, power: "
                 "-1}}\n",
                 "PolynomialDecay argument 'power' must be >= 0");
    expect_error("lr: {CosineDecay: {initial_learning_rate: 0.1, decay_steps: 10, alpha: 2}}\n",
                 "lr.yaml:1:72: CosineDecay argument 'alpha' must be in [0, 1], got 2");
    expect_error("lr: {CosineDecay: {initial_learning_rate: 0.1, decay_steps: 10, warmup_steps: "
                 "-5, warmup_target: 0.2}}\n",
                 "CosineDecay argument 'warmup_steps' must be >= 0");
    expect_error("lr: [0.1]\n", "lr.yaml:1:5: expected a learning rate schedule name or a "
                                "mapping with class_name, got a list");
}
END_TEST

int main(void) {
    Suite *s = suite_create("schedules");
    TCase *tc = tcase_create("schedules");
    tcase_add_test(tc, test_exponential_decay);
    tcase_add_test(tc, test_piecewise_constant_decay);
    tcase_add_test(tc, test_inverse_time_decay);
    tcase_add_test(tc, test_polynomial_decay);
    tcase_add_test(tc, test_cosine_decay);
    tcase_add_test(tc, test_cosine_decay_warmup);
    tcase_add_test(tc, test_forms_and_api);
    tcase_add_test(tc, test_parse_errors);
    suite_add_tcase(s, tc);
    return kc_test_run(s);
}

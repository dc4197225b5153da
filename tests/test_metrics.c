/* Metrics: Keras 3's accuracy resolution and names, values on hand-worked
 * batches (ties, thresholds, running means), parsing and its errors. */
#include "testutil.h"

#include "models/metrics.h"
#include "models/yaml.h"

static kc_metric named(const char *name, int cols, int sparse) {
    kc_metric m;
    kc_error e = {0};
    ck_assert_msg(kc_metric_init(&m, name, cols, sparse, &e) == KC_OK, "%s", e.msg);
    return m;
}

/* Parses `text` and reads its `metric:` key. */
static int parse_metric(const char *text, int cols, int sparse, kc_metric *m, kc_error *e) {
    kc_doc *d;
    int rc = kc_doc_parse(&d, "metrics.yaml", text, strlen(text), e);
    if (rc) return rc;
    rc = kc_metric_parse(kc_map_get(d->root, "metric"), cols, sparse, m, e);
    kc_doc_free(d);
    return rc;
}

static void expect_error(const char *text, int cols, int sparse, const char *needle) {
    kc_metric m;
    kc_error e = {0};
    ck_assert_int_eq(parse_metric(text, cols, sparse, &m, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, needle), "message '%s' lacks '%s'", e.msg, needle);
}

START_TEST(test_accuracy_resolution) {
    /* one output column -> binary; class-index targets -> sparse; else categorical */
    ck_assert_int_eq(named("accuracy", 1, 0).kind, KC_METRIC_BINARY_ACCURACY);
    ck_assert_int_eq(named("accuracy", 1, 1).kind, KC_METRIC_BINARY_ACCURACY);
    ck_assert_int_eq(named("accuracy", 10, 1).kind, KC_METRIC_SPARSE_CATEGORICAL_ACCURACY);
    ck_assert_int_eq(named("accuracy", 10, 0).kind, KC_METRIC_CATEGORICAL_ACCURACY);
    ck_assert_int_eq(named("acc", 10, 1).kind, KC_METRIC_SPARSE_CATEGORICAL_ACCURACY);
    /* Keras compares the lower-cased string */
    ck_assert_int_eq(named("Accuracy", 10, 0).kind, KC_METRIC_CATEGORICAL_ACCURACY);
    ck_assert_int_eq(named("ACC", 1, 0).kind, KC_METRIC_BINARY_ACCURACY);
    /* the metric keeps the user's name */
    kc_metric a = named("acc", 10, 1);
    ck_assert_str_eq(kc_metric_name(&a), "acc");
    ck_assert(kc_metric_sparse_targets(&a));
    kc_metric b = named("Accuracy", 3, 0);
    ck_assert_str_eq(kc_metric_name(&b), "Accuracy");
    ck_assert(!kc_metric_sparse_targets(&b));
}
END_TEST

START_TEST(test_string_names_as_written) {
    /* compile(metrics=["mse"]) logs "mse", as Keras 3 names string metrics */
    kc_metric m = named("mse", 2, 0);
    ck_assert_str_eq(kc_metric_name(&m), "mse");
    ck_assert_int_eq(m.kind, KC_METRIC_MEAN_SQUARED_ERROR);
    m = named("MeanAbsoluteError", 2, 0);
    ck_assert_str_eq(kc_metric_name(&m), "MeanAbsoluteError");
    ck_assert_int_eq(m.kind, KC_METRIC_MEAN_ABSOLUTE_ERROR);
    m = named("categorical_accuracy", 3, 0);
    ck_assert_str_eq(kc_metric_name(&m), "categorical_accuracy");
    ck_assert_int_eq(kc_metric_direction(&m), 1);
    m = named("mean_squared_error", 3, 0);
    ck_assert_int_eq(kc_metric_direction(&m), -1);
}
END_TEST

START_TEST(test_binary_accuracy) {
    kc_metric m = named("binary_accuracy", 1, 0);
    /* strictly greater than 0.5: 0.5 predicts 0 */
    const float p[] = {0.5f, 0.51f, 0.2f, 0.9f}, t[] = {0, 1, 1, 1};
    kc_metric_update(&m, p, t, 4, 1);
    ck_assert_close(kc_metric_result(&m), 0.75, 1e-12, 0);
    /* several columns: the mean per sample, then over samples: (1/2 + 2/2) / 2 */
    kc_metric_reset(&m);
    ck_assert_close(kc_metric_result(&m), 0.0, 0, 0);
    const float p2[] = {0.7f, 0.7f, 0.1f, 0.6f}, t2[] = {1, 0, 0, 1};
    kc_metric_update(&m, p2, t2, 2, 2);
    ck_assert_close(kc_metric_result(&m), 0.75, 1e-12, 0);
    /* a custom threshold, e.g. 0 for logits */
    m.threshold = 0.0f;
    kc_metric_reset(&m);
    const float z[] = {-0.1f, 0.0f, 2.0f}, tz[] = {0, 0, 1};
    kc_metric_update(&m, z, tz, 3, 1);
    ck_assert_close(kc_metric_result(&m), 1.0, 1e-12, 0);
}
END_TEST

START_TEST(test_categorical_accuracy_ties) {
    kc_metric m = named("categorical_accuracy", 3, 0);
    /* ties go to the first index, in predictions and targets alike */
    const float p[] = {0.4f, 0.4f, 0.2f,  /* argmax 0 */
                       0.4f, 0.4f, 0.2f,  /* argmax 0 */
                       0.1f, 0.2f, 0.7f,  /* argmax 2 */
                       0.3f, 0.3f, 0.3f}; /* argmax 0 */
    const float t[] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 0.5f, 0.5f, 0};
    kc_metric_update(&m, p, t, 4, 3);
    ck_assert_close(kc_metric_result(&m), 0.75, 1e-12, 0);
}
END_TEST

START_TEST(test_sparse_accuracy_running_mean) {
    kc_metric m = named("sparse_categorical_accuracy", 3, 1);
    ck_assert(kc_metric_sparse_targets(&m));
    const float p[] = {0.4f, 0.4f, 0.2f, 0.1f, 0.2f, 0.7f, 0.5f, 0.3f, 0.2f};
    const float t[] = {1, 2, 0};
    kc_metric_update(&m, p, t, 3, 3); /* the tie picks 0: 2 of 3 */
    ck_assert_close(kc_metric_result(&m), 2.0 / 3, 1e-12, 0);
    /* a second batch of one: the mean is over samples, (2 + 1) / 4 */
    const float p2[] = {0.1f, 0.8f, 0.1f}, t2[] = {1};
    kc_metric_update(&m, p2, t2, 1, 3);
    ck_assert_close(kc_metric_result(&m), 0.75, 1e-12, 0);
    kc_metric_reset(&m);
    kc_metric_update(&m, p2, t, 1, 3); /* label 1 vs argmax 1 */
    ck_assert_close(kc_metric_result(&m), 1.0, 1e-12, 0);
    /* an out-of-range label never matches and does not crash */
    const float bad[] = {7};
    kc_metric_update(&m, p2, bad, 1, 3);
    ck_assert_close(kc_metric_result(&m), 0.5, 1e-12, 0);
}
END_TEST

START_TEST(test_regression_metrics) {
    const float p[] = {1, 1, 1, 0}, t[] = {0, 1, 0, 0};
    kc_metric mse = named("mse", 2, 0), mae = named("mae", 2, 0);
    kc_metric_update(&mse, p, t, 2, 2);
    kc_metric_update(&mae, p, t, 2, 2);
    ck_assert_close(kc_metric_result(&mse), 0.5, 1e-12, 0);
    ck_assert_close(kc_metric_result(&mae), 0.5, 1e-12, 0);
    /* batches of 2 and 1: per-sample values (2.125, 4.5) then (0.125), mean 6.75 / 3 */
    const float p2[] = {1.5f, 0, 0, 0}, t2[] = {1, 2, 3, 0}, p3[] = {0.5f, 1}, t3[] = {0, 1};
    kc_metric_reset(&mse);
    kc_metric_update(&mse, p2, t2, 2, 2);
    kc_metric_update(&mse, p3, t3, 1, 2);
    ck_assert_close(kc_metric_result(&mse), (2.125 + 4.5 + 0.125) / 3, 1e-9, 0);
}
END_TEST

START_TEST(test_accuracy_class_is_equality) {
    /* {class_name: Accuracy} is keras.metrics.Accuracy: elementwise t == p */
    kc_metric m;
    kc_error e = {0};
    ck_assert_msg(parse_metric("metric: {class_name: Accuracy}\n", 1, 0, &m, &e) == KC_OK, "%s",
                  e.msg);
    ck_assert_int_eq(m.kind, KC_METRIC_ACCURACY);
    ck_assert_str_eq(kc_metric_name(&m), "accuracy");
    const float p[] = {1, 2, 3, 4}, t[] = {1, 0, 3, 4};
    kc_metric_update(&m, p, t, 4, 1);
    ck_assert_close(kc_metric_result(&m), 0.75, 1e-12, 0);
}
END_TEST

START_TEST(test_parse_forms) {
    kc_metric m;
    kc_error e = {0};
    ck_assert_msg(parse_metric("metric: accuracy\n", 10, 1, &m, &e) == KC_OK, "%s", e.msg);
    ck_assert_int_eq(m.kind, KC_METRIC_SPARSE_CATEGORICAL_ACCURACY);
    ck_assert_str_eq(kc_metric_name(&m), "accuracy");
    /* a mapping is named by its name argument or the class's default */
    ck_assert_msg(parse_metric("metric: {class_name: MeanSquaredError}\n", 2, 0, &m, &e) == KC_OK,
                  "%s", e.msg);
    ck_assert_str_eq(kc_metric_name(&m), "mean_squared_error");
    ck_assert_msg(parse_metric("metric:\n  BinaryAccuracy:\n    threshold: 0.7\n    name: ba\n", 1,
                               0, &m, &e) == KC_OK,
                  "%s", e.msg);
    ck_assert_int_eq(m.kind, KC_METRIC_BINARY_ACCURACY);
    ck_assert_close(m.threshold, 0.7, 1e-7, 0);
    ck_assert_str_eq(kc_metric_name(&m), "ba");
    ck_assert_msg(parse_metric("metric: {class_name: SparseCategoricalAccuracy, config: {name: "
                               "sca, dtype: float32}, module: keras.metrics}\n",
                               5, 1, &m, &e) == KC_OK,
                  "%s", e.msg);
    ck_assert_str_eq(kc_metric_name(&m), "sca");
}
END_TEST

START_TEST(test_parse_errors) {
    expect_error("metric: acuracy\n", 3, 0,
                 "metrics.yaml:1:9: unknown metric 'acuracy' (did you mean 'accuracy'?)");
    expect_error("metric: categorical_accuracy\n", 10, 1,
                 "metrics.yaml:1:9: metric 'categorical_accuracy' needs targets shaped like the "
                 "predictions (10 columns), but the targets are class indices; use "
                 "'sparse_categorical_accuracy'");
    expect_error("metric: sparse_categorical_accuracy\n", 10, 0,
                 "metrics.yaml:1:9: metric 'sparse_categorical_accuracy' needs class-index "
                 "targets");
    expect_error("metric: mse\n", 4, 1, "metric 'mse' needs targets shaped like the predictions");
    expect_error("metric: {CategoricalAccuracy: {threshold: 0.5}}\n", 3, 0,
                 "metrics.yaml:1:32: unknown key 'threshold'");
    expect_error("metric: {BinaryAccuracy: {threshold: high}}\n", 1, 0, "metrics.yaml:1:38:");
    expect_error("metric: {BinaryAccuracy: {dtype: float16}}\n", 1, 0, "only float32");
    expect_error("metric: auc\n", 1, 0, "unknown metric 'auc'");
}
END_TEST

int main(void) {
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_add_test(tc, test_accuracy_resolution);
    tcase_add_test(tc, test_string_names_as_written);
    tcase_add_test(tc, test_binary_accuracy);
    tcase_add_test(tc, test_categorical_accuracy_ties);
    tcase_add_test(tc, test_sparse_accuracy_running_mean);
    tcase_add_test(tc, test_regression_metrics);
    tcase_add_test(tc, test_accuracy_class_is_equality);
    tcase_add_test(tc, test_parse_forms);
    tcase_add_test(tc, test_parse_errors);
    suite_add_tcase(s, tc);
    return kc_test_run(s);
}

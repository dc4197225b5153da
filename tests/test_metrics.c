/* Metrics: Keras 3's accuracy resolution and names, values on hand-worked
 * batches (ties, thresholds, running means), Keras's documented values for
 * top-k accuracy, the loss-based means, precision, recall and AUC, counts
 * that accumulate across batches, parsing and its errors. */
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

/* ---- top-k accuracy ---- */

START_TEST(test_top_k_keras_examples) {
    /* keras.metrics.TopKCategoricalAccuracy(k=1) docstring: 0.5 */
    const float t[] = {0, 0, 1, 0, 1, 0}, p[] = {0.1f, 0.9f, 0.8f, 0.05f, 0.95f, 0};
    kc_metric m;
    kc_error e = {0};
    ck_assert_msg(parse_metric("metric: {TopKCategoricalAccuracy: {k: 1}}\n", 3, 0, &m, &e) ==
                      KC_OK,
                  "%s", e.msg);
    kc_metric_update(&m, p, t, 2, 3);
    ck_assert_close(kc_metric_result(&m), 0.5, 1e-12, 0);
    ck_assert_str_eq(kc_metric_name(&m), "top_k_categorical_accuracy");
    /* the default k = 5 covers all three classes */
    kc_metric d = named("top_k_categorical_accuracy", 3, 0);
    ck_assert_int_eq(d.k, 5);
    kc_metric_update(&d, p, t, 2, 3);
    ck_assert_close(kc_metric_result(&d), 1.0, 0, 0);
    /* sparse: labels [2, 1] */
    const float y[] = {2, 1};
    ck_assert_msg(parse_metric("metric: {SparseTopKCategoricalAccuracy: {k: 1}}\n", 3, 1, &m, &e) ==
                      KC_OK,
                  "%s", e.msg);
    ck_assert(kc_metric_sparse_targets(&m));
    kc_metric_update(&m, p, y, 2, 3);
    ck_assert_close(kc_metric_result(&m), 0.5, 1e-12, 0);
    kc_metric s = named("sparse_top_k_categorical_accuracy", 3, 1);
    ck_assert_int_eq(kc_metric_direction(&s), 1);
}
END_TEST

START_TEST(test_top_k_ties_and_bad_scores) {
    kc_metric m = named("sparse_top_k_categorical_accuracy", 4, 1);
    m.k = 1;
    /* every class tied at the top counts, as TensorFlow's in_top_k */
    const float tied[] = {0.5f, 0.5f, 0.5f, 0.5f}, y3[] = {3};
    kc_metric_update(&m, tied, y3, 1, 4);
    ck_assert_close(kc_metric_result(&m), 1.0, 0, 0);
    /* k = 2 with scores [.9, .5, .5, .1]: class 2 is in (one higher), class 3 is not */
    kc_metric_reset(&m);
    m.k = 2;
    const float p[] = {0.9f, 0.5f, 0.5f, 0.1f}, y2[] = {2};
    kc_metric_update(&m, p, y2, 1, 4);
    kc_metric_update(&m, p, y3, 1, 4);
    ck_assert_close(kc_metric_result(&m), 0.5, 0, 0);
    /* a NaN score or a label outside the classes is a miss */
    kc_metric_reset(&m);
    const float nanrow[] = {0.9f, NAN, 0.1f, 0.1f}, y1[] = {1}, y9[] = {9};
    kc_metric_update(&m, nanrow, y1, 1, 4);
    kc_metric_update(&m, p, y9, 1, 4);
    ck_assert_close(kc_metric_result(&m), 0.0, 0, 0);
}
END_TEST

/* ---- running means of loss functions ---- */

START_TEST(test_loss_metrics_keras_examples) {
    /* keras.metrics docstrings on [[0, 1], [0, 0]] vs [[1, 1], [0, 0]] */
    const float t[] = {0, 1, 0, 0}, p[] = {1, 1, 0, 0};
    static const struct {
        const char *name;
        double want;
        int direction;
    } cases[] = {
        {"mape", 250000000.0, -1},   {"MeanAbsolutePercentageError", 250000000.0, -1},
        {"msle", 0.12011322, -1},    {"log_cosh_error", 0.10844523, -1},
        {"poisson", 0.49999997, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kc_metric m = named(cases[i].name, 2, 0);
        kc_metric_update(&m, p, t, 2, 2);
        ck_assert_msg(fabs(kc_metric_result(&m) - cases[i].want) <= 1e-7 * fmax(1, cases[i].want),
                      "%s = %.9g, expected %.9g", cases[i].name, kc_metric_result(&m),
                      cases[i].want);
        ck_assert_str_eq(kc_metric_name(&m), cases[i].name);
        ck_assert_int_eq(kc_metric_direction(&m), cases[i].direction);
    }
    /* Hinge, SquaredHinge, CategoricalHinge docstrings: 1.3, 1.86, 1.4 */
    const float th[] = {0, 1, 0, 0}, ph[] = {0.6f, 0.4f, 0.4f, 0.6f};
    const char *hinges[] = {"hinge", "squared_hinge", "categorical_hinge"};
    const double want[] = {1.3, 1.86, 1.4};
    for (int i = 0; i < 3; i++) {
        kc_metric m = named(hinges[i], 2, 0);
        /* one sample at a time: the running mean, and 0/1 targets converted per batch */
        kc_metric_update(&m, ph, th, 1, 2);
        kc_metric_update(&m, ph + 2, th + 2, 1, 2);
        ck_assert_close(kc_metric_result(&m), want[i], 1e-7, 0);
    }
    /* CosineSimilarity(axis=1) docstring: 0.49999997 - higher is better */
    const float tc[] = {0, 1, 1, 1}, pc[] = {1, 0, 1, 1};
    kc_metric c;
    kc_error e = {0};
    ck_assert_msg(parse_metric("metric: {CosineSimilarity: {axis: -1}}\n", 2, 0, &c, &e) == KC_OK,
                  "%s", e.msg);
    kc_metric_update(&c, pc, tc, 2, 2);
    ck_assert_close(kc_metric_result(&c), 0.5, 1e-7, 0);
    ck_assert_int_eq(kc_metric_direction(&c), 1);
    /* LogCoshError's default name is "logcosh" */
    ck_assert_msg(parse_metric("metric: {class_name: LogCoshError}\n", 2, 0, &c, &e) == KC_OK, "%s",
                  e.msg);
    ck_assert_str_eq(kc_metric_name(&c), "logcosh");
}
END_TEST

/* ---- precision and recall ---- */

static kc_metric parsed(const char *text, int cols) {
    kc_metric m;
    kc_error e = {0};
    ck_assert_msg(parse_metric(text, cols, 0, &m, &e) == KC_OK, "%s: %s", text, e.msg);
    return m;
}

START_TEST(test_precision_recall_keras_examples) {
    /* keras.metrics.Precision / Recall docstrings: [0, 1, 1, 1] vs [1, 0, 1, 1] -> 2/3 */
    const float t[] = {0, 1, 1, 1}, p[] = {1, 0, 1, 1};
    kc_metric pr = named("precision", 1, 0), re = named("Recall", 1, 0);
    kc_metric_update(&pr, p, t, 4, 1);
    kc_metric_update(&re, p, t, 4, 1);
    ck_assert_close(kc_metric_result(&pr), 2.0 / 3, 1e-12, 0);
    ck_assert_close(kc_metric_result(&re), 2.0 / 3, 1e-12, 0);
    ck_assert_int_eq(kc_metric_direction(&pr), 1);
    /* Precision(top_k=2) on [0, 0, 1, 1] vs [1, 1, 1, 1]: the first two of the
     * tie are kept -> 0; top_k=4 -> 0.5 */
    const float t2[] = {0, 0, 1, 1}, p2[] = {1, 1, 1, 1};
    kc_metric k2 = parsed("metric: {Precision: {top_k: 2}}\n", 4);
    kc_metric_update(&k2, p2, t2, 1, 4);
    ck_assert_close(kc_metric_result(&k2), 0.0, 0, 0);
    kc_metric k4 = parsed("metric: {Precision: {top_k: 4}}\n", 4);
    kc_metric_update(&k4, p2, t2, 1, 4);
    ck_assert_close(kc_metric_result(&k4), 0.5, 0, 0);
    ck_assert_str_eq(kc_metric_name(&k4), "precision");
    /* nothing predicted positive: 0, not NaN */
    kc_metric z = named("precision", 1, 0);
    const float none[] = {0.1f, 0.2f};
    kc_metric_update(&z, none, t, 2, 1);
    ck_assert_close(kc_metric_result(&z), 0.0, 0, 0);
}
END_TEST

START_TEST(test_precision_recall_options) {
    /* rows of two classes; class_id 1 looks at column 1 only:
     * labels [0, 1, 0, 1], scores [.4, .3, .8, .9] -> tp 1, fp 1, fn 1 */
    const float t[] = {1, 0, 0, 1, 1, 0, 0, 1},
                p[] = {0.6f, 0.4f, 0.7f, 0.3f, 0.2f, 0.8f, 0.1f, 0.9f};
    kc_metric pc = parsed("metric: {Precision: {class_id: 1}}\n", 2);
    kc_metric rc = parsed("metric: {Recall: {class_id: 1}}\n", 2);
    kc_metric_update(&pc, p, t, 4, 2);
    kc_metric_update(&rc, p, t, 4, 2);
    ck_assert_close(kc_metric_result(&pc), 0.5, 0, 0);
    ck_assert_close(kc_metric_result(&rc), 0.5, 0, 0);
    /* class 0 at threshold 0.65: only the 0.7 (a negative) passes */
    kc_metric p0 = parsed("metric: {Precision: {class_id: 0, thresholds: 0.65}}\n", 2);
    kc_metric r0 = parsed("metric: {Recall: {class_id: 0, thresholds: [0.65]}}\n", 2);
    kc_metric_update(&p0, p, t, 4, 2);
    kc_metric_update(&r0, p, t, 4, 2);
    ck_assert_close(kc_metric_result(&p0), 0.0, 0, 0);
    ck_assert_close(kc_metric_result(&r0), 0.0, 0, 0);
    /* every column: scores > 0.5 are .6 (t 1), .7 (t 0), .8 (t 0), .9 (t 1) */
    kc_metric all = named("precision", 2, 0);
    kc_metric_update(&all, p, t, 4, 2);
    ck_assert_close(kc_metric_result(&all), 0.5, 0, 0);
    /* Recall(top_k=1) on a multi-label row: only the best class is predicted */
    const float tm[] = {1, 1, 0}, pm[] = {0.3f, 0.5f, 0.2f};
    kc_metric r1 = parsed("metric: {Recall: {top_k: 1}}\n", 3);
    kc_metric p1 = parsed("metric: {Precision: {top_k: 1}}\n", 3);
    kc_metric_update(&r1, pm, tm, 1, 3);
    kc_metric_update(&p1, pm, tm, 1, 3);
    ck_assert_close(kc_metric_result(&r1), 0.5, 0, 0);
    ck_assert_close(kc_metric_result(&p1), 1.0, 0, 0);
}
END_TEST

/* Counts add up over batches: not the mean of per-batch values. */
START_TEST(test_confusion_accumulates) {
    kc_metric pr = named("precision", 1, 0), re = named("recall", 1, 0);
    const float t1[] = {1}, p1[] = {0.9f};
    const float t2[] = {0, 0, 1, 1}, p2[] = {0.8f, 0.7f, 0.6f, 0.2f};
    kc_metric_update(&pr, p1, t1, 1, 1);
    kc_metric_update(&re, p1, t1, 1, 1);
    kc_metric_update(&pr, p2, t2, 4, 1);
    kc_metric_update(&re, p2, t2, 4, 1);
    ck_assert_close(kc_metric_result(&pr), 2.0 / 4, 0, 0); /* batch means would give 2/3 */
    ck_assert_close(kc_metric_result(&re), 2.0 / 3, 1e-15, 0);
    kc_metric_reset(&pr);
    ck_assert_close(kc_metric_result(&pr), 0.0, 0, 0);
    kc_metric_update(&pr, p2, t2, 4, 1);
    ck_assert_close(kc_metric_result(&pr), 1.0 / 3, 1e-15, 0);
}
END_TEST

/* ---- AUC ---- */

static double auc_of(const char *spec, const float *p, const float *t, int n) {
    kc_metric m = parsed(spec, 1);
    kc_metric_update(&m, p, t, n, 1);
    return kc_metric_result(&m);
}

START_TEST(test_auc_keras_example) {
    /* keras.metrics.AUC(num_thresholds=3) docstring: tp [2, 1, 0], fp [2, 0, 0] -> 0.75 */
    const float t[] = {0, 0, 1, 1}, p[] = {0, 0.5f, 0.3f, 0.9f};
    ck_assert_close(auc_of("metric: {AUC: {num_thresholds: 3}}\n", p, t, 4), 0.75, 1e-12, 0);
    /* thresholds [0.5] are [0, 0.5, 1]: evenly spaced, the same buckets */
    ck_assert_close(auc_of("metric: {AUC: {thresholds: [0.5]}}\n", p, t, 4), 0.75, 1e-12, 0);
    /* [0.3, 0.9] are not: predictions are compared, strictly greater:
     * ROC points (1, 1), (.5, .5), (0, 0), (0, 0) -> 0.5 */
    ck_assert_close(auc_of("metric: {AUC: {thresholds: [0.9, 0.3]}}\n", p, t, 4), 0.5, 1e-12, 0);
    kc_metric m = named("auc", 1, 0);
    ck_assert_int_eq(m.nthresholds, 200);
    ck_assert_str_eq(kc_metric_name(&m), "auc");
    ck_assert_int_eq(kc_metric_direction(&m), 1);
}
END_TEST

START_TEST(test_auc_curves_by_hand) {
    /* scores .1 (-), .4 (-), .35 (+), .8 (+) with the default 200 thresholds.
     * Counts as the threshold rises: (tp, fp) = (2, 2), (2, 1), (1, 1), (1, 0), (0, 0). */
    const float t[] = {0, 0, 1, 1}, p[] = {0.1f, 0.4f, 0.35f, 0.8f};
    /* ROC: (1, 1) (.5, 1) (.5, .5) (0, .5) (0, 0) -> 0.5 + 0.25 */
    ck_assert_close(auc_of("metric: auc\n", p, t, 4), 0.75, 1e-12, 0);
    ck_assert_close(auc_of("metric: {AUC: {summation_method: minoring}}\n", p, t, 4), 0.75, 1e-12,
                    0);
    /* PR, interpolated as Davis & Goadrich: the (2, 3) -> (1, 2) step gives
     * (1 - ln 1.5) / 2 and the (1, 1) -> (0, 0) step 1 / 2 */
    ck_assert_close(auc_of("metric: {AUC: {curve: PR}}\n", p, t, 4), (1 - log(1.5)) / 2 + 0.5,
                    1e-12, 0);
    /* PR by rectangles: (recall, precision) = (1, .5) (1, 2/3) (.5, .5) (.5, 1) (0, 0) */
    ck_assert_close(auc_of("metric: {AUC: {curve: PR, summation_method: minoring}}\n", p, t, 4),
                    0.25, 1e-12, 0);
    ck_assert_close(auc_of("metric: {AUC: {curve: pr, summation_method: majoring}}\n", p, t, 4),
                    0.5 * 2 / 3 + 0.5, 1e-12, 0);
    /* one tie across the classes: a diagonal ROC step */
    const float tt[] = {0, 1}, pt[] = {0.5f, 0.5f};
    ck_assert_close(auc_of("metric: auc\n", pt, tt, 2), 0.5, 1e-12, 0);
    ck_assert_close(auc_of("metric: {AUC: {summation_method: minoring}}\n", pt, tt, 2), 0.0, 0, 0);
    ck_assert_close(auc_of("metric: {AUC: {summation_method: majoring}}\n", pt, tt, 2), 1.0, 0, 0);
    /* logits through a sigmoid give the same buckets as the probabilities */
    float z[4];
    for (int i = 0; i < 4; i++)
        z[i] = (float)log(p[i] / (1 - p[i]));
    ck_assert_close(auc_of("metric: {AUC: {from_logits: true, curve: PR}}\n", z, t, 4),
                    (1 - log(1.5)) / 2 + 0.5, 1e-6, 0);
    /* one class only: ROC's false-positive rate is 0 everywhere -> 0 */
    const float ones[] = {1, 1};
    ck_assert_close(auc_of("metric: auc\n", p, ones, 2), 0.0, 0, 0);
}
END_TEST

START_TEST(test_auc_accumulates) {
    enum { N = 40 };
    float p[N], t[N];
    for (int i = 0; i < N; i++) {
        p[i] = (float)((i * 37) % 101) / 100.0f;
        t[i] = (float)((i * 13) % 3 == 0);
    }
    const char *specs[] = {"metric: auc\n", "metric: {AUC: {curve: PR}}\n",
                           "metric: {AUC: {num_thresholds: 7, summation_method: majoring}}\n",
                           "metric: {AUC: {thresholds: [0.2, 0.25, 0.7]}}\n"};
    for (int s = 0; s < 4; s++) {
        kc_metric whole = parsed(specs[s], 1), parts = parsed(specs[s], 1);
        kc_metric_update(&whole, p, t, N, 1);
        kc_metric_update(&parts, p, t, 13, 1);
        kc_metric_update(&parts, p + 13, t + 13, N - 13, 1);
        ck_assert_close(kc_metric_result(&parts), kc_metric_result(&whole), 1e-12, 0);
        ck_assert(kc_metric_result(&whole) > 0.0 && kc_metric_result(&whole) < 1.0);
        kc_metric_reset(&parts);
        ck_assert_close(kc_metric_result(&parts), 0.0, 0, 0);
    }
    /* a perfect ranking scores 1 (up to the 200-bucket resolution) */
    const float tp[] = {0, 0, 1, 1}, pp[] = {0.1f, 0.2f, 0.8f, 0.9f};
    ck_assert_close(auc_of("metric: auc\n", pp, tp, 4), 1.0, 1e-12, 0);
    /* predictions of exactly 0 and 1 land in the end buckets */
    const float te[] = {0, 1}, pe[] = {0, 1};
    ck_assert_close(auc_of("metric: auc\n", pe, te, 2), 1.0, 1e-12, 0);
}
END_TEST

START_TEST(test_new_metric_parse_errors) {
    expect_error("metric: precission\n", 1, 0,
                 "unknown metric 'precission' (did you mean 'precision'?)");
    expect_error("metric: {Precision: {thresholds: [0.3, 0.6]}}\n", 1, 0,
                 "metrics.yaml:1:34: Precision argument 'thresholds': give one threshold");
    expect_error("metric: {Recall: {thresholds: 1.5}}\n", 1, 0,
                 "'thresholds': values must be in [0, 1], got 1.5");
    expect_error("metric: {Precision: {class_id: 3}}\n", 3, 0,
                 "metrics.yaml:1:32: Precision argument 'class_id' (3) must be below the number "
                 "of outputs (3)");
    expect_error("metric: {Recall: {top_k: 4}}\n", 3, 0, "'top_k' (4) is larger than");
    expect_error("metric: {Recall: {top_k: 0}}\n", 3, 0, "'top_k' must be in [1, ");
    expect_error("metric: {AUC: {num_thresholds: 1}}\n", 1, 0, "'num_thresholds' must be in [2, ");
    expect_error("metric: {AUC: {curve: PRGAIN}}\n", 1, 0, "metrics.yaml:1:23:");
    expect_error("metric: {AUC: {summation_method: trapezoid}}\n", 1, 0, "summation_method");
    expect_error("metric: {AUC: {multi_label: true}}\n", 3, 0, "not supported by kerasc");
    expect_error("metric: {AUC: {num_labels: 3}}\n", 3, 0, "only when multi_label");
    expect_error("metric: {AUC: {thresholds: 0.5}}\n", 1, 0, "expected a list of numbers");
    expect_error("metric: {TopKCategoricalAccuracy: {k: 0}}\n", 5, 0, "'k' must be in [1, ");
    expect_error("metric: {SparseTopKCategoricalAccuracy: {from_sorted_ids: true}}\n", 5, 1,
                 "from_sorted_ids");
    expect_error("metric: {CosineSimilarity: {axis: 0}}\n", 2, 0, "only -1");
    expect_error("metric: top_k_categorical_accuracy\n", 10, 1,
                 "but the targets are class indices; use 'sparse_top_k_categorical_accuracy'");
    expect_error("metric: sparse_top_k_categorical_accuracy\n", 10, 0,
                 "needs class-index targets, but the targets are one-hot rows of 10; use "
                 "'top_k_categorical_accuracy'");
    expect_error("metric: precision\n", 10, 1, "metric 'precision' needs targets shaped like");
    expect_error("metric: {Hinge: {axis: -1}}\n", 2, 0, "unknown key 'axis'");
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
    expect_error("metric: {Precision: {dtype: float64}}\n", 1, 0, "only float32");
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
    tcase_add_test(tc, test_top_k_keras_examples);
    tcase_add_test(tc, test_top_k_ties_and_bad_scores);
    tcase_add_test(tc, test_loss_metrics_keras_examples);
    tcase_add_test(tc, test_precision_recall_keras_examples);
    tcase_add_test(tc, test_precision_recall_options);
    tcase_add_test(tc, test_confusion_accumulates);
    tcase_add_test(tc, test_auc_keras_example);
    tcase_add_test(tc, test_auc_curves_by_hand);
    tcase_add_test(tc, test_auc_accumulates);
    tcase_add_test(tc, test_new_metric_parse_errors);
    tcase_add_test(tc, test_parse_forms);
    tcase_add_test(tc, test_parse_errors);
    suite_add_tcase(s, tc);
    return kc_test_run(s);
}

/* Losses: values against Keras's documented numbers and hand-derived ones,
 * gradients against central finite differences, parsing and its errors. */
#include "testutil.h"

#include "core/rng.h"
#include "models/losses.h"
#include "models/yaml.h"

static kc_loss named(const char *name) {
    kc_loss l;
    kc_error e = {0};
    ck_assert_msg(kc_loss_init(&l, name, &e) == KC_OK, "%s", e.msg);
    return l;
}

/* Parses `text` and reads its `loss:` key. */
static int parse_loss(const char *text, kc_loss *l, kc_error *e) {
    kc_doc *d;
    int rc = kc_doc_parse(&d, "losses.yaml", text, strlen(text), e);
    if (rc) return rc;
    rc = kc_loss_parse(kc_map_get(d->root, "loss"), l, e);
    kc_doc_free(d);
    return rc;
}

static void expect_parse_error(const char *text, const char *needle) {
    kc_loss l;
    kc_error e = {0};
    ck_assert_int_eq(parse_loss(text, &l, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, needle), "message '%s' lacks '%s'", e.msg, needle);
}

/* ---- values ---- */

START_TEST(test_mse_mae_keras_examples) {
    /* keras.losses.MeanSquaredError / MeanAbsoluteError docstrings: 0.5 each */
    const float t[] = {0, 1, 0, 0}, p[] = {1, 1, 1, 0};
    float per[2];
    kc_loss mse = named("mse"), mae = named("mean_absolute_error");
    ck_assert_close(kc_loss_compute(&mse, p, t, 2, 2, 0, per, NULL), 0.5, 1e-12, 0);
    ck_assert_close(per[0], 0.5, 1e-7, 0);
    ck_assert_close(per[1], 0.5, 1e-7, 0);
    ck_assert_close(kc_loss_compute(&mae, p, t, 2, 2, 0, NULL, NULL), 0.5, 1e-12, 0);
    /* mean over the last axis, then over samples: ((0.5^2 + 2^2)/2 + 3^2/2) / 2 */
    const float t2[] = {1, 2, 3, 0}, p2[] = {1.5, 0, 0, 0};
    ck_assert_close(kc_loss_compute(&mse, p2, t2, 2, 2, 0, NULL, NULL), (2.125 + 4.5) / 2, 1e-9, 0);
    ck_assert_close(kc_loss_compute(&mae, p2, t2, 2, 2, 0, NULL, NULL), (1.25 + 1.5) / 2, 1e-9, 0);
}
END_TEST

START_TEST(test_categorical_keras_examples) {
    /* keras.losses.CategoricalCrossentropy docstring: 1.177 */
    const float t[] = {0, 1, 0, 0, 0, 1}, p[] = {0.05f, 0.95f, 0, 0.1f, 0.8f, 0.1f};
    kc_loss l = named("categorical_crossentropy");
    float per[2];
    ck_assert_close(kc_loss_compute(&l, p, t, 2, 3, 0, per, NULL), 1.176939193690798, 1e-6, 0);
    ck_assert_close(per[0], 0.0512932943875505, 1e-6, 0);
    ck_assert_close(per[1], 2.302585092994046, 1e-6, 0);
    /* backend docstring: eye(3) against [[.9,.05,.05],[.05,.89,.06],[.05,.01,.94]] */
    const float eye[] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    const float q[] = {.9f, .05f, .05f, .05f, .89f, .06f, .05f, .01f, .94f};
    float per3[3];
    kc_loss_compute(&l, q, eye, 3, 3, 0, per3, NULL);
    ck_assert_close(per3[0], 0.10536051565782628, 1e-6, 0);
    ck_assert_close(per3[1], 0.11653381625595151, 1e-6, 0);
    ck_assert_close(per3[2], 0.06187540371808753, 1e-6, 0);
}
END_TEST

START_TEST(test_categorical_normalises_and_clips) {
    kc_loss l = named("CategoricalCrossentropy");
    const float t[] = {1, 0, 0};
    /* predictions are divided by their sum first: [1.4, .4, .2] is [.7, .2, .1] */
    const float p[] = {1.4f, 0.4f, 0.2f};
    ck_assert_close(kc_loss_compute(&l, p, t, 1, 3, 0, NULL, NULL), -log(0.7), 1e-6, 0);
    /* a zero probability on the true class is clipped to 1e-7: -ln(1e-7) */
    const float wrong[] = {0, 1, 0};
    ck_assert_close(kc_loss_compute(&l, wrong, t, 1, 3, 0, NULL, NULL), 16.11809565095832, 1e-6, 0);
    /* and a certain one to 1 - 1e-7 */
    const float right[] = {1, 0, 0};
    ck_assert_close(kc_loss_compute(&l, right, t, 1, 3, 0, NULL, NULL), 1.0000000494736474e-07,
                    1e-12, 0);
}
END_TEST

START_TEST(test_sparse_keras_example) {
    /* keras.losses.SparseCategoricalCrossentropy docstring: labels [1, 2], 1.177 */
    const float y[] = {1, 2}, p[] = {0.05f, 0.95f, 0, 0.1f, 0.8f, 0.1f};
    kc_loss l = named("sparse_categorical_crossentropy");
    ck_assert(kc_loss_sparse_targets(&l));
    /* TensorFlow's path renormalises the clipped row: ln(1 + 1e-7) - ln(.95) */
    float per[2];
    ck_assert_close(kc_loss_compute(&l, p, y, 2, 3, 0, per, NULL), 1.1769392436907955, 1e-6, 0);
    ck_assert_close(per[0], 0.0512932943875505 + 1e-7, 1e-6, 0);
    /* the same as categorical with one-hot targets */
    const float onehot[] = {0, 1, 0, 0, 0, 1};
    kc_loss cce = named("categorical_crossentropy");
    ck_assert_close(kc_loss_compute(&l, p, y, 2, 3, 0, NULL, NULL),
                    kc_loss_compute(&cce, p, onehot, 2, 3, 0, NULL, NULL), 1e-6, 0);
}
END_TEST

START_TEST(test_binary_keras_examples) {
    /* keras.losses.BinaryCrossentropy docstring, probabilities: 0.815 */
    const float t[] = {0, 1, 0, 0}, p[] = {0.6f, 0.4f, 0.4f, 0.6f};
    kc_loss l = named("binary_crossentropy");
    ck_assert_close(kc_loss_compute(&l, p, t, 2, 2, 0, NULL, NULL), 0.814924454847114, 1e-6, 0);
    /* and from logits, one sample of four: 0.865 */
    const float t4[] = {0, 1, 0, 0}, z4[] = {-18.6f, 0.51f, 2.94f, -12.8f};
    kc_loss lg = named("bce");
    lg.from_logits = 1;
    ck_assert_close(kc_loss_compute(&lg, z4, t4, 1, 4, 0, NULL, NULL), 0.8654579497810972, 1e-6, 0);
    /* clipping: p = 0 for a positive is -ln(1e-7); p = 1 for a negative likewise */
    const float one[] = {1}, zero[] = {0};
    ck_assert_close(kc_loss_compute(&l, zero, one, 1, 1, 0, NULL, NULL), 16.11809565095832, 1e-5,
                    0);
    ck_assert_close(kc_loss_compute(&l, one, zero, 1, 1, 0, NULL, NULL), 16.11809565095832, 1e-5,
                    0);
}
END_TEST

START_TEST(test_kld_keras_example) {
    /* keras.losses.KLDivergence docstring: 0.458 (targets clipped to 1e-7 too) */
    const float t[] = {0, 1, 0, 0}, p[] = {0.6f, 0.4f, 0.4f, 0.6f};
    kc_loss l = named("kld");
    ck_assert_str_eq(kc_loss_class_name(&l), "KLDivergence");
    ck_assert_close(kc_loss_compute(&l, p, t, 2, 2, 0, NULL, NULL), 0.45814304511982884, 1e-6, 0);
    kc_loss k2 = named("kullback_leibler_divergence");
    ck_assert_close(kc_loss_compute(&k2, p, t, 2, 2, 0, NULL, NULL), 0.45814304511982884, 1e-6, 0);
}
END_TEST

START_TEST(test_label_smoothing) {
    /* categorical, 0.1 over 3 classes: t = [0.9 + 0.1/3, 0.1/3, 0.1/3] */
    kc_loss l = named("categorical_crossentropy");
    l.label_smoothing = 0.1f;
    const float t[] = {1, 0, 0}, p[] = {0.7f, 0.2f, 0.1f};
    ck_assert_close(kc_loss_compute(&l, p, t, 1, 3, 0, NULL, NULL), 0.46329738119042185, 1e-6, 0);
    /* binary, 0.2: t = t * 0.8 + 0.1 -> [0.9, 0.1] against [0.8, 0.3] */
    kc_loss b = named("binary_crossentropy");
    b.label_smoothing = 0.2f;
    const float tb[] = {1, 0}, pb[] = {0.8f, 0.3f};
    ck_assert_close(kc_loss_compute(&b, pb, tb, 1, 2, 0, NULL, NULL), 0.4015888587018258, 1e-6, 0);
}
END_TEST

START_TEST(test_logits_forms_agree) {
    /* z = [[2, 1, 0.1], [0.5, 2.5, -1]] against classes 0 and 2 */
    const float z[] = {2, 1, 0.1f, 0.5f, 2.5f, -1}, t[] = {1, 0, 0, 0, 0, 1}, y[] = {0, 2};
    kc_loss cce = named("categorical_crossentropy"), cl = cce,
            sp = named("SparseCategoricalCrossentropy");
    cl.from_logits = 1;
    double expect = 2.0351041117000612;
    ck_assert_close(kc_loss_compute(&cl, z, t, 2, 3, 0, NULL, NULL), expect, 1e-6, 0);
    /* the fused path (softmax folded in) equals from_logits */
    ck_assert_close(kc_loss_compute(&cce, z, t, 2, 3, 1, NULL, NULL), expect, 1e-6, 0);
    ck_assert_close(kc_loss_compute(&sp, z, y, 2, 3, 1, NULL, NULL), expect, 1e-6, 0);
    /* and the probability path on softmax(z), away from the clip */
    float p[6];
    for (int i = 0; i < 2; i++) {
        double s = 0;
        for (int j = 0; j < 3; j++)
            s += exp(z[3 * i + j]);
        for (int j = 0; j < 3; j++)
            p[3 * i + j] = (float)(exp(z[3 * i + j]) / s);
    }
    ck_assert_close(kc_loss_compute(&cce, p, t, 2, 3, 0, NULL, NULL), expect, 1e-6, 0);
    ck_assert_close(kc_loss_compute(&sp, p, y, 2, 3, 0, NULL, NULL), expect, 1e-6, 0);
    /* binary: fused sigmoid equals from_logits equals probabilities */
    const float zb[] = {-1.5f, 0.3f, 2.0f, -0.2f}, tb[] = {0, 1, 1, 0};
    kc_loss b = named("binary_crossentropy"), bl = b;
    bl.from_logits = 1;
    float pb[4];
    for (int j = 0; j < 4; j++)
        pb[j] = (float)(1 / (1 + exp(-zb[j])));
    double vb = kc_loss_compute(&b, pb, tb, 2, 2, 0, NULL, NULL);
    ck_assert_close(kc_loss_compute(&bl, zb, tb, 2, 2, 0, NULL, NULL), vb, 1e-6, 0);
    ck_assert_close(kc_loss_compute(&b, zb, tb, 2, 2, 1, NULL, NULL), vb, 1e-6, 0);
}
END_TEST

START_TEST(test_logits_not_capped) {
    /* TensorFlow's implicit-logits path: -ln softmax = 100, not 16.118 */
    const float z[] = {50, 0, -50}, t[] = {0, 0, 1}, y[] = {2};
    kc_loss l = named("categorical_crossentropy"), s = named("sparse_categorical_crossentropy");
    ck_assert_close(kc_loss_compute(&l, z, t, 1, 3, 1, NULL, NULL), 100.0, 1e-6, 0);
    ck_assert_close(kc_loss_compute(&s, z, y, 1, 3, 1, NULL, NULL), 100.0, 1e-6, 0);
    const float zb[] = {-80}, one[] = {1};
    kc_loss b = named("binary_crossentropy");
    ck_assert_close(kc_loss_compute(&b, zb, one, 1, 1, 1, NULL, NULL), 80.0, 1e-6, 0);
    float g[1];
    kc_loss_compute(&b, zb, one, 1, 1, 1, NULL, g);
    ck_assert_close(g[0], -1.0, 1e-6, 0); /* sigmoid(-80) - 1 */
    ck_assert_int_eq(kc_loss_logits_activation(&l), KC_ACT_SOFTMAX);
    ck_assert_int_eq(kc_loss_logits_activation(&b), KC_ACT_SIGMOID);
    kc_loss m = named("mse");
    ck_assert_int_eq(kc_loss_logits_activation(&m), KC_ACT_LINEAR);
    ck_assert(!kc_loss_has_logits_form(&m));
    ck_assert(kc_loss_has_logits_form(&s));
}
END_TEST

START_TEST(test_reduction_sum) {
    kc_loss l = named("mse");
    l.reduction = KC_REDUCTION_SUM;
    const float t[] = {0, 1, 0, 0}, p[] = {1, 1, 1, 0};
    ck_assert_close(kc_loss_compute(&l, p, t, 2, 2, 0, NULL, NULL), 1.0, 1e-12, 0);
    ck_assert_close(kc_loss_compute(&l, p, t, 0, 2, 0, NULL, NULL), 0.0, 0, 0);
}
END_TEST

/* ---- gradients ---- */

static float uniform(uint64_t stream, uint64_t i, float lo, float hi) {
    return lo + (hi - lo) * kc_rng_uniform(1234, stream, i);
}

/* Central differences of the reduced loss against the analytic gradient. */
static void fd_check(const kc_loss *l, int logits, float *pred, const float *target, int n, int c) {
    float grad[64], scratch[64];
    ck_assert(n * c <= 64);
    kc_loss_compute(l, pred, target, n, c, logits, NULL, grad);
    for (int k = 0; k < n * c; k++) {
        float keep = pred[k], h = 1e-3f;
        pred[k] = keep + h;
        float up = pred[k];
        double fp = kc_loss_compute(l, pred, target, n, c, logits, NULL, scratch);
        pred[k] = keep - h;
        float down = pred[k];
        double fm = kc_loss_compute(l, pred, target, n, c, logits, NULL, scratch);
        pred[k] = keep;
        double fd = (fp - fm) / ((double)up - down);
        ck_assert_msg(fabs(fd - grad[k]) <= 2e-4 + 2e-3 * fabs(fd),
                      "%s logits=%d ls=%g: d/dp[%d] = %.7g, finite difference %.7g", l->name,
                      logits, (double)l->label_smoothing, k, (double)grad[k], fd);
    }
}

START_TEST(test_gradients) {
    enum { N = 3, C = 4 };
    float pred[N * C], onehot[N * C], labels[N], dense[N * C], soft[N * C];
    for (int i = 0; i < N; i++) {
        labels[i] = (float)((i * 3 + 1) % C);
        for (int j = 0; j < C; j++) {
            onehot[i * C + j] = j == (int)labels[i];
            dense[i * C + j] = uniform(1, (uint64_t)(i * C + j), -2, 2);
            soft[i * C + j] = (i * C + j) % 3 == 0 ? 0.0f : uniform(2, (uint64_t)(i * C + j), 0, 1);
        }
    }
    for (int mode = 0; mode < 2; mode++) {
        for (int smoothing = 0; smoothing < 2; smoothing++) {
            float ls = smoothing ? 0.1f : 0.0f;
            /* logits anywhere; probabilities away from the clip bounds (and
             * unnormalised for the categorical ones, to test the division) */
            for (int k = 0; k < N * C; k++)
                pred[k] =
                    mode ? uniform(3, (uint64_t)k, -3, 3) : uniform(4, (uint64_t)k, 0.05f, 0.9f);
            kc_loss cce = named("categorical_crossentropy"), bce = named("binary_crossentropy");
            cce.label_smoothing = bce.label_smoothing = ls;
            fd_check(&cce, mode, pred, onehot, N, C);
            fd_check(&cce, mode, pred, soft, N, C); /* soft targets that do not sum to 1 */
            fd_check(&bce, mode, pred, onehot, N, C);
            fd_check(&bce, mode, pred, soft, N, C);
            if (smoothing) continue;
            kc_loss scce = named("sparse_categorical_crossentropy");
            fd_check(&scce, mode, pred, labels, N, C);
            /* from_logits gives the same gradient as the fused path */
            cce.from_logits = 1;
            fd_check(&cce, 0, pred, onehot, N, C);
        }
    }
    /* losses without a logits form ignore the flag */
    for (int mode = 0; mode < 2; mode++) {
        for (int k = 0; k < N * C; k++)
            pred[k] = uniform(5, (uint64_t)k, 0.05f, 0.95f);
        kc_loss mse = named("mse"), mae = named("mae"), kld = named("kl_divergence");
        fd_check(&mse, mode, pred, dense, N, C);
        fd_check(&mae, mode, pred, dense, N, C); /* |p - t| >= 0.05 here: no kink */
        fd_check(&kld, mode, pred, soft, N, C);
        mse.reduction = KC_REDUCTION_SUM;
        fd_check(&mse, mode, pred, dense, N, C);
    }
}
END_TEST

START_TEST(test_gradient_closed_forms) {
    /* d/dz of the batch mean is (softmax(z) - t) / n */
    const float z[] = {0, 0, 0, 1, 2, 3}, t[] = {1, 0, 0, 0, 0, 1};
    float g[6];
    kc_loss l = named("categorical_crossentropy");
    kc_loss_compute(&l, z, t, 2, 3, 1, NULL, g);
    ck_assert_close(g[0], (1.0 / 3 - 1) / 2, 1e-7, 0);
    ck_assert_close(g[1], (1.0 / 3) / 2, 1e-7, 0);
    double s = exp(1) + exp(2) + exp(3);
    ck_assert_close(g[3], exp(1) / s / 2, 1e-7, 0);
    ck_assert_close(g[5], (exp(3) / s - 1) / 2, 1e-7, 0);
    /* a clipped probability passes no gradient, as tf.clip_by_value */
    const float p[] = {0, 1}, tb[] = {1, 1};
    kc_loss b = named("binary_crossentropy");
    kc_loss_compute(&b, p, tb, 1, 2, 0, NULL, g);
    ck_assert_close(g[0], 0.0, 0, 0);
    ck_assert_close(g[1], 0.0, 0, 0);
    const float pk[] = {0, 0.5f}, tk[] = {0.5f, 0.5f};
    kc_loss k = named("kl_divergence");
    kc_loss_compute(&k, pk, tk, 1, 2, 0, NULL, g);
    ck_assert_close(g[0], 0.0, 0, 0);
    ck_assert_close(g[1], -1.0, 1e-7, 0); /* -t / p */
}
END_TEST

/* ---- regression, hinge and similarity losses ---- */

START_TEST(test_huber_keras_example) {
    /* keras.losses.huber docstring: [[0, 1], [0, 0]] vs [[.6, .4], [.4, .6]] -> 0.155 */
    const float t[] = {0, 1, 0, 0}, p[] = {0.6f, 0.4f, 0.4f, 0.6f};
    kc_loss l = named("huber");
    float per[2];
    ck_assert_close(kc_loss_compute(&l, p, t, 2, 2, 0, per, NULL), 0.155, 1e-7, 0);
    ck_assert_close(per[0], 0.18, 1e-7, 0); /* 0.5 e^2, both errors inside delta */
    ck_assert_close(per[1], 0.13, 1e-7, 0);
    /* delta 0.5: |e| = 0.6 is in the linear part, 0.5 * 0.6 - 0.5 * 0.25 = 0.175 */
    l.delta = 0.5;
    ck_assert_close(kc_loss_compute(&l, p, t, 2, 2, 0, per, NULL), (0.175 + (0.08 + 0.175) / 2) / 2,
                    1e-7, 0);
    ck_assert_close(per[0], 0.175, 1e-7, 0);
}
END_TEST

START_TEST(test_log_cosh_keras_example) {
    /* keras.losses.log_cosh docstring / LogCoshError: 0.10844523 */
    const float t[] = {0, 1, 0, 0}, p[] = {1, 1, 0, 0};
    kc_loss l = named("log_cosh");
    ck_assert_close(kc_loss_compute(&l, p, t, 2, 2, 0, NULL, NULL), 0.10844523, 1e-7, 0);
    /* large errors do not overflow: ln cosh 100 = 100 - ln 2 */
    const float big[] = {100}, zero[] = {0};
    ck_assert_close(kc_loss_compute(&l, big, zero, 1, 1, 0, NULL, NULL), 100 - log(2.0), 1e-9, 0);
    kc_loss k2 = named("logcosh");
    ck_assert_str_eq(kc_loss_class_name(&k2), "LogCosh");
}
END_TEST

START_TEST(test_hinge_keras_examples) {
    /* keras.metrics Hinge / SquaredHinge / CategoricalHinge docstrings:
     * [[0, 1], [0, 0]] vs [[.6, .4], [.4, .6]] -> 1.3, 1.86, 1.4 */
    const float t[] = {0, 1, 0, 0}, p[] = {0.6f, 0.4f, 0.4f, 0.6f};
    kc_loss h = named("hinge"), sh = named("squared_hinge"), ch = named("categorical_hinge");
    float per[2];
    ck_assert_close(kc_loss_compute(&h, p, t, 2, 2, 0, per, NULL), 1.3, 1e-7, 0);
    ck_assert_close(per[0], 1.1, 1e-7, 0);
    ck_assert_close(kc_loss_compute(&sh, p, t, 2, 2, 0, NULL, NULL), 1.86, 1e-7, 0);
    ck_assert_close(kc_loss_compute(&ch, p, t, 2, 2, 0, per, NULL), 1.4, 1e-7, 0);
    ck_assert_close(per[0], 1.2, 1e-7, 0);
    /* -1/1 targets are used as they are: max(1 - t p, 0) */
    const float pm[] = {0.3f, -2.0f}, tm[] = {-1, 1};
    ck_assert_close(kc_loss_compute(&h, pm, tm, 1, 2, 0, NULL, NULL), (1.3 + 3.0) / 2, 1e-7, 0);
    /* the 0/1 test is over the whole call: one target of 2 keeps every 0 a 0 */
    const float tz[] = {0, 2}, pz[] = {0.5f, 0.25f};
    ck_assert_close(kc_loss_compute(&h, pz, tz, 1, 2, 0, NULL, NULL), (1.0 + 0.5) / 2, 1e-7, 0);
    const float tb[] = {0, 1}; /* converted: (-1, 1) */
    ck_assert_close(kc_loss_compute(&h, pz, tb, 1, 2, 0, NULL, NULL), (1.5 + 0.75) / 2, 1e-7, 0);
    /* categorical hinge never below 0 */
    const float tc[] = {0, 1, 0}, pc[] = {0.1f, 3.0f, 0.2f};
    ck_assert_close(kc_loss_compute(&ch, pc, tc, 1, 3, 0, NULL, NULL), 0.0, 0, 0);
}
END_TEST

START_TEST(test_poisson_msle_mape_keras_examples) {
    /* keras.metrics docstrings on [[0, 1], [0, 0]] vs [[1, 1], [0, 0]] */
    const float t[] = {0, 1, 0, 0}, p[] = {1, 1, 0, 0};
    kc_loss po = named("poisson"), ms = named("msle"), ma = named("mape");
    ck_assert_close(kc_loss_compute(&po, p, t, 2, 2, 0, NULL, NULL), 0.49999997, 1e-7, 0);
    ck_assert_close(kc_loss_compute(&ms, p, t, 2, 2, 0, NULL, NULL), 0.12011322, 1e-7, 0);
    /* |0 - 1| / max(0, 1e-7) dominates: 250000000 */
    ck_assert_close(kc_loss_compute(&ma, p, t, 2, 2, 0, NULL, NULL), 250000000.0, 0, 1e-7);
    ck_assert_str_eq(kc_loss_class_name(&ma), "MeanAbsolutePercentageError");
    ck_assert_str_eq(kc_loss_class_name(&ms), "MeanSquaredLogarithmicError");
    /* mape: 100 |t - p| / |t| */
    const float t2[] = {-2, 4}, p2[] = {-1, 5};
    ck_assert_close(kc_loss_compute(&ma, p2, t2, 1, 2, 0, NULL, NULL), 100 * (0.5 + 0.25) / 2, 1e-9,
                    0);
    /* msle: negative values count as eps */
    const float t3[] = {3}, p3[] = {-5};
    ck_assert_close(kc_loss_compute(&ms, p3, t3, 1, 1, 0, NULL, NULL),
                    pow(log(1 + 1e-7) - log(4.0), 2), 1e-7, 0);
}
END_TEST

START_TEST(test_cosine_keras_example) {
    /* keras.losses.cosine_similarity docstring: [-0., -0.99999994, 0.99999994] */
    const float t[] = {0, 1, 1, 1, 1, 1}, p[] = {1, 0, 1, 1, -1, -1};
    kc_loss l = named("cosine_similarity");
    float per[3];
    ck_assert_close(kc_loss_compute(&l, p, t, 3, 2, 0, per, NULL), 0.0, 1e-7, 0);
    ck_assert_close(per[0], 0.0, 1e-7, 0);
    ck_assert_close(per[1], -1.0, 1e-7, 0);
    ck_assert_close(per[2], 1.0, 1e-7, 0);
    /* CosineSimilarity's example (negated): [[0, 1], [1, 1]] vs [[1, 0], [1, 1]] -> -0.5 */
    ck_assert_close(kc_loss_compute(&l, p, t, 2, 2, 0, NULL, NULL), -0.5, 1e-7, 0);
    /* a zero vector gives 0, and its gradient is t / (||t|| eps) scaled, not NaN */
    const float zero[] = {0, 0}, tt[] = {3, 4};
    float g[2];
    ck_assert_close(kc_loss_compute(&l, zero, tt, 1, 2, 0, NULL, g), 0.0, 0, 0);
    ck_assert_close(g[0], -0.6 / 1e-7, 1e-3, 1e-6);
    ck_assert_close(g[1], -0.8 / 1e-7, 1e-3, 1e-6);
}
END_TEST

/* Central differences of the new losses away from their kinks. */
START_TEST(test_new_loss_gradients) {
    enum { N = 3, C = 4 };
    float t[N * C], p[N * C], pos[N * C], tpos[N * C], sign[N * C], onehot[N * C];
    for (int k = 0; k < N * C; k++) {
        t[k] = uniform(20, (uint64_t)k, -2, 2);
        float off = uniform(21, (uint64_t)k, 0.1f, 0.8f);
        p[k] = t[k] + (k % 2 ? off : -off); /* |p - t| >= 0.1: no kink of |x| */
        pos[k] = uniform(22, (uint64_t)k, 0.05f, 3);
        tpos[k] = uniform(23, (uint64_t)k, 0, 2);
        sign[k] = k % 3 ? 1.0f : -1.0f;
        onehot[k] = k % C == (k / C) % C;
    }
    kc_loss mape = named("mape"), huber = named("huber"), lc = named("log_cosh"),
            msle = named("msle"), poisson = named("poisson"), cos = named("cosine_similarity"),
            h = named("hinge"), sh = named("squared_hinge"), ch = named("categorical_hinge");
    fd_check(&mape, 0, p, t, N, C);
    fd_check(&huber, 0, p, t, N, C);
    huber.delta = 0.4; /* now some errors are in the linear part */
    fd_check(&huber, 0, p, t, N, C);
    fd_check(&lc, 0, p, t, N, C);
    fd_check(&cos, 0, p, t, N, C);
    fd_check(&msle, 0, pos, tpos, N, C);
    fd_check(&poisson, 0, pos, tpos, N, C);
    /* hinges: predictions away from the margin |p| = 1 */
    float hp[N * C];
    for (int k = 0; k < N * C; k++)
        hp[k] = (k % 2 ? 1 : -1) * (k % 4 < 2 ? uniform(24, (uint64_t)k, 0.1f, 0.8f)
                                              : uniform(25, (uint64_t)k, 1.2f, 2.5f));
    fd_check(&h, 0, hp, sign, N, C);
    fd_check(&sh, 0, hp, sign, N, C);
    fd_check(&h, 0, hp, onehot, N, C); /* 0/1 targets, converted */
    fd_check(&sh, 0, hp, onehot, N, C);
    fd_check(&ch, 0, hp, onehot, N, C);
    sh.reduction = KC_REDUCTION_SUM;
    fd_check(&sh, 0, hp, onehot, N, C);
}
END_TEST

START_TEST(test_new_loss_gradient_closed_forms) {
    float g[4];
    /* categorical hinge: tied maxima share the gradient, as reduce_max does */
    const float t[] = {1, 0, 0}, p[] = {0.2f, 0.5f, 0.5f};
    kc_loss ch = named("categorical_hinge");
    ck_assert_close(kc_loss_compute(&ch, p, t, 1, 3, 0, NULL, g), 0.5 - 0.2 + 1, 1e-7, 0);
    ck_assert_close(g[0], -1.0, 1e-7, 0);
    ck_assert_close(g[1], 0.5, 1e-7, 0);
    ck_assert_close(g[2], 0.5, 1e-7, 0);
    /* hinge past the margin passes nothing */
    const float tp[] = {1, 1}, pp[] = {2, 0.5f};
    kc_loss h = named("hinge");
    kc_loss_compute(&h, pp, tp, 1, 2, 0, NULL, g);
    ck_assert_close(g[0], 0.0, 0, 0);
    ck_assert_close(g[1], -0.5, 1e-7, 0); /* -t / c */
    /* log_cosh: tanh(p - t) / c */
    const float tl[] = {0, 0}, pl[] = {1, -3};
    kc_loss lc = named("log_cosh");
    kc_loss_compute(&lc, pl, tl, 1, 2, 0, NULL, g);
    ck_assert_close(g[0], tanh(1.0) / 2, 1e-7, 0);
    ck_assert_close(g[1], tanh(-3.0) / 2, 1e-7, 0);
    /* msle: predictions below eps pass nothing */
    const float tm[] = {1}, pm[] = {-1};
    kc_loss ms = named("msle");
    kc_loss_compute(&ms, pm, tm, 1, 1, 0, NULL, g);
    ck_assert_close(g[0], 0.0, 0, 0);
    /* huber beyond delta: delta sign(e) / c */
    const float th[] = {0, 0}, ph[] = {3, -2};
    kc_loss hu = named("Huber");
    kc_loss_compute(&hu, ph, th, 1, 2, 0, NULL, g);
    ck_assert_close(g[0], 0.5, 1e-7, 0);
    ck_assert_close(g[1], -0.5, 1e-7, 0);
}
END_TEST

/* ---- sparse labels ---- */

START_TEST(test_sparse_label_errors) {
    kc_loss l = named("sparse_categorical_crossentropy");
    const float p[] = {0.2f, 0.3f, 0.5f, 0.2f, 0.3f, 0.5f, 0.2f, 0.3f, 0.5f};
    kc_error e = {0};
    const float ok[] = {0, 2, 1};
    ck_assert_int_eq(kc_loss_check_targets(&l, ok, 3, 3, &e), KC_OK);
    const float high[] = {0, 3, 1};
    ck_assert_int_eq(kc_loss_check_targets(&l, high, 3, 3, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "label 3 of sample 1 is outside [0, 3)"), "%s", e.msg);
    const float neg[] = {-1, 0, 0};
    ck_assert_int_eq(kc_loss_check_targets(&l, neg, 3, 3, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "label -1 of sample 0"), "%s", e.msg);
    const float frac[] = {0, 0, 1.5f};
    ck_assert_int_eq(kc_loss_check_targets(&l, frac, 3, 3, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "label 1.5 of sample 2"), "%s", e.msg);
    const float nan_label[] = {NAN, 0, 0};
    ck_assert_int_eq(kc_loss_check_targets(&l, nan_label, 3, 3, &e), KC_ECONFIG);
    /* unchecked, a bad label makes the loss NaN and its gradient row zero */
    float per[3], g[9];
    double v = kc_loss_compute(&l, p, high, 3, 3, 0, per, g);
    ck_assert(isnan(v));
    ck_assert(isnan(per[1]));
    ck_assert_close(per[0], -log(0.2), 1e-6, 0);
    for (int j = 3; j < 6; j++)
        ck_assert_close(g[j], 0.0, 0, 0);
    ck_assert(g[0] != 0.0f);
    /* dense losses do not check */
    kc_loss m = named("mse");
    ck_assert_int_eq(kc_loss_check_targets(&m, high, 1, 3, &e), KC_OK);
}
END_TEST

/* ---- parsing ---- */

START_TEST(test_parse_names) {
    static const struct {
        const char *yaml, *cls, *name;
    } cases[] = {
        {"loss: mse\n", "MeanSquaredError", "mse"},
        {"loss: MSE\n", "MeanSquaredError", "MSE"},
        {"loss: MeanSquaredError\n", "MeanSquaredError", "MeanSquaredError"},
        {"loss: mean_absolute_error\n", "MeanAbsoluteError", "mean_absolute_error"},
        {"loss: mae\n", "MeanAbsoluteError", "mae"},
        {"loss: categorical_crossentropy\n", "CategoricalCrossentropy", "categorical_crossentropy"},
        {"loss: SparseCategoricalCrossentropy\n", "SparseCategoricalCrossentropy",
         "SparseCategoricalCrossentropy"},
        {"loss: bce\n", "BinaryCrossentropy", "bce"},
        {"loss: kld\n", "KLDivergence", "kld"},
        {"loss: {class_name: KLDivergence}\n", "KLDivergence", "kl_divergence"},
        {"loss: mape\n", "MeanAbsolutePercentageError", "mape"},
        {"loss: MSLE\n", "MeanSquaredLogarithmicError", "MSLE"},
        {"loss: mean_squared_logarithmic_error\n", "MeanSquaredLogarithmicError",
         "mean_squared_logarithmic_error"},
        {"loss: huber\n", "Huber", "huber"},
        {"loss: Huber\n", "Huber", "Huber"},
        {"loss: {Huber: null}\n", "Huber", "huber_loss"}, /* the class's default name */
        {"loss: log_cosh\n", "LogCosh", "log_cosh"},
        {"loss: {class_name: LogCosh}\n", "LogCosh", "log_cosh"},
        {"loss: hinge\n", "Hinge", "hinge"},
        {"loss: SquaredHinge\n", "SquaredHinge", "SquaredHinge"},
        {"loss: {CategoricalHinge: {}}\n", "CategoricalHinge", "categorical_hinge"},
        {"loss: poisson\n", "Poisson", "poisson"},
        {"loss: {CosineSimilarity: {axis: -1}}\n", "CosineSimilarity", "cosine_similarity"},
        {"loss: {class_name: MeanAbsolutePercentageError}\n", "MeanAbsolutePercentageError",
         "mean_absolute_percentage_error"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kc_loss l;
        kc_error e = {0};
        ck_assert_msg(parse_loss(cases[i].yaml, &l, &e) == KC_OK, "%s", e.msg);
        ck_assert_str_eq(kc_loss_class_name(&l), cases[i].cls);
        ck_assert_str_eq(l.name, cases[i].name);
        ck_assert_int_eq(l.from_logits, 0);
        ck_assert_int_eq(l.reduction, KC_REDUCTION_SUM_OVER_BATCH_SIZE);
    }
}
END_TEST

START_TEST(test_parse_arguments) {
    kc_loss l;
    kc_error e = {0};
    ck_assert_msg(parse_loss("loss: {class_name: CategoricalCrossentropy, from_logits: true, "
                             "label_smoothing: 0.1}\n",
                             &l, &e) == KC_OK,
                  "%s", e.msg);
    ck_assert_int_eq(l.from_logits, 1);
    ck_assert_close(l.label_smoothing, 0.1, 1e-7, 0);
    ck_assert_str_eq(l.name, "categorical_crossentropy");
    ck_assert_msg(parse_loss("loss:\n  BinaryCrossentropy:\n    from_logits: true\n    name: b\n",
                             &l, &e) == KC_OK,
                  "%s", e.msg);
    ck_assert_str_eq(kc_loss_class_name(&l), "BinaryCrossentropy");
    ck_assert_int_eq(l.from_logits, 1);
    ck_assert_str_eq(l.name, "b");
    /* Keras's serialized form */
    ck_assert_msg(parse_loss("loss: {module: keras.losses, class_name: "
                             "SparseCategoricalCrossentropy, config: {from_logits: true, "
                             "reduction: sum, name: scce, ignore_class: null}, registered_name: "
                             "null}\n",
                             &l, &e) == KC_OK,
                  "%s", e.msg);
    ck_assert_int_eq(l.from_logits, 1);
    ck_assert_int_eq(l.reduction, KC_REDUCTION_SUM);
    ck_assert_str_eq(l.name, "scce");
    ck_assert_msg(parse_loss("loss: {mse: null}\n", &l, &e) == KC_OK, "%s", e.msg);
    ck_assert_str_eq(kc_loss_class_name(&l), "MeanSquaredError");
    ck_assert_msg(parse_loss("loss: {Huber: {delta: 2.5, name: h}}\n", &l, &e) == KC_OK, "%s",
                  e.msg);
    ck_assert_close(l.delta, 2.5, 0, 0);
    ck_assert_str_eq(l.name, "h");
    ck_assert_msg(parse_loss("loss: huber\n", &l, &e) == KC_OK, "%s", e.msg);
    ck_assert_close(l.delta, 1.0, 0, 0);
}
END_TEST

START_TEST(test_parse_errors) {
    expect_parse_error("loss: categorical_crossentropyy\n",
                       "losses.yaml:1:7: unknown loss 'categorical_crossentropyy' (did you mean "
                       "'categorical_crossentropy'?)");
    expect_parse_error("loss: {class_name: MeanSquaredError, from_logits: true}\n",
                       "losses.yaml:1:38: unknown key 'from_logits'");
    expect_parse_error("loss:\n  SparseCategoricalCrossentropy:\n    label_smoothing: 0.1\n",
                       "losses.yaml:3:5: unknown key 'label_smoothing'");
    expect_parse_error("loss: {CategoricalCrossentropy: {label_smoothing: 1.5}}\n",
                       "losses.yaml:1:51: CategoricalCrossentropy argument 'label_smoothing' "
                       "must be in [0, 1], got 1.5");
    expect_parse_error("loss: {BinaryCrossentropy: {from_logits: maybe}}\n", "losses.yaml:1:42:");
    expect_parse_error("loss: {BinaryCrossentropy: {reduction: none}}\n", "'none'");
    expect_parse_error("loss: {BinaryCrossentropy: {axis: 1}}\n", "only -1");
    expect_parse_error("loss: {SparseCategoricalCrossentropy: {ignore_class: 0}}\n",
                       "'ignore_class' is not supported");
    expect_parse_error("loss: {a: 1, b: 2}\n", "losses.yaml:1:7:");
    expect_parse_error("loss: [mse]\n", "got a list");
    expect_parse_error("loss: {mse: 3}\n", "must be a mapping");
    expect_parse_error("loss: {class_name: mse, config: {}, extra: 1}\n", "unknown key 'extra'");
    expect_parse_error("loss: hingee\n", "unknown loss 'hingee' (did you mean 'hinge'?)");
    expect_parse_error("loss: {Huber: {delta: 0}}\n",
                       "losses.yaml:1:23: Huber argument 'delta' must be a positive number");
    expect_parse_error("loss: {Huber: {delta: -1}}\n", "'delta' must be >= 0");
    expect_parse_error("loss: {CosineSimilarity: {axis: 0}}\n", "only -1");
    expect_parse_error("loss: {Hinge: {from_logits: true}}\n", "unknown key 'from_logits'");
    expect_parse_error("loss: {Poisson: {delta: 1}}\n", "unknown key 'delta'");
}
END_TEST

int main(void) {
    Suite *s = suite_create("losses");
    TCase *tc = tcase_create("losses");
    tcase_add_test(tc, test_mse_mae_keras_examples);
    tcase_add_test(tc, test_categorical_keras_examples);
    tcase_add_test(tc, test_categorical_normalises_and_clips);
    tcase_add_test(tc, test_sparse_keras_example);
    tcase_add_test(tc, test_binary_keras_examples);
    tcase_add_test(tc, test_kld_keras_example);
    tcase_add_test(tc, test_label_smoothing);
    tcase_add_test(tc, test_logits_forms_agree);
    tcase_add_test(tc, test_logits_not_capped);
    tcase_add_test(tc, test_reduction_sum);
    tcase_add_test(tc, test_gradients);
    tcase_add_test(tc, test_gradient_closed_forms);
    tcase_add_test(tc, test_huber_keras_example);
    tcase_add_test(tc, test_log_cosh_keras_example);
    tcase_add_test(tc, test_hinge_keras_examples);
    tcase_add_test(tc, test_poisson_msle_mape_keras_examples);
    tcase_add_test(tc, test_cosine_keras_example);
    tcase_add_test(tc, test_new_loss_gradients);
    tcase_add_test(tc, test_new_loss_gradient_closed_forms);
    tcase_add_test(tc, test_sparse_label_errors);
    tcase_add_test(tc, test_parse_names);
    tcase_add_test(tc, test_parse_arguments);
    tcase_add_test(tc, test_parse_errors);
    suite_add_tcase(s, tc);
    return kc_test_run(s);
}

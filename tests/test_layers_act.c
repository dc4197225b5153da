/* Activation and regularisation layers: Keras 3's outputs and input
 * gradients (tests/fixtures/layers/activations.safetensors, made by
 * make_activations.py) on every backend, finite-difference gradients,
 * argument errors with file:line:column, the statistics, determinism and
 * inference-mode identity of the noise layers, and a model using them all
 * trained and summarised through the kerasc binary. */
#include "tests/layercheck.h"

#include "core/safetensors.h"
#include "tests/clitest.h"

/* ---- registry and shapes ---- */

START_TEST(test_registry_act) {
    const char *names[][2] = {
        {"ReLU", "re_lu"},
        {"LeakyReLU", "leaky_re_lu"},
        {"PReLU", "p_re_lu"},
        {"ELU", "elu"},
        {"Softmax", "softmax"},
        {"GaussianNoise", "gaussian_noise"},
        {"GaussianDropout", "gaussian_dropout"},
        {"AlphaDropout", "alpha_dropout"},
        {"SpatialDropout1D", "spatial_dropout1d"},
        {"SpatialDropout2D", "spatial_dropout2d"},
        {"ActivityRegularization", "activity_regularization"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const kc_layer_class *c = kc_layer_class_find(names[i][0]);
        ck_assert_msg(c != NULL, "%s", names[i][0]);
        ck_assert_str_eq(c->class_name, names[i][0]);
        ck_assert_str_eq(c->base_name, names[i][1]);
    }
}
END_TEST

START_TEST(test_prelu_params) {
    tl t[3];
    kc_layer *l = must_build(&t[0], "PReLU", NULL, kc_shape3(5, 4, 3));
    expect_shape(l, kc_shape3(5, 4, 3));
    ck_assert_int_eq(l->nparams, 1);
    ck_assert_str_eq(l->params[0].name, "alpha");
    ck_assert(kc_shape_equal(&l->params[0].shape, &(kc_shape){3, {5, 4, 3}}));
    ck_assert_int_eq(l->params[0].init.kind, KC_INIT_ZEROS);
    ck_assert_int_eq(kc_layer_param_count(l, 0), 60);
    l = must_build(&t[1], "PReLU", "shared_axes: [1, 2]\n", kc_shape3(5, 4, 3));
    ck_assert(kc_shape_equal(&l->params[0].shape, &(kc_shape){3, {1, 1, 3}}));
    ck_assert_int_eq(kc_layer_param_count(l, 1), 3);
    l = must_build(&t[2], "PReLU",
                   "shared_axes: 1\nalpha_initializer: ones\n"
                   "alpha_regularizer: {L2: {l2: 0.5}}\n",
                   kc_shape2(6, 2));
    ck_assert(kc_shape_equal(&l->params[0].shape, &(kc_shape){2, {1, 2}}));
    ck_assert_int_eq(l->params[0].init.kind, KC_INIT_ONES);
    ck_assert(l->params[0].regularizer.l2 == 0.5);
    for (int i = 0; i < 3; i++)
        tl_free(&t[i]);
    /* the others keep no weights and keep the shape */
    const char *none[][2] = {{"ReLU", NULL},
                             {"LeakyReLU", NULL},
                             {"ELU", NULL},
                             {"Softmax", "axis: 1\n"},
                             {"GaussianNoise", "stddev: 0.1\n"},
                             {"GaussianDropout", "rate: 0.2\n"},
                             {"AlphaDropout", "rate: 0.2\n"},
                             {"SpatialDropout2D", "rate: 0.2\n"},
                             {"ActivityRegularization", "l1: 0.1\n"}};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        tl u;
        l = must_build(&u, none[i][0], none[i][1], kc_shape3(4, 4, 2));
        expect_shape(l, kc_shape3(4, 4, 2));
        ck_assert_int_eq(kc_layer_param_count(l, 0), 0);
        tl_free(&u);
    }
    tl u;
    l = must_build(&u, "ActivityRegularization", "l1: 0.25\nl2: 0.5\n", kc_shape1(3));
    ck_assert(l->activity_regularizer.l1 == 0.25 && l->activity_regularizer.l2 == 0.5);
    tl_free(&u);
}
END_TEST

/* ---- argument errors: file:line:column of the value ---- */

START_TEST(test_argument_errors) {
    kc_shape in = kc_shape3(4, 4, 2);
    expect_error("ReLU", "max_value: -1\n", &in, "layer.yaml:1:12:", "must be >= 0");
    expect_error("ReLU", "negative_slope: -0.5\n", &in, "layer.yaml:1:17:", "must be >= 0");
    expect_error("ReLU", "negative_slope: null\n", &in, "layer.yaml:1:17:", "cannot be null");
    expect_error("ReLU", "threshold: -2\n", &in, "layer.yaml:1:12:", "must be >= 0");
    expect_error("ReLU", "max_valu: 6\n", &in, "layer.yaml:1:1:", "max_valu");
    expect_error("LeakyReLU", "negative_slope: -1\n", &in, "layer.yaml:1:17:", "must be >= 0");
    expect_error("LeakyReLU", "alpha: 0.1\nnegative_slope: 0.2\n", &in,
                 "layer.yaml:1:8:", "not both");
    expect_error("ELU", "alpha: fast\n", &in, "layer.yaml:1:8:", "alpha");
    expect_error("PReLU", "shared_axes: [0]\n", &in, "layer.yaml:1:15:", "shared_axes");
    expect_error("PReLU", "shared_axes: [4]\n", &in, "layer.yaml:1:1:", "rank 4");
    expect_error("Softmax", "axis: 0\n", &in, "layer.yaml:1:1:", "batch axis");
    expect_error("Softmax", "axis: 4\n", &in, "layer.yaml:1:1:", "out of range");
    expect_error("Softmax", "axis: [1, 3]\n", &in, "layer.yaml:1:1:", "not adjacent");
    expect_error("GaussianNoise", NULL, &in, "", "stddev");
    expect_error("GaussianNoise", "stddev: -0.1\n", &in, "layer.yaml:1:9:", "[0, 1]");
    expect_error("GaussianDropout", "rate: 1\n", &in, "layer.yaml:1:7:", "[0, 1)");
    expect_error("AlphaDropout", "rate: 0.5\nnoise_shape: 3\n", &in,
                 "layer.yaml:2:14:", "noise_shape");
    expect_error("AlphaDropout", "rate: 0.5\nnoise_shape: [null, 0, 1, 1]\n", &in,
                 "layer.yaml:2:21:", ">= 1");
    expect_error("AlphaDropout", "rate: 0.5\nnoise_shape: [null, 1, 2]\n", &in,
                 "layer.yaml:1:1:", "3 entries");
    expect_error("AlphaDropout", "rate: 0.5\nnoise_shape: [null, 1, 3, 2]\n", &in,
                 "layer.yaml:1:1:", "does not broadcast");
    expect_error("SpatialDropout1D", "rate: 0.5\n", &in, "layer.yaml:1:1:", "rank 3");
    expect_error("SpatialDropout2D", "rate: 0.5\ndata_format: channels_first\n", &in,
                 "layer.yaml:2:14:", "channels_first");
    expect_error("SpatialDropout2D", "rate: 1.5\n", &in, "layer.yaml:1:7:", "[0, 1)");
    expect_error("ActivityRegularization", "l1: -1\n", &in, "layer.yaml:1:5:", "l1");
    expect_error("Dense", "units: 2\nactivation: hard_tanh\n", &in,
                 "layer.yaml:2:13:", "not supported yet");
}
END_TEST

START_TEST(test_activation_names_act) {
    const char *names[][2] = {
        {"relu6", "relu6"}, {"hard_silu", "hard_silu"},     {"hard_swish", "hard_silu"},
        {"mish", "mish"},   {"log_softmax", "log_softmax"}, {"silu", "silu"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        tl t;
        char yaml[64];
        snprintf(yaml, sizeof yaml, "activation: %s\n", names[i][0]);
        kc_layer *l = must_build(&t, "Activation", yaml, kc_shape1(3));
        ck_assert_str_eq(kc_activation_name(l->activation.act), names[i][1]);
        tl_free(&t);
    }
}
END_TEST

/* ---- Keras-made fixture ---- */

static kc_st_file *fixture(void) {
    return layer_fixture("activations");
}

static const kc_st_tensor *tensor_of(const char *cs, const char *what) {
    return layer_fixture_tensor(fixture(), cs, what);
}

static void expect_near(const char *what, const char *dev, const float *got, const float *want,
                        size_t n) {
    expect_near_keras(what, dev, got, want, n, 2e-6f);
}

/* Runs one fixture case on be: the layer, then its activation (if any). */
static void run_case(kc_device *be, const char *cs) {
    const char *cls;
    char key[256];
    snprintf(key, sizeof key, "%s.class", cs);
    cls = kc_st_meta(fixture(), key);
    snprintf(key, sizeof key, "%s.args", cs);
    const char *args = kc_st_meta(fixture(), key);
    ck_assert_msg(cls && args, "fixture lacks the class or args of %s", cs);
    const kc_st_tensor *x = tensor_of(cs, "x"), *c = tensor_of(cs, "c"), *y = tensor_of(cs, "y"),
                       *dx = tensor_of(cs, "dx");
    kc_shape in = {x->shape.rank - 1, {0}};
    for (int i = 1; i < x->shape.rank; i++)
        in.d[i - 1] = x->shape.d[i];
    tl t;
    kc_layer *l = must_build(&t, cls, args, in);
    rig r;
    rig_init(&r, be, l, (int)x->shape.d[0]);
    for (int p = 0; p < l->nparams; p++) {
        snprintf(key, sizeof key, "w.%s", l->params[p].name);
        const kc_st_tensor *w = tensor_of(cs, key);
        ck_assert(kc_shape_equal(&w->shape, &l->params[p].shape));
        set_param(&r, p, w->data);
    }
    size_t n = r.nin;
    int cols = in.rank ? (int)in.d[in.rank - 1] : 1, rows = (int)(n / (size_t)cols);
    kc_buf z = dev_alloc(be, n), gz = dev_alloc(be, n);
    kc_exec ex = rig_exec(&r, 0);
    put(be, r.x, x->data, n);
    ck_assert_int_eq(l->cls->forward(l, &ex, r.x, z), KC_OK);
    ck_assert_int_eq(kc_activation_forward(be, &l->activation, z, r.y, rows, cols), KC_OK);
    float *got = malloc(n * sizeof(float));
    get(be, got, r.y, n);
    snprintf(key, sizeof key, "%s output", cs);
    expect_near(key, be->name, got, y->data, n);
    put(be, r.dy, c->data, n);
    ck_assert_int_eq(kc_activation_backward(be, &l->activation, z, r.y, r.dy, gz, rows, cols),
                     KC_OK);
    ck_assert_int_eq(l->cls->backward(l, &ex, r.x, z, gz, r.dx), KC_OK);
    get(be, got, r.dx, n);
    snprintf(key, sizeof key, "%s dx", cs);
    expect_near(key, be->name, got, dx->data, n);
    for (int p = 0; p < l->nparams; p++) {
        snprintf(key, sizeof key, "dw.%s", l->params[p].name);
        const kc_st_tensor *dw = tensor_of(cs, key);
        size_t np = (size_t)kc_shape_numel(&dw->shape);
        float *g = malloc(np * sizeof(float));
        get(be, g, l->params[p].grad, np);
        snprintf(key, sizeof key, "%s d%s", cs, l->params[p].name);
        expect_near(key, be->name, g, dw->data, np);
        free(g);
    }
    free(got);
    kc_free(be, &z);
    kc_free(be, &gz);
    rig_free(&r);
    tl_free(&t);
}

START_TEST(test_keras_fixture) {
    KC_LOOP_DEVICE(be);
    const char *list = kc_st_meta(fixture(), "cases");
    ck_assert_ptr_nonnull(list);
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", list);
    int count = 0;
    for (char *save = NULL, *cs = strtok_r(buf, ",", &save); cs; cs = strtok_r(NULL, ",", &save)) {
        run_case(be, cs);
        count++;
    }
    ck_assert_int_ge(count, 30); /* every layer case and every activation name */
}
END_TEST

/* ---- finite differences (inference, and training with the drawn noise) ---- */

START_TEST(test_gradients_act) {
    KC_LOOP_DEVICE(be);
    kc_shape s3 = kc_shape3(3, 2, 4);
    gradcheck(be, "ReLU", NULL, s3, 2, 0, 0);
    gradcheck(be, "ReLU", "max_value: 0.77\nnegative_slope: 0.1\nthreshold: 0.23\n", s3, 2, 0, 0);
    gradcheck(be, "ReLU", "max_value: 6\n", s3, 2, 0, 0);
    gradcheck(be, "LeakyReLU", NULL, s3, 2, 0, 0);
    gradcheck(be, "ELU", "alpha: 0.7\n", s3, 2, 0, 0);
    gradcheck(be, "PReLU", NULL, s3, 2, 0, 0);
    gradcheck(be, "PReLU", "shared_axes: [1, 2]\n", s3, 2, 0, 0);
    gradcheck(be, "PReLU", "shared_axes: 2\n", s3, 1, 0, 0);
    gradcheck(be, "Softmax", NULL, s3, 2, 0, 0);
    gradcheck(be, "Softmax", "axis: 1\n", s3, 2, 0, 0);
    gradcheck(be, "Softmax", "axis: [1, 2]\n", s3, 2, 0, 0);
    gradcheck(be, "GaussianNoise", "stddev: 0.5\n", s3, 2, 0, 1);
    gradcheck(be, "GaussianDropout", "rate: 0.3\n", s3, 2, 0, 1);
    gradcheck(be, "AlphaDropout", "rate: 0.3\n", s3, 2, 0, 1);
    gradcheck(be, "AlphaDropout", "rate: 0.3\nnoise_shape: [1, null, 1, 4]\n", s3, 2, 0, 1);
    gradcheck(be, "SpatialDropout2D", "rate: 0.5\n", s3, 3, 0, 1);
    gradcheck(be, "SpatialDropout1D", "rate: 0.5\n", kc_shape2(3, 4), 3, 0, 1);
    gradcheck(be, "ActivityRegularization", "l2: 0.1\n", s3, 2, 0, 1);
}
END_TEST

/* ---- the noise layers ---- */

/* Forward of cls(yaml) on n values of x (one sample of shape in, batch b). */
static float *noise_run(kc_device *be, const char *cls, const char *yaml, kc_shape in, int b,
                        const float *x, int training, uint64_t step) {
    tl t;
    kc_layer *l = must_build(&t, cls, yaml, in);
    l->index = 3;
    rig r;
    rig_init(&r, be, l, b);
    kc_exec ex = rig_exec(&r, training);
    ex.step = step;
    put(be, r.x, x, r.nin);
    layer_forward(&r, &ex);
    float *y = malloc(r.nout * sizeof(float));
    get(be, y, r.y, r.nout);
    rig_free(&r);
    tl_free(&t);
    return y;
}

static void moments(const float *v, size_t n, double *mean, double *var) {
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i], s2 += (double)v[i] * v[i];
    *mean = s / n;
    *var = s2 / n - *mean * *mean;
}

START_TEST(test_noise_statistics) {
    KC_LOOP_DEVICE(be);
    const int b = 8;
    kc_shape in = kc_shape2(50, 40);
    size_t n = 2000 * (size_t)b;
    float *x = malloc(n * sizeof(float)), *ones = malloc(n * sizeof(float));
    fill_random(x, n, 9, -1, 1);
    for (size_t i = 0; i < n; i++)
        ones[i] = 1.0f;
    double m, v;
    /* GaussianNoise: x + N(0, 0.3^2) */
    float *y = noise_run(be, "GaussianNoise", "stddev: 0.3\n", in, b, x, 1, 1);
    for (size_t i = 0; i < n; i++)
        y[i] -= x[i];
    moments(y, n, &m, &v);
    ck_assert_msg(fabs(m) < 0.01 && fabs(v - 0.09) < 0.005, "noise mean %g var %g", m, v);
    free(y);
    /* GaussianDropout: x N(1, rate / (1 - rate)) */
    y = noise_run(be, "GaussianDropout", "rate: 0.2\n", in, b, ones, 1, 1);
    moments(y, n, &m, &v);
    ck_assert_msg(fabs(m - 1) < 0.01 && fabs(v - 0.25) < 0.015, "mult noise mean %g var %g", m, v);
    free(y);
    /* AlphaDropout keeps zero mean and unit variance of standard inputs */
    float *z = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        z[i] = kc_rng_normal(5, 6, i);
    y = noise_run(be, "AlphaDropout", "rate: 0.25\n", in, b, z, 1, 1);
    moments(y, n, &m, &v);
    ck_assert_msg(fabs(m) < 0.03 && fabs(v - 1) < 0.04, "alpha dropout mean %g var %g", m, v);
    double p = 0.25, ap = -1.6732632423543772 * 1.0507009873554805;
    double a = pow((1 - p) * (1 + p * ap * ap), -0.5), bb = -a * ap * p;
    size_t dropped = 0;
    for (size_t i = 0; i < n; i++) {
        int is_drop = fabs(y[i] - (a * ap + bb)) < 1e-5;
        dropped += is_drop;
        ck_assert_msg(is_drop || fabs(y[i] - (a * z[i] + bb)) < 1e-5, "alpha dropout y[%zu]", i);
    }
    ck_assert_msg(fabs((double)dropped / n - p) < 0.02, "dropped %zu of %zu", dropped, n);
    free(y);
    /* AlphaDropout with noise_shape [null, 1, null]: one draw per (sample, channel) */
    y = noise_run(be, "AlphaDropout", "rate: 0.5\nnoise_shape: [null, 1, null]\n", in, b, z, 1, 1);
    a = pow(0.5 * (1 + 0.5 * ap * ap), -0.5), bb = -a * ap * 0.5;
    for (int s = 0; s < b; s++)
        for (int ch = 0; ch < 40; ch++) {
            int drop0 = fabs(y[(size_t)s * 2000 + ch] - (a * ap + bb)) < 1e-5;
            for (int t = 0; t < 50; t++) {
                size_t i = (size_t)s * 2000 + (size_t)t * 40 + ch;
                double want = drop0 ? a * ap + bb : a * z[i] + bb;
                ck_assert_msg(fabs(y[i] - want) < 1e-5, "shared alpha dropout y[%zu]", i);
            }
        }
    free(y);
    /* SpatialDropout1D: whole channels, scaled by 1 / (1 - rate) */
    y = noise_run(be, "SpatialDropout1D", "rate: 0.5\n", in, b, ones, 1, 1);
    size_t zero_ch = 0;
    for (int s = 0; s < b; s++)
        for (int ch = 0; ch < 40; ch++) {
            float first = y[(size_t)s * 2000 + ch];
            ck_assert(first == 0.0f || first == 2.0f);
            zero_ch += first == 0.0f;
            for (int t = 1; t < 50; t++)
                ck_assert(y[(size_t)s * 2000 + (size_t)t * 40 + ch] == first);
        }
    ck_assert_msg(zero_ch > 100 && zero_ch < 220, "%zu of 320 channels dropped", zero_ch);
    free(y);
    /* inference: every one is the identity */
    const char *layers[][2] = {{"GaussianNoise", "stddev: 0.3\n"},
                               {"GaussianDropout", "rate: 0.2\n"},
                               {"AlphaDropout", "rate: 0.2\n"},
                               {"SpatialDropout1D", "rate: 0.5\n"},
                               {"ActivityRegularization", "l1: 0.5\n"}};
    for (size_t k = 0; k < sizeof layers / sizeof layers[0]; k++) {
        y = noise_run(be, layers[k][0], layers[k][1], in, b, x, 0, 1);
        ck_assert_msg(!memcmp(y, x, n * sizeof(float)), "%s is not the identity", layers[k][0]);
        free(y);
    }
    free(x), free(ones), free(z);
}
END_TEST

/* The same seed and step give the same noise on every backend; another step another. */
START_TEST(test_noise_determinism) {
    kc_device *ref = kc_test_reference();
    kc_shape in = kc_shape3(4, 5, 6);
    size_t n = 120 * 3;
    float *x = malloc(n * sizeof(float));
    fill_random(x, n, 4, -2, 2);
    const char *layers[][2] = {{"GaussianNoise", "stddev: 0.3\nseed: 17\n"},
                               {"GaussianDropout", "rate: 0.4\n"},
                               {"AlphaDropout", "rate: 0.3\n"},
                               {"SpatialDropout2D", "rate: 0.5\nseed: 3\n"}};
    for (size_t k = 0; k < sizeof layers / sizeof layers[0]; k++) {
        float *want = noise_run(ref, layers[k][0], layers[k][1], in, 3, x, 1, 5);
        float *again = noise_run(ref, layers[k][0], layers[k][1], in, 3, x, 1, 5);
        ck_assert(!memcmp(want, again, n * sizeof(float)));
        float *other = noise_run(ref, layers[k][0], layers[k][1], in, 3, x, 1, 6);
        size_t same = 0;
        for (size_t i = 0; i < n; i++)
            same += other[i] == want[i];
        ck_assert_msg(same < n * 3 / 4, "%s: step 6 repeats step 5 (%zu)", layers[k][0], same);
        KC_FOR_EACH_TESTED_DEVICE(d) {
            float *got = noise_run(d, layers[k][0], layers[k][1], in, 3, x, 1, 5);
            for (size_t i = 0; i < n; i++)
                ck_assert_msg(fabsf(got[i] - want[i]) <= 1e-5f * (1 + fabsf(want[i])),
                              "%s on %s [%zu]: %g vs %g", layers[k][0], d->name, i, got[i],
                              want[i]);
            free(got);
        }
        free(want), free(again), free(other);
    }
    free(x);
}
END_TEST

/* ---- end to end through the kerasc binary ---- */

static const char *act_model = "model:\n"
                               "  name: acts\n"
                               "  layers:\n"
                               "    - Input: {shape: [8, 8, 1]}\n"
                               "    - Conv2D: {filters: 4, kernel_size: 3, padding: same}\n"
                               "    - PReLU: {shared_axes: [1, 2]}\n"
                               "    - SpatialDropout2D: {rate: 0.1}\n"
                               "    - GaussianNoise: {stddev: 0.1}\n"
                               "    - MaxPooling2D: {pool_size: 2}\n"
                               "    - Flatten\n"
                               "    - Dense: {units: 16, activation: mish}\n"
                               "    - ReLU: {max_value: 6}\n"
                               "    - GaussianDropout: {rate: 0.1}\n"
                               "    - Dense: {units: 16, activation: hard_swish}\n"
                               "    - LeakyReLU\n"
                               "    - AlphaDropout: {rate: 0.1}\n"
                               "    - ELU\n"
                               "    - ActivityRegularization: {l2: 0.001}\n"
                               "    - Dense: {units: 4}\n"
                               "    - Softmax\n"
                               "compile:\n"
                               "  optimizer: {Adam: {learning_rate: 0.01}}\n"
                               "  loss: sparse_categorical_crossentropy\n"
                               "  metrics: [accuracy]\n"
                               "data:\n"
                               "  train: {x: train_x.npy, y: train_y.npy}\n"
                               "  rescale: 1/255\n"
                               "  reshape: [8, 8, 1]\n"
                               "fit: {epochs: 2, batch_size: 16, seed: 5}\n";

static void cli_setup(void) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    dir = kc_test_tmpdir();
    make_blobs("train_x.npy", "train_y.npy", 64, 11);
    write_file("acts.yaml", act_model);
}

static void cli_teardown(void) {
    kc_test_rmdir(dir);
    free(dir);
}

START_TEST(test_cli_trains_and_summarises) {
    int st = run("summary acts.yaml");
    ck_assert_msg(st == 0, "summary failed (%d): %s", st, err_buf);
    /* Keras 3's counts for this model: Conv2D 40, PReLU 4, Dense 1040 + 272 + 68 */
    ck_assert_msg(strstr(out_buf, " Total params: 1,424 (5.56 KB)"), "%s", out_buf);
    ck_assert_msg(strstr(out_buf, " Trainable params: 1,424 (5.56 KB)"), "%s", out_buf);
    ck_assert_ptr_nonnull(strstr(out_buf, "(PReLU)"));
    ck_assert_ptr_nonnull(strstr(out_buf, "(ActivityRegularization)"));
    st = run("train acts.yaml --output run");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    const char *loss = strstr(out_buf, " - loss: ");
    ck_assert_ptr_nonnull(loss);
    double v = NAN;
    ck_assert_int_eq(sscanf(loss, " - loss: %lf", &v), 1);
    ck_assert_msg(isfinite(v) && v > 0, "loss %g", v);
    ck_assert(file_exists("run/last.safetensors"));

    char bad[4096];
    const char *from = strstr(act_model, "    - ReLU: {max_value: 6}");
    snprintf(bad, sizeof bad, "%.*s    - ReLU: {max_value: -6}%s", (int)(from - act_model),
             act_model, from + strlen("    - ReLU: {max_value: 6}"));
    write_file("bad.yaml", bad);
    ck_assert_int_eq(run("summary bad.yaml"), 2);
    ck_assert_msg(strstr(err_buf, "bad.yaml:12:25:") && strstr(err_buf, "max_value"), "%s",
                  err_buf);
}
END_TEST

int main(void) {
    Suite *s = suite_create("layers_act");
    TCase *tc = tcase_create("config");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_registry_act);
    tcase_add_test(tc, test_prelu_params);
    tcase_add_test(tc, test_argument_errors);
    tcase_add_test(tc, test_activation_names_act);
    suite_add_tcase(s, tc);

    TCase *tv = tcase_create("compute");
    tcase_set_timeout(tv, 120);
    int nb = kc_test_backend_count();
    tcase_add_loop_test(tv, test_keras_fixture, 0, nb);
    tcase_add_loop_test(tv, test_gradients_act, 0, nb);
    tcase_add_loop_test(tv, test_noise_statistics, 0, nb);
    tcase_add_test(tv, test_noise_determinism);
    suite_add_tcase(s, tv);

    TCase *cli = tcase_create("cli");
    tcase_set_timeout(cli, 120);
    tcase_add_checked_fixture(cli, cli_setup, cli_teardown);
    tcase_add_test(cli, test_cli_trains_and_summarises);
    suite_add_tcase(s, cli);
    return kc_test_run(s);
}

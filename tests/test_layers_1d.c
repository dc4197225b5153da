/* Conv1D, the 1-D pooling and shape layers, RepeatVector and Permute:
 * Keras 3's outputs, input gradients and weight gradients
 * (tests/fixtures/layers/layers1d.safetensors, made by make_1d.py there),
 * masked GlobalAveragePooling1D included, on every backend;
 * finite-difference gradients; shapes, weight layouts, mask rules and
 * argument errors with file:line:column; and a small sequence model trained
 * and summarised through the kerasc binary. */
#include "tests/layercheck.h"

#include <sys/wait.h>
#include <unistd.h>

#include "core/safetensors.h"
#include "tests/clitest.h"

#define CASES_1D 34 /* cases in the fixture */

/* ---- registry, shapes, weight layouts and mask rules ---- */

static void expect_param(const kc_layer *l, int i, const char *name, kc_shape shape) {
    char a[160], b[160];
    ck_assert_int_gt(l->nparams, i);
    ck_assert_str_eq(l->params[i].name, name);
    ck_assert_msg(kc_shape_equal(&l->params[i].shape, &shape), "%s %s: %s, expected %s", l->name,
                  name, kc_shape_str(&l->params[i].shape, 0, a, sizeof a),
                  kc_shape_str(&shape, 0, b, sizeof b));
}

static kc_mask_rule rule_of(const kc_layer *l) {
    return l->cls->mask_rule ? l->cls->mask_rule(l) : KC_MASK_NONE;
}

START_TEST(test_conv1d_shapes) {
    tl t;
    kc_layer *l =
        must_build(&t, "Conv1D", "{filters: 6, kernel_size: 3, groups: 2}", kc_shape2(10, 4));
    expect_shape(l, kc_shape2(8, 6));
    expect_param(l, 0, "kernel", kc_shape3(3, 2, 6));
    expect_param(l, 1, "bias", kc_shape1(6));
    ck_assert_int_eq(kc_layer_param_count(l, 0), 42);
    ck_assert_int_eq(rule_of(l), KC_MASK_NONE);
    tl_free(&t);
    /* Keras's compute_conv_output_shape: causal and same give ceil(n / s) */
    struct {
        const char *args;
        int64_t steps;
    } cases[] = {
        {"{filters: 2, kernel_size: 3, padding: causal}", 10},
        {"{filters: 2, kernel_size: 3, padding: causal, strides: 3}", 4},
        {"{filters: 2, kernel_size: 5, padding: causal, dilation_rate: 4}", 10},
        {"{filters: 2, kernel_size: 3, padding: same, strides: 4}", 3},
        {"{filters: 2, kernel_size: 3, strides: 4}", 2},
        {"{filters: 2, kernel_size: 3, dilation_rate: 2}", 6},
        {"{filters: 2, kernel_size: 10}", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        l = must_build(&t, "Conv1D", cases[i].args, kc_shape2(10, 3));
        expect_shape(l, kc_shape2(cases[i].steps, 2));
        expect_param(l, 0, "kernel", kc_shape3(l->params[0].shape.d[0], 3, 2));
        tl_free(&t);
    }
    l = must_build(&t, "Convolution1D",
                   "{filters: 2, kernel_size: 2, use_bias: false, kernel_regularizer: {L2: {l2: "
                   "0.5}}, activation: relu}",
                   kc_shape2(4, 3));
    ck_assert_str_eq(l->cls->class_name, "Conv1D");
    ck_assert_int_eq(l->nparams, 1);
    ck_assert(l->params[0].regularizer.l2 == 0.5);
    ck_assert_int_eq(l->activation.act, KC_ACT_RELU);
    /* 2 * steps * filters * k * in */
    ck_assert_int_eq(l->cls->flops(l), 2 * 3 * 2 * 2 * 3);
    tl_free(&t);
}
END_TEST

START_TEST(test_shapes_and_aliases) {
    tl t;
    kc_shape seq = kc_shape2(7, 3);
    struct {
        const char *cls, *args;
        kc_shape out;
        kc_mask_rule rule;
    } cases[] = {
        {"MaxPooling1D", NULL, kc_shape2(3, 3), KC_MASK_NONE},
        {"MaxPool1D", "{pool_size: 3, strides: 1}", kc_shape2(5, 3), KC_MASK_NONE},
        {"MaxPooling1D", "{pool_size: 3, padding: same}", kc_shape2(3, 3), KC_MASK_NONE},
        {"AveragePooling1D", "{pool_size: 2}", kc_shape2(3, 3), KC_MASK_NONE},
        {"AvgPool1D", "{pool_size: 4, strides: 2, padding: same}", kc_shape2(4, 3), KC_MASK_NONE},
        {"GlobalAveragePooling1D", NULL, kc_shape1(3), KC_MASK_CONSUME},
        {"GlobalAvgPool1D", "{keepdims: true}", kc_shape2(1, 3), KC_MASK_CONSUME},
        {"GlobalMaxPooling1D", NULL, kc_shape1(3), KC_MASK_NONE},
        {"GlobalMaxPool1D", "{keepdims: true}", kc_shape2(1, 3), KC_MASK_NONE},
        {"UpSampling1D", NULL, kc_shape2(14, 3), KC_MASK_NONE},
        {"UpSampling1D", "{size: 3}", kc_shape2(21, 3), KC_MASK_NONE},
        {"ZeroPadding1D", NULL, kc_shape2(9, 3), KC_MASK_NONE},
        {"ZeroPadding1D", "{padding: [0, 3]}", kc_shape2(10, 3), KC_MASK_NONE},
        {"Cropping1D", NULL, kc_shape2(5, 3), KC_MASK_NONE},
        {"Cropping1D", "{cropping: [6, 0]}", kc_shape2(1, 3), KC_MASK_NONE},
        {"Permute", "{dims: [2, 1]}", kc_shape2(3, 7), KC_MASK_NONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kc_layer *l = must_build(&t, cases[i].cls, cases[i].args, seq);
        expect_shape(l, cases[i].out);
        ck_assert_int_eq(kc_layer_param_count(l, 0), 0);
        ck_assert_msg(rule_of(l) == cases[i].rule, "%s mask rule %d", cases[i].cls, rule_of(l));
        tl_free(&t);
    }
    ck_assert_str_eq(kc_layer_class_find("MaxPool1D")->class_name, "MaxPooling1D");
    ck_assert_str_eq(kc_layer_class_find("GlobalAvgPool1D")->base_name, "global_average_pooling1d");
    expect_shape(must_build(&t, "RepeatVector", "{n: 5}", kc_shape1(3)), kc_shape2(5, 3));
    tl_free(&t);
    expect_shape(must_build(&t, "Permute", "{dims: [3, 1, 2]}", kc_shape3(2, 3, 4)),
                 kc_shape3(4, 2, 3));
    tl_free(&t);
    expect_shape(must_build(&t, "Permute", "{dims: [1]}", kc_shape1(4)), kc_shape1(4));
    tl_free(&t);
}
END_TEST

START_TEST(test_argument_errors) {
    kc_shape seq = kc_shape2(6, 4), flat = kc_shape1(6), img = kc_shape3(4, 4, 2);
    expect_error("Conv1D", "filters: 6\nkernel_size: 3\ngroups: 4\n", NULL,
                 "layer.yaml:3:9:", "evenly divisible");
    expect_error("Conv1D", "filters: 6\nkernel_size: 3\ngroups: 3\n", &seq,
                 "layer.yaml:1:1:", "input channels must be evenly divisible");
    expect_error("Conv1D", "filters: 2\nkernel_size: 3\nstrides: 2\ndilation_rate: 2\n", NULL,
                 "layer.yaml:4:16:", "strides 2 and dilation_rate 2");
    expect_error("Conv1D", "filters: 2\nkernel_size: 3\npadding: full\n", NULL,
                 "layer.yaml:3:10:", "causal");
    expect_error("Conv1D", "filters: 2\nkernel_size: 3\npadding: null\n", NULL,
                 "layer.yaml:3:10:", "got null");
    expect_error("Conv1D", "filters: 2\nkernel_size: [3, 3]\n", NULL,
                 "layer.yaml:2:14:", "list of 1 integers");
    expect_error("Conv1D", "filters: 2\nkernel_size: 0\n", NULL, "layer.yaml:2:14:", "kernel_size");
    expect_error("Conv1D", "kernel_size: 3\n", NULL, "layer.yaml:1:1:", "filters");
    expect_error("Conv1D", "filters: 2\nkernel_size: 7\n", &seq, "layer.yaml:1:1:", "does not fit");
    expect_error("Conv1D", "filters: 2\nkernel_size: 3\n", &img,
                 "layer.yaml:1:1:", "(steps, channels)");
    expect_error("Conv1D", "filters: 2\nkernel_size: 3\nlora_rank: 2\n", NULL,
                 "layer.yaml:3:12:", "lora_rank");
    /* Conv2D keeps "causal" out, as Keras does */
    expect_error("Conv2D", "filters: 2\nkernel_size: 3\npadding: causal\n", NULL,
                 "layer.yaml:3:10:", "causal");
    expect_error("AveragePooling1D", "padding: same\n", NULL, "layer.yaml:1:1:", "pool_size");
    expect_error("MaxPooling1D", "pool_size: 7\n", &seq, "layer.yaml:1:1:", "does not fit");
    expect_error("MaxPooling1D", "strides: 0\n", NULL, "layer.yaml:1:10:", "strides");
    expect_error("MaxPooling1D", NULL, &img, "", "(steps, channels)");
    expect_error("GlobalAveragePooling1D", "data_format: channels_first\n", NULL,
                 "layer.yaml:1:14:", "channels_first");
    expect_error("GlobalMaxPooling1D", NULL, &flat, "", "(steps, channels)");
    expect_error("UpSampling1D", "size: 0\n", NULL, "layer.yaml:1:7:", "size");
    expect_error("UpSampling1D", "size: [2]\n", NULL, "layer.yaml:1:7:", "size");
    expect_error("ZeroPadding1D", "padding: [1, 2, 3]\n", NULL, "layer.yaml:1:10:", "padding");
    expect_error("ZeroPadding1D", "padding: -1\n", NULL, "layer.yaml:1:10:", "padding");
    expect_error("Cropping1D", "cropping: [3, 3]\n", &seq,
                 "layer.yaml:1:1:", "smaller than the input length");
    expect_error("Cropping1D", "data_format: channels_last\n", NULL,
                 "layer.yaml:1:1:", "data_format");
    expect_error("RepeatVector", NULL, NULL, "", "'n'");
    expect_error("RepeatVector", "n: 0\n", NULL, "layer.yaml:1:4:", "n");
    expect_error("RepeatVector", "n: 2\n", &seq, "layer.yaml:1:1:", "(features,)");
    expect_error("Permute", "dims: [1, 3]\n", NULL,
                 "layer.yaml:1:7:", "consecutive and start from 1");
    expect_error("Permute", "dims: [2, 2]\n", NULL, "layer.yaml:1:7:", "got [2, 2]");
    expect_error("Permute", "dims: [0, 1]\n", NULL, "layer.yaml:1:", "dims");
    expect_error("Permute", "dims: [1, 2, 3, 4, 5, 6, 7, 8]\n", NULL,
                 "layer.yaml:1:7:", "at most 7");
    expect_error("Permute", "dims: [2, 1]\n", &img, "layer.yaml:1:1:", "dims has 2 axes");
    expect_error("Permute", NULL, NULL, "", "dims");
}
END_TEST

/* ---- the Keras-made fixture ---- */

static kc_st_file *fixture(void) {
    return layer_fixture("layers1d");
}

static const kc_st_tensor *tensor_of(const char *cs, const char *what) {
    return layer_fixture_tensor(fixture(), cs, what);
}

static kc_shape sample_shape(const kc_st_tensor *t) {
    kc_shape s = {t->shape.rank - 1, {0}};
    for (int k = 1; k < t->shape.rank; k++)
        s.d[k - 1] = t->shape.d[k];
    return s;
}

static void expect_near(const char *what, const char *dev, const float *got, const float *want,
                        size_t n) {
    expect_near_keras(what, dev, got, want, n, 2e-6f);
}

static void check_param_grads(kc_device *be, kc_layer *l, const char *cs) {
    char key[256];
    for (int p = 0; p < l->nparams; p++) {
        snprintf(key, sizeof key, "dw.%s", l->params[p].name);
        const kc_st_tensor *dw = tensor_of(cs, key);
        size_t np = (size_t)kc_shape_numel(&dw->shape);
        float *g = kc_test_fetch(be, l->params[p].grad, np);
        snprintf(key, sizeof key, "%s d%s", cs, l->params[p].name);
        expect_near(key, be->name, g, dw->data, np);
        free(g);
    }
}

static void run_case(kc_device *be, const char *cs) {
    char key[256];
    snprintf(key, sizeof key, "%s.class", cs);
    const char *cls = kc_st_meta(fixture(), key);
    snprintf(key, sizeof key, "%s.args", cs);
    const char *args = kc_st_meta(fixture(), key);
    ck_assert_msg(cls && args, "fixture lacks the class or args of %s", cs);
    const kc_st_tensor *x = tensor_of(cs, "x"), *c = tensor_of(cs, "c"), *y = tensor_of(cs, "y"),
                       *dx = tensor_of(cs, "dx");
    snprintf(key, sizeof key, "%s.mask", cs);
    const kc_st_tensor *m = kc_st_find(fixture(), key);
    tl t;
    kc_layer *l = must_build(&t, cls, args, sample_shape(x));
    expect_shape(l, sample_shape(y));
    rig r;
    rig_init(&r, be, l, (int)x->shape.d[0]);
    for (int p = 0; p < l->nparams; p++) {
        snprintf(key, sizeof key, "w.%s", l->params[p].name);
        const kc_st_tensor *w = tensor_of(cs, key);
        ck_assert(kc_shape_equal(&w->shape, &l->params[p].shape));
        set_param(&r, p, w->data);
    }
    kc_exec ex = rig_exec(&r, 1);
    kc_buf mask = KC_BUF_NULL;
    if (m) {
        ck_assert_int_eq(rule_of(l), KC_MASK_CONSUME);
        mask = kc_test_from(be, m->data, (size_t)kc_shape_numel(&m->shape));
        ex.mask = mask;
    }
    put(be, r.x, x->data, r.nin);
    layer_forward(&r, &ex);
    float *got = kc_test_fetch(be, r.y, r.nout);
    snprintf(key, sizeof key, "%s output", cs);
    expect_near(key, be->name, got, y->data, r.nout);
    free(got);
    put(be, r.dy, c->data, r.nout);
    layer_backward(&r, &ex, r.dx);
    got = kc_test_fetch(be, r.dx, r.nin);
    snprintf(key, sizeof key, "%s dx", cs);
    expect_near(key, be->name, got, dx->data, r.nin);
    free(got);
    check_param_grads(be, l, cs);
    kc_free(be, &mask);
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
    ck_assert_int_eq(count, CASES_1D);
}
END_TEST

/* ---- masks ---- */

/* GlobalAveragePooling1D: an all-ones mask gives the plain mean; a sample
 * with every step masked gives NaN (0 / 0, as Keras) and no gradient into
 * its steps; the other sample is unaffected. */
START_TEST(test_global_average_mask_edges) {
    KC_LOOP_DEVICE(be);
    tl t;
    kc_layer *l = must_build(&t, "GlobalAveragePooling1D", NULL, kc_shape2(3, 2));
    rig r;
    rig_init(&r, be, l, 2);
    const float x[12] = {1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6};
    const float ones[6] = {1, 1, 1, 1, 1, 1}, part[6] = {0, 0, 0, 1, 0, 1};
    kc_buf mask = kc_test_from(be, ones, 6);
    kc_exec ex = rig_exec(&r, 0);
    ex.mask = mask;
    put(be, r.x, x, 12);
    layer_forward(&r, &ex);
    float y[4];
    get(be, y, r.y, 4);
    const double mean[4] = {3, 4, -3, -4};
    assert_values(y, mean, 4, 1e-6);
    put(be, mask, part, 6);
    layer_forward(&r, &ex);
    get(be, y, r.y, 4);
    ck_assert(isnan(y[0]) && isnan(y[1]));
    ck_assert_float_eq(y[2], -3.0f); /* steps 0 and 2 of the second sample */
    ck_assert_float_eq(y[3], -4.0f);
    const float dy[4] = {1, 1, 2, 4};
    put(be, r.dy, dy, 4);
    layer_backward(&r, &ex, r.dx);
    float dx[12];
    get(be, dx, r.dx, 12);
    const double want[12] = {0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 1, 2};
    assert_values(dx, want, 12, 1e-6);
    kc_free(be, &mask);
    rig_free(&r);
    tl_free(&t);
}
END_TEST

/* ---- finite differences ---- */

START_TEST(test_gradchecks) {
    KC_LOOP_DEVICE(be);
    gradcheck(be, "Conv1D", "{filters: 3, kernel_size: 3, padding: causal, dilation_rate: 2}",
              kc_shape2(6, 2), 2, 0, 1);
    gradcheck(be, "Conv1D", "{filters: 4, kernel_size: 2, strides: 2, padding: same, groups: 2}",
              kc_shape2(7, 4), 2, 0, 1);
    gradcheck(be, "Conv1D", "{filters: 4, kernel_size: 3, groups: 2}", kc_shape2(5, 2), 2, 0, 1);
    gradcheck(be, "MaxPooling1D", "{pool_size: 3, strides: 2, padding: same}", kc_shape2(6, 2), 2,
              1, 0);
    gradcheck(be, "AveragePooling1D", "{pool_size: 3, padding: same}", kc_shape2(7, 2), 2, 0, 0);
    gradcheck(be, "GlobalAveragePooling1D", "{keepdims: true}", kc_shape2(4, 3), 2, 0, 0);
    gradcheck(be, "GlobalMaxPooling1D", NULL, kc_shape2(4, 3), 2, 1, 0);
    gradcheck(be, "UpSampling1D", "{size: 3}", kc_shape2(3, 2), 2, 0, 0);
    gradcheck(be, "ZeroPadding1D", "{padding: [1, 2]}", kc_shape2(3, 2), 2, 0, 0);
    gradcheck(be, "Cropping1D", "{cropping: [2, 1]}", kc_shape2(5, 2), 2, 0, 0);
    gradcheck(be, "RepeatVector", "{n: 4}", kc_shape1(3), 2, 0, 0);
    gradcheck(be, "Permute", "{dims: [3, 1, 2]}", kc_shape3(2, 3, 2), 2, 0, 0);
}
END_TEST

/* ---- end to end through the kerasc binary ---- */

static const char *seq_model =
    "model:\n"
    "  name: seq_net\n"
    "  layers:\n"
    "    - Input: {shape: [16, 4]}\n"
    "    - Conv1D: {filters: 8, kernel_size: 3, padding: causal, activation: relu}\n"
    "    - MaxPooling1D\n"
    "    - Conv1D: {filters: 8, kernel_size: 3, dilation_rate: 2, padding: same, groups: 2,\n"
    "               activation: relu}\n"
    "    - GlobalAveragePooling1D\n"
    "    - Dense: {units: 4, activation: softmax}\n"
    "compile:\n"
    "  optimizer: {Adam: {learning_rate: 0.01}}\n"
    "  loss: sparse_categorical_crossentropy\n"
    "  metrics: [accuracy]\n"
    "data:\n"
    "  train: {x: train_x.npy, y: train_y.npy}\n"
    "  rescale: 1/255\n"
    "  reshape: [16, 4]\n"
    "fit: {epochs: 1, batch_size: 16, seed: 5}\n";

START_TEST(test_seq_model_trains) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    dir = kc_test_tmpdir();
    make_blobs("train_x.npy", "train_y.npy", 24, 11); /* two steps: 16, then 8 */
    write_file("seq.yaml", seq_model);
    ck_assert_msg(run("summary seq.yaml") == 0, "summary failed: %s", err_buf);
    /* Keras 3 (make_1d.py's model.params): 104 + 104 + 36 */
    ck_assert_str_eq(kc_st_meta(fixture(), "model.params"), "244");
    ck_assert_msg(strstr(out_buf, " Total params: 244 (976.00 B)"), "%s", out_buf);
    ck_assert_msg(strstr(out_buf, " Trainable params: 244 (976.00 B)"), "%s", out_buf);
    ck_assert_ptr_nonnull(strstr(out_buf, "(Conv1D)"));
    ck_assert_ptr_nonnull(strstr(out_buf, "(None, 16, 8)"));
    ck_assert_ptr_nonnull(strstr(out_buf, "(None, 8, 8)"));
    int st = run("train seq.yaml --output run --threads 2");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    ck_assert_ptr_nonnull(strstr(out_buf, "2/2"));
    const char *loss = strstr(out_buf, " - loss: ");
    ck_assert_ptr_nonnull(loss);
    double v = NAN;
    ck_assert_int_eq(sscanf(loss, " - loss: %lf", &v), 1);
    ck_assert_msg(isfinite(v) && v > 0, "loss %g", v);
    ck_assert(file_exists("run/last.safetensors"));
    /* a bad argument names its place in the file */
    char bad[4096];
    snprintf(bad, sizeof bad, "%s", seq_model);
    char *p = strstr(bad, "padding: causal");
    memcpy(p, "padding: casual", 15);
    write_file("bad.yaml", bad);
    ck_assert_int_eq(run("summary bad.yaml"), 2);
    ck_assert_msg(strstr(err_buf, "bad.yaml:5:53") && strstr(err_buf, "casual"), "%s", err_buf);
    kc_test_rmdir(dir);
    free(dir);
}
END_TEST

/* The end-to-end case runs first, in a child process of its own (as in
 * test_layers_shape.c: LeakSanitizer and a process that both opened OpenCL
 * and waited on kerasc runs do not mix). */
static int run_cli_case(void) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return EXIT_FAILURE;
    if (pid == 0) {
        Suite *s = suite_create("layers_1d_cli");
        TCase *te = tcase_create("cli");
        tcase_set_timeout(te, 120);
        tcase_add_test(te, test_seq_model_trains);
        suite_add_tcase(s, te);
        exit(kc_test_run(s));
    }
    int st;
    if (waitpid(pid, &st, 0) != pid) return EXIT_FAILURE;
    return WIFEXITED(st) ? WEXITSTATUS(st) : EXIT_FAILURE;
}

int main(void) {
    int cli = run_cli_case();
    Suite *s = suite_create("layers_1d");
    TCase *tc = tcase_create("config");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_conv1d_shapes);
    tcase_add_test(tc, test_shapes_and_aliases);
    tcase_add_test(tc, test_argument_errors);
    suite_add_tcase(s, tc);

    TCase *tv = tcase_create("compute");
    tcase_set_timeout(tv, 120);
    int nb = kc_test_backend_count();
    tcase_add_loop_test(tv, test_keras_fixture, 0, nb);
    tcase_add_loop_test(tv, test_global_average_mask_edges, 0, nb);
    tcase_add_loop_test(tv, test_gradchecks, 0, nb);
    suite_add_tcase(s, tv);
    int rc = kc_test_run(s);
    return rc == EXIT_SUCCESS && cli == EXIT_SUCCESS ? EXIT_SUCCESS : EXIT_FAILURE;
}

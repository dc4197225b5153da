/* Image augmentation layers: arguments, shapes and errors; the transforms for
 * given parameters against Keras's own outputs
 * (tests/fixtures/layers/augment.safetensors, made by make_augment.py there)
 * on every backend; the adjoint by the dot-product identity; the draws by
 * statistics and determinism; the identity at inference; a small model
 * trained and summarized through the kerasc binary. */
#include "tests/layercheck.h"

#include "models/layers/augment.h"
#include "tests/clitest.h"

/* ---- arguments, shapes, errors ---- */

START_TEST(test_config) {
    tl t;
    kc_layer *l = must_build(&t, "RandomFlip", NULL, kc_shape3(8, 6, 3));
    expect_shape(l, kc_shape3(8, 6, 3));
    ck_assert_int_eq(l->nparams, 0);
    ck_assert_str_eq(l->name, "random_flip");
    ck_assert(kc_augment_is(l));
    tl_free(&t);
    l = must_build(&t, "RandomCrop", "height: 3\nwidth: 4\n", kc_shape3(8, 6, 3));
    expect_shape(l, kc_shape3(3, 4, 3));
    tl_free(&t);
    l = must_build(&t, "RandomTranslation",
                   "height_factor: [-0.2, 0.3]\nwidth_factor: 0.1\nfill_mode: wrap\n"
                   "interpolation: nearest\nfill_value: 2\nseed: 4\n",
                   kc_shape3(5, 5, 1));
    expect_shape(l, kc_shape3(5, 5, 1));
    tl_free(&t);
    l = must_build(&t, "RandomRotation", "factor: 0.2\n", kc_shape3(5, 5, 1));
    tl_free(&t);
    l = must_build(&t, "RandomZoom", "height_factor: [-0.3, 0.2]\n", kc_shape3(5, 5, 1));
    tl_free(&t);
    l = must_build(&t, "RandomBrightness", "factor: 0.2\nvalue_range: [0, 1]\n",
                   kc_shape3(5, 5, 3));
    tl_free(&t);
    l = must_build(&t, "RandomContrast", "factor: 0.5\n", kc_shape3(5, 5, 3));
    tl_free(&t);
}
END_TEST

START_TEST(test_errors) {
    kc_shape img = kc_shape3(6, 6, 3), flat = kc_shape1(12);
    expect_error("RandomFlip", "mode: diagonal\n", &img, "layer.yaml:1:7", "mode");
    expect_error("RandomFlip", NULL, &flat, "", "rank 1");
    expect_error("RandomCrop", "height: 3\n", &img, "layer.yaml:1:1", "width");
    expect_error("RandomCrop", "height: 0\nwidth: 2\n", &img, "layer.yaml:1:9", "height");
    expect_error("RandomRotation", "factor: 1.5\n", &img, "layer.yaml:1:9", "factor");
    expect_error("RandomRotation", "factor: [0.1, 0.2, 0.3]\n", &img, "layer.yaml:1:9",
                 "two numbers");
    expect_error("RandomRotation", "factor: 0.1\nfill_mode: mirror\n", &img, "layer.yaml:2:12",
                 "fill_mode");
    expect_error("RandomTranslation", "height_factor: 0.1\n", &img, "layer.yaml:1:1",
                 "width_factor");
    expect_error("RandomZoom", "height_factor: -1\n", &img, "layer.yaml:1:16", "height_factor");
    expect_error("RandomZoom", "height_factor: 0.1\ninterpolation: cubic\n", &img,
                 "layer.yaml:2:16", "interpolation");
    expect_error("RandomContrast", "factor: -0.5\n", &img, "layer.yaml:1:9", "factor");
    expect_error("RandomBrightness", "factor: 0.5\nvalue_range: 255\n", &img, "layer.yaml:2:14",
                 "value_range");
    expect_error("RandomFlip", "data_format: channels_first\n", &img, "layer.yaml:1:14",
                 "channels_first");
}
END_TEST

/* ---- the transforms for given parameters, against Keras ---- */

typedef struct aug_case {
    const char *name, *cls, *yaml;
    int training;
    float atol;
} aug_case;

static const aug_case cases[] = {
    {"flip_h", "RandomFlip", "mode: horizontal\n", 1, 0},
    {"flip_v", "RandomFlip", "mode: vertical\n", 1, 0},
    {"flip_hv", "RandomFlip", NULL, 1, 0},
    {"crop_train", "RandomCrop", "height: 3\nwidth: 4\n", 1, 0},
    {"crop_infer", "RandomCrop", "height: 3\nwidth: 4\n", 0, 1e-3f},
    {"tr_reflect", "RandomTranslation", "{height_factor: 0.5, width_factor: 0.5}", 1, 1e-3f},
    {"tr_wrap", "RandomTranslation",
     "{height_factor: 0.5, width_factor: 0.5, fill_mode: wrap, fill_value: 7.5}", 1, 1e-3f},
    {"tr_constant", "RandomTranslation",
     "{height_factor: 0.5, width_factor: 0.5, fill_mode: constant, fill_value: 7.5}", 1, 1e-3f},
    {"tr_nearest", "RandomTranslation",
     "{height_factor: 0.5, width_factor: 0.5, fill_mode: nearest, fill_value: 7.5}", 1, 1e-3f},
    {"tr_far_wrap", "RandomTranslation", "{height_factor: 0.5, width_factor: 0.5, fill_mode: wrap}",
     1, 1e-3f},
    {"tr_far_reflect", "RandomTranslation", "{height_factor: 0.5, width_factor: 0.5}", 1, 1e-3f},
    {"tr_nearest_interp", "RandomTranslation",
     "{height_factor: 0.5, width_factor: 0.5, interpolation: nearest}", 1, 0},
    {"rot_reflect", "RandomRotation", "factor: 0.5\n", 1, 2e-3f},
    {"rot_constant_nn", "RandomRotation",
     "{factor: 0.5, fill_mode: constant, interpolation: nearest}", 1, 0},
    {"zoom_reflect", "RandomZoom", "{height_factor: 0.5, width_factor: 0.5}", 1, 2e-3f},
    {"zoom_constant", "RandomZoom",
     "{height_factor: 0.5, width_factor: 0.5, fill_mode: constant, fill_value: -3}", 1, 2e-3f},
    {"bright", "RandomBrightness", "factor: 0.5\n", 1, 1e-4f},
    {"contrast", "RandomContrast", "factor: 0.5\n", 1, 2e-3f},
};

static void run_case(kc_device *be, kc_st_file *f, const aug_case *c) {
    const kc_st_tensor *tx = layer_fixture_tensor(f, c->name, "x");
    const kc_st_tensor *tp = layer_fixture_tensor(f, c->name, "p");
    const kc_st_tensor *ty = layer_fixture_tensor(f, c->name, "y");
    kc_shape in = kc_shape3((int)tx->shape.d[1], (int)tx->shape.d[2], (int)tx->shape.d[3]);
    int batch = (int)tx->shape.d[0];
    tl t;
    kc_layer *l = must_build(&t, c->cls, c->yaml, in);
    rig r;
    rig_init(&r, be, l, batch);
    ck_assert_uint_eq(r.nout, (size_t)kc_shape_numel(&ty->shape));
    const float *pf = (const float *)tp->data;
    double p[16];
    for (int i = 0; i < batch * KC_AUG_NPARAM; i++)
        p[i] = pf[i];
    put(be, r.x, (const float *)tx->data, r.nin);
    kc_exec ex = rig_exec(&r, c->training);
    int rc = kc_augment_apply(l, &ex, p, r.x, r.y);
    ck_assert_msg(rc == KC_OK, "%s on %s: %s", c->name, be->name, be->err.msg);
    float *y = malloc(r.nout * sizeof *y);
    get(be, y, r.y, r.nout);
    expect_near_keras(c->name, be->name, y, (const float *)ty->data, r.nout, c->atol);
    free(y);
    rig_free(&r);
    tl_free(&t);
}

START_TEST(test_keras_fixture) {
    KC_LOOP_DEVICE(be);
    kc_st_file *f = layer_fixture("augment");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(be, f, &cases[i]);
}
END_TEST

/* ---- the adjoint: <A x, c> = <x, A^T c> with the training draws ---- */

static const char *const adjoint_layers[][2] = {
    {"RandomFlip", NULL},
    {"RandomCrop", "height: 4\nwidth: 3\n"},
    {"RandomTranslation", "{height_factor: 0.3, width_factor: 0.4, fill_mode: constant}"},
    {"RandomTranslation", "{height_factor: 0.3, width_factor: 0.4, fill_mode: wrap}"},
    {"RandomRotation", "factor: 0.3\n"},
    {"RandomRotation", "{factor: 0.3, fill_mode: nearest, interpolation: nearest}"},
    {"RandomZoom", "{height_factor: [-0.4, 0.4], width_factor: 0.3, fill_mode: reflect}"},
};

START_TEST(test_adjoint) {
    KC_LOOP_DEVICE(be);
    for (size_t k = 0; k < sizeof adjoint_layers / sizeof adjoint_layers[0]; k++) {
        tl t;
        kc_layer *l =
            must_build(&t, adjoint_layers[k][0], adjoint_layers[k][1], kc_shape3(6, 7, 2));
        rig r;
        rig_init(&r, be, l, 3);
        float *x = malloc(r.nin * sizeof *x), *c = malloc(r.nout * sizeof *c);
        float *y = malloc(r.nout * sizeof *y), *dx = malloc(r.nin * sizeof *dx);
        fill_random(x, r.nin, 11 + k, -1, 1);
        fill_random(c, r.nout, 23 + k, -1, 1);
        kc_exec ex = rig_exec(&r, 1);
        put(be, r.x, x, r.nin);
        layer_forward(&r, &ex);
        get(be, y, r.y, r.nout);
        put(be, r.dy, c, r.nout);
        layer_backward(&r, &ex, r.dx);
        get(be, dx, r.dx, r.nin);
        double lhs = 0, rhs = 0, mag = 0;
        for (size_t i = 0; i < r.nout; i++)
            lhs += (double)y[i] * c[i], mag += fabs((double)y[i] * c[i]);
        for (size_t i = 0; i < r.nin; i++)
            rhs += (double)x[i] * dx[i];
        ck_assert_msg(fabs(lhs - rhs) <= 1e-5 * mag + 1e-6, "%s on %s: <Ax,c> %.9g <x,A'c> %.9g",
                      adjoint_layers[k][0], be->name, lhs, rhs);
        free(x), free(c), free(y), free(dx);
        rig_free(&r);
        tl_free(&t);
    }
}
END_TEST

/* ---- the draws: rates, ranges, determinism ---- */

static kc_exec exec_at(uint64_t seed, uint64_t step) {
    kc_exec ex = {0};
    ex.training = 1;
    ex.seed = seed;
    ex.step = step;
    return ex;
}

START_TEST(test_draws) {
    tl t;
    kc_layer *l = must_build(&t, "RandomFlip", NULL, kc_shape3(4, 4, 1));
    int flips = 0, n = 4000;
    kc_exec ex = exec_at(5, 3);
    for (int i = 0; i < n; i++) {
        double p[2];
        kc_augment_draw(l, &ex, i, p);
        ck_assert(p[0] == 0.0 || p[0] == 1.0);
        flips += p[0] == 1.0;
    }
    ck_assert_msg(abs(flips - n / 2) < n / 20, "flip rate %d / %d", flips, n);
    tl_free(&t);

    l = must_build(&t, "RandomRotation", "factor: [-0.1, 0.25]\n", kc_shape3(4, 4, 1));
    double lo = 1e9, hi = -1e9;
    for (int i = 0; i < n; i++) {
        double p[2], q[2], r2[2];
        kc_augment_draw(l, &ex, i, p);
        lo = fmin(lo, p[0]), hi = fmax(hi, p[0]);
        kc_augment_draw(l, &ex, i, q);
        ck_assert(p[0] == q[0]); /* the same key gives the same draw */
        kc_exec other = exec_at(5, 4);
        kc_augment_draw(l, &other, i, r2);
        if (i < 10) ck_assert(p[0] != r2[0]); /* the next step draws afresh */
    }
    ck_assert_msg(lo >= -36.0 && lo < -34.0 && hi <= 90.0 && hi > 88.0, "angles [%g, %g]", lo, hi);
    tl_free(&t);

    l = must_build(&t, "RandomZoom", "height_factor: [-0.2, 0.3]\nseed: 9\n", kc_shape3(4, 4, 1));
    for (int i = 0; i < 200; i++) {
        double p[2], q[2];
        kc_augment_draw(l, &ex, i, p);
        ck_assert(p[0] >= 0.8 && p[0] <= 1.3 && p[1] == p[0]); /* width follows height */
        kc_exec other = exec_at(77, 3);                        /* seed: overrides the run's seed */
        kc_augment_draw(l, &other, i, q);
        ck_assert(p[0] == q[0]);
    }
    tl_free(&t);

    l = must_build(&t, "RandomContrast", "factor: 0.4\n", kc_shape3(4, 4, 1));
    for (int i = 0; i < 200; i++) {
        double p[2];
        kc_augment_draw(l, &ex, i, p);
        ck_assert(p[0] >= 1.0 && p[0] <= 1.4); /* Keras 3: [1 - max(-f, 0), 1 + f] */
    }
    tl_free(&t);
}
END_TEST

/* The same outputs on every backend and thread count; identity at inference. */
START_TEST(test_devices_and_inference) {
    KC_LOOP_DEVICE(be);
    static const char *const layers[][2] = {
        {"RandomRotation", "factor: 0.3\n"},
        {"RandomFlip", NULL},
        {"RandomTranslation", "{height_factor: 0.2, width_factor: 0.2}"},
        {"RandomBrightness", "factor: 0.3\n"},
    };
    kc_device *ref = kc_test_reference();
    for (size_t k = 0; k < sizeof layers / sizeof layers[0]; k++) {
        tl t;
        kc_layer *l = must_build(&t, layers[k][0], layers[k][1], kc_shape3(5, 6, 3));
        rig r, rr;
        rig_init(&r, be, l, 4);
        float *x = malloc(r.nin * sizeof *x);
        fill_random(x, r.nin, 3 + k, 0, 255);
        float *y = run_forward(&r, x, 1);
        rig_init(&rr, ref, l, 4);
        float *want = run_forward(&rr, x, 1);
        int moved = 0;
        for (size_t i = 0; i < r.nout; i++) {
            ck_assert_msg(fabsf(y[i] - want[i]) <= 1e-5f * fabsf(want[i]) + 1e-4f,
                          "%s on %s [%zu]: %g, reference %g", layers[k][0], be->name, i, y[i],
                          want[i]);
            moved += y[i] != x[i];
        }
        ck_assert_msg(moved > 0, "%s changed nothing while training", layers[k][0]);
        free(y);
        y = run_forward(&r, x, 0);
        for (size_t i = 0; i < r.nout; i++)
            ck_assert_msg(y[i] == x[i], "%s is not the identity at inference", layers[k][0]);
        free(y);
        free(want);
        free(x);
        rig_free(&rr);
        rig_free(&r);
        tl_free(&t);
    }
}
END_TEST

/* ---- end to end ---- */

static const char *cli_model = "model:\n"
                               "  name: augmented\n"
                               "  layers:\n"
                               "    - Input: {shape: [8, 8, 1]}\n"
                               "    - RandomFlip: {mode: horizontal}\n"
                               "    - RandomTranslation: {height_factor: 0.1, width_factor: 0.1}\n"
                               "    - RandomRotation: {factor: 0.02, fill_mode: nearest}\n"
                               "    - RandomZoom: {height_factor: 0.1}\n"
                               "    - RandomCrop: {height: 7, width: 7}\n"
                               "    - Conv2D: {filters: 4, kernel_size: 3, activation: relu}\n"
                               "    - Flatten\n"
                               "    - Dense: {units: 4, activation: softmax}\n"
                               "compile:\n"
                               "  optimizer: adam\n"
                               "  loss: sparse_categorical_crossentropy\n"
                               "  metrics: [accuracy]\n"
                               "data:\n"
                               "  train: {x: train_x.npy, y: train_y.npy}\n"
                               "  test: {x: train_x.npy, y: train_y.npy}\n"
                               "  rescale: 1/255\n"
                               "  reshape: [8, 8, 1]\n"
                               "fit: {epochs: 1, batch_size: 16, steps_per_epoch: 2, seed: 5}\n";

static void cli_setup(void) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    dir = kc_test_tmpdir();
    make_blobs("train_x.npy", "train_y.npy", 64, 11);
}

static void cli_teardown(void) {
    kc_test_rmdir(dir);
    free(dir);
}

START_TEST(test_cli_model) {
    write_file("aug.yaml", cli_model);
    int st = run("summary aug.yaml");
    ck_assert_msg(st == 0, "summary failed: %s", err_buf);
    /* Keras: conv2d 40, dense 4 * 25 * 4 + 4 = 404 */
    ck_assert_msg(strstr(out_buf, "Total params: 444 "), "%s", out_buf);
    ck_assert_msg(strstr(out_buf, "(RandomRotation)"), "%s", out_buf);
    st = run("train aug.yaml --output run --threads 2");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    st = run("evaluate aug.yaml --weights run/last.safetensors");
    ck_assert_msg(st == 0, "evaluate failed (%d): %s", st, err_buf);

    write_file("bad.yaml", "model:\n  layers:\n    - Input: {shape: [8, 8, 1]}\n"
                           "    - RandomRotation: {factor: 2}\n");
    st = run("summary bad.yaml");
    ck_assert_int_eq(st, 2);
    ck_assert_msg(strstr(err_buf, "bad.yaml:4:") && strstr(err_buf, "factor"), "%s", err_buf);
}
END_TEST

int main(void) {
    Suite *s = suite_create("layers_augment");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_config);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_draws);
    suite_add_tcase(s, tc);

    TCase *tv = tcase_create("compute");
    tcase_set_timeout(tv, 120);
    int nb = kc_test_backend_count();
    tcase_add_loop_test(tv, test_keras_fixture, 0, nb);
    tcase_add_loop_test(tv, test_adjoint, 0, nb);
    tcase_add_loop_test(tv, test_devices_and_inference, 0, nb);
    suite_add_tcase(s, tv);

    TCase *tcl = tcase_create("cli");
    tcase_set_timeout(tcl, 120);
    tcase_add_checked_fixture(tcl, cli_setup, cli_teardown);
    tcase_add_test(tcl, test_cli_model);
    suite_add_tcase(s, tcl);
    return kc_test_run(s);
}

/* Normalization layers: Keras's weights, parameter counts and errors;
 * forward, input gradient, weight gradients and moving statistics against
 * Keras's own numbers (tests/fixtures/layers/normalization.safetensors, made
 * by make_normalization.py there) on every backend; finite-difference
 * gradient checks; inference statistics and frozen layers; a small model
 * trained, summarized, evaluated and resumed through the kerasc binary. */
#include "tests/layercheck.h"

#include "core/safetensors.h"
#include "tests/clitest.h"

#define KC_NORM_FIXTURE "tests/fixtures/layers/normalization.safetensors"

/* ---- weights and parameter counts ---- */

static void expect_param(const kc_layer *l, int i, const char *name, kc_shape shape,
                         int trainable) {
    ck_assert_int_gt(l->nparams, i);
    ck_assert_str_eq(l->params[i].name, name);
    ck_assert_msg(kc_shape_equal(&l->params[i].shape, &shape), "%s shape", name);
    ck_assert_int_eq(l->params[i].trainable, trainable);
}

START_TEST(test_weights) {
    tl t;
    kc_layer *l = must_build(&t, "BatchNormalization", NULL, kc_shape3(8, 8, 32));
    expect_shape(l, kc_shape3(8, 8, 32));
    ck_assert_int_eq(l->nparams, 4);
    expect_param(l, 0, "gamma", kc_shape1(32), 1);
    expect_param(l, 1, "beta", kc_shape1(32), 1);
    expect_param(l, 2, "moving_mean", kc_shape1(32), 0);
    expect_param(l, 3, "moving_variance", kc_shape1(32), 0);
    ck_assert_int_eq(kc_layer_param_count(l, 0), 128);
    ck_assert_int_eq(kc_layer_param_count(l, 1), 64);
    ck_assert_int_eq(l->params[0].init.kind, KC_INIT_ONES);
    ck_assert_int_eq(l->params[1].init.kind, KC_INIT_ZEROS);
    ck_assert_int_eq(l->params[2].init.kind, KC_INIT_ZEROS);
    ck_assert_int_eq(l->params[3].init.kind, KC_INIT_ONES);
    ck_assert_str_eq(l->name, "batch_normalization");
    tl_free(&t);

    l = must_build(&t, "BatchNormalization", "axis: 1\nscale: false\n", kc_shape2(5, 7));
    ck_assert_int_eq(l->nparams, 3);
    expect_param(l, 0, "beta", kc_shape1(5), 1);
    expect_param(l, 1, "moving_mean", kc_shape1(5), 0);
    tl_free(&t);

    l = must_build(&t, "LayerNormalization", "axis: [-1, 1]\n", kc_shape3(3, 4, 5));
    ck_assert_int_eq(l->nparams, 2);
    expect_param(l, 0, "gamma", kc_shape2(3, 5), 1);
    expect_param(l, 1, "beta", kc_shape2(3, 5), 1);
    tl_free(&t);

    l = must_build(&t, "LayerNormalization", "rms_scaling: true\n", kc_shape1(6));
    ck_assert_int_eq(l->nparams, 1);
    expect_param(l, 0, "gamma", kc_shape1(6), 1);
    tl_free(&t);

    l = must_build(&t, "GroupNormalization", "groups: 4\n", kc_shape3(5, 5, 8));
    ck_assert_int_eq(kc_layer_param_count(l, 0), 16);
    expect_param(l, 0, "gamma", kc_shape1(8), 1);
    expect_param(l, 1, "beta", kc_shape1(8), 1);
    tl_free(&t);

    l = must_build(&t, "GroupNormalization", "groups: -1\ncenter: false\n", kc_shape2(4, 6));
    ck_assert_int_eq(kc_layer_param_count(l, 0), 6);
    tl_free(&t);

    l = must_build(&t, "UnitNormalization", "axis: [1, 2]\n", kc_shape2(4, 6));
    ck_assert_int_eq(l->nparams, 0);
    expect_shape(l, kc_shape2(4, 6));
    tl_free(&t);
}
END_TEST

START_TEST(test_errors) {
    kc_shape c8 = kc_shape3(4, 4, 8), v6 = kc_shape1(6);
    expect_error("GroupNormalization", "groups: 3\n", &c8, "layer.yaml:1:1",
                 "Number of groups (3) must be a multiple of the number of channels (8).");
    expect_error("GroupNormalization", "axis: -1\n", &c8, "layer.yaml:1:1",
                 "Number of groups (32) cannot be more than the number of channels (8).");
    expect_error("GroupNormalization", "groups: 0\n", &c8, "layer.yaml:1:9",
                 "expected a positive integer");
    expect_error("BatchNormalization", "axis: 2\n", &v6, "layer.yaml:1:7", "out of range");
    expect_error("BatchNormalization", "axis: -2\n", &v6, "layer.yaml:1:7", "batch axis");
    expect_error("BatchNormalization", "renorm: true\n", &v6, "layer.yaml:1:9", "renorm");
    expect_error("BatchNormalization", "momentum: fast\n", &v6, "layer.yaml:1:11", "momentum");
    expect_error("BatchNormalization", "beta_initialiser: ones\n", &v6, "layer.yaml:1:1",
                 "beta_initializer");
    expect_error("LayerNormalization", "axis: [1, 1]\n", &c8, "layer.yaml:1:7", "twice");
    expect_error("LayerNormalization", "axis: [1, 4]\n", &c8, "layer.yaml:1:7", "out of range");
    expect_error("LayerNormalization", "axis: []\n", &c8, "layer.yaml:1:7", "list of 1 to");
    expect_error("UnitNormalization", "axis: [0]\n", &v6, "layer.yaml:1:7", "batch axis");
    expect_error("GroupNormalization", "axis: [1]\n", &c8, "layer.yaml:1:7", "axis");
}
END_TEST

/* ---- Keras's numbers ---- */

typedef struct norm_case {
    const char *name, *cls, *yaml;
} norm_case;

static const norm_case cases[] = {
    {"bn", "BatchNormalization", NULL},
    {"bn_axis1", "BatchNormalization", "axis: 1\nmomentum: 0.9\n"},
    {"bn_nocenter", "BatchNormalization", "center: false\nepsilon: 0.01\n"},
    {"ln", "LayerNormalization", NULL},
    {"ln_axes", "LayerNormalization", "axis: [1, 3]\n"},
    {"ln_rms", "LayerNormalization", "rms_scaling: true\n"},
    {"gn", "GroupNormalization", "groups: 2\n"},
    {"gn_axis1", "GroupNormalization", "groups: 3\naxis: 1\nscale: false\n"},
    {"un", "UnitNormalization", NULL},
    {"un_axes", "UnitNormalization", "axis: [1, 2]\n"},
};

static const kc_st_tensor *fx(const kc_st_file *f, const char *cs, const char *what, int need) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", cs, what);
    const kc_st_tensor *t = kc_st_find(f, name);
    ck_assert_msg(t || !need, "fixture lacks %s", name);
    ck_assert(!t || t->dtype == KC_ST_F32);
    return t;
}

static void expect_close(const char *what, const float *got, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabsf(got[i] - want[i]) <= 1e-5f * fabsf(want[i]) + 1e-5f,
                      "%s[%zu]: %.8g, Keras %.8g", what, i, got[i], want[i]);
}

static void expect_dev(const rig *r, const char *cs, const char *what, kc_buf b,
                       const kc_st_tensor *t) {
    size_t n = (size_t)kc_shape_numel(&t->shape);
    float *got = malloc(n * sizeof(float));
    get(r->d, got, b, n);
    char msg[256];
    snprintf(msg, sizeof msg, "%s on %s: %s", cs, r->d->name, what);
    expect_close(msg, got, t->data, n);
    free(got);
}

/* forward and input gradient in one mode, checked against Keras */
static void run_mode(rig *r, const kc_st_file *f, const char *cs, int training) {
    kc_exec ex = rig_exec(r, training);
    layer_forward(r, &ex);
    expect_dev(r, cs, training ? "y_train" : "y_infer", r->y,
               fx(f, cs, training ? "y_train" : "y_infer", 1));
    put(r->d, r->dy, fx(f, cs, "c", 1)->data, r->nout);
    layer_backward(r, &ex, r->dx);
    expect_dev(r, cs, training ? "dx_train" : "dx_infer", r->dx,
               fx(f, cs, training ? "dx_train" : "dx_infer", 1));
}

static void run_case(kc_device *be, const kc_st_file *f, const norm_case *c) {
    const kc_st_tensor *xt = fx(f, c->name, "x", 1);
    kc_shape in = {xt->shape.rank - 1, {0}};
    for (int k = 1; k < xt->shape.rank; k++)
        in.d[k - 1] = xt->shape.d[k];
    tl t;
    kc_layer *l = must_build(&t, c->cls, c->yaml, in);
    rig r;
    rig_init(&r, be, l, (int)xt->shape.d[0]);
    for (int i = 0; i < l->nparams; i++) {
        const kc_st_tensor *p = fx(f, c->name, l->params[i].name, 1);
        ck_assert_int_eq(kc_shape_numel(&p->shape), kc_shape_numel(&l->params[i].shape));
        set_param(&r, i, p->data);
    }
    put(be, r.x, xt->data, r.nin);
    run_mode(&r, f, c->name, 0);
    run_mode(&r, f, c->name, 1);
    for (int i = 0; i < l->nparams; i++) {
        char what[64];
        const kc_param *p = &l->params[i];
        snprintf(what, sizeof what, p->trainable ? "d%s" : "%s_after", p->name);
        expect_dev(&r, c->name, what, p->trainable ? p->grad : p->value, fx(f, c->name, what, 1));
    }
    rig_free(&r);
    tl_free(&t);
}

START_TEST(test_keras_fixture) {
    KC_LOOP_DEVICE(be);
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(KC_NORM_FIXTURE, &f, &e) == 0, "%s", e.msg);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(be, f, &cases[i]);
    kc_st_close(f);
}
END_TEST

/* ---- finite differences ---- */

START_TEST(test_gradchecks) {
    KC_LOOP_DEVICE(be);
    gradcheck(be, "BatchNormalization", NULL, kc_shape3(2, 3, 4), 3, 0, 1);
    gradcheck(be, "BatchNormalization", "axis: 2\n", kc_shape3(2, 3, 4), 2, 0, 1);
    gradcheck(be, "LayerNormalization", NULL, kc_shape2(3, 5), 2, 0, 0);
    gradcheck(be, "LayerNormalization", "axis: [1, 3]\n", kc_shape3(3, 2, 4), 2, 0, 1);
    gradcheck(be, "LayerNormalization", "rms_scaling: true\n", kc_shape1(6), 3, 0, 1);
    gradcheck(be, "GroupNormalization", "groups: 2\n", kc_shape3(2, 2, 4), 2, 0, 1);
    gradcheck(be, "GroupNormalization", "groups: 2\naxis: 1\ncenter: false\n", kc_shape2(4, 3), 2,
              0, 0);
    gradcheck(be, "UnitNormalization", NULL, kc_shape1(5), 3, 0, 1);
    gradcheck(be, "UnitNormalization", "axis: [1, 2]\n", kc_shape2(2, 3), 2, 0, 0);
}
END_TEST

/* ---- moving statistics ---- */

/* Inference normalizes with the moving statistics and leaves them alone;
 * a frozen layer does the same while training. */
START_TEST(test_moving_statistics) {
    KC_LOOP_DEVICE(be);
    for (int frozen = 0; frozen < 2; frozen++) {
        tl t;
        kc_layer *l = must_build(&t, "BatchNormalization", "momentum: 0.5\n", kc_shape1(2));
        l->trainable = !frozen;
        rig r;
        rig_init(&r, be, l, 2);
        const float gamma[2] = {2, 1}, beta[2] = {1, 0}, mean[2] = {1, -1}, var[2] = {4, 0.25f};
        set_param(&r, 0, gamma);
        set_param(&r, 1, beta);
        set_param(&r, 2, mean);
        set_param(&r, 3, var);
        const float x[4] = {3, 0, 5, -2};
        float *y = run_forward(&r, x, frozen);
        double eps = 1e-3;
        double want[4] = {2 * 2 / sqrt(4 + eps) + 1, 1 / sqrt(0.25 + eps),
                          2 * 4 / sqrt(4 + eps) + 1, -1 / sqrt(0.25 + eps)};
        assert_values(y, want, 4, 1e-5);
        free(y);
        float mm[2], mv[2];
        get(be, mm, l->params[2].value, 2);
        get(be, mv, l->params[3].value, 2);
        ck_assert_mem_eq(mm, mean, sizeof mm);
        ck_assert_mem_eq(mv, var, sizeof mv);
        if (!frozen) { /* training: batch mean (4, -1), biased variance (1, 1) */
            y = run_forward(&r, x, 1);
            double want_t[4] = {-2 / sqrt(1 + eps) + 1, 1 / sqrt(1 + eps), 2 / sqrt(1 + eps) + 1,
                                -1 / sqrt(1 + eps)};
            assert_values(y, want_t, 4, 1e-5);
            free(y);
            get(be, mm, l->params[2].value, 2);
            get(be, mv, l->params[3].value, 2);
            double wm[2] = {2.5, -1}, wv[2] = {2.5, 0.625};
            assert_values(mm, wm, 2, 1e-6);
            assert_values(mv, wv, 2, 1e-6);
        }
        rig_free(&r);
        tl_free(&t);
    }
}
END_TEST

/* ---- through the kerasc binary ---- */

static const char *cli_model =
    "model:\n"
    "  name: norm_blobs\n"
    "  layers:\n"
    "    - Input: {shape: [8, 8, 1], name: image}\n"
    "    - Conv2D: {filters: 4, kernel_size: 3, padding: same, name: conv}\n"
    "    - BatchNormalization: {name: bn}\n"
    "    - Activation: {activation: relu, name: relu}\n"
    "    - Add: {inputs: [conv, relu], name: skip}\n"
    "    - LayerNormalization: {name: ln}\n"
    "    - GroupNormalization: {groups: 2, name: gn}\n"
    "    - Flatten\n"
    "    - UnitNormalization\n"
    "    - Dense: {units: 4, activation: softmax}\n"
    "compile:\n"
    "  optimizer: {Adam: {learning_rate: 0.01}}\n"
    "  loss: sparse_categorical_crossentropy\n"
    "  metrics: [accuracy]\n"
    "data:\n"
    "  train: {x: train_x.npy, y: train_y.npy}\n"
    "  test: {x: test_x.npy, y: test_y.npy}\n"
    "  reshape: [8, 8, 1]\n"
    "  rescale: 1/255\n"
    "fit: {epochs: 3, batch_size: 16, seed: 5}\n";

static void setup(void) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    dir = kc_test_tmpdir();
    make_blobs("train_x.npy", "train_y.npy", 256, 11);
    make_blobs("test_x.npy", "test_y.npy", 64, 12);
}

static void teardown(void) {
    kc_test_rmdir(dir);
    free(dir);
}

/* The checkpoint's moving statistics of layer bn: not their initial values. */
static void expect_moved(const char *ckpt) {
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path_in(ckpt), &f, &e) == 0, "%s", e.msg);
    int seen = 0;
    for (int i = 0; i < kc_st_count(f); i++) {
        const kc_st_tensor *t = kc_st_at(f, i);
        int mean = strstr(t->name, "bn") && strstr(t->name, "moving_mean") != NULL;
        int var = strstr(t->name, "bn") && strstr(t->name, "moving_variance") != NULL;
        if (!mean && !var) continue;
        ck_assert_int_eq(kc_shape_numel(&t->shape), 4);
        const float *v = t->data;
        for (int k = 0; k < 4; k++)
            ck_assert_msg(v[k] != (mean ? 0.0f : 1.0f), "%s[%d] = %g", t->name, k, v[k]);
        seen++;
    }
    ck_assert_int_eq(seen, 2);
    kc_st_close(f);
}

START_TEST(test_cli_model) {
    write_file("norm.yaml", cli_model);
    int st = run("summary norm.yaml");
    ck_assert_msg(st == 0, "summary failed: %s", err_buf);
    /* conv 40, bn 16 (8 moving), ln 8, gn 8, dense 1028 */
    ck_assert_msg(strstr(out_buf, "Total params: 1,100") || strstr(out_buf, "Total params: 1100"),
                  "%s", out_buf);
    ck_assert_msg(strstr(out_buf, "Trainable params: 1,092") ||
                      strstr(out_buf, "Trainable params: 1092"),
                  "%s", out_buf);
    ck_assert_msg(strstr(out_buf, "Non-trainable params: 8 "), "%s", out_buf);

    /* a frozen layer's weights all count as non-trainable, as in Keras */
    char frozen[4096];
    const char *at = strstr(cli_model, "{name: bn}");
    ck_assert_ptr_nonnull(at);
    snprintf(frozen, sizeof frozen, "%.*s{name: bn, trainable: false}%s", (int)(at - cli_model),
             cli_model, at + strlen("{name: bn}"));
    write_file("frozen.yaml", frozen);
    st = run("summary frozen.yaml");
    ck_assert_msg(st == 0, "summary failed: %s", err_buf);
    ck_assert_msg(strstr(out_buf, "Trainable params: 1,084"), "%s", out_buf);
    ck_assert_msg(strstr(out_buf, "Non-trainable params: 16 "), "%s", out_buf);

    st = run("train norm.yaml --output run --threads 2");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    char *tl = strstr(out_buf, "Test - loss: ");
    ck_assert_ptr_nonnull(tl);
    double test_loss, test_acc;
    ck_assert_int_eq(sscanf(tl, "Test - loss: %lf - accuracy: %lf", &test_loss, &test_acc), 2);
    ck_assert_msg(test_acc >= 0.9, "test accuracy %.4f", test_acc);
    expect_moved("run/last.safetensors");

    /* evaluate restores the moving statistics: the same numbers */
    st = run("evaluate run/last.safetensors --json");
    ck_assert_msg(st == 0, "evaluate failed: %s", err_buf);
    double el, ea;
    ck_assert_int_eq(sscanf(out_buf, "{\"loss\": %lf, \"accuracy\": %lf", &el, &ea), 2);
    ck_assert_close(el, test_loss, 5e-5, 0);
    ck_assert_close(ea, test_acc, 1e-9, 0);

    /* one epoch, then resumed to three: the same model, moving statistics included */
    char one[4096];
    at = strstr(cli_model, "epochs: 3");
    ck_assert_ptr_nonnull(at);
    snprintf(one, sizeof one, "%.*sepochs: 1%s", (int)(at - cli_model), cli_model,
             at + strlen("epochs: 3"));
    write_file("norm1.yaml", one);
    st = run("train norm1.yaml --output half --threads 2");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    st = run("train norm.yaml --resume half/last.safetensors --output half --threads 2");
    ck_assert_msg(st == 0, "resume failed (%d): %s", st, err_buf);
    tl = strstr(out_buf, "Test - loss: ");
    ck_assert_ptr_nonnull(tl);
    double rl, ra;
    ck_assert_int_eq(sscanf(tl, "Test - loss: %lf - accuracy: %lf", &rl, &ra), 2);
    ck_assert_close(rl, test_loss, 1e-6, 0);
    ck_assert_close(ra, test_acc, 1e-9, 0);

    /* an argument error names its place */
    write_file("bad.yaml", "model:\n  layers:\n    - Input: {shape: [8, 8, 4]}\n"
                           "    - GroupNormalization: {groups: 3}\n");
    st = run("summary bad.yaml");
    ck_assert_int_eq(st, 2);
    ck_assert_msg(strstr(err_buf, "bad.yaml:4:") && strstr(err_buf, "must be a multiple"), "%s",
                  err_buf);
}
END_TEST

int main(void) {
    Suite *s = suite_create("layers_norm");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_weights);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);

    TCase *tv = tcase_create("compute");
    tcase_set_timeout(tv, 120);
    int nb = kc_test_backend_count();
    tcase_add_loop_test(tv, test_keras_fixture, 0, nb);
    tcase_add_loop_test(tv, test_gradchecks, 0, nb);
    tcase_add_loop_test(tv, test_moving_statistics, 0, nb);
    suite_add_tcase(s, tv);

    TCase *tcl = tcase_create("cli");
    tcase_set_timeout(tcl, 120);
    tcase_add_checked_fixture(tcl, setup, teardown);
    tcase_add_test(tcl, test_cli_model);
    suite_add_tcase(s, tcl);
    return kc_test_run(s);
}

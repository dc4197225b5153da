/* Normalization (the preprocessing layer) and the data section's
 * preprocess_input: Keras's weights, shapes and errors; forward, gradients
 * and adapt() against Keras's own numbers
 * (tests/fixtures/layers/preprocessing.safetensors, made by
 * make_preprocessing.py there) on every backend; finite differences; the
 * Keras importer; preprocess_input's three modes and its errors; adapt
 * before training, runs that resume or start from stored weights keeping
 * their statistics, and predict through the kerasc binary. */
#include "tests/layercheck.h"

#include "models/fit_internal.h"
#include "models/keras_import.h"
#include "tests/clitest.h"

/* a fixture tensor's float32 values */
#define TF(t) ((const float *)(t)->data)

static const char *fixture_path(const char *rel) {
    static char p[4200];
    const char *src = getenv("KERASC_SRC");
    snprintf(p, sizeof p, "%s/tests/fixtures/%s", src && *src ? src : ".", rel);
    return p;
}

/* ---- weights, shapes, errors ---- */

static void expect_stats(const kc_layer *l, kc_shape stat) {
    ck_assert_int_eq(l->nparams, 3);
    const char *names[3] = {"mean", "variance", "count"};
    for (int i = 0; i < 3; i++) {
        ck_assert_str_eq(l->params[i].name, names[i]);
        ck_assert_int_eq(l->params[i].trainable, 0);
    }
    ck_assert(kc_shape_equal(&l->params[0].shape, &stat));
    ck_assert(kc_shape_equal(&l->params[1].shape, &stat));
    ck_assert_int_eq(l->params[2].shape.rank, 0);
    ck_assert_int_eq(l->params[0].init.kind, KC_INIT_ZEROS);
    ck_assert_int_eq(l->params[1].init.kind, KC_INIT_ONES);
    ck_assert_int_eq(l->params[2].init.kind, KC_INIT_ZEROS);
}

START_TEST(test_config) {
    tl t;
    kc_shape in = kc_shape2(4, 3);
    /* Keras: 7, 3 and 25 non-trainable parameters; none with given statistics */
    kc_layer *l = must_build(&t, "Normalization", NULL, in);
    expect_shape(l, in);
    expect_stats(l, kc_shape1(3));
    ck_assert_int_eq(kc_layer_param_count(l, 0), 7);
    ck_assert_int_eq(kc_layer_param_count(l, 1), 0);
    ck_assert_int_eq(l->cls->mask_rule(l), KC_MASK_PROPAGATE);
    ck_assert_str_eq(l->name, "normalization");
    ck_assert_int_eq(l->cls->flops(l), 24);
    tl_free(&t);

    l = must_build(&t, "Normalization", "axis: null\n", in);
    expect_stats(l, (kc_shape){0});
    ck_assert_int_eq(kc_layer_param_count(l, 0), 3);
    tl_free(&t);
    l = must_build(&t, "Normalization", "axis: []\n", in); /* Keras saves None as [] */
    ck_assert_int_eq(kc_layer_param_count(l, 0), 3);
    tl_free(&t);

    l = must_build(&t, "Normalization", "axis: [2, -2]\n", in);
    expect_stats(l, kc_shape2(4, 3));
    ck_assert_int_eq(kc_layer_param_count(l, 0), 25);
    tl_free(&t);
    l = must_build(&t, "Normalization", "axis: 1\n", in);
    expect_stats(l, kc_shape1(4));
    tl_free(&t);

    l = must_build(&t, "Normalization", "mean: [1, 2, 3]\nvariance: [1, 4, 9]\ninvert: true\n", in);
    ck_assert_int_eq(l->nparams, 0);
    tl_free(&t);
    l = must_build(&t, "Normalization", "axis: null\nmean: 0.5\nvariance: 2\n", in);
    ck_assert_int_eq(l->nparams, 0);
    tl_free(&t);
    /* broadcast as Keras does: one value for an axis, fewer axes than kept */
    l = must_build(&t, "Normalization",
                   "axis: [1, 2]\nmean: [[1], [2], [3], [4]]\nvariance: [[1], [2], [1], [2]]\n",
                   kc_shape2(4, 3));
    tl_free(&t);
    must_build(&t, "Normalization", "axis: [1, 2]\nmean: [1, 2, 3]\nvariance: [1, 1, 1]\n", in);
    tl_free(&t);
}
END_TEST

START_TEST(test_errors) {
    kc_shape in = kc_shape2(4, 3);
    const char *cls = "Normalization";
    expect_error(cls, "mean: [1, 2, 3]\n", &in, "layer.yaml:1:7", "both `mean` and `variance`");
    expect_error(cls, "variance: 2\n", &in, "layer.yaml:1:11", "both `mean` and `variance`");
    expect_error(cls, "mean: [1, 2]\nvariance: [1, 2, 3]\n", &in, "layer.yaml:2:11",
                 "must have the same shape, got (2,) and (3,)");
    expect_error(cls, "axis: null\nmean: [1]\nvariance: [1]\n", &in, "layer.yaml:2:7",
                 "the rank of `mean` (1) must be less than or equal to the number of axes (0)");
    expect_error(cls, "mean: [1, 2]\nvariance: [1, 2]\n", &in, "layer.yaml:1:7",
                 "do not broadcast to input shape (None, 4, 3)");
    expect_error(cls, "mean: [[1, 2], [3]]\nvariance: 1\naxis: [1, 2]\n", &in, "layer.yaml:1:16",
                 "rectangular");
    expect_error(cls, "mean: [a, 1, 2]\nvariance: [1, 1, 1]\n", &in, "layer.yaml:1:8",
                 "expected a number");
    expect_error(cls, "axis: 3\n", &in, "layer.yaml:1:7",
                 "axis 3 is out of range for input shape (None, 4, 3)");
    expect_error(cls, "axis: -4\n", &in, "layer.yaml:1:7", "axis -4 is out of range");
    expect_error(cls, "axis: 0\n", &in, "layer.yaml:1:7", "axis 0 is the batch axis");
    expect_error(cls, "axis: [1, -2]\n", &in, "layer.yaml:1:7", "axis -2 is given twice");
    expect_error(cls, "axis: one\n", &in, "layer.yaml:1:7", "axis");
    expect_error(cls, "invert: maybe\n", &in, "layer.yaml:1:9", "invert");
    expect_error(cls, "axes: 1\n", &in, "layer.yaml:1:1", "axis");
}
END_TEST

/* The importer keeps what Keras saved: given values, axis None, inversion. */
START_TEST(test_keras_import) {
    kc_config *cfg = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_keras_config_load(fixture_path("keras/normalization_k3.json"), &cfg, &e) ==
                      KC_OK,
                  "%s", e.msg);
    const kc_model *m = cfg->model;
    ck_assert_int_eq(m->nlayers, 5);
    const int64_t keras[5] = {0, 7, 3, 25, 0}; /* Keras's count_params() */
    for (int i = 0; i < 5; i++) {
        ck_assert_str_eq(m->layers[i]->cls->class_name, "Normalization");
        ck_assert_int_eq(kc_layer_param_count(m->layers[i], 0), keras[i]);
        ck_assert_int_eq(kc_layer_param_count(m->layers[i], 1), 0);
    }
    ck_assert_str_eq(m->layers[4]->name, "normalization_4");
    ck_assert_int_eq(kc_model_param_count(m, 0), 35);
    kc_config_free(cfg);
}
END_TEST

/* ---- Keras's numbers ---- */

typedef struct nz_case {
    const char *name, *yaml;
} nz_case;

/* as make_preprocessing.py builds them */
static const nz_case given[] = {
    {"given_last", "mean: [1.0, 2.0, 3.0]\nvariance: [1.0, 4.0, 0.25]\n"},
    {"given_scalar", "axis: null\nmean: 2.0\nvariance: 3.0\n"},
    {"given_bcast", "axis: [1, 2]\nmean: [0.5, -1.0, 2.0]\nvariance: [2.0, 0.5, 1.0]\n"},
    {"given_axis1", "axis: 1\nmean: [0.0, 1.0, -1.0, 0.5]\nvariance: [1.0, 2.0, 3.0, 4.0]\n"},
    {"given_invert", "mean: [1.0, -2.0, 0.5]\nvariance: [4.0, 0.25, 9.0]\ninvert: true\n"},
    {"given_tiny_var", "mean: [0.0, 1.0, 2.0]\nvariance: [0.0, 1e-16, 2.0]\n"},
};
static const nz_case adapted[] = {
    {"adapt_last", NULL},
    {"adapt_none", "axis: null\n"},
    {"adapt_axes", "axis: [1, 3]\n"},
    {"adapt_invert", "axis: -1\ninvert: true\n"},
};

static kc_shape sample_shape(const kc_st_tensor *t) {
    kc_shape in = {t->shape.rank - 1, {0}};
    for (int k = 1; k < t->shape.rank; k++)
        in.d[k - 1] = t->shape.d[k];
    return in;
}

static void expect_dev(const rig *r, const char *cs, const char *what, kc_buf b,
                       const kc_st_tensor *t, float atol) {
    size_t n = (size_t)kc_shape_numel(&t->shape);
    float *got = malloc(n * sizeof(float));
    get(r->d, got, b, n);
    char msg[256];
    snprintf(msg, sizeof msg, "%s %s", cs, what);
    expect_near_keras(msg, r->d->name, got, t->data, n, atol);
    free(got);
}

/* y and the input gradient of sum(y * c) for the case's x. */
static void check_forward(rig *r, kc_st_file *f, const char *cs) {
    put(r->d, r->x, layer_fixture_tensor(f, cs, "x")->data, r->nin);
    kc_exec ex = rig_exec(r, 1);
    layer_forward(r, &ex);
    expect_dev(r, cs, "y", r->y, layer_fixture_tensor(f, cs, "y"), 1e-5f);
    put(r->d, r->dy, layer_fixture_tensor(f, cs, "c")->data, r->nout);
    layer_backward(r, &ex, r->dx);
    expect_dev(r, cs, "dx", r->dx, layer_fixture_tensor(f, cs, "dx"), 1e-5f);
}

/* The adapt data in batches of `bs` rows, as the trainer hands it over. */
typedef struct rows_src {
    const float *x;
    int64_t rows, per, pos, bs;
} rows_src;

static int rows_next(void *ctx, const float **x, int64_t *rows, kc_error *e) {
    rows_src *s = ctx;
    int64_t n = s->rows - s->pos < s->bs ? s->rows - s->pos : s->bs;
    *x = n > 0 ? s->x + s->pos * s->per : NULL;
    *rows = n;
    s->pos += n;
    return KC_OK;
}

/* Keras's float32 statistics against kerasc's: within 1e-6 relative. */
static void expect_stat(const rig *r, const char *cs, const char *what, kc_buf b,
                        const kc_st_tensor *t) {
    size_t n = (size_t)kc_shape_numel(&t->shape);
    float *got = malloc(n * sizeof(float));
    get(r->d, got, b, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - TF(t)[i]) <= 1e-6 * fabs(TF(t)[i]),
                      "%s %s on %s [%zu]: %.9g, Keras %.9g", cs, what, r->d->name, i, got[i],
                      TF(t)[i]);
    free(got);
}

static void adapted_case(kc_device *be, kc_st_file *f, const nz_case *c, int64_t bs) {
    const kc_st_tensor *data = layer_fixture_tensor(f, c->name, "adapt_x");
    const kc_st_tensor *xt = layer_fixture_tensor(f, c->name, "x");
    tl t;
    kc_layer *l = must_build(&t, "Normalization", c->yaml, sample_shape(data));
    rig r;
    rig_init(&r, be, l, (int)xt->shape.d[0]);
    const float zero = 0.0f;
    set_param(&r, 2, &zero);
    rows_src rs = {data->data, data->shape.d[0], kc_shape_numel(&l->in_shape), 0, bs};
    kc_adapt_source src = {rows_next, &rs};
    kc_error e = {0};
    ck_assert_msg(l->cls->adapt(l, be, &src, &e) == KC_OK, "%s", e.msg);
    expect_stat(&r, c->name, "mean", l->params[0].value, layer_fixture_tensor(f, c->name, "mean"));
    expect_stat(&r, c->name, "variance", l->params[1].value,
                layer_fixture_tensor(f, c->name, "variance"));
    float count = -1;
    get(be, &count, l->params[2].value, 1);
    ck_assert_float_eq(count, TF(layer_fixture_tensor(f, c->name, "count"))[0]); /* 0 */
    check_forward(&r, f, c->name);
    rig_free(&r);
    tl_free(&t);
}

START_TEST(test_keras_fixture) {
    KC_LOOP_DEVICE(be);
    kc_st_file *f = layer_fixture("preprocessing");
    for (size_t i = 0; i < sizeof given / sizeof given[0]; i++) {
        const kc_st_tensor *xt = layer_fixture_tensor(f, given[i].name, "x");
        tl t;
        kc_layer *l = must_build(&t, "Normalization", given[i].yaml, sample_shape(xt));
        rig r;
        rig_init(&r, be, l, (int)xt->shape.d[0]);
        check_forward(&r, f, given[i].name);
        rig_free(&r);
        tl_free(&t);
    }
    /* all rows at once, and in batches (Keras's batch-wise update) */
    for (size_t i = 0; i < sizeof adapted / sizeof adapted[0]; i++) {
        adapted_case(be, f, &adapted[i], 1000);
        adapted_case(be, f, &adapted[i], 7);
    }
}
END_TEST

/* An adapt source that gives nothing is an error naming the layer. */
START_TEST(test_adapt_empty) {
    tl t;
    kc_layer *l = must_build(&t, "Normalization", NULL, kc_shape1(3));
    rows_src rs = {NULL, 0, 3, 0, 8};
    kc_adapt_source src = {rows_next, &rs};
    kc_error e = {0};
    ck_assert_int_eq(l->cls->adapt(l, NULL, &src, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "layer 'normalization' (Normalization): no samples"), "%s", e.msg);
    tl_free(&t);
    /* given statistics: nothing to adapt, nothing pulled */
    l = must_build(&t, "Normalization", "mean: 1\nvariance: 2\n", kc_shape1(3));
    ck_assert_int_eq(l->cls->adapt(l, NULL, &src, &e), KC_OK);
    tl_free(&t);
}
END_TEST

START_TEST(test_gradcheck) {
    KC_LOOP_DEVICE(be);
    gradcheck(be, "Normalization", "mean: [1, 2, 3]\nvariance: [1, 4, 0.25]\n", kc_shape2(4, 3), 2,
              0, 1);
    gradcheck(be, "Normalization", "mean: [1, 2, 3]\nvariance: [1, 4, 0.25]\ninvert: true\n",
              kc_shape2(4, 3), 2, 0, 0);
    gradcheck(be, "Normalization", "axis: null\nmean: -1\nvariance: 0.5\n", kc_shape1(5), 3, 0, 1);
    gradcheck(be, "Normalization",
              "axis: [1, 3]\nmean: [[1, 2], [3, 4]]\nvariance: [[2, 3], [0.5, 1]]\n",
              kc_shape3(2, 3, 2), 2, 0, 1);
}
END_TEST

/* ---- preprocess_input ---- */

START_TEST(test_preprocess_modes) {
    kc_st_file *f = layer_fixture("preprocessing");
    const kc_st_tensor *x = kc_st_find(f, "pp.x");
    ck_assert_ptr_nonnull(x);
    size_t n = (size_t)kc_shape_numel(&x->shape);
    const char *names[3] = {"caffe", "tf", "torch"};
    const kc_preprocess_mode modes[3] = {KC_PREPROCESS_CAFFE, KC_PREPROCESS_TF,
                                         KC_PREPROCESS_TORCH};
    float *v = malloc(n * sizeof *v);
    for (int m = 0; m < 3; m++) {
        memcpy(v, x->data, n * sizeof *v);
        kc_preprocess_input(modes[m], v, n);
        const kc_st_tensor *want = layer_fixture_tensor(f, "pp", names[m]);
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(fabsf(v[i] - TF(want)[i]) <= 1e-6f * fabsf(TF(want)[i]) + 1e-6f,
                          "%s [%zu]: %.9g, Keras %.9g", names[m], i, v[i], TF(want)[i]);
    }
    free(v);
}
END_TEST

static void write_dir_file(const char *d, const char *name, const char *text) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", d, name);
    FILE *fp = fopen(p, "w");
    ck_assert_ptr_nonnull(fp);
    fputs(text, fp);
    fclose(fp);
}

static int parse_in(const char *d, const char *text, kc_config **c, kc_error *e) {
    memset(e, 0, sizeof *e);
    return kc_config_parse_text("m.yaml", d, text, strlen(text), c, e);
}

/* Predict gathers as training does: rescale first, then the mode. */
START_TEST(test_preprocess_session) {
    char *d = kc_test_tmpdir();
    kc_st_file *f = layer_fixture("preprocessing");
    const kc_st_tensor *x = kc_st_find(f, "pp.x");
    size_t n = (size_t)kc_shape_numel(&x->shape);
    float *half = malloc(n * sizeof *half);
    for (size_t i = 0; i < n; i++)
        half[i] = TF(x)[i] / 4; /* rescale 4 gives x back exactly */
    char p[4200];
    snprintf(p, sizeof p, "%s/x.npy", d);
    kc_error e = {0};
    ck_assert_int_eq(kc_npy_write(p, half, &x->shape, &e), KC_OK);
    snprintf(p, sizeof p, "%s/y.npy", d);
    ck_assert_int_eq(kc_npy_write(p, half, &x->shape, &e), KC_OK);
    const char *names[3] = {"caffe", "tf", "torch"};
    for (int m = 0; m < 3; m++) {
        char text[1024];
        snprintf(text, sizeof text,
                 "model:\n  layers:\n    - Input: {shape: [2, 3, 3]}\n    - Identity\n"
                 "compile: {optimizer: sgd, loss: mse}\n"
                 "data:\n  train: {x: x.npy, y: y.npy}\n  rescale: 4\n"
                 "  preprocess_input: %s\nfit: {batch_size: 3}\n",
                 names[m]);
        kc_config *c = NULL;
        ck_assert_msg(parse_in(d, text, &c, &e) == KC_OK, "%s", e.msg);
        kc_run_opts o = {.backend = "cpu"};
        kc_session s;
        ck_assert_msg(kc_session_open(&s, c, &o, 0, 0, &e) == KC_OK, "%s", e.msg);
        kc_array a;
        snprintf(p, sizeof p, "%s/x.npy", d);
        ck_assert_int_eq(kc_array_load(p, NULL, &a, &e), KC_OK);
        float *out = NULL;
        ck_assert_msg(kc_predict(&s, &a, &out, &e) == KC_OK, "%s", e.msg);
        const kc_st_tensor *want = layer_fixture_tensor(f, "pp", names[m]);
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(fabsf(out[i] - TF(want)[i]) <= 1e-5f * fabsf(TF(want)[i]) + 1e-5f,
                          "%s [%zu]: %.9g, Keras %.9g", names[m], i, out[i], TF(want)[i]);
        free(out);
        kc_array_free(&a);
        kc_session_close(&s);
        kc_config_free(c);
    }
    free(half);
    kc_test_rmdir(d);
    free(d);
}
END_TEST

static void expect_config_error(const char *d, const char *text, const char *where,
                                const char *part) {
    kc_config *c = NULL;
    kc_error e;
    int rc = parse_in(d, text, &c, &e);
    ck_assert_msg(rc == KC_ECONFIG, "accepted:\n%s", text);
    ck_assert_msg(!strncmp(e.msg, where, strlen(where)), "'%s' does not start with '%s'", e.msg,
                  where);
    ck_assert_msg(strstr(e.msg, part), "'%s' lacks '%s'", e.msg, part);
    kc_config_free(c);
}

START_TEST(test_preprocess_errors) {
    char *d = kc_test_tmpdir();
    write_dir_file(d, "x.npy", "");
    const char *head = "model:\n  layers:\n    - Input: {shape: [4, 4, 3], name: image}\n"
                       "    - Flatten\n    - Dense: {units: 2}\n"
                       "data:\n  train: {x: x.npy, y: x.npy}\n";
    char text[2048];
    snprintf(text, sizeof text, "%s  preprocess_input: keras\n", head);
    expect_config_error(d, text, "m.yaml:8:21",
                        "data.preprocess_input must be one of caffe, tf, torch, got 'keras'");
    snprintf(text, sizeof text, "%s  preprocess_input: {image: Caffe}\n", head);
    expect_config_error(d, text, "m.yaml:8:29", "must be one of caffe, tf, torch");
    snprintf(text, sizeof text, "%s  preprocess_input: {img: caffe}\n", head);
    expect_config_error(d, text, "m.yaml:8:22", "the model has no input 'img'");
    snprintf(text, sizeof text, "%s  preprocess_input: [caffe]\n", head);
    expect_config_error(d, text, "m.yaml:8:21", "preprocess_input");
    /* caffe and torch take RGB pixels; tf any values */
    const char *gray = "model:\n  layers:\n    - Input: {shape: [4, 4, 1], name: image}\n"
                       "    - Flatten\n    - Dense: {units: 2}\n"
                       "data:\n  train: {x: x.npy, y: x.npy}\n";
    snprintf(text, sizeof text, "%s  preprocess_input: torch\n", gray);
    expect_config_error(d, text, "m.yaml:8:21",
                        "data.preprocess_input torch needs RGB images, whose last axis is 3 "
                        "channels; the model input 'image' is (None, 4, 4, 1)");
    kc_config *c = NULL;
    kc_error e;
    snprintf(text, sizeof text, "%s  preprocess_input: tf\n", gray);
    ck_assert_msg(parse_in(d, text, &c, &e) == KC_OK, "%s", e.msg);
    ck_assert_int_eq(c->data.inputs[0].preprocess, KC_PREPROCESS_TF);
    kc_config_free(c);
    /* several inputs: one mode each, by name */
    const char *two = "model:\n  outputs: [out]\n  layers:\n"
                      "    - Input: {shape: [2, 2, 3], name: a}\n    - Flatten: {name: fa}\n"
                      "    - Input: {shape: [2, 2, 3], name: b}\n"
                      "    - Flatten: {name: fb, inputs: b}\n"
                      "    - Concatenate: {inputs: [fa, fb], name: out}\n"
                      "data:\n  train: {x: {a: x.npy, b: x.npy}, y: x.npy}\n";
    snprintf(text, sizeof text, "%s  preprocess_input: caffe\n", two);
    expect_config_error(d, text, "m.yaml:11:21",
                        "the model has 2 inputs: give preprocess_input per input, e.g. "
                        "`preprocess_input: {a: caffe}`");
    snprintf(text, sizeof text, "%s  preprocess_input: {b: torch}\n", two);
    ck_assert_msg(parse_in(d, text, &c, &e) == KC_OK, "%s", e.msg);
    ck_assert_int_eq(c->data.inputs[0].preprocess, KC_PREPROCESS_NONE);
    ck_assert_int_eq(c->data.inputs[1].preprocess, KC_PREPROCESS_TORCH);
    kc_config_free(c);
    kc_test_rmdir(d);
    free(d);
}
END_TEST

/* ---- through the kerasc binary ---- */

enum { ROWS = 50, H = 2, W = 3 };

/* pixels 0..255 whose channels have different spreads */
static void make_pixels(const char *name, uint64_t seed, float scale, float shift) {
    float x[ROWS * H * W * 3];
    for (int i = 0; i < ROWS * H * W * 3; i++) {
        float u = (float)kc_rng_uniform(seed, 1, (uint64_t)i);
        x[i] = (u * (40.0f + 60.0f * (float)(i % 3)) + 30.0f * (float)(i % 3)) * scale + shift;
    }
    write_npy(name, x, (kc_shape){4, {ROWS, H, W, 3}});
}

static void setup(void) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    dir = kc_test_tmpdir();
    make_pixels("x.npy", 5, 1, 0);
    float zeros[ROWS * H * W * 3] = {0};
    write_npy("y.npy", zeros, (kc_shape){4, {ROWS, H, W, 3}});
}

static void teardown(void) {
    kc_test_rmdir(dir);
    free(dir);
}

/* The model outputs the normalized torch-preprocessed pixels. */
static const char *cli_model = "model:\n"
                               "  name: norm\n"
                               "  layers:\n"
                               "    - Input: {shape: [2, 3, 3], name: image}\n"
                               "    - Normalization: {name: norm}\n"
                               "compile: {optimizer: sgd, loss: mse}\n"
                               "data:\n"
                               "  train: {x: x.npy, y: y.npy}\n"
                               "  preprocess_input: torch\n"
                               "fit: {epochs: 1, batch_size: 16}\n";

/* mean and variance over every pixel of each channel, in double */
static void channel_stats(const char *name, double scale, double offset, double *mean,
                          double *var) {
    kc_array a;
    kc_error e = {0};
    ck_assert_int_eq(kc_array_load(path_in(name), NULL, &a, &e), KC_OK);
    size_t n = (size_t)kc_array_rows(&a) * (size_t)kc_array_row_size(&a);
    float *v = malloc(n * sizeof *v);
    memcpy(v, a.data, n * sizeof *v);
    if (scale == 0) /* torch */
        kc_preprocess_input(KC_PREPROCESS_TORCH, v, n);
    for (int c = 0; c < 3; c++) {
        double s = 0, ss = 0, k = (double)n / 3;
        for (size_t i = (size_t)c; i < n; i += 3)
            s += scale == 0 ? v[i] : v[i] * scale + offset;
        mean[c] = s / k;
        for (size_t i = (size_t)c; i < n; i += 3) {
            double dv = (scale == 0 ? v[i] : v[i] * scale + offset) - mean[c];
            ss += dv * dv;
        }
        var[c] = ss / k;
    }
    free(v);
    kc_array_free(&a);
}

static void read_stats(const char *ckpt, const char *layer, float *mean, float *var, float *count) {
    kc_st_file *f = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path_in(ckpt), &f, &e) == KC_OK, "%s", e.msg);
    char key[256];
    const float *dst[3] = {mean, var, count};
    const char *what[3] = {"mean", "variance", "count"};
    for (int k = 0; k < 3; k++) {
        snprintf(key, sizeof key, "%s/%s", layer, what[k]);
        const kc_st_tensor *t = kc_st_find(f, key);
        ck_assert_msg(t != NULL, "%s lacks %s", ckpt, key);
        memcpy((float *)dst[k], t->data, (size_t)kc_shape_numel(&t->shape) * sizeof(float));
    }
    kc_st_close(f);
}

static void expect_channels(const char *what, const float *got, const double *want, double tol) {
    for (int c = 0; c < 3; c++)
        ck_assert_msg(fabs(got[c] - want[c]) <= tol * fabs(want[c]) + 1e-7,
                      "%s[%d]: %.9g, expected %.9g", what, c, got[c], want[c]);
}

START_TEST(test_cli_adapt) {
    write_file("norm.yaml", cli_model);
    int st = run("summary norm.yaml");
    ck_assert_msg(st == 0, "summary failed: %s", err_buf);
    /* Keras: mean (3), variance (3) and count, none trainable */
    ck_assert_msg(strstr(out_buf, "Total params: 7 "), "%s", out_buf);
    ck_assert_msg(strstr(out_buf, "Non-trainable params: 7 "), "%s", out_buf);

    st = run("train norm.yaml --output run --threads 2");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    double mean[3], var[3];
    float m1[3], v1[3], count;
    channel_stats("x.npy", 0, 0, mean, var);
    read_stats("run/last.safetensors", "norm", m1, v1, &count);
    expect_channels("mean", m1, mean, 1e-6);
    expect_channels("variance", v1, var, 1e-6);
    ck_assert_float_eq(count, 0.0f);
    /* normalized over the training data: the loss against zeros is 1 */
    ck_assert_msg(strstr(out_buf, "loss: 1.0000"), "%s", out_buf);

    /* predict: the same preprocessing, the stored statistics */
    st = run("predict run/last.safetensors --input x.npy --output p.npy");
    ck_assert_msg(st == 0, "predict failed (%d): %s", st, err_buf);
    kc_array x, p;
    kc_error e = {0};
    ck_assert_int_eq(kc_array_load(path_in("x.npy"), NULL, &x, &e), KC_OK);
    ck_assert_int_eq(kc_array_load(path_in("p.npy"), NULL, &p, &e), KC_OK);
    size_t n = (size_t)ROWS * H * W * 3;
    ck_assert_int_eq(kc_array_rows(&p) * kc_array_row_size(&p), (int64_t)n);
    float *v = malloc(n * sizeof *v);
    memcpy(v, x.data, n * sizeof *v);
    kc_preprocess_input(KC_PREPROCESS_TORCH, v, n);
    for (size_t i = 0; i < n; i++) {
        double want = (v[i] - m1[i % 3]) / fmax(sqrt(v1[i % 3]), 1e-7);
        double got = ((const float *)p.data)[i];
        ck_assert_msg(fabs(got - want) <= 1e-5 * fabs(want) + 1e-5, "predict [%zu]: %.7g vs %.7g",
                      i, got, want);
    }
    free(v);
    kc_array_free(&x);
    kc_array_free(&p);

    /* a resumed run keeps the statistics it was trained with, whatever the data now is */
    make_pixels("x.npy", 6, 0.5f, 100);
    st = run("train norm.yaml --resume run/last.safetensors --epochs 2 --output run2 "
             "--threads 2");
    ck_assert_msg(st == 0, "resume failed (%d): %s", st, err_buf);
    float m2[3], v2[3];
    read_stats("run2/last.safetensors", "norm", m2, v2, &count);
    for (int c = 0; c < 3; c++) {
        ck_assert_float_eq(m2[c], m1[c]);
        ck_assert_float_eq(v2[c], v1[c]);
    }
    /* so does a run that starts from stored weights */
    st = run("train norm.yaml --weights run/last.safetensors --output run4 --threads 2");
    ck_assert_msg(st == 0, "train --weights failed (%d): %s", st, err_buf);
    read_stats("run4/last.safetensors", "norm", m2, v2, &count);
    for (int c = 0; c < 3; c++) {
        ck_assert_float_eq(m2[c], m1[c]);
        ck_assert_float_eq(v2[c], v1[c]);
    }
    /* a fresh run adapts to the new data */
    st = run("train norm.yaml --output run3 --threads 2");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    channel_stats("x.npy", 0, 0, mean, var);
    read_stats("run3/last.safetensors", "norm", m2, v2, &count);
    expect_channels("new mean", m2, mean, 1e-6);
    expect_channels("new variance", v2, var, 1e-6);
}
END_TEST

/* A Normalization after other layers adapts to what they make of the data,
 * run in inference mode; a shared one cannot adapt to one input. */
START_TEST(test_cli_after_layers) {
    make_pixels("x.npy", 5, 1, 0);
    write_file("deep.yaml", "model:\n  layers:\n    - Input: {shape: [2, 3, 3]}\n"
                            "    - Rescaling: {scale: 2, offset: 1}\n"
                            "    - Dropout: {rate: 0.5}\n"
                            "    - Normalization: {name: norm}\n"
                            "compile: {optimizer: sgd, loss: mse}\n"
                            "data:\n  train: {x: x.npy, y: y.npy}\n  rescale: 0.5\n"
                            "fit: {epochs: 1, batch_size: 16}\n");
    int st = run("train deep.yaml --output deep --threads 2");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    double mean[3], var[3];
    float m[3], v[3], count;
    channel_stats("x.npy", 1.0, 1.0, mean, var); /* (x * 0.5) * 2 + 1 */
    read_stats("deep/last.safetensors", "norm", m, v, &count);
    expect_channels("mean", m, mean, 1e-6);
    expect_channels("variance", v, var, 1e-6);

    write_file("shared.yaml", "model:\n  layers:\n    - Input: {shape: [2, 3, 3], name: a}\n"
                              "    - Normalization: {name: norm}\n"
                              "    - {layer: norm, inputs: a}\n"
                              "    - Add: {inputs: [norm, 'norm[1]']}\n"
                              "compile: {optimizer: sgd, loss: mse}\n"
                              "data:\n  train: {x: x.npy, y: y.npy}\n"
                              "fit: {epochs: 1, batch_size: 16}\n");
    st = run("train shared.yaml --output shared --threads 2");
    ck_assert_int_eq(st, 2);
    ck_assert_msg(strstr(err_buf, "shared.yaml:4:7") &&
                      strstr(err_buf, "layer 'norm' (Normalization) is called 2 times"),
                  "%s", err_buf);
    /* with its statistics given it needs no adapting */
    write_file("shared2.yaml", "model:\n  layers:\n    - Input: {shape: [2, 3, 3], name: a}\n"
                               "    - Normalization: {name: norm, mean: 100, variance: 400,"
                               " axis: null}\n"
                               "    - {layer: norm, inputs: a}\n"
                               "    - Add: {inputs: [norm, 'norm[1]']}\n"
                               "compile: {optimizer: sgd, loss: mse}\n"
                               "data:\n  train: {x: x.npy, y: y.npy}\n"
                               "fit: {epochs: 1, batch_size: 16}\n");
    st = run("summary shared2.yaml");
    ck_assert_msg(st == 0 && strstr(out_buf, "Total params: 0 "), "%s%s", out_buf, err_buf);
    st = run("train shared2.yaml --output shared2 --threads 2");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
}
END_TEST

/* Keras's counts for a stack of every kind, and argument errors at their place. */
START_TEST(test_cli_summary) {
    write_file("stack.yaml", "model:\n  layers:\n    - Input: {shape: [4, 3]}\n"
                             "    - Normalization: {mean: [1, 2, 3], variance: [1, 4, 9]}\n"
                             "    - Normalization\n"
                             "    - Normalization: {axis: null}\n"
                             "    - Normalization: {axis: [1, 2]}\n"
                             "    - Normalization: {invert: true, mean: 0.5, variance: 2}\n");
    int st = run("summary stack.yaml");
    ck_assert_msg(st == 0, "summary failed: %s", err_buf);
    /* Keras: 0, 7, 3, 25 and 0; Total params: 35, all non-trainable */
    ck_assert_msg(strstr(out_buf, "Total params: 35 "), "%s", out_buf);
    ck_assert_msg(strstr(out_buf, "Trainable params: 0 "), "%s", out_buf);
    ck_assert_msg(strstr(out_buf, "Non-trainable params: 35 "), "%s", out_buf);
    ck_assert_msg(strstr(out_buf, "normalization_3 (Normalization)"), "%s", out_buf);

    write_file("bad.yaml", "model:\n  layers:\n    - Input: {shape: [4, 3]}\n"
                           "    - Normalization: {mean: [1, 2, 3]}\n");
    st = run("summary bad.yaml");
    ck_assert_int_eq(st, 2);
    ck_assert_msg(strstr(err_buf, "bad.yaml:4:29") && strstr(err_buf, "`variance`"), "%s", err_buf);
}
END_TEST

int main(void) {
    Suite *s = suite_create("layers_normalization");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_config);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_keras_import);
    tcase_add_test(tc, test_adapt_empty);
    tcase_add_test(tc, test_preprocess_modes);
    tcase_add_test(tc, test_preprocess_session);
    tcase_add_test(tc, test_preprocess_errors);
    suite_add_tcase(s, tc);

    TCase *tv = tcase_create("compute");
    tcase_set_timeout(tv, 120);
    int nb = kc_test_backend_count();
    tcase_add_loop_test(tv, test_keras_fixture, 0, nb);
    tcase_add_loop_test(tv, test_gradcheck, 0, nb);
    suite_add_tcase(s, tv);

    TCase *tcl = tcase_create("cli");
    tcase_set_timeout(tcl, 120);
    tcase_add_checked_fixture(tcl, setup, teardown);
    tcase_add_test(tcl, test_cli_adapt);
    tcase_add_test(tcl, test_cli_after_layers);
    tcase_add_test(tcl, test_cli_summary);
    suite_add_tcase(s, tcl);
    return kc_test_run(s);
}

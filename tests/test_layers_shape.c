/* Shape, resize, global pooling and preprocessing layers and broadcasting
 * merges: forward outputs and input gradients against Keras 3
 * (tests/fixtures/layers/shape.safetensors, made by make_shape.py there) on
 * every backend, finite-difference gradient checks, Keras's output shapes
 * and argument errors with file:line:column, and a small model trained
 * through the kerasc binary. */
#include "tests/layercheck.h"

#include <sys/wait.h>
#include <unistd.h>

#include "core/safetensors.h"
#include "tests/clitest.h"

#ifndef KC_SHAPE_FIXTURE
#define KC_SHAPE_FIXTURE "tests/fixtures/layers/shape.safetensors"
#endif
#define SHAPE_CASES 36 /* cases in the fixture */

/* ---- one layer, several inputs, on a device ---- */

typedef struct mrig {
    kc_device *d;
    tl t;
    int n, batch;
    kc_shape in[KC_LAYER_MAX_INPUTS];
    kc_buf x[KC_LAYER_MAX_INPUTS], dx[KC_LAYER_MAX_INPUTS], y, dy, ws;
} mrig;

/* Builds `cls` from `yaml` for inputs of shapes in[0 .. n). Returns the error's code. */
static int mrig_build(mrig *r, const char *cls, const char *yaml, const kc_shape *in, int n,
                      kc_error *e) {
    memset(r, 0, sizeof *r);
    int rc = tl_make(&r->t, cls, yaml, NULL, e);
    if (rc) return rc;
    r->n = n;
    memcpy(r->in, in, (size_t)n * sizeof *in);
    return kc_layer_build_n(r->t.l, in, n, e);
}

static size_t numel_b(const kc_shape *s, int batch) {
    return (size_t)kc_shape_numel(s) * (size_t)batch;
}

static void mrig_alloc(mrig *r, kc_device *d, int batch) {
    kc_layer *l = r->t.l;
    r->d = d;
    r->batch = batch;
    for (int i = 0; i < r->n; i++) {
        r->x[i] = dev_alloc(d, numel_b(&r->in[i], batch));
        r->dx[i] = dev_alloc(d, numel_b(&r->in[i], batch));
    }
    r->y = dev_alloc(d, numel_b(&l->out_shape, batch));
    r->dy = dev_alloc(d, numel_b(&l->out_shape, batch));
    size_t buf = l->cls->buffer_bytes ? l->cls->buffer_bytes(l, batch, d) : 0;
    l->buf = buf ? kc_test_alloc(d, buf) : KC_BUF_NULL;
    size_t ws = l->cls->workspace_bytes ? l->cls->workspace_bytes(l, batch, d) : 0;
    r->ws = ws ? kc_test_alloc(d, ws) : KC_BUF_NULL;
}

static void mrig_free(mrig *r) {
    if (r->d) {
        for (int i = 0; i < r->n; i++) {
            kc_free(r->d, &r->x[i]);
            kc_free(r->d, &r->dx[i]);
        }
        kc_free(r->d, &r->y);
        kc_free(r->d, &r->dy);
        kc_free(r->d, &r->ws);
        kc_free(r->d, &r->t.l->buf);
        kc_test_ok(r->d, "layer rig");
    }
    tl_free(&r->t);
}

static kc_exec mrig_exec(const mrig *r) {
    kc_exec ex = {0};
    ex.dev = r->d;
    ex.batch = r->batch;
    ex.seed = 1234;
    ex.ws = r->ws;
    return ex;
}

static void mrig_forward(mrig *r) {
    kc_layer *l = r->t.l;
    kc_exec ex = mrig_exec(r);
    int rc = kc_layer_class_is_multi(l->cls) ? l->cls->forward_n(l, &ex, r->x, r->y)
                                             : l->cls->forward(l, &ex, r->x[0], r->y);
    ck_assert_msg(rc == KC_OK, "%s forward on %s: %s", l->name, r->d->name, r->d->err.msg);
}

static void mrig_backward(mrig *r) {
    kc_layer *l = r->t.l;
    kc_exec ex = mrig_exec(r);
    int rc = kc_layer_class_is_multi(l->cls)
                 ? l->cls->backward_n(l, &ex, r->x, r->y, r->dy, r->dx)
                 : l->cls->backward(l, &ex, r->x[0], r->y, r->dy, r->dx[0]);
    ck_assert_msg(rc == KC_OK, "%s backward on %s: %s", l->name, r->d->name, r->d->err.msg);
}

/* ---- the Keras fixture ---- */

static const float *st_floats(const kc_st_tensor *t) {
    ck_assert_int_eq(t->dtype, KC_ST_F32);
    return (const float *)t->data;
}

/* Per-sample shape of a batch-first fixture tensor. */
static kc_shape sample_shape(const kc_st_tensor *t) {
    kc_shape s = {t->shape.rank - 1, {0}};
    for (int k = 1; k < t->shape.rank; k++)
        s.d[k - 1] = t->shape.d[k];
    return s;
}

static const kc_st_tensor *case_tensor(const kc_st_file *f, const char *cs, const char *what) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", cs, what);
    return kc_st_find(f, name);
}

static void expect_close(const char *what, const float *got, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabsf(got[i] - want[i]) <= 1e-5f * fabsf(want[i]) + 2e-6f,
                      "%s[%zu]: %.8g, Keras %.8g", what, i, got[i], want[i]);
}

/* The case's layer on be: Keras's output shape, forward, and (where Keras
 * has one) input gradient of sum(y * c). */
static void run_case(kc_device *be, const kc_st_file *f, const char *cs, const char *spec) {
    char cls[64], yaml[512], what[400];
    const char *bar = strchr(spec, '|');
    ck_assert_ptr_nonnull(bar);
    snprintf(cls, sizeof cls, "%.*s", (int)(bar - spec), spec);
    snprintf(yaml, sizeof yaml, "%s\n", bar + 1);
    kc_shape in[KC_LAYER_MAX_INPUTS];
    const kc_st_tensor *xt[KC_LAYER_MAX_INPUTS];
    int n = 0;
    for (char k[16]; n < KC_LAYER_MAX_INPUTS; n++) {
        snprintf(k, sizeof k, "x%d", n);
        if (!(xt[n] = case_tensor(f, cs, k))) break;
        in[n] = sample_shape(xt[n]);
    }
    ck_assert_int_ge(n, 1);
    const kc_st_tensor *yt = case_tensor(f, cs, "y"), *ct = case_tensor(f, cs, "c");
    ck_assert(yt && ct);
    int batch = (int)yt->shape.d[0];
    mrig r;
    kc_error e;
    ck_assert_msg(mrig_build(&r, cls, yaml, in, n, &e) == 0, "%s: %s", cs, e.msg);
    kc_shape want = sample_shape(yt);
    expect_shape(r.t.l, want);
    mrig_alloc(&r, be, batch);
    for (int i = 0; i < n; i++)
        put(be, r.x[i], st_floats(xt[i]), numel_b(&in[i], batch));
    mrig_forward(&r);
    size_t no = numel_b(&want, batch);
    float *got = malloc(no * sizeof(float));
    get(be, got, r.y, no);
    snprintf(what, sizeof what, "%s on %s: y", cs, be->name);
    expect_close(what, got, st_floats(yt), no);
    free(got);
    if (case_tensor(f, cs, "dx0")) {
        put(be, r.dy, st_floats(ct), no);
        mrig_backward(&r);
        for (int i = 0; i < n; i++) {
            char k[16];
            snprintf(k, sizeof k, "dx%d", i);
            const kc_st_tensor *dt = case_tensor(f, cs, k);
            ck_assert_ptr_nonnull(dt);
            size_t ni = numel_b(&in[i], batch);
            float *g = malloc(ni * sizeof(float));
            get(be, g, r.dx[i], ni);
            snprintf(what, sizeof what, "%s on %s: dx%d", cs, be->name, i);
            expect_close(what, g, st_floats(dt), ni);
            free(g);
        }
    }
    mrig_free(&r);
}

START_TEST(test_keras_fixture) {
    KC_LOOP_DEVICE(be);
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(KC_SHAPE_FIXTURE, &f, &e) == 0, "%s", e.msg);
    int cases = 0;
    for (int i = 0; i < kc_st_meta_count(f); i++) {
        const char *value, *key = kc_st_meta_at(f, i, &value);
        if (strncmp(key, "case.", 5) != 0) continue;
        run_case(be, f, key + 5, value);
        cases++;
    }
    ck_assert_int_eq(cases, SHAPE_CASES);
    kc_st_close(f);
}
END_TEST

/* ---- finite differences (the area resize has no Keras gradient) ---- */

START_TEST(test_gradchecks) {
    KC_LOOP_DEVICE(be);
    gradcheck(be, "Resizing", "{height: 3, width: 2, interpolation: area}\n", kc_shape3(7, 5, 2), 2,
              0, 0);
    gradcheck(be, "Resizing", "{height: 5, width: 7, interpolation: area}\n", kc_shape3(3, 4, 2), 1,
              0, 0);
    gradcheck(be, "GlobalMaxPooling2D", NULL, kc_shape3(3, 3, 2), 2, 1, 0);
    gradcheck(be, "GlobalAveragePooling2D", "{keepdims: true}\n", kc_shape3(3, 2, 2), 2, 0, 0);
    gradcheck(be, "UpSampling2D", "{size: [2, 3]}\n", kc_shape3(2, 2, 2), 2, 0, 0);
    gradcheck(be, "UpSampling2D", "{interpolation: bilinear}\n", kc_shape3(3, 2, 2), 2, 0, 0);
    gradcheck(be, "ZeroPadding2D", "{padding: [[0, 1], [2, 0]]}\n", kc_shape3(2, 3, 2), 2, 0, 0);
    gradcheck(be, "Cropping2D", "{cropping: [[1, 0], [0, 2]]}\n", kc_shape3(3, 4, 2), 2, 0, 0);
    gradcheck(be, "CenterCrop", "{height: 4, width: 2}\n", kc_shape3(2, 3, 2), 2, 0, 0);
    gradcheck(be, "Rescaling", "{scale: -3, offset: 2}\n", kc_shape1(5), 2, 0, 0);
}
END_TEST

/* GlobalMaxPooling2D with ties: the gradient goes to the first maximum. */
START_TEST(test_global_max_ties) {
    KC_LOOP_DEVICE(be);
    mrig r;
    kc_error e;
    kc_shape in = kc_shape3(2, 2, 1);
    ck_assert_int_eq(mrig_build(&r, "GlobalMaxPooling2D", NULL, &in, 1, &e), 0);
    mrig_alloc(&r, be, 1);
    const float x[4] = {1, 3, 3, 2}, one = 2.5f;
    put(be, r.x[0], x, 4);
    mrig_forward(&r);
    put(be, r.dy, &one, 1);
    mrig_backward(&r);
    float dx[4];
    get(be, dx, r.dx[0], 4);
    const double want[4] = {0, 2.5, 0, 0};
    assert_values(dx, want, 4, 0);
    mrig_free(&r);
}
END_TEST

/* ---- shapes, aliases and argument errors ---- */

START_TEST(test_shapes_and_aliases) {
    tl t;
    expect_shape(must_build(&t, "GlobalAvgPool2D", NULL, kc_shape3(5, 6, 7)), kc_shape1(7));
    ck_assert_str_eq(t.l->cls->class_name, "GlobalAveragePooling2D");
    tl_free(&t);
    expect_shape(must_build(&t, "GlobalMaxPool2D", "{keepdims: true}\n", kc_shape3(5, 6, 7)),
                 kc_shape3(1, 1, 7));
    tl_free(&t);
    expect_shape(must_build(&t, "ZeroPadding2D", NULL, kc_shape3(5, 6, 7)), kc_shape3(7, 8, 7));
    ck_assert_int_eq(kc_layer_param_count(t.l, 0), 0);
    tl_free(&t);
    expect_shape(must_build(&t, "Cropping2D", NULL, kc_shape3(5, 6, 7)), kc_shape3(5, 6, 7));
    tl_free(&t);
    expect_shape(must_build(&t, "UpSampling2D", NULL, kc_shape3(5, 6, 7)), kc_shape3(10, 12, 7));
    tl_free(&t);
    expect_shape(must_build(&t, "Resizing", "{height: 3, width: 9}\n", kc_shape3(5, 6, 7)),
                 kc_shape3(3, 9, 7));
    tl_free(&t);
    expect_shape(must_build(&t, "CenterCrop", "{height: 9, width: 2}\n", kc_shape3(5, 6, 7)),
                 kc_shape3(9, 2, 7));
    tl_free(&t);
    expect_shape(must_build(&t, "Rescaling", "{scale: 1/255}\n", kc_shape2(5, 6)), kc_shape2(5, 6));
    tl_free(&t);
    expect_shape(must_build(&t, "Identity", NULL, kc_shape1(3)), kc_shape1(3));
    tl_free(&t);
}
END_TEST

START_TEST(test_argument_errors) {
    kc_shape img = kc_shape3(4, 5, 2), flat = kc_shape1(8);
    expect_error("ZeroPadding2D", "padding: [[1, 2], 3]\n", &img, "layer.yaml:1:10",
                 "2 lists of 2 integers");
    expect_error("ZeroPadding2D", "padding: -1\n", &img, "layer.yaml:1:10", "padding");
    expect_error("ZeroPadding2D", "padding: [[1, 2], [3, -4]]\n", &img, "layer.yaml:1:23",
                 "padding");
    expect_error("ZeroPadding2D", NULL, &flat, "", "(height, width, channels)");
    expect_error("Cropping2D", "cropping: [2, 1]\n", &img, "layer.yaml:1:1",
                 "smaller than the spatial dimensions");
    expect_error("UpSampling2D", "interpolation: bicubic\n", &img, "layer.yaml:1:16",
                 "'bicubic' is not supported yet");
    expect_error("UpSampling2D", "interpolation: cubic\n", &img, "layer.yaml:1:16",
                 "unknown value 'cubic'");
    expect_error("Resizing", "{height: 3, width: 3, interpolation: lanczos3}\n", &img,
                 "layer.yaml:1:38", "'lanczos3' is not supported yet");
    expect_error("UpSampling2D", "size: 0\n", &img, "layer.yaml:1:7", "size");
    expect_error("UpSampling2D", "size: 65536\n", &img, "layer.yaml:1:1", "too large");
    expect_error("Resizing", "width: 3\n", &img, "layer.yaml:1:1", "height");
    expect_error("Resizing",
                 "{height: 3, width: 3, crop_to_aspect_ratio: true, "
                 "pad_to_aspect_ratio: true}\n",
                 &img, "layer.yaml:1:", "only one of");
    expect_error("Resizing", "{height: 3, width: 3, fill_value: 2}\n", &img, "layer.yaml:1:35",
                 "only 0 (the default)");
    expect_error("CenterCrop", "{height: 0, width: 3}\n", &img, "layer.yaml:1:10", "height");
    expect_error("GlobalAveragePooling2D", "data_format: channels_first\n", &img, "layer.yaml:1:14",
                 "channels_first");
    expect_error("Rescaling", "offset: 1\n", &img, "layer.yaml:1:1", "scale");
    expect_error("Rescaling", "scale: abc\n", &img, "layer.yaml:1:8", "scale");
}
END_TEST

/* Keras's broadcast shapes of the elementwise merges, and its error. */
START_TEST(test_merge_broadcast_shapes) {
    mrig r;
    kc_error e;
    kc_shape se[2] = {kc_shape3(8, 8, 16), kc_shape3(1, 1, 16)};
    ck_assert_int_eq(mrig_build(&r, "Multiply", NULL, se, 2, &e), 0);
    expect_shape(r.t.l, kc_shape3(8, 8, 16));
    mrig_free(&r);
    kc_shape both[2] = {kc_shape2(3, 1), kc_shape3(2, 1, 4)};
    ck_assert_int_eq(mrig_build(&r, "Add", NULL, both, 2, &e), 0);
    expect_shape(r.t.l, kc_shape3(2, 3, 4));
    mrig_free(&r);
    kc_shape bad[2] = {kc_shape3(4, 4, 3), kc_shape1(5)};
    ck_assert_int_eq(mrig_build(&r, "Maximum", NULL, bad, 2, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "maximum") && strstr(e.msg, "incompatible shapes") &&
                      strstr(e.msg, "(4, 4, 3)") && strstr(e.msg, "(5,)"),
                  "%s", e.msg);
    mrig_free(&r);
    kc_shape bad2[2] = {kc_shape2(4, 3), kc_shape2(2, 3)};
    ck_assert_int_eq(mrig_build(&r, "Subtract", NULL, bad2, 2, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "(4, 3)") && strstr(e.msg, "(2, 3)"), "%s", e.msg);
    mrig_free(&r);
}
END_TEST

/* ---- end to end through the binary ---- */

static const char *se_model =
    "model:\n"
    "  name: se_net\n"
    "  layers:\n"
    "    - Input: {shape: [8, 8, 1], name: image}\n"
    "    - Rescaling: {scale: 0.00392156862745098, name: scale}\n"
    "    - ZeroPadding2D: {padding: 1, name: pad}\n"
    "    - Conv2D: {filters: 4, kernel_size: 3, activation: relu, name: conv}\n"
    "    - GlobalAveragePooling2D: {name: squeeze}\n"
    "    - Dense: {units: 4, activation: sigmoid, name: excite}\n"
    "    - Reshape: {target_shape: [1, 1, 4], name: gate}\n"
    "    - Multiply: {inputs: [conv, gate], name: scaled}\n"
    "    - UpSampling2D: {size: 2, name: up}\n"
    "    - MaxPooling2D: {pool_size: 4}\n"
    "    - GlobalAveragePooling2D: {name: pooled}\n"
    "    - Dense: {units: 4, activation: softmax, name: out}\n"
    "compile:\n"
    "  optimizer: {Adam: {learning_rate: 0.01}}\n"
    "  loss: sparse_categorical_crossentropy\n"
    "  metrics: [accuracy]\n"
    "data:\n"
    "  train: {x: train_x.npy, y: train_y.npy}\n"
    "  reshape: [8, 8, 1]\n"
    "fit: {epochs: 1, batch_size: 16, seed: 5}\n";

START_TEST(test_se_model_trains) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    dir = kc_test_tmpdir();
    make_blobs("train_x.npy", "train_y.npy", 24, 11); /* two steps: 16, then 8 */
    write_file("se.yaml", se_model);
    /* Keras 3: conv 40, excite 20, out 20 */
    ck_assert_msg(run("summary se.yaml") == 0, "summary failed: %s", err_buf);
    ck_assert_msg(strstr(out_buf, " Total params: 80 (320.00 B)"), "%s", out_buf);
    ck_assert_msg(strstr(out_buf, " Trainable params: 80 (320.00 B)"), "%s", out_buf);
    ck_assert_ptr_nonnull(strstr(out_buf, "(Multiply)"));
    ck_assert_ptr_nonnull(strstr(out_buf, "(None, 16, 16, 4)"));
    int st = run("train se.yaml --output run --threads 2");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    ck_assert_ptr_nonnull(strstr(out_buf, "2/2"));
    ck_assert_ptr_nonnull(strstr(out_buf, " - loss: "));
    ck_assert_msg(!strstr(out_buf, "nan"), "%s", out_buf);
    ck_assert(file_exists("run/last.safetensors"));
    /* a bad argument names its place in the file */
    char bad[4096];
    snprintf(bad, sizeof bad, "%s", se_model);
    char *p = strstr(bad, "padding: 1");
    memcpy(p, "padding: x", 10);
    write_file("bad.yaml", bad);
    ck_assert_int_eq(run("summary bad.yaml"), 2);
    ck_assert_msg(strstr(err_buf, "bad.yaml:6:32") && strstr(err_buf, "padding"), "%s", err_buf);
    kc_test_rmdir(dir);
    free(dir);
}
END_TEST

/* The end-to-end case runs first, in a child process of its own: under
 * LeakSanitizer, a process that both opened the OpenCL runtime and waited on
 * kerasc training runs can crash in the exit-time scan of thread-local
 * storage, so each half gets a process. */
static int run_cli_case(void) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return EXIT_FAILURE;
    if (pid == 0) {
        Suite *s = suite_create("layers_shape_cli");
        TCase *te = tcase_create("cli");
        tcase_set_timeout(te, 120);
        tcase_add_test(te, test_se_model_trains);
        suite_add_tcase(s, te);
        exit(kc_test_run(s));
    }
    int st;
    if (waitpid(pid, &st, 0) != pid) return EXIT_FAILURE;
    return WIFEXITED(st) ? WEXITSTATUS(st) : EXIT_FAILURE;
}

int main(void) {
    int cli = run_cli_case();
    Suite *s = suite_create("layers_shape");
    TCase *tc = tcase_create("config");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_shapes_and_aliases);
    tcase_add_test(tc, test_argument_errors);
    tcase_add_test(tc, test_merge_broadcast_shapes);
    suite_add_tcase(s, tc);

    TCase *tv = tcase_create("compute");
    tcase_set_timeout(tv, 120);
    int nb = kc_test_backend_count();
    tcase_add_loop_test(tv, test_keras_fixture, 0, nb);
    tcase_add_loop_test(tv, test_gradchecks, 0, nb);
    tcase_add_loop_test(tv, test_global_max_ties, 0, nb);
    suite_add_tcase(s, tv);
    int rc = kc_test_run(s);
    return rc == EXIT_SUCCESS && cli == EXIT_SUCCESS ? EXIT_SUCCESS : EXIT_FAILURE;
}

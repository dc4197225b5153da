/* Embedding and Masking: Keras's weights, shapes, masks and errors; forward,
 * mask and gradients against Keras's own numbers
 * (tests/fixtures/layers/embed.safetensors, made by make_embed.py there) on
 * every backend; finite differences of the embeddings; the host-side id
 * check; a small text model trained and summarized through the kerasc
 * binary. */
#include "tests/layercheck.h"

#include "models/layers/embedding.h"
#include "tests/clitest.h"

/* ---- weights, shapes, masks, errors ---- */

START_TEST(test_config) {
    tl t;
    kc_layer *l = must_build(&t, "Embedding", "input_dim: 1000\noutput_dim: 64\n", kc_shape1(10));
    expect_shape(l, kc_shape2(10, 64));
    ck_assert_int_eq(l->nparams, 1);
    ck_assert_str_eq(l->params[0].name, "embeddings");
    ck_assert(kc_shape_equal(&l->params[0].shape, &(kc_shape){2, {1000, 64}}));
    ck_assert_int_eq(l->params[0].init.kind, KC_INIT_RANDOM_UNIFORM);
    ck_assert_int_eq(kc_layer_param_count(l, 1), 64000);
    ck_assert_int_eq(l->cls->mask_rule(l), KC_MASK_NONE);
    ck_assert_str_eq(l->name, "embedding");
    tl_free(&t);

    l = must_build(&t, "Embedding",
                   "input_dim: 5\noutput_dim: 3\nmask_zero: true\ninput_length: 7\n", kc_shape1(7));
    ck_assert_int_eq(l->cls->mask_rule(l), KC_MASK_PRODUCE);
    tl_free(&t);

    l = must_build(&t, "Embedding", "input_dim: 5\noutput_dim: 3\n", kc_shape3(2, 3, 4));
    expect_shape(l, (kc_shape){4, {2, 3, 4, 3}});
    tl_free(&t);

    l = must_build(&t, "Embedding",
                   "input_dim: 5\noutput_dim: 3\nembeddings_initializer: zeros\n"
                   "embeddings_regularizer: {L2: {l2: 0.01}}\nembeddings_constraint: non_neg\n",
                   kc_shape1(4));
    ck_assert_int_eq(l->params[0].init.kind, KC_INIT_ZEROS);
    ck_assert(kc_regularizer_active(&l->params[0].regularizer));
    tl_free(&t);

    l = must_build(&t, "Masking", NULL, kc_shape2(6, 3));
    expect_shape(l, kc_shape2(6, 3));
    ck_assert_int_eq(l->nparams, 0);
    ck_assert_int_eq(l->cls->mask_rule(l), KC_MASK_PRODUCE);
    tl_free(&t);
}
END_TEST

START_TEST(test_errors) {
    kc_shape t7 = kc_shape1(7), t34 = kc_shape2(3, 4);
    expect_error("Embedding", "input_dim: 0\noutput_dim: 3\n", &t7, "layer.yaml:1:12", "input_dim");
    expect_error("Embedding", "input_dim: 10\n", &t7, "layer.yaml:1:1", "output_dim");
    expect_error("Embedding", "input_dim: 10\noutput_dim: -2\n", &t7, "layer.yaml:2:13",
                 "output_dim");
    expect_error("Embedding", "input_dim: 10\noutput_dim: 2\ninput_length: 8\n", &t7,
                 "layer.yaml:3:15", "input_length 8 does not match the input shape (None, 7)");
    expect_error("Embedding", "input_dim: 10\noutput_dim: 2\nmask_zero: true\n", &t34,
                 "layer.yaml:1:1", "mask_zero");
    expect_error("Embedding", "input_dim: 10\noutput_dim: 2\nweights: [1]\n", &t7,
                 "layer.yaml:3:10", "weights");
    expect_error("Embedding", "input_dim: 10\noutput_dim: 2\nmask_zeros: true\n", &t7,
                 "layer.yaml:3:1", "mask_zero");
    expect_error("Masking", "mask_value: zero\n", &t34, "layer.yaml:1:13", "mask_value");
}
END_TEST

/* The host-side check names the layer, the sample and the position. */
START_TEST(test_check_ids) {
    tl t;
    kc_layer *l = must_build(&t, "Embedding", "input_dim: 4\noutput_dim: 2\n", kc_shape1(3));
    const float ok[6] = {0, 1, 2, 3, 3, 0}, bad[6] = {0, 1, 2, 3, 4, 0}, frac[3] = {0, 0.5f, 1};
    kc_error e = {0};
    ck_assert_int_eq(kc_embedding_check_ids(l, ok, 2, 3, &e), KC_OK);
    ck_assert_int_eq(kc_embedding_check_ids(l, bad, 2, 3, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "'embedding'") && strstr(e.msg, "sample 1, position 1") &&
                      strstr(e.msg, "id 4 ") && strstr(e.msg, "[0, 4)"),
                  "%s", e.msg);
    ck_assert_int_eq(kc_embedding_check_ids(l, frac, 1, 3, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "sample 0, position 1: id 0.5 "), "%s", e.msg);
    tl_free(&t);
}
END_TEST

/* ---- Keras's numbers ---- */

typedef struct embed_case {
    const char *name, *cls, *yaml;
} embed_case;

static const embed_case cases[] = {
    {"emb", "Embedding", "input_dim: 10\noutput_dim: 4\n"},
    {"emb_mask", "Embedding", "input_dim: 7\noutput_dim: 3\nmask_zero: true\n"},
    {"emb_rank2", "Embedding", "input_dim: 6\noutput_dim: 2\n"},
    {"mask", "Masking", NULL},
    {"mask_v", "Masking", "mask_value: 1.5\n"},
};

static void expect_dev(const rig *r, const char *cs, const char *what, kc_buf b,
                       const kc_st_tensor *t) {
    size_t n = (size_t)kc_shape_numel(&t->shape);
    float *got = malloc(n * sizeof(float));
    get(r->d, got, b, n);
    char msg[256];
    snprintf(msg, sizeof msg, "%s %s", cs, what);
    expect_near_keras(msg, r->d->name, got, t->data, n, 1e-6f);
    free(got);
}

static void run_case(kc_device *be, kc_st_file *f, const embed_case *c) {
    const kc_st_tensor *xt = layer_fixture_tensor(f, c->name, "x");
    kc_shape in = {xt->shape.rank - 1, {0}};
    for (int k = 1; k < xt->shape.rank; k++)
        in.d[k - 1] = xt->shape.d[k];
    int batch = (int)xt->shape.d[0];
    tl t;
    kc_layer *l = must_build(&t, c->cls, c->yaml, in);
    rig r;
    rig_init(&r, be, l, batch);
    for (int i = 0; i < l->nparams; i++)
        set_param(&r, i, layer_fixture_tensor(f, c->name, l->params[i].name)->data);
    put(be, r.x, xt->data, r.nin);
    char key[128];
    snprintf(key, sizeof key, "%s.mask", c->name);
    const kc_st_tensor *mt = kc_st_find(f, key);
    ck_assert_int_eq(mt != NULL, l->cls->mask_rule(l) == KC_MASK_PRODUCE);
    kc_exec ex = rig_exec(&r, 1);
    size_t nmask = (size_t)batch * (size_t)in.d[0];
    kc_buf mask = dev_alloc(be, nmask);
    ex.mask_out = mask;
    layer_forward(&r, &ex);
    expect_dev(&r, c->name, "y", r.y, layer_fixture_tensor(f, c->name, "y"));
    if (mt) expect_dev(&r, c->name, "mask", mask, mt);
    put(be, r.dy, layer_fixture_tensor(f, c->name, "c")->data, r.nout);
    layer_backward(&r, &ex, r.dx);
    if (l->nparams) {
        expect_dev(&r, c->name, "dembeddings", l->params[0].grad,
                   layer_fixture_tensor(f, c->name, "dembeddings"));
        float *dx = malloc(r.nin * sizeof(float));
        get(be, dx, r.dx, r.nin);
        for (size_t i = 0; i < r.nin; i++)
            ck_assert_msg(dx[i] == 0.0f, "%s dx[%zu] = %g", c->name, i, dx[i]);
        free(dx);
    } else {
        expect_dev(&r, c->name, "dx", r.dx, layer_fixture_tensor(f, c->name, "dx"));
    }
    kc_free(be, &mask);
    rig_free(&r);
    tl_free(&t);
}

START_TEST(test_keras_fixture) {
    KC_LOOP_DEVICE(be);
    kc_st_file *f = layer_fixture("embed");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(be, f, &cases[i]);
}
END_TEST

/* ---- finite differences of the embeddings, accumulation, refused ids ---- */

static double emb_objective(rig *r, const float *ids, const float *c) {
    float *y = run_forward(r, ids, 1);
    double s = 0;
    for (size_t i = 0; i < r->nout; i++)
        s += (double)c[i] * y[i];
    free(y);
    return s;
}

START_TEST(test_gradcheck) {
    KC_LOOP_DEVICE(be);
    enum { ROWS = 9, DIM = 3, T = 5, B = 4 };
    tl t;
    kc_layer *l = must_build(&t, "Embedding", "input_dim: 9\noutput_dim: 3\n", kc_shape1(T));
    rig r;
    rig_init(&r, be, l, B);
    float ids[B * T], w[ROWS * DIM], c[B * T * DIM], g[ROWS * DIM], twice[ROWS * DIM];
    for (int i = 0; i < B * T; i++) /* rows 0..7, some twice; row 8 never */
        ids[i] = (float)kc_rng_below(2024, 30, (uint64_t)i, ROWS - 1);
    fill_random(w, ROWS * DIM, 31, -1, 1);
    fill_random(c, B * T * DIM, 32, -1, 1);
    set_param(&r, 0, w);
    float *y = run_forward(&r, ids, 1);
    free(y);
    kc_exec ex = rig_exec(&r, 1);
    put(be, r.dy, c, r.nout);
    layer_backward(&r, &ex, KC_BUF_NULL);
    get(be, g, l->params[0].grad, ROWS * DIM);
    const float eps = 1e-2f;
    for (int i = 0; i < ROWS * DIM; i++) {
        float keep = w[i];
        w[i] = keep + eps;
        set_param(&r, 0, w);
        double fp = emb_objective(&r, ids, c);
        w[i] = keep - eps;
        set_param(&r, 0, w);
        double fm = emb_objective(&r, ids, c);
        w[i] = keep;
        set_param(&r, 0, w);
        check_close_grad("dembeddings", (size_t)i, (fp - fm) / (2.0 * eps), g[i]);
    }
    for (int j = 0; j < DIM; j++)
        ck_assert_float_eq(g[8 * DIM + j], 0.0f);
    ex.accumulate = 1; /* adds into the gradient */
    layer_backward(&r, &ex, KC_BUF_NULL);
    get(be, twice, l->params[0].grad, ROWS * DIM);
    for (int i = 0; i < ROWS * DIM; i++)
        ck_assert_msg(fabsf(twice[i] - 2 * g[i]) <= 1e-6f * (1 + fabsf(g[i])), "accumulate [%d]",
                      i);
    /* an id out of range: the cpu and reference backends refuse it */
    ids[6] = ROWS;
    put(be, r.x, ids, r.nin);
    ex.accumulate = 0;
    int rc = l->cls->forward(l, &ex, r.x, r.y);
    if (!strcmp(be->be->name, "cpu") || !strcmp(be->be->name, "reference")) {
        ck_assert_int_eq(rc, KC_ERUNTIME);
        ck_assert_msg(
            strstr(be->err.msg, "layer 'embedding' (Embedding): embedding: id 9 at position 6"),
            "%s", be->err.msg);
        kc_device_clear_error(be);
    } else {
        ck_assert_int_eq(rc, KC_OK);
    }
    rig_free(&r);
    tl_free(&t);
    gradcheck(be, "Masking", NULL, kc_shape2(4, 3), 2, 0, 0);
    gradcheck(be, "Masking", "mask_value: 0.5\n", kc_shape3(2, 2, 3), 2, 0, 1);
}
END_TEST

/* ---- through the kerasc binary ---- */

static const char *cli_model = "model:\n"
                               "  name: bag_of_ids\n"
                               "  layers:\n"
                               "    - Input: {shape: [12], name: ids}\n"
                               "    - Embedding: {input_dim: 50, output_dim: 8, name: emb}\n"
                               "    - GlobalAveragePooling1D\n"
                               "    - Dense: {units: 2, activation: softmax}\n"
                               "compile:\n"
                               "  optimizer: {Adam: {learning_rate: 0.05}}\n"
                               "  loss: sparse_categorical_crossentropy\n"
                               "  metrics: [accuracy]\n"
                               "data:\n"
                               "  train: {x: train_x.npy, y: train_y.npy}\n"
                               "  test: {x: test_x.npy, y: test_y.npy}\n"
                               "fit: {epochs: 4, batch_size: 16, seed: 3}\n";

/* ids in [1, 50); the label says whether ids below 25 are the majority */
static void make_ids(const char *xname, const char *yname, int n, uint64_t seed, int bad) {
    float *x = calloc((size_t)n * 12, sizeof *x), *y = calloc((size_t)n, sizeof *y);
    for (int i = 0; i < n; i++) {
        int low = 0;
        for (int k = 0; k < 12; k++) {
            float v = 1 + (float)kc_rng_below(seed, (uint64_t)i, (uint64_t)k, 49);
            x[i * 12 + k] = v;
            low += v < 25;
        }
        y[i] = low > 6;
    }
    if (bad) x[3 * 12 + 5] = 50;
    write_npy(xname, x, kc_shape2(n, 12));
    write_npy(yname, y, kc_shape1(n));
    free(x);
    free(y);
}

static void setup(void) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    dir = kc_test_tmpdir();
    make_ids("train_x.npy", "train_y.npy", 320, 11, 0);
    make_ids("test_x.npy", "test_y.npy", 96, 12, 0);
}

static void teardown(void) {
    kc_test_rmdir(dir);
    free(dir);
}

START_TEST(test_cli_model) {
    write_file("emb.yaml", cli_model);
    int st = run("summary emb.yaml");
    ck_assert_msg(st == 0, "summary failed: %s", err_buf);
    /* Keras: embedding 400, dense 18 */
    ck_assert_msg(strstr(out_buf, "Total params: 418 "), "%s", out_buf);
    ck_assert_msg(strstr(out_buf, "Trainable params: 418 "), "%s", out_buf);
    ck_assert_msg(strstr(out_buf, "Non-trainable params: 0 "), "%s", out_buf);

    st = run("train emb.yaml --output run --threads 2");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    char *tl = strstr(out_buf, "Test - loss: ");
    ck_assert_ptr_nonnull(tl);
    double test_loss, test_acc;
    ck_assert_int_eq(sscanf(tl, "Test - loss: %lf - accuracy: %lf", &test_loss, &test_acc), 2);
    ck_assert_msg(test_acc >= 0.8, "test accuracy %.4f", test_acc);

    /* an id beyond input_dim in the data is refused, not read out of bounds */
    make_ids("bad_x.npy", "bad_y.npy", 64, 13, 1);
    char bad[4096];
    const char *at = strstr(cli_model, "train_x.npy, y: train_y.npy");
    ck_assert_ptr_nonnull(at);
    snprintf(bad, sizeof bad, "%.*sbad_x.npy, y: bad_y.npy%s", (int)(at - cli_model), cli_model,
             at + strlen("train_x.npy, y: train_y.npy"));
    write_file("bad_ids.yaml", bad);
    st = run("train bad_ids.yaml --output bad --threads 2");
    ck_assert_msg(st != 0, "trained on an id out of range: %s", out_buf);
    ck_assert_msg(strstr(err_buf, "id 50") && strstr(err_buf, "[0, 50)"), "%s", err_buf);
    /* checked before training starts, naming the sample and position in the file */
    ck_assert_msg(strstr(err_buf, "the training samples") &&
                      strstr(err_buf, "sample 3, position 5"),
                  "%s", err_buf);
    ck_assert_msg(access(path_in("bad/last.safetensors"), F_OK) != 0, "a checkpoint was written");

    /* an argument error names its place */
    write_file("bad.yaml", "model:\n  layers:\n    - Input: {shape: [12]}\n"
                           "    - Embedding: {input_dim: 50, output_dim: 8, input_length: 10}\n");
    st = run("summary bad.yaml");
    ck_assert_int_eq(st, 2);
    ck_assert_msg(strstr(err_buf, "bad.yaml:4:") && strstr(err_buf, "input_length 10"), "%s",
                  err_buf);
}
END_TEST

int main(void) {
    Suite *s = suite_create("layers_embed");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_config);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_check_ids);
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
    tcase_add_test(tcl, test_cli_model);
    suite_add_tcase(s, tcl);
    return kc_test_run(s);
}

/* The wrappers TimeDistributed and Bidirectional: arguments and errors with
 * file:line:column, shapes, weight names, Keras's own numbers
 * (tests/fixtures/layers/wrap.safetensors, made by make_wrap.py) on every
 * backend, finite-difference gradients, masks, a Keras-written model JSON
 * through `kerasc summary` / `convert`, and a model trained through the
 * binary. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/clitest.h"
#include "tests/layercheck.h"

static int have(const char *cls) {
    return kc_layer_class_find(cls) != NULL;
}

/* Bidirectional's tests need the recurrent layers. */
static int have_rnn(void) {
    return have("LSTM") && have("GRU") && have("SimpleRNN");
}

/* ---- arguments, shapes and names ---- */

START_TEST(test_time_distributed_config) {
    tl t;
    kc_layer *l =
        must_build(&t, "TimeDistributed", "layer: {Dense: {units: 3}}\n", kc_shape2(4, 5));
    expect_shape(l, kc_shape2(4, 3));
    ck_assert_int_eq(l->nparams, 2);
    ck_assert_str_eq(l->params[0].name, "dense/kernel");
    ck_assert_str_eq(l->params[1].name, "dense/bias");
    ck_assert_int_eq(kc_layer_param_count(l, 0), 18);
    ck_assert_int_eq(l->cls->mask_rule(l), KC_MASK_PROPAGATE);
    tl_free(&t);

    /* Keras's JSON form, the inner activation applied by the model on the wrapper */
    l = must_build(&t, "TimeDistributed",
                   "layer: {class_name: Dense, config: {units: 4, activation: tanh, name: proj,\n"
                   "        dtype: {class_name: DTypePolicy, config: {name: float32}}}}\n",
                   kc_shape3(2, 3, 5));
    expect_shape(l, kc_shape3(2, 3, 4));
    ck_assert_int_eq(l->activation.act, KC_ACT_TANH);
    ck_assert_str_eq(l->params[0].name, "proj/kernel");
    tl_free(&t);

    l = must_build(&t, "TimeDistributed",
                   "layer: {Conv2D: {filters: 3, kernel_size: 3, trainable: false}}\n",
                   (kc_shape){4, {2, 6, 5, 2}});
    expect_shape(l, (kc_shape){4, {2, 4, 3, 3}});
    ck_assert_int_eq(kc_layer_param_count(l, 0), 57);
    ck_assert_int_eq(kc_layer_param_count(l, 1), 0);
    ck_assert_int_eq(l->cls->flops(l), 2 * 2 * (4 * 3 * 3) * (3 * 3 * 2));
    tl_free(&t);
}
END_TEST

START_TEST(test_time_distributed_errors) {
    kc_shape s2 = kc_shape2(4, 5), s1 = kc_shape1(5);
    expect_error("TimeDistributed", "units: 3\n", &s2, "layer.yaml:1:1",
                 "requires the argument 'layer'");
    expect_error("TimeDistributed", "layer: {Dense: {units: 0}}\n", &s2, "layer.yaml:1:24",
                 "'units'");
    expect_error("TimeDistributed", "layer: {Dense: {units: 3, unitz: 2}}\n", &s2,
                 "layer.yaml:1:27", "unknown key 'unitz'");
    expect_error("TimeDistributed", "layer: {Dence: {units: 3}}\n", &s2, "layer.yaml:1:9",
                 "unknown layer 'Dence'");
    expect_error("TimeDistributed", "layer: {class_name: Dense, config: {units: 3}, x: 1}\n", &s2,
                 "layer.yaml:1:48", "unknown key 'x'");
    expect_error("TimeDistributed", "layer: {Dot: {axes: 1}}\n", &s2, "layer.yaml:1:9",
                 "takes several inputs");
    expect_error("TimeDistributed", "layer: [Dense]\n", &s2, "layer.yaml:1:8", "must be a layer");
    expect_error("TimeDistributed", "layer: {Dense: {units: 3, dtype: float16}}\n", &s2,
                 "layer.yaml:1:34", "float32");
    expect_error("TimeDistributed",
                 "layer: {Dense: {units: 3, activity_regularizer: {L2: {l2: 0.1}}}}\n", &s2,
                 "layer.yaml:1:", "activity_regularizer");
    /* shape errors name the wrapper, or the inner layer at its own place */
    expect_error("TimeDistributed", "layer: {Dense: {units: 3}}\n", &s1, "layer.yaml:1:1",
                 "at least 2 axes");
    expect_error("TimeDistributed", "layer:\n  Conv2D: {filters: 3, kernel_size: 3}\n", &s2,
                 "layer.yaml:2:3", "Conv2D");
    /* statistics adapted to the data would see the wrong tensor; given ones are fine */
    expect_error("TimeDistributed", "layer: Normalization\n", &s2, "layer.yaml:1:1",
                 "adapted to the data");
    tl t;
    must_build(&t, "TimeDistributed", "layer: {Normalization: {mean: 1, variance: 4}}\n", s2);
    tl_free(&t);
}
END_TEST

START_TEST(test_bidirectional_config) {
    if (!have_rnn()) return;
    tl t;
    kc_layer *l =
        must_build(&t, "Bidirectional", "layer: {LSTM: {units: 3, return_sequences: true}}\n",
                   kc_shape2(4, 2));
    expect_shape(l, kc_shape2(4, 6));
    ck_assert_int_eq(l->nparams, 6);
    ck_assert_msg(!strncmp(l->params[0].name, "forward_lstm/", 13), "%s", l->params[0].name);
    ck_assert_msg(!strncmp(l->params[3].name, "backward_lstm/", 14), "%s", l->params[3].name);
    ck_assert_int_eq(kc_layer_param_count(l, 0), 2 * 4 * 3 * (2 + 3 + 1));
    ck_assert_int_eq(l->cls->mask_rule(l), KC_MASK_CONSUME_PROPAGATE);
    tl_free(&t);

    l = must_build(&t, "Bidirectional",
                   "layer: {GRU: {units: 2, return_state: true, name: enc}}\nmerge_mode: null\n",
                   kc_shape2(5, 3));
    ck_assert_int_eq(l->noutputs, 4); /* y, y_rev, h, h_rev */
    expect_shape(l, kc_shape1(2));
    for (int k = 0; k < 4; k++)
        ck_assert_int_eq(kc_shape_numel(&l->out_shapes[k]), 2);
    ck_assert_msg(!strncmp(l->params[0].name, "forward_enc/", 12), "%s", l->params[0].name);
    ck_assert_msg(!strncmp(l->params[3].name, "backward_enc/", 13), "%s", l->params[3].name);
    ck_assert_int_eq(l->cls->mask_rule(l), KC_MASK_CONSUME);
    tl_free(&t);

    l = must_build(&t, "Bidirectional",
                   "layer: {LSTM: {units: 3, return_state: true}}\nmerge_mode: sum\n",
                   kc_shape2(5, 3));
    ck_assert_int_eq(l->noutputs, 5); /* y, h, c, h_rev, c_rev */
    tl_free(&t);

    l = must_build(&t, "TimeDistributed",
                   "layer: {Bidirectional: {layer: {LSTM: {units: 2}}, merge_mode: sum}}\n",
                   kc_shape3(3, 4, 2));
    expect_shape(l, kc_shape2(3, 2));
    ck_assert_int_eq(l->nparams, 6);
    ck_assert_msg(!strncmp(l->params[0].name, "bidirectional/forward_lstm/", 27), "%s",
                  l->params[0].name);
    tl_free(&t);

    /* Keras's JSON names its layers forward_x / backward_x: kept as they are */
    l = must_build(&t, "Bidirectional",
                   "layer: {class_name: SimpleRNN, config: {units: 2, name: forward_rnn}}\n"
                   "backward_layer: {class_name: SimpleRNN, config: {units: 2, name: backward_rnn,"
                   " go_backwards: true}}\n",
                   kc_shape2(5, 3));
    ck_assert_msg(!strncmp(l->params[0].name, "forward_rnn/", 12), "%s", l->params[0].name);
    ck_assert_msg(!strncmp(l->params[3].name, "backward_rnn/", 13), "%s", l->params[3].name);
    tl_free(&t);
}
END_TEST

START_TEST(test_bidirectional_errors) {
    if (!have_rnn()) return;
    kc_shape s = kc_shape2(4, 3);
    expect_error("Bidirectional", "layer: {LSTM: {units: 3}}\nmerge_mode: max\n", &s,
                 "layer.yaml:2:13", "merge_mode");
    expect_error("Bidirectional", "merge_mode: sum\n", &s, "layer.yaml:1:1",
                 "requires the argument 'layer'");
    expect_error("Bidirectional", "layer: {Dense: {units: 3}}\n", &s, "layer.yaml:1:9",
                 "go_backwards");
    expect_error("Bidirectional", "layer: {LSTM: {units: 3, go_backwards: true}}\n", &s,
                 "layer.yaml:1:9", "different go_backwards");
    expect_error("Bidirectional", "layer: {LSTM: {units: 3}}\nbackward_layer: {LSTM: {units: 3}}\n",
                 &s, "layer.yaml:2:18", "different go_backwards");
    expect_error("Bidirectional",
                 "layer: {LSTM: {units: 3}}\n"
                 "backward_layer: {LSTM: {units: 3, go_backwards: true, return_sequences: true}}\n",
                 &s, "layer.yaml:2:18", "'return_sequences'");
    expect_error("Bidirectional",
                 "layer: {LSTM: {units: 3}}\n"
                 "backward_layer: {GRU: {units: 2, go_backwards: true}}\n",
                 &s, "layer.yaml:", "backward layer");
    expect_error("Bidirectional", "layer: {LSTM: {units: 3, unitz: 1}}\n", &s, "layer.yaml:1:26",
                 "unknown key 'unitz'");
    expect_error("Bidirectional", "layer: {LSTM: {units: 3}}\nweights: [1]\n", &s,
                 "layer.yaml:2:10", "not supported");
}
END_TEST

/* ---- Keras's numbers ---- */

typedef struct wrig {
    kc_device *d;
    kc_layer *l;
    int batch;
    size_t nin, nout;
    kc_buf x, y, dy, dx, ws, mask;
} wrig;

static void wrig_init(wrig *r, kc_device *d, kc_layer *l, int batch) {
    memset(r, 0, sizeof *r);
    r->d = d;
    r->l = l;
    r->batch = batch;
    r->nin = (size_t)kc_shape_numel(&l->in_shape) * (size_t)batch;
    for (int k = 0; k < l->noutputs; k++)
        r->nout += (size_t)kc_shape_numel(&l->out_shapes[k]) * (size_t)batch;
    r->x = dev_alloc(d, r->nin);
    r->dx = dev_alloc(d, r->nin);
    r->y = dev_alloc(d, r->nout);
    r->dy = dev_alloc(d, r->nout);
    for (int i = 0; i < l->nparams; i++) {
        size_t n = (size_t)kc_shape_numel(&l->params[i].shape);
        l->params[i].value = dev_alloc(d, n);
        l->params[i].grad = dev_alloc(d, n);
    }
    size_t buf = l->cls->buffer_bytes ? l->cls->buffer_bytes(l, batch, d) : 0;
    l->buf = buf ? kc_test_alloc(d, buf) : KC_BUF_NULL;
    size_t ws = l->cls->workspace_bytes ? l->cls->workspace_bytes(l, batch, d) : 0;
    r->ws = ws ? kc_test_alloc(d, ws) : KC_BUF_NULL;
    r->mask = KC_BUF_NULL;
}

static void wrig_free(wrig *r) {
    kc_layer *l = r->l;
    for (int i = 0; i < l->nparams; i++) {
        kc_free(r->d, &l->params[i].value);
        kc_free(r->d, &l->params[i].grad);
    }
    kc_free(r->d, &l->buf);
    kc_buf *b[] = {&r->ws, &r->x, &r->dx, &r->y, &r->dy, &r->mask};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        kc_free(r->d, b[i]);
    kc_test_ok(r->d, "wrapper rig");
}

static kc_exec wrig_exec(const wrig *r) {
    kc_exec ex = {0};
    ex.dev = r->d;
    ex.batch = r->batch;
    ex.seed = 99;
    ex.ws = r->ws;
    ex.mask = r->mask;
    return ex;
}

static void wrig_forward(wrig *r) {
    kc_exec ex = wrig_exec(r);
    int rc = r->l->cls->forward(r->l, &ex, r->x, r->y);
    ck_assert_msg(rc == 0, "%s forward on %s: %s", r->l->name, r->d->name, r->d->err.msg);
}

static void wrig_backward(wrig *r, kc_buf dx, int accumulate) {
    kc_exec ex = wrig_exec(r);
    ex.accumulate = accumulate;
    int rc = r->l->cls->backward(r->l, &ex, r->x, r->y, r->dy, dx);
    ck_assert_msg(rc == 0, "%s backward on %s: %s", r->l->name, r->d->name, r->d->err.msg);
}

static float *dev_get(kc_device *d, kc_buf b, size_t n) {
    float *v = malloc(n * sizeof *v);
    get(d, v, b, n);
    return v;
}

/* Host activation of the pre-activation output (the model applies it). */
static void host_activation(const kc_layer *l, float *v, size_t n) {
    if (l->activation.act == KC_ACT_LINEAR) return;
    ck_assert_int_eq(l->activation.act, KC_ACT_TANH);
    for (size_t i = 0; i < n; i++)
        v[i] = tanhf(v[i]);
}

static int case_needs_rnn(const char *cls) {
    return !strcmp(cls, "Bidirectional");
}

static void run_fixture_case(kc_device *be, kc_st_file *f, const char *cs) {
    char key[128];
    snprintf(key, sizeof key, "%s.class", cs);
    const char *cls = kc_st_meta(f, key);
    snprintf(key, sizeof key, "%s.args", cs);
    const char *args = kc_st_meta(f, key);
    ck_assert_msg(cls && args, "fixture lacks the metadata of %s", cs);
    if (case_needs_rnn(cls) && !have_rnn()) return;
    const kc_st_tensor *xt = layer_fixture_tensor(f, cs, "x");
    kc_shape in = {xt->shape.rank - 1, {0}};
    for (int k = 1; k < xt->shape.rank; k++)
        in.d[k - 1] = xt->shape.d[k];
    char yaml[1024];
    snprintf(yaml, sizeof yaml, "%s\n", args);
    tl t;
    kc_layer *l = must_build(&t, cls, yaml, in);
    wrig r;
    wrig_init(&r, be, l, (int)xt->shape.d[0]);
    for (int i = 0; i < l->nparams; i++) {
        snprintf(key, sizeof key, "w.%d", i);
        const kc_st_tensor *w = layer_fixture_tensor(f, cs, key);
        ck_assert_msg(kc_shape_numel(&w->shape) == kc_shape_numel(&l->params[i].shape),
                      "%s: %s has %lld values, Keras %lld", cs, l->params[i].name,
                      (long long)kc_shape_numel(&l->params[i].shape),
                      (long long)kc_shape_numel(&w->shape));
        set_param((rig *)&(rig){.d = be, .l = l}, i, w->data);
    }
    snprintf(key, sizeof key, "%s.mask", cs);
    const kc_st_tensor *mt = kc_st_find(f, key);
    if (mt) {
        size_t n = (size_t)kc_shape_numel(&mt->shape);
        r.mask = dev_alloc(be, n);
        put(be, r.mask, mt->data, n);
    }
    put(be, r.x, xt->data, r.nin);
    wrig_forward(&r);
    const kc_st_tensor *yt = layer_fixture_tensor(f, cs, "y");
    ck_assert_int_eq((size_t)kc_shape_numel(&yt->shape), r.nout);
    float *y = dev_get(be, r.y, r.nout);
    host_activation(l, y, r.nout);
    char what[160];
    snprintf(what, sizeof what, "%s y", cs);
    expect_near_keras(what, be->name, y, yt->data, r.nout, 2e-6f);
    free(y);
    if (l->activation.act == KC_ACT_LINEAR) { /* gradients of sum(y c) */
        put(be, r.dy, layer_fixture_tensor(f, cs, "c")->data, r.nout);
        wrig_backward(&r, r.dx, 0);
        float *dx = dev_get(be, r.dx, r.nin);
        snprintf(what, sizeof what, "%s dx", cs);
        expect_near_keras(what, be->name, dx, layer_fixture_tensor(f, cs, "dx")->data, r.nin,
                          1e-5f);
        free(dx);
        for (int i = 0; i < l->nparams; i++) {
            size_t n = (size_t)kc_shape_numel(&l->params[i].shape);
            float *g = dev_get(be, l->params[i].grad, n);
            snprintf(key, sizeof key, "dw.%d", i);
            snprintf(what, sizeof what, "%s d%s", cs, l->params[i].name);
            expect_near_keras(what, be->name, g, layer_fixture_tensor(f, cs, key)->data, n, 1e-5f);
            free(g);
        }
    }
    wrig_free(&r);
    tl_free(&t);
}

START_TEST(test_keras_fixture) {
    KC_LOOP_DEVICE(be);
    kc_st_file *f = layer_fixture("wrap");
    const char *list = kc_st_meta(f, "cases");
    ck_assert_ptr_nonnull(list);
    char *copy = strdup(list), *save = NULL;
    int n = 0;
    for (char *cs = strtok_r(copy, ",", &save); cs; cs = strtok_r(NULL, ",", &save), n++)
        run_fixture_case(be, f, cs);
    free(copy);
    ck_assert_int_ge(n, 15);
}
END_TEST

/* Keras's weight path with the cell's segment ("lstm_cell/") left out. */
static void strip_cells(char *p) {
    static const char *const cells[] = {"lstm_cell/", "gru_cell/", "simple_rnn_cell/"};
    for (size_t c = 0; c < 3; c++)
        for (char *at; (at = strstr(p, cells[c]));)
            memmove(at, at + strlen(cells[c]), strlen(at + strlen(cells[c])) + 1);
}

/* The weight paths Keras gives the first case of each wrapper: the wrapper's
 * part of every path is Keras's (the recurrent layers name their weights
 * without the cell's segment). */
START_TEST(test_keras_weight_names) {
    kc_st_file *f = layer_fixture("wrap");
    tl t;
    kc_layer *l =
        must_build(&t, "TimeDistributed", "layer: {Dense: {units: 3}}\n", kc_shape2(4, 5));
    char want[1024] = "";
    for (int i = 0; i < l->nparams; i++) {
        strcat(want, i ? ",time_distributed/" : "time_distributed/");
        strcat(want, l->params[i].name);
    }
    ck_assert_str_eq(kc_st_meta(f, "td_dense.paths"), want);
    tl_free(&t);
    if (!have_rnn()) return;
    l = must_build(&t, "Bidirectional", "layer: {LSTM: {units: 3, return_sequences: true}}\n",
                   kc_shape2(4, 3));
    want[0] = 0;
    for (int i = 0; i < l->nparams; i++) {
        strcat(want, i ? ",bidirectional/" : "bidirectional/");
        strcat(want, l->params[i].name);
    }
    char keras[1024];
    snprintf(keras, sizeof keras, "%s", kc_st_meta(f, "bi_lstm_concat_seq.paths"));
    strip_cells(keras);
    strip_cells(want);
    ck_assert_str_eq(keras, want);
    tl_free(&t);
}
END_TEST

/* ---- finite differences, accumulation, frozen wrappers ---- */

START_TEST(test_gradchecks) {
    KC_LOOP_DEVICE(be);
    gradcheck(be, "TimeDistributed", "layer: {Dense: {units: 3}}\n", kc_shape2(3, 4), 2, 0, 0);
    gradcheck(be, "TimeDistributed", "layer: {Dense: {units: 2}}\n", kc_shape3(2, 3, 2), 2, 0, 1);
    gradcheck(be, "TimeDistributed",
              "layer: {Conv2D: {filters: 2, kernel_size: 2, padding: same}}\n",
              (kc_shape){4, {2, 3, 3, 2}}, 2, 0, 0);
    if (!have_rnn()) return;
    gradcheck(be, "Bidirectional", "layer: {LSTM: {units: 2, return_sequences: true}}\n",
              kc_shape2(3, 2), 2, 0, 0);
    gradcheck(be, "Bidirectional",
              "layer: {GRU: {units: 2, return_sequences: true}}\n"
              "merge_mode: mul\n",
              kc_shape2(3, 2), 2, 0, 0);
    gradcheck(be, "Bidirectional", "layer: {SimpleRNN: {units: 2}}\nmerge_mode: ave\n",
              kc_shape2(3, 2), 2, 0, 0);
    /* one wrapper inside the other: every step of axis 0 is a sequence */
    gradcheck(be, "TimeDistributed",
              "layer: {Bidirectional: {layer: {GRU: {units: 2, return_sequences: true}}}}\n",
              kc_shape3(2, 3, 2), 2, 0, 0);
}
END_TEST

/* A frozen wrapper writes no weight gradients; its inner layers run as before. */
START_TEST(test_frozen) {
    KC_LOOP_DEVICE(be);
    tl t;
    kc_layer *l =
        must_build(&t, "TimeDistributed", "layer: {Dense: {units: 2}}\n", kc_shape2(3, 2));
    wrig r;
    wrig_init(&r, be, l, 2);
    float w[4] = {1, 2, 3, 4}, b[2] = {0.5f, -0.5f}, x[12], ones[12], sentinel[4] = {7, 7, 7, 7};
    for (int i = 0; i < 12; i++)
        x[i] = (float)i * 0.25f - 1, ones[i] = 1;
    put(be, l->params[0].value, w, 4);
    put(be, l->params[1].value, b, 2);
    put(be, l->params[0].grad, sentinel, 4);
    put(be, r.x, x, 12);
    l->trainable = 0;
    wrig_forward(&r);
    float *y = dev_get(be, r.y, 12);
    for (int s = 0; s < 6; s++) {
        ck_assert_float_eq_tol(y[2 * s], x[2 * s] * 1 + x[2 * s + 1] * 3 + 0.5f, 1e-6);
        ck_assert_float_eq_tol(y[2 * s + 1], x[2 * s] * 2 + x[2 * s + 1] * 4 - 0.5f, 1e-6);
    }
    free(y);
    put(be, r.dy, ones, 12);
    wrig_backward(&r, r.dx, 0);
    float *g = dev_get(be, l->params[0].grad, 4), *dx = dev_get(be, r.dx, 12);
    ck_assert_mem_eq(g, sentinel, sizeof sentinel);
    for (int s = 0; s < 6; s++) {
        ck_assert_float_eq_tol(dx[2 * s], 3, 1e-6);
        ck_assert_float_eq_tol(dx[2 * s + 1], 7, 1e-6);
    }
    free(g);
    free(dx);
    wrig_free(&r);
    tl_free(&t);
}
END_TEST

/* ---- through the kerasc binary ---- */

static void setup(void) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    dir = kc_test_tmpdir();
}

static void teardown(void) {
    kc_test_rmdir(dir);
    free(dir);
}

static void expect_total(const char *what, long long want) {
    char line[64];
    snprintf(line, sizeof line, "Total params: %lld", want);
    char grouped[64];
    if (want >= 1000)
        snprintf(grouped, sizeof grouped, "Total params: %lld,%03lld", want / 1000, want % 1000);
    else
        snprintf(grouped, sizeof grouped, "%s", line);
    ck_assert_msg(strstr(out_buf, line) || strstr(out_buf, grouped), "%s: want %lld in\n%s", what,
                  want, out_buf);
}

/* A model Keras wrote: summary and convert give Keras's counts. */
START_TEST(test_keras_json) {
    if (!have_rnn()) return;
    kc_st_file *f = layer_fixture("wrap");
    write_file("wrapped.json", kc_st_meta(f, "model.json"));
    long long total = atoll(kc_st_meta(f, "model.params"));
    int st = run("summary wrapped.json");
    ck_assert_msg(st == 0, "summary failed: %s%s", out_buf, err_buf);
    expect_total("summary of Keras's JSON", total);
    ck_assert_msg(strstr(out_buf, "TimeDistributed") && strstr(out_buf, "Bidirectional"), "%s",
                  out_buf);
    st = run("convert wrapped.json -o wrapped.yaml");
    ck_assert_msg(st == 0, "convert failed: %s", err_buf);
    slurp(path_in("wrapped.yaml"), out_buf, sizeof out_buf);
    ck_assert_msg(strstr(out_buf, "gru_back"), "%s", out_buf);
    st = run("summary wrapped.yaml");
    ck_assert_msg(st == 0, "summary of the converted model failed: %s", err_buf);
    expect_total("summary of the converted model", total);
}
END_TEST

/* Sequences of 8 steps, 3 features; the label says whether feature 0 rises
 * or falls over the sequence, so both directions carry the answer. */
static void make_trend(const char *xname, const char *yname, int n, uint64_t seed) {
    float *x = calloc((size_t)n * 24, sizeof *x), *y = calloc((size_t)n, sizeof *y);
    for (int i = 0; i < n; i++) {
        int up = (int)kc_rng_below(seed, 1, (uint64_t)i, 2);
        for (int t = 0; t < 8; t++)
            for (int c = 0; c < 3; c++) {
                float noise = 0.4f * kc_rng_uniform(seed, 2, (uint64_t)(i * 24 + t * 3 + c)) - 0.2f;
                float v = c == 0 ? (up ? 1 : -1) * ((float)t / 7.0f - 0.5f) : 0;
                x[i * 24 + t * 3 + c] = v + noise;
            }
        y[i] = (float)up;
    }
    write_npy(xname, x, kc_shape3(n, 8, 3));
    write_npy(yname, y, kc_shape1(n));
    free(x);
    free(y);
}

static const char *cli_model = "model:\n"
                               "  name: bi_trend\n"
                               "  layers:\n"
                               "    - Input: {shape: [8, 3]}\n"
                               "    - Bidirectional:\n"
                               "        layer: {LSTM: {units: 6}}\n"
                               "    - Dense: {units: 2, activation: softmax}\n"
                               "compile:\n"
                               "  optimizer: {Adam: {learning_rate: 0.02}}\n"
                               "  loss: sparse_categorical_crossentropy\n"
                               "  metrics: [accuracy]\n"
                               "data:\n"
                               "  train: {x: train_x.npy, y: train_y.npy}\n"
                               "  test: {x: test_x.npy, y: test_y.npy}\n"
                               "fit: {epochs: 4, batch_size: 16, seed: 3}\n";

START_TEST(test_cli_model) {
    if (!have_rnn()) return;
    kc_st_file *f = layer_fixture("wrap");
    make_trend("train_x.npy", "train_y.npy", 256, 21);
    make_trend("test_x.npy", "test_y.npy", 64, 22);
    write_file("bi.yaml", cli_model);
    int st = run("summary bi.yaml");
    ck_assert_msg(st == 0, "summary failed: %s", err_buf);
    expect_total("summary", atoll(kc_st_meta(f, "e2e.params")));
    st = run("train bi.yaml --output run --threads 2");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    char *tl = strstr(out_buf, "Test - loss: ");
    ck_assert_ptr_nonnull(tl);
    double loss, acc;
    ck_assert_int_eq(sscanf(tl, "Test - loss: %lf - accuracy: %lf", &loss, &acc), 2);
    ck_assert_msg(acc >= 0.85, "test accuracy %.4f\n%s", acc, out_buf);
    /* the checkpoint holds the weights under Keras's paths */
    kc_st_file *ck;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path_in("run/last.safetensors"), &ck, &e) == 0, "%s", e.msg);
    int fwd = 0, bwd = 0;
    for (int i = 0; i < kc_st_count(ck); i++) {
        const char *n = kc_st_at(ck, i)->name;
        fwd += !strncmp(n, "bidirectional/forward_lstm/", 27);
        bwd += !strncmp(n, "bidirectional/backward_lstm/", 28);
    }
    ck_assert_int_eq(fwd, 3);
    ck_assert_int_eq(bwd, 3);
    kc_st_close(ck);

    write_file("bad.yaml", "model:\n  layers:\n    - Input: {shape: [8, 3]}\n"
                           "    - Bidirectional:\n        layer: {LSTM: {units: -2}}\n");
    st = run("summary bad.yaml");
    ck_assert_int_eq(st, 2);
    ck_assert_msg(strstr(err_buf, "bad.yaml:5:") && strstr(err_buf, "units"), "%s", err_buf);
    write_file("bad2.yaml", "model:\n  layers:\n    - Input: {shape: [8, 3]}\n"
                            "    - TimeDistributed: {layer: {Dense: {units: 2, bias: 1}}}\n");
    st = run("summary bad2.yaml");
    ck_assert_int_eq(st, 2);
    ck_assert_msg(strstr(err_buf, "bad2.yaml:4:51") && strstr(err_buf, "unknown key 'bias'"), "%s",
                  err_buf);
}
END_TEST

/* TimeDistributed trained through the binary. */
START_TEST(test_cli_time_distributed) {
    make_trend("train_x.npy", "train_y.npy", 256, 31);
    make_trend("test_x.npy", "test_y.npy", 64, 32);
    write_file("td.yaml", "model:\n  layers:\n    - Input: {shape: [8, 3]}\n"
                          "    - TimeDistributed: {layer: {Dense: {units: 4, activation: tanh}}}\n"
                          "    - Flatten\n"
                          "    - Dense: {units: 2, activation: softmax}\n"
                          "compile: {optimizer: adam, loss: sparse_categorical_crossentropy,"
                          " metrics: [accuracy]}\n"
                          "data:\n  train: {x: train_x.npy, y: train_y.npy}\n"
                          "  test: {x: test_x.npy, y: test_y.npy}\n"
                          "fit: {epochs: 3, batch_size: 16, seed: 3}\n");
    int st = run("summary td.yaml");
    ck_assert_msg(st == 0, "summary failed: %s", err_buf);
    expect_total("summary", 16 + 66); /* Keras: TimeDistributed(Dense(4)) 16, Dense 66 */
    st = run("train td.yaml --output run --threads 2");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    char *tl = strstr(out_buf, "Test - loss: ");
    ck_assert_ptr_nonnull(tl);
    double loss, acc;
    ck_assert_int_eq(sscanf(tl, "Test - loss: %lf - accuracy: %lf", &loss, &acc), 2);
    ck_assert_msg(acc >= 0.85, "test accuracy %.4f\n%s", acc, out_buf);
}
END_TEST

int main(void) {
    Suite *s = suite_create("layers_wrap");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_time_distributed_config);
    tcase_add_test(tc, test_time_distributed_errors);
    tcase_add_test(tc, test_bidirectional_config);
    tcase_add_test(tc, test_bidirectional_errors);
    tcase_add_test(tc, test_keras_weight_names);
    suite_add_tcase(s, tc);

    TCase *tv = tcase_create("compute");
    tcase_set_timeout(tv, 120);
    int nb = kc_test_backend_count();
    tcase_add_loop_test(tv, test_keras_fixture, 0, nb);
    tcase_add_loop_test(tv, test_gradchecks, 0, nb);
    tcase_add_loop_test(tv, test_frozen, 0, nb);
    suite_add_tcase(s, tv);

    TCase *tcl = tcase_create("cli");
    tcase_set_timeout(tcl, 120);
    tcase_add_checked_fixture(tcl, setup, teardown);
    tcase_add_test(tcl, test_keras_json);
    tcase_add_test(tcl, test_cli_model);
    tcase_add_test(tcl, test_cli_time_distributed);
    suite_add_tcase(s, tcl);
    return kc_test_run(s);
}

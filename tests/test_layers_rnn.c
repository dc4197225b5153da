/* Recurrent layers: SimpleRNN, LSTM and GRU. Keras's weights, shapes,
 * parameter counts and errors; forward (every output, with return_state),
 * input, initial-state and weight gradients against Keras's own numbers
 * (tests/fixtures/layers/rnn.safetensors, made by make_rnn.py there) on every
 * backend, masks and initial states included; finite-difference gradient
 * checks; input dropout; stateful layers; the Orthogonal initializer; a small
 * model trained and summarized through the kerasc binary. */
#include "tests/layercheck.h"

#include "core/safetensors.h"
#include "tests/clitest.h"

/* ---- a rig for several inputs (x, initial states) and several outputs ---- */

typedef struct mrig {
    kc_device *d;
    kc_layer *l;
    int batch, nin;
    size_t in_n[KC_LAYER_MAX_INPUTS], out_n; /* values per batch: each input, all outputs */
    kc_buf x[4], dx[4], y, dy, ws, mask;
} mrig;

static void mrig_init(mrig *r, kc_device *d, kc_layer *l, int batch) {
    memset(r, 0, sizeof *r);
    r->d = d;
    r->l = l;
    r->batch = batch;
    r->nin = l->ninputs;
    for (int i = 0; i < r->nin; i++) {
        r->in_n[i] = (size_t)kc_shape_numel(&l->in_shapes[i]) * (size_t)batch;
        r->x[i] = dev_alloc(d, r->in_n[i]);
        r->dx[i] = dev_alloc(d, r->in_n[i]);
    }
    for (int k = 0; k < l->noutputs; k++)
        r->out_n += (size_t)kc_shape_numel(&l->out_shapes[k]) * (size_t)batch;
    r->y = dev_alloc(d, r->out_n);
    r->dy = dev_alloc(d, r->out_n);
    for (int i = 0; i < l->nparams; i++) {
        size_t n = (size_t)kc_shape_numel(&l->params[i].shape);
        l->params[i].value = dev_alloc(d, n);
        l->params[i].grad = dev_alloc(d, n);
    }
    size_t buf = l->cls->buffer_bytes(l, batch, d);
    l->buf = buf ? kc_test_alloc(d, buf) : KC_BUF_NULL;
    size_t ws = l->cls->workspace_bytes(l, batch, d);
    r->ws = ws ? kc_test_alloc(d, ws) : KC_BUF_NULL;
    r->mask = KC_BUF_NULL;
}

static void mrig_free(mrig *r) {
    kc_layer *l = r->l;
    for (int i = 0; i < l->nparams; i++) {
        kc_free(r->d, &l->params[i].value);
        kc_free(r->d, &l->params[i].grad);
    }
    for (int i = 0; i < r->nin; i++) {
        kc_free(r->d, &r->x[i]);
        kc_free(r->d, &r->dx[i]);
    }
    kc_free(r->d, &l->buf);
    kc_free(r->d, &r->ws);
    kc_free(r->d, &r->y);
    kc_free(r->d, &r->dy);
    kc_free(r->d, &r->mask);
    kc_test_ok(r->d, "rnn rig");
}

static void mrig_set_mask(mrig *r, const float *m) {
    size_t n = (size_t)r->batch * (size_t)r->l->in_shape.d[0];
    if (!kc_buf_ok(r->mask)) r->mask = dev_alloc(r->d, n);
    put(r->d, r->mask, m, n);
}

static kc_exec mrig_exec(const mrig *r, int training) {
    kc_exec ex = {0};
    ex.dev = r->d;
    ex.batch = r->batch;
    ex.training = training;
    ex.seed = 1234;
    ex.step = 7;
    ex.ws = r->ws;
    ex.mask = r->mask;
    return ex;
}

static void mrig_forward(mrig *r, int training) {
    kc_exec ex = mrig_exec(r, training);
    int rc = r->l->cls->forward_n(r->l, &ex, r->x, r->y);
    ck_assert_msg(rc == KC_OK, "%s forward on %s: %s", r->l->name, r->d->name, r->d->err.msg);
}

static void mrig_backward(mrig *r, int training, int accumulate, int with_dx) {
    kc_exec ex = mrig_exec(r, training);
    ex.accumulate = accumulate;
    kc_buf none[4] = {KC_BUF_NULL, KC_BUF_NULL, KC_BUF_NULL, KC_BUF_NULL};
    int rc = r->l->cls->backward_n(r->l, &ex, r->x, r->y, r->dy, with_dx ? r->dx : none);
    ck_assert_msg(rc == KC_OK, "%s backward on %s: %s", r->l->name, r->d->name, r->d->err.msg);
}

/* Builds class cls from yaml for input (steps, features), with nstates
 * initial-state inputs of (units,). */
static kc_layer *build_rnn(tl *t, const char *cls, const char *yaml, int steps, int features,
                           int nstates, int units) {
    kc_error e;
    int rc = tl_make(t, cls, yaml, NULL, &e);
    ck_assert_msg(rc == 0, "%s(%s): %s", cls, yaml, e.msg);
    kc_shape in[3] = {kc_shape2(steps, features), kc_shape1(units), kc_shape1(units)};
    rc = kc_layer_build_n(t->l, in, 1 + nstates, &e);
    ck_assert_msg(rc == 0, "%s(%s): %s", cls, yaml, e.msg);
    t->l->index = 3;
    return t->l;
}

/* ---- weights, shapes, parameter counts, errors ---- */

static void expect_param(const kc_layer *l, int i, const char *name, kc_shape shape) {
    ck_assert_int_gt(l->nparams, i);
    ck_assert_str_eq(l->params[i].name, name);
    ck_assert_msg(kc_shape_equal(&l->params[i].shape, &shape), "%s shape", name);
}

START_TEST(test_weights) {
    tl t;
    kc_layer *l = must_build(&t, "LSTM", "units: 8\n", kc_shape2(10, 5));
    expect_shape(l, kc_shape1(8));
    expect_param(l, 0, "kernel", kc_shape2(5, 32));
    expect_param(l, 1, "recurrent_kernel", kc_shape2(8, 32));
    expect_param(l, 2, "bias", kc_shape1(32));
    ck_assert_int_eq(kc_layer_param_count(l, 0), 4 * 8 * (5 + 8 + 1));
    ck_assert_int_eq(l->params[0].init.kind, KC_INIT_GLOROT_UNIFORM);
    ck_assert_int_eq(l->params[1].init.kind, KC_INIT_ORTHOGONAL);
    ck_assert_int_eq(l->params[2].init.kind, KC_INIT_ZEROS);
    ck_assert_int_eq(l->params[2].init.forget_units, 8);
    ck_assert_str_eq(l->name, "lstm");
    ck_assert_int_eq(l->noutputs, 1);
    ck_assert_int_eq(l->cls->mask_rule(l), KC_MASK_CONSUME);
    /* unit_forget_bias: zeros, ones, zeros, zeros */
    float bias[32];
    kc_initializer_fill(&l->params[2].init, &l->params[2].shape, bias, 1, 2);
    for (int i = 0; i < 32; i++)
        ck_assert_float_eq(bias[i], i >= 8 && i < 16 ? 1.0f : 0.0f);
    tl_free(&t);

    l = must_build(&t, "LSTM", "units: 8\nunit_forget_bias: false\nreturn_sequences: true\n",
                   kc_shape2(10, 5));
    expect_shape(l, kc_shape2(10, 8));
    ck_assert_int_eq(l->params[2].init.forget_units, 0);
    ck_assert_int_eq(l->cls->mask_rule(l), KC_MASK_CONSUME_PROPAGATE);
    tl_free(&t);

    l = must_build(&t, "LSTM", "units: 4\nreturn_state: true\nreturn_sequences: true\n",
                   kc_shape2(6, 3));
    ck_assert_int_eq(l->noutputs, 3);
    ck_assert(kc_shape_equal(&l->out_shapes[0], &(kc_shape){2, {6, 4}}));
    ck_assert(kc_shape_equal(&l->out_shapes[1], &(kc_shape){1, {4}}));
    ck_assert(kc_shape_equal(&l->out_shapes[2], &(kc_shape){1, {4}}));
    tl_free(&t);

    l = must_build(&t, "GRU", "units: 6\n", kc_shape2(7, 4));
    expect_param(l, 2, "bias", kc_shape2(2, 18));
    ck_assert_int_eq(kc_layer_param_count(l, 0), 3 * 6 * (4 + 6 + 2));
    tl_free(&t);
    l = must_build(&t, "GRU", "units: 6\nreset_after: false\nreturn_state: true\n",
                   kc_shape2(7, 4));
    expect_param(l, 2, "bias", kc_shape1(18));
    ck_assert_int_eq(kc_layer_param_count(l, 0), 3 * 6 * (4 + 6 + 1));
    ck_assert_int_eq(l->noutputs, 2);
    tl_free(&t);
    l = must_build(&t, "SimpleRNN", "units: 5\nuse_bias: false\n", kc_shape2(7, 4));
    ck_assert_int_eq(l->nparams, 2);
    ck_assert_int_eq(kc_layer_param_count(l, 0), 5 * (4 + 5));
    ck_assert_str_eq(l->name, "simple_rnn");
    tl_free(&t);
}
END_TEST

START_TEST(test_errors) {
    kc_shape seq = kc_shape2(4, 3), flat = kc_shape1(12);
    expect_error("LSTM", "units: 0\n", &seq, "layer.yaml:1:8", "'units'");
    expect_error("LSTM", NULL, &seq, "", "units");
    expect_error("GRU", "units: 2\ndropout: 1.5\n", &seq, "layer.yaml:2:10", "[0, 1)");
    expect_error("LSTM", "units: 2\nimplementation: 3\n", &seq, "layer.yaml:2:17",
                 "implementation");
    expect_error("SimpleRNN", "units: 2\nrecurrent_dropout: -0.1\n", &seq, "layer.yaml:2:20",
                 "[0, 1)");
    expect_error("SimpleRNN", "units: 2\nactivation: tanhh\n", &seq, "layer.yaml:2:13", "tanh");
    expect_error("LSTM", "units: 2\nunits_forget_bias: true\n", &seq, "layer.yaml:2:1",
                 "units_forget_bias");
    expect_error("LSTM", "units: 2\n", &flat, "layer.yaml:1:1", "(timesteps, features)");
    expect_error("GRU", "units: 2\nreset_after: maybe\n", &seq, "layer.yaml:2:14", "");

    /* initial states must be (units,) and all of them */
    tl t;
    kc_error e;
    ck_assert_int_eq(tl_make(&t, "LSTM", "units: 3\n", NULL, &e), 0);
    kc_shape two[2] = {seq, kc_shape1(3)};
    ck_assert_int_eq(kc_layer_build_n(t.l, two, 2, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "initial state"), "%s", e.msg);
    tl_free(&t);
    ck_assert_int_eq(tl_make(&t, "GRU", "units: 3\n", NULL, &e), 0);
    kc_shape bad[2] = {seq, kc_shape1(4)};
    ck_assert_int_eq(kc_layer_build_n(t.l, bad, 2, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "initial state 0 has shape (None, 4)"), "%s", e.msg);
    tl_free(&t);
}
END_TEST

/* ---- Orthogonal ---- */

START_TEST(test_orthogonal) {
    int shapes[3][2] = {{6, 6}, {5, 12}, {12, 5}};
    for (int k = 0; k < 3; k++) {
        int r = shapes[k][0], c = shapes[k][1];
        kc_initializer init = {0};
        init.kind = KC_INIT_ORTHOGONAL;
        init.a = 1.0;
        kc_shape s = kc_shape2(r, c);
        float *w = malloc((size_t)r * (size_t)c * sizeof *w);
        float *w2 = malloc((size_t)r * (size_t)c * sizeof *w2);
        kc_initializer_fill(&init, &s, w, 42, 9);
        kc_initializer_fill(&init, &s, w2, 42, 9);
        ck_assert_int_eq(memcmp(w, w2, (size_t)r * (size_t)c * sizeof *w), 0);
        /* orthonormal rows (r <= c) or columns (r >= c) */
        int n = r < c ? r : c;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                double dot = 0;
                for (int q = 0; q < (r < c ? c : r); q++)
                    dot += r < c ? (double)w[i * c + q] * w[j * c + q]
                                 : (double)w[q * c + i] * w[q * c + j];
                ck_assert_msg(fabs(dot - (i == j)) < 1e-5, "%dx%d: <%d,%d> = %g", r, c, i, j, dot);
            }
        init.a = 2.0;
        kc_initializer_fill(&init, &s, w2, 42, 9);
        for (int i = 0; i < r * c; i++)
            ck_assert_float_eq_tol(w2[i], 2 * w[i], 1e-6);
        free(w), free(w2);
    }
    kc_error e;
    kc_initializer init;
    kc_doc *doc;
    const char *y = "{class_name: Orthogonal, config: {gain: 0.5, seed: 3}}";
    ck_assert_int_eq(kc_doc_parse(&doc, "i.yaml", y, strlen(y), &e), 0);
    ck_assert_int_eq(kc_initializer_parse(doc->root, &init, &e), 0);
    ck_assert_int_eq(init.kind, KC_INIT_ORTHOGONAL);
    ck_assert_float_eq(init.a, 0.5);
    ck_assert_int_eq(init.has_seed, 1);
    kc_doc_free(doc);
    /* as Keras 3 writes it in a saved model's config */
    y = "{module: keras.initializers, class_name: OrthogonalInitializer, "
        "config: {gain: 1.0, seed: null}, registered_name: null}";
    ck_assert_int_eq(kc_doc_parse(&doc, "i.yaml", y, strlen(y), &e), 0);
    ck_assert_msg(kc_initializer_parse(doc->root, &init, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(init.kind, KC_INIT_ORTHOGONAL);
    ck_assert_int_eq(init.has_seed, 0);
    kc_doc_free(doc);
}
END_TEST

/* ---- Keras fixtures ---- */

typedef struct rnn_case {
    const char *name, *cls, *yaml;
} rnn_case;

static const rnn_case cases[] = {
    {"simple", "SimpleRNN", "units: 3\n"},
    {"simple_seq_back", "SimpleRNN", "units: 4\nreturn_sequences: true\ngo_backwards: true\n"},
    {"simple_state_mask", "SimpleRNN", "units: 3\nreturn_state: true\n"},
    {"lstm", "LSTM", "units: 3\n"},
    {"lstm_seq", "LSTM", "units: 4\nreturn_sequences: true\n"},
    {"lstm_state", "LSTM", "units: 3\nreturn_sequences: true\nreturn_state: true\n"},
    {"lstm_back", "LSTM", "units: 3\ngo_backwards: true\nreturn_state: true\n"},
    {"lstm_nobias", "LSTM", "units: 2\nuse_bias: false\nreturn_sequences: true\n"},
    {"lstm_mask_right", "LSTM", "units: 3\nreturn_sequences: true\n"},
    {"lstm_mask_left", "LSTM", "units: 3\nreturn_state: true\n"},
    {"lstm_init", "LSTM", "units: 3\nreturn_state: true\n"},
    {"lstm_mask_init", "LSTM", "units: 3\nreturn_sequences: true\nreturn_state: true\n"},
    {"lstm_mask_back", "LSTM", "units: 3\nreturn_sequences: true\ngo_backwards: true\n"},
    {"lstm_zero_out", "LSTM", "units: 3\nreturn_sequences: true\nzero_output_for_mask: true\n"},
    {"gru", "GRU", "units: 3\n"},
    {"gru_seq", "GRU", "units: 4\nreturn_sequences: true\n"},
    {"gru_v1", "GRU", "units: 3\nreset_after: false\nreturn_sequences: true\n"},
    {"gru_v1_back", "GRU", "units: 3\nreset_after: false\ngo_backwards: true\n"},
    {"gru_state_back_mask", "GRU", "units: 3\nreturn_state: true\ngo_backwards: true\n"},
    {"gru_mask_init", "GRU", "units: 2\nreturn_sequences: true\n"},
    {"gru_nobias", "GRU", "units: 2\nuse_bias: false\n"},
};

static void expect_dev(const mrig *r, const char *what, kc_buf b, const kc_st_tensor *t) {
    size_t n = (size_t)kc_shape_numel(&t->shape);
    float *got = malloc(n * sizeof(float));
    get(r->d, got, b, n);
    expect_near_keras(what, r->d->name, got, t->data, n, 2e-6f);
    free(got);
}

static void run_case(kc_device *be, kc_st_file *f, const rnn_case *c) {
    const kc_st_tensor *xt = layer_fixture_tensor(f, c->name, "x");
    char key[128];
    snprintf(key, sizeof key, "%s.s0", c->name);
    const kc_st_tensor *s0 = kc_st_find(f, key);
    snprintf(key, sizeof key, "%s.s1", c->name);
    int nstates = s0 ? (kc_st_find(f, key) ? 2 : 1) : 0;
    int units = (int)layer_fixture_tensor(f, c->name, "recurrent_kernel")->shape.d[0];
    tl t;
    kc_layer *l =
        build_rnn(&t, c->cls, c->yaml, (int)xt->shape.d[1], (int)xt->shape.d[2], nstates, units);
    mrig r;
    mrig_init(&r, be, l, (int)xt->shape.d[0]);
    for (int i = 0; i < l->nparams; i++) {
        const kc_st_tensor *p = layer_fixture_tensor(f, c->name, l->params[i].name);
        ck_assert(kc_shape_equal(&p->shape, &l->params[i].shape));
        set_param(&(rig){.d = be, .l = l}, i, p->data);
    }
    put(be, r.x[0], xt->data, r.in_n[0]);
    for (int i = 0; i < nstates; i++) {
        snprintf(key, sizeof key, "s%d", i);
        put(be, r.x[1 + i], layer_fixture_tensor(f, c->name, key)->data, r.in_n[1 + i]);
    }
    snprintf(key, sizeof key, "%s.mask", c->name);
    if (kc_st_find(f, key)) mrig_set_mask(&r, kc_st_find(f, key)->data);
    mrig_forward(&r, 0);
    size_t off = 0;
    char what[160];
    for (int k = 0; k < l->noutputs; k++) {
        snprintf(key, sizeof key, "y%d", k);
        const kc_st_tensor *y = layer_fixture_tensor(f, c->name, key);
        snprintf(what, sizeof what, "%s y%d", c->name, k);
        expect_dev(&r, what, kc_buf_f(r.y, off), y);
        snprintf(key, sizeof key, "c%d", k);
        const kc_st_tensor *ct = layer_fixture_tensor(f, c->name, key);
        size_t n = (size_t)kc_shape_numel(&ct->shape);
        put(be, kc_buf_f(r.dy, off), ct->data, n);
        off += n;
    }
    ck_assert_int_eq(off, r.out_n);
    mrig_backward(&r, 0, 0, 1);
    snprintf(what, sizeof what, "%s dx", c->name);
    expect_dev(&r, what, r.dx[0], layer_fixture_tensor(f, c->name, "dx"));
    for (int i = 0; i < nstates; i++) {
        snprintf(key, sizeof key, "ds%d", i);
        snprintf(what, sizeof what, "%s ds%d", c->name, i);
        expect_dev(&r, what, r.dx[1 + i], layer_fixture_tensor(f, c->name, key));
    }
    for (int i = 0; i < l->nparams; i++) {
        snprintf(key, sizeof key, "d%s", l->params[i].name);
        snprintf(what, sizeof what, "%s %s", c->name, key);
        expect_dev(&r, what, l->params[i].grad, layer_fixture_tensor(f, c->name, key));
    }
    mrig_free(&r);
    tl_free(&t);
}

START_TEST(test_keras_fixture) {
    KC_LOOP_DEVICE(be);
    kc_st_file *f = layer_fixture("rnn");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(be, f, &cases[i]);
}
END_TEST

/* ---- finite differences over x, initial states and every weight ---- */

static double mr_objective(mrig *r, const float *c, int training) {
    mrig_forward(r, training);
    float *y = malloc(r->out_n * sizeof(float));
    get(r->d, y, r->y, r->out_n);
    double s = 0;
    for (size_t i = 0; i < r->out_n; i++)
        s += (double)c[i] * y[i];
    free(y);
    return s;
}

/* d objective / d v[i] by central differences, v uploaded to dst after each change. */
static void check_input(mrig *r, const char *what, float *v, size_t n, kc_buf dst, const float *ana,
                        const float *c, int training) {
    const float eps = 1e-2f;
    size_t limit = kc_test_quick() ? 30 : 200;
    for (size_t i = 0; i < n; i += stride_for(n, limit)) {
        float keep = v[i];
        v[i] = keep + eps;
        put(r->d, dst, v, n);
        double fp = mr_objective(r, c, training);
        v[i] = keep - eps;
        put(r->d, dst, v, n);
        double fm = mr_objective(r, c, training);
        v[i] = keep;
        put(r->d, dst, v, n);
        check_close_grad(what, i, (fp - fm) / (2.0 * eps), ana[i]);
    }
}

static void rnn_gradcheck(kc_device *be, const char *cls, const char *yaml, int steps, int features,
                          int batch, int nstates, int units, const float *mask, int training) {
    tl t;
    kc_layer *l = build_rnn(&t, cls, yaml, steps, features, nstates, units);
    mrig r;
    mrig_init(&r, be, l, batch);
    if (mask) mrig_set_mask(&r, mask);
    float *x[4], *c = malloc(r.out_n * sizeof(float));
    for (int i = 0; i < r.nin; i++) {
        x[i] = malloc(r.in_n[i] * sizeof(float));
        fill_random(x[i], r.in_n[i], 1 + (uint64_t)i, -1, 1);
        put(be, r.x[i], x[i], r.in_n[i]);
    }
    fill_random(c, r.out_n, 9, -1, 1);
    float *pv[KC_LAYER_MAX_PARAMS], *pg[KC_LAYER_MAX_PARAMS];
    for (int p = 0; p < l->nparams; p++) {
        size_t n = (size_t)kc_shape_numel(&l->params[p].shape);
        pv[p] = malloc(n * sizeof(float));
        pg[p] = malloc(n * sizeof(float));
        fill_random(pv[p], n, 10 + (uint64_t)p, -0.8f, 0.8f);
        put(be, l->params[p].value, pv[p], n);
    }
    mrig_forward(&r, training);
    put(be, r.dy, c, r.out_n);
    mrig_backward(&r, training, 0, 1);
    float *dx[4];
    for (int i = 0; i < r.nin; i++) {
        dx[i] = malloc(r.in_n[i] * sizeof(float));
        get(be, dx[i], r.dx[i], r.in_n[i]);
    }
    for (int p = 0; p < l->nparams; p++)
        get(be, pg[p], l->params[p].grad, (size_t)kc_shape_numel(&l->params[p].shape));
    char what[256];
    for (int i = 0; i < r.nin; i++) {
        snprintf(what, sizeof what, "%s %s(%s): d input %d", be->name, cls, yaml, i);
        check_input(&r, what, x[i], r.in_n[i], r.x[i], dx[i], c, training);
    }
    for (int p = 0; p < l->nparams; p++) {
        snprintf(what, sizeof what, "%s %s(%s): d%s", be->name, cls, yaml, l->params[p].name);
        check_input(&r, what, pv[p], (size_t)kc_shape_numel(&l->params[p].shape),
                    l->params[p].value, pg[p], c, training);
    }
    /* accumulate adds into the grads; null dx still writes them */
    mrig_forward(&r, training);
    mrig_backward(&r, training, 1, 0);
    for (int p = 0; p < l->nparams; p++) {
        size_t n = (size_t)kc_shape_numel(&l->params[p].shape);
        float *twice = malloc(n * sizeof(float));
        get(be, twice, l->params[p].grad, n);
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(fabsf(twice[i] - 2 * pg[p][i]) <= 1e-5f * (1 + fabsf(pg[p][i])),
                          "%s %s accumulate: %g vs 2 x %g", be->name, cls, twice[i], pg[p][i]);
        free(twice);
        free(pv[p]), free(pg[p]);
    }
    for (int i = 0; i < r.nin; i++)
        free(x[i]), free(dx[i]);
    free(c);
    mrig_free(&r);
    tl_free(&t);
}

START_TEST(test_gradchecks) {
    KC_LOOP_DEVICE(be);
    static const float mask[] = {1, 1, 0, 1, 0, 0, 1, 1};
    rnn_gradcheck(be, "SimpleRNN", "units: 3\nreturn_sequences: true\n", 4, 2, 2, 0, 3, NULL, 0);
    rnn_gradcheck(be, "LSTM", "units: 3\nreturn_sequences: true\nreturn_state: true\n", 4, 2, 2, 2,
                  3, NULL, 0);
    rnn_gradcheck(be, "LSTM", "units: 2\ngo_backwards: true\nreturn_state: true\n", 4, 3, 2, 2, 2,
                  mask, 0);
    rnn_gradcheck(be, "GRU", "units: 3\nreturn_sequences: true\nreturn_state: true\n", 4, 2, 2, 1,
                  3, mask, 0);
    rnn_gradcheck(be, "GRU", "units: 2\nreset_after: false\ngo_backwards: true\n", 4, 2, 2, 1, 2,
                  NULL, 0);
    rnn_gradcheck(be, "SimpleRNN", "units: 2\nreturn_state: true\nactivation: sigmoid\n", 4, 2, 2,
                  1, 2, mask, 0);
    /* training with dropout: the masks of one step are fixed, so these are smooth */
    rnn_gradcheck(be, "LSTM", "units: 2\ndropout: 0.3\nreturn_sequences: true\n", 4, 3, 2, 0, 2,
                  NULL, 1);
    rnn_gradcheck(be, "LSTM", "units: 2\ndropout: 0.3\nrecurrent_dropout: 0.4\n", 4, 3, 2, 2, 2,
                  mask, 1);
    rnn_gradcheck(be, "GRU", "units: 2\ndropout: 0.2\nrecurrent_dropout: 0.3\n", 4, 3, 2, 1, 2,
                  NULL, 1);
    rnn_gradcheck(be, "GRU",
                  "units: 2\nreset_after: false\ndropout: 0.2\nrecurrent_dropout: 0.3\n"
                  "return_sequences: true\n",
                  4, 3, 2, 1, 2, NULL, 1);
    rnn_gradcheck(be, "SimpleRNN", "units: 3\ndropout: 0.2\nrecurrent_dropout: 0.3\n", 4, 3, 2, 0,
                  3, NULL, 1);
    rnn_gradcheck(be, "LSTM", "units: 2\ndropout: 0.3\nimplementation: 1\n", 4, 3, 2, 0, 2, NULL,
                  1);
    /* no mask: the carries pass straight from step to step */
    rnn_gradcheck(be, "LSTM", "units: 3\nreturn_state: true\n", 4, 2, 2, 2, 3, NULL, 0);
    rnn_gradcheck(be, "SimpleRNN", "units: 2\nreturn_sequences: true\ngo_backwards: true\n", 4, 2,
                  2, 1, 2, NULL, 0);
    rnn_gradcheck(be, "LSTM",
                  "units: 2\ndropout: 0.2\nrecurrent_dropout: 0.3\ngo_backwards: true\n"
                  "return_sequences: true\n",
                  4, 3, 2, 2, 2, NULL, 1);
}
END_TEST

/* A sequence long enough that the weight gradients sum their rows in
 * several blocks: SimpleRNN(linear) with a zero recurrent kernel is h_t =
 * x_t W + b, so with dy = c every gradient has a closed form (dW = sum x c,
 * db = sum c, dR = sum h_prev c, dx = c W^T), summed here in double. */
static void long_sequence_case(kc_device *be, int go_back) {
    enum { T = 150, F = 3, U = 2, B = 3 };
    tl t;
    kc_layer *l = build_rnn(&t, "SimpleRNN",
                            go_back ? "units: 2\nactivation: linear\nreturn_sequences: true\n"
                                      "go_backwards: true\n"
                                    : "units: 2\nactivation: linear\nreturn_sequences: true\n",
                            T, F, 0, U);
    mrig r;
    mrig_init(&r, be, l, B);
    static float x[B * T * F], c[B * T * U], w[F * U], bias[U], zero[U * U], got[B * T * F];
    fill_random(x, B * T * F, 31, -1, 1);
    fill_random(c, B * T * U, 32, -1, 1);
    fill_random(w, F * U, 33, -1, 1);
    fill_random(bias, U, 34, -1, 1);
    put(be, r.x[0], x, B * T * F);
    put(be, l->params[0].value, w, F * U);
    put(be, l->params[1].value, zero, U * U);
    put(be, l->params[2].value, bias, U);
    mrig_forward(&r, 0);
    put(be, r.dy, c, B * T * U);
    mrig_backward(&r, 0, 0, 1);
    double dw[F * U] = {0}, db[U] = {0}, dr[U * U] = {0};
    for (int b = 0; b < B; b++)
        for (int st = 0; st < T; st++) { /* output st is step st, which read time t */
            int t0 = go_back ? T - 1 - st : st, tp = go_back ? t0 + 1 : t0 - 1;
            const float *cs = c + ((size_t)b * T + st) * U, *xt = x + ((size_t)b * T + t0) * F;
            for (int j = 0; j < U; j++) {
                db[j] += cs[j];
                for (int i = 0; i < F; i++)
                    dw[i * U + j] += (double)xt[i] * cs[j];
                for (int i = 0; st > 0 && i < U; i++) { /* h of the step before */
                    double hp = bias[i];
                    for (int k = 0; k < F; k++)
                        hp += (double)x[((size_t)b * T + tp) * F + k] * w[k * U + i];
                    dr[i * U + j] += hp * cs[j];
                }
            }
        }
    const double *want[3] = {dw, dr, db};
    const int n[3] = {F * U, U * U, U};
    for (int p = 0; p < 3; p++) {
        get(be, got, l->params[p].grad, (size_t)n[p]);
        for (int i = 0; i < n[p]; i++)
            ck_assert_msg(fabs(got[i] - want[p][i]) <= 1e-5 * (1 + fabs(want[p][i])),
                          "%s go_backwards %d: d%s[%d] = %g, expected %g", be->name, go_back,
                          l->params[p].name, i, got[i], want[p][i]);
    }
    get(be, got, r.dx[0], B * T * F);
    for (int b = 0; b < B; b++)
        for (int st = 0; st < T; st++) {
            int t0 = go_back ? T - 1 - st : st;
            for (int i = 0; i < F; i++) {
                double want_dx = 0;
                for (int j = 0; j < U; j++)
                    want_dx += (double)c[((size_t)b * T + st) * U + j] * w[i * U + j];
                float g = got[((size_t)b * T + t0) * F + i];
                ck_assert_msg(fabs(g - want_dx) <= 1e-5 * (1 + fabs(want_dx)),
                              "%s go_backwards %d: dx = %g, expected %g", be->name, go_back, g,
                              want_dx);
            }
        }
    mrig_free(&r);
    tl_free(&t);
}

START_TEST(test_long_sequence) {
    KC_LOOP_DEVICE(be);
    long_sequence_case(be, 0);
    long_sequence_case(be, 1);
}
END_TEST

/* ---- input dropout ---- */

/* SimpleRNN(1, linear) with kernel ones and recurrent kernel zero: with
 * dy = 1 the input gradient is the dropout mask itself, for every step. */
START_TEST(test_dropout) {
    KC_LOOP_DEVICE(be);
    enum { T = 3, F = 400, B = 2 };
    const double rate = 0.3;
    tl t;
    kc_layer *l = build_rnn(&t, "SimpleRNN",
                            "units: 1\nactivation: linear\ndropout: 0.3\nreturn_sequences: true\n",
                            T, F, 0, 1);
    mrig r;
    mrig_init(&r, be, l, B);
    float *ones = malloc(F * B * T * sizeof(float));
    for (int i = 0; i < F * B * T; i++)
        ones[i] = 1.0f;
    float zero = 0.0f;
    put(be, l->params[0].value, ones, F);
    put(be, l->params[1].value, &zero, 1);
    put(be, l->params[2].value, &zero, 1);
    put(be, r.x[0], ones, r.in_n[0]);
    put(be, r.dy, ones, r.out_n);
    float y1[B * T], y2[B * T], y3[B * T];
    float *dx = malloc(r.in_n[0] * sizeof(float));

    /* inference ignores dropout: y = sum of the inputs */
    mrig_forward(&r, 0);
    get(be, y1, r.y, r.out_n);
    for (int i = 0; i < B * T; i++)
        ck_assert_float_eq_tol(y1[i], F, 1e-3);

    mrig_forward(&r, 1);
    get(be, y1, r.y, r.out_n);
    mrig_backward(&r, 1, 0, 1);
    get(be, dx, r.dx[0], r.in_n[0]);
    int dropped = 0, kept[B] = {0};
    float keep = (float)(1.0 / (1.0 - rate));
    for (int b = 0; b < B; b++)
        for (int f = 0; f < F; f++) {
            float m = dx[(b * T) * F + f];
            ck_assert_msg(m == 0.0f || fabsf(m - keep) < 1e-6f, "mask value %g", m);
            dropped += m == 0.0f;
            kept[b] += m != 0.0f;
            for (int s = 1; s < T; s++) /* one mask for every step */
                ck_assert_float_eq(dx[(b * T + s) * F + f], m);
        }
    ck_assert_msg(dropped > 0.22 * B * F && dropped < 0.38 * B * F, "%d of %d dropped", dropped,
                  B * F);
    /* every step's output is what the mask passes (h' R is zero) */
    for (int b = 0; b < B; b++)
        for (int s = 0; s < T; s++)
            ck_assert_float_eq_tol(y1[b * T + s], keep * (float)kept[b], 1e-2);

    /* the same step draws the same mask; another step another one */
    mrig_forward(&r, 1);
    get(be, y2, r.y, r.out_n);
    for (int i = 0; i < B * T; i++)
        ck_assert_float_eq(y1[i], y2[i]);
    kc_exec ex = mrig_exec(&r, 1);
    ex.step = 8;
    ck_assert_int_eq(l->cls->forward_n(l, &ex, r.x, r.y), KC_OK);
    get(be, y3, r.y, r.out_n);
    ck_assert_msg(y3[0] != y1[0] || y3[T] != y1[T], "a new step drew the same mask");
    free(ones), free(dx);
    mrig_free(&r);
    tl_free(&t);
}
END_TEST

/* recurrent_dropout: inference is the plain layer; training draws per step */
START_TEST(test_recurrent_dropout) {
    KC_LOOP_DEVICE(be);
    enum { T = 5, F = 3, B = 2, U = 4 };
    const char *classes[] = {"SimpleRNN", "LSTM", "GRU", "GRU"};
    const char *extra[] = {"", "", "", "reset_after: false\n"};
    for (int k = 0; k < 4; k++) {
        char yd[256], yp[256];
        snprintf(yd, sizeof yd, "units: 4\ndropout: 0.25\nrecurrent_dropout: 0.5\n%s", extra[k]);
        snprintf(yp, sizeof yp, "units: 4\n%s", extra[k]);
        tl td, tp;
        kc_layer *ld = build_rnn(&td, classes[k], yd, T, F, 0, U);
        kc_layer *lp = build_rnn(&tp, classes[k], yp, T, F, 0, U);
        mrig rd, rp;
        mrig_init(&rd, be, ld, B);
        mrig_init(&rp, be, lp, B);
        for (int p = 0; p < ld->nparams; p++) {
            size_t n = (size_t)kc_shape_numel(&ld->params[p].shape);
            float *v = malloc(n * sizeof(float));
            fill_random(v, n, 50 + (uint64_t)p, -0.8f, 0.8f);
            put(be, ld->params[p].value, v, n);
            put(be, lp->params[p].value, v, n);
            free(v);
        }
        float x[B * T * F], y0[B * U], yp0[B * U], y1[B * U], y2[B * U];
        fill_random(x, B * T * F, 60, -1, 1);
        put(be, rd.x[0], x, B * T * F);
        put(be, rp.x[0], x, B * T * F);
        mrig_forward(&rd, 0);
        mrig_forward(&rp, 0);
        get(be, y0, rd.y, B * U);
        get(be, yp0, rp.y, B * U);
        for (int i = 0; i < B * U; i++)
            ck_assert_float_eq(y0[i], yp0[i]);
        mrig_forward(&rd, 1);
        get(be, y1, rd.y, B * U);
        mrig_forward(&rd, 1);
        get(be, y2, rd.y, B * U);
        int differs = 0;
        for (int i = 0; i < B * U; i++) {
            ck_assert_float_eq(y1[i], y2[i]);
            differs += fabsf(y1[i] - y0[i]) > 1e-4f;
        }
        ck_assert_msg(differs > 0, "%s: training ignored the dropout", classes[k]);
        mrig_free(&rd);
        mrig_free(&rp);
        tl_free(&td);
        tl_free(&tp);
    }
}
END_TEST

/* ---- stateful ---- */

/* Two calls of a stateful layer on the halves of a sequence give what one
 * call on the whole sequence gives; reset_states starts over; the batch is fixed. */
START_TEST(test_stateful) {
    KC_LOOP_DEVICE(be);
    enum { T = 6, H = 3, F = 2, B = 2, U = 3 };
    const char *classes[] = {"LSTM", "GRU"};
    for (int k = 0; k < 2; k++) {
        tl tw, th;
        kc_layer *whole = build_rnn(&tw, classes[k], "units: 3\n", T, F, 0, U);
        kc_layer *half = build_rnn(&th, classes[k], "units: 3\nstateful: true\n", H, F, 0, U);
        mrig rw, rh;
        mrig_init(&rw, be, whole, B);
        mrig_init(&rh, be, half, B);
        for (int p = 0; p < whole->nparams; p++) {
            size_t n = (size_t)kc_shape_numel(&whole->params[p].shape);
            float *v = malloc(n * sizeof(float));
            fill_random(v, n, 30 + (uint64_t)p, -0.8f, 0.8f);
            put(be, whole->params[p].value, v, n);
            put(be, half->params[p].value, v, n);
            free(v);
        }
        float x[B * T * F], xh[2][B * H * F];
        fill_random(x, B * T * F, 40, -1, 1);
        for (int b = 0; b < B; b++)
            for (int s = 0; s < T; s++)
                for (int f = 0; f < F; f++)
                    xh[s / H][(b * H + s % H) * F + f] = x[(b * T + s) * F + f];
        put(be, rw.x[0], x, B * T * F);
        mrig_forward(&rw, 0);
        float yw[B * U], y1[B * U], y2[B * U], y3[B * U];
        get(be, yw, rw.y, B * U);
        put(be, rh.x[0], xh[0], B * H * F);
        mrig_forward(&rh, 0);
        get(be, y1, rh.y, B * U);
        put(be, rh.x[0], xh[1], B * H * F);
        mrig_forward(&rh, 0);
        get(be, y2, rh.y, B * U);
        for (int i = 0; i < B * U; i++)
            ck_assert_msg(fabsf(y2[i] - yw[i]) < 1e-5f, "%s stateful [%d]: %g vs %g", classes[k], i,
                          y2[i], yw[i]);
        ck_assert_int_eq(half->cls->reset_states(half, be), KC_OK);
        put(be, rh.x[0], xh[0], B * H * F);
        mrig_forward(&rh, 0);
        get(be, y3, rh.y, B * U);
        for (int i = 0; i < B * U; i++)
            ck_assert_float_eq(y3[i], y1[i]);
        /* another batch size is an error naming the layer */
        kc_exec ex = mrig_exec(&rh, 0);
        ex.batch = 1;
        ck_assert_int_eq(half->cls->forward_n(half, &ex, rh.x, rh.y), KC_ECONFIG);
        ck_assert_msg(strstr(be->err.msg, "stateful") && strstr(be->err.msg, "2 samples"), "%s",
                      be->err.msg);
        kc_device_clear_error(be);
        mrig_free(&rw);
        mrig_free(&rh);
        tl_free(&tw);
        tl_free(&th);
    }
}
END_TEST

/* ---- through the binary ---- */

static const char *cli_model = "model:\n"
                               "  name: rnn_blobs\n"
                               "  layers:\n"
                               "    - Input: {shape: [8, 8], name: rows}\n"
                               "    - %s: {units: 16, name: rnn}\n"
                               "    - Dense: {units: 4, activation: softmax}\n"
                               "compile:\n"
                               "  optimizer: {Adam: {learning_rate: 0.02}}\n"
                               "  loss: sparse_categorical_crossentropy\n"
                               "  metrics: [accuracy]\n"
                               "data:\n"
                               "  train: {x: train_x.npy, y: train_y.npy}\n"
                               "  test: {x: test_x.npy, y: test_y.npy}\n"
                               "  rescale: 1/255\n"
                               "fit: {epochs: %d, batch_size: 16, seed: 5}\n";

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

static void write_model(const char *name, const char *cls, int epochs) {
    char text[4096];
    snprintf(text, sizeof text, cli_model, cls, epochs);
    write_file(name, text);
}

START_TEST(test_cli_model) {
    /* Keras: LSTM 4u(in + u + 1), GRU 3u(in + u + 2), SimpleRNN u(in + u + 1); Dense 68 */
    const struct {
        const char *cls, *total;
    } counts[] = {{"LSTM", "1,668"}, {"GRU", "1,316"}, {"SimpleRNN", "468"}};
    for (int i = 0; i < 3; i++) {
        write_model("rnn.yaml", counts[i].cls, 6);
        int st = run("summary rnn.yaml");
        ck_assert_msg(st == 0, "summary failed: %s", err_buf);
        char want[64];
        snprintf(want, sizeof want, "Total params: %s", counts[i].total);
        ck_assert_msg(strstr(out_buf, want), "%s: %s", counts[i].cls, out_buf);
    }
    write_model("lstm.yaml", "LSTM", 6);
    int st = run("train lstm.yaml --output run --threads 2");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    char *tl = strstr(out_buf, "Test - loss: ");
    ck_assert_ptr_nonnull(tl);
    double loss, acc;
    ck_assert_int_eq(sscanf(tl, "Test - loss: %lf - accuracy: %lf", &loss, &acc), 2);
    ck_assert_msg(acc >= 0.8, "LSTM test accuracy %.4f", acc);
    st = run("evaluate run/last.safetensors --json");
    ck_assert_msg(st == 0, "evaluate failed: %s", err_buf);
    double el, ea;
    ck_assert_int_eq(sscanf(out_buf, "{\"loss\": %lf, \"accuracy\": %lf", &el, &ea), 2);
    ck_assert_close(el, loss, 5e-5, 0);

    write_model("gru.yaml", "GRU", 2);
    st = run("train gru.yaml --output rgru --threads 2");
    ck_assert_msg(st == 0, "GRU train failed (%d): %s", st, err_buf);

    write_file("bad.yaml", "model:\n  layers:\n    - Input: {shape: [8, 8]}\n"
                           "    - LSTM: {units: 4, go_backward: true}\n");
    st = run("summary bad.yaml");
    ck_assert_int_eq(st, 2);
    ck_assert_msg(strstr(err_buf, "bad.yaml:4:") && strstr(err_buf, "go_backward"), "%s", err_buf);
    write_file("bad2.yaml", "model:\n  layers:\n    - Input: {shape: [64]}\n"
                            "    - GRU: {units: 4}\n");
    st = run("summary bad2.yaml");
    ck_assert_int_eq(st, 2);
    ck_assert_msg(strstr(err_buf, "bad2.yaml:4:") && strstr(err_buf, "timesteps"), "%s", err_buf);
}
END_TEST

int main(void) {
    Suite *s = suite_create("layers_rnn");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_weights);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_orthogonal);
    suite_add_tcase(s, tc);

    TCase *tv = tcase_create("compute");
    tcase_set_timeout(tv, 120);
    int nb = kc_test_backend_count();
    tcase_add_loop_test(tv, test_keras_fixture, 0, nb);
    tcase_add_loop_test(tv, test_gradchecks, 0, nb);
    tcase_add_loop_test(tv, test_long_sequence, 0, nb);
    tcase_add_loop_test(tv, test_dropout, 0, nb);
    tcase_add_loop_test(tv, test_recurrent_dropout, 0, nb);
    tcase_add_loop_test(tv, test_stateful, 0, nb);
    suite_add_tcase(s, tv);

    TCase *tcl = tcase_create("cli");
    tcase_set_timeout(tcl, 240);
    tcase_add_checked_fixture(tcl, setup, teardown);
    tcase_add_test(tcl, test_cli_model);
    suite_add_tcase(s, tcl);
    return kc_test_run(s);
}

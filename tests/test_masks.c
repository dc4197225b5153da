/* Layer calls with several outputs (the node's tensors one after another,
 * each consumer reading its slice, gradients landing in their slices and
 * zeros in the unread ones) and masks through the graph (made by Embedding
 * and Masking, passed on, combined by merges, read by the layers that
 * consume them, dropped where Keras drops them). The computing tests run on
 * every backend of the registry that opens here (tests/devices.h). */
#include "core/rng.h"
#include "core/safetensors.h"
#include "models/config.h"
#include "models/loss_device.h"
#include "models/model_internal.h"
#include "tests/clitest.h"
#include "tests/devices.h"
#include "testutil.h"

static kc_config *parse_ok(const char *text) {
    kc_config *c = NULL;
    kc_error e = {0};
    int rc = kc_config_parse_text("m.yaml", "/tmp", text, strlen(text), &c, &e);
    ck_assert_msg(rc == 0, "unexpected error: %s\n%s", e.msg, text);
    return c;
}

static void parse_fails(const char *text, const char *frag1, const char *frag2) {
    kc_config *c = NULL;
    kc_error e = {0};
    int rc = kc_config_parse_text("m.yaml", "/tmp", text, strlen(text), &c, &e);
    ck_assert_msg(rc != 0, "expected an error for\n%s", text);
    ck_assert_msg(strstr(e.msg, frag1), "'%s' not in: %s", frag1, e.msg);
    if (frag2) ck_assert_msg(strstr(e.msg, frag2), "'%s' not in: %s", frag2, e.msg);
}

/* ------------------------------------------------ a layer of two outputs --- */

/* Twin: (4,) -> t0 = 2x (4,), t1 = 3 x[:2] (2,). */
static int twin_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    size_t n = (size_t)ex->batch;
    kc_buf y1 = kc_buf_f(y, 4 * n);
    kc_copy(ex->dev, y, x, 4 * n * sizeof(float));
    kc_scale(ex->dev, y, 2.0f, 4 * n);
    kc_copy2d(ex->dev, y1, 2, x, 4, n, 2);
    kc_scale(ex->dev, y1, 3.0f, 2 * n);
    return kc_device_status(ex->dev);
}

static int twin_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    size_t n = (size_t)ex->batch;
    if (!kc_buf_ok(dx)) return KC_OK;
    kc_copy(ex->dev, dx, dy, 4 * n * sizeof(float));
    kc_scale(ex->dev, dx, 2.0f, 4 * n);
    kc_copy(ex->dev, ex->ws, kc_buf_f(dy, 4 * n), 2 * n * sizeof(float));
    kc_scale(ex->dev, ex->ws, 3.0f, 2 * n);
    kc_copy_desc g = {.rank = 2, .dims = {(int64_t)n, 2}, .ss = {2, 1}, .ds = {4, 1}};
    kc_copy_strided(ex->dev, KC_COPY_ADD, &g, ex->ws, dx);
    return kc_device_status(ex->dev);
}

static size_t twin_ws(const kc_layer *l, int max_batch, const kc_device *d) {
    return (size_t)max_batch * 2 * sizeof(float);
}

static const kc_layer_class twin_class = {
    .class_name = "Twin",
    .base_name = "twin",
    .workspace_bytes = twin_ws,
    .forward = twin_forward,
    .backward = twin_backward,
};

/* The model of `yaml` with its layer 'tw' (an Identity on (4,)) turned into
 * a Twin, and layer 'd' (a Dense) called on tw[0][1] instead of tw. Outputs:
 * d, then tw[0][0] when with_t0. */
static kc_config *twin_model(const char *yaml, int with_t0) {
    kc_config *c = parse_ok(yaml);
    kc_model *m = c->model;
    kc_error e = {0};
    int tw = -1, d = -1;
    for (int i = 0; i < m->nnodes; i++) {
        kc_layer *l = m->nodes[i].layer;
        if (l && !strcmp(l->name, "tw")) tw = i;
        if (l && !strcmp(l->name, "d")) d = i;
    }
    ck_assert(tw >= 0 && d >= 0 && m->nodes[d].in[0] == tw);
    kc_layer *t = m->nodes[tw].layer, *dl = m->nodes[d].layer;
    t->cls = &twin_class;
    t->noutputs = 2;
    t->out_shapes[1] = kc_shape1(2);
    m->nodes[tw].ntensors = 2;
    m->nodes[d].in_t[0] = 1;
    dl->nparams = 0;
    kc_shape two = kc_shape1(2);
    ck_assert_msg(kc_layer_build(dl, &two, &e) == 0, "%s", e.msg);
    m->nodes[d].shape = dl->out_shape;
    if (with_t0) {
        kc_model_output *o = &m->outputs[m->noutputs++];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "tw");
        o->node = tw;
        o->tensor = 0;
    }
    ck_assert_int_eq(kc_model_decide_masks(m, &e), 0);
    return c;
}

static const char *twin_yaml = "model:\n"
                               "  layers:\n"
                               "    - Input: {shape: [4], name: x}\n"
                               "    - Dense: {units: 4, name: pre}\n"
                               "    - Identity: {name: tw}\n"
                               "    - Dense: {units: 3, name: d}\n";

/* L = sum_k sum(c_k * y_k) for fixed c_k; dy_k = c_k. */
static double twin_loss(kc_model *m, kc_device *be, int n, int grad) {
    kc_exec ex = {.dev = be, .batch = n, .training = 1, .seed = 1};
    ck_assert_msg(kc_model_forward(m, &ex) == 0, "%s", be->err.msg);
    double total = 0;
    for (int k = 0; k < m->noutputs; k++) {
        size_t cnt = (size_t)kc_shape_numel(kc_model_output_shape_n(m, k)) * (size_t)n;
        float *y = kc_test_fetch(be, kc_model_output_y(m, k), cnt);
        float *c = malloc(cnt * sizeof *c);
        for (size_t j = 0; j < cnt; j++) {
            c[j] = kc_rng_uniform(5, (uint64_t)k, j) - 0.5f;
            total += (double)c[j] * y[j];
        }
        if (grad) kc_test_put(be, kc_model_dy_n(m, k), c, cnt * sizeof *c);
        free(y);
        free(c);
    }
    if (grad) ck_assert_msg(kc_model_backward(m, &ex, 0) == 0, "%s", be->err.msg);
    return total;
}

static void twin_case(kc_device *be, int with_t0) {
    kc_config *c = twin_model(twin_yaml, with_t0);
    kc_model *m = c->model;
    kc_error e = {0};
    const int n = 3, planned = 5; /* a batch below the plan: slices move with it */
    ck_assert_msg(kc_model_plan(m, be, planned, 1, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(kc_model_init_weights(m, 9, &e), 0);
    float x[12];
    for (int j = 0; j < 12; j++)
        x[j] = kc_rng_uniform(3, 0, (uint64_t)j) - 0.5f;
    kc_test_put(be, m->inputs[0].x, x, sizeof x);
    twin_loss(m, be, n, 1);
    /* the forward values: tw[0][0] = 2 pre(x) */
    kc_layer *pre = m->layers[0];
    float *w = kc_test_fetch(be, pre->params[0].value, 16);
    float *b = kc_test_fetch(be, pre->params[1].value, 4);
    if (with_t0) {
        float *y = kc_test_fetch(be, kc_model_output_y(m, 1), 12);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < 4; j++) {
                double v = b[j];
                for (int i = 0; i < 4; i++)
                    v += x[r * 4 + i] * w[i * 4 + j];
                ck_assert_msg(fabs(y[r * 4 + j] - 2 * v) < 1e-5, "tw[0][0] on %s", be->name);
            }
        free(y);
    }
    /* pre's kernel gradient against central differences (L is linear in it) */
    float *g = kc_test_fetch(be, pre->params[0].grad, 16);
    for (int p = 0; p < 16; p++) {
        float keep = w[p], h = 1e-2f;
        w[p] = keep + h;
        kc_test_put(be, pre->params[0].value, w, 16 * sizeof *w);
        double up = twin_loss(m, be, n, 0);
        w[p] = keep - h;
        kc_test_put(be, pre->params[0].value, w, 16 * sizeof *w);
        double down = twin_loss(m, be, n, 0);
        w[p] = keep;
        kc_test_put(be, pre->params[0].value, w, 16 * sizeof *w);
        double fd = (up - down) / (2 * h);
        ck_assert_msg(fabs(fd - g[p]) < 2e-3 * (1 + fabs(fd)), "%s kernel[%d]: %g vs %g (t0 %d)",
                      be->name, p, g[p], fd, with_t0);
    }
    free(w);
    free(b);
    free(g);
    kc_config_free(c);
}

START_TEST(several_outputs_forward_backward) {
    KC_LOOP_DEVICE(be);
    twin_case(be, 1); /* both tensors read: one by a layer, one as an output */
    twin_case(be, 0); /* tensor 0 unread: its gradient slice is zero */
}
END_TEST

START_TEST(tensor_references) {
    /* tensor 0 spelled out works everywhere; other tensors of one-output layers do not */
    kc_config *c = parse_ok("model:\n"
                            "  layers:\n"
                            "    - Input: {shape: [4], name: x}\n"
                            "    - Dense: {units: 4, name: a}\n"
                            "    - Dense: {units: 2, name: b, inputs: 'a[0][0]'}\n"
                            "  outputs: ['b[0][0]']\n");
    ck_assert_int_eq(c->model->noutputs, 1);
    ck_assert_str_eq(c->model->outputs[0].name, "b");
    ck_assert_int_eq(c->model->outputs[0].tensor, 0);
    kc_config_free(c);
    parse_fails("model:\n  layers:\n    - Input: {shape: [4], name: x}\n"
                "    - Dense: {units: 4, name: a}\n"
                "    - Dense: {units: 2, inputs: 'a[0][1]'}\n",
                "m.yaml:5:33:", "'a' returns one tensor, a[0][0]");
    parse_fails("model:\n  layers:\n    - Input: {shape: [4], name: x}\n"
                "    - Dense: {units: 4, name: a}\n"
                "    - Dense: {units: 2, inputs: 'a[0][x]'}\n",
                "m.yaml:5:33:", "tensor index from 0 to 7");
    parse_fails("model:\n  layers:\n    - Input: {shape: [4], name: x}\n"
                "    - Dense: {units: 4, inputs: 'x[0][1]'}\n",
                "m.yaml:4:33:", "the Input 'x' has one node and one tensor");
}
END_TEST

/* ---------------------------------------------------------------- masks --- */

static const char *emb_yaml = "model:\n"
                              "  layers:\n"
                              "    - Input: {shape: [5], name: ids}\n"
                              "    - Embedding: {input_dim: 6, output_dim: 3, mask_zero: true}\n"
                              "    - Dense: {units: 2, name: d}\n"
                              "    - Dropout: {rate: 0.5}\n"
                              "    - GlobalAveragePooling1D: {name: gap}\n";

static int node_named(const kc_model *m, const char *name) {
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].layer && !strcmp(m->nodes[i].layer->name, name)) return i;
    ck_abort_msg("no node %s", name);
    return -1;
}

START_TEST(mask_decisions) {
    kc_config *c = parse_ok(emb_yaml);
    kc_model *m = c->model;
    int emb = node_named(m, "embedding"), d = node_named(m, "d"), dr = node_named(m, "dropout"),
        gap = node_named(m, "gap");
    ck_assert(m->nodes[emb].masked && m->nodes[emb].mask_src == KC_MASK_SRC_PRODUCE);
    ck_assert(m->nodes[d].masked && m->nodes[d].mask_src == KC_MASK_SRC_ALIAS);
    ck_assert_int_eq(m->nodes[dr].mask_from, emb); /* the buffer of the layer that made it */
    ck_assert(!m->nodes[gap].masked && m->nodes[gap].in_masks == 1);
    ck_assert_str_eq(m->mask_dropped, "");
    kc_config_free(c);
    /* Flatten does not support masking: Keras warns and the mask ends there */
    c = parse_ok("model:\n  layers:\n    - Input: {shape: [5]}\n"
                 "    - Embedding: {input_dim: 6, output_dim: 3, mask_zero: true}\n"
                 "    - Flatten\n    - Dense: {units: 1}\n");
    ck_assert(!c->model->nodes[3].masked);
    ck_assert_msg(strstr(c->model->mask_dropped, "layer 'flatten' (Flatten) does not support "
                                                 "masking: the mask of 'embedding' ends there"),
                  "%s", c->model->mask_dropped);
    kc_config_free(c);
    /* merges: masked only when every input is (Keras's OR), else none */
    const char *merge = "model:\n  layers:\n    - Input: {shape: [5], name: a}\n"
                        "    - Input: {shape: [5], name: b}\n"
                        "    - Embedding: {input_dim: 6, output_dim: 3, mask_zero: true, name: "
                        "ea, inputs: a}\n"
                        "    - Embedding: {input_dim: 6, output_dim: 3, mask_zero: %s, name: eb, "
                        "inputs: b}\n"
                        "    - Add: {inputs: [ea, eb], name: s}\n"
                        "    - GlobalAveragePooling1D\n";
    char text[1024];
    snprintf(text, sizeof text, merge, "true");
    c = parse_ok(text);
    int s = node_named(c->model, "s");
    ck_assert(c->model->nodes[s].masked && c->model->nodes[s].mask_src == KC_MASK_SRC_OR);
    ck_assert_int_eq(c->model->nodes[s].in_masks, 2);
    kc_config_free(c);
    snprintf(text, sizeof text, merge, "false");
    c = parse_ok(text);
    s = node_named(c->model, "s");
    ck_assert(!c->model->nodes[s].masked);
    kc_config_free(c);
}
END_TEST

/* The model's output after GlobalAveragePooling1D is the mean of the
 * unmasked steps of Dense(Embedding(ids)), on every backend. */
START_TEST(mask_reaches_consumer) {
    KC_LOOP_DEVICE(be);
    kc_config *c = parse_ok(emb_yaml);
    kc_model *m = c->model;
    kc_error e = {0};
    const int n = 3;
    ck_assert_msg(kc_model_plan(m, be, 4, 0, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(kc_model_init_weights(m, 4, &e), 0);
    const float ids[15] = {1, 2, 0, 0, 0, 5, 4, 3, 2, 1, 0, 3, 0, 3, 0};
    kc_test_put(be, m->inputs[0].x, ids, sizeof ids);
    kc_exec ex = {.dev = be, .batch = n, .training = 0, .seed = 1};
    ck_assert_msg(kc_model_forward(m, &ex) == 0, "%s", be->err.msg);
    float *emb = kc_test_fetch(be, m->layers[0]->params[0].value, 18);
    float *w = kc_test_fetch(be, m->layers[1]->params[0].value, 6);
    float *b = kc_test_fetch(be, m->layers[1]->params[1].value, 2);
    float *y = kc_test_fetch(be, kc_model_output_y(m, 0), (size_t)n * 2);
    float *mask = kc_test_fetch(be, m->nodes[node_named(m, "d")].mask, (size_t)n * 5);
    for (int r = 0; r < n; r++) {
        for (int j = 0; j < 2; j++) {
            double sum = 0;
            int count = 0;
            for (int t = 0; t < 5; t++) {
                int id = (int)ids[r * 5 + t];
                ck_assert_float_eq(mask[r * 5 + t], id != 0 ? 1.0f : 0.0f);
                if (!id) continue;
                double v = b[j];
                for (int i = 0; i < 3; i++)
                    v += emb[id * 3 + i] * w[i * 2 + j];
                sum += v;
                count++;
            }
            ck_assert_msg(fabs(y[r * 2 + j] - sum / count) < 1e-5, "%s row %d: %g vs %g", be->name,
                          r, y[r * 2 + j], sum / count);
        }
    }
    free(emb);
    free(w);
    free(b);
    free(y);
    free(mask);
    kc_config_free(c);
}
END_TEST

/* Add of two masked tensors carries the OR of their masks. */
START_TEST(merged_mask_is_or) {
    KC_LOOP_DEVICE(be);
    kc_config *c = parse_ok("model:\n  layers:\n    - Input: {shape: [4], name: a}\n"
                            "    - Input: {shape: [4], name: b}\n"
                            "    - Embedding: {input_dim: 3, output_dim: 2, mask_zero: true, "
                            "name: ea, inputs: a}\n"
                            "    - Embedding: {input_dim: 3, output_dim: 2, mask_zero: true, "
                            "name: eb, inputs: b}\n"
                            "    - Add: {inputs: [ea, eb], name: s}\n"
                            "    - Dense: {units: 1}\n");
    kc_model *m = c->model;
    kc_error e = {0};
    ck_assert_msg(kc_model_plan(m, be, 2, 0, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(kc_model_init_weights(m, 4, &e), 0);
    const float a[8] = {1, 0, 2, 0, 0, 0, 1, 1}, b[8] = {0, 0, 1, 2, 1, 0, 0, 1};
    kc_test_put(be, m->inputs[0].x, a, sizeof a);
    kc_test_put(be, m->inputs[1].x, b, sizeof b);
    kc_exec ex = {.dev = be, .batch = 2, .training = 0, .seed = 1};
    ck_assert_msg(kc_model_forward(m, &ex) == 0, "%s", be->err.msg);
    ck_assert(kc_model_output_masked(m, 0));
    float *mask = kc_test_fetch(be, kc_model_output_mask(m, 0), 8);
    for (int i = 0; i < 8; i++)
        ck_assert_float_eq(mask[i], (a[i] != 0 || b[i] != 0) ? 1.0f : 0.0f);
    free(mask);
    kc_config_free(c);
}
END_TEST

/* ------------------------------------------------------- masked losses --- */

static const float *fixture_floats(kc_st_file *f, const char *name, size_t want) {
    const kc_st_tensor *t = kc_st_find(f, name);
    ck_assert_msg(t && t->dtype == KC_ST_F32 && (size_t)kc_shape_numel(&t->shape) == want,
                  "fixture tensor %s", name);
    return t->data;
}

/* A masked output's loss and gradient as Keras 3 computes them
 * (tests/fixtures/masks/make_masked_losses.py): only the unmasked steps
 * count, the mean is over them. */
START_TEST(masked_losses_match_keras) {
    KC_LOOP_DEVICE(be);
    const char *src = getenv("KERASC_SRC");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/masks/masked_losses.safetensors",
             src && *src ? src : ".");
    kc_st_file *f = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path, &f, &e) == 0, "%s", e.msg);
    const int rows = 8, cols = 3;
    const float *mask = fixture_floats(f, "mask", 8), *pred = fixture_floats(f, "pred", 24),
                *target = fixture_floats(f, "target", 24);
    const char *cases[][2] = {
        {"mse", "mse"}, {"cce", "categorical_crossentropy"}, {"mse_sum", "mse"}};
    for (int c = 0; c < 3; c++) {
        kc_loss l;
        ck_assert_int_eq(kc_loss_init(&l, cases[c][1], &e), 0);
        if (c == 2) l.reduction = KC_REDUCTION_SUM;
        kc_loss_device p = {0};
        ck_assert_msg(kc_loss_device_plan(&p, be, &l, rows, cols, 0, &e) == 0, "%s", e.msg);
        ck_assert_int_eq(kc_loss_device_plan_mask(&p, &e), 0);
        kc_buf P = kc_test_from(be, pred, 24), T = kc_test_from(be, target, 24),
               M = kc_test_from(be, mask, 8), G = kc_test_from(be, NULL, 24),
               A = kc_test_from(be, (const float[]){0}, 1);
        kc_loss_device_run_masked(&p, P, T, rows, 1.0f, G, A, 1.0f, M);
        kc_test_ok(be, cases[c][0]);
        char key[64];
        snprintf(key, sizeof key, "%s_value", cases[c][0]);
        float v, *g = kc_test_fetch(be, G, 24);
        kc_test_get(be, &v, A, sizeof v);
        float want = fixture_floats(f, key, 1)[0];
        ck_assert_msg(fabsf(v - want) < 1e-5f * (1 + fabsf(want)), "%s on %s: %g, Keras %g",
                      cases[c][0], be->name, v, want);
        snprintf(key, sizeof key, "%s_grad", cases[c][0]);
        const float *wg = fixture_floats(f, key, 24);
        for (int i = 0; i < 24; i++)
            ck_assert_msg(fabsf(g[i] - wg[i]) < 1e-5f * (1 + fabsf(wg[i])),
                          "%s gradient[%d] on %s: %g, Keras %g", cases[c][0], i, be->name, g[i],
                          wg[i]);
        free(g);
        kc_buf bufs[] = {P, T, M, G, A};
        for (int i = 0; i < 5; i++)
            kc_free(be, &bufs[i]);
        kc_loss_device_free(&p);
    }
    kc_st_close(f);
}
END_TEST

/* A masked output's metrics as Keras 3 reports them after two batches
 * (tests/fixtures/masks/make_masked_metrics.py): the running means count
 * only the unmasked steps (a batch with a fully masked sample included);
 * precision reads every step, as Keras's does. */
START_TEST(masked_metrics_match_keras) {
    KC_LOOP_DEVICE(be);
    const char *src = getenv("KERASC_SRC");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/masks/masked_metrics.safetensors",
             src && *src ? src : ".");
    kc_st_file *f = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path, &f, &e) == 0, "%s", e.msg);
    const int rows = 12, cols = 3;
    static const char *const names[] = {"categorical_accuracy",
                                        "sparse_categorical_accuracy",
                                        "binary_accuracy",
                                        "mse",
                                        "mae",
                                        "top_k_categorical_accuracy",
                                        "sparse_top_k_categorical_accuracy",
                                        "poisson",
                                        "cosine_similarity",
                                        "precision"};
    for (size_t c = 0; c < sizeof names / sizeof names[0]; c++) {
        int sparse = strstr(names[c], "sparse") != NULL;
        kc_metric m;
        ck_assert_msg(kc_metric_init(&m, names[c], cols, sparse, &e) == 0, "%s", e.msg);
        if (m.kind == KC_METRIC_TOP_K_CATEGORICAL_ACCURACY ||
            m.kind == KC_METRIC_SPARSE_TOP_K_CATEGORICAL_ACCURACY)
            m.k = 2;
        kc_metric_device md;
        ck_assert_msg(kc_metric_device_plan(&md, be, &m, rows, cols, &e) == 0, "%s", e.msg);
        ck_assert_int_eq(kc_metric_device_plan_mask(&md, &e), 0);
        for (int b = 0; b < 2; b++) {
            char key[32];
            snprintf(key, sizeof key, "pred%d", b);
            kc_buf P = kc_test_from(be, fixture_floats(f, key, 36), 36);
            snprintf(key, sizeof key, sparse ? "label%d" : "target%d", b);
            kc_buf T = kc_test_from(be, fixture_floats(f, key, sparse ? 12 : 36), sparse ? 12 : 36);
            snprintf(key, sizeof key, "mask%d", b);
            kc_buf M = kc_test_from(be, fixture_floats(f, key, 12), 12);
            kc_metric_device_update_masked(&md, P, T, rows, M);
            kc_test_ok(be, names[c]);
            kc_free(be, &P);
            kc_free(be, &T);
            kc_free(be, &M);
        }
        kc_metric_reset(&m);
        ck_assert_int_eq(kc_metric_device_read(&md, &m), 0);
        double v = kc_metric_result(&m), want = fixture_floats(f, names[c], 1)[0];
        ck_assert_msg(fabs(v - want) < 1e-5 * (1 + fabs(want)), "%s on %s: %g, Keras %g", names[c],
                      be->name, v, want);
        kc_metric_device_free(&md);
    }
    kc_st_close(f);
}
END_TEST

/* ------------------------------------------------ through the binary --- */

static void cli_setup(void) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    dir = kc_test_tmpdir();
}

static void cli_teardown(void) {
    kc_test_rmdir(dir);
    free(dir);
}

/* The `"key": value` numbers of a --log-json file, in order; returns how
 * many (at most cap). */
static int log_values(const char *file, const char *key, double *v, int cap) {
    static char text[1 << 16];
    slurp(path_in(file), text, sizeof text);
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    int n = 0;
    for (const char *p = strstr(text, pat); p && n < cap; p = strstr(p + 1, pat))
        v[n++] = strtod(p + strlen(pat), NULL);
    return n;
}

/* An encoder-decoder: the decoder LSTM starts from the encoder's states
 * enc[0][1] and enc[0][2]. It trains (the loss falls) and its summary
 * counts Keras's parameters (the same model in Keras: 3,336). */
START_TEST(encoder_decoder_trains) {
    if (!kc_layer_class_find("LSTM")) return;
    enum { N = 32, TE = 10, TD = 12, F = 8 };
    float *a = malloc(N * TE * F * sizeof *a), *b = malloc(N * TD * F * sizeof *b),
          *t = malloc(N * TD * sizeof *t);
    for (int i = 0; i < N * TE * F; i++)
        a[i] = kc_rng_uniform(21, 1, (uint64_t)i) - 0.5f;
    for (int r = 0; r < N * TD; r++) { /* the target: the step's largest feature */
        int best = 0;
        for (int k = 0; k < F; k++) {
            b[r * F + k] = kc_rng_uniform(21, 2, (uint64_t)(r * F + k));
            if (b[r * F + k] > b[r * F + best]) best = k;
        }
        t[r] = (float)best;
    }
    write_npy("a.npy", a, kc_shape3(N, TE, F));
    write_npy("b.npy", b, kc_shape3(N, TD, F));
    write_npy("t.npy", t, kc_shape2(N, TD));
    free(a);
    free(b);
    free(t);
    write_file("s2s.yaml",
               "model:\n  name: s2s\n  layers:\n"
               "    - Input: {shape: [10, 8], name: enc_in}\n"
               "    - LSTM: {units: 16, return_state: true, name: enc}\n"
               "    - Input: {shape: [12, 8], name: dec_in}\n"
               "    - LSTM: {units: 16, return_sequences: true, inputs: [dec_in, 'enc[0][1]', "
               "'enc[0][2]'], name: dec}\n"
               "    - Dense: {units: 8, activation: softmax, inputs: dec, name: probs}\n"
               "compile: {optimizer: {adam: {learning_rate: 0.01}}, loss: "
               "sparse_categorical_crossentropy, metrics: [accuracy]}\n"
               "data: {train: {x: {enc_in: a.npy, dec_in: b.npy}, y: t.npy}}\n"
               "fit: {epochs: 4, batch_size: 8, seed: 1, verbose: 0}\n");
    ck_assert_msg(run("train s2s.yaml --output run --log-json log.json") == 0, "%s%s", out_buf,
                  err_buf);
    double loss[8];
    ck_assert_int_eq(log_values("log.json", "loss", loss, 8), 4);
    ck_assert_msg(loss[3] < loss[0] && loss[0] < 3.0, "%g .. %g", loss[0], loss[3]);
    ck_assert_msg(run("summary s2s.yaml") == 0, "%s", err_buf);
    ck_assert_msg(strstr(out_buf, "Total params: 3,336 "), "%s", out_buf);
    /* Keras's list of the call's three shapes (wrapped in the column) */
    ck_assert_msg(strstr(out_buf, "[(None, 16),") && strstr(out_buf, "(None, 16)]"), "%s", out_buf);
    ck_assert_msg(strstr(out_buf, "enc[0][2]"), "%s", out_buf);
}
END_TEST

/* Writes ids (n, len) padded from (n, 5) real tokens, the first half of the
 * rows padded in front (Keras's 'pre'), the rest after; len 5 is unpadded. */
static void token_rows(const char *name, int n, int len, int per_step, const char *yname) {
    float *x = calloc((size_t)n * (size_t)len, sizeof *x);
    float *y = calloc((size_t)n * (size_t)(per_step ? len : 1), sizeof *y);
    for (int r = 0; r < n; r++) {
        int off = r < n / 2 ? len - 5 : 0;
        int ones = 0;
        for (int k = 0; k < 5; k++) {
            int id = 1 + (int)kc_rng_below(31, (uint64_t)r, (uint64_t)k, 9);
            x[r * len + off + k] = (float)id;
            ones += id > 5;
            if (per_step) y[r * len + off + k] = (float)(id % 3);
        }
        if (!per_step) y[r] = ones >= 3 ? 1.0f : 0.0f;
        for (int k = 0; per_step && k < len; k++) /* padded steps: a label the loss must skip */
            if (x[r * len + k] == 0) y[r * len + k] = 2.0f;
    }
    write_npy(name, x, kc_shape2(n, len));
    write_npy(yname, y, per_step ? kc_shape2(n, len) : kc_shape1(n));
    free(x);
    free(y);
}

/* Trains `layers` on (n, len) tokens and reads the epochs' loss and
 * accuracy from the JSON log. */
static void train_tokens(int len, const char *layers, const char *loss, int per_step, double *l,
                         double *acc) {
    char text[2048];
    token_rows("x.npy", 32, len, per_step, "y.npy");
    snprintf(text, sizeof text,
             "model:\n  name: tok\n  layers:\n    - Input: {shape: [%d]}\n%s"
             "compile: {optimizer: {sgd: {learning_rate: 0.5}}, loss: %s, metrics: [accuracy]}\n"
             "data: {train: {x: x.npy, y: y.npy}}\n"
             "fit: {epochs: 3, batch_size: 8, seed: 4, verbose: 0}\n",
             len, layers, loss);
    write_file("tok.yaml", text);
    remove(path_in("log.json"));
    ck_assert_msg(run("train tok.yaml --output run%d --log-json log.json", len) == 0, "%s%s",
                  out_buf, err_buf);
    ck_assert_int_eq(log_values("log.json", "loss", l, 3), 3);
    ck_assert_int_eq(log_values("log.json", "accuracy", acc, 3), 3);
}

/* Embedding(mask_zero) -> LSTM: padded sequences (in front and behind)
 * train exactly as the same tokens unpadded, for a classifier and for a
 * per-step output whose loss and accuracy skip the padded steps. */
START_TEST(masks_skip_padding) {
    if (!kc_layer_class_find("LSTM")) return;
    static const char *const models[][2] = {
        {"    - Embedding: {input_dim: 10, output_dim: 4, mask_zero: true}\n"
         "    - LSTM: {units: 6}\n    - Dense: {units: 1, activation: sigmoid}\n",
         "binary_crossentropy"},
        {"    - Embedding: {input_dim: 10, output_dim: 4, mask_zero: true}\n"
         "    - LSTM: {units: 6, return_sequences: true}\n"
         "    - Dense: {units: 3, activation: softmax}\n",
         "sparse_categorical_crossentropy"},
    };
    for (int m = 0; m < 2; m++) {
        double lp[3], ap[3], lu[3], au[3];
        train_tokens(8, models[m][0], models[m][1], m, lp, ap);
        train_tokens(5, models[m][0], models[m][1], m, lu, au);
        for (int e = 0; e < 3; e++) {
            ck_assert_msg(fabs(lp[e] - lu[e]) < 1e-5 * (1 + fabs(lu[e])),
                          "model %d epoch %d: loss %.8g padded, %.8g unpadded", m, e, lp[e], lu[e]);
            ck_assert_msg(fabs(ap[e] - au[e]) < 1e-6, "model %d epoch %d: accuracy %g vs %g", m, e,
                          ap[e], au[e]);
        }
        ck_assert_msg(lp[2] != lp[0], "model %d did not train", m);
    }
}
END_TEST

/* A layer that drops a mask is named in a warning, as Keras warns. */
START_TEST(dropped_mask_warning) {
    float x[8 * 5], y[8];
    for (int i = 0; i < 40; i++)
        x[i] = (float)(i % 4);
    for (int i = 0; i < 8; i++)
        y[i] = (float)(i % 2);
    write_npy("x.npy", x, kc_shape2(8, 5));
    write_npy("y.npy", y, kc_shape1(8));
    write_file("drop.yaml", "model:\n  layers:\n    - Input: {shape: [5]}\n"
                            "    - Embedding: {input_dim: 4, output_dim: 2, mask_zero: true}\n"
                            "    - Flatten\n    - Dense: {units: 1, activation: sigmoid}\n"
                            "compile: {optimizer: sgd, loss: binary_crossentropy}\n"
                            "data: {train: {x: x.npy, y: y.npy}, test: {x: x.npy, y: y.npy}}\n"
                            "fit: {epochs: 1, batch_size: 4, verbose: 0}\n");
    ck_assert_msg(run("train drop.yaml --output run") == 0, "%s", err_buf);
    static const char warning[] = "warning: layer 'flatten' (Flatten) does not support masking: "
                                  "the mask of 'embedding' ends there; the layers after it do not "
                                  "see the mask\n";
    ck_assert_msg(strstr(err_buf, "kerasc train: ") && strstr(err_buf, warning), "%s", err_buf);
    ck_assert_msg(run("evaluate run/last.safetensors") == 0, "%s", err_buf);
    ck_assert_msg(strstr(err_buf, "kerasc evaluate: ") && strstr(err_buf, warning), "%s", err_buf);
    /* without the Flatten nothing is said */
    write_file("keep.yaml", "model:\n  layers:\n    - Input: {shape: [5]}\n"
                            "    - Embedding: {input_dim: 4, output_dim: 2, mask_zero: true}\n"
                            "    - GlobalAveragePooling1D\n"
                            "    - Dense: {units: 1, activation: sigmoid}\n"
                            "compile: {optimizer: sgd, loss: binary_crossentropy}\n"
                            "data: {train: {x: x.npy, y: y.npy}}\n"
                            "fit: {epochs: 1, batch_size: 4, verbose: 0}\n");
    ck_assert_msg(run("train keep.yaml --output run2") == 0, "%s", err_buf);
    ck_assert_msg(!strstr(err_buf, "warning"), "%s", err_buf);
}
END_TEST

int main(void) {
    Suite *s = suite_create("masks");
    TCase *t = tcase_create("masks");
    tcase_set_timeout(t, 120);
    int nb = kc_test_backend_count();
    tcase_add_loop_test(t, several_outputs_forward_backward, 0, nb);
    tcase_add_test(t, tensor_references);
    tcase_add_test(t, mask_decisions);
    tcase_add_loop_test(t, mask_reaches_consumer, 0, nb);
    tcase_add_loop_test(t, merged_mask_is_or, 0, nb);
    tcase_add_loop_test(t, masked_losses_match_keras, 0, nb);
    tcase_add_loop_test(t, masked_metrics_match_keras, 0, nb);
    suite_add_tcase(s, t);
    TCase *cli = tcase_create("cli");
    tcase_set_timeout(cli, 120);
    tcase_add_checked_fixture(cli, cli_setup, cli_teardown);
    tcase_add_test(cli, encoder_decoder_trains);
    tcase_add_test(cli, masks_skip_padding);
    tcase_add_test(cli, dropped_mask_warning);
    suite_add_tcase(s, cli);
    return kc_test_run(s);
}

/* Layer graphs: merge layers (values by hand, gradients by finite
 * differences), shared layers (one set of weights, gradients summed over the
 * calls), several inputs and outputs, the graph's bookkeeping as Keras sees
 * it, and every graph error with its file:line:column. The computing tests
 * run on every backend of the registry that opens here (tests/devices.h). */
#include "core/rng.h"
#include "models/config.h"
#include "models/fit.h"
#include "models/losses.h"
#include "tests/devices.h"
#include "testutil.h"

/* ------------------------------------------------------------ fixtures --- */

typedef struct gfix {
    kc_config *cfg;
    kc_model *m;
    kc_device *be;
    int n; /* batch */
    kc_loss loss[KC_MODEL_MAX_IO];
    int fused[KC_MODEL_MAX_IO];
    float *target[KC_MODEL_MAX_IO];
    float *host, *grad; /* scratch as large as the largest output */
} gfix;

static kc_config *parse_ok(const char *text) {
    kc_config *c = NULL;
    kc_error e = {0};
    int rc = kc_config_parse_text("g.yaml", "/tmp", text, strlen(text), &c, &e);
    ck_assert_msg(rc == 0, "unexpected error: %s\n%s", e.msg, text);
    return c;
}

/* Parses, plans for training and fills inputs and targets. losses[k] names
 * output k's loss (NULL: mse); a crossentropy after a matching activation
 * takes the fused (pre-activation) path, as fit does. */
static void gfix_open(gfix *f, const char *yaml, kc_device *be, int n, const char *const *losses) {
    memset(f, 0, sizeof *f);
    kc_error e = {0};
    f->cfg = parse_ok(yaml);
    f->m = f->cfg->model;
    f->be = be;
    f->n = n;
    ck_assert_msg(kc_model_plan(f->m, be, n, 1, &e) == 0, "%s", e.msg);
    ck_assert_msg(kc_model_init_weights(f->m, 3, &e) == 0, "%s", e.msg);
    size_t most = 0;
    for (int i = 0; i < f->m->ninputs; i++) {
        size_t cnt = (size_t)kc_shape_numel(&f->m->inputs[i].shape) * (size_t)n;
        float *x = malloc(cnt * sizeof *x);
        for (size_t j = 0; j < cnt; j++)
            x[j] = 2.0f * kc_rng_uniform(17, (uint64_t)i + 1, (uint64_t)j) - 1.0f;
        kc_test_put(be, f->m->inputs[i].x, x, cnt * sizeof *x);
        free(x);
    }
    for (int k = 0; k < f->m->noutputs; k++) {
        const char *ln = losses && losses[k] ? losses[k] : "mse";
        ck_assert_int_eq(kc_loss_init(&f->loss[k], ln, &e), 0);
        const kc_shape *sh = kc_model_output_shape_n(f->m, k);
        size_t cnt = (size_t)kc_shape_numel(sh) * (size_t)n;
        if (cnt > most) most = cnt;
        int cols = (int)sh->d[sh->rank - 1];
        f->target[k] = malloc(cnt * sizeof(float));
        if (kc_loss_sparse_targets(&f->loss[k])) {
            for (int r = 0; r < (int)(cnt / (size_t)cols); r++)
                f->target[k][r] = (float)(r % cols);
        } else {
            for (size_t j = 0; j < cnt; j++)
                f->target[k][j] = kc_rng_uniform(23, (uint64_t)k, j);
        }
        const kc_layer *l = f->m->nodes[f->m->outputs[k].node].layer;
        f->fused[k] = kc_loss_has_logits_form(&f->loss[k]) &&
                      l->activation.act == kc_loss_logits_activation(&f->loss[k]) &&
                      l->activation.act != KC_ACT_LINEAR;
    }
    f->host = malloc(most * sizeof(float));
    f->grad = malloc(most * sizeof(float));
}

static void gfix_close(gfix *f) {
    for (int k = 0; k < KC_MODEL_MAX_IO; k++)
        free(f->target[k]);
    free(f->host);
    free(f->grad);
    kc_config_free(f->cfg);
}

/* The weighted sum of the outputs' losses (weights 1 and 0.5, 0.25, ...),
 * with the gradient of every parameter when want_grad. */
static double gfix_loss(gfix *f, int want_grad) {
    kc_model *m = f->m;
    kc_exec ex = {.dev = f->be, .batch = f->n, .training = 1, .seed = 77, .step = 5};
    ck_assert_msg(kc_model_forward(m, &ex) == KC_OK, "forward on %s: %s", f->be->name,
                  f->be->err.msg);
    double total = 0, w = 1.0;
    for (int k = 0; k < m->noutputs; k++, w *= 0.5) {
        const kc_shape *sh = kc_model_output_shape_n(m, k);
        int cols = (int)sh->d[sh->rank - 1];
        int rows = (int)(kc_shape_numel(sh) / cols) * f->n;
        size_t bytes = (size_t)rows * (size_t)cols * sizeof(float);
        kc_test_get(f->be, f->host, f->fused[k] ? kc_model_output_z(m, k) : kc_model_output_y(m, k),
                    bytes);
        total += w * kc_loss_compute(&f->loss[k], f->host, f->target[k], rows, cols, f->fused[k],
                                     NULL, want_grad ? f->grad : NULL);
        if (want_grad) {
            for (int i = 0; i < rows * cols; i++)
                f->grad[i] = (float)(f->grad[i] * w);
            kc_test_put(f->be, kc_model_dy_n(m, k), f->grad, bytes);
        }
    }
    if (want_grad)
        ck_assert_msg(kc_model_backward_n(m, &ex, f->fused) == KC_OK, "backward on %s: %s",
                      f->be->name, f->be->err.msg);
    return total;
}

static float *download_all(kc_device *be, kc_buf dev, size_t n) {
    return kc_test_fetch(be, dev, n);
}

/* Central differences of the loss against every stride-th parameter gradient. */
static void check_grads(gfix *f, int stride, const char *what) {
    kc_model *m = f->m;
    gfix_loss(f, 1);
    size_t nv = (size_t)m->nvalues;
    float *w = download_all(f->be, m->values, nv), *g = download_all(f->be, m->grads, nv);
    const float h = 2e-3f;
    int checked = 0;
    for (size_t i = 0; i < nv; i += (size_t)stride) {
        float orig = w[i];
        w[i] = orig + h;
        kc_test_put(f->be, m->values, w, nv * sizeof *w);
        double lp = gfix_loss(f, 0);
        w[i] = orig - h;
        kc_test_put(f->be, m->values, w, nv * sizeof *w);
        double lm = gfix_loss(f, 0);
        w[i] = orig;
        double num = (lp - lm) / (2.0 * h);
        ck_assert_msg(fabs(num - g[i]) <= 1e-3 + 2e-2 * fabs(num),
                      "%s (%s): weight %zu: analytic %.6g, numeric %.6g", what, f->be->name, i,
                      g[i], num);
        checked++;
    }
    kc_test_put(f->be, m->values, w, nv * sizeof *w);
    ck_assert_int_gt(checked, 10);
    free(w);
    free(g);
}

/* Two towers meet in a merge layer, then a Dense head: the gradient of every
 * tower weight passes through the merge. */
static char *merge_model(const char *merge, const char *args) {
    static const char *fmt = "model:\n"
                             "  layers:\n"
                             "    - Input: {shape: [5], name: a}\n"
                             "    - Input: {shape: [5], name: b}\n"
                             "    - Dense: {units: 4, activation: tanh, name: da, inputs: a}\n"
                             "    - Dense: {units: 4, activation: tanh, name: db, inputs: b,"
                             " bias_initializer: random_normal}\n"
                             "%s"
                             "    - %s: {name: merge%s}\n"
                             "    - Dense: {units: 3, name: out}\n";
    const char *dc = strstr(args, "dc")
                         ? "    - Dense: {units: 4, activation: sigmoid, name: dc, inputs: a}\n"
                         : "";
    char *s = malloc(4096);
    snprintf(s, 4096, fmt, dc, merge, args);
    return s;
}

static void check_merge(kc_device *d, const char *merge, const char *args) {
    char *yaml = merge_model(merge, args);
    gfix f;
    gfix_open(&f, yaml, d, 3, NULL);
    char what[256];
    snprintf(what, sizeof what, "%s%s", merge, args);
    check_grads(&f, 1, what);
    gfix_close(&f);
    free(yaml);
}

/* ------------------------------------------------------- merge values --- */

/* One call of a multi-input layer on host arrays, on device be. */
static float *merge_forward(kc_device *be, const char *cls, const char *args_yaml,
                            const kc_shape *shapes, int n, const float *const *xs, int batch,
                            kc_shape *out_shape) {
    kc_error e = {0};
    kc_doc *doc = NULL;
    ck_assert_int_eq(kc_doc_parse(&doc, "m.yaml", args_yaml, strlen(args_yaml), &e), 0);
    kc_args a;
    kc_args_init(&a, doc->root, doc->root, cls);
    kc_layer *l = NULL;
    ck_assert_msg(kc_layer_create(kc_layer_class_find(cls), &a, doc->root, &l, &e) == 0, "%s",
                  e.msg);
    ck_assert_msg(kc_layer_build_n(l, shapes, n, &e) == 0, "%s", e.msg);
    *out_shape = l->out_shape;
    size_t ny = (size_t)kc_shape_numel(&l->out_shape) * (size_t)batch;
    kc_buf dx[KC_LAYER_MAX_INPUTS];
    for (int i = 0; i < n; i++) {
        size_t cnt = (size_t)kc_shape_numel(&shapes[i]) * (size_t)batch;
        dx[i] = kc_test_from(be, xs[i], cnt);
    }
    kc_buf y = kc_test_alloc(be, ny * sizeof(float));
    size_t ws = l->cls->workspace_bytes ? l->cls->workspace_bytes(l, batch, be) : 0;
    size_t bb = l->cls->buffer_bytes ? l->cls->buffer_bytes(l, batch, be) : 0;
    kc_exec ex = {.dev = be, .batch = batch, .ws = ws ? kc_test_alloc(be, ws) : KC_BUF_NULL};
    l->buf = bb ? kc_test_alloc(be, bb) : KC_BUF_NULL;
    ck_assert_msg(l->cls->forward_n(l, &ex, dx, y) == KC_OK, "%s on %s: %s", cls, be->name,
                  be->err.msg);
    float *host = download_all(be, y, ny);
    kc_free(be, &y);
    for (int i = 0; i < n; i++)
        kc_free(be, &dx[i]);
    kc_free(be, &ex.ws);
    kc_free(be, &l->buf);
    kc_layer_free(l);
    kc_doc_free(doc);
    return host;
}

static void expect_values(const float *got, const float *want, int n, const char *what) {
    for (int i = 0; i < n; i++)
        ck_assert_msg(fabsf(got[i] - want[i]) <= 1e-6f + 1e-6f * fabsf(want[i]),
                      "%s[%d] = %.9g, expected %.9g", what, i, got[i], want[i]);
}

START_TEST(merge_values_by_hand) {
    KC_LOOP_DEVICE(d);
    kc_shape s3[3] = {kc_shape1(3), kc_shape1(3), kc_shape1(3)};
    const float a[] = {1, -2, 3, 0.5f, 0, -1}, b[] = {4, 5, -6, 0.5f, -1, 2},
                c[] = {-1, 7, 3, 2, -3, 0};
    const float *ab[] = {a, b}, *abc[] = {a, b, c};
    kc_shape os;
    struct {
        const char *cls;
        int n;
        float want[6];
    } cases[] = {
        {"Add", 3, {4, 10, 0, 3, -4, 1}},
        {"Subtract", 2, {-3, -7, 9, 0, 1, -3}},
        {"Multiply", 3, {-4, -70, -54, 0.5f, 0, 0}},
        {"Average", 2, {2.5f, 1.5f, -1.5f, 0.5f, -0.5f, 0.5f}},
        {"Maximum", 3, {4, 7, 3, 2, 0, 2}},
        {"Minimum", 3, {-1, -2, -6, 0.5f, -3, -1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float *y = merge_forward(d, cases[i].cls, "{}", s3, cases[i].n, cases[i].n == 2 ? ab : abc,
                                 2, &os);
        ck_assert_int_eq(os.rank, 1);
        ck_assert_int_eq(os.d[0], 3);
        expect_values(y, cases[i].want, 6, cases[i].cls);
        free(y);
    }
    /* Concatenate: last axis, and axis 1 of (2, 1) + (2, 2) samples */
    kc_shape sc[2] = {kc_shape2(2, 1), kc_shape2(2, 2)};
    const float p[] = {1, 2, 3, 4}, q[] = {5, 6, 7, 8, 9, 10, 11, 12};
    const float *pq[] = {p, q};
    float *y = merge_forward(d, "Concatenate", "{}", sc, 2, pq, 2, &os);
    ck_assert_int_eq(os.d[1], 3);
    const float cat_last[] = {1, 5, 6, 2, 7, 8, 3, 9, 10, 4, 11, 12};
    expect_values(y, cat_last, 12, "Concatenate(-1)");
    free(y);
    kc_shape sr[2] = {kc_shape2(1, 2), kc_shape2(2, 2)};
    y = merge_forward(d, "Concatenate", "{axis: 1}", sr, 2, pq, 2, &os);
    ck_assert_int_eq(os.d[0], 3);
    const float cat_1[] = {1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12};
    expect_values(y, cat_1, 12, "Concatenate(1)");
    free(y);
    /* Dot of vectors: the plain sum of products, and the cosine */
    kc_shape sv[2] = {kc_shape1(2), kc_shape1(2)};
    const float u[] = {3, 4, 1, 0}, v[] = {4, 3, 0, -2};
    const float *uv[] = {u, v};
    y = merge_forward(d, "Dot", "{axes: 1}", sv, 2, uv, 2, &os);
    ck_assert_int_eq(os.rank, 1);
    ck_assert_int_eq(os.d[0], 1);
    const float dots[] = {24, 0};
    expect_values(y, dots, 2, "Dot");
    free(y);
    y = merge_forward(d, "Dot", "{axes: -1, normalize: true}", sv, 2, uv, 2, &os);
    const float cosines[] = {24.0f / 25.0f, 0};
    expect_values(y, cosines, 2, "Dot(normalize)");
    free(y);
    /* batch_dot of (2, 3) and (3, 2) samples along axes (2, 1): a matrix product */
    kc_shape sm[2] = {kc_shape2(2, 3), kc_shape2(3, 2)};
    const float ma[] = {1, 2, 3, 4, 5, 6}, mb[] = {1, 0, 0, 1, 1, 1};
    const float *mm[] = {ma, mb};
    y = merge_forward(d, "Dot", "{axes: [2, 1]}", sm, 2, mm, 1, &os);
    ck_assert_int_eq(os.rank, 2);
    ck_assert_int_eq(os.d[0], 2);
    ck_assert_int_eq(os.d[1], 2);
    const float prod[] = {4, 5, 10, 11};
    expect_values(y, prod, 4, "Dot(2, 1)");
    free(y);
    /* and along axes (1, 2): out[i, j] = sum_c a[c, i] b[j, c] */
    y = merge_forward(d, "Dot", "{axes: [1, 2]}", sm, 2, mm, 1, &os);
    ck_assert_int_eq(os.d[0], 3);
    ck_assert_int_eq(os.d[1], 3);
    const float prod2[] = {1, 4, 5, 2, 5, 7, 3, 6, 9};
    expect_values(y, prod2, 9, "Dot(1, 2)");
    free(y);
}
END_TEST

/* A tie keeps the earlier input (Keras folds left to right; TensorFlow sends
 * the gradient there): the larger value is exact even when adding would round. */
START_TEST(maximum_is_exact) {
    KC_LOOP_DEVICE(d);
    kc_shape s[2] = {kc_shape1(2), kc_shape1(2)};
    const float a[] = {1e-8f, 16777216.0f}, b[] = {1.0f, 1.0f};
    const float *ab[] = {a, b};
    kc_shape os;
    float *y = merge_forward(d, "Maximum", "{}", s, 2, ab, 1, &os);
    ck_assert(y[0] == 1.0f);
    ck_assert(y[1] == 16777216.0f);
    free(y);
    y = merge_forward(d, "Minimum", "{}", s, 2, ab, 1, &os);
    ck_assert(y[0] == 1e-8f);
    ck_assert(y[1] == 1.0f);
    free(y);
}
END_TEST

/* ------------------------------------------------- merge gradients --- */

START_TEST(merge_gradients) {
    KC_LOOP_DEVICE(d);
    check_merge(d, "Add", ", inputs: [da, db]");
    check_merge(d, "Add", ", inputs: [da, db, dc]");
    check_merge(d, "Subtract", ", inputs: [da, db]");
    check_merge(d, "Multiply", ", inputs: [da, db]");
    check_merge(d, "Multiply", ", inputs: [da, db, dc]");
    check_merge(d, "Average", ", inputs: [da, db, dc]");
    check_merge(d, "Maximum", ", inputs: [da, db]");
    check_merge(d, "Maximum", ", inputs: [da, db, dc]");
    check_merge(d, "Minimum", ", inputs: [da, db]");
    check_merge(d, "Minimum", ", inputs: [dc, db, da]");
    check_merge(d, "Concatenate", ", inputs: [da, db, dc]");
    check_merge(d, "Dot", ", axes: 1, inputs: [da, db]");
    check_merge(d, "Dot", ", axes: -1, normalize: true, inputs: [da, db]");
    /* the same tensor twice: gradients of both arguments add up */
    check_merge(d, "Add", ", inputs: [da, da, db]");
    check_merge(d, "Multiply", ", inputs: [da, da, db]");
}
END_TEST

/* Merges over samples with two axes: Concatenate along the middle axis, Dot
 * with blocks on both sides of the contracted axis. */
START_TEST(merge_gradients_rank2) {
    KC_LOOP_DEVICE(d);
    static const char *base = "model:\n"
                              "  layers:\n"
                              "    - Input: {shape: [4], name: a}\n"
                              "    - Dense: {units: 6, activation: tanh, name: da}\n"
                              "    - Reshape: {target_shape: [2, 3], name: ra}\n"
                              "    - Dense: {units: %d, activation: tanh, name: db, inputs: a}\n"
                              "    - Reshape: {target_shape: %s, name: rb}\n"
                              "    - %s\n"
                              "    - Flatten\n"
                              "    - Dense: {units: 2, name: out}\n";
    struct {
        int units;
        const char *shape, *merge;
    } cases[] = {
        {9, "[3, 3]", "Concatenate: {axis: 1, inputs: [ra, rb]}"},
        {4, "[2, 2]", "Concatenate: {axis: -1, inputs: [ra, rb]}"},
        {6, "[3, 2]", "Dot: {axes: [2, 1], inputs: [ra, rb]}"},
        {6, "[3, 2]", "Dot: {axes: [1, 2], inputs: [ra, rb]}"},
        {6, "[2, 3]", "Dot: {axes: 1, normalize: true, inputs: [ra, rb]}"},
        {6, "[3, 2]", "Dot: {axes: [2, 1], normalize: true, inputs: [ra, rb]}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char yaml[2048];
        snprintf(yaml, sizeof yaml, base, cases[i].units, cases[i].shape, cases[i].merge);
        gfix f;
        gfix_open(&f, yaml, d, 2, NULL);
        check_grads(&f, 1, cases[i].merge);
        gfix_close(&f);
    }
}
END_TEST

/* ----------------------------------------------------------- sharing --- */

static const char *shared_yaml =
    "model:\n"
    "  layers:\n"
    "    - Input: {shape: [4], name: left}\n"
    "    - Input: {shape: [4], name: right}\n"
    "    - Dense: {units: 3, activation: tanh, name: enc, inputs: left,"
    " bias_initializer: random_normal}\n"
    "    - {layer: enc, inputs: right}\n"
    "    - Concatenate: {name: both, inputs: [enc, 'enc[1]']}\n"
    "    - Dense: {units: 2, activation: sigmoid, name: out}\n";

/* The same computation with two separate encoders. */
static const char *unshared_yaml =
    "model:\n"
    "  layers:\n"
    "    - Input: {shape: [4], name: left}\n"
    "    - Input: {shape: [4], name: right}\n"
    "    - Dense: {units: 3, activation: tanh, name: enc_a, inputs: left}\n"
    "    - Dense: {units: 3, activation: tanh, name: enc_b, inputs: right}\n"
    "    - Concatenate: {name: both, inputs: [enc_a, enc_b]}\n"
    "    - Dense: {units: 2, activation: sigmoid, name: out}\n";

START_TEST(shared_layer_graph) {
    kc_config *c = parse_ok(shared_yaml);
    kc_model *m = c->model;
    ck_assert_int_eq(m->nlayers, 3);
    ck_assert_int_eq(m->ninputs, 2);
    ck_assert_int_eq(m->nnodes, 6);
    /* one set of weights: 4*3+3 + 6*2+2 */
    ck_assert_int_eq(kc_model_param_count(m, 0), 15 + 14);
    kc_param_ref refs[8];
    ck_assert_int_eq(kc_model_params(m, refs, 8), 4);
    ck_assert_str_eq(refs[0].name, "enc/kernel");
    ck_assert_str_eq(refs[1].name, "enc/bias");
    ck_assert_int_eq(m->nodes[3].call, 1);
    ck_assert_ptr_eq(m->nodes[3].layer, m->nodes[2].layer);
    ck_assert(!kc_model_sequential_like(m));
    kc_config_free(c);
}
END_TEST

START_TEST(shared_layer_gradients) {
    KC_LOOP_DEVICE(d);
    gfix f;
    gfix_open(&f, shared_yaml, d, 3, NULL);
    check_grads(&f, 1, "shared Dense");
    gfix_close(&f);
}
END_TEST

/* The shared kernel's gradient is the sum of what each call contributes:
 * equal to enc_a's plus enc_b's in the unshared twin with the same weights. */
START_TEST(shared_weights_sum_both_calls) {
    KC_LOOP_DEVICE(be);
    gfix s, u;
    gfix_open(&s, shared_yaml, be, 4, NULL);
    gfix_open(&u, unshared_yaml, be, 4, NULL);
    kc_param_ref rs[8], ru[8];
    ck_assert_int_eq(kc_model_params(s.m, rs, 8), 4);
    ck_assert_int_eq(kc_model_params(u.m, ru, 8), 6);
    /* the twin gets the shared model's weights: enc for both encoders, out as is */
    const int map[6] = {0, 1, 0, 1, 2, 3};
    for (int i = 0; i < 6; i++) {
        size_t n = (size_t)kc_shape_numel(&ru[i].param->shape);
        ck_assert_int_eq(n, kc_shape_numel(&rs[map[i]].param->shape));
        float *w = download_all(be, rs[map[i]].param->value, n);
        kc_test_put(be, ru[i].param->value, w, n * sizeof *w);
        free(w);
    }
    double ls = gfix_loss(&s, 1), lu = gfix_loss(&u, 1);
    ck_assert_close(ls, lu, 1e-6, 1e-6);
    for (int p = 0; p < 2; p++) { /* kernel, bias */
        size_t n = (size_t)kc_shape_numel(&rs[p].param->shape);
        float *gs = download_all(be, rs[p].param->grad, n);
        float *ga = download_all(be, ru[p].param->grad, n),
              *gb = download_all(be, ru[p + 2].param->grad, n);
        double norm_a = 0, norm_b = 0;
        for (size_t i = 0; i < n; i++) {
            ck_assert_close(gs[i], (double)ga[i] + gb[i], 1e-6, 1e-4);
            norm_a += fabs(ga[i]);
            norm_b += fabs(gb[i]);
        }
        /* both calls matter, so neither alone would pass */
        ck_assert(norm_a > 1e-4 && norm_b > 1e-4);
        free(gs);
        free(ga);
        free(gb);
    }
    gfix_close(&s);
    gfix_close(&u);
}
END_TEST

/* ex->accumulate adds a second backward pass onto the first. */
START_TEST(accumulate_adds) {
    KC_LOOP_DEVICE(be);
    gfix f;
    gfix_open(&f, shared_yaml, be, 2, NULL);
    gfix_loss(&f, 1);
    size_t nv = (size_t)f.m->nvalues;
    float *g1 = download_all(be, f.m->grads, nv);
    kc_exec ex = {.dev = be, .batch = 2, .training = 1, .seed = 77, .step = 5, .accumulate = 1};
    ck_assert_int_eq(kc_model_forward(f.m, &ex), KC_OK);
    ck_assert_int_eq(kc_model_backward_n(f.m, &ex, f.fused), KC_OK);
    float *g2 = download_all(be, f.m->grads, nv);
    for (size_t i = 0; i < nv; i++)
        ck_assert_close(g2[i], 2.0 * g1[i], 1e-6, 1e-5);
    free(g1);
    free(g2);
    gfix_close(&f);
}
END_TEST

/* ------------------------------------------ several inputs, outputs --- */

/* Output `probs` also feeds a further layer: its gradient is the loss's
 * (fused with the softmax) plus what `score` sends back. */
static const char *two_out_yaml =
    "model:\n"
    "  outputs: [probs, score]\n"
    "  layers:\n"
    "    - Input: {shape: [6], name: x}\n"
    "    - Dense: {units: 5, activation: relu, name: h, bias_initializer: random_normal}\n"
    "    - Dense: {units: 3, activation: softmax, name: probs}\n"
    "    - Dense: {units: 2, activation: tanh, name: score}\n";

START_TEST(output_feeding_a_layer) {
    KC_LOOP_DEVICE(d);
    const char *losses[] = {"sparse_categorical_crossentropy", "mse"};
    gfix f;
    gfix_open(&f, two_out_yaml, d, 4, losses);
    ck_assert(f.fused[0]);
    ck_assert_int_eq(f.m->noutputs, 2);
    ck_assert_str_eq(f.m->outputs[1].name, "score");
    check_grads(&f, 1, "fused output with a consumer");
    /* the plain path gives the same gradients */
    size_t nv = (size_t)f.m->nvalues;
    gfix_loss(&f, 1);
    float *g1 = download_all(f.be, f.m->grads, nv);
    f.fused[0] = 0;
    gfix_loss(&f, 1);
    float *g2 = download_all(f.be, f.m->grads, nv);
    for (size_t i = 0; i < nv; i++)
        ck_assert_close(g2[i], g1[i], 1e-6, 1e-3);
    free(g1);
    free(g2);
    gfix_close(&f);
}
END_TEST

/* A residual block and a two-input model agree with the reference backend
 * on every other backend, and have the gradients of their finite differences. */
START_TEST(backends_agree_on_graph) {
    static const char *yaml =
        "model:\n"
        "  layers:\n"
        "    - Input: {shape: [6, 6, 2], name: img}\n"
        "    - Conv2D: {filters: 3, kernel_size: 3, padding: same, activation: relu}\n"
        "    - Conv2D: {filters: 3, kernel_size: 3, padding: same, name: c2}\n"
        "    - Add: {inputs: [conv2d, c2]}\n"
        "    - MaxPooling2D: {name: pool}\n"
        "    - Flatten\n"
        "    - Input: {shape: [4], name: extra}\n"
        "    - Dense: {units: 5, activation: tanh, inputs: extra}\n"
        "    - Concatenate: {inputs: [flatten, dense]}\n"
        "    - Dense: {units: 3, activation: softmax, name: out}\n";
    const char *losses[] = {"sparse_categorical_crossentropy"};
    gfix a, b;
    gfix_open(&a, yaml, kc_test_reference(), 3, losses);
    double la = gfix_loss(&a, 1);
    size_t nv = (size_t)a.m->nvalues;
    float *ga = download_all(a.be, a.m->grads, nv);
    KC_FOR_EACH_TESTED_DEVICE(d) {
        gfix_open(&b, yaml, d, 3, losses);
        ck_assert_int_eq(b.m->nvalues, (int64_t)nv);
        ck_assert_close(gfix_loss(&b, 1), la, 1e-5, 1e-5);
        float *gb = download_all(b.be, b.m->grads, nv);
        for (size_t i = 0; i < nv; i++)
            ck_assert_close(gb[i], ga[i], 1e-5, 1e-3);
        free(gb);
        check_grads(&b, 3, "residual + two inputs");
        gfix_close(&b);
    }
    free(ga);
    check_grads(&a, 3, "residual + two inputs");
    gfix_close(&a);
}
END_TEST

/* ---------------------------------------------------- Keras's view --- */

START_TEST(keras_order_and_layout) {
    kc_config *c = parse_ok("model:\n"
                            "  name: two_towers\n"
                            "  outputs: [class, recon]\n"
                            "  layers:\n"
                            "    - Input: {shape: [8, 8, 1], name: image}\n"
                            "    - Conv2D: {filters: 2, kernel_size: 3, name: c1}\n"
                            "    - Flatten: {name: f1}\n"
                            "    - Input: {shape: [64], name: features}\n"
                            "    - Dense: {units: 4, name: d1, inputs: features}\n"
                            "    - Concatenate: {name: merged, inputs: [f1, d1]}\n"
                            "    - Dense: {units: 3, name: class, inputs: merged}\n"
                            "    - Dense: {units: 64, name: recon, inputs: merged}\n");
    kc_model *m = c->model;
    ck_assert(m->functional);
    ck_assert_str_eq(m->name, "two_towers");
    int ops[16];
    ck_assert_int_eq(kc_model_keras_order(m, ops), 8);
    /* deepest first, ties in the order a depth-first walk from the outputs meets them */
    const char *want[] = {"image", "c1", "features", "f1", "d1", "merged", "class", "recon"};
    for (int i = 0; i < 8; i++) {
        const char *name = ops[i] < 0 ? m->inputs[-1 - ops[i]].name : m->layers[ops[i]]->name;
        ck_assert_str_eq(name, want[i]);
    }
    ck_assert(!kc_model_sequential_like(m));
    kc_config_free(c);

    /* a shared layer takes the depth of its deepest call, and so do the inputs
     * of its other calls: here b sinks to a's depth (Keras's map_graph) */
    c = parse_ok("model:\n"
                 "  layers:\n"
                 "    - Input: {shape: [3], name: a}\n"
                 "    - Input: {shape: [3], name: b}\n"
                 "    - Dense: {units: 3, name: s, inputs: a}\n"
                 "    - Dense: {units: 3, name: d1}\n"
                 "    - Dense: {units: 3, name: d2}\n"
                 "    - {layer: s, inputs: b}\n"
                 "    - Add: {name: add, inputs: ['s[1]', d2]}\n");
    m = c->model;
    ck_assert_int_eq(kc_model_keras_order(m, ops), 6);
    const char *want2[] = {"b", "a", "s", "d1", "d2", "add"};
    for (int i = 0; i < 6; i++) {
        const char *name = ops[i] < 0 ? m->inputs[-1 - ops[i]].name : m->layers[ops[i]]->name;
        ck_assert_str_eq(name, want2[i]);
    }
    kc_config_free(c);

    /* a chain written as a graph is still laid out in three columns */
    c = parse_ok("model:\n  layers:\n    - Input: {shape: [3]}\n    - Dense: {units: 2, inputs: "
                 "input_layer}\n"
                 "    - Dense: {units: 1}\n");
    ck_assert(c->model->functional);
    ck_assert(kc_model_sequential_like(c->model));
    ck_assert_str_eq(c->model->name, "functional");
    ck_assert_str_eq(c->model->inputs[0].name, "input_layer");
    kc_config_free(c);
    /* a plain stack stays a Sequential */
    c = parse_ok("model:\n  layers:\n    - Input: {shape: [3]}\n    - Dense: {units: 2}\n");
    ck_assert(!c->model->functional);
    ck_assert_str_eq(c->model->name, "sequential");
    kc_config_free(c);
}
END_TEST

/* Model inputs follow `inputs:`; Keras's node syntax is accepted in references. */
START_TEST(references_and_input_order) {
    kc_config *c = parse_ok("model:\n"
                            "  inputs: [b, a]\n"
                            "  outputs: 'out[0][0]'\n"
                            "  layers:\n"
                            "    - Input: {shape: [2], name: a}\n"
                            "    - Input: {shape: [3], name: b}\n"
                            "    - Dense: {units: 2, name: enc, inputs: 'b[0]'}\n"
                            "    - Add: {inputs: [a, 'enc[0][0]']}\n"
                            "    - Dense: {units: 1, name: out}\n");
    kc_model *m = c->model;
    ck_assert_str_eq(m->inputs[0].name, "b");
    ck_assert_str_eq(m->inputs[1].name, "a");
    ck_assert_int_eq(m->input_shape.d[0], 3);
    ck_assert_int_eq(m->nodes[m->inputs[1].node].input, 1);
    ck_assert_int_eq(kc_model_input_index(m, "a"), 1);
    ck_assert_int_eq(kc_model_output_index(m, "out"), 0);
    kc_config_free(c);
}
END_TEST

/* ------------------------------------------------------ graph errors --- */

static void parse_fails(const char *text, const char *const *frags) {
    kc_config *c = NULL;
    kc_error e = {0};
    int rc = kc_config_parse_text("g.yaml", "/tmp", text, strlen(text), &c, &e);
    ck_assert_msg(rc == KC_ECONFIG, "expected a config error for:\n%s\ngot rc %d", text, rc);
    ck_assert_ptr_null(c);
    for (int i = 0; frags[i]; i++)
        ck_assert_msg(strstr(e.msg, frags[i]), "message '%s' lacks '%s'", e.msg, frags[i]);
}
#define FAILS(text, ...) parse_fails(text, (const char *const[]){__VA_ARGS__, NULL})

#define HEAD                                                                                       \
    "model:\n  layers:\n    - Input: {shape: [4], name: a}\n    - Input: {shape: [5], name: b}\n"

START_TEST(graph_errors_are_located) {
    /* a forward reference (the list is the graph's order, so no cycle can be written) */
    FAILS(HEAD "    - Dense: {units: 2, name: d1, inputs: d2}\n    - Dense: {units: 2, name: d2, "
               "inputs: d1}\n",
          "g.yaml:5:43:", "'d2' is declared below this entry (line 6)", "cycles");
    FAILS(HEAD "    - Dense: {units: 2, name: d1, inputs: d1}\n", "g.yaml:5:43:", "own output",
          "cycle");
    /* unknown names, with the closest */
    FAILS(HEAD "    - Dense: {units: 2, name: d1, inputs: aa}\n    - Add: {inputs: [d1, b]}\n",
          "g.yaml:5:43:", "unknown layer or Input 'aa'", "did you mean 'a'?");
    FAILS(HEAD "    - Dense: {units: 2, inputs: a}\n  outputs: [dense, nope]\n",
          "g.yaml:6:20:", "'nope'");
    FAILS(HEAD
          "    - Dense: {units: 2, name: d, inputs: a}\n    - Dense: {units: 2, inputs: 'd[1]'}\n",
          "g.yaml:6:33:", "'d[1]'", "called 1 time above this point (d[0])");
    /* inputs nobody uses, layers that lead nowhere */
    FAILS(HEAD "    - Dense: {units: 2, inputs: a}\n",
          "g.yaml:4:7:", "Input 'b' is not used by any layer");
    FAILS(HEAD "    - Dense: {units: 2, name: side, inputs: b}\n    - Dense: {units: 2, name: "
               "main, inputs: a}\n"
               "  outputs: main\n",
          "g.yaml:5:7:", "'side' (Dense) does not lead to any output (outputs: main)");
    FAILS(HEAD "    - Dense: {units: 2, name: p, inputs: a}\n    - Dense: {units: 2, name: q, "
               "inputs: b}\n",
          "g.yaml:2:3:", "several ends (p, q)", "outputs: [p, q]");
    FAILS(HEAD "    - Concatenate: {inputs: [a, b], name: c}\n  inputs: [a]\n",
          "g.yaml:4:7:", "Input 'b' is not listed in the model's `inputs:` (g.yaml:6:11)");
    FAILS(HEAD "    - Concatenate: {inputs: [a, b]}\n  outputs: [a]\n",
          "g.yaml:6:13:", "'a' is an Input");
    /* the wrong number of inputs */
    FAILS(HEAD "    - Dense: {units: 2, inputs: [a, b]}\n", "g.yaml:5:33:",
          "layer 'dense' (Dense) takes exactly 1 input, got 2: 'a' (None, 4), 'b' (None, 5)",
          "Concatenate");
    FAILS(HEAD "    - Dense: {units: 4, inputs: b}\n    - Subtract: {inputs: [a, b, dense]}\n",
          "g.yaml:6:26:", "'subtract' (Subtract) takes exactly 2 inputs, got 3");
    FAILS(HEAD "    - Dot: {axes: 1, inputs: a}\n",
          "g.yaml:5:30:", "takes exactly 2 inputs, got 1");
    /* merge shapes that disagree name every shape */
    FAILS(HEAD "    - Add: {inputs: [a, b]}\n", "g.yaml:5:7:", "layer 'add' (Add)",
          "(None, 4), (None, 5)");
    FAILS(HEAD "    - Reshape: {target_shape: [2, 2], inputs: a}\n    - Reshape: {target_shape: "
               "[5, 1], inputs: b}\n"
               "    - Concatenate: {axis: 1, inputs: [reshape, reshape_1]}\n",
          "g.yaml:7:7:", "except along axis 1", "(None, 2, 2), (None, 5, 1)");
    FAILS(HEAD "    - Dot: {axes: 1, inputs: [a, b]}\n",
          "g.yaml:5:7:", "axis 1 of the first has size 4", "size 5");
    FAILS(HEAD "    - Concatenate: {axis: 0, inputs: [a, b]}\n", "g.yaml:5:7:", "batch axis");
    /* a shared layer called on another shape */
    FAILS(HEAD "    - Dense: {units: 2, name: enc, inputs: a}\n    - {layer: enc, inputs: b}\n",
          "g.yaml:6:28:", "layer 'enc' is shared", "'b' (None, 5)", "(g.yaml:5:7) got (None, 4)");
    FAILS(HEAD "    - {layer: a, inputs: b}\n", "g.yaml:5:15:", "'a' is an Input");
    FAILS(HEAD "    - {layer: enc, inputs: b, units: 3}\n", "g.yaml:5:31:", "unknown key 'units'");
    /* an Input takes no inputs; names stay unique across Inputs and layers */
    FAILS(HEAD "    - Input: {shape: [2], inputs: a}\n", "g.yaml:5:35:", "takes no `inputs:`");
    FAILS(HEAD "    - Dense: {units: 2, name: a}\n", "g.yaml:5:31:", "'a' already exists");
}
END_TEST

/* Compile and data settings per output, checked against the model. */
static const char *io_model = "model:\n"
                              "  layers:\n"
                              "    - Input: {shape: [4], name: img}\n"
                              "    - Input: {shape: [2], name: meta}\n"
                              "    - Concatenate: {inputs: [img, meta]}\n"
                              "    - Dense: {units: 3, activation: softmax, name: cls}\n"
                              "    - Dense: {units: 4, name: rec, inputs: concatenate}\n"
                              "  outputs: [cls, rec]\n";

static int open_session(const char *rest, kc_error *e) {
    char text[4096];
    snprintf(text, sizeof text, "%s%s", io_model, rest);
    kc_config *c = NULL;
    int rc = kc_config_parse_text("g.yaml", "/tmp", text, strlen(text), &c, e);
    if (rc) return rc;
    kc_session s;
    kc_run_opts o = {.threads = 1};
    rc = kc_session_open(&s, c, &o, 0, 1, e);
    if (!rc) {
        ck_assert_int_eq(s.nouts, 2);
        ck_assert_str_eq(s.outs[0].name, "cls");
    }
    kc_session_close(&s);
    kc_config_free(c);
    return rc;
}

static void session_fails(const char *rest, const char *const *frags) {
    kc_error e = {0};
    int rc = open_session(rest, &e);
    ck_assert_msg(rc == KC_ECONFIG, "expected a config error for:\n%s\ngot %d (%s)", rest, rc,
                  e.msg);
    for (int i = 0; frags[i]; i++)
        ck_assert_msg(strstr(e.msg, frags[i]), "message '%s' lacks '%s'", e.msg, frags[i]);
}
#define SESSION_FAILS(text, ...) session_fails(text, (const char *const[]){__VA_ARGS__, NULL})

START_TEST(compile_and_data_per_output) {
    kc_error e = {0};
    const char *data =
        "data:\n  train: {x: {img: a.npy, meta: b.npy}, y: {cls: c.npy, rec: d.npy}}\n";
    char text[2048];
    snprintf(text, sizeof text,
             "compile:\n  loss: {cls: sparse_categorical_crossentropy, rec: mse}\n  loss_weights: "
             "[1, 0.25]\n"
             "  metrics: {cls: [accuracy]}\n%s",
             data);
    ck_assert_msg(open_session(text, &e) == 0, "%s", e.msg);
    /* one loss for all outputs; a list of metric lists in output order */
    ck_assert_msg(open_session("compile: {loss: mse, metrics: [[mae], [mse, mae]]}\n", &e) == 0,
                  "%s", e.msg);
    SESSION_FAILS("compile: {loss: {cls: mse, rex: mse}}\n", "g.yaml:9:28:", "no output 'rex'",
                  "did you mean 'rec'?");
    SESSION_FAILS("compile: {loss: {cls: mse}}\n", "g.yaml:9:17:", "no entry for output 'rec'",
                  "rec: null");
    SESSION_FAILS("compile: {loss: [mse, mse, mae]}\n", "g.yaml:9:17:", "one entry per output");
    SESSION_FAILS("compile: {loss: mse, loss_weights: {cls: 1, recon: 2}}\n",
                  "g.yaml:9:45:", "'recon'");
    SESSION_FAILS("compile: {loss: {cls: null, rec: null}}\n", "nothing would be trained");
    SESSION_FAILS(
        "compile: {loss: mse}\ndata:\n  train: {x: {img: a.npy, meta: b.npy}, y: {cls: c.npy}}\n",
        "g.yaml:11:3:", "output 'rec' has a loss but no targets", "targets: {rec: y}");

    /* the data section's choices are checked against the model and the sources */
    kc_config *c = NULL;
    snprintf(text, sizeof text,
             "%sdata:\n  dataset: mnist\n  inputs: {img: x, meta: x}\n  targets: {cls: y, rec: x}\n"
             "  reshape: {img: [4], meta: [2]}\n",
             io_model);
    ck_assert_msg(kc_config_parse_text("g.yaml", "/tmp", text, strlen(text), &c, &e) == 0, "%s",
                  e.msg);
    ck_assert_str_eq(c->data.inputs[1].array, "x");
    ck_assert_str_eq(c->data.targets[1].array, "x");
    ck_assert(c->data.inputs[1].has_reshape);
    kc_config_free(c);
    const char *bad[][3] = {
        {"data:\n  dataset: mnist\n  inputs: {img: x}\n",
         "g.yaml:11:11:", "model input 'meta' takes no data"},
        {"data:\n  dataset: mnist\n  inputs: {img: x, mta: x}\n",
         "g.yaml:11:20:", "did you mean 'meta'?"},
        {"data:\n  dataset: mnist\n  inputs: {img: x, meta: z}\n", "g.yaml:11:26:", "only x and y"},
        {"data:\n  train: {x: {img: a.npy}, y: b.npy}\n  inputs: {meta: x}\n",
         "g.yaml:11:18:", "has no such array (it has: y, img)"},
        {"data:\n  dataset: mnist\n  inputs: {img: x, meta: x}\n  reshape: [4]\n",
         "g.yaml:12:12:", "give reshape per input"},
        {"data:\n  dataset: mnist\n  inputs: {img: x, meta: x}\n  targets: {cls: y, recon: x}\n",
         "g.yaml:12:21:", "no output 'recon'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "%s%s", io_model, bad[i][0]);
        parse_fails(text, (const char *const[]){bad[i][1], bad[i][2], NULL});
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("graph");
    TCase *t = tcase_create("graph");
    tcase_set_timeout(t, 120);
    int nb = kc_test_backend_count();
    tcase_add_loop_test(t, merge_values_by_hand, 0, nb);
    tcase_add_loop_test(t, maximum_is_exact, 0, nb);
    tcase_add_loop_test(t, merge_gradients, 0, nb);
    tcase_add_loop_test(t, merge_gradients_rank2, 0, nb);
    tcase_add_test(t, shared_layer_graph);
    tcase_add_loop_test(t, shared_layer_gradients, 0, nb);
    tcase_add_loop_test(t, shared_weights_sum_both_calls, 0, nb);
    tcase_add_loop_test(t, accumulate_adds, 0, nb);
    tcase_add_loop_test(t, output_feeding_a_layer, 0, nb);
    tcase_add_test(t, backends_agree_on_graph);
    tcase_add_test(t, keras_order_and_layout);
    tcase_add_test(t, references_and_input_order);
    tcase_add_test(t, graph_errors_are_located);
    tcase_add_test(t, compile_and_data_per_output);
    suite_add_tcase(s, t);
    return kc_test_run(s);
}

/* The model as a whole: the backward pass through every layer kind,
 * activations applied by the model and the fused softmax + crossentropy, checked
 * against finite differences of the loss; buffers planned once and reused.
 * Every test runs on every backend of the registry that opens here
 * (tests/devices.h); the other backends also agree with the reference one. */
#include "core/rng.h"
#include "models/config.h"
#include "models/fit.h"
#include "models/losses.h"
#include "tests/devices.h"
#include "testutil.h"

static const char *cnn =
    "model:\n"
    "  layers:\n"
    "    - Input: {shape: [7, 7, 2]}\n"
    "    - Conv2D: {filters: 3, kernel_size: 3, padding: same, activation: tanh}\n"
    "    - AveragePooling2D: {pool_size: 2, padding: same}\n"
    "    - Conv2D: {filters: 4, kernel_size: [2, 3], strides: 1, activation: elu}\n"
    "    - MaxPooling2D: {pool_size: 2}\n"
    "    - Flatten\n"
    "    - Dense: {units: 5, activation: sigmoid, bias_initializer: random_normal}\n"
    "    - Dropout: {rate: 0.3}\n"
    "    - Reshape: {target_shape: [5]}\n"
    "    - Activation: {activation: swish}\n"
    "    - Dense: {units: 3, activation: softmax}\n";

typedef struct fixture {
    kc_config *cfg;
    kc_model *m;
    kc_loss loss;
    int n, in, out;
    float *x, *y, *pred, *grad;
} fixture;

static void fixture_open(fixture *f, const char *text, const char *loss, kc_device *be, int n) {
    kc_error e = {0};
    ck_assert_msg(kc_config_parse_text("t.yaml", ".", text, strlen(text), &f->cfg, &e) == 0, "%s",
                  e.msg);
    f->m = f->cfg->model;
    ck_assert_msg(kc_model_plan(f->m, be, n, 1, &e) == 0, "%s", e.msg);
    ck_assert_msg(kc_model_init_weights(f->m, 3, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(kc_loss_init(&f->loss, loss, &e), 0);
    f->n = n;
    f->in = (int)kc_shape_numel(&f->m->input_shape);
    f->out = (int)kc_shape_numel(kc_model_output_shape(f->m));
    f->x = malloc(sizeof(float) * (size_t)(n * f->in));
    f->y = malloc(sizeof(float) * (size_t)(n * f->out));
    f->pred = malloc(sizeof(float) * (size_t)(n * f->out));
    f->grad = malloc(sizeof(float) * (size_t)(n * f->out));
    for (int i = 0; i < n * f->in; i++)
        f->x[i] = 2.0f * kc_rng_uniform(9, 1, (uint64_t)i) - 1.0f;
    for (int i = 0; i < n; i++)
        f->y[i] = (float)(i % f->out); /* sparse labels */
    kc_test_put(be, f->m->x, f->x, sizeof(float) * (size_t)(n * f->in));
}

static void fixture_close(fixture *f) {
    free(f->x);
    free(f->y);
    free(f->pred);
    free(f->grad);
    kc_config_free(f->cfg);
}

/* Loss in double for the current weights (dropout mask fixed by seed and step). */
static double loss_at(fixture *f, int fused, int want_grad) {
    kc_model *m = f->m;
    kc_exec ex = {.dev = m->dev, .batch = f->n, .training = 1, .seed = 77, .step = 5};
    ck_assert_msg(kc_model_forward(m, &ex) == KC_OK, "forward on %s: %s", m->dev->name,
                  m->dev->err.msg);
    kc_buf src = fused ? m->z[m->nlayers - 1] : kc_model_output_y(m, 0);
    kc_test_get(m->dev, f->pred, src, sizeof(float) * (size_t)(f->n * f->out));
    double l = kc_loss_compute(&f->loss, f->pred, f->y, f->n, f->out, fused, NULL,
                               want_grad ? f->grad : NULL);
    if (want_grad) {
        kc_test_put(m->dev, kc_model_dy(m), f->grad, sizeof(float) * (size_t)(f->n * f->out));
        ck_assert_msg(kc_model_backward(m, &ex, fused) == KC_OK, "backward on %s: %s", m->dev->name,
                      m->dev->err.msg);
    }
    return l;
}

static void check_grads(kc_device *be, int fused) {
    fixture f;
    fixture_open(&f, cnn, "sparse_categorical_crossentropy", be, 3);
    kc_model *m = f.m;
    loss_at(&f, fused, 1);
    size_t nv = (size_t)m->nvalues;
    float *w = malloc(nv * sizeof *w), *g = malloc(nv * sizeof *g);
    kc_test_get(be, w, m->values, nv * sizeof *w);
    kc_test_get(be, g, m->grads, nv * sizeof *g);
    /* every 7th weight, all layers: central differences */
    const float h = 2e-3f;
    int checked = 0;
    for (size_t i = 0; i < nv; i += 7) {
        float orig = w[i];
        w[i] = orig + h;
        kc_test_put(be, m->values, w, nv * sizeof *w);
        double lp = loss_at(&f, fused, 0);
        w[i] = orig - h;
        kc_test_put(be, m->values, w, nv * sizeof *w);
        double lm = loss_at(&f, fused, 0);
        w[i] = orig;
        double num = (lp - lm) / (2.0 * h);
        ck_assert_msg(fabs(num - g[i]) <= 2e-3 + 3e-2 * fabs(num),
                      "%s weight %zu: analytic %.6g, numeric %.6g", be->name, i, g[i], num);
        checked++;
    }
    kc_test_put(be, m->values, w, nv * sizeof *w);
    ck_assert_int_gt(checked, 20);
    free(w);
    free(g);
    fixture_close(&f);
}

START_TEST(model_gradients) {
    KC_LOOP_DEVICE(d);
    check_grads(d, 0);
}
END_TEST
START_TEST(model_gradients_fused) {
    KC_LOOP_DEVICE(d);
    check_grads(d, 1);
}
END_TEST

/* The fused path and the plain path give the same loss and gradients when no
 * probability is clipped. */
START_TEST(fused_equals_plain) {
    KC_LOOP_DEVICE(d);
    fixture f;
    fixture_open(&f, cnn, "sparse_categorical_crossentropy", d, 4);
    kc_model *m = f.m;
    size_t nv = (size_t)m->nvalues;
    float *g1 = malloc(nv * sizeof *g1), *g2 = malloc(nv * sizeof *g2);
    double l1 = loss_at(&f, 0, 1);
    kc_test_get(d, g1, m->grads, nv * sizeof *g1);
    double l2 = loss_at(&f, 1, 1);
    kc_test_get(d, g2, m->grads, nv * sizeof *g2);
    ck_assert_close(l1, l2, 1e-6, 1e-5);
    for (size_t i = 0; i < nv; i++)
        ck_assert_close(g1[i], g2[i], 1e-6, 1e-3);
    free(g1);
    free(g2);
    fixture_close(&f);
}
END_TEST

/* Every backend agrees with the reference on a whole forward and backward pass. */
START_TEST(backends_agree_on_model) {
    fixture a, b;
    fixture_open(&a, cnn, "sparse_categorical_crossentropy", kc_test_reference(), 5);
    double la = loss_at(&a, 1, 1);
    size_t nv = (size_t)a.m->nvalues;
    float *ga = malloc(nv * sizeof *ga), *gb = malloc(nv * sizeof *gb);
    kc_test_get(a.m->dev, ga, a.m->grads, nv * sizeof *ga);
    KC_FOR_EACH_TESTED_DEVICE(d) {
        fixture_open(&b, cnn, "sparse_categorical_crossentropy", d, 5);
        double lb = loss_at(&b, 1, 1);
        ck_assert_close(lb, la, 1e-5, 1e-5);
        kc_test_get(d, gb, b.m->grads, nv * sizeof *gb);
        for (size_t i = 0; i < nv; i++)
            ck_assert_close(gb[i], ga[i], 1e-5, 1e-3);
        fixture_close(&b);
    }
    free(ga);
    free(gb);
    fixture_close(&a);
}
END_TEST

/* A smaller batch than planned reuses the same buffers and gives the same
 * per-sample outputs as running those samples alone. */
START_TEST(partial_batch) {
    KC_LOOP_DEVICE(d);
    fixture f;
    fixture_open(&f, cnn, "sparse_categorical_crossentropy", d, 4);
    kc_model *m = f.m;
    kc_exec ex = {.dev = d, .batch = 4, .training = 0};
    float full[4 * 3], part[2 * 3];
    ck_assert_int_eq(kc_model_forward(m, &ex), KC_OK);
    kc_test_get(d, full, kc_model_output_y(m, 0), sizeof full);
    ex.batch = 2;
    ck_assert_int_eq(kc_model_forward(m, &ex), KC_OK);
    kc_test_get(d, part, kc_model_output_y(m, 0), sizeof part);
    for (int i = 0; i < 6; i++)
        ck_assert_close(part[i], full[i], 1e-6, 1e-5);
    for (int r = 0; r < 4; r++)
        ck_assert_close(full[3 * r] + full[3 * r + 1] + full[3 * r + 2], 1.0, 1e-5, 0);
    fixture_close(&f);
}
END_TEST

/* Weights, optimizer slots and the training position survive a checkpoint
 * round trip exactly; a checkpoint carries the model file. */
START_TEST(checkpoint_round_trip) {
    KC_LOOP_DEVICE(be);
    fixture a, b;
    kc_error e = {0};
    fixture_open(&a, cnn, "sparse_categorical_crossentropy", be, 3);
    fixture_open(&b, cnn, "sparse_categorical_crossentropy", be, 3);
    ck_assert_int_eq(kc_model_init_weights(b.m, 4, &e), 0); /* different weights before loading */
    /* the sessions reach the device through their models */
    kc_session sa = {.cfg = a.cfg, .model = a.m, .seed = 3, .epoch = 2, .step = 17};
    kc_session sb = {.cfg = b.cfg, .model = b.m};
    kc_node *opt_node = NULL;
    ck_assert_int_eq(kc_optimizer_parse(opt_node, &sa.opt, &e), 0); /* Keras's default: rmsprop */
    ck_assert_int_eq(kc_optimizer_parse(opt_node, &sb.opt, &e), 0);
    kc_param_ref refs[32];
    int np = kc_model_params(a.m, refs, 32);
    size_t sizes[32];
    const char *names[32];
    kc_buf w[32], g[32];
    for (int i = 0; i < np; i++) {
        sizes[i] = (size_t)kc_shape_numel(&refs[i].param->shape);
        names[i] = refs[i].name;
        w[i] = refs[i].param->value;
        g[i] = refs[i].param->grad;
    }
    ck_assert_int_eq(kc_optimizer_build(sa.opt, be, np, sizes, names, &e), 0);
    ck_assert_int_eq(kc_optimizer_build(sb.opt, be, np, sizes, names, &e), 0);
    loss_at(&a, 1, 1);
    ck_assert_int_eq(kc_optimizer_step(sa.opt, w, g), KC_OK);
    loss_at(&a, 1, 1);
    ck_assert_int_eq(kc_optimizer_step(sa.opt, w, g), KC_OK);

    char *dir = kc_test_tmpdir(), path[4200];
    snprintf(path, sizeof path, "%s/c.safetensors", dir);
    kc_logs logs = {.n = 1, .keys = {"loss"}, .vals = {0.5}};
    ck_assert_msg(kc_checkpoint_save(&sa, path, &logs, &e) == 0, "%s", e.msg);
    ck_assert(kc_is_checkpoint(path));
    ck_assert_msg(kc_checkpoint_load(&sb, path, &e) == 0, "%s", e.msg);
    size_t nv = (size_t)a.m->nvalues;
    float *va = malloc(nv * sizeof *va), *vb = malloc(nv * sizeof *vb);
    kc_test_get(be, va, a.m->values, nv * sizeof *va);
    kc_test_get(be, vb, b.m->values, nv * sizeof *vb);
    ck_assert_int_eq(memcmp(va, vb, nv * sizeof *va), 0);
    ck_assert_int_eq(kc_optimizer_iterations(sb.opt), 2);
    ck_assert_int_eq(sb.epoch, 2);
    ck_assert_int_eq(sb.step, 17);
    ck_assert_int_eq(kc_optimizer_slot_count(sa.opt), kc_optimizer_slot_count(sb.opt));
    for (int i = 0; i < kc_optimizer_slot_count(sa.opt); i++) {
        const char *na, *nb;
        kc_buf da, db;
        size_t la, lb;
        kc_optimizer_slot(sa.opt, i, &na, &da, &la);
        kc_optimizer_slot(sb.opt, i, &nb, &db, &lb);
        ck_assert_str_eq(na, nb);
        float *ha = malloc(la * sizeof *ha), *hb = malloc(lb * sizeof *hb);
        kc_test_get(be, ha, da, la * sizeof *ha);
        kc_test_get(be, hb, db, lb * sizeof *hb);
        ck_assert_int_eq(memcmp(ha, hb, la * sizeof *ha), 0);
        free(ha);
        free(hb);
    }
    /* the config inside the checkpoint builds the same model */
    kc_config *c2 = NULL;
    ck_assert_msg(kc_checkpoint_config(path, &c2, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(kc_model_param_count(c2->model, 0), kc_model_param_count(a.m, 0));
    kc_config_free(c2);
    free(va);
    free(vb);
    kc_optimizer_free(sa.opt);
    kc_optimizer_free(sb.opt);
    kc_test_rmdir(dir);
    free(dir);
    fixture_close(&a);
    fixture_close(&b);
}
END_TEST

/* Activity regularizers: the penalty joins the loss in forward and its
 * gradient joins the backward pass (checked by finite differences of
 * loss + penalty). */
static const char *act_reg =
    "model:\n"
    "  layers:\n"
    "    - Input: {shape: [6]}\n"
    "    - Dense: {units: 5, activation: tanh, activity_regularizer: {L1L2: {l1: 0.3, l2: 0.2}}}\n"
    "    - Dense: {units: 3, activation: softmax}\n";

/* The activity penalties of the last forward pass (a double on the device). */
static double activity_loss(fixture *f) {
    ck_assert(f->m->has_activity);
    return kc_test_get_double(f->m->dev, f->m->activity);
}

static double total_loss(fixture *f, int want_grad) {
    double l = loss_at(f, 1, want_grad);
    return l + activity_loss(f);
}

START_TEST(activity_regularizer_gradients) {
    KC_LOOP_DEVICE(be);
    fixture f;
    fixture_open(&f, act_reg, "sparse_categorical_crossentropy", be, 4);
    kc_model *m = f.m;
    total_loss(&f, 1);
    ck_assert(activity_loss(&f) > 0);
    size_t nv = (size_t)m->nvalues;
    float *w = malloc(nv * sizeof *w), *g = malloc(nv * sizeof *g);
    kc_test_get(be, w, m->values, nv * sizeof *w);
    kc_test_get(be, g, m->grads, nv * sizeof *g);
    const float h = 1e-3f;
    for (size_t i = 0; i < nv; i++) {
        float orig = w[i];
        w[i] = orig + h;
        kc_test_put(be, m->values, w, nv * sizeof *w);
        double lp = total_loss(&f, 0);
        w[i] = orig - h;
        kc_test_put(be, m->values, w, nv * sizeof *w);
        double lm = total_loss(&f, 0);
        w[i] = orig;
        double num = (lp - lm) / (2.0 * h);
        ck_assert_msg(fabs(num - g[i]) <= 2e-3 + 2e-2 * fabs(num),
                      "%s weight %zu: analytic %.6g, numeric %.6g", be->name, i, g[i], num);
    }
    kc_test_put(be, m->values, w, nv * sizeof *w);
    free(w);
    free(g);
    fixture_close(&f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("model");
    TCase *t = tcase_create("model");
    tcase_set_timeout(t, 300);
    int nb = kc_test_backend_count();
    tcase_add_loop_test(t, model_gradients, 0, nb);
    tcase_add_loop_test(t, model_gradients_fused, 0, nb);
    tcase_add_loop_test(t, fused_equals_plain, 0, nb);
    tcase_add_test(t, backends_agree_on_model);
    tcase_add_loop_test(t, partial_batch, 0, nb);
    tcase_add_loop_test(t, checkpoint_round_trip, 0, nb);
    tcase_add_loop_test(t, activity_regularizer_gradients, 0, nb);
    suite_add_tcase(s, t);
    return kc_test_run(s);
}

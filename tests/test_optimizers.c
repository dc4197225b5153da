/* Optimizers: several steps of every variant on both backends against the
 * Keras 3 update rules evaluated here in double; slot names, order and
 * counts; parsing, defaults and errors. */
#include "testutil.h"

#include "core/backend.h"
#include "models/optimizers.h"
#include "models/yaml.h"

enum { N = 5, STEPS = 4, NA = 3 }; /* two parameters: elements [0, NA) and [NA, N) */

static const double W0[N] = {0.5, -1.0, 2.0, 0.0, 0.25};
static const double G[STEPS][N] = {
    {0.5, -1.0, 0.0, 2.0, -0.01},
    {0.4, -0.5, 0.3, -1.0, 0.02},
    {-0.2, -0.3, 0.1, 0.5, 0.0},
    {1.0, 0.7, -0.4, 0.5, 0.05},
};

/* ---- the Keras 3 rules (KERAS.md 3.2), in double ---- */

typedef struct ref {
    double w[N], m[N], v[N], vhat[N], mg[N], mom[N];
} ref;

static void ref_step(const kc_optimizer_config *c, ref *r, const double *g, long long t) {
    double lr = c->learning_rate;
    for (int i = 0; i < N; i++) {
        switch (c->kind) {
        case KC_OPTIMIZER_SGD:
            if (c->momentum == 0) {
                r->w[i] -= lr * g[i];
                break;
            }
            r->m[i] = c->momentum * r->m[i] - lr * g[i];
            r->w[i] += c->nesterov ? c->momentum * r->m[i] - lr * g[i] : r->m[i];
            break;
        case KC_OPTIMIZER_RMSPROP: {
            r->v[i] = c->rho * r->v[i] + (1 - c->rho) * g[i] * g[i];
            double d = r->v[i] + c->epsilon;
            if (c->centered) {
                r->mg[i] = c->rho * r->mg[i] + (1 - c->rho) * g[i];
                d = r->v[i] - r->mg[i] * r->mg[i] + c->epsilon;
            }
            double inc = lr * g[i] / sqrt(d);
            if (c->momentum > 0) {
                r->mom[i] = c->momentum * r->mom[i] + inc;
                r->w[i] -= r->mom[i];
            } else {
                r->w[i] -= inc;
            }
            break;
        }
        case KC_OPTIMIZER_ADAM: {
            r->m[i] += (1 - c->beta_1) * (g[i] - r->m[i]);
            r->v[i] += (1 - c->beta_2) * (g[i] * g[i] - r->v[i]);
            double v = r->v[i];
            if (c->amsgrad) {
                r->vhat[i] = fmax(r->vhat[i], r->v[i]);
                v = r->vhat[i];
            }
            double alpha =
                lr * sqrt(1 - pow(c->beta_2, (double)t)) / (1 - pow(c->beta_1, (double)t));
            r->w[i] -= alpha * r->m[i] / (sqrt(v) + c->epsilon);
            break;
        }
        }
    }
}

/* ---- running an optimizer on a backend ---- */

typedef struct run {
    const kc_backend *be;
    kc_optimizer *o;
    float *w[2], *g[2];
} run;

static const size_t SIZES[2] = {NA, N - NA};
static const char *const NAMES[2] = {"dense/kernel", "dense/bias"};

static void run_start(run *r, const kc_backend *be, const kc_optimizer_config *cfg) {
    kc_error e = {0};
    r->be = be;
    ck_assert_msg(kc_optimizer_create(cfg, &r->o, &e) == KC_OK, "%s", e.msg);
    ck_assert_msg(kc_optimizer_build(r->o, be, 2, SIZES, NAMES, &e) == KC_OK, "%s", e.msg);
    float host[N];
    for (int i = 0; i < N; i++)
        host[i] = (float)W0[i];
    for (int p = 0; p < 2; p++) {
        r->w[p] = be->alloc(SIZES[p] * sizeof(float));
        r->g[p] = be->alloc(SIZES[p] * sizeof(float));
        ck_assert(r->w[p] && r->g[p]);
        be->upload(r->w[p], host + (p ? NA : 0), SIZES[p] * sizeof(float));
    }
}

static void run_step(run *r, const double *g) {
    float host[N];
    for (int i = 0; i < N; i++)
        host[i] = (float)g[i];
    for (int p = 0; p < 2; p++)
        r->be->upload(r->g[p], host + (p ? NA : 0), SIZES[p] * sizeof(float));
    kc_optimizer_step(r->o, r->w, (const float *const *)r->g);
}

static void run_weights(run *r, float *out) {
    for (int p = 0; p < 2; p++)
        r->be->download(out + (p ? NA : 0), r->w[p], SIZES[p] * sizeof(float));
}

static void run_end(run *r) {
    for (int p = 0; p < 2; p++) {
        r->be->free(r->w[p]);
        r->be->free(r->g[p]);
    }
    kc_optimizer_free(r->o);
}

static const kc_backend *backend(int i) {
    return i ? kc_backend_cpu() : kc_backend_reference();
}

/* Runs STEPS steps on both backends, comparing every weight after each. */
static void check_against_rules(const kc_optimizer_config *cfg, int64_t start_iterations) {
    for (int b = 0; b < 2; b++) {
        run r;
        run_start(&r, backend(b), cfg);
        kc_optimizer_set_iterations(r.o, start_iterations);
        ref ref = {0};
        memcpy(ref.w, W0, sizeof W0);
        for (int s = 0; s < STEPS; s++) {
            run_step(&r, G[s]);
            ref_step(cfg, &ref, G[s], start_iterations + s + 1);
            float got[N];
            run_weights(&r, got);
            for (int i = 0; i < N; i++)
                ck_assert_msg(fabs(got[i] - ref.w[i]) <= 2e-6 + 2e-5 * fabs(ref.w[i]),
                              "%s on %s, step %d, w[%d] = %.9g, expected %.9g", cfg->name,
                              r.be->name, s + 1, i, (double)got[i], ref.w[i]);
        }
        ck_assert_int_eq(kc_optimizer_iterations(r.o), start_iterations + STEPS);
        run_end(&r);
    }
}

static kc_optimizer_config config(kc_optimizer_kind kind) {
    kc_optimizer_config c;
    kc_optimizer_config_default(kind, &c);
    return c;
}

START_TEST(test_sgd_variants) {
    kc_optimizer_config c = config(KC_OPTIMIZER_SGD);
    check_against_rules(&c, 0);
    c.momentum = 0.9;
    check_against_rules(&c, 0);
    c.nesterov = 1;
    check_against_rules(&c, 0);
    c.learning_rate = 0.1;
    c.momentum = 0.5;
    check_against_rules(&c, 0);
}
END_TEST

START_TEST(test_sgd_first_steps_by_hand) {
    /* lr 0.1, momentum 0.9: v1 = -0.1 g1; v2 = 0.9 v1 - 0.1 g2 */
    kc_optimizer_config c = config(KC_OPTIMIZER_SGD);
    c.learning_rate = 0.1;
    c.momentum = 0.9;
    run r;
    run_start(&r, kc_backend_reference(), &c);
    run_step(&r, G[0]);
    run_step(&r, G[1]);
    float got[N];
    run_weights(&r, got);
    ck_assert_close(got[0], 0.5 + (-0.05) + (0.9 * -0.05 - 0.04), 1e-6, 0);
    ck_assert_close(got[3], 0.0 + (-0.2) + (0.9 * -0.2 + 0.1), 1e-6, 0);
    run_end(&r);
}
END_TEST

START_TEST(test_rmsprop_variants) {
    kc_optimizer_config c = config(KC_OPTIMIZER_RMSPROP);
    check_against_rules(&c, 0);
    c.momentum = 0.9;
    check_against_rules(&c, 0);
    c.centered = 1;
    check_against_rules(&c, 0);
    c.momentum = 0;
    check_against_rules(&c, 0);
    c.rho = 0.5;
    c.learning_rate = 0.01;
    check_against_rules(&c, 0);
}
END_TEST

START_TEST(test_rmsprop_first_step_by_hand) {
    /* ms = 0.1 g^2, so w moves by lr g / sqrt(0.1 g^2 + eps) ~ lr sqrt(10) sign(g) */
    kc_optimizer_config c = config(KC_OPTIMIZER_RMSPROP);
    run r;
    run_start(&r, kc_backend_cpu(), &c);
    run_step(&r, G[0]);
    float got[N];
    run_weights(&r, got);
    ck_assert_close(got[0], 0.5 - 0.001 * 0.5 / sqrt(0.025 + 1e-7), 1e-7, 0);
    ck_assert_close(got[2], 2.0, 0, 0); /* zero gradient */
    ck_assert_close(got[3], 0.0 - 0.001 * 2 / sqrt(0.4 + 1e-7), 1e-7, 0);
    run_end(&r);
}
END_TEST

START_TEST(test_adam_variants) {
    kc_optimizer_config c = config(KC_OPTIMIZER_ADAM);
    check_against_rules(&c, 0);
    c.amsgrad = 1;
    check_against_rules(&c, 0);
    c.amsgrad = 0;
    c.learning_rate = 0.01;
    c.beta_1 = 0.5;
    c.beta_2 = 0.9;
    c.epsilon = 1e-3;
    check_against_rules(&c, 0);
    /* a resumed run continues the bias correction from its iteration count */
    c = config(KC_OPTIMIZER_ADAM);
    check_against_rules(&c, 10);
}
END_TEST

START_TEST(test_adam_first_step_moves_lr) {
    /* m = 0.1 g, v = 0.001 g^2, alpha = lr sqrt(0.001) / 0.1: each weight moves by
     * lr g / (|g| + eps / sqrt(0.001)), about lr sign(g) */
    kc_optimizer_config c = config(KC_OPTIMIZER_ADAM);
    for (int b = 0; b < 2; b++) {
        run r;
        run_start(&r, backend(b), &c);
        run_step(&r, G[0]);
        float got[N];
        run_weights(&r, got);
        for (int i = 0; i < N; i++) {
            double g = G[0][i];
            double step = g == 0 ? 0 : 0.001 * g / (fabs(g) + 1e-7 / sqrt(0.001));
            ck_assert_close(W0[i] - got[i], step, 1e-8, 1e-4);
            if (g != 0) ck_assert_close(fabs(W0[i] - got[i]), 0.001, 0, 1e-3);
        }
        run_end(&r);
    }
}
END_TEST

START_TEST(test_learning_rate_change) {
    kc_optimizer_config c = config(KC_OPTIMIZER_SGD);
    run r;
    run_start(&r, kc_backend_reference(), &c);
    ck_assert_close(kc_optimizer_learning_rate(r.o), 0.01, 0, 0);
    kc_optimizer_set_learning_rate(r.o, 0.5);
    run_step(&r, G[0]);
    float got[N];
    run_weights(&r, got);
    ck_assert_close(got[1], -1.0 + 0.5, 1e-7, 0);
    run_end(&r);
}
END_TEST

/* ---- slots ---- */

static void expect_slots(const kc_optimizer_config *c, const char *const *names, int count) {
    kc_optimizer *o;
    kc_error e = {0};
    ck_assert(kc_optimizer_create(c, &o, &e) == KC_OK);
    ck_assert(kc_optimizer_build(o, kc_backend_reference(), 2, SIZES, NAMES, &e) == KC_OK);
    ck_assert_int_eq(kc_optimizer_slot_count(o), count);
    size_t elements = 0;
    for (int i = 0; i < count; i++) {
        const char *name;
        float *dev;
        size_t n;
        kc_optimizer_slot(o, i, &name, &dev, &n);
        ck_assert_str_eq(name, names[i]);
        ck_assert_int_eq(n, strstr(name, "kernel") ? NA : N - NA);
        float host[NA];
        kc_backend_reference()->download(host, dev, n * sizeof(float));
        for (size_t j = 0; j < n; j++)
            ck_assert_close(host[j], 0.0, 0, 0);
        elements += n;
    }
    ck_assert_int_eq(kc_optimizer_variable_count(o), 2 + (int64_t)elements);
    kc_optimizer_free(o);
}

START_TEST(test_slot_names_and_order) {
    kc_optimizer_config c = config(KC_OPTIMIZER_SGD);
    expect_slots(&c, NULL, 0);
    c.momentum = 0.9;
    const char *const sgd[] = {"optimizer/dense/kernel/momentum", "optimizer/dense/bias/momentum"};
    expect_slots(&c, sgd, 2);
    /* Adam interleaves m and v per variable, then the amsgrad v_hats */
    c = config(KC_OPTIMIZER_ADAM);
    c.amsgrad = 1;
    const char *const adam[] = {
        "optimizer/dense/kernel/momentum",     "optimizer/dense/kernel/velocity",
        "optimizer/dense/bias/momentum",       "optimizer/dense/bias/velocity",
        "optimizer/dense/kernel/velocity_hat", "optimizer/dense/bias/velocity_hat"};
    expect_slots(&c, adam, 6);
    /* RMSprop: every velocity, every momentum, every average gradient */
    c = config(KC_OPTIMIZER_RMSPROP);
    c.momentum = 0.5;
    c.centered = 1;
    const char *const rms[] = {
        "optimizer/dense/kernel/velocity",         "optimizer/dense/bias/velocity",
        "optimizer/dense/kernel/momentum",         "optimizer/dense/bias/momentum",
        "optimizer/dense/kernel/average_gradient", "optimizer/dense/bias/average_gradient"};
    expect_slots(&c, rms, 6);
}
END_TEST

START_TEST(test_slot_values) {
    /* Adam's m after two steps: 0.1 g2 + 0.09 g1 */
    kc_optimizer_config c = config(KC_OPTIMIZER_ADAM);
    run r;
    run_start(&r, kc_backend_cpu(), &c);
    run_step(&r, G[0]);
    run_step(&r, G[1]);
    const char *name;
    float *dev, m[NA], v[NA];
    size_t n;
    kc_optimizer_slot(r.o, 0, &name, &dev, &n);
    r.be->download(m, dev, sizeof m);
    kc_optimizer_slot(r.o, 1, &name, &dev, &n);
    r.be->download(v, dev, sizeof v);
    for (int i = 0; i < NA; i++) {
        ck_assert_close(m[i], 0.1 * G[1][i] + 0.09 * G[0][i], 1e-7, 1e-6);
        /* 1 - 0.999f is 0.00099998713 in float32, as in Keras */
        ck_assert_close(v[i], 0.001 * G[1][i] * G[1][i] + 0.000999 * G[0][i] * G[0][i], 1e-9, 1e-4);
    }
    run_end(&r);
}
END_TEST

START_TEST(test_variable_count_matches_keras_summary) {
    /* KERAS.md 1.2: the MNIST CNN after Adam training has 243,862 optimizer
     * variables taking 975,452 bytes (TensorFlow: int64 iteration) */
    const size_t sizes[] = {288, 32, 18432, 64, 102400, 64, 640, 10};
    const char *const names[] = {"conv2d/kernel", "conv2d/bias", "conv2d_1/kernel", "conv2d_1/bias",
                                 "dense/kernel",  "dense/bias",  "dense_1/kernel",  "dense_1/bias"};
    kc_optimizer_config c = config(KC_OPTIMIZER_ADAM);
    kc_optimizer *o;
    kc_error e = {0};
    ck_assert(kc_optimizer_create(&c, &o, &e) == KC_OK);
    ck_assert(kc_optimizer_build(o, kc_backend_cpu(), 8, sizes, names, &e) == KC_OK);
    ck_assert_int_eq(kc_optimizer_variable_count(o), 243862);
    ck_assert_int_eq(kc_optimizer_variable_bytes(o), 975452);
    /* rebuilding replaces the slots */
    ck_assert(kc_optimizer_build(o, kc_backend_cpu(), 2, sizes, names, &e) == KC_OK);
    ck_assert_int_eq(kc_optimizer_variable_count(o), 2 + 2 * 320);
    kc_optimizer_free(o);
}
END_TEST

/* ---- parsing ---- */

static int parse_opt(const char *text, kc_optimizer **o, kc_error *e) {
    kc_doc *d;
    int rc = kc_doc_parse(&d, "opt.yaml", text, strlen(text), e);
    if (rc) return rc;
    rc = kc_optimizer_parse(kc_map_get(d->root, "optimizer"), o, e);
    kc_doc_free(d);
    return rc;
}

static kc_optimizer_config parsed(const char *text) {
    kc_optimizer *o;
    kc_error e = {0};
    ck_assert_msg(parse_opt(text, &o, &e) == KC_OK, "%s", e.msg);
    kc_optimizer_config c = *kc_optimizer_get_config(o);
    kc_optimizer_free(o);
    return c;
}

START_TEST(test_parse_defaults) {
    kc_optimizer *o;
    kc_error e = {0};
    ck_assert(kc_optimizer_parse(NULL, &o, &e) == KC_OK); /* compile()'s default */
    ck_assert_str_eq(kc_optimizer_name(o), "RMSprop");
    const kc_optimizer_config *c = kc_optimizer_get_config(o);
    ck_assert_close(c->learning_rate, 0.001, 0, 0);
    ck_assert_close(c->rho, 0.9, 0, 0);
    ck_assert_close(c->epsilon, 1e-7, 0, 0);
    ck_assert_close(c->momentum, 0, 0, 0);
    ck_assert_int_eq(c->centered, 0);
    ck_assert_str_eq(c->name, "rmsprop");
    kc_optimizer_free(o);

    kc_optimizer_config a = parsed("optimizer: adam\n");
    ck_assert_int_eq(a.kind, KC_OPTIMIZER_ADAM);
    ck_assert_close(a.learning_rate, 0.001, 0, 0);
    ck_assert_close(a.beta_1, 0.9, 0, 0);
    ck_assert_close(a.beta_2, 0.999, 0, 0);
    ck_assert_close(a.epsilon, 1e-7, 0, 0);
    ck_assert_int_eq(a.amsgrad, 0);
    ck_assert_int_eq(parsed("optimizer: Adam\n").kind, KC_OPTIMIZER_ADAM);
    kc_optimizer_config s = parsed("optimizer: sgd\n");
    ck_assert_int_eq(s.kind, KC_OPTIMIZER_SGD);
    ck_assert_close(s.learning_rate, 0.01, 0, 0);
    ck_assert_close(s.momentum, 0, 0, 0);
    ck_assert_int_eq(s.nesterov, 0);
    ck_assert_str_eq(s.name, "SGD");
    ck_assert_int_eq(parsed("optimizer: SGD\n").kind, KC_OPTIMIZER_SGD);
    ck_assert_int_eq(parsed("optimizer: RMSprop\n").kind, KC_OPTIMIZER_RMSPROP);
}
END_TEST

START_TEST(test_parse_arguments) {
    kc_optimizer_config c = parsed("optimizer: {class_name: Adam, learning_rate: 0.0005}\n");
    ck_assert_int_eq(c.kind, KC_OPTIMIZER_ADAM);
    ck_assert_close(c.learning_rate, 0.0005, 0, 0);
    c = parsed(
        "optimizer:\n  SGD:\n    learning_rate: 0.1\n    momentum: 0.9\n    nesterov: true\n");
    ck_assert_close(c.learning_rate, 0.1, 0, 0);
    ck_assert_close(c.momentum, 0.9, 0, 0);
    ck_assert_int_eq(c.nesterov, 1);
    c = parsed("optimizer: {RMSprop: {rho: 0.8, momentum: 0.5, epsilon: 1e-6, centered: true}}\n");
    ck_assert_close(c.rho, 0.8, 0, 0);
    ck_assert_close(c.momentum, 0.5, 0, 0);
    ck_assert_close(c.epsilon, 1e-6, 0, 0);
    ck_assert_int_eq(c.centered, 1);
    c = parsed("optimizer: {Adam: {beta_1: 0.5, beta_2: 0.99, amsgrad: true, name: opt}}\n");
    ck_assert_close(c.beta_1, 0.5, 0, 0);
    ck_assert_close(c.beta_2, 0.99, 0, 0);
    ck_assert_int_eq(c.amsgrad, 1);
    ck_assert_str_eq(c.name, "opt");
    /* Keras's serialized form, with the generic arguments at their inert values */
    c = parsed(
        "optimizer:\n  module: keras.optimizers\n  class_name: Adam\n  registered_name: null\n"
        "  config: {name: adam, learning_rate: 0.002, weight_decay: null, clipnorm: null,\n"
        "           clipvalue: null, global_clipnorm: null, use_ema: false,\n"
        "           ema_momentum: 0.99, ema_overwrite_frequency: null,\n"
        "           loss_scale_factor: null, gradient_accumulation_steps: null,\n"
        "           beta_1: 0.9, beta_2: 0.999, epsilon: 1.0e-07, amsgrad: false}\n");
    ck_assert_close(c.learning_rate, 0.002, 0, 0);
}
END_TEST

static void expect_error(const char *text, const char *needle) {
    kc_optimizer *o = NULL;
    kc_error e = {0};
    ck_assert_int_eq(parse_opt(text, &o, &e), KC_ECONFIG);
    ck_assert(o == NULL);
    ck_assert_msg(strstr(e.msg, needle), "message '%s' lacks '%s'", e.msg, needle);
}

START_TEST(test_parse_errors) {
    expect_error("optimizer: adamw\n", "opt.yaml:1:12: unknown optimizer 'adamw' (did you mean");
    expect_error("optimizer: {Adam: {weight_decay: 0.01}}\n",
                 "opt.yaml:1:34: Adam argument 'weight_decay' is not supported");
    expect_error("optimizer: {SGD: {clipnorm: 1.0}}\n", "opt.yaml:1:29: SGD argument 'clipnorm'");
    expect_error("optimizer: {SGD: {clipvalue: 1.0}}\n", "'clipvalue' is not supported");
    expect_error("optimizer: {SGD: {global_clipnorm: 1.0}}\n",
                 "'global_clipnorm' is not supported");
    expect_error("optimizer: {Adam: {use_ema: true}}\n", "'use_ema' is not supported");
    expect_error("optimizer: {Adam: {lr: 0.1}}\n",
                 "opt.yaml:1:24: Adam argument 'lr' is no longer");
    expect_error("optimizer: {Adam: {learning_rat: 0.1}}\n",
                 "opt.yaml:1:20: unknown key 'learning_rat' in the arguments of Adam (did you "
                 "mean 'learning_rate'?)");
    expect_error("optimizer: {SGD: {learning_rate: 0}}\n",
                 "opt.yaml:1:34: SGD argument 'learning_rate' must be > 0, got 0");
    expect_error("optimizer: {SGD: {learning_rate: -1}}\n", "must be >= 0");
    expect_error("optimizer: {SGD: {momentum: 1.5}}\n",
                 "SGD argument 'momentum' must be in [0, 1], got 1.5");
    expect_error("optimizer: {Adam: {beta_1: 1.0}}\n",
                 "opt.yaml:1:28: Adam argument 'beta_1' must be in [0, 1), got 1");
    expect_error("optimizer: {Adam: {beta_2: -0.1}}\n", "Adam argument 'beta_2'");
    expect_error("optimizer: {RMSprop: {epsilon: -1e-7}}\n", "RMSprop argument 'epsilon'");
    expect_error("optimizer: {RMSprop: {rho: 2}}\n", "RMSprop argument 'rho'");
    expect_error("optimizer: {RMSprop: {nesterov: true}}\n", "unknown key 'nesterov'");
    expect_error("optimizer: {SGD: {beta_1: 0.9}}\n", "unknown key 'beta_1'");
    expect_error("optimizer: {SGD: {nesterov: perhaps}}\n", "opt.yaml:1:29:");
    expect_error("optimizer: [adam]\n", "got a list");
    /* kc_optimizer_create checks ranges too */
    kc_optimizer_config c = config(KC_OPTIMIZER_ADAM);
    c.beta_2 = 1.0;
    kc_optimizer *o = NULL;
    kc_error e = {0};
    ck_assert_int_eq(kc_optimizer_create(&c, &o, &e), KC_ECONFIG);
    ck_assert(o == NULL);
    ck_assert_msg(strstr(e.msg, "beta_2 must be in [0, 1)"), "%s", e.msg);
}
END_TEST

int main(void) {
    Suite *s = suite_create("optimizers");
    TCase *tc = tcase_create("optimizers");
    tcase_add_test(tc, test_sgd_variants);
    tcase_add_test(tc, test_sgd_first_steps_by_hand);
    tcase_add_test(tc, test_rmsprop_variants);
    tcase_add_test(tc, test_rmsprop_first_step_by_hand);
    tcase_add_test(tc, test_adam_variants);
    tcase_add_test(tc, test_adam_first_step_moves_lr);
    tcase_add_test(tc, test_learning_rate_change);
    tcase_add_test(tc, test_slot_names_and_order);
    tcase_add_test(tc, test_slot_values);
    tcase_add_test(tc, test_variable_count_matches_keras_summary);
    tcase_add_test(tc, test_parse_defaults);
    tcase_add_test(tc, test_parse_arguments);
    tcase_add_test(tc, test_parse_errors);
    suite_add_tcase(s, tc);
    return kc_test_run(s);
}

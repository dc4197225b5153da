/* Optimizers: several steps of every variant on every backend of the
 * registry that opens here (tests/devices.h) against the Keras 3 update
 * rules evaluated here in double; first steps, clipping and weight decay
 * against values worked out by hand, and the other backends against the
 * reference one; learning-rate schedules driving the steps; slot names,
 * order, initial values and counts; parsing, defaults and errors. */
#include "testutil.h"

#include "core/backend.h"
#include "models/optimizers.h"
#include "models/yaml.h"
#include "tests/devices.h"

enum { N = 5, STEPS = 4, NA = 3 }; /* two parameters: elements [0, NA) and [NA, N) */

static const double W0[N] = {0.5, -1.0, 2.0, 0.0, 0.25};
static const double G[STEPS][N] = {
    {0.5, -1.0, 0.0, 2.0, -0.01},
    {0.4, -0.5, 0.3, -1.0, 0.02},
    {-0.2, -0.3, 0.1, 0.5, 0.0},
    {1.0, 0.7, -0.4, 0.5, 0.05},
};

/* ---- the Keras 3 rules (KERAS.md 3.2, keras/src/optimizers), in double ---- */

typedef struct ref {
    double w[N];
    double s[3][N]; /* slots: m / accumulator / accumulated_grad, v / norm / ..., v_hat */
    double prod;    /* Nadam's u_product */
} ref;

static double nadam_u(double b1, double t) {
    return b1 * (1 - 0.5 * pow(0.96, t));
}

static void ref_init(const kc_optimizer_config *c, ref *r, long long start) {
    memset(r, 0, sizeof *r);
    memcpy(r->w, W0, sizeof W0);
    if (c->kind == KC_OPTIMIZER_ADAGRAD)
        for (int i = 0; i < N; i++)
            r->s[0][i] = c->initial_accumulator_value;
    r->prod = 1;
    for (long long k = 1; k <= start; k++)
        r->prod *= nadam_u(c->beta_1, (double)k);
}

static double sq_norm(const double *g, int lo, int hi) {
    double s = 0;
    for (int i = lo; i < hi; i++)
        s += g[i] * g[i];
    return s;
}

/* Keras's _clip_gradients: clipnorm per tensor, else global_clipnorm, else clipvalue */
static void ref_clip(const kc_optimizer_config *c, const double *g, double *out) {
    memcpy(out, g, sizeof(double) * N);
    if (c->clipnorm > 0) {
        double na = sqrt(sq_norm(g, 0, NA)), nb = sqrt(sq_norm(g, NA, N));
        for (int i = 0; i < N; i++)
            out[i] = g[i] * c->clipnorm / fmax(i < NA ? na : nb, c->clipnorm);
    } else if (c->global_clipnorm > 0) {
        double norm = sqrt(sq_norm(g, 0, N));
        for (int i = 0; i < N; i++)
            out[i] = g[i] * c->global_clipnorm * fmin(1 / norm, 1 / c->global_clipnorm);
    } else if (c->clipvalue > 0) {
        for (int i = 0; i < N; i++)
            out[i] = fmin(fmax(g[i], -c->clipvalue), c->clipvalue);
    }
}

static double sign(double x) {
    return x > 0 ? 1 : x < 0 ? -1 : 0;
}

static void ref_update(const kc_optimizer_config *c, ref *r, int i, double g, double lr, double t) {
    double *w = &r->w[i], *s0 = &r->s[0][i], *s1 = &r->s[1][i], *s2 = &r->s[2][i];
    double b1 = c->beta_1, b2 = c->beta_2, eps = c->epsilon, rho = c->rho;
    switch (c->kind) {
    case KC_OPTIMIZER_SGD:
        if (c->momentum == 0) {
            *w -= lr * g;
            break;
        }
        *s0 = c->momentum * *s0 - lr * g;
        *w += c->nesterov ? c->momentum * *s0 - lr * g : *s0;
        break;
    case KC_OPTIMIZER_RMSPROP: { /* s0 velocity, s1 momentum, s2 average gradient */
        *s0 = rho * *s0 + (1 - rho) * g * g;
        double d = *s0 + eps;
        if (c->centered) {
            *s2 = rho * *s2 + (1 - rho) * g;
            d = *s0 - *s2 * *s2 + eps;
        }
        double inc = lr * g / sqrt(d);
        if (c->momentum > 0) {
            *s1 = c->momentum * *s1 + inc;
            *w -= *s1;
        } else {
            *w -= inc;
        }
        break;
    }
    case KC_OPTIMIZER_ADAM:
    case KC_OPTIMIZER_ADAMW: {
        *s0 += (1 - b1) * (g - *s0);
        *s1 += (1 - b2) * (g * g - *s1);
        double v = *s1;
        if (c->amsgrad) {
            *s2 = fmax(*s2, *s1);
            v = *s2;
        }
        double alpha = lr * sqrt(1 - pow(b2, t)) / (1 - pow(b1, t));
        *w -= alpha * *s0 / (sqrt(v) + eps);
        break;
    }
    case KC_OPTIMIZER_ADAGRAD:
        *s0 += g * g;
        *w -= lr * g / sqrt(*s0 + eps);
        break;
    case KC_OPTIMIZER_ADADELTA: {
        *s0 = rho * *s0 + (1 - rho) * g * g;
        double d = -sqrt(*s1 + eps) * g / sqrt(*s0 + eps);
        *s1 = rho * *s1 + (1 - rho) * d * d;
        *w += lr * d;
        break;
    }
    case KC_OPTIMIZER_ADAMAX:
        *s0 += (1 - b1) * (g - *s0);
        *s1 = fmax(b2 * *s1, fabs(g));
        *w -= lr * *s0 / ((1 - pow(b1, t)) * (*s1 + eps));
        break;
    case KC_OPTIMIZER_NADAM: { /* r->prod already holds u_1 ... u_t */
        double u = nadam_u(b1, t), u_next = nadam_u(b1, t + 1);
        *s0 += (1 - b1) * (g - *s0);
        *s1 += (1 - b2) * (g * g - *s1);
        double m_hat = u_next * *s0 / (1 - r->prod * u_next) + (1 - u) * g / (1 - r->prod);
        double v_hat = *s1 / (1 - pow(b2, t));
        *w -= lr * m_hat / (sqrt(v_hat) + eps);
        break;
    }
    case KC_OPTIMIZER_LION:
        *w -= lr * sign(b1 * *s0 + (1 - b1) * g);
        *s0 = b2 * *s0 + (1 - b2) * g;
        break;
    }
}

/* One Keras apply at step t (1-based) with learning rate lr: clip, weight
 * decay, update. */
static void ref_step(const kc_optimizer_config *c, ref *r, const double *g_in, double lr,
                     long long t) {
    double g[N];
    ref_clip(c, g_in, g);
    for (int i = 0; i < N; i++)
        r->w[i] -= r->w[i] * c->weight_decay * lr;
    if (c->kind == KC_OPTIMIZER_NADAM) r->prod *= nadam_u(c->beta_1, (double)t);
    for (int i = 0; i < N; i++)
        ref_update(c, r, i, g[i], lr, (double)t);
}

/* ---- running an optimizer on a backend ---- */

typedef struct run {
    kc_device *be;
    kc_optimizer *o;
    kc_buf w[2], g[2];
} run;

static const size_t SIZES[2] = {NA, N - NA};
static const char *const NAMES[2] = {"dense/kernel", "dense/bias"};

static void run_start_with(run *r, kc_device *be, kc_optimizer *o, const double *w0) {
    kc_error e = {0};
    r->be = be;
    r->o = o;
    ck_assert_msg(kc_optimizer_build(r->o, be, 2, SIZES, NAMES, &e) == KC_OK, "%s", e.msg);
    float host[N];
    for (int i = 0; i < N; i++)
        host[i] = (float)w0[i];
    for (int p = 0; p < 2; p++) {
        r->w[p] = kc_test_from(be, host + (p ? NA : 0), SIZES[p]);
        r->g[p] = kc_test_alloc(be, SIZES[p] * sizeof(float));
    }
}

static void run_start(run *r, kc_device *be, const kc_optimizer_config *cfg) {
    kc_error e = {0};
    kc_optimizer *o;
    ck_assert_msg(kc_optimizer_create(cfg, &o, &e) == KC_OK, "%s", e.msg);
    run_start_with(r, be, o, W0);
}

static void run_step(run *r, const double *g) {
    float host[N];
    for (int i = 0; i < N; i++)
        host[i] = (float)g[i];
    for (int p = 0; p < 2; p++)
        kc_test_put(r->be, r->g[p], host + (p ? NA : 0), SIZES[p] * sizeof(float));
    int rc = kc_optimizer_step(r->o, r->w, r->g);
    ck_assert_msg(rc == KC_OK, "step on %s: %s", r->be->name, r->be->err.msg);
}

static void run_weights(run *r, float *out) {
    for (int p = 0; p < 2; p++)
        kc_test_get(r->be, out + (p ? NA : 0), r->w[p], SIZES[p] * sizeof(float));
}

static void run_grads(run *r, float *out) {
    for (int p = 0; p < 2; p++)
        kc_test_get(r->be, out + (p ? NA : 0), r->g[p], SIZES[p] * sizeof(float));
}

static void run_end(run *r) {
    for (int p = 0; p < 2; p++) {
        kc_free(r->be, &r->w[p]);
        kc_free(r->be, &r->g[p]);
    }
    kc_optimizer_free(r->o);
}

/* A weight on device d against the same weight on the reference backend:
 * the same bits where d repeats the reference's operations, else within a
 * few ulps. */
static int same_as_reference(const kc_device *d, float got, float want) {
    if (isnan(got) || isnan(want)) return isnan(got) && isnan(want);
    if (kc_test_repeats_reference(d)) return got == want;
    return fabs((double)got - want) <= 1e-7 + 1e-6 * fabs((double)want);
}

/* Float32 weights carry about 1.2e-7 relative rounding per step at the
 * largest magnitude they passed through; the rest is float32 arithmetic in
 * the update, relative to how far the weight moved. */
static double tolerance(double peak, double w0, double want, int steps) {
    return 2.4e-7 * peak * steps + 2e-5 * fabs(want - w0) + 1e-12;
}

/* Runs STEPS steps on every backend, comparing every weight after each with
 * the rules above; at least one weight must move far beyond the tolerance,
 * so a do-nothing update cannot pass. */
static void check_against_rules(const kc_optimizer_config *cfg, int64_t start_iterations) {
    KC_FOR_EACH_DEVICE(d) {
        run r;
        run_start(&r, d, cfg);
        kc_optimizer_set_iterations(r.o, start_iterations);
        ref ref;
        ref_init(cfg, &ref, start_iterations);
        double moved = 0, peak[N];
        for (int i = 0; i < N; i++)
            peak[i] = fabs(W0[i]);
        for (int s = 0; s < STEPS; s++) {
            run_step(&r, G[s]);
            ref_step(cfg, &ref, G[s], cfg->learning_rate, start_iterations + s + 1);
            float got[N];
            run_weights(&r, got);
            for (int i = 0; i < N; i++) {
                peak[i] = fmax(peak[i], fabs(ref.w[i]));
                double tol = tolerance(peak[i], W0[i], ref.w[i], s + 1);
                ck_assert_msg(fabs(got[i] - ref.w[i]) <= tol,
                              "%s on %s, step %d, w[%d] = %.9g, expected %.9g", cfg->name,
                              r.be->name, s + 1, i, (double)got[i], ref.w[i]);
                moved = fmax(moved, fabs(ref.w[i] - W0[i]) / tol);
            }
        }
        ck_assert_msg(moved > 100, "%s: the weights barely move", cfg->name);
        ck_assert_int_eq(kc_optimizer_iterations(r.o), start_iterations + STEPS);
        run_end(&r);
    }
}

static kc_optimizer_config config(kc_optimizer_kind kind) {
    kc_optimizer_config c;
    kc_optimizer_config_default(kind, &c);
    return c;
}

/* ---- SGD, RMSprop, Adam ---- */

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
    KC_LOOP_DEVICE(d);
    run r;
    run_start(&r, d, &c);
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
    KC_LOOP_DEVICE(d);
    kc_optimizer_config c = config(KC_OPTIMIZER_RMSPROP);
    run r;
    run_start(&r, d, &c);
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
    KC_FOR_EACH_DEVICE(d) {
        run r;
        run_start(&r, d, &c);
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

/* ---- AdamW, Adagrad, Adadelta, Adamax, Nadam, Lion ---- */

START_TEST(test_adamw_variants) {
    kc_optimizer_config c = config(KC_OPTIMIZER_ADAMW);
    check_against_rules(&c, 0);
    c.weight_decay = 0.1;
    c.learning_rate = 0.01;
    check_against_rules(&c, 0);
    c.amsgrad = 1;
    check_against_rules(&c, 3);
}
END_TEST

START_TEST(test_adagrad_variants) {
    kc_optimizer_config c = config(KC_OPTIMIZER_ADAGRAD);
    check_against_rules(&c, 0);
    c.learning_rate = 0.1;
    c.initial_accumulator_value = 0.0; /* the first step is then lr sign(g), eps aside */
    check_against_rules(&c, 0);
    c.initial_accumulator_value = 2.5;
    c.epsilon = 1e-2;
    check_against_rules(&c, 0);
}
END_TEST

START_TEST(test_adadelta_variants) {
    kc_optimizer_config c = config(KC_OPTIMIZER_ADADELTA);
    check_against_rules(&c, 0);
    c.learning_rate = 1.0; /* the original paper's form */
    check_against_rules(&c, 0);
    c.rho = 0.5;
    c.epsilon = 1e-4;
    check_against_rules(&c, 0);
}
END_TEST

START_TEST(test_adamax_variants) {
    kc_optimizer_config c = config(KC_OPTIMIZER_ADAMAX);
    check_against_rules(&c, 0);
    c.learning_rate = 0.01;
    c.beta_1 = 0.5;
    c.beta_2 = 0.8;
    check_against_rules(&c, 0);
    c = config(KC_OPTIMIZER_ADAMAX);
    check_against_rules(&c, 7);
}
END_TEST

START_TEST(test_nadam_variants) {
    kc_optimizer_config c = config(KC_OPTIMIZER_NADAM);
    check_against_rules(&c, 0);
    c.learning_rate = 0.01;
    c.beta_1 = 0.5;
    c.beta_2 = 0.9;
    c.epsilon = 1e-4;
    check_against_rules(&c, 0);
    /* a resumed run rebuilds the running product u_1 ... u_t from the count */
    c = config(KC_OPTIMIZER_NADAM);
    check_against_rules(&c, 10);
    check_against_rules(&c, 2000);
}
END_TEST

START_TEST(test_lion_variants) {
    kc_optimizer_config c = config(KC_OPTIMIZER_LION);
    check_against_rules(&c, 0);
    c.learning_rate = 0.01;
    c.beta_1 = 0.5;
    c.beta_2 = 0.3;
    check_against_rules(&c, 0);
    c.beta_1 = 1.0; /* the sign of the momentum alone */
    check_against_rules(&c, 0);
}
END_TEST

/* First steps with Keras's defaults, each worked out by hand from the rules
 * of keras/src/optimizers/<name>.py; W0 = {0.5, -1, 2, 0, 0.25} and
 * g = {0.5, -1, 0, 2, -0.01}. The step runs on device d; the weights must
 * also match the reference backend's. */
static void first_step(kc_device *d, kc_optimizer_kind kind, float *out, float *slot0) {
    kc_optimizer_config c = config(kind);
    float want[N];
    for (int pass = 0; pass < 2; pass++) {
        run r;
        run_start(&r, pass ? d : kc_test_reference(), &c);
        run_step(&r, G[0]);
        float got[N];
        run_weights(&r, got);
        const char *name;
        kc_buf dev;
        float s[NA];
        size_t n;
        kc_optimizer_slot(r.o, 0, &name, &dev, &n);
        kc_test_get(r.be, s, dev, sizeof s);
        if (pass) {
            for (int i = 0; i < N; i++)
                ck_assert_msg(same_as_reference(d, got[i], want[i]),
                              "%s: %s and reference differ at w[%d]: %.9g vs %.9g",
                              kc_optimizer_name(r.o), d->name, i, got[i], want[i]);
            memcpy(out, got, sizeof got);
            memcpy(slot0, s, sizeof s);
        } else {
            memcpy(want, got, sizeof got);
        }
        run_end(&r);
    }
}

START_TEST(test_first_steps_by_hand) {
    KC_LOOP_DEVICE(d);
    float w[N], s[NA];

    /* Adagrad: acc = 0.1 + g^2; w -= 0.001 g / sqrt(acc + 1e-7) */
    first_step(d, KC_OPTIMIZER_ADAGRAD, w, s);
    ck_assert_close(s[0], 0.35, 1e-8, 0);
    ck_assert_close(s[2], 0.1, 1e-8, 0);
    ck_assert_close(w[0], 0.5 - 0.001 * 0.5 / sqrt(0.35 + 1e-7), 1e-7, 0);
    ck_assert_close(w[3], 0.0 - 0.001 * 2 / sqrt(4.1 + 1e-7), 1e-10, 1e-6);
    ck_assert_close(w[2], 2.0, 0, 0);

    /* Adadelta: ag = 0.05 g^2; d = -sqrt(0 + 1e-7) g / sqrt(ag + 1e-7); w += 0.001 d.
     * At w = 0, g = 2: d = -2 sqrt(1e-7) / sqrt(0.2000001) = -1.41421e-3 */
    first_step(d, KC_OPTIMIZER_ADADELTA, w, s);
    ck_assert_close(s[0], 0.05 * 0.25, 1e-9, 0);
    ck_assert_close(w[3], 0.001 * -2 * sqrt(1e-7) / sqrt(0.2 + 1e-7), 1e-12, 1e-5);
    ck_assert_close(w[3], -1.41421e-6, 1e-11, 0);

    /* Adamax: m = 0.1 g, u = |g|; w -= 0.001 m / ((1 - 0.9) (u + 1e-7)) = 0.001 sign(g) */
    first_step(d, KC_OPTIMIZER_ADAMAX, w, s);
    ck_assert_close(s[0], 0.05, 1e-8, 0);
    ck_assert_close(w[0], 0.5 - 0.001 * 0.05 / (0.1 * (0.5 + 1e-7)), 1e-7, 0);
    ck_assert_close(w[3], -0.001 * 0.2 / (0.1 * (2 + 1e-7)), 1e-10, 1e-5);

    /* Nadam: u1 = 0.9 (1 - 0.5 * 0.96) = 0.468, u2 = 0.9 (1 - 0.5 * 0.9216) = 0.48528;
     * m = 0.1 g, v = 0.001 g^2; m_hat = u2 m / (1 - u1 u2) + (1 - u1) g / (1 - u1);
     * v_hat = v / 0.001 = g^2: w -= 0.001 m_hat / (|g| + 1e-7) */
    first_step(d, KC_OPTIMIZER_NADAM, w, s);
    double m_hat = 0.48528 * 0.05 / (1 - 0.468 * 0.48528) + 0.5;
    ck_assert_close(w[0], 0.5 - 0.001 * m_hat / (0.5 + 1e-7), 1e-7, 0);
    ck_assert_close(w[3], -0.001 * (0.48528 * 0.2 / (1 - 0.468 * 0.48528) + 2) / (2 + 1e-7), 1e-10,
                    1e-5);

    /* Lion: w -= 0.001 sign(0.1 g); m = 0.01 g */
    first_step(d, KC_OPTIMIZER_LION, w, s);
    ck_assert_close(w[0], 0.499, 1e-7, 0);
    ck_assert_close(w[1], -0.999, 1e-7, 0);
    ck_assert_close(w[2], 2.0, 0, 0);
    ck_assert_close(w[3], -0.001, 1e-10, 1e-6);
    ck_assert_close(s[0], 0.005, 1e-8, 0); /* 1 - 0.99 in float32, as Keras's Lion */

    /* AdamW: w (1 - 0.004 * 0.001), then Adam's step of about 0.001 sign(g) */
    first_step(d, KC_OPTIMIZER_ADAMW, w, s);
    ck_assert_close(w[2], 2.0 - 2.0 * 0.004 * 0.001, 2e-7, 0);
    ck_assert_close(w[0], 0.5 * (1 - 4e-6) - 0.001 * 0.5 / (0.5 + 1e-7 / sqrt(0.001)), 1e-7, 0);
}
END_TEST

START_TEST(test_learning_rate_change) {
    KC_LOOP_DEVICE(d);
    kc_optimizer_config c = config(KC_OPTIMIZER_SGD);
    run r;
    run_start(&r, d, &c);
    ck_assert_close(kc_optimizer_learning_rate(r.o), 0.01, 0, 0);
    kc_optimizer_set_learning_rate(r.o, 0.5);
    run_step(&r, G[0]);
    float got[N];
    run_weights(&r, got);
    ck_assert_close(got[1], -1.0 + 0.5, 1e-7, 0);
    run_end(&r);
}
END_TEST

/* ---- clipping and weight decay ---- */

/* SGD with lr 0.1 after one step with G[0] under cfg, on every backend
 * (out: the reference's weights; the others must match them); the gradients
 * on the device stay as given. */
static void sgd_once(const kc_optimizer_config *cfg, float *out) {
    run r;
    run_start(&r, kc_test_reference(), cfg);
    run_step(&r, G[0]);
    run_weights(&r, out);
    run_end(&r);
    KC_FOR_EACH_DEVICE(d) {
        run_start(&r, d, cfg);
        run_step(&r, G[0]);
        float got[N], g[N];
        run_weights(&r, got);
        run_grads(&r, g);
        for (int i = 0; i < N; i++)
            ck_assert_msg(g[i] == (float)G[0][i], "the step wrote gradient %d on %s", i, d->name);
        for (int i = 0; i < N; i++)
            ck_assert_msg(same_as_reference(d, got[i], out[i]),
                          "%s and reference differ at %d: %.9g vs %.9g", d->name, i, got[i],
                          out[i]);
        run_end(&r);
    }
}

static kc_optimizer_config sgd(double lr) {
    kc_optimizer_config c = config(KC_OPTIMIZER_SGD);
    c.learning_rate = lr;
    return c;
}

START_TEST(test_clipnorm_by_hand) {
    /* kernel g = (0.5, -1, 0): norm sqrt(1.25) = 1.1180340; bias g = (2, -0.01):
     * norm sqrt(4.0001) = 2.0000250. clipnorm 1 scales each to norm 1. */
    kc_optimizer_config c = sgd(0.1);
    c.clipnorm = 1.0;
    float w[N];
    sgd_once(&c, w);
    ck_assert_close(w[0], 0.5 - 0.1 * 0.5 / 1.1180340, 1e-7, 0);
    ck_assert_close(w[1], -1.0 + 0.1 / 1.1180340, 1e-7, 0);
    ck_assert_close(w[3], -0.1 * 2 / 2.0000250, 1e-8, 0);
    ck_assert_close(w[4], 0.25 + 0.1 * 0.01 / 2.0000250, 1e-8, 0);
    /* a limit above both norms leaves the gradients alone */
    c.clipnorm = 3.0;
    sgd_once(&c, w);
    ck_assert_close(w[0], 0.45, 1e-7, 0);
    ck_assert_close(w[3], -0.2, 1e-8, 0);
    /* the bias alone is clipped at 1.5 */
    c.clipnorm = 1.5;
    sgd_once(&c, w);
    ck_assert_close(w[1], -1.0 + 0.1, 1e-7, 0);
    ck_assert_close(w[3], -0.1 * 2 * 1.5 / 2.0000250, 1e-8, 0);
}
END_TEST

START_TEST(test_global_clipnorm_by_hand) {
    /* joint norm sqrt(1.25 + 4.0001) = 2.2913097: every gradient times 1 / 2.2913097 */
    kc_optimizer_config c = sgd(0.1);
    c.global_clipnorm = 1.0;
    float w[N];
    sgd_once(&c, w);
    for (int i = 0; i < N; i++)
        ck_assert_close(w[i], W0[i] - 0.1 * G[0][i] / 2.2913097, 1e-7, 0);
    /* under the limit: scale c min(1/norm, 1/c) = 1 */
    c.global_clipnorm = 2.5;
    sgd_once(&c, w);
    for (int i = 0; i < N; i++)
        ck_assert_close(w[i], W0[i] - 0.1 * G[0][i], 1e-7, 0);
}
END_TEST

START_TEST(test_clipvalue_by_hand) {
    kc_optimizer_config c = sgd(0.1);
    c.clipvalue = 0.6;
    float w[N];
    sgd_once(&c, w);
    /* g becomes (0.5, -0.6, 0, 0.6, -0.01) */
    ck_assert_close(w[0], 0.45, 1e-7, 0);
    ck_assert_close(w[1], -0.94, 1e-7, 0);
    ck_assert_close(w[2], 2.0, 0, 0);
    ck_assert_close(w[3], -0.06, 1e-8, 0);
    ck_assert_close(w[4], 0.251, 3e-8, 0);
}
END_TEST

START_TEST(test_clipping_non_finite) {
    /* Keras's global clip turns every gradient NaN when the norm is not finite;
     * clipvalue clamps an infinity to the limit. */
    static const double bad[N] = {0.5, INFINITY, 0.0, 2.0, -0.01};
    KC_LOOP_DEVICE(d);
    kc_optimizer_config c = sgd(0.1);
    c.global_clipnorm = 1.0;
    run r;
    run_start(&r, d, &c);
    run_step(&r, bad);
    float w[N];
    run_weights(&r, w);
    for (int i = 0; i < N; i++)
        ck_assert_msg(isnan(w[i]), "w[%d] = %g on %s", i, (double)w[i], d->name);
    run_end(&r);
    c = sgd(0.1);
    c.clipvalue = 0.5;
    run_start(&r, d, &c);
    run_step(&r, bad);
    run_weights(&r, w);
    ck_assert_close(w[1], -1.05, 1e-7, 0);
    run_end(&r);
}
END_TEST

START_TEST(test_clipping_with_each_optimizer) {
    for (int k = KC_OPTIMIZER_SGD; k <= KC_OPTIMIZER_LION; k++) {
        kc_optimizer_config c = config((kc_optimizer_kind)k);
        c.learning_rate = 0.05;
        c.clipnorm = 0.8;
        check_against_rules(&c, 0);
        c.clipnorm = 0;
        c.global_clipnorm = 1.2;
        check_against_rules(&c, 0);
        c.global_clipnorm = 0;
        c.clipvalue = 0.3;
        check_against_rules(&c, 0);
    }
}
END_TEST

START_TEST(test_weight_decay_by_hand) {
    /* w -= w wd lr before the update: SGD lr 0.1, wd 0.5 gives 0.95 w - 0.1 g */
    kc_optimizer_config c = sgd(0.1);
    c.weight_decay = 0.5;
    float w[N];
    sgd_once(&c, w);
    for (int i = 0; i < N; i++)
        ck_assert_close(w[i], 0.95 * W0[i] - 0.1 * G[0][i], 1e-7, 0);
    /* clipping comes first and does not see the decay: clipvalue 0.1 */
    c.clipvalue = 0.1;
    sgd_once(&c, w);
    ck_assert_close(w[1], 0.95 * -1.0 + 0.01, 1e-7, 0);
    ck_assert_close(w[2], 1.9, 1e-7, 0);
    /* every optimizer takes it; Adam with weight_decay is AdamW */
    for (int k = KC_OPTIMIZER_SGD; k <= KC_OPTIMIZER_LION; k++) {
        c = config((kc_optimizer_kind)k);
        c.learning_rate = 0.02;
        c.weight_decay = 0.3;
        check_against_rules(&c, 0);
    }
}
END_TEST

/* ---- schedules ---- */

static kc_optimizer *parse_ok(const char *text);

START_TEST(test_schedule_drives_the_steps) {
    KC_LOOP_DEVICE(d);
    /* ExponentialDecay 0.1 * 0.5^(it / 1): lr 0.1, 0.05, 0.025 at iterations 0, 1, 2;
     * weight decay uses the same scheduled rate. */
    kc_optimizer *o = parse_ok(
        "optimizer:\n  SGD:\n    weight_decay: 0.5\n    learning_rate:\n"
        "      ExponentialDecay: {initial_learning_rate: 0.1, decay_steps: 1, decay_rate: 0.5}\n");
    ck_assert(kc_optimizer_has_schedule(o));
    ck_assert_close(kc_optimizer_learning_rate(o), 0.1, 0, 1e-7); /* float32, as in Keras */
    run r;
    run_start_with(&r, d, o, W0);
    run_step(&r, G[0]);
    ck_assert_close(kc_optimizer_learning_rate(o), 0.05, 0, 1e-7);
    run_step(&r, G[1]);
    ck_assert_close(kc_optimizer_learning_rate(o), 0.025, 0, 1e-7);
    float w[N];
    run_weights(&r, w);
    for (int i = 0; i < N; i++) {
        double w1 = W0[i] - W0[i] * 0.5 * 0.1 - 0.1 * G[0][i];
        double w2 = w1 - w1 * 0.5 * 0.05 - 0.05 * G[1][i];
        ck_assert_close(w[i], w2, 2e-7, 0);
    }
    /* resuming at iteration 10 evaluates the schedule there: 0.1 * 0.5^10 */
    kc_optimizer_set_iterations(o, 10);
    ck_assert_close(kc_optimizer_learning_rate(o), 0.1 / 1024, 0, 1e-7);
    /* without a learning_rate variable Keras counts iteration + slots */
    ck_assert_int_eq(kc_optimizer_variable_count(o), 1);
    ck_assert_int_eq(kc_optimizer_variable_bytes(o), 8);
    /* a float replaces the schedule */
    kc_optimizer_set_learning_rate(o, 0.3);
    ck_assert(!kc_optimizer_has_schedule(o));
    ck_assert_close(kc_optimizer_learning_rate(o), 0.3, 0, 0);
    ck_assert_int_eq(kc_optimizer_variable_count(o), 2);
    run_end(&r);
}
END_TEST

START_TEST(test_schedule_with_adam_and_warmup) {
    KC_LOOP_DEVICE(d);
    /* CosineDecay warming up from 0 to 0.01 over 2 steps: lr 0, 0.005, 0.01, then decay */
    kc_optimizer *o =
        parse_ok("optimizer:\n  class_name: Adam\n  config:\n    learning_rate:\n"
                 "      module: keras.optimizers.schedules\n      class_name: CosineDecay\n"
                 "      config: {initial_learning_rate: 0.0, decay_steps: 4, warmup_target: 0.01,\n"
                 "               warmup_steps: 2, alpha: 0.0, name: CosineDecay}\n"
                 "      registered_name: null\n");
    const double lrs[STEPS] = {0.0, 0.005, 0.01, 0.01 * 0.5 * (1 + cos(M_PI / 4))};
    kc_optimizer_config cfg = *kc_optimizer_get_config(o);
    ref ref;
    ref_init(&cfg, &ref, 0);
    run r;
    run_start_with(&r, d, o, W0);
    for (int s = 0; s < STEPS; s++) {
        ck_assert_close(kc_optimizer_learning_rate(o), lrs[s], 1e-9, 1e-6);
        run_step(&r, G[s]);
        ref_step(&cfg, &ref, G[s], lrs[s], s + 1);
    }
    float w[N];
    run_weights(&r, w);
    for (int i = 0; i < N; i++)
        ck_assert_close(w[i], ref.w[i], tolerance(fabs(W0[i]) + 0.05, W0[i], ref.w[i], STEPS), 0);
    run_end(&r);
}
END_TEST

/* ---- slots ---- */

static void expect_slots(kc_device *d, const kc_optimizer_config *c, const char *const *names,
                         int count, double init) {
    kc_optimizer *o;
    kc_error e = {0};
    ck_assert(kc_optimizer_create(c, &o, &e) == KC_OK);
    ck_assert_msg(kc_optimizer_build(o, d, 2, SIZES, NAMES, &e) == KC_OK, "%s", e.msg);
    ck_assert_int_eq(kc_optimizer_slot_count(o), count);
    size_t elements = 0;
    for (int i = 0; i < count; i++) {
        const char *name;
        kc_buf dev;
        size_t n;
        kc_optimizer_slot(o, i, &name, &dev, &n);
        ck_assert_str_eq(name, names[i]);
        ck_assert_int_eq(n, strstr(name, "kernel") ? NA : N - NA);
        float host[NA];
        kc_test_get(d, host, dev, n * sizeof(float));
        for (size_t j = 0; j < n; j++)
            ck_assert_close(host[j], init, 0, 0);
        elements += n;
    }
    int64_t scalars = 1 + (c->kind == KC_OPTIMIZER_NADAM); /* learning_rate, u_product */
    ck_assert_int_eq(kc_optimizer_variable_count(o), 1 + scalars + (int64_t)elements);
    ck_assert_int_eq(kc_optimizer_variable_bytes(o), 8 + 4 * (scalars + (int64_t)elements));
    kc_optimizer_free(o);
}

START_TEST(test_slot_names_and_order) {
    KC_LOOP_DEVICE(d);
    kc_optimizer_config c = config(KC_OPTIMIZER_SGD);
    expect_slots(d, &c, NULL, 0, 0);
    c.momentum = 0.9;
    const char *const sgd_slots[] = {"optimizer/dense/kernel/momentum",
                                     "optimizer/dense/bias/momentum"};
    expect_slots(d, &c, sgd_slots, 2, 0);
    /* Adam interleaves m and v per variable, then the amsgrad v_hats */
    c = config(KC_OPTIMIZER_ADAM);
    c.amsgrad = 1;
    const char *const adam[] = {
        "optimizer/dense/kernel/momentum",     "optimizer/dense/kernel/velocity",
        "optimizer/dense/bias/momentum",       "optimizer/dense/bias/velocity",
        "optimizer/dense/kernel/velocity_hat", "optimizer/dense/bias/velocity_hat"};
    expect_slots(d, &c, adam, 6, 0);
    c = config(KC_OPTIMIZER_ADAMW);
    expect_slots(d, &c, adam, 4, 0);
    /* RMSprop: every velocity, every momentum, every average gradient */
    c = config(KC_OPTIMIZER_RMSPROP);
    c.momentum = 0.5;
    c.centered = 1;
    const char *const rms[] = {
        "optimizer/dense/kernel/velocity",         "optimizer/dense/bias/velocity",
        "optimizer/dense/kernel/momentum",         "optimizer/dense/bias/momentum",
        "optimizer/dense/kernel/average_gradient", "optimizer/dense/bias/average_gradient"};
    expect_slots(d, &c, rms, 6, 0);
    /* Adagrad's accumulators start at initial_accumulator_value */
    c = config(KC_OPTIMIZER_ADAGRAD);
    const char *const adagrad[] = {"optimizer/dense/kernel/accumulator",
                                   "optimizer/dense/bias/accumulator"};
    expect_slots(d, &c, adagrad, 2, 0.1f);
    c.initial_accumulator_value = 0.75;
    expect_slots(d, &c, adagrad, 2, 0.75);
    c = config(KC_OPTIMIZER_ADADELTA);
    const char *const adadelta[] = {
        "optimizer/dense/kernel/accumulated_grad", "optimizer/dense/kernel/accumulated_delta_var",
        "optimizer/dense/bias/accumulated_grad", "optimizer/dense/bias/accumulated_delta_var"};
    expect_slots(d, &c, adadelta, 4, 0);
    c = config(KC_OPTIMIZER_ADAMAX);
    const char *const adamax[] = {"optimizer/dense/kernel/momentum", "optimizer/dense/kernel/norm",
                                  "optimizer/dense/bias/momentum", "optimizer/dense/bias/norm"};
    expect_slots(d, &c, adamax, 4, 0);
    c = config(KC_OPTIMIZER_NADAM);
    expect_slots(d, &c, adam, 4, 0);
    c = config(KC_OPTIMIZER_LION);
    expect_slots(d, &c, sgd_slots, 2, 0);
}
END_TEST

START_TEST(test_slot_values) {
    /* Adam's m after two steps: 0.1 g2 + 0.09 g1; v: 0.001 g2^2 + 0.000999 g1^2 */
    KC_LOOP_DEVICE(d);
    kc_optimizer_config c = config(KC_OPTIMIZER_ADAM);
    run r;
    run_start(&r, d, &c);
    run_step(&r, G[0]);
    run_step(&r, G[1]);
    const char *name;
    kc_buf dev;
    float m[NA], v[NA];
    size_t n;
    kc_optimizer_slot(r.o, 0, &name, &dev, &n);
    kc_test_get(d, m, dev, sizeof m);
    kc_optimizer_slot(r.o, 1, &name, &dev, &n);
    kc_test_get(d, v, dev, sizeof v);
    for (int i = 0; i < NA; i++) {
        ck_assert_close(m[i], 0.1 * G[1][i] + 0.09 * G[0][i], 1e-7, 1e-6);
        ck_assert_close(v[i], 0.001 * G[1][i] * G[1][i] + 0.000999 * G[0][i] * G[0][i], 1e-10,
                        1e-6);
    }
    run_end(&r);
    /* Adamax's norm after two steps: max(0.999 |g1|, |g2|) */
    c = config(KC_OPTIMIZER_ADAMAX);
    run_start(&r, d, &c);
    run_step(&r, G[0]);
    run_step(&r, G[1]);
    kc_optimizer_slot(r.o, 1, &name, &dev, &n);
    ck_assert_str_eq(name, "optimizer/dense/kernel/norm");
    kc_test_get(d, v, dev, sizeof v);
    ck_assert_close(v[0], 0.4995, 1e-7, 0);
    ck_assert_close(v[1], 0.999, 1e-7, 0);
    ck_assert_close(v[2], 0.3, 1e-7, 0);
    run_end(&r);
}
END_TEST

START_TEST(test_variable_count_matches_keras_summary) {
    KC_LOOP_DEVICE(d);
    /* KERAS.md 1.2: the MNIST CNN after Adam training has 243,862 optimizer
     * variables taking 975,452 bytes (TensorFlow: int64 iteration) */
    const size_t sizes[] = {288, 32, 18432, 64, 102400, 64, 640, 10};
    const char *const names[] = {"conv2d/kernel", "conv2d/bias", "conv2d_1/kernel", "conv2d_1/bias",
                                 "dense/kernel",  "dense/bias",  "dense_1/kernel",  "dense_1/bias"};
    kc_optimizer_config c = config(KC_OPTIMIZER_ADAM);
    kc_optimizer *o;
    kc_error e = {0};
    ck_assert(kc_optimizer_create(&c, &o, &e) == KC_OK);
    ck_assert(kc_optimizer_build(o, d, 8, sizes, names, &e) == KC_OK);
    ck_assert_int_eq(kc_optimizer_variable_count(o), 243862);
    ck_assert_int_eq(kc_optimizer_variable_bytes(o), 975452);
    /* rebuilding replaces the slots */
    ck_assert(kc_optimizer_build(o, d, 2, sizes, names, &e) == KC_OK);
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

static kc_optimizer *parse_ok(const char *text) {
    kc_optimizer *o;
    kc_error e = {0};
    ck_assert_msg(parse_opt(text, &o, &e) == KC_OK, "%s", e.msg);
    return o;
}

static kc_optimizer_config parsed(const char *text) {
    kc_optimizer *o = parse_ok(text);
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
    ck_assert(!kc_optimizer_has_schedule(o));
    kc_optimizer_free(o);

    kc_optimizer_config a = parsed("optimizer: adam\n");
    ck_assert_int_eq(a.kind, KC_OPTIMIZER_ADAM);
    ck_assert_close(a.learning_rate, 0.001, 0, 0);
    ck_assert_close(a.beta_1, 0.9, 0, 0);
    ck_assert_close(a.beta_2, 0.999, 0, 0);
    ck_assert_close(a.epsilon, 1e-7, 0, 0);
    ck_assert_int_eq(a.amsgrad, 0);
    ck_assert_close(a.weight_decay + a.clipnorm + a.clipvalue + a.global_clipnorm, 0, 0, 0);
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

START_TEST(test_parse_new_defaults) {
    kc_optimizer_config c = parsed("optimizer: adamw\n");
    ck_assert_int_eq(c.kind, KC_OPTIMIZER_ADAMW);
    ck_assert_str_eq(c.name, "adamw");
    ck_assert_close(c.learning_rate, 0.001, 0, 0);
    ck_assert_close(c.weight_decay, 0.004, 0, 0);
    ck_assert_close(c.beta_1, 0.9, 0, 0);
    ck_assert_close(c.beta_2, 0.999, 0, 0);
    ck_assert_close(c.epsilon, 1e-7, 0, 0);
    ck_assert_int_eq(c.amsgrad, 0);
    c = parsed("optimizer: Adagrad\n");
    ck_assert_int_eq(c.kind, KC_OPTIMIZER_ADAGRAD);
    ck_assert_str_eq(c.name, "adagrad");
    ck_assert_close(c.learning_rate, 0.001, 0, 0);
    ck_assert_close(c.initial_accumulator_value, 0.1, 0, 0);
    ck_assert_close(c.epsilon, 1e-7, 0, 0);
    c = parsed("optimizer: adadelta\n");
    ck_assert_int_eq(c.kind, KC_OPTIMIZER_ADADELTA);
    ck_assert_str_eq(c.name, "adadelta");
    ck_assert_close(c.learning_rate, 0.001, 0, 0);
    ck_assert_close(c.rho, 0.95, 0, 0);
    ck_assert_close(c.epsilon, 1e-7, 0, 0);
    c = parsed("optimizer: Adamax\n");
    ck_assert_int_eq(c.kind, KC_OPTIMIZER_ADAMAX);
    ck_assert_str_eq(c.name, "adamax");
    ck_assert_close(c.beta_1, 0.9, 0, 0);
    ck_assert_close(c.beta_2, 0.999, 0, 0);
    c = parsed("optimizer: nadam\n");
    ck_assert_int_eq(c.kind, KC_OPTIMIZER_NADAM);
    ck_assert_str_eq(c.name, "nadam");
    ck_assert_close(c.learning_rate, 0.001, 0, 0);
    ck_assert_close(c.beta_2, 0.999, 0, 0);
    c = parsed("optimizer: Lion\n");
    ck_assert_int_eq(c.kind, KC_OPTIMIZER_LION);
    ck_assert_str_eq(c.name, "lion");
    ck_assert_close(c.learning_rate, 0.001, 0, 0);
    ck_assert_close(c.beta_1, 0.9, 0, 0);
    ck_assert_close(c.beta_2, 0.99, 0, 0);
    ck_assert_close(c.weight_decay, 0, 0, 0);
    kc_optimizer *o = parse_ok("optimizer: lion\n");
    ck_assert_str_eq(kc_optimizer_name(o), "Lion");
    kc_optimizer_free(o);
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
    c = parsed("optimizer: {AdamW: {weight_decay: 0.01, amsgrad: true, clipnorm: 1.0}}\n");
    ck_assert_close(c.weight_decay, 0.01, 0, 0);
    ck_assert_close(c.clipnorm, 1.0, 0, 0);
    ck_assert_int_eq(c.amsgrad, 1);
    c = parsed("optimizer: {Adagrad: {initial_accumulator_value: 0.5, epsilon: 1e-5}}\n");
    ck_assert_close(c.initial_accumulator_value, 0.5, 0, 0);
    ck_assert_close(c.epsilon, 1e-5, 0, 0);
    c = parsed("optimizer: {Adadelta: {learning_rate: 1.0, rho: 0.9, global_clipnorm: 5}}\n");
    ck_assert_close(c.learning_rate, 1.0, 0, 0);
    ck_assert_close(c.rho, 0.9, 0, 0);
    ck_assert_close(c.global_clipnorm, 5, 0, 0);
    c = parsed("optimizer: {Adamax: {beta_2: 1.0, clipvalue: 0.5, weight_decay: 0.1}}\n");
    ck_assert_close(c.beta_2, 1.0, 0, 0);
    ck_assert_close(c.clipvalue, 0.5, 0, 0);
    ck_assert_close(c.weight_decay, 0.1, 0, 0);
    c = parsed("optimizer: {Lion: {learning_rate: 0.0001, beta_1: 0.95, beta_2: 0.98}}\n");
    ck_assert_close(c.beta_1, 0.95, 0, 0);
    ck_assert_close(c.beta_2, 0.98, 0, 0);
    /* Keras's serialized form, with the generic arguments at their inert values */
    c = parsed(
        "optimizer:\n  module: keras.optimizers\n  class_name: Adam\n  registered_name: null\n"
        "  config: {name: adam, learning_rate: 0.002, weight_decay: null, clipnorm: null,\n"
        "           clipvalue: null, global_clipnorm: null, use_ema: false,\n"
        "           ema_momentum: 0.99, ema_overwrite_frequency: null,\n"
        "           loss_scale_factor: null, gradient_accumulation_steps: null,\n"
        "           beta_1: 0.9, beta_2: 0.999, epsilon: 1.0e-07, amsgrad: false}\n");
    ck_assert_close(c.learning_rate, 0.002, 0, 0);
    /* Keras lets one clip be 0 beside nulls: clipping off */
    c = parsed("optimizer: {SGD: {clipnorm: 0, clipvalue: null}}\n");
    ck_assert_close(c.clipnorm + c.clipvalue, 0, 0, 0);
    /* a schedule as the learning rate */
    c = parsed("optimizer:\n  SGD:\n    learning_rate:\n      PiecewiseConstantDecay:\n"
               "        boundaries: [100, 200]\n        values: [0.1, 0.01, 0.001]\n");
    ck_assert_int_eq(c.schedule.kind, KC_SCHEDULE_PIECEWISE_CONSTANT_DECAY);
    ck_assert_int_eq(c.schedule.nboundaries, 2);
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
    expect_error("optimizer: adamm\n", "opt.yaml:1:12: unknown optimizer 'adamm' (did you mean");
    expect_error("optimizer: {SGD: {clipnorm: 1.0, clipvalue: 0.5}}\n",
                 "opt.yaml:1:45: SGD: only one of 'clipnorm', 'clipvalue' and 'global_clipnorm' "
                 "can be set, got 'clipnorm' and 'clipvalue'");
    expect_error("optimizer: {Adam: {clipnorm: 0, global_clipnorm: 1}}\n",
                 "got 'clipnorm' and 'global_clipnorm'");
    expect_error("optimizer: {SGD: {clipnorm: -1.0}}\n",
                 "opt.yaml:1:29: SGD argument 'clipnorm' must be >= 0, got -1");
    expect_error("optimizer: {SGD: {clipvalue: abc}}\n",
                 "opt.yaml:1:30: SGD argument 'clipvalue': expected a number");
    expect_error("optimizer: {Adam: {weight_decay: -0.1}}\n",
                 "opt.yaml:1:34: Adam argument 'weight_decay' must be >= 0");
    expect_error("optimizer: {AdamW: {weight_decay: null}}\n",
                 "opt.yaml:1:35: AdamW argument 'weight_decay' must be a number, got null");
    expect_error("optimizer: {Adam: {use_ema: true}}\n", "'use_ema' is not supported");
    expect_error("optimizer: {Adam: {loss_scale_factor: 128}}\n",
                 "opt.yaml:1:39: Adam argument 'loss_scale_factor' is not supported");
    expect_error("optimizer: {Adam: {gradient_accumulation_steps: 4}}\n",
                 "'gradient_accumulation_steps' is not supported");
    expect_error("optimizer: {Adam: {lr: 0.1}}\n",
                 "opt.yaml:1:24: Adam argument 'lr' is no longer");
    expect_error("optimizer: {Adam: {learning_rat: 0.1}}\n",
                 "opt.yaml:1:20: unknown key 'learning_rat' in the arguments of Adam (did you "
                 "mean 'learning_rate'?)");
    expect_error("optimizer: {SGD: {learning_rate: 0}}\n",
                 "opt.yaml:1:34: SGD argument 'learning_rate' must be > 0, got 0");
    expect_error("optimizer: {SGD: {learning_rate: -1}}\n", "must be >= 0");
    expect_error("optimizer: {SGD: {learning_rate: [0.1]}}\n", "expected a number");
    expect_error("optimizer: {SGD: {momentum: 1.5}}\n",
                 "SGD argument 'momentum' must be in [0, 1], got 1.5");
    expect_error("optimizer: {Adam: {beta_1: 1.0}}\n",
                 "opt.yaml:1:28: Adam argument 'beta_1' must be in [0, 1), got 1");
    expect_error("optimizer: {Adam: {beta_2: -0.1}}\n", "Adam argument 'beta_2'");
    expect_error("optimizer: {Nadam: {beta_2: 1.0}}\n",
                 "Nadam argument 'beta_2' must be in [0, 1)");
    expect_error("optimizer: {Adamax: {beta_2: 1.5}}\n",
                 "Adamax argument 'beta_2' must be in [0, 1]");
    expect_error("optimizer: {Lion: {beta_1: 0}}\n",
                 "opt.yaml:1:28: Lion argument 'beta_1' must be in (0, 1]");
    expect_error("optimizer: {Lion: {beta_1: 1.1}}\n", "Lion argument 'beta_1' must be in [0, 1]");
    expect_error("optimizer: {Lion: {epsilon: 1e-7}}\n",
                 "unknown key 'epsilon' in the arguments of Lion");
    expect_error("optimizer: {Adagrad: {initial_accumulator_value: -0.1}}\n",
                 "Adagrad argument 'initial_accumulator_value' must be >= 0");
    expect_error("optimizer: {Adadelta: {rho: 1.5}}\n",
                 "Adadelta argument 'rho' must be in [0, 1]");
    expect_error("optimizer: {Adadelta: {beta_1: 0.9}}\n", "unknown key 'beta_1'");
    expect_error("optimizer: {RMSprop: {epsilon: -1e-7}}\n", "RMSprop argument 'epsilon'");
    expect_error("optimizer: {RMSprop: {rho: 2}}\n", "RMSprop argument 'rho'");
    expect_error("optimizer: {RMSprop: {nesterov: true}}\n", "unknown key 'nesterov'");
    expect_error("optimizer: {SGD: {beta_1: 0.9}}\n", "unknown key 'beta_1'");
    expect_error("optimizer: {SGD: {nesterov: perhaps}}\n", "opt.yaml:1:29:");
    expect_error("optimizer: [adam]\n", "got a list");
    /* schedule errors point into the schedule */
    expect_error(
        "optimizer:\n  SGD:\n    learning_rate: {ExponentialDecay: {initial_learning_rate: "
        "0.1, decay_steps: 0, decay_rate: 0.9}}\n",
        "opt.yaml:3:81: ExponentialDecay argument 'decay_steps' must be > 0, got 0");
    expect_error("optimizer:\n  SGD:\n    learning_rate: {ExponentialDecy: {}}\n",
                 "opt.yaml:3:21: unknown learning rate schedule 'ExponentialDecy' (did you mean "
                 "'ExponentialDecay'?)");
    /* kc_optimizer_create checks ranges too */
    kc_optimizer_config c = config(KC_OPTIMIZER_ADAM);
    c.beta_2 = 1.0;
    kc_optimizer *o = NULL;
    kc_error e = {0};
    ck_assert_int_eq(kc_optimizer_create(&c, &o, &e), KC_ECONFIG);
    ck_assert(o == NULL);
    ck_assert_msg(strstr(e.msg, "beta_2 must be in [0, 1)"), "%s", e.msg);
    c = config(KC_OPTIMIZER_SGD);
    c.clipnorm = 1;
    c.clipvalue = 1;
    ck_assert_int_eq(kc_optimizer_create(&c, &o, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "only one of clipnorm"), "%s", e.msg);
    c = config(KC_OPTIMIZER_SGD);
    kc_schedule_default(KC_SCHEDULE_EXPONENTIAL_DECAY, &c.schedule);
    c.schedule.initial_learning_rate = 0.1;
    ck_assert_int_eq(kc_optimizer_create(&c, &o, &e), KC_ECONFIG); /* decay_steps 0 */
    ck_assert_msg(strstr(e.msg, "decay_steps must be > 0"), "%s", e.msg);
}
END_TEST

int main(void) {
    Suite *s = suite_create("optimizers");
    TCase *tc = tcase_create("optimizers");
    tcase_set_timeout(tc, 120);
    int nb = kc_test_backend_count();
    tcase_add_test(tc, test_sgd_variants);
    tcase_add_loop_test(tc, test_sgd_first_steps_by_hand, 0, nb);
    tcase_add_test(tc, test_rmsprop_variants);
    tcase_add_loop_test(tc, test_rmsprop_first_step_by_hand, 0, nb);
    tcase_add_test(tc, test_adam_variants);
    tcase_add_test(tc, test_adam_first_step_moves_lr);
    tcase_add_test(tc, test_adamw_variants);
    tcase_add_test(tc, test_adagrad_variants);
    tcase_add_test(tc, test_adadelta_variants);
    tcase_add_test(tc, test_adamax_variants);
    tcase_add_test(tc, test_nadam_variants);
    tcase_add_test(tc, test_lion_variants);
    tcase_add_loop_test(tc, test_first_steps_by_hand, 0, nb);
    tcase_add_loop_test(tc, test_learning_rate_change, 0, nb);
    tcase_add_test(tc, test_clipnorm_by_hand);
    tcase_add_test(tc, test_global_clipnorm_by_hand);
    tcase_add_test(tc, test_clipvalue_by_hand);
    tcase_add_loop_test(tc, test_clipping_non_finite, 0, nb);
    tcase_add_test(tc, test_clipping_with_each_optimizer);
    tcase_add_test(tc, test_weight_decay_by_hand);
    tcase_add_loop_test(tc, test_schedule_drives_the_steps, 0, nb);
    tcase_add_loop_test(tc, test_schedule_with_adam_and_warmup, 0, nb);
    tcase_add_loop_test(tc, test_slot_names_and_order, 0, nb);
    tcase_add_loop_test(tc, test_slot_values, 0, nb);
    tcase_add_loop_test(tc, test_variable_count_matches_keras_summary, 0, nb);
    tcase_add_test(tc, test_parse_defaults);
    tcase_add_test(tc, test_parse_new_defaults);
    tcase_add_test(tc, test_parse_arguments);
    tcase_add_test(tc, test_parse_errors);
    suite_add_tcase(s, tc);
    return kc_test_run(s);
}

/* Regularizers and constraints: every accepted spelling and its Keras
 * defaults, errors with file:line:column, the penalties and projections
 * against Keras's documented numbers and hand-computed values, gradients
 * against central finite differences, on every backend of the registry that
 * opens here (tests/devices.h). */
#include "models/regularizers.h"
#include "tests/devices.h"
#include "tests/testutil.h"

#include "core/rng.h"
#include "models/layer.h"
#include "models/yaml.h"

/* ---- parsing helpers ---- */

static int parse_reg(const char *text, kc_regularizer *r, kc_error *e) {
    kc_doc *d;
    memset(e, 0, sizeof *e);
    int rc = kc_doc_parse(&d, "reg.yaml", text, strlen(text), e);
    if (rc) return rc;
    rc = kc_regularizer_parse(kc_map_get(d->root, "r"), "", r, e);
    kc_doc_free(d);
    return rc;
}

static kc_regularizer reg_ok(const char *text) {
    kc_regularizer r;
    kc_error e;
    ck_assert_msg(parse_reg(text, &r, &e) == KC_OK, "%s: %s", text, e.msg);
    return r;
}

static void reg_error(const char *text, const char *needle) {
    kc_regularizer r;
    kc_error e;
    ck_assert_int_eq(parse_reg(text, &r, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, needle), "'%s' lacks '%s'", e.msg, needle);
}

/* Parses `c:` and, when shape is given, checks the axes against it. */
static int parse_con(const char *text, const kc_shape *shape, kc_constraint *c, kc_error *e) {
    kc_doc *d;
    memset(e, 0, sizeof *e);
    int rc = kc_doc_parse(&d, "con.yaml", text, strlen(text), e);
    if (rc) return rc;
    rc = kc_constraint_parse(kc_map_get(d->root, "c"), "", c, e);
    if (!rc && shape) rc = kc_constraint_check(c, shape, "w", e);
    c->node = NULL; /* the document is gone */
    kc_doc_free(d);
    return rc;
}

static kc_constraint con_ok(const char *text) {
    kc_constraint c;
    kc_error e;
    ck_assert_msg(parse_con(text, NULL, &c, &e) == KC_OK, "%s: %s", text, e.msg);
    return c;
}

static void con_error(const char *text, const kc_shape *shape, const char *needle) {
    kc_constraint c;
    kc_error e;
    ck_assert_int_eq(parse_con(text, shape, &c, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, needle), "'%s' lacks '%s'", e.msg, needle);
}

/* ---- regularizer parsing ---- */

START_TEST(test_regularizer_names) {
    static const struct {
        const char *yaml;
        double l1, l2;
    } cases[] = {
        {"r: l1\n", 0.01, 0},
        {"r: L1\n", 0.01, 0},
        {"r: l2\n", 0, 0.01},
        {"r: L2\n", 0, 0.01},
        {"r: l1_l2\n", 0.01, 0.01}, /* Keras's documented factors for this name */
        {"r: l1l2\n", 0, 0},        /* Keras 3: L1L2() */
        {"r: L1L2\n", 0, 0},
        {"r: Regularizer\n", 0, 0},
        {"r: {L1: {l1: 0.001}}\n", 0.001, 0},
        {"r: {L2: null}\n", 0, 0.01},
        {"r: {l2: {l2: 0.5}}\n", 0, 0.5},
        {"r: {L1L2: {l2: 0.1}}\n", 0, 0.1}, /* L1L2's own defaults are 0 */
        {"r: {l1_l2: {l1: 0.2}}\n", 0.2, 0.01},
        {"r: {class_name: L1L2, config: {l1: 0.003, l2: 0.004}}\n", 0.003, 0.004},
        {"r: {module: keras.regularizers, class_name: L2, config: {l2: 0.25}, registered_name: "
         "null}\n",
         0, 0.25},
        {"r: {class_name: L2, l2: 0.1}\n", 0, 0.1},
        {"r: {L1: {l1: null}}\n", 0.01, 0}, /* None means the default, as in Keras */
        {"r: {L1: {l1: 0}}\n", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kc_regularizer r = reg_ok(cases[i].yaml);
        ck_assert_msg(fabs(r.l1 - cases[i].l1) < 1e-15 && fabs(r.l2 - cases[i].l2) < 1e-15,
                      "%s: l1 %g l2 %g", cases[i].yaml, r.l1, r.l2);
    }
    char buf[80];
    kc_regularizer both = reg_ok("r: l1_l2\n"), none = reg_ok("r: l1l2\n");
    ck_assert_str_eq(kc_regularizer_str(&both, buf, sizeof buf), "L1L2(l1=0.01, l2=0.01)");
    ck_assert_str_eq(kc_regularizer_str(&none, buf, sizeof buf), "None");
    ck_assert(!kc_regularizer_active(&none));
    ck_assert(kc_regularizer_active(&both));
}
END_TEST

START_TEST(test_regularizer_errors) {
    reg_error("r: l3\n", "reg.yaml:1:4: unknown regularizer 'l3' (did you mean 'l1'?)");
    reg_error("r: elastic\n", "unknown regularizer 'elastic' (valid: l1, l2, l1_l2");
    reg_error("r: {L1: {l1: -0.1}}\n", "reg.yaml:1:14: L1 argument 'l1' must be >= 0, got -0.1");
    reg_error("r: {L2: {l2: .inf}}\n", "L2 argument 'l2' must be a finite number");
    reg_error("r: {L2: {l1: 0.1}}\n", "reg.yaml:1:10: unknown key 'l1'");
    reg_error("r: {L1: {l1: lots}}\n", "expected a number");
    reg_error("r: OrthogonalRegularizer\n", "not supported");
    reg_error("r: [l2]\n", "reg.yaml:1:4: expected a regularizer name");
    reg_error("r: {L1: 3}\n", "must be a mapping");
    reg_error("r: {class_name: L1, config: {l1: 0.1}, extra: 1}\n", "unknown key 'extra'");
    reg_error("r: l1_L2\n", "unknown regularizer 'l1_L2'"); /* names are case-sensitive */
}
END_TEST

/* ---- constraint parsing ---- */

START_TEST(test_constraint_names) {
    kc_constraint c = con_ok("c: max_norm\n");
    ck_assert_int_eq(c.kind, KC_CONSTRAINT_MAX_NORM);
    ck_assert_close(c.max_value, 2.0, 0, 0);
    ck_assert_int_eq(c.naxes, 1);
    ck_assert_int_eq(c.axes[0], 0);
    c = con_ok("c: MinMaxNorm\n");
    ck_assert_int_eq(c.kind, KC_CONSTRAINT_MIN_MAX_NORM);
    ck_assert_close(c.min_value, 0.0, 0, 0);
    ck_assert_close(c.max_value, 1.0, 0, 0);
    ck_assert_close(c.rate, 1.0, 0, 0);
    ck_assert_int_eq(con_ok("c: non_neg\n").kind, KC_CONSTRAINT_NON_NEG);
    ck_assert_int_eq(con_ok("c: NonNeg\n").kind, KC_CONSTRAINT_NON_NEG);
    ck_assert_int_eq(con_ok("c: nonneg\n").kind, KC_CONSTRAINT_NON_NEG); /* Keras 2 alias */
    ck_assert_int_eq(con_ok("c: unit_norm\n").kind, KC_CONSTRAINT_UNIT_NORM);
    ck_assert_int_eq(con_ok("c: UnitNorm\n").kind, KC_CONSTRAINT_UNIT_NORM);
    ck_assert_int_eq(con_ok("c: maxnorm\n").kind, KC_CONSTRAINT_MAX_NORM);
    ck_assert_int_eq(con_ok("c: Constraint\n").kind, KC_CONSTRAINT_NONE);

    c = con_ok("c: {MaxNorm: {max_value: 3, axis: [0, 1, 2]}}\n");
    ck_assert_close(c.max_value, 3.0, 0, 0);
    ck_assert_int_eq(c.naxes, 3);
    ck_assert_int_eq(c.axes[2], 2);
    c = con_ok("c: {class_name: MinMaxNorm, config: {min_value: 0.5, max_value: 2.0, rate: 0.7, "
               "axis: 1}}\n");
    ck_assert_close(c.min_value, 0.5, 0, 0);
    ck_assert_close(c.max_value, 2.0, 0, 0);
    ck_assert_close(c.rate, 0.7, 0, 0);
    ck_assert_int_eq(c.axes[0], 1);
    c = con_ok("c: {UnitNorm: {axis: null}}\n");
    ck_assert(c.all_axes);
    c = con_ok("c: {unit_norm: {axis: -1}}\n");
    ck_assert_int_eq(c.axes[0], -1);
    char buf[120];
    c = con_ok("c: {MaxNorm: {max_value: 3, axis: [0, 1, 2]}}\n");
    ck_assert_str_eq(kc_constraint_str(&c, buf, sizeof buf),
                     "MaxNorm(max_value=3, axis=[0, 1, 2])");
    c = con_ok("c: min_max_norm\n");
    ck_assert_str_eq(kc_constraint_str(&c, buf, sizeof buf),
                     "MinMaxNorm(min_value=0, max_value=1, rate=1, axis=0)");
}
END_TEST

START_TEST(test_constraint_errors) {
    con_error("c: max_nrom\n", NULL,
              "con.yaml:1:4: unknown constraint 'max_nrom' (did you mean "
              "'max_norm'?)");
    con_error("c: {MaxNorm: {max_value: -1}}\n", NULL, "MaxNorm argument 'max_value' must be >= 0");
    con_error("c: {MinMaxNorm: {min_value: 2, max_value: 1}}\n", NULL,
              "max_value (1) must not be smaller than min_value (2)");
    con_error("c: {MinMaxNorm: {rate: 1.5}}\n", NULL, "'rate' must be in [0, 1], got 1.5");
    con_error("c: {NonNeg: {axis: 0}}\n", NULL, "con.yaml:1:14: unknown key 'axis'");
    con_error("c: {UnitNorm: {axis: first}}\n", NULL,
              "con.yaml:1:22: UnitNorm argument 'axis': expected an axis");
    con_error("c: {UnitNorm: {axis: [0, x]}}\n", NULL, "con.yaml:1:26:");
    con_error("c: {UnitNorm: {axis: {a: 1}}}\n", NULL, "expected an axis");
    kc_shape dense = kc_shape2(3, 4);
    con_error("c: {MaxNorm: {axis: 2}}\n", &dense,
              "w: axis 2 is out of range for a weight of shape (3, 4) (valid axes: -2 to 1)");
    con_error("c: {MaxNorm: {axis: -3}}\n", &dense, "axis -3 is out of range");
    con_error("c: {MaxNorm: {axis: [0, -2]}}\n", &dense, "axis -2 is given twice");
    kc_constraint c;
    kc_error e;
    ck_assert_int_eq(parse_con("c: {MaxNorm: {axis: [-1, 0]}}\n", &dense, &c, &e), KC_OK);
    ck_assert_int_eq(parse_con("c: {NonNeg: null}\n", &dense, &c, &e), KC_OK);
}
END_TEST

/* ---- layers read them ---- */

typedef struct built {
    kc_doc *doc;
    kc_layer *l;
} built;

static int build_layer(built *b, const char *cls, const char *yaml, kc_shape in, kc_error *e) {
    memset(b, 0, sizeof *b);
    memset(e, 0, sizeof *e);
    int rc = kc_doc_parse(&b->doc, "layer.yaml", yaml, strlen(yaml), e);
    ck_assert_msg(rc == 0, "%s", e->msg);
    const kc_layer_class *c = kc_layer_class_find(cls);
    kc_args a;
    kc_args_init(&a, b->doc->root, b->doc->root, c->class_name);
    rc = kc_layer_create(c, &a, b->doc->root, &b->l, e);
    if (!rc) rc = kc_args_finish(&a, e);
    if (!rc) rc = kc_layer_build(b->l, &in, e);
    return rc;
}

static void built_free(built *b) {
    kc_layer_free(b->l);
    kc_doc_free(b->doc);
}

START_TEST(test_layers_read_them) {
    built b;
    kc_error e;
    ck_assert_msg(build_layer(&b, "Dense",
                              "units: 4\nkernel_regularizer: {L1L2: {l1: 0.1, l2: 0.2}}\n"
                              "bias_regularizer: l2\nactivity_regularizer: l1\n"
                              "kernel_constraint: max_norm\nbias_constraint: non_neg\n",
                              kc_shape1(3), &e) == KC_OK,
                  "%s", e.msg);
    kc_layer *l = b.l;
    ck_assert_close(l->params[0].regularizer.l1, 0.1, 0, 0);
    ck_assert_close(l->params[0].regularizer.l2, 0.2, 0, 0);
    ck_assert_close(l->params[1].regularizer.l2, 0.01, 0, 0);
    ck_assert_close(l->activity_regularizer.l1, 0.01, 0, 0);
    ck_assert_int_eq(l->params[0].constraint.kind, KC_CONSTRAINT_MAX_NORM);
    ck_assert_int_eq(l->params[1].constraint.kind, KC_CONSTRAINT_NON_NEG);
    built_free(&b);

    ck_assert_msg(build_layer(&b, "Conv2D",
                              "filters: 2\nkernel_size: 3\n"
                              "kernel_constraint: {MaxNorm: {max_value: 1, axis: [0, 1, 2]}}\n"
                              "bias_regularizer: {class_name: L2, config: {l2: 0.5}}\n",
                              kc_shape3(5, 5, 3), &e) == KC_OK,
                  "%s", e.msg);
    ck_assert_int_eq(b.l->params[0].constraint.naxes, 3);
    ck_assert_close(b.l->params[1].regularizer.l2, 0.5, 0, 0);
    ck_assert_int_eq(b.l->params[0].regularizer.l1 == 0 && b.l->params[0].regularizer.l2 == 0, 1);
    built_free(&b);

    /* every layer takes an activity regularizer */
    ck_assert_msg(build_layer(&b, "Flatten", "activity_regularizer: {L2: {l2: 0.3}}\n",
                              kc_shape2(2, 2), &e) == KC_OK,
                  "%s", e.msg);
    ck_assert_close(b.l->activity_regularizer.l2, 0.3, 0, 0);
    built_free(&b);

    /* the kernel of a Conv2D has 4 axes: axis 3 is fine there, axis 4 is not */
    ck_assert_int_eq(build_layer(&b, "Conv2D",
                                 "filters: 2\nkernel_size: 3\n"
                                 "kernel_constraint: {UnitNorm: {axis: [0, 4]}}\n",
                                 kc_shape3(5, 5, 3), &e),
                     KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "layer.yaml:3:38: layer 'conv2d' kernel_constraint: axis 4 is out "
                                "of range for a weight of shape (3, 3, 3, 2)"),
                  "%s", e.msg);
    built_free(&b);
}
END_TEST

/* ---- penalties ---- */

/* A param over device memory of device be holding `vals`. */
typedef struct dev_param {
    kc_param p;
    kc_device *be;
} dev_param;

static void dp_init(dev_param *d, kc_device *be, kc_shape shape, const float *vals, int with_grad) {
    memset(d, 0, sizeof *d);
    d->be = be;
    d->p.name = "kernel";
    d->p.shape = shape;
    d->p.trainable = 1;
    size_t n = (size_t)kc_shape_numel(&shape);
    d->p.value = kc_test_from(be, vals, n);
    if (with_grad) d->p.grad = kc_test_alloc(be, n * sizeof(float));
}

static void dp_get(const dev_param *d, float *vals, int grad) {
    size_t n = (size_t)kc_shape_numel(&d->p.shape);
    kc_test_get(d->be, vals, grad ? d->p.grad : d->p.value, n * sizeof(float));
}

static void dp_free(dev_param *d) {
    kc_free(d->be, &d->p.value);
    kc_free(d->be, &d->p.grad);
}

/* The weight penalty of ps[0..n), added to a device double that starts at `start`. */
static double penalty_from(kc_device *be, kc_param **ps, int n, int add_grads, double start) {
    kc_buf acc = kc_test_alloc(be, sizeof(double));
    kc_test_put_double(be, acc, start);
    int rc = kc_regularization_apply(be, ps, n, add_grads, acc);
    ck_assert_msg(rc == KC_OK, "regularization on %s: %s", be->name, be->err.msg);
    double v = kc_test_get_double(be, acc);
    kc_free(be, &acc);
    return v;
}

static double penalty(kc_device *be, kc_param **ps, int n, int add_grads) {
    return penalty_from(be, ps, n, add_grads, 0.0);
}

/* The activity penalty of numel values at y, as penalty_from. */
static double activity(kc_device *be, const kc_regularizer *r, kc_buf y, kc_buf dy, size_t numel,
                       int batch) {
    kc_buf acc = kc_test_alloc(be, sizeof(double));
    int rc = kc_activity_penalty(be, r, y, dy, numel, batch, acc);
    ck_assert_msg(rc == KC_OK, "activity penalty on %s: %s", be->name, be->err.msg);
    double v = kc_test_get_double(be, acc);
    kc_free(be, &acc);
    return v;
}

START_TEST(test_keras_penalty_examples) {
    KC_FOR_EACH_DEVICE(be) {
        /* keras.regularizers docstring: L2(2.)(ones((5, 5))) == 50 */
        float ones[25];
        for (int i = 0; i < 25; i++)
            ones[i] = 1.0f;
        dev_param d;
        dp_init(&d, be, kc_shape2(5, 5), ones, 0);
        d.p.regularizer = reg_ok("r: {L2: {l2: 2.0}}\n");
        kc_param *ps[] = {&d.p};
        ck_assert_close(penalty(be, ps, 1, 0), 50.0, 1e-9, 0);
        /* it adds to what the accumulator holds */
        ck_assert_close(penalty_from(be, ps, 1, 0, 0.5), 50.5, 1e-9, 0);
        /* Dense(5, kernel_initializer='ones', kernel_regularizer=L1(0.01),
         * activity_regularizer=L2(0.01)) on ones((5, 5)) * 2: 0.25 + 5.0 */
        d.p.regularizer = reg_ok("r: {L1: {l1: 0.01}}\n");
        double kernel = penalty(be, ps, 1, 0);
        ck_assert_close(kernel, 0.25, 1e-8, 0);
        float out[25];
        for (int i = 0; i < 25; i++)
            out[i] = 10.0f; /* each unit sums five inputs of 2 */
        kc_buf dy = kc_test_from(be, out, 25);
        kc_regularizer act = reg_ok("r: {L2: {l2: 0.01}}\n");
        double a = activity(be, &act, dy, KC_BUF_NULL, 25, 5);
        ck_assert_close(a, 5.0, 1e-6, 0);
        ck_assert_close(kernel + a, 5.25, 1e-6, 0);
        kc_free(be, &dy);
        dp_free(&d);
    }
}
END_TEST

START_TEST(test_penalty_sums_and_skips) {
    KC_FOR_EACH_DEVICE(be) {
        const float w1[] = {1, -2, 3, -4}, w2[] = {0.5f, -0.5f};
        dev_param a, c, frozen, plain;
        dp_init(&a, be, kc_shape2(2, 2), w1, 1);
        dp_init(&c, be, kc_shape1(2), w2, 1);
        dp_init(&frozen, be, kc_shape1(2), w2, 1);
        dp_init(&plain, be, kc_shape1(2), w2, 1);
        a.p.regularizer = reg_ok("r: {L1L2: {l1: 0.1, l2: 0.01}}\n");
        c.p.regularizer = reg_ok("r: l2\n");
        frozen.p.regularizer = reg_ok("r: l1\n");
        frozen.p.trainable = 0; /* Keras sums trainable weights only */
        kc_param *ps[] = {&a.p, &c.p, &frozen.p, &plain.p, NULL};
        /* 0.1 * 10 + 0.01 * 30 + 0.01 * 0.5 */
        double want = 1.0 + 0.3 + 0.005;
        ck_assert_close(penalty(be, ps, 5, 1), want, 1e-7, 0);
        ck_assert(kc_regularization_any(ps, 4));
        ck_assert(!kc_regularization_any(&ps[3], 1)); /* plain has none */
        float g[4];
        dp_get(&a, g, 1);
        /* d/dw = 0.1 sign(w) + 0.02 w */
        ck_assert_close(g[0], 0.1 + 0.02, 1e-7, 0);
        ck_assert_close(g[1], -0.1 - 0.04, 1e-7, 0);
        ck_assert_close(g[3], -0.1 - 0.08, 1e-7, 0);
        dp_get(&c, g, 1);
        ck_assert_close(g[0], 0.01, 1e-8, 0);
        dp_get(&frozen, g, 1);
        ck_assert_close(g[0], 0.0, 0, 0);
        dp_get(&plain, g, 1);
        ck_assert_close(g[0], 0.0, 0, 0);
        /* without add_grads the gradients stay */
        ck_assert_close(penalty(be, ps, 5, 0), want, 1e-7, 0);
        dp_get(&c, g, 1);
        ck_assert_close(g[0], 0.01, 1e-8, 0);
        /* a param without a grad buffer still counts */
        kc_free(be, &c.p.grad);
        ck_assert_close(penalty(be, ps, 5, 1), want, 1e-7, 0);
        dp_free(&a), dp_free(&c), dp_free(&frozen), dp_free(&plain);
    }
}
END_TEST

/* The reported penalty against central differences of itself. */
START_TEST(test_penalty_gradients) {
    enum { N = 24 };
    float w[N], g[N];
    for (int i = 0; i < N; i++) /* away from 0, where |w| has its kink */
        w[i] = (i % 2 ? -1.0f : 1.0f) * (0.05f + kc_rng_uniform(7, 1, (uint64_t)i));
    const char *regs[] = {"r: {L1L2: {l1: 0.03, l2: 0.2}}\n", "r: l1\n", "r: {L2: {l2: 1.5}}\n"};
    KC_FOR_EACH_DEVICE(be) {
        for (int k = 0; k < 3; k++) {
            kc_regularizer r = reg_ok(regs[k]);
            dev_param d;
            dp_init(&d, be, kc_shape2(4, 6), w, 1);
            d.p.regularizer = r;
            kc_param *ps[] = {&d.p};
            penalty(be, ps, 1, 1);
            dp_get(&d, g, 1);
            for (int i = 0; i < N; i++) {
                float keep = w[i], h = 1e-2f;
                float wp[N], wm[N];
                memcpy(wp, w, sizeof w);
                memcpy(wm, w, sizeof w);
                wp[i] = keep + h;
                wm[i] = keep - h;
                kc_test_put(be, d.p.value, wp, sizeof wp);
                double fp = penalty(be, ps, 1, 0);
                kc_test_put(be, d.p.value, wm, sizeof wm);
                double fm = penalty(be, ps, 1, 0);
                double fd = (fp - fm) / ((double)wp[i] - wm[i]);
                ck_assert_msg(fabs(fd - g[i]) <= 1e-4 + 1e-3 * fabs(fd),
                              "%s backend %s: d/dw[%d] = %.7g, finite difference %.7g", regs[k],
                              be->name, i, (double)g[i], fd);
            }
            dp_free(&d);
        }
    }
}
END_TEST

START_TEST(test_activity_penalty) {
    enum { B = 4, F = 3 };
    float y[B * F], dy[B * F], zero[B * F] = {0};
    for (int i = 0; i < B * F; i++)
        y[i] = (i % 3 ? -1.0f : 1.0f) * (0.1f + kc_rng_uniform(8, 1, (uint64_t)i));
    kc_regularizer r = reg_ok("r: {L1L2: {l1: 0.02, l2: 0.3}}\n");
    KC_FOR_EACH_DEVICE(be) {
        kc_buf dev = kc_test_from(be, y, B * F), dg = kc_test_from(be, zero, B * F);
        double want = 0;
        for (int i = 0; i < B * F; i++)
            want += 0.02 * fabs(y[i]) + 0.3 * (double)y[i] * y[i];
        want /= B; /* divided by the batch size, as Keras does */
        ck_assert_close(activity(be, &r, dev, dg, B * F, B), want, 0, 1e-6);
        kc_test_get(be, dy, dg, sizeof dy);
        for (int i = 0; i < B * F; i++) {
            double s = y[i] > 0 ? 1 : -1;
            ck_assert_close(dy[i], (0.02 * s + 0.6 * y[i]) / B, 1e-7, 1e-6);
        }
        /* finite differences of the reported value */
        for (int i = 0; i < B * F; i += 5) {
            float yp[B * F], ym[B * F], h = 1e-2f;
            memcpy(yp, y, sizeof y);
            memcpy(ym, y, sizeof y);
            yp[i] += h;
            ym[i] -= h;
            kc_test_put(be, dev, yp, sizeof yp);
            double fp = activity(be, &r, dev, KC_BUF_NULL, B * F, B);
            kc_test_put(be, dev, ym, sizeof ym);
            double fm = activity(be, &r, dev, KC_BUF_NULL, B * F, B);
            double fd = (fp - fm) / ((double)yp[i] - ym[i]);
            ck_assert_msg(fabs(fd - dy[i]) <= 1e-5 + 1e-3 * fabs(fd), "%s: dy[%d] %g vs %g",
                          be->name, i, (double)dy[i], fd);
        }
        kc_regularizer none = {0, 0};
        ck_assert_close(activity(be, &none, dev, dg, B * F, B), 0.0, 0, 0);
        ck_assert_close(activity(be, &r, dev, dg, B * F, 0), 0.0, 0, 0);
        /* and those add nothing to the gradient either */
        float dy2[B * F];
        kc_test_get(be, dy2, dg, sizeof dy2);
        ck_assert_mem_eq(dy2, dy, sizeof dy);
        kc_free(be, &dev), kc_free(be, &dg);
    }
}
END_TEST

/* ---- constraints ---- */

static void constrain(kc_device *be, const char *spec, kc_shape shape, float *w) {
    dev_param d;
    dp_init(&d, be, shape, w, 0);
    d.p.constraint = con_ok(spec);
    kc_error e;
    ck_assert_msg(kc_constraint_check(&d.p.constraint, &shape, "w", &e) == KC_OK, "%s", e.msg);
    kc_param *ps[] = {&d.p};
    ck_assert_msg(kc_constraints_apply(be, ps, 1) == KC_OK, "%s: %s", be->name, be->err.msg);
    dp_get(&d, w, 0);
    dp_free(&d);
}

START_TEST(test_max_norm_keras_example) {
    /* keras constraints_test: MaxNorm(2.0) on columns (0,0,0), (1,0,0),
     * (3,0,0), (3,3,3) of a (3, 4) matrix */
    KC_FOR_EACH_DEVICE(be) {
        float w[] = {0, 1, 3, 3, 0, 0, 0, 3, 0, 0, 0, 3};
        constrain(be, "c: {MaxNorm: {max_value: 2.0}}\n", kc_shape2(3, 4), w);
        const double r3 = 2.0 / sqrt(3.0);
        const double want[] = {0, 1, 2, r3, 0, 0, 0, r3, 0, 0, 0, r3};
        for (int i = 0; i < 12; i++)
            ck_assert_close(w[i], want[i], 1e-6, 0);
    }
}
END_TEST

/* Column norms of a (rows, cols) matrix. */
static void col_norms(const float *w, int rows, int cols, double *out) {
    for (int j = 0; j < cols; j++) {
        out[j] = 0;
        for (int i = 0; i < rows; i++)
            out[j] += (double)w[i * cols + j] * w[i * cols + j];
        out[j] = sqrt(out[j]);
    }
}

START_TEST(test_norm_constraints) {
    enum { R = 20, C = 6 };
    float w0[R * C];
    for (int i = 0; i < R * C; i++)
        w0[i] = (kc_rng_uniform(9, 1, (uint64_t)i) - 0.5f) * (i % C < 3 ? 0.05f : 2.0f);
    double before[C], after[C];
    col_norms(w0, R, C, before);
    KC_FOR_EACH_DEVICE(be) {
        float w[R * C];
        /* unit_norm: every column to norm 1 */
        memcpy(w, w0, sizeof w);
        constrain(be, "c: unit_norm\n", kc_shape2(R, C), w);
        col_norms(w, R, C, after);
        for (int j = 0; j < C; j++)
            ck_assert_close(after[j], before[j] / (before[j] + 1e-7), 1e-6, 0);
        /* min_max_norm(0.2, 0.5, rate 0.5): halfway to the clipped norm */
        memcpy(w, w0, sizeof w);
        constrain(be, "c: {MinMaxNorm: {min_value: 0.2, max_value: 0.5, rate: 0.5}}\n",
                  kc_shape2(R, C), w);
        col_norms(w, R, C, after);
        for (int j = 0; j < C; j++) {
            double clip = before[j] < 0.2 ? 0.2 : before[j] > 0.5 ? 0.5 : before[j];
            double desired = 0.5 * clip + 0.5 * before[j];
            ck_assert_close(after[j], before[j] * desired / (before[j] + 1e-7), 1e-6, 1e-6);
        }
        /* axis 1 (rows) and axis -1 are the same */
        float r1[R * C], r2[R * C];
        memcpy(r1, w0, sizeof w);
        memcpy(r2, w0, sizeof w);
        constrain(be, "c: {MaxNorm: {max_value: 0.1, axis: 1}}\n", kc_shape2(R, C), r1);
        constrain(be, "c: {MaxNorm: {max_value: 0.1, axis: -1}}\n", kc_shape2(R, C), r2);
        for (int i = 0; i < R; i++) {
            double n = 0, m = 0;
            for (int j = 0; j < C; j++) {
                n += (double)w0[i * C + j] * w0[i * C + j];
                m += (double)r1[i * C + j] * r1[i * C + j];
                ck_assert_close(r1[i * C + j], r2[i * C + j], 0, 0);
            }
            ck_assert_close(sqrt(m), fmin(sqrt(n), 0.1) * sqrt(n) / (sqrt(n) + 1e-7), 1e-6, 1e-6);
        }
        /* axis null: the norm of the whole matrix */
        memcpy(w, w0, sizeof w);
        constrain(be, "c: {MaxNorm: {max_value: 1, axis: null}}\n", kc_shape2(R, C), w);
        double total = 0, got = 0;
        for (int i = 0; i < R * C; i++) {
            total += (double)w0[i] * w0[i];
            got += (double)w[i] * w[i];
        }
        ck_assert_close(sqrt(got), fmin(sqrt(total), 1.0) * sqrt(total) / (sqrt(total) + 1e-7),
                        1e-6, 0);
    }
}
END_TEST

START_TEST(test_conv_kernel_and_non_neg) {
    enum { KH = 2, KW = 2, CI = 3, CO = 4, N = KH * KW * CI * CO };
    float w0[N];
    for (int i = 0; i < N; i++)
        w0[i] = kc_rng_uniform(10, 1, (uint64_t)i) * 2.0f - 1.0f;
    KC_FOR_EACH_DEVICE(be) {
        float w[N];
        memcpy(w, w0, sizeof w);
        /* each filter (kh, kw, in) to norm at most 0.5 */
        constrain(be, "c: {MaxNorm: {max_value: 0.5, axis: [0, 1, 2]}}\n",
                  kc_shape4(KH, KW, CI, CO), w);
        for (int o = 0; o < CO; o++) {
            double n = 0, m = 0;
            for (int i = o; i < N; i += CO) {
                n += (double)w0[i] * w0[i];
                m += (double)w[i] * w[i];
            }
            ck_assert_close(sqrt(m), fmin(sqrt(n), 0.5) * sqrt(n) / (sqrt(n) + 1e-7), 1e-6, 0);
        }
        /* axes [0, 2]: slices indexed by (kw, out) */
        memcpy(w, w0, sizeof w);
        constrain(be, "c: {UnitNorm: {axis: [0, 2]}}\n", kc_shape4(KH, KW, CI, CO), w);
        for (int kw = 0; kw < KW; kw++)
            for (int o = 0; o < CO; o++) {
                double m = 0;
                for (int kh = 0; kh < KH; kh++)
                    for (int c = 0; c < CI; c++) {
                        float v = w[((kh * KW + kw) * CI + c) * CO + o];
                        m += (double)v * v;
                    }
                ck_assert_close(sqrt(m), 1.0, 1e-6, 0);
            }
        /* non_neg: max(w, 0) */
        memcpy(w, w0, sizeof w);
        constrain(be, "c: non_neg\n", kc_shape4(KH, KW, CI, CO), w);
        for (int i = 0; i < N; i++)
            ck_assert_close(w[i], w0[i] > 0 ? w0[i] : 0.0f, 0, 0);
        /* a frozen weight is left alone */
        dev_param d;
        dp_init(&d, be, kc_shape1(3), (const float[]){-1, 2, -3}, 0);
        d.p.constraint = con_ok("c: non_neg\n");
        d.p.trainable = 0;
        kc_param *ps[] = {&d.p};
        ck_assert_int_eq(kc_constraints_apply(be, ps, 1), KC_OK);
        float v[3];
        dp_get(&d, v, 0);
        ck_assert_close(v[0], -1.0, 0, 0);
        dp_free(&d);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("regularizers");
    TCase *parse = tcase_create("parsing");
    tcase_add_test(parse, test_regularizer_names);
    tcase_add_test(parse, test_regularizer_errors);
    tcase_add_test(parse, test_constraint_names);
    tcase_add_test(parse, test_constraint_errors);
    tcase_add_test(parse, test_layers_read_them);
    suite_add_tcase(s, parse);
    TCase *math = tcase_create("math");
    tcase_add_test(math, test_keras_penalty_examples);
    tcase_add_test(math, test_penalty_sums_and_skips);
    tcase_add_test(math, test_penalty_gradients);
    tcase_add_test(math, test_activity_penalty);
    tcase_add_test(math, test_max_norm_keras_example);
    tcase_add_test(math, test_norm_constraints);
    tcase_add_test(math, test_conv_kernel_and_non_neg);
    suite_add_tcase(s, math);
    return kc_test_run(s);
}

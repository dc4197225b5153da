/* Losses and metrics on the device (models/loss_device.h) against the host's
 * kc_loss_compute and kc_metric_update + kc_metric_result, on every backend
 * of the registry that opens here: every loss and metric, rows 1, 7 and 33,
 * cols 1, 3 and 10, random inputs plus the clipping bounds, kinks and ties.
 * Losses and gradients are held to about 1e-5 relative; counts exactly. */
#include "core/rng.h"
#include "models/loss_device.h"
#include "models/yaml.h"
#include "tests/devices.h"
#include "tests/testutil.h"

/* Check records every passing assertion; loops over elements assert only on failure. */
#define expect(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                                    \
    } while (0)

static const int ROWS[] = {1, 7, 33};
static const int COLS[] = {1, 3, 10};
#define NSHAPES 3

/* The largest errors seen, relative to the tolerance's scale, for the summary. */
static double worst_loss, worst_grad;
static char worst_loss_case[256], worst_grad_case[256];
/* and plainly: |device - host| / |host| for losses above 1e-3, and a
 * gradient element's error over the largest host element */
static double rel_loss, rel_grad;

static int verbose(void) {
    const char *v = getenv("KERASC_TEST_VERBOSE");
    return v && *v && *v != '0';
}

/* ---- inputs ---- */

typedef enum gen {
    G_NORMAL,   /* 2 N(0, 1) */
    G_PROB,     /* uniform in [0.02, 0.98), rows not normalised */
    G_EDGE,     /* probabilities with exact 0 and 1 and values past the clip bounds */
    G_SOFTMAX,  /* rows of a softmax */
    G_POS,      /* uniform in [0.05, 3) */
    G_COUNTS,   /* whole numbers 0 .. 4 */
    G_NEAR,     /* the target plus 0.01 N(0, 1): ln cosh near 0 */
    G_TIES,     /* quarters in [0, 1]: ties everywhere */
    G_ONEHOT,   /* one-hot rows */
    G_SOFT,     /* rows of a random distribution */
    G_BINARY,   /* 0 or 1 */
    G_SIGNED,   /* -1 or 1 */
    G_UNIFORM,  /* uniform in [-1, 1) */
    G_LABEL,    /* one class index per row */
    G_ZERO_ROW, /* 2 N(0, 1) with every third row zero (cosine's capped norm) */
    G_GRID,     /* multiples of 1/199 and exact 0 and 1 (AUC's bucket edges) */
} gen;

static float uni(uint64_t stream, size_t i) {
    return kc_rng_uniform(77, stream, i);
}

/* Fills x (rows x cols, or rows for G_LABEL) from generator g. */
static void fill(gen g, float *x, int rows, int cols, uint64_t stream, const float *like) {
    size_t n = (size_t)rows * (size_t)cols;
    switch (g) {
    case G_NORMAL:
        for (size_t i = 0; i < n; i++)
            x[i] = 2.0f * kc_rng_normal(77, stream, i);
        break;
    case G_PROB:
        for (size_t i = 0; i < n; i++)
            x[i] = 0.02f + 0.96f * uni(stream, i);
        break;
    case G_EDGE: {
        static const float edge[] = {0.0f, 1.0f, 5e-8f, 1e-7f, 0.99999994f, 0.9999999f, 0.5f, 0.3f};
        for (size_t i = 0; i < n; i++)
            x[i] = uni(stream, i) < 0.5f ? edge[kc_rng_below(77, stream + 1, i, 8)]
                                         : 0.02f + 0.96f * uni(stream + 2, i);
        break;
    }
    case G_SOFTMAX:
    case G_SOFT:
        for (int r = 0; r < rows; r++) {
            float *row = x + (size_t)r * cols, sum = 0;
            for (int j = 0; j < cols; j++) {
                size_t i = (size_t)r * cols + j;
                row[j] = g == G_SOFTMAX ? expf(2.0f * kc_rng_normal(77, stream, i))
                                        : 0.05f + uni(stream, i);
                sum += row[j];
            }
            for (int j = 0; j < cols; j++)
                row[j] /= sum;
        }
        break;
    case G_POS:
        for (size_t i = 0; i < n; i++)
            x[i] = 0.05f + 2.95f * uni(stream, i);
        break;
    case G_COUNTS:
        for (size_t i = 0; i < n; i++)
            x[i] = (float)kc_rng_below(77, stream, i, 5);
        break;
    case G_NEAR:
        for (size_t i = 0; i < n; i++)
            x[i] = like[i] + 0.01f * kc_rng_normal(77, stream, i);
        break;
    case G_TIES:
        for (size_t i = 0; i < n; i++)
            x[i] = 0.25f * (float)kc_rng_below(77, stream, i, 5);
        break;
    case G_ONEHOT:
        memset(x, 0, n * sizeof *x);
        for (int r = 0; r < rows; r++)
            x[(size_t)r * cols + kc_rng_below(77, stream, (uint64_t)r, (uint64_t)cols)] = 1.0f;
        break;
    case G_BINARY:
        for (size_t i = 0; i < n; i++)
            x[i] = (float)kc_rng_below(77, stream, i, 2);
        break;
    case G_SIGNED:
        for (size_t i = 0; i < n; i++)
            x[i] = kc_rng_below(77, stream, i, 2) ? 1.0f : -1.0f;
        break;
    case G_UNIFORM:
        for (size_t i = 0; i < n; i++)
            x[i] = 2.0f * uni(stream, i) - 1.0f;
        break;
    case G_LABEL:
        for (int r = 0; r < rows; r++)
            x[r] = (float)kc_rng_below(77, stream, (uint64_t)r, (uint64_t)cols);
        break;
    case G_ZERO_ROW:
        for (size_t i = 0; i < n; i++)
            x[i] = (i / (size_t)cols) % 3 == 1 ? 0.0f : 2.0f * kc_rng_normal(77, stream, i);
        break;
    case G_GRID:
        for (size_t i = 0; i < n; i++)
            x[i] = (float)kc_rng_below(77, stream, i, 200) / 199.0f;
        break;
    }
}

static float *host(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    ck_assert_ptr_nonnull(p);
    return p;
}

/* ---- losses ---- */

typedef struct loss_case {
    const char *name;
    gen pred, target;
    int from_logits; /* the loss's own argument */
    int logits;      /* the plan's: the fused softmax/sigmoid path */
    float smoothing;
    double delta;
    int sum; /* reduction "sum" */
} loss_case;

#define LC(nm, p, t, ...)                                                                          \
    { .name = nm, .pred = p, .target = t, __VA_ARGS__ }

static const loss_case loss_cases[] = {
    LC("mse", G_NORMAL, G_NORMAL),
    LC("mse", G_NORMAL, G_NORMAL, .sum = 1),
    LC("mae", G_NORMAL, G_NORMAL),
    LC("mae", G_TIES, G_TIES),
    LC("categorical_crossentropy", G_PROB, G_ONEHOT),
    LC("categorical_crossentropy", G_PROB, G_SOFT, .sum = 1),
    LC("categorical_crossentropy", G_EDGE, G_ONEHOT),
    LC("categorical_crossentropy", G_SOFTMAX, G_ONEHOT, .smoothing = 0.1f),
    LC("categorical_crossentropy", G_NORMAL, G_ONEHOT, .from_logits = 1),
    LC("categorical_crossentropy", G_NORMAL, G_SOFT, .logits = 1),
    LC("categorical_crossentropy", G_NORMAL, G_ONEHOT, .logits = 1, .smoothing = 0.2f),
    LC("sparse_categorical_crossentropy", G_SOFTMAX, G_LABEL),
    LC("sparse_categorical_crossentropy", G_PROB, G_LABEL),
    LC("sparse_categorical_crossentropy", G_EDGE, G_LABEL, .sum = 1),
    LC("sparse_categorical_crossentropy", G_NORMAL, G_LABEL, .from_logits = 1),
    LC("sparse_categorical_crossentropy", G_NORMAL, G_LABEL, .logits = 1),
    LC("binary_crossentropy", G_PROB, G_BINARY),
    LC("binary_crossentropy", G_PROB, G_SOFT),
    LC("binary_crossentropy", G_EDGE, G_BINARY),
    LC("binary_crossentropy", G_PROB, G_BINARY, .smoothing = 0.1f),
    LC("binary_crossentropy", G_NORMAL, G_BINARY, .from_logits = 1),
    LC("binary_crossentropy", G_NORMAL, G_SOFT, .logits = 1, .smoothing = 0.2f),
    LC("kl_divergence", G_SOFTMAX, G_SOFT),
    LC("kl_divergence", G_EDGE, G_ONEHOT),
    LC("mape", G_NORMAL, G_NORMAL),
    LC("mape", G_NORMAL, G_BINARY),
    LC("msle", G_POS, G_POS),
    LC("msle", G_NORMAL, G_POS),
    LC("huber", G_NORMAL, G_NORMAL),
    LC("huber", G_NORMAL, G_NORMAL, .delta = 0.5),
    LC("huber", G_TIES, G_TIES, .delta = 0.25),
    LC("log_cosh", G_NORMAL, G_NORMAL),
    LC("log_cosh", G_NEAR, G_NORMAL),
    LC("hinge", G_NORMAL, G_BINARY),
    LC("hinge", G_NORMAL, G_SIGNED),
    LC("hinge", G_NORMAL, G_UNIFORM),
    LC("hinge", G_TIES, G_SIGNED),
    LC("squared_hinge", G_NORMAL, G_BINARY),
    LC("squared_hinge", G_NORMAL, G_SIGNED),
    LC("squared_hinge", G_NORMAL, G_UNIFORM, .sum = 1),
    LC("categorical_hinge", G_PROB, G_ONEHOT),
    LC("categorical_hinge", G_NORMAL, G_SOFT),
    LC("categorical_hinge", G_TIES, G_ONEHOT),
    LC("poisson", G_POS, G_COUNTS),
    LC("cosine_similarity", G_NORMAL, G_NORMAL),
    LC("cosine_similarity", G_ZERO_ROW, G_ZERO_ROW),
};
#define NLOSS_CASES (sizeof loss_cases / sizeof loss_cases[0])

static kc_loss make_loss(const loss_case *c) {
    kc_loss l;
    kc_error e = {0};
    ck_assert_msg(kc_loss_init(&l, c->name, &e) == KC_OK, "%s", e.msg);
    l.from_logits = c->from_logits;
    l.label_smoothing = c->smoothing;
    if (c->delta) l.delta = c->delta;
    if (c->sum) l.reduction = KC_REDUCTION_SUM;
    return l;
}

static void describe(char *buf, size_t n, const loss_case *c, const kc_device *d, int rows,
                     int cols) {
    snprintf(buf, n, "%s (logits %d/%d, smoothing %g, delta %g, sum %d) %dx%d on %s", c->name,
             c->from_logits, c->logits, (double)c->smoothing, c->delta, c->sum, rows, cols,
             d->name);
}

/* The tolerance of a reduced loss: 1e-5 relative to the per-sample
 * magnitudes (so that losses which cancel across samples, as cosine's, are
 * held to their terms), plus what moving every prediction by 1e-6 of itself
 * moves the host's loss (sum |dL/dp p|): a loss that cancels within a sample
 * (msle, kld or ln cosh with p near t) has float32 rounding of that size;
 * and 1e-7 per sample, float32's resolution of a probability near 1. */
static double loss_tol(const float *per, int rows, double scale, const float *p, const float *g,
                       size_t n) {
    double mag = 0, moved = 0;
    for (int i = 0; i < rows; i++)
        mag += fabs(per[i]);
    for (size_t i = 0; i < n; i++)
        moved += fabs((double)g[i] * p[i]);
    return 1e-5 * mag * scale + 1e-6 * moved + 1e-7 * rows * scale;
}

/* Device results (acc[0] = alpha loss, acc[1] = 2 loss, dg = gscale grad)
 * against the host's. */
static void compare_loss(const loss_case *c, const char *what, int rows, int cols, const float *p,
                         const float *per, const float *hg, double want, const float *acc,
                         const float *dg, float alpha, float gscale) {
    size_t n = (size_t)rows * cols;
    double scale = c->sum ? 1.0 : 1.0 / rows, tol = loss_tol(per, rows, scale, p, hg, n);
    double err = fabs(acc[0] / alpha - want);
    if (err / tol > worst_loss) {
        worst_loss = err / tol;
        snprintf(worst_loss_case, sizeof worst_loss_case, "%s", what);
    }
    if (fabs(want) > 1e-3) rel_loss = fmax(rel_loss, err / fabs(want));
    expect(err <= tol, "%s: loss %.9g, host %.9g (tolerance %.3g)", what, acc[0] / alpha, want,
           tol);
    expect(fabs(acc[1] / 2.0 - want) <= tol, "%s: accumulated loss %.9g, host 2 x %.9g", what,
           (double)acc[1], want);
    /* gradients: 1e-5 relative, plus 1e-6 of the largest, or of the terms
     * that cancel when every one is 0: scale / cols, and for cosine
     * scale / ||p|| (t / ||t|| minus its projection on p, exactly 0 on one column) */
    double gmax = scale / cols, hmax = 0;
    for (size_t i = 0; i < n; i++)
        hmax = fmax(hmax, fabs(hg[i]));
    gmax = fmax(gmax, hmax);
    if (!strcmp(c->name, "cosine_similarity"))
        for (int r = 0; r < rows; r++) {
            double sq = 0;
            for (int j = 0; j < cols; j++)
                sq += (double)p[(size_t)r * cols + j] * p[(size_t)r * cols + j];
            if (sq > 0) gmax = fmax(gmax, scale / sqrt(sq));
        }
    for (size_t i = 0; i < n; i++) {
        double w = gscale * hg[i], gt = 1e-5 * fabs(w) + 1e-6 * gscale * gmax;
        double ge = fabs(dg[i] - w);
        if (hmax > 1e-3 * scale / cols) rel_grad = fmax(rel_grad, ge / (gscale * hmax));
        if (ge / gt > worst_grad) {
            worst_grad = ge / gt;
            snprintf(worst_grad_case, sizeof worst_grad_case, "%s", what);
        }
        expect(ge <= gt, "%s: grad[%zu] %.9g, host %.9g", what, i, (double)dg[i], w);
    }
}

#define GUARD 16 /* floats after the gradient that no step may touch */

static void check_loss_case(kc_device *d, const loss_case *c, int rows, int cols) {
    kc_loss l = make_loss(c);
    int sparse = kc_loss_sparse_targets(&l);
    size_t n = (size_t)rows * cols, tn = sparse ? (size_t)rows : n;
    uint64_t stream = (uint64_t)(c - loss_cases) * 1000 + (uint64_t)rows * 16 + (uint64_t)cols;
    float *t = host(tn), *p = host(n), *hg = host(n), *per = host((size_t)rows);
    fill(c->target, t, rows, cols, stream, NULL);
    fill(c->pred, p, rows, cols, stream + 500000, t);
    double want = kc_loss_compute(&l, p, t, rows, cols, c->logits, per, hg);
    char what[256];
    describe(what, sizeof what, c, d, rows, cols);

    kc_loss_device plan;
    kc_error e = {0};
    ck_assert_msg(kc_loss_device_plan(&plan, d, &l, 40, cols, c->logits, &e) == KC_OK, "%s: %s",
                  what, e.msg);
    kc_buf P = kc_test_from(d, p, n), T = kc_test_from(d, t, tn);
    kc_buf G = kc_test_from(d, NULL, n + GUARD), A = kc_test_from(d, NULL, 4);
    kc_fill(d, G, 7.0f, n + GUARD);
    const float alpha = 2.5f, gscale = 0.75f;
    kc_device_reset_traffic(d);
    kc_loss_device_run(&plan, P, T, rows, gscale, G, A, alpha);
    kc_test_ok(d, what);
    ck_assert_msg(d->transfers == 0, "%s: %llu transfers in a step", what,
                  (unsigned long long)d->transfers);
    /* the value alone, twice into the next float: it accumulates */
    kc_loss_device_run(&plan, P, T, rows, 0.0f, KC_BUF_NULL, kc_buf_f(A, 1), 1.0f);
    kc_loss_device_run(&plan, P, T, rows, 0.0f, KC_BUF_NULL, kc_buf_f(A, 1), 1.0f);
    kc_test_ok(d, what);
    float acc[4], *dg = kc_test_fetch(d, G, n + GUARD);
    kc_test_get(d, acc, A, sizeof acc);
    for (size_t i = n; i < n + GUARD; i++)
        expect(dg[i] == 7.0f, "%s: the step wrote past the gradient", what);
    expect(acc[2] == 0.0f && acc[3] == 0.0f, "%s: the step wrote past the loss", what);
    if (isfinite(want)) {
        compare_loss(c, what, rows, cols, p, per, hg, want, acc, dg, alpha, gscale);
        /* the gradient without the value: the same bits */
        kc_fill(d, G, 123.0f, n);
        kc_loss_device_run(&plan, P, T, rows, gscale, G, KC_BUF_NULL, 0.0f);
        float *g2 = kc_test_fetch(d, G, n);
        for (size_t i = 0; i < n; i++)
            expect(g2[i] == dg[i], "%s: grad alone [%zu] %.9g, with the value %.9g", what, i,
                   (double)g2[i], (double)dg[i]);
        free(g2);
    } else {
        /* rows of zeros for categorical probabilities: NaN on both */
        expect(!isfinite(acc[0]), "%s: loss %.9g, host %g", what, (double)acc[0], want);
    }
    kc_loss_device_free(&plan);
    kc_free(d, &P);
    kc_free(d, &T);
    kc_free(d, &G);
    kc_free(d, &A);
    free(t);
    free(p);
    free(hg);
    free(dg);
    free(per);
}

START_TEST(test_losses_against_host) {
    KC_LOOP_DEVICE(d);
    worst_loss = worst_grad = rel_loss = rel_grad = 0;
    for (size_t k = 0; k < NLOSS_CASES; k++)
        for (int r = 0; r < NSHAPES; r++)
            for (int c = 0; c < NSHAPES; c++)
                check_loss_case(d, &loss_cases[k], ROWS[r], COLS[c]);
    if (verbose())
        fprintf(stderr,
                "%s: worst loss error %.3g of the tolerance (%s), gradient error %.3g (%s); "
                "loss relative error %.3g, gradient error over the largest element %.3g\n",
                d->name, worst_loss, worst_loss_case, worst_grad, worst_grad_case, rel_loss,
                rel_grad);
}
END_TEST

/* Every name kc_loss_init accepts plans on the device. */
START_TEST(test_every_loss_plans) {
    KC_LOOP_DEVICE(d);
    for (const char *const *name = kc_loss_names; *name; name++) {
        kc_loss l;
        kc_error e = {0};
        ck_assert_msg(kc_loss_init(&l, *name, &e) == KC_OK, "%s", e.msg);
        kc_loss_device p;
        ck_assert_msg(kc_loss_device_plan(&p, d, &l, 8, 3, 0, &e) == KC_OK, "%s: %s", *name, e.msg);
        kc_loss_device_free(&p);
    }
}
END_TEST

/* hinge's {0, 1} -> {-1, 1} depends on every target of the call: one 0.5
 * among 0s and 1s turns it off, on the device as on the host. */
START_TEST(test_hinge_conversion_per_call) {
    KC_LOOP_DEVICE(d);
    const float p[] = {0.3f, -0.8f, 1.7f, 0.1f, -0.2f, 0.9f};
    const float binary[] = {0, 1, 1, 0, 1, 0}, mixed[] = {0, 1, 1, 0, 0.5f, 0};
    const float *targets[] = {binary, mixed};
    kc_loss l;
    ck_assert_int_eq(kc_loss_init(&l, "hinge", NULL), KC_OK);
    kc_loss_device plan;
    ck_assert_int_eq(kc_loss_device_plan(&plan, d, &l, 2, 3, 0, NULL), KC_OK);
    kc_buf P = kc_test_from(d, p, 6), A = kc_test_from(d, NULL, 1);
    for (int k = 0; k < 2; k++) {
        kc_buf T = kc_test_from(d, targets[k], 6);
        kc_fill(d, A, 0.0f, 1);
        kc_loss_device_run(&plan, P, T, 2, 1.0f, KC_BUF_NULL, A, 1.0f);
        float got;
        kc_test_get(d, &got, A, sizeof got);
        ck_assert_close(got, kc_loss_compute(&l, p, targets[k], 2, 3, 0, NULL, NULL), 1e-6, 1e-6);
        kc_free(d, &T);
    }
    /* by hand: binary targets -> {-1, 1}: mean(max(1 - tt p, 0)) per row */
    double r0 = (1.3 + 1.8 + 0) / 3, r1 = (1.1 + 1.2 + 1.9) / 3;
    ck_assert_close(kc_loss_compute(&l, p, binary, 2, 3, 0, NULL, NULL), (r0 + r1) / 2, 1e-6, 0);
    kc_loss_device_free(&plan);
    kc_free(d, &P);
    kc_free(d, &A);
}
END_TEST

START_TEST(test_loss_errors) {
    KC_LOOP_DEVICE(d);
    kc_loss l;
    ck_assert_int_eq(kc_loss_init(&l, "mse", NULL), KC_OK);
    kc_loss_device plan;
    kc_error e = {0};
    ck_assert_int_eq(kc_loss_device_plan(&plan, d, &l, 0, 3, 0, &e), KC_ECONFIG);
    ck_assert_int_eq(kc_loss_device_plan(&plan, d, &l, 4, 3, 0, &e), KC_OK);
    kc_buf B = kc_test_from(d, NULL, 64);
    /* rows 0 does nothing; more rows than planned fails, and the failure sticks */
    ck_assert_int_eq(kc_loss_device_run(&plan, B, B, 0, 1.0f, kc_buf_f(B, 32), B, 1.0f), KC_OK);
    ck_assert_int_eq(kc_loss_device_run(&plan, B, B, 5, 1.0f, kc_buf_f(B, 32), B, 1.0f),
                     KC_ECONFIG);
    ck_assert_msg(strstr(d->err.msg, "5 rows, planned for 4"), "%s", d->err.msg);
    ck_assert_int_eq(kc_loss_device_run(&plan, B, B, 1, 1.0f, kc_buf_f(B, 32), B, 1.0f),
                     KC_ECONFIG);
    kc_device_clear_error(d);
    kc_loss_device_free(&plan);
    kc_loss_device_free(&plan);
    kc_free(d, &B);
}
END_TEST

/* ---- metrics ---- */

typedef struct metric_case {
    const char *spec; /* the text after "metric: " */
    gen pred, target;
    int sparse;   /* targets are class indices */
    int min_cols; /* top_k, class_id */
    int flaky;    /* from_logits AUC: a sigmoid an ulp off may move a prediction to the
                     next bucket, so up to 3 may move and the result is held to 0.05 */
} metric_case;

#define MC(s, p, t, ...)                                                                           \
    { .spec = s, .pred = p, .target = t, __VA_ARGS__ }

static const metric_case metric_cases[] = {
    MC("Accuracy", G_TIES, G_TIES),
    MC("binary_accuracy", G_PROB, G_BINARY),
    MC("{BinaryAccuracy: {threshold: 0.25}}", G_TIES, G_BINARY),
    MC("categorical_accuracy", G_PROB, G_ONEHOT),
    MC("categorical_accuracy", G_TIES, G_ONEHOT),
    MC("sparse_categorical_accuracy", G_PROB, G_LABEL, .sparse = 1),
    MC("sparse_categorical_accuracy", G_TIES, G_LABEL, .sparse = 1),
    MC("mse", G_NORMAL, G_NORMAL),
    MC("mae", G_NORMAL, G_NORMAL),
    MC("top_k_categorical_accuracy", G_PROB, G_ONEHOT),
    MC("{TopKCategoricalAccuracy: {k: 2}}", G_TIES, G_ONEHOT),
    MC("{TopKCategoricalAccuracy: {k: 1}}", G_TIES, G_SOFT),
    MC("sparse_top_k_categorical_accuracy", G_PROB, G_LABEL, .sparse = 1),
    MC("{SparseTopKCategoricalAccuracy: {k: 2}}", G_TIES, G_LABEL, .sparse = 1),
    MC("{SparseTopKCategoricalAccuracy: {k: 1}}", G_NORMAL, G_LABEL, .sparse = 1),
    MC("mape", G_NORMAL, G_NORMAL),
    MC("msle", G_POS, G_POS),
    MC("log_cosh_error", G_NORMAL, G_NORMAL),
    MC("poisson", G_POS, G_COUNTS),
    MC("hinge", G_NORMAL, G_BINARY),
    MC("squared_hinge", G_NORMAL, G_UNIFORM),
    MC("categorical_hinge", G_PROB, G_ONEHOT),
    MC("cosine_similarity", G_NORMAL, G_NORMAL),
    MC("precision", G_PROB, G_BINARY),
    MC("recall", G_TIES, G_BINARY),
    MC("{Precision: {thresholds: 0.25}}", G_TIES, G_BINARY),
    MC("{Recall: {thresholds: [0.7]}}", G_PROB, G_SOFT),
    MC("{Precision: {top_k: 2}}", G_TIES, G_BINARY, .min_cols = 2),
    MC("{Recall: {top_k: 1}}", G_PROB, G_ONEHOT),
    MC("{Precision: {class_id: 1}}", G_PROB, G_BINARY, .min_cols = 2),
    MC("{Recall: {class_id: 2, top_k: 2}}", G_TIES, G_BINARY, .min_cols = 3),
    MC("{Precision: {top_k: 3, thresholds: 0.3}}", G_TIES, G_BINARY, .min_cols = 3),
    MC("auc", G_PROB, G_BINARY),
    MC("auc", G_GRID, G_BINARY),
    MC("{AUC: {curve: PR}}", G_GRID, G_BINARY),
    MC("{AUC: {summation_method: minoring}}", G_PROB, G_BINARY),
    MC("{AUC: {curve: PR, summation_method: majoring}}", G_TIES, G_BINARY),
    MC("{AUC: {num_thresholds: 7}}", G_GRID, G_SOFT),
    MC("{AUC: {num_thresholds: 2}}", G_PROB, G_BINARY),
    MC("{AUC: {thresholds: [0.25, 0.5, 0.1, 0.75]}}", G_TIES, G_BINARY),
    MC("{AUC: {thresholds: [0.5]}}", G_PROB, G_BINARY),
    MC("{AUC: {from_logits: true}}", G_NORMAL, G_BINARY, .flaky = 1),
    MC("{AUC: {from_logits: true, curve: PR, thresholds: [0.3, 0.6]}}", G_NORMAL, G_BINARY,
       .flaky = 1),
};
#define NMETRIC_CASES (sizeof metric_cases / sizeof metric_cases[0])

static int parse_metric(const char *spec, int cols, int sparse, kc_metric *m) {
    char text[256];
    snprintf(text, sizeof text, "metric: %s\n", spec);
    kc_doc *doc;
    kc_error e = {0};
    int rc = kc_doc_parse(&doc, "metrics.yaml", text, strlen(text), &e);
    ck_assert_msg(rc == KC_OK, "%s: %s", spec, e.msg);
    rc = kc_metric_parse(kc_map_get(doc->root, "metric"), cols, sparse, m, &e);
    kc_doc_free(doc);
    return rc;
}

static int is_confusion(kc_metric_kind k) {
    return k == KC_METRIC_PRECISION || k == KC_METRIC_RECALL || k == KC_METRIC_AUC;
}

/* Device counters read into a copy of the host metric, compared with it. */
static void compare_metric(kc_metric_device *md, const kc_metric *host_m, int flaky,
                           const char *what) {
    kc_metric *got = malloc(sizeof *got);
    ck_assert_ptr_nonnull(got);
    memcpy(got, host_m, sizeof *got);
    got->total = got->count = got->pos = got->neg = -1;
    kc_device_reset_traffic(md->d);
    ck_assert_int_eq(kc_metric_device_read(md, got), KC_OK);
    ck_assert_msg(md->d->transfers == 1, "%s: read took %llu transfers", what,
                  (unsigned long long)md->d->transfers);
    if (is_confusion(host_m->kind)) {
        int nb = host_m->kind == KC_METRIC_AUC ? host_m->nthresholds : 1;
        expect(got->pos == host_m->pos && got->neg == host_m->neg, "%s: pos/neg %g/%g, host %g/%g",
               what, got->pos, got->neg, host_m->pos, host_m->neg);
        double moved = 0;
        for (int i = 0; i < nb; i++) {
            moved += fabs(got->tp[i] - host_m->tp[i]) + fabs(got->fp[i] - host_m->fp[i]);
            if (!flaky)
                expect(got->tp[i] == host_m->tp[i] && got->fp[i] == host_m->fp[i],
                       "%s: bucket %d tp/fp %g/%g, host %g/%g", what, i, got->tp[i], got->fp[i],
                       host_m->tp[i], host_m->fp[i]);
        }
        expect(moved <= 6, "%s: %g counts differ", what, moved);
        double want = kc_metric_result(host_m), res = kc_metric_result(got);
        if (!flaky)
            expect(res == want, "%s: result %.17g, host %.17g", what, res, want);
        else
            expect(fabs(res - want) <= 0.05, "%s: result %.9g, host %.9g", what, res, want);
    } else {
        expect(got->count == host_m->count, "%s: count %g, host %g", what, got->count,
               host_m->count);
        double tol = 1e-5 * fabs(host_m->total) + 1e-6 * host_m->count;
        expect(fabs(got->total - host_m->total) <= tol, "%s: total %.9g, host %.9g", what,
               got->total, host_m->total);
        ck_assert_close(kc_metric_result(got), kc_metric_result(host_m), 1e-6, 1e-5);
    }
    free(got);
}

/* Returns 0 when the metric does not take this shape (kc_metric_parse says why). */
static int check_metric_case(kc_device *d, const metric_case *c, int rows, int cols) {
    kc_metric *m = malloc(sizeof *m);
    ck_assert_ptr_nonnull(m);
    if (cols < c->min_cols || parse_metric(c->spec, cols, c->sparse, m) != KC_OK) {
        free(m);
        return 0;
    }
    int sparse = kc_metric_sparse_targets(m);
    char what[256];
    snprintf(what, sizeof what, "%s %dx%d on %s", c->spec, rows, cols, d->name);
    kc_metric_device md;
    kc_error e = {0};
    ck_assert_msg(kc_metric_device_plan(&md, d, m, rows, cols, &e) == KC_OK, "%s: %s", what, e.msg);
    kc_metric_reset(m);
    size_t n = (size_t)rows * cols, tn = sparse ? (size_t)rows : n;
    float *p = host(n), *t = host(tn);
    kc_buf P = kc_test_from(d, NULL, n), T = kc_test_from(d, NULL, tn);
    uint64_t stream = (uint64_t)(c - metric_cases) * 1000 + (uint64_t)rows * 16 + (uint64_t)cols;
    /* three batches of different sizes, then a reset and one more */
    int sizes[4] = {rows, rows / 2 + 1, rows, rows > 1 ? rows - 1 : 1};
    for (int b = 0; b < 4; b++) {
        if (b == 3) {
            kc_metric_reset(m);
            ck_assert_int_eq(kc_metric_device_reset(&md), KC_OK);
        }
        int nb = sizes[b];
        size_t nn = (size_t)nb * cols, tnn = sparse ? (size_t)nb : nn;
        fill(c->target, t, nb, cols, stream + 7919 * b, NULL);
        fill(c->pred, p, nb, cols, stream + 7919 * b + 500000, t);
        kc_metric_update(m, p, t, nb, cols);
        kc_test_put(d, P, p, nn * sizeof *p);
        kc_test_put(d, T, t, tnn * sizeof *t);
        kc_device_reset_traffic(d);
        kc_metric_device_update(&md, P, T, nb);
        kc_test_ok(d, what);
        ck_assert_msg(d->transfers == 0, "%s: %llu transfers in an update", what,
                      (unsigned long long)d->transfers);
        if (b >= 2) compare_metric(&md, m, c->flaky, what);
    }
    kc_metric_device_free(&md);
    kc_free(d, &P);
    kc_free(d, &T);
    free(p);
    free(t);
    free(m);
    return 1;
}

START_TEST(test_metrics_against_host) {
    KC_LOOP_DEVICE(d);
    for (size_t k = 0; k < NMETRIC_CASES; k++) {
        int ran = 0;
        for (int r = 0; r < NSHAPES; r++)
            for (int c = 0; c < NSHAPES; c++)
                ran += check_metric_case(d, &metric_cases[k], ROWS[r], COLS[c]);
        ck_assert_msg(ran >= 3, "%s ran on %d shapes", metric_cases[k].spec, ran);
    }
}
END_TEST

/* Every metric name kc_metric_init accepts plans on the device. */
START_TEST(test_every_metric_plans) {
    KC_LOOP_DEVICE(d);
    for (const char *const *name = kc_metric_names; *name; name++)
        for (int sparse = 0; sparse < 2; sparse++) {
            kc_metric *m = malloc(sizeof *m);
            ck_assert_ptr_nonnull(m);
            if (kc_metric_init(m, *name, 4, sparse, NULL) == KC_OK) {
                kc_metric_device md;
                kc_error e = {0};
                ck_assert_msg(kc_metric_device_plan(&md, d, m, 8, 4, &e) == KC_OK, "%s: %s", *name,
                              e.msg);
                kc_metric_device_free(&md);
            }
            free(m);
        }
}
END_TEST

/* In-top-k counts a class tied with the k-th; a non-finite target score and
 * a label that names no class never count. */
START_TEST(test_top_k_ties_by_hand) {
    KC_LOOP_DEVICE(d);
    kc_metric *m = malloc(sizeof *m);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(parse_metric("{SparseTopKCategoricalAccuracy: {k: 1}}", 3, 1, m), KC_OK);
    const float p[] = {0.5f, 0.5f, 0.1f, 0.2f, 0.7f, 0.1f, NAN, 0.1f, 0.2f, 0.3f, 0.3f, 0.4f};
    const float t[] = {1, 0, 0, 7};
    kc_metric_device md;
    ck_assert_int_eq(kc_metric_device_plan(&md, d, m, 4, 3, NULL), KC_OK);
    kc_buf P = kc_test_from(d, p, 12), T = kc_test_from(d, t, 4);
    kc_metric_device_update(&md, P, T, 4);
    kc_metric_reset(m);
    kc_metric_update(m, p, t, 4, 3);
    ck_assert_double_eq(m->total, 1.0); /* row 0 only: a tie with the best */
    kc_metric_device_read(&md, m);
    ck_assert_double_eq(m->total, 1.0);
    ck_assert_double_eq(m->count, 4.0);
    kc_metric_device_free(&md);
    kc_free(d, &P);
    kc_free(d, &T);
    free(m);
}
END_TEST

/* The counters' compensation: many small batches keep the running total as
 * the host's double sum has it, and counts stay whole past 2^24. */
START_TEST(test_counters_do_not_drift) {
    KC_LOOP_DEVICE(d);
    kc_metric *m = malloc(sizeof *m);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(kc_metric_init(m, "mae", 3, 0, NULL), KC_OK);
    kc_metric_device md;
    ck_assert_int_eq(kc_metric_device_plan(&md, d, m, 33, 3, NULL), KC_OK);
    kc_metric_reset(m);
    float p[99], t[99];
    kc_buf P = kc_test_from(d, NULL, 99), T = kc_test_from(d, NULL, 99);
    int steps = kc_test_quick() ? 300 : 3000;
    for (int s = 0; s < steps; s++) {
        fill(G_NORMAL, p, 33, 3, 900000 + (uint64_t)s, NULL);
        fill(G_NORMAL, t, 33, 3, 950000 + (uint64_t)s, NULL);
        kc_metric_update(m, p, t, 33, 3);
        kc_test_put(d, P, p, sizeof p);
        kc_test_put(d, T, t, sizeof t);
        kc_metric_device_update(&md, P, T, 33);
    }
    kc_test_ok(d, "mae updates");
    kc_metric got = *m;
    kc_metric_device_read(&md, &got);
    ck_assert_double_eq(got.count, m->count);
    ck_assert_close(got.total, m->total, 0, 1e-6);
    kc_metric_device_free(&md);
    kc_free(d, &P);
    kc_free(d, &T);

    /* 17 batches of 2^20 - 1 rows: 17825775 samples, not a float32 */
    ck_assert_int_eq(kc_metric_init(m, "binary_accuracy", 1, 0, NULL), KC_OK);
    int rows = (1 << 20) - 1;
    ck_assert_int_eq(kc_metric_device_plan(&md, d, m, rows, 1, NULL), KC_OK);
    P = kc_test_from(d, NULL, (size_t)rows);
    T = kc_test_from(d, NULL, (size_t)rows);
    kc_fill(d, P, 0.75f, (size_t)rows);
    kc_fill(d, T, 1.0f, (size_t)rows);
    for (int s = 0; s < 17; s++)
        kc_metric_device_update(&md, P, T, rows);
    kc_test_ok(d, "binary accuracy updates");
    kc_metric_device_read(&md, m);
    ck_assert_double_eq(m->count, 17.0 * rows);
    ck_assert_double_eq(m->total, 17.0 * rows);
    kc_metric_device_free(&md);
    kc_free(d, &P);
    kc_free(d, &T);
    free(m);
}
END_TEST

START_TEST(test_metric_errors) {
    KC_LOOP_DEVICE(d);
    kc_metric *m = malloc(sizeof *m);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(kc_metric_init(m, "auc", 1, 0, NULL), KC_OK);
    kc_metric_device md;
    kc_error e = {0};
    ck_assert_int_eq(kc_metric_device_plan(&md, d, m, 0, 1, &e), KC_ECONFIG);
    ck_assert_int_eq(kc_metric_device_plan(&md, d, m, 4, 1, &e), KC_OK);
    kc_buf B = kc_test_from(d, NULL, 8);
    ck_assert_int_eq(kc_metric_device_update(&md, B, B, 0), KC_OK);
    ck_assert_int_eq(kc_metric_device_update(&md, B, B, 5), KC_ECONFIG);
    ck_assert_msg(strstr(d->err.msg, "5 rows, planned for 4"), "%s", d->err.msg);
    kc_device_clear_error(d);
    kc_metric_device_free(&md);
    kc_metric_device_free(&md);
    kc_free(d, &B);
    free(m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("loss_device");
    TCase *tc = tcase_create("loss_device");
    tcase_set_timeout(tc, 600);
    int nb = kc_test_backend_count();
    tcase_add_loop_test(tc, test_losses_against_host, 0, nb);
    tcase_add_loop_test(tc, test_every_loss_plans, 0, nb);
    tcase_add_loop_test(tc, test_hinge_conversion_per_call, 0, nb);
    tcase_add_loop_test(tc, test_loss_errors, 0, nb);
    tcase_add_loop_test(tc, test_metrics_against_host, 0, nb);
    tcase_add_loop_test(tc, test_every_metric_plans, 0, nb);
    tcase_add_loop_test(tc, test_top_k_ties_by_hand, 0, nb);
    tcase_add_loop_test(tc, test_counters_do_not_drift, 0, nb);
    tcase_add_loop_test(tc, test_metric_errors, 0, nb);
    suite_add_tcase(s, tc);
    return kc_test_run(s);
}

/* Backend conformance: every op of the table runs on every backend with
 * random inputs and is compared against the reference backend; small cases
 * are checked against hand-computed values; the reference backend's
 * gradients are checked by central finite differences. */
#include "core/backend.h"
#include "core/rng.h"
#include "tests/convcase.h"
#include "tests/testutil.h"

#include <stdint.h>

static const kc_backend *ref_be, *cpu_be;

/* Check records a checkpoint for every passing assertion; inside loops over
 * elements only a failure should reach it. */
#define expect(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                                    \
    } while (0)

static void setup(void) {
    ref_be = kc_backend_reference();
    cpu_be = kc_backend_cpu();
}

/* ---------------------------------------------------------------- helpers */

static float *host(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    ck_assert_ptr_nonnull(p);
    return p;
}

/* Uniform in [lo, hi) from a stream of its own, so every input is reproducible. */
static float *random_host(size_t n, float lo, float hi, uint64_t stream) {
    float *p = host(n);
    for (size_t i = 0; i < n; i++)
        p[i] = lo + (hi - lo) * kc_rng_uniform(2024, stream, i);
    return p;
}

static float *copy_host(const float *src, size_t n) {
    float *p = host(n);
    memcpy(p, src, n * sizeof(float));
    return p;
}

static void *dev_alloc(const kc_backend *be, size_t bytes) {
    void *p = be->alloc(bytes ? bytes : 1);
    ck_assert_ptr_nonnull(p);
    return p;
}

static float *dev_from(const kc_backend *be, const float *h, size_t n) {
    float *d = dev_alloc(be, n * sizeof(float));
    if (h && n) be->upload(d, h, n * sizeof(float));
    return d;
}

/* Downloads n floats into h and frees the device buffer. */
static void dev_take(const kc_backend *be, float *h, float *d, size_t n) {
    if (n) be->download(h, d, n * sizeof(float));
    be->free(d);
}

static void check_close(const char *what, const float *got, const float *want, size_t n,
                        double atol, double rtol) {
    for (size_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        expect(fabs(g - w) <= atol + rtol * fabs(w), "%s[%zu] = %.9g, expected %.9g", what, i, g,
               w);
    }
}

static void check_same(const char *what, const float *got, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        expect(memcmp(&got[i], &want[i], sizeof(float)) == 0,
               "%s[%zu] = %.9g, expected exactly %.9g", what, i, got[i], want[i]);
}

static double max_abs(const float *p, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(p[i]));
    return m;
}

typedef struct pool_case {
    int n, h, w, c, ph, pw, sh, sw, same;
} pool_case;

static kc_pool2d_desc pool_desc(pool_case k) {
    kc_pool2d_desc d = {
        .n = k.n, .h = k.h, .w = k.w, .c = k.c, .ph = k.ph, .pw = k.pw, .sh = k.sh, .sw = k.sw};
    keras_geometry(k.h, k.ph, k.sh, k.same, &d.oh, &d.pad_t);
    keras_geometry(k.w, k.pw, k.sw, k.same, &d.ow, &d.pad_l);
    return d;
}

static size_t conv_x_size(const kc_conv2d_desc *d) {
    return (size_t)d->n * d->h * d->w * d->c;
}
static size_t conv_y_size(const kc_conv2d_desc *d) {
    return (size_t)d->n * d->oh * d->ow * d->oc;
}
static size_t conv_w_size(const kc_conv2d_desc *d) {
    return (size_t)d->kh * d->kw * d->c * d->oc;
}
static size_t pool_x_size(const kc_pool2d_desc *d) {
    return (size_t)d->n * d->h * d->w * d->c;
}
static size_t pool_y_size(const kc_pool2d_desc *d) {
    return (size_t)d->n * d->oh * d->ow * d->c;
}

/* ------------------------------------------------- op runners (host in/out) */

static void run_conv_forward(const kc_backend *be, const kc_conv2d_desc *d, const float *x,
                             const float *w, float *y) {
    float *dx_ = dev_from(be, x, conv_x_size(d)), *dw_ = dev_from(be, w, conv_w_size(d));
    float *dy_ = dev_from(be, NULL, conv_y_size(d));
    void *ws = dev_alloc(be, be->conv2d_workspace(d));
    be->conv2d_forward(d, dx_, dw_, dy_, ws);
    dev_take(be, y, dy_, conv_y_size(d));
    be->free(dx_), be->free(dw_), be->free(ws);
}

/* dx starts as garbage on the device: the op must overwrite it. */
static void run_conv_backward_data(const kc_backend *be, const kc_conv2d_desc *d, const float *dy,
                                   const float *w, float *dx) {
    size_t nx = conv_x_size(d);
    float *garbage = host(nx);
    for (size_t i = 0; i < nx; i++)
        garbage[i] = NAN;
    float *d_dy = dev_from(be, dy, conv_y_size(d)), *d_w = dev_from(be, w, conv_w_size(d));
    float *d_dx = dev_from(be, garbage, nx);
    void *ws = dev_alloc(be, be->conv2d_workspace(d));
    be->conv2d_backward_data(d, d_dy, d_w, d_dx, ws);
    dev_take(be, dx, d_dx, nx);
    be->free(d_dy), be->free(d_w), be->free(ws);
    free(garbage);
}

/* dw holds the initial value on entry (beta dw + gradient). */
static void run_conv_backward_filter(const kc_backend *be, const kc_conv2d_desc *d, const float *x,
                                     const float *dy, float *dw, float beta) {
    float *d_x = dev_from(be, x, conv_x_size(d)), *d_dy = dev_from(be, dy, conv_y_size(d));
    float *d_dw = dev_from(be, dw, conv_w_size(d));
    void *ws = dev_alloc(be, be->conv2d_workspace(d));
    be->conv2d_backward_filter(d, d_x, d_dy, d_dw, beta, ws);
    dev_take(be, dw, d_dw, conv_w_size(d));
    be->free(d_x), be->free(d_dy), be->free(ws);
}

static void run_maxpool_forward(const kc_backend *be, const kc_pool2d_desc *d, const float *x,
                                float *y, int32_t *argmax) {
    size_t ny = pool_y_size(d);
    float *d_x = dev_from(be, x, pool_x_size(d)), *d_y = dev_from(be, NULL, ny);
    int32_t *d_arg = dev_alloc(be, ny * sizeof(int32_t));
    be->maxpool2d_forward(d, d_x, d_y, d_arg);
    dev_take(be, y, d_y, ny);
    be->download(argmax, d_arg, ny * sizeof(int32_t));
    be->free(d_x), be->free(d_arg);
}

static void run_maxpool_backward(const kc_backend *be, const kc_pool2d_desc *d, const float *dy,
                                 const int32_t *argmax, float *dx) {
    size_t ny = pool_y_size(d), nx = pool_x_size(d);
    float *d_dy = dev_from(be, dy, ny), *d_dx = dev_from(be, NULL, nx);
    be->fill(d_dx, NAN, nx);
    int32_t *d_arg = dev_alloc(be, ny * sizeof(int32_t));
    be->upload(d_arg, argmax, ny * sizeof(int32_t));
    be->maxpool2d_backward(d, d_dy, d_arg, d_dx);
    dev_take(be, dx, d_dx, nx);
    be->free(d_dy), be->free(d_arg);
}

static void run_avgpool_forward(const kc_backend *be, const kc_pool2d_desc *d, const float *x,
                                float *y) {
    float *d_x = dev_from(be, x, pool_x_size(d)), *d_y = dev_from(be, NULL, pool_y_size(d));
    be->avgpool2d_forward(d, d_x, d_y);
    dev_take(be, y, d_y, pool_y_size(d));
    be->free(d_x);
}

static void run_avgpool_backward(const kc_backend *be, const kc_pool2d_desc *d, const float *dy,
                                 float *dx) {
    size_t nx = pool_x_size(d);
    float *d_dy = dev_from(be, dy, pool_y_size(d)), *d_dx = dev_from(be, NULL, nx);
    be->fill(d_dx, NAN, nx);
    be->avgpool2d_backward(d, d_dy, d_dx);
    dev_take(be, dx, d_dx, nx);
    be->free(d_dy);
}

static void run_act_forward(const kc_backend *be, kc_act act, float alpha, const float *x, float *y,
                            size_t n) {
    float *d_x = dev_from(be, x, n), *d_y = dev_from(be, NULL, n);
    be->act_forward(act, alpha, d_x, d_y, n);
    dev_take(be, y, d_y, n);
    be->free(d_x);
}

static void run_act_backward(const kc_backend *be, kc_act act, float alpha, const float *x,
                             const float *y, const float *dy, float *dx, size_t n) {
    float *d_x = dev_from(be, x, n), *d_y = dev_from(be, y, n), *d_dy = dev_from(be, dy, n);
    float *d_dx = dev_from(be, NULL, n);
    be->act_backward(act, alpha, d_x, d_y, d_dy, d_dx, n);
    dev_take(be, dx, d_dx, n);
    be->free(d_x), be->free(d_y), be->free(d_dy);
}

static void run_softmax_forward(const kc_backend *be, const float *x, float *y, int rows,
                                int cols) {
    size_t n = (size_t)rows * cols;
    float *d_x = dev_from(be, x, n), *d_y = dev_from(be, NULL, n);
    be->softmax_forward(d_x, d_y, rows, cols);
    dev_take(be, y, d_y, n);
    be->free(d_x);
}

static void run_softmax_backward(const kc_backend *be, const float *y, const float *dy, float *dx,
                                 int rows, int cols) {
    size_t n = (size_t)rows * cols;
    float *d_y = dev_from(be, y, n), *d_dy = dev_from(be, dy, n), *d_dx = dev_from(be, NULL, n);
    be->softmax_backward(d_y, d_dy, d_dx, rows, cols);
    dev_take(be, dx, d_dx, n);
    be->free(d_y), be->free(d_dy);
}

/* ------------------------------------------------------------ test shapes */

static const conv_case conv_cases[] = {
    {1, 4, 4, 1, 3, 3, 1, 1, 1, 1, 1, 0},    /* smallest, batch 1 */
    {3, 7, 9, 3, 3, 2, 5, 2, 1, 1, 1, 1},    /* non-square kernel, stride 2, asymmetric same */
    {2, 11, 10, 4, 3, 3, 6, 1, 1, 2, 2, 1},  /* dilation 2 */
    {2, 8, 8, 2, 1, 1, 3, 1, 1, 1, 1, 0},    /* 1x1: the input is the patch matrix */
    {2, 9, 9, 3, 1, 1, 4, 2, 2, 1, 1, 1},    /* 1x1 with stride 2 */
    {5, 13, 13, 8, 3, 3, 16, 1, 1, 1, 1, 0}, /* seed CNN's second conv, smaller */
    {2, 10, 9, 3, 5, 3, 4, 2, 3, 2, 1, 1},   /* mixed strides and dilation, odd sizes */
    {1, 6, 5, 2, 4, 4, 3, 3, 2, 1, 1, 1},    /* even kernel: padding 1 before, 2 after */
    {2, 5, 5, 2, 3, 3, 2, 1, 1, 3, 3, 1},    /* dilation 3: windows mostly padding */
    {3, 28, 28, 1, 3, 3, 8, 1, 1, 1, 1, 0},  /* seed CNN's first conv, smaller */
    {4, 64, 64, 16, 3, 3, 8, 1, 1, 1, 1, 1}, /* patch matrix beyond one workspace chunk */
};
#define N_CONV (sizeof conv_cases / sizeof conv_cases[0])

static const pool_case pool_cases[] = {
    {2, 8, 8, 3, 2, 2, 2, 2, 0},    /* the usual 2x2 */
    {3, 7, 9, 4, 3, 3, 2, 2, 1},    /* same: windows overhang bottom/right */
    {1, 5, 6, 2, 2, 3, 1, 2, 1},    /* non-square pool, mixed strides */
    {2, 6, 5, 3, 3, 3, 1, 1, 1},    /* stride 1 same: padding on both sides */
    {2, 9, 9, 5, 3, 2, 3, 1, 0},    /* valid with leftover rows */
    {2, 26, 26, 32, 2, 2, 2, 2, 0}, /* seed CNN's pool, batch 2 */
    {1, 3, 3, 1, 4, 4, 1, 1, 1},    /* pool larger than the image */
};
#define N_POOL (sizeof pool_cases / sizeof pool_cases[0])

/* ------------------------------------------------------------- conformance */

START_TEST(test_lookup_by_name) {
    ck_assert_ptr_eq(kc_backend_by_name("cpu"), cpu_be);
    ck_assert_ptr_eq(kc_backend_by_name("reference"), ref_be);
    ck_assert_ptr_null(kc_backend_by_name("gpu"));
    ck_assert_ptr_null(kc_backend_by_name(""));
    ck_assert_ptr_null(kc_backend_by_name(NULL));
    ck_assert_str_eq(cpu_be->name, "cpu");
    ck_assert_str_eq(ref_be->name, "reference");
}
END_TEST

/* Every slot is filled: a missing op would crash the first layer that used it. */
START_TEST(test_tables_complete) {
    const kc_backend *bes[] = {ref_be, cpu_be};
    for (int b = 0; b < 2; b++) {
        const void *const *slot = (const void *const *)bes[b];
        size_t n = sizeof(kc_backend) / sizeof(void *);
        for (size_t i = 0; i < n; i++)
            expect(slot[i] != NULL, "%s slot %zu", bes[b]->name, i);
    }
}
END_TEST

START_TEST(test_memory) {
    const kc_backend *bes[] = {ref_be, cpu_be};
    for (int b = 0; b < 2; b++) {
        const kc_backend *be = bes[b];
        size_t n = 1001;
        float *d = dev_alloc(be, n * sizeof(float)), *h = host(n), *src = random_host(n, -1, 1, 1);
        be->download(h, d, n * sizeof(float));
        for (size_t i = 0; i < n; i++)
            expect(h[i] == 0.0f, "alloc not zero-filled at %zu", i);
        be->upload(d, src, n * sizeof(float));
        float *d2 = dev_alloc(be, n * sizeof(float));
        be->copy(d2, d, n * sizeof(float));
        be->download(h, d2, n * sizeof(float));
        check_same("round trip", h, src, n);
        be->set_threads(0);
        be->free(d), be->free(d2);
        free(h), free(src);
    }
}
END_TEST

START_TEST(test_elementwise) {
    size_t sizes[] = {1, 1000, 100003};
    for (int s = 0; s < 3; s++) {
        size_t n = sizes[s];
        float *a = random_host(n, -2, 2, 10), *b = random_host(n, -2, 2, 11);
        float *out[2];
        const kc_backend *bes[] = {ref_be, cpu_be};
        for (int k = 0; k < 2; k++) {
            const kc_backend *be = bes[k];
            float *da = dev_from(be, a, n), *db = dev_from(be, b, n), *dy = dev_from(be, NULL, n);
            be->fill(dy, 0.75f, n);
            be->axpy(-1.5f, da, dy, n); /* y = 0.75 - 1.5 a */
            be->scale(dy, 3.0f, n);     /* y = 3 (0.75 - 1.5 a) */
            be->mul(dy, db, dy, n);     /* in place: y = y * b */
            out[k] = host(n);
            dev_take(be, out[k], dy, n);
            be->free(da), be->free(db);
        }
        for (size_t i = 0; i < n; i++) {
            float want = (3.0f * (0.75f + -1.5f * a[i])) * b[i];
            expect(out[0][i] == want, "reference[%zu] = %g, expected %g", i, out[0][i], want);
        }
        check_same("cpu elementwise", out[1], out[0], n);
        free(a), free(b), free(out[0]), free(out[1]);
    }
}
END_TEST

static void gemm_case(int ta, int tb, int m, int n, int k, float alpha, float beta) {
    int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    int lda = ac + 3, ldb = bc + 1, ldc = n + 2;
    size_t na = (size_t)ar * lda, nb = (size_t)br * ldb, nc = (size_t)m * ldc;
    float *a = random_host(na, -1, 1, 20), *b = random_host(nb, -1, 1, 21);
    float *c0 = random_host(nc, -1, 1, 22);
    if (beta == 0.0f)
        for (size_t i = 0; i < nc; i++)
            c0[i] = NAN; /* must not be read */
    float *res[2];
    const kc_backend *bes[] = {ref_be, cpu_be};
    for (int e = 0; e < 2; e++) {
        const kc_backend *be = bes[e];
        float *da = dev_from(be, a, na), *db = dev_from(be, b, nb), *dc = dev_from(be, c0, nc);
        be->gemm(ta, tb, m, n, k, alpha, da, lda, db, ldb, beta, dc, ldc);
        res[e] = host(nc);
        dev_take(be, res[e], dc, nc);
        be->free(da), be->free(db);
    }
    /* spot-check the reference against a direct sum */
    double s = 0;
    for (int p = 0; p < k; p++)
        s += (double)(ta ? a[(size_t)p * lda + (m - 1)] : a[(size_t)(m - 1) * lda + p]) *
             (tb ? b[(size_t)(n - 1) * ldb + p] : b[(size_t)p * ldb + (n - 1)]);
    double want = alpha * s + (beta == 0.0f ? 0.0 : beta * c0[(size_t)(m - 1) * ldc + n - 1]);
    ck_assert_close(res[0][(size_t)(m - 1) * ldc + n - 1], want, 1e-5, 1e-5);
    double scale = max_abs(res[0], nc);
    for (int i = 0; i < m; i++) {
        check_close("gemm", res[1] + (size_t)i * ldc, res[0] + (size_t)i * ldc, (size_t)n,
                    1e-5 * scale, 1e-4);
        /* the padding between rows stays untouched */
        for (int j = n; j < ldc && i < m - 1; j++)
            expect(memcmp(&res[1][(size_t)i * ldc + j], &c0[(size_t)i * ldc + j], 4) == 0,
                   "gemm wrote C[%d][%d] beyond n", i, j);
    }
    free(a), free(b), free(c0), free(res[0]), free(res[1]);
}

START_TEST(test_gemm) {
    int shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {128, 64, 300}, {5, 200, 9}};
    for (int s = 0; s < 5; s++)
        for (int t = 0; t < 4; t++) {
            gemm_case(t & 1, t >> 1, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 0.0f);
            gemm_case(t & 1, t >> 1, shapes[s][0], shapes[s][1], shapes[s][2], 0.5f, 0.25f);
        }
}
END_TEST

START_TEST(test_bias) {
    int shapes[][2] = {{1, 1}, {7, 10}, {300, 129}, {21632, 32}};
    for (int s = 0; s < 4; s++) {
        int rows = shapes[s][0], cols = shapes[s][1];
        size_t n = (size_t)rows * cols;
        float *y = random_host(n, -1, 1, 30), *b = random_host((size_t)cols, -1, 1, 31);
        float *db0 = random_host((size_t)cols, -1, 1, 32);
        float *ys[2], *acc[2], *fresh[2];
        const kc_backend *bes[] = {ref_be, cpu_be};
        for (int e = 0; e < 2; e++) {
            const kc_backend *be = bes[e];
            float *dyv = dev_from(be, y, n), *dbv = dev_from(be, b, (size_t)cols);
            float *dacc = dev_from(be, db0, (size_t)cols), *dfr = dev_from(be, NULL, (size_t)cols);
            be->fill(dfr, NAN, (size_t)cols);
            be->bias_grad(dacc, dyv, rows, cols, 1.0f); /* accumulates */
            be->bias_grad(dfr, dyv, rows, cols, 0.0f);  /* overwrites, never reads */
            be->bias_add(dyv, dbv, rows, cols);
            ys[e] = host(n), acc[e] = host((size_t)cols), fresh[e] = host((size_t)cols);
            dev_take(be, ys[e], dyv, n);
            dev_take(be, acc[e], dacc, (size_t)cols);
            dev_take(be, fresh[e], dfr, (size_t)cols);
            be->free(dbv);
        }
        for (int j = 0; j < cols; j++) {
            double s2 = 0;
            for (int r = 0; r < rows; r++)
                s2 += y[(size_t)r * cols + j];
            ck_assert_close(fresh[0][j], s2, 1e-6, 1e-6);
            ck_assert_close(acc[0][j], s2 + db0[j], 1e-6, 1e-6);
            ck_assert_float_eq(ys[0][j], y[j] + b[j]);
        }
        check_same("bias_add", ys[1], ys[0], n);
        check_close("bias_grad beta 1", acc[1], acc[0], (size_t)cols, 1e-6, 1e-6);
        check_close("bias_grad beta 0", fresh[1], fresh[0], (size_t)cols, 1e-6, 1e-6);
        free(y), free(b), free(db0);
        for (int e = 0; e < 2; e++)
            free(ys[e]), free(acc[e]), free(fresh[e]);
    }
}
END_TEST

typedef struct act_case {
    kc_act act;
    float alpha;
    const char *name;
} act_case;

static const act_case act_cases[] = {
    {KC_ACT_LINEAR, 0, "linear"},
    {KC_ACT_RELU, 0, "relu"},
    {KC_ACT_SIGMOID, 0, "sigmoid"},
    {KC_ACT_TANH, 0, "tanh"},
    {KC_ACT_ELU, 1.0f, "elu"},
    {KC_ACT_ELU, 0.5f, "elu(0.5)"},
    {KC_ACT_SELU, 0, "selu"},
    {KC_ACT_SOFTPLUS, 0, "softplus"},
    {KC_ACT_SOFTSIGN, 0, "softsign"},
    {KC_ACT_SWISH, 0, "swish"},
    {KC_ACT_GELU, 0, "gelu"},
    {KC_ACT_LEAKY_RELU, 0.2f, "leaky_relu"},
    {KC_ACT_LEAKY_RELU, 0.01f, "leaky_relu(0.01)"},
    {KC_ACT_HARD_SIGMOID, 0, "hard_sigmoid"},
    {KC_ACT_EXPONENTIAL, 0, "exponential"},
};
#define N_ACT (sizeof act_cases / sizeof act_cases[0])

/* Inputs over [-8, 8] plus far tails, where naive sigmoid/softplus overflow. */
static float *act_inputs(size_t n, uint64_t stream) {
    float *x = random_host(n, -8, 8, stream);
    const float tails[] = {-100, -60, -30, -3, 0, 3, 30, 60, 80};
    for (size_t i = 0; i < sizeof tails / sizeof tails[0] && i < n; i++)
        x[i] = tails[i];
    return x;
}

START_TEST(test_activations) {
    size_t n = 70001;
    float *x = act_inputs(n, 40), *dy = random_host(n, -1, 1, 41);
    for (size_t a = 0; a < N_ACT; a++) {
        const act_case *ac = &act_cases[a];
        float *y[2], *dx[2];
        y[0] = host(n), y[1] = host(n), dx[0] = host(n), dx[1] = host(n);
        run_act_forward(ref_be, ac->act, ac->alpha, x, y[0], n);
        run_act_forward(cpu_be, ac->act, ac->alpha, x, y[1], n);
        /* both backward passes see the same forward output */
        run_act_backward(ref_be, ac->act, ac->alpha, x, y[0], dy, dx[0], n);
        run_act_backward(cpu_be, ac->act, ac->alpha, x, y[0], dy, dx[1], n);
        for (size_t i = 0; i < n; i++) {
            int inf_ok = ac->act == KC_ACT_EXPONENTIAL && x[i] > 80;
            expect(isfinite(y[0][i]) || inf_ok, "%s(%g) not finite", ac->name, x[i]);
        }
        char what[64];
        snprintf(what, sizeof what, "%s forward", ac->name);
        check_close(what, y[1], y[0], n, 1e-6, 2e-6);
        snprintf(what, sizeof what, "%s backward", ac->name);
        check_close(what, dx[1], dx[0], n, 1e-6, 4e-6);
        for (int e = 0; e < 2; e++)
            free(y[e]), free(dx[e]);
    }
    free(x), free(dy);
}
END_TEST

START_TEST(test_softmax) {
    int shapes[][2] = {{1, 1}, {1, 10}, {32, 10}, {7, 1000}, {4096, 17}};
    for (int s = 0; s < 5; s++) {
        int rows = shapes[s][0], cols = shapes[s][1];
        size_t n = (size_t)rows * cols;
        float *x = random_host(n, -10, 10, 50), *dy = random_host(n, -1, 1, 51);
        x[0] = 500.0f; /* exp would overflow without the row max */
        float *y[2] = {host(n), host(n)}, *dx[2] = {host(n), host(n)};
        run_softmax_forward(ref_be, x, y[0], rows, cols);
        run_softmax_forward(cpu_be, x, y[1], rows, cols);
        run_softmax_backward(ref_be, y[0], dy, dx[0], rows, cols);
        run_softmax_backward(cpu_be, y[0], dy, dx[1], rows, cols);
        for (int r = 0; r < rows; r++) {
            double sum = 0;
            for (int j = 0; j < cols; j++)
                sum += y[0][(size_t)r * cols + j];
            ck_assert_close(sum, 1.0, 1e-6, 0);
        }
        check_close("softmax forward", y[1], y[0], n, 1e-7, 2e-6);
        check_close("softmax backward", dx[1], dx[0], n, 1e-7, 1e-5);
        /* as an act kind, softmax takes the whole buffer as one row */
        if (rows == 1) {
            float *z = host(n);
            run_act_forward(cpu_be, KC_ACT_SOFTMAX, 0, x, z, n);
            check_close("softmax via act_forward", z, y[0], n, 1e-7, 2e-6);
            run_act_backward(ref_be, KC_ACT_SOFTMAX, 0, x, y[0], dy, z, n);
            check_close("softmax via act_backward", z, dx[0], n, 0, 0);
            free(z);
        }
        free(x), free(dy);
        for (int e = 0; e < 2; e++)
            free(y[e]), free(dx[e]);
    }
}
END_TEST

static void conv_conformance(const conv_case *cc) {
    kc_conv2d_desc d = conv_desc(*cc);
    size_t nx = conv_x_size(&d), ny = conv_y_size(&d), nw = conv_w_size(&d);
    float *x = random_host(nx, -1, 1, 60), *w = random_host(nw, -1, 1, 61);
    float *g = random_host(ny, -1, 1, 62), *w0 = random_host(nw, -1, 1, 63);
    float *y[2], *dx[2], *dw_acc[2], *dw_new[2];
    const kc_backend *bes[] = {ref_be, cpu_be};
    for (int e = 0; e < 2; e++) {
        y[e] = host(ny), dx[e] = host(nx), dw_acc[e] = copy_host(w0, nw), dw_new[e] = host(nw);
        for (size_t i = 0; i < nw; i++)
            dw_new[e][i] = NAN; /* beta 0 must not read it */
        run_conv_forward(bes[e], &d, x, w, y[e]);
        run_conv_backward_data(bes[e], &d, g, w, dx[e]);
        run_conv_backward_filter(bes[e], &d, x, g, dw_acc[e], 1.0f);
        run_conv_backward_filter(bes[e], &d, x, g, dw_new[e], 0.0f);
    }
    char what[96];
    snprintf(what, sizeof what, "conv %dx%dx%d k%dx%d s%d,%d d%d,%d forward", d.h, d.w, d.c, d.kh,
             d.kw, d.sh, d.sw, d.dh, d.dw);
    check_close(what, y[1], y[0], ny, 1e-5 * max_abs(y[0], ny), 1e-4);
    check_close("conv backward data", dx[1], dx[0], nx, 1e-5 * max_abs(dx[0], nx), 1e-4);
    check_close("conv backward filter (beta 1)", dw_acc[1], dw_acc[0], nw,
                1e-5 * max_abs(dw_acc[0], nw), 1e-4);
    check_close("conv backward filter (beta 0)", dw_new[1], dw_new[0], nw,
                1e-5 * max_abs(dw_new[0], nw), 1e-4);
    for (size_t i = 0; i < nw; i++) /* beta 1 adds exactly the beta 0 gradient */
        expect(fabs(dw_acc[0][i] - (w0[i] + dw_new[0][i])) <= 1e-5 * (1 + fabs(dw_acc[0][i])),
               "dw beta 1 [%zu] = %g, beta 0 + dw0 = %g", i, dw_acc[0][i], w0[i] + dw_new[0][i]);
    free(x), free(w), free(g), free(w0);
    for (int e = 0; e < 2; e++)
        free(y[e]), free(dx[e]), free(dw_acc[e]), free(dw_new[e]);
}

START_TEST(test_conv2d) {
    for (size_t i = 0; i < N_CONV; i++)
        conv_conformance(&conv_cases[i]);
}
END_TEST

/* The cpu backend allocates its own scratch when given none. */
START_TEST(test_conv2d_without_workspace) {
    kc_conv2d_desc d = conv_desc(conv_cases[1]);
    size_t nx = conv_x_size(&d), ny = conv_y_size(&d), nw = conv_w_size(&d);
    ck_assert_uint_gt(cpu_be->conv2d_workspace(&d), 0);
    float *x = random_host(nx, -1, 1, 64), *w = random_host(nw, -1, 1, 65);
    float *want = host(ny), *got = host(ny);
    run_conv_forward(ref_be, &d, x, w, want);
    cpu_be->conv2d_forward(&d, x, w, got, NULL);
    check_close("conv forward, no workspace", got, want, ny, 1e-5 * max_abs(want, ny), 1e-4);
    free(x), free(w), free(want), free(got);
}
END_TEST

/* Values from a random permutation, so maxima are unique; or from {0, 1, 2},
 * so ties are everywhere and the tie rule must agree. */
static float *pool_inputs(size_t n, int ties, uint64_t stream) {
    float *x = host(n);
    for (size_t i = 0; i < n; i++)
        x[i] = ties ? (float)kc_rng_below(7, stream, i, 3) : (float)i * 0.05f;
    if (!ties)
        for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
            size_t j = kc_rng_below(7, stream, i, i);
            float t = x[i - 1];
            x[i - 1] = x[j], x[j] = t;
        }
    return x;
}

static void pool_conformance(const pool_case *pc, int ties) {
    kc_pool2d_desc d = pool_desc(*pc);
    size_t nx = pool_x_size(&d), ny = pool_y_size(&d);
    float *x = pool_inputs(nx, ties, 70), *g = random_host(ny, -1, 1, 71);
    float *y[2], *dx[2], *ay[2], *adx[2];
    int32_t *arg[2];
    const kc_backend *bes[] = {ref_be, cpu_be};
    for (int e = 0; e < 2; e++) {
        y[e] = host(ny), dx[e] = host(nx), ay[e] = host(ny), adx[e] = host(nx);
        arg[e] = calloc(ny, sizeof(int32_t));
        run_maxpool_forward(bes[e], &d, x, y[e], arg[e]);
        run_maxpool_backward(bes[e], &d, g, arg[0], dx[e]);
        run_avgpool_forward(bes[e], &d, x, ay[e]);
        run_avgpool_backward(bes[e], &d, g, adx[e]);
    }
    for (size_t i = 0; i < ny; i++) {
        expect(arg[1][i] == arg[0][i], "argmax[%zu] = %d, expected %d", i, arg[1][i], arg[0][i]);
        expect(arg[0][i] >= 0 && (size_t)arg[0][i] < nx, "argmax[%zu] = %d out of range", i,
               arg[0][i]);
        expect(y[0][i] == x[arg[0][i]], "max[%zu] is not x[argmax]", i);
    }
    check_same("maxpool forward", y[1], y[0], ny);
    check_same("maxpool backward", dx[1], dx[0], nx);
    check_close("avgpool forward", ay[1], ay[0], ny, 1e-6, 1e-6);
    check_close("avgpool backward", adx[1], adx[0], nx, 1e-6, 1e-6);
    /* gradients conserve mass: every dy lands on exactly one cell (max) or is
     * spread over the real cells (average) */
    double sg = 0, smax = 0, savg = 0;
    for (size_t i = 0; i < ny; i++)
        sg += g[i];
    for (size_t i = 0; i < nx; i++)
        smax += dx[0][i], savg += adx[0][i];
    ck_assert_close(smax, sg, 1e-4, 1e-5);
    ck_assert_close(savg, sg, 1e-4, 1e-5);
    free(x), free(g);
    for (int e = 0; e < 2; e++)
        free(y[e]), free(dx[e]), free(ay[e]), free(adx[e]), free(arg[e]);
}

START_TEST(test_pooling) {
    for (size_t i = 0; i < N_POOL; i++) {
        pool_conformance(&pool_cases[i], 0);
        pool_conformance(&pool_cases[i], 1);
    }
}
END_TEST

static void run_dropout(const kc_backend *be, const float *x, float *y, float *mask, size_t n,
                        float rate, uint64_t seed, uint64_t stream) {
    float *d_x = dev_from(be, x, n), *d_y = dev_from(be, NULL, n), *d_m = dev_from(be, NULL, n);
    be->dropout_forward(d_x, d_y, d_m, n, rate, seed, stream);
    dev_take(be, y, d_y, n);
    dev_take(be, mask, d_m, n);
    be->free(d_x);
}

START_TEST(test_dropout) {
    size_t n = 100003;
    float *x = random_host(n, -1, 1, 80);
    float rates[] = {0.0f, 0.3f, 0.5f, 0.9f};
    for (int r = 0; r < 4; r++) {
        float rate = rates[r], keep = 1.0f / (1.0f - rate);
        float *y[2] = {host(n), host(n)}, *m[2] = {host(n), host(n)};
        run_dropout(ref_be, x, y[0], m[0], n, rate, 99, 5);
        run_dropout(cpu_be, x, y[1], m[1], n, rate, 99, 5);
        check_same("dropout mask", m[1], m[0], n);
        check_same("dropout output", y[1], y[0], n);
        size_t dropped = 0;
        for (size_t i = 0; i < n; i++) {
            int kept = kc_rng_uniform(99, 5, i) >= rate;
            expect(m[0][i] == (kept ? keep : 0.0f), "mask[%zu] = %g", i, m[0][i]);
            expect(y[0][i] == x[i] * m[0][i], "dropout y[%zu]", i);
            dropped += !kept;
        }
        ck_assert_close((double)dropped / n, rate, 0.01, 0);
        for (int e = 0; e < 2; e++)
            free(y[e]), free(m[e]);
    }
    /* another stream draws another mask */
    float *y = host(n), *m1 = host(n), *m2 = host(n);
    run_dropout(cpu_be, x, y, m1, n, 0.5f, 99, 5);
    run_dropout(cpu_be, x, y, m2, n, 0.5f, 99, 6);
    size_t differ = 0;
    for (size_t i = 0; i < n; i++)
        differ += m1[i] != m2[i];
    ck_assert_close((double)differ / n, 0.5, 0.02, 0);
    free(x), free(y), free(m1), free(m2);
}
END_TEST

/* --------------------------------------------------------------- optimizers */

enum { OPT_SGD, OPT_RMSPROP, OPT_ADAM };

typedef struct opt_case {
    int kind;
    float lr, p1, p2; /* sgd: momentum, nesterov; rmsprop: rho, momentum; adam: b1, b2 */
    int flag;         /* rmsprop: centered; adam: amsgrad */
} opt_case;

/* Runs steps updates with fresh random gradients; state holds 4 slot arrays
 * after w (unused ones stay zero). */
static void run_optimizer(const kc_backend *be, const opt_case *oc, size_t n, int steps,
                          float *out /* 5n: w, slots */) {
    float *w0 = random_host(n, -1, 1, 90);
    float *d[5];
    d[0] = dev_from(be, w0, n);
    for (int s = 1; s < 5; s++)
        d[s] = dev_from(be, NULL, n);
    for (int t = 1; t <= steps; t++) {
        float *gh = random_host(n, -1, 1, 100 + (uint64_t)t);
        float *g = dev_from(be, gh, n);
        if (oc->kind == OPT_SGD)
            be->sgd_update(d[0], g, oc->p1 != 0 ? d[1] : NULL, n, oc->lr, oc->p1, (int)oc->p2);
        else if (oc->kind == OPT_RMSPROP)
            be->rmsprop_update(d[0], g, d[1], oc->flag ? d[2] : NULL, oc->p2 > 0 ? d[3] : NULL, n,
                               oc->lr, oc->p1, 1.0f - oc->p1, oc->p2, 1e-7f, oc->flag);
        else {
            float alpha =
                oc->lr * sqrtf(1.0f - powf(oc->p2, (float)t)) / (1.0f - powf(oc->p1, (float)t));
            be->adam_update(d[0], g, d[1], d[2], oc->flag ? d[3] : NULL, n, alpha, 1.0f - oc->p1,
                            1.0f - oc->p2, 1e-7f, oc->flag);
        }
        be->free(g);
        free(gh);
    }
    for (int s = 0; s < 5; s++)
        dev_take(be, out + (size_t)s * n, d[s], n);
    free(w0);
}

static const opt_case opt_cases[] = {
    {OPT_SGD, 0.01f, 0, 0, 0},
    {OPT_SGD, 0.01f, 0.9f, 0, 0},
    {OPT_SGD, 0.01f, 0.9f, 1, 0},
    {OPT_RMSPROP, 0.001f, 0.9f, 0, 0},
    {OPT_RMSPROP, 0.001f, 0.9f, 0, 1},
    {OPT_RMSPROP, 0.001f, 0.9f, 0.5f, 0},
    {OPT_RMSPROP, 0.001f, 0.9f, 0.5f, 1},
    {OPT_ADAM, 0.001f, 0.9f, 0.999f, 0},
    {OPT_ADAM, 0.001f, 0.9f, 0.999f, 1},
};

START_TEST(test_optimizers_match) {
    size_t sizes[] = {1000, 100003};
    for (int s = 0; s < 2; s++)
        for (size_t c = 0; c < sizeof opt_cases / sizeof opt_cases[0]; c++) {
            size_t n = sizes[s];
            float *a = host(5 * n), *b = host(5 * n);
            run_optimizer(ref_be, &opt_cases[c], n, 5, a);
            run_optimizer(cpu_be, &opt_cases[c], n, 5, b);
            char what[48];
            snprintf(what, sizeof what, "optimizer case %zu", c);
            check_same(what, b, a, 5 * n);
            float *w0 = random_host(n, -1, 1, 90);
            ck_assert(memcmp(a, w0, n * sizeof(float)) != 0); /* something moved */
            free(w0), free(a), free(b);
        }
}
END_TEST

/* The other Keras 3 optimizers, then clipping and weight decay: every slot
 * and weight after a few steps, cpu against reference, bit for bit. */
enum { OPT2_ADAGRAD, OPT2_ADADELTA, OPT2_ADAMAX, OPT2_NADAM, OPT2_LION, OPT2_COUNT };

static void nadam_coef_at(int t, float *prod, kc_nadam_coef *c) {
    float u = 0.9f * (1.0f - 0.5f * powf(0.96f, (float)t));
    float u_next = 0.9f * (1.0f - 0.5f * powf(0.96f, (float)(t + 1)));
    *prod = *prod * u;
    *c = (kc_nadam_coef){.lr = 0.002f,
                         .eps = 1e-7f,
                         .one_minus_b1 = 0.1f,
                         .one_minus_b2 = 0.001f,
                         .u_next = u_next,
                         .one_minus_u = 1.0f - u,
                         .one_minus_prod_next = 1.0f - *prod * u_next,
                         .one_minus_prod = 1.0f - *prod,
                         .one_minus_b2_power = 1.0f - powf(0.999f, (float)t)};
}

static void run_optimizer2(const kc_backend *be, int kind, size_t n, int steps,
                           float *out /* 3n: w, two slots */) {
    float *w0 = random_host(n, -1, 1, 91);
    float *d[3] = {dev_from(be, w0, n), dev_from(be, NULL, n), dev_from(be, NULL, n)};
    if (kind == OPT2_ADAGRAD) be->fill(d[1], 0.1f, n);
    float prod = 1.0f;
    for (int t = 1; t <= steps; t++) {
        float *gh = random_host(n, -1, 1, 110 + (uint64_t)t);
        float *g = dev_from(be, gh, n);
        kc_nadam_coef c;
        switch (kind) {
        case OPT2_ADAGRAD:
            be->adagrad_update(d[0], g, d[1], n, 0.01f, 1e-7f);
            break;
        case OPT2_ADADELTA:
            be->adadelta_update(d[0], g, d[1], d[2], n, 1.0f, 0.95f, 0.05f, 1e-7f);
            break;
        case OPT2_ADAMAX:
            be->adamax_update(d[0], g, d[1], d[2], n, 0.002f, 0.1f, 0.999f,
                              1.0f - powf(0.9f, (float)t), 1e-7f);
            break;
        case OPT2_NADAM:
            nadam_coef_at(t, &prod, &c);
            be->nadam_update(d[0], g, d[1], d[2], n, &c);
            break;
        default:
            be->lion_update(d[0], g, d[1], n, 0.001f, 0.9f, 0.99f);
            break;
        }
        be->free(g);
        free(gh);
    }
    for (int s = 0; s < 3; s++)
        dev_take(be, out + (size_t)s * n, d[s], n);
    free(w0);
}

START_TEST(test_more_optimizers_match) {
    size_t sizes[] = {1000, 100003};
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < OPT2_COUNT; k++) {
            size_t n = sizes[s];
            float *a = host(3 * n), *b = host(3 * n);
            run_optimizer2(ref_be, k, n, 5, a);
            run_optimizer2(cpu_be, k, n, 5, b);
            char what[48];
            snprintf(what, sizeof what, "optimizer kind %d", k);
            check_same(what, b, a, 3 * n);
            float *w0 = random_host(n, -1, 1, 91);
            ck_assert(memcmp(a, w0, n * sizeof(float)) != 0); /* something moved */
            free(w0), free(a), free(b);
        }
}
END_TEST

START_TEST(test_clip_decay_match) {
    size_t sizes[] = {7, 1000, 100003};
    for (int s = 0; s < 3; s++) {
        size_t n = sizes[s];
        float *x = random_host(n, -3, 3, 120), *a = host(n), *b = host(n);
        double want = 0;
        for (size_t i = 0; i < n; i++)
            want += (double)x[i] * x[i];
        float *dr = dev_from(ref_be, x, n), *dc = dev_from(cpu_be, x, n);
        double sr = ref_be->sum_squares(dr, n);
        ck_assert_close(sr, want, 0, 1e-12);
        for (int threads = 1; threads <= 2; threads++) {
            cpu_be->set_threads(threads);
            double sc = cpu_be->sum_squares(dc, n);
            expect(memcmp(&sc, &sr, sizeof sc) == 0, "sum_squares on %d threads: %.17g vs %.17g",
                   threads, sc, sr);
        }
        cpu_be->set_threads(0);
        float *yr = dev_from(ref_be, NULL, n), *yc = dev_from(cpu_be, NULL, n);
        ref_be->scale_div(dr, yr, 0.7f, 2.3f, n);
        cpu_be->scale_div(dc, yc, 0.7f, 2.3f, n);
        ref_be->download(a, yr, n * sizeof(float));
        cpu_be->download(b, yc, n * sizeof(float));
        check_same("scale_div", b, a, n);
        ref_be->clip(dr, yr, -1.5f, 0.5f, n);
        cpu_be->clip(dc, yc, -1.5f, 0.5f, n);
        ref_be->download(a, yr, n * sizeof(float));
        cpu_be->download(b, yc, n * sizeof(float));
        check_same("clip", b, a, n);
        /* in place, as the optimizer's weights */
        ref_be->weight_decay(dr, 0.004f, 0.01f, n);
        cpu_be->weight_decay(dc, 0.004f, 0.01f, n);
        ref_be->scale_div(dr, dr, 1.25f, 1.0f, n);
        cpu_be->scale_div(dc, dc, 1.25f, 1.0f, n);
        dev_take(ref_be, a, dr, n);
        dev_take(cpu_be, b, dc, n);
        check_same("weight_decay then scale_div in place", b, a, n);
        ck_assert(memcmp(a, x, n * sizeof(float)) != 0);
        ref_be->free(yr), cpu_be->free(yc);
        free(x), free(a), free(b);
    }
}
END_TEST

/* ------------------------------------------------------ hand-computed values */

static const kc_backend *both(int i) {
    return i ? cpu_be : ref_be;
}

/* x = 1..16 as a 4x4 image; kernel [[1,2,0],[0,1,-1],[3,0,1]]; each output
 * is the window sum by hand, e.g. valid (0,0) = 1+4+6-7+27+11 = 42 and each
 * step right adds sum(w) = 7, each step down adds 4*7. */
START_TEST(test_conv_by_hand) {
    float x[16], w[9] = {1, 2, 0, 0, 1, -1, 3, 0, 1};
    for (int i = 0; i < 16; i++)
        x[i] = (float)(i + 1);
    const float valid[4] = {42, 49, 70, 77};
    const float same[16] = {5, 21, 25, 25, 11, 42, 49, 52, 23, 70, 77, 80, 17, 28, 31, 51};
    const float same_s2[4] = {42, 52, 28, 51}; /* padding 0 top/left, 1 bottom/right */
    for (int b = 0; b < 2; b++) {
        float y[16];
        kc_conv2d_desc d = conv_desc((conv_case){1, 4, 4, 1, 3, 3, 1, 1, 1, 1, 1, 0});
        run_conv_forward(both(b), &d, x, w, y);
        check_close("valid", y, valid, 4, 1e-5, 0);
        d = conv_desc((conv_case){1, 4, 4, 1, 3, 3, 1, 1, 1, 1, 1, 1});
        run_conv_forward(both(b), &d, x, w, y);
        check_close("same", y, same, 16, 1e-5, 0);
        d = conv_desc((conv_case){1, 4, 4, 1, 3, 3, 1, 2, 2, 1, 1, 1});
        ck_assert_int_eq(d.pad_t, 0);
        ck_assert_int_eq(d.oh, 2);
        run_conv_forward(both(b), &d, x, w, y);
        check_close("same stride 2", y, same_s2, 4, 1e-5, 0);
        /* backward data of the valid conv with dy = 1: each input pixel sums
         * the kernel taps that touch it, e.g. the corner sees only w[0][0] */
        d = conv_desc((conv_case){1, 4, 4, 1, 3, 3, 1, 1, 1, 1, 1, 0});
        float ones[4] = {1, 1, 1, 1}, dx[16];
        run_conv_backward_data(both(b), &d, ones, w, dx);
        ck_assert_float_eq_tol(dx[0], 1, 1e-6);
        ck_assert_float_eq_tol(dx[1], 1 + 2, 1e-6);
        ck_assert_float_eq_tol(dx[5], 1 + 2 + 0 + 1, 1e-6);
        ck_assert_float_eq_tol(dx[15], 1, 1e-6);
        /* backward filter with dy = 1: tap (ky, kx) sums x over a 2x2 block */
        float dw[9] = {0};
        run_conv_backward_filter(both(b), &d, x, ones, dw, 0.0f);
        ck_assert_float_eq_tol(dw[0], 1 + 2 + 5 + 6, 1e-5);
        ck_assert_float_eq_tol(dw[8], 11 + 12 + 15 + 16, 1e-5);
    }
}
END_TEST

/* 3x3 image [[1,5,2],[7,3,9],[4,8,6]], pool 2x2 stride 2 "same": windows
 * overhang one row and column; only real cells count. */
START_TEST(test_pool_by_hand) {
    const float x[9] = {1, 5, 2, 7, 3, 9, 4, 8, 6};
    kc_pool2d_desc d = pool_desc((pool_case){1, 3, 3, 1, 2, 2, 2, 2, 1});
    ck_assert_int_eq(d.oh, 2);
    ck_assert_int_eq(d.pad_t, 0);
    for (int b = 0; b < 2; b++) {
        float y[4], dx[9];
        int32_t arg[4];
        run_maxpool_forward(both(b), &d, x, y, arg);
        const float want_max[4] = {7, 9, 8, 6};
        const int32_t want_arg[4] = {3, 5, 7, 8};
        check_close("maxpool", y, want_max, 4, 0, 0);
        for (int i = 0; i < 4; i++)
            ck_assert_int_eq(arg[i], want_arg[i]);
        const float g[4] = {1, 2, 3, 4};
        run_maxpool_backward(both(b), &d, g, arg, dx);
        const float want_dx[9] = {0, 0, 0, 1, 0, 2, 0, 3, 4};
        check_close("maxpool backward", dx, want_dx, 9, 0, 0);

        run_avgpool_forward(both(b), &d, x, y);
        const float want_avg[4] = {(1 + 5 + 7 + 3) / 4.0f, (2 + 9) / 2.0f, (4 + 8) / 2.0f, 6};
        check_close("avgpool", y, want_avg, 4, 1e-6, 0);
        run_avgpool_backward(both(b), &d, g, dx);
        const float want_adx[9] = {0.25f, 0.25f, 1, 0.25f, 0.25f, 1, 1.5f, 1.5f, 4};
        check_close("avgpool backward", dx, want_adx, 9, 1e-6, 0);
    }
    /* 3x3 stride 1 "same": padding on every side; the corner averages 4 cells */
    d = pool_desc((pool_case){1, 3, 3, 1, 3, 3, 1, 1, 1});
    ck_assert_int_eq(d.pad_t, 1);
    for (int b = 0; b < 2; b++) {
        float y[9];
        run_avgpool_forward(both(b), &d, x, y);
        ck_assert_float_eq_tol(y[0], (1 + 5 + 7 + 3) / 4.0f, 1e-6);
        ck_assert_float_eq_tol(y[4], 45 / 9.0f, 1e-6);
        ck_assert_float_eq_tol(y[5], (5 + 2 + 3 + 9 + 8 + 6) / 6.0f, 1e-6);
    }
}
END_TEST

typedef struct act_point {
    kc_act act;
    float alpha, x;
    double y, dydx;
} act_point;

/* Values from the formulas in KERAS.md section 5, evaluated in double. */
static const act_point act_points[] = {
    {KC_ACT_LINEAR, 0, -1.5f, -1.5, 1},
    {KC_ACT_RELU, 0, -1, 0, 0},
    {KC_ACT_RELU, 0, 2, 2, 1},
    {KC_ACT_SIGMOID, 0, 0, 0.5, 0.25},
    {KC_ACT_SIGMOID, 0, 2, 0.8807970779778823, 0.10499358540350662},
    {KC_ACT_SIGMOID, 0, -30, 9.3576229688393e-14, 9.357622968838424e-14},
    {KC_ACT_TANH, 0, 1, 0.7615941559557649, 0.41997434161402614},
    {KC_ACT_ELU, 1, -1, -0.6321205588285577, 0.36787944117144233},
    {KC_ACT_ELU, 0.5f, -1, -0.31606027941427883, 0.18393972058572117},
    {KC_ACT_ELU, 1, 2, 2, 1},
    {KC_ACT_SELU, 0, -1, -1.1113307378125625, 0.646768603034814},
    {KC_ACT_SELU, 0, 2, 2.101401974710961, 1.0507009873554805},
    {KC_ACT_SOFTPLUS, 0, 0, 0.6931471805599453, 0.5},
    {KC_ACT_SOFTPLUS, 0, -20, 2.061153620314381e-09, 2.0611536181902033e-09},
    {KC_ACT_SOFTPLUS, 0, 3, 3.048587351573742, 0.9525741268224334},
    {KC_ACT_SOFTPLUS, 0, 100, 100, 1},
    {KC_ACT_SOFTSIGN, 0, 3, 0.75, 0.0625},
    {KC_ACT_SWISH, 0, 1, 0.7310585786300049, 0.9276705118714867},
    {KC_ACT_SWISH, 0, -2, -0.2384058440442351, -0.09078424878489547},
    {KC_ACT_GELU, 0, 1, 0.8413447460685429, 1.0833154705876864},
    {KC_ACT_GELU, 0, -1, -0.15865525393145707, -0.08331547058768629},
    {KC_ACT_LEAKY_RELU, 0.2f, -2, -0.4, 0.2},
    {KC_ACT_LEAKY_RELU, 0.2f, 3, 3, 1},
    {KC_ACT_HARD_SIGMOID, 0, 1, 0.6666666666666666, 1.0 / 6},
    {KC_ACT_HARD_SIGMOID, 0, -4, 0, 0},
    {KC_ACT_HARD_SIGMOID, 0, 4, 1, 0},
    {KC_ACT_EXPONENTIAL, 0, 1, 2.718281828459045, 2.718281828459045},
    {KC_ACT_EXPONENTIAL, 0, -2, 0.1353352832366127, 0.1353352832366127},
};

START_TEST(test_activations_by_hand) {
    for (size_t i = 0; i < sizeof act_points / sizeof act_points[0]; i++) {
        const act_point *p = &act_points[i];
        for (int b = 0; b < 2; b++) {
            float y, dx, one = 1;
            run_act_forward(both(b), p->act, p->alpha, &p->x, &y, 1);
            run_act_backward(both(b), p->act, p->alpha, &p->x, &y, &one, &dx, 1);
            ck_assert_msg(fabs(y - p->y) <= 3e-7 * fabs(p->y), "%s act %d at %g: %.9g vs %.9g",
                          both(b)->name, p->act, p->x, y, p->y);
            ck_assert_msg(fabs(dx - p->dydx) <= 3e-6 * fabs(p->dydx),
                          "%s act %d slope at %g: %.9g vs %.9g", both(b)->name, p->act, p->x, dx,
                          p->dydx);
        }
    }
}
END_TEST

/* One step each, values worked out in double (see the comments). */
START_TEST(test_optimizers_by_hand) {
    for (int b = 0; b < 2; b++) {
        const kc_backend *be = both(b);
        /* SGD nesterov, lr 0.1, momentum 0.9: v = 0.9*0.2 - 0.1*0.5 = 0.13;
         * w = 1 + 0.9*0.13 - 0.05 = 1.067 */
        float w = 1, g = 0.5f, v = 0.2f;
        be->sgd_update(&w, &g, &v, 1, 0.1f, 0.9f, 1);
        ck_assert_float_eq_tol(v, 0.13f, 1e-7);
        ck_assert_float_eq_tol(w, 1.067f, 1e-6);
        /* plain SGD */
        w = 1;
        be->sgd_update(&w, &g, NULL, 1, 0.1f, 0.0f, 0);
        ck_assert_float_eq_tol(w, 0.95f, 1e-7);

        /* RMSprop centered, lr 0.01, rho 0.9: ms = 0.09 + 0.1*0.25 = 0.115,
         * mg = 0.09 + 0.05 = 0.14, inc = 0.005 / sqrt(0.115 - 0.0196 + 1e-7) */
        float ms = 0.1f, mg = 0.1f, mom = 0.02f;
        w = 1;
        be->rmsprop_update(&w, &g, &ms, &mg, NULL, 1, 0.01f, 0.9f, 0.1f, 0.0f, 1e-7f, 1);
        ck_assert_float_eq_tol(ms, 0.115f, 1e-7);
        ck_assert_float_eq_tol(mg, 0.14f, 1e-7);
        ck_assert_float_eq_tol(w, 0.9838119107783668f, 1e-6);
        /* the same with momentum 0.5 from mom = 0.02: mom = 0.01 + inc */
        ms = 0.1f, mg = 0.1f, w = 1;
        be->rmsprop_update(&w, &g, &ms, &mg, &mom, 1, 0.01f, 0.9f, 0.1f, 0.5f, 1e-7f, 1);
        ck_assert_float_eq_tol(mom, 0.026188089221633133f, 1e-6);
        ck_assert_float_eq_tol(w, 0.9738119107783668f, 1e-6);

        /* Adam, two steps, lr 0.001: alpha_t = lr sqrt(1-b2^t)/(1-b1^t);
         * t=1: m = 0.05, v = 0.00025; t=2 with g = -0.25: m = 0.02, v = 0.00031225 */
        float m = 0, vv = 0;
        w = 1;
        float a1 = 0.001f * sqrtf(1 - 0.999f) / (1 - 0.9f);
        be->adam_update(&w, &g, &m, &vv, NULL, 1, a1, 0.1f, 0.001f, 1e-7f, 0);
        ck_assert_float_eq_tol(m, 0.05f, 1e-7);
        ck_assert_float_eq_tol(vv, 0.00025f, 1e-8);
        ck_assert_float_eq_tol(w, 0.9990000063245154f, 2e-7);
        float g2 = -0.25f, a2 = 0.001f * sqrtf(1 - 0.999f * 0.999f) / (1 - 0.81f);
        be->adam_update(&w, &g2, &m, &vv, NULL, 1, a2, 0.1f, 0.001f, 1e-7f, 0);
        ck_assert_float_eq_tol(m, 0.02f, 1e-7);
        ck_assert_float_eq_tol(vv, 0.00031225f, 1e-8);
        ck_assert_float_eq_tol(w, 0.9987336707920792f, 2e-7);
        /* amsgrad keeps the larger second moment: vhat = 0.01 > v */
        float vhat = 0.01f;
        m = 0, vv = 0, w = 1;
        be->adam_update(&w, &g, &m, &vv, &vhat, 1, a1, 0.1f, 0.001f, 1e-7f, 1);
        ck_assert_float_eq_tol(vhat, 0.01f, 1e-9);
        ck_assert_float_eq_tol(w, 1 - a1 * 0.05f / (0.1f + 1e-7f), 1e-7);
    }
}
END_TEST

/* The other optimizers' kernels, one element each, worked out in double. */
START_TEST(test_more_optimizers_by_hand) {
    for (int b = 0; b < 2; b++) {
        const kc_backend *be = both(b);
        /* Adagrad, lr 0.01: acc = 0.1 + 0.25; w = 1 - 0.005 / sqrt(0.35 + 1e-7) */
        float w = 1, g = 0.5f, s1 = 0.1f, s2 = 0.2f;
        be->adagrad_update(&w, &g, &s1, 1, 0.01f, 1e-7f);
        ck_assert_float_eq_tol(s1, 0.35f, 1e-7);
        ck_assert_float_eq_tol(w, 1 - 0.005 / sqrt(0.3500001), 1e-7);
        /* Adadelta, lr 1, rho 0.95: ag = 0.095 + 0.0125 = 0.1075;
         * d = -sqrt(0.2000001) 0.5 / sqrt(0.1075001) = -0.68199; ad = 0.19 + 0.05 d^2 */
        w = 1, s1 = 0.1f, s2 = 0.2f;
        be->adadelta_update(&w, &g, &s1, &s2, 1, 1.0f, 0.95f, 0.05f, 1e-7f);
        double d = -sqrt(0.2000001) * 0.5 / sqrt(0.1075001);
        ck_assert_float_eq_tol(s1, 0.1075f, 1e-8);
        ck_assert_float_eq_tol(s2, 0.19 + 0.05 * d * d, 1e-7);
        ck_assert_float_eq_tol(w, 1 + d, 1e-6);
        /* Adamax, lr 0.002, t = 1: m = 0.1 + (-0.5 - 0.1) 0.1 = 0.04;
         * u = max(0.999 * 0.6, 0.5) = 0.5994; w = 1 - 0.002 * 0.04 / (0.1 (0.5994 + 1e-7)) */
        float gn = -0.5f;
        w = 1, s1 = 0.1f, s2 = 0.6f;
        be->adamax_update(&w, &gn, &s1, &s2, 1, 0.002f, 0.1f, 0.999f, 0.1f, 1e-7f);
        ck_assert_float_eq_tol(s1, 0.04f, 1e-8);
        ck_assert_float_eq_tol(s2, 0.5994f, 1e-7);
        ck_assert_float_eq_tol(w, 1 - 0.002 * 0.04 / (0.1 * 0.5994001), 1e-7);
        /* Nadam, t = 1: u1 = 0.468, u2 = 0.48528; m = 0.05, v = 0.00025;
         * m_hat = u2 m / (1 - u1 u2) + g; v_hat = 0.25 */
        kc_nadam_coef c = {.lr = 0.002f,
                           .eps = 1e-7f,
                           .one_minus_b1 = 0.1f,
                           .one_minus_b2 = 0.001f,
                           .u_next = 0.48528f,
                           .one_minus_u = 0.532f,
                           .one_minus_prod_next = (float)(1 - 0.468 * 0.48528),
                           .one_minus_prod = 0.532f,
                           .one_minus_b2_power = 0.001f};
        w = 1, s1 = 0, s2 = 0;
        be->nadam_update(&w, &g, &s1, &s2, 1, &c);
        double m_hat = 0.48528 * 0.05 / (1 - 0.468 * 0.48528) + 0.5;
        ck_assert_float_eq_tol(s1, 0.05f, 1e-8);
        ck_assert_float_eq_tol(s2, 0.00025f, 1e-10);
        ck_assert_float_eq_tol(w, 1 - 0.002 * m_hat / (0.5 + 1e-7), 1e-7);
        /* Lion: sign(0.9 * 0.2 + 0.1 * -0.5) = sign(0.13) = 1; m = 0.198 - 0.005 */
        w = 1, s1 = 0.2f;
        be->lion_update(&w, &gn, &s1, 1, 0.001f, 0.9f, 0.99f);
        ck_assert_float_eq_tol(w, 0.999f, 1e-7);
        ck_assert_float_eq_tol(s1, 0.193f, 1e-7);
        /* ... and a zero combination leaves w alone */
        float z = 0;
        w = 1, s1 = 0;
        be->lion_update(&w, &z, &s1, 1, 0.001f, 0.9f, 0.99f);
        ck_assert_float_eq(w, 1.0f);

        /* clipping and weight decay */
        float v[4] = {3, 4, 0, 0};
        ck_assert_double_eq(be->sum_squares(v, 4), 25.0);
        ck_assert_double_eq(be->sum_squares(v, 0), 0.0);
        float y[4];
        be->scale_div(v, y, 3.0f, 4.0f, 2);
        ck_assert_float_eq(y[0], 2.25f);
        ck_assert_float_eq(y[1], 3.0f);
        float c4[4] = {-2.0f, 0.5f, NAN, 7.0f};
        be->clip(c4, c4, -1.0f, 1.0f, 4);
        ck_assert_float_eq(c4[0], -1.0f);
        ck_assert_float_eq(c4[1], 0.5f);
        ck_assert(isnan(c4[2]));
        ck_assert_float_eq(c4[3], 1.0f);
        w = 2;
        be->weight_decay(&w, 0.1f, 0.5f, 1);
        ck_assert_float_eq_tol(w, 1.9f, 1e-7);
    }
}
END_TEST

/* ------------------------------------------- finite differences (reference) */

/* L(p) = sum r * f(p); the analytic gradient of each parameter is compared
 * with the central difference in double, stepping by eps (the step actually
 * taken, after rounding to float, is what divides). */
typedef double (*loss_fn)(void *ctx);

static void check_numeric_grad(const char *what, float *param, const float *grad, size_t n,
                               float eps, loss_fn f, void *ctx, double atol, double rtol) {
    for (size_t i = 0; i < n; i++) {
        float keep = param[i];
        param[i] = keep + eps;
        float hi = param[i];
        double lp = f(ctx);
        param[i] = keep - eps;
        float lo = param[i];
        double lm = f(ctx);
        param[i] = keep;
        double num = (lp - lm) / ((double)hi - (double)lo);
        expect(fabs(num - grad[i]) <= atol + rtol * fabs(num),
               "%s d/dp[%zu]: analytic %.7g, numeric %.7g", what, i, grad[i], num);
    }
}

static double weighted_sum(const float *y, const float *r, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)y[i] * r[i];
    return s;
}

typedef struct conv_ctx {
    kc_conv2d_desc d;
    float *x, *w, *r, *y;
} conv_ctx;

static double conv_loss(void *p) {
    conv_ctx *c = p;
    run_conv_forward(ref_be, &c->d, c->x, c->w, c->y);
    return weighted_sum(c->y, c->r, conv_y_size(&c->d));
}

START_TEST(test_conv2d_gradients) {
    const conv_case cases[] = {
        {2, 5, 6, 2, 3, 2, 3, 2, 1, 1, 1, 1},
        {1, 7, 7, 2, 3, 3, 2, 1, 1, 2, 2, 1},
        {1, 5, 5, 1, 2, 2, 2, 1, 1, 1, 1, 0},
        {2, 6, 5, 2, 3, 3, 2, 2, 2, 1, 1, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        conv_ctx c = {.d = conv_desc(cases[k])};
        size_t nx = conv_x_size(&c.d), ny = conv_y_size(&c.d), nw = conv_w_size(&c.d);
        c.x = random_host(nx, -1, 1, 200), c.w = random_host(nw, -1, 1, 201);
        c.r = random_host(ny, -1, 1, 202), c.y = host(ny);
        float *dx = host(nx), *dw = host(nw);
        run_conv_backward_data(ref_be, &c.d, c.r, c.w, dx);
        run_conv_backward_filter(ref_be, &c.d, c.x, c.r, dw, 0.0f);
        check_numeric_grad("conv2d data", c.x, dx, nx, 1e-2f, conv_loss, &c, 1e-4, 1e-3);
        check_numeric_grad("conv2d filter", c.w, dw, nw, 1e-2f, conv_loss, &c, 1e-4, 1e-3);
        free(c.x), free(c.w), free(c.r), free(c.y), free(dx), free(dw);
    }
}
END_TEST

typedef struct pool_ctx {
    kc_pool2d_desc d;
    int max;
    float *x, *r, *y;
    int32_t *arg;
} pool_ctx;

static double pool_loss(void *p) {
    pool_ctx *c = p;
    if (c->max)
        run_maxpool_forward(ref_be, &c->d, c->x, c->y, c->arg);
    else
        run_avgpool_forward(ref_be, &c->d, c->x, c->y);
    return weighted_sum(c->y, c->r, pool_y_size(&c->d));
}

START_TEST(test_pool_gradients) {
    const pool_case cases[] = {
        {2, 5, 5, 2, 2, 2, 2, 2, 1},
        {1, 6, 7, 3, 3, 3, 2, 2, 0},
        {1, 5, 4, 2, 3, 2, 1, 1, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int max = 0; max < 2; max++) {
            pool_ctx c = {.d = pool_desc(cases[k]), .max = max};
            size_t nx = pool_x_size(&c.d), ny = pool_y_size(&c.d);
            /* distinct values 0.05 apart: a step of 0.01 never changes a max */
            c.x = pool_inputs(nx, 0, 210), c.r = random_host(ny, -1, 1, 211), c.y = host(ny);
            c.arg = calloc(ny, sizeof(int32_t));
            float *dx = host(nx);
            if (max) {
                run_maxpool_forward(ref_be, &c.d, c.x, c.y, c.arg);
                run_maxpool_backward(ref_be, &c.d, c.r, c.arg, dx);
            } else {
                run_avgpool_backward(ref_be, &c.d, c.r, dx);
            }
            check_numeric_grad(max ? "maxpool" : "avgpool", c.x, dx, nx, 1e-2f, pool_loss, &c, 1e-4,
                               1e-3);
            free(c.x), free(c.r), free(c.y), free(c.arg), free(dx);
        }
}
END_TEST

typedef struct act_ctx {
    kc_act act;
    float alpha;
    float *x, *r, *y;
    size_t n;
} act_ctx;

static double act_loss(void *p) {
    act_ctx *c = p;
    run_act_forward(ref_be, c->act, c->alpha, c->x, c->y, c->n);
    return weighted_sum(c->y, c->r, c->n);
}

/* Points stay 0.05 away from kinks (0, and +-3 for hard_sigmoid). */
static float away_from_kinks(float x) {
    const float kinks[] = {0, -3, 3};
    for (int k = 0; k < 3; k++)
        if (fabsf(x - kinks[k]) < 0.05f) x = kinks[k] + (x < kinks[k] ? -0.1f : 0.1f);
    return x;
}

START_TEST(test_activation_gradients) {
    size_t n = 64;
    for (size_t a = 0; a < N_ACT; a++) {
        act_ctx c = {.act = act_cases[a].act, .alpha = act_cases[a].alpha, .n = n};
        c.x = random_host(n, -5, 5, 220), c.r = random_host(n, -1, 1, 221), c.y = host(n);
        for (size_t i = 0; i < n; i++)
            c.x[i] = away_from_kinks(c.x[i]);
        float *dx = host(n);
        run_act_forward(ref_be, c.act, c.alpha, c.x, c.y, n);
        run_act_backward(ref_be, c.act, c.alpha, c.x, c.y, c.r, dx, n);
        check_numeric_grad(act_cases[a].name, c.x, dx, n, 1e-2f, act_loss, &c, 2e-4, 2e-3);
        free(c.x), free(c.r), free(c.y), free(dx);
    }
}
END_TEST

typedef struct softmax_ctx {
    int rows, cols;
    float *x, *r, *y;
} softmax_ctx;

static double softmax_loss(void *p) {
    softmax_ctx *c = p;
    run_softmax_forward(ref_be, c->x, c->y, c->rows, c->cols);
    return weighted_sum(c->y, c->r, (size_t)c->rows * c->cols);
}

START_TEST(test_softmax_gradients) {
    softmax_ctx c = {.rows = 3, .cols = 7};
    size_t n = 21;
    c.x = random_host(n, -3, 3, 230), c.r = random_host(n, -1, 1, 231), c.y = host(n);
    float *dx = host(n);
    run_softmax_forward(ref_be, c.x, c.y, c.rows, c.cols);
    run_softmax_backward(ref_be, c.y, c.r, dx, c.rows, c.cols);
    check_numeric_grad("softmax", c.x, dx, n, 1e-2f, softmax_loss, &c, 1e-4, 1e-3);
    free(c.x), free(c.r), free(c.y), free(dx);
}
END_TEST

/* ------------------------------------------------ penalties and constraints */

static double run_penalty(const kc_backend *be, const float *x, float *g, size_t n, float l1,
                          float l2) {
    float *dx = dev_from(be, x, n), *dg = g ? dev_from(be, g, n) : NULL;
    double p = be->l1l2_penalty(dx, dg, n, l1, l2);
    if (g) dev_take(be, g, dg, n);
    be->free(dx);
    return p;
}

/* Both backends sum in the same fixed blocks: the same bits, on any thread count. */
START_TEST(test_penalty_match) {
    size_t sizes[] = {1, 63, 1000, 100003};
    float coef[][2] = {{0.01f, 0.0f}, {0.0f, 0.03f}, {0.002f, 0.005f}};
    for (int s = 0; s < 4; s++) {
        size_t n = sizes[s];
        float *x = random_host(n, -2, 2, 400), *g0 = random_host(n, -1, 1, 401);
        for (int c = 0; c < 3; c++) {
            float *gr = copy_host(g0, n), *gc = copy_host(g0, n), *gc2 = copy_host(g0, n);
            double pr = run_penalty(ref_be, x, gr, n, coef[c][0], coef[c][1]);
            cpu_be->set_threads(1);
            double pc = run_penalty(cpu_be, x, gc, n, coef[c][0], coef[c][1]);
            cpu_be->set_threads(2);
            double pc2 = run_penalty(cpu_be, x, gc2, n, coef[c][0], coef[c][1]);
            cpu_be->set_threads(0);
            double want = 0;
            for (size_t i = 0; i < n; i++)
                want += coef[c][0] * fabs(x[i]) + coef[c][1] * (double)x[i] * x[i];
            ck_assert_close(pr, want, 0, 1e-6);
            expect(pc == pr && pc2 == pr, "penalty n=%zu: cpu %.17g / %.17g, reference %.17g", n,
                   pc, pc2, pr);
            check_same("penalty grad cpu", gc, gr, n);
            check_same("penalty grad cpu 2 threads", gc2, gr, n);
            free(gr), free(gc), free(gc2);
        }
        /* without g only the value */
        ck_assert_close(run_penalty(cpu_be, x, NULL, n, 0.5f, 0.0f),
                        run_penalty(ref_be, x, NULL, n, 0.5f, 0.0f), 0, 0);
        free(x), free(g0);
    }
}
END_TEST

START_TEST(test_penalty_by_hand) {
    const float x[] = {1, -2, 0, 3};
    for (int b = 0; b < 2; b++) {
        const kc_backend *be = b ? cpu_be : ref_be;
        float g[4] = {0, 0, 0, 0.5f};
        /* 0.1 * (1 + 2 + 0 + 3) + 0.01 * (1 + 4 + 0 + 9) */
        ck_assert_close(run_penalty(be, x, g, 4, 0.1f, 0.01f), 0.74, 1e-7, 0);
        /* g += 0.1 sign(x) + 0.02 x; sign(0) = 0 */
        ck_assert_close(g[0], 0.12, 1e-7, 0);
        ck_assert_close(g[1], -0.14, 1e-7, 0);
        ck_assert_close(g[2], 0.0, 0, 0);
        ck_assert_close(g[3], 0.5 + 0.16, 1e-7, 0);
        /* a zero factor skips its term, so an infinite weight gives no 0 * inf */
        const float big[] = {INFINITY, 1};
        float gb[2] = {0, 0};
        ck_assert_close(run_penalty(be, big, gb, 2, 0.0f, 0.0f), 0.0, 0, 0);
        ck_assert_close(gb[0], 0.0, 0, 0);
        ck_assert_close(run_penalty(be, NULL, NULL, 0, 1.0f, 1.0f), 0.0, 0, 0);
    }
}
END_TEST

static void run_norm(const kc_backend *be, float *w, const int64_t *dims, int rank,
                     unsigned reduce, float lo, float hi, float rate) {
    size_t n = 1;
    for (int a = 0; a < rank; a++)
        n *= (size_t)dims[a];
    float *d = dev_from(be, w, n);
    be->norm_rescale(d, dims, rank, reduce, lo, hi, rate, 1e-7f);
    dev_take(be, w, d, n);
}

START_TEST(test_norm_rescale_match) {
    static const struct {
        int rank;
        int64_t dims[4];
        unsigned reduce;
    } cases[] = {
        {2, {300, 70}, 1u},                  /* Dense kernel, axis 0 */
        {2, {300, 70}, 2u},                  /* axis 1 */
        {2, {300, 70}, 3u},                  /* the whole matrix */
        {2, {300, 70}, 0u},                  /* every value alone */
        {3, {5, 50, 129}, 2u},               /* (outer, span, inner) */
        {4, {3, 3, 16, 33}, 7u},             /* Conv2D kernel, axes [0, 1, 2] */
        {4, {3, 3, 16, 33}, 5u},             /* axes [0, 2]: no single span */
        {4, {3, 1, 16, 33}, 5u},             /* ... unless the gap has size 1 */
    };
    float bounds[][3] = {{0.0f, 0.5f, 1.0f}, {0.9f, 1.1f, 0.3f}, {1.0f, 1.0f, 1.0f}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t n = 1;
        for (int a = 0; a < cases[k].rank; a++)
            n *= (size_t)cases[k].dims[a];
        float *w = random_host(n, -1, 1, 410 + k);
        for (int b = 0; b < 3; b++) {
            float *wr = copy_host(w, n), *wc = copy_host(w, n), *wc2 = copy_host(w, n);
            run_norm(ref_be, wr, cases[k].dims, cases[k].rank, cases[k].reduce, bounds[b][0],
                     bounds[b][1], bounds[b][2]);
            cpu_be->set_threads(1);
            run_norm(cpu_be, wc, cases[k].dims, cases[k].rank, cases[k].reduce, bounds[b][0],
                     bounds[b][1], bounds[b][2]);
            cpu_be->set_threads(2);
            run_norm(cpu_be, wc2, cases[k].dims, cases[k].rank, cases[k].reduce, bounds[b][0],
                     bounds[b][1], bounds[b][2]);
            cpu_be->set_threads(0);
            check_same("norm_rescale cpu", wc, wr, n);
            check_same("norm_rescale cpu 2 threads", wc2, wr, n);
            free(wr), free(wc), free(wc2);
        }
        free(w);
    }
}
END_TEST

START_TEST(test_norm_rescale_by_hand) {
    for (int b = 0; b < 2; b++) {
        const kc_backend *be = b ? cpu_be : ref_be;
        /* columns of a (2, 2) matrix: norms 5 and 0.5 */
        const int64_t dims[] = {2, 2};
        float w[] = {3, 0.3f, 4, 0.4f};
        run_norm(be, w, dims, 2, 1u, 0.0f, 2.0f, 1.0f); /* MaxNorm(2): 5 -> 2, 0.5 stays */
        ck_assert_close(w[0], 3 * 2 / (5 + 1e-7), 1e-6, 0);
        ck_assert_close(w[2], 4 * 2 / (5 + 1e-7), 1e-6, 0);
        ck_assert_close(w[1], 0.3 * 0.5 / (0.5 + 1e-7), 1e-6, 0);
        /* rows instead: norms |(3, .3)| and |(4, .4)| pinned to 1 */
        float u[] = {3, 0.3f, 4, 0.4f};
        run_norm(be, u, dims, 2, 2u, 1.0f, 1.0f, 1.0f);
        double r0 = sqrt(9 + 0.09), r1 = sqrt(16 + 0.16);
        ck_assert_close(u[0], 3 / (r0 + 1e-7), 1e-6, 0);
        ck_assert_close(u[3], 0.4 / (r1 + 1e-7), 1e-6, 0);
        /* MinMaxNorm(min 1, max 2, rate 0.5): norm 0.5 -> 0.5 * 1 + 0.5 * 0.5 = 0.75 */
        float m[] = {0.3f, 0.4f};
        const int64_t one[] = {2};
        run_norm(be, m, one, 1, 1u, 1.0f, 2.0f, 0.5f);
        ck_assert_close(m[0], 0.3 * 0.75 / (0.5 + 1e-7), 1e-6, 0);
        ck_assert_close(m[1], 0.4 * 0.75 / (0.5 + 1e-7), 1e-6, 0);
        /* a zero slice stays zero */
        float z[] = {0, 0};
        run_norm(be, z, one, 1, 1u, 1.0f, 1.0f, 1.0f);
        ck_assert_close(z[0], 0.0, 0, 0);
    }
}
END_TEST

/* The non_neg constraint runs relu in place. */
START_TEST(test_relu_in_place) {
    const float w[] = {-1.5f, 0.0f, 2.0f, -0.0f};
    for (int b = 0; b < 2; b++) {
        const kc_backend *be = b ? cpu_be : ref_be;
        float *d = dev_from(be, w, 4), h[4];
        be->act_forward(KC_ACT_RELU, 0.0f, d, d, 4);
        dev_take(be, h, d, 4);
        ck_assert_close(h[0], 0.0, 0, 0);
        ck_assert_close(h[1], 0.0, 0, 0);
        ck_assert_close(h[2], 2.0, 0, 0);
    }
}
END_TEST

/* ------------------------------------------------------------- determinism */

/* Same thread count, same bits; and everything but gemm-based ops gives the
 * same bits on 1 and 2 threads. */
START_TEST(test_cpu_deterministic) {
    kc_conv2d_desc d = conv_desc(conv_cases[5]);
    size_t nx = conv_x_size(&d), ny = conv_y_size(&d), nw = conv_w_size(&d);
    float *x = random_host(nx, -1, 1, 300), *w = random_host(nw, -1, 1, 301);
    float *g = random_host(ny, -1, 1, 302);
    float *y1 = host(ny), *y2 = host(ny), *dx1 = host(nx), *dx2 = host(nx);
    float *dw1 = host(nw), *dw2 = host(nw);
    for (int threads = 1; threads <= 2; threads++) {
        cpu_be->set_threads(threads);
        run_conv_forward(cpu_be, &d, x, w, y1);
        run_conv_backward_data(cpu_be, &d, g, w, dx1);
        run_conv_backward_filter(cpu_be, &d, x, g, dw1, 0.0f);
        run_conv_forward(cpu_be, &d, x, w, y2);
        run_conv_backward_data(cpu_be, &d, g, w, dx2);
        run_conv_backward_filter(cpu_be, &d, x, g, dw2, 0.0f);
        check_same("conv forward rerun", y2, y1, ny);
        check_same("conv backward data rerun", dx2, dx1, nx);
        check_same("conv backward filter rerun", dw2, dw1, nw);
    }

    size_t n = 200003;
    float *a = act_inputs(n, 310);
    float *o[2] = {host(n), host(n)}, *m[2] = {host(n), host(n)}, *ge[2] = {host(n), host(n)};
    kc_pool2d_desc pd = pool_desc(pool_cases[5]);
    size_t px = pool_x_size(&pd), py = pool_y_size(&pd);
    float *pin = random_host(px, -1, 1, 311), *p[2] = {host(py), host(py)};
    for (int t = 0; t < 2; t++) {
        cpu_be->set_threads(t + 1);
        run_act_forward(cpu_be, KC_ACT_GELU, 0, a, ge[t], n);
        run_dropout(cpu_be, a, o[t], m[t], n, 0.4f, 1, 2);
        run_avgpool_forward(cpu_be, &pd, pin, p[t]);
    }
    check_same("gelu, 1 vs 2 threads", ge[1], ge[0], n);
    check_same("dropout output, 1 vs 2 threads", o[1], o[0], n);
    check_same("dropout mask, 1 vs 2 threads", m[1], m[0], n);
    check_same("avgpool, 1 vs 2 threads", p[1], p[0], py);
    for (int t = 0; t < 2; t++)
        free(o[t]), free(m[t]), free(ge[t]), free(p[t]);
    free(a), free(pin);
    cpu_be->set_threads(0);
    free(x), free(w), free(g), free(y1), free(y2), free(dx1), free(dx2), free(dw1), free(dw2);
}
END_TEST

int main(void) {
    Suite *s = suite_create("backend");
    TCase *conf = tcase_create("conformance");
    tcase_add_unchecked_fixture(conf, setup, NULL);
    tcase_set_timeout(conf, 120);
    tcase_add_test(conf, test_lookup_by_name);
    tcase_add_test(conf, test_tables_complete);
    tcase_add_test(conf, test_memory);
    tcase_add_test(conf, test_elementwise);
    tcase_add_test(conf, test_gemm);
    tcase_add_test(conf, test_bias);
    tcase_add_test(conf, test_activations);
    tcase_add_test(conf, test_softmax);
    tcase_add_test(conf, test_conv2d);
    tcase_add_test(conf, test_conv2d_without_workspace);
    tcase_add_test(conf, test_pooling);
    tcase_add_test(conf, test_dropout);
    tcase_add_test(conf, test_optimizers_match);
    tcase_add_test(conf, test_more_optimizers_match);
    tcase_add_test(conf, test_clip_decay_match);
    tcase_add_test(conf, test_cpu_deterministic);
    tcase_add_test(conf, test_penalty_match);
    tcase_add_test(conf, test_norm_rescale_match);
    tcase_add_test(conf, test_relu_in_place);
    suite_add_tcase(s, conf);

    TCase *hand = tcase_create("by_hand");
    tcase_add_unchecked_fixture(hand, setup, NULL);
    tcase_add_test(hand, test_conv_by_hand);
    tcase_add_test(hand, test_pool_by_hand);
    tcase_add_test(hand, test_activations_by_hand);
    tcase_add_test(hand, test_optimizers_by_hand);
    tcase_add_test(hand, test_more_optimizers_by_hand);
    tcase_add_test(hand, test_penalty_by_hand);
    tcase_add_test(hand, test_norm_rescale_by_hand);
    suite_add_tcase(s, hand);

    TCase *grad = tcase_create("gradients");
    tcase_add_unchecked_fixture(grad, setup, NULL);
    tcase_set_timeout(grad, 120);
    tcase_add_test(grad, test_conv2d_gradients);
    tcase_add_test(grad, test_pool_gradients);
    tcase_add_test(grad, test_activation_gradients);
    tcase_add_test(grad, test_softmax_gradients);
    suite_add_tcase(s, grad);
    return kc_test_run(s);
}

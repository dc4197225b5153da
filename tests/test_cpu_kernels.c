/* The cpu backend's own kernel paths: the indirect GEMM at every instruction
 * set this CPU has, convolution through it (and through the portable
 * im2col path) against the reference backend, the tiled max pooling, and the
 * vectorised ReLU / bias kernels against their scalar definitions, bit for
 * bit where the definition allows. The cpu and reference devices come from
 * the registry (tests/devices.h); the kernels called directly split their
 * loops by the thread count of the cpu device that ran an op last. */
#include "core/backend.h"
#include "core/cpu/cpu.h"
#include "core/ops.h"
#include "core/rng.h"
#include "tests/convcase.h"
#include "tests/devices.h"
#include "tests/testutil.h"

#include <stdint.h>

#define expect(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                                    \
    } while (0)

/* The cpu device opened with `threads` (0: all cores). */
static kc_device *cpu_dev(int threads) {
    kc_device *d = kc_test_device_named("cpu", threads);
    ck_assert_msg(d != NULL, "the cpu backend does not open with %d threads", threads);
    return d;
}

/* Runs a one-element op on the cpu device of `threads`, which makes that
 * count the one the kernels called directly use (kc_cpu_threads). */
static void use_threads(int threads) {
    kc_device *d = cpu_dev(threads);
    kc_buf b = kc_test_alloc(d, sizeof(float));
    ck_assert_int_eq(kc_fill(d, b, 0.0f, 1), KC_OK);
    kc_free(d, &b);
    if (threads)
        ck_assert_int_eq(kc_cpu_threads(), threads);
    else
        ck_assert_int_ge(kc_cpu_threads(), 1);
}

static float *rnd(size_t n, uint64_t stream) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++)
        p[i] = 2.0f * kc_rng_uniform(77, stream, i) - 1.0f;
    return p;
}

static float *zeros(size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    ck_assert_ptr_nonnull(p);
    return p;
}

static void expect_close(const char *what, const float *got, const double *want, size_t n,
                         double tol) {
    for (size_t i = 0; i < n; i++)
        expect(fabs(got[i] - want[i]) <= tol * (1.0 + fabs(want[i])),
               "%s[%zu] = %.9g, expected %.9g", what, i, got[i], want[i]);
}

static void expect_same(const char *what, const float *got, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        expect(!memcmp(&got[i], &want[i], sizeof(float)), "%s[%zu] = %.9g, expected exactly %.9g",
               what, i, got[i], want[i]);
}

/* The SIMD levels this CPU can run (the portable one has no igemm). */
static int simd_levels(int *out) {
    int n = 0, prev = kc_cpu_set_isa(-1), best = kc_cpu_isa();
    kc_cpu_set_isa(prev);
    for (int l = KC_CPU_AVX2; l <= best; l++)
        out[n++] = l;
    return n;
}

/* ------------------------------------------------------------ indirect gemm */

/* C = beta C + A B with A(i, k) = a[abase[k] + aoff[i]]: here A is stored
 * transposed (k x m, row stride lda), so aoff[i] = i and abase[k] = k lda;
 * or, strided, the same A through rs = 1, cs = lda without the tables. */
static void igemm_case(int m, int n, int k, float beta, int threads, int strided) {
    int lda = m + 3;
    float *a = rnd((size_t)k * lda + 1, 1), *b = rnd((size_t)k * n + 1, 2);
    float *c0 = rnd((size_t)m * n, 3), *c = zeros((size_t)m * n);
    int *aoff = malloc((m ? m : 1) * sizeof *aoff), *abase = malloc((k ? k : 1) * sizeof *abase);
    double *want = malloc(((size_t)m * n + 1) * sizeof *want);
    ck_assert(aoff && abase && want);
    for (int i = 0; i < m; i++)
        aoff[i] = i;
    for (int q = 0; q < k; q++)
        abase[q] = q * lda;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = beta == 0.0f ? 0.0 : (double)beta * c0[(size_t)i * n + j];
            for (int q = 0; q < k; q++)
                s += (double)a[(size_t)q * lda + i] * b[(size_t)q * n + j];
            want[(size_t)i * n + j] = s;
        }
    for (size_t i = 0; i < (size_t)m * n; i++) /* beta 0 must not read C */
        c[i] = beta == 0.0f ? NAN : c0[i];
    use_threads(threads);
    kc_cpu_igemm_args g = {.m = m,
                           .n = n,
                           .k = k,
                           .a = a,
                           .aoff = aoff,
                           .abase = abase,
                           .b = b,
                           .ldb = n,
                           .beta = beta,
                           .c = c,
                           .ldc = n};
    if (strided) {
        g.aoff = g.abase = NULL;
        g.rs = 1;
        g.cs = lda;
    }
    ck_assert_int_eq(kc_cpu_igemm(&g), 1);
    char what[96];
    snprintf(what, sizeof what, "igemm isa %d m%d n%d k%d beta %g%s", kc_cpu_isa(), m, n, k, beta,
             strided ? " strided" : "");
    expect_close(what, c, want, (size_t)m * n, 2e-5 * (k + 1));
    free(a), free(b), free(c0), free(c), free(aoff), free(abase), free(want);
}

START_TEST(test_igemm_shapes) {
    int levels[3], nl = simd_levels(levels);
    static const int ms[] = {1, 5, 13, 37}, ns[] = {1, 7, 16, 17, 33, 64, 65, 130};
    static const int ks[] = {0, 1, 9, 50, 127, 128, 129, 300};
    static const float betas[] = {0.0f, 1.0f, 0.5f};
    for (int l = 0; l < nl; l++) {
        kc_cpu_set_isa(levels[l]);
        for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
            for (size_t j = 0; j < sizeof ns / sizeof *ns; j++)
                for (size_t q = 0; q < sizeof ks / sizeof *ks; q++)
                    for (int strided = 0; strided < 2; strided++)
                        igemm_case(ms[i], ns[j], ks[q], betas[(i + j + q) % 3], 1 + (int)(j % 2),
                                   strided);
    }
    kc_cpu_set_isa(-1);
    use_threads(0);
}
END_TEST

/* A long reduction (longer than the spans igemm runs every task over before
 * the next) gives exactly what one block of 128 steps after another gives,
 * each call adding its block to C: the summation order depends on k alone,
 * and neither on the spans nor on the thread count. */
static void igemm_span_case(int strided, int threads) {
    int m = 64, n = 80, k = 1000, lda = m + 3;
    float *a = rnd((size_t)k * lda, 11), *b = rnd((size_t)k * n, 12), *c0 = rnd((size_t)m * n, 13);
    float *one = zeros((size_t)m * n), *blocks = zeros((size_t)m * n);
    int *aoff = malloc(m * sizeof *aoff), *abase = malloc(k * sizeof *abase);
    ck_assert(aoff && abase);
    for (int i = 0; i < m; i++)
        aoff[i] = i;
    for (int q = 0; q < k; q++)
        abase[q] = q * lda;
    memcpy(one, c0, (size_t)m * n * sizeof *one);
    memcpy(blocks, c0, (size_t)m * n * sizeof *blocks);
    use_threads(threads);
    kc_cpu_igemm_args g = {.m = m,
                           .n = n,
                           .k = k,
                           .a = a,
                           .aoff = aoff,
                           .abase = abase,
                           .b = b,
                           .ldb = n,
                           .beta = 0.5f,
                           .c = one,
                           .ldc = n};
    if (strided) {
        g.aoff = g.abase = NULL;
        g.rs = 1;
        g.cs = lda;
    }
    ck_assert_int_eq(kc_cpu_igemm(&g), 1);
    for (int k0 = 0; k0 < k; k0 += 128) {
        kc_cpu_igemm_args p = g;
        p.k = k - k0 < 128 ? k - k0 : 128;
        p.beta = k0 ? 1.0f : 0.5f;
        p.c = blocks;
        p.b = b + (size_t)k0 * n;
        p.threads = 1;
        if (strided)
            p.a = a + (size_t)k0 * lda;
        else
            p.abase = abase + k0;
        ck_assert_int_eq(kc_cpu_igemm(&p), 1);
    }
    char what[80];
    snprintf(what, sizeof what, "igemm isa %d k %d threads %d%s", kc_cpu_isa(), k, threads,
             strided ? " strided" : "");
    expect_same(what, one, blocks, (size_t)m * n);
    free(a), free(b), free(c0), free(one), free(blocks), free(aoff), free(abase);
}

START_TEST(test_igemm_long_reduction_bits) {
    int levels[3], nl = simd_levels(levels);
    for (int l = 0; l < nl; l++) {
        kc_cpu_set_isa(levels[l]);
        for (int strided = 0; strided < 2; strided++)
            for (int threads = 1; threads <= 2; threads++)
                igemm_span_case(strided, threads);
    }
    kc_cpu_set_isa(-1);
    use_threads(0);
}
END_TEST

/* kc_cpu_gemm with a transposed B, or alpha != 1, runs the SIMD kernels on
 * alpha op(B) laid out as k rows of n: exactly the product with that matrix
 * passed plainly, the same at 1 and 2 threads, and close to the sum in
 * doubles. */
static void gemm_packed_case(int ta, int m, int n, int k, float alpha, float beta, int threads) {
    int lda = ta ? m : k;
    float *a = rnd((size_t)m * k, 21), *bt = rnd((size_t)n * k, 22), *c0 = rnd((size_t)m * n, 23);
    float *b = zeros((size_t)k * n), *got = zeros((size_t)m * n), *plain = zeros((size_t)m * n);
    double *want = malloc(((size_t)m * n + 1) * sizeof *want);
    ck_assert_ptr_nonnull(want);
    for (int q = 0; q < k; q++) /* B(q, j) = alpha bt[j k + q] */
        for (int j = 0; j < n; j++)
            b[(size_t)q * n + j] = alpha * bt[(size_t)j * k + q];
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = beta == 0.0f ? 0.0 : (double)beta * c0[(size_t)i * n + j];
            for (int q = 0; q < k; q++) {
                float aiq = ta ? a[(size_t)q * lda + i] : a[(size_t)i * lda + q];
                s += (double)alpha * aiq * bt[(size_t)j * k + q];
            }
            want[(size_t)i * n + j] = s;
        }
    for (size_t i = 0; i < (size_t)m * n; i++) {
        got[i] = beta == 0.0f ? NAN : c0[i];
        plain[i] = c0[i];
    }
    use_threads(threads);
    kc_cpu_gemm(ta, 1, m, n, k, alpha, a, lda, bt, k, beta, got, n);
    use_threads(1);
    kc_cpu_gemm(ta, 0, m, n, k, 1.0f, a, lda, b, n, beta, plain, n);
    char what[96];
    snprintf(what, sizeof what, "gemm isa %d ta %d tb m%d n%d k%d alpha %g threads %d",
             kc_cpu_isa(), ta, m, n, k, alpha, threads);
    expect_same(what, got, plain, (size_t)m * n);
    expect_close(what, got, want, (size_t)m * n, 2e-5 * (k + 1));
    if (alpha != 1.0f) { /* alpha on a plain B takes the same path */
        for (size_t i = 0; i < (size_t)m * n; i++)
            got[i] = c0[i];
        for (int q = 0; q < k; q++)
            for (int j = 0; j < n; j++)
                b[(size_t)q * n + j] = bt[(size_t)j * k + q];
        kc_cpu_gemm(ta, 0, m, n, k, alpha, a, lda, b, n, beta, got, n);
        expect_same(what, got, plain, (size_t)m * n);
    }
    free(a), free(bt), free(c0), free(b), free(got), free(plain), free(want);
}

START_TEST(test_gemm_transposed_b) {
    int levels[3], nl = simd_levels(levels);
    static const int shapes[][3] = {
        {1, 1, 1}, {3, 7, 5}, {13, 33, 40}, {37, 65, 129}, {64, 80, 900}};
    static const float alphas[] = {1.0f, 0.5f, -1.25f}, betas[] = {0.0f, 1.0f, 0.5f};
    for (int l = 0; l < nl; l++) {
        kc_cpu_set_isa(levels[l]);
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int ta = 0; ta < 2; ta++)
                for (int v = 0; v < 3; v++)
                    gemm_packed_case(ta, shapes[s][0], shapes[s][1], shapes[s][2], alphas[v],
                                     betas[(s + ta + v) % 3], 1 + (int)((s + v) % 2));
    }
    kc_cpu_set_isa(-1);
    use_threads(0);
}
END_TEST

/* Without a SIMD level igemm declines and leaves C alone. */
START_TEST(test_igemm_portable_declines) {
    float a[4] = {1, 2, 3, 4}, b[4] = {1, 0, 0, 1}, c[4] = {7, 7, 7, 7};
    int off[2] = {0, 2}, base[2] = {0, 1};
    kc_cpu_set_isa(KC_CPU_PORTABLE);
    ck_assert_int_eq(kc_cpu_isa(), KC_CPU_PORTABLE);
    kc_cpu_igemm_args g = {.m = 2,
                           .n = 2,
                           .k = 2,
                           .a = a,
                           .aoff = off,
                           .abase = base,
                           .b = b,
                           .ldb = 2,
                           .beta = 0.0f,
                           .c = c,
                           .ldc = 2};
    ck_assert_int_eq(kc_cpu_igemm(&g), 0);
    ck_assert_float_eq(c[0], 7.0f);
    kc_cpu_set_isa(-1);
}
END_TEST

/* ------------------------------------------------------------- convolution */

static const conv_case convs[] = {
    {4, 28, 28, 1, 3, 3, 32, 1, 1, 1, 1, 0},  /* the seed CNN's first conv */
    {20, 28, 28, 2, 3, 3, 8, 1, 1, 1, 1, 1},  /* filter gradient split into image groups */
    {3, 13, 13, 32, 3, 3, 64, 1, 1, 1, 1, 0}, /* and its second */
    {2, 9, 8, 5, 3, 3, 7, 1, 1, 1, 1, 1},     /* same padding, odd channel counts */
    {2, 10, 9, 3, 4, 2, 70, 1, 1, 1, 1, 1},   /* even kernel, more than 64 filters */
    {2, 11, 10, 4, 3, 3, 6, 1, 1, 2, 2, 1},   /* dilation */
    {3, 7, 9, 3, 3, 2, 5, 2, 1, 1, 1, 1},     /* stride 2: backward data takes im2col */
    {2, 8, 8, 17, 1, 1, 3, 1, 1, 1, 1, 0},    /* 1x1 */
    {1, 9, 9, 2, 3, 3, 2, 3, 3, 1, 1, 0},     /* stride 3 valid: rows no window reads */
};

static void conv_pass(kc_device *dev, const kc_conv2d_desc *d, const float *x, const float *w,
                      const float *g, const float *dw0, float *y, float *dx, float *dw) {
    size_t nx = (size_t)d->n * d->h * d->w * d->c, ny = (size_t)d->n * d->oh * d->ow * d->oc;
    size_t nw = (size_t)d->kh * d->kw * d->c * d->oc;
    kc_buf X = kc_test_from(dev, x, nx), W = kc_test_from(dev, w, nw), G = kc_test_from(dev, g, ny);
    kc_buf Y = kc_test_alloc(dev, ny * 4), DX = kc_test_alloc(dev, nx * 4);
    kc_buf DW = kc_test_from(dev, dw0, nw);
    size_t wsb = kc_conv2d_workspace(dev, d);
    kc_buf ws = wsb ? kc_test_alloc(dev, wsb) : KC_BUF_NULL;
    kc_conv2d_forward(dev, d, X, W, Y, ws);
    kc_conv2d_backward_data(dev, d, G, W, DX, ws);
    kc_conv2d_backward_filter(dev, d, X, G, DW, 1.0f, ws);
    kc_test_ok(dev, "conv");
    kc_test_get(dev, y, Y, ny * 4), kc_test_get(dev, dx, DX, nx * 4);
    kc_test_get(dev, dw, DW, nw * 4);
    kc_free(dev, &X), kc_free(dev, &W), kc_free(dev, &G), kc_free(dev, &Y), kc_free(dev, &DX);
    kc_free(dev, &DW), kc_free(dev, &ws);
}

static void widen(const float *f, double *d, size_t n) {
    for (size_t i = 0; i < n; i++)
        d[i] = f[i];
}

START_TEST(test_conv_every_path) {
    int levels[4] = {KC_CPU_PORTABLE}, nl = 1 + simd_levels(levels + 1);
    for (size_t ci = 0; ci < sizeof convs / sizeof *convs; ci++) {
        kc_conv2d_desc d = conv_desc(convs[ci]);
        size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.oh * d.ow * d.oc;
        size_t nw = (size_t)d.kh * d.kw * d.c * d.oc;
        float *x = rnd(nx, 10 + ci), *w = rnd(nw, 20 + ci), *g = rnd(ny, 30 + ci);
        float *dw0 = rnd(nw, 40 + ci);
        float *ry = zeros(ny), *rdx = zeros(nx), *rdw = zeros(nw);
        double *wy = malloc(ny * 8), *wdx = malloc(nx * 8), *wdw = malloc(nw * 8);
        conv_pass(kc_test_reference(), &d, x, w, g, dw0, ry, rdx, rdw);
        widen(ry, wy, ny), widen(rdx, wdx, nx), widen(rdw, wdw, nw);
        float *y1 = zeros(ny), *dx1 = zeros(nx), *dw1 = zeros(nw);
        float *y2 = zeros(ny), *dx2 = zeros(nx), *dw2 = zeros(nw);
        for (int l = 0; l < nl; l++) {
            kc_cpu_set_isa(levels[l]);
            char what[128];
            snprintf(what, sizeof what, "conv case %zu isa %d", ci, kc_cpu_isa());
            conv_pass(cpu_dev(1), &d, x, w, g, dw0, y1, dx1, dw1);
            expect_close(what, y1, wy, ny, 1e-4);
            expect_close(what, dx1, wdx, nx, 1e-4);
            expect_close(what, dw1, wdw, nw, 1e-4);
            if (levels[l] == KC_CPU_PORTABLE) continue;
            /* the SIMD path gives the same bits on any thread count */
            conv_pass(cpu_dev(2), &d, x, w, g, dw0, y2, dx2, dw2);
            expect_same("conv forward 1 vs 2 threads", y2, y1, ny);
            expect_same("conv backward data 1 vs 2 threads", dx2, dx1, nx);
            expect_same("conv backward filter 1 vs 2 threads", dw2, dw1, nw);
        }
        kc_cpu_set_isa(-1);
        free(x), free(w), free(g), free(dw0), free(ry), free(rdx), free(rdw);
        free(wy), free(wdx), free(wdw), free(y1), free(dx1), free(dw1), free(y2), free(dx2),
            free(dw2);
    }
}
END_TEST

/* ----------------------------------------------------------------- pooling */

/* Tiled windows (stride = pool, no padding) take the vectorised path; ties
 * everywhere check the first-maximum rule, odd channel counts the tails. */
START_TEST(test_maxpool_tiled) {
    static const int shapes[][8] = {
        /* n, h, w, c, pool h, pool w, stride h, stride w */
        {2, 26, 26, 32, 2, 2, 2, 2}, /* the seed CNN's first pool, threaded */
        {2, 11, 13, 3, 2, 2, 2, 2},  /* a row and a column no window covers */
        {1, 9, 9, 11, 3, 3, 3, 3},   /* 3x3 windows tiling the input */
        {3, 6, 8, 17, 2, 2, 2, 2},   /* a channel tail after two vectors */
        {2, 10, 11, 40, 3, 2, 3, 2}, /* a tall window, five channel vectors */
        {1, 7, 9, 5, 1, 4, 1, 4},    /* a wide window */
    };
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int ties = 0; ties < 2; ties++) {
            kc_pool2d_desc d = {.n = shapes[s][0],
                                .h = shapes[s][1],
                                .w = shapes[s][2],
                                .c = shapes[s][3],
                                .ph = shapes[s][4],
                                .pw = shapes[s][5],
                                .sh = shapes[s][6],
                                .sw = shapes[s][7]};
            d.oh = (d.h - d.ph) / d.sh + 1;
            d.ow = (d.w - d.pw) / d.sw + 1;
            size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.oh * d.ow * d.c;
            float *x = rnd(nx, 50 + s), *g = rnd(ny, 60 + s);
            if (ties)
                for (size_t i = 0; i < nx; i++)
                    x[i] = (float)kc_rng_below(3, 70 + s, i, 3);
            float *y[2], *dx[2];
            int32_t *arg[2];
            for (int b = 0; b < 2; b++) {
                kc_device *be = b ? cpu_dev(0) : kc_test_reference();
                kc_buf X = kc_test_from(be, x, nx), Y = kc_test_alloc(be, ny * 4);
                kc_buf G = kc_test_from(be, g, ny), DX = kc_test_alloc(be, nx * 4);
                kc_buf A = kc_test_alloc(be, ny * 4);
                kc_fill(be, DX, NAN, nx); /* backward must write every cell */
                kc_maxpool2d_forward(be, &d, X, Y, A);
                kc_maxpool2d_backward(be, &d, G, A, DX);
                kc_test_ok(be, "maxpool");
                y[b] = zeros(ny), dx[b] = zeros(nx), arg[b] = malloc(ny * 4);
                kc_test_get(be, y[b], Y, ny * 4), kc_test_get(be, dx[b], DX, nx * 4);
                kc_test_get(be, arg[b], A, ny * 4);
                kc_free(be, &X), kc_free(be, &Y), kc_free(be, &G), kc_free(be, &DX);
                kc_free(be, &A);
            }
            expect_same("maxpool forward", y[1], y[0], ny);
            for (size_t i = 0; i < ny; i++)
                expect(arg[1][i] == arg[0][i], "argmax[%zu] = %d, expected %d", i, arg[1][i],
                       arg[0][i]);
            expect_same("maxpool backward", dx[1], dx[0], nx);
            for (int b = 0; b < 2; b++)
                free(y[b]), free(dx[b]), free(arg[b]);
            free(x), free(g);
        }
}
END_TEST

/* ------------------------------------------------------ ReLU, bias kernels */

START_TEST(test_relu_bits) {
    for (size_t n = 0; n < 70; n++)
        for (size_t off = 0; off < 3; off++) {
            float *x = rnd(n + off, 80 + n), *dy = rnd(n + off, 90 + n);
            if (n > 3) x[off] = NAN, x[off + 1] = -0.0f, x[off + 2] = 0.0f, x[off + 3] = INFINITY;
            float *y = zeros(n + off), *dx = zeros(n + off), *want = zeros(n + off),
                  *wantd = zeros(n + off);
            for (size_t i = off; i < n + off; i++) {
                want[i] = x[i] > 0.0f ? x[i] : 0.0f;
                wantd[i] = x[i] > 0.0f ? dy[i] : 0.0f;
            }
            kc_cpu_relu_forward(x + off, y + off, n);
            kc_cpu_relu_backward(x + off, dy + off, dx + off, n);
            expect_same("relu", y, want, n + off);
            expect_same("relu gradient", dx, wantd, n + off);
            free(x), free(dy), free(y), free(dx), free(want), free(wantd);
        }
    /* and on the threaded split, past the single-thread size */
    size_t n = 300001;
    float *x = rnd(n, 99), *y = zeros(n);
    use_threads(2);
    kc_cpu_relu_forward(x, y, n);
    use_threads(0);
    for (size_t i = 0; i < n; i++)
        expect(y[i] == (x[i] > 0.0f ? x[i] : 0.0f), "relu[%zu] on 2 threads", i);
    free(x), free(y);
}
END_TEST

START_TEST(test_bias_bits) {
    static const int cols_list[] = {1, 7, 16, 32, 63, 64, 65, 130};
    static const float betas[] = {0.0f, 1.0f, 0.5f};
    for (size_t ci = 0; ci < sizeof cols_list / sizeof *cols_list; ci++)
        for (int rows = 0; rows < 40; rows += 13) {
            int cols = cols_list[ci];
            size_t n = (size_t)rows * cols;
            float *y = rnd(n, 100 + ci), *b = rnd(cols, 110 + ci), *want = zeros(n);
            for (size_t i = 0; i < n; i++)
                want[i] = y[i] + b[i % cols];
            kc_cpu_bias_add(y, b, rows, cols);
            expect_same("bias add", y, want, n);
            float beta = betas[ci % 3];
            float *db = rnd(cols, 120 + ci), *dbw = zeros(cols);
            for (int j = 0; j < cols; j++) { /* the definition: rows top to bottom in double */
                double s = 0;
                for (int r = 0; r < rows; r++)
                    s += y[(size_t)r * cols + j];
                dbw[j] = (float)((beta == 0.0f ? 0.0 : (double)beta * db[j]) + s);
            }
            kc_cpu_bias_grad(db, y, rows, cols, beta);
            expect_same("bias gradient", db, dbw, cols);
            free(y), free(b), free(want), free(db), free(dbw);
        }
}
END_TEST

/* Past the threaded size, narrow gradients are split into 16-column blocks
 * across threads: every split must give the definition's bits. */
START_TEST(test_bias_grad_split) {
    static const int cols_list[] = {32, 40, 72, 200};
    int rows = 1500;
    for (size_t ci = 0; ci < sizeof cols_list / sizeof *cols_list; ci++) {
        int cols = cols_list[ci];
        float *dy = rnd((size_t)rows * cols, 130 + ci), *want = zeros(cols);
        for (int j = 0; j < cols; j++) { /* the definition: rows top to bottom in double */
            double s = 0;
            for (int r = 0; r < rows; r++)
                s += dy[(size_t)r * cols + j];
            want[j] = (float)s;
        }
        for (int threads = 1; threads <= 3; threads++) {
            float *db = rnd(cols, 140 + ci);
            use_threads(threads);
            kc_cpu_bias_grad(db, dy, rows, cols, 0.0f);
            expect_same("split bias gradient", db, want, cols);
            free(db);
        }
        use_threads(0);
        free(dy), free(want);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("cpu_kernels");
    TCase *t = tcase_create("kernels");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_igemm_shapes);
    tcase_add_test(t, test_igemm_portable_declines);
    tcase_add_test(t, test_igemm_long_reduction_bits);
    tcase_add_test(t, test_gemm_transposed_b);
    tcase_add_test(t, test_conv_every_path);
    tcase_add_test(t, test_maxpool_tiled);
    tcase_add_test(t, test_relu_bits);
    tcase_add_test(t, test_bias_bits);
    tcase_add_test(t, test_bias_grad_split);
    suite_add_tcase(s, t);
    return kc_test_run(s);
}

/* cpu activations and softmax in float32: one loop per activation, so the
 * simple ones vectorise and none branches on the kind per element. Sigmoid
 * and tanh, the recurrent layers' gates, run on vector polynomials (below)
 * instead of libm's scalar calls. */
#include "core/cpu/cpu.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define SELU_ALPHA 1.6732632423543772848f
#define SELU_SCALE 1.0507009873554804934f
#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

/* Runs stmt for i in [0, n) on the backend's threads; transcendental loops
 * pay for threads sooner than plain arithmetic. */
// clang-format off
#define CPU_MAP(n, min_par, stmt)                                                           \
    do {                                                                                    \
        int nt_ = kc_cpu_threads();                                                         \
        size_t n_ = (n), min_ = (min_par);                                                  \
        _Pragma("omp parallel for simd schedule(static) num_threads(nt_) if (n_ >= min_)") \
        for (size_t i = 0; i < n_; i++) {                                                   \
            stmt;                                                                           \
        }                                                                                   \
    } while (0)
// clang-format on

#define CHEAP KC_CPU_PAR_MIN
#define COSTLY (KC_CPU_PAR_MIN / 8)

static inline float sigmoidf(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

static inline float softplusf(float x) {
    return (x > 0.0f ? x : 0.0f) + log1pf(expf(-fabsf(x)));
}

static inline float hard_sigmoidf(float x) {
    float v = x / 6.0f + 0.5f;
    return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
}

static inline float relu6f(float x) {
    return x > 0.0f ? (x < 6.0f ? x : 6.0f) : 0.0f;
}

/* relu6(x + 3) / 6 + x relu6'(x + 3) / 6 */
static inline float hard_silu_slope(float x) {
    return x <= -3.0f ? 0.0f : (x >= 3.0f ? 1.0f : (2.0f * x + 3.0f) / 6.0f);
}

static inline float mish_slope(float x) {
    float t = tanhf(softplusf(x));
    return t + x * (1.0f - t * t) * sigmoidf(x);
}

/* 1 + erf(x/sqrt2) written as erfc(-x/sqrt2), which keeps its relative
 * accuracy for negative x instead of cancelling. */
static inline float geluf(float x) {
    return 0.5f * x * erfcf(-x * INV_SQRT2);
}

static inline float gelu_slope(float x) {
    return 0.5f * erfcf(-x * INV_SQRT2) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
}

/* ---- sigmoid and tanh on 16 floats at a time ----
 * exp(x) for x <= 0 is Cephes's expf: x = n ln2 + r with |r| <= ln2 / 2 (ln2
 * in two parts, so r keeps its bits), exp(r) by its degree-6 polynomial, 2^n put
 * into the exponent bits; below -87.3 (where exp(x) leaves the normal range)
 * it is 0. tanh(|x|) is Cephes's odd polynomial below 0.625 and (1 - e) /
 * (1 + e), e = exp(-2|x|), above; sigmoid is 1 / (1 + e) or e / (1 + e),
 * e = exp(-|x|). Each is within a few float ulps of the exact value. No
 * operation is contracted (ISO C, no FMA), so every instruction set's clone,
 * every thread split and the tail (run through the same vector code) give
 * the same bits. NaN stays NaN. The helpers take vectors by address (no
 * vector crosses a call by value). */

#pragma GCC diagnostic ignored "-Wpsabi" /* vectors are returned only by inlined helpers */

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));

#define VCLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define VSPLAT(c) ((v16f){0} + (c))
#define VSEL(m, a, b) ((v16f)(((v16i)(a) & (m)) | ((v16i)(b) & ~(m))))

static inline __attribute__((always_inline)) v16f vexp_neg(const v16f *px) {
    v16f x = *px;
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    v16i under = x < VSPLAT(-87.3f);
    v16f k = x * VSPLAT(1.44269504088896341f) + VSPLAT(magic);
    v16f n = k - VSPLAT(magic);
    v16f r = x - n * VSPLAT(0.693359375f);
    r = r - n * VSPLAT(-2.12194440e-4f);
    v16f p = VSPLAT(1.9875691500e-4f);
    p = p * r + VSPLAT(1.3981999507e-3f);
    p = p * r + VSPLAT(8.3334519073e-3f);
    p = p * r + VSPLAT(4.1665795894e-2f);
    p = p * r + VSPLAT(1.6666665459e-1f);
    p = p * r + VSPLAT(5.0000001201e-1f);
    p = p * (r * r) + r + VSPLAT(1.0f);
    /* n sits in the low mantissa bits of k */
    v16u e = ((v16u)k - 0x4B400000u + 127u) << 23;
    v16f y = p * (v16f)e;
    return VSEL(under, VSPLAT(0.0f), y);
}

static inline __attribute__((always_inline)) v16f vabs(const v16f *x) {
    return (v16f)((v16i)*x & 0x7fffffff);
}

static inline __attribute__((always_inline)) v16f vsigmoid(const v16f *px) {
    v16f x = *px, m = -vabs(px), e = vexp_neg(&m);
    v16f num = VSEL(x >= VSPLAT(0.0f), VSPLAT(1.0f), e);
    v16f y = num / (VSPLAT(1.0f) + e);
    return VSEL(x == x, y, x);
}

/* tanh(|x|), then the sign of x (zeros keep theirs) */
static inline __attribute__((always_inline)) v16f vtanh(const v16f *px) {
    v16f x = *px, ax = vabs(px), z = x * x;
    v16f p = VSPLAT(-5.70498872745e-3f);
    p = p * z + VSPLAT(2.06390887954e-2f);
    p = p * z + VSPLAT(-5.37397155531e-2f);
    p = p * z + VSPLAT(1.33314422036e-1f);
    p = p * z + VSPLAT(-3.33332819422e-1f);
    v16f small = p * z * ax + ax;
    v16f m2 = VSPLAT(-2.0f) * ax, e = vexp_neg(&m2);
    v16f big = (VSPLAT(1.0f) - e) / (VSPLAT(1.0f) + e);
    v16f y = VSEL(ax < VSPLAT(0.625f), small, big);
    y = (v16f)((v16i)y | ((v16i)x & (int32_t)0x80000000));
    return VSEL(x == x, y, x);
}

enum { V_SIGMOID, V_TANH };

/* y[0, n) = act(x): whole vectors, then the tail padded into one more */
VCLONES static void vact_span(int kind, const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v16f v;
        memcpy(&v, x + i, sizeof v);
        v = kind == V_SIGMOID ? vsigmoid(&v) : vtanh(&v);
        memcpy(y + i, &v, sizeof v);
    }
    if (i < n) {
        v16f v = {0};
        memcpy(&v, x + i, (n - i) * sizeof(float));
        v = kind == V_SIGMOID ? vsigmoid(&v) : vtanh(&v);
        memcpy(y + i, &v, (n - i) * sizeof(float));
    }
}

/* dx = dy act'(x) from y = act(x): sigmoid's dy (y (1 - y)), tanh's
 * dy (1 - y y), the scalar expressions of kc_cpu_act_backward on whole
 * vectors (so the same bits), the tail one by one. */
VCLONES static void vgrad_span(int kind, const float *y, const float *dy, float *dx, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v16f v, g;
        memcpy(&v, y + i, sizeof v);
        memcpy(&g, dy + i, sizeof g);
        v16f r = kind == V_SIGMOID ? g * (v * (VSPLAT(1.0f) - v)) : g * (VSPLAT(1.0f) - v * v);
        memcpy(dx + i, &r, sizeof r);
    }
    for (; i < n; i++)
        dx[i] = kind == V_SIGMOID ? dy[i] * (y[i] * (1.0f - y[i])) : dy[i] * (1.0f - y[i] * y[i]);
}

/* Elementwise, so spans of whole vectors go to threads only when each has
 * more than waking a thread costs; dy NULL runs the forward. */
static void vact_map(int kind, const float *x, const float *dy, float *y, size_t n) {
    int nt = kc_cpu_threads();
    if ((size_t)nt * KC_CPU_PAR_MIN > n) nt = (int)(n / KC_CPU_PAR_MIN);
    if (nt < 1) nt = 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        size_t t = (size_t)omp_get_thread_num(), p = (size_t)omp_get_num_threads();
        size_t lo = n / 16 * t / p * 16, hi = t == p - 1 ? n : n / 16 * (t + 1) / p * 16;
        if (hi > lo && dy)
            vgrad_span(kind, x + lo, dy + lo, y + lo, hi - lo);
        else if (hi > lo)
            vact_span(kind, x + lo, y + lo, hi - lo);
    }
}

void kc_cpu_act_forward(kc_act act, float a, const float *x, float *y, size_t n) {
    switch (act) {
    case KC_ACT_SOFTMAX: /* not elementwise: the whole buffer is one row */
        if (n) kc_cpu_softmax_forward(x, y, 1, (int)n);
        break;
    case KC_ACT_RELU:
        kc_cpu_relu_forward(x, y, n);
        break;
    case KC_ACT_SIGMOID:
        vact_map(V_SIGMOID, x, NULL, y, n);
        break;
    case KC_ACT_TANH:
        vact_map(V_TANH, x, NULL, y, n);
        break;
    case KC_ACT_ELU:
        CPU_MAP(n, COSTLY, y[i] = x[i] > 0.0f ? x[i] : a * expm1f(x[i]));
        break;
    case KC_ACT_SELU:
        CPU_MAP(n, COSTLY, y[i] = SELU_SCALE * (x[i] > 0.0f ? x[i] : SELU_ALPHA * expm1f(x[i])));
        break;
    case KC_ACT_SOFTPLUS:
        CPU_MAP(n, COSTLY, y[i] = softplusf(x[i]));
        break;
    case KC_ACT_SOFTSIGN:
        CPU_MAP(n, CHEAP, y[i] = x[i] / (1.0f + fabsf(x[i])));
        break;
    case KC_ACT_SWISH:
        CPU_MAP(n, COSTLY, y[i] = x[i] * sigmoidf(x[i]));
        break;
    case KC_ACT_GELU:
        CPU_MAP(n, COSTLY, y[i] = geluf(x[i]));
        break;
    case KC_ACT_LEAKY_RELU:
        CPU_MAP(n, CHEAP, y[i] = x[i] > 0.0f ? x[i] : a * x[i]);
        break;
    case KC_ACT_HARD_SIGMOID:
        CPU_MAP(n, CHEAP, y[i] = hard_sigmoidf(x[i]));
        break;
    case KC_ACT_EXPONENTIAL:
        CPU_MAP(n, COSTLY, y[i] = expf(x[i]));
        break;
    case KC_ACT_RELU6:
        CPU_MAP(n, CHEAP, y[i] = relu6f(x[i]));
        break;
    case KC_ACT_HARD_SILU:
        CPU_MAP(n, CHEAP, y[i] = x[i] * relu6f(x[i] + 3.0f) / 6.0f);
        break;
    case KC_ACT_MISH:
        CPU_MAP(n, COSTLY, y[i] = x[i] * tanhf(softplusf(x[i])));
        break;
    default:
        CPU_MAP(n, CHEAP, y[i] = x[i]);
        break;
    }
}

/* Derivatives at kinks come from the flat or left side, as in TensorFlow. */
void kc_cpu_act_backward(kc_act act, float a, const float *x, const float *y, const float *dy,
                         float *dx, size_t n) {
    switch (act) {
    case KC_ACT_SOFTMAX:
        if (n) kc_cpu_softmax_backward(y, dy, dx, 1, (int)n);
        break;
    case KC_ACT_RELU:
        kc_cpu_relu_backward(x, dy, dx, n);
        break;
    case KC_ACT_SIGMOID:
        vact_map(V_SIGMOID, y, dy, dx, n);
        break;
    case KC_ACT_TANH:
        vact_map(V_TANH, y, dy, dx, n);
        break;
    case KC_ACT_ELU:
        CPU_MAP(n, COSTLY, dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * (a * expf(x[i])));
        break;
    case KC_ACT_SELU:
        CPU_MAP(n, COSTLY,
                dx[i] = dy[i] * (x[i] > 0.0f ? SELU_SCALE : SELU_SCALE * SELU_ALPHA * expf(x[i])));
        break;
    case KC_ACT_SOFTPLUS:
        CPU_MAP(n, COSTLY, dx[i] = dy[i] * sigmoidf(x[i]));
        break;
    case KC_ACT_SOFTSIGN:
        CPU_MAP(n, CHEAP, {
            float d = 1.0f + fabsf(x[i]);
            dx[i] = dy[i] / (d * d);
        });
        break;
    case KC_ACT_SWISH:
        CPU_MAP(n, COSTLY, {
            float s = sigmoidf(x[i]);
            dx[i] = dy[i] * (s + x[i] * s * (1.0f - s));
        });
        break;
    case KC_ACT_GELU:
        CPU_MAP(n, COSTLY, dx[i] = dy[i] * gelu_slope(x[i]));
        break;
    case KC_ACT_LEAKY_RELU:
        CPU_MAP(n, CHEAP, dx[i] = x[i] > 0.0f ? dy[i] : a * dy[i]);
        break;
    case KC_ACT_HARD_SIGMOID:
        CPU_MAP(n, CHEAP, dx[i] = (x[i] > -3.0f && x[i] < 3.0f) ? dy[i] / 6.0f : 0.0f);
        break;
    case KC_ACT_EXPONENTIAL:
        CPU_MAP(n, CHEAP, dx[i] = dy[i] * y[i]);
        break;
    case KC_ACT_RELU6:
        CPU_MAP(n, CHEAP, dx[i] = (x[i] > 0.0f && x[i] < 6.0f) ? dy[i] : 0.0f);
        break;
    case KC_ACT_HARD_SILU:
        CPU_MAP(n, CHEAP, dx[i] = dy[i] * hard_silu_slope(x[i]));
        break;
    case KC_ACT_MISH:
        CPU_MAP(n, COSTLY, dx[i] = dy[i] * mish_slope(x[i]));
        break;
    default:
        CPU_MAP(n, CHEAP, dx[i] = dy[i]);
        break;
    }
}

void kc_cpu_softmax_forward(const float *x, float *y, int rows, int cols) {
    int nt = kc_cpu_threads();
    size_t total = (size_t)rows * (size_t)cols;
#pragma omp parallel for schedule(static) num_threads(nt) if (total >= COSTLY)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * cols;
        float *yr = y + (size_t)r * cols;
        float mx = -INFINITY;
        for (int j = 0; j < cols; j++)
            mx = xr[j] > mx ? xr[j] : mx;
        double sum = 0; /* double so long rows lose nothing to the summation order */
        for (int j = 0; j < cols; j++) {
            yr[j] = expf(xr[j] - mx);
            sum += yr[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < cols; j++)
            yr[j] *= inv;
    }
}

void kc_cpu_softmax_backward(const float *y, const float *dy, float *dx, int rows, int cols) {
    int nt = kc_cpu_threads();
    size_t total = (size_t)rows * (size_t)cols;
#pragma omp parallel for schedule(static) num_threads(nt) if (total >= CHEAP)
    for (int r = 0; r < rows; r++) {
        const float *yr = y + (size_t)r * cols, *dyr = dy + (size_t)r * cols;
        float *dxr = dx + (size_t)r * cols;
        double dot = 0;
        for (int j = 0; j < cols; j++)
            dot += (double)dyr[j] * yr[j];
        float fdot = (float)dot;
        for (int j = 0; j < cols; j++)
            dxr[j] = yr[j] * (dyr[j] - fdot);
    }
}

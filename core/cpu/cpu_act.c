/* cpu activations and softmax in float32: one loop per activation, so the
 * simple ones vectorise and none branches on the kind per element. */
#include "core/cpu/cpu.h"

#include <math.h>

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
        _Pragma("omp parallel for schedule(static) num_threads(nt_) if (n_ >= min_)")      \
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

void kc_cpu_act_forward(kc_act act, float a, const float *x, float *y, size_t n) {
    switch (act) {
    case KC_ACT_SOFTMAX: /* not elementwise: the whole buffer is one row */
        if (n) kc_cpu_softmax_forward(x, y, 1, (int)n);
        break;
    case KC_ACT_RELU:
        kc_cpu_relu_forward(x, y, n);
        break;
    case KC_ACT_SIGMOID:
        CPU_MAP(n, COSTLY, y[i] = sigmoidf(x[i]));
        break;
    case KC_ACT_TANH:
        CPU_MAP(n, COSTLY, y[i] = tanhf(x[i]));
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
        CPU_MAP(n, CHEAP, dx[i] = dy[i] * (y[i] * (1.0f - y[i])));
        break;
    case KC_ACT_TANH:
        CPU_MAP(n, CHEAP, dx[i] = dy[i] * (1.0f - y[i] * y[i]));
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

/* Reference activations and softmax, evaluated in double from the textbook
 * formulas (KERAS.md section 5). */
#include "core/reference/ref.h"

#include <math.h>

#define SELU_ALPHA 1.6732632423543772848
#define SELU_SCALE 1.0507009873554804934
#define INV_SQRT2 0.70710678118654752440
#define INV_SQRT_2PI 0.39894228040143267794

/* Split by sign so exp never overflows. */
static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* log(1 + e^x) = max(x, 0) + log1p(e^-|x|) */
static double softplus(double x) {
    return fmax(x, 0.0) + log1p(exp(-fabs(x)));
}

static double act_value(kc_act act, double a, double x) {
    switch (act) {
    case KC_ACT_RELU:
        return x > 0 ? x : 0.0;
    case KC_ACT_SIGMOID:
        return sigmoid(x);
    case KC_ACT_TANH:
        return tanh(x);
    case KC_ACT_ELU:
        return x > 0 ? x : a * expm1(x);
    case KC_ACT_SELU:
        return SELU_SCALE * (x > 0 ? x : SELU_ALPHA * expm1(x));
    case KC_ACT_SOFTPLUS:
        return softplus(x);
    case KC_ACT_SOFTSIGN:
        return x / (1.0 + fabs(x));
    case KC_ACT_SWISH:
        return x * sigmoid(x);
    case KC_ACT_GELU:
        return 0.5 * x * erfc(-x * INV_SQRT2); /* = 1 + erf(x/sqrt2), no cancellation */
    case KC_ACT_LEAKY_RELU:
        return x > 0 ? x : a * x;
    case KC_ACT_HARD_SIGMOID:
        return fmin(fmax(x / 6.0 + 0.5, 0.0), 1.0);
    case KC_ACT_EXPONENTIAL:
        return exp(x);
    case KC_ACT_RELU6:
        return fmin(fmax(x, 0.0), 6.0);
    case KC_ACT_HARD_SILU:
        return x * fmin(fmax(x + 3.0, 0.0), 6.0) / 6.0;
    case KC_ACT_MISH:
        return x * tanh(softplus(x));
    default:
        return x;
    }
}

/* d act / dx at x. At kinks (relu and friends at 0, hard_sigmoid at +-3) the
 * derivative is taken from the flat or left side, as TensorFlow does. */
static double act_slope(kc_act act, double a, double x) {
    switch (act) {
    case KC_ACT_RELU:
        return x > 0 ? 1.0 : 0.0;
    case KC_ACT_SIGMOID: {
        double s = sigmoid(x);
        return s * (1.0 - s);
    }
    case KC_ACT_TANH: {
        double t = tanh(x);
        return 1.0 - t * t;
    }
    case KC_ACT_ELU:
        return x > 0 ? 1.0 : a * exp(x);
    case KC_ACT_SELU:
        return SELU_SCALE * (x > 0 ? 1.0 : SELU_ALPHA * exp(x));
    case KC_ACT_SOFTPLUS:
        return sigmoid(x);
    case KC_ACT_SOFTSIGN:
        return 1.0 / ((1.0 + fabs(x)) * (1.0 + fabs(x)));
    case KC_ACT_SWISH: {
        double s = sigmoid(x);
        return s + x * s * (1.0 - s);
    }
    case KC_ACT_GELU:
        return 0.5 * erfc(-x * INV_SQRT2) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
    case KC_ACT_LEAKY_RELU:
        return x > 0 ? 1.0 : a;
    case KC_ACT_HARD_SIGMOID:
        return (x > -3.0 && x < 3.0) ? 1.0 / 6.0 : 0.0;
    case KC_ACT_EXPONENTIAL:
        return exp(x);
    case KC_ACT_RELU6:
        return (x > 0.0 && x < 6.0) ? 1.0 : 0.0;
    case KC_ACT_HARD_SILU: /* relu6(x + 3) / 6 + x relu6'(x + 3) / 6 */
        return x <= -3.0 ? 0.0 : (x >= 3.0 ? 1.0 : (2.0 * x + 3.0) / 6.0);
    case KC_ACT_MISH: {
        double t = tanh(softplus(x));
        return t + x * (1.0 - t * t) * sigmoid(x);
    }
    default:
        return 1.0;
    }
}

/* Softmax is not elementwise; given it here, the whole buffer is one row. */
void kc_ref_act_forward(kc_act act, float alpha, const float *x, float *y, size_t n) {
    if (act == KC_ACT_SOFTMAX) {
        if (n) kc_ref_softmax_forward(x, y, 1, (int)n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        y[i] = (float)act_value(act, alpha, x[i]);
}

void kc_ref_act_backward(kc_act act, float alpha, const float *x, const float *y, const float *dy,
                         float *dx, size_t n) {
    if (act == KC_ACT_SOFTMAX) {
        if (n) kc_ref_softmax_backward(y, dy, dx, 1, (int)n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        dx[i] = (float)((double)dy[i] * act_slope(act, alpha, x[i]));
}

void kc_ref_softmax_forward(const float *x, float *y, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * cols;
        float *yr = y + (size_t)r * cols;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < cols; j++)
            mx = fmax(mx, xr[j]);
        for (int j = 0; j < cols; j++)
            sum += exp(xr[j] - mx);
        for (int j = 0; j < cols; j++)
            yr[j] = (float)(exp(xr[j] - mx) / sum);
    }
}

/* dx_j = y_j (dy_j - sum_k dy_k y_k) */
void kc_ref_softmax_backward(const float *y, const float *dy, float *dx, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        const float *yr = y + (size_t)r * cols, *dyr = dy + (size_t)r * cols;
        float *dxr = dx + (size_t)r * cols;
        double dot = 0;
        for (int j = 0; j < cols; j++)
            dot += (double)dyr[j] * yr[j];
        for (int j = 0; j < cols; j++)
            dxr[j] = (float)(yr[j] * (dyr[j] - dot));
    }
}

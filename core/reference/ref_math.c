/* Reference elementwise math, select, strided copies and reductions: one
 * element at a time, in double where a function is evaluated or a sum taken (the one rounding to
 * float is then the only error; for + - * / and sqrt of floats that equals
 * the float operation), sums in the lane order of core/cpu/host.h. */
#include "core/reference/ref.h"

#include <math.h>
#include <string.h>

/* NaN wins in max and min, unlike fmax. */
static float max_nan(float u, float v) {
    return (u >= v || u != u) ? u : v;
}

static float min_nan(float u, float v) {
    return (u <= v || u != u) ? u : v;
}

static float unary_at(kc_unary_op op, float a, float xf) {
    double x = xf;
    switch (op) {
    case KC_UN_NEG:
        return -xf;
    case KC_UN_ABS:
        return fabsf(xf);
    case KC_UN_SIGN:
        return xf > 0.0f ? 1.0f : xf < 0.0f ? -1.0f : xf;
    case KC_UN_SQUARE:
        return (float)(x * x);
    case KC_UN_SQRT:
        return (float)sqrt(x);
    case KC_UN_RSQRT:
        return (float)(1.0 / sqrt(x));
    case KC_UN_RECIP:
        return (float)(1.0 / x);
    case KC_UN_EXP:
        return (float)exp(x);
    case KC_UN_LOG:
        return (float)log(x);
    case KC_UN_LOG1P:
        return (float)log1p(x);
    case KC_UN_FLOOR:
        return floorf(xf);
    case KC_UN_ADD:
        return (float)(x + a);
    case KC_UN_MUL:
        return (float)(x * a);
    case KC_UN_DIV:
        return (float)(x / a);
    case KC_UN_RSUB:
        return (float)(a - x);
    case KC_UN_POW:
        return (float)pow(x, a);
    case KC_UN_MAX:
        return max_nan(xf, a);
    case KC_UN_MIN:
        return min_nan(xf, a);
    case KC_UN_GT:
        return xf > a ? 1.0f : 0.0f;
    case KC_UN_GE:
        return xf >= a ? 1.0f : 0.0f;
    case KC_UN_LT:
        return xf < a ? 1.0f : 0.0f;
    case KC_UN_LE:
        return xf <= a ? 1.0f : 0.0f;
    case KC_UN_EQ:
        return xf == a ? 1.0f : 0.0f;
    default:
        return xf; /* TANH and SIGMOID go to the activations */
    }
}

void kc_ref_unary(kc_unary_op op, float a, const float *x, float *y, size_t n) {
    if (op == KC_UN_TANH || op == KC_UN_SIGMOID) {
        kc_ref_act_forward(op == KC_UN_TANH ? KC_ACT_TANH : KC_ACT_SIGMOID, 0.0f, x, y, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        y[i] = unary_at(op, a, x[i]);
}

static float binary_at(kc_binary_op op, float u, float v) {
    switch (op) {
    case KC_BIN_ADD:
        return u + v;
    case KC_BIN_SUB:
        return u - v;
    case KC_BIN_MUL:
        return u * v;
    case KC_BIN_DIV:
        return u / v;
    case KC_BIN_MAX:
        return max_nan(u, v);
    case KC_BIN_MIN:
        return min_nan(u, v);
    case KC_BIN_POW:
        return (float)pow(u, v);
    case KC_BIN_GT:
        return u > v ? 1.0f : 0.0f;
    case KC_BIN_GE:
        return u >= v ? 1.0f : 0.0f;
    case KC_BIN_LT:
        return u < v ? 1.0f : 0.0f;
    case KC_BIN_LE:
        return u <= v ? 1.0f : 0.0f;
    case KC_BIN_EQ:
        return u == v ? 1.0f : 0.0f;
    case KC_BIN_NE:
        return u != v ? 1.0f : 0.0f;
    default:
        return NAN;
    }
}

/* The geometry padded in front to four axes, then every output in order. */
void kc_ref_binary(kc_binary_op op, const kc_bcast *g, const float *a, const float *b, float *y) {
    if (g->rank < 1 || g->rank > KC_BCAST_RANK) return;
    int64_t dims[4] = {1, 1, 1, 1}, sa[4] = {0}, sb[4] = {0};
    int pad = 4 - g->rank;
    for (int k = 0; k < g->rank; k++) {
        dims[pad + k] = g->dims[k];
        sa[pad + k] = g->sa[k];
        sb[pad + k] = g->sb[k];
    }
    size_t t = 0;
    for (int64_t i0 = 0; i0 < dims[0]; i0++)
        for (int64_t i1 = 0; i1 < dims[1]; i1++)
            for (int64_t i2 = 0; i2 < dims[2]; i2++)
                for (int64_t i3 = 0; i3 < dims[3]; i3++) {
                    int64_t oa = i0 * sa[0] + i1 * sa[1] + i2 * sa[2] + i3 * sa[3];
                    int64_t ob = i0 * sb[0] + i1 * sb[1] + i2 * sb[2] + i3 * sb[3];
                    y[t++] = binary_at(op, a[oa], b[ob]);
                }
}

void kc_ref_select(const float *cond, const float *a, const float *b, float *y, size_t n) {
    for (size_t i = 0; i < n; i++)
        y[i] = cond[i] != 0.0f ? a[i] : b[i];
}

/* Every element of the index space in row-major order; SET moves the four
 * bytes as they are, ADD adds floats. */
void kc_ref_copy_strided(kc_copy_mode mode, const kc_copy_desc *g, const void *src, void *dst) {
    int64_t idx[KC_COPY_RANK] = {0}, total = 1;
    for (int k = 0; k < g->rank; k++)
        total *= g->dims[k];
    const char *from = src;
    char *to = dst;
    for (int64_t t = 0; t < total; t++) {
        int64_t so = 0, dof = 0;
        for (int k = 0; k < g->rank; k++) {
            so += idx[k] * g->ss[k];
            dof += idx[k] * g->ds[k];
        }
        if (mode == KC_COPY_ADD) {
            float a, b;
            memcpy(&a, from + so * 4, 4);
            memcpy(&b, to + dof * 4, 4);
            b += a;
            memcpy(to + dof * 4, &b, 4);
        } else {
            memcpy(to + dof * 4, from + so * 4, 4);
        }
        for (int k = g->rank - 1; k >= 0; k--) {
            if (++idx[k] < g->dims[k]) break;
            idx[k] = 0;
        }
    }
}

#define LANES KC_HOST_REDUCE_LANES

/* x[0], x[ld], ... x[(len - 1) ld] reduced by op, before alpha and beta. */
static double reduce_at(kc_reduce_op op, const float *x, int64_t len, int64_t ld) {
    switch (op) {
    case KC_RED_SUM:
    case KC_RED_MEAN:
    case KC_RED_SUMSQ:
    case KC_RED_SUMABS: {
        double acc[LANES] = {0};
        for (int64_t l = 0; l < len; l++) {
            double v = x[l * ld];
            acc[l % LANES] += op == KC_RED_SUMSQ ? v * v : op == KC_RED_SUMABS ? fabs(v) : v;
        }
        double s = acc[0];
        for (int k = 1; k < LANES && k < len; k++)
            s += acc[k];
        return op == KC_RED_MEAN ? s / (double)len : s;
    }
    case KC_RED_MAX: {
        float m = len ? x[0] : -INFINITY;
        for (int64_t l = 1; l < len; l++)
            m = x[l * ld] != x[l * ld] ? x[l * ld] : max_nan(m, x[l * ld]);
        return m;
    }
    case KC_RED_MIN: {
        float m = len ? x[0] : INFINITY;
        for (int64_t l = 1; l < len; l++)
            m = x[l * ld] != x[l * ld] ? x[l * ld] : min_nan(m, x[l * ld]);
        return m;
    }
    case KC_RED_ARGMAX: { /* the first maximum, or the first NaN */
        int64_t at = 0;
        for (int64_t l = 1; l < len; l++) {
            float v = x[l * ld], m = x[at * ld];
            if (m == m && (v > m || v != v)) at = l;
        }
        return (double)at;
    }
    default:
        return NAN;
    }
}

void kc_ref_reduce(kc_reduce_op op, const kc_reduce_desc *g, float alpha, const float *x,
                   float beta, float *y) {
    for (int64_t o = 0; o < g->outer; o++)
        for (int64_t i = 0; i < g->inner; i++) {
            double r = reduce_at(op, x + o * g->len * g->inner + i, g->len, g->inner);
            float *out = y + o * g->inner + i;
            double v = (double)alpha * r;
            if (beta != 0.0f) v += (double)beta * *out;
            *out = (float)v;
        }
}

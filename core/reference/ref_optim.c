/* Reference optimizer updates, gradient clipping and weight decay: the Keras 3
 * rules in float32, each expression in the order Keras writes it, so every
 * backend that keeps this order agrees bit for bit. A missing optional slot
 * (NULL) turns its feature off. */
#include "core/reference/ref.h"

#include <math.h>

void kc_ref_sgd_update(float *w, const float *g, float *v, size_t n, float lr, float momentum,
                       int nesterov) {
    if (momentum == 0.0f || !v) {
        for (size_t i = 0; i < n; i++)
            w[i] -= lr * g[i];
        return;
    }
    for (size_t i = 0; i < n; i++) {
        v[i] = momentum * v[i] - lr * g[i];
        if (nesterov)
            w[i] += momentum * v[i] - lr * g[i];
        else
            w[i] += v[i];
    }
}

void kc_ref_rmsprop_update(float *w, const float *g, float *ms, float *mg, float *mom, size_t n,
                           float lr, float rho, float one_minus_rho, float momentum, float eps,
                           int centered) {
    int use_mg = centered && mg, use_mom = momentum > 0.0f && mom;
    for (size_t i = 0; i < n; i++) {
        ms[i] = rho * ms[i] + one_minus_rho * (g[i] * g[i]);
        float denom;
        if (use_mg) {
            mg[i] = rho * mg[i] + one_minus_rho * g[i];
            denom = ms[i] - mg[i] * mg[i] + eps;
        } else {
            denom = ms[i] + eps;
        }
        float inc = lr * g[i] / sqrtf(denom);
        if (use_mom) {
            mom[i] = momentum * mom[i] + inc;
            w[i] -= mom[i];
        } else {
            w[i] -= inc;
        }
    }
}

void kc_ref_adam_update(float *w, const float *g, float *m, float *v, float *vhat, size_t n,
                        float alpha, float one_minus_b1, float one_minus_b2, float eps,
                        int amsgrad) {
    int use_vhat = amsgrad && vhat;
    for (size_t i = 0; i < n; i++) {
        m[i] += (g[i] - m[i]) * one_minus_b1;
        v[i] += (g[i] * g[i] - v[i]) * one_minus_b2;
        float vv = v[i];
        if (use_vhat) {
            vhat[i] = vhat[i] > v[i] ? vhat[i] : v[i];
            vv = vhat[i];
        }
        w[i] -= (m[i] * alpha) / (sqrtf(vv) + eps);
    }
}

void kc_ref_adagrad_update(float *w, const float *g, float *acc, size_t n, float lr, float eps) {
    for (size_t i = 0; i < n; i++) {
        acc[i] += g[i] * g[i];
        w[i] -= (lr * g[i]) / sqrtf(acc[i] + eps);
    }
}

void kc_ref_adadelta_update(float *w, const float *g, float *ag, float *ad, size_t n, float lr,
                            float rho, float one_minus_rho, float eps) {
    for (size_t i = 0; i < n; i++) {
        ag[i] = rho * ag[i] + one_minus_rho * (g[i] * g[i]);
        float d = -((sqrtf(ad[i] + eps) * g[i]) / sqrtf(ag[i] + eps));
        ad[i] = rho * ad[i] + one_minus_rho * (d * d);
        w[i] += lr * d;
    }
}

void kc_ref_adamax_update(float *w, const float *g, float *m, float *u, size_t n, float lr,
                          float one_minus_b1, float b2, float one_minus_b1_power, float eps) {
    for (size_t i = 0; i < n; i++) {
        m[i] += (g[i] - m[i]) * one_minus_b1;
        float decayed = b2 * u[i], mag = fabsf(g[i]);
        /* a NaN gradient reaches u, as it does through Keras's maximum */
        u[i] = decayed > mag ? decayed : mag;
        w[i] -= (lr * m[i]) / (one_minus_b1_power * (u[i] + eps));
    }
}

void kc_ref_nadam_update(float *w, const float *g, float *m, float *v, size_t n,
                         const kc_nadam_coef *c) {
    for (size_t i = 0; i < n; i++) {
        m[i] += (g[i] - m[i]) * c->one_minus_b1;
        v[i] += (g[i] * g[i] - v[i]) * c->one_minus_b2;
        float m_hat = (c->u_next * m[i]) / c->one_minus_prod_next +
                      (c->one_minus_u * g[i]) / c->one_minus_prod;
        float v_hat = v[i] / c->one_minus_b2_power;
        w[i] -= (m_hat * c->lr) / (sqrtf(v_hat) + c->eps);
    }
}

/* sign() as Keras's ops.sign: 0 for 0, NaN for NaN */
static float sign_of(float x) {
    return x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : x;
}

void kc_ref_lion_update(float *w, const float *g, float *m, size_t n, float lr, float b1,
                        float b2) {
    float c1 = 1.0f - b1, c2 = 1.0f - b2;
    for (size_t i = 0; i < n; i++) {
        w[i] -= lr * sign_of(m[i] * b1 + g[i] * c1);
        m[i] = m[i] * b2 + g[i] * c2;
    }
}

double kc_ref_sum_squares(const float *x, size_t n) {
    size_t chunk = (n + KC_SUM_SQUARES_BLOCKS - 1) / KC_SUM_SQUARES_BLOCKS;
    double total = 0;
    for (size_t lo = 0; lo < n; lo += chunk) {
        size_t hi = lo + chunk < n ? lo + chunk : n;
        double s = 0;
        for (size_t i = lo; i < hi; i++)
            s += (double)x[i] * x[i];
        total += s;
    }
    return total;
}

void kc_ref_scale_div(const float *x, float *y, float a, float b, size_t n) {
    for (size_t i = 0; i < n; i++)
        y[i] = (x[i] * a) / b;
}

void kc_ref_clip(const float *x, float *y, float lo, float hi, size_t n) {
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
}

void kc_ref_weight_decay(float *w, float wd, float lr, size_t n) {
    for (size_t i = 0; i < n; i++)
        w[i] -= (w[i] * wd) * lr;
}

/* Reference optimizer updates: the Keras 3 rules in float32, each expression
 * in the order Keras writes it, so every backend that keeps this order agrees
 * bit for bit. A missing optional slot (NULL) turns its feature off. */
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
                           float lr, float rho, float momentum, float eps, int centered) {
    int use_mg = centered && mg, use_mom = momentum > 0.0f && mom;
    for (size_t i = 0; i < n; i++) {
        ms[i] = rho * ms[i] + (1.0f - rho) * (g[i] * g[i]);
        float denom;
        if (use_mg) {
            mg[i] = rho * mg[i] + (1.0f - rho) * g[i];
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
                        float alpha, float b1, float b2, float eps, int amsgrad) {
    int use_vhat = amsgrad && vhat;
    for (size_t i = 0; i < n; i++) {
        m[i] += (g[i] - m[i]) * (1.0f - b1);
        v[i] += (g[i] * g[i] - v[i]) * (1.0f - b2);
        float vv = v[i];
        if (use_vhat) {
            vhat[i] = vhat[i] > v[i] ? vhat[i] : v[i];
            vv = vhat[i];
        }
        w[i] -= (m[i] * alpha) / (sqrtf(vv) + eps);
    }
}

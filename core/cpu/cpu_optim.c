/* cpu optimizer updates, gradient clipping and weight decay: the reference
 * backend's float32 expressions, in the same order, split across threads.
 * Each element's update is independent, so results match the reference bit
 * for bit; the sum of squares uses the same fixed blocks as the reference. A
 * NULL optional slot turns its feature off. The elementwise loops are
 * `omp simd`: vectorised, with no operation reordered or contracted. */
#include "core/cpu/cpu.h"

#include <math.h>
#include <omp.h>

/* Updates that read a few slots per element pay for threads sooner than a
 * plain axpy does. */
#define OPTIM_PAR_MIN (KC_CPU_PAR_MIN / 4)

void kc_cpu_sgd_update(float *w, const float *g, float *v, size_t n, float lr, float momentum,
                       int nesterov) {
    int nt = kc_cpu_threads();
    if (momentum == 0.0f || !v) {
#pragma omp parallel for simd schedule(static) num_threads(nt) if (n >= KC_CPU_PAR_MIN)
        for (size_t i = 0; i < n; i++)
            w[i] -= lr * g[i];
        return;
    }
#pragma omp parallel for simd schedule(static) num_threads(nt) if (n >= KC_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        v[i] = momentum * v[i] - lr * g[i];
        if (nesterov)
            w[i] += momentum * v[i] - lr * g[i];
        else
            w[i] += v[i];
    }
}

void kc_cpu_rmsprop_update(float *w, const float *g, float *ms, float *mg, float *mom, size_t n,
                           float lr, float rho, float one_minus_rho, float momentum, float eps,
                           int centered) {
    int use_mg = centered && mg, use_mom = momentum > 0.0f && mom, nt = kc_cpu_threads();
#pragma omp parallel for simd schedule(static) num_threads(nt) if (n >= OPTIM_PAR_MIN)
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

/* Without amsgrad the loop has no branch and no aliasing, so it vectorises;
 * each element still sees the same operations in the same order. The update
 * is bound by its square root and division, not by memory: it is cloned per
 * instruction set (16 lanes with AVX-512), and as no operation is contracted
 * every clone computes the same bits. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
adam_plain(float *restrict w, const float *restrict g, float *restrict m, float *restrict v,
           size_t lo, size_t hi, float alpha, float c1, float c2, float eps) {
#pragma omp simd
    for (size_t i = lo; i < hi; i++) {
        float mi = m[i] + (g[i] - m[i]) * c1;
        float vi = v[i] + (g[i] * g[i] - v[i]) * c2;
        m[i] = mi;
        v[i] = vi;
        w[i] -= (mi * alpha) / (sqrtf(vi) + eps);
    }
}

void kc_cpu_adam_update(float *w, const float *g, float *m, float *v, float *vhat, size_t n,
                        float alpha, float one_minus_b1, float one_minus_b2, float eps,
                        int amsgrad) {
    int nt = kc_cpu_threads();
    if (!(amsgrad && vhat)) {
        if (n < OPTIM_PAR_MIN || nt < 2) {
            adam_plain(w, g, m, v, 0, n, alpha, one_minus_b1, one_minus_b2, eps);
            return;
        }
#pragma omp parallel num_threads(nt)
        {
            size_t parts = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
            size_t lo = n * t / parts, hi = n * (t + 1) / parts;
            adam_plain(w, g, m, v, lo, hi, alpha, one_minus_b1, one_minus_b2, eps);
        }
        return;
    }
#pragma omp parallel for simd schedule(static) num_threads(nt) if (n >= OPTIM_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        m[i] += (g[i] - m[i]) * one_minus_b1;
        v[i] += (g[i] * g[i] - v[i]) * one_minus_b2;
        vhat[i] = vhat[i] > v[i] ? vhat[i] : v[i];
        w[i] -= (m[i] * alpha) / (sqrtf(vhat[i]) + eps);
    }
}

void kc_cpu_adagrad_update(float *w, const float *g, float *acc, size_t n, float lr, float eps) {
    int nt = kc_cpu_threads();
#pragma omp parallel for simd schedule(static) num_threads(nt) if (n >= OPTIM_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        acc[i] += g[i] * g[i];
        w[i] -= (lr * g[i]) / sqrtf(acc[i] + eps);
    }
}

void kc_cpu_adadelta_update(float *w, const float *g, float *ag, float *ad, size_t n, float lr,
                            float rho, float one_minus_rho, float eps) {
    int nt = kc_cpu_threads();
#pragma omp parallel for simd schedule(static) num_threads(nt) if (n >= OPTIM_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        ag[i] = rho * ag[i] + one_minus_rho * (g[i] * g[i]);
        float d = -((sqrtf(ad[i] + eps) * g[i]) / sqrtf(ag[i] + eps));
        ad[i] = rho * ad[i] + one_minus_rho * (d * d);
        w[i] += lr * d;
    }
}

void kc_cpu_adamax_update(float *w, const float *g, float *m, float *u, size_t n, float lr,
                          float one_minus_b1, float b2, float one_minus_b1_power, float eps) {
    int nt = kc_cpu_threads();
#pragma omp parallel for simd schedule(static) num_threads(nt) if (n >= OPTIM_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        m[i] += (g[i] - m[i]) * one_minus_b1;
        float decayed = b2 * u[i], mag = fabsf(g[i]);
        u[i] = decayed > mag ? decayed : mag;
        w[i] -= (lr * m[i]) / (one_minus_b1_power * (u[i] + eps));
    }
}

void kc_cpu_nadam_update(float *w, const float *g, float *m, float *v, size_t n,
                         const kc_nadam_coef *c) {
    const kc_nadam_coef k = *c;
    int nt = kc_cpu_threads();
#pragma omp parallel for simd schedule(static) num_threads(nt) if (n >= OPTIM_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        m[i] += (g[i] - m[i]) * k.one_minus_b1;
        v[i] += (g[i] * g[i] - v[i]) * k.one_minus_b2;
        float m_hat =
            (k.u_next * m[i]) / k.one_minus_prod_next + (k.one_minus_u * g[i]) / k.one_minus_prod;
        float v_hat = v[i] / k.one_minus_b2_power;
        w[i] -= (m_hat * k.lr) / (sqrtf(v_hat) + k.eps);
    }
}

void kc_cpu_lion_update(float *w, const float *g, float *m, size_t n, float lr, float b1,
                        float b2) {
    float c1 = 1.0f - b1, c2 = 1.0f - b2;
    int nt = kc_cpu_threads();
#pragma omp parallel for simd schedule(static) num_threads(nt) if (n >= OPTIM_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float c = m[i] * b1 + g[i] * c1;
        w[i] -= lr * (c > 0.0f ? 1.0f : c < 0.0f ? -1.0f : c);
        m[i] = m[i] * b2 + g[i] * c2;
    }
}

double kc_cpu_sum_squares(const float *x, size_t n) {
    size_t chunk = (n + KC_SUM_SQUARES_BLOCKS - 1) / KC_SUM_SQUARES_BLOCKS;
    double part[KC_SUM_SQUARES_BLOCKS] = {0};
    int nt = kc_cpu_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= KC_CPU_PAR_MIN)
    for (int b = 0; b < KC_SUM_SQUARES_BLOCKS; b++) {
        size_t lo = (size_t)b * chunk, hi = lo + chunk < n ? lo + chunk : n;
        double s = 0;
        for (size_t i = lo; i < hi; i++)
            s += (double)x[i] * x[i];
        part[b] = s;
    }
    double total = 0;
    for (int b = 0; b < KC_SUM_SQUARES_BLOCKS; b++)
        total += part[b];
    return total;
}

void kc_cpu_scale_div(const float *x, float *y, float a, float b, size_t n) {
    int nt = kc_cpu_threads();
#pragma omp parallel for simd schedule(static) num_threads(nt) if (n >= KC_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        y[i] = (x[i] * a) / b;
}

void kc_cpu_clip(const float *x, float *y, float lo, float hi, size_t n) {
    int nt = kc_cpu_threads();
#pragma omp parallel for simd schedule(static) num_threads(nt) if (n >= KC_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
}

void kc_cpu_weight_decay(float *w, float wd, float lr, size_t n) {
    int nt = kc_cpu_threads();
#pragma omp parallel for simd schedule(static) num_threads(nt) if (n >= KC_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        w[i] -= (w[i] * wd) * lr;
}

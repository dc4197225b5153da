/* OpenCL C source of the optimizer updates, gradient clipping and weight
 * decay: the reference backend's float32 expressions (core/reference/
 * ref_optim.c) in the same order, so with contraction off and correctly
 * rounded division and sqrt every element matches it bit for bit. Flags say
 * which optional buffers are present. */
#include "core/opencl/ocl.h"

#define KC_CL(...) #__VA_ARGS__ "\n"

const char kc_ocl_src_optim[] = KC_CL(

    __kernel void k_scale_div(__global const float *x, ulong xo, __global float *y, ulong yo,
                              float a, float b, ulong n) {
        x += xo;
        y += yo;
        FOR_EACH(i, n) y[i] = (x[i] * a) / b;
    }

    __kernel void k_clip(__global const float *x, ulong xo, __global float *y, ulong yo, float lo,
                         float hi, ulong n) {
        x += xo;
        y += yo;
        FOR_EACH(i, n) {
            float v = x[i];
            y[i] = v < lo ? lo : v > hi ? hi : v;
        }
    }

    __kernel void k_weight_decay(__global float *w, ulong wo, float wd, float lr, ulong n) {
        w += wo;
        FOR_EACH(i, n) w[i] -= (w[i] * wd) * lr;
    }

    __kernel void k_sgd(__global float *w, ulong wo, __global const float *g, ulong go,
                        __global float *v, ulong vo, ulong n, float lr, float momentum, int use_v,
                        int nesterov) {
        w += wo;
        g += go;
        v += vo;
        if (!use_v) {
            FOR_EACH(i, n) w[i] -= lr * g[i];
            return;
        }
        FOR_EACH(i, n) {
            float vi = momentum * v[i] - lr * g[i];
            v[i] = vi;
            if (nesterov)
                w[i] += momentum * vi - lr * g[i];
            else
                w[i] += vi;
        }
    }

    __kernel void k_rmsprop(__global float *w, ulong wo, __global const float *g, ulong go,
                            __global float *ms, ulong mso, __global float *mg, ulong mgo,
                            __global float *mom, ulong momo, ulong n, float lr, float rho,
                            float one_minus_rho, float momentum, float eps, int use_mg,
                            int use_mom) {
        w += wo;
        g += go;
        ms += mso;
        mg += mgo;
        mom += momo;
        FOR_EACH(i, n) {
            float gi = g[i];
            float msi = rho * ms[i] + one_minus_rho * (gi * gi);
            ms[i] = msi;
            float denom;
            if (use_mg) {
                float mgi = rho * mg[i] + one_minus_rho * gi;
                mg[i] = mgi;
                denom = msi - mgi * mgi + eps;
            } else {
                denom = msi + eps;
            }
            float inc = lr * gi / sqrt(denom);
            if (use_mom) {
                float mi = momentum * mom[i] + inc;
                mom[i] = mi;
                w[i] -= mi;
            } else {
                w[i] -= inc;
            }
        }
    }

    __kernel void k_adam(__global float *w, ulong wo, __global const float *g, ulong go,
                         __global float *m, ulong mo, __global float *v, ulong vo,
                         __global float *vhat, ulong vho, ulong n, float alpha, float one_minus_b1,
                         float one_minus_b2, float eps, int use_vhat) {
        w += wo;
        g += go;
        m += mo;
        v += vo;
        vhat += vho;
        FOR_EACH(i, n) {
            float gi = g[i];
            float mi = m[i] + (gi - m[i]) * one_minus_b1;
            float vi = v[i] + (gi * gi - v[i]) * one_minus_b2;
            m[i] = mi;
            v[i] = vi;
            float vv = vi;
            if (use_vhat) {
                float h = vhat[i] > vi ? vhat[i] : vi;
                vhat[i] = h;
                vv = h;
            }
            w[i] -= (mi * alpha) / (sqrt(vv) + eps);
        }
    }

    __kernel void k_adagrad(__global float *w, ulong wo, __global const float *g, ulong go,
                            __global float *acc, ulong ao, ulong n, float lr, float eps) {
        w += wo;
        g += go;
        acc += ao;
        FOR_EACH(i, n) {
            float gi = g[i];
            float a = acc[i] + gi * gi;
            acc[i] = a;
            w[i] -= (lr * gi) / sqrt(a + eps);
        }
    }

    __kernel void k_adadelta(__global float *w, ulong wo, __global const float *g, ulong go,
                             __global float *ag, ulong ago, __global float *ad, ulong ado, ulong n,
                             float lr, float rho, float one_minus_rho, float eps) {
        w += wo;
        g += go;
        ag += ago;
        ad += ado;
        FOR_EACH(i, n) {
            float gi = g[i];
            float agi = rho * ag[i] + one_minus_rho * (gi * gi);
            ag[i] = agi;
            float d = -((sqrt(ad[i] + eps) * gi) / sqrt(agi + eps));
            ad[i] = rho * ad[i] + one_minus_rho * (d * d);
            w[i] += lr * d;
        }
    }

    __kernel void k_adamax(__global float *w, ulong wo, __global const float *g, ulong go,
                           __global float *m, ulong mo, __global float *u, ulong uo, ulong n,
                           float lr, float one_minus_b1, float b2, float one_minus_b1_power,
                           float eps) {
        w += wo;
        g += go;
        m += mo;
        u += uo;
        FOR_EACH(i, n) {
            float gi = g[i];
            float mi = m[i] + (gi - m[i]) * one_minus_b1;
            m[i] = mi;
            float decayed = b2 * u[i], mag = fabs(gi);
            /* a NaN gradient reaches u, as it does through Keras's maximum */
            float ui = decayed > mag ? decayed : mag;
            u[i] = ui;
            w[i] -= (lr * mi) / (one_minus_b1_power * (ui + eps));
        }
    }

    /* c: lr eps one_minus_b1 one_minus_b2 u_next one_minus_u
     *    one_minus_prod_next one_minus_prod one_minus_b2_power */
    __kernel void k_nadam(__global float *w, ulong wo, __global const float *g, ulong go,
                          __global float *m, ulong mo, __global float *v, ulong vo, ulong n,
                          float16 c) {
        w += wo;
        g += go;
        m += mo;
        v += vo;
        FOR_EACH(i, n) {
            float gi = g[i];
            float mi = m[i] + (gi - m[i]) * c.s2;
            float vi = v[i] + (gi * gi - v[i]) * c.s3;
            m[i] = mi;
            v[i] = vi;
            float m_hat = (c.s4 * mi) / c.s6 + (c.s5 * gi) / c.s7;
            float v_hat = vi / c.s8;
            w[i] -= (m_hat * c.s0) / (sqrt(v_hat) + c.s1);
        }
    }

    /* sign() as Keras's ops.sign: 0 for 0, NaN for NaN */
    __kernel void k_lion(__global float *w, ulong wo, __global const float *g, ulong go,
                         __global float *m, ulong mo, ulong n, float lr, float b1, float b2,
                         float c1, float c2) {
        w += wo;
        g += go;
        m += mo;
        FOR_EACH(i, n) {
            float gi = g[i], mi = m[i];
            float t = mi * b1 + gi * c1;
            w[i] -= lr * (t > 0.0f ? 1.0f : t < 0.0f ? -1.0f : t);
            m[i] = mi * b2 + gi * c2;
        }
    }

);

/* OpenCL C source of the activations, dropout, bias, weight penalties, norm
 * projection, convolution (im2col / col2im around CLBlast) and pooling.
 * Formulas follow the reference backend (core/reference/): evaluated in
 * `real` and rounded once. Geometry arrives as an int16:
 * conv  n h w c kh kw oc sh sw dh dw pad_t pad_l oh ow
 * pool  n h w c ph pw sh sw pad_t pad_l oh ow */
#include "core/opencl/ocl.h"

#define KC_CL(...) #__VA_ARGS__ "\n"

const char kc_ocl_src_nn[] = KC_CL(

    /* ---- activations ---- */

    real act_value(int act, real a, real x) {
        switch (act) {
        case ACT_RELU:
            return x > (real)0 ? x : (real)0;
        case ACT_SIGMOID:
            return sigmoid_r(x);
        case ACT_TANH:
            return tanh(x);
        case ACT_ELU:
            return x > (real)0 ? x : a * expm1(x);
        case ACT_SELU:
            return R(1.0507009873554804934) *
                   (x > (real)0 ? x : R(1.6732632423543772848) * expm1(x));
        case ACT_SOFTPLUS:
            return fmax(x, (real)0) + log1p(exp(-fabs(x)));
        case ACT_SOFTSIGN:
            return x / ((real)1 + fabs(x));
        case ACT_SWISH:
            return x * sigmoid_r(x);
        /* 1 + erf(x / sqrt 2) as erfc, which keeps its accuracy for x < 0 */
        case ACT_GELU:
            return R(0.5) * x * erfc(-x * R(0.70710678118654752440));
        case ACT_LEAKY_RELU:
            return x > (real)0 ? x : a * x;
        case ACT_HARD_SIGMOID:
            return fmin(fmax(x / (real)6 + R(0.5), (real)0), (real)1);
        case ACT_EXPONENTIAL:
            return exp(x);
        case ACT_RELU6:
            return fmin(fmax(x, (real)0), (real)6);
        case ACT_HARD_SILU:
            return x * fmin(fmax(x + (real)3, (real)0), (real)6) / (real)6;
        case ACT_MISH:
            return x * tanh(fmax(x, (real)0) + log1p(exp(-fabs(x))));
        }
        return x;
    }

    /* d act / dx; kinks take the flat or left side, as TensorFlow does. In
     * double the reference's own forms (1 - s, 1 - t^2) lose nothing that
     * survives rounding to float for moderate x, and keep its bits; in
     * float they cancel for large |x|, so the float build takes forms that
     * do not. */
    real act_slope(int act, real a, real x) {
        switch (act) {
        case ACT_RELU:
            return x > (real)0 ? (real)1 : (real)0;
        case ACT_SIGMOID: {
            real s = sigmoid_r(x);
            return s * (REAL_IS_DOUBLE ? (real)1 - s : sigmoid_r(-x));
        }
        case ACT_TANH: {
            if (!REAL_IS_DOUBLE) {
                real c = cosh(x);
                return (real)1 / (c * c);
            }
            real t = tanh(x);
            return (real)1 - t * t;
        }
        case ACT_ELU:
            return x > (real)0 ? (real)1 : a * exp(x);
        case ACT_SELU:
            return R(1.0507009873554804934) *
                   (x > (real)0 ? (real)1 : R(1.6732632423543772848) * exp(x));
        case ACT_SOFTPLUS:
            return sigmoid_r(x);
        case ACT_SOFTSIGN: {
            real d = (real)1 + fabs(x);
            return (real)1 / (d * d);
        }
        case ACT_SWISH: {
            real s = sigmoid_r(x);
            return s + x * s * (REAL_IS_DOUBLE ? (real)1 - s : sigmoid_r(-x));
        }
        case ACT_GELU:
            return R(0.5) * erfc(-x * R(0.70710678118654752440)) +
                   x * R(0.39894228040143267794) * exp(R(-0.5) * x * x);
        case ACT_LEAKY_RELU:
            return x > (real)0 ? (real)1 : a;
        case ACT_HARD_SIGMOID:
            return (x > (real)-3 && x < (real)3) ? (real)1 / (real)6 : (real)0;
        case ACT_EXPONENTIAL:
            return exp(x);
        case ACT_RELU6:
            return (x > (real)0 && x < (real)6) ? (real)1 : (real)0;
        case ACT_HARD_SILU:
            return x <= (real)-3 ? (real)0
                                 : (x >= (real)3 ? (real)1 : ((real)2 * x + (real)3) / (real)6);
        case ACT_MISH: {
            real t = tanh(fmax(x, (real)0) + log1p(exp(-fabs(x))));
            return t + x * ((real)1 - t * t) * sigmoid_r(x);
        }
        }
        return (real)1;
    }

    /* relu, leaky relu and linear in float give the same bits as in double
     * (one rounding of an exact product at most) without the conversions */
    __kernel void k_act_forward(int act, float a, __global const float *x, ulong xo,
                                __global float *y, ulong yo, ulong n) {
        x += xo;
        y += yo;
        if (act == ACT_RELU) {
            FOR_EACH(i, n) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        } else if (act == ACT_LEAKY_RELU) {
            FOR_EACH(i, n) y[i] = x[i] > 0.0f ? x[i] : a * x[i];
        } else if (act == ACT_LINEAR) {
            FOR_EACH(i, n) y[i] = x[i];
        } else {
            FOR_EACH(i, n) y[i] = (float)act_value(act, (real)a, (real)x[i]);
        }
    }

    __kernel void k_act_backward(int act, float a, __global const float *x, ulong xo,
                                 __global const float *dy, ulong dyo, __global float *dx, ulong dxo,
                                 ulong n) {
        x += xo;
        dy += dyo;
        dx += dxo;
        if (act == ACT_RELU) {
            FOR_EACH(i, n) dx[i] = dy[i] * (x[i] > 0.0f ? 1.0f : 0.0f);
        } else if (act == ACT_LEAKY_RELU) {
            FOR_EACH(i, n) dx[i] = dy[i] * (x[i] > 0.0f ? 1.0f : a);
        } else if (act == ACT_LINEAR) {
            FOR_EACH(i, n) dx[i] = dy[i];
        } else {
            FOR_EACH(i, n) dx[i] = (float)((real)dy[i] * act_slope(act, (real)a, (real)x[i]));
        }
    }

    /* ---- Philox-4x32-10 exactly as core/rng.c, and dropout ---- */

    void philox4(ulong seed, ulong stream, ulong index, uint *out) {
        uint c0 = (uint)stream, c1 = (uint)(stream >> 32), c2 = (uint)index,
             c3 = (uint)(index >> 32);
        uint k0 = (uint)seed, k1 = (uint)(seed >> 32);
        for (int r = 0; r < 10; r++) {
            if (r > 0) {
                k0 += 0x9E3779B9u;
                k1 += 0xBB67AE85u;
            }
            uint hi0 = mul_hi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
            uint hi1 = mul_hi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
            uint r0 = hi1 ^ c1 ^ k0, r2 = hi0 ^ c3 ^ k1;
            c0 = r0;
            c1 = lo1;
            c2 = r2;
            c3 = lo0;
        }
        out[0] = c0;
        out[1] = c1;
        out[2] = c2;
        out[3] = c3;
    }

    float rng_uniform(ulong seed, ulong stream, ulong index) {
        uint r[4];
        philox4(seed, stream, index, r);
        return (float)(r[0] >> 8) * (1.0f / 16777216.0f);
    }

    __kernel void k_dropout_forward(__global const float *x, ulong xo, __global float *y, ulong yo,
                                    __global float *mask, ulong mo, ulong n, float rate,
                                    float keep_scale, ulong seed, ulong stream) {
        x += xo;
        y += yo;
        mask += mo;
        FOR_EACH(i, n) {
            float m = rng_uniform(seed, stream, i) >= rate ? keep_scale : 0.0f;
            mask[i] = m;
            y[i] = x[i] * m;
        }
    }

    /* ---- random normals: Box-Muller on one Philox block, as core/rng.c ---- */

    __kernel void k_rng_normal(__global float *y, ulong yo, ulong n, float mean, float stddev,
                               ulong seed, ulong stream) {
        y += yo;
        FOR_EACH(i, n) {
            uint r[4];
            philox4(seed, stream, i, r);
            ulong a = ((ulong)r[0] << 21) | (ulong)(r[1] >> 11);
            ulong b = ((ulong)r[2] << 21) | (ulong)(r[3] >> 11);
            real u1 = ((real)a + (real)1) / R(9007199254740992.0);
            real u2 = (real)b / R(9007199254740992.0);
            float z = (float)(sqrt((real)-2 * log(u1)) * cos(R(6.283185307179586) * u2));
            y[i] = (float)((real)mean + (real)stddev * (real)z);
        }
    }

    /* ---- bias ---- */

    __kernel void k_bias_add(__global float *y, ulong yo, __global const float *b, ulong bo,
                             ulong n, uint cols) {
        y += yo;
        b += bo;
        FOR_EACH(i, n) y[i] += b[i < 0xffffffffUL ? (uint)i % cols : i % cols];
    }

    /* ---- weight penalty and sum of squares: fixed blocks (core/backend.h) ---- */

    /* part[b] = sum |x| and part[blocks + b] = sum x^2 over block b, in order. */
    __kernel void k_block_sums(__global const float *x, ulong xo, ulong n, ulong block, uint blocks,
                               __global real *part) {
        x += xo;
        FOR_EACH(b, (ulong)blocks) {
            ulong lo = b * block, hi = lo + block < n ? lo + block : n;
            real sa = 0, sq = 0;
            for (ulong i = lo; i < hi; i++) {
                real v = (real)x[i];
                sa += fabs(v);
                sq += v * v;
            }
            part[b] = sa;
            part[blocks + b] = sq;
        }
    }

    /* g += l1 sign(x) + l2x2 x, a zero factor's term left out */
    __kernel void k_penalty_grad(__global const float *x, ulong xo, __global float *g, ulong go,
                                 ulong n, float l1, float l2x2) {
        x += xo;
        g += go;
        if (l1 != 0.0f && l2x2 != 0.0f) {
            FOR_EACH(i, n) g[i] += l1 * (float)((x[i] > 0.0f) - (x[i] < 0.0f)) + l2x2 * x[i];
        } else if (l1 != 0.0f) {
            FOR_EACH(i, n) g[i] += l1 * (float)((x[i] > 0.0f) - (x[i] < 0.0f));
        } else if (l2x2 != 0.0f) {
            FOR_EACH(i, n) g[i] += l2x2 * x[i];
        }
    }

    /* ---- norm projection: one work-item per slice ---- */

    ulong sub_offset(ulong idx, const ulong *dims, const ulong *stride, int rank, uint mask,
                     uint want) {
        ulong off = 0;
        for (int a = rank - 1; a >= 0; a--) {
            if (((mask >> a) & 1u) != want) continue;
            off += (idx % dims[a]) * stride[a];
            idx /= dims[a];
        }
        return off;
    }

    __kernel void k_norm_rescale(__global float *w, ulong wo, ulong8 dv, int rank, uint reduce,
                                 ulong slices, ulong span, float lo, float hi, float rate,
                                 float eps) {
        w += wo;
        ulong dims[8] = {dv.s0, dv.s1, dv.s2, dv.s3, dv.s4, dv.s5, dv.s6, dv.s7}, stride[8];
        ulong s = 1;
        for (int a = rank - 1; a >= 0; a--) {
            stride[a] = s;
            s *= dims[a];
        }
        FOR_EACH(k, slices) {
            ulong base = sub_offset(k, dims, stride, rank, reduce, 0u);
            real sum_sq = 0;
            for (ulong r = 0; r < span; r++) {
                real v = (real)w[base + sub_offset(r, dims, stride, rank, reduce, 1u)];
                sum_sq += v * v;
            }
            float norm = (float)sqrt(sum_sq);
            float c = norm > lo ? norm : lo;
            c = c < hi ? c : hi;
            float f = (rate * c + (1.0f - rate) * norm) / (eps + norm);
            for (ulong r = 0; r < span; r++)
                w[base + sub_offset(r, dims, stride, rank, reduce, 1u)] *= f;
        }
    }

    /* ---- convolution: patch matrix rows (n, oy, ox), columns (ky, kx, c) ---- */

    /* One work-item per (row, ky, kx): C contiguous values each. */
    __kernel void k_im2col(__global const float *x, ulong xo, __global float *col, ulong co,
                           int16 g, uint rows) {
        x += xo;
        col += co;
        uint C = g.s3, KH = g.s4, KW = g.s5, OH = g.sd, OW = g.se;
        FOR_EACH(t, (ulong)rows * KH * KW) {
            uint u = (uint)t, kx = u % KW;
            u /= KW;
            uint ky = u % KH, r = u / KH, ox = r % OW;
            r /= OW;
            uint oy = r % OH, n = r / OH;
            int iy = (int)oy * g.s7 + (int)ky * g.s9 - g.sb;
            int ix = (int)ox * g.s8 + (int)kx * g.sa - g.sc;
            __global float *dst = col + t * C;
            if (iy < 0 || iy >= g.s1 || ix < 0 || ix >= g.s2) {
                for (uint c = 0; c < C; c++)
                    dst[c] = 0.0f;
            } else {
                __global const float *src = x + (((ulong)n * g.s1 + iy) * g.s2 + ix) * C;
                for (uint c = 0; c < C; c++)
                    dst[c] = src[c];
            }
        }
    }

    /* The output coordinate whose tap k lands on input coordinate i, or -1. */
    int tap_source(int i, int k, int s, int dil, int pad, int on) {
        int t = i + pad - k * dil;
        if (t < 0) return -1;
        if (s != 1) {
            if (t % s) return -1;
            t /= s;
        }
        return t < on ? t : -1;
    }

    /* dx gathers the patch-matrix gradient: one work-item per input pixel,
     * taps in (ky, kx) order, C channels each. */
    __kernel void k_col2im(__global const float *dcol, ulong co, __global float *dx, ulong dxo,
                           int16 g, uint pixels) {
        dcol += co;
        dx += dxo;
        uint C = g.s3, KH = g.s4, KW = g.s5, OH = g.sd, OW = g.se;
        FOR_EACH(p, (ulong)pixels) {
            uint u = (uint)p, ix = u % (uint)g.s2;
            u /= (uint)g.s2;
            uint iy = u % (uint)g.s1, n = u / (uint)g.s1;
            __global float *out = dx + p * C;
            for (uint c = 0; c < C; c++)
                out[c] = 0.0f;
            for (uint ky = 0; ky < KH; ky++) {
                int oy = tap_source((int)iy, (int)ky, g.s7, g.s9, g.sb, (int)OH);
                if (oy < 0) continue;
                for (uint kx = 0; kx < KW; kx++) {
                    int ox = tap_source((int)ix, (int)kx, g.s8, g.sa, g.sc, (int)OW);
                    if (ox < 0) continue;
                    ulong row = ((ulong)n * OH + (uint)oy) * OW + (uint)ox;
                    __global const float *src = dcol + ((row * KH + ky) * KW + kx) * C;
                    for (uint c = 0; c < C; c++)
                        out[c] += src[c];
                }
            }
        }
    }

    /* ---- pooling: windows cover real cells only ---- */

    void pool_window(int o, int s, int pad, int p, int in, int *lo, int *hi) {
        int start = o * s - pad;
        *lo = start < 0 ? 0 : start;
        *hi = start + p > in ? in : start + p;
    }

    int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

    /* The output coordinates [lo, hi) whose windows cover input coordinate i. */
    void covering(int i, int s, int pad, int p, int on, int *lo, int *hi) {
        int first = floor_div(i + pad - p, s) + 1, last = floor_div(i + pad, s);
        *lo = first < 0 ? 0 : first;
        *hi = last + 1 > on ? on : last + 1;
    }

    /* Ties keep the first cell in row-major window order; an empty window
     * gives 0 and argmax -1. */
    __kernel void k_maxpool_forward(__global const float *x, ulong xo, __global float *y, ulong yo,
                                    __global int *arg, ulong ao, int16 g, uint total) {
        x += xo;
        y += yo;
        arg += ao;
        uint C = g.s3, OH = g.sa, OW = g.sb;
        FOR_EACH(t, (ulong)total) {
            uint u = (uint)t, c = u % C;
            u /= C;
            uint ox = u % OW;
            u /= OW;
            uint oy = u % OH, n = u / OH;
            int y0, y1, x0, x1;
            pool_window((int)oy, g.s6, g.s8, g.s4, g.s1, &y0, &y1);
            pool_window((int)ox, g.s7, g.s9, g.s5, g.s2, &x0, &x1);
            long best_i = -1;
            float best = 0.0f;
            for (int iy = y0; iy < y1; iy++)
                for (int ix = x0; ix < x1; ix++) {
                    long i = (((long)n * g.s1 + iy) * g.s2 + ix) * C + c;
                    float v = x[i];
                    if (best_i < 0 || v > best) best_i = i, best = v;
                }
            y[t] = best;
            arg[t] = (int)best_i;
        }
    }

    /* Each input cell gathers dy from the windows that chose it, in output
     * order: the reference's scatter order, so the same sums. */
    __kernel void k_maxpool_backward(__global const float *dy, ulong dyo, __global const int *arg,
                                     ulong ao, __global float *dx, ulong dxo, int16 g, uint total) {
        dy += dyo;
        arg += ao;
        dx += dxo;
        uint C = g.s3, H = g.s1, W = g.s2;
        FOR_EACH(t, (ulong)total) {
            uint u = (uint)t, c = u % C;
            u /= C;
            uint ix = u % W;
            u /= W;
            uint iy = u % H, n = u / H;
            int oy0, oy1, ox0, ox1;
            covering((int)iy, g.s6, g.s8, g.s4, g.sa, &oy0, &oy1);
            covering((int)ix, g.s7, g.s9, g.s5, g.sb, &ox0, &ox1);
            float s = 0.0f;
            for (int oy = oy0; oy < oy1; oy++)
                for (int ox = ox0; ox < ox1; ox++) {
                    ulong o = (((ulong)n * g.sa + oy) * g.sb + ox) * C + c;
                    if (arg[o] == (int)t) s += dy[o];
                }
            dx[t] = s;
        }
    }

    __kernel void k_avgpool_forward(__global const float *x, ulong xo, __global float *y, ulong yo,
                                    int16 g, uint total) {
        x += xo;
        y += yo;
        uint C = g.s3, OH = g.sa, OW = g.sb;
        FOR_EACH(t, (ulong)total) {
            uint u = (uint)t, c = u % C;
            u /= C;
            uint ox = u % OW;
            u /= OW;
            uint oy = u % OH, n = u / OH;
            int y0, y1, x0, x1;
            pool_window((int)oy, g.s6, g.s8, g.s4, g.s1, &y0, &y1);
            pool_window((int)ox, g.s7, g.s9, g.s5, g.s2, &x0, &x1);
            real s = 0;
            int count = 0;
            for (int iy = y0; iy < y1; iy++)
                for (int ix = x0; ix < x1; ix++, count++)
                    s += (real)x[(((ulong)n * g.s1 + iy) * g.s2 + ix) * C + c];
            y[t] = count ? (float)(s / (real)count) : 0.0f;
        }
    }

    int real_count(int o, int s, int pad, int p, int in) {
        int lo, hi;
        pool_window(o, s, pad, p, in, &lo, &hi);
        return hi > lo ? hi - lo : 0;
    }

    __kernel void k_avgpool_backward(__global const float *dy, ulong dyo, __global float *dx,
                                     ulong dxo, int16 g, uint total) {
        dy += dyo;
        dx += dxo;
        uint C = g.s3, H = g.s1, W = g.s2;
        FOR_EACH(t, (ulong)total) {
            uint u = (uint)t, c = u % C;
            u /= C;
            uint ix = u % W;
            u /= W;
            uint iy = u % H, n = u / H;
            int oy0, oy1, ox0, ox1;
            covering((int)iy, g.s6, g.s8, g.s4, g.sa, &oy0, &oy1);
            covering((int)ix, g.s7, g.s9, g.s5, g.sb, &ox0, &ox1);
            real s = 0;
            for (int oy = oy0; oy < oy1; oy++)
                for (int ox = ox0; ox < ox1; ox++) {
                    int count = real_count(oy, g.s6, g.s8, g.s4, g.s1) *
                                real_count(ox, g.s7, g.s9, g.s5, g.s2);
                    s += (real)dy[(((ulong)n * g.sa + oy) * g.sb + ox) * C + c] / (real)count;
                }
            dx[t] = (float)s;
        }
    }

    /* ---- depthwise convolution: oc = c * m, kernel (kh, kw, c, m); every
     * element a gather of its own sum, taps in (ky, kx) order ---- */

    __kernel void k_dw_forward(__global const float *x, ulong xo, __global const float *w, ulong wo,
                               __global float *y, ulong yo, int16 g, uint total) {
        x += xo;
        w += wo;
        y += yo;
        uint C = g.s3, KH = g.s4, KW = g.s5, OC = g.s6, OH = g.sd, OW = g.se, M = OC / C;
        FOR_EACH(t, (ulong)total) {
            uint u = (uint)t, o = u % OC;
            u /= OC;
            uint ox = u % OW;
            u /= OW;
            uint oy = u % OH, n = u / OH;
            float s = 0.0f;
            for (uint ky = 0; ky < KH; ky++) {
                int iy = (int)oy * g.s7 + (int)ky * g.s9 - g.sb;
                if (iy < 0 || iy >= g.s1) continue;
                for (uint kx = 0; kx < KW; kx++) {
                    int ix = (int)ox * g.s8 + (int)kx * g.sa - g.sc;
                    if (ix < 0 || ix >= g.s2) continue;
                    s += x[(((ulong)n * g.s1 + iy) * g.s2 + ix) * C + o / M] *
                         w[(ky * KW + kx) * OC + o];
                }
            }
            y[t] = s;
        }
    }

    __kernel void k_dw_data(__global const float *dy, ulong dyo, __global const float *w, ulong wo,
                            __global float *dx, ulong dxo, int16 g, uint total) {
        dy += dyo;
        w += wo;
        dx += dxo;
        uint C = g.s3, KH = g.s4, KW = g.s5, OC = g.s6, OH = g.sd, OW = g.se, M = OC / C;
        FOR_EACH(t, (ulong)total) {
            uint u = (uint)t, c = u % C;
            u /= C;
            uint ix = u % (uint)g.s2;
            u /= (uint)g.s2;
            uint iy = u % (uint)g.s1, n = u / (uint)g.s1;
            float s = 0.0f;
            for (uint ky = 0; ky < KH; ky++) {
                int oy = tap_source((int)iy, (int)ky, g.s7, g.s9, g.sb, (int)OH);
                if (oy < 0) continue;
                for (uint kx = 0; kx < KW; kx++) {
                    int ox = tap_source((int)ix, (int)kx, g.s8, g.sa, g.sc, (int)OW);
                    if (ox < 0) continue;
                    ulong at = (((ulong)n * OH + (uint)oy) * OW + (uint)ox) * OC + c * M;
                    for (uint j = 0; j < M; j++)
                        s += dy[at + j] * w[(ky * KW + kx) * OC + c * M + j];
                }
            }
            dx[t] = s;
        }
    }

    /* One work-item per kernel element: its sum over every output pixel. */
    __kernel void k_dw_filter(__global const float *x, ulong xo, __global const float *dy,
                              ulong dyo, __global float *dw, ulong dwo, int16 g, float beta,
                              uint total) {
        x += xo;
        dy += dyo;
        dw += dwo;
        uint C = g.s3, KW = g.s5, OC = g.s6, OH = g.sd, OW = g.se, M = OC / C;
        FOR_EACH(t, (ulong)total) {
            uint o = (uint)t % OC, tap = (uint)t / OC, ky = tap / KW, kx = tap % KW;
            float s = 0.0f;
            for (uint n = 0; n < (uint)g.s0; n++)
                for (uint oy = 0; oy < OH; oy++) {
                    int iy = (int)oy * g.s7 + (int)ky * g.s9 - g.sb;
                    if (iy < 0 || iy >= g.s1) continue;
                    for (uint ox = 0; ox < OW; ox++) {
                        int ix = (int)ox * g.s8 + (int)kx * g.sa - g.sc;
                        if (ix < 0 || ix >= g.s2) continue;
                        s += x[(((ulong)n * g.s1 + iy) * g.s2 + ix) * C + o / M] *
                             dy[(((ulong)n * OH + oy) * OW + ox) * OC + o];
                    }
                }
            dw[t] = beta == 0.0f ? s : beta * dw[t] + s;
        }
    }

);

/* Needs doubles in kernel code, so it is built only where the device has
 * them; elsewhere the host finishes the sum (ocl_reg.c). */
const char kc_ocl_src_fp64[] = KC_CL(

    /* out[0] += l1 A + l2 Q (penalty) or += Q (sum of squares), the block
     * sums taken in order. */
    __kernel void k_penalty_finish(__global const double *part, uint blocks, __global double *out,
                                   ulong oo, float l1, float l2, int squares_only) {
        if (get_global_id(0) != 0) return;
        double a = 0, q = 0;
        for (uint b = 0; b < blocks; b++) {
            a += part[b];
            q += part[blocks + b];
        }
        double add = 0;
        if (squares_only) {
            add = q;
        } else {
            if (l1 != 0.0f) add += (double)l1 * a;
            if (l2 != 0.0f) add += (double)l2 * q;
        }
        out[oo] += add;
    }

);

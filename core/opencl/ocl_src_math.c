/* OpenCL C source of the elementwise ops, strided copies, reductions and
 * softmax. The program is built without relaxed-math options and with
 * contraction off, so a + b * c rounds twice as it does in the host's C.
 * `real` is double where the device has cl_khr_fp64 (sums and transcendental
 * functions then round once to float, as the reference backend's do) and
 * float elsewhere. The enum constants (UN_*, BIN_*, RED_*, ACT_*, COPY_*)
 * are defined by the host from core/backend.h when it builds the program. */
#include "core/opencl/ocl.h"

/* Source text written as code: the C preprocessor turns it into one string
 * (comments go, tokens stay). It cannot hold directives; those are in the
 * prelude below. */
#define KC_CL(...) #__VA_ARGS__ "\n"

const char kc_ocl_src_prelude[] =
    "#ifdef KC_FP64\n"
    "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n"
    "typedef double real;\n"
    "#define REAL_IS_DOUBLE 1\n"
    "#define R(c) c\n"
    "#else\n"
    "typedef float real;\n"
    "#define REAL_IS_DOUBLE 0\n"
    "#define R(c) c##f\n"
    "#endif\n"
    "#pragma OPENCL FP_CONTRACT OFF\n"
    "#define FOR_EACH(i, n) for (ulong i = get_global_id(0); i < (n); i += get_global_size(0))\n";

const char kc_ocl_src_math[] = KC_CL(

    __kernel void k_fill(__global float *y, ulong yo, float v, ulong n) {
        y += yo;
        FOR_EACH(i, n) y[i] = v;
    }

    __kernel void k_scale(__global float *y, ulong yo, float a, ulong n) {
        y += yo;
        FOR_EACH(i, n) y[i] *= a;
    }

    __kernel void k_axpy(float a, __global const float *x, ulong xo, __global float *y, ulong yo,
                         ulong n) {
        x += xo;
        y += yo;
        FOR_EACH(i, n) y[i] += a * x[i];
    }

    __kernel void k_mul(__global const float *a, ulong ao, __global const float *b, ulong bo,
                        __global float *y, ulong yo, ulong n) {
        a += ao;
        b += bo;
        y += yo;
        FOR_EACH(i, n) y[i] = a[i] * b[i];
    }

    /* Split by sign so exp never overflows. */
    real sigmoid_r(real x) {
        if (x >= (real)0) return (real)1 / ((real)1 + exp(-x));
        real e = exp(x);
        return e / ((real)1 + e);
    }

    /* NaN wins in max and min, unlike fmax; ties keep u. */
    float max_nan(float u, float v) { return (u >= v || u != u) ? u : v; }

    float min_nan(float u, float v) { return (u <= v || u != u) ? u : v; }

    /* Each result is one rounding of the exact value, as on the reference
     * backend (in double, that is the float operation itself for + - * /
     * and sqrt; 1 / sqrt x rounds once). */
    float unary_op(int op, float xf, float af) {
        real x = (real)xf, a = (real)af;
        switch (op) {
        case UN_NEG:
            return -xf;
        case UN_ABS:
            return fabs(xf);
        case UN_SIGN:
            return xf > 0.0f ? 1.0f : xf < 0.0f ? -1.0f : xf;
        case UN_SQUARE:
            return (float)(x * x);
        case UN_SQRT:
            return (float)sqrt(x);
        case UN_RSQRT:
            return (float)((real)1 / sqrt(x));
        case UN_RECIP:
            return (float)((real)1 / x);
        case UN_EXP:
            return (float)exp(x);
        case UN_LOG:
            return (float)log(x);
        case UN_LOG1P:
            return (float)log1p(x);
        case UN_TANH:
            return (float)tanh(x);
        case UN_SIGMOID:
            return (float)sigmoid_r(x);
        case UN_FLOOR:
            return floor(xf);
        case UN_ADD:
            return (float)(x + a);
        case UN_MUL:
            return (float)(x * a);
        case UN_DIV:
            return (float)(x / a);
        case UN_RSUB:
            return (float)(a - x);
        case UN_POW:
            return (float)pow(x, a);
        case UN_MAX:
            return max_nan(xf, af);
        case UN_MIN:
            return min_nan(xf, af);
        case UN_GT:
            return xf > af ? 1.0f : 0.0f;
        case UN_GE:
            return xf >= af ? 1.0f : 0.0f;
        case UN_LT:
            return xf < af ? 1.0f : 0.0f;
        case UN_LE:
            return xf <= af ? 1.0f : 0.0f;
        case UN_EQ:
            return xf == af ? 1.0f : 0.0f;
        }
        return xf;
    }

    __kernel void k_unary(int op, float a, __global const float *x, ulong xo, __global float *y,
                          ulong yo, ulong n) {
        x += xo;
        y += yo;
        FOR_EACH(i, n) y[i] = unary_op(op, x[i], a);
    }

    float binary_op(int op, float a, float b) {
        switch (op) {
        case BIN_ADD:
            return a + b;
        case BIN_SUB:
            return a - b;
        case BIN_MUL:
            return a * b;
        case BIN_DIV:
            return a / b;
        case BIN_MAX:
            return max_nan(a, b);
        case BIN_MIN:
            return min_nan(a, b);
        case BIN_POW:
            return (float)pow((real)a, (real)b);
        case BIN_GT:
            return a > b ? 1.0f : 0.0f;
        case BIN_GE:
            return a >= b ? 1.0f : 0.0f;
        case BIN_LT:
            return a < b ? 1.0f : 0.0f;
        case BIN_LE:
            return a <= b ? 1.0f : 0.0f;
        case BIN_EQ:
            return a == b ? 1.0f : 0.0f;
        case BIN_NE:
            return a != b ? 1.0f : 0.0f;
        }
        return a;
    }

    /* dims.s3 is the fastest axis; plain: a, b and y are dense and the same shape. */
    __kernel void k_binary(int op, __global const float *a, ulong ao, __global const float *b,
                           ulong bo, __global float *y, ulong yo, ulong n, ulong4 dims, ulong4 sa,
                           ulong4 sb, int plain) {
        a += ao;
        b += bo;
        y += yo;
        if (plain) {
            FOR_EACH(i, n) y[i] = binary_op(op, a[i], b[i]);
            return;
        }
        FOR_EACH(i, n) {
            ulong t = i;
            ulong i3 = t % dims.s3;
            t /= dims.s3;
            ulong i2 = t % dims.s2;
            t /= dims.s2;
            ulong i1 = t % dims.s1, i0 = t / dims.s1;
            ulong pa = i0 * sa.s0 + i1 * sa.s1 + i2 * sa.s2 + i3 * sa.s3;
            ulong pb = i0 * sb.s0 + i1 * sb.s1 + i2 * sb.s2 + i3 * sb.s3;
            y[i] = binary_op(op, a[pa], b[pb]);
        }
    }

    __kernel void k_select(__global const float *cond, ulong co, __global const float *a, ulong ao,
                           __global const float *b, ulong bo, __global float *y, ulong yo,
                           ulong n) {
        cond += co;
        a += ao;
        b += bo;
        y += yo;
        FOR_EACH(i, n) y[i] = cond[i] != 0.0f ? a[i] : b[i];
    }

    __kernel void k_copy2d(__global float *dst, ulong dsto, ulong ldd, __global const float *src,
                           ulong srco, ulong lds, ulong rows, ulong cols) {
        dst += dsto;
        src += srco;
        FOR_EACH(i, rows * cols) {
            ulong r = i / cols, j = i - r * cols;
            dst[r * ldd + j] = src[r * lds + j];
        }
    }

    /* The strided copy of kc_copy_desc: SET moves the four bytes as they are
     * (floats or int32s), ADD adds floats. Element i of the index space is
     * split into its indices from the last axis up. */
    __kernel void k_copy_strided(int mode, __global uint *dst, ulong dsto, __global const uint *src,
                                 ulong srco, int rank, ulong8 dims8, ulong8 ss8, ulong8 ds8,
                                 ulong n) {
        dst += dsto;
        src += srco;
        ulong dims[8], ss[8], ds[8];
        vstore8(dims8, 0, dims);
        vstore8(ss8, 0, ss);
        vstore8(ds8, 0, ds);
        FOR_EACH(i, n) {
            ulong t = i, so = 0, dof = 0;
            for (int k = rank - 1; k >= 0; k--) {
                ulong q = t / dims[k];
                ulong ik = t - q * dims[k];
                so += ik * ss[k];
                dof += ik * ds[k];
                t = q;
            }
            if (mode == COPY_ADD)
                dst[dof] = as_uint(as_float(dst[dof]) + as_float(src[so]));
            else
                dst[dof] = src[so];
        }
    }

    /* C = beta C for gemm with k = 0, and the clearing of C before a beta-0
     * product: beta 0 writes zeros without reading. */
    __kernel void k_scale2d(__global float *y, ulong yo, ulong ld, ulong rows, ulong cols,
                            float beta) {
        y += yo;
        FOR_EACH(i, rows * cols) {
            ulong r = i / cols, j = i - r * cols;
            __global float *p = y + r * ld + j;
            *p = beta == 0.0f ? 0.0f : beta * *p;
        }
    }

    /* ---- reductions: (outer, len, inner), y[o, i] = alpha R + beta y ---- */

    /* NaN wins, from either side. */
    real max_real(real a, real b) {
        if (isnan(a)) return a;
        return (isnan(b) || b > a) ? b : a;
    }

    real min_real(real a, real b) {
        if (isnan(a)) return a;
        return (isnan(b) || b < a) ? b : a;
    }

    real red_init(int op) {
        if (op == RED_MAX) return -INFINITY;
        if (op == RED_MIN) return INFINITY;
        return (real)0;
    }

    real red_step(int op, real acc, float v) {
        switch (op) {
        case RED_MAX:
            return max_real(acc, v);
        case RED_MIN:
            return min_real(acc, v);
        case RED_SUMSQ:
            return acc + (real)v * (real)v;
        case RED_SUMABS:
            return acc + fabs((real)v);
        }
        return acc + (real)v;
    }

    real red_join(int op, real a, real b) {
        if (op == RED_MAX) return max_real(a, b);
        if (op == RED_MIN) return min_real(a, b);
        return a + b;
    }

    /* Is v a better maximum than best (NaN counts as the largest)? */
    int arg_better(float v, float best) { return (isnan(v) && !isnan(best)) || v > best; }

    float red_out(int op, real r, ulong len, float alpha, float beta, __global const float *y) {
        if (op == RED_MEAN) r = r / (real)len;
        real v = (real)alpha * r;
        if (beta != 0.0f) v = v + (real)beta * (real)*y;
        return (float)v;
    }

    /* One work-item per output, in order along len. */
    __kernel void k_reduce_item(int op, __global const float *x, ulong xo, __global float *y,
                                ulong yo, ulong outer, ulong len, ulong inner, float alpha,
                                float beta) {
        x += xo;
        y += yo;
        FOR_EACH(t, outer * inner) {
            ulong o = t / inner, i = t - o * inner;
            __global const float *p = x + o * len * inner + i;
            real r;
            if (op == RED_ARGMAX) {
                float best = len ? p[0] : 0.0f;
                ulong at = 0;
                for (ulong l = 1; l < len; l++) {
                    float v = p[l * inner];
                    if (arg_better(v, best)) best = v, at = l;
                }
                r = (real)at;
            } else {
                r = red_init(op);
                for (ulong l = 0; l < len; l++)
                    r = red_step(op, r, p[l * inner]);
            }
            y[t] = red_out(op, r, len, alpha, beta, y + t);
        }
    }

    /* One work-group per output: each item takes every L-th element in
     * order, then a fixed tree combines the items (power-of-two L). */
    __kernel void k_reduce_group(int op, __global const float *x, ulong xo, __global float *y,
                                 ulong yo, ulong len, ulong inner, float alpha, float beta,
                                 __local real *lv, __local long *li) {
        x += xo;
        y += yo;
        ulong t = get_group_id(0), o = t / inner, i = t - o * inner;
        uint lid = get_local_id(0), L = get_local_size(0);
        __global const float *p = x + o * len * inner + i;
        if (op == RED_ARGMAX) {
            float best = 0.0f;
            long at = -1;
            for (ulong l = lid; l < len; l += L) {
                float v = p[l * inner];
                if (at < 0 || arg_better(v, best)) best = v, at = (long)l;
            }
            lv[lid] = best;
            li[lid] = at;
        } else {
            real r = red_init(op);
            for (ulong l = lid; l < len; l += L)
                r = red_step(op, r, p[l * inner]);
            lv[lid] = r;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint s = L / 2; s > 0; s >>= 1) {
            if (lid < s) {
                if (op != RED_ARGMAX) {
                    lv[lid] = red_join(op, lv[lid], lv[lid + s]);
                } else if (li[lid + s] >= 0) {
                    float a = (float)lv[lid], b = (float)lv[lid + s];
                    int take = li[lid] < 0 || arg_better(b, a) ||
                               (!arg_better(a, b) && li[lid + s] < li[lid]);
                    if (take) lv[lid] = lv[lid + s], li[lid] = li[lid + s];
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        if (lid == 0) {
            real r = op == RED_ARGMAX ? (real)(li[0] < 0 ? 0 : li[0]) : lv[0];
            y[t] = red_out(op, r, len, alpha, beta, y + t);
        }
    }

    /* ---- softmax: one work-group per row ---- */

    real tree_sum(__local real *buf, real v) {
        uint lid = get_local_id(0), L = get_local_size(0);
        buf[lid] = v;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint s = L / 2; s > 0; s >>= 1) {
            if (lid < s) buf[lid] += buf[lid + s];
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        real r = buf[0];
        barrier(CLK_LOCAL_MEM_FENCE);
        return r;
    }

    real tree_max(__local real *buf, real v) {
        uint lid = get_local_id(0), L = get_local_size(0);
        buf[lid] = v;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint s = L / 2; s > 0; s >>= 1) {
            if (lid < s) buf[lid] = fmax(buf[lid], buf[lid + s]);
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        real r = buf[0];
        barrier(CLK_LOCAL_MEM_FENCE);
        return r;
    }

    /* y = exp(x - max) / sum exp(x - max); max as fmax (NaN is skipped, and
     * then reaches every output through the sum). */
    __kernel void k_softmax_forward(__global const float *x, ulong xo, __global float *y, ulong yo,
                                    uint cols, __local real *buf) {
        ulong row = get_group_id(0);
        uint lid = get_local_id(0), L = get_local_size(0);
        __global const float *xr = x + xo + row * cols;
        __global float *yr = y + yo + row * cols;
        real m = -INFINITY;
        for (uint j = lid; j < cols; j += L)
            m = fmax(m, (real)xr[j]);
        m = tree_max(buf, m);
        real s = 0;
        for (uint j = lid; j < cols; j += L)
            s += exp((real)xr[j] - m);
        s = tree_sum(buf, s);
        for (uint j = lid; j < cols; j += L)
            yr[j] = (float)(exp((real)xr[j] - m) / s);
    }

    /* dx = y (dy - sum dy y) */
    __kernel void k_softmax_backward(__global const float *y, ulong yo, __global const float *dy,
                                     ulong dyo, __global float *dx, ulong dxo, uint cols,
                                     __local real *buf) {
        ulong row = get_group_id(0);
        uint lid = get_local_id(0), L = get_local_size(0);
        __global const float *yr = y + yo + row * cols, *dyr = dy + dyo + row * cols;
        __global float *dxr = dx + dxo + row * cols;
        real dot = 0;
        for (uint j = lid; j < cols; j += L)
            dot += (real)dyr[j] * (real)yr[j];
        dot = tree_sum(buf, dot);
        for (uint j = lid; j < cols; j += L)
            dxr[j] = (float)((real)yr[j] * ((real)dyr[j] - dot));
    }

);

/* The backend interface: a table of functions that every compute device
 * implements. Layers, losses and optimizers are written once in terms of
 * these ops; adding a device means filling this table and passing
 * tests/test_backend.c (every op against the reference backend).
 *
 * Pointers to float/int32 data are device pointers obtained from alloc();
 * pointer arithmetic on them is allowed (offsets into one allocation).
 * Host code reads and writes device memory only through upload/download.
 * All dense data is row-major; images are NHWC; conv kernels are HWIO
 * (kh, kw, in, out) exactly as Keras stores them. */
#ifndef KC_BACKEND_H
#define KC_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef enum kc_act {
    KC_ACT_LINEAR = 0,
    KC_ACT_RELU,
    KC_ACT_SIGMOID,
    KC_ACT_TANH,
    KC_ACT_SOFTMAX, /* over the last axis; act_forward/act_backward do not take it */
    KC_ACT_ELU,         /* alpha (Keras default 1.0) */
    KC_ACT_SELU,
    KC_ACT_SOFTPLUS,
    KC_ACT_SOFTSIGN,
    KC_ACT_SWISH,       /* x * sigmoid(x), also "silu" */
    KC_ACT_GELU,        /* erf form: 0.5 x (1 + erf(x / sqrt 2)) */
    KC_ACT_LEAKY_RELU,  /* alpha = negative slope (Keras 3 default 0.2) */
    KC_ACT_HARD_SIGMOID,/* Keras 3: clip(x / 6 + 0.5, 0, 1) */
    KC_ACT_EXPONENTIAL,
    KC_ACT_COUNT
} kc_act;

/* Blocks of l1l2_penalty's fixed-order sum. */
#define KC_PENALTY_BLOCKS 64

/* 2-D convolution, NHWC input, HWIO kernel, no bias (bias_add does that).
 * out[n,oy,ox,o] = sum_{ky,kx,c} x[n, oy*sh + ky*dh - pad_t, ox*sw + kx*dw - pad_l, c]
 *                                * w[ky,kx,c,o]          (out-of-range x reads as 0) */
typedef struct kc_conv2d_desc {
    int n, h, w, c;   /* input */
    int kh, kw, oc;   /* kernel and output channels */
    int sh, sw;       /* strides */
    int dh, dw;       /* dilation */
    int pad_t, pad_l; /* zeros before; the extra for "same" goes bottom/right */
    int oh, ow;       /* output size (the caller computes it) */
} kc_conv2d_desc;

/* 2-D pooling, NHWC. Windows that overhang the input (padding "same") cover
 * only real cells: max ignores padding, average divides by the real count. */
typedef struct kc_pool2d_desc {
    int n, h, w, c;
    int ph, pw;       /* pool size */
    int sh, sw;       /* strides */
    int pad_t, pad_l;
    int oh, ow;
} kc_pool2d_desc;

/* Nadam's per-step scalars, formed by the caller in float32 as Keras 3 does:
 * u_t = b1 (1 - 0.5 * 0.96^t), prod_t = u_1 ... u_t (Keras's running u_product). */
typedef struct kc_nadam_coef {
    float lr, eps;
    float one_minus_b1, one_minus_b2; /* 1 - b, with b cast to float32 first */
    float u_next;                     /* u_{t+1} */
    float one_minus_u;                /* 1 - u_t */
    float one_minus_prod_next;        /* 1 - prod_t u_{t+1} */
    float one_minus_prod;             /* 1 - prod_t */
    float one_minus_b2_power;         /* 1 - b2^t */
} kc_nadam_coef;

typedef struct kc_backend {
    const char *name;

    /* ---- memory ---- */
    void *(*alloc)(size_t bytes);          /* zero-filled; NULL on failure */
    void (*free)(void *p);
    void (*upload)(void *dst_dev, const void *src_host, size_t bytes);
    void (*download)(void *dst_host, const void *src_dev, size_t bytes);
    void (*copy)(void *dst_dev, const void *src_dev, size_t bytes);
    void (*set_threads)(int n);            /* 0 = all cores */

    /* ---- elementwise ---- */
    void (*fill)(float *y, float v, size_t n);
    void (*scale)(float *y, float a, size_t n);                       /* y *= a */
    void (*axpy)(float a, const float *x, float *y, size_t n);        /* y += a x */
    void (*mul)(const float *a, const float *b, float *y, size_t n);  /* y = a * b */

    /* ---- dense ---- */
    /* C = alpha * op(A) * op(B) + beta * C; op(A) is m x k, op(B) is k x n,
     * ta/tb nonzero mean transposed; lda/ldb/ldc are row strides. */
    void (*gemm)(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);
    /* y[r, j] += b[j] for a rows x cols matrix */
    void (*bias_add)(float *y, const float *b, int rows, int cols);
    /* db[j] = beta * db[j] + sum_r dy[r, j] (beta 1 accumulates, for shared weights) */
    void (*bias_grad)(float *db, const float *dy, int rows, int cols, float beta);

    /* ---- activations (elementwise kinds; softmax below) ---- */
    void (*act_forward)(kc_act act, float alpha, const float *x, float *y, size_t n);
    /* dx = dy * act'(x); y = act(x) is given too so kernels may use either */
    void (*act_backward)(kc_act act, float alpha, const float *x, const float *y,
                         const float *dy, float *dx, size_t n);
    void (*softmax_forward)(const float *x, float *y, int rows, int cols);
    void (*softmax_backward)(const float *y, const float *dy, float *dx, int rows, int cols);

    /* ---- convolution ---- */
    size_t (*conv2d_workspace)(const kc_conv2d_desc *d); /* bytes of scratch */
    void (*conv2d_forward)(const kc_conv2d_desc *d, const float *x, const float *w, float *y,
                           void *ws);
    void (*conv2d_backward_data)(const kc_conv2d_desc *d, const float *dy, const float *w,
                                 float *dx, void *ws); /* overwrites dx */
    /* dw = beta * dw + gradient */
    void (*conv2d_backward_filter)(const kc_conv2d_desc *d, const float *x, const float *dy,
                                   float *dw, float beta, void *ws);

    /* ---- pooling ---- */
    /* argmax receives, per output cell, the flat input index of the max */
    void (*maxpool2d_forward)(const kc_pool2d_desc *d, const float *x, float *y,
                              int32_t *argmax);
    void (*maxpool2d_backward)(const kc_pool2d_desc *d, const float *dy, const int32_t *argmax,
                               float *dx); /* overwrites dx */
    void (*avgpool2d_forward)(const kc_pool2d_desc *d, const float *x, float *y);
    void (*avgpool2d_backward)(const kc_pool2d_desc *d, const float *dy, float *dx);

    /* ---- dropout ----
     * mask[i] = (u(seed, stream, i) >= rate) ? 1/(1-rate) : 0 with u from
     * kc_rng_uniform (core/rng.h), so every backend draws the same mask
     * whatever its thread count; y = x * mask. Backward is mul(dy, mask). */
    void (*dropout_forward)(const float *x, float *y, float *mask, size_t n, float rate,
                            uint64_t seed, uint64_t stream);

    /* ---- weight penalties and constraints (models/regularizers.c) ---- */
    /* Returns l1 sum|x| + l2 sum x^2. The sums run in double over
     * KC_PENALTY_BLOCKS consecutive blocks of ceil(n / KC_PENALTY_BLOCKS)
     * elements, each in order, then over the block sums in order, so every
     * backend and thread count gives the same bits. When g is not NULL, adds
     * the gradient: g += l1 sign(x) + (2 l2) x, with sign(0) = 0. */
    double (*l1l2_penalty)(const float *x, float *g, size_t n, float l1, float l2);
    /* Norm projection (Keras's MaxNorm, MinMaxNorm, UnitNorm). w has shape
     * dims[0..rank) (row-major, rank <= 8); the axes whose bit is set in
     * `reduce` span one slice and the others index the slices. Each slice is
     * multiplied by (rate clip(norm, lo, hi) + (1 - rate) norm) / (eps + norm),
     * norm = sqrt(sum of its squares) summed in double in row-major order and
     * rounded to float before the rest (float arithmetic). */
    void (*norm_rescale)(float *w, const int64_t *dims, int rank, unsigned reduce, float lo,
                         float hi, float rate, float eps);

    /* ---- optimizer updates (Keras 3 rules; see models/optimizers.c) ---- */
    /* momentum 0: w -= lr g. Otherwise v = m v - lr g; w += v, or with nesterov
     * w += m v - lr g (v is the new velocity). v may be NULL when momentum is 0. */
    void (*sgd_update)(float *w, const float *g, float *v, size_t n, float lr, float momentum,
                       int nesterov);
    /* Factors named one_minus_x are Keras's (1 - x), rounded to float32 by the
     * caller from wherever Keras computes them (a Python double for most,
     * float32 where Keras casts x first); kernels apply them as given.
     * ms = rho ms + one_minus_rho g^2; centered: mg = rho mg + one_minus_rho g,
     * d = ms - mg^2 + eps, else d = ms + eps; inc = lr g / sqrt(d); momentum > 0:
     * mom = momentum mom + inc, w -= mom; else w -= inc. mg/mom may be NULL when unused. */
    void (*rmsprop_update)(float *w, const float *g, float *ms, float *mg, float *mom, size_t n,
                           float lr, float rho, float one_minus_rho, float momentum, float eps,
                           int centered);
    /* m += (g - m) one_minus_b1; v += (g^2 - v) one_minus_b2; amsgrad: vhat = max(vhat, v)
     * used for v; w -= m alpha / (sqrt(v) + eps), alpha = lr sqrt(1-b2^t)/(1-b1^t) computed
     * by the caller. vhat may be NULL unless amsgrad. (AdamW is this after weight_decay.) */
    void (*adam_update)(float *w, const float *g, float *m, float *v, float *vhat, size_t n,
                        float alpha, float one_minus_b1, float one_minus_b2, float eps,
                        int amsgrad);
    /* acc += g^2; w -= lr g / sqrt(acc + eps) */
    void (*adagrad_update)(float *w, const float *g, float *acc, size_t n, float lr, float eps);
    /* ag = rho ag + one_minus_rho g^2; d = -(sqrt(ad + eps) g / sqrt(ag + eps));
     * ad = rho ad + one_minus_rho d^2; w += lr d */
    void (*adadelta_update)(float *w, const float *g, float *ag, float *ad, size_t n, float lr,
                            float rho, float one_minus_rho, float eps);
    /* m += (g - m) one_minus_b1; u = max(b2 u, |g|);
     * w -= lr m / (one_minus_b1_power (u + eps)), one_minus_b1_power = 1 - b1^t */
    void (*adamax_update)(float *w, const float *g, float *m, float *u, size_t n, float lr,
                          float one_minus_b1, float b2, float one_minus_b1_power, float eps);
    /* m += (g - m) c.one_minus_b1; v += (g^2 - v) c.one_minus_b2;
     * mh = c.u_next m / c.one_minus_prod_next + c.one_minus_u g / c.one_minus_prod;
     * w -= mh lr / (sqrt(v / c.one_minus_b2_power) + eps) */
    void (*nadam_update)(float *w, const float *g, float *m, float *v, size_t n,
                         const kc_nadam_coef *c);
    /* w -= lr sign(m b1 + g (1 - b1)); m = m b2 + g (1 - b2), with 1 - b in float32 */
    void (*lion_update)(float *w, const float *g, float *m, size_t n, float lr, float b1, float b2);

    /* ---- gradient clipping and weight decay (Keras 3's base optimizer) ---- */
    /* sum of x^2 in double: KC_SUM_SQUARES_BLOCKS consecutive blocks of
     * ceil(n / KC_SUM_SQUARES_BLOCKS) elements, each summed in order, then the
     * block sums in order, so every backend and thread count gives the same bits. */
    double (*sum_squares)(const float *x, size_t n);
    /* y = (x a) / b, in that order (Keras's clip_by_norm); y may be x */
    void (*scale_div)(const float *x, float *y, float a, float b, size_t n);
    /* y = min(max(x, lo), hi); NaN stays NaN; y may be x */
    void (*clip)(const float *x, float *y, float lo, float hi, size_t n);
    /* w -= (w wd) lr */
    void (*weight_decay)(float *w, float wd, float lr, size_t n);
} kc_backend;

#define KC_SUM_SQUARES_BLOCKS 64

const kc_backend *kc_backend_cpu(void);
const kc_backend *kc_backend_reference(void);
/* "cpu" or "reference"; NULL if unknown */
const kc_backend *kc_backend_by_name(const char *name);

#endif

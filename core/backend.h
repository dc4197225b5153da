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

    /* ---- optimizer updates (Keras 3 rules; see models/optimizers.c) ---- */
    /* momentum 0: w -= lr g. Otherwise v = m v - lr g; w += v, or with nesterov
     * w += m v - lr g (v is the new velocity). v may be NULL when momentum is 0. */
    void (*sgd_update)(float *w, const float *g, float *v, size_t n, float lr, float momentum,
                       int nesterov);
    /* ms = rho ms + (1-rho) g^2; centered: mg = rho mg + (1-rho) g, d = ms - mg^2 + eps,
     * else d = ms + eps; inc = lr g / sqrt(d); momentum > 0: mom = momentum mom + inc,
     * w -= mom; else w -= inc. mg/mom may be NULL when unused. */
    void (*rmsprop_update)(float *w, const float *g, float *ms, float *mg, float *mom, size_t n,
                           float lr, float rho, float momentum, float eps, int centered);
    /* m += (1-b1)(g - m); v += (1-b2)(g^2 - v); amsgrad: vhat = max(vhat, v) used for v;
     * w -= alpha m / (sqrt(v) + eps), alpha = lr sqrt(1-b2^t)/(1-b1^t) computed by caller.
     * vhat may be NULL unless amsgrad. */
    void (*adam_update)(float *w, const float *g, float *m, float *v, float *vhat, size_t n,
                        float alpha, float b1, float b2, float eps, int amsgrad);
} kc_backend;

const kc_backend *kc_backend_cpu(void);
const kc_backend *kc_backend_reference(void);
/* "cpu" or "reference"; NULL if unknown */
const kc_backend *kc_backend_by_name(const char *name);

#endif

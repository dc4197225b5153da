/* The backend interface: a table of functions that every compute device
 * implements, and the device (an opened backend) they run on.
 *
 * Device memory is reached only through handles (kc_buf: an allocation plus a
 * byte offset); host code never dereferences them and moves data only with
 * upload/download. Every op takes the device first and returns a status
 * (KC_OK or an error code, the message in the device's error). Ops may run
 * asynchronously: they are ordered on the device's queue, and synchronize()
 * waits for all of them.
 *
 * The table has a small primitive core that every backend fills (memory,
 * fill/scale/axpy, unary and broadcasting binary math, select, reductions over
 * an axis, strided copies, gemm, activations, dropout, the penalty and
 * sum-of-squares reductions) and optional fused ops (conv, pooling, softmax,
 * optimizer updates, norm projection, ...). A backend leaves a fused op NULL
 * (or declines it in supports_op) and core/ops.c composes it from the
 * primitives: every fused op has a composition, so the primitive core alone
 * runs every model.
 *
 * Layers, losses and optimizers call the ops through core/ops.h, never the
 * table directly. Adding a backend means one directory core/<name>/ and one
 * line in core/backends.c; tests/test_backend.c runs every op of every
 * registered backend against the reference backend.
 *
 * All dense data is row-major float32 (int32 where said); images are NHWC;
 * conv kernels are HWIO (kh, kw, in, out) exactly as Keras stores them. */
#ifndef KC_BACKEND_H
#define KC_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* ------------------------------------------------------------ handles --- */

typedef struct kc_mem kc_mem; /* a backend's allocation (opaque) */

/* A place in device memory: allocation + byte offset. mem NULL = no buffer. */
typedef struct kc_buf {
    kc_mem *mem;
    size_t off;
} kc_buf;

#define KC_BUF_NULL ((kc_buf){0, 0})

static inline int kc_buf_ok(kc_buf b) {
    return b.mem != 0;
}
/* n floats (or int32s) further on. */
static inline kc_buf kc_buf_f(kc_buf b, size_t n) {
    b.off += n * 4;
    return b;
}
static inline kc_buf kc_buf_bytes(kc_buf b, size_t n) {
    b.off += n;
    return b;
}
static inline int kc_buf_eq(kc_buf a, kc_buf b) {
    return a.mem == b.mem && a.off == b.off;
}

/* ---------------------------------------------------------- op kinds --- */

typedef enum kc_act {
    KC_ACT_LINEAR = 0,
    KC_ACT_RELU,
    KC_ACT_SIGMOID,
    KC_ACT_TANH,
    KC_ACT_SOFTMAX, /* over the last axis; act_forward/act_backward do not take it */
    KC_ACT_ELU,     /* alpha (Keras default 1.0) */
    KC_ACT_SELU,
    KC_ACT_SOFTPLUS,
    KC_ACT_SOFTSIGN,
    KC_ACT_SWISH,        /* x * sigmoid(x), also "silu" */
    KC_ACT_GELU,         /* erf form: 0.5 x (1 + erf(x / sqrt 2)) */
    KC_ACT_LEAKY_RELU,   /* alpha = negative slope (Keras 3 default 0.2) */
    KC_ACT_HARD_SIGMOID, /* Keras 3: clip(x / 6 + 0.5, 0, 1) */
    KC_ACT_EXPONENTIAL,
    KC_ACT_RELU6,       /* min(max(x, 0), 6) */
    KC_ACT_HARD_SILU,   /* x relu6(x + 3) / 6, also "hard_swish" */
    KC_ACT_MISH,        /* x tanh(softplus(x)) */
    KC_ACT_LOG_SOFTMAX, /* over the last axis; like SOFTMAX, not for act_forward/act_backward */
    KC_ACT_COUNT
} kc_act;

/* y = f(x, a) elementwise; comparisons give 1.0 or 0.0. */
typedef enum kc_unary {
    KC_UN_NEG = 0, /* -x */
    KC_UN_ABS,
    KC_UN_SIGN, /* -1, +-0 (the zero's sign kept), 1; NaN stays NaN */
    KC_UN_SQUARE,
    KC_UN_SQRT,
    KC_UN_RSQRT, /* 1 / sqrt(x) */
    KC_UN_RECIP, /* 1 / x */
    KC_UN_EXP,
    KC_UN_LOG,
    KC_UN_LOG1P,
    KC_UN_TANH,
    KC_UN_SIGMOID,
    KC_UN_FLOOR,
    KC_UN_ADD,  /* x + a */
    KC_UN_MUL,  /* x a */
    KC_UN_DIV,  /* x / a */
    KC_UN_RSUB, /* a - x */
    KC_UN_POW,  /* x^a (powf) */
    KC_UN_MAX,  /* max(x, a); NaN if x or a is NaN */
    KC_UN_MIN,  /* min(x, a); NaN if x or a is NaN */
    KC_UN_GT,   /* x > a */
    KC_UN_GE,   /* x >= a */
    KC_UN_LT,   /* x < a */
    KC_UN_LE,   /* x <= a */
    KC_UN_EQ,   /* x == a */
    KC_UN_COUNT
} kc_unary_op;

/* y = a op b elementwise with broadcasting; comparisons give 1.0 or 0.0. */
typedef enum kc_binary {
    KC_BIN_ADD = 0,
    KC_BIN_SUB,
    KC_BIN_MUL,
    KC_BIN_DIV,
    KC_BIN_MAX, /* NaN if either is NaN, else max(a, b) (a on ties) */
    KC_BIN_MIN,
    KC_BIN_POW,
    KC_BIN_GT,
    KC_BIN_GE,
    KC_BIN_LT,
    KC_BIN_LE,
    KC_BIN_EQ,
    KC_BIN_NE,
    KC_BIN_COUNT
} kc_binary_op;

/* Broadcast geometry of a binary op, after kc_bcast_make (core/ops.h) has
 * merged axes: y is dense with dims[0..rank); element (i0..i3) reads
 * a[sum i_k sa[k]] and b[sum i_k sb[k]] (stride 0 = broadcast axis). */
#define KC_BCAST_RANK 4
typedef struct kc_bcast {
    int rank;
    int64_t dims[KC_BCAST_RANK];
    int64_t sa[KC_BCAST_RANK], sb[KC_BCAST_RANK];
} kc_bcast;

/* Reductions over the middle axis of x viewed as (outer, len, inner):
 * y[o, i] = alpha * R_{l < len} x[o, l, i] + beta * y[o, i] (beta 0 never
 * reads y). With len 0: SUM, SUMSQ, SUMABS give 0, MEAN NaN, MAX -inf, MIN
 * +inf, ARGMAX 0. Sums run in a fixed order (blocks combined in order), so a
 * backend gives the same bits for the same input whatever its threads. */
typedef enum kc_reduce {
    KC_RED_SUM = 0,
    KC_RED_MEAN,
    KC_RED_MAX, /* NaN wins */
    KC_RED_MIN,
    KC_RED_SUMSQ, /* sum of squares */
    KC_RED_SUMABS,
    KC_RED_ARGMAX, /* index of the first maximum, as a float */
    KC_RED_COUNT
} kc_reduce_op;

typedef struct kc_reduce_desc {
    int64_t outer, len, inner;
} kc_reduce_desc;

/* Strided copy of 4-byte elements over an index space of up to KC_COPY_RANK
 * axes: element (i0, i1, ...) of dims reads src[sum i_k ss[k]] and writes
 * dst[sum i_k ds[k]] (strides in elements, >= 0; a source stride 0 repeats
 * one value). No two elements of the index space may write the same
 * destination element, and the source and destination ranges must not
 * overlap, so the elements may be copied in any order. */
#define KC_COPY_RANK 8
typedef struct kc_copy_desc {
    int rank; /* 1 .. KC_COPY_RANK */
    int64_t dims[KC_COPY_RANK];
    int64_t ss[KC_COPY_RANK], ds[KC_COPY_RANK];
} kc_copy_desc;

typedef enum kc_copy_mode {
    KC_COPY_SET = 0, /* dst = src, bit for bit (floats or int32s) */
    KC_COPY_ADD,     /* dst += src, float addition */
    KC_COPY_MODE_COUNT
} kc_copy_mode;

/* Blocks of the fixed-order double sums of l1l2_penalty and sum_squares. */
#define KC_PENALTY_BLOCKS 64
#define KC_SUM_SQUARES_BLOCKS 64

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
    int ph, pw; /* pool size */
    int sh, sw; /* strides */
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

/* Ops a backend may leave out (NULL slot or supports_op() == 0). */
typedef enum kc_op {
    KC_OP_MUL = 0,
    KC_OP_BIAS_ADD,
    KC_OP_BIAS_GRAD,
    KC_OP_GEMM_BATCHED,
    KC_OP_SOFTMAX,   /* forward and backward */
    KC_OP_CONV2D,    /* workspace, forward, both backwards */
    KC_OP_MAXPOOL2D, /* forward and backward */
    KC_OP_AVGPOOL2D,
    KC_OP_NORM_RESCALE,
    KC_OP_SCALE_DIV,
    KC_OP_CLIP,
    KC_OP_WEIGHT_DECAY,
    KC_OP_SGD,
    KC_OP_RMSPROP,
    KC_OP_ADAM,
    KC_OP_ADAGRAD,
    KC_OP_ADADELTA,
    KC_OP_ADAMAX,
    KC_OP_NADAM,
    KC_OP_LION,
    KC_OP_DEPTHWISE_CONV2D, /* forward, both backwards */
    KC_OP_EMBEDDING,        /* forward and backward */
    KC_OP_COUNT
} kc_op;

/* --------------------------------------------------------- the device --- */

typedef struct kc_backend kc_backend;

/* What a user asks for when opening a backend. */
typedef struct kc_device_opts {
    int device;  /* index among the backend's devices (kerasc --list-devices); 0 = first */
    int threads; /* host threads the backend may use; 0 = all cores */
} kc_device_opts;

/* An opened backend: its context (queue, library handles), the first error
 * an op met (sticky until kc_device_clear_error), and the traffic between
 * host and device since the counters were last reset. */
typedef struct kc_device {
    const kc_backend *be;
    void *impl; /* the backend's own state */
    int index;  /* the device chosen */
    int threads;
    char name[160]; /* "cpu", "opencl:0 (pthread-skylake ...)" */
    /* 1 when long sums and math functions run in float only (an OpenCL
     * device without cl_khr_fp64): results then round differently from the
     * backends that accumulate in double, still deterministically */
    int float_math;
    kc_error err;
    uint64_t bytes_up, bytes_down; /* host -> device, device -> host */
    uint64_t transfers;
    /* scratch for composed fallbacks (core/ops.c), grown on first use */
    kc_buf scratch;
    size_t scratch_bytes;
} kc_device;

/* Upload/download: blocking, or queued (the host buffer must then stay
 * valid and unchanged until synchronize). */
enum { KC_BLOCKING = 0, KC_ASYNC = 1 };

struct kc_backend {
    const char *name;        /* "cpu", "reference", "opencl" */
    const char *description; /* one line for --list-devices and errors */

    /* ---- lifetime ---- */
    /* Fills d->impl, d->name; fails with a reason (no platform, no such
     * device) when the backend cannot run here. */
    int (*open)(kc_device *d, const kc_device_opts *o);
    void (*close)(kc_device *d);
    /* Writes one line per device ("0: name") into buf; returns the count, or
     * a negative value with the reason in buf when none can be listed. */
    int (*list_devices)(char *buf, size_t n);
    int (*synchronize)(kc_device *d);
    /* Optional: may decline an op for a geometry (desc may be NULL). */
    int (*supports_op)(const kc_device *d, kc_op op, const void *desc);

    /* ---- memory (zero-filled allocations) ---- */
    int (*alloc)(kc_device *d, size_t bytes, kc_buf *out);
    void (*free)(kc_device *d, kc_buf b); /* b.off is 0; KC_BUF_NULL is a no-op */
    int (*upload)(kc_device *d, kc_buf dst, const void *src, size_t bytes, int mode);
    int (*download)(kc_device *d, void *dst, kc_buf src, size_t bytes, int mode);
    int (*copy)(kc_device *d, kc_buf dst, kc_buf src, size_t bytes); /* may overlap */
    /* rows blocks of `cols` 4-byte elements: dst[r ldd + j] = src[r lds + j] */
    int (*copy2d)(kc_device *d, kc_buf dst, size_t ldd, kc_buf src, size_t lds, size_t rows,
                  size_t cols);
    /* the strided copy of kc_copy_desc; core/ops.c hands it rank >= 1, no
     * empty axis and no axis of extent 1, with mergeable axes merged */
    int (*copy_strided)(kc_device *d, kc_copy_mode mode, const kc_copy_desc *g, kc_buf src,
                        kc_buf dst);

    /* ---- primitive math (all required) ---- */
    int (*fill)(kc_device *d, kc_buf y, float v, size_t n);
    int (*scale)(kc_device *d, kc_buf y, float a, size_t n);          /* y *= a */
    int (*axpy)(kc_device *d, float a, kc_buf x, kc_buf y, size_t n); /* y += a x */
    int (*unary)(kc_device *d, kc_unary_op op, float a, kc_buf x, kc_buf y,
                 size_t n); /* y may be x */
    /* y may be a or b where that operand is not broadcast */
    int (*binary)(kc_device *d, kc_binary_op op, const kc_bcast *g, kc_buf a, kc_buf b, kc_buf y);
    /* y = cond != 0 ? a : b; y may alias any input */
    int (*select)(kc_device *d, kc_buf cond, kc_buf a, kc_buf b, kc_buf y, size_t n);
    int (*reduce)(kc_device *d, kc_reduce_op op, const kc_reduce_desc *g, float alpha, kc_buf x,
                  float beta, kc_buf y);
    /* C = alpha op(A) op(B) + beta C; op(A) is m x k, op(B) is k x n, ta/tb
     * nonzero mean transposed; lda/ldb/ldc are row strides. beta 0 never reads C. */
    int (*gemm)(kc_device *d, int ta, int tb, int m, int n, int k, float alpha, kc_buf a, int lda,
                kc_buf b, int ldb, float beta, kc_buf c, int ldc);
    /* act in KC_ACT_* except SOFTMAX; dx = dy act'(x), y = act(x) given too */
    int (*act_forward)(kc_device *d, kc_act act, float alpha, kc_buf x, kc_buf y, size_t n);
    int (*act_backward)(kc_device *d, kc_act act, float alpha, kc_buf x, kc_buf y, kc_buf dy,
                        kc_buf dx, size_t n);
    /* mask[i] = (u(seed, stream, i) >= rate) ? 1/(1-rate) : 0 with u from
     * kc_rng_uniform (core/rng.h), the same on every backend; y = x mask. */
    int (*dropout_forward)(kc_device *d, kc_buf x, kc_buf y, kc_buf mask, size_t n, float rate,
                           uint64_t seed, uint64_t stream);
    /* out[0] (a double) += l1 sum|x| + l2 sum x^2. The sums run in double over
     * KC_PENALTY_BLOCKS consecutive blocks of ceil(n / KC_PENALTY_BLOCKS)
     * elements, each in order, then over the block sums in order, so every
     * backend and thread count gives the same bits. When g is not null, adds
     * the gradient: g += l1 sign(x) + (2 l2) x, with sign(0) = 0. */
    int (*l1l2_penalty)(kc_device *d, kc_buf x, kc_buf g, size_t n, float l1, float l2, kc_buf out);
    /* out[0] (a double) += sum of x^2, over KC_SUM_SQUARES_BLOCKS blocks as above */
    int (*sum_squares)(kc_device *d, kc_buf x, size_t n, kc_buf out);

    /* ---- optional fused ops (NULL: core/ops.c composes them) ---- */
    int (*mul)(kc_device *d, kc_buf a, kc_buf b, kc_buf y, size_t n);      /* y = a b */
    int (*bias_add)(kc_device *d, kc_buf y, kc_buf b, int rows, int cols); /* y[r, j] += b[j] */
    /* db[j] = beta db[j] + sum_r dy[r, j] */
    int (*bias_grad)(kc_device *d, kc_buf db, kc_buf dy, int rows, int cols, float beta);
    /* batch products: A_i = a + i sa (floats), likewise B_i, C_i */
    int (*gemm_batched)(kc_device *d, int ta, int tb, int m, int n, int k, float alpha, kc_buf a,
                        int lda, size_t sa, kc_buf b, int ldb, size_t sb, float beta, kc_buf c,
                        int ldc, size_t sc, int batch);
    int (*softmax_forward)(kc_device *d, kc_buf x, kc_buf y, int rows, int cols);
    int (*softmax_backward)(kc_device *d, kc_buf y, kc_buf dy, kc_buf dx, int rows, int cols);

    size_t (*conv2d_workspace)(const kc_device *d, const kc_conv2d_desc *g); /* bytes */
    int (*conv2d_forward)(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w, kc_buf y,
                          kc_buf ws);
    int (*conv2d_backward_data)(kc_device *d, const kc_conv2d_desc *g, kc_buf dy, kc_buf w,
                                kc_buf dx, kc_buf ws); /* overwrites dx */
    /* dw = beta dw + gradient */
    int (*conv2d_backward_filter)(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf dy,
                                  kc_buf dw, float beta, kc_buf ws);
    /* argmax (4 bytes per output cell) carries the position of each max from
     * forward to the backward of the same device and geometry: a backend
     * stores the flat input index as an int32; core/ops.c's composition,
     * built from float primitives, stores the window position (row-major,
     * -1 for a window without real cells) as a float. */
    int (*maxpool2d_forward)(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y,
                             kc_buf argmax);
    int (*maxpool2d_backward)(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf argmax,
                              kc_buf dx); /* overwrites dx */
    int (*avgpool2d_forward)(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y);
    int (*avgpool2d_backward)(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf dx);

    /* Norm projection (Keras's MaxNorm, MinMaxNorm, UnitNorm). w has shape
     * dims[0..rank) (row-major, rank <= 8); the axes whose bit is set in
     * `reduce` span one slice and the others index the slices. Each slice is
     * multiplied by (rate clip(norm, lo, hi) + (1 - rate) norm) / (eps + norm),
     * norm = sqrt(sum of its squares) summed in double in row-major order and
     * rounded to float before the rest (float arithmetic). */
    int (*norm_rescale)(kc_device *d, kc_buf w, const int64_t *dims, int rank, unsigned reduce,
                        float lo, float hi, float rate, float eps);
    /* y = (x a) / b, in that order (Keras's clip_by_norm); y may be x */
    int (*scale_div)(kc_device *d, kc_buf x, kc_buf y, float a, float b, size_t n);
    /* y = min(max(x, lo), hi); NaN stays NaN; y may be x */
    int (*clip)(kc_device *d, kc_buf x, kc_buf y, float lo, float hi, size_t n);
    /* w -= (w wd) lr */
    int (*weight_decay)(kc_device *d, kc_buf w, float wd, float lr, size_t n);

    /* Optimizer updates (Keras 3 rules; see models/optimizers.c).
     * momentum 0: w -= lr g. Otherwise v = m v - lr g; w += v, or with nesterov
     * w += m v - lr g (v is the new velocity). v may be null when momentum is 0. */
    int (*sgd_update)(kc_device *d, kc_buf w, kc_buf g, kc_buf v, size_t n, float lr,
                      float momentum, int nesterov);
    /* Factors named one_minus_x are Keras's (1 - x), rounded to float32 by the
     * caller from wherever Keras computes them; kernels apply them as given.
     * ms = rho ms + one_minus_rho g^2; centered: mg = rho mg + one_minus_rho g,
     * d = ms - mg^2 + eps, else d = ms + eps; inc = lr g / sqrt(d); momentum > 0:
     * mom = momentum mom + inc, w -= mom; else w -= inc. mg/mom may be null when unused. */
    int (*rmsprop_update)(kc_device *d, kc_buf w, kc_buf g, kc_buf ms, kc_buf mg, kc_buf mom,
                          size_t n, float lr, float rho, float one_minus_rho, float momentum,
                          float eps, int centered);
    /* m += (g - m) one_minus_b1; v += (g^2 - v) one_minus_b2; amsgrad: vhat = max(vhat, v)
     * used for v; w -= m alpha / (sqrt(v) + eps), alpha = lr sqrt(1-b2^t)/(1-b1^t) computed
     * by the caller. vhat may be null unless amsgrad. (AdamW is this after weight_decay.) */
    int (*adam_update)(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, kc_buf vhat, size_t n,
                       float alpha, float one_minus_b1, float one_minus_b2, float eps, int amsgrad);
    /* acc += g^2; w -= lr g / sqrt(acc + eps) */
    int (*adagrad_update)(kc_device *d, kc_buf w, kc_buf g, kc_buf acc, size_t n, float lr,
                          float eps);
    /* ag = rho ag + one_minus_rho g^2; d = -(sqrt(ad + eps) g / sqrt(ag + eps));
     * ad = rho ad + one_minus_rho d^2; w += lr d */
    int (*adadelta_update)(kc_device *d, kc_buf w, kc_buf g, kc_buf ag, kc_buf ad, size_t n,
                           float lr, float rho, float one_minus_rho, float eps);
    /* m += (g - m) one_minus_b1; u = max(b2 u, |g|);
     * w -= lr m / (one_minus_b1_power (u + eps)), one_minus_b1_power = 1 - b1^t */
    int (*adamax_update)(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf u, size_t n, float lr,
                         float one_minus_b1, float b2, float one_minus_b1_power, float eps);
    /* m += (g - m) c.one_minus_b1; v += (g^2 - v) c.one_minus_b2;
     * mh = c.u_next m / c.one_minus_prod_next + c.one_minus_u g / c.one_minus_prod;
     * w -= mh lr / (sqrt(v / c.one_minus_b2_power) + eps) */
    int (*nadam_update)(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, size_t n,
                        const kc_nadam_coef *c);
    /* w -= lr sign(m b1 + g (1 - b1)); m = m b2 + g (1 - b2), with 1 - b in float32 */
    int (*lion_update)(kc_device *d, kc_buf w, kc_buf g, kc_buf m, size_t n, float lr, float b1,
                       float b2);

    /* ---- random normals (required) ----
     * y[i] = mean + stddev z_i, z_i = kc_rng_normal(seed, stream, i) (core/rng.h):
     * the same numbers on every backend, to the rounding of log and cos. */
    int (*rng_normal)(kc_device *d, kc_buf y, size_t n, float mean, float stddev, uint64_t seed,
                      uint64_t stream);

    /* ---- depthwise convolution (optional, fused) ----
     * The geometry of kc_conv2d_desc with oc = c * m (m the depth multiplier)
     * and a kernel of shape (kh, kw, c, m): input channel c feeds outputs
     * c*m .. c*m + m - 1 alone,
     * out[n,oy,ox,c*m+j] = sum_{ky,kx} x[n, oy*sh + ky*dh - pad_t, ox*sw + kx*dw - pad_l, c]
     *                                  * w[ky,kx,c,j]          (out-of-range x reads as 0)
     * No workspace. backward_data overwrites dx; backward_filter: dw = beta dw + gradient. */
    int (*depthwise_conv2d_forward)(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w,
                                    kc_buf y);
    int (*depthwise_conv2d_backward_data)(kc_device *d, const kc_conv2d_desc *g, kc_buf dy,
                                          kc_buf w, kc_buf dx);
    int (*depthwise_conv2d_backward_filter)(kc_device *d, const kc_conv2d_desc *g, kc_buf x,
                                            kc_buf dy, kc_buf dw, float beta);

    /* ---- embedding lookup (optional, fused) ----
     * ids holds n floats, each meant to be a whole number in [0, rows); w is
     * (rows, dim), y and dy are (n, dim). An id is valid when it is a whole
     * number in [0, rows) (NaN, 2.5, -1 and rows are not).
     * forward: y[i, :] = w[ids[i], :]; an invalid id writes a zero row and
     * reads nothing of w. backward: dw[ids[i], :] += dy[i, :] for every valid
     * id, each row summed in increasing i (the same bits on every thread
     * count), no other row of dw touched; invalid ids add nothing. A backend
     * that can tell cheaply (cpu, reference) then fails with KC_ERUNTIME and a
     * message naming the first invalid id and its position; the others (and
     * the composition) leave those rows zero or untouched without failing. */
    int (*embedding_forward)(kc_device *d, kc_buf ids, kc_buf w, kc_buf y, size_t n, size_t rows,
                             size_t dim);
    int (*embedding_backward)(kc_device *d, kc_buf ids, kc_buf dy, kc_buf dw, size_t n, size_t rows,
                              size_t dim);
};

/* ------------------------------------------------------------ registry --- */

/* Every backend built into this binary, NULL-terminated (core/backends.c):
 * cpu first (the default), then reference, then the device backends. */
extern const kc_backend *const kc_backends[];
/* NULL if unknown. */
const kc_backend *kc_backend_by_name(const char *name);
/* "cpu, reference, opencl" */
const char *kc_backend_names(void);

/* Opens a backend: on failure d is cleared and e says why. */
int kc_device_open(kc_device *d, const kc_backend *be, const kc_device_opts *o, kc_error *e);
/* Opens a backend by name ("cpu" when name is NULL). */
int kc_device_open_name(kc_device *d, const char *name, const kc_device_opts *o, kc_error *e);
void kc_device_close(kc_device *d);

#endif

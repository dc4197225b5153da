/* The OpenCL backend's state and helpers, shared between its source files.
 *
 * A kc_mem of this backend is a cl_mem. Kernels take each buffer as a pointer
 * plus an element offset (OpenCL 1.2 sub-buffers must be aligned to the
 * device's base address alignment, so views into an allocation cannot be
 * sub-buffers). Everything runs on one in-order queue, so ops are ordered
 * without events. */
#ifndef KC_OCL_H
#define KC_OCL_H

#include "core/backend.h"

#include <CL/cl.h>

/* Every kernel of the program (ocl_src_*.c), created once at open. */
#define KC_OCL_KERNELS(X)                                                                          \
    X(fill)                                                                                        \
    X(scale)                                                                                       \
    X(axpy)                                                                                        \
    X(mul)                                                                                         \
    X(unary)                                                                                       \
    X(binary)                                                                                      \
    X(select)                                                                                      \
    X(copy2d)                                                                                      \
    X(copy_strided)                                                                                \
    X(scale2d)                                                                                     \
    X(reduce_item)                                                                                 \
    X(reduce_group)                                                                                \
    X(act_forward)                                                                                 \
    X(act_backward)                                                                                \
    X(softmax_forward)                                                                             \
    X(softmax_backward)                                                                            \
    X(dropout_forward)                                                                             \
    X(bias_add)                                                                                    \
    X(block_sums)                                                                                  \
    X(penalty_finish)                                                                              \
    X(penalty_grad)                                                                                \
    X(norm_rescale)                                                                                \
    X(im2col)                                                                                      \
    X(col2im)                                                                                      \
    X(maxpool_forward)                                                                             \
    X(maxpool_backward)                                                                            \
    X(avgpool_forward)                                                                             \
    X(avgpool_backward)                                                                            \
    X(scale_div)                                                                                   \
    X(clip)                                                                                        \
    X(weight_decay)                                                                                \
    X(sgd)                                                                                         \
    X(rmsprop)                                                                                     \
    X(adam)                                                                                        \
    X(adagrad)                                                                                     \
    X(adadelta)                                                                                    \
    X(adamax)                                                                                      \
    X(nadam)                                                                                       \
    X(lion)                                                                                        \
    X(rng_normal)                                                                                  \
    X(dw_forward)                                                                                  \
    X(dw_data)                                                                                     \
    X(dw_filter)                                                                                   \
    X(emb_forward)                                                                                 \
    X(emb_backward)

enum {
#define KC_OCL_ENUM(name) KC_OCL_K_##name,
    KC_OCL_KERNELS(KC_OCL_ENUM)
#undef KC_OCL_ENUM
        KC_OCL_K_COUNT
};

/* Work-group size of every launch: the largest power of two up to this that
 * the kernel accepts on the device (the reduction trees need powers of two,
 * and a size fixed per device keeps their bits fixed). */
#define KC_OCL_LOCAL_MAX 256

typedef struct kc_ocl {
    cl_platform_id platform;
    cl_device_id device;
    int sub_device; /* device is a partition of its own, released at close */
    cl_context ctx;
    cl_command_queue queue;
    cl_program program;
    cl_kernel kernel[KC_OCL_K_COUNT];
    size_t local[KC_OCL_K_COUNT]; /* work-group size each kernel runs with */
    size_t max_groups;            /* cap on groups of a grid-stride launch */
    cl_ulong max_alloc;
    int fp64;           /* double accumulation on the device */
    int exact_div_sqrt; /* -cl-fp32-correctly-rounded-divide-sqrt */
    cl_mem dummy;       /* bound where an optional buffer is absent */
    cl_mem partial;     /* the penalty's per-block sums */
    /* scratch grown on demand and kept: CLBlast's temporary, staging for
     * overlapping copies, the conv2d workspace when the caller gives none */
    cl_mem gemm_tmp, copy_tmp, conv_tmp;
    size_t gemm_tmp_bytes, copy_tmp_bytes, conv_tmp_bytes;
} kc_ocl;

static inline kc_ocl *kc_ocl_of(const kc_device *d) {
    return (kc_ocl *)d->impl;
}

static inline cl_mem kc_ocl_mem(kc_buf b) {
    return (cl_mem)(void *)b.mem;
}

/* "CL_OUT_OF_RESOURCES", "CLBlastInvalidLeadDimA", ... */
const char *kc_ocl_error_name(int err);
/* Records "opencl: <what> failed: <name> (<code>)" on d; returns its code. */
int kc_ocl_fail(kc_device *d, const char *what, int err);

/* A kernel launch under construction: arguments are appended in order and
 * the first failure is kept for kc_ocl_run. */
typedef struct kc_ocl_call {
    kc_device *d;
    int kernel;
    cl_uint arg;
    cl_int err;
    size_t misaligned, elem; /* a buffer offset that is not a whole element */
} kc_ocl_call;

kc_ocl_call kc_ocl_begin(kc_device *d, int kernel);
/* "k_fill", ...: the kernel's name in the program */
const char *kc_ocl_kernel_name(int kernel);
/* A buffer as (pointer, element offset): two arguments. An absent buffer
 * binds a dummy allocation, so kernels test a flag, never a null pointer. */
void kc_ocl_buf(kc_ocl_call *c, kc_buf b);
/* Like kc_ocl_buf with elements of `elem` bytes (8 for the doubles of out). */
void kc_ocl_buf_elem(kc_ocl_call *c, kc_buf b, size_t elem);
void kc_ocl_clmem(kc_ocl_call *c, cl_mem m);
void kc_ocl_f32(kc_ocl_call *c, float v);
void kc_ocl_i32(kc_ocl_call *c, int v);
void kc_ocl_u64(kc_ocl_call *c, uint64_t v);
void kc_ocl_raw(kc_ocl_call *c, size_t size, const void *v);
void kc_ocl_local(kc_ocl_call *c, size_t bytes);
/* Grid-stride launch over n items (the kernel loops when n exceeds it). */
int kc_ocl_run(kc_ocl_call *c, size_t n);
/* Exactly `groups` work-groups of `local` items. */
int kc_ocl_run_groups(kc_ocl_call *c, size_t groups, size_t local);

/* Element offset of b in 4-byte units; fails on d when misaligned. */
int kc_ocl_elem_off(kc_device *d, kc_buf b, size_t *out);
/* Grows *m to at least bytes (contents are not kept). */
int kc_ocl_reserve(kc_device *d, cl_mem *m, size_t *have, size_t bytes, const char *what);

/* The program source, in pieces concatenated in this order. */
extern const char kc_ocl_src_prelude[];
extern const char kc_ocl_src_math[];
extern const char kc_ocl_src_nn[];
extern const char kc_ocl_src_optim[];
extern const char kc_ocl_src_embed[];
extern const char kc_ocl_src_fp64[]; /* built only where the device has doubles */

/* C = alpha op(A) op(B) + beta C with BLAS semantics (ocl_gemm.c). */
int kc_ocl_gemm(kc_device *d, int ta, int tb, int m, int n, int k, float alpha, kc_buf a, int lda,
                kc_buf b, int ldb, float beta, kc_buf c, int ldc);
int kc_ocl_gemm_batched(kc_device *d, int ta, int tb, int m, int n, int k, float alpha, kc_buf a,
                        int lda, size_t sa, kc_buf b, int ldb, size_t sb, float beta, kc_buf c,
                        int ldc, size_t sc, int batch);

/* The table's ops, by file. */
int kc_ocl_fill(kc_device *d, kc_buf y, float v, size_t n);
int kc_ocl_scale(kc_device *d, kc_buf y, float a, size_t n);
int kc_ocl_axpy(kc_device *d, float a, kc_buf x, kc_buf y, size_t n);
int kc_ocl_mul(kc_device *d, kc_buf a, kc_buf b, kc_buf y, size_t n);
int kc_ocl_unary(kc_device *d, kc_unary_op op, float a, kc_buf x, kc_buf y, size_t n);
int kc_ocl_binary(kc_device *d, kc_binary_op op, const kc_bcast *g, kc_buf a, kc_buf b, kc_buf y);
int kc_ocl_select(kc_device *d, kc_buf cond, kc_buf a, kc_buf b, kc_buf y, size_t n);
int kc_ocl_copy2d(kc_device *d, kc_buf dst, size_t ldd, kc_buf src, size_t lds, size_t rows,
                  size_t cols);
int kc_ocl_copy_strided(kc_device *d, kc_copy_mode mode, const kc_copy_desc *g, kc_buf src,
                        kc_buf dst);
int kc_ocl_scale2d(kc_device *d, kc_buf y, size_t ld, size_t rows, size_t cols, float beta);

int kc_ocl_reduce(kc_device *d, kc_reduce_op op, const kc_reduce_desc *g, float alpha, kc_buf x,
                  float beta, kc_buf y);
int kc_ocl_bias_grad(kc_device *d, kc_buf db, kc_buf dy, int rows, int cols, float beta);
int kc_ocl_softmax_forward(kc_device *d, kc_buf x, kc_buf y, int rows, int cols);
int kc_ocl_softmax_backward(kc_device *d, kc_buf y, kc_buf dy, kc_buf dx, int rows, int cols);

int kc_ocl_act_forward(kc_device *d, kc_act act, float alpha, kc_buf x, kc_buf y, size_t n);
int kc_ocl_act_backward(kc_device *d, kc_act act, float alpha, kc_buf x, kc_buf y, kc_buf dy,
                        kc_buf dx, size_t n);
int kc_ocl_dropout_forward(kc_device *d, kc_buf x, kc_buf y, kc_buf mask, size_t n, float rate,
                           uint64_t seed, uint64_t stream);
int kc_ocl_bias_add(kc_device *d, kc_buf y, kc_buf b, int rows, int cols);

int kc_ocl_l1l2_penalty(kc_device *d, kc_buf x, kc_buf g, size_t n, float l1, float l2, kc_buf out);
int kc_ocl_sum_squares(kc_device *d, kc_buf x, size_t n, kc_buf out);
int kc_ocl_norm_rescale(kc_device *d, kc_buf w, const int64_t *dims, int rank, unsigned reduce,
                        float lo, float hi, float rate, float eps);

size_t kc_ocl_conv2d_workspace(const kc_device *d, const kc_conv2d_desc *g);
int kc_ocl_conv2d_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w, kc_buf y,
                          kc_buf ws);
int kc_ocl_conv2d_backward_data(kc_device *d, const kc_conv2d_desc *g, kc_buf dy, kc_buf w,
                                kc_buf dx, kc_buf ws);
int kc_ocl_conv2d_backward_filter(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf dy,
                                  kc_buf dw, float beta, kc_buf ws);
/* depthwise convolution (core/backend.h): direct gather kernels */
int kc_ocl_depthwise_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w, kc_buf y);
int kc_ocl_depthwise_backward_data(kc_device *d, const kc_conv2d_desc *g, kc_buf dy, kc_buf w,
                                   kc_buf dx);
int kc_ocl_depthwise_backward_filter(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf dy,
                                     kc_buf dw, float beta);

int kc_ocl_maxpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y,
                             kc_buf argmax);
int kc_ocl_maxpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf argmax,
                              kc_buf dx);
int kc_ocl_avgpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y);
int kc_ocl_avgpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf dx);

int kc_ocl_scale_div(kc_device *d, kc_buf x, kc_buf y, float a, float b, size_t n);
int kc_ocl_clip(kc_device *d, kc_buf x, kc_buf y, float lo, float hi, size_t n);
int kc_ocl_weight_decay(kc_device *d, kc_buf w, float wd, float lr, size_t n);
int kc_ocl_sgd_update(kc_device *d, kc_buf w, kc_buf g, kc_buf v, size_t n, float lr,
                      float momentum, int nesterov);
int kc_ocl_rmsprop_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ms, kc_buf mg, kc_buf mom,
                          size_t n, float lr, float rho, float one_minus_rho, float momentum,
                          float eps, int centered);
int kc_ocl_adam_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, kc_buf vhat, size_t n,
                       float alpha, float one_minus_b1, float one_minus_b2, float eps, int amsgrad);
int kc_ocl_adagrad_update(kc_device *d, kc_buf w, kc_buf g, kc_buf acc, size_t n, float lr,
                          float eps);
int kc_ocl_adadelta_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ag, kc_buf ad, size_t n,
                           float lr, float rho, float one_minus_rho, float eps);
int kc_ocl_adamax_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf u, size_t n, float lr,
                         float one_minus_b1, float b2, float one_minus_b1_power, float eps);
int kc_ocl_nadam_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, size_t n,
                        const kc_nadam_coef *c);
int kc_ocl_lion_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, size_t n, float lr, float b1,
                       float b2);
/* embedding lookup (core/backend.h, ocl_embed.c) */
int kc_ocl_embedding_forward(kc_device *d, kc_buf ids, kc_buf w, kc_buf y, size_t n, size_t rows,
                             size_t dim);
int kc_ocl_embedding_backward(kc_device *d, kc_buf ids, kc_buf dy, kc_buf dw, size_t n, size_t rows,
                              size_t dim);
int kc_ocl_rng_normal(kc_device *d, kc_buf y, size_t n, float mean, float stddev, uint64_t seed,
                      uint64_t stream);

#endif

/* The cpu backend's ops, shared between its source files. Loops are split
 * among OpenMP threads, and every output element is computed by one thread in
 * a fixed order, so results repeat bit for bit and do not depend on the
 * thread count either - except for the products that fall back to OpenBLAS
 * on a CPU without AVX2 (gemm and convolutions), which are split into one
 * sgemm per thread. */
#ifndef KC_CPU_H
#define KC_CPU_H

#include "core/backend.h"
#include "core/cpu/host.h"

/* Below this many elements a loop stays on one thread: waking the team costs
 * more than the work. */
#define KC_CPU_PAR_MIN 32768

/* The thread count the kernels split their loops into: the threads of the
 * device whose op is running (every table function in cpu.c sets it from
 * d->threads before it calls a kernel), all cores when that is 0 or before
 * any device ran an op. One process-wide value, so devices must not run ops
 * from two host threads at once. */
int kc_cpu_threads(void);

/* Instruction sets with kernels of their own, chosen at run time (the
 * environment variable KERASC_CPU=portable|avx2 lowers the choice). */
enum { KC_CPU_PORTABLE = 0, KC_CPU_AVX2 = 1, KC_CPU_AVX512 = 2 };
int kc_cpu_isa(void);
/* Forces a level (capped at what the CPU has; -1 returns to the detected
 * one) and returns the previous level: tests run every path this way. */
int kc_cpu_set_isa(int level);

/* Indirect GEMM: C[i, j] = beta C[i, j] + sum_k a[abase[k] + aoff[i]] * b[k ldb + j]
 * for i < m, j < n. Row and column offsets into `a` express an im2col patch
 * matrix (or its transpose) without building it; with aoff NULL, A is a
 * plain strided matrix, A(i, k) = a[i rs + k cs]. Each element of C is summed
 * by one thread in a fixed order (increasing k within blocks of k, the
 * blocks added in turn: cpu_igemm_kern.h), so results do not depend on the
 * thread count. beta 0 never reads C. Returns 0 without touching C when the CPU has
 * no SIMD kernel (the caller then takes its portable path). */
typedef struct kc_cpu_igemm_args {
    int m, n, k;
    const float *a;
    const int *aoff, *abase;
    long rs, cs; /* strides of A when aoff is NULL */
    const float *b;
    long ldb;
    float beta;
    float *c;
    long ldc;
    int threads; /* 0: the backend's thread count; 1: the calling thread alone */
} kc_cpu_igemm_args;
int kc_cpu_igemm(const kc_cpu_igemm_args *g);

/* p[q n + j] = alpha b[j ldb + q] for q < k, j < n: a transposed (and
 * scaled) B laid out for kc_cpu_igemm. Returns 0 without writing p on a CPU
 * without AVX2. */
int kc_cpu_pack_transposed(int k, int n, float alpha, const float *b, long ldb, float *p);

void kc_cpu_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);

/* Vectorised kernels (cpu_simd.c), cloned per instruction set. */
#define KC_CPU_BIAS_BLOCK 64
void kc_cpu_relu_forward(const float *x, float *y, size_t n);
void kc_cpu_relu_backward(const float *x, const float *dy, float *dx, size_t n);
void kc_cpu_bias_add(float *y, const float *b, int rows, int cols);
void kc_cpu_bias_grad(float *db, const float *dy, int rows, int cols, float beta);

void kc_cpu_act_forward(kc_act act, float alpha, const float *x, float *y, size_t n);
void kc_cpu_act_backward(kc_act act, float alpha, const float *x, const float *y, const float *dy,
                         float *dx, size_t n);
void kc_cpu_softmax_forward(const float *x, float *y, int rows, int cols);
void kc_cpu_softmax_backward(const float *y, const float *dy, float *dx, int rows, int cols);

/* The convolutions take kc_cpu_conv2d_workspace(d) bytes of ws, or allocate
 * it themselves when ws is NULL: they return 0, or -1 (output untouched) when
 * that allocation fails. */
size_t kc_cpu_conv2d_workspace(const kc_conv2d_desc *d);
int kc_cpu_conv2d_forward(const kc_conv2d_desc *d, const float *x, const float *w, float *y,
                          void *ws);
int kc_cpu_conv2d_backward_data(const kc_conv2d_desc *d, const float *dy, const float *w, float *dx,
                                void *ws);
int kc_cpu_conv2d_backward_filter(const kc_conv2d_desc *d, const float *x, const float *dy,
                                  float *dw, float beta, void *ws);

void kc_cpu_maxpool2d_forward(const kc_pool2d_desc *d, const float *x, float *y, int32_t *argmax);
void kc_cpu_maxpool2d_backward(const kc_pool2d_desc *d, const float *dy, const int32_t *argmax,
                               float *dx);
void kc_cpu_avgpool2d_forward(const kc_pool2d_desc *d, const float *x, float *y);
void kc_cpu_avgpool2d_backward(const kc_pool2d_desc *d, const float *dy, float *dx);

double kc_cpu_l1l2_penalty(const float *x, float *g, size_t n, float l1, float l2);
void kc_cpu_norm_rescale(float *w, const int64_t *dims, int rank, unsigned reduce, float lo,
                         float hi, float rate, float eps);

void kc_cpu_sgd_update(float *w, const float *g, float *v, size_t n, float lr, float momentum,
                       int nesterov);
void kc_cpu_rmsprop_update(float *w, const float *g, float *ms, float *mg, float *mom, size_t n,
                           float lr, float rho, float one_minus_rho, float momentum, float eps,
                           int centered);
void kc_cpu_adam_update(float *w, const float *g, float *m, float *v, float *vhat, size_t n,
                        float alpha, float one_minus_b1, float one_minus_b2, float eps,
                        int amsgrad);
void kc_cpu_adagrad_update(float *w, const float *g, float *acc, size_t n, float lr, float eps);
void kc_cpu_adadelta_update(float *w, const float *g, float *ag, float *ad, size_t n, float lr,
                            float rho, float one_minus_rho, float eps);
void kc_cpu_adamax_update(float *w, const float *g, float *m, float *u, size_t n, float lr,
                          float one_minus_b1, float b2, float one_minus_b1_power, float eps);
void kc_cpu_nadam_update(float *w, const float *g, float *m, float *v, size_t n,
                         const kc_nadam_coef *c);
void kc_cpu_lion_update(float *w, const float *g, float *m, size_t n, float lr, float b1, float b2);
double kc_cpu_sum_squares(const float *x, size_t n);
void kc_cpu_scale_div(const float *x, float *y, float a, float b, size_t n);
void kc_cpu_clip(const float *x, float *y, float lo, float hi, size_t n);
void kc_cpu_weight_decay(float *w, float wd, float lr, size_t n);

/* The primitives of core/backend.h on host pointers (cpu_math.c). */
void kc_cpu_unary(kc_unary_op op, float a, const float *x, float *y, size_t n);
void kc_cpu_binary(kc_binary_op op, const kc_bcast *g, const float *a, const float *b, float *y);
void kc_cpu_select(const float *cond, const float *a, const float *b, float *y, size_t n);
void kc_cpu_copy_strided(kc_copy_mode mode, const kc_copy_desc *g, const void *src, void *dst);
void kc_cpu_reduce(kc_reduce_op op, const kc_reduce_desc *g, float alpha, const float *x,
                   float beta, float *y);

/* Depthwise convolution (core/backend.h): direct loops, no workspace. The
 * filter gradient returns -1 (dw untouched for some taps) when it cannot
 * allocate its per-tap sums, else 0. */
void kc_cpu_depthwise_conv2d_forward(const kc_conv2d_desc *d, const float *x, const float *w,
                                     float *y);
void kc_cpu_depthwise_conv2d_backward_data(const kc_conv2d_desc *d, const float *dy, const float *w,
                                           float *dx);
int kc_cpu_depthwise_conv2d_backward_filter(const kc_conv2d_desc *d, const float *x,
                                            const float *dy, float *dw, float beta);

/* Embedding lookup (core/backend.h, cpu_embed.c); first_invalid returns the
 * position of the first id that is not a whole number in [0, rows), or n. */
size_t kc_cpu_embedding_first_invalid(const float *ids, size_t n, size_t rows);
void kc_cpu_embedding_forward(const float *ids, const float *w, float *y, size_t n, size_t rows,
                              size_t dim);
void kc_cpu_embedding_backward(const float *ids, const float *dy, float *dw, size_t n, size_t rows,
                               size_t dim);

#endif

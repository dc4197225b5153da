/* The cpu backend's ops, shared between its source files. Loops are split
 * among OpenMP threads with static schedules, and every output element is
 * computed by one thread in a fixed order, so results repeat bit for bit and,
 * except for gemm and convolution (whose products are split into one sgemm
 * per thread), do not depend on the thread count either. */
#ifndef KC_CPU_H
#define KC_CPU_H

#include "core/backend.h"

/* Below this many elements a loop stays on one thread: waking the team costs
 * more than the work. */
#define KC_CPU_PAR_MIN 32768

/* The thread count set by set_threads (all cores until then). */
int kc_cpu_threads(void);

void kc_cpu_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);

void kc_cpu_act_forward(kc_act act, float alpha, const float *x, float *y, size_t n);
void kc_cpu_act_backward(kc_act act, float alpha, const float *x, const float *y, const float *dy,
                         float *dx, size_t n);
void kc_cpu_softmax_forward(const float *x, float *y, int rows, int cols);
void kc_cpu_softmax_backward(const float *y, const float *dy, float *dx, int rows, int cols);

size_t kc_cpu_conv2d_workspace(const kc_conv2d_desc *d);
void kc_cpu_conv2d_forward(const kc_conv2d_desc *d, const float *x, const float *w, float *y,
                           void *ws);
void kc_cpu_conv2d_backward_data(const kc_conv2d_desc *d, const float *dy, const float *w,
                                 float *dx, void *ws);
void kc_cpu_conv2d_backward_filter(const kc_conv2d_desc *d, const float *x, const float *dy,
                                   float *dw, float beta, void *ws);

void kc_cpu_maxpool2d_forward(const kc_pool2d_desc *d, const float *x, float *y, int32_t *argmax);
void kc_cpu_maxpool2d_backward(const kc_pool2d_desc *d, const float *dy, const int32_t *argmax,
                               float *dx);
void kc_cpu_avgpool2d_forward(const kc_pool2d_desc *d, const float *x, float *y);
void kc_cpu_avgpool2d_backward(const kc_pool2d_desc *d, const float *dy, float *dx);

void kc_cpu_sgd_update(float *w, const float *g, float *v, size_t n, float lr, float momentum,
                       int nesterov);
void kc_cpu_rmsprop_update(float *w, const float *g, float *ms, float *mg, float *mom, size_t n,
                           float lr, float rho, float momentum, float eps, int centered);
void kc_cpu_adam_update(float *w, const float *g, float *m, float *v, float *vhat, size_t n,
                        float alpha, float b1, float b2, float eps, int amsgrad);

#endif

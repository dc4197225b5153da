/* The reference backend's ops, shared between its source files. Every op is a
 * plain loop that accumulates in double: slow, single-threaded, and simple
 * enough to check by eye, which makes it the oracle other backends meet. */
#ifndef KC_REF_H
#define KC_REF_H

#include "core/backend.h"
#include "core/cpu/host.h"

void kc_ref_act_forward(kc_act act, float alpha, const float *x, float *y, size_t n);
void kc_ref_act_backward(kc_act act, float alpha, const float *x, const float *y, const float *dy,
                         float *dx, size_t n);
void kc_ref_softmax_forward(const float *x, float *y, int rows, int cols);
void kc_ref_softmax_backward(const float *y, const float *dy, float *dx, int rows, int cols);

size_t kc_ref_conv2d_workspace(const kc_conv2d_desc *d);
void kc_ref_conv2d_forward(const kc_conv2d_desc *d, const float *x, const float *w, float *y,
                           void *ws);
void kc_ref_conv2d_backward_data(const kc_conv2d_desc *d, const float *dy, const float *w,
                                 float *dx, void *ws);
void kc_ref_conv2d_backward_filter(const kc_conv2d_desc *d, const float *x, const float *dy,
                                   float *dw, float beta, void *ws);

void kc_ref_maxpool2d_forward(const kc_pool2d_desc *d, const float *x, float *y, int32_t *argmax);
void kc_ref_maxpool2d_backward(const kc_pool2d_desc *d, const float *dy, const int32_t *argmax,
                               float *dx);
void kc_ref_avgpool2d_forward(const kc_pool2d_desc *d, const float *x, float *y);
void kc_ref_avgpool2d_backward(const kc_pool2d_desc *d, const float *dy, float *dx);

double kc_ref_l1l2_penalty(const float *x, float *g, size_t n, float l1, float l2);
void kc_ref_norm_rescale(float *w, const int64_t *dims, int rank, unsigned reduce, float lo,
                         float hi, float rate, float eps);

void kc_ref_sgd_update(float *w, const float *g, float *v, size_t n, float lr, float momentum,
                       int nesterov);
void kc_ref_rmsprop_update(float *w, const float *g, float *ms, float *mg, float *mom, size_t n,
                           float lr, float rho, float one_minus_rho, float momentum, float eps,
                           int centered);
void kc_ref_adam_update(float *w, const float *g, float *m, float *v, float *vhat, size_t n,
                        float alpha, float one_minus_b1, float one_minus_b2, float eps,
                        int amsgrad);
void kc_ref_adagrad_update(float *w, const float *g, float *acc, size_t n, float lr, float eps);
void kc_ref_adadelta_update(float *w, const float *g, float *ag, float *ad, size_t n, float lr,
                            float rho, float one_minus_rho, float eps);
void kc_ref_adamax_update(float *w, const float *g, float *m, float *u, size_t n, float lr,
                          float one_minus_b1, float b2, float one_minus_b1_power, float eps);
void kc_ref_nadam_update(float *w, const float *g, float *m, float *v, size_t n,
                         const kc_nadam_coef *c);
void kc_ref_lion_update(float *w, const float *g, float *m, size_t n, float lr, float b1, float b2);
double kc_ref_sum_squares(const float *x, size_t n);
void kc_ref_scale_div(const float *x, float *y, float a, float b, size_t n);
void kc_ref_clip(const float *x, float *y, float lo, float hi, size_t n);
void kc_ref_weight_decay(float *w, float wd, float lr, size_t n);

/* The primitives of core/backend.h on host pointers (ref_math.c). */
void kc_ref_unary(kc_unary_op op, float a, const float *x, float *y, size_t n);
void kc_ref_binary(kc_binary_op op, const kc_bcast *g, const float *a, const float *b, float *y);
void kc_ref_select(const float *cond, const float *a, const float *b, float *y, size_t n);
void kc_ref_copy_strided(kc_copy_mode mode, const kc_copy_desc *g, const void *src, void *dst);
void kc_ref_reduce(kc_reduce_op op, const kc_reduce_desc *g, float alpha, const float *x,
                   float beta, float *y);

/* depthwise convolution (core/backend.h): oc = c * m, kernel (kh, kw, c, m) */
void kc_ref_depthwise_conv2d_forward(const kc_conv2d_desc *d, const float *x, const float *w,
                                     float *y);
void kc_ref_depthwise_conv2d_backward_data(const kc_conv2d_desc *d, const float *dy, const float *w,
                                           float *dx);
void kc_ref_depthwise_conv2d_backward_filter(const kc_conv2d_desc *d, const float *x,
                                             const float *dy, float *dw, float beta);

/* embedding lookup (core/backend.h); first_invalid returns the position of
 * the first id that is not a whole number in [0, rows), or n */
size_t kc_ref_embedding_first_invalid(const float *ids, size_t n, size_t rows);
void kc_ref_embedding_forward(const float *ids, const float *w, float *y, size_t n, size_t rows,
                              size_t dim);
void kc_ref_embedding_backward(const float *ids, const float *dy, float *dw, size_t n, size_t rows,
                               size_t dim);

#endif

/* The reference backend's ops, shared between its source files. Every op is a
 * plain loop that accumulates in double: slow, single-threaded, and simple
 * enough to check by eye, which makes it the oracle other backends meet. */
#ifndef KC_REF_H
#define KC_REF_H

#include "core/backend.h"

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

void kc_ref_sgd_update(float *w, const float *g, float *v, size_t n, float lr, float momentum,
                       int nesterov);
void kc_ref_rmsprop_update(float *w, const float *g, float *ms, float *mg, float *mom, size_t n,
                           float lr, float rho, float momentum, float eps, int centered);
void kc_ref_adam_update(float *w, const float *g, float *m, float *v, float *vhat, size_t n,
                        float alpha, float b1, float b2, float eps, int amsgrad);

#endif

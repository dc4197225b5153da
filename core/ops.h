/* The ops as layers, losses and optimizers call them: each one dispatches to
 * the device's backend table (core/backend.h), composes a fused op from the
 * primitives when the backend leaves it out, counts host<->device traffic,
 * and keeps the first failure in d->err. After a failure every op is a no-op
 * that returns the same code, so a caller may check once after a sequence
 * (kc_device_status) instead of after every call. */
#ifndef KC_OPS_H
#define KC_OPS_H

#include "core/backend.h"

/* d->err.code (KC_OK while nothing failed). */
static inline int kc_device_status(const kc_device *d) {
    return d->err.code;
}
/* Records a failure (the first one wins) and returns its code. */
int kc_device_fail(kc_device *d, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Copies the device's error into e (when it has one) and returns its code. */
int kc_device_error(const kc_device *d, kc_error *e);
void kc_device_clear_error(kc_device *d);
void kc_device_reset_traffic(kc_device *d);

/* Does the backend run op itself (1), or does core/ops.c compose it (0)? */
int kc_supports_op(const kc_device *d, kc_op op, const void *desc);
/* Can op run at all on d (natively or composed)? Every kc_op can: each has a
 * composition from the primitive core. */
int kc_op_available(const kc_device *d, kc_op op, const void *desc);

/* Numpy broadcasting of shapes a (rank ra) and b (rank rb) into g; y's shape
 * is the broadcast shape (its element count in *n when n is not NULL).
 * Returns KC_ECONFIG when the shapes do not broadcast or the merged geometry
 * needs more than KC_BCAST_RANK axes. */
int kc_bcast_make(kc_bcast *g, const int64_t *a, int ra, const int64_t *b, int rb, size_t *n);
/* The same-shape case: n elements of a and b. */
kc_bcast kc_bcast_same(size_t n);
/* b has `cols` elements broadcast over `rows` rows of a (bias-like). */
kc_bcast kc_bcast_rows(size_t rows, size_t cols);
/* b has `rows` elements, one per row of a broadcast over its cols. */
kc_bcast kc_bcast_cols(size_t rows, size_t cols);

/* ---- memory ---- */
int kc_alloc(kc_device *d, size_t bytes, kc_buf *out);
void kc_free(kc_device *d, kc_buf *b); /* sets *b to KC_BUF_NULL */
int kc_upload(kc_device *d, kc_buf dst, const void *src, size_t bytes);
int kc_download(kc_device *d, void *dst, kc_buf src, size_t bytes);
int kc_upload_async(kc_device *d, kc_buf dst, const void *src, size_t bytes);
int kc_synchronize(kc_device *d);
int kc_copy(kc_device *d, kc_buf dst, kc_buf src, size_t bytes);
int kc_copy2d(kc_device *d, kc_buf dst, size_t ldd, kc_buf src, size_t lds, size_t rows,
              size_t cols);
/* The strided copy of kc_copy_desc (core/backend.h). An axis of extent 0
 * copies nothing; a rank, mode, extent or stride outside the contract, or
 * offsets that overflow, fail with KC_ECONFIG. */
int kc_copy_strided(kc_device *d, kc_copy_mode mode, const kc_copy_desc *g, kc_buf src, kc_buf dst);

/* ---- primitives ---- */
int kc_fill(kc_device *d, kc_buf y, float v, size_t n);
int kc_scale(kc_device *d, kc_buf y, float a, size_t n);
int kc_axpy(kc_device *d, float a, kc_buf x, kc_buf y, size_t n);
int kc_unary(kc_device *d, kc_unary_op op, float a, kc_buf x, kc_buf y, size_t n);
int kc_binary(kc_device *d, kc_binary_op op, const kc_bcast *g, kc_buf a, kc_buf b, kc_buf y);
/* same-shape binary op over n elements */
int kc_binary_n(kc_device *d, kc_binary_op op, kc_buf a, kc_buf b, kc_buf y, size_t n);
int kc_select(kc_device *d, kc_buf cond, kc_buf a, kc_buf b, kc_buf y, size_t n);
int kc_reduce(kc_device *d, kc_reduce_op op, const kc_reduce_desc *g, float alpha, kc_buf x,
              float beta, kc_buf y);
int kc_gemm(kc_device *d, int ta, int tb, int m, int n, int k, float alpha, kc_buf a, int lda,
            kc_buf b, int ldb, float beta, kc_buf c, int ldc);
int kc_act_forward(kc_device *d, kc_act act, float alpha, kc_buf x, kc_buf y, size_t n);
int kc_act_backward(kc_device *d, kc_act act, float alpha, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx,
                    size_t n);
int kc_dropout_forward(kc_device *d, kc_buf x, kc_buf y, kc_buf mask, size_t n, float rate,
                       uint64_t seed, uint64_t stream);
int kc_l1l2_penalty(kc_device *d, kc_buf x, kc_buf g, size_t n, float l1, float l2, kc_buf out);
int kc_sum_squares(kc_device *d, kc_buf x, size_t n, kc_buf out);

/* ---- fused ops (composed when the backend leaves them out) ---- */
int kc_mul(kc_device *d, kc_buf a, kc_buf b, kc_buf y, size_t n);
int kc_bias_add(kc_device *d, kc_buf y, kc_buf b, int rows, int cols);
int kc_bias_grad(kc_device *d, kc_buf db, kc_buf dy, int rows, int cols, float beta);
int kc_gemm_batched(kc_device *d, int ta, int tb, int m, int n, int k, float alpha, kc_buf a,
                    int lda, size_t sa, kc_buf b, int ldb, size_t sb, float beta, kc_buf c, int ldc,
                    size_t sc, int batch);
int kc_softmax_forward(kc_device *d, kc_buf x, kc_buf y, int rows, int cols);
int kc_softmax_backward(kc_device *d, kc_buf y, kc_buf dy, kc_buf dx, int rows, int cols);
size_t kc_conv2d_workspace(const kc_device *d, const kc_conv2d_desc *g);
int kc_conv2d_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w, kc_buf y,
                      kc_buf ws);
int kc_conv2d_backward_data(kc_device *d, const kc_conv2d_desc *g, kc_buf dy, kc_buf w, kc_buf dx,
                            kc_buf ws);
int kc_conv2d_backward_filter(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf dy, kc_buf dw,
                              float beta, kc_buf ws);
int kc_maxpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y, kc_buf argmax);
int kc_maxpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf argmax,
                          kc_buf dx);
int kc_avgpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y);
int kc_avgpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf dx);
int kc_norm_rescale(kc_device *d, kc_buf w, const int64_t *dims, int rank, unsigned reduce,
                    float lo, float hi, float rate, float eps);
int kc_scale_div(kc_device *d, kc_buf x, kc_buf y, float a, float b, size_t n);
int kc_clip(kc_device *d, kc_buf x, kc_buf y, float lo, float hi, size_t n);
int kc_weight_decay(kc_device *d, kc_buf w, float wd, float lr, size_t n);
int kc_sgd_update(kc_device *d, kc_buf w, kc_buf g, kc_buf v, size_t n, float lr, float momentum,
                  int nesterov);
int kc_rmsprop_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ms, kc_buf mg, kc_buf mom, size_t n,
                      float lr, float rho, float one_minus_rho, float momentum, float eps,
                      int centered);
int kc_adam_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, kc_buf vhat, size_t n,
                   float alpha, float one_minus_b1, float one_minus_b2, float eps, int amsgrad);
int kc_adagrad_update(kc_device *d, kc_buf w, kc_buf g, kc_buf acc, size_t n, float lr, float eps);
int kc_adadelta_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ag, kc_buf ad, size_t n, float lr,
                       float rho, float one_minus_rho, float eps);
int kc_adamax_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf u, size_t n, float lr,
                     float one_minus_b1, float b2, float one_minus_b1_power, float eps);
int kc_nadam_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, size_t n,
                    const kc_nadam_coef *c);
int kc_lion_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, size_t n, float lr, float b1,
                   float b2);

/* ---- random normals, softmax over any axis ----
 * y[i] = mean + stddev kc_rng_normal(seed, stream, i), on every backend. */
int kc_rng_normal_fill(kc_device *d, kc_buf y, size_t n, float mean, float stddev, uint64_t seed,
                       uint64_t stream);
/* Softmax (log 0) or log-softmax (log 1) of x viewed as (outer, len, inner)
 * over its middle axis; softmax over the last axis runs the fused op. The
 * backward takes the forward's output y; dx may be dy. */
int kc_softmax_axis_forward(kc_device *d, int log, const kc_reduce_desc *g, kc_buf x, kc_buf y);
int kc_softmax_axis_backward(kc_device *d, int log, const kc_reduce_desc *g, kc_buf y, kc_buf dy,
                             kc_buf dx);

/* The compositions themselves, callable directly so tests can hold each
 * fused op against its composition on every backend. They take the fused
 * op's arguments and keep their temporaries in the device's scratch; the
 * convolutions ignore ws (kc_conv2d_workspace is 0 when they run). The
 * max pooling pair passes window positions in argmax (core/backend.h), so
 * its backward reads only what its own forward wrote. */
int kc_fallback_mul(kc_device *d, kc_buf a, kc_buf b, kc_buf y, size_t n);
int kc_fallback_bias_add(kc_device *d, kc_buf y, kc_buf b, int rows, int cols);
int kc_fallback_bias_grad(kc_device *d, kc_buf db, kc_buf dy, int rows, int cols, float beta);
int kc_fallback_gemm_batched(kc_device *d, int ta, int tb, int m, int n, int k, float alpha,
                             kc_buf a, int lda, size_t sa, kc_buf b, int ldb, size_t sb, float beta,
                             kc_buf c, int ldc, size_t sc, int batch);
int kc_fallback_softmax_forward(kc_device *d, kc_buf x, kc_buf y, int rows, int cols);
int kc_fallback_softmax_backward(kc_device *d, kc_buf y, kc_buf dy, kc_buf dx, int rows, int cols);
int kc_fallback_conv2d_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w, kc_buf y,
                               kc_buf ws);
int kc_fallback_conv2d_backward_data(kc_device *d, const kc_conv2d_desc *g, kc_buf dy, kc_buf w,
                                     kc_buf dx, kc_buf ws);
int kc_fallback_conv2d_backward_filter(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf dy,
                                       kc_buf dw, float beta, kc_buf ws);
int kc_fallback_maxpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y,
                                  kc_buf argmax);
int kc_fallback_maxpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf argmax,
                                   kc_buf dx);
int kc_fallback_avgpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y);
int kc_fallback_avgpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf dx);
int kc_fallback_norm_rescale(kc_device *d, kc_buf w, const int64_t *dims, int rank, unsigned reduce,
                             float lo, float hi, float rate, float eps);
int kc_fallback_scale_div(kc_device *d, kc_buf x, kc_buf y, float a, float b, size_t n);
int kc_fallback_clip(kc_device *d, kc_buf x, kc_buf y, float lo, float hi, size_t n);
int kc_fallback_weight_decay(kc_device *d, kc_buf w, float wd, float lr, size_t n);
int kc_fallback_sgd_update(kc_device *d, kc_buf w, kc_buf g, kc_buf v, size_t n, float lr,
                           float momentum, int nesterov);
int kc_fallback_rmsprop_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ms, kc_buf mg, kc_buf mom,
                               size_t n, float lr, float rho, float one_minus_rho, float momentum,
                               float eps, int centered);
int kc_fallback_adam_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, kc_buf vhat,
                            size_t n, float alpha, float one_minus_b1, float one_minus_b2,
                            float eps, int amsgrad);
int kc_fallback_adagrad_update(kc_device *d, kc_buf w, kc_buf g, kc_buf acc, size_t n, float lr,
                               float eps);
int kc_fallback_adadelta_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ag, kc_buf ad, size_t n,
                                float lr, float rho, float one_minus_rho, float eps);
int kc_fallback_adamax_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf u, size_t n,
                              float lr, float one_minus_b1, float b2, float one_minus_b1_power,
                              float eps);
int kc_fallback_nadam_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, size_t n,
                             const kc_nadam_coef *c);
int kc_fallback_lion_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, size_t n, float lr,
                            float b1, float b2);

/* ---- depthwise convolution (core/backend.h: oc = c * multiplier, kernel
 * (kh, kw, c, multiplier)), fused or composed, and its composition ---- */
int kc_depthwise_conv2d_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w,
                                kc_buf y);
int kc_depthwise_conv2d_backward_data(kc_device *d, const kc_conv2d_desc *g, kc_buf dy, kc_buf w,
                                      kc_buf dx);
int kc_depthwise_conv2d_backward_filter(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf dy,
                                        kc_buf dw, float beta);
int kc_fallback_depthwise_conv2d_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w,
                                         kc_buf y);
int kc_fallback_depthwise_conv2d_backward_data(kc_device *d, const kc_conv2d_desc *g, kc_buf dy,
                                               kc_buf w, kc_buf dx);
int kc_fallback_depthwise_conv2d_backward_filter(kc_device *d, const kc_conv2d_desc *g, kc_buf x,
                                                 kc_buf dy, kc_buf dw, float beta);

/* ---- embedding lookup (core/backend.h: ids as floats, w (rows, dim)):
 * y[i, :] = w[ids[i], :] and dw[ids[i], :] += dy[i, :], fused or composed
 * (a one-hot product), and the composition ---- */
int kc_embedding_forward(kc_device *d, kc_buf ids, kc_buf w, kc_buf y, size_t n, size_t rows,
                         size_t dim);
int kc_embedding_backward(kc_device *d, kc_buf ids, kc_buf dy, kc_buf dw, size_t n, size_t rows,
                          size_t dim);
int kc_fallback_embedding_forward(kc_device *d, kc_buf ids, kc_buf w, kc_buf y, size_t n,
                                  size_t rows, size_t dim);
int kc_fallback_embedding_backward(kc_device *d, kc_buf ids, kc_buf dy, kc_buf dw, size_t n,
                                   size_t rows, size_t dim);

#endif

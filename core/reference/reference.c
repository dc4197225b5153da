/* The reference backend: the elementwise, dense and dropout kernels, and the
 * op table. Device memory is host memory (core/cpu/host.h); the table
 * functions turn handles into pointers and call the kernels, which cannot
 * fail. */
#include "core/ops.h"
#include "core/reference/ref.h"
#include "core/rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- kernels --- */

static void fill_floats(float *y, float v, size_t n) {
    for (size_t i = 0; i < n; i++)
        y[i] = v;
}

static void scale_floats(float *y, float a, size_t n) {
    for (size_t i = 0; i < n; i++)
        y[i] *= a;
}

static void axpy_floats(float a, const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static void mul_floats(const float *a, const float *b, float *y, size_t n) {
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] * b[i];
}

/* Element (i, j) of op(M) for a row-major M with row stride ld. */
static float op_at(const float *m, int ld, int trans, int i, int j) {
    return trans ? m[(size_t)j * ld + i] : m[(size_t)i * ld + j];
}

/* BLAS semantics: with beta 0, C is written without being read. */
static void gemm_floats(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++)
                s += (double)op_at(a, lda, ta, i, p) * op_at(b, ldb, tb, p, j);
            float *cij = &c[(size_t)i * ldc + j];
            double prev = beta == 0.0f ? 0.0 : (double)beta * *cij;
            *cij = (float)((double)alpha * s + prev);
        }
    }
}

static void bias_add_floats(float *y, const float *b, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++)
            y[(size_t)r * cols + j] += b[j];
}

static void bias_grad_floats(float *db, const float *dy, int rows, int cols, float beta) {
    for (int j = 0; j < cols; j++) {
        double s = 0;
        for (int r = 0; r < rows; r++)
            s += dy[(size_t)r * cols + j];
        double prev = beta == 0.0f ? 0.0 : (double)beta * db[j];
        db[j] = (float)(prev + s);
    }
}

static void dropout_floats(const float *x, float *y, float *mask, size_t n, float rate,
                           uint64_t seed, uint64_t stream) {
    float keep_scale = rate < 1.0f ? 1.0f / (1.0f - rate) : 0.0f;
    for (size_t i = 0; i < n; i++) {
        mask[i] = kc_rng_uniform(seed, stream, i) >= rate ? keep_scale : 0.0f;
        y[i] = x[i] * mask[i];
    }
}

/* ------------------------------------------------------------ lifetime --- */

static const char ref_description[] =
    "plain single-threaded loops in double, the oracle other backends are held to";

static int ref_open(kc_device *d, const kc_device_opts *o) {
    if (o->device != 0)
        return kc_device_fail(d, KC_ECONFIG, "the reference backend has one device (0), not %d",
                              o->device);
    snprintf(d->name, sizeof d->name, "reference");
    return KC_OK;
}

static void ref_close(kc_device *d) {
    (void)d;
}

static int ref_list_devices(char *buf, size_t n) {
    return kc_host_list_devices("host CPU, one thread", buf, n);
}

/* -------------------------------------------------------------- memory --- */

static int ref_alloc(kc_device *d, size_t bytes, kc_buf *out) {
    (void)d;
    void *p = calloc(1, bytes ? bytes : 1);
    *out = p ? kc_host_buf(p) : KC_BUF_NULL;
    return p ? KC_OK : KC_ERUNTIME;
}

/* ---------------------------------------------------------- primitives --- */

#define F kc_host_f

static int ref_fill(kc_device *d, kc_buf y, float v, size_t n) {
    fill_floats(F(y), v, n);
    return KC_OK;
}

static int ref_scale(kc_device *d, kc_buf y, float a, size_t n) {
    scale_floats(F(y), a, n);
    return KC_OK;
}

static int ref_axpy(kc_device *d, float a, kc_buf x, kc_buf y, size_t n) {
    axpy_floats(a, F(x), F(y), n);
    return KC_OK;
}

static int ref_unary(kc_device *d, kc_unary_op op, float a, kc_buf x, kc_buf y, size_t n) {
    kc_ref_unary(op, a, F(x), F(y), n);
    return KC_OK;
}

static int ref_binary(kc_device *d, kc_binary_op op, const kc_bcast *g, kc_buf a, kc_buf b,
                      kc_buf y) {
    kc_ref_binary(op, g, F(a), F(b), F(y));
    return KC_OK;
}

static int ref_select(kc_device *d, kc_buf cond, kc_buf a, kc_buf b, kc_buf y, size_t n) {
    kc_ref_select(F(cond), F(a), F(b), F(y), n);
    return KC_OK;
}

static int ref_copy_strided(kc_device *d, kc_copy_mode mode, const kc_copy_desc *g, kc_buf src,
                            kc_buf dst) {
    kc_ref_copy_strided(mode, g, kc_host_ptr(src), kc_host_ptr(dst));
    return KC_OK;
}

static int ref_reduce(kc_device *d, kc_reduce_op op, const kc_reduce_desc *g, float alpha, kc_buf x,
                      float beta, kc_buf y) {
    kc_ref_reduce(op, g, alpha, F(x), beta, F(y));
    return KC_OK;
}

static int ref_gemm(kc_device *d, int ta, int tb, int m, int n, int k, float alpha, kc_buf a,
                    int lda, kc_buf b, int ldb, float beta, kc_buf c, int ldc) {
    gemm_floats(ta, tb, m, n, k, alpha, F(a), lda, F(b), ldb, beta, F(c), ldc);
    return KC_OK;
}

static int ref_act_forward(kc_device *d, kc_act act, float alpha, kc_buf x, kc_buf y, size_t n) {
    kc_ref_act_forward(act, alpha, F(x), F(y), n);
    return KC_OK;
}

static int ref_act_backward(kc_device *d, kc_act act, float alpha, kc_buf x, kc_buf y, kc_buf dy,
                            kc_buf dx, size_t n) {
    kc_ref_act_backward(act, alpha, F(x), F(y), F(dy), F(dx), n);
    return KC_OK;
}

static int ref_dropout_forward(kc_device *d, kc_buf x, kc_buf y, kc_buf mask, size_t n, float rate,
                               uint64_t seed, uint64_t stream) {
    dropout_floats(F(x), F(y), F(mask), n, rate, seed, stream);
    return KC_OK;
}

static int ref_rng_normal(kc_device *d, kc_buf y, size_t n, float mean, float stddev, uint64_t seed,
                          uint64_t stream) {
    float *v = F(y);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)((double)mean + (double)stddev * kc_rng_normal(seed, stream, i));
    return KC_OK;
}

static int no_output(kc_device *d, const char *op) {
    return kc_device_fail(d, KC_ECONFIG, "reference backend: %s without an output buffer", op);
}

static int ref_l1l2_penalty(kc_device *d, kc_buf x, kc_buf g, size_t n, float l1, float l2,
                            kc_buf out) {
    if (!kc_buf_ok(out)) return no_output(d, "l1l2_penalty");
    kc_host_add_double(out, kc_ref_l1l2_penalty(F(x), F(g), n, l1, l2));
    return KC_OK;
}

static int ref_sum_squares(kc_device *d, kc_buf x, size_t n, kc_buf out) {
    if (!kc_buf_ok(out)) return no_output(d, "sum_squares");
    kc_host_add_double(out, kc_ref_sum_squares(F(x), n));
    return KC_OK;
}

/* ----------------------------------------------------------- fused ops --- */

static int ref_mul(kc_device *d, kc_buf a, kc_buf b, kc_buf y, size_t n) {
    mul_floats(F(a), F(b), F(y), n);
    return KC_OK;
}

static int ref_bias_add(kc_device *d, kc_buf y, kc_buf b, int rows, int cols) {
    bias_add_floats(F(y), F(b), rows, cols);
    return KC_OK;
}

static int ref_bias_grad(kc_device *d, kc_buf db, kc_buf dy, int rows, int cols, float beta) {
    bias_grad_floats(F(db), F(dy), rows, cols, beta);
    return KC_OK;
}

static int ref_gemm_batched(kc_device *d, int ta, int tb, int m, int n, int k, float alpha,
                            kc_buf a, int lda, size_t sa, kc_buf b, int ldb, size_t sb, float beta,
                            kc_buf c, int ldc, size_t sc, int batch) {
    for (int i = 0; i < batch; i++)
        gemm_floats(ta, tb, m, n, k, alpha, F(a) + i * sa, lda, F(b) + i * sb, ldb, beta,
                    F(c) + i * sc, ldc);
    return KC_OK;
}

static int ref_softmax_forward(kc_device *d, kc_buf x, kc_buf y, int rows, int cols) {
    kc_ref_softmax_forward(F(x), F(y), rows, cols);
    return KC_OK;
}

static int ref_softmax_backward(kc_device *d, kc_buf y, kc_buf dy, kc_buf dx, int rows, int cols) {
    kc_ref_softmax_backward(F(y), F(dy), F(dx), rows, cols);
    return KC_OK;
}

static size_t ref_conv2d_workspace(const kc_device *d, const kc_conv2d_desc *g) {
    return kc_ref_conv2d_workspace(g);
}

static int ref_conv2d_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w, kc_buf y,
                              kc_buf ws) {
    kc_ref_conv2d_forward(g, F(x), F(w), F(y), kc_host_ptr(ws));
    return KC_OK;
}

static int ref_conv2d_backward_data(kc_device *d, const kc_conv2d_desc *g, kc_buf dy, kc_buf w,
                                    kc_buf dx, kc_buf ws) {
    kc_ref_conv2d_backward_data(g, F(dy), F(w), F(dx), kc_host_ptr(ws));
    return KC_OK;
}

static int ref_conv2d_backward_filter(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf dy,
                                      kc_buf dw, float beta, kc_buf ws) {
    kc_ref_conv2d_backward_filter(g, F(x), F(dy), F(dw), beta, kc_host_ptr(ws));
    return KC_OK;
}

static int ref_maxpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y,
                                 kc_buf argmax) {
    kc_ref_maxpool2d_forward(g, F(x), F(y), kc_host_i32(argmax));
    return KC_OK;
}

static int ref_maxpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf argmax,
                                  kc_buf dx) {
    kc_ref_maxpool2d_backward(g, F(dy), kc_host_i32(argmax), F(dx));
    return KC_OK;
}

static int ref_avgpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y) {
    kc_ref_avgpool2d_forward(g, F(x), F(y));
    return KC_OK;
}

static int ref_avgpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf dx) {
    kc_ref_avgpool2d_backward(g, F(dy), F(dx));
    return KC_OK;
}

static int ref_norm_rescale(kc_device *d, kc_buf w, const int64_t *dims, int rank, unsigned reduce,
                            float lo, float hi, float rate, float eps) {
    kc_ref_norm_rescale(F(w), dims, rank, reduce, lo, hi, rate, eps);
    return KC_OK;
}

static int ref_scale_div(kc_device *d, kc_buf x, kc_buf y, float a, float b, size_t n) {
    kc_ref_scale_div(F(x), F(y), a, b, n);
    return KC_OK;
}

static int ref_clip(kc_device *d, kc_buf x, kc_buf y, float lo, float hi, size_t n) {
    kc_ref_clip(F(x), F(y), lo, hi, n);
    return KC_OK;
}

static int ref_weight_decay(kc_device *d, kc_buf w, float wd, float lr, size_t n) {
    kc_ref_weight_decay(F(w), wd, lr, n);
    return KC_OK;
}

static int ref_sgd_update(kc_device *d, kc_buf w, kc_buf g, kc_buf v, size_t n, float lr,
                          float momentum, int nesterov) {
    kc_ref_sgd_update(F(w), F(g), F(v), n, lr, momentum, nesterov);
    return KC_OK;
}

static int ref_rmsprop_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ms, kc_buf mg, kc_buf mom,
                              size_t n, float lr, float rho, float one_minus_rho, float momentum,
                              float eps, int centered) {
    kc_ref_rmsprop_update(F(w), F(g), F(ms), F(mg), F(mom), n, lr, rho, one_minus_rho, momentum,
                          eps, centered);
    return KC_OK;
}

static int ref_adam_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, kc_buf vhat,
                           size_t n, float alpha, float one_minus_b1, float one_minus_b2, float eps,
                           int amsgrad) {
    kc_ref_adam_update(F(w), F(g), F(m), F(v), F(vhat), n, alpha, one_minus_b1, one_minus_b2, eps,
                       amsgrad);
    return KC_OK;
}

static int ref_adagrad_update(kc_device *d, kc_buf w, kc_buf g, kc_buf acc, size_t n, float lr,
                              float eps) {
    kc_ref_adagrad_update(F(w), F(g), F(acc), n, lr, eps);
    return KC_OK;
}

static int ref_adadelta_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ag, kc_buf ad, size_t n,
                               float lr, float rho, float one_minus_rho, float eps) {
    kc_ref_adadelta_update(F(w), F(g), F(ag), F(ad), n, lr, rho, one_minus_rho, eps);
    return KC_OK;
}

static int ref_adamax_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf u, size_t n,
                             float lr, float one_minus_b1, float b2, float one_minus_b1_power,
                             float eps) {
    kc_ref_adamax_update(F(w), F(g), F(m), F(u), n, lr, one_minus_b1, b2, one_minus_b1_power, eps);
    return KC_OK;
}

static int ref_nadam_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, size_t n,
                            const kc_nadam_coef *c) {
    kc_ref_nadam_update(F(w), F(g), F(m), F(v), n, c);
    return KC_OK;
}

static int ref_lion_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, size_t n, float lr, float b1,
                           float b2) {
    kc_ref_lion_update(F(w), F(g), F(m), n, lr, b1, b2);
    return KC_OK;
}

static int ref_depthwise_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w,
                                 kc_buf y) {
    kc_ref_depthwise_conv2d_forward(g, F(x), F(w), F(y));
    return KC_OK;
}

static int ref_depthwise_backward_data(kc_device *d, const kc_conv2d_desc *g, kc_buf dy, kc_buf w,
                                       kc_buf dx) {
    kc_ref_depthwise_conv2d_backward_data(g, F(dy), F(w), F(dx));
    return KC_OK;
}

static int ref_depthwise_backward_filter(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf dy,
                                         kc_buf dw, float beta) {
    kc_ref_depthwise_conv2d_backward_filter(g, F(x), F(dy), F(dw), beta);
    return KC_OK;
}

static int ref_embedding_invalid(kc_device *d, const float *ids, size_t n, size_t rows) {
    size_t bad = kc_ref_embedding_first_invalid(ids, n, rows);
    if (bad == n) return KC_OK;
    return kc_device_fail(d, KC_ERUNTIME,
                          "embedding: id %.9g at position %zu is not a whole number in [0, %zu)",
                          ids[bad], bad, rows);
}

static int ref_embedding_forward(kc_device *d, kc_buf ids, kc_buf w, kc_buf y, size_t n,
                                 size_t rows, size_t dim) {
    kc_ref_embedding_forward(F(ids), F(w), F(y), n, rows, dim);
    return ref_embedding_invalid(d, F(ids), n, rows);
}

static int ref_embedding_backward(kc_device *d, kc_buf ids, kc_buf dy, kc_buf dw, size_t n,
                                  size_t rows, size_t dim) {
    kc_ref_embedding_backward(F(ids), F(dy), F(dw), n, rows, dim);
    return ref_embedding_invalid(d, F(ids), n, rows);
}

const kc_backend kc_reference_backend = {
    .name = "reference",
    .description = ref_description,
    .open = ref_open,
    .close = ref_close,
    .list_devices = ref_list_devices,
    .synchronize = kc_host_synchronize,
    .alloc = ref_alloc,
    .free = kc_host_free,
    .upload = kc_host_upload,
    .download = kc_host_download,
    .copy = kc_host_copy,
    .copy2d = kc_host_copy2d,
    .copy_strided = ref_copy_strided,
    .fill = ref_fill,
    .scale = ref_scale,
    .axpy = ref_axpy,
    .unary = ref_unary,
    .binary = ref_binary,
    .select = ref_select,
    .reduce = ref_reduce,
    .gemm = ref_gemm,
    .act_forward = ref_act_forward,
    .act_backward = ref_act_backward,
    .dropout_forward = ref_dropout_forward,
    .l1l2_penalty = ref_l1l2_penalty,
    .sum_squares = ref_sum_squares,
    .mul = ref_mul,
    .bias_add = ref_bias_add,
    .bias_grad = ref_bias_grad,
    .gemm_batched = ref_gemm_batched,
    .softmax_forward = ref_softmax_forward,
    .softmax_backward = ref_softmax_backward,
    .conv2d_workspace = ref_conv2d_workspace,
    .conv2d_forward = ref_conv2d_forward,
    .conv2d_backward_data = ref_conv2d_backward_data,
    .conv2d_backward_filter = ref_conv2d_backward_filter,
    .maxpool2d_forward = ref_maxpool2d_forward,
    .maxpool2d_backward = ref_maxpool2d_backward,
    .avgpool2d_forward = ref_avgpool2d_forward,
    .avgpool2d_backward = ref_avgpool2d_backward,
    .norm_rescale = ref_norm_rescale,
    .scale_div = ref_scale_div,
    .clip = ref_clip,
    .weight_decay = ref_weight_decay,
    .sgd_update = ref_sgd_update,
    .rmsprop_update = ref_rmsprop_update,
    .adam_update = ref_adam_update,
    .adagrad_update = ref_adagrad_update,
    .adadelta_update = ref_adadelta_update,
    .adamax_update = ref_adamax_update,
    .nadam_update = ref_nadam_update,
    .lion_update = ref_lion_update,
    .rng_normal = ref_rng_normal,
    .depthwise_conv2d_forward = ref_depthwise_forward,
    .depthwise_conv2d_backward_data = ref_depthwise_backward_data,
    .depthwise_conv2d_backward_filter = ref_depthwise_backward_filter,
    .embedding_forward = ref_embedding_forward,
    .embedding_backward = ref_embedding_backward,
};

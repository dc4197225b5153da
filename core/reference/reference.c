/* The reference backend: memory, elementwise, dense and dropout ops, and the
 * op table. Device memory is host memory. */
#include "core/reference/ref.h"
#include "core/rng.h"

#include <stdlib.h>
#include <string.h>

static void *ref_alloc(size_t bytes) {
    return calloc(1, bytes ? bytes : 1);
}
static void ref_free(void *p) {
    free(p);
}

static void ref_upload(void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
}

static void ref_download(void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
}

static void ref_copy(void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) memmove(dst, src, bytes);
}

static void ref_set_threads(int n) {
    (void)n;
}

static void ref_fill(float *y, float v, size_t n) {
    for (size_t i = 0; i < n; i++)
        y[i] = v;
}

static void ref_scale(float *y, float a, size_t n) {
    for (size_t i = 0; i < n; i++)
        y[i] *= a;
}

static void ref_axpy(float a, const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static void ref_mul(const float *a, const float *b, float *y, size_t n) {
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] * b[i];
}

/* Element (i, j) of op(M) for a row-major M with row stride ld. */
static float op_at(const float *m, int ld, int trans, int i, int j) {
    return trans ? m[(size_t)j * ld + i] : m[(size_t)i * ld + j];
}

/* BLAS semantics: with beta 0, C is written without being read. */
static void ref_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
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

static void ref_bias_add(float *y, const float *b, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++)
            y[(size_t)r * cols + j] += b[j];
}

static void ref_bias_grad(float *db, const float *dy, int rows, int cols, float beta) {
    for (int j = 0; j < cols; j++) {
        double s = 0;
        for (int r = 0; r < rows; r++)
            s += dy[(size_t)r * cols + j];
        double prev = beta == 0.0f ? 0.0 : (double)beta * db[j];
        db[j] = (float)(prev + s);
    }
}

static void ref_dropout_forward(const float *x, float *y, float *mask, size_t n, float rate,
                                uint64_t seed, uint64_t stream) {
    float keep_scale = rate < 1.0f ? 1.0f / (1.0f - rate) : 0.0f;
    for (size_t i = 0; i < n; i++) {
        mask[i] = kc_rng_uniform(seed, stream, i) >= rate ? keep_scale : 0.0f;
        y[i] = x[i] * mask[i];
    }
}

static const kc_backend reference_backend = {
    .name = "reference",
    .alloc = ref_alloc,
    .free = ref_free,
    .upload = ref_upload,
    .download = ref_download,
    .copy = ref_copy,
    .set_threads = ref_set_threads,
    .fill = ref_fill,
    .scale = ref_scale,
    .axpy = ref_axpy,
    .mul = ref_mul,
    .gemm = ref_gemm,
    .bias_add = ref_bias_add,
    .bias_grad = ref_bias_grad,
    .act_forward = kc_ref_act_forward,
    .act_backward = kc_ref_act_backward,
    .softmax_forward = kc_ref_softmax_forward,
    .softmax_backward = kc_ref_softmax_backward,
    .conv2d_workspace = kc_ref_conv2d_workspace,
    .conv2d_forward = kc_ref_conv2d_forward,
    .conv2d_backward_data = kc_ref_conv2d_backward_data,
    .conv2d_backward_filter = kc_ref_conv2d_backward_filter,
    .maxpool2d_forward = kc_ref_maxpool2d_forward,
    .maxpool2d_backward = kc_ref_maxpool2d_backward,
    .avgpool2d_forward = kc_ref_avgpool2d_forward,
    .avgpool2d_backward = kc_ref_avgpool2d_backward,
    .dropout_forward = ref_dropout_forward,
    .l1l2_penalty = kc_ref_l1l2_penalty,
    .norm_rescale = kc_ref_norm_rescale,
    .sgd_update = kc_ref_sgd_update,
    .rmsprop_update = kc_ref_rmsprop_update,
    .adam_update = kc_ref_adam_update,
    .adagrad_update = kc_ref_adagrad_update,
    .adadelta_update = kc_ref_adadelta_update,
    .adamax_update = kc_ref_adamax_update,
    .nadam_update = kc_ref_nadam_update,
    .lion_update = kc_ref_lion_update,
    .sum_squares = kc_ref_sum_squares,
    .scale_div = kc_ref_scale_div,
    .clip = kc_ref_clip,
    .weight_decay = kc_ref_weight_decay,
};

const kc_backend *kc_backend_reference(void) {
    return &reference_backend;
}

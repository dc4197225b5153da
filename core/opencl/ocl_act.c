/* The OpenCL backend's activations, dropout and bias. */
#include "core/opencl/ocl.h"
#include "core/ops.h"

#include <limits.h>

/* Softmax is not elementwise; handed to the elementwise ops, the whole
 * buffer is one row (as on the other backends). */
static int row_too_long(kc_device *d, size_t n) {
    return kc_device_fail(d, KC_ECONFIG, "opencl: softmax over %zu elements in one row", n);
}

int kc_ocl_act_forward(kc_device *d, kc_act act, float alpha, kc_buf x, kc_buf y, size_t n) {
    if (act == KC_ACT_SOFTMAX)
        return n > INT_MAX ? row_too_long(d, n) : kc_ocl_softmax_forward(d, x, y, 1, (int)n);
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_act_forward);
    kc_ocl_i32(&c, (int)act);
    kc_ocl_f32(&c, alpha);
    kc_ocl_buf(&c, x);
    kc_ocl_buf(&c, y);
    kc_ocl_u64(&c, n);
    return kc_ocl_run(&c, n);
}

/* dx = dy act'(x): the slope is taken from x, as the reference backend does */
int kc_ocl_act_backward(kc_device *d, kc_act act, float alpha, kc_buf x, kc_buf y, kc_buf dy,
                        kc_buf dx, size_t n) {
    if (act == KC_ACT_SOFTMAX)
        return n > INT_MAX ? row_too_long(d, n) : kc_ocl_softmax_backward(d, y, dy, dx, 1, (int)n);
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_act_backward);
    kc_ocl_i32(&c, (int)act);
    kc_ocl_f32(&c, alpha);
    kc_ocl_buf(&c, x);
    kc_ocl_buf(&c, dy);
    kc_ocl_buf(&c, dx);
    kc_ocl_u64(&c, n);
    return kc_ocl_run(&c, n);
}

int kc_ocl_dropout_forward(kc_device *d, kc_buf x, kc_buf y, kc_buf mask, size_t n, float rate,
                           uint64_t seed, uint64_t stream) {
    /* the scale rounds on the host exactly as on the cpu backend */
    float keep_scale = rate < 1.0f ? 1.0f / (1.0f - rate) : 0.0f;
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_dropout_forward);
    kc_ocl_buf(&c, x);
    kc_ocl_buf(&c, y);
    kc_ocl_buf(&c, mask);
    kc_ocl_u64(&c, n);
    kc_ocl_f32(&c, rate);
    kc_ocl_f32(&c, keep_scale);
    kc_ocl_u64(&c, seed);
    kc_ocl_u64(&c, stream);
    return kc_ocl_run(&c, n);
}

int kc_ocl_bias_add(kc_device *d, kc_buf y, kc_buf b, int rows, int cols) {
    size_t n = (size_t)rows * (size_t)cols;
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_bias_add);
    kc_ocl_buf(&c, y);
    kc_ocl_buf(&c, b);
    kc_ocl_u64(&c, n);
    kc_ocl_i32(&c, cols);
    return kc_ocl_run(&c, n);
}

int kc_ocl_rng_normal(kc_device *d, kc_buf y, size_t n, float mean, float stddev, uint64_t seed,
                      uint64_t stream) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_rng_normal);
    kc_ocl_buf(&c, y);
    kc_ocl_u64(&c, n);
    kc_ocl_f32(&c, mean);
    kc_ocl_f32(&c, stddev);
    kc_ocl_u64(&c, seed);
    kc_ocl_u64(&c, stream);
    return kc_ocl_run(&c, n);
}

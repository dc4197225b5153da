/* 2-D pooling on OpenCL: one work-item per output cell forward, one per
 * input cell backward. The backward passes gather from the windows covering
 * each input cell instead of scattering, so no two work-items write the same
 * place and the sums keep the reference backend's order. */
#include "core/opencl/ocl.h"
#include "core/ops.h"

#include <stdint.h>

static cl_int16 geometry(const kc_pool2d_desc *g) {
    cl_int16 v = {{g->n, g->h, g->w, g->c, g->ph, g->pw, g->sh, g->sw, g->pad_t, g->pad_l, g->oh,
                   g->ow, 0, 0, 0, 0}};
    return v;
}

static size_t in_size(const kc_pool2d_desc *g) {
    return (size_t)g->n * g->h * g->w * g->c;
}

static size_t out_size(const kc_pool2d_desc *g) {
    return (size_t)g->n * g->oh * g->ow * g->c;
}

/* The kernels index with 32-bit integers, as the int32 argmax does. */
static int check(kc_device *d, const kc_pool2d_desc *g) {
    if (g->n < 0 || g->h < 0 || g->w < 0 || g->c < 0 || g->oh < 0 || g->ow < 0)
        return kc_device_fail(d, KC_ECONFIG, "opencl: pooling with a negative extent");
    if (in_size(g) > INT32_MAX || out_size(g) > INT32_MAX)
        return kc_device_fail(d, KC_ECONFIG, "opencl: pooling tensors beyond 2^31 elements");
    if (g->sh <= 0 || g->sw <= 0)
        return kc_device_fail(d, KC_ECONFIG, "opencl: pooling strides must be positive");
    return KC_OK;
}

/* A pooling kernel's common tail: geometry and element count. */
static int run(kc_ocl_call *c, const kc_pool2d_desc *g, size_t total) {
    cl_int16 geo = geometry(g);
    kc_ocl_raw(c, sizeof geo, &geo);
    kc_ocl_i32(c, (int)total);
    return kc_ocl_run(c, total);
}

int kc_ocl_maxpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y,
                             kc_buf argmax) {
    int rc = check(d, g);
    if (rc) return rc;
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_maxpool_forward);
    kc_ocl_buf(&c, x);
    kc_ocl_buf(&c, y);
    kc_ocl_buf(&c, argmax);
    return run(&c, g, out_size(g));
}

int kc_ocl_maxpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf argmax,
                              kc_buf dx) {
    int rc = check(d, g);
    if (rc) return rc;
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_maxpool_backward);
    kc_ocl_buf(&c, dy);
    kc_ocl_buf(&c, argmax);
    kc_ocl_buf(&c, dx);
    return run(&c, g, in_size(g));
}

int kc_ocl_avgpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y) {
    int rc = check(d, g);
    if (rc) return rc;
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_avgpool_forward);
    kc_ocl_buf(&c, x);
    kc_ocl_buf(&c, y);
    return run(&c, g, out_size(g));
}

int kc_ocl_avgpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf dx) {
    int rc = check(d, g);
    if (rc) return rc;
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_avgpool_backward);
    kc_ocl_buf(&c, dy);
    kc_ocl_buf(&c, dx);
    return run(&c, g, in_size(g));
}

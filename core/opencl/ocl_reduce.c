/* The OpenCL backend's reductions: over an axis, the bias gradient (a column
 * sum) and softmax. No atomics: each output is reduced either by one
 * work-item in order or by one work-group with a fixed tree, chosen by the
 * shape alone, so a device repeats its bits run after run. */
#include "core/opencl/ocl.h"
#include "core/ops.h"

/* Long rows with few outputs go to a work-group each; otherwise there are
 * enough outputs to keep the device busy one work-item each. */
static int by_groups(size_t outputs, size_t len) {
    return len >= 256 && outputs < 4096;
}

static size_t real_size(const kc_ocl *o) {
    return o->fp64 ? sizeof(double) : sizeof(float);
}

static int reduce_groups(kc_device *d, kc_reduce_op op, const kc_reduce_desc *g, float alpha,
                         kc_buf x, float beta, kc_buf y) {
    kc_ocl *o = kc_ocl_of(d);
    size_t local = o->local[KC_OCL_K_reduce_group];
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_reduce_group);
    kc_ocl_i32(&c, (int)op);
    kc_ocl_buf(&c, x);
    kc_ocl_buf(&c, y);
    kc_ocl_u64(&c, (uint64_t)g->len);
    kc_ocl_u64(&c, (uint64_t)g->inner);
    kc_ocl_f32(&c, alpha);
    kc_ocl_f32(&c, beta);
    kc_ocl_local(&c, local * real_size(o));
    kc_ocl_local(&c, local * sizeof(cl_long));
    return kc_ocl_run_groups(&c, (size_t)(g->outer * g->inner), local);
}

int kc_ocl_reduce(kc_device *d, kc_reduce_op op, const kc_reduce_desc *g, float alpha, kc_buf x,
                  float beta, kc_buf y) {
    if (g->outer < 0 || g->len < 0 || g->inner < 0)
        return kc_device_fail(d, KC_ECONFIG, "opencl: reduce over a negative extent");
    size_t outputs = (size_t)(g->outer * g->inner);
    if (by_groups(outputs, (size_t)g->len)) return reduce_groups(d, op, g, alpha, x, beta, y);
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_reduce_item);
    kc_ocl_i32(&c, (int)op);
    kc_ocl_buf(&c, x);
    kc_ocl_buf(&c, y);
    kc_ocl_u64(&c, (uint64_t)g->outer);
    kc_ocl_u64(&c, (uint64_t)g->len);
    kc_ocl_u64(&c, (uint64_t)g->inner);
    kc_ocl_f32(&c, alpha);
    kc_ocl_f32(&c, beta);
    return kc_ocl_run(&c, outputs);
}

/* db = beta db + column sums: the reduction over rows, whose y = alpha r +
 * beta y with alpha 1 rounds exactly as the reference's beta db + r. */
int kc_ocl_bias_grad(kc_device *d, kc_buf db, kc_buf dy, int rows, int cols, float beta) {
    kc_reduce_desc g = {1, rows, cols};
    return kc_ocl_reduce(d, KC_RED_SUM, &g, 1.0f, dy, beta, db);
}

/* A work-group per row, its size the row length rounded up to a power of
 * two (capped by what the kernel allows). */
static size_t row_group(const kc_ocl *o, int kernel, int cols) {
    size_t local = 1;
    while (local < (size_t)cols && local < o->local[kernel])
        local *= 2;
    return local;
}

int kc_ocl_softmax_forward(kc_device *d, kc_buf x, kc_buf y, int rows, int cols) {
    kc_ocl *o = kc_ocl_of(d);
    size_t local = row_group(o, KC_OCL_K_softmax_forward, cols);
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_softmax_forward);
    kc_ocl_buf(&c, x);
    kc_ocl_buf(&c, y);
    kc_ocl_i32(&c, cols);
    kc_ocl_local(&c, local * real_size(o));
    return kc_ocl_run_groups(&c, (size_t)rows, local);
}

int kc_ocl_softmax_backward(kc_device *d, kc_buf y, kc_buf dy, kc_buf dx, int rows, int cols) {
    kc_ocl *o = kc_ocl_of(d);
    size_t local = row_group(o, KC_OCL_K_softmax_backward, cols);
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_softmax_backward);
    kc_ocl_buf(&c, y);
    kc_ocl_buf(&c, dy);
    kc_ocl_buf(&c, dx);
    kc_ocl_i32(&c, cols);
    kc_ocl_local(&c, local * real_size(o));
    return kc_ocl_run_groups(&c, (size_t)rows, local);
}

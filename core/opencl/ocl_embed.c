/* The OpenCL backend's embedding lookup (kernels in ocl_src_embed.c). It
 * writes zero rows for invalid ids without failing: telling would cost a
 * download per call. */
#include "core/opencl/ocl.h"
#include "core/ops.h"

#include <stdint.h>

/* Backward: each work-item adds EMB_BLOCK columns of the rows of its
 * bucket and reads every id, so about EMB_ITEMS work-items fill the device
 * while re-reading the ids stays cheap. */
enum { EMB_BLOCK = 16, EMB_ITEMS = 512 };

static uint32_t emb_buckets(size_t rows, size_t dim) {
    size_t blocks = (dim + EMB_BLOCK - 1) / EMB_BLOCK;
    size_t b = blocks >= EMB_ITEMS ? 1 : EMB_ITEMS / blocks;
    return (uint32_t)(b < rows ? b : rows ? rows : 1);
}

static void u32_arg(kc_ocl_call *c, size_t v) {
    cl_uint x = (cl_uint)v;
    kc_ocl_raw(c, sizeof x, &x);
}

static int emb_refuse(kc_device *d, size_t n, size_t rows, size_t dim) {
    if (n > UINT32_MAX || rows > UINT32_MAX || dim > UINT32_MAX)
        return kc_device_fail(d, KC_ECONFIG,
                              "opencl: embedding of %zu ids over %zu rows of %zu floats is beyond "
                              "2^32",
                              n, rows, dim);
    return KC_OK;
}

int kc_ocl_embedding_forward(kc_device *d, kc_buf ids, kc_buf w, kc_buf y, size_t n, size_t rows,
                             size_t dim) {
    if (emb_refuse(d, n, rows, dim)) return d->err.code;
    if (!n || !dim) return KC_OK;
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_emb_forward);
    kc_ocl_buf(&c, ids);
    kc_ocl_buf(&c, w);
    kc_ocl_buf(&c, y);
    u32_arg(&c, rows);
    u32_arg(&c, dim);
    kc_ocl_u64(&c, (uint64_t)n * dim);
    return kc_ocl_run(&c, n * dim);
}

int kc_ocl_embedding_backward(kc_device *d, kc_buf ids, kc_buf dy, kc_buf dw, size_t n, size_t rows,
                              size_t dim) {
    if (emb_refuse(d, n, rows, dim)) return d->err.code;
    if (!n || !dim || !rows) return KC_OK;
    uint32_t buckets = emb_buckets(rows, dim);
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_emb_backward);
    kc_ocl_buf(&c, ids);
    kc_ocl_buf(&c, dy);
    kc_ocl_buf(&c, dw);
    u32_arg(&c, n);
    u32_arg(&c, rows);
    u32_arg(&c, dim);
    u32_arg(&c, buckets);
    u32_arg(&c, EMB_BLOCK);
    size_t items = (size_t)buckets * ((dim + EMB_BLOCK - 1) / EMB_BLOCK);
    kc_ocl_u64(&c, (uint64_t)items);
    return kc_ocl_run(&c, items);
}

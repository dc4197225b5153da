/* The OpenCL backend's weight penalty, sum of squares and norm projection,
 * in the block order core/backend.h fixes. With cl_khr_fp64 the blocks are
 * summed in double on the device and the result is added to out[0] there,
 * the same bits as the reference backend. Without it the blocks are summed
 * in float (each still in order), and the host adds them up in double and
 * updates out[0] with a blocking round trip (as it does, with the device's
 * double sums, for an out that is not 8-byte aligned). */
#include "core/opencl/ocl.h"
#include "core/ops.h"

/* part[b], part[64 + b] = sum |x|, sum x^2 of block b */
static int block_sums(kc_device *d, kc_buf x, size_t n) {
    kc_ocl *o = kc_ocl_of(d);
    size_t block = (n + KC_PENALTY_BLOCKS - 1) / KC_PENALTY_BLOCKS;
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_block_sums);
    kc_ocl_buf(&c, x);
    kc_ocl_u64(&c, n);
    kc_ocl_u64(&c, block);
    kc_ocl_i32(&c, KC_PENALTY_BLOCKS);
    kc_ocl_clmem(&c, o->partial);
    return kc_ocl_run(&c, KC_PENALTY_BLOCKS);
}

static double penalty_of(double abs_total, double sq_total, float l1, float l2, int squares_only) {
    if (squares_only) return sq_total;
    double add = 0.0;
    if (l1 != 0.0f) add += (double)l1 * abs_total;
    if (l2 != 0.0f) add += (double)l2 * sq_total;
    return add;
}

/* Reads the block sums back (float or double, as the program sums them) and
 * adds them up here, for devices without doubles and for an out that is not
 * 8-byte aligned in its allocation. */
static int finish_on_host(kc_device *d, kc_buf out, float l1, float l2, int squares_only) {
    kc_ocl *o = kc_ocl_of(d);
    double part[2 * KC_PENALTY_BLOCKS], cur = 0.0;
    cl_float fpart[2 * KC_PENALTY_BLOCKS];
    void *dst = o->fp64 ? (void *)part : (void *)fpart;
    size_t bytes = o->fp64 ? sizeof part : sizeof fpart;
    cl_int err = clEnqueueReadBuffer(o->queue, o->partial, CL_TRUE, 0, bytes, dst, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        err = clEnqueueReadBuffer(o->queue, kc_ocl_mem(out), CL_TRUE, out.off, sizeof cur, &cur, 0,
                                  NULL, NULL);
    if (err != CL_SUCCESS) return kc_ocl_fail(d, "clEnqueueReadBuffer (penalty)", err);
    if (!o->fp64)
        for (int b = 0; b < 2 * KC_PENALTY_BLOCKS; b++)
            part[b] = fpart[b];
    double a = 0.0, q = 0.0;
    for (int b = 0; b < KC_PENALTY_BLOCKS; b++) {
        a += part[b];
        q += part[KC_PENALTY_BLOCKS + b];
    }
    cur += penalty_of(a, q, l1, l2, squares_only);
    err = clEnqueueWriteBuffer(o->queue, kc_ocl_mem(out), CL_TRUE, out.off, sizeof cur, &cur, 0,
                               NULL, NULL);
    return err == CL_SUCCESS ? KC_OK : kc_ocl_fail(d, "clEnqueueWriteBuffer (penalty)", err);
}

static int finish(kc_device *d, kc_buf out, float l1, float l2, int squares_only) {
    kc_ocl *o = kc_ocl_of(d);
    if (!kc_buf_ok(out))
        return kc_device_fail(d, KC_ECONFIG, "opencl: penalty without an output buffer");
    if (!o->fp64 || out.off % sizeof(double)) return finish_on_host(d, out, l1, l2, squares_only);
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_penalty_finish);
    kc_ocl_clmem(&c, o->partial);
    kc_ocl_i32(&c, KC_PENALTY_BLOCKS);
    kc_ocl_buf_elem(&c, out, sizeof(double));
    kc_ocl_f32(&c, l1);
    kc_ocl_f32(&c, l2);
    kc_ocl_i32(&c, squares_only);
    return kc_ocl_run_groups(&c, 1, 1);
}

static int penalty_grad(kc_device *d, kc_buf x, kc_buf g, size_t n, float l1, float l2) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_penalty_grad);
    kc_ocl_buf(&c, x);
    kc_ocl_buf(&c, g);
    kc_ocl_u64(&c, n);
    kc_ocl_f32(&c, l1);
    kc_ocl_f32(&c, 2.0f * l2);
    return kc_ocl_run(&c, n);
}

int kc_ocl_l1l2_penalty(kc_device *d, kc_buf x, kc_buf g, size_t n, float l1, float l2,
                        kc_buf out) {
    int rc = block_sums(d, x, n);
    if (!rc && kc_buf_ok(g)) rc = penalty_grad(d, x, g, n, l1, l2);
    return rc ? rc : finish(d, out, l1, l2, 0);
}

int kc_ocl_sum_squares(kc_device *d, kc_buf x, size_t n, kc_buf out) {
    int rc = block_sums(d, x, n);
    return rc ? rc : finish(d, out, 0.0f, 0.0f, 1);
}

int kc_ocl_norm_rescale(kc_device *d, kc_buf w, const int64_t *dims, int rank, unsigned reduce,
                        float lo, float hi, float rate, float eps) {
    if (rank < 1 || rank > 8)
        return kc_device_fail(d, KC_ECONFIG, "opencl: norm_rescale of rank %d (1 to 8)", rank);
    cl_ulong8 dv;
    uint64_t slices = 1, span = 1;
    for (int a = 0; a < 8; a++) {
        dv.s[a] = a < rank ? (cl_ulong)dims[a] : 1;
        if (a >= rank) continue;
        if ((reduce >> a) & 1u)
            span *= (uint64_t)dims[a];
        else
            slices *= (uint64_t)dims[a];
    }
    if (!slices || !span) return KC_OK;
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_norm_rescale);
    kc_ocl_buf(&c, w);
    kc_ocl_raw(&c, sizeof dv, &dv);
    kc_ocl_i32(&c, rank);
    kc_ocl_i32(&c, (int)reduce);
    kc_ocl_u64(&c, slices);
    kc_ocl_u64(&c, span);
    kc_ocl_f32(&c, lo);
    kc_ocl_f32(&c, hi);
    kc_ocl_f32(&c, rate);
    kc_ocl_f32(&c, eps);
    return kc_ocl_run(&c, (size_t)slices);
}

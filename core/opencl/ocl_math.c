/* The OpenCL backend's elementwise ops and strided copies: each one kernel
 * launch over the elements. */
#include "core/opencl/ocl.h"
#include "core/ops.h"

int kc_ocl_fill(kc_device *d, kc_buf y, float v, size_t n) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_fill);
    kc_ocl_buf(&c, y);
    kc_ocl_f32(&c, v);
    kc_ocl_u64(&c, n);
    return kc_ocl_run(&c, n);
}

int kc_ocl_scale(kc_device *d, kc_buf y, float a, size_t n) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_scale);
    kc_ocl_buf(&c, y);
    kc_ocl_f32(&c, a);
    kc_ocl_u64(&c, n);
    return kc_ocl_run(&c, n);
}

int kc_ocl_axpy(kc_device *d, float a, kc_buf x, kc_buf y, size_t n) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_axpy);
    kc_ocl_f32(&c, a);
    kc_ocl_buf(&c, x);
    kc_ocl_buf(&c, y);
    kc_ocl_u64(&c, n);
    return kc_ocl_run(&c, n);
}

int kc_ocl_mul(kc_device *d, kc_buf a, kc_buf b, kc_buf y, size_t n) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_mul);
    kc_ocl_buf(&c, a);
    kc_ocl_buf(&c, b);
    kc_ocl_buf(&c, y);
    kc_ocl_u64(&c, n);
    return kc_ocl_run(&c, n);
}

int kc_ocl_unary(kc_device *d, kc_unary_op op, float a, kc_buf x, kc_buf y, size_t n) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_unary);
    kc_ocl_i32(&c, (int)op);
    kc_ocl_f32(&c, a);
    kc_ocl_buf(&c, x);
    kc_ocl_buf(&c, y);
    kc_ocl_u64(&c, n);
    return kc_ocl_run(&c, n);
}

/* The geometry with the fastest axis last in a 4-vector, leading axes of
 * extent 1; plain when a, b and y walk the same dense indices. */
static void bcast_vectors(const kc_bcast *g, cl_ulong4 *dims, cl_ulong4 *sa, cl_ulong4 *sb,
                          size_t *n, int *plain) {
    int shift = KC_BCAST_RANK - g->rank;
    *n = 1;
    for (int k = 0; k < KC_BCAST_RANK; k++) {
        int src = k - shift;
        dims->s[k] = src >= 0 ? (cl_ulong)g->dims[src] : 1;
        sa->s[k] = src >= 0 ? (cl_ulong)g->sa[src] : 0;
        sb->s[k] = src >= 0 ? (cl_ulong)g->sb[src] : 0;
        *n *= (size_t)dims->s[k];
    }
    *plain = g->rank == 1 && g->sa[0] == 1 && g->sb[0] == 1;
}

int kc_ocl_binary(kc_device *d, kc_binary_op op, const kc_bcast *g, kc_buf a, kc_buf b, kc_buf y) {
    if (g->rank < 1 || g->rank > KC_BCAST_RANK)
        return kc_device_fail(d, KC_ECONFIG, "opencl: broadcast rank %d out of range", g->rank);
    cl_ulong4 dims, sa, sb;
    size_t n;
    int plain;
    bcast_vectors(g, &dims, &sa, &sb, &n, &plain);
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_binary);
    kc_ocl_i32(&c, (int)op);
    kc_ocl_buf(&c, a);
    kc_ocl_buf(&c, b);
    kc_ocl_buf(&c, y);
    kc_ocl_u64(&c, n);
    kc_ocl_raw(&c, sizeof dims, &dims);
    kc_ocl_raw(&c, sizeof sa, &sa);
    kc_ocl_raw(&c, sizeof sb, &sb);
    kc_ocl_i32(&c, plain);
    return kc_ocl_run(&c, n);
}

int kc_ocl_select(kc_device *d, kc_buf cond, kc_buf a, kc_buf b, kc_buf y, size_t n) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_select);
    kc_ocl_buf(&c, cond);
    kc_ocl_buf(&c, a);
    kc_ocl_buf(&c, b);
    kc_ocl_buf(&c, y);
    kc_ocl_u64(&c, n);
    return kc_ocl_run(&c, n);
}

int kc_ocl_copy2d(kc_device *d, kc_buf dst, size_t ldd, kc_buf src, size_t lds, size_t rows,
                  size_t cols) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_copy2d);
    kc_ocl_buf(&c, dst);
    kc_ocl_u64(&c, ldd);
    kc_ocl_buf(&c, src);
    kc_ocl_u64(&c, lds);
    kc_ocl_u64(&c, rows);
    kc_ocl_u64(&c, cols);
    return kc_ocl_run(&c, rows * cols);
}

int kc_ocl_scale2d(kc_device *d, kc_buf y, size_t ld, size_t rows, size_t cols, float beta) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_scale2d);
    kc_ocl_buf(&c, y);
    kc_ocl_u64(&c, ld);
    kc_ocl_u64(&c, rows);
    kc_ocl_u64(&c, cols);
    kc_ocl_f32(&c, beta);
    return kc_ocl_run(&c, rows * cols);
}

/* The geometry as three 8-vectors (axes beyond the rank unused). */
int kc_ocl_copy_strided(kc_device *d, kc_copy_mode mode, const kc_copy_desc *g, kc_buf src,
                        kc_buf dst) {
    if (g->rank < 1 || g->rank > KC_COPY_RANK)
        return kc_device_fail(d, KC_ECONFIG, "opencl: strided copy rank %d out of range", g->rank);
    cl_ulong8 dims = {{0}}, ss = {{0}}, ds = {{0}};
    size_t n = 1;
    for (int k = 0; k < g->rank; k++) {
        dims.s[k] = (cl_ulong)g->dims[k];
        ss.s[k] = (cl_ulong)g->ss[k];
        ds.s[k] = (cl_ulong)g->ds[k];
        n *= (size_t)g->dims[k];
    }
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_copy_strided);
    kc_ocl_i32(&c, (int)mode);
    kc_ocl_buf(&c, dst);
    kc_ocl_buf(&c, src);
    kc_ocl_i32(&c, g->rank);
    kc_ocl_raw(&c, sizeof dims, &dims);
    kc_ocl_raw(&c, sizeof ss, &ss);
    kc_ocl_raw(&c, sizeof ds, &ds);
    kc_ocl_u64(&c, n);
    return kc_ocl_run(&c, n);
}

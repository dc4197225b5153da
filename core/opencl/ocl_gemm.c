/* Matrix products through CLBlast on the device's queue, row-major, with
 * element offsets into the allocations. CLBlast's temporary buffer (for the
 * padded or transposed copies its indirect kernel works on) is kept on the
 * device and grown when a larger product needs it, so steady-state products
 * allocate nothing. */
#include "core/opencl/ocl.h"
#include "core/ops.h"

#include <clblast_c.h>

static CLBlastTranspose trans(int t) {
    return t ? CLBlastTransposeYes : CLBlastTransposeNo;
}

static int blas_fail(kc_device *d, const char *what, CLBlastStatusCode st) {
    return kc_ocl_fail(d, what, (int)st);
}

/* Element offsets of the three operands (CLBlast counts in floats). */
static int offsets(kc_device *d, kc_buf a, kc_buf b, kc_buf c, size_t off[3]) {
    int rc = kc_ocl_elem_off(d, a, &off[0]);
    if (!rc) rc = kc_ocl_elem_off(d, b, &off[1]);
    if (!rc) rc = kc_ocl_elem_off(d, c, &off[2]);
    return rc;
}

/* BLAS semantics for beta 0: C is written without being read, so NaN or Inf
 * left in C never reaches the product. CLBlast 1.5's gemm kernels (direct,
 * indirect and strided-batched) skip beta C when beta is 0, which the
 * harness checked with NaN-filled C; older releases are not vouched for, so
 * there C is cleared first. */
#if CLBLAST_VERSION_MAJOR > 1 || (CLBLAST_VERSION_MAJOR == 1 && CLBLAST_VERSION_MINOR >= 5)
#define CLEAR_FOR_BETA0 0
#else
#define CLEAR_FOR_BETA0 1
#endif

static int clear_for_beta0(kc_device *d, float beta, kc_buf c, int ldc, size_t rows, size_t cols) {
    if (!CLEAR_FOR_BETA0 || beta != 0.0f) return KC_OK;
    return kc_ocl_scale2d(d, c, (size_t)ldc, rows, cols, 0.0f);
}

int kc_ocl_gemm(kc_device *d, int ta, int tb, int m, int n, int k, float alpha, kc_buf a, int lda,
                kc_buf b, int ldb, float beta, kc_buf c, int ldc) {
    if (m <= 0 || n <= 0) return KC_OK;
    if (k <= 0) return kc_ocl_scale2d(d, c, (size_t)ldc, (size_t)m, (size_t)n, beta);
    kc_ocl *o = kc_ocl_of(d);
    size_t off[3], need = 0;
    int rc = offsets(d, a, b, c, off);
    if (!rc) rc = clear_for_beta0(d, beta, c, ldc, (size_t)m, (size_t)n);
    if (rc) return rc;
    CLBlastStatusCode st = CLBlastSGemmTempBufferSize(
        CLBlastLayoutRowMajor, trans(ta), trans(tb), (size_t)m, (size_t)n, (size_t)k, off[0],
        (size_t)lda, off[1], (size_t)ldb, off[2], (size_t)ldc, &o->queue, &need);
    if (st != CLBlastSuccess) return blas_fail(d, "CLBlastSGemmTempBufferSize", st);
    rc = kc_ocl_reserve(d, &o->gemm_tmp, &o->gemm_tmp_bytes, need, "clCreateBuffer (gemm)");
    if (rc) return rc;
    st = CLBlastSgemmWithTempBuffer(CLBlastLayoutRowMajor, trans(ta), trans(tb), (size_t)m,
                                    (size_t)n, (size_t)k, alpha, kc_ocl_mem(a), off[0], (size_t)lda,
                                    kc_ocl_mem(b), off[1], (size_t)ldb, beta, kc_ocl_mem(c), off[2],
                                    (size_t)ldc, &o->queue, NULL, o->gemm_tmp);
    return st == CLBlastSuccess ? KC_OK : blas_fail(d, "CLBlastSgemm", st);
}

int kc_ocl_gemm_batched(kc_device *d, int ta, int tb, int m, int n, int k, float alpha, kc_buf a,
                        int lda, size_t sa, kc_buf b, int ldb, size_t sb, float beta, kc_buf c,
                        int ldc, size_t sc, int batch) {
    if (m <= 0 || n <= 0 || batch <= 0) return KC_OK;
    if (k <= 0 || sc < (size_t)(m - 1) * (size_t)ldc + (size_t)n) {
        /* empty products, or batches of C that overlap: one product at a time */
        for (int i = 0; i < batch; i++) {
            int rc = kc_ocl_gemm(d, ta, tb, m, n, k, alpha, kc_buf_f(a, i * sa), lda,
                                 kc_buf_f(b, i * sb), ldb, beta, kc_buf_f(c, i * sc), ldc);
            if (rc) return rc;
        }
        return KC_OK;
    }
    kc_ocl *o = kc_ocl_of(d);
    size_t off[3];
    int rc = offsets(d, a, b, c, off);
    for (int i = 0; !rc && CLEAR_FOR_BETA0 && beta == 0.0f && i < batch; i++)
        rc = clear_for_beta0(d, beta, kc_buf_f(c, i * sc), ldc, (size_t)m, (size_t)n);
    if (rc) return rc;
    CLBlastStatusCode st = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, trans(ta), trans(tb), (size_t)m, (size_t)n, (size_t)k, alpha,
        kc_ocl_mem(a), off[0], (size_t)lda, sa, kc_ocl_mem(b), off[1], (size_t)ldb, sb, beta,
        kc_ocl_mem(c), off[2], (size_t)ldc, sc, (size_t)batch, &o->queue, NULL);
    return st == CLBlastSuccess ? KC_OK : blas_fail(d, "CLBlastSgemmStridedBatched", st);
}

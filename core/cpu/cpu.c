/* The cpu backend: memory, threads, elementwise, dense and dropout ops, and
 * the op table. Device memory is host memory aligned for SIMD loads. */
#include "core/cpu/cpu.h"
#include "core/rng.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define CPU_ALIGN 64

static int cpu_threads;

int kc_cpu_threads(void) {
    return cpu_threads > 0 ? cpu_threads : omp_get_max_threads();
}

/* OpenBLAS stays single-threaded and runs inside our OpenMP threads: its own
 * pthread pool spins between calls and starves the OpenMP team (and the team
 * starves it), which made 2-thread convolutions slower than 1-thread ones. */
static void blas_single_threaded(void) {
    static int done;
    if (!done) {
        openblas_set_num_threads(1);
        done = 1;
    }
}

static void cpu_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    cpu_threads = n;
    omp_set_num_threads(n);
    blas_single_threaded();
}

static void *cpu_alloc(size_t bytes) {
    size_t size = (bytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN;
    if (size < bytes) return NULL; /* overflow */
    void *p = aligned_alloc(CPU_ALIGN, size ? size : CPU_ALIGN);
    if (p) memset(p, 0, size);
    return p;
}

static void cpu_free(void *p) {
    free(p);
}

static void cpu_upload(void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
}

static void cpu_download(void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
}

static void cpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) memmove(dst, src, bytes);
}

static void cpu_fill(float *y, float v, size_t n) {
    int nt = kc_cpu_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= KC_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        y[i] = v;
}

static void cpu_scale(float *y, float a, size_t n) {
    int nt = kc_cpu_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= KC_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        y[i] *= a;
}

static void cpu_axpy(float a, const float *x, float *y, size_t n) {
    int nt = kc_cpu_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= KC_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static void cpu_mul(const float *a, const float *b, float *y, size_t n) {
    int nt = kc_cpu_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= KC_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] * b[i];
}

static void scale_rows(int m, int n, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float *cij = &c[(size_t)i * ldc + j];
            *cij = beta == 0.0f ? 0.0f : beta * *cij;
        }
}

/* Below this many multiply-adds one thread does the whole product (as in
 * cpu_igemm.c). */
#define GEMM_PAR_MIN (4.0 * 1024 * 1024)

/* Threads take contiguous blocks of rows of C (or of columns when C is wide),
 * each one an independent sgemm; the split depends only on the thread count. */
void kc_cpu_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { /* C = beta C; with beta 0, C is written without being read, as in BLAS */
        scale_rows(m, n, beta, c, ldc);
        return;
    }
    if (!tb && alpha == 1.0f) { /* the SIMD kernels, when the CPU has them */
        kc_cpu_igemm_args g = {.m = m, .n = n, .k = k, .a = a, .rs = ta ? 1 : lda, .cs = ta ? lda : 1,
                               .b = b, .ldb = ldb, .beta = beta, .c = c, .ldc = ldc};
        if (kc_cpu_igemm(&g)) return;
    }
    blas_single_threaded();
    CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;
    int nt = kc_cpu_threads();
    double work = (double)m * n * k;
    int by_rows = m >= n, span = by_rows ? m : n;
    if (nt > span) nt = span;
    if (nt <= 1 || work < GEMM_PAR_MIN) {
        cblas_sgemm(CblasRowMajor, opa, opb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), parts = omp_get_num_threads();
        int lo = (int)((long long)span * t / parts), hi = (int)((long long)span * (t + 1) / parts);
        if (hi > lo) {
            if (by_rows) /* rows of op(A) and C */
                cblas_sgemm(CblasRowMajor, opa, opb, hi - lo, n, k, alpha,
                            a + (ta ? (size_t)lo : (size_t)lo * lda), lda, b, ldb, beta,
                            c + (size_t)lo * ldc, ldc);
            else /* columns of op(B) and C */
                cblas_sgemm(CblasRowMajor, opa, opb, m, hi - lo, k, alpha, a, lda,
                            b + (tb ? (size_t)lo * ldb : (size_t)lo), ldb, beta, c + lo, ldc);
        }
    }
}

static void cpu_dropout_forward(const float *x, float *y, float *mask, size_t n, float rate,
                                uint64_t seed, uint64_t stream) {
    float keep_scale = rate < 1.0f ? 1.0f / (1.0f - rate) : 0.0f;
    int nt = kc_cpu_threads();
    /* a Philox block per element is worth threads well before the usual cutoff */
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= KC_CPU_PAR_MIN / 16)
    for (size_t i = 0; i < n; i++) {
        mask[i] = kc_rng_uniform(seed, stream, i) >= rate ? keep_scale : 0.0f;
        y[i] = x[i] * mask[i];
    }
}

static const kc_backend cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .copy = cpu_copy,
    .set_threads = cpu_set_threads,
    .fill = cpu_fill,
    .scale = cpu_scale,
    .axpy = cpu_axpy,
    .mul = cpu_mul,
    .gemm = kc_cpu_gemm,
    .bias_add = kc_cpu_bias_add,
    .bias_grad = kc_cpu_bias_grad,
    .act_forward = kc_cpu_act_forward,
    .act_backward = kc_cpu_act_backward,
    .softmax_forward = kc_cpu_softmax_forward,
    .softmax_backward = kc_cpu_softmax_backward,
    .conv2d_workspace = kc_cpu_conv2d_workspace,
    .conv2d_forward = kc_cpu_conv2d_forward,
    .conv2d_backward_data = kc_cpu_conv2d_backward_data,
    .conv2d_backward_filter = kc_cpu_conv2d_backward_filter,
    .maxpool2d_forward = kc_cpu_maxpool2d_forward,
    .maxpool2d_backward = kc_cpu_maxpool2d_backward,
    .avgpool2d_forward = kc_cpu_avgpool2d_forward,
    .avgpool2d_backward = kc_cpu_avgpool2d_backward,
    .dropout_forward = cpu_dropout_forward,
    .l1l2_penalty = kc_cpu_l1l2_penalty,
    .norm_rescale = kc_cpu_norm_rescale,
    .sgd_update = kc_cpu_sgd_update,
    .rmsprop_update = kc_cpu_rmsprop_update,
    .adam_update = kc_cpu_adam_update,
    .adagrad_update = kc_cpu_adagrad_update,
    .adadelta_update = kc_cpu_adadelta_update,
    .adamax_update = kc_cpu_adamax_update,
    .nadam_update = kc_cpu_nadam_update,
    .lion_update = kc_cpu_lion_update,
    .sum_squares = kc_cpu_sum_squares,
    .scale_div = kc_cpu_scale_div,
    .clip = kc_cpu_clip,
    .weight_decay = kc_cpu_weight_decay,
};

const kc_backend *kc_backend_cpu(void) {
    return &cpu_backend;
}

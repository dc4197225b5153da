/* The cpu backend: memory, threads, the elementwise, dense and dropout
 * kernels, and the op table. Device memory is host memory aligned for SIMD
 * loads (core/cpu/host.h); the table functions turn handles into pointers,
 * establish the device's thread count and call the kernels, which never
 * fail except for a convolution's own workspace. */
#include "core/cpu/cpu.h"
#include "core/ops.h"
#include "core/rng.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CPU_ALIGN 64

static int cpu_threads; /* of the device whose op is running; 0 = all cores */

static int all_cores(void) {
    static int cores;
    if (!cores) cores = omp_get_num_procs();
    return cores;
}

int kc_cpu_threads(void) {
    return cpu_threads > 0 ? cpu_threads : all_cores();
}

/* Every table function that reaches a kernel starts here: a store, so a
 * device's thread count may change between ops at no cost. */
static inline void use(const kc_device *d) {
    cpu_threads = d->threads;
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

/* ------------------------------------------------------------- kernels --- */

/* y[i] = stmt for i < n: threads for long loops, vector code either way
 * (GCC leaves an `omp parallel for` without simd scalar), and no parallel
 * region at all below KC_CPU_PAR_MIN, where entering one costs more than the
 * loop. */
// clang-format off
#define ELEMENTWISE(n, stmt)                                                      \
    do {                                                                          \
        int nt_ = kc_cpu_threads();                                               \
        size_t n_ = (n);                                                          \
        if (n_ < KC_CPU_PAR_MIN || nt_ < 2) {                                     \
            _Pragma("omp simd")                                                   \
            for (size_t i = 0; i < n_; i++) { stmt; }                             \
        } else {                                                                  \
            _Pragma("omp parallel for simd schedule(static) num_threads(nt_)")    \
            for (size_t i = 0; i < n_; i++) { stmt; }                             \
        }                                                                         \
    } while (0)
// clang-format on

static void fill_floats(float *y, float v, size_t n) {
    ELEMENTWISE(n, y[i] = v);
}

static void scale_floats(float *y, float a, size_t n) {
    ELEMENTWISE(n, y[i] *= a);
}

static void axpy_floats(float a, const float *x, float *y, size_t n) {
    ELEMENTWISE(n, y[i] += a * x[i]);
}

static void mul_floats(const float *a, const float *b, float *y, size_t n) {
    ELEMENTWISE(n, y[i] = a[i] * b[i]);
}

static void scale_rows(int m, int n, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float *cij = &c[(size_t)i * ldc + j];
            *cij = beta == 0.0f ? 0.0f : beta * *cij;
        }
}

/* The SIMD kernels read B as k rows of n floats: a transposed B, or one
 * scaled by alpha, is first copied that way (alpha B, so alpha costs one
 * rounding of each element of B) into a buffer of the calling thread, grown
 * to the largest B it has seen and kept, so steady training allocates
 * nothing. The copy is the same for every thread count. */
static _Thread_local float *pack_buf;
static _Thread_local size_t pack_cap;

/* op(B) alpha as a k x n matrix, or NULL when the buffer cannot grow. */
static const float *packed_b(int tb, int k, int n, float alpha, const float *b, int ldb) {
    size_t need = (size_t)k * (size_t)n;
    if (need > pack_cap) {
        if (need > SIZE_MAX / sizeof(float) - CPU_ALIGN) return NULL;
        float *p = aligned_alloc(CPU_ALIGN,
                                 (need * sizeof(float) + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN);
        if (!p) return NULL;
        free(pack_buf);
        pack_buf = p;
        pack_cap = need;
    }
    if (tb) {
        if (!kc_cpu_pack_transposed(k, n, alpha, b, ldb, pack_buf)) return NULL;
    } else {
        for (int q = 0; q < k; q++) {
            const float *bq = b + (size_t)q * ldb;
            float *pq = pack_buf + (size_t)q * n;
#pragma omp simd
            for (int j = 0; j < n; j++)
                pq[j] = alpha * bq[j];
        }
    }
    return pack_buf;
}

/* Below this many multiply-adds one thread does the whole product (as in
 * cpu_igemm.c). */
#define GEMM_PAR_MIN (4.0 * 1024 * 1024)

/* With AVX2 or AVX-512 every product runs on kc_cpu_igemm (its B packed
 * first when transposed or scaled), whose bits do not depend on the thread
 * count. Otherwise threads take contiguous blocks of rows of C (or of
 * columns when C is wide), each one an independent sgemm; the split depends
 * only on the thread count. */
void kc_cpu_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { /* C = beta C; with beta 0, C is written without being read, as in BLAS */
        scale_rows(m, n, beta, c, ldc);
        return;
    }
    if (kc_cpu_isa() != KC_CPU_PORTABLE) { /* the SIMD kernels */
        int plain = !tb && alpha == 1.0f;
        kc_cpu_igemm_args g = {.m = m,
                               .n = n,
                               .k = k,
                               .a = a,
                               .rs = ta ? 1 : lda,
                               .cs = ta ? lda : 1,
                               .b = plain ? b : packed_b(tb, k, n, alpha, b, ldb),
                               .ldb = plain ? ldb : n,
                               .beta = beta,
                               .c = c,
                               .ldc = ldc};
        if (g.b && kc_cpu_igemm(&g)) return;
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

/* Products too small for threads of their own (kc_cpu_gemm keeps each on one
 * thread below GEMM_PAR_MIN) run side by side, one per thread; larger ones
 * run in turn, each split by kc_cpu_gemm. Either way each product is the one
 * kc_cpu_gemm computes alone. */
static void gemm_batched(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                         size_t sa, const float *b, int ldb, size_t sb, float beta, float *c,
                         int ldc, size_t sc, int batch) {
    int nt = kc_cpu_threads();
    if ((double)m * n * (k > 0 ? k : 1) >= GEMM_PAR_MIN || nt < 2 || batch < 2) {
        for (int i = 0; i < batch; i++)
            kc_cpu_gemm(ta, tb, m, n, k, alpha, a + i * sa, lda, b + i * sb, ldb, beta, c + i * sc,
                        ldc);
        return;
    }
    blas_single_threaded();
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int i = 0; i < batch; i++)
        kc_cpu_gemm(ta, tb, m, n, k, alpha, a + i * sa, lda, b + i * sb, ldb, beta, c + i * sc,
                    ldc);
}

static void dropout_floats(const float *x, float *y, float *mask, size_t n, float rate,
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

/* ------------------------------------------------------------ lifetime --- */

static const char cpu_description[] =
    "OpenMP threads, AVX2/AVX-512 kernels where the CPU has them, OpenBLAS";

static int cpu_open(kc_device *d, const kc_device_opts *o) {
    if (o->device != 0)
        return kc_device_fail(d, KC_ECONFIG, "the cpu backend has one device (0), not %d",
                              o->device);
    snprintf(d->name, sizeof d->name, "cpu");
    blas_single_threaded();
    return KC_OK;
}

static void cpu_close(kc_device *d) {
    (void)d;
}

static int cpu_list_devices(char *buf, size_t n) {
    static const char *const isa[] = {"portable", "AVX2", "AVX-512"};
    char line[96];
    snprintf(line, sizeof line, "host CPU, %d cores, %s kernels", all_cores(), isa[kc_cpu_isa()]);
    return kc_host_list_devices(line, buf, n);
}

/* -------------------------------------------------------------- memory --- */

static int cpu_alloc(kc_device *d, size_t bytes, kc_buf *out) {
    (void)d;
    *out = KC_BUF_NULL;
    size_t size = (bytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN;
    if (size < bytes) return KC_ERUNTIME; /* overflow */
    void *p = aligned_alloc(CPU_ALIGN, size ? size : CPU_ALIGN);
    if (!p) return KC_ERUNTIME;
    memset(p, 0, size ? size : CPU_ALIGN);
    *out = kc_host_buf(p);
    return KC_OK;
}

/* Large copies are split by rows: one core does not saturate memory. */
#define COPY_PAR_MIN ((size_t)1 << 20)

static int cpu_copy2d(kc_device *d, kc_buf dst, size_t ldd, kc_buf src, size_t lds, size_t rows,
                      size_t cols) {
    use(d);
    char *to = kc_host_ptr(dst);
    const char *from = kc_host_ptr(src);
    int nt = kc_cpu_threads();
    if (rows * cols < COPY_PAR_MIN || nt < 2 || rows < 2) {
        kc_host_copy_rows(to, ldd, from, lds, 0, rows, cols);
        return KC_OK;
    }
#pragma omp parallel num_threads(nt)
    {
        size_t t = (size_t)omp_get_thread_num(), p = (size_t)omp_get_num_threads();
        size_t lo = rows * t / p, hi = rows * (t + 1) / p;
        if (hi > lo) kc_host_copy_rows(to, ldd, from, lds, lo, hi, cols);
    }
    return KC_OK;
}

static int cpu_copy_strided(kc_device *d, kc_copy_mode mode, const kc_copy_desc *g, kc_buf src,
                            kc_buf dst) {
    use(d);
    kc_cpu_copy_strided(mode, g, kc_host_ptr(src), kc_host_ptr(dst));
    return KC_OK;
}

/* ---------------------------------------------------------- primitives --- */

#define F kc_host_f

static int cpu_fill(kc_device *d, kc_buf y, float v, size_t n) {
    use(d);
    fill_floats(F(y), v, n);
    return KC_OK;
}

static int cpu_scale(kc_device *d, kc_buf y, float a, size_t n) {
    use(d);
    scale_floats(F(y), a, n);
    return KC_OK;
}

static int cpu_axpy(kc_device *d, float a, kc_buf x, kc_buf y, size_t n) {
    use(d);
    axpy_floats(a, F(x), F(y), n);
    return KC_OK;
}

static int cpu_unary(kc_device *d, kc_unary_op op, float a, kc_buf x, kc_buf y, size_t n) {
    use(d);
    kc_cpu_unary(op, a, F(x), F(y), n);
    return KC_OK;
}

static int cpu_binary(kc_device *d, kc_binary_op op, const kc_bcast *g, kc_buf a, kc_buf b,
                      kc_buf y) {
    use(d);
    kc_cpu_binary(op, g, F(a), F(b), F(y));
    return KC_OK;
}

static int cpu_select(kc_device *d, kc_buf cond, kc_buf a, kc_buf b, kc_buf y, size_t n) {
    use(d);
    kc_cpu_select(F(cond), F(a), F(b), F(y), n);
    return KC_OK;
}

static int cpu_reduce(kc_device *d, kc_reduce_op op, const kc_reduce_desc *g, float alpha, kc_buf x,
                      float beta, kc_buf y) {
    use(d);
    kc_cpu_reduce(op, g, alpha, F(x), beta, F(y));
    return KC_OK;
}

static int cpu_gemm(kc_device *d, int ta, int tb, int m, int n, int k, float alpha, kc_buf a,
                    int lda, kc_buf b, int ldb, float beta, kc_buf c, int ldc) {
    use(d);
    kc_cpu_gemm(ta, tb, m, n, k, alpha, F(a), lda, F(b), ldb, beta, F(c), ldc);
    return KC_OK;
}

static int cpu_act_forward(kc_device *d, kc_act act, float alpha, kc_buf x, kc_buf y, size_t n) {
    use(d);
    kc_cpu_act_forward(act, alpha, F(x), F(y), n);
    return KC_OK;
}

static int cpu_act_backward(kc_device *d, kc_act act, float alpha, kc_buf x, kc_buf y, kc_buf dy,
                            kc_buf dx, size_t n) {
    use(d);
    kc_cpu_act_backward(act, alpha, F(x), F(y), F(dy), F(dx), n);
    return KC_OK;
}

static int cpu_dropout_forward(kc_device *d, kc_buf x, kc_buf y, kc_buf mask, size_t n, float rate,
                               uint64_t seed, uint64_t stream) {
    use(d);
    dropout_floats(F(x), F(y), F(mask), n, rate, seed, stream);
    return KC_OK;
}

/* the same expression as the reference backend's, so the same bits */
static int cpu_rng_normal(kc_device *d, kc_buf y, size_t n, float mean, float stddev, uint64_t seed,
                          uint64_t stream) {
    use(d);
    float *v = F(y);
    int nt = kc_cpu_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= KC_CPU_PAR_MIN / 16)
    for (size_t i = 0; i < n; i++)
        v[i] = (float)((double)mean + (double)stddev * kc_rng_normal(seed, stream, i));
    return KC_OK;
}

static int no_output(kc_device *d, const char *op) {
    return kc_device_fail(d, KC_ECONFIG, "cpu backend: %s without an output buffer", op);
}

static int cpu_l1l2_penalty(kc_device *d, kc_buf x, kc_buf g, size_t n, float l1, float l2,
                            kc_buf out) {
    if (!kc_buf_ok(out)) return no_output(d, "l1l2_penalty");
    use(d);
    kc_host_add_double(out, kc_cpu_l1l2_penalty(F(x), F(g), n, l1, l2));
    return KC_OK;
}

static int cpu_sum_squares(kc_device *d, kc_buf x, size_t n, kc_buf out) {
    if (!kc_buf_ok(out)) return no_output(d, "sum_squares");
    use(d);
    kc_host_add_double(out, kc_cpu_sum_squares(F(x), n));
    return KC_OK;
}

/* ----------------------------------------------------------- fused ops --- */

static int cpu_mul(kc_device *d, kc_buf a, kc_buf b, kc_buf y, size_t n) {
    use(d);
    mul_floats(F(a), F(b), F(y), n);
    return KC_OK;
}

static int cpu_bias_add(kc_device *d, kc_buf y, kc_buf b, int rows, int cols) {
    use(d);
    kc_cpu_bias_add(F(y), F(b), rows, cols);
    return KC_OK;
}

static int cpu_bias_grad(kc_device *d, kc_buf db, kc_buf dy, int rows, int cols, float beta) {
    use(d);
    kc_cpu_bias_grad(F(db), F(dy), rows, cols, beta);
    return KC_OK;
}

static int cpu_gemm_batched(kc_device *d, int ta, int tb, int m, int n, int k, float alpha,
                            kc_buf a, int lda, size_t sa, kc_buf b, int ldb, size_t sb, float beta,
                            kc_buf c, int ldc, size_t sc, int batch) {
    use(d);
    gemm_batched(ta, tb, m, n, k, alpha, F(a), lda, sa, F(b), ldb, sb, beta, F(c), ldc, sc, batch);
    return KC_OK;
}

static int cpu_softmax_forward(kc_device *d, kc_buf x, kc_buf y, int rows, int cols) {
    use(d);
    kc_cpu_softmax_forward(F(x), F(y), rows, cols);
    return KC_OK;
}

static int cpu_softmax_backward(kc_device *d, kc_buf y, kc_buf dy, kc_buf dx, int rows, int cols) {
    use(d);
    kc_cpu_softmax_backward(F(y), F(dy), F(dx), rows, cols);
    return KC_OK;
}

static size_t cpu_conv2d_workspace(const kc_device *d, const kc_conv2d_desc *g) {
    (void)d;
    return kc_cpu_conv2d_workspace(g);
}

/* Reached only when the caller passed no workspace and the kernel could not
 * allocate one. */
static int no_workspace(kc_device *d, const kc_conv2d_desc *g) {
    return kc_device_fail(d, KC_ERUNTIME,
                          "cpu backend: out of memory for a %zu-byte convolution workspace",
                          kc_cpu_conv2d_workspace(g));
}

static int cpu_conv2d_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w, kc_buf y,
                              kc_buf ws) {
    use(d);
    if (kc_cpu_conv2d_forward(g, F(x), F(w), F(y), kc_host_ptr(ws))) return no_workspace(d, g);
    return KC_OK;
}

static int cpu_conv2d_backward_data(kc_device *d, const kc_conv2d_desc *g, kc_buf dy, kc_buf w,
                                    kc_buf dx, kc_buf ws) {
    use(d);
    if (kc_cpu_conv2d_backward_data(g, F(dy), F(w), F(dx), kc_host_ptr(ws)))
        return no_workspace(d, g);
    return KC_OK;
}

static int cpu_conv2d_backward_filter(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf dy,
                                      kc_buf dw, float beta, kc_buf ws) {
    use(d);
    if (kc_cpu_conv2d_backward_filter(g, F(x), F(dy), F(dw), beta, kc_host_ptr(ws)))
        return no_workspace(d, g);
    return KC_OK;
}

static int cpu_maxpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y,
                                 kc_buf argmax) {
    use(d);
    kc_cpu_maxpool2d_forward(g, F(x), F(y), kc_host_i32(argmax));
    return KC_OK;
}

static int cpu_maxpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf argmax,
                                  kc_buf dx) {
    use(d);
    kc_cpu_maxpool2d_backward(g, F(dy), kc_host_i32(argmax), F(dx));
    return KC_OK;
}

static int cpu_avgpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y) {
    use(d);
    kc_cpu_avgpool2d_forward(g, F(x), F(y));
    return KC_OK;
}

static int cpu_avgpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf dx) {
    use(d);
    kc_cpu_avgpool2d_backward(g, F(dy), F(dx));
    return KC_OK;
}

static int cpu_norm_rescale(kc_device *d, kc_buf w, const int64_t *dims, int rank, unsigned reduce,
                            float lo, float hi, float rate, float eps) {
    use(d);
    kc_cpu_norm_rescale(F(w), dims, rank, reduce, lo, hi, rate, eps);
    return KC_OK;
}

static int cpu_scale_div(kc_device *d, kc_buf x, kc_buf y, float a, float b, size_t n) {
    use(d);
    kc_cpu_scale_div(F(x), F(y), a, b, n);
    return KC_OK;
}

static int cpu_clip(kc_device *d, kc_buf x, kc_buf y, float lo, float hi, size_t n) {
    use(d);
    kc_cpu_clip(F(x), F(y), lo, hi, n);
    return KC_OK;
}

static int cpu_weight_decay(kc_device *d, kc_buf w, float wd, float lr, size_t n) {
    use(d);
    kc_cpu_weight_decay(F(w), wd, lr, n);
    return KC_OK;
}

static int cpu_sgd_update(kc_device *d, kc_buf w, kc_buf g, kc_buf v, size_t n, float lr,
                          float momentum, int nesterov) {
    use(d);
    kc_cpu_sgd_update(F(w), F(g), F(v), n, lr, momentum, nesterov);
    return KC_OK;
}

static int cpu_rmsprop_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ms, kc_buf mg, kc_buf mom,
                              size_t n, float lr, float rho, float one_minus_rho, float momentum,
                              float eps, int centered) {
    use(d);
    kc_cpu_rmsprop_update(F(w), F(g), F(ms), F(mg), F(mom), n, lr, rho, one_minus_rho, momentum,
                          eps, centered);
    return KC_OK;
}

static int cpu_adam_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, kc_buf vhat,
                           size_t n, float alpha, float one_minus_b1, float one_minus_b2, float eps,
                           int amsgrad) {
    use(d);
    kc_cpu_adam_update(F(w), F(g), F(m), F(v), F(vhat), n, alpha, one_minus_b1, one_minus_b2, eps,
                       amsgrad);
    return KC_OK;
}

static int cpu_adagrad_update(kc_device *d, kc_buf w, kc_buf g, kc_buf acc, size_t n, float lr,
                              float eps) {
    use(d);
    kc_cpu_adagrad_update(F(w), F(g), F(acc), n, lr, eps);
    return KC_OK;
}

static int cpu_adadelta_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ag, kc_buf ad, size_t n,
                               float lr, float rho, float one_minus_rho, float eps) {
    use(d);
    kc_cpu_adadelta_update(F(w), F(g), F(ag), F(ad), n, lr, rho, one_minus_rho, eps);
    return KC_OK;
}

static int cpu_adamax_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf u, size_t n,
                             float lr, float one_minus_b1, float b2, float one_minus_b1_power,
                             float eps) {
    use(d);
    kc_cpu_adamax_update(F(w), F(g), F(m), F(u), n, lr, one_minus_b1, b2, one_minus_b1_power, eps);
    return KC_OK;
}

static int cpu_nadam_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, size_t n,
                            const kc_nadam_coef *c) {
    use(d);
    kc_cpu_nadam_update(F(w), F(g), F(m), F(v), n, c);
    return KC_OK;
}

static int cpu_lion_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, size_t n, float lr, float b1,
                           float b2) {
    use(d);
    kc_cpu_lion_update(F(w), F(g), F(m), n, lr, b1, b2);
    return KC_OK;
}

static int cpu_depthwise_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w,
                                 kc_buf y) {
    use(d);
    kc_cpu_depthwise_conv2d_forward(g, F(x), F(w), F(y));
    return KC_OK;
}

static int cpu_depthwise_backward_data(kc_device *d, const kc_conv2d_desc *g, kc_buf dy, kc_buf w,
                                       kc_buf dx) {
    use(d);
    kc_cpu_depthwise_conv2d_backward_data(g, F(dy), F(w), F(dx));
    return KC_OK;
}

static int cpu_depthwise_backward_filter(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf dy,
                                         kc_buf dw, float beta) {
    use(d);
    if (kc_cpu_depthwise_conv2d_backward_filter(g, F(x), F(dy), F(dw), beta))
        return kc_device_fail(d, KC_ERUNTIME,
                              "cpu backend: out of memory for a depthwise filter gradient");
    return KC_OK;
}

static int cpu_embedding_invalid(kc_device *d, const float *ids, size_t n, size_t rows) {
    size_t bad = kc_cpu_embedding_first_invalid(ids, n, rows);
    if (bad == n) return KC_OK;
    return kc_device_fail(d, KC_ERUNTIME,
                          "embedding: id %.9g at position %zu is not a whole number in [0, %zu)",
                          ids[bad], bad, rows);
}

static int cpu_embedding_forward(kc_device *d, kc_buf ids, kc_buf w, kc_buf y, size_t n,
                                 size_t rows, size_t dim) {
    use(d);
    kc_cpu_embedding_forward(F(ids), F(w), F(y), n, rows, dim);
    return cpu_embedding_invalid(d, F(ids), n, rows);
}

static int cpu_embedding_backward(kc_device *d, kc_buf ids, kc_buf dy, kc_buf dw, size_t n,
                                  size_t rows, size_t dim) {
    use(d);
    kc_cpu_embedding_backward(F(ids), F(dy), F(dw), n, rows, dim);
    return cpu_embedding_invalid(d, F(ids), n, rows);
}

const kc_backend kc_cpu_backend = {
    .name = "cpu",
    .description = cpu_description,
    .open = cpu_open,
    .close = cpu_close,
    .list_devices = cpu_list_devices,
    .synchronize = kc_host_synchronize,
    .alloc = cpu_alloc,
    .free = kc_host_free,
    .upload = kc_host_upload,
    .download = kc_host_download,
    .copy = kc_host_copy,
    .copy2d = cpu_copy2d,
    .copy_strided = cpu_copy_strided,
    .fill = cpu_fill,
    .scale = cpu_scale,
    .axpy = cpu_axpy,
    .unary = cpu_unary,
    .binary = cpu_binary,
    .select = cpu_select,
    .reduce = cpu_reduce,
    .gemm = cpu_gemm,
    .act_forward = cpu_act_forward,
    .act_backward = cpu_act_backward,
    .dropout_forward = cpu_dropout_forward,
    .l1l2_penalty = cpu_l1l2_penalty,
    .sum_squares = cpu_sum_squares,
    .mul = cpu_mul,
    .bias_add = cpu_bias_add,
    .bias_grad = cpu_bias_grad,
    .gemm_batched = cpu_gemm_batched,
    .softmax_forward = cpu_softmax_forward,
    .softmax_backward = cpu_softmax_backward,
    .conv2d_workspace = cpu_conv2d_workspace,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward_data = cpu_conv2d_backward_data,
    .conv2d_backward_filter = cpu_conv2d_backward_filter,
    .maxpool2d_forward = cpu_maxpool2d_forward,
    .maxpool2d_backward = cpu_maxpool2d_backward,
    .avgpool2d_forward = cpu_avgpool2d_forward,
    .avgpool2d_backward = cpu_avgpool2d_backward,
    .norm_rescale = cpu_norm_rescale,
    .scale_div = cpu_scale_div,
    .clip = cpu_clip,
    .weight_decay = cpu_weight_decay,
    .sgd_update = cpu_sgd_update,
    .rmsprop_update = cpu_rmsprop_update,
    .adam_update = cpu_adam_update,
    .adagrad_update = cpu_adagrad_update,
    .adadelta_update = cpu_adadelta_update,
    .adamax_update = cpu_adamax_update,
    .nadam_update = cpu_nadam_update,
    .lion_update = cpu_lion_update,
    .rng_normal = cpu_rng_normal,
    .depthwise_conv2d_forward = cpu_depthwise_forward,
    .depthwise_conv2d_backward_data = cpu_depthwise_backward_data,
    .depthwise_conv2d_backward_filter = cpu_depthwise_backward_filter,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
};

/* Vectorised elementwise kernels of the cpu backend: ReLU and its gradient,
 * bias add and bias gradient. Written with GCC vector extensions (16 floats
 * per step, the tail one by one); each function is cloned per instruction
 * set and the loader picks the best clone for the CPU. Selections are bitwise
 * (x > 0 keeps x, anything else - negative, zero, NaN - gives +0), so every
 * clone computes the same bits as the scalar definitions. */
#include "core/cpu/cpu.h"

#include <omp.h>
#include <string.h>

/* the helpers are inlined into the clones, never called across an ABI boundary */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));

#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

static inline v16f ld16(const float *p) {
    v16f v;
    memcpy(&v, p, sizeof v);
    return v;
}

#define ST16(p, v)                                                                                 \
    do {                                                                                           \
        v16f st_ = (v);                                                                            \
        memcpy((p), &st_, sizeof st_);                                                             \
    } while (0)

/* v where x > 0, else +0 (a macro: vectors are not passed by value across calls) */
#define KEEP_POSITIVE(x, v) ((v16f)((v16i)(v) & ((x) > (v16f){0})))

CLONES static void relu_span(const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v16f v = ld16(x + i);
        ST16(y + i, KEEP_POSITIVE(v, v));
    }
    for (; i < n; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

CLONES static void relu_grad_span(const float *x, const float *dy, float *dx, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        ST16(dx + i, KEEP_POSITIVE(ld16(x + i), ld16(dy + i)));
    for (; i < n; i++)
        dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

/* Spans of at least this many floats go to separate threads. */
#define SPAN_MIN (KC_CPU_PAR_MIN / 2)

/* Splits [0, n) into one contiguous span per thread, aligned to 16 floats. */
#define SPLIT(n, body)                                                                             \
    do {                                                                                           \
        int nt_ = kc_cpu_threads();                                                                \
        size_t n_ = (n);                                                                           \
        if ((size_t)nt_ * SPAN_MIN > n_) nt_ = (int)(n_ / SPAN_MIN);                               \
        if (nt_ < 1) nt_ = 1;                                                                      \
        _Pragma("omp parallel num_threads(nt_) if (nt_ > 1)") {                                    \
            int t_ = omp_get_thread_num(), p_ = omp_get_num_threads();                             \
            size_t lo = n_ / 16 * t_ / p_ * 16,                                                    \
                   hi = t_ == p_ - 1 ? n_ : n_ / 16 * (t_ + 1) / p_ * 16;                          \
            if (hi > lo) {                                                                         \
                body;                                                                              \
            }                                                                                      \
        }                                                                                          \
    } while (0)

void kc_cpu_relu_forward(const float *x, float *y, size_t n) {
    SPLIT(n, relu_span(x + lo, y + lo, hi - lo));
}

void kc_cpu_relu_backward(const float *x, const float *dy, float *dx, size_t n) {
    SPLIT(n, relu_grad_span(x + lo, dy + lo, dx + lo, hi - lo));
}

CLONES static void bias_add_rows(float *y, const float *b, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        float *yr = y + (size_t)r * cols;
        int j = 0;
        for (; j + 16 <= cols; j += 16)
            ST16(yr + j, ld16(yr + j) + ld16(b + j));
        for (; j < cols; j++)
            yr[j] += b[j];
    }
}

void kc_cpu_bias_add(float *y, const float *b, int rows, int cols) {
    if (rows <= 0 || cols <= 0) return;
    int nt = kc_cpu_threads();
    size_t total = (size_t)rows * (size_t)cols;
    if ((size_t)nt * SPAN_MIN > total) nt = (int)(total / SPAN_MIN);
    if (nt < 1) nt = 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), p = omp_get_num_threads();
        int lo = (int)((long long)rows * t / p), hi = (int)((long long)rows * (t + 1) / p);
        if (hi > lo) bias_add_rows(y + (size_t)lo * cols, b, hi - lo, cols);
    }
}

/* Sums rows [0, rows) of the first 8 nq columns of dy into acc, top to
 * bottom, in double. Inlined with a constant nq, the sums stay in registers
 * for the whole pass instead of going through memory at every row. */
static inline __attribute__((always_inline)) void column_groups(const float *dy, int rows, int cols,
                                                                int nq, double *acc) {
    v8d a[KC_CPU_BIAS_BLOCK / 8];
    memcpy(a, acc, (size_t)nq * sizeof *a);
    for (int r = 0; r < rows; r++) {
        const float *row = dy + (size_t)r * cols;
#pragma GCC unroll 8
        for (int q = 0; q < nq; q++) {
            v8f f;
            memcpy(&f, row + 8 * q, sizeof f);
            a[q] += __builtin_convertvector(f, v8d);
        }
    }
    memcpy(acc, a, (size_t)nq * sizeof *a);
}

/* Sums rows [0, rows) of width columns (width <= KC_CPU_BIAS_BLOCK) of dy
 * into acc, top to bottom, in double: whole groups of 8 columns first, then
 * the rest one by one (each column's order is the same either way). */
CLONES static void column_sums(const float *dy, int rows, int cols, int width, double *acc) {
    int nq = width / 8, q = 0; /* nq <= 8 groups, taken 8, 4, 2 and 1 at a time */
    if (nq & 8) column_groups(dy, rows, cols, 8, acc), q += 8;
    if (nq & 4) column_groups(dy + 8 * q, rows, cols, 4, acc + 8 * q), q += 4;
    if (nq & 2) column_groups(dy + 8 * q, rows, cols, 2, acc + 8 * q), q += 2;
    if (nq & 1) column_groups(dy + 8 * q, rows, cols, 1, acc + 8 * q);
    for (int j = width / 8 * 8; j < width; j++) {
        double s = acc[j];
        for (int r = 0; r < rows; r++)
            s += dy[(size_t)r * cols + j];
        acc[j] = s;
    }
}

/* Column blocks go to threads; each column sums its rows top to bottom in
 * double, so the result does not depend on the thread count nor on how the
 * columns are split. A narrow gradient (a first convolution's 32 filters)
 * is split into blocks of 16 columns so that every thread still has some. */
void kc_cpu_bias_grad(float *db, const float *dy, int rows, int cols, float beta) {
    if (cols <= 0) return;
    int nt = kc_cpu_threads();
    size_t total = (size_t)(rows > 0 ? rows : 0) * (size_t)cols;
    int bw = KC_CPU_BIAS_BLOCK;
    if (total >= KC_CPU_PAR_MIN && nt > 1 && (cols + bw - 1) / bw < nt) {
        int per = (cols + nt - 1) / nt;
        bw = (per + 15) / 16 * 16;
        if (bw > KC_CPU_BIAS_BLOCK) bw = KC_CPU_BIAS_BLOCK;
    }
    int blocks = (cols + bw - 1) / bw;
#pragma omp parallel for schedule(static) num_threads(nt) if (total >= KC_CPU_PAR_MIN && blocks > 1)
    for (int blk = 0; blk < blocks; blk++) {
        int j0 = blk * bw;
        int width = cols - j0 < bw ? cols - j0 : bw;
        double acc[KC_CPU_BIAS_BLOCK] = {0};
        if (rows > 0) column_sums(dy + j0, rows, cols, width, acc);
        for (int j = 0; j < width; j++) {
            double prev = beta == 0.0f ? 0.0 : (double)beta * db[j0 + j];
            db[j0 + j] = (float)(prev + acc[j]);
        }
    }
}

/* Embedding lookup (core/backend.h): a row copy per id forward; backward,
 * each thread owns a range of rows of dw and walks every id in order, adding
 * the ones in its range, so each row is summed in increasing position by one
 * thread: the reference's bits on every thread count, and rows no id names
 * stay untouched. */
#include "core/cpu/cpu.h"

#include <math.h>
#include <omp.h>
#include <string.h>

static inline long long row_of(float v, size_t rows) {
    if (!(v >= 0.0f) || floorf(v) != v || (double)v >= (double)rows) return -1;
    return (long long)v;
}

size_t kc_cpu_embedding_first_invalid(const float *ids, size_t n, size_t rows) {
    for (size_t i = 0; i < n; i++)
        if (row_of(ids[i], rows) < 0) return i;
    return n;
}

void kc_cpu_embedding_forward(const float *ids, const float *w, float *y, size_t n, size_t rows,
                              size_t dim) {
    int nt = kc_cpu_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (n * dim >= KC_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        long long r = row_of(ids[i], rows);
        if (r < 0)
            memset(y + i * dim, 0, dim * sizeof(float));
        else
            memcpy(y + i * dim, w + (size_t)r * dim, dim * sizeof(float));
    }
}

static void add_row(float *restrict dst, const float *restrict src, size_t dim) {
    for (size_t j = 0; j < dim; j++)
        dst[j] += src[j];
}

/* rows [lo, hi) of dw */
static void backward_range(const float *ids, const float *dy, float *dw, size_t n, size_t rows,
                           size_t dim, size_t lo, size_t hi) {
    for (size_t i = 0; i < n; i++) {
        long long r = row_of(ids[i], rows);
        if (r >= (long long)lo && r < (long long)hi)
            add_row(dw + (size_t)r * dim, dy + i * dim, dim);
    }
}

void kc_cpu_embedding_backward(const float *ids, const float *dy, float *dw, size_t n, size_t rows,
                               size_t dim) {
    int nt = kc_cpu_threads();
    if (n * dim < KC_CPU_PAR_MIN || rows < 2 || nt < 2) {
        backward_range(ids, dy, dw, n, rows, dim, 0, rows);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        size_t t = (size_t)omp_get_thread_num(), team = (size_t)omp_get_num_threads();
        size_t per = rows / team, extra = rows % team;
        size_t lo = t * per + (t < extra ? t : extra);
        size_t hi = lo + per + (t < extra ? 1 : 0);
        backward_range(ids, dy, dw, n, rows, dim, lo, hi);
    }
}

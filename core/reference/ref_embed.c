/* Embedding lookup (core/backend.h) on host pointers: the definition the
 * other backends are held to. */
#include "core/reference/ref.h"

#include <math.h>
#include <string.h>

/* A whole number in [0, rows): its row, else -1. */
static long long row_of(float v, size_t rows) {
    if (!(v >= 0.0f) || floorf(v) != v || (double)v >= (double)rows) return -1;
    return (long long)v;
}

size_t kc_ref_embedding_first_invalid(const float *ids, size_t n, size_t rows) {
    for (size_t i = 0; i < n; i++)
        if (row_of(ids[i], rows) < 0) return i;
    return n;
}

void kc_ref_embedding_forward(const float *ids, const float *w, float *y, size_t n, size_t rows,
                              size_t dim) {
    for (size_t i = 0; i < n; i++) {
        long long r = row_of(ids[i], rows);
        for (size_t j = 0; j < dim; j++)
            y[i * dim + j] = r < 0 ? 0.0f : w[(size_t)r * dim + j];
    }
}

void kc_ref_embedding_backward(const float *ids, const float *dy, float *dw, size_t n, size_t rows,
                               size_t dim) {
    for (size_t i = 0; i < n; i++) {
        long long r = row_of(ids[i], rows);
        if (r < 0) continue;
        for (size_t j = 0; j < dim; j++)
            dw[(size_t)r * dim + j] += dy[i * dim + j];
    }
}

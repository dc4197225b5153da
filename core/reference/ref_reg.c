/* The reference backend's weight penalty and norm projection: plain loops in
 * the order the backend contract spells out (core/backend.h). */
#include "core/reference/ref.h"

#include <math.h>

/* g += l1 sign(x) + (2 l2) x; a zero factor's term is left out, as Keras
 * leaves it out of the penalty (so an infinite weight adds no 0 * inf). */
static void add_penalty_grad(const float *x, float *g, size_t n, float l1, float l2) {
    float l2x2 = 2.0f * l2;
    if (l1 != 0.0f && l2 != 0.0f) {
        for (size_t i = 0; i < n; i++)
            g[i] += l1 * (float)((x[i] > 0.0f) - (x[i] < 0.0f)) + l2x2 * x[i];
    } else if (l1 != 0.0f) {
        for (size_t i = 0; i < n; i++)
            g[i] += l1 * (float)((x[i] > 0.0f) - (x[i] < 0.0f));
    } else if (l2 != 0.0f) {
        for (size_t i = 0; i < n; i++)
            g[i] += l2x2 * x[i];
    }
}

double kc_ref_l1l2_penalty(const float *x, float *g, size_t n, float l1, float l2) {
    size_t block = (n + KC_PENALTY_BLOCKS - 1) / KC_PENALTY_BLOCKS;
    double abs_total = 0.0, sq_total = 0.0;
    for (size_t b = 0; b < KC_PENALTY_BLOCKS && b * block < n; b++) {
        size_t lo = b * block, hi = lo + block < n ? lo + block : n;
        double sa = 0.0, sq = 0.0;
        for (size_t i = lo; i < hi; i++) {
            sa += fabs((double)x[i]);
            sq += (double)x[i] * x[i];
        }
        abs_total += sa;
        sq_total += sq;
    }
    if (g) add_penalty_grad(x, g, n, l1, l2);
    double penalty = 0.0;
    if (l1 != 0.0f) penalty += (double)l1 * abs_total;
    if (l2 != 0.0f) penalty += (double)l2 * sq_total;
    return penalty;
}

static float norm_factor(double sum_sq, float lo, float hi, float rate, float eps) {
    float norm = (float)sqrt(sum_sq);
    float c = norm > lo ? norm : lo;
    c = c < hi ? c : hi;
    return (rate * c + (1.0f - rate) * norm) / (eps + norm);
}

/* Offset of the idx-th element (row-major) of the sub-grid spanned by the
 * axes whose bit in `mask` equals `want`. */
static int64_t sub_offset(int64_t idx, const int64_t *dims, const int64_t *stride, int rank,
                          unsigned mask, unsigned want) {
    int64_t off = 0;
    for (int a = rank - 1; a >= 0; a--) {
        if (((mask >> a) & 1u) != want) continue;
        off += (idx % dims[a]) * stride[a];
        idx /= dims[a];
    }
    return off;
}

void kc_ref_norm_rescale(float *w, const int64_t *dims, int rank, unsigned reduce, float lo,
                         float hi, float rate, float eps) {
    int64_t stride[8], slices = 1, span = 1, s = 1;
    for (int a = rank - 1; a >= 0; a--) {
        stride[a] = s;
        s *= dims[a];
        if ((reduce >> a) & 1u)
            span *= dims[a];
        else
            slices *= dims[a];
    }
    for (int64_t k = 0; k < slices; k++) {
        int64_t base = sub_offset(k, dims, stride, rank, reduce, 0u);
        double sum_sq = 0.0;
        for (int64_t r = 0; r < span; r++) {
            float v = w[base + sub_offset(r, dims, stride, rank, reduce, 1u)];
            sum_sq += (double)v * v;
        }
        float f = norm_factor(sum_sq, lo, hi, rate, eps);
        for (int64_t r = 0; r < span; r++)
            w[base + sub_offset(r, dims, stride, rank, reduce, 1u)] *= f;
    }
}

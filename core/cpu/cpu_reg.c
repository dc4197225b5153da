/* The cpu backend's weight penalty and norm projection. Both follow the
 * reference backend's order of operations exactly (core/backend.h), so their
 * results match it bit for bit whatever the thread count: the penalty's
 * blocks are summed by one thread each and combined in order, and each norm
 * slice is summed by one thread from its first element to its last. */
#include "core/cpu/cpu.h"

#include <math.h>
#include <omp.h>

/* Blocks summed side by side: each block still adds its elements in order
 * (the contract's bits), but the independent sums keep the adders busy. */
#define LANES 8

static void block_sums(const float *x, size_t n, size_t block, int b0, double *sa, double *sq) {
    size_t len[LANES], common = block;
    for (int k = 0; k < LANES; k++) {
        size_t lo = (size_t)(b0 + k) * block, hi = lo + block < n ? lo + block : n;
        len[k] = hi > lo ? hi - lo : 0;
        if (len[k] < common) common = len[k];
    }
    double a[LANES] = {0}, q[LANES] = {0};
    const float *base = x + (size_t)b0 * block;
    for (size_t i = 0; i < common; i++)
        for (int k = 0; k < LANES; k++) {
            double v = base[(size_t)k * block + i];
            a[k] += fabs(v);
            q[k] += v * v;
        }
    for (int k = 0; k < LANES; k++) {
        for (size_t i = common; i < len[k]; i++) {
            double v = base[(size_t)k * block + i];
            a[k] += fabs(v);
            q[k] += v * v;
        }
        sa[b0 + k] = a[k];
        sq[b0 + k] = q[k];
    }
}

/* g += l1 sign(x) + (2 l2) x; a zero factor's term is left out, as Keras
 * leaves it out of the penalty (so an infinite weight adds no 0 * inf). */
static void add_penalty_grad(const float *x, float *g, size_t n, float l1, float l2, int nt) {
    float l2x2 = 2.0f * l2;
    if (l1 != 0.0f && l2 != 0.0f) {
#pragma omp parallel for simd schedule(static) num_threads(nt) if (n >= KC_CPU_PAR_MIN)
        for (size_t i = 0; i < n; i++)
            g[i] += l1 * (float)((x[i] > 0.0f) - (x[i] < 0.0f)) + l2x2 * x[i];
    } else if (l1 != 0.0f) {
#pragma omp parallel for simd schedule(static) num_threads(nt) if (n >= KC_CPU_PAR_MIN)
        for (size_t i = 0; i < n; i++)
            g[i] += l1 * (float)((x[i] > 0.0f) - (x[i] < 0.0f));
    } else if (l2 != 0.0f) {
#pragma omp parallel for simd schedule(static) num_threads(nt) if (n >= KC_CPU_PAR_MIN)
        for (size_t i = 0; i < n; i++)
            g[i] += l2x2 * x[i];
    }
}

double kc_cpu_l1l2_penalty(const float *x, float *g, size_t n, float l1, float l2) {
    size_t block = (n + KC_PENALTY_BLOCKS - 1) / KC_PENALTY_BLOCKS;
    double sa[KC_PENALTY_BLOCKS] = {0}, sq[KC_PENALTY_BLOCKS] = {0};
    int nt = kc_cpu_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= KC_CPU_PAR_MIN)
    for (int b0 = 0; b0 < KC_PENALTY_BLOCKS; b0 += LANES)
        block_sums(x, n, block, b0, sa, sq);
    double abs_total = 0.0, sq_total = 0.0;
    for (int b = 0; b < KC_PENALTY_BLOCKS; b++) {
        abs_total += sa[b];
        sq_total += sq[b];
    }
    if (g) add_penalty_grad(x, g, n, l1, l2, kc_cpu_threads());
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

/* Columns of one (outer, span, inner) block handled together: their sums
 * accumulate row by row, which walks memory in order. */
#define NORM_COLS 64

/* w as (outer, span, inner): the slices are the columns (o, :, j). */
static void rescale_columns(float *w, int64_t outer, int64_t span, int64_t inner, float lo,
                            float hi, float rate, float eps) {
    int64_t blocks = (inner + NORM_COLS - 1) / NORM_COLS, tasks = outer * blocks;
    int nt = kc_cpu_threads();
#pragma omp parallel for schedule(static)                                                          \
    num_threads(nt) if (outer * span * inner >= KC_CPU_PAR_MIN)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t o = t / blocks, j0 = (t % blocks) * NORM_COLS;
        int width = (int)(inner - j0 < NORM_COLS ? inner - j0 : NORM_COLS);
        float *base = w + o * span * inner + j0;
        double acc[NORM_COLS] = {0};
        for (int64_t r = 0; r < span; r++) {
            const float *row = base + r * inner;
            for (int j = 0; j < width; j++)
                acc[j] += (double)row[j] * row[j];
        }
        float f[NORM_COLS];
        for (int j = 0; j < width; j++)
            f[j] = norm_factor(acc[j], lo, hi, rate, eps);
        for (int64_t r = 0; r < span; r++) {
            float *row = base + r * inner;
            for (int j = 0; j < width; j++)
                row[j] *= f[j];
        }
    }
}

/* Any pattern of axes: each slice walked by index arithmetic. */
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

static void rescale_general(float *w, const int64_t *dims, int rank, unsigned reduce, float lo,
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

void kc_cpu_norm_rescale(float *w, const int64_t *dims, int rank, unsigned reduce, float lo,
                         float hi, float rate, float eps) {
    int first = -1, last = -1;
    for (int a = 0; a < rank; a++)
        if ((reduce >> a) & 1u) {
            if (first < 0) first = a;
            last = a;
        }
    int64_t outer = 1, span = 1, inner = 1;
    for (int a = 0; a < rank; a++) {
        int in_run = first >= 0 && a >= first && a <= last;
        if (in_run && !((reduce >> a) & 1u) && dims[a] != 1) {
            /* kept axes between norm axes: not one (outer, span, inner) view */
            rescale_general(w, dims, rank, reduce, lo, hi, rate, eps);
            return;
        }
        if (in_run)
            span *= dims[a];
        else if (first >= 0 && a > last)
            inner *= dims[a];
        else
            outer *= dims[a];
    }
    rescale_columns(w, outer, span, inner, lo, hi, rate, eps);
}

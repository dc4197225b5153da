/* The cpu backend's elementwise math, select, strided copies and reductions.
 * Each output element is computed by one thread with the same float
 * expression whatever the split, so results do not depend on the thread count; the sums follow
 * the lane order of core/cpu/host.h in double, as the reference backend
 * does, so they match it bit for bit. `omp simd` marks the loops that GCC's
 * -O2 cost model would leave scalar; an output may be its input at the same
 * index, which vectorised loops handle. */
#include "core/cpu/cpu.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define CHEAP KC_CPU_PAR_MIN
#define COSTLY (KC_CPU_PAR_MIN / 8)

/* Runs stmt for i in [0, n) on the backend's threads. */
// clang-format off
#define MAP(n, min_par, stmt)                                                               \
    do {                                                                                    \
        int nt_ = kc_cpu_threads();                                                         \
        size_t n_ = (n), min_ = (min_par);                                                  \
        _Pragma("omp parallel for simd schedule(static) num_threads(nt_) if (n_ >= min_)") \
        for (size_t i = 0; i < n_; i++) {                                                   \
            stmt;                                                                           \
        }                                                                                   \
    } while (0)
// clang-format on

/* NaN wins in max and min, unlike fmaxf and maxps. */
static inline float max_nan(float u, float v) {
    return (u >= v || u != u) ? u : v;
}

static inline float min_nan(float u, float v) {
    return (u <= v || u != u) ? u : v;
}

/* -1, 0 or 1; zeros and NaN pass through */
static inline float sign_of(float x) {
    return x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : x;
}

void kc_cpu_unary(kc_unary_op op, float a, const float *x, float *y, size_t n) {
    switch (op) {
    case KC_UN_NEG:
        MAP(n, CHEAP, y[i] = -x[i]);
        break;
    case KC_UN_ABS:
        MAP(n, CHEAP, y[i] = fabsf(x[i]));
        break;
    case KC_UN_SIGN:
        MAP(n, CHEAP, y[i] = sign_of(x[i]));
        break;
    case KC_UN_SQUARE:
        MAP(n, CHEAP, y[i] = x[i] * x[i]);
        break;
    case KC_UN_SQRT:
        MAP(n, CHEAP, y[i] = sqrtf(x[i]));
        break;
    /* in double, so the one rounding matches the reference */
    case KC_UN_RSQRT:
        MAP(n, CHEAP, y[i] = (float)(1.0 / sqrt((double)x[i])));
        break;
    case KC_UN_RECIP:
        MAP(n, CHEAP, y[i] = 1.0f / x[i]);
        break;
    case KC_UN_EXP:
        MAP(n, COSTLY, y[i] = expf(x[i]));
        break;
    case KC_UN_LOG:
        MAP(n, COSTLY, y[i] = logf(x[i]));
        break;
    case KC_UN_LOG1P:
        MAP(n, COSTLY, y[i] = log1pf(x[i]));
        break;
    /* the activation kernels, so these match the activations bit for bit */
    case KC_UN_TANH:
        kc_cpu_act_forward(KC_ACT_TANH, 0.0f, x, y, n);
        break;
    case KC_UN_SIGMOID:
        kc_cpu_act_forward(KC_ACT_SIGMOID, 0.0f, x, y, n);
        break;
    case KC_UN_FLOOR:
        MAP(n, CHEAP, y[i] = floorf(x[i]));
        break;
    case KC_UN_ADD:
        MAP(n, CHEAP, y[i] = x[i] + a);
        break;
    case KC_UN_MUL:
        MAP(n, CHEAP, y[i] = x[i] * a);
        break;
    case KC_UN_DIV:
        MAP(n, CHEAP, y[i] = x[i] / a);
        break;
    case KC_UN_RSUB:
        MAP(n, CHEAP, y[i] = a - x[i]);
        break;
    case KC_UN_POW:
        MAP(n, COSTLY, y[i] = powf(x[i], a));
        break;
    case KC_UN_MAX:
        MAP(n, CHEAP, y[i] = max_nan(x[i], a));
        break;
    case KC_UN_MIN:
        MAP(n, CHEAP, y[i] = min_nan(x[i], a));
        break;
    case KC_UN_GT:
        MAP(n, CHEAP, y[i] = x[i] > a ? 1.0f : 0.0f);
        break;
    case KC_UN_GE:
        MAP(n, CHEAP, y[i] = x[i] >= a ? 1.0f : 0.0f);
        break;
    case KC_UN_LT:
        MAP(n, CHEAP, y[i] = x[i] < a ? 1.0f : 0.0f);
        break;
    case KC_UN_LE:
        MAP(n, CHEAP, y[i] = x[i] <= a ? 1.0f : 0.0f);
        break;
    case KC_UN_EQ:
        MAP(n, CHEAP, y[i] = x[i] == a ? 1.0f : 0.0f);
        break;
    case KC_UN_COUNT:
        break;
    }
}

/* ------------------------------------------------------------- binary --- */

/* One run of n outputs along the last axis: a and b step by sa and sb (0 =
 * one broadcast value). The common strides get loops of their own so that
 * they vectorise. */
// clang-format off
#define ROW(expr)                                                                           \
    do {                                                                                    \
        if (sa == 1 && sb == 1) {                                                           \
            _Pragma("omp simd")                                                             \
            for (size_t i = 0; i < n; i++) { float u = a[i], v = b[i]; y[i] = (expr); }     \
        } else if (sa == 1 && sb == 0) {                                                    \
            float v = b[0];                                                                 \
            _Pragma("omp simd")                                                             \
            for (size_t i = 0; i < n; i++) { float u = a[i]; y[i] = (expr); }               \
        } else if (sa == 0 && sb == 1) {                                                    \
            float u = a[0];                                                                 \
            _Pragma("omp simd")                                                             \
            for (size_t i = 0; i < n; i++) { float v = b[i]; y[i] = (expr); }               \
        } else {                                                                            \
            for (size_t i = 0; i < n; i++) {                                                \
                float u = a[(int64_t)i * sa], v = b[(int64_t)i * sb];                       \
                y[i] = (expr);                                                              \
            }                                                                               \
        }                                                                                   \
    } while (0)
// clang-format on

static void binary_row(kc_binary_op op, const float *a, int64_t sa, const float *b, int64_t sb,
                       float *y, size_t n) {
    switch (op) {
    case KC_BIN_ADD:
        ROW(u + v);
        break;
    case KC_BIN_SUB:
        ROW(u - v);
        break;
    case KC_BIN_MUL:
        ROW(u * v);
        break;
    case KC_BIN_DIV:
        ROW(u / v);
        break;
    case KC_BIN_MAX:
        ROW(max_nan(u, v));
        break;
    case KC_BIN_MIN:
        ROW(min_nan(u, v));
        break;
    case KC_BIN_POW:
        ROW(powf(u, v));
        break;
    case KC_BIN_GT:
        ROW(u > v ? 1.0f : 0.0f);
        break;
    case KC_BIN_GE:
        ROW(u >= v ? 1.0f : 0.0f);
        break;
    case KC_BIN_LT:
        ROW(u < v ? 1.0f : 0.0f);
        break;
    case KC_BIN_LE:
        ROW(u <= v ? 1.0f : 0.0f);
        break;
    case KC_BIN_EQ:
        ROW(u == v ? 1.0f : 0.0f);
        break;
    case KC_BIN_NE:
        ROW(u != v ? 1.0f : 0.0f);
        break;
    case KC_BIN_COUNT:
        break;
    }
}

/* Outputs [lo, hi) of the dense y, as runs along the last axis. */
static void binary_range(kc_binary_op op, const kc_bcast *g, const float *a, const float *b,
                         float *y, size_t lo, size_t hi) {
    int r = g->rank;
    int64_t idx[KC_BCAST_RANK], t = (int64_t)lo;
    for (int k = r - 1; k >= 0; k--) {
        idx[k] = t % g->dims[k];
        t /= g->dims[k];
    }
    int64_t last = g->dims[r - 1];
    while (lo < hi) {
        int64_t oa = 0, ob = 0;
        for (int k = 0; k < r; k++) {
            oa += idx[k] * g->sa[k];
            ob += idx[k] * g->sb[k];
        }
        size_t len = (size_t)(last - idx[r - 1]);
        if (len > hi - lo) len = hi - lo;
        binary_row(op, a + oa, g->sa[r - 1], b + ob, g->sb[r - 1], y + lo, len);
        lo += len;
        idx[r - 1] = 0;
        for (int k = r - 2; k >= 0; k--) {
            if (++idx[k] < g->dims[k]) break;
            idx[k] = 0;
        }
    }
}

void kc_cpu_binary(kc_binary_op op, const kc_bcast *g, const float *a, const float *b, float *y) {
    if (g->rank < 1 || g->rank > KC_BCAST_RANK) return;
    size_t n = 1;
    for (int k = 0; k < g->rank; k++)
        n *= (size_t)g->dims[k];
    if (!n) return;
    int nt = kc_cpu_threads();
    size_t min_par = op == KC_BIN_POW ? COSTLY : CHEAP;
    if (n < min_par || nt < 2) {
        binary_range(op, g, a, b, y, 0, n);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        size_t t = (size_t)omp_get_thread_num(), p = (size_t)omp_get_num_threads();
        size_t lo = n * t / p, hi = n * (t + 1) / p;
        if (hi > lo) binary_range(op, g, a, b, y, lo, hi);
    }
}

void kc_cpu_select(const float *cond, const float *a, const float *b, float *y, size_t n) {
    MAP(n, CHEAP, y[i] = cond[i] != 0.0f ? a[i] : b[i]);
}

/* ------------------------------------------------------- strided copy --- */

/* One run along the last axis: n elements, source stride a, destination
 * stride b; SET moves the four bytes as they are. */
static void copy_row(kc_copy_mode mode, const char *restrict src, int64_t a, char *restrict dst,
                     int64_t b, int64_t n) {
    if (mode == KC_COPY_SET) {
        if (a == 1 && b == 1) {
            memcpy(dst, src, (size_t)n * 4);
            return;
        }
        for (int64_t i = 0; i < n; i++)
            memcpy(dst + i * b * 4, src + i * a * 4, 4);
        return;
    }
    const float *restrict x = (const float *)src;
    float *restrict y = (float *)dst;
    if (a == 1 && b == 1) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++)
            y[i] += x[i];
        return;
    }
    for (int64_t i = 0; i < n; i++)
        y[i * b] += x[i * a];
}

/* Threads take runs of the last axis; no two runs write the same element
 * (the contract of kc_copy_desc), so the split does not change the result. */
void kc_cpu_copy_strided(kc_copy_mode mode, const kc_copy_desc *g, const void *src, void *dst) {
    int r = g->rank;
    int64_t rows = 1, len = g->dims[r - 1];
    for (int k = 0; k < r - 1; k++)
        rows *= g->dims[k];
    int nt = kc_cpu_threads();
    int par = rows > 1 && (double)rows * len >= CHEAP && nt > 1;
#pragma omp parallel for schedule(static) num_threads(nt) if (par)
    for (int64_t row = 0; row < rows; row++) {
        int64_t t = row, so = 0, dof = 0;
        for (int k = r - 2; k >= 0; k--) {
            int64_t i = t % g->dims[k];
            t /= g->dims[k];
            so += i * g->ss[k];
            dof += i * g->ds[k];
        }
        copy_row(mode, (const char *)src + so * 4, g->ss[r - 1], (char *)dst + dof * 4,
                 g->ds[r - 1], len);
    }
}

/* ------------------------------------------------------------- reduce --- */

#define LANES KC_HOST_REDUCE_LANES

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));

/* the helpers are inlined into the clones, never called across an ABI boundary */
#pragma GCC diagnostic ignored "-Wpsabi"
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

enum { TERM_X, TERM_SQ, TERM_ABS };

static inline double term(float x, int kind) {
    double v = x;
    return kind == TERM_SQ ? v * v : kind == TERM_ABS ? fabs(v) : v;
}

static inline __attribute__((always_inline)) v8d term8(const float *p, int kind) {
    v8f f;
    memcpy(&f, p, sizeof f);
    if (kind == TERM_ABS) f = (v8f)((v8i)f & 0x7fffffff);
    v8d v = __builtin_convertvector(f, v8d);
    return kind == TERM_SQ ? v * v : v;
}

/* lane 0 plus lanes 1 .. min(len, LANES) - 1 */
static inline double combine(const double *acc, int64_t len) {
    int used = len < LANES ? (int)len : LANES;
    double s = acc[0];
    for (int k = 1; k < used; k++)
        s += acc[k];
    return s;
}

/* The lane sum of a contiguous row; lanes 0-7 and 8-15 stay in registers. */
static inline __attribute__((always_inline)) double row_sum(const float *x, int64_t len, int kind) {
    v8d lo = {0}, hi = {0};
    int64_t l = 0;
    for (; l + LANES <= len; l += LANES) {
        lo += term8(x + l, kind);
        hi += term8(x + l + 8, kind);
    }
    double acc[LANES];
    memcpy(acc, &lo, sizeof lo);
    memcpy(acc + 8, &hi, sizeof hi);
    for (int k = 0; l + k < len; k++)
        acc[k] += term(x[l + k], kind);
    return combine(acc, len);
}

CLONES static double row_sum_x(const float *x, int64_t len) {
    return row_sum(x, len, TERM_X);
}
CLONES static double row_sum_sq(const float *x, int64_t len) {
    return row_sum(x, len, TERM_SQ);
}
CLONES static double row_sum_abs(const float *x, int64_t len) {
    return row_sum(x, len, TERM_ABS);
}

/* Columns wider than this are split into blocks, each one task. */
#define COL_BLOCK 64

/* The lane sums of w <= COL_BLOCK adjacent columns (row stride ld): each row
 * goes to lane l % LANES of every column, so the inner loop runs along the
 * row. */
static inline __attribute__((always_inline)) void col_sums(const float *x, int64_t len, int64_t ld,
                                                           int w, int kind, double *out) {
    if (len <= LANES) { /* one term per lane: the combination is a running sum */
#pragma omp simd
        for (int j = 0; j < w; j++)
            out[j] = 0.0 + term(x[j], kind);
        for (int64_t l = 1; l < len; l++) {
            const float *row = x + l * ld;
#pragma omp simd
            for (int j = 0; j < w; j++)
                out[j] += term(row[j], kind);
        }
        return;
    }
    double acc[LANES][COL_BLOCK];
    int used = len < LANES ? (int)len : LANES;
    for (int k = 0; k < used; k++)
        memset(acc[k], 0, (size_t)w * sizeof(double));
    for (int64_t l = 0; l < len; l++) {
        const float *row = x + l * ld;
        double *a = acc[l % LANES];
#pragma omp simd
        for (int j = 0; j < w; j++)
            a[j] += term(row[j], kind);
    }
    for (int j = 0; j < w; j++) {
        double s = used ? acc[0][j] : 0.0;
        for (int k = 1; k < used; k++)
            s += acc[k][j];
        out[j] = s;
    }
}

CLONES static void col_sums_x(const float *x, int64_t len, int64_t ld, int w, double *out) {
    col_sums(x, len, ld, w, TERM_X, out);
}
CLONES static void col_sums_sq(const float *x, int64_t len, int64_t ld, int w, double *out) {
    col_sums(x, len, ld, w, TERM_SQ, out);
}
CLONES static void col_sums_abs(const float *x, int64_t len, int64_t ld, int w, double *out) {
    col_sums(x, len, ld, w, TERM_ABS, out);
}

/* Scans in order: NaN wins max and min; argmax keeps the first maximum (or
 * the first NaN). The _nan forms say so element by element; the plain forms
 * compare without branches (maxss, cmov) and hand over to them only when
 * they met a NaN, so data without NaN costs no mispredicted jumps. */
static float scan_max_nan(const float *x, int64_t len, int64_t ld) {
    float m = x[0];
    for (int64_t l = 1; l < len; l++) {
        float v = x[l * ld];
        m = (v > m || v != v) ? v : m;
    }
    return m;
}

static float scan_min_nan(const float *x, int64_t len, int64_t ld) {
    float m = x[0];
    for (int64_t l = 1; l < len; l++) {
        float v = x[l * ld];
        m = (v < m || v != v) ? v : m;
    }
    return m;
}

static int64_t scan_argmax_nan(const float *x, int64_t len, int64_t ld) {
    float m = x[0];
    int64_t at = 0;
    for (int64_t l = 1; l < len; l++) {
        float v = x[l * ld];
        if (v > m || (v != v && m == m)) m = v, at = l;
    }
    return at;
}

static float scan_max(const float *x, int64_t len, int64_t ld) {
    if (!len) return -INFINITY;
    float m = x[0];
    int nan = m != m;
    for (int64_t l = 1; l < len; l++) {
        float v = x[l * ld];
        nan |= v != v;
        m = v > m ? v : m;
    }
    return nan ? scan_max_nan(x, len, ld) : m;
}

static float scan_min(const float *x, int64_t len, int64_t ld) {
    if (!len) return INFINITY;
    float m = x[0];
    int nan = m != m;
    for (int64_t l = 1; l < len; l++) {
        float v = x[l * ld];
        nan |= v != v;
        m = v < m ? v : m;
    }
    return nan ? scan_min_nan(x, len, ld) : m;
}

static float scan_argmax(const float *x, int64_t len, int64_t ld) {
    if (!len) return 0.0f;
    float m = x[0];
    int64_t at = 0;
    int nan = m != m;
    for (int64_t l = 1; l < len; l++) {
        float v = x[l * ld];
        int take = v > m;
        nan |= v != v;
        m = take ? v : m;
        at = take ? l : at;
    }
    return (float)(nan ? scan_argmax_nan(x, len, ld) : at);
}

/* The scans of a long contiguous row in lanes, which vectorise. For a maximum
 * that is neither zero nor NaN the lanes find the very value (and bits) the
 * scan finds; zeros (+0 and -0 compare equal) and NaNs (any payload) depend
 * on which comes first, so those rows are scanned again in order. */
#define SCAN_LANES_MIN (4 * LANES)

static float row_max(const float *x, int64_t len) {
    if (len < SCAN_LANES_MIN) return scan_max(x, len, 1);
    float m[LANES];
    memcpy(m, x, sizeof m);
    int64_t l = LANES;
    for (; l + LANES <= len; l += LANES) {
        const float *v = x + l;
#pragma omp simd
        for (int k = 0; k < LANES; k++)
            m[k] = (v[k] > m[k] || v[k] != v[k]) ? v[k] : m[k];
    }
    for (; l < len; l++)
        m[0] = (x[l] > m[0] || x[l] != x[l]) ? x[l] : m[0];
    float r = scan_max(m, LANES, 1);
    return r == 0.0f || r != r ? scan_max(x, len, 1) : r;
}

static float row_min(const float *x, int64_t len) {
    if (len < SCAN_LANES_MIN) return scan_min(x, len, 1);
    float m[LANES];
    memcpy(m, x, sizeof m);
    int64_t l = LANES;
    for (; l + LANES <= len; l += LANES) {
        const float *v = x + l;
#pragma omp simd
        for (int k = 0; k < LANES; k++)
            m[k] = (v[k] < m[k] || v[k] != v[k]) ? v[k] : m[k];
    }
    for (; l < len; l++)
        m[0] = (x[l] < m[0] || x[l] != x[l]) ? x[l] : m[0];
    float r = scan_min(m, LANES, 1);
    return r == 0.0f || r != r ? scan_min(x, len, 1) : r;
}

/* The column forms of the scans, along each row of a block. */
static void col_max(const float *x, int64_t len, int64_t ld, int w, double *out) {
    float m[COL_BLOCK];
    memcpy(m, x, (size_t)w * sizeof(float));
    for (int64_t l = 1; l < len; l++) {
        const float *row = x + l * ld;
#pragma omp simd
        for (int j = 0; j < w; j++)
            m[j] = (row[j] > m[j] || row[j] != row[j]) ? row[j] : m[j];
    }
    for (int j = 0; j < w; j++)
        out[j] = m[j];
}

static void col_min(const float *x, int64_t len, int64_t ld, int w, double *out) {
    float m[COL_BLOCK];
    memcpy(m, x, (size_t)w * sizeof(float));
    for (int64_t l = 1; l < len; l++) {
        const float *row = x + l * ld;
#pragma omp simd
        for (int j = 0; j < w; j++)
            m[j] = (row[j] < m[j] || row[j] != row[j]) ? row[j] : m[j];
    }
    for (int j = 0; j < w; j++)
        out[j] = m[j];
}

static void col_argmax(const float *x, int64_t len, int64_t ld, int w, double *out) {
    float m[COL_BLOCK];
    int64_t at[COL_BLOCK] = {0};
    int nan = 0;
    memcpy(m, x, (size_t)w * sizeof(float));
    for (int j = 0; j < w; j++)
        nan |= m[j] != m[j];
    for (int64_t l = 1; l < len; l++) {
        const float *row = x + l * ld;
        for (int j = 0; j < w; j++) {
            float v = row[j];
            int take = v > m[j];
            nan |= v != v;
            m[j] = take ? v : m[j];
            at[j] = take ? l : at[j];
        }
    }
    for (int j = 0; j < w; j++)
        out[j] = (float)(nan ? scan_argmax_nan(x + j, len, ld) : at[j]);
}

/* R of one (outer, :, inner) column block into out[0..w), before alpha/beta. */
static void reduce_block(kc_reduce_op op, const float *x, int64_t len, int64_t inner, int w,
                         double *out) {
    if (len == 0) { /* the identities; MEAN divides 0 by 0 below */
        double e = op == KC_RED_MAX ? -INFINITY : op == KC_RED_MIN ? INFINITY : 0.0;
        for (int j = 0; j < w; j++)
            out[j] = e;
        return;
    }
    switch (op) {
    case KC_RED_SUM:
    case KC_RED_MEAN:
        col_sums_x(x, len, inner, w, out);
        break;
    case KC_RED_SUMSQ:
        col_sums_sq(x, len, inner, w, out);
        break;
    case KC_RED_SUMABS:
        col_sums_abs(x, len, inner, w, out);
        break;
    case KC_RED_MAX:
        col_max(x, len, inner, w, out);
        break;
    case KC_RED_MIN:
        col_min(x, len, inner, w, out);
        break;
    case KC_RED_ARGMAX:
        col_argmax(x, len, inner, w, out);
        break;
    case KC_RED_COUNT:
        break;
    }
}

static double reduce_row(kc_reduce_op op, const float *x, int64_t len) {
    switch (op) {
    case KC_RED_SUM:
    case KC_RED_MEAN:
        return row_sum_x(x, len);
    case KC_RED_SUMSQ:
        return row_sum_sq(x, len);
    case KC_RED_SUMABS:
        return row_sum_abs(x, len);
    case KC_RED_MAX:
        return row_max(x, len);
    case KC_RED_MIN:
        return row_min(x, len);
    case KC_RED_ARGMAX:
        return scan_argmax(x, len, 1);
    case KC_RED_COUNT:
        break;
    }
    return 0.0;
}

/* y = alpha R + beta y in double, rounded once (as the reference does) */
static inline void store(float *y, double r, kc_reduce_op op, int64_t len, float alpha,
                         float beta) {
    if (op == KC_RED_MEAN) r /= (double)len;
    double v = (double)alpha * r;
    if (beta != 0.0f) v += (double)beta * *y;
    *y = (float)v;
}

void kc_cpu_reduce(kc_reduce_op op, const kc_reduce_desc *g, float alpha, const float *x,
                   float beta, float *y) {
    int64_t outer = g->outer, len = g->len, inner = g->inner;
    if (outer <= 0 || inner <= 0 || len < 0) return;
    int nt = kc_cpu_threads();
    int par = (double)outer * inner * (len > 0 ? len : 1) >= CHEAP && nt > 1;
    if (inner == 1) {
#pragma omp parallel for schedule(static) num_threads(nt) if (par && outer > 1)
        for (int64_t o = 0; o < outer; o++)
            store(y + o, reduce_row(op, x + o * len, len), op, len, alpha, beta);
        return;
    }
    /* narrower blocks when there are too few to go round the threads */
    int64_t bw = COL_BLOCK;
    if (par && outer * ((inner + bw - 1) / bw) < nt) {
        int64_t per_outer = (nt + outer - 1) / outer;
        bw = ((inner + per_outer - 1) / per_outer + 7) / 8 * 8;
        if (bw > COL_BLOCK) bw = COL_BLOCK;
    }
    int64_t blocks = (inner + bw - 1) / bw, tasks = outer * blocks;
#pragma omp parallel for schedule(static) num_threads(nt) if (par && tasks > 1)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t o = t / blocks, j0 = (t % blocks) * bw;
        int w = (int)(inner - j0 < bw ? inner - j0 : bw);
        double r[COL_BLOCK];
        reduce_block(op, x + o * len * inner + j0, len, inner, w, r);
        float *yo = y + o * inner + j0;
        for (int j = 0; j < w; j++)
            store(yo + j, r[j], op, len, alpha, beta);
    }
}

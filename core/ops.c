/* Dispatch from the op API (core/ops.h) to a device's backend table, with a
 * composition from the primitive core for every fused op a backend leaves
 * out. Compositions keep their temporaries in the device's scratch (one
 * buffer, grown to the largest need and then reused), so after the first
 * call of a shape they allocate nothing. */
#include "core/ops.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------- errors --- */

int kc_device_fail(kc_device *d, int code, const char *fmt, ...) {
    if (!code) code = KC_ERUNTIME;
    if (d->err.code) return d->err.code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->err.msg, sizeof d->err.msg, fmt, ap);
    va_end(ap);
    d->err.code = code;
    return code;
}

int kc_device_error(const kc_device *d, kc_error *e) {
    if (!d->err.code) return KC_OK;
    if (e) {
        e->code = d->err.code;
        snprintf(e->msg, sizeof e->msg, "%s", d->err.msg);
    }
    return d->err.code;
}

void kc_device_clear_error(kc_device *d) {
    memset(&d->err, 0, sizeof d->err);
}

void kc_device_reset_traffic(kc_device *d) {
    d->bytes_up = d->bytes_down = d->transfers = 0;
}

/* A slot's status, with a message when the backend returned one without
 * saying why. */
static int checked(kc_device *d, int rc, const char *op) {
    if (rc && !d->err.code) kc_device_fail(d, rc, "%s backend: %s failed", d->be->name, op);
    return rc ? d->err.code : KC_OK;
}

#define CALL(slot, ...)                                                                            \
    do {                                                                                           \
        if (d->err.code) return d->err.code;                                                       \
        return checked(d, d->be->slot(d, __VA_ARGS__), #slot);                                     \
    } while (0)

/* Native when the backend has the slot and does not decline it, else `fallback`. */
#define CALL_FUSED(op, desc, slot, fallback, ...)                                                  \
    do {                                                                                           \
        if (d->err.code) return d->err.code;                                                       \
        if (kc_supports_op(d, op, desc)) return checked(d, d->be->slot(d, __VA_ARGS__), #slot);    \
        return fallback(d, __VA_ARGS__);                                                           \
    } while (0)

static int slot_present(const kc_backend *be, kc_op op) {
    switch (op) {
    case KC_OP_MUL:
        return be->mul != NULL;
    case KC_OP_BIAS_ADD:
        return be->bias_add != NULL;
    case KC_OP_BIAS_GRAD:
        return be->bias_grad != NULL;
    case KC_OP_GEMM_BATCHED:
        return be->gemm_batched != NULL;
    case KC_OP_SOFTMAX:
        return be->softmax_forward && be->softmax_backward;
    case KC_OP_CONV2D:
        return be->conv2d_workspace && be->conv2d_forward && be->conv2d_backward_data &&
               be->conv2d_backward_filter;
    case KC_OP_MAXPOOL2D:
        return be->maxpool2d_forward && be->maxpool2d_backward;
    case KC_OP_AVGPOOL2D:
        return be->avgpool2d_forward && be->avgpool2d_backward;
    case KC_OP_NORM_RESCALE:
        return be->norm_rescale != NULL;
    case KC_OP_SCALE_DIV:
        return be->scale_div != NULL;
    case KC_OP_CLIP:
        return be->clip != NULL;
    case KC_OP_WEIGHT_DECAY:
        return be->weight_decay != NULL;
    case KC_OP_SGD:
        return be->sgd_update != NULL;
    case KC_OP_RMSPROP:
        return be->rmsprop_update != NULL;
    case KC_OP_ADAM:
        return be->adam_update != NULL;
    case KC_OP_ADAGRAD:
        return be->adagrad_update != NULL;
    case KC_OP_ADADELTA:
        return be->adadelta_update != NULL;
    case KC_OP_ADAMAX:
        return be->adamax_update != NULL;
    case KC_OP_NADAM:
        return be->nadam_update != NULL;
    case KC_OP_LION:
        return be->lion_update != NULL;
    case KC_OP_DEPTHWISE_CONV2D:
        return be->depthwise_conv2d_forward && be->depthwise_conv2d_backward_data &&
               be->depthwise_conv2d_backward_filter;
    case KC_OP_EMBEDDING:
        return be->embedding_forward && be->embedding_backward;
    case KC_OP_COUNT:
        break;
    }
    return 0;
}

int kc_supports_op(const kc_device *d, kc_op op, const void *desc) {
    if (!slot_present(d->be, op)) return 0;
    return d->be->supports_op ? d->be->supports_op(d, op, desc) : 1;
}

/* Every fused op has a composition from the primitive core. */
int kc_op_available(const kc_device *d, kc_op op, const void *desc) {
    (void)d, (void)desc;
    return op >= 0 && op < KC_OP_COUNT;
}

/* Device scratch for compositions: grown on first use, then reused. */
static int scratch(kc_device *d, size_t floats, kc_buf *out) {
    size_t bytes = floats * sizeof(float);
    if (floats && bytes / floats != sizeof(float))
        return kc_device_fail(d, KC_ERUNTIME, "scratch of %zu floats is too large", floats);
    if (bytes > d->scratch_bytes) {
        if (kc_buf_ok(d->scratch)) d->be->free(d, d->scratch);
        d->scratch = KC_BUF_NULL;
        d->scratch_bytes = 0;
        int rc = d->be->alloc(d, bytes, &d->scratch);
        if (rc) return checked(d, rc, "alloc");
        d->scratch_bytes = bytes;
    }
    *out = d->scratch;
    return KC_OK;
}

/* ----------------------------------------------------------- broadcast --- */

kc_bcast kc_bcast_same(size_t n) {
    kc_bcast g = {.rank = 1, .dims = {(int64_t)n}, .sa = {1}, .sb = {1}};
    return g;
}

kc_bcast kc_bcast_rows(size_t rows, size_t cols) {
    kc_bcast g = {
        .rank = 2, .dims = {(int64_t)rows, (int64_t)cols}, .sa = {(int64_t)cols, 1}, .sb = {0, 1}};
    return g;
}

kc_bcast kc_bcast_cols(size_t rows, size_t cols) {
    kc_bcast g = {
        .rank = 2, .dims = {(int64_t)rows, (int64_t)cols}, .sa = {(int64_t)cols, 1}, .sb = {1, 0}};
    return g;
}

int kc_bcast_make(kc_bcast *g, const int64_t *a, int ra, const int64_t *b, int rb, size_t *n) {
    enum { MAXR = 16 };
    int r = ra > rb ? ra : rb;
    if (r > MAXR) return KC_ECONFIG;
    int64_t dims[MAXR], sa[MAXR], sb[MAXR];
    int64_t stride_a = 1, stride_b = 1;
    for (int k = r - 1; k >= 0; k--) {
        int64_t da = k - (r - ra) >= 0 ? a[k - (r - ra)] : 1;
        int64_t db = k - (r - rb) >= 0 ? b[k - (r - rb)] : 1;
        if (da != db && da != 1 && db != 1) return KC_ECONFIG;
        dims[k] = da > db ? da : db;
        if (da == 0 || db == 0) dims[k] = 0;
        sa[k] = da == 1 ? 0 : stride_a;
        sb[k] = db == 1 ? 0 : stride_b;
        stride_a *= da;
        stride_b *= db;
    }
    /* drop unit axes, then merge neighbours whose strides chain */
    kc_bcast out = {0};
    int m = 0;
    int64_t od[MAXR], oa[MAXR], ob[MAXR];
    for (int k = 0; k < r; k++) {
        if (dims[k] == 1) continue;
        if (m > 0 && oa[m - 1] == sa[k] * dims[k] && ob[m - 1] == sb[k] * dims[k]) {
            od[m - 1] *= dims[k];
            oa[m - 1] = sa[k];
            ob[m - 1] = sb[k];
            continue;
        }
        od[m] = dims[k];
        oa[m] = sa[k];
        ob[m] = sb[k];
        m++;
    }
    if (m == 0) od[0] = 1, oa[0] = ob[0] = 0, m = 1;
    if (m > KC_BCAST_RANK) return KC_ECONFIG;
    out.rank = m;
    size_t count = 1;
    for (int k = 0; k < m; k++) {
        out.dims[k] = od[k];
        out.sa[k] = oa[k];
        out.sb[k] = ob[k];
        count *= (size_t)od[k];
    }
    *g = out;
    if (n) *n = count;
    return KC_OK;
}

/* -------------------------------------------------------------- memory --- */

int kc_alloc(kc_device *d, size_t bytes, kc_buf *out) {
    *out = KC_BUF_NULL;
    if (d->err.code) return d->err.code;
    int rc = d->be->alloc(d, bytes, out);
    if (rc && !d->err.code)
        kc_device_fail(d, rc, "out of %s memory for %zu bytes", d->be->name, bytes);
    return rc ? d->err.code : KC_OK;
}

void kc_free(kc_device *d, kc_buf *b) {
    if (kc_buf_ok(*b)) d->be->free(d, *b);
    *b = KC_BUF_NULL;
}

static int transfer_up(kc_device *d, kc_buf dst, const void *src, size_t bytes, int mode) {
    if (d->err.code) return d->err.code;
    if (!bytes) return KC_OK;
    d->bytes_up += bytes;
    d->transfers++;
    return checked(d, d->be->upload(d, dst, src, bytes, mode), "upload");
}

int kc_upload(kc_device *d, kc_buf dst, const void *src, size_t bytes) {
    return transfer_up(d, dst, src, bytes, KC_BLOCKING);
}

int kc_upload_async(kc_device *d, kc_buf dst, const void *src, size_t bytes) {
    return transfer_up(d, dst, src, bytes, KC_ASYNC);
}

int kc_download(kc_device *d, void *dst, kc_buf src, size_t bytes) {
    if (d->err.code) return d->err.code;
    if (!bytes) return KC_OK;
    d->bytes_down += bytes;
    d->transfers++;
    return checked(d, d->be->download(d, dst, src, bytes, KC_BLOCKING), "download");
}

int kc_synchronize(kc_device *d) {
    if (d->err.code) return d->err.code;
    return d->be->synchronize ? checked(d, d->be->synchronize(d), "synchronize") : KC_OK;
}

int kc_copy(kc_device *d, kc_buf dst, kc_buf src, size_t bytes) {
    if (!bytes || kc_buf_eq(dst, src)) return d->err.code;
    CALL(copy, dst, src, bytes);
}

int kc_copy2d(kc_device *d, kc_buf dst, size_t ldd, kc_buf src, size_t lds, size_t rows,
              size_t cols) {
    if (!rows || !cols) return d->err.code;
    CALL(copy2d, dst, ldd, src, lds, rows, cols);
}

/* The strided copy with unit axes dropped and neighbours whose strides chain
 * on both sides merged (*empty when an axis has extent 0); fails on a
 * geometry outside the contract or one whose offsets overflow. */
static int copy_normalize(kc_device *d, kc_copy_mode mode, const kc_copy_desc *g, kc_copy_desc *out,
                          int *empty) {
    *empty = 0;
    if ((int)mode < 0 || mode >= KC_COPY_MODE_COUNT)
        return kc_device_fail(d, KC_ECONFIG, "strided copy: unknown mode %d", (int)mode);
    if (g->rank < 1 || g->rank > KC_COPY_RANK)
        return kc_device_fail(d, KC_ECONFIG, "strided copy: rank %d outside 1..%d", g->rank,
                              KC_COPY_RANK);
    kc_copy_desc m = {0};
    int64_t reach_s = 0, reach_d = 0, ts, td;
    for (int k = 0; k < g->rank; k++) {
        int64_t n = g->dims[k], a = g->ss[k], b = g->ds[k];
        if (n < 0 || a < 0 || b < 0)
            return kc_device_fail(d, KC_ECONFIG, "strided copy: negative extent or stride");
        if (n == 0) *empty = 1;
        if (n <= 1) continue;
        if (__builtin_mul_overflow(n - 1, a, &ts) ||
            __builtin_add_overflow(reach_s, ts, &reach_s) ||
            __builtin_mul_overflow(n - 1, b, &td) ||
            __builtin_add_overflow(reach_d, td, &reach_d) || reach_s > INT64_MAX / 4 ||
            reach_d > INT64_MAX / 4)
            return kc_device_fail(d, KC_ECONFIG, "strided copy: offsets overflow");
        int r = m.rank;
        if (r > 0 && m.ss[r - 1] == a * n && m.ds[r - 1] == b * n) {
            m.dims[r - 1] *= n;
            m.ss[r - 1] = a, m.ds[r - 1] = b;
            continue;
        }
        m.dims[r] = n, m.ss[r] = a, m.ds[r] = b;
        m.rank++;
    }
    if (m.rank == 0) m.rank = 1, m.dims[0] = 1, m.ss[0] = m.ds[0] = 0;
    *out = m;
    return KC_OK;
}

int kc_copy_strided(kc_device *d, kc_copy_mode mode, const kc_copy_desc *g, kc_buf src,
                    kc_buf dst) {
    if (d->err.code) return d->err.code;
    kc_copy_desc m;
    int empty;
    int rc = copy_normalize(d, mode, g, &m, &empty);
    if (rc || empty) return d->err.code;
    CALL(copy_strided, mode, &m, src, dst);
}

/* ---------------------------------------------------------- primitives --- */

int kc_fill(kc_device *d, kc_buf y, float v, size_t n) {
    if (!n) return d->err.code;
    CALL(fill, y, v, n);
}

int kc_scale(kc_device *d, kc_buf y, float a, size_t n) {
    if (!n) return d->err.code;
    CALL(scale, y, a, n);
}

int kc_axpy(kc_device *d, float a, kc_buf x, kc_buf y, size_t n) {
    if (!n) return d->err.code;
    CALL(axpy, a, x, y, n);
}

int kc_unary(kc_device *d, kc_unary_op op, float a, kc_buf x, kc_buf y, size_t n) {
    if (!n) return d->err.code;
    CALL(unary, op, a, x, y, n);
}

int kc_binary(kc_device *d, kc_binary_op op, const kc_bcast *g, kc_buf a, kc_buf b, kc_buf y) {
    for (int k = 0; k < g->rank; k++)
        if (!g->dims[k]) return d->err.code;
    CALL(binary, op, g, a, b, y);
}

int kc_binary_n(kc_device *d, kc_binary_op op, kc_buf a, kc_buf b, kc_buf y, size_t n) {
    kc_bcast g = kc_bcast_same(n);
    return kc_binary(d, op, &g, a, b, y);
}

int kc_select(kc_device *d, kc_buf cond, kc_buf a, kc_buf b, kc_buf y, size_t n) {
    if (!n) return d->err.code;
    CALL(select, cond, a, b, y, n);
}

int kc_reduce(kc_device *d, kc_reduce_op op, const kc_reduce_desc *g, float alpha, kc_buf x,
              float beta, kc_buf y) {
    if (!g->outer || !g->inner) return d->err.code;
    CALL(reduce, op, g, alpha, x, beta, y);
}

int kc_gemm(kc_device *d, int ta, int tb, int m, int n, int k, float alpha, kc_buf a, int lda,
            kc_buf b, int ldb, float beta, kc_buf c, int ldc) {
    if (m <= 0 || n <= 0) return d->err.code;
    CALL(gemm, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

int kc_act_forward(kc_device *d, kc_act act, float alpha, kc_buf x, kc_buf y, size_t n) {
    if (!n) return d->err.code;
    CALL(act_forward, act, alpha, x, y, n);
}

int kc_act_backward(kc_device *d, kc_act act, float alpha, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx,
                    size_t n) {
    if (!n) return d->err.code;
    CALL(act_backward, act, alpha, x, y, dy, dx, n);
}

int kc_dropout_forward(kc_device *d, kc_buf x, kc_buf y, kc_buf mask, size_t n, float rate,
                       uint64_t seed, uint64_t stream) {
    if (!n) return d->err.code;
    CALL(dropout_forward, x, y, mask, n, rate, seed, stream);
}

int kc_l1l2_penalty(kc_device *d, kc_buf x, kc_buf g, size_t n, float l1, float l2, kc_buf out) {
    if (!n) return d->err.code;
    CALL(l1l2_penalty, x, g, n, l1, l2, out);
}

int kc_sum_squares(kc_device *d, kc_buf x, size_t n, kc_buf out) {
    if (!n) return d->err.code;
    CALL(sum_squares, x, n, out);
}

/* ------------------------------------------------------------ fused ops --- */

int kc_fallback_mul(kc_device *d, kc_buf a, kc_buf b, kc_buf y, size_t n) {
    return kc_binary_n(d, KC_BIN_MUL, a, b, y, n);
}

int kc_mul(kc_device *d, kc_buf a, kc_buf b, kc_buf y, size_t n) {
    if (!n) return d->err.code;
    CALL_FUSED(KC_OP_MUL, NULL, mul, kc_fallback_mul, a, b, y, n);
}

int kc_fallback_bias_add(kc_device *d, kc_buf y, kc_buf b, int rows, int cols) {
    kc_bcast g = kc_bcast_rows((size_t)rows, (size_t)cols);
    return kc_binary(d, KC_BIN_ADD, &g, y, b, y);
}

int kc_bias_add(kc_device *d, kc_buf y, kc_buf b, int rows, int cols) {
    if (rows <= 0 || cols <= 0) return d->err.code;
    CALL_FUSED(KC_OP_BIAS_ADD, NULL, bias_add, kc_fallback_bias_add, y, b, rows, cols);
}

int kc_fallback_bias_grad(kc_device *d, kc_buf db, kc_buf dy, int rows, int cols, float beta) {
    kc_reduce_desc g = {1, rows, cols};
    return kc_reduce(d, KC_RED_SUM, &g, 1.0f, dy, beta, db);
}

int kc_bias_grad(kc_device *d, kc_buf db, kc_buf dy, int rows, int cols, float beta) {
    if (cols <= 0) return d->err.code;
    if (rows <= 0) /* no rows: db = beta db */
        return beta == 0.0f   ? kc_fill(d, db, 0.0f, (size_t)cols)
               : beta != 1.0f ? kc_scale(d, db, beta, (size_t)cols)
                              : d->err.code;
    CALL_FUSED(KC_OP_BIAS_GRAD, NULL, bias_grad, kc_fallback_bias_grad, db, dy, rows, cols, beta);
}

int kc_fallback_gemm_batched(kc_device *d, int ta, int tb, int m, int n, int k, float alpha,
                             kc_buf a, int lda, size_t sa, kc_buf b, int ldb, size_t sb, float beta,
                             kc_buf c, int ldc, size_t sc, int batch) {
    for (int i = 0; i < batch; i++) {
        int rc = kc_gemm(d, ta, tb, m, n, k, alpha, kc_buf_f(a, i * sa), lda, kc_buf_f(b, i * sb),
                         ldb, beta, kc_buf_f(c, i * sc), ldc);
        if (rc) return rc;
    }
    return KC_OK;
}

int kc_gemm_batched(kc_device *d, int ta, int tb, int m, int n, int k, float alpha, kc_buf a,
                    int lda, size_t sa, kc_buf b, int ldb, size_t sb, float beta, kc_buf c, int ldc,
                    size_t sc, int batch) {
    if (m <= 0 || n <= 0 || batch <= 0) return d->err.code;
    CALL_FUSED(KC_OP_GEMM_BATCHED, NULL, gemm_batched, kc_fallback_gemm_batched, ta, tb, m, n, k,
               alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
}

/* y = exp(x - max) / sum exp(x - max) per row */
int kc_fallback_softmax_forward(kc_device *d, kc_buf x, kc_buf y, int rows, int cols) {
    kc_buf t;
    int rc = scratch(d, (size_t)rows, &t);
    if (rc) return rc;
    kc_reduce_desc g = {rows, cols, 1};
    kc_bcast bc = kc_bcast_cols((size_t)rows, (size_t)cols);
    size_t n = (size_t)rows * (size_t)cols;
    kc_reduce(d, KC_RED_MAX, &g, 1.0f, x, 0.0f, t);
    kc_binary(d, KC_BIN_SUB, &bc, x, t, y);
    kc_unary(d, KC_UN_EXP, 0.0f, y, y, n);
    kc_reduce(d, KC_RED_SUM, &g, 1.0f, y, 0.0f, t);
    return kc_binary(d, KC_BIN_DIV, &bc, y, t, y);
}

int kc_softmax_forward(kc_device *d, kc_buf x, kc_buf y, int rows, int cols) {
    if (rows <= 0 || cols <= 0) return d->err.code;
    CALL_FUSED(KC_OP_SOFTMAX, NULL, softmax_forward, kc_fallback_softmax_forward, x, y, rows, cols);
}

/* dx = y (dy - sum(dy y)) per row */
int kc_fallback_softmax_backward(kc_device *d, kc_buf y, kc_buf dy, kc_buf dx, int rows, int cols) {
    size_t n = (size_t)rows * (size_t)cols;
    kc_buf t;
    int rc = scratch(d, n + (size_t)rows, &t);
    if (rc) return rc;
    kc_buf s = kc_buf_f(t, n);
    kc_reduce_desc g = {rows, cols, 1};
    kc_bcast bc = kc_bcast_cols((size_t)rows, (size_t)cols);
    kc_binary_n(d, KC_BIN_MUL, dy, y, t, n);
    kc_reduce(d, KC_RED_SUM, &g, 1.0f, t, 0.0f, s);
    kc_binary(d, KC_BIN_SUB, &bc, dy, s, t);
    return kc_binary_n(d, KC_BIN_MUL, y, t, dx, n);
}

int kc_softmax_backward(kc_device *d, kc_buf y, kc_buf dy, kc_buf dx, int rows, int cols) {
    if (rows <= 0 || cols <= 0) return d->err.code;
    CALL_FUSED(KC_OP_SOFTMAX, NULL, softmax_backward, kc_fallback_softmax_backward, y, dy, dx, rows,
               cols);
}

/* ------------------------------------------- convolution and pooling --- */

/* Patch matrices of compositions are built a chunk of images at a time, at
 * most this many floats (4 MiB, or one image), so the scratch stays bounded. */
#define COMPOSE_CHUNK_FLOATS ((size_t)1 << 20)

/* One kernel or pool tap: the outputs [oy0, oy1) x [ox0, ox1) whose window
 * cell at this tap is a real input cell, and the input cell (iy0, ix0) the
 * first of them reads. */
typedef struct tap {
    int64_t oy0, oy1, ox0, ox1;
    int64_t iy0, ix0;
} tap;

/* Outputs o in [*lo, *hi), within [0, on), with 0 <= o s + off < in. */
static void tap_range(int64_t off, int64_t s, int64_t in, int64_t on, int64_t *lo, int64_t *hi) {
    int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t last = in - 1 - off;
    int64_t b = last < 0 ? 0 : last / s + 1;
    if (b > on) b = on;
    *lo = a;
    *hi = b > a ? b : a;
}

/* The tap reading input row o*sh + offy, column o*sw + offx. */
static tap tap_at(int64_t offy, int64_t offx, int64_t sh, int64_t sw, int64_t h, int64_t w,
                  int64_t oh, int64_t ow) {
    tap t;
    tap_range(offy, sh, h, oh, &t.oy0, &t.oy1);
    tap_range(offx, sw, w, ow, &t.ox0, &t.ox1);
    t.iy0 = t.oy0 * sh + offy;
    t.ix0 = t.ox0 * sw + offx;
    return t;
}

static int tap_empty(const tap *t) {
    return t->oy1 <= t->oy0 || t->ox1 <= t->ox0;
}

static int tap_full(const tap *t, int64_t oh, int64_t ow) {
    return t->oy0 == 0 && t->oy1 == oh && t->ox0 == 0 && t->ox1 == ow;
}

/* The index space (images, tap rows, tap columns, channels) of a tap, with
 * the strides of both sides. */
static kc_copy_desc tap_copy(int64_t images, const tap *t, int64_t ch, const int64_t ss[4],
                             const int64_t ds[4]) {
    kc_copy_desc g = {.rank = 4, .dims = {images, t->oy1 - t->oy0, t->ox1 - t->ox0, ch}};
    for (int k = 0; k < 4; k++)
        g.ss[k] = ss[k], g.ds[k] = ds[k];
    return g;
}

/* ---- convolution: im2col, gemm, col2im ----
 * With NHWC input and an HWIO kernel, the patch matrix of a chunk of images
 * has one row per output pixel and kh*kw*c columns in kernel order (the
 * layout of the cpu backend's patch matrix), so
 *   forward          y    = col . W
 *   backward filter  dW   = beta dW + col^T . dy   (chunks added in order)
 *   backward data    dcol = dy . W^T, then each tap's columns added into dx.
 * A tap's columns are one strided copy: the outputs whose cell at that tap
 * is real read (or feed) one strided view of the images; the rest of the
 * patch matrix stays zero, which is the padding. */

typedef struct conv_plan {
    int64_t k;      /* patch length kh*kw*c */
    int64_t pixels; /* output pixels per image */
    int chunk;      /* images per patch matrix */
    int direct;     /* 1x1, stride 1, unpadded: the input is its own patch matrix */
    int padded;     /* some tap reads padding: the patch matrix starts at zero */
} conv_plan;

static int conv_extents_ok(const kc_conv2d_desc *g) {
    return g->n > 0 && g->h > 0 && g->w > 0 && g->c > 0 && g->kh > 0 && g->kw > 0 && g->oc > 0 &&
           g->sh > 0 && g->sw > 0 && g->dh > 0 && g->dw > 0 && g->oh > 0 && g->ow > 0;
}

static tap conv_tap(const kc_conv2d_desc *g, int ky, int kx) {
    return tap_at((int64_t)ky * g->dh - g->pad_t, (int64_t)kx * g->dw - g->pad_l, g->sh, g->sw,
                  g->h, g->w, g->oh, g->ow);
}

/* Fails when the products the gemms take do not fit an int. */
static int conv_plan_make(kc_device *d, const kc_conv2d_desc *g, conv_plan *p) {
    p->k = (int64_t)g->kh * g->kw * g->c;
    p->pixels = (int64_t)g->oh * g->ow;
    p->direct = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->pad_t == 0 &&
                g->pad_l == 0 && g->oh == g->h && g->ow == g->w;
    p->padded = 0;
    for (int ky = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++) {
            tap t = conv_tap(g, ky, kx);
            if (!tap_full(&t, g->oh, g->ow)) p->padded = 1;
        }
    int64_t rows = (int64_t)g->n * (p->direct ? (int64_t)g->h * g->w : p->pixels);
    if (p->k > INT32_MAX || rows > INT32_MAX || (int64_t)g->n * g->h * g->w > INT32_MAX)
        return kc_device_fail(d, KC_ECONFIG,
                              "conv2d composition: %d images of %dx%dx%d are too "
                              "large for one product",
                              g->n, g->h, g->w, g->c);
    size_t per_image = (size_t)p->pixels * (size_t)p->k;
    size_t fit = per_image ? COMPOSE_CHUNK_FLOATS / per_image : (size_t)g->n;
    p->chunk = fit < 1 ? 1 : fit > (size_t)g->n ? g->n : (int)fit;
    return KC_OK;
}

/* Tap k's columns of the patch matrix of images [0, nb) of img: im2col
 * (img -> col) or the accumulation of col2im (col -> img). */
static int patch_move(kc_device *d, const kc_conv2d_desc *g, const conv_plan *p, int nb,
                      const tap *t, int k, kc_buf img, kc_buf col, int to_col) {
    int64_t c = g->c, w = g->w;
    const int64_t is[4] = {(int64_t)g->h * w * c, g->sh * w * c, g->sw * c, 1};
    const int64_t cs[4] = {p->pixels * p->k, g->ow * p->k, p->k, 1};
    kc_buf at_img = kc_buf_f(img, (size_t)((t->iy0 * w + t->ix0) * c));
    kc_buf at_col = kc_buf_f(col, (size_t)((t->oy0 * g->ow + t->ox0) * p->k + k * c));
    if (to_col) {
        kc_copy_desc m = tap_copy(nb, t, c, is, cs);
        return kc_copy_strided(d, KC_COPY_SET, &m, at_img, at_col);
    }
    kc_copy_desc m = tap_copy(nb, t, c, cs, is);
    return kc_copy_strided(d, KC_COPY_ADD, &m, at_col, at_img);
}

/* The patch matrix of images [0, nb) of x. */
static int im2col(kc_device *d, const kc_conv2d_desc *g, const conv_plan *p, int nb, kc_buf x,
                  kc_buf col) {
    if (p->padded) kc_fill(d, col, 0.0f, (size_t)nb * (size_t)(p->pixels * p->k));
    for (int ky = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++) {
            tap t = conv_tap(g, ky, kx);
            if (!tap_empty(&t)) patch_move(d, g, p, nb, &t, ky * g->kw + kx, x, col, 1);
        }
    return d->err.code;
}

/* dx of images [0, nb) += every tap's columns of dcol, taps in kernel order. */
static int col2im(kc_device *d, const kc_conv2d_desc *g, const conv_plan *p, int nb, kc_buf col,
                  kc_buf dx) {
    for (int ky = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++) {
            tap t = conv_tap(g, ky, kx);
            if (!tap_empty(&t)) patch_move(d, g, p, nb, &t, ky * g->kw + kx, dx, col, 0);
        }
    return d->err.code;
}

static size_t image_floats(const kc_conv2d_desc *g) {
    return (size_t)g->h * g->w * g->c;
}

/* Element counts of a tensor's extents, 0 when one is not positive. */
static size_t extent4(int a, int b, int c, int e) {
    return a > 0 && b > 0 && c > 0 && e > 0 ? (size_t)a * b * c * e : 0;
}

int kc_fallback_conv2d_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w, kc_buf y,
                               kc_buf ws) {
    (void)ws;
    if (!conv_extents_ok(g)) /* nothing to sum: zeros */
        return kc_fill(d, y, 0.0f, extent4(g->n, g->oh, g->ow, g->oc));
    conv_plan p;
    kc_buf col;
    if (conv_plan_make(d, g, &p)) return d->err.code;
    if (p.direct)
        return kc_gemm(d, 0, 0, g->n * g->h * g->w, g->oc, g->c, 1.0f, x, g->c, w, g->oc, 0.0f, y,
                       g->oc);
    if (scratch(d, (size_t)p.chunk * (size_t)(p.pixels * p.k), &col)) return d->err.code;
    for (int i = 0; i < g->n; i += p.chunk) {
        int nb = g->n - i < p.chunk ? g->n - i : p.chunk;
        im2col(d, g, &p, nb, kc_buf_f(x, (size_t)i * image_floats(g)), col);
        kc_gemm(d, 0, 0, nb * (int)p.pixels, g->oc, (int)p.k, 1.0f, col, (int)p.k, w, g->oc, 0.0f,
                kc_buf_f(y, (size_t)i * (size_t)p.pixels * g->oc), g->oc);
    }
    return d->err.code;
}

int kc_fallback_conv2d_backward_data(kc_device *d, const kc_conv2d_desc *g, kc_buf dy, kc_buf w,
                                     kc_buf dx, kc_buf ws) {
    (void)ws;
    if (!conv_extents_ok(g)) return kc_fill(d, dx, 0.0f, extent4(g->n, g->h, g->w, g->c));
    conv_plan p;
    kc_buf col;
    if (conv_plan_make(d, g, &p)) return d->err.code;
    if (p.direct)
        return kc_gemm(d, 0, 1, g->n * g->h * g->w, g->c, g->oc, 1.0f, dy, g->oc, w, g->oc, 0.0f,
                       dx, g->c);
    if (scratch(d, (size_t)p.chunk * (size_t)(p.pixels * p.k), &col)) return d->err.code;
    kc_fill(d, dx, 0.0f, (size_t)g->n * image_floats(g));
    for (int i = 0; i < g->n; i += p.chunk) {
        int nb = g->n - i < p.chunk ? g->n - i : p.chunk;
        kc_gemm(d, 0, 1, nb * (int)p.pixels, (int)p.k, g->oc, 1.0f,
                kc_buf_f(dy, (size_t)i * (size_t)p.pixels * g->oc), g->oc, w, g->oc, 0.0f, col,
                (int)p.k);
        col2im(d, g, &p, nb, col, kc_buf_f(dx, (size_t)i * image_floats(g)));
    }
    return d->err.code;
}

int kc_fallback_conv2d_backward_filter(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf dy,
                                       kc_buf dw, float beta, kc_buf ws) {
    (void)ws;
    if (!conv_extents_ok(g)) { /* no pixels: dw = beta dw */
        size_t nw = extent4(g->kh, g->kw, g->c, g->oc);
        return beta == 0.0f   ? kc_fill(d, dw, 0.0f, nw)
               : beta != 1.0f ? kc_scale(d, dw, beta, nw)
                              : d->err.code;
    }
    conv_plan p;
    kc_buf col;
    if (conv_plan_make(d, g, &p)) return d->err.code;
    if (p.direct)
        return kc_gemm(d, 1, 0, g->c, g->oc, g->n * g->h * g->w, 1.0f, x, g->c, dy, g->oc, beta, dw,
                       g->oc);
    if (scratch(d, (size_t)p.chunk * (size_t)(p.pixels * p.k), &col)) return d->err.code;
    for (int i = 0; i < g->n; i += p.chunk) {
        int nb = g->n - i < p.chunk ? g->n - i : p.chunk;
        im2col(d, g, &p, nb, kc_buf_f(x, (size_t)i * image_floats(g)), col);
        kc_gemm(d, 1, 0, (int)p.k, g->oc, nb * (int)p.pixels, 1.0f, col, (int)p.k,
                kc_buf_f(dy, (size_t)i * (size_t)p.pixels * g->oc), g->oc, i ? 1.0f : beta, dw,
                g->oc);
    }
    return d->err.code;
}

/* ---- pooling: one strided view of the input per window cell ----
 * Window cell (ky, kx) of every output is one strided view of the input,
 * restricted to the outputs where that cell is real, so windows that
 * overhang the input ("same") cover only real cells. */

static int pool_extents_ok(const kc_pool2d_desc *g) {
    return g->n > 0 && g->h > 0 && g->w > 0 && g->c > 0 && g->ph > 0 && g->pw > 0 && g->sh > 0 &&
           g->sw > 0 && g->oh > 0 && g->ow > 0;
}

static size_t pool_in(const kc_pool2d_desc *g) {
    return (size_t)g->n * g->h * g->w * g->c;
}

static size_t pool_out(const kc_pool2d_desc *g) {
    return (size_t)g->n * g->oh * g->ow * g->c;
}

static tap pool_tap(const kc_pool2d_desc *g, int ky, int kx) {
    return tap_at((int64_t)ky - g->pad_t, (int64_t)kx - g->pad_l, g->sh, g->sw, g->h, g->w, g->oh,
                  g->ow);
}

/* Between the input view of a tap and the outputs it covers (dense NHWC),
 * from the input to the outputs (to_out) or back. */
static int pool_move(kc_device *d, const kc_pool2d_desc *g, const tap *t, kc_copy_mode mode,
                     int to_out, kc_buf in, kc_buf out) {
    int64_t c = g->c, w = g->w;
    const int64_t is[4] = {(int64_t)g->h * w * c, g->sh * w * c, g->sw * c, 1};
    const int64_t os[4] = {(int64_t)g->oh * g->ow * c, g->ow * c, c, 1};
    kc_buf at_in = kc_buf_f(in, (size_t)((t->iy0 * w + t->ix0) * c));
    kc_buf at_out = kc_buf_f(out, (size_t)((t->oy0 * g->ow + t->ox0) * c));
    kc_copy_desc m = to_out ? tap_copy(g->n, t, c, is, os) : tap_copy(g->n, t, c, os, is);
    return to_out ? kc_copy_strided(d, mode, &m, at_in, at_out)
                  : kc_copy_strided(d, mode, &m, at_out, at_in);
}

/* mark = 1 where the tap is real, 0 elsewhere (one is a device 1.0f). */
static int pool_mark(kc_device *d, const kc_pool2d_desc *g, const tap *t, kc_buf one, kc_buf mark) {
    const int64_t zero[4] = {0, 0, 0, 0};
    const int64_t os[4] = {(int64_t)g->oh * g->ow * g->c, (int64_t)g->ow * g->c, g->c, 1};
    kc_copy_desc m = tap_copy(g->n, t, g->c, zero, os);
    kc_fill(d, mark, 0.0f, pool_out(g));
    return kc_copy_strided(d, KC_COPY_SET, &m, one,
                           kc_buf_f(mark, (size_t)((t->oy0 * g->ow + t->ox0) * g->c)));
}

/* Window cell k in row-major order updates every output whose cell k is
 * real: best = x there when x > best, or when no real cell came before (the
 * first cell initialises, as in the reference backend, so the first maximum
 * wins and a NaN is kept only as a first cell). y and argmax (the winning
 * cell, as a float) are the running best. */
typedef struct max_bufs {
    kc_buf t, cond, mark, have, cell, one;
    int have_all; /* every output has had a real cell */
} max_bufs;

static void max_step(kc_device *d, const kc_pool2d_desc *g, const tap *t, int k, max_bufs *b,
                     kc_buf y, kc_buf argmax) {
    size_t no = pool_out(g);
    int full = tap_full(t, g->oh, g->ow);
    kc_binary_n(d, KC_BIN_GT, b->t, y, b->cond, no);
    if (!b->have_all) { /* cond += nothing real before */
        kc_unary(d, KC_UN_RSUB, 1.0f, b->have, b->mark, no);
        kc_binary_n(d, KC_BIN_ADD, b->cond, b->mark, b->cond, no);
    }
    if (!full) { /* only where the cell is real */
        pool_mark(d, g, t, b->one, b->mark);
        kc_binary_n(d, KC_BIN_MUL, b->cond, b->mark, b->cond, no);
    }
    kc_select(d, b->cond, b->t, y, y, no);
    kc_fill(d, b->cell, (float)k, no);
    kc_select(d, b->cond, b->cell, argmax, argmax, no);
    if (b->have_all) return;
    if (full) {
        b->have_all = 1;
    } else {
        kc_binary_n(d, KC_BIN_MAX, b->have, b->mark, b->have, no);
    }
}

/* A window without real cells gives 0 and argmax -1, as on the reference
 * backend. argmax holds window positions (see core/backend.h). */
int kc_fallback_maxpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y,
                                  kc_buf argmax) {
    if (!pool_extents_ok(g)) { /* no output has a real cell */
        size_t no = extent4(g->n, g->oh, g->ow, g->c);
        kc_fill(d, y, 0.0f, no);
        return kc_fill(d, argmax, -1.0f, no);
    }
    size_t no = pool_out(g);
    kc_buf s;
    if (scratch(d, 5 * no + 1, &s)) return d->err.code;
    max_bufs b = {.t = s,
                  .cond = kc_buf_f(s, no),
                  .mark = kc_buf_f(s, 2 * no),
                  .have = kc_buf_f(s, 3 * no),
                  .cell = kc_buf_f(s, 4 * no),
                  .one = kc_buf_f(s, 5 * no)};
    kc_fill(d, y, 0.0f, no);
    kc_fill(d, argmax, -1.0f, no);
    kc_fill(d, b.have, 0.0f, no);
    kc_fill(d, b.one, 1.0f, 1);
    for (int ky = 0; ky < g->ph; ky++)
        for (int kx = 0; kx < g->pw; kx++) {
            tap t = pool_tap(g, ky, kx);
            if (tap_empty(&t)) continue;
            pool_move(d, g, &t, KC_COPY_SET, 1, x, b.t);
            max_step(d, g, &t, ky * g->pw + kx, &b, y, argmax);
        }
    return d->err.code;
}

/* Each dy goes to the cell its argmax names: per window cell k, the dy of
 * the outputs that chose k, added into that cell's view of dx. */
int kc_fallback_maxpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf argmax,
                                   kc_buf dx) {
    if (!pool_extents_ok(g)) return kc_fill(d, dx, 0.0f, extent4(g->n, g->h, g->w, g->c));
    size_t no = pool_out(g);
    kc_buf t;
    if (scratch(d, no, &t)) return d->err.code;
    kc_fill(d, dx, 0.0f, pool_in(g));
    for (int ky = 0; ky < g->ph; ky++)
        for (int kx = 0; kx < g->pw; kx++) {
            tap tp = pool_tap(g, ky, kx);
            if (tap_empty(&tp)) continue;
            kc_unary(d, KC_UN_EQ, (float)(ky * g->pw + kx), argmax, t, no);
            kc_select(d, t, dy, t, t, no); /* dy where chosen, else the 0 of the test */
            pool_move(d, g, &tp, KC_COPY_ADD, 0, dx, t);
        }
    return d->err.code;
}

/* count[oy, ox] = the real cells of the window (Keras's divisor with "same"),
 * at least 1 so that a window without real cells gives 0. */
static int pool_counts(kc_device *d, const kc_pool2d_desc *g, kc_buf count, kc_buf one) {
    size_t cells = (size_t)g->oh * g->ow;
    kc_fill(d, count, 0.0f, cells);
    kc_fill(d, one, 1.0f, 1);
    for (int ky = 0; ky < g->ph; ky++)
        for (int kx = 0; kx < g->pw; kx++) {
            tap t = pool_tap(g, ky, kx);
            if (tap_empty(&t)) continue;
            kc_copy_desc m = {
                .rank = 2, .dims = {t.oy1 - t.oy0, t.ox1 - t.ox0}, .ss = {0, 0}, .ds = {g->ow, 1}};
            kc_copy_strided(d, KC_COPY_ADD, &m, one,
                            kc_buf_f(count, (size_t)(t.oy0 * g->ow + t.ox0)));
        }
    return kc_unary(d, KC_UN_MAX, 1.0f, count, count, cells);
}

/* v (n, oh, ow, c) /= count (oh, ow) */
static int divide_by_count(kc_device *d, const kc_pool2d_desc *g, kc_buf v, kc_buf count,
                           kc_buf out) {
    const int64_t a[3] = {g->n, (int64_t)g->oh * g->ow, g->c}, b[3] = {1, a[1], 1};
    kc_bcast bc;
    if (kc_bcast_make(&bc, a, 3, b, 3, NULL))
        return kc_device_fail(d, KC_ECONFIG, "avgpool2d composition: no broadcast geometry");
    return kc_binary(d, KC_BIN_DIV, &bc, v, count, out);
}

/* Sums of every window's real cells in row-major window order, divided by
 * their count. */
int kc_fallback_avgpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y) {
    if (!pool_extents_ok(g)) return kc_fill(d, y, 0.0f, extent4(g->n, g->oh, g->ow, g->c));
    size_t cells = (size_t)g->oh * g->ow;
    kc_buf count;
    if (scratch(d, cells + 1, &count)) return d->err.code;
    kc_fill(d, y, 0.0f, pool_out(g));
    for (int ky = 0; ky < g->ph; ky++)
        for (int kx = 0; kx < g->pw; kx++) {
            tap t = pool_tap(g, ky, kx);
            if (!tap_empty(&t)) pool_move(d, g, &t, KC_COPY_ADD, 1, x, y);
        }
    pool_counts(d, g, count, kc_buf_f(count, cells));
    return divide_by_count(d, g, y, count, y);
}

/* dy / count spread over every window's real cells, window cells in order. */
int kc_fallback_avgpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf dx) {
    if (!pool_extents_ok(g)) return kc_fill(d, dx, 0.0f, extent4(g->n, g->h, g->w, g->c));
    size_t cells = (size_t)g->oh * g->ow, no = pool_out(g);
    kc_buf q;
    if (scratch(d, no + cells + 1, &q)) return d->err.code;
    kc_buf count = kc_buf_f(q, no);
    pool_counts(d, g, count, kc_buf_f(count, cells));
    divide_by_count(d, g, dy, count, q);
    kc_fill(d, dx, 0.0f, pool_in(g));
    for (int ky = 0; ky < g->ph; ky++)
        for (int kx = 0; kx < g->pw; kx++) {
            tap t = pool_tap(g, ky, kx);
            if (!tap_empty(&t)) pool_move(d, g, &t, KC_COPY_ADD, 0, dx, q);
        }
    return d->err.code;
}

size_t kc_conv2d_workspace(const kc_device *d, const kc_conv2d_desc *g) {
    return kc_supports_op(d, KC_OP_CONV2D, g) ? d->be->conv2d_workspace(d, g) : 0;
}

int kc_conv2d_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w, kc_buf y,
                      kc_buf ws) {
    CALL_FUSED(KC_OP_CONV2D, g, conv2d_forward, kc_fallback_conv2d_forward, g, x, w, y, ws);
}

int kc_conv2d_backward_data(kc_device *d, const kc_conv2d_desc *g, kc_buf dy, kc_buf w, kc_buf dx,
                            kc_buf ws) {
    CALL_FUSED(KC_OP_CONV2D, g, conv2d_backward_data, kc_fallback_conv2d_backward_data, g, dy, w,
               dx, ws);
}

int kc_conv2d_backward_filter(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf dy, kc_buf dw,
                              float beta, kc_buf ws) {
    CALL_FUSED(KC_OP_CONV2D, g, conv2d_backward_filter, kc_fallback_conv2d_backward_filter, g, x,
               dy, dw, beta, ws);
}

int kc_maxpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y, kc_buf argmax) {
    CALL_FUSED(KC_OP_MAXPOOL2D, g, maxpool2d_forward, kc_fallback_maxpool2d_forward, g, x, y,
               argmax);
}

int kc_maxpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf argmax,
                          kc_buf dx) {
    CALL_FUSED(KC_OP_MAXPOOL2D, g, maxpool2d_backward, kc_fallback_maxpool2d_backward, g, dy,
               argmax, dx);
}

int kc_avgpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y) {
    CALL_FUSED(KC_OP_AVGPOOL2D, g, avgpool2d_forward, kc_fallback_avgpool2d_forward, g, x, y);
}

int kc_avgpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf dx) {
    CALL_FUSED(KC_OP_AVGPOOL2D, g, avgpool2d_backward, kc_fallback_avgpool2d_backward, g, dy, dx);
}

/* ---- norm projection ----
 * Axes of extent 1 are dropped and neighbours of one kind (spanning a slice
 * or indexing the slices) merged. With at most one group of spanning axes w
 * already is (outer, span, inner) for reduce; otherwise a strided copy lays
 * it out as (slices, span) and back. */

typedef struct norm_geom {
    int groups;
    int64_t ext[8], stride[8]; /* extent and element stride of each group in w */
    int spans[8];              /* the group spans a slice */
    int64_t slices, span, n;
} norm_geom;

/* The groups of w's axes, and its slice, span and element counts. */
static int norm_geometry(kc_device *d, const int64_t *dims, int rank, unsigned reduce,
                         norm_geom *o) {
    if (rank < 1 || rank > 8)
        return kc_device_fail(d, KC_ECONFIG, "norm_rescale: rank %d outside 1..8", rank);
    memset(o, 0, sizeof *o);
    o->slices = o->span = o->n = 1;
    int64_t stride = 1;
    for (int a = rank - 1; a >= 0; a--) { /* from the innermost axis out */
        if (dims[a] < 0 || __builtin_mul_overflow(o->n, dims[a], &o->n))
            return kc_device_fail(d, KC_ECONFIG, "norm_rescale: bad extent %lld",
                                  (long long)dims[a]);
        int spans = (int)((reduce >> a) & 1u);
        if (spans)
            o->span *= dims[a];
        else
            o->slices *= dims[a];
        if (dims[a] != 1) {
            int g = o->groups;
            if (g > 0 && o->spans[g - 1] == spans) {
                o->ext[g - 1] *= dims[a];
            } else {
                o->ext[g] = dims[a], o->stride[g] = stride, o->spans[g] = spans;
                o->groups++;
            }
        }
        stride *= dims[a];
    }
    /* groups were collected innermost first: put them in row-major order */
    for (int i = 0, j = o->groups - 1; i < j; i++, j--) {
        int64_t e = o->ext[i], s = o->stride[i];
        int k = o->spans[i];
        o->ext[i] = o->ext[j], o->stride[i] = o->stride[j], o->spans[i] = o->spans[j];
        o->ext[j] = e, o->stride[j] = s, o->spans[j] = k;
    }
    return KC_OK;
}

/* w's groups with the slice-indexing ones first: the copy from w to the
 * (slices, span) layout; `back` swaps the sides. */
static kc_copy_desc norm_transpose(const norm_geom *o, int back) {
    kc_copy_desc m = {.rank = o->groups};
    int order[8], r = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < o->groups; k++)
            if (o->spans[k] == pass) order[r++] = k;
    int64_t dense = 1;
    for (int i = r - 1; i >= 0; i--) {
        int k = order[i];
        m.dims[i] = o->ext[k];
        m.ss[i] = back ? dense : o->stride[k];
        m.ds[i] = back ? o->stride[k] : dense;
        dense *= o->ext[k];
    }
    return m;
}

/* f = (rate clip(norm, lo, hi) + (1 - rate) norm) / (eps + norm) in the
 * reference's float operations; `norm` holds the sums of squares on entry
 * and their square roots after; u is scratch. */
static int norm_factors(kc_device *d, kc_buf f, kc_buf norm, kc_buf u, size_t n, float lo, float hi,
                        float rate, float eps) {
    kc_unary(d, KC_UN_SQRT, 0.0f, norm, norm, n);
    kc_unary(d, KC_UN_MAX, lo, norm, f, n);
    kc_unary(d, KC_UN_MIN, hi, f, f, n);
    kc_unary(d, KC_UN_MUL, rate, f, f, n);
    kc_unary(d, KC_UN_MUL, 1.0f - rate, norm, u, n);
    kc_binary_n(d, KC_BIN_ADD, f, u, f, n);
    kc_unary(d, KC_UN_ADD, eps, norm, u, n);
    return kc_binary_n(d, KC_BIN_DIV, f, u, f, n);
}

int kc_fallback_norm_rescale(kc_device *d, kc_buf w, const int64_t *dims, int rank, unsigned reduce,
                             float lo, float hi, float rate, float eps) {
    norm_geom o;
    if (norm_geometry(d, dims, rank, reduce, &o) || o.n == 0) return d->err.code;
    int nspan = 0, first = -1;
    for (int k = 0; k < o.groups; k++)
        if (o.spans[k]) nspan++, first = first < 0 ? k : first;
    int moved = nspan > 1;
    size_t slices = (size_t)o.slices, span = (size_t)o.span;
    kc_buf s;
    if (scratch(d, (moved ? (size_t)o.n : 0) + 3 * slices, &s)) return d->err.code;
    kc_buf wt = moved ? s : w, sums = kc_buf_f(s, moved ? (size_t)o.n : 0);
    kc_buf f = kc_buf_f(sums, slices), u = kc_buf_f(f, slices);
    /* (outer, span, inner) of w, or (slices, span, 1) of its copy */
    int64_t inner = 1;
    if (!moved && nspan == 1)
        for (int k = first + 1; k < o.groups; k++)
            inner *= o.ext[k];
    if (moved) {
        kc_copy_desc m = norm_transpose(&o, 0);
        kc_copy_strided(d, KC_COPY_SET, &m, w, wt);
    }
    int64_t outer = o.slices / inner;
    kc_reduce_desc rd = {outer, (int64_t)span, inner};
    kc_reduce(d, KC_RED_SUMSQ, &rd, 1.0f, wt, 0.0f, sums);
    norm_factors(d, f, sums, u, slices, lo, hi, rate, eps);
    const int64_t a[3] = {outer, (int64_t)span, inner}, b[3] = {outer, 1, inner};
    kc_bcast bc;
    if (kc_bcast_make(&bc, a, 3, b, 3, NULL))
        return kc_device_fail(d, KC_ECONFIG, "norm_rescale composition: no broadcast geometry");
    kc_binary(d, KC_BIN_MUL, &bc, wt, f, wt);
    if (moved) {
        kc_copy_desc m = norm_transpose(&o, 1);
        kc_copy_strided(d, KC_COPY_SET, &m, wt, w);
    }
    return d->err.code;
}

int kc_norm_rescale(kc_device *d, kc_buf w, const int64_t *dims, int rank, unsigned reduce,
                    float lo, float hi, float rate, float eps) {
    CALL_FUSED(KC_OP_NORM_RESCALE, NULL, norm_rescale, kc_fallback_norm_rescale, w, dims, rank,
               reduce, lo, hi, rate, eps);
}

/* (x a) / b */
int kc_fallback_scale_div(kc_device *d, kc_buf x, kc_buf y, float a, float b, size_t n) {
    kc_unary(d, KC_UN_MUL, a, x, y, n);
    return kc_unary(d, KC_UN_DIV, b, y, y, n);
}

int kc_scale_div(kc_device *d, kc_buf x, kc_buf y, float a, float b, size_t n) {
    if (!n) return d->err.code;
    CALL_FUSED(KC_OP_SCALE_DIV, NULL, scale_div, kc_fallback_scale_div, x, y, a, b, n);
}

int kc_fallback_clip(kc_device *d, kc_buf x, kc_buf y, float lo, float hi, size_t n) {
    kc_unary(d, KC_UN_MAX, lo, x, y, n);
    return kc_unary(d, KC_UN_MIN, hi, y, y, n);
}

int kc_clip(kc_device *d, kc_buf x, kc_buf y, float lo, float hi, size_t n) {
    if (!n) return d->err.code;
    CALL_FUSED(KC_OP_CLIP, NULL, clip, kc_fallback_clip, x, y, lo, hi, n);
}

/* w -= (w wd) lr */
int kc_fallback_weight_decay(kc_device *d, kc_buf w, float wd, float lr, size_t n) {
    kc_buf t;
    int rc = scratch(d, n, &t);
    if (rc) return rc;
    kc_unary(d, KC_UN_MUL, wd, w, t, n);
    kc_unary(d, KC_UN_MUL, lr, t, t, n);
    return kc_binary_n(d, KC_BIN_SUB, w, t, w, n);
}

int kc_weight_decay(kc_device *d, kc_buf w, float wd, float lr, size_t n) {
    if (!n) return d->err.code;
    CALL_FUSED(KC_OP_WEIGHT_DECAY, NULL, weight_decay, kc_fallback_weight_decay, w, wd, lr, n);
}

/* momentum 0: w -= lr g; else v = m v - lr g, w += v (nesterov: w += m v - lr g) */
int kc_fallback_sgd_update(kc_device *d, kc_buf w, kc_buf g, kc_buf v, size_t n, float lr,
                           float momentum, int nesterov) {
    kc_buf t;
    int rc = scratch(d, 2 * n, &t);
    if (rc) return rc;
    kc_buf u = kc_buf_f(t, n);
    kc_unary(d, KC_UN_MUL, lr, g, t, n); /* lr g */
    if (momentum == 0.0f || !kc_buf_ok(v)) return kc_binary_n(d, KC_BIN_SUB, w, t, w, n);
    kc_unary(d, KC_UN_MUL, momentum, v, v, n);
    kc_binary_n(d, KC_BIN_SUB, v, t, v, n);
    if (!nesterov) return kc_binary_n(d, KC_BIN_ADD, w, v, w, n);
    kc_unary(d, KC_UN_MUL, momentum, v, u, n);
    kc_binary_n(d, KC_BIN_SUB, u, t, u, n);
    return kc_binary_n(d, KC_BIN_ADD, w, u, w, n);
}

int kc_sgd_update(kc_device *d, kc_buf w, kc_buf g, kc_buf v, size_t n, float lr, float momentum,
                  int nesterov) {
    if (!n) return d->err.code;
    CALL_FUSED(KC_OP_SGD, NULL, sgd_update, kc_fallback_sgd_update, w, g, v, n, lr, momentum,
               nesterov);
}

/* ms = rho ms + omr g^2; centered: mg = rho mg + omr g, d = ms - mg^2 + eps,
 * else d = ms + eps; inc = (lr g) / sqrt(d); w -= inc, or with momentum
 * mom = momentum mom + inc, w -= mom */
int kc_fallback_rmsprop_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ms, kc_buf mg, kc_buf mom,
                               size_t n, float lr, float rho, float one_minus_rho, float momentum,
                               float eps, int centered) {
    kc_buf t;
    if (scratch(d, 2 * n, &t)) return d->err.code;
    kc_buf u = kc_buf_f(t, n);
    int use_mg = centered && kc_buf_ok(mg), use_mom = momentum > 0.0f && kc_buf_ok(mom);
    kc_unary(d, KC_UN_SQUARE, 0.0f, g, t, n);
    kc_unary(d, KC_UN_MUL, one_minus_rho, t, t, n);
    kc_unary(d, KC_UN_MUL, rho, ms, ms, n);
    kc_binary_n(d, KC_BIN_ADD, ms, t, ms, n);
    if (use_mg) {
        kc_unary(d, KC_UN_MUL, one_minus_rho, g, t, n);
        kc_unary(d, KC_UN_MUL, rho, mg, mg, n);
        kc_binary_n(d, KC_BIN_ADD, mg, t, mg, n);
        kc_unary(d, KC_UN_SQUARE, 0.0f, mg, t, n);
        kc_binary_n(d, KC_BIN_SUB, ms, t, t, n);
        kc_unary(d, KC_UN_ADD, eps, t, t, n);
    } else {
        kc_unary(d, KC_UN_ADD, eps, ms, t, n);
    }
    kc_unary(d, KC_UN_SQRT, 0.0f, t, t, n);
    kc_unary(d, KC_UN_MUL, lr, g, u, n);
    kc_binary_n(d, KC_BIN_DIV, u, t, u, n);
    if (!use_mom) return kc_binary_n(d, KC_BIN_SUB, w, u, w, n);
    kc_unary(d, KC_UN_MUL, momentum, mom, mom, n);
    kc_binary_n(d, KC_BIN_ADD, mom, u, mom, n);
    return kc_binary_n(d, KC_BIN_SUB, w, mom, w, n);
}

int kc_rmsprop_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ms, kc_buf mg, kc_buf mom, size_t n,
                      float lr, float rho, float one_minus_rho, float momentum, float eps,
                      int centered) {
    if (!n) return d->err.code;
    CALL_FUSED(KC_OP_RMSPROP, NULL, rmsprop_update, kc_fallback_rmsprop_update, w, g, ms, mg, mom,
               n, lr, rho, one_minus_rho, momentum, eps, centered);
}

/* m += (g - m) omb1; v += (g^2 - v) omb2; (amsgrad: vhat = max(vhat, v));
 * w -= (m alpha) / (sqrt(v) + eps) */
int kc_fallback_adam_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, kc_buf vhat,
                            size_t n, float alpha, float one_minus_b1, float one_minus_b2,
                            float eps, int amsgrad) {
    kc_buf t;
    int rc = scratch(d, 2 * n, &t);
    if (rc) return rc;
    kc_buf u = kc_buf_f(t, n);
    kc_binary_n(d, KC_BIN_SUB, g, m, t, n);
    kc_unary(d, KC_UN_MUL, one_minus_b1, t, t, n);
    kc_binary_n(d, KC_BIN_ADD, m, t, m, n);
    kc_unary(d, KC_UN_SQUARE, 0.0f, g, t, n);
    kc_binary_n(d, KC_BIN_SUB, t, v, t, n);
    kc_unary(d, KC_UN_MUL, one_minus_b2, t, t, n);
    kc_binary_n(d, KC_BIN_ADD, v, t, v, n);
    kc_buf vv = v;
    if (amsgrad && kc_buf_ok(vhat)) {
        kc_binary_n(d, KC_BIN_MAX, vhat, v, vhat, n);
        vv = vhat;
    }
    kc_unary(d, KC_UN_SQRT, 0.0f, vv, t, n);
    kc_unary(d, KC_UN_ADD, eps, t, t, n);
    kc_unary(d, KC_UN_MUL, alpha, m, u, n);
    kc_binary_n(d, KC_BIN_DIV, u, t, u, n);
    return kc_binary_n(d, KC_BIN_SUB, w, u, w, n);
}

int kc_adam_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, kc_buf vhat, size_t n,
                   float alpha, float one_minus_b1, float one_minus_b2, float eps, int amsgrad) {
    if (!n) return d->err.code;
    CALL_FUSED(KC_OP_ADAM, NULL, adam_update, kc_fallback_adam_update, w, g, m, v, vhat, n, alpha,
               one_minus_b1, one_minus_b2, eps, amsgrad);
}

/* acc += g^2; w -= (lr g) / sqrt(acc + eps) */
int kc_fallback_adagrad_update(kc_device *d, kc_buf w, kc_buf g, kc_buf acc, size_t n, float lr,
                               float eps) {
    kc_buf t;
    int rc = scratch(d, 2 * n, &t);
    if (rc) return rc;
    kc_buf u = kc_buf_f(t, n);
    kc_unary(d, KC_UN_SQUARE, 0.0f, g, t, n);
    kc_binary_n(d, KC_BIN_ADD, acc, t, acc, n);
    kc_unary(d, KC_UN_ADD, eps, acc, t, n);
    kc_unary(d, KC_UN_SQRT, 0.0f, t, t, n);
    kc_unary(d, KC_UN_MUL, lr, g, u, n);
    kc_binary_n(d, KC_BIN_DIV, u, t, u, n);
    return kc_binary_n(d, KC_BIN_SUB, w, u, w, n);
}

int kc_adagrad_update(kc_device *d, kc_buf w, kc_buf g, kc_buf acc, size_t n, float lr, float eps) {
    if (!n) return d->err.code;
    CALL_FUSED(KC_OP_ADAGRAD, NULL, adagrad_update, kc_fallback_adagrad_update, w, g, acc, n, lr,
               eps);
}

/* ag = rho ag + omr g^2; d = -((sqrt(ad + eps) g) / sqrt(ag + eps));
 * ad = rho ad + omr d^2; w += lr d */
int kc_fallback_adadelta_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ag, kc_buf ad, size_t n,
                                float lr, float rho, float one_minus_rho, float eps) {
    kc_buf t;
    if (scratch(d, 2 * n, &t)) return d->err.code;
    kc_buf u = kc_buf_f(t, n);
    kc_unary(d, KC_UN_SQUARE, 0.0f, g, t, n);
    kc_unary(d, KC_UN_MUL, one_minus_rho, t, t, n);
    kc_unary(d, KC_UN_MUL, rho, ag, ag, n);
    kc_binary_n(d, KC_BIN_ADD, ag, t, ag, n);
    kc_unary(d, KC_UN_ADD, eps, ad, t, n);
    kc_unary(d, KC_UN_SQRT, 0.0f, t, t, n);
    kc_binary_n(d, KC_BIN_MUL, t, g, t, n);
    kc_unary(d, KC_UN_ADD, eps, ag, u, n);
    kc_unary(d, KC_UN_SQRT, 0.0f, u, u, n);
    kc_binary_n(d, KC_BIN_DIV, t, u, t, n);
    kc_unary(d, KC_UN_NEG, 0.0f, t, t, n); /* the step d */
    kc_unary(d, KC_UN_SQUARE, 0.0f, t, u, n);
    kc_unary(d, KC_UN_MUL, one_minus_rho, u, u, n);
    kc_unary(d, KC_UN_MUL, rho, ad, ad, n);
    kc_binary_n(d, KC_BIN_ADD, ad, u, ad, n);
    kc_unary(d, KC_UN_MUL, lr, t, t, n);
    return kc_binary_n(d, KC_BIN_ADD, w, t, w, n);
}

int kc_adadelta_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ag, kc_buf ad, size_t n, float lr,
                       float rho, float one_minus_rho, float eps) {
    if (!n) return d->err.code;
    CALL_FUSED(KC_OP_ADADELTA, NULL, adadelta_update, kc_fallback_adadelta_update, w, g, ag, ad, n,
               lr, rho, one_minus_rho, eps);
}

/* m += (g - m) omb1; u = b2 u > |g| ? b2 u : |g| (a NaN gradient reaches u);
 * w -= (lr m) / (omb1p (u + eps)) */
int kc_fallback_adamax_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf u, size_t n,
                              float lr, float one_minus_b1, float b2, float one_minus_b1_power,
                              float eps) {
    kc_buf t;
    if (scratch(d, 2 * n, &t)) return d->err.code;
    kc_buf s = kc_buf_f(t, n);
    kc_binary_n(d, KC_BIN_SUB, g, m, t, n);
    kc_unary(d, KC_UN_MUL, one_minus_b1, t, t, n);
    kc_binary_n(d, KC_BIN_ADD, m, t, m, n);
    kc_unary(d, KC_UN_MUL, b2, u, t, n); /* decayed */
    kc_unary(d, KC_UN_ABS, 0.0f, g, s, n);
    kc_binary_n(d, KC_BIN_GT, t, s, u, n);
    kc_select(d, u, t, s, u, n);
    kc_unary(d, KC_UN_ADD, eps, u, t, n);
    kc_unary(d, KC_UN_MUL, one_minus_b1_power, t, t, n);
    kc_unary(d, KC_UN_MUL, lr, m, s, n);
    kc_binary_n(d, KC_BIN_DIV, s, t, s, n);
    return kc_binary_n(d, KC_BIN_SUB, w, s, w, n);
}

int kc_adamax_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf u, size_t n, float lr,
                     float one_minus_b1, float b2, float one_minus_b1_power, float eps) {
    if (!n) return d->err.code;
    CALL_FUSED(KC_OP_ADAMAX, NULL, adamax_update, kc_fallback_adamax_update, w, g, m, u, n, lr,
               one_minus_b1, b2, one_minus_b1_power, eps);
}

/* m += (g - m) omb1; v += (g^2 - v) omb2;
 * mh = (u_next m) / omp_next + (omu g) / omp; w -= (mh lr) / (sqrt(v / omb2p) + eps) */
int kc_fallback_nadam_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, size_t n,
                             const kc_nadam_coef *c) {
    kc_buf t;
    if (scratch(d, 2 * n, &t)) return d->err.code;
    kc_buf s = kc_buf_f(t, n);
    kc_binary_n(d, KC_BIN_SUB, g, m, t, n);
    kc_unary(d, KC_UN_MUL, c->one_minus_b1, t, t, n);
    kc_binary_n(d, KC_BIN_ADD, m, t, m, n);
    kc_unary(d, KC_UN_SQUARE, 0.0f, g, t, n);
    kc_binary_n(d, KC_BIN_SUB, t, v, t, n);
    kc_unary(d, KC_UN_MUL, c->one_minus_b2, t, t, n);
    kc_binary_n(d, KC_BIN_ADD, v, t, v, n);
    kc_unary(d, KC_UN_MUL, c->u_next, m, t, n);
    kc_unary(d, KC_UN_DIV, c->one_minus_prod_next, t, t, n);
    kc_unary(d, KC_UN_MUL, c->one_minus_u, g, s, n);
    kc_unary(d, KC_UN_DIV, c->one_minus_prod, s, s, n);
    kc_binary_n(d, KC_BIN_ADD, t, s, t, n); /* m_hat */
    kc_unary(d, KC_UN_DIV, c->one_minus_b2_power, v, s, n);
    kc_unary(d, KC_UN_SQRT, 0.0f, s, s, n);
    kc_unary(d, KC_UN_ADD, c->eps, s, s, n);
    kc_unary(d, KC_UN_MUL, c->lr, t, t, n);
    kc_binary_n(d, KC_BIN_DIV, t, s, t, n);
    return kc_binary_n(d, KC_BIN_SUB, w, t, w, n);
}

int kc_nadam_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, size_t n,
                    const kc_nadam_coef *c) {
    if (!n) return d->err.code;
    CALL_FUSED(KC_OP_NADAM, NULL, nadam_update, kc_fallback_nadam_update, w, g, m, v, n, c);
}

/* w -= lr sign(m b1 + g (1 - b1)); m = m b2 + g (1 - b2) */
int kc_fallback_lion_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, size_t n, float lr,
                            float b1, float b2) {
    kc_buf t;
    if (scratch(d, 2 * n, &t)) return d->err.code;
    kc_buf s = kc_buf_f(t, n);
    kc_unary(d, KC_UN_MUL, b1, m, t, n);
    kc_unary(d, KC_UN_MUL, 1.0f - b1, g, s, n);
    kc_binary_n(d, KC_BIN_ADD, t, s, t, n);
    kc_unary(d, KC_UN_SIGN, 0.0f, t, t, n);
    kc_unary(d, KC_UN_MUL, lr, t, t, n);
    kc_binary_n(d, KC_BIN_SUB, w, t, w, n);
    kc_unary(d, KC_UN_MUL, b2, m, m, n);
    kc_unary(d, KC_UN_MUL, 1.0f - b2, g, s, n);
    return kc_binary_n(d, KC_BIN_ADD, m, s, m, n);
}

int kc_lion_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, size_t n, float lr, float b1,
                   float b2) {
    if (!n) return d->err.code;
    CALL_FUSED(KC_OP_LION, NULL, lion_update, kc_fallback_lion_update, w, g, m, n, lr, b1, b2);
}

/* ------------------------------- random normals, softmax over an axis --- */

int kc_rng_normal_fill(kc_device *d, kc_buf y, size_t n, float mean, float stddev, uint64_t seed,
                       uint64_t stream) {
    if (!n) return d->err.code;
    CALL(rng_normal, y, n, mean, stddev, seed, stream);
}

/* x viewed as (outer, len, inner), and the per-(outer, inner) row statistic */
static int axis_bcast(kc_device *d, const kc_reduce_desc *g, kc_bcast *bc) {
    int64_t a[3] = {g->outer, g->len, g->inner}, b[3] = {g->outer, 1, g->inner};
    if (kc_bcast_make(bc, a, 3, b, 3, NULL))
        return kc_device_fail(d, KC_ECONFIG, "softmax geometry %lld x %lld x %lld",
                              (long long)g->outer, (long long)g->len, (long long)g->inner);
    return KC_OK;
}

static int axis_sizes(kc_device *d, const kc_reduce_desc *g, size_t *n, size_t *rows) {
    size_t on;
    if (g->outer < 0 || g->len < 0 || g->inner < 0 ||
        __builtin_mul_overflow((size_t)g->outer, (size_t)g->inner, rows) ||
        __builtin_mul_overflow(*rows, (size_t)g->len, &on) || on > SIZE_MAX / 8 - *rows * 2)
        return kc_device_fail(d, KC_ECONFIG, "softmax geometry overflows");
    *n = on;
    return KC_OK;
}

/* y = x - max - log(sum exp(x - max)) (log) or exp(x - max) / sum (not log) */
int kc_softmax_axis_forward(kc_device *d, int log, const kc_reduce_desc *g, kc_buf x, kc_buf y) {
    size_t n, rows;
    if (d->err.code || axis_sizes(d, g, &n, &rows) || !n) return d->err.code;
    if (!log && g->inner == 1 && g->outer <= 0x7fffffff && g->len <= 0x7fffffff)
        return kc_softmax_forward(d, x, y, (int)g->outer, (int)g->len);
    kc_bcast bc;
    kc_buf t;
    if (axis_bcast(d, g, &bc) || scratch(d, n + 2 * rows, &t)) return d->err.code;
    kc_buf m = kc_buf_f(t, n), s = kc_buf_f(t, n + rows);
    kc_reduce(d, KC_RED_MAX, g, 1.0f, x, 0.0f, m);
    kc_binary(d, KC_BIN_SUB, &bc, x, m, t);
    kc_unary(d, KC_UN_EXP, 0.0f, t, t, n);
    kc_reduce(d, KC_RED_SUM, g, 1.0f, t, 0.0f, s);
    if (!log) return kc_binary(d, KC_BIN_DIV, &bc, t, s, y);
    kc_unary(d, KC_UN_LOG, 0.0f, s, s, rows);
    kc_binary_n(d, KC_BIN_ADD, m, s, m, rows);
    return kc_binary(d, KC_BIN_SUB, &bc, x, m, y);
}

/* dx = y (dy - sum(dy y)) (softmax) or dy - exp(y) sum(dy) (log softmax) */
int kc_softmax_axis_backward(kc_device *d, int log, const kc_reduce_desc *g, kc_buf y, kc_buf dy,
                             kc_buf dx) {
    size_t n, rows;
    if (d->err.code || axis_sizes(d, g, &n, &rows) || !n) return d->err.code;
    if (!log && g->inner == 1 && g->outer <= 0x7fffffff && g->len <= 0x7fffffff)
        return kc_softmax_backward(d, y, dy, dx, (int)g->outer, (int)g->len);
    kc_bcast bc;
    kc_buf t;
    if (axis_bcast(d, g, &bc) || scratch(d, n + rows, &t)) return d->err.code;
    kc_buf s = kc_buf_f(t, n);
    if (!log) {
        kc_binary_n(d, KC_BIN_MUL, dy, y, t, n);
        kc_reduce(d, KC_RED_SUM, g, 1.0f, t, 0.0f, s);
        kc_binary(d, KC_BIN_SUB, &bc, dy, s, t);
        return kc_binary_n(d, KC_BIN_MUL, y, t, dx, n);
    }
    kc_reduce(d, KC_RED_SUM, g, 1.0f, dy, 0.0f, s);
    kc_unary(d, KC_UN_EXP, 0.0f, y, t, n);
    kc_binary(d, KC_BIN_MUL, &bc, t, s, t);
    return kc_binary_n(d, KC_BIN_SUB, dy, t, dx, n);
}

/* ------------------------------------------------ depthwise convolution --- */

/* Per kernel tap, a chunk of images is one product of views:
 *   P (rows, c)     the tap's view of x (zero where it reads padding)
 *   T (rows, c, m)  P broadcast against the tap's (c, m) slice of w or
 *                   against dy
 * forward adds T into y, backward data reduces T over m and adds the tap's
 * view back into dx, backward filter reduces T over the rows into the tap's
 * slice of dw; taps and chunks run in a fixed order. */

typedef struct dw_plan {
    int64_t m, pixels;
    int chunk;
} dw_plan;

static int dw_extents_ok(const kc_conv2d_desc *g) {
    return conv_extents_ok(g) && g->oc % g->c == 0;
}

static int dw_plan_make(kc_device *d, const kc_conv2d_desc *g, dw_plan *p) {
    p->m = g->oc / g->c;
    p->pixels = (int64_t)g->oh * g->ow;
    size_t per_image = (size_t)p->pixels * (size_t)g->c * (size_t)(p->m + 1);
    if ((int64_t)g->n * g->h * g->w * g->oc > INT64_MAX / 8 || per_image > SIZE_MAX / 8)
        return kc_device_fail(d, KC_ECONFIG, "depthwise conv2d composition: too large");
    size_t fit = COMPOSE_CHUNK_FLOATS / per_image;
    p->chunk = fit < 1 ? 1 : fit > (size_t)g->n ? g->n : (int)fit;
    return KC_OK;
}

/* P = tap t's view of images [0, nb) of x (to_p), or img += that view of P. */
static int dw_move(kc_device *d, const kc_conv2d_desc *g, const dw_plan *p, int nb, const tap *t,
                   kc_buf img, kc_buf pm, int to_p) {
    int64_t c = g->c, w = g->w;
    const int64_t is[4] = {(int64_t)g->h * w * c, g->sh * w * c, g->sw * c, 1};
    const int64_t ps[4] = {p->pixels * c, g->ow * c, c, 1};
    kc_buf at_img = kc_buf_f(img, (size_t)((t->iy0 * w + t->ix0) * c));
    kc_buf at_p = kc_buf_f(pm, (size_t)((t->oy0 * g->ow + t->ox0) * c));
    if (to_p) {
        if (!tap_full(t, g->oh, g->ow)) kc_fill(d, pm, 0.0f, (size_t)nb * (size_t)(p->pixels * c));
        kc_copy_desc m = tap_copy(nb, t, c, is, ps);
        return kc_copy_strided(d, KC_COPY_SET, &m, at_img, at_p);
    }
    kc_copy_desc m = tap_copy(nb, t, c, ps, is);
    return kc_copy_strided(d, KC_COPY_ADD, &m, at_p, at_img);
}

/* (rows, c, m) = a * b, numpy broadcasting: a is (rows, c, 1) or (rows, c, m)
 * (a_full), b is (c, m) or (rows, c, m) (b_full). */
static int dw_product(kc_device *d, int64_t rows, int64_t c, int64_t m, int a_full, int b_full,
                      kc_buf a, kc_buf b, kc_buf y) {
    const int64_t sa[3] = {rows, c, a_full ? m : 1}, sb[3] = {rows, c, m};
    kc_bcast bc;
    if (kc_bcast_make(&bc, sa, 3, b_full ? sb : sb + 1, b_full ? 3 : 2, NULL))
        return kc_device_fail(d, KC_ECONFIG, "depthwise conv2d composition: bad geometry");
    return kc_binary(d, KC_BIN_MUL, &bc, a, b, y);
}

static int dw_scratch(kc_device *d, const kc_conv2d_desc *g, dw_plan *p, kc_buf *pm, kc_buf *tm) {
    if (dw_plan_make(d, g, p)) return d->err.code;
    size_t pf = (size_t)p->chunk * (size_t)p->pixels * (size_t)g->c;
    if (scratch(d, pf * (size_t)(p->m + 1), pm)) return d->err.code;
    *tm = kc_buf_f(*pm, pf);
    return KC_OK;
}

int kc_fallback_depthwise_conv2d_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w,
                                         kc_buf y) {
    if (!dw_extents_ok(g)) return kc_fill(d, y, 0.0f, extent4(g->n, g->oh, g->ow, g->oc));
    dw_plan p;
    kc_buf pm, tm;
    if (dw_scratch(d, g, &p, &pm, &tm)) return d->err.code;
    int64_t c = g->c, m = p.m;
    kc_fill(d, y, 0.0f, extent4(g->n, g->oh, g->ow, g->oc));
    for (int i = 0; i < g->n; i += p.chunk) {
        int nb = g->n - i < p.chunk ? g->n - i : p.chunk;
        int64_t rows = nb * p.pixels;
        kc_buf yi = kc_buf_f(y, (size_t)i * (size_t)p.pixels * g->oc);
        for (int ky = 0; ky < g->kh; ky++)
            for (int kx = 0; kx < g->kw; kx++) {
                tap t = conv_tap(g, ky, kx);
                if (tap_empty(&t)) continue;
                dw_move(d, g, &p, nb, &t, kc_buf_f(x, (size_t)i * image_floats(g)), pm, 1);
                kc_buf wt = kc_buf_f(w, (size_t)(ky * g->kw + kx) * (size_t)g->oc);
                dw_product(d, rows, c, m, 0, 0, pm, wt, tm);
                kc_axpy(d, 1.0f, tm, yi, (size_t)(rows * g->oc));
            }
    }
    return d->err.code;
}

int kc_fallback_depthwise_conv2d_backward_data(kc_device *d, const kc_conv2d_desc *g, kc_buf dy,
                                               kc_buf w, kc_buf dx) {
    if (!dw_extents_ok(g)) return kc_fill(d, dx, 0.0f, extent4(g->n, g->h, g->w, g->c));
    dw_plan p;
    kc_buf pm, tm;
    if (dw_scratch(d, g, &p, &pm, &tm)) return d->err.code;
    int64_t c = g->c, m = p.m;
    kc_fill(d, dx, 0.0f, (size_t)g->n * image_floats(g));
    for (int i = 0; i < g->n; i += p.chunk) {
        int nb = g->n - i < p.chunk ? g->n - i : p.chunk;
        int64_t rows = nb * p.pixels;
        kc_buf dyi = kc_buf_f(dy, (size_t)i * (size_t)p.pixels * g->oc);
        kc_reduce_desc over_m = {rows * c, m, 1};
        for (int ky = 0; ky < g->kh; ky++)
            for (int kx = 0; kx < g->kw; kx++) {
                tap t = conv_tap(g, ky, kx);
                if (tap_empty(&t)) continue;
                kc_buf wt = kc_buf_f(w, (size_t)(ky * g->kw + kx) * (size_t)g->oc);
                dw_product(d, rows, c, m, 1, 0, dyi, wt, tm);
                kc_reduce(d, KC_RED_SUM, &over_m, 1.0f, tm, 0.0f, pm);
                dw_move(d, g, &p, nb, &t, kc_buf_f(dx, (size_t)i * image_floats(g)), pm, 0);
            }
    }
    return d->err.code;
}

int kc_fallback_depthwise_conv2d_backward_filter(kc_device *d, const kc_conv2d_desc *g, kc_buf x,
                                                 kc_buf dy, kc_buf dw, float beta) {
    size_t nw = extent4(g->kh, g->kw, g->oc, 1);
    if (!dw_extents_ok(g))
        return beta == 0.0f   ? kc_fill(d, dw, 0.0f, nw)
               : beta != 1.0f ? kc_scale(d, dw, beta, nw)
                              : d->err.code;
    dw_plan p;
    kc_buf pm, tm;
    if (dw_scratch(d, g, &p, &pm, &tm)) return d->err.code;
    int64_t c = g->c, m = p.m;
    for (int i = 0; i < g->n; i += p.chunk) {
        int nb = g->n - i < p.chunk ? g->n - i : p.chunk;
        int64_t rows = nb * p.pixels;
        kc_buf dyi = kc_buf_f(dy, (size_t)i * (size_t)p.pixels * g->oc);
        kc_reduce_desc over_rows = {1, rows, c * m};
        for (int ky = 0; ky < g->kh; ky++)
            for (int kx = 0; kx < g->kw; kx++) {
                kc_buf wt = kc_buf_f(dw, (size_t)(ky * g->kw + kx) * (size_t)g->oc);
                tap t = conv_tap(g, ky, kx);
                float b = i ? 1.0f : beta;
                if (tap_empty(&t)) { /* this tap reads only padding */
                    if (b != 1.0f) kc_scale(d, wt, b, (size_t)g->oc);
                    continue;
                }
                dw_move(d, g, &p, nb, &t, kc_buf_f(x, (size_t)i * image_floats(g)), pm, 1);
                dw_product(d, rows, c, m, 0, 1, pm, dyi, tm);
                kc_reduce(d, KC_RED_SUM, &over_rows, 1.0f, tm, b, wt);
            }
    }
    return d->err.code;
}

int kc_depthwise_conv2d_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w,
                                kc_buf y) {
    CALL_FUSED(KC_OP_DEPTHWISE_CONV2D, g, depthwise_conv2d_forward,
               kc_fallback_depthwise_conv2d_forward, g, x, w, y);
}

int kc_depthwise_conv2d_backward_data(kc_device *d, const kc_conv2d_desc *g, kc_buf dy, kc_buf w,
                                      kc_buf dx) {
    CALL_FUSED(KC_OP_DEPTHWISE_CONV2D, g, depthwise_conv2d_backward_data,
               kc_fallback_depthwise_conv2d_backward_data, g, dy, w, dx);
}

int kc_depthwise_conv2d_backward_filter(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf dy,
                                        kc_buf dw, float beta) {
    CALL_FUSED(KC_OP_DEPTHWISE_CONV2D, g, depthwise_conv2d_backward_filter,
               kc_fallback_depthwise_conv2d_backward_filter, g, x, dy, dw, beta);
}

/* ---------------------------------------------------- embedding lookup --- */

/* A chunk of ids at a time is one product with a one-hot matrix:
 *   iota (rows)        0, 1, 2, ... built by doubling (exact below 2^24)
 *   H    (nb, rows)    H[i, r] = (ids[i] == r), a zero row for an invalid id
 * forward y = H w, backward dw += H^T dy; chunks run in order. */

typedef struct emb_plan {
    size_t chunk;
    kc_buf iota, hot;
} emb_plan;

static int emb_plan_make(kc_device *d, size_t n, size_t rows, size_t dim, emb_plan *p) {
    if (rows > ((size_t)1 << 24) || dim > INT_MAX || n > INT_MAX)
        return kc_device_fail(d, KC_ECONFIG,
                              "embedding composition: %zu rows of %zu floats for %zu ids is too "
                              "large (at most 2^24 rows)",
                              rows, dim, n);
    size_t fit = COMPOSE_CHUNK_FLOATS / rows;
    p->chunk = fit < 1 ? 1 : fit > n ? n : fit;
    if (scratch(d, rows + p->chunk * rows, &p->iota)) return d->err.code;
    p->hot = kc_buf_f(p->iota, rows);
    kc_fill(d, p->iota, 0.0f, 1);
    for (size_t k = 1; k < rows; k *= 2)
        kc_unary(d, KC_UN_ADD, (float)k, p->iota, kc_buf_f(p->iota, k),
                 k < rows - k ? k : rows - k);
    return d->err.code;
}

/* H for ids [i, i + nb) */
static int emb_one_hot(kc_device *d, const emb_plan *p, kc_buf ids, size_t nb, size_t rows) {
    const int64_t sa[2] = {1, (int64_t)rows}, sb[2] = {(int64_t)nb, 1};
    kc_bcast g;
    if (kc_bcast_make(&g, sa, 2, sb, 2, NULL))
        return kc_device_fail(d, KC_ECONFIG, "embedding composition: bad geometry");
    return kc_binary(d, KC_BIN_EQ, &g, p->iota, ids, p->hot);
}

int kc_fallback_embedding_forward(kc_device *d, kc_buf ids, kc_buf w, kc_buf y, size_t n,
                                  size_t rows, size_t dim) {
    if (!n || !dim) return d->err.code;
    if (!rows) return kc_fill(d, y, 0.0f, n * dim);
    emb_plan p;
    if (emb_plan_make(d, n, rows, dim, &p)) return d->err.code;
    for (size_t i = 0; i < n; i += p.chunk) {
        size_t nb = n - i < p.chunk ? n - i : p.chunk;
        emb_one_hot(d, &p, kc_buf_f(ids, i), nb, rows);
        kc_gemm(d, 0, 0, (int)nb, (int)dim, (int)rows, 1.0f, p.hot, (int)rows, w, (int)dim, 0.0f,
                kc_buf_f(y, i * dim), (int)dim);
    }
    return d->err.code;
}

int kc_fallback_embedding_backward(kc_device *d, kc_buf ids, kc_buf dy, kc_buf dw, size_t n,
                                   size_t rows, size_t dim) {
    if (!n || !dim || !rows) return d->err.code;
    emb_plan p;
    if (emb_plan_make(d, n, rows, dim, &p)) return d->err.code;
    for (size_t i = 0; i < n; i += p.chunk) {
        size_t nb = n - i < p.chunk ? n - i : p.chunk;
        emb_one_hot(d, &p, kc_buf_f(ids, i), nb, rows);
        kc_gemm(d, 1, 0, (int)rows, (int)dim, (int)nb, 1.0f, p.hot, (int)rows,
                kc_buf_f(dy, i * dim), (int)dim, 1.0f, dw, (int)dim);
    }
    return d->err.code;
}

static int emb_extents_ok(kc_device *d, size_t n, size_t rows, size_t dim) {
    if ((dim && n > SIZE_MAX / 4 / dim) || (dim && rows > SIZE_MAX / 4 / dim))
        return kc_device_fail(
            d, KC_ECONFIG, "embedding: %zu ids or %zu rows of %zu floats overflow", n, rows, dim);
    return KC_OK;
}

int kc_embedding_forward(kc_device *d, kc_buf ids, kc_buf w, kc_buf y, size_t n, size_t rows,
                         size_t dim) {
    if (d->err.code || emb_extents_ok(d, n, rows, dim)) return d->err.code;
    CALL_FUSED(KC_OP_EMBEDDING, NULL, embedding_forward, kc_fallback_embedding_forward, ids, w, y,
               n, rows, dim);
}

int kc_embedding_backward(kc_device *d, kc_buf ids, kc_buf dy, kc_buf dw, size_t n, size_t rows,
                          size_t dim) {
    if (d->err.code || emb_extents_ok(d, n, rows, dim)) return d->err.code;
    CALL_FUSED(KC_OP_EMBEDDING, NULL, embedding_backward, kc_fallback_embedding_backward, ids, dy,
               dw, n, rows, dim);
}

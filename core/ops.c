/* Dispatch from the op API (core/ops.h) to a device's backend table, with
 * compositions for the fused ops a backend leaves out. */
#include "core/ops.h"

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
    case KC_OP_MUL: return be->mul != NULL;
    case KC_OP_BIAS_ADD: return be->bias_add != NULL;
    case KC_OP_BIAS_GRAD: return be->bias_grad != NULL;
    case KC_OP_GEMM_BATCHED: return be->gemm_batched != NULL;
    case KC_OP_SOFTMAX: return be->softmax_forward && be->softmax_backward;
    case KC_OP_CONV2D:
        return be->conv2d_workspace && be->conv2d_forward && be->conv2d_backward_data &&
               be->conv2d_backward_filter;
    case KC_OP_MAXPOOL2D: return be->maxpool2d_forward && be->maxpool2d_backward;
    case KC_OP_AVGPOOL2D: return be->avgpool2d_forward && be->avgpool2d_backward;
    case KC_OP_NORM_RESCALE: return be->norm_rescale != NULL;
    case KC_OP_SCALE_DIV: return be->scale_div != NULL;
    case KC_OP_CLIP: return be->clip != NULL;
    case KC_OP_WEIGHT_DECAY: return be->weight_decay != NULL;
    case KC_OP_SGD: return be->sgd_update != NULL;
    case KC_OP_RMSPROP: return be->rmsprop_update != NULL;
    case KC_OP_ADAM: return be->adam_update != NULL;
    case KC_OP_ADAGRAD: return be->adagrad_update != NULL;
    case KC_OP_ADADELTA: return be->adadelta_update != NULL;
    case KC_OP_ADAMAX: return be->adamax_update != NULL;
    case KC_OP_NADAM: return be->nadam_update != NULL;
    case KC_OP_LION: return be->lion_update != NULL;
    case KC_OP_COUNT: break;
    }
    return 0;
}

int kc_supports_op(const kc_device *d, kc_op op, const void *desc) {
    if (!slot_present(d->be, op)) return 0;
    return d->be->supports_op ? d->be->supports_op(d, op, desc) : 1;
}

/* The fused ops core/ops.c can build from primitives. */
static int composable(kc_op op) {
    switch (op) {
    case KC_OP_MUL:
    case KC_OP_BIAS_ADD:
    case KC_OP_BIAS_GRAD:
    case KC_OP_GEMM_BATCHED:
    case KC_OP_SOFTMAX:
    case KC_OP_SCALE_DIV:
    case KC_OP_CLIP:
    case KC_OP_WEIGHT_DECAY:
    case KC_OP_SGD:
    case KC_OP_ADAM:
    case KC_OP_ADAGRAD: return 1;
    default: return 0;
    }
}

int kc_op_available(const kc_device *d, kc_op op, const void *desc) {
    return kc_supports_op(d, op, desc) || composable(op);
}

static const char *const op_names[KC_OP_COUNT] = {
    [KC_OP_MUL] = "mul",
    [KC_OP_BIAS_ADD] = "bias_add",
    [KC_OP_BIAS_GRAD] = "bias_grad",
    [KC_OP_GEMM_BATCHED] = "gemm_batched",
    [KC_OP_SOFTMAX] = "softmax",
    [KC_OP_CONV2D] = "conv2d",
    [KC_OP_MAXPOOL2D] = "maxpool2d",
    [KC_OP_AVGPOOL2D] = "avgpool2d",
    [KC_OP_NORM_RESCALE] = "norm_rescale",
    [KC_OP_SCALE_DIV] = "scale_div",
    [KC_OP_CLIP] = "clip",
    [KC_OP_WEIGHT_DECAY] = "weight_decay",
    [KC_OP_SGD] = "sgd_update",
    [KC_OP_RMSPROP] = "rmsprop_update",
    [KC_OP_ADAM] = "adam_update",
    [KC_OP_ADAGRAD] = "adagrad_update",
    [KC_OP_ADADELTA] = "adadelta_update",
    [KC_OP_ADAMAX] = "adamax_update",
    [KC_OP_NADAM] = "nadam_update",
    [KC_OP_LION] = "lion_update",
};

static int missing(kc_device *d, kc_op op) {
    return kc_device_fail(d, KC_ECONFIG,
                          "the %s backend does not implement %s, and it has no composition",
                          d->be->name, op_names[op]);
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
    kc_bcast g = {.rank = 2,
                  .dims = {(int64_t)rows, (int64_t)cols},
                  .sa = {(int64_t)cols, 1},
                  .sb = {0, 1}};
    return g;
}

kc_bcast kc_bcast_cols(size_t rows, size_t cols) {
    kc_bcast g = {.rank = 2,
                  .dims = {(int64_t)rows, (int64_t)cols},
                  .sa = {(int64_t)cols, 1},
                  .sb = {1, 0}};
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

int kc_act_backward(kc_device *d, kc_act act, float alpha, kc_buf x, kc_buf y, kc_buf dy,
                    kc_buf dx, size_t n) {
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
                             kc_buf a, int lda, size_t sa, kc_buf b, int ldb, size_t sb,
                             float beta, kc_buf c, int ldc, size_t sc, int batch) {
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
    CALL_FUSED(KC_OP_SOFTMAX, NULL, softmax_forward, kc_fallback_softmax_forward, x, y, rows,
               cols);
}

/* dx = y (dy - sum(dy y)) per row */
int kc_fallback_softmax_backward(kc_device *d, kc_buf y, kc_buf dy, kc_buf dx, int rows,
                                 int cols) {
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
    CALL_FUSED(KC_OP_SOFTMAX, NULL, softmax_backward, kc_fallback_softmax_backward, y, dy, dx,
               rows, cols);
}

size_t kc_conv2d_workspace(const kc_device *d, const kc_conv2d_desc *g) {
    return kc_supports_op(d, KC_OP_CONV2D, g) ? d->be->conv2d_workspace(d, g) : 0;
}

#define CALL_NATIVE(op, desc, slot, ...)                                                           \
    do {                                                                                           \
        if (d->err.code) return d->err.code;                                                       \
        if (!kc_supports_op(d, op, desc)) return missing(d, op);                                   \
        return checked(d, d->be->slot(d, __VA_ARGS__), #slot);                                     \
    } while (0)

int kc_conv2d_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w, kc_buf y,
                      kc_buf ws) {
    CALL_NATIVE(KC_OP_CONV2D, g, conv2d_forward, g, x, w, y, ws);
}

int kc_conv2d_backward_data(kc_device *d, const kc_conv2d_desc *g, kc_buf dy, kc_buf w, kc_buf dx,
                            kc_buf ws) {
    CALL_NATIVE(KC_OP_CONV2D, g, conv2d_backward_data, g, dy, w, dx, ws);
}

int kc_conv2d_backward_filter(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf dy,
                              kc_buf dw, float beta, kc_buf ws) {
    CALL_NATIVE(KC_OP_CONV2D, g, conv2d_backward_filter, g, x, dy, dw, beta, ws);
}

int kc_maxpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y,
                         kc_buf argmax) {
    CALL_NATIVE(KC_OP_MAXPOOL2D, g, maxpool2d_forward, g, x, y, argmax);
}

int kc_maxpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf argmax,
                          kc_buf dx) {
    CALL_NATIVE(KC_OP_MAXPOOL2D, g, maxpool2d_backward, g, dy, argmax, dx);
}

int kc_avgpool2d_forward(kc_device *d, const kc_pool2d_desc *g, kc_buf x, kc_buf y) {
    CALL_NATIVE(KC_OP_AVGPOOL2D, g, avgpool2d_forward, g, x, y);
}

int kc_avgpool2d_backward(kc_device *d, const kc_pool2d_desc *g, kc_buf dy, kc_buf dx) {
    CALL_NATIVE(KC_OP_AVGPOOL2D, g, avgpool2d_backward, g, dy, dx);
}

int kc_norm_rescale(kc_device *d, kc_buf w, const int64_t *dims, int rank, unsigned reduce,
                    float lo, float hi, float rate, float eps) {
    CALL_NATIVE(KC_OP_NORM_RESCALE, NULL, norm_rescale, w, dims, rank, reduce, lo, hi, rate, eps);
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

int kc_rmsprop_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ms, kc_buf mg, kc_buf mom, size_t n,
                      float lr, float rho, float one_minus_rho, float momentum, float eps,
                      int centered) {
    if (!n) return d->err.code;
    CALL_NATIVE(KC_OP_RMSPROP, NULL, rmsprop_update, w, g, ms, mg, mom, n, lr, rho, one_minus_rho,
                momentum, eps, centered);
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

int kc_adadelta_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ag, kc_buf ad, size_t n, float lr,
                       float rho, float one_minus_rho, float eps) {
    if (!n) return d->err.code;
    CALL_NATIVE(KC_OP_ADADELTA, NULL, adadelta_update, w, g, ag, ad, n, lr, rho, one_minus_rho,
                eps);
}

int kc_adamax_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf u, size_t n, float lr,
                     float one_minus_b1, float b2, float one_minus_b1_power, float eps) {
    if (!n) return d->err.code;
    CALL_NATIVE(KC_OP_ADAMAX, NULL, adamax_update, w, g, m, u, n, lr, one_minus_b1, b2,
                one_minus_b1_power, eps);
}

int kc_nadam_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, size_t n,
                    const kc_nadam_coef *c) {
    if (!n) return d->err.code;
    CALL_NATIVE(KC_OP_NADAM, NULL, nadam_update, w, g, m, v, n, c);
}

int kc_lion_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, size_t n, float lr, float b1,
                   float b2) {
    if (!n) return d->err.code;
    CALL_NATIVE(KC_OP_LION, NULL, lion_update, w, g, m, n, lr, b1, b2);
}

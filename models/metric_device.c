/* The metrics of models/metrics.c on device ops: each update reduces one
 * batch to a few numbers (a sum and a count, confusion counts, or per
 * threshold counts) and adds them to counters that stay on the device until
 * read. Nothing here reads the device, and no op needs atomics: AUC's per
 * threshold counts come from a broadcast comparison of every prediction with
 * every threshold, reduced over the predictions. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops.h"
#include "models/loss_device.h"

/* Floats of AUC's prediction x threshold comparison matrix; larger batches
 * go through it in chunks. */
#define AUC_MATRIX_FLOATS (1u << 21)

#define NEG_INF_SCORE (-1e10f) /* Keras's NEG_INF for predictions outside top_k */

static int is_loss_mean(kc_metric_kind k) {
    switch (k) {
    case KC_METRIC_MEAN_ABSOLUTE_PERCENTAGE_ERROR:
    case KC_METRIC_MEAN_SQUARED_LOGARITHMIC_ERROR:
    case KC_METRIC_LOG_COSH_ERROR:
    case KC_METRIC_POISSON:
    case KC_METRIC_HINGE:
    case KC_METRIC_SQUARED_HINGE:
    case KC_METRIC_CATEGORICAL_HINGE:
    case KC_METRIC_COSINE_SIMILARITY:
        return 1;
    default:
        return 0;
    }
}

/* Running means whose per-sample value is a mean over the columns: the
 * counter holds the sum over every element, divided by cols when read. */
static int per_element(kc_metric_kind k) {
    return k == KC_METRIC_ACCURACY || k == KC_METRIC_BINARY_ACCURACY ||
           k == KC_METRIC_MEAN_SQUARED_ERROR || k == KC_METRIC_MEAN_ABSOLUTE_ERROR;
}

static kc_buf batch_slot(const kc_metric_device *md, int i) {
    return kc_buf_f(md->acc, (size_t)(2 * md->ncount + i));
}

/* slot += alpha R(x) over `len` values */
static void add_to(kc_metric_device *md, int slot, kc_reduce_op op, kc_buf x, size_t len,
                   float alpha) {
    kc_reduce_desc g = {1, (int64_t)len, 1};
    kc_reduce(md->d, op, &g, alpha, x, 1.0f, batch_slot(md, slot));
}

static void per_row(kc_metric_device *md, kc_reduce_op op, kc_buf x, kc_buf y, int rows) {
    kc_reduce_desc g = {rows, md->cols, 1};
    kc_reduce(md->d, op, &g, 1.0f, x, 0.0f, y);
}

/* y (rows x cols) = [label[r] == j]; label holds one class index per row. */
static void one_hot(kc_metric_device *md, kc_buf label, kc_buf y, int rows) {
    int64_t a[2] = {rows, 1}, b[2] = {1, md->cols};
    kc_bcast g;
    if (kc_bcast_make(&g, a, 2, b, 2, NULL)) {
        kc_device_fail(md->d, KC_ECONFIG, "metric: no broadcast for %d x %d", rows, md->cols);
        return;
    }
    kc_binary(md->d, KC_BIN_EQ, &g, label, md->iota, y);
}

/* ---- running means ----
 * With a mask (md->mask) row r counts with weight mask[r]: in the total its
 * value times the weight, in the count the weight (Keras's sample weights). */

/* the count slot: the batch's rows, or the sum of their weights */
static void count_rows(kc_metric_device *md, int rows) {
    if (kc_buf_ok(md->mask))
        add_to(md, 1, KC_RED_SUM, md->mask, (size_t)rows, 1.0f);
    else
        kc_fill(md->d, batch_slot(md, 1), (float)rows, 1);
}

/* total += sum of x (one value per row) */
static void add_rows(kc_metric_device *md, kc_buf x, int rows) {
    if (kc_buf_ok(md->mask)) kc_binary_n(md->d, KC_BIN_MUL, x, md->mask, x, (size_t)rows);
    add_to(md, 0, KC_RED_SUM, x, (size_t)rows, 1.0f);
}

/* total += sum of x (rows x cols elements), each row by its weight; `op`
 * squares or takes the absolute value first (KC_RED_SUMSQ, KC_RED_SUMABS) */
static void add_elements(kc_metric_device *md, kc_reduce_op op, kc_buf x, int rows) {
    size_t n = (size_t)rows * (size_t)md->cols;
    if (kc_buf_ok(md->mask)) {
        if (op != KC_RED_SUM)
            kc_unary(md->d, op == KC_RED_SUMSQ ? KC_UN_SQUARE : KC_UN_ABS, 0.0f, x, x, n);
        kc_bcast g = kc_bcast_cols((size_t)rows, (size_t)md->cols);
        kc_binary(md->d, KC_BIN_MUL, &g, x, md->mask, x);
        op = KC_RED_SUM;
    }
    add_to(md, 0, op, x, n, 1.0f);
}

static void update_mean(kc_metric_device *md, kc_buf P, kc_buf T, int rows) {
    kc_device *d = md->d;
    size_t n = (size_t)rows * (size_t)md->cols;
    kc_buf w0 = md->w[0], r0 = md->r[0], r1 = md->r[1];
    count_rows(md, rows);
    switch (md->kind) {
    case KC_METRIC_ACCURACY:
        kc_binary_n(d, KC_BIN_EQ, T, P, w0, n);
        add_elements(md, KC_RED_SUM, w0, rows);
        break;
    case KC_METRIC_BINARY_ACCURACY:
        kc_unary(d, KC_UN_GT, md->threshold, P, w0, n);
        kc_binary_n(d, KC_BIN_EQ, T, w0, w0, n);
        add_elements(md, KC_RED_SUM, w0, rows);
        break;
    case KC_METRIC_CATEGORICAL_ACCURACY:
        per_row(md, KC_RED_ARGMAX, T, r0, rows);
        per_row(md, KC_RED_ARGMAX, P, r1, rows);
        kc_binary_n(d, KC_BIN_EQ, r0, r1, r0, (size_t)rows);
        add_rows(md, r0, rows);
        break;
    case KC_METRIC_SPARSE_CATEGORICAL_ACCURACY:
        per_row(md, KC_RED_ARGMAX, P, r0, rows);
        kc_binary_n(d, KC_BIN_EQ, T, r0, r0, (size_t)rows);
        add_rows(md, r0, rows);
        break;
    case KC_METRIC_MEAN_SQUARED_ERROR:
    case KC_METRIC_MEAN_ABSOLUTE_ERROR:
        kc_binary_n(d, KC_BIN_SUB, P, T, w0, n);
        add_elements(md, md->kind == KC_METRIC_MEAN_SQUARED_ERROR ? KC_RED_SUMSQ : KC_RED_SUMABS,
                     w0, rows);
        break;
    default:
        break;
    }
}

/* TensorFlow's in_top_k: v = the target's score, in when fewer than k scores
 * are strictly greater and v is finite. Scores of other classes are masked
 * to -inf before the max, so a row whose label matches no class (or whose
 * target score is not finite) never counts. */
static void update_top_k(kc_metric_device *md, kc_buf P, kc_buf T, int rows) {
    kc_device *d = md->d;
    size_t n = (size_t)rows * (size_t)md->cols;
    kc_buf hot = md->w[0], tmp = md->w[1], v = md->r[1], higher = md->r[2];
    count_rows(md, rows);
    if (md->kind == KC_METRIC_TOP_K_CATEGORICAL_ACCURACY) {
        per_row(md, KC_RED_ARGMAX, T, md->r[0], rows);
        one_hot(md, md->r[0], hot, rows);
    } else {
        one_hot(md, T, hot, rows);
    }
    kc_select(d, hot, P, md->neg_inf, tmp, n);
    per_row(md, KC_RED_MAX, tmp, v, rows);
    kc_bcast g = kc_bcast_cols((size_t)rows, (size_t)md->cols);
    kc_binary(d, KC_BIN_GT, &g, P, v, tmp);
    per_row(md, KC_RED_SUM, tmp, higher, rows);
    kc_unary(d, KC_UN_LT, (float)md->k, higher, higher, (size_t)rows);
    kc_unary(d, KC_UN_ABS, 0.0f, v, v, (size_t)rows);
    kc_unary(d, KC_UN_LT, INFINITY, v, v, (size_t)rows);
    kc_binary_n(d, KC_BIN_MUL, higher, v, higher, (size_t)rows);
    add_rows(md, higher, rows);
}

/* ---- precision and recall: counters tp, fp, pos, neg ---- */

static void update_precision_recall(kc_metric_device *md, kc_buf P, kc_buf T, int rows) {
    kc_device *d = md->d;
    size_t n = (size_t)rows * (size_t)md->cols;
    kc_buf w0 = md->w[0], kept = md->w[1], positive = md->w[2], negative = md->w[3];
    if (md->top_k) {
        /* TensorFlow's top_k keeps exactly k, the lower index first among
         * ties: k rounds of (first) argmax, each taking its winner out. -inf
         * scores become -FLT_MAX so that a taken one (-inf) sorts below them. */
        kc_unary(d, KC_UN_MAX, -FLT_MAX, P, w0, n);
        kc_fill(d, kept, 0.0f, n);
        int rounds = md->top_k < md->cols ? md->top_k : md->cols;
        for (int i = 0; i < rounds; i++) {
            per_row(md, KC_RED_ARGMAX, w0, md->r[0], rows);
            one_hot(md, md->r[0], positive, rows);
            kc_binary_n(d, KC_BIN_ADD, kept, positive, kept, n);
            kc_select(d, positive, md->neg_inf, w0, w0, n);
        }
    }
    kc_unary(d, KC_UN_GT, md->threshold, P, positive, n);
    if (md->top_k) {
        /* a dropped prediction scores NEG_INF_SCORE: positive = kept ? p > th : c */
        float c = NEG_INF_SCORE > md->threshold ? 1.0f : 0.0f;
        if (c != 0.0f) kc_unary(d, KC_UN_ADD, -c, positive, positive, n);
        kc_binary_n(d, KC_BIN_MUL, positive, kept, positive, n);
        if (c != 0.0f) kc_unary(d, KC_UN_ADD, c, positive, positive, n);
    }
    kc_unary(d, KC_UN_EQ, 0.0f, T, negative, n);
    kc_buf label = w0;
    kc_unary(d, KC_UN_RSUB, 1.0f, negative, label, n);
    if (md->class_id >= 0) {
        kc_bcast g = kc_bcast_rows((size_t)rows, (size_t)md->cols);
        kc_binary(d, KC_BIN_MUL, &g, label, md->column, label);
        kc_binary(d, KC_BIN_MUL, &g, negative, md->column, negative);
    }
    kc_binary_n(d, KC_BIN_MUL, label, positive, kept, n);
    add_to(md, 0, KC_RED_SUM, kept, n, 1.0f);
    kc_binary_n(d, KC_BIN_MUL, negative, positive, kept, n);
    add_to(md, 1, KC_RED_SUM, kept, n, 1.0f);
    add_to(md, 2, KC_RED_SUM, label, n, 1.0f);
    add_to(md, 3, KC_RED_SUM, negative, n, 1.0f);
}

/* ---- AUC: counters tp[i], fp[i] positive at threshold i, then pos, neg ----
 * The host counts per bucket (positive at 0..b and no further); the device
 * counts per threshold, the bucket counts' suffix sums, which read() turns
 * back into buckets. */

static void update_auc(kc_metric_device *md, kc_buf P, kc_buf T, int rows) {
    kc_device *d = md->d;
    int nt = md->nthresholds;
    size_t total = (size_t)rows * (size_t)md->cols;
    kc_buf above = md->w[0], score = md->w[1], label = md->w[2];
    for (size_t e0 = 0; e0 < total; e0 += (size_t)md->chunk) {
        size_t len = total - e0 < (size_t)md->chunk ? total - e0 : (size_t)md->chunk;
        kc_buf x = kc_buf_f(P, e0), t = kc_buf_f(T, e0);
        if (md->from_logits) {
            kc_unary(d, KC_UN_SIGMOID, 0.0f, x, score, len);
            x = score;
        }
        int64_t a[2] = {(int64_t)len, 1}, b[2] = {1, nt};
        kc_bcast g;
        if (kc_bcast_make(&g, a, 2, b, 2, NULL)) {
            kc_device_fail(d, KC_ECONFIG, "AUC: no broadcast for %zu x %d", len, nt);
            return;
        }
        if (md->evenly) {
            /* Keras's bucket max(ceil(clip(p, 0, 1) (n - 1)) - 1, 0) in float32;
             * positive at threshold i when bucket >= i. NaN stays NaN and is
             * positive nowhere, as on the host. */
            kc_clip(d, x, score, 0.0f, 1.0f, len);
            kc_unary(d, KC_UN_MUL, (float)(nt - 1), score, score, len);
            kc_unary(d, KC_UN_NEG, 0.0f, score, score, len);
            kc_unary(d, KC_UN_FLOOR, 0.0f, score, score, len);
            kc_unary(d, KC_UN_NEG, 0.0f, score, score, len);
            kc_unary(d, KC_UN_ADD, -1.0f, score, score, len);
            kc_unary(d, KC_UN_MAX, 0.0f, score, score, len);
            kc_binary(d, KC_BIN_GE, &g, score, md->thr, above);
        } else {
            kc_binary(d, KC_BIN_GT, &g, x, md->thr, above);
        }
        kc_reduce_desc over = {1, (int64_t)len, nt};
        kc_reduce(d, KC_RED_SUM, &over, 1.0f, above, 1.0f, batch_slot(md, nt));
        kc_unary(d, KC_UN_EQ, 0.0f, t, label, len);
        add_to(md, 2 * nt + 1, KC_RED_SUM, label, len, 1.0f);
        kc_unary(d, KC_UN_RSUB, 1.0f, label, label, len);
        add_to(md, 2 * nt, KC_RED_SUM, label, len, 1.0f);
        kc_bcast bl = kc_bcast_cols(len, (size_t)nt);
        kc_binary(d, KC_BIN_MUL, &bl, above, label, above);
        kc_reduce(d, KC_RED_SUM, &over, 1.0f, above, 1.0f, batch_slot(md, 0));
        kc_reduce(d, KC_RED_SUM, &over, -1.0f, above, 1.0f, batch_slot(md, nt));
    }
}

/* ---- counters ---- */

/* value += batch with Kahan's compensation: y = batch - c, t = value + y,
 * c = (t - value) - y, value = t. Each op rounds to float32 on its own, so
 * no compiler can fold the compensation away. */
int kc_kahan_add(kc_device *d, kc_buf acc, size_t k) {
    kc_buf value = acc, comp = kc_buf_f(acc, k), batch = kc_buf_f(acc, 2 * k),
           y = kc_buf_f(acc, 3 * k), t = kc_buf_f(acc, 4 * k);
    kc_binary_n(d, KC_BIN_SUB, batch, comp, y, k);
    kc_binary_n(d, KC_BIN_ADD, value, y, t, k);
    kc_binary_n(d, KC_BIN_SUB, t, value, comp, k);
    kc_binary_n(d, KC_BIN_SUB, comp, y, comp, k);
    return kc_copy(d, value, t, k * sizeof(float));
}

int kc_metric_device_update(kc_metric_device *md, kc_buf pred, kc_buf target, int rows) {
    return kc_metric_device_update_masked(md, pred, target, rows, KC_BUF_NULL);
}

int kc_metric_device_plan_mask(kc_metric_device *md, kc_error *e) {
    int rc = md->has_loss ? kc_loss_device_plan_mask(&md->loss, e) : KC_OK;
    if (!rc) md->mask_planned = 1;
    return rc;
}

int kc_metric_device_update_masked(kc_metric_device *md, kc_buf pred, kc_buf target, int rows,
                                   kc_buf mask) {
    kc_device *d = md->d;
    if (d->err.code) return d->err.code;
    if (rows > md->max_rows)
        return kc_device_fail(d, KC_ECONFIG, "metric: a batch of %d rows, planned for %d", rows,
                              md->max_rows);
    if (kc_buf_ok(mask) && !md->mask_planned)
        return kc_device_fail(d, KC_ECONFIG, "metric: a mask without kc_metric_device_plan_mask");
    if (rows <= 0) return KC_OK;
    md->mask = mask;
    kc_fill(d, batch_slot(md, 0), 0.0f, (size_t)md->ncount);
    switch (md->kind) {
    case KC_METRIC_PRECISION:
    case KC_METRIC_RECALL:
        update_precision_recall(md, pred, target, rows);
        break;
    case KC_METRIC_AUC:
        update_auc(md, pred, target, rows);
        break;
    case KC_METRIC_TOP_K_CATEGORICAL_ACCURACY:
    case KC_METRIC_SPARSE_TOP_K_CATEGORICAL_ACCURACY:
        update_top_k(md, pred, target, rows);
        break;
    default:
        if (md->has_loss) {
            /* reduction "sum": the mask weighs each row's value */
            count_rows(md, rows);
            float sign = md->kind == KC_METRIC_COSINE_SIMILARITY ? -1.0f : 1.0f;
            kc_loss_device_run_masked(&md->loss, pred, target, rows, 0.0f, KC_BUF_NULL,
                                      batch_slot(md, 0), sign, mask);
        } else {
            update_mean(md, pred, target, rows);
        }
        break;
    }
    md->mask = KC_BUF_NULL;
    kc_kahan_add(d, md->acc, (size_t)md->ncount);
    return kc_device_status(d);
}

int kc_metric_device_reset(kc_metric_device *md) {
    return kc_fill(md->d, md->acc, 0.0f, 2 * (size_t)md->ncount);
}

void kc_metric_device_decode(const kc_metric_device *md, const float *raw, kc_metric *m) {
    int k = md->ncount;
    /* the sums are value - compensation; in double that difference is exact */
#define C(i) ((double)raw[i] - (double)raw[k + (i)])
    switch (md->kind) {
    case KC_METRIC_PRECISION:
    case KC_METRIC_RECALL:
        m->tp[0] = C(0);
        m->fp[0] = C(1);
        m->pos = C(2);
        m->neg = C(3);
        break;
    case KC_METRIC_AUC: {
        int nt = md->nthresholds;
        for (int i = 0; i < nt; i++) {
            m->tp[i] = C(i) - (i + 1 < nt ? C(i + 1) : 0.0);
            m->fp[i] = C(nt + i) - (i + 1 < nt ? C(nt + i + 1) : 0.0);
        }
        m->pos = C(2 * nt);
        m->neg = C(2 * nt + 1);
        break;
    }
    default:
        m->total = per_element(md->kind) ? C(0) / md->cols : C(0);
        m->count = C(1);
        break;
    }
#undef C
}

/* value and compensation of one sum, so that value - compensation is v as
 * closely as two floats hold it */
static void encode_one(float *raw, int k, int i, double v) {
    float hi = (float)v;
    raw[i] = hi;
    raw[k + i] = (float)((double)hi - v);
}

void kc_metric_device_encode(const kc_metric_device *md, const kc_metric *m, float *raw) {
    int k = md->ncount;
    switch (md->kind) {
    case KC_METRIC_PRECISION:
    case KC_METRIC_RECALL:
        encode_one(raw, k, 0, m->tp[0]);
        encode_one(raw, k, 1, m->fp[0]);
        encode_one(raw, k, 2, m->pos);
        encode_one(raw, k, 3, m->neg);
        break;
    case KC_METRIC_AUC: {
        /* per threshold: the suffix sums of the host's buckets */
        int nt = md->nthresholds;
        double tp = 0, fp = 0;
        for (int i = nt - 1; i >= 0; i--) {
            tp += m->tp[i];
            fp += m->fp[i];
            encode_one(raw, k, i, tp);
            encode_one(raw, k, nt + i, fp);
        }
        encode_one(raw, k, 2 * nt, m->pos);
        encode_one(raw, k, 2 * nt + 1, m->neg);
        break;
    }
    default:
        encode_one(raw, k, 0, per_element(md->kind) ? m->total * md->cols : m->total);
        encode_one(raw, k, 1, m->count);
        break;
    }
}

int kc_metric_device_read(kc_metric_device *md, kc_metric *m) {
    float *h = malloc(2 * (size_t)md->ncount * sizeof *h);
    if (!h) return kc_device_fail(md->d, KC_ERUNTIME, "out of host memory");
    int rc = kc_download(md->d, h, md->acc, 2 * (size_t)md->ncount * sizeof(float));
    if (!rc) kc_metric_device_decode(md, h, m);
    free(h);
    return rc;
}

/* ---- plan ---- */

void kc_metric_device_free(kc_metric_device *md) {
    if (!md->d) return;
    if (md->own_acc) kc_free(md->d, &md->acc);
    for (int i = 0; i < KC_METRIC_DEVICE_WORK; i++)
        kc_free(md->d, &md->w[i]);
    for (int i = 0; i < KC_METRIC_DEVICE_ROWS; i++)
        kc_free(md->d, &md->r[i]);
    kc_free(md->d, &md->iota);
    kc_free(md->d, &md->neg_inf);
    kc_free(md->d, &md->column);
    kc_free(md->d, &md->thr);
    if (md->has_loss) kc_loss_device_free(&md->loss);
    memset(md, 0, sizeof *md);
}

static void upload_floats(kc_device *d, kc_buf *dst, const float *src, size_t n) {
    if (kc_alloc(d, n * sizeof(float), dst) == KC_OK) kc_upload(d, *dst, src, n * sizeof(float));
}

/* 0 .. n - 1 as floats on the device */
static void upload_iota(kc_device *d, kc_buf *dst, int n) {
    float *h = malloc((size_t)n * sizeof *h);
    if (!h) {
        kc_device_fail(d, KC_ERUNTIME, "out of host memory");
        return;
    }
    for (int i = 0; i < n; i++)
        h[i] = (float)i;
    upload_floats(d, dst, h, (size_t)n);
    free(h);
}

static void alloc_floats(kc_device *d, kc_buf *dst, size_t n) {
    kc_alloc(d, n * sizeof(float), dst);
}

/* How many sums a metric keeps: 0 for one without a device version. */
static int counter_count(const kc_metric *m) {
    switch (m->kind) {
    case KC_METRIC_PRECISION:
    case KC_METRIC_RECALL:
        return 4;
    case KC_METRIC_AUC:
        return m->nthresholds >= 2 && m->nthresholds <= KC_METRIC_MAX_THRESHOLDS
                   ? 2 * m->nthresholds + 2
                   : 0;
    case KC_METRIC_TOP_K_CATEGORICAL_ACCURACY:
    case KC_METRIC_SPARSE_TOP_K_CATEGORICAL_ACCURACY:
    case KC_METRIC_CATEGORICAL_ACCURACY:
    case KC_METRIC_SPARSE_CATEGORICAL_ACCURACY:
    case KC_METRIC_ACCURACY:
    case KC_METRIC_BINARY_ACCURACY:
    case KC_METRIC_MEAN_SQUARED_ERROR:
    case KC_METRIC_MEAN_ABSOLUTE_ERROR:
        return 2;
    default:
        return is_loss_mean(m->kind) ? 2 : 0;
    }
}

size_t kc_metric_device_acc_floats(const kc_metric *m) {
    return KC_KAHAN_FLOATS(counter_count(m));
}

int kc_metric_device_plan(kc_metric_device *md, kc_device *d, const kc_metric *m, int max_rows,
                          int cols, kc_error *e) {
    return kc_metric_device_plan_at(md, d, m, max_rows, cols, KC_BUF_NULL, e);
}

int kc_metric_device_plan_at(kc_metric_device *md, kc_device *d, const kc_metric *m, int max_rows,
                             int cols, kc_buf acc, kc_error *e) {
    memset(md, 0, sizeof *md);
    if (max_rows <= 0 || cols <= 0)
        return kc_fail(e, KC_ECONFIG, "metric %s: batches of %d x %d values", kc_metric_name(m),
                       max_rows, cols);
    if (m->kind == KC_METRIC_AUC &&
        (m->nthresholds < 2 || m->nthresholds > KC_METRIC_MAX_THRESHOLDS))
        return kc_fail(e, KC_ECONFIG, "metric %s: %d thresholds", kc_metric_name(m),
                       m->nthresholds);
    md->d = d;
    md->kind = m->kind;
    md->max_rows = max_rows;
    md->cols = cols;
    md->threshold = m->threshold;
    md->k = m->k;
    md->top_k = m->top_k;
    md->class_id = m->class_id;
    md->from_logits = m->from_logits;
    md->evenly = m->evenly;
    md->nthresholds = m->nthresholds;
    size_t n = (size_t)max_rows * (size_t)cols;
    switch (m->kind) {
    case KC_METRIC_PRECISION:
    case KC_METRIC_RECALL:
        md->ncount = 4;
        for (int i = 0; i < 4; i++)
            alloc_floats(d, &md->w[i], n);
        if (m->top_k) {
            alloc_floats(d, &md->r[0], (size_t)max_rows);
            upload_iota(d, &md->iota, cols);
            alloc_floats(d, &md->neg_inf, n);
            kc_fill(d, md->neg_inf, -INFINITY, n);
        }
        if (m->class_id >= 0) {
            if (m->class_id >= cols) {
                kc_metric_device_free(md);
                return kc_fail(e, KC_ECONFIG, "metric %s: class_id %d of %d outputs",
                               kc_metric_name(m), m->class_id, cols);
            }
            alloc_floats(d, &md->column, (size_t)cols);
            kc_fill(d, kc_buf_f(md->column, (size_t)m->class_id), 1.0f, 1);
        }
        break;
    case KC_METRIC_AUC: {
        int nt = m->nthresholds;
        md->ncount = 2 * nt + 2;
        size_t chunk = AUC_MATRIX_FLOATS / (size_t)nt;
        md->chunk = (int)(chunk < n ? chunk : n);
        alloc_floats(d, &md->w[0], (size_t)md->chunk * (size_t)nt);
        alloc_floats(d, &md->w[1], (size_t)md->chunk);
        alloc_floats(d, &md->w[2], (size_t)md->chunk);
        if (m->evenly)
            upload_iota(d, &md->thr, nt);
        else
            upload_floats(d, &md->thr, m->thresholds, (size_t)nt);
        break;
    }
    case KC_METRIC_TOP_K_CATEGORICAL_ACCURACY:
    case KC_METRIC_SPARSE_TOP_K_CATEGORICAL_ACCURACY:
        md->ncount = 2;
        alloc_floats(d, &md->w[0], n);
        alloc_floats(d, &md->w[1], n);
        for (int i = 0; i < 3; i++)
            alloc_floats(d, &md->r[i], (size_t)max_rows);
        upload_iota(d, &md->iota, cols);
        alloc_floats(d, &md->neg_inf, n);
        kc_fill(d, md->neg_inf, -INFINITY, n);
        break;
    case KC_METRIC_CATEGORICAL_ACCURACY:
    case KC_METRIC_SPARSE_CATEGORICAL_ACCURACY:
        md->ncount = 2;
        alloc_floats(d, &md->r[0], (size_t)max_rows);
        alloc_floats(d, &md->r[1], (size_t)max_rows);
        break;
    case KC_METRIC_ACCURACY:
    case KC_METRIC_BINARY_ACCURACY:
    case KC_METRIC_MEAN_SQUARED_ERROR:
    case KC_METRIC_MEAN_ABSOLUTE_ERROR:
        md->ncount = 2;
        alloc_floats(d, &md->w[0], n);
        break;
    default: {
        if (!is_loss_mean(m->kind)) {
            memset(md, 0, sizeof *md);
            return kc_fail(e, KC_ECONFIG, "metric %s has no device version", kc_metric_name(m));
        }
        md->ncount = 2;
        int rc = kc_loss_device_plan(&md->loss, d, &m->loss, max_rows, cols, 0, e);
        if (rc) {
            kc_metric_device_free(md);
            return rc;
        }
        md->has_loss = 1;
        break;
    }
    }
    if (kc_buf_ok(acc)) {
        md->acc = acc;
    } else {
        alloc_floats(d, &md->acc, KC_KAHAN_FLOATS(md->ncount));
        md->own_acc = 1;
    }
    int rc = kc_device_error(d, e);
    if (rc) kc_metric_device_free(md);
    return rc;
}

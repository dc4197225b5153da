/* Time-series windows as Keras's timeseries_dataset_from_array and
 * TimeseriesGenerator cut them. */
#include "models/data/timeseries.h"

#include <stdlib.h>
#include <string.h>

#include "models/data/np_random.h"

/* At most this many floats in the windows (4 GiB). */
#define MAX_FLOATS ((int64_t)1 << 30)

void kc_ts_opts_default(kc_ts_opts *o) {
    *o = (kc_ts_opts){.sequence_length = 0,
                      .sequence_stride = 1,
                      .sampling_rate = 1,
                      .start_index = 0,
                      .end_index = 0,
                      .shuffle = 0,
                      .seed = 0};
}

void kc_tsgen_opts_default(kc_tsgen_opts *o) {
    *o = (kc_tsgen_opts){
        .length = 0, .sampling_rate = 1, .stride = 1, .start_index = 0, .end_index = -1};
}

static float elem(const kc_array *a, int64_t i) {
    return a->dtype == KC_DT_U8 ? (float)((const uint8_t *)a->data)[i]
                                : ((const float *)a->data)[i];
}

static void copy_row(const kc_array *a, int64_t row, int64_t width, float *dst) {
    for (int64_t j = 0; j < width; j++)
        dst[j] = elem(a, row * width + j);
}

static int check_series(const char *what, const kc_array *a, int max_rank, kc_error *e) {
    if (!a || !a->data || a->shape.rank < 1 || a->shape.rank > max_rank || a->shape.d[0] <= 0 ||
        kc_array_row_size(a) <= 0)
        return kc_fail(e, KC_ECONFIG, "timeseries: the %s must be a non-empty array of rank 1..%d",
                       what, max_rank);
    return KC_OK;
}

/* x (n, steps, row shape...) with window i's step k = data row rows[i] + k * rate;
 * reverse flips the steps. */
static int cut_windows(const kc_array *data, const int64_t *rows, int64_t n, int64_t steps,
                       int64_t rate, int reverse, kc_array *x, kc_error *e) {
    int64_t width = kc_array_row_size(data), cells;
    if (__builtin_mul_overflow(n, steps, &cells) || __builtin_mul_overflow(cells, width, &cells) ||
        cells > MAX_FLOATS)
        return kc_fail(e, KC_ECONFIG, "timeseries: %lld windows of %lld steps are too many",
                       (long long)n, (long long)steps);
    kc_shape sh = {.rank = data->shape.rank == 1 ? 3 : data->shape.rank + 1, .d = {n, steps}};
    if (data->shape.rank == 1) sh.d[2] = 1;
    for (int i = 1; i < data->shape.rank; i++)
        sh.d[i + 1] = data->shape.d[i];
    int rc = kc_array_alloc(x, KC_DT_F32, &sh, e);
    if (rc) return rc;
    float *d = x->data;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < steps; k++) {
            int64_t at = reverse ? steps - 1 - k : k;
            copy_row(data, rows[i] + k * rate, width, d + (i * steps + at) * width);
        }
    return KC_OK;
}

/* y (n, target row shape...) = targets rows[i]. */
static int cut_targets(const kc_array *t, const int64_t *rows, int64_t n, kc_array *y,
                       kc_error *e) {
    kc_shape sh = t->shape;
    sh.d[0] = n;
    int rc = kc_array_alloc(y, KC_DT_F32, &sh, e);
    if (rc) return rc;
    int64_t width = kc_array_row_size(t);
    for (int64_t i = 0; i < n; i++)
        copy_row(t, rows[i], width, (float *)y->data + i * width);
    return KC_OK;
}

static int cut(const kc_array *data, const kc_array *targets, const int64_t *rows,
               const int64_t *trows, int64_t n, int64_t steps, int64_t rate, int reverse,
               kc_array *x, kc_array *y, kc_error *e) {
    int rc = cut_windows(data, rows, n, steps, rate, reverse, x, e);
    if (!rc && targets) rc = cut_targets(targets, trows, n, y, e);
    if (rc) {
        kc_array_free(x);
        if (y) kc_array_free(y);
    }
    return rc;
}

/* Keras's argument checks of timeseries_dataset_from_array. */
static int check_ts_opts(const kc_ts_opts *o, int64_t T, kc_error *e) {
    if (o->sequence_length <= 0)
        return kc_fail(e, KC_ECONFIG, "timeseries: sequence_length must be > 0 (got %lld)",
                       (long long)o->sequence_length);
    if (o->start_index < 0 || o->start_index >= T)
        return kc_fail(e, KC_ECONFIG,
                       "timeseries: start_index must be >= 0 and lower than the length of the "
                       "data (%lld); got %lld",
                       (long long)T, (long long)o->start_index);
    if (o->end_index > 0 && (o->end_index <= o->start_index || o->end_index >= T))
        return kc_fail(e, KC_ECONFIG,
                       "timeseries: end_index must be higher than start_index (%lld) and lower "
                       "than the length of the data (%lld); got %lld",
                       (long long)o->start_index, (long long)T, (long long)o->end_index);
    if (o->sampling_rate <= 0 || o->sampling_rate >= T)
        return kc_fail(e, KC_ECONFIG,
                       "timeseries: sampling_rate must be > 0 and lower than the length of the "
                       "data (%lld); got %lld",
                       (long long)T, (long long)o->sampling_rate);
    if (o->sequence_stride <= 0 || o->sequence_stride >= T)
        return kc_fail(e, KC_ECONFIG,
                       "timeseries: sequence_stride must be > 0 and lower than the length of "
                       "the data (%lld); got %lld",
                       (long long)T, (long long)o->sequence_stride);
    return KC_OK;
}

int kc_timeseries_dataset(const kc_array *data, const kc_array *targets, const kc_ts_opts *o,
                          kc_array *x, kc_array *y, kc_error *e) {
    memset(x, 0, sizeof *x);
    if (y) memset(y, 0, sizeof *y);
    int rc = check_series("data", data, 7, e);
    if (!rc && targets) rc = check_series("targets", targets, 8, e);
    if (!rc && targets && !y) rc = kc_fail(e, KC_ECONFIG, "timeseries: targets without y");
    int64_t T = rc ? 0 : data->shape.d[0];
    if (!rc) rc = check_ts_opts(o, T, e);
    if (rc) return rc;
    int64_t end = o->end_index > 0 ? o->end_index : T, span;
    if (__builtin_mul_overflow(o->sequence_length - 1, o->sampling_rate, &span) ||
        span >= end - o->start_index)
        return kc_fail(e, KC_ECONFIG,
                       "timeseries: a window of %lld steps %lld apart does not fit in steps "
                       "%lld..%lld",
                       (long long)o->sequence_length, (long long)o->sampling_rate,
                       (long long)o->start_index, (long long)end - 1);
    int64_t num_seqs = end - o->start_index - span;
    if (targets && targets->shape.d[0] < num_seqs) num_seqs = targets->shape.d[0];
    int64_t n = (num_seqs + o->sequence_stride - 1) / o->sequence_stride;
    int64_t *rows = malloc((size_t)n * sizeof *rows);
    if (!rows) return kc_fail(e, KC_ERUNTIME, "timeseries: out of memory");
    for (int64_t i = 0; i < n; i++)
        rows[i] = i * o->sequence_stride;
    if (o->shuffle) {
        kc_np_rng r;
        kc_np_rng_seed(&r, o->seed);
        kc_np_rng_shuffle_i64(&r, rows, n);
    }
    for (int64_t i = 0; i < n; i++)
        rows[i] += o->start_index;
    if (targets && o->start_index + (n - 1) * o->sequence_stride >= targets->shape.d[0])
        rc = kc_fail(e, KC_ECONFIG,
                     "timeseries: the targets hold %lld rows but the windows from start_index "
                     "%lld need %lld",
                     (long long)targets->shape.d[0], (long long)o->start_index,
                     (long long)(o->start_index + (n - 1) * o->sequence_stride + 1));
    if (!rc)
        rc = cut(data, targets, rows, rows, n, o->sequence_length, o->sampling_rate, 0, x, y, e);
    free(rows);
    return rc;
}

int kc_timeseries_generator(const kc_array *data, const kc_array *targets, const kc_tsgen_opts *o,
                            kc_array *x, kc_array *y, kc_error *e) {
    memset(x, 0, sizeof *x);
    if (y) memset(y, 0, sizeof *y);
    int rc = check_series("data", data, 7, e);
    if (!rc)
        rc = targets && y ? check_series("targets", targets, 8, e)
                          : kc_fail(e, KC_ECONFIG, "timeseries: the generator needs targets");
    if (rc) return rc;
    int64_t T = data->shape.d[0];
    if (targets->shape.d[0] != T)
        return kc_fail(e, KC_ECONFIG,
                       "timeseries: data and targets have to be of same length. Data length is "
                       "%lld while target length is %lld",
                       (long long)T, (long long)targets->shape.d[0]);
    if (o->length <= 0 || o->sampling_rate <= 0 || o->stride <= 0 || o->start_index < 0)
        return kc_fail(e, KC_ECONFIG,
                       "timeseries: length, sampling_rate and stride must be > 0 and start_index "
                       ">= 0");
    int64_t start = o->start_index + o->length, end = o->end_index < 0 ? T - 1 : o->end_index;
    if (start > end)
        return kc_fail(e, KC_ECONFIG,
                       "timeseries: `start_index+length=%lld > end_index=%lld` is disallowed, as "
                       "no part of the sequence would be left to be used as current step.",
                       (long long)start, (long long)end);
    if (end >= T)
        return kc_fail(e, KC_ECONFIG, "timeseries: end_index %lld is past the last row %lld",
                       (long long)end, (long long)T - 1);
    int64_t n = (end - start) / o->stride + 1;
    int64_t steps = (o->length + o->sampling_rate - 1) / o->sampling_rate;
    int64_t *rows = malloc((size_t)n * sizeof *rows), *trows = malloc((size_t)n * sizeof *trows);
    if (!rows || !trows) rc = kc_fail(e, KC_ERUNTIME, "timeseries: out of memory");
    for (int64_t i = 0; !rc && i < n; i++) {
        trows[i] = start + i * o->stride;
        rows[i] = trows[i] - o->length;
    }
    if (!rc) rc = cut(data, targets, rows, trows, n, steps, o->sampling_rate, o->reverse, x, y, e);
    free(rows);
    free(trows);
    return rc;
}

int kc_ts_shift(const kc_array *data, int64_t offset, int64_t column, kc_array *out, kc_error *e) {
    memset(out, 0, sizeof *out);
    int rc = check_series("data", data, 8, e);
    if (rc) return rc;
    int64_t T = data->shape.d[0], width = kc_array_row_size(data);
    if (offset < 0 || offset >= T)
        return kc_fail(e, KC_ECONFIG, "timeseries: target offset %lld is outside 0..%lld",
                       (long long)offset, (long long)T - 1);
    if (column >= 0 && (data->shape.rank > 2 || column >= width))
        return kc_fail(e, KC_ECONFIG,
                       "timeseries: target column %lld does not exist (the series has %lld)",
                       (long long)column, (long long)width);
    kc_shape sh = data->shape;
    sh.d[0] = T - offset;
    if (column >= 0) sh.rank = 1;
    if ((rc = kc_array_alloc(out, KC_DT_F32, &sh, e))) return rc;
    float *d = out->data;
    for (int64_t i = offset; i < T; i++) {
        if (column >= 0)
            d[i - offset] = elem(data, i * width + column);
        else
            copy_row(data, i, width, d + (i - offset) * width);
    }
    return KC_OK;
}

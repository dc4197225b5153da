/* Windows over a time series, as keras.utils.timeseries_dataset_from_array
 * and the older keras.preprocessing.sequence.TimeseriesGenerator cut them.
 *
 * The series is an array of T steps: rank 1 (T,) is one feature, rank 2
 * (T, F) is F features per step (any dtype of data.h). Windows come out as
 * float32 x (N, steps, F) (x (N, steps, 1) for a rank-1 series) and, when
 * targets are given, float32 y (N, ...) with the target rows' shape. All
 * windows are materialised (memory N * steps * F floats, checked). */
#ifndef KC_DATA_TIMESERIES_H
#define KC_DATA_TIMESERIES_H

#include <stdint.h>

#include "core/error.h"
#include "models/data/data.h"

/* timeseries_dataset_from_array's options. */
typedef struct kc_ts_opts {
    int64_t sequence_length; /* steps per window (> 0, required) */
    int64_t sequence_stride; /* between window starts (default 1) */
    int64_t sampling_rate;   /* between steps inside a window (default 1) */
    int64_t start_index;     /* first usable step (default 0) */
    int64_t end_index;       /* one past the last usable step; <= 0: T (Keras's None) */
    int shuffle;             /* 1: shuffle the window order */
    uint32_t seed;           /* the shuffle's seed */
} kc_ts_opts;

void kc_ts_opts_default(kc_ts_opts *o);

/* Window i starts at step s_i = start_index + p_i with p_i = i *
 * sequence_stride, and holds steps s_i + k * sampling_rate for k <
 * sequence_length; its target is targets[s_i]. Windows: p < num_seqs with
 * num_seqs = end_index - start_index - (sequence_length - 1) * sampling_rate,
 * capped at the targets' length when targets are given (Keras's rule).
 * For next-step prediction pass targets = the series from step
 * sequence_length on (kc_ts_shift below), as Keras's examples do.
 *
 * shuffle: the start positions are shuffled with numpy's
 * RandomState(seed).shuffle, which is exactly Keras's first step; Keras
 * then also shuffles within a tf.data buffer of batch_size * 8 windows,
 * which kerasc does not reproduce, so the order differs from tf.data's.
 * The set of (window, target) pairs is the same.
 *
 * Options Keras refuses are KC_ECONFIG with Keras's reason: start_index < 0
 * or >= T, end_index <= start_index or > T, sampling_rate or sequence_stride
 * <= 0 or >= T, sequence_length <= 0, no window fitting, a target row out of
 * range, targets of another rank than 1..8. y may be NULL when targets is. */
int kc_timeseries_dataset(const kc_array *data, const kc_array *targets, const kc_ts_opts *o,
                          kc_array *x, kc_array *y, kc_error *e);

/* TimeseriesGenerator's options (Keras 2; no shuffle: Keras draws random rows
 * with replacement per batch, which is not a fixed dataset). */
typedef struct kc_tsgen_opts {
    int64_t length;        /* steps of history per sample (> 0) */
    int64_t sampling_rate; /* default 1 */
    int64_t stride;        /* between samples (default 1) */
    int64_t start_index;   /* default 0 */
    int64_t end_index;     /* last usable row, inclusive; < 0: T - 1 (Keras's None) */
    int reverse;           /* 1: steps in reverse chronological order */
} kc_tsgen_opts;

void kc_tsgen_opts_default(kc_tsgen_opts *o);

/* Sample j has row r_j = start_index + length + j * stride for r_j <=
 * end_index, holds steps r_j - length, r_j - length + sampling_rate, ... < r_j
 * (ceil(length / sampling_rate) of them) and target targets[r_j]. targets must
 * have T rows (Keras's rule: len(data) == len(targets)). */
int kc_timeseries_generator(const kc_array *data, const kc_array *targets, const kc_tsgen_opts *o,
                            kc_array *x, kc_array *y, kc_error *e);

/* out = rows [offset, T) of data (all columns when column < 0, else the one
 * column as a (T - offset,) array), float32: the targets of next-step
 * prediction. 0 <= offset < T. */
int kc_ts_shift(const kc_array *data, int64_t offset, int64_t column, kc_array *out, kc_error *e);

#endif

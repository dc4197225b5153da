/* Losses and metrics on the compute device: the training step keeps the
 * outputs where they are instead of downloading them each step.
 *
 * Both are written once on the ops of core/ops.h, so they run on every
 * backend. Each is planned once, before training, with every device buffer it
 * needs; a step then only queues ops (no allocation, no host read). Values
 * follow models/losses.c and models/metrics.c (the same clipping, the same
 * gradients at kinks, the same thresholds and ties) computed in float32, so
 * they match the host's double code closely but not bit for bit; counts match
 * exactly.
 *
 * Device failures are sticky on the device (core/ops.h): the step functions
 * return the device's status, and a caller may check once per step. */
#ifndef KC_LOSS_DEVICE_H
#define KC_LOSS_DEVICE_H

#include "core/backend.h"
#include "core/error.h"
#include "models/losses.h"
#include "models/metrics.h"

#define KC_LOSS_DEVICE_WORK 6
#define KC_LOSS_DEVICE_ROWS 6

/* One output's loss. Fields are the plan's own; callers only pass it. */
typedef struct kc_loss_device {
    kc_device *d;
    int kind;
    int logits; /* the logits form runs: pred is the pre-activation */
    int sum;    /* reduction "sum"; otherwise the mean over rows */
    float smoothing, delta;
    int max_rows, cols;
    kc_buf w[KC_LOSS_DEVICE_WORK]; /* max_rows x cols each, as many as the loss needs */
    kc_buf r[KC_LOSS_DEVICE_ROWS]; /* max_rows each */
    kc_buf iota;                   /* 0 .. cols - 1, for sparse labels */
    kc_buf s;                      /* a few scalars */
    kc_buf mw, mt;                 /* masked outputs: row weights and their sum; a weighted copy */
} kc_loss_device;

/* Plans loss l for batches of up to max_rows rows of `cols` values. logits
 * says pred will be the pre-activation of the activation that
 * kc_loss_logits_activation(l) names (the fused softmax/sigmoid path); it is
 * ignored by losses without a logits form, and l->from_logits sets it too.
 * Fails with KC_ECONFIG for a loss this file does not know and with the
 * device's error when memory runs out; p is then empty (free is a no-op). */
int kc_loss_device_plan(kc_loss_device *p, kc_device *d, const kc_loss *l, int max_rows, int cols,
                        int logits, kc_error *e);
void kc_loss_device_free(kc_loss_device *p);

/* One batch. pred: rows x cols; target: rows x cols, or for sparse losses one
 * class index per row stored as a float (whole numbers in [0, cols), checked
 * on the host when the data was loaded: an invalid label is not detected
 * here). Writes grad = grad_scale * d(loss)/d(pred) (rows x cols; with respect
 * to the pre-activation in the logits forms) unless grad is KC_BUF_NULL, and
 * adds acc_alpha * (the batch's reduced loss) to the float at acc unless acc
 * is KC_BUF_NULL. grad must not overlap pred or target. rows <= 0 does
 * nothing (Keras's divide_no_nan gives 0); rows > max_rows fails. Returns the
 * device's status. */
int kc_loss_device_run(kc_loss_device *p, kc_buf pred, kc_buf target, int rows, float grad_scale,
                       kc_buf grad, kc_buf acc, float acc_alpha);

/* Losses of masked outputs (Keras's apply_mask): plan_mask adds the
 * buffers, then run_masked weighs row r by mask[r] * rows / sum(mask) (by
 * mask[r] with reduction "sum"), in the value and in the gradient; a batch
 * with every row masked gives 0. mask: rows floats, 1 keep, 0 masked, or
 * KC_BUF_NULL for the plain run. */
int kc_loss_device_plan_mask(kc_loss_device *p, kc_error *e);
int kc_loss_device_run_masked(kc_loss_device *p, kc_buf pred, kc_buf target, int rows,
                              float grad_scale, kc_buf grad, kc_buf acc, float acc_alpha,
                              kc_buf mask);

#define KC_METRIC_DEVICE_WORK 4
#define KC_METRIC_DEVICE_ROWS 4

/* One metric's device counters. The counters are float32 sums with a
 * compensation term each (Kahan), so running totals do not drift over an
 * epoch and counts stay exact far beyond 2^24. */
typedef struct kc_metric_device {
    kc_device *d;
    kc_metric_kind kind;
    int max_rows, cols;
    float threshold;
    int k, top_k, class_id, from_logits, evenly, nthresholds;
    int ncount;  /* counters */
    int chunk;   /* AUC: elements compared against every threshold at once */
    kc_buf acc;  /* value[n] | compensation[n] | batch[n] | two temporaries[n] */
    int own_acc; /* acc is the plan's own allocation */
    kc_buf w[KC_METRIC_DEVICE_WORK];
    kc_buf r[KC_METRIC_DEVICE_ROWS];
    kc_buf iota;    /* 0 .. cols - 1 */
    kc_buf neg_inf; /* max_rows x cols of -inf */
    kc_buf column;  /* precision/recall with class_id: 1 at class_id, else 0 */
    kc_buf thr;     /* AUC: the thresholds, or 0 .. n - 1 for the even buckets */
    int has_loss;   /* the loss-based running means */
    kc_loss_device loss;
    int mask_planned; /* kc_metric_device_plan_mask ran */
    kc_buf mask;      /* during an update: its row weights, or null */
} kc_metric_device;

/* Plans metric m (as kc_metric_parse/kc_metric_init made it) for batches of
 * up to max_rows rows of `cols` predictions; targets as kc_metric_update takes
 * them (one class index per row when kc_metric_sparse_targets(m)). The
 * counters start at zero. */
int kc_metric_device_plan(kc_metric_device *md, kc_device *d, const kc_metric *m, int max_rows,
                          int cols, kc_error *e);
/* Floats of device memory metric m's counters take (0 for a metric that has
 * no device version). */
size_t kc_metric_device_acc_floats(const kc_metric *m);
/* kc_metric_device_plan with the counters at acc, kc_metric_device_acc_floats(m)
 * zeroed floats the caller owns, so that the counters of several metrics can
 * share one buffer and come back in one transfer. */
int kc_metric_device_plan_at(kc_metric_device *md, kc_device *d, const kc_metric *m, int max_rows,
                             int cols, kc_buf acc, kc_error *e);
void kc_metric_device_free(kc_metric_device *md);
/* Adds one batch (pred post-activation, as kc_metric_update) to the counters. */
int kc_metric_device_update(kc_metric_device *md, kc_buf pred, kc_buf target, int rows);
/* Metrics of masked outputs, as Keras's MeanMetricWrapper takes the mask
 * for sample weights: plan_mask adds what the loss-based means need, then
 * update_masked counts row r of a running mean with weight mask[r] (its
 * value times mask[r] into the total, mask[r] into the count), so the result
 * is the mean over the unmasked rows. Precision, recall and AUC do not read
 * the mask (Keras's do not either). mask: rows floats, 1 keep, 0 masked, or
 * KC_BUF_NULL for the plain update. */
int kc_metric_device_plan_mask(kc_metric_device *md, kc_error *e);
int kc_metric_device_update_masked(kc_metric_device *md, kc_buf pred, kc_buf target, int rows,
                                   kc_buf mask);
/* Zeroes the counters on the device. */
int kc_metric_device_reset(kc_metric_device *md);
/* Downloads the counters (one transfer) into m's total and count, or tp, fp,
 * pos and neg, so that kc_metric_result(m) gives the value as the host's
 * counters would. m is the metric the plan was made from (or a copy). */
int kc_metric_device_read(kc_metric_device *md, kc_metric *m);
/* The raw counters as they lie at the start of md->acc: md->ncount values
 * then md->ncount compensations (2 * md->ncount floats). decode turns a host
 * copy of them into m's counters as kc_metric_device_read does; encode is its
 * inverse up to float rounding, for counters that were kept on the host. */
void kc_metric_device_decode(const kc_metric_device *md, const float *raw, kc_metric *m);
void kc_metric_device_encode(const kc_metric_device *md, const kc_metric *m, float *raw);

/* Compensated running sums (Kahan) of n floats: acc holds KC_KAHAN_FLOATS(n)
 * floats, value[n] | compensation[n] | batch[n] | two temporaries[n]; add
 * adds batch[] into value[] and leaves value - compensation as the sum. */
#define KC_KAHAN_FLOATS(n) (5 * (size_t)(n))
int kc_kahan_add(kc_device *d, kc_buf acc, size_t n);

#endif

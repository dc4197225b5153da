/* Training, evaluation and prediction: the session joins a parsed config,
 * its data, the planned model and the compile settings; fit runs epochs and
 * writes checkpoints and history. Nothing here prints: progress goes to the
 * caller's hooks. Every batch goes through the step and inference functions
 * of models/step.h. */
#ifndef KC_FIT_H
#define KC_FIT_H

#include <stdint.h>

#include "core/backend.h"
#include "core/error.h"
#include "models/callbacks.h"
#include "models/config.h"
#include "models/data/data.h"
#include "models/loss_device.h"
#include "models/losses.h"
#include "models/metrics.h"
#include "models/optimizers.h"

#define KC_MAX_METRICS 16
/* loss, each output's loss and metrics, and their val_ versions */
#define KC_MAX_LOGS 128

/* Command-line overrides (0 / NULL = take the config's value). */
typedef struct kc_run_opts {
    long long epochs, batch_size, steps_per_epoch, seed;
    int has_seed;
    int threads;
    const char *backend; /* a name in kc_backends ("cpu" by default) */
    int device;          /* the backend's device index (--device, KERASC_DEVICE) */
    const char *output_dir;
    /* the caller loads weights after opening (resume, initial weights):
     * layers are not adapted to the data (their statistics come from there) */
    int loads_weights;
} kc_run_opts;

/* The values of one epoch (or one evaluation), in Keras 3's order: loss,
 * the metrics in the order given (named <output>_<metric> when the model has
 * several outputs), each output's unweighted <output>_loss when several
 * outputs have a loss, then the val_ versions of all of them. */
typedef struct kc_logs {
    int n;
    char keys[KC_MAX_LOGS][80];
    double vals[KC_MAX_LOGS];
} kc_logs;

enum { KC_STOP_REQUESTED = 1, KC_STOP_OUTPUT_FAILED = 2 };

typedef struct kc_hooks {
    void *ctx;
    void (*epoch_begin)(void *ctx, int epoch, int epochs, int64_t steps);
    /* Asked after each step (from 1) whether batch_end wants that step's
     * logs: reading them costs a transfer from the device, so the trainer
     * calls batch_end only when this says yes (NULL: every step). */
    int (*wants_batch_logs)(void *ctx, int64_t step, int64_t steps);
    void (*batch_end)(void *ctx, int64_t step, int64_t steps, const kc_logs *logs);
    void (*epoch_end)(void *ctx, int epoch, int64_t steps, const kc_logs *logs);
    /* evaluate: same shape, one "epoch" */
    void (*note)(void *ctx, const char *msg); /* e.g. where checkpoints went */
    /* Polled after every training step: nonzero finishes the step, writes a
     * checkpoint and makes kc_fit return KC_EINTERRUPTED. */
    /* KC_STOP_REQUESTED (Ctrl-C, SIGTERM) or KC_STOP_OUTPUT_FAILED (the run's
     * output can no longer be written) to stop after saving; 0 to go on. */
    int (*interrupted)(void *ctx);
} kc_hooks;

/* One model output as the session trains it. */
typedef struct kc_session_output {
    char name[128];
    kc_loss loss;
    int has_loss;
    double weight; /* loss_weights: the output's share of the total loss */
    kc_metric metrics[KC_MAX_METRICS];
    int nmetrics;
    int needs_target;   /* a loss or metrics read targets */
    int target_is_x;    /* the target is an x array: rescale applies */
    int sparse_targets; /* targets are class indices */
    int one_hot;        /* indices expanded to one-hot (on the device) for the loss */
    int out_cols;       /* last axis of the output */
    int64_t out_rows;   /* output rows per sample (for rank > 1 outputs) */
    float *hy, *hpred;  /* host staging, sized for one batch */
    double loss_sum;    /* running unweighted loss x samples, as last read from the device */
    /* on the device (kc_session_plan_outputs) */
    int fused;           /* the loss reads the pre-activation (its logits form) */
    kc_buf target;       /* the batch's targets as the loss and the metrics read them */
    kc_buf labels, iota; /* one_hot: the class indices uploaded, and 0 .. out_cols - 1 */
    kc_loss_device dloss;
    kc_metric_device dmetrics[KC_MAX_METRICS];
} kc_session_output;

/* Arrays named in x:/y: mappings of one split (train, validation, test). */
typedef struct kc_named_arrays {
    int n;
    char names[KC_DATA_MAX_ARRAYS][128];
    int is_x[KC_DATA_MAX_ARRAYS];
    kc_array arr[KC_DATA_MAX_ARRAYS];
} kc_named_arrays;

enum { KC_SPLIT_TRAIN = 0, KC_SPLIT_VAL = 1, KC_SPLIT_TEST = 2 };

typedef struct kc_session {
    kc_config *cfg;
    kc_model *model;
    kc_device dev; /* the opened backend, owned */
    /* the running sums on the device (models/step.c), their host copy as
     * last read, and the batch rows each of its two penalty sums stands for */
    kc_buf running;
    size_t running_bytes;
    void *hrunning;
    double penalty_rows[2];
    kc_session_output *outs; /* one per model output (heap: metrics are large) */
    int nouts;
    float *hxs[KC_MODEL_MAX_IO];     /* host staging per model input */
    int input_is_x[KC_MODEL_MAX_IO]; /* input i reads an x array: rescale applies */
    /* output 0 and input 0, for single-output callers: copies of outs[0]'s
     * settings and the same staging buffers */
    kc_loss loss;
    int has_loss;
    int sparse_targets, one_hot, out_cols;
    int64_t out_rows;
    float *hx, *hy, *hpred;
    kc_optimizer *opt;
    int threads;
    uint64_t seed;
    long long batch_size;
    /* data: the x and y arrays of each split (datasets, plain files, CSV), and
     * the arrays of x:/y: mappings */
    kc_array x_train, y_train, x_val, y_val, x_test, y_test;
    kc_named_arrays named[3]; /* by KC_SPLIT_* */
    int has_train, has_val, has_test;
    int64_t *idx;
    /* training position, saved in checkpoints */
    int64_t epoch; /* completed epochs */
    int64_t step;  /* completed training steps */
    int64_t batch; /* batches completed in the epoch under way (0 between epochs) */
    /* the epoch's samples so far, and its running total loss times the
     * samples (as last read from the device) */
    double epoch_loss_sum, epoch_count;
    /* the rest of what a resumed run needs to continue exactly */
    kc_logs *history; /* logs of the completed epochs, at most fit.epochs */
    int nhistory, history_cap;
    int has_best; /* the best checkpoint's monitored value so far */
    double best;
    kc_callbacks *callbacks;
    /* the trainable weights of trainable layers, which regularizers,
     * constraints and the optimizer act on, and their buffers in that order */
    kc_param **reg;
    kc_buf *wts, *grs;
    int nreg;
    int has_penalty; /* some of them carry a regularizer */
    float *snapshot; /* host copy of the weights (EarlyStopping restore_best_weights) */
    const struct kc_hooks *hooks; /* while kc_fit runs: where callbacks' messages go */
} kc_session;

enum { KC_NEED_TRAIN = 1, KC_NEED_TEST = 2 };

/* Opens the backend o->backend (device o->device), loads the data the
 * command needs, plans the model on it for `training`, parses
 * loss/metrics/optimizer, and checks that shapes, labels and the model
 * agree. Weights are initialised from the seed. */
int kc_session_open(kc_session *s, kc_config *cfg, const kc_run_opts *o, int need, int training,
                    kc_error *e);
/* Frees the device buffers of the model (planned on the session's device),
 * the optimizer and the session, then closes the device: the model itself
 * stays with its config, which may be freed afterwards. */
void kc_session_close(kc_session *s);

/* Runs fit from the session's position (epoch/batch: a resumed checkpoint
 * continues where it stopped); writes DIR/history.csv, DIR/last.safetensors,
 * DIR/best.safetensors. */
int kc_fit(kc_session *s, const char *out_dir, const kc_hooks *h, kc_error *e);
/* Loss and metrics over one of the session's splits (KC_SPLIT_*) in inference mode. */
int kc_evaluate_split(kc_session *s, int split, const kc_hooks *h, kc_logs *out, kc_error *e);
/* The same over given arrays: x feeds whatever the data section feeds from
 * "x", y whatever it feeds from "y" (a model fed from x:/y: mappings needs
 * kc_evaluate_split). */
int kc_evaluate(kc_session *s, const kc_array *x, const kc_array *y, const kc_hooks *h,
                kc_logs *out, kc_error *e);
/* Outputs for every row of the inputs (xs[i] feeds model input i; equal row
 * counts): outs[k] receives output k (host, rows x output size), caller frees. */
int kc_predict_n(kc_session *s, const kc_array *const *xs, float **outs, kc_error *e);
/* The same for a model with one input and one output. */
int kc_predict(kc_session *s, const kc_array *x, float **out, kc_error *e);
/* The same with outs[j] receiving tensor t[j] of the model in place of the
 * outputs (kc_model_find_tensors, kc_model_output_logits): host, rows x the
 * tensor's size per sample; caller frees. */
int kc_predict_tensors(kc_session *s, const kc_array *const *xs, const kc_model_tensor *t, int nt,
                       float **outs, kc_error *e);

/* Checkpoints (models/checkpoint.c). The config text travels inside; weights
 * and optimizer slots move through the device the model is planned on. */
int kc_checkpoint_save(const kc_session *s, const char *path, const kc_logs *logs, kc_error *e);
/* weights_only leaves out the optimizer and the training position. */
int kc_checkpoint_write(const kc_session *s, const char *path, const kc_logs *logs,
                        int weights_only, kc_error *e);
/* Loads weights (and optimizer state when the session trains and the file has it). */
int kc_checkpoint_load(kc_session *s, const char *path, kc_error *e);
/* The shape of the weight an optimizer slot ("optimizer/<param>/<slot>",
 * n elements) belongs to, as Keras keeps it; (n,) when none is found. */
kc_shape kc_slot_shape(const kc_param_ref *refs, int np, const char *slot, size_t n);
/* Only the weights (fine-tuning from a checkpoint: the run starts afresh). */
int kc_checkpoint_load_weights(kc_session *s, const char *path, kc_error *e);

/* ---- text models (a `text:` block in the data section) ---- */

/* Texts as the model's input ids: the config's fitted vocabulary (from
 * training or from the checkpoint), padded or cut as the text block says. */
int kc_session_vectorize(const kc_session *s, const kc_texts *t, kc_array *x, kc_error *e);
/* ---- time series (a `timeseries:` block in the data section) ---- */

/* The series of a timeseries block: its feature columns, float32 (T, F),
 * and with a target the target columns from step `offset` on, (T - offset,)
 * for one column, else (T - offset, K): targets[s] is window s's target. */
typedef struct kc_ts_series {
    kc_array features, targets;
} kc_ts_series;

int kc_ts_series_load(const kc_ts_spec *t, kc_ts_series *out, kc_error *e);
void kc_ts_series_free(kc_ts_series *s);
/* The windows of one split (0 train, 1 validation, 2 test), cut by
 * kc_timeseries_dataset over its steps; windows whose target would lie past
 * the series' end are left out. x (N, sequence_length, F), y as the targets'
 * rows (untouched without a target). */
int kc_ts_series_windows(const kc_ts_spec *t, const kc_ts_series *s, int split, kc_array *x,
                         kc_array *y, kc_error *e);

/* Reads only the config inside a checkpoint. */
int kc_checkpoint_config(const char *path, kc_config **out, kc_error *e);
/* Does the file look like a safetensors checkpoint (not YAML)? */
int kc_is_checkpoint(const char *path);

#endif

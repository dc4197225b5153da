/* The two ways a batch goes through a session's model: one training step
 * and one inference batch. kc_fit, kc_evaluate*, kc_predict* and kerasc
 * bench all run these, so what the bench times is the step fit trains.
 *
 * A batch is gathered on the host (rescaled; class labels stay indices) and
 * uploaded; everything after that stays on the device: the loss and its
 * gradient (models/loss_device.h), the penalties, the update, the metrics and
 * the running sums they all feed. The host reads those sums only when it
 * reports (kc_session_logs) or saves them (checkpoints). */
#ifndef KC_STEP_H
#define KC_STEP_H

#include "models/fit.h"

/* The arrays one pass reads: per model input, per output (NULL: no target). */
typedef struct kc_feed {
    const kc_array *x[KC_MODEL_MAX_IO];
    const kc_array *y[KC_MODEL_MAX_IO];
    int64_t rows;
} kc_feed;

/* The feed of one of the session's splits (KC_SPLIT_*). */
int kc_session_feed(kc_session *s, int split, kc_feed *f, kc_error *e);
/* The feed of given arrays: x and y stand for the data section's "x" and
 * "y", nm (may be NULL) for its named arrays; `what` names them in errors. */
int kc_feed_arrays(kc_session *s, const kc_array *x, const kc_array *y, const kc_named_arrays *nm,
                   const char *what, kc_feed *f, kc_error *e);

/* The parts of a training step, in order. */
typedef enum kc_step_phase {
    KC_PHASE_DATA = 0, /* gather and upload of the batch */
    KC_PHASE_FORWARD,
    KC_PHASE_LOSS, /* the loss, its gradient and the activity penalties */
    KC_PHASE_BACKWARD,
    KC_PHASE_UPDATE,  /* weight penalties, the optimizer, constraints */
    KC_PHASE_METRICS, /* the metrics and the running sums */
    KC_PHASE_COUNT
} kc_step_phase;

/* Optional observers of a step (profiling): on_layer as kc_exec's, on_phase
 * at the end of each phase. */
typedef struct kc_step_probe {
    void (*on_layer)(void *ctx, int layer, int phase);
    void (*on_phase)(void *ctx, kc_step_phase phase);
    void *ctx;
} kc_step_probe;

/* One training step on rows idx[0..n) of the feed (n <= batch size):
 * forward, loss, backward, weight penalties, optimizer update, constraints,
 * then the running losses and metrics; s->step advances. Only the batch
 * crosses to the device; nothing comes back. probe may be NULL. Returns the
 * device's status as a kc_error. */
int kc_train_step(kc_session *s, const kc_feed *f, const int64_t *idx, int n,
                  const kc_step_probe *probe, kc_error *e);

/* One inference batch on rows idx[0..n): forward, then with `score` the
 * loss as evaluation counts it and the metrics into the running values (on
 * the device), without it each output's values into s->outs[k].hpred (n
 * rows, downloaded). */
int kc_infer_batch(kc_session *s, const kc_feed *f, const int64_t *idx, int n, int score,
                   kc_error *e);

/* The device side of the outputs (session open): each output's target
 * buffer, device loss and metrics, and the running sums. */
int kc_session_plan_outputs(kc_session *s, kc_error *e);
void kc_session_free_outputs(kc_session *s);

/* Running losses and metrics: zeroed at the start of an epoch or evaluation. */
void kc_session_reset_running(kc_session *s);
/* Downloads the running values (one transfer) into their host copies: each
 * output's loss_sum and metric counters, and s->epoch_loss_sum (the total
 * loss with the penalties, times the rows). */
int kc_session_read_running(kc_session *s, kc_error *e);
/* Keras 3's logs from the running values over `count` samples: loss, the
 * compiled metrics, then each output's loss when several outputs have one;
 * keys get `prefix`. Reads the device (kc_session_read_running). */
int kc_session_logs(kc_session *s, kc_logs *l, const char *prefix, double count, kc_error *e);
void kc_logs_add(kc_logs *l, const char *prefix, const char *key, double v);

/* The raw running state, for checkpoints that must resume bit for bit:
 * KC_RUNNING_PENALTY doubles (the penalty sums and the batch rows each
 * stands for) and kc_session_running_floats() floats (every running sum's
 * value and compensation). pack copies them out of the last
 * kc_session_read_running; unpack puts them back on the device. */
#define KC_RUNNING_PENALTY 4
size_t kc_session_running_floats(const kc_session *s);
void kc_session_running_pack(const kc_session *s, float *raw, double *penalty);
int kc_session_running_unpack(kc_session *s, const float *raw, const double *penalty, kc_error *e);
/* The same from the host copies (outputs' loss_sum, metric counters,
 * s->epoch_loss_sum), as checkpoints kept them before the sums moved to the
 * device; exact up to float rounding. */
int kc_session_running_from_host(kc_session *s, kc_error *e);

#endif

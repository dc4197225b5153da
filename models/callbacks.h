/* Keras's fit callbacks, configured in the model file under `fit.callbacks`:
 * ModelCheckpoint, EarlyStopping, ReduceLROnPlateau, CSVLogger,
 * LearningRateScheduler, TerminateOnNaN and BackupAndRestore, with Keras 3's
 * arguments, defaults and messages.
 *
 * Callbacks act on training only through the environment the trainer hands
 * them (kc_callback_env), so this module never touches the model or the
 * device. Their state (best values, waits, cooldowns) can be saved as JSON
 * and restored, which is what makes a resumed run continue exactly. */
#ifndef KC_CALLBACKS_H
#define KC_CALLBACKS_H

#include <stdint.h>

#include "core/error.h"
#include "models/yaml.h"

struct kc_logs;

/* What a callback may do to the run. */
typedef struct kc_callback_env {
    void *ctx;
    /* Writes a checkpoint of the current state to path (atomically). */
    int (*save)(void *ctx, const char *path, int weights_only, kc_error *e);
    /* Keeps a copy of the current weights / puts the copy back (restore_best_weights). */
    int (*snapshot)(void *ctx, kc_error *e);
    int (*restore_snapshot)(void *ctx, kc_error *e);
    double (*get_lr)(void *ctx);
    void (*set_lr)(void *ctx, double lr);
    /* +1 if higher values of the logged quantity are better, -1 if lower, 0 unknown. */
    int (*direction)(void *ctx, const char *key);
    /* Resumes from a checkpoint (BackupAndRestore). */
    int (*resume)(void *ctx, const char *path, kc_error *e);
    void (*print)(void *ctx, const char *msg);
    const char *out_dir; /* relative callback paths are relative to the run directory */
} kc_callback_env;

typedef struct kc_callbacks kc_callbacks;

/* Parses a list such as
 *   - EarlyStopping: {monitor: val_loss, patience: 3}
 *   - ModelCheckpoint: {filepath: "ckpt-{epoch:02d}.safetensors", save_best_only: true}
 * (NULL node: no callbacks). */
int kc_callbacks_parse(kc_node *list, kc_callbacks **out, kc_error *e);
void kc_callbacks_free(kc_callbacks *c);
int kc_callbacks_count(const kc_callbacks *c);

/* Before training: can every file the callbacks write be written?
 * ModelCheckpoint's and BackupAndRestore's directories (made when missing,
 * as Keras makes them) must take new files, CSVLogger's file must open
 * where it is (Keras does not make its directory). Relative paths are in
 * out_dir. Stale temporaries of the checkpoints they write are removed. */
int kc_callbacks_check_outputs(const kc_callbacks *c, const char *out_dir, kc_error *e);

/* The hooks, called by the trainer. `stop` is set when a callback ends
 * training. A callback that fails at a batch's or an epoch's end does not
 * keep the others from acting on it: all of them run, and the first
 * failure is returned, so that the state the trainer then saves has every
 * callback's view of that batch or epoch. */
int kc_callbacks_train_begin(kc_callbacks *c, const kc_callback_env *env, kc_error *e);
int kc_callbacks_epoch_begin(kc_callbacks *c, const kc_callback_env *env, int epoch, kc_error *e);
/* Does some callback read the logs of batch `batch` (from 0) of the epoch in
 * the kc_callbacks_batch_end call that follows it? The trainer reads them
 * from the device only then, and passes NULL logs otherwise. */
int kc_callbacks_need_batch_logs(const kc_callbacks *c, int64_t batch);
int kc_callbacks_batch_end(kc_callbacks *c, const kc_callback_env *env, int epoch, int64_t batch,
                           const struct kc_logs *logs, int *stop, kc_error *e);
/* May add keys to logs (learning_rate). */
int kc_callbacks_epoch_end(kc_callbacks *c, const kc_callback_env *env, int epoch,
                           struct kc_logs *logs, int *stop, kc_error *e);
int kc_callbacks_train_end(kc_callbacks *c, const kc_callback_env *env, int last_epoch,
                           kc_error *e);

/* Does any callback log the learning rate (ReduceLROnPlateau, LearningRateScheduler)? */
int kc_callbacks_log_lr(const kc_callbacks *c);

/* State for exact resume: a JSON list, one object per callback. restore
 * accepts what state wrote, and refuses (naming the callback, the key and
 * the value) any value the callback could not have reached. */
char *kc_callbacks_state(const kc_callbacks *c);
int kc_callbacks_restore(kc_callbacks *c, const char *json, kc_error *e);
/* After a restore: no callback counts more batches than the run's `steps`
 * training steps so far. */
int kc_callbacks_check_progress(const kc_callbacks *c, int64_t steps, kc_error *e);

/* Python str.format for checkpoint paths: "{epoch:02d}-{val_loss:.2f}" with
 * epoch (1-based) and the logged values. Unknown keys and bad specs fail. */
int kc_format_path(const char *tmpl, int epoch, int64_t batch, const struct kc_logs *logs,
                   char *out, size_t n, kc_error *e);

#endif

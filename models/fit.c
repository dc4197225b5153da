/* kc_fit: epochs of training steps (models/step.c) from the session's
 * position, validation, the history file, checkpoints, callbacks and
 * interruption. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/atomic_file.h"
#include "core/rng.h"
#include "models/fit_internal.h"
#include "models/keras_weights.h"

static void permutation(int64_t *p, int64_t n, uint64_t seed, int64_t epoch, int shuffle) {
    for (int64_t i = 0; i < n; i++)
        p[i] = i;
    if (!shuffle) return;
    uint64_t stream = kc_rng_stream("shuffle", (uint64_t)epoch, 0);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)kc_rng_below(seed, stream, (uint64_t)i, (uint64_t)i + 1);
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
}

/* The whole history, rewritten atomically each epoch (Keras CSVLogger's columns:
 * epoch from 0, then the keys in alphabetical order). */
typedef struct history {
    int rows, cap;
    kc_logs *logs;
} history;

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int history_write(const history *h, const char *path, kc_error *e) {
    if (h->rows == 0) return KC_OK;
    const kc_logs *first = &h->logs[0];
    const char *keys[KC_MAX_LOGS];
    for (int i = 0; i < first->n; i++)
        keys[i] = first->keys[i];
    qsort(keys, (size_t)first->n, sizeof *keys, cmp_str);
    kc_atomic_file a;
    int rc = kc_atomic_open(&a, path, e);
    if (rc) return rc;
    FILE *f = a.f;
    fprintf(f, "epoch");
    for (int i = 0; i < first->n; i++)
        fprintf(f, ",%s", keys[i]);
    fprintf(f, "\n");
    for (int r = 0; r < h->rows; r++) {
        fprintf(f, "%d", r);
        for (int i = 0; i < first->n; i++) {
            double v = NAN;
            for (int j = 0; j < h->logs[r].n; j++)
                if (!strcmp(h->logs[r].keys[j], keys[i])) v = h->logs[r].vals[j];
            fprintf(f, ",%.17g", v);
        }
        fprintf(f, "\n");
    }
    return kc_atomic_commit(&a, e);
}

static double find_log(const kc_logs *l, const char *key) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->keys[i], key)) return l->vals[i];
    return NAN;
}

/* ---- what callbacks may do (models/callbacks.h) ---- */

/* A kerasc checkpoint, or Keras's .keras / .weights.h5 (ModelCheckpoint
 * allows those by their suffix). */
static int env_save(void *ctx, const char *path, int weights_only, kc_error *e) {
    kc_session *s = ctx;
    const kc_logs *last = s->nhistory ? &s->history[s->nhistory - 1] : NULL;
    size_t n = strlen(path);
    if (n > 6 && !strcmp(path + n - 6, ".keras"))
        return kc_keras_archive_save(s->cfg, s->model, s->opt, path, e);
    if (n > 11 && !strcmp(path + n - 11, ".weights.h5"))
        return kc_keras_weights_save(s->model, s->opt, path, e);
    return kc_checkpoint_write(s, path, last, weights_only, e);
}

static int env_snapshot(void *ctx, kc_error *e) {
    kc_session *s = ctx;
    size_t n = (size_t)s->model->nvalues;
    if (!s->snapshot && !(s->snapshot = malloc((n ? n : 1) * sizeof(float))))
        return kc_fail(e, KC_ERUNTIME, "out of memory for a copy of the weights");
    kc_download(&s->dev, s->snapshot, s->model->values, n * sizeof(float));
    return kc_device_error(&s->dev, e);
}

static int env_restore(void *ctx, kc_error *e) {
    kc_session *s = ctx;
    if (s->snapshot)
        kc_upload(&s->dev, s->model->values, s->snapshot,
                  (size_t)s->model->nvalues * sizeof(float));
    return kc_device_error(&s->dev, e);
}

/* The learning rate as Keras reads it: the float32 variable. */
static double env_get_lr(void *ctx) {
    return (float)kc_optimizer_learning_rate(((kc_session *)ctx)->opt);
}
static void env_set_lr(void *ctx, double lr) {
    kc_optimizer_set_learning_rate(((kc_session *)ctx)->opt, lr);
}

static int env_direction(void *ctx, const char *key) {
    kc_session *s = ctx;
    const char *base = strncmp(key, "val_", 4) ? key : key + 4;
    for (int k = 0; k < s->nouts; k++)
        for (int i = 0; i < s->outs[k].nmetrics; i++) {
            const kc_metric *m = &s->outs[k].metrics[i];
            char full[256];
            snprintf(full, sizeof full, "%s_%s", s->outs[k].name, kc_metric_name(m));
            if (!strcmp(base, kc_metric_name(m)) || !strcmp(base, full))
                return kc_metric_direction(m);
        }
    return 0;
}

static int env_resume(void *ctx, const char *path, kc_error *e) {
    return kc_checkpoint_load(ctx, path, e);
}

static void env_print(void *ctx, const char *msg) {
    const kc_session *s = ctx;
    if (s->hooks && s->hooks->note) s->hooks->note(s->hooks->ctx, msg);
}

static kc_callback_env make_env(kc_session *s, const char *out_dir) {
    return (kc_callback_env){s,          env_save,      env_snapshot, env_restore, env_get_lr,
                             env_set_lr, env_direction, env_resume,   env_print,   out_dir};
}

/* ------------------------------------------------------------- the loop --- */

typedef struct fit_run {
    kc_session *s;
    const kc_hooks *h;
    kc_callback_env env;
    kc_feed train;
    int64_t n, bs, full_steps, steps;
    const char *monitor;
    char p_hist[4200], p_last[4200], p_best[4200];
    int stop;
} fit_run;

static int fit_init(fit_run *r, kc_session *s, const char *out_dir, const kc_hooks *h,
                    kc_error *e) {
    memset(r, 0, sizeof *r);
    r->s = s;
    r->h = h;
    int rc = kc_mkdir_p(out_dir, e);
    if (rc || (rc = kc_session_feed(s, KC_SPLIT_TRAIN, &r->train, e))) return rc;
    r->n = r->train.rows;
    r->bs = s->batch_size;
    if (r->n < 1 || r->bs < 1)
        return kc_fail(e, KC_ECONFIG, "%s: the training data has no samples", s->cfg->path);
    r->full_steps = r->n / r->bs + (r->n % r->bs != 0);
    r->steps = kc_session_steps_per_epoch(s, r->n);
    s->idx = malloc((size_t)(r->n ? r->n : 1) * sizeof *s->idx);
    if (!s->idx) return kc_fail(e, KC_ERUNTIME, "out of memory");
    snprintf(r->p_hist, sizeof r->p_hist, "%s/history.csv", out_dir);
    snprintf(r->p_last, sizeof r->p_last, "%s/last.safetensors", out_dir);
    snprintf(r->p_best, sizeof r->p_best, "%s/best.safetensors", out_dir);
    r->monitor = s->has_val ? "val_loss" : "loss";
    r->env = make_env(s, out_dir);
    return KC_OK;
}

/* What the interrupted hook's nonzero value says stopped the run: a
 * request (Ctrl-C, SIGTERM), or output the caller can no longer write
 * (its progress, its log), after which training on would go unseen. */

static int interrupted(const fit_run *r) {
    return r->h && r->h->interrupted ? r->h->interrupted(r->h->ctx) : 0;
}

/* Says where the run stopped, and why (`cause`, interrupted()'s value), and
 * fails with KC_EINTERRUPTED. */
static int stop_interrupted(fit_run *r, int cause, const char *where, kc_error *e) {
    char msg[4400];
    if (cause == KC_STOP_OUTPUT_FAILED) {
        snprintf(msg, sizeof msg,
                 "\nTraining stopped after %s: its output could not be written; saved %s", where,
                 r->p_last);
        env_print(r->s, msg);
        return kc_fail(e, KC_EINTERRUPTED,
                       "the output could not be written; training stopped after saving its state "
                       "(continue with --resume %s)",
                       r->p_last);
    }
    snprintf(msg, sizeof msg, "\nInterrupted after %s; saved %s", where, r->p_last);
    env_print(r->s, msg);
    return kc_fail(e, KC_EINTERRUPTED, "interrupted; resume with --resume %s", r->p_last);
}

/* A callback failed with rc (e says why): the state was saved for --resume
 * unless `save` holds why it could not be. Returns rc. */
static int callback_stopped(const fit_run *r, int rc, const kc_error *save, kc_error *e) {
    char why[sizeof e->msg];
    snprintf(why, sizeof why, "%s", e->msg);
    if (save)
        return kc_fail(e, rc, "%s; training stopped, and its state could not be saved: %s", why,
                       save->msg);
    return kc_fail(e, rc, "%s; training stopped after saving its state (continue with --resume %s)",
                   why, r->p_last);
}

/* The running logs of the epoch, read from the device once per step at most. */
typedef struct batch_logs {
    kc_logs l;
    int read;
} batch_logs;

static int read_batch_logs(kc_session *s, batch_logs *b, kc_error *e) {
    if (b->read) return KC_OK;
    memset(&b->l, 0, sizeof b->l);
    b->read = 1;
    return kc_session_logs(s, &b->l, "", s->epoch_count, e);
}

static int hook_wants_logs(const fit_run *r, int64_t step) {
    if (!r->h || !r->h->batch_end) return 0;
    return !r->h->wants_batch_logs || r->h->wants_batch_logs(r->h->ctx, step, r->steps);
}

/* Training step b of the epoch, then whoever reports: the caller's hook and
 * the callbacks when they ask for this step's logs, the interrupt's
 * checkpoint. Only they read the device. */
static int fit_batch(fit_run *r, int64_t epoch, int64_t b, int64_t *perm_pass, kc_error *e) {
    kc_session *s = r->s;
    /* steps beyond one pass continue on the next permutation */
    int64_t pass = b / r->full_steps, bi = b % r->full_steps;
    if (pass != *perm_pass) {
        permutation(s->idx, r->n, s->seed, epoch * 1000003 + pass, s->cfg->fit.shuffle);
        *perm_pass = pass;
    }
    int nb = (int)((bi + 1) * r->bs <= r->n ? r->bs : r->n - bi * r->bs);
    int rc = kc_train_step(s, &r->train, s->idx + bi * r->bs, nb, NULL, e);
    if (rc) return rc;
    s->epoch_count += nb;
    s->batch = b + 1;
    batch_logs bl = {.read = 0};
    if (hook_wants_logs(r, b + 1)) {
        if ((rc = read_batch_logs(s, &bl, e))) return rc;
        r->h->batch_end(r->h->ctx, b + 1, r->steps, &bl.l);
    }
    int cb_logs = kc_callbacks_need_batch_logs(s->callbacks, b);
    if (cb_logs && (rc = read_batch_logs(s, &bl, e))) return rc;
    rc = kc_callbacks_batch_end(s->callbacks, &r->env, (int)epoch, b, cb_logs ? &bl.l : NULL,
                                &r->stop, e);
    int cause = rc ? 0 : interrupted(r);
    if (!rc && !cause) return KC_OK;
    /* a failed callback or a stop: the step's state is saved first */
    kc_error se = {0};
    int unsaved = read_batch_logs(s, &bl, &se) || kc_checkpoint_save(s, r->p_last, &bl.l, &se);
    if (rc) return callback_stopped(r, rc, unsaved ? &se : NULL, e);
    if (unsaved) {
        *e = se;
        return se.code;
    }
    char where[100];
    snprintf(where, sizeof where, "step %lld of epoch %lld", (long long)(b + 1),
             (long long)(epoch + 1));
    return stop_interrupted(r, cause, where, e);
}

static int fit_steps(fit_run *r, int64_t epoch, kc_error *e) {
    kc_session *s = r->s;
    if (s->batch == 0) { /* else a checkpoint written inside this epoch resumes it */
        kc_session_reset_running(s);
        s->epoch_loss_sum = s->epoch_count = 0;
        /* stateful layers start every epoch from zero states */
        if (kc_model_reset_states(s->model)) return kc_device_error(&s->dev, e);
    }
    if (r->h && r->h->epoch_begin)
        r->h->epoch_begin(r->h->ctx, (int)epoch, (int)s->cfg->fit.epochs, r->steps);
    int rc = kc_callbacks_epoch_begin(s->callbacks, &r->env, (int)epoch, e);
    int64_t perm_pass = -1;
    for (int64_t b = s->batch; !rc && b < r->steps && !r->stop; b++)
        rc = fit_batch(r, epoch, b, &perm_pass, e);
    return rc;
}

/* The epoch's logs with the validation figures. */
static int epoch_logs(fit_run *r, kc_logs *logs, kc_error *e) {
    kc_session *s = r->s;
    memset(logs, 0, sizeof *logs);
    int rc = kc_session_logs(s, logs, "", s->epoch_count, e);
    if (rc || !s->has_val) return rc;
    kc_logs vl;
    rc = kc_evaluate_split(s, KC_SPLIT_VAL, NULL, &vl, e);
    for (int i = 0; !rc && i < vl.n; i++)
        kc_logs_add(logs, "val_", vl.keys[i], vl.vals[i]);
    return rc;
}

/* History and checkpoints: like Keras 3's ModelCheckpoint, the first epoch
 * always counts as an improvement. */
static int save_epoch(fit_run *r, const kc_logs *logs, kc_error *e) {
    kc_session *s = r->s;
    history hist = {.rows = s->nhistory, .logs = s->history};
    int rc = history_write(&hist, r->p_hist, e);
    if (rc) return rc;
    double cur = find_log(logs, r->monitor);
    int improved = !s->has_best || cur < s->best;
    if (improved) {
        s->best = cur;
        s->has_best = 1;
    }
    if ((rc = kc_checkpoint_save(s, r->p_last, logs, e))) return rc;
    if (improved && (rc = kc_checkpoint_save(s, r->p_best, logs, e))) return rc;
    return KC_OK;
}

static int end_epoch(fit_run *r, int64_t epoch, kc_error *e) {
    kc_session *s = r->s;
    int64_t epochs = s->cfg->fit.epochs;
    kc_logs logs;
    int rc = epoch_logs(r, &logs, e);
    if (rc) return rc;
    /* validation ran on the same running sums; between epochs checkpoints
     * hold none */
    kc_session_reset_running(s);
    s->epoch_loss_sum = s->epoch_count = 0;
    s->epoch = epoch + 1;
    s->batch = 0;
    if (s->nhistory < (int)epochs && !kc_session_history_push(s, &logs))
        return kc_fail(e, KC_ERUNTIME, "out of memory for the history of epoch %lld",
                       (long long)epoch + 1);
    /* user callbacks first: what they log (learning_rate) reaches the
     * progress line and the history, as in Keras; when one fails, the
     * epoch is still shown and saved, and training stops */
    int cb_rc = kc_callbacks_epoch_end(s->callbacks, &r->env, (int)epoch, &logs, &r->stop, e);
    s->history[s->nhistory - 1] = logs;
    if (r->h && r->h->epoch_end) r->h->epoch_end(r->h->ctx, (int)epoch, r->steps, &logs);
    if (cb_rc) {
        kc_error se = {0};
        return callback_stopped(r, cb_rc, save_epoch(r, &logs, &se) ? &se : NULL, e);
    }
    if ((rc = save_epoch(r, &logs, e))) return rc;
    int cause = interrupted(r);
    if (!cause || epoch + 1 >= epochs) return KC_OK;
    char where[64];
    snprintf(where, sizeof where, "epoch %lld", (long long)(epoch + 1));
    return stop_interrupted(r, cause, where, e);
}

static int fit_epochs(kc_session *s, const char *out_dir, const kc_hooks *h, kc_error *e) {
    fit_run r;
    int rc = fit_init(&r, s, out_dir, h, e);
    if (rc) return rc;
    if (s->epoch < 0 || s->batch < 0 || s->batch > r.steps)
        return kc_fail(e, KC_ECONFIG,
                       "cannot continue at step %lld of epoch %lld: an epoch has %lld steps",
                       (long long)s->batch, (long long)s->epoch + 1, (long long)r.steps);
    /* a resumed callback state (--resume, BackupAndRestore) must fit the steps trained */
    if ((rc = kc_callbacks_train_begin(s->callbacks, &r.env, e)) ||
        (rc = kc_callbacks_check_progress(s->callbacks, s->step, e)))
        return rc;
    for (int64_t epoch = s->epoch; epoch < s->cfg->fit.epochs && !r.stop; epoch++)
        if ((rc = fit_steps(&r, epoch, e)) || (rc = end_epoch(&r, epoch, e))) return rc;
    if ((rc = kc_callbacks_train_end(s->callbacks, &r.env, (int)s->epoch - 1, e))) return rc;
    char saved[8600];
    snprintf(saved, sizeof saved, "Saved %s, %s (lowest %s) and %s", r.p_last, r.p_best, r.monitor,
             r.p_hist);
    env_print(s, saved);
    return KC_OK;
}

int kc_fit(kc_session *s, const char *out_dir, const kc_hooks *h, kc_error *e) {
    s->hooks = h; /* callbacks' messages go through the caller's hooks while fit runs */
    int rc = fit_epochs(s, out_dir, h, e);
    s->hooks = NULL;
    return rc;
}

/* Callbacks driven through a recording environment, epoch by epoch, against
 * what Keras 3's callbacks do with the same logged values. */
#include "models/callbacks.h"
#include "models/fit.h"
#include "testutil.h"

typedef struct rec {
    double lr;
    int saves, snapshots, restores, resumes;
    char saved[8][512];
    int weights_only[8];
    char out[8192];
} rec;

static int r_save(void *ctx, const char *path, int wo, kc_error *e) {
    rec *r = ctx;
    if (r->saves < 8) {
        snprintf(r->saved[r->saves], sizeof r->saved[0], "%s", path);
        r->weights_only[r->saves] = wo;
    }
    r->saves++;
    FILE *f = fopen(path, "w");
    if (f) fclose(f);
    return KC_OK;
}
static int r_snapshot(void *ctx, kc_error *e) {
    return ((rec *)ctx)->snapshots++, KC_OK;
}
static int r_restore(void *ctx, kc_error *e) {
    return ((rec *)ctx)->restores++, KC_OK;
}
static double r_get_lr(void *ctx) {
    return (float)((rec *)ctx)->lr;
}
static void r_set_lr(void *ctx, double lr) {
    ((rec *)ctx)->lr = lr;
}
static int r_direction(void *ctx, const char *key) {
    return strstr(key, "accuracy") ? 1 : 0;
}
static int r_resume(void *ctx, const char *path, kc_error *e) {
    return ((rec *)ctx)->resumes++, KC_OK;
}
static void r_print(void *ctx, const char *msg) {
    rec *r = ctx;
    size_t n = strlen(r->out);
    snprintf(r->out + n, sizeof r->out - n, "%s\n", msg);
}

static kc_callback_env env_for(rec *r, const char *dir) {
    return (kc_callback_env){r,        r_save,      r_snapshot, r_restore, r_get_lr,
                             r_set_lr, r_direction, r_resume,   r_print,   dir};
}

static kc_callbacks *parse(const char *yaml, kc_doc **doc) {
    kc_error e = {0};
    ck_assert_msg(kc_doc_parse(doc, "cb.yaml", yaml, strlen(yaml), &e) == 0, "%s", e.msg);
    kc_callbacks *c = NULL;
    ck_assert_msg(kc_callbacks_parse(kc_map_get((*doc)->root, "callbacks"), &c, &e) == 0, "%s",
                  e.msg);
    return c;
}

static void parse_fails(const char *yaml, const char *frag) {
    kc_error e = {0};
    kc_doc *d;
    ck_assert_int_eq(kc_doc_parse(&d, "cb.yaml", yaml, strlen(yaml), &e), 0);
    kc_callbacks *c = NULL;
    ck_assert_int_eq(kc_callbacks_parse(kc_map_get(d->root, "callbacks"), &c, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, frag), "'%s' lacks '%s'", e.msg, frag);
    kc_doc_free(d);
}

static kc_logs logs1(const char *k, double v) {
    kc_logs l = {0};
    l.n = 1;
    snprintf(l.keys[0], sizeof l.keys[0], "%s", k);
    l.vals[0] = v;
    return l;
}

/* Runs epochs with val_loss values; returns the epoch training stopped after, or -1. */
static int run_epochs(kc_callbacks *c, kc_callback_env *env, const double *vals, int n) {
    kc_error e = {0};
    ck_assert_int_eq(kc_callbacks_train_begin(c, env, &e), 0);
    int stopped = -1;
    for (int ep = 0; ep < n && stopped < 0; ep++) {
        ck_assert_int_eq(kc_callbacks_epoch_begin(c, env, ep, &e), 0);
        kc_logs l = logs1("val_loss", vals[ep]);
        int stop = 0;
        ck_assert_msg(kc_callbacks_epoch_end(c, env, ep, &l, &stop, &e) == 0, "%s", e.msg);
        if (stop) stopped = ep;
    }
    ck_assert_int_eq(kc_callbacks_train_end(c, env, n - 1, &e), 0);
    return stopped;
}

START_TEST(early_stopping_patience) {
    kc_doc *d;
    kc_callbacks *c = parse(
        "callbacks:\n  - EarlyStopping: {patience: 2, restore_best_weights: true, verbose: 1}\n",
        &d);
    rec r = {.lr = 0.001};
    kc_callback_env env = env_for(&r, NULL);
    double v[] = {1.0, 0.9, 0.95, 0.92, 0.91};
    ck_assert_int_eq(run_epochs(c, &env, v, 5), 3);
    ck_assert_int_eq(r.restores, 1);
    ck_assert_int_ge(r.snapshots, 2);
    ck_assert_ptr_nonnull(strstr(r.out, "Epoch 4: early stopping\n"));
    ck_assert_ptr_nonnull(
        strstr(r.out, "Restoring model weights from the end of the best epoch: 2.\n"));
    kc_callbacks_free(c);
    kc_doc_free(d);
}
END_TEST

START_TEST(early_stopping_min_delta_and_baseline) {
    kc_doc *d;
    kc_callbacks *c = parse("callbacks:\n  - EarlyStopping: {min_delta: 0.05, patience: 1}\n", &d);
    rec r = {.lr = 0.001};
    kc_callback_env env = env_for(&r, NULL);
    double v[] = {1.0, 0.96, 0.5};
    /* 0.96 is not 0.05 better than 1.0: one epoch of patience is used up */
    ck_assert_int_eq(run_epochs(c, &env, v, 3), 1);
    kc_callbacks_free(c);
    kc_doc_free(d);
    /* a baseline that is never beaten keeps the wait counting through improvements */
    c = parse("callbacks:\n  - EarlyStopping: {baseline: 0.1, patience: 2}\n", &d);
    double w[] = {1.0, 0.9, 0.95, 0.97};
    ck_assert_int_eq(run_epochs(c, &env, w, 4), 2);
    kc_callbacks_free(c);
    kc_doc_free(d);
    /* accuracy goes up in auto mode */
    c = parse("callbacks:\n  - EarlyStopping: {monitor: val_accuracy, patience: 1}\n", &d);
    kc_error e = {0};
    ck_assert_int_eq(kc_callbacks_train_begin(c, &env, &e), 0);
    int stop = 0;
    for (int ep = 0; ep < 3 && !stop; ep++) {
        kc_logs l = logs1("val_accuracy", ep == 0 ? 0.5 : 0.6 + 0.1 * ep);
        ck_assert_int_eq(kc_callbacks_epoch_end(c, &env, ep, &l, &stop, &e), 0);
    }
    ck_assert_int_eq(stop, 0);
    kc_callbacks_free(c);
    kc_doc_free(d);
}
END_TEST

START_TEST(reduce_lr_on_plateau) {
    kc_doc *d;
    kc_callbacks *c = parse("callbacks:\n  - ReduceLROnPlateau: {factor: 0.5, patience: 1, "
                            "cooldown: 1, min_lr: 0.0002, "
                            "verbose: 1}\n",
                            &d);
    rec r = {.lr = 0.001};
    kc_callback_env env = env_for(&r, NULL);
    kc_error e = {0};
    ck_assert_int_eq(kc_callbacks_train_begin(c, &env, &e), 0);
    double v[] = {1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0};
    double lr_logged[7], lr_after[7];
    for (int ep = 0; ep < 7; ep++) {
        kc_logs l = logs1("val_loss", v[ep]);
        int stop = 0;
        ck_assert_int_eq(kc_callbacks_epoch_end(c, &env, ep, &l, &stop, &e), 0);
        ck_assert_int_eq(l.n, 2);
        ck_assert_str_eq(l.keys[1], "learning_rate");
        lr_logged[ep] = l.vals[1];
        lr_after[ep] = r.lr;
    }
    /* epoch 0 sets best; 1: wait 1 -> reduce to 5e-4, cooldown 1; 2: cooling; 3: wait 1 -> 2.5e-4;
     * 4: cooling; 5: wait 1 -> max(1.25e-4, 2e-4) = 2e-4; 6: cooling */
    ck_assert_close(lr_after[0], 0.001, 0, 1e-12);
    ck_assert_close(lr_after[1], (double)0.001f * 0.5, 0, 1e-12);
    ck_assert_close(lr_after[3], (double)(float)((double)0.001f * 0.5) * 0.5, 0, 1e-12);
    ck_assert_close(lr_after[5], 0.0002, 0, 1e-12);
    ck_assert_close(lr_logged[2], (float)((double)0.001f * 0.5), 0, 1e-12);
    ck_assert_ptr_nonnull(strstr(
        r.out, "\nEpoch 2: ReduceLROnPlateau reducing learning rate to 0.0005000000237487257.\n"));
    kc_callbacks_free(c);
    kc_doc_free(d);
}
END_TEST

START_TEST(model_checkpoint_best_only) {
    char *dir = kc_test_tmpdir();
    kc_doc *d;
    kc_callbacks *c = parse("callbacks:\n  - ModelCheckpoint: {filepath: "
                            "'ckpt-{epoch:02d}-{val_loss:.2f}.safetensors', "
                            "save_best_only: true, verbose: 1}\n",
                            &d);
    rec r = {.lr = 0.001};
    kc_callback_env env = env_for(&r, dir);
    double v[] = {0.5, 0.4, 0.45, 0.123};
    run_epochs(c, &env, v, 4);
    ck_assert_int_eq(r.saves, 3);
    char want[4200];
    snprintf(want, sizeof want, "%s/ckpt-04-0.12.safetensors", dir);
    ck_assert_str_eq(r.saved[2], want);
    snprintf(want, sizeof want,
             "\nEpoch 1: val_loss improved from None to 0.50000, saving model to "
             "%s/ckpt-01-0.50.safetensors\n",
             dir);
    ck_assert_ptr_nonnull(strstr(r.out, want));
    ck_assert_ptr_nonnull(strstr(r.out, "\nEpoch 3: val_loss did not improve from 0.40000\n"));
    kc_callbacks_free(c);
    kc_doc_free(d);
    kc_test_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(format_path) {
    kc_logs l = logs1("val_loss", 0.123456);
    char out[256];
    kc_error e = {0};
    ck_assert_int_eq(
        kc_format_path("m-{epoch:02d}-{val_loss:.2f}.safetensors", 3, 0, &l, out, sizeof out, &e),
        0);
    ck_assert_str_eq(out, "m-03-0.12.safetensors");
    ck_assert_int_eq(kc_format_path("{epoch}_{val_loss:.3e}_{{x}}", 12, 0, &l, out, sizeof out, &e),
                     0);
    ck_assert_str_eq(out, "12_1.235e-01_{x}");
    ck_assert_int_eq(kc_format_path("{epoch:03d}-{batch:d}", 1, 40, &l, out, sizeof out, &e), 0);
    ck_assert_str_eq(out, "001-40");
    ck_assert_int_eq(kc_format_path("{val_acc:.2f}", 1, 0, &l, out, sizeof out, &e), KC_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "val_acc"));
    ck_assert_int_eq(kc_format_path("{epoch", 1, 0, &l, out, sizeof out, &e), KC_ECONFIG);
}
END_TEST

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

START_TEST(csv_logger) {
    char *dir = kc_test_tmpdir();
    kc_doc *d;
    kc_callbacks *c = parse("callbacks:\n  - CSVLogger: {filename: log.csv}\n", &d);
    rec r = {.lr = 0.001};
    kc_callback_env env = env_for(&r, dir);
    kc_error e = {0};
    ck_assert_int_eq(kc_callbacks_train_begin(c, &env, &e), 0);
    for (int ep = 0; ep < 2; ep++) {
        kc_logs l = {0};
        l.n = 2;
        strcpy(l.keys[0], "loss");
        strcpy(l.keys[1], "accuracy");
        l.vals[0] = ep ? 0.25 : 0.13881245255470276;
        l.vals[1] = 0.5;
        int stop = 0;
        ck_assert_int_eq(kc_callbacks_epoch_end(c, &env, ep, &l, &stop, &e), 0);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/log.csv", dir);
    char *text = slurp(path);
    ck_assert_str_eq(
        text, "epoch,accuracy,loss,val_accuracy,val_loss\r\n0,0.5,0.13881245255470276,NA,NA\r\n"
              "1,0.5,0.25,NA,NA\r\n");
    free(text);
    kc_callbacks_free(c);
    kc_doc_free(d);
    kc_test_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(terminate_on_nan) {
    kc_doc *d;
    kc_callbacks *c = parse("callbacks: [TerminateOnNaN]\n", &d);
    rec r = {.lr = 0.001};
    kc_callback_env env = env_for(&r, NULL);
    kc_error e = {0};
    int stop = 0;
    kc_logs l = logs1("loss", 0.5);
    ck_assert_int_eq(kc_callbacks_batch_end(c, &env, 0, 6, &l, &stop, &e), 0);
    ck_assert_int_eq(stop, 0);
    l.vals[0] = NAN;
    ck_assert_int_eq(kc_callbacks_batch_end(c, &env, 0, 7, &l, &stop, &e), 0);
    ck_assert_int_eq(stop, 1);
    ck_assert_str_eq(r.out, "Batch 7: Invalid loss, terminating training\n");
    kc_callbacks_free(c);
    kc_doc_free(d);
}
END_TEST

START_TEST(scheduler_sets_lr_per_epoch) {
    kc_doc *d;
    kc_callbacks *c =
        parse("callbacks:\n  - LearningRateScheduler:\n      schedule: {ExponentialDecay: "
              "{initial_learning_rate: 0.1, decay_steps: 1, decay_rate: 0.5}}\n      verbose: 1\n",
              &d);
    rec r = {.lr = 0.001};
    kc_callback_env env = env_for(&r, NULL);
    kc_error e = {0};
    ck_assert_int_eq(kc_callbacks_epoch_begin(c, &env, 0, &e), 0);
    ck_assert_close(r.lr, 0.1, 0, 1e-6);
    ck_assert_int_eq(kc_callbacks_epoch_begin(c, &env, 2, &e), 0);
    ck_assert_close(r.lr, 0.025, 0, 1e-6);
    ck_assert_ptr_nonnull(
        strstr(r.out, "Epoch 3: LearningRateScheduler setting learning rate to "));
    kc_callbacks_free(c);
    kc_doc_free(d);
}
END_TEST

START_TEST(state_round_trip) {
    kc_doc *d;
    kc_callbacks *c = parse(
        "callbacks:\n  - EarlyStopping: {patience: 5}\n  - ReduceLROnPlateau: {patience: 1}\n", &d);
    rec r = {.lr = 0.001};
    kc_callback_env env = env_for(&r, NULL);
    double v[] = {1.0, 0.9, 0.95};
    run_epochs(c, &env, v, 3);
    char *state = kc_callbacks_state(c);
    kc_doc *d2;
    kc_callbacks *c2 = parse(
        "callbacks:\n  - EarlyStopping: {patience: 5}\n  - ReduceLROnPlateau: {patience: 1}\n",
        &d2);
    kc_error e = {0};
    ck_assert_msg(kc_callbacks_restore(c2, state, &e) == 0, "%s", e.msg);
    char *state2 = kc_callbacks_state(c2);
    ck_assert_str_eq(state, state2);
    ck_assert_ptr_nonnull(strstr(state, "\"wait\": 1"));
    free(state2);
    kc_doc *d3;
    kc_callbacks *c4 = parse("callbacks:\n  - EarlyStopping: {patience: 5}\n", &d3);
    ck_assert_int_eq(kc_callbacks_restore(c4, state, &e), KC_ECONFIG);
    free(state);
    kc_callbacks_free(c);
    kc_callbacks_free(c2);
    kc_callbacks_free(c4);
    kc_doc_free(d);
    kc_doc_free(d2);
    kc_doc_free(d3);
}
END_TEST

START_TEST(parse_errors) {
    parse_fails("callbacks:\n  - EarlyStoping: {}\n", "cb.yaml:2:5:");
    parse_fails("callbacks:\n  - EarlyStoping: {}\n", "did you mean 'EarlyStopping'");
    parse_fails("callbacks:\n  - EarlyStopping: {patiense: 3}\n", "did you mean 'patience'");
    parse_fails("callbacks:\n  - ModelCheckpoint: {filepath: model.h5}\n", ".safetensors");
    parse_fails("callbacks:\n  - ModelCheckpoint: {filepath: m.keras, save_weights_only: true}\n",
                ".weights.h5");
    parse_fails("callbacks:\n  - ModelCheckpoint: {filepath: m.weights.h5}\n", ".keras");
    parse_fails("callbacks:\n  - ReduceLROnPlateau: {factor: 1.5}\n", "factor");
    parse_fails("callbacks:\n  - EarlyStopping: {mode: maximum}\n", "did you mean 'max'");
    parse_fails("callbacks:\n  - CSVLogger: {}\n", "filename");
}
END_TEST

int main(void) {
    Suite *s = suite_create("callbacks");
    TCase *t = tcase_create("callbacks");
    tcase_add_test(t, early_stopping_patience);
    tcase_add_test(t, early_stopping_min_delta_and_baseline);
    tcase_add_test(t, reduce_lr_on_plateau);
    tcase_add_test(t, model_checkpoint_best_only);
    tcase_add_test(t, format_path);
    tcase_add_test(t, csv_logger);
    tcase_add_test(t, terminate_on_nan);
    tcase_add_test(t, scheduler_sets_lr_per_epoch);
    tcase_add_test(t, state_round_trip);
    tcase_add_test(t, parse_errors);
    suite_add_tcase(s, t);
    return kc_test_run(s);
}

/* Checkpoints (safetensors with kerasc metadata): the config inside, as
 * `kerasc summary CKPT` reads it; the weights loaded into a small fixed
 * model for evaluation, as `kerasc evaluate --weights` does; and the
 * weights, optimizer state, position and callback state restored into a
 * training session that then carries on to the end of the run, as
 * `kerasc train --resume` does. */
#include "tests/fuzz/fuzz_model.h"

#include "core/safetensors.h"
#include "tests/fuzz/fuzz_st_mutator.h"

static const char config[] =
    "model:\n"
    "  name: tiny\n"
    "  layers:\n"
    "    - Input: {shape: [4]}\n"
    "    - Dense: {units: 3, activation: relu}\n"
    "    - Dense: {units: 2, activation: softmax}\n"
    "compile:\n"
    "  optimizer: {Adam: {learning_rate: 0.01}}\n"
    "  loss: sparse_categorical_crossentropy\n"
    "  metrics: [accuracy]\n"
    "data:\n"
    "  train: {x: x.npy, y: y.npy}\n"
    "  test: {x: x.npy, y: y.npy}\n"
    "  validation: test\n"
    "fit:\n"
    "  epochs: 2\n"
    "  batch_size: 2\n"
    "  seed: 7\n"
    "  callbacks:\n"
    "    - EarlyStopping: {monitor: val_loss, patience: 1, restore_best_weights: true}\n"
    "    - ReduceLROnPlateau: {monitor: val_loss, factor: 0.5, patience: 1}\n";

static const char *dir(void) {
    static int made;
    if (!made) {
        const float x[24] = {0, 1, 2, 3, 1, 0, 1, 0, 3, 2, 1, 0,
                             0, 0, 1, 1, 2, 2, 0, 1, 1, 3, 0, 2};
        const float y[6] = {0, 1, 1, 0, 1, 0};
        kc_shape sx = kc_shape2(6, 4), sy = kc_shape1(6);
        char path[4200];
        kc_error e = {0};
        FUZZ_CHECK(
            !kc_npy_write(fuzz_path("checkpoint", "x.npy", path, sizeof path), x, &sx, &e) &&
                !kc_npy_write(fuzz_path("checkpoint", "y.npy", path, sizeof path), y, &sy, &e),
            "%s", e.msg);
        made = 1;
    }
    return fuzz_dir("checkpoint");
}

static kc_config *fixed_config(void) {
    kc_config *cfg;
    kc_error e = {0};
    FUZZ_CHECK(kc_config_parse_text("tiny.yaml", dir(), config, strlen(config), &cfg, &e) == KC_OK,
               "%s", e.msg);
    return cfg;
}

/* The config the checkpoint carries. */
static void carried_config(const char *path) {
    kc_config *cfg;
    kc_error e = {0};
    if (kc_checkpoint_config(path, &cfg, &e) != KC_OK) return;
    fuzz_check_model(cfg->model);
    kc_config_free(cfg);
}

static void evaluate(kc_config *cfg, const char *path) {
    kc_run_opts o = {.threads = 1};
    kc_session s;
    kc_error e = {0};
    FUZZ_CHECK(kc_session_open(&s, cfg, &o, KC_NEED_TEST, 0, &e) == KC_OK, "%s", e.msg);
    kc_logs l;
    if (kc_checkpoint_load(&s, path, &e) == KC_OK)
        FUZZ_CHECK(kc_evaluate_split(&s, KC_SPLIT_TEST, NULL, &l, &e) == KC_OK, "%s", e.msg);
    kc_session_close(&s);
}

/* A resumed run continues to fit.epochs from a position inside the run: a
 * checkpoint that loads never puts it before the start (a negative epoch
 * would also make the run as long as the number says). */
static void resume(kc_config *cfg, const char *path) {
    kc_run_opts o = {.threads = 1};
    kc_session s;
    kc_error e = {0};
    FUZZ_CHECK(kc_session_open(&s, cfg, &o, KC_NEED_TRAIN | KC_NEED_TEST, 1, &e) == KC_OK, "%s",
               e.msg);
    if (kc_checkpoint_load(&s, path, &e) == KC_OK) {
        FUZZ_CHECK(s.epoch >= 0 && s.step >= 0 && s.batch >= 0,
                   "loaded at epoch %lld, step %lld, batch %lld", (long long)s.epoch,
                   (long long)s.step, (long long)s.batch);
        char out[4200];
        kc_fit(&s, fuzz_path("checkpoint", "run", out, sizeof out), NULL, &e);
    }
    kc_session_close(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[4200];
    fuzz_write("checkpoint", "ckpt.safetensors", data, size, path, sizeof path);
    kc_is_checkpoint(path);
    /* what is not even a safetensors file fails the same way everywhere */
    kc_st_file *f;
    kc_error e = {0};
    if (kc_st_open(path, &f, &e)) return 0;
    kc_st_close(f);
    carried_config(path);
    kc_config *cfg = fixed_config();
    evaluate(cfg, path);
    resume(cfg, path);
    kc_config_free(cfg);
    return 0;
}

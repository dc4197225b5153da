/* The kerasc command line, run as users run it: every verb, the files it
 * writes, exit statuses, and the errors for bad input. $KERASC names the
 * binary under test (the Makefile sets it). */
#include <dirent.h>

#include "clitest.h"
#include "tests/devices.h"

static const char *blob_cfg =
    "model:\n"
    "  name: blobs\n"
    "  layers:\n"
    "    - Input: {shape: [8, 8, 1]}\n"
    "    - Conv2D: {filters: 4, kernel_size: 3, padding: same, activation: relu}\n"
    "    - MaxPooling2D: {pool_size: 2}\n"
    "    - Flatten\n"
    "    - Dropout: {rate: 0.1}\n"
    "    - Dense: {units: 4, activation: softmax}\n"
    "compile:\n"
    "  optimizer: {Adam: {learning_rate: 0.01}}\n"
    "  loss: sparse_categorical_crossentropy\n"
    "  metrics: [accuracy]\n"
    "data:\n"
    "  train: {x: train_x.npy, y: train_y.npy}\n"
    "  test: {x: test_x.npy, y: test_y.npy}\n"
    "  rescale: 1/255\n"
    "  reshape: [8, 8, 1]\n"
    "fit: {epochs: 3, batch_size: 16, validation_split: 0.2, seed: 5}\n";

static void setup(void) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    dir = kc_test_tmpdir();
    make_blobs("train_x.npy", "train_y.npy", 400, 11);
    make_blobs("test_x.npy", "test_y.npy", 100, 12);
    write_file("blobs.yaml", blob_cfg);
}

static void teardown(void) {
    kc_test_rmdir(dir);
    free(dir);
}

START_TEST(help_and_version) {
    ck_assert_int_eq(run("--help"), 0);
    ck_assert_ptr_nonnull(strstr(out_buf, "train"));
    ck_assert_ptr_nonnull(strstr(out_buf, "summary"));
    ck_assert_int_eq(run("--version"), 0);
    ck_assert_ptr_nonnull(strstr(out_buf, "kerasc "));
    const char *verbs[] = {"train", "evaluate", "summary", "predict"};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(run("%s --help", verbs[i]), 0);
        ck_assert_ptr_nonnull(strstr(out_buf, "Usage: kerasc"));
    }
    ck_assert_int_eq(run("frobnicate"), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "unknown command 'frobnicate'"));
    ck_assert_int_eq(run("train"), 2);
    ck_assert_int_eq(run("train blobs.yaml --epochs zero"), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "--epochs"));
    ck_assert_int_eq(run("train blobs.yaml --no-such-flag"), 2);
}
END_TEST

static const char *seed_summary =
    "Model: \"mnist_cnn\"\n"
    "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓\n"
    "┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃\n"
    "┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩\n"
    "│ conv2d (Conv2D)                 │ (None, 26, 26, 32)     │           320 │\n"
    "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
    "│ max_pooling2d (MaxPooling2D)    │ (None, 13, 13, 32)     │             0 │\n"
    "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
    "│ conv2d_1 (Conv2D)               │ (None, 11, 11, 64)     │        18,496 │\n"
    "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
    "│ max_pooling2d_1 (MaxPooling2D)  │ (None, 5, 5, 64)       │             0 │\n"
    "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
    "│ flatten (Flatten)               │ (None, 1600)           │             0 │\n"
    "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
    "│ dense (Dense)                   │ (None, 64)             │       102,464 │\n"
    "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
    "│ dense_1 (Dense)                 │ (None, 10)             │           650 │\n"
    "└─────────────────────────────────┴────────────────────────┴───────────────┘\n"
    " Total params: 121,930 (476.29 KB)\n"
    " Trainable params: 121,930 (476.29 KB)\n"
    " Non-trainable params: 0 (0.00 B)\n";

START_TEST(summary_matches_keras) {
    const char *src = getenv("KERASC_SRC");
    ck_assert_msg(src && *src, "set KERASC_SRC to the source tree");
    int st = run("summary '%s/configs/mnist_cnn.yaml'", src);
    ck_assert_msg(st == 0, "summary failed: %s", err_buf);
    ck_assert_str_eq(out_buf, seed_summary);
}
END_TEST

/* Every shipped model file reads and builds: its summary prints. */
START_TEST(every_config_summarises) {
    const char *src = getenv("KERASC_SRC");
    ck_assert_msg(src && *src, "set KERASC_SRC to the source tree");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/configs", src);
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot list %s", dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".yaml")) continue;
        int st = run("summary '%s/%s'", dir, de->d_name);
        ck_assert_msg(st == 0, "summary of configs/%s failed: %s", de->d_name, err_buf);
        ck_assert_msg(strstr(out_buf, "Total params"), "configs/%s: %s", de->d_name, out_buf);
        n++;
    }
    closedir(d);
    ck_assert_msg(n >= 10, "only %d model files in %s", n, dir);
}
END_TEST

START_TEST(train_evaluate_predict) {
    int st = run("train blobs.yaml --output run");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    /* not a terminal: one line per epoch, Keras's verbose=2 form */
    ck_assert_ptr_nonnull(strstr(out_buf, "Epoch 1/3\n"));
    ck_assert_ptr_nonnull(strstr(out_buf, "Epoch 3/3\n"));
    ck_assert_ptr_nonnull(strstr(out_buf, "20/20 - "));
    ck_assert_ptr_nonnull(strstr(out_buf, " - loss: "));
    ck_assert_ptr_nonnull(strstr(out_buf, " - val_accuracy: "));
    ck_assert(file_exists("run/history.csv"));
    ck_assert(file_exists("run/last.safetensors"));
    ck_assert(file_exists("run/best.safetensors"));
    char hist[4096], p[4200];
    snprintf(p, sizeof p, "%s/run/history.csv", dir);
    slurp(p, hist, sizeof hist);
    ck_assert_msg(!strncmp(hist, "epoch,accuracy,loss,val_accuracy,val_loss\n0,", 44),
                  "history: %s", hist);
    int lines = 0;
    for (char *c = hist; *c; c++)
        lines += *c == '\n';
    ck_assert_int_eq(lines, 4);

    /* the figure printed by train is the one evaluate reports on the last checkpoint */
    char *test_line = strstr(out_buf, "Test - loss: ");
    ck_assert_ptr_nonnull(test_line);
    double tl, ta;
    ck_assert_int_eq(sscanf(test_line, "Test - loss: %lf - accuracy: %lf", &tl, &ta), 2);
    ck_assert_msg(ta >= 0.9, "blob test accuracy %.4f", ta);
    st = run("evaluate run/last.safetensors --json");
    ck_assert_msg(st == 0, "evaluate failed: %s", err_buf);
    double el, ea;
    ck_assert_int_eq(sscanf(out_buf, "{\"loss\": %lf, \"accuracy\": %lf}", &el, &ea), 2);
    ck_assert_close(el, tl, 5e-5, 0);
    ck_assert_close(ea, ta, 5e-5, 0);
    st = run("evaluate blobs.yaml --weights run/last.safetensors");
    ck_assert_msg(st == 0, "evaluate with --weights failed: %s", err_buf);
    ck_assert_ptr_nonnull(strstr(out_buf, "7/7 - "));
    ck_assert_ptr_nonnull(strstr(out_buf, " - accuracy: "));

    /* predict: one row of 4 probabilities per sample */
    st = run("predict run/best.safetensors --input test_x.npy --output pred.csv");
    ck_assert_msg(st == 0, "predict failed: %s", err_buf);
    char pred[1 << 16];
    snprintf(p, sizeof p, "%s/pred.csv", dir);
    slurp(p, pred, sizeof pred);
    int rows = 0;
    for (char *c = pred; *c; c++)
        rows += *c == '\n';
    ck_assert_int_eq(rows, 100);
    float a, b, c, d;
    ck_assert_int_eq(sscanf(pred, "%f,%f,%f,%f", &a, &b, &c, &d), 4);
    ck_assert_close(a + b + c + d, 1.0, 1e-5, 0);
    st = run("predict run/best.safetensors --input test_x.npy --output pred.npy");
    ck_assert_msg(st == 0, "predict to npy failed: %s", err_buf);
    kc_array arr = {0};
    kc_error e = {0};
    snprintf(p, sizeof p, "%s/pred.npy", dir);
    ck_assert_int_eq(kc_array_load(p, NULL, &arr, &e), 0);
    ck_assert_int_eq(arr.shape.rank, 2);
    ck_assert_int_eq(arr.shape.d[0], 100);
    ck_assert_int_eq(arr.shape.d[1], 4);
    ck_assert_close(((float *)arr.data)[0], a, 1e-6, 1e-6);
    kc_array_free(&arr);
    /* summary works from the checkpoint alone */
    ck_assert_int_eq(run("summary run/last.safetensors"), 0);
    ck_assert_ptr_nonnull(strstr(out_buf, "Model: \"blobs\""));
    ck_assert_ptr_nonnull(strstr(out_buf, " Total params: 300 (1.17 KB)"));
}
END_TEST

/* --list-devices names every backend of the registry; --backend and --device
 * are checked; the blobs train on every backend that opens here, to the same
 * test loss as on the reference backend, and evaluate agrees on each. */
START_TEST(every_backend_from_the_command_line) {
    ck_assert_int_eq(run("--list-devices"), 0);
    for (int i = 0; kc_backends[i]; i++) {
        char line[512];
        snprintf(line, sizeof line, "%s: %s\n", kc_backends[i]->name, kc_backends[i]->description);
        ck_assert_msg(strstr(out_buf, line), "--list-devices lacks '%s':\n%s", line, out_buf);
    }
    ck_assert_int_eq(run("train blobs.yaml --backend nope"), 2);
    ck_assert_msg(strstr(err_buf, "unknown backend 'nope'"), "%s", err_buf);
    ck_assert_msg(strstr(err_buf, kc_backend_names()), "%s", err_buf);
    ck_assert_int_eq(run("train blobs.yaml --device -1"), 2);
    ck_assert_msg(strstr(err_buf, "--device"), "%s", err_buf);

    double ref_loss = -1;
    for (int pass = 0; pass < 2; pass++) /* the reference first */
        KC_FOR_EACH_DEVICE(d) {
            if (kc_test_is_reference(kc_fe_i_) != !pass) continue;
            const char *name = d->be->name;
            int st = run("train blobs.yaml --backend %s --output run_%s", name, name);
            ck_assert_msg(st == 0, "train on %s failed (%d): %s", name, st, err_buf);
            char *test_line = strstr(out_buf, "Test - loss: ");
            ck_assert_ptr_nonnull(test_line);
            double tl, ta;
            ck_assert_int_eq(sscanf(test_line, "Test - loss: %lf - accuracy: %lf", &tl, &ta), 2);
            ck_assert_msg(ta >= 0.9, "blob test accuracy %.4f on %s", ta, name);
            if (pass == 0)
                ref_loss = tl;
            else
                ck_assert_msg(fabs(tl - ref_loss) <= 1e-3 + 1e-2 * ref_loss,
                              "test loss %.6f on %s, %.6f on reference", tl, name, ref_loss);
            st = run("evaluate run_%s/last.safetensors --json --backend %s", name, name);
            ck_assert_msg(st == 0, "evaluate on %s failed: %s", name, err_buf);
            double el, ea;
            ck_assert_int_eq(sscanf(out_buf, "{\"loss\": %lf, \"accuracy\": %lf}", &el, &ea), 2);
            ck_assert_close(el, tl, 5e-5, 0);
            ck_assert_close(ea, ta, 5e-5, 0);
        }
    ck_assert(ref_loss >= 0);
}
END_TEST

START_TEST(same_seed_same_bytes) {
    ck_assert_int_eq(run("train blobs.yaml --output a --epochs 2 --threads 2"), 0);
    ck_assert_int_eq(run("train blobs.yaml --output b --epochs 2 --threads 2"), 0);
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "cmp -s '%s/a/last.safetensors' '%s/b/last.safetensors'", dir, dir);
    ck_assert_msg(system(cmd) == 0, "two runs with one seed wrote different checkpoints");
    ck_assert_int_eq(run("train blobs.yaml --output c --epochs 2 --threads 2 --seed 6"), 0);
    snprintf(cmd, sizeof cmd, "cmp -s '%s/a/last.safetensors' '%s/c/last.safetensors'", dir, dir);
    ck_assert_msg(system(cmd) != 0, "a different seed gave the same checkpoint");
}
END_TEST

START_TEST(config_errors_exit_2_with_location) {
    write_file("bad1.yaml", "model:\n  layers:\n    - Input: {shape: [8, 8, 1]}\n    - Conv2D: "
                            "{filters: 4, kernal_size: 3}\n");
    ck_assert_int_eq(run("summary bad1.yaml"), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "bad1.yaml:4:28: unknown key 'kernal_size'"));
    ck_assert_ptr_nonnull(strstr(err_buf, "did you mean 'kernel_size'?"));
    ck_assert_int_eq(run("train bad1.yaml"), 2);

    write_file("bad2.yaml",
               "model:\n  layers:\n    - Input: {shape: [8, 8, 1]}\n    - Dense: {units: -3}\n");
    ck_assert_int_eq(run("summary bad2.yaml"), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "bad2.yaml:4:22:"));

    /* data that does not fit the model: names both shapes */
    char *cfg = strdup(blob_cfg);
    char *r = strstr(cfg, "  reshape: [8, 8, 1]\n");
    memmove(r, r + strlen("  reshape: [8, 8, 1]\n"),
            strlen(r + strlen("  reshape: [8, 8, 1]\n")) + 1);
    write_file("bad3.yaml", cfg);
    free(cfg);
    ck_assert_int_eq(run("train bad3.yaml"), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "(None, 8, 8)"));
    ck_assert_ptr_nonnull(strstr(err_buf, "(None, 8, 8, 1)"));
    ck_assert_ptr_nonnull(strstr(err_buf, "reshape"));

    /* missing data file */
    write_file("bad4.yaml",
               "model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 2}\n"
               "compile: {loss: mse}\ndata:\n  train: {x: nope.npy, y: nope.npy}\n");
    ck_assert(run("train bad4.yaml") != 0);
    ck_assert_ptr_nonnull(strstr(err_buf, "nope.npy"));
    ck_assert_ptr_nonnull(strstr(err_buf, "bad4.yaml:7:"));

    /* a file that is not there */
    ck_assert_int_eq(run("summary missing.yaml"), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "missing.yaml"));

    /* evaluate needs weights with a config */
    ck_assert_int_eq(run("evaluate blobs.yaml"), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "--weights"));
}
END_TEST

START_TEST(labels_out_of_range) {
    /* 4 classes in the data, 3 outputs in the model */
    char *cfg = strdup(blob_cfg);
    char *u = strstr(cfg, "units: 4");
    u[7] = '3';
    write_file("three.yaml", cfg);
    free(cfg);
    ck_assert_int_eq(run("train three.yaml"), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "label 3"));
    ck_assert_ptr_nonnull(strstr(err_buf, "[0, 3)"));
}
END_TEST

START_TEST(checkpoint_mismatch_is_named) {
    ck_assert_int_eq(run("train blobs.yaml --output run --epochs 1"), 0);
    char *cfg = strdup(blob_cfg);
    char *f = strstr(cfg, "filters: 4");
    f[9] = '6';
    write_file("other.yaml", cfg);
    free(cfg);
    ck_assert_int_eq(run("evaluate other.yaml --weights run/last.safetensors"), 2);
    ck_assert_ptr_nonnull(
        strstr(err_buf, "conv2d/kernel: checkpoint shape (3, 3, 1, 4), model shape (3, 3, 1, 6)"));
    ck_assert_ptr_nonnull(strstr(err_buf, "dense/kernel"));
    write_file("junk.safetensors", "not a checkpoint at all");
    ck_assert(run("evaluate blobs.yaml --weights junk.safetensors") != 0);
    ck_assert_ptr_nonnull(strstr(err_buf, "junk.safetensors"));
}
END_TEST

START_TEST(missing_dataset_lists_places) {
    write_file("mn.yaml",
               "model:\n  layers:\n    - Input: {shape: [28, 28]}\n    - Flatten\n    - Dense: "
               "{units: 10}\n"
               "compile: {loss: sparse_categorical_crossentropy}\ndata: {dataset: mnist}\n");
    char cmd[64];
    snprintf(cmd, sizeof cmd, "train mn.yaml");
    setenv("HOME", dir, 1);
    setenv("KERAS_HOME", dir, 1);
    int st = run("%s", cmd);
    ck_assert_int_eq(st, 1);
    ck_assert_ptr_nonnull(strstr(err_buf, "mnist.npz"));
    ck_assert_ptr_nonnull(strstr(err_buf, dir));
}
END_TEST

/* Real data: the MLP config on Fashion-MNIST from Debian's package. One
 * epoch (300 steps in the sanitizer run) must reach a stated test accuracy. */
START_TEST(fashion_mnist_mlp_learns) {
    if (access("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", R_OK)) {
        fprintf(stderr, "skipped: /usr/share/datasets/fashion-mnist is absent (apt-get install "
                        "dataset-fashion-mnist)\n");
        return;
    }
    const char *src = getenv("KERASC_SRC");
    int quick = kc_test_quick();
    int st = run("train '%s/configs/fashion_mnist_mlp.yaml' --epochs 1 --threads 2 --output fm %s",
                 src, quick ? "--steps-per-epoch 300" : "");
    ck_assert_msg(st == 0, "train failed: %s", err_buf);
    double tl, ta;
    char *line = strstr(out_buf, "Test - loss: ");
    ck_assert_ptr_nonnull(line);
    ck_assert_int_eq(sscanf(line, "Test - loss: %lf - accuracy: %lf", &tl, &ta), 2);
    ck_assert_msg(ta >= (quick ? 0.75 : 0.82),
                  "Fashion-MNIST MLP test accuracy %.4f after one epoch", ta);
}
END_TEST

int main(void) {
    Suite *s = suite_create("cli");
    TCase *t = tcase_create("cli");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, help_and_version);
    tcase_add_test(t, summary_matches_keras);
    tcase_add_test(t, every_config_summarises);
    tcase_add_test(t, train_evaluate_predict);
    tcase_add_test(t, every_backend_from_the_command_line);
    tcase_add_test(t, same_seed_same_bytes);
    tcase_add_test(t, config_errors_exit_2_with_location);
    tcase_add_test(t, labels_out_of_range);
    tcase_add_test(t, checkpoint_mismatch_is_named);
    tcase_add_test(t, missing_dataset_lists_places);
    tcase_add_test(t, fashion_mnist_mlp_learns);
    suite_add_tcase(s, t);
    return kc_test_run(s);
}

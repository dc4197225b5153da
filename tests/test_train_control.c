/* Steering and trusting a run from the command line: exact resume (at an
 * epoch boundary, after Ctrl-C mid-epoch, after SIGKILL), the callbacks
 * working together, regularization in the logged loss, --log-json. */
#include <signal.h>
#include <time.h>

#include "clitest.h"
#include "core/safetensors.h"

static const char *cfg_text =
    "model:\n"
    "  name: ctl\n"
    "  layers:\n"
    "    - Input: {shape: [8, 8, 1]}\n"
    "    - Conv2D: {filters: 4, kernel_size: 3, padding: same, activation: relu}\n"
    "    - MaxPooling2D: {pool_size: 2}\n"
    "    - Flatten\n"
    "    - Dropout: {rate: 0.2}\n"
    "    - Dense: {units: 4, activation: softmax}\n"
    "compile:\n"
    "  optimizer: {Adam: {learning_rate: 0.005}}\n"
    "  loss: sparse_categorical_crossentropy\n"
    "  metrics: [accuracy]\n"
    "data:\n"
    "  train: {x: train_x.npy, y: train_y.npy}\n"
    "  test: {x: test_x.npy, y: test_y.npy}\n"
    "  rescale: 1/255\n"
    "  reshape: [8, 8, 1]\n"
    "fit: {epochs: 4, batch_size: 8, validation_split: 0.2, seed: 9}\n";

static void setup(void) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    dir = kc_test_tmpdir();
    make_blobs("train_x.npy", "train_y.npy", kc_test_quick() ? 400 : 1200, 21);
    make_blobs("test_x.npy", "test_y.npy", 100, 22);
    write_file("ctl.yaml", cfg_text);
}

static void teardown(void) {
    kc_test_rmdir(dir);
    free(dir);
}

/* Every weight and optimizer slot of two checkpoints, bit for bit. */
static void assert_same_state(const char *a, const char *b) {
    kc_st_file *fa, *fb;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path_in(a), &fa, &e) == 0, "%s", e.msg);
    ck_assert_msg(kc_st_open(path_in(b), &fb, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(kc_st_count(fa), kc_st_count(fb));
    int compared = 0;
    for (int i = 0; i < kc_st_count(fa); i++) {
        const kc_st_tensor *ta = kc_st_at(fa, i), *tb = kc_st_find(fb, ta->name);
        ck_assert_msg(tb != NULL, "%s lacks %s", b, ta->name);
        if (!strncmp(ta->name, "state/", 6)) continue;
        ck_assert_msg(!memcmp(ta->data, tb->data, kc_st_nbytes(ta)), "%s differs between %s and %s",
                      ta->name, a, b);
        compared++;
    }
    ck_assert_int_ge(compared, 4);
    ck_assert_str_eq(kc_st_meta(fa, "step"), kc_st_meta(fb, "step"));
    ck_assert_str_eq(kc_st_meta(fa, "iterations"), kc_st_meta(fb, "iterations"));
    ck_assert_str_eq(kc_st_meta(fa, "history"), kc_st_meta(fb, "history"));
    kc_st_close(fa);
    kc_st_close(fb);
}

START_TEST(resume_at_epoch_boundary_is_exact) {
    ck_assert_int_eq(run("train ctl.yaml --output a --threads 2"), 0);
    ck_assert_int_eq(run("train ctl.yaml --output b --threads 2 --epochs 2"), 0);
    int st = run("train ctl.yaml --output b --threads 2 --resume b/last.safetensors");
    ck_assert_msg(st == 0, "resume failed: %s", err_buf);
    ck_assert_ptr_null(strstr(out_buf, "Epoch 1/4"));
    ck_assert_ptr_nonnull(strstr(out_buf, "Epoch 3/4"));
    assert_same_state("a/last.safetensors", "b/last.safetensors");
    /* the resumed history.csv has every epoch */
    char a[8192], b[8192];
    slurp(path_in("a/history.csv"), a, sizeof a);
    slurp(path_in("b/history.csv"), b, sizeof b);
    ck_assert_str_eq(a, b);
}
END_TEST

/* Starts kerasc in the background; returns its pid. */
static pid_t spawn(const char *args) {
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (chdir(dir)) _exit(127);
        if (!freopen("out.txt", "w", stdout) || !freopen("err.txt", "w", stderr)) _exit(127);
        execl("/bin/sh", "sh", "-c", args, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int wait_status(pid_t pid) {
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Waits until the run has written its first checkpoint (or ends). */
static void wait_for_file(const char *name, pid_t pid) {
    for (int i = 0; i < 3000 && !file_exists(name); i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) return;
        sleep_ms(5);
    }
}

START_TEST(ctrl_c_mid_epoch_then_resume_is_exact) {
    /* long enough (30 epochs) that the signal lands inside the run */
    ck_assert_int_eq(run("train ctl.yaml --output a --threads 1 --backend reference --epochs 30"),
                     0);
    char cmd[8400];
    snprintf(cmd, sizeof cmd,
             "exec '%s' train ctl.yaml --output c --threads 1 --backend reference --epochs 30",
             kerasc);
    pid_t pid = spawn(cmd);
    wait_for_file("c/last.safetensors", pid);
    sleep_ms(30 + (long)(time(NULL) % 40)); /* a moment inside the second epoch */
    kill(pid, SIGINT);
    int st = wait_status(pid);
    char p[4200];
    snprintf(p, sizeof p, "%s/err.txt", dir);
    slurp(p, err_buf, sizeof err_buf);
    ck_assert_msg(st == 130, "run ended with %d: %s", st, err_buf);
    ck_assert_ptr_nonnull(strstr(err_buf, "--resume c/last.safetensors"));
    st = run("train ctl.yaml --output c --threads 1 --backend reference --epochs 30 --resume "
             "c/last.safetensors");
    ck_assert_msg(st == 0, "resume failed: %s", err_buf);
    assert_same_state("a/last.safetensors", "c/last.safetensors");
}
END_TEST

START_TEST(sigkill_then_resume_is_exact) {
    ck_assert_int_eq(run("train ctl.yaml --output a --threads 2 --epochs 30"), 0);
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "exec '%s' train ctl.yaml --output k --threads 2 --epochs 30",
             kerasc);
    pid_t pid = spawn(cmd);
    wait_for_file("k/last.safetensors", pid);
    sleep_ms((long)(time(NULL) % 50));
    kill(pid, SIGKILL);
    wait_status(pid);
    /* whatever is on disk is a whole checkpoint */
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path_in("k/last.safetensors"), &f, &e) == 0, "%s", e.msg);
    kc_st_close(f);
    int st = run("train ctl.yaml --output k --threads 2 --epochs 30 --resume k/last.safetensors");
    ck_assert_msg(st == 0, "resume failed: %s", err_buf);
    assert_same_state("a/last.safetensors", "k/last.safetensors");
}
END_TEST

/* BackupAndRestore: the same command run again after a crash picks up from
 * the backup by itself. */
START_TEST(backup_and_restore_after_sigkill) {
    char *cfg = malloc(strlen(cfg_text) + 200);
    sprintf(cfg, "%s  callbacks: [{BackupAndRestore: {backup_dir: bk}}]\n", cfg_text);
    /* fit is a flow mapping in cfg_text: rewrite it as a block to add callbacks */
    char *fit = strstr(cfg, "fit: {");
    ck_assert_ptr_nonnull(fit);
    sprintf(fit, "fit:\n  epochs: 30\n  batch_size: 8\n  validation_split: 0.2\n  seed: 9\n"
                 "  callbacks: [{BackupAndRestore: {backup_dir: bk}}]\n");
    write_file("bk.yaml", cfg);
    free(cfg);
    ck_assert_int_eq(run("train bk.yaml --output a --threads 2"), 0);
    ck_assert(!file_exists("a/bk/backup.safetensors")); /* deleted at the end */
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "exec '%s' train bk.yaml --output b --threads 2", kerasc);
    pid_t pid = spawn(cmd);
    wait_for_file("b/bk/backup.safetensors", pid);
    sleep_ms((long)(time(NULL) % 40));
    kill(pid, SIGKILL);
    wait_status(pid);
    ck_assert(file_exists("b/bk/backup.safetensors"));
    int st = run("train bk.yaml --output b --threads 2");
    ck_assert_msg(st == 0, "rerun failed: %s", err_buf);
    ck_assert_ptr_nonnull(strstr(out_buf, "Restored training state from b/bk/backup.safetensors"));
    assert_same_state("a/last.safetensors", "b/last.safetensors");
}
END_TEST

START_TEST(second_ctrl_c_stops_at_once) {
    ck_assert_int_eq(run("train ctl.yaml --output d --threads 1 --epochs 1"), 0);
    char before[1 << 16], after[1 << 16];
    FILE *fb = fopen(path_in("d/last.safetensors"), "rb");
    size_t nb = fread(before, 1, sizeof before, fb);
    fclose(fb);
    char cmd[8400];
    snprintf(cmd, sizeof cmd,
             "exec '%s' train ctl.yaml --output d --threads 1 --backend reference --epochs 50",
             kerasc);
    pid_t pid = spawn(cmd);
    sleep_ms(300);
    kill(pid, SIGINT);
    kill(pid, SIGINT);
    int st = wait_status(pid);
    ck_assert_int_eq(st, 130);
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path_in("d/last.safetensors"), &f, &e) == 0, "%s", e.msg);
    kc_st_close(f);
    FILE *fa = fopen(path_in("d/last.safetensors"), "rb");
    size_t na = fread(after, 1, sizeof after, fa);
    fclose(fa);
    /* either untouched or replaced whole by a step-finished checkpoint */
    ck_assert(na > 0 && nb > 0);
}
END_TEST

START_TEST(callbacks_end_to_end) {
    write_file(
        "cb.yaml",
        "model:\n"
        "  layers:\n"
        "    - Input: {shape: [8, 8, 1]}\n"
        "    - Flatten\n"
        "    - Dense: {units: 4, activation: softmax}\n"
        "compile: {optimizer: {SGD: {learning_rate: 0.05}}, loss: sparse_categorical_crossentropy, "
        "metrics: [accuracy]}\n"
        "data:\n"
        "  train: {x: train_x.npy, y: train_y.npy}\n"
        "  test: {x: test_x.npy, y: test_y.npy}\n"
        "  validation: test\n"
        "  rescale: 1/255\n"
        "  reshape: [8, 8, 1]\n"
        "fit:\n"
        "  epochs: 30\n"
        "  batch_size: 32\n"
        "  seed: 3\n"
        "  callbacks:\n"
        "    - EarlyStopping: {monitor: val_loss, min_delta: 0.5, patience: 1, verbose: 1}\n"
        "    - ReduceLROnPlateau: {monitor: val_loss, factor: 0.5, patience: 1, min_delta: 0.5, "
        "verbose: 1}\n"
        "    - ModelCheckpoint: {filepath: 'ckpt-{epoch:02d}.safetensors', monitor: val_accuracy, "
        "save_best_only: true}\n"
        "    - CSVLogger: {filename: log.csv}\n");
    int st = run("train cb.yaml --output cb --threads 2");
    ck_assert_msg(st == 0, "train failed: %s", err_buf);
    /* min_delta 0.5 makes every epoch after the first a non-improvement */
    ck_assert_ptr_nonnull(strstr(
        out_buf, "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.02500000037252903."));
    ck_assert_ptr_nonnull(strstr(out_buf, "Epoch 2: early stopping"));
    ck_assert_ptr_null(strstr(out_buf, "Epoch 3/30"));
    ck_assert(file_exists("cb/ckpt-01.safetensors"));
    char log[4096];
    slurp(path_in("cb/log.csv"), log, sizeof log);
    const char *head = "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\r\n0,";
    ck_assert_msg(!strncmp(log, head, strlen(head)), "%s", log);
    ck_assert_ptr_nonnull(strstr(log, ",0.05000000074505806,"));
    char hist[4096];
    slurp(path_in("cb/history.csv"), hist, sizeof hist);
    ck_assert_ptr_nonnull(strstr(hist, "learning_rate"));
}
END_TEST

START_TEST(regularization_in_the_loss) {
    ck_assert_int_eq(run("train ctl.yaml --output r --threads 2 --epochs 1"), 0);
    /* the same weights evaluated by a model that regularizes its Dense kernel */
    char *reg = strdup(cfg_text);
    char *d = strstr(reg, "{units: 4, activation: softmax}");
    ck_assert_ptr_nonnull(d);
    char out[4096];
    snprintf(out, sizeof out,
             "%.*s{units: 4, activation: softmax, kernel_regularizer: {L2: {l2: 0.5}}}%s",
             (int)(d - reg), reg, d + strlen("{units: 4, activation: softmax}"));
    write_file("reg.yaml", out);
    free(reg);
    ck_assert_int_eq(run("evaluate ctl.yaml --weights r/last.safetensors --json"), 0);
    double plain, preg, a;
    ck_assert_int_eq(sscanf(out_buf, "{\"loss\": %lf, \"accuracy\": %lf}", &plain, &a), 2);
    ck_assert_int_eq(run("evaluate reg.yaml --weights r/last.safetensors --json"), 0);
    ck_assert_int_eq(sscanf(out_buf, "{\"loss\": %lf, \"accuracy\": %lf}", &preg, &a), 2);
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_int_eq(kc_st_open(path_in("r/last.safetensors"), &f, &e), 0);
    const kc_st_tensor *k = kc_st_find(f, "dense/kernel");
    ck_assert_ptr_nonnull(k);
    double sq = 0;
    for (int64_t i = 0; i < kc_shape_numel(&k->shape); i++)
        sq += (double)((const float *)k->data)[i] * ((const float *)k->data)[i];
    kc_st_close(f);
    ck_assert_close(preg - plain, 0.5 * sq, 1e-5, 1e-4);
}
END_TEST

/* Constraints act after every update: a non_neg kernel ends with no
 * negative weight, a max_norm one with every column norm within the bound. */
START_TEST(constraints_hold_after_training) {
    write_file(
        "con.yaml",
        "model:\n  layers:\n    - Input: {shape: [8, 8, 1]}\n    - Flatten\n"
        "    - Dense: {units: 6, activation: relu, kernel_constraint: non_neg}\n"
        "    - Dense: {units: 4, activation: softmax, kernel_constraint: {MaxNorm: {max_value: "
        "0.5}}}\n"
        "compile: {optimizer: {SGD: {learning_rate: 0.5}}, loss: sparse_categorical_crossentropy}\n"
        "data: {train: {x: train_x.npy, y: train_y.npy}, rescale: 1/255, reshape: [8, 8, 1]}\n"
        "fit: {epochs: 2, batch_size: 16}\n");
    ck_assert_int_eq(run("train con.yaml --output con --threads 2"), 0);
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_int_eq(kc_st_open(path_in("con/last.safetensors"), &f, &e), 0);
    const kc_st_tensor *k = kc_st_find(f, "dense/kernel");
    const float *w = k->data;
    for (int64_t i = 0; i < kc_shape_numel(&k->shape); i++)
        ck_assert_msg(w[i] >= 0, "dense/kernel[%lld] = %g", (long long)i, w[i]);
    const kc_st_tensor *k2 = kc_st_find(f, "dense_1/kernel");
    const float *w2 = k2->data;
    int64_t rows = k2->shape.d[0], cols = k2->shape.d[1];
    double largest = 0;
    for (int64_t c = 0; c < cols; c++) {
        double sq = 0;
        for (int64_t r = 0; r < rows; r++)
            sq += (double)w2[r * cols + c] * w2[r * cols + c];
        if (sqrt(sq) > largest) largest = sqrt(sq);
    }
    ck_assert_msg(largest <= 0.5 + 1e-5, "largest column norm %g", largest);
    ck_assert_msg(largest > 0.4,
                  "the bound was never reached (%g): the test would not show the constraint",
                  largest);
    kc_st_close(f);
}
END_TEST

START_TEST(log_json_lines) {
    int st = run(
        "train ctl.yaml --output j --threads 2 --epochs 2 --log-json j.jsonl --log-json-every 40");
    ck_assert_msg(st == 0, "train failed: %s", err_buf);
    char text[1 << 14];
    slurp(path_in("j.jsonl"), text, sizeof text);
    int lines = 0, epochs = 0;
    for (char *l = text; *l; l = strchr(l, '\n') + 1) {
        ck_assert_msg(!strncmp(l, "{\"epoch\": ", 10), "line: %s", l);
        if (!strstr(l, "\"batch\"") || strstr(l, "\"batch\"") > strchr(l, '\n')) epochs++;
        lines++;
        if (!strchr(l, '\n')) break;
    }
    int steps = ((kc_test_quick() ? 400 : 1200) * 8 / 10 + 7) / 8;
    ck_assert_int_eq(epochs, 2);
    ck_assert_int_eq(lines, 2 + 2 * (steps / 40));
    ck_assert_ptr_nonnull(strstr(text, "{\"epoch\": 1, \"loss\": "));
    ck_assert_int_eq(run("train ctl.yaml --log-json-every 5"), 2);
}
END_TEST

START_TEST(resume_errors) {
    ck_assert_int_eq(run("train ctl.yaml --output e --threads 2 --epochs 1"), 0);
    write_file("other.yaml",
               "model:\n  layers:\n    - Input: {shape: [8, 8, 1]}\n    - Flatten\n"
               "    - Dense: {units: 4, activation: softmax}\n"
               "compile: {loss: sparse_categorical_crossentropy}\n"
               "data: {train: {x: train_x.npy, y: train_y.npy}, reshape: [8, 8, 1]}\n");
    ck_assert_int_eq(run("train other.yaml --output e2 --resume e/last.safetensors"), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "conv2d/kernel"));
    ck_assert_int_ne(run("train ctl.yaml --output e --resume nothing.safetensors"), 0);
    ck_assert_ptr_nonnull(strstr(err_buf, "nothing.safetensors"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("train_control");
    TCase *t = tcase_create("train_control");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, resume_at_epoch_boundary_is_exact);
    tcase_add_test(t, ctrl_c_mid_epoch_then_resume_is_exact);
    tcase_add_test(t, sigkill_then_resume_is_exact);
    tcase_add_test(t, backup_and_restore_after_sigkill);
    tcase_add_test(t, second_ctrl_c_stops_at_once);
    tcase_add_test(t, callbacks_end_to_end);
    tcase_add_test(t, regularization_in_the_loss);
    tcase_add_test(t, constraints_hold_after_training);
    tcase_add_test(t, log_json_lines);
    tcase_add_test(t, resume_errors);
    suite_add_tcase(s, t);
    return kc_test_run(s);
}

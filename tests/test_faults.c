/* Faults from outside the program: a full disk or file size limit, output
 * locations that cannot be written, SIGKILL at any moment, damaged
 * checkpoints, and a standard output that takes nothing. Each ends in a
 * clear message and exit status 1 or 2, never a crash, and never costs a
 * file that was already on disk. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <time.h>
#include <utime.h>

#include "clitest.h"
#include "core/atomic_file.h"
#include "core/safetensors.h"
#include "models/fit.h"

static const char *cfg_text = "model:\n"
                              "  name: faults\n"
                              "  layers:\n"
                              "    - Input: {shape: [8, 8]}\n"
                              "    - Flatten\n"
                              "    - Dense: {units: 8, activation: relu}\n"
                              "    - Dense: {units: 4, activation: softmax}\n"
                              "compile:\n"
                              "  optimizer: {Adam: {learning_rate: 0.01}}\n"
                              "  loss: sparse_categorical_crossentropy\n"
                              "  metrics: [accuracy]\n"
                              "data:\n"
                              "  train: {x: train_x.npy, y: train_y.npy}\n"
                              "  test: {x: test_x.npy, y: test_y.npy}\n"
                              "  rescale: 1/255\n"
                              "fit:\n"
                              "  epochs: 3\n"
                              "  batch_size: 16\n"
                              "  validation_split: 0.25\n"
                              "  seed: 5\n"
                              "  verbose: 2\n";

static int have_dev_full;

static void setup(void) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    dir = kc_test_tmpdir();
    ck_assert_ptr_nonnull(dir);
    make_blobs("train_x.npy", "train_y.npy", 128, 31);
    make_blobs("test_x.npy", "test_y.npy", 32, 32);
    write_file("f.yaml", cfg_text);
    have_dev_full = access("/dev/full", W_OK) == 0;
}

static void teardown(void) {
    /* read-only directories of a test, so that they can be removed */
    if (chmod(path_in("ro"), 0755) == 0) chmod(path_in("ro/ck"), 0755);
    kc_test_rmdir(dir);
    free(dir);
}

/* The model file with `extra` lines added under fit: (callbacks). */
static void write_cfg_with(const char *name, const char *extra) {
    char text[8192];
    snprintf(text, sizeof text, "%s%s", cfg_text, extra);
    write_file(name, text);
}

/* The status of a child: its exit status, or 128 + the signal that ended it. */
static int decode(int st) {
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* Runs `sh -c CMD` in the scratch dir with stdout and stderr as given by
 * CMD itself; err.txt is read into err_buf when CMD writes it. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    remove(path_in("err.txt"));
    snprintf(cmd, sizeof cmd, "cd '%s' && %s", dir, args);
    int st = system(cmd);
    slurp(path_in("err.txt"), err_buf, sizeof err_buf);
    return decode(st);
}

/* An exit with a message, not a crash: 1 or 2, and no sanitizer report. */
static void assert_clean_failure(int st, const char *must_name) {
    ck_assert_msg(st == 1 || st == 2, "exit status %d (a signal is 128 + N): %s", st, err_buf);
    ck_assert_msg(!strstr(err_buf, "Sanitizer") && !strstr(err_buf, "runtime error"), "%s",
                  err_buf);
    if (must_name)
        ck_assert_msg(strstr(err_buf, must_name), "the message does not name %s: %s", must_name,
                      err_buf);
}

static long file_size(const char *name) {
    struct stat st;
    return stat(path_in(name), &st) == 0 ? (long)st.st_size : -1;
}

static char *read_all(const char *name, long *n) {
    *n = file_size(name);
    ck_assert_int_ge(*n, 0);
    char *b = malloc((size_t)*n + 1);
    FILE *f = fopen(path_in(name), "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fread(b, 1, (size_t)*n, f), (size_t)*n);
    fclose(f);
    return b;
}

static void write_bytes(const char *name, const char *b, long n) {
    FILE *f = fopen(path_in(name), "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
}

/* How many temporaries (NAME.tmp-PID[-N]) the directory holds. */
static int count_temporaries(const char *sub) {
    DIR *d = opendir(path_in(sub));
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *ent;
    long pid;
    while ((ent = readdir(d)))
        n += kc_atomic_temp_of(ent->d_name, "*", &pid);
    closedir(d);
    return n;
}

/* A pid no process has: a child that has exited and been waited for. */
static pid_t dead_pid(void) {
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) _exit(0);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
    return pid;
}

/* Runs kerasc ARGS in the scratch dir, with its stdout and stderr in
 * out_buf and err_buf, after `prepare` in the child (before exec). */
static int run_child(void (*prepare)(void), const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int run_child(void (*prepare)(void), const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "exec '%s' %s", kerasc, args);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (chdir(dir) || !freopen("out.txt", "w", stdout) || !freopen("err.txt", "w", stderr))
            _exit(125);
        if (prepare) prepare();
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    slurp(path_in("out.txt"), out_buf, sizeof out_buf);
    slurp(path_in("err.txt"), err_buf, sizeof err_buf);
    return decode(st);
}

/* ------------------------------------------------------------ disk full --- */

/* Files may not grow past 2 KB: the history fits, a checkpoint does not.
 * SIGXFSZ ignored, so the write fails with EFBIG as on a full disk. */
static void limit_file_size(void) {
    struct rlimit r = {2048, 2048};
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &r)) _exit(124);
}

START_TEST(full_disk_keeps_the_previous_checkpoint) {
    ck_assert_int_eq(run("train f.yaml --output d --epochs 1 --threads 1"), 0);
    long n_before;
    char *before = read_all("d/last.safetensors", &n_before);
    ck_assert_int_gt(n_before, 2048); /* else the limit would not bite */
    int st =
        run_child(limit_file_size,
                  "train f.yaml --output d --epochs 2 --threads 1 --resume d/last.safetensors");
    assert_clean_failure(st, "d/last.safetensors");
    ck_assert_msg(strstr(err_buf, strerror(EFBIG)), "%s", err_buf);
    long n_after;
    char *after = read_all("d/last.safetensors", &n_after);
    ck_assert_int_eq(n_after, n_before);
    ck_assert_msg(!memcmp(before, after, (size_t)n_before), "last.safetensors changed");
    free(before);
    free(after);
    ck_assert_int_eq(count_temporaries("d"), 0);
    st = run("evaluate d/last.safetensors --json --threads 1");
    ck_assert_msg(st == 0 && strstr(out_buf, "\"loss\": "), "evaluate: %d %s", st, err_buf);
    /* predictions that do not fit: no output and no temporary */
    st = run_child(limit_file_size,
                   "predict d/last.safetensors --input train_x.npy --output d/p.csv --threads 1");
    assert_clean_failure(st, "d/p.csv");
    ck_assert(!file_exists("d/p.csv"));
    ck_assert_int_eq(count_temporaries("d"), 0);
}
END_TEST

/* ----------------------------------------------- unwritable locations --- */

/* Nothing trained: no epoch line, no history. */
static void assert_nothing_trained(const char *run_dir) {
    ck_assert_msg(!strstr(out_buf, "Epoch 1/"), "%s", out_buf);
    char p[256];
    snprintf(p, sizeof p, "%s/history.csv", run_dir);
    ck_assert_msg(!file_exists(p), "%s was written", p);
}

START_TEST(missing_or_wrong_locations_are_reported_before_training) {
    write_file("plain.txt", "not a directory\n");
    int st = run("train f.yaml --output plain.txt/run");
    assert_clean_failure(st, "plain.txt");
    ck_assert_int_eq(st, 1); /* a command-line location: like any failed output */
    assert_nothing_trained("plain.txt/run");

    write_cfg_with("csv.yaml", "  callbacks: [{CSVLogger: {filename: nodir/log.csv}}]\n");
    st = run("train csv.yaml --output c");
    assert_clean_failure(st, "nodir");
    ck_assert_int_eq(st, 2); /* a path in the model file: a config error */
    assert_nothing_trained("c");

    st = run("train f.yaml --output j --log-json nodir/log.jsonl");
    assert_clean_failure(st, "nodir/log.jsonl");
    assert_nothing_trained("j");

    char cb[4400];
    snprintf(cb, sizeof cb,
             "  callbacks: [{ModelCheckpoint: {filepath: '%s/plain.txt/ck.safetensors'}}]\n", dir);
    write_cfg_with("ck.yaml", cb);
    st = run("train ck.yaml --output k");
    assert_clean_failure(st, "plain.txt");
    ck_assert_int_eq(st, 2);
    assert_nothing_trained("k");

    /* a CSVLogger file in the run directory: the directory is made */
    write_cfg_with("csv2.yaml", "  callbacks: [{CSVLogger: {filename: log.csv}}]\n");
    st = run("train csv2.yaml --output c2 --epochs 1 --threads 1");
    ck_assert_msg(st == 0, "%s", err_buf);
    ck_assert(file_exists("c2/log.csv"));

    /* missing directories Keras makes are made: run dir, ModelCheckpoint's */
    write_cfg_with("mk.yaml",
                   "  callbacks: [{ModelCheckpoint: {filepath: 'a/b/ck-{epoch}.safetensors'}}]\n");
    st = run("train mk.yaml --output new/run --epochs 1 --threads 1");
    ck_assert_msg(st == 0, "%s", err_buf);
    ck_assert(file_exists("new/run/last.safetensors"));
    ck_assert(file_exists("new/run/a/b/ck-1.safetensors"));
}
END_TEST

/* As an unprivileged user: root writes into any directory, so the test
 * drops to `nobody` for it. */
static void become_nobody(void) {
    if (getuid() != 0) return;
    if (setgid(65534) || setuid(65534)) _exit(126);
    /* the scratch directory or the binary may sit where nobody cannot go */
    if (access("f.yaml", R_OK) || access(kerasc, X_OK)) _exit(126);
}

START_TEST(read_only_directories_are_reported_before_training) {
    ck_assert_int_eq(mkdir(path_in("ro"), 0755), 0);
    ck_assert_int_eq(mkdir(path_in("ro/ck"), 0555), 0);
    ck_assert_int_eq(chmod(path_in("ro"), 0555), 0);
    ck_assert_int_eq(chmod(dir, 0755), 0); /* readable by the unprivileged user */
    int st = run_child(become_nobody, "train f.yaml --output ro");
    if (st == 126) {
        fprintf(stderr, "test_faults: SKIPPED read-only directories: running as root, and "
                        "cannot run kerasc as the user nobody here\n");
        return;
    }
    assert_clean_failure(st, "ro");
    ck_assert_int_eq(st, 1);
    ck_assert_msg(strstr(err_buf, strerror(EACCES)), "%s", err_buf);
    assert_nothing_trained("ro");

    char cb[4400];
    snprintf(cb, sizeof cb,
             "  callbacks: [{ModelCheckpoint: {filepath: '%s/ro/ck/x.safetensors'}}]\n", dir);
    write_cfg_with("ck.yaml", cb);
    ck_assert_int_eq(mkdir(path_in("w"), 0777), 0);
    ck_assert_int_eq(chmod(path_in("w"), 0777), 0);
    st = run_child(become_nobody, "train ck.yaml --output w");
    assert_clean_failure(st, "ro/ck");
    assert_nothing_trained("w");
    ck_assert(!file_exists("w/last.safetensors"));
}
END_TEST

/* ------------------------------------------------------------ SIGKILL --- */

static const char *kill_cbs =
    "  callbacks:\n"
    "    - ModelCheckpoint: {filepath: 'ep-{epoch:02d}.safetensors'}\n"
    "    - ModelCheckpoint: {filepath: 'st-{epoch:02d}-{batch:02d}.safetensors', save_freq: 2}\n";

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static pid_t spawn_train(const char *run_dir) {
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "exec '%s' train kill.yaml --output %s --threads 1 >/dev/null 2>&1",
             kerasc, run_dir);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (chdir(dir)) _exit(127);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Every file a killed run left is whole: checkpoints open, the history's
 * lines are complete. Returns how many temporaries there are. */
static int assert_files_whole(const char *run_dir) {
    DIR *d = opendir(path_in(run_dir));
    if (!d) return 0; /* killed before it made the directory */
    int temps = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        const char *n = ent->d_name;
        long pid;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", run_dir, n);
        if (n[0] == '.') continue;
        if (kc_atomic_temp_of(n, "*", &pid)) {
            temps++;
        } else if (strstr(n, ".safetensors")) {
            kc_st_file *f;
            kc_error e = {0};
            ck_assert_msg(kc_st_open(path_in(p), &f, &e) == 0, "%s: %s", p, e.msg);
            kc_st_close(f);
        } else {
            ck_assert_str_eq(n, "history.csv");
            char text[8192];
            slurp(path_in(p), text, sizeof text);
            size_t len = strlen(text);
            ck_assert_msg(len > 0 && text[len - 1] == '\n', "%s is cut short", p);
        }
    }
    closedir(d);
    return temps;
}

/* Every weight of two checkpoints, bit for bit. */
static void assert_same_weights(const char *a, const char *b) {
    kc_st_file *fa, *fb;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path_in(a), &fa, &e) == 0, "%s", e.msg);
    ck_assert_msg(kc_st_open(path_in(b), &fb, &e) == 0, "%s", e.msg);
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
    kc_st_close(fa);
    kc_st_close(fb);
}

/* Temporaries as a killed run leaves them (removed by the next run), and
 * names that only look alike (kept). */
static const char *const planted_stale[] = {"last.safetensors.tmp-%d", "history.csv.tmp-%d-7",
                                            "ep-02.safetensors.tmp-%d",
                                            "st-01-04.safetensors.tmp-%d"};
static const char *const planted_kept[] = {"notes.txt.tmp-%d", "last.safetensors.tmp-%d.bak"};

static void planted_name(char *p, size_t n, const char *run_dir, const char *fmt, pid_t pid) {
    char name[128];
    snprintf(name, sizeof name, fmt, (int)pid);
    snprintf(p, n, "%s/%s", run_dir, name);
}

START_TEST(sigkill_at_random_moments_then_resume) {
    write_cfg_with("kill.yaml", kill_cbs);
    double t0 = now_ms();
    ck_assert_int_eq(run("train kill.yaml --output ref --threads 1"), 0);
    double full = now_ms() - t0;
    uint64_t seed = 20240611;
    int rounds = kc_test_quick() ? 2 : 4;
    for (int i = 0; i < rounds; i++) {
        char run_dir[64], last[128], p[256];
        snprintf(run_dir, sizeof run_dir, "k%d", i);
        snprintf(last, sizeof last, "%s/last.safetensors", run_dir);
        long at = (long)(full * (0.1 + 0.9 * kc_rng_uniform(seed, 1, (uint64_t)i)));
        pid_t pid = spawn_train(run_dir);
        sleep_ms(at);
        kill(pid, SIGKILL);
        ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
        assert_files_whole(run_dir);
        pid_t dead = dead_pid();
        int planted = file_exists(run_dir);
        for (int k = 0; planted && k < 4; k++) {
            planted_name(p, sizeof p, run_dir, planted_stale[k], dead);
            write_file(p, "partial");
        }
        for (int k = 0; planted && k < 2; k++) {
            planted_name(p, sizeof p, run_dir, planted_kept[k], dead);
            write_file(p, "not ours");
        }
        int st = file_exists(last)
                     ? run("train kill.yaml --output %s --threads 1 --resume %s", run_dir, last)
                     : run("train kill.yaml --output %s --threads 1", run_dir);
        ck_assert_msg(st == 0, "round %d (killed at %ld ms): %s", i, at, err_buf);
        for (int k = 0; planted && k < 4; k++) {
            planted_name(p, sizeof p, run_dir, planted_stale[k], dead);
            ck_assert_msg(!file_exists(p), "%s was left", p);
        }
        for (int k = 0; planted && k < 2; k++) {
            planted_name(p, sizeof p, run_dir, planted_kept[k], dead);
            ck_assert_msg(file_exists(p), "%s was removed", p);
            ck_assert_int_eq(remove(path_in(p)), 0);
        }
        ck_assert_int_eq(assert_files_whole(run_dir), 0);
        assert_same_weights("ref/last.safetensors", last);
    }
}
END_TEST

START_TEST(stale_temporaries_only_are_removed) {
    ck_assert_int_eq(mkdir(path_in("t"), 0755), 0);
    pid_t dead = dead_pid();
    char name[256];
    struct {
        const char *fmt;
        long pid;
        int removed;
    } cases[] = {
        {"t/last.safetensors.tmp-%ld", dead, 1},
        {"t/last.safetensors.tmp-%ld-12", dead, 1},
        {"t/last.safetensors.tmp-%ld", (long)getpid(), 0}, /* alive, recent */
        {"t/last.safetensors.tmp-%ld-x", dead, 0},
        {"t/last.safetensors.tmp-%ld.bak", dead, 0},
        {"t/last.safetensors.tmp-0%ld", dead, 0},
        {"t/last.safetensors.tmp-%ld-01", dead, 0},
        {"t/other.safetensors.tmp-%ld", dead, 0},
        {"t/xlast.safetensors.tmp-%ld", dead, 0},
    };
    int n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, cases[i].fmt, cases[i].pid);
        write_file(name, "x");
    }
    /* a directory with a temporary's name, and one held open by a live process */
    snprintf(name, sizeof name, "t/last.safetensors.tmp-%ld-3", (long)dead);
    ck_assert_int_eq(mkdir(path_in(name), 0755), 0);
    snprintf(name, sizeof name, "t/last.safetensors.tmp-%ld-4", (long)getpid());
    int held = open(path_in(name), O_WRONLY | O_CREAT, 0644);
    ck_assert_int_ge(held, 0);
    struct utimbuf old = {time(NULL) - 3600, time(NULL) - 3600};
    ck_assert_int_eq(utime(path_in(name), &old), 0);
    /* alive, not held, unchanged for an hour: its pid was reused */
    snprintf(name, sizeof name, "t/last.safetensors.tmp-%ld-5", (long)getpid());
    write_file(name, "x");
    ck_assert_int_eq(utime(path_in(name), &old), 0);

    ck_assert_int_eq(kc_atomic_remove_stale(path_in("t/last.safetensors")), 3);
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, cases[i].fmt, cases[i].pid);
        ck_assert_msg(file_exists(name) == !cases[i].removed, "%s", name);
    }
    snprintf(name, sizeof name, "t/last.safetensors.tmp-%ld-3", (long)dead);
    ck_assert(file_exists(name));
    snprintf(name, sizeof name, "t/last.safetensors.tmp-%ld-4", (long)getpid());
    ck_assert(file_exists(name));
    close(held);
    snprintf(name, sizeof name, "t/last.safetensors.tmp-%ld-5", (long)getpid());
    ck_assert(!file_exists(name));

    /* patterns: a ModelCheckpoint template's names */
    snprintf(name, sizeof name, "t/ck-03-0.9.safetensors.tmp-%ld", (long)dead);
    write_file(name, "x");
    ck_assert_int_eq(kc_atomic_remove_stale(path_in("t/ck-*-*.safetensors")), 1);
    ck_assert(!file_exists(name));
    char esc[64];
    kc_glob_escape("a*b?[c]", esc, sizeof esc);
    ck_assert_str_eq(esc, "a\\*b\\?\\[c\\]");
}
END_TEST

/* ------------------------------------------------ damaged checkpoints --- */

START_TEST(damaged_checkpoints_fail_cleanly) {
    ck_assert_int_eq(run("train f.yaml --output g --epochs 1 --threads 1"), 0);
    long n;
    char *good = read_all("g/last.safetensors", &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | (unsigned char)good[i];
    ck_assert(hlen > 16 && (long)hlen + 8 < n);
    char *bad = malloc((size_t)n);
    long cuts[] = {0, 3, 8, 9, 8 + (long)hlen / 2, 8 + (long)hlen, 8 + (long)hlen + 5, n - 1};
    int ncuts = kc_test_quick() ? 4 : (int)(sizeof cuts / sizeof cuts[0]);
    for (int i = 0; i < ncuts; i++) {
        long c = cuts[kc_test_quick() ? i * 2 : i];
        write_bytes("bad.safetensors", good, c);
        int st = run("evaluate bad.safetensors --threads 1");
        ck_assert_msg(st == 1 || st == 2, "cut at %ld: status %d: %s", c, st, err_buf);
        assert_clean_failure(st, "bad.safetensors");
        st = run("train f.yaml --output r --threads 1 --resume bad.safetensors");
        assert_clean_failure(st, "bad.safetensors");
        assert_nothing_trained("r");
    }
    /* flipped bytes: the length prefix always shows; elsewhere the file may
     * still read, but nothing crashes */
    uint64_t seed = 77;
    int flips = kc_test_quick() ? 6 : 16;
    for (int i = 0; i < flips; i++) {
        memcpy(bad, good, (size_t)n);
        long at = i < 4 ? (long)(i * 2 + (i == 3)) /* 0, 2, 4, 7 */
                        : 8 + (long)kc_rng_below(seed, 1, (uint64_t)i, (uint64_t)(n - 8));
        bad[at] ^= (char)(i < 4 ? 0x40 : 0x5A);
        write_bytes("bad.safetensors", bad, n);
        int st = run("evaluate bad.safetensors --threads 1");
        ck_assert_msg(st <= 2, "flip at %ld: status %d: %s", at, st, err_buf);
        if (i < 4 || st != 0) assert_clean_failure(st, "bad.safetensors");
        if (i % 4 == 0) {
            st = run("train f.yaml --output r --threads 1 --epochs 1 --resume bad.safetensors");
            ck_assert_msg(st <= 2, "flip at %ld: resume status %d: %s", at, st, err_buf);
            if (st) assert_clean_failure(st, "bad.safetensors");
        }
    }
    free(bad);
    free(good);
}
END_TEST

/* ------------------------------------------ standard output that is full --- */

START_TEST(full_standard_output_is_an_error) {
    if (!have_dev_full) {
        fprintf(stderr, "test_faults: SKIPPED full standard output: no /dev/full\n");
        return;
    }
    ck_assert_int_eq(run("train f.yaml --output o --epochs 1 --threads 1"), 0);
    const char *cmds[] = {
        "summary f.yaml",
        "evaluate o/last.safetensors --json --threads 1",
        "evaluate o/last.safetensors --verbose 2 --threads 1",
        "predict o/last.safetensors --input test_x.npy --threads 1",
        "plot-history o/history.csv -o o/curves.png",
        "convert \"$KERASC_SRC/tests/fixtures/keras/cnn_sequential_k3.json\"",
        "--help",
        "--version",
    };
    const char *src = getenv("KERASC_SRC");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strstr(cmds[i], "KERASC_SRC") && (!src || !*src)) continue;
        int st = sh("'%s' %s >/dev/full 2>err.txt", kerasc, cmds[i]);
        ck_assert_msg(st == 1, "%s: status %d: %s", cmds[i], st, err_buf);
        ck_assert_msg(strstr(err_buf, "kerasc: cannot write standard output: "), "%s: %s", cmds[i],
                      err_buf);
        ck_assert_msg(strstr(err_buf, strerror(ENOSPC)), "%s: %s", cmds[i], err_buf);
    }
}
END_TEST

/* Training stops after the first epoch's state is saved, and resumes. */
START_TEST(training_to_a_full_output_saves_and_stops) {
    if (!have_dev_full) {
        fprintf(stderr, "test_faults: SKIPPED full standard output: no /dev/full\n");
        return;
    }
    int st = sh("'%s' train f.yaml --output t --epochs 3 --threads 1 >/dev/full 2>err.txt", kerasc);
    assert_clean_failure(st, "cannot write standard output");
    ck_assert_int_eq(st, 1);
    ck_assert_msg(strstr(err_buf, "--resume t/last.safetensors"), "%s", err_buf);
    /* "Epoch 1/3" could not be written: training stopped after its first step */
    ck_assert(!file_exists("t/history.csv"));
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path_in("t/last.safetensors"), &f, &e) == 0, "%s", e.msg);
    ck_assert_str_eq(kc_st_meta(f, "step"), "1");
    kc_st_close(f);
    st = run("train f.yaml --output t --epochs 3 --threads 1 --resume t/last.safetensors");
    ck_assert_msg(st == 0, "%s", err_buf);
    ck_assert_ptr_nonnull(strstr(out_buf, "Epoch 3/3"));
    ck_assert_int_eq(run("train f.yaml --output ref --epochs 3 --threads 1"), 0);
    assert_same_weights("ref/last.safetensors", "t/last.safetensors");

    /* the JSON log: the same */
    st = run("train f.yaml --output u --epochs 3 --threads 1 --log-json /dev/full");
    assert_clean_failure(st, "/dev/full");
    ck_assert_int_eq(st, 1);
    ck_assert_ptr_nonnull(strstr(out_buf, "Epoch 1/3"));
    ck_assert_ptr_null(strstr(out_buf, "Epoch 2/3"));
    ck_assert_msg(strstr(out_buf, "could not be written"), "%s", out_buf);
    ck_assert_ptr_null(strstr(out_buf, "Interrupted"));
    ck_assert(file_exists("u/last.safetensors"));

    /* a CSVLogger file that takes nothing ends the run with its name */
    write_cfg_with("csv.yaml", "  callbacks: [{CSVLogger: {filename: /dev/full}}]\n");
    st = run("train csv.yaml --output v --epochs 2 --threads 1");
    assert_clean_failure(st, "/dev/full");
    ck_assert_msg(strstr(err_buf, strerror(ENOSPC)), "%s", err_buf);
}
END_TEST

/* ---------------------------------------------- callbacks that fail --- */

static const char *meta_of(const char *ckpt, const char *key, char *out, size_t n) {
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path_in(ckpt), &f, &e) == 0, "%s", e.msg);
    const char *v = kc_st_meta(f, key);
    ck_assert_msg(v != NULL, "%s has no %s", ckpt, key);
    snprintf(out, n, "%s", v);
    kc_st_close(f);
    return out;
}

/* A CSVLogger whose file takes nothing fails at the end of epoch 1: the
 * epoch is saved all the same, and the run resumes from it exactly. */
START_TEST(failed_callback_at_epoch_end_saves_the_state) {
    if (!have_dev_full) {
        fprintf(stderr, "test_faults: SKIPPED failing CSVLogger: no /dev/full\n");
        return;
    }
    write_cfg_with("csv.yaml", "  callbacks: [{CSVLogger: {filename: /dev/full}}]\n");
    int st = run("train csv.yaml --output v --epochs 2 --threads 1");
    assert_clean_failure(st, "CSVLogger cannot write /dev/full");
    ck_assert_int_eq(st, 1);
    ck_assert_msg(strstr(err_buf, "training stopped after saving its state (continue with "
                                  "--resume v/last.safetensors)"),
                  "%s", err_buf);
    ck_assert_ptr_nonnull(strstr(out_buf, "Epoch 1/2"));
    ck_assert_ptr_null(strstr(out_buf, "Epoch 2/2"));
    char v[64];
    ck_assert_str_eq(meta_of("v/last.safetensors", "epoch", v, sizeof v), "1");
    ck_assert_str_eq(meta_of("v/last.safetensors", "batch", v, sizeof v), "0");
    ck_assert(file_exists("v/best.safetensors"));
    char hist[4096];
    slurp(path_in("v/history.csv"), hist, sizeof hist);
    ck_assert_msg(!strncmp(hist, "epoch,", 6) && strstr(hist, "\n0,") && !strstr(hist, "\n1,"),
                  "%s", hist);
    /* the same callbacks, with a file that takes the rows */
    write_cfg_with("csv_ok.yaml", "  callbacks: [{CSVLogger: {filename: log.csv}}]\n");
    st = run("train csv_ok.yaml --output v --epochs 2 --threads 1 --resume v/last.safetensors");
    ck_assert_msg(st == 0, "%s", err_buf);
    ck_assert_int_eq(run("train f.yaml --output ref --epochs 2 --threads 1"), 0);
    assert_same_weights("ref/last.safetensors", "v/last.safetensors");
}
END_TEST

/* A ModelCheckpoint whose name needs a value that step logs lack fails at
 * its first save (step 2): that step is saved, and the run resumes there. */
START_TEST(failed_callback_mid_epoch_saves_the_step) {
    write_cfg_with("mid.yaml", "  callbacks: [{ModelCheckpoint: {filepath: "
                               "'ck-{val_loss:.2f}.safetensors', save_freq: 2}}]\n");
    int st = run("train mid.yaml --output m --epochs 2 --threads 1");
    assert_clean_failure(st, "val_loss");
    ck_assert_msg(strstr(err_buf, "training stopped after saving its state (continue with "
                                  "--resume m/last.safetensors)"),
                  "%s", err_buf);
    char v[64];
    ck_assert_str_eq(meta_of("m/last.safetensors", "step", v, sizeof v), "2");
    ck_assert_str_eq(meta_of("m/last.safetensors", "batch", v, sizeof v), "2");
    ck_assert_str_eq(meta_of("m/last.safetensors", "epoch", v, sizeof v), "0");
    write_cfg_with("mid_ok.yaml", "  callbacks: [{ModelCheckpoint: {filepath: "
                                  "'ck-{batch}.safetensors', save_freq: 2}}]\n");
    st = run("train mid_ok.yaml --output m --epochs 2 --threads 1 --resume m/last.safetensors");
    ck_assert_msg(st == 0, "%s", err_buf);
    ck_assert(file_exists("m/ck-4.safetensors"));
    ck_assert_int_eq(run("train f.yaml --output ref --epochs 2 --threads 1"), 0);
    assert_same_weights("ref/last.safetensors", "m/last.safetensors");
}
END_TEST

/* ------------------------------------------ the trainer, in process --- */

/* f.yaml as a training session. */
static void open_f(kc_session *s, kc_config **cfg) {
    kc_error e = {0};
    ck_assert_msg(kc_config_load(path_in("f.yaml"), cfg, &e) == 0, "%s", e.msg);
    kc_run_opts o = {.threads = 1};
    ck_assert_msg(kc_session_open(s, *cfg, &o, KC_NEED_TRAIN, 1, &e) == 0, "%s", e.msg);
}

typedef struct stop_hooks {
    int cause; /* what interrupted() answers */
    char notes[8192];
} stop_hooks;

static int answer_stop(void *ctx) {
    return ((stop_hooks *)ctx)->cause;
}

static void keep_note(void *ctx, const char *msg) {
    stop_hooks *h = ctx;
    size_t used = strlen(h->notes);
    snprintf(h->notes + used, sizeof h->notes - used, "%s\n", msg);
}

/* Stops after the first step with `cause`; returns the notes and e. */
static void fit_stopped_by(int cause, stop_hooks *sh, kc_error *e) {
    kc_session s;
    kc_config *cfg;
    open_f(&s, &cfg);
    memset(sh, 0, sizeof *sh);
    sh->cause = cause;
    kc_hooks h = {.ctx = sh, .note = keep_note, .interrupted = answer_stop};
    ck_assert_int_eq(kc_fit(&s, path_in("st"), &h, e), KC_EINTERRUPTED);
    kc_session_close(&s);
    kc_config_free(cfg);
    ck_assert(file_exists("st/last.safetensors"));
}

START_TEST(stop_messages_follow_the_cause) {
    stop_hooks sh;
    kc_error e = {0};
    fit_stopped_by(1, &sh, &e);
    ck_assert_msg(strstr(sh.notes, "Interrupted after step 1 of epoch 1; saved "), "%s", sh.notes);
    ck_assert_msg(strstr(e.msg, "interrupted; resume with --resume "), "%s", e.msg);
    /* output that can no longer be written is no interruption */
    fit_stopped_by(2, &sh, &e);
    ck_assert_msg(strstr(sh.notes, "Training stopped after step 1 of epoch 1: its output could "
                                   "not be written; saved "),
                  "%s", sh.notes);
    ck_assert_msg(!strstr(sh.notes, "Interrupted"), "%s", sh.notes);
    ck_assert_msg(strstr(e.msg, "training stopped after saving its state (continue with "
                                "--resume "),
                  "%s", e.msg);
    ck_assert_msg(!strstr(e.msg, "interrupted"), "%s", e.msg);
}
END_TEST

/* A run directory path past PATH_MAX is refused whole: no directory made
 * from a cut-down name. */
START_TEST(run_directory_path_too_long) {
    size_t n = 4200, used = 0;
    char *long_dir = malloc(n + 300);
    used = (size_t)snprintf(long_dir, n + 300, "%s/long", dir);
    while (used < n)
        used += (size_t)snprintf(long_dir + used, n + 300 - used, "/%0200d", 7);
    ck_assert_uint_gt(strlen(long_dir), 4096);
    kc_session s;
    kc_config *cfg;
    open_f(&s, &cfg);
    kc_error e = {0};
    int rc = kc_fit(&s, long_dir, NULL, &e);
    kc_session_close(&s);
    kc_config_free(cfg);
    free(long_dir);
    ck_assert_msg(rc == KC_ECONFIG, "rc %d: %s", rc, e.msg);
    ck_assert_msg(strstr(e.msg, "path too long"), "%s", e.msg);
    char head[64];
    snprintf(head, sizeof head, "%.40s", path_in("long"));
    ck_assert_msg(strstr(e.msg, head), "the message does not show the path: %s", e.msg);
    ck_assert_msg(!file_exists("long"), "a directory was made from the cut-down path");
}
END_TEST

int main(void) {
    Suite *s = suite_create("faults");
    TCase *t = tcase_create("faults");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, full_disk_keeps_the_previous_checkpoint);
    tcase_add_test(t, missing_or_wrong_locations_are_reported_before_training);
    tcase_add_test(t, read_only_directories_are_reported_before_training);
    tcase_add_test(t, sigkill_at_random_moments_then_resume);
    tcase_add_test(t, stale_temporaries_only_are_removed);
    tcase_add_test(t, damaged_checkpoints_fail_cleanly);
    tcase_add_test(t, full_standard_output_is_an_error);
    tcase_add_test(t, training_to_a_full_output_saves_and_stops);
    tcase_add_test(t, failed_callback_at_epoch_end_saves_the_state);
    tcase_add_test(t, failed_callback_mid_epoch_saves_the_step);
    tcase_add_test(t, stop_messages_follow_the_cause);
    tcase_add_test(t, run_directory_path_too_long);
    suite_add_tcase(s, t);
    return kc_test_run(s);
}

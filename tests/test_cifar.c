/* cifar10 and cifar100: the loader against keras.datasets' own loader on
 * tiny folders of the real files' structure (tests/fixtures/cifar, written
 * by make_cifar.py there), the cache search, hostile batch files, and
 * training through the binary with `dataset: cifar10`. */
#include "clitest.h"
#include "models/data/cifar.h"
#include "models/data/pickle.h"

#include "tests/fixtures/cifar/cifar_expected.h"

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const char *src_root(void) {
    const char *root = getenv("KERASC_SRC");
    return root && *root ? root : ".";
}

static const char *fixture(const char *name) {
    static char buf[4200];
    snprintf(buf, sizeof buf, "%s/tests/fixtures/cifar/%s", src_root(), name);
    return buf;
}

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

/* x (n, 32, 32, 3) uint8 with Keras's bytes, y (n,) uint8 with Keras's labels. */
static void same_split(const kc_array *x, const kc_array *y, int n, uint64_t fnv, const int *ys,
                       const int (*px)[5], const char *what) {
    ck_assert_msg(x->dtype == KC_DT_U8 && x->shape.rank == 4, "%s: x not uint8 rank 4", what);
    ck_assert_int_eq(x->shape.d[0], n);
    ck_assert_int_eq(x->shape.d[1], 32);
    ck_assert_int_eq(x->shape.d[2], 32);
    ck_assert_int_eq(x->shape.d[3], 3);
    ck_assert_msg(y->dtype == KC_DT_U8 && y->shape.rank == 1 && y->shape.d[0] == n,
                  "%s: y not uint8 (n,)", what);
    const uint8_t *xb = x->data, *yb = y->data;
    for (int k = 0; k < 4; k++) {
        const int *q = px[k];
        int64_t at = (((int64_t)q[0] * 32 + q[1]) * 32 + q[2]) * 3 + q[3];
        ck_assert_msg(xb[at] == q[4], "%s: x[%d, %d, %d, %d] is %d, Keras gives %d", what, q[0],
                      q[1], q[2], q[3], xb[at], q[4]);
    }
    ck_assert_msg(fnv1a(xb, (size_t)n * KC_CIFAR_PIXELS) == fnv, "%s: x differs from Keras's",
                  what);
    for (int i = 0; i < n; i++)
        ck_assert_msg(yb[i] == ys[i], "%s: y[%d] is %d, Keras gives %d", what, i, yb[i], ys[i]);
}

static void free4(kc_array *a, kc_array *b, kc_array *c, kc_array *d) {
    kc_array_free(a), kc_array_free(b), kc_array_free(c), kc_array_free(d);
}

/* ---- the loader against Keras ---- */

START_TEST(cifar10_matches_keras) {
    kc_array xt, yt, xe, ye;
    kc_error e = {0};
    ck_assert_msg(
        kc_dataset_load("cifar10", fixture("cifar-10-batches-py"), &xt, &yt, &xe, &ye, &e) == KC_OK,
        "%s", e.msg);
    same_split(&xt, &yt, C10_TRAIN_N, C10_TRAIN_FNV, c10_train_y, c10_train_px, "cifar10 train");
    same_split(&xe, &ye, C10_TEST_N, C10_TEST_FNV, c10_test_y, c10_test_px, "cifar10 test");
    free4(&xt, &yt, &xe, &ye);
    /* the folder above the batch folder is found too */
    ck_assert_msg(kc_dataset_load("cifar10", fixture(""), &xt, &yt, &xe, &ye, &e) == KC_OK, "%s",
                  e.msg);
    ck_assert_int_eq(xt.shape.d[0], C10_TRAIN_N);
    free4(&xt, &yt, &xe, &ye);
}
END_TEST

START_TEST(cifar100_fine_and_coarse_match_keras) {
    kc_array xt, yt, xe, ye;
    kc_error e = {0};
    ck_assert_msg(
        kc_dataset_load("cifar100", fixture("cifar-100-python"), &xt, &yt, &xe, &ye, &e) == KC_OK,
        "%s", e.msg);
    same_split(&xt, &yt, C100_FINE_TRAIN_N, C100_FINE_TRAIN_FNV, c100_fine_train_y,
               c100_fine_train_px, "cifar100 fine train");
    same_split(&xe, &ye, C100_FINE_TEST_N, C100_FINE_TEST_FNV, c100_fine_test_y, c100_fine_test_px,
               "cifar100 fine test");
    free4(&xt, &yt, &xe, &ye);
    ck_assert_msg(kc_dataset_load("cifar100:coarse", fixture("cifar-100-python"), &xt, &yt, &xe,
                                  &ye, &e) == KC_OK,
                  "%s", e.msg);
    same_split(&xt, &yt, C100_COARSE_TRAIN_N, C100_COARSE_TRAIN_FNV, c100_coarse_train_y,
               c100_coarse_train_px, "cifar100 coarse train");
    same_split(&xe, &ye, C100_COARSE_TEST_N, C100_COARSE_TEST_FNV, c100_coarse_test_y,
               c100_coarse_test_px, "cifar100 coarse test");
    free4(&xt, &yt, &xe, &ye);
    ck_assert_int_eq(kc_cifar_load("cifar1000", KC_CIFAR_FINE, NULL, &xt, &yt, &xe, &ye, &e),
                     KC_ECONFIG);
}
END_TEST

/* ---- the search ---- */

static void copy_tree(const char *from, const char *to) {
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp -r '%s'/. '%s'", to, from, to);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(cifar_search_follows_keras_cache) {
    char kh[4200], home[4200], p[4300];
    snprintf(kh, sizeof kh, "%s/kh", dir);
    snprintf(home, sizeof home, "%s/home", dir);
    char *old_kh = getenv("KERAS_HOME") ? strdup(getenv("KERAS_HOME")) : NULL;
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("KERAS_HOME", kh, 1);
    setenv("HOME", home, 1);
    kc_array xt, yt, xe, ye;
    kc_error e = {0};
    /* nothing there: every place is listed, with how to get the data */
    ck_assert_int_eq(kc_dataset_load("cifar10", NULL, &xt, &yt, &xe, &ye, &e), KC_ERUNTIME);
    ck_assert_msg(strstr(e.msg, "dataset 'cifar10' not found") &&
                      strstr(e.msg, "kh/datasets/cifar-10-batches-py-target/cifar-10-batches-py/"
                                    "data_batch_1") &&
                      strstr(e.msg, "home/.keras/datasets/cifar-10-batches-py/data_batch_1") &&
                      strstr(e.msg, "cifar-10-python.tar.gz"),
                  "%s", e.msg);
    ck_assert_ptr_null(xt.data);
    /* older Keras's layout under ~/.keras */
    snprintf(p, sizeof p, "%s/.keras/datasets/cifar-100-python", home);
    copy_tree(fixture("cifar-100-python"), p);
    ck_assert_msg(kc_dataset_load("cifar100", NULL, &xt, &yt, &xe, &ye, &e) == KC_OK, "%s", e.msg);
    ck_assert_int_eq(xt.shape.d[0], C100_FINE_TRAIN_N);
    free4(&xt, &yt, &xe, &ye);
    /* Keras 3's layout under $KERAS_HOME wins over ~/.keras: a damaged copy there is reported */
    snprintf(p, sizeof p, "%s/datasets/cifar-100-python-target/cifar-100-python", kh);
    copy_tree(fixture("cifar-100-python"), p);
    snprintf(p, sizeof p, "%s/datasets/cifar-100-python-target/cifar-100-python/test", kh);
    ck_assert_int_eq(truncate(p, 100), 0);
    ck_assert_int_eq(kc_dataset_load("cifar100", NULL, &xt, &yt, &xe, &ye, &e), KC_ERUNTIME);
    ck_assert_msg(strstr(e.msg, "cifar-100-python-target/cifar-100-python/test: pickle"), "%s",
                  e.msg);
    ck_assert_ptr_null(xt.data);
    /* a folder with the first batch file but not the rest */
    snprintf(p, sizeof p, "%s/c10", dir);
    copy_tree(fixture("cifar-10-batches-py"), p);
    snprintf(p, sizeof p, "%s/c10/data_batch_4", dir);
    ck_assert_int_eq(unlink(p), 0);
    snprintf(p, sizeof p, "%s/c10", dir);
    ck_assert_int_eq(kc_dataset_load("cifar10", p, &xt, &yt, &xe, &ye, &e), KC_ERUNTIME);
    ck_assert_msg(strstr(e.msg, "c10/data_batch_4: cannot open"), "%s", e.msg);
    /* a user path that is a file */
    snprintf(p, sizeof p, "%s/c10/data_batch_1", dir);
    ck_assert_int_eq(kc_dataset_load("cifar10", p, &xt, &yt, &xe, &ye, &e), KC_ERUNTIME);
    ck_assert_msg(strstr(e.msg, "is a file; give the folder"), "%s", e.msg);
    if (old_kh)
        setenv("KERAS_HOME", old_kh, 1);
    else
        unsetenv("KERAS_HOME");
    if (old_home) setenv("HOME", old_home, 1);
    free(old_kh);
    free(old_home);
}
END_TEST

/* ---- hostile batch files ---- */

static unsigned char *read_fixture(const char *name, size_t *n) {
    FILE *f = fopen(fixture(name), "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len);
    ck_assert_uint_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static int parse_batch(const void *p, size_t n, const char *key, int nclasses, kc_error *e) {
    kc_array x, y;
    int rc = kc_cifar_batch_parse(p, n, "b.pkl", key, nclasses, &x, &y, e);
    if (rc) {
        ck_assert_ptr_null(x.data);
        ck_assert_ptr_null(y.data);
        ck_assert_msg(strstr(e->msg, "b.pkl"), "no file named: %s", e->msg);
    }
    kc_array_free(&x);
    kc_array_free(&y);
    return rc;
}

static void expect_refused(const void *p, size_t n, const char *what) {
    kc_error e = {0};
    ck_assert_int_eq(parse_batch(p, n, "labels", 10, &e), KC_ERUNTIME);
    ck_assert_msg(strstr(e.msg, what), "'%s' not in: %s", what, e.msg);
}

/* A Python 2 style batch: {'data': uint8 (rows, cols), 'labels': [lab...]} */
static size_t tiny_batch(unsigned char *b, int rows, int cols, const int *lab, int nlab) {
    size_t n = 0;
#define PUT(s, len) (memcpy(b + n, s, len), n += len)
#define PUTS(s) PUT(s, sizeof(s) - 1)
    PUTS("\x80\x02}q\x00(U\x04"
         "data"
         "cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01"
         "b\x87R(K\x01J");
    PUT(&rows, 4);
    PUTS("J");
    PUT(&cols, 4);
    PUTS("\x86"
         "cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff"
         "K\x00tb\x89T");
    int len = rows * cols;
    PUT(&len, 4);
    for (int i = 0; i < len; i++)
        b[n++] = (unsigned char)(i * 7);
    PUTS("tbU\x06labels](");
    for (int i = 0; i < nlab; i++) {
        b[n++] = 'J';
        PUT(&lab[i], 4);
    }
    PUTS("eu.");
#undef PUT
#undef PUTS
    return n;
}

START_TEST(cifar_reads_python2_batches_exactly) {
    static unsigned char b[4 * KC_CIFAR_PIXELS + 400];
    int lab[2] = {3, 9};
    size_t n = tiny_batch(b, 2, KC_CIFAR_PIXELS, lab, 2);
    kc_array x, y;
    kc_error e = {0};
    ck_assert_msg(kc_cifar_batch_parse(b, n, "b.pkl", "labels", 10, &x, &y, &e) == KC_OK, "%s",
                  e.msg);
    ck_assert_int_eq(x.shape.d[0], 2);
    const uint8_t *px = x.data;
    /* x[i, h, w, c] is stored[i, c, h, w] = (i * 3072 + c * 1024 + h * 32 + w) * 7 mod 256 */
    for (int i = 0; i < 2; i++)
        for (int p = 0; p < 1024; p += 37)
            for (int c = 0; c < 3; c++)
                ck_assert_int_eq(px[(i * 1024 + p) * 3 + c],
                                 (uint8_t)((i * 3072 + c * 1024 + p) * 7));
    ck_assert_int_eq(((uint8_t *)y.data)[1], 9);
    kc_array_free(&x);
    kc_array_free(&y);
    /* wrong sizes, labels outside the classes, counts that disagree */
    n = tiny_batch(b, 2, 3071, lab, 2);
    expect_refused(b, n, "3071 values per image; CIFAR images have 3 x 32 x 32 = 3072");
    lab[1] = 10;
    n = tiny_batch(b, 2, KC_CIFAR_PIXELS, lab, 2);
    expect_refused(b, n, "'labels' item 1 is 10, outside the classes 0..9");
    lab[1] = -1;
    n = tiny_batch(b, 2, KC_CIFAR_PIXELS, lab, 2);
    expect_refused(b, n, "item 1 is -1");
    lab[1] = 2;
    n = tiny_batch(b, 2, KC_CIFAR_PIXELS, lab, 1);
    expect_refused(b, n, "'labels' holds 1 labels for 2 rows of 'data'");
    /* a key that is not there names the ones that are */
    n = tiny_batch(b, 2, KC_CIFAR_PIXELS, lab, 2);
    ck_assert_int_eq(parse_batch(b, n, "fine_labels", 100, &e), KC_ERUNTIME);
    ck_assert_msg(strstr(e.msg, "no 'fine_labels' (it has: data, labels)"), "%s", e.msg);
    /* the shape says more bytes than the data holds */
    unsigned char *rows = memmem(b, n, "(K\x01J\x02\x00\x00\x00", 8);
    ck_assert_ptr_nonnull(rows);
    rows[4] = 3;
    expect_refused(b, n, "has shape (3, 3072) but 6144 bytes");
}
END_TEST

START_TEST(cifar_refuses_damaged_batch_files) {
    size_t n = 0;
    unsigned char *good = read_fixture("cifar-10-batches-py/data_batch_1", &n);
    kc_error e = {0};
    ck_assert_msg(parse_batch(good, n, "labels", 10, &e) == KC_OK, "%s", e.msg);
    /* every truncation fails cleanly, naming the file */
    for (size_t len = 0; len < n; len += (len < 300 ? 1 : 97))
        ck_assert_int_eq(parse_batch(good, len, "labels", 10, &e), KC_ERUNTIME);
    /* single-byte changes in the header part parse or fail cleanly */
    unsigned char *b = malloc(n);
    for (size_t i = 0; i < 240; i++)
        for (int v = 0; v < 256; v += 17) {
            memcpy(b, good, n);
            b[i] = (unsigned char)v;
            int rc = parse_batch(b, n, "labels", 10, &e);
            ck_assert(rc == KC_OK || rc == KC_ERUNTIME);
        }
    /* a huge length: the data's BINSTRING claims 2 GB */
    memcpy(b, good, n);
    unsigned char *t = memmem(b, n, "\x89T\x00\x30\x00\x00", 6);
    ck_assert_ptr_nonnull(t);
    memcpy(t + 2, "\xff\xff\xff\x7f", 4);
    expect_refused(b, n, "overruns the data");
    /* an opcode no such file uses, at its offset */
    memcpy(b, good, n);
    b[2] = 'i';
    expect_refused(b, n,
                   "b.pkl: pickle opcode 0x69 at byte 2 is not one a numpy object array uses");
    /* a global outside numpy's array reconstruction */
    memcpy(b, good, n);
    unsigned char *g = memmem(b, n, "cnumpy\ndtype\n", 13);
    ck_assert_ptr_nonnull(g);
    memcpy(g, "cposix\nwrite\n", 13);
    expect_refused(b, n, "refusing the global posix.write");
    /* the dict is not there */
    expect_refused("\x80\x02]q\x00.", 6, "the pickle holds a list, not a dict");
    expect_refused("\x80\x02}(U\x01"
                   "a.",
                   8, "the pickle holds a str, not a dict");
    expect_refused("\x80\x02}(U\x01"
                   "au.",
                   9, "a key without a value");
    expect_refused("\x80\x02Ns.", 5, "underflow");
    expect_refused("\x80\x02NNNs.", 7, "setting an item of None, not a dict");
    free(b);
    free(good);
}
END_TEST

/* ---- the model file ---- */

static const char *cnn =
    "model:\n"
    "  layers:\n"
    "    - Input: {shape: [32, 32, 3]}\n"
    "    - Conv2D: {filters: 4, kernel_size: 3, strides: 2, activation: relu}\n"
    "    - MaxPooling2D: {pool_size: 3}\n"
    "    - Flatten\n"
    "    - Dense: {units: %d, activation: softmax}\n"
    "compile:\n"
    "  optimizer: {Adam: {learning_rate: 0.01}}\n"
    "  loss: sparse_categorical_crossentropy\n"
    "  metrics: [accuracy]\n"
    "data:\n"
    "%s"
    "  rescale: 1/255\n"
    "fit: {epochs: %d, batch_size: 5, seed: 3}\n";

START_TEST(train_a_cnn_from_cifar) {
    char yaml[4096], data[1200];
    snprintf(data, sizeof data, "  dataset: cifar10\n  path: %s\n", fixture("cifar-10-batches-py"));
    snprintf(yaml, sizeof yaml, cnn, 10, data, 40);
    write_file("c10.yaml", yaml);
    int st = run("train c10.yaml --output run");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    ck_assert_ptr_nonnull(strstr(out_buf, "Epoch 40/40"));
    st = run("evaluate run/last.safetensors --json");
    ck_assert_msg(st == 0, "evaluate failed: %s", err_buf);
    double loss, acc;
    ck_assert_int_eq(sscanf(out_buf, "{\"loss\": %lf, \"accuracy\": %lf}", &loss, &acc), 2);
    ck_assert_msg(loss == loss && acc >= 0 && acc <= 1, "%s", out_buf);
    /* the 20 training images are learnt (the label is a bright patch's place) */
    char hist[1 << 14];
    slurp(path_in("run/history.csv"), hist, sizeof hist);
    ck_assert_msg(!strncmp(hist, "epoch,accuracy,loss\n", 20), "%s", hist);
    char *line = hist + strlen(hist) - 1;
    while (line > hist && line[-1] != '\n')
        line--;
    int ep;
    double a, l;
    ck_assert_int_eq(sscanf(line, "%d,%lf,%lf", &ep, &a, &l), 3);
    ck_assert_int_eq(ep, 39);
    ck_assert_msg(a >= 0.8, "training accuracy %.3f after 40 epochs: %s", a, hist);
}
END_TEST

START_TEST(cifar100_label_mode_reaches_the_loader) {
    char yaml[4096], data[1200];
    /* coarse labels (0..19) fit 20 units */
    snprintf(data, sizeof data, "  dataset: cifar100\n  label_mode: coarse\n  path: %s\n",
             fixture(""));
    snprintf(yaml, sizeof yaml, cnn, 20, data, 1);
    write_file("c100.yaml", yaml);
    int st = run("train c100.yaml --output coarse");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    /* fine labels (0..99, Keras's default) do not */
    snprintf(data, sizeof data, "  dataset: cifar100\n  path: %s\n", fixture(""));
    snprintf(yaml, sizeof yaml, cnn, 20, data, 1);
    write_file("c100.yaml", yaml);
    ck_assert_int_ne(run("train c100.yaml --output fine"), 0);
    ck_assert_msg(strstr(err_buf, "20"), "%s", err_buf);
    snprintf(yaml, sizeof yaml, cnn, 100, data, 1);
    write_file("c100.yaml", yaml);
    st = run("train c100.yaml --output fine");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
}
END_TEST

START_TEST(cifar_config_errors_name_the_place) {
    static const struct {
        const char *data, *want;
    } cases[] = {
        {"  dataset: cifar10\n  label_mode: fine\n",
         "bad.yaml:8:3: data.label_mode is an option of the cifar100 dataset (fine or coarse); "
         "the dataset here is cifar10"},
        {"  dataset: cifar100\n  label_mode: medium\n",
         "bad.yaml:8:15: data.label_mode must be one of fine, coarse, got 'medium'"},
        {"  dataset: cifar100\n  label_mod: fine\n",
         "bad.yaml:8:3: unknown key 'label_mod' in the data section (did you mean "
         "'label_mode'?)"},
        {"  dataset: cifar100\n  num_words: 5\n",
         "bad.yaml:8:3: data.num_words does not apply to the cifar100 dataset (it takes: "
         "label_mode)"},
        {"  dataset: cifar\n", "bad.yaml:7:12: unknown dataset 'cifar' (did you mean 'cifar10'?)"},
        {"  train: {x: a.npy, y: b.npy}\n  label_mode: coarse\n",
         "bad.yaml:8:3: data.label_mode is an option of the cifar100 dataset"},
    };
    for (int i = 0; i < NELEM(cases); i++) {
        char yaml[4096];
        snprintf(yaml, sizeof yaml,
                 "model:\n  layers:\n    - Input: {shape: [32, 32, 3]}\n    - Flatten\n"
                 "    - Dense: {units: 10}\ndata:\n%s",
                 cases[i].data);
        write_file("bad.yaml", yaml);
        ck_assert_msg(run("summary bad.yaml") == 2, "case %d: %s", i, err_buf);
        ck_assert_msg(strstr(err_buf, cases[i].want), "case %d: %s", i, err_buf);
    }
    /* a missing dataset is reported when the data is read, at `dataset:` */
    char yaml[4096];
    snprintf(yaml, sizeof yaml, cnn, 10, "  dataset: cifar10\n  path: nowhere\n", 1);
    write_file("late.yaml", yaml);
    ck_assert_int_eq(run("train late.yaml --output late"), 1);
    ck_assert_msg(strstr(err_buf, "dataset 'cifar10' not found") &&
                      strstr(err_buf, "nowhere: not there"),
                  "%s", err_buf);
}
END_TEST

static Suite *cifar_suite(void) {
    Suite *s = suite_create("cifar");
    TCase *tc = tcase_create("loader");
    tcase_add_test(tc, cifar10_matches_keras);
    tcase_add_test(tc, cifar100_fine_and_coarse_match_keras);
    tcase_add_test(tc, cifar_search_follows_keras_cache);
    tcase_add_test(tc, cifar_reads_python2_batches_exactly);
    tcase_add_test(tc, cifar_refuses_damaged_batch_files);
    suite_add_tcase(s, tc);
    TCase *cli = tcase_create("cli");
    tcase_set_timeout(cli, 120);
    tcase_add_test(cli, train_a_cnn_from_cifar);
    tcase_add_test(cli, cifar100_label_mode_reaches_the_loader);
    tcase_add_test(cli, cifar_config_errors_name_the_place);
    suite_add_tcase(s, cli);
    return s;
}

int main(void) {
    kerasc = getenv("KERASC");
    if (!kerasc) kerasc = "./kerasc";
    dir = kc_test_tmpdir();
    int rc = kc_test_run(cifar_suite());
    kc_test_rmdir(dir);
    free(dir);
    return rc;
}

/* The sequence datasets and time-series windows as the model file names
 * them: `dataset: imdb | reuters | boston_housing` with load_data's options
 * and the padding of the `text:` block, the `timeseries:` block with its
 * splits, `kerasc preprocess timeseries`, and the errors, each checked
 * against the loaders of models/data/keras_datasets.h and timeseries.h
 * called directly. */
#include "clitest.h"
#include "models/data/keras_datasets.h"
#include "models/data/sequences.h"
#include "models/data/timeseries.h"
#include "models/fit.h"

static const char *fixture(const char *name) {
    static char buf[4200];
    const char *root = getenv("KERASC_SRC");
    snprintf(buf, sizeof buf, "%s/tests/fixtures/data/%s", root && *root ? root : ".", name);
    return buf;
}

/* Parses `text` and opens a session on the CPU with the splits `need` asks for. */
static kc_config *open_cfg(const char *text, int need, kc_session *s) {
    kc_config *c = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_config_parse_text("w.yaml", dir, text, strlen(text), &c, &e) == 0, "%s",
                  e.msg);
    kc_run_opts o = {.threads = 1};
    ck_assert_msg(kc_session_open(s, c, &o, need, need & KC_NEED_TRAIN, &e) == 0, "%s", e.msg);
    return c;
}

static void close_cfg(kc_session *s, kc_config *c) {
    kc_session_close(s);
    kc_config_free(c);
}

static void same_array(const kc_array *got, const kc_array *want, const char *what) {
    ck_assert_msg(kc_shape_equal(&got->shape, &want->shape), "%s: shapes differ", what);
    int64_t n = kc_shape_numel(&want->shape);
    ck_assert_int_eq(got->dtype, KC_DT_F32);
    ck_assert_int_eq(want->dtype, KC_DT_F32);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(((const float *)got->data)[i] == ((const float *)want->data)[i],
                      "%s: element %lld is %g, the loader gives %g", what, (long long)i,
                      ((const float *)got->data)[i], ((const float *)want->data)[i]);
}

static const char *const imdb_model = "model:\n"
                                      "  layers:\n"
                                      "    - Input: {shape: [6]}\n"
                                      "    - Dense: {units: 1, activation: sigmoid}\n"
                                      "compile: {optimizer: adam, loss: binary_crossentropy, "
                                      "metrics: [accuracy]}\n";

/* The session's x/y equal the loader's sequences padded as the text block says. */
static void check_seq_case(const char *name, const char *opts, const kc_seq_opts *o,
                           const kc_pad_opts *p, const char *model) {
    char yaml[4096];
    snprintf(yaml, sizeof yaml, "%sdata:\n  dataset: %s\n  path: %s\n%s", model, name,
             fixture(!strcmp(name, "imdb") ? "imdb_p4.npz" : "reuters.npz"), opts);
    kc_session s;
    kc_config *c = open_cfg(yaml, KC_NEED_TRAIN | KC_NEED_TEST, &s);
    kc_seq_data sd;
    kc_error e = {0};
    ck_assert_msg(
        kc_seq_dataset_load(name, fixture(!strcmp(name, "imdb") ? "imdb_p4.npz" : "reuters.npz"), o,
                            &sd, &e) == 0,
        "%s", e.msg);
    kc_array xt, xe;
    ck_assert_int_eq(kc_pad_sequences(&sd.x_train, p, &xt, &e), 0);
    ck_assert_int_eq(kc_pad_sequences(&sd.x_test, p, &xe, &e), 0);
    same_array(&s.x_train, &xt, "x_train");
    same_array(&s.x_test, &xe, "x_test");
    same_array(&s.y_train, &sd.y_train, "y_train");
    same_array(&s.y_test, &sd.y_test, "y_test");
    kc_array_free(&xt);
    kc_array_free(&xe);
    kc_seq_data_free(&sd);
    close_cfg(&s, c);
}

START_TEST(imdb_options_and_padding_reach_the_loader) {
    kc_seq_opts o;
    /* Keras's defaults; padded pre to the model input's length */
    kc_seq_opts_default(&o);
    kc_pad_opts p = {.maxlen = 6};
    check_seq_case("imdb", "", &o, &p, imdb_model);
    /* every load_data option, and the text block's padding */
    kc_seq_opts_default(&o);
    o.num_words = 20, o.skip_top = 5, o.maxlen = 10, o.seed = 3;
    p = (kc_pad_opts){.maxlen = 6, .padding = KC_PAD_POST, .truncating = KC_PAD_POST, .value = 0};
    check_seq_case("imdb",
                   "  num_words: 20\n  skip_top: 5\n  maxlen: 10\n  seed: 3\n"
                   "  text: {padding: post, truncating: post}\n",
                   &o, &p, imdb_model);
    /* None for oov_char and start_char; index_from; a fill value; maxlen given */
    kc_seq_opts_default(&o);
    o.num_words = 25, o.oov_char = KC_SEQ_NONE, o.start_char = KC_SEQ_NONE, o.index_from = 0;
    p = (kc_pad_opts){.maxlen = 6, .padding = KC_PAD_PRE, .truncating = KC_PAD_POST, .value = -1};
    check_seq_case("imdb",
                   "  num_words: 25\n  oov_char: null\n  start_char: ~\n  index_from: 0\n"
                   "  text: {maxlen: 6, truncating: post, value: -1}\n",
                   &o, &p, imdb_model);
}
END_TEST

START_TEST(reuters_and_boston_reach_the_loader) {
    static const char *const reuters_model =
        "model:\n  layers:\n    - Input: {shape: [5]}\n"
        "    - Dense: {units: 46, activation: softmax}\n"
        "compile: {optimizer: adam, loss: sparse_categorical_crossentropy}\n";
    kc_seq_opts o;
    kc_seq_opts_default(&o);
    o.test_split = 0.5, o.num_words = 30, o.seed = 9;
    kc_pad_opts p = {.maxlen = 5, .padding = KC_PAD_POST};
    check_seq_case("reuters",
                   "  test_split: 0.5\n  num_words: 30\n  seed: 9\n  text: {padding: post}\n", &o,
                   &p, reuters_model);
    /* boston_housing: x (N, 13), y (N,) */
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "model:\n  layers:\n    - Input: {shape: [13]}\n    - Dense: {units: 1}\n"
             "compile: {optimizer: adam, loss: mse}\n"
             "data:\n  dataset: boston_housing\n  path: %s\n  test_split: 0.3\n  seed: 5\n",
             fixture("boston_housing.npz"));
    kc_session s;
    kc_config *c = open_cfg(yaml, KC_NEED_TRAIN | KC_NEED_TEST, &s);
    kc_array xt, yt, xe, ye;
    kc_error e = {0};
    ck_assert_int_eq(
        kc_boston_housing_load(fixture("boston_housing.npz"), 0.3, 5, &xt, &yt, &xe, &ye, &e), 0);
    ck_assert_int_eq(xt.shape.d[1], 13);
    same_array(&s.x_train, &xt, "boston x_train");
    same_array(&s.y_train, &yt, "boston y_train");
    same_array(&s.x_test, &xe, "boston x_test");
    same_array(&s.y_test, &ye, "boston y_test");
    kc_array_free(&xt), kc_array_free(&yt), kc_array_free(&xe), kc_array_free(&ye);
    close_cfg(&s, c);
}
END_TEST

static void copy_file(const char *from, const char *to) {
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/datasets' && cp '%s' '%s/datasets/%s'", dir, from, dir,
             to);
    ck_assert_int_eq(system(cmd), 0);
}

/* Each dataset name trains and evaluates through the binary, found in $KERAS_HOME. */
START_TEST(datasets_through_the_binary) {
    copy_file(fixture("imdb_p3.npz"), "imdb.npz");
    copy_file(fixture("reuters.npz"), "reuters.npz");
    copy_file(fixture("boston_housing.npz"), "boston_housing.npz");
    static const struct {
        const char *name, *model, *data;
    } cases[] = {
        {"imdb",
         "    - Input: {shape: [8]}\n    - Dense: {units: 1, activation: sigmoid}\n"
         "compile: {optimizer: adam, loss: binary_crossentropy, metrics: [accuracy]}\n",
         "  num_words: 30\n  text: {padding: post}\n"},
        {"reuters",
         "    - Input: {shape: [8]}\n    - Dense: {units: 46, activation: softmax}\n"
         "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: "
         "[accuracy]}\n",
         "  test_split: 0.25\n"},
        {"boston_housing",
         "    - Input: {shape: [13]}\n    - Dense: {units: 1}\n"
         "compile: {optimizer: adam, loss: mse, metrics: [mae]}\n",
         "  rescale: 1/100\n"},
    };
    char env[4300];
    snprintf(env, sizeof env, "KERAS_HOME='%s'", dir);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char yaml[4096], file[64];
        snprintf(yaml, sizeof yaml,
                 "model:\n  name: m_%s\n  layers:\n%sdata:\n  dataset: %s\n%s"
                 "fit: {epochs: 2, batch_size: 4}\n",
                 cases[i].name, cases[i].model, cases[i].name, cases[i].data);
        snprintf(file, sizeof file, "%s.yaml", cases[i].name);
        write_file(file, yaml);
        ck_assert_msg(run_env(env, "train %s --output run_%s", file, cases[i].name) == 0, "%s: %s",
                      cases[i].name, err_buf);
        ck_assert_msg(strstr(out_buf, "Epoch 2/2"), "%s: %s", cases[i].name, out_buf);
        ck_assert_msg(run_env(env, "evaluate run_%s/last.safetensors --json", cases[i].name) == 0,
                      "%s: %s", cases[i].name, err_buf);
        ck_assert_msg(strstr(out_buf, "\"loss\""), "%s: %s", cases[i].name, out_buf);
    }
    /* not found: every place looked at, and Keras's URL */
    write_file("home.yaml",
               "model:\n  layers:\n    - Input: {shape: [8]}\n    - Dense: {units: 1}\n"
               "compile: {optimizer: adam, loss: mse}\n"
               "data: {dataset: imdb}\n");
    ck_assert_int_ne(run_env("KERAS_HOME=/nonexistent HOME=/nonexistent", "train home.yaml"), 0);
    ck_assert_msg(strstr(err_buf, "/nonexistent/datasets/imdb.npz") &&
                      strstr(err_buf, KC_KERAS_DATASETS_URL "imdb.npz"),
                  "%s", err_buf);
}
END_TEST

/* t, a = 1.5 t, b = t^2 / 10: 50 steps, two columns plus a time column. */
static void write_series(const char *name) {
    char text[4096];
    size_t used = (size_t)snprintf(text, sizeof text, "\"t\",\"a\",\"b\"\n");
    for (int i = 0; i < 50; i++)
        used += (size_t)snprintf(text + used, sizeof text - used, "%d,%g,%g\n", i, 1.5 * i,
                                 i * i / 10.0);
    write_file(name, text);
}

static float col_a(int64_t i) {
    return (float)(1.5 * (double)i);
}
static float col_b(int64_t i) {
    return (float)((double)(i * i) / 10.0);
}

static const char *const ts_block = "  timeseries:\n"
                                    "    csv: s.csv\n"
                                    "    columns: [b, 1]\n" /* b, then a by index */
                                    "    sequence_length: 5\n"
                                    "    sequence_stride: 2\n"
                                    "    sampling_rate: 2\n"
                                    "    target: {column: a, offset: 9}\n"
                                    "    train: {end_index: 30, shuffle: true, seed: 4}\n"
                                    "    validation: {start_index: 30, end_index: -5}\n"
                                    "    test: {start_index: -15}\n";

static const char *const ts_model = "model:\n  layers:\n    - Input: {shape: [5, 2]}\n"
                                    "    - Flatten\n    - Dense: {units: 1}\n"
                                    "compile: {optimizer: adam, loss: mse, metrics: [mae]}\n";

/* Window i of x starts at step s: steps s, s+2, ..., s+8 of [b, a]; y = a[s + 9]. */
static void check_windows(const kc_array *x, const kc_array *y, int64_t n, int64_t first,
                          int64_t last, const char *what) {
    ck_assert_msg(x->shape.rank == 3 && x->shape.d[0] == n && x->shape.d[1] == 5 &&
                      x->shape.d[2] == 2,
                  "%s: %lld windows", what, (long long)x->shape.d[0]);
    ck_assert_int_eq(y->shape.rank, 1);
    ck_assert_int_eq(y->shape.d[0], n);
    const float *xv = x->data, *yv = y->data;
    int64_t starts[2] = {first, last}, rows[2] = {0, n - 1};
    for (int k = 0; k < 2; k++) {
        const float *w = xv + rows[k] * 10;
        for (int j = 0; j < 5; j++) {
            ck_assert_msg(w[2 * j] == col_b(starts[k] + 2 * j), "%s window %lld step %d", what,
                          (long long)rows[k], j);
            ck_assert(w[2 * j + 1] == col_a(starts[k] + 2 * j));
        }
        ck_assert_msg(yv[rows[k]] == col_a(starts[k] + 9), "%s target %lld", what,
                      (long long)rows[k]);
    }
}

START_TEST(timeseries_splits_match_the_loader) {
    write_series("s.csv");
    char yaml[4096];
    snprintf(yaml, sizeof yaml, "%sdata:\n%s", ts_model, ts_block);
    kc_session s;
    kc_config *c = open_cfg(yaml, KC_NEED_TRAIN | KC_NEED_TEST, &s);
    /* validation: steps 30..44, starts 30, 32, 34, 36 (the window needs 9 steps) */
    check_windows(&s.x_val, &s.y_val, 4, 30, 36, "validation");
    /* test: steps 35..49, but the target of a window starting after 40 lies past
     * the end: starts 35, 37, 39 */
    check_windows(&s.x_test, &s.y_test, 3, 35, 39, "test");
    /* the loader itself on the same series and options */
    kc_array tab, feat = {0}, a = {0}, targ, x, y;
    kc_error e = {0};
    ck_assert_int_eq(kc_csv_load(path_in("s.csv"), NULL, 1, &tab, NULL, &e), 0);
    kc_shape sh = kc_shape2(50, 2);
    ck_assert_int_eq(kc_array_alloc(&feat, KC_DT_F32, &sh, &e), 0);
    sh = kc_shape1(50);
    ck_assert_int_eq(kc_array_alloc(&a, KC_DT_F32, &sh, &e), 0);
    for (int i = 0; i < 50; i++) {
        ((float *)feat.data)[2 * i] = ((float *)tab.data)[3 * i + 2];
        ((float *)feat.data)[2 * i + 1] = ((float *)a.data)[i] = ((float *)tab.data)[3 * i + 1];
    }
    ck_assert_int_eq(kc_ts_shift(&a, 9, -1, &targ, &e), 0);
    kc_ts_opts o;
    kc_ts_opts_default(&o);
    o.sequence_length = 5, o.sequence_stride = 2, o.sampling_rate = 2;
    o.end_index = 30, o.shuffle = 1, o.seed = 4;
    ck_assert_msg(kc_timeseries_dataset(&feat, &targ, &o, &x, &y, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(x.shape.d[0], 11); /* (30 - 8) / 2 windows */
    same_array(&s.x_train, &x, "train x (shuffled)");
    same_array(&s.y_train, &y, "train y (shuffled)");
    kc_array_free(&x), kc_array_free(&y);
    o.start_index = 35, o.end_index = 49, o.shuffle = 0;
    ck_assert_int_eq(kc_timeseries_dataset(&feat, &targ, &o, &x, &y, &e), 0);
    same_array(&s.x_test, &x, "test x");
    same_array(&s.y_test, &y, "test y");
    kc_array_free(&x), kc_array_free(&y);
    kc_array_free(&tab), kc_array_free(&feat), kc_array_free(&a), kc_array_free(&targ);
    close_cfg(&s, c);
}
END_TEST

/* An NPY series: one feature, every step; the whole series trains by default. */
START_TEST(timeseries_from_npy) {
    float v[20];
    for (int i = 0; i < 20; i++)
        v[i] = (float)(i * 3);
    write_npy("v.npy", v, kc_shape1(20));
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "model:\n  layers:\n    - Input: {shape: [4, 1]}\n    - Flatten\n"
             "    - Dense: {units: 1}\n"
             "compile: {optimizer: adam, loss: mse}\n"
             "data:\n  timeseries: {npy: v.npy, sequence_length: 4, target: {}}\n");
    kc_session s;
    kc_config *c = open_cfg(yaml, KC_NEED_TRAIN, &s);
    /* next-step targets by default: windows start 0..15, y = v[s + 4] */
    ck_assert_int_eq(s.x_train.shape.d[0], 16);
    ck_assert_int_eq(s.x_train.shape.d[2], 1);
    ck_assert(((float *)s.x_train.data)[15 * 4 + 3] == 54.0f);
    ck_assert(((float *)s.y_train.data)[0] == 12.0f);
    ck_assert(((float *)s.y_train.data)[15] == 57.0f);
    ck_assert(!s.has_val);
    close_cfg(&s, c);
}
END_TEST

START_TEST(timeseries_trains_through_the_binary) {
    write_series("s.csv");
    char yaml[4096];
    snprintf(yaml, sizeof yaml, "%sdata:\n%s  rescale: 1/50\nfit: {epochs: 3, batch_size: 4}\n",
             ts_model, ts_block);
    write_file("ts.yaml", yaml);
    ck_assert_msg(run("train ts.yaml --output tsrun") == 0, "%s", err_buf);
    /* 11 windows in batches of 4; validated on the tail split */
    ck_assert_msg(strstr(out_buf, "3/3") && strstr(out_buf, "val_mae"), "%s", out_buf);
    ck_assert_msg(run("evaluate tsrun/last.safetensors --json") == 0, "%s", err_buf);
    ck_assert_msg(strstr(out_buf, "\"mae\""), "%s", out_buf);
    /* the shipped forecaster's file parses (its data is Debian's statsmodels CSV) */
    const char *root = getenv("KERASC_SRC");
    ck_assert_msg(run("summary '%s/configs/sunspots_dense.yaml'", root && *root ? root : ".") == 0,
                  "%s", err_buf);
    ck_assert_msg(strstr(out_buf, "Total params: 449"), "%s", out_buf); /* 12*32+32 + 32+1 */
}
END_TEST

START_TEST(preprocess_timeseries) {
    write_series("s.csv");
    ck_assert_msg(run("preprocess timeseries s.csv --output x.npy --targets y.npy --columns b,a "
                      "--sequence-length 5 --sequence-stride 2 --sampling-rate 2 "
                      "--target-column a --offset 9 --start-index -15") == 0,
                  "%s", err_buf);
    kc_array x, y;
    kc_error e = {0};
    ck_assert_int_eq(kc_npy_load(path_in("x.npy"), &x, &e), 0);
    ck_assert_int_eq(kc_npy_load(path_in("y.npy"), &y, &e), 0);
    check_windows(&x, &y, 3, 35, 39, "preprocess");
    kc_array_free(&x), kc_array_free(&y);
    /* an NPY series, no targets, a shuffle */
    float v[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    write_npy("v.npy", v, kc_shape1(10));
    ck_assert_msg(run("preprocess timeseries v.npy --output w.npy --sequence-length 3 --shuffle "
                      "--seed 2") == 0,
                  "%s", err_buf);
    ck_assert_int_eq(kc_npy_load(path_in("w.npy"), &x, &e), 0);
    ck_assert_int_eq(x.shape.d[0], 8);
    float sum = 0;
    for (int i = 0; i < 8; i++) {
        const float *w = (const float *)x.data + 3 * i;
        ck_assert(w[1] == w[0] + 1 && w[2] == w[0] + 2);
        sum += w[0];
    }
    ck_assert(sum == 28.0f); /* every start 0..7 once */
    kc_array_free(&x);
    /* errors */
    ck_assert_int_eq(run("preprocess timeseries s.csv --output x.npy"), 2);
    ck_assert_msg(strstr(err_buf, "--sequence-length"), "%s", err_buf);
    ck_assert_int_eq(run("preprocess timeseries s.csv --output x.npy --sequence-length 3 "
                         "--columns c"),
                     2);
    ck_assert_msg(strstr(err_buf, "no column 'c'"), "%s", err_buf);
    ck_assert_int_eq(run("preprocess --help"), 0);
    ck_assert_ptr_nonnull(strstr(out_buf, "timeseries"));
}
END_TEST

/* Mistakes name file:line:column. */
START_TEST(config_errors_name_the_place) {
    write_series("s.csv");
    static const struct {
        const char *data, *want;
    } cases[] = {
        {"  dataset: imdb\n  test_split: 0.3\n",
         "bad.yaml:8:3: data.test_split does not apply to the imdb dataset (it takes: num_words"},
        {"  dataset: mnist\n  num_words: 5\n",
         "bad.yaml:8:3: data.num_words does not apply to the mnist dataset"},
        {"  train: {x: a.npy, y: b.npy}\n  seed: 5\n",
         "bad.yaml:8:3: data.seed is an option of the imdb, reuters and boston_housing"},
        {"  dataset: imdb\n  num_word: 5\n",
         "bad.yaml:8:3: unknown key 'num_word' in the data section (did you mean 'num_words'?)"},
        {"  dataset: imdb\n  num_words: 0\n", "bad.yaml:8:14: data.num_words must be in 1.."},
        {"  dataset: imdb\n  text: {num_words: 5}\n",
         "bad.yaml:8:10: text.num_words: the imdb sequences are token ids already"},
        {"  dataset: imdb\n  text: {padding: middle}\n",
         "bad.yaml:8:19: text.padding must be one of pre, post"},
        {"  dataset: boston_housing\n  text: {maxlen: 5}\n",
         "bad.yaml:8:9: data.text applies to text sources and to the padding"},
        {"  dataset: imbd\n", "bad.yaml:7:12: unknown dataset 'imbd' (did you mean 'imdb'?)"},
        {"  dataset: reuters\n  test_split: 1.5\n",
         "bad.yaml:8:15: data.test_split must be in [0, 1)"},
        {"  timeseries: {csv: s.csv, sequence_lenght: 3}\n",
         "bad.yaml:7:28: unknown key 'sequence_lenght' in data.timeseries (did you mean "
         "'sequence_length'?)"},
        {"  timeseries: {csv: s.csv}\n", "bad.yaml:7:15: timeseries needs `sequence_length:`"},
        {"  timeseries: {sequence_length: 3}\n", "timeseries needs the series"},
        {"  timeseries: {csv: s.csv, sequence_length: 3, train: {end: 4}}\n",
         "bad.yaml:7:56: unknown key 'end' in timeseries.train"},
        {"  timeseries: {csv: s.csv, sequence_length: 3, target: {column: a, ofset: 1}}\n",
         "unknown key 'ofset' in timeseries.target (did you mean 'offset'?)"},
        {"  timeseries: {csv: s.csv, sequence_length: 3, target: {}}\n  train: {x: a.npy, y: "
         "b.npy}\n",
         "bad.yaml:8:3: data.train does not go with `timeseries:`"},
        {"  timeseries: {csv: s.csv, sequence_length: 3}\n",
         "takes array 'y', but data.timeseries (bad.yaml:7:15) has no `target:`"},
        {"  timeseries: {csv: s.csv, sequence_length: 0, target: {}}\n",
         "bad.yaml:7:45: timeseries.sequence_length must be in 1.."},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char yaml[4096];
        snprintf(yaml, sizeof yaml,
                 "model:\n  layers:\n    - Input: {shape: [3, 1]}\n    - Flatten\n"
                 "    - Dense: {units: 1}\ndata:\n%s",
                 cases[i].data);
        write_file("bad.yaml", yaml);
        ck_assert_msg(run("summary bad.yaml") == 2, "case %zu: %s", i, err_buf);
        ck_assert_msg(strstr(err_buf, cases[i].want), "case %zu: %s", i, err_buf);
    }
    /* found when the data is read: a column, a split outside the series, an option the loader
     * refuses */
    static const struct {
        const char *data, *want;
    } late[] = {
        {"  timeseries: {csv: s.csv, columns: [a, c], sequence_length: 3, target: {}}\n",
         "late.yaml:8:41: timeseries: "},
        {"  timeseries: {csv: s.csv, columns: [a], sequence_length: 3, target: {},"
         " test: {start_index: 60}}\n",
         "late.yaml:8:80: timeseries.test: steps 60..49 do not lie in the series' 50 steps"},
        {"  dataset: imdb\n  path: IMDB\n  maxlen: 2\n", "late.yaml:8:12: the imdb dataset: "},
    };
    for (size_t i = 0; i < sizeof late / sizeof *late; i++) {
        char yaml[4096], data[1024];
        snprintf(data, sizeof data, "%s", late[i].data);
        char *p = strstr(data, "IMDB");
        if (p) {
            char rest[1024];
            snprintf(rest, sizeof rest, "%s", p + 4);
            snprintf(p, sizeof data - (size_t)(p - data), "%s%s", fixture("imdb_p4.npz"), rest);
        }
        snprintf(yaml, sizeof yaml,
                 "model:\n  layers:\n    - Input: {shape: [3, 1]}\n    - Flatten\n"
                 "    - Dense: {units: 1}\ncompile: {optimizer: adam, loss: mse}\ndata:\n%s",
                 data);
        write_file("late.yaml", yaml);
        ck_assert_msg(run("train late.yaml --output late") == 2, "late %zu: %s", i, err_buf);
        ck_assert_msg(strstr(err_buf, late[i].want), "late %zu: %s", i, err_buf);
    }
}
END_TEST

Suite *seq_wiring_suite(void);
Suite *seq_wiring_suite(void) {
    Suite *s = suite_create("seq_wiring");
    TCase *d = tcase_create("datasets");
    tcase_set_timeout(d, 120);
    tcase_add_test(d, imdb_options_and_padding_reach_the_loader);
    tcase_add_test(d, reuters_and_boston_reach_the_loader);
    tcase_add_test(d, datasets_through_the_binary);
    suite_add_tcase(s, d);
    TCase *t = tcase_create("timeseries");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, timeseries_splits_match_the_loader);
    tcase_add_test(t, timeseries_from_npy);
    tcase_add_test(t, timeseries_trains_through_the_binary);
    tcase_add_test(t, preprocess_timeseries);
    tcase_add_test(t, config_errors_name_the_place);
    suite_add_tcase(s, t);
    return s;
}

int main(void) {
    kerasc = getenv("KERASC");
    if (!kerasc) kerasc = "./kerasc";
    dir = kc_test_tmpdir();
    int rc = kc_test_run(seq_wiring_suite());
    kc_test_rmdir(dir);
    free(dir);
    return rc;
}

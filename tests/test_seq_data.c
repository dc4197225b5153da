/* Keras's sequence datasets (imdb, reuters, boston_housing), numpy's legacy
 * shuffle, the bounded pickle reader and time-series windows. Expected
 * values in tests/fixtures/data/seq_expected.h come from Keras itself (see
 * make_seq_data.py there), run on the tiny fixture files beside it. */
#include <math.h>
#include <sys/stat.h>

#include "models/data/keras_datasets.h"
#include "models/data/np_random.h"
#include "models/data/pickle.h"
#include "models/data/timeseries.h"
#include "tests/testutil.h"

#define FIX "tests/fixtures/data"

typedef struct seq_case {
    const char *ds, *file;
    long long num_words, skip_top, maxlen;
    unsigned seed;
    long long start_char, oov_char, index_from;
    double test_split;
    int ntr;
    const long long *tr_off;
    const int *tr_tok;
    const float *tr_y;
    int nte;
    const long long *te_off;
    const int *te_tok;
    const float *te_y;
} seq_case;
typedef struct perm_case {
    unsigned seed;
    int n, k;
    const long long *head, *tail;
    long long check;
} perm_case;
typedef struct ts_case {
    int len, stride, rate, start, end, off, n;
    const float *x, *y;
} ts_case;
typedef struct gen_case {
    int length, rate, stride, start, end, rev, n, steps;
    const float *x, *y;
} gen_case;

#include "tests/fixtures/data/seq_expected.h"

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

static char *g_dir;
static void setup(void) {
    g_dir = kc_test_tmpdir();
    ck_assert_ptr_nonnull(g_dir);
}
static void teardown(void) {
    kc_test_rmdir(g_dir);
    free(g_dir);
}

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, n, b), n);
    fclose(a);
    fclose(b);
}

/* ---- numpy's RandomState ---- */

START_TEST(np_permutation_matches_numpy) {
    for (int c = 0; c < NELEM(PERM_CASES); c++) {
        const perm_case *p = &PERM_CASES[c];
        int64_t *a = malloc((size_t)p->n * sizeof *a);
        kc_np_permutation(p->seed, a, p->n);
        for (int i = 0; i < p->k; i++) {
            ck_assert_int_eq(a[i], p->head[i]);
            ck_assert_int_eq(a[p->n - p->k + i], p->tail[i]);
        }
        long long check = 0;
        for (int i = 0; i < p->n; i++)
            check = (check + (long long)i * a[i]) % (1LL << 61);
        ck_assert_int_eq(check, p->check);
        free(a);
    }
}
END_TEST

/* ---- imdb / reuters ---- */

static void opts_of(const seq_case *c, kc_seq_opts *o) {
    kc_seq_opts_default(o);
    o->num_words = c->num_words;
    o->skip_top = c->skip_top;
    o->maxlen = c->maxlen;
    o->seed = c->seed;
    o->start_char = c->start_char;
    o->oov_char = c->oov_char;
    o->index_from = c->index_from;
    o->test_split = c->test_split;
}

static void expect_split(const kc_ragged *x, const kc_array *y, int n, const long long *off,
                         const int *tok, const float *ly, int c) {
    ck_assert_msg(x->n == n, "case %d: %lld sequences, Keras has %d", c, (long long)x->n, n);
    ck_assert_int_eq(y->shape.rank, 1);
    ck_assert_int_eq(y->shape.d[0], n);
    for (int i = 0; i <= n; i++)
        ck_assert_msg(x->off[i] == off[i], "case %d: offset %d is %lld, Keras %lld", c, i,
                      (long long)x->off[i], off[i]);
    for (long long j = 0; j < off[n]; j++)
        ck_assert_msg(x->tok[j] == tok[j], "case %d: id %lld is %d, Keras %d", c, j, x->tok[j],
                      tok[j]);
    for (int i = 0; i < n; i++)
        ck_assert_float_eq(((float *)y->data)[i], ly[i]);
}

static void expect_case(const seq_case *c, int ci, const kc_seq_data *d) {
    expect_split(&d->x_train, &d->y_train, c->ntr, c->tr_off, c->tr_tok, c->tr_y, ci);
    expect_split(&d->x_test, &d->y_test, c->nte, c->te_off, c->te_tok, c->te_y, ci);
}

START_TEST(imdb_reuters_match_keras) {
    for (int ci = 0; ci < NELEM(SEQ_CASES); ci++) {
        const seq_case *c = &SEQ_CASES[ci];
        kc_seq_opts o;
        opts_of(c, &o);
        char path[256];
        snprintf(path, sizeof path, FIX "/%s", c->file);
        kc_seq_data d;
        kc_error e = {0};
        int rc = kc_seq_dataset_load(c->ds, path, &o, &d, &e);
        ck_assert_msg(rc == KC_OK, "case %d: %s", ci, e.msg);
        expect_case(c, ci, &d);
        kc_seq_data_free(&d);
    }
}
END_TEST

START_TEST(seq_dataset_search_and_errors) {
    char kh[512], ds[600], p[700];
    snprintf(kh, sizeof kh, "%s/kh", g_dir);
    snprintf(ds, sizeof ds, "%s/datasets", kh);
    ck_assert_int_eq(mkdir(kh, 0700), 0);
    ck_assert_int_eq(mkdir(ds, 0700), 0);
    setenv("KERAS_HOME", kh, 1);
    setenv("HOME", g_dir, 1);
    kc_seq_data d;
    kc_error e = {0};
    /* nothing there: every place named, and where Keras downloads from */
    ck_assert_int_eq(kc_seq_dataset_load("imdb", NULL, NULL, &d, &e), KC_ERUNTIME);
    ck_assert_ptr_nonnull(strstr(e.msg, "imdb.npz not found"));
    ck_assert_ptr_nonnull(strstr(e.msg, ds));
    ck_assert_ptr_nonnull(strstr(e.msg, "/tmp/.keras/datasets/imdb.npz"));
    ck_assert_ptr_nonnull(strstr(e.msg, KC_KERAS_DATASETS_URL "imdb.npz"));
    /* $KERAS_HOME/datasets/imdb.npz with Keras's defaults (case 2) */
    snprintf(p, sizeof p, "%s/imdb.npz", ds);
    copy_file(FIX "/imdb_p4.npz", p);
    ck_assert_msg(kc_seq_dataset_load("imdb", NULL, NULL, &d, &e) == KC_OK, "%s", e.msg);
    expect_case(&SEQ_CASES[2], 2, &d);
    kc_seq_data_free(&d);
    /* a directory as the path */
    ck_assert_msg(kc_seq_dataset_load("imdb", ds, NULL, &d, &e) == KC_OK, "%s", e.msg);
    kc_seq_data_free(&d);
    /* wrong files and options */
    ck_assert_int_eq(kc_seq_dataset_load("reuters", FIX "/imdb_p4.npz", NULL, &d, &e), KC_ERUNTIME);
    ck_assert_ptr_nonnull(strstr(e.msg, "no member x.npy"));
    ck_assert_int_eq(kc_seq_dataset_load("imdb", FIX "/boston_housing.npz", NULL, &d, &e),
                     KC_ERUNTIME);
    ck_assert_int_eq(kc_seq_dataset_load("imdb", "/nonexistent/imdb.npz", NULL, &d, &e),
                     KC_ERUNTIME);
    ck_assert_ptr_nonnull(strstr(e.msg, "\n  /nonexistent/imdb.npz: not there"));
    ck_assert_ptr_nonnull(strstr(e.msg, "correct the dataset path"));
    ck_assert_int_eq(kc_seq_dataset_load("cifar", NULL, NULL, &d, &e), KC_ECONFIG);
    kc_seq_opts o;
    kc_seq_opts_default(&o);
    o.maxlen = 2;
    ck_assert_int_eq(kc_seq_dataset_load("imdb", FIX "/imdb_p4.npz", &o, &d, &e), KC_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "Increase maxlen"));
    kc_seq_opts_default(&o);
    o.test_split = 1.0;
    ck_assert_int_eq(kc_seq_dataset_load("reuters", FIX "/reuters.npz", &o, &d, &e), KC_ECONFIG);
    ck_assert_ptr_null(d.x_train.off);
    unsetenv("KERAS_HOME");
}
END_TEST

/* ---- boston_housing ---- */

static void expect_floats(const kc_array *a, const float *want, int64_t n) {
    ck_assert_int_eq(a->dtype, KC_DT_F32);
    for (int64_t i = 0; i < n; i++)
        ck_assert_float_eq(((float *)a->data)[i], want[i]);
}

START_TEST(boston_matches_keras) {
    kc_array xt, yt, xe, ye;
    kc_error e = {0};
    ck_assert_msg(kc_dataset_load("boston_housing", FIX "/boston_housing.npz", &xt, &yt, &xe, &ye,
                                  &e) == KC_OK,
                  "%s", e.msg);
    ck_assert_int_eq(xt.shape.d[0], BOSTON_TRAIN);
    ck_assert_int_eq(xt.shape.d[1], 13);
    ck_assert_int_eq(xe.shape.d[0], 11 - BOSTON_TRAIN);
    expect_floats(&xt, boston_x_train, NELEM(boston_x_train));
    expect_floats(&yt, boston_y_train, NELEM(boston_y_train));
    expect_floats(&xe, boston_x_test, NELEM(boston_x_test));
    expect_floats(&ye, boston_y_test, NELEM(boston_y_test));
    kc_array *all[4] = {&xt, &yt, &xe, &ye};
    for (int i = 0; i < 4; i++)
        kc_array_free(all[i]);
    ck_assert_int_eq(
        kc_boston_housing_load(FIX "/boston_housing.npz", 0.3, 5, &xt, &yt, &xe, &ye, &e), KC_OK);
    ck_assert_int_eq(xt.shape.d[0], BOSTON_TRAIN_S5);
    expect_floats(&xt, boston_x_train_s5, NELEM(boston_x_train_s5));
    for (int i = 0; i < 4; i++)
        kc_array_free(all[i]);
    ck_assert_int_eq(kc_boston_housing_load(FIX "/imdb_p4.npz", 0.2, 113, &xt, &yt, &xe, &ye, &e),
                     KC_ERUNTIME);
    ck_assert_int_eq(kc_boston_housing_load(NULL, 1.5, 113, &xt, &yt, &xe, &ye, &e), KC_ECONFIG);
}
END_TEST

/* ---- word index ---- */

START_TEST(word_index_lookup_and_decode) {
    kc_word_index w;
    kc_error e = {0};
    ck_assert_msg(kc_word_index_load("imdb", FIX, &w, &e) == KC_OK, "%s", e.msg);
    ck_assert_int_eq(w.nranks, 8);
    ck_assert_str_eq(w.word[7], "film");
    ck_assert_ptr_null(w.word[6]);
    ck_assert_int_eq(kc_word_index_rank(&w, "caf\xc3\xa9"), 5);
    ck_assert_int_eq(kc_word_index_rank(&w, "the"), 1);
    ck_assert_int_eq(kc_word_index_rank(&w, "zebra"), -1);
    kc_seq_opts o;
    kc_seq_opts_default(&o);
    const int32_t tok[] = {1, 4, 10, 2, 9, 6};
    char buf[64];
    size_t need = kc_word_index_decode(&w, &o, tok, 6, buf, sizeof buf);
    ck_assert_str_eq(buf, "[START] the film [OOV] ? a");
    ck_assert_uint_eq(need, strlen(buf));
    ck_assert_uint_eq(kc_word_index_decode(&w, &o, tok, 6, buf, 13), need);
    ck_assert_str_eq(buf, "[START] the");
    kc_word_index_free(&w);
    ck_assert_int_eq(kc_word_index_load("reuters", FIX, &w, &e), KC_ERUNTIME);
    ck_assert_ptr_nonnull(strstr(e.msg, "reuters_word_index.json not found"));
    ck_assert_int_eq(kc_word_index_read(FIX "/boston_housing.npz", &w, &e), KC_ERUNTIME);
}
END_TEST

/* ---- the pickle reader ---- */

/* pickle.dumps(a, protocol=4) of a = np.empty(3, object) holding
 * [5, 300, 70000], [] and [-1]. */
static const unsigned char GOOD[] = "\x80\x04\x95\xa2\x00\x00\x00\x00\x00\x00\x00\x8c\x16\x6e\x75"
                                    "\x6d\x70\x79\x2e\x5f\x63\x6f\x72\x65"
                                    "\x2e\x6d\x75\x6c\x74\x69\x61\x72\x72\x61\x79\x94\x8c\x0c\x5f"
                                    "\x72\x65\x63\x6f\x6e\x73\x74\x72\x75"
                                    "\x63\x74\x94\x93\x94\x8c\x05\x6e\x75\x6d\x70\x79\x94\x8c\x07"
                                    "\x6e\x64\x61\x72\x72\x61\x79\x94\x93"
                                    "\x94\x4b\x00\x85\x94\x43\x01\x62\x94\x87\x94\x52\x94\x28\x4b"
                                    "\x01\x4b\x03\x85\x94\x68\x03\x8c\x05"
                                    "\x64\x74\x79\x70\x65\x94\x93\x94\x8c\x02\x4f\x38\x94\x89\x88"
                                    "\x87\x94\x52\x94\x28\x4b\x03\x8c\x01"
                                    "\x7c\x94\x4e\x4e\x4e\x4a\xff\xff\xff\xff\x4a\xff\xff\xff\xff"
                                    "\x4b\x3f\x74\x94\x62\x89\x5d\x94\x28"
                                    "\x5d\x94\x28\x4b\x05\x4d\x2c\x01\x4a\x70\x11\x01\x00\x65\x5d"
                                    "\x94\x5d\x94\x4a\xff\xff\xff\xff\x61"
                                    "\x65\x74\x94\x62\x2e";

static int parse(const void *p, size_t n, kc_ragged *r, kc_error *e) {
    return kc_pickle_ragged(p, n, "test.npy", r, e);
}

START_TEST(pickle_reads_numpy_object_array) {
    kc_ragged r;
    kc_error e = {0};
    ck_assert_msg(parse(GOOD, sizeof GOOD - 1, &r, &e) == KC_OK, "%s", e.msg);
    ck_assert_int_eq(r.n, 3);
    const int64_t off[] = {0, 3, 3, 4};
    const int32_t tok[] = {5, 300, 70000, -1};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(r.off[i], off[i]);
        ck_assert_int_eq(r.tok[i], tok[i]);
    }
    kc_ragged_free(&r);
}
END_TEST

static void expect_refused(const void *p, size_t n, const char *what) {
    kc_ragged r;
    kc_error e = {0};
    ck_assert_int_eq(parse(p, n, &r, &e), KC_ERUNTIME);
    ck_assert_ptr_null(r.off);
    ck_assert_ptr_null(r.tok);
    ck_assert_msg(strstr(e.msg, "test.npy") != NULL, "no file named: %s", e.msg);
    if (what) ck_assert_msg(strstr(e.msg, what) != NULL, "'%s' not in: %s", what, e.msg);
}

START_TEST(pickle_refuses_truncated_and_damaged) {
    /* every prefix fails cleanly */
    for (size_t n = 0; n + 1 < sizeof GOOD - 1; n++)
        expect_refused(GOOD, n, NULL);
    /* every single-byte change either parses or fails cleanly */
    unsigned char b[sizeof GOOD];
    for (size_t i = 0; i < sizeof GOOD - 1; i++)
        for (int v = 0; v < 256; v += 51) {
            memcpy(b, GOOD, sizeof GOOD);
            b[i] = (unsigned char)v;
            kc_ragged r;
            kc_error e = {0};
            if (parse(b, sizeof GOOD - 1, &r, &e) == KC_OK)
                kc_ragged_free(&r);
            else
                ck_assert_int_eq(e.code, KC_ERUNTIME);
        }
}
END_TEST

START_TEST(pickle_refuses_hostile_streams) {
    /* a global outside numpy's array reconstruction */
    static const char os_system[] = "\x80\x02"
                                    "cos\nsystem\n"
                                    "X\x02\x00\x00\x00id\x85R.";
    expect_refused(os_system, sizeof os_system - 1, "refusing the global os.system");
    static const char builtins_eval[] = "\x80\x04\x8c\x08"
                                        "builtins\x8c\x04"
                                        "eval\x93.";
    expect_refused(builtins_eval, sizeof builtins_eval - 1, "refusing the global builtins.eval");
    /* opcodes no numpy array uses: INST, NEWOBJ, PERSID, EXT1 */
    static const char *const ops[] = {"\x80\x02i", "\x80\x02\x81", "\x80\x02P", "\x80\x02\x82"};
    for (int i = 0; i < 4; i++)
        expect_refused(ops[i], 3, "is not one a numpy object array uses");
    /* protocols outside 2..5 */
    expect_refused("\x80\x01N.", 4, "pickle protocol 1");
    /* lengths beyond the data */
    expect_refused("\x80\x04X\xf0\xff\xff\xff"
                   "abc.",
                   11, "overruns the data");
    expect_refused("\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7fN.", 13, "overruns the data");
    expect_refused("\x80\x02T\xff\xff\xff\xff"
                   "ab.",
                   10, "negative string length");
    /* memo abuse */
    expect_refused("\x80\x02Nr\xff\xff\xff\xff.", 9, "memo slot");
    expect_refused("\x80\x02h\x07.", 5, "never stored");
    expect_refused("\x80\x02j\x00\x00\x00\x10.", 8, "never stored");
    /* stack underflow and marks */
    expect_refused("\x80\x02R.", 4, "underflow");
    expect_refused("\x80\x02(R.", 5, "underflow");
    expect_refused("\x80\x02t.", 4, "no MARK");
    char deep[200] = "\x80\x02";
    memset(deep + 2, '(', 100);
    deep[102] = '.';
    expect_refused(deep, 103, "nesting deeper than 64");
    /* an integer too wide, a value that is not an array */
    expect_refused("\x80\x02\x8a\x09"
                   "123456789.",
                   14, "does not fit 64 bits");
    expect_refused("\x80\x02K\x05.", 5, "not an ndarray");
    expect_refused("\x80\x02]K\x05\x61.", 7, "not an ndarray");
    expect_refused("\x80\x02NNb.", 6, "BUILD on None");
    /* no STOP */
    expect_refused("\x80\x02N", 3, "no STOP");
}
END_TEST

START_TEST(pickle_refuses_bad_arrays) {
    unsigned char b[sizeof GOOD];
    kc_ragged r;
    kc_error e = {0};
    /* the array's declared shape (3,) changed to (4,) */
    memcpy(b, GOOD, sizeof GOOD);
    unsigned char *shape = memmem(b, sizeof GOOD, "(K\x01K\x03", 5);
    ck_assert_ptr_nonnull(shape);
    shape[4] = 4;
    expect_refused(b, sizeof GOOD - 1, "shape (4,) but 3 items");
    /* dtype O8 changed to i8: not an object array */
    memcpy(b, GOOD, sizeof GOOD);
    unsigned char *o8 = memmem(b, sizeof GOOD, "O8", 2);
    ck_assert_ptr_nonnull(o8);
    o8[0] = 'i';
    expect_refused(b, sizeof GOOD - 1, "not a 1-d object array");
    /* an id past int32: 70000 -> 0x7f011170 still fits; LONG1 of 2**40 does not */
    static const char big[] =
        "\x80\x02"
        "cnumpy.core.multiarray\n_reconstruct\n"
        "cnumpy\nndarray\n"
        "K\x00\x85"
        "U\x01"
        "b\x87R(K\x01K\x01\x85"
        "cnumpy\ndtype\n"
        "X\x02\x00\x00\x00O8\x89\x88\x87R"
        "(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb\x89]](\x8a\x06"
        "\x00\x00\x00\x00\x00\x01"
        "eatb.";
    expect_refused(big, sizeof big - 1, "does not fit 32 bits");
    /* the same stream with a small id is read (protocol 2, Python 2 style) */
    char ok[sizeof big];
    memcpy(ok, big, sizeof big);
    char *l1 = memmem(ok, sizeof big, "\x8a\x06\x00\x00\x00\x00\x00\x01", 8);
    ck_assert_ptr_nonnull(l1);
    l1[7] = 0;
    l1[2] = 9;
    ck_assert_msg(parse(ok, sizeof big - 1, &r, &e) == KC_OK, "%s", e.msg);
    ck_assert_int_eq(r.n, 1);
    ck_assert_int_eq(r.off[1], 1);
    ck_assert_int_eq(r.tok[0], 9);
    kc_ragged_free(&r);
}
END_TEST

/* ---- time series ---- */

static kc_array series_array(void) {
    kc_array a = {0};
    kc_shape sh = {.rank = 2, .d = {40, 3}};
    ck_assert_int_eq(kc_array_alloc(&a, KC_DT_F32, &sh, NULL), KC_OK);
    memcpy(a.data, ts_series, sizeof ts_series);
    return a;
}

START_TEST(timeseries_windows_match_keras) {
    kc_array s = series_array();
    for (int c = 0; c < NELEM(TS_CASES); c++) {
        const ts_case *t = &TS_CASES[c];
        kc_ts_opts o;
        kc_ts_opts_default(&o);
        o.sequence_length = t->len;
        o.sequence_stride = t->stride;
        o.sampling_rate = t->rate;
        o.start_index = t->start;
        o.end_index = t->end;
        kc_array tg = {0}, x, y;
        kc_error e = {0};
        if (t->off >= 0) ck_assert_int_eq(kc_ts_shift(&s, t->off, 1, &tg, &e), KC_OK);
        int rc = kc_timeseries_dataset(&s, t->off >= 0 ? &tg : NULL, &o, &x, &y, &e);
        ck_assert_msg(rc == KC_OK, "case %d: %s", c, e.msg);
        ck_assert_int_eq(x.shape.rank, 3);
        ck_assert_int_eq(x.shape.d[0], t->n);
        ck_assert_int_eq(x.shape.d[1], t->len);
        ck_assert_int_eq(x.shape.d[2], 3);
        expect_floats(&x, t->x, (int64_t)t->n * t->len * 3);
        if (t->off >= 0) {
            ck_assert_int_eq(y.shape.rank, 1);
            expect_floats(&y, t->y, t->n);
        }
        kc_array_free(&x);
        kc_array_free(&y);
        kc_array_free(&tg);
    }
    kc_array_free(&s);
}
END_TEST

START_TEST(timeseries_shuffle_is_keras_first_shuffle) {
    kc_array s = series_array();
    kc_ts_opts o;
    kc_ts_opts_default(&o);
    o.sequence_length = 5;
    o.shuffle = 1;
    o.seed = 42;
    kc_array x, y;
    kc_error e = {0};
    ck_assert_int_eq(kc_timeseries_dataset(&s, NULL, &o, &x, &y, &e), KC_OK);
    ck_assert_int_eq(x.shape.d[0], NELEM(ts_shuffled_starts));
    const float *d = x.data;
    for (int i = 0; i < NELEM(ts_shuffled_starts); i++) /* window i's first step */
        ck_assert_float_eq(d[i * 15], ts_series[ts_shuffled_starts[i] * 3]);
    kc_array_free(&x);
    kc_array_free(&s);
}
END_TEST

START_TEST(timeseries_generator_matches_keras2) {
    kc_array s = series_array();
    for (int c = 0; c < NELEM(GEN_CASES); c++) {
        const gen_case *g = &GEN_CASES[c];
        kc_tsgen_opts o;
        kc_tsgen_opts_default(&o);
        o.length = g->length;
        o.sampling_rate = g->rate;
        o.stride = g->stride;
        o.start_index = g->start;
        o.end_index = g->end;
        o.reverse = g->rev;
        kc_array x, y;
        kc_error e = {0};
        ck_assert_msg(kc_timeseries_generator(&s, &s, &o, &x, &y, &e) == KC_OK, "%s", e.msg);
        ck_assert_int_eq(x.shape.d[0], g->n);
        ck_assert_int_eq(x.shape.d[1], g->steps);
        expect_floats(&x, g->x, (int64_t)g->n * g->steps * 3);
        ck_assert_int_eq(y.shape.rank, 2);
        expect_floats(&y, g->y, (int64_t)g->n * 3);
        kc_array_free(&x);
        kc_array_free(&y);
    }
    kc_array_free(&s);
}
END_TEST

START_TEST(timeseries_refuses_what_keras_refuses) {
    kc_array s = series_array(), x, y, tg;
    kc_error e = {0};
    kc_ts_opts o;
    struct {
        int64_t len, stride, rate, start, end;
        const char *msg;
    } bad[] = {{0, 1, 1, 0, 0, "sequence_length must be > 0"},
               {5, 1, 1, -1, 0, "start_index must be >= 0"},
               {5, 1, 1, 40, 0, "start_index must be >= 0"},
               {5, 1, 1, 10, 8, "end_index must be higher"},
               {5, 1, 1, 0, 40, "end_index must be higher"},
               {5, 1, 0, 0, 0, "sampling_rate must be > 0"},
               {5, 40, 1, 0, 0, "sequence_stride must be > 0"},
               {15, 1, 3, 0, 0, "does not fit"}};
    for (int i = 0; i < NELEM(bad); i++) {
        kc_ts_opts_default(&o);
        o.sequence_length = bad[i].len;
        o.sequence_stride = bad[i].stride;
        o.sampling_rate = bad[i].rate;
        o.start_index = bad[i].start;
        o.end_index = bad[i].end;
        ck_assert_int_eq(kc_timeseries_dataset(&s, NULL, &o, &x, &y, &e), KC_ECONFIG);
        ck_assert_msg(strstr(e.msg, bad[i].msg) != NULL, "%d: %s", i, e.msg);
        ck_assert_ptr_null(x.data);
    }
    /* targets too short for windows starting after start_index (tf.data fails too) */
    kc_ts_opts_default(&o);
    o.sequence_length = 3;
    o.sequence_stride = 2;
    o.start_index = 5;
    ck_assert_int_eq(kc_ts_shift(&s, 3, 1, &tg, &e), KC_OK);
    ck_assert_int_eq(kc_timeseries_dataset(&s, &tg, &o, &x, &y, &e), KC_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "the targets hold 37 rows"));
    kc_array_free(&tg);
    /* the generator's own rules */
    kc_tsgen_opts g;
    kc_tsgen_opts_default(&g);
    g.length = 39;
    g.start_index = 1;
    ck_assert_int_eq(kc_timeseries_generator(&s, &s, &g, &x, &y, &e), KC_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "`start_index+length=40 > end_index=39`"));
    ck_assert_int_eq(kc_ts_shift(&s, 1, 0, &tg, &e), KC_OK);
    g.start_index = 0;
    g.length = 4;
    ck_assert_int_eq(kc_timeseries_generator(&s, &tg, &g, &x, &y, &e), KC_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "of same length"));
    ck_assert_int_eq(tg.shape.rank, 1);
    ck_assert_float_eq(((float *)tg.data)[0], ts_series[3]);
    kc_array_free(&tg);
    ck_assert_int_eq(kc_ts_shift(&s, 0, 3, &tg, &e), KC_ECONFIG);
    ck_assert_int_eq(kc_ts_shift(&s, 40, -1, &tg, &e), KC_ECONFIG);
    kc_array_free(&s);
}
END_TEST

static Suite *seq_data_suite(void) {
    Suite *s = suite_create("seq_data");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, np_permutation_matches_numpy);
    tcase_add_test(tc, imdb_reuters_match_keras);
    tcase_add_test(tc, seq_dataset_search_and_errors);
    tcase_add_test(tc, boston_matches_keras);
    tcase_add_test(tc, word_index_lookup_and_decode);
    tcase_add_test(tc, pickle_reads_numpy_object_array);
    tcase_add_test(tc, pickle_refuses_truncated_and_damaged);
    tcase_add_test(tc, pickle_refuses_hostile_streams);
    tcase_add_test(tc, pickle_refuses_bad_arrays);
    tcase_add_test(tc, timeseries_windows_match_keras);
    tcase_add_test(tc, timeseries_shuffle_is_keras_first_shuffle);
    tcase_add_test(tc, timeseries_generator_matches_keras2);
    tcase_add_test(tc, timeseries_refuses_what_keras_refuses);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return kc_test_run(seq_data_suite());
}

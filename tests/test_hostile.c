/* Hostile and degenerate inputs: checkpoints whose metadata lies, data files
 * whose headers claim more than they hold or shapes that overflow, empty
 * data sets, integer options past INT_MAX, and a model deep enough to
 * stress every per-weight list. Every file is written here, into a scratch
 * directory. */
#include <limits.h>
#include <sys/resource.h>
#include <zlib.h>

#include "clitest.h"
#include "core/tensor.h"

#if defined(__SANITIZE_ADDRESS__)
#define KC_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KC_TEST_ASAN 1
#endif
#endif

static const char *small_cfg = "model:\n"
                               "  name: h\n"
                               "  layers:\n"
                               "    - Input: {shape: [4]}\n"
                               "    - Dense: {units: 3, activation: softmax}\n"
                               "compile:\n"
                               "  optimizer: {Adam: {learning_rate: 0.01}}\n"
                               "  loss: sparse_categorical_crossentropy\n"
                               "  metrics: [accuracy]\n"
                               "data:\n"
                               "  train: {x: x.npy, y: y.npy}\n"
                               "fit: {epochs: 2, batch_size: 8, seed: 3}\n";

/* n samples of 4 features, labels 0..2 */
static void make_small(const char *xname, const char *yname, int n) {
    float *x = calloc((size_t)(n ? n : 1) * 4, sizeof *x), *y = calloc((size_t)(n ? n : 1), 4);
    for (int i = 0; i < n; i++) {
        y[i] = (float)(i % 3);
        for (int k = 0; k < 4; k++)
            x[i * 4 + k] = (float)((i * 7 + k * 3) % 11) / 11.0f + (k == i % 3);
    }
    write_npy(xname, x, kc_shape2(n, 4));
    write_npy(yname, y, kc_shape1(n));
    free(x);
    free(y);
}

static void setup(void) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    dir = kc_test_tmpdir();
    make_small("x.npy", "y.npy", 64);
    write_file("h.yaml", small_cfg);
}

static void teardown(void) {
    kc_test_rmdir(dir);
    free(dir);
}

static void write_bytes(const char *name, const void *p, size_t n) {
    FILE *f = fopen(path_in(name), "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static void write_gz_bytes(const char *name, const void *p, size_t n) {
    gzFile g = gzopen(path_in(name), "wb");
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(gzwrite(g, p, (unsigned)n), (int)n);
    ck_assert_int_eq(gzclose(g), Z_OK);
}

/* An IDX header (u8 data) for the given dims, followed by n payload bytes. */
static unsigned char *idx_file(int rank, const uint32_t *dims, const void *payload, size_t n,
                               size_t *len) {
    *len = 4 + 4 * (size_t)rank + n;
    unsigned char *b = malloc(*len), *p = b;
    *p++ = 0, *p++ = 0, *p++ = 0x08, *p++ = (unsigned char)rank;
    for (int i = 0; i < rank; i++)
        for (int k = 3; k >= 0; k--)
            *p++ = (unsigned char)(dims[i] >> (8 * k));
    if (n) memcpy(p, payload, n);
    return b;
}

/* A version 1.0 .npy of '<f4' with the given shape text, then n payload bytes. */
static void write_npy_header(const char *name, const char *shape, const void *payload, size_t n) {
    char dict[256];
    int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }",
                       shape);
    int total = (10 + len + 1 + 63) / 64 * 64;
    unsigned char *b = calloc((size_t)total + n, 1);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (unsigned char)((total - 10) & 0xff);
    b[9] = (unsigned char)((total - 10) >> 8);
    memset(b + 10, ' ', (size_t)(total - 10));
    memcpy(b + 10, dict, (size_t)len);
    b[total - 1] = '\n';
    if (n) memcpy(b + total, payload, n);
    write_bytes(name, b, (size_t)total + n);
    free(b);
}

/* ------------------------------------------------- checkpoint rewriting --- */

/* How a copy of a checkpoint differs from it. */
typedef struct edit {
    const char *key[4], *value[4]; /* metadata set (value NULL: removed) */
    const char *tensor;            /* a tensor given a new name, shape or data */
    const char *name;              /* NULL: keep */
    kc_shape shape;                /* rank 0: keep */
    const void *data;              /* NULL: keep */
} edit;

static const char *edited_value(const edit *ed, const char *key, const char *v, int *seen) {
    for (int i = 0; i < 4 && ed->key[i]; i++)
        if (!strcmp(ed->key[i], key)) {
            seen[i] = 1;
            return ed->value[i];
        }
    return v;
}

/* Writes dst as src with the edit applied. */
static void rewrite(const char *src, const char *dst, const edit *ed) {
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path_in(src), &f, &e) == 0, "%s", e.msg);
    int nt = kc_st_count(f), nm = kc_st_meta_count(f), n = 0, seen[4] = {0};
    kc_st_tensor *t = calloc((size_t)nt, sizeof *t);
    const char **kv = calloc((size_t)(2 * nm + 10), sizeof *kv);
    for (int i = 0; i < nt; i++) {
        t[i] = *kc_st_at(f, i);
        if (ed->tensor && !strcmp(t[i].name, ed->tensor)) {
            if (ed->name) t[i].name = ed->name;
            if (ed->shape.rank) t[i].shape = ed->shape;
            if (ed->data) t[i].data = ed->data;
        }
    }
    for (int i = 0; i < nm; i++) {
        const char *v, *k = kc_st_meta_at(f, i, &v);
        v = edited_value(ed, k, v, seen);
        if (v) kv[n++] = k, kv[n++] = v;
    }
    for (int i = 0; i < 4 && ed->key[i]; i++)
        if (!seen[i] && ed->value[i]) kv[n++] = ed->key[i], kv[n++] = ed->value[i];
    kv[n] = NULL;
    ck_assert_msg(kc_st_write(path_in(dst), t, nt, kv, &e) == 0, "%s", e.msg);
    free(kv);
    free(t);
    kc_st_close(f);
}

/* A checkpoint after one epoch of h.yaml: 8 steps, batch 0. */
static void base_checkpoint(void) {
    int st = run("train h.yaml --output base --epochs 1 --threads 1");
    ck_assert_msg(st == 0, "%s", err_buf);
}

#define EDIT1(k, v) ((edit){.key = {k}, .value = {v}})

/* Resuming from src edited by ed fails with `status`, naming the file and
 * every needle. */
static void resume_fails(const edit *ed, int status, const char *n1, const char *n2) {
    rewrite("base/last.safetensors", "bad.safetensors", ed);
    int st = run("train h.yaml --output r --threads 1 --resume bad.safetensors");
    ck_assert_msg(st == status, "%s=%s: status %d, want %d: %s", ed->key[0], ed->value[0], st,
                  status, err_buf);
    ck_assert_msg(strstr(err_buf, "bad.safetensors"), "no file name: %s", err_buf);
    ck_assert_msg(!n1 || strstr(err_buf, n1), "no '%s' in: %s", n1, err_buf);
    ck_assert_msg(!n2 || strstr(err_buf, n2), "no '%s' in: %s", n2, err_buf);
}

START_TEST(resume_metadata_is_validated) {
    base_checkpoint();
    /* a negative batch once read before the permutation */
    resume_fails(&EDIT1("batch", "-3"), 1, "batch = '-3'", "0 to");
    resume_fails(&EDIT1("epoch", "-5"), 1, "epoch = '-5'", NULL);
    resume_fails(&EDIT1("iterations", "-7"), 1, "iterations = '-7'", NULL);
    resume_fails(&EDIT1("iterations", "100"), 1, "iterations = '100'", "step");
    resume_fails(&EDIT1("step", "8 steps"), 1, "step = '8 steps'", NULL);
    /* a step count the next training step would overflow */
    resume_fails(&EDIT1("step", "9223372036854775807"), 1, "step = '9223372036854775807'", NULL);
    resume_fails(&EDIT1("epoch", "99999999999"), 1, "epoch = '99999999999'", NULL);
    resume_fails(&EDIT1("seed", "-1"), 1, "seed = '-1'", NULL);
    resume_fails(&EDIT1("seed", " 5"), 1, "seed = ' 5'", NULL);
    resume_fails(&EDIT1("batch_size", "-8"), 1, "batch_size = '-8'", NULL);
    resume_fails(
        &((edit){.key = {"batch", "epoch_count", "batch_size"}, .value = {"2", "16", "4"}}), 2,
        "batch size 4", NULL);
    resume_fails(&EDIT1("learning_rate", "nan"), 1, "learning_rate = 'nan'", NULL);
    resume_fails(&EDIT1("learning_rate", "-0.5"), 1, "learning_rate = '-0.5'", NULL);
    resume_fails(&EDIT1("epoch_count", "-1"), 1, "epoch_count = '-1'", NULL);
    resume_fails(&EDIT1("best", "low"), 1, "best = 'low'", NULL);
    resume_fails(&EDIT1("history", "[]"), 1, "history", "1 completed");
    resume_fails(&EDIT1("history", "[1]"), 1, "history entry 1", NULL);
    resume_fails(&EDIT1("batch", "\x01\x7f"), 1, "batch = '\\x01\\x7f'", NULL);
    /* past the end of this run's 8-step epochs */
    resume_fails(&((edit){.key = {"batch", "epoch_count"}, .value = {"9", "72"}}), 2, "batch = 9",
                 "8 steps");
    /* mid-epoch counts must fit the batches */
    resume_fails(&((edit){.key = {"batch", "epoch_count"}, .value = {"2", "1"}}), 1,
                 "epoch_count = '1'", NULL);
    resume_fails(&((edit){.key = {"batch", "epoch_count"}, .value = {"2", "17"}}), 1,
                 "epoch_count = '17'", NULL);
}
END_TEST

START_TEST(resume_state_tensors_are_validated) {
    base_checkpoint();
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path_in("base/last.safetensors"), &f, &e) == 0, "%s", e.msg);
    const kc_st_tensor *run_t = kc_st_find(f, "state/device_running");
    ck_assert_ptr_nonnull(run_t);
    ck_assert_int_eq(run_t->shape.rank, 1);
    int64_t nraw = run_t->shape.d[0];
    kc_st_close(f);
    ck_assert_int_ge(nraw, 2);
    ck_assert_int_eq(nraw % 2, 0);
    /* a mid-epoch position: the running sums are read */
    edit ed = {.key = {"batch", "epoch_count"}, .value = {"2", "16"}};
    rewrite("base/last.safetensors", "mid.safetensors", &ed);
    int st = run("train h.yaml --output ok --threads 1 --resume mid.safetensors");
    ck_assert_msg(st == 0, "a valid mid-epoch position is refused: %s", err_buf);
    /* the same element count in another shape */
    ed.tensor = "state/device_running";
    ed.shape = kc_shape2(2, nraw / 2);
    resume_fails(&ed, 2, "state/device_running", "(2,");
    /* a longer vector, with data of its length */
    ed.shape = kc_shape1(nraw + 1);
    float *big = calloc((size_t)nraw + 1, sizeof *big);
    ed.data = big;
    resume_fails(&ed, 2, "state/device_running", NULL);
    free(big);
    /* penalty sums standing for batches this run does not have */
    double pen[4] = {0, -1, 0, 0};
    ed = (edit){.key = {"batch", "epoch_count"},
                .value = {"2", "16"},
                .tensor = "state/device_penalty",
                .data = pen};
    resume_fails(&ed, 1, "state/device_penalty", NULL);
    double pen_shape[5] = {0, 8, 0, 0, 0};
    ed.data = pen_shape;
    ed.shape = kc_shape1(5);
    resume_fails(&ed, 2, "state/device_penalty", "(5,)");
}
END_TEST

START_TEST(checkpoint_numbers_for_inference) {
    base_checkpoint();
    make_small("px.npy", "py.npy", 5);
    rewrite("base/last.safetensors", "bad.safetensors", &EDIT1("epoch", "-5"));
    int st = run("predict bad.safetensors --input px.npy --output p.npy");
    ck_assert_int_eq(st, 1);
    ck_assert_ptr_nonnull(strstr(err_buf, "bad.safetensors"));
    ck_assert_ptr_nonnull(strstr(err_buf, "epoch = '-5'"));
    rewrite("base/last.safetensors", "good.safetensors", &(edit){0});
    ck_assert_msg(run("predict good.safetensors --input px.npy --output p.npy") == 0, "%s",
                  err_buf);
}
END_TEST

START_TEST(format_version_is_named) {
    base_checkpoint();
    rewrite("base/last.safetensors", "v2.safetensors", &EDIT1("format_version", "2"));
    ck_assert_int_eq(run("train h.yaml --output r --resume v2.safetensors"), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "v2.safetensors"));
    ck_assert_msg(strstr(err_buf, "version '2' is not supported"), "%s", err_buf);
    ck_assert_msg(strstr(err_buf, "reads version 1"), "%s", err_buf);
    /* the checkpoint's own config is read through the same check */
    ck_assert_int_eq(run("predict v2.safetensors --input x.npy"), 2);
    ck_assert_msg(strstr(err_buf, "version '2'"), "%s", err_buf);
    /* not printable: escaped, and cut */
    rewrite("base/last.safetensors", "vx.safetensors",
            &EDIT1("format_version", "1\x1b[2J\x7f"
                                     "0123456789012345678901234567890123456789"));
    ck_assert_int_eq(run("train h.yaml --output r --resume vx.safetensors"), 2);
    ck_assert_msg(strstr(err_buf, "version '1\\x1b[2J\\x7f0123"), "%s", err_buf);
    ck_assert_msg(strstr(err_buf, "...'"), "%s", err_buf);
    ck_assert_ptr_null(strchr(err_buf, '\x1b'));
    /* names and values from the file reach the terminal escaped */
    rewrite("base/last.safetensors", "n.safetensors",
            &(edit){.tensor = "dense/bias", .name = "dense/\x1b[31mbias"});
    ck_assert_int_eq(run("train h.yaml --output r --resume n.safetensors"), 2);
    ck_assert_msg(strstr(err_buf, "dense/\\x1b[31mbias: in the checkpoint but not in the model"),
                  "%s", err_buf);
    ck_assert_msg(strstr(err_buf, "dense/bias: missing"), "%s", err_buf);
    ck_assert_ptr_null(strchr(err_buf, '\x1b'));
    rewrite("base/last.safetensors", "v0.safetensors", &EDIT1("format_version", NULL));
    ck_assert_int_eq(run("train h.yaml --output r --resume v0.safetensors"), 2);
    ck_assert_msg(strstr(err_buf, "version none"), "%s", err_buf);
}
END_TEST

/* ------------------------------------------------------ callback state --- */

static const char *cb_fit = "fit:\n"
                            "  epochs: 2\n"
                            "  batch_size: 8\n"
                            "  seed: 3\n"
                            "  callbacks:\n"
                            "    - EarlyStopping: {monitor: loss, patience: 5}\n"
                            "    - ReduceLROnPlateau: {monitor: loss, cooldown: 2}\n"
                            "    - ModelCheckpoint: {filepath: 'ck-{batch}.safetensors', "
                            "save_freq: 3}\n"
                            "    - CSVLogger: {filename: log.csv}\n";

/* small_cfg with the callbacks above. */
static void write_cb_cfg(void) {
    char cfg[2048];
    const char *fit = strstr(small_cfg, "fit:");
    ck_assert_ptr_nonnull(fit);
    snprintf(cfg, sizeof cfg, "%.*s%s", (int)(fit - small_cfg), small_cfg, cb_fit);
    write_file("hc.yaml", cfg);
}

/* The callback state `state` with callback `nth`'s (from 1) value of key
 * set to `value`. */
static void state_set(const char *state, int nth, const char *key, const char *value, char *out,
                      size_t n) {
    const char *at = state;
    for (int i = 0; i < nth; i++) {
        at = strstr(i ? at + 1 : at, "{\"kind\"");
        ck_assert_ptr_nonnull(at);
    }
    char field[64];
    snprintf(field, sizeof field, "\"%s\": ", key);
    const char *v = strstr(at, field);
    ck_assert_ptr_nonnull(v);
    v += strlen(field);
    const char *end = v + strcspn(v, ",}");
    snprintf(out, n, "%.*s%s%s", (int)(v - state), state, value, end);
}

/* Resuming hc.yaml from base/last.safetensors with callback nth's key set
 * to value fails with status 1, naming the file, the key and the value. */
static void state_fails(const char *state, int nth, const char *key, const char *value,
                        const char *needle) {
    char edited[4096], want[256];
    state_set(state, nth, key, value, edited, sizeof edited);
    rewrite("base/last.safetensors", "bad.safetensors", &EDIT1("callbacks", edited));
    int st = run("train hc.yaml --output r --threads 1 --resume bad.safetensors");
    ck_assert_msg(st == 1, "%s = %s: status %d: %s", key, value, st, err_buf);
    ck_assert_msg(!strstr(err_buf, "runtime error") && !strstr(err_buf, "Sanitizer"), "%s",
                  err_buf);
    ck_assert_msg(strstr(err_buf, "bad.safetensors"), "no file name: %s", err_buf);
    snprintf(want, sizeof want, "%s = %s", key, needle ? needle : value);
    ck_assert_msg(strstr(err_buf, want), "no '%s' in: %s", want, err_buf);
    ck_assert(!file_exists("r/last.safetensors"));
}

START_TEST(resume_callback_state_is_validated) {
    write_cb_cfg();
    int st = run("train hc.yaml --output base --epochs 1 --threads 1");
    ck_assert_msg(st == 0, "%s", err_buf);
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path_in("base/last.safetensors"), &f, &e) == 0, "%s", e.msg);
    char state[4096];
    snprintf(state, sizeof state, "%s", kc_st_meta(f, "callbacks"));
    kc_st_close(f);
    ck_assert_msg(strstr(state, "\"batches_seen\": 8"), "%s", state);
    /* once an overflow at the next batch's (batches_seen + 1) % save_freq */
    state_fails(state, 3, "batches_seen", "9223372036854775807", NULL);
    ck_assert_ptr_nonnull(strstr(err_buf, "ModelCheckpoint"));
    state_fails(state, 3, "batches_seen", "-1", NULL);
    state_fails(state, 1, "wait", "-3", NULL);
    state_fails(state, 1, "wait", "2147483648", NULL);
    /* once cut to an int */
    state_fails(state, 1, "best_epoch", "4294967296", NULL);
    state_fails(state, 1, "stopped_epoch", "\"7\"", "a string");
    state_fails(state, 2, "cooldown_counter", "3", NULL);
    ck_assert_msg(strstr(err_buf, "from 0 to 2"), "%s", err_buf);
    state_fails(state, 4, "header_done", "2", NULL);
    state_fails(state, 1, "mode", "5", NULL);
    state_fails(state, 1, "has_best", "1.5", NULL);
    state_fails(state, 1, "best", "null", "null");
    /* within its range, but more batches than the 8 steps trained */
    char edited[4096];
    state_set(state, 3, "batches_seen", "9223372036854775806", edited, sizeof edited);
    rewrite("base/last.safetensors", "bad.safetensors", &EDIT1("callbacks", edited));
    st = run("train hc.yaml --output r --threads 1 --resume bad.safetensors");
    ck_assert_msg(st == 1, "status %d: %s", st, err_buf);
    ck_assert_msg(strstr(err_buf, "batches_seen = 9223372036854775806 is more than the 8 steps"),
                  "%s", err_buf);
    ck_assert(!file_exists("r/last.safetensors"));
    rewrite("base/last.safetensors", "bad.safetensors", &EDIT1("callbacks", "{}"));
    ck_assert_int_eq(run("train hc.yaml --output r --threads 1 --resume bad.safetensors"), 1);
    ck_assert_msg(strstr(err_buf, "bad.safetensors") && strstr(err_buf, "not a list"), "%s",
                  err_buf);
    /* the state as written resumes */
    rewrite("base/last.safetensors", "good.safetensors", &EDIT1("callbacks", state));
    st = run("train hc.yaml --output ok --threads 1 --resume good.safetensors");
    ck_assert_msg(st == 0, "%s", err_buf);
    /* the 9th batch seen is the epoch's first: the count went on from 8 */
    ck_assert(file_exists("ok/ck-1.safetensors"));
    ck_assert(!file_exists("ok/ck-3.safetensors"));
}
END_TEST

/* A stack of 300 Dense layers: 600 weights in every list a checkpoint keeps. */
START_TEST(deep_model_checkpoints) {
    int layers = 300;
    size_t cap = 64u * (size_t)layers + 1024, used = 0;
    char *yaml = malloc(cap);
    used += (size_t)snprintf(yaml + used, cap - used,
                             "model:\n  name: deep\n  layers:\n    - Input: {shape: [4]}\n");
    for (int i = 0; i < layers - 1; i++)
        used += (size_t)snprintf(yaml + used, cap - used, "    - Dense: {units: 2}\n");
    snprintf(yaml + used, cap - used,
             "    - Dense: {units: 3, activation: softmax}\n"
             "compile: {optimizer: Adam, loss: sparse_categorical_crossentropy, metrics: "
             "[accuracy]}\n"
             "data:\n  train: {x: x.npy, y: y.npy}\n  test: {x: x.npy, y: y.npy}\n"
             "fit: {epochs: 1, batch_size: 16, steps_per_epoch: 1}\n");
    write_file("deep.yaml", yaml);
    free(yaml);
    int st = run("train deep.yaml --output d --threads 1");
    ck_assert_msg(st == 0, "train: %s", err_buf);
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path_in("d/last.safetensors"), &f, &e) == 0, "%s", e.msg);
    ck_assert_ptr_nonnull(kc_st_find(f, "dense_299/kernel"));
    ck_assert_int_ge(kc_st_count(f), 2 * layers);
    kc_st_close(f);
    st = run("evaluate d/last.safetensors --threads 1");
    ck_assert_msg(st == 0, "evaluate: %s", err_buf);
    st = run("predict d/last.safetensors --input x.npy --output p.npy --threads 1");
    ck_assert_msg(st == 0, "predict: %s", err_buf);
    ck_assert(file_exists("p.npy"));
    st = run("train deep.yaml --output d --threads 1 --epochs 2 --resume d/last.safetensors");
    ck_assert_msg(st == 0, "resume: %s", err_buf);
    ck_assert_msg(kc_st_open(path_in("d/last.safetensors"), &f, &e) == 0, "%s", e.msg);
    ck_assert_str_eq(kc_st_meta(f, "epoch"), "2");
    ck_assert_str_eq(kc_st_meta(f, "step"), "2");
    kc_st_close(f);
}
END_TEST

/* ------------------------------------------------------------ empty data --- */

static const char *empty_cfg = "model:\n"
                               "  layers:\n"
                               "    - Input: {shape: [4]}\n"
                               "    - Dense: {units: 3, activation: softmax}\n"
                               "compile: {loss: sparse_categorical_crossentropy}\n"
                               "data:\n"
                               "  train: {x: %s, y: %s}\n"
                               "%s"
                               "fit: {epochs: 1, batch_size: 8%s}\n";

static void empty_case(const char *x, const char *y, const char *extra, const char *fit,
                       const char *needle) {
    char cfg[1024];
    snprintf(cfg, sizeof cfg, empty_cfg, x, y, extra, fit);
    write_file("e.yaml", cfg);
    int st = run("train e.yaml --output e --threads 1");
    ck_assert_msg(st == 2, "%s / %s: status %d: %s", x, fit, st, err_buf);
    ck_assert_msg(strstr(err_buf, needle), "no '%s' in: %s", needle, err_buf);
    ck_assert_msg(strstr(err_buf, "no samples") || strstr(err_buf, "no training data"), "%s",
                  err_buf);
    ck_assert(!file_exists("e/last.safetensors"));
}

START_TEST(empty_training_data_is_an_error) {
    write_npy_header("ex.npy", "(0, 4)", NULL, 0);
    write_npy_header("ey.npy", "(0,)", NULL, 0);
    /* once a division by zero */
    empty_case("ex.npy", "ey.npy", "", ", steps_per_epoch: 3", "ex.npy");
    /* once zero steps and success */
    empty_case("ex.npy", "ey.npy", "", "", "ex.npy");
    size_t n;
    unsigned char *b = idx_file(2, (uint32_t[]){0, 4}, NULL, 0, &n);
    write_bytes("ex.idx", b, n);
    free(b);
    b = idx_file(1, (uint32_t[]){0}, NULL, 0, &n);
    write_gz_bytes("ey.idx.gz", b, n);
    free(b);
    empty_case("ex.idx", "ey.idx.gz", "", ", steps_per_epoch: 2", "ex.idx");
    /* labels alone empty */
    empty_case("x.npy", "ey.npy", "", "", "samples");
    /* an empty validation source */
    empty_case("x.npy", "y.npy", "  validation: {x: ex.npy, y: ey.npy}\n", "", "ex.npy");
    ck_assert_ptr_nonnull(strstr(err_buf, "validation"));
    /* validation_split that leaves nothing to train on */
    make_small("two_x.npy", "two_y.npy", 2);
    empty_case("two_x.npy", "two_y.npy", "", ", validation_split: 0.6", "validation_split");
}
END_TEST

/* Four IDX files with no images: a dataset with nothing in it. */
START_TEST(empty_dataset_is_an_error) {
    ck_assert_int_eq(mkdir(path_in("ds"), 0777), 0);
    const char *names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    for (int i = 0; i < 4; i++) {
        size_t n;
        int images = i % 2 == 0;
        unsigned char *b = images ? idx_file(3, (uint32_t[]){0, 28, 28}, NULL, 0, &n)
                                  : idx_file(1, (uint32_t[]){0}, NULL, 0, &n);
        char name[64];
        snprintf(name, sizeof name, "ds/%s", names[i]);
        write_bytes(name, b, n);
        free(b);
    }
    write_file("ds.yaml", "model:\n  layers:\n    - Input: {shape: [28, 28]}\n    - Flatten\n"
                          "    - Dense: {units: 10, activation: softmax}\n"
                          "compile: {loss: sparse_categorical_crossentropy}\n"
                          "data: {dataset: mnist, path: ds}\n"
                          "fit: {epochs: 1, batch_size: 8, steps_per_epoch: 2}\n");
    int st = run("train ds.yaml --output e --threads 1");
    ck_assert_msg(st == 1, "status %d: %s", st, err_buf);
    ck_assert_msg(strstr(err_buf, "ds") && strstr(err_buf, "no samples"), "%s", err_buf);
}
END_TEST

/* ------------------------------------------------------- shapes and sizes --- */

START_TEST(shape_products_are_checked) {
    int64_t big = (int64_t)1 << 32;
    ck_assert_int_eq(kc_shape_numel(&(kc_shape){3, {2, 3, 4}}), 24);
    ck_assert_int_eq(kc_shape_numel(&(kc_shape){0, {0}}), 1);
    ck_assert_int_eq(kc_shape_numel(&(kc_shape){3, {5, 0, 7}}), 0);
    ck_assert_int_eq(kc_shape_numel(&(kc_shape){3, {0, big, big}}), -1);
    ck_assert_int_eq(kc_shape_numel(&(kc_shape){3, {big, big, 0}}), -1);
    ck_assert_int_eq(kc_shape_numel(&(kc_shape){2, {3, -1}}), -1);
    ck_assert_int_eq(kc_shape_numel(&(kc_shape){9, {1}}), -1);
    ck_assert_int_eq(kc_shape_numel(&(kc_shape){2, {INT64_MAX, 1}}), INT64_MAX);
    size_t bytes = 1;
    ck_assert(kc_shape_bytes(&(kc_shape){2, {3, 4}}, 4, &bytes));
    ck_assert_uint_eq(bytes, 48);
    ck_assert(kc_shape_bytes(&(kc_shape){2, {0, 1 << 20}}, 4, &bytes));
    ck_assert_uint_eq(bytes, 0);
    ck_assert(!kc_shape_bytes(&(kc_shape){2, {INT64_MAX, 1}}, 4, &bytes));
    ck_assert(!kc_shape_bytes(&(kc_shape){3, {0, (int64_t)1 << 31, (int64_t)1 << 31}}, 4, &bytes));
    /* per-sample sizes of arrays built by hand */
    kc_array a = {.dtype = KC_DT_F32, .shape = {3, {0, big, big}}};
    ck_assert_int_eq(kc_array_row_size(&a), -1);
    a.shape = (kc_shape){3, {big, 3, 5}};
    ck_assert_int_eq(kc_array_row_size(&a), 15);
    kc_error e = {0};
    ck_assert_int_eq(kc_array_alloc(&a, KC_DT_F32, &(kc_shape){3, {0, big, big}}, &e), KC_ERUNTIME);
    ck_assert_ptr_null(a.data);
}
END_TEST

static void load_fails(const char *name, const char *needle) {
    kc_array a;
    kc_error e = {0};
    int rc = kc_array_load(path_in(name), NULL, &a, &e);
    ck_assert_msg(rc == KC_ERUNTIME, "%s loaded (rc %d)", name, rc);
    ck_assert_msg(strstr(e.msg, path_in(name)), "%s", e.msg);
    ck_assert_msg(strstr(e.msg, needle), "no '%s' in: %s", needle, e.msg);
    ck_assert_ptr_null(a.data);
}

START_TEST(zero_dims_next_to_huge_ones) {
    write_npy_header("z.npy", "(0, 4294967296, 4294967296)", NULL, 0);
    load_fails("z.npy", "more elements than memory can address");
    write_npy_header("z2.npy", "(4294967296, 4294967296, 0)", NULL, 0);
    load_fails("z2.npy", "more elements");
    write_npy_header("z3.npy", "(0, 3037000500, 3037000500)", NULL, 0);
    load_fails("z3.npy", "more elements");
    size_t n;
    unsigned char *b = idx_file(3, (uint32_t[]){0, 0xffffffffu, 0xffffffffu}, NULL, 0, &n);
    write_bytes("z.idx", b, n);
    write_gz_bytes("z.idx.gz", b, n);
    free(b);
    load_fails("z.idx", "more elements");
    load_fails("z.idx.gz", "more elements");
    /* a zero dim beside ordinary ones is an empty array */
    write_npy_header("ok.npy", "(0, 65536, 3)", NULL, 0);
    kc_array a;
    kc_error e = {0};
    ck_assert_msg(kc_array_load(path_in("ok.npy"), NULL, &a, &e) == KC_OK, "%s", e.msg);
    ck_assert_int_eq(kc_array_rows(&a), 0);
    ck_assert_int_eq(kc_array_row_size(&a), 65536 * 3);
    kc_array_free(&a);
    /* the same through the command line */
    write_file("z.yaml", "model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 2}\n"
                         "compile: {loss: mse}\n"
                         "data: {train: {x: z.npy, y: z.npy}}\n");
    ck_assert_int_eq(run("train z.yaml --output e"), 2);
    ck_assert_msg(strstr(err_buf, "z.npy") && strstr(err_buf, "more elements"), "%s", err_buf);
}
END_TEST

/* Loads `name` in a child whose address space may grow by at most
 * `limit_mb`; returns the child's exit status (0: the load failed as it
 * should, naming the file and `needle`). */
static int load_fails_within(const char *name, const char *needle, long limit_mb) {
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
#ifndef KC_TEST_ASAN
        long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (!f || fscanf(f, "%ld", &pages) != 1) _exit(3);
        fclose(f);
        rlim_t now = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE);
        struct rlimit rl = {now + (rlim_t)limit_mb * 1024 * 1024,
                            now + (rlim_t)limit_mb * 1024 * 1024};
        if (setrlimit(RLIMIT_AS, &rl)) _exit(3);
#endif
        kc_array a;
        kc_error e = {0};
        int rc = kc_array_load(path_in(name), NULL, &a, &e);
        if (rc == KC_OK) _exit(4);
        if (!strstr(e.msg, path_in(name)) || !strstr(e.msg, needle)) {
            fprintf(stderr, "%s\n", e.msg);
            _exit(5);
        }
        _exit(0);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Headers claiming a million 28x28 images over a few hundred of them. */
START_TEST(headers_that_claim_more_than_the_file_holds) {
    int held = 1000; /* ~784 kB of noise: the gzip bound alone would allow 800 MB */
    size_t px = (size_t)held * 784, n;
    unsigned char *noise = malloc(px);
    for (size_t i = 0; i < px; i++)
        noise[i] = (unsigned char)kc_rng_below(5, 1, i, 256);
    unsigned char *b = idx_file(3, (uint32_t[]){1000000, 28, 28}, noise, px, &n);
    write_gz_bytes("claims.idx.gz", b, n);
    write_bytes("claims.idx", b, n);
    free(b);
    int st = load_fails_within("claims.idx.gz",
                               "header says 1000000 samples but the file holds 1000", 64);
    ck_assert_msg(st == 0, "gzip: child status %d", st);
    st = load_fails_within("claims.idx", "header says 1000000 samples", 64);
    ck_assert_msg(st == 0, "raw: child status %d", st);
    /* the same for a gzipped .npy of float32 (within the gzip bound, 627 MB) */
    write_npy_header("claims.npy", "(200000, 28, 28)", noise, px);
    FILE *f = fopen(path_in("claims.npy"), "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char *raw = malloc(px + 256);
    size_t got = fread(raw, 1, px + 256, f);
    fclose(f);
    write_gz_bytes("claims.npy.gz", raw, got);
    free(raw);
    st =
        load_fails_within("claims.npy.gz", "header says 200000 samples but the file holds 250", 64);
    ck_assert_msg(st == 0, "npy gzip: child status %d", st);
    free(noise);
}
END_TEST

/* --------------------------------------------------------- CLI integers --- */

START_TEST(integer_options_past_int_max) {
    static const char *const cases[][2] = {
        {"--batch-size", "3000000000"}, {"--batch-size", "2147483648"},
        {"--epochs", "2147483648"},     {"--steps-per-epoch", "9223372036854775808"},
        {"--seed", "4294967296"},       {"--threads", "4294967297"},
        {"--device", "2147483648"},     {"--verbose", "4294967297"},
        {"--batch-size", "+8"},         {"--batch-size", " 8"},
        {"--batch-size", "8k"},         {"--batch-size", "-8"},
        {"--batch-size", ""},           {"--log-json-every", "2147483648"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st = run("train h.yaml --output o %s '%s'", cases[i][0], cases[i][1]);
        ck_assert_msg(st == 2, "%s '%s': status %d", cases[i][0], cases[i][1], st);
        char want[128];
        snprintf(want, sizeof want, "%s expects an integer", cases[i][0]);
        ck_assert_msg(strstr(err_buf, want), "%s", err_buf);
        snprintf(want, sizeof want, "'%s'", cases[i][1]);
        ck_assert_msg(strstr(err_buf, want), "%s", err_buf);
    }
    ck_assert_int_eq(run("evaluate h.yaml --weights x.npy --batch-size 3000000000"), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "--batch-size"));
    ck_assert_int_eq(run("predict x.safetensors --input x.npy --batch-size 3000000000"), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "3000000000"));
    ck_assert_int_eq(run_env("KERASC_DEVICE=4294967296", "train h.yaml --output o"), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "KERASC_DEVICE"));
    /* the largest value is taken */
    ck_assert_int_eq(
        run("train h.yaml --output o --epochs 1 --steps-per-epoch 1 --threads 1 --seed 2147483647"),
        0);
    /* the model file's batch size is held to the same limit */
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "%s", small_cfg);
    char *at = strstr(cfg, "batch_size: 8");
    ck_assert_ptr_nonnull(at);
    memmove(at + strlen("batch_size: 3000000000"), at + strlen("batch_size: 8"),
            strlen(at + strlen("batch_size: 8")) + 1);
    memcpy(at, "batch_size: 3000000000", strlen("batch_size: 3000000000"));
    write_file("big.yaml", cfg);
    ck_assert_int_eq(run("train big.yaml --output o"), 2);
    ck_assert_msg(strstr(err_buf, "big.yaml:12:30: fit.batch_size must be <= 2147483647"), "%s",
                  err_buf);
}
END_TEST

int main(void) {
    Suite *s = suite_create("hostile");
    TCase *t = tcase_create("hostile");
    tcase_set_timeout(t, 600);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, resume_metadata_is_validated);
    tcase_add_test(t, resume_state_tensors_are_validated);
    tcase_add_test(t, resume_callback_state_is_validated);
    tcase_add_test(t, checkpoint_numbers_for_inference);
    tcase_add_test(t, format_version_is_named);
    tcase_add_test(t, deep_model_checkpoints);
    tcase_add_test(t, empty_training_data_is_an_error);
    tcase_add_test(t, empty_dataset_is_an_error);
    tcase_add_test(t, shape_products_are_checked);
    tcase_add_test(t, zero_dims_next_to_huge_ones);
    tcase_add_test(t, headers_that_claim_more_than_the_file_holds);
    tcase_add_test(t, integer_options_past_int_max);
    suite_add_tcase(s, t);
    return kc_test_run(s);
}

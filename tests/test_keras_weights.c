/* Keras weight files in and out, through the kerasc binary as users run it:
 * predict, summary, evaluate and train from .keras archives, Keras 3
 * .weights.h5 files and legacy HDF5 files (Keras 3's legacy writer and
 * tf_keras's), export to .keras / .weights.h5 read back by libzip and
 * libhdf5, ModelCheckpoint writing Keras's files, and the errors for files
 * that do not fit the model or are not what they claim to be.
 *
 * The fixtures in tests/fixtures/keras/weights were written by Keras itself
 * (make_weights.py there): four small models trained one epoch with Adam,
 * each as NAME.keras, NAME.weights.h5, NAME.h5 and NAME.k2.h5 (gzipped),
 * with inputs NAME.x.npy and Keras's predictions NAME.y.npy. kerasc must
 * predict the same within 1e-5 relative (+1e-6 absolute). */
#include <hdf5.h>
#include <zip.h>
#include <zlib.h>

#include "clitest.h"
#include "core/json.h"

enum { NCASES = 4 };
static const char *const cases[NCASES] = {"mlp", "cnn", "seq", "mobile"};

#define ck_assert_has(hay, needle)                                                                 \
    ck_assert_msg(strstr((hay), (needle)) != NULL, "'%s' not found in: %s", (needle), (hay))

/* ---------------------------------------------------------------- files */

static const char *fixture(const char *name) {
    static char buf[4200];
    const char *root = getenv("KERASC_SRC");
    if (root && *root) {
        snprintf(buf, sizeof buf, "%s/tests/fixtures/keras/weights/%s", root, name);
    } else {
        const char *src = __FILE__, *slash = strrchr(src, '/');
        snprintf(buf, sizeof buf, "%.*s/fixtures/keras/weights/%s", slash ? (int)(slash - src) : 1,
                 slash ? src : ".", name);
    }
    return buf;
}

/* The fixture NAME (stored as NAME.gz when gzipped) as NAME in the scratch
 * directory. */
static void unpack(const char *name) {
    char src[4300];
    snprintf(src, sizeof src, "%s.gz", fixture(name));
    if (access(src, R_OK) != 0) snprintf(src, sizeof src, "%s", fixture(name));
    gzFile in = gzopen(src, "rb"); /* reads plain files as they are */
    ck_assert_msg(in != NULL, "cannot open the fixture %s", src);
    FILE *out = fopen(path_in(name), "wb");
    ck_assert_ptr_nonnull(out);
    char buf[1 << 15];
    int got;
    while ((got = gzread(in, buf, sizeof buf)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, (size_t)got, out), (size_t)got);
    ck_assert_int_eq(got, 0);
    gzclose(in);
    ck_assert_int_eq(fclose(out), 0);
}

/* CASE.x.npy, CASE.y.npy and CASE.SUFFIX for each suffix given. */
static void unpack_case(const char *c, const char *const *suffixes) {
    char name[256];
    const char *base[] = {".x.npy", ".y.npy"};
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "%s%s", c, base[i]);
        unpack(name);
    }
    for (int i = 0; suffixes && suffixes[i]; i++) {
        snprintf(name, sizeof name, "%s%s", c, suffixes[i]);
        unpack(name);
    }
}

static char *read_text(const char *name, size_t *len) {
    FILE *f = fopen(path_in(name), "rb");
    ck_assert_msg(f != NULL, "cannot open %s", name);
    kc_strbuf b = {0};
    char chunk[1 << 15];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        kc_strbuf_append(&b, chunk, got);
    fclose(f);
    if (len) *len = b.len;
    return kc_strbuf_take(&b);
}

static void write_bytes(const char *name, const void *data, size_t len) {
    FILE *f = fopen(path_in(name), "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

/* Replaces the first `from` in the file by `to`; `from` must be there. */
static void edit_file(const char *name, const char *from, const char *to) {
    char *text = read_text(name, NULL), *at = strstr(text, from);
    ck_assert_msg(at != NULL, "'%s' not in %s:\n%s", from, name, text);
    kc_strbuf b = {0};
    kc_strbuf_append(&b, text, (size_t)(at - text));
    kc_strbuf_puts(&b, to);
    kc_strbuf_puts(&b, at + strlen(from));
    write_bytes(name, kc_strbuf_str(&b), b.len);
    kc_strbuf_free(&b);
    free(text);
}

static void assert_ok(int rc, const char *what) {
    ck_assert_msg(rc == 0, "%s: exit %d\n%s%s", what, rc, out_buf, err_buf);
}

/* `kerasc convert CASE.keras -o CASE.yaml` (CASE.keras unpacked). */
static void convert_case(const char *c) {
    assert_ok(run("convert %s.keras -o %s.yaml", c, c), "convert");
}

/* NAME: the converted model of CASE with `sections` (compile, data, fit)
 * after it. */
static void model_file(const char *c, const char *name, const char *sections) {
    char yaml[256];
    snprintf(yaml, sizeof yaml, "%s.yaml", c);
    if (!file_exists(yaml)) convert_case(c);
    size_t len;
    char *text = read_text(yaml, &len);
    kc_strbuf b = {0};
    kc_strbuf_append(&b, text, len);
    kc_strbuf_puts(&b, sections);
    write_bytes(name, kc_strbuf_str(&b), b.len);
    kc_strbuf_free(&b);
    free(text);
}

/* ---------------------------------------------------------- predictions */

static kc_array load_array(const char *name) {
    kc_array a = {0};
    kc_error e = {0};
    ck_assert_msg(kc_array_load(path_in(name), NULL, &a, &e) == KC_OK, "%s", e.msg);
    ck_assert_int_eq(a.dtype, KC_DT_F32);
    return a;
}

/* The predictions in `out` are Keras's (CASE.y.npy). */
static void assert_keras_outputs(const char *out, const char *c, const char *what) {
    char yname[256];
    snprintf(yname, sizeof yname, "%s.y.npy", c);
    kc_array got = load_array(out), want = load_array(yname);
    ck_assert_msg(kc_shape_equal(&got.shape, &want.shape), "%s: %s has the wrong shape", what, out);
    const float *g = got.data, *w = want.data;
    int64_t n = kc_shape_numel(&want.shape);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabsf(g[i] - w[i]) <= 1e-6f + 1e-5f * fabsf(w[i]),
                      "%s: output %lld is %.9g, Keras predicted %.9g", what, (long long)i, g[i],
                      w[i]);
    kc_array_free(&got);
    kc_array_free(&want);
}

/* Two prediction files hold the same bits. */
static void assert_same_outputs(const char *a, const char *b) {
    kc_array x = load_array(a), y = load_array(b);
    ck_assert_msg(kc_shape_equal(&x.shape, &y.shape), "%s and %s differ in shape", a, b);
    ck_assert_msg(!memcmp(x.data, y.data, (size_t)kc_shape_numel(&x.shape) * sizeof(float)),
                  "%s and %s differ", a, b);
    kc_array_free(&x);
    kc_array_free(&y);
}

/* `kerasc predict ARGS --input CASE.x.npy --output OUT`, which must succeed. */
static void predict(const char *c, const char *out, const char *args) {
    int rc = run("predict %s --input %s.x.npy --output %s", args, c, out);
    ck_assert_msg(rc == 0, "predict %s: exit %d\n%s", args, rc, err_buf);
}

/* An error exit that names `name`, with no sanitizer report or crash. */
static void assert_clean_error(int rc, const char *name, const char *what) {
    ck_assert_msg(rc == 1 || rc == 2, "%s: exit %d (an error is 1 or 2)\n%s", what, rc, err_buf);
    ck_assert_msg(!strstr(err_buf, "Sanitizer") && !strstr(err_buf, "runtime error"), "%s:\n%s",
                  what, err_buf);
    ck_assert_msg(strstr(err_buf, name) != NULL, "%s: the error does not name %s:\n%s", what, name,
                  err_buf);
}

/* ------------------------------------------------------------ hdf5, zip */

/* A float dataset of an HDF5 file in the scratch dir (NULL when absent). */
static float *h5_read(const char *file, const char *dataset, kc_shape *shape) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path_in(file), H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_msg(f >= 0, "%s is not an HDF5 file", file);
    float *v = NULL;
    if (H5Lexists(f, dataset, H5P_DEFAULT) > 0) {
        hid_t d = H5Dopen2(f, dataset, H5P_DEFAULT);
        ck_assert_msg(d >= 0, "%s: %s is not a dataset", file, dataset);
        hid_t s = H5Dget_space(d);
        int rank = H5Sget_simple_extent_ndims(s);
        ck_assert(rank >= 0 && rank <= KC_MAX_RANK);
        hsize_t dims[KC_MAX_RANK];
        H5Sget_simple_extent_dims(s, dims, NULL);
        shape->rank = rank;
        for (int i = 0; i < rank; i++)
            shape->d[i] = (int64_t)dims[i];
        v = malloc((size_t)kc_shape_numel(shape) * sizeof *v + 1);
        ck_assert(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
        H5Sclose(s);
        H5Dclose(d);
    }
    H5Fclose(f);
    return v;
}

typedef struct name_list {
    char **names;
    int n, cap;
} name_list;

static herr_t collect_dataset(hid_t group, const char *name, const H5L_info_t *info, void *op) {
    name_list *l = op;
    if (info->type != H5L_TYPE_HARD) return 0;
    hid_t obj = H5Oopen(group, name, H5P_DEFAULT);
    if (obj < 0) return -1;
    int is_dataset = H5Iget_type(obj) == H5I_DATASET;
    H5Oclose(obj);
    if (!is_dataset) return 0;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->names = realloc(l->names, (size_t)l->cap * sizeof *l->names);
    }
    l->names[l->n++] = strdup(name);
    return 0;
}

/* Every dataset under `group` of an HDF5 file, as paths from the root. */
static name_list h5_datasets(const char *file, const char *group) {
    name_list l = {0};
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path_in(file), H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_msg(f >= 0, "%s is not an HDF5 file", file);
    hid_t g = H5Gopen2(f, group, H5P_DEFAULT);
    ck_assert_msg(g >= 0, "%s has no group %s", file, group);
    ck_assert(H5Lvisit(g, H5_INDEX_NAME, H5_ITER_INC, collect_dataset, &l) >= 0);
    H5Gclose(g);
    H5Fclose(f);
    char p[512];
    for (int i = 0; i < l.n; i++) {
        snprintf(p, sizeof p, "%s/%s", group, l.names[i]);
        free(l.names[i]);
        l.names[i] = strdup(p);
    }
    return l;
}

static void names_free(name_list *l) {
    for (int i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
}

/* The same dataset (shape and bits) in two HDF5 files. */
static void assert_same_dataset(const char *a, const char *b, const char *dataset) {
    kc_shape sa, sb;
    float *va = h5_read(a, dataset, &sa), *vb = h5_read(b, dataset, &sb);
    ck_assert_msg(va != NULL, "%s has no %s", a, dataset);
    ck_assert_msg(vb != NULL, "%s has no %s", b, dataset);
    char x[96], y[96];
    ck_assert_msg(kc_shape_equal(&sa, &sb), "%s: %s in %s, %s in %s", dataset,
                  kc_shape_str(&sa, 0, x, sizeof x), a, kc_shape_str(&sb, 0, y, sizeof y), b);
    ck_assert_msg(!memcmp(va, vb, (size_t)kc_shape_numel(&sa) * sizeof *va), "%s differs", dataset);
    free(va);
    free(vb);
}

/* The bytes of one member of a zip archive in the scratch dir, by libzip. */
static char *zip_member(const char *file, const char *member, size_t *len) {
    int err = 0;
    zip_t *z = zip_open(path_in(file), ZIP_RDONLY, &err);
    ck_assert_msg(z != NULL, "%s is not a zip archive (libzip error %d)", file, err);
    zip_stat_t st;
    ck_assert_msg(zip_stat(z, member, 0, &st) == 0, "%s has no %s", file, member);
    char *data = malloc(st.size + 1);
    zip_file_t *f = zip_fopen(z, member, 0);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(zip_fread(f, data, st.size), (zip_int64_t)st.size);
    data[st.size] = 0;
    zip_fclose(f);
    zip_close(z);
    if (len) *len = st.size;
    return data;
}

static int zip_entries(const char *file) {
    int err = 0;
    zip_t *z = zip_open(path_in(file), ZIP_RDONLY, &err);
    ck_assert_msg(z != NULL, "%s is not a zip archive", file);
    int n = (int)zip_get_num_entries(z, 0);
    zip_close(z);
    return n;
}

/* ------------------------------------------------------ checkpoint data */

static kc_st_file *open_checkpoint(const char *name) {
    kc_st_file *f = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path_in(name), &f, &e) == KC_OK, "%s", e.msg);
    return f;
}

/* A checkpoint tensor equals (or, with equal = 0, differs from) a dataset
 * of an HDF5 file. */
static void assert_tensor_vs_h5(const kc_st_file *ck, const char *tensor, const char *h5,
                                const char *dataset, int equal) {
    const kc_st_tensor *t = kc_st_find(ck, tensor);
    ck_assert_msg(t != NULL, "no tensor %s in the checkpoint", tensor);
    ck_assert_int_eq(t->dtype, KC_ST_F32);
    kc_shape sh;
    float *v = h5_read(h5, dataset, &sh);
    ck_assert_msg(v != NULL, "%s has no %s", h5, dataset);
    char a[96], b[96];
    ck_assert_msg(kc_shape_equal(&t->shape, &sh), "%s %s vs %s %s", tensor,
                  kc_shape_str(&t->shape, 0, a, sizeof a), dataset,
                  kc_shape_str(&sh, 0, b, sizeof b));
    int same = !memcmp(t->data, v, (size_t)kc_shape_numel(&sh) * sizeof *v);
    ck_assert_msg(same == equal, "%s %s %s of %s", tensor, equal ? "differs from" : "still equals",
                  dataset, h5);
    free(v);
}

/* ---------------------------------------------------------------- setup */

static void setup(void) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    dir = kc_test_tmpdir();
    ck_assert_ptr_nonnull(dir);
}

static void teardown(void) {
    kc_test_rmdir(dir);
    free(dir);
}

/* Labels 0, 1, ... (mod the classes) for the case's samples: CASE.labels.npy. */
static int64_t write_labels(const char *c) {
    char yname[256], lname[256];
    snprintf(yname, sizeof yname, "%s.y.npy", c);
    snprintf(lname, sizeof lname, "%s.labels.npy", c);
    kc_array y = load_array(yname);
    int64_t n = y.shape.d[0], k = y.shape.d[1];
    float *l = malloc((size_t)n * sizeof *l);
    for (int64_t i = 0; i < n; i++)
        l[i] = (float)(i % k);
    write_npy(lname, l, kc_shape1(n));
    free(l);
    kc_array_free(&y);
    return n;
}

/* ------------------------------------------------------------- predict */

/* The files that carry their architecture predict as Keras did. */
START_TEST(predict_keras_files) {
    const char *c = cases[_i];
    const char *files[] = {".keras", ".h5", NULL};
    unpack_case(c, files);
    char args[256];
    for (int i = 0; files[i]; i++) {
        snprintf(args, sizeof args, "%s%s", c, files[i]);
        predict(c, "out.npy", args);
        assert_keras_outputs("out.npy", c, args);
    }
}
END_TEST

/* tf_keras's legacy HDF5 (weight names ending in ":0" and Adam slots) as
 * the weights of the converted model. */
START_TEST(predict_keras2_files) {
    const char *c = cases[_i];
    const char *files[] = {".keras", ".k2.h5", NULL};
    unpack_case(c, files);
    char args[256];
    convert_case(c);
    snprintf(args, sizeof args, "%s.yaml --weights %s.k2.h5", c, c);
    predict(c, "weights.npy", args);
    assert_keras_outputs("weights.npy", c, args);
}
END_TEST

/* A model (kerasc YAML, Keras JSON, .keras) with its weights from another
 * file of every kind. */
START_TEST(predict_model_with_weights) {
    const char *c = cases[_i];
    const char *files[] = {".keras", ".weights.h5", ".h5", NULL};
    unpack_case(c, files);
    convert_case(c);
    char args[512], json[256];
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args, "%s.yaml --weights %s%s", c, c, files[i]);
        predict(c, "out.npy", args);
        assert_keras_outputs("out.npy", c, args);
    }
    snprintf(args, sizeof args, "%s.keras --weights %s.weights.h5", c, c);
    predict(c, "out.npy", args);
    assert_keras_outputs("out.npy", c, args);
    /* the archive's config.json on its own is Keras's to_json() */
    snprintf(args, sizeof args, "%s.keras", c);
    size_t len;
    char *text = zip_member(args, "config.json", &len);
    snprintf(json, sizeof json, "%s.json", c);
    write_bytes(json, text, len);
    free(text);
    snprintf(args, sizeof args, "%s --weights %s.h5", json, c);
    predict(c, "out.npy", args);
    assert_keras_outputs("out.npy", c, args);
}
END_TEST

/* ------------------------------------------------------------- summary */

static void with_commas(long long v, char *buf, size_t n) {
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lld", v), o = 0;
    for (int i = 0; i < len && (size_t)o + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = 0;
}

static void keras_counts(const char *c, long long *total, long long *frozen) {
    FILE *f = fopen(fixture("counts.txt"), "r");
    ck_assert_ptr_nonnull(f);
    char name[64];
    int found = 0;
    while (!found && fscanf(f, "%63s %lld %lld", name, total, frozen) == 3)
        found = !strcmp(name, c);
    fclose(f);
    ck_assert_msg(found, "%s is not in counts.txt", c);
}

/* `kerasc summary` of a .keras and of a legacy .h5 counts Keras's
 * parameters and prints the table of the converted model. */
START_TEST(summary_of_keras_files) {
    const char *c = cases[_i];
    const char *files[] = {".keras", ".h5", NULL};
    unpack_case(c, files);
    convert_case(c);
    assert_ok(run("summary %s.yaml", c), "summary of the converted model");
    char *want = strdup(out_buf), line[128], num[64];
    long long total, frozen;
    keras_counts(c, &total, &frozen);
    with_commas(total, num, sizeof num);
    snprintf(line, sizeof line, " Total params: %s ", num);
    ck_assert_has(want, line);
    with_commas(frozen, num, sizeof num);
    snprintf(line, sizeof line, " Non-trainable params: %s ", num);
    ck_assert_has(want, line);
    for (int i = 0; files[i]; i++) {
        assert_ok(run("summary %s%s", c, files[i]), files[i]);
        ck_assert_str_eq(out_buf, want);
    }
    free(want);
}
END_TEST

/* ------------------------------------------------------------ evaluate */

/* evaluate with a .keras archive's weights gives the loss of Keras's
 * predictions. */
START_TEST(evaluate_with_keras_weights) {
    const char *c = cases[_i];
    const char *files[] = {".keras", NULL};
    unpack_case(c, files);
    int64_t n = write_labels(c);
    char sections[512], yname[256];
    snprintf(sections, sizeof sections,
             "compile: {optimizer: adam, loss: sparse_categorical_crossentropy}\n"
             "data: {test: {x: %s.x.npy, y: %s.labels.npy}}\n"
             "fit: {batch_size: 3}\n",
             c, c);
    model_file(c, "eval.yaml", sections);
    assert_ok(run("evaluate eval.yaml --weights %s.keras --json", c), "evaluate");
    double loss;
    ck_assert_msg(sscanf(out_buf, "{\"loss\": %lf", &loss) == 1, "%s", out_buf);
    snprintf(yname, sizeof yname, "%s.y.npy", c);
    kc_array y = load_array(yname);
    int64_t k = y.shape.d[1];
    double want = 0;
    for (int64_t i = 0; i < n; i++) {
        double p = ((float *)y.data)[i * k + i % k];
        want -= log(p < 1e-7 ? 1e-7 : p > 1 - 1e-7 ? 1 - 1e-7 : p);
    }
    want /= (double)n;
    kc_array_free(&y);
    ck_assert_close(loss, want, 1e-6, 1e-5);
}
END_TEST

/* --------------------------------------------------------------- train */

/* A training step too small to move any float32 weight (kerasc refuses a
 * learning rate of 0): what the run saves predicts as the Keras weights
 * it started from. */
static const char *still_fit =
    "compile: {optimizer: {SGD: {learning_rate: 1.0e-30}}, loss: "
    "sparse_categorical_crossentropy}\n"
    "data: {train: {x: %s.x.npy, y: %s.labels.npy}}\n"
    "fit: {epochs: 1, steps_per_epoch: 1, batch_size: 4, verbose: 0%s}\n";

/* fit.initial_weights and train --weights start from Keras's weights. */
START_TEST(train_from_keras_weights) {
    const char *c = _i ? "seq" : "mlp";
    const char *files[] = {".keras", ".weights.h5", NULL};
    unpack_case(c, files);
    write_labels(c);
    char sections[1024], extra[256];
    snprintf(extra, sizeof extra, ", initial_weights: %s.keras", c);
    snprintf(sections, sizeof sections, still_fit, c, c, extra);
    model_file(c, "initial.yaml", sections);
    assert_ok(run("train initial.yaml --output run1"), "train from fit.initial_weights");
    predict(c, "run1.npy", "run1/last.safetensors");
    assert_keras_outputs("run1.npy", c, "fit.initial_weights");

    snprintf(sections, sizeof sections, still_fit, c, c, "");
    model_file(c, "plain.yaml", sections);
    assert_ok(run("train plain.yaml --weights %s.weights.h5 --output run2", c), "train --weights");
    predict(c, "run2.npy", "run2/last.safetensors");
    assert_keras_outputs("run2.npy", c, "train --weights");
    /* without them the run starts from its initializers */
    assert_ok(run("train plain.yaml --output run3"), "train");
    predict(c, "run3.npy", "run3/last.safetensors");
    kc_array a = load_array("run3.npy"), b = load_array("run2.npy");
    ck_assert(memcmp(a.data, b.data, (size_t)kc_shape_numel(&a.shape) * sizeof(float)) != 0);
    kc_array_free(&a);
    kc_array_free(&b);
    /* a kerasc checkpoint is a weights file too */
    predict(c, "ckpt.npy", "plain.yaml --weights run2/last.safetensors");
    assert_same_outputs("ckpt.npy", "run2.npy");
}
END_TEST

/* Layers with trainable: false keep their Keras values through real
 * training steps, a frozen BatchNormalization its moving statistics too;
 * the others move. */
START_TEST(frozen_layers_keep_keras_weights) {
    const char *files[] = {".weights.h5", ".keras", NULL};
    unpack_case("cnn", files);
    write_labels("cnn");
    model_file("cnn", "frozen.yaml",
               "compile: {optimizer: {Adam: {learning_rate: 0.05}}, loss: "
               "sparse_categorical_crossentropy}\n"
               "data: {train: {x: cnn.x.npy, y: cnn.labels.npy}}\n"
               "fit: {epochs: 2, batch_size: 2, shuffle: false, verbose: 0, "
               "initial_weights: cnn.weights.h5}\n");
    edit_file("frozen.yaml", "{name: stem, ", "{name: stem, trainable: false, ");
    edit_file("frozen.yaml", "{name: stem_bn, ", "{name: stem_bn, trainable: false, ");
    assert_ok(run("train frozen.yaml --output run"), "train");
    kc_st_file *ck = open_checkpoint("run/last.safetensors");
    const char *w = "cnn.weights.h5";
    /* "stem" is stored under Keras 3's key conv2d, "stem_bn" under batch_normalization */
    assert_tensor_vs_h5(ck, "stem/kernel", w, "layers/conv2d/vars/0", 1);
    assert_tensor_vs_h5(ck, "stem/bias", w, "layers/conv2d/vars/1", 1);
    const char *bn[] = {"gamma", "beta", "moving_mean", "moving_variance"};
    char t[64], d[96];
    for (int i = 0; i < 4; i++) {
        snprintf(t, sizeof t, "stem_bn/%s", bn[i]);
        snprintf(d, sizeof d, "layers/batch_normalization/vars/%d", i);
        assert_tensor_vs_h5(ck, t, w, d, 1);
        snprintf(t, sizeof t, "features_bn/%s", bn[i]);
        snprintf(d, sizeof d, "layers/batch_normalization_1/vars/%d", i);
        assert_tensor_vs_h5(ck, t, w, d, 0);
    }
    assert_tensor_vs_h5(ck, "features/kernel", w, "layers/conv2d_1/vars/0", 0);
    assert_tensor_vs_h5(ck, "probs/kernel", w, "layers/dense/vars/0", 0);
    kc_st_close(ck);
}
END_TEST

/* -------------------------------------------------------------- export */

/* metadata.json and config.json of an exported archive are what Keras
 * reads: a Keras 3 version, and the model named as the case. */
static void assert_archive_json(const char *file, const char *c) {
    ck_assert_int_eq(zip_entries(file), 3);
    const char *members[] = {"metadata.json", "config.json"};
    for (int i = 0; i < 2; i++) {
        size_t len;
        char *text = zip_member(file, members[i], &len);
        kc_error e = {0};
        kc_json *j = kc_json_parse(text, len, &e);
        ck_assert_msg(j != NULL, "%s of %s: %s", members[i], file, e.msg);
        if (i == 0) {
            const char *v = kc_json_str(kc_json_get(j, "keras_version"));
            ck_assert_msg(v && v[0] == '3' && v[1] == '.', "keras_version: %s", v ? v : "none");
            ck_assert_ptr_nonnull(kc_json_str(kc_json_get(j, "date_saved")));
        } else {
            const char *cls = kc_json_str(kc_json_get(j, "class_name"));
            ck_assert_msg(cls && (!strcmp(cls, "Sequential") || !strcmp(cls, "Functional")),
                          "class_name %s", cls ? cls : "none");
            const kc_json *cfg = kc_json_get(j, "config");
            ck_assert_str_eq(kc_json_str(kc_json_get(cfg, "name")), c);
            ck_assert_int_eq(kc_json_kind_of(kc_json_get(cfg, "layers")), KC_JSON_ARRAY);
        }
        kc_json_free(j);
        free(text);
    }
    size_t len;
    char *h5 = zip_member(file, "model.weights.h5", &len);
    write_bytes("inner.weights.h5", h5, len);
    free(h5);
}

/* A checkpoint that holds Keras's weights unchanged, exported: every
 * layer variable of Keras's own .weights.h5 is in the exported files at
 * the same path (layers/<key>/vars/N, cells and wrapped layers included),
 * with the same shape and bits; the exported archive predicts as the
 * checkpoint does. */
START_TEST(export_round_trip) {
    const char *c = cases[_i];
    const char *files[] = {".keras", ".weights.h5", NULL};
    unpack_case(c, files);
    write_labels(c);
    char sections[1024], extra[256];
    snprintf(extra, sizeof extra, ", initial_weights: %s.weights.h5", c);
    snprintf(sections, sizeof sections, still_fit, c, c, extra);
    model_file(c, "m.yaml", sections);
    if (!strcmp(c, "cnn")) { /* frozen: inference-mode statistics, kept */
        edit_file("m.yaml", "{name: stem_bn, ", "{name: stem_bn, trainable: false, ");
        edit_file("m.yaml", "{name: features_bn, ", "{name: features_bn, trainable: false, ");
    }
    assert_ok(run("train m.yaml --output run"), "train");
    assert_ok(run("export run/last.safetensors -o out.keras"), "export .keras");
    assert_ok(run("export run/last.safetensors -o out.weights.h5"), "export .weights.h5");
    assert_archive_json("out.keras", c);
    char keras_file[256];
    snprintf(keras_file, sizeof keras_file, "%s.weights.h5", c);
    name_list l = h5_datasets(keras_file, "layers");
    ck_assert_int_gt(l.n, 0);
    for (int i = 0; i < l.n; i++) {
        assert_same_dataset(keras_file, "out.weights.h5", l.names[i]);
        assert_same_dataset(keras_file, "inner.weights.h5", l.names[i]);
    }
    names_free(&l);
    /* nothing under layers/ that Keras would not have written */
    l = h5_datasets("out.weights.h5", "layers");
    name_list k = h5_datasets(keras_file, "layers");
    ck_assert_int_eq(l.n, k.n);
    names_free(&l);
    names_free(&k);

    predict(c, "ckpt.npy", "run/last.safetensors");
    assert_keras_outputs("ckpt.npy", c, "the checkpoint");
    predict(c, "archive.npy", "out.keras");
    assert_same_outputs("archive.npy", "ckpt.npy");
    predict(c, "weights.npy", "m.yaml --weights out.weights.h5");
    assert_same_outputs("weights.npy", "ckpt.npy");
}
END_TEST

/* A trained checkpoint exported: Keras 3's keys for user-named layers
 * (stem -> conv2d, features -> conv2d_1), BatchNormalization's four
 * variables in Keras's order, every value the checkpoint's. */
START_TEST(export_trained_checkpoint) {
    const char *files[] = {".keras", NULL};
    unpack_case("cnn", files);
    write_labels("cnn");
    model_file("cnn", "m.yaml",
               "compile: {optimizer: adam, loss: sparse_categorical_crossentropy}\n"
               "data: {train: {x: cnn.x.npy, y: cnn.labels.npy}}\n"
               "fit: {epochs: 1, batch_size: 2, verbose: 0}\n");
    assert_ok(run("train m.yaml --output run"), "train");
    assert_ok(run("export run/last.safetensors -o out.keras"), "export .keras");
    assert_ok(run("export run/last.safetensors -o out.weights.h5"), "export .weights.h5");
    assert_archive_json("out.keras", "cnn");
    static const char *const map[][2] = {
        {"stem/kernel", "layers/conv2d/vars/0"},
        {"stem/bias", "layers/conv2d/vars/1"},
        {"stem_bn/gamma", "layers/batch_normalization/vars/0"},
        {"stem_bn/beta", "layers/batch_normalization/vars/1"},
        {"stem_bn/moving_mean", "layers/batch_normalization/vars/2"},
        {"stem_bn/moving_variance", "layers/batch_normalization/vars/3"},
        {"features/kernel", "layers/conv2d_1/vars/0"},
        {"features/bias", "layers/conv2d_1/vars/1"},
        {"features_bn/gamma", "layers/batch_normalization_1/vars/0"},
        {"features_bn/moving_variance", "layers/batch_normalization_1/vars/3"},
        {"probs/kernel", "layers/dense/vars/0"},
        {"probs/bias", "layers/dense/vars/1"},
    };
    kc_st_file *ck = open_checkpoint("run/last.safetensors");
    for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
        assert_tensor_vs_h5(ck, map[i][0], "out.weights.h5", map[i][1], 1);
        assert_tensor_vs_h5(ck, map[i][0], "inner.weights.h5", map[i][1], 1);
    }
    kc_st_close(ck);
    predict("cnn", "ckpt.npy", "run/last.safetensors");
    predict("cnn", "archive.npy", "out.keras");
    assert_same_outputs("archive.npy", "ckpt.npy");
    predict("cnn", "weights.npy", "cnn.keras --weights out.weights.h5");
    assert_same_outputs("weights.npy", "ckpt.npy");
}
END_TEST

/* ModelCheckpoint with a .keras or .weights.h5 filepath writes Keras's
 * files, holding the weights of the epoch it saved. */
START_TEST(model_checkpoint_writes_keras_files) {
    const char *files[] = {".keras", NULL};
    unpack_case("mlp", files);
    write_labels("mlp");
    model_file("mlp", "m.yaml",
               "compile: {optimizer: adam, loss: sparse_categorical_crossentropy}\n"
               "data: {train: {x: mlp.x.npy, y: mlp.labels.npy}}\n"
               "fit:\n  epochs: 2\n  batch_size: 2\n  verbose: 0\n  callbacks:\n"
               "    - ModelCheckpoint: {filepath: m.keras, monitor: loss}\n"
               "    - ModelCheckpoint: {filepath: 'w-{epoch:02d}.weights.h5', monitor: loss, "
               "save_weights_only: true}\n");
    assert_ok(run("train m.yaml --output run"), "train");
    ck_assert(file_exists("run/m.keras"));
    ck_assert(file_exists("run/w-01.weights.h5"));
    ck_assert(file_exists("run/w-02.weights.h5"));
    assert_archive_json("run/m.keras", "mlp");
    predict("mlp", "last.npy", "run/last.safetensors");
    predict("mlp", "archive.npy", "run/m.keras");
    assert_same_outputs("archive.npy", "last.npy");
    predict("mlp", "weights.npy", "m.yaml --weights run/w-02.weights.h5");
    assert_same_outputs("weights.npy", "last.npy");
    predict("mlp", "first.npy", "m.yaml --weights run/w-01.weights.h5");
    kc_array a = load_array("first.npy"), b = load_array("last.npy");
    ck_assert(memcmp(a.data, b.data, (size_t)kc_shape_numel(&a.shape) * sizeof(float)) != 0);
    kc_array_free(&a);
    kc_array_free(&b);
    kc_st_file *ck = open_checkpoint("run/last.safetensors");
    assert_tensor_vs_h5(ck, "dense/kernel", "run/w-02.weights.h5", "layers/dense/vars/0", 1);
    assert_tensor_vs_h5(ck, "dense_2/bias", "run/w-02.weights.h5", "layers/dense_2/vars/1", 1);
    kc_st_close(ck);
}
END_TEST

/* -------------------------------------------------------------- errors */

/* Weights whose shapes do not fit the model: the layer, the variable and
 * both shapes are named, for every kind of file. */
START_TEST(shape_mismatch_named) {
    const char *files[] = {".keras", ".weights.h5", ".h5", ".k2.h5", NULL};
    unpack_case("mlp", files);
    convert_case("mlp");
    edit_file("mlp.yaml", "{name: dense, units: 16,", "{name: dense, units: 15,");
    for (int i = 0; files[i]; i++) {
        char name[64];
        snprintf(name, sizeof name, "mlp%s", files[i]);
        int rc = run("predict mlp.yaml --weights %s --input mlp.x.npy --output out.npy", name);
        assert_clean_error(rc, name, "a shape mismatch");
        ck_assert_has(err_buf, "dense");
        ck_assert_has(err_buf, "kernel");
        ck_assert_has(err_buf, "8, 16");
        ck_assert_has(err_buf, "8, 15");
        ck_assert(!file_exists("out.npy"));
    }
}
END_TEST

/* A layer of the model that the file does not have is named. */
START_TEST(missing_layer_named) {
    const char *files[] = {".keras", ".weights.h5", ".h5", NULL};
    unpack_case("mlp", files);
    convert_case("mlp");
    edit_file("mlp.yaml", "activation: softmax}\n",
              "activation: softmax}\n    - Dense: {name: extra_head, units: 2}\n");
    for (int i = 0; files[i]; i++) {
        char name[64];
        snprintf(name, sizeof name, "mlp%s", files[i]);
        int rc = run("predict mlp.yaml --weights %s --input mlp.x.npy --output out.npy", name);
        assert_clean_error(rc, name, "a missing layer");
        ck_assert_has(err_buf, "extra_head");
    }
}
END_TEST

/* A .weights.h5 where a model is needed: the file holds only weights, and
 * the error says how to give the model. */
START_TEST(weights_only_file_needs_model) {
    const char *files[] = {".weights.h5", NULL};
    unpack_case("mlp", files);
    int rc = run("predict mlp.weights.h5 --input mlp.x.npy --output out.npy");
    assert_clean_error(rc, "mlp.weights.h5", "predict on a .weights.h5");
    ck_assert_has(err_buf, "weights");
    ck_assert_has(err_buf, "--weights");
    rc = run("summary mlp.weights.h5");
    assert_clean_error(rc, "mlp.weights.h5", "summary of a .weights.h5");
    ck_assert_has(err_buf, "weights");
}
END_TEST

/* Truncated and foreign files: an error naming the file, never a crash. */
START_TEST(damaged_files_are_errors) {
    const char *files[] = {".keras", ".weights.h5", ".h5", NULL};
    unpack_case("cnn", files);
    convert_case("cnn");
    char name[256], trunc[256];
    for (int i = 0; files[i]; i++) {
        snprintf(name, sizeof name, "cnn%s", files[i]);
        size_t len;
        char *bytes = read_text(name, &len);
        const size_t cuts[] = {len - 1, len / 2, 4096, 100, 8};
        for (int k = 0; k < 5; k++) {
            snprintf(trunc, sizeof trunc, "cut%zu%s", cuts[k], files[i]);
            write_bytes(trunc, bytes, cuts[k]);
            int rc = run("predict cnn.yaml --weights %s --input cnn.x.npy --output out.npy", trunc);
            assert_clean_error(rc, trunc, "truncated weights");
            if (i != 1) { /* the kinds that carry a model */
                rc = run("predict %s --input cnn.x.npy --output out.npy", trunc);
                assert_clean_error(rc, trunc, "a truncated model");
                rc = run("summary %s", trunc);
                assert_clean_error(rc, trunc, "summary of a truncated model");
            }
        }
        free(bytes);
    }
    static const char junk[] = "this is not a Keras file\n";
    const char *foreign[] = {"junk.h5", "junk.weights.h5", "junk.keras", "empty.h5"};
    for (int i = 0; i < 4; i++) {
        write_bytes(foreign[i], junk, i == 3 ? 0 : sizeof junk - 1);
        int rc =
            run("predict cnn.yaml --weights %s --input cnn.x.npy --output out.npy", foreign[i]);
        assert_clean_error(rc, foreign[i], "a file that is not HDF5");
        rc = run("predict %s --input cnn.x.npy --output out.npy", foreign[i]);
        assert_clean_error(rc, foreign[i], "a model file that is not HDF5");
    }
    /* a .keras archive whose model.weights.h5 is cut short */
    size_t len;
    char *h5 = zip_member("cnn.keras", "model.weights.h5", &len);
    char *cfg = zip_member("cnn.keras", "config.json", NULL);
    int err = 0;
    zip_t *z = zip_open(path_in("short.keras"), ZIP_CREATE | ZIP_TRUNCATE, &err);
    ck_assert_ptr_nonnull(z);
    zip_source_t *s1 = zip_source_buffer(z, cfg, strlen(cfg), 0);
    zip_source_t *s2 = zip_source_buffer(z, h5, len / 2, 0);
    ck_assert_int_ge(zip_file_add(z, "config.json", s1, 0), 0);
    ck_assert_int_ge(zip_file_add(z, "model.weights.h5", s2, 0), 0);
    ck_assert_int_eq(zip_close(z), 0);
    free(h5);
    free(cfg);
    int rc = run("predict short.keras --input cnn.x.npy --output out.npy");
    assert_clean_error(rc, "short.keras", "an archive with a truncated model.weights.h5");
    ck_assert(!file_exists("out.npy"));
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("keras_weights");
    TCase *in = tcase_create("in");
    tcase_add_checked_fixture(in, setup, teardown);
    tcase_set_timeout(in, 120);
    tcase_add_loop_test(in, predict_keras_files, 0, NCASES);
    tcase_add_loop_test(in, predict_keras2_files, 0, NCASES);
    tcase_add_loop_test(in, predict_model_with_weights, 0, NCASES);
    tcase_add_loop_test(in, summary_of_keras_files, 0, NCASES);
    tcase_add_loop_test(in, evaluate_with_keras_weights, 0, NCASES);
    suite_add_tcase(s, in);
    TCase *tr = tcase_create("train");
    tcase_add_checked_fixture(tr, setup, teardown);
    tcase_set_timeout(tr, 120);
    tcase_add_loop_test(tr, train_from_keras_weights, 0, 2);
    tcase_add_test(tr, frozen_layers_keep_keras_weights);
    suite_add_tcase(s, tr);
    TCase *out = tcase_create("out");
    tcase_add_checked_fixture(out, setup, teardown);
    tcase_set_timeout(out, 120);
    tcase_add_loop_test(out, export_round_trip, 0, NCASES);
    tcase_add_test(out, export_trained_checkpoint);
    tcase_add_test(out, model_checkpoint_writes_keras_files);
    suite_add_tcase(s, out);
    TCase *er = tcase_create("errors");
    tcase_add_checked_fixture(er, setup, teardown);
    tcase_set_timeout(er, 120);
    tcase_add_test(er, shape_mismatch_named);
    tcase_add_test(er, missing_layer_named);
    tcase_add_test(er, weights_only_file_needs_model);
    tcase_add_test(er, damaged_files_are_errors);
    suite_add_tcase(s, er);
    return s;
}

int main(void) {
    return kc_test_run(suite());
}
